//! Copying a backup to another region without ever copying it twice.
//!
//! CopyImage takes a `ClientToken`: it is derived from what is copied (the
//! source region and image id), so any resend, by the SDK's retries or by a
//! later run after a lost answer, returns the copy EC2 already made.
//! CopySnapshot takes none: each snapshot is sent with the SDK's retries
//! off, and a send of unknown outcome (timeout, reset, 5xx) is resolved by
//! looking for the copy by its `backupctl:copy-of` tag, across EC2's
//! eventual-consistency window, before it is sent again.
//!
//! `ResourceLimitExceeded` (EC2 allows 20 snapshot copies and 100 AMI copies
//! in flight per destination region) made nothing: the copy is postponed,
//! and the next run makes it (see [`crate::apply`]).

use super::create::Clients;
use super::{filter, sdk_error, tag_spec};
use crate::inventory::Tags;
use crate::plan::Action;
use crate::policy::tags;
use crate::provider::{Done, ProviderError, COPY_LIMIT};
use crate::rate::{backoff, throttling};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::ResourceType;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Sends of one snapshot copy whose outcome was unknown and whose copy was
/// then not found.
const MAX_UNKNOWN: u32 = 5;
/// Throttled sends of one snapshot copy.
const MAX_THROTTLED: u32 = 10;

pub async fn copy(c: &Clients<'_>, action: &Action) -> Result<Done, ProviderError> {
    let Action::Copy {
        source_account,
        source_region,
        source_ids,
        name,
        tags,
        encrypted,
        kms_key,
        ..
    } = action
    else {
        return Err(ProviderError {
            code: "Internal".into(),
            message: format!("not a copy: {action:?}"),
        });
    };
    let options = Options {
        encrypted: *encrypted,
        kms_key: kms_key.as_deref(),
    };
    let from = Origin {
        account: source_account.as_deref(),
        region: source_region,
    };
    let done = match name {
        Some(name) => copy_image(c, from, &source_ids[0], name, tags, options).await,
        None => copy_snapshots(c, from, source_ids, tags, options).await,
    };
    done.map_err(|e| match from.account {
        Some(account) => across_accounts(e, account, kms_key.as_deref()),
        None => e,
    })
}

/// Where a copy is copied from.
#[derive(Clone, Copy)]
struct Origin<'a> {
    /// Another account (`to_account`), which shared the original first.
    account: Option<&'a str>,
    region: &'a str,
}

impl Origin<'_> {
    /// `backupctl:copy-of` of the copy of `id`: `<region>/<id>`, or
    /// `<account>/<region>/<id>` across accounts.
    fn copy_of(&self, id: &str) -> String {
        crate::inventory::copy_of(self.account, self.region, id)
    }
}

/// A cross-account copy's failure, with what it needs said.
fn across_accounts(e: ProviderError, account: &str, kms_key: Option<&str>) -> ProviderError {
    ProviderError {
        message: format!(
            "{}; {}",
            e.message,
            crate::provider::cross_account_copy_needs(account, kms_key)
        ),
        ..e
    }
}

#[derive(Clone, Copy)]
struct Options<'a> {
    /// Sent only when true: `Encrypted = false` is not "decrypt" (a copy of
    /// an encrypted backup is always encrypted) and EC2 may refuse it.
    encrypted: bool,
    kms_key: Option<&'a str>,
}

/// The client token of the copy whose `backupctl:copy-of` is `of`: the
/// same for every send of it, and at most 64 characters, as EC2 requires.
fn client_token(of: &str) -> String {
    let digest = Sha256::digest(format!("backupctl-copy/{of}"));
    let hex: String = format!("{digest:x}").chars().take(40).collect();
    format!("backupctl-{hex}")
}

async fn copy_image(
    c: &Clients<'_>,
    from: Origin<'_>,
    image_id: &str,
    name: &str,
    tags: &Tags,
    o: Options<'_>,
) -> Result<Done, ProviderError> {
    // The token makes the SDK's retries safe.
    let sent = c
        .client
        .copy_image()
        .source_region(from.region)
        .source_image_id(image_id)
        .name(name)
        .client_token(client_token(&from.copy_of(image_id)))
        .copy_image_tags(false)
        .tag_specifications(tag_spec(ResourceType::Image, tags))
        .tag_specifications(tag_spec(ResourceType::Snapshot, tags))
        .set_encrypted(o.encrypted.then_some(true))
        .set_kms_key_id(o.kms_key.map(str::to_string))
        .send()
        .await;
    match sent {
        Ok(out) => Ok(Done::Created(
            out.image_id().into_iter().map(str::to_string).collect(),
        )),
        Err(e) if e.code() == Some(COPY_LIMIT) => Ok(Done::Postponed(sdk_error("CopyImage", e))),
        Err(e) => Err(sdk_error("CopyImage", e)),
    }
}

async fn copy_snapshots(
    c: &Clients<'_>,
    from: Origin<'_>,
    snapshot_ids: &[String],
    tags: &Tags,
    o: Options<'_>,
) -> Result<Done, ProviderError> {
    let mut made = Vec::new();
    for id in snapshot_ids {
        let mut tags = tags.clone();
        let of = from.copy_of(id);
        tags.insert(tags::COPY_OF, of.as_str());
        match copy_snapshot(c, from.region, id, &of, &tags, o).await {
            Ok(copy) => made.push(copy),
            // What is made stays (it is tagged): the next run copies the
            // rest of the set.
            Err(e) if e.code == COPY_LIMIT => {
                return Ok(Done::Postponed(ProviderError {
                    code: e.code,
                    message: format!(
                        "{} ({} of the set's {} snapshot(s) copied before; the next run copies the rest)",
                        e.message,
                        made.len(),
                        snapshot_ids.len()
                    ),
                }))
            }
            Err(e) if made.is_empty() => return Err(e),
            Err(e) => {
                return Err(ProviderError {
                    code: e.code,
                    message: format!(
                        "{} (after copying {}; the next run copies the rest of the set)",
                        e.message,
                        made.join(", ")
                    ),
                })
            }
        }
    }
    Ok(Done::Created(made))
}

/// One CopySnapshot, sent until its outcome is known.
async fn copy_snapshot(
    c: &Clients<'_>,
    region: &str,
    id: &str,
    of: &str,
    tags: &Tags,
    o: Options<'_>,
) -> Result<String, ProviderError> {
    let (mut throttled, mut unknown) = (0u32, 0u32);
    loop {
        let sent = c
            .once
            .copy_snapshot()
            .source_region(region)
            .source_snapshot_id(id)
            .tag_specifications(tag_spec(ResourceType::Snapshot, tags))
            .set_encrypted(o.encrypted.then_some(true))
            .set_kms_key_id(o.kms_key.map(str::to_string))
            .send()
            .await;
        let error = match sent {
            Ok(out) => {
                if let Some(copy) = out.snapshot_id() {
                    return Ok(copy.to_string());
                }
                ProviderError {
                    code: "CopySnapshot".into(),
                    message: "EC2 answered without a snapshot id".into(),
                }
            }
            Err(e) => {
                let ambiguous = super::create::ambiguous(&e);
                let error = sdk_error("CopySnapshot", e);
                if throttling(&error.code) {
                    throttled += 1;
                    if throttled >= MAX_THROTTLED {
                        return Err(error);
                    }
                    tokio::time::sleep(backoff(throttled)).await;
                    continue;
                }
                if !ambiguous {
                    return Err(error);
                }
                error
            }
        };
        tracing::info!(copy_of = %of, error = %error, "the outcome of a snapshot copy is unknown; looking for the copy before sending it again");
        if let Some(copy) = find_copy(c, of).await? {
            return Ok(copy);
        }
        unknown += 1;
        if unknown >= MAX_UNKNOWN {
            return Err(error);
        }
    }
}

/// The copy of `of` (`region/id`) in this region, by its tag, looked for
/// until the consistency window has passed.
async fn find_copy(c: &Clients<'_>, of: &str) -> Result<Option<String>, ProviderError> {
    let mut waited = Duration::ZERO;
    let mut pause = Duration::from_millis(500);
    loop {
        let out = c
            .client
            .describe_snapshots()
            .owner_ids("self")
            .filters(filter(&format!("tag:{}", tags::COPY_OF), [of]))
            .send()
            .await
            .map_err(|e| sdk_error("DescribeSnapshots", e))?;
        if let Some(id) = out.snapshots().iter().find_map(|s| s.snapshot_id()) {
            return Ok(Some(id.to_string()));
        }
        if waited >= c.consistency_window {
            return Ok(None);
        }
        let step = pause.min(c.consistency_window.saturating_sub(waited));
        tokio::time::sleep(step).await;
        waited += step;
        pause *= 2;
    }
}
