//! The test control plane itself: with `--remove-dir` it deletes its state directory once the
//! process that started it is gone, so that test runs do not leave 60 MB of etcd behind each.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use appimage_e2e::{controlplane_binary, wait_until};

#[test]
fn the_state_directory_goes_with_the_parent() {
    let binary = controlplane_binary();
    assert!(
        binary.exists(),
        "{} is missing: run `scripts/controlplane.sh build` first (scripts/test.sh does)",
        binary.display()
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("state");
    // A stand-in for a test process: the control plane watches it and outlives it.
    let mut parent = Command::new("sleep").arg("600").spawn().expect("sleep");
    let mut plane = Command::new(&binary)
        .arg("--dir")
        .arg(&dir)
        .arg("--parent-pid")
        .arg(parent.id().to_string())
        .arg("--remove-dir")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the control plane");
    let stdout = plane.stdout.take().expect("stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("READY "));
    assert!(ready, "the control plane exited before it was ready");
    assert!(dir.join("kubeconfig").exists(), "no kubeconfig in {dir:?}");

    parent.kill().expect("kill the parent");
    parent.wait().expect("reap the parent");
    let exited = wait_until(Duration::from_secs(90), || {
        plane.try_wait().expect("wait").is_some()
    });
    if !exited {
        let _ = plane.kill();
        panic!("the control plane did not stop after its parent was gone");
    }
    let status = plane.wait().expect("status");
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "{dir:?} was left behind");
}
