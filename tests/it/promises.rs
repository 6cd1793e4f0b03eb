//! The planner's promises end to end, against the emulator, as a user meets
//! them: a scheduler whose runs start early or late and whose calls land
//! minutes after the run's clock; a database whose volumes get out of step;
//! policies that would back up nothing without a word.

use crate::emulator::{day, Emulator};
use crate::live::{apply, exits, ok, owned, plan};
use crate::support::{stderr, stdout};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

fn at(day_rfc3339: &str, seconds: i64) -> String {
    (DateTime::parse_from_rfc3339(day_rfc3339)
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(seconds))
    .to_rfc3339()
}

/// Snapshot sets of `policy` in the dump: set tag -> the volumes in it.
fn sets(dump: &Value, policy: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in owned(dump, "snapshots", policy) {
        let set = s["tags"]["backupctl:set"]
            .as_str()
            .unwrap_or_else(|| panic!("a new snapshot without a set tag: {s}"));
        out.entry(set.to_string())
            .or_default()
            .insert(s["volume_id"].as_str().unwrap().to_string());
    }
    out
}

/// Issue 8, item 1: the bug was a run that started a few minutes earlier
/// than the previous run's backup landed finding it not yet a day old, so
/// the instance went 48 hours without a backup.
#[test]
fn a_daily_scheduler_with_jitter_and_slow_calls_makes_one_backup_per_run() {
    let emu = Emulator::start();
    emu.seed(json!({"region": "us-east-1", "instances": [{"count": 2,
        "tags": {"Backup": "daily"}, "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}));
    let policies = emu.dir.policies(&[
        (
            "web",
            "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
             [backup]\nkind = \"ami\"\nevery = \"1 day\"\n[retention]\nmax_age = \"30 days\"\n",
        ),
        (
            "data",
            "name = \"data\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
             volume_tags = { Snapshot = \"yes\" }\n[backup]\nkind = \"snapshot\"\nevery = \"1 day\"\n\
             [retention]\nmax_age = \"30 days\"\n",
        ),
    ]);
    // (start jitter, seconds until EC2 records the backups): the extremes a
    // cron line meets, a late run with slow calls followed by an early one.
    let runs = [
        (0, 0),
        (300, 900),
        (-300, 0),
        (-300, 900),
        (300, 0),
        (0, 900),
        (-300, 900),
        (-300, 600),
    ];
    for (n, (jitter, lag)) in runs.into_iter().enumerate() {
        emu.lag_seconds.set(lag);
        let now = at(&day(n as i64), jitter);
        let out = apply(&emu, &policies, &now);
        ok(&out);
        let dump = emu.dump("us-east-1");
        let per_source = |kind: &str, policy: &str| -> BTreeMap<String, usize> {
            let mut m = BTreeMap::new();
            for b in owned(&dump, kind, policy) {
                *m.entry(b["tags"]["backupctl:source"].to_string())
                    .or_insert(0) += 1;
            }
            m
        };
        let images = per_source("images", "web");
        let snapshots = per_source("snapshots", "data");
        assert_eq!(images.len(), 2, "run {n} at {now}: {images:?}");
        assert!(
            images.values().all(|c| *c == n + 1),
            "run {n} at {now} (EC2 {lag} s late): images per instance {images:?}, want {}\n{}",
            n + 1,
            stdout(&out)
        );
        assert!(
            snapshots.values().all(|c| *c == n + 1) && snapshots.len() == 2,
            "run {n} at {now} (EC2 {lag} s late): snapshot sets per instance {snapshots:?}, want {}\n{}",
            n + 1,
            stdout(&out)
        );
        // A second start of the same run (cron fired twice, an operator
        // re-ran it) makes nothing.
        let again = plan(&emu, &policies, &at(&now, 10 * 60));
        assert_eq!(again["summary"]["create"], 0, "run {n} re-run: {again}");
    }
    emu.lag_seconds.set(0);
}

/// Issue 8, item 3: the bug was "due" judged per volume, so once the
/// volumes of an instance got out of step no set of all of them was made
/// again.
#[test]
fn every_new_set_covers_every_selected_volume() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [{"tags": {"Role": "db"},
        "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}, {"device": "/dev/sdg"}]}]}));
    let volumes = &seeded["instances"][0]["volumes"];
    let (sdf, sdg) = (
        volumes["/dev/sdf"].as_str().unwrap().to_string(),
        volumes["/dev/sdg"].as_str().unwrap().to_string(),
    );
    let policies = emu.dir.policies(&[(
        "db",
        "name = \"db\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Role = \"db\" }\n\
         volume_tags = { Snapshot = \"yes\" }\n[backup]\nkind = \"snapshot\"\nevery = \"1 day\"\n\
         [retention]\nmax_age = \"30 days\"\nkeep_last = 3\n",
    )]);
    let both: BTreeSet<String> = [sdf.clone(), sdg.clone()].into();

    ok(&apply(&emu, &policies, &day(0)));
    let first = sets(&emu.dump("us-east-1"), "db");
    assert_eq!(
        first.values().collect::<Vec<_>>(),
        [&BTreeSet::from([sdf.clone()])]
    );

    // The second volume is tagged for backup later that day: yesterday's set
    // no longer covers what the policy selects, so a set of both is due now.
    emu.control(
        "tag",
        json!({"region": "us-east-1", "id": sdg, "tags": {"Snapshot": "yes"}}),
    );
    let noon = at(&day(0), 6 * 3600);
    ok(&apply(&emu, &policies, &noon));
    let second = sets(&emu.dump("us-east-1"), "db");
    let new: Vec<_> = second
        .iter()
        .filter(|(k, _)| !first.contains_key(*k))
        .collect();
    assert_eq!(new.len(), 1, "{second:?}");
    assert_eq!(new[0].1, &both, "the new set covers both volumes");

    // One snapshot of that set ends in error: the set is no good backup, and
    // the next run makes a whole new set, not a snapshot of one volume.
    let broken = owned(&emu.dump("us-east-1"), "snapshots", "db")
        .into_iter()
        .find(|s| s["tags"]["backupctl:set"] == new[0].0.as_str() && s["volume_id"] == sdg)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    emu.control(
        "set-state",
        json!({"region": "us-east-1", "id": broken, "state": "error"}),
    );
    ok(&apply(&emu, &policies, &at(&day(0), 7 * 3600)));
    let third = sets(&emu.dump("us-east-1"), "db");
    assert_eq!(third.len(), 3, "{third:?}");
    for (set, vols) in &third {
        if !first.contains_key(set) {
            assert_eq!(vols, &both, "set {set}");
        }
    }
    // A day after the last good set: one more set, of both volumes.
    ok(&apply(&emu, &policies, &at(&day(1), 7 * 3600)));
    let fourth = sets(&emu.dump("us-east-1"), "db");
    assert_eq!(fourth.len(), 4, "{fourth:?}");
    assert!(fourth
        .iter()
        .filter(|(k, _)| !third.contains_key(*k))
        .all(|(_, v)| v == &both));
}

/// Issue 8, item 5: the bugs were an instance skipped without a word when
/// its volume selection came out empty, and one `local` policy whose
/// metadata did not answer failing every other policy.
#[test]
fn silent_non_backups_are_warnings_and_a_local_failure_costs_only_its_policy() {
    let emu = Emulator::start();
    let seeded = emu.seed(
        json!({"region": "us-east-1", "instances": [{"tags": {"Backup": "daily"},
        "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}),
    );
    let id = seeded["instances"][0]["id"].as_str().unwrap().to_string();
    let typo = "name = \"typo\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
                volume_tags = { Snapshto = \"yes\" }\n[backup]\nkind = \"snapshot\"\n[retention]\nmax_age = \"7 days\"\n";
    let web = "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
               [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"7 days\"\n";
    let policies = emu.dir.policies(&[("typo", typo), ("web", web)]);

    // The typo is a warning naming policy, region and instance, printed
    // before anything else is listed; the plan still exits 0 by default...
    let now = day(0);
    let out = emu.run(&policies, &["plan"], &[("BACKUPCTL_NOW", &now)]);
    ok(&out);
    let text = stdout(&out);
    let warning = text
        .lines()
        .find(|l| l.contains("typo") && l.contains("us-east-1") && l.contains(&id))
        .unwrap_or_else(|| panic!("no warning names policy, region and instance:\n{text}"));
    assert!(warning.contains("Snapshto"), "{warning}");
    // ...and a scheduler can fail the run on it: exit 4, after applying.
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve", "--fail-on-warning"],
        &[("BACKUPCTL_NOW", &now)],
    );
    exits(&out, 4);
    assert_eq!(owned(&emu.dump("us-east-1"), "images", "web").len(), 1);

    // A `local` policy on a host without instance metadata fails alone.
    let local =
        "name = \"self\"\n[target]\nregions = [\"us-east-1\"]\ninstance_ids = [\"local\"]\n\
                 [backup]\nkind = \"snapshot\"\n[retention]\nmax_age = \"7 days\"\n";
    let policies = emu.dir.policies(&[("self", local), ("web", web)]);
    let tomorrow = day(1);
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &tomorrow)],
    );
    exits(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("policy self ") && err.contains("instance metadata"),
        "the failure names the policy and the cause: {err}"
    );
    assert_eq!(
        owned(&emu.dump("us-east-1"), "images", "web").len(),
        2,
        "the other policy was still applied:\n{}",
        stdout(&out)
    );
}
