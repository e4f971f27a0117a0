# Shared helpers for kiln's test and benchmark scripts (source this file).
# Registries are started from the sourcing shell so that it can wait for
# them (this machine's PID 1 does not reap orphans).

KILN_PIDS=()

kiln_cleanup() {
  for p in "${KILN_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${KILN_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry DIR [USER PASS] -> sets REG_ADDR and REG_LOG
start_registry() {
  local dir=$1 port
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
  if [ -n "${KILN_REGISTRY_EXTRA:-}" ]; then
    printf '%s\n' "$KILN_REGISTRY_EXTRA" >> "$dir/config.yml"
  fi
  docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
  KILN_PIDS+=($!)
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

# start_token_registry DIR USER PASS REFRESH_TOKEN -> sets REG_ADDR, TOKEN_LOG
# A registry with token auth plus the test token service
# (tests/clients/token_issuer.py) that signs its tokens.
start_token_registry() {
  local dir=$1 user=$2 pass=$3 refresh=$4 issuer_port
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$dir/cert.pem" \
    -days 2 -subj /CN=kiln-test-issuer 2>/dev/null
  issuer_port=$(free_port)
  TOKEN_LOG=$dir/grants.log
  : > "$TOKEN_LOG"
  python3 tests/clients/token_issuer.py "$issuer_port" "$dir/key.pem" "$dir/cert.pem" \
    "$user" "$pass" "$refresh" kiln-test-issuer "$TOKEN_LOG" > "$dir/issuer.log" 2>&1 &
  KILN_PIDS+=($!)
  for _ in $(seq 1 250); do
    curl -s -o /dev/null "http://127.0.0.1:$issuer_port/token" && break
    sleep 0.02
  done
  KILN_REGISTRY_EXTRA="auth:
  token:
    realm: http://127.0.0.1:$issuer_port/token
    service: kiln-test-registry
    issuer: kiln-test-issuer
    rootcertbundle: $dir/cert.pem"
  start_registry "$dir"
  KILN_REGISTRY_EXTRA=
}

# bench_setup NAME -> sets BENCH_WORK and REG_ADDR
# For benchmark scripts: as root, installs what is needed, builds release,
# starts a loopback registry with the busybox base image, cleans up on exit.
bench_setup() {
  [ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
  scripts/setup-host.sh >/dev/null
  cargo build --release --quiet
  BENCH_WORK=$(mktemp -d "/tmp/kiln-$1.XXXXXX")
  chmod 755 "$BENCH_WORK"
  trap 'kiln_cleanup; rm -rf "$BENCH_WORK"' EXIT
  start_registry "$BENCH_WORK/registry"
  fixtures/base-images/make-busybox.sh "$REG_ADDR" "$BENCH_WORK/base" >/dev/null
}

