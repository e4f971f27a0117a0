#!/usr/bin/env bash
# The whole kiln test suite on a fresh Debian 12 machine, as root:
#   scripts/test.sh [extra cargo test args]
# It installs what it needs (scripts/setup-host.sh), starts two real
# registries on free loopback ports (anonymous and htpasswd), builds the
# busybox base image into both, and runs `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scripts/test.sh must run as root (it installs packages and creates a test user)" >&2; exit 1; }
scripts/setup-host.sh

work=$(mktemp -d /tmp/kiln-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry NAME [USER PASS] -> sets REG_ADDR and REG_LOG
start_registry() {
  local name=$1 dir=$work/$1 port
  port=$(free_port)
  mkdir -p "$dir"
  cat > "$dir/config.yml" <<YML
version: 0.1
log: {level: info}
storage:
  filesystem: {rootdirectory: $dir/storage}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$port
YML
  if [ $# -ge 3 ]; then
    htpasswd -Bbn "$2" "$3" > "$dir/htpasswd"
    printf 'auth:\n  htpasswd: {realm: kiln-test, path: %s/htpasswd}\n' "$dir" >> "$dir/config.yml"
  fi
  docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 250); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
    if [ "$code" = 200 ] || [ "$code" = 401 ]; then
      REG_ADDR=127.0.0.1:$port
      REG_LOG=$dir/registry.log
      return 0
    fi
    sleep 0.02
  done
  cat "$dir/registry.log" >&2
  return 1
}

start_registry anon
export KILN_TEST_REGISTRY=$REG_ADDR KILN_TEST_REGISTRY_LOG=$REG_LOG
export KILN_TEST_AUTH_USER=tester KILN_TEST_AUTH_PASS=s3cret-pass
start_registry auth "$KILN_TEST_AUTH_USER" "$KILN_TEST_AUTH_PASS"
export KILN_TEST_AUTH_REGISTRY=$REG_ADDR
export KILN_TEST_USER=${KILN_TEST_USER:-kiln-test}

fixtures/base-images/make-busybox.sh "$KILN_TEST_REGISTRY" "$work/base"
REG_CREDS="$KILN_TEST_AUTH_USER:$KILN_TEST_AUTH_PASS" fixtures/base-images/make-busybox.sh "$KILN_TEST_AUTH_REGISTRY" "$work/base"
echo "test bench: registry $KILN_TEST_REGISTRY, auth registry $KILN_TEST_AUTH_REGISTRY"

cargo test --workspace --no-fail-fast "$@"
