//! The Recycle Bin (issue 13) against the emulator: every deletion in the
//! plan says whether it can be restored from the Recycle Bin (which rules,
//! how many days) or is deleted for good; a policy with
//! `require_recycle_bin` deletes nothing that no rule retains; and rules
//! that cannot be read are a warning, not a failed run.

use crate::emulator::days::{plan_json, run};
use crate::emulator::Emulator;
use crate::support::{stderr, stdout};
use serde_json::{json, Value};

fn policy(name: &str, kind: &str, retention: &str) -> String {
    let volumes = if kind == "snapshot" {
        "volume_tags = { Snapshot = \"yes\" }\n"
    } else {
        ""
    };
    format!(
        "name = \"{name}\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = {{ Backup = \"daily\" }}\n{volumes}\
         [backup]\nkind = \"{kind}\"\n[retention]\nmax_age = \"1 day\"\nkeep_last = 1\n{retention}"
    )
}

fn deletions<'a>(plan: &'a Value, policy: &str) -> Vec<&'a Value> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["actions"] == json!(["delete"]) && c["policy"] == policy)
        .collect()
}

fn rules(emu: &Emulator, rules: Value) {
    emu.control("rbin_rules", json!({"region": "us-east-1", "rules": rules}));
}

#[test]
fn each_deletion_says_where_it_goes_and_a_required_bin_holds_the_rest() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 2, "tags": {"Backup": "daily"},
        "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}),
    );
    let policies = emu.dir.policies(&[
        ("web", &policy("web", "ami", "")),
        (
            "data",
            &policy("data", "snapshot", "require_recycle_bin = true\n"),
        ),
    ]);
    for d in [0, 1] {
        let out = run(&emu, &policies, d, &["apply", "--auto-approve"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    // Images are retained 14 days by a region-level rule; web's snapshots
    // 7 days by a tag-level one. Nothing retains data's snapshots.
    rules(
        &emu,
        json!([
            {"id": "images", "resource_type": "EC2_IMAGE", "days": 14},
            {"id": "web-snapshots", "resource_type": "EBS_SNAPSHOT", "days": 7,
             "tags": {"backupctl:policy": "web"}},
            {"id": "pending-rule", "resource_type": "EBS_SNAPSHOT", "days": 90, "status": "pending"},
        ]),
    );
    let plan = plan_json(&emu, &policies, 2);
    let web = deletions(&plan, "web");
    assert_eq!(web.len(), 2, "{plan:#}");
    for c in web {
        assert_eq!(
            c["recycle_bin"],
            json!({"retained": true, "rules": ["images", "web-snapshots"], "days": 7}),
            "the image and its snapshots are retained; the shorter rule says how long"
        );
    }
    assert!(deletions(&plan, "data").is_empty(), "{plan:#}");
    let held: Vec<&Value> = plan["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["reason"]["code"] == "no_recycle_bin")
        .collect();
    assert_eq!(held.len(), 2, "{plan:#}");
    for b in held {
        assert_eq!(b["policy"], "data");
        let why = b["reason"]["message"].as_str().unwrap();
        assert!(
            why.contains("no Recycle Bin rule retains it") && why.contains("require_recycle_bin"),
            "{why}"
        );
    }
    let markdown = stdout(&run(&emu, &policies, 2, &["plan", "--format", "markdown"]));
    assert!(
        markdown.contains("no Recycle Bin rule retains it") && !markdown.contains("used by"),
        "{markdown}"
    );
    let text = stdout(&run(&emu, &policies, 2, &["plan"]));
    assert!(
        text.contains("restorable from the Recycle Bin for 7 days (rules images, web-snapshots)"),
        "{text}"
    );

    // A rule for data's snapshots too: they go, to the bin.
    rules(
        &emu,
        json!([
            {"id": "images", "resource_type": "EC2_IMAGE", "days": 14},
            {"id": "all-snapshots", "resource_type": "EBS_SNAPSHOT", "days": 30,
             "exclude_tags": {"Scratch": ""}},
        ]),
    );
    let plan = plan_json(&emu, &policies, 2);
    let data = deletions(&plan, "data");
    assert_eq!(data.len(), 2, "{plan:#}");
    for c in data {
        assert_eq!(
            c["recycle_bin"],
            json!({"retained": true, "rules": ["all-snapshots"], "days": 30})
        );
    }

    // No rule for images: web's deletions are for good, and said so.
    rules(&emu, json!([]));
    let plan = plan_json(&emu, &policies, 2);
    for c in deletions(&plan, "web") {
        assert_eq!(c["recycle_bin"]["retained"], false, "{c:#}");
        assert_eq!(c["recycle_bin"]["why"], "no Recycle Bin rule retains it");
    }

    // Without the permission: a warning, no word on any deletion, and the
    // policy that requires a rule deletes nothing.
    emu.faults(json!({"deny": [{"region": "*", "actions": ["ListRules"]}]}));
    let plan = plan_json(&emu, &policies, 2);
    let warned = plan["warnings"].as_array().unwrap().iter().any(|w| {
        w.as_str()
            .unwrap()
            .contains("Recycle Bin rules of us-east-1 could not be read")
    });
    assert!(warned, "{:#}", plan["warnings"]);
    assert_eq!(deletions(&plan, "web").len(), 2);
    assert!(deletions(&plan, "web")
        .iter()
        .all(|c| c.get("recycle_bin").is_none()));
    assert!(deletions(&plan, "data").is_empty());
    let out = run(&emu, &policies, 2, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    emu.faults(json!({}));

    // The IAM policy allows the Recycle Bin's reads.
    let out = emu.run(&policies, &["iam-policy"], &[]);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let (used, allowed) = crate::live::calls_and_allowed(emu.calls(), &doc);
    assert!(
        used.contains("rbin:ListRules") && used.is_subset(&allowed),
        "{used:?}"
    );
    assert!(emu.calls()["us-east-1"]["GetRule"].as_u64() >= Some(5));
}
