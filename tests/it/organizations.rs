//! Accounts discovered in AWS Organizations, against the emulator's
//! organisation: nested OUs, a closed (SUSPENDED) account, account tags,
//! an excluded account; the walk from an OU and the whole-organisation
//! list; the calls it takes, and the permissions `iam-policy` gives them.

use crate::emulator::{day, Emulator, ROLLING_AMI};
use crate::support::{stderr, stdout};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The base credentials' own account: the organisation's management
/// account.
const MANAGEMENT: &str = "123456789012";

/// Only accounts tagged env=prod in Organizations.
const PROD_ONLY: &str = "name = \"prod-weekly\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\naccount_tags = { env = \"prod\" }\n\
                         [backup]\nkind = \"snapshot\"\nevery = \"1 week\"\n[retention]\nmax_age = \"30 days\"\n";

struct Org {
    emu: Emulator,
    policies: std::path::PathBuf,
    ids: BTreeMap<String, String>,
    workloads: String,
}

/// Root: sandbox. Workloads: prod (env=prod). Workloads/Team: team-a
/// (env=dev) and retired (closed). One instance to back up in each.
fn organization() -> Org {
    let emu = Emulator::start();
    let made = emu.control(
        "organization",
        json!({
            "accounts": [{"name": "sandbox"}],
            "ous": [{
                "name": "Workloads",
                "accounts": [{"name": "prod", "tags": {"env": "prod"}}],
                "ous": [{
                    "name": "Team",
                    "accounts": [
                        {"name": "team-a", "tags": {"env": "dev"}},
                        {"name": "retired", "tags": {"env": "prod"}, "closed": true},
                    ],
                }],
            }],
        }),
    );
    let ids: BTreeMap<String, String> = made["accounts"]
        .as_object()
        .expect("the emulator made the organization")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    for id in ids.values() {
        emu.seed(json!({
            "account": id,
            "region": "us-east-1",
            "instances": [{"count": 1, "tags": {"Backup": "daily"}}],
        }));
    }
    let policies = emu
        .dir
        .policies(&[("web", ROLLING_AMI), ("prod-weekly", PROD_ONLY)]);
    Org {
        workloads: made["ous"]["Workloads"].as_str().unwrap().to_string(),
        emu,
        policies,
        ids,
    }
}

fn calls(emu: &Emulator, action: &str) -> u64 {
    emu.control("calls", json!({}))["by_account"][MANAGEMENT][action]
        .as_u64()
        .unwrap_or(0)
}

/// (account id, policy) of every planned change.
fn changes(plan: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["account"].as_str().unwrap().to_string(),
                c["policy"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_active_accounts_under_an_ou_are_discovered_and_backed_up() {
    let org = organization();
    let (emu, id) = (&org.emu, |name: &str| org.ids[name].clone());
    std::fs::write(
        org.policies.join("accounts.toml"),
        format!(
            "[defaults]\nrole_name = \"backupctl\"\nregions = [\"us-east-1\"]\n\n[organization]\nfrom = [\"{}\"]\n",
            org.workloads
        ),
    )
    .unwrap();
    let out = emu.run(
        &org.policies,
        &["plan", "--format", "json"],
        &[("BACKUPCTL_NOW", &day(0))],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("1 closed (not ACTIVE) account(s) of the organization are left out"),
        "{err}"
    );
    assert!(err.contains("2 account(s): 2 discovered"), "{err}");
    let plan: Value = serde_json::from_str(&stdout(&out)).expect("a JSON plan");
    let accounts: Vec<(&str, &str)> = plan["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap(), a["name"].as_str().unwrap()))
        .collect();
    let mut want = [(id("prod"), "prod"), (id("team-a"), "team-a")];
    want.sort();
    assert_eq!(
        accounts,
        want.iter()
            .map(|(i, n)| (i.as_str(), *n))
            .collect::<Vec<_>>(),
        "the nested OU's active account and the OU's own; not the closed one, not the root's"
    );
    let mut expected = vec![
        (id("prod"), "prod-weekly".to_string()),
        (id("prod"), "web".to_string()),
        (id("team-a"), "web".to_string()),
    ];
    expected.sort();
    assert_eq!(
        changes(&plan),
        expected,
        "account tags from Organizations select"
    );
    assert_eq!(calls(emu, "ListAccountsForParent"), 2, "Workloads and Team");
    assert_eq!(calls(emu, "ListOrganizationalUnitsForParent"), 2);
    assert_eq!(
        calls(emu, "ListTagsForResource"),
        2,
        "the active accounts' only"
    );
    assert_eq!(calls(emu, "ListAccounts"), 0);
    assert_eq!(calls(emu, "AssumeRole"), 2);

    // Applied, the backups land in the discovered accounts only.
    let out = emu.run(
        &org.policies,
        &["apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(0))],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let images = |name: &str| {
        emu.control("dump", json!({"account": id(name), "region": "us-east-1"}))["images"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!((images("prod"), images("team-a")), (1, 1));
    assert_eq!((images("sandbox"), images("retired")), (0, 0));

    // A reviewed plan covers the accounts it was made in: an account that
    // joins the organization before it is applied waits for the next
    // plan, and one closed since refuses the plan.
    let plan_file = emu.dir.path().join("plan.json");
    let path = plan_file.to_str().unwrap();
    let at = day(1);
    let made = emu.run(
        &org.policies,
        &["plan", "--out", path],
        &[("BACKUPCTL_NOW", &at)],
    );
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let newcomer = emu.control(
        "organization",
        json!({"parent": org.workloads, "accounts": [{"name": "newcomer"}]}),
    )["accounts"]["newcomer"]
        .as_str()
        .unwrap()
        .to_string();
    emu.seed(json!({
        "account": newcomer,
        "region": "us-east-1",
        "instances": [{"count": 1, "tags": {"Backup": "daily"}}],
    }));
    let applied = emu.run(&org.policies, &["apply", path], &[("BACKUPCTL_NOW", &at)]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    assert_eq!((images("prod"), images("team-a")), (2, 2));
    let newcomer_images = emu.control("dump", json!({"account": newcomer, "region": "us-east-1"}))
        ["images"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(newcomer_images, 0, "not in the reviewed plan");
    let entered = &emu.control("calls", json!({}))["by_account"][&newcomer];
    assert!(entered.is_null(), "the newcomer was entered: {entered}");
    let at = day(2);
    let made = emu.run(
        &org.policies,
        &["plan", "--out", path],
        &[("BACKUPCTL_NOW", &at)],
    );
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    emu.control("organization", json!({"close": [id("team-a")]}));
    let refused = emu.run(&org.policies, &["apply", path], &[("BACKUPCTL_NOW", &at)]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!(
            "account {} could not be observed again",
            id("team-a")
        )),
        "{}",
        stderr(&refused)
    );
    assert_eq!(images("prod"), 2, "nothing applied from a refused plan");

    // Every Organizations call made is allowed by what iam-policy prints.
    let iam = emu.run(
        &org.policies,
        &[
            "iam-policy",
            "--principal",
            "arn:aws:iam::999999999999:role/runner",
        ],
        &[],
    );
    assert_eq!(iam.status.code(), Some(0), "{}", stderr(&iam));
    let doc: Value = serde_json::from_str(&stdout(&iam)).unwrap();
    let allowed = doc["Runner"]["PolicyDocument"]["Statement"][1]["Action"].clone();
    for (action, _) in emu.control("calls", json!({}))["by_account"][MANAGEMENT]
        .as_object()
        .unwrap()
    {
        if action.starts_with("List") {
            assert!(
                allowed
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("organizations:{action}"))),
                "{action} is not in {doc:#}"
            );
        }
    }
}

#[test]
fn the_whole_organization_is_listed_once_and_the_file_narrows_it() {
    let org = organization();
    let (emu, id) = (&org.emu, |name: &str| org.ids[name].clone());
    // The management account is excluded; prod is listed with a name of
    // its own; an account name policies select must exist.
    let file = format!(
        "[defaults]\nrole_name = \"backupctl\"\nregions = [\"us-east-1\"]\n\n[organization]\nexclude = [\"{MANAGEMENT}\"]\n\n[[account]]\nid = \"{}\"\nname = \"production\"\n",
        id("prod")
    );
    std::fs::write(org.policies.join("accounts.toml"), &file).unwrap();
    let out = emu.run(
        &org.policies,
        &["plan", "--format", "json"],
        &[("BACKUPCTL_NOW", &day(0))],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut names: Vec<&str> = plan["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["production", "sandbox", "team-a"]);
    assert_eq!(calls(emu, "ListAccounts"), 1);
    assert_eq!(calls(emu, "ListAccountsForParent"), 0);
    assert_eq!(
        calls(emu, "ListTagsForResource"),
        3,
        "prod-weekly selects by tag"
    );

    // A policy naming an account the organization does not have is an
    // error once the accounts are known, before any account is entered.
    let calls_before = calls(emu, "AssumeRole");
    std::fs::write(
        org.policies.join("prod-weekly.toml"),
        PROD_ONLY.replace("account_tags = { env = \"prod\" }", "accounts = [\"prdo\"]"),
    )
    .unwrap();
    let out = emu.run(&org.policies, &["plan"], &[("BACKUPCTL_NOW", &day(0))]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("neither") && stderr(&out).contains("nor AWS Organizations lists"),
        "{}",
        stderr(&out)
    );
    assert_eq!(calls(emu, "AssumeRole"), calls_before);

    // Without the right to read Organizations, the run stops with what
    // to do, rather than backing up a partial list of accounts.
    emu.faults(json!({"deny": [{"region": "*", "actions": ["ListAccounts"],
        "code": "AccessDeniedException", "status": 400}]}));
    std::fs::write(org.policies.join("prod-weekly.toml"), PROD_ONLY).unwrap();
    let out = emu.run(&org.policies, &["plan"], &[("BACKUPCTL_NOW", &day(0))]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("ListAccounts"), "{err}");
    assert!(err.contains("reader_role"), "{err}");
}
