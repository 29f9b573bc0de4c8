//! An AppImage's lifecycle stage (mpaas's draft, published, deprecated), kept in the label
//! `appimage.kuscia.secretflow/stage`. An AppImage without the label is a draft.

use std::fmt;

use crate::labels;
use crate::resource::AppImage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stage {
    /// Editable; every AppImage starts here.
    #[default]
    Draft,
    /// The spec may no longer change.
    Published,
    /// May no longer be used for new deployments; what runs keeps running.
    Deprecated,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "label {label} is {value:?}, which is not a stage; set it to draft, published or deprecated (kubectl appimage draft|publish|deprecate NAME)",
    label = labels::STAGE
)]
pub struct StageError {
    pub value: String,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Draft, Stage::Published, Stage::Deprecated];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Draft => "draft",
            Stage::Published => "published",
            Stage::Deprecated => "deprecated",
        }
    }

    /// A label value; exact and lower case, as labels are compared.
    pub fn parse(value: &str) -> Result<Stage, StageError> {
        Stage::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| StageError {
                value: value.to_string(),
            })
    }

    /// The stage of `image`: its label, or draft without one.
    pub fn of(image: &AppImage) -> Result<Stage, StageError> {
        match image
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::STAGE))
        {
            None => Ok(Stage::Draft),
            Some(value) => Stage::parse(value),
        }
    }

    /// The AppImage a deprecated one names as its replacement, if any.
    pub fn replaced_by(image: &AppImage) -> Option<&str> {
        let annotations = image.metadata.annotations.as_ref()?;
        annotations
            .get(labels::REPLACED_BY)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }
}

/// An UPDATE from `old` to `new` is refused when `old` is published and the spec changes.
/// Metadata may change here; leaving published (for draft or deprecated) needs the
/// `unpublish` permission, which the chart's ValidatingAdmissionPolicy checks (issue 24).
pub fn check_update(old: &AppImage, new: &AppImage) -> Result<(), String> {
    if Stage::of(old) != Ok(Stage::Published) {
        return Ok(());
    }
    // Compared as JSON: the spec types need not implement PartialEq.
    let spec = |i: &AppImage| serde_json::to_value(&i.spec).ok();
    if spec(old) == spec(new) {
        return Ok(());
    }
    let name = new.name();
    Err(format!(
        "AppImage {name:?} is published, so its spec can no longer change: create a new AppImage \
         for the new spec, or, if you hold the permission unpublish on appimages, move this one \
         back to draft first (kubectl appimage draft {name})"
    ))
}

/// The warning every Pod admission of a deprecated `image` carries; None for other stages.
pub fn deprecation_warning(image: &AppImage) -> Option<String> {
    if Stage::of(image) != Ok(Stage::Deprecated) {
        return None;
    }
    let name = image.name();
    let mut text = format!("AppImage {name:?} is deprecated");
    match Stage::replaced_by(image) {
        Some(next) => text.push_str(&format!("; use AppImage {next:?} instead")),
        None => text.push_str("; move new workloads to another AppImage"),
    }
    Some(text)
}

/// New workloads (`deploy`, `batch create`) may not use a deprecated AppImage unless the
/// user says `--allow-deprecated`; what already runs is never touched by this.
pub fn check_new_use(image: &AppImage, allow_deprecated: bool) -> Result<(), String> {
    match deprecation_warning(image) {
        Some(text) if !allow_deprecated => Err(format!(
            "{text}; refusing to deploy it (pass --allow-deprecated to deploy it anyway)"
        )),
        _ => Ok(()),
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(labels: serde_json::Value, annotations: serde_json::Value) -> AppImage {
        serde_json::from_value(json!({
            "apiVersion": "kuscia.secretflow/v1alpha1",
            "kind": "AppImage",
            "metadata": {"name": "a", "labels": labels, "annotations": annotations},
            "spec": {"image": {"name": "x", "tag": "1"}, "deployTemplates": []}
        }))
        .unwrap()
    }

    #[test]
    fn no_label_is_a_draft_and_values_round_trip() {
        assert_eq!(Stage::of(&image(json!({}), json!({}))), Ok(Stage::Draft));
        for stage in Stage::ALL {
            let labelled = image(json!({labels::STAGE: stage.as_str()}), json!({}));
            assert_eq!(Stage::of(&labelled), Ok(stage));
        }
    }

    #[test]
    fn an_unknown_value_is_an_error_that_says_how_to_fix_it() {
        let err = Stage::of(&image(json!({labels::STAGE: "Published"}), json!({}))).unwrap_err();
        assert_eq!(err.value, "Published");
        let text = err.to_string();
        assert!(text.contains(labels::STAGE) && text.contains("draft, published or deprecated"));
    }

    #[test]
    fn the_replacement_is_read_from_its_annotation() {
        let a = image(json!({}), json!({labels::REPLACED_BY: " b "}));
        assert_eq!(Stage::replaced_by(&a), Some("b"));
        assert_eq!(
            Stage::replaced_by(&image(json!({}), json!({labels::REPLACED_BY: ""}))),
            None
        );
    }

    fn with_spec(labels: serde_json::Value, tag: &str) -> AppImage {
        let mut a = image(labels, json!({}));
        a.spec.image.tag = tag.to_string();
        a
    }

    #[test]
    fn a_published_spec_is_immutable_but_its_metadata_is_not() {
        let published = json!({labels::STAGE: "published"});
        let old = with_spec(published.clone(), "1");
        let err = check_update(&old, &with_spec(published.clone(), "2")).unwrap_err();
        assert!(err.contains("is published") && err.contains("create a new AppImage"));
        assert!(err.contains("kubectl appimage draft a") && err.contains("unpublish"));
        // Moving back to draft (a label change) is allowed; so is any edit of a draft.
        assert_eq!(check_update(&old, &with_spec(json!({}), "1")), Ok(()));
        let draft = with_spec(json!({}), "1");
        assert_eq!(check_update(&draft, &with_spec(published, "2")), Ok(()));
        let deprecated = with_spec(json!({labels::STAGE: "deprecated"}), "1");
        assert_eq!(
            check_update(&deprecated, &with_spec(json!({}), "2")),
            Ok(())
        );
    }

    #[test]
    fn only_a_deprecated_image_warns_and_names_its_replacement() {
        assert_eq!(deprecation_warning(&image(json!({}), json!({}))), None);
        let published = image(json!({labels::STAGE: "published"}), json!({}));
        assert_eq!(deprecation_warning(&published), None);
        let dep = json!({labels::STAGE: "deprecated"});
        let plain = deprecation_warning(&image(dep.clone(), json!({}))).unwrap();
        assert!(plain.contains("\"a\" is deprecated") && !plain.contains("instead"));
        let replaced = image(dep, json!({labels::REPLACED_BY: "b"}));
        let text = deprecation_warning(&replaced).unwrap();
        assert!(text.contains("use AppImage \"b\" instead"), "{text}");
        let err = check_new_use(&replaced, false).unwrap_err();
        assert!(
            err.contains("--allow-deprecated") && err.contains("\"b\""),
            "{err}"
        );
        assert_eq!(check_new_use(&replaced, true), Ok(()));
        assert_eq!(check_new_use(&published, false), Ok(()));
    }
}
