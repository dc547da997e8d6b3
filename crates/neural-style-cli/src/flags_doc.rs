//! `docs/flags.md`, the reference of every flag of every command, generated from the clap
//! parser itself (as ripgrep generates its documentation), so it cannot say other than
//! `--help` does. A test compares the committed copy with what the parser makes and fails
//! when it is stale; `NEURAL_STYLE_WRITE_FLAGS_DOC=1 cargo test -p neural-style-cli
//! flags_doc` writes it anew.

use clap::{Arg, ArgAction, Command, CommandFactory};

use crate::cli::Cli;

/// The whole reference: the style-transfer flags and the other commands, then each other
/// command's.
pub fn markdown() -> String {
    let mut cli = Cli::command();
    cli.build();
    let mut out = String::from(
        "# Every flag\n\n\
         Generated from the command's parser (`crates/neural-style-cli/src/flags_doc.rs`); \
         `neural-style --help` and `neural-style COMMAND --help` say the same. The README \
         explains the ones most runs use.\n",
    );
    section(&mut out, "neural-style", &cli);
    out
}

/// One command's heading, what it does and its table of flags (and of its own commands).
fn section(out: &mut String, title: &str, cmd: &Command) {
    out.push_str(&format!("\n## `{title}`\n\n"));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        out.push_str(&format!("{}\n\n", one_line(&about.to_string())));
    }
    let args: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    if !args.is_empty() {
        out.push_str("| flag | default | what it does |\n|---|---|---|\n");
        for arg in args {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                cell(&flag_name(arg)),
                cell(&default_of(arg)),
                cell(&help_of(arg))
            ));
        }
    }
    let subs: Vec<&Command> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    if !subs.is_empty() {
        out.push_str("\n| command | what it does |\n|---|---|\n");
        for sub in &subs {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            out.push_str(&format!(
                "| `{title} {}` | {} |\n",
                sub.get_name(),
                cell(&about)
            ));
        }
        for sub in subs {
            section(out, &format!("{title} {}", sub.get_name()), sub);
        }
    }
}

/// `-c, --content PATH`, `--seed N`, `--quiet`, or `PHOTO` for a positional argument.
fn flag_name(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    let takes_value = !matches!(
        arg.get_action(),
        ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
    );
    let mut name = match (arg.get_short(), arg.get_long()) {
        (Some(s), Some(l)) => format!("-{s}, --{l}"),
        (None, Some(l)) => format!("--{l}"),
        (Some(s), None) => format!("-{s}"),
        (None, None) => return format!("`{value}`"),
    };
    if takes_value {
        name = format!("{name} {value}");
    }
    format!("`{name}`")
}

fn default_of(arg: &Arg) -> String {
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if defaults.is_empty() || matches!(arg.get_action(), ArgAction::SetTrue) {
        String::new()
    } else {
        format!("`{}`", defaults.join(","))
    }
}

/// The long help, with the possible values and what each means.
fn help_of(arg: &Arg) -> String {
    let mut help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| one_line(&h.to_string()))
        .unwrap_or_default();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| match v.get_help() {
            Some(h) => format!("`{}`: {}", v.get_name(), one_line(&h.to_string())),
            None => format!("`{}`", v.get_name()),
        })
        .collect();
    let is_bool = values.iter().all(|v| v == "`true`" || v == "`false`");
    if !values.is_empty() && !is_bool {
        help = format!("{help} ({})", values.join("; "));
    }
    let former: Vec<String> = arg
        .get_visible_aliases()
        .unwrap_or_default()
        .iter()
        .map(|a| format!("`--{a}`"))
        .collect();
    if !former.is_empty() {
        help = format!("{help}. Also taken as {}", former.join(", "));
    }
    help
}

/// Paragraphs joined into one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text that stays inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_committed_flag_reference_is_the_parsers() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/flags.md");
        let made = super::markdown();
        if std::env::var_os("NEURAL_STYLE_WRITE_FLAGS_DOC").is_some() {
            std::fs::write(&path, &made).expect("writing docs/flags.md");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == made,
            "docs/flags.md is not what the parser says (a flag or its help changed): run \
             `NEURAL_STYLE_WRITE_FLAGS_DOC=1 cargo test -p neural-style-cli flags_doc` and \
             commit it"
        );
    }

    #[test]
    fn every_flag_of_every_command_is_in_the_reference() {
        let made = super::markdown();
        for flag in [
            "`-c, --content PATH`",
            "`--seed SEED`",
            "`--max-upload SIZE`",
        ] {
            let built = cfg!(feature = "serve") || !flag.contains("upload");
            assert_eq!(made.contains(flag), built, "{flag}");
        }
        for heading in ["## `neural-style batch`", "## `neural-style weights fetch`"] {
            assert!(made.contains(heading), "{heading} is missing");
        }
    }
}
