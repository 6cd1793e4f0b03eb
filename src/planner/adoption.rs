//! Taking over the backups of the tools backupctl replaces.
//!
//! A policy with `[adopt] from = "backupViaTag"` (or `"molibackup"`) claims
//! the backups that tool made of the instances the policy selects now in
//! this region: backupViaTag's AMIs (`CreatedBy=backupViaTag`; the instance
//! is in the AMI's name, `<YYYYmmddHHMMSS> <instance-id>`, or its `Name`
//! tag, `... Backup of <instance-id>`), molibackup's snapshots
//! (`CreatedBy=molibackup`) of the volumes the policy selects. Nothing else
//! is claimed: not a backup that already carries a `backupctl:policy` tag,
//! nor one AWS Backup or DLM manages, nor one two adopting policies both
//! claim (reported instead: narrow one policy's selection).
//!
//! The planner then treats a claimed backup as the policy's own (so a
//! migration neither doubles nor skips a backup: a fresh backupViaTag AMI
//! makes the next one not due), and the plan adopts it: CreateTags adds the
//! ownership tags (an AMI's snapshots get them too, so that they go with
//! it). An adopted backup that retention deletes is adopted and deleted by
//! the same apply, adoption first. backupViaTag's `Expire` tag stays a floor
//! (see [`old_expiry`]).

use super::selection;
use crate::inventory::{
    managed_by_aws, Backup, Image, ImageState, RegionInventory, Snapshot, SnapshotState, Tags,
    PLACEHOLDER_VOLUME,
};
use crate::plan::{Action, Change, Precondition, Reason, ReasonCode, ResourceType};
use crate::policy::{tags, OldTool, Policy, PolicySet};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeDelta, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the adopting policies claim in one region.
#[derive(Default)]
pub struct Adopted {
    /// The claimed images, as they will be once adopted.
    pub images: Vec<Image>,
    /// The claimed snapshots (molibackup's, and those of claimed images),
    /// as they will be once adopted.
    pub snapshots: Vec<Snapshot>,
    /// One adoption per claimed backup.
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

/// A backup some adopting policy claims.
enum Claimed<'a> {
    Image(&'a Image),
    Snapshot(&'a Snapshot),
}

struct Claim<'a> {
    policy: &'a Policy,
    tool: OldTool,
    source: &'a str,
}

/// The backups the enabled policies that adopt claim in `region`.
pub fn claims(
    policies: &PolicySet,
    region: &str,
    inv: &RegionInventory,
    local: Option<&str>,
) -> Adopted {
    let mut out = Adopted::default();
    let adopting: Vec<(&Policy, OldTool)> = policies
        .enabled()
        .filter(|p| p.target.regions.includes(region))
        .filter_map(|p| p.adopt.map(|t| (p, t)))
        .collect();
    if adopting.is_empty() {
        return out;
    }
    let volume_tags: HashMap<&str, &Tags> = inv
        .volumes
        .iter()
        .map(|v| (v.id.as_str(), &v.tags))
        .collect();
    // Backup id -> the backup, and every policy that claims it.
    let mut claimed: BTreeMap<&str, (Claimed, Vec<Claim>)> = BTreeMap::new();
    for (policy, tool) in adopting {
        let selected = selection::select(policy, &inv.instances, &volume_tags, local);
        match tool {
            OldTool::BackupViaTag => {
                let instances: HashSet<&str> =
                    selected.iter().map(|s| s.instance.id.as_str()).collect();
                let images = inv.images.iter().filter(|i| adoptable(&i.tags, tool));
                for image in images.filter(|i| i.state != ImageState::Deregistered) {
                    let Some(source) = backupviatag_source(image).and_then(|s| instances.get(s))
                    else {
                        continue;
                    };
                    let entry = claimed.entry(&image.id);
                    let (_, claims) = entry.or_insert((Claimed::Image(image), Vec::new()));
                    claims.push(Claim {
                        policy,
                        tool,
                        source,
                    });
                }
            }
            OldTool::Molibackup => {
                let owners: HashMap<&str, &str> = selected
                    .iter()
                    .flat_map(|s| s.volumes.iter().map(|v| (*v, s.instance.id.as_str())))
                    .collect();
                for snapshot in inv.snapshots.iter().filter(|s| adoptable(&s.tags, tool)) {
                    let Some(source) = owners.get(snapshot.volume_id.as_str()) else {
                        continue;
                    };
                    let entry = claimed.entry(&snapshot.id);
                    let (_, claims) = entry.or_insert((Claimed::Snapshot(snapshot), Vec::new()));
                    claims.push(Claim {
                        policy,
                        tool,
                        source,
                    });
                }
            }
        }
    }
    let snapshots: HashMap<&str, &Snapshot> =
        inv.snapshots.iter().map(|s| (s.id.as_str(), s)).collect();
    for (id, (backup, claims)) in claimed {
        if claims.len() > 1 {
            let names: Vec<&str> = claims.iter().map(|c| c.policy.name.as_str()).collect();
            out.warnings.push(format!(
                "{id} in {region} ({} backup of {}) is claimed by policies {}: adopted by none; narrow the selection of all but one",
                claims[0].tool.as_str(),
                claims[0].source,
                names.join(", ")
            ));
            continue;
        }
        match backup {
            Claimed::Image(image) => out.adopt_image(region, &claims[0], image, &snapshots),
            Claimed::Snapshot(snapshot) => out.adopt_snapshot(region, &claims[0], snapshot),
        }
    }
    out
}

/// Made by `tool`, owned by no policy, not AWS's.
fn adoptable(t: &Tags, tool: OldTool) -> bool {
    t.get(tags::CREATED_BY) == Some(tool.as_str())
        && t.get(tags::POLICY).is_none()
        && !managed_by_aws(t)
}

/// The instance a backupViaTag AMI was made of: the last word of its name
/// (`20260101040000 i-0abc…`), or of its `Name` tag (`… Backup of i-0abc…`).
fn backupviatag_source(image: &Image) -> Option<&str> {
    fn instance(text: &str) -> Option<&str> {
        text.split_whitespace()
            .last()
            .filter(|w| w.starts_with("i-") && w.len() > 2)
    }
    instance(&image.name).or_else(|| image.tags.get(tags::NAME).and_then(instance))
}

impl Adopted {
    fn added_tags(claim: &Claim, created: DateTime<Utc>) -> Tags {
        let mut t = Tags::default();
        t.insert(tags::POLICY, claim.policy.name.as_str());
        t.insert(tags::SOURCE, claim.source);
        t.insert(
            tags::CREATED_AT,
            created.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        t.insert(tags::ADOPTED_FROM, claim.tool.as_str());
        t
    }

    fn adopt_image(
        &mut self,
        region: &str,
        claim: &Claim,
        image: &Image,
        snapshots: &HashMap<&str, &Snapshot>,
    ) {
        let added = Self::added_tags(claim, image.created_at);
        let mut snapshot_ids = Vec::new();
        for sid in &image.snapshot_ids {
            // Unobserved (untagged) snapshots are the image's own; an
            // observed one that another policy owns is left alone.
            let mut snapshot = match snapshots.get(sid.as_str()) {
                Some(s) if s.tags.get(tags::POLICY).is_some() => continue,
                Some(s) => (*s).clone(),
                None => Snapshot {
                    id: sid.clone(),
                    volume_id: PLACEHOLDER_VOLUME.to_string(),
                    state: SnapshotState::Completed,
                    started_at: image.created_at,
                    tags: Tags::default(),
                    lock: None,
                },
            };
            snapshot.tags.extend_from(&added);
            self.snapshots.push(snapshot);
            snapshot_ids.push(sid.clone());
        }
        let expire = image
            .tags
            .get(tags::EXPIRE)
            .map_or(String::new(), |e| format!("; its Expire tag: {e}"));
        let message = format!(
            "adopt: made by backupViaTag of {}, selected by this policy{expire}",
            claim.source
        );
        self.changes.push(adoption(
            region,
            claim,
            image,
            ResourceType::Image,
            snapshot_ids,
            added.clone(),
            message,
        ));
        let mut adopted = image.clone();
        adopted.tags.extend_from(&added);
        self.images.push(adopted);
    }

    fn adopt_snapshot(&mut self, region: &str, claim: &Claim, snapshot: &Snapshot) {
        let added = Self::added_tags(claim, snapshot.started_at);
        let message = format!(
            "adopt: made by molibackup of {} on {}, selected by this policy",
            snapshot.volume_id, claim.source
        );
        self.changes.push(adoption(
            region,
            claim,
            snapshot,
            ResourceType::Snapshot,
            Vec::new(),
            added.clone(),
            message,
        ));
        let mut adopted = snapshot.clone();
        adopted.tags.extend_from(&added);
        self.snapshots.push(adopted);
    }
}

fn adoption(
    region: &str,
    claim: &Claim,
    backup: &dyn Backup,
    resource_type: ResourceType,
    snapshot_ids: Vec<String>,
    added: Tags,
    message: String,
) -> Change {
    Change {
        account: None,
        policy: claim.policy.name.clone(),
        region: region.to_string(),
        source: claim.source.to_string(),
        action: Action::Adopt {
            resource_type,
            id: backup.id().to_string(),
            snapshot_ids,
            tags: added,
        },
        reason: Reason {
            code: ReasonCode::Adopt,
            message,
        },
        backups_left: None,
        recycle_bin: None,
        precondition: Precondition::Delete {
            state: backup.state_name(),
            tags: backup.tags().clone(),
        },
    }
}

/// What backupViaTag's `Expire` tag says about a backup at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldExpiry {
    /// `never`: kept forever.
    Never,
    /// Not before this instant.
    Until(DateTime<Utc>),
    /// A value this reading cannot tell: kept, and said so.
    Unreadable(String),
}

/// The floor backupViaTag's `Expire` tag sets on a backup it made, if it
/// still holds at `now`: backupctl never deletes such a backup earlier
/// than backupViaTag would have.
pub fn old_expiry(t: &Tags, now: DateTime<Utc>) -> Option<OldExpiry> {
    if t.get(tags::CREATED_BY) != Some(OldTool::BackupViaTag.as_str()) {
        return None;
    }
    let text = t.get(tags::EXPIRE)?;
    if text.trim().eq_ignore_ascii_case("never") {
        return Some(OldExpiry::Never);
    }
    match parse_date_output(text) {
        Some(until) if until > now => Some(OldExpiry::Until(until)),
        Some(_) => None,
        None => Some(OldExpiry::Unreadable(text.to_string())),
    }
}

/// Reads what `date` printed (`Sat Jan  3 14:00:00 UTC 2026`, its default
/// format in the C locale, as backupViaTag stored it), or RFC 3339. A time
/// zone this does not know is taken as the latest possible (UTC-12), so
/// the floor is never earlier than meant.
pub fn parse_date_output(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let (date, zone) = match words.as_slice() {
        [_, mon, day, time, zone, year] => (format!("{mon} {day} {time} {year}"), Some(*zone)),
        [_, mon, day, time, year] => (format!("{mon} {day} {time} {year}"), None),
        _ => return None,
    };
    let local = NaiveDateTime::parse_from_str(&date, "%b %d %H:%M:%S %Y").ok()?;
    let offset_hours = match zone {
        Some("UTC" | "GMT" | "Z" | "UCT") => 0,
        Some("CET" | "BST" | "WAT") => 1,
        Some("CEST" | "EET" | "SAST") => 2,
        Some("EEST" | "MSK") => 3,
        Some("JST" | "KST") => 9,
        Some("AEST") => 10,
        Some("EDT") => -4,
        Some("EST" | "CDT") => -5,
        Some("CST" | "MDT") => -6,
        Some("MST" | "PDT") => -7,
        Some("PST") => -8,
        _ => -12,
    };
    let utc = local.checked_sub_signed(TimeDelta::hours(offset_hours))?;
    Some(utc.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn reads_what_date_printed() {
        assert_eq!(
            parse_date_output("Sat Jan  3 14:00:00 UTC 2026"),
            Some(at(2026, 1, 3, 14))
        );
        assert_eq!(
            parse_date_output("Mon Dec 21 09:00:00 CET 2026"),
            Some(at(2026, 12, 21, 8))
        );
        // Unknown zone: the latest instant it could mean.
        assert_eq!(
            parse_date_output("Mon Dec 21 09:00:00 XYZT 2026"),
            Some(at(2026, 12, 21, 21))
        );
        assert_eq!(
            parse_date_output("2026-12-21T09:00:00Z"),
            Some(at(2026, 12, 21, 9))
        );
        assert_eq!(parse_date_output("lundi 21 décembre 2026"), None);
    }

    #[test]
    fn the_expire_tag_is_a_floor_only_on_backupviatag_backups() {
        let now = at(2026, 12, 1, 0);
        let tagged = |pairs: &[(&str, &str)]| {
            let mut t = Tags::default();
            for (k, v) in pairs {
                t.insert(*k, *v);
            }
            t
        };
        let bvt = |expire: &str| tagged(&[("CreatedBy", "backupViaTag"), ("Expire", expire)]);
        assert_eq!(old_expiry(&bvt("never"), now), Some(OldExpiry::Never));
        assert_eq!(
            old_expiry(&bvt("Mon Dec 21 09:00:00 UTC 2026"), now),
            Some(OldExpiry::Until(at(2026, 12, 21, 9)))
        );
        assert_eq!(old_expiry(&bvt("Sat Nov 21 09:00:00 UTC 2026"), now), None);
        assert_eq!(
            old_expiry(&bvt("bientôt"), now),
            Some(OldExpiry::Unreadable("bientôt".into()))
        );
        let other = tagged(&[("CreatedBy", "someone"), ("Expire", "never")]);
        assert_eq!(old_expiry(&other, now), None);
    }
}
