//! Batch deployment: one AppImage to many chosen nodes as a job (issue 18, IEF's 批量应用部署).
//!
//! - `types`: the `BatchDeployment` resource and its status;
//! - `budget`: the status kept under the object limit at 5,000 nodes;
//! - `pace`: how often a large job's status is written;
//! - `machine`: the job's state machine, a pure function of spec, status, observed facts and now;
//! - `membership`: continuous mode's joins and leaves;
//! - `overrides`: per-group overrides, resolved per node and applied to its workload;
//! - `prepull`: the image pre-pull phase (spec.prePull), and `pull_job`, the per-node pull Job;
//! - `tolerance`: the failure tolerances' one rule (a count or a percentage);
//! - `nodes`: the nodes a job may choose, and Pods per node;
//! - `naming`: the names of its workloads (read by both of the next two);
//! - `workload`: the per-node workload (a Deployment or a Job pinned to its node).

pub mod budget;
pub mod machine;
pub mod membership;
pub mod naming;
pub mod nodes;
pub mod overrides;
pub mod pace;
pub mod prepull;
pub mod pull_job;
pub mod tolerance;
pub mod types;
pub mod workload;

pub use machine::{Action, AppImageFact, NodeFact, Observed, Progress, Step, step};
pub use prepull::{PullOutcome, PullProgress};
pub use types::*;
