//! The config-template renderer: `Template::parse` + `render` on fuzzed templates and values.
//!
//! Input: `TEMPLATE 0xFF KEY=VALUE 0xFF KEY=VALUE …` (0xFF never occurs in UTF-8 text).
//! Invariants:
//! - parse never panics; a parse error has line, column >= 1 and a line inside the text;
//! - a parsed template renders with missing keys empty, always, and deterministically;
//!   strict mode either gives the same text or names a key the template references;
//! - every value (and the template text itself, taken as a value) put through `{{.K}}`
//!   inside a JSON string gives JSON that parses, holds the value verbatim and no other key;
//!   the same inside a YAML double-quoted scalar.
#![no_main]

use appimage::render::{MissingKey, RenderError, Template, Values, escape_json_string};
use appimage_fuzz::split;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const JSON_TEMPLATE: &str = r#"{"a": "{{.K}}", "b": 1, "c": "x{{.K}}y{{ .K }}z"}"#;
const YAML_TEMPLATE: &str = "a: \"{{.K}}\"\nb: 1\n";

fn json_string_invariant(value: &str) {
    static T: std::sync::OnceLock<Template> = std::sync::OnceLock::new();
    let t =
        T.get_or_init(|| Template::parse("json", JSON_TEMPLATE).expect("fixed template parses"));
    let values: Values = [("K".to_string(), value.to_string())].into();
    let out = t.render(&values, MissingKey::Error).expect("all keys set");
    let json: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("rendered JSON does not parse ({e}): {out:?}"));
    let obj = json.as_object().expect("an object");
    assert_eq!(obj.len(), 3, "extra keys injected: {out:?}");
    assert_eq!(
        obj["a"].as_str(),
        Some(value),
        "value not verbatim: {out:?}"
    );
    assert_eq!(obj["b"].as_i64(), Some(1), "b changed: {out:?}");
    assert_eq!(
        obj["c"].as_str().map(str::to_owned),
        Some(format!("x{value}y{value}z"))
    );
    // The escape alone is a JSON string body.
    let quoted = format!("\"{}\"", escape_json_string(value));
    let back: String = serde_json::from_str(&quoted).expect("escape is a JSON string body");
    assert_eq!(back, value);
}

fn yaml_string_invariant(value: &str) {
    let values: Values = [("K".to_string(), value.to_string())].into();
    let out = appimage::render::render("yaml", YAML_TEMPLATE, &values, MissingKey::Error)
        .expect("fixed template renders");
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out)
        .unwrap_or_else(|e| panic!("rendered YAML does not parse ({e}): {out:?}"));
    let map = yaml.as_mapping().expect("a mapping");
    assert_eq!(map.len(), 2, "extra keys injected: {out:?}");
    assert_eq!(
        map.get("a").and_then(|a| a.as_str()),
        Some(value),
        "{out:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let parts = split(data);
    let text = &parts[0];
    let mut values = Values::new();
    for part in &parts[1..] {
        let (k, v) = part.split_once('=').unwrap_or((part.as_str(), ""));
        values.insert(k.to_string(), v.to_string());
    }

    match Template::parse("fuzz.conf", text) {
        Ok(t) => {
            let keys: Vec<String> = t.keys().into_iter().map(str::to_owned).collect();
            let lenient = t
                .render(&values, MissingKey::Empty)
                .expect("lenient render never fails");
            assert_eq!(t.render(&values, MissingKey::Empty).as_ref(), Ok(&lenient));
            match t.render(&values, MissingKey::Error) {
                Ok(strict) => assert_eq!(strict, lenient),
                Err(RenderError::MissingKey { key, line, .. }) => {
                    let var = key.split(['.', '[']).next().unwrap_or(&key);
                    assert!(keys.iter().any(|k| k == var), "{key} not among {keys:?}");
                    assert!(line >= 1);
                }
                Err(e) => panic!("render gave a parse error: {e}"),
            }
        }
        Err(RenderError::Parse { line, column, .. }) => {
            assert!(line >= 1 && column >= 1);
            assert!(
                line <= text.lines().count().max(1) + 1,
                "line {line} past the end of {text:?}"
            );
        }
        Err(e) => panic!("parse gave a render error: {e}"),
    }

    if data.len() <= 4096 {
        json_string_invariant(text);
        for v in values.values() {
            json_string_invariant(v);
        }
        if let Some(v) = values.values().next() {
            yaml_string_invariant(v);
        } else {
            yaml_string_invariant(text);
        }
    }
});
