//! Image signatures over bytes: the canonical payload, trusted public keys, verification and
//! (deterministic) signing.
//!
//! `spec.image.sign` is the base64 of a signature over [`payload`]: ECDSA P-256 with SHA-256
//! (ASN.1 DER, as `openssl dgst -sha256 -sign key.pem` and `cosign sign-blob` write it) or
//! Ed25519 (64 raw bytes, as `openssl pkeyutl -sign -rawin` writes it).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::resource::ImageInfo;

/// The exact bytes that are signed: compact JSON with the fields in this order and no newline,
/// `{"apiVersion":"kuscia.secretflow/v1alpha1","kind":"AppImageSignaturePayload","name":…,"tag":…,"id":…}`.
/// Every field is a JSON string (an absent id is `""`), so none can be swapped for another.
pub fn payload(image: &ImageInfo) -> Vec<u8> {
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
        api_version: "kuscia.secretflow/v1alpha1",
        kind: "AppImageSignaturePayload",
        name: &image.name,
        tag: &image.tag,
        id: image.id.as_deref().unwrap_or_default(),
    })
    .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "spec.image.sign is empty: the image is not signed; sign it with `kubectl appimage sign -f FILE --key KEY`"
    )]
    Unsigned,
    #[error("spec.image.sign is not valid base64 ({0}); it must hold the base64 of the signature")]
    NotBase64(String),
    #[error(
        "no trusted public key is configured; add PEM public keys to the trusted keys directory"
    )]
    NoKeys,
    #[error(
        "spec.image.sign does not verify with any of the {tried} trusted key(s): the image name, tag or id changed after signing, or it was signed with an untrusted key; re-sign it with `kubectl appimage sign`"
    )]
    Mismatch { tried: usize },
    #[error("key {name}: {message}")]
    BadKey { name: String, message: String },
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
}

impl TrustedKey {
    /// Read a PEM `PUBLIC KEY` (SubjectPublicKeyInfo): ECDSA P-256 or Ed25519.
    pub fn from_pem(name: &str, pem: &str) -> Result<TrustedKey, SignatureError> {
        use p256::pkcs8::DecodePublicKey;
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
            return Ok(TrustedKey {
                name: name.into(),
                key: Key::EcdsaP256(k),
            });
        }
        match ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            Ok(k) => Ok(TrustedKey {
                name: name.into(),
                key: Key::Ed25519(k),
            }),
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

/// Check `image.sign` against the trusted keys; on success, the name of the key that verified.
pub fn verify<'k>(image: &ImageInfo, keys: &'k [TrustedKey]) -> Result<&'k str, SignatureError> {
    let sign = image.sign.as_deref().map(str::trim).unwrap_or_default();
    if sign.is_empty() {
        return Err(SignatureError::Unsigned);
    }
    let compact: String = sign.split_whitespace().collect();
    let sig = STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| SignatureError::NotBase64(e.to_string()))?;
    if keys.is_empty() {
        return Err(SignatureError::NoKeys);
    }
    let message = payload(image);
    keys.iter()
        .find(|k| k.verifies(&message, &sig))
        .map(|k| k.name.as_str())
        .ok_or(SignatureError::Mismatch { tried: keys.len() })
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
mod tests {
    use super::*;

    // Fixed test keys, so this unit test needs no randomness.
    const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPLIyR0jvJ+Ezhv3s
hN0xk0U0wwsEXtHpamrmi+V6j/ahRANCAARaUWZtvOStU9E9U4DeUuzsEcJg9zu9
A++6nLxoZQAcm9bD+qzqEICxzjkKS3TIG3j5qaxa/4zlw6oKHkBv+x6L
-----END PRIVATE KEY-----
";
    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKmSRvr3YuYT7IxALrwwR5+9YtWqTdiKA9Qm2/u5zxyh
-----END PRIVATE KEY-----
";

    fn image() -> ImageInfo {
        ImageInfo {
            name: "secretflow/secretflow-lite-anolis8".into(),
            tag: "latest".into(),
            id: Some("d4ffa123aa45mnkj".into()),
            sign: None,
        }
    }

    fn signed(private: &str) -> (ImageInfo, Vec<TrustedKey>) {
        let mut img = image();
        img.sign = Some(sign(&payload(&img), private).unwrap());
        let public = public_key_pem(private).unwrap();
        (img, vec![TrustedKey::from_pem("k.pem", &public).unwrap()])
    }

    #[test]
    fn payload_is_canonical() {
        assert_eq!(
            String::from_utf8(payload(&image())).unwrap(),
            r#"{"apiVersion":"kuscia.secretflow/v1alpha1","kind":"AppImageSignaturePayload","name":"secretflow/secretflow-lite-anolis8","tag":"latest","id":"d4ffa123aa45mnkj"}"#
        );
    }

    #[test]
    fn both_algorithms_sign_and_verify() {
        for private in [EC_PRIVATE, ED_PRIVATE] {
            let (img, keys) = signed(private);
            assert_eq!(verify(&img, &keys), Ok("k.pem"));
            // Deterministic.
            assert_eq!(sign(&payload(&img), private), sign(&payload(&img), private));
        }
    }

    #[test]
    fn no_field_can_be_changed_or_swapped() {
        let (img, keys) = signed(EC_PRIVATE);
        let mut tag = img.clone();
        tag.tag = "v2".into();
        let mut swapped = img.clone();
        swapped.tag = img.id.clone().unwrap();
        swapped.id = Some(img.tag.clone());
        let mut id = img.clone();
        id.id = None;
        for bad in [tag, swapped, id] {
            assert_eq!(
                verify(&bad, &keys),
                Err(SignatureError::Mismatch { tried: 1 })
            );
        }
    }

    #[test]
    fn clear_errors() {
        let (img, keys) = signed(ED_PRIVATE);
        let mut unsigned = img.clone();
        unsigned.sign = None;
        assert_eq!(verify(&unsigned, &keys), Err(SignatureError::Unsigned));
        let mut garbage = img.clone();
        garbage.sign = Some("abc13mnjh1olkkp1!".into());
        assert!(matches!(
            verify(&garbage, &keys),
            Err(SignatureError::NotBase64(_))
        ));
        assert_eq!(verify(&img, &[]), Err(SignatureError::NoKeys));
        let (_, ec_keys) = signed(EC_PRIVATE);
        assert_eq!(
            verify(&img, &ec_keys),
            Err(SignatureError::Mismatch { tried: 1 })
        );
        assert!(TrustedKey::from_pem("x", "not a key").is_err());
        assert!(sign(b"x", "not a key").is_err());
    }
}
