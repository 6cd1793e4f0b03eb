//! `backupctl diff BASE HEAD`: what a policy change adds or removes.

use crate::cli::{DiffArgs, Format};
use crate::error::{Error, ExitCode};
use crate::output::Printer;
use crate::plan::diff;

pub fn run(args: &DiffArgs, printer: &Printer) -> Result<ExitCode, Error> {
    let base = super::read_plan_file(&args.base)?;
    let head = super::read_plan_file(&args.head)?;
    let d = diff::diff(&base, &head);
    match args.format {
        Format::Json => printer.result(&d.to_json()),
        Format::Text => printer.result(&diff::render(&d, &base, &head)),
        Format::Markdown => {
            return Err(Error::Usage(
                "diff supports --format text or json; for a pull-request comment, use `show HEAD --format markdown` beside the text diff".into(),
            ))
        }
    }
    Ok(if args.fail_on_loss && d.loses_backups() {
        ExitCode::Loss
    } else if args.detailed_exitcode && !d.is_empty() {
        ExitCode::Changes
    } else {
        ExitCode::Success
    })
}
