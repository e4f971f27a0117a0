#!/usr/bin/env bash
# Shows that each syscall kiln adds to the runtime default seccomp profile
# (deploy/seccomp/kiln.json, the rule whose comment starts with "kiln:") is
# needed: for each one, a kiln server runs under the profile without it (as
# the unprivileged test user, loaded with libseccomp as a runtime would)
# and builds a Dockerfile with RUN steps, a cache mount, --network=none and
# USER; prints the outcome per dropped syscall. Needs root and the debug
# build (cargo build).   scripts/seccomp-minimize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh >/dev/null
source scripts/lib.sh
work=$(mktemp -d /tmp/kiln-seccomp.XXXXXX); chmod 755 "$work"
trap 'kiln_cleanup; rm -rf "$work"' EXIT
start_registry "$work/reg"
fixtures/base-images/make-busybox.sh "$REG_ADDR" "$work/base" >/dev/null
additions=$(python3 -c '
import json
rules = json.load(open("deploy/seccomp/kiln.json"))["syscalls"]
print(" ".join(n for r in rules if r.get("comment", "").startswith("kiln:") for n in r["names"]))')
for drop in none $additions; do
  python3 - "$drop" > "$work/profile.json" <<'PY'
import json, sys
profile = json.load(open("deploy/seccomp/kiln.json"))
for rule in profile["syscalls"]:
    if rule.get("comment", "").startswith("kiln:"):
        rule["names"] = [n for n in rule["names"] if n != sys.argv[1]]
print(json.dumps(profile))
PY
  d=$work/without-$drop; mkdir -p "$d/ctx/context"; chown kiln-test "$d"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  /usr/bin/python3 tests/clients/seccomp_exec.py --profile "$work/profile.json" --user kiln-test -- \
    target/debug/kiln serve --listen "127.0.0.1:$port" --metrics-listen '' --data-dir "$d/data" --disable-hmac --insecure \
    > "$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
  printf 'FROM %s/busybox\nRUN echo app:x:1000:1000::/home/app:/bin/sh >> /etc/passwd && mkdir -p /home/app && chown 1000 /home/app\nRUN --network=none --mount=type=cache,target=/cache echo c > /cache/x && cp /cache/x /x\nUSER app\nRUN id -u > /home/app/uid\n' \
    "$REG_ADDR" > "$d/ctx/context/Dockerfile"
  echo "{\"image\":\"$REG_ADDR/seccomp/$drop:1\"}" > "$d/ctx/com.openfaas.docker.config"
  tar -C "$d/ctx" -cf "$d/req.tar" .
  reply=$(curl -s -m 120 --data-binary @"$d/req.tar" "http://127.0.0.1:$port/build" || true)
  outcome=$(printf '%s' "$reply" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["status"], (r.get("error") or "")[:120])' 2>/dev/null \
    || echo "server did not start: $(grep -o 'kiln cannot build here: [^;.]*' "$d/log" | head -1)")
  printf 'without %-14s %s\n' "$drop:" "$outcome"
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
done
