//! Lookups over one region's inventory, built once so that planning stays
//! linear in its size (thousands of instances, tens of thousands of
//! backups), and the grouping of a policy's backups by source.
//!
//! A backup's source is what was written when it was made: the
//! `backupctl:source` tag (the instance). Snapshots are never grouped by
//! their VolumeId alone: a copy reports a placeholder that would merge the
//! backups of unrelated instances into one retention group.
//!
//! Copies (a `backupctl:copy-of` tag) are not indexed: they are the
//! business of [`super::copies`], with their destination's retention.
//!
//! Images and snapshots that AWS Backup or Data Lifecycle Manager manage
//! (`aws:backup:*`, `aws:dlm:*` tags) belong to no policy here, whatever
//! other tags they carry: they are never deleted, and never count as a
//! policy's backup.

use super::adoption::Adopted;
use super::sets::{SnapshotSet, Unit};
use crate::inventory::{
    managed_by_aws, Backup, Image, ImageState, RegionInventory, Snapshot, Tags, PLACEHOLDER_VOLUME,
};
use crate::policy::{Kind, Policy};
use std::collections::{BTreeMap, HashMap, HashSet};

pub struct RegionIndex<'a> {
    pub volume_tags: HashMap<&'a str, &'a Tags>,
    pub image_names: HashSet<&'a str>,
    /// Every `backupctl:set` value in the region, to keep new set ids unique.
    pub set_ids: HashSet<&'a str>,
    pub snapshots: HashMap<&'a str, &'a Snapshot>,
    /// Snapshot id -> the registered images whose block devices use it.
    pub snapshot_users: HashMap<&'a str, Vec<&'a str>>,
    pub images_by_policy: HashMap<&'a str, Vec<&'a Image>>,
    pub snapshots_by_policy: HashMap<&'a str, Vec<&'a Snapshot>>,
}

/// One policy's backups in one region, grouped as retention sees them.
#[derive(Default)]
pub struct PolicyBackups<'a> {
    /// By source instance id, in no particular order within a group.
    pub groups: BTreeMap<&'a str, Vec<Unit<'a>>>,
    /// Backups whose source cannot be told: kept, and reported.
    pub unknown: Vec<Unit<'a>>,
}

impl<'a> PolicyBackups<'a> {
    /// The units of `source` that count for deciding whether a new backup of
    /// `kind` is due.
    pub fn counting(&self, source: &str, kind: Kind) -> impl Iterator<Item = &Unit<'a>> {
        self.groups
            .get(source)
            .into_iter()
            .flatten()
            .filter(move |u| u.counts_for(kind))
    }
}

impl<'a> RegionIndex<'a> {
    /// `adopted`: the backups that adopting policies claim, as they will be
    /// once adopted; they count as those policies' own.
    pub fn new(inv: &'a RegionInventory, adopted: &'a Adopted) -> Self {
        let mut index = RegionIndex {
            volume_tags: inv
                .volumes
                .iter()
                .map(|v| (v.id.as_str(), &v.tags))
                .collect(),
            image_names: inv.images.iter().map(|i| i.name.as_str()).collect(),
            set_ids: inv.snapshots.iter().filter_map(|s| s.set_id()).collect(),
            snapshots: inv.snapshots.iter().map(|s| (s.id.as_str(), s)).collect(),
            snapshot_users: HashMap::new(),
            images_by_policy: HashMap::new(),
            snapshots_by_policy: HashMap::new(),
        };
        for image in &inv.images {
            if image.state != ImageState::Deregistered {
                for sid in &image.snapshot_ids {
                    index.snapshot_users.entry(sid).or_default().push(&image.id);
                }
            }
            if let Some(p) = image.policy().filter(|_| indexed(image)) {
                index.images_by_policy.entry(p).or_default().push(image);
            }
        }
        for image in &adopted.images {
            if let Some(p) = image.policy() {
                index.images_by_policy.entry(p).or_default().push(image);
            }
        }
        for snapshot in &adopted.snapshots {
            index.snapshots.insert(&snapshot.id, snapshot);
        }
        // A claimed snapshot's original carries no policy tag, so it is
        // indexed once, as adopted.
        for snapshot in inv.snapshots.iter().chain(&adopted.snapshots) {
            if let Some(p) = snapshot.policy().filter(|_| indexed(snapshot)) {
                index
                    .snapshots_by_policy
                    .entry(p)
                    .or_default()
                    .push(snapshot);
            }
        }
        index
    }

    /// The policy's backups, by source. `selected` gives the volumes the
    /// policy selects now on each instance it selects: a set is good only
    /// if it covers them.
    pub fn backups_of(
        &self,
        policy: &Policy,
        selected: &HashMap<&str, Vec<&str>>,
    ) -> PolicyBackups<'a> {
        let mut out = PolicyBackups::default();
        let own_images = self.images_by_policy.get(policy.name.as_str());
        for &image in own_images.into_iter().flatten() {
            out.add(image.source(), Unit::Image(image));
        }
        if policy.backup.kind != Kind::Snapshot {
            // An AMI policy's snapshots live and die with its images; any
            // left behind (shared with another image, or a failed delete) are
            // reported as strays, not retention's to delete.
            return out;
        }
        // A snapshot that is part of one of the policy's own images (left
        // from the days it made AMIs) goes with that image.
        let in_own_image: HashSet<&str> = own_images
            .into_iter()
            .flatten()
            .flat_map(|i| i.snapshot_ids.iter().map(String::as_str))
            .collect();
        let mut sets: BTreeMap<(&'a str, &'a str), Vec<&'a Snapshot>> = BTreeMap::new();
        let own_snapshots = self.snapshots_by_policy.get(policy.name.as_str());
        for &snapshot in own_snapshots.into_iter().flatten() {
            if in_own_image.contains(snapshot.id.as_str()) {
                continue;
            }
            let source = snapshot
                .source()
                .filter(|_| snapshot.volume_id != PLACEHOLDER_VOLUME);
            match (source, snapshot.set_id()) {
                (Some(source), Some(set)) => sets.entry((source, set)).or_default().push(snapshot),
                (source, None) => out.add(source, Unit::Legacy(snapshot)),
                (None, Some(_)) => out.unknown.push(Unit::Legacy(snapshot)),
            }
        }
        for ((source, id), snapshots) in sets {
            let covers = selected
                .get(source)
                .is_none_or(|volumes| SnapshotSet::holds_all(&snapshots, volumes));
            out.add(
                Some(source),
                Unit::Set(SnapshotSet {
                    id,
                    snapshots,
                    covers,
                }),
            );
        }
        out
    }
}

/// A policy's own original backup: not a copy, not AWS-managed.
fn indexed(b: &dyn Backup) -> bool {
    b.copy_of().is_none() && !managed_by_aws(b.tags())
}

impl<'a> PolicyBackups<'a> {
    fn add(&mut self, source: Option<&'a str>, unit: Unit<'a>) {
        match source.filter(|s| !s.is_empty()) {
            Some(s) => self.groups.entry(s).or_default().push(unit),
            None => self.unknown.push(unit),
        }
    }
}
