//! Is a saved plan still the plan? Before `apply PLANFILE` acts, what the
//! plan touches is observed again and compared with what the plan was made
//! on; any difference refuses the whole plan. Pure: the re-observation comes
//! in as an inventory.

use crate::inventory::{newest_live, Backup, Inventory};
use crate::plan::{Action, Change, Plan, Precondition};
use crate::planner::sets::SnapshotSet;
use crate::policy::{human_age, PolicySet};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// What to observe again, per region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recheck {
    pub instance_ids: BTreeSet<String>,
    pub image_ids: BTreeSet<String>,
    pub snapshot_ids: BTreeSet<String>,
    /// Sources of creations: their backups tell whether someone else ran.
    pub sources: BTreeSet<String>,
}

/// What each region of `plan` must be observed for.
pub fn rechecks(plan: &Plan) -> BTreeMap<String, Recheck> {
    let mut out: BTreeMap<String, Recheck> = BTreeMap::new();
    for c in &plan.changes {
        let r = out.entry(c.region.clone()).or_default();
        match &c.action {
            Action::CreateImage { instance_id, .. }
            | Action::CreateSnapshots { instance_id, .. } => {
                r.instance_ids.insert(instance_id.clone());
                r.sources.insert(instance_id.clone());
            }
            Action::DeregisterImage { image_id, .. } => {
                r.image_ids.insert(image_id.clone());
            }
            Action::DeleteSnapshot { snapshot_id } => {
                r.snapshot_ids.insert(snapshot_id.clone());
            }
            Action::DeleteSnapshotSet { snapshot_ids, .. } => {
                r.snapshot_ids.extend(snapshot_ids.iter().cloned());
            }
        }
    }
    out
}

/// Every reason the plan may no longer be applied, worded for the operator;
/// empty when it still holds.
pub fn differences(
    plan: &Plan,
    policies: &PolicySet,
    observed: &Inventory,
    now: DateTime<Utc>,
    max_age: TimeDelta,
) -> Vec<String> {
    let mut out = Vec::new();
    if plan.policies_digest != policies.digest {
        out.push("the policy files changed since the plan was made".to_string());
    }
    let made = plan.generated_at;
    if now - made > max_age {
        out.push(format!(
            "the plan was made {} ago ({}), longer than --max-plan-age allows",
            human_age(made, now),
            made.to_rfc3339()
        ));
    } else if made - now > TimeDelta::minutes(5) {
        out.push(format!(
            "the plan was made for {}, in the future (with --at?); only a plan made for now can be applied",
            made.to_rfc3339()
        ));
    }
    for c in &plan.changes {
        if let Some(d) = difference(c, policies, observed) {
            out.push(format!("{}: {d}", c.address()));
        }
    }
    out
}

fn difference(c: &Change, policies: &PolicySet, observed: &Inventory) -> Option<String> {
    if policies.get(&c.policy).is_none_or(|p| !p.enabled) {
        return Some(format!(
            "policy {} is not in the (enabled) policy set",
            c.policy
        ));
    }
    let Some(region) = observed.regions.get(&c.region) else {
        return Some(format!("region {} could not be observed again", c.region));
    };
    match (&c.precondition, &c.action) {
        (Precondition::Create { newest_backup_at }, action) => {
            let instance = region.instances.iter().find(|i| i.id == c.source);
            if instance.is_none_or(|i| i.state.is_gone()) {
                return Some(format!("instance {} is gone", c.source));
            }
            let newest = match action {
                Action::CreateImage { .. } => newest_live(region.images.iter().filter(|i| {
                    i.policy() == Some(c.policy.as_str()) && i.source() == Some(c.source.as_str())
                })),
                Action::CreateSnapshots { .. } => newest_set(region, &c.policy, &c.source),
                _ => None,
            };
            match (newest, newest_backup_at) {
                (Some(now), Some(then)) if now > *then => Some(format!(
                    "a newer backup of {} appeared ({}): someone else already ran",
                    c.source,
                    now.to_rfc3339()
                )),
                (Some(now), None) => Some(format!(
                    "a backup of {} appeared ({}): someone else already ran",
                    c.source,
                    now.to_rfc3339()
                )),
                _ => None,
            }
        }
        (Precondition::Delete { state, tags }, action) => {
            let (id, found): (&str, Option<(String, &crate::inventory::Tags)>) = match action {
                Action::DeregisterImage { image_id, .. } => (
                    image_id,
                    region
                        .images
                        .iter()
                        .find(|i| &i.id == image_id)
                        .map(|i| (i.state_name(), &i.tags)),
                ),
                Action::DeleteSnapshot { snapshot_id } => (
                    snapshot_id,
                    region
                        .snapshots
                        .iter()
                        .find(|s| &s.id == snapshot_id)
                        .map(|s| (s.state_name(), &s.tags)),
                ),
                Action::DeleteSnapshotSet { snapshot_ids, .. } => {
                    return set_difference(region, snapshot_ids, tags);
                }
                _ => return Some("a deletion that deletes nothing".into()),
            };
            let Some((now_state, now_tags)) = found else {
                return Some(format!("{id} is gone"));
            };
            if tags.get(crate::policy::tags::POLICY) != Some(&c.policy) {
                return Some(format!("{id} was not planned as a backup of {}", c.policy));
            }
            if &now_state != state {
                Some(format!("{id} is now {now_state} (was {state})"))
            } else if now_tags != tags {
                Some(format!("{id} was re-tagged since the plan was made"))
            } else {
                None
            }
        }
    }
}

/// When the newest good-or-pending set of `source` was taken. Coverage is
/// not judged here: any newer set means someone else ran.
fn newest_set(
    region: &crate::inventory::RegionInventory,
    policy: &str,
    source: &str,
) -> Option<DateTime<Utc>> {
    let mut sets: BTreeMap<&str, Vec<&crate::inventory::Snapshot>> = BTreeMap::new();
    for s in &region.snapshots {
        if s.policy() == Some(policy) && s.source() == Some(source) {
            if let Some(set) = s.set_id() {
                sets.entry(set).or_default().push(s);
            }
        }
    }
    let sets: Vec<SnapshotSet> = sets
        .into_iter()
        .map(|(id, snapshots)| SnapshotSet {
            id,
            snapshots,
            covers: true,
        })
        .collect();
    newest_live(sets.iter())
}

/// Every snapshot of a set to delete still exists, done, with its tags.
fn set_difference(
    region: &crate::inventory::RegionInventory,
    snapshot_ids: &[String],
    tags: &crate::inventory::Tags,
) -> Option<String> {
    for id in snapshot_ids {
        let Some(s) = region.snapshots.iter().find(|s| &s.id == id) else {
            return Some(format!("snapshot {id} of the set is gone"));
        };
        if &s.tags != tags {
            return Some(format!(
                "snapshot {id} of the set was re-tagged since the plan was made"
            ));
        }
        if s.is_pending() {
            return Some(format!("snapshot {id} of the set is now pending"));
        }
    }
    None
}
