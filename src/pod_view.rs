//! What admission reads of a Pod, borrowed from the request's text: its name, namespace,
//! labels, annotations and controller, and whether its spec is the bare `{"containers": []}`
//! that a plan ([`crate::injection::Plan`]) patches without a `Pod` tree. The other metadata
//! fields and the status are checked as the tree checks them (a malformed Pod is refused, not
//! patched) but kept only where cheap; the spec is left as text.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference, Time};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::labels;

/// Strings as the request has them: borrowed unless JSON escapes made a copy necessary.
pub type Strings<'a> = BTreeMap<Cow<'a, str>, Cow<'a, str>>;

/// A Pod as admission reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView<'a> {
    #[serde(default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub metadata: Option<MetaView<'a>>,
    /// The spec's fields, left as text; `None` for a Pod decoded from a tree ([`PodView::of`]).
    #[serde(default, borrow)]
    spec: Option<BTreeMap<Cow<'a, str>, &'a RawValue>>,
    /// Checked, not read.
    #[serde(default, rename = "status")]
    _status: Option<PodStatus>,
    /// Set by [`PodView::of`]: the tree's spec is `{"containers": []}`.
    #[serde(skip)]
    bare_tree: bool,
}

/// The metadata fields admission reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaView<'a> {
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub generate_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub labels: Option<Strings<'a>>,
    #[serde(default, borrow)]
    pub annotations: Option<Strings<'a>>,
    #[serde(default)]
    pub owner_references: Option<Vec<OwnerReference>>,
    // The fields below are checked as the tree checks them, and not read.
    #[serde(default, borrow, rename = "uid")]
    _uid: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "resourceVersion")]
    _resource_version: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "selfLink")]
    _self_link: Option<Cow<'a, str>>,
    #[serde(default, rename = "generation")]
    _generation: Option<i64>,
    #[serde(default, rename = "deletionGracePeriodSeconds")]
    _deletion_grace_period_seconds: Option<i64>,
    #[serde(default, borrow, rename = "finalizers")]
    _finalizers: Option<Vec<Cow<'a, str>>>,
    #[serde(default, rename = "creationTimestamp")]
    _creation_timestamp: Option<Time>,
    #[serde(default, rename = "deletionTimestamp")]
    _deletion_timestamp: Option<Time>,
    #[serde(default, rename = "managedFields")]
    _managed_fields: Option<Vec<ManagedFieldsEntry>>,
}

impl<'a> PodView<'a> {
    /// The view of a Pod tree (`render`, tests): what decoding its JSON would give.
    pub fn of(pod: &'a Pod) -> PodView<'a> {
        let borrowed = |m: &'a BTreeMap<String, String>| -> Strings<'a> {
            m.iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                .collect()
        };
        let meta = &pod.metadata;
        let bare = pod.spec.as_ref().is_some_and(|s| {
            s.containers.is_empty() && *s == k8s_openapi::api::core::v1::PodSpec::default()
        });
        PodView {
            api_version: None,
            kind: None,
            metadata: Some(MetaView {
                name: meta.name.as_deref().map(Cow::Borrowed),
                generate_name: meta.generate_name.as_deref().map(Cow::Borrowed),
                namespace: meta.namespace.as_deref().map(Cow::Borrowed),
                labels: meta.labels.as_ref().map(borrowed),
                annotations: meta.annotations.as_ref().map(borrowed),
                owner_references: meta.owner_references.clone(),
                ..MetaView::default()
            }),
            spec: None,
            _status: None,
            bare_tree: bare,
        }
    }

    /// The metadata; empty when the Pod has none.
    pub fn meta(&self) -> &MetaView<'a> {
        static EMPTY: MetaView<'static> = MetaView {
            name: None,
            generate_name: None,
            namespace: None,
            labels: None,
            annotations: None,
            owner_references: None,
            _uid: None,
            _resource_version: None,
            _self_link: None,
            _generation: None,
            _deletion_grace_period_seconds: None,
            _finalizers: None,
            _creation_timestamp: None,
            _deletion_timestamp: None,
            _managed_fields: None,
        };
        self.metadata.as_ref().unwrap_or(&EMPTY)
    }

    /// Whether the Pod is one a plan patches directly: apiVersion and kind absent or
    /// `v1`/`Pod` (anything else is for the full decode to refuse), metadata present, and a
    /// spec of exactly `{"containers": []}` (nothing of the Pod's own to merge or keep).
    pub fn is_bare(&self) -> bool {
        if self.bare_tree {
            return self.metadata.is_some();
        }
        let versioned = self.api_version.as_deref().is_none_or(|v| v == "v1")
            && self.kind.as_deref().is_none_or(|k| k == "Pod");
        let Some(spec) = &self.spec else {
            return false;
        };
        let empty_containers = spec.len() == 1
            && spec.get("containers").is_some_and(|raw| {
                let text = raw.get();
                text.starts_with('[')
                    && text.ends_with(']')
                    && text[1..text.len() - 1].trim_ascii().is_empty()
            });
        versioned && self.metadata.is_some() && empty_containers
    }
}

impl<'a> MetaView<'a> {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(|v| &**v)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(|v| &**v)
    }

    /// An option of the Pod: its annotation, else its label (as [`crate::injection::Request`]
    /// reads them).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.annotation(key).or_else(|| self.label(key))
    }

    /// Whether a controller owns the Pod ([`crate::owner::has_controller`]).
    pub fn controlled(&self) -> bool {
        self.owner_references
            .as_ref()
            .is_some_and(|refs| refs.iter().any(|o| o.controller == Some(true)))
    }

    /// The workload whose Services the Pod uses ([`crate::owner::workload_of`]).
    pub fn workload(&self) -> Option<&str> {
        let name = self.label(labels::WORKLOAD)?;
        (self.controlled() && !name.is_empty()).then_some(name)
    }
}
