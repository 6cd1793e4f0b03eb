//! Where each deletion goes: the Recycle Bin (which rules, for how many
//! days) or nowhere, from the region's observed rules; and the deletions
//! of a policy with `require_recycle_bin` that would be permanent, turned
//! into blocked ones.
//!
//! It runs once over the whole plan, after every region's and every
//! copy's deletions are decided. A region whose rules were not observed
//! (an inventory saved before they were) says nothing; one whose rules
//! could not be read gets a warning, and a policy that requires a bin rule
//! deletes nothing there.

use crate::inventory::recycle_bin::Fate;
use crate::inventory::{Inventory, RegionInventory, Tags};
use crate::plan::{Action, Blocked, Plan, Reason, ReasonCode};
use crate::policy::PolicySet;
use std::collections::{BTreeSet, HashMap};

pub fn settle(policies: &PolicySet, inventory: &Inventory, out: &mut Plan) {
    let mut tags_by_region: HashMap<&str, HashMap<&str, &Tags>> = HashMap::new();
    let mut unreadable = BTreeSet::new();
    let mut refused: Vec<usize> = Vec::new();
    for (n, c) in out.changes.iter_mut().enumerate() {
        if !c.action.is_delete() {
            continue;
        }
        let Some(inv) = inventory.regions.get(&c.region) else {
            continue;
        };
        let tags = tags_by_region
            .entry(c.region.as_str())
            .or_insert_with(|| tags_of(inv));
        let fate = inv.recycle_bin.as_ref().and_then(|bin| {
            if let Some(why) = &bin.unreadable {
                unreadable.insert((c.region.clone(), why.clone()));
            }
            let deleted: Vec<(&str, &str, &Tags)> = deleted(&c.action)
                .into_iter()
                .filter_map(|(kind, id)| Some((kind, id, *tags.get(id)?)))
                .collect();
            bin.fate(&deleted)
        });
        let required = policies
            .get(&c.policy)
            .is_some_and(|p| p.retention.require_recycle_bin);
        if required && !matches!(fate, Some(Fate::Bin { .. })) {
            refused.push(n);
        }
        c.recycle_bin = fate;
    }
    for n in refused.into_iter().rev() {
        let c = out.changes.remove(n);
        let id = c.action.target_id().unwrap_or_default().to_string();
        // The protection this plan would disable for it stays on.
        out.changes
            .retain(|u| !matches!(&u.action, Action::Unprotect { image_id } if *image_id == id));
        let why = match &c.recycle_bin {
            Some(Fate::Permanent(why)) => format!("{why}, and policy {} requires a Recycle Bin rule (`require_recycle_bin`); add a rule that retains its backups, or remove the key", c.policy),
            _ => format!("the Recycle Bin rules of {} could not be read, and policy {} requires one (`require_recycle_bin`); allow rbin:ListRules and rbin:GetRule (see iam-policy)", c.region, c.policy),
        };
        let (snapshot_id, set_id, image_ids) = match &c.action {
            Action::DeregisterImage { image_id, .. } => (id.clone(), None, vec![image_id.clone()]),
            Action::DeleteSnapshotSet { snapshot_ids, .. } => (
                snapshot_ids.first().cloned().unwrap_or_default(),
                Some(id.clone()),
                Vec::new(),
            ),
            _ => (id.clone(), None, Vec::new()),
        };
        out.blocked.push(Blocked {
            account: c.account,
            policy: c.policy,
            region: c.region,
            source: c.source,
            snapshot_id,
            set_id,
            image_ids,
            until: None,
            reason: Reason {
                code: ReasonCode::NoRecycleBin,
                message: format!("{}, but {why}", c.reason.message),
            },
        });
    }
    for (region, why) in unreadable {
        out.warnings.push(format!(
            "the Recycle Bin rules of {region} could not be read ({why}): the plan cannot say whether its deletions there can be restored; allow rbin:ListRules and rbin:GetRule (iam-policy includes them)"
        ));
    }
}

/// Each resource a deletion removes, with its type for the Recycle Bin.
fn deleted(action: &Action) -> Vec<(&'static str, &str)> {
    match action {
        Action::DeregisterImage {
            image_id,
            snapshot_ids,
            ..
        } => std::iter::once(("image", image_id.as_str()))
            .chain(snapshot_ids.iter().map(|s| ("snapshot", s.as_str())))
            .collect(),
        _ => action
            .deleted_ids()
            .into_iter()
            .map(|id| ("snapshot", id))
            .collect(),
    }
}

fn tags_of(inv: &RegionInventory) -> HashMap<&str, &Tags> {
    inv.images
        .iter()
        .map(|i| (i.id.as_str(), &i.tags))
        .chain(inv.snapshots.iter().map(|s| (s.id.as_str(), &s.tags)))
        .collect()
}
