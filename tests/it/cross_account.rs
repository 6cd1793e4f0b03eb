//! Copies to another account (issue 13, `[[copy]] to_account`) against
//! the emulator: the production account's backups are shared with the
//! disaster-recovery account, copied there by that account into its own
//! key, unshared once the copies are made, and kept there by their own
//! retention; the plan shows each step, a saved plan applies, and a share
//! that fails stops its copy with a message that says what is missing.

use crate::emulator::{days, Emulator};
use crate::support::{stderr, stdout};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

const PROD: &str = "111111111111";
const DR: &str = "444444444444";

const ACCOUNTS: &str = r#"
[defaults]
role_name = "backupctl"

[[account]]
id = "111111111111"
name = "prod"

[[account]]
id = "444444444444"
name = "dr"
"#;

const WEB: &str = "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\naccounts = [\"prod\"]\n\
    instance_tags = { Backup = \"daily\" }\n[backup]\nkind = \"ami\"\n[retention]\nmax_age = \"2 days\"\nkeep_last = 1\n\
    [[copy]]\nto_region = \"eu-west-1\"\nto_account = \"dr\"\nkms_key = \"alias/dr-backups\"\n\
    [copy.retention]\nmax_age = \"3 days\"\nkeep_last = 2\n";
const DATA: &str = "name = \"data\"\n[target]\nregions = [\"us-east-1\"]\naccounts = [\"prod\"]\n\
    instance_tags = { Backup = \"daily\" }\nvolume_tags = { Snapshot = \"yes\" }\n[backup]\nkind = \"snapshot\"\n\
    [retention]\nmax_age = \"2 days\"\nkeep_last = 1\n\
    [[copy]]\nto_region = \"eu-west-1\"\nto_account = \"444444444444\"\nkms_key = \"alias/dr-backups\"\n";

fn world() -> (Emulator, PathBuf) {
    let emu = Emulator::start();
    emu.seed(json!({
        "account": PROD,
        "region": "us-east-1",
        "instances": [{"count": 1, "tags": {"Backup": "daily"},
            "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}},
                        {"device": "/dev/sdg", "tags": {"Snapshot": "yes"}}]}],
    }));
    let policies = emu.dir.policies(&[("web", WEB), ("data", DATA)]);
    std::fs::write(policies.join("accounts.toml"), ACCOUNTS).unwrap();
    (emu, policies)
}

fn dump(emu: &Emulator, account: &str, region: &str) -> Value {
    emu.control("dump", json!({"account": account, "region": region}))
}

fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key].as_array().unwrap()
}

fn ops(plan: &Value) -> Vec<(String, String, String)> {
    list(plan, "changes")
        .iter()
        .map(|c| {
            (
                c["account"].as_str().unwrap_or("").to_string(),
                c["operation"].as_str().unwrap().to_string(),
                c["region"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn count(ops: &[(String, String, String)], account: &str, op: &str) -> usize {
    ops.iter().filter(|o| o.0 == account && o.1 == op).count()
}

/// Every resource of `account`/`region` shared with another account,
/// by the emulator's permissions and by backupctl's tag.
fn shared(emu: &Emulator, account: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let d = dump(emu, account, "us-east-1");
    let (mut by_permission, mut by_tag) = (BTreeSet::new(), BTreeSet::new());
    for r in list(&d, "images").iter().chain(list(&d, "snapshots")) {
        let id = r["id"].as_str().unwrap().to_string();
        if !r["shared_with"].as_array().unwrap().is_empty() {
            by_permission.insert(id.clone());
        }
        let key = format!("backupctl:shared-with:{DR}");
        if r["tags"].get(&key).is_some() {
            by_tag.insert(id);
        }
    }
    (by_permission, by_tag)
}

#[test]
fn backups_are_shared_copied_by_the_other_account_and_unshared() {
    let (emu, policies) = world();
    let out = days::run(&emu, &policies, 0, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Day 1: the originals are shared by prod and copied by dr.
    let plan = days::plan_json(&emu, &policies, 1);
    let o = ops(&plan);
    assert_eq!(count(&o, PROD, "share_image"), 1, "{o:?}");
    assert_eq!(count(&o, PROD, "share_snapshot"), 1, "{o:?}");
    assert_eq!(count(&o, DR, "copy_image"), 1, "{o:?}");
    assert_eq!(count(&o, DR, "copy_snapshots"), 1, "{o:?}");
    let copy = list(&plan, "changes")
        .iter()
        .find(|c| c["operation"] == "copy_image")
        .unwrap();
    assert_eq!(copy["source_account"], PROD);
    assert_eq!(copy["region"], "eu-west-1");
    assert_eq!(copy["kms_key"], "alias/dr-backups");
    let share = list(&plan, "changes")
        .iter()
        .find(|c| c["operation"] == "share_image")
        .unwrap();
    assert_eq!(share["share_with"], DR);
    assert_eq!(share["region"], "us-east-1");
    let text = stdout(&days::run(&emu, &policies, 1, &["plan"]));
    assert!(
        text.contains("share image ") && text.contains(&format!("with account {DR}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("from account {PROD}, us-east-1")),
        "{text}"
    );

    // A saved plan holding changes across accounts applies as saved.
    let saved = emu.dir.path().join("day1.plan.json");
    let out = days::run(
        &emu,
        &policies,
        1,
        &["plan", "--out", saved.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = days::run(
        &emu,
        &policies,
        1,
        &["apply", "--auto-approve", saved.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let copies = dump(&emu, DR, "eu-west-1");
    let of = |r: &Value| r["tags"]["backupctl:copy-of"].as_str().map(str::to_string);
    let image_copies: Vec<String> = list(&copies, "images").iter().filter_map(of).collect();
    assert_eq!(image_copies.len(), 1, "{copies:#}");
    assert!(
        image_copies[0].starts_with(&format!("{PROD}/us-east-1/ami-")),
        "{image_copies:?}"
    );
    let set_copies = list(&copies, "snapshots")
        .iter()
        .filter_map(of)
        .filter(|o| o.contains("/snap-"))
        .count();
    assert_eq!(set_copies, 2, "one copy per snapshot of the set");
    let (by_permission, by_tag) = shared(&emu, PROD);
    assert!(!by_permission.is_empty());
    assert_eq!(by_permission, by_tag, "every share is recorded in its tag");

    // The copies are made: the next plan unshares what was copied (and
    // shares and copies the originals the saved plan made), the one after
    // unshares those, and then nothing stays shared.
    let copied = |plan: &Value, op: &str| -> Vec<String> {
        list(plan, "changes")
            .iter()
            .filter(|c| c["operation"] == op)
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let plan = days::plan_json(&emu, &policies, 1);
    let o = ops(&plan);
    assert_eq!(count(&o, PROD, "unshare_snapshot"), 1, "{o:?}");
    let day0 = image_copies[0].rsplit('/').next().unwrap().to_string();
    assert_eq!(
        copied(&plan, "unshare_image"),
        std::slice::from_ref(&day0),
        "{o:?}"
    );
    let day1 = copied(&plan, "share_image");
    assert_eq!(day1.len(), 1, "{o:?}");
    assert_ne!(day1[0], day0);
    let out = days::run(&emu, &policies, 1, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = days::plan_json(&emu, &policies, 1);
    assert_eq!(copied(&plan, "unshare_image"), day1, "{:?}", ops(&plan));
    assert!(
        ops(&plan)
            .iter()
            .all(|(a, op, _)| a == PROD && op.starts_with("unshare_")),
        "{:?}",
        ops(&plan)
    );
    let out = days::run(&emu, &policies, 1, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        shared(&emu, PROD),
        (BTreeSet::new(), BTreeSet::new()),
        "nothing stays shared"
    );

    // Days 2 to 8, three runs a day (the emulator makes backups available
    // at once: the first run makes the day's backup, the second copies it,
    // the third unshares it): every day's backup reaches dr once; dr
    // keeps its own retention (3 days, at least 2 copies); prod's
    // retention never touches them.
    let mut ever: BTreeSet<String> = image_copies.into_iter().collect();
    for d in 2..=8 {
        for run in 0..3 {
            let out = days::run(&emu, &policies, d, &["apply", "--auto-approve"]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "day {d} run {run}: {}",
                stderr(&out)
            );
        }
        let left = days::plan_json(&emu, &policies, d);
        assert!(ops(&left).is_empty(), "day {d}: {:?}", ops(&left));
        let copies = dump(&emu, DR, "eu-west-1");
        let images: Vec<String> = list(&copies, "images").iter().filter_map(of).collect();
        ever.extend(images.iter().cloned());
        assert!(
            (2..=4).contains(&images.len()),
            "day {d}: {} image copies: {images:?}",
            images.len()
        );
        assert_eq!(shared(&emu, PROD).0, BTreeSet::new(), "day {d}");
        let originals = list(&dump(&emu, PROD, "us-east-1"), "images").len();
        assert!(originals <= 3, "day {d}: {originals} originals in prod");
    }
    // One CopyImage per copy ever made, all by dr; every share undone.
    let calls = emu.control("calls", json!({}))["by_account"].clone();
    assert_eq!(
        calls[DR]["CopyImage"].as_u64(),
        Some(ever.len() as u64),
        "{calls:#}"
    );
    assert!(ever.len() >= 8, "{ever:?}");
    assert!(calls[PROD].get("CopyImage").is_none());
    assert_eq!(
        calls[PROD]["ModifyImageAttribute"].as_u64(),
        Some(2 * ever.len() as u64),
        "one share and one unshare per image: {calls:#}"
    );

    // The member role's policy allows every call made in both accounts.
    let out = emu.run(
        &policies,
        &[
            "iam-policy",
            "--principal",
            "arn:aws:iam::999999999999:role/backupctl-runner",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let member = find_statements(&doc).expect("a permission policy");
    let by_region = emu.calls();
    let (used, allowed) = crate::live::calls_and_allowed(by_region, &member);
    let missing: Vec<&String> = used
        .iter()
        // AssumeRole is the runner's, allowed by the other document.
        .filter(|a| !allowed.contains(*a) && *a != "ec2:AssumeRole")
        .collect();
    assert!(missing.is_empty(), "not allowed: {missing:?}");
    for action in [
        "ec2:ModifyImageAttribute",
        "ec2:ModifySnapshotAttribute",
        "ec2:DeleteTags",
    ] {
        assert!(used.contains(action), "{action} never called");
    }
    let sharing = list(&member, "Statement")
        .iter()
        .find(|s| s["Sid"] == "ShareOnlyBackupsOfThesePolicies")
        .expect("a statement for the shares");
    assert_eq!(
        sharing["Condition"]["StringEquals"]["aws:ResourceTag/backupctl:policy"],
        json!(["data", "web"])
    );
}

/// The permission policy (the document with `Statement`s of EC2 actions)
/// in `iam-policy`'s output, wherever the accounts form puts it.
fn find_statements(doc: &Value) -> Option<Value> {
    if doc["Statement"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["Sid"] == "ObserveInstancesAndBackups"))
    {
        return Some(doc.clone());
    }
    match doc {
        Value::Object(map) => map.values().find_map(find_statements),
        Value::Array(items) => items.iter().find_map(find_statements),
        _ => None,
    }
}

#[test]
fn a_share_that_fails_stops_its_copy_and_says_why() {
    let (emu, policies) = world();
    let out = days::run(&emu, &policies, 0, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    emu.faults(json!({"deny": [
        {"region": "us-east-1", "account": PROD, "actions": ["ModifyImageAttribute"]},
    ]}));
    let out = days::run(&emu, &policies, 1, &["apply", "--auto-approve"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("needs the original shared"), "{err}");
    assert!(err.contains("customer managed KMS key"), "{err}");
    // The snapshot set was shared and copied; the image was not copied.
    let copies = dump(&emu, DR, "eu-west-1");
    assert!(list(&copies, "images").is_empty(), "{copies:#}");
    assert_eq!(list(&copies, "snapshots").len(), 2, "{copies:#}");
    // Its tag was written before the share that failed: the next run,
    // with the share allowed, shares it again and copies it (with the
    // image the first run made).
    emu.faults(json!({}));
    let out = days::run(&emu, &policies, 1, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(list(&dump(&emu, DR, "eu-west-1"), "images").len(), 2);
}

/// Every copy from the other account succeeds in EC2 and its answer
/// is lost: the image copy's client token and the snapshot copies'
/// look-up by their account-qualified `backupctl:copy-of` find what was
/// made, so nothing is copied twice.
#[test]
fn a_copy_across_accounts_whose_answer_was_lost_is_not_made_twice() {
    let (emu, policies) = world();
    let out = days::run(&emu, &policies, 0, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    emu.faults(json!({"seed": 5, "actions": ["CopyImage", "CopySnapshot"], "lost": 1.0}));
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[
            ("BACKUPCTL_NOW", &crate::emulator::day(1)),
            ("BACKUPCTL_CONSISTENCY_WAIT", "1"),
        ],
    );
    let injected = emu.control("calls", json!({}))["faults"].clone();
    assert!(
        injected.as_object().is_some_and(|f| !f.is_empty()),
        "no answer was lost: {injected}"
    );
    emu.faults(json!({}));
    let out = format!("exit {:?}: {}", out.status.code(), stderr(&out));
    let next = days::run(&emu, &policies, 1, &["apply", "--auto-approve"]);
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    let copies = dump(&emu, DR, "eu-west-1");
    let mut seen = std::collections::BTreeMap::new();
    for r in list(&copies, "images")
        .iter()
        .chain(list(&copies, "snapshots"))
    {
        if let Some(of) = r["tags"]["backupctl:copy-of"].as_str() {
            *seen.entry(of.to_string()).or_insert(0) += 1;
        }
    }
    let images = seen.keys().filter(|k| k.contains("/ami-")).count();
    // Day 0's originals and day 1's (made by the first run, copied by
    // the second), each copied once; an image copy's snapshot names its
    // image.
    assert!(images >= 2, "{seen:?}\n{out}");
    assert!(
        seen.iter()
            .filter(|(of, _)| of.contains("/snap-"))
            .all(|(_, n)| *n == 1),
        "a snapshot copied twice: {seen:?}\n{out}"
    );
    assert_eq!(
        list(&copies, "images").len(),
        seen.keys().filter(|k| k.contains("/ami-")).count(),
        "an image copied twice: {copies:#}\n{out}"
    );
}
