//! Property tests of the planner over random inventories: the safety
//! invariants hold for every plan, and applying a plan converges.
//!
//! Inventories come from a small seeded generator (the seed is the proptest
//! input), so a failing case is replayed by its seed.

use backupctl::apply::{apply, Pacing};
use backupctl::inventory::{
    AttachedVolume, Backup, Image, ImageState, Instance, InstanceState, Inventory, RegionInventory,
    Snapshot, SnapshotState, Tags, Volume,
};
use backupctl::output::NoProgress;
use backupctl::plan::{Action, Plan};
use backupctl::planner::plan;
use backupctl::policy::{parse_policy, PolicySet};
use backupctl::provider::memory::MemoryProvider;
use backupctl::stale::differences;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// xorshift64*: tiny, deterministic, good enough to explore shapes.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap()
}

const POLICIES: [&str; 3] = ["p-ami", "p-snap", "p-ami2"];

fn policies(g: &mut Gen) -> PolicySet {
    let mut out = Vec::new();
    for name in POLICIES {
        let kind = if name == "p-snap" { "snapshot" } else { "ami" };
        let every = g.pick(&["1h", "12h", "1 day", "1 week"]);
        let max_age = g.pick(&["2 days", "10 days", "30 days", "1 month", "never"]);
        let keep_last = g.below(4);
        let regions = g.pick(&[
            "[\"*\"]",
            "[\"us-east-1\"]",
            "[\"eu-west-1\", \"us-east-1\"]",
        ]);
        let tag = g.pick(&["a", "b", "*"]);
        let extra = if kind == "snapshot" && g.chance(50) {
            "volume_tags = { Snapshot = \"yes\" }\nexclude_boot_volume = true\n"
        } else {
            ""
        };
        let text = format!(
            "name = \"{name}\"\n[target]\nregions = {regions}\ninstance_tags = {{ Backup = \"{tag}\" }}\n{extra}\
             [backup]\nkind = \"{kind}\"\nevery = \"{every}\"\n[retention]\nmax_age = \"{max_age}\"\nkeep_last = {keep_last}\n"
        );
        let (p, _) = parse_policy(Path::new(name), &text).expect("generated policy is valid");
        out.push(p);
    }
    PolicySet {
        policies: out,
        digest: "sha256:test".into(),
    }
}

/// Tags of a generated backup. Images carry AMI policies only (snapshot
/// policies never make images); snapshots carry any policy (an AMI policy's
/// standalone snapshot is a leftover of a deregistered image).
fn backup_tags(g: &mut Gen, sources: &[String], t: DateTime<Utc>, image: bool) -> Tags {
    let mut tags = Tags::new();
    let policies: &[&str] = if image {
        &["p-ami", "p-ami2"]
    } else {
        &POLICIES
    };
    match g.below(10) {
        0 => return tags, // unmanaged
        1 => {
            tags.insert("backupctl:policy", "removed-policy");
        }
        _ => {
            tags.insert("backupctl:policy", g.pick(policies).to_string());
        }
    }
    if g.chance(90) {
        tags.insert("backupctl:source", g.pick(sources).clone());
    }
    if g.chance(70) {
        // Sometimes a wrong tag: it may only make the backup look younger.
        let skew = TimeDelta::hours(g.below(200) as i64 - 100);
        tags.insert("backupctl:created-at", (t + skew).to_rfc3339());
    }
    tags
}

fn inventory(g: &mut Gen) -> Inventory {
    let mut inv = Inventory::empty();
    let mut counter = 0u64;
    let mut id = |prefix: &str| {
        counter += 1;
        format!("{prefix}-{counter:017x}")
    };
    for region in ["us-east-1", "eu-west-1"] {
        let mut reg = RegionInventory::default();
        for _ in 0..g.below(5) {
            let iid = id("i");
            let mut vols = Vec::new();
            for k in 0..1 + g.below(3) {
                let vid = id("vol");
                let mut tags = Tags::new();
                tags.insert("Snapshot", g.pick(&["yes", "no"]).to_string());
                reg.volumes.push(Volume {
                    id: vid.clone(),
                    tags,
                });
                vols.push(AttachedVolume {
                    volume_id: vid,
                    device: format!("/dev/sd{}", (b'a' + k as u8) as char),
                    root: k == 0,
                });
            }
            let mut tags = Tags::new();
            if g.chance(80) {
                tags.insert("Backup", g.pick(&["a", "b"]).to_string());
            }
            let state = *g.pick(&[
                InstanceState::Running,
                InstanceState::Running,
                InstanceState::Stopped,
                InstanceState::Terminated,
            ]);
            reg.instances.push(Instance {
                id: iid,
                state,
                tags,
                volumes: vols,
            });
        }
        let mut sources: Vec<String> = reg.instances.iter().map(|i| i.id.clone()).collect();
        sources.push(id("i")); // a source that no longer exists
        let mut volume_ids: Vec<String> = reg.volumes.iter().map(|v| v.id.clone()).collect();
        volume_ids.push(id("vol"));
        // Snapshot backups: sets of one to three snapshots sharing their
        // tags (one CreateSnapshots call), legacy single snapshots without
        // a set tag, and now and then a copy with EC2's placeholder VolumeId.
        for n in 0..g.below(10) {
            let t = now() - TimeDelta::hours(g.below(24 * 60) as i64);
            let mut tags = backup_tags(g, &sources, t, false);
            let members = if g.chance(70) {
                tags.insert("backupctl:set", format!("set-{n}"));
                1 + g.below(3)
            } else {
                1
            };
            for _ in 0..members {
                let state = *g.pick(&[
                    SnapshotState::Completed,
                    SnapshotState::Completed,
                    SnapshotState::Completed,
                    SnapshotState::Pending,
                    SnapshotState::Error,
                ]);
                let volume_id = if g.chance(5) {
                    "vol-ffffffff".to_string()
                } else {
                    g.pick(&volume_ids).clone()
                };
                reg.snapshots.push(Snapshot {
                    id: id("snap"),
                    volume_id,
                    state,
                    started_at: t,
                    tags: tags.clone(),
                    lock: None,
                });
            }
        }
        for _ in 0..g.below(12) {
            let t = now() - TimeDelta::hours(g.below(24 * 60) as i64);
            let tags = backup_tags(g, &sources, t, true);
            let state = *g.pick(&[
                ImageState::Available,
                ImageState::Available,
                ImageState::Pending,
                ImageState::Failed,
            ]);
            let mut snapshot_ids = Vec::new();
            // Its own snapshots, and sometimes an existing one (shared, or a
            // foreign image made from a snapshot backup).
            for _ in 0..g.below(3) {
                let sid = id("snap");
                let volume_id = g.pick(&volume_ids).clone();
                reg.snapshots.push(Snapshot {
                    id: sid.clone(),
                    volume_id,
                    state: SnapshotState::Completed,
                    started_at: t,
                    tags: tags.clone(),
                    lock: None,
                });
                snapshot_ids.push(sid);
            }
            // A foreign image registered from an existing snapshot (a
            // restore, say). Images that carry a policy tag were made by
            // CreateImage, which only ever makes new snapshots.
            let foreign = !POLICIES
                .iter()
                .any(|p| tags.get("backupctl:policy").is_some_and(|t| t == *p));
            if foreign && !reg.snapshots.is_empty() && g.chance(40) {
                snapshot_ids.push(g.pick(&reg.snapshots).id.clone());
            }
            let name = id("name");
            reg.images.push(Image {
                id: id("ami"),
                name,
                state,
                created_at: t,
                tags,
                snapshot_ids,
                deregistration_protection: None,
            });
        }
        inv.regions.insert(region.to_string(), reg);
    }
    inv.normalize();
    inv
}

/// (policy, "image" or "snapshot", source instance).
type Group = (String, String, String);

/// A managed backup as the invariants see it, independent of planner code:
/// an image, a snapshot set (every snapshot sharing policy, source and set
/// tag) or a legacy snapshot.
struct Seen {
    region: String,
    id: String,
    /// The snapshots of a set (or the one legacy snapshot).
    members: Vec<String>,
    /// None: the source cannot be told, so it must never be deleted.
    group: Option<Group>,
    /// EC2's time: the order of backups.
    time: DateTime<Utc>,
    good: bool,
    pending: bool,
}

/// The volumes `policy` selects on `source` now, if it selects the instance.
fn selected_volumes(
    reg: &RegionInventory,
    policy: &backupctl::policy::Policy,
    source: &str,
) -> Option<Vec<String>> {
    let i = reg.instances.iter().find(|i| i.id == source)?;
    let wanted = match policy.target.instance_tags.get("Backup")? {
        backupctl::policy::TagMatch::Exactly(v) => Some(v.as_str()),
        backupctl::policy::TagMatch::Any => None,
    };
    let has = i.tags.get("Backup");
    if i.state.is_gone() || has.is_none() || (wanted.is_some() && has != wanted) {
        return None;
    }
    let tagged = |v: &str| {
        reg.volumes
            .iter()
            .any(|x| x.id == v && x.tags.get("Snapshot").is_some_and(|t| t == "yes"))
    };
    Some(
        i.volumes
            .iter()
            .filter(|v| !(v.root && policy.target.exclude_boot_volume))
            .filter(|v| policy.target.volume_tags.is_empty() || tagged(&v.volume_id))
            .map(|v| v.volume_id.clone())
            .collect(),
    )
}

fn managed(inv: &Inventory, set: &PolicySet) -> Vec<Seen> {
    let mut out = Vec::new();
    for (region, reg) in &inv.regions {
        for i in &reg.images {
            if let Some(p) = i.policy().filter(|p| set.get(p).is_some()) {
                out.push(Seen {
                    region: region.clone(),
                    id: i.id.clone(),
                    members: Vec::new(),
                    group: i
                        .source()
                        .map(|s| (p.to_string(), "backup".into(), s.to_string())),
                    time: i.native_time(),
                    good: i.is_good(),
                    pending: i.is_pending(),
                });
            }
        }
        let mut sets: BTreeMap<(String, String, String), Vec<&Snapshot>> = BTreeMap::new();
        for s in &reg.snapshots {
            let p = match s.policy().filter(|p| set.get(p).is_some()) {
                Some(p) => p,
                None => continue,
            };
            let in_own_image = reg
                .images
                .iter()
                .any(|i| i.policy() == Some(p) && i.snapshot_ids.contains(&s.id));
            if in_own_image {
                continue;
            }
            let source = s.source().filter(|_| s.volume_id != "vol-ffffffff");
            match (source, s.tags.get("backupctl:set")) {
                (Some(source), Some(set_id)) => sets
                    .entry((p.to_string(), source.to_string(), set_id.to_string()))
                    .or_default()
                    .push(s),
                (source, _) => out.push(Seen {
                    region: region.clone(),
                    id: s.id.clone(),
                    members: vec![s.id.clone()],
                    group: source.map(|src| (p.to_string(), "backup".into(), src.to_string())),
                    time: s.native_time(),
                    good: false,
                    pending: s.is_pending(),
                }),
            }
        }
        for ((p, source, set_id), members) in sets {
            let policy = set.get(&p).unwrap();
            let covers = selected_volumes(reg, policy, &source).is_none_or(|vols| {
                vols.iter()
                    .all(|v| members.iter().any(|m| &m.volume_id == v))
            });
            let snapshot_policy = policy.backup.kind == backupctl::policy::Kind::Snapshot;
            out.push(Seen {
                region: region.clone(),
                id: set_id,
                members: members.iter().map(|m| m.id.clone()).collect(),
                group: Some((p, "backup".into(), source)),
                time: members.iter().map(|m| m.started_at).min().unwrap(),
                good: snapshot_policy
                    && covers
                    && members.iter().all(|m| m.state == SnapshotState::Completed),
                pending: members.iter().any(|m| m.state == SnapshotState::Pending),
            });
        }
    }
    out
}

fn check_invariants(set: &PolicySet, inv: &Inventory, plan: &Plan) -> Result<(), String> {
    let seen = managed(inv, set);
    // Units deleted, as (region, policy, source, id); and every image and
    // snapshot id that goes, by region.
    let mut gone_units: HashSet<(&str, &str, &str, &str)> = HashSet::new();
    let mut gone: HashSet<(&str, &str)> = HashSet::new();
    for c in &plan.changes {
        let Some(id) = c.action.target_id() else {
            continue;
        };
        gone_units.insert((&c.region, &c.policy, &c.source, id));
        let r = c.region.as_str();
        match &c.action {
            Action::DeregisterImage { snapshot_ids, .. } => {
                gone.insert((r, id));
                gone.extend(snapshot_ids.iter().map(|s| (r, s.as_str())));
            }
            Action::DeleteSnapshotSet { snapshot_ids, .. } => {
                gone.extend(snapshot_ids.iter().map(|s| (r, s.as_str())));
            }
            _ => {
                gone.insert((r, id));
            }
        }
    }
    let unit_gone = |o: &Seen| {
        o.group.as_ref().is_some_and(|g| {
            gone_units.contains(&(o.region.as_str(), g.0.as_str(), g.2.as_str(), o.id.as_str()))
        })
    };
    for c in &plan.changes {
        let Some(id) = c.action.target_id() else {
            continue;
        };
        // 2. Only backups owned by a loaded, enabled policy are deleted,
        // and a set only as a whole.
        let owned = seen.iter().find(|s| {
            s.region == c.region
                && s.id == id
                && s.group
                    .as_ref()
                    .is_some_and(|g| g.0 == c.policy && g.2 == c.source)
        });
        let Some(b) = owned else {
            return Err(format!(
                "deletes {id}, which no loaded policy owns with a known source"
            ));
        };
        if let Action::DeleteSnapshotSet { snapshot_ids, .. } = &c.action {
            let mut want = b.members.clone();
            want.sort();
            let mut got = snapshot_ids.clone();
            got.sort();
            if want != got {
                return Err(format!("deletes part of set {id}: {got:?} of {want:?}"));
            }
        }
        if matches!(c.action, Action::DeleteSnapshot { .. }) && b.members.len() != 1 {
            return Err(format!("deletes {id} one snapshot at a time"));
        }
        if b.pending {
            return Err(format!("deletes pending backup {id}"));
        }
        // 3. A newer good backup of the same source survives the plan.
        let newer_good_survivor = seen.iter().any(|o| {
            o.region == b.region
                && o.group == b.group
                && o.good
                && (o.time, &o.id) > (b.time, &b.id)
                && !unit_gone(o)
        });
        if !newer_good_survivor {
            return Err(format!(
                "deletes {id} without a newer good backup surviving"
            ));
        }
        let reg = &inv.regions[&c.region];
        // An image takes only snapshots of its own policy that no staying
        // image uses.
        if let Action::DeregisterImage { snapshot_ids, .. } = &c.action {
            for sid in snapshot_ids {
                let snap = reg.snapshots.iter().find(|s| &s.id == sid);
                if snap.and_then(|s| s.policy()) != Some(c.policy.as_str()) {
                    return Err(format!("{id} takes {sid}, which {} does not own", c.policy));
                }
                if reg.images.iter().any(|i| {
                    i.snapshot_ids.contains(sid)
                        && !gone.contains(&(c.region.as_str(), i.id.as_str()))
                }) {
                    return Err(format!("{id} takes {sid}, which a staying image uses"));
                }
            }
        }
        // 4. No snapshot still used by an image that stays.
        for sid in b.members.iter() {
            if let Some(user) = reg.images.iter().find(|i| {
                i.snapshot_ids.contains(sid) && !gone.contains(&(c.region.as_str(), i.id.as_str()))
            }) {
                return Err(format!("deletes {sid}, used by {} which stays", user.id));
            }
        }
    }
    // 2. A backup whose source cannot be told is never deleted.
    for s in seen.iter().filter(|s| s.group.is_none()) {
        for m in s.members.iter().chain([&s.id]) {
            if gone.contains(&(s.region.as_str(), m.as_str())) {
                return Err(format!("deletes {m}, whose source cannot be told"));
            }
        }
    }
    // 3. The newest keep_last good backups of every source are kept.
    let mut groups: BTreeMap<(&str, &Group), Vec<&Seen>> = BTreeMap::new();
    for s in &seen {
        if let Some(g) = &s.group {
            groups.entry((s.region.as_str(), g)).or_default().push(s);
        }
    }
    for ((_, group), mut members) in groups {
        let keep_last = set.get(&group.0).unwrap().retention.keep_last as usize;
        members.retain(|s| s.good);
        members.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id)));
        for s in members.iter().take(keep_last.max(1)) {
            if unit_gone(s) {
                return Err(format!(
                    "deletes {}, one of the newest {keep_last} good backups of {group:?}",
                    s.id
                ));
            }
        }
    }
    Ok(())
}

fn run_case(seed: u64) -> Result<(), String> {
    let mut g = Gen(seed | 1);
    let set = policies(&mut g);
    let inv = inventory(&mut g);
    let first = plan(&set, &inv, now());
    check_invariants(&set, &inv, &first).map_err(|e| format!("first plan: {e}"))?;
    // Nothing unowned ever appears anywhere in the plan.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let provider = Arc::new(MemoryProvider::new(inv, now()));
    let report = rt.block_on(apply(
        &first,
        provider.clone(),
        Arc::new(NoProgress),
        Default::default(),
        Pacing::none(),
    ));
    if report.failed() > 0 {
        return Err(format!("apply failed: {}", failures(&report)));
    }
    // New backups are pending, as in EC2: planning again changes nothing.
    let after = provider.inventory();
    let again = plan(&set, &after, now());
    if again.has_changes() {
        return Err(format!(
            "re-plan after apply is not empty: {:?}",
            again.changes
        ));
    }
    // Once they complete, retention may delete what they replace, but never
    // creates again, and further applies converge. A second deletion round
    // can happen when a deregistered image leaves behind a snapshot that
    // another image shares: it becomes a newer member of a snapshot group.
    for round in 1..=4 {
        provider.settle();
        let settled = provider.inventory();
        let next = plan(&set, &settled, now());
        check_invariants(&set, &settled, &next).map_err(|e| format!("round {round}: {e}"))?;
        if !next.has_changes() {
            return Ok(());
        }
        if let Some(c) = next.changes.iter().find(|c| c.action.is_create()) {
            return Err(format!(
                "round {round}: creates again at the same time: {} ({})",
                c.address(),
                c.reason.message
            ));
        }
        let report = rt.block_on(apply(
            &next,
            provider.clone(),
            Arc::new(NoProgress),
            Default::default(),
            Pacing::none(),
        ));
        if report.failed() > 0 {
            return Err(format!(
                "round {round}: apply failed: {}",
                failures(&report)
            ));
        }
    }
    Err("does not converge in 4 rounds".into())
}

fn failures(report: &backupctl::apply::ApplyReport) -> String {
    let failed: Vec<String> = report
        .outcomes
        .iter()
        .filter_map(|o| {
            o.result
                .as_ref()
                .err()
                .map(|e| format!("{}: {e}", o.change.address()))
        })
        .collect();
    failed.join("; ")
}

/// What may happen between `plan --out` and `apply PLANFILE`: backups
/// removed, added, re-tagged or failed, sources terminated, policies edited.
fn meddle(g: &mut Gen, set: &PolicySet, inv: &Inventory) -> (PolicySet, Inventory, Vec<String>) {
    let mut inv = inv.clone();
    let mut set = set.clone();
    let mut what = Vec::new();
    let regions: Vec<String> = inv.regions.keys().cloned().collect();
    for _ in 0..1 + g.below(3) {
        let region = g.pick(&regions).clone();
        let reg = inv.regions.get_mut(&region).unwrap();
        match g.below(7) {
            0 if !reg.images.is_empty() => {
                let k = g.below(reg.images.len() as u64) as usize;
                what.push(format!("removed {}", reg.images.remove(k).id));
            }
            1 if !reg.snapshots.is_empty() => {
                let k = g.below(reg.snapshots.len() as u64) as usize;
                what.push(format!("removed {}", reg.snapshots.remove(k).id));
            }
            2 if !reg.images.is_empty() => {
                let k = g.below(reg.images.len() as u64) as usize;
                let mut copy = reg.images[k].clone();
                copy.id = format!("ami-added{k:012x}");
                copy.name = copy.id.clone();
                copy.created_at = now() + TimeDelta::minutes(1);
                copy.snapshot_ids.clear();
                what.push(format!("added {} like {}", copy.id, reg.images[k].id));
                reg.images.push(copy);
            }
            3 if !reg.snapshots.is_empty() => {
                let k = g.below(reg.snapshots.len() as u64) as usize;
                let key = g.pick(&[
                    "backupctl:policy",
                    "backupctl:source",
                    "backupctl:created-at",
                    "backupctl:set",
                ]);
                reg.snapshots[k].tags.insert(key.to_string(), "changed");
                what.push(format!("re-tagged {} {key}", reg.snapshots[k].id));
            }
            4 if !reg.images.is_empty() => {
                let k = g.below(reg.images.len() as u64) as usize;
                reg.images[k].state = ImageState::Failed;
                what.push(format!("{} failed", reg.images[k].id));
            }
            5 if !reg.instances.is_empty() => {
                let k = g.below(reg.instances.len() as u64) as usize;
                reg.instances[k].state = InstanceState::Terminated;
                what.push(format!("{} terminated", reg.instances[k].id));
            }
            6 => {
                set = policies(g);
                set.digest = "sha256:edited".into();
                what.push("policies edited".into());
            }
            _ => {}
        }
    }
    (set, inv, what)
}

/// Issue 9: whatever happened between `plan --out` and `apply PLANFILE`,
/// a saved plan that is accepted deletes nothing a fresh plan at that
/// moment would not delete, in exactly the same way.
fn run_saved_case(seed: u64) -> Result<(), String> {
    let mut g = Gen(seed | 1);
    let set = policies(&mut g);
    let inv = inventory(&mut g);
    let saved = plan(&set, &inv, now());
    let hour = TimeDelta::hours(1);
    let untouched = differences(&saved, &set, &inv, now(), hour);
    if !untouched.is_empty() {
        return Err(format!("an untouched plan is refused: {untouched:?}"));
    }
    let (later_set, later, what) = meddle(&mut g, &set, &inv);
    let at = now() + TimeDelta::minutes(g.below(60) as i64);
    if !differences(&saved, &later_set, &later, at, hour).is_empty() {
        return Ok(());
    }
    let fresh = plan(&later_set, &later, at);
    for c in saved.changes.iter().filter(|c| !c.action.is_create()) {
        if !fresh
            .changes
            .iter()
            .any(|f| f.address() == c.address() && f.action == c.action)
        {
            return Err(format!(
                "after {what:?}, the saved plan was accepted with {} ({:?}), which a fresh plan at {at} does not make",
                c.address(),
                c.action
            ));
        }
    }
    Ok(())
}

/// Plans random accounts (random ids, each with a random inventory) whole
/// and in `--shard` shares of 1 to 6 jobs: the joined shards are the
/// whole plan, document for document, and every account is in exactly
/// one shard.
fn run_shard_case(seed: u64) -> Result<(), String> {
    use backupctl::accounts::Shard;
    use backupctl::plan::json::JsonPlan;
    let mut g = Gen(seed | 1);
    let set = policies(&mut g);
    let count = 1 + g.below(8) as usize;
    let ids: Vec<String> = (0..count)
        .map(|_| format!("{:012}", g.below(1_000_000_000_000)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let parts: Vec<Plan> = ids
        .iter()
        .map(|id| {
            let inv = inventory(&mut g);
            backupctl::planner::plan_account(&set, &inv, now()).in_account(id, &format!("a{id}"))
        })
        .collect();
    let digest = "sha256:set".to_string();
    let whole = Plan::merge(now(), digest.clone(), parts.clone());
    let whole_json = serde_json::to_string(&JsonPlan::from_plan(&whole)).unwrap();
    for n in 1..=6u32 {
        let mut shards = Vec::new();
        for k in 1..=n {
            let shard = Shard { index: k, count: n };
            let mine: Vec<Plan> = parts
                .iter()
                .filter(|p| p.accounts.keys().all(|id| shard.contains(id)))
                .cloned()
                .collect();
            if !mine.is_empty() {
                shards.push(Plan::merge(now(), digest.clone(), mine));
            }
        }
        for id in &ids {
            let homes = (1..=n)
                .filter(|&k| Shard { index: k, count: n }.contains(id))
                .count();
            if homes != 1 {
                return Err(format!("account {id} is in {homes} of {n} shards"));
            }
        }
        // The jobs finish in any order.
        shards.reverse();
        let joined = Plan::join(shards).map_err(|e| format!("{n} shards: {e}"))?;
        let joined_json = serde_json::to_string(&JsonPlan::from_plan(&joined)).unwrap();
        if joined_json != whole_json {
            return Err(format!("{n} shards joined differ from the whole plan"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_shards_of_the_accounts_join_into_the_whole_plan(seed in any::<u64>()) {
        if let Err(e) = run_shard_case(seed) {
            prop_assert!(false, "seed {seed}: {e}");
        }
    }

    #[test]
    fn a_saved_plan_never_deletes_what_a_fresh_plan_would_not(seed in any::<u64>()) {
        if let Err(e) = run_saved_case(seed) {
            prop_assert!(false, "seed {seed}: {e}");
        }
    }

    #[test]
    fn plans_keep_the_safety_invariants_and_converge(seed in any::<u64>()) {
        if let Err(e) = run_case(seed) {
            prop_assert!(false, "seed {seed}: {e}");
        }
    }
}
