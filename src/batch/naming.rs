//! How a batch job names its workloads: one place that both the state machine (which checks
//! names) and the workload builder (which uses them) read, so neither imports the other.

use crate::naming::{MAX_LABEL, dns1123_label_error, dns1123_subdomain_error, short_hash};

/// `<prefix>-<node>` when that is a DNS-1123 label starting with a letter (it names the
/// workload's Services); else its first characters (dots made dashes, `w-` before a leading
/// digit) and 16 hex of its sha256, which stays unique and fits 63.
pub fn workload_name(prefix: &str, node: &str) -> String {
    let full = format!("{prefix}-{node}");
    if dns1123_label_error(&full).is_none() && full.starts_with(|c: char| c.is_ascii_lowercase()) {
        return full;
    }
    let clean: String = full
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches('-');
    let lead = if clean.starts_with(|c: char| c.is_ascii_lowercase()) {
        ""
    } else {
        "w-"
    };
    let head: String = format!("{lead}{clean}")
        .chars()
        .take(MAX_LABEL - 17)
        .collect();
    format!("{}-{}", head.trim_end_matches('-'), short_hash(&full, 16))
}

/// The image pull Job of `node` (spec.prePull): `pull-<prefix>-<node>`, cut and hashed as
/// [`workload_name`] cuts; apart from the app's workloads, which start with the prefix.
pub fn pull_name(prefix: &str, node: &str) -> String {
    workload_name(&format!("pull-{prefix}"), node)
}

/// Why `prefix` cannot start workload names; `None` if it can.
pub fn prefix_error(prefix: &str) -> Option<String> {
    dns1123_subdomain_error(prefix)
        .map(|e| format!("spec.namePrefix {prefix:?} {e}; use lower-case letters, digits and '-'"))
}
