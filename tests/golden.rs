//! Golden renders of the seed examples: the full injection output, byte for byte.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test --test golden`,
//! then review the diff.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use appimage::injection::{Request, inject};
use appimage::labels;
use appimage::manifest;
use k8s_openapi::api::core::v1::Pod;

fn render(file: &str, role: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/examples/{file}")).unwrap();
    let image = manifest::appimages(file, &text).unwrap().remove(0);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{}-0", image.name()), "namespace": "alice",
                     "labels": {labels::APP_IMAGE: image.name()}},
        "spec": {"containers": []}
    }))
    .unwrap();
    let req = Request {
        namespace: "alice".into(),
        pod_name: format!("{}-0", image.name()),
        role: role.into(),
        task_id: "t1".into(),
        input_config: "{\"sf_datasource_config\":{\"alice\":{\"id\":\"default-data-source\"}}}"
            .into(),
        ..Default::default()
    };
    let out = inject(&image, &pod, &req).unwrap();
    let mut doc = String::new();
    doc.push_str(&serde_yaml_ng::to_string(&out.pod).unwrap());
    for (name, content) in &out.config_files {
        doc.push_str(&format!("---\n# config file {name}\n"));
        doc.push_str(&serde_yaml_ng::to_string(&serde_json::json!({ name: content })).unwrap());
    }
    for s in &out.services {
        doc.push_str("---\n");
        doc.push_str(&serde_yaml_ng::to_string(s).unwrap());
    }
    for p in &out.network_policies {
        doc.push_str("---\n");
        doc.push_str(&serde_yaml_ng::to_string(p).unwrap());
    }
    doc
}

fn check(golden: &str, actual: &str) {
    let path = format!("{}/tests/golden/{golden}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    pretty_assertions::assert_eq!(
        expected,
        actual,
        "golden {golden} differs (UPDATE_GOLDEN=1 to regenerate)"
    );
}

#[test]
fn secretflow_image() {
    check(
        "secretflow-image.yaml",
        &render("secretflow-image.yaml", ""),
    );
}

#[test]
fn secretflow_image_update() {
    check(
        "secretflow-image-update.yaml",
        &render("secretflow-image-update.yaml", ""),
    );
}

#[test]
fn app_template_server() {
    check(
        "app-template-server.yaml",
        &render("app-template.yaml", "server"),
    );
}

#[test]
fn app_template_client() {
    check(
        "app-template-client.yaml",
        &render("app-template.yaml", "client"),
    );
}
