//! The human plan, Terraform-like: grouped by policy and region, `+` for
//! creations, `-` for deletions, then blocked deletions, orphans and warnings,
//! ending with one summary line. Rendered from the plan alone, deterministic.

use super::{Action, Change, Orphan, Plan};
use chrono::SecondsFormat;
use std::fmt::Write;

/// How to render: colour only on a terminal that wants it; `verbose` also
/// lists every kept backup with why it is kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    pub color: bool,
    pub verbose: bool,
}

struct Paint(bool);

impl Paint {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }
    fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
}

pub fn render(plan: &Plan, opts: TextOptions) -> String {
    let p = Paint(opts.color);
    let mut s = String::new();
    let at = plan.generated_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    if plan.has_changes() {
        let _ = writeln!(
            s,
            "backupctl will perform the following actions (as of {at}):"
        );
    } else {
        let _ = writeln!(s, "backupctl plan as of {at}:");
    }

    let mut account: Option<&Option<String>> = None;
    let mut group: Option<(&str, &str)> = None;
    for c in &plan.changes {
        if account != Some(&c.account) {
            account = Some(&c.account);
            group = None;
            if let Some(label) = plan.account_label(c.account.as_ref()) {
                let _ = writeln!(s, "\n{}", p.bold(&format!("Account {label}:")));
            }
        }
        if group != Some((&c.policy, &c.region)) {
            group = Some((&c.policy, &c.region));
            let _ = writeln!(s, "\n  {}", p.bold(&format!("{} / {}", c.policy, c.region)));
        }
        let (sign, line) = describe(c);
        let sign = match c.action.rank() {
            0 => p.yellow(sign),
            1 => p.green(sign),
            _ => p.red(sign),
        };
        let _ = writeln!(s, "    {sign} {line}");
        let mut why = c.reason.message.clone();
        if let Some(left) = c.backups_left {
            why += &format!(
                "; {} of {} backups of this source remain",
                left.after, left.before
            );
        }
        if let Some(fate) = &c.recycle_bin {
            why += &format!("; {}", super::fate_words(fate));
        }
        let _ = writeln!(s, "        {}", p.dim(&why));
    }

    if !plan.blocked.is_empty() {
        let _ = writeln!(
            s,
            "\n{}",
            p.yellow("Blocked (retention would delete these, but they cannot be deleted now):")
        );
        for b in &plan.blocked {
            let (kind, id) = b.what();
            let _ = writeln!(
                s,
                "  {} {kind} {id} of {} ({}{} / {})\n        {}",
                p.yellow("!"),
                b.source,
                in_account(plan, b.account.as_ref()),
                b.policy,
                b.region,
                b.reason.message
            );
        }
    }

    if !plan.warnings.is_empty() {
        let _ = writeln!(s, "\n{}", p.yellow("Warnings:"));
        for w in &plan.warnings {
            let _ = writeln!(s, "  {} {w}", p.yellow("!"));
        }
    }

    orphan_list(
        &mut s,
        &p,
        plan,
        &plan.orphans,
        "Orphans (their policy is not in the set; never deleted):",
        opts.verbose,
    );
    orphan_list(
        &mut s,
        &p,
        plan,
        &plan.out_of_scope,
        "Out of scope (their policy does not target this region; never deleted there):",
        opts.verbose,
    );

    if opts.verbose && !plan.kept.is_empty() {
        let _ = writeln!(s, "\nKept:");
        let mut group: Option<(&Option<String>, &str, &str)> = None;
        for k in &plan.kept {
            if group != Some((&k.account, &k.policy, &k.region)) {
                group = Some((&k.account, &k.policy, &k.region));
                let at = in_account(plan, k.account.as_ref());
                let _ = writeln!(s, "  {at}{} / {}", k.policy, k.region);
            }
            let what = match k.snapshot_ids.len() {
                0 => format!("{} {}", k.resource_type.as_str(), k.id),
                1 => format!("snapshot set {} (1 snapshot)", k.id),
                n => format!("snapshot set {} ({n} snapshots)", k.id),
            };
            let _ = writeln!(s, "    = {what} of {}: {}", k.source, k.reason.message);
        }
    }

    let summary = plan.summary();
    let _ = writeln!(s);
    if plan.has_changes() {
        let _ = writeln!(
            s,
            "{}",
            p.bold(&format!(
                "Plan: {} to create, {} to delete{}.",
                summary.create,
                summary.delete,
                super::updates_suffix(&summary)
            ))
        );
    } else {
        let _ = writeln!(s, "{}", p.bold("No changes."));
    }
    s
}

/// Lists shown in full only with `-v` (the JSON plan always has them all):
/// a long orphan list must not bury the warnings and the summary.
pub const LIST_LIMIT: usize = 5;

/// `"prod (111111111111) / "` before a policy's name, in a plan that spans
/// accounts.
fn in_account(plan: &Plan, account: Option<&String>) -> String {
    plan.account_label(account)
        .map_or(String::new(), |label| format!("{label} / "))
}

fn orphan_list(
    s: &mut String,
    p: &Paint,
    plan: &Plan,
    list: &[Orphan],
    title: &str,
    verbose: bool,
) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n{}", p.yellow(title));
    let shown = if verbose { list.len() } else { LIST_LIMIT };
    for o in list.iter().take(shown) {
        let created = o.created_at.format("%Y-%m-%d");
        let source = o.source.as_deref().unwrap_or("unknown source");
        let _ = writeln!(
            s,
            "  ? {} {} in {}{}: policy \"{}\", source {source}, created {created}",
            o.resource_type.as_str(),
            o.id,
            in_account(plan, o.account.as_ref()),
            o.region,
            o.policy
        );
    }
    if list.len() > shown {
        let _ = writeln!(
            s,
            "  … and {} more (all of them with -v, or in the JSON plan)",
            list.len() - shown
        );
    }
}

/// `: snap-1, snap-2` for a set's copy (the snapshots not copied yet).
fn copied_snapshots(action: &Action, source_ids: &[String]) -> String {
    match action.resource_type() {
        crate::plan::ResourceType::Image => String::new(),
        crate::plan::ResourceType::Snapshot => format!(" ({})", source_ids.join(", ")),
    }
}

/// `account 111122223333, ` before a copy's source region, when the copy
/// is from another account.
pub(super) fn from_account(account: Option<&str>) -> String {
    account.map_or(String::new(), |a| format!("account {a}, "))
}

/// The sign and one-line description of a change.
fn describe(c: &Change) -> (&'static str, String) {
    match &c.action {
        Action::Adopt {
            resource_type,
            id,
            snapshot_ids,
            ..
        } => {
            let with = if snapshot_ids.is_empty() {
                String::new()
            } else {
                format!(" and its snapshots {}", snapshot_ids.join(", "))
            };
            (
                "~",
                format!(
                    "adopt {} {id} of {}{with}",
                    resource_type.as_str(),
                    c.source
                ),
            )
        }
        Action::Lock {
            resource_type,
            id,
            snapshot_ids,
            mode,
            expires_at,
            cool_off_hours,
        } => {
            let what = match resource_type {
                crate::plan::ResourceType::Image => format!("the snapshots of image {id}"),
                _ if snapshot_ids.len() == 1 && snapshot_ids[0] == *id => format!("snapshot {id}"),
                _ => format!("snapshot set {id}"),
            };
            (
                "~",
                format!(
                    "lock {what} of {} ({}): {}",
                    c.source,
                    snapshot_ids.join(", "),
                    super::lock_words(*mode, *expires_at, *cool_off_hours)
                ),
            )
        }
        Action::Protect { image_id, cooldown } => (
            "~",
            format!(
                "protect image {image_id} of {}: {}",
                c.source,
                super::protection_words(*cooldown)
            ),
        ),
        Action::Unprotect { image_id } => (
            "~",
            format!(
                "unprotect image {image_id} of {}: disable its deregistration protection",
                c.source
            ),
        ),
        Action::CreateImage {
            instance_id,
            name,
            reboot,
            ..
        } => {
            let reboot = if *reboot { "with reboot" } else { "no reboot" };
            (
                "+",
                format!("create image {name} of {instance_id} ({reboot})"),
            )
        }
        Action::Copy {
            resource_type,
            source_account,
            source_region,
            source_ids,
            ..
        } => (
            "+",
            format!(
                "copy {} {} from {}{source_region}{}",
                resource_type.as_str(),
                c.action.copied().unwrap_or_default(),
                from_account(source_account.as_deref()),
                copied_snapshots(&c.action, source_ids)
            ),
        ),
        Action::Share {
            resource_type,
            id,
            snapshot_ids,
            account,
            add,
        } => (
            "~",
            format!(
                "{} {} {id} of {} ({}) {} account {account}",
                if *add { "share" } else { "unshare" },
                resource_type.as_str(),
                c.source,
                snapshot_ids.join(", "),
                if *add { "with" } else { "from" },
            ),
        ),
        Action::CreateSnapshots {
            instance_id,
            volume_ids,
            lock,
            ..
        } => (
            "+",
            format!(
                "create snapshots of {instance_id}: {}{}",
                volume_ids.join(", "),
                lock.map_or(String::new(), |l| format!(
                    " ({})",
                    super::lock_words(l.mode, l.expires_at, None)
                ))
            ),
        ),
        Action::DeregisterImage {
            image_id,
            snapshot_ids,
            kept_snapshot_ids,
        } => {
            let mut snaps = String::new();
            if !snapshot_ids.is_empty() {
                snaps = format!(" and delete its snapshots {}", snapshot_ids.join(", "));
            }
            if !kept_snapshot_ids.is_empty() {
                snaps += &format!(" (keeping {})", kept_snapshot_ids.join(", "));
            }
            (
                "-",
                format!("deregister image {image_id} of {}{snaps}", c.source),
            )
        }
        Action::DeleteSnapshot { snapshot_id } => (
            "-",
            format!("delete snapshot {snapshot_id} of {}", c.source),
        ),
        Action::DeleteSnapshotSet {
            set_id,
            snapshot_ids,
        } => (
            "-",
            format!(
                "delete snapshot set {set_id} of {}: {}",
                c.source,
                snapshot_ids.join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Reason, ReasonCode};
    use chrono::TimeZone;

    fn plan() -> Plan {
        Plan {
            changes: vec![Change {
                account: None,
                policy: "p".into(),
                region: "us-east-1".into(),
                source: "i-1".into(),
                action: Action::DeleteSnapshot {
                    snapshot_id: "snap-1".into(),
                },
                reason: Reason {
                    code: ReasonCode::Expired,
                    message: "expired".into(),
                },
                backups_left: Some(crate::plan::BackupsLeft {
                    before: 2,
                    after: 1,
                }),
                recycle_bin: None,
                precondition: crate::plan::Precondition::Delete {
                    state: "completed".into(),
                    tags: Default::default(),
                },
            }],
            ..Plan::empty(chrono::Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap())
        }
    }

    #[test]
    fn colour_only_when_asked() {
        let coloured = render(
            &plan(),
            TextOptions {
                color: true,
                verbose: false,
            },
        );
        assert!(coloured.contains("\x1b[31m-\x1b[0m delete snapshot snap-1 of i-1"));
        let plain = render(&plan(), TextOptions::default());
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains("    - delete snapshot snap-1 of i-1\n"));
        assert!(plain.contains("        expired; 1 of 2 backups of this source remain\n"));
        assert!(plain.ends_with("\nPlan: 0 to create, 1 to delete.\n"));
    }
}
