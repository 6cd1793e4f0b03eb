//! Executes a plan through a provider.
//!
//! One attempt that can be repeated: creations run before deletions (so a
//! failed creation never leaves a source with fewer backups than before), a
//! failed action does not stop the others, and every outcome is returned.
//! Re-running plan and apply converges.

use crate::plan::{Action, Change, Plan};
use crate::provider::{Done, Provider, ProviderError};

/// The outcome of one change.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub change: Change,
    pub result: Result<Done, ProviderError>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApplyReport {
    pub outcomes: Vec<Outcome>,
}

impl ApplyReport {
    pub fn created(&self) -> usize {
        self.count(|o| o.result.is_ok() && o.change.action.is_create())
    }

    pub fn deleted(&self) -> usize {
        self.count(|o| o.result.is_ok() && !o.change.action.is_create())
    }

    pub fn failed(&self) -> usize {
        self.count(|o| o.result.is_err())
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }
}

/// Runs every change of `plan`: creations, then image deregistrations, then
/// snapshot deletions (a snapshot can only go once no image uses it).
pub async fn apply<P: Provider>(plan: &Plan, provider: &P) -> ApplyReport {
    let phase = |c: &&Change| match c.action {
        Action::CreateImage { .. } | Action::CreateSnapshots { .. } => 0,
        Action::DeregisterImage { .. } => 1,
        Action::DeleteSnapshot { .. } => 2,
    };
    let mut ordered: Vec<&Change> = plan.changes.iter().collect();
    ordered.sort_by_key(phase);
    let mut report = ApplyReport::default();
    for change in ordered {
        let result = provider.execute(&change.region, &change.action).await;
        report.outcomes.push(Outcome {
            change: change.clone(),
            result,
        });
    }
    report
}
