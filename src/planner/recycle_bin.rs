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
use std::collections::{BTreeSet, HashMap, HashSet};

pub fn settle(policies: &PolicySet, inventory: &Inventory, out: &mut Plan) {
    let mut tags_by_region: HashMap<&str, HashMap<&str, &Tags>> = HashMap::new();
    let mut unreadable = BTreeSet::new();
    // The deletions a required bin rule holds back, and why.
    let mut refused: HashMap<usize, String> = HashMap::new();
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
        if required {
            let why = match (&fate, &inv.recycle_bin) {
                (Some(Fate::Bin { .. }), _) => None,
                (Some(Fate::Permanent(why)), _) => Some(format!("{why}, and policy {} requires a Recycle Bin rule (`require_recycle_bin`); add a rule that retains its backups, or remove the key", c.policy)),
                (None, None) => Some(format!("the Recycle Bin rules of {} were not observed (an inventory saved before backupctl read them), and policy {} requires one (`require_recycle_bin`)", c.region, c.policy)),
                (None, Some(_)) => Some(format!("the Recycle Bin rules of {} could not be read, and policy {} requires one (`require_recycle_bin`); allow rbin:ListRules and rbin:GetRule (see iam-policy)", c.region, c.policy)),
            };
            if let Some(why) = why {
                refused.insert(n, why);
            }
        }
        c.recycle_bin = fate;
    }
    let (held, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut out.changes)
        .into_iter()
        .enumerate()
        .partition(|(n, _)| refused.contains_key(n));
    out.changes = kept.into_iter().map(|(_, c)| c).collect();
    // The protection this plan would disable for an image held stays on.
    let held_images: HashSet<String> = held
        .iter()
        .filter_map(|(_, c)| match &c.action {
            Action::DeregisterImage { image_id, .. } => Some(image_id.clone()),
            _ => None,
        })
        .collect();
    out.changes.retain(
        |u| !matches!(&u.action, Action::Unprotect { image_id } if held_images.contains(image_id)),
    );
    for (n, c) in held {
        let id = c.action.target_id().unwrap_or_default().to_string();
        let why = &refused[&n];
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

#[cfg(test)]
mod tests {
    use crate::inventory::recycle_bin::{BinRule, Fate, RecycleBin};
    use crate::plan::{Action, ReasonCode};
    use crate::planner::plan;
    use crate::planner::simulation::{self, policy, run, start};
    use crate::provider::memory::MemoryProvider;
    use chrono::TimeDelta;

    fn rule(id: &str, kind: &str, days: u32) -> BinRule {
        BinRule {
            id: id.into(),
            resource_type: kind.into(),
            days,
            tags: vec![("backupctl:policy".into(), Some("db".into()))],
            exclude_tags: Vec::new(),
        }
    }

    #[test]
    fn a_required_bin_holds_back_what_no_rule_retains_with_its_unprotecting() {
        let policies = policy(
            "ami",
            "deregistration_protection = true\n",
            "max_age = \"2 days\"\nkeep_last = 1\nrequire_recycle_bin = true\n",
            "",
        );
        let ec2 = MemoryProvider::new(simulation::fleet(&[("i-1", &["vol-1"])], &[]), start());
        for day in 0..3 {
            run(&ec2, &policies, start() + TimeDelta::days(day));
        }
        let now = start() + TimeDelta::days(3);
        let planned = |bin: Option<RecycleBin>| {
            let mut inv = ec2.inventory();
            inv.regions.get_mut("us-east-1").unwrap().recycle_bin = bin;
            plan(&policies, &inv, now)
        };
        let gone = |p: &crate::plan::Plan| {
            p.changes
                .iter()
                .filter(|c| {
                    matches!(
                        c.action,
                        Action::DeregisterImage { .. } | Action::Unprotect { .. }
                    )
                })
                .count()
        };
        // Rules not observed, or none for snapshots: nothing goes, and the
        // protection stays on.
        let bins = [
            None,
            Some(RecycleBin {
                rules: vec![rule("images", "image", 14)],
                unreadable: None,
            }),
            Some(RecycleBin {
                unreadable: Some("AccessDenied".into()),
                ..Default::default()
            }),
        ];
        for bin in bins {
            let p = planned(bin.clone());
            assert_eq!(gone(&p), 0, "{bin:?}: {:?}", p.changes);
            let held: Vec<_> = p
                .blocked
                .iter()
                .filter(|b| b.reason.code == ReasonCode::NoRecycleBin)
                .collect();
            // Days 0 and 1's images: retention wants them gone.
            assert_eq!(held.len(), 2, "{bin:?}: {:?}", p.blocked);
            assert!(held.iter().all(|b| b.what().0 == "image"));
            let said = match &bin {
                None => "were not observed",
                Some(b) if b.unreadable.is_some() => "could not be read",
                Some(_) => "no Recycle Bin rule retains",
            };
            assert!(held[0].reason.message.contains(said), "{held:?}");
        }
        // Both retained: unprotected, deregistered, restorable 7 days.
        let p = planned(Some(RecycleBin {
            rules: vec![rule("images", "image", 14), rule("snaps", "snapshot", 7)],
            unreadable: None,
        }));
        assert_eq!(gone(&p), 4, "{:?}", p.changes);
        let deletion = p.changes.iter().find(|c| c.action.is_delete()).unwrap();
        assert_eq!(
            deletion.recycle_bin,
            Some(Fate::Bin {
                rules: vec!["images".into(), "snaps".into()],
                days: 7
            })
        );
    }
}
