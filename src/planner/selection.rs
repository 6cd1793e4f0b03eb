//! Which instances a policy backs up in a region, and which of their
//! volumes (snapshot policies).

use crate::inventory::{Instance, Tags};
use crate::policy::{tags_match, InstanceRef, Kind, Policy};
use std::collections::HashMap;

/// An instance a policy backs up, with the volumes it backs up (snapshot
/// policies; empty for AMI policies, which take every attached volume).
pub struct Selected<'a> {
    pub instance: &'a Instance,
    pub volumes: Vec<&'a str>,
}

/// Every live instance of the region that `policy` selects, in inventory
/// order. `local` is the instance backupctl runs on, if it is in this region.
pub fn select<'a>(
    policy: &Policy,
    instances: &'a [Instance],
    volume_tags: &HashMap<&str, &Tags>,
    local: Option<&str>,
) -> Vec<Selected<'a>> {
    instances
        .iter()
        .filter(|i| selects(policy, i, local))
        .map(|instance| Selected {
            instance,
            volumes: match policy.backup.kind {
                Kind::Ami => Vec::new(),
                Kind::Snapshot => volumes(policy, instance, volume_tags),
            },
        })
        .collect()
}

fn selects(policy: &Policy, instance: &Instance, local: Option<&str>) -> bool {
    let target = &policy.target;
    let id_ok = target.instance_ids.as_ref().is_none_or(|ids| {
        ids.iter().any(|r| match r {
            InstanceRef::Id(id) => *id == instance.id,
            InstanceRef::Local => local == Some(instance.id.as_str()),
        })
    });
    !instance.state.is_gone() && id_ok && tags_match(&target.instance_tags, &instance.tags)
}

/// The attached volumes a snapshot policy backs up on `instance`.
fn volumes<'a>(
    policy: &Policy,
    instance: &'a Instance,
    volume_tags: &HashMap<&str, &Tags>,
) -> Vec<&'a str> {
    let target = &policy.target;
    instance
        .volumes
        .iter()
        .filter(|v| !(v.root && target.exclude_boot_volume))
        .filter(|v| {
            target.volume_tags.is_empty()
                || volume_tags
                    .get(v.volume_id.as_str())
                    .is_some_and(|tags| tags_match(&target.volume_tags, tags))
        })
        .map(|v| v.volume_id.as_str())
        .collect()
}
