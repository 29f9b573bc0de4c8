//! Revisions: every distinct AppImage spec is identified by the sha256 of its canonical JSON,
//! so equal specs share a revision whatever their key order or formatting.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::resource::AppImageSpec;

/// Lower-case hex sha256 of the spec's [`canonical_json`].
pub fn revision_hash(spec: &AppImageSpec) -> String {
    let value = serde_json::to_value(spec).unwrap_or(Value::Null);
    base16ct::lower::encode_string(&Sha256::digest(canonical_json(&value).as_bytes()))
}

/// Compact JSON with every object's keys sorted, whatever order the map kept them in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}
