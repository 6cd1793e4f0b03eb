//! Snapshot locks (issue 13) against the emulator: every backup of a
//! policy with `lock` is locked by the run after the one that made it,
//! until its age reaches the lock's days; retention's deletions wait for
//! the lock, shown as blocked with the date; and a compliance lock is set
//! only with `--allow-compliance-lock`.

use crate::emulator::days::{made_on, plan_json, run, time};
use crate::emulator::{day, Emulator};
use crate::support::{stderr, stdout};
use chrono::Duration;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn policy(name: &str, kind: &str, lock: &str) -> String {
    let volumes = if kind == "snapshot" {
        "volume_tags = { Snapshot = \"yes\" }\n"
    } else {
        ""
    };
    format!(
        "name = \"{name}\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = {{ Backup = \"daily\" }}\n{volumes}\
         [backup]\nkind = \"{kind}\"\nlock = {lock}\n[retention]\nmax_age = \"1 day\"\nkeep_last = 1\n"
    )
}

const GOVERNANCE: &str = "{ mode = \"governance\", days = 3 }";

fn seeded(emu: &Emulator, files: &[(&str, &str)]) -> PathBuf {
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 2, "tags": {"Backup": "daily"},
        "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}),
    );
    emu.dir.policies(files)
}

fn apply(emu: &Emulator, policies: &Path, d: i64) {
    let out = run(emu, policies, d, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "day {d}: {}", stderr(&out));
}

#[test]
fn locked_backups_wait_for_their_lock_then_go() {
    let emu = Emulator::start();
    let web = policy("web", "ami", GOVERNANCE);
    let data = policy("data", "snapshot", GOVERNANCE);
    let policies = seeded(&emu, &[("web", &web), ("data", &data)]);
    let listed = emu.run(&policies, &["validate"], &[]);
    assert!(
        stdout(&listed).contains("locks its snapshots: governance, 3 days")
            && stdout(&listed).contains("warning: its lock (3 days) outlasts `max_age` (1 day)"),
        "{}",
        stdout(&listed)
    );
    apply(&emu, &policies, 0);
    let day0 = made_on(&emu, "snapshots", 0);
    // Two AMIs of a root and a data volume, two sets of one data volume.
    assert_eq!(day0.len(), 6, "{day0:#?}");
    let until = time(&day(0)) + Duration::days(3);
    for s in &day0 {
        if s["tags"]["backupctl:policy"] == "data" {
            // A set is locked by the run that makes it.
            assert_eq!(s["lock"]["state"], "governance", "{s:#?}");
            assert_eq!(time(s["lock"]["expires_at"].as_str().unwrap()), until);
        } else {
            assert!(s["lock"].is_null(), "an AMI is locked by the next run");
        }
    }

    // Day 1: yesterday's AMIs get locked until they are 3 days old.
    let plan = plan_json(&emu, &policies, 1);
    let locks: Vec<&Value> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["operation"] == "lock_snapshots")
        .collect();
    assert_eq!(locks.len(), 2, "{locks:#?}");
    assert_eq!(plan["summary"]["lock"], 2);
    for c in &locks {
        assert_eq!(c["policy"], "web");
        assert_eq!(c["actions"], json!(["update"]));
        assert_eq!(c["lock_mode"], "governance");
        assert_eq!(time(c["lock_expires_at"].as_str().unwrap()), until);
        assert_eq!(c["reason"]["code"], "not_locked");
    }
    apply(&emu, &policies, 1);
    for s in made_on(&emu, "snapshots", 0) {
        assert_eq!(s["lock"]["state"], "governance", "{s:#?}");
        assert_eq!(time(s["lock"]["expires_at"].as_str().unwrap()), until);
    }

    // Day 2: day 0's backups are past max_age, but locked until day 3.
    let plan = plan_json(&emu, &policies, 2);
    let blocked = plan["blocked"].as_array().unwrap();
    assert_eq!(blocked.len(), 4, "{blocked:#?}");
    for b in blocked {
        assert_eq!(b["reason"]["code"], "locked");
        assert_eq!(time(b["until"].as_str().unwrap()), until);
    }
    let deleting_day0 = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["actions"] == json!(["delete"]));
    assert!(!deleting_day0, "nothing can be deleted on day 2");
    assert!(plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("outlasts `max_age`")));
    let text = run(&emu, &policies, 2, &["plan"]);
    assert!(
        stdout(&text).contains("is locked until"),
        "{}",
        stdout(&text)
    );
    apply(&emu, &policies, 2);
    assert_eq!(
        made_on(&emu, "snapshots", 0).len(),
        6,
        "held by their locks"
    );

    // Day 3: the locks of day 0 ended; its backups go, day 1's wait.
    apply(&emu, &policies, 3);
    assert_eq!(made_on(&emu, "snapshots", 0), Vec::<Value>::new());
    assert_eq!(made_on(&emu, "snapshots", 1).len(), 6);
    let calls = emu.calls();
    // One LockSnapshot per snapshot of each day's backups (4 AMI and 2
    // set snapshots a day, days 0 to 3), and no more: none locked twice.
    assert_eq!(
        calls["us-east-1"]["LockSnapshot"].as_u64(),
        Some(6 * 3 + 2),
        "{calls:#?}"
    );

    // The IAM policy allows exactly the calls made; locks only on the
    // policies' own backups, and never an unlock.
    let out = emu.run(&policies, &["iam-policy"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let (used, allowed) = crate::live::calls_and_allowed(calls, &doc);
    assert!(used.contains("ec2:LockSnapshot") && used.contains("ec2:DescribeLockedSnapshots"));
    assert_eq!(
        allowed, used,
        "the IAM policy must allow what is called, and nothing more"
    );
    let locking = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "LockOnlyBackupsOfThesePolicies")
        .expect("a statement for the locks");
    assert_eq!(
        locking["Condition"]["StringEquals"]["aws:ResourceTag/backupctl:policy"],
        json!(["data", "web"])
    );
}

#[test]
fn a_compliance_lock_is_set_only_with_its_flag() {
    let emu = Emulator::start();
    // Kept 3 days: nothing expires while the test looks.
    let data = policy(
        "data",
        "snapshot",
        "{ mode = \"compliance\", days = 2, cool_off_hours = 12 }",
    )
    .replace("\"1 day\"", "\"3 days\"");
    let policies = seeded(&emu, &[("data", &data)]);
    apply(&emu, &policies, 0);
    // Without the flag: the day's backups are made, the locks held back.
    let out = run(&emu, &policies, 1, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("held back 2 compliance lock(s) of policy data")
            && stderr(&out).contains("--allow-compliance-lock"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        made_on(&emu, "snapshots", 1).len(),
        2,
        "the backups are made"
    );
    assert!(made_on(&emu, "snapshots", 0)
        .iter()
        .all(|s| s["lock"].is_null()));
    assert!(emu.calls()["us-east-1"]["LockSnapshot"].is_null());
    // With it: day 0's backups, and day 1's made by the run before, are
    // locked, in their cool-off first, until 2 days after each was made.
    let out = run(
        &emu,
        &policies,
        1,
        &["apply", "--auto-approve", "--allow-compliance-lock"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for d in [0, 1] {
        let snapshots = made_on(&emu, "snapshots", d);
        assert_eq!(snapshots.len(), 2);
        for s in snapshots {
            assert_eq!(s["lock"]["state"], "compliance-cooloff", "{s:#?}");
            let until = time(s["lock"]["expires_at"].as_str().unwrap());
            assert_eq!(until, time(&day(d)) + Duration::days(2));
        }
    }
    // Locked as wanted: planning again locks nothing.
    let plan = plan_json(&emu, &policies, 1);
    assert_eq!(plan["changes"], json!([]), "{plan:#?}");
}
