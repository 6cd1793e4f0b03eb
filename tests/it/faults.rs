//! The fault matrix: the same four days of backups with and without
//! injected faults, alone and combined. Each faulted run must end in exactly
//! the state of the fault-free run (per source: the same number of images and
//! snapshots, every one tagged), exit 0, with at most twice the API calls
//! (plus the lookups of creations whose outcome was unknown).

use crate::emulator::{day, Emulator, ROLLING_AMI, ROLLING_SNAPSHOTS};
use crate::support::{stderr, stdout};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Per region and policy: the sorted list of (source, number of backups).
type Shape = BTreeMap<String, Vec<(String, usize)>>;

/// Seeds, runs four daily applies, returns the final shape and the calls.
/// `real` switches on the emulator's real-EC2 behaviours (and apply's
/// per-volume gap to match).
fn run(faults: Option<Value>, timeout: &str, real: Option<Value>) -> (Shape, u64, Value) {
    let emu = Emulator::start();
    let mut order = Vec::new();
    for region in ["us-east-1", "eu-west-1"] {
        let seeded = emu.seed(
            json!({"region": region, "instances": [{"count": 3, "tags": {"Backup": "daily"},
            "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}),
        );
        for (k, i) in seeded["instances"].as_array().unwrap().iter().enumerate() {
            order.push((
                i["id"].as_str().unwrap().to_string(),
                format!("{region}#{k}"),
            ));
        }
    }
    let policies = emu
        .dir
        .policies(&[("web", ROLLING_AMI), ("data", ROLLING_SNAPSHOTS)]);
    if let Some(f) = &faults {
        emu.faults(f.clone());
    }
    let gap = match &real {
        Some(r) => {
            emu.control("ec2", r.clone());
            r["per_volume_rate_seconds"]
                .as_u64()
                .unwrap_or(0)
                .to_string()
        }
        None => "0".to_string(),
    };
    // The days run back to back, within EC2's Describe lag when it is on:
    // each run sees what the last one made through its journal.
    for d in 0..4 {
        let out = emu.run(
            Path::new(&policies),
            &["apply", "--auto-approve"],
            &[
                ("BACKUPCTL_NOW", &day(d)),
                ("BACKUPCTL_CALL_TIMEOUT", timeout),
                ("BACKUPCTL_PER_VOLUME_GAP", &gap),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{faults:?} day {d}:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let calls = emu.calls();
    let total: u64 = calls
        .as_object()
        .unwrap()
        .values()
        .flat_map(|r| r.as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    let injected = emu.control("calls", json!({}))["faults"].clone();
    emu.faults(json!({}));
    // Instance ids differ between emulators: name sources by seeding order.
    let rename: BTreeMap<String, String> = order.into_iter().collect();
    let mut shape = Shape::new();
    for region in ["us-east-1", "eu-west-1"] {
        let dump = emu.dump(region);
        for kind in ["images", "snapshots"] {
            let mut per: BTreeMap<String, usize> = BTreeMap::new();
            for r in dump[kind].as_array().unwrap() {
                let tags = &r["tags"];
                let Some(policy) = tags["backupctl:policy"].as_str() else {
                    continue;
                };
                for key in ["backupctl:source", "backupctl:created-at", "Name"] {
                    assert!(tags[key].is_string(), "{key} missing on {r}");
                }
                let source = rename[tags["backupctl:source"].as_str().unwrap()].clone();
                *per.entry(format!("{policy} {source}")).or_default() += 1;
            }
            shape.insert(format!("{region} {kind}"), per.into_iter().collect());
        }
    }
    (shape, total, injected)
}

#[test]
fn every_fault_alone_and_combined_ends_in_the_fault_free_state() {
    let (expected, baseline, _) = run(None, "45", None);
    assert!(!expected.is_empty());
    let matrix = [
        ("throttling 30%", json!({"seed": 1, "throttle": 0.3}), "45"),
        (
            "HTTP 500 on 10%",
            json!({"seed": 2, "server_error": 0.1}),
            "45",
        ),
        (
            "connection resets on 10%",
            json!({"seed": 3, "reset": 0.1}),
            "45",
        ),
        (
            "2 s latency spikes on 10%",
            json!({"seed": 4, "latency": 0.1, "latency_seconds": 2}),
            "45",
        ),
        (
            "calls that never answer (2%)",
            json!({"seed": 5, "hang": 0.02, "hang_seconds": 600}),
            "2",
        ),
        (
            "all combined",
            json!({"seed": 6, "throttle": 0.3, "server_error": 0.1, "reset": 0.05, "latency": 0.05, "latency_seconds": 2, "hang": 0.01, "hang_seconds": 600}),
            "3",
        ),
    ];
    let real = json!({"describe_delay_seconds": 2, "per_volume_rate_seconds": 15, "per_volume_pending": 5});
    let runs = matrix
        .into_iter()
        .map(|(name, faults, timeout)| (name, faults, timeout, None))
        .chain([(
            "real EC2: answers lost after success on 30% of creations, Describe lag, per-volume limits",
            json!({"seed": 7, "actions": ["CreateImage", "CreateSnapshots"], "lost": 0.15, "lost_500": 0.1, "lost_hang": 0.05, "lost_hang_seconds": 600}),
            "3",
            Some(real),
        )]);
    for (name, faults, timeout, real) in runs {
        let (shape, calls, injected) = run(Some(faults), timeout, real);
        assert!(
            injected.as_object().is_some_and(|o| !o.is_empty()),
            "{name}: no fault was injected"
        );
        assert_eq!(
            shape, expected,
            "{name}: final state differs from the fault-free run"
        );
        // A creation whose answer may have been lost (5xx, reset, no
        // answer) is looked for before it is sent again: a few Describe
        // calls across the consistency window, themselves faulted.
        let ambiguous: u64 = injected
            .as_object()
            .unwrap()
            .values()
            .flat_map(|r| r.as_object().unwrap().iter())
            .filter(|(k, _)| {
                k.starts_with("Create")
                    && [
                        "server_error",
                        "reset",
                        "hang",
                        "lost",
                        "lost_500",
                        "lost_hang",
                    ]
                    .iter()
                    .any(|f| k.ends_with(&format!(":{f}")))
            })
            .map(|(_, n)| n.as_u64().unwrap())
            .sum();
        let bound = 2 * baseline + 8 * ambiguous;
        assert!(
            calls <= bound,
            "{name}: {calls} calls, more than twice the fault-free {baseline} plus 8 per ambiguous creation ({ambiguous})"
        );
    }
}
