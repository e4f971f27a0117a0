#!/usr/bin/env python3
"""Sends a build the way openfaas/function-builder-examples python-request
does: stdlib tarfile (PAX on 3.11) with the config first, then `context`,
json.dump with spaces, Content-Type octet-stream, Accept */*. Prints the
HTTP status and the reply."""
import hashlib, hmac, json, os, sys, tarfile, tempfile, urllib.error, urllib.request

url, secret, context, image = sys.argv[1:5]
work = tempfile.mkdtemp()
with open(os.path.join(work, "com.openfaas.docker.config"), "w") as f:
    json.dump({"image": image, "buildArgs": {}}, f)
tar_path = os.path.join(work, "req.tar")
with tarfile.open(tar_path, "w") as tar:
    tar.add(os.path.join(work, "com.openfaas.docker.config"), arcname="com.openfaas.docker.config")
    tar.add(context, arcname="context")
body = open(tar_path, "rb").read()
digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
req = urllib.request.Request(url + "/build", data=body, headers={
    "X-Build-Signature": "sha256=" + digest,
    "Content-Type": "application/octet-stream",
    "Accept": "*/*",
    "User-Agent": "python-requests/2.34.2",
})
try:
    with urllib.request.urlopen(req, timeout=300) as resp:
        status, content = resp.status, json.load(resp)
except urllib.error.HTTPError as e:
    status, content = e.code, json.load(e)
print(json.dumps({"http": status, "reply": content}))
