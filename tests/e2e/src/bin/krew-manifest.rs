//! `krew-manifest [--template FILE] ARCHIVE URI OUT`: the hash step of scripts/release.sh.
//!
//! Hashes a plugin archive named `kubectl-appimage-<os>-<arch>.tar.gz` with SHA-256 and writes
//! to OUT a copy of the krew manifest template (default: krew/appimage.yaml of this repository)
//! in which the platform selecting `os`/`arch` gets URI and the archive's sha256; the other
//! platforms are kept as they are. The edit is done on the text, so comments and layout of the
//! template survive; the result is then parsed back and checked. Prints `<sha256>  <ARCHIVE>`.
//!
//! To build a manifest covering several archives, run it once per archive, passing the previous
//! OUT as the next `--template` (see krew/README.md).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

const USAGE: &str = "usage: krew-manifest [--template FILE] ARCHIVE URI OUT";
const PREFIX: &str = "kubectl-appimage-";
const SUFFIX: &str = ".tar.gz";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("krew-manifest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut template = None;
    let mut positional = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--template" => template = Some(PathBuf::from(it.next().ok_or(USAGE)?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ if arg.starts_with("--template=") => {
                template = Some(PathBuf::from(&arg["--template=".len()..]))
            }
            _ => positional.push(arg),
        }
    }
    let [archive, uri, out] = <[String; 3]>::try_from(positional).map_err(|_| USAGE)?;
    let archive = PathBuf::from(archive);
    let template = template
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../krew/appimage.yaml"));

    let (os, arch) = platform_of(&archive)?;
    let sha256 =
        sha256_file(&archive).map_err(|e| format!("cannot hash {}: {e}", archive.display()))?;
    let text = std::fs::read_to_string(&template)
        .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
    let manifest = fill_platform(&text, &os, &arch, &uri, &sha256)?;
    check_manifest(&manifest, &os, &arch, &uri, &sha256)?;
    let out = Path::new(&out);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(out, manifest).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("{sha256}  {}", archive.display());
    Ok(())
}

/// `(os, arch)` from `kubectl-appimage-<os>-<arch>.tar.gz`.
fn platform_of(archive: &Path) -> Result<(String, String), String> {
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("bad archive path {}", archive.display()))?;
    let platform = name
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .ok_or_else(|| format!("archive {name:?} is not named {PREFIX}<os>-<arch>{SUFFIX}"))?;
    let (os, arch) = platform
        .split_once('-')
        .ok_or_else(|| format!("archive {name:?} is not named {PREFIX}<os>-<arch>{SUFFIX}"))?;
    if !matches!(os, "linux" | "darwin") || !matches!(arch, "amd64" | "arm64") {
        return Err(format!("unsupported platform {os}/{arch} in {name:?}"));
    }
    Ok((os.to_string(), arch.to_string()))
}

/// Lowercase hex SHA-256 of a file's bytes.
fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Replace the `uri:` and `sha256:` values of the one platform block whose selector has
/// `os: <os>` and `arch: <arch>`. Platform blocks are the `- selector:` items.
fn fill_platform(
    text: &str,
    os: &str,
    arch: &str,
    uri: &str,
    sha256: &str,
) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim_start() == "- selector:")
        .collect();
    let mut matching = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let block = &lines[start..end];
        let has = |key: &str, value: &str| {
            block.iter().any(|l| {
                l.trim()
                    .strip_prefix(key)
                    .and_then(|v| v.strip_prefix(':'))
                    .map(unquote)
                    == Some(value.to_string())
            })
        };
        if has("os", os) && has("arch", arch) {
            matching.push((start, end));
        }
    }
    let (start, end) = match matching.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "the template has no platform for os={os} arch={arch}"
            ));
        }
        _ => {
            return Err(format!(
                "the template has several platforms for os={os} arch={arch}"
            ));
        }
    };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let (mut uri_done, mut sha_done) = (false, false);
    for line in &mut out[start..end] {
        let indent = &line[..line.len() - line.trim_start().len()];
        if line.trim_start().starts_with("uri:") {
            *line = format!("{indent}uri: {uri}");
            uri_done = true;
        } else if line.trim_start().starts_with("sha256:") {
            *line = format!("{indent}sha256: \"{sha256}\"");
            sha_done = true;
        }
    }
    if !uri_done || !sha_done {
        return Err(format!(
            "the platform os={os} arch={arch} has no uri: or sha256: line"
        ));
    }
    let mut result = out.join("\n");
    result.push('\n');
    Ok(result)
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').trim_matches('\'').to_string()
}

/// Parse the written manifest back and check the platform holds what was asked.
fn check_manifest(text: &str, os: &str, arch: &str, uri: &str, sha256: &str) -> Result<(), String> {
    let doc: Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("the manifest is not YAML: {e}"))?;
    let platforms = doc["spec"]["platforms"]
        .as_sequence()
        .ok_or("the manifest has no spec.platforms")?;
    let found = platforms.iter().find(|p| {
        let labels = &p["selector"]["matchLabels"];
        labels["os"].as_str() == Some(os) && labels["arch"].as_str() == Some(arch)
    });
    let p = found.ok_or_else(|| format!("no platform os={os} arch={arch} after the edit"))?;
    if p["uri"].as_str() != Some(uri) || p["sha256"].as_str() != Some(sha256) {
        return Err(format!(
            "the edit of platform os={os} arch={arch} did not take"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_from_archive_name() {
        assert_eq!(
            platform_of(Path::new("/x/kubectl-appimage-darwin-arm64.tar.gz")).unwrap(),
            ("darwin".into(), "arm64".into())
        );
        assert!(platform_of(Path::new("kubectl-appimage-windows-amd64.tar.gz")).is_err());
        assert!(platform_of(Path::new("other.tar.gz")).is_err());
    }

    #[test]
    fn fills_only_the_matching_platform() {
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../krew/appimage.yaml"),
        )
        .unwrap();
        let sha = "ab".repeat(32);
        let out = fill_platform(
            &template,
            "linux",
            "arm64",
            "https://example.invalid/a.tgz",
            &sha,
        )
        .unwrap();
        check_manifest(
            &out,
            "linux",
            "arm64",
            "https://example.invalid/a.tgz",
            &sha,
        )
        .unwrap();
        assert_eq!(out.matches(&sha).count(), 1);
        // Comments and the other platforms are kept.
        assert!(out.starts_with("# krew plugin manifest"));
        assert_eq!(out.matches("sha256: \"0000").count(), 3);
    }
}
