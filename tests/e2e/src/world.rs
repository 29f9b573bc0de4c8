//! One test's world on the shared cluster: the webhook running admission for a namespace of
//! its own and the controllers, plus the few helpers every such test uses. What the webhooks
//! of one test binary share ([`Shared`]: CRDs, serving pair, trusted key, Lease) is made once
//! per test binary.

use std::sync::OnceLock;
use std::time::Duration;

use appimage::manifest;
use appimage::resource::AppImage;
use appimage::signature::payload;
use serde_json::{Value, json};

use crate::webhook::{SigningKey, Tls, Webhook, register};
use crate::{Cluster, cluster, repo_root, text, unique, wait_until, write_json};

/// How long the tests wait for the controllers and the cluster to get somewhere.
pub const WAIT: Duration = Duration::from_secs(120);
/// The label naming the workload of a Pod, Service or revision.
pub const WORKLOAD: &str = "appimage.kuscia.secretflow/workload";

/// A CRD a test binary needs: its file (relative to the repo root) and the resource that
/// `kubectl get <probe> -A` lists once the apiserver serves it.
#[derive(Debug, PartialEq, Eq)]
pub struct Crd {
    pub path: &'static str,
    pub probe: &'static str,
}

/// The AppImageRevision CRD.
pub const REVISIONS_CRD: Crd = Crd {
    path: "charts/appimage-webhook/crds/appimagerevisions.appimage.kuscia.secretflow.yaml",
    probe: "appimagerevisions",
};

/// The BatchDeployment CRD.
pub const BATCH_CRD: Crd = Crd {
    path: "charts/appimage-webhook/crds/batchdeployments.appimage.kuscia.secretflow.yaml",
    probe: "batchdeployments",
};

/// The AppImageRollout CRD (progressive rollouts).
pub const ROLLOUTS_CRD: Crd = Crd {
    path: "charts/appimage-webhook/crds/appimagerollouts.appimage.kuscia.secretflow.yaml",
    probe: "appimagerollouts",
};

/// The cluster with `crds` applied (server-side) and served. Installed by the first call of a
/// test binary; every call must name the same CRDs.
pub fn cluster_with(crds: &'static [Crd]) -> &'static Cluster {
    static INSTALLED: OnceLock<&'static [Crd]> = OnceLock::new();
    let c = cluster();
    let installed = INSTALLED.get_or_init(|| {
        for crd in crds {
            c.kubectl_ok(&["apply", "--server-side", "-f", crd.path]);
        }
        for crd in crds {
            let served = wait_until(Duration::from_secs(60), || {
                c.kubectl(&["get", crd.probe, "-A"]).status.success()
            });
            assert!(served, "{} not served after 60 s", crd.probe);
        }
        crds
    });
    assert_eq!(*installed, crds, "one test binary, one set of CRDs");
    c
}

/// What every test's webhook in one test binary shares: the serving pair, the trusted signing
/// key, and one Lease (so exactly one of them runs the controllers at a time).
pub struct Shared {
    pub c: &'static Cluster,
    pub tls: Tls,
    pub signer: SigningKey,
    pub lease: String,
}

impl Shared {
    /// Made by the first call of a test binary, with `crds` installed; `prefix` names the key
    /// directory and the Lease. Every call must pass the same arguments.
    pub fn once(crds: &'static [Crd], prefix: &str) -> &'static Shared {
        static SHARED: OnceLock<(String, Shared)> = OnceLock::new();
        let (made_for, s) = SHARED.get_or_init(|| {
            let c = cluster_with(crds);
            let dir = c.dir().join(unique(&format!("{prefix}-keys")));
            let shared = Shared {
                c,
                tls: Tls::new(&dir.join("tls"), "appimage-webhook"),
                signer: SigningKey::new(&dir),
                lease: unique(&format!("{prefix}-lease")),
            };
            (prefix.to_string(), shared)
        });
        assert_eq!(made_for, prefix, "one test binary, one Shared");
        cluster_with(crds);
        s
    }

    /// [`World::new`] with this.
    pub fn world(&'static self, prefix: &str) -> World {
        World::new(self, prefix)
    }
}

/// One test's world: a webhook (admission and controllers), a namespace labelled so its
/// registrations admit it, the name for the test's AppImage, and a work dir.
pub struct World {
    pub c: &'static Cluster,
    pub s: &'static Shared,
    pub hook: Webhook,
    pub ns: String,
    /// The label value `appimage-e2e=<tag>` this world's registrations select on.
    pub tag: String,
    /// A unique name for the test's AppImage.
    pub image: String,
    pub work: tempfile::TempDir,
}

impl World {
    /// A world whose webhook holds the shared Lease (2 s, so another takes over quickly once
    /// a test ends).
    pub fn new(s: &'static Shared, prefix: &str) -> World {
        let lease = format!("--lease-name={}", s.lease);
        World::with_webhook_args(s, prefix, &[&lease, "--lease-duration=2s"])
    }

    /// A world whose webhook runs with `args` (without a `--lease-name`, a Lease of its own).
    pub fn with_webhook_args(s: &'static Shared, prefix: &str, args: &[&str]) -> World {
        let c = s.c;
        let hook = Webhook::start(c, &s.tls, &s.signer.pub_dir, args);
        let tag = unique(prefix);
        let ns = c.namespace(prefix);
        c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);
        register(c, &hook, &s.tls, &tag);
        World {
            c,
            s,
            hook,
            ns,
            tag,
            image: unique(prefix),
            work: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `kubectl apply` of `value`, which must succeed.
    pub fn apply_json(&self, value: &Value) {
        let file = write_json(self.work.path(), value);
        let out = self.c.kubectl(&["apply", "-f", &file.to_string_lossy()]);
        assert!(out.status.success(), "apply {value}: {:?}", text(&out));
    }

    pub fn apply_image(&self, img: &AppImage) {
        self.apply_json(&serde_json::to_value(img).expect("AppImage JSON"));
    }

    /// `kubectl get -n <ns> -o json <what…>`, which must succeed, parsed.
    pub fn get_json(&self, what: &[&str]) -> Value {
        let mut args = vec!["get", "-n", &self.ns, "-o", "json"];
        args.extend_from_slice(what);
        serde_json::from_str(&self.c.kubectl_ok(&args)).expect("kubectl JSON")
    }

    /// The items of a list [`World::get_json`] gets.
    pub fn items(&self, what: &[&str]) -> Vec<Value> {
        self.get_json(what)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `kubectl appimage <args>`, which must succeed: its stdout.
    pub fn plugin(&self, args: &[&str]) -> String {
        let mut full = vec!["appimage"];
        full.extend_from_slice(args);
        self.c.kubectl_ok(&full)
    }

    /// `kubectl appimage deploy <image> -n <ns> --name <name> <args…>`, which must succeed.
    pub fn deploy(&self, name: &str, args: &[&str]) {
        let mut full = vec!["deploy", &self.image, "-n", &self.ns, "--name", name];
        full.extend_from_slice(args);
        self.plugin(&full);
    }

    /// Revision `n` of this world's AppImage, once the controller recorded it: its hash.
    pub fn revision(&self, n: i64) -> String {
        let name = format!("{}-{n}", self.image);
        let mut hash = String::new();
        let recorded = wait_until(WAIT, || {
            let out = self.c.kubectl(&[
                "get",
                "appimagerevision",
                &name,
                "-o",
                "jsonpath={.spec.hash}",
            ]);
            hash = text(&out).0;
            out.status.success() && !hash.is_empty()
        });
        assert!(recorded, "revision {name} never recorded:\n{}", self.logs());
        hash
    }

    /// The last 40 lines of the webhook's log, for failure messages.
    pub fn logs(&self) -> String {
        let logs = self.hook.logs();
        let tail: Vec<&str> = logs.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A bare Pod `name` of this world's AppImage (the webhook fills in its containers).
    pub fn apply_bare_pod(&self, name: &str) {
        self.apply_json(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.ns,
                         "labels": {"kuscia.secretflow/app-image": self.image}},
            "spec": {"containers": []}
        }));
    }

    /// The first AppImage of `examples/<file>`, named `name`, without a signature.
    pub fn example(&self, file: &str, name: &str) -> AppImage {
        let path = repo_root().join("examples").join(file);
        let text = std::fs::read_to_string(&path).expect("read the example");
        let mut img = manifest::appimages(file, &text).expect("example").remove(0);
        img.metadata.name = Some(name.into());
        // The example's own signature is by a key the tests do not trust.
        img.spec.image.sign = None;
        img
    }

    /// [`World::example`] signed with the shared key.
    pub fn signed_example(&self, file: &str, name: &str) -> AppImage {
        let mut img = self.example(file, name);
        self.sign(&mut img);
        img
    }

    /// [`World::signed_example`], applied.
    pub fn apply_signed_example(&self, file: &str, name: &str) -> AppImage {
        let img = self.signed_example(file, name);
        self.apply_image(&img);
        img
    }

    /// Sign `img`'s image with the shared key (after any change to it).
    pub fn sign(&self, img: &mut AppImage) {
        img.spec.image.sign = Some(self.s.signer.sign(&payload(img)));
    }
}

/// `struct $name(World)` that derefs to [`World`], so a test file adds its own helpers to the
/// shared ones: `appimage_e2e::world_wrapper!(World);`. With `World = <&'static Shared>` it
/// also gets `fn new(prefix)`, a [`World::new`] with that [`Shared`].
#[macro_export]
macro_rules! world_wrapper {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        struct $name($crate::world::World);

        impl ::std::ops::Deref for $name {
            type Target = $crate::world::World;
            fn deref(&self) -> &$crate::world::World {
                &self.0
            }
        }
    };
    ($(#[$meta:meta])* $name:ident = $shared:expr) => {
        $crate::world_wrapper!($(#[$meta])* $name);

        impl $name {
            fn new(prefix: &str) -> $name {
                $name($crate::world::World::new($shared, prefix))
            }
        }
    };
}
