//! Choosing the deploy template for a role, exactly as Kuscia does.

use crate::naming;
use crate::resource::{AppImage, DeployTemplate};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error(
        "AppImage {image:?} has no deploy template named {name:?} (it has: {available}); pick one of those or drop the template name"
    )]
    NoSuchName {
        image: String,
        name: String,
        available: String,
    },
    #[error(
        "AppImage {image:?} has no deploy template for role {role:?} and none without a role (roles it serves: {available}); use one of those roles or add a template with an empty role"
    )]
    NoTemplateForRole {
        image: String,
        role: String,
        available: String,
    },
    #[error("AppImage {image:?} has no deploy templates; add one under spec.deployTemplates")]
    Empty { image: String },
}

/// Index of the template to use for `role`, optionally narrowed to templates named `name`.
///
/// Kuscia's rules: the first template whose role list holds `role`; else the last template
/// with an empty role; else, when `role` is empty, the first template; else an error.
pub fn select(image: &AppImage, role: &str, name: Option<&str>) -> Result<usize, SelectionError> {
    let all = &image.spec.deploy_templates;
    let candidates: Vec<(usize, &DeployTemplate)> = all
        .iter()
        .enumerate()
        .filter(|(_, t)| name.is_none_or(|n| t.name == n))
        .collect();
    if all.is_empty() {
        return Err(SelectionError::Empty {
            image: image.name().into(),
        });
    }
    if candidates.is_empty() {
        return Err(SelectionError::NoSuchName {
            image: image.name().into(),
            name: name.unwrap_or_default().into(),
            available: naming::list(all.iter().map(|t| t.name.as_str())),
        });
    }
    let role = role.trim();
    if !role.is_empty()
        && let Some((i, _)) = candidates.iter().find(|(_, t)| t.roles().contains(&role))
    {
        return Ok(*i);
    }
    if let Some((i, _)) = candidates.iter().rev().find(|(_, t)| t.roles().is_empty()) {
        return Ok(*i);
    }
    if role.is_empty() {
        return Ok(candidates[0].0);
    }
    Err(SelectionError::NoTemplateForRole {
        image: image.name().into(),
        role: role.into(),
        available: naming::list(candidates.iter().flat_map(|(_, t)| t.roles())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{AppImageSpec, ImageInfo, PodSpec};

    fn image(templates: &[(&str, Option<&str>)]) -> AppImage {
        AppImage::new(
            "img",
            AppImageSpec {
                config_templates: Default::default(),
                deploy_templates: templates
                    .iter()
                    .map(|(n, r)| DeployTemplate {
                        name: n.to_string(),
                        role: r.map(str::to_string),
                        replicas: None,
                        network_policy: None,
                        spec: PodSpec {
                            restart_policy: Default::default(),
                            containers: vec![],
                            affinity: None,
                        },
                    })
                    .collect(),
                image: ImageInfo::default(),
            },
        )
    }

    #[test]
    fn first_template_listing_the_role_wins() {
        let img = image(&[
            ("a", Some("guest")),
            ("b", Some("host, guest")),
            ("c", Some("host")),
        ]);
        assert_eq!(select(&img, "host", None), Ok(1));
        assert_eq!(select(&img, "guest", None), Ok(0));
    }

    #[test]
    fn else_the_last_template_without_role() {
        let img = image(&[
            ("a", None),
            ("b", Some("host")),
            ("c", Some("")),
            ("d", Some("x")),
        ]);
        assert_eq!(select(&img, "guest", None), Ok(2));
        assert_eq!(select(&img, "", None), Ok(2));
    }

    #[test]
    fn else_the_first_when_no_role_was_asked() {
        let img = image(&[("a", Some("host")), ("b", Some("guest"))]);
        assert_eq!(select(&img, "", None), Ok(0));
        let err = select(&img, "server", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AppImage \"img\" has no deploy template for role \"server\" and none without a role (roles it serves: host, guest); use one of those roles or add a template with an empty role"
        );
    }

    #[test]
    fn a_name_narrows_the_choice() {
        let img = image(&[
            ("app", Some("server")),
            ("app", Some("client")),
            ("x", None),
        ]);
        assert_eq!(select(&img, "client", Some("app")), Ok(1));
        assert_eq!(select(&img, "client", None), Ok(1));
        assert_eq!(select(&img, "other", None), Ok(2));
        assert!(matches!(
            select(&img, "client", Some("nope")),
            Err(SelectionError::NoSuchName { .. })
        ));
        assert!(matches!(
            select(&image(&[]), "", None),
            Err(SelectionError::Empty { .. })
        ));
    }
}
