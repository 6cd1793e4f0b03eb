//! Many accounts against the emulator: three accounts of two regions each,
//! entered through assumed roles (moto gives an assumed role's keys the
//! role's account, with an EC2 of its own); one account whose role cannot
//! be assumed, one with a region denied. Every other account is planned
//! and applied, each failure is reported once, and the run exits 3.

use crate::emulator::{day, Emulator, ROLLING_AMI};
use crate::support::{stderr, stdout};
use serde_json::{json, Value};

const PROD: &str = "111111111111";
const STAGING: &str = "222222222222";
const BROKEN: &str = "333333333333";
/// The base credentials' own account (the emulator's default).
const BASE: &str = "123456789012";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

const ACCOUNTS: &str = r#"
[defaults]
role_name = "backupctl"
external_id = "backupctl-test"

[[account]]
id = "111111111111"
name = "prod"
tags = { env = "prod" }

[[account]]
id = "222222222222"
name = "staging"
tags = { env = "staging" }

[[account]]
id = "333333333333"
name = "broken"
"#;

/// Only the production account, chosen by tag: staging is never entered
/// for it.
const PROD_ONLY: &str = "name = \"prod-weekly\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\naccount_tags = { env = \"prod\" }\n\
                         [backup]\nkind = \"snapshot\"\nevery = \"1 week\"\n[retention]\nmax_age = \"30 days\"\n";

/// One instance tagged for backup in each region of each account, the
/// broken account's role denied, and staging's eu-west-1 denied.
fn world() -> (Emulator, std::path::PathBuf) {
    let emu = Emulator::start();
    for account in [PROD, STAGING, BROKEN] {
        for region in REGIONS {
            emu.seed(json!({
                "account": account,
                "region": region,
                "instances": [{"count": 1, "tags": {"Backup": "daily"}}],
            }));
        }
    }
    emu.faults(json!({"deny": [
        {"region": "*", "actions": ["AssumeRole"],
         "ids": [format!("arn:aws:iam::{BROKEN}:role/backupctl")]},
        {"region": "eu-west-1", "account": STAGING, "actions": ["*"]},
    ]}));
    let policies = emu
        .dir
        .policies(&[("web", ROLLING_AMI), ("prod-weekly", PROD_ONLY)]);
    std::fs::write(policies.join("accounts.toml"), ACCOUNTS).unwrap();
    (emu, policies)
}

fn images(emu: &Emulator, account: &str, region: &str) -> Vec<Value> {
    emu.control("dump", json!({"account": account, "region": region}))["images"]
        .as_array()
        .unwrap()
        .clone()
}

fn assume_role_calls(emu: &Emulator) -> u64 {
    emu.control("calls", json!({}))["by_account"][BASE]["AssumeRole"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn every_account_that_can_be_entered_is_planned_and_each_failure_said_once() {
    let (emu, policies) = world();
    let out = emu.run(
        &policies,
        &["plan", "--format", "json"],
        &[("BACKUPCTL_NOW", &day(0))],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(
        err.matches("could not enter account broken (333333333333)")
            .count(),
        1,
        "{err}"
    );
    assert!(err.contains("AccessDenied"), "{err}");
    assert_eq!(
        err.matches("could not observe account staging (222222222222) in eu-west-1")
            .count(),
        1,
        "{err}"
    );
    crate::json_contract::check_document(&stdout(&out), "plan of accounts");
    let plan: Value = serde_json::from_str(&stdout(&out)).expect("a JSON plan");
    assert_eq!(
        plan["format_version"],
        backupctl::plan::json::FORMAT_VERSION
    );
    let names: Vec<(&str, &str)> = plan["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap(), a["name"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [(PROD, "prod"), (STAGING, "staging")]);
    let mut made: Vec<(String, String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let address = c["address"].as_str().unwrap();
            let account = c["account"].as_str().expect("every change has its account");
            assert!(address.starts_with(&format!("{account}/")), "{address}");
            (
                account.to_string(),
                c["policy"].as_str().unwrap().to_string(),
                c["region"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    made.sort();
    let want = [
        (PROD, "prod-weekly", "us-east-1"),
        (PROD, "web", "eu-west-1"),
        (PROD, "web", "us-east-1"),
        (STAGING, "web", "us-east-1"),
    ];
    assert_eq!(
        made,
        want.map(|(a, p, r)| (a.to_string(), p.to_string(), r.to_string())),
        "{plan:#}"
    );
    // One AssumeRole per account some policy acts in, the broken one
    // included (refused once, not retried).
    assert_eq!(assume_role_calls(&emu), 3);
    // Nothing was asked of the base credentials' own EC2.
    let by_account = &emu.control("calls", json!({}))["by_account"];
    let base_calls: Vec<&String> = by_account[BASE]
        .as_object()
        .unwrap()
        .keys()
        .filter(|a| *a != "AssumeRole")
        .collect();
    assert!(base_calls.is_empty(), "{by_account:#}");

    // The text plan groups by account.
    let text = emu.run(&policies, &["plan"], &[("BACKUPCTL_NOW", &day(0))]);
    let text = stdout(&text);
    let prod = text.find("Account prod (111111111111):").expect(&text);
    let staging = text.find("Account staging (222222222222):").expect(&text);
    assert!(prod < staging, "{text}");
}

#[test]
fn apply_acts_in_each_account_through_its_role_and_leaves_the_others_alone() {
    let (emu, policies) = world();
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(0))],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Apply complete: 4 created, 0 deleted, 0 failed."),
        "{}",
        stdout(&out)
    );
    let web_images = |account, region| {
        images(&emu, account, region)
            .iter()
            .filter(|i| i["tags"]["backupctl:policy"] == "web")
            .count()
    };
    assert_eq!(web_images(PROD, "us-east-1"), 1);
    assert_eq!(web_images(PROD, "eu-west-1"), 1);
    assert_eq!(web_images(STAGING, "us-east-1"), 1);
    assert_eq!(web_images(STAGING, "eu-west-1"), 0, "denied there");
    for region in REGIONS {
        assert!(images(&emu, BROKEN, region).is_empty());
        assert!(images(&emu, BASE, region).is_empty());
    }

    // The next day, a reviewed plan is applied exactly: each account's
    // part is observed again in that account.
    let plan_file = emu.dir.path().join("plan.json");
    let at = day(1);
    let made = emu.run(
        &policies,
        &["plan", "--out", plan_file.to_str().unwrap()],
        &[("BACKUPCTL_NOW", &at)],
    );
    assert_eq!(made.status.code(), Some(3), "{}", stderr(&made));
    let applied = emu.run(
        &policies,
        &["apply", plan_file.to_str().unwrap()],
        &[("BACKUPCTL_NOW", &at)],
    );
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    assert!(
        stdout(&applied).contains("Apply complete: 3 created, 0 deleted, 0 failed."),
        "{}",
        stdout(&applied)
    );
    assert_eq!(web_images(PROD, "us-east-1"), 2);
    assert_eq!(web_images(STAGING, "us-east-1"), 2);

    // An accounts file edited since the plan was made refuses it.
    std::fs::write(
        policies.join("accounts.toml"),
        ACCOUNTS.replace("name = \"staging\"", "name = \"stage\""),
    )
    .unwrap();
    let refused = emu.run(
        &policies,
        &["apply", plan_file.to_str().unwrap()],
        &[("BACKUPCTL_NOW", &at)],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("the policy files changed"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn accounts_files_and_account_selectors_are_checked_before_anything_is_asked() {
    let (emu, policies) = world();
    std::fs::write(
        policies.join("accounts.toml"),
        "[[account]]\nid = \"1111\"\nrole = \"arn:aws:iam::111111111111:role/x\"\n",
    )
    .unwrap();
    let out = emu.run(&policies, &["validate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("accounts.toml:2:6"), "{err}");
    assert!(err.contains("is not an AWS account id"), "{err}");

    std::fs::write(policies.join("accounts.toml"), ACCOUNTS).unwrap();
    std::fs::write(
        policies.join("prod-weekly.toml"),
        PROD_ONLY.replace("account_tags = { env = \"prod\" }", "accounts = [\"prd\"]"),
    )
    .unwrap();
    let out = emu.run(&policies, &["plan"], &[("BACKUPCTL_NOW", &day(0))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("selects account \"prd\", which"),
        "{}",
        stderr(&out)
    );
    assert_eq!(assume_role_calls(&emu), 0, "nothing was asked");
}

/// Two teams, two policy sets, one account, the same policy name: each
/// set makes, keeps and deletes only its own backups, and neither lists
/// the other's as orphans.
#[test]
fn two_namespaces_that_share_a_policy_name_never_touch_each_others_backups() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 2, "tags": {"Backup": "daily"}}]}),
    );
    let ops = emu.dir.policies(&[("web", ROLLING_AMI)]);
    let payments = emu.dir.path().join("payments");
    std::fs::create_dir_all(&payments).unwrap();
    std::fs::write(
        payments.join("web.toml"),
        format!("namespace = \"payments\"\n{ROLLING_AMI}"),
    )
    .unwrap();
    let owned_by = |owner: &str| -> Vec<String> {
        images(&emu, BASE, "us-east-1")
            .iter()
            .filter(|i| i["tags"]["backupctl:policy"] == owner)
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    for d in 0..4 {
        for (set, owner) in [(&ops, "web"), (&payments, "payments/web")] {
            let theirs = if owner == "web" {
                owned_by("payments/web")
            } else {
                owned_by("web")
            };
            let at = day(d);
            let plan = emu.run(
                set,
                &["plan", "--format", "json", "-v"],
                &[("BACKUPCTL_NOW", &at)],
            );
            assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
            let text = stdout(&plan);
            for id in &theirs {
                assert!(
                    !text.contains(id.as_str()),
                    "{owner}'s plan mentions {id}:\n{text}"
                );
            }
            let out = emu.run(set, &["apply", "--auto-approve"], &[("BACKUPCTL_NOW", &at)]);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            let after: Vec<String> = if owner == "web" {
                owned_by("payments/web")
            } else {
                owned_by("web")
            };
            assert_eq!(after, theirs, "{owner} touched the other set's backups");
            assert!(!owned_by(owner).is_empty());
        }
    }
    // Retention ran in both sets (each keeps its own newest, deletes its
    // own expired ones): neither grew without bound.
    assert!(owned_by("web").len() <= 4, "{:?}", owned_by("web"));
    assert!(owned_by("payments/web").len() <= 4);

    // One directory is one set: mixed namespaces are refused.
    std::fs::write(
        ops.join("other.toml"),
        format!(
            "namespace = \"payments\"\n{}",
            ROLLING_AMI.replace("\"web\"", "\"other\"")
        ),
    )
    .unwrap();
    let out = emu.run(&ops, &["validate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("one namespace"), "{}", stderr(&out));
}

/// Two jobs, each planning its shard of the accounts: their saved plans
/// join into the plan one job makes of every account.
#[test]
fn the_plans_of_two_shards_merge_into_the_plan_of_every_account() {
    let (emu, policies) = world();
    let dir = emu.dir.path();
    let at = day(0);
    let plan = |args: &[&str], out: &str| {
        let file = dir.join(out);
        let mut all = args.to_vec();
        all.extend(["plan", "--out", file.to_str().unwrap()]);
        let run = emu.run(&policies, &all, &[("BACKUPCTL_NOW", &at)]);
        // The broken account or staging's denied region is in some shard.
        assert!(matches!(run.status.code(), Some(0 | 3)), "{}", stderr(&run));
        file
    };
    let whole = plan(&[], "whole.json");
    let first = plan(&["--shard", "1/2"], "shard-1.json");
    let second = plan(&["--shard", "2/2"], "shard-2.json");
    let merged = dir.join("merged.json");
    let out = emu.run(
        &policies,
        &[
            "merge",
            "--out",
            merged.to_str().unwrap(),
            second.to_str().unwrap(),
            first.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(&merged), read(&whole));
    // Each account was entered by one job only.
    assert_eq!(assume_role_calls(&emu), 6, "3 accounts, entered twice each");

    // The same shard twice is refused.
    let out = emu.run(
        &policies,
        &["show", first.to_str().unwrap(), first.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the plans overlap"),
        "{}",
        stderr(&out)
    );
}

/// The StackSet template shipped under examples/ is what iam-policy makes
/// for the example accounts file and the shipped policies.
#[test]
fn the_example_member_role_template_is_what_iam_policy_makes() {
    use crate::support::{backupctl, check_golden, root};
    let out = backupctl(&[
        "--policies",
        "policies",
        "--accounts",
        "examples/many-accounts/accounts.toml",
        "iam-policy",
        "--format",
        "cloudformation",
        "--principal",
        "arn:aws:iam::999999999999:role/backupctl-runner",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let template: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let role = &template["Resources"]["BackupctlRole"];
    assert_eq!(role["Type"], "AWS::IAM::Role");
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(
        trust["Condition"]["StringEquals"]["sts:ExternalId"],
        "backupctl-example"
    );
    let golden = root().join("examples/many-accounts/member-role.stackset.json");
    check_golden(&golden, &stdout(&out)).unwrap_or_else(|diff| panic!("{diff}"));
}

/// The shipped GitHub Actions matrix and Kubernetes Indexed Job split the
/// accounts into as many shards as they run jobs; run as they say, job by
/// job, every account is entered once and backed up once.
#[test]
fn the_shipped_scheduler_examples_cover_every_account_once() {
    use crate::support::{root, yaml};
    let examples = root().join("examples/many-accounts");

    let workflow = yaml(&examples.join("github-actions-shards.yml"))[0].clone();
    let job = &workflow["jobs"]["apply"];
    let shards: Vec<u64> = job["strategy"]["matrix"]["shard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    let n = shards.len() as u64;
    assert_eq!(shards, (1..=n).collect::<Vec<_>>());
    let step = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["env"]["BACKUPCTL_SHARD"].is_string())
        .expect("a step sets BACKUPCTL_SHARD");
    assert_eq!(
        step["env"]["BACKUPCTL_SHARD"],
        format!("${{{{ matrix.shard }}}}/{n}")
    );
    let line = step["run"].as_str().unwrap().trim();
    assert!(line.starts_with("backupctl apply --auto-approve"), "{line}");

    let (emu, policies) = world();
    for shard in &shards {
        let line = line.replace("${{ matrix.shard }}", &shard.to_string());
        let words: Vec<String> = line
            .split_whitespace()
            .skip(1)
            .map(|w| w.trim_matches('"').to_string())
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let spec = format!("{shard}/{n}");
        let out = emu.run(
            &policies,
            &words,
            &[("BACKUPCTL_NOW", &day(0)), ("BACKUPCTL_SHARD", &spec)],
        );
        assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    }
    assert_eq!(
        assume_role_calls(&emu),
        3,
        "each account entered by one job"
    );
    for (account, region, want) in [
        (PROD, "us-east-1", 1),
        (PROD, "eu-west-1", 1),
        (STAGING, "us-east-1", 1),
        (STAGING, "eu-west-1", 0),
    ] {
        assert_eq!(
            images(&emu, account, region).len(),
            want,
            "{account} {region}"
        );
    }
    let snapshots = |account| {
        emu.control("dump", json!({"account": account, "region": "us-east-1"}))["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["tags"]["backupctl:policy"] == "prod-weekly")
            .count()
    };
    assert_eq!(
        snapshots(PROD),
        1,
        "prod-weekly: one set, of the root volume"
    );
    assert_eq!(snapshots(STAGING), 0, "prod-weekly selects prod only");

    let docs = yaml(&examples.join("kubernetes-cronjob.yaml"));
    let config = &docs[0];
    let cron = &docs[1];
    assert_eq!(cron["kind"], "CronJob");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let job = &cron["spec"]["jobTemplate"]["spec"];
    assert_eq!(job["completionMode"], "Indexed");
    let completions = job["completions"].as_u64().unwrap();
    assert_eq!(job["parallelism"].as_u64(), Some(completions));
    let args = job["template"]["spec"]["containers"][0]["args"][0]
        .as_str()
        .unwrap();
    assert!(
        args.contains(&format!(
            "--shard \"$((JOB_COMPLETION_INDEX + 1))/{completions}\""
        )),
        "{args}"
    );
    // The policy directory it mounts is valid, accounts file and all.
    let dir = emu.dir.path().join("configmap");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in config["data"].as_object().unwrap() {
        std::fs::write(dir.join(name), text.as_str().unwrap()).unwrap();
    }
    let out = emu.run(&dir, &["validate"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 accounts valid"),
        "{}",
        stdout(&out)
    );
}

/// Role sessions that expire during an apply (six seconds of life here, an
/// hour with role chaining on AWS) are renewed before they expire: every
/// call is signed with a live session, and the apply succeeds.
#[test]
fn sessions_that_expire_during_an_apply_are_renewed_before_they_do() {
    let emu = Emulator::start();
    emu.seed(json!({"account": PROD, "region": "us-east-1",
                    "instances": [{"count": 6, "tags": {"Backup": "daily"}}]}));
    emu.control("sessions", json!({"seconds": 6}));
    let policies = emu.dir.policies(&[("web", ROLLING_AMI)]);
    std::fs::write(
        policies.join("accounts.toml"),
        "[[account]]\nid = \"111111111111\"\nname = \"prod\"\nrole = \"arn:aws:iam::111111111111:role/backupctl\"\nregions = [\"us-east-1\"]\n",
    )
    .unwrap();
    // One CreateImage every two seconds: the apply outlives two sessions.
    let started = std::time::Instant::now();
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[
            ("BACKUPCTL_NOW", &day(0)),
            ("BACKUPCTL_API_RATES", "CreateImage=1/0.5"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        started.elapsed() > std::time::Duration::from_secs(9),
        "the apply must outlive a session to test anything ({:?})",
        started.elapsed()
    );
    assert_eq!(images(&emu, PROD, "us-east-1").len(), 6);
    let calls = emu.control("calls", json!({}));
    let expired: u64 = calls["faults"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|r| r.as_object().unwrap().iter())
        .filter(|(k, _)| k.ends_with(":expired"))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        expired, 0,
        "a call was signed with an expired session: {calls:#}"
    );
    assert!(
        assume_role_calls(&emu) >= 2,
        "the session was never renewed: {calls:#}"
    );
}

/// The mass-deletion guard per account: a retention scare in one account
/// holds back that account's deletions, and the other accounts' routine
/// deletions go ahead; `--max-deletes-per-account` caps each account.
#[test]
fn one_accounts_mass_deletion_does_not_hold_back_the_others_routine_ones() {
    let emu = Emulator::start();
    for account in [PROD, STAGING] {
        emu.seed(json!({
            "account": account,
            "region": "us-east-1",
            "instances": [{"count": 1, "tags": {"Backup": "daily"}}],
        }));
    }
    let policy = |name: &str, account: &str, max_age: &str| {
        format!(
            "name = \"{name}\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = {{ Backup = \"daily\" }}\naccounts = [\"{account}\"]\n\
             [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"{max_age}\"\n"
        )
    };
    let set = |prod_age: &str, staging_age: &str| {
        let policies = emu.dir.policies(&[
            ("web-prod", &policy("web-prod", "prod", prod_age)),
            (
                "web-staging",
                &policy("web-staging", "staging", staging_age),
            ),
        ]);
        std::fs::write(policies.join("accounts.toml"), ACCOUNTS).unwrap();
        policies
    };
    let policies = set("30 days", "30 days");
    for d in 0..5 {
        let out = emu.run(
            &policies,
            &["apply", "--auto-approve"],
            &[("BACKUPCTL_NOW", &day(d))],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let count = |account| images(&emu, account, "us-east-1").len();
    assert_eq!((count(PROD), count(STAGING)), (5, 5));

    // prod's max_age is cut to a day (4 of 5 would go); staging loses its
    // oldest, as every day.
    let policies = set("1 day", "100 hours");
    let held = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(5))],
    );
    let err = stderr(&held);
    assert_eq!(held.status.code(), Some(5), "{err}");
    assert!(
        err.contains("held back the 4 deletion(s) of account(s) prod (111111111111) (1 deletion(s) of other accounts go ahead)"),
        "{err}"
    );
    assert!(
        err.contains("of account prod (111111111111): source"),
        "{err}"
    );
    assert_eq!(
        (count(PROD), count(STAGING)),
        (6, 5),
        "staging's routine deletion was made"
    );

    // A cap per account holds back deletions the rule per source allows.
    let policies = set("30 days", "74 hours");
    let held = emu.run(
        &policies,
        &["apply", "--auto-approve", "--max-deletes-per-account", "1"],
        &[("BACKUPCTL_NOW", &day(6))],
    );
    let err = stderr(&held);
    assert_eq!(held.status.code(), Some(5), "{err}");
    assert!(
        err.contains("the plan deletes 2 backups of account staging (222222222222), more than --max-deletes-per-account 1 allows"),
        "{err}"
    );
    assert_eq!(
        (count(PROD), count(STAGING)),
        (7, 6),
        "created, none deleted"
    );
}

/// The forecast across accounts: each account simulated on its own
/// inventory, every deletion and source with its account, and the
/// accounts that cannot be entered said once (exit 3).
#[test]
fn the_forecast_covers_every_account_that_can_be_entered() {
    let (emu, policies) = world();
    let out = emu.run(
        &policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(0))],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = emu.run(
        &policies,
        &["forecast", "--until", &day(3), "--format", "json"],
        &[("BACKUPCTL_NOW", &day(1))],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(
        err.matches("could not enter account broken").count(),
        1,
        "{err}"
    );
    let f: Value = serde_json::from_str(&stdout(&out)).expect("a JSON forecast");
    assert_eq!(f["format_version"], "1.1");
    let deletions = f["deletions"].as_array().unwrap();
    let mut deleted_in: Vec<&str> = deletions
        .iter()
        .map(|d| {
            let account = d["account"]
                .as_str()
                .expect("every deletion has its account");
            assert!(d["address"].as_str().unwrap().starts_with(account), "{d}");
            account
        })
        .collect();
    deleted_in.dedup();
    deleted_in.sort();
    deleted_in.dedup();
    assert_eq!(deleted_in, [PROD, STAGING], "{f:#}");
    let mut sources: Vec<(&str, &str, &str)> = f["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["account"].as_str().unwrap(),
                s["policy"].as_str().unwrap(),
                s["region"].as_str().unwrap(),
            )
        })
        .collect();
    sources.sort();
    assert_eq!(
        sources,
        [
            (PROD, "prod-weekly", "us-east-1"),
            (PROD, "web", "eu-west-1"),
            (PROD, "web", "us-east-1"),
            (STAGING, "web", "us-east-1"),
        ]
    );
    // Three daily runs of "web" in three (account, region)s, and of the
    // weekly prod snapshots none is due before day 7.
    assert_eq!(f["summary"]["creations"], 9, "{f:#}");
    assert_eq!(f["summary"]["runs"], 3, "{f:#}");
}
