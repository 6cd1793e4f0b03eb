//! Real EC2 is not the emulator (issue 10): each behaviour of real EC2 that
//! bites a backup tool is switched on in the emulator (see
//! tests/emulator/launcher.py, REAL EC2) and backupctl must stay correct
//! under it: answers lost after success, eventual consistency, per-volume
//! snapshot limits, `ExcludeDataVolumeIds` limits, disabled AMIs, backups
//! of AWS Backup and DLM, and snapshots a deregistration left behind.

use crate::emulator::{day, Emulator};
use crate::live::{exits, instance_ids, ok, owned, plan};
use crate::support::{stderr, stdout};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

fn policy(name: &str, kind: &str, every: &str, extra_target: &str) -> String {
    format!(
        "name = \"{name}\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = {{ Backup = \"daily\" }}\n{extra_target}\
         [backup]\nkind = \"{kind}\"\nevery = \"{every}\"\n[retention]\nmax_age = \"30 days\"\nkeep_last = 3\n"
    )
}

/// Per source: the distinct backups of `policy` (image ids, or set ids).
fn backups_per_source(
    dump: &Value,
    kind: &str,
    policy: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in owned(dump, kind, policy) {
        let source = r["tags"]["backupctl:source"].as_str().unwrap().to_string();
        let unit = match kind {
            "images" => r["id"].as_str().unwrap().to_string(),
            _ => r["tags"]["backupctl:set"].as_str().unwrap().to_string(),
        };
        out.entry(source).or_default().insert(unit);
    }
    out
}

fn creates(emu: &Emulator) -> u64 {
    let calls = emu.calls();
    ["CreateImage", "CreateSnapshots"]
        .iter()
        .map(|a| calls["us-east-1"][a].as_u64().unwrap_or(0))
        .sum()
}

/// Every source has exactly `n` backups of each policy.
fn assert_exactly(emu: &Emulator, ids: &[String], policies: &[(&str, &str)], n: usize, when: &str) {
    let dump = emu.dump("us-east-1");
    for (policy, kind) in policies {
        let per = backups_per_source(&dump, kind, policy);
        for id in ids {
            let got = per.get(id).map_or(0, BTreeSet::len);
            assert_eq!(
                got, n,
                "{when}: {policy} has {got} backups of {id}, expected {n}: {per:?}"
            );
        }
    }
}

/// Item 1: a create whose answer is lost (reset, HTTP 500 or no answer at
/// all, after EC2 made the backup) while Describe calls lag behind is found
/// by its request tag, never made twice and never reported failed.
#[test]
fn creates_whose_answers_are_lost_are_found_not_made_twice() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [{"count": 5,
        "tags": {"Backup": "daily"}, "volumes": [{"device": "/dev/sdf"}]}]}));
    let ids = instance_ids(&seeded);
    let policies = emu.dir.policies(&[
        ("web", &policy("web", "ami", "1 day", "")),
        ("data", &policy("data", "snapshot", "1 day", "")),
    ]);
    emu.control("ec2", json!({"describe_delay_seconds": 2}));
    emu.faults(
        json!({"seed": 11, "actions": ["CreateImage", "CreateSnapshots"],
        "lost": 0.15, "lost_500": 0.1, "lost_hang": 0.05, "lost_hang_seconds": 600}),
    );
    for d in 0..3 {
        let out = emu.run(
            &policies,
            &["apply", "--auto-approve"],
            &[("BACKUPCTL_NOW", &day(d)), ("BACKUPCTL_CALL_TIMEOUT", "3")],
        );
        ok(&out);
        assert_exactly(
            &emu,
            &ids,
            &[("web", "images"), ("data", "snapshots")],
            d as usize + 1,
            &format!("day {d}"),
        );
    }
    let injected = emu.control("calls", json!({}))["faults"]["us-east-1"].clone();
    for action in ["CreateImage", "CreateSnapshots"] {
        let lost: u64 = ["lost", "lost_500", "lost_hang"]
            .iter()
            .filter_map(|k| injected[format!("{action}:{k}")].as_u64())
            .sum();
        assert!(lost > 0, "no {action} answer was lost: {injected}");
    }
}

/// Item 2: policies that back up the same instances never trip EC2's
/// per-volume snapshot rate: their creations are spaced, not refused.
#[test]
fn policies_sharing_instances_keep_to_the_per_volume_snapshot_rate() {
    let volume = "volume_tags = { Snapshot = \"yes\" }\n";
    let cases: [&[(&str, &str, &str, &str)]; 2] = [
        &[
            ("web", "ami", "1 day", ""),
            ("data", "snapshot", "1 day", volume),
        ],
        &[
            ("web", "ami", "1 day", ""),
            ("data", "snapshot", "1 day", volume),
            ("weekly", "snapshot", "7 days", ""),
        ],
    ];
    for case in cases {
        let emu = Emulator::start();
        let seeded = emu.seed(json!({"region": "us-east-1", "instances": [{"count": 2,
            "tags": {"Backup": "daily"}, "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}));
        let ids = instance_ids(&seeded);
        let texts: Vec<(String, String)> = case
            .iter()
            .map(|(n, k, e, t)| (n.to_string(), policy(n, k, e, t)))
            .collect();
        let files: Vec<(&str, &str)> = texts
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let policies = emu.dir.policies(&files);
        emu.control(
            "ec2",
            json!({"per_volume_rate_seconds": 15, "per_volume_pending": 5}),
        );
        let out = emu.run(
            &policies,
            &["apply", "--auto-approve"],
            &[
                ("BACKUPCTL_NOW", &day(0)),
                ("BACKUPCTL_PER_VOLUME_GAP", "15"),
            ],
        );
        ok(&out);
        let kinds: Vec<(&str, &str)> = case
            .iter()
            .map(|(n, k, _, _)| (*n, if *k == "ami" { "images" } else { "snapshots" }))
            .collect();
        assert_exactly(&emu, &ids, &kinds, 1, &format!("{} policies", case.len()));
        assert_eq!(
            creates(&emu),
            (case.len() * ids.len()) as u64,
            "{} policies: a creation was refused and sent again:\n{}",
            case.len(),
            stderr(&out)
        );
    }
}

/// Item 2: a volume with as many pending snapshots as EC2 allows (one, for
/// st1) cannot take another: the creation is postponed, not failed, and
/// the run after the pending ones completed makes it.
#[test]
fn a_volume_with_pending_snapshots_postpones_the_next_backup() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [{"count": 1,
        "tags": {"Backup": "daily"}, "volumes": [{"device": "/dev/sdf", "type": "st1"}]}]}));
    let ids = instance_ids(&seeded);
    let policies = emu.dir.policies(&[
        ("web", &policy("web", "ami", "1 day", "")),
        ("data", &policy("data", "snapshot", "1 day", "")),
    ]);
    emu.control(
        "ec2",
        json!({"per_volume_pending": 5, "pending_seconds": 3600}),
    );
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(0))],
    );
    ok(&out);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("postponed"), "{said}");
    assert!(said.contains("ConcurrentSnapshotLimitExceeded"), "{said}");
    // Whichever went first made its backup; the other waits.
    let dump = emu.dump("us-east-1");
    let made = backups_per_source(&dump, "images", "web").len()
        + backups_per_source(&dump, "snapshots", "data").len();
    assert_eq!(made, 1, "{dump}");
    // Two hours later the image's snapshots are complete.
    let later = (chrono::DateTime::parse_from_rfc3339(&day(0)).unwrap()
        + chrono::Duration::hours(2))
    .to_rfc3339();
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &later)],
    );
    ok(&out);
    assert_exactly(
        &emu,
        &ids,
        &[("web", "images"), ("data", "snapshots")],
        1,
        "2 hours later",
    );
}

/// Item 3: an instance with more unselected data volumes than
/// `ExcludeDataVolumeIds` takes (40) still gets its set, of exactly the
/// selected volumes, and nothing else is left behind.
#[test]
fn more_than_forty_unselected_volumes() {
    let emu = Emulator::start();
    let mut volumes = vec![json!({"device": "/dev/sdf", "tags": {"Snapshot": "yes"}})];
    for n in 0..42 {
        volumes.push(json!({"device": format!("/dev/xvd{}{}", (b'b' + n / 26) as char, (b'a' + n % 26) as char)}));
    }
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [{"count": 1,
        "tags": {"Backup": "daily"}, "volumes": volumes}]}));
    let selected = seeded["instances"][0]["volumes"]["/dev/sdf"]
        .as_str()
        .unwrap()
        .to_string();
    let policies = emu.dir.policies(&[(
        "data",
        &policy(
            "data",
            "snapshot",
            "1 day",
            "volume_tags = { Snapshot = \"yes\" }\n",
        ),
    )]);
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(0))],
    );
    ok(&out);
    let dump = emu.dump("us-east-1");
    let volumes: Vec<&str> = dump["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["volume_id"].as_str().unwrap())
        .collect();
    assert_eq!(volumes, vec![selected.as_str()], "{dump}");
    let p = plan(&emu, &policies, &day(0));
    assert_eq!(p["summary"]["create"], 0, "{p}");
}

/// Item 4: a disabled backup AMI (hidden from DescribeImages unless asked
/// for) is seen, is not good, and goes when retention says so; its
/// snapshots are never mistaken for strays. Backups of AWS Backup and DLM
/// are never deleted, whatever tags they carry.
#[test]
fn disabled_amis_and_backups_of_other_services() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [{"count": 1,
        "tags": {"Backup": "daily"}}]}));
    let source = instance_ids(&seeded)[0].clone();
    let rolling = "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
                   [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"1 day\"\nkeep_last = 1\n";
    let policies = emu.dir.policies(&[("web", rolling)]);
    // Backups that AWS Backup and DLM manage, carrying backupctl's tags too.
    emu.control("clock", json!({"now": day(-10)}));
    let foreign = emu.seed(json!({"region": "us-east-1",
        "images": [{"instance_id": source, "name": "aws-backup-copy", "tags": {
            "backupctl:policy": "web", "backupctl:source": source,
            "backupctl:created-at": day(-10), "aws:backup:source-resource": source}}]}));
    let foreign_image = foreign["images"][0].as_str().unwrap().to_string();
    ok(&emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(0))],
    ));
    let first: Vec<String> = owned(&emu.dump("us-east-1"), "images", "web")
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .filter(|id| *id != foreign_image)
        .collect();
    assert_eq!(first.len(), 1);
    emu.control(
        "set_state",
        json!({"region": "us-east-1", "id": first[0], "state": "disabled"}),
    );

    let p = plan(&emu, &policies, &day(1));
    let text = p.to_string();
    assert!(!text.contains("belong to no image"), "{text}");
    assert_eq!(
        p["summary"]["create"], 1,
        "a disabled image is not a good backup: {p}"
    );
    ok(&emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(1))],
    ));
    let p = plan(&emu, &policies, &day(3));
    let text = p.to_string();
    assert!(
        text.contains(&first[0]),
        "the disabled image is not planned for deletion: {text}"
    );
    assert!(
        !text.contains(&foreign_image),
        "a backup of AWS Backup is planned: {text}"
    );
    ok(&emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(3))],
    ));
    let dump = emu.dump("us-east-1");
    let images: BTreeSet<&str> = dump["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(!images.contains(first[0].as_str()), "{dump}");
    assert!(images.contains(foreign_image.as_str()), "{dump}");
}

/// Item 5: after deregistrations whose snapshots EC2 left behind, one
/// snapshot that cannot be deleted fails its own image only, with its id;
/// the others are swept, and the next run deletes what was left.
#[test]
fn a_failed_leftover_fails_its_own_image_only_and_the_next_run_finishes() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 3, "tags": {"Backup": "daily"}}]}),
    );
    let rolling = "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
                   [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"1 day\"\nkeep_last = 1\n";
    let policies = emu.dir.policies(&[("web", rolling)]);
    ok(&emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(0))],
    ));
    let dump = emu.dump("us-east-1");
    let day0 = owned(&dump, "images", "web");
    let stuck = day0[0]["snapshot_ids"][0].as_str().unwrap().to_string();
    // The day-1 run makes the second backups; the day-2 run deletes the first.
    ok(&emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(1))],
    ));
    emu.control("ec2", json!({"keep_associated_snapshots": true}));
    emu.faults(json!({"deny": [{"region": "*", "actions": ["DeleteSnapshot"], "ids": [stuck],
        "status": 400, "code": "InvalidSnapshot.InUse", "message": "The snapshot is in use by ami-0someoneelse"}]}));
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(2))],
    );
    exits(&out, 3);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("3 created, 2 deleted, 1 failed"), "{said}");
    assert!(said.contains(&stuck), "{said}");
    let dump = emu.dump("us-east-1");
    let left: Vec<&str> = owned(&dump, "snapshots", "web")
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .filter(|id| day0.iter().any(|i| i["snapshot_ids"][0] == *id))
        .collect();
    assert_eq!(
        left,
        vec![stuck.as_str()],
        "the other leftovers were not swept: {dump}"
    );

    emu.faults(json!({}));
    emu.control("ec2", json!({}));
    ok(&emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(3))],
    ));
    let dump = emu.dump("us-east-1");
    let used: BTreeSet<&str> = dump["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| {
            i["snapshot_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
        })
        .collect();
    let strays: Vec<&str> = owned(&dump, "snapshots", "web")
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .filter(|id| !used.contains(id))
        .collect();
    assert!(
        strays.is_empty(),
        "left behind after the next run: {strays:?}"
    );
}

/// A busy account throttles many calls in a row. A throttled create made
/// nothing, so it is sent again, as often as the SDK retries any other
/// call, and its backup is made once (the faults matrix once failed a run
/// on eight throttles in a row, with the ambiguous sends' budget spent).
#[test]
fn a_create_throttled_eight_times_in_a_row_is_made_once() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [{"count": 1,
        "tags": {"Backup": "daily"}, "volumes": [{"device": "/dev/sdf"}]}]}));
    let ids = instance_ids(&seeded);
    let policies = emu
        .dir
        .policies(&[("data", &policy("data", "snapshot", "1 day", ""))]);
    emu.faults(
        json!({"deny": [{"region": "*", "actions": ["CreateSnapshots"], "times": 8,
        "status": 503, "code": "RequestLimitExceeded", "message": "Request limit exceeded."}]}),
    );
    ok(&emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(0))],
    ));
    assert_exactly(
        &emu,
        &ids,
        &[("data", "snapshots")],
        1,
        "after the throttling",
    );
    assert_eq!(
        creates(&emu),
        9,
        "eight throttled sends and one that made the set"
    );
}

/// A run on another host (no shared journal) started in the same minute as
/// one that made an image, while DescribeImages does not show that image
/// yet, sends CreateImage with the same name and is refused as a
/// duplicate. That image is this backup (same policy, source and minute):
/// the run reports it made, not failed, and makes no second one.
#[test]
fn a_duplicate_name_from_a_run_in_the_same_minute_is_that_backup() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [{"count": 2,
        "tags": {"Backup": "daily"}}]}));
    let ids = instance_ids(&seeded);
    let policies = emu
        .dir
        .policies(&[("web", &policy("web", "ami", "1 day", ""))]);
    emu.control("ec2", json!({"describe_delay_seconds": 4}));
    let env = [("BACKUPCTL_NOW", day(0))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ok(&emu.run(&policies, &["apply", "--auto-approve"], &env));
    std::fs::remove_dir_all(emu.dir.path().join("state")).unwrap();
    let out = emu.run(&policies, &["apply", "--auto-approve"], &env);
    ok(&out);
    assert!(
        stdout(&out).contains("2 created, 0 deleted, 0 failed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_exactly(&emu, &ids, &[("web", "images")], 1, "after two runs");
    let refused = emu.control("calls", json!({}))["calls"]["us-east-1"]["CreateImage"].clone();
    assert_eq!(
        refused,
        json!(4),
        "the second run's sends were made and refused"
    );
}

/// Two applies back to back (a person re-running at once, two cron lines)
/// while EC2's Describe calls lag: the second sees, through the first's
/// journal, that the backups it made do not show yet, observes again until
/// they do, and makes no second snapshot set.
#[test]
fn back_to_back_runs_within_the_describe_lag_make_one_backup() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [{"count": 2,
        "tags": {"Backup": "daily"}, "volumes": [{"device": "/dev/sdf"}]}]}));
    let ids = instance_ids(&seeded);
    let policies = emu
        .dir
        .policies(&[("data", &policy("data", "snapshot", "1 day", ""))]);
    emu.control("ec2", json!({"describe_delay_seconds": 4}));
    let first = day(0);
    ok(&emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &first)],
    ));
    // A minute later by the run's clock: a new backup name, the same EC2.
    let next = (chrono::DateTime::parse_from_rfc3339(&first).unwrap()
        + chrono::TimeDelta::minutes(1))
    .to_rfc3339();
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &next)],
    );
    ok(&out);
    assert!(
        stdout(&out).ends_with("No changes.\n"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("do not show in EC2 yet; observing again"),
        "{}",
        stderr(&out)
    );
    assert_exactly(&emu, &ids, &[("data", "snapshots")], 1, "after two runs");
}
