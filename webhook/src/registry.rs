//! The registry: what an AppImage's `name:tag` is in its OCI registry, read once per image and
//! id, so that admission pins Pods to the manifest whose image ID was signed
//! ([`appimage::image_id`]). Admission itself stays synchronous: it asks [`Registry::known`];
//! on a miss the handler awaits [`Registry::check`] and admits again.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use appimage::image_id::{self, Found, Pinned};
use appimage::resource::ImageInfo;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// A verdict that is not a pin (a mismatch, an unreachable registry) is asked again after
/// this long, so pushing the signed image again heals without a restart.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Verdicts kept; past it they are forgotten all at once (then read again once).
const LIMIT: usize = 10_000;
/// Admission's own deadline is 5 s by default (the chart's timeoutSeconds).
const TIMEOUT: Duration = Duration::from_secs(3);

/// How to reach registries: `--registry-auth-file`, `--insecure-registry`.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// A Docker `config.json` (`auths`: host -> `auth` or `username`/`password`).
    pub auth_file: Option<PathBuf>,
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
}

type Key = (String, String, String);

struct Verdict {
    result: Result<Pinned, String>,
    at: Instant,
}

pub struct Registry {
    client: Client,
    auths: HashMap<String, RegistryAuth>,
    known: Mutex<HashMap<Key, Verdict>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("auths", &self.auths.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(config: &RegistryConfig) -> anyhow::Result<Registry> {
        crate::certs::install_default_provider();
        let auths = match &config.auth_file {
            Some(path) => read_auths(path)?,
            None => HashMap::new(),
        };
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(config.insecure.clone()),
            connect_timeout: Some(TIMEOUT),
            read_timeout: Some(TIMEOUT),
            ..ClientConfig::default()
        });
        Ok(Registry {
            client,
            auths,
            known: Mutex::default(),
        })
    }

    /// The verdict on `image` if it is known and current; `None`: [`Registry::check`] it.
    pub fn known(&self, image: &ImageInfo) -> Option<Result<Pinned, String>> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let verdict = known.get(&key(image)?)?;
        let stale = verdict.result.is_err() && verdict.at.elapsed() > RETRY_AFTER;
        (!stale).then(|| verdict.result.clone())
    }

    /// Read `image`'s `name:tag` from its registry and keep the verdict.
    pub async fn check(&self, image: &ImageInfo) {
        let Some(key) = key(image) else { return };
        let result = match self.read(image).await {
            Ok(found) => image_id::pin(image, &found),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::warn!(image = %image.reference(), "image id check: {e}");
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= LIMIT {
            known.clear();
        }
        let at = Instant::now();
        known.insert(key, Verdict { result, at });
    }

    /// The manifest `name:tag` has for this platform, and its config digest.
    async fn read(&self, image: &ImageInfo) -> Result<Found, String> {
        let name_tag = image.reference();
        let reference: Reference = name_tag
            .parse()
            .map_err(|e| format!("{name_tag:?} is not an image reference: {e}"))?;
        let auth = self
            .auths
            .get(reference.resolve_registry())
            .cloned()
            .unwrap_or(RegistryAuth::Anonymous);
        let pull = self.client.pull_image_manifest(&reference, &auth);
        let (manifest, digest) = match tokio::time::timeout(TIMEOUT, pull).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Err(unreadable(&name_tag, &e.to_string())),
            Err(_) => {
                return Err(unreadable(
                    &name_tag,
                    &format!("no answer within {TIMEOUT:?}"),
                ));
            }
        };
        Ok(Found {
            manifest: digest,
            config: manifest.config.digest,
        })
    }
}

fn key(image: &ImageInfo) -> Option<Key> {
    let id = image_id::checked_id(image)?;
    Some((image.name.clone(), image.tag.clone(), id.to_string()))
}

fn unreadable(name_tag: &str, why: &str) -> String {
    format!(
        "cannot read {name_tag} from its registry to check spec.image.id ({why}); the webhook pins Pods only to the manifest whose image ID was signed: give it access (--registry-auth-file, --insecure-registry for a plain-HTTP registry), or turn the check off with --verify-image-ids=false; the Pod is retried by its controller"
    )
}

/// Docker's `config.json`: per registry host, `auth` (base64 `user:password`) or the two apart.
fn read_auths(path: &Path) -> anyhow::Result<HashMap<String, RegistryAuth>> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: HashMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --registry-auth-file {}", path.display()))?;
    let file: File = serde_json::from_str(&text).with_context(|| {
        format!(
            "--registry-auth-file {} is not a Docker config.json ({{\"auths\": {{HOST: {{\"auth\": BASE64}}}}}})",
            path.display()
        )
    })?;
    let mut auths = HashMap::new();
    for (host, entry) in file.auths {
        let (user, password) = match (entry.auth, entry.username, entry.password) {
            (Some(auth), _, _) => split_auth(&auth)
                .with_context(|| format!("{}: auths.{host:?}.auth", path.display()))?,
            (None, Some(user), Some(password)) => (user, password),
            _ => anyhow::bail!(
                "{}: auths.{host:?} has neither auth nor username and password",
                path.display()
            ),
        };
        auths.insert(registry_host(&host), RegistryAuth::Basic(user, password));
    }
    Ok(auths)
}

fn split_auth(auth: &str) -> anyhow::Result<(String, String)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .context("not base64")?;
    let text = String::from_utf8(bytes).context("not UTF-8 once decoded")?;
    let (user, password) = text
        .split_once(':')
        .context("not user:password once decoded")?;
    Ok((user.to_string(), password.to_string()))
}

/// `https://index.docker.io/v1/` and `docker.io` are the host the client resolves to.
fn registry_host(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or_default();
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auths_are_read_by_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"},
                "127.0.0.1:5000": {"username": "a", "password": "b:c"}}}"#,
        )
        .unwrap();
        let auths = read_auths(&path).unwrap();
        let basic = |h: &str| match &auths[h] {
            RegistryAuth::Basic(u, p) => (u.clone(), p.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(basic("index.docker.io"), ("u".into(), "p".into()));
        assert_eq!(basic("127.0.0.1:5000"), ("a".into(), "b:c".into()));
        std::fs::write(&path, r#"{"auths": {"h": {"auth": "bm9jb2xvbg=="}}}"#).unwrap();
        let e = format!("{:#}", read_auths(&path).unwrap_err());
        assert!(
            e.contains("auths.\"h\".auth") && e.contains("user:password"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_a_verdict_that_says_how_to_fix_it() {
        let registry = Registry::new(&RegistryConfig {
            auth_file: None,
            insecure: vec!["127.0.0.1:9".into()],
        })
        .unwrap();
        let image = ImageInfo {
            name: "127.0.0.1:9/app".into(),
            tag: "1".into(),
            id: Some(format!("sha256:{}", "c".repeat(64))),
            sign: None,
        };
        assert!(registry.known(&image).is_none());
        registry.check(&image).await;
        let e = registry.known(&image).unwrap().unwrap_err();
        assert!(e.contains("cannot read 127.0.0.1:9/app:1"), "{e}");
        assert!(e.contains("--verify-image-ids=false"), "{e}");
        // An id that is not a digest is not checked (as in Kuscia).
        let plain = ImageInfo {
            id: Some("abc".into()),
            ..image
        };
        registry.check(&plain).await;
        assert!(registry.known(&plain).is_none());
    }
}
