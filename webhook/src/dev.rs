//! `appimage-webhook dev`: the webhook against a local cluster in one command. An in-memory CA
//! and serving certificate for one IP, both webhook configurations (the chart's rules) with a
//! `url` clientConfig pointing here, the controllers; the registrations are removed on SIGINT or
//! SIGTERM. Registrations carry `app.kubernetes.io/managed-by=appimage-webhook-dev`: a start
//! replaces a stale one of that name (left by a crash) and refuses to touch any other.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use appimage::labels::{DEV_MANAGER, MANAGED_BY};
use appimage::overrides::PodOverrides;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::certs;
use crate::logging::LogFormat;
use crate::server::{self, Config};

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Kubeconfig of the cluster; default: KUBECONFIG, ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The address the apiserver reaches this process at: served there and written into the
    /// certificate's IP SAN and the registrations' URLs. For kind, the host's address on the
    /// kind network (e.g. 172.18.0.1).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub address: IpAddr,
    /// Port to serve on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Name of both webhook configurations.
    #[arg(long, default_value = DEV_MANAGER)]
    pub name: String,
    /// Directory of trusted PEM public keys (as the webhook's flag of that name).
    #[arg(long)]
    pub trusted_keys_dir: Option<PathBuf>,
    /// Deny unsigned or badly signed AppImages; `=false` turns that into warnings.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub require_signature: bool,
    /// File holding the seal secret (default: random for this process).
    #[arg(long, value_name = "FILE")]
    pub seal_key_file: Option<PathBuf>,
    /// What a Pod may override of its AppImage's deploy template: all, env or none.
    #[arg(long, default_value = "env", value_parser = |s: &str| s.parse::<PodOverrides>(),
          value_name = "all|env|none")]
    pub pod_overrides: PodOverrides,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The in-memory CA (PEM, for the caBundle) and the serving pair it signed.
pub struct Pki {
    pub ca_pem: String,
    pub serving: CertifiedKey,
}

/// A fresh CA and a serving certificate for `address` (ECDSA P-256, ring).
pub fn pki(address: IpAddr) -> anyhow::Result<Pki> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "appimage-webhook dev CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec![address.to_string()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "appimage-webhook dev");
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain = vec![CertificateDer::from(leaf_cert.der().to_vec())];
    let serving = CertifiedKey::from_der(chain, key, &certs::provider())?;
    Ok(Pki {
        ca_pem: ca_cert.pem(),
        serving,
    })
}

/// One webhook of the chart's, as `dev` registers it: the chart's name, rules and selectors,
/// a `url` to this process; kube-system left out (the chart also leaves out its own namespace).
fn webhook(name: &str, url: String, ca_bundle: &str, rules: Value, pods: bool) -> Value {
    let mut hook = json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 5,
        "matchPolicy": "Equivalent",
        "clientConfig": {"url": url, "caBundle": ca_bundle},
        "rules": rules,
    });
    if pods {
        hook["objectSelector"] = json!({"matchExpressions": [
            {"key": appimage::labels::APP_IMAGE, "operator": "Exists"}]});
        hook["namespaceSelector"] = json!({"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]});
    }
    hook
}

/// Both configurations named `name`, calling `base` (`https://IP:PORT`), labelled as ours.
pub fn registrations(
    name: &str,
    base: &str,
    ca_pem: &str,
) -> anyhow::Result<(MutatingWebhookConfiguration, ValidatingWebhookConfiguration)> {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let metadata = json!({"name": name, "labels": {MANAGED_BY: DEV_MANAGER}});
    let pod_rule = |ops: Value, resources: Value| {
        json!([{"operations": ops, "apiGroups": [""], "apiVersions": ["v1"],
                "resources": resources, "scope": "Namespaced"}])
    };
    let mut mutate = webhook(
        "pods.appimage.kuscia.secretflow",
        format!("{base}/mutate"),
        &ca,
        pod_rule(json!(["CREATE"]), json!(["pods"])),
        true,
    );
    mutate["reinvocationPolicy"] = json!("IfNeeded");
    let images = webhook(
        "appimages.appimage.kuscia.secretflow",
        format!("{base}/validate"),
        &ca,
        json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": ["kuscia.secretflow"],
                "apiVersions": ["v1alpha1"], "resources": ["appimages"], "scope": "Cluster"}]),
        false,
    );
    let pods = webhook(
        "pods.validate.appimage.kuscia.secretflow",
        format!("{base}/validate-pods"),
        &ca,
        pod_rule(
            json!(["UPDATE"]),
            json!(["pods", "pods/ephemeralcontainers"]),
        ),
        true,
    );
    let mutating = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration", "metadata": metadata, "webhooks": [mutate]});
    let validating = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": metadata, "webhooks": [images, pods]});
    Ok((
        serde_json::from_value(mutating)?,
        serde_json::from_value(validating)?,
    ))
}

fn owned<K: Resource>(obj: &K) -> bool {
    let labels = obj.meta().labels.as_ref();
    labels.and_then(|l| l.get(MANAGED_BY)).map(String::as_str) == Some(DEV_MANAGER)
}

/// Create or replace `obj`: a stale one of ours is taken over, anyone else's is left alone.
async fn claim<K>(api: &Api<K>, obj: &K) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let (kind, name) = (K::kind(&()), obj.meta().name.clone().unwrap_or_default());
    if let Some(existing) = api.get_opt(&name).await? {
        anyhow::ensure!(
            owned(&existing),
            "{kind} {name} exists and is not labelled {MANAGED_BY}={DEV_MANAGER}: \
             not touching it; pick another name with --name"
        );
        tracing::info!("replacing a stale {kind} {name} left by an earlier run");
    }
    let params = PatchParams::apply(DEV_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(obj)).await?;
    Ok(())
}

/// Delete `name` if it is still ours.
async fn release<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await? {
        Some(existing) if owned(&existing) => {
            api.delete(name, &DeleteParams::default()).await?;
            println!("removed {} {name}", K::kind(&()));
        }
        _ => {}
    }
    Ok(())
}

/// Serve, register, wait for `shutdown`, deregister, stop.
pub async fn run(
    args: DevArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    certs::install_default_provider();
    let pki = pki(args.address)?;
    let mut config = Config::new(SocketAddr::new(args.address, args.port), None);
    config.tls_in_memory = Some(pki.serving.clone());
    config.trusted_keys_dir = args.trusted_keys_dir;
    config.require_signature = args.require_signature;
    config.seal_key_file = args.seal_key_file;
    config.pod_overrides = args.pod_overrides;
    config.kubeconfig = args.kubeconfig.clone();
    let client = server::kube_client(args.kubeconfig.as_deref()).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = server::start(config, async {
        let _ = stopped.await;
    })
    .await?;
    let base = format!("https://{}", running.local_addr);
    let (mutating, validating) = registrations(&args.name, &base, &pki.ca_pem)?;
    let mutating_api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let validating_api = Api::<ValidatingWebhookConfiguration>::all(client);
    let registered = async {
        claim(&mutating_api, &mutating).await?;
        claim(&validating_api, &validating).await
    };
    if let Err(e) = registered.await {
        let _ = stop.send(());
        running.wait().await?;
        return Err(e.context("registering the webhook configurations"));
    }
    println!(
        "serving {base}; registered MutatingWebhookConfiguration and \
         ValidatingWebhookConfiguration {}; Ctrl-C removes them",
        args.name
    );
    shutdown.await;
    // Registrations go first: the apiserver must stop calling before the server stops answering.
    let released = async {
        release(&mutating_api, &args.name).await?;
        release(&validating_api, &args.name).await
    };
    let released = released
        .await
        .context("removing the webhook configurations");
    let _ = stop.send(());
    running.wait().await?;
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_the_address_and_chains_to_the_ca() {
        certs::install_default_provider();
        let pki = pki(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("pki");
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let der = pki.serving.cert[0].as_ref();
        // The IP SAN is the 4 bytes 127.0.0.1 under the tag [7] (iPAddress).
        assert!(der.windows(6).any(|w| w == [0x87, 4, 127, 0, 0, 1]));
    }

    #[test]
    fn registrations_are_labelled_and_call_this_process() {
        let (m, v) = registrations("n", "https://127.0.0.1:1", "PEM").expect("valid");
        for meta in [&m.metadata, &v.metadata] {
            let labels = meta.labels.as_ref().expect("labels");
            assert_eq!(
                labels.get(MANAGED_BY).map(String::as_str),
                Some(DEV_MANAGER)
            );
        }
        let urls: Vec<_> = (m.webhooks.iter().flatten())
            .map(|w| w.client_config.url.clone())
            .chain(
                v.webhooks
                    .iter()
                    .flatten()
                    .map(|w| w.client_config.url.clone()),
            )
            .collect();
        assert_eq!(
            urls,
            ["/mutate", "/validate", "/validate-pods"]
                .map(|p| Some(format!("https://127.0.0.1:1{p}")))
        );
    }

    /// The chart's webhook configurations with every templated line dropped (what is left is
    /// the fixed part: names, rules, selectors' keys and kube-system).
    fn chart_webhooks() -> Vec<Value> {
        let text = include_str!("../../charts/appimage-webhook/templates/webhook.yaml");
        let (_, body) = text
            .split_once("*/ -}}")
            .expect("the chart's opening comment");
        let plain: String = body
            .lines()
            .filter(|l| !l.contains("{{"))
            .map(|l| format!("{l}\n"))
            .collect();
        plain
            .split("\n---\n")
            .map(|doc| serde_yaml_ng::from_str::<Value>(doc).expect("yaml"))
            .filter(|doc| {
                doc["kind"]
                    .as_str()
                    .is_some_and(|k| k.ends_with("WebhookConfiguration"))
            })
            .flat_map(|doc| doc["webhooks"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    #[test]
    fn registrations_have_the_charts_rules() {
        let (m, v) = registrations("n", "https://127.0.0.1:1", "PEM").expect("valid");
        let ours: Vec<Value> = [serde_json::to_value(&m), serde_json::to_value(&v)]
            .into_iter()
            .flat_map(|doc| {
                doc.expect("json")["webhooks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        let chart = chart_webhooks();
        assert_eq!((ours.len(), chart.len()), (3, 3), "{chart:#?}");
        for (dev, chart) in ours.iter().zip(&chart) {
            for field in [
                "name",
                "rules",
                "objectSelector",
                "admissionReviewVersions",
                "sideEffects",
                "reinvocationPolicy",
                "matchPolicy",
            ] {
                assert_eq!(dev[field], chart[field], "{field} of {}", chart["name"]);
            }
            // The chart adds its release namespace and excludeNamespaces to kube-system.
            assert_eq!(
                dev["namespaceSelector"], chart["namespaceSelector"],
                "{}",
                chart["name"]
            );
        }
    }
}
