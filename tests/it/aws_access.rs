//! How backupctl reaches AWS, as an operator sees it (issue 10, items 6 and
//! 8): credentials chosen as the AWS CLI chooses them, one clear error for
//! an unknown profile, an endpoint without a scheme or an answer that is
//! not EC2's, and a log of every call at `-vv`.

use crate::emulator::{day, Emulator};
use crate::live::{exits, ok};
use crate::support::{stderr, stdout};
use serde_json::json;

const WEB: &str =
    "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
                   [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"7 days\"\n";

fn access_keys(emu: &Emulator) -> Vec<String> {
    emu.control("calls", json!({}))["access_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_explicit_profile_wins_over_keys_in_the_environment() {
    let emu = Emulator::start();
    let policies = emu.dir.policies(&[("web", WEB)]);
    let credentials = emu.dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[ci]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n",
    )
    .unwrap();
    let files = [
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
        ("BACKUPCTL_NOW", &day(0)),
    ];
    ok(&emu.run(&policies, &["--profile", "ci", "plan"], &files));
    assert_eq!(access_keys(&emu), vec!["AKIDPROFILE"]);

    // Without --profile, the environment's keys, as before.
    emu.control("reset_calls", json!({}));
    ok(&emu.run(&policies, &["plan"], &files));
    assert_eq!(access_keys(&emu), vec!["AKIDEMULATOR"]);

    // An unknown profile is one clear error, and nothing is called.
    emu.control("reset_calls", json!({}));
    let out = emu.run(&policies, &["--profile", "nosuch", "plan"], &files);
    exits(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("\"nosuch\"") && err.contains("profile"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(access_keys(&emu).is_empty());
}

#[test]
fn an_endpoint_without_a_scheme_is_one_clear_error() {
    let emu = Emulator::start();
    let policies = emu.dir.policies(&[("web", WEB)]);
    let bare = emu.url().replace("http://", "");
    let out = emu.run(&policies, &["--endpoint-url", &bare, "plan"], &[]);
    exits(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("has no scheme") && err.contains(&format!("https://{bare}")),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = emu.run(&policies, &["plan"], &[("AWS_ENDPOINT_URL", &bare)]);
    exits(&out, 1);
    assert!(
        stderr(&out).contains("AWS_ENDPOINT_URL"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_answer_that_is_not_ec2s_names_the_action_and_status() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 1, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", WEB)]);
    emu.faults(json!({"actions": ["DescribeInstances"], "garbage": 1.0}));
    let out = emu.run(&policies, &["plan"], &[("BACKUPCTL_NOW", &day(0))]);
    exits(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("DescribeInstances") && err.contains("HTTP 200"),
        "{err}"
    );
    assert!(
        !err.contains("Response {") && !err.contains("SdkBody"),
        "a debug dump: {err}"
    );
}

#[test]
fn every_aws_call_is_logged_at_vv_without_credentials() {
    let emu = Emulator::start();
    emu.seed(
        json!({"region": "us-east-1", "instances": [{"count": 1, "tags": {"Backup": "daily"}}]}),
    );
    let policies = emu.dir.policies(&[("web", WEB)]);
    let throttled = json!({"seed": 3, "actions": ["DescribeImages"], "throttle": 0.5});
    emu.faults(throttled.clone());
    let quiet = emu.run(&policies, &["plan"], &[("BACKUPCTL_NOW", &day(0))]);
    ok(&quiet);
    assert!(!stderr(&quiet).contains("action="), "{}", stderr(&quiet));
    for (args, env) in [
        (vec!["-vv", "apply", "--auto-approve"], vec![]),
        (vec!["plan"], vec![("RUST_LOG", "backupctl=info")]),
    ] {
        // The same seed: the same first DescribeImages is throttled.
        emu.faults(throttled.clone());
        let mut env = env;
        let now = day(0);
        env.push(("BACKUPCTL_NOW", now.as_str()));
        let out = emu.run(&policies, &args, &env);
        ok(&out);
        let err = stderr(&out);
        for want in [
            "action=DescribeInstances",
            "action=DescribeImages",
            "action=DescribeSnapshots",
            "region=us-east-1",
            "attempt=1",
            "outcome=HTTP 200",
            "latency_ms=",
            "request_id=",
        ] {
            assert!(err.contains(want), "{args:?}: no {want} in:\n{err}");
        }
        assert!(
            err.contains("outcome=HTTP 503"),
            "throttled attempts are logged: {err}"
        );
        for secret in ["emulator-secret", "Signature=", "Credential="] {
            assert!(!err.contains(secret), "{secret} in the log:\n{err}");
        }
        assert!(!stdout(&out).contains("action="), "logs go to stderr only");
    }
    let out = emu.run(
        &policies,
        &["-vv", "apply", "--auto-approve"],
        &[("BACKUPCTL_NOW", &day(1))],
    );
    ok(&out);
    assert!(
        stderr(&out).contains("action=CreateImage"),
        "{}",
        stderr(&out)
    );
}
