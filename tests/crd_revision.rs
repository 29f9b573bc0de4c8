//! The committed AppImageRevision CRD is exactly what the Rust type generates.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

const COMMITTED: &str =
    "charts/appimage-webhook/crds/appimagerevisions.appimage.kuscia.secretflow.yaml";

#[test]
fn committed_revision_crd_matches_the_type() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    let fresh = appimage::revision::crd_yaml();
    if std::env::var_os("UPDATE_CRD").is_some() {
        std::fs::write(&path, &fresh).expect("write CRD");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{COMMITTED} is stale: regenerate it with `UPDATE_CRD=1 cargo test --test crd_revision` and commit it"
    );
}

#[test]
fn revision_crd_is_cluster_scoped_immutable_and_selectable_by_appimage() {
    let crd = appimage::revision::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some(appimage::revision::RESOURCE)
    );
    assert_eq!(crd.spec.scope, "Cluster");
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    let fields: Vec<&str> = v
        .selectable_fields
        .iter()
        .flatten()
        .map(|f| f.json_path.as_str())
        .collect();
    assert_eq!(fields, [".spec.appImage"]);
    let schema = serde_json::to_value(v.schema.as_ref().unwrap()).unwrap();
    let rule = &schema["openAPIV3Schema"]["x-kubernetes-validations"][0]["rule"];
    assert!(rule.as_str().unwrap().contains("oldSelf.spec"), "{rule}");
    let template = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["template"];
    assert!(template["properties"]["deployTemplates"].is_object());
}
