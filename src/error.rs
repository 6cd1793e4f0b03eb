//! Errors a user can cause or meet, and the exit code of each, decided here
//! and nowhere else.

use crate::policy::LoadError;
use crate::provider::ProviderError;
use std::fmt;
use std::path::PathBuf;

/// Exit codes, as documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    /// Success (and, under `--detailed-exitcode`, no changes).
    Success = 0,
    /// Invalid input (policies, arguments, files); nothing was touched.
    Invalid = 1,
    /// The plan has changes (only under `--detailed-exitcode`).
    Changes = 2,
    /// An AWS or runtime failure.
    Failure = 3,
    /// Everything ran, but the plan carried warnings (a policy that backs up
    /// nothing, an instance with no selected volume…), under
    /// `--fail-on-warning` only.
    Warnings = 4,
    /// Changes were held back by a safety rule (the mass-deletion guard's
    /// deletions, or compliance locks without `--allow-compliance-lock`);
    /// the rest of the plan was applied.
    DeletionsHeld = 5,
    /// `diff --fail-on-loss`: HEAD deletes more, or backs up less, than BASE.
    Loss = 6,
    /// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

#[derive(Debug)]
pub enum Error {
    /// Bad command-line arguments or environment.
    Usage(String),
    Policies(LoadError),
    /// An inventory (state) file that cannot be used.
    State {
        path: PathBuf,
        message: String,
    },
    /// Writing an output file failed.
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A result could not be written to standard output.
    Stdout(std::io::Error),
    /// AWS could not be used at all (credentials, region list, metadata).
    Aws(ProviderError),
    /// A saved plan that cannot be used.
    PlanFile {
        path: PathBuf,
        message: String,
    },
    /// Another apply of the same policy set holds the lock.
    Locked {
        pid: String,
        path: PathBuf,
    },
    /// A saved plan whose world changed since it was made.
    StalePlan {
        path: PathBuf,
        differences: Vec<String>,
    },
    /// An old tool's configuration that cannot be converted.
    Import(Vec<String>),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_)
            | Error::Policies(_)
            | Error::State { .. }
            | Error::PlanFile { .. }
            | Error::StalePlan { .. }
            | Error::Import(_) => ExitCode::Invalid,
            Error::Write { .. } | Error::Stdout(_) | Error::Aws(_) | Error::Locked { .. } => {
                ExitCode::Failure
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => f.write_str(m),
            Error::Policies(e) => e.fmt(f),
            Error::State { path, message } => {
                write!(f, "cannot use state file {}: {message}", path.display())
            }
            Error::Aws(e) => write!(f, "AWS: {e}"),
            Error::Locked { pid, path } => write!(
                f,
                "another backupctl apply (pid {pid}) is running for this policy set on this host; refusing to run alongside it (lock file {}). Let it finish; if that process is gone, the lock is released with it",
                path.display()
            ),
            Error::PlanFile { path, message } => {
                write!(f, "cannot use plan file {}: {message}", path.display())
            }
            Error::StalePlan { path, differences } => write!(
                f,
                "refusing to apply {}: what it would touch changed since it was made:\n  - {}\nNothing was changed. Make a new plan (backupctl plan --out FILE), review it, and apply that.",
                path.display(),
                differences.join("\n  - ")
            ),
            Error::Import(errors) => write!(
                f,
                "{}\n{} error{} in the configuration to convert; no policy file was written",
                errors.join("\n"),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            ),
            Error::Stdout(error) => write!(
                f,
                "cannot write to standard output: {error}; what was printed is incomplete (is the disk full, or the file it goes to closed?)"
            ),
            Error::Write { path, error } => write!(
                f,
                "cannot write {}: {error}; check that the directory exists and is writable",
                path.display()
            ),
        }
    }
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        Error::Policies(e)
    }
}
