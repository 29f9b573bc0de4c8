//! The rollout's state machine: a pure function from (policy, previous status, observed facts,
//! now) to the next status and the actions that make the cluster match it. Level-triggered:
//! a move the status records but the workload does not show is sent again, so a leader that
//! died between writing the status and moving a workload loses nothing, and a new leader
//! resumes from the status with no wave repeated or skipped.
//!
//! The status is written before the actions are taken: the status is the rollout's memory of
//! what each moved workload ran before (what an abort moves it back to).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;

use super::types::{
    AppImageRollout, AppImageRolloutStatus, Check, DEFAULT_DEADLINE_SECONDS, Phase, Wave,
    WaveStatus, WorkloadStatus,
};
use super::waves::{in_flight, spec_error, wave_of};

/// What the controller saw of one Auto workload of the AppImage.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkloadFact {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The revision its pod template names; `None` when it names none that is recorded.
    pub runs: Option<i64>,
    pub health: Health,
}

/// How the Pods of a workload's template revision are doing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    /// Pods the workload wants.
    pub desired: i64,
    /// When each Ready Pod on the template's revision became Ready.
    pub ready_since: Vec<Timestamp>,
    /// Pods still running another revision (not being deleted).
    pub others: i64,
    /// The most container restarts of any Pod on the template's revision.
    pub restarts: i32,
    /// Why its Pods are not being created (an admission denial), if they are not.
    pub denied: Option<String>,
}

/// Everything the machine reads besides the policy and its status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Facts {
    /// The AppImage's current revision.
    pub revision: i64,
    pub workloads: Vec<WorkloadFact>,
    /// The check Job of the wave the status names, by name, when it has one and it exists.
    pub check: Option<(String, CheckState)>,
}

/// How a wave's check Job is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckState {
    Running,
    Succeeded,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Point the workload's pod template at revision `to` (forward, or back on abort).
    Move {
        kind: String,
        namespace: String,
        name: String,
        to: i64,
    },
    /// Run the wave's check: a role of revision `revision` as Job `name` in `namespace`.
    Check {
        namespace: String,
        name: String,
        check: Check,
        revision: i64,
    },
    /// An Event on the AppImage.
    Event {
        reason: String,
        message: String,
        warning: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub status: AppImageRolloutStatus,
    pub actions: Vec<Action>,
    /// Look again after this long even if nothing changes (a readiness period or deadline).
    pub requeue: Option<SignedDuration>,
}

/// The next status and actions of rollout `r` given `facts` at `now`.
pub fn step(r: &AppImageRollout, facts: &Facts, now: Timestamp) -> Step {
    let mut m = Machine {
        r,
        facts,
        now,
        s: r.status.clone().unwrap_or_default(),
        actions: Vec::new(),
        requeue: None,
    };
    m.run();
    m.s.observed_generation = r.metadata.generation;
    Step {
        status: m.s,
        actions: m.actions,
        requeue: m.requeue,
    }
}

struct Machine<'a> {
    r: &'a AppImageRollout,
    facts: &'a Facts,
    now: Timestamp,
    s: AppImageRolloutStatus,
    actions: Vec<Action>,
    requeue: Option<SignedDuration>,
}

impl Machine<'_> {
    fn run(&mut self) {
        let spec = &self.r.spec;
        if let Some(e) = spec_error(&spec.waves) {
            return self.stand(self.s.phase.unwrap_or(Phase::Paused), "InvalidSpec", e);
        }
        let target = self.facts.revision;
        if self.s.revision != Some(target) {
            if self.s.failed.contains(&target) && spec.retry != Some(target) {
                return self.hold_failed(target);
            }
            self.start(target);
        } else if self.s.phase == Some(Phase::Aborted) && spec.retry == Some(target) {
            self.s.failed.retain(|f| *f != target);
            self.s.workloads.clear();
            self.start(target);
        }
        let live = !matches!(
            self.s.phase,
            Some(Phase::Succeeded | Phase::Aborting | Phase::Aborted)
        );
        if live && spec.abort == Some(target) {
            let why = format!("revision {target}: aborted by kubectl appimage rollout abort");
            self.abort("Aborted", why);
        }
        self.track();
        if !matches!(
            self.s.phase,
            Some(Phase::Aborting | Phase::Aborted | Phase::Succeeded) | None
        ) {
            self.advance();
        }
        // Also in the step that decided to abort: the way back starts at once.
        if self.s.phase == Some(Phase::Aborting) {
            self.move_back();
        }
        self.count();
    }

    /// A revision that failed before and was not retried: nothing moves to it.
    fn hold_failed(&mut self, target: i64) {
        self.s.revision = Some(target);
        self.s.workloads.clear();
        self.s.waves.clear();
        let why = format!(
            "revision {target} failed before; Auto workloads stay where they are until a new revision or kubectl appimage rollout retry {}",
            self.r.metadata.name.as_deref().unwrap_or_default()
        );
        self.stand(Phase::Aborted, "FailedBefore", why);
    }

    fn start(&mut self, target: i64) {
        let failed = std::mem::take(&mut self.s.failed);
        self.s = AppImageRolloutStatus {
            revision: Some(target),
            phase: Some(Phase::Progressing),
            failed,
            ..AppImageRolloutStatus::default()
        };
        // Nothing to move (a policy made after its revision rolled out): done, quietly.
        if self.facts.workloads.iter().all(|w| w.runs == Some(target)) {
            self.s.wave = self.r.spec.waves.len() as i64;
            let why = format!("revision {target}: every workload already runs it");
            return self.stand(Phase::Succeeded, "Current", why);
        }
        self.enter_wave(0);
        self.event(
            "RolloutStarted",
            format!(
                "revision {target}: {} waves, starting with {:?}",
                self.r.spec.waves.len(),
                self.r.spec.waves[0].name
            ),
            false,
        );
    }

    fn enter_wave(&mut self, i: usize) {
        self.s.wave = i as i64;
        self.s.wave_name = self.r.spec.waves.get(i).map(|w| w.name.clone());
        self.s.wave_started = Some(Time(self.now));
    }

    fn stand(&mut self, phase: Phase, reason: &str, message: String) {
        self.s.phase = Some(phase);
        self.s.reason = Some(reason.into());
        self.s.message = Some(message);
    }

    fn event(&mut self, reason: &str, message: String, warning: bool) {
        self.actions.push(Action::Event {
            reason: reason.into(),
            message,
            warning,
        });
    }

    /// Bring the workload list up to date: every Auto workload, its wave, what it ran before.
    fn track(&mut self) {
        let waves = &self.r.spec.waves;
        let old: BTreeMap<(String, String, String), WorkloadStatus> =
            std::mem::take(&mut self.s.workloads)
                .into_iter()
                .map(|w| ((w.kind.clone(), w.namespace.clone(), w.name.clone()), w))
                .collect();
        let mut list: Vec<WorkloadStatus> = self
            .facts
            .workloads
            .iter()
            .map(|f| {
                let key = (f.kind.clone(), f.namespace.clone(), f.name.clone());
                let kept = old.get(&key);
                WorkloadStatus {
                    kind: f.kind.clone(),
                    namespace: f.namespace.clone(),
                    name: f.name.clone(),
                    // A workload keeps the wave it was moved in, whatever its labels say now.
                    wave: kept
                        .filter(|k| k.moved)
                        .map_or(wave_of(waves, &f.namespace, &f.labels) as i64, |k| k.wave),
                    from: kept.and_then(|k| k.from),
                    moved: kept.is_some_and(|k| k.moved),
                    ready: false,
                }
            })
            .collect();
        list.sort();
        self.s.workloads = list;
    }

    fn fact(&self, w: &WorkloadStatus) -> Option<&WorkloadFact> {
        self.facts
            .workloads
            .iter()
            .find(|f| f.kind == w.kind && f.namespace == w.namespace && f.name == w.name)
    }

    fn wave(&self) -> &Wave {
        let i = (self.s.wave.max(0) as usize).min(self.r.spec.waves.len() - 1);
        &self.r.spec.waves[i]
    }

    /// Whether `f` passes the current wave's readiness on the target; else when it may.
    fn ready(&self, f: &WorkloadFact, target: i64) -> Result<(), Option<Timestamp>> {
        if f.runs != Some(target) || f.health.others > 0 {
            return Err(None);
        }
        if f.health.desired <= 0 {
            return Ok(());
        }
        let period = SignedDuration::from_secs(self.wave().gate.min_ready_seconds);
        let mut since: Vec<Timestamp> = f.health.ready_since.clone();
        since.sort();
        if (since.len() as i64) < f.health.desired {
            return Err(None);
        }
        // The desired-th oldest Ready Pod decides when the workload has been ready long enough.
        let decisive = since.get((f.health.desired - 1) as usize).copied();
        match decisive {
            None => Ok(()),
            Some(t) => {
                let at = t.saturating_add(period).unwrap_or(t);
                if at <= self.now {
                    Ok(())
                } else {
                    Err(Some(at))
                }
            }
        }
    }

    fn waiting(&mut self, at: Timestamp) {
        let wait = at
            .duration_since(self.now)
            .max(SignedDuration::from_secs(1));
        self.requeue = Some(self.requeue.map_or(wait, |r| r.min(wait)));
    }

    fn members(&self, i: i64) -> Vec<WorkloadStatus> {
        self.s
            .workloads
            .iter()
            .filter(|w| w.wave == i)
            .cloned()
            .collect()
    }

    /// Move the current wave on: its gate first, then more of its workloads, then the next wave.
    fn advance(&mut self) {
        let target = self.facts.revision;
        let waves = self.r.spec.waves.len() as i64;
        if self.s.wave >= waves {
            return self.succeed();
        }
        if self.s.phase == Some(Phase::Paused) && !self.r.spec.paused {
            self.s.phase = Some(Phase::Progressing);
            (self.s.reason, self.s.message) = (None, None);
            self.s.wave_started = Some(Time(self.now));
        }
        let i = self.s.wave;
        let members = self.members(i);
        if let Some((reason, why)) = self.gate_failure(&members, target) {
            return self.abort(reason, why);
        }
        for w in members.iter().filter(|w| w.moved) {
            if self.fact(w).and_then(|f| f.runs) != Some(target) {
                self.send(w, target);
            }
        }
        let ready: Vec<bool> = members
            .iter()
            .map(|w| self.fact(w).is_some_and(|f| self.ready(f, target).is_ok()))
            .collect();
        if self.r.spec.paused {
            let why = format!(
                "paused in wave {:?}; kubectl appimage rollout resume",
                self.wave().name
            );
            return self.stand(Phase::Paused, "Paused", why);
        }
        if ready.iter().all(|r| *r) {
            return self.passed(i);
        }
        if self.past_deadline(&members, &ready) {
            return;
        }
        self.move_more(&members, &ready, target);
    }

    /// A restart count over the gate's limit or a denial, among the wave's workloads on `target`.
    fn gate_failure(
        &self,
        members: &[WorkloadStatus],
        target: i64,
    ) -> Option<(&'static str, String)> {
        let wave = self.wave();
        for w in members {
            let Some(f) = self.fact(w).filter(|f| f.runs == Some(target)) else {
                continue;
            };
            let at = format!(
                "wave {:?}: {} {}/{}",
                wave.name, w.kind, w.namespace, w.name
            );
            if let Some(denied) = &f.health.denied {
                return Some(("PodsDenied", format!("{at}: Pods not created: {denied}")));
            }
            if f.health.restarts > wave.gate.max_restarts {
                return Some((
                    "GateFailed",
                    format!(
                        "{at}: a container restarted {} times on revision {target}; the gate allows {}",
                        f.health.restarts, wave.gate.max_restarts
                    ),
                ));
            }
        }
        None
    }

    /// Whether the wave's deadline passed (and the rollout now aborts); else the wake-up set.
    fn past_deadline(&mut self, members: &[WorkloadStatus], ready: &[bool]) -> bool {
        let gate = &self.wave().gate;
        let limit = SignedDuration::from_secs(
            gate.progress_deadline_seconds
                .unwrap_or(DEFAULT_DEADLINE_SECONDS),
        );
        let deadline = self.deadline();
        if self.now < deadline {
            self.waiting(deadline);
            return false;
        }
        let late: Vec<String> = members
            .iter()
            .zip(ready)
            .filter(|(_, r)| !**r)
            .map(|(w, _)| format!("{} {}/{}", w.kind, w.namespace, w.name))
            .collect();
        let why = format!(
            "wave {:?} did not pass its gate within {}s: {} of {} workloads not ready on revision {} ({}{})",
            self.wave().name,
            limit.as_secs(),
            late.len(),
            members.len(),
            self.facts.revision,
            late.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if late.len() > 3 { ", …" } else { "" }
        );
        self.abort("ProgressDeadlineExceeded", why);
        true
    }

    /// Move as many more of the wave's workloads as its in-flight limit allows.
    fn move_more(&mut self, members: &[WorkloadStatus], ready: &[bool], target: i64) {
        let limit = in_flight(self.wave().max_in_flight.as_ref(), members.len()).unwrap_or(1);
        let mut moving = 0;
        let mut next = Vec::new();
        for (w, r) in members.iter().zip(ready) {
            let f = self.fact(w);
            let on_target = w.moved || f.is_some_and(|f| f.runs == Some(target));
            if on_target && !r {
                moving += 1;
                if let Some(Err(Some(at))) = f.map(|f| self.ready(f, target)) {
                    self.waiting(at);
                }
            } else if !on_target {
                next.push(w.clone());
            }
        }
        for w in next.into_iter().take(limit.saturating_sub(moving)) {
            let from = self.fact(&w).and_then(|f| f.runs);
            if let Some(s) = self.s.workloads.iter_mut().find(|s| **s == w) {
                s.moved = true;
                s.from = from;
            }
            self.send(&w, target);
        }
        self.s.phase = Some(Phase::Progressing);
    }

    /// The wave's check Job, when it has one: `true` once it succeeded; else it is made, or
    /// waited for until the wave's deadline, or its failure aborts the rollout.
    fn checked(&mut self, i: i64) -> bool {
        let target = self.facts.revision;
        let wave = self.wave().clone();
        let Some(check) = wave.gate.check.clone() else {
            return true;
        };
        let name = super::types::check_name(
            self.r.metadata.name.as_deref().unwrap_or_default(),
            target,
            i,
        );
        let at = format!("wave {:?}: check Job {}/{name}", wave.name, check.namespace);
        let state = self
            .facts
            .check
            .as_ref()
            .filter(|(n, _)| *n == name)
            .map(|(_, s)| s);
        match state {
            Some(CheckState::Succeeded) => return true,
            Some(CheckState::Failed(why)) => {
                self.abort("CheckFailed", format!("{at} failed: {why}"));
                return false;
            }
            Some(CheckState::Running) => {}
            None => self.actions.push(Action::Check {
                namespace: check.namespace.clone(),
                name,
                check,
                revision: target,
            }),
        }
        let deadline = self.deadline();
        if self.now >= deadline {
            let secs = wave
                .gate
                .progress_deadline_seconds
                .unwrap_or(DEFAULT_DEADLINE_SECONDS);
            self.abort(
                "ProgressDeadlineExceeded",
                format!("{at} did not succeed within {secs}s"),
            );
            return false;
        }
        self.waiting(deadline);
        self.stand(Phase::Progressing, "Checking", format!("{at} is running"));
        false
    }

    /// When the current wave's deadline passes.
    fn deadline(&self) -> Timestamp {
        let gate = &self.wave().gate;
        let limit = SignedDuration::from_secs(
            gate.progress_deadline_seconds
                .unwrap_or(DEFAULT_DEADLINE_SECONDS),
        );
        let started = self.s.wave_started.as_ref().map_or(self.now, |t| t.0);
        started.saturating_add(limit).unwrap_or(started)
    }

    /// The wave passed its gate: wait for a promotion if it asks for one, else the next wave.
    fn passed(&mut self, i: i64) {
        if !self.checked(i) {
            return;
        }
        let target = self.facts.revision;
        let wave = self.wave().clone();
        let promoted = self
            .r
            .spec
            .promote
            .is_some_and(|p| p.revision == target && p.wave == i);
        if wave.gate.pause && !promoted {
            if self.s.phase != Some(Phase::WaitingForPromote) {
                self.event("WaitingForPromote", format!("revision {target}: wave {:?} passed its gate; kubectl appimage rollout promote {} moves on", wave.name, self.r.metadata.name.as_deref().unwrap_or_default()), false);
            }
            let why = format!(
                "wave {:?} passed its gate; waiting for kubectl appimage rollout promote",
                wave.name
            );
            return self.stand(Phase::WaitingForPromote, "WaitingForPromote", why);
        }
        self.event(
            "WavePassed",
            format!("revision {target}: wave {:?} passed its gate", wave.name),
            false,
        );
        self.s.phase = Some(Phase::Progressing);
        (self.s.reason, self.s.message) = (None, None);
        if i + 1 >= self.r.spec.waves.len() as i64 {
            self.s.wave = i + 1;
            self.s.wave_name = None;
            return self.succeed();
        }
        self.enter_wave((i + 1) as usize);
        self.advance();
    }

    fn succeed(&mut self) {
        let target = self.facts.revision;
        let why = format!("revision {target}: every wave passed its gate");
        self.event("RolloutSucceeded", why.clone(), false);
        self.stand(Phase::Succeeded, "Succeeded", why);
    }

    fn abort(&mut self, reason: &str, why: String) {
        self.event(
            "RolloutAborting",
            format!("{why}; moving every moved workload back"),
            true,
        );
        self.stand(Phase::Aborting, reason, why);
        self.requeue = None;
    }

    /// Move every moved workload back to what it ran before; Aborted once all are back.
    fn move_back(&mut self) {
        let mut pending = 0;
        let moved: Vec<WorkloadStatus> = self
            .s
            .workloads
            .iter()
            .filter(|w| w.moved)
            .cloned()
            .collect();
        for w in &moved {
            let Some(from) = w.from else { continue };
            if self.fact(w).and_then(|f| f.runs) != Some(from) {
                pending += 1;
                self.send(w, from);
            }
        }
        if pending > 0 {
            return;
        }
        let target = self.facts.revision;
        if !self.s.failed.contains(&target) {
            self.s.failed.push(target);
        }
        self.s.phase = Some(Phase::Aborted);
        let back = moved.iter().filter(|w| w.from.is_some()).count();
        self.event(
            "RolloutAborted",
            format!("revision {target}: {back} moved workloads are back on their previous revision; it is not tried again until kubectl appimage rollout retry"),
            true,
        );
    }

    fn send(&mut self, w: &WorkloadStatus, to: i64) {
        self.actions.push(Action::Move {
            kind: w.kind.clone(),
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            to,
        });
    }

    /// Each wave's and workload's counts on the target.
    fn count(&mut self) {
        let Some(target) = self.s.revision else {
            return;
        };
        let flags: Vec<bool> = self
            .s
            .workloads
            .iter()
            .map(|w| self.fact(w).is_some_and(|f| self.ready(f, target).is_ok()))
            .collect();
        for (w, r) in self.s.workloads.iter_mut().zip(&flags) {
            w.ready = *r;
        }
        let updated = |w: &WorkloadStatus| self.fact(w).and_then(|f| f.runs) == Some(target);
        self.s.waves = self
            .r
            .spec
            .waves
            .iter()
            .enumerate()
            .map(|(i, wave)| {
                let of: Vec<&WorkloadStatus> = self
                    .s
                    .workloads
                    .iter()
                    .filter(|w| w.wave == i as i64)
                    .collect();
                WaveStatus {
                    name: wave.name.clone(),
                    workloads: of.len() as i64,
                    updated: of.iter().filter(|w| updated(w)).count() as i64,
                    ready: of.iter().filter(|w| w.ready).count() as i64,
                }
            })
            .collect();
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
