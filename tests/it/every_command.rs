//! Every command of the CLI, once, on the shipped policies and fixtures,
//! checking exit codes and output.
//!
//! These tests exist for the optimizer: the test profile compiles backupctl
//! itself with optimizations (`[profile.dev.package.backupctl]` in
//! Cargo.toml), so a miscompilation that only shows in release builds, like
//! the double free of issue 15 (rustc 1.95/1.96 MIR GVN, rust-lang/rust#158830),
//! aborts here instead of in a user's hands. Each command runs at least once
//! on every code path the shipped files reach.

use crate::emulator::{day, Emulator};
use crate::support::{backupctl, root, stderr, stdout};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

const DEMO: &str = "fixtures/demo/inventory.json";
const AT: &str = "2026-11-22T06:00:00Z";

/// Exit code `want`, and a readable failure that shows both streams (an
/// abort by a signal has no code at all).
fn expect(out: &Output, want: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(want),
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// The fixture cases that carry their own policy directory, and the shipped
/// `policies/` used with the demo inventory.
fn policy_sets() -> Vec<PathBuf> {
    let mut sets = vec![root().join("policies")];
    for entry in std::fs::read_dir(root().join("fixtures")).unwrap() {
        let dir = entry.unwrap().path().join("policies");
        if dir.is_dir() {
            sets.push(dir);
        }
    }
    sets.sort();
    sets
}

fn policy_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// The regions an IAM document limits a statement to, if it does.
fn requested_regions(statement: &Value) -> Option<Vec<String>> {
    statement["Condition"]["StringEquals"]["aws:RequestedRegion"]
        .as_array()
        .map(|a| a.iter().map(|r| r.as_str().unwrap().to_string()).collect())
}

/// Issue 15: the release build aborted (double free) in `iam-policy` for
/// every policy set without `regions = ["*"]`. Every shipped and fixture
/// policy, alone and in its set, and a single-region set.
#[test]
fn iam_policy_for_every_shipped_policy_alone_and_in_its_set() {
    let tmp = crate::emulator::TempDir::new("iam");
    let mut checked = 0;
    for set in policy_sets() {
        let out = backupctl(&["--policies", set.to_str().unwrap(), "iam-policy"]);
        expect(&out, 0, &format!("iam-policy for {}", set.display()));
        assert!(json_of(&out)["Statement"].as_array().unwrap().len() >= 2);
        for file in policy_files(&set) {
            let alone = tmp.path().join(format!("alone-{checked}"));
            std::fs::create_dir_all(&alone).unwrap();
            std::fs::copy(&file, alone.join(file.file_name().unwrap())).unwrap();
            let out = backupctl(&["--policies", alone.to_str().unwrap(), "iam-policy"]);
            expect(&out, 0, &format!("iam-policy for {} alone", file.display()));
            let doc = json_of(&out);
            let text = std::fs::read_to_string(&file).unwrap();
            let every_region = text.contains("regions = [\"*\"]");
            let enabled = !text.contains("enabled = false");
            for statement in doc["Statement"].as_array().unwrap() {
                let limited = requested_regions(statement);
                if enabled && !every_region {
                    assert!(limited.is_some(), "{}: {statement:#}", file.display());
                } else if every_region {
                    assert!(limited.is_none(), "{}: {statement:#}", file.display());
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} policy files found");

    let single = tmp.path().join("single");
    std::fs::create_dir_all(&single).unwrap();
    std::fs::copy(
        root().join("policies/web-daily.toml"),
        single.join("a.toml"),
    )
    .unwrap();
    std::fs::write(
        single.join("b.toml"),
        std::fs::read_to_string(root().join("policies/db-snapshots.toml")).unwrap(),
    )
    .unwrap();
    let out = backupctl(&["--policies", single.to_str().unwrap(), "iam-policy"]);
    expect(&out, 0, "iam-policy for web-daily + db-snapshots");
    let doc = json_of(&out);
    let statements = doc["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 4, "{doc:#}");
    for s in statements {
        assert_eq!(
            requested_regions(s),
            Some(vec!["eu-west-1".to_string(), "us-east-1".to_string()]),
            "{s:#}"
        );
    }
}

/// The offline commands: validate, plan in every format with --out and
/// --detailed-exitcode, show in every format, diff, completions, man, help.
#[test]
fn every_offline_command_once_on_the_shipped_fixtures() {
    let tmp = crate::emulator::TempDir::new("every-command");
    let saved = tmp.path().join("plan.json");
    let saved_arg = saved.to_str().unwrap();

    let out = backupctl(&["validate"]);
    expect(&out, 0, "validate");
    assert!(
        stdout(&out).contains("4 policies valid"),
        "{}",
        stdout(&out)
    );

    // The golden text plans are the verbose ones (with kept backups).
    let out = backupctl(&[
        "-v",
        "plan",
        "--state",
        DEMO,
        "--at",
        AT,
        "--out",
        saved_arg,
        "--detailed-exitcode",
    ]);
    expect(&out, 2, "plan --out --detailed-exitcode");
    let golden = std::fs::read_to_string(root().join("fixtures/demo/plan.txt")).unwrap();
    assert_eq!(stdout(&out), golden);
    let golden_json = std::fs::read_to_string(root().join("fixtures/demo/plan.json")).unwrap();
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), golden_json);

    for (format, golden) in [
        ("text", "plan.txt"),
        ("json", "plan.json"),
        ("markdown", "plan.md"),
    ] {
        let want = std::fs::read_to_string(root().join("fixtures/demo").join(golden)).unwrap();
        let out = backupctl(&[
            "-v", "plan", "--state", DEMO, "--at", AT, "--format", format,
        ]);
        expect(&out, 0, &format!("plan --format {format}"));
        assert_eq!(stdout(&out), want, "plan --format {format}");
        let out = backupctl(&["-v", "show", saved_arg, "--format", format]);
        expect(&out, 0, &format!("show --format {format}"));
        assert!(!stdout(&out).is_empty());
        assert_eq!(stdout(&out), want, "show --format {format}");
    }

    // A later plan of the same inventory deletes more: diff says so.
    let later = tmp.path().join("later.json");
    let out = backupctl(&[
        "plan",
        "--state",
        DEMO,
        "--at",
        "2027-06-01",
        "--out",
        later.to_str().unwrap(),
        "--quiet",
    ]);
    expect(&out, 0, "plan --at 2027-06-01");
    let out = backupctl(&["diff", saved_arg, later.to_str().unwrap()]);
    expect(&out, 0, "diff");
    assert!(!stdout(&out).is_empty());
    let out = backupctl(&[
        "diff",
        saved_arg,
        later.to_str().unwrap(),
        "--format",
        "json",
        "--detailed-exitcode",
    ]);
    expect(&out, 2, "diff --format json --detailed-exitcode");
    assert!(json_of(&out).is_object());
    let out = backupctl(&["diff", saved_arg, saved_arg, "--detailed-exitcode"]);
    expect(&out, 0, "diff of a plan with itself");

    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = backupctl(&["completions", shell]);
        expect(&out, 0, &format!("completions {shell}"));
        assert!(stdout(&out).contains("backupctl"), "{shell}");
    }
    for format in ["text", "json", "markdown"] {
        let out = backupctl(&[
            "forecast",
            "--state",
            "fixtures/demo/inventory.json",
            "--at",
            "2026-11-22T06:00:00Z",
            "--until",
            "2026-12-01",
            "--format",
            format,
        ]);
        expect(&out, 0, &format!("forecast --format {format}"));
        assert!(stdout(&out).contains("runs"), "{}", stdout(&out));
    }
    let out = backupctl(&[
        "forecast",
        "--state",
        "fixtures/demo/inventory.json",
        "--at",
        "2026-11-22T06:00:00Z",
        "--until",
        "2026-11-01",
    ]);
    expect(&out, 1, "forecast into the past");
    assert!(stderr(&out).contains("is not after"), "{}", stderr(&out));
    let out = backupctl(&["man"]);
    expect(&out, 0, "man");
    assert!(stdout(&out).contains(".TH backupctl 1"));
    let out = backupctl(&["--help"]);
    expect(&out, 0, "--help");
    assert!(stdout(&out).contains("iam-policy"));
}

/// The commands that talk to AWS, against the emulator with the shipped
/// policies: state pull, plan on what was pulled, apply, and a plan that
/// then has nothing left to do.
#[test]
fn every_aws_command_once_with_the_shipped_policies() {
    let emu = Emulator::start();
    emu.seed(json!({"region": "us-east-1", "instances": [
        {"count": 2, "tags": {"Backup": "prodDaily", "BackupReboot": "yes"}},
        {"count": 1, "tags": {"Role": "db"}, "volumes": [
            {"device": "/dev/sdf", "tags": {"Snapshot": "yes"}},
            {"device": "/dev/sdg", "tags": {"Snapshot": "yes"}}]},
        {"count": 1, "tags": {"Backup": "weekly"}}]}));
    emu.seed(json!({"region": "eu-west-1", "instances": [
        {"count": 1, "tags": {"Backup": "prodDaily"}}]}));
    let policies = root().join("policies");
    let now = day(0);
    let env = [("BACKUPCTL_NOW", now.as_str())];
    let state = emu.dir.path().join("state.json");

    let out = emu.run(
        &policies,
        &["state", "pull", "-o", state.to_str().unwrap()],
        &env,
    );
    expect(&out, 0, "state pull");
    let out = emu.run(
        &policies,
        &[
            "plan",
            "--state",
            state.to_str().unwrap(),
            "--format",
            "json",
        ],
        &env,
    );
    expect(&out, 0, "plan --state (pulled)");
    let offline = json_of(&out);
    // 3 web-daily images, 1 bastion-weekly image, 1 db snapshot set.
    assert_eq!(offline["summary"]["create"], 5, "{offline:#}");

    let out = emu.run(&policies, &["plan", "--format", "json"], &env);
    expect(&out, 0, "plan (live)");
    assert_eq!(json_of(&out)["changes"], offline["changes"]);

    let out = emu.run(&policies, &["apply", "--auto-approve"], &env);
    expect(&out, 0, "apply --auto-approve");
    let out = emu.run(&policies, &["plan", "--detailed-exitcode"], &env);
    expect(&out, 0, "plan after apply");
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
}

/// The optimized test mode these tests rely on stays on: opt-level 2 or
/// more, and no incremental compilation (which hides the issue-15 bug).
#[test]
fn the_product_is_tested_with_optimizations_on() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let ours = &manifest["profile"]["dev"]["package"]["backupctl"];
    let level = ours["opt-level"].as_integer();
    assert!(level.is_some_and(|l| l >= 2), "opt-level: {ours:?}");
    assert_eq!(ours["incremental"].as_bool(), Some(false), "{ours:?}");
}
