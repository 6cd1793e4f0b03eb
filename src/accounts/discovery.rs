//! Accounts found in AWS Organizations rather than listed one by one.
//!
//! An organisation adds and closes accounts without telling the team that
//! backs them up, so a hand-kept list drifts: a new account is silently
//! never backed up. With `[organization]` in the accounts file, each run
//! asks Organizations which accounts exist (all of them, or those under
//! some roots or OUs), enters every ACTIVE one through the same role name,
//! and lets the file's own `[[account]]` entries override what it says of
//! an account. This module is the pure half: what the file says, and how
//! what Organizations answered becomes the run's accounts. The calls are
//! in `provider::aws::organization`.

use super::{Account, AccountSet};
use std::collections::{BTreeMap, BTreeSet};

/// `[organization]`: where to discover accounts, and how to enter them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Roots (`r-…`) or OUs (`ou-…`) whose accounts, at any depth, are
    /// taken; empty: every account of the organisation.
    pub from: Vec<String>,
    /// The role (a name, maybe with a path) assumed in each account.
    pub role_name: String,
    pub partition: String,
    pub external_id: Option<String>,
    pub regions: Option<BTreeSet<String>>,
    /// Ids or names never entered (the management account, say).
    pub exclude: Vec<String>,
    /// Roles assumed to read Organizations (a delegated administrator);
    /// empty: the base credentials read it.
    pub reader: Vec<String>,
}

/// One account as Organizations describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub id: String,
    pub name: String,
    /// ACTIVE; a SUSPENDED (closed) or PENDING_CLOSURE account is not.
    pub active: bool,
    /// Only read when some policy selects accounts by tag.
    pub tags: BTreeMap<String, String>,
}

/// `r-` then 4 to 32 lowercase letters or digits, or `ou-` then that and
/// `-` and 8 to 32 more, as Organizations spells its ids.
pub fn valid_parent(id: &str) -> bool {
    let part = |s: &str, min: usize| {
        (min..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if let Some(rest) = id.strip_prefix("r-") {
        return part(rest, 4);
    }
    match id.strip_prefix("ou-").and_then(|rest| rest.split_once('-')) {
        Some((root, ou)) => part(root, 4) && part(ou, 8),
        None => false,
    }
}

impl Organization {
    /// The role ARN of a discovered account.
    pub fn role_in(&self, id: &str) -> String {
        format!("arn:{}:iam::{id}:role/{}", self.partition, self.role_name)
    }

    /// The account that reads Organizations when a reader role is given.
    pub fn reader_account(&self) -> Option<Account> {
        let last = self.reader.last()?;
        let id = last.split(':').nth(4).unwrap_or("").to_string();
        Some(Account {
            name: format!("organization reader {id}"),
            id,
            roles: self.reader.clone(),
            external_id: None,
            regions: None,
            tags: BTreeMap::new(),
        })
    }

    /// Whether `exclude` names the account (by id or name).
    pub fn excludes(&self, id: &str, name: &str) -> bool {
        self.exclude.iter().any(|e| e == id || e == name)
    }
}

impl AccountSet {
    /// The run's accounts: the file's, plus every ACTIVE account
    /// Organizations `found` that is not excluded. A file entry for a
    /// discovered account wins over what discovery would make of it (its
    /// name, role, regions; its tags on top of the organisation's). A file
    /// entry for an account the organisation has closed is dropped. What
    /// was left out, and why, comes back as notes for the operator.
    pub fn add_discovered(&mut self, found: Vec<Discovered>) -> Vec<String> {
        let Some(org) = self.organization.clone() else {
            return Vec::new();
        };
        let mut notes = Vec::new();
        let mut inactive = Vec::new();
        let mut excluded = 0;
        let mut by_id: BTreeMap<String, Account> =
            self.accounts.drain(..).map(|a| (a.id.clone(), a)).collect();
        let listed: BTreeSet<String> = by_id.keys().cloned().collect();
        let mut names: BTreeMap<String, String> = by_id
            .values()
            .map(|a| (a.name.clone(), a.id.clone()))
            .collect();
        let mut found = found;
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        for d in found {
            if !d.active {
                if by_id.remove(&d.id).is_some() {
                    notes.push(format!(
                        "account {} is listed in {} but is closed in the organization; it is not entered",
                        super::label(&d.id, &d.name),
                        self.file.display()
                    ));
                }
                inactive.push(d.id);
                continue;
            }
            if let Some(listed) = by_id.get_mut(&d.id) {
                for (k, v) in d.tags {
                    listed.tags.entry(k).or_insert(v);
                }
                if listed.name == listed.id && !names.contains_key(&d.name) {
                    names.insert(d.name.clone(), d.id.clone());
                    listed.name = d.name;
                }
                continue;
            }
            if org.excludes(&d.id, &d.name) {
                excluded += 1;
                continue;
            }
            let name = if d.name.is_empty() || names.contains_key(&d.name) {
                if !d.name.is_empty() {
                    notes.push(format!(
                        "account {} has the same name as account {} in the organization; it is called by its id",
                        d.id, names[&d.name]
                    ));
                }
                d.id.clone()
            } else {
                d.name.clone()
            };
            names.insert(name.clone(), d.id.clone());
            by_id.insert(
                d.id.clone(),
                Account {
                    roles: vec![org.role_in(&d.id)],
                    id: d.id,
                    name,
                    external_id: org.external_id.clone(),
                    regions: org.regions.clone(),
                    tags: d.tags,
                },
            );
        }
        if !inactive.is_empty() {
            notes.push(format!(
                "{} closed (not ACTIVE) account(s) of the organization are left out: {}",
                inactive.len(),
                inactive.join(", ")
            ));
        }
        if excluded > 0 {
            notes.push(format!(
                "{excluded} account(s) of the organization are left out by `exclude` in {}",
                self.file.display()
            ));
        }
        let discovered = by_id.keys().filter(|id| !listed.contains(*id)).count();
        notes.push(format!(
            "{} account(s): {discovered} discovered in AWS Organizations{}, {} listed in {}",
            by_id.len(),
            if org.from.is_empty() {
                String::new()
            } else {
                format!(" under {}", org.from.join(", "))
            },
            by_id.len() - discovered,
            self.file.display()
        ));
        self.accounts = by_id.into_values().collect();
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set(text: &str) -> AccountSet {
        let (accounts, organization) =
            super::super::parse(Path::new("accounts.toml"), text).expect("valid");
        AccountSet {
            accounts,
            file: "accounts.toml".into(),
            digest: String::new(),
            organization,
        }
    }

    fn found(id: &str, name: &str, active: bool, tags: &[(&str, &str)]) -> Discovered {
        Discovered {
            id: id.into(),
            name: name.into(),
            active,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn parent_ids_are_checked() {
        assert!(valid_parent("r-ab12"));
        assert!(valid_parent("ou-ab12-cd34ef56"));
        assert!(!valid_parent("ou-ab12"));
        assert!(!valid_parent("r-AB12"));
        assert!(!valid_parent("111111111111"));
    }

    #[test]
    fn active_accounts_are_entered_and_the_file_overrides_them() {
        let mut set = set(r#"
[defaults]
regions = ["us-east-1"]

[organization]
from = ["ou-ab12-cd34ef56"]
role_name = "backup/backupctl"
exclude = ["management"]

[[account]]
id = "111111111111"
role = "arn:aws:iam::111111111111:role/special"
tags = { env = "prod" }

[[account]]
id = "555555555555"
name = "gone"
role = "arn:aws:iam::555555555555:role/special"
"#);
        let notes = set.add_discovered(vec![
            found(
                "111111111111",
                "Prod",
                true,
                &[("env", "test"), ("team", "a")],
            ),
            found("222222222222", "Staging", true, &[("team", "b")]),
            found("333333333333", "Staging", true, &[]),
            found("444444444444", "management", true, &[]),
            found("555555555555", "gone", false, &[]),
            found("666666666666", "old", false, &[]),
        ]);
        let ids: Vec<&str> = set.accounts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["111111111111", "222222222222", "333333333333"]);
        let prod = &set.accounts[0];
        assert_eq!(prod.name, "Prod", "the file gave no name");
        assert_eq!(prod.roles, ["arn:aws:iam::111111111111:role/special"]);
        assert_eq!(prod.tags["env"], "prod", "the file's tag wins");
        assert_eq!(prod.tags["team"], "a");
        let staging = &set.accounts[1];
        assert_eq!(
            staging.roles,
            ["arn:aws:iam::222222222222:role/backup/backupctl"]
        );
        assert_eq!(staging.regions.as_ref().map(|r| r.len()), Some(1));
        assert_eq!(set.accounts[2].name, "333333333333", "a repeated name");
        let all = notes.join("\n");
        assert!(
            all.contains("555555555555") && all.contains("closed"),
            "{all}"
        );
        assert!(all.contains("2 closed (not ACTIVE)"), "{all}");
        assert!(
            all.contains("1 account(s) of the organization are left out by `exclude`"),
            "{all}"
        );
        assert!(all.contains("3 account(s): 2 discovered"), "{all}");
    }

    #[test]
    fn an_organization_needs_a_role_name_and_valid_parents() {
        let errors = super::super::parse(
            Path::new("accounts.toml"),
            "[organization]\nfrom = [\"ou-x\"]\nreader_role = \"nope\"\n",
        )
        .expect_err("invalid");
        let all: Vec<String> = errors
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect();
        let all = all.join("\n");
        assert!(
            all.contains("2:9: \"ou-x\" is not an organization root or OU id"),
            "{all}"
        );
        assert!(all.contains("needs the name of the role"), "{all}");
        assert!(
            all.contains("3:15: \"nope\" is not an IAM role ARN"),
            "{all}"
        );
    }
}
