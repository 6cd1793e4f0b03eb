//! Sharing a backup with the account that copies it (`[[copy]]
//! to_account`), and removing the share once the copy is made.
//!
//! EC2 keeps who may copy a backup as attributes that DescribeImages and
//! DescribeSnapshots do not return; reading them back would cost a call
//! per snapshot. So the share is also written as a tag,
//! `backupctl:shared-with:<account>`, which the next observation reads for
//! free: written before the share (a share whose tag failed is never left
//! unknown), removed after the unshare. Every call is idempotent (adding a
//! permission that exists, or removing one that does not, changes
//! nothing), so the SDK's retries are safe.

use super::sdk_error;
use crate::plan::{Action, ResourceType};
use crate::policy::tags;
use crate::provider::{Done, ProviderError};
use aws_sdk_ec2::types::{OperationType, SnapshotAttributeName, Tag};
use aws_sdk_ec2::Client;

pub async fn share(client: &Client, action: &Action) -> Result<Done, ProviderError> {
    let Action::Share {
        resource_type,
        id,
        snapshot_ids,
        account,
        add,
    } = action
    else {
        return Err(ProviderError {
            code: "Internal".into(),
            message: format!("not a share: {action:?}"),
        });
    };
    let mut resources: Vec<String> = Vec::new();
    if *resource_type == ResourceType::Image {
        resources.push(id.clone());
    }
    resources.extend(snapshot_ids.iter().cloned());
    let key = format!("{}{account}", tags::SHARED_WITH);
    let operation = if *add {
        OperationType::Add
    } else {
        OperationType::Remove
    };
    if *add {
        client
            .create_tags()
            .set_resources(Some(resources.clone()))
            .tags(Tag::builder().key(&key).value("copy").build())
            .send()
            .await
            .map_err(|e| sdk_error("CreateTags", e))?;
    }
    if *resource_type == ResourceType::Image {
        client
            .modify_image_attribute()
            .image_id(id)
            .attribute("launchPermission")
            .operation_type(operation.clone())
            .user_ids(account)
            .send()
            .await
            .map_err(|e| sdk_error("ModifyImageAttribute", e))?;
    }
    // CopyImage reads the image's snapshots with the copying account's
    // rights: they are shared too.
    for snapshot in snapshot_ids {
        client
            .modify_snapshot_attribute()
            .snapshot_id(snapshot)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .operation_type(operation.clone())
            .user_ids(account)
            .send()
            .await
            .map_err(|e| sdk_error("ModifySnapshotAttribute", e))?;
    }
    if *add {
        return Ok(Done::Shared(resources));
    }
    client
        .delete_tags()
        .set_resources(Some(resources.clone()))
        .tags(Tag::builder().key(&key).build())
        .send()
        .await
        .map_err(|e| sdk_error("DeleteTags", e))?;
    Ok(Done::Unshared(resources))
}
