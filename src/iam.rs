//! The least-privilege IAM policy for a policy set: only the EC2 actions the
//! loaded policies make backupctl call, tagging allowed only inside the
//! creating calls, deletions only of resources tagged with one of the loaded
//! policies' names, and requests only in the targeted regions when no policy
//! says `["*"]`. Pure: derived from the policies alone.

use crate::policy::{Kind, PolicySet, Regions};
use serde_json::{json, Value};
use std::collections::BTreeSet;

pub fn policy_document(policies: &PolicySet) -> Value {
    let enabled: Vec<_> = policies.enabled().collect();
    let any = |f: &dyn Fn(&crate::policy::Policy) -> bool| enabled.iter().any(|p| f(p));
    let every_region = any(&|p| p.target.regions == Regions::All);
    let has_ami = any(&|p| p.backup.kind == Kind::Ami);
    let has_snapshot = any(&|p| p.backup.kind == Kind::Snapshot);

    let mut observe = vec![
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeSnapshots",
    ];
    if every_region {
        observe.push("ec2:DescribeRegions");
    }
    if any(&|p| !p.target.volume_tags.is_empty()) {
        observe.push("ec2:DescribeVolumes");
    }
    observe.sort();

    let mut create = Vec::new();
    if has_ami {
        create.push("CreateImage");
    }
    if has_snapshot {
        create.push("CreateSnapshots");
    }
    let mut delete = Vec::new();
    if has_ami {
        delete.push("ec2:DeregisterImage");
    }
    if has_ami || has_snapshot {
        delete.push("ec2:DeleteSnapshot");
    }
    let names: Vec<&str> = policies.policies.iter().map(|p| p.name.as_str()).collect();

    let regions: BTreeSet<&str> = enabled
        .iter()
        .filter_map(|p| match &p.target.regions {
            Regions::List(l) => Some(l.iter().map(String::as_str)),
            Regions::All => None,
        })
        .flatten()
        .collect();
    let region_condition = (!every_region && !regions.is_empty())
        .then(|| json!({ "aws:RequestedRegion": regions.iter().collect::<Vec<_>>() }));
    let with_regions = |mut condition: serde_json::Map<String, Value>| -> Option<Value> {
        if let Some(r) = &region_condition {
            condition
                .entry("StringEquals")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("an object")
                .extend(r.as_object().expect("an object").clone());
        }
        (!condition.is_empty()).then_some(Value::Object(condition))
    };
    let statement = |sid: &str, actions: Vec<String>, condition: Option<Value>| {
        let mut s = json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": "*" });
        if let Some(c) = condition {
            s["Condition"] = c;
        }
        s
    };

    let mut statements = vec![statement(
        "ObserveInstancesAndBackups",
        observe.iter().map(|s| s.to_string()).collect(),
        with_regions(serde_json::Map::new()),
    )];
    if !create.is_empty() {
        statements.push(statement(
            "CreateBackups",
            create.iter().map(|a| format!("ec2:{a}")).collect(),
            with_regions(serde_json::Map::new()),
        ));
        let mut tag_condition = serde_json::Map::new();
        tag_condition.insert("StringEquals".into(), json!({ "ec2:CreateAction": create }));
        statements.push(statement(
            "TagOnlyInTheCreatingCall",
            vec!["ec2:CreateTags".into()],
            with_regions(tag_condition),
        ));
        let mut own = serde_json::Map::new();
        own.insert(
            "StringEquals".into(),
            json!({ format!("aws:ResourceTag/{}", crate::policy::tags::POLICY): names }),
        );
        statements.push(statement(
            "DeleteOnlyBackupsOfThesePolicies",
            delete.iter().map(|s| s.to_string()).collect(),
            with_regions(own),
        ));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}
