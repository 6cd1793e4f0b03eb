//! `backupctl show PLANFILE`: render a saved plan as text, JSON or Markdown.

use crate::cli::{Cli, ShowArgs};
use crate::error::{Error, ExitCode};
use crate::output::Printer;

pub fn run(cli: &Cli, args: &ShowArgs, printer: &Printer) -> Result<ExitCode, Error> {
    let plan = super::read_plan_file(&args.plan_file)?;
    super::print_plan(&plan, args.format, cli, printer);
    Ok(ExitCode::Success)
}
