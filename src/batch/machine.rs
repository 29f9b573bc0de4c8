//! The job's state machine: a pure function from (spec, previous status, observed facts, now)
//! to (next status, actions). The controller only gathers the facts and carries out the
//! actions, so every transition is testable without a cluster; the README's table lists them.
//!
//! Level-triggered: the actions say what must exist now (a workload per node that is Running
//! or Succeeded, of that node's current attempt; nothing for the others), so running the step
//! again on the same facts gives the same answer, and a lost write is redone next time.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::membership::{self, continuous};
use super::naming::{prefix_error, pull_name, workload_name};
use super::overrides::replicas;
use super::prepull::{self, PullProgress};
use super::types::{
    BatchDeployment, BatchDeploymentSpec, BatchDeploymentStatus, Counts, NodePhase, NodeStatus,
    Phase, PullPhase,
};
use crate::duration;

pub use super::nodes::{NodeFact, instances, select_nodes};

/// Whether the AppImage can be deployed (the controller checks it: exists, signature,
/// lifecycle, a deploy template for the role).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppImageFact {
    Usable,
    /// `reason` is CamelCase (AppImageNotFound, SignatureInvalid, AppImageDeprecated, ...);
    /// `message` says what to do.
    Unusable {
        reason: String,
        message: String,
    },
}

/// What one node's workload reports.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Progress {
    /// The workload's name (the one to delete).
    pub name: String,
    /// The node attempt it was made for (its annotation).
    pub attempt: i32,
    /// Pods that exist, Ready, and Succeeded.
    pub pods: i32,
    pub ready: i32,
    pub succeeded: i32,
    /// Set when the workload has failed for good: (reason, message).
    pub failure: Option<(String, String)>,
}

/// Everything the step reads from the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub app_image: AppImageFact,
    /// Every Node of the cluster.
    pub nodes: Vec<NodeFact>,
    /// This job's workloads, by the node they are pinned to.
    pub workloads: BTreeMap<String, Progress>,
    /// This job's image pull Jobs (spec.prePull), by the node they are pinned to.
    pub pulls: BTreeMap<String, PullProgress>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create (server-side apply) the workload `name` for `node`, for that node's `attempt`.
    Create {
        node: String,
        name: String,
        attempt: i32,
    },
    Delete {
        node: String,
        name: String,
    },
    /// Create the image pull Job `name` for `node`, for the job's `attempt` (spec.prePull).
    CreatePull {
        node: String,
        name: String,
        attempt: i32,
    },
    /// Delete the pull Job `name`: its node's pull is decided, or no longer wanted.
    DeletePull {
        node: String,
        name: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub status: BatchDeploymentStatus,
    pub actions: Vec<Action>,
    /// Come back after this even if nothing changes (the timeout's deadline).
    pub requeue_after: Option<Duration>,
}

/// Condition types this machine writes.
pub const COND_COMPLETE: &str = "Complete";
pub const COND_FAILED: &str = "Failed";
pub const COND_SUSPENDED: &str = "Suspended";
pub const COND_RETRY_REJECTED: &str = "RetryRejected";

/// The next status and the actions for `bd` given `observed` at `now`.
pub fn step(bd: &BatchDeployment, observed: &Observed, now: Timestamp) -> Step {
    let mut status = bd.status.clone().unwrap_or_default();
    if status.attempts == 0 {
        // First sight: the clock starts and a retryGeneration set at creation is not a retry.
        status.attempts = 1;
        status.start_time = Some(Time(now));
        status.active_since = Some(Time(now));
        status.observed_retry_generation = bd.spec.retry_generation.unwrap_or(0);
    }
    let mut m = Machine {
        spec: &bd.spec,
        prefix: bd
            .spec
            .name_prefix
            .clone()
            .unwrap_or_else(|| bd.metadata.name.clone().unwrap_or_default()),
        generation: bd.metadata.generation,
        s: status,
        obs: observed,
        now,
        actions: Vec::new(),
        leave_due: None,
        pull_due: None,
    };
    m.control();
    m.advance();
    m.cleanup();
    m.finish()
}

struct Machine<'a> {
    spec: &'a BatchDeploymentSpec,
    prefix: String,
    generation: Option<i64>,
    s: BatchDeploymentStatus,
    obs: &'a Observed,
    now: Timestamp,
    actions: Vec<Action>,
    /// Continuous: when the next node that stopped matching is due to lose the app.
    leave_due: Option<Duration>,
    /// When the earliest pull in flight reaches prePull.timeout (PrePulling, or a Continuous
    /// job's joiners).
    pull_due: Option<Duration>,
}

impl Machine<'_> {
    /// The user's levers: retry, stop, continue.
    fn control(&mut self) {
        let retry = self.spec.retry_generation.unwrap_or(0);
        if retry > self.s.observed_retry_generation {
            self.s.observed_retry_generation = retry;
            if self.s.phase.retryable() {
                self.retry();
            } else {
                let message = format!(
                    "retry is allowed only from Failed, PartiallySucceeded or TimedOut; the job is {}",
                    self.s.phase.as_str()
                );
                self.condition(COND_RETRY_REJECTED, true, "NotRetryable", &message);
            }
        }
        let suspend = self.spec.suspend == Some(true);
        match self.s.phase {
            Phase::Queued | Phase::PrePulling | Phase::Running if suspend => self.stop(),
            Phase::Stopping | Phase::Stopped if !suspend => self.resume(),
            _ => {}
        }
    }

    fn retry(&mut self) {
        self.s.attempts += 1;
        for node in self
            .s
            .nodes
            .iter_mut()
            .filter(|n| n.phase != NodePhase::Succeeded)
        {
            *node = NodeStatus {
                node: std::mem::take(&mut node.node),
                attempts: node.attempts,
                ..Default::default()
            };
        }
        if prepull::enabled(self.spec) {
            // The nodes it reruns pull again (the image may have been removed meanwhile).
            prepull::begin(&mut self.s.nodes);
        }
        self.s.start_time = Some(Time(self.now));
        self.s.completion_time = None;
        self.s.active_seconds = 0;
        self.s.active_since = Some(Time(self.now));
        self.s.phase = self.active_phase();
        let keep = |c: &Condition| {
            ![COND_COMPLETE, COND_FAILED, COND_RETRY_REJECTED].contains(&c.type_.as_str())
        };
        self.s.conditions.retain(keep);
    }

    /// Queued until nodes are chosen, PrePulling while a pull is undecided, then Running.
    fn active_phase(&self) -> Phase {
        if self.s.nodes.is_empty() {
            Phase::Queued
        } else if prepull::undecided(&self.s.nodes) {
            Phase::PrePulling
        } else {
            Phase::Running
        }
    }

    fn stop(&mut self) {
        self.pause_clock();
        for node in self
            .s
            .nodes
            .iter_mut()
            .filter(|n| n.phase == NodePhase::Running)
        {
            node.phase = NodePhase::Stopped;
            node.reason = Some("Stopped".into());
            node.message = Some("halted by a stop (spec.suspend: true)".into());
            node.pods = 0;
        }
        prepull::halt(&mut self.s.nodes);
        self.s.phase = Phase::Stopping;
        self.condition(COND_SUSPENDED, true, "Stopped", "spec.suspend is true");
    }

    fn resume(&mut self) {
        for node in self
            .s
            .nodes
            .iter_mut()
            .filter(|n| n.phase == NodePhase::Stopped)
        {
            node.phase = NodePhase::Pending;
            node.reason = None;
            node.message = None;
        }
        self.s.active_since = Some(Time(self.now));
        self.s.phase = self.active_phase();
        self.condition(COND_SUSPENDED, false, "Continued", "spec.suspend is false");
    }

    fn advance(&mut self) {
        match self.s.phase {
            Phase::Queued => self.queued(),
            Phase::PrePulling => self.pre_pulling(),
            Phase::Running => self.running(),
            Phase::Stopping => {
                // Stopped once no halted node has a workload (or a pull Job) left.
                let halted =
                    |n: &&NodeStatus| !matches!(n.phase, NodePhase::Running | NodePhase::Succeeded);
                if !self
                    .s
                    .nodes
                    .iter()
                    .filter(halted)
                    .any(|n| self.obs.workloads.contains_key(&n.node))
                    && self.obs.pulls.is_empty()
                {
                    self.s.phase = Phase::Stopped;
                }
            }
            _ => {}
        }
    }

    /// Check the input, choose and record the nodes, then run.
    fn queued(&mut self) {
        if self.bad_input() {
            return;
        }
        let nodes = select_nodes(self.spec, &self.obs.nodes);
        // Continuous: no node matching yet is no failure; nodes join when they come to match.
        if nodes.is_empty() && !continuous(self.spec) {
            let message = format!(
                "no node matches nodeSelector {}; label some nodes or change spec.nodeSelector, then retry",
                selector_text(&self.spec.node_selector)
            );
            self.fail("NoNodesMatched", &message);
            return;
        }
        self.s.nodes = nodes
            .into_iter()
            .map(|node| NodeStatus {
                node,
                ..Default::default()
            })
            .collect();
        if prepull::enabled(self.spec) {
            prepull::begin(&mut self.s.nodes);
            self.s.phase = Phase::PrePulling;
            self.pre_pulling();
            return;
        }
        self.s.phase = Phase::Running;
        self.running();
    }

    /// Pull on the chosen nodes; once every pull is decided, fail the job when more failed
    /// than prePull.failureTolerance (no Pod of the app exists yet), else run the others.
    fn pre_pulling(&mut self) {
        if self.bad_input() {
            return;
        }
        let ready = ready_map(self.obs);
        let attempt = self.s.attempts;
        let pulls = &self.obs.pulls;
        let nodes = &mut self.s.nodes;
        self.pull_due = prepull::advance(self.spec, nodes, &ready, pulls, attempt, self.now);
        if prepull::undecided(&self.s.nodes) {
            if self.timed_out() {
                self.time_out();
            }
            return;
        }
        self.pull_due = None;
        if let Some(message) = prepull::verdict(self.spec, &self.s.nodes) {
            self.fail(prepull::PRE_PULL_FAILED, &message);
            return;
        }
        self.s.phase = Phase::Running;
        self.running();
    }

    /// Fails the job when the spec or the AppImage is unusable; true if it did.
    fn bad_input(&mut self) -> bool {
        if let Some(message) = spec_error(self.spec, &self.prefix) {
            self.fail("InvalidSpec", &message);
            return true;
        }
        if let AppImageFact::Unusable { reason, message } = &self.obs.app_image {
            self.fail(reason, message);
            return true;
        }
        false
    }

    fn running(&mut self) {
        if self.bad_input() {
            return;
        }
        if continuous(self.spec) {
            let facts = &self.obs.nodes;
            let pull = prepull::enabled(self.spec);
            self.leave_due =
                membership::update(self.spec, facts, &mut self.s.nodes, pull, self.now);
            self.pull_joiners();
            self.observe_nodes();
            self.start_nodes();
            // The job never ends, and has no timeout: its results are kept current.
            return;
        }
        self.observe_nodes();
        self.start_nodes();
        if self.s.nodes.iter().all(|n| n.phase.done()) {
            self.complete();
        } else if self.timed_out() {
            self.time_out();
        }
    }

    /// Continuous with pre-pull: the nodes that joined pull before they are started
    /// (`start_nodes` passes over a node whose pull is undecided).
    fn pull_joiners(&mut self) {
        if !prepull::enabled(self.spec) {
            return;
        }
        let ready = ready_map(self.obs);
        let (pulls, attempt) = (&self.obs.pulls, self.s.attempts);
        let nodes = &mut self.s.nodes;
        self.pull_due = prepull::advance(self.spec, nodes, &ready, pulls, attempt, self.now);
    }

    /// Node facts and workload progress -> node phases. A node gone fails; one NotReady
    /// keeps its workload and gets a reason (it may come back within the timeout).
    fn observe_nodes(&mut self) {
        let ready = ready_map(self.obs);
        let labels: BTreeMap<&str, &BTreeMap<String, String>> = self
            .obs
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), &n.labels))
            .collect();
        let always = always(self.spec);
        let retries = self.spec.retries.unwrap_or(0);
        let backoff = retry_backoff(self.spec).unwrap_or(DEFAULT_BACKOFF);
        for node in self
            .s
            .nodes
            .iter_mut()
            .filter(|n| n.phase == NodePhase::Running)
        {
            match node_problem(&ready, &node.node) {
                Some(("NodeNotReady", _)) => {
                    node.reason = Some("NodeNotReady".into());
                    node.message = Some(format!(
                        "node {} went NotReady while its Pods run; waiting for it to return within the job's timeout",
                        node.node
                    ));
                    continue;
                }
                Some((reason, message)) => {
                    set_failed(node, reason, &message);
                    continue;
                }
                None if node.reason.as_deref() == Some("NodeNotReady") => {
                    node.reason = None;
                    node.message = None;
                }
                None => {}
            }
            let Some(p) = self.obs.workloads.get(&node.node) else {
                continue;
            };
            if p.attempt != node.attempts {
                continue;
            }
            node.pods = if always { p.ready } else { p.succeeded };
            let instances = labels
                .get(node.node.as_str())
                .map_or(instances(self.spec), |l| replicas(self.spec, l));
            if let Some((reason, message)) = &p.failure {
                if node.auto_retries < retries {
                    schedule_rerun(node, reason, message, backoff, self.now);
                } else {
                    node.last_failure = Some(reason.clone());
                    set_failed(node, reason, message);
                }
            } else if node.pods >= instances {
                node.phase = NodePhase::Succeeded;
                node.reason = None;
                node.message = None;
            }
        }
    }

    /// Start Pending nodes, and Waiting ones whose node is back and whose backoff is over, in
    /// order, while fewer than `parallelism` are in flight. A NotReady node waits without
    /// taking a slot.
    fn start_nodes(&mut self) {
        let ready = ready_map(self.obs);
        let limit = self
            .spec
            .parallelism
            .map_or(usize::MAX, |p| p.max(1) as usize);
        let mut in_flight = self
            .s
            .nodes
            .iter()
            .filter(|n| n.phase == NodePhase::Running)
            .count();
        let now = self.now;
        for node in self
            .s
            .nodes
            .iter_mut()
            .filter(|n| matches!(n.phase, NodePhase::Pending | NodePhase::Waiting))
            .filter(|n| n.leaving_since.is_none())
            .filter(|n| n.pull.as_ref().is_none_or(|p| p.phase.done()))
        {
            match node_problem(&ready, &node.node) {
                Some(("NodeNotReady", _)) => {
                    node.phase = NodePhase::Waiting;
                    node.reason = Some("NodeNotReady".into());
                    node.message = Some(format!(
                        "node {} is not Ready; it is caught up when the node returns, within the job's timeout",
                        node.node
                    ));
                    continue;
                }
                Some((reason, message)) => {
                    set_failed(node, reason, &message);
                    continue;
                }
                None => {}
            }
            if let Some(at) = node.retry_at.as_ref().filter(|t| t.0 > now) {
                if node.reason.as_deref() == Some("NodeNotReady") {
                    node.reason = Some("RetryBackoff".into());
                    node.message = Some(format!("node back; automatic rerun at {}", at.0));
                }
                continue;
            }
            if node.phase == NodePhase::Waiting {
                node.phase = NodePhase::Pending;
                node.reason = None;
                node.message = None;
                node.retry_at = None;
            }
            if in_flight >= limit {
                continue;
            }
            in_flight += 1;
            node.phase = NodePhase::Running;
            node.attempts += 1;
            node.pods = 0;
        }
    }

    fn elapsed_millis(&self) -> i64 {
        let stretch = self
            .s
            .active_since
            .as_ref()
            .map_or(0, |t| self.now.as_millisecond() - t.0.as_millisecond());
        self.s.active_seconds * 1000 + stretch.max(0)
    }

    fn timed_out(&self) -> bool {
        if continuous(self.spec) {
            return false;
        }
        match timeout(self.spec) {
            Ok(Some(limit)) => self.elapsed_millis() > limit.as_millis() as i64,
            _ => false,
        }
    }

    fn time_out(&mut self) {
        let limit = self
            .spec
            .timeout
            .as_deref()
            .unwrap_or(super::DEFAULT_TIMEOUT)
            .to_string();
        let message = format!("not done within the timeout ({limit}) of queueing plus running");
        for node in self.s.nodes.iter_mut().filter(|n| !n.phase.done()) {
            set_failed(node, "TimedOut", &message);
        }
        prepull::abandon(&mut self.s.nodes, "TimedOut", &message);
        self.end(Phase::TimedOut);
        self.condition(COND_FAILED, true, "TimedOut", &message);
    }

    /// Every node is done: the verdict by the failure tolerance.
    fn complete(&mut self) {
        let total = self.s.nodes.len() as i32;
        let failed = self
            .s
            .nodes
            .iter()
            .filter(|n| n.phase == NodePhase::Failed)
            .count() as i32;
        let tolerance = failure_tolerance(self.spec, total).ok().flatten();
        if failed == 0 {
            self.end(Phase::Succeeded);
            self.condition(
                COND_COMPLETE,
                true,
                "AllNodesSucceeded",
                &format!("{total}/{total} nodes succeeded"),
            );
        } else if failed == total {
            self.end(Phase::Failed);
            self.condition(
                COND_FAILED,
                true,
                "NoNodeSucceeded",
                &format!("all {total} nodes failed"),
            );
        } else if tolerance.is_some_and(|t| failed > t) {
            let message = format!(
                "{failed} of {total} nodes failed, more than failureTolerance ({})",
                tolerance.unwrap_or(0)
            );
            self.end(Phase::Failed);
            self.condition(COND_FAILED, true, "FailureToleranceExceeded", &message);
        } else {
            let message = format!(
                "{}/{total} nodes succeeded, {failed} failed",
                total - failed
            );
            self.end(Phase::PartiallySucceeded);
            self.condition(COND_COMPLETE, true, "SomeNodesFailed", &message);
        }
    }

    /// The job fails as a whole: every node not done fails with the same reason.
    fn fail(&mut self, reason: &str, message: &str) {
        for node in self.s.nodes.iter_mut().filter(|n| !n.phase.done()) {
            set_failed(node, reason, message);
        }
        prepull::abandon(&mut self.s.nodes, reason, message);
        self.end(Phase::Failed);
        self.condition(COND_FAILED, true, reason, message);
    }

    fn end(&mut self, phase: Phase) {
        self.pause_clock();
        self.s.phase = phase;
        self.s.completion_time = Some(Time(self.now));
    }

    fn pause_clock(&mut self) {
        self.s.active_seconds = self.elapsed_millis() / 1000;
        self.s.active_since = None;
    }

    /// A workload for each Running or Succeeded node, of its current attempt; none for the
    /// others, nor for nodes the job did not choose. A pull Job for each node whose pull is in
    /// flight while the job is PrePulling (or Running: a Continuous job's joiners), of this job
    /// attempt; none once it is decided.
    fn cleanup(&mut self) {
        self.cleanup_pulls();
        let nodes: BTreeMap<&str, &NodeStatus> =
            self.s.nodes.iter().map(|n| (n.node.as_str(), n)).collect();
        for (node, p) in &self.obs.workloads {
            let wanted = nodes.get(node.as_str()).is_some_and(|n| match n.phase {
                NodePhase::Running => p.attempt == n.attempts,
                NodePhase::Succeeded => true,
                _ => false,
            });
            if !wanted {
                self.actions.push(Action::Delete {
                    node: node.clone(),
                    name: p.name.clone(),
                });
            }
        }
        for n in self
            .s
            .nodes
            .iter()
            .filter(|n| n.phase == NodePhase::Running)
        {
            if !self.obs.workloads.contains_key(&n.node) {
                self.actions.push(Action::Create {
                    node: n.node.clone(),
                    name: workload_name(&self.prefix, &n.node),
                    attempt: n.attempts,
                });
            }
        }
    }

    fn cleanup_pulls(&mut self) {
        let pulling: BTreeMap<&str, bool> = self
            .s
            .nodes
            .iter()
            .map(|n| {
                let on = n
                    .pull
                    .as_ref()
                    .is_some_and(|p| p.phase == PullPhase::Pulling);
                // Running: only a Continuous job's joiners pull (see `pull_joiners`).
                let phase = matches!(self.s.phase, Phase::PrePulling | Phase::Running);
                (n.node.as_str(), on && phase)
            })
            .collect();
        let attempt = self.s.attempts;
        for (node, p) in &self.obs.pulls {
            if !(pulling.get(node.as_str()) == Some(&true) && p.attempt == attempt) {
                self.actions.push(Action::DeletePull {
                    node: node.clone(),
                    name: p.name.clone(),
                });
            }
        }
        for (node, _) in pulling.iter().filter(|(_, on)| **on) {
            if !self.obs.pulls.contains_key(*node) {
                self.actions.push(Action::CreatePull {
                    node: node.to_string(),
                    name: pull_name(&self.prefix, node),
                    attempt,
                });
            }
        }
    }

    fn condition(&mut self, type_: &str, on: bool, reason: &str, message: &str) {
        let status = if on { "True" } else { "False" };
        let conditions = &mut self.s.conditions;
        let fresh = Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: self.generation,
            last_transition_time: Time(self.now),
        };
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == status => {
                c.reason = fresh.reason;
                c.message = fresh.message;
                c.observed_generation = fresh.observed_generation;
            }
            Some(c) => *c = fresh,
            None => conditions.push(fresh),
        }
    }

    /// Time until the earliest automatic rerun of a Waiting node, while the job runs.
    fn next_rerun(&self) -> Option<Duration> {
        if self.s.phase != Phase::Running {
            return None;
        }
        let now = self.now.as_millisecond();
        self.s
            .nodes
            .iter()
            .filter(|n| n.phase == NodePhase::Waiting)
            .filter_map(|n| n.retry_at.as_ref())
            .map(|t| Duration::from_millis((t.0.as_millisecond() - now).max(0) as u64 + 1))
            .min()
    }

    fn finish(mut self) -> Step {
        super::budget::fit(&mut self.s.nodes);
        self.s.counts = counts(&self.s.nodes);
        self.s.pulls = prepull::counts(&self.s.nodes);
        self.s.summary = format!("{}/{}", self.s.counts.succeeded, self.s.counts.total);
        self.s.observed_generation = self.generation;
        let requeue_after = match (self.s.phase, timeout(self.spec)) {
            (Phase::Queued | Phase::PrePulling | Phase::Running, Ok(Some(limit)))
                if !continuous(self.spec) =>
            {
                let left = limit.as_millis() as i64 - self.elapsed_millis();
                Some(Duration::from_millis(left.max(0) as u64 + 1))
            }
            _ => None,
        };
        let pulling = matches!(self.s.phase, Phase::PrePulling | Phase::Running);
        let pull_due = self.pull_due.filter(|_| pulling);
        let requeue_after = [requeue_after, self.next_rerun(), self.leave_due, pull_due]
            .into_iter()
            .flatten()
            .min();
        Step {
            status: self.s,
            actions: self.actions,
            requeue_after,
        }
    }
}

fn set_failed(node: &mut NodeStatus, reason: &str, message: &str) {
    node.phase = NodePhase::Failed;
    node.reason = Some(reason.into());
    node.message = Some(message.into());
    node.retry_at = None;
}

/// The first automatic rerun's wait when `spec.retryBackoff` is unset.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
/// The longest wait between automatic reruns.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The node's attempt failed and it has reruns left: it waits `backoff` doubled per rerun
/// already used, then starts again (its workload of the failed attempt is deleted meanwhile).
fn schedule_rerun(
    node: &mut NodeStatus,
    reason: &str,
    message: &str,
    backoff: Duration,
    now: Timestamp,
) {
    let wait = backoff
        .saturating_mul(1u32 << node.auto_retries.clamp(0, 16))
        .min(MAX_BACKOFF);
    node.auto_retries += 1;
    node.phase = NodePhase::Waiting;
    node.last_failure = Some(reason.into());
    node.reason = Some("RetryBackoff".into());
    node.message = Some(format!(
        "attempt {} failed ({reason}: {message}); automatic rerun {} in {}s",
        node.attempts,
        node.auto_retries,
        wait.as_secs()
    ));
    node.pods = 0;
    node.retry_at = Some(Time(now + wait));
}

fn ready_map(obs: &Observed) -> BTreeMap<&str, bool> {
    obs.nodes
        .iter()
        .map(|n| (n.name.as_str(), n.ready))
        .collect()
}

/// Why `node` cannot run: gone or not Ready.
fn node_problem(ready: &BTreeMap<&str, bool>, node: &str) -> Option<(&'static str, String)> {
    match ready.get(node) {
        None => Some((
            "NodeNotFound",
            format!("node {node} does not exist (any more)"),
        )),
        Some(false) => Some(("NodeNotReady", format!("node {node} is not Ready"))),
        Some(true) => None,
    }
}

fn counts(nodes: &[NodeStatus]) -> Counts {
    let n = |phase: NodePhase| nodes.iter().filter(|x| x.phase == phase).count() as i32;
    Counts {
        total: nodes.len() as i32,
        pending: n(NodePhase::Pending),
        running: n(NodePhase::Running),
        succeeded: n(NodePhase::Succeeded),
        failed: n(NodePhase::Failed),
        stopped: n(NodePhase::Stopped),
        waiting: n(NodePhase::Waiting),
    }
}

fn selector_text(selector: &BTreeMap<String, String>) -> String {
    if selector.is_empty() {
        return "(none) and no nodeNames".into();
    }
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `restartPolicy: Always` (the default): Pods must become Ready, not succeed.
pub fn always(spec: &BatchDeploymentSpec) -> bool {
    spec.restart_policy
        .is_none_or(|p| p == super::RestartPolicy::Always)
}

/// The timeout; `None` when it is 0 (no timeout).
pub fn timeout(spec: &BatchDeploymentSpec) -> Result<Option<Duration>, String> {
    let text = spec.timeout.as_deref().unwrap_or(super::DEFAULT_TIMEOUT);
    let limit = duration::parse(text).map_err(|e| format!("spec.timeout: {e}"))?;
    Ok((!limit.is_zero()).then_some(limit))
}

/// The wait before a node's first automatic rerun.
pub fn retry_backoff(spec: &BatchDeploymentSpec) -> Result<Duration, String> {
    match spec.retry_backoff.as_deref() {
        None => Ok(DEFAULT_BACKOFF),
        Some(text) => duration::parse(text)
            .map_err(|e| format!("spec.retryBackoff: {e}; use a duration such as 10s or 1m")),
    }
}

/// How many failed nodes still count as partial success; `None`: any number short of all.
pub fn failure_tolerance(spec: &BatchDeploymentSpec, total: i32) -> Result<Option<i32>, String> {
    super::tolerance::tolerance(spec.failure_tolerance.as_ref(), total).map_err(|what| {
        format!(
            "spec.failureTolerance: {what}; use a count such as 3 or a percentage such as \"10%\""
        )
    })
}

/// What is wrong with the spec, in one message naming the field and the fix; `None` if fine.
pub fn spec_error(spec: &BatchDeploymentSpec, prefix: &str) -> Option<String> {
    if spec.node_names.is_empty() && spec.node_selector.is_empty() {
        return Some(
            "spec.nodeSelector and spec.nodeNames are both empty; choose nodes by labels or by name (an empty choice never means every node)".into(),
        );
    }
    if spec.app_image.trim().is_empty() {
        return Some("spec.appImage is empty; name the AppImage to deploy".into());
    }
    if let Some(name) = spec
        .node_names
        .iter()
        .find(|n| crate::naming::dns1123_subdomain_error(n).is_some())
    {
        return Some(format!("spec.nodeNames: {name:?} is not a node name"));
    }
    if instances(spec) < 1 {
        return Some(format!(
            "spec.instances is {}; it must be at least 1",
            instances(spec)
        ));
    }
    if let Some(p) = spec.parallelism.filter(|p| *p < 1) {
        return Some(format!(
            "spec.parallelism is {p}; it must be at least 1 (unset runs every node at once)"
        ));
    }
    if let Some(r) = spec.retries.filter(|r| *r < 0) {
        return Some(format!(
            "spec.retries is {r}; it must be 0 or more (the automatic reruns of a failed node)"
        ));
    }
    if let Err(e) = retry_backoff(spec) {
        return Some(e);
    }
    if let Err(e) = membership::leave_grace(spec) {
        return Some(e);
    }
    if let Some(e) = super::overrides::overrides_error(spec) {
        return Some(e);
    }
    if let Some(e) = prefix_error(prefix) {
        return Some(e);
    }
    if let Some(e) = prepull::spec_error(spec) {
        return Some(e);
    }
    timeout(spec)
        .err()
        .or_else(|| failure_tolerance(spec, 0).err())
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

/// The pre-pull phase through the whole machine (here, so that `prepull` imports no machine).
#[cfg(test)]
#[path = "prepull_tests.rs"]
mod prepull_tests;
