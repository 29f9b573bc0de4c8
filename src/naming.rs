//! Kubernetes name rules and the names this project derives (Services, identities).

use sha2::{Digest, Sha256};

/// The longest DNS-1123 label, and so the longest Service name or label value.
pub const MAX_LABEL: usize = 63;

/// First `n` hex digits of sha256(`s`).
pub fn short_hash(s: &str, n: usize) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut hex = base16ct::lower::encode_string(&digest[..n.div_ceil(2).min(digest.len())]);
    hex.truncate(n);
    hex
}

/// The first 32 bits of sha256(`s`), big-endian: `short_hash(s, 8)` as a number.
pub fn hash_u32(s: &str) -> u32 {
    let digest = Sha256::digest(s.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Lower-case letters, digits and '-', starting and ending with a letter or digit.
fn is_dns_label_text(s: &str) -> bool {
    s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

/// The error for an empty `s` or one longer than `max`.
fn length_error(s: &str, max: usize, why: &str) -> Option<String> {
    if s.is_empty() {
        Some("must not be empty".into())
    } else if s.len() > max {
        Some(format!(
            "must be no more than {max} characters (it has {}){why}",
            s.len()
        ))
    } else {
        None
    }
}

/// Why `s` is not a DNS-1123 label, or `None` if it is one.
pub fn dns1123_label_error(s: &str) -> Option<String> {
    length_error(s, MAX_LABEL, "").or_else(|| {
        (!is_dns_label_text(s)).then(|| {
            "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit (e.g. 'my-name')"
                .into()
        })
    })
}

/// Why `s` is not a DNS-1123 subdomain, or `None`.
pub fn dns1123_subdomain_error(s: &str) -> Option<String> {
    length_error(s, 253, "").or_else(|| {
        (!s.split('.').all(is_dns_label_text)).then(|| {
            "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. 'example.com')"
                .into()
        })
    })
}

/// Why `s` is not an IANA service name (a Kubernetes container port name), or `None`.
pub fn port_name_error(s: &str) -> Option<String> {
    length_error(s, 15, ", as Kubernetes port names are").or_else(|| {
        let ok = is_dns_label_text(s)
            && !s.contains("--")
            && s.chars().any(|c| c.is_ascii_lowercase());
        (!ok).then(|| {
            "must be a port name: lower-case letters, digits and single '-', with at least one letter (e.g. 'global')"
                .into()
        })
    })
}

/// Letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
fn is_label_value_text(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// Why `s` is not a label value (which may be empty), or `None`.
pub fn label_value_error(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    length_error(s, MAX_LABEL, "").or_else(|| {
        (!is_label_value_text(s)).then(|| {
            "must be a label value: letters, digits, '-', '_' and '.', starting and ending with a letter or digit".into()
        })
    })
}

/// Why `s` cannot be a config file name (it becomes an annotation key's name part and a file path).
pub fn config_file_name_error(s: &str) -> Option<String> {
    length_error(s, MAX_LABEL, "").or_else(|| {
        (!is_label_value_text(s)).then(|| {
            "must be a plain file name: letters, digits, '-', '_' and '.', starting and ending with a letter or digit (e.g. 'task-config.conf')".into()
        })
    })
}

/// The Service for `port` of the Pod `pod`, named by Kuscia's rule (its
/// `GenerateServiceName`): `<pod>-<port>` with leading and trailing '-' trimmed from both
/// parts, prefixed `svc-` when it would start with a digit; when longer than 63 characters,
/// `svc-<pod cut to fit>-<16 hex of sha256(pod)>-<port>`, exactly 63 characters, so the
/// name stays readable and the hash keeps it unique. A '.' of the Pod name (a DNS subdomain)
/// becomes '-', as a Service name is a DNS label; Kuscia's Pod names never hold one.
pub fn service_name(pod: &str, port: &str) -> String {
    let pod = pod.trim_matches('-');
    let port = port.trim_matches('-');
    let readable = pod.replace('.', "-");
    let name = format!("{readable}-{port}");
    let name = if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("svc-{name}")
    } else {
        name
    };
    if name.len() <= MAX_LABEL {
        return name;
    }
    // 63 = "svc-" + head + "-" + 16 hex + "-" + port.
    let keep = MAX_LABEL.saturating_sub(16 + port.len() + 6);
    let head: String = readable.chars().take(keep).collect();
    format!("svc-{head}-{}-{port}", short_hash(pod, 16))
}

/// A value for a label that identifies one Pod: the Pod name, or when it is longer than
/// a label value may be, a shortened form with a hash that stays unique.
pub fn pod_identity(pod: &str) -> String {
    if pod.len() <= MAX_LABEL {
        pod.to_string()
    } else {
        let head: String = pod.chars().take(46).collect();
        format!(
            "{}-{}",
            head.trim_end_matches(['-', '.']),
            short_hash(pod, 16)
        )
    }
}

/// A KusciaDeployment's Service name, as Kuscia makes it: the port name with `_` and `.` as
/// `-`, then Kuscia's `GenerateServiceName` ([`service_name`]) on the workload's name:
/// `<workload>-<port>`, and over 63 characters `svc-<workload, cut>-<16 hex>-<port>`.
pub fn workload_service_name(workload: &str, port: &str) -> String {
    service_name(workload, &port.trim_matches('-').replace(['_', '.'], "-"))
}

/// Items for a message: `a, b, c`, or `none`.
pub fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hashes_are_sha256_hex_prefixes() {
        // sha256("abc") = ba7816bf8f01cfea...
        assert_eq!(short_hash("abc", 5), "ba781");
        assert_eq!(short_hash("abc", 16), "ba7816bf8f01cfea");
        assert_eq!(short_hash("abc", 100).len(), 64);
        assert_eq!(hash_u32("abc"), 0xba7816bf);
    }

    #[test]
    fn service_names_follow_kuscia() {
        assert_eq!(service_name("alice-test-0", "test"), "alice-test-0-test");
        assert_eq!(service_name("0-job", "fed"), "svc-0-job-fed");
        // Kuscia's own cases (pkg/utils/resources/service_test.go).
        assert_eq!(
            service_name("service-test-11111111", "domain"),
            "service-test-11111111-domain"
        );
        let p63 = "abc-012345678-012345678-012345678-012345678-012345678-01";
        assert_eq!(service_name(p63, "domain"), format!("{p63}-domain"));
        assert_eq!(service_name(p63, "domain").len(), 63);
        let p64 = "abc-012345678-012345678-012345678-012345678-012345678-012";
        let long = service_name(p64, "domain");
        assert_eq!(
            long,
            format!(
                "svc-abc-012345678-012345678-012345678-0-{}-domain",
                short_hash(p64, 16)
            )
        );
        assert_eq!(long.len(), 63);
        let digits = "12-012345678-012345678-012345678-012345678-012345678";
        assert_eq!(
            service_name(digits, "domain"),
            format!("svc-{digits}-domain")
        );
        let digits = "123-012345678-012345678-012345678-012345678-012345678";
        let name = service_name(digits, "domain");
        assert!(
            name.starts_with("svc-123-012345678-012345678-012345678-0"),
            "{name}"
        );
        assert_eq!(name.len(), 63);
        // Dashes at either end are trimmed, as Kuscia does.
        assert_eq!(service_name("job-", "-fed-"), "job-fed");
        // A Pod name may hold dots; a Service name may not.
        assert_eq!(service_name("web.v1-0", "fed"), "web-v1-0-fed");
        let dotted = format!("a.{}", "b".repeat(70));
        let name = service_name(&dotted, "fed");
        assert!(dns1123_label_error(&name).is_none(), "{name}");
        assert!(name.contains(&short_hash(&dotted, 16)), "{name}");
    }

    #[test]
    fn long_service_names_are_always_63_and_unique() {
        for n in 56..120 {
            for port in ["a", "fed", "global", "abcdefghijklmno"] {
                let pod = format!("p{}", "x".repeat(n));
                let name = service_name(&pod, port);
                assert!(name.len() <= 63, "{name}");
                assert!(dns1123_label_error(&name).is_none(), "{name}");
                assert!(name.ends_with(&format!("-{port}")), "{name}");
                let other = service_name(&format!("{pod}y"), port);
                assert_ne!(name, other);
            }
        }
    }

    #[test]
    fn identities_fit_a_label() {
        assert_eq!(pod_identity("web-0"), "web-0");
        let long = format!("{}-x", "a".repeat(80));
        let id = pod_identity(&long);
        assert!(id.len() <= 63, "{id}");
        assert!(label_value_error(&id).is_none());
        assert_ne!(pod_identity(&format!("{long}y")), id);
    }

    #[test]
    fn name_rules() {
        assert!(dns1123_label_error("secretflow").is_none());
        assert!(dns1123_label_error("Secretflow").is_some());
        assert!(dns1123_label_error("-a").is_some());
        assert!(dns1123_label_error(&"a".repeat(64)).is_some());
        assert!(dns1123_subdomain_error("secretflow-image").is_none());
        assert!(dns1123_subdomain_error("a..b").is_some());
        assert!(port_name_error("global").is_none());
        assert!(port_name_error("8080").is_some());
        assert!(port_name_error("a--b").is_some());
        assert!(port_name_error("abcdefghijklmnop").is_some());
        assert!(label_value_error("").is_none());
        assert!(label_value_error("server").is_none());
        assert!(label_value_error("a b").is_some());
        assert!(config_file_name_error("task-config.conf").is_none());
        assert!(config_file_name_error("../etc/passwd").is_some());
    }
}
