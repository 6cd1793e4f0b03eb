//! Helpers shared by the test modules: running the binary with a clean
//! environment, and comparing against golden files with a readable diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Set to 1 to rewrite golden files from the current output.
pub const BLESS_VAR: &str = "BACKUPCTL_BLESS";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the backupctl binary in the repository root with `args`, with none
/// of backupctl's environment variables inherited.
pub fn backupctl(args: &[&str]) -> Output {
    backupctl_env(args, &[])
}

pub fn backupctl_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backupctl"));
    cmd.current_dir(root()).args(args);
    for var in [
        "BACKUPCTL_NOW",
        "BACKUPCTL_POLICIES",
        "BACKUPCTL_CALL_TIMEOUT",
        "BACKUPCTL_ACCOUNTS",
        "BACKUPCTL_SHARD",
        "BACKUPCTL_MAX_ACCOUNTS",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the backupctl binary runs")
}

/// A YAML file's documents as JSON (a list, one per document), read by the
/// emulator's Python (which has PyYAML), so that shipped examples are
/// parsed as the tools that run them parse them.
pub fn yaml(path: &Path) -> serde_json::Value {
    let python = std::env::var_os("BACKUPCTL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    let parsed = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1]))), default=str))",
        ])
        .arg(path)
        .output()
        .expect("the emulator's Python runs (scripts/test installs it)");
    assert!(parsed.status.success(), "{}", stderr(&parsed));
    serde_json::from_str(&stdout(&parsed)).expect("JSON from the YAML")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Compares `actual` with the golden file at `path`; with BACKUPCTL_BLESS=1
/// writes it instead. Returns a readable diff on mismatch.
pub fn check_golden(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var(BLESS_VAR).is_ok_and(|v| v == "1") {
        std::fs::write(path, actual).expect("golden file is writable");
        return Ok(());
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run the tests with {BLESS_VAR}=1 to create it",
            path.display()
        )
    });
    if expected == actual {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(expected.as_str(), actual);
    Err(format!(
        "{} differs from the output (- expected, + actual); if the change is intended, re-run with {BLESS_VAR}=1:\n{}",
        path.display(),
        diff.unified_diff().context_radius(3)
    ))
}
