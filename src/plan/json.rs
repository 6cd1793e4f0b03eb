//! The JSON plan: a public, versioned wire format.
//!
//! These types are separate from the internal plan so that refactoring the
//! planner cannot silently change what CI pipelines parse. Any change here is
//! a format change: bump [`FORMAT_VERSION`] (minor for additions, major for
//! anything a reader could trip on) and update the README.

use super::{Action, Plan, Reason};
use crate::inventory::Tags;
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

/// `major.minor`. Readers must refuse an unknown major version.
pub const FORMAT_VERSION: &str = "1.1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonPlan {
    pub format_version: String,
    pub tool: JsonTool,
    pub generated_at: String,
    pub policies_digest: String,
    pub inventory_fingerprint: String,
    pub changes: Vec<JsonChange>,
    pub kept: Vec<JsonKept>,
    pub blocked: Vec<JsonBlocked>,
    pub orphans: Vec<JsonOrphan>,
    pub warnings: Vec<String>,
    pub summary: JsonSummary,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonTool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonChange {
    pub address: String,
    /// `["create"]` or `["delete"]`, as in Terraform, so reviewers can grep.
    pub actions: Vec<String>,
    /// `create_image`, `create_snapshots`, `deregister_image`, `delete_snapshot`.
    pub operation: String,
    pub policy: String,
    pub region: String,
    /// `image` or `snapshot`.
    pub resource_type: String,
    pub source: String,
    /// The image or snapshot deleted (deletions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// deregister_image: the image's snapshots, deleted with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_ids: Option<Vec<String>>,
    /// deregister_image: the image's snapshots that survive it (not owned by
    /// the policy, or used by another image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_snapshot_ids: Option<Vec<String>>,
    /// create_image: the AMI name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// create_image: whether the instance is rebooted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<bool>,
    /// create_snapshots: the volumes in the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_boot_volume: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_data_volume_ids: Option<Vec<String>>,
    /// Creations: every tag the new backup gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Deletions: backups of the same source (volume, for snapshot backups)
    /// before and after the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups_left: Option<JsonBackupsLeft>,
    pub reason: JsonReason,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonBackupsLeft {
    pub before: usize,
    pub after: usize,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonReason {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonKept {
    pub policy: String,
    pub region: String,
    pub resource_type: String,
    pub source: String,
    pub id: String,
    pub reason: JsonReason,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonBlocked {
    pub policy: String,
    pub region: String,
    pub resource_type: String,
    pub source: String,
    pub id: String,
    pub image_ids: Vec<String>,
    pub reason: JsonReason,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonOrphan {
    pub policy: String,
    pub region: String,
    pub resource_type: String,
    pub id: String,
    pub source: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSummary {
    pub create: usize,
    pub delete: usize,
    pub blocked: usize,
    pub orphans: usize,
}

fn reason(r: &Reason) -> JsonReason {
    JsonReason {
        code: r.code.as_str().to_string(),
        message: r.message.clone(),
    }
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl JsonPlan {
    pub fn from_plan(plan: &Plan) -> Self {
        let summary = plan.summary();
        JsonPlan {
            format_version: FORMAT_VERSION.to_string(),
            tool: JsonTool {
                name: "backupctl".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            generated_at: time(plan.generated_at),
            policies_digest: plan.policies_digest.clone(),
            inventory_fingerprint: plan.inventory_fingerprint.clone(),
            changes: plan.changes.iter().map(change).collect(),
            kept: plan
                .kept
                .iter()
                .map(|k| JsonKept {
                    policy: k.policy.clone(),
                    region: k.region.clone(),
                    resource_type: k.resource_type.as_str().to_string(),
                    source: k.source.clone(),
                    id: k.id.clone(),
                    reason: reason(&k.reason),
                })
                .collect(),
            blocked: plan
                .blocked
                .iter()
                .map(|b| JsonBlocked {
                    policy: b.policy.clone(),
                    region: b.region.clone(),
                    resource_type: "snapshot".to_string(),
                    source: b.source.clone(),
                    id: b.snapshot_id.clone(),
                    image_ids: b.image_ids.clone(),
                    reason: reason(&b.reason),
                })
                .collect(),
            orphans: plan
                .orphans
                .iter()
                .map(|o| JsonOrphan {
                    policy: o.policy.clone(),
                    region: o.region.clone(),
                    resource_type: o.resource_type.as_str().to_string(),
                    id: o.id.clone(),
                    source: o.source.clone(),
                    created_at: time(o.created_at),
                })
                .collect(),
            warnings: plan.warnings.clone(),
            summary: JsonSummary {
                create: summary.create,
                delete: summary.delete,
                blocked: summary.blocked,
                orphans: summary.orphans,
            },
        }
    }

    pub fn to_string_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plan serialises");
        text.push('\n');
        text
    }
}

fn change(c: &super::Change) -> JsonChange {
    let mut out = JsonChange {
        address: c.address(),
        actions: vec![if c.action.is_create() {
            "create"
        } else {
            "delete"
        }
        .to_string()],
        operation: String::new(),
        policy: c.policy.clone(),
        region: c.region.clone(),
        resource_type: c.action.resource_type().as_str().to_string(),
        source: c.source.clone(),
        id: c.action.target_id().map(str::to_string),
        snapshot_ids: None,
        kept_snapshot_ids: None,
        name: None,
        reboot: None,
        volume_ids: None,
        exclude_boot_volume: None,
        exclude_data_volume_ids: None,
        tags: None,
        backups_left: c.backups_left.map(|b| JsonBackupsLeft {
            before: b.before,
            after: b.after,
        }),
        reason: reason(&c.reason),
    };
    match &c.action {
        Action::CreateImage {
            name, reboot, tags, ..
        } => {
            out.operation = "create_image".into();
            out.name = Some(name.clone());
            out.reboot = Some(*reboot);
            out.tags = Some(tags.clone());
        }
        Action::CreateSnapshots {
            volume_ids,
            exclude_boot_volume,
            exclude_data_volume_ids,
            tags,
            ..
        } => {
            out.operation = "create_snapshots".into();
            out.volume_ids = Some(volume_ids.clone());
            out.exclude_boot_volume = Some(*exclude_boot_volume);
            out.exclude_data_volume_ids = Some(exclude_data_volume_ids.clone());
            out.tags = Some(tags.clone());
        }
        Action::DeregisterImage {
            snapshot_ids,
            kept_snapshot_ids,
            ..
        } => {
            out.operation = "deregister_image".into();
            out.snapshot_ids = Some(snapshot_ids.clone());
            out.kept_snapshot_ids = Some(kept_snapshot_ids.clone());
        }
        Action::DeleteSnapshot { .. } => out.operation = "delete_snapshot".into(),
    }
    out
}
