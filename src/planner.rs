//! The planner: `(policies, inventory, now) -> Plan`.
//!
//! Pure and synchronous: no IO, no clock, no AWS types. Everything it needs is
//! in its arguments, so `plan --at`, saved inventories and tests all exercise
//! exactly the code that runs in production.
//!
//! Per region and enabled policy it selects instances and decides which
//! backups are due; per (policy, source) it applies the retention rules (see
//! `retention`) to backups that carry the policy's ownership tag. Images are
//! grouped by their `backupctl:source` tag; snapshot backups by their native
//! VolumeId, since a snapshot's volume is a fact EC2 records and cannot be
//! mistagged.

use crate::inventory::{
    newest_live, Backup, Image, ImageState, Instance, Inventory, RegionInventory, Snapshot, Tags,
};
use crate::plan::{
    Action, BackupsLeft, Blocked, Change, Kept, Orphan, Plan, Precondition, Reason, ReasonCode,
    ResourceType,
};
use crate::policy::{human_age, tags, tags_match, InstanceRef, Kind, Policy, PolicySet, Reboot};
use crate::retention::{self, Verdict};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Computes the plan. See the module docs for the rules.
pub fn plan(policies: &PolicySet, inventory: &Inventory, now: DateTime<Utc>) -> Plan {
    let mut out = Plan {
        generated_at: now,
        policies_digest: policies.digest.clone(),
        inventory_fingerprint: inventory.fingerprint(),
        changes: Vec::new(),
        kept: Vec::new(),
        blocked: Vec::new(),
        orphans: Vec::new(),
        warnings: Vec::new(),
    };
    let mut selected_anywhere: BTreeSet<&str> = BTreeSet::new();
    for (region, inv) in &inventory.regions {
        let local = inventory
            .local_instance
            .as_ref()
            .filter(|l| l.region == *region)
            .map(|l| l.instance_id.as_str());
        let mut ctx = RegionPlan {
            region,
            inv,
            index: RegionIndex::new(inv),
            local,
            now,
            out: &mut out,
            image_deletions: Vec::new(),
            snapshot_deletions: Vec::new(),
            group_sizes: Vec::new(),
        };
        for policy in policies.enabled() {
            let backups = ctx.index.backups_of(policy);
            if policy.target.regions.includes(region) && ctx.creations(policy, &backups) > 0 {
                selected_anywhere.insert(&policy.name);
            }
            ctx.retention(policy, backups);
            ctx.warn_about_strays(policy);
        }
        ctx.finish_deletions();
        ctx.orphans(policies);
    }
    warn_about_selection(policies, inventory, &selected_anywhere, &mut out.warnings);
    out.changes
        .sort_by(|a, b| change_key(a).cmp(&change_key(b)));
    out.kept.sort_by(|a, b| {
        (&a.policy, &a.region, &a.source, &a.id).cmp(&(&b.policy, &b.region, &b.source, &b.id))
    });
    out.blocked.sort_by(|a, b| {
        (&a.policy, &a.region, &a.snapshot_id).cmp(&(&b.policy, &b.region, &b.snapshot_id))
    });
    out.orphans
        .sort_by(|a, b| (&a.policy, &a.region, &a.id).cmp(&(&b.policy, &b.region, &b.id)));
    out
}

fn change_key(c: &Change) -> (&str, &str, bool, &str, &str) {
    (
        &c.policy,
        &c.region,
        !c.action.is_create(),
        &c.source,
        c.action.target_id().unwrap_or(""),
    )
}

/// Lookups over one region's inventory, built once so that planning stays
/// linear in the size of the inventory (thousands of instances, tens of
/// thousands of backups).
struct RegionIndex<'a> {
    volume_tags: HashMap<&'a str, &'a Tags>,
    image_names: HashSet<&'a str>,
    snapshots: HashMap<&'a str, &'a Snapshot>,
    /// Snapshot id -> the registered images whose block devices use it.
    snapshot_users: HashMap<&'a str, Vec<&'a str>>,
    images_by_policy: HashMap<&'a str, Vec<&'a Image>>,
    snapshots_by_policy: HashMap<&'a str, Vec<&'a Snapshot>>,
}

/// One policy's backups in one region, grouped as retention sees them.
#[derive(Default)]
struct PolicyBackups<'a> {
    /// Images by `backupctl:source` ("" when the tag is missing).
    images: BTreeMap<&'a str, Vec<&'a Image>>,
    /// Snapshot backups (snapshot policies only) by native VolumeId.
    snapshots: BTreeMap<&'a str, Vec<&'a Snapshot>>,
}

impl<'a> RegionIndex<'a> {
    fn new(inv: &'a RegionInventory) -> Self {
        let mut index = RegionIndex {
            volume_tags: inv
                .volumes
                .iter()
                .map(|v| (v.id.as_str(), &v.tags))
                .collect(),
            image_names: inv.images.iter().map(|i| i.name.as_str()).collect(),
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
            if let Some(p) = image.policy() {
                index.images_by_policy.entry(p).or_default().push(image);
            }
        }
        for snapshot in &inv.snapshots {
            if let Some(p) = snapshot.policy() {
                index
                    .snapshots_by_policy
                    .entry(p)
                    .or_default()
                    .push(snapshot);
            }
        }
        index
    }

    fn backups_of(&self, policy: &Policy) -> PolicyBackups<'a> {
        let mut out = PolicyBackups::default();
        let own_images = self.images_by_policy.get(policy.name.as_str());
        for &image in own_images.into_iter().flatten() {
            out.images
                .entry(image.source().unwrap_or(""))
                .or_default()
                .push(image);
        }
        if policy.backup.kind != Kind::Snapshot {
            // An AMI policy's snapshots live and die with its images; any
            // left behind (shared with another image, or a failed delete) are
            // apply's to clean up, not retention's.
            return out;
        }
        // A snapshot that is part of one of the policy's own images (left
        // from the days it made AMIs) goes with that image.
        let in_own_image: HashSet<&str> = own_images
            .into_iter()
            .flatten()
            .flat_map(|i| i.snapshot_ids.iter().map(String::as_str))
            .collect();
        let own_snapshots = self.snapshots_by_policy.get(policy.name.as_str());
        for &snapshot in own_snapshots.into_iter().flatten() {
            if !in_own_image.contains(snapshot.id.as_str()) {
                out.snapshots
                    .entry(&snapshot.volume_id)
                    .or_default()
                    .push(snapshot);
            }
        }
        out
    }
}

/// Warnings for policies that would silently back up nothing.
fn warn_about_selection(
    policies: &PolicySet,
    inventory: &Inventory,
    selected_anywhere: &BTreeSet<&str>,
    warnings: &mut Vec<String>,
) {
    for policy in policies.enabled() {
        if let crate::policy::Regions::List(list) = &policy.target.regions {
            for r in list.iter().filter(|r| !inventory.regions.contains_key(*r)) {
                warnings.push(format!(
                    "policy {} targets region {r}, which was not observed; nothing is planned there",
                    policy.name
                ));
            }
        }
        if policy.target.uses_local() && inventory.local_instance.is_none() {
            warnings.push(format!(
                "policy {} selects the local instance, but the inventory does not say which instance that is",
                policy.name
            ));
        }
        if !selected_anywhere.contains(policy.name.as_str()) {
            warnings.push(format!(
                "policy {} selects no instance in any observed region: it backs up nothing",
                policy.name
            ));
        }
    }
}

/// Planning state for one region.
struct RegionPlan<'a> {
    region: &'a str,
    inv: &'a RegionInventory,
    index: RegionIndex<'a>,
    /// The instance backupctl runs on, if it is in this region.
    local: Option<&'a str>,
    now: DateTime<Utc>,
    out: &'a mut Plan,
    /// Deletions retention wants, turned into changes once every policy's
    /// decisions are known (a deregistered image no longer blocks its
    /// snapshots, whichever policy owns it).
    image_deletions: Vec<(&'a str, &'a Image, Reason, usize)>,
    snapshot_deletions: Vec<(&'a str, &'a Snapshot, Reason, usize)>,
    /// The number of backups in each retention group (indexed by the last
    /// field of the deletions above), to tell how many remain.
    group_sizes: Vec<usize>,
}

impl<'a> RegionPlan<'a> {
    /// Plans the creations of `policy` in this region; returns how many
    /// instances the policy selects here.
    fn creations(&mut self, policy: &'a Policy, backups: &PolicyBackups<'a>) -> usize {
        let mut count = 0;
        let inv = self.inv;
        for instance in inv.instances.iter() {
            if !self.selects(policy, instance) {
                continue;
            }
            let change = match policy.backup.kind {
                Kind::Ami => self.image_creation(policy, instance, backups),
                Kind::Snapshot => {
                    let volumes = self.selected_volumes(policy, instance);
                    if volumes.is_empty() {
                        continue;
                    }
                    self.snapshot_creation(policy, instance, &volumes, backups)
                }
            };
            count += 1;
            self.out.changes.extend(change);
        }
        count
    }

    fn selects(&self, policy: &Policy, instance: &Instance) -> bool {
        let target = &policy.target;
        let id_ok = target.instance_ids.as_ref().is_none_or(|ids| {
            ids.iter().any(|r| match r {
                InstanceRef::Id(id) => *id == instance.id,
                InstanceRef::Local => self.local == Some(instance.id.as_str()),
            })
        });
        !instance.state.is_gone() && id_ok && tags_match(&target.instance_tags, &instance.tags)
    }

    fn image_creation(
        &self,
        policy: &Policy,
        instance: &Instance,
        backups: &PolicyBackups<'a>,
    ) -> Option<Change> {
        let newest = newest_live(
            backups
                .images
                .get(instance.id.as_str())
                .into_iter()
                .flatten()
                .copied(),
        );
        let mut reason = self.due(policy, newest, None)?;
        let precondition = Precondition::Create {
            newest_backup_at: newest,
        };
        reason.message.insert_str(0, "due: ");
        let name = self.unique_image_name(policy, &instance.id);
        let reboot = match policy.backup.reboot {
            Reboot::Never => false,
            Reboot::Always => true,
            Reboot::Tag => instance
                .tags
                .get(tags::REBOOT)
                .is_some_and(|v| v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("true")),
        };
        Some(Change {
            policy: policy.name.clone(),
            region: self.region.to_string(),
            source: instance.id.clone(),
            action: Action::CreateImage {
                instance_id: instance.id.clone(),
                tags: self.backup_tags(policy, &instance.id, &name),
                name,
                reboot,
            },
            reason,
            backups_left: None,
            precondition,
        })
    }

    /// The attached volumes a snapshot policy backs up on `instance`.
    fn selected_volumes(&self, policy: &Policy, instance: &'a Instance) -> Vec<&'a str> {
        let target = &policy.target;
        instance
            .volumes
            .iter()
            .filter(|v| !(v.root && target.exclude_boot_volume))
            .filter(|v| {
                target.volume_tags.is_empty()
                    || self
                        .index
                        .volume_tags
                        .get(v.volume_id.as_str())
                        .is_some_and(|tags| tags_match(&target.volume_tags, tags))
            })
            .map(|v| v.volume_id.as_str())
            .collect()
    }

    /// One CreateSnapshots per instance covering its due volumes; freshness
    /// is per volume.
    fn snapshot_creation(
        &self,
        policy: &'a Policy,
        instance: &Instance,
        selected: &[&str],
        backups: &PolicyBackups<'a>,
    ) -> Option<Change> {
        let mut due = Vec::new();
        let mut reasons = Vec::new();
        let mut newest_of_due = None;
        for volume in selected {
            let newest = newest_live(backups.snapshots.get(volume).into_iter().flatten().copied());
            if let Some(reason) = self.due(policy, newest, Some(volume)) {
                due.push(volume.to_string());
                reasons.push(reason.message);
                newest_of_due = newest_of_due.max(newest);
            }
        }
        if due.is_empty() {
            return None;
        }
        let exclude_boot_volume = instance
            .volumes
            .iter()
            .any(|v| v.root && !due.contains(&v.volume_id));
        let exclude_data_volume_ids = instance
            .volumes
            .iter()
            .filter(|v| !v.root && !due.contains(&v.volume_id))
            .map(|v| v.volume_id.clone())
            .collect();
        let name = backup_name(policy, &instance.id, self.now);
        Some(Change {
            policy: policy.name.clone(),
            region: self.region.to_string(),
            source: instance.id.clone(),
            action: Action::CreateSnapshots {
                instance_id: instance.id.clone(),
                volume_ids: due,
                exclude_boot_volume,
                exclude_data_volume_ids,
                tags: self.backup_tags(policy, &instance.id, &name),
            },
            reason: Reason {
                code: ReasonCode::Due,
                message: format!("due: {}", reasons.join("; ")),
            },
            backups_left: None,
            precondition: Precondition::Create {
                newest_backup_at: newest_of_due,
            },
        })
    }

    /// `Some(reason)` when a backup is due given the newest good-or-pending
    /// backup's time. The message lacks the "due: " prefix so that several
    /// volumes' reasons can be joined under one.
    fn due(
        &self,
        policy: &Policy,
        newest: Option<DateTime<Utc>>,
        volume: Option<&str>,
    ) -> Option<Reason> {
        let every = policy.backup.every;
        let of = volume.map(|v| format!(" of {v}")).unwrap_or_default();
        let message = match newest {
            None => format!("no backup{of} yet"),
            Some(t) if every.elapsed(t, self.now) => format!(
                "newest backup{of} {} old, every {every}",
                human_age(t, self.now)
            ),
            Some(_) => return None,
        };
        Some(Reason {
            code: ReasonCode::Due,
            message,
        })
    }

    fn backup_tags(&self, policy: &Policy, source: &str, name: &str) -> Tags {
        let mut t = policy.backup.tags.clone();
        t.insert(tags::POLICY.into(), policy.name.clone());
        t.insert(tags::SOURCE.into(), source.into());
        t.insert(
            tags::CREATED_AT.into(),
            self.now.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        t.insert(tags::NAME.into(), name.into());
        t
    }

    /// AMI names are unique per region and account: add `-2`, `-3`… if an
    /// image already has the default name (e.g. two runs in one minute).
    fn unique_image_name(&self, policy: &Policy, source: &str) -> String {
        let base = backup_name(policy, source, self.now);
        let taken = |n: &str| self.index.image_names.contains(n);
        if !taken(&base) {
            return base;
        }
        (2..)
            .map(|k| format!("{base}-{k}"))
            .find(|n| !taken(n))
            .expect("some suffix is free")
    }

    /// Applies retention to every backup the policy owns in this region,
    /// whether or not its source is still selected.
    fn retention(&mut self, policy: &'a Policy, backups: PolicyBackups<'a>) {
        for (source, group) in backups.images {
            let gid = self.group_sizes.len();
            self.group_sizes.push(group.len());
            for (image, verdict) in retention::evaluate(&group, &policy.retention, self.now) {
                match verdict {
                    Verdict::Delete(reason) => {
                        self.image_deletions
                            .push((&policy.name, image, reason, gid))
                    }
                    Verdict::Keep(reason) => {
                        self.keep(policy, source, ResourceType::Image, &image.id, reason)
                    }
                }
            }
        }
        for group in backups.snapshots.into_values() {
            let gid = self.group_sizes.len();
            self.group_sizes.push(group.len());
            for (snapshot, verdict) in retention::evaluate(&group, &policy.retention, self.now) {
                match verdict {
                    Verdict::Delete(reason) => {
                        self.snapshot_deletions
                            .push((&policy.name, snapshot, reason, gid))
                    }
                    Verdict::Keep(reason) => {
                        let source = snapshot.source().unwrap_or("");
                        self.keep(policy, source, ResourceType::Snapshot, &snapshot.id, reason)
                    }
                }
            }
        }
    }

    /// An AMI policy's snapshots that no image uses any more (left behind
    /// by a deregistration that could not delete them) are never deleted by
    /// retention; saying so keeps them from being forgotten.
    fn warn_about_strays(&mut self, policy: &Policy) {
        if policy.backup.kind != Kind::Ami {
            return;
        }
        let strays: Vec<&str> = self
            .index
            .snapshots_by_policy
            .get(policy.name.as_str())
            .into_iter()
            .flatten()
            .filter(|s| !self.index.snapshot_users.contains_key(s.id.as_str()))
            .map(|s| s.id.as_str())
            .collect();
        if strays.is_empty() {
            return;
        }
        let mut shown = strays
            .iter()
            .take(3)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if strays.len() > 3 {
            shown += ", …";
        }
        self.out.warnings.push(format!(
            "policy {} in {}: {} snapshot(s) ({shown}) carry its tag but belong to no image (left behind by a deregistration?); backupctl does not delete them, check and delete them by hand",
            policy.name,
            self.region,
            strays.len()
        ));
    }

    fn keep(&mut self, policy: &Policy, source: &str, rt: ResourceType, id: &str, reason: Reason) {
        self.out.kept.push(Kept {
            policy: policy.name.clone(),
            region: self.region.to_string(),
            source: display_source(source),
            resource_type: rt,
            id: id.to_string(),
            reason,
        });
    }

    /// Turns retention's deletions into changes.
    ///
    /// An image takes with it only the snapshots that carry its own policy
    /// tag and that no staying image uses; any other snapshot of its block
    /// devices is listed as kept, so apply never deletes what the policy does
    /// not own. A snapshot backup that a staying image uses cannot be deleted
    /// (EC2 refuses): it is reported as blocked instead of failing at apply.
    fn finish_deletions(&mut self) {
        let images = std::mem::take(&mut self.image_deletions);
        let deregistered: HashSet<&str> = images.iter().map(|(_, i, _, _)| i.id.as_str()).collect();
        let staying_users = |snapshot_id: &str| -> Vec<String> {
            let users = self.index.snapshot_users.get(snapshot_id);
            users
                .into_iter()
                .flatten()
                .filter(|i| !deregistered.contains(*i))
                .map(|i| i.to_string())
                .collect()
        };
        let mut taken_with_images: HashSet<String> = HashSet::new();
        let mut changes: Vec<(Change, usize)> = Vec::new();
        let mut deleted = vec![0usize; self.group_sizes.len()];
        for (policy, image, reason, gid) in images {
            let (snapshot_ids, kept_snapshot_ids): (Vec<String>, Vec<String>) =
                image.snapshot_ids.iter().cloned().partition(|sid| {
                    let owned = self
                        .index
                        .snapshots
                        .get(sid.as_str())
                        .is_some_and(|s| s.policy() == Some(policy));
                    owned && staying_users(sid).is_empty()
                });
            taken_with_images.extend(snapshot_ids.iter().cloned());
            deleted[gid] += 1;
            let change = Change {
                policy: policy.to_string(),
                region: self.region.to_string(),
                source: display_source(image.source().unwrap_or("")),
                action: Action::DeregisterImage {
                    image_id: image.id.clone(),
                    snapshot_ids,
                    kept_snapshot_ids,
                },
                reason,
                backups_left: None,
                precondition: delete_precondition(image),
            };
            changes.push((change, gid));
        }
        for (policy, snapshot, reason, gid) in std::mem::take(&mut self.snapshot_deletions) {
            let users = staying_users(&snapshot.id);
            let source = display_source(snapshot.source().unwrap_or(""));
            if taken_with_images.contains(&snapshot.id) {
                // Already deleted with an image of the same policy.
                deleted[gid] += 1;
                continue;
            }
            if users.is_empty() {
                deleted[gid] += 1;
                let change = Change {
                    policy: policy.to_string(),
                    region: self.region.to_string(),
                    source,
                    action: Action::DeleteSnapshot {
                        snapshot_id: snapshot.id.clone(),
                    },
                    reason,
                    backups_left: None,
                    precondition: delete_precondition(snapshot),
                };
                changes.push((change, gid));
            } else {
                let message = format!(
                    "{}, but in use by {}; deregister that image to let it go",
                    reason.message,
                    users.join(", ")
                );
                self.out.blocked.push(Blocked {
                    policy: policy.to_string(),
                    region: self.region.to_string(),
                    source,
                    snapshot_id: snapshot.id.clone(),
                    image_ids: users,
                    reason: Reason {
                        code: ReasonCode::InUse,
                        message,
                    },
                });
            }
        }
        for (mut change, gid) in changes {
            change.backups_left = Some(BackupsLeft {
                before: self.group_sizes[gid],
                after: self.group_sizes[gid] - deleted[gid],
            });
            self.out.changes.push(change);
        }
    }

    /// Backups tagged with a policy that is not in the set: reported, never
    /// deleted (the policy may have been removed by mistake).
    fn orphans(&mut self, policies: &PolicySet) {
        let orphan_policy = |tags: &Tags| {
            tags.get(tags::POLICY)
                .filter(|p| policies.get(p).is_none())
                .cloned()
        };
        let mut in_orphan_image = HashSet::new();
        for image in &self.inv.images {
            if let Some(policy) = orphan_policy(&image.tags) {
                in_orphan_image.extend(image.snapshot_ids.iter().map(String::as_str));
                self.out
                    .orphans
                    .push(orphan(self.region, ResourceType::Image, image, policy));
            }
        }
        for snapshot in &self.inv.snapshots {
            if in_orphan_image.contains(snapshot.id.as_str()) {
                continue;
            }
            if let Some(policy) = orphan_policy(&snapshot.tags) {
                self.out.orphans.push(orphan(
                    self.region,
                    ResourceType::Snapshot,
                    snapshot,
                    policy,
                ));
            }
        }
    }
}

fn orphan<B: Backup>(region: &str, rt: ResourceType, b: &B, policy: String) -> Orphan {
    Orphan {
        region: region.to_string(),
        resource_type: rt,
        id: b.id().to_string(),
        policy,
        source: b.source().map(str::to_string),
        created_at: b.effective_time(),
    }
}

fn delete_precondition<B: Backup>(b: &B) -> Precondition {
    Precondition::Delete {
        state: b.state_name(),
        tags: b.tags().clone(),
    }
}

fn display_source(source: &str) -> String {
    if source.is_empty() {
        "unknown-source".to_string()
    } else {
        source.to_string()
    }
}

/// `<policy>-<source>-<YYYYMMDDTHHMMZ>`: a valid AMI name (no colons, at most
/// 64 + 1 + 19 + 1 + 14 characters) that sorts by time.
pub fn backup_name(policy: &Policy, source: &str, now: DateTime<Utc>) -> String {
    format!("{}-{}-{}", policy.name, source, now.format("%Y%m%dT%H%MZ"))
}
