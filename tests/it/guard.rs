//! The mass-deletion guard over simulated months (issue 9): it never trips
//! in the steady state of a large fleet, and it does trip when a policy
//! edit or a long pause would delete far more than a run normally does.
//! Pure: plans are applied to the inventory by hand, every backup completes
//! at once.

use backupctl::guard::{violations, Limits};
use backupctl::inventory::{
    Image, ImageState, Instance, InstanceState, Inventory, RegionInventory,
};
use backupctl::plan::{Action, Plan};
use backupctl::planner::plan;
use backupctl::policy::{parse_policy, PolicySet};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use std::path::Path;

fn policy(max_age: &str, keep_last: u32) -> PolicySet {
    let text = format!(
        "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = {{ Backup = \"daily\" }}\n\
         [backup]\nkind = \"ami\"\nevery = \"1 day\"\n[retention]\nmax_age = \"{max_age}\"\nkeep_last = {keep_last}\n"
    );
    PolicySet {
        policies: vec![parse_policy(Path::new("web.toml"), &text).unwrap().0],
        digest: "sha256:test".into(),
    }
}

fn fleet(instances: usize) -> Inventory {
    let mut inv = Inventory::empty();
    let region = RegionInventory {
        instances: (0..instances)
            .map(|k| Instance {
                id: format!("i-{k:017x}"),
                state: InstanceState::Running,
                tags: [("Backup".to_string(), "daily".to_string())].into(),
                volumes: vec![],
            })
            .collect(),
        ..Default::default()
    };
    inv.regions.insert("us-east-1".into(), region);
    inv
}

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 4, 0, 0).unwrap() + TimeDelta::days(n)
}

/// Does what the plan says, as EC2 would, a minute after the run started.
fn apply(inv: &mut Inventory, plan: &Plan, at: DateTime<Utc>) {
    let region = inv.regions.get_mut("us-east-1").unwrap();
    let mut gone: std::collections::HashSet<String> = std::collections::HashSet::new();
    for c in &plan.changes {
        match &c.action {
            Action::CreateImage { name, tags, .. } => region.images.push(Image {
                id: format!("ami-{name}"),
                name: name.clone(),
                state: ImageState::Available,
                created_at: at + TimeDelta::minutes(1),
                tags: tags.clone(),
                snapshot_ids: vec![],
                deregistration_protection: None,
            }),
            Action::DeregisterImage { image_id, .. } => {
                gone.insert(image_id.clone());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    region.images.retain(|i| !gone.contains(&i.id));
}

#[test]
fn the_guard_never_trips_in_the_steady_state_of_a_large_fleet() {
    let set = policy("7 days", 1);
    let mut inv = fleet(10_000);
    let mut deleted = 0;
    for d in 0..60 {
        let p = plan(&set, &inv, day(d));
        let tripped = violations(&p, Limits::default());
        assert!(tripped.is_empty(), "day {d}: {:?}", &tripped[..1]);
        assert_eq!(p.summary().create, 10_000, "day {d}");
        deleted += p.summary().delete;
        apply(&mut inv, &p, day(d));
    }
    // Not a vacuous pass: retention ran every day once the history was full.
    assert!(deleted >= 10_000 * 50, "deleted {deleted}");
}

fn history(set: &PolicySet, instances: usize, days: i64) -> Inventory {
    let mut inv = fleet(instances);
    for d in 0..days {
        let p = plan(set, &inv, day(d));
        apply(&mut inv, &p, day(d));
    }
    inv
}

#[test]
fn the_guard_trips_when_max_age_is_cut_from_30_days_to_1() {
    let inv = history(&policy("30 days", 1), 20, 40);
    let p = plan(&policy("1 day", 1), &inv, day(40));
    let tripped = violations(&p, Limits::default());
    assert_eq!(tripped.len(), 20, "{tripped:?}");
    assert!(
        tripped[0].rule.contains("would lose 29 of its 30 backups"),
        "{tripped:?}"
    );
}

#[test]
fn the_guard_trips_on_the_first_run_after_a_40_day_pause() {
    let set = policy("7 days", 1);
    let inv = history(&set, 20, 20);
    let p = plan(&set, &inv, day(60));
    let tripped = violations(&p, Limits::default());
    assert_eq!(tripped.len(), 20, "{tripped:?}");
    assert!(
        tripped[0].rule.contains("would lose 6 of its 7 backups"),
        "{tripped:?}"
    );
}
