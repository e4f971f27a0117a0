#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine for kiln: the packages it needs at run
# time (uidmap) and for its tests (a real registry, skopeo, umoci, busybox),
# plus an unprivileged test user with a subordinate ID range.
# Safe to run again. Needs root.
set -euo pipefail
test_user=${KILN_TEST_USER:-kiln-test}

need=(uidmap git xz-utils bzip2 zstd docker-registry skopeo umoci apache2-utils busybox-static curl ca-certificates openssl python3)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! id "$test_user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh "$test_user"
fi
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if ! grep -q "^$test_user:" "$f"; then
    echo "$test_user:300000:65536" >> "$f"
  fi
done
echo "setup-host: ready (test user $test_user: $(grep "^$test_user:" /etc/subuid))"
