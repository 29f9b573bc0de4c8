//! TLS: a rustls server config (ring provider) whose certificate and client CA are swapped in
//! place when the files change, so new handshakes get them without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

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
    /// `None` for a fixed pair (`appimage-webhook dev`), which nothing reloads.
    _watch: Option<DirWatch>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// Verifies client certificates against the CA bundle last read from `--client-ca-file`; the
/// bundle is swapped together with the serving pair when the files change.
#[derive(Debug)]
pub struct ClientCa {
    current: ArcSwap<Verifier>,
}

#[derive(Debug)]
struct Verifier(Arc<dyn ClientCertVerifier>);

impl ClientCa {
    fn set(&self, verifier: Arc<dyn ClientCertVerifier>) {
        self.current.store(Arc::new(Verifier(verifier)));
    }
}

impl ClientCertVerifier for ClientCa {
    fn offer_client_auth(&self) -> bool {
        self.current.load().0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current.load().0.client_auth_mandatory()
    }

    // No CA names hinted: they would have to outlive a reload. Clients (the API server) send
    // their one certificate anyway, and verification uses the current bundle.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verifier = self.current.load();
        verifier
            .0
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let verifier = self.current.load();
        verifier.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let verifier = self.current.load();
        verifier.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().0.supported_verify_schemes()
    }
}

/// A verifier of client certificates signed by the PEM bundle `pem` (read from `path`).
fn client_verifier(
    path: &Path,
    pem: &[u8],
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, CertError> {
    let bad = |message: String| CertError::ClientCa {
        path: path.to_path_buf(),
        message,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    // Optional at the handshake so kubelet probes (which carry no client certificate) still
    // reach /healthz; the admission paths refuse requests without one.
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// The files' contents last loaded.
#[derive(PartialEq, Eq)]
struct Loaded {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Loaded {
    fn read(files: &TlsFiles) -> Result<Loaded, CertError> {
        Ok(Loaded {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
            client_ca: files.client_ca.as_deref().map(read).transpose()?,
        })
    }
}

/// What serves TLS: the pair, and the client CA when mTLS is on.
struct Served {
    resolver: Arc<CertResolver>,
    client_ca: Option<Arc<ClientCa>>,
}

/// Load the pair (and client CA), and start watching their directories.
/// Needs a tokio runtime.
pub fn load(files: &TlsFiles, metrics: Metrics) -> Result<Tls, CertError> {
    let provider = provider();
    let loaded = Loaded::read(files)?;
    let key = certified_key(
        &files.cert,
        &loaded.cert,
        &files.key,
        &loaded.key,
        &provider,
    )?;
    let resolver = Arc::new(CertResolver::new(key));
    let client_ca = match (&files.client_ca, &loaded.client_ca) {
        (Some(path), Some(pem)) => Some(Arc::new(ClientCa {
            current: ArcSwap::from_pointee(Verifier(client_verifier(path, pem, &provider)?)),
        })),
        _ => None,
    };
    let config = server_config(&provider, &resolver, client_ca.clone())?;

    let mut dirs = Vec::new();
    for path in [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ] {
        let dir = path.map(|p| parent_dir(p));
        if let Some(dir) = dir.filter(|d| !dirs.contains(d)) {
            dirs.push(dir);
        }
    }
    let served = Served {
        resolver: resolver.clone(),
        client_ca: client_ca.clone(),
    };
    let (files_watched, mut last) = (files.clone(), loaded);
    let watch = watch_dirs(dirs, move || {
        reload(&served, &files_watched, &mut last, &metrics);
    })?;
    Ok(Tls {
        config: Arc::new(config),
        resolver,
        client_auth: client_ca.is_some(),
        _watch: Some(watch),
    })
}

/// A pair held in memory and never reloaded (`appimage-webhook dev`); no client certificates.
pub fn fixed(key: CertifiedKey) -> Result<Tls, CertError> {
    let resolver = Arc::new(CertResolver::new(key));
    let config = server_config(&provider(), &resolver, None)?;
    Ok(Tls {
        config: Arc::new(config),
        resolver,
        client_auth: false,
        _watch: None,
    })
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    resolver: &Arc<CertResolver>,
    client_ca: Option<Arc<ClientCa>>,
) -> Result<ServerConfig, CertError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Re-read the files; on any failure keep serving what was loaded before.
fn reload(served: &Served, files: &TlsFiles, last: &mut Loaded, metrics: &Metrics) {
    let failed = |e: CertError| {
        metrics.tls_reloaded(false);
        tracing::error!("TLS reload failed, keeping the current certificate and client CA: {e}");
    };
    let loaded = match Loaded::read(files) {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    if loaded == *last {
        return;
    }
    let provider = provider();
    // Both are built before either is swapped: a half-written change swaps nothing (the write
    // of the other file triggers a retry).
    let key = certified_key(
        &files.cert,
        &loaded.cert,
        &files.key,
        &loaded.key,
        &provider,
    );
    let key = match key {
        Ok(k) => k,
        Err(e) => return failed(e),
    };
    let verifier = match (&files.client_ca, &loaded.client_ca) {
        (Some(path), Some(pem)) => match client_verifier(path, pem, &provider) {
            Ok(v) => Some(v),
            Err(e) => return failed(e),
        },
        _ => None,
    };
    served.resolver.set(key);
    if let (Some(client_ca), Some(verifier)) = (&served.client_ca, verifier) {
        client_ca.set(verifier);
    }
    *last = loaded;
    metrics.tls_reloaded(true);
    tracing::info!(cert = %files.cert.display(), client_ca = ?files.client_ca, reloads = metrics.tls_reloads(),
        "reloaded TLS certificate and client CA");
}
