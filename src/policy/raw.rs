//! The policy file exactly as written, with spans. Serde rejects unknown keys
//! and wrong types here; meaning is checked in `load`.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub(super) type Tags = Spanned<BTreeMap<String, String>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub name: Spanned<String>,
    pub namespace: Option<Spanned<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub target: Spanned<RawTarget>,
    pub backup: Spanned<RawBackup>,
    pub retention: Spanned<RawRetention>,
    pub adopt: Option<Spanned<RawAdopt>>,
    /// `[[copy]]`: disaster-recovery copies (see `recovery`).
    #[serde(default)]
    pub copy: Vec<Spanned<RawCopy>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCopy {
    pub to_region: Spanned<String>,
    pub to_account: Option<Spanned<String>>,
    pub encrypted: Option<Spanned<bool>>,
    pub kms_key: Option<Spanned<String>>,
    pub retention: Option<Spanned<RawRetention>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLock {
    pub mode: Spanned<String>,
    pub days: Spanned<i64>,
    pub cool_off_hours: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawProtection {
    On(bool),
    Mode(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdopt {
    pub from: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub regions: Spanned<Vec<Spanned<String>>>,
    pub accounts: Option<Spanned<Vec<Spanned<String>>>>,
    pub account_tags: Option<Tags>,
    pub instance_tags: Option<Tags>,
    pub instance_ids: Option<Spanned<Vec<Spanned<String>>>>,
    pub volume_tags: Option<Tags>,
    pub exclude_boot_volume: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    pub kind: Spanned<RawKind>,
    pub every: Option<Spanned<String>>,
    pub reboot: Option<Spanned<RawReboot>>,
    pub tags: Option<Tags>,
    pub lock: Option<Spanned<RawLock>>,
    pub deregistration_protection: Option<Spanned<RawProtection>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawKind {
    Ami,
    Snapshot,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawReboot {
    Never,
    Always,
    Tag,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub max_age: Spanned<String>,
    /// Signed so that `-1` gets our message rather than a serde overflow.
    pub keep_last: Option<Spanned<i64>>,
    pub require_recycle_bin: Option<Spanned<bool>>,
}
