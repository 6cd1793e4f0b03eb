//! Copies to another region (issue 13) against the emulator: made once,
//! found again by their tags, kept by their own retention, never
//! duplicated when an answer is lost, and queued at EC2's copy limits.

use crate::emulator::{day, Emulator};
use crate::support::{stderr, stdout};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const WEB: &str =
    "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
    [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"3 days\"\nkeep_last = 1\n\
    [[copy]]\nto_region = \"eu-west-1\"\n[copy.retention]\nmax_age = \"2 days\"\nkeep_last = 1\n";
const DATA: &str = "name = \"data\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
    volume_tags = { Snapshot = \"yes\" }\n[backup]\nkind = \"snapshot\"\n[retention]\nmax_age = \"3 days\"\nkeep_last = 1\n\
    [[copy]]\nto_region = \"eu-west-1\"\n[copy.retention]\nmax_age = \"2 days\"\nkeep_last = 1\n";

fn seeded(emu: &Emulator, count: u64) -> PathBuf {
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": count, "tags": {"Backup": "daily"},
        "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}},
                    {"device": "/dev/sdg", "tags": {"Snapshot": "yes"}}]}]}),
    );
    emu.dir.policies(&[("web", WEB), ("data", DATA)])
}

fn apply(emu: &Emulator, policies: &Path, d: i64, extra: &[(&str, &str)]) -> std::process::Output {
    let now = day(d);
    let mut env = vec![("BACKUPCTL_NOW", now.as_str())];
    env.extend_from_slice(extra);
    emu.run(policies, &["apply", "--auto-approve"], &env)
}

fn plan_json(emu: &Emulator, policies: &Path, d: i64) -> Value {
    let out = emu.run(
        policies,
        &["plan", "--format", "json"],
        &[("BACKUPCTL_NOW", &day(d))],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    crate::json_contract::check_document(&stdout(&out), &format!("day {d}"));
    serde_json::from_str(&stdout(&out)).expect("a JSON plan")
}

/// The copies in a region, by the `backupctl:copy-of` they carry: how
/// many resources carry each (an image copy's snapshots name the image).
fn copies(emu: &Emulator, region: &str) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let dump = emu.dump(region);
    let count = |list: &Value| {
        let mut out = BTreeMap::new();
        for r in list.as_array().unwrap() {
            if let Some(of) = r["tags"]["backupctl:copy-of"].as_str() {
                *out.entry(of.to_string()).or_insert(0) += 1;
            }
        }
        out
    };
    (count(&dump["images"]), count(&dump["snapshots"]))
}

#[test]
fn copies_reach_the_other_region_once_and_keep_their_own_retention() {
    let emu = Emulator::start();
    let policies = seeded(&emu, 2);
    let listed = emu.run(&policies, &["validate"], &[]);
    assert!(
        stdout(&listed).contains("copies to eu-west-1: max_age 2 days, keep_last 1"),
        "{}",
        stdout(&listed)
    );
    let first = apply(&emu, &policies, 0, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    // Day 1: yesterday's originals are due for copying, shown as such.
    let plan = plan_json(&emu, &policies, 1);
    let ops: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["region"] == "eu-west-1")
        .map(|c| c["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops.iter().filter(|o| **o == "copy_image").count(),
        2,
        "{ops:?}"
    );
    assert_eq!(
        ops.iter().filter(|o| **o == "copy_snapshots").count(),
        2,
        "{ops:?}"
    );
    let mut ever_copied = std::collections::BTreeSet::new();
    for d in 1..=6 {
        // The emulator makes backups available at once, so a second run
        // the same day copies the first run's new originals; after it,
        // nothing is left to do.
        for run in 0..2 {
            let out = apply(&emu, &policies, d, &[]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "day {d} run {run}: {}",
                stderr(&out)
            );
        }
        let again = plan_json(&emu, &policies, d);
        let left: Vec<&Value> = again["changes"].as_array().unwrap().iter().collect();
        assert!(left.is_empty(), "day {d}: more to do: {left:#?}");
        let (images, snapshots) = copies(&emu, "eu-west-1");
        // One image copy per original, with its two snapshots (root, sdf,
        // sdg: three); one snapshot copy per original snapshot.
        assert!(images.values().all(|n| *n == 1), "day {d}: {images:?}");
        let image_snapshots: usize = snapshots
            .iter()
            .filter(|(of, _)| of.contains("/ami-"))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(image_snapshots, images.len() * 3, "day {d}");
        assert!(
            snapshots
                .iter()
                .filter(|(of, _)| !of.contains("/ami-"))
                .all(|(_, n)| *n == 1),
            "day {d}: {snapshots:?}"
        );
        // Copy retention: 2 days, so per instance the copies of the last
        // two or three days' originals; never none once copying started.
        ever_copied.extend(images.keys().cloned());
        let per_instance = images.len() / 2;
        assert!(
            (1..=3).contains(&per_instance),
            "day {d}: {} image copies for 2 instances",
            images.len()
        );
    }
    // The originals' own retention (3 days) went on in us-east-1 alone.
    let dump = emu.dump("us-east-1");
    let originals = dump["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["tags"]["backupctl:policy"] == "web")
        .count();
    assert!((2..=8).contains(&originals), "{originals} originals");
    let calls = emu.calls();
    let copy_images: u64 = calls["eu-west-1"]["CopyImage"].as_u64().unwrap_or(0);
    // Exactly one CopyImage per copy ever made.
    assert_eq!(copy_images, ever_copied.len() as u64, "{calls:#?}");
    assert!(ever_copied.len() >= 12, "{ever_copied:?}");

    // The IAM policy allows exactly the calls made, copies only with the
    // policies' tag, and requests in the destination too.
    let out = emu.run(&policies, &["iam-policy"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let (used, allowed) = crate::live::calls_and_allowed(calls, &doc);
    assert!(used.contains("ec2:CopyImage") && used.contains("ec2:CopySnapshot"));
    assert_eq!(
        allowed, used,
        "the IAM policy must allow what is called, and nothing more"
    );
    let statements = doc["Statement"].as_array().unwrap();
    let copying = statements
        .iter()
        .find(|s| s["Sid"] == "CopyOnlyAsBackupsOfThesePolicies")
        .expect("a statement for the copies");
    assert_eq!(
        copying["Condition"]["StringEquals"]["aws:RequestTag/backupctl:policy"],
        json!(["data", "web"])
    );
    assert_eq!(
        copying["Condition"]["StringEquals"]["aws:RequestedRegion"],
        json!(["eu-west-1", "us-east-1"])
    );
    let tagging = statements
        .iter()
        .find(|s| s["Sid"] == "TagOnlyInTheCreatingCall")
        .unwrap();
    assert_eq!(
        tagging["Condition"]["StringEquals"]["ec2:CreateAction"],
        json!([
            "CreateImage",
            "CreateSnapshots",
            "CopyImage",
            "CopySnapshot"
        ])
    );
}

#[test]
fn a_copy_whose_answer_was_lost_is_found_not_made_again() {
    let emu = Emulator::start();
    let policies = seeded(&emu, 3);
    let first = apply(&emu, &policies, 0, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    // Every copy succeeds in EC2 and its answer never arrives (reset, or a
    // 500 after success).
    emu.faults(
        json!({"seed": 3, "actions": ["CopyImage", "CopySnapshot"], "lost": 0.5, "lost_500": 0.5}),
    );
    let out = apply(&emu, &policies, 1, &[("BACKUPCTL_CONSISTENCY_WAIT", "1")]);
    emu.faults(json!({}));
    let (images, snapshots) = copies(&emu, "eu-west-1");
    assert!(
        images.values().all(|n| *n == 1),
        "{images:?}\n{}",
        stderr(&out)
    );
    assert!(
        snapshots
            .iter()
            .filter(|(of, _)| !of.contains("/ami-"))
            .all(|(_, n)| *n == 1),
        "a snapshot copied twice: {snapshots:?}\n{}",
        stderr(&out)
    );
    // Whatever this run could not confirm, the next run finishes, and
    // then every original has exactly one copy.
    let next = apply(&emu, &policies, 1, &[]);
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    // The emulator makes backups available at once, so the second run also
    // copies the first run's new originals: 3 instances x 2 days.
    let (images, snapshots) = copies(&emu, "eu-west-1");
    assert_eq!(images.len(), 6, "{images:?}");
    let set_copies: Vec<_> = snapshots
        .iter()
        .filter(|(of, _)| !of.contains("/ami-"))
        .collect();
    assert_eq!(set_copies.len(), 12, "{snapshots:?}");
    assert!(set_copies.iter().all(|(_, n)| **n == 1), "{snapshots:?}");
}

#[test]
fn fifty_due_copies_wait_for_ec2s_limit_of_twenty_in_flight() {
    let emu = Emulator::start();
    // 25 instances, two data volumes each: 50 snapshot copies due at once.
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 25, "tags": {"Backup": "daily"},
        "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}},
                    {"device": "/dev/sdg", "tags": {"Snapshot": "yes"}}]}]}),
    );
    let policies = emu.dir.policies(&[("data", DATA)]);
    let first = apply(&emu, &policies, 0, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let originals: Vec<String> = emu.dump("us-east-1")["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["tags"]["backupctl:policy"] == "data")
        .map(|s| format!("us-east-1/{}", s["id"].as_str().unwrap()))
        .collect();
    assert_eq!(originals.len(), 50);
    // Copies stay pending for an hour of emulator clock.
    emu.control("ec2", json!({"pending_seconds": 3600}));
    let out = apply(&emu, &policies, 1, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a copy at the limit is postponed, not failed: {}",
        stderr(&out)
    );
    let (_, snapshots) = copies(&emu, "eu-west-1");
    assert_eq!(snapshots.len(), 20, "{snapshots:?}");
    let calls = emu.calls();
    let sent = calls["eu-west-1"]["CopySnapshot"].as_u64().unwrap();
    // Once refused, the region's other copies wait without being sent:
    // only those already in flight when the refusal came (apply has at
    // most 16 calls in flight per region) were sent; 50 without the wait.
    assert!(sent <= 20 + 16, "{sent} CopySnapshot calls for 20 copies");
    assert!(
        stderr(&out).contains("ResourceLimitExceeded") || stdout(&out).contains("postponed"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    // The pending copies are in flight: a plan now copies only the rest.
    let plan = plan_json(&emu, &policies, 1);
    let due: usize = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["operation"] == "copy_snapshots")
        .map(|c| c["source_ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(due, 30, "{plan:#}");
    // Copies complete an hour after they start (EC2's clock moves two
    // hours per run): each run copies what the limit lets it, never more
    // than 20 in flight, until every one of day 0's originals has its copy.
    let mut runs = 1;
    while copied_of(&emu, &originals) < 50 {
        assert!(
            runs < 8,
            "after {runs} runs: {} copied",
            copied_of(&emu, &originals)
        );
        emu.lag_seconds.set(7200 * runs);
        let out = apply(&emu, &policies, 1, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let dump = emu.dump("eu-west-1");
        let pending = dump["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["state"] == "pending")
            .count();
        assert!(pending <= 20, "{pending} copies in flight");
        runs += 1;
    }
    let (_, snapshots) = copies(&emu, "eu-west-1");
    assert!(snapshots.values().all(|n| *n == 1), "{snapshots:?}");
}

/// How many of `originals` (`region/id`) have a copy in eu-west-1.
fn copied_of(emu: &Emulator, originals: &[String]) -> usize {
    let (_, snapshots) = copies(emu, "eu-west-1");
    originals
        .iter()
        .filter(|o| snapshots.contains_key(*o))
        .count()
}

#[test]
fn a_saved_plan_copies_once_and_is_refused_once_copied() {
    let emu = Emulator::start();
    let policies = seeded(&emu, 1);
    let first = apply(&emu, &policies, 0, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let saved = emu.dir.path().join("day1.plan");
    let saved = saved.to_str().unwrap();
    let now = day(1);
    let out = emu.run(
        &policies,
        &["plan", "--out", saved],
        &[("BACKUPCTL_NOW", &now)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("+ copy image"), "{}", stdout(&out));
    let out = emu.run(&policies, &["apply", saved], &[("BACKUPCTL_NOW", &now)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (images, snapshots) = copies(&emu, "eu-west-1");
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(
        snapshots.keys().filter(|of| !of.contains("/ami-")).count(),
        2,
        "{snapshots:?}"
    );
    // The same saved plan again: its copies exist now, so it is refused
    // and nothing is copied twice.
    let again = emu.run(&policies, &["apply", saved], &[("BACKUPCTL_NOW", &now)]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("a fresh plan does not copy"),
        "{}",
        stderr(&again)
    );
    assert_eq!(copies(&emu, "eu-west-1").0.len(), 1);
}
