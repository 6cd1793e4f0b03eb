//! Warnings: what would otherwise go wrong without a word. None of them stops
//! a plan; `--fail-on-warning` lets a scheduler fail the run on them. Each
//! names the policy and region, and the instance or backup concerned.

use super::sets::Unit;
use crate::inventory::{Backup, Instance, Inventory};
use crate::policy::{Policy, PolicySet, Regions};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use std::collections::BTreeSet;

/// A `backupctl:created-at` tag later than EC2's own time by more than this
/// is reported (a run's tag is normally a few seconds earlier).
pub const FUTURE_TAG_TOLERANCE_MINUTES: i64 = 5;

/// Planning for a moment before the inventory was observed: backups made in
/// between look as if they were made in the future.
pub fn clock(inventory: &Inventory, now: DateTime<Utc>, out: &mut Vec<String>) {
    if let Some(observed) = inventory.observed_at.filter(|o| *o > now) {
        out.push(format!(
            "planning as of {}, before the inventory was observed ({}): backups made in between count as brand new, and nothing before them is known; plan --at a time after {}",
            rfc3339(now),
            rfc3339(observed),
            rfc3339(observed)
        ));
    }
}

/// Policies whose lock outlasts their retention: expired backups stay,
/// blocked, until their locks end.
pub fn long_locks(policies: &PolicySet, out: &mut Vec<String>) {
    for p in policies.enabled() {
        if let Some(why) = p.backup.lock.and_then(|l| l.outlasts(&p.retention)) {
            out.push(format!("policy {}: {why}", p.name));
        }
    }
}

/// Policies that cannot back up anything where they should.
pub fn selection(
    policies: &PolicySet,
    inventory: &Inventory,
    selected_anywhere: Option<&BTreeSet<&str>>,
    out: &mut Vec<String>,
) {
    for policy in policies.enabled() {
        if let Regions::List(list) = &policy.target.regions {
            for r in list.iter().filter(|r| !inventory.regions.contains_key(*r)) {
                out.push(format!(
                    "policy {} targets region {r}, which was not observed; nothing is planned there",
                    policy.name
                ));
            }
        }
        if policy.target.uses_local() && inventory.local_instance.is_none() {
            out.push(format!(
                "policy {} selects the local instance, but which instance that is is unknown (instance metadata did not answer, or the inventory does not say); it backs up nothing",
                policy.name
            ));
        }
        if selected_anywhere.is_some_and(|s| !s.contains(policy.name.as_str())) {
            out.push(selects_nothing(&policy.name, "region"));
        }
    }
}

/// The warning for a policy that backs up nothing anywhere (`where`:
/// "region", or "account and region" in a plan that spans accounts).
pub fn selects_nothing(policy: &str, r#where: &str) -> String {
    format!("policy {policy} selects no instance in any observed {where}: it backs up nothing")
}

/// A selected instance none of whose volumes the policy selects.
pub fn no_volumes(policy: &Policy, region: &str, instance: &Instance, out: &mut Vec<String>) {
    let why = if policy.target.volume_tags.is_empty() {
        "it has no volume besides its boot volume, which exclude_boot_volume leaves out".to_string()
    } else {
        let wanted: Vec<String> = policy
            .target
            .volume_tags
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!(
            "none of its {} volume(s) matches volume_tags {}{}",
            instance.volumes.len(),
            wanted.join(", "),
            if policy.target.exclude_boot_volume {
                " (boot volume excluded)"
            } else {
                ""
            }
        )
    };
    out.push(format!(
        "policy {} in {region}: instance {} is selected, but {why}; it is not backed up",
        policy.name, instance.id
    ));
}

/// Backups whose `backupctl:created-at` is later than EC2's own time.
pub fn future_tags<'u>(
    policy: &Policy,
    region: &str,
    units: impl Iterator<Item = &'u Unit<'u>>,
    out: &mut Vec<String>,
) {
    let tolerance = TimeDelta::minutes(FUTURE_TAG_TOLERANCE_MINUTES);
    let mut late: Vec<String> = Vec::new();
    for unit in units {
        if let Some(tagged) = unit.tagged_time() {
            if tagged > unit.native_time() + tolerance {
                late.push(format!(
                    "{} (tag {}, EC2 {})",
                    unit.id(),
                    rfc3339(tagged),
                    rfc3339(unit.native_time())
                ));
            }
        }
    }
    if late.is_empty() {
        return;
    }
    late.sort();
    out.push(format!(
        "policy {} in {region}: {} backup(s) carry a backupctl:created-at later than EC2's own time (a fast clock, or BACKUPCTL_NOW left set during a real apply?): {}; new backups are still made on time, and such a backup is kept at least until its tag's age expires",
        policy.name,
        late.len(),
        listed(&late)
    ));
}

/// Backups whose source cannot be told: kept.
pub fn unknown_sources(policy: &Policy, region: &str, units: &[Unit], out: &mut Vec<String>) {
    if units.is_empty() {
        return;
    }
    let mut ids: Vec<String> = units.iter().map(|u| u.id().to_string()).collect();
    ids.sort();
    out.push(format!(
        "policy {} in {region}: {} backup(s) carry its tag but no source that can be told (no backupctl:source tag, or a copy's placeholder VolumeId): {}; they are kept, never deleted by retention; check and delete them by hand",
        policy.name,
        ids.len(),
        listed(&ids)
    ));
}

/// An AMI policy's snapshots that no image uses and that are not deleted
/// as leftovers (too young, of an unknown source, or no good image of their
/// source stays) (see [`super::leftovers`]): an image may still be on its
/// way, or a deregistration left them behind; saying so keeps them from
/// being forgotten.
pub fn strays(policy: &Policy, region: &str, strays: &[String], out: &mut Vec<String>) {
    if strays.is_empty() {
        return;
    }
    out.push(format!(
        "policy {} in {region}: {} snapshot(s) ({}) carry its tag but belong to no image (left behind by a deregistration?); backupctl deletes them once older than max_age while a good image of their source (backupctl:source) exists; check the others by hand",
        policy.name,
        strays.len(),
        listed(strays)
    ));
}

/// The first three, and "…" for the rest.
fn listed(items: &[String]) -> String {
    let mut shown = items
        .iter()
        .take(3)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 3 {
        shown += ", …";
    }
    shown
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
