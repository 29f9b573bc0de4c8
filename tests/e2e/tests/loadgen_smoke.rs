//! Smoke test of the benchmark load generator (`appimage-loadgen`, crate bench/): short, slow
//! runs that check it completes and counts answers right. No timing is asserted: benchmarks
//! live in scripts/bench.sh (BENCHMARKS.md).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use appimage::manifest;
use appimage::signature::payload;
use appimage_e2e::webhook::{SigningKey, Tls, Webhook, free_port};
use appimage_e2e::{cluster, repo_root, text, unique, wait_until, workspace_bin};
use serde_json::Value;

/// Run appimage-loadgen with `args` and `--json`; its report.
fn loadgen(url: &str, ca: &Path, args: &[&str]) -> Value {
    let out = Command::new(workspace_bin("appimage-loadgen"))
        .args(["--url", url, "--ca"])
        .arg(ca)
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .expect("run appimage-loadgen");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "appimage-loadgen failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}"))
}

/// A short open-loop run (4 workers, 50 req/s, 2 s) for `appimage`, expecting `expect`.
fn short_run(url: &str, ca: &Path, appimage: &str, expect: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "--concurrency",
        "4",
        "--rate",
        "50",
        "--duration",
        "2s",
        "--appimage",
        appimage,
        "--expect",
        expect,
    ];
    args.extend_from_slice(extra);
    loadgen(url, ca, &args)
}

/// Every request sent was answered as expected.
fn assert_all_ok(report: &Value, logs: &str) {
    assert_eq!(count(report, "errors"), 0, "{report:#}\n{logs}");
    assert!(count(report, "requests") > 0, "{report:#}");
    assert_eq!(count(report, "ok"), count(report, "requests"), "{report:#}");
}

fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {report:#}"))
}

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn loadgen_against_the_noop_webhook_counts_every_answer() {
    let work = tempfile::tempdir().unwrap();
    let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
    let port = free_port();
    let log = work.path().join("webhook.log");
    let _hook = Killed(
        Command::new(workspace_bin("appimage-webhook"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--noop"])
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .expect("start appimage-webhook --noop"),
    );
    let ca = tls.ca.to_string_lossy().into_owned();
    let ready = wait_until(Duration::from_secs(30), || {
        Command::new("curl")
            .args(["-sf", "--cacert", &ca])
            .arg(format!("https://127.0.0.1:{port}/readyz"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        ready,
        "webhook not ready:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let url = format!("https://127.0.0.1:{port}/mutate");
    let report = short_run(&url, &tls.ca, "secretflow-image", "allowed", &[]);
    assert_all_ok(&report, "");
    assert_eq!(report["mode"], "open-loop");

    // Expecting a patch from the noop baseline: every answer is counted as a mismatch.
    let wrong = loadgen(
        &url,
        &tls.ca,
        &[
            "--concurrency",
            "2",
            "--requests",
            "5",
            "--appimage",
            "secretflow-image",
            "--expect",
            "patched",
        ],
    );
    assert_eq!(count(&wrong, "requests"), 5, "{wrong:#}");
    assert_eq!(count(&wrong, "errors_mismatch"), 5, "{wrong:#}");
}

#[test]
fn loadgen_against_a_real_webhook_gets_patches() {
    let c = cluster();
    let work = tempfile::tempdir().unwrap();
    let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
    let signer = SigningKey::new(work.path());
    let hook = Webhook::start(c, &tls, &signer.pub_dir, &["--reconcile=false"]);

    // The seed, signed, under a name of this test.
    let name = unique("loadgen");
    let seed = std::fs::read_to_string(repo_root().join("examples/secretflow-image.yaml")).unwrap();
    let mut image = manifest::appimages("seed", &seed).unwrap().remove(0);
    image.metadata.name = Some(name.clone());
    image.spec.image.sign = Some(signer.sign(&payload(&image)));
    let file = c.dir().join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec(&image).unwrap()).unwrap();
    c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);

    let url = hook.url("/mutate");
    let one = ["--requests", "1", "--appimage", &name, "--deep-check"];
    assert!(
        wait_until(Duration::from_secs(30), || {
            count(&loadgen(&url, &tls.ca, &one), "errors") == 0
        }),
        "the webhook never injected {name}:\n{}",
        hook.logs()
    );

    let report = short_run(&url, &tls.ca, &name, "patched", &["--deep-check"]);
    assert_all_ok(&report, &hook.logs());
    assert_eq!(report["expect"], "patched");

    c.kubectl_ok(&["delete", "appimage", &name]);
}
