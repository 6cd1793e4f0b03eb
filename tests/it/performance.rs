//! Performance at real EC2 latency (issue 14), as properties the tests can
//! check without timing anything: which calls run at once, and which calls
//! are not made at all. Wall times are the benchmark's (tests/emulator/
//! bench.py), not the tests'.

use crate::emulator::{day, Emulator, ROLLING_AMI};
use crate::live::ok;
use serde_json::json;

/// A region's Describe chains (instances, images, snapshots, volumes) are
/// independent and run at once: with every call answered slowly, the
/// emulator sees several of one region's calls in flight together.
#[test]
fn a_regions_describe_calls_run_at_once() {
    let emu = Emulator::start();
    emu.seed(json!({"region": "us-east-1", "instances": [{"count": 2,
        "tags": {"Backup": "daily"}, "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}));
    let policy = "name = \"data\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
                  volume_tags = { Snapshot = \"yes\" }\n[backup]\nkind = \"snapshot\"\n[retention]\nmax_age = \"1 day\"\n";
    let policies = emu.dir.policies(&[("web", ROLLING_AMI), ("data", policy)]);
    emu.faults(json!({"latency": 1.0, "latency_seconds": 0.4,
        "actions": ["DescribeInstances", "DescribeImages", "DescribeSnapshots", "DescribeVolumes"]}));
    ok(&emu.run(&policies, &["plan"], &[("BACKUPCTL_NOW", &day(0))]));
    let seen = emu.control("calls", json!({}))["max_in_flight"]["us-east-1"].clone();
    assert!(
        seen.as_u64().unwrap_or(0) >= 4,
        "the four Describe chains of us-east-1 ran one after another: at most {seen} at once"
    );
}

/// DeregisterImage with DeleteAssociatedSnapshots answers with the result
/// of each snapshot's deletion; the snapshots it reports deleted are not
/// described again. A rolling AMI policy's second day deregisters one image
/// per source, and its apply describes snapshots only to observe.
#[test]
fn deregistered_images_snapshots_are_not_described_again() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 3, "tags": {"Backup": "daily"}}]}),
    );
    emu.seed(
        json!({"region": "eu-west-1", "instances": [{"count": 1, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", ROLLING_AMI)]);
    for d in 0..2 {
        ok(&emu.run(
            &policies,
            &["apply", "--auto-approve"],
            &[("BACKUPCTL_NOW", &day(d))],
        ));
    }
    emu.control("reset_calls", json!({}));
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(2))],
    );
    ok(&out);
    assert!(
        crate::support::stdout(&out).contains("4 created, 4 deleted, 0 failed"),
        "{}",
        crate::support::stdout(&out)
    );
    let calls = emu.calls();
    for region in ["us-east-1", "eu-west-1"] {
        assert_eq!(
            calls[region]["DeregisterImage"],
            json!(if region == "us-east-1" { 3 } else { 1 })
        );
        assert_eq!(
            calls[region]["DescribeSnapshots"],
            json!(1),
            "{region}: only the observation describes snapshots: {calls}"
        );
        assert!(calls[region].get("DeleteSnapshot").is_none(), "{calls}");
    }
}

/// With the emulator enforcing EC2's token buckets (small ones, so that
/// the test is short), apply paces its calls to them: three daily runs
/// that create and delete 30 backups of each kind draw no
/// `RequestLimitExceeded` at all (a fixed number of calls in flight ran
/// through any bucket).
#[test]
fn apply_keeps_to_ec2s_token_buckets() {
    let emu = Emulator::start();
    emu.seed(json!({"region": "us-east-1", "instances": [{"count": 30,
        "tags": {"Backup": "daily"}, "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}));
    let policies = emu.dir.policies(&[
        ("web", ROLLING_AMI),
        ("data", crate::emulator::ROLLING_SNAPSHOTS),
    ]);
    let rates = "CreateImage=5/10,CreateSnapshots=5/10,DeregisterImage=5/10,DeleteSnapshot=5/10";
    emu.control("ec2", json!({ "buckets": buckets_of(rates, None) }));
    for d in 0..3 {
        let out = emu.run(
            &policies,
            &["apply", "--auto-approve"],
            &[("BACKUPCTL_NOW", &day(d)), ("BACKUPCTL_API_RATES", rates)],
        );
        ok(&out);
        if d == 2 {
            assert!(
                crate::support::stdout(&out).contains("60 created, 60 deleted, 0 failed"),
                "{}",
                crate::support::stdout(&out)
            );
        }
    }
    let injected = emu.control("calls", json!({}))["faults"].clone();
    assert_eq!(
        injected,
        json!({}),
        "throttled by EC2's buckets: {injected}"
    );
}

/// The emulator's buckets for `rates` (`ACTION=BURST/PER_SECOND,…`), full
/// or holding `start` tokens.
fn buckets_of(rates: &str, start: Option<u64>) -> serde_json::Value {
    let buckets: serde_json::Map<String, serde_json::Value> = rates
        .split(',')
        .map(|r| {
            let (action, rate) = r.split_once('=').unwrap();
            let (burst, per) = rate.split_once('/').unwrap();
            let mut spec = vec![
                json!(burst.parse::<u64>().unwrap()),
                json!(per.parse::<u64>().unwrap()),
            ];
            spec.extend(start.map(|s| json!(s)));
            (action.to_string(), json!(spec))
        })
        .collect();
    json!(buckets)
}

/// An apply that starts right after another client of the account spent
/// EC2's buckets (a large apply a moment before, another tool) starts with
/// its own buckets full and EC2's empty. Its first calls are refused; from
/// then on it keeps to what EC2 refills: nothing fails, and no more calls
/// are refused than were sent before the first refusal came back (at most
/// the calls in flight, 16).
#[test]
fn an_apply_on_buckets_another_run_spent_fails_nothing() {
    let emu = Emulator::start();
    emu.seed(json!({"region": "us-east-1", "instances": [{"count": 60,
        "tags": {"Backup": "daily"}, "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}));
    let policies = emu
        .dir
        .policies(&[("data", crate::emulator::ROLLING_SNAPSHOTS)]);
    // The client believes in a burst of 40; EC2 has none left.
    let rates = "CreateSnapshots=40/20,DeleteSnapshot=40/20";
    for d in 0..3 {
        // Days 0 and 1 fill the account; day 2 creates and deletes 60
        // snapshots each, on buckets spent just before.
        let start = (d == 2).then_some(0);
        emu.control("ec2", json!({ "buckets": buckets_of(rates, start) }));
        emu.control("reset_calls", json!({}));
        let out = emu.run(
            &policies,
            &["apply", "--auto-approve"],
            &[("BACKUPCTL_NOW", &day(d)), ("BACKUPCTL_API_RATES", rates)],
        );
        ok(&out);
        if d < 2 {
            continue;
        }
        let stdout = crate::support::stdout(&out);
        assert!(
            stdout.contains("60 created, 60 deleted, 0 failed"),
            "{stdout}"
        );
        let refused = emu.control("calls", json!({}))["faults"].clone();
        for action in ["CreateSnapshots", "DeleteSnapshot"] {
            let n = refused["us-east-1"][format!("{action}:bucket")]
                .as_u64()
                .unwrap_or(0);
            assert!(
                n <= 16,
                "{n} {action} calls refused after the first refusal came back: {refused}"
            );
        }
    }
}
