//! One thin function per command: load, observe, plan, render, apply. The
//! logic lives in the modules they call.

mod apply;
mod diff;
mod forecast;
mod import;
mod plan;
mod show;
mod state;
mod validate;

use crate::accounts::AccountSet;
use crate::cli::{Cli, Command, Format, IamFormat, StateCommand};
use crate::error::{Error, ExitCode};
use crate::fleet::{Fleet, Planned};
use crate::inventory::Inventory;
use crate::output::Printer;
use crate::plan::json::JsonPlan;
use crate::plan::text::TextOptions;
use crate::plan::{markdown, text, Plan};
use crate::policy::PolicySet;
use crate::provider::aws::{AwsOptions, AwsProvider};
use crate::provider::{Observation, Provider, Scope};
use clap::CommandFactory;
use std::sync::Arc;

/// What the commands read from the environment, read once in `run`.
pub struct Env {
    pub now: Option<String>,
    pub no_color: bool,
    /// `BACKUPCTL_TIMINGS`: print how long each phase took, on stderr (for
    /// the benchmark scripts).
    pub timings: bool,
}

/// Phase timings for `BACKUPCTL_TIMINGS`, printed as one line on stderr.
pub struct Timings {
    on: bool,
    last: std::time::Instant,
    phases: Vec<String>,
}

impl Timings {
    pub fn new(on: bool) -> Timings {
        Timings {
            on,
            last: std::time::Instant::now(),
            phases: Vec::new(),
        }
    }

    /// Ends the phase `name` (started when the previous one ended).
    pub fn lap(&mut self, name: &str) {
        let now = std::time::Instant::now();
        if self.on {
            let took = now - self.last;
            let peak = peak_rss_mib().map_or(String::new(), |m| format!(" (peak {m} MiB)"));
            self.phases
                .push(format!("{name} {:.3} s{peak}", took.as_secs_f64()));
        }
        self.last = now;
    }

    pub fn print(&self) {
        if self.on {
            eprintln!("timings: {}", self.phases.join(", "));
        }
    }
}

/// The process's peak resident memory so far, where the system tells it
/// (Linux): which phase of a large plan needs the memory.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

pub async fn dispatch(cli: Cli, env: &Env) -> Result<ExitCode, Error> {
    let printer = Printer::new(cli.no_color, env.no_color, cli.quiet);
    let result = run_command(&cli, env, &printer).await;
    match printer.write_failure() {
        Some(e) if result.is_ok() => Err(Error::Stdout(e)),
        _ => result,
    }
}

async fn run_command(cli: &Cli, env: &Env, printer: &Printer) -> Result<ExitCode, Error> {
    let (cli, printer) = (cli, printer);
    match &cli.command {
        Command::Validate => validate::run(cli, printer),
        Command::ImportConfig(args) => import::run(args, printer),
        Command::Plan(args) => plan::run(cli, args, env, printer).await,
        Command::Apply(args) => apply::run(cli, args, env, printer).await,
        Command::State(StateCommand::Pull {
            out,
            also_policies,
            all_regions,
        }) => state::pull(cli, out.as_deref(), also_policies, *all_regions, printer).await,
        Command::Show(args) => show::run(cli, args, printer),
        Command::Merge(args) => show::merge(cli, args, printer),
        Command::Forecast(args) => forecast::run(cli, args, env, printer).await,
        Command::Diff(args) => diff::run(args, printer),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "backupctl", &mut out);
            printer.result(&String::from_utf8_lossy(&out));
            Ok(ExitCode::Success)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(|e| Error::Usage(format!("cannot render the manual page: {e}")))?;
            printer.result(&String::from_utf8_lossy(&out));
            Ok(ExitCode::Success)
        }
        Command::IamPolicy(args) => {
            let policies = crate::policy::load_dir(&cli.policies)?;
            let doc = match (accounts(cli, &policies)?, args.format) {
                (None, IamFormat::Json) => crate::iam::policy_document(&policies),
                (None, IamFormat::Cloudformation) => {
                    return Err(Error::Usage(
                        "iam-policy --format cloudformation makes the member role of an accounts file, and there is none; without one, attach the JSON policy to the role or user backupctl runs as".into(),
                    ))
                }
                (Some(accounts), format) => {
                    let docs = crate::iam::accounts_documents(
                        &policies,
                        &accounts,
                        args.principal.as_deref(),
                    )
                    .map_err(Error::Usage)?;
                    match format {
                        IamFormat::Json => docs,
                        IamFormat::Cloudformation => {
                            crate::iam::member_role_template(&docs).map_err(Error::Usage)?
                        }
                    }
                }
            };
            let text = serde_json::to_string_pretty(&doc).expect("policy serialises");
            printer.result(&format!("{text}\n"));
            Ok(ExitCode::Success)
        }
    }
}

/// The accounts file, checked against the policies that select accounts;
/// `None` without one (policies that select accounts are then an error).
fn accounts(cli: &Cli, policies: &PolicySet) -> Result<Option<AccountSet>, Error> {
    match crate::accounts::find(&cli.policies, cli.accounts.as_deref())? {
        Some(set) => {
            // Discovered accounts' names are only known once discovered.
            if set.organization.is_none() {
                set.check(policies)?;
            }
            Ok(Some(set))
        }
        None => {
            crate::accounts::check_without(policies)?;
            if let Some(shard) = cli.shard {
                return Err(Error::Usage(format!(
                    "--shard {shard} splits the accounts of an accounts file, and there is none; add accounts.toml to the policy directory (or pass --accounts FILE), or drop --shard"
                )));
            }
            Ok(None)
        }
    }
}

/// The accounts this run works in: the file's and, with [organization],
/// those AWS Organizations lists now; all of them, or its `--shard`'s.
async fn fleet(
    cli: &Cli,
    base: AwsProvider,
    accounts: AccountSet,
    policies: &PolicySet,
    printer: &Printer,
) -> Result<Fleet, Error> {
    let mut fleet = Fleet::new(base, accounts, cli.max_accounts as usize);
    if let Some(org) = fleet.accounts.organization.clone() {
        let by_tag = policies
            .enabled()
            .any(|p| !p.target.account_tags.is_empty());
        let found = fleet
            .organization_accounts(&org, by_tag)
            .await
            .map_err(Error::Aws)?;
        for n in fleet.accounts.add_discovered(found) {
            printer.note(&n);
        }
        fleet.accounts.check(policies)?;
    }
    let shard = cli.shard.filter(|s| s.count > 1);
    if let Some(shard) = shard {
        fleet.accounts.accounts.retain(|a| shard.contains(&a.id));
    }
    fleet.partial = shard.is_some();
    Ok(fleet)
}

/// Commands that read or write one account's inventory refuse to run with
/// an accounts file rather than act on the base credentials' account only.
fn one_account_only(cli: &Cli, policies: &PolicySet, what: &str) -> Result<(), Error> {
    match accounts(cli, policies)? {
        Some(set) => Err(Error::Usage(format!(
            "{what} works on one account's inventory, and {} lists {} accounts; run it with a policy directory without an accounts file (or another --policies), once per account",
            set.file.display(),
            set.accounts.len()
        ))),
        None => Ok(()),
    }
}

/// Plans every account of `accounts`, reporting what could not be
/// observed; true if anything could not.
async fn plan_fleet(
    cli: &Cli,
    policies: &PolicySet,
    accounts: AccountSet,
    now: chrono::DateTime<chrono::Utc>,
    printer: &Printer,
    show_progress: bool,
    all_regions: bool,
) -> Result<(Planned, bool), Error> {
    let base = AwsProvider::new(&aws_options(cli)?).await;
    let fleet = fleet(cli, base, accounts, policies, printer).await?;
    let planned = fleet
        .plan(
            policies,
            now,
            all_regions,
            printer.progress(show_progress),
            None,
            None,
        )
        .await;
    let failed = report_fleet_failures(&planned);
    Ok((planned, failed))
}

/// Reports what could not be observed in the accounts (whole accounts, or
/// regions of them); true if anything could not.
fn report_fleet_failures(planned: &Planned) -> bool {
    for f in &planned.failures {
        eprintln!("error: {f}");
    }
    !planned.failures.is_empty()
}

fn aws_options(cli: &Cli) -> Result<AwsOptions, Error> {
    let given = [
        ("--endpoint-url", cli.endpoint_url.clone()),
        (
            "AWS_ENDPOINT_URL_EC2",
            std::env::var("AWS_ENDPOINT_URL_EC2").ok(),
        ),
        ("AWS_ENDPOINT_URL", std::env::var("AWS_ENDPOINT_URL").ok()),
    ];
    for (name, url) in given {
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            continue;
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Usage(format!(
                "{name} {url:?} has no scheme; write it in full, e.g. https://{url} (or http:// for a local emulator)"
            )));
        }
    }
    Ok(AwsOptions {
        call_timeout_secs: cli.call_timeout,
        consistency_wait_secs: cli.consistency_wait,
        region: cli.region.clone(),
        profile: cli.profile.clone(),
        endpoint_url: cli.endpoint_url.clone(),
    })
}

/// Observes what the policies need through AWS, with progress on stderr;
/// with `all_regions`, backups in every enabled region too.
async fn observe(
    cli: &Cli,
    policies: &PolicySet,
    printer: &Printer,
    show_progress: bool,
    all_regions: bool,
) -> Result<(Arc<AwsProvider>, Observation), Error> {
    let provider = Arc::new(AwsProvider::new(&aws_options(cli)?).await);
    let mut scope = Scope::of(policies);
    scope.all_regions = all_regions;
    let observation = provider
        .observe(&scope, printer.progress(show_progress))
        .await
        .map_err(Error::Aws)?;
    Ok((provider, observation))
}

/// The inventory to plan from: the saved one at `state`, or a fresh
/// observation (whose failures are reported). True if anything could not
/// be observed.
async fn inventory(
    cli: &Cli,
    policies: &PolicySet,
    state: Option<&std::path::Path>,
    printer: &Printer,
    show_progress: bool,
    all_regions: bool,
) -> Result<(Inventory, bool), Error> {
    if let Some(path) = state {
        return Ok((read_state(path)?, false));
    }
    let (_, observation) = observe(cli, policies, printer, show_progress, all_regions).await?;
    let failed = report_failures(&observation, policies);
    Ok((observation.inventory, failed))
}

fn read_state(path: &std::path::Path) -> Result<Inventory, Error> {
    let fail = |message: String| Error::State {
        path: path.to_path_buf(),
        message,
    };
    Inventory::read(|| std::fs::File::open(path)).map_err(|e| fail(e.0))
}

/// Reports what could not be observed (regions, the local instance); true
/// if anything could not.
fn report_failures(observation: &Observation, policies: &PolicySet) -> bool {
    for f in &observation.failures {
        eprintln!(
            "error: could not observe {}: {}; nothing was planned there",
            f.region, f.error
        );
    }
    if let Some(e) = &observation.local_failure {
        let local: Vec<&str> = policies
            .enabled()
            .filter(|p| p.target.uses_local())
            .map(|p| p.name.as_str())
            .collect();
        eprintln!(
            "error: could not tell which instance is the local one: {e}; policy {} (instance_ids = [\"local\"]) backs up nothing this run, the others are planned as usual",
            local.join(", ")
        );
    }
    !observation.failures.is_empty() || observation.local_failure.is_some()
}

/// The exit code of a finished plan or apply: failures first, then
/// warnings (with `--fail-on-warning`), then changes (with
/// `--detailed-exitcode`).
fn outcome(failed: bool, fail_on_warning: bool, warnings: bool, changes: bool) -> ExitCode {
    if failed {
        ExitCode::Failure
    } else if fail_on_warning && warnings {
        ExitCode::Warnings
    } else if changes {
        ExitCode::Changes
    } else {
        ExitCode::Success
    }
}

/// Prints a plan in the requested format.
fn print_plan(plan: &Plan, format: Format, cli: &Cli, printer: &Printer) {
    match format {
        Format::Json => {
            let doc = JsonPlan::from_plan(plan);
            printer.result_with(|out| doc.write_pretty(out));
        }
        Format::Markdown => printer.result(&markdown::render(plan)),
        Format::Text => printer.result(&text::render(
            plan,
            TextOptions {
                color: printer.color,
                verbose: cli.verbose > 0,
            },
        )),
    }
}

/// Saved plans are small; anything far larger is not one (and is not read
/// into memory).
const MAX_PLAN_FILE: u64 = 256 * 1024 * 1024;

/// Reads a saved plan, refusing anything that is not an intact backupctl
/// plan of a known format.
fn read_plan_file(path: &std::path::Path) -> Result<Plan, Error> {
    let fail = |message: String| Error::PlanFile {
        path: path.to_path_buf(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if size > MAX_PLAN_FILE {
        return Err(fail(format!(
            "it is {size} bytes, far larger than any plan; it is not a backupctl plan"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    JsonPlan::parse(&text)
        .and_then(JsonPlan::into_plan)
        .map_err(fail)
}
