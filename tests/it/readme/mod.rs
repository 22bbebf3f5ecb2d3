//! The grpcurl examples of README.md and docs/, run as written, so that they cannot drift from
//! the API. A document's examples are a walkthrough: every ```` ```sh ```` block that calls
//! `grpcurl`, in document order, in one bash session in a scratch directory, against the real
//! binary over a fresh database (SQLite, or PostgreSQL with `MEMBERSHIP_TEST_DATABASE_URL`), with
//! the real `grpcurl` (see `readme/tools.rs`) and `jq`. [`WALKTHROUGHS`] lists them: the README's
//! quick start, the tour, the operations guide's authentication examples. A walkthrough of several
//! files runs them in order in one session, as each continues the one before; outputs
//! that show cursors depend on every write before them. Every document with grpcurl examples
//! must be in the list, and no other document may show an output block no command prints.
//!
//! How a document tells the test what to check:
//!
//! - A `sh` block containing `grpcurl` runs with `set -euo pipefail`, `127.0.0.1:50051` replaced
//!   by the server's address. The output blocks (` ```json ` or plain ` ``` `) that follow it,
//!   with only prose between, are what it must print, joined in order (`readme/expected.rs`
//!   says how `…` is read). A block with no output block after it is checked by its exit status.
//!   Other `sh` blocks (building, running the server, setting a variable again) are not run.
//! - Anything else is a directive in an HTML comment right before a block, which the rendered
//!   page does not show: `<!-- readme-test: ACTION; ACTION -->`. The actions:
//!   - `expect-error`: commands of the block may fail (it runs with `set +e`); its output block
//!     must show the `ERROR:` it expects.
//!   - `background NAME`: a watch, which streams until stopped: it runs in the background (the
//!     test goes on once it has printed something, so it is subscribed), and the output blocks
//!     after it must appear as a stretch of what it prints (the test waits for them). `output NAME` on a later output block checks that watch again; `stop NAME`
//!     stops it. Every watch must be checked at least once.
//!   - `restart-server`: SIGTERM the server and start it again over the same database; on a
//!     `cargo run … -- FLAGS` block, with those flags (`127.0.0.1:1025`, the SMTP server, being
//!     the test's SMTP sink).
//!   - `stop-smtp`, `start-smtp`: the SMTP server goes away, and comes back on the same port.
//!   - `mail`: the block is the next email the SMTP server received (headers, then body).
//!   - `publish-txt FILE` with `rerun`: publish the TXT record that the AddDomain response saved
//!     in FILE asks for, on the test's DNS server (the server's `--dns-nameserver` from the
//!     start, answering NXDOMAIN until then), run the previous command block again, and check
//!     this block against that run.
//!   - `skip REASON`: an illustration no command here prints.
//!
//!   An output block that follows no command, or is not claimed by a directive, fails the test:
//!   nothing in the documents goes unchecked by accident.

mod expected;
mod markdown;
mod shell;
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::common::dns::DnsServer;
use crate::common::smtp::SmtpSink;
use crate::common::{ServerProcess, TestDatabase, WAIT};
use expected::{contained_in, first_difference, glob, matches, parse_actual, parse_expected};
use markdown::{Block, Directive};
use shell::Shell;

/// The server address the documents' commands use.
const DOC_SERVER: &str = "127.0.0.1:50051";
/// The SMTP server the tour restarts the server with.
const DOC_SMTP: &str = "127.0.0.1:1025";

/// The README's quick start, on a server of its own: its outputs count from an empty database.
const QUICK_START: &[&str] = &["README.md"];
/// The tour of every service, one story from an empty database.
const TOUR: &[&str] = &["docs/tour.md"];
/// The authentication examples, which restart the server in each mode.
const OPERATIONS: &[&str] = &["docs/operations.md"];

/// Every walkthrough: the files of each run in order in one session, against one server over one
/// fresh database.
const WALKTHROUGHS: &[&[&str]] = &[QUICK_START, TOUR, OPERATIONS];

/// A command block whose output is still to be checked against the blocks that follow it.
enum Source {
    /// A finished foreground run and what it printed.
    Run { block: Block, printed: String },
    /// A background block, still running, and where it is.
    Job { name: String, place: String },
}

struct Pending {
    source: Source,
    expected: Vec<Block>,
}

struct Walkthrough {
    /// Its files, for messages.
    name: String,
    database: TestDatabase,
    server: Option<ServerProcess>,
    /// The test's own flags, then those of the document's last `cargo run` block.
    flags: Vec<String>,
    doc_flags: Vec<String>,
    dns: DnsServer,
    smtp: Option<SmtpSink>,
    smtp_port: u16,
    shell: Shell,
    pending: Option<Pending>,
    last_command: Option<Block>,
    /// Background blocks by name: where they are.
    started_jobs: BTreeMap<String, String>,
    checked_jobs: BTreeSet<String>,
    commands_run: usize,
    outputs_checked: usize,
    status_only: Vec<String>,
    /// Outputs that differ from the documents', reported together at the end.
    differences: Vec<String>,
}

#[tokio::test]
async fn readme_quick_start_runs_as_written() {
    run_walkthrough(QUICK_START).await;
}

#[tokio::test]
async fn tour_runs_as_written() {
    run_walkthrough(TOUR).await;
}

#[tokio::test]
async fn operations_examples_run_as_written() {
    run_walkthrough(OPERATIONS).await;
}

/// Every document with grpcurl examples is run, and the others show no output to check.
#[test]
fn every_document_with_grpcurl_examples_is_in_a_walkthrough() {
    let walked: BTreeSet<&str> = WALKTHROUGHS
        .iter()
        .flat_map(|files| files.iter().copied())
        .collect();
    for file in documents() {
        let blocks = markdown::blocks(&file, &read_document(&file));
        if walked.contains(file.as_str()) {
            assert!(
                blocks.iter().any(is_command),
                "{file} is in WALKTHROUGHS but has no grpcurl examples"
            );
            continue;
        }
        for block in blocks {
            assert!(
                !is_command(&block),
                "{}: a grpcurl example in a document no walkthrough runs; add {file} to \
                 WALKTHROUGHS in tests/it/readme/mod.rs",
                block.place()
            );
            assert!(
                !is_output(&block) || block.has(&Directive::Skip),
                "{}: an output block in a document no walkthrough runs; mark it `skip` if no \
                 command prints it",
                block.place()
            );
        }
    }
}

/// README.md and the Markdown files of docs/, as paths from the crate's root.
pub fn documents() -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(format!("{root}/docs"))
        .expect("reading docs/")
        .map(|entry| {
            entry
                .expect("a docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

pub fn read_document(file: &str) -> String {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn is_command(block: &Block) -> bool {
    block.lang == "sh" && block.text.contains("grpcurl")
}

fn is_output(block: &Block) -> bool {
    block.lang.is_empty() || block.lang == "json"
}

/// Runs `files` in order as one walkthrough.
async fn run_walkthrough(files: &[&str]) {
    let mut blocks = Vec::new();
    for file in files {
        let file_blocks = markdown::blocks(file, &read_document(file));
        assert!(
            file_blocks.iter().any(is_command),
            "{file} has no grpcurl examples"
        );
        blocks.extend(file_blocks);
    }

    let grpcurl = tools::grpcurl();
    tools::jq();
    let scratch = tempfile::tempdir().expect("scratch directory");
    let bin = scratch.path().join("bin");
    let work = scratch.path().join("walkthrough");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::os::unix::fs::symlink(&grpcurl, bin.join("grpcurl")).expect("linking grpcurl");

    let dns = DnsServer::start().await;
    let smtp = SmtpSink::start().await;
    let mut walkthrough = Walkthrough {
        name: files.join(", "),
        database: TestDatabase::create().await,
        server: None,
        flags: vec![
            "--dns-nameserver".into(),
            dns.addr.to_string(),
            // The documents' watches print progress after 5 s of silence; 1 s keeps the test short.
            "--watch-progress-interval".into(),
            "1s".into(),
        ],
        doc_flags: Vec::new(),
        dns,
        smtp_port: smtp.port,
        smtp: Some(smtp),
        shell: Shell::start(&work, &bin),
        pending: None,
        last_command: None,
        started_jobs: BTreeMap::new(),
        checked_jobs: BTreeSet::new(),
        commands_run: 0,
        outputs_checked: 0,
        status_only: Vec::new(),
        differences: Vec::new(),
    };
    walkthrough.start_server().await;

    for block in blocks {
        walkthrough.step(block).await;
    }
    walkthrough.finish().await;
}

impl Walkthrough {
    async fn step(&mut self, block: Block) {
        let is_command = block.lang == "sh" && block.text.contains("grpcurl");
        let is_output = block.lang.is_empty() || block.lang == "json";
        if is_output && block.directives.is_empty() {
            match &mut self.pending {
                Some(pending) => pending.expected.push(block),
                None => panic!(
                    "{}: an output block that follows no command; mark it \
                     (see tests/it/readme/mod.rs), e.g. `skip` if no command prints it",
                    block.place()
                ),
            }
            return;
        }
        self.check_pending().await;

        for directive in &block.directives {
            match directive {
                Directive::Stop(name) => self.shell.stop_job(name),
                Directive::StopSmtp => {
                    self.smtp
                        .take()
                        .expect("the SMTP server is already stopped")
                        .stop()
                        .await;
                }
                Directive::StartSmtp => {
                    assert!(self.smtp.is_none(), "the SMTP server is already running");
                    self.smtp = Some(SmtpSink::start_on(self.smtp_port).await);
                }
                Directive::PublishTxt(file) => self.publish_txt(file),
                Directive::RestartServer if !is_command && block.lang == "sh" => {
                    self.doc_flags = self.flags_of(&block).await;
                    self.restart_server().await;
                }
                Directive::RestartServer => self.restart_server().await,
                _ => {}
            }
        }

        if is_command {
            self.run_command(block).await;
        } else if is_output {
            if block.has(&Directive::Skip) {
                return;
            }
            if block.has(&Directive::Mail) {
                self.check_mail(&block).await;
                return;
            }
            let source = if let Some(name) = block.directives.iter().find_map(|d| match d {
                Directive::Output(name) => Some(name.clone()),
                _ => None,
            }) {
                let place = self
                    .started_jobs
                    .get(&name)
                    .unwrap_or_else(|| panic!("{}: no watch named {name}", block.place()))
                    .clone();
                Source::Job { name, place }
            } else if block.has(&Directive::Rerun) {
                let mut command = self
                    .last_command
                    .clone()
                    .unwrap_or_else(|| panic!("{}: nothing to rerun", block.place()));
                // Run again to succeed, whatever the first run was meant to do.
                command.directives.retain(|d| *d != Directive::ExpectError);
                let printed = self.run_foreground(&command, true).await;
                Source::Run {
                    block: command,
                    printed,
                }
            } else {
                panic!(
                    "{}: these directives do not say whose output this block is",
                    block.place()
                );
            };
            self.pending = Some(Pending {
                source,
                expected: vec![block],
            });
        } else {
            let acted = block
                .directives
                .iter()
                .all(|d| *d == Directive::RestartServer);
            assert!(
                acted,
                "{}: these directives do not apply to a block that is not run",
                block.place()
            );
        }
    }

    async fn start_server(&mut self) {
        let flags: Vec<&str> = self
            .flags
            .iter()
            .chain(&self.doc_flags)
            .map(String::as_str)
            .collect();
        self.server = Some(ServerProcess::spawn(&self.database.url, &flags).await);
    }

    async fn restart_server(&mut self) {
        let server = self.server.take().expect("a running server");
        let status = server.terminate().await;
        assert!(
            status.success(),
            "the server exited with {status} on SIGTERM"
        );
        self.start_server().await;
    }

    fn address(&self) -> String {
        self.server
            .as_ref()
            .expect("a running server")
            .addr
            .to_string()
    }

    /// The block's text, with the documents' server address replaced by the real one.
    fn script(&self, block: &Block) -> String {
        block.text.replace(DOC_SERVER, &self.address())
    }

    /// The flags after `--` in a `cargo run --release -- FLAGS` block, split as bash splits them.
    async fn flags_of(&self, block: &Block) -> Vec<String> {
        let text = block
            .text
            .replace(DOC_SMTP, &format!("127.0.0.1:{}", self.smtp_port));
        let flags = text
            .trim()
            .strip_prefix("cargo run --release --")
            .unwrap_or_else(|| {
                panic!(
                    "{}: restart-server expects `cargo run --release -- FLAGS`",
                    block.place()
                )
            });
        self.shell
            .evaluate(&format!("printf '%s\\0' {flags}"))
            .await
            .split('\0')
            .filter(|flag| !flag.is_empty())
            .map(str::to_string)
            .collect()
    }

    async fn run_command(&mut self, block: Block) {
        self.commands_run += 1;
        let background = block.directives.iter().find_map(|d| match d {
            Directive::Background(name) => Some(name.clone()),
            _ => None,
        });
        let source = match background {
            Some(name) => {
                let script = self.script(&block);
                self.shell.start_job(&name, &script).await;
                self.started_jobs.insert(name.clone(), block.place());
                // As a person sees the watch running before going on: without this, the next
                // command could commit before the watch has subscribed.
                let deadline = Instant::now() + WAIT;
                while self.shell.job_output(&name).trim().is_empty() {
                    assert!(
                        Instant::now() < deadline,
                        "{}: the watch printed nothing within {WAIT:?}",
                        block.place()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Source::Job {
                    name,
                    place: block.place(),
                }
            }
            None => {
                let errexit = !block.has(&Directive::ExpectError);
                let printed = self.run_foreground(&block, errexit).await;
                self.last_command = Some(block.clone());
                Source::Run { block, printed }
            }
        };
        self.pending = Some(Pending {
            source,
            expected: Vec::new(),
        });
    }

    async fn run_foreground(&mut self, block: &Block, errexit: bool) -> String {
        let script = self.script(block);
        self.shell
            .run(&script, errexit)
            .await
            .unwrap_or_else(|failure| {
                panic!("{}: {failure}{}", block.place(), self.differences_so_far())
            })
    }

    fn differences_so_far(&self) -> String {
        if self.differences.is_empty() {
            String::new()
        } else {
            format!(
                "\n\nand before that, outputs that differ from the documents:\n\n{}",
                self.differences.join("\n\n")
            )
        }
    }

    /// Checks the pending command's output against the output blocks collected for it.
    async fn check_pending(&mut self) {
        let Some(Pending { source, expected }) = self.pending.take() else {
            return;
        };
        let shown: String = expected
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let lines = expected
            .iter()
            .map(|b| b.line.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let wanted = parse_expected(&shown);
        match source {
            Source::Run { block, printed } => {
                let expects_error = block.has(&Directive::ExpectError);
                if expected.is_empty() {
                    assert!(
                        !expects_error,
                        "{}: expect-error, but no output block shows the error",
                        block.place()
                    );
                    self.status_only.push(block.place());
                    return;
                }
                if expects_error {
                    assert!(
                        shown.lines().any(|l| l.trim() == "ERROR:"),
                        "{}: expect-error, but the output shown has no ERROR:",
                        block.place()
                    );
                }
                let got = parse_actual(&printed, false);
                if !matches(&wanted, &got) {
                    self.differences.push(format!(
                        "{} line {}: the output of the command at line {} differs from \
                         what the document shows.\n{}\n--- shown:\n{shown}\n--- printed:\n{printed}",
                        expected[0].file,
                        lines,
                        block.line,
                        first_difference(&wanted, &got)
                    ));
                }
                self.outputs_checked += 1;
            }
            Source::Job { name, place } => {
                if expected.is_empty() {
                    return;
                }
                let deadline = Instant::now() + WAIT;
                loop {
                    let printed = self.shell.job_output(&name);
                    let got = parse_actual(&printed, true);
                    if contained_in(&wanted, &got) {
                        break;
                    }
                    if Instant::now() > deadline {
                        self.differences.push(format!(
                            "{} line {lines}: the watch started at {place} ({name}) did \
                             not print what the document shows within {WAIT:?}.\n{}\n--- shown:\n\
                             {shown}\n--- printed:\n{printed}",
                            expected[0].file,
                            first_difference(&wanted, &got)
                        ));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                self.checked_jobs.insert(name);
                self.outputs_checked += 1;
            }
        }
    }

    /// Publishes the TXT record an AddDomain response saved in `file` asks for.
    fn publish_txt(&self, file: &str) {
        let path = self.shell.dir().join(file);
        let response: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
        )
        .expect("an AddDomain response");
        let field = |name: &str| {
            response["domain"][name]
                .as_str()
                .unwrap_or_else(|| panic!("{file} has no domain.{name}"))
                .to_string()
        };
        self.dns.set_txt(
            &field("verificationRecordName"),
            &[&field("verificationRecordValue")],
        );
    }

    /// Compares the next email received with a block of headers, a blank line and the body.
    async fn check_mail(&mut self, block: &Block) {
        let mail = self
            .smtp
            .as_mut()
            .expect("the SMTP server is stopped")
            .next(WAIT)
            .await;
        let (headers, body) = block
            .text
            .split_once("\n\n")
            .unwrap_or_else(|| panic!("{}: headers, blank line, body", block.place()));
        for header in headers.lines() {
            let (name, value) = header.split_once(':').expect("Name: value");
            let got = mail.header(name).unwrap_or_default();
            if !glob(value.trim(), got.trim()) {
                self.differences.push(format!(
                    "{}: the email's {name} is {got:?}, the document shows {:?}",
                    block.place(),
                    value.trim()
                ));
            }
        }
        let trimmed = |text: &str| -> Vec<String> {
            let lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
            let start = lines.iter().position(|l| !l.is_empty()).unwrap_or(0);
            let end = lines
                .iter()
                .rposition(|l| !l.is_empty())
                .map_or(0, |e| e + 1);
            lines[start..end.max(start)].to_vec()
        };
        let shown = trimmed(body);
        let text = mail.text();
        let got = trimmed(&text);
        if !(shown.len() == got.len() && shown.iter().zip(&got).all(|(s, g)| glob(s, g))) {
            self.differences.push(format!(
                "{}: the email body differs.\n--- shown:\n{}\n--- received:\n{}",
                block.place(),
                shown.join("\n"),
                got.join("\n")
            ));
        }
        self.outputs_checked += 1;
    }

    async fn finish(mut self) {
        self.check_pending().await;
        assert!(
            self.differences.is_empty(),
            "{}: {} output(s) differ from the documents:\n\n{}",
            self.name,
            self.differences.len(),
            self.differences.join("\n\n")
        );
        let unchecked: Vec<&String> = self
            .started_jobs
            .keys()
            .filter(|name| !self.checked_jobs.contains(*name))
            .collect();
        assert!(
            unchecked.is_empty(),
            "watches whose output no block checks: {unchecked:?}"
        );
        self.shell.finish().await;
        let status = self.server.take().expect("server").terminate().await;
        assert!(status.success(), "the server exited with {status}");
        assert!(self.commands_run > 0 && self.outputs_checked > 0);
        eprintln!(
            "{}: ran {} grpcurl blocks and checked {} outputs; checked by exit status only: \
             the blocks at {:?}",
            self.name, self.commands_run, self.outputs_checked, self.status_only
        );
    }
}
