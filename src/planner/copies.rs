//! Copies of a policy's backups in other regions (`[[copy]]`), and the
//! retention of those copies in each destination.
//!
//! A copy is recognised only by its `backupctl:copy-of` tag (`<region>/<id>`
//! of what it copies), written by the copying call itself: a copied
//! snapshot's VolumeId is a placeholder and descriptions are free text, so
//! neither ever matches a copy to its original. The rules:
//!
//! - a good original (an available image; a set whose snapshots are all
//!   completed) that this plan does not delete, and that has no copy in the
//!   destination (good or still being copied), is copied there, unless the
//!   destination's retention would delete that copy at once;
//! - a set copied only in part (a run cut off, a copy refused at EC2's
//!   limit) has its missing snapshots copied, whatever its age, and is not
//!   a good copy until it is whole (its copies carry the set's size, so
//!   this holds even once the original is gone);
//! - a copy's age is its original's: the copying call writes the original's
//!   time as the copy's `backupctl:created-at`;
//! - retention of copies is per destination and source, by the rule's
//!   `[copy.retention]`: the newest good copy is never deleted (the next copy
//!   of that source would otherwise be a full one, not incremental), and
//!   `keep_last` counts the copies in that destination;
//! - deleting an original never touches its copies, and copies are never
//!   part of the original region's retention (see [`super::index`]);
//! - copies in a destination the policy no longer copies to are out of
//!   scope: listed, never deleted.
//!
//! Copies to another account (`to_account`) follow the same rules, planned
//! over every account's observation at once by [`super::cross_account`];
//! their `backupctl:copy-of` names the account too
//! (`<account>/<region>/<id>`), so one account's own planning leaves them
//! alone.

use super::deletions::display_source;
use super::retention::{self, Verdict};
use super::scope;
use super::sets::{SnapshotSet, Unit};
use crate::inventory::{
    copied_across_accounts, managed_by_aws, Backup, Inventory, RegionInventory, Tags,
};
use crate::plan::{
    Action, BackupsLeft, Change, Kept, Plan, Precondition, Reason, ReasonCode, ResourceType,
};
use crate::policy::{human_age, tags, CopyRule, Kind, Policy, PolicySet};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::{BTreeMap, HashSet};

/// A backup as a destination's retention sees it: its age is the
/// original's.
struct Aged<'a> {
    unit: Unit<'a>,
    /// When the original was taken (for a copy, read from its
    /// `backupctl:created-at`).
    at: DateTime<Utc>,
    /// An original not copied yet: counted as the good copy it would be.
    planned: bool,
}

impl Backup for Aged<'_> {
    fn id(&self) -> &str {
        self.unit.id()
    }
    fn tags(&self) -> &Tags {
        self.unit.tags()
    }
    fn native_time(&self) -> DateTime<Utc> {
        self.at
    }
    fn aged_from(&self) -> DateTime<Utc> {
        self.at
    }
    fn is_good(&self) -> bool {
        self.planned || self.unit.is_good()
    }
    fn is_pending(&self) -> bool {
        !self.planned && self.unit.is_pending()
    }
    fn state_name(&self) -> String {
        self.unit.state_name()
    }
}

/// Where backups are: a region of the account being planned, or, across
/// accounts, a region of a named account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Place<'a> {
    pub account: Option<&'a str>,
    pub region: &'a str,
}

impl Place<'_> {
    /// `backupctl:copy-of` of a copy of `id` from here.
    pub fn copy_of(&self, id: &str) -> String {
        crate::inventory::copy_of(self.account, self.region, id)
    }
}

/// One region's backups of one policy, split into originals and copies.
#[derive(Default)]
pub(super) struct Found<'a> {
    /// Originals by source: images, or sets.
    originals: BTreeMap<&'a str, Vec<Unit<'a>>>,
    /// Copies by source.
    copies: BTreeMap<&'a str, Vec<Unit<'a>>>,
    /// The `backupctl:copy-of` of every copy that is good or being made.
    pub live: HashSet<&'a str>,
}

/// The backups of `policy` in a region: its originals, and its copies from
/// the same account (`!cross`) or from other accounts (`cross`).
pub(super) fn find<'a>(policy: &Policy, inv: &'a RegionInventory, cross: bool) -> Found<'a> {
    let mut found = Found::default();
    let owned =
        |b: &dyn Backup| b.policy() == Some(policy.name.as_str()) && !managed_by_aws(b.tags());
    for image in inv.images.iter().filter(|i| owned(*i)) {
        let Some(source) = image.source() else {
            continue;
        };
        match image.copy_of() {
            Some(of) if copied_across_accounts(of) != cross => {}
            Some(of) => {
                if image.is_good() || image.is_pending() {
                    found.live.insert(of);
                }
                found
                    .copies
                    .entry(source)
                    .or_default()
                    .push(Unit::Image(image));
            }
            None if policy.backup.kind == Kind::Ami => {
                found
                    .originals
                    .entry(source)
                    .or_default()
                    .push(Unit::Image(image));
            }
            None => {}
        }
    }
    if policy.backup.kind != Kind::Snapshot {
        return found;
    }
    let mut sets: BTreeMap<(bool, &str, &str), Vec<_>> = BTreeMap::new();
    for snapshot in inv.snapshots.iter().filter(|s| owned(*s)) {
        let copy = snapshot.copy_of();
        // An image copy's snapshots go with their image.
        if copy.is_some_and(|of| of.contains("/ami-") || copied_across_accounts(of) != cross) {
            continue;
        }
        if let Some(of) = copy.filter(|_| snapshot.is_good() || snapshot.is_pending()) {
            found.live.insert(of);
        }
        if let (Some(source), Some(set)) = (snapshot.source(), snapshot.set_id()) {
            sets.entry((copy.is_some(), source, set))
                .or_default()
                .push(snapshot);
        }
    }
    for ((copy, source, id), snapshots) in sets {
        let to = if copy {
            &mut found.copies
        } else {
            &mut found.originals
        };
        // A copy holds the whole set only with as many snapshots as the
        // original had (an original always holds itself).
        let size = snapshots[0].tags.get(tags::SET_SIZE);
        let covers = size.is_none_or(|n| n.parse().is_ok_and(|n: usize| snapshots.len() >= n));
        to.entry(source).or_default().push(Unit::Set(SnapshotSet {
            id,
            snapshots,
            covers,
        }));
    }
    found
}

/// When a copy's original was taken: its `backupctl:created-at`, or (a tag
/// missing or unreadable) the copy's own time, which is later: kept longer,
/// never deleted early.
fn original_time(copy: &Unit) -> DateTime<Utc> {
    crate::inventory::created_at_tag(copy.tags()).unwrap_or(copy.native_time())
}

/// Plans the copies of every enabled policy and the retention of its
/// copies, after the regions were planned (`out` holds their changes: an
/// original they delete is not copied).
pub fn plan(policies: &PolicySet, inventory: &Inventory, now: DateTime<Utc>, out: &mut Plan) {
    let deleted: HashSet<String> = out
        .changes
        .iter()
        .flat_map(|c| c.action.deleted_ids())
        .map(str::to_string)
        .collect();
    // Most policies copy nowhere and have no copies anywhere: one pass over
    // the inventory tells which, so that only the others are searched.
    let mut copied: HashSet<&str> = HashSet::new();
    for inv in inventory.regions.values() {
        copied.extend(
            inv.backups()
                .filter(|b| b.copy_of().is_some())
                .filter_map(|b| b.policy()),
        );
    }
    let copying = policies
        .enabled()
        .filter(|p| !p.copies.is_empty() || copied.contains(p.name.as_str()));
    for policy in copying {
        let found: BTreeMap<Place, Found> = inventory
            .regions
            .iter()
            .map(|(region, inv)| {
                let place = Place {
                    account: None,
                    region: region.as_str(),
                };
                (place, find(policy, inv, false))
            })
            .collect();
        for (place, here) in &found {
            let rule = policy
                .copies
                .iter()
                .find(|r| r.to_account.is_none() && r.to_region == place.region);
            match rule {
                Some(rule) => {
                    let ctx = Destination {
                        policy,
                        rule,
                        place: *place,
                        found: &found,
                        deleted: &deleted,
                        now,
                    };
                    ctx.plan(here, out);
                }
                None => out_of_scope(policy, *place, here, out),
            }
        }
        for rule in policy.copies.iter().filter(|r| r.to_account.is_none()) {
            if !inventory.regions.contains_key(&rule.to_region) {
                out.warnings.push(format!(
                    "policy \"{}\" copies to {}, which was not observed: no copy was planned there, and none of its copies there was judged",
                    policy.name, rule.to_region
                ));
            }
        }
    }
}

/// Copies in a region the policy does not copy to (any more).
pub(super) fn out_of_scope(policy: &Policy, place: Place, here: &Found, out: &mut Plan) {
    for unit in here.copies.values().flatten() {
        let mut entry = scope::entry(place.region, resource_type(unit), unit, &policy.name);
        entry.account = place.account.map(str::to_string);
        out.out_of_scope.push(entry);
    }
}

fn resource_type(unit: &Unit) -> ResourceType {
    match unit {
        Unit::Image(_) => ResourceType::Image,
        _ => ResourceType::Snapshot,
    }
}

/// One source's copies in a destination, and its originals elsewhere (with
/// where they are).
type Source<'a, 'f> = (Vec<Unit<'a>>, Vec<(Place<'a>, &'f Unit<'a>)>);

/// One copy rule's destination.
pub(super) struct Destination<'a, 'p> {
    pub policy: &'p Policy,
    pub rule: &'p CopyRule,
    pub place: Place<'a>,
    /// The policy's backups in every place it may copy from (and here).
    pub found: &'p BTreeMap<Place<'a>, Found<'a>>,
    pub deleted: &'p HashSet<String>,
    pub now: DateTime<Utc>,
}

impl<'a> Destination<'a, '_> {
    /// Whether the originals at `from` are copied here: within an account,
    /// from the other regions the policy acts in; across accounts, from
    /// every other account's places (the caller gives only those where the
    /// policy acts).
    fn copies_from(&self, from: &Place) -> bool {
        match (from.account, self.place.account) {
            (None, None) => {
                from.region != self.place.region && self.policy.target.regions.includes(from.region)
            }
            (Some(a), Some(d)) => a != d,
            _ => false,
        }
    }

    pub fn plan(&self, here: &Found<'a>, out: &mut Plan) {
        // Every source with copies here or originals to copy from another
        // region the policy acts in.
        let mut sources: BTreeMap<&str, Source<'a, '_>> = BTreeMap::new();
        for (source, copies) in &here.copies {
            sources.entry(source).or_default().0 = copies.clone();
        }
        for (from, there) in self.found {
            if !self.copies_from(from) {
                continue;
            }
            for (source, originals) in &there.originals {
                let list = &mut sources.entry(source).or_default().1;
                list.extend(originals.iter().map(|u| (*from, u)));
            }
        }
        for (source, (copies, originals)) in sources {
            self.plan_source(source, copies, &originals, here, out);
        }
    }

    fn plan_source(
        &self,
        source: &str,
        copies: Vec<Unit<'a>>,
        originals: &[(Place<'a>, &Unit<'a>)],
        here: &Found<'a>,
        out: &mut Plan,
    ) {
        let account = self.place.account.map(str::to_string);
        let rules = &self.rule.retention;
        let existing: Vec<Aged> = copies
            .into_iter()
            .map(|unit| Aged {
                at: original_time(&unit),
                unit,
                planned: false,
            })
            .collect();
        let refs: Vec<&Aged> = existing.iter().collect();
        let verdicts = retention::evaluate(&refs, rules, self.now);
        let deletions = verdicts.iter().filter(|(_, v)| v.is_delete()).count();
        let mut staying: Vec<&Aged> = Vec::new();
        for (copy, verdict) in verdicts {
            match verdict {
                Verdict::Keep(reason) => {
                    staying.push(copy);
                    out.kept.push(Kept {
                        account: account.clone(),
                        policy: self.policy.name.clone(),
                        region: self.place.region.to_string(),
                        source: source.to_string(),
                        resource_type: resource_type(&copy.unit),
                        id: copy.id().to_string(),
                        snapshot_ids: copy.unit.snapshot_ids(),
                        reason: Reason {
                            code: reason.code,
                            message: format!("copy: {}", reason.message),
                        },
                    });
                }
                Verdict::Delete(reason) => out.changes.push(Change {
                    account: account.clone(),
                    policy: self.policy.name.clone(),
                    region: self.place.region.to_string(),
                    source: display_source(source),
                    action: deletion(&copy.unit),
                    reason: Reason {
                        code: reason.code,
                        message: format!("copy: {}", reason.message),
                    },
                    backups_left: Some(BackupsLeft {
                        before: existing.len(),
                        after: existing.len() - deletions,
                    }),
                    recycle_bin: None,
                    precondition: Precondition::Delete {
                        state: copy.state_name(),
                        tags: copy.tags().clone(),
                    },
                }),
            }
        }
        let newest_copy = crate::inventory::newest_live(existing.iter());
        let due = self.not_copied(originals, here);
        // A set copied in part is finished; anything else is copied only if
        // retention here would keep its copy.
        let partial = |unit: &Unit| existing.iter().any(|c| c.id() == unit.id());
        let planned: Vec<Aged> = due
            .iter()
            .filter(|(_, unit, _)| !partial(unit))
            .map(|(_, unit, _)| Aged {
                unit: (*unit).clone(),
                at: unit.aged_from(),
                planned: true,
            })
            .collect();
        let mut together: Vec<&Aged> = staying.clone();
        together.extend(planned.iter());
        let wanted: HashSet<&str> = retention::evaluate(&together, rules, self.now)
            .into_iter()
            .filter(|(a, v)| a.planned && !v.is_delete())
            .map(|(a, _)| a.id())
            .collect();
        for (from, unit, missing) in due {
            if !partial(unit) && !wanted.contains(unit.id()) {
                continue;
            }
            if let Some(share) = self.share(source, from, unit, &missing) {
                out.changes.push(share);
            }
            out.changes
                .push(self.copy(source, from, unit, missing, newest_copy));
        }
    }

    /// Across accounts: the share that lets this account copy `unit`. It
    /// is the source account's change; apply makes every share before any
    /// copy. It is planned with every copy, even of an original whose tag
    /// says it is shared: the tag is written before the share, so a share
    /// that failed after it would otherwise never be made again (sharing
    /// twice changes nothing).
    fn share(&self, source: &str, from: Place, unit: &Unit, missing: &[String]) -> Option<Change> {
        let (Some(from_account), Some(account)) = (from.account, self.place.account) else {
            return None;
        };
        let (resource_type, snapshot_ids) = match unit {
            Unit::Image(image) => (ResourceType::Image, image.snapshot_ids.clone()),
            Unit::Set(_) => (ResourceType::Snapshot, missing.to_vec()),
            Unit::Legacy(_) => return None,
        };
        Some(Change {
            account: Some(from_account.to_string()),
            policy: self.policy.name.clone(),
            region: from.region.to_string(),
            source: source.to_string(),
            action: Action::Share {
                resource_type,
                id: unit.id().to_string(),
                snapshot_ids,
                account: account.to_string(),
                add: true,
            },
            reason: Reason {
                code: ReasonCode::NotCopied,
                message: format!(
                    "account {account} copies it to {} (`[[copy]] to_account`), and can only copy what is shared with it",
                    self.place.region
                ),
            },
            backups_left: None,
            recycle_bin: None,
            precondition: Precondition::Delete {
                state: unit.state_name(),
                tags: unit.tags().clone(),
            },
        })
    }

    /// The good originals that this plan keeps and that have no copy (in
    /// full) here, each with its region and the ids still to copy.
    fn not_copied<'u>(
        &self,
        originals: &[(Place<'a>, &'u Unit<'a>)],
        here: &Found<'a>,
    ) -> Vec<(Place<'a>, &'u Unit<'a>, Vec<String>)> {
        let mut due = Vec::new();
        for &(from, unit) in originals {
            if !unit.is_good() || self.deleted.contains(unit.id()) {
                continue;
            }
            let missing: Vec<String> = match unit {
                Unit::Image(image) if here.live.contains(from.copy_of(&image.id).as_str()) => {
                    Vec::new()
                }
                Unit::Image(image) => vec![image.id.clone()],
                _ => unit
                    .snapshot_ids()
                    .into_iter()
                    .filter(|sid| !here.live.contains(from.copy_of(sid).as_str()))
                    .collect(),
            };
            if !missing.is_empty() {
                due.push((from, unit, missing));
            }
        }
        due
    }

    fn copy(
        &self,
        source: &str,
        from: Place,
        unit: &Unit,
        source_ids: Vec<String>,
        newest_copy: Option<DateTime<Utc>>,
    ) -> Change {
        let taken = unit.aged_from();
        let mut tags = Tags::new();
        tags.insert(tags::POLICY, self.policy.name.as_str());
        tags.insert(tags::SOURCE, source);
        tags.insert(
            tags::CREATED_AT,
            taken.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        // The console shows copies under the original's name.
        if let Some(name) = unit.tags().get(tags::NAME) {
            tags.insert(tags::NAME, name);
        }
        let (resource_type, name) = match unit {
            Unit::Image(image) => {
                tags.insert(tags::COPY_OF, from.copy_of(&image.id));
                (ResourceType::Image, Some(image.name.clone()))
            }
            _ => {
                tags.insert(tags::SET, unit.id());
                tags.insert(tags::SET_SIZE, unit.snapshot_ids().len().to_string());
                (ResourceType::Snapshot, None)
            }
        };
        Change {
            account: self.place.account.map(str::to_string),
            policy: self.policy.name.clone(),
            region: self.place.region.to_string(),
            source: source.to_string(),
            action: Action::Copy {
                resource_type,
                source_account: from.account.map(str::to_string),
                source_region: from.region.to_string(),
                source_ids,
                name,
                tags,
                encrypted: self.rule.encrypted,
                kms_key: self.rule.kms_key.clone(),
            },
            reason: Reason {
                code: ReasonCode::NotCopied,
                message: format!(
                    "no copy in {}{} yet of {} {} from {}{} ({} old)",
                    self.place
                        .account
                        .map_or(String::new(), |a| format!("account {a}, ")),
                    self.place.region,
                    resource_type.as_str(),
                    unit.id(),
                    from.account
                        .map_or(String::new(), |a| format!("account {a}, ")),
                    from.region,
                    human_age(taken, self.now)
                ),
            },
            backups_left: None,
            recycle_bin: None,
            precondition: Precondition::Create {
                newest_backup_at: newest_copy,
            },
        }
    }
}

/// Deletes a copy: an image with every snapshot of it (all are the copy's),
/// or a set.
fn deletion(unit: &Unit) -> Action {
    match unit {
        Unit::Image(image) => Action::DeregisterImage {
            image_id: image.id.clone(),
            snapshot_ids: image.snapshot_ids.clone(),
            kept_snapshot_ids: Vec::new(),
        },
        _ => Action::DeleteSnapshotSet {
            set_id: unit.id().to_string(),
            snapshot_ids: unit.snapshot_ids(),
        },
    }
}

#[cfg(test)]
#[path = "copies_tests.rs"]
mod tests;
