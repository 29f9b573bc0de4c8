//! The config-template renderer: `Template::parse` + `render` on fuzzed templates and values.
//!
//! Input: `TEMPLATE 0xFF KEY=VALUE 0xFF KEY=VALUE …` (0xFF never occurs in UTF-8 text).
//! Invariants:
//! - parse never panics; a parse error has line, column >= 1 and a line inside the text;
//! - a parsed template renders with missing keys empty, deterministically, and fails only on
//!   a computed index (`[.KEY...]`, so only when the text has `[.`); strict mode gives the
//!   same text, or names a key the template references, or fails on the same computed index;
//! - a computed index agrees with the written one: `{{{.A[.I]}}}` renders what `{{{.A[n]}}}`
//!   (or `[-n]`) renders for the integer n that I holds, and is an index error exactly when A
//!   is an array and I holds no integer or one out of its range;
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

/// The integer a value holds as an index: a JSON integer (1.0 counts), a JSON string of an
/// integer, or text that is not JSON and reads as one.
fn held_integer(raw: &str) -> Option<i64> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Number(n)) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Ok(Value::String(s)) => s.parse().ok(),
        Ok(_) => None,
        Err(_) => raw.parse().ok(),
    }
}

fn computed_index_invariant(a: &str, i: &str) {
    static T: std::sync::OnceLock<Template> = std::sync::OnceLock::new();
    let t = T.get_or_init(|| Template::parse("index", "{{{.A[.I]}}}").expect("parses"));
    let values: Values = [
        ("A".to_string(), a.to_string()),
        ("I".to_string(), i.to_string()),
    ]
    .into();
    let computed = t.render(&values, MissingKey::Empty);
    let Some(items) = serde_json::from_str::<Value>(a)
        .ok()
        .and_then(|v| v.as_array().cloned())
    else {
        // Not an array: the index is never read, and the query matches nothing.
        assert_eq!(computed, Ok(String::new()), "A={a:?} I={i:?}");
        return;
    };
    let n = held_integer(i);
    let in_range = n.is_some_and(|n| {
        let len = items.len() as i128;
        (-len..len).contains(&i128::from(n))
    });
    match (n, computed) {
        (Some(n), Ok(out)) if in_range => {
            let written = if n >= 0 {
                format!("[{n}]")
            } else {
                format!("[-{}]", n.unsigned_abs())
            };
            let literal = appimage::render::render(
                "literal",
                &format!("{{{{{{.A{written}}}}}}}"),
                &values,
                MissingKey::Empty,
            );
            assert_eq!(literal, Ok(out), "A={a:?} I={i:?}");
        }
        (_, Err(RenderError::Index { .. })) if !in_range => {}
        (n, other) => panic!("A={a:?} I={i:?} (index {n:?}, in range {in_range}): {other:?}"),
    }
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
            let lenient = t.render(&values, MissingKey::Empty);
            assert_eq!(t.render(&values, MissingKey::Empty), lenient);
            if let Err(e) = &lenient {
                assert!(
                    matches!(e, RenderError::Index { .. }),
                    "lenient render failed: {e}"
                );
                assert!(
                    text.contains("[."),
                    "index error without an index query: {e}"
                );
            }
            match (t.render(&values, MissingKey::Error), &lenient) {
                (Ok(strict), Ok(lenient)) => assert_eq!(&strict, lenient),
                (Err(RenderError::MissingKey { key, line, .. }), _) => {
                    let var = key.split(['.', '[']).next().unwrap_or(&key);
                    assert!(keys.iter().any(|k| k == var), "{key} not among {keys:?}");
                    assert!(line >= 1);
                }
                (Err(e @ RenderError::Index { .. }), Err(l)) => assert_eq!(&e, l),
                (strict, lenient) => panic!("strict {strict:?} but lenient {lenient:?}"),
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

    let mut parts = values.values();
    if let (Some(a), Some(i)) = (parts.next(), parts.next()) {
        computed_index_invariant(a, i);
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
