//! `--pod-template FILE`: a PodTemplateSpec fragment (YAML or JSON), decoded strictly so a
//! misspelt field is an error rather than silently dropped.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

use super::WorkloadError;
use crate::manifest;

/// Decode one PodTemplateSpec (`metadata`, `spec`), or a `kind: PodTemplate` holding one in
/// `template`. `source_name` names the file in errors.
pub fn parse_pod_template(source_name: &str, text: &str) -> Result<PodTemplateSpec, WorkloadError> {
    let err = |message: String| WorkloadError::PodTemplate {
        source_name: source_name.into(),
        message,
    };
    let docs = manifest::documents(source_name, text).map_err(|e| match e {
        manifest::ManifestError::Syntax { message, .. }
        | manifest::ManifestError::Document { message, .. } => err(message),
    })?;
    let [doc] = docs.as_slice() else {
        return Err(err(format!(
            "holds {} documents; give exactly one PodTemplateSpec (metadata and spec)",
            docs.len()
        )));
    };
    let Value::Object(obj) = &doc.value else {
        return Err(err(
            "is not an object; give a PodTemplateSpec with metadata and spec".into(),
        ));
    };
    let body = match obj.get("kind").and_then(Value::as_str) {
        None => &doc.value,
        Some("PodTemplate") => obj.get("template").ok_or_else(|| {
            err("is a PodTemplate without a template; put metadata and spec under template".into())
        })?,
        Some(other) => {
            return Err(err(format!(
                "is a {other}; give a PodTemplateSpec (metadata and spec) or a PodTemplate"
            )));
        }
    };
    let spec = decode(body).map_err(err)?;
    let meta = spec.metadata.clone().unwrap_or_default();
    for (field, set) in [
        ("metadata.name", meta.name.is_some()),
        ("metadata.generateName", meta.generate_name.is_some()),
        ("metadata.namespace", meta.namespace.is_some()),
    ] {
        if set {
            return Err(err(format!(
                "sets {field}; leave it out: the workload names its Pods and deploy -n sets the namespace"
            )));
        }
    }
    Ok(spec)
}

/// Strict decode: unknown fields and wrong types are errors naming the field path.
fn decode(value: &Value) -> Result<PodTemplateSpec, String> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let spec: PodTemplateSpec = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })?;
    unknown.retain(|p| p != "apiVersion" && p != "kind");
    if let Some(first) = unknown.first().map(|p| field_path(p)) {
        return Err(format!(
            "unknown field \"{first}\"; check its spelling against `kubectl explain pod.spec`"
        ));
    }
    Ok(spec)
}

/// serde_ignored's `spec.?.containers.?.0.?.imag` as kubectl writes it: `spec.containers[0].imag`.
fn field_path(raw: &str) -> String {
    let mut out = String::new();
    for part in raw.split('.').filter(|p| *p != "?") {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_decode_strictly() {
        let spec = parse_pod_template(
            "f.yaml",
            "spec:\n  hostPID: true\n  volumes:\n    - name: data\n      emptyDir: {}\n",
        )
        .unwrap();
        let pod = spec.spec.unwrap();
        assert_eq!(pod.host_pid, Some(true));
        assert_eq!(pod.volumes.unwrap()[0].name, "data");

        let wrapped =
            "kind: PodTemplate\napiVersion: v1\ntemplate:\n  spec:\n    hostNetwork: true\n";
        let spec = parse_pod_template("w.yaml", wrapped).unwrap();
        assert_eq!(spec.spec.unwrap().host_network, Some(true));

        for (text, want) in [
            ("spec:\n  volumez: []\n", "unknown field \"spec.volumez\""),
            ("spec:\n  hostPID: yes please\n", "spec.hostPID"),
            (
                "spec:\n  containers:\n    - name: a\n      imag: x\n",
                "spec.containers[0].imag",
            ),
            ("- a\n", "is not an object"),
            ("kind: Pod\nspec: {}\n", "is a Pod"),
            ("metadata:\n  name: x\n", "sets metadata.name"),
            ("spec: {}\n---\nspec: {}\n", "holds 2 documents"),
            ("spec: [\n", "invalid YAML"),
        ] {
            let err = parse_pod_template("f.yaml", text).unwrap_err().to_string();
            assert!(err.starts_with("pod template f.yaml: "), "{err}");
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
