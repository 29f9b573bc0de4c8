//! How failures reach the user: kubectl prints server errors verbatim and its own with
//! `error: `; either way the exit code is 1.

use std::io::Write;

/// The failures the plugin tells apart by type, never by their wording.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The API server's answer, worded as kubectl prints it:
    /// `Error from server (REASON): MESSAGE`, printed without `error: `.
    #[error("{text}")]
    Server {
        /// The Status reason, e.g. `NotFound`, `AlreadyExists`, `Invalid`.
        reason: String,
        /// The apiserver does not serve the resource type at all (no CRD).
        missing_api: bool,
        text: String,
    },
    /// Every problem was already printed; only the exit code is left to set.
    #[error("errors were reported above")]
    Reported,
}

impl PluginError {
    /// True for the apiserver's NotFound of an object (not of the whole resource type).
    pub fn is_not_found(e: &anyhow::Error) -> bool {
        matches!(
            e.downcast_ref::<PluginError>(),
            Some(PluginError::Server { reason, missing_api: false, .. }) if reason == "NotFound"
        )
    }
}

/// Shorthand for the error that only sets the exit code.
pub fn reported() -> anyhow::Error {
    PluginError::Reported.into()
}

/// The text to print for `e`: verbatim, or `error: ` and the cause chain.
pub fn message(e: &anyhow::Error) -> Option<String> {
    match e.downcast_ref::<PluginError>() {
        Some(PluginError::Reported) => return None,
        Some(PluginError::Server { text, .. }) => return Some(text.clone()),
        None => {}
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
        let e = anyhow::Error::new(PluginError::Server {
            reason: "NotFound".into(),
            missing_api: false,
            text: "Error from server (NotFound): x".into(),
        });
        assert_eq!(
            message(&e).as_deref(),
            Some("Error from server (NotFound): x")
        );
        assert!(PluginError::is_not_found(&e));
        assert_eq!(message(&reported()), None);
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
