//! One bash session for a whole walkthrough, as a person pasting a document's commands into a
//! terminal has: shell variables and files written by one block are there for the next.
//!
//! The test writes each block to bash's standard input, wrapped so that its output goes to a
//! file of its own and bash then reports on its standard output that the block finished. Bash
//! runs with `set -euo pipefail` (and `inherit_errexit`): a failing command ends the session,
//! which the test reports with the block's output. Blocks whose commands are meant to fail run
//! with `set +e` instead. Background blocks (watches) run in a subshell with job control, so that
//! stopping one stops its whole process group.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest a foreground block may take.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Shell {
    dir: PathBuf,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    runs: usize,
    /// Background blocks by name: process group id.
    jobs: HashMap<String, u32>,
}

impl Shell {
    /// Bash in `dir`, with `bin` first on PATH.
    pub fn start(dir: &Path, bin: &Path) -> Shell {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![bin.to_path_buf()];
        paths.extend(std::env::split_paths(&path));
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(dir)
            .env("PATH", std::env::join_paths(paths).expect("PATH"))
            .env_remove("BASH_ENV")
            .env_remove("ENV")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("shell.err")).expect("shell.err"))
            .kill_on_drop(true)
            .spawn()
            .expect("starting bash");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Shell {
            dir: dir.to_path_buf(),
            child,
            stdin,
            stdout,
            runs: 0,
            jobs: HashMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `script` to completion and returns what it printed (standard output and error, in
    /// order). With `errexit`, a failing command is an `Err` saying how and showing the output.
    pub async fn run(&mut self, script: &str, errexit: bool) -> Result<String, String> {
        self.runs += 1;
        let output = self.dir.join(format!("run-{}.out", self.runs));
        let wrapped = if errexit {
            format!(
                "set -euo pipefail\n{{\n{script}\n}} </dev/null >{out} 2>&1\necho \"@@finished $?\"\n",
                out = output.display()
            )
        } else {
            format!(
                "set +e -uo pipefail\n{{\n{script}\n}} </dev/null >{out} 2>&1\necho \"@@finished $?\"\nset -e\n",
                out = output.display()
            )
        };
        let reply = self.send(&wrapped).await;
        let printed = std::fs::read_to_string(&output).unwrap_or_default();
        match reply {
            Some(_) => Ok(printed),
            None => Err(format!(
                "the block failed, {}; it printed:\n{printed}{}",
                self.exit_status().await,
                self.shell_errors()
            )),
        }
    }

    /// Starts `script` in the background as `name`; its output accumulates in a file.
    pub async fn start_job(&mut self, name: &str, script: &str) {
        assert!(
            !self.jobs.contains_key(name),
            "a background block named {name} is already running"
        );
        let wrapped = format!(
            "set -m\n(\nset -euo pipefail\n{script}\n) </dev/null >{out} 2>&1 &\necho \"@@started $!\"\nset +m\n",
            out = self.job_file(name).display()
        );
        let Some(reply) = self.send(&wrapped).await else {
            panic!(
                "starting {name} in the background ended the shell, {}{}",
                self.exit_status().await,
                self.shell_errors()
            );
        };
        let pid = reply
            .strip_prefix("@@started ")
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("unexpected reply from bash: {reply}"));
        self.jobs.insert(name.to_string(), pid);
    }

    /// What background block `name` has printed so far.
    pub fn job_output(&self, name: &str) -> String {
        assert!(
            self.jobs.contains_key(name),
            "no background block named {name}"
        );
        std::fs::read_to_string(self.job_file(name)).unwrap_or_default()
    }

    /// Stops background block `name` (its whole process group), if it still runs.
    pub fn stop_job(&mut self, name: &str) {
        let pid = self
            .jobs
            .get(name)
            .unwrap_or_else(|| panic!("no background block named {name}"));
        // The job may have ended by itself: then there is no such group any more.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    }

    /// Runs `script` in a fresh bash (no shared state) and returns its standard output.
    pub async fn evaluate(&self, script: &str) -> String {
        let output = Command::new("bash")
            .args(["--noprofile", "--norc", "-euo", "pipefail", "-c", script])
            .current_dir(&self.dir)
            .env_remove("BASH_ENV")
            .stderr(Stdio::inherit())
            .output()
            .await
            .expect("running bash");
        assert!(output.status.success(), "bash -c {script:?} failed");
        String::from_utf8(output.stdout).expect("UTF-8")
    }

    /// Stops every background block and ends the session.
    pub async fn finish(mut self) {
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in names {
            self.stop_job(&name);
        }
        let _ = self.stdin.write_all(b"exit 0\n").await;
        let _ = tokio::time::timeout(BLOCK_TIMEOUT, self.child.wait()).await;
    }

    fn job_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("job-{name}.out"))
    }

    /// Sends `text` and waits for bash's `@@` reply; `None` if bash exited first.
    async fn send(&mut self, text: &str) -> Option<String> {
        if self.stdin.write_all(text.as_bytes()).await.is_err() {
            return None;
        }
        self.stdin.flush().await.ok()?;
        let reply = tokio::time::timeout(BLOCK_TIMEOUT, async {
            while let Some(line) = self.stdout.next_line().await.ok()? {
                if line.starts_with("@@") {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match reply {
            Ok(reply) => reply,
            Err(_) => panic!(
                "a block ran for more than {BLOCK_TIMEOUT:?}; its output so far is in {}",
                self.dir.display()
            ),
        }
    }

    async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(status)) => format!("bash exited with {status}"),
            _ => "bash stopped answering".into(),
        }
    }

    fn shell_errors(&self) -> String {
        let errors = std::fs::read_to_string(self.dir.join("shell.err")).unwrap_or_default();
        if errors.trim().is_empty() {
            String::new()
        } else {
            format!("\nbash said:\n{errors}")
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // A failed test must not leave watches running.
        for pid in self.jobs.values() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}
