//! Taking over from backupViaTag and molibackup, end to end against the
//! emulator: their backups are seeded the way each tool makes them (tags
//! and names included), then planned, adopted by a saved plan, and followed
//! by retention over simulated weeks.

use crate::emulator::{day, Emulator};
use crate::live::{instance_ids, ok, owned, plan};
use crate::support::stderr;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const WEB: &str = "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"prodDaily\" }\n\
    [backup]\nkind = \"ami\"\nevery = \"1 day\"\n[retention]\nmax_age = \"+30 days\"\nkeep_last = 1\n\
    [adopt]\nfrom = \"backupViaTag\"\n";
const DB: &str = "name = \"db\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"prodDaily\" }\n\
    volume_tags = { Molibackup_enabled = \"true\" }\n[backup]\nkind = \"snapshot\"\n\
    [retention]\nmax_age = \"7 days\"\nkeep_last = 1\n[adopt]\nfrom = \"molibackup\"\n";

fn at(d: i64, hours: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&day(d))
        .unwrap()
        .with_timezone(&Utc)
        + Duration::hours(hours)
}

/// What backupViaTag stored in `Expire`: `date --date="+30 days"`'s output.
fn date_output(t: DateTime<Utc>) -> String {
    t.format("%a %b %e %H:%M:%S UTC %Y").to_string()
}

fn changes<'a>(plan: &'a Value, actions: &str) -> BTreeSet<&'a str> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["actions"] == json!([actions]))
        .map(|c| c["id"].as_str().unwrap_or(c["source"].as_str().unwrap()))
        .collect()
}

fn ids(dump: &Value, kind: &str) -> BTreeSet<String> {
    dump[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_old_tools_backups_are_adopted_once_then_follow_the_policy() {
    let emu = Emulator::start();
    let seeded = emu.seed(json!({"region": "us-east-1", "instances": [
        {"tags": {"Backup": "prodDaily"},
         "volumes": [{"device": "/dev/sdf", "tags": {"Molibackup_enabled": "true"}}]},
        {"tags": {"Backup": "other"}}]}));
    let instances = instance_ids(&seeded);
    let (web, other) = (&instances[0], &instances[1]);
    let data = seeded["instances"][0]["volumes"]["/dev/sdf"]
        .as_str()
        .unwrap();
    let root = seeded["instances"][0]["volumes"]["/dev/sda1"]
        .as_str()
        .unwrap();

    let mut n = 0;
    let mut backupviatag = |when: DateTime<Utc>, instance: &str, expire: String, extra: Value| {
        n += 1;
        emu.control("clock", json!({"now": when.to_rfc3339(), "lag_seconds": 0}));
        let mut tags = json!({"CreatedBy": "backupViaTag", "Expire": expire,
            "Name": format!("{} Backup of {instance}", when.format("%Y/%m/%d %H:%M:%S"))});
        for (k, v) in extra.as_object().unwrap() {
            tags[k] = v.clone();
        }
        let name = format!("{}{n:02} {instance}", when.format("%Y%m%d%H%M"));
        let made = emu.seed(json!({"region": "us-east-1",
            "images": [{"instance_id": instance, "name": name, "tags": tags}]}));
        made["images"][0].as_str().unwrap().to_string()
    };
    // "+30 days" once, and a one-off "never"; 40 days before day 0.
    let gone = backupviatag(at(-40, 0), web, date_output(at(-10, 0)), json!({}));
    let never = backupviatag(at(-40, 1), web, "never".into(), json!({}));
    // An Expire later than max_age: a floor until day 20.
    let held = backupviatag(at(-40, 2), web, date_output(at(20, 0)), json!({}));
    // Last night's run: today's backup is already made.
    let fresh = backupviatag(at(0, -2), web, date_output(at(30, -2)), json!({}));
    // Not for this policy: another instance, and one some policy owns.
    let not_selected = backupviatag(at(-40, 3), other, date_output(at(-10, 0)), json!({}));
    let owned_already = backupviatag(
        at(-40, 4),
        web,
        date_output(at(-10, 0)),
        json!({"backupctl:policy": "retired-web"}),
    );
    emu.control(
        "clock",
        json!({"now": at(-3, 0).to_rfc3339(), "lag_seconds": 0}),
    );
    let moli = |volume: &str| {
        json!({"volume_id": volume, "tags": {"CreatedBy": "molibackup",
        "Name": format!("db-{volume}"), "CreateDate": "20260101", "Timestamp": "1767225600"}})
    };
    let snaps = emu.seed(json!({"region": "us-east-1",
        "snapshots": [moli(data), moli(data), moli(root)]}));
    let moli_data: Vec<&str> = (0..2)
        .map(|i| snaps["snapshots"][i].as_str().unwrap())
        .collect();
    let moli_root = snaps["snapshots"][2].as_str().unwrap();

    let policies = emu.dir.policies(&[("web", WEB), ("db", DB)]);
    let first = plan(&emu, &policies, &day(0));
    let mut want: BTreeSet<&str> = [&gone, &never, &held, &fresh]
        .into_iter()
        .map(String::as_str)
        .collect();
    want.extend(&moli_data);
    assert_eq!(changes(&first, "update"), want, "{first:#}");
    // Today's backupViaTag AMI counts: no second one; molibackup's
    // volume-by-volume snapshots are no set: one is due.
    assert_eq!(changes(&first, "create"), BTreeSet::from([web.as_str()]));
    assert_eq!(
        first["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["actions"] == json!(["create"]))
            .map(|c| c["policy"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["db"]
    );
    assert_eq!(changes(&first, "delete"), BTreeSet::from([gone.as_str()]));
    for id in [&never, &held] {
        let kept = first["kept"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id.as_str())
            .unwrap();
        assert_eq!(kept["reason"]["code"], "old_expiry", "{kept}");
    }

    // Adopted through a saved plan, re-checked against a fresh observation.
    let plan_file = emu.dir.path().join("adopt.json");
    let plan_file = plan_file.to_str().unwrap();
    ok(&emu.run(
        &policies,
        &["plan", "--out", plan_file],
        &[("BACKUPCTL_NOW", &day(0))],
    ));
    emu.control("reset_calls", json!({}));
    let out = emu.run(
        &policies,
        &["apply", plan_file],
        &[("BACKUPCTL_NOW", &day(0))],
    );
    ok(&out);
    assert_eq!(
        emu.calls()["us-east-1"]["CreateTags"],
        json!(6),
        "{}",
        stderr(&out)
    );

    let dump = emu.dump("us-east-1");
    let images = ids(&dump, "images");
    assert!(
        !images.contains(&gone),
        "expired and past its Expire: deleted"
    );
    let web_images: BTreeSet<&str> = owned(&dump, "images", "web")
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        web_images,
        BTreeSet::from([never.as_str(), held.as_str(), fresh.as_str()])
    );
    for image in owned(&dump, "images", "web") {
        assert_eq!(
            image["tags"]["backupctl:adopted-from"], "backupViaTag",
            "{image}"
        );
        assert_eq!(image["tags"]["backupctl:source"], web.as_str());
        assert!(
            image["tags"]["Expire"].is_string(),
            "the old tags stay: {image}"
        );
    }
    // Each adopted AMI's snapshots were tagged with it, and the deleted
    // AMI's snapshot went with it.
    let web_snapshots = owned(&dump, "snapshots", "web").len();
    assert_eq!(web_snapshots, 3 * 2, "two volumes per AMI: {dump:#}");
    let db_adopted: BTreeSet<&str> = owned(&dump, "snapshots", "db")
        .iter()
        .filter(|s| s["tags"]["backupctl:adopted-from"] == "molibackup")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(db_adopted, moli_data.iter().copied().collect());
    for untouched in [&not_selected, &owned_already] {
        let image = dump["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == untouched.as_str())
            .unwrap();
        assert_ne!(image["tags"]["backupctl:policy"], "web", "{image}");
        assert!(image["tags"]["backupctl:adopted-from"].is_null(), "{image}");
    }
    let root_snap = dump["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == moli_root)
        .unwrap();
    assert!(
        root_snap["tags"]["backupctl:policy"].is_null(),
        "{root_snap}"
    );

    let again = plan(&emu, &policies, &day(0));
    assert_eq!(again["changes"], json!([]), "{again:#}");

    // Then the policy's retention: molibackup's snapshots go once expired
    // (a complete set exists); the AMI held by its Expire goes after day 20;
    // "never" stays.
    for d in 1..=25 {
        ok(&crate::live::apply(&emu, &policies, &day(d)));
    }
    let dump = emu.dump("us-east-1");
    let snapshots = ids(&dump, "snapshots");
    for id in &moli_data {
        assert!(!snapshots.contains(*id), "{id} outlived max_age");
    }
    assert!(
        snapshots.contains(moli_root),
        "not the policy's: never deleted"
    );
    let images = ids(&dump, "images");
    assert!(!images.contains(&held), "its Expire (day 20) passed");
    assert!(images.contains(&never), "Expire never");
    assert!(images.contains(&not_selected) && images.contains(&owned_already));

    let iam = emu.run(&policies, &["iam-policy"], &[]);
    ok(&iam);
    let doc: Value = serde_json::from_str(&crate::support::stdout(&iam)).unwrap();
    // Every call made since the adoption's apply, and nothing more, is
    // allowed.
    let (used, allowed) = crate::live::calls_and_allowed(emu.calls(), &doc);
    assert_eq!(allowed, used);
    let adopt = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "AdoptOnlyTheOldToolsBackups")
        .expect("a CreateTags statement for adoption");
    assert_eq!(
        adopt["Condition"]["StringEquals"]["aws:ResourceTag/CreatedBy"],
        json!(["backupViaTag", "molibackup"])
    );
}

/// `import-config` on the old tools' documented examples: the files it
/// writes validate, adopt, and plan the migration fixture's backups; a
/// second run overwrites nothing.
#[test]
fn import_config_writes_policies_that_validate_and_never_overwrites() {
    use crate::support::{backupctl, stdout};
    let dir = crate::emulator::TempDir::new("import");
    let out = dir.path().join("policies");
    let out = out.to_str().unwrap();
    let yaml = dir.path().join("molibackup.yaml");
    std::fs::write(
        &yaml,
        "jobs:\n  db01:\n    module: ebs-snapshot\n    retention: 7\n    aws_region: us-east-1\n    \
         accesskey_id: AKIAOLD\n    accesskey_secret: old-secret\n    instance_tag: Molibackup_enabled=true\n    \
         volume_tag: Molibackup_enabled=true\n",
    )
    .unwrap();
    let yaml = yaml.to_str().unwrap();
    ok(&backupctl(&[
        "import-config",
        "--out",
        out,
        "molibackup",
        yaml,
    ]));
    ok(&backupctl(&[
        "import-config",
        "--out",
        out,
        "backupviatag",
        "--",
        "-t",
        "Backup:prodDaily",
        "-e",
        "+30 days",
    ]));
    let written = std::fs::read_to_string(dir.path().join("policies/db01.toml")).unwrap();
    assert!(
        !written.contains("AKIAOLD") && !written.contains("old-secret"),
        "{written}"
    );
    let listed = backupctl(&["--policies", out, "validate"]);
    ok(&listed);
    assert!(
        stdout(&listed).contains("2 policies valid"),
        "{}",
        stdout(&listed)
    );
    // The converted policies adopt the migration fixture's old backups.
    let plan = backupctl(&[
        "--policies",
        out,
        "plan",
        "--state",
        "fixtures/migration/inventory.json",
        "--at",
        "2026-11-22T06:00:00Z",
        "--format",
        "json",
    ]);
    ok(&plan);
    let plan: Value = serde_json::from_str(&stdout(&plan)).unwrap();
    assert_eq!(plan["summary"]["adopt"], 9, "{plan:#}");

    let again = backupctl(&["import-config", "--out", out, "molibackup", yaml]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists: nothing was written"),
        "{}",
        stderr(&again)
    );
    let bad = backupctl(&[
        "import-config",
        "backupviatag",
        "--",
        "-t",
        "Backup:x",
        "-e",
        "1.5 days",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("write \"36 hours\""),
        "{}",
        stderr(&bad)
    );
}
