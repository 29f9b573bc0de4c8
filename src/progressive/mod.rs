//! Progressive rollouts (issue 28): a new AppImage revision goes through ordered waves of the
//! AppImage's Auto workloads, each wave behind a health gate, and an abort brings every moved
//! workload back to the revision it ran before (image, config and Services together).
//!
//! - `types`: the `AppImageRollout` resource (the policy and the status a new leader resumes from);
//! - `waves`: which wave a workload is in, and how many of a wave move at a time;
//! - `facts`: what the rollout reads of a workload and its Pods;
//! - `machine`: the rollout's state machine, a pure function of spec, status, facts and now.

pub mod facts;
pub mod machine;
pub mod types;
pub mod waves;

pub use machine::{Action, CheckState, Facts, Health, Step, WorkloadFact, step};
pub use types::*;
