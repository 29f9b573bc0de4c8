//! Commands that need no cluster: render (from files), validate, crd, completion, version.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use appimage::injection::{self, Injection, Request};
use appimage::render::MissingKey;
use appimage::resource::AppImage;
use appimage::{labels, selection, validation};
use clap::CommandFactory;
use clap_complete::Shell;
use k8s_openapi::api::core::v1::{Pod, PodSpec, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::cli::{Cli, RenderArgs, RenderOutput, ValidateArgs, VersionArgs, VersionOutput};
use crate::error::{Reported, eprint_line};
use crate::input::{self, Loaded};
use crate::output::{print, println, to_json, to_yaml};

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

/// `render -f`: pick the AppImage from the files and render it, never touching a cluster.
pub fn render_files(args: &RenderArgs) -> Result<()> {
    let images = input::load(&args.filename)?;
    let image = pick(images, args.name.as_deref(), &args.filename)?;
    print(&render(&image, args)?)
}

/// The AppImage named `name`, or the only one.
pub fn pick(images: Vec<Loaded>, name: Option<&str>, files: &[String]) -> Result<AppImage> {
    pick_for(images, name, files, "render")
}

/// [`pick`] for `kubectl appimage COMMAND`, which the hint for several AppImages names.
pub fn pick_for(
    images: Vec<Loaded>,
    name: Option<&str>,
    files: &[String],
    command: &str,
) -> Result<AppImage> {
    let names: Vec<&str> = images.iter().map(Loaded::name).collect();
    let shown = files.join(", ");
    if let Some(name) = name {
        return match images.iter().find(|l| l.name() == name) {
            Some(l) => Ok(l.image.clone()),
            None => bail!(
                "{shown} holds no AppImage named {name:?} (it has: {}); pass one of those names",
                names.join(", ")
            ),
        };
    }
    if let [only] = images.as_slice() {
        return Ok(only.image.clone());
    }
    bail!(
        "{shown} holds {} AppImages ({}); name the one to use: kubectl appimage {command} NAME -f {shown}",
        images.len(),
        names.join(", ")
    )
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

/// The Pod the webhook would see: just a name, a namespace and the opt-in label.
fn skeleton_pod(image: &AppImage, namespace: &str, name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                labels::APP_IMAGE.to_string(),
                image.name().to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: None,
    }
}

/// Inject `image` into a skeleton Pod with the flags' request.
pub fn inject(image: &AppImage, args: &RenderArgs) -> Result<Injection> {
    let values = parse_sets(&args.set)?;
    let pod_name = match &args.pod_name {
        Some(name) => name.clone(),
        // Name it after the template that will be chosen; inject reports a bad choice.
        None => match selection::select(image, &args.role, args.template.as_deref()) {
            Ok(i) => format!("{}-{}-0", image.name(), image.spec.deploy_templates[i].name),
            Err(_) => format!("{}-0", image.name()),
        },
    };
    let request = Request {
        namespace: args.namespace.clone(),
        pod_name: pod_name.clone(),
        role: args.role.clone(),
        template: args.template.clone(),
        task_id: args.task_id.clone(),
        input_config: args.input_config.clone(),
        cluster_define: args.cluster_define.clone(),
        serving_id: args.serving_id.clone(),
        values,
        missing: if args.strict {
            MissingKey::Error
        } else {
            MissingKey::Empty
        },
    };
    let pod = skeleton_pod(image, &args.namespace, &pod_name);
    injection::inject(image, &pod, &request).map_err(|e| anyhow!("{e}"))
}

/// What `render` prints, deterministic for the same inputs.
pub fn render(image: &AppImage, args: &RenderArgs) -> Result<String> {
    let out = inject(image, args)?;
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

/// `validate -f`: every document is checked; exit 1 if any is broken.
pub fn validate(args: &ValidateArgs) -> Result<()> {
    let sources = input::read_sources(&args.files.filename)?;
    let (images, errors) = input::parse(&sources);
    let mut ok = errors.is_empty();
    for e in &errors {
        eprint_line(&format!("error: {e}"));
    }
    if images.is_empty() && errors.is_empty() {
        bail!(
            "no AppImage found in {}; the files hold no documents",
            args.files.filename.join(", ")
        );
    }
    for loaded in &images {
        let problems = validation::validate(&loaded.image);
        if problems.is_empty() {
            println(&format!(
                "appimage {:?} is valid",
                input::display_name(loaded)
            ))?;
        } else {
            eprint_line(&input::invalid_report(loaded, &problems));
            ok = false;
        }
    }
    if ok { Ok(()) } else { Err(Reported.into()) }
}

pub fn crd() -> Result<()> {
    println(&appimage::resource::crd_yaml())
}

pub fn completion(shell: Shell) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kubectl-appimage", &mut buf);
    print(&String::from_utf8(buf).context("completion script is not UTF-8")?)
}

pub fn version_text() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

pub fn version(args: &VersionArgs) -> Result<()> {
    let info = serde_json::json!({"name": "kubectl-appimage", "version": version_text()});
    match args.output {
        None => println(&format!("kubectl-appimage version {}", version_text())),
        Some(VersionOutput::Json) => print(&to_json(&info)?),
        Some(VersionOutput::Yaml) => print(&to_yaml(&info)?),
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
}
