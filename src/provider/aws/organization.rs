//! Reading the accounts of an AWS Organization (see
//! [`crate::accounts::Organization`]): ListAccounts for the whole
//! organisation, or a walk down from roots and OUs with
//! ListOrganizationalUnitsForParent and ListAccountsForParent, and
//! ListTagsForResource per account only when some policy selects accounts
//! by tag. Organizations is a global service with one endpoint per
//! partition, and low request limits: the walk is sequential, the tag
//! reads few at a time, and throttling is retried by the SDK.

use super::{causes, sdk_error, AwsProvider};
use crate::accounts::{Discovered, Organization};
use crate::provider::ProviderError;
use aws_config::Region;
use aws_sdk_organizations::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::collections::BTreeSet;

/// How many ListTagsForResource calls are in flight at once.
const TAG_READS: usize = 4;

impl AwsProvider {
    /// Every account under `org.from` (or in the whole organisation), with
    /// its tags when `with_tags`.
    pub async fn organization_accounts(
        &self,
        org: &Organization,
        with_tags: bool,
    ) -> Result<Vec<Discovered>, ProviderError> {
        let client = self.organizations(&org.partition);
        let mut found = if org.from.is_empty() {
            list_accounts(&client).await?
        } else {
            walk(&client, &org.from).await?
        };
        if with_tags {
            read_tags(&client, &mut found, org).await?;
        }
        Ok(found)
    }

    fn organizations(&self, partition: &str) -> Client {
        // The service's one endpoint is in this region of each partition.
        let region = match partition {
            "aws-us-gov" => "us-gov-west-1",
            "aws-cn" => "cn-northwest-1",
            _ => "us-east-1",
        };
        // Logged at -vv like every EC2 call.
        let conf = aws_sdk_organizations::config::Builder::from(&*self.config)
            .region(Region::new(region))
            .interceptor(super::calls::CallLog {
                region: region.to_string(),
            });
        Client::from_conf(conf.build())
    }
}

async fn list_accounts(client: &Client) -> Result<Vec<Discovered>, ProviderError> {
    let mut out = Vec::new();
    let mut pages = client.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| refused("ListAccounts", e))?;
        out.extend(page.accounts().iter().filter_map(discovered));
    }
    Ok(out)
}

/// The accounts under `from`, at any depth: each parent's accounts, then
/// its OUs in turn.
async fn walk(client: &Client, from: &[String]) -> Result<Vec<Discovered>, ProviderError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut parents: Vec<String> = from.iter().rev().cloned().collect();
    while let Some(parent) = parents.pop() {
        if !seen.insert(parent.clone()) {
            continue;
        }
        let mut pages = client
            .list_accounts_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| refused("ListAccountsForParent", e))?;
            out.extend(page.accounts().iter().filter_map(discovered));
        }
        let mut pages = client
            .list_organizational_units_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        let mut children = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| refused("ListOrganizationalUnitsForParent", e))?;
            children.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|ou| ou.id().map(str::to_string)),
            );
        }
        parents.extend(children.into_iter().rev());
    }
    Ok(out)
}

async fn read_tags(
    client: &Client,
    accounts: &mut [Discovered],
    org: &Organization,
) -> Result<(), ProviderError> {
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(TAG_READS));
    let mut reads = tokio::task::JoinSet::new();
    // A closed or excluded account is never entered: its tags select nothing.
    let entered = |a: &Discovered| a.active && !org.excludes(&a.id, &a.name);
    for (i, a) in accounts.iter().enumerate().filter(|(_, a)| entered(a)) {
        let (client, id, limit) = (client.clone(), a.id.clone(), limit.clone());
        reads.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let mut tags = Vec::new();
            let mut pages = client
                .list_tags_for_resource()
                .resource_id(id)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| refused("ListTagsForResource", e))?;
                tags.extend(
                    page.tags()
                        .iter()
                        .map(|t| (t.key().to_string(), t.value().to_string())),
                );
            }
            Ok::<_, ProviderError>((i, tags))
        });
    }
    while let Some(read) = reads.join_next().await {
        let (i, tags) = read.expect("a tag read does not panic")?;
        accounts[i].tags = tags.into_iter().collect();
    }
    Ok(())
}

fn discovered(a: &aws_sdk_organizations::types::Account) -> Option<Discovered> {
    use aws_sdk_organizations::types::{AccountState, AccountStatus};
    let active = match (a.state(), a.status()) {
        (Some(state), _) => *state == AccountState::Active,
        (None, Some(status)) => *status == AccountStatus::Active,
        (None, None) => false,
    };
    Some(Discovered {
        id: a.id()?.to_string(),
        name: a.name().unwrap_or("").to_string(),
        active,
        tags: Default::default(),
    })
}

/// Organizations' refusal, with what to do about the usual ones.
fn refused<E>(
    operation: &str,
    e: aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = match e.message() {
        Some(m) => m.to_string(),
        None => causes(&e),
    };
    let mut error = sdk_error(operation, e);
    let hint = match error.code.as_str() {
        "AccessDeniedException" | "AccessDenied" => Some(
            "Organizations is read from the management account or a delegated administrator: run from one, or set `reader_role` in [organization]; `backupctl iam-policy` prints the permissions it needs",
        ),
        "AWSOrganizationsNotInUseException" => Some(
            "the credentials' account is not in an organization: remove [organization] from the accounts file, or read it through an account of the organization (`reader_role`)",
        ),
        "ParentNotFoundException" => Some(
            "an id in `from` of [organization] is not a root or OU of this organization (aws organizations list-roots)",
        ),
        _ => None,
    };
    if let Some(hint) = hint {
        error.message = format!("{operation} was refused ({detail}); {hint}");
    }
    error
}
