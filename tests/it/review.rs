//! The pull-request workflow offline: plan base and head policies against
//! one saved state, diff them, and render Markdown.

use crate::emulator::TempDir;
use crate::support::{backupctl, root, stderr, stdout};
use serde_json::Value;

const AT: &str = "2026-11-22T06:00:00Z";

fn plan_to(policies: &str, out: &str) {
    let o = backupctl(&[
        "--policies",
        policies,
        "plan",
        "--state",
        "fixtures/demo/inventory.json",
        "--at",
        AT,
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn diff_shows_the_deletions_a_policy_change_adds() {
    let dir = TempDir::new("review");
    let head_policies = dir.path().join("head");
    std::fs::create_dir_all(&head_policies).unwrap();
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // The pull request shortens web-daily's retention.
        let text = text.replace(
            "max_age = \"30 days\"\nkeep_last = 3",
            "max_age = \"7 days\"\nkeep_last = 1",
        );
        std::fs::write(head_policies.join(path.file_name().unwrap()), text).unwrap();
    }
    let base = dir.path().join("base.json");
    let head = dir.path().join("head.json");
    plan_to("policies", base.to_str().unwrap());
    plan_to(head_policies.to_str().unwrap(), head.to_str().unwrap());
    let (b, h) = (base.to_str().unwrap(), head.to_str().unwrap());

    let out = backupctl(&["diff", b, h, "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("Deletions HEAD adds (BASE would not delete these):\n"),
        "{text}"
    );
    for ami in ["ami-0c0ffee000000102", "ami-0c0ffee000000103"] {
        assert!(
            text.contains(&format!("- web-daily/us-east-1/i-0a1b2c3d4e5f60001/{ami}")),
            "{ami}: {text}"
        );
    }
    assert!(
        text.contains("--- BASE\n+++ HEAD\n"),
        "a unified diff: {text}"
    );
    assert!(
        text.ends_with(
            "Diff: 2 deletions added, 0 removed; 0 creations added, 0 removed; 0 changed.\n"
        ),
        "{text}"
    );

    let out = backupctl(&["diff", b, h, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["summary"]["deletions_added"], 2);
    assert_eq!(json["same_inventory"], true);
    assert!(json["added"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actions"] == serde_json::json!(["delete"])));

    let same = backupctl(&["diff", b, b, "--detailed-exitcode"]);
    assert_eq!(same.status.code(), Some(0));
    assert!(stdout(&same).ends_with(
        "Diff: 0 deletions added, 0 removed; 0 creations added, 0 removed; 0 changed.\n"
    ));

    let md = backupctl(&["show", h, "--format", "markdown"]);
    assert!(
        stdout(&md).contains("> **Warning:** this plan deletes 5 backups."),
        "{}",
        stdout(&md)
    );
}
