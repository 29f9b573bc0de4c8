//! Signatures over bytes: the canonical payloads, trusted public keys, verification and
//! (deterministic) signing.
//!
//! `spec.image.sign` holds one or more base64 signatures, comma-separated (a Kuscia AppImage
//! with a single signature reads as before). Each is ECDSA P-256 with SHA-256 (ASN.1 DER, as
//! `openssl dgst -sha256 -sign key.pem` and `cosign sign-blob` write it) or Ed25519 (64 raw
//! bytes, as `openssl pkeyutl -sign -rawin` writes it), over [`payload`] (v2: the AppImage's
//! name and its whole spec) or, where the webhook allows it, [`payload_v1`] (the image alone).
//! Which verified signatures count (key windows, revocation, how many keys) is [`policy`]'s.

pub mod policy;
pub mod rotation;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::resource::{AppImage, AppImageSpec, ImageInfo};

pub use policy::{Accepted, KeyPolicy, Requirement, Window, accept};

const API_VERSION: &str = "kuscia.secretflow/v1alpha1";
const KIND: &str = "AppImageSignaturePayload";

/// What a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PayloadVersion {
    /// The image name, tag and id alone (Kuscia's field as its documentation describes it).
    V1,
    /// The AppImage's name and the canonical hash of its whole spec.
    V2,
}

impl PayloadVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// The v1 payload: compact JSON with the fields in this order and no newline,
/// `{"apiVersion":"kuscia.secretflow/v1alpha1","kind":"AppImageSignaturePayload","name":…,"tag":…,"id":…}`.
/// Every field is a JSON string (an absent id is `""`), so none can be swapped for another.
pub fn payload_v1(image: &ImageInfo) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload<'a> {
        api_version: &'a str,
        kind: &'a str,
        name: &'a str,
        tag: &'a str,
        id: &'a str,
    }
    serde_json::to_vec(&Payload {
        api_version: API_VERSION,
        kind: KIND,
        name: &image.name,
        tag: &image.tag,
        id: image.id.as_deref().unwrap_or_default(),
    })
    .unwrap_or_default()
}

/// The v2 payload of `image` (see [`payload_for`]).
pub fn payload(image: &AppImage) -> Vec<u8> {
    payload_for(
        image.metadata.name.as_deref().unwrap_or_default(),
        &image.spec,
    )
}

/// The v2 payload: compact JSON with the fields in this order and no newline,
/// `{"apiVersion":"kuscia.secretflow/v1alpha1","kind":"AppImageSignaturePayload","version":"v2","name":<AppImage name>,"spec":"sha256:<hex>"}`,
/// where the hash is over [`canonical_spec`]. Renaming the AppImage or changing any field of its
/// spec but `image.sign` breaks the signature.
pub fn payload_for(name: &str, spec: &AppImageSpec) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload<'a> {
        api_version: &'a str,
        kind: &'a str,
        version: &'a str,
        name: &'a str,
        spec: &'a str,
    }
    let digest = format!("sha256:{}", hex(&Sha256::digest(canonical_spec(spec))));
    serde_json::to_vec(&Payload {
        api_version: API_VERSION,
        kind: KIND,
        version: PayloadVersion::V2.as_str(),
        name,
        spec: &digest,
    })
    .unwrap_or_default()
}

/// The spec as compact JSON with every object's keys in byte order and `image.sign` left out:
/// `jq -cS '.spec | del(.image.sign)'` of the AppImage as `kubectl appimage get -o json`
/// prints it (defaults written out, empty lists left out) gives the same bytes.
pub fn canonical_spec(spec: &AppImageSpec) -> Vec<u8> {
    // The revision hash's canonical form, so the two never drift; a test pins the bytes.
    crate::workload::canonical_json(&signed_value(spec)).into_bytes()
}

/// The spec as JSON without `image.sign`: what a signature covers.
fn signed_value(spec: &AppImageSpec) -> serde_json::Value {
    let mut value = serde_json::to_value(spec).unwrap_or_default();
    if let Some(image) = value.get_mut("image").and_then(|i| i.as_object_mut()) {
        image.remove("sign");
    }
    value
}

fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

/// The signatures in `spec.image.sign`: comma-separated base64, whitespace ignored.
pub fn signatures(sign: Option<&str>) -> Result<Vec<Vec<u8>>, SignatureError> {
    let compact: String = sign.unwrap_or_default().split_whitespace().collect();
    let parts: Vec<&str> = compact.split(',').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(SignatureError::Unsigned);
    }
    parts
        .iter()
        .map(|p| {
            STANDARD
                .decode(p.as_bytes())
                .map_err(|e| SignatureError::NotBase64(e.to_string()))
        })
        .collect()
}

/// `existing` with `added` appended, unless it is already there: `sign --add` collects the
/// signatures of several keys.
pub fn join_signatures(existing: Option<&str>, added: &str) -> String {
    let compact: String = existing.unwrap_or_default().split_whitespace().collect();
    let mut parts: Vec<&str> = compact.split(',').filter(|p| !p.is_empty()).collect();
    if !parts.contains(&added) {
        parts.push(added);
    }
    parts.join(",")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "spec.image.sign is empty: the AppImage is not signed; sign it with `kubectl appimage sign -f FILE --key KEY`"
    )]
    Unsigned,
    #[error(
        "spec.image.sign is not valid base64 ({0}); it must hold the base64 of each signature, comma-separated"
    )]
    NotBase64(String),
    #[error(
        "no trusted public key is configured; add PEM public keys to the trusted keys directory"
    )]
    NoKeys,
    #[error(
        "spec.image.sign does not verify with any of the {tried} trusted key(s): the AppImage's name or spec changed after signing{changed}, or it was signed with an untrusted key; re-sign it with `kubectl appimage sign`"
    )]
    Mismatch { tried: usize, changed: String },
    #[error(
        "spec.image.sign verifies only over payload v1 (image name, tag and id), with key {key}: the webhook requires payload v2, which covers the whole spec; re-sign it with `kubectl appimage sign` (or allow v1 with --accept-payload-v1)"
    )]
    OnlyV1 { key: String },
    #[error(
        "spec.image.sign was signed with key {key}, which is revoked: Pods and rollouts of every revision it signed are refused; re-sign the AppImage with a trusted key"
    )]
    Revoked { key: String },
    #[error(
        "spec.image.sign was signed with key {key}, which is {why}: re-sign the AppImage with a key valid now"
    )]
    OutsideWindow { key: String, why: String },
    #[error(
        "the AppImage has {have} valid signature(s) by distinct trusted keys ({keys}) and needs {need}: add signatures with `kubectl appimage sign --add --key KEY`"
    )]
    TooFew {
        have: usize,
        need: usize,
        keys: String,
    },
    #[error("key {name}: {message}")]
    BadKey { name: String, message: String },
}

impl SignatureError {
    /// The mismatch error naming the spec fields that changed (see [`changed_paths`]).
    pub fn with_changes(self, paths: &[String]) -> SignatureError {
        match self {
            SignatureError::Mismatch { tried, .. } if !paths.is_empty() => {
                SignatureError::Mismatch {
                    tried,
                    changed: format!(" (changed: {})", paths.join(", ")),
                }
            }
            other => other,
        }
    }
}

/// A trusted key that verified one of the signatures, and over which payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub key: String,
    pub version: PayloadVersion,
}

/// Which trusted keys signed `image` (each once, its strongest payload first), before any
/// policy: the cryptographic part, cached by the webhook per resourceVersion and key set.
pub fn signers(image: &AppImage, keys: &[TrustedKey]) -> Result<Vec<Signer>, SignatureError> {
    let sigs = signatures(image.spec.image.sign.as_deref())?;
    if keys.is_empty() {
        return Err(SignatureError::NoKeys);
    }
    let v2 = payload(image);
    let v1 = payload_v1(&image.spec.image);
    let mut found = Vec::new();
    for key in keys {
        let version = if sigs.iter().any(|s| key.verifies(&v2, s)) {
            PayloadVersion::V2
        } else if sigs.iter().any(|s| key.verifies(&v1, s)) {
            PayloadVersion::V1
        } else {
            continue;
        };
        found.push(Signer {
            key: key.name.clone(),
            version,
        });
    }
    if found.is_empty() {
        return Err(SignatureError::Mismatch {
            tried: keys.len(),
            changed: String::new(),
        });
    }
    Ok(found)
}

/// [`signers`] then [`accept`]: whether `image` may run now under `requirement`.
pub fn verify(
    image: &AppImage,
    keys: &[TrustedKey],
    requirement: &Requirement,
    now: jiff::Timestamp,
) -> Result<Accepted, SignatureError> {
    accept(&signers(image, keys)?, keys, requirement, now)
}

/// The fields of the spec that differ between `old` and `new` (`image.sign` aside), as paths
/// such as `spec.deployTemplates[0].spec.containers[0].command`; at most eight.
pub fn changed_paths(old: &AppImageSpec, new: &AppImageSpec) -> Vec<String> {
    let mut out = Vec::new();
    diff(
        "spec".to_string(),
        &signed_value(old),
        &signed_value(new),
        &mut out,
    );
    out.truncate(8);
    out
}

fn diff(path: String, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let null = Value::Null;
                let (x, y) = (a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null));
                diff(format!("{path}.{k}"), x, y, out);
            }
        }
        // Into lists of objects (containers, templates), not of strings: `command` reads
        // better than `command[2]`.
        (Value::Array(a), Value::Array(b))
            if a.len() == b.len() && a.iter().all(Value::is_object) =>
        {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(path),
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Key {
    EcdsaP256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A trusted public key, with the name it was loaded under (e.g. its file name).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub name: String,
    key: Key,
    /// When the key may sign (from the key policy; open by default).
    pub window: Window,
    /// Revoked keys verify nothing that may run (from the key policy).
    pub revoked: bool,
}

impl TrustedKey {
    fn new(name: &str, key: Key) -> TrustedKey {
        TrustedKey {
            name: name.into(),
            key,
            window: Window::default(),
            revoked: false,
        }
    }

    /// Read a PEM `PUBLIC KEY` (SubjectPublicKeyInfo): ECDSA P-256 or Ed25519.
    pub fn from_pem(name: &str, pem: &str) -> Result<TrustedKey, SignatureError> {
        use p256::pkcs8::DecodePublicKey;
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
            return Ok(TrustedKey::new(name, Key::EcdsaP256(k)));
        }
        match ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            Ok(k) => Ok(TrustedKey::new(name, Key::Ed25519(k))),
            Err(_) => Err(SignatureError::BadKey {
                name: name.into(),
                message: "is not a PEM public key of type ECDSA P-256 or Ed25519 (expected -----BEGIN PUBLIC KEY-----)".into(),
            }),
        }
    }

    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::EcdsaP256(_) => "ECDSA-P256-SHA256",
            Key::Ed25519(_) => "Ed25519",
        }
    }

    fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier;
        match &self.key {
            Key::EcdsaP256(k) => p256::ecdsa::Signature::from_der(sig)
                .or_else(|_| p256::ecdsa::Signature::from_slice(sig))
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            Key::Ed25519(k) => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
        }
    }
}

/// Sign `message` with a PEM private key (PKCS#8 or SEC1 for P-256, PKCS#8 for Ed25519) and
/// return the base64 signature. Deterministic: ECDSA nonces follow RFC 6979.
pub fn sign(message: &[u8], private_pem: &str) -> Result<String, SignatureError> {
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::DecodePrivateKey;
    if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(private_pem)
        .or_else(|_| p256::SecretKey::from_sec1_pem(private_pem).map(p256::ecdsa::SigningKey::from))
    {
        let sig: p256::ecdsa::Signature = k.sign(message);
        return Ok(STANDARD.encode(sig.to_der().as_bytes()));
    }
    if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(private_pem) {
        return Ok(STANDARD.encode(k.sign(message).to_bytes()));
    }
    Err(SignatureError::BadKey {
        name: "private key".into(),
        message: "is not a PEM private key of type ECDSA P-256 or Ed25519".into(),
    })
}

/// The PEM public key matching a PEM private key.
pub fn public_key_pem(private_pem: &str) -> Result<String, SignatureError> {
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    let bad = |e: String| SignatureError::BadKey {
        name: "private key".into(),
        message: e,
    };
    if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(private_pem)
        .or_else(|_| p256::SecretKey::from_sec1_pem(private_pem).map(p256::ecdsa::SigningKey::from))
    {
        return k
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| bad(e.to_string()));
    }
    if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(private_pem) {
        return k
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| bad(e.to_string()));
    }
    Err(bad(
        "is not a PEM private key of type ECDSA P-256 or Ed25519".into(),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Fixed test keys, so these unit tests need no randomness.
    pub(crate) const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPLIyR0jvJ+Ezhv3s
hN0xk0U0wwsEXtHpamrmi+V6j/ahRANCAARaUWZtvOStU9E9U4DeUuzsEcJg9zu9
A++6nLxoZQAcm9bD+qzqEICxzjkKS3TIG3j5qaxa/4zlw6oKHkBv+x6L
-----END PRIVATE KEY-----
";
    pub(crate) const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKmSRvr3YuYT7IxALrwwR5+9YtWqTdiKA9Qm2/u5zxyh
-----END PRIVATE KEY-----
";

    /// The README's worked example (section "Signatures").
    const EXAMPLE: &str = r#"
apiVersion: kuscia.secretflow/v1alpha1
kind: AppImage
metadata:
  name: hello
spec:
  image:
    name: busybox
    tag: "1.36"
  deployTemplates:
    - name: main
      spec:
        containers:
          - name: app
            command: [sh, -c, "cat /etc/app/app.conf"]
  configTemplates:
    app.conf: "task={{.TASK_ID}}"
"#;
    const EXAMPLE_CANONICAL: &str = r#"{"configTemplates":{"app.conf":"task={{.TASK_ID}}"},"deployTemplates":[{"name":"main","spec":{"containers":[{"command":["sh","-c","cat /etc/app/app.conf"],"name":"app"}],"restartPolicy":"Never"}}],"image":{"name":"busybox","tag":"1.36"}}"#;

    fn example() -> AppImage {
        serde_yaml_ng::from_str(EXAMPLE).unwrap()
    }

    fn image() -> AppImage {
        let mut image = example();
        image.spec.image.id = Some("d4ffa123aa45mnkj".into());
        image
    }

    fn keys_of(privates: &[&str]) -> Vec<TrustedKey> {
        privates
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let public = public_key_pem(p).unwrap();
                TrustedKey::from_pem(&format!("k{i}.pem"), &public).unwrap()
            })
            .collect()
    }

    fn signed(private: &str) -> (AppImage, Vec<TrustedKey>) {
        let mut img = image();
        img.spec.image.sign = Some(sign(&payload(&img), private).unwrap());
        (img, keys_of(&[private]))
    }

    fn now() -> jiff::Timestamp {
        "2026-12-07T00:00:00Z".parse().unwrap()
    }

    fn check(img: &AppImage, keys: &[TrustedKey]) -> Result<Accepted, SignatureError> {
        verify(img, keys, &Requirement::default(), now())
    }

    #[test]
    fn payload_v1_is_canonical() {
        assert_eq!(
            String::from_utf8(payload_v1(&image().spec.image)).unwrap(),
            r#"{"apiVersion":"kuscia.secretflow/v1alpha1","kind":"AppImageSignaturePayload","name":"busybox","tag":"1.36","id":"d4ffa123aa45mnkj"}"#
        );
    }

    #[test]
    fn worked_example_bytes() {
        let img = example();
        assert_eq!(
            String::from_utf8(canonical_spec(&img.spec)).unwrap(),
            EXAMPLE_CANONICAL
        );
        let digest = hex(&Sha256::digest(EXAMPLE_CANONICAL.as_bytes()));
        let want = format!(
            r#"{{"apiVersion":"kuscia.secretflow/v1alpha1","kind":"AppImageSignaturePayload","version":"v2","name":"hello","spec":"sha256:{digest}"}}"#
        );
        assert_eq!(String::from_utf8(payload(&img)).unwrap(), want);
        // A signature does not sign itself.
        let mut signed = img.clone();
        signed.spec.image.sign = Some("c2ln".into());
        assert_eq!(payload(&signed), payload(&img));
        // The README shows these bytes; keep it true.
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(EXAMPLE_CANONICAL),
            "README lacks the canonical spec"
        );
        assert!(readme.contains(&want), "README lacks the payload {want}");
    }

    #[test]
    fn both_algorithms_sign_and_verify() {
        for private in [EC_PRIVATE, ED_PRIVATE] {
            let (img, keys) = signed(private);
            let ok = check(&img, &keys).unwrap();
            assert_eq!(ok.keys, ["k0.pem"]);
            assert_eq!(ok.weaker, None);
            // Deterministic.
            assert_eq!(sign(&payload(&img), private), sign(&payload(&img), private));
        }
    }

    #[test]
    fn every_part_of_the_spec_and_the_name_is_covered() {
        let (img, keys) = signed(EC_PRIVATE);
        let mut command = img.clone();
        command.spec.deploy_templates[0].spec.containers[0].command = vec!["evil".into()];
        let mut config = img.clone();
        config
            .spec
            .config_templates
            .insert("app.conf".into(), "x".into());
        let mut tag = img.clone();
        tag.spec.image.tag = "v2".into();
        let mut renamed = img.clone();
        renamed.metadata.name = Some("other".into());
        for bad in [command, config, tag, renamed] {
            assert!(matches!(
                check(&bad, &keys),
                Err(SignatureError::Mismatch { tried: 1, .. })
            ));
        }
    }

    #[test]
    fn changed_paths_name_the_fields() {
        let img = image();
        let mut changed = img.clone();
        changed.spec.deploy_templates[0].spec.containers[0].command = vec!["evil".into()];
        changed.spec.image.sign = Some("ignored".into());
        assert_eq!(
            changed_paths(&img.spec, &changed.spec),
            ["spec.deployTemplates[0].spec.containers[0].command"]
        );
        let err = SignatureError::Mismatch {
            tried: 1,
            changed: String::new(),
        }
        .with_changes(&changed_paths(&img.spec, &changed.spec));
        assert!(
            err.to_string()
                .contains("(changed: spec.deployTemplates[0]"),
            "{err}"
        );
    }

    #[test]
    fn v1_counts_only_when_allowed_and_then_warns() {
        let mut img = image();
        img.spec.image.sign = Some(sign(&payload_v1(&img.spec.image), EC_PRIVATE).unwrap());
        let keys = keys_of(&[EC_PRIVATE]);
        assert_eq!(
            check(&img, &keys),
            Err(SignatureError::OnlyV1 {
                key: "k0.pem".into()
            })
        );
        let allow = Requirement {
            accept_v1: true,
            min_signers: 1,
        };
        let ok = verify(&img, &keys, &allow, now()).unwrap();
        assert!(ok.weaker.unwrap().contains("payload v1"));
    }

    #[test]
    fn k_of_n_counts_distinct_trusted_keys() {
        let keys = keys_of(&[EC_PRIVATE, ED_PRIVATE]);
        let mut img = image();
        let first = sign(&payload(&img), EC_PRIVATE).unwrap();
        img.spec.image.sign = Some(join_signatures(None, &first));
        // The same signature twice is still one key.
        img.spec.image.sign = Some(join_signatures(img.spec.image.sign.as_deref(), &first));
        let two = Requirement {
            accept_v1: false,
            min_signers: 2,
        };
        let err = verify(&img, &keys, &two, now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the AppImage has 1 valid signature(s) by distinct trusted keys (k0.pem) and needs 2: add signatures with `kubectl appimage sign --add --key KEY`"
        );
        let second = sign(&payload(&img), ED_PRIVATE).unwrap();
        img.spec.image.sign = Some(join_signatures(img.spec.image.sign.as_deref(), &second));
        assert_eq!(
            img.spec.image.sign.as_deref().unwrap().matches(',').count(),
            1
        );
        let ok = verify(&img, &keys, &two, now()).unwrap();
        assert_eq!(ok.keys, ["k0.pem", "k1.pem"]);
        // Zero never means "no signature needed".
        let zero = Requirement {
            accept_v1: false,
            min_signers: 0,
        };
        let mut unsigned = img.clone();
        unsigned.spec.image.sign = None;
        assert_eq!(
            verify(&unsigned, &keys, &zero, now()),
            Err(SignatureError::Unsigned)
        );
    }

    #[test]
    fn revoked_and_expired_keys() {
        let (img, mut keys) = signed(EC_PRIVATE);
        let policy = KeyPolicy::parse(
            "keys:\n  k0.pem: {notBefore: \"2026-01-01T00:00:00Z\", notAfter: \"2026-06-01T00:00:00Z\"}\n",
        )
        .unwrap();
        policy.apply(&mut keys);
        assert_eq!(
            check(&img, &keys).unwrap_err().to_string(),
            "spec.image.sign was signed with key k0.pem, which is expired at 2026-06-01T00:00:00Z: re-sign the AppImage with a key valid now"
        );
        let revoked = KeyPolicy::parse("revoked: [k0.pem]").unwrap();
        revoked.apply(&mut keys);
        assert_eq!(
            check(&img, &keys),
            Err(SignatureError::Revoked {
                key: "k0.pem".into()
            })
        );
        KeyPolicy::default().apply(&mut keys);
        assert!(check(&img, &keys).is_ok());
        let bad = KeyPolicy::parse("keys: {k0.pem: {notAfter: tomorrow}}").unwrap_err();
        assert!(bad.contains("keys.k0.pem.notAfter \"tomorrow\""), "{bad}");
        assert!(KeyPolicy::parse("revokd: [x]").is_err());
    }

    #[test]
    fn clear_errors() {
        let (img, keys) = signed(ED_PRIVATE);
        let mut unsigned = img.clone();
        unsigned.spec.image.sign = None;
        assert_eq!(check(&unsigned, &keys), Err(SignatureError::Unsigned));
        let mut garbage = img.clone();
        garbage.spec.image.sign = Some("abc13mnjh1olkkp1!".into());
        assert!(matches!(
            check(&garbage, &keys),
            Err(SignatureError::NotBase64(_))
        ));
        assert_eq!(check(&img, &[]), Err(SignatureError::NoKeys));
        let ec_keys = keys_of(&[EC_PRIVATE]);
        assert!(matches!(
            check(&img, &ec_keys),
            Err(SignatureError::Mismatch { tried: 1, .. })
        ));
        assert!(TrustedKey::from_pem("x", "not a key").is_err());
        assert!(sign(b"x", "not a key").is_err());
    }
}
