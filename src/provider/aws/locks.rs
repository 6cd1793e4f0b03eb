//! Snapshot locks: observed with DescribeLockedSnapshots (one paginated
//! call per region, only where some policy declares `lock`), set with
//! LockSnapshot.
//!
//! A new snapshot set of a policy with a governance lock is locked right
//! after CreateSnapshots returns its ids ([`lock_new`]); an AMI's snapshots
//! are not known then, and are locked by the next run's lock change.
//!
//! LockSnapshot is sent with the lock's end as a date (`ExpirationDate`),
//! never as a duration: a resend, by the SDK's retries or by a later run
//! after a lost answer, sets the very same lock, so its retries are safe.

use super::{sdk_error, time_of, PAGE_SIZE};
use crate::inventory::SnapshotLock;
use crate::plan::{Action, NewLock};
use crate::policy::LockMode;
use crate::provider::{Done, ProviderError};
use aws_sdk_ec2::Client;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Every lock of the account's snapshots in the client's region, expired
/// ones included (they hold nothing).
pub async fn observe(client: &Client) -> Result<HashMap<String, SnapshotLock>, ProviderError> {
    let mut out = HashMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .describe_locked_snapshots()
            .max_results(PAGE_SIZE)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeLockedSnapshots", e))?;
        for s in page.snapshots() {
            let (Some(id), Some(state), Some(ends)) =
                (s.snapshot_id(), s.lock_state(), s.lock_expires_on())
            else {
                continue;
            };
            let lock = SnapshotLock {
                state: state.as_str().to_string(),
                expires_at: time_of(ends),
            };
            out.insert(id.to_string(), lock);
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

/// LockSnapshot of each snapshot of a lock change. Every one is tried; the
/// change fails if any could not be locked (the next run locks the rest).
pub async fn lock(client: &Client, action: &Action) -> Result<Done, ProviderError> {
    let Action::Lock {
        snapshot_ids,
        mode,
        expires_at,
        cool_off_hours,
        ..
    } = action
    else {
        return Err(ProviderError {
            code: "Internal".into(),
            message: format!("not a lock: {action:?}"),
        });
    };
    lock_all(client, snapshot_ids, *mode, *expires_at, *cool_off_hours).await?;
    Ok(Done::Locked(snapshot_ids.clone()))
}

/// The lock of a new snapshot set, right after CreateSnapshots made it. A
/// failure does not unmake the backup: it is logged, and the next run's
/// plan locks the set (reason `not_locked`).
pub async fn lock_new(client: &Client, ids: &[String], lock: &NewLock) {
    if let Err(e) = lock_all(client, ids, lock.mode, lock.expires_at, None).await {
        tracing::warn!(error = %e, "a new snapshot set was made but not locked; the next run locks it");
    }
}

/// LockSnapshot of each of `ids`, every one tried.
async fn lock_all(
    client: &Client,
    snapshot_ids: &[String],
    mode: LockMode,
    expires_at: DateTime<Utc>,
    cool_off_hours: Option<u32>,
) -> Result<(), ProviderError> {
    let mode = match mode {
        LockMode::Governance => aws_sdk_ec2::types::LockMode::Governance,
        LockMode::Compliance => aws_sdk_ec2::types::LockMode::Compliance,
    };
    let ends = aws_sdk_ec2::primitives::DateTime::from_secs(expires_at.timestamp());
    let mut failed = Vec::new();
    for id in snapshot_ids {
        let sent = client
            .lock_snapshot()
            .snapshot_id(id)
            .lock_mode(mode.clone())
            .expiration_date(ends)
            .set_cool_off_period(cool_off_hours.map(|h| h as i32))
            .send()
            .await;
        match sent {
            Ok(_) => {}
            Err(e) => {
                let e = sdk_error("LockSnapshot", e);
                if crate::rate::throttling(&e.code) {
                    return Err(e);
                }
                failed.push((id, e));
            }
        }
    }
    match failed.as_slice() {
        [] => Ok(()),
        [(id, e)] if snapshot_ids.len() == 1 => Err(ProviderError {
            code: e.code.clone(),
            message: format!("{id}: {}", e.message),
        }),
        [(_, first), ..] => Err(ProviderError {
            code: first.code.clone(),
            message: format!(
                "{} of {} snapshots could not be locked: {}; the next run locks them",
                failed.len(),
                snapshot_ids.len(),
                failed
                    .iter()
                    .map(|(id, e)| format!("{id}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
    }
}
