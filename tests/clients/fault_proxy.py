#!/usr/bin/env python3
"""A registry proxy that fails on purpose: the first request for each
(method, path) gets 503, or its connection is reset, then requests pass
through to the real registry. Usage: fault_proxy.py PORT UPSTREAM MODE
(MODE: 503 | reset | slow | corrupt | putfail | log; slow stalls 5 s before
answering, corrupt flips a byte of every blob body instead, putfail answers
500 to every blob upload's final PUT: a registry failing mid-push for good,
log fails nothing and prints "request METHOD PATH" for every request).
Prints one line per fault to stderr."""
import http.client, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
seen = set()


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def handle_any(self):
        body = self.read_body()
        key = (self.command, self.path.split("?")[0])
        if MODE == "putfail" and self.command == "PUT" and "/blobs/uploads/" in self.path:
            print("fault %s %s" % key, file=sys.stderr, flush=True)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if MODE == "log":
            print("request %s %s" % (self.command, self.path), file=sys.stderr, flush=True)
        elif key not in seen and MODE not in ("corrupt", "putfail"):
            seen.add(key)
            print("fault %s %s" % key, file=sys.stderr, flush=True)
            if MODE == "slow":
                time.sleep(5)
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if MODE == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.close_connection = True
                for f in (self.rfile, self.wfile, self.connection):
                    f.close()
                return
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        up = http.client.HTTPConnection(UPSTREAM, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "transfer-encoding")}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        up.request(self.command, self.path, body=body, headers=headers)
        resp = up.getresponse()
        data = resp.read()
        if MODE == "corrupt" and self.command == "GET" and "/blobs/" in self.path and data:
            print("fault corrupt %s" % self.path, file=sys.stderr, flush=True)
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any


ThreadingHTTPServer(("127.0.0.1", PORT), Proxy).serve_forever()
