//! The webhook's seal on a Pod it injected: an HMAC-SHA256, keyed by a secret only the webhook
//! holds, over the Pod's namespace, name, AppImage label and status annotation. The Services
//! controller acts only on a Pod whose seal checks, so a status annotation copied onto another
//! Pod, edited, or written while the webhook was bypassed (a namespace it skips, a Pod created
//! while it was down under `failurePolicy: Ignore`) builds nothing: forging the seal needs the
//! key. The annotation alone would not do: anyone who may create a Pod may write any annotation.

use k8s_openapi::api::core::v1::Pod;
use sha2::{Digest, Sha256};

use crate::labels;

/// The seal's format, part of the annotation's value and of what is signed.
const VERSION: &str = "v1";
/// Shortest key accepted: 128 bits of entropy, written as at least 32 bytes of text.
pub const MIN_KEY_BYTES: usize = 32;

/// The secret the webhook seals with. Its bytes never reach a log (`Debug` hides them).
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey(Vec<u8>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({} bytes)", self.0.len())
    }
}

impl SealKey {
    /// A key from a key file's bytes (surrounding whitespace dropped).
    pub fn new(bytes: &[u8]) -> Result<SealKey, String> {
        let text = bytes.trim_ascii();
        if text.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the seal key has {} bytes; it needs at least {MIN_KEY_BYTES} (e.g. head -c 32 /dev/urandom | base64)",
                text.len()
            ));
        }
        Ok(SealKey(text.to_vec()))
    }
}

/// What is sealed: each field length-prefixed, so that no two Pods share an input.
fn mac(key: &SealKey, namespace: &str, pod: &Pod) -> Option<[u8; 32]> {
    let meta = &pod.metadata;
    let name = meta.name.as_deref()?;
    let image = meta.labels.as_ref()?.get(labels::APP_IMAGE)?;
    let status = meta.annotations.as_ref()?.get(labels::STATUS)?;
    Some(mac_of(key, namespace, name, image, status))
}

fn mac_of(key: &SealKey, namespace: &str, name: &str, image: &str, status: &str) -> [u8; 32] {
    hmac_sha256(&key.0, &[VERSION, namespace, name, image, status])
}

/// The [`labels::ADMITTED`] annotation's value for a Pod of `namespace` named `name`, with
/// AppImage label `image` and status annotation `status` (the injection plan seals without a
/// Pod tree).
pub fn seal_value(key: &SealKey, namespace: &str, name: &str, image: &str, status: &str) -> String {
    let mac = mac_of(key, namespace, name, image, status);
    format!("{VERSION}:{}", base16ct::lower::encode_string(&mac))
}

/// Seal `pod`, an injected Pod of `namespace`: set (or replace) its [`labels::ADMITTED`]
/// annotation. A Pod without a name, AppImage label or status gets none.
pub fn seal(key: &SealKey, namespace: &str, pod: &mut Pod) {
    let Some(mac) = mac(key, namespace, pod) else {
        return;
    };
    let value = format!("{VERSION}:{}", base16ct::lower::encode_string(&mac));
    let annotations = pod
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(labels::ADMITTED.into(), value);
}

/// Whether the stored `pod` carries a seal `key` made for exactly its namespace, name, AppImage
/// label and status annotation.
pub fn is_sealed(key: &SealKey, pod: &Pod) -> bool {
    let meta = &pod.metadata;
    let Some(given) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::ADMITTED))
        .and_then(|v| v.strip_prefix(VERSION)?.strip_prefix(':'))
    else {
        return false;
    };
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let Some(want) = mac(key, namespace, pod) else {
        return false;
    };
    let want = base16ct::lower::encode_string(&want);
    // Constant time: the comparison must not tell a forger how many characters were right.
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// RFC 2104 HMAC over SHA-256; `fields` are each prefixed with their length.
fn hmac_sha256(key: &[u8], fields: &[&str]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for field in fields {
        inner.update((field.len() as u64).to_be_bytes());
        inner.update(field.as_bytes());
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2, with the message as one unprefixed field.
    #[test]
    fn hmac_matches_rfc_4231() {
        let mut block = [0u8; 64];
        block[..4].copy_from_slice(b"Jefe");
        let mut inner = Sha256::new();
        inner.update(block.map(|b| b ^ 0x36));
        inner.update(b"what do ya want for nothing?");
        let mut outer = Sha256::new();
        outer.update(block.map(|b| b ^ 0x5c));
        outer.update(inner.finalize());
        let got: [u8; 32] = outer.finalize().into();
        assert_eq!(
            base16ct::lower::encode_string(&got),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // hmac_sha256 is the same construction with length-prefixed fields.
        let long = SealKey::new(&[b'k'; 100]).unwrap();
        assert_ne!(
            hmac_sha256(&long.0, &["a", "b"]),
            hmac_sha256(&long.0, &["ab", ""])
        );
    }

    fn injected(ns: &str, name: &str, status: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.namespace = Some(ns.into());
        pod.metadata.labels = Some([(labels::APP_IMAGE.to_string(), "img".to_string())].into());
        pod.metadata.annotations = Some([(labels::STATUS.to_string(), status.to_string())].into());
        pod
    }

    fn key(c: u8) -> SealKey {
        SealKey::new(&[c; 32]).unwrap()
    }

    #[test]
    fn a_seal_checks_only_for_its_pod_and_key() {
        let mut pod = injected("alice", "job-0", "{\"ports\":[]}");
        assert!(!is_sealed(&key(1), &pod), "no seal yet");
        seal(&key(1), "alice", &mut pod);
        assert!(is_sealed(&key(1), &pod));
        assert!(!is_sealed(&key(2), &pod), "another key");
        // The seal copied onto another Pod, namespace, AppImage or status checks nowhere.
        let copy = |f: &dyn Fn(&mut Pod)| {
            let mut p = pod.clone();
            f(&mut p);
            is_sealed(&key(1), &p)
        };
        assert!(!copy(&|p| p.metadata.name = Some("job-1".into())));
        assert!(!copy(&|p| p.metadata.namespace = Some("bob".into())));
        assert!(!copy(&|p| {
            p.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert(labels::APP_IMAGE.into(), "x".into());
        }));
        assert!(!copy(&|p| {
            let a = p.metadata.annotations.as_mut().unwrap();
            a.insert(labels::STATUS.into(), "{\"ports\":[1]}".into());
        }));
        assert!(!copy(&|p| {
            let a = p.metadata.annotations.as_mut().unwrap();
            a.insert(labels::ADMITTED.into(), "v1:00".into());
        }));
    }

    #[test]
    fn a_short_key_is_refused_and_never_printed() {
        assert!(
            SealKey::new(b"  short  ")
                .unwrap_err()
                .contains("at least 32")
        );
        assert_eq!(format!("{:?}", key(7)), "SealKey(32 bytes)");
    }
}
