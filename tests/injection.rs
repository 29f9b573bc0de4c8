//! The shared injection path on the seed examples: Pod, config files, Services, policies.

use std::collections::BTreeMap;
use std::sync::Arc;

use appimage::injection::{Request, Status, inject, pod_name};
use appimage::labels;
use appimage::manifest;
use appimage::render::MissingKey;
use appimage::resource::AppImage;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

fn example(name: &str) -> AppImage {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("example exists");
    manifest::appimages(&path, &text)
        .expect("example parses")
        .remove(0)
}

fn skeleton(image: &str, name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "alice", "labels": {labels::APP_IMAGE: image}},
        "spec": {"containers": []}
    }))
    .unwrap()
}

/// Inject the example `file` (AppImage `image`) into a fresh Pod `pod` in namespace alice.
fn injected(
    file: &str,
    image: &str,
    pod: &str,
    role: &str,
    task: &str,
) -> appimage::injection::Injection {
    inject(
        &example(file),
        &skeleton(image, pod),
        &request(pod, role, task),
    )
    .unwrap()
}

fn request(pod: &str, role: &str, task: &str) -> Request {
    Request {
        namespace: "alice".into(),
        pod_name: pod.into(),
        role: role.into(),
        task_id: task.into(),
        ..Default::default()
    }
}

#[test]
fn seed_pod_has_containers_ports_env_and_config_mount() {
    let out = injected(
        "secretflow-image.yaml",
        "secretflow-image",
        "job-0",
        "",
        "t1",
    );
    let spec = out.pod.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.containers.len(), 1);
    let c = &spec.containers[0];
    assert_eq!(c.name, "secretflow");
    assert_eq!(
        c.image.as_deref(),
        Some("secretflow/secretflow-lite-anolis8:latest")
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(c.working_dir.as_deref(), Some("/work"));
    let ports = c.ports.as_ref().unwrap();
    let names: Vec<_> = ports.iter().map(|p| p.name.clone().unwrap()).collect();
    assert_eq!(names, ["spu", "fed", "global"]);
    for p in ports {
        assert!((20000..32767).contains(&p.container_port), "{p:?}");
        let env = c.env.as_ref().unwrap();
        let var = format!(
            "KUSCIA_PORT_{}_NUMBER",
            p.name.as_ref().unwrap().to_uppercase()
        );
        let e = env.iter().find(|e| e.name == var).expect("port env");
        assert_eq!(
            e.value.as_deref(),
            Some(p.container_port.to_string().as_str())
        );
    }
    // Relative mountPath is taken from workingDir.
    let m = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(m.mount_path, "/work/kuscia/task-config.conf");
    assert_eq!(m.sub_path.as_deref(), Some("task-config.conf"));
    assert_eq!(m.name, labels::CONFIG_VOLUME);
    let vol = &spec.volumes.as_ref().unwrap()[0];
    let item = &vol.downward_api.as_ref().unwrap().items.as_ref().unwrap()[0];
    assert_eq!(
        item.field_ref.as_ref().unwrap().field_path,
        "metadata.annotations['config.appimage.kuscia.secretflow/task-config.conf']"
    );

    // The file as the Pod sees it: the annotation the volume projects.
    let ann = out.pod.metadata.annotations.as_ref().unwrap();
    let conf: Value =
        serde_json::from_str(&ann["config.appimage.kuscia.secretflow/task-config.conf"]).unwrap();
    assert_eq!(conf["task_id"], "t1");
    let define: Value = serde_json::from_str(conf["task_cluster_def"].as_str().unwrap()).unwrap();
    assert_eq!(define["parties"][0]["name"], "alice");
    assert_eq!(
        define["parties"][0]["services"][0]["endpoints"][0],
        "job-0-spu.alice.svc"
    );
    let global_port = ports[2].container_port;
    assert_eq!(
        define["parties"][0]["services"][2]["endpoints"][0],
        format!("job-0-global.alice.svc:{global_port}")
    );
    let allocated: Value = serde_json::from_str(conf["allocated_ports"].as_str().unwrap()).unwrap();
    assert_eq!(allocated["ports"][2]["name"], "global");
    assert_eq!(allocated["ports"][2]["port"], global_port);
    assert_eq!(
        out.config_files["task-config.conf"],
        ann["config.appimage.kuscia.secretflow/task-config.conf"]
    );

    let labels = out.pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[labels::POD_IDENTITY], "job-0");
    assert_eq!(ann[labels::IMAGE_ID], "d4ffa123aa45mnkj");
    assert_eq!(ann[labels::TASK_ID], "t1");
    let status = Status::from_pod(&out.pod).unwrap();
    assert_eq!(status.app_image, "secretflow-image");
    assert_eq!(status.ports.len(), 3);
}

#[test]
fn seed_services_follow_port_scopes() {
    let out = injected(
        "secretflow-image.yaml",
        "secretflow-image",
        "job-0",
        "",
        "t1",
    );
    let svc: Vec<(String, String)> = out
        .services
        .iter()
        .map(|s| {
            let l = s.metadata.labels.as_ref().unwrap();
            (
                s.metadata.name.clone().unwrap(),
                l[labels::PORT_SCOPE].clone(),
            )
        })
        .collect();
    assert_eq!(
        svc,
        [
            ("job-0-spu".to_string(), "Cluster".to_string()),
            ("job-0-fed".into(), "Cluster".into()),
            ("job-0-global".into(), "Domain".into())
        ]
    );
    for s in &out.services {
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(
            spec.selector.as_ref().unwrap()[labels::POD_IDENTITY],
            "job-0"
        );
        let port = &spec.ports.as_ref().unwrap()[0];
        let name = s.metadata.labels.as_ref().unwrap()[labels::PORT_NAME].clone();
        assert_eq!(
            port.target_port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name))
        );
        // No UID at admission time: no owner reference yet.
        assert!(s.metadata.owner_references.is_none());
    }
    // With a UID (as the reconciler sees the stored Pod) the Pod owns its Services.
    let mut stored = out.pod.clone();
    stored.metadata.uid = Some("u-1".into());
    let owned = appimage::service::services(&stored, "alice", &out.ports);
    let owner = &owned[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Pod", "u-1", Some(true))
    );
}

#[test]
fn updated_seed_keeps_the_written_global_port() {
    let out = injected(
        "secretflow-image-update.yaml",
        "secretflow-image",
        "job-0",
        "",
        "t1",
    );
    let global = out.ports.iter().find(|p| p.name == "global").unwrap();
    assert_eq!(global.port, 8082);
    let conf: Value = serde_json::from_str(&out.config_files["task-config.conf"]).unwrap();
    assert!(
        conf["task_input_cluster_def"]
            .as_str()
            .unwrap()
            .contains("job-0-global.alice.svc:8082")
    );
}

#[test]
fn app_template_roles_and_network_policy() {
    let server = injected("app-template.yaml", "app-template", "srv-0", "server", "");
    let client = injected("app-template.yaml", "app-template", "cli-0", "client", "");
    assert_eq!(server.template_index, 0);
    assert_eq!(client.template_index, 1);
    assert!(client.network_policies.is_empty());
    assert_eq!(server.network_policies.len(), 1);
    let np = &server.network_policies[0];
    assert_eq!(np.metadata.name.as_deref(), Some("srv-0-ingress"));
    let spec = np.spec.as_ref().unwrap();
    assert_eq!(
        spec.pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()[labels::POD_IDENTITY],
        "srv-0"
    );
    let rule = &spec.ingress.as_ref().unwrap()[0];
    let from = &rule.from.as_ref().unwrap()[0]
        .pod_selector
        .as_ref()
        .unwrap()
        .match_labels;
    let from = from.as_ref().unwrap();
    assert_eq!(from[labels::POD_ROLE], "client");
    assert_eq!(from[labels::APP_IMAGE], "app-template");
    let global = server
        .ports
        .iter()
        .find(|p| p.name == "global")
        .unwrap()
        .port;
    let port = &rule.ports.as_ref().unwrap()[0];
    assert_eq!(
        port.port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(global))
    );
    // The client mounts at an absolute path.
    let c = &client.pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        c.volume_mounts.as_ref().unwrap()[0].mount_path,
        "/etc/kuscia/task-config.conf"
    );
    assert_eq!(
        client.pod.metadata.labels.as_ref().unwrap()[labels::POD_ROLE],
        "client"
    );
    // TCP is accepted and maps to the TCP transport.
    assert_eq!(
        c.ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );
    // Probes, resources and envFrom are copied.
    assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some() && c.startup_probe.is_some());
    assert_eq!(c.env_from.as_ref().unwrap().len(), 1);
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["cpu"],
        Quantity("100m".into())
    );
}

#[test]
fn user_container_overrides_merge_like_kuscia() {
    let img = example("app-template.yaml");
    let mut pod = skeleton("app-template", "srv-0");
    pod.spec.as_mut().unwrap().containers = vec![
        Container {
            name: "app".into(),
            image: Some("evil/image:1".into()),
            args: Some(vec!["--debug".into()]),
            env: Some(vec![EnvVar {
                name: "EXTRA".into(),
                value: Some("1".into()),
                value_from: None,
            }]),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
                ..Default::default()
            }),
            ..Default::default()
        },
        Container {
            name: "sidecar".into(),
            image: Some("busybox".into()),
            ..Default::default()
        },
    ];
    let out = inject(&img, &pod, &request("srv-0", "server", "")).unwrap();
    let cs = &out.pod.spec.as_ref().unwrap().containers;
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[1].name, "sidecar");
    let c = &cs[0];
    // The image is the AppImage's, whatever the Pod said.
    assert_eq!(c.image.as_deref(), Some("app-image:v1.0.0"));
    // Command and args are replaced together.
    assert_eq!(c.command, None);
    assert_eq!(c.args.as_deref(), Some(&["--debug".to_string()][..]));
    // Env appended after the template's.
    let env: Vec<&str> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["APP_NAME", "KUSCIA_PORT_GLOBAL_NUMBER", "EXTRA"]);
    // Resources merged key by key.
    let r = c.resources.as_ref().unwrap();
    assert_eq!(r.limits.as_ref().unwrap()["memory"], Quantity("1Gi".into()));
    assert_eq!(r.limits.as_ref().unwrap()["cpu"], Quantity("100m".into()));
    assert_eq!(
        r.requests.as_ref().unwrap()["memory"],
        Quantity("100Mi".into())
    );
}

#[test]
fn injection_is_idempotent_and_deterministic() {
    for (file, image, role) in [
        ("secretflow-image.yaml", "secretflow-image", ""),
        ("app-template.yaml", "app-template", "server"),
        ("app-template.yaml", "app-template", "client"),
    ] {
        let img = example(file);
        let req = request("p-0", role, "t1");
        let once = inject(&img, &skeleton(image, "p-0"), &req).unwrap();
        let twice = inject(&img, &once.pod, &req).unwrap();
        assert_eq!(once, twice, "{file} {role}");
        let again = inject(&img, &skeleton(image, "p-0"), &req).unwrap();
        assert_eq!(
            serde_json::to_string(&once.pod).unwrap(),
            serde_json::to_string(&again.pod).unwrap()
        );
    }
}

#[test]
fn a_spoofed_status_annotation_changes_nothing() {
    let img = example("secretflow-image.yaml");
    let mut pod = skeleton("secretflow-image", "p-0");
    pod.metadata.annotations = Some(BTreeMap::from([(
        labels::STATUS.to_string(),
        r#"{"appImage":"secretflow-image","template":"secretflow","image":"x","ports":[]}"#
            .to_string(),
    )]));
    let req = request("p-0", "", "t1");
    let spoofed = inject(&img, &pod, &req).unwrap();
    let clean = inject(&img, &skeleton("secretflow-image", "p-0"), &req).unwrap();
    assert_eq!(spoofed.pod, clean.pod);
}

#[test]
fn options_come_from_annotations_and_labels() {
    let mut pod = skeleton("app-template", "");
    pod.metadata.name = None;
    pod.metadata.generate_name = Some("web-".into());
    pod.metadata.annotations = Some(BTreeMap::from([
        (labels::OPT_TASK_ID.to_string(), "t9".to_string()),
        (labels::OPT_VALUES.to_string(), r#"{"A":"b"}"#.to_string()),
        (labels::OPT_STRICT.to_string(), "true".to_string()),
    ]));
    pod.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(labels::OPT_ROLE.into(), "client".into());
    let name = pod_name(&pod, "uid-1").unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert_eq!(pod_name(&pod, "uid-1"), Some(name.clone()));
    let req = Request::from_pod(&pod, "ns", &name).unwrap();
    assert_eq!(req.role, "client");
    assert_eq!(req.task_id, "t9");
    assert_eq!(req.values["A"], "b");
    assert_eq!(req.missing, MissingKey::Error);

    let ann = pod.metadata.annotations.as_mut().unwrap();
    ann.insert(labels::OPT_VALUES.into(), "[1]".into());
    let err = Request::from_pod(&pod, "ns", &name)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(labels::OPT_VALUES) && err.contains("JSON object"),
        "{err}"
    );
}

#[test]
fn values_reach_the_templates_with_precedence() {
    let mut img = example("app-template.yaml");
    Arc::make_mut(&mut img.spec.config_templates).insert(
        "task-config.conf".into(),
        r#"{"app":"{{.APP_NAME}}","domain":"{{.KUSCIA_DOMAIN_ID}}","x":"{{.X}}","port":"{{{.ALLOCATED_PORTS.ports[name=global].port}}}"}"#.into(),
    );
    let mut req = request("srv-0", "server", "t1");
    req.values.insert("X".into(), "a\"b\\c\n".into());
    let out = inject(&img, &skeleton("app-template", "srv-0"), &req).unwrap();
    let conf: Value = serde_json::from_str(&out.config_files["task-config.conf"]).unwrap();
    assert_eq!(conf["app"], "app");
    assert_eq!(conf["domain"], "alice");
    assert_eq!(conf["x"], "a\"b\\c\n");
    let global = out.ports.iter().find(|p| p.name == "global").unwrap().port;
    assert_eq!(conf["port"], global.to_string());

    // Strict mode names the missing key.
    Arc::make_mut(&mut img.spec.config_templates)
        .insert("task-config.conf".into(), "{{.NOPE}}".into());
    req.missing = MissingKey::Error;
    let err = inject(&img, &skeleton("app-template", "srv-0"), &req)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("NOPE") && err.contains("task-config.conf"),
        "{err}"
    );
}

#[test]
fn the_stored_pod_describes_its_own_services_and_policy() {
    let img = example("app-template.yaml");
    let out = injected("app-template.yaml", "app-template", "srv-0", "server", "");
    let mut stored = out.pod.clone();
    stored.metadata.namespace = Some("alice".into());
    stored.metadata.uid = Some("uid-7".into());
    let want = appimage::desired::desired(&stored, Some(&img));
    assert_eq!(want.services.len(), 1);
    assert_eq!(want.network_policies.len(), 1);
    // Same objects as admission computed, now owned by the Pod.
    let mut expected = out.services[0].clone();
    expected.metadata.owner_references =
        appimage::service::owner_reference(&stored).map(|o| vec![o]);
    assert_eq!(want.services[0], expected);
    assert_eq!(want.network_policies[0].spec, out.network_policies[0].spec);
    // Without the AppImage: Services only. Without a status: nothing.
    assert!(
        appimage::desired::desired(&stored, None)
            .network_policies
            .is_empty()
    );
    assert_eq!(
        appimage::desired::desired(&skeleton("x", "y"), Some(&img)),
        Default::default()
    );
}
