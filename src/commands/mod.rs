//! One thin function per command: load, observe, plan, render, apply. The
//! logic lives in the modules they call.

mod apply;
mod plan;
mod state;
mod validate;

use crate::cli::{Cli, Command, StateCommand};
use crate::error::{Error, ExitCode};
use crate::output::Printer;
use crate::policy::PolicySet;
use crate::provider::aws::{AwsOptions, AwsProvider};
use crate::provider::{Observation, Provider, Scope};
use std::sync::Arc;

/// What the commands read from the environment, read once in `run`.
pub struct Env {
    pub now: Option<String>,
    pub no_color: bool,
}

pub async fn dispatch(cli: Cli, env: &Env) -> Result<ExitCode, Error> {
    let printer = Printer::new(cli.no_color, env.no_color, cli.quiet);
    match &cli.command {
        Command::Validate => validate::run(&cli, &printer),
        Command::Plan(args) => plan::run(&cli, args, env, &printer).await,
        Command::Apply(args) => apply::run(&cli, args, env, &printer).await,
        Command::State(StateCommand::Pull { out }) => {
            state::pull(&cli, out.as_deref(), &printer).await
        }
    }
}

fn aws_options(cli: &Cli) -> AwsOptions {
    AwsOptions {
        region: cli.region.clone(),
        profile: cli.profile.clone(),
        endpoint_url: cli.endpoint_url.clone(),
    }
}

/// Observes what the policies need through AWS, with progress on stderr.
async fn observe(
    cli: &Cli,
    policies: &PolicySet,
    printer: &Printer,
    show_progress: bool,
) -> Result<(Arc<AwsProvider>, Observation), Error> {
    let provider = Arc::new(AwsProvider::new(&aws_options(cli)).await);
    let observation = provider
        .observe(&Scope::of(policies), printer.progress(show_progress))
        .await
        .map_err(Error::Aws)?;
    Ok((provider, observation))
}

/// Reports regions that could not be observed; true if there were any.
fn report_failures(observation: &Observation) -> bool {
    for f in &observation.failures {
        eprintln!(
            "error: could not observe {}: {}; nothing was planned there",
            f.region, f.error
        );
    }
    !observation.failures.is_empty()
}
