//! What a policy declares for surviving the loss of a region or an
//! account (issue 13): copies of its backups elsewhere, each destination
//! with its own retention, and protections (snapshot locks, AMI
//! deregistration protection, a required Recycle Bin rule) as declared
//! state.
//!
//! This module is the policy side: the keys, their validation and their
//! defaults (copies to other regions are planned by `planner::copies`,
//! locks by `planner::locks`, deregistration protection by
//! `planner::protection`, a required Recycle Bin rule by
//! `planner::recycle_bin`, copies to other accounts by
//! `planner::cross_account`, whose accounts the accounts file resolves).

use super::load::Validator;
use super::raw::{RawCopy, RawLock, RawProtection};
use super::{Kind, MaxAge, Regions, Retention};
use toml::Spanned;

/// `[[copy]]`: every good backup of the policy is copied to `to_region`
/// (of `to_account`, or of the backup's own account).
#[derive(Debug, Clone, PartialEq)]
pub struct CopyRule {
    pub to_region: String,
    /// An account id or a name of the accounts file; `None`: the source's.
    pub to_account: Option<String>,
    /// Encrypt the copy (always, with a `kms_key`).
    pub encrypted: bool,
    /// A KMS key ARN or alias in the destination; required across accounts.
    pub kms_key: Option<String>,
    /// Retention of the copies in this destination; default: the policy's.
    pub retention: Retention,
}

/// `lock = { mode, days, cool_off_hours }` on every new snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    pub mode: LockMode,
    pub days: u32,
    /// Compliance mode only: hours during which the lock can still be
    /// removed (EC2 allows 0 to 72).
    pub cool_off_hours: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with the right IAM permission can remove it.
    Governance,
    /// Nobody can remove it, or shorten it, once the cool-off is over.
    Compliance,
}

impl LockMode {
    /// EC2's name of the mode (LockSnapshot's `LockMode`).
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }

    pub fn parse(s: &str) -> Option<LockMode> {
        [LockMode::Governance, LockMode::Compliance]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

impl Lock {
    /// Why this lock outlasts retention (a plan warning, not an error:
    /// retention's deletions then wait for the lock, shown as blocked).
    pub fn outlasts(&self, retention: &Retention) -> Option<String> {
        let MaxAge::After(max) = &retention.max_age else {
            return None;
        };
        max.approx_length()
            .is_some_and(|l| l.num_days() < i64::from(self.days))
            .then(|| format!("its lock ({} days) outlasts `max_age` ({max}): expired backups stay, blocked, until their locks end; lock for at most as long as you keep, or keep longer", self.days))
    }
}

/// `deregistration_protection` for AMIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeregistrationProtection {
    /// Protected until protection is disabled.
    On,
    /// Also, after protection is disabled, 24 hours before the AMI can go.
    WithCooldown,
}

/// The longest lock EC2 accepts, in days (about 100 years).
const MAX_LOCK_DAYS: i64 = 36_500;

impl Validator<'_> {
    pub(super) fn copies(
        &mut self,
        raw: Vec<Spanned<RawCopy>>,
        target: &super::Target,
        retention: &Retention,
    ) -> Vec<CopyRule> {
        let mut out: Vec<CopyRule> = Vec::new();
        for entry in raw {
            let span = entry.span();
            let c = entry.into_inner();
            let (region_span, to_region) = (c.to_region.span(), c.to_region.into_inner());
            if !super::valid_region(&to_region) {
                self.err(
                    region_span.clone(),
                    format!("\"{to_region}\" is not an AWS region name; expected something like \"eu-west-1\""),
                );
            }
            let to_account = c.to_account.map(|a| {
                let (span, a) = (a.span(), a.into_inner());
                if a.is_empty() {
                    self.err(span, "`to_account` is empty: give the destination account's id or its name in the accounts file, or remove the key to copy within the source's account");
                }
                a
            });
            if to_account.is_none() && target.regions == Regions::List(vec![to_region.clone()]) {
                self.err(
                    region_span.clone(),
                    format!("the policy's only region is {to_region}: a copy to the same region of the same account survives nothing; copy to another region, or to another account with `to_account`"),
                );
            }
            let kms_key = c.kms_key.map(|k| {
                let (span, k) = (k.span(), k.into_inner());
                if !valid_kms_key(&k) {
                    self.err(span, format!("\"{k}\" is not a KMS key; expected a key ARN (arn:aws:kms:<region>:<account>:key/<id>), an alias ARN, or \"alias/<name>\""));
                }
                k
            });
            if let (Some(account), None) = (&to_account, &kms_key) {
                self.err(
                    span.clone(),
                    format!("a copy to account {account} needs `kms_key`: a customer managed KMS key of the destination account that the copy is encrypted with (the AWS managed key cannot be shared across accounts)"),
                );
            }
            let encrypted = match c.encrypted {
                Some(e) if !*e.get_ref() && kms_key.is_some() => {
                    self.err(e.span(), "`encrypted = false` with a `kms_key`: a copy with a key is encrypted; remove one of the two");
                    true
                }
                Some(e) => *e.get_ref(),
                None => kms_key.is_some(),
            };
            let retention = match c.retention {
                Some(r) => self.retention(r.into_inner()),
                None => retention.clone(),
            };
            if out
                .iter()
                .any(|o| o.to_region == to_region && o.to_account == to_account)
            {
                self.err(
                    region_span,
                    format!(
                        "a second [[copy]] to {to_region}{}; one rule per destination",
                        to_account
                            .as_ref()
                            .map_or(String::new(), |a| format!(" of account {a}"))
                    ),
                );
            }
            out.push(CopyRule {
                to_region,
                to_account,
                encrypted,
                kms_key,
                retention,
            });
        }
        out
    }

    pub(super) fn lock(&mut self, raw: Spanned<RawLock>) -> Option<Lock> {
        let raw = raw.into_inner();
        let mode = match raw.mode.get_ref().as_str() {
            "governance" => LockMode::Governance,
            "compliance" => LockMode::Compliance,
            other => {
                self.err(
                    raw.mode.span(),
                    format!("unknown lock mode \"{other}\": expected \"governance\" (removable with permission) or \"compliance\" (irreversible)"),
                );
                return None;
            }
        };
        let days = *raw.days.get_ref();
        if !(1..=MAX_LOCK_DAYS).contains(&days) {
            self.err(
                raw.days.span(),
                format!("`days` is {days}; expected 1 to {MAX_LOCK_DAYS}"),
            );
            return None;
        }
        let cool_off_hours = match raw.cool_off_hours {
            None => 0,
            Some(h) if mode == LockMode::Governance => {
                self.err(h.span(), "`cool_off_hours` applies to compliance locks only; a governance lock can be removed at any time by those allowed to");
                0
            }
            Some(h) if !(0..=72).contains(h.get_ref()) => {
                self.err(
                    h.span(),
                    format!("`cool_off_hours` is {}; expected 0 to 72", h.get_ref()),
                );
                0
            }
            Some(h) => *h.get_ref() as u32,
        };
        Some(Lock {
            mode,
            days: days as u32,
            cool_off_hours,
        })
    }

    pub(super) fn deregistration_protection(
        &mut self,
        raw: Spanned<RawProtection>,
        kind: Kind,
    ) -> Option<DeregistrationProtection> {
        let span = raw.span();
        if kind != Kind::Ami {
            self.err(span, "`deregistration_protection` applies to kind = \"ami\" only; protect snapshots with `lock`");
            return None;
        }
        match raw.into_inner() {
            RawProtection::On(true) => Some(DeregistrationProtection::On),
            RawProtection::On(false) => None,
            RawProtection::Mode(m) if m == "cooldown" => {
                Some(DeregistrationProtection::WithCooldown)
            }
            RawProtection::Mode(m) => {
                self.err(
                    span,
                    format!("`deregistration_protection = \"{m}\"`: expected true, false or \"cooldown\" (24 hours more after protection is disabled)"),
                );
                None
            }
        }
    }
}

/// A KMS key ARN, alias ARN, key id, or `alias/name`.
fn valid_kms_key(key: &str) -> bool {
    let id = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b))
    };
    if let Some(alias) = key.strip_prefix("alias/") {
        return id(alias);
    }
    let parts: Vec<&str> = key.splitn(6, ':').collect();
    if parts.len() == 6 {
        return parts[0] == "arn"
            && parts[2] == "kms"
            && (parts[5].starts_with("key/") || parts[5].starts_with("alias/"));
    }
    id(key) && key.len() >= 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{parse_policy, Policy};
    use std::path::Path;

    const HEAD: &str =
        "name = \"db\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { B = \"y\" }\n";

    fn policy(backup: &str, retention: &str, copies: &str) -> Result<Policy, Vec<String>> {
        let text = format!(
            "{HEAD}[backup]\nkind = \"snapshot\"\n{backup}[retention]\nmax_age = \"30 days\"\n{retention}{copies}"
        );
        parse_policy(Path::new("db.toml"), &text)
            .map(|(p, _)| p)
            .map_err(|errors| {
                errors
                    .into_iter()
                    .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                    .collect()
            })
    }

    fn error(backup: &str, copies: &str) -> String {
        policy(backup, "", copies).expect_err("invalid").join("\n")
    }

    #[test]
    fn copies_take_the_policys_retention_unless_they_have_their_own() {
        let p = policy(
            "lock = { mode = \"compliance\", days = 7, cool_off_hours = 24 }\n",
            "require_recycle_bin = true\n",
            "[[copy]]\nto_region = \"eu-west-1\"\n\
             [[copy]]\nto_region = \"us-east-1\"\nto_account = \"dr\"\nkms_key = \"alias/dr\"\n[copy.retention]\nmax_age = \"1 year\"\nkeep_last = 3\n",
        )
        .unwrap();
        assert_eq!(p.copies.len(), 2);
        assert_eq!(p.copies[0].retention, p.retention, "the policy's");
        assert!(!p.copies[0].encrypted);
        assert_eq!(p.copies[1].to_account.as_deref(), Some("dr"));
        assert!(p.copies[1].encrypted, "a key means encrypted");
        assert_eq!(p.copies[1].retention.keep_last, 3);
        assert_eq!(
            p.backup.lock,
            Some(Lock {
                mode: LockMode::Compliance,
                days: 7,
                cool_off_hours: 24
            })
        );
        assert!(p.retention.require_recycle_bin);
        let protected = parse_policy(
            Path::new("web.toml"),
            &format!(
                "{HEAD}[backup]\nkind = \"ami\"\nderegistration_protection = \"cooldown\"\n[retention]\nmax_age = \"30 days\"\n"
            ),
        )
        .map(|(p, _)| p)
        .expect("valid");
        assert_eq!(
            protected.backup.deregistration_protection,
            Some(DeregistrationProtection::WithCooldown)
        );
    }

    #[test]
    fn mistakes_are_found_with_their_line() {
        let copy = |body: &str| format!("[[copy]]\n{body}");
        let e = error("", &copy("to_region = \"mars-1\"\n"));
        assert!(e.contains("\"mars-1\" is not an AWS region name"), "{e}");
        let e = error("", &copy("to_region = \"us-east-1\"\n"));
        assert!(e.contains("survives nothing"), "{e}");
        let e = error(
            "",
            &copy("to_region = \"eu-west-1\"\nto_account = \"111111111111\"\n"),
        );
        assert!(e.contains("needs `kms_key`"), "{e}");
        let e = error(
            "",
            &copy("to_region = \"eu-west-1\"\nkms_key = \"alias/x\"\nencrypted = false\n"),
        );
        assert!(e.contains("`encrypted = false` with a `kms_key`"), "{e}");
        let e = error(
            "",
            &format!(
                "{}{}",
                copy("to_region = \"eu-west-1\"\n"),
                copy("to_region = \"eu-west-1\"\n")
            ),
        );
        assert!(e.contains("12:13: a second [[copy]] to eu-west-1"), "{e}");
        let e = error("lock = { mode = \"strict\", days = 7 }\n", "");
        assert!(e.contains("unknown lock mode \"strict\""), "{e}");
        let e = error("lock = { mode = \"governance\", days = 0 }\n", "");
        assert!(e.contains("`days` is 0"), "{e}");
        let e = error(
            "lock = { mode = \"governance\", days = 3, cool_off_hours = 2 }\n",
            "",
        );
        assert!(e.contains("compliance locks only"), "{e}");
        // A lock longer than retention is valid: the plan warns.
        let long = policy("lock = { mode = \"governance\", days = 90 }\n", "", "").unwrap();
        let lock = long.backup.lock.expect("a lock");
        let why = lock.outlasts(&long.retention).expect("outlasts 30 days");
        assert!(
            why.contains("its lock (90 days) outlasts `max_age` (30 days)"),
            "{why}"
        );
        let short = Lock { days: 30, ..lock };
        assert_eq!(
            short.outlasts(&long.retention),
            None,
            "30 days is not longer"
        );
        let e = error("deregistration_protection = true\n", "");
        assert!(e.contains("applies to kind = \"ami\" only"), "{e}");
        let e = error(
            "",
            &copy("to_region = \"eu-west-1\"\nkms_key = \"my key\"\n"),
        );
        assert!(e.contains("\"my key\" is not a KMS key"), "{e}");
    }
}
