//! `backupctl validate`: load and check every policy, list what was found.

use crate::cli::Cli;
use crate::error::{Error, ExitCode};
use crate::output::Printer;
use crate::policy::load_dir;
use std::fmt::Write;

pub fn run(cli: &Cli, printer: &Printer) -> Result<ExitCode, Error> {
    let set = load_dir(&cli.policies)?;
    let mut s = String::new();
    for p in &set.policies {
        let state = if p.enabled { "enabled" } else { "disabled" };
        let _ = writeln!(
            s,
            "{:<24} {:<8} {:<8} every {}, max_age {}, keep_last {}  ({})",
            p.name,
            p.backup.kind.as_str(),
            state,
            p.backup.every,
            p.retention.max_age,
            p.retention.keep_last,
            p.file.display()
        );
        for c in &p.copies {
            let _ = writeln!(
                s,
                "{:<24} copies to {}{}: max_age {}, keep_last {}{}",
                "",
                c.to_region,
                c.to_account
                    .as_ref()
                    .map_or(String::new(), |a| format!(" of account {a}")),
                c.retention.max_age,
                c.retention.keep_last,
                match (&c.kms_key, c.encrypted) {
                    (Some(key), _) => format!(", encrypted with {key}"),
                    (None, true) => ", encrypted".to_string(),
                    (None, false) => String::new(),
                }
            );
        }
        if let Some(lock) = &p.backup.lock {
            let cool_off = match lock.cool_off_hours {
                0 => String::new(),
                h => format!(", cool-off {h} h"),
            };
            let _ = writeln!(
                s,
                "{:<24} locks its snapshots: {}, {} days{cool_off}",
                "",
                lock.mode.as_str(),
                lock.days
            );
            if let Some(why) = lock.outlasts(&p.retention) {
                let _ = writeln!(s, "{:<24} warning: {why}", "");
            }
        }
        if let Some(protection) = p.backup.deregistration_protection {
            let cooldown = protection == crate::policy::DeregistrationProtection::WithCooldown;
            let _ = writeln!(
                s,
                "{:<24} protects its images: {}",
                "",
                crate::plan::protection_words(cooldown)
            );
        }
    }
    let enabled = set.enabled().count();
    let _ = writeln!(
        s,
        "{} polic{} valid ({enabled} enabled).",
        set.policies.len(),
        if set.policies.len() == 1 { "y" } else { "ies" }
    );
    if let Some(accounts) = super::accounts(cli, &set)? {
        let _ = writeln!(
            s,
            "{} account{} valid ({}).",
            accounts.accounts.len(),
            if accounts.accounts.len() == 1 {
                ""
            } else {
                "s"
            },
            accounts.file.display()
        );
        if let Some(org) = &accounts.organization {
            let _ = writeln!(
                s,
                "More accounts come from AWS Organizations ({}), read when a plan is made; the accounts policies name are checked then.",
                if org.from.is_empty() {
                    "every ACTIVE account".to_string()
                } else {
                    format!("the ACTIVE accounts under {}", org.from.join(", "))
                }
            );
        }
    }
    printer.result(&s);
    Ok(ExitCode::Success)
}
