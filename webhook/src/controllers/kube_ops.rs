//! The controllers' writes, one way each (issue 25: before, nine `PatchParams::apply` sites,
//! four copies of delete-with-UID-precondition and four ways to build an owner reference),
//! and the memo of what was written ([`Written`]) that spares an apply of what is current.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Error, MANAGER};

/// Server-side apply of `body` as `manager`, forced: the fields it sets are that manager's,
/// whoever set them before (a hand edit is undone).
pub async fn apply_as<K, B>(api: &Api<K>, manager: &str, name: &str, body: &B) -> Result<K, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
    B: Serialize + Debug,
{
    let params = PatchParams::apply(manager).force();
    api.patch(name, &params, &Patch::Apply(body))
        .await
        .map_err(Error::Apply)
}

/// Server-side apply as [`MANAGER`], the field manager of everything the controllers own.
pub async fn apply<K, B>(api: &Api<K>, name: &str, body: &B) -> Result<K, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
    B: Serialize + Debug,
{
    apply_as(api, MANAGER, name, body).await
}

/// What the controllers last applied, per object: a digest of the body and the
/// resourceVersion the API server answered with. An object whose stored version is still that
/// one, wanted with the same body, is current: it is not applied again (issue 25: before,
/// every Pod status change or workload status write re-applied its Services). A hand edit
/// makes a new version, so it is still undone.
#[derive(Debug, Default)]
pub struct Written(Mutex<HashMap<String, (u64, String)>>);

impl Written {
    /// Forgotten all at once past this many objects (each is then applied once more).
    const LIMIT: usize = 100_000;

    /// The digest of a body.
    pub fn digest<B: Serialize>(body: &B) -> u64 {
        let mut h = DefaultHasher::new();
        serde_json::to_string(body).unwrap_or_default().hash(&mut h);
        h.finish()
    }

    /// Whether `key`, stored at `version`, is what applying a body of `digest` last made.
    pub fn current(&self, key: &str, digest: u64, version: Option<&str>) -> bool {
        let written = self.0.lock().unwrap_or_else(|p| p.into_inner());
        written
            .get(key)
            .is_some_and(|(d, v)| *d == digest && Some(v.as_str()) == version)
    }

    /// `key` was applied with a body of `digest` and is now at `version`.
    pub fn record(&self, key: String, digest: u64, version: Option<String>) {
        let mut written = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if written.len() >= Self::LIMIT {
            written.clear();
        }
        match version {
            Some(v) => written.insert(key, (digest, v)),
            None => written.remove(&key),
        };
    }

    /// Forget `key` (a failed write: the next reconcile applies again).
    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// The key of an object in [`Written`].
pub fn key<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", K::kind(&()))
}

/// How an owned object is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// The API's default for the kind.
    Default,
    /// The object stays (being deleted) until its dependents are gone.
    Foreground,
}

/// Delete `name`, only if it is still the object of `uid` (a precondition: an object
/// re-created meanwhile under that name, by anyone, is left alone). Gone already, or
/// replaced: nothing to do.
pub async fn delete_owned<K>(
    api: &Api<K>,
    name: &str,
    uid: Option<String>,
    how: Propagation,
) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let base = match how {
        Propagation::Default => DeleteParams::default(),
        Propagation::Foreground => DeleteParams::foreground(),
    };
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..base
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(Error::Delete(e)),
    }
}

/// The controller owner reference to `owner` (kube's `controller_owner_ref`: its apiVersion
/// and kind from the type, never written by hand).
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())
}

#[cfg(test)]
mod tests {
    use super::*;
    use appimage::resource::AppImage;

    #[test]
    fn the_owner_reference_comes_from_the_type() {
        let spec = serde_json::json!({"image": {"name": "x", "tag": "1"}, "deployTemplates": []});
        let mut image = AppImage::new("web", serde_json::from_value(spec).unwrap());
        assert_eq!(owner_ref(&image), None, "no UID yet: no reference");
        image.metadata.uid = Some("u".into());
        let o = owner_ref(&image).unwrap();
        assert_eq!(
            (o.api_version.as_str(), o.kind.as_str(), o.name.as_str()),
            ("kuscia.secretflow/v1alpha1", "AppImage", "web")
        );
        assert_eq!((o.uid.as_str(), o.controller), ("u", Some(true)));
    }
}
