//! The Event budget (issue 25, sections 1 and 3): one `RolloutBlocked` per workload and
//! revision, not one per reconcile. A revision whose signature does not verify is held; the
//! workloads that would roll to it are then changed, and the AppImage touched, many times (each
//! a reconcile of the rollout). Counted on the API server: one Event per workload and revision,
//! whose `count` (the series events.k8s.io keeps for a repeated Event) stays 1. A second held
//! revision gets one Event more per workload.
//!
//! Before (12f65cc) every reconcile published the Event again: the series grew with each one.

use std::time::Duration;

use appimage::resource::AppImage;
use appimage_e2e::wait_until;
use appimage_e2e::world::{REVISIONS_CRD, Shared, WAIT};
use serde_json::Value;

const LATEST: &str = "appimage.kuscia.secretflow/latest-revision";
/// Reconciles provoked while a revision is held.
const TRIGGERS: usize = 6;

appimage_e2e::world_wrapper!(
    /// One test's world: a webhook with the controllers, a namespace, a signed seed.
    World = Shared::once(&[REVISIONS_CRD], "budget")
);

impl World {
    /// The `RolloutBlocked` Events about `name`: (message, count) each.
    fn blocked(&self, name: &str) -> Vec<(String, i64)> {
        let selector = format!("reason=RolloutBlocked,involvedObject.name={name}");
        self.items(&["events", "--field-selector", &selector])
            .iter()
            .map(|e| {
                (
                    e["message"].as_str().unwrap_or_default().to_string(),
                    // Published again, an events.k8s.io Event grows a series (core/v1 shows
                    // it as `series.count`; `count` is the deprecated field).
                    [&e["series"]["count"], &e["count"]]
                        .iter()
                        .filter_map(|c| c.as_i64())
                        .max()
                        .unwrap_or(1),
                )
            })
            .collect()
    }

    fn acted(&self, name: &str, n: i64) {
        let want = n.to_string();
        let ok = wait_until(WAIT, || {
            self.get_json(&[&format!("deployment/{name}")])["metadata"]["labels"][LATEST]
                == want.as_str()
        });
        assert!(ok, "the controller never acted on revision {n} for {name}");
    }

    /// `img` with its image tag changed and the signature kept: a revision that is held.
    fn tampered(&self, img: &AppImage, tag: &str) -> AppImage {
        let mut t = img.clone();
        t.spec.image.tag = tag.into();
        t
    }

    /// Provoke reconciles: change each workload and touch the AppImage, `TRIGGERS` times.
    fn provoke(&self, names: &[&str]) {
        for i in 0..TRIGGERS {
            for name in names {
                self.c.kubectl_ok(&[
                    "annotate",
                    "-n",
                    &self.ns,
                    &format!("deployment/{name}"),
                    &format!("e2e/poke={i}"),
                    "--overwrite",
                ]);
            }
            self.c.kubectl_ok(&[
                "annotate",
                "appimage",
                &self.image,
                &format!("e2e/poke={i}"),
                "--overwrite",
            ]);
            std::thread::sleep(Duration::from_millis(700));
        }
        // Time for the last reconciles to publish whatever they publish.
        std::thread::sleep(Duration::from_secs(3));
    }
}

#[test]
fn one_rollout_blocked_per_workload_and_revision() {
    let w = World::new("budget");
    let seed = w.signed_example("secretflow-image.yaml", &w.image);
    w.apply_image(&seed);
    w.revision(1);
    let names = ["web", "api"];
    for name in names {
        w.deploy(name, &["--replicas", "1"]);
        w.acted(name, 1);
    }

    // Revision 2, held: one Event each, however many reconciles follow.
    w.apply_image(&w.tampered(&seed, "9.9-tampered"));
    w.revision(2);
    for name in names {
        let one = wait_until(WAIT, || !w.blocked(name).is_empty());
        assert!(one, "no RolloutBlocked for {name}:\n{}", w.logs());
    }
    w.provoke(&names);
    for name in names {
        let events = w.blocked(name);
        eprintln!("{name}, revision 2 held, after {TRIGGERS} rounds of changes: {events:?}");
        assert_eq!(
            events.len(),
            1,
            "{name}: one RolloutBlocked Event for revision 2: {events:?}"
        );
        assert_eq!(
            events[0].1, 1,
            "{name}: the RolloutBlocked Event for revision 2 was published {} times: {events:?}",
            events[0].1
        );
        assert!(events[0].0.contains("revision 2"), "{events:?}");
    }

    // Revision 3, held too: one Event more each, for revision 3.
    w.apply_image(&w.tampered(&seed, "9.9-tampered-again"));
    w.revision(3);
    for name in names {
        let two = wait_until(WAIT, || w.blocked(name).len() == 2);
        assert!(two, "{name}: {:?}\n{}", w.blocked(name), w.logs());
    }
    w.provoke(&names);
    for name in names {
        let events = w.blocked(name);
        let mut messages: Vec<&str> = events.iter().map(|(m, _)| m.as_str()).collect();
        messages.sort();
        assert_eq!(events.len(), 2, "{name}: {events:?}");
        assert!(
            events.iter().all(|(_, count)| *count == 1),
            "{name}: published more than once: {events:?}"
        );
        assert!(
            events.iter().any(|(m, _)| m.contains("revision 3")),
            "{name}: {messages:?}"
        );
    }
    // Nothing rolled meanwhile.
    for name in names {
        let d: Value = w.get_json(&[&format!("deployment/{name}")]);
        assert!(
            d["spec"]["template"]["metadata"]["annotations"]["appimage.kuscia.secretflow/revision"]
                .is_null(),
            "{name} rolled to a held revision"
        );
    }
}
