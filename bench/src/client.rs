//! The load generator's HTTPS client: rustls 0.23 (ring) trusting one CA file, keep-alive
//! connections pooled by hyper-util's client, HTTP/1.1 or h2.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The HTTP version spoken to the webhook.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    /// HTTP/1.1 with keep-alive: one request in flight per connection.
    Http1,
    /// HTTP/2 (ALPN h2): requests multiplexed over pooled connections.
    H2,
}

impl HttpVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "http1",
            HttpVersion::H2 => "h2",
        }
    }
}

pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A rustls client config (ring provider) trusting the PEM certificates in `ca`.
pub fn tls_config(ca: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading CA file {}", ca.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing CA file {}", ca.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", ca.display());
    }
    for cert in certs {
        roots
            .add(cert)
            .with_context(|| format!("adding a certificate of {}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A pooled HTTPS client keeping up to `max_idle` connections alive.
pub fn https_client(ca: &Path, http: HttpVersion, max_idle: usize) -> anyhow::Result<HttpsClient> {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(Duration::from_secs(5)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(ca)?)
        .https_only();
    let connector = match http {
        HttpVersion::Http1 => builder.enable_http1().wrap_connector(tcp),
        HttpVersion::H2 => builder.enable_http2().wrap_connector(tcp),
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(Duration::from_secs(90));
    if http == HttpVersion::H2 {
        client.http2_only(true);
    }
    Ok(client.build(connector))
}

/// One request; the status and the whole body.
pub async fn send(
    client: &HttpsClient,
    method: Method,
    url: &str,
    body: Bytes,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut request = Request::builder().method(method).uri(url);
    if !body.is_empty() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(body))
        .context("building the request")?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// GET `url` until it answers 200 or `limit` passes.
pub async fn wait_ok(client: &HttpsClient, url: &str, limit: Duration) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let mut last = String::from("no answer yet");
    while start.elapsed() < limit {
        match send(client, Method::GET, url, Bytes::new()).await {
            Ok((StatusCode::OK, _)) => return Ok(()),
            Ok((status, body)) => {
                last = format!("{status}: {}", String::from_utf8_lossy(&body).trim());
            }
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not answer 200 within {limit:?}: {last}")
}
