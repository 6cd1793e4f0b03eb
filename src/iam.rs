//! The least-privilege IAM policy for a policy set: only the EC2 actions the
//! loaded policies make backupctl call, tagging allowed only inside the
//! creating calls (and, while a policy adopts, on the old tools' backups),
//! deletions only of resources tagged with one of the loaded policies'
//! names, and requests only in the targeted regions when no policy says
//! `["*"]`. Pure: derived from the policies alone.

use crate::policy::{tags, Kind, OldTool, PolicySet, Regions};
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
    let region_condition =
        (!every_region && !regions.is_empty()).then(|| json!(regions.iter().collect::<Vec<_>>()));
    // Takes its tests by reference and builds a fresh map on each call.
    // The earlier form, a closure taking a `serde_json::Map` by value and
    // called several times with `Map::new()`, was miscompiled by rustc
    // 1.95/1.96 at opt-level >= 2 (MIR GVN merged the identical by-value
    // argument temporaries, so the second call got the map the first had
    // filled and dropped: a double free; rust-lang/rust#158830, fixed in
    // 1.97). Keep arguments with drop glue out of repeated calls here.
    let condition = |string_equals: &[(&str, Value)]| -> Option<Value> {
        let mut tests = serde_json::Map::new();
        for (key, value) in string_equals {
            tests.insert((*key).to_string(), value.clone());
        }
        if let Some(regions) = &region_condition {
            tests.insert("aws:RequestedRegion".into(), regions.clone());
        }
        (!tests.is_empty()).then(|| json!({ "StringEquals": tests }))
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
        condition(&[]),
    )];
    if !create.is_empty() {
        statements.push(statement(
            "CreateBackups",
            create.iter().map(|a| format!("ec2:{a}")).collect(),
            condition(&[]),
        ));
        statements.push(statement(
            "TagOnlyInTheCreatingCall",
            vec!["ec2:CreateTags".into()],
            condition(&[("ec2:CreateAction", json!(create))]),
        ));
        let own_tag = format!("aws:ResourceTag/{}", tags::POLICY);
        statements.push(statement(
            "DeleteOnlyBackupsOfThesePolicies",
            delete.iter().map(|s| s.to_string()).collect(),
            condition(&[(&own_tag, json!(names))]),
        ));
    }
    let tools: BTreeSet<OldTool> = enabled.iter().filter_map(|p| p.adopt).collect();
    if !tools.is_empty() {
        let created_by = format!("aws:ResourceTag/{}", tags::CREATED_BY);
        let names: Vec<&str> = tools.iter().map(|t| t.as_str()).collect();
        statements.push(statement(
            "AdoptOnlyTheOldToolsBackups",
            vec!["ec2:CreateTags".into()],
            condition(&[(&created_by, json!(names))]),
        ));
    }
    if tools.contains(&OldTool::BackupViaTag) {
        // backupViaTag tagged its AMIs only: their snapshots carry no tag a
        // condition could name, so tagging any snapshot is allowed, but only
        // with backupctl's ownership tags and the adoption marker.
        let mut s = statement(
            "TagTheSnapshotsOfAdoptedImages",
            vec!["ec2:CreateTags".into()],
            condition(&[(
                &format!("aws:RequestTag/{}", tags::ADOPTED_FROM),
                json!(OldTool::BackupViaTag.as_str()),
            )]),
        );
        s["Resource"] = json!("arn:aws:ec2:*::snapshot/*");
        s["Condition"]["ForAllValues:StringEquals"] = json!({
            "aws:TagKeys": [tags::POLICY, tags::SOURCE, tags::CREATED_AT, tags::ADOPTED_FROM]
        });
        statements.push(s);
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;
    use std::path::Path;

    fn set(texts: &[&str]) -> PolicySet {
        let policies = texts
            .iter()
            .map(|t| parse_policy(Path::new("p.toml"), t).expect("valid").0)
            .collect();
        PolicySet {
            policies,
            digest: String::new(),
        }
    }

    const ONE_REGION: &str = "name = \"one\"\n[target]\nregions = [\"us-east-1\"]\n\
        instance_tags = { B = \"y\" }\n[backup]\nkind = \"ami\"\n[retention]\nmax_age = \"7d\"\n";

    /// Issue 15: with a region list, every statement gets its own region
    /// condition. The optimized build used to hand the second statement the
    /// first one's already-freed condition map (a double free).
    #[test]
    fn every_statement_of_a_single_region_set_is_limited_to_that_region() {
        let doc = policy_document(&set(&[ONE_REGION]));
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 4, "{doc:#}");
        for s in statements {
            assert_eq!(
                s["Condition"]["StringEquals"]["aws:RequestedRegion"],
                json!(["us-east-1"]),
                "{s:#}"
            );
        }
        assert_eq!(
            statements[2]["Condition"]["StringEquals"]["ec2:CreateAction"],
            json!(["CreateImage"])
        );
        assert_eq!(
            statements[3]["Condition"]["StringEquals"]["aws:ResourceTag/backupctl:policy"],
            json!(["one"])
        );
    }

    #[test]
    fn every_region_means_no_region_condition() {
        let all = ONE_REGION.replace("[\"us-east-1\"]", "[\"*\"]");
        let doc = policy_document(&set(&[&all]));
        let statements = doc["Statement"].as_array().unwrap();
        assert!(statements[0].get("Condition").is_none(), "{doc:#}");
        assert!(statements[0]["Action"]
            .as_array()
            .unwrap()
            .contains(&json!("ec2:DescribeRegions")));
        assert!(statements[2]["Condition"]["StringEquals"]
            .get("aws:RequestedRegion")
            .is_none());
    }
}
