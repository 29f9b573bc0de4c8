#!/usr/bin/env bash
# The test command: builds the control plane (cached) and the binaries, then runs every test,
# unit, offline CLI and end-to-end on a real kube-apiserver. Needs only Rust, Go, kubectl and
# openssl (plus Debian's umoci, skopeo, podman, runc and musl-tools for the image test; installed
# here when apt-get is available). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
# The tests make their keys and certificates with the openssl CLI. The image test
# (tests/e2e/tests/image.rs) builds with musl-gcc and umoci, reads with skopeo, runs podman/runc.
need=()
for tool in openssl umoci skopeo podman runc musl-gcc:musl-tools; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need[*]} from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
            apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
fi
scripts/controlplane.sh build >/dev/null
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?
# One closing line over all test binaries.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntotal: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
