//! The chart's ValidatingAdmissionPolicies (issue 24, section 3) on the test cluster: rendered
//! from charts/appimage-webhook/templates/admission-policies.yaml itself (no helm needed: the
//! template keeps to the few expressions [`render`] knows, and any other fails the test), and
//! the webhook run as the chart's ServiceAccount, whose name the revisions policy allows.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Cluster, repo_root, text, unique, wait_until};

/// The chart template holding the policies.
pub const TEMPLATE: &str = "charts/appimage-webhook/templates/admission-policies.yaml";

/// `template` as `helm template` renders it for a release whose full name is `fullname`,
/// installed in `namespace` with the controllers' ServiceAccount `sa`, labelled
/// `app.kubernetes.io/instance`.
pub fn render(template: &str, fullname: &str, namespace: &str, sa: &str) -> String {
    let mut out = strip_comments(template);
    let labels = "\n    app.kubernetes.io/instance: e2e";
    // `{{-` trims the line break and indent before it; nindent puts them back.
    out = trim_before(
        &out,
        r#"{{- include "appimage-webhook.labels" . | nindent 4 }}"#,
        labels,
    );
    for (expr, value) in [
        (r#"{{ include "appimage-webhook.fullname" . }}"#, fullname),
        (
            r#"{{ include "appimage-webhook.controllersServiceAccountName" . }}"#,
            sa,
        ),
        ("{{ .Release.Namespace }}", namespace),
    ] {
        out = out.replace(expr, value);
    }
    assert!(
        !out.contains("{{"),
        "{TEMPLATE} uses a template expression the e2e renderer does not know:\n{out}"
    );
    out
}

/// Remove `{{- /* ... */}}` comments, with the whitespace `{{-` trims before them.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{- /*") {
        out.push_str(rest[..start].trim_end());
        let end = rest[start..].find("*/}}").expect("an unclosed comment") + start + 4;
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Replace every `needle` and the whitespace before it with `with`.
fn trim_before(text: &str, needle: &str, with: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split(needle).enumerate() {
        if i > 0 {
            out.truncate(out.trim_end().len());
            out.push_str(with);
        }
        out.push_str(part);
    }
    out
}

/// What [`install`] made: the identity the webhook runs as, and its kubeconfig.
pub struct Installed {
    /// `system:serviceaccount:<namespace>:<sa>`.
    pub username: String,
    pub namespace: String,
    pub sa: String,
    /// A kubeconfig that authenticates as the ServiceAccount (a token from the TokenRequest
    /// API), for the webhook's `--kubeconfig`.
    pub kubeconfig: PathBuf,
}

/// A namespace and ServiceAccount standing for the chart's release, the policies rendered for
/// them and applied, and a kubeconfig for the ServiceAccount. The ServiceAccount is bound to
/// cluster-admin: what is tested here is its name, which the policy checks (the chart's
/// least-privilege ClusterRoles, and the policy confining the controllers, are tested in
/// controller_rights.rs).
pub fn install(c: &Cluster) -> Installed {
    let namespace = c.namespace("appimage-system");
    let sa = "appimage-webhook".to_string();
    c.kubectl_ok(&["create", "serviceaccount", &sa, "-n", &namespace]);
    let binding = unique("appimage-webhook-admin");
    let subject = format!("{namespace}:{sa}");
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        &binding,
        "--clusterrole=cluster-admin",
        "--serviceaccount",
        &subject,
    ]);
    // Without the template (the code before issue 24) the cluster runs without the policies,
    // so the same tests show what they stop.
    match std::fs::read_to_string(repo_root().join(TEMPLATE)) {
        Ok(template) => {
            let fullname = unique("e2e");
            // Not the controllers' policy: this ServiceAccount is cluster-admin and keeps its
            // Lease in `default`, which that policy refuses; controller_rights.rs runs the
            // webhook under it with the chart's own RBAC.
            let confining = format!("name: {fullname}-controllers\n");
            let all = render(&template, &fullname, &namespace, &sa);
            let rendered: Vec<&str> = all
                .split("\n---\n")
                .filter(|d| !d.contains(&confining))
                .collect();
            let rendered = rendered.join("\n---\n");
            let file = c.dir().join(format!("{}.yaml", unique("policies")));
            std::fs::write(&file, rendered).expect("write policies");
            c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
        }
        Err(e) => eprintln!("{TEMPLATE}: {e}; running without the chart's policies"),
    }
    let (username, kubeconfig) = service_account_kubeconfig(c, &namespace, &sa);
    Installed {
        username,
        namespace,
        sa,
        kubeconfig,
    }
}

/// A kubeconfig that authenticates as ServiceAccount `namespace`/`sa` (a token from the
/// TokenRequest API), and the username the API server sees for it (checked with whoami).
pub fn service_account_kubeconfig(c: &Cluster, namespace: &str, sa: &str) -> (String, PathBuf) {
    let token = c.kubectl_ok(&["create", "token", sa, "-n", namespace, "--duration=24h"]);
    let kubeconfig = c.dir().join(format!("{}.kubeconfig", unique("sa")));
    std::fs::copy(c.kubeconfig(), &kubeconfig).expect("copy kubeconfig");
    // The admin kubeconfig's one user is `admin`; its token becomes the ServiceAccount's.
    let out = c
        .command("kubectl")
        .args([
            "config",
            "set-credentials",
            "admin",
            "--token",
            token.trim(),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("kubectl config");
    assert!(out.status.success(), "{:?}", text(&out));
    let username = format!("system:serviceaccount:{namespace}:{sa}");
    let who = c
        .command("kubectl")
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("kubectl auth whoami");
    assert_eq!(text(&who).0, username, "{:?}", text(&who));
    (username, kubeconfig)
}

/// Wait until `attempt` (a kubectl run) fails with a message containing `part`: a new policy
/// is enforced a moment after it is created.
pub fn wait_enforced(mut attempt: impl FnMut() -> std::process::Output, part: &str) -> bool {
    wait_until(Duration::from_secs(60), || {
        let out = attempt();
        !out.status.success() && text(&out).1.contains(part)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_template_renders_to_the_policies_and_their_bindings() {
        let template = std::fs::read_to_string(repo_root().join(TEMPLATE)).unwrap();
        let out = render(&template, "rel-appimage-webhook", "ns1", "sa1");
        let kinds: Vec<String> = out
            .split("\n---\n")
            .map(|d| {
                let v: serde_json::Value = serde_yaml_ng::from_str(d).unwrap();
                assert_eq!(v["metadata"]["labels"]["app.kubernetes.io/instance"], "e2e");
                format!(
                    "{} {}",
                    v["kind"].as_str().unwrap(),
                    v["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ValidatingAdmissionPolicy rel-appimage-webhook-revisions",
                "ValidatingAdmissionPolicyBinding rel-appimage-webhook-revisions",
                "ValidatingAdmissionPolicy rel-appimage-webhook-unpublish",
                "ValidatingAdmissionPolicyBinding rel-appimage-webhook-unpublish",
                "ValidatingAdmissionPolicy rel-appimage-webhook-controllers",
                "ValidatingAdmissionPolicyBinding rel-appimage-webhook-controllers",
            ]
        );
        assert!(out.contains("'system:serviceaccount:ns1:sa1'"), "{out}");
        assert!(out.contains("check('unpublish')"), "{out}");
    }
}
