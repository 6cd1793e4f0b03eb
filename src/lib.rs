//! backupctl: declarative, plan-then-apply EC2 backups.
//!
//! The data flow, and the module that owns each step:
//!
//! ```text
//! policies/*.toml --policy::load_dir--> PolicySet
//! AWS --provider::Provider::observe--> Inventory   (or `plan --state FILE`)
//! (PolicySet, Inventory, now) --planner::plan (pure)--> Plan
//! Plan --plan::text / plan::json--> output      Plan --apply::apply--> ApplyReport
//! ```
//!
//! Only loading, observing, applying and the CLI do IO. The planner (and
//! `retention`, which it uses) is a pure function with the clock passed in.

pub mod accounts;
pub mod apply;
pub mod cli;
pub mod commands;
pub mod error;
pub mod fleet;
pub mod forecast;
pub mod guard;
pub mod iam;
pub mod import;
pub mod inventory;
pub mod lock;
pub mod output;
pub mod plan;
pub mod planner;
pub mod policy;
pub mod provider;
pub mod rate;
pub mod report;
pub mod stale;

use clap::Parser;
use error::ExitCode;
use std::ffi::OsString;

/// Runs backupctl with `args` (including the program name) and returns the
/// process exit code. Errors are printed here, once.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    one_malloc_arena();
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Invalid as i32
            } else {
                ExitCode::Success as i32
            };
        }
    };
    logging(cli.verbose);
    let env = commands::Env {
        now: std::env::var("BACKUPCTL_NOW").ok(),
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        timings: std::env::var_os("BACKUPCTL_TIMINGS").is_some_and(|v| !v.is_empty()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Failure as i32;
        }
    };
    match runtime.block_on(commands::dispatch(cli, &env)) {
        Ok(code) => code as i32,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code() as i32
        }
    }
}

/// glibc gives threads that allocate at once arenas of their own, and
/// memory freed in one arena is not reused by allocations in another: the
/// inventory, observed on the runtime's threads, was freed before the JSON
/// plan was built on the main thread, and the process still grew by the
/// whole document (100,000 snapshots: a peak of 177 MiB, 127 MiB with one
/// arena, measured with `tests/emulator/bench.py --large`). Called first,
/// before the runtime starts its threads; planning took as long.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator, under its
    // own lock; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Diagnostics on stderr through `tracing`: `RUST_LOG` when set, else
/// each AWS call at `-vv` and the SDK's own debug events at `-vvv`;
/// nothing below that (`-v` is about the plan, not the calls).
fn logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => EnvFilter::new(match verbose {
            0 | 1 => "off",
            2 => "backupctl=info",
            _ => "backupctl=debug,aws_config=debug,aws_smithy_runtime=debug,aws_sdk_ec2=debug",
        }),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
