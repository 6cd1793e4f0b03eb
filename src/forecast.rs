//! What the policies will do between now and a date: the auditor's "what
//! will be purged by New Year?".
//!
//! `plan --at DATE` answers a different question: one run at that moment
//! against today's inventory, as if no backup were made in between, so it
//! shows today's deletions again. A forecast instead simulates every
//! scheduled run up to the date on an in-memory copy of the inventory:
//! each run is planned with the planner's own rules, its creations are made
//! (and complete at once: pending backups are assumed to complete), its
//! deletions are done, and the next run starts from the result. Runs are as
//! often as the most frequent policy's `every`, so every policy is run at
//! least as often as it asks. Pure: no AWS, no clock of its own.

use crate::inventory::Inventory;
use crate::plan::{Change, Plan};
use crate::planner;
use crate::policy::PolicySet;
use crate::provider::memory::MemoryProvider;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeMap;

/// More runs than this is a mistake (`every = "1min"` over years).
pub const MAX_RUNS: usize = 20_000;

#[derive(Debug)]
pub struct Forecast {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Time between two simulated runs.
    pub step: TimeDelta,
    pub runs: usize,
    pub creations: usize,
    /// Every deletion, in run order, with its run's time.
    pub deletions: Vec<(DateTime<Utc>, Change)>,
    /// Backups of each (account, policy, region, source) after the last
    /// run; the account is `None` without an accounts file.
    pub backups: BTreeMap<SourceKey, usize>,
}

/// (account, policy, region, source).
pub type SourceKey = (Option<String>, String, String, String);

impl Forecast {
    fn empty(from: DateTime<Utc>, until: DateTime<Utc>, step: TimeDelta) -> Forecast {
        Forecast {
            from,
            until,
            step,
            runs: 0,
            creations: 0,
            deletions: Vec::new(),
            backups: BTreeMap::new(),
        }
    }

    /// The forecast of one account, its items marked with the account.
    pub fn in_account(mut self, account: &str) -> Forecast {
        for (_, c) in &mut self.deletions {
            c.account = Some(account.to_string());
        }
        self.backups = std::mem::take(&mut self.backups)
            .into_iter()
            .map(|((_, p, r, s), n)| ((Some(account.to_string()), p, r, s), n))
            .collect();
        self
    }

    /// The accounts' forecasts as one, over the runs of [`schedule`]
    /// (the policies, and so the runs, are the same in every account);
    /// deletions in run order then by account.
    pub fn join(
        parts: Vec<Forecast>,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        (step, runs): (TimeDelta, usize),
    ) -> Forecast {
        let mut out = Forecast::empty(from, until, step);
        out.runs = runs;
        for part in parts {
            out.creations += part.creations;
            out.deletions.extend(part.deletions);
            out.backups.extend(part.backups);
        }
        out.deletions
            .sort_by(|(a, x), (b, y)| (a, &x.account).cmp(&(b, &y.account)));
        out
    }
}

/// The time between two simulated runs from `from` to `until`, and how
/// many runs that makes; an error when `until` is not after `from` or the
/// runs would be too many.
pub fn schedule(
    policies: &PolicySet,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(TimeDelta, usize), String> {
    if until <= from {
        return Err(format!(
            "--until {} is not after the forecast's start {}; give a later date",
            until.to_rfc3339(),
            from.to_rfc3339()
        ));
    }
    let step = policies
        .enabled()
        .map(|p| {
            p.backup
                .every
                .approx_length()
                .unwrap_or(TimeDelta::days(365))
                .max(TimeDelta::minutes(1))
        })
        .min()
        .unwrap_or(TimeDelta::days(1));
    let runs = (until - from).num_seconds() / step.num_seconds().max(1) + 1;
    if runs as usize > MAX_RUNS {
        return Err(format!(
            "a forecast to {} would simulate {runs} runs (one every {} minutes), more than {MAX_RUNS}; forecast a nearer date",
            until.to_rfc3339(),
            step.num_minutes()
        ));
    }
    Ok((step, runs as usize))
}

/// Simulates the scheduled runs from `from` (included) to `until`
/// (included). Errors when `until` is not after `from` or the runs would be
/// too many.
pub fn forecast(
    policies: &PolicySet,
    inventory: &Inventory,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Forecast, String> {
    let (step, _) = schedule(policies, from, until)?;
    let provider = MemoryProvider::new(inventory.clone(), from);
    let mut out = Forecast::empty(from, until, step);
    let mut at = from;
    while at <= until {
        provider.set_now(at);
        let plan = planner::plan(policies, &provider.inventory(), at);
        for c in &plan.changes {
            // The in-memory EC2 refuses only what EC2 would; a refusal here
            // is the same blocked deletion the plan would show, so it is
            // left out of the forecast rather than reported as done.
            if provider.run(&c.region, &c.action).is_err() {
                continue;
            }
            if c.action.is_create() {
                out.creations += 1;
            } else if c.action.is_delete() {
                out.deletions.push((at, c.clone()));
            }
        }
        provider.settle();
        out.runs += 1;
        at += step;
    }
    // What each source has after the last run: its kept backups then.
    let end = planner::plan(policies, &provider.inventory(), until);
    out.backups = per_source(&end);
    Ok(out)
}

/// Kept backups of each (account, policy, region, source) in a plan.
fn per_source(plan: &Plan) -> BTreeMap<SourceKey, usize> {
    let mut out = BTreeMap::new();
    for k in &plan.kept {
        let key = (
            k.account.clone(),
            k.policy.clone(),
            k.region.clone(),
            k.source.clone(),
        );
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::testing::owned_image;
    use crate::inventory::{Instance, InstanceState, RegionInventory};
    use crate::policy::parse_policy;
    use chrono::TimeZone;
    use std::path::Path;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap()
    }

    /// Issue 9: `plan --at` showed today's deletions again; a forecast
    /// dates each deletion on the run that makes it.
    #[test]
    fn deletions_are_dated_by_the_run_that_makes_them() {
        let text =
            "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { B = \"y\" }\n\
                    [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"10 days\"\nkeep_last = 1\n";
        let set = PolicySet {
            policies: vec![parse_policy(Path::new("web.toml"), text).unwrap().0],
            digest: "sha256:t".into(),
        };
        let mut inv = Inventory::empty();
        let image = |id: &str, days: i64| {
            owned_image(id, "web", "i-0000000a", now() - TimeDelta::days(days))
        };
        inv.regions.insert(
            "us-east-1".into(),
            RegionInventory {
                instances: vec![Instance {
                    id: "i-0000000a".into(),
                    state: InstanceState::Running,
                    tags: [("B".to_string(), "y".to_string())].into(),
                    volumes: vec![],
                }],
                images: vec![image("ami-old", 5)],
                ..Default::default()
            },
        );
        let f = forecast(&set, &inv, now(), now() + TimeDelta::days(20)).unwrap();
        assert_eq!(f.runs, 21);
        assert_eq!(f.creations, 21);
        // ami-old (5 days old today) expires on day 5; each new daily image
        // expires 10 days after it was made.
        let old: Vec<_> = f
            .deletions
            .iter()
            .filter(|(_, c)| c.action.target_id() == Some("ami-old"))
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(old, [now() + TimeDelta::days(5)]);
        // The dailies of days 0 to 10 expire on days 10 to 20: 11, plus ami-old.
        assert_eq!(f.deletions.len(), 12, "{:?}", f.deletions.len());
        // The dailies of days 11 to 20 are left.
        assert_eq!(
            f.backups[&(None, "web".into(), "us-east-1".into(), "i-0000000a".into())],
            10
        );
        assert!(forecast(&set, &inv, now(), now()).is_err());
    }
}
