//! AMI deregistration protection as declared state: a policy with
//! `deregistration_protection` protects every image it keeps, and disables
//! the protection of an image retention wants gone before deregistering it.
//!
//! Protection is only added or strengthened (a cooldown added) on images
//! that stay, never weakened. On an image retention wants gone, backupctl
//! disables only a protection its policy declares: without a cooldown the
//! same apply then deregisters it; with one, the deletion is blocked for
//! the 24 hours EC2 keeps the image, and the first run after that
//! deregisters it. A protection the policy does not declare (someone set
//! it by hand, or the policy no longer asks for it) is left on: the
//! deletion is blocked, saying how to let it go. A value of EC2's that
//! this version cannot read blocks the deletion too.

use super::deletions::display_source;
use super::sets::Unit;
use crate::inventory::{Backup, Image, Protection, PROTECTION_COOLDOWN};
use crate::plan::{Action, Change, Precondition, Reason, ReasonCode};
use crate::policy::{DeregistrationProtection, Policy};
use chrono::{DateTime, SecondsFormat, Utc};

/// When `unit` of `policy` (which declares `wanted`) stays: the change that
/// protects it, if it is available and not protected as the policy says.
pub fn change(
    policy: &Policy,
    wanted: DeregistrationProtection,
    region: &str,
    unit: &Unit,
    now: DateTime<Utc>,
) -> Option<Change> {
    let Unit::Image(image) = unit else {
        return None;
    };
    // Available images only: whether EC2 protects a pending one is not
    // documented, and a refusal would fail every run until it completes.
    if !unit.is_good() {
        return None;
    }
    let cooldown = wanted == DeregistrationProtection::WithCooldown;
    let why = match image.protection(now) {
        Protection::Off => format!("{} is not protected", image.id),
        Protection::CoolingDown(_) => format!(
            "{}'s deregistration protection was disabled (its cooldown runs)",
            image.id
        ),
        Protection::On { cooldown: false } if cooldown => format!(
            "{} is protected without the 24-hour cooldown the policy asks for",
            image.id
        ),
        Protection::On { .. } | Protection::Unknown(_) => return None,
    };
    Some(Change {
        account: None,
        policy: policy.name.clone(),
        region: region.to_string(),
        source: display_source(unit.source().unwrap_or("")),
        action: Action::Protect {
            image_id: image.id.clone(),
            cooldown,
        },
        reason: Reason {
            code: ReasonCode::NotProtected,
            message: format!(
                "{why}; the policy protects its images from deregistration{}",
                if cooldown { " with a cooldown" } else { "" }
            ),
        },
        backups_left: None,
        recycle_bin: None,
        precondition: Precondition::Delete {
            state: unit.state_name(),
            tags: unit.tags().clone(),
        },
    })
}

/// What deregistration protection makes of the deletion of `image`.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Nothing holds it.
    Free,
    /// Its policy's protection, without a cooldown: disabled, then the
    /// image is deregistered by the same apply.
    UnprotectFirst,
    /// Its policy's protection, with a cooldown: disabled now, and the
    /// image can go at the date.
    UnprotectAndWait(DateTime<Utc>),
    /// It stays (until the date, when known), for the reason given.
    Blocked(Option<DateTime<Utc>>, String),
}

/// The gate of `image`'s deletion for `policy` at `now`.
pub fn gate(image: &Image, policy: &Policy, now: DateTime<Utc>) -> Gate {
    let declared = policy.backup.deregistration_protection.is_some();
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    match image.protection(now) {
        Protection::Off => Gate::Free,
        Protection::On { cooldown: false } if declared => Gate::UnprotectFirst,
        Protection::On { cooldown: true } if declared => {
            Gate::UnprotectAndWait(now + PROTECTION_COOLDOWN)
        }
        Protection::On { .. } => Gate::Blocked(
            None,
            format!(
                "it has deregistration protection, which policy {} does not declare, so backupctl leaves it on; disable it to let the image go (aws ec2 disable-image-deregistration-protection --image-id {}), or declare `deregistration_protection` in the policy",
                policy.name, image.id
            ),
        ),
        Protection::CoolingDown(Some(until)) => Gate::Blocked(
            Some(until),
            format!(
                "its deregistration protection was disabled and its cooldown ends {}; the first run after that deletes it",
                at(until)
            ),
        ),
        Protection::CoolingDown(None) => Gate::Blocked(
            None,
            format!(
                "its deregistration protection was disabled and its cooldown runs (EC2 says \"{}\"); the first run after it ends deletes it",
                image.deregistration_protection.as_deref().unwrap_or("")
            ),
        ),
        Protection::Unknown(words) => Gate::Blocked(
            None,
            format!(
                "EC2 reports its deregistration protection as \"{words}\", which this version of backupctl cannot read, so it is not deregistered"
            ),
        ),
    }
}

/// The words of a deletion that waits for the cooldown of a protection
/// this plan disables.
pub fn waits_for_cooldown(until: DateTime<Utc>) -> String {
    format!(
        "its deregistration protection is disabled by this plan, and EC2 keeps the image 24 hours more, until {}; the first run after that deletes it",
        until.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

#[cfg(test)]
#[path = "protection_tests.rs"]
mod tests;
