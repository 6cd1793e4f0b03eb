//! One apply at a time per policy set on a host, and a journal of the
//! creations in flight, so that a run started after a crash does not
//! duplicate a backup the crashed run was still making.
//!
//! Two applies of the same policies running together would each see the
//! other's backups as missing and both create them. A lock file (an OS
//! advisory lock, released even if the holder is killed) makes the second
//! one refuse, naming the holder.
//!
//! A run killed while a CreateImage or CreateSnapshots call is in flight
//! leaves that call to finish on EC2's side a little later. A new run that
//! observes before then would find the backup missing and make it again
//! (CreateSnapshots has no idempotency token; a duplicate AMI name would be
//! caught). So the lock file also journals creations: "start" before the
//! call, "done" after. A run that finds creations started but not done by a
//! holder that is gone waits until a call timeout has passed since the
//! journal was last written, then observes.
//!
//! The file lives in the user's state directory (see [`lock_path`]) and is
//! removed when an apply ends; only a crashed run's journal stays behind.
//!
//! Across hosts there is no lock: there the freshness check makes a second
//! run's creations not due once the first run's backups exist, and deletions
//! are idempotent; at worst two runs racing within the same seconds each
//! make one backup.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Held for as long as it lives; dropping it removes the file.
pub struct ApplyLock {
    file: Mutex<File>,
    path: PathBuf,
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

/// What the previous holder left behind.
pub struct Leftover {
    pub pid: String,
    /// Creations it started and never saw finish.
    pub in_flight: usize,
    /// How long to wait before observing, so those calls have landed.
    pub wait: Duration,
}

/// Where the lock of a policy directory lives: the same file for every
/// spelling of the directory's path, in the user's state directory
/// (`$XDG_STATE_HOME/backupctl`, else `~/.local/state/backupctl`), or the
/// temporary directory when there is none. Not in the policy directory,
/// which is often a read-only checkout.
pub fn lock_path(policies: &Path) -> PathBuf {
    let canonical = policies
        .canonicalize()
        .unwrap_or_else(|_| policies.to_path_buf());
    let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
    let short: String = format!("{digest:x}").chars().take(16).collect();
    state_dir().join(format!("apply-{short}.lock"))
}

fn state_dir() -> PathBuf {
    let home = |v: &str| {
        std::env::var_os(v)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let wanted = home("XDG_STATE_HOME")
        .or_else(|| home("HOME").map(|h| h.join(".local/state")))
        .map(|d| d.join("backupctl"));
    match wanted {
        Some(dir) if std::fs::create_dir_all(&dir).is_ok() => dir,
        _ => std::env::temp_dir(),
    }
}

/// Takes the lock; `call_timeout` bounds how long calls of a crashed holder
/// can still be in flight.
pub fn acquire(
    policies: &Path,
    call_timeout: Duration,
    settle: Duration,
) -> Result<(ApplyLock, Option<Leftover>), LockError> {
    let path = lock_path(policies);
    let io = |error| LockError::Io {
        path: path.clone(),
        error,
    };
    // A holder removes the file when it is done: the file locked must be
    // the one still at `path`, else it was removed in between; try again.
    let (mut file, previous, pid) = loop {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let locked = file.try_lock();
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        let pid = previous.lines().next().unwrap_or("").trim().to_string();
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LockError::Held { pid, path }),
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        if same_file(&file, &path) {
            break (file, previous, pid);
        }
    };
    let leftover = leftover(&previous, &file, pid, call_timeout, settle);
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok((
        ApplyLock {
            file: Mutex::new(file),
            path,
        },
        leftover,
    ))
}

/// A journal left behind means its run did not end (a clean end removes
/// the file). Creations it started and never saw answered may still land:
/// wait a call timeout. Creations it made just before it died may not show
/// in EC2's Describe calls yet (eventual consistency): wait `settle`. Both
/// counted from the journal's last write.
fn leftover(
    previous: &str,
    file: &File,
    pid: String,
    call_timeout: Duration,
    settle: Duration,
) -> Option<Leftover> {
    let mut open = std::collections::BTreeSet::new();
    let mut made = 0;
    for line in previous.lines().skip(1) {
        match line.split_once(' ') {
            Some(("start", what)) => {
                open.insert(what);
            }
            Some(("done", what)) => {
                open.remove(what);
                made += 1;
            }
            _ => {}
        }
    }
    if open.is_empty() && made == 0 {
        return None;
    }
    let needed = if open.is_empty() {
        settle
    } else {
        call_timeout.max(settle)
    };
    let since = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    Some(Leftover {
        pid,
        in_flight: open.len(),
        wait: needed.saturating_sub(since),
    })
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// The run is over and every creation it started was answered (apply
/// waits for them): the journal is not needed any more, so the file goes,
/// while still locked. A run that is killed, or exits at a second Ctrl-C,
/// never gets here, and its journal stays for the next one.
impl Drop for ApplyLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ApplyLock {
    /// Records that a creation is about to be sent (`start`) or has been
    /// answered (`done`). Best effort: a journal that cannot be written only
    /// loses the crash protection, never the run.
    pub fn journal(&self, event: &str, address: &str) {
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{event} {address}");
            let _ = f.flush();
        }
    }
}
