//! Keys, signatures and the signed payloads: `TrustedKey::from_pem`, `verify` with fuzzed
//! `spec.image.sign` strings (one or several, comma-separated), `payload` (v2) and `payload_v1`,
//! `sign` / `public_key_pem` with fuzzed private keys, and the key policy parser.
//!
//! Input: `PUBLIC_PEM 0xFF SIGN 0xFF NAME 0xFF TAG 0xFF ID 0xFF PRIVATE_PEM 0xFF POLICY`.
//! Invariants:
//! - never a panic; every error renders as text;
//! - payload v1 is JSON holding exactly apiVersion, kind, name, tag, id, the fields verbatim;
//!   payload v2 holds apiVersion, kind, version, name (the AppImage's) and the spec hash;
//! - a fuzzed sign string verifies under the fixed trusted keys only if it is bound to the
//!   spec (checked by re-verifying after changing the tag and, separately, the AppImage name);
//! - a signature made with a fuzzed private key verifies with its own public key, and not once
//!   the tag changes; a fixed key's signature never verifies for a swapped name and tag;
//! - a policy that parses and revokes a key makes everything it signed fail.
#![no_main]

use appimage::resource::{AppImage, AppImageSpec, ImageInfo};
use appimage::signature::{
    KeyPolicy, Requirement, TrustedKey, payload, payload_v1, public_key_pem, sign, verify,
};
use appimage_fuzz::{EC_PRIVATE, ED_PRIVATE, split, trusted_keys};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn part(parts: &[String], i: usize) -> String {
    parts.get(i).cloned().unwrap_or_default()
}

fn check(image: &AppImage, keys: &[TrustedKey]) -> Result<Vec<String>, String> {
    let now = "2026-12-07T00:00:00Z".parse().expect("time");
    verify(image, keys, &Requirement::default(), now)
        .map(|a| a.keys)
        .map_err(|e| e.to_string())
}

fuzz_target!(|data: &[u8]| {
    let parts = split(data);
    let (public, sig) = (part(&parts, 0), part(&parts, 1));
    let info = ImageInfo {
        name: part(&parts, 2),
        tag: part(&parts, 3),
        id: parts.get(4).cloned(),
        sign: Some(sig.clone()),
    };
    let spec = AppImageSpec {
        config_templates: Default::default(),
        deploy_templates: Vec::new(),
        image: info.clone(),
    };
    let image = AppImage::new(&part(&parts, 2), spec);
    let private = part(&parts, 5);

    let v1: Value = serde_json::from_slice(&payload_v1(&info)).expect("payload v1 is JSON");
    let v1 = v1.as_object().expect("payload v1 is an object");
    assert_eq!(v1.len(), 5, "payload v1 fields: {v1:?}");
    assert_eq!(v1["tag"].as_str(), Some(info.tag.as_str()));
    assert_eq!(v1["id"].as_str(), Some(info.id.as_deref().unwrap_or("")));
    let bytes = payload(&image);
    let v2: Value = serde_json::from_slice(&bytes).expect("payload v2 is JSON");
    assert_eq!(v2.as_object().map(|o| o.len()), Some(5), "payload v2 fields: {v2}");
    assert_eq!(v2["version"], "v2");
    assert_eq!(v2["name"].as_str(), image.metadata.name.as_deref());

    match TrustedKey::from_pem("fuzz.pub", &public) {
        Ok(key) => {
            let _ = key.algorithm();
            if let Err(e) = check(&image, std::slice::from_ref(&key)) {
                assert!(!e.is_empty());
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.pub")),
    }

    // A fuzzed signature against the trusted keys: if it verifies, it is bound to the spec.
    let keys = trusted_keys();
    if check(&image, keys).is_ok() {
        let mut other = image.clone();
        other.spec.image.tag.push('x');
        assert!(check(&other, keys).is_err(), "signature not bound to the tag");
        let mut renamed = image.clone();
        renamed.metadata.name = Some(format!("{}x", part(&parts, 2)));
        assert!(check(&renamed, keys).is_err(), "signature not bound to the name");
    }

    if let Ok(signature) = sign(&bytes, &private) {
        let public = public_key_pem(&private).expect("a key that signs has a public key");
        let key = TrustedKey::from_pem("own.pub", &public).expect("own public key parses");
        let mut signed = image.clone();
        signed.spec.image.sign = Some(signature);
        assert_eq!(check(&signed, std::slice::from_ref(&key)), Ok(vec!["own.pub".to_string()]));
        signed.spec.image.tag.push('x');
        assert!(check(&signed, &[key]).is_err());
    }

    // A fuzzed key policy: errors render; a revocation of a signer refuses what it signed.
    if let Some(text) = parts.get(6) {
        match KeyPolicy::parse(text) {
            Ok(policy) => {
                let mut revoking = policy.clone();
                revoking.revoked.push("ec.pub".into());
                let mut keys = trusted_keys().to_vec();
                revoking.apply(&mut keys);
                let mut signed = image.clone();
                signed.spec.image.sign = Some(sign(&bytes, EC_PRIVATE).expect("fixed key signs"));
                assert!(check(&signed, &keys).is_err(), "a revoked key still counts");
            }
            Err(e) => assert!(!e.is_empty()),
        }
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
        signed.spec.image.sign = Some(spaced);
        assert!(check(&signed, keys).is_ok(), "own signature does not verify");
        let info = &mut signed.spec.image;
        if info.name != info.tag {
            std::mem::swap(&mut info.name, &mut info.tag);
            assert!(check(&signed, keys).is_err(), "name and tag swapped still verify");
        }
    }
});
