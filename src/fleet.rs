//! Many accounts: the accounts of an accounts file planned as one plan and
//! applied as one apply.
//!
//! Each account is entered through its own role session (see
//! [`crate::provider::aws::session`]), observed and planned on its own, and
//! its inventory freed before its plan joins the others: memory holds the
//! inventories of the accounts in flight (at most `--max-accounts`) plus
//! the plan, however many accounts there are. An account that cannot be
//! entered (its role cannot be assumed), or a region it cannot use, is
//! reported once with the reason; every other account is planned and
//! applied, and the run exits 3 at the end.
//!
//! Copies to another account (`[[copy]] to_account`) need two accounts'
//! backups at once: each account keeps a view of the few backups they
//! concern (see [`planner::cross_account`]) until every account is
//! planned, and apply makes every account's shares before any copy.

use crate::accounts::{Account, AccountSet};
use crate::apply::{apply, ApplyReport, Pacing};
use crate::inventory::Inventory;
use crate::lock::Leftover;
use crate::output::{InAccount, Progress};
use crate::plan::{Action, Change, Plan};
use crate::planner;
use crate::policy::PolicySet;
use crate::provider::aws::AwsProvider;
use crate::provider::{Observation, Provider, ProviderError, Scope};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What could not be observed: a whole account, or one of its regions.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `name (id)`.
    pub account: String,
    pub region: Option<String>,
    pub error: ProviderError,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.region {
            Some(r) => write!(
                f,
                "could not observe account {} in {r}: {}; nothing was planned there",
                self.account, self.error
            ),
            None => write!(
                f,
                "could not enter account {}: {}; nothing was planned in it, the other accounts were",
                self.account, self.error
            ),
        }
    }
}

/// A look at one account's observation, made before it is freed (a
/// saved plan's check, see [`crate::stale`]); what it returns is kept.
pub type Check = Arc<dyn Fn(&Account, &PolicySet, &Inventory, &Plan) -> Vec<String> + Send + Sync>;

/// The plan of every account.
pub struct Planned {
    pub plan: Plan,
    /// The session of each account that was entered, to apply with.
    pub providers: BTreeMap<String, Arc<AwsProvider>>,
    pub failures: Vec<Failure>,
    /// What the check said, account by account.
    pub notes: Vec<String>,
}

pub struct Fleet {
    base: Arc<AwsProvider>,
    pub accounts: AccountSet,
    session_name: String,
    max_accounts: usize,
    /// Only some of the accounts (`--shard`): a policy that selects
    /// nothing here may select something in another shard.
    pub partial: bool,
}

impl Fleet {
    pub fn new(base: AwsProvider, accounts: AccountSet, max_accounts: usize) -> Fleet {
        Fleet {
            base: Arc::new(base),
            accounts,
            session_name: session_name(Utc::now()),
            max_accounts: max_accounts.max(1),
            partial: false,
        }
    }

    /// The accounts of AWS Organizations, read with the base credentials
    /// or through `[organization] reader_role`.
    pub async fn organization_accounts(
        &self,
        org: &crate::accounts::Organization,
        with_tags: bool,
    ) -> Result<Vec<crate::accounts::Discovered>, ProviderError> {
        match org.reader_account() {
            Some(reader) => {
                let provider = self.base.assume(&reader, &self.session_name).await;
                provider.organization_accounts(org, with_tags).await
            }
            None => self.base.organization_accounts(org, with_tags).await,
        }
    }

    /// What saved plans over these accounts record as their policies'
    /// digest.
    pub fn digest(&self, policies: &PolicySet) -> String {
        self.accounts.digest_with(policies)
    }

    /// Observes and plans every account some enabled policy acts in, for
    /// the clock `at`. `leftover`: backups a killed apply made, waited for
    /// (up to `window`) in their account's observation.
    #[allow(clippy::too_many_arguments)]
    pub async fn plan(
        &self,
        policies: &PolicySet,
        at: DateTime<Utc>,
        all_regions: bool,
        progress: Arc<dyn Progress>,
        leftover: Option<(&Leftover, Duration)>,
        check: Option<Check>,
    ) -> Planned {
        let limit = Arc::new(Semaphore::new(self.max_accounts));
        let mut tasks = JoinSet::new();
        let names = self.accounts.names();
        let whole = Arc::new(policies.clone());
        for account in &self.accounts.accounts {
            let destinations = copy_destinations(policies, &names, &account.id);
            let policies = AccountSet::policies_for(account, policies);
            if !AccountSet::acts(&policies) && !all_regions && destinations.is_empty() {
                continue;
            }
            let whole = whole.clone();
            let account = account.clone();
            let (base, session, limit) =
                (self.base.clone(), self.session_name.clone(), limit.clone());
            let progress: Arc<dyn Progress> = Arc::new(InAccount {
                inner: progress.clone(),
                name: account.name.clone(),
            });
            let wait_for: Vec<String> = leftover
                .map(|(l, _)| l.made_in(Some(&account.id)))
                .unwrap_or_default();
            let window = leftover.map(|(l, w)| w.saturating_sub(l.since));
            let check = check.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let provider = Arc::new(base.assume(&account, &session).await);
                let mut scope = Scope::of(&policies);
                // Observed for the copies other accounts make here.
                for region in destinations {
                    scope.regions.entry(region).or_default();
                }
                scope.all_regions = all_regions;
                scope.only_regions = account.regions.clone();
                let observed =
                    observe_settled(&provider, &scope, progress, &wait_for, window).await;
                let observation = match observed {
                    Ok(o) => o,
                    Err(error) => return Err(entering(&account, error)),
                };
                let label = label(&account);
                let failures: Vec<Failure> = observation
                    .failures
                    .iter()
                    .map(|f| Failure {
                        account: label.clone(),
                        region: Some(f.region.clone()),
                        error: f.error.clone(),
                    })
                    .collect();
                let inventory = observation.inventory;
                // Planning is CPU work: off the runtime's threads, so that
                // the other accounts' calls keep going.
                let planned = tokio::task::spawn_blocking(move || {
                    let plan = planner::plan_account(&policies, &inventory, at)
                        .in_account(&account.id, &account.name);
                    let notes = check
                        .map(|c| c(&account, &policies, &inventory, &plan))
                        .unwrap_or_default();
                    let view = planner::cross_account::AccountView {
                        id: account.id.clone(),
                        inventory: planner::cross_account::view(&whole, &inventory),
                        policies,
                    };
                    (account, plan, notes, view)
                })
                .await
                .map_err(|e| Failure {
                    account: label.clone(),
                    region: None,
                    error: ProviderError {
                        code: "Internal".into(),
                        message: format!("planning the account failed: {e}"),
                    },
                })?;
                Ok((planned, provider, failures))
            });
        }
        let mut parts = Vec::new();
        let mut views = Vec::new();
        let mut out = Planned {
            plan: Plan::empty(at),
            providers: BTreeMap::new(),
            failures: Vec::new(),
            notes: Vec::new(),
        };
        while let Some(joined) = tasks.join_next().await {
            match joined.expect("an account's task panicked") {
                Ok(((account, plan, notes, view), provider, failures)) => {
                    parts.push(plan);
                    views.push(view);
                    out.notes.extend(notes);
                    out.failures.extend(failures);
                    out.providers.insert(account.id, provider);
                }
                Err(failure) => out.failures.push(failure),
            }
        }
        out.failures
            .sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        out.notes.sort();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        let deleted: std::collections::HashSet<String> = parts
            .iter()
            .flat_map(|p| p.changes.iter().flat_map(|c| c.action.deleted_ids()))
            .map(str::to_string)
            .collect();
        parts.push(planner::cross_account::plan(
            policies, &views, &names, &deleted, at,
        ));
        drop(views);
        let mut plan = Plan::merge(at, self.digest(policies), parts);
        if !self.partial {
            warn_selects_nothing(policies, &mut plan, &out.failures);
        }
        out.plan = plan;
        out
    }

    /// Applies `plan`, account by account (at most `--max-accounts` at
    /// once, regions in parallel inside each, each account and region
    /// with its own throttling buckets), through the sessions `providers`
    /// opened while planning. Changes of an account without a session
    /// fail, and say why.
    pub async fn apply<P>(
        &self,
        plan: &Plan,
        providers: &BTreeMap<String, Arc<P>>,
        progress: Arc<dyn Progress>,
        stop: Arc<AtomicBool>,
        pacing: Pacing,
    ) -> ApplyReport
    where
        P: Provider + Send + Sync + 'static,
    {
        // Every share first: another account's copy reads the original
        // with the share's rights.
        let (shares, rest): (Vec<&Change>, Vec<&Change>) = plan
            .changes
            .iter()
            .partition(|c| matches!(c.action, Action::Share { add: true, .. }));
        let mut report = self
            .apply_changes(
                plan,
                shares,
                providers,
                progress.clone(),
                stop.clone(),
                pacing.clone(),
            )
            .await;
        // A copy whose share failed would fail too, less clearly.
        let unshared: BTreeMap<(String, &str), ProviderError> = report
            .outcomes
            .iter()
            .filter_map(|o| {
                let error = o.result.as_ref().err()?;
                let Action::Share { account, id, .. } = &o.change.action else {
                    return None;
                };
                Some(((account.clone(), id.as_str()), error.clone()))
            })
            .collect();
        let mut go = Vec::new();
        let mut skipped = Vec::new();
        for c in rest {
            let failed = c
                .action
                .copied()
                .and_then(|id| unshared.get(&(c.account.clone().unwrap_or_default(), id)));
            match (failed, &c.action) {
                (
                    Some(e),
                    Action::Copy {
                        source_account: Some(from),
                        kms_key,
                        ..
                    },
                ) => skipped.push(crate::apply::Outcome::skipped(
                    c.clone(),
                    ProviderError {
                        code: e.code.clone(),
                        message: format!(
                            "not copied: sharing {} with this account failed ({}); {}",
                            c.action.copied().unwrap_or_default(),
                            e.message,
                            crate::provider::cross_account_copy_needs(from, kms_key.as_deref())
                        ),
                    },
                )),
                _ => go.push(c),
            }
        }
        let part = self
            .apply_changes(plan, go, providers, progress, stop, pacing)
            .await;
        report.outcomes.extend(part.outcomes);
        report.outcomes.extend(skipped);
        report
    }

    /// Applies `changes` of `plan`, accounts in parallel.
    async fn apply_changes<P>(
        &self,
        plan: &Plan,
        changes: Vec<&Change>,
        providers: &BTreeMap<String, Arc<P>>,
        progress: Arc<dyn Progress>,
        stop: Arc<AtomicBool>,
        pacing: Pacing,
    ) -> ApplyReport
    where
        P: Provider + Send + Sync + 'static,
    {
        let mut by_account: BTreeMap<Option<String>, Plan> = BTreeMap::new();
        for c in changes {
            by_account
                .entry(c.account.clone())
                .or_insert_with(|| Plan::empty(plan.generated_at))
                .changes
                .push(c.clone());
        }
        let limit = Arc::new(Semaphore::new(self.max_accounts));
        let mut tasks = JoinSet::new();
        for (account, part) in by_account {
            let id = account.clone().unwrap_or_default();
            let name = plan
                .accounts
                .get(&id)
                .map_or_else(|| id.clone(), |a| a.name.clone());
            let Some(provider) = providers.get(&id).cloned() else {
                let error = ProviderError {
                    code: "AccountNotEntered".into(),
                    message: format!(
                        "account {name} could not be entered this run, so nothing was done in it"
                    ),
                };
                let outcomes = part
                    .changes
                    .into_iter()
                    .map(|c| crate::apply::Outcome::skipped(c, error.clone()))
                    .collect();
                tasks.spawn(async move { (id, ApplyReport { outcomes }) });
                continue;
            };
            let progress: Arc<dyn Progress> = Arc::new(InAccount {
                inner: progress.clone(),
                name,
            });
            let (limit, stop, pacing) = (limit.clone(), stop.clone(), pacing.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (id, apply(&part, provider, progress, stop, pacing).await)
            });
        }
        let mut reports = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let (id, report) = joined.expect("an account's apply panicked");
            reports.insert(id, report);
        }
        // The plan's changes are in account order, and so are these.
        ApplyReport {
            outcomes: reports.into_values().flat_map(|r| r.outcomes).collect(),
        }
    }
}

/// The regions of `account` that some policy copies to from other
/// accounts (`[[copy]] to_account`).
fn copy_destinations(
    policies: &PolicySet,
    names: &BTreeMap<String, String>,
    account: &str,
) -> std::collections::BTreeSet<String> {
    policies
        .enabled()
        .flat_map(|p| &p.copies)
        .filter(|r| {
            r.to_account
                .as_ref()
                .and_then(|a| names.get(a))
                .is_some_and(|id| id == account)
        })
        .map(|r| r.to_region.clone())
        .collect()
}

/// Observes, and again while a backup a killed apply made in this account
/// (see [`crate::lock`]) does not show yet and `window` is not over: EC2's
/// Describe calls lag behind creations.
async fn observe_settled(
    provider: &AwsProvider,
    scope: &Scope,
    progress: Arc<dyn Progress>,
    wait_for: &[String],
    window: Option<Duration>,
) -> Result<Observation, ProviderError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(500);
    loop {
        let observation = provider.observe(scope, progress.clone()).await?;
        let missing = wait_for
            .iter()
            .any(|k| !crate::lock::shows(&observation.inventory, k));
        let remaining = window.unwrap_or_default().saturating_sub(started.elapsed());
        if !missing || remaining.is_zero() {
            return Ok(observation);
        }
        tokio::time::sleep(pause.min(remaining)).await;
        pause *= 2;
    }
}

/// `name (id)`, or the id when the account has no other name.
pub fn label(account: &Account) -> String {
    crate::accounts::label(&account.id, &account.name)
}

/// An account that could not be entered: its role, said plainly.
fn entering(account: &Account, error: ProviderError) -> Failure {
    let roles = account.roles.join(" then ");
    Failure {
        account: label(account),
        region: None,
        error: ProviderError {
            code: error.code.clone(),
            message: format!(
                "assuming {roles} failed ({}); check that the role exists and that its trust policy lets the credentials backupctl runs with assume it (with the external id, if the file gives one): `backupctl iam-policy --principal ARN` prints both sides",
                error.message
            ),
        },
    }
}

/// The warning each account's plan leaves out (see
/// [`planner::plan_account`]): an enabled policy that backs up nothing in
/// any account. Not said while an account could not be observed: the
/// instances may be there.
fn warn_selects_nothing(policies: &PolicySet, plan: &mut Plan, failures: &[Failure]) {
    if !failures.is_empty() {
        return;
    }
    for p in policies.enabled() {
        if !plan.covered.iter().any(|c| c.policy == p.name) {
            plan.warnings.push(planner::warnings::selects_nothing(
                &p.name,
                "account and region",
            ));
        }
    }
}

/// A session name that identifies the run in each account's CloudTrail:
/// `backupctl-<UTC time>-<process id>` (at most 64 characters, as STS
/// allows).
fn session_name(now: DateTime<Utc>) -> String {
    format!(
        "backupctl-{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    )
}
