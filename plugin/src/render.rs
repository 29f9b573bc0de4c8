//! `render`: what the admission webhook would inject into a Pod, from files (`-f`, offline)
//! or from the cluster (`NAME`). The flags become the Pod's option annotations, which are read
//! back by the same parsing admission uses, so a render exercises exactly what admission reads.

use clap::ArgGroup;
use clap::Args;
use clap::ValueEnum;
use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use appimage::injection::{self, Injection, Request};
use appimage::resource::AppImage;
use appimage::{labels, selection};
use k8s_openapi::api::core::v1::{Pod, PodSpec, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::client::one_appimage;
use crate::error::eprint_line;
use crate::flags::Global;
use crate::output::{print, to_json, to_yaml};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RenderOutput {
    #[default]
    Yaml,
    Json,
    /// The Pod, Services and NetworkPolicies as a multi-document YAML stream for kubectl
    Manifests,
}

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).args(["name", "filename"]).multiple(true)))]
pub struct RenderArgs {
    /// The AppImage: fetched from the cluster, or picked from the -f files
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Read the AppImage from files instead of the cluster (works offline)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    /// The Pod's role; picks the deploy template as Kuscia does
    #[arg(long, default_value = "")]
    pub role: String,
    /// Only consider deploy templates with this name
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// Value of TASK_ID
    #[arg(long, value_name = "ID", default_value = "")]
    pub task_id: String,
    /// Value of TASK_INPUT_CONFIG / INPUT_CONFIG
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub input_config: String,
    /// Use this cluster define verbatim instead of the one built from the Pod's Services
    #[arg(long, value_name = "TEXT")]
    pub cluster_define: Option<String>,
    /// Value of SERVING_ID
    #[arg(long, value_name = "ID", default_value = "")]
    pub serving_id: String,
    /// An extra template value, KEY=VALUE; repeatable, wins over built-in values
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The Pod's namespace (KUSCIA_DOMAIN_ID)
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The Pod's name [default: <appimage>-<template>-0]
    #[arg(long, value_name = "NAME")]
    pub pod_name: Option<String>,
    /// Fail when a template references a key that has no value, or when a part of the
    /// AppImage would be left out (a mount of a config file configTemplates lacks, a network
    /// policy rule, role or port that grants nothing)
    #[arg(long)]
    pub strict: bool,
    /// What the Pod may override of the deploy template, as the webhook's --pod-overrides:
    /// all, env (env and resources only) or none; the AppImage's annotation can tighten it
    #[arg(long, default_value = "env", value_name = "all|env|none",
          value_parser = |s: &str| s.parse::<appimage::overrides::PodOverrides>())]
    pub pod_overrides: appimage::overrides::PodOverrides,
    /// yaml or json (a Render document), or manifests (objects for kubectl apply)
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub output: RenderOutput,
    /// Print only this rendered config file's content
    #[arg(long, value_name = "FILE")]
    pub show_config: Option<String>,
}

/// The document `render -o yaml|json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Render<'a> {
    api_version: &'static str,
    kind: &'static str,
    app_image: &'a str,
    template: &'a str,
    pod: &'a Pod,
    config_files: &'a BTreeMap<String, String>,
    services: &'a [Service],
    network_policies: &'a [NetworkPolicy],
}

/// `render -f` never builds a client; `render NAME` fetches the AppImage.
pub fn run(global: &Global, args: &RenderArgs) -> Result<()> {
    let image = one_appimage(global, args.name.as_deref(), &args.filename, "render")?;
    print(&render(&image, args)?)
}

/// `--set KEY=VALUE` pairs; a later one wins.
pub fn parse_sets(sets: &[String]) -> Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    for set in sets {
        match set.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                values.insert(key.trim().to_string(), value.to_string());
            }
            _ => bail!("--set {set:?} is not KEY=VALUE; write e.g. --set LOG_LEVEL=debug"),
        }
    }
    Ok(values)
}

/// The Pod the webhook would see: a name, a namespace, the opt-in label, and the flags as
/// the option annotations a user would write on it. Flags left at their default add nothing.
fn skeleton_pod(image: &AppImage, args: &RenderArgs, name: &str) -> Result<Pod> {
    let mut annotations = BTreeMap::new();
    let mut set = |key: &str, value: &str| {
        annotations.insert(key.to_string(), value.to_string());
    };
    for (key, value) in [
        (labels::OPT_ROLE, &args.role),
        (labels::OPT_TASK_ID, &args.task_id),
        (labels::OPT_INPUT_CONFIG, &args.input_config),
        (labels::OPT_SERVING_ID, &args.serving_id),
    ] {
        if !value.is_empty() {
            set(key, value);
        }
    }
    if let Some(template) = &args.template {
        set(labels::OPT_TEMPLATE, template);
    }
    if let Some(define) = &args.cluster_define {
        set(labels::OPT_CLUSTER_DEFINE, define);
    }
    let values = parse_sets(&args.set)?;
    if !values.is_empty() {
        set(labels::OPT_VALUES, &serde_json::to_string(&values)?);
    }
    if args.strict {
        set(labels::OPT_STRICT, "true");
    }
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(args.namespace.clone()),
            labels: Some(BTreeMap::from([(
                labels::APP_IMAGE.to_string(),
                image.name().to_string(),
            )])),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: None,
    })
}

/// Inject `image` into the skeleton Pod, reading its request as admission does.
pub fn inject(image: &AppImage, args: &RenderArgs) -> Result<Injection> {
    let pod_name = match &args.pod_name {
        Some(name) => name.clone(),
        // Name it after the template that will be chosen; inject reports a bad choice.
        None => match selection::select(image, &args.role, args.template.as_deref()) {
            Ok(i) => format!("{}-{}-0", image.name(), image.spec.deploy_templates[i].name),
            Err(_) => format!("{}-0", image.name()),
        },
    };
    let pod = skeleton_pod(image, args, &pod_name)?;
    let mut request =
        Request::from_pod(&pod, &args.namespace, &pod_name).map_err(|e| anyhow!("{e}"))?;
    // The webhook's setting, not the Pod's: the same flag, the same default.
    request.pod_overrides = args.pod_overrides;
    injection::inject(image, &pod, &request).map_err(|e| anyhow!("{e}"))
}

/// What `render` prints, deterministic for the same inputs.
pub fn render(image: &AppImage, args: &RenderArgs) -> Result<String> {
    let out = inject(image, args)?;
    // What injection left out, on stderr as kubectl prints admission warnings.
    for warning in &out.warnings {
        eprint_line(&format!("Warning: {warning}"));
    }
    // What only the webhook, with the registry, can know.
    if let Some(note) = appimage::image_id::offline_note(&image.spec.image) {
        eprint_line(&format!("Note: {note}"));
    }
    if let Some(file) = &args.show_config {
        return out.config_files.get(file).cloned().ok_or_else(|| {
            let have: Vec<&str> = out.config_files.keys().map(String::as_str).collect();
            anyhow!(
                "template {:?} of AppImage {:?} renders no config file {file:?} (it renders: {}); pick one of those with --show-config",
                out.template,
                image.name(),
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            )
        });
    }
    match args.output {
        RenderOutput::Yaml | RenderOutput::Json => {
            let doc = Render {
                api_version: "appimage.kuscia.secretflow/v1alpha1",
                kind: "Render",
                app_image: image.name(),
                template: &out.template,
                pod: &out.pod,
                config_files: &out.config_files,
                services: &out.services,
                network_policies: &out.network_policies,
            };
            if args.output == RenderOutput::Json {
                to_json(&doc)
            } else {
                to_yaml(&doc)
            }
        }
        RenderOutput::Manifests => {
            let mut docs = vec![to_yaml(&out.pod)?];
            for s in &out.services {
                docs.push(to_yaml(s)?);
            }
            for np in &out.network_policies {
                docs.push(to_yaml(np)?);
            }
            Ok(docs.join("---\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_key_value_pairs() {
        let v = parse_sets(&["A=1".into(), "B=x=y".into(), "A=2".into(), "C=".into()]).unwrap();
        assert_eq!(v["A"], "2");
        assert_eq!(v["B"], "x=y");
        assert_eq!(v["C"], "");
        for bad in ["A", "=1", " =1"] {
            let err = parse_sets(&[bad.into()]).unwrap_err().to_string();
            assert!(err.contains("KEY=VALUE"), "{err}");
        }
    }

    fn args(extra: &[&str]) -> RenderArgs {
        use clap::Parser;
        let mut argv = vec!["kubectl-appimage", "render", "-f", "x.yaml"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Render(args) => *args,
            other => panic!("not render: {other:?}"),
        }
    }

    fn image() -> AppImage {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kuscia.secretflow/v1alpha1",
            "kind": "AppImage",
            "metadata": {"name": "img"},
            "spec": {"image": {"name": "x", "tag": "1"},
                     "deployTemplates": [{"name": "t", "spec": {"containers": [{"name": "c"}]}}]}
        }))
        .unwrap()
    }

    #[test]
    fn flags_become_the_annotations_admission_reads() {
        let all = args(&[
            "--role",
            "server",
            "--template",
            "t",
            "--task-id",
            "t1",
            "--input-config",
            "{}",
            "--cluster-define",
            "",
            "--serving-id",
            "s1",
            "--set",
            "B=2",
            "--set",
            "A=1",
            "--strict",
            "-n",
            "alice",
        ]);
        let pod = skeleton_pod(&image(), &all, "p").unwrap();
        let request = Request::from_pod(&pod, "alice", "p").unwrap();
        assert_eq!(
            request,
            Request {
                namespace: "alice".into(),
                pod_name: "p".into(),
                role: "server".into(),
                template: Some("t".into()),
                task_id: "t1".into(),
                input_config: "{}".into(),
                cluster_define: Some(String::new()),
                serving_id: "s1".into(),
                values: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())]),
                missing: appimage::render::MissingKey::Error,
                pod_overrides: Default::default(),
                image: None,
            }
        );
        let annotations = pod.metadata.annotations.unwrap();
        assert_eq!(annotations[labels::OPT_VALUES], r#"{"A":"1","B":"2"}"#);

        // Flags left at their defaults add no annotation and read back as the defaults.
        let pod = skeleton_pod(&image(), &args(&[]), "p").unwrap();
        assert_eq!(pod.metadata.annotations, None);
        let request = Request::from_pod(&pod, "default", "p").unwrap();
        assert_eq!(request.task_id, "");
        assert_eq!(request.cluster_define, None);
        assert_eq!(request.missing, appimage::render::MissingKey::Empty);
    }
}
