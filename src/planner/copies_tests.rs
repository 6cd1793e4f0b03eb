//! The copy rules on small inventories, and over two months of daily runs
//! against the in-memory provider.

use crate::inventory::{Backup, Inventory, Snapshot};
use crate::plan::{Action, Plan};
use crate::planner::plan;
use crate::planner::simulation::{self, policy, run, start};
use crate::policy::{tags, PolicySet};
use crate::provider::memory::MemoryProvider;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeMap;

fn policies(kind: &str, copy: &str) -> PolicySet {
    policy(kind, "", "max_age = \"14 days\"\nkeep_last = 2\n", copy)
}

const COPY: &str =
    "[[copy]]\nto_region = \"eu-west-1\"\n[copy.retention]\nmax_age = \"5 days\"\nkeep_last = 1\n";

fn fleet() -> Inventory {
    simulation::fleet(
        &[("i-1", &["vol-1a", "vol-1b"]), ("i-2", &["vol-2a"])],
        &["eu-west-1"],
    )
}

fn copies_in<'a>(inv: &'a Inventory, region: &str) -> Vec<&'a dyn Backup> {
    inv.regions[region]
        .backups()
        .filter(|b| b.copy_of().is_some())
        .collect()
}

#[test]
fn sixty_daily_runs_keep_each_destination_to_its_own_retention() {
    for kind in ["ami", "snapshot"] {
        let policies = policies(kind, COPY);
        let ec2 = MemoryProvider::new(fleet(), start());
        for day in 0..60 {
            let now = start() + TimeDelta::days(day);
            let p = run(&ec2, &policies, now);
            let inv = ec2.inventory();
            // Copies of each source in eu-west-1: by their original's time.
            let mut by_source: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
            let mut copied = BTreeMap::new();
            for b in copies_in(&inv, "eu-west-1") {
                *copied.entry(b.copy_of().unwrap().to_string()).or_insert(0) += 1;
                if kind == "ami" && b.id().starts_with("snap-") {
                    continue;
                }
                let at = b.tags().get(tags::CREATED_AT).unwrap();
                let at = DateTime::parse_from_rfc3339(at)
                    .unwrap()
                    .with_timezone(&Utc);
                by_source
                    .entry(b.source().unwrap().to_string())
                    .or_default()
                    .push(at);
            }
            // Never two copies of one original.
            assert!(
                copied.values().all(|n| *n == 1 || kind == "ami"),
                "day {day}: {copied:?}"
            );
            if day == 0 {
                // The originals were only just made: nothing to copy yet.
                assert!(by_source.is_empty(), "day 0: {by_source:?}");
                continue;
            }
            for source in ["i-1", "i-2"] {
                let mut times = by_source.get(source).cloned().unwrap_or_default();
                times.sort();
                times.dedup();
                // Snapshot sets: one time per set (its two copies agree).
                let newest_original = inv.regions["us-east-1"]
                    .backups()
                    .filter(|b| b.source() == Some(source) && b.copy_of().is_none())
                    .map(|b| b.aged_from())
                    .max()
                    .unwrap();
                // Yesterday's backup is copied today; today's tomorrow.
                assert_eq!(
                    times.last().copied(),
                    Some(newest_original - TimeDelta::days(1)),
                    "day {day}, {kind} {source}: the newest copy is of the newest original but today's"
                );
                // max_age 5 days: the copies of the originals made in the
                // last 5 days are kept, older ones deleted.
                let oldest = *times.first().unwrap();
                assert!(
                    now - oldest <= TimeDelta::days(5),
                    "day {day}, {kind} {source}: a copy {} old survives",
                    now - oldest
                );
                assert!(times.len() <= 5, "day {day}: {} copies", times.len());
            }
            // Deleting originals (14 days, keep 2) never deletes copies, and
            // the other way round.
            for c in p.changes.iter().filter(|c| c.action.is_delete()) {
                assert!(
                    c.reason.message.starts_with("copy: ") == (c.region == "eu-west-1"),
                    "{}: {}",
                    c.address(),
                    c.reason.message
                );
            }
        }
    }
}

/// Day 0 applied (snapshot sets of both instances), and day 1's plan,
/// which copies them.
fn day_one() -> (PolicySet, MemoryProvider, DateTime<Utc>, Plan) {
    let policies = policies("snapshot", COPY);
    let ec2 = MemoryProvider::new(fleet(), start());
    run(&ec2, &policies, start());
    let now = start() + TimeDelta::days(1);
    ec2.set_now(now);
    let p = plan(&policies, &ec2.inventory(), now);
    (policies, ec2, now, p)
}

fn copying(p: &Plan) -> Vec<&crate::plan::Change> {
    p.changes
        .iter()
        .filter(|c| matches!(c.action, Action::Copy { .. }))
        .collect()
}

#[test]
fn an_original_is_copied_once_even_while_its_copy_is_pending() {
    // Day 1: the copies are made, and stay pending (no settle).
    let (policies, ec2, now, p) = day_one();
    let copies = copying(&p);
    assert_eq!(copies.len(), 2, "{:#?}", p.changes);
    for c in &copies {
        ec2.run(&c.region, &c.action).unwrap();
    }
    let again = plan(&policies, &ec2.inventory(), now);
    assert!(
        copying(&again).is_empty(),
        "copied again: {:#?}",
        again.changes
    );
}

#[test]
fn a_set_copied_in_part_gets_only_its_missing_snapshots() {
    let (policies, ec2, now, p) = day_one();
    let c = copying(&p)
        .into_iter()
        .find(|c| c.source == "i-1")
        .expect("i-1's set is copied");
    let Action::Copy { source_ids, .. } = &c.action else {
        unreachable!()
    };
    assert_eq!(source_ids.len(), 2);
    // Only the first snapshot's copy was made (a run cut off).
    let mut first = c.action.clone();
    if let Action::Copy { source_ids, .. } = &mut first {
        source_ids.truncate(1);
    }
    ec2.run(&c.region, &first).unwrap();
    let again = plan(&policies, &ec2.inventory(), now);
    let rest: Vec<_> = copying(&again)
        .into_iter()
        .filter(|c| c.source == "i-1")
        .collect();
    assert_eq!(rest.len(), 1, "{:#?}", again.changes);
    let Action::Copy {
        source_ids: rest_ids,
        ..
    } = &rest[0].action
    else {
        unreachable!()
    };
    assert_eq!(rest_ids, &source_ids[1..].to_vec());
    assert_eq!(rest[0].address(), c.address());
    // The part made is no good copy, even once the original is gone (the
    // copies carry the set's size): it could not restore the instance.
    ec2.settle();
    let mut inv = ec2.inventory();
    inv.regions
        .get_mut("us-east-1")
        .unwrap()
        .snapshots
        .retain(|s| !source_ids.contains(&s.id));
    let later = plan(&policies, &inv, now);
    let part = later
        .kept
        .iter()
        .find(|k| k.region == "eu-west-1" && k.source == "i-1")
        .expect("the partial copy is kept");
    assert_eq!(
        part.reason.code,
        crate::plan::ReasonCode::NoNewerGood,
        "{:?}",
        part.reason
    );
}

#[test]
fn copies_of_a_destination_no_longer_copied_to_are_listed_never_deleted() {
    let ec2 = MemoryProvider::new(fleet(), start());
    let copying = policies("ami", COPY);
    for day in 0..4 {
        run(&ec2, &copying, start() + TimeDelta::days(day));
    }
    let copies = copies_in(&ec2.inventory(), "eu-west-1").len();
    assert!(copies > 0);
    // The rule is removed; 30 days later nothing in eu-west-1 is deleted.
    let stopped = policies("ami", "");
    let now = start() + TimeDelta::days(34);
    let p = plan(&stopped, &ec2.inventory(), now);
    assert!(
        !p.changes.iter().any(|c| c.region == "eu-west-1"),
        "{:#?}",
        p.changes
    );
    let listed = p
        .out_of_scope
        .iter()
        .filter(|o| o.region == "eu-west-1")
        .count();
    // Images only: an image's snapshots are listed with it.
    let images = ec2.inventory().regions["eu-west-1"].images.len();
    assert!(images > 0 && images < copies, "{images} of {copies}");
    assert_eq!(listed, images);
}

#[test]
fn a_copy_never_matches_by_volume_or_description() {
    // A snapshot of the policy in eu-west-1 with the placeholder VolumeId
    // and no copy-of tag is not a copy of anything: the original is still
    // copied.
    let policies = policies("snapshot", COPY);
    let ec2 = MemoryProvider::new(fleet(), start());
    run(&ec2, &policies, start());
    let mut inv = ec2.inventory();
    let original = inv.regions["us-east-1"].snapshots[0].clone();
    inv.regions
        .get_mut("eu-west-1")
        .unwrap()
        .snapshots
        .push(Snapshot {
            id: "snap-lookalike".into(),
            volume_id: crate::inventory::PLACEHOLDER_VOLUME.into(),
            ..original
        });
    let p = plan(&policies, &inv, start() + TimeDelta::days(1));
    assert_eq!(copying(&p).len(), 2);
}
