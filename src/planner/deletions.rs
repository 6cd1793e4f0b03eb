//! Retention's deletions, turned into changes once every policy of a region
//! has been decided (a deregistered image no longer blocks its snapshots,
//! whichever policy owns it).
//!
//! An image takes with it only the snapshots that carry its own policy tag
//! and that no staying image uses; any other snapshot of its block devices
//! is kept, so apply never deletes what the policy does not own. A snapshot
//! set, or a legacy snapshot, that a staying image uses cannot be deleted
//! (EC2 refuses): it is reported as blocked instead of failing at apply, and
//! a set waits as a whole. So does a backup whose snapshot a lock holds
//! (see [`super::locks`]): blocked, with the date the lock ends; and an
//! image whose deregistration protection holds it (see
//! [`super::protection`]), whose policy's own protection is disabled first.

use super::index::RegionIndex;
use super::protection::{self, Gate};
use super::sets::Unit;
use crate::inventory::{Backup, Image};
use crate::plan::{Action, BackupsLeft, Blocked, Change, Plan, Precondition, Reason, ReasonCode};
use crate::policy::Policy;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::HashSet;

/// The deletions retention wants in one region.
#[derive(Default)]
pub struct Deletions<'a> {
    /// (policy, backup, why, retention group)
    wanted: Vec<(&'a Policy, Unit<'a>, Reason, usize)>,
    /// The number of backups in each retention group, to tell how many remain.
    group_sizes: Vec<usize>,
}

impl<'a> Deletions<'a> {
    /// Starts a retention group of `size` backups; returns its id.
    pub fn group(&mut self, size: usize) -> usize {
        self.group_sizes.push(size);
        self.group_sizes.len() - 1
    }

    pub fn want(&mut self, policy: &'a Policy, unit: Unit<'a>, reason: Reason, group: usize) {
        self.wanted.push((policy, unit, reason, group));
    }

    /// Retention wants this image gone.
    pub fn wants(&self, image_id: &str) -> bool {
        self.wanted
            .iter()
            .any(|(_, u, _, _)| matches!(u, Unit::Image(i) if i.id == image_id))
    }

    /// The changes and blocked deletions, added to `out`.
    pub fn finish(self, region: &str, index: &RegionIndex<'a>, now: DateTime<Utc>, out: &mut Plan) {
        let Deletions {
            wanted,
            group_sizes,
        } = self;
        let change = |policy: &str, unit: &Unit, action: Action, reason: Reason| Change {
            account: None,
            policy: policy.to_string(),
            region: region.to_string(),
            source: display_source(unit.source().unwrap_or("")),
            action,
            reason,
            backups_left: None,
            recycle_bin: None,
            precondition: Precondition::Delete {
                state: unit.state_name(),
                tags: unit.tags().clone(),
            },
        };
        let mut free = Vec::with_capacity(wanted.len());
        for (policy, unit, reason, gid) in wanted {
            let policy_name = policy.name.as_str();
            if let Some((snapshot_id, until)) = super::locks::held(&unit, index, now) {
                out.blocked.push(locked(
                    region,
                    policy_name,
                    &unit,
                    reason,
                    snapshot_id,
                    until,
                ));
                continue;
            }
            let gate = match &unit {
                Unit::Image(image) => protection::gate(image, policy, now),
                _ => Gate::Free,
            };
            let (unprotect, blocked) = match gate {
                Gate::Free => (false, None),
                Gate::UnprotectFirst => (true, None),
                Gate::UnprotectAndWait(until) => (
                    true,
                    Some((Some(until), protection::waits_for_cooldown(until))),
                ),
                Gate::Blocked(until, why) => (false, Some((until, why))),
            };
            if unprotect {
                let why = Reason {
                    code: reason.code,
                    message: format!(
                        "{}: its deregistration protection goes first",
                        reason.message
                    ),
                };
                let image_id = unit.id().to_string();
                out.changes.push(change(
                    policy_name,
                    &unit,
                    Action::Unprotect { image_id },
                    why,
                ));
            }
            match blocked {
                Some((until, why)) => {
                    out.blocked
                        .push(protected(region, policy_name, &unit, reason, until, &why))
                }
                None => free.push((policy_name, unit, reason, gid)),
            }
        }
        let wanted = free;
        let deregistered: HashSet<&str> = wanted
            .iter()
            .filter_map(|(_, u, _, _)| match u {
                Unit::Image(i) => Some(i.id.as_str()),
                _ => None,
            })
            .collect();
        let staying_users = |snapshot_id: &str| -> Vec<String> {
            index
                .snapshot_users
                .get(snapshot_id)
                .into_iter()
                .flatten()
                .filter(|i| !deregistered.contains(*i))
                .map(|i| i.to_string())
                .collect()
        };
        let mut deleted = vec![0usize; group_sizes.len()];
        let mut changes: Vec<(Change, usize)> = Vec::new();
        for (policy, unit, reason, gid) in wanted {
            let action = match &unit {
                Unit::Image(image) => image_deletion(image, policy, index, &staying_users),
                Unit::Set(_) | Unit::Legacy(_) => {
                    let ids = unit.snapshot_ids();
                    let used: Vec<(&String, Vec<String>)> = ids
                        .iter()
                        .map(|id| (id, staying_users(id)))
                        .filter(|(_, users)| !users.is_empty())
                        .collect();
                    if let Some((snapshot_id, users)) = used.into_iter().next() {
                        let set_id = matches!(unit, Unit::Set(_)).then(|| unit.id().to_string());
                        let what = if set_id.is_some() {
                            "its snapshot "
                        } else {
                            ""
                        };
                        out.blocked.push(Blocked {
                            account: None,
                            policy: policy.to_string(),
                            region: region.to_string(),
                            source: display_source(unit.source().unwrap_or("")),
                            snapshot_id: snapshot_id.clone(),
                            set_id,
                            reason: Reason {
                                code: ReasonCode::InUse,
                                message: format!(
                                    "{}, but {what}{snapshot_id} is in use by {}; deregister that image to let it go",
                                    reason.message,
                                    users.join(", ")
                                ),
                            },
                            image_ids: users,
                            until: None,
                        });
                        continue;
                    }
                    match unit {
                        Unit::Set(ref set) => Action::DeleteSnapshotSet {
                            set_id: set.id.to_string(),
                            snapshot_ids: ids,
                        },
                        _ => Action::DeleteSnapshot {
                            snapshot_id: unit.id().to_string(),
                        },
                    }
                }
            };
            deleted[gid] += 1;
            changes.push((change(policy, &unit, action, reason), gid));
        }
        for (mut change, gid) in changes {
            change.backups_left = Some(BackupsLeft {
                before: group_sizes[gid],
                after: group_sizes[gid] - deleted[gid],
            });
            out.changes.push(change);
        }
    }
}

/// The blocked deletion of `unit`, which retention wants gone but whose
/// snapshot `snapshot_id` a lock holds until `until`.
fn locked(
    region: &str,
    policy: &str,
    unit: &Unit,
    reason: Reason,
    snapshot_id: &str,
    until: DateTime<Utc>,
) -> Blocked {
    let (what, set_id, image_ids) = match unit {
        Unit::Image(i) => (
            format!("its snapshot {snapshot_id}"),
            None,
            vec![i.id.clone()],
        ),
        Unit::Set(s) => (
            format!("its snapshot {snapshot_id}"),
            Some(s.id.to_string()),
            Vec::new(),
        ),
        Unit::Legacy(_) => ("it".to_string(), None, Vec::new()),
    };
    let at = until.to_rfc3339_opts(SecondsFormat::Secs, true);
    Blocked {
        account: None,
        policy: policy.to_string(),
        region: region.to_string(),
        source: display_source(unit.source().unwrap_or("")),
        snapshot_id: snapshot_id.to_string(),
        set_id,
        image_ids,
        until: Some(until),
        reason: Reason {
            code: ReasonCode::Locked,
            message: format!(
                "{}, but {what} is locked until {at}; the first run after that deletes it",
                reason.message
            ),
        },
    }
}

/// The blocked deletion of image `unit`, which retention wants gone but
/// whose deregistration protection holds it (until `until`, when known).
fn protected(
    region: &str,
    policy: &str,
    unit: &Unit,
    reason: Reason,
    until: Option<DateTime<Utc>>,
    why: &str,
) -> Blocked {
    Blocked {
        account: None,
        policy: policy.to_string(),
        region: region.to_string(),
        source: display_source(unit.source().unwrap_or("")),
        snapshot_id: unit.id().to_string(),
        set_id: None,
        image_ids: vec![unit.id().to_string()],
        until,
        reason: Reason {
            code: ReasonCode::Protected,
            message: format!("{}, but {why}", reason.message),
        },
    }
}

/// DeregisterImage, taking the image's snapshots that its policy owns and
/// that no staying image uses.
fn image_deletion(
    image: &Image,
    policy: &str,
    index: &RegionIndex,
    staying_users: &dyn Fn(&str) -> Vec<String>,
) -> Action {
    let (snapshot_ids, kept_snapshot_ids): (Vec<String>, Vec<String>) =
        image.snapshot_ids.iter().cloned().partition(|sid| {
            let owned = index
                .snapshots
                .get(sid.as_str())
                .is_some_and(|s| s.policy() == Some(policy));
            owned && staying_users(sid).is_empty()
        });
    Action::DeregisterImage {
        image_id: image.id.clone(),
        snapshot_ids,
        kept_snapshot_ids,
    }
}

pub fn display_source(source: &str) -> String {
    if source.is_empty() {
        "unknown-source".to_string()
    } else {
        source.to_string()
    }
}
