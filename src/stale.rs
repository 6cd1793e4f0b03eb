//! Is a saved plan still the plan? `apply PLANFILE` observes again, plans
//! again at the saved plan's own time on what it just observed, and applies
//! the saved plan only if every one of its changes is in that fresh plan,
//! with the same action, the same ids (snapshot ids included) and the same
//! preconditions. Anything else refuses the whole plan, with every
//! difference listed.
//!
//! Checking only the deletion targets themselves was not enough: a deletion
//! is justified by other backups too (the newer good one that lets it go,
//! the images that use its snapshots), and a hand-edited plan with its
//! checksum recomputed could list any id. Re-planning judges all of that
//! with the planner's own rules, so a saved plan never deletes more than a
//! fresh plan would, and only what a loaded policy owns. Pure: the
//! re-observation comes in as an inventory.

use crate::inventory::{Backup, Inventory, RegionInventory};
use crate::plan::{Action, Change, Plan, Precondition};
use crate::planner;
use crate::policy::{human_age, tags, PolicySet};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;

/// Every reason the saved plan may no longer be applied, worded for the
/// operator; empty when it still holds. `observed` is what was observed just
/// now, `now` the clock of the apply.
pub fn differences(
    saved: &Plan,
    policies: &PolicySet,
    observed: &Inventory,
    now: DateTime<Utc>,
    max_age: TimeDelta,
) -> Vec<String> {
    let mut out = header(saved, &policies.digest, now, max_age);
    let fresh = planner::plan(policies, observed, saved.generated_at);
    out.extend(changes_differ(&saved.changes, &fresh, policies, observed));
    out
}

/// What makes the whole saved plan stale, whatever its changes: other
/// policies (`digest` is theirs now: [`PolicySet::digest`], or
/// [`crate::accounts::AccountSet::digest_with`] with an accounts file), or
/// its age.
pub fn header(saved: &Plan, digest: &str, now: DateTime<Utc>, max_age: TimeDelta) -> Vec<String> {
    let mut out = Vec::new();
    if saved.policies_digest != digest {
        out.push(
            "the policy files changed since the plan was made (an accounts file is one of them)"
                .to_string(),
        );
    }
    let made = saved.generated_at;
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
    out
}

/// Why each of `saved`'s changes is not what `fresh` (planned at the
/// saved plan's time on `observed`) would make; empty when all hold.
pub fn changes_differ<'a>(
    saved: impl IntoIterator<Item = &'a Change>,
    fresh: &Plan,
    policies: &PolicySet,
    observed: &Inventory,
) -> Vec<String> {
    differ(saved, fresh, |c| missing(c, fresh, policies, observed))
}

/// Why each of `saved`'s changes across accounts (see
/// [`crate::planner::cross_account`]) is not one `fresh` makes too: they
/// are planned once every account is observed, when no account's
/// inventory is left to say more about one that is missing.
pub fn cross_account_differ(saved: &Plan, fresh: &Plan) -> Vec<String> {
    differ(
        saved.changes.iter().filter(|c| c.is_cross_account()),
        fresh,
        |_| {
            "a fresh plan does not make this change across accounts (done since, or no longer wanted)"
                .to_string()
        },
    )
}

/// Each of `saved`'s changes that `fresh` makes differently (see
/// [`changed`]) or not at all (`missing` says why), by address.
fn differ<'a>(
    saved: impl IntoIterator<Item = &'a Change>,
    fresh: &Plan,
    missing: impl Fn(&Change) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    let by_address: HashMap<String, &Change> =
        fresh.changes.iter().map(|c| (c.address(), c)).collect();
    for c in saved {
        let address = c.address();
        let why = match by_address.get(&address) {
            Some(now) => changed(c, now),
            None => Some(missing(c)),
        };
        if let Some(why) = why {
            out.push(format!("{address}: {why}"));
        }
    }
    out
}

/// How the fresh plan's version of a change differs from the saved one.
fn changed(saved: &Change, fresh: &Change) -> Option<String> {
    if saved.action != fresh.action {
        return Some(match (&saved.action, &fresh.action) {
            (
                Action::DeregisterImage {
                    snapshot_ids: was, ..
                },
                Action::DeregisterImage { snapshot_ids, .. },
            ) => format!(
                "a fresh plan deletes snapshots [{}] with the image, the saved plan [{}]",
                snapshot_ids.join(", "),
                was.join(", ")
            ),
            (
                Action::DeleteSnapshotSet {
                    snapshot_ids: was, ..
                },
                Action::DeleteSnapshotSet { snapshot_ids, .. },
            ) => format!(
                "the set now holds [{}], the saved plan deletes [{}]",
                snapshot_ids.join(", "),
                was.join(", ")
            ),
            _ => "a fresh plan makes a different change here".to_string(),
        });
    }
    match (&saved.precondition, &fresh.precondition) {
        (a, b) if a == b => None,
        (
            Precondition::Delete { state, tags },
            Precondition::Delete {
                state: now_state,
                tags: now_tags,
            },
        ) => {
            let id = saved.action.target_id().unwrap_or("");
            Some(if now_state != state {
                format!("{id} is now {now_state} (was {state})")
            } else if now_tags != tags {
                format!("{id} was re-tagged since the plan was made")
            } else {
                format!("{id} changed since the plan was made")
            })
        }
        _ => Some(format!(
            "the backups of {} changed since the plan was made",
            saved.source
        )),
    }
}

/// Why a fresh plan does not make the saved change at all.
fn missing(c: &Change, fresh: &Plan, policies: &PolicySet, observed: &Inventory) -> String {
    if policies.get(&c.policy).is_none_or(|p| !p.enabled) {
        return format!("policy {} is not in the (enabled) policy set", c.policy);
    }
    let Some(region) = observed.regions.get(&c.region) else {
        return format!("region {} could not be observed again", c.region);
    };
    match &c.action {
        Action::CreateImage { instance_id, .. } | Action::CreateSnapshots { instance_id, .. } => {
            let instance = region.instances.iter().find(|i| &i.id == instance_id);
            if instance.is_none_or(|i| i.state.is_gone()) {
                format!("instance {instance_id} is gone")
            } else {
                format!(
                    "a newer backup of {instance_id} appeared since the plan was made, so none is due: someone else already ran"
                )
            }
        }
        Action::Copy { source_region, .. } => {
            let what = c.action.copied().unwrap_or_default();
            let there = observed.regions.get(source_region);
            let ids: Vec<&str> = match &c.action {
                Action::Copy { source_ids, .. } => source_ids.iter().map(String::as_str).collect(),
                _ => Vec::new(),
            };
            if there.is_none_or(|r| matches!(find(r, &ids), Found::None)) {
                format!("{what} in {source_region} is gone, so it is not copied")
            } else {
                format!("a fresh plan does not copy {what} to {} (copied since, or no longer wanted there)", c.region)
            }
        }
        Action::Adopt { id, .. } => {
            if matches!(find(region, &[id.as_str()]), Found::None) {
                format!("{id} is gone")
            } else {
                format!("a fresh plan does not adopt {id} (adopted already, or claimed by another policy since)")
            }
        }
        Action::Lock {
            id, snapshot_ids, ..
        } => {
            let ids: Vec<&str> = snapshot_ids.iter().map(String::as_str).collect();
            if matches!(find(region, &ids), Found::None) {
                format!("{id} is gone")
            } else {
                format!("a fresh plan does not lock {id} (locked since, or deleted by this plan)")
            }
        }
        Action::Share { id, .. } => format!(
            "a fresh plan does not change who may copy {id} (changed since, or no longer wanted)"
        ),
        Action::Protect { image_id, .. } | Action::Unprotect { image_id } => {
            let what = match c.action {
                Action::Protect { .. } => "protect",
                _ => "unprotect",
            };
            if matches!(find(region, &[image_id.as_str()]), Found::None) {
                format!("{image_id} is gone")
            } else {
                format!("a fresh plan does not {what} {image_id} (done since, or no longer wanted)")
            }
        }
        Action::DeregisterImage { image_id: id, .. }
        | Action::DeleteSnapshot { snapshot_id: id }
        | Action::DeleteSnapshotSet { set_id: id, .. } => {
            let ids = c.action.deleted_ids();
            let owned = |b: &dyn Backup| b.tags().get(tags::POLICY) == Some(&c.policy);
            match find(region, &ids) {
                Found::None => format!("{id} is gone"),
                Found::Some(backups) if !backups.iter().all(|b| owned(*b)) => format!(
                    "{id} is not (or no longer) a backup of policy {}: it is never deleted",
                    c.policy
                ),
                Found::Some(_) => {
                    if let Some(k) = fresh.kept.iter().find(|k| k.id == *id) {
                        format!("a fresh plan keeps {id}: {}", k.reason.message)
                    } else if let Some(b) = fresh
                        .blocked
                        .iter()
                        .find(|b| b.set_id.as_deref() == Some(id.as_str()) || b.snapshot_id == *id)
                    {
                        format!("a fresh plan cannot delete {id}: {}", b.reason.message)
                    } else {
                        format!("a fresh plan does not delete {id}")
                    }
                }
            }
        }
    }
}

enum Found<'a> {
    /// Not one of the ids exists any more.
    None,
    Some(Vec<&'a dyn Backup>),
}

fn find<'a>(region: &'a RegionInventory, ids: &[&str]) -> Found<'a> {
    let mut out: Vec<&dyn Backup> = Vec::new();
    for id in ids {
        if let Some(i) = region.images.iter().find(|i| i.id == *id) {
            out.push(i);
        } else if let Some(s) = region.snapshots.iter().find(|s| s.id == *id) {
            out.push(s);
        }
    }
    if out.is_empty() {
        Found::None
    } else {
        Found::Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::testing::owned_image;
    use crate::inventory::{Image, Instance, InstanceState, Snapshot, SnapshotState};
    use crate::policy::parse_policy;
    use chrono::TimeZone;
    use std::path::Path;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap()
    }

    const WEB: &str = "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
                       [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"7 days\"\nkeep_last = 1\n";

    fn image(id: &str, days_old: i64, snapshot: &str) -> Image {
        let at = now() - TimeDelta::days(days_old);
        Image {
            snapshot_ids: vec![snapshot.into()],
            ..owned_image(id, "web", "i-0000000a", at)
        }
    }

    fn snapshot(id: &str, image: &Image) -> Snapshot {
        Snapshot {
            id: id.into(),
            volume_id: "vol-1".into(),
            state: SnapshotState::Completed,
            started_at: image.created_at,
            tags: image.tags.clone(),
            lock: None,
        }
    }

    /// One instance with a new and an expired image: the plan deletes the old.
    fn inventory() -> Inventory {
        let new = image("ami-new", 1, "snap-new");
        let old = image("ami-old", 10, "snap-old");
        let mut inv = Inventory::empty();
        inv.regions.insert(
            "us-east-1".into(),
            RegionInventory {
                instances: vec![Instance {
                    id: "i-0000000a".into(),
                    state: InstanceState::Running,
                    tags: [("Backup".to_string(), "daily".to_string())].into(),
                    volumes: vec![],
                }],
                snapshots: vec![snapshot("snap-new", &new), snapshot("snap-old", &old)],
                images: vec![new, old],
                ..Default::default()
            },
        );
        inv
    }

    fn set(name_text: &[(&str, &str)]) -> PolicySet {
        PolicySet {
            policies: name_text
                .iter()
                .map(|(_, t)| parse_policy(Path::new("p.toml"), t).expect("valid").0)
                .collect(),
            digest: "sha256:t".into(),
        }
    }

    fn check(saved: &Plan, policies: &PolicySet, observed: &Inventory) -> Vec<String> {
        differences(saved, policies, observed, now(), TimeDelta::hours(1))
    }

    #[test]
    fn an_unchanged_plan_holds() {
        let policies = set(&[("web", WEB)]);
        let saved = planner::plan(&policies, &inventory(), now());
        assert_eq!(saved.summary().delete, 1, "{saved:#?}");
        assert_eq!(check(&saved, &policies, &inventory()), Vec::<String>::new());
    }

    /// Issue 9: the newer backup that justified the deletion was removed
    /// after `plan --out`; the old re-check looked only at the target.
    #[test]
    fn a_deletion_whose_newer_backup_is_gone_is_refused() {
        let policies = set(&[("web", WEB)]);
        let saved = planner::plan(&policies, &inventory(), now());
        let mut observed = inventory();
        let region = observed.regions.get_mut("us-east-1").unwrap();
        region.images.retain(|i| i.id != "ami-new");
        region.snapshots.retain(|s| s.id != "snap-new");
        let why = check(&saved, &policies, &observed);
        assert!(
            why.iter()
                .any(|w| w.contains("ami-old") && w.contains("a fresh plan keeps ami-old")),
            "{why:?}"
        );
    }

    /// Issue 9: a hand-edited plan (checksum recomputed) that adds a
    /// snapshot backupctl does not own to a deregistration.
    #[test]
    fn an_edited_plan_that_deletes_more_is_refused() {
        let policies = set(&[("web", WEB)]);
        let mut saved = planner::plan(&policies, &inventory(), now());
        let mut observed = inventory();
        observed
            .regions
            .get_mut("us-east-1")
            .unwrap()
            .snapshots
            .push(Snapshot {
                id: "snap-foreign".into(),
                volume_id: "vol-9".into(),
                state: SnapshotState::Completed,
                started_at: now(),
                tags: Default::default(),
                lock: None,
            });
        for c in &mut saved.changes {
            if let Action::DeregisterImage { snapshot_ids, .. } = &mut c.action {
                snapshot_ids.push("snap-foreign".into());
            }
        }
        let why = check(&saved, &policies, &observed);
        assert!(why.iter().any(|w| w.contains("snap-foreign")), "{why:?}");
        // And a deletion of something no policy owns, added by hand.
        let mut forged = saved.changes[0].clone();
        forged.action = Action::DeleteSnapshot {
            snapshot_id: "snap-foreign".into(),
        };
        saved.changes = vec![forged];
        let why = check(&saved, &policies, &observed);
        assert!(
            why.iter()
                .any(|w| w.contains("snap-foreign is not (or no longer) a backup of policy web")),
            "{why:?}"
        );
    }

    #[test]
    fn a_creation_someone_else_made_is_refused() {
        let policies = set(&[("web", WEB)]);
        let mut inv = inventory();
        inv.regions.get_mut("us-east-1").unwrap().images[0].created_at = now() - TimeDelta::days(2);
        let saved = planner::plan(&policies, &inv, now());
        assert_eq!(saved.summary().create, 1);
        let made = image("ami-other-run", 0, "snap-other-run");
        inv.regions.get_mut("us-east-1").unwrap().images.push(made);
        let why = check(&saved, &policies, &inv);
        assert!(
            why.iter()
                .any(|w| w.contains("new-image")
                    && w.contains("a newer backup of i-0000000a appeared")),
            "{why:?}"
        );
    }
}
