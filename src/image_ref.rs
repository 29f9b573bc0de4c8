//! Container image references as `kubectl appimage set-image` takes them:
//! `NAME[:TAG][@sha256:DIGEST]`, checked against the grammar of the distribution project's
//! reference package, and kept exactly as written.
//!
//! Why not a crate: the maintained parsers (oci-spec's `Reference` and its relatives) normalize
//! while they parse (`python` becomes `docker.io/library/python`, a missing tag `latest`).
//! `spec.image.name` is what the signature covers and what the Pods run, so it must stay as the
//! user wrote it; the grammar itself is small.

use std::fmt;

use crate::resource::is_sha256_digest;

/// The tag an image reference without one means (as docker and Kubernetes read it).
pub const DEFAULT_TAG: &str = "latest";
/// Longest repository name, as the distribution project limits it.
const MAX_NAME: usize = 255;
/// Longest tag.
const MAX_TAG: usize = 128;

/// A parsed reference: the repository name as written, and the tag and digest if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `registry.example.com:5000/team/app`, `python`, …
    pub name: String,
    pub tag: Option<String>,
    /// `sha256:` and 64 lower-case hex digits.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "image reference {reference:?} {problem}; write NAME[:TAG][@sha256:DIGEST], e.g. registry.example.com/team/app:1.2 or python:3.12-slim@sha256:<64 hex digits>"
)]
pub struct RefError {
    pub reference: String,
    pub problem: String,
}

impl ImageRef {
    /// The tag to record: the one given, else [`DEFAULT_TAG`].
    pub fn tag_or_default(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Parse `NAME[:TAG][@sha256:DIGEST]`; the error says what is wrong and what to write.
pub fn parse(text: &str) -> Result<ImageRef, RefError> {
    let fail = |problem: String| RefError {
        reference: text.to_string(),
        problem,
    };
    if text.is_empty() {
        return Err(fail("is empty".into()));
    }
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail(format!("holds {c:?}, which no reference may")));
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(check_digest(digest).map_err(fail)?)),
        None => (text, None),
    };
    // A tag is the part after the last ':' that follows the last '/' (a registry port precedes
    // the first '/').
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag).map_err(fail)?;
    }
    check_name(name).map_err(fail)?;
    Ok(ImageRef {
        name: name.to_string(),
        tag: tag.map(str::to_string),
        digest,
    })
}

fn check_digest(digest: &str) -> Result<String, String> {
    if is_sha256_digest(digest) {
        return Ok(digest.to_string());
    }
    let problem = match digest.split_once(':') {
        _ if digest.contains('@') => "holds more than one '@'".to_string(),
        Some(("sha256", hex)) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            "has upper-case hex digits in its digest; write them in lower case".to_string()
        }
        Some(("sha256", hex)) => format!(
            "has a digest of {} characters after sha256:, not 64 hex digits",
            hex.len()
        ),
        Some((algorithm, _)) => format!(
            "has a {algorithm:?} digest; only sha256 digests pin an AppImage's image (spec.image.id)"
        ),
        None => format!("has {digest:?} after '@', which is no digest (sha256:<64 hex digits>)"),
    };
    Err(problem)
}

fn check_tag(tag: &str) -> Result<(), String> {
    let first_ok = tag
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if tag.is_empty() {
        Err("has an empty tag after ':'".into())
    } else if tag.len() > MAX_TAG || !first_ok || !rest_ok {
        Err(format!(
            "has the tag {tag:?}, but a tag is up to {MAX_TAG} letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        ))
    } else {
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("has no repository name".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "has a repository name of {} characters; at most {MAX_NAME} are allowed",
            name.len()
        ));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part names a registry when more follow and it looks like a host, as docker
    // tells them apart.
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains(['.', ':']) || first == "localhost" || first.contains(char::is_uppercase)
        {
            check_registry(first)?;
            parts.remove(0);
        }
    }
    parts.into_iter().try_for_each(check_path_component)
}

/// `host[:port]`: DNS labels joined by '.', or an IPv6 address in brackets.
fn check_registry(registry: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "has the registry {registry:?}, which is not a host name (or [IPv6 address]) with an optional :port"
        )
    };
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (registry, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit())) {
        return Err(bad());
    }
    let ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty() && inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    };
    if ok { Ok(()) } else { Err(bad()) }
}

/// `[a-z0-9]+` runs joined by one separator: '.', '_', '__' or one or more '-'.
fn check_path_component(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("has an empty path component (two '/' in a row, or one at an end)".into());
    }
    if part.contains(|c: char| c.is_ascii_uppercase()) {
        return Err(format!(
            "has {part:?} in its repository path; repository names are lower case"
        ));
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut seps = part.split(alnum).filter(|s| !s.is_empty());
    let ends_ok = part.starts_with(alnum) && part.ends_with(alnum);
    let seps_ok = seps.all(|s| matches!(s, "." | "_" | "__") || s.chars().all(|c| c == '-'));
    if ends_ok && seps_ok {
        Ok(())
    } else {
        Err(format!(
            "has {part:?} in its repository path, but a path component is lower-case letters and digits, joined by '.', '_', '__' or dashes"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

    fn ok(text: &str) -> (String, Option<String>, Option<String>) {
        let r = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(r.to_string(), text, "kept as written");
        (r.name, r.tag, r.digest)
    }

    fn problem(text: &str) -> String {
        let e = parse(text).expect_err(text);
        let shown = e.to_string();
        assert!(shown.contains(&format!("{text:?}")), "{shown}");
        assert!(
            shown.contains("write NAME[:TAG][@sha256:DIGEST]"),
            "{shown}"
        );
        e.problem
    }

    #[test]
    fn names_tags_and_digests_are_split_and_kept_as_written() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(ok("python"), ("python".into(), None, None));
        assert_eq!(
            ok("python:3.12-slim"),
            ("python".into(), s("3.12-slim"), None)
        );
        assert_eq!(
            ok(&format!("node@sha256:{HEX}")),
            ("node".into(), None, s(&format!("sha256:{HEX}")))
        );
        assert_eq!(
            ok(&format!("node:22-slim@sha256:{HEX}")),
            ("node".into(), s("22-slim"), s(&format!("sha256:{HEX}")))
        );
        // A registry port is not a tag; the tag follows the last '/'.
        assert_eq!(
            ok("localhost:5000/team/app"),
            ("localhost:5000/team/app".into(), None, None)
        );
        assert_eq!(
            ok("registry.example.com:5000/team/app:v2"),
            ("registry.example.com:5000/team/app".into(), s("v2"), None)
        );
        assert_eq!(
            ok("[::1]:5000/app:1"),
            ("[::1]:5000/app".into(), s("1"), None)
        );
        for good in [
            "secretflow/secretflow-lite-anolis8:latest",
            "a__b/c.d/e---f:_x",
            "Registry.Example.com/app",
        ] {
            ok(good);
        }
    }

    #[test]
    fn the_default_tag_is_latest() {
        assert_eq!(parse("python").unwrap().tag_or_default(), "latest");
        assert_eq!(parse("python:3").unwrap().tag_or_default(), "3");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases = [
            ("", "is empty"),
            ("py thon", "holds ' '"),
            (":1.0", "no repository name"),
            ("python:", "empty tag"),
            ("python:-x", "tag \"-x\""),
            ("Python:3", "lower case"),
            ("team//app", "empty path component"),
            ("team/app-", "lower-case letters and digits"),
            ("team/a.-b", "lower-case letters and digits"),
            ("bad_host.com:x/app", "registry"),
            ("python@sha512:abc", "\"sha512\" digest"),
            ("python@sha256:abc", "3 characters after sha256:"),
            ("python@latest", "no digest"),
            ("a@b@c", "more than one '@'"),
        ];
        for (text, want) in cases {
            let got = problem(text);
            assert!(got.contains(want), "{text:?}: {got}");
        }
        let upper = format!("python@sha256:{}", HEX.to_uppercase());
        assert!(problem(&upper).contains("lower case"));
        let long = format!("{}/app", "a".repeat(MAX_NAME));
        assert!(problem(&long).contains("at most 255"));
        let long_tag = format!("app:{}", "t".repeat(MAX_TAG + 1));
        assert!(problem(&long_tag).contains("up to 128"));
    }
}
