//! The kill campaign: `apply` killed with SIGKILL at many points of a run
//! that both creates and deletes across two regions, then re-run until it
//! reports no changes. Every trial must end exactly where a run that was
//! never killed ends: one backup per due source per day, every backup
//! tagged, nothing the policies keep deleted. The kill points come from a
//! seeded schedule, printed on failure, so a trial can be replayed.

use crate::emulator::{day, Emulator, ROLLING_AMI, ROLLING_SNAPSHOTS};
use crate::support::{stderr, stdout};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

const TRIALS: u64 = 30;
const SEED: u64 = 20261122;

/// Per region and kind: (policy, source by seeding order) -> count.
type Shape = BTreeMap<String, BTreeMap<String, usize>>;

struct Trial<'a> {
    emu: &'a Emulator,
    policies: std::path::PathBuf,
    names: BTreeMap<String, String>,
}

impl<'a> Trial<'a> {
    /// Resets the emulator, seeds two regions and makes two days of history.
    fn new(emu: &'a Emulator) -> Trial<'a> {
        emu.control("reset", json!({}));
        // EC2 records each backup after the run's clock, as real EC2 does: a
        // run that ages backups by EC2's time keeps one too many every day.
        emu.lag_seconds.set(20);
        let mut names = BTreeMap::new();
        for region in ["us-east-1", "eu-west-1"] {
            let seeded = emu.seed(
                json!({"region": region, "instances": [{"count": 3, "tags": {"Backup": "daily"},
                "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}),
            );
            for (k, i) in seeded["instances"].as_array().unwrap().iter().enumerate() {
                names.insert(
                    i["id"].as_str().unwrap().to_string(),
                    format!("{region}#{k}"),
                );
            }
        }
        let policies = emu
            .dir
            .policies(&[("web", ROLLING_AMI), ("data", ROLLING_SNAPSHOTS)]);
        let trial = Trial {
            emu,
            policies,
            names,
        };
        for d in 0..2 {
            trial.converge(d);
        }
        trial
    }

    fn apply(&self, d: i64) -> std::process::Command {
        // A short call timeout and consistency wait (a few seconds above
        // the emulator's Describe lag, for a loaded machine) keep the wait
        // after a kill short (see lock.rs).
        let env = [
            ("BACKUPCTL_NOW", day(d)),
            ("BACKUPCTL_CALL_TIMEOUT", "2".to_string()),
            ("BACKUPCTL_CONSISTENCY_WAIT", "6".to_string()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut cmd = self.emu.command(
            Path::new(&self.policies),
            &["apply", "--auto-approve"],
            &env,
        );
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Applies until there is nothing left to do (at most 4 runs).
    fn converge(&self, d: i64) {
        for _ in 0..4 {
            let out = self.apply(d).output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "day {d}:\n{}\n{}",
                stdout(&out),
                stderr(&out)
            );
            if stdout(&out).ends_with("No changes.\n") {
                return;
            }
        }
        panic!("day {d} does not converge in 4 runs");
    }

    fn shape(&self) -> Shape {
        let mut shape = Shape::new();
        for region in ["us-east-1", "eu-west-1"] {
            let dump = self.emu.dump(region);
            for kind in ["images", "snapshots"] {
                let per = shape.entry(format!("{region} {kind}")).or_default();
                for r in dump[kind].as_array().unwrap() {
                    let tags: &Value = &r["tags"];
                    let Some(policy) = tags["backupctl:policy"].as_str() else {
                        continue;
                    };
                    for key in ["backupctl:source", "backupctl:created-at", "Name"] {
                        assert!(tags[key].is_string(), "untagged backup {r}");
                    }
                    let source = &self.names[tags["backupctl:source"].as_str().unwrap()];
                    *per.entry(format!("{policy} {source}")).or_default() += 1;
                }
            }
        }
        shape
    }
}

/// xorshift64*, for a replayable kill schedule.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[test]
fn apply_killed_anywhere_then_rerun_ends_where_an_unkilled_run_ends() {
    let emu = Emulator::start();
    // Slow mutating calls a little, so that a run spans long enough for
    // kill points to fall inside creations, deregistrations and deletions.
    let slow = json!({"latency": 1.0, "latency_seconds": 0.05,
        "actions": ["CreateImage", "CreateSnapshots", "DeregisterImage", "DeleteSnapshot"]});

    let reference = Trial::new(&emu);
    emu.faults(slow.clone());
    let started = std::time::Instant::now();
    let out = reference.apply(2).output().unwrap();
    let span = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(" deleted, 0 failed."),
        "the workload deletes: {}",
        stdout(&out)
    );
    reference.converge(2);
    let expected = reference.shape();

    let mut state = SEED;
    let mut killed_mid_run = 0;
    for trial in 0..TRIALS {
        // Within the first three quarters of the reference run: a trial that
        // runs faster than the reference (a less loaded machine) must still
        // be killed mid-run most of the time.
        let window = span.as_micros() as u64 * 3 / 4;
        let delay = std::time::Duration::from_micros(next(&mut state) % (window + 1));
        let t = Trial::new(&emu);
        emu.faults(slow.clone());
        // Describe calls lag 2 s behind a creation, as EC2's can: the run
        // started right after the kill (or right after the first run ended,
        // when the kill came late) must not miss what the first one made
        // (it waits for calls in flight and observes again until what the
        // journal says was made shows, see lock.rs).
        emu.control("ec2", json!({"describe_delay_seconds": 2}));
        let mut child = t.apply(2).spawn().unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        killed_mid_run += usize::from(!finished);
        let rerun = t.apply(2).output().unwrap();
        assert_eq!(
            rerun.status.code(),
            Some(0),
            "trial {trial} (kill after {delay:?}):\n{}\n{}",
            stdout(&rerun),
            stderr(&rerun)
        );
        emu.control("ec2", json!({}));
        t.converge(2);
        let got = t.shape();
        let diff: Vec<String> = expected
            .iter()
            .flat_map(|(k, per)| per.iter().map(move |(s, n)| (k, s, *n)))
            .filter(|(k, s, n)| got.get(*k).and_then(|p| p.get(*s)) != Some(n))
            .map(|(k, s, n)| {
                format!(
                    "{k} {s}: {n} expected, got {:?}",
                    got.get(k).and_then(|p| p.get(s))
                )
            })
            .collect();
        assert_eq!(
            got, expected,
            "trial {trial} (seed {SEED}, kill after {delay:?}): the final state differs: {diff:?}"
        );
    }
    assert!(
        killed_mid_run >= (TRIALS as usize) / 2,
        "most kills must land inside the run: {killed_mid_run} of {TRIALS}"
    );
}
