//! Services per workload (issue 17, section 2) on the whole test cluster, with the webhook and
//! its controllers running: the seed deployed as a Deployment gets `<workload>-<port>` Services
//! owned by the Deployment whose EndpointSlices hold its Pods' IPs, and its Pods no per-Pod
//! Services; a StatefulSet's Pods have their governing headless Service (stable DNS names); a
//! bare Pod still gets its per-Pod Services; a CronJob's runs get none of their own.

use appimage_e2e::world::{self, Shared, WAIT, WORKLOAD};
use appimage_e2e::{unique, wait_until};
use serde_json::Value;

appimage_e2e::world_wrapper!(
    /// One test's world: a webhook with a Lease of its own (so it runs the controllers), a
    /// namespace it admits, the signed seed AppImage.
    World
);

impl World {
    fn new() -> World {
        let w = world::World::with_webhook_args(Shared::once(&[], "wls"), "wl-svc", &[]);
        w.apply_signed_example("secretflow-image.yaml", &w.image);
        World(w)
    }

    /// `deploy` of the AppImage, the workload named after it.
    fn deploy_default_name(&self, args: &[&str]) {
        let mut full = vec!["deploy", &self.image, "-n", &self.ns];
        full.extend_from_slice(args);
        self.plugin(&full);
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
    w.deploy_default_name(&["--replicas", "2"]);
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
    let uid = w.get_json(&["deployment", &name])["metadata"]["uid"].clone();
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
    w.deploy_default_name(&["--kind", "StatefulSet", "--replicas", "1"]);
    let made = wait_until(WAIT, || {
        w.services_of(&name)
            .iter()
            .any(|s| s["metadata"]["name"] == name.as_str())
    });
    assert!(made, "no governing Service {name}:\n{}", w.hook.logs());
    let governing = w.get_json(&["service", &name]);
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
    w.apply_bare_pod(&pod);
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
    let p = w.get_json(&["pod", &pod]);
    assert_eq!(p["spec"]["restartPolicy"], "Never", "the seed template's");
}

/// A CronJob's runs are not workloads (issue 30): with a `*/1` schedule the real
/// controller-manager spawns a Job within a minute, carrying the CronJob's workload label; the
/// CronJob has its 3 Services, the Job none (before: 3 per run, selecting nothing).
#[test]
fn a_cronjobs_runs_get_no_services_of_their_own() {
    let w = World::new();
    w.plugin(&[
        "deploy",
        &w.image,
        "-n",
        &w.ns,
        "--name",
        "cron",
        "--kind",
        "CronJob",
        "--schedule",
        "*/1 * * * *",
    ]);
    let made = wait_until(WAIT, || w.services_of("cron").len() == 3);
    assert!(made, "no Services for the CronJob:\n{}", w.hook.logs());
    for s in w.services_of("cron") {
        assert_eq!(owner(&s), ("CronJob".to_string(), "cron".to_string()));
    }
    let mut job = String::new();
    let spawned = wait_until(WAIT, || {
        let jobs = w.items(&["jobs"]);
        job = jobs
            .iter()
            .find(|j| owner(j).0 == "CronJob")
            .and_then(|j| j["metadata"]["name"].as_str())
            .unwrap_or_default()
            .to_string();
        !job.is_empty()
    });
    assert!(spawned, "the CronJob never ran");
    let labels = &w.get_json(&["job", &job])["metadata"]["labels"];
    assert_eq!(
        labels[WORKLOAD], "cron",
        "the run carries the workload label"
    );
    // Two resyncs of the Services controller (5 s each) after the run appeared.
    std::thread::sleep(std::time::Duration::from_secs(12));
    let of_jobs: Vec<String> = w
        .items(&["services"])
        .iter()
        .filter(|s| owner(s).0 == "Job")
        .map(|s| s["metadata"]["name"].as_str().unwrap_or_default().into())
        .collect();
    assert!(
        of_jobs.is_empty(),
        "Services of a CronJob's run: {of_jobs:?}"
    );
    assert_eq!(w.services_of("cron").len(), 3);
}
