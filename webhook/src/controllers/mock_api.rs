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
