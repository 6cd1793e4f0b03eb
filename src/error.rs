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
    /// AWS could not be used at all (credentials, region list, metadata).
    Aws(ProviderError),
    /// A saved plan that cannot be used.
    PlanFile {
        path: PathBuf,
        message: String,
    },
    /// A saved plan whose world changed since it was made.
    StalePlan {
        path: PathBuf,
        differences: Vec<String>,
    },
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_)
            | Error::Policies(_)
            | Error::State { .. }
            | Error::PlanFile { .. }
            | Error::StalePlan { .. } => ExitCode::Invalid,
            Error::Write { .. } | Error::Aws(_) => ExitCode::Failure,
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
            Error::PlanFile { path, message } => {
                write!(f, "cannot use plan file {}: {message}", path.display())
            }
            Error::StalePlan { path, differences } => write!(
                f,
                "refusing to apply {}: what it would touch changed since it was made:\n  - {}\nNothing was changed. Make a new plan (backupctl plan --out FILE), review it, and apply that.",
                path.display(),
                differences.join("\n  - ")
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
