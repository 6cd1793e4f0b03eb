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
