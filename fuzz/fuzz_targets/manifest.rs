//! AppImage manifests (multi-document YAML, JSON, Lists): `appimage::manifest::appimages`,
//! then `appimage::validation::validate` and `appimage::injection::inject` on what parses.
//!
//! Invariants:
//! - never a panic; errors render as text;
//! - an AppImage that validation accepts injects into a plain labelled Pod (what validation
//!   passes, admission must be able to do);
//! - an injection succeeds again on the injected Pod, with the same Pod (idempotence), and
//!   for a valid AppImage its Services have valid DNS-1123 label names.
#![no_main]

use appimage::injection::{Request, inject};
use appimage::labels;
use appimage::manifest;
use appimage::naming::dns1123_label_error;
use appimage::validation::validate;
use k8s_openapi::api::core::v1::Pod;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fn pod(image: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "job-0", "namespace": "alice",
            "labels": {labels::APP_IMAGE: image},
            "annotations": {labels::OPT_TASK_ID: "t1"}
        },
        "spec": {"containers": []}
    }))
    .expect("fixture Pod")
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let images = match manifest::appimages("fuzz.yaml", &text) {
        Ok(images) => images,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    for image in images {
        let errors = validate(&image);
        for e in &errors {
            assert!(!e.path.is_empty() && !e.to_string().is_empty());
        }
        let original = pod(image.name());
        let req = Request::from_pod(&original, "alice", "job-0").expect("fixture options");
        let injection = match inject(&image, &original, &req) {
            Ok(i) => i,
            Err(e) => {
                assert!(
                    !errors.is_empty(),
                    "validation accepted an AppImage that cannot be injected: {e}\n{image:?}"
                );
                continue;
            }
        };
        serde_json::to_value(&injection.pod).expect("injected Pod encodes");
        // Names are only promised for what validation accepts (a port name is checked there).
        if errors.is_empty() {
            for s in &injection.services {
                let name = s.metadata.name.as_deref().unwrap_or_default();
                assert_eq!(dns1123_label_error(name), None, "Service name {name:?}");
            }
        }
        // Idempotence is promised for what validation accepts too: an AppImage with two
        // containers of one name (refused at create) re-injects against the first of them.
        if !errors.is_empty() {
            continue;
        }
        let again_req =
            Request::from_pod(&injection.pod, "alice", "job-0").expect("options unchanged");
        let again = inject(&image, &injection.pod, &again_req)
            .unwrap_or_else(|e| panic!("re-injection failed: {e}"));
        assert_eq!(again.pod, injection.pod, "injection is not idempotent");
    }
});
