//! How failures reach the user: kubectl prints server errors verbatim and its own with
//! `error: `; either way the exit code is 1.

use std::fmt;
use std::io::Write;

/// A message already in its final wording (e.g. `Error from server (NotFound): ...`).
#[derive(Debug)]
pub struct Verbatim(pub String);

impl fmt::Display for Verbatim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Verbatim {}

/// Every problem was already printed; only the exit code is left to set.
#[derive(Debug)]
pub struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("errors were reported above")
    }
}

impl std::error::Error for Reported {}

/// The text to print for `e`: verbatim, or `error: ` and the cause chain.
pub fn message(e: &anyhow::Error) -> Option<String> {
    if e.is::<Reported>() {
        return None;
    }
    if let Some(v) = e.downcast_ref::<Verbatim>() {
        return Some(v.0.clone());
    }
    Some(format!("error: {}", chain(e.chain())))
}

/// Causes joined with `: `, skipping one that its parent already quotes (kube errors do).
pub fn chain<'a>(causes: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in causes {
        let text = cause.to_string();
        if parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// Print `e` on stderr (if not already reported).
pub fn report(e: &anyhow::Error) {
    if let Some(text) = message(e) {
        eprint_line(&text);
    }
}

/// A line on stderr; a closed stderr is not worth a panic.
pub fn eprint_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let e = anyhow::Error::new(Verbatim("Error from server (NotFound): x".into()));
        assert_eq!(
            message(&e).as_deref(),
            Some("Error from server (NotFound): x")
        );
        assert_eq!(message(&anyhow::Error::new(Reported)), None);
        let io = std::io::Error::other("refused");
        let e = anyhow::Error::new(io).context("cannot connect");
        assert_eq!(
            message(&e).as_deref(),
            Some("error: cannot connect: refused")
        );
    }

    #[test]
    fn a_cause_its_parent_quotes_is_skipped() {
        let inner = std::io::Error::other("connection refused");
        let e = anyhow::Error::new(inner).context("HyperError: connection refused");
        assert_eq!(chain(e.chain()), "HyperError: connection refused");
    }
}
