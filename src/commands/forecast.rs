//! `backupctl forecast --until DATE`: every scheduled run up to a date,
//! simulated (see [`crate::forecast`]), rendered as text, JSON or Markdown.

use super::Env;
use crate::cli::{parse_time, resolve_now, Cli, ForecastArgs, Format};
use crate::error::{Error, ExitCode};
use crate::forecast::{forecast, Forecast};
use crate::output::Printer;
use crate::policy::load_dir;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::fmt::Write;

/// The forecast document's version (`major.minor`, as the plan's).
pub const FORMAT_VERSION: &str = "1.0";

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
    super::one_account_only(cli, &policies, "forecast")?;
    let show = args.format == Format::Text;
    let (inventory, failed) =
        super::inventory(cli, &policies, args.state.as_deref(), printer, show, false).await?;
    let f = forecast(&policies, &inventory, from, until).map_err(Error::Usage)?;
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
    for ((policy, region, source), n) in &f.backups {
        let _ = writeln!(s, "  {policy}/{region}/{source}: {n}");
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
            .map(|((policy, region, source), n)| JsonSource {
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
