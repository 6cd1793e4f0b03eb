//! Locks on a snapshot alone, and over weeks of daily runs against the
//! in-memory provider, whose deletions EC2's way refuse a locked snapshot.

use super::*;
use crate::inventory::{Inventory, SnapshotLock, SnapshotState, Tags};
use crate::planner::plan;
use crate::planner::simulation::{self, policy, run, start};
use crate::policy::PolicySet;
use crate::provider::memory::MemoryProvider;

fn snapshot(lock: Option<(&str, i64)>) -> Snapshot {
    let now = now();
    Snapshot {
        id: "snap-1".into(),
        volume_id: "vol-1".into(),
        state: SnapshotState::Completed,
        started_at: now,
        tags: Tags::default(),
        lock: lock.map(|(state, days)| SnapshotLock {
            state: state.into(),
            expires_at: now + TimeDelta::days(days),
        }),
    }
}

fn now() -> DateTime<Utc> {
    "2026-12-01T00:00:00Z".parse().unwrap()
}

#[test]
fn a_lock_is_short_unless_it_holds_long_enough_in_a_mode_as_strong() {
    let want = now() + TimeDelta::days(7);
    let short = |lock, mode| short_of(&snapshot(lock), mode, want, now());
    use LockMode::{Compliance, Governance};
    assert!(short(None, Governance).unwrap().contains("not locked"));
    assert!(short(Some(("expired", 9)), Governance).is_some());
    assert!(
        short(Some(("governance", -1)), Governance).is_some(),
        "ended"
    );
    assert!(short(Some(("governance", 3)), Governance)
        .unwrap()
        .contains("too early"));
    assert_eq!(short(Some(("governance", 7)), Governance), None);
    assert_eq!(
        short(Some(("governance", 30)), Governance),
        None,
        "never shortened"
    );
    assert!(short(Some(("governance", 30)), Compliance)
        .unwrap()
        .contains("not a compliance"));
    assert_eq!(short(Some(("compliance-cooloff", 7)), Compliance), None);
    assert_eq!(
        short(Some(("compliance", 1)), Governance),
        None,
        "never weakened"
    );
    assert!(
        short(Some(("compliance", 1)), Compliance).is_some(),
        "lengthened"
    );
}

/// Daily backups kept 2 days, locked with `lock`.
fn policies(kind: &str, lock: &str) -> PolicySet {
    policy(kind, lock, "max_age = \"2 days\"\nkeep_last = 1\n", "")
}

fn fleet() -> Inventory {
    simulation::fleet(&[("i-1", &["vol-1a", "vol-1b"])], &[])
}

#[test]
fn thirty_daily_runs_lock_every_backup_and_delete_it_the_run_after_its_lock_ends() {
    let lock = "lock = { mode = \"governance\", days = 4 }\n";
    for kind in ["ami", "snapshot"] {
        let policies = policies(kind, lock);
        let ec2 = MemoryProvider::new(fleet(), start());
        let mut blocked_seen = 0;
        for day in 0..30 {
            let now = start() + TimeDelta::days(day);
            let p = run(&ec2, &policies, now);
            assert!(
                p.warnings.iter().any(|w| w.contains("outlasts `max_age`")),
                "{kind} day {day}: {:?}",
                p.warnings
            );
            for b in &p.blocked {
                blocked_seen += 1;
                assert_eq!(b.reason.code, ReasonCode::Locked, "{kind} day {day}");
                let until = b.until.expect("a locked backup says until when");
                assert!(until > now, "{kind} day {day}: blocked by an ended lock");
                assert_eq!(
                    b.image_ids.is_empty(),
                    kind == "snapshot",
                    "an image held by its snapshot's lock is named"
                );
            }
            let inv = ec2.inventory();
            let snapshots = &inv.regions["us-east-1"].snapshots;
            for s in snapshots {
                let made = s.aged_from();
                let age = now - made;
                let lock = s.lock.as_ref();
                if made < now || kind == "snapshot" {
                    // Made by an earlier run, or a set (locked by the run
                    // that made it): locked until made + 4 days.
                    let lock =
                        lock.unwrap_or_else(|| panic!("{kind} day {day}: {} unlocked", s.id));
                    assert_eq!(
                        lock.expires_at,
                        made + TimeDelta::days(4),
                        "{kind} day {day}"
                    );
                } else {
                    assert_eq!(lock, None, "a new AMI is locked by the next run");
                }
                // Deleted by the first run after its lock ended.
                assert!(
                    age <= TimeDelta::days(4),
                    "{kind} day {day}: {} is {age} old",
                    s.id
                );
            }
            // Two volumes: 2 snapshots a day, kept 5 days at most.
            assert!(
                snapshots.len() <= 10,
                "{kind} day {day}: {} snapshots",
                snapshots.len()
            );
            // Planning again locks only what this run made, and a set is
            // locked already.
            let again = plan(&policies, &inv, now);
            assert!(
                kind == "ami" || again.changes.is_empty(),
                "{kind} day {day}"
            );
            for c in &again.changes {
                let Action::Lock { expires_at, .. } = &c.action else {
                    panic!("{kind} day {day}: {} again", c.address());
                };
                assert_eq!(*expires_at, now + TimeDelta::days(4), "{}", c.address());
            }
        }
        assert!(
            blocked_seen > 20,
            "{kind}: the lock held deletions back ({blocked_seen})"
        );
    }
}

#[test]
fn a_compliance_lock_upgrades_a_governance_one_and_keeps_its_cool_off_only_when_new() {
    let policies = policies(
        "snapshot",
        "lock = { mode = \"compliance\", days = 1, cool_off_hours = 24 }\n",
    );
    let ec2 = MemoryProvider::new(fleet(), start());
    run(&ec2, &policies, start());
    let now = start() + TimeDelta::hours(2);
    let mut inv = ec2.inventory();
    let snapshots = &mut inv.regions.get_mut("us-east-1").unwrap().snapshots;
    snapshots[0].lock = Some(SnapshotLock {
        state: "governance".into(),
        expires_at: now + TimeDelta::days(30),
    });
    snapshots[1].lock = Some(SnapshotLock {
        state: "compliance".into(),
        expires_at: now + TimeDelta::hours(3),
    });
    let p = plan(&policies, &inv, now);
    let locks: Vec<&Action> = p
        .changes
        .iter()
        .map(|c| &c.action)
        .filter(|a| matches!(a, Action::Lock { .. }))
        .collect();
    let [Action::Lock {
        snapshot_ids,
        mode,
        expires_at,
        cool_off_hours,
        ..
    }] = locks.as_slice()
    else {
        panic!("one lock change: {locks:?}");
    };
    assert_eq!(
        snapshot_ids.len(),
        2,
        "the governance one, and the short compliance one"
    );
    assert_eq!(*mode, LockMode::Compliance);
    assert_eq!(*expires_at, start() + TimeDelta::days(1));
    assert_eq!(
        *cool_off_hours, None,
        "EC2 refuses a cool-off when extending a compliance lock"
    );
}

#[test]
fn a_locked_leftover_of_a_deregistered_image_waits_for_its_lock() {
    let policies = policies("ami", "lock = { mode = \"governance\", days = 4 }\n");
    let ec2 = MemoryProvider::new(fleet(), start());
    run(&ec2, &policies, start());
    // Day 1 locks day 0's image's snapshots until day 4.
    run(&ec2, &policies, start() + TimeDelta::days(1));
    let inv = ec2.inventory();
    let first = inv.regions["us-east-1"]
        .images
        .iter()
        .min_by_key(|i| i.created_at)
        .unwrap()
        .clone();
    // Deregistered by hand, its snapshots kept.
    let by_hand = Action::DeregisterImage {
        image_id: first.id.clone(),
        snapshot_ids: Vec::new(),
        kept_snapshot_ids: first.snapshot_ids.clone(),
    };
    ec2.run("us-east-1", &by_hand).unwrap();
    let deleted = |day: i64| -> usize {
        let p = plan(&policies, &ec2.inventory(), start() + TimeDelta::days(day));
        p.changes
            .iter()
            .flat_map(|c| c.action.deleted_ids())
            .filter(|id| first.snapshot_ids.iter().any(|s| s == id))
            .count()
    };
    assert_eq!(deleted(3), 0, "locked until day 4");
    assert_eq!(deleted(5), 2, "the lock ended: both go");
}
