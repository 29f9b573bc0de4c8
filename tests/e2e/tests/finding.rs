//! Finding AppImages among 2,000 on a real kube-apiserver (issue 19): `kubectl appimage get`
//! with a label selector, a search, paging through limit/continue, and sorting. The plugin's
//! `-v=6` logs every request it sends, so the test counts the real requests.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use appimage_e2e::{Cluster, cluster, text, write_json};
use serde_json::{Value, json};

const COUNT: usize = 2000;
const GROUP: &str = "finding.test/group";
/// Names that match the search `SecretFlow`: whole name, prefix, substring.
const SPECIAL: [&str; 3] = ["secretflow", "secretflow-lite-7", "my-secretflow-job"];

fn name(i: usize) -> String {
    format!("find-{i:04}")
}

/// Every 100th runs a SecretFlow image; every 250th (offset 7) serves a SecretFlow role.
fn fixture(i: usize) -> Value {
    let image = if i.is_multiple_of(100) {
        "docker.io/secretflow/secretflow-lite-anolis8"
    } else {
        "busybox"
    };
    let role = if i % 250 == 7 {
        "SecretFlow-Server"
    } else {
        "server"
    };
    appimage(
        &name(i),
        &format!("g{}", i % 4),
        image,
        &format!("v{}", i * 7 % 10),
        role,
    )
}

fn appimage(name: &str, group: &str, image: &str, tag: &str, role: &str) -> Value {
    json!({
        "apiVersion": "kuscia.secretflow/v1alpha1",
        "kind": "AppImage",
        "metadata": {"name": name, "labels": {GROUP: group}},
        "spec": {
            "image": {"name": image, "tag": tag},
            "deployTemplates": [{"name": "t", "role": role, "spec": {"containers": [{"name": "c"}]}}]
        }
    })
}

/// The cluster with the 2,000 AppImages and the three specials, created once per test binary.
fn setup() -> &'static Cluster {
    static DONE: OnceLock<()> = OnceLock::new();
    let c = cluster();
    DONE.get_or_init(|| {
        let mut items: Vec<Value> = (0..COUNT).map(fixture).collect();
        for special in SPECIAL {
            items.push(appimage(special, "special", "busybox", "v1", "server"));
        }
        let dir = tempfile::tempdir().expect("tmp");
        let file = write_json(
            dir.path(),
            &json!({"apiVersion": "v1", "kind": "List", "items": items}),
        );
        // Server-side apply is idempotent, so a request the loaded apiserver drops can be sent
        // again; the tests below check that every object is there.
        let args = [
            "apply",
            "--server-side",
            "-f",
            &file.to_string_lossy(),
            "-o",
            "name",
        ];
        let mut last = String::new();
        let applied = (0..3).any(|_| {
            let out = c.kubectl(&args);
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            out.status.success()
        });
        assert!(applied, "cannot create the AppImages: {last}");
    });
    c
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn get(c: &Cluster, args: &[&str]) -> Run {
    let mut full = vec!["appimage", "get"];
    full.extend_from_slice(args);
    let out = c.kubectl(&full);
    let (stdout, stderr) = text(&out);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// `-o name` lines as plain names, in order.
fn names(run: &Run) -> Vec<String> {
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
        .lines()
        .map(|l| {
            l.strip_prefix("appimage.kuscia.secretflow/")
                .unwrap_or_else(|| panic!("not a name: {l}"))
                .to_string()
        })
        .collect()
}

/// The AppImage list requests `-v=6` logged.
fn list_requests(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| {
            l.starts_with("GET ") && l.contains("/apis/kuscia.secretflow/v1alpha1/appimages")
        })
        .collect()
}

fn all_names() -> BTreeSet<String> {
    (0..COUNT)
        .map(name)
        .chain(SPECIAL.iter().map(|s| s.to_string()))
        .collect()
}

#[test]
fn paging_reads_every_appimage_in_several_requests() {
    let c = setup();
    let total = COUNT + SPECIAL.len();
    // 2,003 in pages of 300: 7 requests, each after the first continuing the one before.
    let run = get(c, &["-o", "name", "--chunk-size", "300", "-v=6"]);
    let got = names(&run);
    assert_eq!(got.len(), total, "duplicates or losses");
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), all_names());
    let requests = list_requests(&run);
    assert_eq!(requests.len(), 7, "{}", run.stderr);
    assert!(
        requests
            .iter()
            .all(|r| r.contains("limit=300") && r.contains(" 200 OK in "))
    );
    assert_eq!(
        requests.iter().filter(|r| r.contains("continue=")).count(),
        6
    );

    // kubectl's default chunk size, 500: 5 requests.
    let run = get(c, &["-o", "name", "-v=6"]);
    assert_eq!(names(&run).len(), total);
    let requests = list_requests(&run);
    assert_eq!(requests.len(), 5, "{}", run.stderr);
    assert!(requests.iter().all(|r| r.contains("limit=500")));

    // --chunk-size 0: one request without a limit.
    let run = get(c, &["-o", "name", "--chunk-size", "0", "-v=6"]);
    assert_eq!(names(&run).len(), total);
    let requests = list_requests(&run);
    assert_eq!(requests.len(), 1, "{}", run.stderr);
    assert!(!requests[0].contains("limit="), "{}", requests[0]);

    // Without -v nothing is logged.
    let run = get(c, &["-o", "name", "--chunk-size", "300"]);
    assert_eq!(names(&run).len(), total);
    assert_eq!(run.stderr, "");
}

#[test]
fn a_selector_pages_through_the_matching_ones() {
    let c = setup();
    let run = get(
        c,
        &[
            "-l",
            &format!("{GROUP}=g1"),
            "--chunk-size",
            "100",
            "-o",
            "name",
            "-v=6",
        ],
    );
    let got = names(&run);
    let want: Vec<String> = (0..COUNT).filter(|i| i % 4 == 1).map(name).collect();
    assert_eq!(got, want);
    let requests = list_requests(&run);
    assert!(requests.len() >= 5, "{}", run.stderr);
    assert!(requests.iter().all(|r| r.contains("labelSelector=")));

    let run = get(c, &["-l", &format!("{GROUP}=nobody")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr.trim(), "No resources found");
}

#[test]
fn search_finds_the_expected_ones_best_match_first() {
    let c = setup();
    let mut want: Vec<String> = SPECIAL.iter().map(|s| s.to_string()).collect();
    want.extend((0..COUNT).filter(|i| i.is_multiple_of(100)).map(name));
    want.extend((0..COUNT).filter(|i| i % 250 == 7).map(name));
    assert_eq!(want.len(), 3 + 20 + 8);

    let run = get(
        c,
        &[
            "--search",
            "SecretFlow",
            "-o",
            "name",
            "--chunk-size",
            "250",
        ],
    );
    assert_eq!(names(&run), want);

    // The table lists the same rows in the same order.
    let run = get(c, &["--search", "secretFLOW"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: Vec<&str> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(rows, want);

    // With a selector, only the matches among the selected: the image matches of group g0.
    let run = get(
        c,
        &[
            "--search",
            "secretflow",
            "-l",
            &format!("{GROUP}=g0"),
            "-o",
            "name",
        ],
    );
    let images: Vec<String> = (0..COUNT)
        .filter(|i| i.is_multiple_of(100))
        .map(name)
        .collect();
    assert_eq!(names(&run), images);

    let run = get(c, &["--search", "no-such-appimage-anywhere"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
    assert_eq!(run.stderr.trim(), "No resources found");
}

#[test]
fn an_empty_search_is_refused_before_listing() {
    let c = setup();
    let run = get(c, &["--search", " ", "-v=6"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("--search needs some text"),
        "{}",
        run.stderr
    );
    assert!(list_requests(&run).is_empty(), "{}", run.stderr);
}

#[test]
fn sorting_by_a_field_or_by_age() {
    let c = setup();
    let selector = format!("{GROUP}=g2");
    let run = get(
        c,
        &[
            "-l",
            &selector,
            "--sort-by",
            "{.spec.image.tag}",
            "-o",
            "json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list: Value = serde_json::from_str(&run.stdout).expect("json");
    let tags: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["spec"]["image"]["tag"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(tags.len(), COUNT / 4);
    assert!(tags.windows(2).all(|w| w[0] <= w[1]), "not sorted by tag");
    assert_ne!(tags.first(), tags.last());

    let run = get(c, &["-l", &selector, "--sort", "age", "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list: Value = serde_json::from_str(&run.stdout).expect("json");
    let created: Vec<(&str, &str)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let meta = &i["metadata"];
            (
                meta["creationTimestamp"].as_str().unwrap_or_default(),
                meta["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(created.len(), COUNT / 4);
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "not oldest first");

    let run = get(c, &["--sort-by", ".metadata.nope", "-l", &selector]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("couldn't find any field with path \".metadata.nope\""),
        "{}",
        run.stderr
    );
}
