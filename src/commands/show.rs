//! `backupctl show PLANFILE...`: render a saved plan as text, JSON or
//! Markdown; and `backupctl merge`: join the saved plans of shards.

use crate::cli::{Cli, Format, MergeArgs, ShowArgs};
use crate::error::{Error, ExitCode};
use crate::output::Printer;
use crate::plan::json::JsonPlan;
use crate::plan::Plan;
use std::path::PathBuf;

pub fn run(cli: &Cli, args: &ShowArgs, printer: &Printer) -> Result<ExitCode, Error> {
    let plan = read_joined(&args.plan_files)?;
    super::print_plan(&plan, args.format, cli, printer);
    Ok(ExitCode::Success)
}

pub fn merge(cli: &Cli, args: &MergeArgs, printer: &Printer) -> Result<ExitCode, Error> {
    let plan = read_joined(&args.plan_files)?;
    if let Some(path) = &args.out {
        let doc = JsonPlan::from_plan(&plan);
        let write = || doc.write_pretty(std::fs::File::create(path)?);
        write().map_err(|error| Error::Write {
            path: path.clone(),
            error,
        })?;
        printer.note(&format!(
            "Joined {} plans ({} accounts) into {}.",
            args.plan_files.len(),
            plan.accounts.len(),
            path.display()
        ));
        if args.format == Format::Json {
            return Ok(ExitCode::Success);
        }
    }
    super::print_plan(&plan, args.format, cli, printer);
    Ok(ExitCode::Success)
}

/// One plan, or several joined (see [`Plan::join`]).
fn read_joined(paths: &[PathBuf]) -> Result<Plan, Error> {
    let mut plans = Vec::new();
    for path in paths {
        plans.push(super::read_plan_file(path)?);
    }
    if plans.len() == 1 {
        return Ok(plans.remove(0));
    }
    let times: std::collections::BTreeSet<_> = plans.iter().map(|p| p.generated_at).collect();
    let joined = Plan::join(plans).map_err(|message| Error::PlanFile {
        path: paths[0].clone(),
        message: format!("the plans cannot be joined: {message}"),
    })?;
    if times.len() > 1 {
        eprintln!(
            "note: the plans were made at {} different times; the joined plan is for the earliest ({}): apply each shard's own plan",
            times.len(),
            joined.generated_at.to_rfc3339()
        );
    }
    Ok(joined)
}
