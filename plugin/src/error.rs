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
    /// Nothing is wrong, but the answer is in the exit code: `diff` found differences (1,
    /// as `kubectl diff`), a watched job ended Failed or TimedOut (1, as `kubectl rollout
    /// status`). Everything was already printed.
    #[error("exit code {0}")]
    Exit(u8),
    /// A failure of a command whose exit code 1 means something else (`diff`: 1 is
    /// "they differ", so its errors exit 2 as `kubectl diff`'s do); printed as its cause.
    #[error("{0:#}")]
    Code(u8, anyhow::Error),
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

/// The process's exit code for `e`: 1, unless the command gave it another.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<PluginError>() {
        Some(PluginError::Exit(code) | PluginError::Code(code, _)) => *code,
        _ => 1,
    }
}

/// The text to print for `e`: verbatim, or `error: ` and the cause chain.
pub fn message(e: &anyhow::Error) -> Option<String> {
    match e.downcast_ref::<PluginError>() {
        Some(PluginError::Reported | PluginError::Exit(_)) => return None,
        Some(PluginError::Code(_, inner)) => return message(inner),
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
