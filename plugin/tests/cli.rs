//! The built `kubectl-appimage` binary, offline only: nothing here contacts a cluster.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-appimage");

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join(name)
}

fn example_text(name: &str) -> String {
    std::fs::read_to_string(example(name)).expect("example")
}

/// A directory of the AppImage examples alone: `examples/` also holds other kinds (a Pod
/// template fragment for `deploy`), which `-f DIR` would rightly refuse.
fn appimage_examples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for name in [
        "app-template.yaml",
        "secretflow-image.yaml",
        "secretflow-image-update.yaml",
    ] {
        std::fs::copy(example(name), dir.path().join(name)).expect("copy example");
    }
    dir
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// Run with a kubeconfig that does not exist, so a stray cluster call fails instead of
/// reaching whatever the machine's kubeconfig points at.
fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env(
            "KUBECONFIG",
            "/nonexistent/kubectl-appimage-test/kubeconfig",
        )
        .env_remove("HOME");
    c
}

fn run(args: &[&str]) -> Run {
    finish(command(args).output().expect("run kubectl-appimage"))
}

fn run_stdin(args: &[&str], stdin: &str) -> Run {
    let mut child = command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    finish(child.wait_with_output().expect("wait"))
}

fn ok(args: &[&str]) -> String {
    let r = run(args);
    assert_eq!(r.code, 0, "{args:?} failed:\n{}", r.stderr);
    r.stdout
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A temporary file holding `text`.
fn temp(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(name);
    std::fs::write(&file, text).expect("write");
    (dir, file)
}

fn render_json(file: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["render", "-f", path(file), "-o", "json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&args)).expect("render -o json is JSON")
}

fn services_by_port(doc: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = doc["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            let labels = &s["metadata"]["labels"];
            (
                labels["kuscia.secretflow/port-name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                labels["kuscia.secretflow/port-scope"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn render_secretflow_example_as_json() {
    let file = example("secretflow-image.yaml");
    let doc = render_json(&file, &["--task-id", "t1"]);
    assert_eq!(doc["kind"], "Render");
    assert_eq!(doc["apiVersion"], "appimage.kuscia.secretflow/v1alpha1");
    assert_eq!(doc["appImage"], "secretflow-image");
    assert_eq!(doc["template"], "secretflow");
    let pod = &doc["pod"];
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["namespace"], "default");
    assert_eq!(pod["metadata"]["name"], "secretflow-image-secretflow-0");
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    assert_eq!(
        containers[0]["image"],
        "secretflow/secretflow-lite-anolis8:latest"
    );
    assert_eq!(containers[0]["ports"].as_array().expect("ports").len(), 3);

    let conf: Value = serde_json::from_str(
        doc["configFiles"]["task-config.conf"]
            .as_str()
            .expect("task-config.conf"),
    )
    .expect("task-config.conf is JSON");
    assert_eq!(conf["task_id"], "t1");

    assert_eq!(
        services_by_port(&doc),
        [
            ("fed".to_string(), "Cluster".to_string()),
            ("global".to_string(), "Domain".to_string()),
            ("spu".to_string(), "Cluster".to_string()),
        ]
    );
    assert_eq!(doc["networkPolicies"].as_array().map(Vec::len), Some(0));
}

#[test]
fn render_is_byte_identical_across_runs() {
    let file = example("secretflow-image.yaml");
    for output in ["json", "yaml", "manifests"] {
        let args = ["render", "-f", path(&file), "--task-id", "t1", "-o", output];
        assert_eq!(ok(&args), ok(&args), "-o {output}");
    }
}

#[test]
fn render_flags_reach_the_pod() {
    let file = example("secretflow-image.yaml");
    let doc = render_json(
        &file,
        &[
            "--namespace",
            "alice",
            "--pod-name",
            "job-1",
            "--input-config",
            "cfg",
        ],
    );
    assert_eq!(doc["pod"]["metadata"]["name"], "job-1");
    assert_eq!(doc["pod"]["metadata"]["namespace"], "alice");
    let conf: Value =
        serde_json::from_str(doc["configFiles"]["task-config.conf"].as_str().unwrap()).unwrap();
    assert_eq!(conf["task_input_config"], "cfg");
    for s in doc["services"].as_array().unwrap() {
        assert_eq!(s["metadata"]["namespace"], "alice");
    }
}

#[test]
fn show_config_prints_the_file_verbatim() {
    let file = example("secretflow-image.yaml");
    let out = ok(&[
        "render",
        "-f",
        path(&file),
        "--task-id",
        "t9",
        "--show-config",
        "task-config.conf",
    ]);
    let conf: Value = serde_json::from_str(&out).expect("config is JSON");
    assert_eq!(conf["task_id"], "t9");
    let doc = render_json(&file, &["--task-id", "t9"]);
    assert_eq!(
        doc["configFiles"]["task-config.conf"].as_str(),
        Some(out.as_str())
    );

    let r = run(&["render", "-f", path(&file), "--show-config", "nope.conf"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("\"nope.conf\"") && r.stderr.contains("task-config.conf"),
        "{}",
        r.stderr
    );
}

#[test]
fn manifests_are_a_yaml_stream_of_kubernetes_objects() {
    let file = example("secretflow-image.yaml");
    let out = ok(&["render", "-f", path(&file), "-o", "manifests"]);
    let kinds: Vec<String> = serde_yaml_ng::Deserializer::from_str(&out)
        .map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).expect("YAML document");
            v["kind"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(kinds, ["Pod", "Service", "Service", "Service"]);
    assert!(!out.contains("kind: Render"));
}

#[test]
fn the_role_picks_the_template() {
    let file = example("app-template.yaml");
    let client = render_json(&file, &["--role", "client"]);
    assert_eq!(client["template"], "app");
    let args = client["pod"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--role=client"), "{args}");
    assert_eq!(
        client["pod"]["metadata"]["labels"]["kuscia.secretflow/pod-role"],
        "client"
    );
    assert_eq!(client["networkPolicies"].as_array().map(Vec::len), Some(0));

    let server = render_json(&file, &["--role", "server"]);
    let args = server["pod"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--role=server"), "{args}");
    let policies = server["networkPolicies"]
        .as_array()
        .expect("networkPolicies");
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0]["kind"], "NetworkPolicy");

    let r = run(&["render", "-f", path(&file), "--role", "nope"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    for needle in ["\"nope\"", "server", "client"] {
        assert!(r.stderr.contains(needle), "lacks {needle}: {}", r.stderr);
    }
}

#[test]
fn a_template_name_that_does_not_exist_is_named() {
    let file = example("app-template.yaml");
    let r = run(&["render", "-f", path(&file), "--template", "ghost"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("\"ghost\"") && r.stderr.contains("app"),
        "{}",
        r.stderr
    );
}

#[test]
fn strict_mode_names_the_missing_key_and_set_fills_it() {
    let text = example_text("secretflow-image.yaml").replace(
        "\"task_id\": \"{{.TASK_ID}}\",",
        "\"task_id\": \"{{.TASK_ID}}\",\n        \"log_level\": \"{{.LOG_LEVEL}}\",",
    );
    assert!(text.contains("LOG_LEVEL"));
    let (_dir, file) = temp("strict.yaml", &text);

    let r = run(&["render", "-f", path(&file), "--strict"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    assert!(r.stderr.contains("LOG_LEVEL"), "{}", r.stderr);

    // Without --strict the key renders empty.
    let doc = render_json(&file, &[]);
    let conf: Value =
        serde_json::from_str(doc["configFiles"]["task-config.conf"].as_str().unwrap()).unwrap();
    assert_eq!(conf["log_level"], "");

    let doc = render_json(
        &file,
        &[
            "--strict",
            "--set",
            "LOG_LEVEL=debug",
            "--set",
            "TASK_ID=over",
        ],
    );
    let conf: Value =
        serde_json::from_str(doc["configFiles"]["task-config.conf"].as_str().unwrap()).unwrap();
    assert_eq!(conf["log_level"], "debug");
    assert_eq!(conf["task_id"], "over");

    let r = run(&["render", "-f", path(&file), "--set", "novalue"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("KEY=VALUE"), "{}", r.stderr);
}

#[test]
fn render_needs_a_name_when_the_files_hold_several() {
    let examples = appimage_examples();
    let dir = examples.path().to_path_buf();
    let r = run(&["render", "-f", path(&dir)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("app-template") && r.stderr.contains("NAME"),
        "{}",
        r.stderr
    );
    let out = ok(&[
        "render",
        "app-template",
        "-f",
        path(&dir),
        "--role",
        "server",
        "-o",
        "json",
    ]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["appImage"], "app-template");
    let r = run(&["render", "ghost", "-f", path(&dir)]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("\"ghost\""), "{}", r.stderr);
}

#[test]
fn render_reads_stdin() {
    let r = run_stdin(
        &["render", "-f", "-", "-o", "json"],
        &example_text("secretflow-image.yaml"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["appImage"], "secretflow-image");
}

#[test]
fn render_yaml_is_the_same_document_as_json() {
    let file = example("secretflow-image.yaml");
    let yaml: Value =
        serde_yaml_ng::from_str(&ok(&["render", "-f", path(&file), "--task-id", "t1"])).unwrap();
    let json = render_json(&file, &["--task-id", "t1"]);
    assert_eq!(yaml, json);
}

#[test]
fn validate_accepts_every_example() {
    for name in [
        "secretflow-image.yaml",
        "secretflow-image-update.yaml",
        "app-template.yaml",
    ] {
        let file = example(name);
        let out = ok(&["validate", "-f", path(&file)]);
        let expected = if name.starts_with("app") {
            "app-template"
        } else {
            "secretflow-image"
        };
        assert_eq!(out, format!("appimage \"{expected}\" is valid\n"));
    }
    let examples = appimage_examples();
    let out = ok(&["validate", "-f", path(examples.path())]);
    assert_eq!(out.lines().count(), 3, "{out}");
}

/// Each broken variant of an example, and the field path its error must name.
fn broken_cases() -> Vec<(&'static str, String, &'static str)> {
    let sf = example_text("secretflow-image.yaml");
    let swap = |text: &str, from: &str, to: &str| {
        assert!(text.contains(from), "example lacks {from:?}");
        text.replacen(from, to, 1)
    };
    vec![
        (
            "duplicate port name",
            swap(
                &sf,
                "            workingDir: /work\n",
                "            workingDir: /work\n          - name: sidecar\n            ports:\n              - name: fed\n",
            ),
            "spec.deployTemplates[0].spec.containers[1].ports[0].name",
        ),
        (
            "probe on an undeclared port",
            swap(
                &sf,
                "            workingDir: /work\n",
                "            workingDir: /work\n            livenessProbe:\n              httpGet:\n                path: /healthz\n                port: nope\n",
            ),
            "spec.deployTemplates[0].spec.containers[0].livenessProbe.httpGet.port",
        ),
        (
            "metric probe on an undeclared port",
            swap(
                &sf,
                "            workingDir: /work\n",
                "            workingDir: /work\n            metricProbe:\n              path: /metrics\n              port: metrics\n",
            ),
            "spec.deployTemplates[0].spec.containers[0].metricProbe.port",
        ),
        (
            "config template that does not parse",
            swap(
                &sf,
                "\"task_id\": \"{{.TASK_ID}}\"",
                "\"task_id\": \"{{if .X}}\"",
            ),
            "spec.configTemplates[\"task-config.conf\"]",
        ),
        (
            "name that is not DNS-1123",
            swap(&sf, "name: secretflow-image", "name: Bad_Name"),
            "metadata.name",
        ),
        (
            "unknown field",
            swap(
                &sf,
                "  deployTemplates:\n",
                "  bogusField: 1\n  deployTemplates:\n",
            ),
            "spec.bogusField",
        ),
        (
            "wrong kind",
            swap(&sf, "kind: AppImage", "kind: Pod"),
            "kind Pod; expected apiVersion kuscia.secretflow/v1alpha1 kind AppImage",
        ),
        (
            "invalid YAML",
            "apiVersion: [\n  kind: AppImage\n".to_string(),
            "invalid YAML",
        ),
    ]
}

/// Variants that Kuscia accepts and render leaves a part out of (issue 16): valid, with a
/// warning that names the field.
fn warned_cases() -> Vec<(&'static str, String, &'static str)> {
    let sf = example_text("secretflow-image.yaml");
    let app = example_text("app-template.yaml");
    vec![
        (
            "network policy on an undeclared port",
            app.replacen(
                "              - port: global\n",
                "              - port: nope\n",
                1,
            ),
            "spec.deployTemplates[0].networkPolicy.ingresses[0].ports[0].port",
        ),
        (
            "subPath that is not a config template",
            sf.replacen("subPath: task-config.conf", "subPath: other.conf", 1),
            "spec.deployTemplates[0].spec.containers[0].configVolumeMounts[0].subPath",
        ),
    ]
}

#[test]
fn validate_warns_of_what_render_leaves_out() {
    for (what, text, field) in warned_cases() {
        let (_dir, file) = temp("warned.yaml", &text);
        let r = run(&["validate", "-f", path(&file)]);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert!(r.stdout.contains("is valid"), "{what}: {}", r.stdout);
        let warned = r
            .stderr
            .lines()
            .any(|l| l.starts_with("Warning: ") && l.contains(field));
        assert!(warned, "{what} does not warn about {field}: {}", r.stderr);
    }
}

#[test]
fn validate_names_the_broken_field() {
    for (what, text, field) in broken_cases() {
        let (_dir, file) = temp("bad.yaml", &text);
        let r = run(&["validate", "-f", path(&file)]);
        assert_eq!(r.code, 1, "{what}: {}", r.stderr);
        assert!(r.stderr.starts_with("error: "), "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains(path(&file)),
            "{what} names no file: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(field),
            "{what} does not name {field}: {}",
            r.stderr
        );
        assert!(!r.stdout.contains("is valid"), "{what}: {}", r.stdout);
    }
}

#[test]
fn validate_lists_every_field_error_as_bullets() {
    let text = example_text("secretflow-image.yaml")
        .replace("name: secretflow-image", "name: Bad_Name")
        .replace(
            "            workingDir: /work\n",
            "            workingDir: /work\n            metricProbe:\n              path: /metrics\n              port: metrics\n",
        );
    let (_dir, file) = temp("two.yaml", &text);
    let r = run(&["validate", "-f", path(&file)]);
    assert_eq!(r.code, 1);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!("error: {}: appimage \"Bad_Name\" is invalid:", path(&file))
    );
    assert!(lines[1].starts_with("  * metadata.name: "), "{}", r.stderr);
    assert!(
        lines[2].starts_with("  * spec.deployTemplates[0].spec.containers[0].metricProbe.port: "),
        "{}",
        r.stderr
    );
}

#[test]
fn validate_reports_good_and_bad_documents_of_one_stream() {
    let good = example_text("secretflow-image.yaml");
    let bad = good.replace("name: secretflow-image", "name: Bad_Name");
    let (_dir, file) = temp("mixed.yaml", &format!("{good}---\n{bad}"));
    let r = run(&["validate", "-f", path(&file)]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "appimage \"secretflow-image\" is valid\n");
    assert!(
        r.stderr.contains("appimage \"Bad_Name\" is invalid"),
        "{}",
        r.stderr
    );
}

#[test]
fn writes_refuse_invalid_files_before_contacting_anything() {
    for (what, text, field) in broken_cases() {
        let (_dir, file) = temp("bad.yaml", &text);
        for verb in ["create", "apply", "update"] {
            let r = run(&[verb, "-f", path(&file), "--dry-run=client"]);
            assert_eq!(r.code, 1, "{verb} {what}");
            assert!(r.stdout.is_empty(), "{verb} {what}: {}", r.stdout);
            assert!(r.stderr.contains(field), "{verb} {what}: {}", r.stderr);
        }
        // Without a dry run too: the file is refused before the (missing) kubeconfig is read.
        let r = run(&["create", "-f", path(&file)]);
        assert_eq!(r.code, 1, "{what}");
        assert!(!r.stderr.contains("kubeconfig"), "{what}: {}", r.stderr);
        assert!(r.stderr.contains(field), "{what}: {}", r.stderr);
    }
}

#[test]
fn one_invalid_file_stops_every_write() {
    let bad =
        example_text("secretflow-image.yaml").replace("name: secretflow-image", "name: Bad_Name");
    let (dir, _) = temp("b.yaml", &bad);
    std::fs::copy(example("app-template.yaml"), dir.path().join("a.yaml")).unwrap();
    let r = run(&["create", "-f", path(dir.path()), "--dry-run=client"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

#[test]
fn client_dry_runs_print_kubectl_messages() {
    let file = example("secretflow-image.yaml");
    let f = path(&file);
    let cases = [
        (
            vec!["create", "-f", f, "--dry-run=client"],
            "appimage.kuscia.secretflow/secretflow-image created (dry run)\n",
        ),
        (
            vec!["create", "-f", f, "--dry-run"],
            "appimage.kuscia.secretflow/secretflow-image created (dry run)\n",
        ),
        (
            vec!["apply", "-f", f, "--dry-run=client"],
            "appimage.kuscia.secretflow/secretflow-image configured (dry run)\n",
        ),
        (
            vec!["update", "-f", f, "--dry-run=client"],
            "appimage.kuscia.secretflow/secretflow-image replaced (dry run)\n",
        ),
        (
            vec!["delete", "secretflow-image", "--dry-run=client"],
            "appimage.kuscia.secretflow \"secretflow-image\" deleted (dry run)\n",
        ),
        (
            vec!["delete", "-f", f, "--dry-run=client"],
            "appimage.kuscia.secretflow \"secretflow-image\" deleted (dry run)\n",
        ),
        (
            vec!["create", "-f", f, "--dry-run=client", "-o", "name"],
            "appimage.kuscia.secretflow/secretflow-image\n",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(ok(&args), want, "{args:?}");
    }
    let out = ok(&["create", "-f", f, "--dry-run=client", "-o", "yaml"]);
    let doc: Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(doc["kind"], "AppImage");
    assert_eq!(doc["metadata"]["name"], "secretflow-image");
    let examples = appimage_examples();
    let out = ok(&[
        "apply",
        "-f",
        path(examples.path()),
        "--dry-run=client",
        "-o",
        "json",
    ]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["kind"], "List");
    assert_eq!(doc["items"].as_array().map(Vec::len), Some(3));
}

#[test]
fn a_missing_file_gets_kubectls_wording() {
    for verb in ["validate", "create", "apply", "update", "render"] {
        let r = run(&[verb, "-f", "no-such.yaml"]);
        assert_eq!(r.code, 1, "{verb}");
        assert_eq!(
            r.stderr, "error: the path \"no-such.yaml\" does not exist\n",
            "{verb}"
        );
    }
}

#[test]
fn cluster_commands_explain_a_missing_kubeconfig() {
    let r = run(&["get", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    assert!(r.stderr.contains("/nonexistent/kubeconfig"), "{}", r.stderr);
    // KUBECONFIG (set by `run`) is used when the flag is absent.
    let r = run(&["describe", "x"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("KUBECONFIG"), "{}", r.stderr);
}

#[test]
fn an_unknown_context_lists_the_real_ones() {
    // The server is never contacted: the context check comes first.
    let kubeconfig = "apiVersion: v1\nkind: Config\ncurrent-context: one\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\ncontexts:\n- name: one\n  context: {cluster: c, user: u}\n- name: two\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n";
    let (_dir, file) = temp("kubeconfig", kubeconfig);
    let r = run(&["--kubeconfig", path(&file), "--context", "three", "get"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("\"three\""), "{}", r.stderr);
    assert!(r.stderr.contains("one, two"), "{}", r.stderr);
}

#[test]
fn crd_prints_every_definition() {
    let out = ok(&["crd"]);
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&out)
        .map(|d| Value::deserialize(d).expect("CRD YAML"))
        .collect();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "appimages.kuscia.secretflow",
            "appimagerevisions.appimage.kuscia.secretflow",
            "batchdeployments.appimage.kuscia.secretflow",
            "appimagerollouts.appimage.kuscia.secretflow"
        ]
    );
    assert!(docs.iter().all(|d| d["kind"] == "CustomResourceDefinition"));
    assert_eq!(docs[0]["spec"]["names"]["shortNames"][0], "aimg");
}

#[test]
fn version_completion_and_help() {
    let out = ok(&["version"]);
    assert_eq!(
        out,
        format!("kubectl-appimage version v{}\n", env!("CARGO_PKG_VERSION"))
    );
    let doc: Value = serde_json::from_str(&ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(doc["version"], format!("v{}", env!("CARGO_PKG_VERSION")));

    let bash = ok(&["completion", "bash"]);
    assert!(bash.contains("kubectl-appimage"), "{bash}");
    assert!(bash.contains("render"));
    for shell in ["zsh", "fish", "powershell"] {
        assert!(!ok(&["completion", shell]).is_empty(), "{shell}");
    }

    let help = ok(&["--help"]);
    assert!(help.contains("kubectl appimage"), "{help}");
    for sub in [
        "create",
        "apply",
        "update",
        "delete",
        "get",
        "describe",
        "render",
        "validate",
        "crd",
        "completion",
        "version",
    ] {
        assert!(help.contains(sub), "help lacks {sub}: {help}");
    }
    for flag in ["--kubeconfig", "--context", "--request-timeout"] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
    let help = ok(&["render", "--help"]);
    assert!(
        help.contains("--show-config") && help.contains("--strict"),
        "{help}"
    );
}

/// kubectl exits 1 on a usage error (clap's default would be 2), and 0 after help or version.
#[test]
fn usage_errors_exit_1() {
    for args in [
        vec!["frobnicate"],
        vec!["get", "--request-timeout", "soon"],
        vec!["create"],
        vec!["delete"],
        vec!["render"],
        vec!["create", "-f", "x.yaml", "--dry-run=maybe"],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
        assert!(r.stderr.starts_with("error: "), "{args:?}: {}", r.stderr);
    }
    for args in [vec!["--help"], vec!["get", "-h"], vec!["--version"]] {
        let r = run(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(!r.stdout.is_empty() && r.stderr.is_empty(), "{args:?}");
    }
}

/// Issue 27: offline output names `name:tag` (the image id is Kuscia's image ID, which names no
/// manifest) and says on stderr what only the webhook, with the registry, can know.
#[test]
fn offline_output_names_name_tag_and_says_what_it_cannot_know_of_an_image_id() {
    let id = format!("sha256:{}", "c".repeat(64));
    let text = example_text("secretflow-image.yaml").replacen(
        "    tag: \"latest\"\n",
        &format!("    tag: \"latest\"\n    id: \"{id}\"\n"),
        1,
    );
    assert!(
        text.contains(&id),
        "the example's image has no tag line to pin"
    );
    let text = text
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with("id: d4ffa") && !l.trim_start().starts_with("sign:")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (_dir, file) = temp("pinned.yaml", &text);
    let r = run(&["render", "-f", path(&file), "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(
        doc["pod"]["spec"]["containers"][0]["image"],
        "secretflow/secretflow-lite-anolis8:latest"
    );
    assert_eq!(
        doc["pod"]["metadata"]["annotations"]["kuscia.secretflow/image-id"],
        id.as_str()
    );
    assert!(
        r.stderr
            .contains(&format!("Note: spec.image.id {id} is the image ID"))
            && r.stderr.contains("--verify-image-ids"),
        "{}",
        r.stderr
    );
    // An id that is not a digest is not checked, so nothing is said.
    let plain = run(&[
        "render",
        "-f",
        path(&example("secretflow-image.yaml")),
        "-o",
        "json",
    ]);
    assert!(!plain.stderr.contains("Note:"), "{}", plain.stderr);
}

/// Issue 30: the README's command table and `--help` list the same commands.
#[test]
fn the_readme_command_table_lists_every_command_of_help() {
    let help = ok(&["--help"]);
    let mut from_help: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    from_help.sort();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    let table = readme
        .split("## Command reference")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("the command reference section");
    let mut from_readme: Vec<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|cell| {
            let first = cell.split(['`', ' ']).next().unwrap_or_default();
            first.split("\\|").map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    from_readme.sort();
    from_readme.dedup();
    assert_eq!(from_readme, from_help, "README command table vs --help");
}
