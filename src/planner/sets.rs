//! Snapshot sets, the backup unit of snapshot policies, and [`Unit`], what
//! retention keeps or deletes.
//!
//! One CreateSnapshots call makes one crash-consistent set of an instance's
//! selected volumes, and every snapshot of it carries the same
//! `backupctl:set` tag, written in that call. The set is the unit of
//! everything: it is due as a whole, kept and deleted as a whole, and counts
//! as one backup for `keep_last`, for "N of M backups of this source remain"
//! and for the mass-deletion guard. A set is *good* only when all its
//! snapshots are completed and it covers every volume the policy selects on
//! the instance now. So when volumes drift out of step (a data volume
//! attached or tagged later, one snapshot that ended in `error`), the next run
//! makes a whole new set instead of topping up a partial one, and a striped
//! or multi-volume database always has a restorable set.
//!
//! Snapshots made before sets existed (no set tag) are *legacy* snapshots.
//! They join the retention group of the instance their `backupctl:source`
//! tag names, never count as good (none restores the whole instance, so none
//! makes a new set not due or lets an older backup go), and are deleted once
//! expired and a newer good backup of the instance exists. A snapshot whose
//! source cannot be told (no source tag, or EC2's placeholder VolumeId of a
//! copy) is kept and reported, never grouped by guesswork.

use crate::inventory::{Backup, Image, Snapshot, SnapshotState, Tags};
use chrono::{DateTime, Utc};

/// The snapshots of one CreateSnapshots call.
#[derive(Debug, Clone)]
pub struct SnapshotSet<'a> {
    pub id: &'a str,
    pub snapshots: Vec<&'a Snapshot>,
    /// It holds a snapshot of every volume the policy selects now.
    pub covers: bool,
}

impl<'a> SnapshotSet<'a> {
    /// Whether the set holds a snapshot of each of `volumes`.
    pub fn holds_all(snapshots: &[&Snapshot], volumes: &[&str]) -> bool {
        volumes
            .iter()
            .all(|v| snapshots.iter().any(|s| s.volume_id == *v))
    }

    fn all(&self, state: SnapshotState) -> bool {
        self.snapshots.iter().all(|s| s.state == state)
    }

    fn any(&self, state: SnapshotState) -> bool {
        self.snapshots.iter().any(|s| s.state == state)
    }
}

impl Backup for SnapshotSet<'_> {
    fn id(&self) -> &str {
        self.id
    }
    fn tags(&self) -> &Tags {
        &self.snapshots[0].tags
    }
    fn native_time(&self) -> DateTime<Utc> {
        self.snapshots
            .iter()
            .map(|s| s.started_at)
            .min()
            .expect("a set has a snapshot")
    }
    fn is_good(&self) -> bool {
        self.covers && self.all(SnapshotState::Completed)
    }
    /// Any snapshot still in progress: the set is never deleted (nor
    /// judged failed) until EC2 is done with it.
    fn is_pending(&self) -> bool {
        self.any(SnapshotState::Pending)
    }
    fn state_name(&self) -> String {
        if self.any(SnapshotState::Pending) {
            "pending"
        } else if self.any(SnapshotState::Error) {
            "error"
        } else if !self.all(SnapshotState::Completed) {
            "recovering"
        } else if !self.covers {
            "incomplete"
        } else {
            "completed"
        }
        .to_string()
    }
}

/// One backup as retention sees it.
#[derive(Debug, Clone)]
pub enum Unit<'a> {
    Image(&'a Image),
    Set(SnapshotSet<'a>),
    /// A snapshot made before sets existed: never good.
    Legacy(&'a Snapshot),
}

impl Unit<'_> {
    /// Counts for "is a new backup due": an image of an AMI policy; a set
    /// of a snapshot policy that covers the selected volumes and has no
    /// snapshot in error (a set still in progress without both would never
    /// become good).
    pub fn counts_for(&self, kind: crate::policy::Kind) -> bool {
        use crate::policy::Kind;
        match (self, kind) {
            (Unit::Image(_), Kind::Ami) => true,
            (Unit::Set(set), Kind::Snapshot) => set.covers && !set.any(SnapshotState::Error),
            _ => false,
        }
    }

    /// The snapshot ids of a set or legacy snapshot.
    pub fn snapshot_ids(&self) -> Vec<String> {
        match self {
            Unit::Image(_) => Vec::new(),
            Unit::Set(set) => set.snapshots.iter().map(|s| s.id.clone()).collect(),
            Unit::Legacy(s) => vec![s.id.clone()],
        }
    }
}

impl Backup for Unit<'_> {
    fn id(&self) -> &str {
        match self {
            Unit::Image(i) => &i.id,
            Unit::Set(s) => s.id,
            Unit::Legacy(s) => &s.id,
        }
    }
    fn tags(&self) -> &Tags {
        match self {
            Unit::Image(i) => &i.tags,
            Unit::Set(s) => s.tags(),
            Unit::Legacy(s) => &s.tags,
        }
    }
    fn native_time(&self) -> DateTime<Utc> {
        match self {
            Unit::Image(i) => i.native_time(),
            Unit::Set(s) => s.native_time(),
            Unit::Legacy(s) => s.native_time(),
        }
    }
    fn is_good(&self) -> bool {
        match self {
            Unit::Image(i) => i.is_good(),
            Unit::Set(s) => s.is_good(),
            Unit::Legacy(_) => false,
        }
    }
    fn is_pending(&self) -> bool {
        match self {
            Unit::Image(i) => i.is_pending(),
            Unit::Set(s) => s.is_pending(),
            Unit::Legacy(s) => s.is_pending(),
        }
    }
    fn state_name(&self) -> String {
        match self {
            Unit::Image(i) => i.state_name(),
            Unit::Set(s) => s.state_name(),
            Unit::Legacy(s) => s.state_name(),
        }
    }
}
