//! Durations as Kubernetes tools write them: Go's syntax (`30s`, `1m30s`, `500ms`, `1.5h`), or a
//! bare number of seconds, as kubectl's `--request-timeout` takes. One parser for the flags of
//! the plugin, the webhook and the benchmarks.

use std::time::Duration;

/// Parse `text`; the error names the text and shows valid forms.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad =
        || format!("invalid duration {text:?}: use a number with a unit, e.g. 30s, 1m or 500ms");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax_and_bare_seconds() {
        let ok = [
            ("0", Duration::ZERO),
            ("30", Duration::from_secs(30)),
            ("30s", Duration::from_secs(30)),
            ("1m", Duration::from_secs(60)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
            (" 4s ", Duration::from_secs(4)),
        ];
        for (text, want) in ok {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
        for bad in ["", "s", "10x", "1m-", "abc", "-1s", "1..2s", "4 s"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("e.g. 30s"), "{bad}: {err}");
        }
    }
}
