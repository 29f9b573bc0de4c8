//! Finding AppImages: a case-insensitive search over name, image and roles, ranked best match
//! first, and the simple sort orders of `kubectl appimage get`.

use std::cmp::Ordering;

use crate::resource::AppImage;

/// How well an AppImage matches a search; a smaller rank is a better match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// The whole name.
    Name,
    /// The name starts with the text.
    NamePrefix,
    /// The name holds the text; earlier is better.
    NameContains(usize),
    /// The image reference (`name:tag`, or its id) holds the text.
    Image,
    /// A deploy template's role holds the text.
    Role,
}

/// The rank of `image` for `text` (any case), or `None` when nothing matches. An empty text
/// matches nothing: a search never silently means "everything".
pub fn rank(image: &AppImage, text: &str) -> Option<Rank> {
    let needle = text.trim().to_lowercase();
    if needle.is_empty() {
        return None;
    }
    let name = image.name().to_lowercase();
    if name == needle {
        return Some(Rank::Name);
    }
    if name.starts_with(&needle) {
        return Some(Rank::NamePrefix);
    }
    if let Some(at) = name.find(&needle) {
        return Some(Rank::NameContains(at));
    }
    let info = &image.spec.image;
    let reference = format!("{}:{}", info.name, info.tag).to_lowercase();
    let id = info.id.as_deref().unwrap_or_default().to_lowercase();
    if reference.contains(&needle) || id.contains(&needle) {
        return Some(Rank::Image);
    }
    let role_matches = image.spec.deploy_templates.iter().any(|t| {
        t.role
            .as_deref()
            .is_some_and(|r| r.to_lowercase().contains(&needle))
    });
    role_matches.then_some(Rank::Role)
}

/// The AppImages that match `text`, best match first, then by name.
pub fn search(images: Vec<AppImage>, text: &str) -> Vec<AppImage> {
    let mut ranked: Vec<(Rank, AppImage)> = images
        .into_iter()
        .filter_map(|image| rank(&image, text).map(|r| (r, image)))
        .collect();
    ranked.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.name().cmp(b.name())));
    ranked.into_iter().map(|(_, image)| image).collect()
}

/// `--sort`: by name, or by age (oldest first, as kubectl's
/// `--sort-by=.metadata.creationTimestamp`; equal times by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Age,
}

/// Sort in place; stable, so an earlier order (a search's ranking) breaks no ties it need not.
pub fn sort(images: &mut [AppImage], key: SortKey) {
    images.sort_by(|a, b| compare(a, b, key));
}

fn compare(a: &AppImage, b: &AppImage, key: SortKey) -> Ordering {
    match key {
        SortKey::Name => a.name().cmp(b.name()),
        SortKey::Age => {
            let created = |i: &AppImage| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| a.name().cmp(b.name()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(name: &str, image: &str, roles: &[&str], created: i64) -> AppImage {
        let (repo, tag) = image.split_once(':').unwrap();
        let templates: Vec<_> = roles
            .iter()
            .map(|r| json!({"name": format!("t-{r}"), "role": r, "spec": {"containers": []}}))
            .collect();
        let created = k8s_openapi::jiff::Timestamp::from_second(created).unwrap();
        serde_json::from_value(json!({
            "apiVersion": "kuscia.secretflow/v1alpha1",
            "kind": "AppImage",
            "metadata": {"name": name, "creationTimestamp": created.to_string()},
            "spec": {"image": {"name": repo, "tag": tag}, "deployTemplates": templates}
        }))
        .unwrap()
    }

    fn names(images: &[AppImage]) -> Vec<&str> {
        images.iter().map(AppImage::name).collect()
    }

    #[test]
    fn ranks_name_then_image_then_role_in_any_case() {
        let all = vec![
            image("psi-role", "busybox:1", &["SecretFlow"], 5),
            image("zeta", "secretflow/lite:1.0", &[], 4),
            image("my-secretflow", "busybox:1", &[], 3),
            image("secretflow-image", "busybox:1", &[], 2),
            image("secretflow", "busybox:1", &[], 1),
            image("other", "busybox:1", &["server"], 0),
        ];
        let found = search(all, "SecretFlow");
        assert_eq!(
            names(&found),
            [
                "secretflow",
                "secretflow-image",
                "my-secretflow",
                "zeta",
                "psi-role"
            ]
        );
    }

    #[test]
    fn an_empty_search_matches_nothing() {
        let all = vec![image("a", "x:1", &[], 0)];
        assert!(search(all, "  ").is_empty());
    }

    #[test]
    fn sorts_by_name_or_age() {
        let mut all = vec![
            image("b", "x:1", &[], 1),
            image("c", "x:1", &[], 0),
            image("a", "x:1", &[], 2),
        ];
        sort(&mut all, SortKey::Name);
        assert_eq!(names(&all), ["a", "b", "c"]);
        sort(&mut all, SortKey::Age);
        assert_eq!(names(&all), ["c", "b", "a"]);
    }
}
