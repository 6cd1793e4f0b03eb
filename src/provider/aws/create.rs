//! Creating a backup without ever making it twice.
//!
//! CreateSnapshots takes no idempotency token, and CreateImage only has its
//! unique name; the SDK's standard retry re-sends a call after a timeout, a
//! reset connection or a 5xx answer, which can arrive after EC2 already
//! made the backup. Re-sending then makes a second snapshot set (which
//! takes a `keep_last` slot) or fails on the duplicate name. So creating
//! calls go out with the SDK's retries off, each carrying a tag unique to
//! this execution ([`tags::REQUEST`]) in its `TagSpecifications`, and:
//!
//! - a throttled call (`RequestLimitExceeded`) made nothing: the first
//!   sends' refusals go back to apply, which sends the call again when its
//!   copy of EC2's bucket has a token (see [`crate::rate`]); after a send
//!   of unknown outcome it is sent again here, after a backoff with jitter;
//! - an ambiguous outcome (timeout, reset, 5xx, an unreadable answer) and
//!   `InvalidAMIName.Duplicate` are resolved by looking for the backup by
//!   that tag (an image by its unique name, with this backup's policy and
//!   source tags: a run killed in the same minute may have made it), with
//!   backoff across EC2's eventual-consistency window (a
//!   Describe right after a Create may not show it yet: "Eventual
//!   consistency in the Amazon EC2 API", EC2 API reference); only if it is
//!   not found is the call sent again;
//! - any other refusal made nothing and is the outcome (the per-volume
//!   snapshot limits among them, which apply handles as "later").

use super::{filter, sdk_error, tag_spec, tags_of};
use crate::inventory::Tags;
use crate::plan::Action;
use crate::policy::tags;
use crate::provider::{Done, ProviderError};
use crate::rate::{backoff, throttling};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{InstanceSpecification, ResourceType};
use aws_sdk_ec2::Client;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Sends of one creation whose outcome was unknown and whose backup was
/// then not found.
const MAX_UNKNOWN: u32 = 8;
/// Throttled sends of one creation after a send of unknown outcome,
/// counted apart: they made nothing, and under a busy account's throttling
/// they are common (apply allows as many for the first sends).
const MAX_THROTTLED: u32 = 10;
/// EC2 accepts at most this many ids in `ExcludeDataVolumeIds`.
pub const EXCLUDE_LIMIT: usize = 40;

/// How one send of a creating call ended.
enum Sent {
    /// The ids made, each with its volume (empty for an image).
    Made(Vec<(String, String)>),
    /// Nothing was made: safe to send again after a pause.
    Throttled(ProviderError),
    /// It may or may not have been made.
    Unknown(ProviderError),
    /// The name is taken: by this creation's earlier send, or by another.
    Duplicate(ProviderError),
    /// Nothing was made, and sending again will not help now.
    Refused(ProviderError),
}

/// The clients of one region: `once` has the SDK's retries off (creating
/// calls), `client` keeps them (the lookups), `paced` keeps them but for
/// throttling (the deletions apply paces).
pub struct Clients<'a> {
    pub once: &'a Client,
    pub client: &'a Client,
    pub paced: &'a Client,
    /// How long a made backup may stay invisible to Describe calls.
    pub consistency_window: Duration,
}

pub async fn create(c: &Clients<'_>, action: &Action) -> Result<Done, ProviderError> {
    let token = request_token(action);
    let (mut throttled, mut unknown) = (0u32, 0u32);
    loop {
        let outcome = send(c.once, action, &token).await;
        let error = match outcome {
            Sent::Made(ids) => return finish(c.client, action, ids).await,
            Sent::Refused(e) => return Err(e),
            // Refused before any send of unknown outcome: nothing of this
            // creation exists, and apply sends it again at its buckets'
            // pace (see `crate::rate`).
            Sent::Throttled(e) if unknown == 0 => return Err(e),
            Sent::Throttled(e) => {
                throttled += 1;
                if throttled >= MAX_THROTTLED {
                    return Err(e);
                }
                tokio::time::sleep(backoff(throttled)).await;
                continue;
            }
            Sent::Unknown(e) | Sent::Duplicate(e) => e,
        };
        tracing::info!(
            token = %token,
            error = %error,
            "the outcome of a creation is unknown; looking for what it made before sending it again"
        );
        if let Some(ids) = find_made(c, action, &token).await? {
            return finish(c.client, action, ids).await;
        }
        if error.code == "InvalidAMIName.Duplicate" {
            return Err(ProviderError {
                code: error.code,
                message: format!(
                    "{}; within {} s no image of that name showed with this policy's tags for this source, so the name is used by another image: rename or deregister it",
                    error.message,
                    c.consistency_window.as_secs()
                ),
            });
        }
        unknown += 1;
        if unknown >= MAX_UNKNOWN {
            return Err(error);
        }
    }
}

/// A tag value unique to this execution of this creation.
fn request_token(action: &Action) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut h = Sha256::new();
    h.update(format!(
        "{}/{nanos}/{}/{action:?}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    format!("{:x}", h.finalize()).chars().take(24).collect()
}

fn with_token(tags: &Tags, token: &str) -> Tags {
    let mut tags = tags.clone();
    tags.insert(tags::REQUEST, token);
    tags
}

async fn send(once: &Client, action: &Action, token: &str) -> Sent {
    match action {
        Action::CreateImage {
            instance_id,
            name,
            reboot,
            tags,
        } => {
            let tags = with_token(tags, token);
            let sent = once
                .create_image()
                .instance_id(instance_id)
                .name(name)
                .no_reboot(!reboot)
                .tag_specifications(tag_spec(ResourceType::Image, &tags))
                .tag_specifications(tag_spec(ResourceType::Snapshot, &tags))
                .send()
                .await;
            match sent {
                Ok(out) => Sent::Made(
                    out.image_id()
                        .into_iter()
                        .map(|id| (id.to_string(), String::new()))
                        .collect(),
                ),
                Err(e) => classify("CreateImage", e),
            }
        }
        Action::CreateSnapshots {
            instance_id,
            exclude_boot_volume,
            exclude_data_volume_ids,
            tags,
            ..
        } => {
            let tags = with_token(tags, token);
            // Beyond EC2's limit, the first 40 are excluded and the
            // snapshots of the others deleted once made (see `finish`).
            let excluded: Vec<String> = exclude_data_volume_ids
                .iter()
                .take(EXCLUDE_LIMIT)
                .cloned()
                .collect();
            let spec = InstanceSpecification::builder()
                .instance_id(instance_id)
                .exclude_boot_volume(*exclude_boot_volume)
                .set_exclude_data_volume_ids(Some(excluded))
                .build();
            let sent = once
                .create_snapshots()
                .instance_specification(spec)
                .tag_specifications(tag_spec(ResourceType::Snapshot, &tags))
                .send()
                .await;
            match sent {
                Ok(out) => Sent::Made(
                    out.snapshots()
                        .iter()
                        .filter_map(|s| {
                            Some((
                                s.snapshot_id()?.to_string(),
                                s.volume_id().unwrap_or("").to_string(),
                            ))
                        })
                        .collect(),
                ),
                Err(e) => classify("CreateSnapshots", e),
            }
        }
        _ => Sent::Refused(ProviderError {
            code: "Internal".into(),
            message: format!("not a creation: {action:?}"),
        }),
    }
}

fn classify<E>(operation: &str, e: SdkError<E, HttpResponse>) -> Sent
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e.code().map(str::to_string);
    let ambiguous = ambiguous(&e);
    let error = sdk_error(operation, e);
    match code.as_deref() {
        Some(c) if throttling(c) => Sent::Throttled(error),
        Some("InvalidAMIName.Duplicate") => Sent::Duplicate(error),
        _ if ambiguous => Sent::Unknown(error),
        _ => Sent::Refused(error),
    }
}

/// Whether the call may have been carried out although it failed: no
/// answer (timeout, reset connection, unreadable answer) or a 5xx.
pub fn ambiguous<E>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(df) => !df.is_user(),
        SdkError::ServiceError(se) => se.raw().status().as_u16() >= 500,
        _ => false,
    }
}

/// Looks for what this creation made (a snapshot set by its request tag,
/// an image by its name) until the consistency window has passed. A
/// snapshot set counts as found once every planned volume shows (or, at
/// the end of the window, once any does).
async fn find_made(
    c: &Clients<'_>,
    action: &Action,
    token: &str,
) -> Result<Option<Vec<(String, String)>>, ProviderError> {
    let mut waited = Duration::ZERO;
    let mut pause = Duration::from_secs(1);
    let mut seen = Vec::new();
    loop {
        let step = pause.min(c.consistency_window.saturating_sub(waited));
        tokio::time::sleep(step).await;
        waited += step;
        match action {
            Action::CreateImage { name, tags, .. } => {
                // By name, which EC2 keeps unique: an image of that name with
                // this backup's policy and source is this backup, whichever
                // send made it, this run's or a killed run's in the same
                // minute (the name holds the run's minute).
                let out = c
                    .client
                    .describe_images()
                    .owners("self")
                    .filters(filter("name", [name]))
                    .send()
                    .await
                    .map_err(|e| sdk_error("DescribeImages", e))?;
                let ids: Vec<(String, String)> = out
                    .images()
                    .iter()
                    .filter(|i| same_backup(i.tags(), tags, token))
                    .filter_map(|i| Some((i.image_id()?.to_string(), String::new())))
                    .collect();
                if !ids.is_empty() {
                    return Ok(Some(ids));
                }
            }
            Action::CreateSnapshots { volume_ids, .. } => {
                let out = c
                    .client
                    .describe_snapshots()
                    .owner_ids("self")
                    .filters(filter(&format!("tag:{}", tags::REQUEST), [token]))
                    .send()
                    .await
                    .map_err(|e| sdk_error("DescribeSnapshots", e))?;
                let found: Vec<(String, String)> = out
                    .snapshots()
                    .iter()
                    .filter_map(|s| {
                        Some((
                            s.snapshot_id()?.to_string(),
                            s.volume_id().unwrap_or("").to_string(),
                        ))
                    })
                    .collect();
                let volumes: BTreeSet<&str> = found.iter().map(|(_, v)| v.as_str()).collect();
                if !found.is_empty() && volume_ids.iter().all(|v| volumes.contains(v.as_str())) {
                    return Ok(Some(found));
                }
                seen = found;
            }
            _ => return Ok(None),
        }
        if waited >= c.consistency_window {
            return Ok((!seen.is_empty()).then_some(seen));
        }
        pause *= 2;
    }
}

/// Whether a found resource's tags make it the backup `planned` describes:
/// it carries this creation's request tag, or the same policy and source.
fn same_backup(found: &[aws_sdk_ec2::types::Tag], planned: &Tags, token: &str) -> bool {
    let found = tags_of(found);
    found.get(tags::REQUEST) == Some(token)
        || [tags::POLICY, tags::SOURCE]
            .iter()
            .all(|k| found.contains_key(k) && found.get(k) == planned.get(k))
}

/// A set made with more unselected data volumes than EC2 can exclude holds
/// snapshots of some of them: they are deleted at once, so the set is
/// exactly the planned volumes. Their tags make them part of the set until
/// then; if a deletion fails, the next run sees a set with an extra volume,
/// which changes nothing about whether it covers the selected ones.
async fn finish(
    client: &Client,
    action: &Action,
    made: Vec<(String, String)>,
) -> Result<Done, ProviderError> {
    let planned: BTreeSet<&str> = match action {
        Action::CreateSnapshots {
            volume_ids,
            exclude_data_volume_ids,
            ..
        } if exclude_data_volume_ids.len() > EXCLUDE_LIMIT => {
            volume_ids.iter().map(String::as_str).collect()
        }
        _ => BTreeSet::new(),
    };
    let mut kept = Vec::new();
    for (id, volume) in made {
        if volume.is_empty() || planned.is_empty() || planned.contains(volume.as_str()) {
            kept.push(id);
        } else {
            super::delete_snapshot(client, &id).await?;
        }
    }
    if let Action::CreateSnapshots {
        lock: Some(lock), ..
    } = action
    {
        super::locks::lock_new(client, &kept, lock).await;
    }
    Ok(Done::Created(kept))
}
