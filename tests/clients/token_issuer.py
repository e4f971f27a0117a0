#!/usr/bin/env python3
"""A minimal registry token service for the tests (CNCF distribution's
token auth). Issues RS256 JWTs carrying the certificate in `x5c`:
GET /token with Basic credentials, or POST /token with an OAuth2
refresh token (grant_type=refresh_token). Every grant is logged.

usage: token_issuer.py PORT KEY CERT USER PASS REFRESH_TOKEN ISSUER LOG
"""
import base64, json, subprocess, sys, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT, KEY, CERT, USER, PASS, REFRESH, ISSUER, LOG = sys.argv[1:9]
CERT_DER = subprocess.run(["openssl", "x509", "-in", CERT, "-outform", "DER"], capture_output=True, check=True).stdout


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(data):
    return subprocess.run(["openssl", "dgst", "-sha256", "-sign", KEY], input=data, capture_output=True, check=True).stdout


def make_token(service, scopes):
    access = []
    for scope in scopes:
        for one in scope.split(" "):
            parts = one.split(":")
            if len(parts) >= 3:
                access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")})
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(CERT_DER).decode()]}
    claims = {"iss": ISSUER, "sub": USER, "aud": service, "exp": now + 300, "nbf": now - 10, "iat": now,
              "jti": uuid.uuid4().hex, "access": access}
    signing_input = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())
    return signing_input + "." + b64u(sign(signing_input.encode()))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def grant(self, how, service, scopes):
        with open(LOG, "a") as f:
            f.write("%s %s %s\n" % (how, service, " ".join(scopes)))
        token = make_token(service, scopes)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def deny(self):
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        q = parse_qs(urlparse(self.path).query)
        auth = self.headers.get("Authorization", "")
        want = "Basic " + base64.b64encode(("%s:%s" % (USER, PASS)).encode()).decode()
        if auth != want:
            return self.deny()
        self.grant("basic", q.get("service", [""])[0], q.get("scope", []))

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [REFRESH]:
            return self.deny()
        self.grant("refresh", form.get("service", [""])[0], form.get("scope", []))


ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler).serve_forever()
