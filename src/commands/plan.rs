//! `backupctl plan`: load policies, observe (or read a saved inventory),
//! plan, render.

use super::Env;
use crate::cli::{resolve_now, Cli, Format, PlanArgs};
use crate::error::{Error, ExitCode};
use crate::inventory::Inventory;
use crate::output::Printer;
use crate::plan::json::JsonPlan;
use crate::planner;
use crate::policy::load_dir;

pub async fn run(
    cli: &Cli,
    args: &PlanArgs,
    env: &Env,
    printer: &Printer,
) -> Result<ExitCode, Error> {
    let now = resolve_now(args.at.as_deref(), env.now.as_deref()).map_err(Error::Usage)?;
    let mut timings = super::Timings::new(env.timings);
    let policies = load_dir(&cli.policies)?;
    timings.lap("policies");
    let show = args.format == Format::Text;
    let (plan, inventory, region_failed) = match super::accounts(cli, &policies)? {
        Some(accounts) => {
            if args.state.is_some() {
                return Err(Error::Usage(format!(
                    "plan --state reads one account's inventory, and {} lists {} accounts; plan them live, or plan the state file with a policy directory without an accounts file",
                    accounts.file.display(),
                    accounts.accounts.len()
                )));
            }
            let (planned, failed) = super::plan_fleet(
                cli,
                &policies,
                accounts,
                now,
                printer,
                show,
                args.all_regions,
            )
            .await?;
            timings.lap("observe and plan");
            (planned.plan, Inventory::empty(), failed)
        }
        None => {
            let (inventory, region_failed) = super::inventory(
                cli,
                &policies,
                args.state.as_deref(),
                printer,
                show,
                args.all_regions,
            )
            .await?;
            timings.lap(if args.state.is_some() {
                "read"
            } else {
                "observe"
            });
            let plan = planner::plan(&policies, &inventory, now);
            timings.lap("plan");
            (plan, inventory, region_failed)
        }
    };

    let code = super::outcome(
        region_failed,
        args.fail_on_warning,
        !plan.warnings.is_empty(),
        args.detailed_exitcode && plan.has_changes(),
    );
    if args.out.is_some() || args.format == Format::Json {
        // The JSON document is a copy of the plan: the inventory goes
        // first, so that its memory holds the copy (at 100,000 backups,
        // tens of MiB each).
        drop(inventory);
        let doc = JsonPlan::from_plan(&plan);
        if let Some(path) = &args.out {
            let write = || doc.write_pretty(std::fs::File::create(path)?);
            write().map_err(|error| Error::Write {
                path: path.clone(),
                error,
            })?;
            printer.note(&format!("Saved the plan to {}.", path.display()));
        }
        if args.format == Format::Json {
            printer.result_with(|out| doc.write_pretty(out));
        } else {
            super::print_plan(&plan, args.format, cli, printer);
        }
        std::mem::forget(doc);
    } else {
        super::print_plan(&plan, args.format, cli, printer);
        // Freeing a large inventory and plan, allocation by allocation,
        // took a third of a second at 160,000 backups; the process ends
        // here, and the operating system takes the memory back at once.
        std::mem::forget(inventory);
    }
    timings.lap("render");
    std::mem::forget(plan);
    timings.print();
    Ok(code)
}
