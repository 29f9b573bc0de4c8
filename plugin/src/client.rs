//! The connection to the cluster: kubeconfig + context + timeout -> a client for AppImages,
//! and kube errors turned into kubectl's messages.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use appimage::resource::AppImage;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{PluginError, chain, eprint_line, report};
use crate::flags::Global;

/// The field manager named in server-side apply and in writes.
pub const MANAGER: &str = appimage::labels::PLUGIN_MANAGER;
/// kubectl's default `--chunk-size`: lists are read in pages of this many objects.
pub const CHUNK_SIZE: u32 = 500;
/// kubectl's `-v` level from which every API request is logged.
const LOG_REQUESTS: u8 = 6;

/// AppImages on one cluster, with errors already in kubectl's words.
pub struct Cluster {
    api: Api<AppImage>,
    /// `host:port` of the API server, for connection errors.
    server: String,
    context: String,
}

/// Where the kubeconfig comes from: the flag, else `KUBECONFIG`, else `~/.kube/config`.
fn kubeconfig_paths(flag: Option<&Path>) -> Result<Vec<PathBuf>> {
    if let Some(path) = flag {
        if !path.exists() {
            bail!(
                "the kubeconfig {} given with --kubeconfig does not exist; pass an existing file",
                path.display()
            );
        }
        return Ok(vec![path.to_path_buf()]);
    }
    if let Some(value) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let all: Vec<PathBuf> = std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        // kubectl skips listed files that do not exist.
        let existing: Vec<PathBuf> = all.iter().filter(|p| p.exists()).cloned().collect();
        if existing.is_empty() {
            bail!(
                "none of the kubeconfig files in KUBECONFIG exist ({}); fix KUBECONFIG or pass --kubeconfig",
                all.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        return Ok(existing);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            anyhow!("no kubeconfig: HOME and KUBECONFIG are not set; pass --kubeconfig PATH")
        })?;
    let path = PathBuf::from(home).join(".kube").join("config");
    if !path.exists() {
        bail!(
            "no kubeconfig: {} does not exist and KUBECONFIG is not set; pass --kubeconfig PATH or set KUBECONFIG",
            path.display()
        );
    }
    Ok(vec![path])
}

fn read_kubeconfig(paths: &[PathBuf]) -> Result<Kubeconfig> {
    let mut merged = Kubeconfig::default();
    for path in paths {
        let one = Kubeconfig::read_from(path)
            .map_err(|e| anyhow!("cannot load kubeconfig {}: {e}", path.display()))?;
        merged = merged
            .merge(one)
            .map_err(|e| anyhow!("cannot merge kubeconfig {}: {e}", path.display()))?;
    }
    Ok(merged)
}

/// The context to use, checked so a typo gets the list of real names.
fn pick_context(kc: &Kubeconfig, flag: Option<&str>, shown: &str) -> Result<String> {
    let names: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
    let have = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    match flag {
        Some(name) if names.contains(&name) => Ok(name.to_string()),
        Some(name) => bail!(
            "context {name:?} does not exist in kubeconfig {shown} (it has: {have}); pick one with --context"
        ),
        None => match kc.current_context.as_deref().filter(|c| !c.is_empty()) {
            Some(name) if names.contains(&name) => Ok(name.to_string()),
            Some(name) => bail!(
                "the current-context {name:?} of kubeconfig {shown} does not exist (it has: {have}); pick one with --context"
            ),
            None => bail!(
                "kubeconfig {shown} sets no current-context (contexts: {have}); pick one with --context"
            ),
        },
    }
}

/// The layers of kube's `Client::try_from` (less gzip and tracing), but with `TCP_NODELAY`: without it a small request
/// waits out the server's delayed ACK, about 40 ms per call.
fn client(config: Config, log_requests: bool) -> Result<Client> {
    if config.proxy_url.is_some() {
        // kube's own builder knows the proxies.
        return Ok(Client::try_from(config)?);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut timed = hyper_timeout::TimeoutConnector::new(https);
    timed.set_read_timeout(config.read_timeout);
    timed.set_write_timeout(config.write_timeout);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(timed);
    // Same order as kube's builder: each retry (429/503/504) goes through auth again.
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(RetryPolicy::server_retry()));
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .option_layer(log_requests.then_some(tower::layer::layer_fn(LogRequests)))
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

impl Cluster {
    /// Load the kubeconfig and build a client; nothing is sent yet.
    pub async fn connect(global: &Global) -> Result<Cluster> {
        let paths = kubeconfig_paths(global.kubeconfig.as_deref())?;
        let shown = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let kc = read_kubeconfig(&paths)?;
        let context = pick_context(&kc, global.context.as_deref(), &shown)?;
        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..Default::default()
        };
        let mut config = Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| anyhow!("kubeconfig {shown}, context {context:?}: {e}"))?;
        if let Some(timeout) = global.request_timeout {
            // 0 means no timeout, as in kubectl.
            let t = (!timeout.is_zero()).then_some(timeout);
            config.connect_timeout = t;
            config.read_timeout = t;
            config.write_timeout = t;
        }
        let server = config
            .cluster_url
            .authority()
            .map_or_else(|| config.cluster_url.to_string(), |a| a.to_string());
        let client = client(config, global.verbosity >= LOG_REQUESTS).with_context(|| {
            format!("cannot set up a client for context {context:?} (server {server})")
        })?;
        Ok(Cluster {
            api: Api::all(client),
            server,
            context,
        })
    }

    /// The client, the server and the context, for commands on other resource types (batch).
    pub fn parts(&self) -> (Client, &str, &str) {
        (self.api.clone().into_client(), &self.server, &self.context)
    }

    /// A kube error in kubectl's words.
    fn error(&self, e: kube::Error) -> anyhow::Error {
        server_error(e, &self.server, &self.context)
    }

    pub async fn get(&self, name: &str) -> Result<AppImage> {
        self.api.get(name).await.map_err(|e| self.error(e))
    }

    /// `None` when the AppImage does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<AppImage>> {
        match self.api.get(name).await {
            Ok(image) => Ok(Some(image)),
            Err(kube::Error::Api(s))
                if s.code == 404 && s.reason == "NotFound" && !is_missing_api(&s.message) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// Every AppImage, sorted by name.
    pub async fn list(&self) -> Result<Vec<AppImage>> {
        self.list_matching(None, CHUNK_SIZE).await
    }

    /// The AppImages whose labels match `selector`, sorted by name, read in pages of `chunk`
    /// through limit and continue (0: one request).
    pub async fn list_matching(&self, selector: Option<&str>, chunk: u32) -> Result<Vec<AppImage>> {
        let mut params = ListParams::default();
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        if chunk > 0 {
            params = params.limit(chunk);
        }
        let mut items = Vec::new();
        loop {
            let page = self.api.list(&params).await.map_err(|e| self.error(e))?;
            items.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        items.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(items)
    }

    /// The named AppImages (reporting each missing one, and saying so in the flag), or all.
    pub async fn fetch(&self, names: &[String]) -> Result<(Vec<AppImage>, bool)> {
        if names.is_empty() {
            return Ok((self.list().await?, false));
        }
        let mut found = Vec::new();
        let mut failed = false;
        for name in names {
            match self.get(name).await {
                Ok(image) => found.push(image),
                Err(e) if PluginError::is_not_found(&e) => {
                    report(&e);
                    failed = true;
                }
                Err(e) => return Err(e),
            }
        }
        Ok((found, failed))
    }

    pub async fn create(&self, image: &AppImage, dry_run: bool) -> Result<AppImage> {
        self.api
            .create(&post_params(dry_run), image)
            .await
            .map_err(|e| self.error(e))
    }

    pub async fn replace(&self, image: &AppImage, dry_run: bool) -> Result<AppImage> {
        self.api
            .replace(image.name(), &post_params(dry_run), image)
            .await
            .map_err(|e| self.error(e))
    }

    /// Server-side apply, taking over conflicting fields (kubectl's --force-conflicts).
    pub async fn apply(&self, image: &AppImage, dry_run: bool) -> Result<AppImage> {
        let mut params = PatchParams::apply(MANAGER).force();
        params.dry_run = dry_run;
        self.api
            .patch(image.name(), &params, &Patch::Apply(image))
            .await
            .map_err(|e| self.error(e))
    }

    /// A JSON merge patch of the AppImage's metadata (labels, annotations).
    pub async fn patch_metadata(
        &self,
        name: &str,
        metadata: serde_json::Value,
        dry_run: bool,
    ) -> Result<AppImage> {
        let mut params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        params.dry_run = dry_run;
        let patch = serde_json::json!({ "metadata": metadata });
        self.api
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| self.error(e))
    }

    pub async fn delete(&self, name: &str, dry_run: bool) -> Result<()> {
        let params = DeleteParams {
            dry_run,
            ..Default::default()
        };
        self.api
            .delete(name, &params)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }
}

/// kubectl's `-v=6`: one stderr line per API request as it went over the wire (retries too),
/// e.g. `GET https://host/apis/...?limit=500 200 OK in 3 milliseconds`.
#[derive(Clone)]
struct LogRequests<S>(S);

type Boxed<T, E> = Pin<Box<dyn Future<Output = std::result::Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for LogRequests<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Boxed<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let line = format!(
            "{} {}",
            request.method(),
            clean_uri(&request.uri().to_string())
        );
        let start = Instant::now();
        let response = self.0.call(request);
        Box::pin(async move {
            let result = response.await;
            let ms = start.elapsed().as_millis();
            match &result {
                Ok(r) => eprint_line(&format!("{line} {} in {ms} milliseconds", r.status())),
                Err(_) => eprint_line(&format!("{line} failed in {ms} milliseconds")),
            }
            result
        })
    }
}

/// The URL as kubectl logs it: kube's query builder leaves an empty first parameter
/// (`appimages?&limit=2`) or a lone `?`; the request itself is unaffected.
fn clean_uri(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_string();
    };
    let params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if params.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", params.join("&"))
    }
}

/// The one AppImage a command works on: picked from the `-f` files (no client is built), or
/// fetched from the cluster by `name`.
pub fn one_appimage(
    global: &Global,
    name: Option<&str>,
    files: &[String],
    command: &str,
) -> Result<AppImage> {
    if !files.is_empty() {
        return crate::input::pick_for(crate::input::load(files)?, name, files, command);
    }
    let Some(name) = name else {
        bail!("{command} needs an AppImage NAME or -f FILE");
    };
    block_on(async { Cluster::connect(global).await?.get(name).await })
}

/// Run a command's cluster variant on a single-threaded runtime.
pub fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

fn post_params(dry_run: bool) -> PostParams {
    PostParams {
        dry_run,
        field_manager: Some(MANAGER.into()),
    }
}

/// The apiserver's answer when the resource type itself is unknown.
fn is_missing_api(message: &str) -> bool {
    message == "the server could not find the requested resource"
}

/// kube error -> kubectl's message: the apiserver's Status verbatim, or what failed and how
/// to fix it.
pub fn server_error(e: kube::Error, server: &str, context: &str) -> anyhow::Error {
    match e {
        // A 404 that is not a Status: the resource type itself is unknown.
        kube::Error::Api(s) if s.code == 404 && s.reason != "NotFound" => anyhow!(
            "the server {server} doesn't have a resource type \"appimages\"; install the AppImage CRD: kubectl appimage crd | kubectl apply -f -"
        ),
        kube::Error::Api(s) => {
            let reason = if s.reason.is_empty() {
                format!("{}", s.code)
            } else {
                s.reason.clone()
            };
            let mut text = format!("Error from server ({reason}): {}", s.message.trim_end());
            let missing_api = is_missing_api(&s.message);
            if missing_api {
                text.push_str(
                    "; the AppImage CRD is not installed: install it with `kubectl appimage crd | kubectl apply -f -`",
                );
            }
            PluginError::Server {
                reason,
                missing_api,
                text,
            }
            .into()
        }
        e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
            let why = chain(std::iter::successors(
                Some(&e as &(dyn std::error::Error + 'static)),
                |c| c.source(),
            ));
            anyhow!(
                "cannot reach the Kubernetes API server {server} (context {context:?}): {why}; check that the cluster is running and that --kubeconfig and --context select it"
            )
        }
        e => {
            let why = chain(std::iter::successors(
                Some(&e as &(dyn std::error::Error + 'static)),
                |c| c.source(),
            ));
            anyhow!(
                "request to the Kubernetes API server {server} (context {context:?}) failed: {why}"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_are_clean() {
        let u = "https://h/apis/kuscia.secretflow/v1alpha1/appimages";
        assert_eq!(clean_uri(&format!("{u}?&limit=2")), format!("{u}?limit=2"));
        assert_eq!(clean_uri(&format!("{u}?")), u);
        assert_eq!(clean_uri(&format!("{u}?a=1&&b=2")), format!("{u}?a=1&b=2"));
        assert_eq!(clean_uri(u), u);
    }
    use kube::core::Status;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut s = Status::failure(message, reason);
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn api_errors_read_like_kubectl() {
        let e = server_error(
            status(
                404,
                "NotFound",
                "appimages.kuscia.secretflow \"x\" not found",
            ),
            "h:1",
            "c",
        );
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): appimages.kuscia.secretflow \"x\" not found"
        );
        assert!(PluginError::is_not_found(&e));
        let e = server_error(
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
            "h:1",
            "c",
        );
        assert!(e.to_string().contains("kubectl appimage crd"), "{e}");
        assert!(!PluginError::is_not_found(&e));
        let e = server_error(
            status(404, "Failed to parse error data", "404 page not found"),
            "h:1",
            "c",
        );
        assert!(e.to_string().contains("resource type \"appimages\""), "{e}");
        assert!(!PluginError::is_not_found(&e));
    }

    #[test]
    fn contexts_are_checked() {
        let kc = Kubeconfig::from_yaml(
            "apiVersion: v1\nkind: Config\ncurrent-context: b\ncontexts:\n- name: a\n  context: {cluster: x}\n",
        )
        .unwrap();
        assert_eq!(pick_context(&kc, Some("a"), "k").unwrap(), "a");
        let err = pick_context(&kc, Some("z"), "k").unwrap_err().to_string();
        assert!(
            err.contains("\"z\" does not exist") && err.contains("it has: a"),
            "{err}"
        );
        let err = pick_context(&kc, None, "k").unwrap_err().to_string();
        assert!(err.contains("current-context \"b\""), "{err}");
    }

    #[test]
    fn a_missing_kubeconfig_flag_is_named() {
        let err = kubeconfig_paths(Some(Path::new("/nonexistent/kubeconfig")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
    }
}
