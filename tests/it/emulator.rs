//! The EC2 emulator harness: starts `tests/emulator/launcher.py` (moto with
//! backupctl's fixes, fault injection and call counting) on a free loopback
//! port for one test, talks to its control endpoints, and runs backupctl
//! against it. The emulator stops when the test ends (its stdin closes).

use crate::support::root;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub struct Emulator {
    /// Seconds after backupctl's clock at which EC2 records new backups
    /// (a run's observe, queue and call time); see [`Emulator::command`].
    pub lag_seconds: std::cell::Cell<u64>,
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
    pub dir: TempDir,
}

fn python() -> PathBuf {
    let path = std::env::var_os("BACKUPCTL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    let ok = Command::new(&path)
        .args(["-c", "import moto, boto3, werkzeug"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the EC2 emulator (moto) is not installed for {}: run the tests with `scripts/test`, \
         which installs it into .venv from tests/emulator/requirements.txt (needs Python 3 \
         with venv and access to PyPI), or set BACKUPCTL_TEST_PYTHON to a Python that has \
         moto[server] 5.2.5",
        path.display()
    );
    path
}

impl Emulator {
    pub fn start() -> Emulator {
        let dir = TempDir::new("emulator");
        let log = std::fs::File::create(dir.path().join("emulator.log")).unwrap();
        let mut child = Command::new(python())
            .arg(root().join("tests/emulator/launcher.py"))
            .args(["--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the emulator starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_default();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                let log =
                    std::fs::read_to_string(dir.path().join("emulator.log")).unwrap_or_default();
                panic!("the emulator did not start (said {line:?}):\n{log}")
            });
        Emulator {
            lag_seconds: std::cell::Cell::new(0),
            child,
            _stdin: stdin,
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// POSTs JSON to a control endpoint and returns its JSON answer.
    pub fn control(&self, name: &str, body: Value) -> Value {
        let body = body.to_string();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "POST /_backupctl/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(
            head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
            "{name}: {head}\n{payload}"
        );
        serde_json::from_str(payload).unwrap_or_else(|e| panic!("{name}: {e}: {payload}"))
    }

    /// Seeds one region; returns instance ids and volumes as the launcher
    /// reports them.
    pub fn seed(&self, body: Value) -> Value {
        self.control("seed", body)
    }

    /// Images and snapshots of a region, straight from the emulator.
    pub fn dump(&self, region: &str) -> Value {
        self.control("dump", json!({ "region": region }))
    }

    /// Calls made so far, by region and action.
    pub fn calls(&self) -> Value {
        self.control("calls", json!({}))["calls"].clone()
    }

    pub fn faults(&self, config: Value) {
        self.control("faults", config);
    }

    /// Runs backupctl against the emulator with the policies in `policies`.
    pub fn run(&self, policies: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(policies, args, env)
            .output()
            .expect("backupctl runs")
    }

    /// backupctl, set up to talk to this emulator only, with credentials
    /// that exist nowhere else and none of the caller's AWS settings.
    ///
    /// EC2's clock follows backupctl's: it is set to `BACKUPCTL_NOW` from
    /// `env` (or the real time) plus [`Emulator::lag_seconds`], so the
    /// creation times EC2 records move with a simulated clock as real ones
    /// move with a real one.
    pub fn command(&self, policies: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let now = env
            .iter()
            .find(|(k, _)| *k == "BACKUPCTL_NOW")
            .map(|(_, v)| *v);
        self.control(
            "clock",
            json!({ "now": now, "lag_seconds": self.lag_seconds.get() }),
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_backupctl"));
        cmd.current_dir(self.dir.path())
            .arg("--policies")
            .arg(policies)
            .args(args)
            .stdin(Stdio::null());
        for var in [
            "BACKUPCTL_NOW",
            "BACKUPCTL_POLICIES",
            "BACKUPCTL_CALL_TIMEOUT",
            "BACKUPCTL_CONSISTENCY_WAIT",
            "BACKUPCTL_PER_VOLUME_GAP",
            "BACKUPCTL_API_RATES",
            "BACKUPCTL_ACCOUNTS",
            "BACKUPCTL_SHARD",
            "BACKUPCTL_MAX_ACCOUNTS",
            "NO_COLOR",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL_EC2",
            "AWS_SESSION_TOKEN",
        ] {
            cmd.env_remove(var);
        }
        // Lock files go to the test's own directory.
        cmd.env("XDG_STATE_HOME", self.dir.path().join("state"));
        cmd.env("AWS_ACCESS_KEY_ID", "AKIDEMULATOR")
            .env("AWS_SECRET_ACCESS_KEY", "emulator-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", self.url())
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", self.url())
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-credentials"),
            );
        // The emulator's Describe lag, when switched on, is a few seconds:
        // no need to look for a lost creation for EC2's full minute. It
        // knows no per-volume snapshot rate unless a test switches it on
        // (and then passes the matching gap).
        cmd.env("BACKUPCTL_CONSISTENCY_WAIT", "10")
            .env("BACKUPCTL_PER_VOLUME_GAP", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Waits until the emulator has received `n` calls of `action`.
    pub fn wait_for_calls(&self, action: &str, n: u64) {
        for _ in 0..300 {
            let calls = self.calls();
            let seen: u64 = calls
                .as_object()
                .unwrap()
                .values()
                .filter_map(|r| r[action].as_u64())
                .sum();
            if seen >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the emulator never saw {n} {action} calls");
    }
}

/// A simulated clock safely after the emulator's real clock: day `n` of a
/// test, at 06:00 UTC (backups made "in the future" age as it advances).
pub fn day(n: i64) -> String {
    let base = (chrono::Utc::now() + chrono::Duration::days(2))
        .date_naive()
        .and_hms_opt(6, 0, 0)
        .unwrap()
        .and_utc();
    (base + chrono::Duration::days(n)).to_rfc3339()
}

/// What the tests of simulated days share: a run of backupctl on day `d`,
/// its JSON plan (checked against the contract), and the backups EC2 holds
/// that a run of that day made.
pub mod days {
    use super::{day, Emulator};
    use crate::support::{stderr, stdout};
    use chrono::{DateTime, Utc};
    use serde_json::Value;
    use std::path::Path;
    use std::process::Output;

    pub fn run(emu: &Emulator, policies: &Path, d: i64, args: &[&str]) -> Output {
        emu.run(policies, args, &[("BACKUPCTL_NOW", &day(d))])
    }

    pub fn plan_json(emu: &Emulator, policies: &Path, d: i64) -> Value {
        let out = run(emu, policies, d, &["plan", "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        crate::json_contract::check_document(&stdout(&out), &format!("day {d}"));
        serde_json::from_str(&stdout(&out)).expect("a JSON plan")
    }

    pub fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .with_timezone(&Utc)
    }

    /// The `images` or `snapshots` in us-east-1 made on day `d` (by their
    /// `backupctl:created-at`), as the emulator holds them.
    pub fn made_on(emu: &Emulator, kind: &str, d: i64) -> Vec<Value> {
        let made = time(&day(d));
        emu.dump("us-east-1")[kind]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["tags"]["backupctl:created-at"]
                    .as_str()
                    .is_some_and(|t| time(t) == made)
            })
            .cloned()
            .collect()
    }
}

/// Daily AMIs in two regions, one kept: every run creates and deletes.
pub const ROLLING_AMI: &str = "name = \"web\"\n[target]\nregions = [\"us-east-1\", \"eu-west-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
                   [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"1 day\"\nkeep_last = 1\n";

/// Daily snapshot sets of the tagged data volumes, the same way.
pub const ROLLING_SNAPSHOTS: &str = "name = \"data\"\n[target]\nregions = [\"us-east-1\", \"eu-west-1\"]\ninstance_tags = { Backup = \"daily\" }\n\
                    volume_tags = { Snapshot = \"yes\" }\n[backup]\nkind = \"snapshot\"\n[retention]\nmax_age = \"1 day\"\nkeep_last = 1\n";

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("backupctl-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes policy files (name, TOML) into `policies/` and returns it.
    pub fn policies(&self, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.0.join("policies");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
        }
        dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
