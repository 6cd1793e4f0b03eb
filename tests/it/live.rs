//! End to end against the EC2 emulator: observe, plan and apply through the
//! real AWS SDK, checking the result in the emulator's own state.
//!
//! Old backups are simulated with `BACKUPCTL_NOW`, which the emulator's
//! clock follows (see `Emulator::command`), so EC2's own times and the
//! `backupctl:created-at` tags move together as the simulated days pass.

use crate::emulator::{day, Emulator};
use crate::support::{stderr, stdout};
use chrono::Duration;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

const OWNERSHIP: [&str; 4] = [
    "backupctl:policy",
    "backupctl:source",
    "backupctl:created-at",
    "Name",
];

pub fn ok(out: &Output) {
    exits(out, 0);
}

/// Asserts the exit code, showing both output streams when it differs.
pub fn exits(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

pub fn plan(emu: &Emulator, policies: &Path, now: &str) -> Value {
    let out = emu.run(
        policies,
        &["plan", "--format", "json"],
        &[("BACKUPCTL_NOW", now)],
    );
    ok(&out);
    serde_json::from_str(&stdout(&out)).unwrap()
}

pub fn apply(emu: &Emulator, policies: &Path, now: &str) -> Output {
    emu.run(
        policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", now)],
    )
}

/// The instance ids a seeding returned, in order.
pub fn instance_ids(seeded: &Value) -> Vec<String> {
    seeded["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn sources_of_creates(plan: &Value, region: &str) -> BTreeSet<String> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["actions"] == json!(["create"]) && c["region"] == region)
        .map(|c| c["source"].as_str().unwrap().to_string())
        .collect()
}

/// Images (or snapshots) of the dump carrying `backupctl:policy = policy`.
pub fn owned<'a>(dump: &'a Value, kind: &str, policy: &str) -> Vec<&'a Value> {
    dump[kind]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["tags"]["backupctl:policy"] == policy)
        .collect()
}

fn count(calls: &Value, region: &str, action: &str) -> u64 {
    calls[region][action].as_u64().unwrap_or(0)
}

fn mutating_calls(calls: &Value) -> u64 {
    let mut n = 0;
    for (_, actions) in calls.as_object().unwrap() {
        for (action, c) in actions.as_object().unwrap() {
            // Reads: EC2's Describe calls, the Recycle Bin's ListRules and
            // GetRule.
            if !["Describe", "List", "Get"]
                .iter()
                .any(|read| action.starts_with(read))
            {
                n += c.as_u64().unwrap();
            }
        }
    }
    n
}

pub const DAILY_AMI: &str = r#"
name = "web"
[target]
regions = ["us-east-1", "eu-west-1"]
instance_tags = { Backup = "daily" }
[backup]
kind = "ami"
reboot = "tag"
[retention]
max_age = "2 days"
keep_last = 2
"#;

#[test]
fn tag_selection_across_two_regions_with_filtered_describes() {
    let emu = Emulator::start();
    let us = emu.seed(json!({"region": "us-east-1", "instances": [
        {"count": 2, "tags": {"Backup": "daily"}},
        {"count": 1, "tags": {"Backup": "weekly"}},
        {"count": 1}]}));
    let eu = emu.seed(json!({"region": "eu-west-1", "instances": [
        {"count": 1, "tags": {"Backup": "daily"}},
        {"count": 1, "tags": {"Backup": "daily"}, "state": "stopped"},
        {"count": 1, "tags": {"Backup": "daily"}, "state": "terminated"}]}));
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    let p = plan(&emu, &policies, &day(0));
    let us_ids = instance_ids(&us);
    let eu_ids = instance_ids(&eu);
    assert_eq!(
        sources_of_creates(&p, "us-east-1"),
        us_ids[..2].iter().cloned().collect()
    );
    assert_eq!(
        sources_of_creates(&p, "eu-west-1"),
        eu_ids[..2].iter().cloned().collect()
    );
    assert_eq!(p["summary"]["delete"], 0);

    let calls = emu.calls();
    for region in ["us-east-1", "eu-west-1"] {
        for action in ["DescribeInstances", "DescribeImages", "DescribeSnapshots"] {
            assert_eq!(
                count(&calls, region, action),
                1,
                "{region} {action}: {calls}"
            );
        }
        assert_eq!(
            count(&calls, region, "DescribeVolumes"),
            0,
            "no volume_tags: {calls}"
        );
    }
    assert_eq!(count(&calls, "us-east-1", "DescribeRegions"), 0);
    assert_eq!(mutating_calls(&calls), 0, "plan changes nothing: {calls}");
}

#[test]
fn star_regions_are_the_enabled_regions() {
    let emu = Emulator::start();
    emu.control(
        "regions",
        json!({"regions": ["us-east-1", "eu-west-1", "ap-southeast-2"]}),
    );
    let eu =
        emu.seed(json!({"region": "eu-west-1", "instances": [{"tags": {"Backup": "weekly"}}]}));
    let ap = emu
        .seed(json!({"region": "ap-southeast-2", "instances": [{"tags": {"Backup": "weekly"}}]}));
    let policies = emu.dir.policies(&[(
        "weekly",
        "name = \"weekly\"\n[target]\nregions = [\"*\"]\ninstance_tags = { Backup = \"weekly\" }\n\
         [backup]\nkind = \"ami\"\nevery = \"1 week\"\n[retention]\nmax_age = \"6 months\"\n",
    )]);
    let p = plan(&emu, &policies, &day(0));
    assert_eq!(
        sources_of_creates(&p, "eu-west-1"),
        instance_ids(&eu).into_iter().collect()
    );
    assert_eq!(
        sources_of_creates(&p, "ap-southeast-2"),
        instance_ids(&ap).into_iter().collect()
    );
    assert_eq!(p["summary"]["create"], 2);
    let calls = emu.calls();
    assert_eq!(count(&calls, "us-east-1", "DescribeRegions"), 1);
    let regions: BTreeSet<&String> = calls.as_object().unwrap().keys().collect();
    assert_eq!(
        regions.len(),
        3,
        "only enabled regions are observed: {calls}"
    );
}

#[test]
fn local_instance_through_instance_metadata() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "eu-west-1", "instances": [
        {"volumes": [{"device": "/dev/sdf"}]}, {"count": 1}]}));
    let me = &seeded["instances"][0];
    let policies = emu.dir.policies(&[(
        "self",
        "name = \"self\"\n[target]\nregions = [\"eu-west-1\"]\ninstance_ids = [\"local\"]\n\
         [backup]\nkind = \"snapshot\"\n[retention]\nmax_age = \"7 days\"\n",
    )]);
    // Without metadata the policy cannot be resolved: a clear error, exit 3.
    let out = emu.run(&policies, &["plan"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("instance metadata"),
        "{}",
        stderr(&out)
    );

    emu.control(
        "imds",
        json!({"instance_id": me["id"], "region": "eu-west-1"}),
    );
    ok(&apply(&emu, &policies, &day(0)));
    let snaps = owned(&emu.dump("eu-west-1"), "snapshots", "self")
        .into_iter()
        .map(|s| s["volume_id"].as_str().unwrap().to_string())
        .collect::<BTreeSet<_>>();
    let volumes: BTreeSet<String> = me["volumes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        snaps, volumes,
        "every volume of the local instance, and nothing else"
    );
}

#[test]
fn ami_backups_reboot_only_tagged_instances_and_are_tagged_in_the_creating_call() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [
        {"tags": {"Backup": "daily", "BackupReboot": "yes"}, "volumes": [{"device": "/dev/sdf"}]},
        {"tags": {"Backup": "daily"}}]}));
    let ids = instance_ids(&seeded);
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    ok(&apply(&emu, &policies, &day(0)));

    let requests = emu.control("requests", json!({}))["requests"].clone();
    let creates: Vec<&Value> = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["params"]["Action"] == "CreateImage")
        .collect();
    assert_eq!(creates.len(), 2, "{requests}");
    for r in creates {
        let params = r["params"].as_object().unwrap();
        let instance = params["InstanceId"].as_str().unwrap();
        let no_reboot = if instance == ids[0] { "false" } else { "true" };
        assert_eq!(params["NoReboot"], no_reboot, "{instance}");
        // Invariant 1: the tags travel in the CreateImage call itself, for
        // the image and for its snapshots.
        let specs: BTreeSet<&str> = params
            .iter()
            .filter(|(k, _)| k.starts_with("TagSpecification.") && k.ends_with(".ResourceType"))
            .map(|(_, v)| v.as_str().unwrap())
            .collect();
        assert_eq!(specs, BTreeSet::from(["image", "snapshot"]));
        assert!(params.values().any(|v| v == "backupctl:policy"));
    }
    let dump = emu.dump("us-east-1");
    let images = owned(&dump, "images", "web");
    assert_eq!(images.len(), 2);
    for image in &images {
        for key in OWNERSHIP {
            assert!(image["tags"][key].is_string(), "{key} on {image}");
        }
        assert_eq!(image["tags"]["Name"], image["name"]);
        for sid in image["snapshot_ids"].as_array().unwrap() {
            let snap = dump["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| &s["id"] == sid)
                .unwrap();
            assert_eq!(
                snap["tags"], image["tags"],
                "snapshots carry the image's tags"
            );
        }
    }
    let root_and_data = images
        .iter()
        .find(|i| i["tags"]["backupctl:source"] == ids[0].as_str())
        .unwrap();
    assert_eq!(root_and_data["snapshot_ids"].as_array().unwrap().len(), 2);
}

#[test]
fn snapshot_sets_take_only_the_selected_volumes() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [{
        "tags": {"Role": "db"}, "root_tags": {"Snapshot": "yes"},
        "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}},
                    {"device": "/dev/sdg", "tags": {"Snapshot": "no"}},
                    {"device": "/dev/sdh"}]}]}));
    let inst = &seeded["instances"][0];
    let policies = emu.dir.policies(&[(
        "db",
        "name = \"db\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Role = \"db\" }\n\
         volume_tags = { Snapshot = \"yes\" }\nexclude_boot_volume = true\n\
         [backup]\nkind = \"snapshot\"\nevery = \"12h\"\n[retention]\nmax_age = \"14 days\"\n",
    )]);
    ok(&apply(&emu, &policies, &day(0)));
    let dump = emu.dump("us-east-1");
    let snaps = owned(&dump, "snapshots", "db");
    assert_eq!(snaps.len(), 1, "{dump}");
    assert_eq!(snaps[0]["volume_id"], inst["volumes"]["/dev/sdf"]);
    assert_eq!(snaps[0]["tags"]["backupctl:source"], inst["id"]);
    for key in OWNERSHIP {
        assert!(snaps[0]["tags"][key].is_string(), "{key}");
    }
    assert_eq!(emu.calls()["us-east-1"]["DescribeVolumes"], 1);
    // Half a day later the set is due again, and from an hour earlier
    // (the slack for start jitter: a quarter of `every`, at most 1 hour);
    // before that it is not.
    assert_eq!(
        plan(&emu, &policies, &day(0).replace("T06", "T16"))["summary"]["create"],
        0
    );
    assert_eq!(
        plan(&emu, &policies, &day(0).replace("T06", "T17"))["summary"]["create"],
        1
    );
    assert_eq!(plan(&emu, &policies, &day(1))["summary"]["create"], 1);
}

#[test]
fn retention_over_generations_keeps_what_it_must_and_leaves_others_alone() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [
        {"tags": {"Backup": "daily"}, "volumes": [{"device": "/dev/sdf"}]},
        {"tags": {"Backup": "gone"}}]}));
    let ids = instance_ids(&seeded);
    // Not backupctl's: an image and a snapshot that must survive everything.
    let foreign = emu.seed(json!({"region": "us-east-1",
        "images": [{"instance_id": ids[0], "name": "golden-base"}],
        "snapshots": [{"volume_id": seeded["instances"][0]["volumes"]["/dev/sdf"], "tags": {"Owner": "alice"}}]}));
    let last = "name = \"last\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"gone\" }\n\
                [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"1 day\"\nkeep_last = 0\n";
    let policies = emu.dir.policies(&[("web", DAILY_AMI), ("last", last)]);

    let mut history = Vec::new();
    for d in 0..6 {
        ok(&apply(&emu, &policies, &day(d)));
        let dump = emu.dump("us-east-1");
        let images = owned(&dump, "images", "web");
        let snaps = owned(&dump, "snapshots", "web");
        // Each image has two snapshots; they go with it and only with it.
        assert_eq!(snaps.len(), 2 * images.len(), "day {d}: {dump}");
        history.push(images.len());
    }
    // keep_last 2 and max_age 2 days: day 0: 1, day 1: 2, day 2: 3 (the
    // oldest is exactly 2 days old but one of the newest two), then steady.
    assert_eq!(history, [1, 2, 3, 3, 3, 3]);

    // Once its source no longer matches, "last" stops making images; its
    // newest good one survives retention forever (keep_last = 0).
    let last_unmatched = last.replace("Backup = \"gone\"", "Backup = \"nothing\"");
    let policies = emu
        .dir
        .policies(&[("web", DAILY_AMI), ("last", &last_unmatched)]);
    ok(&apply(&emu, &policies, &day(60)));
    let remaining = owned(&emu.dump("us-east-1"), "images", "last")
        .into_iter()
        .map(|i| {
            i["tags"]["backupctl:created-at"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect::<Vec<_>>();
    assert_eq!(remaining.len(), 1, "{remaining:?}");
    assert!(
        remaining[0].starts_with(&day(5)[..10]),
        "the newest one: {remaining:?}"
    );
    let much_later = plan(&emu, &policies, &day(600));
    assert!(
        much_later["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["policy"] != "last"),
        "the last good backup is never deleted: {much_later}"
    );

    let dump = emu.dump("us-east-1");
    let image_ids: BTreeSet<String> = dump["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        image_ids.contains(foreign["images"][0].as_str().unwrap()),
        "unmanaged image kept"
    );
    let snapshot_ids: BTreeSet<String> = dump["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        snapshot_ids.contains(foreign["snapshots"][0].as_str().unwrap()),
        "unmanaged snapshot kept"
    );
}

#[test]
fn a_snapshot_used_by_a_foreign_image_is_blocked_not_deleted() {
    let emu = Emulator::start();
    emu.seed(json!({"region": "us-east-1", "instances": [
        {"tags": {"Role": "db"}, "volumes": [{"device": "/dev/sdf"}]}]}));
    let policies = emu.dir.policies(&[(
        "db",
        "name = \"db\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Role = \"db\" }\n\
         exclude_boot_volume = true\n[backup]\nkind = \"snapshot\"\n[retention]\nmax_age = \"1 day\"\n",
    )]);
    ok(&apply(&emu, &policies, &day(0)));
    let first = owned(&emu.dump("us-east-1"), "snapshots", "db")[0]["id"].clone();
    ok(&apply(&emu, &policies, &day(1)));
    let restored = emu.control(
        "register-image",
        json!({"region": "us-east-1", "name": "restore-test", "snapshot_ids": [first]}),
    )["id"]
        .clone();
    let p = plan(&emu, &policies, &day(3));
    assert_eq!(p["blocked"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p["blocked"][0]["id"], first);
    assert_eq!(p["blocked"][0]["image_ids"], json!([restored]));
    assert!(p["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["id"] != first));
    ok(&apply(&emu, &policies, &day(3)));
    let still: Vec<Value> = emu.dump("us-east-1")["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert!(still.contains(&first));
}

#[test]
fn apply_twice_changes_nothing_the_second_time() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 3, "tags": {"Backup": "daily"}}]}),
    );
    emu.seed(
        json!({"region": "eu-west-1", "instances": [{"count": 2, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    let first = apply(&emu, &policies, &day(0));
    ok(&first);
    assert!(stdout(&first).contains("Apply complete: 5 created, 0 deleted, 0 failed."));
    let before = mutating_calls(&emu.calls());
    let second = apply(&emu, &policies, &day(0));
    ok(&second);
    assert!(
        stdout(&second).ends_with("No changes.\n"),
        "{}",
        stdout(&second)
    );
    assert_eq!(mutating_calls(&emu.calls()), before);
}

#[test]
fn an_unauthorized_region_does_not_stop_the_others() {
    let emu = Emulator::start();
    emu.seed(json!({"region": "us-east-1", "instances": [{"tags": {"Backup": "daily"}}]}));
    emu.seed(json!({"region": "eu-west-1", "instances": [{"tags": {"Backup": "daily"}}]}));
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    emu.faults(json!({"deny": [{"region": "eu-west-1", "actions": ["*"]}]}));
    let out = apply(&emu, &policies, &day(0));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not observe eu-west-1: UnauthorizedOperation"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("Apply complete: 1 created, 0 deleted, 0 failed."));
    assert_eq!(owned(&emu.dump("us-east-1"), "images", "web").len(), 1);

    // A permission missing for one action fails that action only, and says
    // which permission.
    emu.faults(json!({"deny": [{"region": "eu-west-1", "actions": ["CreateImage"]}]}));
    let out = apply(&emu, &policies, &day(0));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("UnauthorizedOperation"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("ec2:CreateImage"), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 created, 0 deleted, 1 failed."),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        emu.calls()["eu-west-1"]["CreateImage"],
        1,
        "permanent errors are not retried"
    );
}

#[test]
fn throttling_on_30_percent_of_calls_loses_and_duplicates_nothing() {
    let emu = Emulator::start();
    let us = emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 6, "tags": {"Backup": "daily"}}]}),
    );
    let eu = emu.seed(
        json!({"region": "eu-west-1", "instances": [{"count": 6, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    emu.faults(json!({"seed": 42, "throttle": 0.3}));
    ok(&apply(&emu, &policies, &day(0)));
    ok(&apply(&emu, &policies, &day(1)));
    let injected = emu.control("calls", json!({}))["faults"].clone();
    assert!(
        injected.to_string().contains("throttle"),
        "faults were injected: {injected}"
    );
    emu.faults(json!({}));
    for (region, seeded) in [("us-east-1", &us), ("eu-west-1", &eu)] {
        let dump = emu.dump(region);
        let images = owned(&dump, "images", "web");
        let mut per_source = std::collections::BTreeMap::new();
        for i in &images {
            *per_source
                .entry(i["tags"]["backupctl:source"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        for id in instance_ids(seeded) {
            assert_eq!(
                per_source.get(&id),
                Some(&2),
                "{region} {id}: one image per run"
            );
        }
    }
    assert_eq!(plan(&emu, &policies, &day(1))["summary"]["create"], 0);
}

#[test]
fn state_pull_then_offline_plan_equals_the_live_plan() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 2, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    ok(&apply(&emu, &policies, &day(0)));
    let state = emu.dir.path().join("state.json");
    let out = emu.run(
        &policies,
        &["state", "pull", "-o", state.to_str().unwrap()],
        &[],
    );
    ok(&out);
    let live = plan(&emu, &policies, &day(3));
    let out = emu.run(
        &policies,
        &[
            "plan",
            "--format",
            "json",
            "--state",
            state.to_str().unwrap(),
        ],
        &[
            ("BACKUPCTL_NOW", &day(3)),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ],
    );
    ok(&out);
    let offline: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(offline, live);
}

#[test]
fn aws_that_cannot_be_used_is_one_clear_message_and_exit_3() {
    let emu = Emulator::start();
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    let out = emu.run(
        &policies,
        &["plan"],
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: AWS: NoCredentials: no usable AWS credentials"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("emulator-secret"));

    let out = emu.run(
        &policies,
        &["plan"],
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("Unreachable: cannot reach the EC2 endpoint"),
        "{err}"
    );
    assert!(
        !err.contains("DispatchFailure {"),
        "no SDK debug dumps: {err}"
    );
}

/// Issue 9: the guard used to refuse the whole apply (exit 1), so due
/// backups were not made either.
#[test]
fn mass_deletions_are_held_back_until_allowed_and_backups_are_still_made() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 2, "tags": {"Backup": "daily"}}]}),
    );
    let keep_month = DAILY_AMI.replace("max_age = \"2 days\"", "max_age = \"30 days\"");
    let policies = emu.dir.policies(&[("web", &keep_month)]);
    for d in 0..5 {
        ok(&apply(&emu, &policies, &day(d)));
    }
    assert_eq!(owned(&emu.dump("us-east-1"), "images", "web").len(), 10);

    // Someone shortens max_age: 3 of each source's 5 images would go at once.
    let policies = emu.dir.policies(&[(
        "web",
        DAILY_AMI
            .replace("max_age = \"2 days\"", "max_age = \"1 day\"")
            .as_str(),
    )]);
    let held = apply(&emu, &policies, &day(5));
    exits(&held, 5);
    let err = stderr(&held);
    assert!(err.contains("held back all 6 deletion(s)"), "{err}");
    assert!(
        err.contains("would lose 3 of its 5 backups in one run (the rule: never more than half"),
        "{err}"
    );
    assert!(err.contains("--allow-mass-delete"), "{err}");
    assert!(
        stdout(&held).contains("Apply complete: 2 created, 0 deleted, 0 failed."),
        "the due backups are made: {}",
        stdout(&held)
    );
    assert_eq!(owned(&emu.dump("us-east-1"), "images", "web").len(), 12);

    let allowed = emu.run(
        &policies,
        &["apply", "--auto-approve", "--allow-mass-delete"],
        &[("BACKUPCTL_NOW", &day(5))],
    );
    ok(&allowed);
    assert!(
        stdout(&allowed).contains("Apply complete: 0 created, 8 deleted, 0 failed."),
        "{}",
        stdout(&allowed)
    );
    assert_eq!(owned(&emu.dump("us-east-1"), "images", "web").len(), 4);

    // An absolute limit only when asked for: day 8 deletes one backup of
    // each source, as every day does, and that is two.
    ok(&apply(&emu, &policies, &day(7)));
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve", "--max-deletes", "1"],
        &[("BACKUPCTL_NOW", &day(8))],
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more than --max-deletes 1 allows"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_saved_plan_is_applied_exactly_or_refused_with_every_difference() {
    let emu = Emulator::start();
    let seeded = emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 2, "tags": {"Backup": "daily"}}]}),
    );
    let ids = instance_ids(&seeded);
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    for d in 0..3 {
        ok(&apply(&emu, &policies, &day(d)));
    }
    let plan_file = emu.dir.path().join("plan.json");
    let plan_file = plan_file.to_str().unwrap();
    let save = |now: &str| {
        let out = emu.run(
            &policies,
            &["plan", "--out", plan_file],
            &[("BACKUPCTL_NOW", now)],
        );
        ok(&out);
    };
    let apply_saved =
        |now: &str| emu.run(&policies, &["apply", plan_file], &[("BACKUPCTL_NOW", now)]);

    // Someone else ran in between: the creations are no longer due.
    save(&day(3));
    ok(&apply(&emu, &policies, &day(3)));
    let before = mutating_calls(&emu.calls());
    let stale = apply_saved(&day(3));
    assert_eq!(stale.status.code(), Some(1), "{}", stderr(&stale));
    let err = stderr(&stale);
    assert!(err.contains("refusing to apply"), "{err}");
    for id in &ids {
        assert!(
            err.contains(&format!("a newer backup of {id} appeared")),
            "{err}"
        );
    }
    assert!(
        err.contains("is gone"),
        "the planned deletions already happened: {err}"
    );
    assert_eq!(mutating_calls(&emu.calls()), before, "nothing was done");

    // A deletion target re-tagged, and the policy files edited: both named.
    save(&day(4));
    let target = {
        let p: Value = serde_json::from_str(&std::fs::read_to_string(plan_file).unwrap()).unwrap();
        p["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["actions"] == json!(["delete"]))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    emu.control(
        "tag",
        json!({"region": "us-east-1", "id": target, "tags": {"Legal": "hold"}}),
    );
    std::fs::write(
        policies.join("web.toml"),
        DAILY_AMI.replace("name = \"web\"", "name = \"web\"\ndescription = \"edited\""),
    )
    .unwrap();
    let err = stderr(&apply_saved(&day(4)));
    assert!(err.contains(&format!("{target} was re-tagged")), "{err}");
    assert!(err.contains("the policy files changed"), "{err}");
    std::fs::write(policies.join("web.toml"), DAILY_AMI).unwrap();

    // The newer backup that lets an old one go fails after the plan was
    // saved (issue 9: the re-check looked only at the deletion target, and
    // deleted a backup keep_last now protects).
    save(&day(5));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(plan_file).unwrap()).unwrap();
    let deletion = saved["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["actions"] == json!(["delete"]))
        .unwrap()
        .clone();
    let source = deletion["source"].as_str().unwrap();
    let dump = emu.dump("us-east-1");
    let newest = owned(&dump, "images", "web")
        .into_iter()
        .filter(|i| i["tags"]["backupctl:source"] == source)
        .max_by_key(|i| {
            i["tags"]["backupctl:created-at"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    emu.control(
        "set-state",
        json!({"region": "us-east-1", "id": newest, "state": "failed"}),
    );
    let before = mutating_calls(&emu.calls());
    let out = apply_saved(&day(5));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let id = deletion["id"].as_str().unwrap();
    assert!(
        stderr(&out).contains(&format!("a fresh plan keeps {id}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(mutating_calls(&emu.calls()), before, "nothing was done");
    emu.control(
        "set-state",
        json!({"region": "us-east-1", "id": newest, "state": "available"}),
    );

    // Too old a plan.
    let late =
        (chrono::DateTime::parse_from_rfc3339(&day(5)).unwrap() + Duration::hours(2)).to_rfc3339();
    let err = stderr(&apply_saved(&late));
    assert!(err.contains("longer than --max-plan-age"), "{err}");

    // Nothing changed: applied exactly, without a question.
    save(&day(6));
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(plan_file).unwrap()).unwrap();
    let out = apply_saved(&day(6));
    ok(&out);
    let created = expected["summary"]["create"].as_u64().unwrap();
    let deleted = expected["summary"]["delete"].as_u64().unwrap();
    assert!(
        stdout(&out).contains(&format!(
            "Apply complete: {created} created, {deleted} deleted, 0 failed."
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(plan(&emu, &policies, &day(6))["summary"]["create"], 0);
}

#[test]
fn the_iam_policy_allows_exactly_the_calls_backupctl_makes() {
    let emu = Emulator::start();
    emu.control("regions", json!({"regions": ["us-east-1", "eu-west-1"]}));
    for region in ["us-east-1", "eu-west-1"] {
        emu.seed(
            json!({"region": region, "instances": [{"tags": {"Backup": "daily"},
            "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}),
        );
    }
    let ami =
        "name = \"all\"\n[target]\nregions = [\"*\"]\ninstance_tags = { Backup = \"daily\" }\n\
               [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"1 day\"\nkeep_last = 1\n";
    let snap = "name = \"data\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
                volume_tags = { Snapshot = \"yes\" }\n[backup]\nkind = \"snapshot\"\n[retention]\nmax_age = \"1 day\"\nkeep_last = 1\n";
    let policies = emu.dir.policies(&[("all", ami), ("data", snap)]);
    for d in 0..4 {
        ok(&apply(&emu, &policies, &day(d)));
    }
    let out = emu.run(&policies, &["iam-policy"], &[]);
    ok(&out);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let (used, allowed) = calls_and_allowed(emu.calls(), &doc);
    assert_eq!(
        allowed, used,
        "the IAM policy must allow what is called, and nothing more"
    );
    let deletes = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "DeleteOnlyBackupsOfThesePolicies")
        .unwrap();
    assert_eq!(
        deletes["Condition"]["StringEquals"]["aws:ResourceTag/backupctl:policy"],
        json!(["all", "data"])
    );

    // An AMI-only set in listed regions needs no snapshot sets, no volume or
    // region listing, and is held to its regions.
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    let doc: Value =
        serde_json::from_str(&stdout(&emu.run(&policies, &["iam-policy"], &[]))).unwrap();
    let text = doc.to_string();
    for absent in [
        "ec2:CreateSnapshots",
        "ec2:DescribeVolumes",
        "ec2:DescribeRegions",
    ] {
        assert!(!text.contains(absent), "{absent} in {text}");
    }
    assert_eq!(
        doc["Statement"][0]["Condition"]["StringEquals"]["aws:RequestedRegion"],
        json!(["eu-west-1", "us-east-1"])
    );
}

/// The EC2 actions the emulator saw (with `ec2:CreateTags`, which EC2
/// checks for the tags of the creating calls too), and the actions the IAM
/// policy `doc` allows.
pub fn calls_and_allowed(calls: Value, doc: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut used: BTreeSet<String> = BTreeSet::new();
    for (_, actions) in calls.as_object().unwrap() {
        used.extend(
            actions
                .as_object()
                .unwrap()
                .keys()
                .map(|a| match a.as_str() {
                    "ListRules" | "GetRule" => format!("rbin:{a}"),
                    _ => format!("ec2:{a}"),
                }),
        );
    }
    used.insert("ec2:CreateTags".into());
    // GetRule is called once per rule, and most tests set none.
    if used.contains("rbin:ListRules") {
        used.insert("rbin:GetRule".into());
    }
    let mut allowed: BTreeSet<String> = BTreeSet::new();
    for s in doc["Statement"].as_array().unwrap() {
        allowed.extend(
            s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string()),
        );
    }
    (used, allowed)
}

/// Starts `apply --auto-approve` without waiting for it.
fn spawn_apply(emu: &Emulator, policies: &Path, now: &str) -> std::process::Child {
    spawn_apply_with(emu, policies, now, &[])
}

fn spawn_apply_with(
    emu: &Emulator,
    policies: &Path,
    now: &str,
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut env = env.to_vec();
    env.push(("BACKUPCTL_NOW", now));
    emu.command(policies, &["apply", "--auto-approve"], &env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn interrupt(child: &std::process::Child) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT works");
}

#[test]
fn ctrl_c_finishes_calls_in_flight_starts_no_new_ones_and_a_rerun_completes() {
    let emu = Emulator::start();
    let seeded = emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 10, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    emu.faults(json!({"latency": 1.0, "latency_seconds": 2, "actions": ["CreateImage"]}));
    // A small CreateImage bucket (4 at once, then 2 a second): the first
    // calls are in flight when Ctrl-C comes, the others wait for tokens.
    let rates = [("BACKUPCTL_API_RATES", "CreateImage=6/2")];
    let child = spawn_apply_with(&emu, &policies, &day(0), &rates);
    emu.wait_for_calls("CreateImage", 1);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(
        err.contains("Interrupted: starting no new actions"),
        "{err}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("Apply interrupted: "))
        .unwrap_or_else(|| panic!("{text}"));
    let created: usize = line["Apply interrupted: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let made = owned(&emu.dump("us-east-1"), "images", "web").len();
    assert_eq!(
        made, created,
        "what it says it did is what happened: {line}"
    );
    assert!((1..10).contains(&created), "{line}");
    assert!(
        line.contains(&format!("{} not started", 10 - created)),
        "{line}"
    );
    assert_eq!(
        err.matches("not started: web/").count(),
        10 - created,
        "{err}"
    );

    emu.faults(json!({}));
    ok(&apply(&emu, &policies, &day(0)));
    let dump = emu.dump("us-east-1");
    let sources: Vec<String> = owned(&dump, "images", "web")
        .iter()
        .map(|i| i["tags"]["backupctl:source"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<&String> = sources.iter().collect();
    assert_eq!(sources.len(), 10, "one image per instance, none duplicated");
    assert_eq!(unique.len(), 10);
    assert_eq!(unique.into_iter().cloned().collect::<Vec<_>>(), {
        let mut v = instance_ids(&seeded);
        v.sort();
        v
    });
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 4, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    emu.faults(json!({"latency": 1.0, "latency_seconds": 20, "actions": ["CreateImage"]}));
    let child = spawn_apply(&emu, &policies, &day(0));
    emu.wait_for_calls("CreateImage", 1);
    interrupt(&child);
    std::thread::sleep(std::time::Duration::from_millis(300));
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    // The calls are held 20 s before EC2 makes anything: no image yet
    // means it exited without waiting for them.
    let images = emu.dump("us-east-1")["images"].as_array().unwrap().len();
    assert_eq!(images, 0, "it waited for the calls in flight");
    assert!(
        stderr(&out).contains("Interrupted again: exiting now"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn two_applies_of_one_policy_set_never_run_together() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 2, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", DAILY_AMI)]);
    emu.faults(json!({"latency": 1.0, "latency_seconds": 3, "actions": ["CreateImage"]}));
    let first = spawn_apply(&emu, &policies, &day(0));
    emu.wait_for_calls("CreateImage", 1);
    let second = apply(&emu, &policies, &day(0));
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains(&format!(
            "another backupctl apply (pid {}) is running",
            first.id()
        )),
        "{err}"
    );
    let first = first.wait_with_output().unwrap();
    ok(&first);
    assert_eq!(
        owned(&emu.dump("us-east-1"), "images", "web").len(),
        2,
        "only the first one created"
    );
    // The lock lives in the user's state directory, and is named.
    let state = emu.dir.path().join("state").join("backupctl");
    assert!(err.contains(state.to_str().unwrap()), "{err}");
    // Released with its holder: the next run goes ahead.
    emu.faults(json!({}));
    ok(&apply(&emu, &policies, &day(0)));
    // And each run removes its lock file when it ends.
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "lock files left behind: {left:?}");
}

/// Issue 9, item 3 (first part): `state pull` observed only what the head
/// policies select, so a pull request that drops a region planned "no
/// change". With `--also-policies` the one state serves both plans.
#[test]
fn one_state_pull_serves_the_base_and_head_plans_of_a_pull_request() {
    let emu = Emulator::start();
    for region in ["us-east-1", "eu-west-1"] {
        emu.seed(json!({"region": region, "instances": [{"tags": {"Backup": "daily"}}]}));
    }
    let base = emu.dir.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("web.toml"), DAILY_AMI).unwrap();
    let head = emu.dir.policies(&[(
        "web",
        DAILY_AMI
            .replace(
                "regions = [\"us-east-1\", \"eu-west-1\"]",
                "regions = [\"us-east-1\"]",
            )
            .as_str(),
    )]);
    let state = emu.dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let now = day(0);
    let env = [("BACKUPCTL_NOW", now.as_str())];
    ok(&emu.run(
        &head,
        &[
            "state",
            "pull",
            "--also-policies",
            base.to_str().unwrap(),
            "-o",
            state,
        ],
        &env,
    ));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    assert!(
        saved["regions"]["eu-west-1"]["instances"]
            .as_array()
            .is_some_and(|i| i.len() == 1),
        "the region only the base targets is observed: {saved}"
    );
    let creates_in = |policies: &Path| -> BTreeSet<String> {
        let out = emu.run(
            policies,
            &["plan", "--state", state, "--format", "json"],
            &env,
        );
        ok(&out);
        let plan: Value = serde_json::from_str(&stdout(&out)).unwrap();
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["actions"] == json!(["create"]))
            .map(|c| c["region"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        creates_in(&base),
        BTreeSet::from(["eu-west-1".to_string(), "us-east-1".to_string()])
    );
    assert_eq!(creates_in(&head), BTreeSet::from(["us-east-1".to_string()]));
}
