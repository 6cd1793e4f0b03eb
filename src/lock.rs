//! One apply at a time per policy set on a host.
//!
//! Two applies of the same policies running together would each see the
//! other's backups as missing and both create them. A lock file (an OS
//! advisory lock, released even if the holder is killed) makes the second
//! one refuse, naming the holder. Across hosts there is no lock: there the
//! freshness check makes a second run's creations not due once the first
//! run's backups exist, and deletions are idempotent; at worst two runs
//! racing within the same seconds each make one backup.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held for as long as it lives.
pub struct ApplyLock {
    _file: File,
}

/// Why the lock could not be taken.
pub enum LockError {
    Held {
        pid: String,
        path: PathBuf,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Where the lock of a policy directory lives: the same file for every
/// spelling of the directory's path.
pub fn lock_path(policies: &Path) -> PathBuf {
    let canonical = policies
        .canonicalize()
        .unwrap_or_else(|_| policies.to_path_buf());
    let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
    let short: String = format!("{digest:x}").chars().take(16).collect();
    std::env::temp_dir().join(format!("backupctl-apply-{short}.lock"))
}

pub fn acquire(policies: &Path) -> Result<ApplyLock, LockError> {
    let path = lock_path(policies);
    let io = |error| LockError::Io {
        path: path.clone(),
        error,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::Held {
                pid: pid.trim().to_string(),
                path,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(ApplyLock { _file: file })
}
