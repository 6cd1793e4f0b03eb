//! Snapshot locks as declared state: a policy's `lock` holds every
//! snapshot of its backups, and a held snapshot holds its backup against
//! retention.
//!
//! A lock ends at the backup's age origin (the time retention counts its
//! age from) plus the lock's days. That end is the same in every run, so
//! planning again never extends a lock, and a lock no longer than
//! `max_age` never blocks retention.
//!
//! Locks are only added or lengthened here, never shortened or removed: a
//! policy whose lock is shortened or removed leaves the existing locks to
//! run out (locks exist to survive mistakes, and a shorter lock may be
//! one). A compliance lock is never turned into a governance one (EC2
//! refuses it after the cool-off anyway).
//!
//! Any lock that holds a snapshot blocks its deletion, whoever set it: the
//! deletion is shown as blocked with the date the lock ends, and the first
//! run after that date deletes it. Locks are observed only in regions where
//! some policy declares `lock`.

use super::deletions::display_source;
use super::index::RegionIndex;
use super::sets::Unit;
use crate::inventory::{Backup, Snapshot};
use crate::plan::{Action, Change, Precondition, Reason, ReasonCode, ResourceType};
use crate::policy::{Lock, LockMode, Policy};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// A lock that would end sooner than this after the plan is not set: it
/// protects nothing, and EC2 refuses an end that has passed by the time
/// apply sends it.
const SHORTEST_LOCK: TimeDelta = TimeDelta::hours(1);

/// How much earlier than wanted an observed lock may end and still count
/// (EC2 reports times to the millisecond; a lock set from a duration ends
/// seconds after one set from the date).
const SLACK: TimeDelta = TimeDelta::minutes(5);

/// The snapshots a lock of `unit` covers, as observed: an image's block
/// device snapshots that its policy owns (the ones deleted with it), a
/// set's snapshots, or the one legacy snapshot.
pub fn snapshots_of<'a>(unit: &Unit<'a>, index: &RegionIndex<'a>) -> Vec<&'a Snapshot> {
    match unit {
        Unit::Image(image) => image
            .snapshot_ids
            .iter()
            .filter_map(|id| index.snapshots.get(id.as_str()).copied())
            .filter(|s| s.policy() == image.policy())
            .collect(),
        Unit::Set(set) => set.snapshots.clone(),
        Unit::Legacy(s) => vec![*s],
    }
}

/// The lock that holds `unit` against deletion at `now`, if any: the
/// snapshot whose lock ends last, and that end.
pub fn held<'a>(
    unit: &Unit<'a>,
    index: &RegionIndex<'a>,
    now: DateTime<Utc>,
) -> Option<(&'a str, DateTime<Utc>)> {
    snapshots_of(unit, index)
        .into_iter()
        .filter_map(|s| {
            let lock = s.lock.as_ref().filter(|l| l.holds(now))?;
            Some((s.id.as_str(), lock.expires_at))
        })
        .max_by_key(|(_, until)| *until)
}

/// When `unit` of `policy` (which declares `lock`) stays: the change that
/// locks those of its snapshots the lock does not hold yet as it should.
pub fn change(
    policy: &Policy,
    lock: &Lock,
    region: &str,
    unit: &Unit,
    index: &RegionIndex,
    now: DateTime<Utc>,
) -> Option<Change> {
    if !(unit.is_good() || unit.is_pending()) {
        // A failed backup is not worth keeping for longer.
        return None;
    }
    let expires_at = unit.aged_from() + TimeDelta::days(i64::from(lock.days));
    if expires_at - now < SHORTEST_LOCK {
        return None;
    }
    let short: Vec<(&Snapshot, String)> = snapshots_of(unit, index)
        .into_iter()
        .filter_map(|s| Some((s, short_of(s, lock.mode, expires_at, now)?)))
        .collect();
    let why = short.first()?.1.clone();
    let snapshots: Vec<&Snapshot> = short.into_iter().map(|(s, _)| s).collect();
    let compliance_already = snapshots.iter().any(|s| {
        s.lock
            .as_ref()
            .is_some_and(|l| l.holds(now) && l.is_compliance())
    });
    let cool_off_hours =
        (lock.mode == LockMode::Compliance && lock.cool_off_hours > 0 && !compliance_already)
            .then_some(lock.cool_off_hours);
    let resource_type = match unit {
        Unit::Image(_) => ResourceType::Image,
        _ => ResourceType::Snapshot,
    };
    Some(Change {
        account: None,
        policy: policy.name.clone(),
        region: region.to_string(),
        source: display_source(unit.source().unwrap_or("")),
        action: Action::Lock {
            resource_type,
            id: unit.id().to_string(),
            snapshot_ids: snapshots.iter().map(|s| s.id.clone()).collect(),
            mode: lock.mode,
            expires_at,
            cool_off_hours,
        },
        reason: Reason {
            code: ReasonCode::NotLocked,
            message: format!("{why}; the policy locks its backups for {} days", lock.days),
        },
        backups_left: None,
        recycle_bin: None,
        precondition: Precondition::Delete {
            state: unit.state_name(),
            tags: unit.tags().clone(),
        },
    })
}

/// Why `snapshot` is not locked as wanted (`None`: it is). A compliance
/// lock is left alone by a governance policy: it cannot be changed into
/// one, and it holds at least as well.
fn short_of(
    snapshot: &Snapshot,
    mode: LockMode,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<String> {
    let Some(lock) = snapshot.lock.as_ref().filter(|l| l.holds(now)) else {
        return Some(format!("{} is not locked", snapshot.id));
    };
    if lock.is_compliance() && mode == LockMode::Governance {
        return None;
    }
    let until = lock.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    if mode == LockMode::Compliance && !lock.is_compliance() {
        return Some(format!(
            "{} has a {} lock (until {until}), not a compliance one",
            snapshot.id, lock.state
        ));
    }
    (lock.expires_at + SLACK < expires_at)
        .then(|| format!("{}'s lock ends {until}, too early", snapshot.id))
}

#[cfg(test)]
#[path = "locks_tests.rs"]
mod tests;
