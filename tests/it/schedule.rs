//! A scheduler that runs once per `every` gets exactly one backup per run
//! (issue 8): 60 simulated runs with cron start jitter of up to ±5 minutes,
//! and EC2 recording each backup up to 15 minutes after the run's clock
//! (observing, queueing, call latency), through the planner, apply and the
//! in-memory EC2, for every = 1h, 12h, 1 day and 1 week, AMIs and snapshot
//! sets alike.

use backupctl::apply::{apply, Pacing};
use backupctl::inventory::{
    AttachedVolume, Instance, InstanceState, Inventory, RegionInventory, Tags, Volume,
};
use backupctl::output::NoProgress;
use backupctl::planner::plan;
use backupctl::policy::{parse_policy, PolicySet};
use backupctl::provider::memory::MemoryProvider;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;

const RUNS: i64 = 60;
const REGION: &str = "us-east-1";

fn policy(kind: &str, every: &str) -> PolicySet {
    let text = format!(
        "name = \"sched\"\n[target]\nregions = [\"{REGION}\"]\ninstance_tags = {{ Backup = \"yes\" }}\n\
         [backup]\nkind = \"{kind}\"\nevery = \"{every}\"\n[retention]\nmax_age = \"never\"\n"
    );
    let (p, _) = parse_policy(Path::new("sched.toml"), &text).expect("valid policy");
    PolicySet {
        policies: vec![p],
        digest: "sha256:sched".into(),
    }
}

fn fleet() -> Inventory {
    let mut reg = RegionInventory::default();
    for n in 1..=2 {
        let mut volumes = Vec::new();
        for (k, root) in [(0, true), (1, false)] {
            let id = format!("vol-{n:08}{k:09}");
            reg.volumes.push(Volume {
                id: id.clone(),
                tags: Tags::new(),
            });
            volumes.push(AttachedVolume {
                volume_id: id,
                device: format!("/dev/sd{}", (b'a' + k) as char),
                root,
            });
        }
        reg.instances.push(Instance {
            id: format!("i-{n:017x}"),
            state: InstanceState::Running,
            tags: [("Backup".to_string(), "yes".to_string())].into(),
            volumes,
        });
    }
    let mut inv = Inventory::empty();
    inv.regions.insert(REGION.into(), reg);
    inv
}

/// Backups (images, or snapshot sets) in the provider's region.
fn backups(provider: &MemoryProvider, kind: &str) -> usize {
    let inv = provider.inventory();
    let reg = &inv.regions[REGION];
    if kind == "ami" {
        reg.images.len()
    } else {
        let sets: std::collections::BTreeSet<&str> = reg
            .snapshots
            .iter()
            .filter_map(|s| s.tags.get("backupctl:set"))
            .collect();
        sets.len()
    }
}

/// Runs the schedule; `Err` names the first run that did not make exactly
/// one backup per instance.
fn simulate(kind: &str, every: &str, period: TimeDelta, seed: u64) -> Result<(), String> {
    let mut rng = seed | 1;
    let mut next = move |n: i64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as i64
    };
    let set = policy(kind, every);
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
    let provider = Arc::new(MemoryProvider::new(fleet(), start));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for run in 0..RUNS {
        let jitter = TimeDelta::seconds(next(601) - 300);
        let latency = TimeDelta::seconds(next(901));
        let now = start + period * run as i32 + jitter;
        let before = backups(&provider, kind);
        let planned = plan(&set, &provider.inventory(), now);
        let creates = planned
            .changes
            .iter()
            .filter(|c| c.action.is_create())
            .count();
        provider.set_now(now + latency);
        let report = rt.block_on(apply(
            &planned,
            provider.clone(),
            Arc::new(NoProgress),
            Default::default(),
            Pacing::none(),
        ));
        assert_eq!(report.failed(), 0, "apply failed");
        provider.settle();
        let made = backups(&provider, kind) - before;
        if creates != 2 || made != 2 {
            return Err(format!(
                "{kind} every {every}, run {run} at {now} (jitter {jitter}, latency {latency}): planned {creates}, made {made}, want 2"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn one_backup_per_scheduled_run(seed in any::<u64>()) {
        for (every, period) in [
            ("1h", TimeDelta::hours(1)),
            ("12h", TimeDelta::hours(12)),
            ("1 day", TimeDelta::days(1)),
            ("1 week", TimeDelta::weeks(1)),
        ] {
            for kind in ["ami", "snapshot"] {
                if let Err(e) = simulate(kind, every, period, seed) {
                    prop_assert!(false, "seed {seed}: {e}");
                }
            }
        }
    }
}
