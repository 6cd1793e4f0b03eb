#!/usr/bin/env python3
"""Benchmark of backupctl against the EC2 emulator (not a test: it asserts
nothing, it measures).

For each configuration R x N it starts the emulator, enables R regions,
seeds N instances per region (a root volume and a data volume tagged
Snapshot=yes each), and runs backupctl over simulated days with two
policies (daily AMIs of every instance; daily snapshot sets of the data
volumes; keep_last 2, max_age 2 days). For every step it records wall time,
the peak resident memory of the backupctl process, and the EC2 calls by
action as counted by the emulator, beside the minimum number of Describe
calls real EC2 would need (ceil(n / 1000) pages per resource list).

Modes (issue 14):
  --latency   every EC2 call takes as long as on real EC2 (Describe 150-300
              ms, mutating 100-200 ms, seeded, overlapping across concurrent
              calls); backupctl runs with -vv and its call log gives, per
              step, the longest single paginated Describe chain of any region
              (the floor of an observation), printed beside the wall time.
  --buckets   the emulator enforces EC2's token buckets, with the refill
              rates scaled by --scale (default 4, so that a run takes a
              minute, not ten) and backupctl told the same rates; one
              snapshot policy, so that one run creates and deletes 1,000
              sets in a region of 1,000 instances (use 1x1000). Printed per
              step: RequestLimitExceeded answers, and the bucket-limited
              minimum of the run's calls (creations, then deregistrations,
              then deletions, each phase its bucket's (n - burst) / rate).

  --large     one region of 1,000 instances holding 100,000 snapshots and
              10,000 images (per instance 10 daily AMIs and 90 daily
              one-snapshot sets, made in the emulator directly), all kept by
              their policies: plan live and from a saved state, text and
              JSON with --out, each with its peak RSS (target: 150 MiB).

  --copies    both policies also copy every backup to one more region
              (`[[copy]]`, copy retention max_age 2 days, keep_last 2):
              per step, the CopyImage and CopySnapshot calls beside the
              backups copied, and the destination's Describe pages in the
              minimum (it is observed for images and snapshots only).

  --accounts AxRxN  A accounts (an accounts file, a role assumed in each),
              R regions each, N instances per region: plan at two
              --max-accounts settings and with real EC2 latency; wall time,
              peak RSS, API calls beside the minimum, AssumeRole calls.

Usage: bench.py [--latency] [--buckets [--scale K]] [--copies] BINARY [RxN ...]
       bench.py --large BINARY
       bench.py --accounts AxRxN BINARY
       (default configurations: 2x100 4x1000). Prints a Markdown table on
stdout and one JSON line per step on stderr.
"""

import re

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
# The benchmark's deletions are intended: hundreds per run at this scale.
APPLY = ["apply", "--auto-approve", "--allow-mass-delete"]
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2", "sa-east-1", "eu-central-1"]

POLICIES = {
    "web": """name = "web"
[target]
regions = {regions}
instance_tags = {{ Backup = "daily" }}
[backup]
kind = "ami"
[retention]
max_age = "2 days"
keep_last = 2
""",
    "db": """name = "db"
[target]
regions = {regions}
instance_tags = {{ Backup = "daily" }}
volume_tags = {{ Snapshot = "yes" }}
exclude_boot_volume = true
[backup]
kind = "snapshot"
[retention]
max_age = "2 days"
keep_last = 2
""",
}


class Emulator:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "launcher.py"), "--port", "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("READY "), line
        self.port = int(line.split()[1])

    def control(self, name, body=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/_backupctl/{name}",
            data=json.dumps(body or {}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=3600) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.kill()
        self.proc.wait()


# Starts the measured process from a fresh interpreter and reports its peak
# RSS. A child's ru_maxrss counts the memory of the process it was forked
# from until it execs, so a benchmark process holding the previous step's
# 38 MB of JSON made a 129 MiB plan show 183 MiB; this small parent keeps
# that floor at its own ~10 MiB.
MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write("\\nbench-peak-rss-kib %d\\n" % usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(binary, args, env):
    """Runs backupctl and returns (exit, stdout, stderr, wall seconds, peak RSS MiB)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", MEASURE, binary] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    # Both pipes at once (-vv fills stderr long before stdout ends), and
    # the process reaped here, for its resource usage.
    err_chunks = []
    reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()))
    reader.start()
    out = proc.stdout.read()
    reader.join()
    err = err_chunks[0].decode()
    code = proc.wait()
    wall = time.monotonic() - start
    err, _, peak = err.rpartition("\nbench-peak-rss-kib ")
    return code, out.decode(), err, wall, int(peak) / 1024


# EC2's documented default buckets (see src/rate.rs): burst, refill per s.
BUCKETS = {
    "CreateImage": (50, 5),
    "CreateSnapshots": (50, 5),
    "DeregisterImage": (200, 5),
    "DeleteSnapshot": (200, 5),
}
PHASES = [["CreateImage", "CreateSnapshots"], ["DeregisterImage"], ["DeleteSnapshot"]]
CALL_LINE = re.compile(r"action=(\S+) region=(\S+) .*latency_ms=(\d+)")


def longest_chain(stderr):
    """The longest total latency of one Describe action in one region, in
    seconds, from backupctl's -vv call log."""
    chains = {}
    for line in stderr.splitlines():
        m = CALL_LINE.search(line)
        if m and m.group(1).startswith("Describe") and m.group(1) != "DescribeRegions":
            key = (m.group(1), m.group(2))
            chains[key] = chains.get(key, 0) + int(m.group(3)) / 1000
    return max(chains.values(), default=0)


def bucket_minimum(by_action, scale):
    total = 0
    for phase in PHASES:
        total += max(
            max(0, by_action.get(a, 0) - BUCKETS[a][0]) / (BUCKETS[a][1] * scale) for a in phase
        )
    return total


def pages(n):
    return max(1, math.ceil(n / 1000))


COPY_RULE = """[[copy]]
to_region = "{to}"
[copy.retention]
max_age = "2 days"
keep_last = 2
"""


def bench(binary, regions_count, per_region, mode):
    regions = REGIONS[:regions_count]
    dest = REGIONS[regions_count] if mode["copies"] else None
    emu = Emulator()
    try:
        emu.control("regions", {"regions": regions + ([dest] if dest else [])})
        t0 = time.monotonic()
        for r in regions:
            emu.control(
                "seed",
                {
                    "region": r,
                    "instances": [
                        {
                            "count": per_region,
                            "tags": {"Backup": "daily"},
                            "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}],
                        }
                    ],
                },
            )
        seed_seconds = time.monotonic() - t0
        tmp = tempfile.mkdtemp(prefix="backupctl-bench-")
        pol = os.path.join(tmp, "policies")
        os.makedirs(pol)
        for name, text in POLICIES.items():
            if mode["buckets"] and name != "db":
                continue
            if dest:
                text += COPY_RULE.format(to=dest)
            with open(os.path.join(pol, name + ".toml"), "w") as f:
                f.write(text.format(regions=json.dumps(regions)))
        base = (datetime.now(timezone.utc) + timedelta(days=2)).replace(
            hour=6, minute=0, second=0, microsecond=0
        )
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_ACCESS_KEY_ID": "AKIDBENCH",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": regions[0],
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{emu.port}",
            "AWS_EC2_METADATA_DISABLED": "true",
            "HOME": tmp,
        }
        switches = {}
        if mode["latency"]:
            switches["latency"] = {"describe": [0.15, 0.3], "mutating": [0.1, 0.2], "seed": 7}
            env["RUST_LOG"] = "backupctl::aws=info"
        if mode["buckets"]:
            k = mode["scale"]
            switches["buckets"] = {a: [b, r * k] for a, (b, r) in BUCKETS.items()}
            env["BACKUPCTL_API_RATES"] = ",".join(f"{a}={b}/{r * k}" for a, (b, r) in BUCKETS.items())
            env["BACKUPCTL_PER_VOLUME_GAP"] = "0"
        emu.control("ec2", switches)
        steps = [
            ("apply, day 0 (all due)", APPLY, 0),
            ("apply, day 1", APPLY, 1),
            ("apply, day 2", APPLY, 2),
            ("plan, day 3", ["plan"], 3),
            ("apply, day 3 (creates and deletes)", APPLY, 3),
            # moto's backups are available at once, so the day-3 backups
            # push the day-1 ones past keep_last: a second run deletes them
            # (on EC2 they would still be pending), a third has nothing to do.
            ("apply, day 3 again", APPLY, 3),
            ("apply, day 3 a third time", APPLY, 3),
        ]
        rows = []
        for label, args, day in steps:
            counts = {"instances": per_region, "images": 0, "snapshots": 0, "volumes": per_region}
            for r in regions[:1]:
                dump = emu.control("dump", {"region": r})
                counts["images"] = len(dump["images"])
                counts["snapshots"] = len(dump["snapshots"])
            minimum = regions_count * (
                pages(counts["instances"])
                + pages(counts["images"])
                + pages(counts["snapshots"])
                + pages(counts["volumes"])
            )
            if dest:
                there = emu.control("dump", {"region": dest})
                minimum += pages(len(there["images"])) + pages(len(there["snapshots"]))
            emu.control("reset-calls")
            now = (base + timedelta(days=day)).isoformat()
            # EC2's clock follows the simulated one, as in the tests: the
            # creation times it records move with the simulated days.
            emu.control("clock", {"now": now})
            run_env = dict(env, BACKUPCTL_NOW=now)
            verbose = ["-vv"] if mode["latency"] else []
            code, out, err, wall, rss = run_measured(binary, ["--policies", pol, "-q"] + verbose + args, run_env)
            answer = emu.control("calls")
            calls = answer["calls"]
            throttled = sum(n for per in answer["faults"].values() for k, n in per.items() if k.endswith(":bucket"))
            by_action = {}
            for per in calls.values():
                for action, n in per.items():
                    by_action[action] = by_action.get(action, 0) + n
            describes = sum(n for a, n in by_action.items() if a.startswith("Describe") and a != "DescribeRegions")
            summary = [l for l in out.splitlines() if l.startswith(("Plan:", "No changes", "Apply complete"))]
            rows.append(
                {
                    "config": f"{regions_count} x {per_region}",
                    "step": label,
                    "exit": code,
                    "wall_s": round(wall, 2),
                    "peak_rss_mib": round(rss, 1),
                    "describe_calls": describes,
                    "describe_min": minimum,
                    "calls": by_action,
                    "summary": " / ".join(summary),
                    "longest_chain_s": round(longest_chain(err), 2) if mode["latency"] else None,
                    "throttled": throttled if mode["buckets"] else None,
                    "bucket_min_s": round(bucket_minimum(by_action, mode["scale"]), 1) if mode["buckets"] else None,
                    "stderr": "\n".join(l for l in err.splitlines() if "action=" not in l)[-300:],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        return seed_seconds, rows
    finally:
        emu.stop()


LARGE_POLICIES = {
    "web": """name = "web"
[target]
regions = ["us-east-1"]
instance_tags = { Backup = "daily" }
[backup]
kind = "ami"
[retention]
max_age = "30 days"
keep_last = 10
""",
    "db": """name = "db"
[target]
regions = ["us-east-1"]
instance_tags = { Backup = "daily" }
volume_tags = { Snapshot = "yes" }
exclude_boot_volume = true
[backup]
kind = "snapshot"
[retention]
max_age = "100 days"
keep_last = 90
""",
}


def bench_large(binary):
    emu = Emulator()
    tmp = tempfile.mkdtemp(prefix="backupctl-bench-")
    try:
        region = "us-east-1"
        emu.control("regions", {"regions": [region]})
        now = datetime.now(timezone.utc).replace(hour=6, minute=0, second=0, microsecond=0)
        emu.control(
            "seed",
            {
                "region": region,
                "instances": [
                    {
                        "count": 1000,
                        "tags": {"Backup": "daily"},
                        "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}],
                    }
                ],
            },
        )
        made = emu.control(
            "bulk_backups",
            {"region": region, "now": now.isoformat(), "images": 10, "sets": 90,
             "image_policy": "web", "set_policy": "db"},
        )
        print(f"seeded: {made}", file=sys.stderr, flush=True)
        pol = os.path.join(tmp, "policies")
        os.makedirs(pol)
        for name, text in LARGE_POLICIES.items():
            with open(os.path.join(pol, name + ".toml"), "w") as f:
                f.write(text)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_ACCESS_KEY_ID": "AKIDBENCH",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": region,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{emu.port}",
            "AWS_EC2_METADATA_DISABLED": "true",
            "HOME": tmp,
            "BACKUPCTL_NOW": now.isoformat(),
        }
        state = os.path.join(tmp, "state.json")
        out = os.path.join(tmp, "plan.json")
        steps = [
            ("state pull", ["state", "pull", "-o", state]),
            ("plan, live, text", ["plan"]),
            ("plan, live, JSON with --out", ["plan", "--format", "json", "--out", out]),
            ("plan --state, text", ["plan", "--state", state]),
            ("plan --state, JSON with --out", ["plan", "--state", state, "--format", "json", "--out", out]),
        ]
        rows = []
        for label, args in steps:
            code, stdout, err, wall, rss = run_measured(binary, ["--policies", pol, "-q"] + args, env)
            summary = [l for l in stdout.splitlines() if l.startswith(("Plan:", "No changes"))]
            if "json" in args:
                summary = [f"{len(stdout) / 1e6:.1f} MB of JSON"]
            row = {
                "config": "1 x 1000, 100k snapshots, 10k images",
                "step": label,
                "exit": code,
                "wall_s": round(wall, 2),
                "peak_rss_mib": round(rss, 1),
                "summary": " / ".join(summary),
                "stderr": err[-300:],
            }
            if label == "state pull":
                row["summary"] = f"{os.path.getsize(state) / 1e6:.1f} MB state"
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        print("| configuration | step | wall (s) | peak RSS (MiB) | result |")
        print("|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['config']} | {row['step']} | {row['wall_s']} | {row['peak_rss_mib']} | {row['summary']} (exit {row['exit']}) |")
    finally:
        emu.stop()


def bench_accounts(binary, accounts, regions_count, per_region):
    """Many accounts (issue 12): `accounts` accounts entered through an
    assumed role each, `regions_count` regions each, `per_region` instances
    per region (a root and a tagged data volume each), the two policies.
    One plan per setting; calls counted by the emulator, beside the minimum
    (one AssumeRole per account, and per account and region one page of
    each of the four Describe calls the policies need)."""
    emu = Emulator()
    tmp = tempfile.mkdtemp(prefix="backupctl-bench-")
    try:
        regions = REGIONS[:regions_count]
        emu.control("regions", {"regions": regions})
        ids = [f"{100000000000 + i:012d}" for i in range(1, accounts + 1)]
        started = time.monotonic()
        for account in ids:
            for region in regions:
                emu.control("seed", {
                    "account": account,
                    "region": region,
                    "instances": [{
                        "count": per_region,
                        "tags": {"Backup": "daily"},
                        "volumes": [{"device": "/dev/sdf", "tags": {"Snapshot": "yes"}}],
                    }],
                })
        seeded = time.monotonic() - started
        print(f"seeded {accounts} x {regions_count} x {per_region} in {seeded:.0f} s", file=sys.stderr, flush=True)
        pol = os.path.join(tmp, "policies")
        os.makedirs(pol)
        for name, text in POLICIES.items():
            with open(os.path.join(pol, name + ".toml"), "w") as f:
                f.write(text.format(regions=json.dumps(regions)))
        with open(os.path.join(pol, "accounts.toml"), "w") as f:
            f.write('[defaults]\nrole_name = "backupctl"\n')
            for account in ids:
                f.write(f'[[account]]\nid = "{account}"\nname = "a{account[-3:]}"\n')
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_ACCESS_KEY_ID": "AKIDBENCH",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{emu.port}",
            "AWS_EC2_METADATA_DISABLED": "true",
            "HOME": tmp,
            "BACKUPCTL_NOW": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        }
        minimum = accounts + accounts * regions_count * 4
        steps = [
            ("plan, --max-accounts 8", ["plan"], None),
            ("plan, --max-accounts 16", ["--max-accounts", "16", "plan"], None),
            ("plan, --max-accounts 16, real EC2 latency", ["--max-accounts", "16", "plan"],
             {"latency": {"describe": [0.15, 0.3], "mutating": [0.1, 0.2], "seed": 1}}),
        ]
        print("| accounts x regions x instances | step | wall (s) | peak RSS (MiB) | API calls (minimum) | AssumeRole | result |")
        print("|---|---|---|---|---|---|---|")
        for label, args, real in steps:
            emu.control("ec2", real or {})
            emu.control("reset_calls")
            code, stdout, err, wall, rss = run_measured(binary, ["--policies", pol, "-q"] + args, env)
            calls = emu.control("calls")["calls"]
            total = sum(n for r in calls.values() for n in r.values())
            assume = sum(r.get("AssumeRole", 0) for r in calls.values())
            summary = [l for l in stdout.splitlines() if l.startswith(("Plan:", "No changes"))]
            row = {
                "config": f"{accounts} x {regions_count} x {per_region}",
                "step": label,
                "exit": code,
                "wall_s": round(wall, 2),
                "peak_rss_mib": round(rss, 1),
                "calls": total,
                "minimum": minimum,
                "assume_role": assume,
                "summary": " / ".join(summary),
                "stderr": err[-300:],
            }
            print(json.dumps(row), file=sys.stderr, flush=True)
            print(f"| {row['config']} | {label} | {row['wall_s']} | {row['peak_rss_mib']} | {total} ({minimum}) | {assume} | {row['summary']} (exit {code}) |")
            sys.stdout.flush()
    finally:
        emu.stop()


def main():
    args = sys.argv[1:]
    if "--accounts" in args:
        i = args.index("--accounts")
        config = args[i + 1]
        del args[i : i + 2]
        a, r, n = (int(x) for x in config.split("x"))
        bench_accounts(os.path.abspath(args[0]), a, r, n)
        return
    if "--large" in args:
        args.remove("--large")
        bench_large(os.path.abspath(args[0]))
        return
    mode = {"latency": "--latency" in args, "buckets": "--buckets" in args, "copies": "--copies" in args, "scale": 4}
    if "--scale" in args:
        mode["scale"] = int(args[args.index("--scale") + 1])
        del args[args.index("--scale") : args.index("--scale") + 2]
    args = [a for a in args if a not in ("--latency", "--buckets", "--copies")]
    binary = os.path.abspath(args[0])
    configs = args[1:] or ["2x100", "4x1000"]
    extra = ""
    if mode["latency"]:
        extra += " longest Describe chain (s) |"
    if mode["buckets"]:
        extra += " throttled | bucket minimum (s) |"
    print(f"| regions x instances/region | step | wall (s) |{extra} peak RSS (MiB) | Describe calls (min) | other calls | result |")
    print("|---|---|---|" + "---|" * extra.count("|") + "---|---|---|---|")
    for config in configs:
        r, n = (int(x) for x in config.split("x"))
        seed_seconds, rows = bench(binary, r, n, mode)
        for row in rows:
            other = ", ".join(
                f"{a} {c}" for a, c in sorted(row["calls"].items()) if not a.startswith("Describe") or a == "DescribeRegions"
            )
            cells = ""
            if mode["latency"]:
                cells += f" {row['longest_chain_s']} |"
            if mode["buckets"]:
                cells += f" {row['throttled']} | {row['bucket_min_s']} |"
            print(
                f"| {row['config']} | {row['step']} | {row['wall_s']} |{cells} {row['peak_rss_mib']} | "
                f"{row['describe_calls']} ({row['describe_min']}) | {other} | {row['summary']} (exit {row['exit']}) |"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
