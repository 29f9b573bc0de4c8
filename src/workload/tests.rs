//! Unit tests of the workload builders on the seed AppImages.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::injection::{self, Request};
use crate::labels;
use crate::manifest;
use crate::overrides::PodOverrides;
use crate::resource::AppImage;

const SEED: &str = include_str!("../../examples/secretflow-image.yaml");
const SEED_UPDATE: &str = include_str!("../../examples/secretflow-image-update.yaml");
const ROLES: &str = include_str!("../../examples/app-template.yaml");
const FRAGMENT: &str = include_str!("../../examples/pod-template.yaml");

fn image(text: &str) -> AppImage {
    manifest::appimages("seed.yaml", text).expect("seed")[0].clone()
}

fn seed() -> AppImage {
    image(SEED)
}

fn opts(kind: Kind) -> DeployOptions {
    DeployOptions {
        kind,
        namespace: "alice".into(),
        ..Default::default()
    }
}

fn json_of(w: &Workload) -> Value {
    serde_json::to_value(w).expect("json")
}

fn spec_of(w: &Workload) -> PodSpec {
    w.pod_template()
        .and_then(|t| t.spec.clone())
        .expect("pod spec")
}

fn template_annotations(w: &Workload) -> BTreeMap<String, String> {
    w.pod_template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

#[test]
fn seed_as_a_deployment() {
    let img = seed();
    let w = build(&img, &opts(Kind::Deployment)).unwrap();
    let v = json_of(&w);
    assert_eq!(v["apiVersion"], "apps/v1");
    assert_eq!(v["kind"], "Deployment");
    assert_eq!(
        v["metadata"],
        json!({
            "name": "secretflow-image",
            "namespace": "alice",
            "labels": {
                "app.kubernetes.io/managed-by": "kubectl-appimage",
                "appimage.kuscia.secretflow/workload": "secretflow-image",
                "kuscia.secretflow/app-image": "secretflow-image"
            },
            "annotations": {"appimage.kuscia.secretflow/update-policy": "Auto"}
        })
    );
    assert_eq!(v["spec"]["replicas"], 1);
    assert_eq!(
        v["spec"]["selector"],
        json!({"matchLabels": {"appimage.kuscia.secretflow/workload": "secretflow-image"}})
    );
    let t = &v["spec"]["template"];
    assert_eq!(
        t["metadata"]["labels"],
        json!({
            "appimage.kuscia.secretflow/workload": "secretflow-image",
            "kuscia.secretflow/app-image": "secretflow-image"
        })
    );
    assert_eq!(
        t["metadata"]["annotations"],
        json!({"appimage.kuscia.secretflow/revision-hash": revision_hash(&img.spec)})
    );
    // Only what the workload needs to validate: the webhook fills in the rest per Pod.
    assert_eq!(t["spec"]["restartPolicy"], "Always");
    let containers = t["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["name"], "secretflow");
    assert_eq!(c["image"], "secretflow/secretflow-lite-anolis8:latest");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    for absent in [
        "command",
        "args",
        "env",
        "ports",
        "volumeMounts",
        "workingDir",
    ] {
        assert!(
            c.get(absent).is_none(),
            "{absent} is the webhook's to fill: {c}"
        );
    }
    for absent in ["volumes", "affinity", "nodeSelector", "hostNetwork"] {
        assert!(t["spec"].get(absent).is_none(), "{absent}: {}", t["spec"]);
    }
}

#[test]
fn replicas_come_from_the_template_as_kuscia_reads_them() {
    let replicas = |img: &AppImage, flag: Option<i32>| {
        let o = DeployOptions {
            replicas: flag,
            ..opts(Kind::Deployment)
        };
        json_of(&build(img, &o).unwrap())["spec"]["replicas"].clone()
    };
    let with = |line: &str| image(&SEED.replace("      replicas: 1\n", line));
    assert_eq!(replicas(&seed(), None), 1);
    assert_eq!(replicas(&with(""), None), 1, "unset means 1");
    assert_eq!(
        replicas(&with("      replicas: 0\n"), None),
        0,
        "0 means none"
    );
    let img = with("      replicas: 3\n");
    assert_eq!(replicas(&img, None), 3);
    assert_eq!(replicas(&img, Some(5)), 5, "the flag wins");
    let o = DeployOptions {
        replicas: Some(-1),
        ..opts(Kind::Deployment)
    };
    let err = build(&img, &o).unwrap_err().to_string();
    assert_eq!(err, "--replicas: must be 0 or more (0 runs no Pods)");
}

#[test]
fn every_kind() {
    let img = seed();
    let sts = json_of(&build(&img, &opts(Kind::StatefulSet)).unwrap());
    assert_eq!(sts["kind"], "StatefulSet");
    assert_eq!(sts["spec"]["serviceName"], "secretflow-image");
    assert_eq!(sts["spec"]["replicas"], 1);

    let ds = DeployOptions {
        node_selector: parse_node_selector("appimage-test/pool=edge").unwrap(),
        ..opts(Kind::DaemonSet)
    };
    let ds = json_of(&build(&img, &ds).unwrap());
    assert_eq!(ds["apiVersion"], "apps/v1");
    assert_eq!(
        ds["spec"]["template"]["spec"]["nodeSelector"],
        json!({"appimage-test/pool": "edge"})
    );
    assert!(ds["spec"].get("replicas").is_none());

    let job = json_of(&build(&img, &opts(Kind::Job)).unwrap());
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["spec"]["completions"], 1);
    assert_eq!(job["spec"]["parallelism"], 1);
    assert!(
        job["spec"].get("selector").is_none(),
        "the Job controller makes it"
    );
    assert!(job["spec"].get("suspend").is_none());
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    let cj = DeployOptions {
        schedule: Some("*/5 * * * *".into()),
        ..opts(Kind::CronJob)
    };
    let cj = json_of(&build(&img, &cj).unwrap());
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    assert!(cj["spec"].get("suspend").is_none());
    let jt = &cj["spec"]["jobTemplate"]["spec"];
    assert_eq!(jt["completions"], 1);
    assert_eq!(jt["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(
        jt["template"]["metadata"]["labels"]["appimage.kuscia.secretflow/workload"],
        "secretflow-image"
    );
}

#[test]
fn start_at_creates_the_workload_stopped() {
    let img = seed();
    let at: Timestamp = "2026-12-01T21:00:00Z".parse().unwrap();
    let stopped = |kind: Kind, replicas: Option<i32>| {
        let o = DeployOptions {
            start_at: Some(at),
            replicas,
            schedule: (kind == Kind::CronJob).then(|| "@hourly".into()),
            ..opts(kind)
        };
        json_of(&build(&img, &o).unwrap())
    };
    for kind in [Kind::Deployment, Kind::StatefulSet] {
        let v = stopped(kind, Some(3));
        assert_eq!(v["spec"]["replicas"], 0, "{kind:?}");
        let a = &v["metadata"]["annotations"];
        assert_eq!(a[START_AT], "2026-12-01T21:00:00Z");
        assert_eq!(a[START_REPLICAS], "3");
    }
    let job = stopped(Kind::Job, Some(2));
    assert_eq!(job["spec"]["suspend"], true);
    assert_eq!(job["spec"]["parallelism"], 2);
    assert_eq!(job["metadata"]["annotations"][START_REPLICAS], "2");
    let cj = stopped(Kind::CronJob, None);
    assert_eq!(cj["spec"]["suspend"], true);
    assert!(cj["spec"]["jobTemplate"]["spec"].get("suspend").is_none());
    let o = DeployOptions {
        start_at: Some(at),
        ..opts(Kind::DaemonSet)
    };
    let err = build(&img, &o).unwrap_err().to_string();
    assert!(
        err.starts_with("--start-at: a DaemonSet cannot be created stopped"),
        "{err}"
    );
}

#[test]
fn options_become_the_documented_annotations() {
    let img = image(ROLES);
    let o = DeployOptions {
        role: "client".into(),
        template: Some("app".into()),
        task_id: "t-1".into(),
        input_config: "{\"a\":1}".into(),
        values: BTreeMap::from([("B".into(), "2".into()), ("A".into(), "x\"y".into())]),
        update_policy: UpdatePolicy::Manual,
        ..opts(Kind::Deployment)
    };
    let w = build(&img, &o).unwrap();
    assert_eq!(
        w.name(),
        "app-template-client",
        "<appimage>-<role>, as Kuscia names it"
    );
    let a = template_annotations(&w);
    assert_eq!(a[labels::OPT_ROLE], "client");
    assert_eq!(a[labels::OPT_TEMPLATE], "app");
    assert_eq!(a[labels::OPT_TASK_ID], "t-1");
    assert_eq!(a[labels::OPT_INPUT_CONFIG], "{\"a\":1}");
    assert_eq!(a[labels::OPT_VALUES], r#"{"A":"x\"y","B":"2"}"#);
    assert_eq!(
        w.metadata().annotations.as_ref().unwrap()[UPDATE_POLICY],
        "Manual"
    );
    // The webhook reads back exactly these options.
    let pod = preview_pod(&img, &w).unwrap();
    let req = Request::from_pod(&pod, "alice", "p").unwrap();
    assert_eq!(req.role, "client");
    assert_eq!(req.template.as_deref(), Some("app"));
    assert_eq!(req.task_id, "t-1");
    assert_eq!(req.values["A"], "x\"y");
}

#[test]
fn bad_input_gets_clear_errors() {
    let img = image(ROLES);
    let err = |o: DeployOptions| build(&img, &o).unwrap_err().to_string();
    let e = err(DeployOptions {
        role: "guest".into(),
        ..opts(Kind::Deployment)
    });
    assert!(e.contains("no deploy template for role \"guest\""), "{e}");
    assert!(e.contains("roles it serves: server, client"), "{e}");
    let e = err(DeployOptions {
        schedule: Some("@daily".into()),
        ..opts(Kind::Deployment)
    });
    assert!(e.starts_with("--schedule: only a CronJob"), "{e}");
    let e = err(opts(Kind::CronJob));
    assert!(e.starts_with("--schedule: a CronJob needs one"), "{e}");
    let e = err(DeployOptions {
        schedule: Some("every day".into()),
        ..opts(Kind::CronJob)
    });
    assert!(e.contains("is not a cron schedule"), "{e}");
    let e = err(DeployOptions {
        name: Some("Web".into()),
        ..opts(Kind::Deployment)
    });
    assert!(
        e.starts_with("workload name \"Web\" must be a DNS-1123 label"),
        "{e}"
    );
    assert!(e.ends_with("; pass another --name"), "{e}");
    let e = err(DeployOptions {
        name: Some("1web".into()),
        ..opts(Kind::Deployment)
    });
    assert!(e.contains("must start with a letter"), "{e}");
    let e = err(DeployOptions {
        name: Some("c".repeat(53)),
        schedule: Some("@daily".into()),
        ..opts(Kind::CronJob)
    });
    assert!(
        e.contains("no more than 52 characters for a CronJob"),
        "{e}"
    );
    let e = err(DeployOptions {
        replicas: Some(2),
        ..opts(Kind::DaemonSet)
    });
    assert!(
        e.starts_with("--replicas: a DaemonSet runs one Pod on each"),
        "{e}"
    );
    let mut dotted = seed();
    dotted.metadata.name = Some("secretflow.v2".into());
    let e = build(&dotted, &opts(Kind::Deployment))
        .unwrap_err()
        .to_string();
    assert!(e.contains("workload name \"secretflow.v2\""), "{e}");
    assert!(e.ends_with("; pass --name NAME"), "{e}");
}

fn fragment() -> PodTemplateSpec {
    parse_pod_template("examples/pod-template.yaml", FRAGMENT).unwrap()
}

#[test]
fn the_pod_template_fragment_is_merged() {
    let img = seed();
    let o = DeployOptions {
        pod_template: Some(fragment()),
        host_network: true,
        image_pull_secrets: vec!["registry-credentials".into(), "mirror".into()],
        node_selector: parse_node_selector("zone=a").unwrap(),
        ..opts(Kind::Deployment)
    };
    let w = build(&img, &o).unwrap();
    let spec = spec_of(&w);
    let init: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        init,
        ["prepare-data", "check-tls"],
        "in the fragment's order"
    );
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["host-data", "tls", "scratch"]);
    let secrets: Vec<&str> = spec
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(secrets, ["registry-credentials", "mirror"], "each once");
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert_eq!(spec.host_pid, Some(false));
    assert_eq!(
        spec.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    assert_eq!(spec.node_selector.as_ref().unwrap()["zone"], "a");
    assert_eq!(spec.containers.len(), 1);
    let c = &spec.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("secretflow/secretflow-lite-anolis8:latest")
    );
    assert_eq!(c.volume_mounts.as_ref().unwrap().len(), 3);
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["nvidia.com/gpu"].0,
        "1"
    );
    assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
    let labels = w
        .pod_template()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(labels["team"], "data");
    assert_eq!(labels[labels::APP_IMAGE], "secretflow-image");

    // The webhook then completes the Pod: the template's command, ports and config mount,
    // with the fragment's mounts, env and resources kept.
    // Under `all` (Kuscia's merge): the fragment's init container and mounts are kept; the
    // default `env` refuses them, naming the field.
    let refused = preview_pod(&img, &w).unwrap_err().to_string();
    assert!(refused.contains("spec.initContainers[0]"), "{refused}");
    let pod = preview_pod_with(&img, &w, PodOverrides::All).unwrap();
    let c = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.command.as_ref().unwrap()[0], "sh");
    let mounts: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(
        mounts,
        [
            "/work/kuscia/task-config.conf",
            "/data",
            "/etc/secretflow/tls",
            "/tmp/scratch"
        ]
    );
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(
        env.contains(&"LOG_LEVEL") && env.contains(&"KUSCIA_PORT_GLOBAL_NUMBER"),
        "{env:?}"
    );
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["nvidia.com/gpu"].0,
        "1"
    );
    assert_eq!(
        pod.spec
            .as_ref()
            .unwrap()
            .init_containers
            .as_ref()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn bad_fragments_are_refused() {
    let img = seed();
    let with = |text: &str, kind: Kind| {
        let o = DeployOptions {
            pod_template: Some(parse_pod_template("f.yaml", text).unwrap()),
            schedule: (kind == Kind::CronJob).then(|| "@daily".into()),
            ..opts(kind)
        };
        build(&img, &o)
    };
    let e = with("spec:\n  restartPolicy: Never\n", Kind::Deployment)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("restartPolicy \"Never\" is not allowed for a Deployment; use Always"),
        "{e}"
    );
    let e = with("spec:\n  restartPolicy: Always\n", Kind::Job)
        .unwrap_err()
        .to_string();
    assert!(e.contains("use Never or OnFailure"), "{e}");
    let e = with(
        "spec:\n  containers:\n    - name: sidecar\n",
        Kind::Deployment,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("container \"sidecar\" is not a container of deploy template \"secretflow\" (it has: secretflow) and has no image"), "{e}");
    // A sidecar with an image is kept, after the template's containers.
    let w = with(
        "spec:\n  containers:\n    - name: sidecar\n      image: envoy:1\n    - name: secretflow\n      image: evil:1\n",
        Kind::Deployment,
    )
    .unwrap();
    let names: Vec<(String, Option<String>)> = spec_of(&w)
        .containers
        .into_iter()
        .map(|c| (c.name, c.image))
        .collect();
    assert_eq!(
        names,
        [
            (
                "secretflow".into(),
                Some("secretflow/secretflow-lite-anolis8:latest".into())
            ),
            ("sidecar".into(), Some("envoy:1".into())),
        ],
        "the AppImage's image always wins"
    );
    let w = with("spec:\n  restartPolicy: OnFailure\n", Kind::CronJob).unwrap();
    assert_eq!(spec_of(&w).restart_policy.as_deref(), Some("OnFailure"));
}

#[test]
fn output_is_deterministic() {
    let img = seed();
    for kind in Kind::ALL {
        let o = DeployOptions {
            pod_template: Some(fragment()),
            values: BTreeMap::from([("Z".into(), "1".into()), ("A".into(), "2".into())]),
            node_selector: parse_node_selector("b=1,a=2").unwrap(),
            schedule: (kind == Kind::CronJob).then(|| "@daily".into()),
            ..opts(kind)
        };
        let a = serde_json::to_string(&build(&img, &o).unwrap()).unwrap();
        let b = serde_json::to_string(&build(&img, &o.clone()).unwrap()).unwrap();
        assert_eq!(a, b, "{kind:?}");
        let w = build(&img, &o).unwrap();
        // `all`: the fragment brings an init container, which the default refuses.
        let preview = || preview_pod_with(&img, &w, PodOverrides::All).unwrap();
        let p1 = serde_json::to_string(&preview()).unwrap();
        let p2 = serde_json::to_string(&preview()).unwrap();
        assert_eq!(p1, p2, "{kind:?}");
        let s1 = serde_json::to_string(&services(&img, &w, None).unwrap()).unwrap();
        let s2 = serde_json::to_string(&services(&img, &w, None).unwrap()).unwrap();
        assert_eq!(s1, s2, "{kind:?}");
    }
}

#[test]
fn the_preview_is_what_the_webhook_makes() {
    let img = seed();
    let w = build(&img, &opts(Kind::StatefulSet)).unwrap();
    let pod = preview_pod(&img, &w).unwrap();
    assert_eq!(pod.metadata.name.as_deref(), Some("secretflow-image-0"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("alice"));
    let annotations = pod.metadata.annotations.as_ref().unwrap();
    assert!(annotations.contains_key("config.appimage.kuscia.secretflow/task-config.conf"));
    // Admission again changes nothing (the webhook's idempotence), so this is its answer.
    let req = Request::from_pod(&pod, "alice", "secretflow-image-0").unwrap();
    let again = injection::inject(&img, &pod, &req).unwrap().pod;
    assert_eq!(again, pod);

    let d = build(&img, &opts(Kind::Deployment)).unwrap();
    let pod = preview_pod(&img, &d).unwrap();
    // Its ReplicaSet's Pod keeps the Always a Deployment requires (the seed says Never).
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    let name = pod.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("secretflow-image-") && name.len() == "secretflow-image-".len() + 5,
        "{name}"
    );
}

#[test]
fn services_per_workload() {
    let img = seed();
    let d = build(&img, &opts(Kind::Deployment)).unwrap();
    let owner = owner_reference(Kind::Deployment, d.name(), "uid-1");
    let svcs = services(&img, &d, Some(owner)).unwrap();
    let names: Vec<&str> = svcs
        .iter()
        .map(|s| s.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "secretflow-image-spu",
            "secretflow-image-fed",
            "secretflow-image-global"
        ],
        "Cluster and Domain ports, in declaration order"
    );
    let v = serde_json::to_value(&svcs[2]).unwrap();
    assert_eq!(
        v["metadata"]["ownerReferences"],
        json!([{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "secretflow-image",
            "uid": "uid-1", "controller": true, "blockOwnerDeletion": true
        }])
    );
    assert_eq!(
        v["metadata"]["labels"]["kuscia.secretflow/port-scope"],
        "Domain"
    );
    assert_eq!(
        v["spec"]["selector"],
        json!({"appimage.kuscia.secretflow/workload": "secretflow-image"})
    );
    assert!(
        v["spec"].get("clusterIP").is_none(),
        "a load-balanced Service"
    );
    assert_eq!(v["spec"]["ports"][0]["targetPort"], "global");
    assert_eq!(v["spec"]["ports"][0]["port"], ports_of(&img)["global"]);

    let s = build(&img, &opts(Kind::StatefulSet)).unwrap();
    let svcs = services(&img, &s, None).unwrap();
    assert_eq!(svcs.len(), 4);
    for svc in &svcs {
        let spec = svc.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless");
    }
    let governing = svcs.last().unwrap();
    assert_eq!(governing.metadata.name.as_deref(), Some("secretflow-image"));
    assert!(governing.spec.as_ref().unwrap().ports.is_none());
    assert!(svcs[0].metadata.owner_references.is_none());
}

/// A Job a CronJob spawned carries the CronJob's workload label but is no workload of its own
/// (issue 30: every run of a `*/1` CronJob made 3 Services selecting nothing).
#[test]
fn a_job_spawned_by_a_cronjob_gets_no_services() {
    let img = seed();
    let o = DeployOptions {
        schedule: Some("*/1 * * * *".into()),
        ..opts(Kind::CronJob)
    };
    let Workload::CronJob(cj) = build(&img, &o).unwrap() else {
        panic!("a CronJob")
    };
    let template = cj.spec.as_ref().unwrap().job_template.clone();
    let spec = template.spec.unwrap();
    // The API server's defaulting gives a Job without labels its pod template's labels.
    let mut meta = spec.template.metadata.clone().unwrap_or_default();
    meta.annotations = None;
    meta.name = Some("secretflow-image-29412345".into());
    meta.owner_references = Some(vec![owner_reference(
        Kind::CronJob,
        "secretflow-image",
        "uid-cj",
    )]);
    let job = k8s_openapi::api::batch::v1::Job {
        metadata: meta,
        spec: Some(spec),
        status: None,
    };
    assert!(
        job.metadata.labels.as_ref().unwrap().contains_key(WORKLOAD),
        "the job template carries the workload label"
    );
    let spawned = Workload::Job(Box::new(job.clone()));
    assert_eq!(services(&img, &spawned, None).unwrap(), vec![]);
    // A Job of its own (deploy --kind Job, no CronJob owner) keeps its Services.
    let mut own = job;
    own.metadata.owner_references = None;
    assert_eq!(
        services(&img, &Workload::Job(Box::new(own)), None)
            .unwrap()
            .len(),
        3
    );
    // The CronJob's own Services select its Jobs' Pods.
    assert_eq!(
        services(&img, &Workload::CronJob(cj), None).unwrap().len(),
        3
    );
}

fn ports_of(img: &AppImage) -> BTreeMap<String, i32> {
    crate::ports::allocate(&img.spec.deploy_templates[0], "t")
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.port))
        .collect()
}

#[test]
fn service_names_follow_kuscia_kusciadeployment() {
    assert_eq!(service_name("web", "global"), "web-global");
    assert_eq!(service_name("-web-", "-fed-"), "web-fed");
    assert_eq!(service_name("web", "a_b.c"), "web-a-b-c");
    assert_eq!(service_name("0web", "fed"), "svc-0web-fed");
    let long = "w".repeat(60);
    let name = service_name(&long, "global");
    // 63 - 16 - len("global") - 6 = 35 characters of the workload are kept.
    assert_eq!(
        name,
        format!(
            "svc-{}-{}-global",
            "w".repeat(35),
            crate::naming::short_hash(&long, 16)
        )
    );
    assert_eq!(name.len(), 63);
    let fits = "w".repeat(63 - "-fed".len());
    assert_eq!(service_name(&fits, "fed"), format!("{fits}-fed"));
    assert_ne!(service_name(&format!("{long}x"), "global"), name);
}

#[test]
fn revisions_hash_the_canonical_spec() {
    let a = seed();
    let b = image(SEED_UPDATE);
    assert_eq!(revision_hash(&a.spec), revision_hash(&seed().spec));
    assert_ne!(
        revision_hash(&a.spec),
        revision_hash(&b.spec),
        "the port changed"
    );
    assert_eq!(revision_hash(&a.spec).len(), 64);
    // Key order and formatting do not matter; content does.
    let reordered = SEED.replace(
        "    id: d4ffa123aa45mnkj\n    name: secretflow/secretflow-lite-anolis8\n",
        "    name: secretflow/secretflow-lite-anolis8\n    id: d4ffa123aa45mnkj\n",
    );
    assert_ne!(reordered, SEED);
    assert_eq!(
        revision_hash(&image(&reordered).spec),
        revision_hash(&a.spec)
    );
    assert_eq!(
        canonical_json(&json!({"b": [1, {"d": "x", "c": null}], "a": true})),
        r#"{"a":true,"b":[1,{"c":null,"d":"x"}]}"#
    );
}
