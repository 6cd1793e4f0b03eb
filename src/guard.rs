//! The mass-deletion guard: a plan that deletes more than an operator would
//! expect is refused before anything happens, unless explicitly allowed.
//!
//! Retention is correct by construction, but its inputs are not: a policy
//! edited from `max_age = "1 year"` to `"1 day"`, a wrong clock, or a tag
//! mistake can make a correct plan delete most of the history at once. The
//! guard turns that into a question for a person.

use crate::plan::Plan;
use std::collections::BTreeSet;

/// Default for `--max-deletes`.
pub const DEFAULT_MAX_DELETES: usize = 25;

/// What the plan would do that the guard does not allow, one line each;
/// empty when the plan may proceed.
pub fn violations(plan: &Plan, max_deletes: usize) -> Vec<String> {
    let mut out = Vec::new();
    let deletes = plan.summary().delete;
    if deletes > max_deletes {
        out.push(format!(
            "the plan deletes {deletes} backups, more than --max-deletes {max_deletes}"
        ));
    }
    let mut seen = BTreeSet::new();
    for c in &plan.changes {
        let Some(left) = c.backups_left else { continue };
        let gone = left.before - left.after;
        if gone * 2 > left.before
            && seen.insert((&c.policy, &c.region, &c.source, left.before, left.after))
        {
            out.push(format!(
                "policy {} in {}: source {} would lose {gone} of its {} backups (more than half)",
                c.policy, c.region, c.source, left.before
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, BackupsLeft, Change, Reason, ReasonCode};
    use chrono::Utc;

    fn deletion(source: &str, id: &str, before: usize, after: usize) -> Change {
        Change {
            policy: "p".into(),
            region: "us-east-1".into(),
            source: source.into(),
            action: Action::DeleteSnapshot {
                snapshot_id: id.into(),
            },
            reason: Reason {
                code: ReasonCode::Expired,
                message: "expired".into(),
            },
            backups_left: Some(BackupsLeft { before, after }),
            precondition: crate::plan::Precondition::Delete {
                state: "completed".into(),
                tags: Default::default(),
            },
        }
    }

    fn plan(changes: Vec<Change>) -> Plan {
        Plan {
            generated_at: Utc::now(),
            policies_digest: String::new(),
            inventory_fingerprint: String::new(),
            changes,
            kept: vec![],
            blocked: vec![],
            orphans: vec![],
            out_of_scope: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn half_of_a_source_is_allowed_more_is_not() {
        assert!(violations(&plan(vec![deletion("i-1", "s-1", 2, 1)]), 25).is_empty());
        let v = violations(
            &plan(vec![
                deletion("i-1", "s-1", 3, 1),
                deletion("i-1", "s-2", 3, 1),
            ]),
            25,
        );
        assert_eq!(
            v,
            ["policy p in us-east-1: source i-1 would lose 2 of its 3 backups (more than half)"]
        );
    }

    #[test]
    fn too_many_deletions_in_total() {
        let changes = (0..4)
            .map(|i| deletion(&format!("i-{i}"), "s", 10, 9))
            .collect();
        assert_eq!(
            violations(&plan(changes), 3),
            ["the plan deletes 4 backups, more than --max-deletes 3"]
        );
    }
}
