//! Reads a policy directory and validates every file, collecting every error
//! (not just the first) with its file, line and column.

use super::raw::{RawKind, RawPolicy, RawReboot, Tags};
use super::{
    parse_duration, parse_max_age, tags, Backup, Duration, InstanceRef, Kind, OldTool, Policy,
    PolicySet, Reboot, Regions, Retention, TagMatch, Target, Unit,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// AWS allows 50 tags per resource; backupctl writes four of its own.
const MAX_EXTRA_TAGS: usize = 46;

/// One problem in one policy file, at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is about the whole file.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    /// The offending line of the file, shown under the message.
    pub source_line: Option<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        if self.line == 0 {
            return write!(f, "{file}: {}", self.message);
        }
        write!(f, "{file}:{}:{}: {}", self.line, self.column, self.message)?;
        if let Some(text) = &self.source_line {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret = " ".repeat(self.column.saturating_sub(1));
            write!(f, "\n {gutter} | {text}\n {pad} | {caret}^")?;
        }
        Ok(())
    }
}

/// Why a policy directory could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    DirMissing(PathBuf),
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    NoPolicies(PathBuf),
    Invalid(Vec<PolicyError>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::DirMissing(dir) => write!(
                f,
                "policy directory {} does not exist or is not a directory; pass --policies DIR or set BACKUPCTL_POLICIES",
                dir.display()
            ),
            LoadError::Io { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            LoadError::NoPolicies(dir) => write!(
                f,
                "no policy files (*.toml) in {}; add one (see the README's policy format) or point --policies at the right directory",
                dir.display()
            ),
            LoadError::Invalid(errors) => {
                // The caller prints "error: " before the first line; the
                // others get it here so every error reads the same.
                for (i, e) in errors.iter().enumerate() {
                    let prefix = if i == 0 { "" } else { "error: " };
                    writeln!(f, "{prefix}{e}")?;
                }
                let files: std::collections::BTreeSet<_> = errors.iter().map(|e| &e.file).collect();
                write!(
                    f,
                    "{} error{} in {} policy file{}; nothing was changed",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" },
                    files.len(),
                    if files.len() == 1 { "" } else { "s" },
                )
            }
        }
    }
}

/// Loads every `*.toml` file directly in `dir` (not hidden files, not
/// subdirectories), validates each and the set as a whole.
pub fn load_dir(dir: &Path) -> Result<PolicySet, LoadError> {
    if !dir.is_dir() {
        return Err(LoadError::DirMissing(dir.to_path_buf()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| LoadError::Io { path, error }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".toml") && !name.starts_with('.') && path.is_file() {
            // The accounts file is not a policy (see `crate::accounts`);
            // it is read on its own, and its digest joins the policies'.
            if name != crate::accounts::FILE_NAME {
                files.push(path);
            }
        }
    }
    if files.is_empty() {
        return Err(LoadError::NoPolicies(dir.to_path_buf()));
    }
    files.sort();

    let mut hasher = Sha256::new();
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for path in &files {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        hasher.update(name.unwrap_or_default().as_bytes());
        hasher.update([0]);
        hasher.update(&bytes);
        hasher.update([0]);
        let Ok(text) = String::from_utf8(bytes) else {
            errors.push(PolicyError {
                file: path.clone(),
                line: 0,
                column: 0,
                message: "the file is not valid UTF-8 text; policy files must be UTF-8 TOML".into(),
                source_line: None,
            });
            continue;
        };
        match parse_policy(path, &text) {
            Ok((policy, name_span)) => {
                if let Some(other) = policies
                    .first()
                    .filter(|o: &&Policy| o.namespace != policy.namespace)
                {
                    let ns = |p: &Policy| {
                        p.namespace
                            .as_ref()
                            .map_or("no namespace".to_string(), |n| format!("namespace \"{n}\""))
                    };
                    errors.push(error_at(
                        path,
                        &text,
                        name_span,
                        format!(
                            "this policy has {}, but {} has {}; a policy directory is one set, with one namespace: give every policy the same `namespace` (or none)",
                            ns(&policy),
                            other.file.display(),
                            ns(other)
                        ),
                    ));
                } else if let Some(first) = seen.get(&policy.name) {
                    errors.push(error_at(
                        path,
                        &text,
                        name_span,
                        format!(
                            "duplicate policy name \"{}\": {} already uses it; names must be unique in the set",
                            policy.name,
                            first.display()
                        ),
                    ));
                } else {
                    seen.insert(policy.name.clone(), path.clone());
                    policies.push(policy);
                }
            }
            Err(mut file_errors) => errors.append(&mut file_errors),
        }
    }
    if !errors.is_empty() {
        return Err(LoadError::Invalid(errors));
    }
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let digest = format!("sha256:{:x}", hasher.finalize());
    Ok(PolicySet { policies, digest })
}

/// Parses and validates one file. Returns the policy and the span of its name
/// (for the duplicate-name check), or every error found in the file.
pub fn parse_policy(path: &Path, text: &str) -> Result<(Policy, Range<usize>), Vec<PolicyError>> {
    let raw: RawPolicy = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        vec![error_at(path, text, span, toml_message(e.message()))]
    })?;
    let mut v = Validator {
        path,
        text,
        errors: Vec::new(),
    };
    let policy = v.policy(raw);
    if v.errors.is_empty() {
        Ok(policy)
    } else {
        Err(v.errors)
    }
}

/// serde speaks of fields, variants and Rust types; operators think in TOML
/// keys, values, numbers and lists.
pub(crate) fn toml_message(message: &str) -> String {
    [
        ("invalid type: ", "wrong type: found "),
        ("missing field", "missing required key"),
        ("unknown field", "unknown key"),
        ("unknown variant", "unknown value"),
        ("expected i64", "expected a whole number"),
        ("expected a sequence", "expected a list like [\"a\", \"b\"]"),
        (
            "expected a map",
            "expected a table like { Key = \"value\" }",
        ),
        ("expected a boolean", "expected true or false"),
    ]
    .iter()
    .fold(message.trim_end().to_string(), |m, (from, to)| {
        m.replace(from, to)
    })
}

pub(crate) fn error_at(
    path: &Path,
    text: &str,
    span: Range<usize>,
    message: String,
) -> PolicyError {
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    let source_line = text[line_start..].lines().next().map(str::to_string);
    PolicyError {
        file: path.to_path_buf(),
        line,
        column,
        message,
        source_line,
    }
}

pub(super) struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<PolicyError>,
}

impl Validator<'_> {
    pub(super) fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let e = error_at(self.path, self.text, span, message.into());
        self.errors.push(e);
    }

    fn policy(&mut self, mut raw: RawPolicy) -> (Policy, Range<usize>) {
        let name_span = raw.name.span();
        let name = raw.name.into_inner();
        if !valid_policy_name(&name) {
            self.err(
                name_span.clone(),
                format!("invalid policy name \"{name}\": expected 1 to 64 characters from a-z, 0-9, '_' and '-'"),
            );
        }
        let mut name = name;
        let mut namespace = None;
        if let Some(ns) = raw.namespace {
            let (span, ns) = (ns.span(), ns.into_inner());
            if !valid_policy_name(&ns) {
                self.err(
                    span,
                    format!("invalid namespace \"{ns}\": expected 1 to 64 characters from a-z, 0-9, '_' and '-'"),
                );
            }
            // The namespace is part of the name that ownership tags carry:
            // `payments/daily` is not `daily`, nor another set's `daily`.
            name = format!("{ns}/{name}");
            namespace = Some(ns);
        }
        let kind = match *raw.backup.get_ref().kind.get_ref() {
            RawKind::Ami => Kind::Ami,
            RawKind::Snapshot => Kind::Snapshot,
        };
        let backup_lock = raw.backup.get_mut().lock.take();
        let protection = raw.backup.get_mut().deregistration_protection.take();
        let target_span = raw.target.span();
        let target = self.target(raw.target.into_inner(), target_span, kind);
        let retention = self.retention(raw.retention.into_inner());
        let mut backup = self.backup(raw.backup.into_inner(), kind);
        backup.lock = backup_lock.and_then(|l| self.lock(l));
        backup.deregistration_protection =
            protection.and_then(|p| self.deregistration_protection(p, kind));
        let copies = self.copies(raw.copy, &target, &retention);
        let adopt = raw.adopt.and_then(|a| self.adopt(a.into_inner(), kind));
        let policy = Policy {
            name,
            namespace,
            description: raw.description,
            enabled: raw.enabled.unwrap_or(true),
            file: self.path.to_path_buf(),
            target,
            backup,
            retention,
            adopt,
            copies,
        };
        (policy, name_span)
    }

    fn target(&mut self, raw: super::raw::RawTarget, span: Range<usize>, kind: Kind) -> Target {
        let regions_span = raw.regions.span();
        let list = raw.regions.into_inner();
        let regions = if list.is_empty() {
            self.err(
                regions_span,
                "`regions` is empty: list at least one region, like [\"us-east-1\"], or [\"*\"] for every enabled region",
            );
            Regions::List(Vec::new())
        } else if list.iter().any(|r| r.get_ref() == "*") {
            if list.len() > 1 {
                self.err(regions_span, "\"*\" already means every enabled region; it cannot be combined with other regions");
            }
            Regions::All
        } else {
            let mut names: Vec<String> = Vec::new();
            for r in list {
                let span = r.span();
                let r = r.into_inner();
                if !valid_region(&r) {
                    self.err(span, format!("\"{r}\" is not an AWS region name; expected something like \"us-east-1\" or \"eu-west-1\""));
                } else if names.contains(&r) {
                    self.err(span, format!("region \"{r}\" is listed twice"));
                } else {
                    names.push(r);
                }
            }
            Regions::List(names)
        };

        let instance_tags = raw
            .instance_tags
            .map(|t| self.selector_tags(t, "instance_tags"))
            .unwrap_or_default();
        let instance_ids = raw.instance_ids.map(|ids| {
            if ids.get_ref().is_empty() {
                self.err(ids.span(), "`instance_ids` is empty: list instance ids like \"i-0123456789abcdef0\", or [\"local\"], or remove the key");
            }
            let mut out: Vec<InstanceRef> = Vec::new();
            for id in ids.into_inner() {
                let span = id.span();
                let id = id.into_inner();
                let r = if id == "local" {
                    InstanceRef::Local
                } else if valid_instance_id(&id) {
                    InstanceRef::Id(id.clone())
                } else {
                    self.err(span, format!("\"{id}\" is not an instance id; expected \"i-\" followed by 8 or 17 hex digits, or \"local\""));
                    continue;
                };
                if out.contains(&r) {
                    self.err(span, format!("instance \"{id}\" is listed twice"));
                } else {
                    out.push(r);
                }
            }
            out
        });
        if instance_tags.is_empty() && instance_ids.is_none() {
            self.err(
                span.clone(),
                "this policy selects no instances: [target] needs `instance_tags` (e.g. { Backup = \"daily\" }) or `instance_ids` (e.g. [\"i-0123456789abcdef0\"] or [\"local\"])",
            );
        }

        let mut volume_tags = BTreeMap::new();
        if let Some(t) = raw.volume_tags {
            if kind == Kind::Ami {
                self.err(t.span(), "`volume_tags` applies only to kind = \"snapshot\"; an AMI always includes every attached volume");
            } else {
                volume_tags = self.selector_tags(t, "volume_tags");
            }
        }
        let mut exclude_boot_volume = false;
        if let Some(b) = raw.exclude_boot_volume {
            if kind == Kind::Ami {
                self.err(b.span(), "`exclude_boot_volume` applies only to kind = \"snapshot\"; an AMI always includes its boot volume");
            } else {
                exclude_boot_volume = *b.get_ref();
            }
        }
        let accounts = raw
            .accounts
            .map(|list| {
                if list.get_ref().is_empty() {
                    self.err(list.span(), "`accounts` is empty: list account ids or names from the accounts file, or remove the key to select every account");
                }
                let mut out: Vec<String> = Vec::new();
                for a in list.into_inner() {
                    let span = a.span();
                    let a = a.into_inner();
                    if out.contains(&a) {
                        self.err(span, format!("account \"{a}\" is listed twice"));
                    } else {
                        out.push(a);
                    }
                }
                out
            })
            .unwrap_or_default();
        let account_tags = raw
            .account_tags
            .map(|t| self.selector_tags(t, "account_tags"))
            .unwrap_or_default();
        Target {
            regions,
            accounts,
            account_tags,
            instance_tags,
            instance_ids,
            volume_tags,
            exclude_boot_volume,
        }
    }

    fn selector_tags(&mut self, tags: Tags, key: &str) -> BTreeMap<String, TagMatch> {
        if tags.get_ref().is_empty() {
            self.err(tags.span(), format!("`{key}` is empty: give at least one pair, like {{ Backup = \"daily\" }}, or remove the key"));
        }
        let span = tags.span();
        let mut out = BTreeMap::new();
        for (k, v) in tags.into_inner() {
            if k.is_empty() {
                self.err(span.clone(), format!("`{key}` has an empty tag key"));
            }
            out.insert(k, TagMatch::from_policy(v));
        }
        out
    }

    fn backup(&mut self, raw: super::raw::RawBackup, kind: Kind) -> Backup {
        let every = match raw.every {
            None => Duration::of(1, Unit::Day),
            Some(text) => {
                let span = text.span();
                let text = text.into_inner();
                if text.trim().eq_ignore_ascii_case("never") {
                    self.err(span, "`every` cannot be \"never\"; to stop taking backups set `enabled = false` at the top of the file");
                    Duration::of(1, Unit::Day)
                } else {
                    parse_duration(&text).unwrap_or_else(|e| {
                        self.err(span, format!("invalid `every`: {e}"));
                        Duration::of(1, Unit::Day)
                    })
                }
            }
        };
        let reboot = match raw.reboot {
            None => Reboot::Never,
            Some(r) if kind == Kind::Snapshot => {
                self.err(r.span(), "`reboot` applies only to kind = \"ami\"; snapshot sets never reboot the instance");
                Reboot::Never
            }
            Some(r) => match r.into_inner() {
                RawReboot::Never => Reboot::Never,
                RawReboot::Always => Reboot::Always,
                RawReboot::Tag => Reboot::Tag,
            },
        };
        let mut extra = BTreeMap::new();
        if let Some(t) = raw.tags {
            let span = t.span();
            let t = t.into_inner();
            if t.len() > MAX_EXTRA_TAGS {
                self.err(span.clone(), format!("{} tags given; AWS allows 50 per resource and backupctl uses 4, so at most {MAX_EXTRA_TAGS}", t.len()));
            }
            for (k, v) in t {
                let lower = k.to_ascii_lowercase();
                if k.is_empty() || k.chars().count() > 128 {
                    self.err(
                        span.clone(),
                        format!("tag key \"{k}\" must be 1 to 128 characters"),
                    );
                } else if lower.starts_with("aws:") {
                    self.err(
                        span.clone(),
                        format!("tag key \"{k}\" is reserved by AWS (the aws: prefix)"),
                    );
                } else if lower.starts_with("backupctl:") || k == tags::NAME {
                    self.err(
                        span.clone(),
                        format!(
                            "tag key \"{k}\" is set by backupctl itself and cannot be overridden"
                        ),
                    );
                } else if v.chars().count() > 256 {
                    self.err(
                        span.clone(),
                        format!("the value of tag \"{k}\" is longer than 256 characters"),
                    );
                }
                extra.insert(k, v);
            }
        }
        Backup {
            kind,
            every,
            reboot,
            tags: extra,
            lock: None,
            deregistration_protection: None,
        }
    }

    fn adopt(&mut self, raw: super::raw::RawAdopt, kind: Kind) -> Option<OldTool> {
        let span = raw.from.span();
        let from = raw.from.into_inner();
        let Some(tool) = OldTool::parse(&from) else {
            self.err(
                span,
                format!("`adopt.from` is \"{from}\": backupctl adopts the backups of \"backupViaTag\" (its AMIs) or \"molibackup\" (its snapshots) only"),
            );
            return None;
        };
        if tool.kind() != kind {
            self.err(
                span,
                format!(
                    "`adopt.from = \"{from}\"` needs `kind = \"{}\"`: {from} made {}, and a policy adopts only backups of its own kind",
                    tool.kind().as_str(),
                    if tool.kind() == Kind::Ami { "AMIs" } else { "EBS snapshots" }
                ),
            );
            return None;
        }
        Some(tool)
    }

    pub(super) fn retention(&mut self, raw: super::raw::RawRetention) -> Retention {
        let span = raw.max_age.span();
        let max_age = parse_max_age(raw.max_age.get_ref()).unwrap_or_else(|e| {
            self.err(
                span,
                format!("invalid `max_age`: {e} (or \"never\" to keep forever)"),
            );
            super::MaxAge::Never
        });
        let keep_last = match raw.keep_last {
            None => 1,
            Some(n) => {
                let span = n.span();
                u32::try_from(*n.get_ref()).unwrap_or_else(|_| {
                    self.err(
                        span,
                        format!(
                            "`keep_last` is {}; expected a whole number from 0 to {}",
                            n.get_ref(),
                            u32::MAX
                        ),
                    );
                    1
                })
            }
        };
        let require_recycle_bin = raw.require_recycle_bin.is_some_and(|r| r.into_inner());
        Retention {
            max_age,
            keep_last,
            require_recycle_bin,
        }
    }
}

fn valid_policy_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `us-east-1`, `us-gov-west-1`, `ap-southeast-2`, `us-isob-east-1`.
pub(crate) fn valid_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn valid_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "eu-west-1",
            "us-gov-west-1",
            "ap-southeast-2",
            "us-isob-east-1",
        ] {
            assert!(valid_region(ok), "{ok}");
        }
        for bad in [
            "us-east",
            "useast1",
            "US-EAST-1",
            "us--1",
            "u-east-1",
            "us-east-1a",
            "",
        ] {
            assert!(!valid_region(bad), "{bad}");
        }
    }

    #[test]
    fn instance_ids() {
        assert!(valid_instance_id("i-0123456789abcdef0"));
        assert!(valid_instance_id("i-0123abcd"));
        assert!(!valid_instance_id("i-0123456789ABCDEF0"));
        assert!(!valid_instance_id("i-123"));
        assert!(!valid_instance_id("ami-0123abcd"));
    }

    #[test]
    fn positions_count_characters_from_one() {
        let e = error_at(
            Path::new("p.toml"),
            "a = 1\nbé = \"x\"\n",
            12..13,
            "m".into(),
        );
        assert_eq!((e.line, e.column), (2, 6));
        assert_eq!(e.source_line.as_deref(), Some("bé = \"x\""));
    }
}
