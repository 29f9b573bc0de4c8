//! Printing as kubectl does: tables, YAML/JSON objects and lists, names, ages.

use std::io::Write;

use anyhow::{Context, Result};
use appimage::resource::{AppImage, RESOURCE};
use appimage::stage::Stage;
use serde::Serialize;
use serde_json::Value;

use crate::error::reported;

/// `appimage.kuscia.secretflow`, kubectl's singular name of the resource in messages.
pub fn kind_name() -> String {
    RESOURCE.replacen("appimages.", "appimage.", 1)
}

/// `appimage.kuscia.secretflow/NAME`, as `-o name` prints it.
pub fn object_name(name: &str) -> String {
    format!("{}/{name}", kind_name())
}

/// Write to stdout; a closed pipe (`| head`) ends the run quietly instead of panicking.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(reported()),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

/// `text` plus a newline unless it already ends with one.
pub fn println(text: &str) -> Result<()> {
    if text.ends_with('\n') {
        print(text)
    } else {
        print(&format!("{text}\n"))
    }
}

/// kubectl's `duration.HumanDuration` for an age of `seconds`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The AGE column: `<unknown>` without a creation time, as kubectl prints it.
pub fn age(image: &AppImage, now: i64) -> String {
    match &image.metadata.creation_timestamp {
        Some(t) => human_duration(now - t.0.as_second()),
        None => "<unknown>".into(),
    }
}

/// Lay out cells like kubectl's tabwriter (min width 6, padding 3, left-aligned); the last
/// column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    const MIN_WIDTH: usize = 6;
    const PADDING: usize = 3;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            let widest = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0);
            (widest + PADDING).max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The ROLES column: each template's role string, empty ones left out.
pub fn roles(image: &AppImage) -> String {
    let roles: Vec<&str> = image
        .spec
        .deploy_templates
        .iter()
        .filter_map(|t| t.role.as_deref().map(str::trim))
        .filter(|r| !r.is_empty())
        .collect();
    or_none(roles.join(","))
}

/// The STAGE column: draft, published or deprecated; a label value that is none of them is
/// shown as it is, marked unknown.
pub fn stage(image: &AppImage) -> String {
    match Stage::of(image) {
        Ok(stage) => stage.to_string(),
        Err(e) => format!("{}(unknown)", e.value),
    }
}

pub fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

/// The `get` table, with `TEMPLATES` and `IMAGE-ID` when wide.
pub fn appimage_table(images: &[AppImage], wide: bool, headers: bool, now: i64) -> String {
    let mut rows = Vec::new();
    if headers {
        let mut h = vec!["NAME", "IMAGE", "TAG", "ROLES", "STAGE", "AGE"];
        if wide {
            h.extend(["TEMPLATES", "IMAGE-ID"]);
        }
        rows.push(h.into_iter().map(String::from).collect());
    }
    for image in images {
        let mut row = vec![
            image.name().to_string(),
            image.spec.image.name.clone(),
            image.spec.image.tag.clone(),
            roles(image),
            stage(image),
            age(image, now),
        ];
        if wide {
            let templates: Vec<&str> = image
                .spec
                .deploy_templates
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            row.push(or_none(templates.join(",")));
            row.push(or_none(image.spec.image.id.clone().unwrap_or_default()));
        }
        rows.push(row);
    }
    table(&rows)
}

/// The object as kubectl shows it: without `metadata.managedFields`.
pub fn for_display(image: &AppImage) -> Result<Value> {
    let mut image = image.clone();
    image.metadata.managed_fields = None;
    serde_json::to_value(&image).context("cannot encode the AppImage")
}

/// kubectl's `kind: List` wrapper for several objects.
pub fn list(items: Vec<Value>) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    })
}

/// One object, or a List for several (or when `always_list`).
pub fn objects(images: &[AppImage], always_list: bool) -> Result<Value> {
    let mut items = images.iter().map(for_display).collect::<Result<Vec<_>>>()?;
    if items.len() == 1 && !always_list {
        return Ok(items.remove(0));
    }
    Ok(list(items))
}

pub fn to_yaml<T: Serialize>(value: &T) -> Result<String> {
    serde_yaml_ng::to_string(value).context("cannot encode as YAML")
}

/// JSON indented by 4 spaces, as kubectl prints it, with a final newline.
pub fn to_json<T: Serialize>(value: &T) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value.serialize(&mut ser).context("cannot encode as JSON")?;
    buf.push(b'\n');
    String::from_utf8(buf).context("cannot encode as JSON")
}

/// Align tab-separated cells: a column's width is set by the run of consecutive lines that
/// have a cell there; the last cell of a line is not padded.
pub fn tabwrite(text: &str, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let columns = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    let mut widths = vec![vec![0usize; columns]; lines.len()];
    for c in 0..columns {
        let mut start = 0;
        while start < lines.len() {
            if lines[start].len() <= c + 1 {
                start += 1;
                continue;
            }
            let mut end = start;
            while end < lines.len() && lines[end].len() > c + 1 {
                end += 1;
            }
            let w = lines[start..end]
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
                + padding;
            for row in widths.iter_mut().take(end).skip(start) {
                row[c] = w;
            }
            start = end;
        }
    }
    let mut out = String::new();
    for (i, cells) in lines.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < cells.len() {
                line.push_str(&" ".repeat(widths[i][c].saturating_sub(cell.chars().count())));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_match_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (599, "9m59s"),
            (600, "10m"),
            (15 * 60 + 59, "15m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 12 * 60 + 7, "5h12m"),
            (8 * 3600 + 59 * 60, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (2 * 86400 + 3 * 3600 + 59, "2d3h"),
            (7 * 86400 + 23 * 3600, "7d23h"),
            (8 * 86400, "8d"),
            (30 * 86400, "30d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (731 * 86400, "2y1d"),
            (8 * 365 * 86400, "8y"),
            (9 * 365 * 86400 + 100 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tables_are_padded_like_kubectl() {
        let t = table(&[
            row(&["NAME", "IMAGE", "TAG", "ROLES", "AGE"]),
            row(&["secretflow-image", "sf/lite", "latest", "<none>", "5s"]),
            row(&["a", "b", "c", "server,client", "10d"]),
        ]);
        assert_eq!(
            t,
            "NAME               IMAGE     TAG      ROLES           AGE\n\
             secretflow-image   sf/lite   latest   <none>          5s\n\
             a                  b         c        server,client   10d\n"
        );
    }

    #[test]
    fn short_columns_get_the_minimum_width() {
        assert_eq!(
            table(&[row(&["A", "B"]), row(&["x", "y"])]),
            "A     B\nx     y\n"
        );
        assert_eq!(table(&[]), "");
    }

    #[test]
    fn names_and_json_look_like_kubectl() {
        assert_eq!(object_name("x"), "appimage.kuscia.secretflow/x");
        assert_eq!(
            to_json(&serde_json::json!({"a": [1]})).unwrap(),
            "{\n    \"a\": [\n        1\n    ]\n}\n"
        );
        let l = list(vec![]);
        assert_eq!(l["kind"], "List");
        assert_eq!(l["apiVersion"], "v1");
    }
}
