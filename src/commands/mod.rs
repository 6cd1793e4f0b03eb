//! One thin function per command: load, observe, plan, render. The logic
//! lives in the modules they call.

mod plan;
mod validate;

use crate::cli::{Cli, Command};
use crate::error::{Error, ExitCode};
use crate::output::Printer;

/// What the commands read from the environment, read once in `run`.
pub struct Env {
    pub now: Option<String>,
    pub no_color: bool,
}

pub fn dispatch(cli: Cli, env: &Env) -> Result<ExitCode, Error> {
    let printer = Printer::new(cli.no_color, env.no_color, cli.quiet);
    match &cli.command {
        Command::Validate => validate::run(&cli, &printer),
        Command::Plan(args) => plan::run(&cli, args, env, &printer),
    }
}
