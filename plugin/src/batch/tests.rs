//! The batch commands' pure parts: flags to object, the table, the describe page.

use appimage::batch::machine::COND_FAILED;
use appimage::batch::{BatchDeploymentSpec, NodeStatus, Phase, RestartPolicy};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::create::*;
use super::describe::*;
use super::get::*;
use super::*;
use appimage::batch::{BatchDeploymentStatus, Counts, NodePhase};
use clap::Parser;

#[derive(Parser, Debug)]
struct Cmd {
    #[command(subcommand)]
    batch: BatchCommand,
}

fn create_args(args: &[&str]) -> Result<CreateArgs, clap::Error> {
    let mut full = vec!["x", "create"];
    full.extend_from_slice(args);
    match Cmd::try_parse_from(full)?.batch {
        BatchCommand::Create(c) => Ok(*c),
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_builds_the_spec_from_flags() {
    let c = create_args(&[
        "job",
        "--appimage",
        "app",
        "--node-selector",
        "pool=edge,zone=a",
        "--instances",
        "2",
        "--restart-policy",
        "onfailure",
        "--failure-tolerance",
        "10%",
        "--parallelism",
        "5",
        "--timeout",
        "90s",
        "--set",
        "A=1",
        "--host-pid",
    ])
    .unwrap();
    let bd = build(&c, "ns").unwrap();
    let s = &bd.spec;
    assert_eq!(s.node_selector.len(), 2);
    assert_eq!(s.restart_policy, Some(RestartPolicy::OnFailure));
    assert_eq!(s.failure_tolerance, Some(IntOrString::String("10%".into())));
    assert_eq!(
        (s.instances, s.parallelism, s.host_pid),
        (Some(2), Some(5), Some(true))
    );
    assert_eq!(s.values["A"], "1");
    assert_eq!(bd.metadata.namespace.as_deref(), Some("ns"));
    let c = create_args(&[
        "job",
        "--appimage",
        "app",
        "--nodes",
        "a,b",
        "--failure-tolerance",
        "3",
    ])
    .unwrap();
    let bd = build(&c, "ns").unwrap();
    assert_eq!(bd.spec.node_names, ["a", "b"]);
    assert_eq!(bd.spec.failure_tolerance, Some(IntOrString::Int(3)));
}

#[test]
fn create_refuses_bad_input_before_sending() {
    let e = create_args(&["job", "--appimage", "app"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--node-selector") && e.contains("--nodes"),
        "{e}"
    );
    let e = create_args(&[
        "job",
        "--appimage",
        "app",
        "--nodes",
        "a",
        "--restart-policy",
        "Sometimes",
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("Sometimes") && e.contains("OnFailure"), "{e}");
    let bad = |args: &[&str]| {
        build(&create_args(args).unwrap(), "ns")
            .unwrap_err()
            .to_string()
    };
    let e = bad(&["job", "--appimage", "app", "--nodes", ","]);
    assert!(e.contains("never means every node"), "{e}");
    let e = bad(&["job", "--appimage", "app", "--node-selector", "pool"]);
    assert!(e.contains("not KEY=VALUE"), "{e}");
    let e = bad(&[
        "job",
        "--appimage",
        "app",
        "--nodes",
        "a",
        "--timeout",
        "soon",
    ]);
    assert!(e.contains("spec.timeout"), "{e}");
    let e = bad(&[
        "job",
        "--appimage",
        "app",
        "--nodes",
        "a",
        "--instances",
        "0",
    ]);
    assert!(e.contains("spec.instances"), "{e}");
    let e = bad(&["Job", "--appimage", "app", "--nodes", "a"]);
    assert!(e.contains("DNS-1123"), "{e}");
}

fn job(phase: Phase, succeeded: i32, failed: i32, total: i32) -> BatchDeployment {
    let mut bd = BatchDeployment::new("job", BatchDeploymentSpec::default());
    bd.status = Some(BatchDeploymentStatus {
        phase,
        summary: format!("{succeeded}/{total}"),
        counts: Counts {
            total,
            succeeded,
            failed,
            running: total - succeeded - failed,
            ..Default::default()
        },
        nodes: vec![NodeStatus {
            node: "edge-1".into(),
            phase: NodePhase::Failed,
            reason: Some("NodeNotReady".into()),
            message: Some("node edge-1 is not Ready".into()),
            pods: 0,
            attempts: 1,
            ..Default::default()
        }],
        ..Default::default()
    });
    bd
}

#[test]
fn table_progress_and_describe() {
    let bd = job(Phase::Running, 17, 1, 20);
    let out = rows(std::slice::from_ref(&bd), false, true, 0);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "PHASE", "SUCCEEDED", "FAILED", "AGE"]);
    assert_eq!(lines[1], ["job", "Running", "17/20", "1", "<unknown>"]);
    let line = progress_line(&bd);
    assert!(
        line.starts_with("job Running 17/20 succeeded, 1 failed, 2 running"),
        "{line}"
    );
    assert!(line.ends_with("[##################--] 90%"), "{line}");
    let text = describe(&bd, 0);
    assert!(text.contains("Phase:"), "{text}");
    let node_line = text.lines().find(|l| l.contains("edge-1")).unwrap();
    let cells: Vec<&str> = node_line.split_whitespace().collect();
    assert_eq!(
        &cells[..5],
        ["edge-1", "Failed", "0/1", "1", "NodeNotReady"]
    );
}

#[test]
fn a_watched_job_is_done_only_on_a_current_final_status() {
    let mut bd = job(Phase::Succeeded, 1, 0, 1);
    bd.metadata.generation = Some(2);
    assert!(!items_done(&[bd.clone()]), "status of an older generation");
    bd.status.as_mut().unwrap().observed_generation = Some(2);
    assert!(items_done(&[bd.clone()]));
    bd.status.as_mut().unwrap().phase = Phase::Stopping;
    assert!(!items_done(&[bd]));
}

#[test]
fn a_watched_job_that_failed_or_timed_out_is_an_error() {
    for ok in [Phase::Succeeded, Phase::PartiallySucceeded, Phase::Stopped] {
        assert!(watched_end(&job(ok, 1, 0, 1)).is_ok(), "{ok:?}");
    }
    let mut bd = job(Phase::TimedOut, 0, 0, 1);
    bd.metadata.namespace = Some("ns".into());
    bd.status.as_mut().unwrap().conditions.push(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: COND_FAILED.into(),
            status: "True".into(),
            reason: "TimedOut".into(),
            message: "took longer than 10m".into(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::UNIX_EPOCH,
            ),
        },
    );
    let e = watched_end(&bd).unwrap_err().to_string();
    assert_eq!(
        e,
        "batchdeployment.appimage.kuscia.secretflow/job ended TimedOut: took longer than 10m; see kubectl appimage batch describe job -n ns"
    );
    let e = watched_end(&job(Phase::Failed, 0, 1, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/job ended Failed; see"), "{e}");
}

#[test]
fn describe_is_one_page_aligned_as_kubectl_describe() {
    let text = describe(&job(Phase::Running, 17, 1, 20), 0);
    // One key column for the spec and the status (padding 2, as kubectl's tabwriter), and
    // the tables aligned in place.
    assert!(text.starts_with("Name:               job\n"), "{text}");
    assert!(
        text.contains("\nFailure Tolerance:  <any short of all>\n"),
        "{text}"
    );
    let tail = "Conditions:
  <none>
Nodes:
  NODE    PHASE   PODS  ATTEMPTS  REASON        MESSAGE
  edge-1  Failed  0/1   1         NodeNotReady  node edge-1 is not Ready
";
    assert!(text.ends_with(tail), "{text}");
}

#[test]
fn create_takes_retries_and_describe_shows_them_and_waiting_nodes() {
    let c = create_args(&[
        "job",
        "--appimage",
        "app",
        "--nodes",
        "a",
        "--retries",
        "2",
        "--retry-backoff",
        "5s",
    ])
    .unwrap();
    let bd = build(&c, "ns").unwrap();
    assert_eq!(
        (bd.spec.retries, bd.spec.retry_backoff.as_deref()),
        (Some(2), Some("5s"))
    );
    let mut job = job(Phase::Running, 17, 0, 20);
    job.spec.retries = Some(2);
    job.status.as_mut().unwrap().counts.waiting = 3;
    job.status.as_mut().unwrap().counts.running = 0;
    let line = progress_line(&job);
    assert!(line.contains("0 stopped, 3 waiting ["), "{line}");
    let text = describe(&job, 0);
    assert!(text.contains("Waiting:"), "{text}");
    assert!(text.contains("2 per node, backoff 10s doubling"), "{text}");
    let e = build(
        &create_args(&[
            "job",
            "--appimage",
            "app",
            "--nodes",
            "a",
            "--retry-backoff",
            "later",
        ])
        .unwrap(),
        "ns",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("spec.retryBackoff"), "{e}");
}

#[test]
fn jobs_without_retries_or_waiting_nodes_read_as_before() {
    let bd = job(Phase::Running, 17, 1, 20);
    assert!(!progress_line(&bd).contains("waiting"));
    let text = describe(&bd, 0);
    assert!(
        !text.contains("Waiting:") && !text.contains("Retries:"),
        "{text}"
    );
}

#[test]
fn create_reads_overrides_and_refuses_one_of_the_image_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("o.yaml");
    std::fs::write(
        &file,
        "- nodeSelector: {size: big}\n  replicas: 2\n  env: {MODE: big}\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let args = [
        "job",
        "--appimage",
        "app",
        "--nodes",
        "a",
        "--overrides",
        path,
    ];
    let bd = build(&create_args(&args).unwrap(), "ns").unwrap();
    let o = &bd.spec.overrides[0];
    assert_eq!((o.replicas, o.env["MODE"].as_str()), (Some(2), "big"));
    let text = describe(&bd, 0);
    assert!(
        text.contains("[0] size=big: replicas=2 env=MODE=big"),
        "{text}"
    );
    std::fs::write(&file, "- nodeSelector: {size: big}\n  image: evil:1\n").unwrap();
    let e = build(&create_args(&args).unwrap(), "ns")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("spec.overrides[0].image: the AppImage's signature covers the image"),
        "{e}"
    );
    std::fs::write(&file, "nodeSelector: {size: big}\n").unwrap();
    let e = build(&create_args(&args).unwrap(), "ns")
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a list of overrides"), "{e}");
}

#[test]
fn create_takes_the_continuous_mode_and_its_grace() {
    let args = [
        "job",
        "--appimage",
        "app",
        "--node-selector",
        "pool=edge",
        "--mode",
        "continuous",
        "--leave-grace",
        "30s",
    ];
    let bd = build(&create_args(&args).unwrap(), "ns").unwrap();
    assert_eq!(bd.spec.mode, Some(appimage::batch::Mode::Continuous));
    assert_eq!(bd.spec.leave_grace.as_deref(), Some("30s"));
    let text = describe(&bd, 0);
    assert!(
        text.contains("Continuous (a node that stops matching keeps the app 30s)"),
        "{text}"
    );
    let mut bad = args;
    bad[8] = "soonish";
    let e = build(&create_args(&bad).unwrap(), "ns")
        .unwrap_err()
        .to_string();
    assert!(e.contains("spec.leaveGrace"), "{e}");
}

#[test]
fn a_watch_tells_joins_and_leaves() {
    let at = |names: &[(&str, bool)]| {
        let mut bd = job(Phase::Running, 0, 0, names.len() as i32);
        bd.status.as_mut().unwrap().nodes = names
            .iter()
            .map(|(n, leaving)| NodeStatus {
                node: n.to_string(),
                leaving_since: leaving.then(|| {
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                    )
                }),
                ..Default::default()
            })
            .collect();
        bd
    };
    let before = at(&[("edge-1", false), ("edge-2", false), ("edge-3", true)]);
    let after = at(&[("edge-0", false), ("edge-2", true), ("edge-3", false)]);
    assert_eq!(
        membership_lines(&before, &after),
        [
            "job node edge-0 joined",
            "job node edge-1 left",
            "job node edge-2 no longer matches: leaving after the grace",
            "job node edge-3 matches again: stays",
        ]
    );
    assert!(membership_lines(&after, &after).is_empty());
}

#[test]
fn describe_says_when_a_message_was_left_out() {
    let mut bd = job(Phase::Failed, 0, 1, 1);
    bd.status.as_mut().unwrap().nodes[0].message = None;
    let text = describe(&bd, 0);
    let line = text.lines().find(|l| l.contains("edge-1")).unwrap();
    assert!(
        line.contains("(message left out: the status keeps 128 KiB"),
        "{line}"
    );
}

#[test]
fn create_takes_the_pre_pull_flags_and_refuses_bad_ones_naming_the_field() {
    let base = ["job", "--appimage", "app", "--nodes", "a"];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        build(&create_args(&args).unwrap(), "ns")
    };
    assert_eq!(with(&[]).unwrap().spec.pre_pull, None);
    let p = with(&["--pre-pull"]).unwrap().spec.pre_pull.unwrap();
    assert_eq!(p, appimage::batch::PrePull::default());
    // Any setting asks for the pre-pull.
    let p = with(&[
        "--pre-pull-concurrency",
        "3",
        "--pre-pull-timeout",
        "2m",
        "--pre-pull-failure-tolerance",
        "20%",
    ])
    .unwrap()
    .spec
    .pre_pull
    .unwrap();
    assert_eq!(
        (p.concurrency, p.timeout.as_deref(), p.failure_tolerance),
        (Some(3), Some("2m"), Some(IntOrString::String("20%".into())))
    );
    let p = with(&["--pre-pull-failure-tolerance", "2"]).unwrap();
    assert_eq!(
        p.spec.pre_pull.unwrap().failure_tolerance,
        Some(IntOrString::Int(2))
    );
    for (extra, field) in [
        (
            ["--pre-pull-concurrency", "0"],
            "spec.prePull.concurrency is 0; it must be at least 1",
        ),
        (["--pre-pull-timeout", "soon"], "spec.prePull.timeout:"),
        (
            ["--pre-pull-failure-tolerance", "lots"],
            "spec.prePull.failureTolerance:",
        ),
    ] {
        let e = with(&extra).unwrap_err().to_string();
        assert!(e.starts_with(field), "{e}");
        assert!(e.contains(extra[0]), "names the flag: {e}");
    }
}

fn pre_pulling_job() -> BatchDeployment {
    use appimage::batch::{PrePull, PullCounts, PullPhase, PullStatus};
    let mut bd = job(Phase::PrePulling, 0, 1, 3);
    bd.spec.pre_pull = Some(PrePull {
        concurrency: Some(2),
        failure_tolerance: Some(IntOrString::Int(1)),
        ..Default::default()
    });
    let s = bd.status.as_mut().unwrap();
    s.counts.running = 0;
    s.counts.pending = 2;
    s.pulls = Some(PullCounts {
        pending: 0,
        pulling: 1,
        pulled: 1,
        failed: 1,
    });
    s.nodes = vec![
        NodeStatus {
            node: "edge-1".into(),
            phase: NodePhase::Pending,
            pull: Some(PullStatus {
                phase: PullPhase::Pulled,
                ..Default::default()
            }),
            ..Default::default()
        },
        NodeStatus {
            node: "edge-2".into(),
            phase: NodePhase::Failed,
            reason: Some("PullFailed".into()),
            message: Some("the image pull on node edge-2 failed".into()),
            pull: Some(PullStatus {
                phase: PullPhase::Failed,
                reason: Some("ErrImagePull".into()),
                message: Some("manifest unknown".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        NodeStatus {
            node: "edge-3".into(),
            phase: NodePhase::Pending,
            pull: Some(PullStatus {
                phase: PullPhase::Pulling,
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    bd
}

#[test]
fn get_and_describe_show_the_pre_pull() {
    let bd = pre_pulling_job();
    assert_eq!(
        progress_line(&bd),
        "job PrePulling 0/3 succeeded, 1 failed, 0 running, 2 pending, 0 stopped; pulled 1/3, 1 pull failed, 1 pulling [######--------------] 33%"
    );
    let table = rows(std::slice::from_ref(&bd), false, true, 0);
    assert!(table.contains("PrePulling"), "{table}");
    let text = describe(&bd, 0);
    assert!(
        text.contains("\nPre-Pull:           concurrency 2, timeout 5m, failure tolerance 1\n"),
        "{text}"
    );
    assert!(
        text.contains("\nPulls:              1 of 3 pulled, 1 failed, 1 pulling, 0 pending\n"),
        "{text}"
    );
    let failed = "Failed Pulls:
  NODE    REASON        MESSAGE
  edge-2  ErrImagePull  manifest unknown
Nodes:
";
    assert!(text.contains(failed), "{text}");
    assert!(
        text.contains(
            "  edge-2  Failed   0/1   0         PullFailed  the image pull on node edge-2 failed\n"
        ),
        "{text}"
    );
}

#[test]
fn jobs_without_pre_pull_show_no_pulls() {
    let bd = job(Phase::Running, 17, 1, 20);
    assert!(!progress_line(&bd).contains("pull"));
    let text = describe(&bd, 0);
    assert!(
        !text.contains("Pull") && !text.contains("Pre-Pull"),
        "{text}"
    );
}
