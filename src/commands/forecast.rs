//! `backupctl forecast --until DATE`: every scheduled run up to a date,
//! simulated (see [`crate::forecast`]), rendered as text, JSON or Markdown.

use super::Env;
use crate::accounts::AccountSet;
use crate::cli::{parse_time, resolve_now, Cli, ForecastArgs, Format};
use crate::error::{Error, ExitCode};
use crate::forecast::{forecast, Forecast};
use crate::output::Printer;
use crate::policy::load_dir;
use crate::policy::PolicySet;
use crate::provider::aws::AwsProvider;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// The forecast document's version (`major.minor`, as the plan's).
pub const FORMAT_VERSION: &str = "1.1";

pub async fn run(
    cli: &Cli,
    args: &ForecastArgs,
    env: &Env,
    printer: &Printer,
) -> Result<ExitCode, Error> {
    let from = resolve_now(args.at.as_deref(), env.now.as_deref()).map_err(Error::Usage)?;
    let until =
        parse_time(&args.until).map_err(|e| Error::Usage(format!("invalid --until: {e}")))?;
    let policies = load_dir(&cli.policies)?;
    let show = args.format == Format::Text;
    let (f, failed) = match super::accounts(cli, &policies)? {
        Some(accounts) => {
            if args.state.is_some() {
                return Err(Error::Usage(format!(
                    "forecast --state reads one account's inventory, and {} lists accounts; forecast them live, or the state file with a policy directory without an accounts file",
                    accounts.file.display()
                )));
            }
            in_accounts(cli, &policies, accounts, from, until, printer, show).await?
        }
        None => {
            let (inventory, failed) =
                super::inventory(cli, &policies, args.state.as_deref(), printer, show, false)
                    .await?;
            let f = forecast(&policies, &inventory, from, until).map_err(Error::Usage)?;
            (f, failed)
        }
    };
    printer.result(&match args.format {
        Format::Text => text(&f),
        Format::Json => json(&f),
        Format::Markdown => markdown(&f),
    });
    Ok(if failed {
        ExitCode::Failure
    } else {
        ExitCode::Success
    })
}

/// The forecast of every account: each one's simulated on its own
/// inventory (with the policies as they act there) before the inventory
/// is freed, then joined.
async fn in_accounts(
    cli: &Cli,
    policies: &PolicySet,
    accounts: AccountSet,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    printer: &Printer,
    show: bool,
) -> Result<(Forecast, bool), Error> {
    let schedule = crate::forecast::schedule(policies, from, until).map_err(Error::Usage)?;
    let base = AwsProvider::new(&super::aws_options(cli)?).await;
    let fleet = super::fleet(cli, base, accounts, policies, printer).await?;
    let parts = Arc::new(Mutex::new(Vec::new()));
    let into = parts.clone();
    let each: crate::fleet::Check =
        Arc::new(move |account, policies, inventory, _| {
            match forecast(policies, inventory, from, until) {
                Ok(f) => {
                    into.lock()
                        .expect("no forecast panicked")
                        .push(f.in_account(&account.id));
                    Vec::new()
                }
                Err(e) => vec![e],
            }
        });
    let planned = fleet
        .plan(
            policies,
            from,
            false,
            printer.progress(show),
            None,
            Some(each),
        )
        .await;
    let failed = super::report_fleet_failures(&planned);
    for note in &planned.notes {
        eprintln!("error: {note}");
    }
    let parts = std::mem::take(&mut *parts.lock().expect("no forecast panicked"));
    let joined = Forecast::join(parts, from, until, schedule);
    Ok((joined, failed || !planned.notes.is_empty()))
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn left(c: &crate::plan::Change) -> String {
    c.backups_left
        .map(|l| format!("; {} of {} backups left", l.after, l.before))
        .unwrap_or_default()
}

fn header(f: &Forecast) -> String {
    format!(
        "Forecast from {} until {}: {} runs, one every {} minutes; backups still pending are assumed to complete.",
        time(f.from),
        time(f.until),
        f.runs,
        f.step.num_minutes()
    )
}

fn footer(f: &Forecast) -> String {
    format!(
        "Forecast: {} runs, {} backups created, {} deleted.",
        f.runs,
        f.creations,
        f.deletions.len()
    )
}

fn text(f: &Forecast) -> String {
    let mut s = format!("{}\n\n", header(f));
    if f.deletions.is_empty() {
        s.push_str("No deletions.\n\n");
    } else {
        s.push_str("Deletions:\n");
        for (at, c) in &f.deletions {
            let _ = writeln!(
                s,
                "  {}  - {}\n      {}{}",
                time(*at),
                c.address(),
                c.reason.message,
                left(c)
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "Backups of each source on {}:", time(f.until));
    for ((account, policy, region, source), n) in &f.backups {
        let account = account.as_ref().map_or(String::new(), |a| format!("{a}/"));
        let _ = writeln!(s, "  {account}{policy}/{region}/{source}: {n}");
    }
    let _ = writeln!(s, "\n{}", footer(f));
    s
}

fn markdown(f: &Forecast) -> String {
    let mut s = format!("### backupctl forecast\n\n{}\n\n", header(f));
    if !f.deletions.is_empty() {
        s.push_str("| date | deletion | why |\n|---|---|---|\n");
        for (at, c) in &f.deletions {
            let _ = writeln!(
                s,
                "| {} | `{}` | {}{} |",
                time(*at),
                c.address(),
                c.reason.message,
                left(c)
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "{}", footer(f));
    s
}

/// The JSON forecast, fields in document order.
#[derive(Serialize)]
struct JsonForecast<'a> {
    format_version: &'static str,
    from: String,
    until: String,
    step_minutes: i64,
    deletions: Vec<JsonDeletion<'a>>,
    sources: Vec<JsonSource<'a>>,
    summary: JsonSummary,
}

#[derive(Serialize)]
struct JsonDeletion<'a> {
    at: String,
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    policy: &'a str,
    region: &'a str,
    source: &'a str,
    id: Option<&'a str>,
    deleted_ids: Vec<&'a str>,
    reason: &'a str,
    backups_left: Option<JsonLeft>,
}

#[derive(Serialize)]
struct JsonLeft {
    before: usize,
    after: usize,
}

#[derive(Serialize)]
struct JsonSource<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    policy: &'a str,
    region: &'a str,
    source: &'a str,
    backups: usize,
}

#[derive(Serialize)]
struct JsonSummary {
    runs: usize,
    creations: usize,
    deletions: usize,
}

fn json(f: &Forecast) -> String {
    let doc = JsonForecast {
        format_version: FORMAT_VERSION,
        from: time(f.from),
        until: time(f.until),
        step_minutes: f.step.num_minutes(),
        deletions: f
            .deletions
            .iter()
            .map(|(at, c)| JsonDeletion {
                at: time(*at),
                address: c.address(),
                account: c.account.as_deref(),
                policy: &c.policy,
                region: &c.region,
                source: &c.source,
                id: c.action.target_id(),
                deleted_ids: c.action.deleted_ids(),
                reason: &c.reason.message,
                backups_left: c.backups_left.map(|l| JsonLeft {
                    before: l.before,
                    after: l.after,
                }),
            })
            .collect(),
        sources: f
            .backups
            .iter()
            .map(|((account, policy, region, source), n)| JsonSource {
                account: account.as_deref(),
                policy,
                region,
                source,
                backups: *n,
            })
            .collect(),
        summary: JsonSummary {
            runs: f.runs,
            creations: f.creations,
            deletions: f.deletions.len(),
        },
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("forecast serialises");
    s.push('\n');
    s
}
