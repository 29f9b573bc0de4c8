//! Command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use appimage::overrides::PodOverrides;
use clap::{ArgAction, Parser};

use crate::admission::SignaturePolicy;
use crate::leader::{self, LeaseConfig};
use crate::logging::LogFormat;
use crate::registry::RegistryConfig;
use crate::server::{Config, TlsFiles};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "appimage-webhook",
    version,
    about = "Admission webhook that injects Kuscia AppImages into labelled Pods and validates AppImages",
    args_override_self = true,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM serving certificate (chain); reloaded when it changes on disk.
    #[arg(
        long,
        required_unless_present = "insecure_http",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the serving certificate.
    #[arg(
        long,
        required_unless_present = "insecure_http",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: /mutate and /validate then require a client certificate it signed.
    #[arg(long, conflicts_with = "insecure_http")]
    pub client_ca_file: Option<PathBuf>,
    /// Serve plain HTTP (local debugging only; the apiserver needs HTTPS).
    #[arg(long, conflicts_with_all = ["tls_cert_file", "tls_key_file"])]
    pub insecure_http: bool,
    /// Directory of trusted PEM public keys (*.pem, *.pub); reloaded when it changes.
    #[arg(long)]
    pub trusted_keys_dir: Option<PathBuf>,
    /// Deny unsigned or badly signed AppImages; `=false` turns that into warnings.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub require_signature: bool,
    /// Also accept signatures over payload v1 (the image alone, as Kuscia's documentation
    /// describes the field); every Pod admitted on one gets a warning.
    #[arg(long)]
    pub accept_payload_v1: bool,
    /// Distinct trusted keys whose signatures an AppImage needs to be published (k-of-n).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub publish_signatures: u16,
    /// File holding the secret that seals injected Pods (at least 32 bytes); every replica
    /// needs the same. Without it a random key is made at start, and Pods injected before a
    /// restart lose their Services controller (see README, "The webhook's seal").
    #[arg(long, value_name = "FILE")]
    pub seal_key_file: Option<PathBuf>,
    /// What a Pod may override of its AppImage's deploy template: all (Kuscia's merge), env
    /// (env and resources only) or none; an AppImage's annotation
    /// appimage.kuscia.secretflow/pod-overrides can only tighten it.
    #[arg(long, default_value = "env", value_parser = parse_overrides, value_name = "all|env|none")]
    pub pod_overrides: PodOverrides,
    /// Check each AppImage's spec.image.id (a sha256 image ID, as in Kuscia) against its
    /// registry, once per image, and pin Pods to the manifest that has it; a tag holding other
    /// bytes is denied. Off (=false): Pods name name:tag and carry the id, as in Kuscia.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub verify_image_ids: bool,
    /// With --verify-image-ids: a Docker config.json with the registries' credentials
    #[arg(long, value_name = "FILE", requires = "verify_image_ids")]
    pub registry_auth_file: Option<PathBuf>,
    /// With --verify-image-ids: a registry (host[:port]) spoken to over plain HTTP; repeatable
    #[arg(long, value_name = "HOST", requires = "verify_image_ids")]
    pub insecure_registry: Vec<String>,
    /// Kubeconfig to watch AppImages with; default: KUBECONFIG, ~/.kube/config or in-cluster.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Largest request body accepted (bytes); larger ones get 413.
    #[arg(long, default_value_t = 3 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Per-request time limit, e.g. 4s or 500ms; keep it below the webhook's timeoutSeconds.
    #[arg(long, default_value = "4s", value_parser = appimage::duration::parse)]
    pub request_timeout: Duration,
    /// How long in-flight requests may finish after SIGTERM.
    #[arg(long, default_value = "20s", value_parser = appimage::duration::parse)]
    pub shutdown_grace: Duration,
    /// Benchmark baseline: same server, every /mutate allowed with no patch, no cluster access.
    #[arg(long)]
    pub noop: bool,
    /// With --noop: answer every /mutate with this JSONPatch file instead of none. The benchmark
    /// uses it to measure what a patch of that size costs the stack, with no handler work.
    #[arg(long, requires = "noop", value_name = "FILE")]
    pub noop_patch: Option<PathBuf>,
    /// Run the controllers (Services and NetworkPolicies, revisions, rollouts, start, batch) beside
    /// admission; `--reconcile=false` runs admission alone (the chart's admission Deployment).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub reconcile: bool,
    /// Run the controllers only while holding a Lease, so that of several replicas exactly one
    /// does (`=false`: always, for a single replica).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub leader_elect: bool,
    /// Name of the coordination.k8s.io Lease the replicas elect a leader with.
    #[arg(long, default_value = "appimage-webhook")]
    pub lease_name: String,
    /// Namespace of the Lease; default: POD_NAMESPACE, else `default`.
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// How long the leader holds the Lease without renewing it (whole seconds, at least 2s);
    /// a standby takes over within this long after the leader dies.
    #[arg(long, default_value = "15s", value_parser = appimage::duration::parse)]
    pub lease_duration: Duration,
    /// This replica's name in the Lease; default: POD_NAME, else host name and process id.
    #[arg(long)]
    pub lease_identity: Option<String>,
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Run against a local cluster in one command: an in-memory CA and serving certificate,
    /// both webhook configurations registered (the chart's rules) pointing here, the
    /// controllers; Ctrl-C removes the registrations.
    Dev(crate::dev::DevArgs),
}

impl Cli {
    pub fn into_config(self) -> Config {
        let tls = match (self.tls_cert_file, self.tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: self.client_ca_file,
            }),
            _ => None,
        };
        Config {
            listen: self.listen,
            tls,
            tls_in_memory: None,
            trusted_keys_dir: self.trusted_keys_dir,
            require_signature: self.require_signature,
            signatures: SignaturePolicy {
                accept_payload_v1: self.accept_payload_v1,
                publish_signatures: usize::from(self.publish_signatures),
            },
            seal_key_file: self.seal_key_file,
            registry: self.verify_image_ids.then_some(RegistryConfig {
                auth_file: self.registry_auth_file,
                insecure: self.insecure_registry,
            }),
            pod_overrides: self.pod_overrides,
            kubeconfig: self.kubeconfig,
            max_body_bytes: self.max_body_bytes,
            request_timeout: self.request_timeout,
            shutdown_grace: self.shutdown_grace,
            noop: self.noop,
            noop_patch: self.noop_patch,
            reconcile: self.reconcile,
            lease: self.leader_elect.then(|| LeaseConfig {
                name: self.lease_name,
                namespace: self
                    .lease_namespace
                    .unwrap_or_else(leader::default_namespace),
                duration: self.lease_duration,
                identity: self.lease_identity.unwrap_or_else(leader::default_identity),
            }),
        }
    }
}

fn parse_overrides(s: &str) -> Result<PodOverrides, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let cli = Cli::try_parse_from([
            "w",
            "--tls-cert-file=c",
            "--tls-key-file=k",
            "--require-signature=false",
        ])
        .expect("valid flags");
        assert!(!cli.require_signature);
        assert_eq!(cli.max_body_bytes, 3_145_728);
        assert_eq!(cli.request_timeout, Duration::from_secs(4));
        assert_eq!(cli.log_format, LogFormat::Json);
        let lease = cli.into_config().lease.expect("elected by default");
        assert_eq!(
            (lease.name.as_str(), lease.duration),
            ("appimage-webhook", Duration::from_secs(15))
        );
        let single = Cli::try_parse_from(["w", "--insecure-http", "--leader-elect=false"]);
        assert!(single.is_ok_and(|c| c.into_config().lease.is_none()));
        let on = Cli::try_parse_from(["w", "--insecure-http", "--require-signature"]);
        assert!(on.is_ok_and(|c| c.require_signature && c.tls_cert_file.is_none()));
        // TLS files are required unless --insecure-http.
        assert!(Cli::try_parse_from(["w"]).is_err());
        assert!(Cli::try_parse_from(["w", "--tls-cert-file=c"]).is_err());
    }

    #[test]
    fn pod_flags() {
        let cli = Cli::try_parse_from(["w", "--insecure-http"]).expect("valid flags");
        assert_eq!(cli.pod_overrides, PodOverrides::Env, "env by default");
        assert!(cli.seal_key_file.is_none());
        let cli = Cli::try_parse_from(["w", "--insecure-http", "--pod-overrides=none"]);
        let config = cli.expect("valid flags").into_config();
        assert_eq!(config.pod_overrides, PodOverrides::None);
        let bad = Cli::try_parse_from(["w", "--insecure-http", "--pod-overrides=some"]);
        let err = bad.expect_err("not a policy").to_string();
        assert!(err.contains("must be one of all, env, none"), "{err}");
    }
}
