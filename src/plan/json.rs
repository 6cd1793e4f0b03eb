//! The JSON plan: a public, versioned wire format, and the saved plan that
//! `apply PLANFILE` executes.
//!
//! These types are separate from the internal plan so that refactoring the
//! planner cannot silently change what CI pipelines parse. Any change here is
//! a format change: bump [`FORMAT_VERSION`] (minor for additions, major for
//! anything a reader could trip on) and update the README.
//!
//! A saved plan carries a checksum of its own content, so that a plan edited
//! by hand (or damaged) is refused rather than applied.

use super::{
    Action, BackupsLeft, Blocked, Change, Covered, Kept, Orphan, Plan, Precondition, Reason,
    ReasonCode, ResourceType,
};
use crate::inventory::recycle_bin::Fate;
use crate::inventory::{HashWriter, Tags};
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;

/// `major.minor`. Readers must refuse an unknown major version.
pub const FORMAT_VERSION: &str = "1.9";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonPlan {
    pub format_version: String,
    pub tool: JsonTool,
    /// The accounts the plan spans (1.5); absent in a one-account plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<JsonAccount>,
    pub generated_at: String,
    pub policies_digest: String,
    pub inventory_fingerprint: String,
    pub changes: Vec<JsonChange>,
    pub kept: Vec<JsonKept>,
    pub blocked: Vec<JsonBlocked>,
    pub orphans: Vec<JsonOrphan>,
    /// Backups of loaded policies in regions they do not target (1.2).
    #[serde(default)]
    pub out_of_scope: Vec<JsonOrphan>,
    pub warnings: Vec<String>,
    /// Every source each policy backs up, due now or not (1.3).
    #[serde(default)]
    pub covered: Vec<JsonCovered>,
    pub summary: JsonSummary,
    /// `sha256:<hex>` of this document serialised with `checksum` empty.
    pub checksum: String,
}

/// One account of a plan that spans accounts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonAccount {
    pub id: String,
    pub name: String,
    /// The fingerprint of the account's inventory (the plan's
    /// `inventory_fingerprint` is a digest of these).
    pub inventory_fingerprint: String,
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
    /// The account, in plans that span accounts (1.5); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub address: String,
    /// `["create"]`, `["update"]` (adoptions, 1.4; locks, 1.7; protection,
    /// 1.8) or
    /// `["delete"]`, as in Terraform, so reviewers can grep.
    pub actions: Vec<String>,
    /// `create_image`, `create_snapshots`, `deregister_image`,
    /// `delete_snapshot`, `delete_snapshot_set` (1.2), `adopt_image`,
    /// `adopt_snapshot` (1.4), `copy_image`, `copy_snapshots` (1.6),
    /// `lock_snapshots` (1.7), `protect_image`, `unprotect_image` (1.8),
    /// `share_image`, `share_snapshot`, `unshare_image`, `unshare_snapshot`
    /// (1.9).
    pub operation: String,
    pub policy: String,
    pub region: String,
    /// `image` or `snapshot`.
    pub resource_type: String,
    pub source: String,
    /// The image, snapshot or snapshot set deleted, adopted or locked; the
    /// image protected or unprotected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// deregister_image: the image's snapshots, deleted with it;
    /// delete_snapshot_set: the set's snapshots; adopt_image: the image's
    /// snapshots, tagged with it; lock_snapshots: the snapshots locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_ids: Option<Vec<String>>,
    /// deregister_image: the image's snapshots that survive it (not owned by
    /// the policy, or used by another image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_snapshot_ids: Option<Vec<String>>,
    /// copy_image, copy_snapshots (1.9): the account copied from, when it
    /// is not the change's `account` (a `[[copy]] to_account`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_account: Option<String>,
    /// share_image, share_snapshot, unshare_image, unshare_snapshot (1.9):
    /// the account given (or no longer given) the right to copy `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_with: Option<String>,
    /// copy_image, copy_snapshots (1.6): the region copied from (`region`
    /// is the destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_region: Option<String>,
    /// copy_image: the image copied; copy_snapshots: the set's snapshots
    /// not copied yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ids: Option<Vec<String>>,
    /// copy_image, copy_snapshots: whether the copy is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// copy_image, copy_snapshots: the KMS key the copy is encrypted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    /// lock_snapshots (1.7), and create_snapshots of a policy with a
    /// governance lock, set on the new snapshots at once: `governance` or
    /// `compliance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_mode: Option<String>,
    /// lock_snapshots: when the lock ends (the backup's creation plus the
    /// policy's lock days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_expires_at: Option<String>,
    /// lock_snapshots: the compliance cool-off, in hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cool_off_hours: Option<u32>,
    /// protect_image (1.8): whether the protection has a 24-hour cooldown
    /// (the image stays protected that long after it is disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<bool>,
    /// Deletions (1.8): where the deleted backup goes, when the region's
    /// Recycle Bin rules were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle_bin: Option<JsonBin>,
    /// create_image, copy_image: the AMI name.
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
    /// Creations: every tag the new backup gets; adoptions: the tags added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Deletions: backups of the same source (volume, for snapshot backups)
    /// before and after the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups_left: Option<JsonBackupsLeft>,
    /// What the change was planned on; `apply PLANFILE` re-checks it.
    pub depends_on: JsonDependsOn,
    pub reason: JsonReason,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonDependsOn {
    /// Creations: the newest good or pending backup of the source when the
    /// plan was made (absent: there was none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_backup_at: Option<String>,
    /// Deletions and adoptions: the backup's state when the plan was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Deletions and adoptions: the backup's tags when the plan was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
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
    /// The account, in plans that span accounts (1.5); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub policy: String,
    pub region: String,
    pub resource_type: String,
    pub source: String,
    pub id: String,
    /// A snapshot set's snapshots (1.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshot_ids: Vec<String>,
    pub reason: JsonReason,
}

/// Where a deletion goes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonBin {
    /// It can be restored from the Recycle Bin.
    pub retained: bool,
    /// The rules that retain it (the image's and its snapshots').
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// How long it stays restorable (the shortest of its resources').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// Why it is deleted for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

fn fate_from_json(b: JsonBin) -> Result<Fate, String> {
    match (b.retained, b.days, b.why) {
        (true, Some(days), None) => Ok(Fate::Bin {
            rules: b.rules,
            days,
        }),
        (false, None, Some(why)) => Ok(Fate::Permanent(why)),
        _ => Err("recycle_bin needs days when retained, and why otherwise".into()),
    }
}

fn fate_to_json(f: &Fate) -> JsonBin {
    match f {
        Fate::Bin { rules, days } => JsonBin {
            retained: true,
            rules: rules.clone(),
            days: Some(*days),
            why: None,
        },
        Fate::Permanent(why) => JsonBin {
            retained: false,
            rules: Vec::new(),
            days: None,
            why: Some(why.clone()),
        },
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonBlocked {
    /// The account, in plans that span accounts (1.5); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub policy: String,
    pub region: String,
    pub resource_type: String,
    pub source: String,
    pub id: String,
    /// The set the snapshot belongs to; the whole set waits (1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_id: Option<String>,
    pub image_ids: Vec<String>,
    /// Locked backups (1.7), and protected images in their cooldown (1.8):
    /// when the lock or the cooldown ends and the deletion can happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    pub reason: JsonReason,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonOrphan {
    /// The account, in plans that span accounts (1.5); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub policy: String,
    pub region: String,
    pub resource_type: String,
    pub id: String,
    pub source: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonCovered {
    /// The account, in plans that span accounts (1.5); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub policy: String,
    pub region: String,
    pub source: String,
    pub resource_type: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSummary {
    pub create: usize,
    pub delete: usize,
    /// Adoptions (1.4); absent when there are none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub adopt: usize,
    /// Backups whose snapshots get locked (1.7); absent when there are none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lock: usize,
    /// Images whose deregistration protection is enabled (1.8); absent
    /// when there are none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub protect: usize,
    /// Images whose deregistration protection is disabled before they are
    /// deregistered (1.8); absent when there are none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unprotect: usize,
    /// Backups shared with another account for a copy, and unshared
    /// (1.9); absent when there are none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub share: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unshare: usize,
    pub blocked: usize,
    pub orphans: usize,
    #[serde(default)]
    pub out_of_scope: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn reason(r: &Reason) -> JsonReason {
    JsonReason {
        code: r.code.as_str().to_string(),
        message: r.message.clone(),
    }
}

fn orphan(o: &Orphan) -> JsonOrphan {
    JsonOrphan {
        account: o.account.clone(),
        policy: o.policy.clone(),
        region: o.region.clone(),
        resource_type: o.resource_type.as_str().to_string(),
        id: o.id.clone(),
        source: o.source.clone(),
        created_at: time(o.created_at),
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
            accounts: plan
                .accounts
                .iter()
                .map(|(id, a)| JsonAccount {
                    id: id.clone(),
                    name: a.name.clone(),
                    inventory_fingerprint: a.inventory_fingerprint.clone(),
                })
                .collect(),
            generated_at: time(plan.generated_at),
            policies_digest: plan.policies_digest.clone(),
            inventory_fingerprint: plan.inventory_fingerprint.clone(),
            changes: plan.changes.iter().map(change).collect(),
            kept: plan
                .kept
                .iter()
                .map(|k| JsonKept {
                    account: k.account.clone(),
                    policy: k.policy.clone(),
                    region: k.region.clone(),
                    resource_type: k.resource_type.as_str().to_string(),
                    source: k.source.clone(),
                    id: k.id.clone(),
                    snapshot_ids: k.snapshot_ids.clone(),
                    reason: reason(&k.reason),
                })
                .collect(),
            blocked: plan
                .blocked
                .iter()
                .map(|b| JsonBlocked {
                    account: b.account.clone(),
                    policy: b.policy.clone(),
                    region: b.region.clone(),
                    resource_type: b.what().0.to_string(),
                    source: b.source.clone(),
                    id: b.snapshot_id.clone(),
                    set_id: b.set_id.clone(),
                    image_ids: b.image_ids.clone(),
                    until: b.until.map(time),
                    reason: reason(&b.reason),
                })
                .collect(),
            orphans: plan.orphans.iter().map(orphan).collect(),
            out_of_scope: plan.out_of_scope.iter().map(orphan).collect(),
            warnings: plan.warnings.clone(),
            covered: plan
                .covered
                .iter()
                .map(|c| JsonCovered {
                    account: c.account.clone(),
                    policy: c.policy.clone(),
                    region: c.region.clone(),
                    source: c.source.clone(),
                    resource_type: c.resource_type.as_str().to_string(),
                })
                .collect(),
            summary: JsonSummary {
                create: summary.create,
                delete: summary.delete,
                adopt: summary.adopt,
                lock: summary.lock,
                protect: summary.protect,
                unprotect: summary.unprotect,
                share: summary.share,
                unshare: summary.unshare,
                blocked: summary.blocked,
                orphans: summary.orphans,
                out_of_scope: summary.out_of_scope,
            },
            checksum: String::new(),
        }
        .sealed()
    }

    /// `sha256:` of the document with `checksum` empty, as compact JSON
    /// with the keys of every object sorted (what serialising a
    /// `serde_json::Value` of it gives). Written item by item into the
    /// hash: a plan of 100,000 backups is never held as a JSON tree.
    fn computed_checksum(&self) -> String {
        let mut hash = HashWriter(Sha256::new());
        self.write_canonical(&mut hash)
            .expect("hashing a plan cannot fail");
        format!("sha256:{:x}", hash.0.finalize())
    }

    /// The checksum's input. The top-level keys are listed here in sorted
    /// order; a test compares the result with the whole-tree form, so a
    /// field added to the document and not here is caught.
    fn write_canonical(&self, w: &mut impl Write) -> std::io::Result<()> {
        fn value(w: &mut impl Write, v: &impl Serialize) -> std::io::Result<()> {
            let v = serde_json::to_value(v).map_err(std::io::Error::other)?;
            serde_json::to_writer(&mut *w, &v).map_err(std::io::Error::other)
        }
        fn list<T: Serialize>(w: &mut impl Write, items: &[T]) -> std::io::Result<()> {
            w.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                value(w, item)?;
            }
            w.write_all(b"]")
        }
        w.write_all(b"{")?;
        if !self.accounts.is_empty() {
            w.write_all(b"\"accounts\":")?;
            list(w, &self.accounts)?;
            w.write_all(b",")?;
        }
        w.write_all(b"\"blocked\":")?;
        list(w, &self.blocked)?;
        w.write_all(b",\"changes\":")?;
        list(w, &self.changes)?;
        w.write_all(b",\"checksum\":\"\",\"covered\":")?;
        list(w, &self.covered)?;
        w.write_all(b",\"format_version\":")?;
        value(w, &self.format_version)?;
        w.write_all(b",\"generated_at\":")?;
        value(w, &self.generated_at)?;
        w.write_all(b",\"inventory_fingerprint\":")?;
        value(w, &self.inventory_fingerprint)?;
        w.write_all(b",\"kept\":")?;
        list(w, &self.kept)?;
        w.write_all(b",\"orphans\":")?;
        list(w, &self.orphans)?;
        w.write_all(b",\"out_of_scope\":")?;
        list(w, &self.out_of_scope)?;
        w.write_all(b",\"policies_digest\":")?;
        value(w, &self.policies_digest)?;
        w.write_all(b",\"summary\":")?;
        value(w, &self.summary)?;
        w.write_all(b",\"tool\":")?;
        value(w, &self.tool)?;
        w.write_all(b",\"warnings\":")?;
        list(w, &self.warnings)?;
        w.write_all(b"}")
    }

    fn sealed(mut self) -> Self {
        self.checksum = self.computed_checksum();
        self
    }

    /// Writes the document, indented, as it is serialised: no copy of a
    /// large plan is held as one string.
    pub fn write_pretty(&self, w: impl Write) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
        serde_json::to_writer_pretty(&mut w, self).map_err(std::io::Error::other)?;
        w.write_all(b"\n")?;
        w.flush()
    }

    pub fn to_string_pretty(&self) -> String {
        let mut text = Vec::new();
        self.write_pretty(&mut text).expect("plan serialises");
        String::from_utf8(text).expect("JSON is UTF-8")
    }

    /// Reads a saved plan: a backupctl plan of a known major version, intact.
    pub fn parse(text: &str) -> Result<JsonPlan, String> {
        #[derive(Deserialize)]
        struct Header {
            format_version: Option<String>,
            tool: Option<serde_json::Value>,
        }
        let not_ours = "it is not a backupctl plan (make one with `backupctl plan --out FILE`)";
        let header: Header = serde_json::from_str(text).map_err(|e| {
            format!(
                "{not_ours}: JSON error at line {}, column {}: {e}",
                e.line(),
                e.column()
            )
        })?;
        let is_ours = header
            .tool
            .as_ref()
            .and_then(|t| t.get("name"))
            .is_some_and(|n| n == "backupctl");
        let Some(version) = header.format_version.filter(|_| is_ours) else {
            return Err(not_ours.to_string());
        };
        let major = FORMAT_VERSION.split('.').next().unwrap_or("");
        if version.split('.').next() != Some(major) {
            return Err(format!(
                "it has format_version {version}; this backupctl reads {major}.x plans; make the plan again with this version"
            ));
        }
        let plan: JsonPlan = serde_json::from_str(text).map_err(|e| {
            format!(
                "it is damaged: line {}, column {}: {e}",
                e.line(),
                e.column()
            )
        })?;
        if plan.checksum != plan.computed_checksum() {
            return Err("its checksum does not match its content: it was edited or damaged after it was made; make the plan again".into());
        }
        Ok(plan)
    }

    /// The internal plan, for rendering and applying.
    pub fn into_plan(self) -> Result<Plan, String> {
        let time = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| format!("bad time {t:?}: {e}"))
        };
        let reason = |r: JsonReason| -> Result<Reason, String> {
            Ok(Reason {
                code: ReasonCode::parse(&r.code)
                    .ok_or_else(|| format!("unknown reason code {:?}", r.code))?,
                message: r.message,
            })
        };
        let resource = |r: &str| match r {
            "image" => Ok(ResourceType::Image),
            "snapshot" => Ok(ResourceType::Snapshot),
            other => Err(format!("unknown resource_type {other:?}")),
        };
        let mut changes = Vec::new();
        for c in self.changes {
            let address = c.address.clone();
            let change = change_from_json(c, &reason, &time)
                .map_err(|e| format!("change {address}: {e}"))?;
            if change.address() != address {
                return Err(format!("change {address} does not match its own fields"));
            }
            changes.push(change);
        }
        let mut kept = Vec::new();
        for k in self.kept {
            kept.push(Kept {
                resource_type: resource(&k.resource_type)?,
                reason: reason(k.reason)?,
                account: k.account,
                policy: k.policy,
                region: k.region,
                source: k.source,
                id: k.id,
                snapshot_ids: k.snapshot_ids,
            });
        }
        let mut blocked = Vec::new();
        for b in self.blocked {
            blocked.push(Blocked {
                reason: reason(b.reason)?,
                account: b.account,
                policy: b.policy,
                region: b.region,
                source: b.source,
                snapshot_id: b.id,
                set_id: b.set_id,
                image_ids: b.image_ids,
                until: b.until.as_deref().map(time).transpose()?,
            });
        }
        let orphan = |o: JsonOrphan| -> Result<Orphan, String> {
            Ok(Orphan {
                resource_type: resource(&o.resource_type)?,
                created_at: time(&o.created_at)?,
                account: o.account,
                region: o.region,
                id: o.id,
                policy: o.policy,
                source: o.source,
            })
        };
        let orphans = self
            .orphans
            .into_iter()
            .map(orphan)
            .collect::<Result<_, _>>()?;
        let out_of_scope = self
            .out_of_scope
            .into_iter()
            .map(orphan)
            .collect::<Result<_, _>>()?;
        let covered = self
            .covered
            .into_iter()
            .map(|c| {
                Ok(Covered {
                    resource_type: resource(&c.resource_type)?,
                    account: c.account,
                    policy: c.policy,
                    region: c.region,
                    source: c.source,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Plan {
            generated_at: time(&self.generated_at)?,
            policies_digest: self.policies_digest,
            inventory_fingerprint: self.inventory_fingerprint,
            changes,
            kept,
            blocked,
            orphans,
            out_of_scope,
            warnings: self.warnings,
            covered,
            accounts: self
                .accounts
                .into_iter()
                .map(|a| {
                    let account = super::PlanAccount {
                        name: a.name,
                        inventory_fingerprint: a.inventory_fingerprint,
                    };
                    (a.id, account)
                })
                .collect(),
        })
    }
}

type TimeParser<'a> = dyn Fn(&str) -> Result<chrono::DateTime<chrono::Utc>, String> + 'a;

fn change_from_json(
    c: JsonChange,
    reason: &dyn Fn(JsonReason) -> Result<Reason, String>,
    time: &TimeParser,
) -> Result<Change, String> {
    let missing = |field: &str| format!("{} needs {field}", c.operation);
    let create = c.actions == ["create"];
    let expected = match c.operation.as_str() {
        "create_image" | "create_snapshots" | "copy_image" | "copy_snapshots" => "create",
        "adopt_image" | "adopt_snapshot" | "lock_snapshots" | "protect_image"
        | "unprotect_image" | "share_image" | "share_snapshot" | "unshare_image"
        | "unshare_snapshot" => "update",
        _ => "delete",
    };
    if c.actions != [expected] {
        return Err(format!(
            "actions {:?} do not fit operation {}",
            c.actions, c.operation
        ));
    }
    let action = match c.operation.as_str() {
        "create_image" => Action::CreateImage {
            instance_id: c.source.clone(),
            name: c.name.clone().ok_or_else(|| missing("name"))?,
            reboot: c.reboot.ok_or_else(|| missing("reboot"))?,
            tags: c.tags.clone().ok_or_else(|| missing("tags"))?,
        },
        "create_snapshots" => Action::CreateSnapshots {
            instance_id: c.source.clone(),
            volume_ids: c.volume_ids.clone().ok_or_else(|| missing("volume_ids"))?,
            exclude_boot_volume: c
                .exclude_boot_volume
                .ok_or_else(|| missing("exclude_boot_volume"))?,
            exclude_data_volume_ids: c
                .exclude_data_volume_ids
                .clone()
                .ok_or_else(|| missing("exclude_data_volume_ids"))?,
            tags: c.tags.clone().ok_or_else(|| missing("tags"))?,
            lock: match (c.lock_mode.as_deref(), c.lock_expires_at.as_deref()) {
                (None, None) => None,
                (Some(mode), Some(until)) => Some(super::NewLock {
                    mode: lock_mode(mode)?,
                    expires_at: time(until)?,
                }),
                _ => return Err(missing("both lock_mode and lock_expires_at")),
            },
        },
        "deregister_image" => Action::DeregisterImage {
            image_id: c.id.clone().ok_or_else(|| missing("id"))?,
            snapshot_ids: c
                .snapshot_ids
                .clone()
                .ok_or_else(|| missing("snapshot_ids"))?,
            kept_snapshot_ids: c
                .kept_snapshot_ids
                .clone()
                .ok_or_else(|| missing("kept_snapshot_ids"))?,
        },
        "delete_snapshot" => Action::DeleteSnapshot {
            snapshot_id: c.id.clone().ok_or_else(|| missing("id"))?,
        },
        "adopt_image" | "adopt_snapshot" => Action::Adopt {
            resource_type: if c.operation == "adopt_image" {
                ResourceType::Image
            } else {
                ResourceType::Snapshot
            },
            id: c.id.clone().ok_or_else(|| missing("id"))?,
            snapshot_ids: c.snapshot_ids.clone().unwrap_or_default(),
            tags: c.tags.clone().ok_or_else(|| missing("tags"))?,
        },
        "delete_snapshot_set" => Action::DeleteSnapshotSet {
            set_id: c.id.clone().ok_or_else(|| missing("id"))?,
            snapshot_ids: c
                .snapshot_ids
                .clone()
                .ok_or_else(|| missing("snapshot_ids"))?,
        },
        "copy_image" | "copy_snapshots" => {
            let image = c.operation == "copy_image";
            Action::Copy {
                resource_type: if image {
                    ResourceType::Image
                } else {
                    ResourceType::Snapshot
                },
                source_region: c
                    .source_region
                    .clone()
                    .ok_or_else(|| missing("source_region"))?,
                source_ids: c.source_ids.clone().ok_or_else(|| missing("source_ids"))?,
                name: if image {
                    Some(c.name.clone().ok_or_else(|| missing("name"))?)
                } else {
                    None
                },
                tags: c.tags.clone().ok_or_else(|| missing("tags"))?,
                encrypted: c.encrypted.ok_or_else(|| missing("encrypted"))?,
                kms_key: c.kms_key.clone(),
                source_account: c.source_account.clone(),
            }
        }
        "share_image" | "share_snapshot" | "unshare_image" | "unshare_snapshot" => Action::Share {
            resource_type: if c.operation.ends_with("_image") {
                ResourceType::Image
            } else {
                ResourceType::Snapshot
            },
            id: c.id.clone().ok_or_else(|| missing("id"))?,
            snapshot_ids: c
                .snapshot_ids
                .clone()
                .ok_or_else(|| missing("snapshot_ids"))?,
            account: c.share_with.clone().ok_or_else(|| missing("share_with"))?,
            add: c.operation.starts_with("share_"),
        },
        "lock_snapshots" => {
            let mode = c.lock_mode.as_deref().ok_or_else(|| missing("lock_mode"))?;
            Action::Lock {
                resource_type: match c.resource_type.as_str() {
                    "image" => ResourceType::Image,
                    _ => ResourceType::Snapshot,
                },
                id: c.id.clone().ok_or_else(|| missing("id"))?,
                snapshot_ids: c
                    .snapshot_ids
                    .clone()
                    .ok_or_else(|| missing("snapshot_ids"))?,
                mode: lock_mode(mode)?,
                expires_at: time(
                    c.lock_expires_at
                        .as_deref()
                        .ok_or_else(|| missing("lock_expires_at"))?,
                )?,
                cool_off_hours: c.cool_off_hours,
            }
        }
        "protect_image" => Action::Protect {
            image_id: c.id.clone().ok_or_else(|| missing("id"))?,
            cooldown: c.cooldown.ok_or_else(|| missing("cooldown"))?,
        },
        "unprotect_image" => Action::Unprotect {
            image_id: c.id.clone().ok_or_else(|| missing("id"))?,
        },
        other => return Err(format!("unknown operation {other:?}")),
    };
    let precondition = if create {
        Precondition::Create {
            newest_backup_at: c
                .depends_on
                .newest_backup_at
                .as_deref()
                .map(time)
                .transpose()?,
        }
    } else {
        Precondition::Delete {
            state: c
                .depends_on
                .state
                .clone()
                .ok_or_else(|| missing("depends_on.state"))?,
            tags: c
                .depends_on
                .tags
                .clone()
                .ok_or_else(|| missing("depends_on.tags"))?,
        }
    };
    Ok(Change {
        account: c.account,
        policy: c.policy,
        region: c.region,
        source: c.source,
        action,
        reason: reason(c.reason)?,
        backups_left: c.backups_left.map(|b| BackupsLeft {
            before: b.before,
            after: b.after,
        }),
        recycle_bin: c.recycle_bin.map(fate_from_json).transpose()?,
        precondition,
    })
}

fn lock_mode(mode: &str) -> Result<crate::policy::LockMode, String> {
    crate::policy::LockMode::parse(mode).ok_or_else(|| format!("unknown lock_mode {mode:?}"))
}

fn change(c: &super::Change) -> JsonChange {
    let mut out = JsonChange {
        address: c.address(),
        actions: vec![c.action.verb().to_string()],
        operation: c.action.operation(),
        account: c.account.clone(),
        policy: c.policy.clone(),
        region: c.region.clone(),
        resource_type: c.action.resource_type().as_str().to_string(),
        source: c.source.clone(),
        id: c.action.target_id().map(str::to_string),
        snapshot_ids: None,
        kept_snapshot_ids: None,
        source_account: None,
        share_with: None,
        source_region: None,
        source_ids: None,
        encrypted: None,
        kms_key: None,
        lock_mode: None,
        lock_expires_at: None,
        cool_off_hours: None,
        cooldown: None,
        recycle_bin: c.recycle_bin.as_ref().map(fate_to_json),
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
        depends_on: match &c.precondition {
            Precondition::Create { newest_backup_at } => JsonDependsOn {
                newest_backup_at: newest_backup_at.map(time),
                state: None,
                tags: None,
            },
            Precondition::Delete { state, tags } => JsonDependsOn {
                newest_backup_at: None,
                state: Some(state.clone()),
                tags: Some(tags.clone()),
            },
        },
        reason: reason(&c.reason),
    };
    match &c.action {
        Action::CreateImage {
            name, reboot, tags, ..
        } => {
            out.name = Some(name.clone());
            out.reboot = Some(*reboot);
            out.tags = Some(tags.clone());
        }
        Action::CreateSnapshots {
            volume_ids,
            exclude_boot_volume,
            exclude_data_volume_ids,
            tags,
            lock,
            ..
        } => {
            out.volume_ids = Some(volume_ids.clone());
            out.exclude_boot_volume = Some(*exclude_boot_volume);
            out.exclude_data_volume_ids = Some(exclude_data_volume_ids.clone());
            out.tags = Some(tags.clone());
            out.lock_mode = lock.map(|l| l.mode.as_str().to_string());
            out.lock_expires_at = lock.map(|l| time(l.expires_at));
        }
        Action::DeregisterImage {
            snapshot_ids,
            kept_snapshot_ids,
            ..
        } => {
            out.snapshot_ids = Some(snapshot_ids.clone());
            out.kept_snapshot_ids = Some(kept_snapshot_ids.clone());
        }
        Action::DeleteSnapshot { .. } => {}
        Action::Copy {
            source_account,
            source_region,
            source_ids,
            name,
            tags,
            encrypted,
            kms_key,
            ..
        } => {
            out.source_account = source_account.clone();
            out.source_region = Some(source_region.clone());
            out.source_ids = Some(source_ids.clone());
            out.name = name.clone();
            out.tags = Some(tags.clone());
            out.encrypted = Some(*encrypted);
            out.kms_key = kms_key.clone();
        }
        Action::DeleteSnapshotSet { snapshot_ids, .. } => {
            out.snapshot_ids = Some(snapshot_ids.clone());
        }
        Action::Lock {
            snapshot_ids,
            mode,
            expires_at,
            cool_off_hours,
            ..
        } => {
            out.snapshot_ids = Some(snapshot_ids.clone());
            out.lock_mode = Some(mode.as_str().to_string());
            out.lock_expires_at = Some(time(*expires_at));
            out.cool_off_hours = *cool_off_hours;
        }
        Action::Adopt {
            snapshot_ids, tags, ..
        } => {
            out.snapshot_ids = (!snapshot_ids.is_empty()).then(|| snapshot_ids.clone());
            out.tags = Some(tags.clone());
        }
        Action::Protect { cooldown, .. } => out.cooldown = Some(*cooldown),
        Action::Unprotect { .. } => {}
        Action::Share {
            snapshot_ids,
            account,
            ..
        } => {
            out.snapshot_ids = Some(snapshot_ids.clone());
            out.share_with = Some(account.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum streamed item by item is the one of the whole JSON
    /// tree (the form plans were sealed with before), for every shipped
    /// plan: saved plans stay valid, and a field added to the document but
    /// not to [`JsonPlan::write_canonical`] fails here.
    #[test]
    fn the_streamed_checksum_is_the_trees() {
        for text in [
            include_str!("../../fixtures/demo/plan.json"),
            include_str!("../../fixtures/calendar/plan.json"),
            include_str!("../../fixtures/migration/plan.json"),
            include_str!("../../fixtures/no-changes/plan.json"),
            include_str!("../../fixtures/selection/plan.json"),
            include_str!("../../fixtures/snapshot-volumes/plan.json"),
        ] {
            let plan = JsonPlan::parse(text).expect("a shipped plan parses");
            let mut tree = serde_json::to_value(&plan).unwrap();
            tree["checksum"] = serde_json::Value::String(String::new());
            let whole = serde_json::to_vec(&tree).unwrap();
            let mut streamed = Vec::new();
            plan.write_canonical(&mut streamed).unwrap();
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(whole).unwrap()
            );
            assert_eq!(plan.checksum, plan.computed_checksum());
        }
    }
}
