//! Pods stay as admitted: what an UPDATE (and `pods/ephemeralcontainers`) may not change on a
//! Pod that carries the AppImage label. The webhook checks it in a validating webhook, which
//! sees the object every mutating webhook has finished with.
//!
//! A Pod with the label was injected at CREATE (the mutating webhook admits every Pod with
//! the label, and no UPDATE may add it), so all of them are protected; a Pod without the label
//! never reaches the webhook and sees no change.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::labels;

/// The labels that give a Pod its identity: Services, NetworkPolicy peers, its own policy.
const IDENTITY_LABELS: [&str; 3] = [labels::APP_IMAGE, labels::POD_ROLE, labels::POD_IDENTITY];

/// How to change what is protected, said in every denial.
const PROPERLY: &str = "publish a new revision of the AppImage and roll it out (kubectl appimage set-image / kubectl appimage rollout), or create a new Pod";

/// The first reason the UPDATE from `old` to `new` is refused, if any.
pub fn check_update(old: &Pod, new: &Pod) -> Result<(), String> {
    let pod_ref = pod_ref(new);
    let Some(image) = label(old, labels::APP_IMAGE) else {
        return check_not_injected(new, &pod_ref);
    };
    let intro = format!("Pod {pod_ref:?} runs AppImage {image:?} as admitted");
    for key in IDENTITY_LABELS {
        let (before, after) = (label(old, key), label(new, key));
        if before != after {
            return Err(format!(
                "{intro}: label {key} cannot be added, changed or removed ({} -> {}); it decides the Pod's Services and NetworkPolicy peers; {PROPERLY}",
                shown(before),
                shown(after)
            ));
        }
    }
    check_annotations(old, new, &intro)?;
    let (old_spec, new_spec) = (old.spec.as_ref(), new.spec.as_ref());
    let containers = |spec: Option<&k8s_openapi::api::core::v1::PodSpec>, init: bool| {
        spec.map(|s| {
            if init {
                s.init_containers.clone()
            } else {
                Some(s.containers.clone())
            }
        })
        .unwrap_or_default()
        .unwrap_or_default()
    };
    for (init, field) in [(false, "containers"), (true, "initContainers")] {
        check_images(
            &containers(old_spec, init),
            &containers(new_spec, init),
            field,
            &intro,
        )?;
    }
    check_ephemeral(old, new, &intro)
}

/// A Pod the webhook did not inject may not gain the AppImage label (and so its peers).
fn check_not_injected(new: &Pod, pod_ref: &str) -> Result<(), String> {
    if let Some(image) = label(new, labels::APP_IMAGE) {
        return Err(format!(
            "Pod {pod_ref:?} was not injected by appimage-webhook, so it cannot gain the label {}={image:?} by an update (the label would make it a NetworkPolicy peer of AppImage {image:?} without running it); create the Pod with the label instead, and the webhook injects the AppImage",
            labels::APP_IMAGE
        ));
    }
    Ok(())
}

/// The status, its seal and the rendered config files are the webhook's.
fn check_annotations(old: &Pod, new: &Pod, intro: &str) -> Result<(), String> {
    let ours = |pod: &Pod| -> BTreeMap<String, String> {
        let all = pod.metadata.annotations.iter().flatten();
        all.filter(|(k, _)| {
            *k == labels::STATUS || *k == labels::ADMITTED || k.starts_with(labels::CONFIG_PREFIX)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
    };
    let (before, after) = (ours(old), ours(new));
    if before == after {
        return Ok(());
    }
    let key = before
        .keys()
        .chain(after.keys())
        .find(|k| before.get(*k) != after.get(*k))
        .cloned()
        .unwrap_or_default();
    let why = if key.starts_with(labels::CONFIG_PREFIX) {
        "it holds a config file rendered from the AppImage's configTemplates"
    } else {
        "appimage-webhook writes it at admission"
    };
    Err(format!(
        "{intro}: annotation {key} cannot be added, edited or removed ({why}); {PROPERLY}"
    ))
}

/// No container's image may change: the signed AppImage chose it.
fn check_images(
    old: &[Container],
    new: &[Container],
    field: &str,
    intro: &str,
) -> Result<(), String> {
    for (i, c) in new.iter().enumerate() {
        let Some(before) = old.iter().find(|o| o.name == c.name) else {
            continue;
        };
        if before.image != c.image {
            return Err(format!(
                "{intro}: spec.{field}[{i}].image of container {:?} cannot change ({} -> {}); the image comes from the signed AppImage: {PROPERLY}",
                c.name,
                shown(before.image.as_deref()),
                shown(c.image.as_deref())
            ));
        }
    }
    Ok(())
}

/// An ephemeral container would run an image nobody signed, with the Pod's identity.
fn check_ephemeral(old: &Pod, new: &Pod, intro: &str) -> Result<(), String> {
    let list = |pod: &Pod| {
        let spec = pod.spec.as_ref();
        spec.and_then(|s| s.ephemeral_containers.clone())
            .unwrap_or_default()
    };
    let (before, after) = (list(old), list(new));
    if before == after {
        return Ok(());
    }
    let i = before.len().min(after.len());
    let name = after.get(i).map_or("", |c| c.name.as_str());
    Err(format!(
        "{intro}: ephemeral containers cannot be added (spec.ephemeralContainers[{i}] {name:?}): one would run an image the AppImage never signed, with the Pod's identity; debug a copy made without the label {} (kubectl debug --copy-to=NAME), or put the tools into the AppImage: {PROPERLY}",
        labels::APP_IMAGE
    ))
}

fn label<'p>(pod: &'p Pod, key: &str) -> Option<&'p str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "unset".into(), |v| format!("{v:?}"))
}

fn pod_ref(pod: &Pod) -> String {
    let meta = &pod.metadata;
    let ns = meta.namespace.as_deref().unwrap_or_default();
    format!("{ns}/{}", meta.name.as_deref().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EphemeralContainer, PodSpec};

    use super::*;

    fn injected() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "job-0", "namespace": "alice",
                "labels": {labels::APP_IMAGE: "img", labels::POD_ROLE: "server",
                           labels::POD_IDENTITY: "job-0-abc", "team": "a"},
                "annotations": {labels::STATUS: "{}", labels::ADMITTED: "v1:00",
                                "config.appimage.kuscia.secretflow/task.conf": "x=1",
                                "note": "free"}
            },
            "spec": {"containers": [{"name": "main", "image": "signed:1"}],
                     "initContainers": [{"name": "init", "image": "signed:1"}]}
        }))
        .unwrap()
    }

    fn edited(f: impl FnOnce(&mut Pod)) -> Result<(), String> {
        let mut new = injected();
        f(&mut new);
        check_update(&injected(), &new)
    }

    #[test]
    fn free_fields_may_change() {
        assert_eq!(edited(|_| {}), Ok(()));
        assert_eq!(
            edited(|p| {
                let labels = p.metadata.labels.as_mut().unwrap();
                labels.insert("team".into(), "b".into());
                let annotations = p.metadata.annotations.as_mut().unwrap();
                annotations.insert("note".into(), "edited".into());
            }),
            Ok(())
        );
    }

    #[test]
    fn identity_labels_are_protected() {
        for key in IDENTITY_LABELS {
            let removed = edited(|p| {
                p.metadata.labels.as_mut().unwrap().remove(key);
            });
            let err = removed.unwrap_err();
            assert!(err.contains(&format!("label {key} cannot be")), "{err}");
            assert!(err.contains("kubectl appimage rollout"), "{err}");
            let changed = edited(|p| {
                p.metadata
                    .labels
                    .as_mut()
                    .unwrap()
                    .insert(key.into(), "other".into());
            });
            assert!(changed.is_err());
        }
    }

    #[test]
    fn webhook_annotations_are_protected() {
        for key in [
            labels::STATUS,
            labels::ADMITTED,
            "config.appimage.kuscia.secretflow/task.conf",
        ] {
            let err = edited(|p| {
                p.metadata
                    .annotations
                    .as_mut()
                    .unwrap()
                    .insert(key.into(), "forged".into());
            })
            .unwrap_err();
            assert!(
                err.contains(&format!("annotation {key} cannot be")),
                "{err}"
            );
        }
        let added = edited(|p| {
            let a = p.metadata.annotations.as_mut().unwrap();
            a.insert(
                "config.appimage.kuscia.secretflow/new.conf".into(),
                "y".into(),
            );
        });
        assert!(added.unwrap_err().contains("new.conf"));
    }

    #[test]
    fn images_are_protected_with_their_path() {
        let err = edited(|p| {
            p.spec.as_mut().unwrap().containers[0].image = Some("evil:1".into());
        })
        .unwrap_err();
        assert!(err.contains("spec.containers[0].image"), "{err}");
        assert!(err.contains("\"signed:1\" -> \"evil:1\""), "{err}");
        let err = edited(|p| {
            let init = p.spec.as_mut().unwrap().init_containers.as_mut().unwrap();
            init[0].image = Some("evil:1".into());
        })
        .unwrap_err();
        assert!(err.contains("spec.initContainers[0].image"), "{err}");
    }

    #[test]
    fn ephemeral_containers_are_refused() {
        let err = edited(|p| {
            let spec: &mut PodSpec = p.spec.as_mut().unwrap();
            spec.ephemeral_containers = Some(vec![EphemeralContainer {
                name: "debugger-x".into(),
                image: Some("busybox".into()),
                ..Default::default()
            }]);
        })
        .unwrap_err();
        assert!(
            err.contains("spec.ephemeralContainers[0] \"debugger-x\""),
            "{err}"
        );
    }

    #[test]
    fn a_plain_pod_cannot_gain_the_label() {
        let mut plain = injected();
        plain.metadata.labels = Some(BTreeMap::from([("team".into(), "a".into())]));
        let mut relabelled = plain.clone();
        relabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(labels::APP_IMAGE.into(), "img".into());
        let err = check_update(&plain, &relabelled).unwrap_err();
        assert!(err.contains("was not injected"), "{err}");
        // Anything else on a plain Pod is not ours to judge.
        let mut other = plain.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("any".into());
        assert_eq!(check_update(&plain, &other), Ok(()));
    }
}
