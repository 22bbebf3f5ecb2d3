//! The fenced code blocks of a Markdown document, in order, with the `readme-test` directives
//! written in HTML comments right before them (invisible on the rendered page).

/// What the test does with a block besides the default (see `tests/it/readme/mod.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// Commands of this block may fail: run it without `set -e`; its output shows the errors.
    ExpectError,
    /// Run this block in the background (a watch); its output is checked as it arrives.
    Background(String),
    /// Stop the named background block first.
    Stop(String),
    /// This output block is checked against the named background block's output.
    Output(String),
    /// This block is the email the SMTP server received.
    Mail,
    /// Not checked: an illustration no command prints.
    Skip,
    /// Stop the server with SIGTERM and start it again over the same database; on a
    /// `cargo run … -- FLAGS` block, with those flags.
    RestartServer,
    /// Stop the SMTP server: the port refuses connections.
    StopSmtp,
    /// Start the SMTP server again on the same port.
    StartSmtp,
    /// Publish the TXT record an AddDomain response saved in this file asks for.
    PublishTxt(String),
    /// This output block is the output of running the previous command block again.
    Rerun,
}

#[derive(Debug, Clone)]
pub struct Block {
    /// The document, as a path from the crate's root (`docs/tour.md`).
    pub file: String,
    /// Line of the opening fence, from 1.
    pub line: usize,
    /// The info string: `sh`, `json`, or empty.
    pub lang: String,
    pub text: String,
    pub directives: Vec<Directive>,
}

impl Block {
    pub fn has(&self, directive: &Directive) -> bool {
        self.directives.contains(directive)
    }

    /// Where the block is, for messages: `docs/tour.md line 12`.
    pub fn place(&self) -> String {
        format!("{} line {}", self.file, self.line)
    }
}

const MARKER: &str = "readme-test:";

pub fn blocks(file: &str, markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut directives: Vec<Directive> = Vec::new();
    let mut directive_line = 0;
    let mut lines = markdown.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let mut text = String::new();
            for (_, line) in lines.by_ref() {
                if line.trim_end() == "```" {
                    break;
                }
                text.push_str(line);
                text.push('\n');
            }
            blocks.push(Block {
                file: file.to_string(),
                line: index + 1,
                lang: info.trim().to_string(),
                text,
                directives: std::mem::take(&mut directives),
            });
        } else if let Some(body) = line
            .trim()
            .strip_prefix("<!--")
            .and_then(|rest| rest.strip_suffix("-->"))
            .and_then(|rest| rest.trim().strip_prefix(MARKER))
        {
            directives.extend(body.split(';').map(|action| parse(action, file, index + 1)));
            directive_line = index + 1;
        } else if !line.trim().is_empty() && !directives.is_empty() {
            panic!(
                "{file} line {directive_line}: a readme-test directive must come right before a code block"
            );
        } else if line.contains(&format!("<!-- {MARKER}"))
            && !line.contains(&format!("`<!-- {MARKER}"))
        {
            // Not alone on its line, it would be ignored; in inline code it is only mentioned.
            panic!(
                "{file} line {}: write a directive alone on its line as <!-- {MARKER} … -->",
                index + 1
            );
        }
    }
    assert!(
        directives.is_empty(),
        "{file} line {directive_line}: a directive after the last code block"
    );
    blocks
}

fn parse(action: &str, file: &str, line: usize) -> Directive {
    let words: Vec<&str> = action.split_whitespace().collect();
    match words.as_slice() {
        ["expect-error"] => Directive::ExpectError,
        ["background", name] => Directive::Background(name.to_string()),
        ["stop", name] => Directive::Stop(name.to_string()),
        ["output", name] => Directive::Output(name.to_string()),
        ["mail"] => Directive::Mail,
        ["skip", ..] => Directive::Skip,
        ["restart-server"] => Directive::RestartServer,
        ["stop-smtp"] => Directive::StopSmtp,
        ["start-smtp"] => Directive::StartSmtp,
        ["publish-txt", file] => Directive::PublishTxt(file.to_string()),
        ["rerun"] => Directive::Rerun,
        _ => panic!("{file} line {line}: unknown readme-test directive {action:?}"),
    }
}

#[test]
fn blocks_carry_the_directives_written_before_them() {
    let markdown = "Intro\n\n<!-- readme-test: background all; stop other -->\n```sh\ngrpcurl x\n```\n\ntext\n\n```json\n{}\n```\n";
    let blocks = blocks("doc.md", markdown);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].line, 4);
    assert_eq!(blocks[0].lang, "sh");
    assert_eq!(blocks[0].text, "grpcurl x\n");
    assert_eq!(
        blocks[0].directives,
        [
            Directive::Background("all".into()),
            Directive::Stop("other".into())
        ]
    );
    assert_eq!(blocks[1].lang, "json");
    assert!(blocks[1].directives.is_empty());
}

#[test]
#[should_panic(expected = "must come right before a code block")]
fn a_directive_followed_by_prose_is_refused() {
    blocks(
        "doc.md",
        "<!-- readme-test: mail -->\nSome prose.\n\n```\nx\n```\n",
    );
}

#[test]
#[should_panic(expected = "unknown readme-test directive")]
fn an_unknown_directive_is_refused() {
    blocks(
        "doc.md",
        "<!-- readme-test: expect-eror -->\n```sh\nx\n```\n",
    );
}
