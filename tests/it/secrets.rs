//! Credentials never leave the credential chain: with recognisable markers
//! as credentials, no command, succeeding or failing, prints them or writes
//! them to a plan or state file.

use crate::emulator::Emulator;
use crate::support::{stderr, stdout};
use serde_json::json;

const KEY: &str = "AKIDMARKERKEY0000001";
const SECRET: &str = "MarkerSecretKey+dont/print/me";
const TOKEN: &str = "MarkerSessionTokenQQQ";

#[test]
fn credentials_appear_in_no_output_and_no_file() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 2, "tags": {"Backup": "daily"}}]}),
    );
    emu.seed(
        json!({"region": "eu-west-1", "instances": [{"count": 1, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[(
        "web",
        "name = \"web\"\n[target]\nregions = [\"us-east-1\", \"eu-west-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
         [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"1 day\"\nkeep_last = 1\n",
    )]);
    let dir = emu.dir.path();
    let file = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let (plan, state) = (file("plan.json"), file("state.json"));
    let creds = [
        ("AWS_ACCESS_KEY_ID", KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", TOKEN),
        ("BACKUPCTL_NOW", "2030-01-01T00:00:00Z"),
    ];
    let unreachable = [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("BACKUPCTL_CALL_TIMEOUT", "1"),
    ];
    type Step<'a> = (
        Vec<&'a str>,
        Option<serde_json::Value>,
        &'a [(&'a str, &'a str)],
    );
    let steps: Vec<Step> = vec![
        (vec!["-v", "validate"], None, &[]),
        (vec!["-v", "plan"], None, &[]),
        (
            vec!["-v", "plan", "--format", "json", "--out", &plan],
            None,
            &[],
        ),
        (vec!["-v", "show", &plan], None, &[]),
        (vec!["-v", "show", &plan, "--format", "markdown"], None, &[]),
        (vec!["-v", "diff", &plan, &plan], None, &[]),
        (vec!["-v", "state", "pull", "-o", &state], None, &[]),
        (vec!["-v", "plan", "--state", &state], None, &[]),
        (vec!["-v", "iam-policy"], None, &[]),
        (vec!["-v", "apply", "--auto-approve"], None, &[]),
        (vec!["-v", "apply", &plan], None, &[]),
        (vec!["-v", "apply"], None, &[]),
        (
            vec!["-v", "apply", "--auto-approve"],
            Some(json!({"deny": [{"region": "eu-west-1", "actions": ["*"]}]})),
            &[],
        ),
        (
            vec!["-v", "apply", "--auto-approve"],
            Some(json!({"deny": [{"region": "*", "actions": ["CreateImage"]}]})),
            &[],
        ),
        (
            vec!["-v", "plan"],
            Some(json!({"seed": 1, "throttle": 0.3})),
            &[],
        ),
        (vec!["-v", "plan"], None, &unreachable),
    ];
    let mut ran = 0;
    for (args, faults, extra) in steps {
        emu.faults(faults.unwrap_or(json!({})));
        let mut env = creds.to_vec();
        env.extend_from_slice(extra);
        let out = emu.run(&policies, &args, &env);
        let everything = format!("{}{}", stdout(&out), stderr(&out));
        for marker in [KEY, SECRET, TOKEN, "MarkerSecret", "MarkerSession"] {
            assert!(
                !everything.contains(marker),
                "{args:?} printed a credential:\n{everything}"
            );
        }
        ran += 1;
    }
    assert_eq!(ran, 16);
    for path in [&plan, &state] {
        let text = std::fs::read_to_string(path).unwrap_or_else(|_| panic!("{path} was written"));
        for marker in [KEY, SECRET, TOKEN] {
            assert!(!text.contains(marker), "{path} holds a credential");
        }
    }
}
