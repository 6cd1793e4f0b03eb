//! `backupctl apply`: observe, plan, show the plan, confirm, apply, report.

use super::Env;
use crate::apply::apply;
use crate::cli::{resolve_now, ApplyArgs, Cli};
use crate::error::{Error, ExitCode};
use crate::guard;
use crate::output::Printer;
use crate::plan::text::{self, TextOptions};
use crate::planner;
use crate::policy::load_dir;
use std::io::{BufRead, IsTerminal, Write};

const QUESTION: &str = "Do you want to perform these actions? Only 'yes' will be accepted:";

pub async fn run(
    cli: &Cli,
    args: &ApplyArgs,
    env: &Env,
    printer: &Printer,
) -> Result<ExitCode, Error> {
    let now = resolve_now(None, env.now.as_deref()).map_err(Error::Usage)?;
    let policies = load_dir(&cli.policies)?;
    if !args.auto_approve && !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "apply asks for confirmation, but stdin is not a terminal; review the plan (backupctl plan) and re-run with --auto-approve, as schedulers and CI should".into(),
        ));
    }
    let (provider, observation) = super::observe(cli, &policies, printer, true).await?;
    let region_failed = super::report_failures(&observation);
    let plan = planner::plan(&policies, &observation.inventory, now);
    printer.result(&text::render(
        &plan,
        TextOptions {
            color: printer.color,
            verbose: cli.verbose > 0,
        },
    ));
    let failure_code = if region_failed {
        ExitCode::Failure
    } else {
        ExitCode::Success
    };
    if !plan.has_changes() {
        return Ok(failure_code);
    }
    let refused = guard::violations(&plan, args.max_deletes);
    if !refused.is_empty() && !args.allow_mass_delete {
        return Err(Error::Usage(format!(
            "refusing to apply: the plan deletes more than the mass-deletion guard allows:\n  - {}\nNothing was changed. Review the plan; if these deletions are intended, re-run with --allow-mass-delete (or raise --max-deletes).",
            refused.join("\n  - ")
        )));
    }
    if !args.auto_approve && !confirmed()? {
        printer.note("Apply cancelled; nothing was changed.");
        return Ok(ExitCode::Invalid);
    }

    let report = apply(&plan, provider, printer.progress(true)).await;
    for o in &report.outcomes {
        if let Err(e) = &o.result {
            eprintln!("error: {}: {e}", o.change.address());
        }
    }
    printer.result(&format!(
        "Apply complete: {} created, {} deleted, {} failed.\n",
        report.created(),
        report.deleted(),
        report.failed()
    ));
    Ok(if report.failed() > 0 {
        ExitCode::Failure
    } else {
        failure_code
    })
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
