//! The malformed-policy corpus: each `tests/bad-policies/<case>/` is a policy
//! directory that `validate` must reject with exit 1 and exactly the error
//! text in its `expected.stderr` (re-bless with BACKUPCTL_BLESS=1).

use crate::support::{backupctl, check_golden, root, stderr, stdout};

#[test]
fn every_malformed_policy_is_rejected_with_its_expected_error() {
    let dir = root().join("tests/bad-policies");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let policies = format!("tests/bad-policies/{name}");
        for command in [
            &["validate"][..],
            &["plan", "--state", "fixtures/demo/inventory.json"],
        ] {
            let mut args = vec!["--policies", policies.as_str()];
            args.extend_from_slice(command);
            let out = backupctl(&args);
            if out.status.code() != Some(1) {
                failures.push(format!(
                    "{name} {command:?}: exit {:?}, expected 1",
                    out.status.code()
                ));
            }
            if !stdout(&out).is_empty() {
                failures.push(format!(
                    "{name} {command:?}: printed a result: {}",
                    stdout(&out)
                ));
            }
            if let Err(diff) = check_golden(&case.join("expected.stderr"), &stderr(&out)) {
                failures.push(format!("{name} {command:?}: {diff}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
