//! Recycle Bin rules, read with rbin ListRules (snapshot rules, then image
//! rules) and GetRule for each (ListRules leaves a rule's tags out).
//!
//! Reading them fails soft: without the permission (or on any other
//! error) the region's rules are marked unreadable with the reason, the
//! plan says where deletions go is unknown, and only the policies that
//! require a bin rule stop deleting. A backup tool that stopped backing up
//! because it could not tell where a deletion goes would do more harm.

use super::sdk_error;
use crate::inventory::recycle_bin::{BinRule, RecycleBin};
use aws_sdk_rbin::types::{ResourceTag, ResourceType, RetentionPeriodUnit, RuleStatus};
use aws_sdk_rbin::Client;

pub async fn observe(client: &Client) -> RecycleBin {
    match rules(client).await {
        Ok(rules) => RecycleBin {
            rules,
            unreadable: None,
        },
        Err(e) => RecycleBin {
            rules: Vec::new(),
            unreadable: Some(e.to_string()),
        },
    }
}

async fn rules(client: &Client) -> Result<Vec<BinRule>, crate::provider::ProviderError> {
    let mut out = Vec::new();
    for (kind, name) in [
        (ResourceType::EbsSnapshot, "snapshot"),
        (ResourceType::Ec2Image, "image"),
    ] {
        let mut pages = client
            .list_rules()
            .resource_type(kind)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("ListRules", e))?;
            for summary in page.rules() {
                let Some(id) = summary.identifier() else {
                    continue;
                };
                let rule = client
                    .get_rule()
                    .identifier(id)
                    .send()
                    .await
                    .map_err(|e| sdk_error("GetRule", e))?;
                if rule.status() != Some(&RuleStatus::Available) {
                    continue;
                }
                let days = rule
                    .retention_period()
                    .filter(|p| p.retention_period_unit() == &RetentionPeriodUnit::Days)
                    .map_or(0, |p| p.retention_period_value().max(0) as u32);
                let pairs = |tags: &[ResourceTag]| {
                    tags.iter()
                        .map(|t| {
                            let value = t.resource_tag_value().filter(|v| !v.is_empty());
                            (t.resource_tag_key().to_string(), value.map(str::to_string))
                        })
                        .collect()
                };
                out.push(BinRule {
                    id: id.to_string(),
                    resource_type: name.to_string(),
                    days,
                    tags: pairs(rule.resource_tags()),
                    exclude_tags: pairs(rule.exclude_resource_tags()),
                });
            }
        }
    }
    Ok(out)
}
