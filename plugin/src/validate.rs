//! `validate -f`: schema, cross-references and config templates, offline.

use crate::flags::Files;
use anyhow::{Result, bail};
use appimage::validation;
use clap::Args;

use crate::error::{eprint_line, reported};
use crate::input;
use crate::output::println;

#[derive(Args, Debug, Clone)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub files: Files,
}

/// `validate -f`: every document is checked; exit 1 if any is broken.
pub fn run(args: &ValidateArgs) -> Result<()> {
    let sources = input::read_sources(&args.files.filename)?;
    let (images, errors) = input::parse(&sources);
    let mut ok = errors.is_empty();
    for e in &errors {
        eprint_line(&format!("error: {e}"));
    }
    if images.is_empty() && errors.is_empty() {
        bail!(
            "no AppImage found in {}; the files hold no documents",
            args.files.filename.join(", ")
        );
    }
    for loaded in &images {
        // Accepted, as Kuscia accepts them, but render and admission leave these out.
        for warning in validation::warnings(&loaded.image) {
            let name = input::display_name(loaded);
            eprint_line(&format!("Warning: appimage {name:?}: {warning}"));
        }
        let problems = validation::validate(&loaded.image);
        if problems.is_empty() {
            println(&format!(
                "appimage {:?} is valid",
                input::display_name(loaded)
            ))?;
        } else {
            eprint_line(&input::invalid_report(loaded, &problems));
            ok = false;
        }
    }
    if ok { Ok(()) } else { Err(reported()) }
}
