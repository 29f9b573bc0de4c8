//! `get [NAME...]`: a table, names, or the objects as YAML or JSON.

use anyhow::Result;

use crate::cli::{GetArgs, GetOutput, Global};
use crate::client::{Cluster, block_on};
use crate::error::{eprint_line, reported};
use crate::output::{self, object_name, print, println};

pub fn run(global: &Global, args: &GetArgs) -> Result<()> {
    let (images, failed) = block_on(async {
        let cluster = Cluster::connect(global).await?;
        cluster.fetch(&args.names).await
    })?;
    // A single name prints the object itself; a listing is always a List, as in kubectl.
    let always_list = args.names.len() != 1;
    match args.output {
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
