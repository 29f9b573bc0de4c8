#!/usr/bin/env bash
# The test command: builds the control plane (cached) and the binaries, then runs every test,
# unit, offline CLI and end-to-end on a real kube-apiserver. Needs only Rust, Go and kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
scripts/controlplane.sh build >/dev/null
cargo build --workspace --bins
cargo test --workspace "$@"
