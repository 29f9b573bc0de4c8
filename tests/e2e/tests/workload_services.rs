//! Services per workload (issue 17, section 2) on the whole test cluster, with the webhook and
//! its controllers running: the seed deployed as a Deployment gets `<workload>-<port>` Services
//! owned by the Deployment whose EndpointSlices hold its Pods' IPs, and its Pods no per-Pod
//! Services; a StatefulSet's Pods have their governing headless Service (stable DNS names); a
//! bare Pod still gets its per-Pod Services.

use std::time::Duration;

use appimage::manifest;
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage_e2e::webhook::{SigningKey, Tls, Webhook, register};
use appimage_e2e::{Cluster, cluster, repo_root, text, unique, wait_until, write_json};
use serde_json::{Value, json};

const WORKLOAD: &str = "appimage.kuscia.secretflow/workload";
const WAIT: Duration = Duration::from_secs(120);

struct World {
    c: &'static Cluster,
    hook: Webhook,
    ns: String,
    image: String,
    work: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let c = cluster();
        let dir = c.dir().join(unique("wls-keys"));
        let tls = Tls::new(&dir.join("tls"), "appimage-webhook");
        let signer = SigningKey::new(&dir);
        let hook = Webhook::start(c, &tls, &signer.pub_dir, &[]);
        let tag = unique("wls");
        let ns = c.namespace("wl-svc");
        c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);
        register(c, &hook, &tls, &tag);
        let w = World {
            c,
            hook,
            ns,
            image: unique("sf"),
            work: tempfile::tempdir().unwrap(),
        };
        let file = "secretflow-image.yaml";
        let text = std::fs::read_to_string(repo_root().join("examples").join(file)).unwrap();
        let mut img: AppImage = manifest::appimages(file, &text).unwrap().remove(0);
        img.metadata.name = Some(w.image.clone());
        img.spec.image.sign = Some(signer.sign(&payload(&img.spec.image)));
        w.apply(&serde_json::to_value(&img).unwrap());
        w
    }

    fn apply(&self, value: &Value) {
        let file = write_json(self.work.path(), value);
        let out = self.c.kubectl(&["apply", "-f", &file.to_string_lossy()]);
        assert!(out.status.success(), "apply {value}: {:?}", text(&out));
    }

    fn get(&self, what: &[&str]) -> Value {
        let mut args = vec!["get", "-n", &self.ns, "-o", "json"];
        args.extend_from_slice(what);
        serde_json::from_str(&self.c.kubectl_ok(&args)).expect("JSON")
    }

    fn items(&self, what: &[&str]) -> Vec<Value> {
        self.get(what)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn deploy(&self, args: &[&str]) {
        let mut full = vec!["appimage", "deploy", &self.image, "-n", &self.ns];
        full.extend_from_slice(args);
        let out = self.c.kubectl(&full);
        assert!(out.status.success(), "deploy {args:?}: {:?}", text(&out));
    }

    /// The Services labelled for workload `name`.
    fn services_of(&self, name: &str) -> Vec<Value> {
        self.items(&["services", "-l", &format!("{WORKLOAD}={name}")])
    }

    /// The IPs the EndpointSlices of Service `svc` hold.
    fn endpoint_ips(&self, svc: &str) -> Vec<String> {
        let label = format!("kubernetes.io/service-name={svc}");
        self.items(&["endpointslices", "-l", &label])
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    }

    fn pods_of(&self, name: &str) -> Vec<Value> {
        self.items(&["pods", "-l", &format!("{WORKLOAD}={name}")])
    }
}

fn owner(obj: &Value) -> (String, String) {
    let o = &obj["metadata"]["ownerReferences"][0];
    (
        o["kind"].as_str().unwrap_or_default().into(),
        o["name"].as_str().unwrap_or_default().into(),
    )
}

#[test]
fn a_deployments_services_are_its_own_and_get_its_pods_ips() {
    let w = World::new();
    let name = w.image.clone();
    w.deploy(&["--replicas", "2"]);
    let mut services = Vec::new();
    let made = wait_until(WAIT, || {
        services = w.services_of(&name);
        services.len() == 3
    });
    assert!(
        made,
        "the Deployment's Services never came:\n{}",
        w.hook.logs()
    );
    let uid = w.get(&["deployment", &name])["metadata"]["uid"].clone();
    let mut names: Vec<String> = Vec::new();
    for s in &services {
        assert_eq!(owner(s), ("Deployment".to_string(), name.clone()));
        assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], uid);
        assert_eq!(s["spec"]["selector"][WORKLOAD], name.as_str());
        names.push(s["metadata"]["name"].as_str().unwrap().into());
    }
    names.sort();
    let want: Vec<String> = ["fed", "global", "spu"]
        .iter()
        .map(|p| format!("{name}-{p}"))
        .collect();
    assert_eq!(names, want);

    // The Pods run with the workload's restartPolicy and reach each other through these
    // Services; their IPs are the Services' endpoints.
    let mut ips: Vec<String> = Vec::new();
    let running = wait_until(WAIT, || {
        let pods = w.pods_of(&name);
        ips = pods
            .iter()
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .collect();
        pods.len() == 2 && ips.len() == 2
    });
    assert!(running, "the Deployment's 2 Pods never got IPs");
    for p in w.pods_of(&name) {
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        let conf =
            p["metadata"]["annotations"]["config.appimage.kuscia.secretflow/task-config.conf"]
                .as_str()
                .expect("config rendered");
        assert!(conf.contains(&format!("{name}-spu.{}.svc", w.ns)), "{conf}");
    }
    ips.sort();
    for svc in &want {
        let mut got = Vec::new();
        let ok = wait_until(WAIT, || {
            got = w.endpoint_ips(svc);
            got.sort();
            got.dedup();
            got == ips
        });
        assert!(ok, "{svc}: endpoints {got:?}, Pod IPs {ips:?}");
    }
    // No per-Pod Services for the workload's Pods: the workload's are all there is.
    let managed = w.items(&[
        "services",
        "-l",
        "app.kubernetes.io/managed-by=appimage-webhook",
    ]);
    assert!(
        managed.iter().all(|s| owner(s).0 == "Deployment"),
        "{:?}",
        managed
            .iter()
            .map(|s| &s["metadata"]["name"])
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_statefulset_pod_has_its_stable_dns_name() {
    let w = World::new();
    let name = w.image.clone();
    w.deploy(&["--kind", "StatefulSet", "--replicas", "1"]);
    let made = wait_until(WAIT, || {
        w.services_of(&name)
            .iter()
            .any(|s| s["metadata"]["name"] == name.as_str())
    });
    assert!(made, "no governing Service {name}:\n{}", w.hook.logs());
    let governing = w.get(&["service", &name]);
    assert_eq!(governing["spec"]["clusterIP"], "None");
    assert_eq!(owner(&governing), ("StatefulSet".to_string(), name.clone()));
    for s in w.services_of(&name) {
        assert_eq!(s["spec"]["clusterIP"], "None", "{}", s["metadata"]["name"]);
    }
    // <name>-0.<name>.<ns>.svc: the Pod's hostname in its governing Service's slice.
    let pod = format!("{name}-0");
    let label = format!("kubernetes.io/service-name={name}");
    let named = wait_until(WAIT, || {
        w.items(&["endpointslices", "-l", &label]).iter().any(|s| {
            s["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["hostname"] == pod.as_str())
        })
    });
    assert!(
        named,
        "{pod} never appeared by hostname behind Service {name}"
    );
}

#[test]
fn a_bare_pod_keeps_its_per_pod_services() {
    let w = World::new();
    let pod = unique("bare");
    w.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": w.ns,
                     "labels": {"kuscia.secretflow/app-image": w.image}},
        "spec": {"containers": []}
    }));
    let mut services = Vec::new();
    let made = wait_until(WAIT, || {
        services = w.items(&[
            "services",
            "-l",
            &format!("kuscia.secretflow/pod-identity={pod}"),
        ]);
        services.len() == 3
    });
    assert!(made, "no per-Pod Services for {pod}:\n{}", w.hook.logs());
    for s in &services {
        assert_eq!(owner(s), ("Pod".to_string(), pod.clone()));
    }
    let p = w.get(&["pod", &pod]);
    assert_eq!(p["spec"]["restartPolicy"], "Never", "the seed template's");
}
