//! Property-based fuzzing of everything that reads user input: the duration
//! parser, the policy parser, the state (inventory) loader and the plan
//! loader, with arbitrary strings and with random edits of valid documents.
//! Over 100,000 cases per run; the property is "never panics", plus, where
//! parsing succeeds, that the result is consistent.

use crate::support::root;
use backupctl::inventory::Inventory;
use backupctl::plan::json::JsonPlan;
use backupctl::policy::{parse_duration, parse_max_age, parse_policy};
use proptest::prelude::*;
use std::path::Path;

/// Applies up to a few random byte edits (replace, insert, delete) to `base`.
fn mutate(base: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut bytes = base.as_bytes().to_vec();
    for &(at, byte, op) in edits {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let i = at % bytes.len();
        match op % 3 {
            0 => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            _ => {
                bytes.remove(i);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40_000, ..ProptestConfig::default() })]

    #[test]
    fn durations_never_panic_and_round_trip(text in "\\PC{0,12}|\\+? ?[0-9]{1,12}([.,][0-9])? ?(min|h|d|w|mo|y|m|days?|months?|years?|weeks?|hours?|minutes?|fortnights?|secs?|never|ago|x)( [0-9]{1,4} ?(days?|hours?|weeks?|months?))?") {
        if let Ok(d) = parse_duration(&text) {
            prop_assert_eq!(parse_duration(&d.to_string()), Ok(d));
        }
        let _ = parse_max_age(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 25_000, ..ProptestConfig::default() })]

    #[test]
    fn policy_parser_never_panics_on_edited_policies(which in 0usize..4, e in edits()) {
        let bases = ["policies/web-daily.toml", "policies/db-snapshots.toml", "policies/bastion-weekly.toml", "policies/local-host.toml"];
        let text = mutate(&read(bases[which]), &e);
        if let Err(errors) = parse_policy(Path::new("p.toml"), &text) {
            prop_assert!(!errors.is_empty());
            for err in errors {
                prop_assert!(err.line <= text.lines().count() + 1, "{err}");
                prop_assert!(!err.message.is_empty());
            }
        }
    }

    #[test]
    fn policy_parser_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = parse_policy(Path::new("p.toml"), &text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8_000, ..ProptestConfig::default() })]

    #[test]
    fn state_loader_never_panics(e in edits()) {
        let text = mutate(&read("fixtures/selection/inventory.json"), &e);
        if let Ok(inv) = Inventory::from_json(&text) {
            prop_assert!(Inventory::from_json(&inv.to_json()).is_ok());
        }
    }

    #[test]
    fn plan_loader_never_panics_and_never_accepts_an_edit(e in edits()) {
        let original = read("fixtures/snapshot-volumes/plan.json");
        let text = mutate(&original, &e);
        let parsed = JsonPlan::parse(&text).and_then(JsonPlan::into_plan);
        if let Ok(plan) = parsed {
            // Only edits that leave the JSON meaning unchanged (whitespace)
            // may pass the checksum.
            let again = JsonPlan::from_plan(&plan).to_string_pretty();
            prop_assert_eq!(again, original);
        }
    }
}

/// Huge files are refused with one clear error, quickly, without a panic.
#[test]
fn huge_state_and_plan_files_are_refused() {
    let dir = crate::emulator::TempDir::new("huge");
    let junk = dir.path().join("junk.json");
    let mut text = String::with_capacity(100 * 1024 * 1024 + 16);
    text.push_str("{\"format_version\": 1, \"regions\": {\"x\": ");
    while text.len() < 100 * 1024 * 1024 {
        text.push_str("[[[[[[[[[[");
    }
    std::fs::write(&junk, &text).unwrap();
    drop(text);
    let sparse = dir.path().join("sparse.json");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(300 * 1024 * 1024)
        .unwrap();
    let junk = junk.to_str().unwrap();
    for (args, want) in [
        (vec!["plan", "--state", junk], "cannot use state file"),
        (vec!["show", junk], "cannot use plan file"),
        (
            vec!["show", sparse.to_str().unwrap()],
            "far larger than any plan",
        ),
    ] {
        let out = crate::support::backupctl(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = crate::support::stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one paragraph: {err}");
    }
}
