//! Config-template renderer: the subset of Go text/template that Kuscia's AppImage
//! `configTemplates` use, with escaping that is always valid JSON and YAML.
//!
//! - Text outside actions is copied byte for byte; a lone `}}` or `}}}` is text (as in Go,
//!   and JSON closes nested objects with `}}}`).
//! - `{{.KEY}}` (KEY = `[A-Za-z_][A-Za-z0-9_]*`) inserts the value escaped for the inside of a
//!   JSON or YAML double-quoted string, see [`escape_json_string`].
//! - `{{{.KEY<path>}}}` parses the value as JSON and applies a path of `.name`, `[N]`, `[-N]`
//!   (from the end, N up to the length), `[key=value]` (first object
//!   element whose field equals the text) and `[.KEY<path>]`: an index that is itself a path
//!   query into the same values, evaluated first (Kuscia's
//!   `parties[.TASK_CLUSTER_DEFINE.selfPartyIdx]`). A computed index that is not an integer or
//!   is out of range is an error ([`RenderError::Index`]) even in lenient mode.
//!   Strings come out raw, numbers and booleans as serde_json prints them, null as nothing,
//!   objects and arrays as compact JSON with keys SORTED (no `preserve_order`). A value that
//!   is not JSON comes out raw when the path is empty, and counts as missing otherwise.
//! - `{{/* comment */}}` is dropped; `{{"literal"}}` writes a Go string literal, e.g. `{{"{{"}}`.
//! - Go trim markers: `{{- ` trims the whitespace before the action, ` -}}` the one after.
//! - Anything else inside `{{ }}` is a parse error. A key with no value (or a path query that
//!   matches nothing) renders as nothing, or is an error with [`MissingKey::Error`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

/// Render values: variable name -> string value.
pub type Values = BTreeMap<String, String>;

/// What a reference to a key without a value does (Go's `missingkey` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Render it as nothing, as Kuscia does.
    #[default]
    Empty,
    /// Fail with [`RenderError::MissingKey`] (strict mode).
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template text is not in the supported language; line and column are 1-based,
    /// the column counted in characters.
    #[error("config template {template:?}, line {line}, column {column}: {message}")]
    Parse {
        template: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Strict mode only. `key` is the variable name, or the whole query (`KEY.path`) when
    /// the variable has a value but the path matches nothing in it.
    #[error("{}", missing_key_message(.template, .key, *.line))]
    MissingKey {
        template: String,
        key: String,
        line: usize,
    },
    /// A computed index `[.KEY<path>]` gave a value that is not an integer, or one out of
    /// range for the array; `query` is the whole query (`KEY.path`). In every mode.
    #[error(
        "config template {template:?}: path query {query} (line {line}): {message}; fix the value or the query"
    )]
    Index {
        template: String,
        query: String,
        line: usize,
        message: String,
    },
}

fn missing_key_message(template: &str, key: &str, line: usize) -> String {
    if key.contains(['.', '[']) {
        let var = key.split(['.', '[']).next().unwrap_or(key);
        format!(
            "config template {template:?}: path query {key} (line {line}) matches nothing: \
             {var} is not JSON or has nothing at that path; fix the path or the value, \
             or render without strict mode"
        )
    } else {
        format!(
            "config template {template:?}: no value for key {key} (line {line}); \
             set it (e.g. --set {key}=...) or render without strict mode"
        )
    }
}

const SUPPORTED: &str =
    "only {{.KEY}}, {{{.KEY.path}}}, {{/* comments */}} and {{\"literals\"}} are supported";

/// A parsed config template; cheap to render many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    name: String,
    segments: Vec<Segment>,
}

/// Kept small (24 bytes): the webhook holds every AppImage's parsed templates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(Box<str>),
    /// Kept apart from `Text` because trim markers must not trim literal output.
    Literal(Box<str>),
    Var {
        key: Box<str>,
        line: u32,
    },
    Query(Box<Query>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    key: String,
    path: Vec<Step>,
    /// `KEY.path` as written, for the strict-mode error.
    source: String,
    line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
    /// `[-N]`, N >= 1.
    FromEnd(usize),
    Match {
        key: String,
        value: String,
    },
    /// `[.KEY<path>]`: the index is this query's result (its `line` is the outer query's).
    Nested(Box<Query>),
}

/// How deep `[.KEY[.KEY[...]]]` may nest: enough for any real template, and it bounds the
/// parser's recursion.
const MAX_NESTING: usize = 4;

impl Template {
    pub fn parse(name: &str, text: &str) -> Result<Template, RenderError> {
        let parser = Parser {
            name,
            src: text,
            segments: Vec::new(),
            trim_next: false,
            line_off: 0,
            line: 1,
        };
        Ok(Template {
            name: name.to_owned(),
            segments: parser.run()?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Variable names referenced, sorted, deduplicated.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: BTreeSet<&str> = BTreeSet::new();
        for s in &self.segments {
            match s {
                Segment::Var { key, .. } => {
                    keys.insert(key);
                }
                Segment::Query(q) => query_keys(q, &mut keys),
                Segment::Text(_) | Segment::Literal(_) => {}
            }
        }
        keys.into_iter().collect()
    }

    pub fn render(&self, values: &Values, missing: MissingKey) -> Result<String, RenderError> {
        let mut out = String::new();
        // Each JSON value a query reads is parsed once per render, before any lookup, so
        // that a computed index can read another value while a lookup holds the first.
        let mut parsed: Parsed = BTreeMap::new();
        for seg in &self.segments {
            if let Segment::Query(q) = seg {
                parse_query_values(q, values, &mut parsed);
            }
        }
        for seg in &self.segments {
            match seg {
                Segment::Text(t) | Segment::Literal(t) => out.push_str(t),
                Segment::Var { key, line } => match values.get(&**key) {
                    Some(v) => escape_into(&mut out, v),
                    None => self.missing(missing, key, *line as usize)?,
                },
                Segment::Query(query) => {
                    let Query {
                        key,
                        path,
                        source,
                        line,
                    } = &**query;
                    let Some(raw) = values.get(key) else {
                        self.missing(missing, key, *line)?;
                        continue;
                    };
                    let found = match parsed.get(key.as_str()) {
                        Some((_, Some(v))) => lookup(v, path, &parsed)
                            .map_err(|message| RenderError::Index {
                                template: self.name.clone(),
                                query: source.clone(),
                                line: *line,
                                message,
                            })?
                            .map(|v| write_value(&mut out, v)),
                        _ if path.is_empty() => {
                            out.push_str(raw);
                            Some(())
                        }
                        _ => None,
                    };
                    if found.is_none() {
                        self.missing(missing, source, *line)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// This template with the values of `fixed` written in, for values of the keys `later`
    /// names that come per render: rendering the result leniently with those alone gives what
    /// rendering `self` leniently with both gives (a `later` key wins over `fixed`). `None` when
    /// a query reads keys of both kinds, or fails on `fixed` alone (it must fail per render).
    pub fn partial(&self, fixed: &Values, later: impl Fn(&str) -> bool) -> Option<Template> {
        let mut segments: Vec<Segment> = Vec::with_capacity(self.segments.len());
        for seg in &self.segments {
            let text = match seg {
                Segment::Text(t) | Segment::Literal(t) => t.to_string(),
                Segment::Var { key, .. } if later(key) => {
                    segments.push(seg.clone());
                    continue;
                }
                Segment::Var { key, .. } => fixed.get(&**key).map_or_else(String::new, |v| {
                    let mut out = String::new();
                    escape_into(&mut out, v);
                    out
                }),
                Segment::Query(q) => {
                    let mut keys = BTreeSet::new();
                    query_keys(q, &mut keys);
                    let per_render = keys.iter().filter(|k| later(k)).count();
                    if per_render == keys.len() {
                        segments.push(seg.clone());
                        continue;
                    }
                    if per_render > 0 {
                        return None;
                    }
                    let one = Template {
                        name: self.name.clone(),
                        segments: vec![seg.clone()],
                    };
                    one.render(fixed, MissingKey::Empty).ok()?
                }
            };
            // Adjacent text is one segment: fewer pushes per render.
            match segments.last_mut() {
                Some(Segment::Text(prev)) => *prev = format!("{prev}{text}").into(),
                _ if text.is_empty() => {}
                _ => segments.push(Segment::Text(text.into())),
            }
        }
        Some(Template {
            name: self.name.clone(),
            segments,
        })
    }

    fn missing(&self, mode: MissingKey, key: &str, line: usize) -> Result<(), RenderError> {
        match mode {
            MissingKey::Empty => Ok(()),
            MissingKey::Error => Err(RenderError::MissingKey {
                template: self.name.clone(),
                key: key.to_owned(),
                line,
            }),
        }
    }
}

/// Convenience: parse then render.
pub fn render(
    name: &str,
    text: &str,
    values: &Values,
    missing: MissingKey,
) -> Result<String, RenderError> {
    Template::parse(name, text)?.render(values, missing)
}

/// Escape for use inside a JSON double-quoted string (no surrounding quotes). The result
/// is also valid inside a YAML double-quoted scalar: YAML knows no `\/` and forbids raw
/// C1 controls, U+2028/9, U+FEFF, U+FFFE and U+FFFF, so those become `\uXXXX`.
pub fn escape_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn escape_into(out: &mut String, s: &str) {
    out.reserve(s.len());
    // Copy runs of characters that need no escape in one go: this runs on every admission.
    // Plain ASCII is told by its byte alone; only other characters are decoded.
    let bytes = s.as_bytes();
    let mut clean = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii() && b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f {
            i += 1;
            continue;
        }
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        let width = c.len_utf8();
        let short = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => "",
            _ => {
                i += width;
                continue;
            }
        };
        out.push_str(&s[clean..i]);
        i += width;
        clean = i;
        if short.is_empty() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(short);
        }
    }
    out.push_str(&s[clean..]);
}

/// Variable name -> its text and its value parsed as JSON (`None`: not JSON), for the
/// variables queries read.
type Parsed<'a> = BTreeMap<&'a str, (&'a str, Option<Value>)>;

/// Every variable `q` reads, its computed indexes' too.
fn query_keys<'a>(q: &'a Query, keys: &mut BTreeSet<&'a str>) {
    keys.insert(&q.key);
    for step in &q.path {
        if let Step::Nested(inner) = step {
            query_keys(inner, keys);
        }
    }
}

fn parse_query_values<'a>(q: &'a Query, values: &'a Values, parsed: &mut Parsed<'a>) {
    let mut keys = BTreeSet::new();
    query_keys(q, &mut keys);
    for key in keys {
        if let Some(raw) = values.get(key)
            && !parsed.contains_key(key)
        {
            parsed.insert(key, (raw.as_str(), serde_json::from_str(raw).ok()));
        }
    }
}

/// `path` applied to `v`: `Ok(None)` when it matches nothing, `Err` (a message) when a
/// computed index is not an integer or out of range.
fn lookup<'v>(
    v: &'v Value,
    path: &[Step],
    parsed: &'v Parsed,
) -> Result<Option<&'v Value>, String> {
    let mut v = v;
    for step in path {
        let next = match step {
            Step::Field(name) => v.as_object().and_then(|o| o.get(name)),
            Step::Index(i) => v.as_array().and_then(|a| a.get(*i)),
            Step::FromEnd(n) => v.as_array().and_then(|a| a.get(a.len().checked_sub(*n)?)),
            Step::Match { key, value } => v.as_array().and_then(|a| {
                a.iter()
                    .find(|e| e.get(key).is_some_and(|f| field_matches(f, value)))
            }),
            Step::Nested(q) => match v.as_array() {
                Some(items) => match computed_index(q, parsed)? {
                    Some(i) => Some(index_into(items, i, q)?),
                    None => None,
                },
                None => None,
            },
        };
        match next {
            Some(n) => v = n,
            None => return Ok(None),
        }
    }
    Ok(Some(v))
}

/// The value of the index query `q`: `None` when it matches nothing.
fn computed_index(q: &Query, parsed: &Parsed) -> Result<Option<i64>, String> {
    let raw;
    let found = match parsed.get(q.key.as_str()) {
        Some((_, Some(root))) => match lookup(root, &q.path, parsed)? {
            Some(found) => found,
            None => return Ok(None),
        },
        // A value that is not JSON is its text, as for `{{{.KEY}}}`.
        Some((text, None)) if q.path.is_empty() => {
            raw = Value::String((*text).to_owned());
            &raw
        }
        _ => return Ok(None),
    };
    // As in Kuscia, a number or a string holding an integer; 1.0 counts as 1.
    let index = match found {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    match index {
        Some(i) => Ok(Some(i)),
        None => {
            let mut shown = String::new();
            write_value(&mut shown, found);
            Err(format!(
                "the index [.{}] is {}, not an integer",
                q.source,
                short_quoted(found, &shown)
            ))
        }
    }
}

/// `items[i]`, `i` counted from the end when negative, as a written `[N]` or `[-N]`.
fn index_into<'v>(items: &'v [Value], i: i64, q: &Query) -> Result<&'v Value, String> {
    let len = items.len();
    let at = if i >= 0 {
        usize::try_from(i).ok()
    } else {
        usize::try_from(i.unsigned_abs())
            .ok()
            .and_then(|n| len.checked_sub(n))
    };
    at.and_then(|at| items.get(at)).ok_or_else(|| {
        let valid = match len {
            0 => "the array is empty".to_owned(),
            1 => "the array has 1 element, so use 0 or -1".to_owned(),
            n => format!("the array has {n} elements, so use -{n} to {}", n - 1),
        };
        format!("the index [.{}] is {i}, out of range: {valid}", q.source)
    })
}

/// A value for a message: strings quoted, the rest as JSON, cut to 60 characters.
fn short_quoted(v: &Value, shown: &str) -> String {
    match v {
        Value::String(_) => format!("{:?}", short(shown)),
        Value::Null => "null".to_owned(),
        _ => short(shown),
    }
}

fn field_matches(field: &Value, text: &str) -> bool {
    match field {
        Value::String(s) => s == text,
        Value::Number(n) => n.to_string() == text,
        Value::Bool(b) => (if *b { "true" } else { "false" }) == text,
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Array(_) | Value::Object(_) => {
            if let Ok(s) = serde_json::to_string(v) {
                out.push_str(&s);
            }
        }
    }
}

/// Go's whitespace for trim markers and inside actions.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_space_char(c: char) -> bool {
    u8::try_from(c).is_ok_and(is_space)
}

fn skip_ws(src: &str, mut p: usize) -> usize {
    while src.as_bytes().get(p).is_some_and(|b| is_space(*b)) {
        p += 1;
    }
    p
}

/// Length of a leading `[A-Za-z_][A-Za-z0-9_]*`, 0 if none.
fn ident_len(s: &str) -> usize {
    match s.as_bytes().first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => s
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count(),
        _ => 0,
    }
}

/// Length of a leading `[A-Za-z0-9_-]+`, 0 if none.
fn name_len(s: &str) -> usize {
    s.bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        .count()
}

/// `s` up to its first line break and at most 60 characters, for messages.
fn short(s: &str) -> String {
    let line = s.split('\n').next().unwrap_or(s);
    let mut out: String = line.chars().take(60).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

struct Parser<'a> {
    name: &'a str,
    src: &'a str,
    segments: Vec<Segment>,
    /// Set by ` -}}`: trim the leading whitespace of the next text.
    trim_next: bool,
    line_off: usize,
    line: usize,
}

impl Parser<'_> {
    fn run(mut self) -> Result<Vec<Segment>, RenderError> {
        let src = self.src;
        let mut pos = 0;
        while let Some(i) = src[pos..].find("{{") {
            let start = pos + i;
            let after = &src[start + 2..];
            let triple = after.starts_with('{');
            // Go: `{{-` is a trim marker only when a space follows.
            let trim_left = !triple && matches!(after.as_bytes(), [b'-', s, ..] if is_space(*s));
            self.text(&src[pos..start], trim_left);
            pos = if triple {
                self.query(start)?
            } else {
                self.action(start, trim_left)?
            };
        }
        self.text(&src[pos..], false);
        // Parsed templates live as long as their AppImage in the webhook's cache.
        self.segments.shrink_to_fit();
        Ok(self.segments)
    }

    fn text(&mut self, chunk: &str, trim_end: bool) {
        let mut chunk = chunk;
        if std::mem::take(&mut self.trim_next) {
            chunk = chunk.trim_start_matches(is_space_char);
        }
        if trim_end {
            chunk = chunk.trim_end_matches(is_space_char);
        }
        if !chunk.is_empty() {
            self.segments.push(Segment::Text(chunk.into()));
        }
    }

    /// Line of byte offset `off`; offsets come in increasing order.
    fn line_at(&mut self, off: usize) -> usize {
        match self.src.as_bytes().get(self.line_off..off) {
            Some(b) => self.line += b.iter().filter(|b| **b == b'\n').count(),
            None => {
                let head = self
                    .src
                    .as_bytes()
                    .get(..off)
                    .unwrap_or(self.src.as_bytes());
                self.line = 1 + head.iter().filter(|b| **b == b'\n').count();
            }
        }
        self.line_off = off;
        self.line
    }

    fn err(&self, off: usize, message: String) -> RenderError {
        let before = self.src.get(..off).unwrap_or(self.src);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        RenderError::Parse {
            template: self.name.to_owned(),
            line: 1 + before.matches('\n').count(),
            column: 1 + before[line_start..].chars().count(),
            message,
        }
    }

    /// `}}` or (after some whitespace) `-}}` at `p`: the end offset and whether to trim.
    fn close(&self, p: usize) -> Option<(usize, bool)> {
        let q = skip_ws(self.src, p);
        let rest = &self.src[q..];
        if rest.starts_with("}}") {
            Some((q + 2, false))
        } else if q > p && rest.starts_with("-}}") {
            Some((q + 3, true))
        } else {
            None
        }
    }

    /// Parses the `{{ ... }}` action at `start`; returns the offset after it.
    fn action(&mut self, start: usize, trim_left: bool) -> Result<usize, RenderError> {
        let src = self.src;
        let p = start + if trim_left { 4 } else { 2 };
        if src[p..].starts_with("/*") {
            return self.comment(start, p + 2);
        }
        let q = skip_ws(src, p);
        let rest = &src[q..];
        if let Some(name) = rest.strip_prefix('.') {
            let n = ident_len(name);
            if n > 0 {
                let after = q + 1 + n;
                if let Some((end, trim)) = self.close(after) {
                    let line = self.line_at(start);
                    self.segments.push(Segment::Var {
                        key: name[..n].into(),
                        line: u32::try_from(line).unwrap_or(u32::MAX),
                    });
                    self.trim_next = trim;
                    return Ok(end);
                }
                if src[after..].starts_with('.') {
                    let hint = format!(
                        "field chains are not supported in `{}`; for a path into a JSON value write {{{{{{.{}...}}}}}}",
                        self.snippet(start),
                        &name[..n]
                    );
                    return Err(self.action_err(start, Some(hint)));
                }
            }
        } else if rest.starts_with('"') {
            let (literal, after) = self.literal(start, q)?;
            if let Some((end, trim)) = self.close(after) {
                self.segments.push(Segment::Literal(literal.into()));
                self.trim_next = trim;
                return Ok(end);
            }
        } else if rest.starts_with("/*") {
            let hint = "a comment must start right after `{{` or `{{- ` and end right before `}}` or ` -}}`";
            return Err(self.action_err(start, Some(hint.to_owned())));
        } else if self.close(p).is_some() {
            let hint = format!("empty action `{}`: {SUPPORTED}", self.snippet(start));
            return Err(self.action_err(start, Some(hint)));
        }
        Err(self.action_err(start, None))
    }

    /// The action at `start` up to and including the next `}}`, shortened.
    fn snippet(&self, start: usize) -> String {
        let s = &self.src[start..];
        let end = s
            .get(2..)
            .and_then(|r| r.find("}}"))
            .map_or(s.len(), |i| i + 4);
        short(&s[..end])
    }

    fn action_err(&self, start: usize, message: Option<String>) -> RenderError {
        if !self.src[start + 2..].contains("}}") {
            let msg = format!(
                "unclosed action `{}`: no closing `}}}}`",
                short(&self.src[start..])
            );
            return self.err(start, msg);
        }
        let msg = message.unwrap_or_else(|| {
            format!("unsupported action `{}`: {SUPPORTED}", self.snippet(start))
        });
        self.err(start, msg)
    }

    /// Go comments must end with `*/}}` or `*/ -}}` exactly.
    fn comment(&mut self, start: usize, body: usize) -> Result<usize, RenderError> {
        let src = self.src;
        let Some(i) = src[body..].find("*/") else {
            return Err(self.err(start, "unclosed comment: no closing `*/}}`".to_owned()));
        };
        let q = body + i + 2;
        let rest = &src[q..];
        if rest.starts_with("}}") {
            return Ok(q + 2);
        }
        if matches!(rest.as_bytes(), [s, b'-', b'}', b'}', ..] if is_space(*s)) {
            self.trim_next = true;
            return Ok(q + 4);
        }
        Err(self.err(q, "a comment must end with `*/}}` or `*/ -}}`".to_owned()))
    }

    /// A Go double-quoted string at `q`; returns its value and the offset after it.
    fn literal(&self, start: usize, q: usize) -> Result<(String, usize), RenderError> {
        let body = q + 1;
        let mut out = String::new();
        let mut chars = self.src[body..].char_indices();
        while let Some((i, c)) = chars.next() {
            let c = match c {
                '"' => return Ok((out, body + i + 1)),
                '\n' => break,
                '\\' => {
                    let Some((_, esc)) = chars.next() else { break };
                    let decoded = match esc {
                        'a' => Some('\u{7}'),
                        'b' => Some('\u{8}'),
                        'f' => Some('\u{c}'),
                        'n' => Some('\n'),
                        'r' => Some('\r'),
                        't' => Some('\t'),
                        'v' => Some('\u{b}'),
                        '\\' => Some('\\'),
                        '"' => Some('"'),
                        'u' => hex_char(&mut chars, 4),
                        'U' => hex_char(&mut chars, 8),
                        _ => None,
                    };
                    match decoded {
                        Some(d) => d,
                        None => {
                            let msg = format!(
                                "invalid escape `\\{}` in string literal; supported: \\a \\b \\f \\n \\r \\t \\v \\\\ \\\" \\uXXXX \\UXXXXXXXX",
                                esc.escape_debug()
                            );
                            return Err(self.err(body + i, msg));
                        }
                    }
                }
                c => c,
            };
            out.push(c);
        }
        if !self.src[start + 2..].contains("}}") {
            return Err(self.action_err(start, None));
        }
        Err(self.err(q, "unterminated string literal".to_owned()))
    }

    /// Parses the `{{{.KEY<path>}}}` query at `start`; returns the offset after it.
    fn query(&mut self, start: usize) -> Result<usize, RenderError> {
        let src = self.src;
        let q = skip_ws(src, start + 3);
        let n = src[q..].strip_prefix('.').map_or(0, ident_len);
        if n == 0 {
            return Err(self.query_err(start, q));
        }
        let key_start = q + 1;
        let line = self.line_at(start);
        let (path, p) = self.path(key_start + n, line, 0)?;
        let end = skip_ws(src, p);
        if !src[end..].starts_with("}}}") {
            return Err(self.query_err(start, end));
        }
        self.segments.push(Segment::Query(Box::new(Query {
            key: src[key_start..key_start + n].to_owned(),
            path,
            source: src[key_start..p].to_owned(),
            line,
        })));
        Ok(end + 3)
    }

    /// The path segments from `p` on; returns them and the offset after the last one.
    /// `depth` counts the `[.KEY...]` indexes this path is inside.
    fn path(
        &self,
        mut p: usize,
        line: usize,
        depth: usize,
    ) -> Result<(Vec<Step>, usize), RenderError> {
        let src = self.src;
        let mut path = Vec::new();
        loop {
            match src.as_bytes().get(p) {
                Some(b'.') => {
                    let len = name_len(&src[p + 1..]);
                    if len == 0 {
                        let msg = "expected a field name ([A-Za-z0-9_-]+) after `.` in path query";
                        return Err(self.err(p, msg.to_owned()));
                    }
                    path.push(Step::Field(src[p + 1..p + 1 + len].to_owned()));
                    p += 1 + len;
                }
                Some(b'[') if src[p + 1..].starts_with('.') => {
                    let (step, end) = self.nested(p, line, depth)?;
                    path.push(step);
                    p = end;
                }
                Some(b'[') => {
                    let (step, end) = self.bracket(p)?;
                    path.push(step);
                    p = end;
                }
                _ => break,
            }
        }
        Ok((path, p))
    }

    /// A computed index `[.KEY<path>]` at `p`; returns it and the offset after its `]`.
    fn nested(&self, p: usize, line: usize, depth: usize) -> Result<(Step, usize), RenderError> {
        let src = self.src;
        if depth >= MAX_NESTING {
            let msg = format!("index queries `[.KEY...]` nest more than {MAX_NESTING} deep");
            return Err(self.err(p, msg));
        }
        let key_start = p + 2;
        let n = ident_len(&src[key_start..]);
        if n == 0 {
            let msg = "expected a variable name ([A-Za-z_][A-Za-z0-9_]*) after `[.` in an index query `[.KEY.path]`";
            return Err(self.err(p, msg.to_owned()));
        }
        let (path, end) = self.path(key_start + n, line, depth + 1)?;
        if src.as_bytes().get(end) != Some(&b']') {
            let msg = format!(
                "index query `[.{}` must end with `]` (an index query holds .name, [N], [-N], [key=value] and [.KEY...] segments only)",
                short(&src[key_start..end])
            );
            return Err(self.err(end, msg));
        }
        let query = Query {
            key: src[key_start..key_start + n].to_owned(),
            path,
            source: src[key_start..end].to_owned(),
            line,
        };
        Ok((Step::Nested(Box::new(query)), end + 1))
    }

    fn query_err(&self, start: usize, at: usize) -> RenderError {
        let s = &self.src[start..];
        let Some(i) = s.get(3..).and_then(|r| r.find("}}}")) else {
            let msg = format!("unclosed path query `{}`: no closing `}}}}}}`", short(s));
            return self.err(start, msg);
        };
        let found = self.src[at..]
            .chars()
            .next()
            .map_or(String::new(), String::from);
        let msg = format!(
            "invalid path query `{}` at `{}`: expected {{{{{{.KEY}}}}}} or {{{{{{.KEY.path}}}}}} with path segments .name, [N], [-N], [key=value] and [.KEY.path]",
            short(&s[..i + 6]),
            found.escape_debug()
        );
        self.err(at, msg)
    }

    /// A `[...]` path segment at `p`; returns it and the offset after it.
    fn bracket(&self, p: usize) -> Result<(Step, usize), RenderError> {
        let src = self.src;
        let inner = p + 1;
        let close = src[inner..]
            .char_indices()
            .find(|(i, c)| matches!(c, ']' | '\n') || src[inner + i..].starts_with("}}}"))
            .filter(|(_, c)| *c == ']');
        let Some((len, _)) = close else {
            return Err(self.err(p, "unclosed `[` in path query: no `]`".to_owned()));
        };
        let content = &src[inner..inner + len];
        let end = inner + len + 1;
        if let Some((key, value)) = content.split_once('=') {
            if key.is_empty() || name_len(key) != key.len() {
                let msg = format!(
                    "invalid field name `{}` in `[{}]`: expected [A-Za-z0-9_-]+",
                    short(key),
                    short(content)
                );
                return Err(self.err(inner, msg));
            }
            let step = Step::Match {
                key: key.to_owned(),
                value: value.to_owned(),
            };
            return Ok((step, end));
        }
        let (neg, digits) = match content.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, content),
        };
        let bad = |what: &str| {
            let msg = format!(
                "{what} `[{}]` in path query: expected [N], [-N] (N >= 1, from the end), [key=value] or [.KEY.path]",
                short(content)
            );
            self.err(p, msg)
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("invalid segment"));
        }
        let n: usize = digits.parse().map_err(|_| bad("index too large"))?;
        let step = match (neg, n) {
            (true, 0) => return Err(bad("invalid index")),
            (true, n) => Step::FromEnd(n),
            (false, n) => Step::Index(n),
        };
        Ok((step, end))
    }
}

/// Reads `digits` hex digits as a Unicode scalar value.
fn hex_char(chars: &mut std::str::CharIndices<'_>, digits: usize) -> Option<char> {
    let mut v: u32 = 0;
    for _ in 0..digits {
        let (_, c) = chars.next()?;
        v = v.checked_mul(16)?.checked_add(c.to_digit(16)?)?;
    }
    char::from_u32(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NAME: &str = "task-config.conf";
    const PORTS: &str =
        r#"{"ports":[{"name":"test","port":26409,"scope":"Cluster","protocol":"HTTP"}]}"#;
    const SEED: &str = r#"{
  "task_id": "{{.TASK_ID}}",
  "task_input_config": "{{.TASK_INPUT_CONFIG}}",
  "task_cluster_def": "{{.TASK_CLUSTER_DEFINE}}",
  "allocated_ports": "{{.ALLOCATED_PORTS}}"
}
"#;

    fn vals(pairs: &[(&str, &str)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ok(text: &str, pairs: &[(&str, &str)]) -> String {
        render(NAME, text, &vals(pairs), MissingKey::Error).expect("render")
    }

    fn lenient(text: &str, pairs: &[(&str, &str)]) -> String {
        render(NAME, text, &vals(pairs), MissingKey::Empty).expect("render")
    }

    fn parse_err(text: &str) -> (usize, usize, String) {
        match Template::parse(NAME, text) {
            Err(RenderError::Parse {
                template,
                line,
                column,
                message,
            }) => {
                assert_eq!(template, NAME);
                (line, column, message)
            }
            other => panic!("expected a parse error for {text:?}, got {other:?}"),
        }
    }

    fn assert_parse_err(text: &str, line: usize, column: usize, contains: &str) {
        let (l, c, m) = parse_err(text);
        assert_eq!((l, c), (line, column), "position for {text:?}: {m}");
        assert!(m.contains(contains), "message for {text:?}: {m}");
    }

    #[test]
    fn template_is_clone_debug_send_sync() {
        fn check<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
        check::<Template>();
        check::<RenderError>();
    }

    #[test]
    fn segments_stay_small() {
        assert_eq!(std::mem::size_of::<Segment>(), 24);
    }

    #[test]
    fn text_is_copied_verbatim() {
        for text in [
            "",
            "plain",
            "a }} b }}} c } {",
            "{\"a\":{\"b\":{\"c\":1}}}",
            "é 😀 \r\n\t\u{0}",
            "{ {",
        ] {
            assert_eq!(ok(text, &[]), text);
        }
    }

    #[test]
    fn variables_are_substituted_and_escaped() {
        let v = [("A", "x\"y\\z\n"), ("B_2", "two"), ("_c", "")];
        assert_eq!(ok("[{{.A}}]", &v), "[x\\\"y\\\\z\\n]");
        assert_eq!(ok("{{ .B_2 }}-{{\t.B_2\n}}{{._c}}", &v), "two-two");
        assert_eq!(ok("{{.A}}{{.A}}", &[("A", "/é")]), "/é/é");
    }

    #[test]
    fn escape_rules() {
        assert_eq!(escape_json_string(""), "");
        assert_eq!(escape_json_string("a/b é😀"), "a/b é😀");
        assert_eq!(escape_json_string("\"\\"), "\\\"\\\\");
        assert_eq!(
            escape_json_string("\n\r\t\u{8}\u{c}\u{0}\u{1f}"),
            "\\n\\r\\t\\b\\f\\u0000\\u001f"
        );
        assert_eq!(
            escape_json_string("\u{7f}\u{80}\u{85}\u{9f}\u{a0}"),
            "\\u007f\\u0080\\u0085\\u009f\u{a0}"
        );
        assert_eq!(
            escape_json_string("\u{2028}\u{2029}\u{feff}\u{fffe}\u{ffff}\u{fffd}"),
            "\\u2028\\u2029\\ufeff\\ufffe\\uffff\u{fffd}"
        );
    }

    #[test]
    fn trim_markers() {
        let v = [("A", "a"), ("B", "b")];
        assert_eq!(ok("x  \n {{- .A}} y", &v), "xa y");
        assert_eq!(ok("x {{.A -}} \r\n\t y", &v), "x ay");
        assert_eq!(ok("x {{- .A -}} y", &v), "xay");
        assert_eq!(ok("{{.A -}}  \n  {{- .B}}", &v), "ab");
        assert_eq!(ok("x {{-\n.A\t-}}\ny", &v), "xay");
        assert_eq!(ok("x {{.A   -}} y", &v), "x ay");
        // Trimming only touches the text right next to the marker.
        assert_eq!(ok("{{\" \"}}{{- .A}}", &v), " a");
        assert_eq!(ok("x {{/* c */}}{{- .A}}", &v), "x a");
        // Not markers: Go needs a space next to the dash.
        assert_parse_err("x {{-.A}}", 1, 3, "unsupported action `{{-.A}}`");
        assert_parse_err("{{.A-}}", 1, 1, "unsupported action");
        assert_parse_err("{{-3}}", 1, 1, "unsupported action");
        assert_parse_err("{{.A - }}", 1, 1, "unsupported action");
    }

    #[test]
    fn comments() {
        let v = [("A", "a")];
        assert_eq!(ok("x{{/* hi {{.B}} }} */}}y", &v), "xy");
        assert_eq!(ok("x\n{{- /* multi\nline */ -}}\ny{{.A}}", &v), "xya");
        assert_eq!(ok("{{/**/}}", &v), "");
        assert_parse_err("ab{{/* open", 1, 3, "unclosed comment");
        assert_parse_err("{{/* c */ }}", 1, 10, "a comment must end with `*/}}`");
        assert_parse_err("{{/* c */x}}", 1, 10, "a comment must end with");
        assert_parse_err("{{ /* c */}}", 1, 1, "a comment must start right after");
        assert_eq!(
            Template::parse(NAME, "{{/* a */}}").map(|t| t.keys().len()),
            Ok(0)
        );
    }

    #[test]
    fn literals() {
        assert_eq!(ok(r#"{{"{{"}}.A}}"#, &[]), "{{.A}}");
        assert_eq!(ok(r#"{{ "}}" }}"#, &[]), "}}");
        assert_eq!(
            ok(r#"{{"a\"b\\c\n\t\u00e9\U0001F600\a\b\f\r\v"}}"#, &[]),
            "a\"b\\c\n\té😀\u{7}\u{8}\u{c}\r\u{b}"
        );
        // Literal output is not escaped: it is the template author's text.
        assert_eq!(ok(r#""{{"\""}}""#, &[]), "\"\"\"");
        assert_eq!(ok(r#"a {{- "" -}} b"#, &[]), "ab");
        assert_parse_err(
            r#"{{"a\x41"}}"#,
            1,
            5,
            "invalid escape `\\x` in string literal",
        );
        assert_parse_err(r#"{{"\ud800"}}"#, 1, 4, "invalid escape `\\u`");
        assert_parse_err("{{\"a\nb\"}}", 1, 3, "unterminated string literal");
        assert_parse_err(r#"{{"abc}}"#, 1, 3, "unterminated string literal");
        assert_parse_err(r#"{{"abc"#, 1, 1, "unclosed action");
        assert_parse_err(r#"{{"a" "b"}}"#, 1, 1, "unsupported action");
        assert_parse_err(r#"{{"a" | printf}}"#, 1, 1, "unsupported action");
        assert_parse_err("{{`raw`}}", 1, 1, "unsupported action");
    }

    #[test]
    fn parse_error_messages_are_exact() {
        let text = format!(
            "{{\n  \"a\": 1,\n{}{{{{if .X}}}}yes{{{{end}}}}\n",
            "x".repeat(17)
        );
        let err = Template::parse(NAME, &text).expect_err("if is unsupported");
        assert_eq!(
            err.to_string(),
            "config template \"task-config.conf\", line 3, column 18: unsupported action \
             `{{if .X}}`: only {{.KEY}}, {{{.KEY.path}}}, {{/* comments */}} and \
             {{\"literals\"}} are supported"
        );
        assert_eq!(
            Template::parse("a.yaml", "\n é {{.A.b}}").map_err(|e| e.to_string()),
            Err(
                "config template \"a.yaml\", line 2, column 4: field chains are not supported \
                 in `{{.A.b}}`; for a path into a JSON value write {{{.A...}}}"
                    .to_owned()
            )
        );
        assert_eq!(
            Template::parse("a.yaml", "ok\n  {{ .A").map_err(|e| e.to_string()),
            Err(
                "config template \"a.yaml\", line 2, column 3: unclosed action `{{ .A`: \
                 no closing `}}`"
                    .to_owned()
            )
        );
    }

    #[test]
    fn unsupported_actions_are_parse_errors() {
        for text in [
            "{{if .X}}a{{end}}",
            "{{range .X}}{{end}}",
            "{{.}}",
            "{{.1}}",
            "{{.A | upper}}",
            "{{printf \"%s\" .A}}",
            "{{$x := 1}}",
            "{{ A }}",
            "{{.Aé}}",
            "{{template \"x\"}}",
        ] {
            let (_, _, m) = parse_err(text);
            assert!(m.starts_with("unsupported action `"), "{text:?}: {m}");
            assert!(m.ends_with(SUPPORTED), "{text:?}: {m}");
        }
        assert_parse_err("a{{}}", 1, 2, "empty action `{{}}`");
        assert_parse_err("{{  }}", 1, 1, "empty action");
        assert_parse_err("{{ -}}", 1, 1, "empty action");
        assert_parse_err("x\n{{.A.b.c}}", 2, 1, "field chains are not supported");
        assert_parse_err("{{", 1, 1, "unclosed action `{{`");
        assert_parse_err("a {{ .A }", 1, 3, "unclosed action");
        assert_parse_err("{{.A}} {{.B", 1, 8, "unclosed action");
        let long = format!("{{{{if {}", "y".repeat(100));
        let (_, _, m) = parse_err(&long);
        assert!(m.contains("..."), "{m}");
        assert!(m.len() < 150, "{m}");
    }

    #[test]
    fn path_queries() {
        let v = [
            ("ALLOCATED_PORTS", PORTS),
            (
                "J",
                r#"{"z":1,"a":{"b":[10,"s",true,null,{"k":"v"}],"n":-2.5},"list":[{"id":1,"on":false,"v":"one"},{"id":"1","v":"two"},{"id":2,"on":true,"v":"three"}],"dash-key":"d"}"#,
            ),
            ("S", r#""quoted \"x\"\n""#),
            ("RAW", "not json {"),
        ];
        let q = |t: &str| ok(t, &v);
        assert_eq!(q("{{{.ALLOCATED_PORTS.ports[name=test].port}}}"), "26409");
        // serde_json without preserve_order: keys come out sorted.
        assert_eq!(
            q("{{{.ALLOCATED_PORTS.ports[0]}}}"),
            r#"{"name":"test","port":26409,"protocol":"HTTP","scope":"Cluster"}"#
        );
        assert_eq!(q("{{{.ALLOCATED_PORTS.ports[-1].name}}}"), "test");
        assert_eq!(q("{{{ .J.a.b[0] }}}"), "10");
        assert_eq!(q("{{{.J.a.b[1]}}}{{{.J.a.b[2]}}}"), "strue");
        assert_eq!(q("{{{.J.a.b[-1]}}}"), r#"{"k":"v"}"#);
        assert_eq!(q("{{{.J.a.b[-1].k}}}"), "v");
        assert_eq!(q("{{{.J.a.n}}}"), "-2.5");
        assert_eq!(q("{{{.J.dash-key}}}"), "d");
        assert_eq!(
            q("{{{.J.a}}}"),
            r#"{"b":[10,"s",true,null,{"k":"v"}],"n":-2.5}"#
        );
        // [k=v] matches strings by text, numbers and booleans by their JSON text.
        assert_eq!(q("{{{.J.list[id=1].v}}}"), "one");
        assert_eq!(q("{{{.J.list[id=2].v}}}"), "three");
        assert_eq!(q("{{{.J.list[on=true].v}}}"), "three");
        assert_eq!(q("{{{.J.list[on=false].v}}}"), "one");
        assert_eq!(q("{{{.J.list[v=two].id}}}"), "1");
        // A string comes out raw, a non-JSON value raw only without a path.
        assert_eq!(q("{{{.S}}}"), "quoted \"x\"\n");
        assert_eq!(q("{{{.RAW}}}"), "not json {");
        assert_eq!(ok("{{{.N}}}", &[("N", " 42 ")]), "42");
        // null is a value: nothing, even in strict mode.
        assert_eq!(q("[{{{.J.a.b[3]}}}]"), "[]");
        assert_eq!(ok("{{{.N}}}", &[("N", "null")]), "");
    }

    #[test]
    fn path_query_misses() {
        let v = [("J", r#"{"a":[1,2],"o":{"k":1}}"#), ("RAW", "nope")];
        for t in [
            "{{{.J.a[2]}}}",
            "{{{.J.a[-3]}}}",
            "{{{.J.b}}}",
            "{{{.J.o[0]}}}",
            "{{{.J.a.x}}}",
            "{{{.J.a[k=1]}}}",
            "{{{.J.o[k=1]}}}",
            "{{{.J.a[0].x}}}",
            "{{{.RAW.x}}}",
            "{{{.RAW[0]}}}",
            "{{{.NONE}}}",
            "{{{.NONE.x}}}",
        ] {
            assert_eq!(lenient(&format!("<{t}>"), &v), "<>", "{t}");
            let err = render(NAME, t, &vals(&v), MissingKey::Error).expect_err(t);
            assert!(matches!(err, RenderError::MissingKey { .. }), "{t}: {err}");
        }
        assert_eq!(
            render(NAME, "\n{{{.J.a[5]}}}", &vals(&v), MissingKey::Error)
                .map_err(|e| e.to_string()),
            Err(
                "config template \"task-config.conf\": path query J.a[5] (line 2) matches \
                 nothing: J is not JSON or has nothing at that path; fix the path or the \
                 value, or render without strict mode"
                    .to_owned()
            )
        );
        assert_eq!(
            render(NAME, "{{{.NONE.x}}}", &vals(&v), MissingKey::Error),
            Err(RenderError::MissingKey {
                template: NAME.to_owned(),
                key: "NONE".to_owned(),
                line: 1,
            })
        );
    }

    /// Kuscia's own case (configrender's TestRenderConfig_WithKusciaCM): a party finds its
    /// own endpoint with an index computed from the same value.
    const CLUSTER_DEFINE: &str = r#"{"parties":[
        {"name":"alice","role":"","services":[{"portName":"spu","endpoints":["a-spu.alice.svc"]}]},
        {"name":"bob","role":"","services":[{"portName":"spu","endpoints":["b-spu.bob.svc"]}]}],
        "selfPartyIdx":1,"selfEndpointIdx":0}"#;

    #[test]
    fn computed_indexes() {
        let q = "{{{.TASK_CLUSTER_DEFINE.parties[.TASK_CLUSTER_DEFINE.selfPartyIdx].services[0].endpoints[0]}}}";
        let v = [("TASK_CLUSTER_DEFINE", CLUSTER_DEFINE)];
        assert_eq!(ok(q, &v), "b-spu.bob.svc");
        // Index 0 is an index (Kuscia's query drops zero values and finds nothing).
        let zero = CLUSTER_DEFINE.replace("\"selfPartyIdx\":1", "\"selfPartyIdx\":0");
        assert_eq!(ok(q, &[("TASK_CLUSTER_DEFINE", &zero)]), "a-spu.alice.svc");
        // The index may come from another variable, as a number or a string, negative from
        // the end, and nest.
        let v = [
            ("A", r#"[["x","y"],["p","q","r"]]"#),
            ("I", "1"),
            ("S", r#""0""#),
            ("N", "-1"),
            ("F", "1.0"),
            ("J", r#"{"i":[0,1],"k":"1"}"#),
        ];
        assert_eq!(ok("{{{.A[.I][.N]}}}", &v), "r");
        assert_eq!(ok("{{{.A[.S][.I]}}}", &v), "y");
        assert_eq!(ok("{{{.A[.F][0]}}}", &v), "p");
        assert_eq!(ok("{{{.A[.J.i[.J.k]][.J.i[0]]}}}", &v), "p");
        assert_eq!(ok("{{{ .A[.I] }}}", &v), r#"["p","q","r"]"#);
        let t = Template::parse(NAME, "{{{.A[.J.i[.I]]}}}").expect("parse");
        assert_eq!(t.keys(), ["A", "I", "J"]);
    }

    #[test]
    fn computed_index_misses_and_errors() {
        let v = [
            ("A", r#"["x","y"]"#),
            ("O", r#"{"k":1}"#),
            ("BIG", "2"),
            ("NEG", "-3"),
            ("WORD", "abc"),
            ("T", "true"),
            ("HALF", "0.5"),
            ("J", r#"{"i":"one","o":{}}"#),
        ];
        // The index query matching nothing, or a non-array, is a miss: empty, or strict's error.
        for t in [
            "{{{.A[.NONE]}}}",
            "{{{.A[.J.x]}}}",
            "{{{.O[.BIG]}}}",
            "{{{.NONE[.BIG]}}}",
        ] {
            assert_eq!(lenient(&format!("<{t}>"), &v), "<>", "{t}");
            let err = render(NAME, t, &vals(&v), MissingKey::Error).expect_err(t);
            assert!(matches!(err, RenderError::MissingKey { .. }), "{t}: {err}");
        }
        // Not an integer, or out of range: an error in both modes, saying which and why.
        let cases = [
            (
                "{{{.A[.WORD]}}}",
                "the index [.WORD] is \"abc\", not an integer",
            ),
            ("{{{.A[.T]}}}", "the index [.T] is true, not an integer"),
            (
                "{{{.A[.HALF]}}}",
                "the index [.HALF] is 0.5, not an integer",
            ),
            (
                "{{{.A[.J.i]}}}",
                "the index [.J.i] is \"one\", not an integer",
            ),
            ("{{{.A[.J.o]}}}", "the index [.J.o] is {}, not an integer"),
            (
                "{{{.A[.BIG]}}}",
                "the index [.BIG] is 2, out of range: the array has 2 elements, so use -2 to 1",
            ),
            (
                "{{{.A[.NEG]}}}",
                "the index [.NEG] is -3, out of range: the array has 2 elements, so use -2 to 1",
            ),
        ];
        for (t, message) in cases {
            for mode in [MissingKey::Empty, MissingKey::Error] {
                let err = render(NAME, &format!("\n{t}"), &vals(&v), mode).expect_err(t);
                let RenderError::Index {
                    line, message: m, ..
                } = &err
                else {
                    panic!("{t}: {err}");
                };
                assert_eq!((*line, m.as_str()), (2, message), "{t}");
            }
        }
        assert_eq!(
            render(NAME, "{{{.A[.BIG].x}}}", &vals(&v), MissingKey::Empty)
                .map_err(|e| e.to_string()),
            Err(
                "config template \"task-config.conf\": path query A[.BIG].x (line 1): the \
                 index [.BIG] is 2, out of range: the array has 2 elements, so use -2 to 1; \
                 fix the value or the query"
                    .to_owned()
            )
        );
        let one = render(
            NAME,
            "{{{.O.k[.BIG]}}}",
            &vals(&[("O", r#"{"k":[1]}"#), ("BIG", "1")]),
            MissingKey::Empty,
        );
        assert!(
            matches!(one, Err(RenderError::Index { message, .. }) if message.ends_with("the array has 1 element, so use 0 or -1"))
        );
    }

    #[test]
    fn negative_indexes_reach_the_first_element() {
        // Kuscia's byIdx refuses -len (so [-1] of a one-element array finds nothing); here
        // [-N] works for every N up to the length.
        let v = [("A", "[1,2,3]"), ("ONE", "[7]"), ("I", "-3")];
        assert_eq!(ok("{{{.A[-3]}}}{{{.ONE[-1]}}}{{{.A[.I]}}}", &v), "171");
        assert_eq!(lenient("<{{{.A[-4]}}}>", &v), "<>");
    }

    #[test]
    fn computed_index_parse_errors() {
        assert_parse_err("{{{.A[.]}}}", 1, 6, "expected a variable name");
        assert_parse_err("{{{.A[.1]}}}", 1, 6, "expected a variable name");
        assert_parse_err("{{{.A[.B}}}", 1, 9, "index query `[.B` must end with `]`");
        assert_parse_err("{{{.A[.B c]}}}", 1, 9, "must end with `]`");
        assert_parse_err("{{{.A[.B.]}}}", 1, 9, "expected a field name");
        assert_parse_err(
            "{{{.A[.B[.C[.D[.E[.F]]]]]}}}",
            1,
            18,
            "index queries `[.KEY...]` nest more than 4 deep",
        );
        assert!(Template::parse(NAME, "{{{.A[.B[.C[.D[.E]]]]}}}").is_ok());
    }

    #[test]
    fn path_query_parse_errors() {
        assert_parse_err("{{{.A}}", 1, 1, "unclosed path query `{{{.A}}`");
        assert_parse_err("x\n {{{.A", 2, 2, "unclosed path query");
        assert_parse_err("{{{A}}}", 1, 4, "invalid path query `{{{A}}}` at `A`");
        assert_parse_err("{{{{.A}}}}", 1, 4, "invalid path query");
        assert_parse_err("{{{- .A}}}", 1, 4, "invalid path query");
        assert_parse_err("{{{.A.}}}", 1, 6, "expected a field name");
        assert_parse_err("{{{.A..b}}}", 1, 6, "expected a field name");
        assert_parse_err(
            "{{{.A.b c}}}",
            1,
            9,
            "invalid path query `{{{.A.b c}}}` at `c`",
        );
        assert_parse_err("{{{.A | x}}}", 1, 7, "invalid path query");
        assert_parse_err("{{{.A[x]}}}", 1, 6, "invalid segment `[x]`");
        assert_parse_err("{{{.A[]}}}", 1, 6, "invalid segment `[]`");
        assert_parse_err("{{{.A[ 0]}}}", 1, 6, "invalid segment");
        assert_parse_err("{{{.A[-0]}}}", 1, 6, "invalid index `[-0]`");
        assert_parse_err("{{{.A[--1]}}}", 1, 6, "invalid segment");
        assert_parse_err("{{{.A[99999999999999999999999]}}}", 1, 6, "index too large");
        assert_parse_err("{{{.A[=v]}}}", 1, 7, "invalid field name ``");
        assert_parse_err("{{{.A[a b=v]}}}", 1, 7, "invalid field name `a b`");
        assert_parse_err("{{{.A[k=v}}}", 1, 6, "unclosed `[`");
        assert_parse_err("{{{.A[k=v\n]}}}", 1, 6, "unclosed `[`");
        // Values may hold `=`, `.` and spaces; a query may span lines.
        let v = [("A", r#"[{"k":"a=b. c","v":1}]"#)];
        assert_eq!(ok("{{{.A[k=a=b. c].v}}}", &v), "1");
        assert_eq!(ok("{{{\n .A[0].v\n}}}", &v), "1");
    }

    #[test]
    fn missing_keys_empty_or_strict() {
        assert_eq!(lenient("a{{.X}}b{{{.Y}}}c", &[]), "abc");
        let err = render(
            NAME,
            "{\n  \"id\": \"{{.TASK_ID}}\"\n}",
            &Values::new(),
            MissingKey::Error,
        )
        .expect_err("strict");
        assert_eq!(
            err,
            RenderError::MissingKey {
                template: NAME.to_owned(),
                key: "TASK_ID".to_owned(),
                line: 2,
            }
        );
        assert_eq!(
            err.to_string(),
            "config template \"task-config.conf\": no value for key TASK_ID (line 2); set it \
             (e.g. --set TASK_ID=...) or render without strict mode"
        );
        // The first missing key in template order is the one reported.
        let t = Template::parse(NAME, "{{.B}}\n\n{{.A}}").expect("parse");
        assert!(matches!(
            t.render(&vals(&[("A", "1")]), MissingKey::Error),
            Err(RenderError::MissingKey { key, line: 1, .. }) if key == "B"
        ));
        assert!(matches!(
            t.render(&vals(&[("B", "1")]), MissingKey::Error),
            Err(RenderError::MissingKey { key, line: 3, .. }) if key == "A"
        ));
        // An empty value is a value.
        assert_eq!(ok("[{{.A}}]", &[("A", "")]), "[]");
        assert_eq!(MissingKey::default(), MissingKey::Empty);
    }

    #[test]
    fn lines_count_across_comments_literals_and_crlf() {
        let t = Template::parse(NAME, "{{/*\n\n*/}}{{\"\\n\"}}\r\n{{.A}}\n{{{.B}}}{{.C}}")
            .expect("parse");
        let line_of = |k: &str| match t.render(&Values::new(), MissingKey::Error) {
            Err(RenderError::MissingKey { line, .. }) => line,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(line_of("A"), 4);
        let t2 = Template::parse(NAME, "é\u{2028}é\n\n  {{.A}} {{.B}}").expect("parse");
        let err = t2.render(&vals(&[("A", "")]), MissingKey::Error);
        assert!(matches!(err, Err(RenderError::MissingKey { line: 3, .. })));
        assert_parse_err("é😀é {{if}}", 1, 5, "unsupported");
    }

    #[test]
    fn name_and_keys() {
        let t = Template::parse(
            "x.json",
            "{{.B}}{{{.A.x[0]}}}{{.B}}{{/* {{.Z}} */}}{{\"{{.Y}}\"}}{{{.C}}}{{._}}",
        )
        .expect("parse");
        assert_eq!(t.name(), "x.json");
        assert_eq!(t.keys(), vec!["A", "B", "C", "_"]);
        assert!(Template::parse("e", "").expect("parse").keys().is_empty());
    }

    #[test]
    fn seed_template() {
        let t = Template::parse(NAME, SEED).expect("parse");
        assert_eq!(
            t.keys(),
            vec![
                "ALLOCATED_PORTS",
                "TASK_CLUSTER_DEFINE",
                "TASK_ID",
                "TASK_INPUT_CONFIG"
            ]
        );
        let v = vals(&[
            ("TASK_ID", "t1"),
            (
                "TASK_INPUT_CONFIG",
                r#"{"a":"b\"c","path":"C:\\x","nl":"1\n2"}"#,
            ),
            ("TASK_CLUSTER_DEFINE", "{\"parties\":[]}\u{2028}\u{0}"),
            ("ALLOCATED_PORTS", PORTS),
        ]);
        let out = t.render(&v, MissingKey::Error).expect("render");
        let json: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(json["task_id"], "t1");
        assert_eq!(json["task_input_config"], v["TASK_INPUT_CONFIG"].as_str());
        assert_eq!(json["task_cluster_def"], v["TASK_CLUSTER_DEFINE"].as_str());
        assert_eq!(json["allocated_ports"], PORTS);
        let empty = t.render(&Values::new(), MissingKey::Empty).expect("render");
        let json: serde_json::Value = serde_json::from_str(&empty).expect("valid JSON");
        assert_eq!(json["task_id"], "");
    }

    #[test]
    fn rendering_is_deterministic() {
        let t = Template::parse(NAME, "{{.A}} {{{.J}}} {{{.J.b}}}\n").expect("parse");
        let v = vals(&[
            ("A", "é\"\u{1}"),
            ("J", r#"{"z":[3,{"y":1,"x":2}],"b":{"d":1,"c":2}}"#),
        ]);
        let first = t.render(&v, MissingKey::Error).expect("render");
        assert_eq!(
            first,
            "é\\\"\\u0001 {\"b\":{\"c\":2,\"d\":1},\"z\":[3,{\"x\":2,\"y\":1}]} {\"c\":2,\"d\":1}\n"
        );
        for _ in 0..10 {
            assert_eq!(t.clone().render(&v, MissingKey::Error).as_ref(), Ok(&first));
            assert_eq!(
                render(NAME, "{{.A}} {{{.J}}} {{{.J.b}}}\n", &v, MissingKey::Error),
                Ok(first.clone())
            );
        }
    }

    fn nasty_string() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            Just('"'),
            Just('\\'),
            Just('/'),
            Just('\''),
            Just('#'),
            Just(':'),
            Just(' '),
            Just('{'),
            Just('}'),
            proptest::char::range('\u{0}', '\u{1f}'),
            proptest::char::range('\u{7f}', '\u{a0}'),
            Just('\u{2028}'),
            Just('\u{2029}'),
            Just('\u{feff}'),
            Just('\u{fffe}'),
            Just('\u{ffff}'),
            Just('😀'),
            Just('é'),
            any::<char>(),
        ];
        prop::collection::vec(c, 0..40).prop_map(|v| v.into_iter().collect())
    }

    fn any_value() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), nasty_string()]
    }

    fn template_ish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{{"),
            Just("}}"),
            Just("{{{"),
            Just("}}}"),
            Just("{{- "),
            Just(" -}}"),
            Just("-"),
            Just(".A"),
            Just(".b"),
            Just("[0]"),
            Just("[-1]"),
            Just("[k=v]"),
            Just("[.A]"),
            Just("[."),
            Just("["),
            Just("]"),
            Just("="),
            Just("/*"),
            Just("*/"),
            Just("\""),
            Just("\\"),
            Just("\\u"),
            Just(" "),
            Just("\n"),
            Just("x"),
            Just("é"),
            Just("😀"),
            Just("{"),
            Just("}"),
            Just("."),
        ];
        prop::collection::vec(piece, 0..30).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn json_string_round_trip(v in any_value()) {
            let out = ok(r#"{"a": "{{.A}}", "b": 1}"#, &[("A", &v)]);
            let json: serde_json::Value = serde_json::from_str(&out)
                .map_err(|e| TestCaseError::fail(format!("{e}: {out:?}")))?;
            prop_assert_eq!(json["a"].as_str(), Some(v.as_str()));
            prop_assert_eq!(json["b"].as_i64(), Some(1));
        }

        #[test]
        fn yaml_double_quoted_round_trip(v in any_value()) {
            let out = ok("a: \"{{.A}}\"\n", &[("A", &v)]);
            let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out)
                .map_err(|e| TestCaseError::fail(format!("{e}: {out:?}")))?;
            let map = yaml.as_mapping();
            prop_assert!(map.is_some(), "not a mapping: {out:?}");
            let a = map.and_then(|m| m.get("a")).and_then(|a| a.as_str());
            prop_assert_eq!(a, Some(v.as_str()));
        }

        #[test]
        fn seed_template_is_always_json(
            id in any_value(),
            cfg in any_value(),
            ports in any_value(),
        ) {
            let v = vals(&[
                ("TASK_ID", "t1"),
                ("TASK_INPUT_CONFIG", &cfg),
                ("TASK_CLUSTER_DEFINE", &id),
                ("ALLOCATED_PORTS", &ports),
            ]);
            let out = render(NAME, SEED, &v, MissingKey::Error)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let json: serde_json::Value = serde_json::from_str(&out)
                .map_err(|e| TestCaseError::fail(format!("{e}: {out:?}")))?;
            prop_assert_eq!(json["task_id"].as_str(), Some("t1"));
            prop_assert_eq!(json["task_input_config"].as_str(), Some(cfg.as_str()));
        }

        /// A computed index renders what the written index renders, and is an error
        /// exactly when it is out of range.
        #[test]
        fn computed_index_matches_the_written_one(
            items in prop::collection::vec(any::<i16>(), 0..6),
            i in -8i64..8,
            as_string in any::<bool>(),
        ) {
            let a = serde_json::to_string(&items).unwrap_or_default();
            let index = if as_string { format!("\"{i}\"") } else { i.to_string() };
            let v = vals(&[("A", &a), ("I", &index)]);
            let computed = render(NAME, "{{{.A[.I]}}}", &v, MissingKey::Empty);
            let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
            if (-len..len).contains(&i) {
                let written = if i < 0 { format!("[-{}]", -i) } else { format!("[{i}]") };
                let literal = render(NAME, &format!("{{{{{{.A{written}}}}}}}"), &v, MissingKey::Empty);
                prop_assert_eq!(computed, literal);
            } else {
                let is_index_error = matches!(computed, Err(RenderError::Index { .. }));
                prop_assert!(is_index_error, "{:?}", computed);
            }
        }

        #[test]
        fn parsing_never_panics(text in any::<String>()) {
            let _ = Template::parse(NAME, &text);
        }

        #[test]
        fn template_like_input_never_panics(text in template_ish(), a in any_value()) {
            match Template::parse(NAME, &text) {
                Ok(t) => {
                    let v = vals(&[("A", &a)]);
                    let once = t.render(&v, MissingKey::Empty);
                    // Lenient rendering fails only on a computed index.
                    match &once {
                        Ok(_) => {}
                        Err(RenderError::Index { .. }) => prop_assert!(text.contains("[.")),
                        Err(e) => prop_assert!(false, "lenient render failed: {e}"),
                    }
                    prop_assert_eq!(once, t.render(&v, MissingKey::Empty));
                    let _ = t.render(&Values::new(), MissingKey::Error);
                }
                Err(RenderError::Parse { line, column, .. }) => {
                    prop_assert!(line >= 1 && column >= 1);
                    prop_assert!(line <= text.lines().count().max(1) + 1);
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }
}
