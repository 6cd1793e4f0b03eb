//! Backup policies: what operators write, validated into types the planner
//! can trust.
//!
//! Parsing happens in two steps. `raw` mirrors the TOML file exactly (with
//! spans, so every error can point at a line and column); `load` turns raw
//! files into [`Policy`] values, checking everything serde cannot express
//! (durations, keys that only apply to one kind, a selector that selects
//! nothing, duplicate names). The planner only ever sees validated policies.

mod duration;
mod load;
mod raw;
mod recovery;

pub use duration::{human_age, parse_duration, parse_max_age, Duration, MaxAge, Unit};
pub(crate) use load::{error_at, toml_message, valid_region};
pub use load::{load_dir, parse_policy, LoadError, PolicyError};
pub use recovery::{CopyRule, DeregistrationProtection, Lock, LockMode};

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Tags every backup carries so that backupctl can recognise its own work.
pub mod tags {
    /// Names the policy that made the backup; deletion requires it.
    pub const POLICY: &str = "backupctl:policy";
    /// The instance the backup was taken from.
    pub const SOURCE: &str = "backupctl:source";
    /// RFC 3339 time of the run that made the backup.
    pub const CREATED_AT: &str = "backupctl:created-at";
    /// Snapshot policies: the set (one CreateSnapshots call) a snapshot
    /// belongs to, unique per policy and region.
    pub const SET: &str = "backupctl:set";
    /// Unique to one execution of one creation, written in the creating
    /// call: finds what a call whose answer was lost made.
    pub const REQUEST: &str = "backupctl:request";
    pub const NAME: &str = "Name";
    /// Instance tag consulted by `reboot = "tag"`, as in backupViaTag.
    pub const REBOOT: &str = "BackupReboot";
    /// Written by adoption: the tool that made the backup. Removing the
    /// `backupctl:` tags gives the backup back to that tool.
    pub const ADOPTED_FROM: &str = "backupctl:adopted-from";
    /// On a copy (and an image copy's snapshots): `<region>/<id>` of the
    /// image or snapshot it copies, written in the copying call. Copies are
    /// found by this tag only (a copied snapshot's VolumeId is a
    /// placeholder, and descriptions are free text).
    pub const COPY_OF: &str = "backupctl:copy-of";
    /// On the copies of a snapshot set: how many snapshots the set has, so
    /// that a copy cut short is never taken for a whole set, even once the
    /// original is gone.
    pub const SET_SIZE: &str = "backupctl:set-size";
    /// Prefix of `backupctl:shared-with:<account>`, on an original shared
    /// with the account its `[[copy]] to_account` names, until the copy is
    /// made: what the next run unshares.
    pub const SHARED_WITH: &str = "backupctl:shared-with:";
    /// The ownership tag of backupViaTag and molibackup.
    pub const CREATED_BY: &str = "CreatedBy";
    /// backupViaTag's expiry, `date`'s output or `never`, fixed at creation.
    pub const EXPIRE: &str = "Expire";
}

/// A tool whose backups a policy takes over (`[adopt] from = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OldTool {
    /// AMIs tagged `CreatedBy=backupViaTag`, with an `Expire` tag.
    BackupViaTag,
    /// Snapshots of single volumes tagged `CreatedBy=molibackup`.
    Molibackup,
}

impl OldTool {
    pub const ALL: [OldTool; 2] = [OldTool::BackupViaTag, OldTool::Molibackup];

    /// Its name, as in its `CreatedBy` tag.
    pub fn as_str(self) -> &'static str {
        match self {
            OldTool::BackupViaTag => "backupViaTag",
            OldTool::Molibackup => "molibackup",
        }
    }

    /// The backup kind the tool made.
    pub fn kind(self) -> Kind {
        match self {
            OldTool::BackupViaTag => Kind::Ami,
            OldTool::Molibackup => Kind::Snapshot,
        }
    }

    /// Any case: `backupviatag` is backupViaTag.
    pub fn parse(text: &str) -> Option<OldTool> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The name its backups carry in `backupctl:policy`: the file's `name`,
    /// after `namespace/` when the set has a namespace.
    pub name: String,
    /// The set's identity, when it has one (see [`PolicySet::namespace`]).
    pub namespace: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// The file it came from, for messages.
    pub file: PathBuf,
    pub target: Target,
    pub backup: Backup,
    pub retention: Retention,
    /// The old tool whose backups of the selected instances this policy
    /// takes over, if any.
    pub adopt: Option<OldTool>,
    /// Copies of its backups to other regions or accounts.
    pub copies: Vec<CopyRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Regions {
    /// `["*"]`: every region enabled for the account (offline: every region
    /// in the inventory).
    All,
    List(Vec<String>),
}

impl Regions {
    pub fn includes(&self, region: &str) -> bool {
        match self {
            Regions::All => true,
            Regions::List(list) => list.iter().any(|r| r == region),
        }
    }
}

/// How an instance tag must match: a value, or `"*"` for "key present".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagMatch {
    Any,
    Exactly(String),
}

impl TagMatch {
    fn from_policy(value: String) -> Self {
        if value == "*" {
            TagMatch::Any
        } else {
            TagMatch::Exactly(value)
        }
    }

    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (_, None) => false,
            (TagMatch::Any, Some(_)) => true,
            (TagMatch::Exactly(want), Some(got)) => want == got,
        }
    }
}

/// Checks that every `(key, match)` pair holds in `tags`.
pub fn tags_match(wanted: &BTreeMap<String, TagMatch>, tags: &crate::inventory::Tags) -> bool {
    wanted.iter().all(|(k, m)| m.matches(tags.get(k)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceRef {
    Id(String),
    /// The instance backupctl runs on, resolved through instance metadata.
    Local,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub regions: Regions,
    /// Ids or names from the accounts file; empty means every account.
    pub accounts: Vec<String>,
    /// Account tags (from the accounts file) that must match; empty means
    /// no condition.
    pub account_tags: BTreeMap<String, TagMatch>,
    /// Empty means "no tag condition".
    pub instance_tags: BTreeMap<String, TagMatch>,
    /// `None` means "no id condition".
    pub instance_ids: Option<Vec<InstanceRef>>,
    /// Snapshot kind only; empty means every attached volume.
    pub volume_tags: BTreeMap<String, TagMatch>,
    pub exclude_boot_volume: bool,
}

impl Target {
    pub fn uses_local(&self) -> bool {
        self.instance_ids
            .as_ref()
            .is_some_and(|ids| ids.contains(&InstanceRef::Local))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CreateImage: one AMI per instance.
    Ami,
    /// CreateSnapshots: one crash-consistent set of EBS snapshots per instance.
    Snapshot,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ami => "ami",
            Kind::Snapshot => "snapshot",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    Never,
    Always,
    /// Only instances tagged `BackupReboot=yes` (or `true`, any case).
    Tag,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    pub kind: Kind,
    pub every: Duration,
    pub reboot: Reboot,
    /// Extra tags for every backup, besides the ownership tags.
    pub tags: BTreeMap<String, String>,
    /// Locked on creation (snapshots, and an AMI's snapshots).
    pub lock: Option<Lock>,
    pub deregistration_protection: Option<DeregistrationProtection>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    pub max_age: MaxAge,
    pub keep_last: u32,
    /// Deletions must go to a Recycle Bin rule, or they are blocked.
    pub require_recycle_bin: bool,
}

/// Every policy in a directory, sorted by name, with a digest of the files so
/// a saved plan can tell whether the policies changed since it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
    /// `sha256:<hex>` over the file names and contents, in name order.
    pub digest: String,
}

impl PolicySet {
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The set's namespace: every policy of a directory has the same one
    /// (or none, the default set of every backup made before namespaces).
    pub fn namespace(&self) -> Option<&str> {
        self.policies.first().and_then(|p| p.namespace.as_deref())
    }

    /// Whether a `backupctl:policy` tag value belongs to this set's
    /// namespace (loaded policy or not): another set's backups are none of
    /// this set's business, not even as orphans.
    pub fn in_namespace(&self, owner: &str) -> bool {
        owner.split_once('/').map(|(ns, _)| ns) == self.namespace()
    }

    pub fn enabled(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter().filter(|p| p.enabled)
    }
}
