//! Executes a plan through a provider.
//!
//! One attempt that can be repeated. Regions run in parallel (they are
//! independent throttling buckets); within a region, calls are paced by
//! client-side copies of EC2's token buckets (see [`crate::rate`]), in
//! four phases: adoptions, creations, then image deregistrations, then
//! snapshot deletions (so a failed creation never leaves a source with fewer
//! backups than before, a snapshot goes only once no image uses it, and an
//! old tool's backup is deleted only once it carries the ownership tags). A failed
//! action does not stop the others, and every outcome is returned, in plan
//! order. Re-running plan and apply converges.
//!
//! Creations of one instance run one after another, spaced (see
//! [`Pacing`]): EC2 takes one snapshot of a volume about every 15 seconds
//! (`SnapshotCreationPerVolumeRateExceeded`) and at most 5 pending
//! snapshots per volume, 1 for st1 and sc1 volumes
//! (`ConcurrentSnapshotLimitExceeded`; "Amazon EBS snapshot quotas" and the
//! EC2 API error codes reference). Two policies that back up the same
//! instance (a daily and a weekly one, an AMI and a snapshot policy) would
//! otherwise fire within milliseconds of each other. A rate refusal is
//! waited out; a volume at its pending limit postpones the backup to the
//! next run (pending snapshots take minutes to hours), reported, not failed.

use crate::output::Progress;
use crate::plan::{Action, Change, Plan};
use crate::provider::{Done, Provider, ProviderError, COPY_LIMIT};
use crate::rate::{backoff, throttling, Buckets, Rates};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Calls in flight at once within one region. The token buckets set the
/// rate; this only bounds connections while a burst is spent (at 100–200
/// ms per call, 16 spend a burst of 50 in about half a second).
const CALLS_IN_FLIGHT: usize = 16;

/// How apply spaces its calls.
#[derive(Debug, Clone)]
pub struct Pacing {
    /// Between two creations on one instance (and after a refusal for the
    /// per-volume rate): EC2 takes one snapshot of a volume about every 15 s.
    pub per_volume_gap: Duration,
    /// EC2's request rates, per action, in each region.
    pub rates: Rates,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            per_volume_gap: Duration::from_secs(15),
            rates: Rates::default(),
        }
    }
}

impl Pacing {
    /// No spacing: for providers without per-volume limits (tests).
    pub fn none() -> Self {
        Pacing {
            per_volume_gap: Duration::ZERO,
            rates: Rates(Default::default()),
        }
    }
}

/// What the calls of one region share.
struct Lane<P> {
    region: String,
    provider: Arc<P>,
    progress: Arc<dyn Progress>,
    stop: Arc<AtomicBool>,
    gap: Duration,
    limit: Semaphore,
    buckets: Buckets,
    /// EC2 refused a copy into this region for its copies in flight (one
    /// flag for images, one for snapshots): the region's other copies of
    /// that kind wait for the next run without being sent.
    copies_full: [AtomicBool; 2],
}

impl<P: Provider + Send + Sync + 'static> Lane<P> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// One call of `action`, once a slot and a token of its bucket are
    /// free; not started if Ctrl-C came while it waited. A call EC2
    /// refuses for an empty bucket empties this region's copy and is sent
    /// again after a backoff, for a token like any other call.
    ///
    /// The slot is taken first, so that only the calls in flight hold
    /// tokens: a refusal then holds back every call not yet sent.
    async fn execute(&self, action: &Action) -> Result<Done, ProviderError> {
        let (name, calls) = api_calls(action);
        let mut refused = 0;
        loop {
            let result = {
                let _permit = self.limit.acquire().await;
                if let Some(waiting) = self.copies_wait(action) {
                    return Ok(waiting);
                }
                self.buckets.take(name, calls).await;
                if self.stopped() {
                    return Err(not_started());
                }
                let result = self.provider.execute(&self.region, action).await;
                self.note_copy_limit(action, &result);
                result
            };
            match result {
                Err(e) if throttling(&e.code) && refused + 1 < MAX_REFUSED => {
                    refused += 1;
                    self.buckets.refused(name);
                    pause(backoff(refused)).await;
                }
                other => return other,
            }
        }
    }
}

impl<P> Lane<P> {
    fn copies_full(&self, action: &Action) -> Option<&AtomicBool> {
        match action {
            Action::Copy { resource_type, .. } => Some(&self.copies_full[*resource_type as usize]),
            _ => None,
        }
    }

    /// A copy not sent because EC2 refused one of its kind already: it is
    /// checked once the call's slot is taken, so that the copies that
    /// waited for a slot are held back too.
    fn copies_wait(&self, action: &Action) -> Option<Done> {
        let full = self.copies_full(action)?;
        full.load(Ordering::SeqCst).then(|| {
            Done::Postponed(ProviderError {
                code: COPY_LIMIT.into(),
                message: format!(
                    "not sent: EC2 refused an earlier copy into {} for its copies in flight; the next run copies it",
                    self.region
                ),
            })
        })
    }

    fn note_copy_limit(&self, action: &Action, result: &Result<Done, ProviderError>) {
        if let (Some(full), Ok(Done::Postponed(e))) = (self.copies_full(action), result) {
            if e.code == COPY_LIMIT {
                full.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Sends of one call EC2 may refuse for an empty bucket before it is
/// reported failed (the SDK allows as many attempts for other calls).
const MAX_REFUSED: u32 = 10;

/// The EC2 action an action's calls count against, and how many it makes.
fn api_calls(action: &Action) -> (&'static str, usize) {
    match action {
        Action::CreateImage { .. } => ("CreateImage", 1),
        Action::CreateSnapshots { .. } => ("CreateSnapshots", 1),
        Action::DeregisterImage { .. } => ("DeregisterImage", 1),
        Action::DeleteSnapshot { .. } => ("DeleteSnapshot", 1),
        Action::DeleteSnapshotSet { snapshot_ids, .. } => ("DeleteSnapshot", snapshot_ids.len()),
        Action::Adopt { .. } => ("CreateTags", 1),
        Action::Copy {
            resource_type: crate::plan::ResourceType::Image,
            ..
        } => ("CopyImage", 1),
        Action::Copy { source_ids, .. } => ("CopySnapshot", source_ids.len()),
        Action::Lock { snapshot_ids, .. } => ("LockSnapshot", snapshot_ids.len()),
        Action::Protect { .. } => ("EnableImageDeregistrationProtection", 1),
        Action::Unprotect { .. } => ("DisableImageDeregistrationProtection", 1),
        Action::Share {
            resource_type: crate::plan::ResourceType::Image,
            ..
        } => ("ModifyImageAttribute", 1),
        Action::Share { snapshot_ids, .. } => ("ModifySnapshotAttribute", snapshot_ids.len()),
    }
}

/// Times a creation refused for the per-volume rate is tried again.
const RATE_RETRIES: u32 = 4;

/// The codes of EC2's per-volume snapshot limits.
const RATE_EXCEEDED: &str = "SnapshotCreationPerVolumeRateExceeded";
const PENDING_LIMIT: &str = "ConcurrentSnapshotLimitExceeded";

/// The outcome of one change.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub change: Change,
    pub result: Result<Done, ProviderError>,
    /// The AWS request id of each call made for it, in order.
    pub request_ids: Vec<String>,
    /// When its first call was started (the real clock), and how long it
    /// took until its outcome was known; `None` when never started.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub elapsed: Duration,
}

impl Outcome {
    fn not_started(change: Change) -> Outcome {
        Outcome::skipped(change, not_started())
    }

    /// Not tried, for `error`'s reason.
    pub fn skipped(change: Change, error: ProviderError) -> Outcome {
        Outcome {
            change,
            result: Err(error),
            request_ids: Vec::new(),
            started_at: None,
            elapsed: Duration::ZERO,
        }
    }
}

/// Runs the calls of one change, recording its request ids and timing.
async fn timed(
    change: Change,
    work: impl std::future::Future<Output = Result<Done, ProviderError>>,
) -> Outcome {
    let started_at = chrono::Utc::now();
    let clock = std::time::Instant::now();
    let (result, request_ids) = crate::provider::with_request_ids(work).await;
    let started_at = match &result {
        Err(e) if e.code == NOT_STARTED => None,
        _ => Some(started_at),
    };
    Outcome {
        change,
        result,
        request_ids,
        started_at,
        elapsed: clock.elapsed(),
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApplyReport {
    pub outcomes: Vec<Outcome>,
}

impl ApplyReport {
    pub fn created(&self) -> usize {
        self.count(|o| matches!(o.result, Ok(Done::Created(_))))
    }

    /// Creations left for the next run (see the module docs).
    pub fn postponed(&self) -> usize {
        self.count(|o| matches!(o.result, Ok(Done::Postponed(_))))
    }

    pub fn deleted(&self) -> usize {
        self.count(|o| matches!(o.result, Ok(Done::Deleted(_))))
    }

    pub fn adopted(&self) -> usize {
        self.count(|o| matches!(o.result, Ok(Done::Adopted(_))))
    }

    pub fn locked(&self) -> usize {
        self.count(|o| matches!(o.result, Ok(Done::Locked(_))))
    }

    pub fn protected(&self) -> usize {
        self.count(|o| matches!(o.result, Ok(Done::Protected(_))))
    }

    pub fn unprotected(&self) -> usize {
        self.count(|o| matches!(o.result, Ok(Done::Unprotected(_))))
    }

    pub fn shared(&self) -> usize {
        self.count(|o| matches!(o.result, Ok(Done::Shared(_))))
    }

    pub fn unshared(&self) -> usize {
        self.count(|o| matches!(o.result, Ok(Done::Unshared(_))))
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

/// Adoptions first: an expired backup adopted and deleted (or locked) by
/// one plan must carry the ownership tags before its deletion, which the
/// IAM policy allows only on tagged backups. An image's protection is
/// disabled before it is deregistered.
fn phase(action: &Action) -> u8 {
    match action {
        Action::Adopt { .. } | Action::Share { .. } => 0,
        Action::CreateImage { .. }
        | Action::CreateSnapshots { .. }
        | Action::Copy { .. }
        | Action::Lock { .. }
        | Action::Protect { .. }
        | Action::Unprotect { .. } => 1,
        Action::DeregisterImage { .. } => 2,
        Action::DeleteSnapshot { .. } | Action::DeleteSnapshotSet { .. } => 3,
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
    pacing: Pacing,
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
        changes.sort_by_key(|(i, c)| (phase(&c.action), *i));
        let lane = Arc::new(Lane {
            buckets: Buckets::new(&pacing.rates),
            region,
            provider: provider.clone(),
            progress: progress.clone(),
            stop: stop.clone(),
            gap: pacing.per_volume_gap,
            limit: Semaphore::new(CALLS_IN_FLIGHT),
            copies_full: Default::default(),
        });
        regions.spawn(async move {
            let region = lane.region.clone();
            lane.progress
                .start(&region, changes.len() as u64, "applying");
            let mut done = Vec::with_capacity(changes.len());
            let mut failed = 0;
            let mut not_adopted = HashSet::new();
            let mut rest = changes.as_slice();
            while let Some((_, first)) = rest.first() {
                let p = phase(&first.action);
                let n = rest
                    .iter()
                    .take_while(|(_, c)| phase(&c.action) == p)
                    .count();
                let (batch, tail) = rest.split_at(n);
                rest = tail;
                let mut outcomes = if p == 1 {
                    run_creations(&lane, batch).await
                } else {
                    run_phase(&lane, batch, &not_adopted).await
                };
                if p == 0 {
                    not_adopted = failed_adoptions(&outcomes);
                }
                if p == 2 {
                    sweep(&region, &mut outcomes, &lane.provider).await;
                    for (_, o) in &outcomes {
                        lane.progress.outcome(&crate::report::line(o));
                    }
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
            lane.progress.finish(&region, &message);
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

/// Makes sure the snapshots of the images just deregistered are gone. A
/// snapshot that could not be deleted fails its own image's
/// deregistration, with the snapshot and the error named; the others stand.
/// The next run deletes what is left (see the planner's leftovers).
async fn sweep<P>(region: &str, outcomes: &mut [(usize, Outcome)], provider: &Arc<P>)
where
    P: Provider + Send + Sync + 'static,
{
    // EC2 reported some deletions already (they are in the outcome); the
    // rest are checked here.
    let snapshots_of = |o: &Outcome| match (&o.result, &o.change.action) {
        (Ok(Done::Deleted(gone)), Action::DeregisterImage { snapshot_ids, .. }) => snapshot_ids
            .iter()
            .filter(|id| !gone.contains(id))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let snapshot_ids: Vec<String> = outcomes.iter().flat_map(|(_, o)| snapshots_of(o)).collect();
    if snapshot_ids.is_empty() {
        return;
    }
    let failed = match provider.sweep(region, &snapshot_ids).await {
        Ok(failed) => failed,
        Err(e) => snapshot_ids.into_iter().map(|id| (id, e.clone())).collect(),
    };
    for (_, o) in outcomes.iter_mut() {
        let mine = snapshots_of(o);
        let errors: Vec<&(String, ProviderError)> =
            failed.iter().filter(|(id, _)| mine.contains(id)).collect();
        let Some((_, first)) = errors.first() else {
            if let Ok(Done::Deleted(gone)) = &mut o.result {
                gone.extend(mine);
            }
            continue;
        };
        let listed: Vec<String> = errors.iter().map(|(id, e)| format!("{id}: {e}")).collect();
        o.result = Err(ProviderError {
            code: first.code.clone(),
            message: format!(
                "the image was deregistered, but {} of its snapshots could not be deleted ({}); the next run deletes them",
                errors.len(),
                listed.join("; ")
            ),
        });
    }
}

/// Runs the creations of one region: instances in parallel, the creations
/// of one instance one after another, spaced by the per-volume gap.
async fn run_creations<P>(lane: &Arc<Lane<P>>, batch: &[(usize, Change)]) -> Vec<(usize, Outcome)>
where
    P: Provider + Send + Sync + 'static,
{
    let mut by_instance: BTreeMap<String, Vec<(usize, Change)>> = BTreeMap::new();
    for (i, change) in batch {
        let instance = match &change.action {
            Action::CreateImage { instance_id, .. }
            | Action::CreateSnapshots { instance_id, .. } => instance_id.clone(),
            Action::Copy { tags, .. } => copy_lane(tags, &change.address()),
            _ => change.address(),
        };
        by_instance
            .entry(instance)
            .or_default()
            .push((*i, change.clone()));
    }
    let mut instances = JoinSet::new();
    for (_, changes) in by_instance {
        let lane = lane.clone();
        instances.spawn(async move {
            let mut out = Vec::with_capacity(changes.len());
            for (n, (i, change)) in changes.into_iter().enumerate() {
                if n > 0 && !lane.stopped() {
                    pause(lane.gap).await;
                }
                let action = change.action.clone();
                let outcome = timed(change, create_spaced(&lane, &action)).await;
                if outcome.started_at.is_some() {
                    lane.progress.advance(&lane.region);
                }
                lane.progress.outcome(&crate::report::line(&outcome));
                out.push((i, outcome));
            }
            out
        });
    }
    let mut out = Vec::with_capacity(batch.len());
    while let Some(joined) = instances.join_next().await {
        out.extend(joined.expect("an apply call panicked"));
    }
    out
}

/// A copy's lane: its own (copies need no spacing), named so that the
/// newest originals come first (lanes start in name order, and take the
/// region's call slots in that order): when EC2's copy limit stops a run,
/// what waits for the next one is the oldest.
fn copy_lane(tags: &crate::inventory::Tags, address: &str) -> String {
    let taken = crate::inventory::created_at_tag(tags).map_or(0, |t| t.timestamp());
    // After every instance id ("i-..."): "~" sorts after letters.
    format!("~{:020}/{address}", i64::MAX - taken)
}

/// One creation, with EC2's per-volume refusals handled as "later".
async fn create_spaced<P>(lane: &Lane<P>, action: &Action) -> Result<Done, ProviderError>
where
    P: Provider + Send + Sync + 'static,
{
    let mut refused = 0;
    loop {
        if lane.stopped() {
            return Err(not_started());
        }
        match lane.execute(action).await {
            Err(e) if e.code == RATE_EXCEEDED && refused < RATE_RETRIES => {
                refused += 1;
                pause(lane.gap.max(Duration::from_secs(1))).await;
            }
            Err(e) if e.code == PENDING_LIMIT || e.code == RATE_EXCEEDED => {
                return Ok(Done::Postponed(e))
            }
            other => return other,
        }
    }
}

async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

fn not_started() -> ProviderError {
    ProviderError {
        code: NOT_STARTED.into(),
        message: "not started: the run was interrupted".into(),
    }
}

/// The backups whose adoption failed: not deleted by this run, whatever
/// the plan says (they do not carry the ownership tags).
fn failed_adoptions(outcomes: &[(usize, Outcome)]) -> HashSet<String> {
    outcomes
        .iter()
        .filter(|(_, o)| o.result.is_err())
        .filter_map(|(_, o)| o.change.action.target_id().map(str::to_string))
        .collect()
}

/// The error code of a deletion skipped because its adoption failed.
pub const NOT_ADOPTED: &str = "NotAdopted";

/// Runs one phase of one region, at the pace of its buckets. Deletions of
/// the backups in `not_adopted` are not sent.
async fn run_phase<P>(
    lane: &Arc<Lane<P>>,
    batch: &[(usize, Change)],
    not_adopted: &HashSet<String>,
) -> Vec<(usize, Outcome)>
where
    P: Provider + Send + Sync + 'static,
{
    let mut calls = JoinSet::new();
    for (i, change) in batch.iter().cloned() {
        let lane = lane.clone();
        let skip = change.action.is_delete()
            && change
                .action
                .target_id()
                .is_some_and(|id| not_adopted.contains(id));
        calls.spawn(async move {
            if lane.stopped() {
                return (i, Outcome::not_started(change));
            }
            let outcome = if skip {
                Outcome::skipped(change, ProviderError {
                    code: NOT_ADOPTED.into(),
                    message: "not deleted: its adoption failed in this run, so it does not carry the ownership tags; the next run tries again".into(),
                })
            } else {
                let action = change.action.clone();
                timed(change, async { lane.execute(&action).await }).await
            };
            if outcome.started_at.is_some() {
                lane.progress.advance(&lane.region);
            }
            // A deregistration's outcome is known after the sweep.
            if !matches!(outcome.change.action, Action::DeregisterImage { .. }) {
                lane.progress.outcome(&crate::report::line(&outcome));
            }
            (i, outcome)
        });
    }
    let mut out = Vec::with_capacity(batch.len());
    while let Some(joined) = calls.join_next().await {
        out.push(joined.expect("an apply call panicked"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::copy_lane;
    use crate::inventory::Tags;

    #[test]
    fn the_lanes_of_copies_start_newest_first_after_every_instance() {
        let at = |t: &str| -> Tags { [("backupctl:created-at".to_string(), t.to_string())].into() };
        let old = copy_lane(&at("2026-12-01T06:00:00Z"), "p/eu-west-1/i-1/copy-of-a");
        let new = copy_lane(&at("2026-12-02T06:00:00Z"), "p/eu-west-1/i-1/copy-of-b");
        let untagged = copy_lane(&Tags::new(), "p/eu-west-1/i-1/copy-of-c");
        let mut lanes = vec![
            untagged.clone(),
            old.clone(),
            "i-0abc".to_string(),
            new.clone(),
        ];
        lanes.sort();
        assert_eq!(lanes, vec!["i-0abc".to_string(), new, old, untagged]);
    }
}
