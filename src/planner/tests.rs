//! Table-like tests of the planner's rules on small inventories (issue 8).

use super::plan;
use crate::inventory::{
    AttachedVolume, Image, ImageState, Instance, InstanceState, Inventory, RegionInventory,
    Snapshot, SnapshotState, Tags, Volume,
};
use crate::plan::{Action, Plan};
use crate::policy::{parse_policy, PolicySet};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use std::path::Path;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap()
}

fn set(texts: &[&str]) -> PolicySet {
    PolicySet {
        policies: texts
            .iter()
            .map(|t| parse_policy(Path::new("p.toml"), t).expect("valid").0)
            .collect(),
        digest: "sha256:t".into(),
    }
}

const AMI: &str =
    "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { B = \"y\" }\n\
    [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"2 days\"\nkeep_last = 1\n";
const SNAP: &str = "name = \"db\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { B = \"y\" }\n\
    volume_tags = { S = \"yes\" }\n[backup]\nkind = \"snapshot\"\n[retention]\nmax_age = \"2 days\"\nkeep_last = 1\n";

fn instance(id: &str, volumes: &[(&str, bool)]) -> Instance {
    Instance {
        id: id.into(),
        state: InstanceState::Running,
        tags: [("B".to_string(), "y".to_string())].into(),
        volumes: volumes
            .iter()
            .map(|(v, root)| AttachedVolume {
                volume_id: v.to_string(),
                device: "/dev/sdf".into(),
                root: *root,
            })
            .collect(),
    }
}

/// Volumes tagged for the snapshot policy (`S = "yes"`).
fn backed_up_volumes(ids: &[&str]) -> Vec<Volume> {
    ids.iter()
        .map(|v| Volume {
            id: v.to_string(),
            tags: [("S".to_string(), "yes".to_string())].into(),
        })
        .collect()
}

fn tags(policy: &str, source: &str, created: DateTime<Utc>, set: Option<&str>) -> Tags {
    let mut t: Tags = [
        ("backupctl:policy".to_string(), policy.to_string()),
        ("backupctl:source".to_string(), source.to_string()),
        ("backupctl:created-at".to_string(), created.to_rfc3339()),
    ]
    .into();
    if let Some(s) = set {
        t.insert("backupctl:set", s);
    }
    t
}

fn snapshot(id: &str, volume: &str, days: i64, tags: Tags) -> Snapshot {
    Snapshot {
        id: id.into(),
        volume_id: volume.into(),
        state: SnapshotState::Completed,
        started_at: now() - TimeDelta::days(days),
        tags,
        lock: None,
    }
}

fn inventory(reg: RegionInventory) -> Inventory {
    let mut inv = Inventory::empty();
    inv.regions.insert("us-east-1".into(), reg);
    inv
}

fn creates(p: &Plan) -> Vec<&Action> {
    p.changes
        .iter()
        .filter(|c| c.action.is_create())
        .map(|c| &c.action)
        .collect()
}

#[test]
fn a_created_at_tag_in_the_future_never_delays_a_backup_and_is_reported() {
    let native = now() - TimeDelta::days(2);
    let future = Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap();
    let reg = RegionInventory {
        instances: vec![instance("i-0000000a", &[("vol-1", true)])],
        images: vec![Image {
            id: "ami-1".into(),
            name: "n".into(),
            state: ImageState::Available,
            created_at: native,
            tags: tags("web", "i-0000000a", future, None),
            snapshot_ids: vec![],
            deregistration_protection: None,
        }],
        ..Default::default()
    };
    let p = plan(&set(&[AMI]), &inventory(reg), now());
    assert_eq!(creates(&p).len(), 1, "{p:#?}");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("ami-1") && w.contains("later than EC2's own time")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_new_set_covers_every_selected_volume_even_when_one_is_fresh() {
    // vol-3 was tagged for backup after yesterday's set of vol-2 alone.
    let reg = RegionInventory {
        instances: vec![instance(
            "i-0000000a",
            &[("vol-1", true), ("vol-2", false), ("vol-3", false)],
        )],
        volumes: backed_up_volumes(&["vol-2", "vol-3"]),
        snapshots: vec![snapshot(
            "snap-1",
            "vol-2",
            0,
            tags("db", "i-0000000a", now(), Some("s1")),
        )],
        ..Default::default()
    };
    let p = plan(&set(&[SNAP]), &inventory(reg), now());
    match creates(&p).as_slice() {
        [Action::CreateSnapshots {
            volume_ids,
            exclude_boot_volume,
            exclude_data_volume_ids,
            tags,
            ..
        }] => {
            assert_eq!(volume_ids, &["vol-2", "vol-3"]);
            assert!(*exclude_boot_volume && exclude_data_volume_ids.is_empty());
            assert!(tags.contains_key("backupctl:set"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn copies_with_a_placeholder_volume_never_cost_another_instance_its_backup() {
    // i-a's only backup is a copy; i-b has a newer one. Grouped by the
    // placeholder VolumeId, i-a's copy would be deleted.
    let old = now() - TimeDelta::days(10);
    let reg = RegionInventory {
        snapshots: vec![
            snapshot("snap-a", "vol-ffffffff", 10, tags("db", "i-a", old, None)),
            snapshot("snap-b", "vol-ffffffff", 0, tags("db", "i-b", now(), None)),
        ],
        ..Default::default()
    };
    let p = plan(&set(&[SNAP]), &inventory(reg), now());
    assert!(p.changes.is_empty(), "{:#?}", p.changes);
    assert!(p.warnings.iter().any(|w| w.contains("snap-a")));
}

#[test]
fn retention_deletes_whole_sets_and_counts_sets() {
    let reg = RegionInventory {
        instances: vec![instance(
            "i-0000000a",
            &[("vol-2", false), ("vol-3", false)],
        )],
        volumes: backed_up_volumes(&["vol-2", "vol-3"]),
        snapshots: vec![
            snapshot(
                "snap-1",
                "vol-2",
                0,
                tags("db", "i-0000000a", now(), Some("new")),
            ),
            snapshot(
                "snap-2",
                "vol-3",
                0,
                tags("db", "i-0000000a", now(), Some("new")),
            ),
            snapshot(
                "snap-3",
                "vol-2",
                5,
                tags("db", "i-0000000a", now() - TimeDelta::days(5), Some("old")),
            ),
            snapshot(
                "snap-4",
                "vol-3",
                5,
                tags("db", "i-0000000a", now() - TimeDelta::days(5), Some("old")),
            ),
        ],
        ..Default::default()
    };
    let p = plan(&set(&[SNAP]), &inventory(reg), now());
    assert_eq!(p.changes.len(), 1, "{:#?}", p.changes);
    let c = &p.changes[0];
    match &c.action {
        Action::DeleteSnapshotSet {
            set_id,
            snapshot_ids,
        } => {
            assert_eq!(set_id, "old");
            assert_eq!(snapshot_ids, &["snap-3", "snap-4"]);
        }
        other => panic!("{other:?}"),
    }
    let left = c.backups_left.unwrap();
    assert_eq!((left.before, left.after), (2, 1));
}

#[test]
fn an_instance_with_no_selected_volume_is_a_warning_not_silence() {
    let reg = RegionInventory {
        instances: vec![instance("i-0000000a", &[("vol-1", true), ("vol-2", false)])],
        volumes: vec![Volume {
            id: "vol-2".into(),
            tags: [("S".to_string(), "typo".to_string())].into(),
        }],
        ..Default::default()
    };
    let p = plan(&set(&[SNAP]), &inventory(reg), now());
    assert!(p.changes.is_empty());
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("policy db in us-east-1") && w.contains("i-0000000a")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_policy_acts_only_in_the_regions_it_targets() {
    // An old, expired backup of `web` in eu-west-1, a region the policy no
    // longer targets: listed as out of scope, never deleted.
    let image = |id: &str, days: i64| Image {
        id: id.into(),
        name: id.into(),
        state: ImageState::Available,
        created_at: now() - TimeDelta::days(days),
        tags: tags("web", "i-0000000e", now() - TimeDelta::days(days), None),
        snapshot_ids: vec![],
        deregistration_protection: None,
    };
    let mut inv = inventory(RegionInventory::default());
    inv.regions.insert(
        "eu-west-1".into(),
        RegionInventory {
            instances: vec![instance("i-0000000e", &[("vol-9", true)])],
            images: vec![image("ami-new", 0), image("ami-old", 30)],
            ..Default::default()
        },
    );
    let p = plan(&set(&[AMI]), &inv, now());
    assert!(p.changes.is_empty(), "{:#?}", p.changes);
    let ids: Vec<&str> = p.out_of_scope.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["ami-new", "ami-old"]);
}

#[test]
fn planning_before_the_observation_is_a_warning() {
    let mut inv = inventory(RegionInventory::default());
    inv.observed_at = Some(now() + TimeDelta::hours(1));
    let p = plan(&set(&[AMI]), &inv, now());
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("before the inventory was observed")));
}

/// backupViaTag's AMIs, as it made them: tagged after CreateImage with
/// `CreatedBy`, `Expire` (`date` output or `never`) and `Name`; snapshots
/// untagged.
mod adoption {
    use super::*;
    use crate::plan::ReasonCode;
    use crate::provider::memory::MemoryProvider;

    const ADOPTING: &str =
        "name = \"web\"\n[target]\nregions = [\"us-east-1\"]\ninstance_tags = { B = \"y\" }\n\
        [backup]\nkind = \"ami\"\n[retention]\nmax_age = \"30 days\"\nkeep_last = 1\n\
        [adopt]\nfrom = \"backupViaTag\"\n";

    fn old_image(id: &str, instance: &str, days: i64, expire: &str) -> (Image, Snapshot) {
        let created = now() - TimeDelta::days(days);
        let tags: Tags = [
            ("CreatedBy".to_string(), "backupViaTag".to_string()),
            ("Expire".to_string(), expire.to_string()),
            ("Name".to_string(), format!("Backup of {instance}")),
        ]
        .into();
        let snap = format!("snap-{}", &id[4..]);
        let image = Image {
            id: id.into(),
            name: format!("{} {instance}", created.format("%Y%m%d%H%M%S")),
            state: ImageState::Available,
            created_at: created,
            tags,
            snapshot_ids: vec![snap.clone()],
            deregistration_protection: None,
        };
        let snapshot = Snapshot {
            id: snap,
            volume_id: "vol-1".into(),
            state: SnapshotState::Completed,
            started_at: created,
            tags: Tags::default(),
            lock: None,
        };
        (image, snapshot)
    }

    fn date(days_from_now: i64) -> String {
        (now() + TimeDelta::days(days_from_now))
            .format("%a %b %e %H:%M:%S UTC %Y")
            .to_string()
    }

    /// The fleet of a backupViaTag user: its AMIs of a selected instance
    /// (fresh, old with `never`, old and past its Expire, old but held by
    /// its Expire), one of an instance the policy does not select, and one
    /// another policy already owns.
    fn fleet() -> Inventory {
        let mut unselected = instance("i-0000000b", &[("vol-2", true)]);
        unselected.tags = Tags::default();
        let mut images = Vec::new();
        let mut snapshots = Vec::new();
        for (id, source, days, expire) in [
            ("ami-fresh", "i-0000000a", 0, date(30)),
            ("ami-never", "i-0000000a", 90, "never".to_string()),
            ("ami-gone", "i-0000000a", 60, date(-30)),
            ("ami-held", "i-0000000a", 45, date(10)),
            ("ami-other", "i-0000000b", 60, date(-30)),
            ("ami-owned", "i-0000000a", 60, date(-30)),
        ] {
            let (mut image, snapshot) = old_image(id, source, days, &expire);
            if id == "ami-owned" {
                image.tags.insert("backupctl:policy", "someone-else");
            }
            images.push(image);
            snapshots.push(snapshot);
        }
        inventory(RegionInventory {
            instances: vec![instance("i-0000000a", &[("vol-1", true)]), unselected],
            images,
            // Observation sees only tagged snapshots: none of these.
            snapshots: Vec::new(),
            ..Default::default()
        })
    }

    fn adopted(p: &Plan) -> Vec<&str> {
        p.changes
            .iter()
            .filter_map(|c| match &c.action {
                Action::Adopt { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn adopts_only_what_the_policy_names_and_honours_expire() {
        let p = plan(&set(&[ADOPTING]), &fleet(), now());
        assert_eq!(
            adopted(&p),
            ["ami-fresh", "ami-gone", "ami-held", "ami-never"],
            "{p:#?}"
        );
        // The fresh backupViaTag AMI counts: no second backup today.
        assert!(creates(&p).is_empty(), "{p:#?}");
        let deleted: Vec<&str> = p
            .changes
            .iter()
            .filter(|c| c.action.is_delete())
            .filter_map(|c| c.action.target_id())
            .collect();
        assert_eq!(deleted, ["ami-gone"]);
        let gone = p
            .changes
            .iter()
            .find(|c| c.action.target_id() == Some("ami-gone") && c.action.is_delete())
            .unwrap();
        // Its untagged snapshot goes with it (tagged by the adoption first).
        assert!(
            matches!(&gone.action, Action::DeregisterImage { snapshot_ids, kept_snapshot_ids, .. }
                if snapshot_ids == &["snap-gone"] && kept_snapshot_ids.is_empty()),
            "{gone:#?}"
        );
        for (id, why) in [("ami-never", "says never"), ("ami-held", "keeps it until")] {
            let k = p.kept.iter().find(|k| k.id == id).expect(id);
            assert_eq!(k.reason.code, ReasonCode::OldExpiry, "{k:#?}");
            assert!(k.reason.message.contains(why), "{k:#?}");
        }
        let adopt = p
            .changes
            .iter()
            .find(|c| c.action.target_id() == Some("ami-never"))
            .unwrap();
        let Action::Adopt {
            tags, snapshot_ids, ..
        } = &adopt.action
        else {
            panic!("{adopt:#?}")
        };
        assert_eq!(snapshot_ids, &["snap-never"]);
        assert_eq!(tags.get("backupctl:policy"), Some("web"));
        assert_eq!(tags.get("backupctl:source"), Some("i-0000000a"));
        assert_eq!(tags.get("backupctl:adopted-from"), Some("backupViaTag"));
        let created =
            (now() - TimeDelta::days(90)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(tags.get("backupctl:created-at"), Some(created.as_str()));
    }

    #[test]
    fn after_applying_the_adoption_a_new_plan_has_no_changes() {
        let mut inv = fleet();
        // The memory EC2 holds the untagged snapshots too.
        let reg = inv.regions.get_mut("us-east-1").unwrap();
        for image in &reg.images {
            reg.snapshots.push(Snapshot {
                id: image.snapshot_ids[0].clone(),
                volume_id: "vol-1".into(),
                state: SnapshotState::Completed,
                started_at: image.created_at,
                tags: Tags::default(),
                lock: None,
            });
        }
        let ec2 = MemoryProvider::new(inv, now());
        let policies = set(&[ADOPTING]);
        let first = plan(&policies, &observed(&ec2), now());
        for c in &first.changes {
            ec2.run(&c.region, &c.action)
                .unwrap_or_else(|e| panic!("{}: {e}", c.address()));
        }
        let again = plan(&policies, &observed(&ec2), now());
        assert!(!again.has_changes(), "{:#?}", again.changes);
        let after = ec2.inventory();
        let reg = &after.regions["us-east-1"];
        assert!(!reg.images.iter().any(|i| i.id == "ami-gone"));
        assert!(!reg.snapshots.iter().any(|s| s.id == "snap-gone"));
        for kept in ["snap-never", "snap-held", "snap-fresh"] {
            let s = reg.snapshots.iter().find(|s| s.id == kept).expect(kept);
            assert_eq!(s.tags.get("backupctl:policy"), Some("web"));
        }
        assert!(reg
            .images
            .iter()
            .any(|i| i.id == "ami-other" && i.tags.get("backupctl:policy").is_none()));
    }

    /// What a real observation returns: snapshots without a backupctl tag
    /// are not asked for.
    fn observed(ec2: &MemoryProvider) -> Inventory {
        let mut inv = ec2.inventory();
        for reg in inv.regions.values_mut() {
            reg.snapshots
                .retain(|s| s.tags.get("backupctl:policy").is_some());
        }
        inv
    }

    /// A first run after backupViaTag stopped deleting (its cron broken for
    /// weeks): most of a source's adopted AMIs are due for deletion at once.
    /// The guard sees them like any deletion; the adoptions are no deletion.
    #[test]
    fn the_guard_counts_the_deletions_of_adopted_backups() {
        let mut images = Vec::new();
        for (i, days) in [40, 41, 42, 43, 44, 0].into_iter().enumerate() {
            let (image, _) = old_image(&format!("ami-{i:04}"), "i-0000000a", days, &date(-5));
            images.push(image);
        }
        let inv = inventory(RegionInventory {
            instances: vec![instance("i-0000000a", &[("vol-1", true)])],
            images,
            ..Default::default()
        });
        let p = plan(&set(&[ADOPTING]), &inv, now());
        assert_eq!(adopted(&p).len(), 6, "{p:#?}");
        assert_eq!(p.summary().delete, 5);
        let tripped = crate::guard::violations(&p, Default::default());
        assert!(
            tripped
                .iter()
                .any(|v| v.rule.contains("would lose 5 of its 6 backups")),
            "{tripped:?}"
        );
    }

    #[test]
    fn a_backup_two_policies_claim_is_adopted_by_neither() {
        let twin = ADOPTING.replace("name = \"web\"", "name = \"web2\"");
        let p = plan(&set(&[ADOPTING, &twin]), &fleet(), now());
        assert!(adopted(&p).is_empty(), "{p:#?}");
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("ami-fresh") && w.contains("claimed by policies web, web2")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn molibackup_snapshots_are_adopted_volume_by_volume() {
        let policy = SNAP.replace("max_age = \"2 days\"", "max_age = \"30 days\"")
            + "[adopt]\nfrom = \"molibackup\"\n";
        let moli = |id: &str, volume: &str, days: i64| {
            let t: Tags = [("CreatedBy".to_string(), "molibackup".to_string())].into();
            snapshot(id, volume, days, t)
        };
        let reg = RegionInventory {
            instances: vec![instance("i-0000000a", &[("vol-1", true), ("vol-2", false)])],
            volumes: backed_up_volumes(&["vol-1"]),
            snapshots: vec![
                moli("snap-1", "vol-1", 1),
                moli("snap-2", "vol-2", 1),
                moli("snap-old", "vol-1", 40),
            ],
            ..Default::default()
        };
        let p = plan(&set(&[&policy]), &inventory(reg), now());
        // vol-2 is not selected (no S=yes tag): its snapshot stays molibackup's.
        assert_eq!(adopted(&p), ["snap-1", "snap-old"], "{p:#?}");
        // Volume-by-volume snapshots are never a set: a set is due now.
        assert_eq!(creates(&p).len(), 1, "{p:#?}");
    }
}
