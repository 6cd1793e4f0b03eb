//! What the planner's multi-run tests share: a policy `db` of the
//! instances tagged `B = y` in us-east-1, a fleet of such instances, and
//! runs that plan, apply against the in-memory provider (which refuses
//! what EC2 refuses) and let EC2 complete what it was making.

use crate::inventory::{AttachedVolume, Instance, InstanceState, Inventory, RegionInventory};
use crate::plan::Plan;
use crate::planner::plan;
use crate::policy::{parse_policy, PolicySet};
use crate::provider::memory::MemoryProvider;
use crate::provider::Done;
use chrono::{DateTime, TimeZone, Utc};
use std::path::Path;

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 0).unwrap()
}

/// Daily backups of `kind`; `backup` is added to `[backup]`, `retention`
/// is `[retention]`'s body and `rest` follows it (copy rules).
pub fn policy(kind: &str, backup: &str, retention: &str, rest: &str) -> PolicySet {
    let text = format!(
        "name = \"db\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = {{ B = \"y\" }}\n\
         [backup]\nkind = \"{kind}\"\nevery = \"1 day\"\n{backup}[retention]\n{retention}{rest}"
    );
    PolicySet {
        policies: vec![parse_policy(Path::new("db.toml"), &text).expect("valid").0],
        digest: "sha256:t".into(),
    }
}

/// `instances` (id and volumes, the first one the boot volume) in
/// us-east-1, and nothing yet in `other_regions`.
pub fn fleet(instances: &[(&str, &[&str])], other_regions: &[&str]) -> Inventory {
    let instance = |id: &str, volumes: &[&str]| Instance {
        id: id.into(),
        state: InstanceState::Running,
        tags: [("B".to_string(), "y".to_string())].into(),
        volumes: volumes
            .iter()
            .enumerate()
            .map(|(n, v)| AttachedVolume {
                volume_id: v.to_string(),
                device: format!("/dev/sd{}", (b'a' + n as u8) as char),
                root: n == 0,
            })
            .collect(),
    };
    let mut inv = Inventory::empty();
    let us = RegionInventory {
        instances: instances.iter().map(|(i, v)| instance(i, v)).collect(),
        ..Default::default()
    };
    inv.regions.insert("us-east-1".into(), us);
    for r in other_regions {
        inv.regions
            .insert(r.to_string(), RegionInventory::default());
    }
    inv
}

/// Plans and applies one run at `now`, then EC2 completes everything. A
/// change the provider refuses (a locked snapshot deleted, a protected
/// image deregistered, a copy of nothing) fails the test.
pub fn run(ec2: &MemoryProvider, policies: &PolicySet, now: DateTime<Utc>) -> Plan {
    ec2.set_now(now);
    let p = plan(policies, &ec2.inventory(), now);
    for c in &p.changes {
        match ec2.run(&c.region, &c.action) {
            Ok(
                Done::Created(_)
                | Done::Deleted(_)
                | Done::Locked(_)
                | Done::Protected(_)
                | Done::Unprotected(_)
                | Done::Shared(_)
                | Done::Unshared(_),
            ) => {}
            other => panic!("{}: {other:?}", c.address()),
        }
    }
    ec2.settle();
    p
}
