//! Fixture-driven golden tests. Each `fixtures/<case>/` holds `inventory.json`,
//! `at` (the clock), optionally `policies/` (else the shipped `policies/`),
//! and the expected `plan.txt` (verbose text) and `plan.json`.

use crate::support::{backupctl, check_golden, root, stderr, stdout};

#[test]
fn every_fixture_plans_as_recorded() {
    let mut cases: Vec<_> = std::fs::read_dir(root().join("fixtures"))
        .expect("fixtures/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("inventory.json").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "expected at least 5 fixture cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let rel = |f: &str| format!("fixtures/{name}/{f}");
        let at = std::fs::read_to_string(case.join("at"))
            .unwrap_or_else(|_| panic!("fixtures/{name}/at holds the planning time"));
        let policies = if case.join("policies").is_dir() {
            rel("policies")
        } else {
            "policies".to_string()
        };
        let state = rel("inventory.json");
        let base = [
            "--policies",
            &policies,
            "plan",
            "--state",
            &state,
            "--at",
            at.trim(),
        ];
        for (args, golden) in [
            (&["-v"][..], "plan.txt"),
            (&["--format", "json"][..], "plan.json"),
            (&["--format", "markdown"][..], "plan.md"),
        ] {
            let mut all: Vec<&str> = base.to_vec();
            all.extend_from_slice(args);
            let out = backupctl(&all);
            if out.status.code() != Some(0) {
                failures.push(format!(
                    "{name}: exit {:?}: {}",
                    out.status.code(),
                    stderr(&out)
                ));
                continue;
            }
            if let Err(diff) = check_golden(&case.join(golden), &stdout(&out)) {
                failures.push(diff);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A saved plan renders exactly like the plan it was saved from, in every
/// format: `show` works from the file alone.
#[test]
fn show_renders_saved_plans_like_the_original() {
    for case in ["demo", "snapshot-volumes", "selection", "calendar"] {
        let file = format!("fixtures/{case}/plan.json");
        for (args, golden) in [
            (&["-v"][..], "plan.txt"),
            (&["--format", "json"][..], "plan.json"),
            (&["--format", "markdown"][..], "plan.md"),
        ] {
            let mut all = vec!["show", file.as_str()];
            all.extend_from_slice(args);
            let out = backupctl(&all);
            assert_eq!(out.status.code(), Some(0), "{case}: {}", stderr(&out));
            let expected =
                std::fs::read_to_string(root().join(format!("fixtures/{case}/{golden}"))).unwrap();
            assert_eq!(stdout(&out), expected, "{case} {golden}");
        }
    }
}

#[test]
fn plan_files_that_are_not_intact_backupctl_plans_are_refused() {
    let dir = std::env::temp_dir().join(format!("backupctl-planfiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let demo = std::fs::read_to_string(root().join("fixtures/demo/plan.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&demo).unwrap();
    let version = parsed["format_version"].as_str().unwrap().to_string();
    assert!(version.starts_with("1."), "{version}");
    let cases = [
        (
            "edited.json",
            demo.replace("ami-0c0ffee000000104", "ami-0c0ffee000000001"),
            "checksum does not match",
        ),
        (
            "major.json",
            demo.replace(
                &format!("\"format_version\": \"{version}\""),
                "\"format_version\": \"2.0\"",
            ),
            "format_version 2.0",
        ),
        (
            "truncated.json",
            demo[..demo.len() / 2].to_string(),
            "not a backupctl plan",
        ),
        (
            "inventory.json",
            std::fs::read_to_string(root().join("fixtures/demo/inventory.json")).unwrap(),
            "not a backupctl plan",
        ),
        ("empty.json", String::new(), "not a backupctl plan"),
        (
            "extra.json",
            demo.replacen("\"warnings\"", "\"surprise\": 1,\n  \"warnings\"", 1),
            "damaged",
        ),
    ];
    for (name, text, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        for cmd in ["show", "apply"] {
            let out = backupctl(&[cmd, path.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(1), "{cmd} {name}: {}", stderr(&out));
            assert!(
                stderr(&out).contains(want),
                "{cmd} {name}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("cannot use plan file"),
                "{}",
                stderr(&out)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The auditor's question on the shipped demo: what will be deleted by New
/// Year, and when (issue 9, item 4).
#[test]
fn the_demo_forecast_to_new_year_is_as_recorded() {
    for (format, file) in [("text", "forecast.txt"), ("json", "forecast.json")] {
        let out = backupctl(&[
            "forecast",
            "--state",
            "fixtures/demo/inventory.json",
            "--at",
            "2026-11-22T06:00:00Z",
            "--until",
            "2027-01-01",
            "--format",
            format,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        if let Err(e) = check_golden(&root().join("fixtures/demo").join(file), &stdout(&out)) {
            panic!("{e}");
        }
    }
}
