//! The plan: what backupctl would do, and why.
//!
//! [`Action`] is a closed set and is the only thing apply executes. Every
//! change also carries a [`Reason`], which is for people: it explains the
//! decision and must never be read by apply. Renderers (`text`, `json`) work
//! from the plan alone, so a saved plan prints exactly like a fresh one.

pub mod diff;
pub mod json;
pub mod markdown;
pub mod text;

use crate::inventory::Tags;
pub use crate::policy::LockMode;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The clock the plan was computed for (`--at`, `BACKUPCTL_NOW` or now).
    pub generated_at: DateTime<Utc>,
    pub policies_digest: String,
    pub inventory_fingerprint: String,
    /// Sorted: by policy, region, creations before deletions, source, id.
    pub changes: Vec<Change>,
    /// Every managed backup that stays, with why.
    pub kept: Vec<Kept>,
    /// Deletions that retention wanted but that cannot happen now.
    pub blocked: Vec<Blocked>,
    /// Backups of policies that are no longer in the set; never deleted.
    pub orphans: Vec<Orphan>,
    /// Backups of a loaded policy in a region it does not target (any
    /// more); never deleted there.
    pub out_of_scope: Vec<Orphan>,
    /// Things an operator should look at that are not errors.
    pub warnings: Vec<String>,
    /// Every source each policy backs up (whether or not a backup is due
    /// now), so that comparing two plans shows sources no longer backed up.
    pub covered: Vec<Covered>,
    /// The accounts the plan spans, by id (empty without an accounts file).
    pub accounts: std::collections::BTreeMap<String, PlanAccount>,
}

/// One account of a plan that spans accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanAccount {
    pub name: String,
    /// The fingerprint of the account's inventory: the plan's is a digest
    /// of these, so plans of shards join into the unsharded plan's.
    pub inventory_fingerprint: String,
}

/// One source that one policy backs up in one region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Covered {
    /// The account it is in, when the plan spans accounts (an accounts
    /// file); `None` for the one account of the standard credential chain.
    pub account: Option<String>,
    pub policy: String,
    pub region: String,
    pub source: String,
    /// `Image` for AMI policies, `Snapshot` for snapshot policies.
    pub resource_type: ResourceType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceType {
    Image,
    Snapshot,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Image => "image",
            ResourceType::Snapshot => "snapshot",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The account it is in, when the plan spans accounts (an accounts
    /// file); `None` for the one account of the standard credential chain.
    pub account: Option<String>,
    pub policy: String,
    pub region: String,
    /// The instance the backup is taken from (or was, for deletions).
    pub source: String,
    pub action: Action,
    /// For people only: apply never reads this.
    pub reason: Reason,
    /// Deletions: the backups of the same source (volume, for snapshot
    /// backups) before and after this plan. Read by the mass-deletion guard.
    pub backups_left: Option<BackupsLeft>,
    /// Deletions: where the deleted backup goes (the Recycle Bin, for how
    /// long, or nowhere), when the region's rules were read.
    pub recycle_bin: Option<crate::inventory::recycle_bin::Fate>,
    /// What the change depends on, as observed: a saved plan is applied only
    /// if all of it still holds.
    pub precondition: Precondition,
}

/// The observed facts a change was planned on.
#[derive(Debug, Clone, PartialEq)]
pub enum Precondition {
    /// The source instance still exists, and no good or pending backup of it
    /// (of the planned volumes, for snapshot sets) is newer than this.
    Create {
        newest_backup_at: Option<DateTime<Utc>>,
    },
    /// The backup still exists, in this state, with exactly these tags.
    Delete { state: String, tags: Tags },
}

/// How many backups of one source exist before and after a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupsLeft {
    pub before: usize,
    pub after: usize,
}

/// What apply does. Nothing else is ever executed.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// CreateImage, tagged (image and its snapshots) in the same call.
    CreateImage {
        instance_id: String,
        name: String,
        reboot: bool,
        tags: Tags,
    },
    /// CreateSnapshots of one instance: one crash-consistent set.
    CreateSnapshots {
        instance_id: String,
        /// The volumes the set will contain.
        volume_ids: Vec<String>,
        exclude_boot_volume: bool,
        exclude_data_volume_ids: Vec<String>,
        tags: Tags,
        /// Locked as soon as the snapshots exist (governance locks only:
        /// a compliance lock waits for the next run's lock change, which
        /// apply sets only with `--allow-compliance-lock`).
        lock: Option<NewLock>,
    },
    /// DeregisterImage and delete `snapshot_ids` with it.
    DeregisterImage {
        image_id: String,
        /// Its snapshots that go with it: tagged with the image's policy and
        /// used by no image that stays.
        snapshot_ids: Vec<String>,
        /// Its other snapshots, which must survive (not owned by the policy,
        /// or shared with an image that stays). When non-empty, apply must
        /// not ask EC2 to delete every associated snapshot.
        kept_snapshot_ids: Vec<String>,
    },
    /// DeleteSnapshot of one snapshot made before snapshot sets.
    DeleteSnapshot { snapshot_id: String },
    /// DeleteSnapshot of every snapshot of one set (one CreateSnapshots
    /// call), which is kept and deleted as a unit.
    DeleteSnapshotSet {
        set_id: String,
        snapshot_ids: Vec<String>,
    },
    /// CreateTags: takes over a backup an old tool made (an image with its
    /// snapshots, or one snapshot) by adding the ownership tags. Nothing
    /// else about it changes.
    Adopt {
        resource_type: ResourceType,
        /// The image or snapshot adopted.
        id: String,
        /// An image's snapshots, tagged with it so that they go with it.
        snapshot_ids: Vec<String>,
        /// The tags added (an existing tag of the same key is overwritten;
        /// none of these keys exists on an adoptable backup).
        tags: Tags,
    },
    /// CopyImage, or CopySnapshot of each snapshot of a set, sent in the
    /// change's region (the destination) from `source_region`.
    Copy {
        resource_type: ResourceType,
        /// A copy from another account (`to_account`): the account the
        /// original is in, which shared it with this one first; `None`
        /// within one account.
        source_account: Option<String>,
        source_region: String,
        /// The image, or the snapshots of the set not copied yet.
        source_ids: Vec<String>,
        /// Image copies: the AMI name in the destination (the original's).
        name: Option<String>,
        /// Written on the copy (and on an image copy's snapshots) by the
        /// copying call. A set's copies also get each their own
        /// `backupctl:copy-of`, naming the snapshot they copy.
        tags: Tags,
        /// Encrypt the copy (with `kms_key`, or EC2's default key).
        encrypted: bool,
        kms_key: Option<String>,
    },
    /// LockSnapshot of each of `snapshot_ids`: the snapshots of one backup
    /// (an image's, a set's, or one snapshot), locked until `expires_at`.
    Lock {
        /// What the backup is: an image, or snapshots.
        resource_type: ResourceType,
        /// The image, snapshot set or snapshot whose snapshots are locked.
        id: String,
        snapshot_ids: Vec<String>,
        mode: LockMode,
        /// The backup's creation plus the policy's lock days: the same for
        /// every run, so locking again never extends a lock.
        expires_at: DateTime<Utc>,
        /// Compliance locks not yet in compliance: hours during which the
        /// lock can still be removed.
        cool_off_hours: Option<u32>,
    },
    /// EnableImageDeregistrationProtection of one image of a policy with
    /// `deregistration_protection`.
    Protect {
        image_id: String,
        /// Also protected for 24 hours after protection is disabled.
        cooldown: bool,
    },
    /// Lets another account copy a backup (`add`), or no longer
    /// (`!add`): ModifyImageAttribute of the image's launch permission and
    /// ModifySnapshotAttribute of each snapshot's create-volume
    /// permission, with the `backupctl:shared-with:<account>` tag that
    /// says so written before a share and removed after an unshare.
    Share {
        resource_type: ResourceType,
        /// The image, snapshot set or snapshot shared.
        id: String,
        /// The image's snapshots, or the set's.
        snapshot_ids: Vec<String>,
        /// The account that copies it.
        account: String,
        add: bool,
    },
    /// DisableImageDeregistrationProtection of one image that retention
    /// wants gone, of a policy that declares protection: deregistered by
    /// the same apply, or, with a cooldown, by the first run after it.
    Unprotect { image_id: String },
}

impl Action {
    /// Makes a new backup or copy.
    pub fn is_create(&self) -> bool {
        matches!(
            self,
            Action::CreateImage { .. } | Action::CreateSnapshots { .. } | Action::Copy { .. }
        )
    }

    /// Removes backups (the guard's business).
    pub fn is_delete(&self) -> bool {
        matches!(
            self,
            Action::DeregisterImage { .. }
                | Action::DeleteSnapshot { .. }
                | Action::DeleteSnapshotSet { .. }
        )
    }

    /// A deletion, or what lets one happen (disabling an image's
    /// deregistration protection): what the mass-deletion guard holds back.
    pub fn is_delete_or_unprotect(&self) -> bool {
        self.is_delete() || matches!(self, Action::Unprotect { .. })
    }

    /// Changes an existing backup in place (an adoption, a lock, its
    /// deregistration protection).
    pub fn is_update(&self) -> bool {
        matches!(
            self,
            Action::Adopt { .. }
                | Action::Lock { .. }
                | Action::Protect { .. }
                | Action::Unprotect { .. }
                | Action::Share { .. }
        )
    }

    /// A change planned over two accounts (a copy from another account, or
    /// a share or unshare for one): planned once every account is
    /// observed, not by one account's plan.
    pub fn is_cross_account(&self) -> bool {
        matches!(
            self,
            Action::Share { .. }
                | Action::Copy {
                    source_account: Some(_),
                    ..
                }
        )
    }

    /// `create`, `update` (adoptions, locks) or `delete`: the
    /// Terraform-style action word of the JSON forms.
    pub fn verb(&self) -> &'static str {
        match self {
            _ if self.is_create() => "create",
            _ if self.is_update() => "update",
            _ => "delete",
        }
    }

    /// The JSON forms' name of the action (`create_image`, `adopt_snapshot`…).
    pub fn operation(&self) -> String {
        match self {
            Action::CreateImage { .. } => "create_image".into(),
            Action::CreateSnapshots { .. } => "create_snapshots".into(),
            Action::DeregisterImage { .. } => "deregister_image".into(),
            Action::DeleteSnapshot { .. } => "delete_snapshot".into(),
            Action::DeleteSnapshotSet { .. } => "delete_snapshot_set".into(),
            Action::Adopt { resource_type, .. } => format!("adopt_{}", resource_type.as_str()),
            Action::Copy {
                resource_type: ResourceType::Image,
                ..
            } => "copy_image".into(),
            Action::Copy { .. } => "copy_snapshots".into(),
            Action::Lock { .. } => "lock_snapshots".into(),
            Action::Protect { .. } => "protect_image".into(),
            Action::Unprotect { .. } => "unprotect_image".into(),
            Action::Share {
                resource_type, add, ..
            } => format!(
                "{}share_{}",
                if *add { "" } else { "un" },
                resource_type.as_str()
            ),
        }
    }

    /// Sorting and apply order: adoptions and locks, creations, deletions.
    pub fn rank(&self) -> u8 {
        match self {
            _ if self.is_update() => 0,
            _ if self.is_create() => 1,
            _ => 2,
        }
    }

    pub fn resource_type(&self) -> ResourceType {
        match self {
            Action::CreateImage { .. }
            | Action::DeregisterImage { .. }
            | Action::Protect { .. }
            | Action::Unprotect { .. } => ResourceType::Image,
            Action::CreateSnapshots { .. }
            | Action::DeleteSnapshot { .. }
            | Action::DeleteSnapshotSet { .. } => ResourceType::Snapshot,
            Action::Adopt { resource_type, .. }
            | Action::Copy { resource_type, .. }
            | Action::Share { resource_type, .. }
            | Action::Lock { resource_type, .. } => *resource_type,
        }
    }

    /// Every image and snapshot id a deletion removes (none for a creation).
    pub fn deleted_ids(&self) -> Vec<&str> {
        match self {
            Action::DeregisterImage {
                image_id,
                snapshot_ids,
                ..
            } => std::iter::once(image_id)
                .chain(snapshot_ids)
                .map(String::as_str)
                .collect(),
            Action::DeleteSnapshot { snapshot_id } => vec![snapshot_id.as_str()],
            Action::DeleteSnapshotSet { snapshot_ids, .. } => {
                snapshot_ids.iter().map(String::as_str).collect()
            }
            Action::CreateImage { .. }
            | Action::CreateSnapshots { .. }
            | Action::Adopt { .. }
            | Action::Copy { .. }
            | Action::Lock { .. }
            | Action::Protect { .. }
            | Action::Unprotect { .. }
            | Action::Share { .. } => Vec::new(),
        }
    }

    /// What a copy copies: the image, or the snapshot set (its
    /// `backupctl:set`).
    pub fn copied(&self) -> Option<&str> {
        match self {
            Action::Copy {
                resource_type: ResourceType::Image,
                source_ids,
                ..
            } => source_ids.first().map(String::as_str),
            Action::Copy { tags, .. } => tags.get(crate::policy::tags::SET),
            _ => None,
        }
    }

    /// The existing resource a deletion removes, an adoption tags, a lock
    /// locks or a protection change changes.
    pub fn target_id(&self) -> Option<&str> {
        match self {
            Action::DeregisterImage { image_id, .. }
            | Action::Protect { image_id, .. }
            | Action::Unprotect { image_id } => Some(image_id),
            Action::DeleteSnapshot { snapshot_id } => Some(snapshot_id),
            Action::DeleteSnapshotSet { set_id, .. } => Some(set_id),
            Action::Adopt { id, .. } | Action::Lock { id, .. } | Action::Share { id, .. } => {
                Some(id)
            }
            _ => None,
        }
    }
}

/// The lock of a new snapshot set, set by the call after CreateSnapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLock {
    pub mode: LockMode,
    /// The plan's clock (the set's `backupctl:created-at`) plus the lock's
    /// days: what the next run expects, so it does not lock again.
    pub expires_at: DateTime<Utc>,
}

/// How a lock reads to people: `governance lock until 2026-12-12T04:00:00Z
/// (cool-off 24 h)`.
pub fn lock_words(
    mode: LockMode,
    expires_at: DateTime<Utc>,
    cool_off_hours: Option<u32>,
) -> String {
    let until = expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cool_off = cool_off_hours.map_or(String::new(), |h| format!(" (cool-off {h} h)"));
    format!("{} lock until {until}{cool_off}", mode.as_str())
}

/// Where a deletion goes, to people: `restorable from the Recycle Bin for
/// 7 days (rule r-1)`, or `deleted for good: …`.
pub fn fate_words(fate: &crate::inventory::recycle_bin::Fate) -> String {
    use crate::inventory::recycle_bin::Fate;
    match fate {
        Fate::Bin { rules, days } => format!(
            "restorable from the Recycle Bin for {days} day{} (rule{} {})",
            if *days == 1 { "" } else { "s" },
            if rules.len() == 1 { "" } else { "s" },
            rules.join(", ")
        ),
        Fate::Permanent(why) => format!("deleted for good: {why}"),
    }
}

/// How deregistration protection reads to people.
pub fn protection_words(cooldown: bool) -> &'static str {
    if cooldown {
        "deregistration protection with a 24-hour cooldown"
    } else {
        "deregistration protection"
    }
}

impl Plan {
    /// A plan for `generated_at` with nothing in it yet.
    pub fn empty(generated_at: DateTime<Utc>) -> Plan {
        Plan {
            generated_at,
            policies_digest: String::new(),
            inventory_fingerprint: String::new(),
            changes: Vec::new(),
            kept: Vec::new(),
            blocked: Vec::new(),
            orphans: Vec::new(),
            out_of_scope: Vec::new(),
            warnings: Vec::new(),
            covered: Vec::new(),
            accounts: Default::default(),
        }
    }
}

impl Change {
    /// Planned over two accounts once every account is observed (see
    /// [`crate::planner::cross_account`]), not by one account's plan: a
    /// copy from another account, a share or unshare, or the deletion of a
    /// copy from another account.
    pub fn is_cross_account(&self) -> bool {
        self.action.is_cross_account()
            || match &self.precondition {
                Precondition::Delete { tags, .. } => tags
                    .get(crate::policy::tags::COPY_OF)
                    .is_some_and(crate::inventory::copied_across_accounts),
                Precondition::Create { .. } => false,
            }
    }

    /// A stable, unique name for the change: `policy/region/source/what`,
    /// where `what` is `new-image`, `new-snapshots`, `copy-of-<id>`, the id
    /// being deleted or
    /// `adopt-<id>`; in a plan that spans accounts, the account id comes
    /// first (`account/policy/...`), so addresses stay unique.
    pub fn address(&self) -> String {
        let adopt;
        let what = match &self.action {
            Action::CreateImage { .. } => "new-image",
            Action::CreateSnapshots { .. } => "new-snapshots",
            Action::DeregisterImage { image_id, .. } => image_id,
            Action::DeleteSnapshot { snapshot_id } => snapshot_id,
            Action::DeleteSnapshotSet { set_id, .. } => set_id,
            Action::Adopt { id, .. } => {
                adopt = format!("adopt-{id}");
                &adopt
            }
            Action::Copy { .. } => {
                adopt = format!("copy-of-{}", self.action.copied().unwrap_or_default());
                &adopt
            }
            Action::Lock { id, .. } => {
                adopt = format!("lock-{id}");
                &adopt
            }
            Action::Protect { image_id, .. } => {
                adopt = format!("protect-{image_id}");
                &adopt
            }
            Action::Unprotect { image_id } => {
                adopt = format!("unprotect-{image_id}");
                &adopt
            }
            Action::Share {
                id, account, add, ..
            } => {
                adopt = format!("{}share-{id}-with-{account}", if *add { "" } else { "un" });
                &adopt
            }
        };
        let account = self
            .account
            .as_ref()
            .map_or(String::new(), |a| format!("{a}/"));
        format!(
            "{account}{}/{}/{}/{what}",
            self.policy, self.region, self.source
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonCode {
    /// No recent enough backup: a new one is due.
    Due,
    /// Older than `max_age`, and a newer good backup exists.
    Expired,
    /// Among the newest `keep_last` good backups.
    KeepLast,
    /// The newest good backup of its source (never deleted).
    NewestGood,
    /// Not good, but no newer good backup exists either.
    NoNewerGood,
    /// Still being made.
    Pending,
    /// Younger than `max_age` (or `max_age = "never"`).
    NotExpired,
    /// A snapshot that a registered image still uses.
    InUse,
    /// Its source cannot be told (no source tag, or a copy's placeholder
    /// VolumeId): kept, and reported.
    UnknownSource,
    /// Expired, but backupViaTag's `Expire` tag keeps it longer.
    OldExpiry,
    /// Made by an old tool for an instance the policy selects: taken over.
    Adopt,
    /// A good backup that a copy rule's destination has no copy of.
    NotCopied,
    /// A backup of a policy with `lock` whose snapshots are not locked (as
    /// long as the policy says).
    NotLocked,
    /// Retention would delete it, but a snapshot lock holds it until a
    /// date.
    Locked,
    /// An image of a policy with `deregistration_protection` that is not
    /// protected as the policy says.
    NotProtected,
    /// Retention would delete it, but its deregistration protection holds
    /// it (until a date, when a cooldown runs).
    Protected,
    /// Retention would delete it, but its policy requires a Recycle Bin
    /// rule that would retain it, and none does (or the rules could not be
    /// read).
    NoRecycleBin,
    /// Shared with another account for a copy that is made (or no longer
    /// wanted): the share is removed.
    ShareNotNeeded,
}

impl ReasonCode {
    const ALL: [ReasonCode; 18] = [
        ReasonCode::Due,
        ReasonCode::Expired,
        ReasonCode::KeepLast,
        ReasonCode::NewestGood,
        ReasonCode::NoNewerGood,
        ReasonCode::Pending,
        ReasonCode::NotExpired,
        ReasonCode::InUse,
        ReasonCode::UnknownSource,
        ReasonCode::OldExpiry,
        ReasonCode::Adopt,
        ReasonCode::NotCopied,
        ReasonCode::NotLocked,
        ReasonCode::Locked,
        ReasonCode::NotProtected,
        ReasonCode::Protected,
        ReasonCode::NoRecycleBin,
        ReasonCode::ShareNotNeeded,
    ];

    pub fn parse(code: &str) -> Option<ReasonCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Due => "due",
            ReasonCode::Expired => "expired",
            ReasonCode::KeepLast => "keep_last",
            ReasonCode::NewestGood => "newest_good",
            ReasonCode::NoNewerGood => "no_newer_good",
            ReasonCode::Pending => "pending",
            ReasonCode::NotExpired => "not_expired",
            ReasonCode::InUse => "in_use",
            ReasonCode::UnknownSource => "unknown_source",
            ReasonCode::OldExpiry => "old_expiry",
            ReasonCode::Adopt => "adopt",
            ReasonCode::NotCopied => "not_copied",
            ReasonCode::NotLocked => "not_locked",
            ReasonCode::Locked => "locked",
            ReasonCode::NotProtected => "not_protected",
            ReasonCode::Protected => "protected",
            ReasonCode::NoRecycleBin => "no_recycle_bin",
            ReasonCode::ShareNotNeeded => "share_not_needed",
        }
    }
}

/// Explains a decision to a person. Never drives apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: ReasonCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// The account it is in, when the plan spans accounts (an accounts
    /// file); `None` for the one account of the standard credential chain.
    pub account: Option<String>,
    pub policy: String,
    pub region: String,
    pub source: String,
    pub resource_type: ResourceType,
    /// The image, snapshot or snapshot set id.
    pub id: String,
    /// A snapshot set's snapshots (empty otherwise).
    pub snapshot_ids: Vec<String>,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    /// The account it is in, when the plan spans accounts (an accounts
    /// file); `None` for the one account of the standard credential chain.
    pub account: Option<String>,
    pub policy: String,
    pub region: String,
    pub source: String,
    /// The snapshot that cannot be deleted; for an image held itself (its
    /// deregistration protection, a required Recycle Bin rule), the image,
    /// which is then also `image_ids`' only entry.
    pub snapshot_id: String,
    /// The set the snapshot belongs to: the whole set waits.
    pub set_id: Option<String>,
    /// Registered images that use the snapshot (for a lock: the image
    /// that cannot be deregistered).
    pub image_ids: Vec<String>,
    /// When it can go: its lock's end, or its protection's cooldown end.
    pub until: Option<DateTime<Utc>>,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    /// The account it is in, when the plan spans accounts (an accounts
    /// file); `None` for the one account of the standard credential chain.
    pub account: Option<String>,
    pub region: String,
    pub resource_type: ResourceType,
    pub id: String,
    /// The policy named by its `backupctl:policy` tag.
    pub policy: String,
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Counts for the summary line and the JSON summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub create: usize,
    pub delete: usize,
    pub adopt: usize,
    /// Backups whose snapshots get locked.
    pub lock: usize,
    /// Images whose deregistration protection is enabled, or disabled.
    pub protect: usize,
    pub unprotect: usize,
    /// Backups shared with another account for a copy, or unshared.
    pub share: usize,
    pub unshare: usize,
    pub blocked: usize,
    pub orphans: usize,
    pub out_of_scope: usize,
}

/// `", N to adopt"`, `", N to lock"`, `", N to protect"` and `", N to
/// unprotect"` after a plan's counts, each only when there are some (plans
/// without them read as they always did).
pub fn updates_suffix(summary: &Summary) -> String {
    let mut out = String::new();
    if summary.adopt > 0 {
        out.push_str(&format!(", {} to adopt", summary.adopt));
    }
    for (n, what) in [
        (summary.lock, "lock"),
        (summary.protect, "protect"),
        (summary.unprotect, "unprotect"),
        (summary.share, "share"),
        (summary.unshare, "unshare"),
    ] {
        if n > 0 {
            out.push_str(&format!(", {n} to {what}"));
        }
    }
    out
}

impl Summary {
    /// The counts of `changes` (nothing blocked, orphaned or out of
    /// scope): a whole plan's, or one group's.
    pub fn of<'c>(changes: impl IntoIterator<Item = &'c Change> + Clone) -> Summary {
        let count =
            |f: fn(&Action) -> bool| changes.clone().into_iter().filter(|c| f(&c.action)).count();
        Summary {
            create: count(Action::is_create),
            delete: count(Action::is_delete),
            adopt: count(|a| matches!(a, Action::Adopt { .. })),
            lock: count(|a| matches!(a, Action::Lock { .. })),
            protect: count(|a| matches!(a, Action::Protect { .. })),
            unprotect: count(|a| matches!(a, Action::Unprotect { .. })),
            share: count(|a| matches!(a, Action::Share { add: true, .. })),
            unshare: count(|a| matches!(a, Action::Share { add: false, .. })),
            ..Summary::default()
        }
    }
}

impl Blocked {
    /// What cannot go, to people: the image, when the image itself is
    /// held (its protection, a required Recycle Bin rule); the snapshot
    /// otherwise.
    pub fn what(&self) -> (&'static str, &str) {
        let kind = if self.image_ids.first() == Some(&self.snapshot_id) {
            "image"
        } else {
            "snapshot"
        };
        (kind, &self.snapshot_id)
    }
}

impl Plan {
    pub fn summary(&self) -> Summary {
        Summary {
            blocked: self.blocked.len(),
            orphans: self.orphans.len(),
            out_of_scope: self.out_of_scope.len(),
            ..Summary::of(&self.changes)
        }
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// How an item's account is named to people: `name (id)`; `None` in a
    /// one-account plan.
    pub fn account_label(&self, account: Option<&String>) -> Option<String> {
        let id = account?;
        let name = self.accounts.get(id).map_or(id.as_str(), |a| &a.name);
        Some(crate::accounts::label(id, name))
    }

    /// Marks every item of this one-account plan as `account`'s, and its
    /// warnings with the account's name, before it joins the plans of the
    /// other accounts (see [`Plan::merge`]).
    pub fn in_account(mut self, id: &str, name: &str) -> Plan {
        let account = PlanAccount {
            name: name.to_string(),
            inventory_fingerprint: std::mem::take(&mut self.inventory_fingerprint),
        };
        self.accounts.insert(id.to_string(), account);
        let id = Some(id.to_string());
        for c in &mut self.changes {
            c.account.clone_from(&id);
        }
        for k in &mut self.kept {
            k.account.clone_from(&id);
        }
        for b in &mut self.blocked {
            b.account.clone_from(&id);
        }
        for o in self.orphans.iter_mut().chain(&mut self.out_of_scope) {
            o.account.clone_from(&id);
        }
        for c in &mut self.covered {
            c.account.clone_from(&id);
        }
        for w in &mut self.warnings {
            *w = format!("account {name}: {w}");
        }
        self
    }

    /// Joins saved plans of disjoint sets of accounts (the shards of one
    /// accounts file, see `backupctl merge`) into one, for the earliest of
    /// their clocks. Refuses plans that are not of accounts, not of the
    /// same policies, or that share an account.
    pub fn join(parts: Vec<Plan>) -> Result<Plan, String> {
        let Some(first) = parts.first() else {
            return Err("there is no plan to join".into());
        };
        let digest = first.policies_digest.clone();
        let at = parts
            .iter()
            .map(|p| p.generated_at)
            .min()
            .unwrap_or(first.generated_at);
        let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
        for (i, p) in parts.iter().enumerate() {
            let nothing = p.changes.is_empty() && p.kept.is_empty() && p.covered.is_empty();
            if p.accounts.is_empty() && nothing {
                // A shard that holds no account (more jobs than accounts).
                continue;
            }
            if p.accounts.is_empty() {
                return Err(format!(
                    "plan {} is not a plan of accounts (made without an accounts file); only the plans of the shards of one accounts file join",
                    i + 1
                ));
            }
            if p.policies_digest != digest {
                return Err(format!(
                    "plan {} was made from other policy files (or another accounts file) than plan 1; make every shard's plan from the same files",
                    i + 1
                ));
            }
            for id in p.accounts.keys() {
                if let Some(other) = seen.insert(id.clone(), i + 1) {
                    return Err(format!(
                        "account {id} is in plan {other} and in plan {}: the plans overlap (the same shard twice, or shards of different counts)",
                        i + 1
                    ));
                }
            }
        }
        Ok(Plan::merge(at, digest, parts))
    }

    /// Joins the plans of several accounts (each made with
    /// [`Plan::in_account`]) into one, for one clock. Each list stays in
    /// its documented order, accounts first. `policies_digest` names the
    /// policies and the accounts they were planned for; the inventory's
    /// fingerprint becomes a digest of the parts'.
    pub fn merge(generated_at: DateTime<Utc>, policies_digest: String, parts: Vec<Plan>) -> Plan {
        let mut out = Plan::empty(generated_at);
        for part in parts {
            out.absorb(part);
        }
        // Each list is in order within each account: a stable sort by
        // account alone puts the whole in order, whatever order the parts
        // (accounts, or shards of accounts) came in.
        out.changes.sort_by(|a, b| a.account.cmp(&b.account));
        out.kept.sort_by(|a, b| a.account.cmp(&b.account));
        out.blocked.sort_by(|a, b| a.account.cmp(&b.account));
        out.orphans.sort_by(|a, b| a.account.cmp(&b.account));
        out.out_of_scope.sort_by(|a, b| a.account.cmp(&b.account));
        out.covered.sort_by(|a, b| a.account.cmp(&b.account));
        // Sorted, so that the joined plans of shards list them as the
        // whole plan does.
        out.warnings.sort();
        out.policies_digest = policies_digest;
        out.inventory_fingerprint = out.accounts_fingerprint();
        out
    }

    /// Appends every item (and account) of `part`.
    fn absorb(&mut self, part: Plan) {
        self.changes.extend(part.changes);
        self.kept.extend(part.kept);
        self.blocked.extend(part.blocked);
        self.orphans.extend(part.orphans);
        self.out_of_scope.extend(part.out_of_scope);
        self.warnings.extend(part.warnings);
        self.covered.extend(part.covered);
        self.accounts.extend(part.accounts);
    }

    /// A digest of the accounts' inventory fingerprints, in id order.
    fn accounts_fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (id, a) in &self.accounts {
            h.update(format!("{id}={};", a.inventory_fingerprint).as_bytes());
        }
        format!("sha256:{:x}", h.finalize())
    }
}
