//! The rights of the chart's two ServiceAccounts (issue 25, sections 1 and 3: "the RBAC test
//! checks what matters"), on the test cluster. The chart's ServiceAccounts, RBAC and
//! ValidatingAdmissionPolicies are rendered by helm from charts/appimage-webhook and applied;
//! then, impersonating each ServiceAccount (`kubectl --as`):
//!
//! - the controllers' may not patch a DaemonSet in kube-system (kube-proxy's would take the
//!   cluster), nor create a Deployment there, nor write in the release namespace but their
//!   Lease, nor touch a workload that runs no AppImage, nor write a Pod; they may patch the pod
//!   template of a workload that runs an AppImage, as a rollout does;
//! - the admission one may write nothing but Events;
//! - and the real webhook, running as the controllers' ServiceAccount with only those rights,
//!   still records revisions and rolls an Auto Deployment to a new one.
//!
//! Which Deployment runs as which ServiceAccount is read from the rendered chart: the one with
//! `--reconcile=false` is admission, the other the controllers (a chart with one Deployment, as
//! before issue 25, runs both as one ServiceAccount).

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use appimage_e2e::world::{REVISIONS_CRD, Shared, WAIT};
use appimage_e2e::{Cluster, chart, policies, text, unique, wait_until};
use serde_json::{Value, json};

const APP_IMAGE: &str = "kuscia.secretflow/app-image";
const LATEST: &str = "appimage.kuscia.secretflow/latest-revision";
const REVISION: &str = "appimage.kuscia.secretflow/revision";

fn shared() -> &'static Shared {
    Shared::once(&[REVISIONS_CRD], "rights")
}

/// The chart's release on the test cluster: its namespace, policy name and ServiceAccounts.
struct Release {
    namespace: String,
    /// The full name of the release: the prefix of the chart's objects.
    fullname: String,
    /// `system:serviceaccount:<ns>:<sa>` of the admission Deployment.
    admission: String,
    /// `system:serviceaccount:<ns>:<sa>` of the controllers' Deployment.
    controllers: String,
    /// A kubeconfig holding a token of the controllers' ServiceAccount.
    controllers_kubeconfig: PathBuf,
}

/// The ServiceAccount the rendered Deployment `reconcile` (`--reconcile=false` or not) runs as.
fn service_account_of(deployments: &[Value], admission: bool) -> Option<String> {
    deployments.iter().find_map(|d| {
        let pod = &d["spec"]["template"]["spec"];
        let args = pod["containers"][0]["args"].as_array()?;
        let off = args.iter().any(|a| a == "--reconcile=false");
        (off == admission).then(|| pod["serviceAccountName"].as_str().map(String::from))?
    })
}

fn release() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| {
        let c = shared().c;
        let namespace = c.namespace("rights-system");
        let name = unique("rights");
        let fullname = format!("{name}-appimage-webhook");
        let show = |t: &str| ["--show-only".to_string(), format!("templates/{t}")];
        let mut extra = Vec::new();
        for t in [
            "serviceaccount.yaml",
            "rbac.yaml",
            "admission-policies.yaml",
        ] {
            extra.extend(show(t));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let rendered = chart::render(&name, &namespace, &extra);
        let file = c.dir().join(format!("{}.yaml", unique("chart-rights")));
        std::fs::write(&file, &rendered).expect("write the rendered chart");
        c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
        let only = ["--show-only", "templates/deployment.yaml"];
        let deployments = chart::docs(&chart::render(&name, &namespace, &only));
        // One Deployment (no --reconcile=false): admission and controllers are one account.
        let controllers_sa = service_account_of(&deployments, false).expect("a controllers SA");
        let admission_sa = service_account_of(&deployments, true).unwrap_or_else(|| {
            eprintln!("the chart has no admission-only Deployment: one ServiceAccount for both");
            controllers_sa.clone()
        });
        let (controllers, controllers_kubeconfig) =
            policies::service_account_kubeconfig(c, &namespace, &controllers_sa);
        Release {
            admission: format!("system:serviceaccount:{namespace}:{admission_sa}"),
            controllers,
            namespace,
            fullname,
            controllers_kubeconfig,
        }
    })
}

/// `kubectl <args>` as `user`, a ServiceAccount of the release (with its groups, as the API
/// server would authenticate its token).
fn kubectl_as(c: &Cluster, r: &Release, user: &str, args: &[&str]) -> Output {
    let mut full = vec![
        format!("--as={user}"),
        "--as-group=system:serviceaccounts".to_string(),
        format!("--as-group=system:serviceaccounts:{}", r.namespace),
        "--as-group=system:authenticated".to_string(),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    c.kubectl(&full)
}

/// `kubectl apply -f` (as the admin) of `value`.
fn apply_admin(c: &Cluster, value: &Value) {
    let dir = c.dir().join(unique("rights-objects"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = appimage_e2e::write_json(&dir, value);
    c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
}

/// A DaemonSet or Deployment of 0 replicas (or on no node) whose pod template carries
/// `template_labels`.
fn workload(kind: &str, ns: &str, name: &str, template_labels: Value, labels: Value) -> Value {
    let mut selector = json!({"app": name});
    if let (Some(sel), Some(extra)) = (selector.as_object_mut(), template_labels.as_object()) {
        sel.extend(extra.clone());
    }
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": selector},
            "spec": {
                // On no node: nothing of it ever runs.
                "nodeSelector": {"appimage.test/none": "none"},
                "containers": [{"name": "main", "image": "e2e.invalid/app:1"}]
            }
        }
    });
    if kind == "Deployment" {
        spec["replicas"] = json!(0);
    }
    json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec
    })
}

/// A JSON patch of the first container's image.
const SET_IMAGE: &str = r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"evil.invalid/x:1"}]"#;

fn refused(out: &Output, what: &str) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        !out.status.success(),
        "{what} was allowed, and must not be:\n{stdout}{stderr}"
    );
    stderr
}

fn allowed(out: &Output, what: &str) {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "{what} was refused, and must not be:\n{stdout}{stderr}"
    );
}

/// Refused by the chart's ValidatingAdmissionPolicy `<fullname>-controllers`, with `part` in
/// its message.
fn refused_by_policy(r: &Release, out: &Output, what: &str, part: &str) {
    let err = refused(out, what);
    let policy = format!("ValidatingAdmissionPolicy '{}-controllers'", r.fullname);
    assert!(
        err.contains(&policy) && err.contains(part),
        "{what}: refused, but not by {policy} saying {part:?}:\n{err}"
    );
}

/// `kubectl auth can-i <verb> <resource> -n <ns>` as `user`: yes or no.
fn can_i(c: &Cluster, r: &Release, user: &str, verb: &str, resource: &str, ns: &str) -> bool {
    let out = kubectl_as(c, r, user, &["auth", "can-i", verb, resource, "-n", ns]);
    text(&out).0.trim() == "yes"
}

#[test]
fn the_controllers_service_account_cannot_write_kube_system_nor_foreign_objects() {
    let c = shared().c;
    let r = release();
    let ctl = r.controllers.as_str();

    // kube-proxy's stand-in: a DaemonSet in kube-system, its template even labelled as one of
    // ours (the namespace alone must refuse it).
    let ds = unique("kube-proxy");
    apply_admin(
        c,
        &workload(
            "DaemonSet",
            "kube-system",
            &ds,
            json!({APP_IMAGE: "anything"}),
            json!({"k8s-app": "kube-proxy"}),
        ),
    );
    // RBAC cannot say "not in kube-system": a ClusterRole grants the verb everywhere.
    eprintln!(
        "RBAC alone: patch daemonsets in kube-system as the controllers: {}",
        if can_i(c, r, ctl, "patch", "daemonsets", "kube-system") {
            "yes (the policy must refuse it)"
        } else {
            "no"
        }
    );
    let patch_ds = || {
        kubectl_as(
            c,
            r,
            ctl,
            &[
                "patch",
                "daemonset",
                &ds,
                "-n",
                "kube-system",
                "--type=json",
                "-p",
                SET_IMAGE,
            ],
        )
    };
    // A new policy is enforced a moment after it is created.
    let policy = format!("ValidatingAdmissionPolicy '{}-controllers'", r.fullname);
    policies::wait_enforced(patch_ds, &policy);
    refused_by_policy(
        r,
        &patch_ds(),
        "patching a DaemonSet in kube-system",
        "may not write in namespace kube-system",
    );
    let image = c.kubectl_ok(&[
        "get",
        "daemonset",
        &ds,
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "e2e.invalid/app:1", "the DaemonSet changed");

    // Creating a Deployment in kube-system, even one labelled as ours.
    let out = kubectl_as(
        c,
        r,
        ctl,
        &[
            "create",
            "deployment",
            &unique("intruder"),
            "-n",
            "kube-system",
            "--image=e2e.invalid/x:1",
            "--replicas=0",
        ],
    );
    refused_by_policy(
        r,
        &out,
        "creating a Deployment in kube-system",
        "may not write in namespace kube-system",
    );

    // The release namespace: the Lease yes, anything else no.
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": unique("lease"), "namespace": r.namespace},
        "spec": {"holderIdentity": "e2e", "leaseDurationSeconds": 2}
    });
    let dir = tempfile::tempdir().expect("dir");
    let file = appimage_e2e::write_json(dir.path(), &lease);
    let out = kubectl_as(c, r, ctl, &["create", "-f", &file.to_string_lossy()]);
    allowed(&out, "creating the leader Lease in the release namespace");
    // Events: there (Events about cluster-scoped AppImages go to `default`, which may be the
    // release namespace), but not in kube-system.
    for (ns, ok) in [(r.namespace.as_str(), true), ("kube-system", false)] {
        let event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": unique("ev"), "namespace": ns},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "appimage-webhook", "reportingInstance": "e2e",
            "action": "Test", "reason": "Test", "type": "Normal", "note": "rights",
            "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": ns}
        });
        let file = appimage_e2e::write_json(dir.path(), &event);
        let out = kubectl_as(c, r, ctl, &["create", "-f", &file.to_string_lossy()]);
        if ok {
            allowed(&out, "an Event in the release namespace");
        } else {
            refused_by_policy(
                r,
                &out,
                "an Event in kube-system",
                "may not write in namespace kube-system",
            );
        }
    }
    let ours_there = workload(
        "Deployment",
        &r.namespace,
        &unique("ours"),
        json!({APP_IMAGE: "x"}),
        json!({"app.kubernetes.io/managed-by": "appimage-webhook"}),
    );
    let file = appimage_e2e::write_json(dir.path(), &ours_there);
    let out = kubectl_as(c, r, ctl, &["create", "-f", &file.to_string_lossy()]);
    refused_by_policy(
        r,
        &out,
        "creating a labelled Deployment in the release namespace",
        &format!("may not write in namespace {}", r.namespace),
    );

    // A user namespace: a workload that runs no AppImage is not the controllers' to touch;
    // one whose pod template runs an AppImage is, as a rollout patches it.
    let ns = c.namespace("rights-user");
    apply_admin(
        c,
        &workload("Deployment", &ns, "plain", json!({}), json!({})),
    );
    apply_admin(
        c,
        &workload(
            "Deployment",
            &ns,
            "runs-appimage",
            json!({APP_IMAGE: "some-image"}),
            json!({}),
        ),
    );
    let out = kubectl_as(
        c,
        r,
        ctl,
        &[
            "patch",
            "deployment",
            "plain",
            "-n",
            &ns,
            "--type=json",
            "-p",
            SET_IMAGE,
        ],
    );
    refused_by_policy(
        r,
        &out,
        "patching an unlabelled Deployment's image",
        "write only objects of this project",
    );
    // Nor may it make the Deployment its own first.
    let label = format!(
        r#"{{"spec":{{"template":{{"metadata":{{"labels":{{"{APP_IMAGE}":"some-image"}}}}}}}}}}"#
    );
    let out = kubectl_as(
        c,
        r,
        ctl,
        &[
            "patch",
            "deployment",
            "plain",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            &label,
        ],
    );
    refused_by_policy(
        r,
        &out,
        "labelling an unlabelled Deployment",
        "write only objects of this project",
    );
    let out = kubectl_as(c, r, ctl, &["delete", "deployment", "plain", "-n", &ns]);
    refused_by_policy(
        r,
        &out,
        "deleting an unlabelled Deployment",
        "write only objects of this project",
    );
    let out = kubectl_as(
        c,
        r,
        ctl,
        &[
            "create",
            "deployment",
            &unique("unlabelled"),
            "-n",
            &ns,
            "--image=e2e.invalid/x:1",
            "--replicas=0",
        ],
    );
    refused_by_policy(
        r,
        &out,
        "creating an unlabelled Deployment",
        "write only objects of this project",
    );
    // What a rollout sends: a server-side apply of the pod template's image and the
    // acted-on label, under the rollout's field manager.
    let rollout = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "runs-appimage", "namespace": ns, "labels": {LATEST: "2"}},
        "spec": {"template": {
            "metadata": {"annotations": {REVISION: "2"}},
            "spec": {"containers": [{"name": "main", "image": "e2e.invalid/app:2"}]}
        }}
    });
    let file = appimage_e2e::write_json(dir.path(), &rollout);
    let out = kubectl_as(
        c,
        r,
        ctl,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=appimage-webhook-rollout",
            "-f",
            &file.to_string_lossy(),
        ],
    );
    allowed(
        &out,
        "a rollout's apply to a Deployment that runs an AppImage",
    );
    let image = c.kubectl_ok(&[
        "get",
        "deployment",
        "runs-appimage",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "e2e.invalid/app:2");
    // What the batch controller creates: labelled, in a user namespace.
    let batch = workload(
        "Deployment",
        &ns,
        &unique("batch-node"),
        json!({APP_IMAGE: "some-image"}),
        json!({"app.kubernetes.io/managed-by": "appimage-webhook"}),
    );
    let file = appimage_e2e::write_json(dir.path(), &batch);
    let out = kubectl_as(c, r, ctl, &["create", "-f", &file.to_string_lossy()]);
    allowed(
        &out,
        "creating a Deployment labelled as the batch controller's",
    );

    // Never a Pod (RBAC refuses it already).
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": ns, "labels": {APP_IMAGE: "some-image"}},
        "spec": {"containers": [{"name": "main", "image": "e2e.invalid/x:1"}]}
    });
    let file = appimage_e2e::write_json(dir.path(), &pod);
    let out = kubectl_as(c, r, ctl, &["create", "-f", &file.to_string_lossy()]);
    refused(&out, "creating a Pod");
    // Nor Secrets or ConfigMaps anywhere (RBAC).
    for (verb, what) in [("get", "secrets"), ("create", "configmaps")] {
        assert!(
            !can_i(c, r, ctl, verb, what, &ns),
            "the controllers may {verb} {what}"
        );
    }
}

#[test]
fn the_admission_service_account_writes_nothing_but_events() {
    let c = shared().c;
    let r = release();
    let adm = r.admission.as_str();
    let ns = c.namespace("rights-adm");
    let mut may = Vec::new();
    for resource in [
        "pods",
        "deployments.apps",
        "daemonsets.apps",
        "statefulsets.apps",
        "jobs.batch",
        "cronjobs.batch",
        "services",
        "networkpolicies.networking.k8s.io",
        "secrets",
        "configmaps",
        "leases.coordination.k8s.io",
        "appimages.kuscia.secretflow",
        "appimagerevisions.appimage.kuscia.secretflow",
        "batchdeployments.appimage.kuscia.secretflow",
    ] {
        for verb in ["create", "update", "patch", "delete"] {
            for where_ in [ns.as_str(), "kube-system"] {
                if can_i(c, r, adm, verb, resource, where_) {
                    may.push(format!("{verb} {resource} in {where_}"));
                }
            }
        }
    }
    assert!(may.is_empty(), "{adm} may write: {may:?}");
    for (verb, resource) in [("get", "pods"), ("get", "secrets"), ("list", "secrets")] {
        assert!(
            !can_i(c, r, adm, verb, resource, &ns),
            "{adm} may {verb} {resource}"
        );
    }
    // What admission reads, and Events.
    for (verb, resource) in [
        ("watch", "appimages.kuscia.secretflow"),
        ("list", "appimagerevisions.appimage.kuscia.secretflow"),
        ("create", "events"),
        ("create", "events.events.k8s.io"),
    ] {
        assert!(
            can_i(c, r, adm, verb, resource, &ns),
            "{adm} may not {verb} {resource}"
        );
    }
    // Everything it may write, as the API server lists it: Events, and the reviews every
    // authenticated user may create about itself.
    let out = kubectl_as(c, r, adm, &["auth", "can-i", "--list", "-n", &ns]);
    allowed(&out, "auth can-i --list");
    let list = text(&out).0;
    let writes: Vec<&str> = list
        .lines()
        .skip(1)
        .filter(|l| {
            let verbs = l.rsplit('[').next().unwrap_or_default();
            ["create", "update", "patch", "delete", "*"]
                .iter()
                .any(|v| verbs.contains(v))
        })
        .filter(|l| {
            let resource = l.split_whitespace().next().unwrap_or_default();
            !(resource == "events"
                || resource == "events.events.k8s.io"
                || resource.starts_with("selfsubject"))
        })
        .collect();
    assert!(
        writes.is_empty(),
        "{adm} may write more than Events:\n{writes:?}\n{list}"
    );
}

appimage_e2e::world_wrapper!(World);

/// The real webhook, as the controllers' ServiceAccount with the chart's RBAC and the policy
/// only (no cluster-admin): it records the AppImage's revisions, and rolls an Auto Deployment
/// to revision 2, with its Services, and nothing it sends is denied.
#[test]
fn the_controllers_roll_out_under_the_chart_rights() {
    let s = shared();
    let r = release();
    let kubeconfig = format!("--kubeconfig={}", r.controllers_kubeconfig.display());
    let lease_ns = format!("--lease-namespace={}", r.namespace);
    let w = World(appimage_e2e::world::World::with_webhook_args(
        s,
        "rights-roll",
        &[&kubeconfig, &lease_ns, "--lease-duration=2s"],
    ));
    w.apply_signed_example("secretflow-image.yaml", &w.image);
    w.revision(1);
    w.deploy("auto", &["--replicas", "1"]);
    let acted = |n: &str| {
        wait_until(WAIT, || {
            w.get_json(&["deployment/auto"])["metadata"]["labels"][LATEST] == n
        })
    };
    assert!(acted("1"), "never acted on revision 1:\n{}", w.logs());
    w.apply_signed_example("secretflow-image-update.yaml", &w.image);
    w.revision(2);
    assert!(acted("2"), "never rolled to revision 2:\n{}", w.logs());
    let t = &w.get_json(&["deployment/auto"])["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(t[REVISION], "2", "{t}");
    let services = wait_until(WAIT, || {
        !w.items(&["services", "-l", "appimage.kuscia.secretflow/workload=auto"])
            .is_empty()
    });
    assert!(services, "no Services for the workload:\n{}", w.logs());
    let logs = w.hook.logs();
    assert!(
        !logs.contains("denied request") && !logs.contains("is forbidden"),
        "the chart's rights refused a write of the controllers:\n{logs}"
    );
    assert!(
        r.controllers.ends_with("-controllers") || r.controllers == r.admission,
        "{}",
        r.controllers
    );
}
