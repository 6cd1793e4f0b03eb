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
//! call, "made" or "done" (nothing made) after. A run that finds creations
//! started but not answered by a holder that is gone waits until a call
//! timeout has passed since the journal was last written, then observes.
//!
//! Backups made seconds ago may not show in EC2's Describe calls yet
//! (eventual consistency), whether their run was killed or ended: the next
//! run started within the consistency window checks that each backup the
//! journal says was made shows, and observes again until it does (see
//! `commands::apply`), instead of making it a second time.
//!
//! The file lives in the user's state directory (see [`lock_path`]). An
//! apply that made nothing removes it when it ends; one that made backups
//! leaves its journal, ended with "end", for the next run.
//!
//! Across hosts there is no lock: there the freshness check makes a second
//! run's creations not due once the first run's backups exist, and deletions
//! are idempotent; at worst two runs racing within the same seconds each
//! make one backup.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Held for as long as it lives; dropping it ends the journal.
pub struct ApplyLock {
    file: Mutex<File>,
    path: PathBuf,
    made: AtomicBool,
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
    /// Creations it started and never saw answered (it was killed).
    pub in_flight: usize,
    /// How long to wait before observing, so those calls have landed.
    pub wait: Duration,
    /// The backups it made, as `region/Name tag`, or
    /// `account:region/Name tag` in a plan that spans accounts.
    pub made: Vec<String>,
    /// How long ago its journal was last written.
    pub since: Duration,
}

impl Leftover {
    /// The backups it made in `account` (`None`: the one account of the
    /// standard credential chain), as `region/Name tag`.
    pub fn made_in(&self, account: Option<&str>) -> Vec<String> {
        self.made
            .iter()
            .filter_map(|k| match (k.split_once(':'), account) {
                (Some((a, rest)), Some(id)) if a == id => Some(rest.to_string()),
                (None, None) => Some(k.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Whether a journaled backup (`region/Name tag`) shows in the inventory.
/// One in a region no longer observed cannot be checked, and does not count.
pub fn shows(inventory: &crate::inventory::Inventory, key: &str) -> bool {
    let Some((region, name)) = key.split_once('/') else {
        return true;
    };
    let Some(r) = inventory.regions.get(region) else {
        return true;
    };
    let named = |tags: &crate::inventory::Tags| tags.get(crate::policy::tags::NAME) == Some(name);
    r.images.iter().any(|i| named(&i.tags)) || r.snapshots.iter().any(|s| named(&s.tags))
}

/// Where the lock of a policy directory lives: the same file for every
/// spelling of the directory's path, in the user's state directory
/// (`$XDG_STATE_HOME/backupctl`, else `~/.local/state/backupctl`), or the
/// temporary directory when there is none. Not in the policy directory,
/// which is often a read-only checkout. The shards of one set (`--shard`)
/// work in different accounts, so each has a lock of its own and one host
/// may run them at once.
pub fn lock_path(policies: &Path, shard: Option<crate::accounts::Shard>) -> PathBuf {
    let canonical = policies
        .canonicalize()
        .unwrap_or_else(|_| policies.to_path_buf());
    let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
    let short: String = format!("{digest:x}").chars().take(16).collect();
    let shard = shard.map_or(String::new(), |s| {
        format!("-shard-{}-of-{}", s.index, s.count)
    });
    state_dir().join(format!("apply-{short}{shard}.lock"))
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
    shard: Option<crate::accounts::Shard>,
    call_timeout: Duration,
    settle: Duration,
) -> Result<(ApplyLock, Option<Leftover>), LockError> {
    let path = lock_path(policies, shard);
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
    let leftover = leftover(&previous, &file, pid, call_timeout.max(settle));
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok((
        ApplyLock {
            file: Mutex::new(file),
            path,
            made: AtomicBool::new(false),
        },
        leftover,
    ))
}

/// What the previous run's journal says. Creations it started and never
/// saw answered (it was killed) may still land and then take a while to
/// show: wait `in_flight_wait` from the journal's last write. What it made
/// is checked after observing.
fn leftover(
    previous: &str,
    file: &File,
    pid: String,
    in_flight_wait: Duration,
) -> Option<Leftover> {
    let mut open = std::collections::BTreeSet::new();
    let mut made = Vec::new();
    for line in previous.lines().skip(1) {
        match line.split_once(' ') {
            Some(("start", what)) => {
                open.insert(what);
            }
            Some(("done", what)) => {
                open.remove(what);
            }
            Some(("made", what)) => {
                open.remove(what);
                made.push(what.to_string());
            }
            _ => {}
        }
    }
    if open.is_empty() && made.is_empty() {
        return None;
    }
    let since = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    let wait = if open.is_empty() {
        Duration::ZERO
    } else {
        in_flight_wait.saturating_sub(since)
    };
    Some(Leftover {
        pid,
        in_flight: open.len(),
        wait,
        made,
        since,
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
/// waits for them). If it made nothing the journal is not needed any more,
/// so the file goes, while still locked; if it made backups, the journal
/// stays for a run started before they show in EC2. A run that is killed,
/// or exits at a second Ctrl-C, never gets here, and its journal stays.
impl Drop for ApplyLock {
    fn drop(&mut self) {
        if self.made.load(Ordering::SeqCst) {
            self.journal("end", "");
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl ApplyLock {
    /// Records that a creation is about to be sent (`start`), has made its
    /// backup (`made`) or was answered with nothing made (`done`). Best
    /// effort: a journal that cannot be written only loses the crash
    /// protection, never the run.
    pub fn journal(&self, event: &str, address: &str) {
        if event == "made" {
            self.made.store(true, Ordering::SeqCst);
        }
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{event} {address}");
            let _ = f.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(journal: &str) -> Option<Leftover> {
        let file = scratch_file();
        leftover(journal, &file, "42".into(), Duration::from_secs(45))
    }

    fn scratch_file() -> File {
        let path = std::env::temp_dir().join(format!("backupctl-lock-test-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        file
    }

    #[test]
    fn a_journal_says_what_was_in_flight_and_what_was_made() {
        let left = read("42\nstart r/a\nmade r/a\nstart r/b\ndone r/b\nstart r/c\n")
            .expect("a journal with work in it");
        assert_eq!(left.in_flight, 1, "r/c was never answered");
        assert_eq!(left.made, vec!["r/a".to_string()]);
        assert!(
            left.wait > Duration::from_secs(40),
            "just written: wait for r/c"
        );

        let ended = read("42\nstart r/a\nmade r/a\nend \n").expect("made backups");
        assert_eq!((ended.in_flight, ended.wait), (0, Duration::ZERO));
        assert_eq!(ended.made, vec!["r/a".to_string()]);

        assert!(
            read("42\nstart r/b\ndone r/b\n").is_none(),
            "nothing made, nothing open"
        );
        assert!(read("").is_none());
    }
}
