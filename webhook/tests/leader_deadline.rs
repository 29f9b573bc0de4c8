//! A leader whose Lease renewals fail stops leading before its Lease expires (issue 25, no
//! split brain), against an API server whose Lease writes can be blocked while reads go on.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use appimage_webhook::leader::{LeaseConfig, campaign};
use appimage_webhook::metrics::Metrics;
use http_body_util::BodyExt;
use hyper::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/appimage-webhook";

/// One Lease; its writes fail with 503 once blocked.
#[derive(Default)]
struct Fake {
    lease: Mutex<Value>,
    blocked: AtomicBool,
    refused: AtomicUsize,
    version: AtomicUsize,
}

impl Fake {
    fn answer(&self, method: &Method, path: &str, body: &[u8]) -> (u16, Value) {
        if path != LEASE {
            return (404, status(404, "NotFound"));
        }
        if *method == Method::GET {
            return (200, self.lease.lock().unwrap().clone());
        }
        if self.blocked.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return (503, status(503, "ServiceUnavailable"));
        }
        let patch: Value = serde_json::from_slice(body).unwrap_or_default();
        let mut lease = self.lease.lock().unwrap();
        for (k, v) in patch["spec"].as_object().into_iter().flatten() {
            if v.is_null() {
                lease["spec"].as_object_mut().unwrap().remove(k);
            } else {
                lease["spec"][k] = v.clone();
            }
        }
        let version = self.version.fetch_add(1, Ordering::SeqCst) + 2;
        lease["metadata"]["resourceVersion"] = json!(version.to_string());
        (200, lease.clone())
    }

    /// When others see the Lease expire: its renewTime plus its duration.
    fn expiry(&self) -> SystemTime {
        let lease = self.lease.lock().unwrap();
        let renewed: jiff::Timestamp = lease["spec"]["renewTime"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let seconds = lease["spec"]["leaseDurationSeconds"].as_u64().unwrap();
        SystemTime::from(renewed) + Duration::from_secs(seconds)
    }
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "reason": reason, "message": reason, "code": code})
}

fn client(fake: Arc<Fake>) -> Client {
    let service = tower::service_fn(move |request: Request<Body>| {
        let fake = fake.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let (code, value) = fake.answer(&parts.method, parts.uri.path(), &body);
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(value.to_string().into_bytes()))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    Client::new(service, "ns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_stops_before_its_lease_expires() {
    let fake = Arc::new(Fake::default());
    *fake.lease.lock().unwrap() = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "appimage-webhook", "namespace": "ns", "resourceVersion": "1"},
        "spec": {}});
    let config = LeaseConfig {
        name: "appimage-webhook".into(),
        namespace: "ns".into(),
        duration: Duration::from_secs(2),
        identity: "a".into(),
    };
    let (mut leadership, election) = campaign(client(fake.clone()), &config, Metrics::new())
        .await
        .expect("campaign");
    tokio::time::timeout(Duration::from_secs(10), leadership.wait_for(true))
        .await
        .expect("leads");
    // Renewals on time keep it leading past a lease duration.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        leadership.is_leader(),
        "renewed on time, yet stopped leading"
    );

    fake.blocked.store(true, Ordering::SeqCst);
    let blocked = std::time::Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(8), leadership.wait_for(false)).await;
    let (now, expiry) = (SystemTime::now(), fake.expiry());
    let after = blocked.elapsed();
    assert!(
        stopped.is_ok(),
        "still leading {after:?} after its Lease writes were blocked ({} refused); the Lease expired {:?} ago",
        fake.refused.load(Ordering::SeqCst),
        now.duration_since(expiry).unwrap_or_default()
    );
    assert!(
        now < expiry,
        "stopped {after:?} after the block, after its Lease expired"
    );
    assert!(
        fake.refused.load(Ordering::SeqCst) > 0,
        "no renewal was tried"
    );
    let holder = fake.lease.lock().unwrap()["spec"]["holderIdentity"].clone();
    assert_eq!(
        holder,
        json!("a"),
        "the Lease still names it: its own deadline stopped it"
    );
    eprintln!("stopped leading {after:?} after renewals were blocked, before the Lease expired");

    // Renewals again: it leads again (nobody else took the Lease).
    fake.blocked.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), leadership.wait_for(true))
        .await
        .expect("leads again once it renews");
    election.resign(leadership, Duration::from_secs(2)).await;
}
