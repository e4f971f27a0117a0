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
source scripts/lib.sh

work=$(mktemp -d /tmp/kiln-bench.XXXXXX)
chmod 755 "$work"
trap 'kiln_cleanup; rm -rf "$work"' EXIT

start_registry "$work/anon"
export KILN_TEST_REGISTRY=$REG_ADDR KILN_TEST_REGISTRY_LOG=$REG_LOG
export KILN_TEST_AUTH_USER=tester KILN_TEST_AUTH_PASS=s3cret-pass
start_registry "$work/auth" "$KILN_TEST_AUTH_USER" "$KILN_TEST_AUTH_PASS"
export KILN_TEST_AUTH_REGISTRY=$REG_ADDR
export KILN_TEST_REFRESH_TOKEN=kiln-refresh-token
start_token_registry "$work/token" "$KILN_TEST_AUTH_USER" "$KILN_TEST_AUTH_PASS" "$KILN_TEST_REFRESH_TOKEN"
export KILN_TEST_TOKEN_REGISTRY=$REG_ADDR KILN_TEST_TOKEN_LOG=$TOKEN_LOG
export KILN_TEST_USER=${KILN_TEST_USER:-kiln-test}

fixtures/base-images/make-busybox.sh "$KILN_TEST_REGISTRY" "$work/base"
for r in "$KILN_TEST_AUTH_REGISTRY" "$KILN_TEST_TOKEN_REGISTRY"; do
  REG_CREDS="$KILN_TEST_AUTH_USER:$KILN_TEST_AUTH_PASS" fixtures/base-images/make-busybox.sh "$r" "$work/base"
done
# debian:bookworm-slim (debootstrap, cached across runs) for the self-hosting test.
fixtures/base-images/make-debian.sh "$KILN_TEST_REGISTRY" /var/tmp/kiln-bench-debian
echo "test bench: registries $KILN_TEST_REGISTRY (anonymous), $KILN_TEST_AUTH_REGISTRY (htpasswd), $KILN_TEST_TOKEN_REGISTRY (token)"

cargo test --workspace --no-fail-fast "$@"
