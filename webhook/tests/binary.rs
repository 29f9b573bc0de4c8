//! The binary itself: `listening on ADDR` on stdout, JSON logs, --noop answers, and a clean
//! exit 0 on SIGTERM.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_appimage-webhook");

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// The binary over plain HTTP on a free port, with `extra` arguments; killed when dropped.
struct Server {
    child: std::process::Child,
    addr: SocketAddr,
    lines: Lines,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(extra: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args(["--insecure-http", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the binary");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut addr: Option<SocketAddr> = None;
    for line in lines.by_ref() {
        let line = line.expect("read line");
        let json: Value = serde_json::from_str(&line).expect("JSON log line");
        if let Some(rest) = json["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("listening on "))
        {
            addr = Some(rest.parse().expect("address"));
            break;
        }
    }
    let addr = addr.expect("a `listening on ADDR` line");
    Server { child, addr, lines }
}

#[tokio::test]
async fn noop_binary_serves_and_exits_zero_on_sigterm() {
    let mut server = serve(&["--noop"]);
    let addr = server.addr;
    let lines = &mut server.lines;
    let child = &mut server.child;

    assert_eq!(
        http(addr, "GET", "/readyz", "").await,
        Ok((200, "ok".into()))
    );
    let review =
        serde_json::to_string(&pod_review(pod("job-0", "alice", Some("demo")))).expect("json");
    let (status, body) = http(addr, "POST", "/mutate", &review)
        .await
        .expect("answer");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("review");
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("patch").is_none());
    let (status, _) = http(addr, "POST", "/mutate", "{").await.expect("answer");
    assert_eq!(status, 400);

    // One info line per admission, without the Pod body.
    let mut admission_line = None;
    for line in lines.by_ref() {
        let line = line.expect("read line");
        if line.contains("\"admission\"") {
            admission_line = Some(line);
            break;
        }
    }
    let line = admission_line.expect("an admission log line");
    let json: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(json["level"], "INFO");
    assert_eq!(json["message"], "admission");
    assert_eq!(json["endpoint"], "mutate");
    assert_eq!(json["uid"], "4b4cd2b7-1b27-4a1e-9d0e-0c0a8a2b7c11");
    assert_eq!(json["outcome"], "allowed");
    assert!(!line.contains("busybox"), "no Pod bodies in logs: {line}");

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the server did not exit after SIGTERM");
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn noop_patch_is_the_answer_of_every_mutate() {
    let tmp = temp_dir();
    let file = tmp.path().join("patch.json");
    let patch = r#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#;
    std::fs::write(&file, format!("{patch}\n")).expect("write");
    let server = serve(&["--noop", "--noop-patch", file.to_str().expect("utf-8")]);
    let review =
        serde_json::to_string(&pod_review(pod("job-0", "alice", Some("demo")))).expect("json");
    let (status, body) = http(server.addr, "POST", "/mutate", &review)
        .await
        .expect("answer");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("review");
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(v["response"]["patchType"], "JSONPatch");
    let sent = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        v["response"]["patch"].as_str().expect("a base64 patch"),
    )
    .expect("base64");
    assert_eq!(String::from_utf8(sent).expect("utf-8"), patch);
}

#[test]
fn noop_patch_must_be_a_json_patch_given_with_noop() {
    let tmp = temp_dir();
    let file = tmp.path().join("patch.json");
    std::fs::write(&file, r#"{"op":"add"}"#).expect("write");
    let path = file.to_str().expect("utf-8");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["--insecure-http", "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = run(&["--noop", "--noop-patch", path]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("not a JSONPatch") && text.contains(path),
        "{text}"
    );
    let (ok, text) = run(&["--noop-patch", path]);
    assert!(!ok, "{text}");
    assert!(text.contains("--noop"), "{text}");
}

#[test]
fn tls_files_are_required() {
    let out = Command::new(BIN).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert-file"));

    let tmp = temp_dir();
    let out = Command::new(BIN)
        .args([
            "--tls-cert-file",
            "missing.crt",
            "--tls-key-file",
            "missing.key",
            "--noop",
        ])
        .current_dir(tmp.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing.crt"));
}
