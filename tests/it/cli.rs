//! The command line: exit codes, flags, environment variables and the wording
//! of errors a user can cause.

use crate::support::{backupctl, backupctl_env, stderr, stdout};

const DEMO: &str = "fixtures/demo/inventory.json";
const AT: &str = "2026-11-22T06:00:00Z";

fn code(args: &[&str]) -> Option<i32> {
    backupctl(args).status.code()
}

#[test]
fn detailed_exitcode_says_whether_there_are_changes() {
    assert_eq!(
        code(&["plan", "--state", DEMO, "--at", AT, "--detailed-exitcode"]),
        Some(2)
    );
    assert_eq!(code(&["plan", "--state", DEMO, "--at", AT]), Some(0));
    let quiet = [
        "--policies",
        "fixtures/no-changes/policies",
        "plan",
        "--state",
        "fixtures/no-changes/inventory.json",
        "--at",
        "2026-11-22T06:00:00Z",
        "--detailed-exitcode",
    ];
    let out = backupctl(&quiet);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).ends_with("No changes.\n"));
}

#[test]
fn out_saves_the_same_json_as_format_json() {
    let dir = std::env::temp_dir().join(format!("backupctl-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plan.json");
    let file_arg = file.to_str().unwrap();
    let out = backupctl(&["plan", "--state", DEMO, "--at", AT, "--out", file_arg]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).starts_with("backupctl will perform"),
        "text on stdout"
    );
    let json = backupctl(&["plan", "--state", DEMO, "--at", AT, "--format", "json"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout(&json));
    let _ = std::fs::remove_dir_all(&dir);

    let out = backupctl(&[
        "plan",
        "--state",
        DEMO,
        "--out",
        "/nonexistent-dir/plan.json",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("cannot write /nonexistent-dir/plan.json"));
}

#[test]
fn the_clock_comes_from_at_then_backupctl_now() {
    let json = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["plan", "--state", DEMO, "--format", "json"];
        all.extend_from_slice(args);
        let out = backupctl_env(&all, env);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        v["generated_at"].as_str().unwrap().to_string()
    };
    assert_eq!(
        json(&[], &[("BACKUPCTL_NOW", "2027-01-01")]),
        "2027-01-01T00:00:00Z"
    );
    assert_eq!(
        json(
            &["--at", "2027-02-03T04:05:06+01:00"],
            &[("BACKUPCTL_NOW", "2027-01-01")]
        ),
        "2027-02-03T03:05:06Z"
    );
}

#[test]
fn invalid_input_exits_1_with_a_clear_message() {
    /// Arguments, environment, expected text on stderr.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["plan", "--state", DEMO, "--at", "next tuesday"],
            &[],
            "invalid --at: \"next tuesday\" is not a time",
        ),
        (
            &["plan", "--state", DEMO],
            &[("BACKUPCTL_NOW", "soon")],
            "invalid BACKUPCTL_NOW",
        ),
        (
            &["plan", "--state", "no-such-file.json"],
            &[],
            "cannot use state file no-such-file.json",
        ),
        (
            &["plan", "--state", "Cargo.toml"],
            &[],
            "it is not a backupctl inventory (JSON error at line 1",
        ),
        (
            &["plan", "--state", "fixtures/demo/at"],
            &[],
            "not a backupctl inventory",
        ),
        (
            &["--policies", "no-such-dir", "validate"],
            &[],
            "policy directory no-such-dir does not exist",
        ),
        (
            &["--policies", "src", "validate"],
            &[],
            "no policy files (*.toml) in src",
        ),
        (
            &["validate"],
            &[("BACKUPCTL_POLICIES", "nowhere")],
            "policy directory nowhere",
        ),
        (&["plan", "--format", "yaml"], &[], "invalid value 'yaml'"),
        (
            &[
                "--policies",
                "fixtures/calendar/policies",
                "apply",
                "--auto-approve",
                "--api-rate",
                "CreateImage=0/5",
            ],
            &[],
            "invalid API rate \"CreateImage=0/5\": expected ACTION=BURST/PER_SECOND",
        ),
        (
            &[
                "--policies",
                "fixtures/calendar/policies",
                "apply",
                "--auto-approve",
            ],
            &[(
                "BACKUPCTL_API_RATES",
                "CreateSnapshots=50/5,RunInstances=2/1",
            )],
            "invalid API rate \"RunInstances=2/1\"",
        ),
        (&["frobnicate"], &[], "unrecognized subcommand"),
    ];
    for (args, env, want) in cases {
        let out = backupctl_env(args, env);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn state_files_of_another_version_or_shape_are_refused() {
    let dir = std::env::temp_dir().join(format!("backupctl-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            r#"{"format_version": 2, "regions": {}}"#,
            "format_version 2, but this backupctl reads version 1",
        ),
        (r#"{"regions": {}}"#, "has no format_version"),
        (
            r#"{"format_version": 1, "regions": {"us-east-1": {"instances": [{"id": "i-1"}]}}}"#,
            "missing field `state`",
        ),
        (
            r#"{"format_version": 1, "regions": {}, "extra": true}"#,
            "unknown field `extra`",
        ),
        ("", "not a backupctl inventory"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = dir.join(format!("{i}.json"));
        std::fs::write(&file, text).unwrap();
        let out = backupctl(&["plan", "--state", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(stderr(&out).contains(want), "{text}: {}", stderr(&out));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_and_version_exit_0_with_examples() {
    for args in [
        &["--help"][..],
        &["validate", "--help"],
        &["plan", "--help"],
        &["apply", "--help"],
        &["state", "pull", "--help"],
        &["show", "--help"],
        &["diff", "--help"],
        &["iam-policy", "--help"],
        &["completions", "--help"],
        &["man", "--help"],
    ] {
        let out = backupctl(args);
        assert_eq!(out.status.code(), Some(0));
        assert!(stdout(&out).contains("Example"), "{args:?}");
    }
    let out = backupctl(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("backupctl "));
}

#[test]
fn no_colour_when_not_a_terminal_or_when_asked() {
    for env in [&[][..], &[("NO_COLOR", "1")]] {
        let out = backupctl_env(&["plan", "--state", DEMO, "--at", AT], env);
        assert!(!stdout(&out).contains('\x1b'));
    }
}

#[test]
fn quiet_keeps_the_result_and_drops_notes() {
    let dir = std::env::temp_dir().join(format!("backupctl-quiet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.json");
    let args = [
        "plan",
        "--state",
        DEMO,
        "--at",
        AT,
        "--out",
        file.to_str().unwrap(),
    ];
    let loud = backupctl(&args);
    assert!(stderr(&loud).contains("Saved the plan to"));
    let mut q = args.to_vec();
    q.push("--quiet");
    let quiet = backupctl(&q);
    assert_eq!(stderr(&quiet), "");
    assert_eq!(stdout(&quiet), stdout(&loud));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_and_man_page_come_from_the_command_definitions() {
    for (shell, marker) in [
        ("bash", "_backupctl()"),
        ("zsh", "#compdef backupctl"),
        ("fish", "complete -c backupctl"),
    ] {
        let out = backupctl(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("iam-policy") && script.contains("max-plan-age"),
            "{shell}"
        );
    }
    let out = backupctl(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = stdout(&out);
    assert!(
        page.starts_with(".ie") && page.contains(".TH backupctl 1"),
        "{page}"
    );
    assert!(
        page.contains("apply") && page.contains("policies"),
        "{page}"
    );
}

/// Issue 10 item 7: a result that cannot be written (a full disk) fails the
/// command with exit 3 and one message, whatever the command.
#[test]
fn output_that_cannot_be_written_exits_3() {
    let plan_file = crate::emulator::TempDir::new("full");
    let saved = plan_file.path().join("plan.json");
    let saved = saved.to_str().unwrap();
    let made = backupctl(&["plan", "--state", DEMO, "--at", AT, "--out", saved]);
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let commands: [&[&str]; 9] = [
        &["plan", "--state", DEMO, "--at", AT],
        &["plan", "--state", DEMO, "--at", AT, "--format", "json"],
        &["plan", "--state", DEMO, "--at", AT, "--format", "markdown"],
        &["show", saved],
        &["diff", saved, saved],
        &["iam-policy"],
        &["validate"],
        &["man"],
        &["completions", "bash"],
    ];
    for args in commands {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full exists");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_backupctl"))
            .current_dir(crate::support::root())
            .args(args)
            .env_remove("BACKUPCTL_NOW")
            .stdout(full)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains("cannot write to standard output") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}
