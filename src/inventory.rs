//! What was observed: instances, volumes, images and snapshots, by region.
//!
//! The inventory is the planner's only view of the world. It comes from AWS
//! (through a provider) or from a JSON file (`plan --state`), and it is
//! itself a documented, versioned file format, so an observation can be saved
//! once and planned against many times (CI, audits, tests).

use crate::policy::tags;
use chrono::DurationRound;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// The version of the inventory file format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes written into a SHA-256 hash: fingerprints and plan checksums are
/// hashes of JSON serialised straight into it, never held as a string.
pub(crate) struct HashWriter(pub Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[path = "inventory/recycle_bin.rs"]
pub mod recycle_bin;
#[path = "inventory/tags.rs"]
mod tag_set;
pub use tag_set::Tags;

/// The `backupctl:copy-of` of a copy of `id` from `region` (of `account`,
/// when the copy is made in another account).
pub fn copy_of(account: Option<&str>, region: &str, id: &str) -> String {
    match account {
        Some(account) => format!("{account}/{region}/{id}"),
        None => format!("{region}/{id}"),
    }
}

/// Whether a `backupctl:copy-of` names another account
/// (`<account>/<region>/<id>`, not `<region>/<id>`).
pub fn copied_across_accounts(of: &str) -> bool {
    of.split('/').count() == 3
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub format_version: u32,
    /// When the observation was made (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
    /// The instance backupctl runs on, for `instance_ids = ["local"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_instance: Option<LocalInstance>,
    /// Every observed region; for `regions = ["*"]` these are the regions.
    pub regions: BTreeMap<String, RegionInventory>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalInstance {
    pub region: String,
    pub instance_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegionInventory {
    pub instances: Vec<Instance>,
    pub volumes: Vec<Volume>,
    /// Images owned by the account.
    pub images: Vec<Image>,
    /// Snapshots owned by the account.
    pub snapshots: Vec<Snapshot>,
    /// Its Recycle Bin rules (`None`: not observed, as in inventories
    /// saved before they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recycle_bin: Option<recycle_bin::RecycleBin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub id: String,
    pub state: InstanceState,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub volumes: Vec<AttachedVolume>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachedVolume {
    pub volume_id: String,
    pub device: String,
    /// The boot (root device) volume.
    #[serde(default)]
    pub root: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub id: String,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub state: ImageState,
    /// EC2's CreationDate.
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub tags: Tags,
    /// Snapshots in the image's block device mappings.
    #[serde(default)]
    pub snapshot_ids: Vec<String>,
    /// EC2's DeregistrationProtection, word for word, when it is not
    /// `disabled` (see [`Image::protection`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistration_protection: Option<String>,
}

/// What an image's deregistration protection means for retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// It can be deregistered.
    Off,
    /// It cannot be deregistered until protection is disabled; with a
    /// cooldown, not until 24 hours after that either.
    On { cooldown: bool },
    /// Protection was disabled with a cooldown that ends then (`None`:
    /// EC2 gave a time this version cannot read).
    CoolingDown(Option<DateTime<Utc>>),
    /// A value this version does not know: treated as protected, never
    /// disabled.
    Unknown(String),
}

/// How long an image stays protected after its protection with a
/// cooldown is disabled.
pub const PROTECTION_COOLDOWN: chrono::TimeDelta = chrono::TimeDelta::hours(24);

impl Image {
    /// Its protection at `now`. EC2 documents the field as a string only;
    /// the values read here are those EC2 answers: `disabled`,
    /// `enabled-without-cooldown` (or `enabled`), `enabled-with-cooldown`,
    /// and `disabled after <time>` while a cooldown runs.
    pub fn protection(&self, now: DateTime<Utc>) -> Protection {
        let Some(words) = self.deregistration_protection.as_deref() else {
            return Protection::Off;
        };
        match words {
            "disabled" | "" => Protection::Off,
            "enabled" | "enabled-without-cooldown" => Protection::On { cooldown: false },
            "enabled-with-cooldown" => Protection::On { cooldown: true },
            _ => match words.strip_prefix("disabled after") {
                Some(time) => match DateTime::parse_from_rfc3339(time.trim()) {
                    Ok(t) => {
                        let t = t.with_timezone(&Utc);
                        if t <= now {
                            return Protection::Off;
                        }
                        // Plans show whole seconds: rounded up, never shown
                        // ending before it does.
                        let shown = t.duration_round_up(TimeDelta::seconds(1));
                        Protection::CoolingDown(Some(shown.unwrap_or(t)))
                    }
                    Err(_) => Protection::CoolingDown(None),
                },
                None => Protection::Unknown(words.to_string()),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub id: String,
    pub volume_id: String,
    pub state: SnapshotState,
    /// EC2's StartTime.
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub tags: Tags,
    /// Its lock, when it has one (observed only in regions where some
    /// policy declares `lock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<SnapshotLock>,
}

/// A snapshot's lock, as DescribeLockedSnapshots reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotLock {
    /// `governance`, `compliance-cooloff`, `compliance` or `expired`.
    pub state: String,
    /// When the lock ends (EC2's LockExpiresOn).
    pub expires_at: DateTime<Utc>,
}

impl SnapshotLock {
    /// The snapshot cannot be deleted at `now`.
    pub fn holds(&self, now: DateTime<Utc>) -> bool {
        self.state != "expired" && self.expires_at > now
    }

    /// A compliance lock (in its cool-off or not): never weakened to a
    /// governance one.
    pub fn is_compliance(&self) -> bool {
        self.state.starts_with("compliance")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Stopping,
    Stopped,
    Terminated,
}

impl InstanceState {
    /// Terminated and shutting-down instances are never backed up again.
    pub fn is_gone(self) -> bool {
        matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageState {
    Pending,
    Available,
    Invalid,
    Deregistered,
    Transient,
    Failed,
    Error,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotState {
    Pending,
    Completed,
    Error,
    Recoverable,
    Recovering,
}

/// How long after its start a run may still be creating backups: the most
/// by which a `backupctl:created-at` tag may predate EC2's own time and still
/// count for expiry (see [`Backup::aged_from`]).
pub const RUN_LENGTH_LIMIT_MINUTES: i64 = 60;

/// Made and managed by AWS Backup or Data Lifecycle Manager, which tag
/// what they make with `aws:backup:*` or `aws:dlm:*` keys (only AWS can
/// write `aws:` tags): never backupctl's to delete.
pub fn managed_by_aws(tags: &Tags) -> bool {
    tags.keys()
        .any(|k| k.starts_with("aws:backup:") || k.starts_with("aws:dlm:"))
}

/// The `backupctl:created-at` tag of `tags`, when present and readable.
pub fn created_at_tag(tags: &Tags) -> Option<DateTime<Utc>> {
    tags.get(tags::CREATED_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The parts of an image or snapshot that ownership and retention look at.
pub trait Backup {
    fn id(&self) -> &str;
    fn tags(&self) -> &Tags;
    fn native_time(&self) -> DateTime<Utc>;
    /// Usable for restore: counts for `keep_last` and "newer good backup".
    fn is_good(&self) -> bool;
    /// Still being made: makes a new backup not due, is never deleted.
    fn is_pending(&self) -> bool;
    /// The state as EC2 names it (`available`, `completed`…).
    fn state_name(&self) -> String;

    fn policy(&self) -> Option<&str> {
        self.tags().get(tags::POLICY)
    }

    fn source(&self) -> Option<&str> {
        self.tags().get(tags::SOURCE)
    }

    /// The `backupctl:created-at` tag, when present and readable: the clock
    /// of the run that made the backup, read when that run started.
    fn tagged_time(&self) -> Option<DateTime<Utc>> {
        created_at_tag(self.tags())
    }

    /// When the backup was taken, for deciding whether the next one is due:
    /// the earlier of EC2's time and the tag. The tag is the run's clock at
    /// its start, a little before EC2 records the backup, so a scheduler
    /// that runs once per `every` finds it a whole `every` old; and a tag
    /// from a fast clock (or a forgotten `BACKUPCTL_NOW`) can never delay
    /// the next backup.
    fn taken_at(&self) -> DateTime<Utc> {
        let native = self.native_time();
        self.tagged_time()
            .map_or(native, |tagged| tagged.min(native))
    }

    /// The time a backup's age is counted from for expiry. Normally the
    /// tag: the start of the run that made it, so that the backup of
    /// yesterday's daily run is a whole day old at today's run although EC2
    /// recorded it minutes after that run started (counting from EC2's time
    /// would keep every backup one run longer than `max_age` says). The tag
    /// may make a backup older than EC2's time by at most
    /// [`RUN_LENGTH_LIMIT_MINUTES`], so a slow clock cannot expire backups
    /// early; a tag later than EC2's time (a fast clock) makes it younger,
    /// kept longer, never older.
    fn aged_from(&self) -> DateTime<Utc> {
        let native = self.native_time();
        let Some(tagged) = self.tagged_time() else {
            return native;
        };
        let earliest = native
            .checked_sub_signed(TimeDelta::minutes(RUN_LENGTH_LIMIT_MINUTES))
            .unwrap_or(native);
        tagged.max(earliest)
    }

    /// What a copy copies (`backupctl:copy-of`: `<region>/<id>`); `None`
    /// for an original backup.
    fn copy_of(&self) -> Option<&str> {
        self.tags().get(tags::COPY_OF)
    }

    /// The set a snapshot belongs to (`backupctl:set`), if any.
    fn set_id(&self) -> Option<&str> {
        self.tags().get(tags::SET)
    }
}

impl Backup for Image {
    fn id(&self) -> &str {
        &self.id
    }
    fn tags(&self) -> &Tags {
        &self.tags
    }
    fn native_time(&self) -> DateTime<Utc> {
        self.created_at
    }
    fn is_good(&self) -> bool {
        self.state == ImageState::Available
    }
    fn is_pending(&self) -> bool {
        self.state == ImageState::Pending
    }
    fn state_name(&self) -> String {
        serde_name(&self.state)
    }
}

impl Backup for Snapshot {
    fn id(&self) -> &str {
        &self.id
    }
    fn tags(&self) -> &Tags {
        &self.tags
    }
    fn native_time(&self) -> DateTime<Utc> {
        self.started_at
    }
    fn is_good(&self) -> bool {
        self.state == SnapshotState::Completed
    }
    fn is_pending(&self) -> bool {
        self.state == SnapshotState::Pending
    }
    fn state_name(&self) -> String {
        serde_name(&self.state)
    }
}

/// When the newest good-or-pending backup among `backups` was taken: what
/// decides whether a new backup is due (the planner) and whether someone
/// else already made it (a saved plan's re-check).
pub fn newest_live<'a, B: Backup + 'a>(
    backups: impl IntoIterator<Item = &'a B>,
) -> Option<DateTime<Utc>> {
    backups
        .into_iter()
        .filter(|b| b.is_good() || b.is_pending())
        .map(|b| b.taken_at())
        .max()
}

/// The VolumeId EC2 reports for snapshots made by CopySnapshot (and some
/// other paths): it names no volume, so it never identifies a source.
pub const PLACEHOLDER_VOLUME: &str = "vol-ffffffff";

/// The name serde gives a unit enum variant (the file format's name).
fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Why an inventory file could not be used.
#[derive(Debug)]
pub struct InventoryError(pub String);

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RegionInventory {
    /// Every image and snapshot, as backups.
    pub fn backups(&self) -> impl Iterator<Item = &dyn Backup> + '_ {
        let images = self.images.iter().map(|i| i as &dyn Backup);
        images.chain(self.snapshots.iter().map(|s| s as &dyn Backup))
    }
}

impl Inventory {
    pub fn empty() -> Self {
        Inventory {
            format_version: FORMAT_VERSION,
            observed_at: None,
            local_instance: None,
            regions: BTreeMap::new(),
        }
    }

    /// Parses an inventory file, checking its version first so that a file
    /// from a newer backupctl gets a version message, not a field error.
    pub fn from_json(text: &str) -> Result<Self, InventoryError> {
        Inventory::read(|| Ok(text.as_bytes()))
    }

    /// Reads an inventory from what `open` opens (twice: the version is
    /// read first), as it is parsed: a 50 MB state file is never held
    /// whole beside the inventory made of it.
    pub fn read<R: std::io::Read>(
        open: impl Fn() -> std::io::Result<R>,
    ) -> Result<Self, InventoryError> {
        #[derive(Deserialize)]
        struct Version {
            format_version: Option<serde_json::Value>,
        }
        let reader = |open: &dyn Fn() -> std::io::Result<R>| {
            open()
                .map(|r| std::io::BufReader::with_capacity(1 << 16, r))
                .map_err(|e| InventoryError(e.to_string()))
        };
        let version: Version = serde_json::from_reader(reader(&open)?).map_err(|e| {
            InventoryError(format!(
                "it is not a backupctl inventory (JSON error at line {}, column {}: {e}); create one with `backupctl state pull` or see the README's inventory format",
                e.line(),
                e.column()
            ))
        })?;
        match version.format_version {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(FORMAT_VERSION)) => {}
            Some(v) => {
                return Err(InventoryError(format!(
                    "it has format_version {v}, but this backupctl reads version {FORMAT_VERSION}; use a matching backupctl or pull the state again"
                )))
            }
            None => {
                return Err(InventoryError(
                    "it has no format_version, so it is not a backupctl inventory; see the README's inventory format".into(),
                ))
            }
        }
        let mut inv: Inventory = serde_json::from_reader(reader(&open)?).map_err(|e| {
            InventoryError(format!(
                "line {}, column {}: {e}; see the README's inventory format",
                e.line(),
                e.column()
            ))
        })?;
        inv.normalize();
        Ok(inv)
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("inventory serialises");
        text.push('\n');
        text
    }

    /// Sorts every list by id so that equal observations compare, print and
    /// fingerprint identically whatever order AWS returned them in.
    pub fn normalize(&mut self) {
        for region in self.regions.values_mut() {
            region.instances.sort_by(|a, b| a.id.cmp(&b.id));
            region.volumes.sort_by(|a, b| a.id.cmp(&b.id));
            region.images.sort_by(|a, b| a.id.cmp(&b.id));
            region.snapshots.sort_by(|a, b| a.id.cmp(&b.id));
        }
    }

    /// `sha256:<hex>` of the normalised observation, excluding when it was
    /// made: two observations of the same state have the same fingerprint.
    ///
    /// Hashes exactly the JSON of a normalised copy without `observed_at`,
    /// but streams it from sorted references: copying and serialising a
    /// 160,000-backup inventory first took longer than planning it.
    pub fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct View<'a> {
            format_version: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            local_instance: Option<&'a LocalInstance>,
            regions: BTreeMap<&'a str, RegionView<'a>>,
        }
        #[derive(Serialize)]
        struct RegionView<'a> {
            instances: Vec<&'a Instance>,
            volumes: Vec<&'a Volume>,
            images: Vec<&'a Image>,
            snapshots: Vec<&'a Snapshot>,
            #[serde(skip_serializing_if = "Option::is_none")]
            recycle_bin: Option<&'a recycle_bin::RecycleBin>,
        }
        fn sorted<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<&T> {
            let mut refs: Vec<&T> = items.iter().collect();
            refs.sort_by(|a, b| id(a).cmp(id(b)));
            refs
        }
        let view = View {
            format_version: self.format_version,
            local_instance: self.local_instance.as_ref(),
            regions: self
                .regions
                .iter()
                .map(|(name, r)| {
                    let region = RegionView {
                        instances: sorted(&r.instances, |i| &i.id),
                        volumes: sorted(&r.volumes, |v| &v.id),
                        images: sorted(&r.images, |i| &i.id),
                        snapshots: sorted(&r.snapshots, |s| &s.id),
                        recycle_bin: r.recycle_bin.as_ref(),
                    };
                    (name.as_str(), region)
                })
                .collect(),
        };
        let mut hasher = HashWriter(Sha256::new());
        serde_json::to_writer(std::io::BufWriter::new(&mut hasher), &view)
            .expect("inventory serialises");
        format!("sha256:{:x}", hasher.0.finalize())
    }
}

/// Builders shared by the unit tests of the modules that plan.
#[cfg(test)]
pub mod testing {
    use super::{Image, ImageState, Tags};
    use crate::policy::tags;
    use chrono::{DateTime, Utc};

    /// The ownership tags backupctl writes: policy, source, created-at.
    pub fn owned_tags(policy: &str, source: &str, at: DateTime<Utc>) -> Tags {
        [
            (tags::POLICY, policy.to_string()),
            (tags::SOURCE, source.to_string()),
            (tags::CREATED_AT, at.to_rfc3339()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// An available image of `policy` taken from `source` at `at`.
    pub fn owned_image(id: &str, policy: &str, source: &str, at: DateTime<Utc>) -> Image {
        Image {
            id: id.into(),
            name: id.into(),
            state: ImageState::Available,
            created_at: at,
            tags: owned_tags(policy, source, at),
            snapshot_ids: vec![],
            deregistration_protection: None,
        }
    }
}
