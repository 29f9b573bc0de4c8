//! kubectl's template outputs: `-o jsonpath=TEMPLATE`, `-o custom-columns=SPEC` and
//! `-o go-template=TEMPLATE`, over the document `-o json` prints. JSONPath is evaluated by
//! jsonpath-rust (RFC 9535); kubectl's template syntax around it (`{…}` blocks, `{range}…{end}`,
//! `{"\n"}` literals, `\.` in keys) is translated here. Go templates are gtmpl's.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow};
use clap::ValueEnum;
use clap::builder::PossibleValue;
use jsonpath_rust::JsonPath;
use serde_json::Value;

use crate::output::table;

/// An `-o` value: one of the command's own formats, or a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<F> {
    Format(F),
    Template(Template),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    JsonPath(String),
    /// `(HEADER, path)` pairs.
    CustomColumns(Vec<(String, String)>),
    Go(String),
}

/// Parses `-o`: the command's formats `F`, or `jsonpath=`, `custom-columns=`, `go-template=`.
#[derive(Clone)]
pub struct OutputParser<F>(std::marker::PhantomData<F>);

pub fn output_parser<F>() -> OutputParser<F> {
    OutputParser(std::marker::PhantomData)
}

const TEMPLATES: [&str; 3] = ["jsonpath", "custom-columns", "go-template"];

impl<F: ValueEnum + Clone + Send + Sync + 'static> clap::builder::TypedValueParser
    for OutputParser<F>
{
    type Value = Output<F>;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Output<F>, clap::Error> {
        let text = value.to_string_lossy();
        let invalid = |message: String| {
            let mut e = clap::Error::raw(clap::error::ErrorKind::InvalidValue, message + "\n");
            e = e.with_cmd(cmd);
            e
        };
        let flag = arg.map_or("-o".into(), |a| format!("--{}", a.get_id()));
        match Template::parse(&text) {
            Some(Ok(t)) => return Ok(Output::Template(t)),
            Some(Err(e)) => return Err(invalid(format!("invalid value for {flag}: {e}"))),
            None => {}
        }
        if let Ok(format) = F::from_str(&text, false) {
            return Ok(Output::Format(format));
        }
        let names: Vec<String> = self
            .possible_values()
            .into_iter()
            .flatten()
            .map(|v| v.get_name().to_string())
            .collect();
        Err(invalid(format!(
            "invalid value {text:?} for {flag}: one of {}",
            names.join(", ")
        )))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let own = F::value_variants()
            .iter()
            .filter_map(ValueEnum::to_possible_value);
        let templates = ["jsonpath=", "custom-columns=", "go-template="].map(PossibleValue::new);
        Some(Box::new(own.chain(templates)))
    }
}

impl Template {
    /// `None` when `text` names no template output.
    pub fn parse(text: &str) -> Option<Result<Template, String>> {
        let (kind, body) = text.split_once('=')?;
        if !TEMPLATES.contains(&kind) {
            return None;
        }
        if body.trim().is_empty() {
            return Some(Err(format!(
                "{kind}= needs a template, e.g. {}",
                example(kind)
            )));
        }
        Some(match kind {
            "jsonpath" => parse_jsonpath(body).map(|_| Template::JsonPath(body.to_string())),
            "custom-columns" => columns(body).map(Template::CustomColumns),
            _ => gtmpl::Template::default()
                .parse(body)
                .map(|()| Template::Go(body.to_string()))
                .map_err(|e| format!("go-template: {e}")),
        })
    }

    /// `doc` (what `-o json` prints) through the template; custom columns have a header line
    /// unless `headers` is false.
    pub fn render(&self, doc: &Value, headers: bool) -> Result<String> {
        match self {
            Template::JsonPath(text) => {
                let nodes = parse_jsonpath(text).map_err(|e| anyhow!(e))?;
                let mut out = String::new();
                run(&nodes, doc, &mut out)?;
                Ok(out)
            }
            Template::CustomColumns(cols) => custom_columns(cols, doc, headers),
            Template::Go(text) => {
                let mut out = gtmpl::template(text, gtmpl_value(doc))
                    .map_err(|e| anyhow!("error executing template {text:?}: {e}"))?;
                // kubectl adds no newline either; the shell prompt should not follow on it.
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                Ok(out)
            }
        }
    }
}

fn example(kind: &str) -> &'static str {
    match kind {
        "jsonpath" => "jsonpath='{.items[*].metadata.name}'",
        "custom-columns" => "custom-columns=NAME:.metadata.name",
        _ => "go-template='{{range .items}}{{.metadata.name}}{{\"\\n\"}}{{end}}'",
    }
}

fn columns(spec: &str) -> Result<Vec<(String, String)>, String> {
    spec.split(',')
        .map(|col| {
            let (header, path) = col.split_once(':').ok_or_else(|| {
                format!("custom-columns: {col:?} is not HEADER:JSONPATH, e.g. NAME:.metadata.name")
            })?;
            jsonpath_query(path.trim())?;
            Ok((header.to_string(), path.trim().to_string()))
        })
        .collect()
}

#[derive(Debug)]
enum Node {
    Text(String),
    Path(String),
    Range(String, Vec<Node>),
}

/// kubectl's template: text, `{PATH}`, `{"literal"}`, `{range PATH}…{end}`.
fn parse_jsonpath(text: &str) -> Result<Vec<Node>, String> {
    let mut stack: Vec<(String, Vec<Node>)> = vec![(String::new(), Vec::new())];
    let mut rest = text;
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            push(&mut stack, Node::Text(rest.to_string()));
            break;
        };
        if open > 0 {
            push(&mut stack, Node::Text(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("jsonpath: unclosed {{ in {text:?}"))?;
        let inner = rest[open + 1..open + close].trim();
        rest = &rest[open + close + 1..];
        if let Some(path) = inner.strip_prefix("range ") {
            jsonpath_query(path.trim())?;
            stack.push((path.trim().to_string(), Vec::new()));
        } else if inner == "end" {
            let (path, body) = stack
                .pop()
                .filter(|_| !stack.is_empty())
                .ok_or_else(|| format!("jsonpath: {{end}} without {{range}} in {text:?}"))?;
            push(&mut stack, Node::Range(path, body));
        } else if let Some(literal) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            let unquoted = literal.replace("\\n", "\n").replace("\\t", "\t");
            push(&mut stack, Node::Text(unquoted));
        } else {
            jsonpath_query(inner)?;
            push(&mut stack, Node::Path(inner.to_string()));
        }
    }
    if stack.len() != 1 {
        return Err(format!("jsonpath: {{range}} without {{end}} in {text:?}"));
    }
    Ok(stack.pop().map(|(_, nodes)| nodes).unwrap_or_default())
}

fn push(stack: &mut [(String, Vec<Node>)], node: Node) {
    if let Some((_, nodes)) = stack.last_mut() {
        nodes.push(node);
    }
}

fn run(nodes: &[Node], at: &Value, out: &mut String) -> Result<()> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                let found = select(at, p)?;
                out.push_str(
                    &found
                        .iter()
                        .map(|v| scalar(v))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
            Node::Range(p, body) => {
                for item in select(at, p)? {
                    run(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

/// The values `path` (kubectl's form) selects in `at`; none when a field is missing.
fn select<'a>(at: &'a Value, path: &str) -> Result<Vec<&'a Value>> {
    let query = jsonpath_query(path).map_err(|e| anyhow!(e))?;
    at.query(&query)
        .with_context(|| format!("error executing jsonpath {path:?}"))
}

/// A value as kubectl prints it: strings bare, anything else as JSON.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// kubectl's path (`.a.b[*].c`, `a\.b` for a dot in a key, `@`/`$` roots, an optional `{}`)
/// as an RFC 9535 query: `$['a']['b'][*]['c']`.
fn jsonpath_query(path: &str) -> Result<String, String> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let body = path
        .strip_prefix('$')
        .or_else(|| path.strip_prefix('@'))
        .unwrap_or(path);
    let mut query = String::from("$");
    let mut chars = body.chars().peekable();
    let mut key = String::new();
    let flush = |key: &mut String, query: &mut String| {
        if !key.is_empty() {
            query.push_str(&format!("['{}']", key.replace('\'', "\\'")));
            key.clear();
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => key.extend(chars.next()),
            '.' => flush(&mut key, &mut query),
            '[' => {
                flush(&mut key, &mut query);
                let mut depth = 1;
                query.push('[');
                for c in chars.by_ref() {
                    depth += match c {
                        '[' => 1,
                        ']' => -1,
                        _ => 0,
                    };
                    query.push(c);
                    if depth == 0 {
                        break;
                    }
                }
            }
            c => key.push(c),
        }
    }
    flush(&mut key, &mut query);
    // Checked once here, so a bad path is a usage error before anything is fetched.
    Value::Null
        .query(&query)
        .map_err(|e| format!("jsonpath {path:?} is not a path kubectl would take: {e}"))?;
    Ok(query)
}

fn custom_columns(cols: &[(String, String)], doc: &Value, headers: bool) -> Result<String> {
    // A list's items, one row each; a single object, one row.
    let items: Vec<&Value> = match doc.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().collect(),
        None => vec![doc],
    };
    let mut rows = Vec::new();
    if headers {
        rows.push(cols.iter().map(|(h, _)| h.clone()).collect());
    }
    for item in items {
        let mut row = Vec::new();
        for (_, path) in cols {
            let found = select(item, path)?;
            row.push(if found.is_empty() {
                "<none>".to_string()
            } else {
                found
                    .iter()
                    .map(|v| scalar(v))
                    .collect::<Vec<_>>()
                    .join(",")
            });
        }
        rows.push(row);
    }
    Ok(table(&rows))
}

fn gtmpl_value(v: &Value) -> gtmpl::Value {
    match v {
        Value::Null => gtmpl::Value::Nil,
        Value::Bool(b) => gtmpl::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => gtmpl::Value::from(i),
            (None, Some(f)) => gtmpl::Value::from(f),
            (None, None) => gtmpl::Value::String(n.to_string()),
        },
        Value::String(s) => gtmpl::Value::String(s.clone()),
        Value::Array(items) => gtmpl::Value::Array(items.iter().map(gtmpl_value).collect()),
        Value::Object(map) => gtmpl::Value::Map(
            map.iter()
                .map(|(k, v)| (k.clone(), gtmpl_value(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {"metadata": {"name": "a", "annotations": {"x.io/y": "1"}}, "spec": {"tags": ["t1", "t2"]}},
            {"metadata": {"name": "b"}, "spec": {"tags": []}}]})
    }

    fn render(template: &str) -> String {
        let t = Template::parse(template)
            .expect("a template")
            .expect("valid");
        t.render(&list(), true).expect("renders")
    }

    #[test]
    fn jsonpath_as_kubectl() {
        assert_eq!(render("jsonpath={.items[*].metadata.name}"), "a b");
        assert_eq!(
            render(r#"jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}"#),
            "a\nb\n"
        );
        assert_eq!(
            render(r"jsonpath={.items[0].metadata.annotations.x\.io/y}"),
            "1"
        );
        assert_eq!(
            render("jsonpath=names: {.items[1].metadata.name}"),
            "names: b"
        );
        assert_eq!(render("jsonpath={.items[0].missing}"), "");
        assert_eq!(
            render(r#"jsonpath={.items[?(@.metadata.name=="b")].metadata.name}"#),
            "b"
        );
    }

    #[test]
    fn custom_columns_and_go_template() {
        assert_eq!(
            render("custom-columns=NAME:.metadata.name,TAGS:.spec.tags[*]"),
            "NAME   TAGS\na      t1,t2\nb      <none>\n"
        );
        assert_eq!(
            render("go-template={{range .items}}{{.metadata.name}} {{end}}"),
            "a b \n"
        );
    }

    #[test]
    fn bad_templates_are_usage_errors() {
        let err = |t: &str| Template::parse(t).expect("a template").expect_err("bad");
        assert!(
            err("jsonpath={.items[*]").contains("unclosed {"),
            "{}",
            err("jsonpath={.items[*]")
        );
        assert!(err("jsonpath={range .items[*]}x").contains("{range} without {end}"));
        assert!(err("custom-columns=NAME").contains("is not HEADER:JSONPATH"));
        assert!(err("go-template={{.x").starts_with("go-template:"));
        assert!(err("jsonpath=").contains("needs a template"));
        assert!(Template::parse("yaml").is_none());
    }
}
