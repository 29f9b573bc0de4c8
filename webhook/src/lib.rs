//! `appimage-webhook`: a TLS admission webhook that injects Kuscia AppImages into Pods
//! (`/mutate`) and checks AppImages (`/validate`), and the controllers that make what injected
//! Pods need. The binary is a thin shell over [`server::run`], so tests and benchmarks can start
//! the same server in-process.
//!
//! Rooms: [`admission`] (the rules and the one wire codec), [`catalog`] (the AppImages known,
//! what is derived from them, readiness), [`controllers`] (run by the [`leader`] only),
//! [`certs`] and [`trust`] (files watched and reloaded), [`api`] and [`server`] (HTTP).

pub mod admission;
pub mod api;
pub mod catalog;
pub mod certs;
pub mod cli;
pub mod controllers;
pub mod dev;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod trust;
mod watch;

pub use server::{Config, Running, TlsFiles, run, start, start_with_store};

/// Fixtures for the unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use appimage::resource::AppImage;

    /// The seed example (examples/secretflow-image.yaml), named `name` at resourceVersion `rv`.
    pub fn seed(name: &str, rv: &str) -> AppImage {
        let text = include_str!("../../examples/secretflow-image.yaml");
        let mut image = appimage::manifest::appimages("seed", text)
            .expect("the seed parses")
            .remove(0);
        image.metadata.name = Some(name.into());
        image.metadata.resource_version = Some(rv.into());
        image
    }
}
