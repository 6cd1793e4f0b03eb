//! Copies to another account (`[[copy]] to_account`), planned once every
//! account of an accounts file is observed.
//!
//! Each account is planned on its own, and its inventory freed (see
//! [`crate::fleet`]); a copy to another account needs two: the originals
//! where the policy acts, and the copies in the destination. So before an
//! account's inventory is freed, [`view`] keeps what this needs (the
//! backups of policies that copy to another account, copies from other
//! accounts, and backups shared for a copy), and [`plan`] plans over those
//! views with the same rules as copies within an account (see
//! [`super::copies`]): a copy of each good original not copied yet, newest
//! first; retention per destination on the copies; the newest copy never
//! deleted.
//!
//! A copy needs the original shared with the destination account first:
//! the plan holds a share change in the source account beside each copy,
//! and apply makes every share before any copy. Once no copy of a shared
//! original is being made or planned, the next plan unshares it: the
//! share lasts from the copy's plan until the first run after the copy
//! completes.

use super::copies::{self, Destination, Found, Place};
use crate::inventory::{copied_across_accounts, Backup, Inventory, RegionInventory, Tags};
use crate::plan::{Action, Change, Plan, Precondition, Reason, ReasonCode, ResourceType};
use crate::policy::{tags, PolicySet};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};

/// One observed account, as cross-account planning sees it.
pub struct AccountView {
    pub id: String,
    /// The policy set as it acts in this account (see
    /// [`crate::accounts::AccountSet::policies_for`]).
    pub policies: PolicySet,
    /// What [`view`] kept of its inventory.
    pub inventory: Inventory,
}

/// The accounts the tags `t` say the backup is shared with for a copy.
fn shared_with(t: &Tags) -> impl Iterator<Item = &str> + '_ {
    t.keys().filter_map(|k| k.strip_prefix(tags::SHARED_WITH))
}

/// What of an account's inventory cross-account planning needs: the
/// backups of policies that copy to another account, copies from other
/// accounts, and backups shared for a copy, with each region's Recycle Bin
/// rules. Everything else (instances, volumes, other backups) is dropped.
pub fn view(policies: &PolicySet, inventory: &Inventory) -> Inventory {
    let copying: HashSet<&str> = policies
        .policies
        .iter()
        .filter(|p| p.copies.iter().any(|r| r.to_account.is_some()))
        .map(|p| p.name.as_str())
        .collect();
    let wanted = |b: &dyn Backup| {
        b.policy().is_some_and(|p| copying.contains(p))
            || b.copy_of().is_some_and(copied_across_accounts)
            || shared_with(b.tags()).next().is_some()
    };
    let regions = inventory
        .regions
        .iter()
        .map(|(region, inv)| {
            let kept = RegionInventory {
                images: inv.images.iter().filter(|i| wanted(*i)).cloned().collect(),
                snapshots: inv
                    .snapshots
                    .iter()
                    .filter(|s| wanted(*s))
                    .cloned()
                    .collect(),
                recycle_bin: inv.recycle_bin.clone(),
                ..Default::default()
            };
            (region.clone(), kept)
        })
        .collect();
    Inventory {
        format_version: inventory.format_version,
        observed_at: inventory.observed_at,
        local_instance: None,
        regions,
    }
}

/// Plans the copies to other accounts of every enabled policy, their
/// retention, and the shares they need (or no longer need). `accounts`
/// resolves a `to_account` (id or name) to an id; `deleted`: the ids the
/// accounts' own plans delete (never copied, never unshared).
pub fn plan(
    policies: &PolicySet,
    views: &[AccountView],
    accounts: &BTreeMap<String, String>,
    deleted: &HashSet<String>,
    now: DateTime<Utc>,
) -> Plan {
    let mut out = Plan::empty(now);
    let by_id: BTreeMap<&str, &AccountView> = views.iter().map(|v| (v.id.as_str(), v)).collect();
    // (account, region, policy) of every destination a rule plans.
    let mut planned: HashSet<(&str, &str, &str)> = HashSet::new();
    for policy in policies.enabled() {
        for rule in policy.copies.iter().filter(|r| r.to_account.is_some()) {
            let named = rule.to_account.as_deref().unwrap_or_default();
            let Some(account) = accounts.get(named).map(String::as_str) else {
                // The file lists it (checked at load): it is in another
                // `--shard`.
                out.warnings.push(format!(
                    "policy \"{}\" copies to account {named}, which is not among this run's accounts (another --shard?): no copy was planned there; copies across accounts are planned only by a run that holds both accounts",
                    policy.name
                ));
                continue;
            };
            let Some(dest) = by_id
                .get(account)
                .and_then(|v| v.inventory.regions.get(&rule.to_region))
            else {
                out.warnings.push(format!(
                    "policy \"{}\" copies to {} of account {named}, which was not observed: no copy was planned there, and none of its copies there was judged",
                    policy.name, rule.to_region
                ));
                continue;
            };
            planned.insert((account, rule.to_region.as_str(), policy.name.as_str()));
            let place = Place {
                account: Some(account),
                region: rule.to_region.as_str(),
            };
            let mut found: BTreeMap<Place, Found> = BTreeMap::new();
            for v in views.iter().filter(|v| v.id != account) {
                let Some(acting) = v.policies.get(&policy.name) else {
                    continue;
                };
                for (region, inv) in &v.inventory.regions {
                    if acting.target.regions.includes(region) {
                        let from = Place {
                            account: Some(v.id.as_str()),
                            region: region.as_str(),
                        };
                        found.insert(from, copies::find(policy, inv, true));
                    }
                }
            }
            found.insert(place, copies::find(policy, dest, true));
            let ctx = Destination {
                policy,
                rule,
                place,
                found: &found,
                deleted,
                now,
            };
            ctx.plan(&found[&place], &mut out);
        }
    }
    // Copies from other accounts that no rule plans any more.
    for v in views {
        for (region, inv) in &v.inventory.regions {
            for policy in policies.enabled() {
                if planned.contains(&(v.id.as_str(), region.as_str(), policy.name.as_str())) {
                    continue;
                }
                let place = Place {
                    account: Some(v.id.as_str()),
                    region: region.as_str(),
                };
                copies::out_of_scope(policy, place, &copies::find(policy, inv, true), &mut out);
            }
        }
    }
    unshare(views, deleted, &mut out);
    settle_recycle_bin(policies, &by_id, &mut out);
    out
}

/// Unshares every original shared with an observed account that has no
/// copy of it being made and none planned: the copy is made, or no longer
/// wanted.
fn unshare(views: &[AccountView], deleted: &HashSet<String>, out: &mut Plan) {
    let observed: HashSet<&str> = views.iter().map(|v| v.id.as_str()).collect();
    // (destination account, `backupctl:copy-of`) of each copy in flight.
    let mut in_flight: HashSet<(String, String)> = HashSet::new();
    for v in views {
        for inv in v.inventory.regions.values() {
            for b in inv.backups().filter(|b| b.is_pending()) {
                if let Some(of) = b.copy_of().filter(|of| copied_across_accounts(of)) {
                    in_flight.insert((v.id.clone(), of.to_string()));
                }
            }
        }
    }
    for c in &out.changes {
        if let Action::Copy {
            source_account: Some(from),
            source_region,
            source_ids,
            ..
        } = &c.action
        {
            let to = c.account.clone().unwrap_or_default();
            for id in source_ids {
                in_flight.insert((
                    to.clone(),
                    crate::inventory::copy_of(Some(from), source_region, id),
                ));
            }
        }
    }
    let mut unshares = Vec::new();
    for v in views {
        for (region, inv) in &v.inventory.regions {
            let still = |to: &str, id: &str| {
                !observed.contains(to)
                    || deleted.contains(id)
                    || in_flight.contains(&(
                        to.to_string(),
                        crate::inventory::copy_of(Some(&v.id), region, id),
                    ))
            };
            let mut of_images: HashSet<(&str, &str)> = HashSet::new();
            for image in &inv.images {
                for to in shared_with(&image.tags) {
                    of_images.extend(image.snapshot_ids.iter().map(|s| (to, s.as_str())));
                    if !still(to, &image.id) {
                        unshares.push(unshare_change(
                            &v.id,
                            region,
                            image,
                            (ResourceType::Image, &image.id),
                            image.snapshot_ids.clone(),
                            to,
                        ));
                    }
                }
            }
            // A set's snapshots, unshared together.
            let mut sets: BTreeMap<(&str, &str), Vec<&crate::inventory::Snapshot>> =
                BTreeMap::new();
            for snapshot in &inv.snapshots {
                for to in shared_with(&snapshot.tags) {
                    if !of_images.contains(&(to, snapshot.id.as_str())) && !still(to, &snapshot.id)
                    {
                        let set = snapshot.set_id().unwrap_or(snapshot.id.as_str());
                        sets.entry((set, to)).or_default().push(snapshot);
                    }
                }
            }
            for ((set, to), snapshots) in sets {
                let ids = snapshots.iter().map(|s| s.id.clone()).collect();
                unshares.push(unshare_change(
                    &v.id,
                    region,
                    snapshots[0],
                    (ResourceType::Snapshot, set),
                    ids,
                    to,
                ));
            }
        }
    }
    out.changes.extend(unshares);
}

/// The unshare of `what` (an image, or a snapshot set or snapshot) in
/// `account`, from `to`; `backup` (the image, or one of the snapshots)
/// gives its policy, source and precondition.
fn unshare_change(
    account: &str,
    region: &str,
    backup: &dyn Backup,
    what: (ResourceType, &str),
    snapshot_ids: Vec<String>,
    to: &str,
) -> Change {
    let (resource_type, id) = what;
    Change {
        account: Some(account.to_string()),
        policy: backup.policy().unwrap_or_default().to_string(),
        region: region.to_string(),
        source: backup.source().unwrap_or("unknown").to_string(),
        action: Action::Share {
            resource_type,
            id: id.to_string(),
            snapshot_ids,
            account: to.to_string(),
            add: false,
        },
        reason: Reason {
            code: ReasonCode::ShareNotNeeded,
            message: format!(
                "shared with account {to} for a copy, and no copy of it is being made or planned there (made, or no longer wanted): the share is removed"
            ),
        },
        backups_left: None,
        recycle_bin: None,
        precondition: Precondition::Delete {
            state: backup.state_name(),
            tags: backup.tags().clone(),
        },
    }
}

/// Where each deletion of a copy goes, by its own account's Recycle Bin
/// rules (see [`super::recycle_bin`]).
fn settle_recycle_bin(policies: &PolicySet, by_id: &BTreeMap<&str, &AccountView>, out: &mut Plan) {
    let mut by_account: BTreeMap<String, Plan> = BTreeMap::new();
    let mut others = Vec::new();
    for c in std::mem::take(&mut out.changes) {
        match (&c.account, c.action.is_delete()) {
            (Some(a), true) => by_account
                .entry(a.clone())
                .or_insert_with(|| Plan::empty(out.generated_at))
                .changes
                .push(c),
            _ => others.push(c),
        }
    }
    for (account, mut part) in by_account {
        if let Some(v) = by_id.get(account.as_str()) {
            super::recycle_bin::settle(policies, &v.inventory, &mut part);
        }
        for b in &mut part.blocked {
            b.account = Some(account.clone());
        }
        others.extend(part.changes);
        out.blocked.extend(part.blocked);
        out.warnings.extend(
            part.warnings
                .into_iter()
                .map(|w| format!("account {account}: {w}")),
        );
    }
    out.changes = others;
    super::sort_lists(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::testing::owned_image;
    use crate::inventory::{Image, ImageState};
    use crate::planner::simulation::{policy, start};
    use chrono::TimeDelta;

    const PROD: &str = "111111111111";
    const DR: &str = "444444444444";

    fn policies() -> PolicySet {
        policy(
            "ami",
            "",
            "max_age = \"14 days\"\n",
            "[[copy]]\nto_region = \"eu-west-1\"\nto_account = \"dr\"\nkms_key = \"alias/dr\"\n",
        )
    }

    fn names() -> BTreeMap<String, String> {
        [("dr", DR), (DR, DR), ("prod", PROD), (PROD, PROD)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// An account's view holding `images` in `region`.
    fn view(id: &str, region: &str, images: Vec<Image>) -> AccountView {
        let mut inventory = Inventory::empty();
        inventory.regions.insert(
            region.to_string(),
            RegionInventory {
                images,
                ..Default::default()
            },
        );
        AccountView {
            id: id.to_string(),
            policies: policies(),
            inventory,
        }
    }

    fn original(shared: bool) -> Image {
        let mut image = owned_image("ami-1", "db", "i-1", start());
        image.snapshot_ids = vec!["snap-1".into()];
        if shared {
            image
                .tags
                .insert(format!("{}{DR}", tags::SHARED_WITH), "copy");
        }
        image
    }

    fn copy(state: ImageState) -> Image {
        let mut image = owned_image("ami-c", "db", "i-1", start());
        image
            .tags
            .insert(tags::COPY_OF, format!("{PROD}/us-east-1/ami-1"));
        image.state = state;
        image
    }

    fn operations(p: &Plan) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = p
            .changes
            .iter()
            .map(|c| (c.account.clone().unwrap(), c.action.operation()))
            .collect();
        out.sort();
        out
    }

    fn change<'p>(p: &'p Plan, operation: &str) -> &'p Action {
        let found = p.changes.iter().find(|c| c.action.operation() == operation);
        &found
            .unwrap_or_else(|| panic!("no {operation} in {:?}", p.changes))
            .action
    }

    fn plan_of(views: &[AccountView], deleted: &[&str]) -> Plan {
        let deleted = deleted.iter().map(|d| d.to_string()).collect();
        plan(
            &policies(),
            views,
            &names(),
            &deleted,
            start() + TimeDelta::days(1),
        )
    }

    #[test]
    fn a_copy_is_shared_made_then_unshared_once_complete() {
        // Not copied yet: shared by prod, copied by dr.
        let p = plan_of(
            &[
                view(PROD, "us-east-1", vec![original(false)]),
                view(DR, "eu-west-1", vec![]),
            ],
            &[],
        );
        assert_eq!(
            operations(&p),
            [
                (PROD.to_string(), "share_image".to_string()),
                (DR.to_string(), "copy_image".to_string())
            ]
        );
        let Action::Copy {
            source_account,
            kms_key,
            tags: written,
            ..
        } = change(&p, "copy_image")
        else {
            unreachable!()
        };
        assert_eq!(source_account.as_deref(), Some(PROD));
        assert_eq!(kms_key.as_deref(), Some("alias/dr"));
        assert_eq!(
            written.get(tags::COPY_OF),
            Some(format!("{PROD}/us-east-1/ami-1").as_str())
        );
        let Action::Share {
            snapshot_ids,
            account,
            add: true,
            ..
        } = change(&p, "share_image")
        else {
            panic!("not a share");
        };
        assert_eq!(
            (snapshot_ids.as_slice(), account.as_str()),
            (&["snap-1".to_string()][..], DR)
        );
        // Being copied: nothing to do, the share stays.
        let p = plan_of(
            &[
                view(PROD, "us-east-1", vec![original(true)]),
                view(DR, "eu-west-1", vec![copy(ImageState::Pending)]),
            ],
            &[],
        );
        assert_eq!(operations(&p), []);
        // Copied: unshared.
        let p = plan_of(
            &[
                view(PROD, "us-east-1", vec![original(true)]),
                view(DR, "eu-west-1", vec![copy(ImageState::Available)]),
            ],
            &[],
        );
        assert_eq!(
            operations(&p),
            [(PROD.to_string(), "unshare_image".to_string())]
        );
        assert_eq!(p.changes[0].reason.code, ReasonCode::ShareNotNeeded);
    }

    #[test]
    fn a_share_stays_while_the_destination_is_unknown_and_goes_with_its_original() {
        // dr not observed: no copy, a warning, and the share is left.
        let p = plan_of(&[view(PROD, "us-east-1", vec![original(true)])], &[]);
        assert_eq!(operations(&p), []);
        assert!(
            p.warnings[0].contains("copies to eu-west-1 of account dr, which was not observed"),
            "{:?}",
            p.warnings
        );
        // The original deleted by its account's plan: not unshared first,
        // and not copied.
        let p = plan_of(
            &[
                view(PROD, "us-east-1", vec![original(true)]),
                view(DR, "eu-west-1", vec![]),
            ],
            &["ami-1"],
        );
        assert_eq!(operations(&p), []);
    }

    #[test]
    fn copies_from_another_account_are_out_of_scope_without_their_rule() {
        let other = policy("ami", "", "max_age = \"14 days\"\n", "");
        let dr = view(DR, "eu-west-1", vec![copy(ImageState::Available)]);
        let p = plan(&other, &[dr], &names(), &HashSet::new(), start());
        assert!(p.changes.is_empty());
        assert_eq!(p.out_of_scope.len(), 1);
        assert_eq!(p.out_of_scope[0].account.as_deref(), Some(DR));
        // Each account's own planning leaves them alone.
        let mut inv = Inventory::empty();
        inv.regions.insert(
            "eu-west-1".into(),
            RegionInventory {
                images: vec![copy(ImageState::Available)],
                ..Default::default()
            },
        );
        let own = crate::planner::plan(&policies(), &inv, start() + TimeDelta::days(30));
        assert!(own.changes.is_empty(), "{:?}", own.changes);
        assert!(own.out_of_scope.is_empty(), "{:?}", own.out_of_scope);
    }
}
