//! The least-privilege IAM policy for a policy set: only the EC2 actions the
//! loaded policies make backupctl call, tagging allowed only inside the
//! creating calls (and, while a policy adopts, on the old tools' backups),
//! deletions only of resources tagged with one of the loaded policies'
//! names, and requests only in the targeted regions when no policy says
//! `["*"]`. With an accounts file, also the member role's trust policy
//! and what the runner needs to enter the accounts ([`accounts_documents`]),
//! and a CloudFormation template of the member role. Pure: derived from
//! the policies and the accounts file alone.

use crate::accounts::AccountSet;
use crate::policy::{tags, Kind, OldTool, PolicySet, Regions};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub fn policy_document(policies: &PolicySet) -> Value {
    let enabled: Vec<_> = policies.enabled().collect();
    let any = |f: &dyn Fn(&crate::policy::Policy) -> bool| enabled.iter().any(|p| f(p));
    let every_region = any(&|p| p.target.regions == Regions::All);
    let has_ami = any(&|p| p.backup.kind == Kind::Ami);
    let has_snapshot = any(&|p| p.backup.kind == Kind::Snapshot);
    let copies = |kind: Kind| any(&|p| p.backup.kind == kind && !p.copies.is_empty());

    // The Recycle Bin's rules say where each deletion goes (read soft: a
    // missing permission only leaves that unknown).
    let mut observe = vec![
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeSnapshots",
        "rbin:GetRule",
        "rbin:ListRules",
    ];
    if every_region {
        observe.push("ec2:DescribeRegions");
    }
    if any(&|p| !p.target.volume_tags.is_empty()) {
        observe.push("ec2:DescribeVolumes");
    }
    let locks = any(&|p| p.backup.lock.is_some());
    if locks {
        observe.push("ec2:DescribeLockedSnapshots");
    }
    observe.sort();

    let mut create = Vec::new();
    if has_ami {
        create.push("CreateImage");
    }
    if has_snapshot {
        create.push("CreateSnapshots");
    }
    let mut copy = Vec::new();
    if copies(Kind::Ami) {
        copy.push("CopyImage");
    }
    if copies(Kind::Snapshot) {
        copy.push("CopySnapshot");
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
        // Copies are requested in their destination.
        .chain(
            enabled
                .iter()
                .flat_map(|p| p.copies.iter().map(|c| c.to_region.as_str())),
        )
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
        if !copy.is_empty() {
            // A copy is made only with the ownership tags of a loaded
            // policy, which is how every later run finds it.
            statements.push(statement(
                "CopyOnlyAsBackupsOfThesePolicies",
                copy.iter().map(|a| format!("ec2:{a}")).collect(),
                condition(&[(&format!("aws:RequestTag/{}", tags::POLICY), json!(names))]),
            ));
        }
        let creating: Vec<&str> = create.iter().chain(&copy).copied().collect();
        statements.push(statement(
            "TagOnlyInTheCreatingCall",
            vec!["ec2:CreateTags".into()],
            condition(&[("ec2:CreateAction", json!(creating))]),
        ));
        let own_tag = format!("aws:ResourceTag/{}", tags::POLICY);
        statements.push(statement(
            "DeleteOnlyBackupsOfThesePolicies",
            delete.iter().map(|s| s.to_string()).collect(),
            condition(&[(&own_tag, json!(names))]),
        ));
        if locks {
            // Never UnlockSnapshot: backupctl only adds or lengthens locks.
            statements.push(statement(
                "LockOnlyBackupsOfThesePolicies",
                vec!["ec2:LockSnapshot".into()],
                condition(&[(&own_tag, json!(names))]),
            ));
        }
        if any(&|p| p.backup.deregistration_protection.is_some()) {
            // Disabled only on an image retention deregisters next.
            statements.push(statement(
                "ProtectOnlyBackupsOfThesePolicies",
                vec![
                    "ec2:DisableImageDeregistrationProtection".into(),
                    "ec2:EnableImageDeregistrationProtection".into(),
                ],
                condition(&[(&own_tag, json!(names))]),
            ));
        }
        if any(&|p| p.copies.iter().any(|c| c.to_account.is_some())) {
            // Another account copies only what is shared with it, and the
            // share is recorded in a tag of its own.
            let mut s = statement(
                "ShareOnlyBackupsOfThesePolicies",
                vec![
                    "ec2:CreateTags".into(),
                    "ec2:DeleteTags".into(),
                    "ec2:ModifyImageAttribute".into(),
                    "ec2:ModifySnapshotAttribute".into(),
                ],
                condition(&[(&own_tag, json!(names))]),
            );
            s["Condition"]["ForAllValues:StringLike"] =
                json!({ "aws:TagKeys": [format!("{}*", tags::SHARED_WITH)] });
            statements.push(s);
        }
        let keys: BTreeSet<&str> = enabled
            .iter()
            .flat_map(|p| p.copies.iter().filter_map(|c| c.kms_key.as_deref()))
            .collect();
        if !keys.is_empty() {
            // EC2 encrypts a copy with the rule's key on the caller's
            // behalf: the caller must be allowed to use the key through
            // EC2 (and the key's policy must allow it too).
            let arns: Vec<&str> = keys
                .iter()
                .filter(|k| k.starts_with("arn:"))
                .copied()
                .collect();
            let mut s = statement(
                "EncryptCopiesWithTheRulesKeys",
                [
                    "kms:CreateGrant",
                    "kms:Decrypt",
                    "kms:DescribeKey",
                    "kms:Encrypt",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                ]
                .iter()
                .map(|a| a.to_string())
                .collect(),
                None,
            );
            if arns.len() == keys.len() {
                s["Resource"] = json!(arns);
            }
            s["Condition"] = json!({ "StringLike": { "kms:ViaService": "ec2.*.amazonaws.com" } });
            statements.push(s);
        }
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

/// With an accounts file, both sides of the account boundary: the member
/// role in each account (its permission policy, [`policy_document`], and
/// its trust policy: who may assume it, with the external id, and only
/// under backupctl's session names), and what the credentials backupctl
/// runs with need to enter the accounts. `principal` is who runs backupctl
/// (a role or user ARN); it is needed for every account entered with one
/// role (in a chain, the role before the last is the principal).
/// A member role's name, who it trusts, and its external id.
type MemberRole = (String, String, Option<String>);

pub fn accounts_documents(
    policies: &PolicySet,
    accounts: &AccountSet,
    principal: Option<&str>,
) -> Result<Value, String> {
    let permissions = policy_document(policies);
    let needs_principal = |who: &str| {
        format!(
            "{who} is entered with one role, whose trust policy names who runs backupctl: pass --principal ARN (the role or user backupctl runs as, e.g. arn:aws:iam::999999999999:role/backupctl-runner)"
        )
    };
    // One member role per distinct (name, principal, external id): the
    // accounts listed, and whether discovered accounts use it too.
    let mut roles: BTreeMap<MemberRole, (Vec<String>, bool)> = BTreeMap::new();
    let mut first_roles = BTreeSet::new();
    for a in &accounts.accounts {
        let Some(last) = a.roles.last() else { continue };
        let name = last.split_once(":role/").map_or("", |(_, n)| n).to_string();
        let trusted = match a.roles.len() {
            1 => principal
                .map(str::to_string)
                .ok_or_else(|| needs_principal(&format!("account {}", a.id)))?,
            n => a.roles[n - 2].clone(),
        };
        first_roles.insert(a.roles[0].clone());
        roles
            .entry((name, trusted, a.external_id.clone()))
            .or_default()
            .0
            .push(a.id.clone());
    }
    let mut runner = Vec::new();
    let mut reader = None;
    if let Some(org) = &accounts.organization {
        let trusted = principal
            .map(str::to_string)
            .ok_or_else(|| needs_principal("every account discovered in AWS Organizations"))?;
        first_roles.insert(format!(
            "arn:{}:iam::*:role/{}",
            org.partition, org.role_name
        ));
        roles
            .entry((org.role_name.clone(), trusted, org.external_id.clone()))
            .or_default()
            .1 = true;
        let mut read = if org.from.is_empty() {
            vec!["organizations:ListAccounts"]
        } else {
            vec![
                "organizations:ListAccountsForParent",
                "organizations:ListOrganizationalUnitsForParent",
            ]
        };
        if policies
            .enabled()
            .any(|p| !p.target.account_tags.is_empty())
        {
            read.push("organizations:ListTagsForResource");
        }
        let statement = json!({
            "Sid": "DiscoverTheAccounts",
            "Effect": "Allow",
            "Action": read,
            "Resource": "*",
        });
        match org.reader.first() {
            Some(first) => {
                first_roles.insert(first.clone());
                reader = Some(json!({
                    "Description": "The role that reads AWS Organizations (reader_role; in the management account or a delegated administrator): what it needs.",
                    "RoleArn": org.reader.last(),
                    "PolicyDocument": { "Version": "2012-10-17", "Statement": [statement] },
                }));
            }
            None => runner.push(statement),
        }
    }
    let members: Vec<Value> = roles
        .into_iter()
        .map(|((name, trusted, external_id), (ids, discovered))| {
            let mut member = json!({
                "RoleName": name,
                "Accounts": ids,
                "PolicyDocument": permissions,
                "AssumeRolePolicyDocument": trust_policy(&trusted, external_id.as_deref()),
            });
            if discovered {
                member["DiscoveredAccounts"] = json!(
                    "every ACTIVE account AWS Organizations lists for the [organization] of the accounts file, but those listed in it with a role of their own"
                );
            }
            member
        })
        .collect();
    runner.insert(
        0,
        json!({
            "Sid": "EnterTheAccounts",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": first_roles.into_iter().collect::<Vec<_>>(),
        }),
    );
    let mut out = json!({
        "Runner": {
            "Description": "What the credentials backupctl runs with need: to assume the member roles (the first role of each chain), and to read AWS Organizations when it discovers the accounts itself.",
            "PolicyDocument": { "Version": "2012-10-17", "Statement": runner },
        },
        "MemberRoles": members,
    });
    if let Some(reader) = reader {
        out["OrganizationReader"] = reader;
    }
    Ok(out)
}

/// The member role's trust policy: `principal` may assume it, with the
/// external id when there is one, and only under backupctl's session
/// names (`backupctl-<time>-<pid>`), so CloudTrail tells its sessions
/// apart from anyone else's.
fn trust_policy(principal: &str, external_id: Option<&str>) -> Value {
    let mut condition = json!({ "StringLike": { "sts:RoleSessionName": "backupctl-*" } });
    if let Some(id) = external_id {
        condition["StringEquals"] = json!({ "sts:ExternalId": id });
    }
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "BackupctlRunsHere",
            "Effect": "Allow",
            "Principal": { "AWS": principal },
            "Action": "sts:AssumeRole",
            "Condition": condition,
        }],
    })
}

/// A CloudFormation template of the member role, to deploy to every
/// account as a StackSet. One template needs one role: accounts whose
/// role name, principal or external id differ need one stack set each.
pub fn member_role_template(documents: &Value) -> Result<Value, String> {
    let members = documents["MemberRoles"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let [member] = members.as_slice() else {
        return Err(format!(
            "the accounts need {} different member roles (role name, principal or external id differ), and one template deploys one; make them the same in the accounts file, or use the JSON output (without --format cloudformation) and deploy each",
            members.len()
        ));
    };
    let full = member["RoleName"].as_str().unwrap_or("backupctl");
    let (path, name) = match full.rsplit_once('/') {
        Some((path, name)) => (format!("/{path}/"), name),
        None => ("/".to_string(), full),
    };
    Ok(json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "backupctl's member role: deploy it as a StackSet to the accounts of the accounts file (made by backupctl iam-policy --format cloudformation).",
        "Resources": {
            "BackupctlRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": name,
                    "Path": path,
                    "Description": "Assumed by backupctl to plan and apply EC2 backups",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": member["AssumeRolePolicyDocument"],
                    "Policies": [{
                        "PolicyName": "backupctl",
                        "PolicyDocument": member["PolicyDocument"],
                    }],
                },
            },
        },
        "Outputs": {
            "RoleArn": { "Value": { "Fn::GetAtt": ["BackupctlRole", "Arn"] } },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;
    use std::path::Path;

    pub(super) fn set(texts: &[&str]) -> PolicySet {
        let policies = texts
            .iter()
            .map(|t| parse_policy(Path::new("p.toml"), t).expect("valid").0)
            .collect();
        PolicySet {
            policies,
            digest: String::new(),
        }
    }

    pub(super) const ONE_REGION: &str = "name = \"one\"\n[target]\nregions = [\"us-east-1\"]\n\
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

#[cfg(test)]
mod account_tests {
    use super::tests::{set, ONE_REGION};
    use super::*;
    use std::path::Path;

    fn accounts(text: &str) -> AccountSet {
        let (accounts, organization) =
            crate::accounts::parse(Path::new("accounts.toml"), text).expect("valid");
        AccountSet {
            accounts,
            file: "accounts.toml".into(),
            digest: String::new(),
            organization,
        }
    }

    const TWO: &str = "[defaults]\nrole_name = \"ops/backupctl\"\nexternal_id = \"x\"\n\
        [[account]]\nid = \"111111111111\"\n[[account]]\nid = \"222222222222\"\n";

    #[test]
    fn the_member_role_trusts_the_runner_with_the_external_id() {
        let set = PolicySet {
            policies: Vec::new(),
            digest: String::new(),
        };
        let missing = accounts_documents(&set, &accounts(TWO), None).unwrap_err();
        assert!(missing.contains("--principal"), "{missing}");
        let runner = "arn:aws:iam::999999999999:role/runner";
        let doc = accounts_documents(&set, &accounts(TWO), Some(runner)).unwrap();
        let members = doc["MemberRoles"].as_array().unwrap();
        assert_eq!(members.len(), 1, "{doc:#}");
        let trust = &members[0]["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(trust["Principal"]["AWS"], runner);
        assert_eq!(trust["Condition"]["StringEquals"]["sts:ExternalId"], "x");
        assert_eq!(
            doc["Runner"]["PolicyDocument"]["Statement"][0]["Resource"],
            json!([
                "arn:aws:iam::111111111111:role/ops/backupctl",
                "arn:aws:iam::222222222222:role/ops/backupctl"
            ])
        );
        let template = member_role_template(&doc).unwrap();
        let role = &template["Resources"]["BackupctlRole"]["Properties"];
        assert_eq!(role["RoleName"], "backupctl");
        assert_eq!(role["Path"], "/ops/");

        // A chain: the last role trusts the one before it, and a second
        // kind of member role cannot share one template.
        let chained = format!(
            "{TWO}[[account]]\nid = \"333333333333\"\nrole = [\"arn:aws:iam::999999999999:role/hub\", \"arn:aws:iam::333333333333:role/ops/backupctl\"]\n"
        );
        let doc = accounts_documents(&set, &accounts(&chained), Some(runner)).unwrap();
        let members = doc["MemberRoles"].as_array().unwrap();
        assert_eq!(members.len(), 2, "{doc:#}");
        assert!(members.iter().any(
            |m| m["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"]
                == "arn:aws:iam::999999999999:role/hub"
        ));
        assert!(member_role_template(&doc)
            .unwrap_err()
            .contains("2 different member roles"));
    }

    #[test]
    fn discovery_adds_the_organizations_reads_to_whoever_reads_it() {
        let by_tag =
            set(&[&ONE_REGION.replace("[backup]", "account_tags = { env = \"prod\" }\n[backup]")]);
        let runner = "arn:aws:iam::999999999999:role/runner";
        let walked = "[defaults]\nrole_name = \"backupctl\"\n[organization]\nfrom = [\"ou-ab12-cd34ef56\"]\n";
        let doc = accounts_documents(&by_tag, &accounts(walked), Some(runner)).unwrap();
        let statements = &doc["Runner"]["PolicyDocument"]["Statement"];
        assert_eq!(
            statements[0]["Resource"],
            json!(["arn:aws:iam::*:role/backupctl"])
        );
        assert_eq!(
            statements[1]["Action"],
            json!([
                "organizations:ListAccountsForParent",
                "organizations:ListOrganizationalUnitsForParent",
                "organizations:ListTagsForResource"
            ]),
            "{doc:#}"
        );
        let member = &doc["MemberRoles"][0];
        assert!(member["DiscoveredAccounts"].is_string(), "{doc:#}");
        assert!(member_role_template(&doc).is_ok());

        // Through a reader role, the reads are the reader's, not the runner's.
        let through = format!(
            "{}reader_role = \"arn:aws:iam::888888888888:role/org-reader\"\n",
            walked.replace("from = [\"ou-ab12-cd34ef56\"]\n", "")
        );
        let doc =
            accounts_documents(&set(&[ONE_REGION]), &accounts(&through), Some(runner)).unwrap();
        let statements = doc["Runner"]["PolicyDocument"]["Statement"]
            .as_array()
            .unwrap();
        assert_eq!(statements.len(), 1, "{doc:#}");
        assert_eq!(
            doc["OrganizationReader"]["PolicyDocument"]["Statement"][0]["Action"],
            json!(["organizations:ListAccounts"])
        );
        assert!(statements[0]["Resource"]
            .as_array()
            .unwrap()
            .contains(&json!("arn:aws:iam::888888888888:role/org-reader")));
    }
}
