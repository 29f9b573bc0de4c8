//! `appimage-webhook`: a TLS admission webhook that injects Kuscia AppImages into Pods
//! (`/mutate`) and checks AppImages (`/validate`). The binary is a thin shell over
//! [`server::run`], so tests and benchmarks can start the same server in-process.

pub mod admission;
pub mod api;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod intern;
pub mod logging;
pub mod metrics;
pub mod reconciler;
pub mod server;
pub mod store;
pub mod trust;
mod watch;

pub use server::{Config, Running, TlsFiles, run, start, start_with_store};
