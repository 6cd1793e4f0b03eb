//! `backupctl state pull`: observe and save the inventory, so that plans can
//! be made offline (`plan --state`), e.g. for base and head of a pull request.

use crate::cli::Cli;
use crate::error::{Error, ExitCode};
use crate::output::Printer;
use crate::policy::load_dir;
use std::path::{Path, PathBuf};

pub async fn pull(
    cli: &Cli,
    out: Option<&Path>,
    also: &[PathBuf],
    all_regions: bool,
    printer: &Printer,
) -> Result<ExitCode, Error> {
    let mut policies = load_dir(&cli.policies)?;
    super::one_account_only(cli, &policies, "state pull")?;
    // Only what to observe comes from the other sets: their policies join
    // this one for the scope, names and all (a duplicate name is harmless
    // here, nothing is planned).
    for dir in also {
        policies.policies.extend(load_dir(dir)?.policies);
    }
    let (_, observation) = super::observe(cli, &policies, printer, true, all_regions).await?;
    let failed = super::report_failures(&observation, &policies);
    let json = observation.inventory.to_json();
    match out {
        Some(path) => {
            std::fs::write(path, json).map_err(|error| Error::Write {
                path: path.to_path_buf(),
                error,
            })?;
            printer.note(&format!(
                "Saved the state of {} region{} to {}.",
                observation.inventory.regions.len(),
                if observation.inventory.regions.len() == 1 {
                    ""
                } else {
                    "s"
                },
                path.display()
            ));
        }
        None => printer.result(&json),
    }
    Ok(if failed {
        ExitCode::Failure
    } else {
        ExitCode::Success
    })
}
