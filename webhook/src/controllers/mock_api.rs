//! An API server for controller tests that answers every request 404 and logs it (issue 25).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::client::Body;
use serde_json::json;

pub type Log = Arc<Mutex<Vec<String>>>;

/// A client whose API server answers every request 404 and logs it as "METHOD path".
pub fn mock() -> (Client, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let service = tower::service_fn(move |req: hyper::Request<Body>| {
        let line = format!("{} {}", req.method(), req.uri().path());
        seen.lock().unwrap().push(line);
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": "NotFound", "message": "not found", "code": 404});
        let response = hyper::Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string().into_bytes()))
            .unwrap();
        async move { Ok::<_, Infallible>(response) }
    });
    (Client::new(service, "default"), log)
}

/// The Events the API server was sent.
pub fn events(log: &Log) -> Vec<String> {
    let log = log.lock().unwrap();
    log.iter()
        .filter(|l| l.contains("/events"))
        .cloned()
        .collect()
}

/// A controllers' context on `client`, with an empty catalog and no trusted key.
pub fn context(client: Client) -> super::Context {
    let (reader, _writer) = crate::catalog::appimages();
    let catalog = crate::catalog::Catalog::new(reader, crate::trust::Trust::fixed(Vec::new()));
    super::Context::new(client, catalog, crate::metrics::Metrics::new(), "test")
}

/// One request the API server was sent, whole.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The query string (`fieldManager=...&force=true`).
    pub query: String,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: serde_json::Value,
}

impl Seen {
    /// "METHOD path", as [`mock`] logs it.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

pub type Requests = Arc<Mutex<Vec<Seen>>>;

/// A `kube` Status body with `code`.
pub fn status(code: u16, reason: &str) -> serde_json::Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "reason": reason, "message": reason, "code": code})
}

/// A client whose API server answers each request with what `answer` says (status code and
/// JSON body) and records it whole: controller tests assert on the exact requests, as
/// kube-rs' controller-rs does with tower-test.
pub fn server(
    answer: impl Fn(&Seen) -> (u16, serde_json::Value) + Send + Sync + 'static,
) -> (Client, Requests) {
    use http_body_util::BodyExt;
    let seen: Requests = Arc::default();
    let log = seen.clone();
    let answer = Arc::new(answer);
    let service = tower::service_fn(move |req: hyper::Request<Body>| {
        let (log, answer) = (log.clone(), answer.clone());
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let request = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            };
            let (code, body) = answer(&request);
            log.lock().unwrap().push(request);
            let response = hyper::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string().into_bytes()))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    (Client::new(service, "default"), seen)
}

/// The requests sent, Events left out.
pub fn writes(seen: &Requests) -> Vec<Seen> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter(|r| !r.path.contains("/events"))
        .cloned()
        .collect()
}

/// The Events sent.
pub fn events_sent(seen: &Requests) -> usize {
    let seen = seen.lock().unwrap();
    seen.iter().filter(|r| r.path.contains("/events")).count()
}

/// What a server-side apply by `manager` must carry.
pub fn assert_apply(r: &Seen, path: &str, manager: &str) {
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("PATCH", path),
        "{r:?}"
    );
    assert_eq!(r.param("fieldManager"), Some(manager), "{r:?}");
    assert_eq!(r.param("force"), Some("true"), "{r:?}");
}

/// The answer for a write: the body echoed back with a UID (what the API server stores).
pub fn echo(r: &Seen) -> (u16, serde_json::Value) {
    let mut body = r.body.clone();
    if body.is_object() {
        body["metadata"]["uid"] = json!("uid-new");
        body["metadata"]["resourceVersion"] = json!("2");
    }
    (200, body)
}
