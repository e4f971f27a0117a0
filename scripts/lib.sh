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
