//! The pull-request workflow offline: plan base and head policies against
//! one saved state, diff them, and render Markdown.

use crate::emulator::TempDir;
use crate::support::{backupctl, root, stderr, stdout};
use serde_json::Value;

const AT: &str = "2026-11-22T06:00:00Z";

fn plan_to(policies: &str, out: &str) {
    let o = backupctl(&[
        "--policies",
        policies,
        "plan",
        "--state",
        "fixtures/demo/inventory.json",
        "--at",
        AT,
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn diff_shows_the_deletions_a_policy_change_adds() {
    let dir = TempDir::new("review");
    let head_policies = dir.path().join("head");
    std::fs::create_dir_all(&head_policies).unwrap();
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // The pull request shortens web-daily's retention.
        let text = text.replace(
            "max_age = \"30 days\"\nkeep_last = 3",
            "max_age = \"7 days\"\nkeep_last = 1",
        );
        std::fs::write(head_policies.join(path.file_name().unwrap()), text).unwrap();
    }
    let base = dir.path().join("base.json");
    let head = dir.path().join("head.json");
    plan_to("policies", base.to_str().unwrap());
    plan_to(head_policies.to_str().unwrap(), head.to_str().unwrap());
    let (b, h) = (base.to_str().unwrap(), head.to_str().unwrap());

    let out = backupctl(&["diff", b, h, "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("Deletions HEAD adds (BASE would not delete these):\n"),
        "{text}"
    );
    for ami in ["ami-0c0ffee000000102", "ami-0c0ffee000000103"] {
        assert!(
            text.contains(&format!("- web-daily/us-east-1/i-0a1b2c3d4e5f60001/{ami}")),
            "{ami}: {text}"
        );
    }
    assert!(
        text.contains("--- BASE\n+++ HEAD\n"),
        "a unified diff: {text}"
    );
    assert!(
        text.ends_with(
            "Diff: 2 deletions added, 0 removed; 0 creations added, 0 removed; 0 changed; 0 sources no longer backed up.\n"
        ),
        "{text}"
    );

    let out = backupctl(&["diff", b, h, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["summary"]["deletions_added"], 2);
    assert_eq!(json["same_inventory"], true);
    assert!(json["added"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actions"] == serde_json::json!(["delete"])));

    let same = backupctl(&["diff", b, b, "--detailed-exitcode"]);
    assert_eq!(same.status.code(), Some(0));
    assert!(stdout(&same).ends_with(
        "Diff: 0 deletions added, 0 removed; 0 creations added, 0 removed; 0 changed; 0 sources no longer backed up.\n"
    ));

    let md = backupctl(&["show", h, "--format", "markdown"]);
    assert!(
        stdout(&md).contains("> **Warning:** this plan deletes 5 backups."),
        "{}",
        stdout(&md)
    );
}

/// Issue 9, item 3: the pull-request gate, end to end against the emulator.
/// Each head change below loses backups and must exit 6 under
/// `diff --fail-on-loss`; a harmless edit must not.
#[test]
fn the_pull_request_gate_sees_every_lost_backup() {
    use crate::emulator::{day, Emulator};
    use crate::live::{apply, exits, ok};
    use serde_json::json;

    let emu = Emulator::start();
    for region in ["us-east-1", "eu-west-1"] {
        emu.seed(
            json!({"region": region, "instances": [{"tags": {"Backup": "daily"},
            "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}]}]}),
        );
    }
    let web = "name = \"web\"\n[target]\nregions = [\"us-east-1\", \"eu-west-1\"]\n\
               instance_tags = { Backup = \"daily\" }\n[backup]\nkind = \"ami\"\n\
               [retention]\nmax_age = \"30 days\"\nkeep_last = 1\n";
    let data = "name = \"data\"\n[target]\nregions = [\"us-east-1\", \"eu-west-1\"]\n\
                instance_tags = { Backup = \"daily\" }\nvolume_tags = { Snapshot = \"yes\" }\n\
                [backup]\nkind = \"snapshot\"\n[retention]\nmax_age = \"30 days\"\nkeep_last = 1\n";
    let base = emu.dir.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("web.toml"), web).unwrap();
    std::fs::write(base.join("data.toml"), data).unwrap();
    for d in 0..3 {
        ok(&apply(&emu, &base, &day(d)));
    }
    let now = day(3);
    let env = [("BACKUPCTL_NOW", now.as_str())];
    let file = |name: &str| emu.dir.path().join(name).to_str().unwrap().to_string();
    /// What the pull request does, its policy files, the gate's exit code.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, i32);
    let cases: [Case; 5] = [
        ("removed policy", vec![("web", web.to_string())], 6),
        (
            "narrowed selector",
            vec![
                (
                    "web",
                    web.replace("Backup = \"daily\"", "Backup = \"daily\", Tier = \"web\""),
                ),
                ("data", data.to_string()),
            ],
            6,
        ),
        (
            "removed region",
            vec![
                ("web", web.replace(", \"eu-west-1\"", "")),
                ("data", data.to_string()),
            ],
            6,
        ),
        (
            "shortened max_age",
            vec![
                ("web", web.replace("30 days", "1 day")),
                ("data", data.to_string()),
            ],
            6,
        ),
        (
            "a harmless edit",
            vec![
                (
                    "web",
                    web.replace("name = \"web\"", "name = \"web\"\ndescription = \"AMIs\""),
                ),
                ("data", data.to_string()),
            ],
            0,
        ),
    ];
    for (what, files, code) in cases {
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let head = emu.dir.policies(&refs);
        let (state, b, h) = (file("state.json"), file("base.json"), file("head.json"));
        let pull = [
            "state",
            "pull",
            "--also-policies",
            base.to_str().unwrap(),
            "-o",
            &state,
        ];
        ok(&emu.run(&head, &pull, &env));
        ok(&emu.run(&base, &["plan", "--state", &state, "--out", &b], &env));
        ok(&emu.run(&head, &["plan", "--state", &state, "--out", &h], &env));
        let out = emu.run(&head, &["diff", &b, &h, "--fail-on-loss"], &env);
        exits(&out, code);
        if code == 6 {
            let text = stdout(&out);
            assert!(
                text.contains("Sources HEAD no longer backs up:")
                    || text.contains("Deletions HEAD adds"),
                "{what}: {text}"
            );
        }
    }
}

/// The shipped GitHub Actions workflow (examples/) is valid YAML, and its
/// backupctl lines, run in order against the emulator, are the recipe that
/// works: one observation for both plans, a Markdown comment, the gate.
#[test]
fn the_shipped_pull_request_workflow_runs_the_recipe() {
    use crate::emulator::{day, Emulator};
    use crate::live::{exits, ok};
    use serde_json::json;

    let emu = Emulator::start();
    let workflow =
        crate::support::yaml(&root().join("examples/github-pull-request.yml"))[0].clone();
    // YAML 1.1 reads the key `on` as true.
    assert!(workflow["true"]["pull_request"].is_object(), "{workflow}");
    let steps = workflow["jobs"]["plan"]["steps"].as_array().unwrap();
    let lines: Vec<String> = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .flat_map(|r| {
            r.lines()
                .map(str::trim)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|l| l.starts_with("backupctl "))
        .collect();
    assert!(lines.len() >= 5, "{lines:?}");

    emu.seed(json!({"region": "us-east-1", "instances": [{"tags": {"Backup": "daily"}}]}));
    let dir = emu.dir.path();
    let web = "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
               [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"7 days\"\n";
    for side in ["base", "head"] {
        std::fs::create_dir_all(dir.join(side).join("policies")).unwrap();
    }
    std::fs::write(dir.join("base/policies/web.toml"), web).unwrap();
    // The pull request narrows the selector to nothing: the gate must fail.
    std::fs::write(
        dir.join("head/policies/web.toml"),
        web.replace("Backup = \"daily\"", "Backup = \"daily\", Tier = \"web\""),
    )
    .unwrap();
    let now = day(0);
    let env = [("BACKUPCTL_NOW", now.as_str())];
    let mut last = None;
    for line in &lines {
        let (command, redirect) = match line.split_once(" > ") {
            Some((c, r)) => (c, Some(r.split_whitespace().next().unwrap())),
            None => (line.as_str(), None),
        };
        let command = command.trim_end_matches(" || true");
        let mut words: Vec<&str> = command.split_whitespace().skip(1).collect();
        let policies = match words.first() {
            Some(&"--policies") => {
                let p = dir.join(words[1]);
                words.drain(..2);
                p
            }
            _ => dir.join("head/policies"),
        };
        let out = emu.run(&policies, &words, &env);
        if let Some(file) = redirect {
            std::fs::write(dir.join(file), &out.stdout).unwrap();
        }
        if let Some((line, out)) = last.replace((line.clone(), out)) {
            if !line.contains("|| true") {
                assert_eq!(out.status.code(), Some(0), "{line}: {}", stderr(&out));
            }
        }
    }
    let (line, out) = last.unwrap();
    assert!(
        line.contains("diff base.json head.json --fail-on-loss"),
        "{line}"
    );
    exits(&out, 6);
    assert!(stdout(&out).contains("Sources HEAD no longer backs up:"));
    let comment = std::fs::read_to_string(dir.join("comment.md")).unwrap();
    assert!(!comment.is_empty());
    ok(&emu.run(&dir.join("base/policies"), &["show", "base.json"], &env));
}

/// Issue 9, item 3: a deregistration whose snapshots grow in HEAD (another
/// image that used one of them goes too) deletes more, and the gate says so.
#[test]
fn the_gate_counts_snapshots_a_deregistration_gains() {
    use crate::emulator::{day, Emulator};
    use crate::live::{apply, exits, ok, owned};
    use serde_json::json;

    let emu = Emulator::start();
    let seeded = emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 2, "tags": {"Backup": "daily"}}]}),
    );
    let (a, b) = (
        seeded["instances"][0]["id"].as_str().unwrap().to_string(),
        seeded["instances"][1]["id"].as_str().unwrap().to_string(),
    );
    let web = |max_age: &str| {
        format!(
            "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = {{ Backup = \"daily\" }}\n\
             [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"{max_age}\"\nkeep_last = 1\n"
        )
    };
    let history = emu.dir.policies(&[("web", &web("30 days"))]);
    ok(&apply(&emu, &history, &day(0)));
    // A's first image's snapshot, also used by an image of B registered
    // (a restore, say) and tagged as one of B's backups of the same day.
    let dump = emu.dump("us-east-1");
    let first = owned(&dump, "images", "web")
        .into_iter()
        .find(|i| i["tags"]["backupctl:source"] == a.as_str())
        .unwrap()
        .clone();
    let shared = first["snapshot_ids"][0].as_str().unwrap().to_string();
    ok(&apply(&emu, &history, &day(1)));
    let tagged_at =
        chrono::DateTime::parse_from_rfc3339(&day(1)).unwrap() + chrono::Duration::hours(6);
    emu.control(
        "register-image",
        json!({"region": "us-east-1", "name": "restored-b", "snapshot_ids": [shared],
               "tags": {"backupctl:policy": "web", "backupctl:source": b,
                        "backupctl:created-at": tagged_at.to_rfc3339(), "Name": "restored-b"}}),
    );
    ok(&apply(&emu, &history, &day(2)));

    // BASE keeps 2 days: A's first image goes, its snapshot stays (the
    // restored image is 1.75 days old). HEAD keeps 1 day: the restored
    // image goes too, so A's first image takes the shared snapshot with it.
    let base = emu.dir.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("web.toml"), web("2 days")).unwrap();
    let head = emu.dir.policies(&[("web", &web("1 day"))]);
    let file = |name: &str| emu.dir.path().join(name).to_str().unwrap().to_string();
    let (state, b_plan, h_plan) = (file("state.json"), file("base.json"), file("head.json"));
    let now = day(3);
    let env = [("BACKUPCTL_NOW", now.as_str())];
    let base_dir = base.to_str().unwrap();
    ok(&emu.run(
        &head,
        &["state", "pull", "--also-policies", base_dir, "-o", &state],
        &env,
    ));
    ok(&emu.run(&base, &["plan", "--state", &state, "--out", &b_plan], &env));
    ok(&emu.run(&head, &["plan", "--state", &state, "--out", &h_plan], &env));
    let out = emu.run(&head, &["diff", &b_plan, &h_plan, "--fail-on-loss"], &env);
    exits(&out, 6);
    let text = stdout(&out);
    let id = first["id"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "{id}\n      deletes more than BASE: also {shared}"
        )),
        "{text}"
    );
}
