#!/usr/bin/env python3
"""backupctl's EC2 emulator, for tests and benchmarks only.

Runs moto's WSGI app in this process on a loopback port, with:

- fixes for the moto 5.2.5 gaps that matter to backupctl (see PATCHES below):
  CreateImage with snapshot tags, one snapshot per attached volume, unique
  AMI names, DeregisterImage's DeleteAssociatedSnapshots, CreateSnapshots'
  ExcludeDataVolumeIds, snapshots in use by any image, fast tag lookups;
- an instance-metadata (IMDSv2) endpoint under /latest/;
- a count of EC2 calls by region and action;
- fault injection (throttling, HTTP 500, latency, hangs, connection resets,
  UnauthorizedOperation, answers that are not EC2's, and answers lost after
  the call succeeded), seeded
  so that a run can be replayed;
- real EC2 behaviours that moto lacks, switched on by tests (see REAL EC2
  below and ctl_ec2): per-volume snapshot limits, snapshots and images that
  stay pending for minutes of emulator clock, Describe calls that do not yet
  show what was just made, and disabled AMIs hidden unless asked for;
- every call into moto serialized (moto's models are not safe under
  concurrent requests; injected latency still overlaps);
- control endpoints under /_backupctl/ (seeding, state changes, counters).

Usage: launcher.py [--port N]   (0 = any free port)
Prints "READY <port>" on stdout once listening, and exits when its stdin
closes, so a test that dies never leaves an emulator behind.
"""

import argparse
import io
import json
import logging
import os
import random
import re
import sys
import threading
import time
import urllib.parse

os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402
from werkzeug.wrappers import Request, Response  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.ec2.exceptions import EC2ClientError  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402
from moto.ec2.models.amis import Ami, AmiBackend  # noqa: E402
from moto.ec2.models.core import TaggedEC2Resource  # noqa: E402
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot  # noqa: E402
from moto.ec2.utils import random_ami_id, random_snapshot_id  # noqa: E402
from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend  # noqa: E402
from moto.ec2.responses.amis import AmisResponse  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402

ACCOUNT = "123456789012"
CONTROL_HEADER = "X-Backupctl-Control"


# ---------------------------------------------------------------- PATCHES


class DuplicateAmiName(EC2ClientError):
    def __init__(self, name, ami_id):
        super().__init__(
            "InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {ami_id}"
        )


class SnapshotInUse(EC2ClientError):
    def __init__(self, snapshot_id, ami_id):
        super().__init__(
            "InvalidSnapshot.InUse", f"The snapshot {snapshot_id} is currently in use by {ami_id}"
        )


def ami_snapshots(ami):
    """The snapshot ids of an image's block devices."""
    mappings = getattr(ami, "backupctl_mappings", None)
    if mappings is not None:
        return [snap.id for _, snap in mappings]
    return [ami.ebs_snapshot.id] if getattr(ami, "ebs_snapshot", None) else []


def images_using(backend, snapshot_id, but=None):
    return [a.id for a in backend.amis.values() if a.id != but and snapshot_id in ami_snapshots(a)]


_orig_create_image = AmiBackend.create_image


def create_image(self, instance_id, name, description, tag_specifications):
    # moto: HTTP 500 on a snapshot TagSpecification, one fake 15 GiB snapshot
    # whatever the instance has, and duplicate names accepted.
    for ami in self.amis.values():
        if ami.name == name:
            raise DuplicateAmiName(name, ami.id)
    image_specs = [s for s in tag_specifications if s["ResourceType"] == "image"]
    snapshot_tags = {}
    for spec in tag_specifications:
        if spec["ResourceType"] == "snapshot":
            snapshot_tags.update({t["Key"]: t["Value"] for t in spec["Tags"]})
    instance = self.get_instance(instance_id)
    check_volume_limits(self, [b.volume_id for _, b in instance.get_block_device_mapping])
    ami = _orig_create_image(self, instance_id, name, description, image_specs)
    self.snapshots.pop(ami.ebs_snapshot.id, None)
    mappings = []
    for device, block in instance.get_block_device_mapping:
        snap = self.create_snapshot(
            block.volume_id, f"Created by CreateImage({instance_id}) for {ami.id}", from_ami=ami.id
        )
        snap.add_tags(snapshot_tags)
        mappings.append((device, snap))
    ami.backupctl_mappings = mappings
    ami.root_device_name = instance.root_device_name
    made(self, ami, pending=bool(mappings))
    return ami


_orig_bdm = Ami.block_device_mappings


def block_device_mappings(self):
    mappings = getattr(self, "backupctl_mappings", None)
    if mappings is None:
        return _orig_bdm.fget(self)
    return [
        {
            "DeviceName": device,
            "Ebs": {
                "SnapshotId": snap.id,
                "VolumeSize": getattr(snap.volume, "size", 8),
                "DeleteOnTermination": False,
                "VolumeType": "gp3",
            },
        }
        for device, snap in mappings
    ]


def deregister_image(self):
    # moto accepts DeleteAssociatedSnapshots and ignores it.
    ami_id = self._get_param("ImageId")
    delete = str(self._get_param("DeleteAssociatedSnapshots", False)).lower() == "true"
    self.error_on_dryrun()
    if protection_words(self.ec2_backend, ami_id) != "disabled":
        raise EC2ClientError(
            "OperationNotPermitted",
            f"The image {ami_id} has deregistration protection; disable it first.",
        )
    ami = self.ec2_backend.amis.get(ami_id)
    snapshots = ami_snapshots(ami) if ami else []
    self.ec2_backend.deregister_image(ami_id)
    if not delete:
        return ActionResult({"Return": True})
    # As EC2 does: one result per associated snapshot ("skipped" when
    # another image uses it; with keep_associated_snapshots, no results, as
    # from a version of EC2 that does not report them).
    results = []
    if not REAL.get("keep_associated_snapshots"):
        for sid in snapshots:
            if images_using(self.ec2_backend, sid):
                results.append({"SnapshotId": sid, "ReturnCode": "skipped"})
            elif held_lock(self.ec2_backend, sid) is not None:
                results.append({"SnapshotId": sid, "ReturnCode": "client-error"})
            else:
                self.ec2_backend.snapshots.pop(sid, None)
                results.append({"SnapshotId": sid, "ReturnCode": "success"})
    return ActionResult({"Return": True, "DeleteSnapshotResults": results})


def as_list(value):
    if value is None:
        return []
    if isinstance(value, dict):
        return [v for _, v in sorted(value.items())]
    if isinstance(value, str):
        return [value]
    return list(value)


def create_snapshots(self, instance_spec, description, tags):
    # moto ignores InstanceSpecification.ExcludeDataVolumeIds.
    instance = self.get_instance(instance_spec["InstanceId"])
    exclude_boot = str(instance_spec.get("ExcludeBootVolume", False)).lower() == "true"
    excluded = set(as_list(instance_spec.get("ExcludeDataVolumeIds")))
    excluded |= set(as_list(instance_spec.get("ExcludeDataVolumeId")))
    volumes = []
    for device, block in instance.get_block_device_mapping:
        is_root = device == instance.root_device_name
        if (is_root and exclude_boot) or (not is_root and block.volume_id in excluded):
            continue
        volumes.append(block.volume_id)
    if len(excluded) > 40:
        raise EC2ClientError(
            "InvalidParameterValue",
            f"ExcludeDataVolumeIds takes at most 40 volume ids; {len(excluded)} were given",
        )
    check_volume_limits(self, volumes)
    snapshots = [self.create_snapshot(v, description=description) for v in volumes]
    for snapshot in snapshots:
        snapshot.add_tags(tags)
    return snapshots


_orig_create_snapshot = EBSBackend.create_snapshot


def create_snapshot(self, volume_id, description, owner_id=None, from_ami=None):
    # CreateImage and CreateSnapshots check the limits of all their volumes
    # before making anything; CreateSnapshot (one volume) checks here.
    if REQUEST["action"] == "CreateSnapshot":
        check_volume_limits(self, [volume_id])
    snap = _orig_create_snapshot(self, volume_id, description, owner_id, from_ami)
    made(self, snap, pending=True)
    LAST_SNAPSHOT[volume_id] = time.monotonic()
    return snap


_orig_delete_snapshot = EBSBackend.delete_snapshot


def delete_snapshot(self, snapshot_id):
    lock = held_lock(self, snapshot_id)
    if lock is not None:
        raise EC2ClientError(
            "SnapshotLocked",
            f"The snapshot {snapshot_id} is locked until {lock['expires'].isoformat()}Z and cannot be deleted.",
        )
    # moto only knows the one image a snapshot was made for.
    users = images_using(self, snapshot_id)
    if users:
        raise SnapshotInUse(snapshot_id, users[0])
    return _orig_delete_snapshot(self, snapshot_id)


def get_tags(self):
    # moto scans every tag of the region for each resource: minutes per
    # DescribeSnapshots with thousands of tagged snapshots.
    tags = self.ec2_backend.tags.get(self.id, {}) if self.id else {}
    return [{"resource_id": self.id, "key": k, "value": v} for k, v in tags.items()]




# Copies, as EC2 makes them and moto does not: CopyImage with
# TagSpecifications for the image and its snapshots and an idempotent
# ClientToken, new snapshots in the destination for the image's block
# devices, the placeholder VolumeId of every copied snapshot, copies that
# stay pending like new backups (pending_seconds), and EC2's limits on
# copies in flight per destination region (REAL "copy_limits", default
# {"image": 100, "snapshot": 20}: ResourceLimitExceeded beyond them).

PLACEHOLDER_VOLUME_ID = "vol-ffffffff"
COPY_TOKENS = {}
COPIES = {}


class PlaceholderVolume:
    """What a copied snapshot reports as its volume: no volume at all."""

    def __init__(self, size):
        self.id = PLACEHOLDER_VOLUME_ID
        self.size = size
        self.volume_type = "gp3"


def check_copy_limit(backend, kind):
    most = int((REAL.get("copy_limits") or {}).get(kind, 100 if kind == "image" else 20))
    in_flight = 0
    for rid, (where, what) in list(COPIES.items()):
        if where is not backend or what != kind:
            continue
        if kind == "image":
            resource = backend.amis.get(rid)
            pending = resource is not None and resource.state == "pending"
        else:
            resource = backend.snapshots.get(rid)
            pending = resource is not None and resource.status == "pending"
        if pending:
            in_flight += 1
        else:
            COPIES.pop(rid, None)
    if in_flight >= most:
        noun = "AMI copies" if kind == "image" else "snapshot copies"
        raise EC2ClientError(
            "ResourceLimitExceeded",
            f"You have reached the limit of {most} concurrent {noun} to {backend.region_name}.",
        )


def copied_snapshot(backend, source, description, kms_key_id=None):
    snap = Snapshot(
        backend,
        random_snapshot_id(),
        volume=PlaceholderVolume(getattr(source.volume, "size", 8)),
        description=description,
        encrypted=source.encrypted,
        kms_key_id=kms_key_id,
    )
    backend.snapshots[snap.id] = snap
    made(backend, snap, pending=True)
    COPIES[snap.id] = (backend, "snapshot")
    return snap


def shared_source(backend, kind, source_id, source_region):
    """The image or snapshot a copy reads: the copying account's own, or
    another account's that is shared with it (an image's launch permission
    and each of its snapshots' create-volume permission, as EC2 requires to
    copy a shared AMI). None when there is no such backup to copy."""
    me = backend.account_id
    own = ec2_backends[me][source_region]
    found = (own.amis if kind == "image" else own.snapshots).get(source_id)
    if found is not None:
        return found
    for account in list(ec2_backends.keys()):
        if account == me:
            continue
        other = ec2_backends[account][source_region]
        if kind == "snapshot":
            snap = other.snapshots.get(source_id)
            if snap is not None and me in snap.create_volume_permission_userids:
                return snap
            continue
        ami = other.amis.get(source_id)
        if ami is None or {"UserId": me} not in ami.launch_permissions:
            continue
        for _, snap in getattr(ami, "backupctl_mappings", []):
            if me not in snap.create_volume_permission_userids:
                raise EC2ClientError(
                    "InvalidSnapshot.NotFound",
                    f"The snapshot '{snap.id}' of image {source_id} is not shared with account {me}",
                )
        return ami
    return None


def copy_image(self):
    source_id = self._get_param("SourceImageId")
    source_region = self._get_param("SourceRegion")
    name = self._get_param("Name")
    token = self._get_param("ClientToken")
    kms_key_id = self._get_param("KmsKeyId")
    self.error_on_dryrun()
    backend = self.ec2_backend
    key = (backend.account_id, backend.region_name, token)
    if token and key in COPY_TOKENS:
        return ActionResult({"ImageId": COPY_TOKENS[key]})
    source = shared_source(backend, "image", source_id, source_region)
    if source is None:
        raise EC2ClientError("InvalidAMIID.NotFound", f"The image id '[{source_id}]' does not exist")
    if source.state != "available":
        raise EC2ClientError("IncorrectState", f"The image {source_id} is {source.state}, not available")
    for ami in backend.amis.values():
        if ami.name == name:
            raise DuplicateAmiName(name, ami.id)
    if not REQUEST["control"]:
        check_copy_limit(backend, "image")
    tags = self._parse_tag_specification()
    ami = Ami(
        backend,
        random_ami_id(),
        instance=None,
        source_ami=source,
        name=name,
        description=self._get_param("Description"),
    )
    backend.amis[ami.id] = ami
    backend.snapshots.pop(ami.ebs_snapshot.id, None)
    mappings = []
    for device, snap in getattr(source, "backupctl_mappings", []):
        description = f"Copied for DestinationAmi {ami.id} from SourceAmi {source_id} for SourceSnapshot {snap.id}"
        copy = copied_snapshot(backend, snap, description, kms_key_id)
        copy.add_tags(tags.get("snapshot", {}))
        mappings.append((device, copy))
    ami.backupctl_mappings = mappings
    ami.root_device_name = getattr(source, "root_device_name", None)
    ami.add_tags(tags.get("image", {}))
    made(backend, ami, pending=bool(mappings))
    COPIES[ami.id] = (backend, "image")
    if token:
        COPY_TOKENS[key] = ami.id
    return ActionResult({"ImageId": ami.id})


def copy_snapshot(self, source_snapshot_id, source_region, description, kms_key_id):
    source = shared_source(self, "snapshot", source_snapshot_id, source_region)
    if source is None:
        raise EC2ClientError(
            "InvalidSnapshot.NotFound", f"The snapshot '{source_snapshot_id}' does not exist."
        )
    if source.status != "completed":
        raise EC2ClientError(
            "IncorrectState", f"The snapshot '{source_snapshot_id}' is {source.status}, not completed"
        )
    if not REQUEST["control"]:
        check_copy_limit(self, "snapshot")
    return copied_snapshot(self, source, description, kms_key_id)




# Snapshot locks, which moto lacks: LockSnapshot (governance or compliance,
# a LockDuration in days or an ExpirationDate, a compliance cool-off),
# DescribeLockedSnapshots (paginated), and DeleteSnapshot refused while a
# lock holds (SnapshotLocked; DeregisterImage's DeleteAssociatedSnapshots
# reports client-error for such a snapshot and keeps it). Lock ends follow
# the emulator's clock.

LOCKS = {}


def parse_time(value):
    """A naive UTC time, from what moto parsed (a datetime) or a string."""
    if not isinstance(value, _dt.datetime):
        value = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return value


def lock_state(lock, now):
    if lock["expires"] <= now:
        return "expired"
    if lock["mode"] == "compliance" and lock.get("cool_off_ends") and lock["cool_off_ends"] > now:
        return "compliance-cooloff"
    return lock["mode"]


def held_lock(backend, snapshot_id):
    lock = LOCKS.get((backend.account_id, backend.region_name, snapshot_id))
    if lock is None or lock_state(lock, emulator_utcnow()) == "expired":
        return None
    return lock


def lock_snapshot(self):
    sid = self._get_param("SnapshotId")
    mode = self._get_param("LockMode")
    days = self._get_param("LockDuration")
    ends = self._get_param("ExpirationDate")
    cool_off = self._get_param("CoolOffPeriod")
    backend = self.ec2_backend
    snap = backend.snapshots.get(sid)
    if snap is None:
        raise EC2ClientError("InvalidSnapshot.NotFound", f"The snapshot '{sid}' does not exist.")
    if snap.status not in ("pending", "completed"):
        raise EC2ClientError("IncorrectState", f"The snapshot '{sid}' is {snap.status}.")
    if mode not in ("governance", "compliance"):
        raise EC2ClientError("InvalidParameterValue", f"Invalid lock mode: {mode}")
    if bool(days) == bool(ends):
        raise EC2ClientError(
            "InvalidParameterCombination", "Specify either LockDuration or ExpirationDate."
        )
    if cool_off and mode != "compliance":
        raise EC2ClientError("InvalidParameterCombination", "CoolOffPeriod is for compliance mode only.")
    now = emulator_utcnow()
    expires = now + _dt.timedelta(days=int(days)) if days else parse_time(ends)
    if expires <= now:
        raise EC2ClientError("InvalidParameterValue", "The expiration date must be in the future.")
    key = (backend.account_id, backend.region_name, sid)
    old = LOCKS.get(key)
    state = lock_state(old, now) if old else "expired"
    if state == "compliance":
        if mode != "compliance" or expires < old["expires"] or cool_off:
            raise EC2ClientError(
                "SnapshotLocked",
                f"The snapshot {sid} is locked in compliance mode: its lock can only be extended.",
            )
    lock = {
        "mode": mode,
        "expires": expires,
        "created": now,
        "cool_off": int(cool_off) if cool_off else None,
        "cool_off_ends": now + _dt.timedelta(hours=int(cool_off)) if cool_off else None,
    }
    if state == "compliance-cooloff" and not cool_off:
        lock["cool_off_ends"] = None
    LOCKS[key] = lock
    return ActionResult(dict(locked_info(backend, sid, lock, now)))


def dump_lock(backend, sid):
    lock = LOCKS.get((backend.account_id, backend.region_name, sid))
    if lock is None:
        return None
    now = emulator_utcnow()
    return {"state": lock_state(lock, now), "expires_at": lock["expires"].isoformat() + "Z", "mode": lock["mode"]}


def locked_info(backend, sid, lock, now):
    info = {
        "OwnerId": backend.account_id,
        "SnapshotId": sid,
        "LockState": lock_state(lock, now),
        "LockCreatedOn": lock["created"],
        "LockDurationStartTime": lock["created"],
        "LockExpiresOn": lock["expires"],
        "LockDuration": max(1, round((lock["expires"] - lock["created"]).total_seconds() / 86400)),
    }
    if lock.get("cool_off"):
        info["CoolOffPeriod"] = lock["cool_off"]
        info["CoolOffPeriodExpiresOn"] = lock["cool_off_ends"]
    return info


def describe_locked_snapshots(self):
    backend = self.ec2_backend
    wanted = set(self._get_param("SnapshotIds", []) or [])
    now = emulator_utcnow()
    found = [
        locked_info(backend, sid, lock, now)
        for (account, region, sid), lock in sorted(LOCKS.items(), key=lambda kv: kv[0])
        if account == backend.account_id
        and region == backend.region_name
        and sid in backend.snapshots
        and (not wanted or sid in wanted)
    ]
    return ActionResult({"Snapshots": found})


# AMI deregistration protection, which moto lacks:
# Enable/DisableImageDeregistrationProtection, each image's
# DeregistrationProtection in DescribeImages in EC2's words ("disabled",
# "enabled-without-cooldown", "enabled-with-cooldown", and "disabled after
# <time>" while the 24-hour cooldown of a protection disabled runs, on the
# emulator's clock), and DeregisterImage refused while it holds.

PROTECTION = {}
COOLDOWN_HOURS = 24


def protection_words(backend, ami_id):
    p = PROTECTION.get((backend.account_id, backend.region_name, ami_id))
    if p is None:
        return "disabled"
    if p["disabled_at"] is None:
        return "enabled-with-cooldown" if p["cooldown"] else "enabled-without-cooldown"
    ends = p["disabled_at"] + _dt.timedelta(hours=COOLDOWN_HOURS)
    if not p["cooldown"] or ends <= emulator_utcnow():
        return "disabled"
    return "disabled after " + ends.isoformat(timespec="milliseconds") + "Z"


def protected_image(self, ami_id):
    if ami_id not in self.ec2_backend.amis:
        raise EC2ClientError("InvalidAMIID.NotFound", f"The image id '[{ami_id}]' does not exist")
    return (self.ec2_backend.account_id, self.ec2_backend.region_name, ami_id)


def enable_image_deregistration_protection(self):
    key = protected_image(self, self._get_param("ImageId"))
    cooldown = str(self._get_param("WithCooldown", False)).lower() == "true"
    PROTECTION[key] = {"cooldown": cooldown, "disabled_at": None}
    return ActionResult({"Return": "true"})


def disable_image_deregistration_protection(self):
    key = protected_image(self, self._get_param("ImageId"))
    p = PROTECTION.get(key)
    if p is not None and p["disabled_at"] is None:
        p["disabled_at"] = emulator_utcnow()
    return ActionResult({"Return": "true"})


def image_protection(self):
    return protection_words(self.ec2_backend, self.id)


# The Recycle Bin (rbin), which moto lacks: ListRules and GetRule of the
# retention rules a test sets with /_backupctl/rbin_rules, per account and
# region, in the service's own REST-JSON shape.

RBIN_RULES = {}


def rbin_action(request):
    if request.path == "/list-rules":
        return "ListRules"
    if request.path.startswith("/rules/"):
        return "GetRule"
    return "UnknownRbinCall"


def rbin_answer(request, action, account, region):
    rules = RBIN_RULES.get((account, region), [])
    if action == "ListRules":
        body = json.loads(request.get_data() or b"{}")
        found = [
            {
                "Identifier": r["Identifier"],
                "RetentionPeriod": r["RetentionPeriod"],
                "LockState": "unlocked",
                "RuleArn": f"arn:aws:rbin:{region}:{account}:rule/{r['Identifier']}",
            }
            for r in rules
            if r["ResourceType"] == body.get("ResourceType")
        ]
        return Response(json.dumps({"Rules": found}), status=200, content_type="application/json")
    if action == "GetRule":
        wanted = urllib.parse.unquote(request.path[len("/rules/"):])
        for r in rules:
            if r["Identifier"] == wanted:
                return Response(json.dumps(r), status=200, content_type="application/json")
        body = json.dumps({"Message": f"Rule {wanted} not found", "Reason": "RULE_NOT_FOUND"})
        return Response(
            body,
            status=404,
            content_type="application/json",
            headers={"x-amzn-ErrorType": "ResourceNotFoundException"},
        )
    return json_error(400, "UnknownOperationException", request.path)


# -------------------------------------------------------------- REAL EC2
#
# Behaviours of real EC2 that moto lacks, off until a test switches them on
# with /_backupctl/ec2 (except hiding disabled AMIs, which is always on, as
# in EC2):
#
# - per_volume_rate_seconds: a volume takes one snapshot per that many real
#   seconds (EC2: about 15 s, SnapshotCreationPerVolumeRateExceeded);
# - per_volume_pending: at most that many pending snapshots per volume, 1
#   for st1 and sc1 volumes (EC2: 5 and 1, ConcurrentSnapshotLimitExceeded);
# - pending_seconds: new snapshots stay pending (and their images too) for
#   that many seconds of emulator clock (EC2: minutes to hours);
# - describe_delay_seconds: DescribeImages and DescribeSnapshots do not show
#   an image or snapshot for that many real seconds after it was made
#   (EC2's eventual consistency);
# - keep_associated_snapshots: DeregisterImage deletes none of the image's
#   snapshots, whatever DeleteAssociatedSnapshots says (as when EC2 cannot
#   delete them);
# - DescribeImages hides disabled AMIs unless IncludeDisabled=true.

REAL = {}
# The call being served (calls into moto are serialized): its action and
# parameters, and whether it comes from the emulator's own control client.
REQUEST = {"action": None, "params": {}, "control": False}
LAST_SNAPSHOT = {}
VISIBLE_AT = {}
PENDING = {}


# Token buckets of EC2's request throttling, per (region, action):
# [tokens, monotonic time of the last refill].
BUCKETS = {}
LATENCY_RNG = [random.Random(0)]


def take_token(region, action):
    """False when the action's bucket (REAL["buckets"]: {action: [burst,
    per_second, tokens at the start (default: burst)]}) is empty: EC2
    refuses with RequestLimitExceeded. A bucket that starts empty is one
    another client of the account just spent."""
    spec = (REAL.get("buckets") or {}).get(action)
    if not spec:
        return True
    burst, per_second = float(spec[0]), float(spec[1])
    start = float(spec[2]) if len(spec) > 2 else burst
    now = time.monotonic()
    tokens, at = BUCKETS.get((region, action), (start, now))
    tokens = min(burst, tokens + (now - at) * per_second)
    if tokens < 1:
        BUCKETS[(region, action)] = (tokens, now)
        return False
    BUCKETS[(region, action)] = (tokens - 1, now)
    return True


def real_latency(action):
    """Seconds this call takes on real EC2 (REAL["latency"]: {"describe":
    [lo, hi], "mutating": [lo, hi], "seed": N}); calls overlap."""
    spec = REAL.get("latency")
    if not spec:
        return 0
    lo, hi = spec.get("mutating" if action.startswith(MUTATING_PREFIXES) else "describe", [0, 0])
    return LATENCY_RNG[0].uniform(float(lo), float(hi))


def real(key, default=0):
    return float(REAL.get(key, default) or 0)


def check_volume_limits(backend, volume_ids):
    if REQUEST["control"]:
        return
    rate = real("per_volume_rate_seconds")
    now = time.monotonic()
    for vid in volume_ids:
        if rate and now - LAST_SNAPSHOT.get(vid, -1e9) < rate:
            raise EC2ClientError(
                "SnapshotCreationPerVolumeRateExceeded",
                f"The maximum per volume CreateSnapshot request rate has been exceeded for {vid}. "
                "Use an increasing or variable sleep interval between requests.",
            )
    limit = real("per_volume_pending")
    if not limit:
        return
    for vid in volume_ids:
        volume = backend.get_volume(vid)
        most = 1 if volume.volume_type in ("st1", "sc1") else int(limit)
        pending = [s for s in backend.snapshots.values() if s.volume.id == vid and s.status == "pending"]
        if len(pending) >= most:
            raise EC2ClientError(
                "ConcurrentSnapshotLimitExceeded",
                f"Maximum number of concurrent snapshots ({most}) for volume {vid} exceeded",
            )


def made(backend, resource, pending):
    """Records a new image or snapshot for the switched-on behaviours."""
    if REQUEST["control"]:
        return
    delay = real("describe_delay_seconds")
    if delay:
        VISIBLE_AT[resource.id] = time.monotonic() + delay
    seconds = real("pending_seconds")
    if pending and seconds:
        if resource.id.startswith("ami-"):
            resource.state = "pending"
        else:
            resource.status = "pending"
        PENDING[resource.id] = (backend, emulator_utcnow() + _dt.timedelta(seconds=seconds))


def settle():
    """Completes what has been pending long enough (emulator clock)."""
    now = emulator_utcnow()
    for rid, (backend, due) in list(PENDING.items()):
        if rid.startswith("ami-"):
            ami = backend.amis.get(rid)
            if ami is None or ami.state != "pending":
                PENDING.pop(rid)
            elif all(
                backend.snapshots.get(sid) is None or backend.snapshots[sid].status != "pending"
                for sid in ami_snapshots(ami)
            ):
                ami.state = "available"
                PENDING.pop(rid)
        elif due <= now:
            snap = backend.snapshots.get(rid)
            if snap is not None and snap.status == "pending":
                snap.status = "completed"
            PENDING.pop(rid)


def visible(resource):
    return REQUEST["control"] or VISIBLE_AT.get(resource.id, 0) <= time.monotonic()


_orig_describe_images = AmiBackend.describe_images


def describe_images(self, ami_ids=None, filters=None, exec_users=None, owners=None):
    images = _orig_describe_images(self, ami_ids, filters, exec_users, owners)
    include_disabled = str(REQUEST["params"].get("IncludeDisabled", "")).lower() == "true"
    return [
        a
        for a in images
        if visible(a) and (a.state != "disabled" or include_disabled or REQUEST["control"])
    ]


_orig_describe_snapshots = EBSBackend.describe_snapshots


def describe_snapshots(self, snapshot_ids=None, filters=None):
    return [s for s in _orig_describe_snapshots(self, snapshot_ids, filters) if visible(s)]


ENABLED_REGIONS = None
_orig_describe_regions = RegionsAndZonesBackend.describe_regions


def describe_regions(self, region_names=None):
    regions = _orig_describe_regions(self, region_names)
    if ENABLED_REGIONS is None:
        return regions
    return [r for r in regions if r.name in ENABLED_REGIONS]


# The emulator's clock: the creation times it records (CreationDate,
# StartTime) follow a settable offset from the real clock, so tests that
# simulate days of runs with BACKUPCTL_NOW see EC2's own times move with
# them, and a lag models a run whose calls land minutes after its start.
import datetime as _dt  # noqa: E402
import moto.ec2.models.amis as _amis_module  # noqa: E402
import moto.ec2.models.elastic_block_store as _ebs_module  # noqa: E402
from moto.core.utils import utcnow as _real_utcnow  # noqa: E402

CLOCK_OFFSET = [_dt.timedelta(0)]


def emulator_utcnow():
    return _real_utcnow() + CLOCK_OFFSET[0]


_amis_module.utcnow = emulator_utcnow
_ebs_module.utcnow = emulator_utcnow

# Pagination, as EC2 does it (moto answers every match in one response):
# with MaxResults, a Describe call answers that many and a NextToken for
# the rest. The matches are computed once, at the first page (moto filters
# every resource for each call, which at 100,000 snapshots takes seconds),
# and later pages are cut from them.
PAGES = {}
PAGE_TOKENS = iter(range(1, 1 << 62))


def paginated(method, key):
    def describe(self):
        token = self._get_param("NextToken")
        size = self._get_param("MaxResults")
        if token:
            with STATE.lock:
                rest = PAGES.pop(token, None)
            if rest is None:
                raise EC2ClientError("InvalidParameterValue", f"The pagination token {token} is invalid.")
        else:
            result = method(self)
            if not size:
                return result
            rest = list(result.result[key])
        page, rest = rest[: int(size)], rest[int(size):]
        answer = {key: page}
        if rest:
            with STATE.lock:
                answer["NextToken"] = f"page-{next(PAGE_TOKENS)}"
                PAGES[answer["NextToken"]] = rest
        return ActionResult(answer)

    return describe


from moto.ec2.responses.elastic_block_store import ElasticBlockStore  # noqa: E402

ElasticBlockStore.describe_snapshots = paginated(ElasticBlockStore.describe_snapshots, "Snapshots")
ElasticBlockStore.describe_volumes = paginated(ElasticBlockStore.describe_volumes, "Volumes")
ElasticBlockStore.lock_snapshot = lock_snapshot
ElasticBlockStore.describe_locked_snapshots = paginated(describe_locked_snapshots, "Snapshots")
AmisResponse.describe_images = paginated(AmisResponse.describe_images, "Images")
AmiBackend.create_image = create_image
Ami.block_device_mappings = property(block_device_mappings)
AmisResponse.deregister_image = deregister_image
AmisResponse.copy_image = copy_image
AmisResponse.enable_image_deregistration_protection = enable_image_deregistration_protection
AmisResponse.disable_image_deregistration_protection = disable_image_deregistration_protection
Ami.deregistration_protection = property(image_protection)
EBSBackend.copy_snapshot = copy_snapshot
EBSBackend.create_snapshots = create_snapshots
EBSBackend.delete_snapshot = delete_snapshot
EBSBackend.create_snapshot = create_snapshot
EBSBackend.describe_snapshots = describe_snapshots
AmiBackend.describe_images = describe_images
TaggedEC2Resource.get_tags = get_tags
RegionsAndZonesBackend.describe_regions = describe_regions


# ------------------------------------------------------------- THE SERVER


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.calls = {}
        # The same calls by the caller's account, then action.
        self.account_calls = {}
        self.keys = set()
        self.requests = []
        self.faults_injected = {}
        self.faults = {}
        self.rng = random.Random(0)
        self.imds = None
        # The most EC2 calls answered at once, per region (the calls being
        # answered now, `IN_FLIGHT`, survive a reset: some are).
        self.max_in_flight = {}


STATE = State()
IN_FLIGHT = {}

# Role sessions that expire (ctl "sessions": {"seconds": N}): AssumeRole
# answers with sessions of N seconds of real time, and EC2 refuses a call
# signed with one after that, as STS and EC2 do. Access key -> expiry.
SESSIONS = {"seconds": 0, "expires": {}}


def access_key_of(environ):
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker in auth:
        return auth.split(marker, 1)[1].split("/", 1)[0]
    return None


def account_of(access_key):
    """The account moto acts in for a caller: an assumed role's keys belong
    to the role's account, any other key to the default one."""
    if not access_key:
        return ACCOUNT
    from moto.iam.models import get_account_id_from

    return get_account_id_from(access_key)


def credential_scope(environ):
    """The signature's scope: key, date, region, service, aws4_request."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker not in auth:
        return []
    return auth.split(marker, 1)[1].split(",", 1)[0].split("/")


def region_of(environ):
    scope = credential_scope(environ)
    return scope[2] if len(scope) >= 3 else "unknown"


def service_of(environ):
    scope = credential_scope(environ)
    return scope[3] if len(scope) >= 4 else "unknown"


def params_of(environ):
    """Reads the EC2 query parameters from the body and puts the body back."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    params = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    params.update(urllib.parse.parse_qs(environ.get("QUERY_STRING", "")))
    return {k: v[0] for k, v in params.items()}


MUTATING_PREFIXES = ("Create", "Delete", "Deregister", "Register", "Copy", "Modify")


def ec2_error(status, code, message):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>backupctl-emulator</RequestID></Response>"
    )
    return Response(body, status=status, content_type="text/xml")


def json_error(status, code, message):
    """An error of a JSON service (Organizations), in its own shape."""
    body = json.dumps({"__type": code, "message": message})
    return Response(body, status=status, content_type="application/x-amz-json-1.1")


def sts_error(status, code, message):
    """An STS error, in STS's own shape (not EC2's)."""
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>backupctl-emulator</RequestId></ErrorResponse>"
    )
    return Response(body, status=status, content_type="text/xml")


def bump(table, region, action):
    table.setdefault(region, {}).setdefault(action, 0)
    table[region][action] += 1


def choose_fault(region, action, params, account=ACCOUNT):
    """Decides, under the lock, what happens to one EC2 (or STS) call;
    `account` is the caller's (a deny entry's "account" limits it)."""
    f = STATE.faults
    if not f:
        return None
    only = f.get("actions")
    for deny in f.get("deny", []):
        if (
            deny.get("region") in (region, "*")
            and deny.get("account", account) == account
            and (action in deny.get("actions", ["*"]) or "*" in deny.get("actions", ["*"]))
            and (not deny.get("ids") or set(deny["ids"]) & set(params.values()))
            and deny.get("times", 1) > 0
        ):
            # "times": N denies only the next N matching calls.
            if "times" in deny:
                deny["times"] -= 1
            return ("deny", deny)
    if only and action not in only:
        return None
    roll = STATE.rng.random()
    kinds = ("throttle", "server_error", "reset", "hang", "latency", "garbage", "lost", "lost_500", "lost_hang")
    for kind in kinds:
        p = float(f.get(kind, 0))
        if roll < p:
            return (kind, f.get(f"{kind}_seconds"))
        roll -= p
    return None


def drop_connection(environ):
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        import socket as _socket

        sock.shutdown(_socket.SHUT_RDWR)
        sock.close()


MOTO_LOCK = threading.Lock()


def imds(request):
    if STATE.imds is None:
        return Response("no instance metadata configured", status=404)
    path = request.path
    if path == "/latest/api/token" and request.method == "PUT":
        ttl = request.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "21600")
        return Response(
            "backupctl-imds-token",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl},
            content_type="text/plain",
        )
    if request.headers.get("X-aws-ec2-metadata-token") != "backupctl-imds-token":
        return Response("", status=401)
    doc = {
        "instanceId": STATE.imds["instance_id"],
        "region": STATE.imds["region"],
        "accountId": ACCOUNT,
        "availabilityZone": STATE.imds["region"] + "a",
    }
    values = {
        "/latest/meta-data/instance-id": doc["instanceId"],
        "/latest/meta-data/placement/region": doc["region"],
        "/latest/meta-data/placement/availability-zone": doc["availabilityZone"],
        "/latest/dynamic/instance-identity/document": json.dumps(doc),
    }
    if path in values:
        return Response(values[path], content_type="text/plain")
    return Response("", status=404)


class Emulator:
    def __init__(self):
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.port = None

    def client(self, region, account=ACCOUNT, service="ec2"):
        c = boto3.client(
            service,
            region_name=region,
            endpoint_url=f"http://127.0.0.1:{self.port}",
            config=Config(retries={"max_attempts": 1}),
        )

        def mark(request, **_):
            request.headers.add_header(CONTROL_HEADER, "1")
            # moto keeps one EC2 per account; this header picks it.
            request.headers.add_header("x-moto-account-id", account)

        c.meta.events.register(f"before-sign.{service}.*", mark)
        return c

    def __call__(self, environ, start_response):
        region = region_of(environ)
        with STATE.lock:
            n = IN_FLIGHT.get(region, 0) + 1
            IN_FLIGHT[region] = n
            STATE.max_in_flight[region] = max(n, STATE.max_in_flight.get(region, 0))
        try:
            return self.answer(environ, start_response)
        finally:
            with STATE.lock:
                IN_FLIGHT[region] -= 1

    def answer(self, environ, start_response):
        request = Request(environ)
        if request.path.startswith("/latest/"):
            return imds(request)(environ, start_response)
        if request.path.startswith("/_backupctl/"):
            return self.control(request)(environ, start_response)
        region = region_of(environ)
        params = params_of(environ)
        rbin = service_of(environ) == "rbin"
        if environ.get("HTTP_" + CONTROL_HEADER.upper().replace("-", "_")):
            return self.call_moto(environ, start_response, params, control=True)
        # JSON services (Organizations) name the call in a header.
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        action = target.rsplit(".", 1)[-1] if target else params.get("Action", "unknown")
        if rbin:
            action, target = rbin_action(request), "rbin"
        expires = SESSIONS["expires"].get(access_key_of(environ))
        if expires is not None and time.time() > expires:
            with STATE.lock:
                bump(STATE.faults_injected, region, f"{action}:expired")
            return ec2_error(400, "ExpiredToken", "The security token included in the request is expired")(
                environ, start_response
            )
        if action == "AssumeRole" and SESSIONS["seconds"]:
            with STATE.lock:
                bump(STATE.calls, region, action)
                bump(STATE.account_calls, account_of(access_key_of(environ)), action)
            return self.short_session(environ, start_response)
        with STATE.lock:
            bump(STATE.calls, region, action)
            key = access_key_of(environ)
            if key:
                STATE.keys.add(key)
            if action.startswith(MUTATING_PREFIXES):
                STATE.requests.append({"region": region, "params": params})
            account = account_of(key)
            bump(STATE.account_calls, account, action)
            fault = choose_fault(region, action, params, account)
            if not fault and not take_token(region, action):
                fault = ("bucket", None)
            if fault:
                bump(STATE.faults_injected, region, f"{action}:{fault[0]}")
            latency = real_latency(action)
        if latency:
            time.sleep(latency)
        if fault:
            kind, seconds = fault
            if kind == "deny" and action == "AssumeRole":
                return sts_error(
                    int(seconds.get("status", 403)),
                    seconds.get("code", "AccessDenied"),
                    seconds.get(
                        "message",
                        f"User is not authorized to perform: sts:AssumeRole on resource: {params.get('RoleArn')}",
                    ),
                )(environ, start_response)
            if kind == "deny" and target:
                return json_error(
                    int(seconds.get("status", 400)),
                    seconds.get("code", "AccessDeniedException"),
                    seconds.get("message", f"You don't have permissions to access this resource ({action})."),
                )(environ, start_response)
            if kind == "deny":
                # {"code", "status", "message"} of a deny entry answer in
                # place of UnauthorizedOperation.
                return ec2_error(
                    int(seconds.get("status", 403)),
                    seconds.get("code", "UnauthorizedOperation"),
                    seconds.get(
                        "message",
                        f"You are not authorized to perform this operation ({action} in {region}).",
                    ),
                )(environ, start_response)
            if kind in ("throttle", "bucket"):
                return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.")(
                    environ, start_response
                )
            if kind == "server_error":
                return ec2_error(500, "InternalError", "An internal error has occurred.")(
                    environ, start_response
                )
            if kind == "reset":
                drop_connection(environ)
                return []
            if kind == "garbage":
                # Something that is not EC2 answers (a proxy's error page).
                return Response("<html>Bad gateway</html>", status=200, content_type="text/html")(
                    environ, start_response
                )
            if kind == "hang":
                time.sleep(float(seconds or 600))
            if kind == "latency":
                time.sleep(float(seconds or 2))
            if kind.startswith("lost"):
                # The call succeeds in EC2; its answer never arrives (the
                # Recycle Bin's reads change nothing).
                if not rbin:
                    self.call_moto(environ, lambda *a: None, params)
                if kind == "lost":
                    drop_connection(environ)
                    return []
                if kind == "lost_500":
                    return ec2_error(500, "InternalError", "An internal error has occurred.")(
                        environ, start_response
                    )
                time.sleep(float(seconds or 600))
                return []
        if rbin:
            return rbin_answer(request, action, account_of(access_key_of(environ)), region)(
                environ, start_response
            )
        return self.call_moto(environ, start_response, params)

    def call_moto(self, environ, start_response, params, control=False):
        """One call into moto, alone: its models are not safe under
        concurrent requests (a dictionary changed size during iteration)."""
        captured = []

        def capture(status, headers, exc_info=None):
            captured.append((status, headers))
            return lambda data: None

        with MOTO_LOCK:
            settle()
            REQUEST.update(action=params.get("Action"), params=params, control=control)
            try:
                body = b"".join(self.moto(environ, capture))
            finally:
                REQUEST.update(action=None, params={}, control=False)
        status, headers = captured[0]
        start_response(status, headers)
        return [body]

    def short_session(self, environ, start_response):
        """An AssumeRole whose session lasts SESSIONS["seconds"]."""
        captured = []

        def capture(status, headers, exc_info=None):
            captured.append((status, headers))
            return lambda data: None

        with MOTO_LOCK:
            body = b"".join(self.moto(environ, capture)).decode()
        status, headers = captured[0]
        expires = time.time() + SESSIONS["seconds"]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        body = re.sub(r"<Expiration>[^<]*</Expiration>", f"<Expiration>{stamp}</Expiration>", body)
        key = re.search(r"<AccessKeyId>([^<]*)</AccessKeyId>", body)
        if key:
            SESSIONS["expires"][key.group(1)] = expires
        data = body.encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(data))))
        start_response(status, headers)
        return [data]

    # ------------------------------------------------------------ control

    def ctl_sessions(self, body):
        SESSIONS["seconds"] = float(body.get("seconds") or 0)
        return {"ok": True}

    def control(self, request):
        name = request.path[len("/_backupctl/") :]
        body = request.get_json(silent=True) or {}
        handler = getattr(self, "ctl_" + name.replace("-", "_"), None)
        if handler is None:
            return Response(f"unknown control endpoint {name}", status=404)
        try:
            if name in ("seed", "organization"):
                result = handler(body)
            else:
                with MOTO_LOCK:
                    settle()
                    REQUEST.update(control=True)
                    try:
                        result = handler(body)
                    finally:
                        REQUEST.update(control=False)
        except Exception as e:  # reported to the test, which fails with it
            return Response(f"{type(e).__name__}: {e}", status=500)
        return Response(json.dumps(result), content_type="application/json")

    def ctl_ping(self, _):
        return {"ok": True}

    def ctl_reset(self, _):
        global ENABLED_REGIONS
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
        with STATE.lock:
            STATE.reset()
        ENABLED_REGIONS = None
        REAL.clear()
        for table in (
            LAST_SNAPSHOT,
            VISIBLE_AT,
            PENDING,
            COPY_TOKENS,
            COPIES,
            LOCKS,
            PROTECTION,
            RBIN_RULES,
        ):
            table.clear()
        return {"ok": True}

    def ctl_clock(self, body):
        """{"now": RFC 3339 or null (the real clock), "lag_seconds": N}:
        from now on, new images and snapshots are stamped with that clock
        (advancing in real time) plus the lag."""
        lag = _dt.timedelta(seconds=float(body.get("lag_seconds", 0)))
        offset = _dt.timedelta(0)
        if body.get("now"):
            wanted = _dt.datetime.fromisoformat(body["now"].replace("Z", "+00:00"))
            wanted = wanted.astimezone(_dt.timezone.utc).replace(tzinfo=None)
            offset = wanted - _real_utcnow()
        CLOCK_OFFSET[0] = offset + lag
        return {"now": emulator_utcnow().isoformat() + "Z"}

    def ctl_calls(self, _):
        with STATE.lock:
            return {
                "calls": STATE.calls,
                "by_account": STATE.account_calls,
                "faults": STATE.faults_injected,
                "access_keys": sorted(STATE.keys),
                "max_in_flight": STATE.max_in_flight,
            }

    def ctl_reset_calls(self, _):
        with STATE.lock:
            STATE.calls = {}
            STATE.account_calls = {}
            STATE.keys = set()
            STATE.faults_injected = {}
            STATE.requests = []
            STATE.max_in_flight = {}
        return {"ok": True}

    def ctl_requests(self, _):
        """Every mutating call received (including faulted attempts), with
        its query parameters."""
        with STATE.lock:
            return {"requests": list(STATE.requests)}

    def ctl_dump(self, body):
        """The ground truth of a region, straight from moto's models."""
        backend = ec2_backends[body.get("account", ACCOUNT)][body["region"]]

        def tags(rid):
            return dict(backend.tags.get(rid, {}))

        return {
            "images": [
                {
                    "id": a.id,
                    "name": a.name,
                    "state": a.state,
                    "tags": tags(a.id),
                    "snapshot_ids": ami_snapshots(a),
                    "deregistration_protection": protection_words(backend, a.id),
                    "shared_with": sorted(p["UserId"] for p in a.launch_permissions if "UserId" in p),
                }
                for a in backend.amis.values()
            ],
            "snapshots": [
                {
                    "id": sn.id,
                    "volume_id": sn.volume.id,
                    "state": sn.status,
                    "tags": tags(sn.id),
                    "lock": dump_lock(backend, sn.id),
                    "shared_with": sorted(sn.create_volume_permission_userids),
                }
                for sn in backend.snapshots.values()
            ],
        }

    def ctl_rbin_rules(self, body):
        """{"region", "account"?, "rules": [{"id", "resource_type":
        "EBS_SNAPSHOT" | "EC2_IMAGE", "days", "tags": {k: v or ""},
        "exclude_tags": {...}, "status"?}]}: the region's retention rules."""
        account = body.get("account", ACCOUNT)

        def pairs(tags):
            return [{"ResourceTagKey": k, "ResourceTagValue": v} for k, v in (tags or {}).items()]

        RBIN_RULES[(account, body["region"])] = [
            {
                "Identifier": r["id"],
                "Description": "",
                "ResourceType": r["resource_type"],
                "RetentionPeriod": {"RetentionPeriodValue": r["days"], "RetentionPeriodUnit": "DAYS"},
                "ResourceTags": pairs(r.get("tags")),
                "ExcludeResourceTags": pairs(r.get("exclude_tags")),
                "Status": r.get("status", "available"),
                "LockState": "unlocked",
            }
            for r in body["rules"]
        ]
        return {"ok": True}

    def ctl_protect(self, body):
        """{"region", "image_id", "cooldown"}: deregistration protection set
        by hand, as someone with the console would."""
        backend = ec2_backends[body.get("account", ACCOUNT)][body["region"]]
        key = (backend.account_id, backend.region_name, body["image_id"])
        PROTECTION[key] = {"cooldown": bool(body.get("cooldown")), "disabled_at": None}
        return {"ok": True}

    def ctl_faults(self, body):
        with STATE.lock:
            STATE.faults = body
            STATE.rng = random.Random(body.get("seed", 0))
        return {"ok": True}

    def ctl_ec2(self, body):
        """Switches real EC2 behaviours on (see REAL EC2): {"per_volume_rate_seconds": 15,
        "per_volume_pending": 5, "pending_seconds": 600, "describe_delay_seconds": 5,
        "buckets": {"CreateSnapshots": [50, 5]}, "latency": {"describe": [0.15, 0.3],
        "mutating": [0.1, 0.2], "seed": 1}};
        {} switches them off."""
        REAL.clear()
        REAL.update(body)
        BUCKETS.clear()
        LATENCY_RNG[0] = random.Random((body.get("latency") or {}).get("seed", 0))
        if not real("describe_delay_seconds"):
            VISIBLE_AT.clear()
        return {"ok": True}

    def ctl_regions(self, body):
        global ENABLED_REGIONS
        ENABLED_REGIONS = set(body["regions"]) if body.get("regions") is not None else None
        return {"ok": True}

    def ctl_imds(self, body):
        STATE.imds = body
        return {"ok": True}

    def ctl_set_state(self, body):
        """Sets an image's or snapshot's state (moto never has pending ones)."""
        backend = ec2_backends[body.get("account", ACCOUNT)][body["region"]]
        rid, state = body["id"], body["state"]
        if rid.startswith("ami-"):
            backend.amis[rid].state = state
        else:
            backend.snapshots[rid].status = state
        return {"ok": True}

    def ctl_tag(self, body):
        """Adds or changes tags on any resource, as someone else might."""
        backend = ec2_backends[body.get("account", ACCOUNT)][body["region"]]
        backend.create_tags([body["id"]], body["tags"])
        return {"ok": True}

    def ctl_register_image(self, body):
        """An image registered from existing snapshots (e.g. a restore)."""
        backend = ec2_backends[body.get("account", ACCOUNT)][body["region"]]
        ami = backend.register_image(name=body["name"], description="registered by a test")
        backend.snapshots.pop(ami.ebs_snapshot.id, None)
        ami.backupctl_mappings = [
            (f"/dev/sd{chr(ord('a') + i)}", backend.snapshots[sid])
            for i, sid in enumerate(body["snapshot_ids"])
        ]
        if body.get("tags"):
            ami.add_tags(body["tags"])
        return {"id": ami.id}

    def ctl_bulk_backups(self, body):
        """Backups of every instance of a region, made in moto directly (the
        benchmark's 100,000 snapshots would take an hour through the API):
        {"region": R, "now": RFC 3339, "images": A, "sets": S,
         "image_policy": "web", "set_policy": "db"}: per instance, A
        images, one a day back from `now` (each with its root snapshot), and
        S one-snapshot sets of its first data volume, one a day; tagged as
        backupctl tags them."""
        backend = ec2_backends[body.get("account", ACCOUNT)][body["region"]]
        now = _dt.datetime.fromisoformat(body["now"].replace("Z", "+00:00"))
        now = now.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        counts = {"images": 0, "snapshots": 0}
        instances = [i for r in backend.reservations.values() for i in r.instances]
        for inst in instances:
            devices = sorted(inst.block_device_mapping.items())
            data = [d.volume_id for name, d in devices if name != inst.root_device_name]
            for k in range(int(body.get("images", 0))):
                at = now - _dt.timedelta(days=k + 1)
                stamp = at.strftime("%Y%m%dT%H%MZ")
                tags = {
                    "backupctl:policy": body["image_policy"],
                    "backupctl:source": inst.id,
                    "backupctl:created-at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "Name": f'{body["image_policy"]}-{inst.id}-{stamp}',
                }
                ami = backend.create_image(inst.id, tags["Name"], "", [])
                ami.creation_date = at
                ami.ebs_snapshot.start_time = at
                for key, value in tags.items():
                    ami.add_tag(key, value)
                backend.create_tags([ami.ebs_snapshot.id], tags)
                counts["images"] += 1
                counts["snapshots"] += 1
            for k in range(int(body.get("sets", 0)) if data else 0):
                at = now - _dt.timedelta(days=k + 1)
                stamp = at.strftime("%Y%m%dT%H%MZ")
                snap = backend.create_snapshot(data[0], "bulk")
                snap.start_time = at
                snap.status = "completed"
                backend.create_tags(
                    [snap.id],
                    {
                        "backupctl:policy": body["set_policy"],
                        "backupctl:source": inst.id,
                        "backupctl:created-at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "backupctl:set": f'{body["set_policy"]}-{inst.id}-{stamp}',
                        "Name": f'{body["set_policy"]}-{inst.id}-{stamp}',
                    },
                )
                counts["snapshots"] += 1
        return counts

    def ctl_organization(self, body):
        """Builds an AWS Organization in the default account, for discovery
        tests: {"accounts": [{"name": N, "tags": {...}, "closed": bool}],
        "ous": [{"name": N, "accounts": [...], "ous": [...]}]} under the
        root, or under "parent" (an OU id) once the organization exists;
        "close": [account ids] closes accounts. Returns {"root",
        "management", "ous": {"A/B": id}, "accounts": {name: id}}."""
        org = self.client("us-east-1", ACCOUNT, "organizations")
        try:
            org.create_organization(FeatureSet="ALL")
        except org.exceptions.AlreadyInOrganizationException:
            pass
        root = org.list_roots()["Roots"][0]["Id"]
        out = {"root": root, "management": ACCOUNT, "ous": {}, "accounts": {}}
        for account_id in body.get("close", []):
            org.close_account(AccountId=account_id)

        def place(node, parent, path):
            for a in node.get("accounts", []):
                made = org.create_account(Email=f"{a['name']}@example.com", AccountName=a["name"])
                account_id = made["CreateAccountStatus"]["AccountId"]
                if parent != root:
                    org.move_account(AccountId=account_id, SourceParentId=root, DestinationParentId=parent)
                if a.get("tags"):
                    org.tag_resource(ResourceId=account_id, Tags=tagl(a["tags"]))
                if a.get("closed"):
                    org.close_account(AccountId=account_id)
                out["accounts"][a["name"]] = account_id
            for ou in node.get("ous", []):
                name = f"{path}/{ou['name']}" if path else ou["name"]
                made = org.create_organizational_unit(ParentId=parent, Name=ou["name"])
                out["ous"][name] = made["OrganizationalUnit"]["Id"]
                place(ou, made["OrganizationalUnit"]["Id"], name)

        place(body, body.get("parent", root), "")
        return out

    def ctl_seed(self, body):
        """Creates instances (with root and data volumes) and backups.

        {"region": R,
         "instances": [{"count": N, "tags": {...}, "root_tags": {...},
                        "volumes": [{"device": "/dev/sdf", "tags": {...}, "type": "st1"}],
                        "state": "running" | "stopped" | "terminated"}],
         "images": [{"instance_id": I, "name": N, "tags": {...}, "snapshot_tags": {...}}],
         "snapshots": [{"volume_id": V, "tags": {...}}]}
        Returns the ids, in order.
        """
        region = body["region"]
        ec2 = self.client(region, body.get("account", ACCOUNT))
        out = {"instances": [], "images": [], "snapshots": []}
        for spec in body.get("instances", []):
            count = int(spec.get("count", 1))
            mappings = [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}]
            mappings += [
                {
                    "DeviceName": v["device"],
                    "Ebs": {"VolumeSize": v.get("size", 8), "VolumeType": v.get("type", "gp3")},
                }
                for v in spec.get("volumes", [])
            ]
            tag_specs = []
            if spec.get("tags"):
                tag_specs.append({"ResourceType": "instance", "Tags": tagl(spec["tags"])})
            done = 0
            while done < count:
                n = min(1000, count - done)
                r = ec2.run_instances(
                    ImageId="ami-00000000000000001",
                    MinCount=n,
                    MaxCount=n,
                    InstanceType="t3.micro",
                    BlockDeviceMappings=mappings,
                    TagSpecifications=tag_specs,
                )
                ids = [i["InstanceId"] for i in r["Instances"]]
                volume_tags = {"/dev/sda1": spec.get("root_tags", {})}
                volume_tags.update({v["device"]: v.get("tags", {}) for v in spec.get("volumes", [])})
                for inst in r["Instances"]:
                    volumes = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]}
                    by_tags = {}
                    for device, vid in volumes.items():
                        if volume_tags.get(device):
                            by_tags.setdefault(json.dumps(volume_tags[device], sort_keys=True), []).append(vid)
                    for tags_json, vids in by_tags.items():
                        ec2.create_tags(Resources=vids, Tags=tagl(json.loads(tags_json)))
                    out["instances"].append({"id": inst["InstanceId"], "volumes": volumes})
                state = spec.get("state", "running")
                if state == "stopped":
                    ec2.stop_instances(InstanceIds=ids)
                elif state == "terminated":
                    ec2.terminate_instances(InstanceIds=ids)
                done += n
        for spec in body.get("images", []):
            specs = []
            if spec.get("tags"):
                specs.append({"ResourceType": "image", "Tags": tagl(spec["tags"])})
            if spec.get("snapshot_tags"):
                specs.append({"ResourceType": "snapshot", "Tags": tagl(spec["snapshot_tags"])})
            r = ec2.create_image(
                InstanceId=spec["instance_id"], Name=spec["name"], NoReboot=True, TagSpecifications=specs
            )
            out["images"].append(r["ImageId"])
        for spec in body.get("snapshots", []):
            specs = [{"ResourceType": "snapshot", "Tags": tagl(spec["tags"])}] if spec.get("tags") else []
            r = ec2.create_snapshot(VolumeId=spec["volume_id"], TagSpecifications=specs)
            out["snapshots"].append(r["SnapshotId"])
        return out


def tagl(tags):
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = Emulator()
    server = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    app.port = server.server_port
    print(f"READY {app.port}", flush=True)

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
