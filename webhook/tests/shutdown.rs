//! Serving behaviour over plain HTTP (`--insecure-http`): in-flight requests survive a
//! graceful shutdown, and a stalled request is cut off by the request timeout.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use appimage_webhook::{Config, start_with_store};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

fn config(timeout: Duration) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), None);
    config.request_timeout = timeout;
    config.shutdown_grace = Duration::from_secs(5);
    config.require_signature = false;
    config
}

async fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn in_flight_request_finishes_after_shutdown_starts() {
    let (reader, _writer) = store(&[appimage("demo", "1")], true);
    let (stop, stopped) = oneshot::channel::<()>();
    let running = start_with_store(config(Duration::from_secs(4)), reader, async move {
        let _ = stopped.await;
    })
    .await
    .expect("start");
    let addr = running.local_addr;

    let body =
        serde_json::to_string(&pod_review(pod("job-0", "alice", Some("demo")))).expect("json");
    let (head, tail) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /mutate HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{head}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The listener is closed: new connections are refused.
    assert!(TcpStream::connect(addr).await.is_err());
    stream
        .write_all(tail.as_bytes())
        .await
        .expect("finish the body");
    let response = read_all(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"allowed\":true"), "{response}");
    assert!(
        response.contains("\"patchType\":\"JSONPatch\""),
        "{response}"
    );
    running.wait().await.expect("clean exit");
}

#[tokio::test]
async fn stalled_request_times_out() {
    let (reader, _writer) = store(&[], true);
    let (stop, stopped) = oneshot::channel::<()>();
    let running = start_with_store(config(Duration::from_millis(300)), reader, async move {
        let _ = stopped.await;
    })
    .await
    .expect("start");
    let addr = running.local_addr;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request =
        format!("POST /mutate HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 1000\r\n\r\n{{\"kind\":");
    stream.write_all(request.as_bytes()).await.expect("write");
    let started = Instant::now();
    let response = read_all(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let _ = stop.send(());
    running.wait().await.expect("clean exit");
}
