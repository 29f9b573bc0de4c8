//! `kubectl appimage __complete -- WORDS… PARTIAL` (hidden): the answer kubectl 1.26+ wants from
//! `kubectl_complete-appimage` for `kubectl appimage <TAB>`, in cobra's `__complete` format:
//! one candidate a line (`value<TAB>description`), then `:DIRECTIVE`. Subcommands, flags and
//! flag values come from the clap definition itself, so they never drift from `--help`; the
//! names of AppImages come from the cluster when one answers quickly.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Arg, Command, CommandFactory, ValueHint};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::flags::Global;
use crate::output::print;

/// cobra's ShellCompDirective values.
const DEFAULT: u32 = 0;
const NO_FILE: u32 = 4;

/// Subcommands whose first positional argument names an AppImage in the cluster.
const TAKES_APPIMAGE: &[&str] = &[
    "get",
    "describe",
    "delete",
    "render",
    "deploy",
    "history",
    "diff",
    "rollback",
    "rollout",
    "status",
    "set-image",
    "publish",
    "deprecate",
    "draft",
    "payload",
    "verify",
];

/// What the words typed so far leave to complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    /// A subcommand or a positional argument of the command at this path.
    Word(Vec<String>),
    /// A flag of the command at this path.
    Flag(Vec<String>),
    /// The value of this flag (its long name) of the command at this path.
    Value(Vec<String>, String),
}

pub fn run(words: &[String]) -> Result<()> {
    let (done, partial) = match words.split_last() {
        Some((last, done)) => (done, last.as_str()),
        None => (&[][..], ""),
    };
    let (want, global) = walk(done, partial);
    let (mut lines, directive) = candidates(&want, partial);
    if directive == NO_FILE
        && let Want::Word(path) = &want
        && path.len() == 1
        && TAKES_APPIMAGE.contains(&path[0].as_str())
    {
        lines.extend(appimage_names(&global, partial));
    }
    lines.push(format!(":{directive}"));
    print(&lines.iter().map(|l| format!("{l}\n")).collect::<String>())
}

/// The root command with the global flags propagated to every subcommand.
fn root() -> Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

fn find_sub<'a>(cmd: &'a Command, word: &str) -> Option<&'a Command> {
    cmd.get_subcommands()
        .find(|s| s.get_name() == word || s.get_all_aliases().any(|a| a == word))
}

fn find_flag<'a>(cmd: &'a Command, word: &str) -> Option<&'a Arg> {
    let name = word.split_once('=').map_or(word, |(n, _)| n);
    cmd.get_arguments().find(|a| match name.strip_prefix("--") {
        Some(long) => a.get_long() == Some(long),
        None => {
            let mut chars = name.chars().skip(1);
            name.starts_with('-') && a.get_short() == chars.next() && chars.next().is_none()
        }
    })
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_action().takes_values() && arg.get_num_args().is_none_or(|n| n.min_values() > 0)
}

/// Follow the words through subcommands and flags; also the connection flags they give.
pub fn walk(done: &[String], partial: &str) -> (Want, Global) {
    let root = root();
    let mut cmd = &root;
    let mut path = Vec::new();
    let mut global = Global::default();
    let mut words = done.iter();
    while let Some(word) = words.next() {
        if word.starts_with('-') && word.len() > 1 {
            let Some(arg) = find_flag(cmd, word) else {
                continue;
            };
            if !takes_value(arg) {
                continue;
            }
            let value = match word.split_once('=') {
                Some((_, v)) => v.to_string(),
                None => match words.next() {
                    Some(v) => v.clone(),
                    None => {
                        let long = arg.get_long().unwrap_or_default().to_string();
                        return (Want::Value(path, long), global);
                    }
                },
            };
            match arg.get_id().as_str() {
                "kubeconfig" => global.kubeconfig = Some(value.into()),
                "context" => global.context = Some(value),
                _ => {}
            }
        } else if let Some(sub) = find_sub(cmd, word) {
            path.push(sub.get_name().to_string());
            cmd = sub;
        }
    }
    if partial.starts_with('-') {
        return (Want::Flag(path), global);
    }
    (Want::Word(path), global)
}

fn at<'a>(root: &'a Command, path: &[String]) -> &'a Command {
    path.iter()
        .fold(root, |cmd, name| find_sub(cmd, name).unwrap_or(cmd))
}

fn line(value: &str, help: Option<String>) -> String {
    match help {
        Some(h) if !h.is_empty() => format!("{value}\t{}", h.lines().next().unwrap_or_default()),
        _ => value.to_string(),
    }
}

/// The candidates that start with `partial`, and the directive for the shell.
pub fn candidates(want: &Want, partial: &str) -> (Vec<String>, u32) {
    let root = root();
    match want {
        Want::Word(path) => {
            let cmd = at(&root, path);
            let subs = cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
                .filter(|s| s.get_name().starts_with(partial))
                .map(|s| line(s.get_name(), s.get_about().map(|a| a.to_string())));
            // A positional with fixed values (`completion SHELL`) offers them.
            let fixed = cmd
                .get_positionals()
                .flat_map(|a| a.get_possible_values())
                .filter(|v| !v.is_hide_set() && v.get_name().starts_with(partial))
                .map(|v| line(v.get_name(), v.get_help().map(|h| h.to_string())));
            (subs.chain(fixed).collect(), NO_FILE)
        }
        Want::Flag(path) => {
            let flags = at(&root, path)
                .get_arguments()
                .filter(|a| !a.is_hide_set())
                .filter_map(|a| Some((a.get_long()?, a)))
                .map(|(long, a)| (format!("--{long}"), a))
                .filter(|(flag, _)| flag.starts_with(partial))
                .map(|(flag, a)| line(&flag, a.get_help().map(|h| h.to_string())));
            (flags.collect(), NO_FILE)
        }
        Want::Value(path, long) => {
            let cmd = at(&root, path);
            let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(long)) else {
                return (Vec::new(), DEFAULT);
            };
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set() && v.get_name().starts_with(partial))
                .map(|v| line(v.get_name(), v.get_help().map(|h| h.to_string())))
                .collect();
            if !values.is_empty() {
                return (values, NO_FILE);
            }
            let file = matches!(
                arg.get_value_hint(),
                ValueHint::FilePath | ValueHint::DirPath | ValueHint::AnyPath
            ) || arg.get_value_names().is_some_and(|names| {
                names.iter().any(|n| {
                    ["FILE", "PATH", "DIR", "KEY", "PRIVATE_KEY", "PUBLIC_KEY"]
                        .contains(&n.as_str())
                })
            });
            (Vec::new(), if file { DEFAULT } else { NO_FILE })
        }
    }
}

/// The AppImages in the cluster whose names start with `partial`; nothing when no cluster
/// answers within two seconds (a completion must never hang the shell).
fn appimage_names(global: &Global, partial: &str) -> Vec<String> {
    let mut global = global.clone();
    global.request_timeout = Some(Duration::from_secs(2));
    let names = crate::client::block_on(async {
        let list = async {
            let cluster = crate::client::Cluster::connect(&global).await?;
            cluster.list().await
        };
        match tokio::time::timeout(Duration::from_secs(2), list).await {
            Ok(Ok(images)) => Ok(images),
            _ => Ok(Vec::new()),
        }
    });
    names
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i.metadata.name.clone())
        .filter(|n| n.starts_with(partial))
        .collect()
}

/// `completion SHELL`: the script clap generates from the whole command line.
pub fn completion(shell: Shell) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kubectl-appimage", &mut buf);
    print(&String::from_utf8(buf).context("completion script is not UTF-8")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(String::from).collect()
    }

    fn complete(text: &str) -> (Vec<String>, u32) {
        let w = words(text);
        let (partial, done) = w.split_last().unwrap();
        candidates(&walk(done, partial).0, partial)
    }

    fn values(lines: &[String]) -> Vec<&str> {
        lines
            .iter()
            .map(|l| l.split('\t').next().unwrap())
            .collect()
    }

    #[test]
    fn subcommands_with_their_help() {
        let (lines, d) = complete("");
        assert_eq!(d, NO_FILE);
        let v = values(&lines);
        for name in ["get", "deploy", "batch", "rollout", "diff", "completion"] {
            assert!(v.contains(&name), "{v:?}");
        }
        assert!(!v.contains(&"__complete") && !v.contains(&"help"), "{v:?}");
        assert!(
            lines.contains(&"get\tList AppImages, or show some by name".to_string()),
            "{lines:?}"
        );
        assert_eq!(
            values(&complete("de").0),
            ["delete", "describe", "deploy", "deprecate"]
        );
        assert_eq!(
            values(&complete("batch c").0),
            ["create", "continue", "crd"]
        );
        assert_eq!(values(&complete("completion z").0), ["zsh"]);
    }

    #[test]
    fn flags_values_and_files() {
        let v = complete("get --no");
        assert_eq!(values(&v.0), ["--no-headers"]);
        let (lines, _) = complete("deploy x --");
        let v = values(&lines);
        assert!(
            v.contains(&"--kind") && v.contains(&"--kubeconfig"),
            "{v:?}"
        );
        let (lines, d) = complete("get -o ");
        assert_eq!(
            (values(&lines), d),
            (
                vec![
                    "yaml",
                    "json",
                    "name",
                    "wide",
                    "jsonpath=",
                    "custom-columns=",
                    "go-template="
                ],
                NO_FILE
            )
        );
        assert_eq!(
            values(&complete("--context c get -o j").0),
            ["json", "jsonpath="]
        );
        assert_eq!(complete("validate -f ").1, DEFAULT, "-f completes files");
        assert_eq!(complete("sign -f a.yaml --key ").1, DEFAULT);
        assert_eq!(complete("get --sort-by ").1, NO_FILE);
    }

    #[test]
    fn connection_flags_are_read() {
        let (want, global) = walk(&words("--kubeconfig k --context=c1 get"), "");
        assert_eq!(want, Want::Word(vec!["get".into()]));
        assert_eq!(
            global.kubeconfig.as_deref(),
            Some(std::path::Path::new("k"))
        );
        assert_eq!(global.context.as_deref(), Some("c1"));
        let (_, global) = walk(&words("get --context c"), "");
        assert_eq!(global.context.as_deref(), Some("c"));
    }
}
