//! `batch stop`, `continue` and `retry`: patches of the spec; the controller does the rest.

use super::get::phase;
use super::*;
use crate::output::println;
use anyhow::{Result, bail};
use serde_json::json;

pub(super) async fn suspend(jobs: &Jobs, n: &NameArgs, stop: bool) -> Result<()> {
    let current = jobs.get(n).await?;
    let phase = phase(&current);
    if !stop && current.spec.suspend != Some(true) {
        bail!(
            "{} is not stopped (phase {}); nothing to continue",
            n.name,
            phase.as_str()
        );
    }
    if stop && phase.finished() {
        bail!(
            "{} is {} and has nothing in flight to stop; delete it or retry it instead",
            n.name,
            phase.as_str()
        );
    }
    jobs.patch(n, json!({"spec": {"suspend": stop}})).await?;
    let verb = if stop { "stopped" } else { "continued" };
    println(&format!("{KIND_NAME}/{} {verb}", n.name))
}

/// Bump `spec.retryGeneration`, guarded by the resourceVersion just read, so a retry is
/// never sent for a phase that changed meanwhile.
pub(super) async fn retry(jobs: &Jobs, n: &NameArgs) -> Result<()> {
    let current = jobs.get(n).await?;
    let phase = phase(&current);
    if !phase.retryable() {
        bail!(
            "cannot retry {}: it is {}; a retry works from Failed, PartiallySucceeded or TimedOut",
            n.name,
            phase.as_str()
        );
    }
    let seen = current
        .status
        .as_ref()
        .map_or(0, |s| s.observed_retry_generation);
    let next = current.spec.retry_generation.unwrap_or(0).max(seen) + 1;
    let patch = json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "spec": {"retryGeneration": next},
    });
    jobs.patch(n, patch).await?;
    println(&format!(
        "{KIND_NAME}/{} retried (retryGeneration {next})",
        n.name
    ))
}
