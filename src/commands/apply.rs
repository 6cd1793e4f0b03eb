//! `backupctl apply [PLANFILE]`: observe, plan, show the plan, confirm,
//! apply, report; or apply a saved plan exactly, if it still holds.

use super::Env;
use crate::apply::{apply, Pacing, NOT_STARTED};
use crate::cli::{resolve_now, ApplyArgs, Cli, Format};
use crate::error::{Error, ExitCode};
use crate::fleet::Fleet;
use crate::guard;
use crate::lock::{self, ApplyLock, Leftover};
use crate::output::{Printer, Progress};
use crate::plan::{Action, Change, Plan};
use crate::planner;
use crate::policy::{load_dir, parse_duration, PolicySet};
use crate::provider::aws::AwsProvider;
use crate::provider::{Done, Observation, Provider, ProviderError, Scope};
use crate::rate::Rates;
use crate::report;
use crate::stale;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const QUESTION: &str = "Do you want to perform these actions? Only 'yes' will be accepted:";

pub async fn run(
    cli: &Cli,
    args: &ApplyArgs,
    env: &Env,
    printer: &Printer,
) -> Result<ExitCode, Error> {
    let json = match args.format {
        Format::Text => false,
        Format::Json => true,
        Format::Markdown => {
            return Err(Error::Usage(
                "apply --format takes text or json (the report); for a Markdown plan use plan --format markdown".into(),
            ))
        }
    };
    if json && args.plan_file.is_none() && !args.auto_approve {
        return Err(Error::Usage(
            "apply --format json prints the report, not the plan, so it does not ask: add --auto-approve (after reviewing the plan), or apply a saved plan file".into(),
        ));
    }
    let mut run = report::Run {
        started_at: Some(Utc::now()),
        plan_file: args.plan_file.as_ref().map(|p| p.display().to_string()),
        ..Default::default()
    };
    let out = Out { printer, json };
    let result = run_recorded(cli, args, env, &out, &mut run).await;
    if args.report.is_none() && !json {
        return result;
    }
    let (code, error) = match &result {
        Ok(code) => (*code, None),
        Err(e) => (e.exit_code(), Some(e.to_string())),
    };
    let doc = run.report(code, error, Utc::now());
    let text = serde_json::to_string_pretty(&doc).expect("the report serialises") + "\n";
    if json {
        printer.result(&text);
    }
    if let Some(path) = &args.report {
        if let Err(error) = std::fs::write(path, &text) {
            let failed = Error::Write {
                path: path.clone(),
                error,
            };
            if result.is_ok() {
                return Err(failed);
            }
            eprintln!("error: {failed}");
        }
    }
    result
}

/// Where apply's own lines go: stdout as results, or stderr when stdout
/// carries the JSON report.
struct Out<'a> {
    printer: &'a Printer,
    json: bool,
}

impl Out<'_> {
    fn result(&self, text: &str) {
        if self.json {
            self.printer.note(text.trim_end());
        } else {
            self.printer.result(text);
        }
    }
}

async fn run_recorded(
    cli: &Cli,
    args: &ApplyArgs,
    env: &Env,
    out: &Out<'_>,
    run: &mut report::Run,
) -> Result<ExitCode, Error> {
    let printer = out.printer;
    let now = resolve_now(None, env.now.as_deref()).map_err(Error::Usage)?;
    let policies = load_dir(&cli.policies)?;
    let accounts = super::accounts(cli, &policies)?;
    if args.plan_file.is_none() && !args.auto_approve && !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "apply asks for confirmation, but stdin is not a terminal; review the plan (backupctl plan) and re-run with --auto-approve, as schedulers and CI should".into(),
        ));
    }
    let pacing = Pacing {
        per_volume_gap: Duration::from_secs(cli.per_volume_gap),
        rates: Rates::parse(cli.api_rate.iter().map(String::as_str)).map_err(Error::Usage)?,
    };
    let call_timeout = Duration::from_secs(cli.call_timeout.unwrap_or(45));
    let settle = Duration::from_secs(cli.consistency_wait);
    let (lock, leftover) =
        lock::acquire(&cli.policies, cli.shard, call_timeout, settle).map_err(|e| match e {
            lock::LockError::Held { pid, path } => Error::Locked { pid, path },
            lock::LockError::Io { path, error } => Error::Write { path, error },
        })?;
    if let Some(left) = leftover.as_ref().filter(|l| !l.wait.is_zero()) {
        printer.note(&format!(
            "A previous apply (pid {}) stopped with {} backup creation(s) in flight; waiting {} s for them to land and show in EC2 before observing, so they are not made twice.",
            left.pid,
            left.in_flight,
            left.wait.as_secs_f32().ceil()
        ));
        tokio::time::sleep(left.wait).await;
    }
    let locked = Held {
        lock: Arc::new(lock),
        pacing,
        leftover,
        window: settle,
    };
    if let Some(accounts) = accounts {
        let base = AwsProvider::new(&super::aws_options(cli)?).await;
        let fleet = super::fleet(cli, base, accounts, &policies, printer).await?;
        if let Some(path) = &args.plan_file {
            return saved_in_accounts(args, path, &policies, now, out, locked, run, fleet).await;
        }
        let (planned, failed) = locked.plan_fleet(&fleet, &policies, now, printer).await;
        let to = Where::Accounts(&fleet, planned.providers);
        return fresh(planned.plan, failed, to, args, cli, out, locked, run).await;
    }
    if let Some(path) = &args.plan_file {
        return saved(cli, args, path, &policies, now, out, locked, run).await;
    }
    let (provider, observation) = locked.observe(cli, &policies, printer).await?;
    let region_failed = super::report_failures(&observation, &policies);
    let plan = planner::plan(&policies, &observation.inventory, now);
    fresh(
        plan,
        region_failed,
        Where::One(provider),
        args,
        cli,
        out,
        locked,
        run,
    )
    .await
}

/// Shows a fresh plan, holds back mass deletions, asks, and applies it.
#[allow(clippy::too_many_arguments)]
async fn fresh(
    plan: Plan,
    region_failed: bool,
    to: Where<'_>,
    args: &ApplyArgs,
    cli: &Cli,
    out: &Out<'_>,
    locked: Held,
    run: &mut report::Run,
) -> Result<ExitCode, Error> {
    let printer = out.printer;
    run.plan = Some(report::PlanId::of(&plan));
    if out.json {
        printer.note(&crate::plan::text::render(&plan, Default::default()));
    } else {
        super::print_plan(&plan, Format::Text, cli, printer);
    }
    let failure_code = super::outcome(
        region_failed,
        args.fail_on_warning,
        !plan.warnings.is_empty(),
        false,
    );
    if !plan.has_changes() {
        return Ok(failure_code);
    }
    let (plan, held) = hold_back(plan, args);
    run.held_back = held;
    let held = !run.held_back.is_empty();
    if !plan.has_changes() {
        return Ok(after_apply(ExitCode::Success, failure_code, held));
    }
    if !args.auto_approve && !confirmed()? {
        printer.note("Apply cancelled; nothing was changed.");
        run.cancelled = true;
        return Ok(ExitCode::Invalid);
    }
    let code = execute(&plan, to, locked, out, run).await;
    Ok(after_apply(code, failure_code, held))
}

/// The exit code once the plan ran: a failed or interrupted apply says so,
/// then a failure seen while observing, then deletions the guard held back,
/// then what the observation and plan said (warnings).
fn after_apply(executed: ExitCode, observed: ExitCode, held: bool) -> ExitCode {
    match (executed, observed) {
        (ExitCode::Success, ExitCode::Failure) => ExitCode::Failure,
        (ExitCode::Success, _) if held => ExitCode::DeletionsHeld,
        (ExitCode::Success, observed) => observed,
        (executed, _) => executed,
    }
}

/// What apply does not do without a flag: mass deletions (see
/// [`hold_mass_deletions`]) and compliance locks (see
/// [`hold_compliance_locks`]). The rest of the plan goes ahead.
fn hold_back(plan: Plan, args: &ApplyArgs) -> (Plan, Vec<Change>) {
    let (plan, mut held) = hold_mass_deletions(plan, args);
    let (plan, locks) = hold_compliance_locks(plan, args);
    held.extend(locks);
    (plan, held)
}

/// A compliance lock cannot be undone once its cool-off is over, so it is
/// set only with `--allow-compliance-lock`. Without it, those locks are
/// held back (exit 5) and said so; the backups themselves are still made
/// and deleted, since a tool that stopped backing up over a missing flag
/// would do more harm than an unlocked snapshot.
fn hold_compliance_locks(mut plan: Plan, args: &ApplyArgs) -> (Plan, Vec<Change>) {
    if args.allow_compliance_lock {
        return (plan, Vec::new());
    }
    let (held, rest): (Vec<Change>, Vec<Change>) = std::mem::take(&mut plan.changes)
        .into_iter()
        .partition(|c| {
            matches!(
                c.action,
                crate::plan::Action::Lock {
                    mode: crate::policy::LockMode::Compliance,
                    ..
                }
            )
        });
    plan.changes = rest;
    if !held.is_empty() {
        let policies: BTreeSet<&str> = held.iter().map(|c| c.policy.as_str()).collect();
        eprintln!(
            "warning: held back {} compliance lock(s) of policy {}: nobody can remove or shorten a compliance lock once its cool-off is over, so backupctl sets one only when told to. The rest of the plan is applied. If the lock is intended, run apply again with --allow-compliance-lock; otherwise use mode = \"governance\".",
            held.len(),
            policies.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    (plan, held)
}

/// The mass-deletion guard: when it trips, every deletion of the plan is
/// held back and said so on stderr, and the creations go ahead; a guard that
/// stopped due backups would turn a retention scare into missing backups.
fn hold_mass_deletions(mut plan: Plan, args: &ApplyArgs) -> (Plan, Vec<Change>) {
    let limits = guard::Limits {
        total: args.max_deletes,
        per_account: args.max_deletes_per_account,
    };
    let tripped = guard::violations(&plan, limits);
    if tripped.is_empty() || args.allow_mass_delete {
        return (plan, Vec::new());
    }
    let (held, rest): (Vec<Change>, Vec<Change>) = std::mem::take(&mut plan.changes)
        .into_iter()
        .partition(|c| c.action.is_delete_or_unprotect() && guard::holds(&tripped, &c.account));
    let left = rest.iter().filter(|c| c.action.is_delete()).count();
    plan.changes = rest;
    let deletions = held.iter().filter(|c| c.action.is_delete()).count();
    let unprotects = held.len() - deletions;
    let and_unprotects = match unprotects {
        0 => String::new(),
        n => format!(" (and the {n} change(s) disabling the deregistration protection of images retention wants gone)"),
    };
    let which = if left == 0 {
        format!("all {deletions} deletion(s) of this plan{and_unprotects}")
    } else {
        let accounts: BTreeSet<String> = held
            .iter()
            .filter_map(|c| plan.account_label(c.account.as_ref()))
            .collect();
        format!(
            "the {deletions} deletion(s){and_unprotects} of account(s) {} ({left} deletion(s) of other accounts go ahead)",
            accounts.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    eprintln!(
        "warning: the mass-deletion guard held back {which}; the due backups (and adoptions) are still made:\n  - {}\nNothing it held back is deleted this run. If these deletions are intended (a shorter max_age, the first run after a long pause), run apply again with --allow-mass-delete.",
        tripped.iter().map(|t| t.rule.as_str()).collect::<Vec<_>>().join("\n  - ")
    );
    (plan, held)
}

/// Applies a saved plan exactly, or nothing: what it touches is observed
/// again first, and any difference refuses the whole plan.
#[allow(clippy::too_many_arguments)]
async fn saved(
    cli: &Cli,
    args: &ApplyArgs,
    path: &Path,
    policies: &PolicySet,
    now: DateTime<Utc>,
    out: &Out<'_>,
    locked: Held,
    run: &mut report::Run,
) -> Result<ExitCode, Error> {
    let printer = out.printer;
    let plan = super::read_plan_file(path)?;
    run.plan = Some(report::PlanId::of(&plan));
    let max_age = max_plan_age(args, now)?;
    // Everything the plan's changes depend on (their sources, the sources'
    // other backups, the images that use their snapshots) is what a plan
    // observes, so observe as a plan does and let stale plan again.
    let (provider, observation) = locked.observe(cli, policies, printer).await?;
    super::report_failures(&observation, policies);
    let differences = stale::differences(&plan, policies, &observation.inventory, now, max_age);
    let to = Where::One(provider);
    apply_if_unchanged(plan, differences, path, to, args, out, locked, run).await
}

/// Applies a saved plan whose differences from a fresh one were found:
/// none, or the whole plan is refused with all of them.
#[allow(clippy::too_many_arguments)]
async fn apply_if_unchanged(
    plan: Plan,
    differences: Vec<String>,
    path: &Path,
    to: Where<'_>,
    args: &ApplyArgs,
    out: &Out<'_>,
    locked: Held,
    run: &mut report::Run,
) -> Result<ExitCode, Error> {
    if !differences.is_empty() {
        run.refused = differences.clone();
        return Err(Error::StalePlan {
            path: path.to_path_buf(),
            differences,
        });
    }
    if !plan.has_changes() {
        out.result("No changes.\n");
        return Ok(ExitCode::Success);
    }
    let (plan, held) = hold_back(plan, args);
    run.held_back = held;
    let held = !run.held_back.is_empty();
    let sum = plan.summary();
    out.printer.note(&format!(
        "Applying {}: {} to create, {} to delete.",
        path.display(),
        sum.create,
        sum.delete
    ));
    let code = execute(&plan, to, locked, out, run).await;
    Ok(after_apply(code, ExitCode::Success, held))
}

/// [`saved`], across the accounts of an accounts file: each account is
/// observed again and its part of the plan checked before its inventory
/// is freed; any difference, in any account, refuses the whole plan.
#[allow(clippy::too_many_arguments)]
async fn saved_in_accounts(
    args: &ApplyArgs,
    path: &Path,
    policies: &PolicySet,
    now: DateTime<Utc>,
    out: &Out<'_>,
    locked: Held,
    run: &mut report::Run,
    mut fleet: Fleet,
) -> Result<ExitCode, Error> {
    let printer = out.printer;
    let plan = super::read_plan_file(path)?;
    run.plan = Some(report::PlanId::of(&plan));
    // The plan covers the accounts it was made in: one that joined the
    // organization since is left for the next plan, not applied unseen.
    if !plan.accounts.is_empty() {
        fleet
            .accounts
            .accounts
            .retain(|a| plan.accounts.contains_key(&a.id));
    }
    let max_age = max_plan_age(args, now)?;
    let changes = Arc::new(plan.changes.clone());
    let check: crate::fleet::Check = Arc::new(move |account, policies, observed, fresh| {
        // Changes across accounts are planned once every account is
        // observed, and checked then (below).
        let mine = changes
            .iter()
            .filter(|c| c.account.as_deref() == Some(account.id.as_str()) && !c.is_cross_account());
        stale::changes_differ(mine, fresh, policies, observed)
    });
    let planned = fleet
        .plan(
            policies,
            plan.generated_at,
            false,
            printer.progress(true),
            locked.leftover.as_ref().map(|l| (l, locked.window)),
            Some(check),
        )
        .await;
    super::report_fleet_failures(&planned);
    let mut differences = stale::header(&plan, &fleet.digest(policies), now, max_age);
    for c in &plan.changes {
        let id = c.account.clone().unwrap_or_default();
        if !planned.providers.contains_key(&id) {
            differences.push(format!(
                "{}: account {id} could not be observed again",
                c.address()
            ));
        }
    }
    differences.extend(planned.notes);
    differences.extend(stale::cross_account_differ(&plan, &planned.plan));
    let to = Where::Accounts(&fleet, planned.providers);
    apply_if_unchanged(plan, differences, path, to, args, out, locked, run).await
}

/// `--max-plan-age` as a span of time before `now`.
fn max_plan_age(args: &ApplyArgs, now: DateTime<Utc>) -> Result<TimeDelta, Error> {
    let max_age = parse_duration(&args.max_plan_age)
        .map_err(|e| Error::Usage(format!("invalid --max-plan-age: {e}")))?;
    Ok(max_age
        .before(now)
        .map_or(TimeDelta::MAX, |cutoff| now - cutoff))
}

/// Where a plan is applied: the one account of the standard credential
/// chain, or the accounts of an accounts file through their sessions.
enum Where<'a> {
    One(Arc<AwsProvider>),
    Accounts(&'a Fleet, BTreeMap<String, Arc<AwsProvider>>),
}

async fn execute(
    plan: &Plan,
    to: Where<'_>,
    locked: Held,
    out: &Out<'_>,
    run: &mut report::Run,
) -> ExitCode {
    let printer = out.printer;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_interrupts(stop.clone()));
    let progress = printer.apply_progress(!out.json);
    let report = match to {
        Where::One(provider) => {
            let journaled = Arc::new(Journaled {
                inner: provider,
                lock: locked.lock,
                account: None,
            });
            apply(plan, journaled, progress, stop.clone(), locked.pacing).await
        }
        Where::Accounts(fleet, providers) => {
            let journaled: BTreeMap<String, Arc<Journaled>> = providers
                .into_iter()
                .map(|(id, inner)| {
                    let lock = locked.lock.clone();
                    let account = Some(id.clone());
                    (
                        id,
                        Arc::new(Journaled {
                            inner,
                            lock,
                            account,
                        }),
                    )
                })
                .collect();
            fleet
                .apply(plan, &journaled, progress, stop.clone(), locked.pacing)
                .await
        }
    };
    watcher.abort();
    for o in &report.outcomes {
        match &o.result {
            Err(e) if e.code == NOT_STARTED => eprintln!("not started: {}", o.change.address()),
            Err(e) => eprintln!("error: {}: {e}", o.change.address()),
            Ok(Done::Postponed(e)) => eprintln!(
                "postponed: {}: {e}; the backup stays due and the next run makes it",
                o.change.address()
            ),
            Ok(_) => {}
        }
    }
    // Updates are named only when some happened (lines without them read
    // as they always did).
    let updates: String = [
        (report.adopted(), "adopted"),
        (report.locked(), "locked"),
        (report.protected(), "protected"),
        (report.unprotected(), "unprotected"),
        (report.shared(), "shared"),
        (report.unshared(), "unshared"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!(", {n} {what}"))
    .collect();
    let interrupted = stop.load(Ordering::SeqCst);
    let line = if interrupted {
        format!(
            "Apply interrupted: {} created, {} deleted{updates}, {} failed, {} not started. Run apply again to finish.\n",
            report.created(),
            report.deleted(),
            report.failed(),
            report.not_started()
        )
    } else {
        let postponed = match report.postponed() {
            0 => String::new(),
            n => format!(", {n} postponed"),
        };
        format!(
            "Apply complete: {} created, {} deleted{updates}, {} failed{postponed}.\n",
            report.created(),
            report.deleted(),
            report.failed()
        )
    };
    out.result(&line);
    let code = if interrupted {
        ExitCode::Interrupted
    } else if report.failed() > 0 {
        ExitCode::Failure
    } else {
        ExitCode::Success
    };
    run.applied = Some(report);
    code
}

/// What apply holds before it observes: the lock, what its previous holder
/// made (to be seen before planning), and how to pace the calls.
struct Held {
    lock: Arc<ApplyLock>,
    pacing: Pacing,
    leftover: Option<Leftover>,
    /// How long after they were made backups may stay invisible.
    window: Duration,
}

impl Held {
    /// Plans every account, waiting in each for what a killed apply made
    /// there (see [`Held::observe`]); what could not be observed is
    /// reported, and true if anything could not.
    async fn plan_fleet(
        &self,
        fleet: &Fleet,
        policies: &PolicySet,
        now: DateTime<Utc>,
        printer: &Printer,
    ) -> (crate::fleet::Planned, bool) {
        let leftover = self.leftover.as_ref().map(|l| (l, self.window));
        let planned = fleet
            .plan(policies, now, false, printer.progress(true), leftover, None)
            .await;
        let failed = super::report_fleet_failures(&planned);
        (planned, failed)
    }

    /// Observes, and again while a backup the previous apply made (its
    /// journal, see [`crate::lock`]) does not show yet and the consistency
    /// window since is not over: EC2's Describe calls lag behind creations,
    /// and planning without that backup would make it a second time.
    async fn observe(
        &self,
        cli: &Cli,
        policies: &PolicySet,
        printer: &Printer,
    ) -> Result<(Arc<AwsProvider>, Observation), Error> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(500);
        loop {
            let (provider, observation) =
                super::observe(cli, policies, printer, true, false).await?;
            let Some(left) = &self.leftover else {
                return Ok((provider, observation));
            };
            let missing = left
                .made_in(None)
                .iter()
                .filter(|k| !lock::shows(&observation.inventory, k))
                .count();
            let remaining = self.window.saturating_sub(left.since + started.elapsed());
            if missing == 0 || remaining.is_zero() {
                return Ok((provider, observation));
            }
            let pause_now = pause.min(remaining);
            printer.note(&format!(
                "{missing} backup(s) the previous apply (pid {}) made do not show in EC2 yet; observing again in {:.1} s so they are not made twice.",
                left.pid,
                pause_now.as_secs_f32()
            ));
            tokio::time::sleep(pause_now).await;
            pause *= 2;
        }
    }
}

/// The AWS provider, journaling each creation in the lock file (see
/// [`crate::lock`]) so that a run after a crash waits for it to land.
struct Journaled {
    inner: Arc<AwsProvider>,
    lock: Arc<ApplyLock>,
    /// In a plan that spans accounts, the account (its journal keys are
    /// `account:region/Name`).
    account: Option<String>,
}

impl Provider for Journaled {
    fn observe(
        &self,
        scope: &Scope,
        progress: Arc<dyn Progress>,
    ) -> impl Future<Output = Result<Observation, ProviderError>> + Send {
        self.inner.observe(scope, progress)
    }

    fn execute(
        &self,
        region: &str,
        action: &Action,
    ) -> impl Future<Output = Result<Done, ProviderError>> + Send {
        let (inner, lock) = (self.inner.clone(), self.lock.clone());
        let (region, action) = (region.to_string(), action.clone());
        let account = self
            .account
            .as_ref()
            .map_or(String::new(), |a| format!("{a}:"));
        async move {
            // The Name tag is unique per policy, source and run.
            let key = match &action {
                Action::CreateImage { tags, .. } | Action::CreateSnapshots { tags, .. } => {
                    Some(format!(
                        "{account}{region}/{}",
                        tags.get(crate::policy::tags::NAME).map_or("", |n| n)
                    ))
                }
                _ => None,
            };
            if let Some(k) = &key {
                lock.journal("start", k);
            }
            let result = inner.execute(&region, &action).await;
            if let Some(k) = &key {
                let made = matches!(result, Ok(Done::Created(_)));
                lock.journal(if made { "made" } else { "done" }, k);
            }
            result
        }
    }

    fn sweep(
        &self,
        region: &str,
        snapshot_ids: &[String],
    ) -> impl Future<Output = Result<Vec<(String, ProviderError)>, ProviderError>> + Send {
        self.inner.sweep(region, snapshot_ids)
    }
}

/// How long calls in flight may take to finish after Ctrl-C.
const DRAIN: Duration = Duration::from_secs(60);

/// First Ctrl-C: start nothing new, let calls in flight finish (bounded).
/// Second Ctrl-C: exit at once.
async fn watch_interrupts(stop: Arc<AtomicBool>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    stop.store(true, Ordering::SeqCst);
    eprintln!(
        "\nInterrupted: starting no new actions and waiting up to {} s for the calls in flight; press Ctrl-C again to exit at once.",
        DRAIN.as_secs()
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!(
            "Interrupted again: exiting now. Calls in flight may still complete; run plan or apply again to see where things stand."
        ),
        _ = tokio::time::sleep(DRAIN) => eprintln!(
            "The calls in flight did not finish within {} s: exiting. Run plan or apply again to see where things stand.",
            DRAIN.as_secs()
        ),
    }
    std::process::exit(ExitCode::Interrupted as i32);
}

/// Asks on the terminal (checked before anything was observed).
fn confirmed() -> Result<bool, Error> {
    eprint!("\n{QUESTION} ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::Usage(format!("cannot read the answer: {e}")))?;
    Ok(answer.trim() == "yes")
}
