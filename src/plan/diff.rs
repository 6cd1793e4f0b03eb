//! Comparing two plans made against the same inventory, e.g. main's
//! policies and a pull request's: what the change adds or removes, above all
//! the deletions the pull request would cause that main would not.

use super::text::{self, TextOptions};
use super::{Change, Plan};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;

/// The diff document's version. 1.1: a deletion that deletes more ids
/// than in BASE (a deregistration whose snapshots grew) is listed in
/// `added` and counted in `deletions_added`, no longer in `changed`. 1.2:
/// `backups_stopped`, the sources BASE backs up and HEAD does not. 1.3:
/// `account` on a stopped source, in plans across accounts.
pub const FORMAT_VERSION: &str = "1.3";

/// Differences by change address.
#[derive(Debug, Serialize)]
pub struct PlanDiff {
    pub format_version: String,
    /// Both plans were made against the same observation.
    pub same_inventory: bool,
    pub added: Vec<DiffEntry>,
    pub removed: Vec<DiffEntry>,
    /// Same address, different action details.
    pub changed: Vec<DiffEntry>,
    /// Sources some policy of BASE backs up (due now or not) and no policy
    /// of HEAD backs up with the same kind of backup.
    pub backups_stopped: Vec<StoppedEntry>,
    pub summary: DiffSummary,
}

#[derive(Debug, Serialize)]
pub struct StoppedEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub region: String,
    pub source: String,
    /// `image` or `snapshot`: the kind of backup that stops.
    pub resource_type: String,
    /// The BASE policies that back it up.
    pub base_policies: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DiffEntry {
    pub address: String,
    pub actions: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Serialize, Default)]
pub struct DiffSummary {
    pub deletions_added: usize,
    pub deletions_removed: usize,
    pub creations_added: usize,
    pub creations_removed: usize,
    pub changed: usize,
    pub backups_stopped: usize,
}

fn entry(c: &Change) -> DiffEntry {
    DiffEntry {
        address: c.address(),
        actions: vec![c.action.verb().to_string()],
        reason: c.reason.message.clone(),
    }
}

pub fn diff(base: &Plan, head: &Plan) -> PlanDiff {
    let index = |p: &Plan| -> BTreeMap<String, Change> {
        p.changes.iter().map(|c| (c.address(), c.clone())).collect()
    };
    let (b, h) = (index(base), index(head));
    let mut out = PlanDiff {
        format_version: FORMAT_VERSION.into(),
        same_inventory: base.inventory_fingerprint == head.inventory_fingerprint,
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        backups_stopped: stopped(base, head),
        summary: DiffSummary::default(),
    };
    out.summary.backups_stopped = out.backups_stopped.len();
    for (address, c) in &h {
        match b.get(address) {
            None => {
                if c.action.is_create() {
                    out.summary.creations_added += 1;
                } else if c.action.is_delete() {
                    out.summary.deletions_added += 1;
                } else {
                    out.summary.changed += 1;
                }
                out.added.push(entry(c));
            }
            Some(old) if old.action != c.action => {
                // A deregistration that takes more snapshots with it than in
                // BASE deletes more: that is an added deletion, not a detail.
                let was: HashSet<&str> = old.action.deleted_ids().into_iter().collect();
                let more: Vec<&str> = c
                    .action
                    .deleted_ids()
                    .into_iter()
                    .filter(|id| !was.contains(id))
                    .collect();
                if more.is_empty() {
                    out.summary.changed += 1;
                    out.changed.push(entry(c));
                } else {
                    out.summary.deletions_added += 1;
                    out.added.push(DiffEntry {
                        reason: format!(
                            "deletes more than BASE: also {}; {}",
                            more.join(", "),
                            c.reason.message
                        ),
                        ..entry(c)
                    });
                }
            }
            Some(_) => {}
        }
    }
    for (address, c) in &b {
        if !h.contains_key(address) {
            if c.action.is_create() {
                out.summary.creations_removed += 1;
            } else if c.action.is_delete() {
                out.summary.deletions_removed += 1;
            } else {
                out.summary.changed += 1;
            }
            out.removed.push(entry(c));
        }
    }
    out
}

/// Sources covered in BASE that HEAD no longer covers, by kind of backup.
fn stopped(base: &Plan, head: &Plan) -> Vec<StoppedEntry> {
    let key = |c: &super::Covered| {
        (
            c.account.clone(),
            c.region.clone(),
            c.source.clone(),
            c.resource_type,
        )
    };
    let in_head: BTreeSet<_> = head.covered.iter().map(key).collect();
    let mut lost: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for c in base.covered.iter().filter(|c| !in_head.contains(&key(c))) {
        lost.entry(key(c)).or_default().push(c.policy.clone());
    }
    lost.into_iter()
        .map(
            |((account, region, source, rt), base_policies)| StoppedEntry {
                account,
                region,
                source,
                resource_type: rt.as_str().to_string(),
                base_policies,
            },
        )
        .collect()
}

impl PlanDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.backups_stopped.is_empty()
    }

    /// HEAD deletes something BASE would not, or stops backing up a source.
    pub fn loses_backups(&self) -> bool {
        self.summary.deletions_added > 0 || !self.backups_stopped.is_empty()
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("diff serialises");
        s.push('\n');
        s
    }
}

/// The diff for people: deletions first, then creations, then a unified
/// diff of the two text plans.
pub fn render(d: &PlanDiff, base: &Plan, head: &Plan) -> String {
    let mut s = String::new();
    if !d.same_inventory {
        let _ = writeln!(
            s,
            "Note: the plans were made against different observations; some differences may come from AWS, not from the policies.\n"
        );
    }
    let sections: [(&str, &Vec<DiffEntry>, &str); 5] = [
        (
            "Deletions HEAD adds (BASE would not delete these):",
            &d.added,
            "delete",
        ),
        ("Deletions HEAD no longer makes:", &d.removed, "delete"),
        ("Creations HEAD adds:", &d.added, "create"),
        ("Creations HEAD no longer makes:", &d.removed, "create"),
        ("Changed (same backup, different action):", &d.changed, ""),
    ];
    if !d.backups_stopped.is_empty() {
        let _ = writeln!(s, "Sources HEAD no longer backs up:");
        for e in &d.backups_stopped {
            let _ = writeln!(
                s,
                "  - {}{}/{} ({} backups; BASE: {})",
                e.account
                    .as_ref()
                    .map_or(String::new(), |a| format!("{a}/")),
                e.region,
                e.source,
                e.resource_type,
                e.base_policies.join(", ")
            );
        }
        let _ = writeln!(s);
    }
    for (title, entries, kind) in sections {
        let list: Vec<&DiffEntry> = entries
            .iter()
            .filter(|e| kind.is_empty() || e.actions[0] == kind)
            .collect();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(s, "{title}");
        for e in list {
            let sign = if e.actions[0] == "create" { "+" } else { "-" };
            let _ = writeln!(s, "  {sign} {}\n      {}", e.address, e.reason);
        }
        let _ = writeln!(s);
    }
    if !d.is_empty() {
        let plain = TextOptions::default();
        let (a, b) = (text::render(base, plain), text::render(head, plain));
        let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n") + "\n";
        let (a, b) = (body(&a), body(&b));
        let unified = similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(2)
            .header("BASE", "HEAD")
            .to_string();
        let _ = writeln!(s, "{unified}");
    }
    let sum = &d.summary;
    let _ = writeln!(
        s,
        "Diff: {} deletions added, {} removed; {} creations added, {} removed; {} changed; {} sources no longer backed up.",
        sum.deletions_added,
        sum.deletions_removed,
        sum.creations_added,
        sum.creations_removed,
        sum.changed,
        sum.backups_stopped
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Precondition, Reason, ReasonCode};
    use chrono::Utc;

    /// A source that stops being backed up in one account is found even
    /// when another account has a source of the same id that goes on.
    #[test]
    fn a_source_stopped_in_one_account_is_told_apart_from_another_accounts() {
        let covered = |account: &str| super::super::Covered {
            account: Some(account.into()),
            policy: "web".into(),
            region: "us-east-1".into(),
            source: "i-1".into(),
            resource_type: super::super::ResourceType::Image,
        };
        let base = Plan {
            covered: vec![covered("111111111111"), covered("222222222222")],
            ..Plan::empty(Utc::now())
        };
        let head = Plan {
            covered: vec![covered("111111111111")],
            ..Plan::empty(Utc::now())
        };
        let d = diff(&base, &head);
        assert_eq!(d.backups_stopped.len(), 1, "{d:?}");
        assert_eq!(
            d.backups_stopped[0].account.as_deref(),
            Some("222222222222")
        );
        assert!(d.loses_backups());
    }

    fn plan_deleting(snapshot_ids: &[&str]) -> Plan {
        Plan {
            inventory_fingerprint: "sha256:same".into(),
            changes: vec![Change {
                account: None,
                policy: "web".into(),
                region: "us-east-1".into(),
                source: "i-1".into(),
                action: Action::DeregisterImage {
                    image_id: "ami-1".into(),
                    snapshot_ids: snapshot_ids.iter().map(|s| s.to_string()).collect(),
                    kept_snapshot_ids: vec![],
                },
                reason: Reason {
                    code: ReasonCode::Expired,
                    message: "expired".into(),
                },
                backups_left: None,
                recycle_bin: None,
                precondition: Precondition::Delete {
                    state: "available".into(),
                    tags: Default::default(),
                },
            }],
            ..Plan::empty(Utc::now())
        }
    }

    /// Issue 9: grown `snapshot_ids` counted as "changed", not as deletions.
    #[test]
    fn a_deregistration_that_takes_more_snapshots_is_an_added_deletion() {
        let d = diff(
            &plan_deleting(&["snap-1"]),
            &plan_deleting(&["snap-1", "snap-2"]),
        );
        assert_eq!(d.summary.deletions_added, 1);
        assert_eq!(d.summary.changed, 0);
        assert!(d.added[0].reason.contains("also snap-2"), "{:?}", d.added);
        // Fewer snapshots is a change, not a deletion added.
        let d = diff(
            &plan_deleting(&["snap-1", "snap-2"]),
            &plan_deleting(&["snap-1"]),
        );
        assert_eq!((d.summary.deletions_added, d.summary.changed), (0, 1));
    }
}
