//! The seed walkthrough and the plugin's story on a real kube-apiserver, through the real
//! kubectl with `kubectl-appimage` found on PATH.

use appimage_e2e::{Cluster, cluster, repo_root, temp_file, text, unique};
use serde_json::Value;

fn example(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples").join(name)).expect("example")
}

/// The seed example under another name, so tests can run side by side.
fn renamed(file: &str, name: &str) -> String {
    let text = example(file);
    let old = if file.starts_with("app-template") {
        "name: app-template"
    } else {
        "name: secretflow-image"
    };
    assert!(text.contains(old));
    text.replacen(old, &format!("name: {name}"), 1)
}

fn plugin(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["appimage"];
    full.extend_from_slice(args);
    let out = c.kubectl(&full);
    let (o, e) = text(&out);
    (out.status.code().unwrap_or(-1), o, e)
}

#[test]
fn kubectl_discovers_the_plugin() {
    let c = cluster();
    let out = c.kubectl_ok(&["plugin", "list"]);
    assert!(out.contains("kubectl-appimage"), "{out}");
    let (code, out, _) = plugin(c, &["version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("kubectl-appimage version v"), "{out}");
}

#[test]
fn seed_walkthrough_with_plain_kubectl() {
    let c = cluster();
    // 1. create
    let out = c.kubectl_ok(&["apply", "-f", "examples/secretflow-image.yaml"]);
    assert_eq!(
        out.trim(),
        "appimage.kuscia.secretflow/secretflow-image created"
    );
    // 2. get, with the CRD's printer columns
    let out = c.kubectl_ok(&["get", "appimage", "secretflow-image"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "IMAGE", "TAG", "ROLES", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..3],
        [
            "secretflow-image",
            "secretflow/secretflow-lite-anolis8",
            "latest"
        ]
    );
    // 3. -o yaml
    let out = c.kubectl_ok(&["get", "appimage", "secretflow-image", "-o", "yaml"]);
    let doc: Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(doc["kind"], "AppImage");
    assert_eq!(doc["spec"]["image"]["id"], "d4ffa123aa45mnkj");
    assert_eq!(
        doc["spec"]["deployTemplates"][0]["spec"]["containers"][0]["ports"][2]["scope"],
        "Domain"
    );
    // Update: the global port becomes 8082, seen with the seed's own grep.
    let out = c.kubectl_ok(&["apply", "-f", "examples/secretflow-image-update.yaml"]);
    assert_eq!(
        out.trim(),
        "appimage.kuscia.secretflow/secretflow-image configured"
    );
    let out = c
        .command("sh")
        .args([
            "-c",
            "kubectl get appimage secretflow-image -o  yaml | grep '\\- name: global' -A 3",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "        - name: global\n          port: 8082\n          protocol: GRPC\n          scope: Domain\n"
    );
    // Delete, and the exact NotFound of the seed.
    let out = c.kubectl_ok(&["delete", "appimage", "secretflow-image"]);
    assert_eq!(
        out.trim(),
        "appimage.kuscia.secretflow \"secretflow-image\" deleted"
    );
    let out = c.kubectl(&["get", "appimage", "secretflow-image"]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out).1.trim_end(),
        "Error from server (NotFound): appimages.kuscia.secretflow \"secretflow-image\" not found"
    );
}

#[test]
fn the_same_story_through_the_plugin() {
    let c = cluster();
    let name = unique("sf");
    let (_d1, create) = temp_file("create.yaml", &renamed("secretflow-image.yaml", &name));
    let (_d2, update) = temp_file(
        "update.yaml",
        &renamed("secretflow-image-update.yaml", &name),
    );
    let create = create.to_string_lossy().into_owned();
    let update = update.to_string_lossy().into_owned();

    // update before create: a clear NotFound
    let (code, _, err) = plugin(c, &["update", "-f", &update]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        format!("Error from server (NotFound): appimages.kuscia.secretflow \"{name}\" not found")
    );
    // server dry run changes nothing
    let (code, out, err) = plugin(c, &["create", "-f", &create, "--dry-run=server"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("appimage.kuscia.secretflow/{name} created (server dry run)")
    );
    assert!(!c.kubectl(&["get", "appimage", &name]).status.success());

    let (code, out, err) = plugin(c, &["create", "-f", &create]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("appimage.kuscia.secretflow/{name} created")
    );
    let (code, _, err) = plugin(c, &["create", "-f", &create]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        format!(
            "Error from server (AlreadyExists): appimages.kuscia.secretflow \"{name}\" already exists"
        )
    );

    // get: table, yaml, json, name
    let (code, out, _) = plugin(c, &["get", &name]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    // The STAGE column is issue 19's; an AppImage without the label is a draft.
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "IMAGE", "TAG", "ROLES", "STAGE", "AGE"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..3],
        [
            name.as_str(),
            "secretflow/secretflow-lite-anolis8",
            "latest"
        ]
    );
    assert_eq!(row[3], "<none>");
    assert_eq!(row[4], "draft");
    let (_, out, _) = plugin(c, &["get", &name, "-o", "json"]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["metadata"]["name"], name.as_str());
    assert!(doc["metadata"].get("managedFields").is_none());
    let (_, out, _) = plugin(c, &["get", &name, "-o", "yaml"]);
    let doc: Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(doc["spec"]["image"]["tag"], "latest");
    let (_, out, _) = plugin(c, &["get", &name, "-o", "name"]);
    assert_eq!(out.trim(), format!("appimage.kuscia.secretflow/{name}"));

    // apply the update, then again: idempotent
    let (code, out, err) = plugin(c, &["apply", "-f", &update]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("appimage.kuscia.secretflow/{name} configured")
    );
    let before = c.kubectl_ok(&[
        "get",
        "appimage",
        &name,
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let (code, out, _) = plugin(c, &["apply", "-f", &update]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("appimage.kuscia.secretflow/{name} unchanged")
    );
    let after = c.kubectl_ok(&[
        "get",
        "appimage",
        &name,
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    assert_eq!(before, after);
    let port = c.kubectl_ok(&[
        "get",
        "appimage",
        &name,
        "-o",
        "jsonpath={.spec.deployTemplates[0].spec.containers[0].ports[2].port}",
    ]);
    assert_eq!(port, "8082");

    // update back to the first version
    let (code, out, err) = plugin(c, &["update", "-f", &create]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("appimage.kuscia.secretflow/{name} replaced")
    );

    // describe and render from the cluster
    let (code, out, _) = plugin(c, &["describe", &name]);
    assert_eq!(code, 0);
    for needle in [
        name.as_str(),
        "secretflow/secretflow-lite-anolis8",
        "spu",
        "Cluster",
        "Domain",
        "task-config.conf",
    ] {
        assert!(out.contains(needle), "describe lacks {needle}:\n{out}");
    }
    let (code, out, err) = plugin(c, &["render", &name, "--task-id", "t1", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let conf: Value =
        serde_json::from_str(doc["configFiles"]["task-config.conf"].as_str().unwrap()).unwrap();
    assert_eq!(conf["task_id"], "t1");
    assert_eq!(doc["services"].as_array().unwrap().len(), 3);

    // delete, then the kubectl NotFound
    let (code, out, _) = plugin(c, &["delete", &name]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("appimage.kuscia.secretflow \"{name}\" deleted")
    );
    let (code, _, err) = plugin(c, &["get", &name]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        format!("Error from server (NotFound): appimages.kuscia.secretflow \"{name}\" not found")
    );
    let (code, _, _) = plugin(c, &["delete", &name, "--ignore-not-found"]);
    assert_eq!(code, 0);
}

#[test]
fn the_crd_rejects_what_its_schema_forbids() {
    let c = cluster();
    let name = unique("bad");
    let bad_enum =
        renamed("secretflow-image.yaml", &name).replace("scope: Domain", "scope: Galaxy");
    let (_d, path) = temp_file("enum.yaml", &bad_enum);
    let out = c.kubectl(&["apply", "-f", &path.to_string_lossy()]);
    assert!(!out.status.success());
    let err = text(&out).1;
    assert!(err.contains("Unsupported value: \"Galaxy\""), "{err}");
    assert!(err.contains("\"Cluster\", \"Domain\", \"Local\""), "{err}");

    let no_name = renamed("secretflow-image.yaml", &name)
        .replace("    name: secretflow/secretflow-lite-anolis8\n", "");
    let (_d, path) = temp_file("noname.yaml", &no_name);
    let out = c.kubectl(&["apply", "-f", &path.to_string_lossy()]);
    assert!(!out.status.success());
    let err = text(&out).1;
    assert!(err.contains("spec.image.name: Required value"), "{err}");
    assert!(!c.kubectl(&["get", "appimage", &name]).status.success());
}

#[test]
fn validate_catches_what_the_crd_cannot() {
    let c = cluster();
    let name = unique("dup");
    // Two containers declaring the same port name: the schema accepts it...
    let dup = renamed("secretflow-image.yaml", &name).replace(
        "            workingDir: /work\n",
        "            workingDir: /work\n          - name: sidecar\n            ports:\n              - name: fed\n",
    );
    let (_d, path) = temp_file("dup.yaml", &dup);
    let path = path.to_string_lossy().into_owned();
    let out = c.kubectl(&["apply", "--dry-run=server", "-f", &path]);
    assert!(out.status.success(), "{:?}", text(&out));
    // ...the plugin does not, names the field, and sends nothing.
    let (code, _, err) = plugin(c, &["validate", "-f", &path]);
    assert_eq!(code, 1);
    assert!(
        err.contains("spec.deployTemplates[0].spec.containers[1].ports[0].name"),
        "{err}"
    );
    let (code, _, _) = plugin(c, &["apply", "-f", &path]);
    assert_eq!(code, 1);
    assert!(!c.kubectl(&["get", "appimage", &name]).status.success());
}

#[test]
fn kubeconfig_and_context_flags_are_honoured() {
    let c = cluster();
    let name = unique("ctx");
    let (_d, file) = temp_file("x.yaml", &renamed("secretflow-image.yaml", &name));
    let file = file.to_string_lossy().into_owned();
    // A second kubeconfig: context "good" is the cluster, "broken" points at a closed port.
    let mut cfg: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(c.kubeconfig()).unwrap()).unwrap();
    let cluster_entry = cfg["clusters"][0].clone();
    let mut broken = cluster_entry.clone();
    broken["name"] = "broken".into();
    broken["cluster"]["server"] = "https://127.0.0.1:1".into();
    cfg["clusters"].as_array_mut().unwrap().push(broken);
    let user = cfg["users"][0]["name"].clone();
    cfg["contexts"] = serde_json::json!([
        {"name": "good", "context": {"cluster": cluster_entry["name"], "user": user}},
        {"name": "broken", "context": {"cluster": "broken", "user": user}},
    ]);
    cfg["current-context"] = "broken".into();
    let (_d2, second) = temp_file(
        "second.kubeconfig",
        &serde_yaml_ng::to_string(&cfg).unwrap(),
    );
    let second = second.to_string_lossy().into_owned();

    // --kubeconfig wins over KUBECONFIG; the current context (broken) fails clearly.
    let (code, _, err) = plugin(c, &["--kubeconfig", &second, "get"]);
    assert_eq!(code, 1);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    // --context selects the good one.
    let (code, out, err) = plugin(
        c,
        &[
            "--kubeconfig",
            &second,
            "--context",
            "good",
            "create",
            "-f",
            &file,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created"));
    // And it really went to the cluster the default kubeconfig also sees.
    c.kubectl_ok(&["get", "appimage", &name]);
    let (code, _, err) = plugin(c, &["--kubeconfig", "/nonexistent/kubeconfig", "get"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
    // --request-timeout is accepted with kubectl's syntax.
    let (code, _, err) = plugin(c, &["--request-timeout", "5s", "get", &name]);
    assert_eq!(code, 0, "{err}");
    c.kubectl_ok(&["delete", "appimage", &name]);
}

/// Issue 19's stages through the plugin: the label, the STAGE column, describe, a selector on
/// the stage, the replacement of a deprecated AppImage, and a missing name.
#[test]
fn publish_deprecate_and_draft_set_the_stage() {
    let c = cluster();
    let name = unique("stage");
    let (_d, file) = temp_file("s.yaml", &renamed("secretflow-image.yaml", &name));
    let (code, _, err) = plugin(c, &["create", "-f", &file.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    let stage_of = |c: &Cluster| {
        let out = c.kubectl_ok(&["get", "appimage", &name, "-o", "json"]);
        let doc: Value = serde_json::from_str(&out).unwrap();
        let meta = &doc["metadata"];
        (
            meta["labels"]["appimage.kuscia.secretflow/stage"].clone(),
            meta["annotations"]["appimage.kuscia.secretflow/replaced-by"].clone(),
        )
    };
    let object = format!("appimage.kuscia.secretflow/{name}");

    let (code, out, err) = plugin(c, &["publish", &name]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("{object} published").as_str()),
        "{err}"
    );
    assert_eq!(stage_of(c), (Value::from("published"), Value::Null));
    let (_, out, _) = plugin(c, &["publish", &name]);
    assert_eq!(out.trim(), format!("{object} unchanged (published)"));
    let (_, out, _) = plugin(c, &["get", &name, "--no-headers"]);
    assert_eq!(out.split_whitespace().nth(4), Some("published"), "{out}");
    let selector = "appimage.kuscia.secretflow/stage=published";
    let (_, out, _) = plugin(c, &["get", "-l", selector, "-o", "name"]);
    assert!(out.lines().any(|l| l == object), "{out}");

    // The replacement must exist (issue 30): refused, writing nothing, until it does.
    let newer = format!("{name}-newer");
    let (code, _, err) = plugin(c, &["deprecate", &name, "--replaced-by", &newer]);
    assert_eq!(code, 1, "a missing replacement was taken");
    assert!(err.contains("no AppImage of that name exists"), "{err}");
    assert_eq!(stage_of(c), (Value::from("published"), Value::Null));
    let (_n, newer_file) = temp_file("n.yaml", &renamed("secretflow-image.yaml", &newer));
    let (code, _, err) = plugin(c, &["create", "-f", &newer_file.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = plugin(c, &["deprecate", &name, "--replaced-by", &newer]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("{object} deprecated").as_str()),
        "{err}"
    );
    assert_eq!(
        stage_of(c),
        (Value::from("deprecated"), Value::from(newer.as_str()))
    );
    let (_, out, _) = plugin(c, &["describe", &name]);
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .map(String::from)
    };
    assert_eq!(field("Stage:").as_deref(), Some("deprecated"), "{out}");
    assert_eq!(
        field("Replaced By:").as_deref(),
        Some(newer.as_str()),
        "{out}"
    );

    // A server dry run changes nothing.
    let (code, out, _) = plugin(c, &["draft", &name, "--dry-run=server"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("{object} draft (server dry run)").as_str())
    );
    assert_eq!(
        stage_of(c),
        (Value::from("deprecated"), Value::from(newer.as_str()))
    );

    // Back to draft: the replacement goes with the deprecation.
    let (code, out, err) = plugin(c, &["draft", &name]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("{object} draft").as_str()),
        "{err}"
    );
    assert_eq!(stage_of(c), (Value::from("draft"), Value::Null));

    // A missing AppImage is reported as kubectl reports it; the others are still moved.
    let ghost = unique("ghost");
    let (code, out, err) = plugin(c, &["publish", &ghost, &name]);
    assert_eq!(code, 1);
    assert_eq!(out.trim(), format!("{object} published"));
    assert_eq!(
        err.trim(),
        format!("Error from server (NotFound): appimages.kuscia.secretflow \"{ghost}\" not found")
    );
    plugin(c, &["delete", &name]);
}
