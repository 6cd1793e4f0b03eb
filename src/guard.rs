//! The mass-deletion guard: deletions far beyond what a run normally
//! deletes are held back until a person allows them; creations never are.
//!
//! Retention is correct by construction, but its inputs are not: a policy
//! edited from `max_age = "1 year"` to `"1 day"`, a wrong clock, or the first
//! run after a long pause can make a correct plan delete most of a source's
//! history at once. In the steady state of any fleet, whatever its size, a
//! run deletes about one backup per source (the one the new backup
//! replaces), never more than half of a source's backups, so that is the
//! rule, per source; an absolute total only applies when asked for
//! (`--max-deletes`). A guard that refused the whole apply stopped due
//! backups with it, so it holds back only the deletions (see the apply
//! command).

use crate::plan::Plan;
use std::collections::BTreeSet;

/// What trips the guard in `plan`, one line each naming the rule; empty when
/// the deletions may proceed.
pub fn violations(plan: &Plan, max_deletes: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    let deletes = plan.summary().delete;
    if let Some(max) = max_deletes.filter(|max| deletes > *max) {
        out.push(format!(
            "the plan deletes {deletes} backups, more than --max-deletes {max} allows"
        ));
    }
    let mut seen = BTreeSet::new();
    for c in &plan.changes {
        let Some(left) = c.backups_left else { continue };
        let gone = left.before - left.after;
        let key = (&c.account, &c.policy, &c.region, &c.source);
        if gone * 2 > left.before && seen.insert((key, left.before, left.after)) {
            let account = plan
                .account_label(c.account.as_ref())
                .map_or(String::new(), |a| format!(" of account {a}"));
            out.push(format!(
                "policy {} in {}{account}: source {} would lose {gone} of its {} backups in one run (the rule: never more than half of a source's backups at once)",
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
            account: None,
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
            changes,
            ..Plan::empty(Utc::now())
        }
    }

    #[test]
    fn half_of_a_source_is_allowed_more_is_not() {
        assert!(violations(&plan(vec![deletion("i-1", "s-1", 2, 1)]), None).is_empty());
        let v = violations(
            &plan(vec![
                deletion("i-1", "s-1", 3, 1),
                deletion("i-1", "s-2", 3, 1),
            ]),
            None,
        );
        assert_eq!(
            v,
            ["policy p in us-east-1: source i-1 would lose 2 of its 3 backups in one run (the rule: never more than half of a source's backups at once)"]
        );
    }

    #[test]
    fn too_many_deletions_in_total() {
        let changes = (0..4)
            .map(|i| deletion(&format!("i-{i}"), "s", 10, 9))
            .collect();
        assert_eq!(
            violations(&plan(changes), Some(3)),
            ["the plan deletes 4 backups, more than --max-deletes 3 allows"]
        );
    }
}
