//! What the CRD schema cannot check: cross-references between fields, name rules, and
//! whether config templates parse. Every error names its field path and how to fix it.

use std::fmt;

use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::naming;
use crate::network_policy;
use crate::ports;
use crate::render::Template;
use crate::resource::{AppImage, Container, DeployTemplate, is_sha256_digest};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn check(&mut self, path: impl Into<String>, err: Option<String>) {
        if let Some(message) = err {
            self.add(path, message);
        }
    }
}

/// All problems with `image`, in field order; empty when it is valid.
pub fn validate(image: &AppImage) -> Vec<FieldError> {
    let mut errs = Errors::default();
    match image.metadata.name.as_deref() {
        None | Some("") => errs.add("metadata.name", "is required; name the AppImage"),
        Some(name) => errs.check("metadata.name", naming::dns1123_subdomain_error(name)),
    }
    let img = &image.spec.image;
    if img.name.trim().is_empty() {
        errs.add(
            "spec.image.name",
            "is required, e.g. secretflow/secretflow-lite-anolis8",
        );
    } else if img.name.contains(char::is_whitespace) || img.name.contains('@') {
        errs.add(
            "spec.image.name",
            "must be an image repository without spaces, tag or digest (put the tag in spec.image.tag and a digest in spec.image.id)",
        );
    }
    if img.tag.trim().is_empty() {
        errs.add("spec.image.tag", "is required, e.g. \"latest\"");
    } else if img.tag.len() > 128
        || !img
            .tag
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        || !img
            .tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        errs.add(
            "spec.image.tag",
            "must be a valid image tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
        );
    }
    if let Some(id) = img.id.as_deref()
        && id.starts_with("sha256:")
        && !is_sha256_digest(id)
    {
        errs.add(
            "spec.image.id",
            "starts with sha256: but is not a digest; write sha256: followed by 64 lower-case hex digits, or an ID without the sha256: prefix",
        );
    }

    for (file, text) in &image.spec.config_templates {
        let path = format!("spec.configTemplates[{file:?}]");
        errs.check(&path, naming::config_file_name_error(file));
        if let Err(e) = Template::parse(file, text) {
            errs.add(&path, e.to_string());
        }
    }

    if image.spec.deploy_templates.is_empty() {
        errs.add(
            "spec.deployTemplates",
            "must hold at least one deploy template",
        );
    }
    for (ti, t) in image.spec.deploy_templates.iter().enumerate() {
        template(&mut errs, &format!("spec.deployTemplates[{ti}]"), t);
    }
    errs.0
}

fn template(errs: &mut Errors, path: &str, t: &DeployTemplate) {
    errs.check(format!("{path}.name"), naming::dns1123_label_error(&t.name));
    for role in t.roles() {
        if let Some(e) = naming::label_value_error(role) {
            errs.add(format!("{path}.role"), format!("role {role:?} {e}"));
        }
    }
    if let Some(r) = t.replicas
        && r < 0
    {
        errs.add(format!("{path}.replicas"), "must be 0 or more");
    }
    let spec = format!("{path}.spec");
    if t.spec.containers.is_empty() {
        errs.add(
            format!("{spec}.containers"),
            "must hold at least one container",
        );
    }

    // Ports form one namespace across the template's containers.
    let mut port_names: Vec<(&str, String)> = Vec::new();
    for e in ports::check(t, path) {
        errs.add(e.path(), e.message());
    }
    let mut container_names: Vec<(&str, String)> = Vec::new();
    for (ci, c) in t.spec.containers.iter().enumerate() {
        let cpath = format!("{spec}.containers[{ci}]");
        errs.check(
            format!("{cpath}.name"),
            naming::dns1123_label_error(&c.name),
        );
        if let Some((_, first)) = container_names.iter().find(|(n, _)| *n == c.name) {
            errs.add(
                format!("{cpath}.name"),
                format!("container name {:?} is already used by {first}; container names must be unique", c.name),
            );
        }
        container_names.push((&c.name, cpath.clone()));
        for (pi, p) in c.ports.iter().enumerate() {
            let ppath = format!("{cpath}.ports[{pi}]");
            errs.check(format!("{ppath}.name"), naming::port_name_error(&p.name));
            port_names.push((&p.name, ppath));
        }
        for (mi, m) in c.config_volume_mounts.iter().enumerate() {
            let mpath = format!("{cpath}.configVolumeMounts[{mi}]");
            if m.mount_path.trim().is_empty() {
                errs.add(
                    format!("{mpath}.mountPath"),
                    "is required: where the file appears in the container",
                );
            }
        }
        probes(errs, &cpath, c);
    }

    let declared: Vec<&str> = port_names.iter().map(|(n, _)| *n).collect();
    for (ci, c) in t.spec.containers.iter().enumerate() {
        if let Some(mp) = &c.metric_probe
            && !declared.contains(&mp.port.as_str())
        {
            errs.add(
                format!("{spec}.containers[{ci}].metricProbe.port"),
                undeclared(&mp.port, &declared),
            );
        }
    }
    if let Some(np) = &t.network_policy {
        for (ii, ing) in np.ingresses.iter().enumerate() {
            for (ri, role) in ing.from.roles.iter().enumerate() {
                errs.check(
                    format!("{path}.networkPolicy.ingresses[{ii}].from.roles[{ri}]"),
                    naming::label_value_error(role),
                );
            }
        }
    }
}

/// What render and admission will leave out of `image` (and say so), which Kuscia accepts
/// too: a mount of a config file that `configTemplates` lacks, and network policy rules,
/// roles or ports that would grant nothing. Strict mode makes each an error there.
pub fn warnings(image: &AppImage) -> Vec<FieldError> {
    let mut warns = Errors::default();
    let files = &image.spec.config_templates;
    for (ti, t) in image.spec.deploy_templates.iter().enumerate() {
        let path = format!("spec.deployTemplates[{ti}]");
        for (ci, c) in t.spec.containers.iter().enumerate() {
            for (mi, m) in c.config_volume_mounts.iter().enumerate() {
                if !files.contains_key(&m.sub_path) {
                    warns.add(
                        format!("{path}.spec.containers[{ci}].configVolumeMounts[{mi}].subPath"),
                        format!(
                            "{:?} is not a key of spec.configTemplates (it has: {}), so the mount is left out; add the template or fix the name",
                            m.sub_path,
                            naming::list(files.keys().map(String::as_str))
                        ),
                    );
                }
            }
        }
        if let Some(np) = &t.network_policy {
            let declared: Vec<&str> = t
                .spec
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().map(|p| p.name.as_str()))
                .collect();
            for left in network_policy::rules(np, &declared).1 {
                warns.add(format!("{path}.networkPolicy.{}", left.path), left.message);
            }
        }
    }
    warns.0
}

/// Named probe ports must be declared by the same container, as the kubelet resolves them.
fn probes(errs: &mut Errors, cpath: &str, c: &Container) {
    let own: Vec<&str> = c.ports.iter().map(|p| p.name.as_str()).collect();
    let all = [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ];
    for (field, probe) in all {
        let Some(probe) = probe else { continue };
        for (sub, port) in probe_ports(probe) {
            if let IntOrString::String(name) = port
                && !own.contains(&name.as_str())
            {
                errs.add(
                    format!("{cpath}.{field}.{sub}.port"),
                    undeclared(name, &own),
                );
            }
        }
    }
}

fn probe_ports(p: &Probe) -> Vec<(&'static str, &IntOrString)> {
    let mut v = Vec::new();
    if let Some(h) = &p.http_get {
        v.push(("httpGet", &h.port));
    }
    if let Some(t) = &p.tcp_socket {
        v.push(("tcpSocket", &t.port));
    }
    v
}

fn undeclared(name: &str, declared: &[&str]) -> String {
    format!(
        "names port {name:?}, which is not declared (declared: {}); declare it under ports or use a declared name",
        naming::list(declared.iter().copied())
    )
}

#[cfg(test)]
mod tests {

    use super::*;

    fn seed() -> AppImage {
        let text = include_str!("../examples/app-template.yaml");
        crate::manifest::appimages("app-template.yaml", text)
            .unwrap()
            .remove(0)
    }

    fn errors(img: &AppImage) -> Vec<String> {
        validate(img).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_seed_examples_are_valid() {
        assert_eq!(errors(&seed()), Vec::<String>::new());
        for text in [
            include_str!("../examples/secretflow-image.yaml"),
            include_str!("../examples/secretflow-image-update.yaml"),
        ] {
            let img = crate::manifest::appimages("x", text).unwrap().remove(0);
            assert_eq!(errors(&img), Vec::<String>::new());
        }
    }

    #[test]
    fn cross_references_name_their_field() {
        let mut img = seed();
        let c = &mut img.spec.deploy_templates[0].spec.containers[0];
        c.ports[0].name = "web".into();
        c.config_volume_mounts[0].sub_path = "missing.conf".into();
        c.metric_probe = Some(crate::resource::MetricProbe {
            path: "/metrics".into(),
            port: "nope".into(),
        });
        let errs = errors(&img);
        let mut paths: Vec<&str> = errs.iter().filter_map(|e| e.split(": ").next()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "spec.deployTemplates[0].spec.containers[0].livenessProbe.httpGet.port",
                "spec.deployTemplates[0].spec.containers[0].metricProbe.port",
                "spec.deployTemplates[0].spec.containers[0].startupProbe.httpGet.port",
            ]
        );
        assert!(
            errs.iter().any(|e| e.contains(
                "names port \"global\", which is not declared (declared: web)"
            )),
            "{errs:?}"
        );
        // What render leaves out (and Kuscia accepts) is a warning, not an error.
        let warns: Vec<String> = warnings(&img).iter().map(ToString::to_string).collect();
        assert_eq!(
            warns,
            [
                "spec.deployTemplates[0].spec.containers[0].configVolumeMounts[0].subPath: \"missing.conf\" is not a key of spec.configTemplates (it has: task-config.conf), so the mount is left out; add the template or fix the name",
                "spec.deployTemplates[0].networkPolicy.ingresses[0].ports[0].port: names port \"global\", which no container of the template declares (declared: web); it is left out of the rule",
                "spec.deployTemplates[0].networkPolicy.ingresses[0].ports: names no declared port, so the rule is left out (an empty `ports` would open every port); list declared port names",
            ]
        );
    }

    #[test]
    fn the_seed_examples_have_no_warnings() {
        assert_eq!(warnings(&seed()), vec![]);
    }

    #[test]
    fn empty_rules_are_warnings() {
        let mut img = seed();
        let np = img.spec.deploy_templates[0]
            .network_policy
            .as_mut()
            .unwrap();
        np.ingresses[0].from.roles.clear();
        let warns: Vec<String> = warnings(&img).iter().map(ToString::to_string).collect();
        assert_eq!(
            warns,
            [
                "spec.deployTemplates[0].networkPolicy.ingresses[0].from.roles: lists no role, so the rule is left out (an empty `from` would admit every Pod); list the roles that may connect"
            ]
        );
        assert_eq!(errors(&img), Vec::<String>::new());
    }

    #[test]
    fn names_duplicates_and_templates() {
        let mut img = seed();
        img.metadata.name = Some("Bad_Name".into());
        let t = &mut img.spec.deploy_templates[1];
        t.name = "-x".into();
        let mut second = t.spec.containers[0].clone();
        second.name = "side".into();
        second.config_volume_mounts.clear();
        t.spec.containers.push(second);
        img.spec
            .config_templates
            .insert("bad.conf".into(), "{{if .X}}".into());
        let errs = errors(&img);
        let has = |prefix: &str| errs.iter().any(|e| e.starts_with(prefix));
        assert!(
            has("metadata.name: must be a DNS-1123 subdomain"),
            "{errs:?}"
        );
        assert!(
            has("spec.deployTemplates[1].name: must be a DNS-1123 label"),
            "{errs:?}"
        );
        assert!(
            has(
                "spec.deployTemplates[1].spec.containers[1].ports[0].name: port name \"global\" is already used by spec.deployTemplates[1].spec.containers[0].ports[0]"
            ),
            "{errs:?}"
        );
        assert!(
            has(
                "spec.configTemplates[\"bad.conf\"]: config template \"bad.conf\", line 1, column 1: unsupported action"
            ),
            "{errs:?}"
        );
    }
}
