//! The Recycle Bin rules of a region, and what they make of a deletion: a
//! backup deleted where a rule retains it can be restored for the rule's
//! days; anywhere else it is gone for good. Observed with rbin ListRules
//! and GetRule; pure here.
//!
//! A rule retains resources of its type (snapshots or images): a tag-level
//! rule those that carry one of its tags (a tag without a value matches any
//! value), a region-level rule (no tags) all of them but those carrying
//! one of its exclusion tags. Where several rules retain a resource, the
//! longest retention applies. An image in the bin can be restored only
//! with its snapshots, so an image's deletion is recoverable only when the
//! snapshots deleted with it are retained too.

use super::Tags;
use serde::{Deserialize, Serialize};

/// A region's rules, as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecycleBin {
    /// The rules in effect (status `available`).
    #[serde(default)]
    pub rules: Vec<BinRule>,
    /// Why the rules could not be read; then where deletions go is not
    /// known, and `rules` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinRule {
    pub id: String,
    /// `snapshot` (EBS_SNAPSHOT) or `image` (EC2_IMAGE).
    pub resource_type: String,
    /// How long a deleted resource stays restorable.
    pub days: u32,
    /// A tag-level rule's tags (`None`: any value of the key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, Option<String>)>,
    /// A region-level rule's exclusion tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_tags: Vec<(String, Option<String>)>,
}

/// Where a deletion goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Restorable from the Recycle Bin for `days` (the shortest of its
    /// resources'), by these rules.
    Bin { rules: Vec<String>, days: u32 },
    /// Deleted for good, for this reason.
    Permanent(String),
}

fn has_any(tags: &Tags, wanted: &[(String, Option<String>)]) -> bool {
    wanted.iter().any(|(k, v)| match (tags.get(k), v) {
        (Some(_), None) => true,
        (Some(have), Some(want)) => have == want,
        (None, _) => false,
    })
}

impl BinRule {
    /// The rule retains a resource of `resource_type` with `tags`.
    pub fn retains(&self, resource_type: &str, tags: &Tags) -> bool {
        self.resource_type == resource_type
            && if self.tags.is_empty() {
                !has_any(tags, &self.exclude_tags)
            } else {
                has_any(tags, &self.tags)
            }
    }
}

impl RecycleBin {
    /// The rule that keeps a resource longest, if any.
    pub fn rule_for(&self, resource_type: &str, tags: &Tags) -> Option<&BinRule> {
        self.rules
            .iter()
            .filter(|r| r.retains(resource_type, tags))
            .max_by_key(|r| (r.days, std::cmp::Reverse(r.id.clone())))
    }

    /// Where the deletion of these resources goes: each `(resource type,
    /// id, tags)` deleted together (an image and its snapshots, or a set's
    /// snapshots). `None` when the rules could not be read.
    pub fn fate(&self, deleted: &[(&str, &str, &Tags)]) -> Option<Fate> {
        if self.unreadable.is_some() {
            return None;
        }
        let mut rules: Vec<String> = Vec::new();
        let mut days = u32::MAX;
        let mut lost: Vec<&str> = Vec::new();
        for (kind, id, tags) in deleted {
            match self.rule_for(kind, tags) {
                Some(rule) => {
                    if !rules.contains(&rule.id) {
                        rules.push(rule.id.clone());
                    }
                    days = days.min(rule.days);
                }
                None => lost.push(id),
            }
        }
        if lost.is_empty() && !rules.is_empty() {
            return Some(Fate::Bin { rules, days });
        }
        let why = if rules.is_empty() {
            "no Recycle Bin rule retains it".to_string()
        } else {
            format!(
                "no Recycle Bin rule retains {}, without which the rest cannot be restored",
                lost.join(", ")
            )
        };
        Some(Fate::Permanent(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        id: &str,
        kind: &str,
        days: u32,
        tags: &[(&str, Option<&str>)],
        exclude: &[(&str, Option<&str>)],
    ) -> BinRule {
        let own = |t: &[(&str, Option<&str>)]| {
            t.iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect()
        };
        BinRule {
            id: id.into(),
            resource_type: kind.into(),
            days,
            tags: own(tags),
            exclude_tags: own(exclude),
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_deletion_is_recoverable_only_when_every_resource_is_retained() {
        let bin = RecycleBin {
            rules: vec![
                rule("all-snapshots", "snapshot", 7, &[], &[("Scratch", None)]),
                rule(
                    "prod-snapshots",
                    "snapshot",
                    30,
                    &[("Env", Some("prod"))],
                    &[],
                ),
                rule(
                    "backup-images",
                    "image",
                    14,
                    &[("backupctl:policy", None)],
                    &[],
                ),
            ],
            unreadable: None,
        };
        let prod = tags(&[("Env", "prod"), ("backupctl:policy", "web")]);
        let scratch = tags(&[("Scratch", "yes")]);
        let plain = tags(&[]);
        assert_eq!(
            bin.rule_for("snapshot", &prod).unwrap().id,
            "prod-snapshots",
            "the longest wins"
        );
        assert_eq!(
            bin.rule_for("snapshot", &plain).unwrap().id,
            "all-snapshots"
        );
        assert_eq!(bin.rule_for("snapshot", &scratch), None, "excluded");
        assert_eq!(bin.rule_for("image", &plain), None);
        assert_eq!(
            bin.fate(&[("image", "ami-1", &prod), ("snapshot", "snap-1", &prod)]),
            Some(Fate::Bin {
                rules: vec!["backup-images".into(), "prod-snapshots".into()],
                days: 14
            })
        );
        let Some(Fate::Permanent(why)) =
            bin.fate(&[("image", "ami-1", &prod), ("snapshot", "snap-2", &scratch)])
        else {
            panic!("an image whose snapshot is gone cannot be restored");
        };
        assert!(why.contains("snap-2"), "{why}");
        assert_eq!(
            RecycleBin::default().fate(&[("snapshot", "snap-1", &plain)]),
            Some(Fate::Permanent("no Recycle Bin rule retains it".into()))
        );
        let unreadable = RecycleBin {
            unreadable: Some("AccessDenied".into()),
            ..Default::default()
        };
        assert_eq!(unreadable.fate(&[("snapshot", "snap-1", &plain)]), None);
    }
}
