//! `-f`: files, directories and stdin, read into AppImages that are checked before use.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use appimage::manifest::{self, ManifestError};
use appimage::resource::AppImage;
use appimage::validation::{self, FieldError};

use crate::error::{eprint_line, reported};

/// The text of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// As the user wrote it (or the directory entry), for messages.
    pub name: String,
    pub text: String,
    /// Found in a directory given with `-f`: its documents that are not AppImages are skipped
    /// (with a note), as a directory may hold other manifests; a file named itself must be one.
    pub from_dir: bool,
}

/// An AppImage and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub source: String,
    pub document: usize,
    pub image: AppImage,
}

impl Loaded {
    pub fn name(&self) -> &str {
        self.image.name()
    }
}

/// Read every `-f` argument: a file, a directory (not recursive) or `-` for stdin.
pub fn read_sources(args: &[String]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let mut stdin_used = false;
    for arg in args {
        if arg == "-" {
            if stdin_used {
                bail!("-f - is given twice; stdin can be read only once");
            }
            stdin_used = true;
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the manifest from stdin (is it UTF-8 text?)")?;
            out.push(Source {
                name: "STDIN".into(),
                text,
                from_dir: false,
            });
            continue;
        }
        let path = Path::new(arg);
        if !path.exists() {
            bail!("the path {arg:?} does not exist");
        }
        if path.is_dir() {
            let files = manifest_files(path)?;
            if files.is_empty() {
                bail!("directory {arg:?} holds no *.yaml, *.yml or *.json file");
            }
            for file in files {
                let name = file.display().to_string();
                out.push(Source {
                    text: read(&file, &name)?,
                    name,
                    from_dir: true,
                });
            }
        } else {
            out.push(Source {
                name: arg.clone(),
                text: read(path, arg)?,
                from_dir: false,
            });
        }
    }
    Ok(out)
}

fn read(path: &Path, name: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {name:?} (is it a readable UTF-8 text file?)"))
}

/// The manifest files directly in `dir`, sorted by name.
fn manifest_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list directory {dir:?}"))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list directory {dir:?}"))?
            .path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Decode each document on its own, so one bad document does not hide the others.
pub fn parse(sources: &[Source]) -> (Vec<Loaded>, Vec<ManifestError>) {
    let mut images = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        let docs = match manifest::documents(&source.name, &source.text) {
            Ok(docs) => docs,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for doc in &docs {
            if source.from_dir && !is_appimage(&doc.value) {
                eprint_line(&format!(
                    "Skipped {}, document {}: {}, not an AppImage",
                    source.name,
                    doc.index,
                    kind_of(&doc.value)
                ));
                continue;
            }
            match manifest::appimage(&source.name, doc) {
                Ok(image) => images.push(Loaded {
                    source: source.name.clone(),
                    document: doc.index,
                    image,
                }),
                Err(e) => errors.push(e),
            }
        }
    }
    (images, errors)
}

/// Whether a document says it is an AppImage (its apiVersion group or its kind).
fn is_appimage(doc: &serde_json::Value) -> bool {
    let group = doc["apiVersion"].as_str().unwrap_or_default();
    doc["kind"] == "AppImage" || group.starts_with("kuscia.secretflow/")
}

fn kind_of(doc: &serde_json::Value) -> String {
    match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
        (Some(v), Some(k)) => format!("{v} {k}"),
        (None, Some(k)) => format!("kind {k}"),
        _ => "no apiVersion or kind".into(),
    }
}

/// Read and decode `args`; print every manifest problem and fail if there was one.
pub fn load(args: &[String]) -> Result<Vec<Loaded>> {
    load_sources(&read_sources(args)?, args)
}

/// [`load`] for sources already read from `args`.
pub fn load_sources(sources: &[Source], args: &[String]) -> Result<Vec<Loaded>> {
    let (images, errors) = parse(sources);
    if !errors.is_empty() {
        for e in &errors {
            eprint_line(&format!("error: {e}"));
        }
        return Err(reported());
    }
    if images.is_empty() {
        bail!(
            "no AppImage found in {}; the files hold no documents",
            args.join(", ")
        );
    }
    Ok(images)
}

/// What `validate` says about an invalid AppImage (one line per field error).
pub fn invalid_report(loaded: &Loaded, errors: &[FieldError]) -> String {
    let mut text = format!(
        "error: {}: appimage {:?} is invalid:",
        loaded.source,
        display_name(loaded)
    );
    for e in errors {
        text.push_str(&format!("\n  * {}: {}", e.path, e.message));
    }
    text
}

/// The AppImage's name, or its place in the file when it has none.
pub fn display_name(loaded: &Loaded) -> String {
    match loaded.name() {
        "" => format!("(unnamed, document {})", loaded.document),
        name => name.to_string(),
    }
}

/// Validate every AppImage; print each invalid one. True when all are valid.
pub fn check_all(images: &[Loaded]) -> bool {
    let mut ok = true;
    for loaded in images {
        let errors = validation::validate(&loaded.image);
        if !errors.is_empty() {
            eprint_line(&invalid_report(loaded, &errors));
            ok = false;
        }
    }
    ok
}

/// [`load`] then [`check_all`]: what every write does before it sends anything.
pub fn load_valid(args: &[String]) -> Result<Vec<Loaded>> {
    let images = load(args)?;
    if !check_all(&images) {
        return Err(reported());
    }
    Ok(images)
}

/// The AppImage named `name`, or the only one; `command` is named in the hint for several.
pub fn pick_for(
    images: Vec<Loaded>,
    name: Option<&str>,
    files: &[String],
    command: &str,
) -> Result<AppImage> {
    let names: Vec<&str> = images.iter().map(Loaded::name).collect();
    let shown = files.join(", ");
    if let Some(name) = name {
        return match images.iter().find(|l| l.name() == name) {
            Some(l) => Ok(l.image.clone()),
            None => bail!(
                "{shown} holds no AppImage named {name:?} (it has: {}); pass one of those names",
                names.join(", ")
            ),
        };
    }
    if let [only] = images.as_slice() {
        return Ok(only.image.clone());
    }
    bail!(
        "{shown} holds {} AppImages ({}); name the one to use: kubectl appimage {command} NAME -f {shown}",
        images.len(),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "apiVersion: kuscia.secretflow/v1alpha1\nkind: AppImage\nmetadata:\n  name: NAME\nspec:\n  image: {name: x, tag: v1}\n  deployTemplates:\n  - name: t\n    spec:\n      containers:\n      - name: c\n";

    fn source(name: &str, text: &str) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
            from_dir: false,
        }
    }

    #[test]
    fn a_directory_s_other_manifests_are_skipped_a_named_file_s_are_not() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n";
        let fragment = "spec:\n  tolerations: []\n";
        let bad_kind =
            "apiVersion: kuscia.secretflow/v1alpha1\nkind: AppImag\nmetadata: {name: x}\n";
        let mut in_dir: Vec<Source> =
            [("d/a.yaml", ONE), ("d/p.yaml", pod), ("d/f.yaml", fragment)]
                .iter()
                .map(|(n, t)| Source {
                    from_dir: true,
                    ..source(n, t)
                })
                .collect();
        let (images, errors) = parse(&in_dir);
        assert_eq!((images.len(), errors.len()), (1, 0), "{errors:?}");
        // Something that says it is ours but is broken is still an error.
        in_dir.push(Source {
            from_dir: true,
            ..source("d/k.yaml", bad_kind)
        });
        let (_, errors) = parse(&in_dir);
        assert_eq!(errors.len(), 1, "{errors:?}");
        // A file named on the command line must be an AppImage.
        let (images, errors) = parse(&[source("p.yaml", pod)]);
        assert_eq!((images.len(), errors.len()), (0, 1));
    }

    #[test]
    fn every_document_is_decoded_on_its_own() {
        let text = format!(
            "{}---\napiVersion: v1\nkind: Pod\n---\n{}",
            ONE.replace("NAME", "a"),
            ONE.replace("NAME", "b")
        );
        let (images, errors) = parse(&[source("f.yaml", &text)]);
        let names: Vec<&str> = images.iter().map(Loaded::name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(images[1].document, 3);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().starts_with("f.yaml, document 2: "),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_directory_gives_its_manifests_sorted() {
        let dir =
            std::env::temp_dir().join(format!("kubectl-appimage-input-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for (file, name) in [
            ("b.yml", "b"),
            ("a.yaml", "a"),
            ("c.json", "c"),
            ("d.txt", "d"),
        ] {
            std::fs::write(dir.join(file), ONE.replace("NAME", name)).unwrap();
        }
        std::fs::write(dir.join("sub").join("e.yaml"), ONE.replace("NAME", "e")).unwrap();
        let sources = read_sources(&[dir.display().to_string()]).unwrap();
        let files: Vec<String> = sources
            .iter()
            .map(|s| {
                Path::new(&s.name)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(files, ["a.yaml", "b.yml", "c.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_path_is_named_as_kubectl_does() {
        let err = read_sources(&["no-such.yaml".into()]).unwrap_err();
        assert_eq!(err.to_string(), "the path \"no-such.yaml\" does not exist");
    }

    #[test]
    fn the_invalid_report_lists_each_field() {
        let (images, _) = parse(&[source("f.yaml", &ONE.replace("NAME", "a"))]);
        let errs = vec![FieldError {
            path: "spec.x".into(),
            message: "is wrong".into(),
        }];
        assert_eq!(
            invalid_report(&images[0], &errs),
            "error: f.yaml: appimage \"a\" is invalid:\n  * spec.x: is wrong"
        );
    }
}
