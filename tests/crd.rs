//! The committed CRD is exactly what the Rust types generate.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use appimage::resource::crd_yaml;

const COMMITTED: &str = "charts/appimage-webhook/crds/appimages.kuscia.secretflow.yaml";

#[test]
fn committed_crd_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    let fresh = crd_yaml();
    if std::env::var_os("UPDATE_CRD").is_some() {
        std::fs::write(&path, &fresh).expect("write CRD");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{COMMITTED} is stale: regenerate it with `UPDATE_CRD=1 cargo test --test crd` \
         (or `kubectl appimage crd > {COMMITTED}`) and commit it"
    );
}

#[test]
fn crd_identity_columns_and_enums() {
    let crd = appimage::resource::crd();
    let spec = &crd.spec;
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("appimages.kuscia.secretflow")
    );
    assert_eq!(spec.group, "kuscia.secretflow");
    assert_eq!(spec.scope, "Cluster");
    assert_eq!(
        spec.names.short_names.as_deref(),
        Some(&["aimg".to_string()][..])
    );
    let v = &spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    let cols: Vec<&str> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, ["Image", "Tag", "Roles", "Age"]);
    let schema = serde_json::to_value(v.schema.as_ref().unwrap()).unwrap();
    let port = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["deployTemplates"]["items"]
        ["properties"]["spec"]["properties"]["containers"]["items"]["properties"]["ports"]["items"];
    assert_eq!(
        port["properties"]["protocol"]["enum"],
        serde_json::json!(["HTTP", "GRPC", "TCP", "UDP"])
    );
    assert_eq!(port["properties"]["protocol"]["default"], "HTTP");
    assert_eq!(
        port["properties"]["scope"]["enum"],
        serde_json::json!(["Cluster", "Domain", "Local"])
    );
    assert_eq!(port["properties"]["scope"]["default"], "Local");
    assert_eq!(port["required"], serde_json::json!(["name"]));
    let image = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["image"];
    assert_eq!(image["required"], serde_json::json!(["name", "tag"]));
}

const BATCH_COMMITTED: &str =
    "charts/appimage-webhook/crds/batchdeployments.appimage.kuscia.secretflow.yaml";

#[test]
fn committed_batch_crd_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(BATCH_COMMITTED);
    let fresh = appimage::batch::crd_yaml();
    if std::env::var_os("UPDATE_CRD").is_some() {
        std::fs::write(&path, &fresh).expect("write CRD");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{BATCH_COMMITTED} is stale: regenerate it with `UPDATE_CRD=1 cargo test --test crd` \
         (or `kubectl appimage batch crd > {BATCH_COMMITTED}`) and commit it"
    );
}

#[test]
fn batch_crd_identity_columns_and_rules() {
    let crd = appimage::batch::crd();
    let spec = &crd.spec;
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("batchdeployments.appimage.kuscia.secretflow")
    );
    assert_eq!(spec.group, "appimage.kuscia.secretflow");
    assert_eq!(spec.scope, "Namespaced");
    assert_eq!(
        spec.names.short_names.as_deref(),
        Some(&["bd".to_string()][..])
    );
    let v = &spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let cols: Vec<(&str, &str)> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        cols,
        [
            ("Phase", ".status.phase"),
            ("Succeeded", ".status.summary"),
            ("Failed", ".status.counts.failed"),
            ("Age", ".metadata.creationTimestamp")
        ]
    );
    let schema = serde_json::to_value(v.schema.as_ref().unwrap()).unwrap();
    let root = &schema["openAPIV3Schema"];
    let rule = root["x-kubernetes-validations"][0]["rule"]
        .as_str()
        .unwrap();
    assert!(
        rule.contains("nodeNames") && rule.contains("nodeSelector"),
        "{rule}"
    );
    let props = &root["properties"]["spec"]["properties"];
    assert_eq!(
        props["restartPolicy"]["enum"],
        serde_json::json!(["Always", "OnFailure", "Never", null])
    );
    assert_eq!(
        props["podTemplate"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
    let phases = &root["properties"]["status"]["properties"]["phase"]["enum"];
    // IEF's eight, and PrePulling (issue 29's image pre-pull).
    assert_eq!(phases.as_array().unwrap().len(), 9);
    assert!(
        phases.as_array().unwrap().contains(&"PrePulling".into()),
        "{phases}"
    );
    let pre_pull = &props["prePull"]["properties"];
    assert_eq!(pre_pull["concurrency"]["minimum"].as_f64(), Some(1.0));
    assert!(pre_pull["failureTolerance"]["x-kubernetes-int-or-string"] == true);
}

const ROLLOUT_COMMITTED: &str =
    "charts/appimage-webhook/crds/appimagerollouts.appimage.kuscia.secretflow.yaml";

#[test]
fn committed_rollout_crd_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(ROLLOUT_COMMITTED);
    let fresh = appimage::progressive::crd_yaml();
    if std::env::var_os("UPDATE_CRD").is_some() {
        std::fs::write(&path, &fresh).expect("write CRD");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{ROLLOUT_COMMITTED} is stale: regenerate it with `UPDATE_CRD=1 cargo test --test crd` \
         (or `kubectl appimage crd`) and commit it"
    );
}

#[test]
fn the_rollout_crd_is_cluster_scoped_with_a_status_and_refuses_no_waves() {
    let crd = appimage::progressive::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some(appimage::progressive::RESOURCE)
    );
    assert_eq!(crd.spec.scope, "Cluster");
    let version = &crd.spec.versions[0];
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some())
    );
    let yaml = appimage::progressive::crd_yaml();
    assert!(yaml.contains("size(self.spec.waves) > 0"), "{yaml}");
}
