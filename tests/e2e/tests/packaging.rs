//! Packaging, checked with the real tools: the Helm chart (helm lint / template / install /
//! upgrade, kubeconform with schemas made offline, server-side dry-run and a real apply on the
//! test kube-apiserver, openssl on the generated certificates) and the krew distribution of
//! the plugin (scripts/release.sh, then the real krew installing, linking and uninstalling it).
//!
//! The tools are built from source once by scripts/tools.sh (cached in target/tools/bin).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use appimage_e2e::{Cluster, cluster, kubectl_binary, repo_root, temp_file, text, unique};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

const CHART: &str = "charts/appimage-webhook";
const CRD_FILE: &str = appimage_e2e::CRD_FILE;

// ---------------------------------------------------------------------------------------------
// Tools and helpers
// ---------------------------------------------------------------------------------------------

/// A pinned tool built (once, cached) by scripts/tools.sh: the last line it prints.
fn tool(name: &str) -> PathBuf {
    static TOOLS: OnceLock<std::sync::Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let tools = TOOLS.get_or_init(Default::default);
    let mut tools = tools.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = tools.get(name) {
        return p.clone();
    }
    let out = Command::new(repo_root().join("scripts/tools.sh"))
        .arg(name)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/tools.sh");
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "scripts/tools.sh {name} failed:\n{stderr}"
    );
    let path = PathBuf::from(stdout.lines().last().expect("a path").trim());
    assert!(path.is_file(), "scripts/tools.sh {name} printed {path:?}");
    tools.insert(name.to_string(), path.clone());
    path
}

/// Helm's own dirs (cache, config, data), kept out of $HOME.
fn helm_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("helm-home-")
            .tempdir()
            .unwrap()
    })
    .path()
}

fn helm_command(cluster: Option<&Cluster>) -> Command {
    let helm = tool("helm");
    let mut cmd = match cluster {
        Some(c) => c.command(helm.to_str().unwrap()),
        None => {
            let mut cmd = Command::new(&helm);
            cmd.current_dir(repo_root()).stdin(Stdio::null());
            // helm template / lint never talk to a cluster; make sure of it.
            cmd.env("KUBECONFIG", "/nonexistent/kubeconfig");
            cmd
        }
    };
    let home = helm_home();
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run command")
}

fn ok(cmd: Command) -> String {
    let desc = format!("{cmd:?}");
    let out = run(cmd);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "{desc} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

fn helm(args: &[&str]) -> Output {
    let mut cmd = helm_command(None);
    cmd.args(args);
    run(cmd)
}

fn helm_ok(args: &[&str]) -> String {
    let mut cmd = helm_command(None);
    cmd.args(args);
    ok(cmd)
}

/// `helm template RELEASE charts/appimage-webhook -n NS [extra...]`.
fn render(release: &str, ns: &str, extra: &[&str]) -> String {
    let mut args = vec!["template", release, CHART, "--namespace", ns];
    args.extend_from_slice(extra);
    helm_ok(&args)
}

/// The documents of a YAML stream (split at `---` lines), empty ones left out.
fn docs(yaml: &str) -> Vec<Value> {
    let mut chunks = vec![String::new()];
    for line in yaml.lines() {
        if line == "---" || line.starts_with("--- ") {
            chunks.push(String::new());
        } else {
            let last = chunks.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    chunks
        .iter()
        .map(|c| serde_yaml_ng::from_str::<Value>(c).unwrap_or_else(|e| panic!("{e}:\n{c}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn b64(v: &Value) -> Vec<u8> {
    STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("valid base64")
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// helm lint / helm template
// ---------------------------------------------------------------------------------------------

#[test]
fn helm_lint_passes_with_default_and_alternative_values() {
    for extra in [
        &[][..],
        &["--set", "certManager.enabled=true"][..],
        &[
            "--set",
            "requireSignature=false",
            "--set",
            "trustedKeys.secretName=my-keys",
            "--set",
            "tls.clientCASecretName=apiserver-ca",
            "--set",
            "webhook.failurePolicy=Ignore",
        ][..],
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(extra);
        let out = helm_ok(&args);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
    }
    // The linter can fail: a chart with a broken template is refused.
    let dir = tempfile::tempdir().unwrap();
    copy_chart(&dir.path().join("appimage-webhook"));
    std::fs::write(
        dir.path().join("appimage-webhook/templates/broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.nope.missing }}\n",
    )
    .unwrap();
    let out = helm(&[
        "lint",
        "--strict",
        dir.path().join("appimage-webhook").to_str().unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "a broken chart passed lint: {}",
        text(&out).0
    );
}

/// A copy of the chart without its crds/ (enough for lint; the CRD is not ours to copy).
fn copy_chart(to: &Path) {
    let from = repo_root().join(CHART);
    for rel in ["Chart.yaml", "values.yaml", ".helmignore"] {
        std::fs::create_dir_all(to).unwrap();
        std::fs::copy(from.join(rel), to.join(rel)).unwrap();
    }
    std::fs::create_dir_all(to.join("templates")).unwrap();
    for e in std::fs::read_dir(from.join("templates")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join("templates").join(e.file_name())).unwrap();
    }
}

#[test]
fn values_yaml_documents_every_value() {
    let text = std::fs::read_to_string(repo_root().join(CHART).join("values.yaml")).unwrap();
    // A key is documented when it, or a key it is nested in, has a comment right above it.
    let mut documented_at: Vec<(usize, bool)> = Vec::new(); // (indent, documented) of ancestors
    let mut prev_comment = false;
    let mut undocumented = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            prev_comment = false;
            continue;
        }
        if trimmed.starts_with('#') {
            prev_comment = true;
            continue;
        }
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with("- ") || !trimmed.contains(':') {
            prev_comment = false;
            continue;
        }
        documented_at.retain(|(i, _)| *i < indent);
        let inherited = documented_at.iter().any(|(_, d)| *d);
        if !prev_comment && !inherited {
            let key = trimmed.split(':').next().unwrap();
            let leaf = !trimmed.trim_end().ends_with(':');
            if leaf {
                undocumented.push(key.to_string());
            }
        }
        documented_at.push((indent, prev_comment || inherited));
        prev_comment = false;
    }
    assert!(
        undocumented.is_empty(),
        "values without a comment: {undocumented:?}"
    );
}

#[test]
fn helm_template_default_values() {
    let (release, ns) = ("rel", "appimage-system");
    let d = docs(&render(release, ns, &[]));
    assert_eq!(
        kinds(&d),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "Deployment",
            "MutatingWebhookConfiguration",
            "NetworkPolicy",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret",
            "Secret",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingWebhookConfiguration",
        ]
    );
    let fullname = "rel-appimage-webhook";
    let controllers = format!("{fullname}-controllers");
    for doc in &d {
        let kind = doc["kind"].as_str().unwrap();
        assert!(
            doc["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(fullname),
            "{kind}"
        );
        let cluster_scoped = kind.starts_with("Cluster")
            || kind.ends_with("WebhookConfiguration")
            || kind.starts_with("ValidatingAdmissionPolicy");
        if !cluster_scoped {
            assert_eq!(doc["metadata"]["namespace"], ns, "{kind} namespace");
        }
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/instance"],
            release
        );
    }

    // Deployment: replicas, security, probes, volumes, anti-affinity.
    let dep = named(&d, "Deployment", fullname).expect("the admission Deployment");
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(
        dep["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "admission-webhook"
    );
    let pod = &dep["spec"]["template"]["spec"];
    let selector = &dep["spec"]["selector"]["matchLabels"];
    assert_eq!(
        &dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
        &selector["app.kubernetes.io/name"]
    );
    assert_eq!(pod["serviceAccountName"], fullname);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let term =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        term["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        &term["podAffinityTerm"]["labelSelector"]["matchLabels"],
        selector
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let ctr = &containers[0];
    assert_eq!(ctr["image"], "kuscia-appimage/appimage-webhook:0.1.0");
    assert_eq!(ctr["imagePullPolicy"], "IfNotPresent");
    let sc = &ctr["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    for res in ["requests", "limits"] {
        assert!(ctr["resources"][res]["cpu"].is_string(), "{res}.cpu");
        assert!(ctr["resources"][res]["memory"].is_string(), "{res}.memory");
    }
    assert_eq!(ctr["ports"][0]["containerPort"], 8443);
    assert_eq!(ctr["ports"][0]["name"], "https");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &ctr[probe]["httpGet"];
        assert_eq!(get["path"], path);
        assert_eq!(get["scheme"], "HTTPS");
        assert_eq!(get["port"], "https"); // the named port, 8443
    }
    let args = strs(&ctr["args"]);
    for want in [
        "--listen=0.0.0.0:8443",
        "--tls-cert-file=/etc/appimage-webhook/tls/tls.crt",
        "--tls-key-file=/etc/appimage-webhook/tls/tls.key",
        "--trusted-keys-dir=/etc/appimage-webhook/trusted-keys",
        "--seal-key-file=/etc/appimage-webhook/seal-key/seal.key",
        "--pod-overrides=env",
        "--log-format=json",
    ] {
        assert!(
            args.contains(&want.to_string()),
            "{want} missing from {args:?}"
        );
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--require-signature")),
        "default is required"
    );
    assert!(!args.iter().any(|a| a.starts_with("--client-ca-file")));
    assert!(
        args.contains(&"--reconcile=false".to_string()),
        "admission runs no controllers: {args:?}"
    );
    // The controllers: their own Deployment, ServiceAccount and component label, which the
    // Service and the PodDisruptionBudget do not select; the same pod spec but for those and
    // `--reconcile=false`.
    let ctl = named(&d, "Deployment", &controllers).expect("the controllers' Deployment");
    assert_eq!(ctl["spec"]["replicas"], 2);
    let ctl_selector = &ctl["spec"]["selector"]["matchLabels"];
    assert_eq!(ctl_selector["app.kubernetes.io/component"], "controllers");
    assert_eq!(
        &ctl["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"],
        "controllers"
    );
    let ctl_pod = &ctl["spec"]["template"]["spec"];
    assert_eq!(ctl_pod["serviceAccountName"], controllers.as_str());
    let ctl_args = strs(&ctl_pod["containers"][0]["args"]);
    assert!(
        !ctl_args.iter().any(|a| a.starts_with("--reconcile")),
        "the controllers reconcile: {ctl_args:?}"
    );
    // Admission alone checks image ids against registries (issue 27).
    let mut same = ctl_args.clone();
    same.push("--reconcile=false".into());
    same.push("--verify-image-ids".into());
    same.sort();
    let mut admission_args = args.clone();
    admission_args.sort();
    assert_eq!(same, admission_args);
    assert_eq!(
        &ctl_pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"]["labelSelector"]["matchLabels"],
        ctl_selector
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let secret_of = |name: &str| {
        volumes.iter().find(|v| v["name"] == name).unwrap()["secret"]["secretName"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(secret_of("tls"), format!("{fullname}-tls"));
    assert_eq!(
        secret_of("trusted-keys"),
        format!("{fullname}-trusted-keys")
    );
    assert_eq!(secret_of("seal-key"), format!("{fullname}-seal-key"));
    // A random key of 48 characters, made by the chart.
    let seal = named(&d, "Secret", &format!("{fullname}-seal-key")).expect("seal key Secret");
    assert_eq!(b64(&seal["data"]["seal.key"]).len(), 48);
    let mounts = ctr["volumeMounts"].as_array().unwrap();
    for (vol, path) in [
        ("tls", "/etc/appimage-webhook/tls"),
        ("trusted-keys", "/etc/appimage-webhook/trusted-keys"),
        ("seal-key", "/etc/appimage-webhook/seal-key"),
    ] {
        let m = mounts.iter().find(|m| m["name"] == vol).unwrap();
        assert_eq!(m["mountPath"], path);
        assert_eq!(m["readOnly"], true);
    }

    // PodDisruptionBudget and Service.
    let pdb = one(&d, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    let svc = one(&d, "Service");
    assert_eq!(svc["metadata"]["name"], fullname);
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "https");
    assert_eq!(&svc["spec"]["selector"], selector);
    assert_eq!(selector["app.kubernetes.io/component"], "admission-webhook");

    // NetworkPolicies: the admission port from anywhere by default (`networkPolicy.from`), the
    // controllers' Pods from nowhere (`networkPolicy.metricsFrom`).
    let np = named(&d, "NetworkPolicy", fullname).expect("admission NetworkPolicy");
    assert_eq!(&np["spec"]["podSelector"]["matchLabels"], selector);
    assert_eq!(
        np["spec"]["ingress"],
        json!([{"ports": [{"port": 8443, "protocol": "TCP"}]}])
    );
    let np = named(&d, "NetworkPolicy", &controllers).expect("controllers NetworkPolicy");
    assert_eq!(&np["spec"]["podSelector"]["matchLabels"], ctl_selector);
    assert_eq!(strs(&np["spec"]["policyTypes"]), ["Ingress"]);
    assert_eq!(np["spec"]["ingress"], json!([]));

    // RBAC: exactly the rules each ServiceAccount needs.
    let rules_of = |role: &Value| {
        let mut rules: Vec<(String, String, Vec<String>)> = Vec::new();
        for r in role["rules"].as_array().unwrap() {
            for g in strs(&r["apiGroups"]) {
                for res in strs(&r["resources"]) {
                    let mut verbs = strs(&r["verbs"]);
                    verbs.sort();
                    rules.push((g.clone(), res, verbs));
                }
            }
            assert!(r.get("resourceNames").is_none() && r.get("nonResourceURLs").is_none());
        }
        rules.sort();
        rules
    };
    let v = |s: &[&str]| {
        let mut v: Vec<String> = s.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    // Admission reads AppImages and revisions, and writes nothing but Events.
    let admission_role = named(&d, "ClusterRole", &format!("{fullname}-admission")).unwrap();
    let mut want: Vec<(String, String, Vec<String>)> = vec![
        ("".into(), "events".into(), v(&["create", "patch"])),
        (
            "events.k8s.io".into(),
            "events".into(),
            v(&["create", "patch"]),
        ),
        (
            "kuscia.secretflow".into(),
            "appimages".into(),
            v(&["get", "list", "watch"]),
        ),
        (
            "appimage.kuscia.secretflow".into(),
            "appimagerevisions".into(),
            v(&["get", "list", "watch"]),
        ),
    ];
    want.sort();
    assert_eq!(rules_of(admission_role), want);
    // The controllers.
    let role = named(&d, "ClusterRole", &controllers).unwrap();
    let rules = rules_of(role);
    let mut want = vec![
        (
            "".to_string(),
            "events".to_string(),
            v(&["create", "patch"]),
        ),
        ("".into(), "pods".into(), v(&["get", "list", "watch"])),
        (
            "".into(),
            "services".into(),
            v(&["get", "list", "watch", "create", "patch", "delete"]),
        ),
        (
            "events.k8s.io".into(),
            "events".into(),
            v(&["create", "patch"]),
        ),
        (
            "kuscia.secretflow".into(),
            "appimages".into(),
            v(&["get", "list", "watch"]),
        ),
        (
            "networking.k8s.io".into(),
            "networkpolicies".into(),
            v(&["get", "list", "watch", "create", "patch", "delete"]),
        ),
        // The batch controller (issue 18).
        (
            "appimage.kuscia.secretflow".into(),
            "batchdeployments".into(),
            v(&["get", "list", "watch"]),
        ),
        (
            "appimage.kuscia.secretflow".into(),
            "batchdeployments/status".into(),
            v(&["patch"]),
        ),
        // Progressive rollouts (issue 28): read the policy, write its status, own check Jobs.
        (
            "appimage.kuscia.secretflow".into(),
            "appimagerollouts".into(),
            v(&["get", "list", "watch"]),
        ),
        (
            "appimage.kuscia.secretflow".into(),
            "appimagerollouts/status".into(),
            v(&["patch"]),
        ),
        (
            "appimage.kuscia.secretflow".into(),
            "appimagerollouts/finalizers".into(),
            v(&["update"]),
        ),
        (
            "appimage.kuscia.secretflow".into(),
            "batchdeployments/finalizers".into(),
            v(&["update"]),
        ),
        (
            "apps".into(),
            "deployments".into(),
            v(&["get", "list", "watch", "create", "patch", "delete"]),
        ),
        (
            "batch".into(),
            "jobs".into(),
            v(&["get", "list", "watch", "create", "patch", "delete"]),
        ),
        ("".into(), "nodes".into(), v(&["get", "list", "watch"])),
        // Revisions and rollouts (issue 17).
        (
            "appimage.kuscia.secretflow".into(),
            "appimagerevisions".into(),
            v(&["get", "list", "watch", "create", "patch", "delete"]),
        ),
        (
            "apps".into(),
            "statefulsets".into(),
            v(&["get", "list", "watch", "patch"]),
        ),
        (
            "apps".into(),
            "daemonsets".into(),
            v(&["get", "list", "watch", "patch"]),
        ),
        (
            "batch".into(),
            "cronjobs".into(),
            v(&["get", "list", "watch", "patch"]),
        ),
        (
            "apps".into(),
            "replicasets".into(),
            v(&["get", "list", "watch"]),
        ),
        // Services per workload (issue 17): blocking owner references to the workloads.
        (
            "apps".into(),
            "deployments/finalizers".into(),
            v(&["update"]),
        ),
        (
            "apps".into(),
            "statefulsets/finalizers".into(),
            v(&["update"]),
        ),
        (
            "apps".into(),
            "daemonsets/finalizers".into(),
            v(&["update"]),
        ),
        ("batch".into(), "jobs/finalizers".into(), v(&["update"])),
        ("batch".into(), "cronjobs/finalizers".into(), v(&["update"])),
    ];
    want.sort();
    assert_eq!(rules, want);
    // Leader election: exactly the Lease rights, in the release namespace.
    let lease_role = one(&d, "Role");
    assert_eq!(lease_role["metadata"]["namespace"], ns);
    assert_eq!(
        lease_role["rules"],
        serde_json::json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["get", "create", "patch"]}])
    );
    let lease_binding = one(&d, "RoleBinding");
    assert_eq!(
        lease_binding["roleRef"]["name"],
        lease_role["metadata"]["name"]
    );
    assert_eq!(lease_binding["subjects"][0]["name"], controllers.as_str());
    for (role, sa) in [
        (format!("{fullname}-admission"), fullname.to_string()),
        (controllers.clone(), controllers.clone()),
    ] {
        let binding = named(&d, "ClusterRoleBinding", &role).unwrap();
        assert_eq!(binding["roleRef"]["name"], role.as_str());
        assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
        assert_eq!(binding["subjects"].as_array().unwrap().len(), 1);
        assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
        assert_eq!(binding["subjects"][0]["name"], sa.as_str());
        assert_eq!(binding["subjects"][0]["namespace"], ns);
        assert!(named(&d, "ServiceAccount", &sa).is_some(), "{sa}");
    }
    // The policy confining the controllers' writes names their ServiceAccount.
    let confine = named(&d, "ValidatingAdmissionPolicy", &controllers).unwrap();
    assert_eq!(
        confine["spec"]["matchConditions"][0]["expression"],
        format!("request.userInfo.username == 'system:serviceaccount:{ns}:{controllers}'")
    );

    // Webhook configurations: selectors, policies, the chart's Service, a caBundle.
    let mutating = one(&d, "MutatingWebhookConfiguration");
    let hooks = mutating["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1);
    let m = &hooks[0];
    assert_eq!(
        m["objectSelector"],
        json!({"matchExpressions": [{"key": "kuscia.secretflow/app-image", "operator": "Exists"}]})
    );
    let ns_expr = &m["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(ns_expr["key"], "kubernetes.io/metadata.name");
    assert_eq!(ns_expr["operator"], "NotIn");
    assert_eq!(strs(&ns_expr["values"]), ["kube-system", ns]);
    assert_eq!(m["failurePolicy"], "Fail");
    assert_eq!(m["timeoutSeconds"], 5);
    assert_eq!(m["reinvocationPolicy"], "IfNeeded");
    assert_eq!(m["sideEffects"], "None");
    assert_eq!(strs(&m["admissionReviewVersions"]), ["v1"]);
    assert_eq!(
        m["rules"],
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["pods"], "scope": "Namespaced"}])
    );
    assert_eq!(
        m["clientConfig"]["service"],
        json!({"name": fullname, "namespace": ns, "path": "/mutate", "port": 443})
    );
    let validating = one(&d, "ValidatingWebhookConfiguration");
    let v = &validating["webhooks"][0];
    assert_eq!(validating["webhooks"].as_array().unwrap().len(), 2);
    // Pods stay as admitted: UPDATE and ephemeral containers of labelled Pods.
    let p = &validating["webhooks"][1];
    assert_eq!(p["objectSelector"], m["objectSelector"]);
    assert_eq!(p["namespaceSelector"], m["namespaceSelector"]);
    assert_eq!(p["failurePolicy"], "Fail");
    assert_eq!(
        p["rules"],
        json!([{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["pods", "pods/ephemeralcontainers"], "scope": "Namespaced"}])
    );
    assert_eq!(
        p["clientConfig"]["service"],
        json!({"name": fullname, "namespace": ns, "path": "/validate-pods", "port": 443})
    );
    assert_eq!(p["clientConfig"]["caBundle"], v["clientConfig"]["caBundle"]);
    assert_eq!(v["failurePolicy"], "Fail");
    assert_eq!(v["timeoutSeconds"], 5);
    assert_eq!(v["sideEffects"], "None");
    assert_eq!(strs(&v["admissionReviewVersions"]), ["v1"]);
    assert_eq!(
        v["rules"],
        json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": ["kuscia.secretflow"],
                "apiVersions": ["v1alpha1"], "resources": ["appimages"], "scope": "Cluster"}])
    );
    assert_eq!(
        v["clientConfig"]["service"],
        json!({"name": fullname, "namespace": ns, "path": "/validate", "port": 443})
    );
    for cfg in [mutating, validating] {
        assert!(cfg["metadata"].get("annotations").is_none());
    }
    // The same CA in both configurations and in the serving Secret.
    let secret = named(&d, "Secret", &format!("{fullname}-tls")).expect("TLS Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(m["clientConfig"]["caBundle"], secret["data"]["ca.crt"]);
    assert_eq!(v["clientConfig"]["caBundle"], secret["data"]["ca.crt"]);
    // The chart-made trusted keys Secret is empty by default.
    let keys = named(&d, "Secret", &format!("{fullname}-trusted-keys")).expect("keys Secret");
    assert!(keys.get("data").is_none());
}

#[test]
fn helm_template_value_overrides() {
    let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
    let (_dir, values) = temp_file(
        "values.yaml",
        &format!(
            "trustedKeys:\n  keys:\n    release.pem: |\n{}\nwebhook:\n  failurePolicy: Ignore\n  timeoutSeconds: 10\n  excludeNamespaces: [monitoring]\nrequireSignature: false\nreconcile: false\nrequestTimeout: 3s\ntls:\n  clientCASecretName: apiserver-ca\nimage:\n  tag: v9.9.9\nreplicaCount: 3\n",
            pem.lines()
                .map(|l| format!("      {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    );
    let d = docs(&render("x", "ns-x", &["-f", values.to_str().unwrap()]));
    let keys = named(&d, "Secret", "x-appimage-webhook-trusted-keys").unwrap();
    assert_eq!(
        String::from_utf8(b64(&keys["data"]["release.pem"])).unwrap(),
        pem
    );
    // reconcile: false: no controllers' Deployment, ServiceAccount, RBAC or NetworkPolicy.
    let dep = one(&d, "Deployment");
    assert_eq!(
        one(&d, "ServiceAccount")["metadata"]["name"],
        "x-appimage-webhook"
    );
    assert!(named(&d, "ClusterRole", "x-appimage-webhook-controllers").is_none());
    assert!(named(&d, "NetworkPolicy", "x-appimage-webhook-controllers").is_none());
    assert_eq!(dep["spec"]["replicas"], 3);
    let ctr = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(ctr["image"], "kuscia-appimage/appimage-webhook:v9.9.9");
    let args = strs(&ctr["args"]);
    for want in [
        "--require-signature=false",
        "--reconcile=false",
        "--request-timeout=3s",
    ] {
        assert!(
            args.contains(&want.to_string()),
            "{want} missing from {args:?}"
        );
    }
    assert!(args.contains(&"--client-ca-file=/etc/appimage-webhook/client-ca/ca.crt".to_string()));
    let vols = dep["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        vols.iter()
            .any(|v| v["secret"]["secretName"] == "apiserver-ca")
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let hook = &one(&d, kind)["webhooks"][0];
        assert_eq!(hook["failurePolicy"], "Ignore", "{kind}");
        assert_eq!(hook["timeoutSeconds"], 10, "{kind}");
    }
    let sel = &one(&d, "MutatingWebhookConfiguration")["webhooks"][0]["namespaceSelector"];
    assert_eq!(
        strs(&sel["matchExpressions"][0]["values"]),
        ["kube-system", "ns-x", "monitoring"]
    );

    // An existing keys Secret: mounted, and the chart makes none.
    let d = docs(&render(
        "x",
        "ns-x",
        &[
            "--set",
            "trustedKeys.secretName=corp-keys",
            "--set",
            "sealKey.secretName=corp-seal",
            "--set",
            "podOverrides=none",
        ],
    ));
    assert!(named(&d, "Secret", "x-appimage-webhook-trusted-keys").is_none());
    // An existing seal key Secret: mounted, and the chart makes none; the policy is passed on.
    assert!(named(&d, "Secret", "x-appimage-webhook-seal-key").is_none());
    let dep = named(&d, "Deployment", "x-appimage-webhook").unwrap();
    let seal = dep["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "seal-key")
        .unwrap();
    assert_eq!(seal["secret"]["secretName"], "corp-seal");
    let args = strs(&dep["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--pod-overrides=none".to_string()),
        "{args:?}"
    );
    let vols = &dep["spec"]["template"]["spec"]["volumes"];
    let keys = vols
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "trusted-keys")
        .unwrap();
    assert_eq!(keys["secret"]["secretName"], "corp-keys");
}

/// The policies the e2e tests install (rendered without helm by `appimage_e2e::policies`) are
/// the chart's, as helm renders them, but for the labels.
#[test]
fn the_e2e_policies_are_the_charts() {
    let (release, ns) = ("rel", "appimage-system");
    let helm = docs(&render(
        release,
        ns,
        &[
            "--show-only",
            appimage_e2e::policies::TEMPLATE.trim_start_matches("charts/appimage-webhook/"),
        ],
    ));
    let template =
        std::fs::read_to_string(repo_root().join(appimage_e2e::policies::TEMPLATE)).unwrap();
    let fullname = "rel-appimage-webhook";
    let controllers = format!("{fullname}-controllers");
    let ours = docs(&appimage_e2e::policies::render(
        &template,
        fullname,
        ns,
        &controllers,
    ));
    // Helm orders the documents by kind; compared by kind and name, without the labels.
    let unlabelled = |d: &[Value]| -> Vec<Value> {
        let mut out: Vec<Value> = d
            .iter()
            .cloned()
            .map(|mut v| {
                v["metadata"].as_object_mut().unwrap().remove("labels");
                v
            })
            .collect();
        out.sort_by_key(|v| format!("{} {}", v["kind"], v["metadata"]["name"]));
        out
    };
    assert_eq!(unlabelled(&helm), unlabelled(&ours));
    let revisions = named(
        &helm,
        "ValidatingAdmissionPolicy",
        &format!("{fullname}-revisions"),
    )
    .unwrap();
    assert_eq!(
        revisions["spec"]["variables"][0]["expression"],
        format!("'system:serviceaccount:{ns}:{controllers}'")
    );
}

#[test]
fn helm_template_with_cert_manager() {
    let (release, ns) = ("cm", "webhooks");
    let d = docs(&render(release, ns, &["--set", "certManager.enabled=true"]));
    let fullname = "cm-appimage-webhook";
    assert_eq!(
        kinds(&d),
        [
            "Certificate",
            "Certificate",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "Deployment",
            "Issuer",
            "Issuer",
            "MutatingWebhookConfiguration",
            "NetworkPolicy",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret", // the seal key and the trusted keys: cert-manager writes the TLS Secret
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingWebhookConfiguration",
        ]
    );
    assert!(named(&d, "Secret", &format!("{fullname}-tls")).is_none());
    // The chain: self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate.
    let selfsigned = named(&d, "Issuer", &format!("{fullname}-selfsigned")).unwrap();
    assert_eq!(selfsigned["spec"], json!({"selfSigned": {}}));
    let ca = named(&d, "Certificate", &format!("{fullname}-ca")).unwrap();
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(
        ca["spec"]["issuerRef"]["name"],
        format!("{fullname}-selfsigned")
    );
    let ca_issuer = named(&d, "Issuer", &format!("{fullname}-ca")).unwrap();
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca["spec"]["secretName"]
    );
    let serving = named(&d, "Certificate", &format!("{fullname}-serving")).unwrap();
    assert_eq!(
        serving["spec"]["issuerRef"]["name"],
        format!("{fullname}-ca")
    );
    assert_eq!(serving["spec"]["issuerRef"]["kind"], "Issuer");
    assert_eq!(
        strs(&serving["spec"]["dnsNames"]),
        [
            format!("{fullname}.{ns}.svc"),
            format!("{fullname}.{ns}.svc.cluster.local")
        ]
    );
    for doc in d.iter().filter(|d| d["apiVersion"] == "cert-manager.io/v1") {
        assert_eq!(doc["metadata"]["namespace"], ns);
    }
    // Both Deployments mount the Secret cert-manager writes.
    for dep in d.iter().filter(|d| d["kind"] == "Deployment") {
        let vols = &dep["spec"]["template"]["spec"]["volumes"];
        let tls = vols
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "tls")
            .unwrap();
        assert_eq!(tls["secret"]["secretName"], serving["spec"]["secretName"]);
    }
    // CA injection instead of an inline caBundle.
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let cfg = one(&d, kind);
        assert_eq!(
            cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            format!("{ns}/{fullname}-serving"),
            "{kind}"
        );
        assert!(
            cfg["webhooks"][0]["clientConfig"].get("caBundle").is_none(),
            "{kind}"
        );
        assert_eq!(
            cfg["webhooks"][0]["clientConfig"]["service"]["name"],
            fullname
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The generated certificates, checked with openssl
// ---------------------------------------------------------------------------------------------

#[test]
fn generated_ca_bundle_verifies_the_serving_certificate() {
    let (release, ns) = ("tlscheck", "tls-ns");
    let d = docs(&render(release, ns, &[]));
    let svc = one(&d, "Service")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let mutating = &one(&d, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"];
    let validating = &one(&d, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"];
    // Both configurations call the chart's Service.
    for cc in [mutating, validating] {
        assert_eq!(cc["service"]["name"], svc.as_str());
        assert_eq!(cc["service"]["namespace"], ns);
    }
    assert_eq!(mutating["service"]["path"], "/mutate");
    assert_eq!(validating["service"]["path"], "/validate");
    let secret = named(&d, "Secret", &format!("{svc}-tls")).unwrap();
    std::fs::write(dir.path().join("ca.pem"), b64(&mutating["caBundle"])).unwrap();
    std::fs::write(dir.path().join("ca2.pem"), b64(&validating["caBundle"])).unwrap();
    std::fs::write(dir.path().join("tls.pem"), b64(&secret["data"]["tls.crt"])).unwrap();
    std::fs::write(dir.path().join("tls.key"), b64(&secret["data"]["tls.key"])).unwrap();

    for ca in ["ca.pem", "ca2.pem"] {
        let out = openssl(dir.path(), &["verify", "-CAfile", ca, "tls.pem"]);
        let (o, e) = text(&out);
        assert!(
            out.status.success() && o.contains("tls.pem: OK"),
            "verify with {ca}: {o}{e}"
        );
    }
    let out = openssl(
        dir.path(),
        &["x509", "-in", "tls.pem", "-noout", "-ext", "subjectAltName"],
    );
    let (san, e) = text(&out);
    assert!(out.status.success(), "{e}");
    for name in [
        format!("DNS:{svc}.{ns}.svc"),
        format!("DNS:{svc}.{ns}.svc.cluster.local"),
    ] {
        assert!(san.contains(&name), "{name} not in {san}");
    }
    // The key belongs to the certificate.
    let cert_pub = openssl(dir.path(), &["x509", "-in", "tls.pem", "-noout", "-pubkey"]);
    let key_pub = openssl(dir.path(), &["pkey", "-in", "tls.key", "-pubout"]);
    assert!(cert_pub.status.success() && key_pub.status.success());
    assert_eq!(cert_pub.stdout, key_pub.stdout);
    // The check can fail: a CA from another render does not verify this certificate.
    let other = docs(&render(release, ns, &[]));
    let other_ca =
        &one(&other, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"];
    std::fs::write(dir.path().join("other-ca.pem"), b64(other_ca)).unwrap();
    let out = openssl(
        dir.path(),
        &["verify", "-CAfile", "other-ca.pem", "tls.pem"],
    );
    assert!(
        !out.status.success(),
        "a foreign CA verified the certificate"
    );
}

/// Kills the child process when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Deployment's container args, run with the real binary: they parse, and the generated
/// certificate serves the probe endpoints under the Service's DNS name, verified by its CA.
#[test]
fn chart_args_run_the_real_webhook() {
    let c = cluster();
    let (release, ns) = ("run", "run-ns");
    let d = docs(&render(release, ns, &[]));
    let svc = one(&d, "Service")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    // Both Deployments: admission (`--reconcile=false`) and the controllers.
    let deployments: Vec<&Value> = d.iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 2);
    for dep in deployments {
        run_chart_pod(c, &d, dep, &svc, ns);
    }
}

/// Run the webhook as `dep`'s container would, its Secrets as files, and check its probes.
fn run_chart_pod(c: &Cluster, d: &[Value], dep: &Value, svc: &str, ns: &str) {
    let name = dep["metadata"]["name"].as_str().unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    // The Secrets as the kubelet would mount them.
    let pod = &dep["spec"]["template"]["spec"];
    let ctr = &pod["containers"][0];
    for m in ctr["volumeMounts"].as_array().unwrap() {
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        let mount = dir
            .path()
            .join(m["mountPath"].as_str().unwrap().trim_start_matches('/'));
        std::fs::create_dir_all(&mount).unwrap();
        if let Some(secret) = volume["secret"]["secretName"].as_str() {
            let secret = named(d, "Secret", secret).expect("a Secret of the chart");
            for (file, data) in secret["data"].as_object().into_iter().flatten() {
                std::fs::write(mount.join(file), b64(data)).unwrap();
            }
        }
    }
    let port = appimage_e2e::webhook::free_port();
    let prefix = format!("{}/etc/", dir.path().display());
    let mut args: Vec<String> = strs(&ctr["args"])
        .into_iter()
        .map(|a| {
            if a.starts_with("--listen=") {
                format!("--listen=127.0.0.1:{port}")
            } else {
                a.replace("/etc/", &prefix)
            }
        })
        .collect();
    // Outside a cluster: the test apiserver instead of the in-cluster config.
    args.push(format!("--kubeconfig={}", c.kubeconfig().display()));
    let log = std::fs::File::create(dir.path().join("webhook.log")).unwrap();
    let child = Command::new(appimage_e2e::workspace_bin("appimage-webhook"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start appimage-webhook");
    let mut child = Killed(child);
    let host = format!("{svc}.{ns}.svc");
    let get = |path: &str| {
        Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg("--cacert")
            .arg(dir.path().join("etc/appimage-webhook/tls/ca.crt"))
            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
            .arg(format!("https://{host}:{port}{path}"))
            .stdin(Stdio::null())
            .output()
            .expect("run curl")
    };
    let mut exited = None;
    let ready = appimage_e2e::wait_until(std::time::Duration::from_secs(60), || {
        if let Ok(Some(status)) = child.0.try_wait() {
            exited = Some(status);
            return true;
        }
        String::from_utf8_lossy(&get("/readyz").stdout) == "200"
    });
    let log = std::fs::read_to_string(dir.path().join("webhook.log")).unwrap_or_default();
    assert!(
        exited.is_none(),
        "the webhook exited ({exited:?}) with the chart's args {args:?} ({name})\n{log}"
    );
    assert!(
        ready,
        "/readyz never answered 200 over the chart's TLS; args {args:?} ({name})\n{log}"
    );
    let (code, e) = text(&get("/healthz"));
    assert_eq!(code, "200", "/healthz: {e}");
}

// ---------------------------------------------------------------------------------------------
// kubeconform, offline: JSON schemas made from the test apiserver's OpenAPI v3 and the CRD
// ---------------------------------------------------------------------------------------------

/// `<kind>-<first label of group | version>[-<version>].json`: kubeconform's `KindSuffix` naming.
fn schema_file_name(api_version: &str, kind: &str) -> String {
    let kind = kind.to_lowercase();
    match api_version.split_once('/') {
        Some((group, version)) => {
            format!(
                "{kind}-{}-{version}.json",
                group.split('.').next().unwrap().to_lowercase()
            )
        }
        None => format!("{kind}-{api_version}.json"),
    }
}

/// Rewrite OpenAPI `#/components/schemas/X` references to `#/definitions/X`; collect X.
fn rewrite_refs(v: &mut Value, refs: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k == "$ref" {
                    if let Some(s) = val.as_str() {
                        let name = s.strip_prefix("#/components/schemas/").expect("local $ref");
                        refs.insert(name.to_string());
                        *val = Value::String(format!("#/definitions/{name}"));
                    }
                } else {
                    rewrite_refs(val, refs);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_refs(x, refs)),
        _ => {}
    }
}

/// Make a schema strict, as kubeconform's `-strict` schemas are: objects with `properties`
/// (and no `additionalProperties` or `x-kubernetes-preserve-unknown-fields`) allow nothing
/// else. Also maps the Kubernetes extensions JSON Schema does not know: `nullable`,
/// `x-kubernetes-int-or-string`, `x-kubernetes-embedded-resource`. Walks schema positions only
/// (so a property *named* "properties" is not mistaken for a keyword).
fn strictify(s: &mut Value) {
    let Some(m) = s.as_object_mut() else { return };
    if m.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        m.remove("type");
        m.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    let embedded = m.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
    if let Some(Value::Object(props)) = m.get_mut("properties")
        && embedded
    {
        props
            .entry("apiVersion")
            .or_insert(json!({"type": "string"}));
        props.entry("kind").or_insert(json!({"type": "string"}));
        props.entry("metadata").or_insert(json!({"type": "object"}));
    }
    if m.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = m.get("type").cloned() {
            m.insert("type".into(), json!([t, "null"]));
        } else if let Some(Value::Array(any)) = m.get_mut("anyOf") {
            any.push(json!({"type": "null"}));
        }
    }
    let preserve = m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        props.values_mut().for_each(strictify);
        if !preserve && !m.contains_key("additionalProperties") {
            m.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub @ Value::Object(_)) = m.get_mut(key) {
            strictify(sub);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = m.get_mut(key) {
            subs.iter_mut().for_each(strictify);
        }
    }
}

/// A standalone strict JSON schema for each (apiVersion, kind), from the apiserver's OpenAPI
/// v3 documents, written to `dir` under kubeconform's file names.
fn write_openapi_schemas(c: &Cluster, dir: &Path, wanted: &BTreeSet<(String, String)>) {
    let mut by_gv: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (av, kind) in wanted {
        by_gv.entry(av.as_str()).or_default().push(kind.as_str());
    }
    for (av, kinds) in by_gv {
        let path = if av.contains('/') {
            format!("/openapi/v3/apis/{av}")
        } else {
            format!("/openapi/v3/api/{av}")
        };
        let doc: Value = serde_json::from_str(&c.kubectl_ok(&["get", "--raw", &path])).unwrap();
        let schemas = doc["components"]["schemas"]
            .as_object()
            .expect("components.schemas");
        let (group, version) = av.split_once('/').unwrap_or(("", av));
        for kind in kinds {
            let (_, root) = schemas
                .iter()
                .find(|(_, s)| {
                    s["x-kubernetes-group-version-kind"]
                        .as_array()
                        .is_some_and(|gvks| {
                            gvks.iter().any(|g| {
                                g["group"] == group && g["version"] == version && g["kind"] == kind
                            })
                        })
                })
                .unwrap_or_else(|| panic!("no OpenAPI schema for {av} {kind}"));
            let mut root = root.clone();
            let mut pending = BTreeSet::new();
            rewrite_refs(&mut root, &mut pending);
            strictify(&mut root);
            let mut defs = Map::new();
            while let Some(name) = pending.pop_first() {
                if defs.contains_key(&name) {
                    continue;
                }
                let mut def = schemas
                    .get(&name)
                    .unwrap_or_else(|| panic!("no {name}"))
                    .clone();
                let mut more = BTreeSet::new();
                rewrite_refs(&mut def, &mut more);
                strictify(&mut def);
                defs.insert(name, def);
                pending.extend(more.into_iter().filter(|n| !defs.contains_key(n)));
            }
            root.as_object_mut()
                .unwrap()
                .insert("definitions".into(), Value::Object(defs));
            let file = dir.join(schema_file_name(av, kind));
            std::fs::write(file, serde_json::to_vec(&root).unwrap()).unwrap();
        }
    }
}

/// The AppImage schema for kubeconform, from the CRD's openAPIV3Schema.
fn write_crd_schema(dir: &Path) {
    let crd: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join(CRD_FILE)).unwrap())
            .unwrap();
    let group = crd["spec"]["group"].as_str().unwrap();
    let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
    for v in crd["spec"]["versions"].as_array().unwrap() {
        let version = v["name"].as_str().unwrap();
        let mut schema = v["schema"]["openAPIV3Schema"].clone();
        let props = schema["properties"].as_object_mut().expect("properties");
        // The API server adds these to every custom resource.
        props
            .entry("apiVersion")
            .or_insert(json!({"type": "string", "enum": [format!("{group}/{version}")]}));
        props
            .entry("kind")
            .or_insert(json!({"type": "string", "enum": [kind]}));
        props.entry("metadata").or_insert(json!({"type": "object"}));
        strictify(&mut schema);
        let file = dir.join(schema_file_name(&format!("{group}/{version}"), kind));
        std::fs::write(file, serde_json::to_vec(&schema).unwrap()).unwrap();
    }
}

fn kubeconform(schemas: &Path, files: &[&Path]) -> Output {
    let location = format!(
        "{}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        schemas.display()
    );
    let mut cmd = Command::new(tool("kubeconform"));
    cmd.args([
        "-strict",
        "-summary",
        "-output",
        "text",
        "-schema-location",
        &location,
    ])
    .args(files)
    .current_dir(repo_root())
    .stdin(Stdio::null());
    run(cmd)
}

#[test]
fn kubeconform_validates_the_rendered_chart_offline() {
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();

    // The default rendering with the CRD, and the example AppImages.
    let rendered = render("kc", "kc-ns", &["--include-crds"]);
    let manifests = dir.path().join("chart.yaml");
    std::fs::write(&manifests, &rendered).unwrap();
    let mut examples = Vec::new();
    for e in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let p = e.unwrap().path();
        let is_appimage = p.extension().is_some_and(|x| x == "yaml")
            && docs(&std::fs::read_to_string(&p).unwrap())
                .iter()
                .all(|d| d["kind"] == "AppImage");
        if is_appimage {
            examples.push(p);
        }
    }
    assert!(!examples.is_empty(), "no example AppImages");

    // Schemas: every kind of the rendering, from the apiserver; AppImage from the CRD.
    let mut wanted: BTreeSet<(String, String)> = docs(&rendered)
        .iter()
        .map(|d| {
            (
                d["apiVersion"].as_str().unwrap().into(),
                d["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    // Also the kinds of the broken manifests below.
    wanted.insert(("apps/v1".into(), "Deployment".into()));
    wanted.insert(("v1".into(), "Service".into()));
    assert!(wanted.contains(&(
        "apiextensions.k8s.io/v1".into(),
        "CustomResourceDefinition".into()
    )));
    write_openapi_schemas(c, &schemas, &wanted);
    write_crd_schema(&schemas);

    let mut files: Vec<&Path> = vec![&manifests];
    files.extend(examples.iter().map(|p| p.as_path()));
    let out = kubeconform(&schemas, &files);
    let (o, e) = text(&out);
    assert!(
        out.status.success(),
        "kubeconform rejected the chart:\n{o}\n{e}"
    );
    let resources = docs(&rendered).len() + examples.len();
    assert!(
        o.contains(&format!("Summary: {resources} resources found in {} files - Valid: {resources}, Invalid: 0, Errors: 0, Skipped: 0", files.len())),
        "{o}"
    );

    // The cert-manager rendering too, except cert-manager's own kinds (Issuer, Certificate):
    // their schemas come from cert-manager's CRDs, which are neither in this repository nor in
    // the test cluster, and nothing can be downloaded here. Everything else is checked.
    let cm = render("kc", "kc-ns", &["--set", "certManager.enabled=true"]);
    let cm_file = dir.path().join("cert-manager.yaml");
    std::fs::write(&cm_file, &cm).unwrap();
    let location = format!(
        "{}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        schemas.display()
    );
    let mut cmd = Command::new(tool("kubeconform"));
    cmd.args([
        "-strict",
        "-summary",
        "-skip",
        "Issuer,Certificate",
        "-schema-location",
        &location,
    ])
    .arg(&cm_file)
    .stdin(Stdio::null());
    let out = run(cmd);
    let (o, e) = text(&out);
    assert!(
        out.status.success(),
        "kubeconform rejected the cert-manager rendering:\n{o}\n{e}"
    );
    let n = docs(&cm).len();
    assert!(
        o.contains(&format!(
            "Summary: {n} resources found in 1 file - Valid: {}, Invalid: 0, Errors: 0, Skipped: 4",
            n - 4
        )),
        "{o}"
    );

    // It can fail: each of these is refused.
    let dep = named(&docs(&rendered), "Deployment", "kc-appimage-webhook")
        .unwrap()
        .clone();
    let mut bad_replicas = dep.clone();
    bad_replicas["spec"]["replicas"] = json!("two");
    let mut unknown_field = dep.clone();
    unknown_field["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] =
        json!("Always");
    let svc = one(&docs(&rendered), "Service").clone();
    let mut bad_port = svc.clone();
    bad_port["spec"]["ports"][0]["port"] = json!("https");
    let mut appimage: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&examples[0]).unwrap()).unwrap();
    appimage["spec"]["imagee"] = json!({"name": "typo"});
    let mut appimage_type = appimage.clone();
    appimage_type.as_object_mut().unwrap()["spec"]
        .as_object_mut()
        .unwrap()
        .remove("imagee");
    appimage_type["spec"]["deployTemplates"][0]["replicas"] = json!("one");
    for (name, broken) in [
        ("replicas-string", bad_replicas),
        ("unknown-field", unknown_field),
        ("port-string", bad_port),
        ("appimage-unknown-field", appimage),
        ("appimage-wrong-type", appimage_type),
    ] {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, serde_yaml_ng::to_string(&broken).unwrap()).unwrap();
        let out = kubeconform(&schemas, &[&file]);
        let (o, e) = text(&out);
        assert!(
            !out.status.success(),
            "kubeconform accepted {name}:\n{o}\n{e}"
        );
        assert!(
            o.contains("Invalid: 1"),
            "{name} not reported invalid:\n{o}\n{e}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The real control plane: server-side dry-run, a real apply, helm install / upgrade
// ---------------------------------------------------------------------------------------------

#[test]
fn rendered_chart_applies_to_the_apiserver() {
    let c = cluster();
    let ns = c.namespace("webhook-sys");
    let release = unique("ap");
    let rendered = render(&release, &ns, &[]);
    let (_dir, file) = temp_file("chart.yaml", &rendered);
    let file = file.to_str().unwrap();

    let out = c.kubectl_ok(&["apply", "--dry-run=server", "-f", file]);
    assert_eq!(out.lines().count(), docs(&rendered).len(), "{out}");
    assert!(
        out.lines().all(|l| l.ends_with("(server dry run)")),
        "{out}"
    );
    // Nothing was created by the dry run.
    let fullname = format!("{release}-appimage-webhook");
    assert!(
        !c.kubectl(&["get", "mutatingwebhookconfiguration", &fullname])
            .status
            .success()
    );

    // A real apply creates every object.
    c.kubectl_ok(&["apply", "-f", file]);
    let check = || {
        for d in docs(&rendered) {
            let kind = d["kind"].as_str().unwrap();
            let name = d["metadata"]["name"].as_str().unwrap();
            let mut args = vec!["get", kind, name, "-o", "json"];
            if d["metadata"]["namespace"].is_string() {
                args.extend(["-n", &ns]);
            }
            let got: Value = serde_json::from_str(&c.kubectl_ok(&args)).unwrap();
            assert_eq!(got["metadata"]["name"], name);
        }
    };
    check();
    let stored: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "mutatingwebhookconfiguration",
        &fullname,
        "-o",
        "json",
    ]))
    .unwrap();
    let hook = &stored["webhooks"][0];
    assert_eq!(hook["clientConfig"]["service"]["name"], fullname.as_str());
    assert_eq!(hook["clientConfig"]["service"]["namespace"], ns.as_str());
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
    let rendered_ca = one(&docs(&rendered), "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"].clone();
    assert_eq!(hook["clientConfig"]["caBundle"], rendered_ca);

    // And they go away again (the webhook configurations would otherwise stay registered).
    c.kubectl_ok(&["delete", "-f", file, "--wait=false"]);
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
        "clusterrole",
        "clusterrolebinding",
    ] {
        assert!(
            !c.kubectl(&["get", kind, &fullname]).status.success(),
            "{kind} left behind"
        );
    }
}

#[test]
fn helm_install_keeps_the_generated_certificate_across_upgrades() {
    let c = cluster();
    let ns = unique("helm-ns");
    let release = unique("hr");
    let fullname = format!("{release}-appimage-webhook");
    let helm_c = |args: &[&str]| {
        let mut cmd = helm_command(Some(c));
        cmd.args(args);
        ok(cmd)
    };
    let out = helm_c(&[
        "install",
        &release,
        CHART,
        "--namespace",
        &ns,
        "--create-namespace",
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    // NOTES.txt tells how to opt a Pod in.
    assert!(
        out.contains("kuscia.secretflow/app-image: <AppImage name>"),
        "{out}"
    );
    assert!(out.contains("appimage.kuscia.secretflow/role"), "{out}");

    let read = || {
        let secret: Value = serde_json::from_str(&c.kubectl_ok(&[
            "get",
            "secret",
            &format!("{fullname}-tls"),
            "-n",
            &ns,
            "-o",
            "json",
        ]))
        .unwrap();
        let mut bundles = Vec::new();
        for kind in [
            "mutatingwebhookconfiguration",
            "validatingwebhookconfiguration",
        ] {
            let cfg: Value =
                serde_json::from_str(&c.kubectl_ok(&["get", kind, &fullname, "-o", "json"]))
                    .unwrap();
            bundles.push(cfg["webhooks"][0]["clientConfig"]["caBundle"].clone());
        }
        (secret["data"].clone(), bundles)
    };
    let (data1, bundles1) = read();
    assert_eq!(bundles1[0], data1["ca.crt"]);
    assert_eq!(bundles1[1], data1["ca.crt"]);

    let out = helm_c(&[
        "upgrade",
        &release,
        CHART,
        "--namespace",
        &ns,
        "--set",
        "webhook.timeoutSeconds=7",
    ]);
    assert!(out.contains("REVISION: 2"), "{out}");
    let (data2, bundles2) = read();
    assert_eq!(data1, data2, "the TLS Secret changed on upgrade");
    assert_eq!(bundles1, bundles2, "the caBundles changed on upgrade");
    // The upgrade did apply.
    let cfg: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "mutatingwebhookconfiguration",
        &fullname,
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(cfg["webhooks"][0]["timeoutSeconds"], 7);

    helm_c(&["uninstall", &release, "--namespace", &ns]);
    assert!(
        !c.kubectl(&["get", "mutatingwebhookconfiguration", &fullname])
            .status
            .success()
    );
}

// ---------------------------------------------------------------------------------------------
// krew: scripts/release.sh, then the real krew
// ---------------------------------------------------------------------------------------------

/// The plugin archive and manifest made by scripts/release.sh, packaging the debug build of the
/// plugin (`--binary`) rather than spending minutes on a release build: the archive, hash and
/// manifest steps are the release's own.
fn release(out_dir: &Path) -> (PathBuf, PathBuf) {
    let plugin = appimage_e2e::workspace_bin("kubectl-appimage");
    let mut cmd = Command::new(repo_root().join("scripts/release.sh"));
    cmd.args([
        "--binary",
        plugin.to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
    ])
    .env("KREW_MANIFEST", env!("CARGO_BIN_EXE_krew-manifest"))
    .current_dir(repo_root())
    .stdin(Stdio::null());
    let out = ok(cmd);
    let line = |p: &str| {
        PathBuf::from(
            out.lines()
                .find_map(|l| l.strip_prefix(p))
                .unwrap_or_else(|| panic!("{out}"))
                .trim(),
        )
    };
    (line("archive:"), line("manifest:"))
}

fn host_platform() -> (&'static str, &'static str) {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        os => os,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    (os, arch)
}

/// A krew home of its own, and a PATH with only kubectl, krew (as `kubectl krew`) and krew's
/// bin dir: not the test cluster's PATH, which already links our plugin.
struct Krew {
    root: tempfile::TempDir,
    path: String,
}

impl Krew {
    fn new() -> Krew {
        let root = tempfile::Builder::new()
            .prefix("krew-root-")
            .tempdir()
            .unwrap();
        let tools = root.path().join("tools");
        std::fs::create_dir_all(&tools).unwrap();
        let kubectl = kubectl_binary();
        let kubectl = if kubectl.is_absolute() {
            kubectl
        } else {
            which("kubectl")
        };
        std::os::unix::fs::symlink(kubectl, tools.join("kubectl")).unwrap();
        std::os::unix::fs::symlink(tool("krew"), tools.join("kubectl-krew")).unwrap();
        // Commands other than `install --manifest` want an initialized index, which
        // `kubectl krew update` would clone; offline, an empty local git index stands in.
        let index = root.path().join("home/index/default");
        std::fs::create_dir_all(index.join("plugins")).unwrap();
        assert!(
            Command::new("git")
                .args(["init", "-q"])
                .arg(&index)
                .status()
                .unwrap()
                .success()
        );
        let path = format!(
            "{}:{}:/usr/bin:/bin",
            root.path().join("home/bin").display(),
            tools.display()
        );
        Krew { root, path }
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        // Command::new resolves a bare program name with the test's PATH: name it fully.
        let mut cmd = Command::new(self.root.path().join("tools/kubectl"));
        cmd.args(args)
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", self.root.path())
            .env("KREW_ROOT", self.home())
            .env("KREW_NO_UPGRADE_CHECK", "1")
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .current_dir(self.root.path())
            .stdin(Stdio::null());
        run(cmd)
    }
}

fn which(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|p| p.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

#[test]
fn release_archive_is_deterministic_and_matches_its_manifest() {
    let (os, arch) = host_platform();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (archive, manifest) = release(a.path());
    assert_eq!(
        archive.file_name().unwrap().to_str().unwrap(),
        format!("kubectl-appimage-{os}-{arch}.tar.gz")
    );
    assert_eq!(manifest.file_name().unwrap(), "appimage.yaml");
    let (archive2, _) = release(b.path());
    let bytes = std::fs::read(&archive).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(&archive2).unwrap(),
        "two packings differ"
    );

    // Exactly the plugin and the license, owned by root, at time 0.
    let out = Command::new("tar")
        .args(["-tvzf"])
        .arg(&archive)
        .output()
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    let entries: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(entries.len(), 3, "{listing}");
    assert_eq!(
        entries
            .iter()
            .map(|e| *e.last().unwrap())
            .collect::<Vec<_>>(),
        ["LICENSE", "kubectl-appimage", "kubectl_complete-appimage"]
    );
    for e in &entries {
        assert_eq!(e[1], "0/0", "{listing}");
        assert_eq!(e[3], "1970-01-01", "{listing}");
    }
    assert!(entries[1][0].starts_with("-rwxr-xr-x"), "{listing}");
    assert!(entries[2][0].starts_with("-rwxr-xr-x"), "{listing}");

    // The manifest: this platform's release URI and the archive's sha256, others untouched.
    let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let template: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join("krew/appimage.yaml")).unwrap(),
    )
    .unwrap();
    let platforms = doc["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 4);
    for (p, t) in platforms
        .iter()
        .zip(template["spec"]["platforms"].as_array().unwrap())
    {
        let labels = &p["selector"]["matchLabels"];
        if labels["os"] == os && labels["arch"] == arch {
            assert_eq!(p["sha256"], sha256_hex(&bytes));
            assert_eq!(
                p["uri"],
                format!(
                    "https://github.com/kuscia-appimage/kubectl-appimage/releases/download/v0.1.0/kubectl-appimage-{os}-{arch}.tar.gz"
                )
            );
        } else {
            assert_eq!(p, t);
        }
    }
    let mut rest = doc.clone();
    let mut rest_t = template.clone();
    rest["spec"]["platforms"] = Value::Null;
    rest_t["spec"]["platforms"] = Value::Null;
    assert_eq!(rest, rest_t);
}

#[test]
fn krew_manifest_template_is_complete() {
    let doc: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join("krew/appimage.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(doc["kind"], "Plugin");
    assert_eq!(doc["metadata"]["name"], "appimage");
    assert_eq!(doc["spec"]["version"], "v0.1.0");
    assert!(
        doc["spec"]["homepage"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let short = doc["spec"]["shortDescription"].as_str().unwrap();
    assert!(short.contains("Kuscia") && !short.contains('\n'), "{short}");
    let desc = doc["spec"]["description"].as_str().unwrap();
    assert!(desc.contains("kuscia.secretflow/v1alpha1"), "{desc}");
    assert!(
        desc.contains("nothing to do with the Linux \"AppImage\""),
        "{desc}"
    );
    let mut platforms = BTreeSet::new();
    for p in doc["spec"]["platforms"].as_array().unwrap() {
        let os = p["selector"]["matchLabels"]["os"].as_str().unwrap();
        let arch = p["selector"]["matchLabels"]["arch"].as_str().unwrap();
        platforms.insert(format!("{os}/{arch}"));
        assert_eq!(
            p["uri"],
            format!(
                "https://github.com/kuscia-appimage/kubectl-appimage/releases/download/v0.1.0/kubectl-appimage-{os}-{arch}.tar.gz"
            )
        );
        let sha = p["sha256"].as_str().unwrap();
        assert!(
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(p["bin"], "kubectl-appimage");
        assert_eq!(
            p["files"],
            json!([
                {"from": "kubectl-appimage", "to": "."},
                {"from": "kubectl_complete-appimage", "to": "."},
                {"from": "LICENSE", "to": "."}
            ])
        );
    }
    let want: BTreeSet<String> = ["darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64"]
        .map(String::from)
        .into();
    assert_eq!(platforms, want);
}

#[test]
fn krew_installs_links_and_uninstalls_the_plugin() {
    let out_dir = tempfile::tempdir().unwrap();
    let (archive, manifest) = release(out_dir.path());
    let krew = Krew::new();
    let expected_version = {
        let mut cmd = Command::new(appimage_e2e::workspace_bin("kubectl-appimage"));
        cmd.arg("version");
        ok(cmd)
    };

    // Not installed yet.
    let out = krew.kubectl(&["appimage", "version"]);
    assert!(!out.status.success(), "the plugin is already on this PATH");

    let out = krew.kubectl(&[
        "krew",
        "install",
        &format!("--manifest={}", manifest.display()),
        &format!("--archive={}", archive.display()),
    ]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "krew install failed:\n{o}\n{e}");
    assert!(e.contains("Installed plugin: appimage"), "{e}");
    let caveat =
        "ln -s \"${KREW_ROOT:-$HOME/.krew}\"/store/appimage/v0.1.0/kubectl_complete-appimage";
    assert!(
        e.contains(caveat),
        "krew shows how to link the completion script: {e}"
    );

    // krew's link on PATH is what kubectl runs.
    let link = krew.home().join("bin/kubectl-appimage");
    let target = std::fs::read_link(&link).expect("krew's symlink");
    assert!(
        target.starts_with(krew.home().join("store/appimage/v0.1.0")),
        "{target:?}"
    );
    assert!(krew.home().join("store/appimage/v0.1.0/LICENSE").is_file());
    let out = krew.kubectl(&["appimage", "version"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "kubectl appimage version: {e}");
    assert_eq!(o, expected_version);
    let (o, _) = text(&krew.kubectl(&["plugin", "list"]));
    assert!(o.contains(&link.display().to_string()), "{o}");
    let (o, e) = text(&krew.kubectl(&["krew", "list"]));
    assert!(o.contains("appimage"), "{o}{e}");

    // Shell completion: the archive's script, linked onto PATH as the manifest's caveats say,
    // is what kubectl runs for `kubectl appimage <TAB>`.
    let script = krew
        .home()
        .join("store/appimage/v0.1.0/kubectl_complete-appimage");
    std::os::unix::fs::symlink(&script, krew.home().join("bin/kubectl_complete-appimage"))
        .expect("link the completion script");
    let out = krew.kubectl(&["__complete", "appimage", "ro"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}{e}");
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(
        lines,
        [
            "rollback\tRestore the spec of an earlier revision onto an AppImage; Auto workloads follow",
            "rollout\tMove an AppImage's workloads (Manual ones too) to its current revision",
            ":4"
        ],
        "{e}"
    );

    let out = krew.kubectl(&["krew", "uninstall", "appimage"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "krew uninstall failed:\n{o}\n{e}");
    assert!(
        !link.exists() && std::fs::symlink_metadata(&link).is_err(),
        "link left behind"
    );
    assert!(!krew.kubectl(&["appimage", "version"]).status.success());
}

#[test]
fn krew_refuses_an_archive_with_a_wrong_sha256() {
    let out_dir = tempfile::tempdir().unwrap();
    let (archive, manifest) = release(out_dir.path());
    let good = sha256_hex(&std::fs::read(&archive).unwrap());
    let text_m = std::fs::read_to_string(&manifest).unwrap();
    assert!(text_m.contains(&good));
    let mut bad = good.clone();
    bad.replace_range(0..1, if good.starts_with('0') { "1" } else { "0" });
    // krew wants the manifest named after the plugin.
    let bad_dir = tempfile::tempdir().unwrap();
    let bad_manifest = bad_dir.path().join("appimage.yaml");
    std::fs::write(&bad_manifest, text_m.replace(&good, &bad)).unwrap();

    let krew = Krew::new();
    let out = krew.kubectl(&[
        "krew",
        "install",
        &format!("--manifest={}", bad_manifest.display()),
        &format!("--archive={}", archive.display()),
    ]);
    let (o, e) = text(&out);
    assert!(
        !out.status.success(),
        "krew installed a mismatching archive:\n{o}\n{e}"
    );
    assert!(e.contains("checksum does not match"), "{e}");
    assert!(std::fs::symlink_metadata(krew.home().join("bin/kubectl-appimage")).is_err());
}

// ---------------------------------------------------------------------------------------------
// The other packaging files
// ---------------------------------------------------------------------------------------------

#[test]
fn license() {
    let license = std::fs::read_to_string(repo_root().join("LICENSE")).unwrap();
    assert!(
        license.contains("Apache License\n                           Version 2.0, January 2004")
    );
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
    assert!(license.contains("APPENDIX: How to apply the Apache License to your work."));
}
