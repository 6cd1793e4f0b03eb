//! Snapshots an AMI policy's deregistrations left behind.
//!
//! DeregisterImage with `DeleteAssociatedSnapshots` deletes the image's
//! snapshots it can; apply then deletes the rest. One of those deletions can
//! still fail (a snapshot briefly in use, throttling that outlasts the
//! retries, a run killed in between), leaving a snapshot that carries the
//! policy's tags and that no image uses. Retention never sees it (an AMI
//! policy's backups are its images), so it is planned here: deleted once it
//! is older than the policy's `max_age`, which its image was too, and which
//! no snapshot of an image still being made (or not yet visible to
//! DescribeImages) can be, and only while a good image of its source stays
//! (when backups stop working, nothing of the history goes). The others are
//! only reported.

use super::deletions::{display_source, Deletions};
use super::index::RegionIndex;
use super::sets::Unit;
use super::warnings;
use crate::inventory::{Backup, PLACEHOLDER_VOLUME};
use crate::plan::{Action, BackupsLeft, Change, Plan, Precondition, Reason, ReasonCode};
use crate::policy::{human_age, Kind, MaxAge, Policy};
use chrono::{DateTime, Utc};

/// Plans the leftovers of `policy` (after its retention, so that a
/// leftover's count of backups left is its source's images that stay).
pub fn plan(
    policy: &Policy,
    region: &str,
    index: &RegionIndex,
    deletions: &Deletions,
    now: DateTime<Utc>,
    out: &mut Plan,
    warnings_out: &mut Vec<String>,
) {
    if policy.backup.kind != Kind::Ami {
        return;
    }
    // The source's images that stay, and how many of them are good and
    // newer than `than`.
    let images_of = |source: &str, than: DateTime<Utc>| {
        let staying: Vec<_> = index
            .images_by_policy
            .get(policy.name.as_str())
            .into_iter()
            .flatten()
            .filter(|i| i.source() == Some(source) && !deletions.wants(&i.id))
            .collect();
        let good = staying
            .iter()
            .filter(|i| i.is_good() && i.native_time() > than)
            .count();
        (staying.len(), good)
    };
    let mut young = Vec::new();
    let left = index
        .snapshots_by_policy
        .get(policy.name.as_str())
        .into_iter()
        .flatten()
        .filter(|s| !index.snapshot_users.contains_key(s.id.as_str()))
        // A locked one waits for its lock (EC2 would refuse the deletion).
        .filter(|s| !s.lock.as_ref().is_some_and(|l| l.holds(now)));
    for &snapshot in left {
        let created = snapshot.aged_from();
        let expired = match policy.retention.max_age {
            MaxAge::After(max) if max.elapsed(created, now) => Some(max),
            _ => None,
        };
        // Like any backup, one whose source cannot be told is never
        // deleted, nor one without a newer good image of its source.
        // A copy's placeholder volume says nothing of its source, and a
        // snapshot carrying a set tag is part of a set, kept and deleted as
        // a unit: neither is a leftover of an image.
        let source = snapshot
            .source()
            .filter(|_| snapshot.volume_id != PLACEHOLDER_VOLUME && snapshot.set_id().is_none());
        // A pending one may belong to an image still being made.
        let (Some(max), Some(source), false) = (expired, source, snapshot.is_pending()) else {
            young.push(snapshot.id.clone());
            continue;
        };
        let (staying, good) = images_of(source, snapshot.native_time());
        if good == 0 {
            young.push(snapshot.id.clone());
            continue;
        }
        let unit = Unit::Legacy(snapshot);
        out.changes.push(Change {
            account: None,
            policy: policy.name.clone(),
            region: region.to_string(),
            source: display_source(source),
            action: Action::DeleteSnapshot {
                snapshot_id: snapshot.id.clone(),
            },
            reason: Reason {
                code: ReasonCode::Expired,
                message: format!(
                    "left behind by its image's deregistration (no image uses it): {} old, max_age {max}",
                    human_age(created, now)
                ),
            },
            // The leftover counts as one of its source's backups, so the
            // mass-deletion guard holds it when it is all that is left.
            backups_left: Some(BackupsLeft {
                before: staying + 1,
                after: staying,
            }),
            recycle_bin: None,
            precondition: Precondition::Delete {
                state: unit.state_name(),
                tags: unit.tags().clone(),
            },
        });
    }
    warnings::strays(policy, region, &young, warnings_out);
}
