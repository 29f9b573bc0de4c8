//! `kubectl appimage rollout status|pause|resume|promote|abort|retry APPIMAGE`: read and steer
//! an AppImage's progressive rollout (its AppImageRollout of the same name, issue 28). The
//! controller does the moving; these commands read its status or set the spec fields it reads
//! (`paused`, `promote`, `abort`, `retry`), each tied to a revision so a late command never
//! steers a newer rollout.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use appimage::progressive::{AppImageRollout, AppImageRolloutStatus, Phase, RESOURCE};
use appimage::resource::AppImage;
use clap::{Args, Subcommand};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Patch, PatchParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::client::{Cluster, block_on, server_error};
use crate::flags::Global;
use crate::output::{println, table};

#[derive(Subcommand, Debug)]
pub enum WavesCommand {
    /// Show where the progressive rollout stands, wave by wave; -w follows it to the end and
    /// exits non-zero when it aborts, as kubectl rollout status does
    Status(StatusArgs),
    /// Move no more workloads until resume
    Pause(NameArg),
    /// Go on after pause
    Resume(NameArg),
    /// Pass the manual pause of the wave the rollout waits in
    Promote(NameArg),
    /// Move every workload the rollout moved back to the revision it ran before
    Abort(NameArg),
    /// Roll an aborted revision out again
    Retry(NameArg),
}

#[derive(Args, Debug)]
pub struct NameArg {
    /// The AppImage (its AppImageRollout has the same name)
    pub name: String,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The AppImage (its AppImageRollout has the same name)
    pub name: String,
    /// Follow the rollout until it succeeds (exit 0) or aborts (exit 1)
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With -w: give up after this long (0: never), e.g. 10m
    #[arg(long, default_value = "0", value_name = "DURATION")]
    pub timeout: String,
}

pub fn run(global: &Global, command: &WavesCommand) -> Result<()> {
    block_on(async {
        let cluster = Cluster::connect(global).await?;
        let (client, server, context) = cluster.parts();
        let api = Api::<AppImageRollout>::all(client.clone());
        let get = |name: String| {
            let api = api.clone();
            async move {
                read(&api, &name)
                    .await
                    .map_err(|e| server_error(e, server, context))?
            }
        };
        match command {
            WavesCommand::Status(a) if a.watch => {
                watch(&client, a, get(a.name.clone()).await?).await
            }
            WavesCommand::Status(a) => println(&snapshot(&get(a.name.clone()).await?)),
            WavesCommand::Pause(a) => {
                steer(&client, &a.name, json!({"paused": true}), "paused").await
            }
            WavesCommand::Resume(a) => {
                steer(&client, &a.name, json!({"paused": null}), "resumed").await
            }
            WavesCommand::Promote(a) => {
                let r = get(a.name.clone()).await?;
                let (revision, wave) = promotable(&r)?;
                let spec = json!({"promote": {"revision": revision, "wave": wave}});
                steer(&client, &a.name, spec, "promoted").await
            }
            WavesCommand::Abort(a) => {
                let revision = abortable(&get(a.name.clone()).await?)?;
                steer(&client, &a.name, json!({"abort": revision}), "aborted").await
            }
            WavesCommand::Retry(a) => {
                let revision = retriable(&get(a.name.clone()).await?)?;
                let spec = json!({"retry": revision, "abort": null});
                steer(&client, &a.name, spec, "retried").await
            }
        }
    })
}

/// The rollout policy of AppImage `name`, or an error saying there is none and what that means.
async fn read(api: &Api<AppImageRollout>, name: &str) -> kube::Result<Result<AppImageRollout>> {
    Ok(match api.get_opt(name).await? {
        Some(r) => Ok(r),
        None => Err(anyhow::anyhow!(
            "AppImage {name:?} has no progressive rollout ({RESOURCE} {name:?} not found): its Auto workloads move to a new revision all at once; create an AppImageRollout named {name:?} to roll it out in waves (README: Progressive rollouts)"
        )),
    })
}

/// Merge-patch the spec and say so as kubectl does.
async fn steer(client: &Client, name: &str, spec: Value, done: &str) -> Result<()> {
    let api = Api::<AppImageRollout>::all(client.clone());
    let params = PatchParams::default();
    api.patch(name, &params, &Patch::Merge(json!({"spec": spec})))
        .await
        .map_err(|e| anyhow::anyhow!("{RESOURCE} {name:?}: {e}"))?;
    println(&format!(
        "appimagerollout.appimage.kuscia.secretflow/{name} {done}"
    ))
}

fn stand(r: &AppImageRollout) -> (AppImageRolloutStatus, Option<Phase>, i64) {
    let s = r.status.clone().unwrap_or_default();
    let phase = s.phase;
    (s.clone(), phase, s.revision.unwrap_or(0))
}

/// The revision and wave a promote passes: only a rollout that waits for one.
fn promotable(r: &AppImageRollout) -> Result<(i64, i64)> {
    let (s, phase, revision) = stand(r);
    if phase != Some(Phase::WaitingForPromote) {
        bail!("nothing to promote: {}", line(r));
    }
    Ok((revision, s.wave))
}

/// The revision an abort stops: only a rollout still under way.
fn abortable(r: &AppImageRollout) -> Result<i64> {
    let (_, phase, revision) = stand(r);
    match phase {
        Some(Phase::Progressing | Phase::Paused | Phase::WaitingForPromote) => Ok(revision),
        _ => bail!(
            "nothing to abort: {}; to go back after a rollout succeeded, use kubectl appimage rollback {} --to-revision N",
            line(r),
            r.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

/// The revision a retry rolls out again: only an aborted one.
fn retriable(r: &AppImageRollout) -> Result<i64> {
    let (s, phase, revision) = stand(r);
    if phase != Some(Phase::Aborted) || !s.failed.contains(&revision) {
        bail!("nothing to retry: {}", line(r));
    }
    Ok(revision)
}

/// Where AppImage `name`'s progressive rollout stands, if it has one (and the CRD is there).
pub async fn progress(client: &Client, name: &str) -> Option<String> {
    let api = Api::<AppImageRollout>::all(client.clone());
    api.get_opt(name).await.ok().flatten().map(|r| line(&r))
}

/// One line: where the rollout stands.
pub fn line(r: &AppImageRollout) -> String {
    let (s, phase, revision) = stand(r);
    let waves = r.spec.waves.len();
    let Some(phase) = phase else {
        return "no rollout yet (the controller has not read this policy: is the webhook running as leader?)".into();
    };
    let mut text = format!("revision {revision} {}", phase.as_str());
    if let (Some(name), Some(w)) = (&s.wave_name, s.waves.get(s.wave as usize)) {
        text += &format!(
            " in wave {}/{waves} {name:?}: {} of {} workloads updated, {} ready",
            s.wave + 1,
            w.updated,
            w.workloads,
            w.ready
        );
    }
    if let Some(m) = s.message.as_deref().filter(|_| phase != Phase::Progressing) {
        text += &format!(" ({}: {m})", s.reason.as_deref().unwrap_or_default());
    }
    text
}

/// The whole picture: the line, each wave, each workload.
fn snapshot(r: &AppImageRollout) -> String {
    let (s, _, _) = stand(r);
    let mut out = format!(
        "AppImage {:?}: {}\n\n",
        r.metadata.name.as_deref().unwrap_or_default(),
        line(r)
    );
    let mut rows = vec![
        ["WAVE", "WORKLOADS", "UPDATED", "READY", "STATE"]
            .map(String::from)
            .to_vec(),
    ];
    for (i, w) in s.waves.iter().enumerate() {
        let state = match (i as i64).cmp(&s.wave) {
            std::cmp::Ordering::Less => "passed",
            std::cmp::Ordering::Equal => s.phase.map_or("", Phase::as_str),
            std::cmp::Ordering::Greater => "waiting",
        };
        rows.push(vec![
            w.name.clone(),
            w.workloads.to_string(),
            w.updated.to_string(),
            w.ready.to_string(),
            state.into(),
        ]);
    }
    out += &table(&rows);
    let mut rows = vec![
        ["WORKLOAD", "WAVE", "FROM", "MOVED", "READY"]
            .map(String::from)
            .to_vec(),
    ];
    for w in &s.workloads {
        let wave = s
            .waves
            .get(w.wave as usize)
            .map_or("?", |x| x.name.as_str());
        let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
        rows.push(vec![
            format!("{}/{} -n {}", w.kind.to_lowercase(), w.name, w.namespace),
            wave.into(),
            w.from.map_or("-".into(), |f| f.to_string()),
            yes(w.moved),
            yes(w.ready),
        ]);
    }
    out + "\n" + &table(&rows)
}

/// Print a line each time the rollout's status changes (every version, by a watch), until
/// the rollout of the AppImage's current revision ends.
async fn watch(client: &Client, a: &StatusArgs, first: AppImageRollout) -> Result<()> {
    let limit = appimage::duration::parse(&a.timeout).map_err(|e| {
        anyhow::anyhow!("--timeout: {e}; use a duration such as 10m, or 0 for none")
    })?;
    let deadline = (!limit.is_zero()).then(|| Instant::now() + limit);
    let api = Api::<AppImageRollout>::all(client.clone());
    let params = WatchParams::default().fields(&format!("metadata.name={}", a.name));
    let mut last = String::new();
    let mut next = Some(first);
    loop {
        if let Some(r) = next.take() {
            if let Some(end) = ended(client, &r, &mut last).await? {
                return end;
            }
            let version = r.metadata.resource_version.clone().unwrap_or_default();
            let mut events = api.watch(&params, &version).await?.boxed();
            loop {
                let wait = deadline.map_or(Duration::from_secs(3600), |d| {
                    d.saturating_duration_since(Instant::now())
                });
                let event = match tokio::time::timeout(wait, events.try_next()).await {
                    Err(_) => bail!(
                        "timed out after {} waiting for the rollout to end",
                        a.timeout
                    ),
                    Ok(event) => event?,
                };
                match event {
                    Some(WatchEvent::Added(r) | WatchEvent::Modified(r)) => {
                        if let Some(end) = ended(client, &r, &mut last).await? {
                            return end;
                        }
                    }
                    Some(WatchEvent::Deleted(_)) => {
                        bail!("{RESOURCE} {:?} was deleted", a.name)
                    }
                    Some(WatchEvent::Bookmark(_)) => {}
                    // The watch expired or failed: read again and watch from there.
                    Some(WatchEvent::Error(_)) | None => break,
                }
            }
        }
        next = Some(read(&api, &a.name).await??);
    }
}

/// Print `r`'s line if it changed; whether the rollout of the AppImage's current revision
/// ended (Ok: succeeded; Err: aborted).
async fn ended(
    client: &Client,
    r: &AppImageRollout,
    last: &mut String,
) -> Result<Option<Result<()>>> {
    let now = line(r);
    if now != *last {
        println(&now)?;
        *last = now;
    }
    let status = r.status.clone().unwrap_or_default();
    let name = r.metadata.name.clone().unwrap_or_default();
    let settled = r.metadata.generation == status.observed_generation
        && status.revision.is_some()
        && status.revision == current_revision(client, &name).await?;
    Ok(match status.phase {
        Some(Phase::Succeeded) if settled => Some(Ok(())),
        Some(Phase::Aborted) if settled => Some(Err(anyhow::anyhow!(
            "rollout of revision {} aborted",
            status.revision.unwrap_or(0)
        ))),
        _ => None,
    })
}

/// The number of the AppImage's current revision, once recorded.
async fn current_revision(client: &Client, name: &str) -> Result<Option<i64>> {
    let Some(image) = Api::<AppImage>::all(client.clone()).get_opt(name).await? else {
        return Ok(None);
    };
    let hash = appimage::workload::revision_hash(&image.spec);
    let revs = crate::history::revisions(client, name).await?;
    Ok(revs
        .iter()
        .find(|r| r.spec.hash == hash)
        .map(|r| r.spec.revision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use appimage::progressive::{AppImageRolloutSpec, Wave, WaveStatus};

    fn rollout(phase: Phase) -> AppImageRollout {
        let mut r = AppImageRollout::new(
            "app",
            AppImageRolloutSpec {
                waves: vec![
                    Wave {
                        name: "canary".into(),
                        ..Wave::default()
                    },
                    Wave {
                        name: "rest".into(),
                        ..Wave::default()
                    },
                ],
                ..AppImageRolloutSpec::default()
            },
        );
        r.status = Some(AppImageRolloutStatus {
            revision: Some(3),
            phase: Some(phase),
            wave: 0,
            wave_name: Some("canary".into()),
            reason: Some("WaitingForPromote".into()),
            message: Some("wave \"canary\" passed its gate".into()),
            waves: vec![WaveStatus {
                name: "canary".into(),
                workloads: 1,
                updated: 1,
                ready: 1,
            }],
            failed: if phase == Phase::Aborted {
                vec![3]
            } else {
                vec![]
            },
            ..AppImageRolloutStatus::default()
        });
        r
    }

    #[test]
    fn the_line_says_revision_phase_wave_and_counts() {
        assert_eq!(
            line(&rollout(Phase::WaitingForPromote)),
            "revision 3 WaitingForPromote in wave 1/2 \"canary\": 1 of 1 workloads updated, 1 ready (WaitingForPromote: wave \"canary\" passed its gate)"
        );
    }

    #[test]
    fn each_command_acts_only_where_it_means_something() {
        assert_eq!(
            promotable(&rollout(Phase::WaitingForPromote)).unwrap(),
            (3, 0)
        );
        let e = promotable(&rollout(Phase::Progressing))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("nothing to promote: revision 3 Progressing"),
            "{e}"
        );
        assert_eq!(abortable(&rollout(Phase::Paused)).unwrap(), 3);
        let e = abortable(&rollout(Phase::Succeeded))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kubectl appimage rollback app --to-revision N"),
            "{e}"
        );
        assert_eq!(retriable(&rollout(Phase::Aborted)).unwrap(), 3);
        assert!(retriable(&rollout(Phase::Progressing)).is_err());
    }
}
