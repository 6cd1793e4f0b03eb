//! The record of an apply (`--report FILE`, `--format json`, the outcome
//! lines), for a successful, a partly failed and an interrupted apply,
//! against the emulator.

use crate::emulator::{day, Emulator};
use crate::live::{interrupt, ok, owned, DAILY_AMI};
use crate::support::{stderr, stdout};
use serde_json::{json, Value};

fn read(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn outcomes<'a>(report: &'a Value, outcome: &str) -> Vec<&'a Value> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == outcome)
        .collect()
}

#[test]
fn a_successful_apply_reports_each_change_with_its_ids_and_request_ids() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 2, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    let file = emu.dir.path().join("report.json");
    let report_arg = file.to_str().unwrap();
    for d in 0..3 {
        let out = emu.run(
            &policies,
            &["apply", "--auto-approve", "--report", report_arg],
            &[("BACKUPCTL_NOW", &day(d))],
        );
        ok(&out);
        let report = read(&file);
        assert_eq!(report["format_version"], "1.4");
        assert_eq!(report["exit_code"], 0);
        assert_eq!(report["result"], "applied", "{report:#}");
        let created = outcomes(&report, "created");
        assert_eq!(created.len(), 2, "{report:#}");
        for c in &created {
            let ami = c["ids"][0].as_str().unwrap();
            assert!(ami.starts_with("ami-"), "{c}");
            assert!(!c["request_ids"].as_array().unwrap().is_empty(), "{c}");
            assert!(c["started_at"].as_str().unwrap().ends_with('Z'));
            // The line printed as it happened names the same image.
            assert!(
                stdout(&out).contains(&format!(
                    "+ created {ami} of {}",
                    c["source"].as_str().unwrap()
                )),
                "{}",
                stdout(&out)
            );
        }
        let deleted = outcomes(&report, "deleted");
        assert_eq!(report["summary"]["created"], 2);
        assert_eq!(report["summary"]["deleted"], deleted.len());
        for c in deleted {
            let id = c["id"].as_str().unwrap();
            assert!(
                stdout(&out).contains(&format!("- deleted {id}")),
                "{}",
                stdout(&out)
            );
        }
    }
    // Nothing to do (once the day's retention caught up): still a report.
    ok(&crate::live::apply(&emu, &policies, &day(2)));
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve", "--format", "json"],
        &[("BACKUPCTL_NOW", &day(2))],
    );
    ok(&out);
    let report: Value = serde_json::from_str(&stdout(&out)).expect("stdout is the report alone");
    assert_eq!(report["result"], "no_changes", "{report:#}");
    assert_eq!(report["changes"], json!([]));
}

#[test]
fn a_partly_failed_apply_reports_the_aws_error_of_each_failure() {
    let emu = Emulator::start();
    for region in ["us-east-1", "eu-west-1"] {
        emu.seed(json!({"region": region, "instances": [{"tags": {"Backup": "daily"}}]}));
    }
    // DAILY_AMI targets both regions.
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    emu.faults(json!({"deny": [{"region": "eu-west-1", "actions": ["CreateImage"]}]}));
    let file = emu.dir.path().join("report.json");
    let out = emu.run(
        &policies,
        &[
            "apply",
            "--auto-approve",
            "--format",
            "json",
            "--report",
            file.to_str().unwrap(),
        ],
        &[("BACKUPCTL_NOW", &day(0))],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("stdout is the report alone");
    assert_eq!(
        report,
        read(&file),
        "the file and stdout hold the same report"
    );
    assert_eq!(report["result"], "failed");
    assert_eq!(report["exit_code"], 3);
    let failed = outcomes(&report, "failed");
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["region"], "eu-west-1");
    assert_eq!(failed[0]["error"]["code"], "UnauthorizedOperation");
    assert_eq!(outcomes(&report, "created").len(), 1);
    assert_eq!(report["summary"]["failed"], 1);
    assert!(
        stderr(&out).contains("! failed to create")
            || stderr(&out).contains("error: web/eu-west-1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_interrupted_apply_reports_what_was_done_and_what_was_not_started() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 10, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    emu.faults(json!({"latency": 1.0, "latency_seconds": 2, "actions": ["CreateImage"]}));
    let file = emu.dir.path().join("report.json");
    let child = emu
        .command(
            &policies,
            &[
                "apply",
                "--auto-approve",
                "--report",
                file.to_str().unwrap(),
            ],
            &[
                ("BACKUPCTL_NOW", &day(0)),
                ("BACKUPCTL_API_RATES", "CreateImage=6/2"),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    emu.wait_for_calls("CreateImage", 1);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let report = read(&file);
    assert_eq!(report["result"], "interrupted", "{report:#}");
    assert_eq!(report["exit_code"], 130);
    let created = outcomes(&report, "created").len();
    let not_started = outcomes(&report, "not_started").len();
    assert_eq!(created + not_started, 10, "{report:#}");
    assert!((1..10).contains(&created), "{report:#}");
    assert_eq!(
        owned(&emu.dump("us-east-1"), "images", "web").len(),
        created,
        "what the report says was made is what exists"
    );
}
