//! Deregistration protection on one image, and over weeks of daily runs
//! against the in-memory provider, which refuses to deregister a
//! protected image as EC2 does.

use super::*;
use crate::inventory::ImageState;
use crate::planner::plan;
use crate::planner::simulation::{self, policy, run, start};
use crate::policy::PolicySet;
use crate::provider::memory::MemoryProvider;
use chrono::TimeDelta;

/// Daily AMIs kept 2 days, with `protection` (a `deregistration_protection`
/// line, or nothing).
fn policies(protection: &str) -> PolicySet {
    policy(
        "ami",
        protection,
        "max_age = \"2 days\"\nkeep_last = 1\n",
        "",
    )
}

fn ec2() -> MemoryProvider {
    MemoryProvider::new(
        simulation::fleet(&[("i-1", &["vol-1a", "vol-1b"])], &[]),
        start(),
    )
}

fn image(words: Option<&str>) -> Image {
    Image {
        id: "ami-1".into(),
        name: "n".into(),
        state: ImageState::Available,
        created_at: start(),
        tags: Default::default(),
        snapshot_ids: vec![],
        deregistration_protection: words.map(str::to_string),
    }
}

#[test]
fn a_deletion_is_free_disabled_first_or_blocked_by_what_ec2_reports() {
    let now = start();
    let declared = &policies("deregistration_protection = true\n").policies[0];
    let undeclared = &policies("").policies[0];
    let gate_of = |words, policy| gate(&image(words), policy, now);
    assert_eq!(gate_of(None, declared), Gate::Free);
    assert_eq!(gate_of(Some("disabled"), undeclared), Gate::Free);
    assert_eq!(
        gate_of(Some("enabled-without-cooldown"), declared),
        Gate::UnprotectFirst
    );
    assert_eq!(gate_of(Some("enabled"), declared), Gate::UnprotectFirst);
    assert_eq!(
        gate_of(Some("enabled-with-cooldown"), declared),
        Gate::UnprotectAndWait(now + TimeDelta::hours(24))
    );
    let Gate::Blocked(None, why) = gate_of(Some("enabled-with-cooldown"), undeclared) else {
        panic!("a protection the policy does not declare is left on");
    };
    assert!(why.contains("does not declare"), "{why}");
    assert!(
        why.contains("disable-image-deregistration-protection --image-id ami-1"),
        "{why}"
    );
    let later = now + TimeDelta::hours(5);
    let cooling = "disabled after 2026-11-01T11:00:00.000Z";
    assert_eq!(
        gate_of(Some(cooling), undeclared),
        Gate::Blocked(
            Some(later),
            "its deregistration protection was disabled and its cooldown ends 2026-11-01T11:00:00Z; the first run after that deletes it".to_string()
        )
    );
    assert_eq!(
        gate(&image(Some(cooling)), undeclared, later),
        Gate::Free,
        "the cooldown is over"
    );
    for (unreadable, said) in [
        (
            "disabled after soon",
            "its cooldown runs (EC2 says \"disabled after soon\")",
        ),
        ("enabled-forever", "cannot read"),
    ] {
        let Gate::Blocked(None, why) = gate_of(Some(unreadable), declared) else {
            panic!("{unreadable}: an unreadable protection blocks");
        };
        assert!(why.contains(said), "{why}");
    }
}

#[test]
fn a_protection_is_added_or_strengthened_never_weakened() {
    let changes = |protection: &str, words: Option<&str>| {
        let policies = policies(protection);
        let policy = &policies.policies[0];
        let wanted = policy.backup.deregistration_protection.unwrap();
        let image = image(words);
        change(policy, wanted, "us-east-1", &Unit::Image(&image), start()).map(|c| c.action)
    };
    let protect = |cooldown| {
        Some(Action::Protect {
            image_id: "ami-1".into(),
            cooldown,
        })
    };
    let plain = "deregistration_protection = true\n";
    let cooldown = "deregistration_protection = \"cooldown\"\n";
    assert_eq!(changes(plain, None), protect(false));
    assert_eq!(changes(cooldown, None), protect(true));
    assert_eq!(changes(plain, Some("enabled-without-cooldown")), None);
    assert_eq!(changes(plain, Some("enabled-with-cooldown")), None);
    assert_eq!(
        changes(cooldown, Some("enabled-without-cooldown")),
        protect(true)
    );
    assert_eq!(
        changes(plain, Some("disabled after 2026-11-01T11:00:00Z")),
        protect(false),
        "a kept image whose protection someone disabled is protected again"
    );
    assert_eq!(changes(plain, Some("enabled-forever")), None);
}

#[test]
fn thirty_daily_runs_protect_every_kept_image_and_deregister_each_after_its_cooldown() {
    for (protection, cooldown) in [
        ("deregistration_protection = true\n", false),
        ("deregistration_protection = \"cooldown\"\n", true),
    ] {
        let policies = policies(protection);
        let ec2 = ec2();
        let mut gone = 0;
        for day in 0..30 {
            let now = start() + TimeDelta::days(day);
            let p = run(&ec2, &policies, now);
            let unprotected: Vec<&str> = p
                .changes
                .iter()
                .filter_map(|c| match &c.action {
                    Action::Unprotect { image_id } => Some(image_id.as_str()),
                    _ => None,
                })
                .collect();
            for c in &p.changes {
                if let Action::DeregisterImage { image_id, .. } = &c.action {
                    gone += 1;
                    assert!(
                        cooldown || unprotected.contains(&image_id.as_str()),
                        "day {day}: {image_id} deregistered without disabling its protection"
                    );
                }
            }
            for b in &p.blocked {
                assert!(cooldown, "day {day}: blocked without a cooldown: {b:?}");
                assert_eq!(b.reason.code, ReasonCode::Protected);
                assert_eq!(b.until, Some(now + TimeDelta::hours(24)), "day {day}");
                assert!(
                    unprotected.contains(&b.snapshot_id.as_str()),
                    "day {day}: {} waits for a cooldown nobody started",
                    b.snapshot_id
                );
            }
            let inv = ec2.inventory();
            for i in &inv.regions["us-east-1"].images {
                let age = now - i.created_at;
                // Kept 2 days; with a cooldown, one more run.
                let longest = TimeDelta::days(if cooldown { 3 } else { 2 });
                assert!(age <= longest, "day {day}: {} is {age} old", i.id);
                let words = i.deregistration_protection.as_deref();
                if i.created_at == now {
                    assert_eq!(words, None, "a new image is protected by the next run");
                } else if unprotected.contains(&i.id.as_str()) {
                    assert!(
                        words.is_some_and(|w| w.starts_with("disabled after")),
                        "day {day}: {words:?}"
                    );
                } else {
                    let wanted = if cooldown {
                        "enabled-with-cooldown"
                    } else {
                        "enabled-without-cooldown"
                    };
                    assert_eq!(words, Some(wanted), "day {day}: {}", i.id);
                }
            }
            // Planning again changes nothing but the protection of the
            // image this run made.
            let again = plan(&policies, &inv, now);
            let [only] = again.changes.as_slice() else {
                panic!("day {day}: {:?}", again.changes);
            };
            assert!(matches!(only.action, Action::Protect { .. }), "{only:?}");
        }
        assert!(gone >= 25, "{protection}: {gone} images deregistered");
    }
}

#[test]
fn a_protection_set_by_hand_blocks_the_deletion_and_is_left_on() {
    let policies = policies("");
    let ec2 = ec2();
    run(&ec2, &policies, start());
    let first = ec2.inventory().regions["us-east-1"].images[0].id.clone();
    let by_hand = Action::Protect {
        image_id: first.clone(),
        cooldown: false,
    };
    ec2.run("us-east-1", &by_hand).unwrap();
    for day in 1..6 {
        let p = run(&ec2, &policies, start() + TimeDelta::days(day));
        assert!(
            !p.changes
                .iter()
                .any(|c| c.action.target_id() == Some(&first)),
            "day {day}: {:?}",
            p.changes
        );
        if day >= 3 {
            let b = p.blocked.iter().find(|b| b.snapshot_id == first).unwrap();
            assert_eq!((b.reason.code, b.until), (ReasonCode::Protected, None));
            assert_eq!(b.what(), ("image", first.as_str()));
        }
    }
    assert!(ec2.inventory().regions["us-east-1"]
        .images
        .iter()
        .any(|i| i.id == first));
}
