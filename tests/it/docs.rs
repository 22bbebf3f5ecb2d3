//! The documents' checks that need no server: the settings tables in docs/operations.md are the
//! ones the clap definitions in src/config.rs render, and the links between README.md and docs/
//! lead to files and headings that exist. (`readme` runs the documents' commands.)
//!
//! The tables are written between two marker comments in docs/operations.md. When a setting
//! changes, `UPDATE_DOCS=1 cargo test --test it docs::` writes them again; without it the test
//! fails and says so.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use clap::{Arg, ArgAction, Command, CommandFactory};
use membership_service::config::Config;

use crate::readme::{documents, read_document};

const OPERATIONS: &str = "docs/operations.md";
const TABLES_START: &str = "<!-- settings-tables: generated from src/config.rs by \
                            `UPDATE_DOCS=1 cargo test --test it docs::`; edits here are overwritten -->";
const TABLES_END: &str = "<!-- settings-tables: end -->";
const REGENERATE: &str = "UPDATE_DOCS=1 cargo test --test it docs::";

#[test]
fn the_settings_tables_are_those_of_the_command_line() {
    let text = read_document(OPERATIONS);
    let start = text
        .find(TABLES_START)
        .unwrap_or_else(|| panic!("{OPERATIONS} lacks the line {TABLES_START}"))
        + TABLES_START.len();
    let end = start
        + text[start..]
            .find(TABLES_END)
            .unwrap_or_else(|| panic!("{OPERATIONS} lacks the line {TABLES_END}"));
    let written = &text[start..end];
    let wanted = format!("\n\n{}\n", settings_tables(&Config::command()));
    if written == wanted {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{wanted}{}", &text[..start], &text[end..]);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(OPERATIONS);
        std::fs::write(&path, updated).unwrap_or_else(|e| panic!("writing {OPERATIONS}: {e}"));
        eprintln!("{OPERATIONS}: the settings tables were written again");
        return;
    }
    let (line, shown, generated) = written
        .lines()
        .zip(wanted.lines())
        .enumerate()
        .find(|(_, (shown, generated))| shown != generated)
        .map(|(i, (shown, generated))| (i, shown, generated))
        .unwrap_or((written.lines().count().min(wanted.lines().count()), "", ""));
    let line = text[..start].lines().count() + line;
    panic!(
        "{OPERATIONS}: the settings tables differ from the definitions in src/config.rs; write \
         them again with `{REGENERATE}`.\nFirst difference, near line {line}:\n--- written:\n\
         {shown}\n--- generated:\n{generated}"
    );
}

/// The settings of `command` as Markdown: a table for each help heading, in the order the
/// headings first appear, then a table for each subcommand with settings of its own.
fn settings_tables(command: &Command) -> String {
    let listed = |arg: &&Arg| arg.get_long().is_some() && !arg.is_hide_set();
    let settings: Vec<&Arg> = command.get_arguments().filter(listed).collect();
    let mut headings: Vec<&str> = Vec::new();
    for arg in &settings {
        let heading = arg.get_help_heading().unwrap_or("Options");
        if !headings.contains(&heading) {
            headings.push(heading);
        }
    }
    let mut tables = Vec::new();
    for heading in headings {
        let rows = settings
            .iter()
            .filter(|arg| arg.get_help_heading().unwrap_or("Options") == heading);
        tables.push(format!("### {heading}\n\n{}", table(rows.copied())));
    }
    for subcommand in command.get_subcommands() {
        let own: Vec<&Arg> = subcommand
            .get_arguments()
            .filter(listed)
            .filter(|arg| !arg.is_global_set())
            .collect();
        if own.is_empty() {
            continue;
        }
        let about = subcommand
            .get_about()
            .map(|about| sentence(&about.to_string()))
            .unwrap_or_default();
        tables.push(format!(
            "### `{}`\n\n{about}\n\n{}",
            subcommand.get_name(),
            table(own.into_iter())
        ));
    }
    tables.join("\n")
}

fn table<'a>(args: impl Iterator<Item = &'a Arg>) -> String {
    let mut table = String::from(
        "| Flag | Environment variable | Default | Meaning |\n| --- | --- | --- | --- |\n",
    );
    for arg in args {
        let flag = format!(
            "`--{}`",
            arg.get_long().expect("listed settings have a long flag")
        );
        let env = arg
            .get_env()
            .map(|env| format!("`{}`", env.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| format!("`{}`", value.to_string_lossy()))
            .collect();
        let default = match arg.get_action() {
            ArgAction::SetTrue => "`false`".to_string(),
            _ if defaults.is_empty() => "unset".to_string(),
            _ => defaults.join(", "),
        };
        let mut meaning = sentence(&arg.get_help().map(ToString::to_string).unwrap_or_default());
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|value| !value.is_hide_set())
            .map(|value| format!("`{}`", value.get_name()))
            .collect();
        if !values.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue) {
            meaning.push_str(&format!(" One of {}.", values.join(", ")));
        }
        table.push_str(&format!(
            "| {flag} | {env} | {default} | {} |\n",
            meaning.replace('|', "\\|")
        ));
    }
    table
}

/// Help text as a sentence: on one line, ending with a full stop (clap drops the doc comment's).
fn sentence(help: &str) -> String {
    let mut text = help.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() && !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

#[test]
fn the_settings_tables_list_every_visible_setting_under_its_heading() {
    let tables = settings_tables(&Config::command());
    for needle in [
        "### Server\n",
        "| `--listen` | `MEMBERSHIP_LISTEN` | `127.0.0.1:50051` | Address the gRPC server listens on. |",
        "| `--auth` | `MEMBERSHIP_AUTH` | `none` |",
        "One of `none`, `api-key`, `jwt`.",
        "| `--allow-unauthenticated-remote` | `MEMBERSHIP_ALLOW_UNAUTHENTICATED_REMOTE` | `false` |",
        "| `--smtp-url` | `MEMBERSHIP_SMTP_URL` | unset |",
        "### `healthcheck`\n",
        "| `--ca` | `MEMBERSHIP_HEALTHCHECK_CA` | unset |",
        "### `new-api-key`\n",
    ] {
        assert!(
            tables.contains(needle),
            "{needle:?} missing from:\n{tables}"
        );
    }
    assert!(
        !tables.contains("health-interval-secs"),
        "an earlier, hidden name is not listed"
    );
    let mut command = Config::command();
    command.build();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if arg.is_hide_set() || ["help", "version"].contains(&long) {
            continue;
        }
        assert!(
            tables.contains(&format!("| `--{long}` |")),
            "--{long} is not listed"
        );
    }
}

/// Every link from README.md and docs/*.md to a local file leads to one that exists, and every
/// `#anchor` to a heading of the page it names.
#[test]
fn links_between_the_documents_resolve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in documents() {
        let text = read_document(&file);
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let target_file = if path.is_empty() {
                PathBuf::from(&file)
            } else {
                normalize(
                    &Path::new(&file)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(path),
                )
            };
            if target_file.starts_with("..") || !root.join(&target_file).exists() {
                broken.push(format!("{file} line {line}: {target}: no such file"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            let is_markdown = target_file.extension().is_some_and(|ext| ext == "md");
            let headings = if is_markdown {
                let text = std::fs::read_to_string(root.join(&target_file)).unwrap_or_default();
                anchors(&text)
            } else {
                BTreeSet::new()
            };
            if !headings.contains(anchor) {
                broken.push(format!(
                    "{file} line {line}: {target}: no heading #{anchor} in {}",
                    target_file.display()
                ));
            }
        }
    }
    assert!(checked > 0, "no local links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `path` with `.` and `name/..` taken out, relative to the crate's root.
fn normalize(path: &Path) -> PathBuf {
    let mut parts: Vec<Component> = Vec::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir if matches!(parts.last(), Some(Component::Normal(_))) => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.iter().collect()
}

/// The prose lines of a Markdown text, numbered from 1, with code blocks left out and inline
/// code blanked (a link shown as code is not a link).
fn prose(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut in_code = false;
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut kept = String::new();
        let mut in_span = false;
        for c in line.chars() {
            if c == '`' {
                in_span = !in_span;
                kept.push(c);
            } else if !in_span {
                kept.push(c);
            }
        }
        lines.push((index + 1, kept));
    }
    lines
}

/// The targets of inline links `[text](target)`, with their lines.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (line, prose) in prose(text) {
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push((line, rest[..end].trim().to_string()));
                rest = &rest[end..];
            }
        }
    }
    found
}

/// The anchors GitHub gives a page's headings: the text lower-cased, without punctuation but
/// `-` and `_`, spaces made `-`; a repeated one gets `-1`, `-2`, ….
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !in_code) else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = link_texts(heading.trim())
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut repeat = 0;
        while anchors.contains(&anchor) {
            repeat += 1;
            anchor = format!("{slug}-{repeat}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// `text` with each `[label](target)` replaced by its label.
fn link_texts(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn anchors_follow_github() {
    let anchors = anchors(
        "# Errors\n## Authentication: who is calling\n```sh\n# a comment\n```\n\
         ## Keeping a copy of a tenant's members\n### The audit log: `ListMembershipEvents`\n\
         ## Errors\n## See [the feed](event-feed.md)\n",
    );
    let expected = [
        "errors",
        "authentication-who-is-calling",
        "keeping-a-copy-of-a-tenants-members",
        "the-audit-log-listmembershipevents",
        "errors-1",
        "see-the-feed",
    ];
    assert_eq!(
        anchors,
        expected
            .iter()
            .map(|a| a.to_string())
            .collect::<BTreeSet<_>>()
    );
}

#[test]
fn links_in_code_are_not_links() {
    let text = "See [the tour](tour.md#x) and `[a](b)`.\n```\n[c](d)\n```\n[e](f.md)\n";
    assert_eq!(
        links(text),
        [(1, "tour.md#x".to_string()), (5, "f.md".to_string())]
    );
}
