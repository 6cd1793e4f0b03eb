//! Command-line arguments (clap structs, no IO), and the validated settings
//! built from them and the environment.

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "backupctl",
    version,
    about = "Plan-then-apply EC2 backups (AMIs and EBS snapshots) from TOML policies",
    long_about = "backupctl reads backup policies (TOML files, one policy per file), observes \
instances, volumes, AMIs and snapshots, and computes a plan: which backups to create because \
one is due and which expired backups to delete. It changes nothing until `apply`.\n\n\
It only ever deletes backups tagged with `backupctl:policy` naming a loaded policy, and never \
the newest good backups of a source.",
    after_help = "Examples:\n  backupctl validate\n  backupctl plan\n  backupctl apply --auto-approve\n  backupctl plan --state fixtures/demo/inventory.json --at 2026-11-22T06:00:00Z\n  backupctl plan --format json --out plan.json"
)]
pub struct Cli {
    /// Directory of policy files (*.toml, one policy each).
    #[arg(
        long,
        global = true,
        env = "BACKUPCTL_POLICIES",
        default_value = "policies",
        value_name = "DIR"
    )]
    pub policies: PathBuf,

    /// The accounts file (default: accounts.toml in the policy directory,
    /// if there is one). With one, every listed account (and, with
    /// [organization], every ACTIVE account AWS Organizations lists) is
    /// planned and applied through the role the file names; see the
    /// README's "Many accounts".
    #[arg(long, global = true, env = "BACKUPCTL_ACCOUNTS", value_name = "FILE")]
    pub accounts: Option<PathBuf>,

    /// Accounts worked in at once, with an accounts file (regions inside
    /// each account are always in parallel).
    #[arg(long, global = true, env = "BACKUPCTL_MAX_ACCOUNTS", value_name = "N",
          default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub max_accounts: u64,

    /// With an accounts file: work only in this shard of the accounts, as
    /// job K of N independent jobs (an account's shard follows from its id
    /// alone). Their saved plans join with `backupctl merge`.
    #[arg(long, global = true, env = "BACKUPCTL_SHARD", value_name = "K/N",
          value_parser = crate::accounts::Shard::parse)]
    pub shard: Option<crate::accounts::Shard>,

    /// Never colour the output (also: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Print only results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// More detail: the plan lists every kept backup and why it is kept.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Default AWS region (for `regions = ["*"]`, which asks it for the
    /// list of enabled regions). Policies still decide where backups happen.
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,

    /// AWS profile from the shared config files (else AWS_PROFILE or default).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// Send EC2 calls to this endpoint (an emulator, a VPC endpoint). Also
    /// AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_EC2.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Seconds one attempt of one AWS call may take before it is retried.
    #[arg(long, global = true, env = "BACKUPCTL_CALL_TIMEOUT", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub call_timeout: Option<u64>,

    /// Seconds to keep looking for a backup whose creating call had an
    /// unknown outcome (timeout, reset connection, 5xx) before sending the
    /// call again: EC2's Describe calls can lag behind a Create.
    #[arg(long, global = true, env = "BACKUPCTL_CONSISTENCY_WAIT", value_name = "SECONDS",
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub consistency_wait: u64,

    /// Seconds between two creations on one instance (EC2 takes one
    /// snapshot of a volume about every 15 s).
    #[arg(long, global = true, env = "BACKUPCTL_PER_VOLUME_GAP", value_name = "SECONDS",
          default_value_t = 15, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub per_volume_gap: u64,

    /// EC2's request rate for one action in this account, as
    /// ACTION=BURST/PER_SECOND (repeatable; comma-separated in the
    /// environment). Apply paces its calls to these token buckets; the
    /// defaults are EC2's documented ones: CreateImage=50/5,
    /// CreateSnapshots=50/5, DeregisterImage=200/5, DeleteSnapshot=200/5.
    /// Raise them when AWS has raised the account's limits.
    #[arg(
        long,
        global = true,
        env = "BACKUPCTL_API_RATES",
        value_name = "ACTION=BURST/PER_SECOND",
        value_delimiter = ','
    )]
    pub api_rate: Vec<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Policy files from a molibackup YAML file or a backupViaTag command
    /// line, each adopting that tool's backups; printed, or written with
    /// --out DIR.
    #[command(
        name = "import-config",
        after_help = "Examples:\n  backupctl import-config molibackup /etc/molibackup/molibackup.yaml\n  \
backupctl import-config --out policies molibackup /etc/molibackup/molibackup.yaml\n  \
backupctl import-config backupviatag --every \"1 day\" -- -t Backup:prodDaily -e \"+30 days\"\n\n\
Each file made is checked as validate checks policies; any error writes nothing (exit 1). \
Review the policies, then see the README's migration guide: backupctl plan shows what \
they adopt before anything changes."
    )]
    ImportConfig(ImportArgs),
    /// Check every policy file and report every error (exit 1 on any).
    #[command(after_help = "Example:\n  backupctl --policies ./policies validate")]
    Validate,
    /// Show what would be created and deleted; changes nothing.
    #[command(
        after_help = "Examples:\n  backupctl plan\n  backupctl plan --state inventory.json\n  \
backupctl plan --state inventory.json --at 2027-01-01   # one run at that time, on today's backups\n  \
backupctl plan --state inventory.json --format json --out plan.json --detailed-exitcode"
    )]
    Plan(PlanArgs),
    /// Observe, plan, show the plan, ask, then create and delete backups.
    #[command(
        after_help = "Examples:\n  backupctl apply                  # asks before changing anything\n  \
backupctl apply --auto-approve   # from cron, systemd timers, CI schedules\n  \
backupctl apply plan.json        # exactly a reviewed plan, or nothing\n  \
backupctl apply --auto-approve --report /var/log/backupctl/last.json\n\n\
Exit status: 0 when everything was applied (or nothing was to do), 1 when \
nothing was done because of invalid input or a refused confirmation, 3 when a \
region could not be observed or an action failed, 4 (with --fail-on-warning) when \
the plan warned, 5 when the mass-deletion guard held back the deletions (the due \
backups were still made)."
    )]
    Apply(ApplyArgs),
    /// Work with observed state (inventory files).
    #[command(subcommand)]
    State(StateCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  backupctl completions bash > /etc/bash_completion.d/backupctl\n  \
backupctl completions zsh > \"${fpath[1]}/_backupctl\"\n  \
backupctl completions fish > ~/.config/fish/completions/backupctl.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from these definitions.
    #[command(after_help = "Example:\n  backupctl man > /usr/local/share/man/man1/backupctl.1")]
    Man,
    /// Print the least-privilege IAM policy (JSON) the loaded policies need.
    #[command(
        after_help = "Example:\n  backupctl --policies ./policies iam-policy > backupctl-iam.json"
    )]
    IamPolicy(IamArgs),
    /// Compare two saved plans made against the same inventory (e.g. main's
    /// policies and a pull request's).
    #[command(after_help = "Example (in CI, for a pull request):\n  \
backupctl state pull -o state.json\n  \
backupctl --policies base/policies plan --state state.json --out base.json\n  \
backupctl --policies policies plan --state state.json --out head.json\n  \
backupctl diff base.json head.json --detailed-exitcode")]
    Diff(DiffArgs),
    /// Simulate every scheduled run up to a date: what each policy will
    /// delete, and when. Changes nothing.
    #[command(
        after_help = "Examples:\n  backupctl forecast --until 2027-01-01                 # what will be purged by New Year?\n  \
backupctl forecast --state inventory.json --until 2027-01-01 --format json\n\n\
Runs are simulated as often as the most frequent policy's `every`; backups still \
pending are assumed to complete, and every run is assumed to happen."
    )]
    Forecast(ForecastArgs),
    /// Render a saved plan (from `plan --out`).
    #[command(
        after_help = "Examples:\n  backupctl show plan.json\n  backupctl show plan.json --format markdown > comment.md"
    )]
    Show(ShowArgs),
    /// Join the saved plans of the shards of one accounts file (`plan
    /// --shard K/N --out FILE`) into one plan, for review, `show` and
    /// `diff`.
    #[command(
        after_help = "Example:\n  backupctl merge --out plan.json shard-1.json shard-2.json shard-3.json\n\n\
The plans must come from the same policy files and accounts file and share no \
account. Apply each shard's own plan in its own job; a joined plan of shards made \
at different times carries the earliest time and is refused as stale for accounts \
whose plan changed since."
    )]
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[arg(value_name = "BASE")]
    pub base: PathBuf,
    #[arg(value_name = "HEAD")]
    pub head: PathBuf,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 2 when the plans differ (0 when they do not).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Exit 6 when HEAD loses backups: it deletes something BASE would not,
    /// or a source BASE backs up is backed up by no policy of HEAD. The
    /// gate for pull requests; it wins over --detailed-exitcode's 2.
    #[arg(long)]
    pub fail_on_loss: bool,
}

#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// Simulate runs up to this time (RFC 3339, or a date meaning midnight
    /// UTC).
    #[arg(long, value_name = "TIME")]
    pub until: String,

    /// Start from a saved inventory (JSON) instead of observing AWS.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Start at this time instead of now (RFC 3339 or a date). Overrides
    /// BACKUPCTL_NOW.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,

    /// `text`, `json` or `markdown`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// One saved plan, or the plans of several shards of one accounts file
    /// (shown joined, as `merge` joins them).
    #[arg(value_name = "PLANFILE", required = true, num_args = 1..)]
    pub plan_files: Vec<PathBuf>,

    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Apply exactly this saved plan (from `plan --out`), without asking,
    /// after checking that nothing it touches changed since it was made.
    #[arg(value_name = "PLANFILE")]
    pub plan_file: Option<PathBuf>,

    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub auto_approve: bool,

    /// With PLANFILE: refuse a plan older than this (e.g. "30min", "2h").
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub max_plan_age: String,

    /// Also hold back the deletions of a plan that deletes more than N
    /// backups in all (default: no such limit; the guard's own rule is per
    /// source, see --allow-mass-delete).
    #[arg(long, value_name = "N")]
    pub max_deletes: Option<usize>,

    /// With an accounts file: also hold back the deletions of an account
    /// whose part of the plan deletes more than N backups (only that
    /// account's; default: no such limit).
    #[arg(long, value_name = "N")]
    pub max_deletes_per_account: Option<usize>,

    /// Delete even when the mass-deletion guard trips. Without it, a plan
    /// that would delete more than half of any one source's backups in one
    /// run (or more than --max-deletes in all) has its deletions held back
    /// (exit 5); its due backups are still made.
    #[arg(long)]
    pub allow_mass_delete: bool,

    /// Set the plan's compliance-mode snapshot locks. Once its cool-off is
    /// over, nobody (the root user included) can remove or shorten a
    /// compliance lock: the snapshots cannot be deleted, and are paid for,
    /// until it ends. Without this flag those locks are held back (exit 5)
    /// and the rest of the plan is applied.
    #[arg(long)]
    pub allow_compliance_lock: bool,

    /// Exit 4 when the plan had warnings (after applying it); AWS failures
    /// (3) come first.
    #[arg(long)]
    pub fail_on_warning: bool,

    /// Also write the JSON report of the run to FILE: every change with its
    /// outcome, new ids, AWS request ids and timings, and the counts;
    /// written whatever the exit code.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// `json`: the JSON report on stdout instead of the plan and outcome
    /// lines (needs --auto-approve or PLANFILE).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub from: ImportFrom,

    /// Write the policy files into DIR (an existing file is never
    /// overwritten) instead of printing them.
    #[arg(long, value_name = "DIR", global = true)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// A molibackup YAML configuration: one snapshot policy per job.
    Molibackup {
        /// The YAML file (molibackup's -c).
        file: PathBuf,
    },
    /// A backupViaTag command line, after `--`: one AMI policy.
    #[command(name = "backupviatag", alias = "backupViaTag")]
    BackupViaTag {
        /// How often it ran (its cron line is not part of its arguments).
        #[arg(long, default_value = "1 day")]
        every: String,
        /// backupViaTag's arguments: -t Key:Value -e EXPIRY.
        #[arg(last = true, required = true, value_name = "ARGS")]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Observe AWS and write the inventory JSON (for `plan --state`).
    #[command(
        after_help = "Example (a pull request: one observation that serves both plans):\n  \
backupctl --policies policies state pull --also-policies base/policies -o inventory.json\n  \
backupctl --policies base/policies plan --state inventory.json --out base.json\n  \
backupctl --policies policies plan --state inventory.json --out head.json"
    )]
    Pull {
        /// Write to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,

        /// Also observe what the policies in DIR select (repeatable): with
        /// the base branch's policies, a plan of either set from this one
        /// state sees every instance and region either set targets, so a
        /// removed policy, narrowed selector or dropped region shows up.
        #[arg(long, value_name = "DIR")]
        also_policies: Vec<PathBuf>,

        /// Also observe backupctl's backups in every region enabled for the
        /// account (for audits: backups left in regions no policy targets).
        #[arg(long)]
        all_regions: bool,
    },
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Plan from a saved inventory (JSON) instead of observing AWS.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Plan as of this time (RFC 3339, or a date meaning midnight UTC).
    /// Overrides BACKUPCTL_NOW.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,

    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Also save the plan as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Exit 2 when the plan has changes (0 when it has none).
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Exit 4 when the plan has warnings (a policy or instance that backs
    /// up nothing, a backup with a wrong tag…), after doing everything else;
    /// AWS failures (3) still come first.
    #[arg(long)]
    pub fail_on_warning: bool,

    /// Also look for backupctl's backups in every region enabled for the
    /// account, not only the targeted ones: backups of a policy in a region
    /// it no longer targets are listed as out of scope, never deleted.
    #[arg(long)]
    pub all_regions: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// A summary for a pull-request comment.
    Markdown,
}

/// Parses `--at` / `BACKUPCTL_NOW`: RFC 3339, or a bare date (midnight UTC).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(format!(
        "\"{text}\" is not a time; expected RFC 3339 like 2027-01-01T00:00:00Z, or a date like 2027-01-01"
    ))
}

/// The clock for this run: `--at`, else `BACKUPCTL_NOW`, else the real time.
pub fn resolve_now(at: Option<&str>, env_now: Option<&str>) -> Result<DateTime<Utc>, String> {
    match (at, env_now) {
        (Some(t), _) => parse_time(t).map_err(|e| format!("invalid --at: {e}")),
        (None, Some(t)) if !t.is_empty() => {
            parse_time(t).map_err(|e| format!("invalid BACKUPCTL_NOW: {e}"))
        }
        _ => Ok(Utc::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = parse_time("2027-01-01").unwrap();
        assert_eq!(t.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        let t = parse_time("2027-01-01T02:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert!(parse_time("tomorrow").unwrap_err().contains("RFC 3339"));
        let at = resolve_now(Some("2027-01-01"), Some("2020-01-01")).unwrap();
        assert_eq!(at, parse_time("2027-01-01").unwrap());
        let env = resolve_now(None, Some("2020-01-01")).unwrap();
        assert_eq!(env, parse_time("2020-01-01").unwrap());
        assert!(resolve_now(None, Some("x"))
            .unwrap_err()
            .contains("BACKUPCTL_NOW"));
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

#[derive(Debug, Args)]
pub struct IamArgs {
    /// With an accounts file: who runs backupctl (the role or user ARN the
    /// member roles trust).
    #[arg(long, value_name = "ARN")]
    pub principal: Option<String>,

    /// json: the permission policy (with an accounts file, also the trust
    /// policy and the runner's policy); cloudformation: a template of the
    /// member role, to deploy to every account as a StackSet.
    #[arg(long, value_enum, default_value_t = IamFormat::Json)]
    pub format: IamFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IamFormat {
    Json,
    Cloudformation,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' saved plans.
    #[arg(value_name = "PLANFILE", required = true, num_args = 2..)]
    pub plan_files: Vec<PathBuf>,

    /// Write the joined plan (JSON) to this file; without it, it is printed
    /// as --format says.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}
