#!/usr/bin/env bash
# The benchmarks (BENCHMARKS.md): builds the control plane (cached) and release binaries, then
# runs every scenario on one embedded kube-apiserver + etcd, all traffic on 127.0.0.1.
# Prints a results table and writes target/bench/results.json. Extra arguments go to
# appimage-bench, e.g. `--duration 5s`, `--only 1,3`, `--perf` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

controlplane="$(scripts/controlplane.sh build | tail -n1)"

# hyperfine times the plugin commands (scenario 6); without it a plain loop is used.
if ! command -v hyperfine >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 &&
    [ "$(id -u)" = 0 ]; then
    echo "bench.sh: installing hyperfine from Debian's packages" >&2
    apt-get install -y -q hyperfine >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q hyperfine >/dev/null 2>&1; } ||
        echo "bench.sh: hyperfine unavailable; scenario 6 will time a plain loop" >&2
fi

# Everything measured is a release build.
nice cargo build --release --workspace --bins

mkdir -p target/bench
exec target/release/appimage-bench --controlplane "$controlplane" \
    --out target/bench/results.json "$@"
