//! The seam between backupctl and the cloud.
//!
//! A provider observes an [`Inventory`] and executes [`Action`]s, speaking
//! only the project's own types. The AWS implementation (the only code that
//! will import `aws_sdk_ec2`) lives behind this trait; [`memory`] is an
//! honest in-memory stand-in with EC2's relevant rules, used by tests and
//! simulations.

pub mod memory;

use crate::inventory::Inventory;
use crate::plan::Action;
use crate::policy::PolicySet;
use std::fmt;
use std::future::Future;

/// What an executed action produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The image id, or the ids of the snapshot set.
    Created(Vec<String>),
    /// The ids that are gone (an image and its snapshots, or one snapshot).
    Deleted(Vec<String>),
}

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

pub trait Provider {
    /// Observes what the policies need to plan.
    fn observe(
        &self,
        policies: &PolicySet,
    ) -> impl Future<Output = Result<Inventory, ProviderError>> + Send;

    /// Executes one action in one region.
    fn execute(
        &self,
        region: &str,
        action: &Action,
    ) -> impl Future<Output = Result<Done, ProviderError>> + Send;
}
