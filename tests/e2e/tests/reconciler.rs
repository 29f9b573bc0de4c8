//! The reconciler in appimage-webhook on a real kube-apiserver: Services per port scope,
//! NetworkPolicies, restoration, cleanup by the garbage collector, and names it does not own.

use std::time::{Duration, Instant};

use appimage::labels;
use appimage::manifest;
use appimage::resource::{AppImage, ContainerPort, PortProtocol, PortScope};
use appimage::signature::payload;
use appimage_e2e::webhook::{SigningKey, Tls, Webhook, register};
use appimage_e2e::{Cluster, cluster, repo_root, text, unique, wait_until};
use serde_json::{Value, json};

fn example(file: &str, name: &str, tag: &str, signer: &SigningKey) -> AppImage {
    let text = std::fs::read_to_string(repo_root().join("examples").join(file)).unwrap();
    let mut img = manifest::appimages(file, &text).unwrap().remove(0);
    img.metadata.name = Some(name.into());
    img.metadata.labels = Some([("appimage-e2e".to_string(), tag.to_string())].into());
    img.spec.image.sign = Some(signer.sign(&payload(&img)));
    img
}

fn kubectl_stdin(c: &Cluster, args: &[&str], value: &Value) -> std::process::Output {
    let file = c.dir().join(format!("{}.json", unique("obj")));
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    let f = file.to_string_lossy().into_owned();
    let mut full: Vec<&str> = args.to_vec();
    full.extend_from_slice(&["-f", &f]);
    c.kubectl(&full)
}

fn pod(ns: &str, name: &str, image: &str, role: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {labels::APP_IMAGE: image},
                     "annotations": {labels::OPT_ROLE: role, labels::OPT_TASK_ID: "t1"}},
        "spec": {"containers": []}
    })
}

fn get(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = c.kubectl(&full);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn services(c: &Cluster, ns: &str, pod: &str) -> Vec<Value> {
    let sel = format!("{}={pod}", labels::POD_IDENTITY);
    get(c, &["services", "-n", ns, "-l", &sel]).unwrap()["items"]
        .as_array()
        .unwrap()
        .clone()
}

struct Setup {
    _work: tempfile::TempDir,
    _hook: Webhook,
    reg: String,
    ns: String,
    signer: SigningKey,
    tag: String,
}

fn setup(c: &Cluster) -> Setup {
    let work = tempfile::tempdir().unwrap();
    let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
    let signer = SigningKey::new(work.path());
    let hook = Webhook::start(c, &tls, &signer.pub_dir, &[]);
    let tag = unique("rc");
    let ns = c.namespace("rc");
    c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);
    let reg = register(c, &hook, &tls, &tag);
    Setup {
        _work: work,
        _hook: hook,
        reg,
        ns,
        signer,
        tag,
    }
}

fn apply_image(c: &Cluster, img: &AppImage) {
    let out = kubectl_stdin(c, &["apply"], &serde_json::to_value(img).unwrap());
    assert!(out.status.success(), "{:?}", text(&out));
}

/// Create a Pod once the webhook's cache has the AppImage.
fn create_pod(c: &Cluster, value: &Value) {
    let ok = wait_until(Duration::from_secs(20), || {
        kubectl_stdin(c, &["create", "--dry-run=server"], value)
            .status
            .success()
    });
    assert!(ok, "the webhook never accepted {value}");
    let out = kubectl_stdin(c, &["create"], value);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn services_follow_port_scopes_and_the_pod() {
    let c = cluster();
    let s = setup(c);
    let name = unique("sf");
    let mut img = example("secretflow-image.yaml", &name, &s.tag, &s.signer);
    // A Local port, which must get no Service.
    img.spec.deploy_templates[0].spec.containers[0]
        .ports
        .push(ContainerPort {
            name: "debug".into(),
            port: None,
            protocol: PortProtocol::HTTP,
            scope: PortScope::Local,
        });
    // Signed again: payload v2 covers the ports.
    img.spec.image.sign = Some(s.signer.sign(&payload(&img)));
    apply_image(c, &img);
    create_pod(c, &pod(&s.ns, "job-0", &name, ""));
    let created = Instant::now();
    let converged = wait_until(Duration::from_secs(30), || {
        services(c, &s.ns, "job-0").len() == 3
    });
    let elapsed = created.elapsed();
    assert!(
        converged,
        "Services never appeared: {:?}",
        services(c, &s.ns, "job-0")
    );
    eprintln!("reconciler: 3 Services {elapsed:?} after the Pod was created");

    let stored = get(c, &["pod", "job-0", "-n", &s.ns]).unwrap();
    let uid = stored["metadata"]["uid"].as_str().unwrap().to_string();
    let ports = stored["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .clone();
    let mut seen = Vec::new();
    for svc in services(c, &s.ns, "job-0") {
        let svc_name = svc["metadata"]["name"].as_str().unwrap().to_string();
        let port_name = svc["metadata"]["labels"][labels::PORT_NAME]
            .as_str()
            .unwrap()
            .to_string();
        let scope = svc["metadata"]["labels"][labels::PORT_SCOPE]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(svc_name, format!("job-0-{port_name}"));
        let spec = &svc["spec"];
        assert_eq!(spec["clusterIP"], "None");
        assert_eq!(spec["publishNotReadyAddresses"], true);
        assert_eq!(spec["selector"], json!({labels::POD_IDENTITY: "job-0"}));
        let container_port = ports
            .iter()
            .find(|p| p["name"] == port_name.as_str())
            .unwrap();
        assert_eq!(spec["ports"][0]["port"], container_port["containerPort"]);
        assert_eq!(spec["ports"][0]["targetPort"], port_name.as_str());
        let owner = &svc["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Pod");
        assert_eq!(owner["name"], "job-0");
        assert_eq!(owner["uid"], uid.as_str());
        assert_eq!(owner["controller"], true);
        seen.push((port_name, scope));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("fed".to_string(), "Cluster".to_string()),
            ("global".into(), "Domain".into()),
            ("spu".into(), "Cluster".into())
        ]
    );

    // The Pod's own config names exactly these Services.
    let key = format!("{}task-config.conf", labels::CONFIG_PREFIX);
    let conf: Value =
        serde_json::from_str(stored["metadata"]["annotations"][&key].as_str().unwrap()).unwrap();
    let define: Value = serde_json::from_str(conf["task_cluster_def"].as_str().unwrap()).unwrap();
    let global_port =
        ports.iter().find(|p| p["name"] == "global").unwrap()["containerPort"].clone();
    let endpoints: Vec<String> = define["parties"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["endpoints"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        endpoints,
        [
            format!("job-0-spu.{}.svc", s.ns),
            format!("job-0-fed.{}.svc", s.ns),
            format!("job-0-global.{}.svc:{global_port}", s.ns)
        ]
    );

    // A Service deleted by hand comes back.
    let before = get(c, &["service", "job-0-fed", "-n", &s.ns]).unwrap();
    c.kubectl_ok(&["delete", "service", "job-0-fed", "-n", &s.ns]);
    let back = wait_until(Duration::from_secs(15), || {
        get(c, &["service", "job-0-fed", "-n", &s.ns])
            .is_some_and(|v| v["metadata"]["uid"] != before["metadata"]["uid"])
    });
    assert!(back, "job-0-fed was not restored");

    // A port edited by hand is restored.
    c.kubectl_ok(&[
        "patch",
        "service",
        "job-0-spu",
        "-n",
        &s.ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/ports/0/port","value":1234}]"#,
    ]);
    let spu = ports.iter().find(|p| p["name"] == "spu").unwrap()["containerPort"].clone();
    let restored = wait_until(Duration::from_secs(15), || {
        get(c, &["service", "job-0-spu", "-n", &s.ns])
            .is_some_and(|v| v["spec"]["ports"][0]["port"] == spu)
    });
    assert!(restored, "job-0-spu's port was not restored");

    // Deleting the Pod removes its Services (the cluster's garbage collector, through the owner
    // references).
    c.kubectl_ok(&["delete", "pod", "job-0", "-n", &s.ns, "--wait=false"]);
    let gone = wait_until(Duration::from_secs(20), || {
        services(c, &s.ns, "job-0").is_empty()
    });
    assert!(
        gone,
        "Services outlived their Pod: {:?}",
        services(c, &s.ns, "job-0")
    );

    c.kubectl_ok(&[
        "delete",
        "mutatingwebhookconfiguration,validatingwebhookconfiguration",
        &s.reg,
    ]);
}

#[test]
fn foreign_objects_are_left_alone_and_reported() {
    let c = cluster();
    let s = setup(c);
    let name = unique("sf");
    apply_image(
        c,
        &example("secretflow-image.yaml", &name, &s.tag, &s.signer),
    );
    let foreign = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "job-1-fed", "namespace": s.ns, "labels": {"owner": "someone-else"}},
        "spec": {"ports": [{"name": "x", "port": 9999}], "selector": {"app": "other"}}
    });
    let out = kubectl_stdin(c, &["create"], &foreign);
    assert!(out.status.success(), "{:?}", text(&out));
    create_pod(c, &pod(&s.ns, "job-1", &name, ""));
    // The other two are made; ours-by-name is not touched, and an Event says why.
    assert!(wait_until(Duration::from_secs(30), || services(
        c, &s.ns, "job-1"
    )
    .len()
        == 2));
    let reported = wait_until(Duration::from_secs(30), || {
        get(
            c,
            &[
                "events",
                "-n",
                &s.ns,
                "--field-selector",
                "involvedObject.name=job-1",
            ],
        )
        .is_some_and(|v| {
            v["items"].as_array().unwrap().iter().any(|e| {
                e["reason"] == "ServiceConflict"
                    && e["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("job-1-fed")
            })
        })
    });
    assert!(reported, "no ServiceConflict Event for job-1");
    let svc = get(c, &["service", "job-1-fed", "-n", &s.ns]).unwrap();
    assert_eq!(svc["spec"]["ports"][0]["port"], 9999);
    assert_eq!(svc["metadata"]["labels"], json!({"owner": "someone-else"}));
    assert!(svc["metadata"].get("ownerReferences").is_none());
    c.kubectl_ok(&[
        "delete",
        "mutatingwebhookconfiguration,validatingwebhookconfiguration",
        &s.reg,
    ]);
}

#[test]
fn network_policy_lets_clients_reach_the_server() {
    let c = cluster();
    let s = setup(c);
    let name = unique("app");
    apply_image(c, &example("app-template.yaml", &name, &s.tag, &s.signer));
    create_pod(c, &pod(&s.ns, "server-0", &name, "server"));
    create_pod(c, &pod(&s.ns, "client-0", &name, "client"));
    let found = wait_until(Duration::from_secs(30), || {
        get(c, &["networkpolicy", "server-0-ingress", "-n", &s.ns]).is_some()
    });
    assert!(found, "no NetworkPolicy for the server");
    let np = get(c, &["networkpolicy", "server-0-ingress", "-n", &s.ns]).unwrap();
    let server = get(c, &["pod", "server-0", "-n", &s.ns]).unwrap();
    let global = server["spec"]["containers"][0]["ports"][0]["containerPort"].clone();
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"],
        json!({labels::POD_IDENTITY: "server-0"})
    );
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    let rule = &np["spec"]["ingress"][0];
    assert_eq!(
        rule["from"][0]["podSelector"]["matchLabels"],
        json!({labels::APP_IMAGE: name, labels::POD_ROLE: "client"})
    );
    assert_eq!(rule["ports"][0]["port"], global);
    assert_eq!(np["metadata"]["ownerReferences"][0]["name"], "server-0");
    // The client Pod carries the labels that rule selects.
    let client = get(c, &["pod", "client-0", "-n", &s.ns]).unwrap();
    assert_eq!(client["metadata"]["labels"][labels::POD_ROLE], "client");
    assert_eq!(
        client["metadata"]["labels"][labels::APP_IMAGE],
        name.as_str()
    );
    // The client template has no networkPolicy: no policy for it.
    assert!(get(c, &["networkpolicy", "client-0-ingress", "-n", &s.ns]).is_none());
    // Deleting the server removes its policy.
    c.kubectl_ok(&["delete", "pod", "server-0", "-n", &s.ns, "--wait=false"]);
    assert!(wait_until(Duration::from_secs(20), || {
        get(c, &["networkpolicy", "server-0-ingress", "-n", &s.ns]).is_none()
    }));
    c.kubectl_ok(&[
        "delete",
        "mutatingwebhookconfiguration,validatingwebhookconfiguration",
        &s.reg,
    ]);
}
