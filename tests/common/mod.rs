//! Helpers the command-line tests share: running the built `systole` binary and finding the
//! repository's and the shared fixtures' files. (Each test binary uses a subset.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `systole` binary of this build with `args` (from the repository root).
pub fn systole(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_systole"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run systole")
}

/// A path inside the repository.
pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Standard output then standard error, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// ../shared/fixtures: the tests that need it fail, not skip, without it.
pub fn fixtures() -> PathBuf {
    let p = repo("../shared/fixtures");
    assert!(
        p.is_dir(),
        "{} is missing: these tests need the shared fixtures",
        p.display()
    );
    p
}

/// One ONNX backend node test (scripts/fetch_onnx_node_tests.sh unpacks them).
pub fn node_test(name: &str) -> String {
    let p = repo("target/onnx-node-tests/node").join(name);
    assert!(
        p.is_dir(),
        "{} is missing: run scripts/fetch_onnx_node_tests.sh",
        p.display()
    );
    p.to_string_lossy().to_string()
}
