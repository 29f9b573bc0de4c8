//! The AppImages the scenarios use: the seed, copies of it, and a large one.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use appimage::manifest;
use appimage::resource::{
    AppImage, ConfigVolumeMount, Container, ContainerPort, DeployTemplate, Ingress, IngressFrom,
    IngressPort, NetworkPolicy, PodSpec, PortProtocol, PortScope, RestartPolicy,
};
use k8s_openapi::api::core::v1::EnvVar;

/// The seed example's path in the repository.
pub const SEED_FILE: &str = "examples/secretflow-image.yaml";

/// Containers, ports and config bytes of [`large`].
pub const LARGE_CONTAINERS: usize = 20;
pub const LARGE_PORTS: usize = 50;
pub const LARGE_CONFIG_FILES: usize = 16;
pub const LARGE_CONFIG_BYTES: usize = 64 * 1024;

/// The seed AppImage (examples/secretflow-image.yaml), renamed to `name`.
pub fn seed(root: &Path, name: &str) -> anyhow::Result<AppImage> {
    let path = root.join(SEED_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut image = manifest::appimages(SEED_FILE, &text)?
        .into_iter()
        .next()
        .with_context(|| format!("{SEED_FILE} holds no AppImage"))?;
    image.metadata.name = Some(name.to_string());
    Ok(image)
}

/// A config template of exactly `size` bytes: JSON that uses a few render variables and is
/// padded with literal text. File 0 also carries the cluster definition and the ports.
fn config_template(index: usize, size: usize) -> String {
    let mut text = String::from("{\n");
    text.push_str("  \"task_id\": \"{{.TASK_ID}}\",\n");
    text.push_str("  \"domain\": \"{{.KUSCIA_DOMAIN_ID}}\",\n");
    text.push_str(&format!("  \"file\": \"conf-{index:02}\",\n"));
    if index == 0 {
        text.push_str("  \"cluster_def\": \"{{.TASK_CLUSTER_DEFINE}}\",\n");
        text.push_str("  \"allocated_ports\": \"{{.ALLOCATED_PORTS}}\",\n");
    }
    let tail = "  \"end\": true\n}\n";
    let mut line = 0;
    loop {
        let entry = format!("  \"pad_{line:03}\": \"{}\",\n", "x".repeat(48));
        if text.len() + entry.len() + tail.len() > size {
            break;
        }
        text.push_str(&entry);
        line += 1;
    }
    // Fill the remainder exactly with spaces (still valid JSON).
    let fill = size - text.len() - tail.len();
    text.push_str(&" ".repeat(fill));
    text.push_str(tail);
    debug_assert_eq!(text.len(), size);
    text
}

/// A large AppImage: one deploy template of 20 containers with 50 ports among them (scopes
/// Cluster, Domain and Local in turn) and 64 KiB of config templates in 16 files, each mounted
/// into two containers.
pub fn large(name: &str) -> AppImage {
    let file_size = LARGE_CONFIG_BYTES / LARGE_CONFIG_FILES;
    let config_templates: BTreeMap<String, String> = (0..LARGE_CONFIG_FILES)
        .map(|i| (format!("conf-{i:02}.json"), config_template(i, file_size)))
        .collect();
    let scopes = [PortScope::Cluster, PortScope::Domain, PortScope::Local];
    let containers = (0..LARGE_CONTAINERS)
        .map(|c| {
            let ports = (0..LARGE_PORTS)
                .filter(|p| p % LARGE_CONTAINERS == c)
                .map(|p| ContainerPort {
                    name: format!("p{p:02}"),
                    port: None,
                    protocol: if p % 2 == 0 {
                        PortProtocol::GRPC
                    } else {
                        PortProtocol::HTTP
                    },
                    scope: scopes[p % scopes.len()],
                })
                .collect();
            let mounts = [c % LARGE_CONFIG_FILES, (c + 1) % LARGE_CONFIG_FILES]
                .into_iter()
                .map(|f| ConfigVolumeMount {
                    mount_path: format!("./etc/conf-{f:02}.json"),
                    sub_path: format!("conf-{f:02}.json"),
                })
                .collect();
            Container {
                name: format!("c{c:02}"),
                command: vec!["sh".into(), "-c".into(), format!("exec /app/run --id {c}")],
                working_dir: Some("/work".into()),
                config_volume_mounts: mounts,
                ports,
                env: vec![
                    EnvVar {
                        name: "APP_COMPONENT".into(),
                        value: Some(format!("component-{c}")),
                        ..EnvVar::default()
                    },
                    EnvVar {
                        name: "APP_LOG_LEVEL".into(),
                        value: Some("info".into()),
                        ..EnvVar::default()
                    },
                ],
                ..Container::default()
            }
        })
        .collect();
    let mut image = AppImage::new(
        name,
        appimage::resource::AppImageSpec {
            config_templates,
            deploy_templates: vec![DeployTemplate {
                name: "large".into(),
                role: None,
                replicas: Some(1),
                network_policy: Some(NetworkPolicy {
                    ingresses: vec![Ingress {
                        from: IngressFrom {
                            roles: vec!["peer".into()],
                        },
                        ports: vec![
                            IngressPort { port: "p00".into() },
                            IngressPort { port: "p01".into() },
                        ],
                    }],
                }),
                spec: PodSpec {
                    restart_policy: RestartPolicy::Never,
                    containers,
                    affinity: None,
                },
            }],
            image: appimage::resource::ImageInfo {
                name: "secretflow/large-bench".into(),
                tag: "v1".into(),
                id: None,
                sign: None,
            },
        },
    );
    image.metadata.name = Some(name.to_string());
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use appimage::injection::{Request, inject};
    use k8s_openapi::api::core::v1::Pod;

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn large_image_is_valid_and_as_large_as_stated() {
        let image = large("big");
        assert_eq!(appimage::validation::validate(&image), []);
        let spec = &image.spec.deploy_templates[0].spec;
        assert_eq!(spec.containers.len(), LARGE_CONTAINERS);
        let ports: usize = spec.containers.iter().map(|c| c.ports.len()).sum();
        assert_eq!(ports, LARGE_PORTS);
        let bytes: usize = image.spec.config_templates.values().map(String::len).sum();
        assert_eq!(bytes, LARGE_CONFIG_BYTES);
    }

    #[test]
    fn large_image_injects() {
        let image = large("big");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {appimage::labels::APP_IMAGE: "big"}},
            "spec": {"containers": []}
        }))
        .unwrap();
        let req = Request::from_pod(&pod, "ns", "p").unwrap();
        let injection = inject(&image, &pod, &req).unwrap();
        assert_eq!(
            injection.pod.spec.unwrap().containers.len(),
            LARGE_CONTAINERS
        );
    }

    #[test]
    fn seed_loads() {
        let image = seed(&root(), "copy-1").unwrap();
        assert_eq!(image.metadata.name.as_deref(), Some("copy-1"));
        assert_eq!(appimage::validation::validate(&image), []);
    }
}
