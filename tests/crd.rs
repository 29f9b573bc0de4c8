//! The committed CRD is exactly what the Rust types generate.

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
