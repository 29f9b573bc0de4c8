//! Fixtures shared by the fuzz targets: two fixed test key pairs (made with openssl for these
//! targets only; they sign nothing outside this directory), the seed AppImages signed with
//! them, a webhook catalog holding those, and the input splitter.

use std::sync::OnceLock;

use appimage::resource::AppImage;
use appimage::signature::{TrustedKey, payload, sign};
use appimage_webhook::catalog::Catalog;
use appimage_webhook::trust::Trust;
use kube::runtime::watcher::Event;

pub const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg7MG67H6YAjP8esL4
0Y2Ee1kPL2+fOU1EW/u2W6htM7ChRANCAAQPaLArDsaON1KXOsl+6V/Tq7OY7pg3
to1jDIf6yTmWSh7Rbf7Y/mFt2w8lufvjerTwsjAMu4Y0CwcZuAd1p05v
-----END PRIVATE KEY-----
";
pub const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAED2iwKw7GjjdSlzrJfulf06uzmO6Y
N7aNYwyH+sk5lkoe0W3+2P5hbdsPJbn743q08LIwDLuGNAsHGbgHdadObw==
-----END PUBLIC KEY-----
";
pub const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIPoa8QpW3qWRJ/WCHK7XeCOD772GGUIGmk5m4Lq1okBU
-----END PRIVATE KEY-----
";
pub const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAGw6l/PPcII9rLat/3vN4GjHaGGKKyG+L+K+way7atGU=
-----END PUBLIC KEY-----
";

pub const SEED_YAML: &str = include_str!("../../examples/secretflow-image.yaml");
pub const APP_TEMPLATE_YAML: &str = include_str!("../../examples/app-template.yaml");
pub const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

/// Split fuzz input on 0xFF (a byte no UTF-8 text contains) into text parts.
pub fn split(data: &[u8]) -> Vec<String> {
    data.split(|b| *b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// The trusted keys of the catalog (P-256, then Ed25519), parsed once.
pub fn trusted_keys() -> &'static [TrustedKey] {
    static KEYS: OnceLock<Vec<TrustedKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        vec![
            TrustedKey::from_pem("ec.pub", EC_PUBLIC).expect("fixture EC key"),
            TrustedKey::from_pem("ed.pub", ED_PUBLIC).expect("fixture Ed25519 key"),
        ]
    })
}

fn image(yaml: &str, name: &str, rv: &str) -> AppImage {
    let mut img = appimage::manifest::appimages("fixture", yaml)
        .expect("fixture parses")
        .remove(0);
    img.metadata.name = Some(name.into());
    img.metadata.resource_version = Some(rv.into());
    img
}

fn signed(mut img: AppImage, private: &str) -> AppImage {
    img.spec.image.sign = None;
    img.spec.image.sign = Some(sign(&payload(&img), private).expect("fixture signs"));
    img
}

/// The AppImages in the catalog:
/// `demo` (seed, digest id, P-256 signed), `demo-ed` (seed, Ed25519 signed),
/// `app` (app-template: roles server/client, network policy, P-256 signed),
/// `unsigned`, and `retagged` (tag changed after signing).
pub fn appimages() -> Vec<AppImage> {
    let mut demo = image(SEED_YAML, "demo", "10");
    demo.spec.image.id = Some(DIGEST.into());
    let demo = signed(demo, EC_PRIVATE);
    let demo_ed = signed(image(SEED_YAML, "demo-ed", "11"), ED_PRIVATE);
    let app = signed(image(APP_TEMPLATE_YAML, "app", "12"), EC_PRIVATE);
    let mut unsigned = image(SEED_YAML, "unsigned", "13");
    unsigned.spec.image.sign = None;
    let mut retagged = signed(image(SEED_YAML, "retagged", "14"), EC_PRIVATE);
    retagged.spec.image.tag = "evil".into();
    vec![demo, demo_ed, app, unsigned, retagged]
}

/// A webhook catalog (AppImage store + trusted keys) holding [`appimages`], built once.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let (reader, mut writer) = appimage_webhook::catalog::appimages();
        writer.apply_watcher_event(&Event::Init);
        for img in appimages() {
            writer.apply_watcher_event(&Event::InitApply(img));
        }
        writer.apply_watcher_event(&Event::InitDone);
        // The store keeps its contents without the writer; the writer is not Sync.
        std::mem::forget(writer);
        Catalog::new(reader, Trust::fixed(trusted_keys().to_vec()))
    })
}
