//! `describe`: an AppImage as kubectl-describe-style text.

use anyhow::Result;
use appimage::resource::{AppImage, Container, DeployTemplate};
use appimage::stage::Stage;
use clap::Args;
use k8s_openapi::api::core::v1::{EnvFromSource, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::client::{Cluster, block_on};
use crate::error::{eprint_line, reported};
use crate::flags::Global;
use crate::output::tabwrite;
use crate::output::{or_none, print, stage};

#[derive(Args, Debug, Clone)]
pub struct DescribeArgs {
    /// AppImage names; all when none are given
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

/// `describe [NAME...]`: the named AppImages, or all of them.
pub fn run(global: &Global, args: &DescribeArgs) -> Result<()> {
    let (images, failed) = block_on(async {
        let cluster = Cluster::connect(global).await?;
        cluster.fetch(&args.names).await
    })?;
    if images.is_empty() && !failed {
        eprint_line("No resources found");
    }
    let texts: Vec<String> = images.iter().map(describe).collect();
    if !texts.is_empty() {
        print(&texts.join("\n"))?;
    }
    if failed { Err(reported()) } else { Ok(()) }
}

/// A describe page (an AppImage's, a BatchDeployment's). Lines are `indent`, key and value;
/// the key column is aligned per block, like kubectl's tabwriter (padding 2), so it is built
/// with tabs and laid out at the end ([`Doc::finish`]).
#[derive(Default)]
pub(crate) struct Doc(String);

impl Doc {
    /// The page, aligned.
    pub(crate) fn finish(&self) -> String {
        tabwrite(&self.0, 2)
    }

    pub(crate) fn field(&mut self, level: usize, key: &str, value: impl AsRef<str>) {
        self.0.push_str(&format!(
            "{}{key}:\t{}\n",
            "  ".repeat(level),
            value.as_ref()
        ));
    }

    pub(crate) fn section(&mut self, level: usize, key: &str) {
        self.0.push_str(&format!("{}{key}:\n", "  ".repeat(level)));
    }

    pub(crate) fn line(&mut self, level: usize, text: &str) {
        self.0.push_str(&format!("{}{text}\n", "  ".repeat(level)));
    }

    /// `key:` then one value per line, or `key: <none>`.
    pub(crate) fn list(&mut self, level: usize, key: &str, items: &[String]) {
        if items.is_empty() {
            self.field(level, key, "<none>");
        } else {
            self.section(level, key);
            for item in items {
                self.line(level + 1, item);
            }
        }
    }

    /// `key:` then a table under it (its columns aligned, as kubectl's Conditions), or
    /// `empty` under it when there are no rows.
    pub(crate) fn table(
        &mut self,
        level: usize,
        key: &str,
        header: &[&str],
        rows: &[Vec<String>],
        empty: &str,
    ) {
        self.section(level, key);
        if rows.is_empty() {
            self.line(level + 1, empty);
            return;
        }
        self.line(level + 1, &header.join("\t"));
        for row in rows {
            self.line(level + 1, &row.join("\t"));
        }
    }

    /// kubectl's map printing: first entry beside the key, the rest under it.
    pub(crate) fn map(&mut self, level: usize, key: &str, entries: Vec<String>) {
        let mut entries = entries.into_iter();
        match entries.next() {
            None => self.field(level, key, "<none>"),
            Some(first) => {
                self.field(level, key, first);
                for e in entries {
                    self.0.push_str(&format!("{}\t{e}\n", "  ".repeat(level)));
                }
            }
        }
    }
}

/// The describe text of one AppImage.
pub fn describe(image: &AppImage) -> String {
    let mut d = Doc::default();
    let meta = &image.metadata;
    d.field(0, "Name", image.name());
    d.field(0, "Stage", stage(image));
    if let Some(other) = Stage::replaced_by(image) {
        d.field(0, "Replaced By", other);
    }
    d.map(
        0,
        "Labels",
        meta.labels
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
    );
    d.map(
        0,
        "Annotations",
        meta.annotations
            .iter()
            .flatten()
            .filter(|(k, _)| *k != "kubectl.kubernetes.io/last-applied-configuration")
            .map(|(k, v)| format!("{k}: {v}"))
            .collect(),
    );
    d.field(0, "API Version", "kuscia.secretflow/v1alpha1");
    d.field(0, "Kind", "AppImage");
    d.field(
        0,
        "Creation Timestamp",
        meta.creation_timestamp.as_ref().map_or_else(
            || "<unset>".to_string(),
            |t| t.0.strftime("%a, %d %b %Y %H:%M:%S %z").to_string(),
        ),
    );

    let img = &image.spec.image;
    d.section(0, "Image");
    d.field(1, "Name", &img.name);
    d.field(1, "Tag", &img.tag);
    d.field(1, "ID", or_none(img.id.clone().unwrap_or_default()));
    d.field(
        1,
        "Sign",
        match img.sign.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => format!("<present: {} bytes>", s.len()),
            None => "<none>".into(),
        },
    );
    d.field(1, "Reference", image.image_ref());

    let files: Vec<String> = image
        .spec
        .config_templates
        .iter()
        .map(|(file, text)| format!("{file}\t{} bytes", text.len()))
        .collect();
    d.list(0, "Config Files", &files);

    if image.spec.deploy_templates.is_empty() {
        d.field(0, "Deploy Templates", "<none>");
    } else {
        d.section(0, "Deploy Templates");
    }
    for t in &image.spec.deploy_templates {
        template(&mut d, t);
    }
    d.finish()
}

fn template(d: &mut Doc, t: &DeployTemplate) {
    d.section(1, &t.name);
    d.field(2, "Roles", or_none(t.roles().join(",")));
    d.field(
        2,
        "Replicas",
        t.replicas
            .map_or_else(|| "1 (default)".into(), |r| r.to_string()),
    );
    d.field(2, "Restart Policy", t.spec.restart_policy.as_str());
    match t
        .network_policy
        .as_ref()
        .filter(|np| !np.ingresses.is_empty())
    {
        None => d.field(2, "Network Policy", "<none>"),
        Some(np) => {
            d.section(2, "Network Policy Ingresses");
            for ing in &np.ingresses {
                let ports: Vec<&str> = ing.ports.iter().map(|p| p.port.as_str()).collect();
                d.line(
                    3,
                    &format!(
                        "from roles {} to ports {}",
                        or_none(ing.from.roles.join(",")),
                        or_none(ports.join(","))
                    ),
                );
            }
        }
    }
    if t.spec.affinity.is_some() {
        d.field(2, "Affinity", "<set>");
    }
    d.section(2, "Containers");
    for c in &t.spec.containers {
        container(d, c);
    }
}

fn container(d: &mut Doc, c: &Container) {
    d.section(3, &c.name);
    d.list(4, "Command", &c.command);
    d.list(4, "Args", &c.args);
    d.field(
        4,
        "Working Dir",
        or_none(c.working_dir.clone().unwrap_or_default()),
    );
    if c.ports.is_empty() {
        d.field(4, "Ports", "<none>");
    } else {
        d.section(4, "Ports");
        d.line(5, "NAME\tPORT\tPROTOCOL\tSCOPE");
        for p in &c.ports {
            let port = p
                .port
                .map_or_else(|| "<allocated>".into(), |n| n.to_string());
            d.line(
                5,
                &format!(
                    "{}\t{port}\t{}\t{}",
                    p.name,
                    p.protocol.as_str(),
                    p.scope.as_str()
                ),
            );
        }
    }
    let mounts: Vec<String> = c
        .config_volume_mounts
        .iter()
        .map(|m| format!("{} <- {}", m.mount_path, m.sub_path))
        .collect();
    d.list(4, "Config Mounts", &mounts);
    let env: Vec<&str> = c.env.iter().map(|e| e.name.as_str()).collect();
    d.field(4, "Environment", or_none(env.join(", ")));
    if !c.env_from.is_empty() {
        let from: Vec<String> = c.env_from.iter().map(env_from).collect();
        d.field(4, "Environment From", from.join(", "));
    }
    if let Some(r) = &c.resources {
        for (key, set) in [("Limits", &r.limits), ("Requests", &r.requests)] {
            if let Some(set) = set.as_ref().filter(|s| !s.is_empty()) {
                let items: Vec<String> = set.iter().map(|(k, q)| format!("{k}={}", q.0)).collect();
                d.field(4, key, items.join(", "));
            }
        }
    }
    if let Some(p) = c.image_pull_policy {
        d.field(4, "Image Pull Policy", p.as_str());
    }
    let mut probes = Vec::new();
    for (kind, probe) in [
        ("Liveness", &c.liveness_probe),
        ("Readiness", &c.readiness_probe),
        ("Startup", &c.startup_probe),
    ] {
        if let Some(p) = probe {
            probes.push(format!("{kind}:\t{}", probe_summary(p)));
        }
    }
    if let Some(m) = &c.metric_probe {
        probes.push(format!("Metric:\tpath {} port {}", m.path, m.port));
    }
    d.list(4, "Probes", &probes);
}

fn env_from(e: &EnvFromSource) -> String {
    let prefix = e
        .prefix
        .as_deref()
        .map(|p| format!(" (prefix {p})"))
        .unwrap_or_default();
    if let Some(cm) = &e.config_map_ref {
        format!("configMap {}{prefix}", cm.name)
    } else if let Some(s) = &e.secret_ref {
        format!("secret {}{prefix}", s.name)
    } else {
        "<unknown source>".into()
    }
}

fn port(p: &IntOrString) -> String {
    match p {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// kubectl's probe line: the action, then timings with Kubernetes' defaults filled in.
fn probe_summary(p: &Probe) -> String {
    let action = if let Some(h) = &p.http_get {
        format!(
            "http-get {} port {}",
            h.path.as_deref().unwrap_or("/"),
            port(&h.port)
        )
    } else if let Some(t) = &p.tcp_socket {
        format!("tcp-socket port {}", port(&t.port))
    } else if let Some(g) = &p.grpc {
        format!("grpc port {}", g.port)
    } else if let Some(e) = &p.exec {
        format!("exec [{}]", e.command.clone().unwrap_or_default().join(" "))
    } else {
        "<unknown>".into()
    };
    format!(
        "{action} delay={}s timeout={}s period={}s #success={} #failure={}",
        p.initial_delay_seconds.unwrap_or(0),
        p.timeout_seconds.unwrap_or(1),
        p.period_seconds.unwrap_or(10),
        p.success_threshold.unwrap_or(1),
        p.failure_threshold.unwrap_or(3)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwrite_aligns_runs_of_lines() {
        let text = "Name:\tx\nLong Key:\ty\nSection:\n  A:\t1\n  Bbb:\t2\n";
        assert_eq!(
            tabwrite(text, 2),
            "Name:      x\nLong Key:  y\nSection:\n  A:    1\n  Bbb:  2\n"
        );
    }

    #[test]
    fn tabwrite_aligns_table_columns() {
        let text = "  NAME\tPORT\tSCOPE\n  spu\t<allocated>\tCluster\n";
        assert_eq!(
            tabwrite(text, 2),
            "  NAME  PORT         SCOPE\n  spu   <allocated>  Cluster\n"
        );
    }
}
