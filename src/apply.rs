//! Executes a plan through a provider.
//!
//! One attempt that can be repeated. Regions run in parallel (they are
//! independent throttling buckets); within a region, a few calls at a time,
//! in three phases: creations, then image deregistrations, then snapshot
//! deletions (so a failed creation never leaves a source with fewer backups
//! than before, and a snapshot goes only once no image uses it). A failed
//! action does not stop the others, and every outcome is returned, in plan
//! order. Re-running plan and apply converges.

use crate::output::Progress;
use crate::plan::{Action, Change, Plan};
use crate::provider::{Done, Provider, ProviderError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Calls in flight at once within one region: well inside EC2's mutating
/// buckets (CreateImage refills at 5/s), so the SDK's retries rarely fire.
const CALLS_PER_REGION: usize = 4;

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

    /// Actions that were tried and failed.
    pub fn failed(&self) -> usize {
        self.count(|o| o.result.as_ref().is_err_and(|e| e.code != NOT_STARTED))
    }

    /// Actions never started because the run was interrupted.
    pub fn not_started(&self) -> usize {
        self.count(|o| o.result.as_ref().is_err_and(|e| e.code == NOT_STARTED))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }
}

fn phase(action: &Action) -> u8 {
    match action {
        Action::CreateImage { .. } | Action::CreateSnapshots { .. } => 0,
        Action::DeregisterImage { .. } => 1,
        Action::DeleteSnapshot { .. } | Action::DeleteSnapshotSet { .. } => 2,
    }
}

/// The error code of a change that was never started because the run was
/// interrupted.
pub const NOT_STARTED: &str = "NotStarted";

/// Runs every change of `plan` and reports each outcome. Once `stop` is set
/// (Ctrl-C), no new call starts; calls in flight finish.
pub async fn apply<P>(
    plan: &Plan,
    provider: Arc<P>,
    progress: Arc<dyn Progress>,
    stop: Arc<AtomicBool>,
) -> ApplyReport
where
    P: Provider + Send + Sync + 'static,
{
    let mut by_region: BTreeMap<String, Vec<(usize, Change)>> = BTreeMap::new();
    for (i, change) in plan.changes.iter().enumerate() {
        by_region
            .entry(change.region.clone())
            .or_default()
            .push((i, change.clone()));
    }
    let mut regions = JoinSet::new();
    for (region, mut changes) in by_region {
        let (provider, progress, stop) = (provider.clone(), progress.clone(), stop.clone());
        changes.sort_by_key(|(i, c)| (phase(&c.action), *i));
        regions.spawn(async move {
            progress.start(&region, changes.len() as u64, "applying");
            let mut done = Vec::with_capacity(changes.len());
            let mut failed = 0;
            let mut rest = changes.as_slice();
            while let Some((_, first)) = rest.first() {
                let p = phase(&first.action);
                let n = rest
                    .iter()
                    .take_while(|(_, c)| phase(&c.action) == p)
                    .count();
                let (batch, tail) = rest.split_at(n);
                rest = tail;
                let mut outcomes = run_phase(&region, batch, &provider, &progress, &stop).await;
                if p == 1 {
                    sweep(&region, &mut outcomes, &provider).await;
                }
                for outcome in outcomes {
                    failed += usize::from(outcome.1.result.is_err());
                    done.push(outcome);
                }
            }
            let message = if failed == 0 {
                "done".to_string()
            } else {
                format!("{failed} failed")
            };
            progress.finish(&region, &message);
            done
        });
    }
    let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
    while let Some(joined) = regions.join_next().await {
        outcomes.extend(joined.expect("an apply task panicked"));
    }
    outcomes.sort_by_key(|(i, _)| *i);
    ApplyReport {
        outcomes: outcomes.into_iter().map(|(_, o)| o).collect(),
    }
}

/// Makes sure the snapshots of the images just deregistered are gone. If
/// that fails, those deregistrations count as failed: the planner leaves an
/// AMI policy's stray snapshots alone, so this report is where an operator
/// learns about them.
async fn sweep<P>(region: &str, outcomes: &mut [(usize, Outcome)], provider: &Arc<P>)
where
    P: Provider + Send + Sync + 'static,
{
    let snapshot_ids: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| o.result.is_ok())
        .filter_map(|(_, o)| match &o.change.action {
            Action::DeregisterImage { snapshot_ids, .. } => Some(snapshot_ids.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    if snapshot_ids.is_empty() {
        return;
    }
    if let Err(e) = provider.sweep(region, &snapshot_ids).await {
        for (_, o) in outcomes.iter_mut().filter(|(_, o)| o.result.is_ok()) {
            o.result = Err(ProviderError {
                code: e.code.clone(),
                message: format!(
                    "the image was deregistered, but deleting its snapshots failed: {}",
                    e.message
                ),
            });
        }
    }
}

/// Runs one phase of one region, a few calls at a time.
async fn run_phase<P>(
    region: &str,
    batch: &[(usize, Change)],
    provider: &Arc<P>,
    progress: &Arc<dyn Progress>,
    stop: &Arc<AtomicBool>,
) -> Vec<(usize, Outcome)>
where
    P: Provider + Send + Sync + 'static,
{
    let limit = Arc::new(Semaphore::new(CALLS_PER_REGION));
    let mut calls = JoinSet::new();
    for (i, change) in batch.iter().cloned() {
        let (provider, progress, limit) = (provider.clone(), progress.clone(), limit.clone());
        let stop = stop.clone();
        let region = region.to_string();
        calls.spawn(async move {
            let _permit = limit.acquire_owned().await;
            if stop.load(Ordering::SeqCst) {
                let result = Err(ProviderError {
                    code: NOT_STARTED.into(),
                    message: "not started: the run was interrupted".into(),
                });
                return (i, Outcome { change, result });
            }
            let result = provider.execute(&region, &change.action).await;
            progress.advance(&region);
            (i, Outcome { change, result })
        });
    }
    let mut out = Vec::with_capacity(batch.len());
    while let Some(joined) = calls.join_next().await {
        out.push(joined.expect("an apply call panicked"));
    }
    out
}
