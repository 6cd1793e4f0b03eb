//! An in-memory EC2 holding an [`Inventory`], with the rules that matter to
//! backupctl: AMI names are unique, CreateImage snapshots every attached
//! volume, CreateSnapshots honours its exclusions, a snapshot used by an image
//! cannot be deleted, deregistering an image deletes its snapshots unless
//! another image uses them. Tags are applied in the creating call, as the
//! real provider does with TagSpecifications. New images and snapshots start
//! `pending`, as in EC2, until [`MemoryProvider::settle`] completes them.

use super::{Done, Observation, Provider, ProviderError, Scope};
use crate::inventory::{
    Image, ImageState, Instance, Inventory, RegionInventory, Snapshot, SnapshotState, Tags,
};
use crate::output::Progress;
use crate::plan::Action;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::{Arc, Mutex};

pub struct MemoryProvider {
    state: Mutex<State>,
}

struct State {
    inventory: Inventory,
    now: DateTime<Utc>,
    next_id: u64,
}

fn err(code: &str, message: String) -> ProviderError {
    ProviderError {
        code: code.to_string(),
        message,
    }
}

impl MemoryProvider {
    /// A provider whose clock reads `now` (native times of new backups).
    pub fn new(inventory: Inventory, now: DateTime<Utc>) -> Self {
        MemoryProvider {
            state: Mutex::new(State {
                inventory,
                now,
                // Far above the small counters fixtures and generators use,
                // so new ids never collide with observed ones.
                next_id: 1 << 60,
            }),
        }
    }

    /// Sets the clock that stamps new backups (EC2's own time).
    pub fn set_now(&self, now: DateTime<Utc>) {
        self.state.lock().expect("memory provider lock").now = now;
    }

    pub fn inventory(&self) -> Inventory {
        let mut inv = self
            .state
            .lock()
            .expect("memory provider lock")
            .inventory
            .clone();
        inv.normalize();
        inv
    }

    /// Completes every pending image and snapshot, as EC2 eventually does.
    pub fn settle(&self) {
        let mut state = self.state.lock().expect("memory provider lock");
        for reg in state.inventory.regions.values_mut() {
            for i in reg
                .images
                .iter_mut()
                .filter(|i| i.state == ImageState::Pending)
            {
                i.state = ImageState::Available;
            }
            for s in reg
                .snapshots
                .iter_mut()
                .filter(|s| s.state == SnapshotState::Pending)
            {
                s.state = SnapshotState::Completed;
            }
        }
    }

    /// Does one action at once, as [`Provider::execute`] does.
    pub fn run(&self, region: &str, action: &Action) -> Result<Done, ProviderError> {
        let mut state = self.state.lock().expect("memory provider lock");
        let State {
            inventory,
            now,
            next_id,
        } = &mut *state;
        let now = *now;
        let mut new_id = |prefix: &str| {
            *next_id += 1;
            format!("{prefix}-{:017x}", *next_id)
        };
        if let Action::Copy { .. } = action {
            return copy(inventory, region, action, now, &mut new_id);
        }
        let reg = inventory
            .regions
            .get_mut(region)
            .ok_or_else(|| err("InvalidRegion", format!("no region {region}")))?;
        match action {
            Action::Copy { .. } => unreachable!("handled above"),
            Action::CreateImage {
                instance_id,
                name,
                tags,
                ..
            } => {
                let instance = find_instance(reg, instance_id)?;
                if reg.images.iter().any(|i| &i.name == name) {
                    return Err(err(
                        "InvalidAMIName.Duplicate",
                        format!("AMI name {name} is already in use"),
                    ));
                }
                let snapshots = snapshots_of(&instance, |_| true, tags, now, &mut new_id);
                let image = Image {
                    id: new_id("ami"),
                    name: name.clone(),
                    state: ImageState::Pending,
                    created_at: now,
                    tags: tags.clone(),
                    snapshot_ids: snapshots.iter().map(|s| s.id.clone()).collect(),
                    deregistration_protection: None,
                };
                let id = image.id.clone();
                reg.snapshots.extend(snapshots);
                reg.images.push(image);
                Ok(Done::Created(vec![id]))
            }
            Action::CreateSnapshots {
                instance_id,
                exclude_boot_volume,
                exclude_data_volume_ids,
                tags,
                lock,
                ..
            } => {
                let instance = find_instance(reg, instance_id)?;
                let keep = |v: &crate::inventory::AttachedVolume| {
                    if v.root {
                        !exclude_boot_volume
                    } else {
                        !exclude_data_volume_ids.contains(&v.volume_id)
                    }
                };
                let mut snapshots = snapshots_of(&instance, keep, tags, now, &mut new_id);
                for s in &mut snapshots {
                    s.lock = lock.map(|l| crate::inventory::SnapshotLock {
                        state: l.mode.as_str().into(),
                        expires_at: l.expires_at,
                    });
                }
                let ids = snapshots.iter().map(|s| s.id.clone()).collect();
                reg.snapshots.extend(snapshots);
                Ok(Done::Created(ids))
            }
            Action::DeregisterImage {
                image_id,
                snapshot_ids,
                ..
            } => {
                let pos = reg
                    .images
                    .iter()
                    .position(|i| &i.id == image_id)
                    .ok_or_else(|| {
                        err(
                            "InvalidAMIID.NotFound",
                            format!("image {image_id} does not exist"),
                        )
                    })?;
                if reg.images[pos].protection(now) != crate::inventory::Protection::Off {
                    return Err(err(
                        crate::provider::IMAGE_PROTECTED,
                        format!("image {image_id} has deregistration protection"),
                    ));
                }
                let image = reg.images.remove(pos);
                let still_used = |s: &str| {
                    reg.images
                        .iter()
                        .any(|i| i.snapshot_ids.iter().any(|x| x == s))
                };
                // Like DeleteAssociatedSnapshots, restricted to the planned
                // snapshots: shared ones survive.
                let locked = |id: &str| {
                    reg.snapshots
                        .iter()
                        .any(|s| s.id == id && s.lock.as_ref().is_some_and(|l| l.holds(now)))
                };
                let doomed: Vec<String> = snapshot_ids
                    .iter()
                    .filter(|s| image.snapshot_ids.contains(s))
                    .filter(|s| !still_used(s) && !locked(s))
                    .cloned()
                    .collect();
                reg.snapshots.retain(|s| !doomed.contains(&s.id));
                let mut gone = vec![image.id];
                gone.extend(doomed);
                Ok(Done::Deleted(gone))
            }
            Action::DeleteSnapshot { snapshot_id } => {
                delete_snapshot(reg, snapshot_id, now)?;
                Ok(Done::Deleted(vec![snapshot_id.clone()]))
            }
            Action::Lock {
                snapshot_ids,
                mode,
                expires_at,
                cool_off_hours,
                ..
            } => {
                for id in snapshot_ids {
                    let snapshot =
                        reg.snapshots
                            .iter_mut()
                            .find(|s| &s.id == id)
                            .ok_or_else(|| {
                                err(
                                    "InvalidSnapshot.NotFound",
                                    format!("snapshot {id} does not exist"),
                                )
                            })?;
                    let state = match (mode, cool_off_hours) {
                        (crate::policy::LockMode::Governance, _) => "governance",
                        (_, Some(_)) => "compliance-cooloff",
                        _ => "compliance",
                    };
                    snapshot.lock = Some(crate::inventory::SnapshotLock {
                        state: state.into(),
                        expires_at: *expires_at,
                    });
                }
                Ok(Done::Locked(snapshot_ids.clone()))
            }
            Action::Protect { image_id, cooldown } => {
                let words = if *cooldown {
                    "enabled-with-cooldown"
                } else {
                    "enabled-without-cooldown"
                };
                find_image(reg, image_id)?.deregistration_protection = Some(words.into());
                Ok(Done::Protected(image_id.clone()))
            }
            Action::Unprotect { image_id } => {
                let image = find_image(reg, image_id)?;
                // As EC2 reports it: a cooldown runs from now.
                image.deregistration_protection = match image.protection(now) {
                    crate::inventory::Protection::On { cooldown: true } => Some(format!(
                        "disabled after {}",
                        (now + crate::inventory::PROTECTION_COOLDOWN)
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    )),
                    _ => None,
                };
                Ok(Done::Unprotected(image_id.clone()))
            }
            Action::Share {
                id,
                snapshot_ids,
                account,
                add,
                ..
            } => {
                let key = format!("{}{account}", crate::policy::tags::SHARED_WITH);
                let mut ids = Vec::new();
                let mark = |tags: &mut crate::inventory::Tags| {
                    if *add {
                        tags.insert(key.as_str(), "copy");
                    } else {
                        tags.remove(&key);
                    }
                };
                for image in reg.images.iter_mut().filter(|i| &i.id == id) {
                    mark(&mut image.tags);
                    ids.push(image.id.clone());
                }
                for snapshot in reg
                    .snapshots
                    .iter_mut()
                    .filter(|s| snapshot_ids.contains(&s.id))
                {
                    mark(&mut snapshot.tags);
                    ids.push(snapshot.id.clone());
                }
                Ok(if *add {
                    Done::Shared(ids)
                } else {
                    Done::Unshared(ids)
                })
            }
            Action::Adopt {
                id,
                snapshot_ids,
                tags,
                ..
            } => {
                // The backup itself must exist. An image's snapshots may be
                // missing here: an inventory that came from an observation
                // holds no untagged snapshot, and they are tagged in EC2.
                let exists = reg.images.iter().any(|i| &i.id == id)
                    || reg.snapshots.iter().any(|s| &s.id == id);
                if !exists {
                    let code = if id.starts_with("ami-") {
                        "InvalidAMIID.NotFound"
                    } else {
                        "InvalidSnapshot.NotFound"
                    };
                    return Err(err(code, format!("{id} does not exist")));
                }
                for image in reg.images.iter_mut().filter(|i| &i.id == id) {
                    image.tags.extend_from(tags);
                }
                for snapshot in reg
                    .snapshots
                    .iter_mut()
                    .filter(|s| &s.id == id || snapshot_ids.contains(&s.id))
                {
                    snapshot.tags.extend_from(tags);
                }
                let mut ids = vec![id.clone()];
                ids.extend(snapshot_ids.iter().cloned());
                Ok(Done::Adopted(ids))
            }
            Action::DeleteSnapshotSet { snapshot_ids, .. } => {
                // One DeleteSnapshot per snapshot, as in EC2: one refusal
                // does not stop the others; a missing one is already gone.
                let mut failures = Vec::new();
                for id in snapshot_ids {
                    match delete_snapshot(reg, id, now) {
                        Ok(()) => {}
                        Err(e) if e.code == "InvalidSnapshot.NotFound" => {}
                        Err(e) => failures.push(e),
                    }
                }
                match failures.into_iter().next() {
                    None => Ok(Done::Deleted(snapshot_ids.clone())),
                    Some(e) => Err(e),
                }
            }
        }
    }
}

fn delete_snapshot(
    reg: &mut RegionInventory,
    snapshot_id: &str,
    now: DateTime<Utc>,
) -> Result<(), ProviderError> {
    let lock = reg
        .snapshots
        .iter()
        .find(|s| s.id == snapshot_id)
        .and_then(|s| s.lock.as_ref());
    if let Some(lock) = lock.filter(|l| l.holds(now)) {
        return Err(err(
            crate::provider::SNAPSHOT_LOCKED,
            format!("snapshot {snapshot_id} is locked until {}", lock.expires_at),
        ));
    }
    if let Some(image) = reg
        .images
        .iter()
        .find(|i| i.snapshot_ids.iter().any(|s| s == snapshot_id))
    {
        return Err(err(
            "InvalidSnapshot.InUse",
            format!("snapshot {snapshot_id} is in use by {}", image.id),
        ));
    }
    let before = reg.snapshots.len();
    reg.snapshots.retain(|s| s.id != snapshot_id);
    if reg.snapshots.len() == before {
        return Err(err(
            "InvalidSnapshot.NotFound",
            format!("snapshot {snapshot_id} does not exist"),
        ));
    }
    Ok(())
}

fn find_image<'r>(reg: &'r mut RegionInventory, id: &str) -> Result<&'r mut Image, ProviderError> {
    reg.images.iter_mut().find(|i| i.id == id).ok_or_else(|| {
        err(
            "InvalidAMIID.NotFound",
            format!("image {id} does not exist"),
        )
    })
}

fn find_instance(reg: &RegionInventory, id: &str) -> Result<Instance, ProviderError> {
    reg.instances
        .iter()
        .find(|i| i.id == id && !i.state.is_gone())
        .cloned()
        .ok_or_else(|| {
            err(
                "InvalidInstanceID.NotFound",
                format!("instance {id} does not exist"),
            )
        })
}

fn snapshots_of(
    instance: &Instance,
    keep: impl Fn(&crate::inventory::AttachedVolume) -> bool,
    tags: &Tags,
    now: DateTime<Utc>,
    new_id: &mut impl FnMut(&str) -> String,
) -> Vec<Snapshot> {
    instance
        .volumes
        .iter()
        .filter(|v| keep(v))
        .map(|v| Snapshot {
            id: new_id("snap"),
            volume_id: v.volume_id.clone(),
            state: SnapshotState::Pending,
            started_at: now,
            tags: tags.clone(),
            lock: None,
        })
        .collect()
}

impl Provider for MemoryProvider {
    /// Everything it holds (the in-memory EC2 has no throttling bucket to
    /// spare), ignoring the scope.
    fn observe(
        &self,
        _scope: &Scope,
        _progress: Arc<dyn Progress>,
    ) -> impl Future<Output = Result<Observation, ProviderError>> + Send {
        let inventory = self.inventory();
        async move {
            Ok(Observation {
                inventory,
                failures: Vec::new(),
                local_failure: None,
            })
        }
    }

    fn execute(
        &self,
        region: &str,
        action: &Action,
    ) -> impl Future<Output = Result<Done, ProviderError>> + Send {
        let result = self.run(region, action);
        async move { result }
    }

    /// Deregistering already deleted the planned snapshots that no other
    /// image uses; the others stay, as in EC2.
    async fn sweep(
        &self,
        _region: &str,
        _snapshot_ids: &[String],
    ) -> Result<Vec<(String, ProviderError)>, ProviderError> {
        Ok(Vec::new())
    }
}

/// CopyImage or CopySnapshot into `region`: pending copies, with the
/// placeholder VolumeId and only the tags the call writes.
fn copy(
    inventory: &mut Inventory,
    region: &str,
    action: &Action,
    now: DateTime<Utc>,
    new_id: &mut dyn FnMut(&str) -> String,
) -> Result<Done, ProviderError> {
    let Action::Copy {
        source_account,
        source_region,
        source_ids,
        name,
        tags,
        ..
    } = action
    else {
        return Err(err("Internal", "not a copy".to_string()));
    };
    let from = inventory
        .regions
        .get(source_region)
        .ok_or_else(|| err("InvalidRegion", format!("no region {source_region}")))?;
    let snapshot_of = |id: &str| from.snapshots.iter().find(|s| s.id == id).cloned();
    let (image, originals) = match name {
        Some(name) => {
            let image = from
                .images
                .iter()
                .find(|i| i.id == source_ids[0])
                .ok_or_else(|| {
                    err(
                        "InvalidAMIID.NotFound",
                        format!("no image {}", source_ids[0]),
                    )
                })?;
            let snapshots: Vec<_> = image
                .snapshot_ids
                .iter()
                .filter_map(|id| snapshot_of(id))
                .collect();
            (Some(name.clone()), snapshots)
        }
        None => {
            let snapshots = source_ids
                .iter()
                .map(|id| {
                    snapshot_of(id)
                        .ok_or_else(|| err("InvalidSnapshot.NotFound", format!("no snapshot {id}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (None, snapshots)
        }
    };
    let dest = inventory
        .regions
        .get_mut(region)
        .ok_or_else(|| err("InvalidRegion", format!("no region {region}")))?;
    let copies: Vec<Snapshot> = originals
        .iter()
        .map(|original| {
            let mut tags = tags.clone();
            if image.is_none() {
                tags.insert(
                    crate::policy::tags::COPY_OF,
                    crate::inventory::copy_of(
                        source_account.as_deref(),
                        source_region,
                        &original.id,
                    ),
                );
            }
            Snapshot {
                id: new_id("snap"),
                volume_id: crate::inventory::PLACEHOLDER_VOLUME.to_string(),
                state: SnapshotState::Pending,
                started_at: now,
                tags,
                lock: None,
            }
        })
        .collect();
    let snapshot_ids: Vec<String> = copies.iter().map(|s| s.id.clone()).collect();
    dest.snapshots.extend(copies);
    match image {
        Some(name) => {
            let id = new_id("ami");
            dest.images.push(Image {
                id: id.clone(),
                name,
                state: ImageState::Pending,
                created_at: now,
                tags: tags.clone(),
                snapshot_ids,
                deregistration_protection: None,
            });
            Ok(Done::Created(vec![id]))
        }
        None => Ok(Done::Created(snapshot_ids)),
    }
}
