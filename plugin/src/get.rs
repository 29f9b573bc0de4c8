//! `get [NAME...]`: a table, names, or the objects as YAML or JSON; listings can be filtered
//! by label selector or a search, read in pages, and sorted.

use clap::Args;
use clap::ValueEnum;
use std::cmp::Ordering;

use anyhow::{Result, bail};
use appimage::resource::AppImage;
use appimage::search::{self, SortKey};
use serde_json::Value;

use crate::client::{Cluster, block_on};
use crate::error::{eprint_line, reported};
use crate::flags::Global;
use crate::output::{self, object_name, print, println};
use crate::printer::{Output, output_parser};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetOutput {
    Yaml,
    Json,
    Name,
    Wide,
}

/// `get --sort`: the simple orders.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    /// By name
    Name,
    /// By age, oldest first (as --sort-by=.metadata.creationTimestamp)
    Age,
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// AppImage names; all when none are given
    #[arg(value_name = "NAME", conflicts_with_all = ["selector", "search"])]
    pub names: Vec<String>,
    /// Only AppImages whose labels match this selector, e.g. -l team=a,stage!=draft
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only AppImages whose name, image or roles contain TEXT (any case), best match first
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// List in pages of N AppImages through the API's limit and continue; 0 lists in one request
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub chunk_size: u32,
    /// Sort by name, or by age (oldest first); without it a search lists the best match first
    #[arg(long, value_enum, value_name = "ORDER", conflicts_with = "sort_by")]
    pub sort: Option<SortOrder>,
    /// Sort by a field, as kubectl: a JSONPath such as .metadata.creationTimestamp or {.spec.image.tag}
    #[arg(long, value_name = "JSONPATH")]
    pub sort_by: Option<String>,
    /// yaml, json, name, wide (adds TEMPLATES and IMAGE-ID), jsonpath=TEMPLATE,
    /// custom-columns=SPEC or go-template=TEMPLATE
    #[arg(short = 'o', long = "output", value_parser = output_parser::<GetOutput>(), value_name = "FORMAT")]
    pub output: Option<Output<GetOutput>>,
    /// Leave out the table's header line
    #[arg(long)]
    pub no_headers: bool,
}

pub fn run(global: &Global, args: &GetArgs) -> Result<()> {
    // Flags are checked before anything is sent.
    let search_text = match args.search.as_deref().map(str::trim) {
        Some("") => bail!(
            "--search needs some text to look for in names, images and roles; leave --search out to list every AppImage"
        ),
        other => other,
    };
    let sort_by = args.sort_by.as_deref().map(FieldPath::parse).transpose()?;
    let (mut images, failed) = block_on(async {
        let cluster = Cluster::connect(global).await?;
        if args.names.is_empty() {
            let selector = args.selector.as_deref();
            Ok((
                cluster.list_matching(selector, args.chunk_size).await?,
                false,
            ))
        } else {
            cluster.fetch(&args.names).await
        }
    })?;
    if let Some(text) = search_text {
        images = search::search(images, text);
    }
    match args.sort {
        Some(SortOrder::Name) => search::sort(&mut images, SortKey::Name),
        Some(SortOrder::Age) => search::sort(&mut images, SortKey::Age),
        None => {}
    }
    if let Some(path) = &sort_by {
        sort_by_path(&mut images, path)?;
    }
    // A single name prints the object itself; a listing is always a List, as in kubectl.
    let always_list = args.names.len() != 1;
    let format = match &args.output {
        Some(Output::Template(template)) => {
            let doc = output::objects(&images, always_list)?;
            return print(&template.render(&doc, !args.no_headers)?).and(if failed {
                Err(reported())
            } else {
                Ok(())
            });
        }
        Some(Output::Format(format)) => Some(*format),
        None => None,
    };
    match format {
        Some(format @ (GetOutput::Yaml | GetOutput::Json)) => {
            // An empty listing is an empty List; names that all failed print nothing.
            if !images.is_empty() || args.names.is_empty() {
                let doc = output::objects(&images, always_list)?;
                print(&if format == GetOutput::Json {
                    output::to_json(&doc)?
                } else {
                    output::to_yaml(&doc)?
                })?;
            }
        }
        _ if images.is_empty() => {
            if !failed {
                eprint_line("No resources found");
            }
        }
        Some(GetOutput::Name) => {
            for image in &images {
                println(&object_name(image.name()))?;
            }
        }
        format => print(&output::appimage_table(
            &images,
            format == Some(GetOutput::Wide),
            !args.no_headers,
            output::now(),
        ))?,
    }
    if failed { Err(reported()) } else { Ok(()) }
}

/// A field path as kubectl's `--sort-by` takes it: `.a.b[0].c`, with or without `{}`.
#[derive(Debug, PartialEq, Eq)]
struct FieldPath {
    text: String,
    steps: Vec<Step>,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

impl FieldPath {
    fn parse(text: &str) -> Result<FieldPath> {
        let bad = || {
            anyhow::anyhow!(
                "--sort-by {text:?} is not a field path; write one like .metadata.creationTimestamp or {{.spec.image.tag}} (filters and wildcards are not supported)"
            )
        };
        let inner = text.trim();
        let inner = inner
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(inner);
        let rest = inner.strip_prefix('.').ok_or_else(bad)?;
        let mut steps = Vec::new();
        for part in rest.split('.') {
            let (field, indexes) = part.split_once('[').map_or((part, ""), |(f, i)| (f, i));
            let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            if field.is_empty() || !field.chars().all(plain) {
                return Err(bad());
            }
            steps.push(Step::Field(field.to_string()));
            if !indexes.is_empty() {
                for index in format!("[{indexes}").split('[').skip(1) {
                    let n = index.strip_suffix(']').and_then(|n| n.parse().ok());
                    steps.push(Step::Index(n.ok_or_else(bad)?));
                }
            }
        }
        Ok(FieldPath {
            text: text.to_string(),
            steps,
        })
    }

    fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.steps.iter().try_fold(value, |v, step| match step {
            Step::Field(name) => v.get(name),
            Step::Index(i) => v.get(i),
        })
    }
}

/// Sort by the field's value (numbers as numbers, else as text), stably; an object without
/// the field comes first. A field that no object has is an error, as in kubectl.
fn sort_by_path(images: &mut Vec<AppImage>, path: &FieldPath) -> Result<()> {
    let mut keyed: Vec<(Option<Value>, AppImage)> = Vec::with_capacity(images.len());
    for image in images.drain(..) {
        let value = serde_json::to_value(&image)?;
        keyed.push((path.get(&value).cloned(), image));
    }
    if !keyed.is_empty() && keyed.iter().all(|(v, _)| v.is_none()) {
        bail!(
            "couldn't find any field with path {:?} in the list of objects; check the path against `kubectl appimage get -o yaml`",
            path.text
        );
    }
    keyed.sort_by(|(a, _), (b, _)| compare_values(a.as_ref(), b.as_ref()));
    images.extend(keyed.into_iter().map(|(_, image)| image));
    Ok(())
}

fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.total_cmp(&y)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_as_kubectl_writes_them() {
        let p = FieldPath::parse("{.spec.deployTemplates[0].name}").unwrap();
        assert_eq!(
            p.steps,
            [
                Step::Field("spec".into()),
                Step::Field("deployTemplates".into()),
                Step::Index(0),
                Step::Field("name".into())
            ]
        );
        let v = serde_json::json!({"spec": {"deployTemplates": [{"name": "t"}]}});
        assert_eq!(p.get(&v), Some(&Value::from("t")));
        for bad in [
            "metadata.name",
            ".a..b",
            ".a[x]",
            "{.items[*].x}",
            ".a[?(@.x)]",
        ] {
            let err = FieldPath::parse(bad).unwrap_err().to_string();
            assert!(err.contains("not a field path"), "{bad}: {err}");
        }
    }

    #[test]
    fn values_compare_as_numbers_or_text_and_missing_first() {
        let (two, ten) = (Value::from(2), Value::from(10));
        assert_eq!(compare_values(Some(&two), Some(&ten)), Ordering::Less);
        let (a, b) = (Value::from("10"), Value::from("2"));
        assert_eq!(compare_values(Some(&a), Some(&b)), Ordering::Less);
        assert_eq!(compare_values(None, Some(&a)), Ordering::Less);
    }
}
