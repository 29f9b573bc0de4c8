//! Config-template renderer: the subset of Go text/template that Kuscia's AppImage
//! `configTemplates` use, with escaping that is always valid JSON and YAML.
//!
//! - Text outside actions is copied byte for byte; a lone `}}` or `}}}` is text (as in Go,
//!   and JSON closes nested objects with `}}}`).
//! - `{{.KEY}}` (KEY = `[A-Za-z_][A-Za-z0-9_]*`) inserts the value escaped for the inside of a
//!   JSON or YAML double-quoted string, see [`escape_json_string`].
//! - `{{{.KEY<path>}}}` parses the value as JSON and applies a path of `.name`, `[N]`, `[-N]`
//!   (from the end) and `[key=value]` (first object element whose field equals the text).
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

const SUPPORTED: &str = "only {{.KEY}}, {{{.KEY.path}}}, {{/* comments */}} and {{\"literals\"}} are supported";

/// A parsed config template; cheap to render many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    name: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    /// Kept apart from `Text` because trim markers must not trim literal output.
    Literal(String),
    Var {
        key: String,
        line: usize,
    },
    Query {
        key: String,
        path: Vec<Step>,
        /// `KEY.path` as written, for the strict-mode error.
        source: String,
        line: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
    /// `[-N]`, N >= 1.
    FromEnd(usize),
    Match { key: String, value: String },
}

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
        let keys: BTreeSet<&str> = self
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Var { key, .. } | Segment::Query { key, .. } => Some(key.as_str()),
                Segment::Text(_) | Segment::Literal(_) => None,
            })
            .collect();
        keys.into_iter().collect()
    }

    pub fn render(&self, values: &Values, missing: MissingKey) -> Result<String, RenderError> {
        let mut out = String::new();
        // Each JSON value is parsed once per render, however many queries use it.
        let mut parsed: BTreeMap<&str, Option<Value>> = BTreeMap::new();
        for seg in &self.segments {
            match seg {
                Segment::Text(t) | Segment::Literal(t) => out.push_str(t),
                Segment::Var { key, line } => match values.get(key) {
                    Some(v) => escape_into(&mut out, v),
                    None => self.missing(missing, key, *line)?,
                },
                Segment::Query {
                    key,
                    path,
                    source,
                    line,
                } => {
                    let Some(raw) = values.get(key) else {
                        self.missing(missing, key, *line)?;
                        continue;
                    };
                    let json = parsed
                        .entry(key.as_str())
                        .or_insert_with(|| serde_json::from_str(raw).ok());
                    let found = match json {
                        Some(v) => lookup(v, path).map(|v| write_value(&mut out, v)),
                        None if path.is_empty() => {
                            out.push_str(raw);
                            Some(())
                        }
                        None => None,
                    };
                    if found.is_none() {
                        self.missing(missing, source, *line)?;
                    }
                }
            }
        }
        Ok(out)
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
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

fn lookup<'v>(v: &'v Value, path: &[Step]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Field(name) => v.as_object()?.get(name),
        Step::Index(i) => v.as_array()?.get(*i),
        Step::FromEnd(n) => {
            let items = v.as_array()?;
            items.get(items.len().checked_sub(*n)?)
        }
        Step::Match { key, value } => v
            .as_array()?
            .iter()
            .find(|e| e.get(key).is_some_and(|f| field_matches(f, value))),
    })
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
            self.segments.push(Segment::Text(chunk.to_owned()));
        }
    }

    /// Line of byte offset `off`; offsets come in increasing order.
    fn line_at(&mut self, off: usize) -> usize {
        match self.src.as_bytes().get(self.line_off..off) {
            Some(b) => self.line += b.iter().filter(|b| **b == b'\n').count(),
            None => {
                let head = self.src.as_bytes().get(..off).unwrap_or(self.src.as_bytes());
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
                        key: name[..n].to_owned(),
                        line,
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
                self.segments.push(Segment::Literal(literal));
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
        let end = s.get(2..).and_then(|r| r.find("}}")).map_or(s.len(), |i| i + 4);
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
        Err(self.err(
            q,
            "a comment must end with `*/}}` or `*/ -}}`".to_owned(),
        ))
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
                    let esc = chars.next().map(|(_, e)| e);
                    let decoded = match esc {
                        Some('a') => Some('\u{7}'),
                        Some('b') => Some('\u{8}'),
                        Some('f') => Some('\u{c}'),
                        Some('n') => Some('\n'),
                        Some('r') => Some('\r'),
                        Some('t') => Some('\t'),
                        Some('v') => Some('\u{b}'),
                        Some('\\') => Some('\\'),
                        Some('"') => Some('"'),
                        Some('u') => hex_char(&mut chars, 4),
                        Some('U') => hex_char(&mut chars, 8),
                        _ => None,
                    };
                    match decoded {
                        Some(d) => d,
                        None => {
                            let text = esc.map_or(String::new(), String::from);
                            let msg = format!(
                                "invalid escape `\\{}` in string literal; supported: \\a \\b \\f \\n \\r \\t \\v \\\\ \\\" \\uXXXX \\UXXXXXXXX",
                                short(&text)
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
        let mut p = key_start + n;
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
                Some(b'[') => {
                    let (step, end) = self.bracket(p)?;
                    path.push(step);
                    p = end;
                }
                _ => break,
            }
        }
        let end = skip_ws(src, p);
        if !src[end..].starts_with("}}}") {
            return Err(self.query_err(start, end));
        }
        let line = self.line_at(start);
        self.segments.push(Segment::Query {
            key: src[key_start..key_start + n].to_owned(),
            path,
            source: src[key_start..p].to_owned(),
            line,
        });
        Ok(end + 3)
    }

    fn query_err(&self, start: usize, at: usize) -> RenderError {
        let s = &self.src[start..];
        let Some(i) = s.get(3..).and_then(|r| r.find("}}}")) else {
            let msg = format!("unclosed path query `{}`: no closing `}}}}}}`", short(s));
            return self.err(start, msg);
        };
        let found = self.src[at..].chars().next().map_or(String::new(), String::from);
        let msg = format!(
            "invalid path query `{}` at `{}`: expected {{{{{{.KEY}}}}}} or {{{{{{.KEY.path}}}}}} with path segments .name, [N], [-N] and [key=value]",
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
                "{what} `[{}]` in path query: expected [N], [-N] (N >= 1, from the end) or [key=value]",
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
