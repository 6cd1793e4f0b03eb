//! AMI deregistration protection (issue 13) against the emulator: every
//! image a policy with `deregistration_protection` keeps is protected by
//! the run after the one that made it; an expired one has its protection
//! disabled and, after EC2's 24-hour cooldown, is deregistered; a
//! protection someone set by hand is left on and blocks the deletion; and
//! the mass-deletion guard holds back the disabling with the deletions.

use crate::emulator::days::{made_on, plan_json, run, time};
use crate::emulator::{day, Emulator};
use crate::support::{stderr, stdout};
use chrono::Duration;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn policy(protection: &str) -> String {
    format!(
        "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = {{ Backup = \"daily\" }}\n\
         [backup]\nkind = \"ami\"\n{protection}[retention]\nmax_age = \"1 day\"\nkeep_last = 1\n"
    )
}

fn seeded(emu: &Emulator, count: u64, protection: &str) -> PathBuf {
    emu.seed(json!({"region": "us-east-1", "instances": [{"count": count, "tags": {"Backup": "daily"}}]}));
    emu.dir.policies(&[("web", &policy(protection))])
}

fn apply(emu: &Emulator, policies: &Path, d: i64) -> std::process::Output {
    let out = run(emu, policies, d, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "day {d}: {}", stderr(&out));
    out
}

fn protections(images: &[Value]) -> Vec<&str> {
    images
        .iter()
        .map(|i| i["deregistration_protection"].as_str().unwrap())
        .collect()
}

fn operations<'a>(plan: &'a Value, op: &str) -> Vec<&'a Value> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["operation"] == op)
        .collect()
}

#[test]
fn protected_images_are_unprotected_then_deregistered_after_the_cooldown() {
    let emu = Emulator::start();
    let policies = seeded(&emu, 2, "deregistration_protection = \"cooldown\"\n");
    let listed = emu.run(&policies, &["validate"], &[]);
    assert!(
        stdout(&listed)
            .contains("protects its images: deregistration protection with a 24-hour cooldown"),
        "{}",
        stdout(&listed)
    );
    apply(&emu, &policies, 0);
    assert_eq!(
        protections(&made_on(&emu, "images", 0)),
        ["disabled", "disabled"],
        "an image is protected by the next run"
    );

    // Day 1: yesterday's images get protected.
    let plan = plan_json(&emu, &policies, 1);
    let protect = operations(&plan, "protect_image");
    assert_eq!(protect.len(), 2, "{plan:#}");
    assert_eq!(plan["summary"]["protect"], 2);
    for c in &protect {
        assert_eq!(c["cooldown"], true);
        assert_eq!(c["reason"]["code"], "not_protected");
    }
    apply(&emu, &policies, 1);
    assert_eq!(
        protections(&made_on(&emu, "images", 0)),
        ["enabled-with-cooldown", "enabled-with-cooldown"]
    );

    // Day 2: day 0's images expired. Their protection is disabled, and
    // they wait 24 hours: blocked, with the date.
    let plan = plan_json(&emu, &policies, 2);
    let unprotect = operations(&plan, "unprotect_image");
    assert_eq!(unprotect.len(), 2, "{plan:#}");
    assert!(operations(&plan, "deregister_image").is_empty(), "{plan:#}");
    let blocked = plan["blocked"].as_array().unwrap();
    assert_eq!(blocked.len(), 2, "{blocked:#?}");
    for b in blocked {
        assert_eq!(b["reason"]["code"], "protected");
        assert_eq!(b["resource_type"], "image");
        assert_eq!(time(b["until"].as_str().unwrap()), time(&day(3)));
    }
    let text = run(&emu, &policies, 2, &["plan"]);
    assert!(
        stdout(&text).contains("~ unprotect image ami-")
            && stdout(&text).contains("EC2 keeps the image 24 hours more"),
        "{}",
        stdout(&text)
    );
    let out = apply(&emu, &policies, 2);
    assert!(
        stdout(&out).contains("2 unprotected") || stderr(&out).contains("2 unprotected"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    for p in protections(&made_on(&emu, "images", 0)) {
        assert!(p.starts_with("disabled after "), "{p}");
    }

    // Day 3, at the same hour: EC2's cooldown started a moment after
    // day 2's run, so it ends a moment after this one. Still blocked,
    // with EC2's own end, and nothing is sent that EC2 would refuse.
    let plan = plan_json(&emu, &policies, 3);
    assert!(operations(&plan, "deregister_image")
        .iter()
        .all(|c| c["depends_on"]["tags"]["backupctl:created-at"] != day(0)));
    let day0_ids: Vec<Value> = made_on(&emu, "images", 0)
        .iter()
        .map(|i| i["id"].clone())
        .collect();
    let day0: Vec<&Value> = plan["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| day0_ids.contains(&b["id"]))
        .collect();
    assert_eq!(day0.len(), 2, "{plan:#}");
    for b in day0 {
        assert_eq!(b["reason"]["code"], "protected");
        let until = time(b["until"].as_str().unwrap());
        assert!(until > time(&day(3)) && until < time(&day(3)) + Duration::minutes(5));
    }
    apply(&emu, &policies, 3);
    assert_eq!(made_on(&emu, "images", 0).len(), 2);

    // Day 4: gone, with their snapshots.
    apply(&emu, &policies, 4);
    assert_eq!(made_on(&emu, "images", 0), Vec::<Value>::new());
    let calls = emu.calls();
    assert_eq!(
        calls["us-east-1"]["EnableImageDeregistrationProtection"].as_u64(),
        Some(2 * 4),
        "each image of days 0 to 3 protected once: {calls:#?}"
    );

    // The IAM policy allows the calls made, protection changes on the
    // policies' own images only; and DeleteSnapshot, for the snapshots an
    // image leaves behind (here DeregisterImage deleted them all).
    let out = emu.run(&policies, &["iam-policy"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let (used, allowed) = crate::live::calls_and_allowed(calls, &doc);
    assert!(used.contains("ec2:DisableImageDeregistrationProtection"));
    let unused: Vec<&String> = allowed.difference(&used).collect();
    assert_eq!(unused, ["ec2:DeleteSnapshot"], "{used:?}");
    assert!(used.is_subset(&allowed), "{used:?} {allowed:?}");
    let protecting = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "ProtectOnlyBackupsOfThesePolicies")
        .expect("a statement for protection");
    assert_eq!(
        protecting["Condition"]["StringEquals"]["aws:ResourceTag/backupctl:policy"],
        json!(["web"])
    );
}

#[test]
fn a_protection_without_cooldown_goes_in_one_apply_and_one_set_by_hand_stays() {
    let emu = Emulator::start();
    let policies = seeded(&emu, 3, "deregistration_protection = true\n");
    apply(&emu, &policies, 0);
    apply(&emu, &policies, 1);
    let day0 = made_on(&emu, "images", 0);
    assert_eq!(protections(&day0), ["enabled-without-cooldown"; 3]);
    // Someone adds a cooldown to one by hand: backupctl disables it too
    // (its policy declares protection), and it waits for the cooldown.
    let slow = day0[0]["id"].as_str().unwrap().to_string();
    emu.control(
        "protect",
        json!({"region": "us-east-1", "image_id": slow, "cooldown": true}),
    );
    apply(&emu, &policies, 2);
    let left: Vec<Value> = made_on(&emu, "images", 0);
    assert_eq!(
        left.len(),
        1,
        "disabled, then deregistered in one apply: {left:#?}"
    );
    assert_eq!(left[0]["id"], slow.as_str());

    // Without the key in the policy, a protection is someone else's: it
    // stays on, and the deletion is blocked, saying how to let it go.
    let plain = emu.dir.policies(&[("web", &policy(""))]);
    let out = run(&emu, &plain, 5, &["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("does not declare, so backupctl leaves it on")
            && text.contains("disable-image-deregistration-protection --image-id"),
        "{text}"
    );
    assert!(!text.contains("~ unprotect"), "{text}");
}

#[test]
fn the_mass_deletion_guard_holds_back_the_unprotecting_with_the_deletions() {
    let emu = Emulator::start();
    // Six daily images, kept a week: all but the newest protected.
    let kept_a_week =
        policy("deregistration_protection = true\n").replace("\"1 day\"", "\"7 days\"");
    let week = seeded(&emu, 1, "");
    std::fs::write(week.join("web.toml"), kept_a_week).unwrap();
    for d in 0..6 {
        apply(&emu, &week, d);
    }
    // max_age cut to 1 day: five of six go at once (days 0 to 4); the
    // guard holds them back, and their protection stays on.
    let policies = emu
        .dir
        .policies(&[("web", &policy("deregistration_protection = true\n"))]);
    let out = run(&emu, &policies, 6, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("(and the 5 change(s) disabling the deregistration protection"),
        "{}",
        stderr(&out)
    );
    let dump = emu.dump("us-east-1");
    let images = dump["images"].as_array().unwrap();
    assert_eq!(images.len(), 7, "nothing deregistered");
    assert!(emu.calls()["us-east-1"]["DisableImageDeregistrationProtection"].is_null());
}
