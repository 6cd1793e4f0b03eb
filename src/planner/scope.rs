//! Where a policy acts: only in the regions it targets.
//!
//! A policy creates and deletes only in its own regions. Its backups found in
//! any other observed region (a region removed from the policy, or copies)
//! are listed as out of scope and never deleted there; `--all-regions`
//! observes every enabled region so that none of them goes unseen. Backups of
//! policies missing from the set are orphans (see the planner), wherever
//! they are.

use super::index::RegionIndex;
use crate::inventory::Backup;
use crate::plan::{Orphan, ResourceType};
use crate::policy::Policy;
use std::collections::HashSet;

/// The backups `policy` owns in a region it does not target.
pub fn out_of_scope(policy: &Policy, region: &str, index: &RegionIndex) -> Vec<Orphan> {
    let mut out = Vec::new();
    let mut in_image = HashSet::new();
    for image in index
        .images_by_policy
        .get(policy.name.as_str())
        .into_iter()
        .flatten()
    {
        in_image.extend(image.snapshot_ids.iter().map(String::as_str));
        out.push(entry(region, ResourceType::Image, *image, &policy.name));
    }
    for snapshot in index
        .snapshots_by_policy
        .get(policy.name.as_str())
        .into_iter()
        .flatten()
        .filter(|s| !in_image.contains(s.id.as_str()))
    {
        out.push(entry(
            region,
            ResourceType::Snapshot,
            *snapshot,
            &policy.name,
        ));
    }
    out
}

/// A backup listed but never touched: an orphan or an out-of-scope backup.
pub fn entry<B: Backup>(region: &str, rt: ResourceType, b: &B, policy: &str) -> Orphan {
    Orphan {
        account: None,
        region: region.to_string(),
        resource_type: rt,
        id: b.id().to_string(),
        policy: policy.to_string(),
        source: b.source().map(str::to_string),
        created_at: b.aged_from(),
    }
}
