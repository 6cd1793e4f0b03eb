//! The JSON plan is a public contract. These are the test's own copies of the
//! wire types, with `deny_unknown_fields`: adding, renaming or removing a
//! field breaks this test, so a format change is always deliberate.

use crate::support::{backupctl, root, stdout};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    format_version: String,
    tool: Tool,
    /// Plans that span accounts only.
    #[serde(default)]
    accounts: Vec<Account>,
    generated_at: String,
    policies_digest: String,
    inventory_fingerprint: String,
    changes: Vec<Change>,
    kept: Vec<Kept>,
    blocked: Vec<Blocked>,
    orphans: Vec<Orphan>,
    out_of_scope: Vec<Orphan>,
    warnings: Vec<String>,
    covered: Vec<Covered>,
    summary: Summary,
    checksum: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Covered {
    /// Plans that span accounts only.
    account: Option<String>,
    policy: String,
    region: String,
    source: String,
    resource_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Account {
    id: String,
    name: String,
    inventory_fingerprint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tool {
    name: String,
    version: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    /// Plans that span accounts only.
    account: Option<String>,
    address: String,
    actions: Vec<String>,
    operation: String,
    policy: String,
    region: String,
    resource_type: String,
    source: String,
    id: Option<String>,
    snapshot_ids: Option<Vec<String>>,
    kept_snapshot_ids: Option<Vec<String>>,
    source_account: Option<String>,
    share_with: Option<String>,
    source_region: Option<String>,
    source_ids: Option<Vec<String>>,
    encrypted: Option<bool>,
    kms_key: Option<String>,
    lock_mode: Option<String>,
    lock_expires_at: Option<String>,
    cool_off_hours: Option<u32>,
    cooldown: Option<bool>,
    recycle_bin: Option<Bin>,
    name: Option<String>,
    reboot: Option<bool>,
    volume_ids: Option<Vec<String>>,
    exclude_boot_volume: Option<bool>,
    exclude_data_volume_ids: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
    backups_left: Option<BackupsLeft>,
    depends_on: DependsOn,
    reason: Reason,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bin {
    retained: bool,
    #[serde(default)]
    rules: Vec<String>,
    days: Option<u32>,
    why: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DependsOn {
    newest_backup_at: Option<String>,
    state: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupsLeft {
    before: usize,
    after: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    code: String,
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kept {
    /// Plans that span accounts only.
    account: Option<String>,
    policy: String,
    region: String,
    resource_type: String,
    source: String,
    id: String,
    #[serde(default)]
    snapshot_ids: Vec<String>,
    reason: Reason,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Blocked {
    /// Plans that span accounts only.
    account: Option<String>,
    policy: String,
    region: String,
    resource_type: String,
    source: String,
    id: String,
    set_id: Option<String>,
    image_ids: Vec<String>,
    until: Option<String>,
    reason: Reason,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Orphan {
    /// Plans that span accounts only.
    account: Option<String>,
    policy: String,
    region: String,
    resource_type: String,
    id: String,
    source: Option<String>,
    created_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Summary {
    create: usize,
    delete: usize,
    #[serde(default)]
    adopt: usize,
    #[serde(default)]
    lock: usize,
    #[serde(default)]
    protect: usize,
    #[serde(default)]
    unprotect: usize,
    #[serde(default)]
    share: usize,
    #[serde(default)]
    unshare: usize,
    blocked: usize,
    orphans: usize,
    out_of_scope: usize,
}

/// Checks a JSON plan document against the contract (for plans made by
/// other tests, e.g. across accounts).
pub fn check_document(text: &str, name: &str) {
    let plan: Plan = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{name}: does not match the contract: {e}"));
    check(&plan, name);
}

fn check(plan: &Plan, name: &str) {
    assert_eq!(plan.format_version, "1.9", "{name}");
    assert_eq!(plan.tool.name, "backupctl", "{name}");
    assert!(!plan.tool.version.is_empty(), "{name}");
    assert!(plan.generated_at.ends_with('Z'), "{name}: UTC RFC 3339");
    assert!(plan.policies_digest.starts_with("sha256:"), "{name}");
    assert!(plan.inventory_fingerprint.starts_with("sha256:"), "{name}");
    assert!(plan.checksum.starts_with("sha256:"), "{name}");
    let creates = plan
        .changes
        .iter()
        .filter(|c| c.actions == ["create"])
        .count();
    let deletes = plan
        .changes
        .iter()
        .filter(|c| c.actions == ["delete"])
        .count();
    let updates = plan
        .changes
        .iter()
        .filter(|c| c.actions == ["update"])
        .count();
    assert_eq!(
        creates + deletes + updates,
        plan.changes.len(),
        "{name}: actions are [create], [update] or [delete]"
    );
    let count = |op: &str| plan.changes.iter().filter(|c| c.operation == op).count();
    let (locks, protects, unprotects) = (
        count("lock_snapshots"),
        count("protect_image"),
        count("unprotect_image"),
    );
    let shares = count("share_image") + count("share_snapshot");
    let unshares = count("unshare_image") + count("unshare_snapshot");
    assert_eq!(
        (
            plan.summary.create,
            plan.summary.delete,
            plan.summary.adopt,
            plan.summary.lock,
            plan.summary.protect,
            plan.summary.unprotect,
            plan.summary.share,
            plan.summary.unshare,
        ),
        (
            creates,
            deletes,
            updates - locks - protects - unprotects - shares - unshares,
            locks,
            protects,
            unprotects,
            shares,
            unshares,
        ),
        "{name}"
    );
    assert_eq!(plan.summary.blocked, plan.blocked.len(), "{name}");
    assert_eq!(plan.summary.orphans, plan.orphans.len(), "{name}");
    assert_eq!(plan.summary.out_of_scope, plan.out_of_scope.len(), "{name}");
    let mut addresses: Vec<&str> = plan.changes.iter().map(|c| c.address.as_str()).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        plan.changes.len(),
        "{name}: addresses are unique"
    );
    let ids: Vec<&str> = plan.accounts.iter().map(|a| a.id.as_str()).collect();
    for a in &plan.accounts {
        assert!(a.id.len() == 12 && !a.name.is_empty(), "{name}");
        assert!(a.inventory_fingerprint.starts_with("sha256:"), "{name}");
    }
    let accounts = plan
        .changes
        .iter()
        .map(|c| &c.account)
        .chain(plan.kept.iter().map(|k| &k.account))
        .chain(plan.blocked.iter().map(|b| &b.account))
        .chain(plan.orphans.iter().map(|o| &o.account))
        .chain(plan.out_of_scope.iter().map(|o| &o.account))
        .chain(plan.covered.iter().map(|c| &c.account));
    for account in accounts {
        match account {
            Some(id) => assert!(ids.contains(&id.as_str()), "{name}: account {id} is listed"),
            None => assert!(
                ids.is_empty(),
                "{name}: every item of a plan of accounts has one"
            ),
        }
    }
    for c in &plan.changes {
        let account = c
            .account
            .as_ref()
            .map_or(String::new(), |a| format!("{a}/"));
        assert!(c
            .address
            .starts_with(&format!("{account}{}/{}/{}/", c.policy, c.region, c.source)));
        assert!(
            ["image", "snapshot"].contains(&c.resource_type.as_str()),
            "{name}"
        );
        assert!(!c.reason.message.is_empty() && !c.reason.code.is_empty());
        match c.operation.as_str() {
            "create_image" => {
                assert_eq!(c.resource_type, "image");
                let name_tag = c.tags.as_ref().and_then(|t| t.get("Name"));
                assert_eq!(
                    name_tag,
                    c.name.as_ref(),
                    "{name}: Name tag is the AMI name"
                );
                assert!(c.reboot.is_some() && c.id.is_none());
                let ami = c.name.as_deref().unwrap();
                assert!(
                    ami.len() <= 128 && !ami.contains(':'),
                    "valid AMI name {ami}"
                );
            }
            "create_snapshots" => {
                assert_eq!(c.resource_type, "snapshot");
                assert!(!c.volume_ids.as_ref().unwrap().is_empty());
                assert!(c.exclude_boot_volume.is_some() && c.exclude_data_volume_ids.is_some());
            }
            "deregister_image" => {
                assert_eq!(c.resource_type, "image");
                assert!(c.id.as_deref().unwrap().starts_with("ami-"));
                assert!(c.snapshot_ids.is_some() && c.kept_snapshot_ids.is_some());
                assert!(c.tags.is_none());
            }
            "delete_snapshot" => {
                assert_eq!(c.resource_type, "snapshot");
                assert!(c.id.as_deref().unwrap().starts_with("snap-"));
            }
            "copy_image" | "copy_snapshots" => {
                assert_eq!(c.actions, ["create"]);
                assert_eq!(
                    c.operation,
                    format!("copy_{}", c.resource_type).replace("snapshot", "snapshots")
                );
                let from = c.source_region.as_deref().unwrap();
                // Within an account, a copy goes to another region; across
                // accounts, its copy-of names the account too.
                let from = match &c.source_account {
                    None => {
                        assert_ne!(from, c.region, "{name}: a copy goes to another region");
                        from.to_string()
                    }
                    Some(account) => {
                        assert_ne!(c.account.as_ref(), Some(account), "{name}");
                        format!("{account}/{from}")
                    }
                };
                let ids = c.source_ids.as_ref().unwrap();
                assert!(!ids.is_empty() && c.encrypted.is_some());
                if c.kms_key.is_some() {
                    assert_eq!(c.encrypted, Some(true), "{name}: a key encrypts");
                }
                let tags = c.tags.as_ref().unwrap();
                assert_eq!(tags["backupctl:policy"], c.policy);
                assert_eq!(tags["backupctl:source"], c.source);
                assert!(tags.contains_key("backupctl:created-at"));
                if c.resource_type == "image" {
                    assert_eq!(ids.len(), 1);
                    assert!(c.name.is_some());
                    assert_eq!(tags["backupctl:copy-of"], format!("{from}/{}", ids[0]));
                    assert!(c.address.ends_with(&format!("/copy-of-{}", ids[0])));
                } else {
                    // Each snapshot's copy-of is written by apply.
                    let set = &tags["backupctl:set"];
                    assert!(c.address.ends_with(&format!("/copy-of-{set}")));
                }
                assert_eq!(c.reason.code, "not_copied");
            }
            "adopt_image" | "adopt_snapshot" => {
                assert_eq!(c.actions, ["update"]);
                assert_eq!(c.operation, format!("adopt_{}", c.resource_type));
                let id = c.id.as_deref().unwrap();
                assert!(id.starts_with("ami-") || id.starts_with("snap-"), "{id}");
                assert!(c.address.ends_with(&format!("/adopt-{id}")));
                let tags = c.tags.as_ref().unwrap();
                for key in [
                    "backupctl:policy",
                    "backupctl:source",
                    "backupctl:created-at",
                    "backupctl:adopted-from",
                ] {
                    assert!(tags.contains_key(key), "{name}: {key} in {tags:?}");
                }
                assert_eq!(tags["backupctl:policy"], c.policy);
                let was = c.depends_on.tags.as_ref().unwrap();
                assert!(
                    !was.contains_key("backupctl:policy"),
                    "{name}: adopts an owned backup"
                );
            }
            "delete_snapshot_set" => {
                assert_eq!(c.resource_type, "snapshot");
                assert!(!c.id.as_deref().unwrap().is_empty());
                let ids = c.snapshot_ids.as_ref().unwrap();
                assert!(!ids.is_empty() && ids.iter().all(|s| s.starts_with("snap-")));
                let set = c
                    .depends_on
                    .tags
                    .as_ref()
                    .and_then(|t| t.get("backupctl:set"));
                assert_eq!(set, c.id.as_ref(), "{name}: a set is named by its tag");
            }
            "lock_snapshots" => {
                assert_eq!(c.actions, ["update"]);
                let id = c.id.as_deref().unwrap();
                assert!(c.address.ends_with(&format!("/lock-{id}")));
                let ids = c.snapshot_ids.as_ref().unwrap();
                assert!(!ids.is_empty() && ids.iter().all(|s| s.starts_with("snap-")));
                let mode = c.lock_mode.as_deref().unwrap();
                assert!(
                    ["governance", "compliance"].contains(&mode),
                    "{name}: {mode}"
                );
                if c.cool_off_hours.is_some() {
                    assert_eq!(mode, "compliance", "{name}: a cool-off is for compliance");
                }
                let until = c.lock_expires_at.as_deref().unwrap();
                assert!(until.ends_with('Z') && until > plan.generated_at.as_str());
                assert_eq!(c.reason.code, "not_locked");
            }
            "share_image" | "share_snapshot" | "unshare_image" | "unshare_snapshot" => {
                assert_eq!(c.actions, ["update"]);
                let to = c.share_with.as_deref().unwrap();
                assert!(to.len() == 12 && c.account.as_deref() != Some(to), "{name}");
                let id = c.id.as_deref().unwrap();
                let verb = c.operation.split('_').next().unwrap();
                assert!(
                    c.address.ends_with(&format!("/{verb}-{id}-with-{to}")),
                    "{name}: {}",
                    c.address
                );
                let ids = c.snapshot_ids.as_ref().unwrap();
                assert!(ids.iter().all(|s| s.starts_with("snap-")), "{name}");
                let code = if verb == "share" {
                    "not_copied"
                } else {
                    "share_not_needed"
                };
                assert_eq!(c.reason.code, code, "{name}");
            }
            "protect_image" | "unprotect_image" => {
                assert_eq!(
                    (c.actions.as_slice(), c.resource_type.as_str()),
                    (&["update".to_string()][..], "image")
                );
                let id = c.id.as_deref().unwrap();
                assert!(id.starts_with("ami-"), "{name}: {id}");
                let verb = c.operation.trim_end_matches("_image");
                assert!(c.address.ends_with(&format!("/{verb}-{id}")), "{name}");
                assert_eq!(c.cooldown.is_some(), verb == "protect", "{name}");
                if verb == "protect" {
                    assert_eq!(c.reason.code, "not_protected");
                } else {
                    // Retention's reason: the image goes.
                    assert!(c
                        .reason
                        .message
                        .contains("deregistration protection goes first"));
                }
            }
            other => panic!("{name}: unknown operation {other}"),
        }
        match c.operation.as_str() {
            "lock_snapshots" => {}
            // A new set of a policy with a governance lock is locked at once.
            "create_snapshots" if c.lock_mode.is_some() => {
                assert_eq!(c.lock_mode.as_deref(), Some("governance"), "{name}");
                let until = c.lock_expires_at.as_deref().expect("a lock's end");
                assert!(until.ends_with('Z') && until > plan.generated_at.as_str());
                assert!(c.cool_off_hours.is_none(), "{name}: {}", c.address);
            }
            _ => assert!(
                c.lock_mode.is_none() && c.lock_expires_at.is_none() && c.cool_off_hours.is_none(),
                "{name}: {}",
                c.address
            ),
        }
        if let Some(bin) = &c.recycle_bin {
            assert_eq!(c.actions, ["delete"], "{name}: where a deletion goes");
            match bin.retained {
                true => assert!(!bin.rules.is_empty() && bin.days.is_some() && bin.why.is_none()),
                false => assert!(bin.rules.is_empty() && bin.days.is_none() && bin.why.is_some()),
            }
        }
        match (&c.backups_left, c.actions == ["delete"]) {
            (Some(left), true) => assert!(left.after < left.before, "{name}: {}", c.address),
            (None, false) => {}
            _ => panic!("{name}: backups_left is for deletions only: {}", c.address),
        }
        let d = &c.depends_on;
        if c.actions == ["create"] {
            assert!(
                d.state.is_none() && d.tags.is_none(),
                "{name}: {}",
                c.address
            );
            if let Some(t) = &d.newest_backup_at {
                assert!(t.ends_with('Z') && t.as_str() < plan.generated_at.as_str());
            }
        } else {
            assert!(d.newest_backup_at.is_none(), "{name}: {}", c.address);
            assert!(d.state.is_some(), "{name}: {}", c.address);
            let tags = d
                .tags
                .as_ref()
                .expect("deletions and adoptions record the tags they depend on");
            // A deletion's or lock's backup is the policy's (once adopted,
            // for one the same plan adopts); an adoption's is nobody's yet.
            let owner = (!c.operation.starts_with("adopt_")).then_some(&c.policy);
            assert_eq!(tags.get("backupctl:policy"), owner, "{name}: {}", c.address);
        }
        if c.actions == ["create"] {
            let tags = c.tags.as_ref().expect("creations list their tags");
            for key in [
                "backupctl:policy",
                "backupctl:source",
                "backupctl:created-at",
                "Name",
            ] {
                assert!(tags.contains_key(key), "{name}: {key} on {}", c.address);
            }
            assert_eq!(tags["backupctl:policy"], c.policy);
            assert_eq!(tags["backupctl:source"], c.source);
            if c.operation == "create_snapshots" {
                assert!(tags.contains_key("backupctl:set"), "{name}: {}", c.address);
            }
        }
    }
    for k in &plan.kept {
        assert!(!k.policy.is_empty() && !k.region.is_empty() && !k.source.is_empty());
        assert!(["image", "snapshot"].contains(&k.resource_type.as_str()));
        assert!(!k.id.is_empty() && !k.reason.code.is_empty());
        assert!(k.snapshot_ids.iter().all(|s| s.starts_with("snap-")));
    }
    for b in &plan.blocked {
        // Blocked by the images that use it, by a lock until a date, or
        // (an image) by its deregistration protection.
        // The image, when the image itself is held (its protection, a
        // required Recycle Bin rule).
        let kind = if b.image_ids.first() == Some(&b.id) {
            "image"
        } else {
            "snapshot"
        };
        assert_eq!(b.resource_type, kind, "{name}");
        if b.reason.code == "protected" {
            assert_eq!(kind, "image", "{name}");
        }
        match b.reason.code.as_str() {
            "in_use" => assert!(!b.image_ids.is_empty() && b.until.is_none(), "{name}"),
            "locked" => {
                let until = b.until.as_deref().expect("a lock says until when");
                assert!(until.ends_with('Z') && until > plan.generated_at.as_str());
            }
            "no_recycle_bin" => assert!(b.until.is_none(), "{name}"),
            "protected" => {
                assert_eq!(b.image_ids, std::slice::from_ref(&b.id), "{name}");
                assert!(b
                    .until
                    .as_deref()
                    .is_none_or(|t| t > plan.generated_at.as_str()));
            }
            other => panic!("{name}: blocked for {other}"),
        }
        assert!(
            !b.policy.is_empty()
                && !b.region.is_empty()
                && !b.source.is_empty()
                && !b.id.is_empty()
        );
    }
    if let Some(set) = plan.blocked.iter().find_map(|b| b.set_id.as_ref()) {
        assert!(!set.is_empty());
    }
    for o in plan.orphans.iter().chain(&plan.out_of_scope) {
        assert!(!o.policy.is_empty() && !o.region.is_empty() && !o.id.is_empty());
        assert!(["image", "snapshot"].contains(&o.resource_type.as_str()));
        assert!(o.created_at.ends_with('Z'));
        let _ = &o.source;
    }
    let _ = &plan.warnings;
    for c in &plan.covered {
        assert!(!c.policy.is_empty() && !c.region.is_empty() && c.source.starts_with("i-"));
        assert!(["image", "snapshot"].contains(&c.resource_type.as_str()));
    }
    // Every source a creation backs up is covered by that policy (a copy's
    // in the region it is copied from).
    for c in plan.changes.iter().filter(|c| c.actions == ["create"]) {
        let region = c.source_region.as_ref().unwrap_or(&c.region);
        assert!(
            plan.covered
                .iter()
                .any(|v| v.policy == c.policy && &v.region == region && v.source == c.source),
            "{name}: {} is created but not covered",
            c.address
        );
    }
}

#[test]
fn every_golden_json_plan_matches_the_documented_contract() {
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("fixtures")).unwrap() {
        let path = entry.unwrap().path().join("plan.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let plan: Plan =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            check(&plan, &path.display().to_string());
            seen += 1;
        }
    }
    assert!(seen >= 5, "golden JSON plans found: {seen}");
}

#[test]
fn the_demo_plan_is_what_the_readme_describes() {
    let out = backupctl(&[
        "plan",
        "--state",
        "fixtures/demo/inventory.json",
        "--at",
        "2026-11-22T06:00:00Z",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let plan: Plan = serde_json::from_str(&stdout(&out)).unwrap();
    check(&plan, "demo");
    assert_eq!(plan.generated_at, "2026-11-22T06:00:00Z");
    // The unmanaged golden image and the foreign image are never in a change.
    for c in &plan.changes {
        assert_ne!(c.id.as_deref(), Some("ami-0c0ffee000000001"));
        assert_ne!(c.id.as_deref(), Some("ami-0c0ffee000000002"));
    }
    assert_eq!(plan.blocked.len(), 1);
    assert_eq!(plan.blocked[0].image_ids, ["ami-0c0ffee000000002"]);
    assert_eq!(plan.orphans.len(), 2);
    assert!(plan.orphans.iter().all(|o| o.policy == "nightly-old"));
}
