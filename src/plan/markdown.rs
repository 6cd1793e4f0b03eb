//! The plan as Markdown, for a pull-request comment: counts first, a warning
//! when anything is deleted, then creations and deletions per policy and
//! region in collapsible sections, and blocked deletions and orphans called
//! out. Rendered from the plan alone, deterministic.

use super::{Action, Change, Plan, ReasonCode};
use chrono::SecondsFormat;
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    let sum = plan.summary();
    let at = plan.generated_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let _ = writeln!(s, "### backupctl plan\n");
    if plan.has_changes() {
        let _ = writeln!(
            s,
            "**{} to create, {} to delete{}**, {} blocked, {} orphaned (as of {at})\n",
            sum.create,
            sum.delete,
            super::updates_suffix(&sum),
            sum.blocked,
            sum.orphans
        );
    } else {
        let _ = writeln!(
            s,
            "**No changes.** {} blocked, {} orphaned (as of {at})\n",
            sum.blocked, sum.orphans
        );
    }
    if sum.delete > 0 {
        let _ = writeln!(
            s,
            "> **Warning:** this plan deletes {} backup{}. Check the deletions below before merging.\n",
            sum.delete,
            if sum.delete == 1 { "" } else { "s" }
        );
    }
    let mut groups: BTreeMap<(&Option<String>, &str, &str), Vec<&Change>> = BTreeMap::new();
    for c in &plan.changes {
        groups
            .entry((&c.account, &c.policy, &c.region))
            .or_default()
            .push(c);
    }
    let mut heading: Option<&Option<String>> = None;
    for ((account, policy, region), changes) in groups {
        if heading != Some(account) {
            heading = Some(account);
            if let Some(label) = plan.account_label(account.as_ref()) {
                let _ = writeln!(s, "#### Account {label}\n");
            }
        }
        let counts = super::Summary::of(changes.iter().copied());
        let _ = writeln!(
            s,
            "<details><summary><code>{policy}</code> in <code>{region}</code>: {} to create, {} to delete{}</summary>\n",
            counts.create,
            counts.delete,
            super::updates_suffix(&counts)
        );
        let _ = writeln!(s, "| | what | source | why |\n|---|---|---|---|");
        for c in changes {
            let (sign, what) = describe(c);
            let mut why = c.reason.message.clone();
            if let Some(left) = c.backups_left {
                why += &format!("; {} of {} left", left.after, left.before);
            }
            if let Some(fate) = &c.recycle_bin {
                why += &format!("; {}", super::fate_words(fate));
            }
            let _ = writeln!(s, "| {sign} | {what} | `{}` | {} |", c.source, cell(&why));
        }
        let _ = writeln!(s, "\n</details>\n");
    }
    if !plan.blocked.is_empty() {
        let _ = writeln!(
            s,
            "**Blocked** (retention would delete these, but an image uses them, a lock or deregistration protection holds them, or no Recycle Bin rule retains them):\n"
        );
        for b in &plan.blocked {
            let images = b
                .image_ids
                .iter()
                .map(|i| format!("`{i}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let until = b
                .until
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
            let why = match (b.reason.code, until) {
                (ReasonCode::InUse, _) => format!("used by {images}"),
                (ReasonCode::Protected, Some(until)) => {
                    format!("deregistration protection until {until}")
                }
                (ReasonCode::Locked, Some(until)) if images.is_empty() => {
                    format!("locked until {until}")
                }
                (ReasonCode::Locked, Some(until)) => {
                    format!("locked until {until}, so image {images} stays")
                }
                // Unprotected by hand, an unreadable protection, no Recycle
                // Bin rule: the whole reason says what to do.
                _ => cell(&b.reason.message),
            };
            let (kind, id) = b.what();
            let _ = writeln!(
                s,
                "- {kind} `{id}` of `{}` ({}`{}` in `{}`): {why}",
                b.source,
                in_account(plan, b.account.as_ref()),
                b.policy,
                b.region,
            );
        }
        let _ = writeln!(s);
    }
    if !plan.orphans.is_empty() {
        let _ = writeln!(
            s,
            "**Orphans** (their policy is not in the set; never deleted):\n"
        );
        for o in &plan.orphans {
            let _ = writeln!(
                s,
                "- {} `{}` in {}`{}`, policy `{}`, created {}",
                o.resource_type.as_str(),
                o.id,
                in_account(plan, o.account.as_ref()),
                o.region,
                o.policy,
                o.created_at.format("%Y-%m-%d")
            );
        }
        let _ = writeln!(s);
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(s, "**Warnings:**\n");
        for w in &plan.warnings {
            let _ = writeln!(s, "- {w}");
        }
        let _ = writeln!(s);
    }
    s
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn describe(c: &Change) -> (&'static str, String) {
    match &c.action {
        Action::Adopt {
            resource_type,
            id,
            snapshot_ids,
            ..
        } => (
            "~ adopt",
            format!(
                "{} `{id}`{}",
                resource_type.as_str(),
                if snapshot_ids.is_empty() {
                    String::new()
                } else {
                    format!(" and {} snapshot(s)", snapshot_ids.len())
                }
            ),
        ),
        Action::CreateImage { name, reboot, .. } => (
            "+ create",
            format!("image `{name}`{}", if *reboot { " (reboots)" } else { "" }),
        ),
        Action::Copy {
            resource_type,
            source_account,
            source_region,
            source_ids,
            ..
        } => (
            "+ copy",
            format!(
                "{} `{}` from {}{source_region}{}",
                resource_type.as_str(),
                c.action.copied().unwrap_or_default(),
                super::text::from_account(source_account.as_deref()),
                if *resource_type == crate::plan::ResourceType::Snapshot {
                    format!(" ({} snapshot(s))", source_ids.len())
                } else {
                    String::new()
                }
            ),
        ),
        Action::CreateSnapshots {
            volume_ids, lock, ..
        } => (
            "+ create",
            format!(
                "snapshots of {}{}",
                volume_ids
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                lock.map_or(String::new(), |l| format!(
                    " ({})",
                    super::lock_words(l.mode, l.expires_at, None)
                ))
            ),
        ),
        Action::DeregisterImage {
            image_id,
            snapshot_ids,
            ..
        } => (
            "- **delete**",
            format!("image `{image_id}` and {} snapshot(s)", snapshot_ids.len()),
        ),
        Action::DeleteSnapshot { snapshot_id } => {
            ("- **delete**", format!("snapshot `{snapshot_id}`"))
        }
        Action::Protect { image_id, cooldown } => (
            "~ protect",
            format!("image `{image_id}`: {}", super::protection_words(*cooldown)),
        ),
        Action::Unprotect { image_id } => (
            "~ **unprotect**",
            format!("image `{image_id}`: deregistration protection disabled"),
        ),
        Action::Share {
            resource_type,
            id,
            account,
            add: true,
            ..
        } => (
            "~ **share**",
            format!(
                "{} `{id}` with account {account}, which copies it",
                resource_type.as_str()
            ),
        ),
        Action::Share {
            resource_type,
            id,
            account,
            ..
        } => (
            "~ unshare",
            format!("{} `{id}` from account {account}", resource_type.as_str()),
        ),
        Action::Lock {
            resource_type,
            id,
            snapshot_ids,
            mode,
            expires_at,
            cool_off_hours,
        } => (
            "~ lock",
            format!(
                "{} `{id}` ({} snapshot(s)): {}",
                resource_type.as_str(),
                snapshot_ids.len(),
                super::lock_words(*mode, *expires_at, *cool_off_hours)
            ),
        ),
        Action::DeleteSnapshotSet {
            set_id,
            snapshot_ids,
        } => (
            "- **delete**",
            format!(
                "snapshot set `{set_id}` ({} snapshot(s))",
                snapshot_ids.len()
            ),
        ),
    }
}

/// `"account prod (111111111111), "` before a region, in a plan that spans
/// accounts.
fn in_account(plan: &Plan, account: Option<&String>) -> String {
    plan.account_label(account)
        .map_or(String::new(), |label| format!("account {label}, "))
}
