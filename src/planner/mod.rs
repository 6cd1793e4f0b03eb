//! The planner: `(policies, inventory, now) -> Plan`.
//!
//! Pure and synchronous: no IO, no clock, no AWS types. Everything it needs is
//! in its arguments, so `plan --at`, saved inventories and tests all exercise
//! exactly the code that runs in production.
//!
//! Per region, and per enabled policy that targets it, it selects instances,
//! decides which backups are due, and applies the retention rules to the
//! policy's backups of each source. Each rule lives in one file:
//!
//! - [`selection`]: which instances, and which of their volumes;
//! - [`due`]: when a new backup is due (one per scheduled run);
//! - [`sets`]: snapshot sets, the unit of snapshot policies;
//! - [`index`]: a policy's backups grouped by the source written on them;
//! - [`retention`]: which backups of one source to keep or delete;
//! - [`deletions`]: retention's verdicts as changes, or blocked;
//! - [`scope`]: a policy acts only in the regions it targets;
//! - [`adoption`]: the old tools' backups that a policy takes over;
//! - [`copies`]: copies in other regions, and their retention there;
//! - [`locks`]: snapshot locks, and the deletions they hold back;
//! - [`protection`]: AMI deregistration protection, and the deletions it
//!   holds back or must disable first;
//! - [`recycle_bin`]: where each deletion goes, and the deletions a
//!   required Recycle Bin rule holds back;
//! - [`warnings`]: what would otherwise go wrong without a word.

pub mod adoption;
mod copies;
pub mod cross_account;
mod deletions;
pub mod due;
mod index;
mod leftovers;
mod locks;
mod protection;
mod recycle_bin;
pub mod retention;
mod scope;
mod selection;
pub mod sets;
pub mod warnings;

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

use crate::inventory::{newest_live, Backup, Instance, Inventory, RegionInventory, Tags};
use crate::plan::{
    Action, Change, Covered, Kept, Plan, Precondition, Reason, ReasonCode, ResourceType,
};
use crate::policy::{tags, Kind, Policy, PolicySet, Reboot};
use chrono::{DateTime, SecondsFormat, Utc};
use deletions::{display_source, Deletions};
use index::{PolicyBackups, RegionIndex};
use retention::Verdict;
use selection::Selected;
use sets::Unit;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Computes the plan. See the module docs for the rules.
///
/// Regions are independent, so each is planned on its own thread, and the
/// inventory's fingerprint on another: with 160,000 backups, planning them
/// one after the other took a second on two cores. The result does not
/// depend on the threads: it is merged in region order and sorted.
pub fn plan(policies: &PolicySet, inventory: &Inventory, now: DateTime<Utc>) -> Plan {
    plan_with(policies, inventory, now, true)
}

/// The plan of one account of several (see [`crate::fleet`]): as
/// [`plan`], but without the warning about a policy that selects nothing,
/// which only the plan of every account can tell.
pub fn plan_account(policies: &PolicySet, inventory: &Inventory, now: DateTime<Utc>) -> Plan {
    plan_with(policies, inventory, now, false)
}

fn plan_with(policies: &PolicySet, inventory: &Inventory, now: DateTime<Utc>, whole: bool) -> Plan {
    let (inventory_fingerprint, regions) = std::thread::scope(|s| {
        let fingerprint = s.spawn(|| inventory.fingerprint());
        let regions: Vec<_> = inventory
            .regions
            .iter()
            .map(|(region, inv)| {
                s.spawn(move || plan_region(policies, inventory, region, inv, now))
            })
            .collect();
        let regions: Vec<RegionResult> = regions
            .into_iter()
            .map(|h| h.join().unwrap_or_else(rethrow))
            .collect();
        (fingerprint.join().unwrap_or_else(rethrow), regions)
    });
    let mut out = Plan::empty(now);
    out.policies_digest = policies.digest.clone();
    out.inventory_fingerprint = inventory_fingerprint;
    warnings::clock(inventory, now, &mut out.warnings);
    let mut selected_anywhere: BTreeSet<&str> = BTreeSet::new();
    let mut region_warnings = Vec::new();
    for r in regions {
        append(&mut out.changes, r.plan.changes);
        append(&mut out.kept, r.plan.kept);
        append(&mut out.blocked, r.plan.blocked);
        append(&mut out.orphans, r.plan.orphans);
        append(&mut out.out_of_scope, r.plan.out_of_scope);
        append(&mut out.covered, r.plan.covered);
        region_warnings.extend(r.warnings);
        selected_anywhere.extend(r.selected);
    }
    let selected_anywhere = whole.then_some(&selected_anywhere);
    warnings::selection(policies, inventory, selected_anywhere, &mut out.warnings);
    warnings::long_locks(policies, &mut out.warnings);
    out.warnings.extend(region_warnings);
    copies::plan(policies, inventory, now, &mut out);
    recycle_bin::settle(policies, inventory, &mut out);
    // Each region's lists arrive sorted (see `plan_region`), so this sort
    // only merges a few sorted runs.
    sort_lists(&mut out);
    out
}

/// Moves `more` to the end of `to`; the first region's list is taken as
/// it is, not copied (100,000 kept backups: 16 MB).
fn append<T>(to: &mut Vec<T>, mut more: Vec<T>) {
    if to.is_empty() {
        *to = more;
    } else {
        to.append(&mut more);
    }
}

/// Sorts every list of the plan into its documented order.
fn sort_lists(plan: &mut Plan) {
    plan.changes
        .sort_by(|a, b| change_key(a).cmp(&change_key(b)));
    plan.kept.sort_by(|a, b| {
        (&a.policy, &a.region, &a.source, &a.id).cmp(&(&b.policy, &b.region, &b.source, &b.id))
    });
    plan.blocked.sort_by(|a, b| {
        (&a.policy, &a.region, &a.snapshot_id).cmp(&(&b.policy, &b.region, &b.snapshot_id))
    });
    plan.covered.sort();
    for list in [&mut plan.orphans, &mut plan.out_of_scope] {
        list.sort_by(|a, b| (&a.policy, &a.region, &a.id).cmp(&(&b.policy, &b.region, &b.id)));
    }
}

/// A panic on a planning thread is a panic of the planner.
fn rethrow<T>(panic: Box<dyn std::any::Any + Send>) -> T {
    std::panic::resume_unwind(panic)
}

/// What planning one region found, merged into the plan by [`plan`].
struct RegionResult<'p> {
    /// Its changes, kept, blocked, orphans and out-of-scope backups.
    plan: Plan,
    warnings: Vec<String>,
    /// The policies that selected some instance here.
    selected: BTreeSet<&'p str>,
}

fn plan_region<'p>(
    policies: &'p PolicySet,
    inventory: &'p Inventory,
    region: &'p str,
    inv: &'p RegionInventory,
    now: DateTime<Utc>,
) -> RegionResult<'p> {
    let mut out = Plan::empty(now);
    let mut warnings = Vec::new();
    let mut selected = BTreeSet::new();
    let local = inventory
        .local_instance
        .as_ref()
        .filter(|l| l.region == region)
        .map(|l| l.instance_id.as_str());
    let adopted = adoption::claims(policies, region, inv, local);
    let mut ctx = RegionPlan {
        region,
        inv,
        index: RegionIndex::new(inv, &adopted),
        local,
        now,
        out: &mut out,
        deletions: Deletions::default(),
        warnings: &mut warnings,
    };
    for policy in policies.enabled() {
        if !policy.target.regions.includes(region) {
            let found = scope::out_of_scope(policy, region, &ctx.index);
            ctx.out.out_of_scope.extend(found);
            continue;
        }
        if ctx.plan_policy(policy) > 0 {
            selected.insert(policy.name.as_str());
        }
    }
    let RegionPlan {
        deletions, index, ..
    } = ctx;
    deletions.finish(region, &index, now, &mut out);
    drop(index);
    let adoption::Adopted {
        changes,
        warnings: claimed_twice,
        ..
    } = adopted;
    out.changes.extend(changes);
    warnings.extend(claimed_twice);
    orphans(region, inv, policies, &mut out.orphans);
    sort_lists(&mut out);
    RegionResult {
        plan: out,
        warnings,
        selected,
    }
}

fn change_key(c: &Change) -> (&str, &str, u8, &str, &str) {
    (
        &c.policy,
        &c.region,
        c.action.rank(),
        &c.source,
        c.action.target_id().unwrap_or(""),
    )
}

/// Planning state for one region.
struct RegionPlan<'a, 'p> {
    region: &'a str,
    inv: &'a RegionInventory,
    index: RegionIndex<'a>,
    /// The instance backupctl runs on, if it is in this region.
    local: Option<&'a str>,
    now: DateTime<Utc>,
    out: &'p mut Plan,
    deletions: Deletions<'a>,
    warnings: &'p mut Vec<String>,
}

impl<'a> RegionPlan<'a, '_> {
    /// Plans `policy` in this region (which it targets); returns how many
    /// instances it selects here.
    fn plan_policy(&mut self, policy: &'a Policy) -> usize {
        let inv = self.inv;
        let selection =
            selection::select(policy, &inv.instances, &self.index.volume_tags, self.local);
        let volumes: HashMap<&str, Vec<&str>> = selection
            .iter()
            .map(|s| (s.instance.id.as_str(), s.volumes.clone()))
            .collect();
        let backups = self.index.backups_of(policy, &volumes);
        let resource_type = match policy.backup.kind {
            Kind::Ami => ResourceType::Image,
            Kind::Snapshot => ResourceType::Snapshot,
        };
        for selected in &selection {
            if policy.backup.kind == Kind::Ami || !selected.volumes.is_empty() {
                self.out.covered.push(Covered {
                    account: None,
                    policy: policy.name.clone(),
                    region: self.region.to_string(),
                    source: selected.instance.id.clone(),
                    resource_type,
                });
            }
            if let Some(change) = self.creation(policy, selected, &backups) {
                self.out.changes.push(change);
            }
        }
        let all_units = backups
            .groups
            .values()
            .flatten()
            .chain(backups.unknown.iter());
        warnings::future_tags(policy, self.region, all_units, self.warnings);
        warnings::unknown_sources(policy, self.region, &backups.unknown, self.warnings);
        self.retention(policy, backups);
        leftovers::plan(
            policy,
            self.region,
            &self.index,
            &self.deletions,
            self.now,
            self.out,
            self.warnings,
        );
        selection.len()
    }

    fn creation(
        &mut self,
        policy: &Policy,
        selected: &Selected,
        backups: &PolicyBackups<'a>,
    ) -> Option<Change> {
        let instance = selected.instance;
        let counting: Vec<&Unit> = backups.counting(&instance.id, policy.backup.kind).collect();
        let newest = newest_live(counting.iter().copied());
        let group = backups.groups.get(instance.id.as_str());
        let any = |f: fn(&Unit) -> bool| group.is_some_and(|g| g.iter().any(f));
        let legacy = any(|u| matches!(u, Unit::Legacy(_)));
        let none = match policy.backup.kind {
            Kind::Snapshot if any(|u| matches!(u, Unit::Set(_))) => format!(
                "no complete set of all {} selected volume(s) yet",
                selected.volumes.len()
            ),
            Kind::Snapshot if legacy => {
                "no snapshot set yet (its older snapshots were taken volume by volume)".to_string()
            }
            _ => "no backup yet".to_string(),
        };
        if policy.backup.kind == Kind::Snapshot && selected.volumes.is_empty() {
            warnings::no_volumes(policy, self.region, instance, self.warnings);
            return None;
        }
        let why = due::due(policy.backup.every, newest, self.now, &none)?;
        let action = match policy.backup.kind {
            Kind::Ami => self.image_creation(policy, instance),
            Kind::Snapshot => self.snapshot_creation(policy, instance, &selected.volumes),
        };
        Some(Change {
            account: None,
            policy: policy.name.clone(),
            region: self.region.to_string(),
            source: instance.id.clone(),
            action,
            reason: Reason {
                code: ReasonCode::Due,
                message: format!("due: {why}"),
            },
            backups_left: None,
            recycle_bin: None,
            precondition: Precondition::Create {
                newest_backup_at: newest,
            },
        })
    }

    fn image_creation(&self, policy: &Policy, instance: &Instance) -> Action {
        let name = self.unique_name(policy, &instance.id, &self.index.image_names);
        let reboot = match policy.backup.reboot {
            Reboot::Never => false,
            Reboot::Always => true,
            Reboot::Tag => instance
                .tags
                .get(tags::REBOOT)
                .is_some_and(|v| v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("true")),
        };
        Action::CreateImage {
            instance_id: instance.id.clone(),
            tags: self.backup_tags(policy, &instance.id, &name),
            name,
            reboot,
        }
    }

    /// One CreateSnapshots of every selected volume: a whole new set.
    fn snapshot_creation(&self, policy: &Policy, instance: &Instance, volumes: &[&str]) -> Action {
        let chosen: HashSet<&str> = volumes.iter().copied().collect();
        let exclude_boot_volume = instance
            .volumes
            .iter()
            .any(|v| v.root && !chosen.contains(v.volume_id.as_str()));
        let exclude_data_volume_ids = instance
            .volumes
            .iter()
            .filter(|v| !v.root && !chosen.contains(v.volume_id.as_str()))
            .map(|v| v.volume_id.clone())
            .collect();
        let set = self.unique_name(policy, &instance.id, &self.index.set_ids);
        let name = backup_name(policy, &instance.id, self.now);
        let mut tags = self.backup_tags(policy, &instance.id, &name);
        tags.insert(tags::SET, set);
        let lock = policy
            .backup
            .lock
            .filter(|l| l.mode == crate::policy::LockMode::Governance)
            .map(|l| crate::plan::NewLock {
                mode: l.mode,
                expires_at: self.now + chrono::TimeDelta::days(i64::from(l.days)),
            });
        Action::CreateSnapshots {
            instance_id: instance.id.clone(),
            volume_ids: volumes.iter().map(|v| v.to_string()).collect(),
            exclude_boot_volume,
            exclude_data_volume_ids,
            tags,
            lock,
        }
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
        t.into_iter().collect()
    }

    /// The backup name, made unique among `taken` (AMI names are unique per
    /// region and account; set ids must identify one set): `-2`, `-3`… when
    /// two runs fall in one minute.
    fn unique_name(&self, policy: &Policy, source: &str, taken: &HashSet<&str>) -> String {
        let base = backup_name(policy, source, self.now);
        if !taken.contains(base.as_str()) {
            return base;
        }
        (2..)
            .map(|k| format!("{base}-{k}"))
            .find(|n| !taken.contains(n.as_str()))
            .expect("some suffix is free")
    }

    /// Applies retention to every backup the policy owns in this region,
    /// whether or not its source is still selected.
    fn retention(&mut self, policy: &'a Policy, backups: PolicyBackups<'a>) {
        for (source, group) in &backups.groups {
            let gid = self.deletions.group(group.len());
            let refs: Vec<&Unit<'a>> = group.iter().collect();
            for (unit, verdict) in retention::evaluate(&refs, &policy.retention, self.now) {
                let verdict = match verdict {
                    Verdict::Delete(reason) => floor(unit, reason, self.now),
                    keep => keep,
                };
                match verdict {
                    Verdict::Delete(reason) => {
                        self.deletions.want(policy, unit.clone(), reason, gid)
                    }
                    Verdict::Keep(mut reason) => {
                        if matches!(unit, Unit::Legacy(_)) && reason.code == ReasonCode::NoNewerGood
                        {
                            let made = match unit.tags().get(tags::ADOPTED_FROM) {
                                Some(tool) => format!("taken volume by volume by {tool}"),
                                None => "taken before snapshot sets".to_string(),
                            };
                            reason.message = format!(
                                "{made}: kept until a newer complete set of its instance exists"
                            );
                        }
                        self.keep(policy, source, unit, reason)
                    }
                }
            }
        }
        for unit in &backups.unknown {
            let reason = Reason {
                code: ReasonCode::UnknownSource,
                message: "source unknown: kept, never deleted by retention".into(),
            };
            self.keep(policy, "", unit, reason);
        }
    }

    fn keep(&mut self, policy: &Policy, source: &str, unit: &Unit<'a>, reason: Reason) {
        if let Some(lock) = &policy.backup.lock {
            let change = locks::change(policy, lock, self.region, unit, &self.index, self.now);
            self.out.changes.extend(change);
        }
        if let Some(wanted) = policy.backup.deregistration_protection {
            let change = protection::change(policy, wanted, self.region, unit, self.now);
            self.out.changes.extend(change);
        }
        let resource_type = match unit {
            Unit::Image(_) => ResourceType::Image,
            Unit::Set(_) | Unit::Legacy(_) => ResourceType::Snapshot,
        };
        self.out.kept.push(Kept {
            account: None,
            policy: policy.name.clone(),
            region: self.region.to_string(),
            source: display_source(source),
            resource_type,
            id: unit.id().to_string(),
            snapshot_ids: match unit {
                Unit::Set(_) => unit.snapshot_ids(),
                _ => Vec::new(),
            },
            reason,
        });
    }
}

/// backupViaTag's `Expire` tag as a floor: a backup it made is never
/// deleted before the expiry it was given then.
fn floor(unit: &Unit, reason: Reason, now: DateTime<Utc>) -> Verdict {
    use adoption::OldExpiry;
    let why = match adoption::old_expiry(unit.tags(), now) {
        None => return Verdict::Delete(reason),
        Some(OldExpiry::Never) => "its backupViaTag Expire tag says never".to_string(),
        Some(OldExpiry::Until(t)) => format!(
            "its backupViaTag Expire tag keeps it until {}",
            t.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
        Some(OldExpiry::Unreadable(text)) => format!(
            "its backupViaTag Expire tag \"{text}\" cannot be read, so it is kept; fix or remove the tag to let retention decide"
        ),
    };
    Verdict::Keep(Reason {
        code: ReasonCode::OldExpiry,
        message: format!("{}, but {why}", reason.message),
    })
}

/// Backups tagged with a policy that is not in the set: reported, never
/// deleted (the policy may have been removed by mistake).
fn orphans(
    region: &str,
    inv: &RegionInventory,
    policies: &PolicySet,
    out: &mut Vec<crate::plan::Orphan>,
) {
    let orphan_policy = |tags: &Tags| {
        tags.get(tags::POLICY)
            .filter(|p| policies.get(p).is_none() && policies.in_namespace(p))
            .map(str::to_string)
    };
    let mut in_orphan_image = HashSet::new();
    for image in &inv.images {
        if let Some(policy) = orphan_policy(&image.tags) {
            in_orphan_image.extend(image.snapshot_ids.iter().map(String::as_str));
            out.push(scope::entry(region, ResourceType::Image, image, &policy));
        }
    }
    for snapshot in &inv.snapshots {
        if in_orphan_image.contains(snapshot.id.as_str()) {
            continue;
        }
        if let Some(policy) = orphan_policy(&snapshot.tags) {
            out.push(scope::entry(
                region,
                ResourceType::Snapshot,
                snapshot,
                &policy,
            ));
        }
    }
}

/// `<policy>-<source>-<YYYYMMDDTHHMMZ>`: a valid AMI name (no colons, at most
/// 64 + 1 + 19 + 1 + 14 characters) that sorts by time.
pub fn backup_name(policy: &Policy, source: &str, now: DateTime<Utc>) -> String {
    format!("{}-{}-{}", policy.name, source, now.format("%Y%m%dT%H%MZ"))
}
