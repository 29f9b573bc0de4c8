//! Every kind `deploy` makes with `kubectl appimage rollout --workload` (issue 30, item 2), on
//! the whole test cluster: the advice of a Manual CronJob's `CronJobOutdated` Event, run as
//! it is written, rolls the CronJob's job template to the new revision; a Job, whose pod
//! template is immutable, is refused with what to do instead.

use appimage_e2e::world::{REVISIONS_CRD, Shared, WAIT};
use appimage_e2e::{text, wait_until};
use serde_json::Value;

const REVISION: &str = "appimage.kuscia.secretflow/revision";
const LATEST: &str = "appimage.kuscia.secretflow/latest-revision";

appimage_e2e::world_wrapper!(
    /// One test's world: a webhook running the controllers, a namespace it admits.
    World = Shared::once(&[REVISIONS_CRD], "advice")
);

impl World {
    /// Wait until `what` (`kind/name`) carries the label `LATEST` = `n`.
    fn acted(&self, what: &str, n: i64) {
        let want = n.to_string();
        let ok = wait_until(WAIT, || {
            self.get_json(&[what])["metadata"]["labels"][LATEST] == want.as_str()
        });
        assert!(
            ok,
            "never acted on revision {n} for {what}:\n{}",
            self.logs()
        );
    }

    /// Wait for an Event on `name` of `reason`: its message.
    fn event(&self, name: &str, reason: &str) -> String {
        let selector = format!("involvedObject.name={name}");
        let mut found = None;
        let ok = wait_until(WAIT, || {
            found = self
                .items(&["events", "--field-selector", &selector])
                .iter()
                .find(|e| e["reason"] == reason)
                .and_then(|e| e["message"].as_str().map(str::to_string));
            found.is_some()
        });
        assert!(ok, "no {reason} Event on {name}:\n{}", self.logs());
        found.unwrap_or_default()
    }
}

/// The command an Event's note advises: from `kubectl appimage` to the end of the note.
fn advice(note: &str) -> Vec<String> {
    let at = note
        .find("kubectl appimage ")
        .unwrap_or_else(|| panic!("no command in {note:?}"));
    note[at..]
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_advice_of_cronjob_outdated_rolls_the_cronjob_and_a_job_is_refused_clearly() {
    let w = World::new("advice");
    w.apply_signed_example("secretflow-image.yaml", &w.image);
    w.revision(1);
    // A schedule that does not fire during the test.
    let cron = ["--kind", "CronJob", "--schedule", "0 0 1 1 *"];
    w.deploy(
        "cron",
        &[&cron[..], &["--update-policy", "Manual"]].concat(),
    );
    w.deploy("job", &["--kind", "Job"]);
    w.acted("cronjob/cron", 1);
    let update = w.signed_example("secretflow-image-update.yaml", &w.image);
    w.apply_image(&update);
    w.revision(2);

    let note = w.event("cron", "CronJobOutdated");
    let args = advice(&note);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = w.c.kubectl(&args);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "the advice {args:?} of {note:?} failed: {stderr}"
    );
    assert!(
        stdout.contains("cronjob.batch/cron rolled out: revision 1 -> 2"),
        "{stdout}"
    );
    let cj: Value = w.get_json(&["cronjob/cron"]);
    let t = &cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(t[REVISION], "2", "{cj}");
    // The same deploy again after the rollout changes nothing (issue 30, item 4).
    let again = w.plugin(
        &[
            &["deploy", &w.image, "-n", &w.ns, "--name", "cron"][..],
            &cron,
            &["--update-policy", "Manual"],
        ]
        .concat(),
    );
    assert!(again.contains("unchanged"), "{again}");

    // A Job cannot change: refused, saying why and what to do.
    let job = [
        "appimage",
        "rollout",
        &w.image,
        "--workload",
        "job",
        "-n",
        &w.ns,
    ];
    let out = w.c.kubectl(&job);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("a Job's pod template is immutable")
            && stderr.contains("kubectl delete job job"),
        "{stderr}"
    );
}
