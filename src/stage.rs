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
}
