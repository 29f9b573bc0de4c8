//! Reading AppImages from manifest text: multi-document YAML, JSON, or a `List`.
//! Errors name the document and the field path, like kubectl's strict decoding.

use serde::Deserialize;
use serde_json::Value;

use crate::resource::{AppImage, GROUP, KIND, VERSION};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("{source_name}, document {index}: {message}")]
    Document {
        source_name: String,
        index: usize,
        message: String,
    },
}

/// One document of a manifest, as JSON, with its 1-based position.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub index: usize,
    pub value: Value,
}

/// Bracket depth past which YAML is refused before parsing: the YAML parser takes
/// super-linear time on deep flow collections before its own limit (128) fires.
const MAX_BRACKET_DEPTH: usize = 1000;

/// The line where `[`/`{` first nest deeper than [`MAX_BRACKET_DEPTH`]. Quotes are not
/// tracked: only text with a thousand unclosed brackets is refused, which parses as nothing valid.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    for b in text.bytes() {
        match b {
            b'\n' => line += 1,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Split `text` into its documents. JSON is taken as one document; `List` kinds are flattened.
pub fn documents(source_name: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let syntax = |message: String| ManifestError::Syntax {
        source_name: source_name.into(),
        message,
    };
    let mut raw = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let v: Value =
            serde_json::from_str(text).map_err(|e| syntax(format!("invalid JSON: {e}")))?;
        match v {
            Value::Array(items) => raw.extend(items),
            v => raw.push(v),
        }
    } else {
        if let Some(line) = too_deep(text) {
            return Err(syntax(format!(
                "invalid YAML: brackets nest deeper than {MAX_BRACKET_DEPTH} levels at line {line}; a manifest may nest at most 128 levels"
            )));
        }
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let v = Value::deserialize(doc).map_err(|e| syntax(format!("invalid YAML: {e}")))?;
            if !v.is_null() {
                raw.push(v);
            }
        }
    }
    let mut out = Vec::new();
    for v in raw {
        let is_list = v
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k == "List" || k.ends_with("List"));
        match (is_list, v) {
            (true, Value::Object(mut m)) => match m.remove("items") {
                Some(Value::Array(items)) => out.extend(items),
                _ => out.push(Value::Object(m)),
            },
            (_, v) => out.push(v),
        }
    }
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(i, value)| Document {
            index: i + 1,
            value,
        })
        .collect())
}

/// Decode one document as an AppImage, rejecting other kinds and unknown fields.
pub fn appimage(source_name: &str, doc: &Document) -> Result<AppImage, ManifestError> {
    let err = |message: String| ManifestError::Document {
        source_name: source_name.into(),
        index: doc.index,
        message,
    };
    let Value::Object(obj) = &doc.value else {
        return Err(err("is not an object; expected an AppImage manifest".into()));
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let want = format!("{GROUP}/{VERSION}");
    if kind != KIND || api_version != want {
        let shown = |s: &str| {
            if s.is_empty() {
                "(missing)".to_string()
            } else {
                s.to_string()
            }
        };
        return Err(err(format!(
            "is apiVersion {} kind {}; expected apiVersion {want} kind {KIND}",
            shown(api_version),
            shown(kind)
        )));
    }
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(&doc.value, &mut record);
    let image: AppImage = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            err(inner)
        } else {
            err(format!("{path}: {inner}"))
        }
    })?;
    // The derive reads apiVersion and kind itself (checked above).
    unknown.retain(|p| p != "apiVersion" && p != "kind");
    if let Some(first) = unknown.first() {
        return Err(err(format!(
            "unknown field \"{first}\"; check its spelling against `kubectl explain appimage` or `kubectl appimage crd`"
        )));
    }
    Ok(image)
}

/// Every AppImage in `text`.
pub fn appimages(source_name: &str, text: &str) -> Result<Vec<AppImage>, ManifestError> {
    documents(source_name, text)?
        .iter()
        .map(|d| appimage(source_name, d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_brackets_are_refused_before_parsing() {
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = documents("deep.yaml", &deep).unwrap_err().to_string();
        assert!(err.contains("deeper than 1000 levels at line 1"), "{err}");
        // Balanced template braces in long text are fine.
        let many = format!("a: |\n  {}\n", "{{{.X}}} ".repeat(10_000));
        assert_eq!(documents("t.yaml", &many).expect("parses").len(), 1);
    }
}
