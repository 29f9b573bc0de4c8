//! appimage-webhook on a real kube-apiserver: signed AppImages, Pods mutated on admission,
//! tampered AppImages refused, unlabelled Pods untouched, dry runs, idempotence.

use appimage::labels;
use appimage::manifest;
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage_e2e::webhook::{SigningKey, Tls, Webhook, register};
use appimage_e2e::{Cluster, cluster, repo_root, text, unique};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

fn seed(name: &str, tag: &str) -> AppImage {
    let path = repo_root().join("examples/secretflow-image.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut img = manifest::appimages("seed", &text).unwrap().remove(0);
    img.metadata.name = Some(name.into());
    img.metadata.labels = Some([("appimage-e2e".to_string(), tag.to_string())].into());
    img.spec.image.id = Some(DIGEST.into());
    img
}

fn apply_json(c: &Cluster, value: &Value) -> std::process::Output {
    let file = c.dir().join(format!("{}.json", unique("obj")));
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    c.kubectl(&["apply", "-f", &file.to_string_lossy()])
}

fn create_json(c: &Cluster, value: &Value, extra: &[&str]) -> std::process::Output {
    let file = c.dir().join(format!("{}.json", unique("obj")));
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    let mut args = vec!["create", "-f"];
    let f = file.to_string_lossy().into_owned();
    args.push(&f);
    args.extend_from_slice(extra);
    c.kubectl(&args)
}

fn labelled_pod(ns: &str, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {labels::APP_IMAGE: image},
            "annotations": {labels::OPT_TASK_ID: "t1"}
        },
        "spec": {"containers": []}
    })
}

fn get_json(c: &Cluster, args: &[&str]) -> Value {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&c.kubectl_ok(&full)).unwrap()
}

#[test]
fn signed_appimage_pods_are_injected_on_admission() {
    let c = cluster();
    let work = tempfile::tempdir().unwrap();
    let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
    let signer = SigningKey::new(work.path());
    let hook = Webhook::start(c, &tls, &signer.pub_dir, &[]);
    let tag = unique("wh");
    let ns = c.namespace("wh");
    c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);

    // A tampered AppImage stored before the validating webhook exists.
    let tampered_name = unique("tampered");
    let mut tampered = seed(&tampered_name, "none");
    tampered.spec.image.sign = Some(signer.sign(&payload(&tampered)));
    tampered.spec.image.tag = "evil".into();
    let out = apply_json(c, &serde_json::to_value(&tampered).unwrap());
    assert!(out.status.success(), "{:?}", text(&out));

    let reg = register(c, &hook, &tls, &tag);

    // The signed seed is accepted by the validating webhook.
    let name = unique("signed");
    let mut img = seed(&name, &tag);
    img.spec.image.sign = Some(signer.sign(&payload(&img)));
    let out = apply_json(c, &serde_json::to_value(&img).unwrap());
    assert!(out.status.success(), "{:?}\n{}", text(&out), hook.logs());

    // Changing the tag after signing is refused, naming the AppImage and the fix.
    let mut changed = img.clone();
    changed.spec.image.tag = "v2".into();
    let out = apply_json(c, &serde_json::to_value(&changed).unwrap());
    assert!(!out.status.success());
    let err = text(&out).1;
    assert!(err.contains("denied the request"), "{err}");
    assert!(err.contains(&name) && err.contains("re-sign"), "{err}");

    // A Pod carrying only the label is stored injected.
    let wait_for_cache = || {
        appimage_e2e::wait_until(std::time::Duration::from_secs(20), || {
            create_json(c, &labelled_pod(&ns, "probe", &name), &["--dry-run=server"])
                .status
                .success()
        })
    };
    assert!(
        wait_for_cache(),
        "webhook never saw {name}:\n{}",
        hook.logs()
    );
    let out = create_json(c, &labelled_pod(&ns, "job-0", &name), &[]);
    assert!(out.status.success(), "{:?}\n{}", text(&out), hook.logs());
    let pod = get_json(c, &["pod", "job-0", "-n", &ns]);
    let ctr = &pod["spec"]["containers"][0];
    assert_eq!(ctr["name"], "secretflow");
    // The image id is Kuscia's image ID: in the annotation, never in the reference (issue 27).
    assert_eq!(ctr["image"], "secretflow/secretflow-lite-anolis8:latest");
    assert_eq!(pod["metadata"]["annotations"][labels::IMAGE_ID], DIGEST);
    let ports: Vec<&str> = ctr["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["spu", "fed", "global"]);
    let env: Vec<&str> = ctr["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"KUSCIA_PORT_GLOBAL_NUMBER"), "{env:?}");
    assert_eq!(
        ctr["volumeMounts"][0]["mountPath"],
        "/work/kuscia/task-config.conf"
    );
    assert_eq!(ctr["volumeMounts"][0]["subPath"], "task-config.conf");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["metadata"]["labels"][labels::POD_IDENTITY], "job-0");
    // The config file as the Pod will see it: the annotation its downwardAPI volume projects.
    let vol = &pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == labels::CONFIG_VOLUME)
        .unwrap()["downwardAPI"]["items"][0];
    assert_eq!(vol["path"], "task-config.conf");
    let field = vol["fieldRef"]["fieldPath"].as_str().unwrap();
    let key = field
        .strip_prefix("metadata.annotations['")
        .and_then(|s| s.strip_suffix("']"))
        .unwrap();
    let conf: Value =
        serde_json::from_str(pod["metadata"]["annotations"][key].as_str().unwrap()).unwrap();
    assert_eq!(conf["task_id"], "t1");

    // The same manifest created again (after deleting the original) comes back unchanged:
    // the second admission's patch is empty.
    let mut again = pod.clone();
    for f in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        again["metadata"].as_object_mut().unwrap().remove(f);
    }
    again.as_object_mut().unwrap().remove("status");
    c.kubectl_ok(&["delete", "pod", "job-0", "-n", &ns, "--wait=false"]);
    assert!(appimage_e2e::wait_until(
        std::time::Duration::from_secs(10),
        || {
            !c.kubectl(&["get", "pod", "job-0", "-n", &ns])
                .status
                .success()
        }
    ));
    let out = create_json(c, &again, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let recreated = get_json(c, &["pod", "job-0", "-n", &ns]);
    assert_eq!(recreated["spec"], pod["spec"]);
    assert_eq!(
        recreated["metadata"]["annotations"],
        pod["metadata"]["annotations"]
    );
    assert_eq!(recreated["metadata"]["labels"], pod["metadata"]["labels"]);

    // Server dry run returns the mutated Pod and stores nothing.
    let out = create_json(
        c,
        &labelled_pod(&ns, "dry-0", &name),
        &["--dry-run=server", "-o", "json"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let dry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["spec"]["containers"][0]["name"], "secretflow");
    assert!(
        !c.kubectl(&["get", "pod", "dry-0", "-n", &ns])
            .status
            .success()
    );

    // A Pod without the label is untouched.
    let plain = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "plain", "namespace": ns},
        // No token volume from the ServiceAccount admission plugin: any volume is the webhook's.
        "spec": {"automountServiceAccountToken": false, "containers": [{"name": "a", "image": "busybox"}]}
    });
    let out = create_json(c, &plain, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let stored = get_json(c, &["pod", "plain", "-n", &ns]);
    assert!(stored["metadata"].get("annotations").is_none());
    assert!(stored["spec"].get("volumes").is_none());
    assert_eq!(stored["spec"]["containers"][0]["image"], "busybox");

    // Pods of the tampered AppImage are denied with a clear message.
    let out = create_json(c, &labelled_pod(&ns, "bad-0", &tampered_name), &[]);
    assert!(!out.status.success());
    let err = text(&out).1;
    assert!(
        err.contains(&tampered_name) && err.contains("does not verify"),
        "{err}"
    );

    // An unknown AppImage: denied, saying how to fix it.
    let out = create_json(c, &labelled_pod(&ns, "unknown-0", "no-such-image"), &[]);
    assert!(!out.status.success());
    let err = text(&out).1;
    assert!(err.contains("\"no-such-image\" not found"), "{err}");

    c.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &reg]);
    c.kubectl_ok(&["delete", "validatingwebhookconfiguration", &reg]);
}
