//! TLS: a rustls server config (ring provider) whose certificate is swapped in place when
//! the files change, so new handshakes get the new pair without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::metrics::Metrics;
use crate::watch::{DirWatch, parent_dir, watch_dirs};

/// The files TLS is configured from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates signed by this CA bundle are required on admission paths.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("reading {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: no PEM CERTIFICATE found")]
    NoCert { path: PathBuf },
    #[error("{cert} / {key}: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("client CA {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
    #[error("TLS config: {0}")]
    Config(#[from] rustls::Error),
    #[error("watching the certificate directory: {0}")]
    Watch(#[from] notify::Error),
}

/// The ring provider, the only one this binary builds with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make ring the process-wide default (kube's client and ours agree); repeat calls are no-ops.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Hands every handshake the current pair.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertResolver {
    pub fn new(key: CertifiedKey) -> CertResolver {
        CertResolver {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// The leaf certificate now served.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current.load().cert.first().cloned()
    }

    pub fn set(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| CertError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Parse a PEM chain and key, checking that they belong together.
pub fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Read {
            path: cert_path.to_path_buf(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCert {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Read {
        path: key_path.to_path_buf(),
        message: format!("no usable PEM private key ({e})"),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| CertError::Pair {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        source,
    })
}

/// A served TLS config plus the watch that keeps its certificate fresh.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub resolver: Arc<CertResolver>,
    /// Whether a client certificate is verified when presented (mTLS).
    pub client_auth: bool,
    _watch: DirWatch,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// Load the pair (and client CA), and start watching the pair's directories.
/// Needs a tokio runtime.
pub fn load(files: &TlsFiles, metrics: Metrics) -> Result<Tls, CertError> {
    let provider = provider();
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let key = certified_key(&files.cert, &cert_pem, &files.key, &key_pem, &provider)?;
    let resolver = Arc::new(CertResolver::new(key));

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let bad = |message: String| CertError::ClientCa {
                path: ca.clone(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read(ca)?) {
                roots
                    .add(cert.map_err(|e| bad(e.to_string()))?)
                    .map_err(|e| bad(e.to_string()))?;
            }
            // Optional at the handshake so kubelet probes (which carry no client certificate)
            // still reach /healthz; the admission paths refuse requests without one.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| bad(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let mut dirs = vec![parent_dir(&files.cert)];
    let key_dir = parent_dir(&files.key);
    if !dirs.contains(&key_dir) {
        dirs.push(key_dir);
    }
    let weak = Arc::downgrade(&resolver);
    let (cert_path, key_path) = (files.cert.clone(), files.key.clone());
    let mut last = (cert_pem, key_pem);
    let watch = watch_dirs(dirs, move || {
        let Some(resolver) = weak.upgrade() else {
            return;
        };
        reload(&resolver, &cert_path, &key_path, &mut last, &metrics);
    })?;
    Ok(Tls {
        config: Arc::new(config),
        resolver,
        client_auth: files.client_ca.is_some(),
        _watch: watch,
    })
}

/// Re-read both files; on any failure keep serving the old pair.
fn reload(
    resolver: &CertResolver,
    cert_path: &Path,
    key_path: &Path,
    last: &mut (Vec<u8>, Vec<u8>),
    metrics: &Metrics,
) {
    let pair = read(cert_path).and_then(|c| read(key_path).map(|k| (c, k)));
    let (cert_pem, key_pem) = match pair {
        Ok(p) => p,
        Err(e) => {
            metrics.tls_reloaded(false);
            tracing::error!("TLS reload failed, keeping the current certificate: {e}");
            return;
        }
    };
    if (&cert_pem, &key_pem) == (&last.0, &last.1) {
        return;
    }
    match certified_key(cert_path, &cert_pem, key_path, &key_pem, &provider()) {
        Ok(key) => {
            resolver.set(key);
            *last = (cert_pem, key_pem);
            metrics.tls_reloaded(true);
            tracing::info!(cert = %cert_path.display(), reloads = metrics.tls_reloads(), "reloaded TLS certificate");
        }
        Err(e) => {
            // A half-written pair fails here; the write of the other file triggers a retry.
            metrics.tls_reloaded(false);
            tracing::error!("TLS reload failed, keeping the current certificate: {e}");
        }
    }
}
