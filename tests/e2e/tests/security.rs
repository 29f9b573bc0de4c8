//! Security properties on the real control plane:
//! - the chart's RBAC grants the webhook exactly what its reconciler needs;
//! - kube-system is never mutated, even by a registration that does not exclude it;
//! - nothing secret reaches the webhook's log;
//! - no annotation or label lets a Pod skip signature verification;
//! - SIGTERM drains in-flight requests: every request sent before the signal is answered.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use appimage::labels;
use appimage::manifest;
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage_e2e::review::{POD, review};
use appimage_e2e::webhook::{SigningKey, Tls, Webhook, pod_registration, register};
use appimage_e2e::{Cluster, cluster, repo_root, text, unique, wait_until, write_json};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

fn seed(name: &str, tag: &str) -> AppImage {
    let text = std::fs::read_to_string(repo_root().join("examples/secretflow-image.yaml")).unwrap();
    let mut img = manifest::appimages("seed", &text).unwrap().remove(0);
    img.metadata.name = Some(name.into());
    img.metadata.labels = Some([("appimage-e2e".to_string(), tag.to_string())].into());
    img.spec.image.id = Some(DIGEST.into());
    img
}

fn signed(mut img: AppImage, key: &SigningKey) -> AppImage {
    img.spec.image.sign = Some(key.sign(&payload(&img)));
    img
}

fn apply(c: &Cluster, value: &Value) {
    let file = write_json(c.dir(), value);
    c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
}

fn create(c: &Cluster, value: &Value, extra: &[&str]) -> std::process::Output {
    let file = write_json(c.dir(), value);
    let f = file.to_string_lossy().into_owned();
    let mut args = vec!["create", "-f", &f];
    args.extend_from_slice(extra);
    c.kubectl(&args)
}

fn get(c: &Cluster, args: &[&str]) -> Value {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&c.kubectl_ok(&full)).unwrap()
}

fn pod(ns: &str, name: &str, labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "secretflow", "image": "busybox"}]}
    })
}

fn is_injected(pod: &Value) -> bool {
    pod["metadata"]["annotations"].get(labels::STATUS).is_some()
        && pod["spec"]["containers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "secretflow"))
}

/// A webhook with signed, tampered and unsigned AppImages, registered for one namespace.
struct Setup {
    _work: tempfile::TempDir,
    tls: Tls,
    signer: SigningKey,
    hook: Webhook,
    ns: String,
    reg: String,
    good: String,
    tampered: String,
    unsigned: String,
}

impl Setup {
    fn new(c: &Cluster, extra: &[&str]) -> Setup {
        let work = tempfile::tempdir().unwrap();
        let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
        let signer = SigningKey::new(work.path());
        let tag = unique("sec");
        let (good, tampered, unsigned) = (
            unique("sec-good"),
            unique("sec-tampered"),
            unique("sec-unsigned"),
        );
        let mut bad = signed(seed(&tampered, "none"), &signer);
        bad.spec.image.tag = "evil".into();
        let mut nosig = seed(&unsigned, "none");
        nosig.spec.image.sign = None;
        for img in [signed(seed(&good, "none"), &signer), bad, nosig] {
            apply(c, &serde_json::to_value(img).unwrap());
        }
        let hook = Webhook::start(c, &tls, &signer.pub_dir, extra);
        let ns = c.namespace("sec");
        c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);
        let reg = register(c, &hook, &tls, &tag);
        let probe = pod(&ns, "probe", json!({labels::APP_IMAGE: good}), json!({}));
        assert!(
            wait_until(Duration::from_secs(30), || create(
                c,
                &probe,
                &["--dry-run=server"]
            )
            .status
            .success()),
            "the webhook never admitted {good}:\n{}",
            hook.logs()
        );
        Setup {
            _work: work,
            tls,
            signer,
            hook,
            ns,
            reg,
            good,
            tampered,
            unsigned,
        }
    }

    fn teardown(&self, c: &Cluster) {
        let _ = c.kubectl(&["delete", "mutatingwebhookconfiguration", &self.reg]);
        let _ = c.kubectl(&["delete", "validatingwebhookconfiguration", &self.reg]);
    }
}

/// `kubectl auth can-i --list` rows: resource -> verbs (resource rows only).
fn can_i_list(c: &Cluster, who: &str) -> (BTreeMap<String, BTreeSet<String>>, Vec<String>) {
    let out = c.kubectl_ok(&["auth", "can-i", "--list", &format!("--as={who}")]);
    let mut resources: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut non_resource = Vec::new();
    for line in out.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() {
            continue;
        }
        // Resources  Non-Resource URLs  Resource Names  Verbs
        let verbs_at = cols
            .iter()
            .position(|c| c.starts_with('[') && !c.starts_with("[]"));
        let verbs: BTreeSet<String> = match verbs_at {
            Some(i) => cols[i..]
                .join(" ")
                .trim_matches(|c| c == '[' || c == ']')
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            None => BTreeSet::new(),
        };
        if cols[0].starts_with('[') {
            non_resource.push(line.trim().to_string());
        } else {
            resources
                .entry(cols[0].to_string())
                .or_default()
                .extend(verbs);
        }
    }
    (resources, non_resource)
}

fn can_i(c: &Cluster, who: &str, args: &[&str]) -> String {
    let mut full = vec!["auth", "can-i"];
    full.extend_from_slice(args);
    let who = format!("--as={who}");
    full.push(&who);
    text(&c.kubectl(&full)).0.trim().to_string()
}

#[test]
fn chart_rbac_is_least_privilege() {
    let c = cluster();
    let out = Command::new(repo_root().join("scripts/tools.sh"))
        .arg("helm")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("scripts/tools.sh helm");
    assert!(out.status.success(), "{}", text(&out).1);
    let helm = PathBuf::from(text(&out).0.lines().last().unwrap().trim());
    let home = tempfile::tempdir().unwrap();
    let ns = c.namespace("rbac");
    let release = "sec";
    let rendered = Command::new(&helm)
        .args(["template", release])
        .arg(repo_root().join("charts/appimage-webhook"))
        .args(["--namespace", &ns])
        .args([
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ])
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("helm template");
    assert!(rendered.status.success(), "{}", text(&rendered).1);
    let manifests = text(&rendered).0;
    let kinds: BTreeSet<&str> = manifests
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    assert_eq!(
        kinds,
        // The Role and RoleBinding hold the leader-election Lease rights, in the release namespace.
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ]),
        "{manifests}"
    );
    let file = c.dir().join(format!("{}.yaml", unique("rbac")));
    std::fs::write(&file, &manifests).unwrap();
    c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
    // Two ServiceAccounts (issue 25): the controllers', checked first, and admission's.
    let sa = format!("system:serviceaccount:{ns}:{release}-appimage-webhook-controllers");
    let admission = format!("system:serviceaccount:{ns}:{release}-appimage-webhook");

    let set = |v: &[&str]| {
        v.iter()
            .map(|s| (*s).to_string())
            .collect::<BTreeSet<String>>()
    };
    let manage = set(&["get", "list", "watch", "create", "patch", "delete"]);
    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("pods", set(&["get", "list", "watch"])),
        ("services", manage.clone()),
        ("networkpolicies.networking.k8s.io", manage.clone()),
        (
            "appimages.kuscia.secretflow",
            set(&["get", "list", "watch"]),
        ),
        ("events", set(&["create", "patch"])),
        ("events.events.k8s.io", set(&["create", "patch"])),
        // The batch controller (issue 18).
        (
            "batchdeployments.appimage.kuscia.secretflow",
            set(&["get", "list", "watch"]),
        ),
        (
            "batchdeployments.appimage.kuscia.secretflow/status",
            set(&["patch"]),
        ),
        (
            "batchdeployments.appimage.kuscia.secretflow/finalizers",
            set(&["update"]),
        ),
        ("deployments.apps", manage.clone()),
        ("jobs.batch", manage.clone()),
        ("nodes", set(&["get", "list", "watch"])),
        // Revisions and rollouts (issue 17).
        (
            "appimagerevisions.appimage.kuscia.secretflow",
            manage.clone(),
        ),
        // Progressive rollouts (issue 28): the policy read, its status written, check Jobs owned.
        (
            "appimagerollouts.appimage.kuscia.secretflow",
            set(&["get", "list", "watch"]),
        ),
        (
            "appimagerollouts.appimage.kuscia.secretflow/status",
            set(&["patch"]),
        ),
        (
            "appimagerollouts.appimage.kuscia.secretflow/finalizers",
            set(&["update"]),
        ),
        ("statefulsets.apps", set(&["get", "list", "watch", "patch"])),
        ("daemonsets.apps", set(&["get", "list", "watch", "patch"])),
        ("cronjobs.batch", set(&["get", "list", "watch", "patch"])),
        ("replicasets.apps", set(&["get", "list", "watch"])),
        // Services per workload (issue 17).
        ("deployments.apps/finalizers", set(&["update"])),
        ("statefulsets.apps/finalizers", set(&["update"])),
        ("daemonsets.apps/finalizers", set(&["update"])),
        ("jobs.batch/finalizers", set(&["update"])),
        ("cronjobs.batch/finalizers", set(&["update"])),
        // What every authenticated user may do (system:basic-user).
        ("selfsubjectreviews.authentication.k8s.io", set(&["create"])),
        (
            "selfsubjectaccessreviews.authorization.k8s.io",
            set(&["create"]),
        ),
        (
            "selfsubjectrulesreviews.authorization.k8s.io",
            set(&["create"]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut granted = BTreeMap::new();
    let ok = wait_until(Duration::from_secs(20), || {
        granted = can_i_list(c, &sa).0;
        granted == expected
    });
    let (_, non_resource) = can_i_list(c, &sa);
    println!("can-i --list for {sa}: {granted:#?}\nnon-resource: {non_resource:#?}");
    assert!(ok, "granted {granted:#?}\nexpected {expected:#?}");
    // Non-resource URLs: discovery and health only, read only.
    for row in &non_resource {
        assert!(
            row.ends_with("[get]"),
            "non-resource rule beyond get: {row}"
        );
    }

    for (args, want) in [
        (&["create", "pods"][..], "no"),
        (&["get", "secrets"], "no"),
        (&["list", "secrets", "--all-namespaces"], "no"),
        (&["get", "configmaps", "-n", "kube-system"], "no"),
        (&["update", "pods"], "no"),
        (&["patch", "pods"], "no"),
        (&["delete", "pods"], "no"),
        (&["create", "pods/exec"], "no"),
        (&["update", "services"], "no"),
        (&["create", "appimages.kuscia.secretflow"], "no"),
        (&["delete", "appimages.kuscia.secretflow"], "no"),
        (
            &[
                "create",
                "mutatingwebhookconfigurations.admissionregistration.k8s.io",
            ],
            "no",
        ),
        (
            &["create", "clusterrolebindings.rbac.authorization.k8s.io"],
            "no",
        ),
        (&["impersonate", "serviceaccounts"], "no"),
        (&["*", "*"], "no"),
        (&["watch", "pods", "--all-namespaces"], "yes"),
        (&["patch", "services", "-n", "default"], "yes"),
        (
            &[
                "delete",
                "networkpolicies.networking.k8s.io",
                "-n",
                "default",
            ],
            "yes",
        ),
        (&["list", "appimages.kuscia.secretflow"], "yes"),
        (&["create", "events", "-n", "default"], "yes"),
        (&["create", "deployments.apps", "-n", "default"], "yes"),
        (&["update", "deployments.apps", "-n", "default"], "no"),
        (&["delete", "jobs.batch", "-n", "default"], "yes"),
        (&["patch", "nodes"], "no"),
        (
            &["update", "batchdeployments.appimage.kuscia.secretflow"],
            "no",
        ),
    ] {
        assert_eq!(can_i(c, &sa, args), want, "can-i {args:?}");
    }

    // Admission: reads AppImages and their revisions, writes Events, nothing else.
    let read = set(&["get", "list", "watch"]);
    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("appimages.kuscia.secretflow", read.clone()),
        ("appimagerevisions.appimage.kuscia.secretflow", read),
        ("events", set(&["create", "patch"])),
        ("events.events.k8s.io", set(&["create", "patch"])),
        ("selfsubjectreviews.authentication.k8s.io", set(&["create"])),
        (
            "selfsubjectaccessreviews.authorization.k8s.io",
            set(&["create"]),
        ),
        (
            "selfsubjectrulesreviews.authorization.k8s.io",
            set(&["create"]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let ok = wait_until(Duration::from_secs(20), || {
        granted = can_i_list(c, &admission).0;
        granted == expected
    });
    println!("can-i --list for {admission}: {granted:#?}");
    assert!(ok, "granted {granted:#?}\nexpected {expected:#?}");
    for (args, want) in [
        (&["get", "pods"][..], "no"),
        (&["patch", "daemonsets.apps", "-n", "kube-system"], "no"),
        (&["create", "deployments.apps", "-n", "kube-system"], "no"),
        (&["create", "services", "-n", "default"], "no"),
        (&["create", "leases.coordination.k8s.io", "-n", &ns], "no"),
        (&["watch", "appimages.kuscia.secretflow"], "yes"),
        (&["create", "events", "-n", "default"], "yes"),
    ] {
        assert_eq!(
            can_i(c, &admission, args),
            want,
            "can-i {args:?} as {admission}"
        );
    }
}

#[test]
fn kube_system_is_never_mutated() {
    let c = cluster();
    let s = Setup::new(c, &[]);
    // A registration WITHOUT any namespace exclusion: only an object selector (a label unique
    // to this test, so no other test's Pods reach it).
    let tag = unique("ks");
    let name = unique("appimage-ks");
    let manifest = pod_registration(
        &name,
        &s.hook.url("/mutate"),
        &s.tls,
        json!({"matchExpressions": [
            {"key": labels::APP_IMAGE, "operator": "Exists"},
            {"key": "appimage-e2e-ks", "operator": "In", "values": [tag]}
        ]}),
        json!({}),
    );
    apply(c, &manifest);
    let other = c.namespace("ks");
    let labels = json!({labels::APP_IMAGE: s.good, "appimage-e2e-ks": tag});
    // Control: in another namespace this registration mutates.
    let control = pod(
        &other,
        "control",
        labels.clone(),
        json!({labels::OPT_TASK_ID: "t1"}),
    );
    assert!(
        wait_until(Duration::from_secs(20), || create(
            c,
            &control,
            &["--dry-run=server", "-o", "json"]
        )
        .status
        .success()
            && is_injected(
                &serde_json::from_slice(
                    &create(c, &control, &["--dry-run=server", "-o", "json"]).stdout
                )
                .unwrap_or_default()
            )),
        "the registration never mutated a Pod:\n{}",
        s.hook.logs()
    );
    let pod_name = unique("ks-pod");
    let out = create(
        c,
        &pod(
            "kube-system",
            &pod_name,
            labels,
            json!({labels::OPT_TASK_ID: "t1"}),
        ),
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let stored = get(c, &["pod", &pod_name, "-n", "kube-system"]);
    assert!(!is_injected(&stored), "kube-system Pod mutated: {stored}");
    assert_eq!(
        stored["spec"]["containers"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(stored["spec"]["containers"][0]["image"], "busybox");
    assert!(
        stored["metadata"]["labels"]
            .get(labels::POD_IDENTITY)
            .is_none()
    );
    // It did reach the webhook, which let it through untouched.
    let log = s.hook.logs();
    assert!(
        log.lines().any(|l| l.contains(&pod_name)
            && l.contains("\"outcome\":\"allowed\"")
            && l.contains("kube-system")),
        "no allowed admission of {pod_name} in the log:\n{log}"
    );
    c.kubectl_ok(&[
        "delete",
        "pod",
        &pod_name,
        "-n",
        "kube-system",
        "--wait=false",
    ]);
    c.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &name]);
    s.teardown(c);
}

#[test]
fn annotations_cannot_skip_signature_verification() {
    let c = cluster();
    let s = Setup::new(c, &[]);
    // A genuinely injected Pod of the good AppImage, to copy a real status annotation from.
    let out = create(
        c,
        &pod(
            &s.ns,
            "real",
            json!({labels::APP_IMAGE: s.good}),
            json!({labels::OPT_TASK_ID: "t1"}),
        ),
        &["--dry-run=server", "-o", "json"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let real: Value = serde_json::from_slice(&out.stdout).unwrap();
    let real_status = real["metadata"]["annotations"][labels::STATUS]
        .as_str()
        .unwrap()
        .to_string();
    let spoofed_status = real_status.replace(&s.good, &s.tampered);

    let options = json!({
        labels::STATUS: spoofed_status,
        "appimage.kuscia.secretflow/require-signature": "false",
        "appimage.kuscia.secretflow/skip-verify": "true",
        "appimage.kuscia.secretflow/verified": "true",
        "appimage.kuscia.secretflow/signature": "ok",
        labels::OPT_STRICT: "false",
        labels::OPT_VALUES: "{\"REQUIRE_SIGNATURE\":\"false\"}",
        labels::IMAGE_ID: DIGEST,
    });
    for (i, image) in [&s.tampered, &s.unsigned].into_iter().enumerate() {
        // Options as annotations.
        let out = create(
            c,
            &pod(
                &s.ns,
                &format!("spoof-a{i}"),
                json!({labels::APP_IMAGE: image}),
                options.clone(),
            ),
            &[],
        );
        let err = text(&out).1;
        assert!(
            !out.status.success() && err.contains("failed signature verification"),
            "{image}: {err}"
        );
        // The same options as labels (label values cannot hold JSON; the simple ones only).
        let labels = json!({
            labels::APP_IMAGE: image,
            "appimage.kuscia.secretflow/require-signature": "false",
            "appimage.kuscia.secretflow/skip-verify": "true",
            labels::OPT_STRICT: "false",
        });
        let out = create(
            c,
            &pod(&s.ns, &format!("spoof-l{i}"), labels, json!({})),
            &[],
        );
        let err = text(&out).1;
        assert!(
            !out.status.success() && err.contains("failed signature verification"),
            "{image}: {err}"
        );
        // A whole injected Pod (containers, config, status) relabelled: still verified.
        let mut copy = real.clone();
        copy["metadata"]["name"] = json!(format!("spoof-c{i}"));
        copy["metadata"]["labels"][labels::APP_IMAGE] = json!(image);
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            copy["metadata"].as_object_mut().unwrap().remove(f);
        }
        copy.as_object_mut().unwrap().remove("status");
        let out = create(c, &copy, &[]);
        let err = text(&out).1;
        assert!(
            !out.status.success() && err.contains("failed signature verification"),
            "{image}: {err}"
        );
    }
    // None of those Pods exists.
    let pods = get(c, &["pods", "-n", &s.ns]);
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(0), "{pods}");

    // On a good image a spoofed status (another AppImage, no ports) is replaced, not trusted.
    let spoof = json!({"appImage": "someone-else", "resourceVersion": "1", "template": "x", "role": "", "image": "evil:latest", "ports": []}).to_string();
    let out = create(
        c,
        &pod(
            &s.ns,
            "good-spoof",
            json!({labels::APP_IMAGE: s.good}),
            json!({labels::STATUS: spoof, labels::OPT_TASK_ID: "t1"}),
        ),
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let stored = get(c, &["pod", "good-spoof", "-n", &s.ns]);
    let status: Value = serde_json::from_str(
        stored["metadata"]["annotations"][labels::STATUS]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(status["appImage"], s.good.as_str());
    assert_eq!(
        status["ports"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
    assert!(is_injected(&stored));
    s.teardown(c);
}

#[test]
fn nothing_secret_is_logged() {
    let c = cluster();
    let s = Setup::new(c, &[]);
    let marker = unique("SECRET-MARKER");
    // Labelled Pods with values only their bodies hold.
    let annotations = json!({
        labels::OPT_TASK_ID: format!("{marker}-task"),
        labels::OPT_INPUT_CONFIG: format!("{{\"password\":\"{marker}-input\"}}"),
        labels::OPT_VALUES: format!("{{\"TOKEN\":\"{marker}-value\"}}"),
        "team.example/notes": format!("{marker}-annotation"),
    });
    let mut body = pod(
        &s.ns,
        "logged-0",
        json!({labels::APP_IMAGE: s.good}),
        annotations.clone(),
    );
    body["spec"]["containers"][0]["env"] =
        json!([{"name": "PASSWORD", "value": format!("{marker}-env")}]);
    let out = create(c, &body, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    for (i, image) in [&s.tampered, &s.unsigned, &"no-such-image".to_string()]
        .into_iter()
        .enumerate()
    {
        let mut p = body.clone();
        p["metadata"]["name"] = json!(format!("denied-{i}"));
        p["metadata"]["labels"][labels::APP_IMAGE] = json!(image);
        assert!(!create(c, &p, &[]).status.success());
    }
    let dry = create(
        c,
        &pod(
            &s.ns,
            "dry",
            json!({labels::APP_IMAGE: s.good}),
            annotations,
        ),
        &["--dry-run=server"],
    );
    assert!(dry.status.success());
    // Reconciled objects are logged about too: wait for them.
    assert!(wait_until(Duration::from_secs(30), || {
        get(c, &["services", "-n", &s.ns])["items"]
            .as_array()
            .is_some_and(|i| i.len() == 3)
    }));

    let log = s.hook.logs();
    assert!(log.lines().count() >= 5, "{log}");
    let mut secrets: Vec<(String, String)> =
        vec![("PRIVATE KEY".into(), "a PEM private key header".into())];
    for (what, path) in [("signing key", &s.signer.private), ("TLS key", &s.tls.key)] {
        let pem = std::fs::read_to_string(path).unwrap();
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        {
            secrets.push((line.to_string(), format!("a line of the {what}")));
        }
    }
    let good: Value = get(c, &["appimage", &s.good]);
    let sign = good["spec"]["image"]["sign"].as_str().unwrap().to_string();
    secrets.push((sign.clone(), "spec.image.sign".into()));
    secrets.push((sign[..24].to_string(), "part of spec.image.sign".into()));
    secrets.push((marker.clone(), "a value from a Pod body".into()));
    secrets.push(("\"containers\"".into(), "a Pod spec".into()));
    secrets.push(("busybox".into(), "a container image from a Pod body".into()));
    for (secret, what) in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the webhook log holds {what}:\n{log}"
        );
    }
    println!(
        "log: {} lines, {} bytes, checked for {} secrets",
        log.lines().count(),
        log.len(),
        secrets.len()
    );
    s.teardown(c);
}

/// ESTABLISHED server-side TCP connections on 127.0.0.1:`port`.
fn established(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[1] == local && cols[3] == "01"
        })
        .count()
}

#[test]
fn sigterm_drains_in_flight_requests() {
    let c = cluster();
    // A long request timeout: the requests below are held open on purpose.
    let mut s = Setup::new(c, &["--request-timeout", "60s"]);
    let review = review(
        POD,
        "CREATE",
        &s.ns,
        pod(
            &s.ns,
            "drain-0",
            json!({labels::APP_IMAGE: s.good}),
            json!({labels::OPT_TASK_ID: "t1"}),
        ),
    );
    let body = serde_json::to_vec(&review).unwrap();
    let (head, tail) = body.split_at(body.len() / 2);
    let port = s.hook.port;
    let before = established(port);

    // 24 requests whose bodies are half sent (streamed from stdin, chunked), half over
    // HTTP/1.1 and half over HTTP/2 (what the apiserver speaks).
    const N: usize = 24;
    let mut clients: Vec<std::process::Child> = (0..N)
        .map(|i| {
            let mut child = Command::new("curl")
                .args(["-sS", "--max-time", "60", "--cacert"])
                .arg(&s.tls.ca)
                .arg(if i % 2 == 0 { "--http1.1" } else { "--http2" })
                .args([
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/json",
                    "-T",
                    "-",
                ])
                .args(["-w", "\n%{http_code}"])
                .arg(s.hook.url("/mutate"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stdin = child.stdin.as_mut().unwrap();
            stdin.write_all(head).unwrap();
            stdin.flush().unwrap();
            child
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || established(port) >= before + N),
        "only {} connections established",
        established(port) - before
    );
    // Let every client finish its handshake and send its headers and first chunk.
    std::thread::sleep(Duration::from_millis(1500));

    let signalled = Instant::now();
    let pid = s.hook.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(500));
    // After the signal, new connections are refused.
    let late = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(&s.tls.ca)
        .arg(s.hook.url("/healthz"))
        .output()
        .unwrap();
    assert!(
        !late.status.success(),
        "a new connection was served after SIGTERM"
    );

    for child in &mut clients {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(tail).unwrap();
    }
    let mut answered = 0;
    let mut failures = Vec::new();
    for child in clients {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success()
            && stdout.ends_with("\n200")
            && stdout.contains("\"patchType\":\"JSONPatch\"")
        {
            answered += 1;
        } else {
            failures.push(format!(
                "{}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                stdout
            ));
        }
    }
    let status = s.hook.child.wait().unwrap();
    println!(
        "drain: {N} requests in flight at SIGTERM, {answered} answered, exit {status} {:.1} s after the signal",
        signalled.elapsed().as_secs_f64()
    );
    assert_eq!(answered, N, "requests dropped:\n{}", failures.join("\n"));
    assert!(
        status.success(),
        "the webhook exited with {status}:\n{}",
        s.hook.logs()
    );
    let log = s.hook.logs();
    assert!(log.contains("SIGTERM received"), "{log}");
    s.teardown(c);
}
