//! The accounts one policy set manages, when it manages more than the one
//! account of the standard credential chain.
//!
//! An accounts file (`accounts.toml` in the policy directory, or
//! `--accounts FILE`) lists each account with the role backupctl assumes in
//! it. Without one, backupctl works exactly as it always did: one account,
//! no role, no account on any plan item. The file is validated like a
//! policy (every error with its line), and it is part of what a saved plan
//! was made from: editing it makes a saved plan stale.

use crate::policy::{tags_match, LoadError, PolicyError, PolicySet, Regions};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use toml::Spanned;

mod discovery;
pub use discovery::{Discovered, Organization};

/// The file name that, in a policy directory, is the accounts file and not
/// a policy.
pub const FILE_NAME: &str = "accounts.toml";

/// One account backupctl works in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The 12-digit account id.
    pub id: String,
    /// What people call it; the id when the file gives no name.
    pub name: String,
    /// The roles assumed one after the other from the base credentials;
    /// the last one acts in the account.
    pub roles: Vec<String>,
    pub external_id: Option<String>,
    /// The regions the account may be planned in; `None`: the policies'.
    pub regions: Option<BTreeSet<String>>,
    pub tags: BTreeMap<String, String>,
}

/// Every account of the file, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSet {
    pub accounts: Vec<Account>,
    pub file: PathBuf,
    /// `sha256:` of the file's bytes.
    pub digest: String,
    /// Where more accounts come from, at run time (see [`discovery`]).
    pub organization: Option<Organization>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: Option<RawDefaults>,
    #[serde(default)]
    account: Vec<Spanned<RawAccount>>,
    organization: Option<Spanned<RawOrganization>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganization {
    from: Option<Vec<Spanned<String>>>,
    role_name: Option<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    reader_role: Option<Spanned<RawRole>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    role_name: Option<Spanned<String>>,
    external_id: Option<String>,
    regions: Option<Spanned<Vec<Spanned<String>>>>,
    partition: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    id: Spanned<String>,
    name: Option<Spanned<String>>,
    role: Option<Spanned<RawRole>>,
    external_id: Option<String>,
    regions: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRole {
    One(String),
    Chain(Vec<String>),
}

/// The accounts file to use: `--accounts FILE` if given, else
/// `accounts.toml` in the policy directory, else none.
pub fn find(policy_dir: &Path, given: Option<&Path>) -> Result<Option<AccountSet>, LoadError> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => {
            let p = policy_dir.join(FILE_NAME);
            if !p.is_file() {
                return Ok(None);
            }
            p
        }
    };
    let bytes = std::fs::read(&path).map_err(|error| LoadError::Io {
        path: path.clone(),
        error,
    })?;
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    let text = String::from_utf8(bytes).map_err(|_| {
        LoadError::Invalid(vec![PolicyError {
            file: path.clone(),
            line: 0,
            column: 0,
            message: "the file is not valid UTF-8 text; an accounts file must be UTF-8 TOML".into(),
            source_line: None,
        }])
    })?;
    let (accounts, organization) = parse(&path, &text).map_err(LoadError::Invalid)?;
    Ok(Some(AccountSet {
        accounts,
        file: path,
        digest,
        organization,
    }))
}

/// Parses and validates an accounts file, reporting every error found:
/// the accounts it lists, and where to discover more.
pub fn parse(
    path: &Path,
    text: &str,
) -> Result<(Vec<Account>, Option<Organization>), Vec<PolicyError>> {
    let at = |span: std::ops::Range<usize>, message: String| {
        crate::policy::error_at(path, text, span, message)
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        vec![at(span, crate::policy::toml_message(e.message()))]
    })?;
    let mut errors = Vec::new();
    let regions_of = |list: Spanned<Vec<Spanned<String>>>, errors: &mut Vec<PolicyError>| {
        let span = list.span();
        let list = list.into_inner();
        if list.is_empty() {
            errors.push(at(span, "`regions` is empty: list the regions backupctl may use in the account, like [\"us-east-1\"], or remove the key to use the policies' regions".into()));
        }
        let mut out = BTreeSet::new();
        for r in list {
            let span = r.span();
            let r = r.into_inner();
            if !crate::policy::valid_region(&r) {
                errors.push(at(span, format!("\"{r}\" is not an AWS region name; expected something like \"us-east-1\" (\"*\" is not allowed here: remove `regions` to use the policies' regions)")));
            } else if !out.insert(r.clone()) {
                errors.push(at(span, format!("region \"{r}\" is listed twice")));
            }
        }
        out
    };
    let defaults = raw.defaults.unwrap_or(RawDefaults {
        role_name: None,
        external_id: None,
        regions: None,
        partition: None,
    });
    let partition = match defaults.partition {
        Some(p) if !["aws", "aws-us-gov", "aws-cn"].contains(&p.get_ref().as_str()) => {
            errors.push(at(
                p.span(),
                format!(
                    "unknown partition \"{}\": expected \"aws\", \"aws-us-gov\" or \"aws-cn\"",
                    p.get_ref()
                ),
            ));
            "aws".to_string()
        }
        Some(p) => p.into_inner(),
        None => "aws".to_string(),
    };
    if let Some(name) = &defaults.role_name {
        if !valid_role_name(name.get_ref()) {
            errors.push(at(name.span(), format!("\"{}\" is not an IAM role name (a path like \"backup/backupctl\" may come first); expected letters, digits and +=,.@_-", name.get_ref())));
        }
    }
    let default_regions = defaults.regions.map(|r| regions_of(r, &mut errors));
    if raw.account.is_empty() && raw.organization.is_none() {
        errors.push(at(0..0, "the accounts file lists no account: add one [[account]] table per account, with its `id` (and `role`, or a `role_name` in [defaults]), or an [organization] table to discover them".into()));
    }
    let organization = raw.organization.map(|o| {
        let span = o.span();
        let o = o.into_inner();
        let mut from = Vec::new();
        for f in o.from.unwrap_or_default() {
            let (span, f) = (f.span(), f.into_inner());
            if !discovery::valid_parent(&f) {
                errors.push(at(span, format!("\"{f}\" is not an organization root or OU id; expected \"r-\" or \"ou-\" ids like \"r-ab12\" or \"ou-ab12-cd34ef56\" (aws organizations list-roots, list-organizational-units-for-parent), or remove `from` to take every account of the organization")));
            } else if from.contains(&f) {
                errors.push(at(span, format!("\"{f}\" is listed twice")));
            } else {
                from.push(f);
            }
        }
        let role_name = match o.role_name.as_ref().or(defaults.role_name.as_ref()) {
            Some(name) => {
                if !valid_role_name(name.get_ref()) {
                    errors.push(at(name.span(), format!("\"{}\" is not an IAM role name (a path like \"backup/backupctl\" may come first); expected letters, digits and +=,.@_-", name.get_ref())));
                }
                name.get_ref().clone()
            }
            None => {
                errors.push(at(span.clone(), "[organization] needs the name of the role backupctl assumes in each account it discovers: add `role_name = \"...\"` to [organization] or to [defaults]".into()));
                String::new()
            }
        };
        let reader = match o.reader_role {
            Some(r) => {
                let span = r.span();
                chain_of(r.into_inner(), "reader_role", &mut |m| errors.push(at(span.clone(), m)))
            }
            None => Vec::new(),
        };
        Organization {
            from,
            role_name,
            partition: partition.clone(),
            external_id: defaults.external_id.clone(),
            regions: default_regions.clone(),
            exclude: o.exclude.into_iter().map(Spanned::into_inner).collect(),
            reader,
        }
    });
    let mut accounts: Vec<Account> = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for entry in raw.account {
        let span = entry.span();
        let a = entry.into_inner();
        let id_span = a.id.span();
        let id = a.id.into_inner();
        if !(id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())) {
            errors.push(at(
                id_span.clone(),
                format!("\"{id}\" is not an AWS account id; expected 12 digits, as a string (\"111111111111\")"),
            ));
        }
        if accounts.iter().any(|o| o.id == id) {
            errors.push(at(id_span.clone(), format!("account {id} is listed twice")));
        }
        let name = match a.name {
            Some(n) => {
                let (span, n) = (n.span(), n.into_inner());
                if !valid_account_name(&n) {
                    errors.push(at(span.clone(), format!("invalid account name \"{n}\": expected 1 to 64 characters from letters, digits, '_', '.' and '-'")));
                }
                if let Some(other) = names.get(&n) {
                    errors.push(at(span, format!("account name \"{n}\" is already the name of account {other}; names must be unique")));
                }
                n
            }
            None => id.clone(),
        };
        names.insert(name.clone(), id.clone());
        let roles = match a.role {
            Some(r) => {
                let span = r.span();
                let chain = chain_of(r.into_inner(), "role", &mut |m| {
                    errors.push(at(span.clone(), m))
                });
                if let Some(last) = chain.last().filter(|arn| valid_role_arn(arn)) {
                    let in_account = last.split(':').nth(4).unwrap_or("");
                    if in_account != id {
                        errors.push(at(span, format!("the role {last} is in account {in_account}, not in account {id}; the last role of `role` must be one of the account's own roles")));
                    }
                }
                chain
            }
            None => match &defaults.role_name {
                Some(role) => vec![format!("arn:{partition}:iam::{id}:role/{}", role.get_ref())],
                None => {
                    errors.push(at(span, format!("account {id} has no `role`: give the ARN of the role backupctl assumes in it, or a `role_name` in [defaults] for every account")));
                    Vec::new()
                }
            },
        };
        let regions = match a.regions {
            Some(r) => Some(regions_of(r, &mut errors)),
            None => default_regions.clone(),
        };
        accounts.push(Account {
            id,
            name,
            roles,
            external_id: a.external_id.or_else(|| defaults.external_id.clone()),
            regions,
            tags: a.tags,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    accounts.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((accounts, organization))
}

/// A `role` (one ARN, or a chain of them), each ARN checked.
fn chain_of(role: RawRole, key: &str, error: &mut dyn FnMut(String)) -> Vec<String> {
    let chain = match role {
        RawRole::One(arn) => vec![arn],
        RawRole::Chain(chain) => chain,
    };
    if chain.is_empty() {
        error(format!(
            "`{key}` is empty: give the role's ARN, or a list of ARNs assumed one after the other"
        ));
    }
    for arn in &chain {
        if !valid_role_arn(arn) {
            error(format!("\"{arn}\" is not an IAM role ARN; expected arn:aws:iam::<12-digit account>:role/<name>"));
        }
    }
    chain
}

/// How people are shown an account: `name (id)`, or the id when the
/// account has no other name.
pub fn label(id: &str, name: &str) -> String {
    if name == id {
        id.to_string()
    } else {
        format!("{name} ({id})")
    }
}

fn valid_account_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 512
        && !name.starts_with('/')
        && !name.ends_with('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
}

/// `arn:<partition>:iam::<12 digits>:role/<path/name>`.
fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(valid_role_name)
}

impl AccountSet {
    /// The accounts `policy` selects: every one, unless its `accounts` or
    /// `account_tags` narrow it.
    pub fn selects(account: &Account, target: &crate::policy::Target) -> bool {
        let named = target.accounts.is_empty()
            || target
                .accounts
                .iter()
                .any(|a| *a == account.id || *a == account.name);
        named && tags_match(&target.account_tags, &tag_set(&account.tags))
    }

    /// The policy set as it acts in `account`: a policy that does not
    /// select the account targets no region there, and the others only the
    /// account's regions. Every policy stays in the set, so that the
    /// backups of one that does not act here are out of its scope (never
    /// deleted) rather than orphans.
    pub fn policies_for(account: &Account, policies: &PolicySet) -> PolicySet {
        let mut out = policies.clone();
        for p in &mut out.policies {
            if !AccountSet::selects(account, &p.target) {
                p.target.regions = Regions::List(Vec::new());
            } else if let (Some(allowed), Regions::List(list)) =
                (&account.regions, &mut p.target.regions)
            {
                list.retain(|r| allowed.contains(r));
            }
        }
        out
    }

    /// Whether any enabled policy of `narrowed` (the set as it acts in an
    /// account, from [`AccountSet::policies_for`]) acts there: an account
    /// none does is not even entered (no role is assumed in it).
    pub fn acts(narrowed: &PolicySet) -> bool {
        narrowed
            .enabled()
            .any(|p| p.target.regions != Regions::List(Vec::new()))
    }

    /// Checks that every account a policy names is in the file: a name
    /// that matches nothing would silently back up nothing.
    pub fn check(&self, policies: &PolicySet) -> Result<(), LoadError> {
        let mut errors = Vec::new();
        for p in &policies.policies {
            let copies_to = p.copies.iter().filter_map(|r| r.to_account.as_ref());
            for wanted in p.target.accounts.iter().chain(copies_to) {
                let what = if p.target.accounts.contains(wanted) {
                    "selects"
                } else {
                    "copies to ([[copy]] `to_account`)"
                };
                if !self
                    .accounts
                    .iter()
                    .any(|a| a.id == *wanted || a.name == *wanted)
                {
                    // An organisation may have hundreds: name a few.
                    let mut known: Vec<&str> = self
                        .accounts
                        .iter()
                        .take(10)
                        .map(|a| a.name.as_str())
                        .collect();
                    let more = self.accounts.len().saturating_sub(known.len());
                    let more = format!("and {more} more");
                    if self.accounts.len() > known.len() {
                        known.push(&more);
                    }
                    let whence = match &self.organization {
                        Some(_) => format!(
                            "neither {} nor AWS Organizations lists",
                            self.file.display()
                        ),
                        None => format!("{} does not list", self.file.display()),
                    };
                    errors.push(PolicyError {
                        file: p.file.clone(),
                        line: 0,
                        column: 0,
                        message: format!(
                            "policy \"{}\" {what} account \"{wanted}\", which {whence} (it lists {}); fix the name, or add the account to the file",
                            p.name,
                            known.join(", ")
                        ),
                        source_line: None,
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LoadError::Invalid(errors))
        }
    }

    /// Every account's id and name, each to its id: how a `[[copy]]
    /// to_account` names its account.
    pub fn names(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for a in &self.accounts {
            out.insert(a.name.clone(), a.id.clone());
            out.insert(a.id.clone(), a.id.clone());
        }
        out
    }

    /// What a saved plan over these accounts was made from: the policies
    /// and this file.
    pub fn digest_with(&self, policies: &PolicySet) -> String {
        let mut h = Sha256::new();
        h.update(policies.digest.as_bytes());
        h.update([0]);
        h.update(self.digest.as_bytes());
        format!("sha256:{:x}", h.finalize())
    }
}

/// Policies without an accounts file: a policy that names accounts has
/// nothing to name them in, and one that copies to another account cannot
/// act there (the copy is made by the destination account).
pub fn check_without(policies: &PolicySet) -> Result<(), LoadError> {
    let mut errors = Vec::new();
    for p in &policies.policies {
        let message = if !p.target.accounts.is_empty() || !p.target.account_tags.is_empty() {
            format!(
                "policy \"{}\" selects accounts, but there is no accounts file: add {FILE_NAME} to the policy directory (or pass --accounts FILE), or remove `accounts` and `account_tags` from [target]",
                p.name
            )
        } else if let Some(to) = p.copies.iter().find_map(|r| r.to_account.as_ref()) {
            format!(
                "policy \"{}\" copies to account \"{to}\" ([[copy]] `to_account`), but there is no accounts file: the copy is made from inside account {to}, so add {FILE_NAME} to the policy directory (or pass --accounts FILE) listing this account and {to} with the roles to assume in them, or remove `to_account`",
                p.name
            )
        } else {
            continue;
        };
        errors.push(PolicyError {
            file: p.file.clone(),
            line: 0,
            column: 0,
            message,
            source_line: None,
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Invalid(errors))
    }
}

fn tag_set(tags: &BTreeMap<String, String>) -> crate::inventory::Tags {
    tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// One of N independent jobs, each planning and applying its share of the
/// accounts (`--shard K/N`): an account belongs to shard
/// `1 + (first 8 bytes of SHA-256(id), big-endian) mod N`, so every job
/// agrees on it without talking to the others, and an account stays in its
/// shard whatever other accounts come and go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || {
            format!("\"{text}\" is not a shard: expected K/N with 1 <= K <= N <= 1000, e.g. 2/4 (the second of four jobs)")
        };
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index == 0 || index > count || count > 1000 {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard (1-based) an account id belongs to among `count`.
    pub fn of(id: &str, count: u32) -> u32 {
        let hash = Sha256::digest(id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32 + 1
    }

    pub fn contains(&self, id: &str) -> bool {
        Shard::of(id, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<Account> {
        parse(Path::new("accounts.toml"), text)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .0
    }

    fn errors(text: &str) -> Vec<String> {
        parse(Path::new("accounts.toml"), text)
            .expect_err("invalid")
            .into_iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect()
    }

    #[test]
    fn roles_come_from_the_account_or_the_default_name() {
        let accounts = parse_ok(
            r#"
[defaults]
role_name = "backupctl"
regions = ["us-east-1"]

[[account]]
id = "222222222222"
name = "staging"

[[account]]
id = "111111111111"
name = "prod"
role = ["arn:aws:iam::999999999999:role/hub", "arn:aws:iam::111111111111:role/backup"]
external_id = "x-1"
regions = ["eu-west-1", "us-east-1"]
tags = { env = "prod" }
"#,
        );
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[0].id, "111111111111", "sorted by id");
        assert_eq!(accounts[0].roles.len(), 2);
        assert_eq!(accounts[0].external_id.as_deref(), Some("x-1"));
        assert_eq!(accounts[0].regions.as_ref().map(|r| r.len()), Some(2));
        assert_eq!(
            accounts[1].roles,
            vec!["arn:aws:iam::222222222222:role/backupctl".to_string()]
        );
        assert_eq!(
            accounts[1].regions.as_ref().map(|r| r.len()),
            Some(1),
            "the default regions"
        );
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        let errs = errors(
            r#"[[account]]
id = "12345"
role = "arn:aws:iam::111111111111:role/backup"

[[account]]
id = "111111111111"
name = "prod"
regions = ["us-east-1", "us-east-1"]

[[account]]
id = "333333333333"
name = "prod"
"#,
        );
        let all = errs.join("\n");
        assert!(
            all.contains("2:6: \"12345\" is not an AWS account id"),
            "{all}"
        );
        assert!(
            all.contains("is in account 111111111111, not in account 12345"),
            "{all}"
        );
        assert!(
            all.contains("8:25: region \"us-east-1\" is listed twice"),
            "{all}"
        );
        assert!(all.contains("account 111111111111 has no `role`"), "{all}");
        assert!(
            all.contains("12:8: account name \"prod\" is already the name of account 111111111111"),
            "{all}"
        );
        assert!(errors("[[acount]]\nid = \"111111111111\"\n")[0].contains("unknown key"));
        assert!(errors("")[0].contains("lists no account"));
    }
}
