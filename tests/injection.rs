//! The shared injection path on the seed examples: Pod, config files, Services, policies.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use appimage::injection::{Request, Status, inject, pod_name};
use appimage::labels;
use appimage::manifest;
use appimage::overrides::PodOverrides;
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

/// `req` under `--pod-overrides=all`: Kuscia's merge, for the tests of the merge itself.
fn kuscia_merge(mut req: Request) -> Request {
    req.pod_overrides = PodOverrides::All;
    req
}

#[test]
fn by_default_a_pod_overrides_env_and_resources_only() {
    let img = example("app-template.yaml");
    let pod = skeleton("app-template", "srv-0");
    let app = Container {
        name: "app".into(),
        image: Some("placeholder".into()),
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
    };
    let attempt = |containers: Vec<Container>, policy: PodOverrides| {
        let mut pod = pod.clone();
        pod.spec.as_mut().unwrap().containers = containers;
        let mut req = request("srv-0", "server", "");
        req.pod_overrides = policy;
        inject(&img, &pod, &req).map_err(|e| e.to_string())
    };
    // env and resources: kept, under the default.
    let out = attempt(vec![app.clone()], PodOverrides::default()).unwrap();
    let c = &out.pod.spec.as_ref().unwrap().containers[0];
    assert!(c.env.iter().flatten().any(|e| e.name == "EXTRA"));
    // Anything else is refused with its field path, and says how to do it properly.
    let mut args = app.clone();
    args.args = Some(vec!["--debug".into()]);
    let err = attempt(vec![args.clone()], PodOverrides::Env).unwrap_err();
    assert!(err.contains("spec.containers[0].args"), "{err}");
    assert!(err.contains("pod-overrides policy \"env\""), "{err}");
    assert!(err.contains("kubectl appimage rollout"), "{err}");
    let sidecar = Container {
        name: "sidecar".into(),
        image: Some("busybox".into()),
        ..Default::default()
    };
    let err = attempt(vec![app.clone(), sidecar.clone()], PodOverrides::Env).unwrap_err();
    assert!(
        err.contains("spec.containers[1]: container \"sidecar\""),
        "{err}"
    );
    // `none` refuses env too; `all` is Kuscia's merge.
    let err = attempt(vec![app.clone()], PodOverrides::None).unwrap_err();
    assert!(err.contains("spec.containers[0].env"), "{err}");
    assert!(attempt(vec![args, sidecar], PodOverrides::All).is_ok());
    // A reinvoked Pod (the webhook's own output) overrides nothing, even under `none`.
    let once = inject(&img, &pod, &request("srv-0", "server", ""))
        .unwrap()
        .pod;
    let containers = once.spec.as_ref().unwrap().containers.clone();
    assert!(attempt(containers, PodOverrides::None).is_ok());
}

#[test]
fn a_user_set_role_label_does_not_survive_without_a_role() {
    let img = example("secretflow-image.yaml");
    let mut pod = skeleton("secretflow-image", "job-0");
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(labels::POD_ROLE.into(), "server".into());
    let out = inject(&img, &pod, &request("job-0", "", "t1")).unwrap();
    let labels = out.pod.metadata.labels.unwrap();
    assert!(!labels.contains_key(labels::POD_ROLE), "{labels:?}");
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
    let out = inject(&img, &pod, &kuscia_merge(request("srv-0", "server", ""))).unwrap();
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
    img.spec.config_templates.insert(
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
    img.spec
        .config_templates
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

/// Two containers (main with port `fed`, sidecar with port `side`), two config files and a
/// mount of a file configTemplates lacks (as Kuscia's own fixtures have).
const CONFORMANCE: &str = r#"
apiVersion: kuscia.secretflow/v1alpha1
kind: AppImage
metadata: {name: conf}
spec:
  image: {name: img, tag: v1}
  configTemplates:
    main.conf: '{"x":"{{.X}}","y":"{{.Y}}","z":"{{.Z}}","side":"{{.KUSCIA_PORT_SIDE_NUMBER}}","fed":"{{{.ALLOCATED_PORTS.ports[name=fed].port}}}"}'
    side.conf: '{"fed":"{{.KUSCIA_PORT_FED_NUMBER}}","u":"{{.U}}"}'
  deployTemplates:
  - name: t
    networkPolicy:
      ingresses:
      - from: {roles: [client]}
        ports: [{port: nope}]
      - from: {roles: [client]}
        ports: [{port: fed}, {port: nope2}]
    spec:
      containers:
      - name: main
        env:
        - {name: x, value: from-main}
        - name: Z
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        ports: [{name: fed, port: 21000, scope: Cluster}]
        configVolumeMounts:
        - {mountPath: /etc/main.conf, subPath: main.conf}
        - {mountPath: /etc/missing.conf, subPath: missing.conf}
      - name: side
        env:
        - {name: X, value: from-side}
        - {name: Y, value: from-side}
        - {name: Z, value: z-from-side}
        ports: [{name: side, port: 21001}]
        configVolumeMounts:
        - {mountPath: /etc/side.conf, subPath: side.conf}
"#;

fn conformance() -> AppImage {
    manifest::appimages("conformance.yaml", CONFORMANCE)
        .unwrap()
        .remove(0)
}

fn container<'a>(out: &'a appimage::injection::Injection, name: &str) -> &'a Container {
    let spec = out.pod.spec.as_ref().unwrap();
    spec.containers.iter().find(|c| c.name == name).unwrap()
}

fn env_of(c: &Container) -> Vec<(String, String)> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn every_container_gets_every_port_variable() {
    let mut pod = skeleton("conf", "job-0");
    // A sidecar the user adds gets them too.
    pod.spec.as_mut().unwrap().containers = vec![Container {
        name: "user-sidecar".into(),
        image: Some("busybox".into()),
        env: Some(vec![EnvVar {
            name: "KUSCIA_PORT_SIDE_NUMBER".into(),
            value: Some("mine".into()),
            value_from: None,
        }]),
        ..Default::default()
    }];
    let out = inject(
        &conformance(),
        &pod,
        &kuscia_merge(request("job-0", "", "t1")),
    )
    .unwrap();
    let fed = ("KUSCIA_PORT_FED_NUMBER".to_string(), "21000".to_string());
    let side = ("KUSCIA_PORT_SIDE_NUMBER".to_string(), "21001".to_string());
    for name in ["main", "side"] {
        let env = env_of(container(&out, name));
        assert!(env.contains(&fed) && env.contains(&side), "{name}: {env:?}");
    }
    // Right after the template's env, in port order; ContainerPorts stay per container.
    let main = env_of(container(&out, "main"));
    assert_eq!(main[2..4], [fed.clone(), side.clone()]);
    let ports = container(&out, "main").ports.clone().unwrap();
    assert_eq!(ports.len(), 1);
    // The user's own value of a name wins; the other is added.
    let user = env_of(container(&out, "user-sidecar"));
    assert_eq!(
        user,
        [
            ("KUSCIA_PORT_SIDE_NUMBER".to_string(), "mine".to_string()),
            fed
        ]
    );
    // Injecting again adds nothing.
    let again = inject(
        &conformance(),
        &out.pod,
        &kuscia_merge(request("job-0", "", "t1")),
    )
    .unwrap();
    assert_eq!(again.pod, out.pod);
}

#[test]
fn template_values_come_from_every_container_first_wins() {
    let out = inject(
        &conformance(),
        &skeleton("conf", "job-0"),
        &request("job-0", "", "t1"),
    )
    .unwrap();
    let main: Value = serde_json::from_str(&out.config_files["main.conf"]).unwrap();
    // X: main's `x` (upper-cased) comes first in Pod order and wins over side's X.
    assert_eq!(main["x"], "from-main");
    // Y: only the side container sets it, and main.conf (mounted by main) still reads it.
    assert_eq!(main["y"], "from-side");
    // Z: main's valueFrom has no value at admission, so side's literal value is used.
    assert_eq!(main["z"], "z-from-side");
    // Port variables are env too, so templates can read them.
    assert_eq!(main["side"], "21001");
    assert_eq!(main["fed"], "21000");
    let side: Value = serde_json::from_str(&out.config_files["side.conf"]).unwrap();
    assert_eq!(side["fed"], "21000");
    // A user container's env counts, after the template's containers.
    let mut pod = skeleton("conf", "job-0");
    pod.spec.as_mut().unwrap().containers = vec![Container {
        name: "extra".into(),
        image: Some("busybox".into()),
        env: Some(vec![
            EnvVar {
                name: "u".into(),
                value: Some("from-user".into()),
                value_from: None,
            },
            EnvVar {
                name: "X".into(),
                value: Some("loses".into()),
                value_from: None,
            },
        ]),
        ..Default::default()
    }];
    let out = inject(
        &conformance(),
        &pod,
        &kuscia_merge(request("job-0", "", "t1")),
    )
    .unwrap();
    let side: Value = serde_json::from_str(&out.config_files["side.conf"]).unwrap();
    assert_eq!(side["u"], "from-user");
    let main: Value = serde_json::from_str(&out.config_files["main.conf"]).unwrap();
    assert_eq!(main["x"], "from-main");
}

#[test]
fn containers_fall_back_to_logs_unless_the_pod_says_otherwise() {
    let mut pod = skeleton("conf", "job-0");
    pod.spec.as_mut().unwrap().containers = vec![
        Container {
            name: "side".into(),
            termination_message_policy: Some("File".into()),
            ..Default::default()
        },
        Container {
            name: "user-sidecar".into(),
            image: Some("busybox".into()),
            ..Default::default()
        },
    ];
    let out = inject(
        &conformance(),
        &pod,
        &kuscia_merge(request("job-0", "", "t1")),
    )
    .unwrap();
    let policy = |name: &str| container(&out, name).termination_message_policy.clone();
    assert_eq!(policy("main").as_deref(), Some("FallbackToLogsOnError"));
    assert_eq!(policy("side").as_deref(), Some("File"));
    // A container that is not the AppImage's is the user's own: untouched.
    assert_eq!(policy("user-sidecar"), None);
}

#[test]
fn a_mount_of_a_missing_config_file_is_left_out_with_a_warning() {
    let img = conformance();
    let out = inject(
        &img,
        &skeleton("conf", "job-0"),
        &request("job-0", "", "t1"),
    )
    .unwrap();
    let mounts: Vec<String> = container(&out, "main")
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    assert_eq!(mounts, ["/etc/main.conf"]);
    let side = container(&out, "side").volume_mounts.clone().unwrap();
    assert_eq!(side[0].sub_path.as_deref(), Some("side.conf"));
    let files: Vec<&String> = out.config_files.keys().collect();
    assert_eq!(files, ["main.conf", "side.conf"]);
    assert_eq!(
        out.warnings[0],
        "AppImage \"conf\": spec.deployTemplates[0].spec.containers[0].configVolumeMounts[1]: container \"main\" mounts config file \"missing.conf\", which spec.configTemplates does not define; the mount is left out"
    );
    // Strict mode refuses it, naming the container and the file.
    let mut strict = request("job-0", "", "t1");
    strict.missing = MissingKey::Error;
    let err = inject(&img, &skeleton("conf", "job-0"), &strict)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("container \"main\" mounts config file \"missing.conf\"")
            && err.contains("strict mode"),
        "{err}"
    );
}

#[test]
fn a_policy_rule_never_opens_every_port() {
    let img = conformance();
    let out = inject(
        &img,
        &skeleton("conf", "job-0"),
        &request("job-0", "", "t1"),
    )
    .unwrap();
    let spec = out.network_policies[0].spec.as_ref().unwrap();
    let rules = spec.ingress.as_ref().unwrap();
    // Rule 0 named only an undeclared port: left out. Rule 1 keeps its declared port.
    assert_eq!(rules.len(), 1);
    let ports = rules[0].ports.as_ref().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        ports[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(21000))
    );
    let policy_warnings: Vec<&String> = out
        .warnings
        .iter()
        .filter(|w| w.contains("networkPolicy"))
        .collect();
    assert_eq!(policy_warnings.len(), 3, "{:?}", out.warnings);
    assert!(policy_warnings[1].contains(
        "spec.deployTemplates[0].networkPolicy.ingresses[0].ports: names no declared port, so the rule is left out"
    ));
    // The reconciler builds the same policy from the stored Pod.
    let mut stored = out.pod.clone();
    stored.metadata.namespace = Some("alice".into());
    let want = appimage::desired::desired(&stored, Some(&img));
    assert_eq!(want.network_policies[0].spec.as_ref(), Some(spec));
    // Strict mode refuses it.
    let mut img = img;
    img.spec.deploy_templates[0].spec.containers[0]
        .config_volume_mounts
        .pop();
    let mut strict = request("job-0", "", "t1");
    strict.missing = MissingKey::Error;
    let err = inject(&img, &skeleton("conf", "job-0"), &strict)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("networkPolicy.ingresses[0].ports[0].port: names port \"nope\"")
            && err.contains("strict mode"),
        "{err}"
    );
}

#[test]
fn long_pod_names_keep_a_readable_service_prefix() {
    let pod = format!(
        "secretflow-task-20240816114341-single-psi-{}",
        "x".repeat(20)
    );
    let out = inject(
        &example("secretflow-image.yaml"),
        &skeleton("secretflow-image", &pod),
        &request(&pod, "", "t1"),
    )
    .unwrap();
    let names: Vec<String> = out
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    for (name, port) in names.iter().zip(["spu", "fed", "global"]) {
        assert_eq!(name.len(), 63, "{name}");
        assert!(name.starts_with("svc-secretflow-task-2024081611"), "{name}");
        assert!(name.ends_with(&format!("-{port}")), "{name}");
        assert_eq!(*name, appimage::naming::service_name(&pod, port));
    }
    // TASK_CLUSTER_DEFINE's endpoints name exactly these Services.
    let conf: Value = serde_json::from_str(&out.config_files["task-config.conf"]).unwrap();
    let define: Value = serde_json::from_str(conf["task_cluster_def"].as_str().unwrap()).unwrap();
    let endpoints: Vec<String> = define["parties"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["endpoints"][0].as_str().unwrap().to_string())
        .collect();
    let global = out.ports.iter().find(|p| p.name == "global").unwrap().port;
    assert_eq!(
        endpoints,
        [
            format!("{}.alice.svc", names[0]),
            format!("{}.alice.svc", names[1]),
            format!("{}.alice.svc:{global}", names[2])
        ]
    );
}

#[test]
fn a_party_finds_its_own_endpoint_with_a_computed_index() {
    let mut img = example("secretflow-image.yaml");
    img.spec.config_templates.insert(
        "task-config.conf".into(),
        r#"{"self":"{{{.TASK_CLUSTER_DEFINE.parties[.TASK_CLUSTER_DEFINE.selfPartyIdx].services[1].endpoints[0]}}}"}"#.into(),
    );
    let out = inject(
        &img,
        &skeleton("secretflow-image", "job-0"),
        &request("job-0", "", "t1"),
    )
    .unwrap();
    let conf: Value = serde_json::from_str(&out.config_files["task-config.conf"]).unwrap();
    assert_eq!(conf["self"], "job-0-fed.alice.svc");
}

#[test]
fn metric_probes_annotate_as_kuscia_does() {
    let mut img = conformance();
    let containers = &mut img.spec.deploy_templates[0].spec.containers;
    containers[0].metric_probe =
        Some(serde_json::from_value(serde_json::json!({"path": "/m0", "port": "fed"})).unwrap());
    containers[1].metric_probe =
        Some(serde_json::from_value(serde_json::json!({"path": "/m1", "port": "side"})).unwrap());
    let out = inject(
        &img,
        &skeleton("conf", "job-0"),
        &request("job-0", "", "t1"),
    )
    .unwrap();
    let ann = out.pod.metadata.annotations.as_ref().unwrap();
    // The last container with a probe wins, as in Kuscia; Kuscia's keys and Prometheus' both.
    assert_eq!(ann["kuscia.secretflow/should_be_scraped"], "true");
    assert_eq!(ann["kuscia.secretflow/metric_path"], "/m1");
    assert_eq!(ann["kuscia.secretflow/metric_port"], "21001");
    assert_eq!(ann["prometheus.io/port"], "21001");
    // A probe naming an undeclared port makes no Pod, as in Kuscia.
    img.spec.deploy_templates[0].spec.containers[1].metric_probe =
        Some(serde_json::from_value(serde_json::json!({"path": "/m1", "port": "nope"})).unwrap());
    let err = inject(
        &img,
        &skeleton("conf", "job-0"),
        &request("job-0", "", "t1"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("container \"side\" has metricProbe.port \"nope\", which no container of the template declares (declared: fed, side)"),
        "{err}"
    );
}

/// The seed skeleton as a controller (a ReplicaSet of workload `w`) creates it.
fn controlled(restart: &str) -> Pod {
    let mut pod = skeleton("secretflow-image", "w-abc12");
    pod.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(appimage::workload::WORKLOAD.into(), "w".into());
    pod.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "w-5d4f".into(),
            uid: "rs-uid".into(),
            controller: Some(true),
            ..Default::default()
        },
    ]);
    pod.spec.as_mut().unwrap().restart_policy = Some(restart.into());
    pod
}

#[test]
fn a_controllers_pod_keeps_its_restart_policy() {
    let img = example("secretflow-image.yaml");
    let req = request("w-abc12", "", "t1");
    for restart in ["Always", "OnFailure"] {
        let out = inject(&img, &controlled(restart), &req).unwrap();
        let spec = out.pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some(restart));
    }
    // A bare Pod takes the deploy template's (the seed's Never), whatever it said.
    let mut bare = skeleton("secretflow-image", "w-abc12");
    bare.spec.as_mut().unwrap().restart_policy = Some("Always".into());
    let out = inject(&img, &bare, &req).unwrap();
    assert_eq!(
        out.pod.spec.unwrap().restart_policy.as_deref(),
        Some("Never")
    );
}

fn cluster_define_of(pod: &Pod) -> Value {
    let ann = pod.metadata.annotations.as_ref().unwrap();
    let conf: Value =
        serde_json::from_str(&ann["config.appimage.kuscia.secretflow/task-config.conf"]).unwrap();
    serde_json::from_str(conf["task_cluster_def"].as_str().unwrap()).unwrap()
}

#[test]
fn a_workloads_pods_cluster_define_names_the_workload_services() {
    let img = example("secretflow-image.yaml");
    let req = request("w-abc12", "", "t1");
    let out = inject(&img, &controlled("Always"), &req).unwrap();
    let define = cluster_define_of(&out.pod);
    let services = &define["parties"][0]["services"];
    let endpoints: Vec<(String, String)> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["portName"].as_str().unwrap().to_string(),
                s["endpoints"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!endpoints.is_empty());
    for (port, endpoint) in &endpoints {
        let svc = appimage::workload::service_name("w", port);
        assert!(
            endpoint == &format!("{svc}.alice.svc")
                || endpoint.starts_with(&format!("{svc}.alice.svc:")),
            "{port}: {endpoint}"
        );
    }
    // The same Pod without a controller names its own Services.
    let mut bare = controlled("Always");
    bare.metadata.owner_references = None;
    let define = cluster_define_of(&inject(&img, &bare, &req).unwrap().pod);
    let first = define["parties"][0]["services"][0]["endpoints"][0]
        .as_str()
        .unwrap();
    assert!(first.starts_with("w-abc12-"), "{first}");
}

#[test]
fn a_port_variable_the_first_container_takes_from_elsewhere_comes_from_the_next() {
    // main sets KUSCIA_PORT_SIDE_NUMBER itself, by valueFrom: it gets no injected copy and
    // has no value at admission, so side's injected copy is the one a template reads.
    let text = CONFORMANCE.replace(
        "        - name: Z\n",
        "        - name: KUSCIA_PORT_SIDE_NUMBER\n          valueFrom: {fieldRef: {fieldPath: metadata.uid}}\n        - name: Z\n",
    );
    let image = manifest::appimages("conformance.yaml", &text)
        .unwrap()
        .remove(0);
    let out = inject(
        &image,
        &skeleton("conf", "job-0"),
        &request("job-0", "", "t1"),
    )
    .unwrap();
    let main: Value = serde_json::from_str(&out.config_files["main.conf"]).unwrap();
    assert_eq!(main["side"], "21001");
    let names: Vec<String> = env_of(container(&out, "main"))
        .into_iter()
        .map(|e| e.0)
        .collect();
    let own = names
        .iter()
        .filter(|n| *n == "KUSCIA_PORT_SIDE_NUMBER")
        .count();
    assert_eq!(own, 1, "{names:?}");
}
