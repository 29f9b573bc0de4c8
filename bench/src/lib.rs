//! Benchmarks of `appimage-webhook` and `kubectl-appimage` (see BENCHMARKS.md): an open-loop
//! AdmissionReview load generator (`appimage-loadgen`) and the scenario runner behind
//! `scripts/bench.sh` (`appimage-bench`).

pub mod client;
pub mod cluster;
pub mod fixtures;
pub mod harness;
pub mod loadgen;
pub mod review;
pub mod util;
