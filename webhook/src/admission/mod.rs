//! AdmissionReview in, answer out. No IO: the AppImages and keys come from a [`Catalog`] /
//! [`TrustSnapshot`] snapshot, so every rule is testable on plain JSON. The wire format is
//! [`codec`]'s.

pub mod codec;
pub mod pods;

use appimage::injection::{Request as Injection, pod_name_from};
use appimage::labels;
use appimage::pod_view::{MetaView, PodView};
use appimage::resource::{self, AppImage, ImageInfo};
use appimage::signature::{self, Requirement, SignatureError};
use appimage::stage::Stage;
use appimage::validation::validate as validate_image;
use kube::core::admission::Operation;

pub use codec::{Request, Response};
pub use pods::{PodRules, validate_pod};

use crate::catalog::{Catalog, Prepared};
use crate::trust::TrustSnapshot;

/// Namespace whose Pods are never touched, so a broken webhook cannot wedge the cluster.
pub const SKIPPED_NAMESPACE: &str = "kube-system";

/// How strict the webhook is.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub require_signature: bool,
    pub signatures: SignaturePolicy,
}

/// Which signatures count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// Accept payload v1 (the image alone), with a warning on every Pod admitted on it.
    pub accept_payload_v1: bool,
    /// Distinct trusted keys an AppImage needs to be published.
    pub publish_signatures: usize,
}

impl Default for SignaturePolicy {
    fn default() -> SignaturePolicy {
        SignaturePolicy::DEFAULT
    }
}

impl SignaturePolicy {
    /// Payload v2 only; one key to publish.
    pub const DEFAULT: SignaturePolicy = SignaturePolicy {
        accept_payload_v1: false,
        publish_signatures: 1,
    };

    /// What a Pod (or a rollout) needs: one valid key.
    pub fn to_run(&self) -> Requirement {
        Requirement {
            accept_v1: self.accept_payload_v1,
            min_signers: 1,
        }
    }

    /// What a published AppImage needs.
    pub fn to_publish(&self) -> Requirement {
        Requirement {
            accept_v1: self.accept_payload_v1,
            min_signers: self.publish_signatures,
        }
    }
}

/// The body is not an AdmissionReview we can answer: HTTP 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// What became of one admission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Patched,
    Denied,
    /// The request could not be answered as a review (bad body, too large, ...).
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Patched => "patched",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

/// The answer, plus what the caller logs and counts.
#[derive(Debug)]
pub struct Reply {
    /// The review's apiVersion, echoed.
    pub api_version: String,
    pub response: Response,
    pub outcome: Outcome,
    pub namespace: String,
    /// The object's name (or generateName) as far as it is known.
    pub name: String,
    pub appimage: Option<String>,
    pub signature_failed: bool,
    /// The image whose id the registry must be asked about before this Pod can be answered:
    /// the caller checks it ([`crate::registry::Registry::check`]) and admits again.
    pub unresolved: Option<ImageInfo>,
}

impl Reply {
    pub fn response(&self) -> &Response {
        &self.response
    }

    pub fn uid(&self) -> &str {
        &self.response.uid
    }

    /// The AdmissionReview as sent to the API server.
    pub fn to_json(&self) -> sonic_rs::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.response.size_hint());
        sonic_rs::to_writer(
            &mut out,
            &codec::ReviewOut::new(&self.api_version, &self.response),
        )?;
        Ok(out)
    }
}

/// Why a request is not allowed as it is.
struct Denial {
    message: String,
    /// Our fault, not the request's.
    internal: bool,
}

impl From<String> for Denial {
    fn from(message: String) -> Denial {
        Denial {
            message,
            internal: false,
        }
    }
}

impl From<&str> for Denial {
    fn from(message: &str) -> Denial {
        Denial::from(message.to_string())
    }
}

/// The answer being built.
struct Answer {
    response: Response,
    outcome: Outcome,
    name: String,
    namespace: String,
    appimage: Option<String>,
    signature_failed: bool,
    unresolved: Option<ImageInfo>,
}

impl Answer {
    fn new(request: &Request<'_>) -> Answer {
        Answer {
            response: Response::allow(&request.uid),
            outcome: Outcome::Allowed,
            name: request.name.to_string(),
            namespace: request.namespace.as_deref().unwrap_or_default().to_string(),
            appimage: None,
            signature_failed: false,
            unresolved: None,
        }
    }

    /// Allow with `patch`, a JSONPatch document.
    fn patched(&mut self, patch: &[u8]) {
        self.response.set_patch(patch);
        self.outcome = Outcome::Patched;
    }

    fn warn(&mut self, warning: String) {
        self.response.warnings.push(warning);
    }

    fn finish(mut self, result: Result<(), Denial>, api_version: &str) -> Reply {
        if let Err(denial) = result {
            self.response.deny(denial.message);
            self.outcome = if denial.internal {
                Outcome::Error
            } else {
                Outcome::Denied
            };
        }
        Reply {
            api_version: api_version.to_string(),
            response: self.response,
            outcome: self.outcome,
            namespace: self.namespace,
            name: self.name,
            appimage: self.appimage,
            signature_failed: self.signature_failed,
            unresolved: self.unresolved,
        }
    }
}

/// `/mutate` in benchmark-baseline mode: decode, then allow without a patch, or with the fixed
/// `patch` (what an answer of that size costs, without the work of making it).
pub fn noop(body: &[u8], patch: Option<&[u8]>) -> Result<Reply, BadRequest> {
    let request = codec::decode(body)?;
    let mut answer = Answer::new(&request);
    if let Some(patch) = patch {
        answer.patched(patch);
    }
    Ok(answer.finish(Ok(()), &request.api_version))
}

/// `/mutate`: inject the labelled Pod's AppImage (with the default [`PodRules`]: no seal).
pub fn mutate(body: &[u8], catalog: &Catalog, policy: Policy) -> Result<Reply, BadRequest> {
    mutate_with(body, catalog, policy, &PodRules::default())
}

/// `/mutate` with `rules`: the server's, which seal what they inject.
pub fn mutate_with(
    body: &[u8],
    catalog: &Catalog,
    policy: Policy,
    rules: &PodRules,
) -> Result<Reply, BadRequest> {
    let request = codec::decode(body)?;
    let mut answer = Answer::new(&request);
    let result = mutate_request(&request, catalog, policy, rules, &mut answer);
    Ok(answer.finish(result, &request.api_version))
}

fn mutate_request(
    request: &Request<'_>,
    catalog: &Catalog,
    policy: Policy,
    rules: &PodRules,
    answer: &mut Answer,
) -> Result<(), Denial> {
    let kind = &request.kind;
    if !kind.group.is_empty() || kind.kind != "Pod" {
        let got = format!("{}/{}", kind.group, kind.kind);
        return Err(format!("/mutate admits Pods only, got {got}").into());
    }
    if !matches!(request.operation, Operation::Create) {
        return Ok(());
    }
    let object = request
        .object
        .ok_or("the AdmissionReview request has no object (the Pod)")?;
    let mut spare = String::new();
    let (view, tree) = decode_pod(object, &mut spare)?;
    let meta = view.meta();
    name_from_pod(answer, meta);
    let Some(image_name) = opted_in(meta, answer)? else {
        return Ok(());
    };
    let pod_ref = format!("{}/{}", answer.namespace, answer.name);
    answer.appimage = Some(image_name.to_string());
    // A workload's Pod runs the revision its template names (issue 17), not the current spec.
    let named = appimage::revision::named_by(|key| meta.annotation(key))
        .map_err(|e| format!("Pod {pod_ref:?}: {e}"))?;
    let looked_up = catalog
        .lookup_named(image_name, &named)
        .map_err(|e| format!("Pod {pod_ref:?}: {e}"))?;
    let prepared = looked_up.ok_or_else(|| {
        format!(
            "AppImage {image_name:?} not found: create it (kubectl appimage apply -f FILE) or fix the label {} on Pod {pod_ref:?}",
            labels::APP_IMAGE
        )
    })?;
    deprecation(catalog, image_name, &named, &prepared, answer);
    if let Some(warning) = &prepared.fallback {
        answer.warn(format!("Pod {pod_ref:?}: {warning}"));
    }
    match catalog.verdict(&prepared, &policy.signatures.to_run()) {
        Ok(accepted) => weaker_payload(answer, image_name, accepted.weaker),
        Err(e) => {
            let message = format!("AppImage {image_name:?} failed signature verification: {e}");
            signature_failed(answer, policy, message)?;
            tracing::warn!(uid = %request.uid, appimage = %image_name,
                "admitting Pod {pod_ref} despite a failed signature check (--require-signature=false)");
        }
    }
    let (given, generate) = (meta.name.as_deref(), meta.generate_name.as_deref());
    let name = pod_name_from(given, generate, &request.uid)
        .ok_or("Pod has neither name nor generateName")?;
    answer.name = name;
    // A pinned revision carries no annotations: the current AppImage's pod-overrides tightens.
    let mut rules = std::borrow::Cow::Borrowed(rules);
    if !matches!(named, appimage::revision::Named::Current)
        && let Some(current) = catalog.marks(image_name)
    {
        let tightened = rules.pod_overrides.for_image(&current)?;
        rules.to_mut().pod_overrides = tightened;
    }
    let pod = Pod { view, tree, object };
    inject(catalog, &prepared, pod, &rules, answer, &pod_ref)
}

/// The Pod of a request: its view, and its tree unless the view is all a plan needs.
struct Pod<'a> {
    view: PodView<'a>,
    tree: Option<k8s_openapi::api::core::v1::Pod>,
    object: &'a serde_json::value::RawValue,
}

impl Pod<'_> {
    /// The whole Pod, for injection without a plan's patch.
    fn tree(self) -> Result<k8s_openapi::api::core::v1::Pod, Denial> {
        match self.tree {
            Some(tree) => Ok(tree),
            None => decode_tree(self.object),
        }
    }
}

fn decode_tree(
    object: &serde_json::value::RawValue,
) -> Result<k8s_openapi::api::core::v1::Pod, Denial> {
    codec::decode_object(object).map_err(|e| format!("cannot decode the Pod: {e}").into())
}

/// Only what admission reads of a bare Pod (the view); the whole tree of any other, decoded
/// first as ever, so that a malformed one is refused with the field that is wrong. A Pod the
/// tree takes and the view does not (say, a field given twice) is viewed through the tree's
/// JSON, kept in `spare`.
fn decode_pod<'a>(
    object: &'a serde_json::value::RawValue,
    spare: &'a mut String,
) -> Result<(PodView<'a>, Option<k8s_openapi::api::core::v1::Pod>), Denial> {
    let view: serde_json::Result<PodView> = codec::decode_borrowed(object);
    match view {
        Ok(view) if view.is_bare() => Ok((view, None)),
        Ok(view) => Ok((view, Some(decode_tree(object)?))),
        Err(e) => {
            // The tree's error says what is wrong, as it always did.
            let tree = decode_tree(object)?;
            let internal = |e: String| Denial {
                message: format!("internal error viewing the Pod: {e}"),
                internal: true,
            };
            let e = e.to_string();
            *spare = serde_json::to_string(&tree).map_err(|_| internal(e.clone()))?;
            let view = serde_json::from_str(spare).map_err(|f| internal(format!("{e}; {f}")))?;
            Ok((view, Some(tree)))
        }
    }
}

/// A deprecated AppImage never breaks what runs: the Pod is admitted, with a warning. The
/// stage is the current AppImage's, also for a Pod pinned to an older revision.
fn deprecation(
    catalog: &Catalog,
    name: &str,
    named: &appimage::revision::Named,
    prepared: &Prepared,
    answer: &mut Answer,
) {
    // A pinned revision carries no stage: read the current AppImage's marks, not a second
    // full lookup.
    let current = match named {
        appimage::revision::Named::Current => None,
        _ => catalog.marks(name),
    };
    let image = current.as_ref().unwrap_or(prepared.head());
    if let Some(warning) = appimage::stage::deprecation_warning(image) {
        answer.warn(warning);
    }
}

/// The namespace and name from the Pod itself where the request left them out.
fn name_from_pod(answer: &mut Answer, meta: &MetaView<'_>) {
    if answer.namespace.is_empty() {
        answer.namespace = meta.namespace.as_deref().unwrap_or_default().to_string();
    }
    if answer.name.is_empty() {
        let name = meta.name.as_deref().or(meta.generate_name.as_deref());
        answer.name = name.unwrap_or_default().to_string();
    }
}

/// The AppImage the Pod asks for, if it asks and may be injected.
fn opted_in<'p>(meta: &'p MetaView<'_>, answer: &Answer) -> Result<Option<&'p str>, Denial> {
    let Some(name) = meta.label(labels::APP_IMAGE) else {
        return Ok(None);
    };
    if answer.namespace == SKIPPED_NAMESPACE {
        return Ok(None);
    }
    if name.is_empty() {
        let pod_ref = format!("{}/{}", answer.namespace, answer.name);
        return Err(format!(
            "label {} on Pod {pod_ref:?} is empty: set it to the name of an AppImage",
            labels::APP_IMAGE
        )
        .into());
    }
    Ok(Some(name))
}

/// An AppImage admitted on a payload v1 signature (`--accept-payload-v1`): say so each time.
fn weaker_payload(answer: &mut Answer, name: &str, weaker: Option<String>) {
    if let Some(why) = weaker {
        answer.warn(format!("AppImage {name:?}: {why}"));
    }
}

/// A failed signature check: a denial, or with `--require-signature=false` a warning.
fn signature_failed(answer: &mut Answer, policy: Policy, message: String) -> Result<(), Denial> {
    answer.signature_failed = true;
    if policy.require_signature {
        return Err(message.into());
    }
    answer.warn(message);
    Ok(())
}

/// Inject `prepared` into `pod` and patch the answer: from the plan's parts for a bare Pod,
/// else with the difference between the Pod and its injection.
fn inject(
    catalog: &Catalog,
    prepared: &Prepared,
    pod: Pod<'_>,
    rules: &PodRules,
    answer: &mut Answer,
    pod_ref: &str,
) -> Result<(), Denial> {
    let templates = prepared.derived.templates.as_ref().map_err(Clone::clone)?;
    let meta = pod.view.meta();
    let mut req = Injection::from_options(|key| meta.option(key), &answer.namespace, &answer.name)
        .map_err(|e| format!("Pod {pod_ref:?}: {e}"))?;
    req.pod_overrides = rules.pod_overrides;
    req.image = pinned_image(prepared.head(), rules, answer)?;
    let plan = catalog
        .plan(prepared, templates, &req)
        .map_err(|e| e.to_string())?;
    let seal = rules
        .seal_key
        .as_ref()
        .map(|k| (k, answer.namespace.as_str()));
    if let Some(planned) = plan.patch(prepared.head(), &pod.view, &req, seal) {
        let planned = planned.map_err(|e| e.to_string())?;
        for warning in planned.warnings {
            answer.warn(warning.clone());
        }
        if let Some(patch) = planned.patch {
            answer.patched(&patch);
        }
        return Ok(());
    }
    let pod = pod.tree()?;
    let internal = |e: serde_json::Error| Denial {
        message: format!("internal error encoding the Pod: {e}"),
        internal: true,
    };
    // The original as JSON first: injection then takes the Pod itself, not a copy.
    let before = serde_json::to_value(&pod).map_err(internal)?;
    let mut injection = plan
        .inject(&prepared.image(), templates, pod, &req)
        .map_err(|e| e.to_string())?;
    // Sealed after injection, over what it wrote; a seal the Pod brought is replaced.
    if let Some(key) = &rules.seal_key {
        appimage::admitted::seal(key, &answer.namespace, &mut injection.pod);
    }
    // What injection left out (a config file configTemplates lacks, a policy rule that would
    // grant nothing); kubectl prints each warning.
    for warning in injection.warnings {
        answer.warn(warning);
    }
    if let Some(patch) = appimage::patch::pod_diff(&before, injection.pod).map_err(internal)? {
        answer.patched(&patch);
    }
    Ok(())
}

/// The manifest the Pod runs when the registry checks image ids: the one whose image ID was
/// signed ([`appimage::image_id`]). Not known yet: the caller asks the registry and comes back.
fn pinned_image(
    image: &AppImage,
    rules: &PodRules,
    answer: &mut Answer,
) -> Result<Option<String>, Denial> {
    let info = &image.spec.image;
    let Some(registry) = rules.registry.as_ref() else {
        return Ok(None);
    };
    if appimage::image_id::checked_id(info).is_none() {
        return Ok(None);
    }
    match registry.known(info) {
        Some(Ok(pinned)) => {
            if let Some(warning) = pinned.warning {
                answer.warn(format!("AppImage {:?}: {warning}", image.name()));
            }
            Ok(Some(pinned.reference))
        }
        Some(Err(why)) => Err(format!("AppImage {:?}: {why}", image.name()).into()),
        None => {
            answer.unresolved = Some(info.clone());
            Err(format!(
                "AppImage {:?}: spec.image.id is being checked against the registry",
                image.name()
            )
            .into())
        }
    }
}

/// `/validate`: check an AppImage's fields and signature.
pub fn validate(body: &[u8], trust: &TrustSnapshot, policy: Policy) -> Result<Reply, BadRequest> {
    let request = codec::decode(body)?;
    let mut answer = Answer::new(&request);
    let result = validate_request(&request, trust, policy, &mut answer);
    Ok(answer.finish(result, &request.api_version))
}

fn validate_request(
    request: &Request<'_>,
    trust: &TrustSnapshot,
    policy: Policy,
    answer: &mut Answer,
) -> Result<(), Denial> {
    let kind = &request.kind;
    if kind.group != resource::GROUP || kind.kind != resource::KIND {
        let got = format!("{}/{}", kind.group, kind.kind);
        return Err(format!("/validate admits AppImages only, got {got}").into());
    }
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Ok(());
    }
    let object = request
        .object
        .ok_or("the AdmissionReview request has no object (the AppImage)")?;
    let image: AppImage =
        codec::decode_object(object).map_err(|e| format!("cannot decode the AppImage: {e}"))?;
    let name = image.name().to_string();
    answer.appimage = Some(name.clone());
    if answer.name.is_empty() {
        answer.name = name.clone();
    }
    let old = match request.operation {
        Operation::Update => Some(check_stage(request, &image)?),
        _ => None,
    };
    let errors = validate_image(&image);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(format!("AppImage {name:?} is invalid: {}", list.join("; ")).into());
    }
    // Accepted, as Kuscia accepts them, but injection will leave these out.
    for warning in appimage::validation::warnings(&image) {
        answer.warn(format!("AppImage {name:?}: {warning}"));
    }
    match verify_new(&image, old.as_ref(), trust, policy) {
        Ok(accepted) => weaker_payload(answer, &name, accepted.weaker),
        Err(e) => {
            let message = format!("AppImage {name:?} failed signature verification: {e}");
            signature_failed(answer, policy, message)?;
        }
    }
    Ok(())
}

/// The signature of an AppImage being written: a published one needs the publish threshold; a
/// mismatch names the spec fields changed since `old`, when `old` still verifies.
fn verify_new(
    image: &AppImage,
    old: Option<&AppImage>,
    trust: &TrustSnapshot,
    policy: Policy,
) -> Result<signature::Accepted, SignatureError> {
    let published = matches!(Stage::of(image), Ok(Stage::Published));
    let requirement = if published {
        policy.signatures.to_publish()
    } else {
        policy.signatures.to_run()
    };
    let now = jiff::Timestamp::now();
    signature::verify(image, &trust.keys, &requirement, now).map_err(|e| {
        let Some(old) = old.filter(|o| signature::signers(o, &trust.keys).is_ok()) else {
            return e;
        };
        e.with_changes(&signature::changed_paths(&old.spec, &image.spec))
    })
}

/// An UPDATE of a published AppImage may not change its spec (issue 19); the old AppImage.
fn check_stage(request: &Request<'_>, image: &AppImage) -> Result<AppImage, Denial> {
    let Some(old) = request.old_object else {
        return Err(
            "the AdmissionReview UPDATE request has no oldObject (the AppImage before)".into(),
        );
    };
    let old: AppImage =
        codec::decode_object(old).map_err(|e| format!("cannot decode the old AppImage: {e}"))?;
    appimage::stage::check_update(&old, image).map_err(Denial::from)?;
    Ok(old)
}
