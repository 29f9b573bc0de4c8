//! The bad-input catalogue: one table of broken and hostile inputs for the plugin (offline,
//! with a kubeconfig that does not exist) and the webhook (the real binary, over real TLS with
//! curl), each with the exact exit code or HTTP status and the message, or a precise part of
//! it that names the field or the cause. Template-injection cases check that the rendered
//! config still parses, holds the value verbatim and gained no key.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use appimage::labels;
use appimage::manifest;
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage_e2e::review::{APPIMAGE, POD, UID, review};
use appimage_e2e::webhook::{SigningKey, Tls, Webhook};
use appimage_e2e::world::{REVISIONS_CRD, cluster_with};
use appimage_e2e::{repo_root, unique, wait_until, workspace_bin};
use base64::Engine;
use serde_json::{Value, json};

const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";
/// The keys the seed's config template writes, and nothing else may appear.
const SEED_KEYS: [&str; 4] = [
    "allocated_ports",
    "task_cluster_def",
    "task_id",
    "task_input_config",
];
/// Values that try to leave a JSON string: quotes, newlines, backslashes, template braces,
/// controls, line separators.
const NASTY: [&str; 5] = [
    "a\", \"evil\": \"1",
    "x\"}\n{\"evil\": true, \"y\": \"",
    "}}{{.TASK_ID}}{{ {{{.X}}} \\\" \\u0022 \u{2028}\u{0}\t\r\n",
    "\"\n  \"task_id\": \"overridden",
    "{{/* */}}{{\"lit\"}}'\\'\u{7f}\u{85}\u{feff}",
];

type Check = Box<dyn Fn(&Outcome) -> Result<(), String>>;

enum Input {
    /// `kubectl-appimage ARGS` in the work dir, offline.
    Plugin(Vec<String>),
    /// `appimage-webhook ARGS` in the work dir (its command line, e.g. `dev`), offline.
    Binary(Vec<String>),
    /// POST these bytes to the webhook path.
    Post(&'static str, Vec<u8>),
    /// GET the webhook path.
    Get(&'static str),
}

enum Expect {
    /// Exit code and a part of stderr.
    Exit(i32, String),
    /// Exit 0, then a check of stdout.
    ExitOkThen(Check),
    /// HTTP status and a part of the body.
    Http(u16, String),
    /// HTTP 200, an AdmissionReview that denies with a message containing this.
    Denied(String),
    /// HTTP 200, allowed; then a check of the Pod with the patch applied (the patch may be
    /// empty, then the Pod is the one sent).
    Allowed(Check),
}

struct Case {
    name: &'static str,
    input: Input,
    expect: Expect,
}

#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    /// For webhook cases: the answer as JSON, and the patched object.
    review: Option<Value>,
    patched: Option<Value>,
    patch_ops: usize,
}

fn seed_text() -> String {
    std::fs::read_to_string(repo_root().join("examples/secretflow-image.yaml")).unwrap()
}

fn seed_image(name: &str) -> AppImage {
    let mut img = manifest::appimages("seed", &seed_text()).unwrap().remove(0);
    img.metadata.name = Some(name.into());
    img.spec.image.id = Some(DIGEST.into());
    img
}

fn signed(mut img: AppImage, key: &SigningKey) -> AppImage {
    img.spec.image.sign = None;
    img.spec.image.sign = Some(key.sign(&payload(&img)));
    img
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_string()).collect()
}

fn exit(code: i32, msg: &str) -> Expect {
    Expect::Exit(code, msg.to_string())
}

fn denied(msg: impl Into<String>) -> Expect {
    Expect::Denied(msg.into())
}

fn http(status: u16, msg: &str) -> Expect {
    Expect::Http(status, msg.to_string())
}

/// A rendered seed config: JSON with exactly the seed's keys and `key` equal to `want`.
fn config_holds(text: &str, key: &str, want: &str) -> Result<(), String> {
    let json: Value =
        serde_json::from_str(text).map_err(|e| format!("config is not JSON ({e}): {text}"))?;
    let obj = json.as_object().ok_or("config is not an object")?;
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    if keys != SEED_KEYS {
        return Err(format!("keys changed: {keys:?} in {text}"));
    }
    if obj.get(key).and_then(Value::as_str) != Some(want) {
        return Err(format!("{key} is {:?}, want {want:?}", obj.get(key)));
    }
    Ok(())
}

/// The seed config file of a patched Pod.
fn pod_config(pod: &Value) -> Result<String, String> {
    let key = format!("{}task-config.conf", labels::CONFIG_PREFIX);
    pod["metadata"]["annotations"][&key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no {key} annotation: {pod}"))
}

fn injected_config_holds(key: &'static str, want: String) -> Expect {
    Expect::Allowed(Box::new(move |o| {
        let pod = o.patched.as_ref().ok_or("no Pod")?;
        if o.patch_ops == 0 {
            return Err("not patched".into());
        }
        config_holds(&pod_config(pod)?, key, &want)
    }))
}

fn pod(name: &str, image: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "bad-input",
                     "labels": {labels::APP_IMAGE: image}, "annotations": annotations},
        "spec": {"containers": [{"name": "secretflow", "image": "busybox"}]}
    })
}

fn mutate(object: Value) -> Input {
    Input::Post(
        "/mutate",
        bytes(&review(POD, "CREATE", "bad-input", object)),
    )
}

fn mutate_in(ns: &str, mut object: Value) -> Input {
    object["metadata"]["namespace"] = json!(ns);
    Input::Post("/mutate", bytes(&review(POD, "CREATE", ns, object)))
}

fn validate_image(image: &AppImage) -> Input {
    let object = serde_json::to_value(image).unwrap();
    Input::Post("/validate", bytes(&review(APPIMAGE, "CREATE", "", object)))
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn patch_ops(response: &Value) -> Result<json_patch::Patch, String> {
    let raw: Vec<u8> = match &response["patch"] {
        Value::Null => return Ok(json_patch::Patch(Vec::new())),
        Value::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| e.to_string())?,
        v @ Value::Array(_) => serde_json::from_value(v.clone()).map_err(|e| e.to_string())?,
        other => return Err(format!("patch is {other}")),
    };
    serde_json::from_slice(&raw).map_err(|e| format!("patch is not JSON: {e}"))
}

struct Env {
    work: PathBuf,
    ca: PathBuf,
    hook: Webhook,
}

impl Env {
    fn run(&self, input: &Input) -> Outcome {
        match input {
            Input::Plugin(args) | Input::Binary(args) => {
                let bin = match input {
                    Input::Binary(_) => "appimage-webhook",
                    _ => "kubectl-appimage",
                };
                let out = Command::new(workspace_bin(bin))
                    .args(args)
                    .current_dir(&self.work)
                    .env("KUBECONFIG", self.work.join("no-such-kubeconfig"))
                    .stdin(Stdio::null())
                    .output()
                    .expect("run kubectl-appimage");
                Outcome {
                    code: out.status.code().unwrap_or(-1),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    review: None,
                    patched: None,
                    patch_ops: 0,
                }
            }
            Input::Post(path, body) => self.curl("POST", path, Some(body)),
            Input::Get(path) => self.curl("GET", path, None),
        }
    }

    fn curl(&self, method: &str, path: &str, body: Option<&[u8]>) -> Outcome {
        let id = unique("req");
        let answer = self.work.join(format!("{id}.out"));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "30", "-X", method])
            .arg("--cacert")
            .arg(&self.ca)
            .arg("-o")
            .arg(&answer)
            .args(["-w", "%{http_code}"]);
        if body.is_some_and(|b| b.len() > 3 << 20) {
            // curl 7.88 reports an HTTP/2 stream that the server answers early (413 before
            // the whole upload) as error 92 instead of the status; HTTP/1.1 shows the status.
            cmd.arg("--http1.1");
        }
        if let Some(body) = body {
            let file = self.work.join(format!("{id}.body"));
            std::fs::write(&file, body).unwrap();
            cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(format!("@{}", file.display()));
        }
        let out = cmd
            .arg(self.hook.url(path))
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        let stdout = std::fs::read_to_string(&answer).unwrap_or_default();
        let status: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(-1);
        let mut outcome = Outcome {
            code: status,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            review: None,
            patched: None,
            patch_ops: 0,
        };
        if status == 200
            && let Ok(review) = serde_json::from_str::<Value>(&outcome.stdout)
        {
            if let (Some(body), Ok(ops)) = (body, patch_ops(&review["response"])) {
                let sent: Value = serde_json::from_slice(body).unwrap_or_default();
                let mut object = sent["request"]["object"].clone();
                outcome.patch_ops = ops.0.len();
                match json_patch::patch(&mut object, &ops) {
                    Ok(()) => outcome.patched = Some(object),
                    Err(e) => outcome.stderr = format!("patch does not apply: {e}"),
                }
            }
            outcome.review = Some(review);
        }
        outcome
    }
}

fn check(case: &Case, o: &Outcome) -> Result<(), String> {
    match &case.expect {
        Expect::Exit(code, msg) => {
            if o.code != *code {
                return Err(format!(
                    "exit {} (want {code}); stderr: {}",
                    o.code, o.stderr
                ));
            }
            if !o.stderr.contains(msg.as_str()) {
                return Err(format!("stderr lacks {msg:?}: {}", o.stderr));
            }
            Ok(())
        }
        Expect::ExitOkThen(f) => {
            if o.code != 0 {
                return Err(format!("exit {} (want 0); stderr: {}", o.code, o.stderr));
            }
            f(o)
        }
        Expect::Http(status, msg) => {
            if o.code != i32::from(*status) {
                return Err(format!(
                    "HTTP {} (want {status}): {}{}",
                    o.code, o.stdout, o.stderr
                ));
            }
            if !o.stdout.contains(msg.as_str()) {
                return Err(format!("body lacks {msg:?}: {}", o.stdout));
            }
            Ok(())
        }
        Expect::Denied(msg) => {
            let review = o
                .review
                .as_ref()
                .ok_or_else(|| format!("HTTP {}: {}{}", o.code, o.stdout, o.stderr))?;
            let resp = &review["response"];
            if resp["uid"] != UID {
                return Err(format!("uid not echoed: {resp}"));
            }
            if resp["allowed"] != false {
                return Err(format!("allowed: {resp}"));
            }
            if !resp["patch"].is_null() {
                return Err(format!("a denial with a patch: {resp}"));
            }
            let message = resp["status"]["message"].as_str().unwrap_or_default();
            if !message.contains(msg.as_str()) {
                return Err(format!("message lacks {msg:?}: {message}"));
            }
            Ok(())
        }
        Expect::Allowed(f) => {
            let review = o
                .review
                .as_ref()
                .ok_or_else(|| format!("HTTP {}: {}{}", o.code, o.stdout, o.stderr))?;
            if review["response"]["allowed"] != true {
                return Err(format!("denied: {}", review["response"]));
            }
            if o.patched.is_none() {
                return Err(o.stderr.clone());
            }
            f(o)
        }
    }
}

/// The plugin half: offline commands on broken files.
fn plugin_cases(work: &Path, signer: &SigningKey, other: &SigningKey) -> Vec<Case> {
    let seed = seed_text();
    let write = |name: &str, text: &[u8]| {
        std::fs::write(work.join(name), text).unwrap();
        name.to_string()
    };
    let f = |file: String| -> Vec<String> { vec!["validate".into(), "-f".into(), file] };
    let good = write("seed.yaml", seed.as_bytes());
    let roles_file = repo_root()
        .join("examples/app-template.yaml")
        .display()
        .to_string();
    let signed_yaml = {
        let img = signed(seed_image("secretflow-image"), signer);
        serde_yaml_ng::to_string(&img).unwrap()
    };
    let signed_file = write("signed.yaml", signed_yaml.as_bytes());
    let pubkey = signer.pub_dir.join("sign.pub").display().to_string();
    let other_pub = other.pub_dir.join("sign.pub").display().to_string();
    let garbage_key = write(
        "garbage.pub",
        b"-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n",
    );
    let render_show = |extra: &[&str]| -> Vec<String> {
        let mut v = s(&[
            "render",
            "-f",
            "seed.yaml",
            "--show-config",
            "task-config.conf",
        ]);
        v.extend(s(extra));
        v
    };

    let mut cases = vec![
        Case {
            name: "plugin: truncated JSON",
            input: Input::Plugin(f(write("trunc.json", br#"{"apiVersion": "kuscia.secretflow/v1alpha1", "kind": "AppImage", "metadata": {"name": "x""#))),
            expect: exit(1, "error: trunc.json: invalid JSON: EOF while parsing an object at line 1 column 89"),
        },
        Case {
            name: "plugin: truncated YAML",
            input: Input::Plugin(f(write("trunc.yaml", &seed.as_bytes()[..seed.find("python -m secre").unwrap() + 15]))),
            expect: exit(1, "error: trunc.yaml: invalid YAML: found unexpected end of stream at line 22 column 33, while scanning a quoted scalar at line 22 column 17"),
        },
        Case {
            name: "plugin: malformed YAML flow",
            input: Input::Plugin(f(write("flow.yaml", b"apiVersion: kuscia.secretflow/v1alpha1\nkind: AppImage\nmetadata:\n  name: [x\n"))),
            expect: exit(1, "error: flow.yaml: invalid YAML: did not find expected ',' or ']'"),
        },
        Case {
            name: "plugin: wrong kind",
            input: Input::Plugin(f(write("cm.yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"))),
            expect: exit(1, "error: cm.yaml, document 1: is apiVersion v1 kind ConfigMap; expected apiVersion kuscia.secretflow/v1alpha1 kind AppImage"),
        },
        Case {
            name: "plugin: wrong apiVersion",
            input: Input::Plugin(f(write("v2.yaml", seed.replace("kuscia.secretflow/v1alpha1", "kuscia.secretflow/v2").as_bytes()))),
            expect: exit(1, "is apiVersion kuscia.secretflow/v2 kind AppImage; expected apiVersion kuscia.secretflow/v1alpha1 kind AppImage"),
        },
        Case {
            name: "plugin: JSON list of scalars",
            input: Input::Plugin(f(write("scalars.json", b"[1, \"two\"]"))),
            expect: exit(1, "error: scalars.json, document 1: is not an object; expected an AppImage manifest"),
        },
        Case {
            name: "plugin: invalid UTF-8",
            input: Input::Plugin(f(write("latin1.yaml", b"apiVersion: kuscia.secretflow/v1alpha1\nkind: AppImage\nmetadata:\n  name: caf\xe9\n"))),
            expect: exit(1, "error: cannot read \"latin1.yaml\" (is it a readable UTF-8 text file?): stream did not contain valid UTF-8"),
        },
        Case {
            name: "plugin: empty file",
            input: Input::Plugin(f(write("empty.yaml", b""))),
            expect: exit(1, "error: no AppImage found in empty.yaml; the files hold no documents"),
        },
        Case {
            name: "plugin: missing file",
            input: Input::Plugin(f("no-such-file.yaml".into())),
            expect: exit(1, "error: the path \"no-such-file.yaml\" does not exist"),
        },
        Case {
            name: "plugin: unknown field",
            input: Input::Plugin(f(write("unknown.yaml", seed.replace("  deployTemplates:", "  bogusField: 1\n  deployTemplates:").as_bytes()))),
            expect: exit(1, "error: unknown.yaml, document 1: unknown field \"spec.bogusField\""),
        },
        Case {
            name: "plugin: deeply nested JSON",
            input: Input::Plugin(f(write("nested.json", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes()))),
            expect: exit(1, "error: nested.json: invalid JSON: recursion limit exceeded at line 1 column 128"),
        },
        Case {
            name: "plugin: deeply nested YAML",
            input: Input::Plugin(f(write("nested.yaml", format!("a: {}{}\n", "[".repeat(1000), "]".repeat(1000)).as_bytes()))),
            expect: exit(1, "error: nested.yaml: invalid YAML: recursion limit exceeded"),
        },
        Case {
            name: "plugin: YAML nested 100,000 deep (refused before parsing)",
            input: Input::Plugin(f(write("deeper.yaml", format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)).as_bytes()))),
            expect: exit(1, "error: deeper.yaml: invalid YAML: brackets nest deeper than 1000 levels at line 1"),
        },
        Case {
            name: "plugin: YAML alias bomb",
            input: Input::Plugin(f(write("bomb.yaml", {
                let mut t = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
                for (prev, next) in ["a", "b", "c", "d", "e", "f", "g", "h"].iter().zip(["b", "c", "d", "e", "f", "g", "h", "i"]) {
                    t.push_str(&format!("{next}: &{next} [{}]\n", vec![format!("*{prev}"); 9].join(",")));
                }
                t
            }.as_bytes()))),
            expect: exit(1, "error: bomb.yaml: invalid YAML: repetition limit exceeded"),
        },
        Case {
            name: "plugin: duplicate port names",
            input: Input::Plugin(f(write("dupname.yaml", seed.replacen("name: fed", "name: spu", 1).as_bytes()))),
            expect: exit(1, "spec.deployTemplates[0].spec.containers[0].ports[1].name: port name \"spu\" is already used by spec.deployTemplates[0].spec.containers[0].ports[0]"),
        },
        Case {
            name: "plugin: duplicate port numbers",
            input: Input::Plugin(f(write("dupnum.yaml", seed.replacen("name: spu", "name: spu\n                port: 8080", 1).replacen("name: fed", "name: fed\n                port: 8080", 1).as_bytes()))),
            expect: exit(1, "spec.deployTemplates[0].spec.containers[0].ports[1].port: port 8080 is already used by spec.deployTemplates[0].spec.containers[0].ports[0]"),
        },
        Case {
            name: "plugin: port out of range",
            input: Input::Plugin(f(write("range.yaml", seed.replacen("name: fed", "name: fed\n                port: 70000", 1).as_bytes()))),
            expect: exit(1, "spec.deployTemplates[0].spec.containers[0].ports[1].port: port 70000 is out of range"),
        },
        Case {
            name: "plugin: AppImage name too long",
            input: Input::Plugin(f(write("longname.yaml", seed.replacen("name: secretflow-image", &format!("name: {}", "a".repeat(254)), 1).as_bytes()))),
            expect: exit(1, "metadata.name: must be no more than 253 characters (it has 254)"),
        },
        Case {
            name: "plugin: container name too long",
            input: Input::Plugin(f(write("longctr.yaml", seed.replacen("            name: secretflow\n", &format!("            name: {}\n", "c".repeat(64)), 1).as_bytes()))),
            expect: exit(1, "spec.deployTemplates[0].spec.containers[0].name: must be no more than 63 characters (it has 64)"),
        },
        Case {
            name: "plugin: port name too long",
            input: Input::Plugin(f(write("longport.yaml", seed.replacen("name: fed", "name: fed-port-name-too-long", 1).as_bytes()))),
            expect: exit(1, "spec.deployTemplates[0].spec.containers[0].ports[1].name: must be no more than 15 characters (it has 22)"),
        },
        Case {
            name: "plugin: unsupported template action",
            input: Input::Plugin(f(write("action.yaml", seed.replacen("\"{{.TASK_ID}}\"", "\"{{if .TASK_ID}}\"", 1).as_bytes()))),
            expect: exit(1, "spec.configTemplates[\"task-config.conf\"]: config template \"task-config.conf\", line 2, column 15: unsupported action `{{if .TASK_ID}}`"),
        },
        Case {
            name: "plugin: unclosed template action",
            input: Input::Plugin(f(write("unclosed.yaml", seed.replacen("{{.ALLOCATED_PORTS}}", "{{.ALLOCATED_PORTS", 1).as_bytes()))),
            expect: exit(1, "config template \"task-config.conf\", line 5, column 23: unclosed action `{{.ALLOCATED_PORTS\"...`: no closing `}}`"),
        },
        Case {
            // Kuscia accepts it; render leaves the mount out (issue 16): valid, with a warning.
            name: "plugin: subPath not a config template",
            input: Input::Plugin(f(write("subpath.yaml", seed.replacen("subPath: task-config.conf", "subPath: other.conf", 1).as_bytes()))),
            expect: Expect::ExitOkThen(Box::new(|o| {
                let warned = o.stderr.contains(".configVolumeMounts[0].subPath: \"other.conf\" is not a key of spec.configTemplates");
                if warned && o.stdout.contains("is valid") { Ok(()) } else { Err(format!("{}{}", o.stdout, o.stderr)) }
            })),
        },
        Case {
            name: "plugin: id with sha256: but no digest",
            input: Input::Plugin(f(write("digest.yaml", seed.replacen("id: d4ffa123aa45mnkj", "id: sha256:xyz", 1).as_bytes()))),
            expect: exit(1, "spec.image.id: starts with sha256: but is not a digest"),
        },
        Case {
            name: "plugin: huge template (4 MiB) is valid",
            input: Input::Plugin(f(write("huge.yaml", seed.replacen("\"task_id\": \"{{.TASK_ID}}\",", &format!("\"task_id\": \"{{{{.TASK_ID}}}}\", \"pad\": \"{}\",", "x".repeat(4 << 20)), 1).as_bytes()))),
            expect: Expect::ExitOkThen(Box::new(|o| {
                if o.stdout.trim() == "appimage \"secretflow-image\" is valid" { Ok(()) } else { Err(o.stdout.clone()) }
            })),
        },
        Case {
            name: "plugin: render unknown role",
            input: Input::Plugin(s(&["render", "-f", &roles_file, "--role", "nobody"])),
            expect: exit(1, "error: AppImage \"app-template\" has no deploy template for role \"nobody\" and none without a role (roles it serves: server, client)"),
        },
        Case {
            name: "plugin: render --pod-overrides that is no policy",
            input: Input::Plugin(s(&["render", "-f", "seed.yaml", "--pod-overrides", "some"])),
            expect: exit(1, "invalid value 'some' for '--pod-overrides <all|env|none>': must be one of all, env, none, not \"some\""),
        },
        Case {
            name: "plugin: render an AppImage whose pod-overrides annotation is no policy",
            input: Input::Plugin(f(write("overrides.yaml", seed.replacen("metadata:\n", "metadata:\n  annotations:\n    appimage.kuscia.secretflow/pod-overrides: loose\n", 1).as_bytes())).into_iter().skip(1).fold(s(&["render"]), |mut v, a| { v.push(a); v })),
            expect: exit(1, "pod overrides: AppImage \"secretflow-image\": annotation appimage.kuscia.secretflow/pod-overrides: must be one of all, env, none, not \"loose\""),
        },
        Case {
            name: "plugin: render --set without =",
            input: Input::Plugin(s(&["render", "-f", "seed.yaml", "--set", "JUSTAKEY"])),
            expect: exit(1, "error: --set \"JUSTAKEY\" is not KEY=VALUE"),
        },
        Case {
            name: "plugin: render --strict with an unknown key",
            input: Input::Plugin(f(write("strict.yaml", seed.replacen("{{.TASK_ID}}", "{{.NOT_SET}}", 1).as_bytes())).into_iter().skip(1).fold(s(&["render", "--strict"]), |mut v, a| { v.push(a); v })),
            expect: exit(1, "config template \"task-config.conf\": no value for key NOT_SET (line 2)"),
        },
        Case {
            name: "plugin: verify unsigned",
            input: Input::Plugin(vec!["verify".into(), "-f".into(), write("unsigned.yaml", seed.replacen("    sign: abc13mnjh1olkkp1\n", "", 1).as_bytes()), "--key".into(), pubkey.clone()]),
            expect: exit(1, "error: appimage \"secretflow-image\": spec.image.sign is empty"),
        },
        Case {
            name: "plugin: verify garbage signature",
            input: Input::Plugin(vec!["verify".into(), "-f".into(), write("garbage-sig.yaml", signed_yaml.replacen("sign: ", "sign: '%%not*base64%%' #", 1).as_bytes()), "--key".into(), pubkey.clone()]),
            expect: exit(1, "spec.image.sign is not valid base64"),
        },
        Case {
            name: "plugin: verify with an untrusted key",
            input: Input::Plugin(vec!["verify".into(), "-f".into(), signed_file.clone(), "--key".into(), other_pub]),
            expect: exit(1, "spec.image.sign does not verify with any of the 1 trusted key(s)"),
        },
        Case {
            name: "plugin: verify after the tag changed",
            input: Input::Plugin(vec!["verify".into(), "-f".into(), write("retag.yaml", signed_yaml.replacen("tag: latest", "tag: evil", 1).as_bytes()), "--key".into(), pubkey.clone()]),
            expect: exit(1, "the AppImage's name or spec changed after signing"),
        },
        Case {
            name: "plugin: verify with a garbage key file",
            input: Input::Plugin(vec!["verify".into(), "-f".into(), signed_file.clone(), "--key".into(), garbage_key]),
            expect: exit(1, "is not a PEM public key of type ECDSA P-256 or Ed25519"),
        },
        Case {
            name: "plugin: verify with a missing key file",
            input: Input::Plugin(vec!["verify".into(), "-f".into(), signed_file.clone(), "--key".into(), "missing.pub".into()]),
            expect: exit(1, "error: public key file \"missing.pub\" does not exist"),
        },
        Case {
            name: "plugin: sign with a garbage private key",
            input: Input::Plugin(vec!["sign".into(), "-f".into(), good.clone(), "--key".into(), write("garbage.key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")]),
            expect: exit(1, "is not a PEM private key of type ECDSA P-256 or Ed25519"),
        },
        Case {
            name: "plugin: an unknown subcommand is a usage error (exit 1, as kubectl)",
            input: Input::Plugin(s(&["frobnicate"])),
            expect: exit(1, "error: unrecognized subcommand 'frobnicate'"),
        },
        Case {
            name: "plugin: batch create --pre-pull-concurrency 0",
            input: Input::Plugin(s(&["batch", "create", "x", "--appimage", "a", "--nodes", "n", "--pre-pull-concurrency", "0", "--dry-run=client"])),
            expect: exit(1, "error: spec.prePull.concurrency is 0; it must be at least 1 (unset pulls on every node at once)"),
        },
        Case {
            name: "plugin: batch create --pre-pull-timeout that is no duration",
            input: Input::Plugin(s(&["batch", "create", "x", "--appimage", "a", "--nodes", "n", "--pre-pull-timeout", "soon", "--dry-run=client"])),
            expect: exit(1, "error: spec.prePull.timeout: invalid duration \"soon\": use a number with a unit, e.g. 30s, 1m or 500ms; use a duration such as 2m or 90s"),
        },
        Case {
            name: "plugin: batch get --watch with -o",
            input: Input::Plugin(s(&["batch", "get", "x", "-w", "-o", "yaml"])),
            expect: exit(1, "error: the argument '--watch' cannot be used with '--output <FORMAT>'"),
        },
        Case {
            name: "webhook dev: a kubeconfig that does not exist",
            input: Input::Binary(s(&["dev", "--kubeconfig", "no-such-kubeconfig"])),
            expect: exit(1, "error: reading kubeconfig no-such-kubeconfig: "),
        },
        Case {
            name: "webhook dev: a pod-overrides value that is no policy",
            input: Input::Binary(s(&["dev", "--pod-overrides", "some"])),
            expect: exit(2, "must be one of all, env, none"),
        },
        Case {
            name: "webhook dev: the server's flags belong to the server",
            input: Input::Binary(s(&["--tls-cert-file", "c", "--tls-key-file", "k", "dev"])),
            expect: exit(2, "error: the subcommand 'dev' cannot be used with:\n  --tls-cert-file <TLS_CERT_FILE>\n  --tls-key-file <TLS_KEY_FILE>"),
        },
        Case {
            name: "plugin: get -o jsonpath with an unclosed brace",
            input: Input::Plugin(s(&["get", "-o", "jsonpath={.items[*]"])),
            expect: exit(1, "error: invalid value for --output: jsonpath: unclosed { in \"{.items[*]\""),
        },
        Case {
            name: "plugin: get -o jsonpath with range but no end",
            input: Input::Plugin(s(&["get", "-o", "jsonpath={range .items[*]}{.metadata.name}"])),
            expect: exit(1, "error: invalid value for --output: jsonpath: {range} without {end}"),
        },
        Case {
            name: "plugin: get -o jsonpath= with no template",
            input: Input::Plugin(s(&["get", "-o", "jsonpath="])),
            expect: exit(1, "error: invalid value for --output: jsonpath= needs a template, e.g. jsonpath='{.items[*].metadata.name}'"),
        },
        Case {
            name: "plugin: status -o custom-columns without a path",
            input: Input::Plugin(s(&["status", "x", "-o", "custom-columns=NAME"])),
            expect: exit(1, "error: invalid value for --output: custom-columns: \"NAME\" is not HEADER:JSONPATH, e.g. NAME:.metadata.name"),
        },
        Case {
            name: "plugin: history -o go-template that does not parse",
            input: Input::Plugin(s(&["history", "x", "-o", "go-template={{.x"])),
            expect: exit(1, "error: invalid value for --output: go-template: "),
        },
        Case {
            name: "plugin: batch get -o an unknown format",
            input: Input::Plugin(s(&["batch", "get", "-o", "xml"])),
            expect: exit(1, "error: invalid value \"xml\" for --output: one of name, yaml, json, jsonpath=, custom-columns=, go-template="),
        },
        Case {
            name: "plugin: diff -o jsonpath (diff prints yaml or json only)",
            input: Input::Plugin(s(&["diff", "x", "--revision", "1", "-o", "jsonpath={.x}"])),
            expect: exit(1, "error: invalid value 'jsonpath={.x}' for '--output <OUTPUT>'"),
        },
        Case {
            name: "plugin: diff of three revisions (an error exits 2, as kubectl diff)",
            input: Input::Plugin(s(&["diff", "x", "--revision", "1", "--revision", "2", "--revision", "3"])),
            expect: exit(2, "error: --revision: give at most two revisions (A and B), got 3"),
        },
        Case {
            name: "plugin: verify the signed seed (control)",
            input: Input::Plugin(vec!["verify".into(), "-f".into(), signed_file, "--key".into(), pubkey]),
            expect: Expect::ExitOkThen(Box::new(|o| {
                if o.stdout.contains("appimage \"secretflow-image\": signature verified with ") && o.stdout.contains("sign.pub (ECDSA-P256-SHA256)") { Ok(()) } else { Err(o.stdout.clone()) }
            })),
        },
    ];
    // Template injection through every way a value reaches the renderer.
    for (i, v) in NASTY.iter().enumerate() {
        let want = v.replace('\0', "");
        cases.push(Case {
            name: [
                "plugin: injection via --task-id 0",
                "plugin: injection via --task-id 1",
                "plugin: injection via --task-id 2",
                "plugin: injection via --task-id 3",
                "plugin: injection via --task-id 4",
            ][i],
            // argv cannot carry NUL.
            input: Input::Plugin(render_show(&["--task-id", &v.replace('\0', "")])),
            expect: Expect::ExitOkThen(Box::new(move |o| {
                config_holds(&o.stdout, "task_id", &want)
            })),
        });
    }
    let want = NASTY[1].to_string();
    cases.push(Case {
        name: "plugin: injection via --input-config",
        input: Input::Plugin(render_show(&["--input-config", NASTY[1]])),
        expect: Expect::ExitOkThen(Box::new(move |o| {
            config_holds(&o.stdout, "task_input_config", &want)
        })),
    });
    let want = NASTY[3].to_string();
    cases.push(Case {
        name: "plugin: injection via --set TASK_ID=",
        input: Input::Plugin(render_show(&[
            "--task-id",
            "t1",
            "--set",
            &format!("TASK_ID={}", NASTY[3]),
        ])),
        expect: Expect::ExitOkThen(Box::new(move |o| config_holds(&o.stdout, "task_id", &want))),
    });
    let want = NASTY[0].to_string();
    cases.push(Case {
        name: "plugin: injection via --cluster-define",
        input: Input::Plugin(render_show(&["--cluster-define", NASTY[0]])),
        expect: Expect::ExitOkThen(Box::new(move |o| {
            config_holds(&o.stdout, "task_cluster_def", &want)
        })),
    });
    cases
}

/// The webhook half: bodies POSTed to the real binary over TLS.
fn webhook_cases(signer: &SigningKey, other: &SigningKey) -> Vec<Case> {
    let review_ok = |object: Value| bytes(&review(POD, "CREATE", "bad-input", object));
    let good_pod = pod("job-0", "bi-good", json!({labels::OPT_TASK_ID: "t1"}));
    let good_body = review_ok(good_pod.clone());
    let status_spoof = json!({
        "appImage": "bi-tampered", "resourceVersion": "1", "template": "secretflow",
        "role": "", "image": "secretflow/secretflow-lite-anolis8:latest", "ports": []
    })
    .to_string();

    let mut long_name = seed_image(&"a".repeat(254));
    long_name = signed(long_name, signer);
    let mut dup = seed_image("bi-dup");
    dup.spec.deploy_templates[0].spec.containers[0].ports[1].name = "spu".into();
    let dup = signed(dup, signer);
    let mut huge = seed_image("bi-huge");
    huge.spec
        .config_templates
        .insert("big.conf".into(), "x".repeat(2 << 20));
    let huge = signed(huge, signer);
    let mut bad_template = seed_image("bi-badtpl");
    bad_template
        .spec
        .config_templates
        .insert("task-config.conf".into(), "{{range .X}}{{end}}".into());
    let bad_template = signed(bad_template, signer);
    let mut garbage_sig = seed_image("bi-garbage");
    garbage_sig.spec.image.sign = Some("%%%not*base64%%%".into());
    let untrusted = signed(seed_image("bi-untrusted"), other);

    let mut cases = vec![
        Case { name: "webhook: malformed JSON", input: Input::Post("/mutate", b"{\"kind\": AdmissionReview}".to_vec()), expect: http(400, "request body is not valid JSON: expected value at line 1 column 10") },
        Case { name: "webhook: truncated AdmissionReview", input: Input::Post("/mutate", good_body[..good_body.len() / 2].to_vec()), expect: http(400, "request body is not valid JSON: EOF while parsing") },
        Case { name: "webhook: empty body", input: Input::Post("/mutate", Vec::new()), expect: http(400, "request body is not valid JSON: EOF while parsing a value at line 1 column 0") },
        Case { name: "webhook: JSON array", input: Input::Post("/mutate", b"[]".to_vec()), expect: http(400, "request body is not a JSON object") },
        Case { name: "webhook: wrong kind", input: Input::Post("/mutate", bytes(&good_pod)), expect: http(400, "expected kind \"AdmissionReview\", got \"Pod\"") },
        Case { name: "webhook: wrong apiVersion", input: Input::Post("/mutate", br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview"}"#.to_vec()), expect: http(400, "expected apiVersion \"admission.k8s.io/v1\", got \"admission.k8s.io/v2\"") },
        Case { name: "webhook: no request", input: Input::Post("/mutate", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec()), expect: http(400, "the AdmissionReview has no request") },
        Case { name: "webhook: request is a string", input: Input::Post("/mutate", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"x"}"#.to_vec()), expect: http(400, "request must be a JSON object") },
        Case { name: "webhook: request without uid", input: Input::Post("/mutate", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"group":"","version":"v1","kind":"Pod"}}}"#.to_vec()), expect: http(400, "invalid AdmissionReview at request") },
        Case { name: "webhook: invalid UTF-8", input: Input::Post("/mutate", { let mut b = good_body.clone(); let at = b.windows(5).position(|w| w == b"job-0").unwrap(); b[at] = 0xff; b }), expect: http(400, "request body is not valid JSON: invalid utf-8 sequence") },
        Case { name: "webhook: deeply nested JSON", input: Input::Post("/mutate", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes()), expect: http(400, "request body is not a JSON object") },
        Case { name: "webhook: oversize body (4 MiB)", input: Input::Post("/mutate", { let mut p = good_pod.clone(); p["metadata"]["annotations"]["pad"] = json!("x".repeat(4 << 20)); review_ok(p) }), expect: http(413, "Failed to buffer the request body: length limit exceeded") },
        Case { name: "webhook: GET /mutate", input: Input::Get("/mutate"), expect: http(405, "") },
        Case { name: "webhook: /validate malformed JSON", input: Input::Post("/validate", b"{".to_vec()), expect: http(400, "request body is not valid JSON: EOF while parsing an object") },
        Case { name: "webhook: /mutate of a Deployment", input: Input::Post("/mutate", bytes(&review(("apps", "v1", "Deployment"), "CREATE", "bad-input", json!({"metadata": {"name": "d"}})))), expect: denied("/mutate admits Pods only, got apps/Deployment") },
        Case { name: "webhook: no object", input: Input::Post("/mutate", bytes(&review(POD, "CREATE", "bad-input", Value::Null))), expect: denied("the AdmissionReview request has no object (the Pod)") },
        Case { name: "webhook: object is not a Pod", input: mutate(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5, "labels": {labels::APP_IMAGE: "bi-good"}}})), expect: denied("cannot decode the Pod: metadata.name: invalid type: integer `5`, expected a string") },
        Case { name: "webhook: containers is not a list", input: mutate(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {labels::APP_IMAGE: "bi-good"}}, "spec": {"containers": {"a": 1}}})), expect: denied("cannot decode the Pod: spec.containers: invalid type: map, expected a sequence") },
        Case { name: "webhook: unknown AppImage", input: mutate(pod("job-1", "no-such-image", json!({}))), expect: denied("AppImage \"no-such-image\" not found: create it (kubectl appimage apply -f FILE) or fix the label kuscia.secretflow/app-image on Pod \"bad-input/job-1\"") },
        Case { name: "webhook: empty AppImage label", input: mutate(pod("job-2", "", json!({}))), expect: denied("label kuscia.secretflow/app-image on Pod \"bad-input/job-2\" is empty") },
        Case { name: "webhook: AppImage label too long", input: mutate(pod("job-3", &"i".repeat(300), json!({}))), expect: denied(format!("AppImage \"{}\" not found", "i".repeat(300))) },
        Case { name: "webhook: unsigned AppImage", input: mutate(pod("job-4", "bi-unsigned", json!({}))), expect: denied("AppImage \"bi-unsigned\" failed signature verification: spec.image.sign is empty") },
        Case { name: "webhook: garbage signature", input: mutate(pod("job-5", "bi-garbage", json!({}))), expect: denied("AppImage \"bi-garbage\" failed signature verification: spec.image.sign is not valid base64") },
        Case { name: "webhook: tag changed after signing", input: mutate(pod("job-6", "bi-tampered", json!({}))), expect: denied("AppImage \"bi-tampered\" failed signature verification: spec.image.sign does not verify with any of the 1 trusted key(s)") },
        Case { name: "webhook: signed by an untrusted key", input: mutate(pod("job-7", "bi-untrusted", json!({}))), expect: denied("AppImage \"bi-untrusted\" failed signature verification: spec.image.sign does not verify") },
        Case { name: "webhook: spoofed status annotation (tampered image)", input: mutate(pod("job-8", "bi-tampered", json!({labels::STATUS: status_spoof}))), expect: denied("AppImage \"bi-tampered\" failed signature verification") },
        Case { name: "webhook: options that try to skip verification", input: mutate(pod("job-9", "bi-unsigned", json!({"appimage.kuscia.secretflow/require-signature": "false", "appimage.kuscia.secretflow/skip-verify": "true", "appimage.kuscia.secretflow/values": "{\"REQUIRE_SIGNATURE\":\"false\"}"}))), expect: denied("AppImage \"bi-unsigned\" failed signature verification: spec.image.sign is empty") },
        Case { name: "webhook: values annotation is not JSON", input: mutate(pod("job-10", "bi-good", json!({labels::OPT_VALUES: "{not json"}))), expect: denied("annotation appimage.kuscia.secretflow/values: must be a JSON object of string values") },
        Case { name: "webhook: values annotation with a number", input: mutate(pod("job-11", "bi-good", json!({labels::OPT_VALUES: "{\"A\": 1}"}))), expect: denied("annotation appimage.kuscia.secretflow/values: must be a JSON object of string values") },
        Case { name: "webhook: strict is not a boolean", input: mutate(pod("job-12", "bi-good", json!({labels::OPT_STRICT: "maybe"}))), expect: denied("annotation appimage.kuscia.secretflow/strict: must be \"true\" or \"false\", not \"maybe\"") },
        Case { name: "webhook: unknown role", input: mutate(pod("job-13", "bi-roles", json!({labels::OPT_ROLE: "nobody"}))), expect: denied("AppImage \"bi-roles\" has no deploy template for role \"nobody\" and none without a role (roles it serves: server, client)") },
        Case { name: "webhook: duplicate ports in a stored AppImage", input: mutate(pod("job-14", "bi-dup", json!({}))), expect: denied("AppImage \"bi-dup\": spec.deployTemplates[0].spec.containers[0].ports[1].name: port name \"spu\" is already used by spec.deployTemplates[0].spec.containers[0].ports[0]") },
        Case { name: "webhook: unparsable template in a stored AppImage", input: mutate(pod("job-15", "bi-badtpl", json!({}))), expect: denied("unsupported action `{{range .X}}`") },
        Case { name: "webhook: kube-system Pod is not mutated", input: mutate_in("kube-system", pod("job-16", "bi-good", json!({}))), expect: Expect::Allowed(Box::new(|o| if o.patch_ops == 0 { Ok(()) } else { Err(format!("{} patch ops", o.patch_ops)) })) },
        Case { name: "webhook: DELETE is allowed untouched", input: Input::Post("/mutate", bytes(&review(POD, "DELETE", "bad-input", good_pod.clone()))), expect: Expect::Allowed(Box::new(|o| if o.patch_ops == 0 { Ok(()) } else { Err(format!("{} patch ops", o.patch_ops)) })) },
        Case { name: "webhook: spoofed status on a good image is recomputed", input: mutate(pod("job-17", "bi-good", json!({labels::STATUS: status_spoof, labels::OPT_TASK_ID: "t1"}))), expect: Expect::Allowed(Box::new(|o| {
            let pod = o.patched.as_ref().unwrap();
            let status: Value = serde_json::from_str(pod["metadata"]["annotations"][labels::STATUS].as_str().unwrap_or("{}")).map_err(|e| e.to_string())?;
            if status["appImage"] != "bi-good" || status["template"] != "secretflow" { return Err(format!("status kept: {status}")); }
            let ctr = &pod["spec"]["containers"][0];
            if ctr["name"] != "secretflow" || ctr["image"] != "secretflow/secretflow-lite-anolis8:latest" { return Err(format!("not injected: {ctr}")); }
            Ok(())
        })) },
        Case { name: "webhook: Pod name too long gets a 63-char identity", input: mutate(pod(&"p".repeat(200), "bi-good", json!({}))), expect: Expect::Allowed(Box::new(|o| {
            let id = o.patched.as_ref().unwrap()["metadata"]["labels"][labels::POD_IDENTITY].as_str().unwrap_or_default().to_string();
            if !id.is_empty() && id.len() <= 63 { Ok(()) } else { Err(format!("identity label {id:?}")) }
        })) },
        Case { name: "webhook: /validate of a Pod", input: Input::Post("/validate", good_body.clone()), expect: denied("/validate admits AppImages only, got /Pod") },
        Case { name: "webhook: /validate name too long", input: validate_image(&long_name), expect: denied("metadata.name: must be no more than 253 characters (it has 254)") },
        Case { name: "webhook: /validate duplicate ports", input: validate_image(&dup), expect: denied("spec.deployTemplates[0].spec.containers[0].ports[1].name: port name \"spu\" is already used by spec.deployTemplates[0].spec.containers[0].ports[0]") },
        Case { name: "webhook: /validate template with range", input: validate_image(&bad_template), expect: denied("spec.configTemplates[\"task-config.conf\"]: config template \"task-config.conf\", line 1, column 1: unsupported action `{{range .X}}`") },
        Case { name: "webhook: /validate garbage signature", input: validate_image(&garbage_sig), expect: denied("AppImage \"bi-garbage\" failed signature verification: spec.image.sign is not valid base64") },
        Case { name: "webhook: /validate untrusted signer", input: validate_image(&untrusted), expect: denied("AppImage \"bi-untrusted\" failed signature verification: spec.image.sign does not verify") },
        Case { name: "webhook: /validate huge (2 MiB) template, signed", input: validate_image(&huge), expect: Expect::Allowed(Box::new(|_| Ok(()))) },
        Case { name: "webhook: /validate not an AppImage", input: Input::Post("/validate", bytes(&review(APPIMAGE, "CREATE", "", json!({"apiVersion": "kuscia.secretflow/v1alpha1", "kind": "AppImage", "metadata": {"name": "x"}, "spec": 7})))), expect: denied("cannot decode the AppImage: spec: invalid type: integer `7`") },
    ];
    cases.extend(pod_integrity_cases());
    // Template injection through the Pod's options.
    for (i, v) in NASTY.iter().enumerate() {
        let names = [
            "webhook: injection via task-id 0",
            "webhook: injection via task-id 1",
            "webhook: injection via task-id 2",
            "webhook: injection via task-id 3",
            "webhook: injection via task-id 4",
        ];
        cases.push(Case {
            name: names[i],
            input: mutate(pod(
                &format!("inj-{i}"),
                "bi-good",
                json!({labels::OPT_TASK_ID: v}),
            )),
            expect: injected_config_holds("task_id", (*v).to_string()),
        });
    }
    cases.push(Case {
        name: "webhook: injection via input-config",
        input: mutate(pod(
            "inj-ic",
            "bi-good",
            json!({labels::OPT_INPUT_CONFIG: NASTY[1]}),
        )),
        expect: injected_config_holds("task_input_config", NASTY[1].to_string()),
    });
    cases.push(Case {
        name: "webhook: injection via cluster-define",
        input: mutate(pod(
            "inj-cd",
            "bi-good",
            json!({labels::OPT_CLUSTER_DEFINE: NASTY[2]}),
        )),
        expect: injected_config_holds("task_cluster_def", NASTY[2].to_string()),
    });
    cases.push(Case { name: "webhook: injection via values overriding TASK_ID", input: mutate(pod("inj-v", "bi-good", json!({labels::OPT_TASK_ID: "t1", labels::OPT_VALUES: json!({"TASK_ID": NASTY[3]}).to_string()}))), expect: injected_config_holds("task_id", NASTY[3].to_string()) });
    cases
}

/// An UPDATE of `old` to `new` (to `subresource` when given), for /validate-pods.
fn validate_pod_update(old: &Value, new: &Value, subresource: Option<&str>) -> Input {
    let mut review = review(POD, "UPDATE", "bad-input", new.clone());
    review["request"]["oldObject"] = old.clone();
    if let Some(sub) = subresource {
        review["request"]["subResource"] = json!(sub);
    }
    Input::Post("/validate-pods", bytes(&review))
}

/// Pods stay as admitted (issue 24, section 2): what /validate-pods and the pod-overrides
/// policy refuse, each with its message.
fn pod_integrity_cases() -> Vec<Case> {
    let injected = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "job-0", "namespace": "bad-input",
                     "labels": {labels::APP_IMAGE: "bi-good", labels::POD_IDENTITY: "job-0"},
                     "annotations": {labels::STATUS: "{}", labels::ADMITTED: "v1:00"}},
        "spec": {"containers": [{"name": "secretflow", "image": "secretflow/secretflow-lite-anolis8:latest"}]}
    });
    let edited = |f: &dyn Fn(&mut Value)| {
        let mut new = injected.clone();
        f(&mut new);
        new
    };
    let swapped = edited(&|p| p["spec"]["containers"][0]["image"] = json!("busybox:swapped"));
    let debugged = edited(&|p| {
        p["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox"}])
    });
    let status =
        edited(&|p| p["metadata"]["annotations"][labels::STATUS] = json!("{\"ports\":[]}"));
    let role = edited(&|p| p["metadata"]["labels"][labels::POD_ROLE] = json!("server"));
    let plain = pod("plain", "bi-good", json!({}));
    let mut plain_old = plain.clone();
    plain_old["metadata"]["labels"] = json!({});
    let with = |extra: Value| {
        let mut p = pod("ovr", "bi-good", json!({labels::OPT_TASK_ID: "t1"}));
        p["spec"]
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    vec![
        Case {
            name: "webhook: /validate-pods swaps an injected image",
            input: validate_pod_update(&injected, &swapped, None),
            expect: denied(
                "Pod \"bad-input/job-0\" runs AppImage \"bi-good\" as admitted: spec.containers[0].image of container \"secretflow\" cannot change (\"secretflow/secretflow-lite-anolis8:latest\" -> \"busybox:swapped\"); the image comes from the signed AppImage: publish a new revision of the AppImage and roll it out (kubectl appimage set-image / kubectl appimage rollout), or create a new Pod",
            ),
        },
        Case {
            name: "webhook: /validate-pods adds an ephemeral container",
            input: validate_pod_update(&injected, &debugged, Some("ephemeralcontainers")),
            expect: denied(
                "ephemeral containers cannot be added (spec.ephemeralContainers[0] \"debugger\")",
            ),
        },
        Case {
            name: "webhook: /validate-pods edits the status",
            input: validate_pod_update(&injected, &status, None),
            expect: denied(
                "annotation appimage.kuscia.secretflow/status cannot be added, edited or removed (appimage-webhook writes it at admission)",
            ),
        },
        Case {
            name: "webhook: /validate-pods adds a role label",
            input: validate_pod_update(&injected, &role, None),
            expect: denied(
                "label kuscia.secretflow/pod-role cannot be added, changed or removed (unset -> \"server\")",
            ),
        },
        Case {
            name: "webhook: /validate-pods a plain Pod gains the label",
            input: validate_pod_update(&plain_old, &plain, None),
            expect: denied(
                "Pod \"bad-input/plain\" was not injected by appimage-webhook, so it cannot gain the label kuscia.secretflow/app-image=\"bi-good\" by an update",
            ),
        },
        Case {
            name: "webhook: /validate-pods without oldObject",
            input: Input::Post(
                "/validate-pods",
                bytes(&review(POD, "UPDATE", "bad-input", injected.clone())),
            ),
            expect: denied("the AdmissionReview UPDATE request needs object and oldObject"),
        },
        Case {
            name: "webhook: /validate-pods of a Deployment",
            input: Input::Post(
                "/validate-pods",
                bytes(&review(
                    ("apps", "v1", "Deployment"),
                    "UPDATE",
                    "bad-input",
                    json!({"metadata": {"name": "d"}}),
                )),
            ),
            expect: denied("/validate-pods admits Pods only, got apps/Deployment"),
        },
        Case {
            name: "webhook: Pod overrides the template's command",
            input: mutate(with(
                json!({"containers": [{"name": "secretflow", "image": "x", "command": ["sh"]}]}),
            )),
            expect: denied(
                "AppImage \"bi-good\": spec.containers[0].command: container \"secretflow\" overrides the template's command, which the pod-overrides policy \"env\" refuses (it allows env and resources only)",
            ),
        },
        Case {
            name: "webhook: Pod brings an extra container",
            input: mutate(with(
                json!({"containers": [{"name": "secretflow", "image": "x"}, {"name": "sidecar", "image": "busybox"}]}),
            )),
            expect: denied(
                "spec.containers[1]: container \"sidecar\" is not in deploy template \"secretflow\"",
            ),
        },
        Case {
            name: "webhook: Pod brings an init container",
            input: mutate(with(
                json!({"initContainers": [{"name": "init", "image": "busybox"}]}),
            )),
            expect: denied(
                "spec.initContainers[0]: init container \"init\" is not in the deploy template",
            ),
        },
        Case {
            name: "webhook: Pod mounts a volume of its own",
            input: mutate(with(
                json!({"volumes": [{"name": "host", "hostPath": {"path": "/"}}], "containers": [{"name": "secretflow", "image": "x", "volumeMounts": [{"name": "host", "mountPath": "/host"}]}]}),
            )),
            expect: denied(
                "spec.containers[0].volumeMounts: container \"secretflow\" overrides the template's volumeMounts",
            ),
        },
    ]
}

/// Revisions that cannot be forged (issue 24, section 3): a template naming a number and a
/// hash gets that revision only with that hash. (The policies' denials are the API server's,
/// not inputs of the plugin or the webhook: see revision_trust.rs.)
fn revision_cases() -> Vec<Case> {
    let pinned = |number: &str, hash: &str| {
        mutate(pod(
            "pinned-0",
            "bi-good",
            json!({"appimage.kuscia.secretflow/revision": number, "appimage.kuscia.secretflow/revision-hash": hash}),
        ))
    };
    vec![
        Case {
            name: "webhook: a Pod pinned to a revision number with another hash",
            input: pinned("1", "0000"),
            expect: denied(
                "the Pod pins revision 1 of AppImage \"bi-good\" with hash 0000, but revision 1 now has hash ",
            ),
        },
        Case {
            name: "webhook: a Pod pinned to a revision number never recorded",
            input: pinned("9", "0000"),
            expect: denied(
                "revision 9 of AppImage \"bi-good\" not found: kubectl appimage history bi-good lists its revisions",
            ),
        },
    ]
}

#[test]
fn bad_input_catalogue() {
    // The revisions CRD too: the webhook's controllers record the AppImages' revisions, which
    // the revision cases name.
    let c = cluster_with(&[REVISIONS_CRD]);
    let work = tempfile::tempdir().unwrap();
    let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
    let signer = SigningKey::new(&work.path().join("signer"));
    let other = SigningKey::new(&work.path().join("other"));

    // The AppImages the webhook's cache holds (no validating webhook: stored as given).
    let mut tampered = signed(seed_image("bi-tampered"), &signer);
    tampered.spec.image.tag = "evil".into();
    let mut unsigned = seed_image("bi-unsigned");
    unsigned.spec.image.sign = None;
    let mut garbage = seed_image("bi-garbage");
    garbage.spec.image.sign = Some("%%%not*base64%%%".into());
    let mut dup = seed_image("bi-dup");
    dup.spec.deploy_templates[0].spec.containers[0].ports[1].name = "spu".into();
    let mut bad_template = seed_image("bi-badtpl");
    bad_template
        .spec
        .config_templates
        .insert("task-config.conf".into(), "{{range .X}}{{end}}".into());
    let mut roles = manifest::appimages(
        "app-template",
        &std::fs::read_to_string(repo_root().join("examples/app-template.yaml")).unwrap(),
    )
    .unwrap()
    .remove(0);
    roles.metadata.name = Some("bi-roles".into());
    let images = [
        signed(seed_image("bi-good"), &signer),
        tampered,
        unsigned,
        garbage,
        signed(seed_image("bi-untrusted"), &other),
        signed(dup, &signer),
        signed(bad_template, &signer),
        signed(roles, &signer),
    ];
    let list = json!({"apiVersion": "v1", "kind": "List", "items": images.iter().map(|i| serde_json::to_value(i).unwrap()).collect::<Vec<_>>()});
    let file = work.path().join("images.json");
    std::fs::write(&file, bytes(&list)).unwrap();
    c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
    let hook = Webhook::start(c, &tls, &signer.pub_dir, &[]);
    let recorded = wait_until(std::time::Duration::from_secs(60), || {
        c.kubectl(&["get", "appimagerevision", "bi-good-1"])
            .status
            .success()
    });
    assert!(
        recorded,
        "revision bi-good-1 never recorded:\n{}",
        hook.logs()
    );
    // The webhook's own watch gets it a moment after the API server has it.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let env = Env {
        work: work.path().to_path_buf(),
        ca: tls.ca.clone(),
        hook,
    };

    let mut cases = plugin_cases(work.path(), &signer, &other);
    cases.extend(webhook_cases(&signer, &other));
    cases.extend(revision_cases());
    let plugin = cases
        .iter()
        .filter(|c| matches!(c.input, Input::Plugin(_)))
        .count();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = env.run(&case.input);
        let verdict = check(case, &outcome);
        println!(
            "{:<4} {:<60} {}",
            if verdict.is_ok() { "ok" } else { "FAIL" },
            case.name,
            match &verdict {
                Ok(()) => String::new(),
                Err(e) => e.chars().take(600).collect(),
            }
        );
        if let Err(e) = verdict {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    println!(
        "{} cases ({plugin} plugin, {} webhook), {} failed",
        cases.len(),
        cases.len() - plugin,
        failures.len()
    );
    // Nothing in the log but one line per request: no bodies were echoed.
    let log = env.hook.logs();
    assert!(
        !log.contains("evil"),
        "the webhook logged a Pod's values:\n{log}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
