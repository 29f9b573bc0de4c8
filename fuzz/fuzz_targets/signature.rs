//! Keys, signatures and the signed payload: `TrustedKey::from_pem`, `verify` with fuzzed
//! `spec.image.sign` strings, `payload`, and `sign` / `public_key_pem` with fuzzed private keys.
//!
//! Input: `PUBLIC_PEM 0xFF SIGN 0xFF NAME 0xFF TAG 0xFF ID 0xFF PRIVATE_PEM`.
//! Invariants:
//! - never a panic; every error renders as text;
//! - the payload is JSON holding exactly apiVersion, kind, name, tag, id, the fields verbatim;
//! - a fuzzed sign string verifies under the fixed trusted keys only if it is that key's
//!   signature over exactly this payload (checked by re-verifying after changing the tag);
//! - a signature made with a fuzzed private key verifies with its own public key, and not once
//!   the tag changes; a signature by a fixed key never verifies for a swapped name and tag.
#![no_main]

use appimage::resource::ImageInfo;
use appimage::signature::{TrustedKey, payload, public_key_pem, sign, verify};
use appimage_fuzz::{EC_PRIVATE, ED_PRIVATE, split, trusted_keys};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn part(parts: &[String], i: usize) -> String {
    parts.get(i).cloned().unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let parts = split(data);
    let (public, sig) = (part(&parts, 0), part(&parts, 1));
    let image = ImageInfo {
        name: part(&parts, 2),
        tag: part(&parts, 3),
        id: parts.get(4).cloned(),
        sign: Some(sig.clone()),
    };
    let private = part(&parts, 5);

    // The payload names exactly the image's fields.
    let bytes = payload(&image);
    let json: Value = serde_json::from_slice(&bytes).expect("payload is JSON");
    let obj = json.as_object().expect("payload is an object");
    assert_eq!(obj.len(), 5, "payload fields: {json}");
    assert_eq!(obj["name"].as_str(), Some(image.name.as_str()));
    assert_eq!(obj["tag"].as_str(), Some(image.tag.as_str()));
    assert_eq!(obj["id"].as_str(), Some(image.id.as_deref().unwrap_or("")));
    assert_eq!(obj["kind"], "AppImageSignaturePayload");

    // A fuzzed public key.
    match TrustedKey::from_pem("fuzz.pub", &public) {
        Ok(key) => {
            let _ = key.algorithm();
            if let Err(e) = verify(&image, std::slice::from_ref(&key)) {
                assert!(!e.to_string().is_empty());
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.pub")),
    }

    // A fuzzed signature against the trusted keys: if it verifies, it is bound to the tag.
    let keys = trusted_keys();
    match verify(&image, keys) {
        Ok(name) => {
            assert!(name == "ec.pub" || name == "ed.pub");
            let mut other = image.clone();
            other.tag.push('x');
            assert!(
                verify(&other, keys).is_err(),
                "signature not bound to the tag"
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    // Signing with a fuzzed private key round-trips through its public key.
    if let Ok(signature) = sign(&bytes, &private) {
        let public = public_key_pem(&private).expect("a key that signs has a public key");
        let key = TrustedKey::from_pem("own.pub", &public).expect("own public key parses");
        let mut signed = image.clone();
        signed.sign = Some(signature);
        assert_eq!(verify(&signed, std::slice::from_ref(&key)), Ok("own.pub"));
        signed.tag.push('x');
        assert!(verify(&signed, &[key]).is_err());
    }

    // Small inputs: a fixed key's signature binds name and tag (no swap), and stays valid
    // with whitespace inside the base64 (as YAML folding may add).
    if data.len() < 256 && data.first().is_some_and(|b| b % 8 == 0) {
        let private = if data.len().is_multiple_of(2) {
            EC_PRIVATE
        } else {
            ED_PRIVATE
        };
        let mut signed = image.clone();
        let signature = sign(&bytes, private).expect("fixed key signs");
        let spaced: String = signature
            .chars()
            .enumerate()
            .flat_map(|(i, c)| (i % 16 == 15).then_some('\n').into_iter().chain([c]))
            .collect();
        signed.sign = Some(spaced);
        assert!(
            verify(&signed, keys).is_ok(),
            "own signature does not verify"
        );
        if signed.name != signed.tag {
            std::mem::swap(&mut signed.name, &mut signed.tag);
            assert!(
                verify(&signed, keys).is_err(),
                "name and tag swapped still verify"
            );
        }
    }
});
