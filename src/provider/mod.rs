//! The seam between backupctl and the cloud.
//!
//! A provider observes an [`Inventory`] and executes [`Action`]s, speaking
//! only the project's own types. [`aws`] is the only module that imports
//! `aws_sdk_ec2`; [`memory`] is an honest in-memory stand-in with EC2's
//! relevant rules, used by tests and simulations.

pub mod aws;
pub mod memory;

use crate::inventory::Inventory;
use crate::output::Progress;
use crate::plan::Action;
use crate::policy::{InstanceRef, PolicySet, Regions};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// What an executed action produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The image id, or the ids of the snapshot set.
    Created(Vec<String>),
    /// The ids that are gone (an image and its snapshots, or one snapshot).
    Deleted(Vec<String>),
    /// The ids that now carry the ownership tags.
    Adopted(Vec<String>),
    /// The snapshots now locked as planned.
    Locked(Vec<String>),
    /// The image whose deregistration protection is now enabled.
    Protected(String),
    /// The image whose deregistration protection is now disabled.
    Unprotected(String),
    /// The image or snapshots now shared with another account, or no
    /// longer (`share`, `unshare`).
    Shared(Vec<String>),
    Unshared(Vec<String>),
    /// Not made now, for a reason that clears with time (a volume with as
    /// many pending snapshots as EC2 allows): the backup stays due and the
    /// next run makes it.
    Postponed(ProviderError),
}

tokio::task_local! {
    /// The AWS request ids of the calls made while executing one change
    /// (see [`crate::apply`]), for the apply report.
    static REQUEST_IDS: std::sync::Mutex<Vec<String>>;
}

/// Records the request id of a call made for the change being executed;
/// outside [`with_request_ids`], nothing.
pub fn record_request_id(id: &str) {
    let _ = REQUEST_IDS.try_with(|ids| {
        if let Ok(mut ids) = ids.lock() {
            ids.push(id.to_string());
        }
    });
}

/// Runs `work`, returning with its output the request ids recorded by the
/// calls it made (interceptors run on the task that sends the call).
pub async fn with_request_ids<T>(work: impl Future<Output = T>) -> (T, Vec<String>) {
    REQUEST_IDS
        .scope(std::sync::Mutex::new(Vec::new()), async {
            let out = work.await;
            let ids = REQUEST_IDS
                .with(|ids| std::mem::take(&mut *ids.lock().unwrap_or_else(|p| p.into_inner())));
            (out, ids)
        })
        .await
}

/// What a copy from `account` (`[[copy]] to_account`) needs, said after
/// its failure: the original shared (the plan's share, applied first) and
/// encryption the copying account can use.
pub fn cross_account_copy_needs(account: &str, kms_key: Option<&str>) -> String {
    let key = kms_key.unwrap_or("the rule's `kms_key`");
    format!(
        "a copy from account {account} needs the original shared with this account (the plan's share change, applied first) and, if it is encrypted, with a customer managed KMS key whose key policy lets this account use it (backups encrypted with the AWS managed key `aws/ebs` cannot be copied to another account); the copy is encrypted with {key}, a customer managed key of this account that the role backupctl uses here may use"
    )
}

/// EC2's refusal of a copy beyond the copies in flight it allows into a
/// region (20 snapshots, 100 images): the copy is made later, not failed.
pub const COPY_LIMIT: &str = "ResourceLimitExceeded";

/// EC2's refusal to delete a snapshot that a lock holds.
pub const SNAPSHOT_LOCKED: &str = "SnapshotLocked";

/// EC2's refusal to deregister an image whose deregistration protection
/// holds it (the code is not documented; nothing branches on it).
pub const IMAGE_PROTECTED: &str = "OperationNotPermitted";

/// A failure of one call, worded for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    /// The provider's error code, e.g. `InvalidSnapshot.InUse`.
    pub code: String,
    pub message: String,
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// What to observe, derived from the enabled policies: only the regions
/// they target and only what they can select there, so that every Describe
/// call can be filtered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// What `regions = ["*"]` policies need in every enabled region.
    pub every_region: Option<RegionScope>,
    /// What the other policies need, by region.
    pub regions: BTreeMap<String, RegionScope>,
    /// Some policy selects the local instance (resolved through IMDS).
    pub local: bool,
    /// Observe backups in every enabled region, not only targeted ones.
    pub all_regions: bool,
    /// The regions an account may be planned in (its `regions` in the
    /// accounts file): nothing else is asked, and they stand in for the
    /// enabled regions.
    pub only_regions: Option<BTreeSet<String>>,
}

/// What to ask one region for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegionScope {
    /// Instance tag keys: one per policy with tag conditions, enough to
    /// filter on (EC2 ORs the values of one filter; matching is finished
    /// locally).
    pub instance_tag_keys: BTreeSet<String>,
    /// Instances named by policies without tag conditions.
    pub instance_ids: BTreeSet<String>,
    /// Volume tag keys, when a snapshot policy filters volumes by tag.
    pub volume_tag_keys: BTreeSet<String>,
    /// `CreatedBy` values of old tools whose snapshots a policy adopts
    /// (they carry no backupctl tag to filter on).
    pub adopt_snapshots_of: BTreeSet<String>,
    /// Some policy here declares `lock`: snapshot locks are observed
    /// (DescribeLockedSnapshots), which no other region pays for.
    pub locks: bool,
}

impl RegionScope {
    fn merge(&mut self, other: &RegionScope) {
        self.instance_tag_keys
            .extend(other.instance_tag_keys.iter().cloned());
        self.instance_ids.extend(other.instance_ids.iter().cloned());
        self.volume_tag_keys
            .extend(other.volume_tag_keys.iter().cloned());
        self.adopt_snapshots_of
            .extend(other.adopt_snapshots_of.iter().cloned());
        self.locks |= other.locks;
    }
}

impl Scope {
    pub fn of(policies: &PolicySet) -> Scope {
        let mut scope = Scope::default();
        for p in policies.enabled() {
            let mut need = RegionScope::default();
            if p.target.instance_tags.is_empty() {
                for r in p.target.instance_ids.iter().flatten() {
                    if let InstanceRef::Id(id) = r {
                        need.instance_ids.insert(id.clone());
                    }
                }
            } else {
                need.instance_tag_keys
                    .extend(p.target.instance_tags.keys().take(1).cloned());
            }
            need.volume_tag_keys
                .extend(p.target.volume_tags.keys().take(1).cloned());
            if let Some(tool) = p
                .adopt
                .filter(|t| t.kind() == crate::policy::Kind::Snapshot)
            {
                need.adopt_snapshots_of.insert(tool.as_str().to_string());
            }
            need.locks = p.backup.lock.is_some();
            scope.local |= p.target.uses_local();
            // A copy destination is observed for its copies (images and
            // snapshots only: no instance is selected there).
            for rule in p.copies.iter().filter(|r| r.to_account.is_none()) {
                scope.regions.entry(rule.to_region.clone()).or_default();
            }
            match &p.target.regions {
                Regions::All => scope
                    .every_region
                    .get_or_insert_with(Default::default)
                    .merge(&need),
                Regions::List(list) => {
                    for r in list {
                        scope.regions.entry(r.clone()).or_default().merge(&need);
                    }
                }
            }
        }
        scope
    }

    /// The regions to observe, given the enabled ones (asked for only when
    /// [`Scope::needs_region_list`]).
    pub fn regions_to_observe(&self, enabled: &[String]) -> BTreeSet<String> {
        let mut regions: BTreeSet<String> = self.regions.keys().cloned().collect();
        if self.every_region.is_some() || self.all_regions {
            match &self.only_regions {
                Some(only) => regions.extend(only.iter().cloned()),
                None => regions.extend(enabled.iter().cloned()),
            }
        }
        if let Some(only) = &self.only_regions {
            regions.retain(|r| only.contains(r));
        }
        regions
    }

    /// Whether observing needs the account's list of enabled regions.
    pub fn needs_region_list(&self) -> bool {
        (self.every_region.is_some() || self.all_regions) && self.only_regions.is_none()
    }

    /// Everything to ask `region` for.
    pub fn for_region(&self, region: &str) -> RegionScope {
        let mut need = self.regions.get(region).cloned().unwrap_or_default();
        if let Some(every) = &self.every_region {
            need.merge(every);
        }
        need
    }

    /// Makes the local instance part of what its region is asked for.
    pub fn add_local(&mut self, local: &crate::inventory::LocalInstance) {
        self.regions
            .entry(local.region.clone())
            .or_default()
            .instance_ids
            .insert(local.instance_id.clone());
    }
}

/// The result of observing: the inventory of every region that could be
/// observed, and the failure of each one that could not.
#[derive(Debug, Clone)]
pub struct Observation {
    pub inventory: Inventory,
    pub failures: Vec<RegionFailure>,
    /// Instance metadata did not say which instance is the local one: only
    /// the policies that select it are affected.
    pub local_failure: Option<ProviderError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionFailure {
    pub region: String,
    pub error: ProviderError,
}

pub trait Provider {
    /// Observes what `scope` needs, region by region. A region that fails is
    /// reported in [`Observation::failures`]; only a failure that prevents
    /// observing anything (no credentials, no region list) is an `Err`.
    fn observe(
        &self,
        scope: &Scope,
        progress: Arc<dyn Progress>,
    ) -> impl Future<Output = Result<Observation, ProviderError>> + Send;

    /// Executes one action in one region.
    fn execute(
        &self,
        region: &str,
        action: &Action,
    ) -> impl Future<Output = Result<Done, ProviderError>> + Send;

    /// After images were deregistered: deletes whichever of their planned
    /// `snapshot_ids` still exist (EC2 may keep some, or was not asked to
    /// delete them), in as few calls as the provider can. Every one is
    /// tried; the ones that could not be deleted are returned with their
    /// error. `Err` means none could be checked.
    fn sweep(
        &self,
        region: &str,
        snapshot_ids: &[String],
    ) -> impl Future<Output = Result<Vec<(String, ProviderError)>, ProviderError>> + Send;
}
