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
use std::collections::{BTreeMap, BTreeSet};

/// Absolute limits, only when asked for: in all (`--max-deletes`) and in
/// each account (`--max-deletes-per-account`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub total: Option<usize>,
    pub per_account: Option<usize>,
}

/// One rule a plan breaks, and which deletions it holds back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tripped {
    /// `None`: every deletion of the plan; `Some(account)`: those of one
    /// account (`Some(None)` in a plan without accounts). An account's
    /// retention scare holds back that account's deletions, not every
    /// other account's routine ones.
    pub only: Option<Option<String>>,
    pub rule: String,
}

/// What trips the guard in `plan`, one entry per broken rule; empty when
/// the deletions may proceed.
pub fn violations(plan: &Plan, limits: Limits) -> Vec<Tripped> {
    let mut out = Vec::new();
    let deletes = plan.summary().delete;
    if let Some(max) = limits.total.filter(|max| deletes > *max) {
        out.push(Tripped {
            only: None,
            rule: format!(
                "the plan deletes {deletes} backups, more than --max-deletes {max} allows"
            ),
        });
    }
    let in_account = |account: &Option<String>| {
        plan.account_label(account.as_ref())
            .map_or(String::new(), |a| format!(" of account {a}"))
    };
    if let Some(max) = limits.per_account {
        let mut per: BTreeMap<&Option<String>, usize> = BTreeMap::new();
        for c in plan.changes.iter().filter(|c| c.action.is_delete()) {
            *per.entry(&c.account).or_default() += 1;
        }
        for (account, n) in per.into_iter().filter(|(_, n)| *n > max) {
            out.push(Tripped {
                only: Some(account.clone()),
                rule: format!(
                    "the plan deletes {n} backups{}, more than --max-deletes-per-account {max} allows",
                    in_account(account)
                ),
            });
        }
    }
    let mut seen = BTreeSet::new();
    for c in &plan.changes {
        let Some(left) = c.backups_left else { continue };
        let gone = left.before - left.after;
        let key = (&c.account, &c.policy, &c.region, &c.source);
        if gone * 2 > left.before && seen.insert((key, left.before, left.after)) {
            out.push(Tripped {
                only: Some(c.account.clone()),
                rule: format!(
                    "policy {} in {}{}: source {} would lose {gone} of its {} backups in one run (the rule: never more than half of a source's backups at once)",
                    c.policy, c.region, in_account(&c.account), c.source, left.before
                ),
            });
        }
    }
    out
}

/// Whether a deletion in `account` is held back by `tripped`.
pub fn holds(tripped: &[Tripped], account: &Option<String>) -> bool {
    tripped
        .iter()
        .any(|t| t.only.as_ref().is_none_or(|a| a == account))
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
            recycle_bin: None,
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
        assert!(
            violations(&plan(vec![deletion("i-1", "s-1", 2, 1)]), Limits::default()).is_empty()
        );
        let v = violations(
            &plan(vec![
                deletion("i-1", "s-1", 3, 1),
                deletion("i-1", "s-2", 3, 1),
            ]),
            Limits::default(),
        );
        assert_eq!(
            rules(&v),
            ["policy p in us-east-1: source i-1 would lose 2 of its 3 backups in one run (the rule: never more than half of a source's backups at once)"]
        );
    }

    #[test]
    fn too_many_deletions_in_total() {
        let changes = (0..4)
            .map(|i| deletion(&format!("i-{i}"), "s", 10, 9))
            .collect();
        let limits = Limits {
            total: Some(3),
            per_account: None,
        };
        assert_eq!(
            rules(&violations(&plan(changes), limits)),
            ["the plan deletes 4 backups, more than --max-deletes 3 allows"]
        );
    }

    fn rules(tripped: &[Tripped]) -> Vec<&str> {
        tripped.iter().map(|t| t.rule.as_str()).collect()
    }

    /// Per account: a scare in one account holds back that account's
    /// deletions only; a total over the limit holds back all of them.
    #[test]
    fn an_accounts_scare_holds_back_that_accounts_deletions() {
        let mut changes: Vec<Change> = (0..3)
            .map(|i| deletion(&format!("i-{i}"), &format!("s-{i}"), 10, 9))
            .collect();
        changes.push(deletion("i-9", "s-9", 4, 1));
        changes[0].account = Some("111111111111".into());
        changes[3].account = Some("111111111111".into());
        for c in &mut changes[1..3] {
            c.account = Some("222222222222".into());
        }
        let p = plan(changes);
        let tripped = violations(&p, Limits::default());
        assert_eq!(tripped.len(), 1, "{tripped:?}");
        assert!(holds(&tripped, &Some("111111111111".into())));
        assert!(!holds(&tripped, &Some("222222222222".into())));

        let limits = Limits {
            total: None,
            per_account: Some(1),
        };
        let tripped = violations(&p, limits);
        assert!(
            rules(&tripped).contains(
                &"the plan deletes 2 backups of account 222222222222, more than --max-deletes-per-account 1 allows"
            ),
            "{tripped:?}"
        );
        assert!(holds(&tripped, &Some("222222222222".into())));
        let limits = Limits {
            total: Some(3),
            per_account: None,
        };
        let tripped = violations(&p, limits);
        assert!(holds(&tripped, &Some("222222222222".into())));
    }
}
