//! Kuscia conformance on a real kube-apiserver (issue 16): the NetworkPolicy the reconciler
//! makes never opens more than the AppImage names, and a Pod mounting a config file that
//! `configTemplates` lacks is admitted with a warning kubectl shows, its other mounts in place.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use appimage::labels;
use appimage::manifest;
use appimage::resource::NetworkPolicy as Policy;
use appimage::resource::{AppImage, ConfigVolumeMount, Ingress, IngressFrom, IngressPort};
use appimage::signature::payload;
use appimage_e2e::webhook::{SigningKey, Tls, Webhook, register};
use appimage_e2e::{Cluster, cluster, repo_root, text, unique, wait_until};
use serde_json::{Value, json};

/// The seed AppImage as `name`, labelled for this test's webhook registration, after `edit`,
/// then signed.
fn seed(name: &str, s: &Setup, edit: impl FnOnce(&mut AppImage)) -> AppImage {
    let file = "secretflow-image.yaml";
    let text = std::fs::read_to_string(repo_root().join("examples").join(file)).unwrap();
    let mut img = manifest::appimages(file, &text).unwrap().remove(0);
    img.metadata.name = Some(name.into());
    img.metadata.labels = Some([("appimage-e2e".to_string(), s.tag.clone())].into());
    edit(&mut img);
    img.spec.image.sign = Some(s.signer.sign(&payload(&img)));
    img
}

/// kubectl `args` on `value` written to a file (`-f FILE` appended).
fn kubectl_file(c: &Cluster, args: &[&str], value: &Value) -> Output {
    let file = c.dir().join(format!("{}.json", unique("obj")));
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    let f = file.to_string_lossy().into_owned();
    let mut full: Vec<&str> = args.to_vec();
    full.extend_from_slice(&["-f", &f]);
    c.kubectl(&full)
}

fn pod(ns: &str, name: &str, image: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {labels::APP_IMAGE: image},
                     "annotations": annotations},
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

struct Setup {
    _work: tempfile::TempDir,
    hook: Webhook,
    ns: String,
    signer: SigningKey,
    tag: String,
}

/// A webhook (with its reconciler) registered for a namespace of this test's own.
fn setup(c: &Cluster) -> Setup {
    let work = tempfile::tempdir().unwrap();
    let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
    let signer = SigningKey::new(work.path());
    let hook = Webhook::start(c, &tls, &signer.pub_dir, &[]);
    let tag = unique("cf");
    let ns = c.namespace("cf");
    c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);
    register(c, &hook, &tls, &tag);
    Setup {
        _work: work,
        hook,
        ns,
        signer,
        tag,
    }
}

/// Apply `img`; returns kubectl's stderr (the validating webhook's warnings).
fn apply_image(c: &Cluster, s: &Setup, img: &AppImage) -> String {
    let out = kubectl_file(c, &["apply"], &serde_json::to_value(img).unwrap());
    assert!(out.status.success(), "{:?}\n{}", text(&out), s.hook.logs());
    text(&out).1
}

/// Create `value` once the webhook's store has its AppImage; returns kubectl's output.
fn create_pod(c: &Cluster, s: &Setup, value: &Value) -> Output {
    let ready = wait_until(Duration::from_secs(30), || {
        kubectl_file(c, &["create", "--dry-run=server"], value)
            .status
            .success()
    });
    assert!(
        ready,
        "the webhook never accepted {value}:\n{}",
        s.hook.logs()
    );
    kubectl_file(c, &["create"], value)
}

/// The ports a Pod labelled `peer` may reach under the stored policy `spec`, read the way
/// Kubernetes reads it: `None` means every port (a rule with a missing or empty `ports`).
fn reachable(spec: &Value, peer: &Value) -> Option<BTreeSet<i64>> {
    let mut ports = BTreeSet::new();
    let rules = spec["ingress"].as_array().cloned().unwrap_or_default();
    for rule in &rules {
        let from = rule["from"].as_array().cloned().unwrap_or_default();
        // A missing or empty `from` admits every source.
        let admitted = from.is_empty()
            || from.iter().any(|p| {
                let want = p["podSelector"]["matchLabels"].as_object();
                want.is_some_and(|w| w.iter().all(|(k, v)| &peer[k] == v))
            });
        if !admitted {
            continue;
        }
        let listed = rule["ports"].as_array().cloned().unwrap_or_default();
        if listed.is_empty() {
            return None;
        }
        ports.extend(listed.iter().filter_map(|p| p["port"].as_i64()));
    }
    Some(ports)
}

#[test]
fn the_reconciled_policy_never_opens_an_undeclared_ports_rule() {
    let c = cluster();
    let s = setup(c);
    let name = unique("np");
    let rule = |ports: &[&str]| Ingress {
        from: IngressFrom {
            roles: vec!["client".into()],
        },
        ports: ports
            .iter()
            .map(|p| IngressPort { port: (*p).into() })
            .collect(),
    };
    let img = seed(&name, &s, |img| {
        // Rule 0 names no declared port: it once became `ports: []`, every port.
        img.spec.deploy_templates[0].network_policy = Some(Policy {
            ingresses: vec![rule(&["nope"]), rule(&["fed", "nope"])],
        });
    });
    // Accepted (Kuscia accepts it too), with a warning for each part left out.
    let warned = apply_image(c, &s, &img);
    assert!(
        warned.contains("Warning:") && warned.contains("networkPolicy.ingresses[0].ports"),
        "{warned}"
    );
    let out = create_pod(c, &s, &pod(&s.ns, "job-0", &name, json!({})));
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}\n{}", s.hook.logs());
    assert!(
        stderr.contains("Warning:")
            && stderr.contains("names port \"nope\", which no container of the template declares"),
        "{stderr}"
    );

    let policy_name = "job-0-ingress";
    let made = wait_until(Duration::from_secs(30), || {
        get(c, &["networkpolicy", policy_name, "-n", &s.ns]).is_some()
    });
    assert!(made, "no NetworkPolicy for job-0:\n{}", s.hook.logs());
    let np = get(c, &["networkpolicy", policy_name, "-n", &s.ns]).unwrap();
    let spec = &np["spec"];
    assert_eq!(spec["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        spec["podSelector"]["matchLabels"][labels::POD_IDENTITY],
        "job-0"
    );
    // No rule of the stored policy has an empty or missing `from` or `ports`.
    for rule in spec["ingress"].as_array().unwrap() {
        for list in ["from", "ports"] {
            let items = rule[list].as_array().map_or(0, Vec::len);
            assert!(items > 0, "rule with no {list}: {np}");
        }
    }

    let stored = get(c, &["pod", "job-0", "-n", &s.ns]).unwrap();
    let number = |port: &str| -> i64 {
        let ports = stored["spec"]["containers"][0]["ports"].as_array().unwrap();
        let p = ports.iter().find(|p| p["name"] == port).unwrap();
        p["containerPort"].as_i64().unwrap()
    };
    let peer = |role: &str| json!({labels::APP_IMAGE: name, labels::POD_ROLE: role});
    // The client reaches fed and nothing else; any other Pod reaches nothing.
    assert_eq!(
        reachable(spec, &peer("client")),
        Some(BTreeSet::from([number("fed")]))
    );
    assert_ne!(number("fed"), number("spu"));
    assert_eq!(reachable(spec, &peer("server")), Some(BTreeSet::new()));
    assert_eq!(reachable(spec, &json!({})), Some(BTreeSet::new()));
}

#[test]
fn a_mount_of_a_missing_config_file_is_admitted_with_a_warning() {
    let c = cluster();
    let s = setup(c);
    let name = unique("mnt");
    let img = seed(&name, &s, |img| {
        img.spec.deploy_templates[0].spec.containers[0]
            .config_volume_mounts
            .push(ConfigVolumeMount {
                mount_path: "/etc/kuscia/missing.conf".into(),
                sub_path: "missing.conf".into(),
            });
    });
    let warned = apply_image(c, &s, &img);
    assert!(
        warned.contains("Warning:")
            && warned.contains("\"missing.conf\" is not a key of spec.configTemplates"),
        "{warned}"
    );

    let out = create_pod(
        c,
        &s,
        &pod(&s.ns, "job-0", &name, json!({labels::OPT_TASK_ID: "t1"})),
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}\n{}", s.hook.logs());
    // kubectl prints the admission warning.
    assert!(
        stderr.contains("Warning:")
            && stderr.contains("mounts config file \"missing.conf\", which spec.configTemplates does not define; the mount is left out"),
        "{stderr}"
    );

    let stored = get(c, &["pod", "job-0", "-n", &s.ns]).unwrap();
    let ctr = &stored["spec"]["containers"][0];
    let mounts: Vec<(&str, &str)> = ctr["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == labels::CONFIG_VOLUME)
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap(),
                m["subPath"].as_str().unwrap(),
            )
        })
        .collect();
    // The other mount is there; the missing file's is not.
    assert_eq!(
        mounts,
        [("/work/kuscia/task-config.conf", "task-config.conf")]
    );
    let key = format!("{}task-config.conf", labels::CONFIG_PREFIX);
    let conf: Value =
        serde_json::from_str(stored["metadata"]["annotations"][&key].as_str().unwrap()).unwrap();
    assert_eq!(conf["task_id"], "t1");
    // As Kuscia builds its containers.
    assert_eq!(ctr["terminationMessagePolicy"], "FallbackToLogsOnError");

    // The strict option refuses the same Pod, naming the file.
    let strict = pod(&s.ns, "job-1", &name, json!({labels::OPT_STRICT: "true"}));
    let out = kubectl_file(c, &["create"], &strict);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "strict mode admitted it");
    assert!(
        stderr.contains("denied the request") && stderr.contains("\"missing.conf\""),
        "{stderr}"
    );
}

#[test]
fn render_and_validate_say_what_is_left_out() {
    let c = cluster();
    let file = "secretflow-image.yaml";
    let yaml = std::fs::read_to_string(repo_root().join("examples").join(file)).unwrap();
    let mut img = manifest::appimages(file, &yaml).unwrap().remove(0);
    img.spec.deploy_templates[0].spec.containers[0]
        .config_volume_mounts
        .push(ConfigVolumeMount {
            mount_path: "/etc/kuscia/missing.conf".into(),
            sub_path: "missing.conf".into(),
        });
    let dir = tempfile::tempdir().unwrap();
    let path = appimage_e2e::write_json(dir.path(), &serde_json::to_value(&img).unwrap());
    let path = path.to_string_lossy().into_owned();
    let run = |args: &[&str]| c.command("kubectl").args(args).output().unwrap();

    // render: the Pod on stdout without the mount, the warning on stderr.
    let out = run(&["appimage", "render", "-f", &path, "-o", "json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("Warning: AppImage \"secretflow-image\": ")
            && stderr.contains("\"missing.conf\"")
            && stderr.contains("the mount is left out"),
        "{stderr}"
    );
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let mounts = doc["pod"]["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["subPath"], "task-config.conf");

    // --strict refuses it.
    let out = run(&["appimage", "render", "-f", &path, "--strict"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("mounts config file \"missing.conf\"") && stderr.contains("strict mode"),
        "{stderr}"
    );

    // validate: valid, with the warning and the field path.
    let out = run(&["appimage", "validate", "-f", &path]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");
    assert!(
        stderr.contains(
            "Warning: appimage \"secretflow-image\": spec.deployTemplates[0].spec.containers[0].configVolumeMounts[1].subPath: \"missing.conf\" is not a key of spec.configTemplates"
        ),
        "{stderr}"
    );
}
