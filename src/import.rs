//! `import-config`: policy files from the configuration of the tools
//! backupctl replaces, so that a migration starts from what ran before
//! rather than from a blank page.
//!
//! - molibackup: a YAML file whose `jobs` map holds one `ebs-snapshot` job
//!   per entry; each job becomes one snapshot policy that adopts
//!   molibackup's snapshots.
//! - backupViaTag: its command line (`-t Key:Value -e "+30 days"`); it
//!   becomes one AMI policy over every region that adopts its AMIs.
//!
//! Pure: text in, policy files out. Every file made is then checked by the
//! policy parser itself, so a conversion reports exactly the errors
//! `validate` would (a job that selects nothing, a bad region...).
//! Credentials in a molibackup job are never carried over.

use crate::policy::parse_policy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// One policy file made by a conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyFile {
    /// `<policy name>.toml`.
    pub file_name: String,
    pub text: String,
}

/// A molibackup job, as its YAML configuration spells it. Unknown keys are
/// refused: a key this reading does not know may change what the job did.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoliJob {
    module: String,
    enabled: Option<bool>,
    dryrun: Option<bool>,
    retention: Option<i64>,
    aws_region: String,
    accesskey_id: Option<String>,
    accesskey_secret: Option<String>,
    instance_id: Option<String>,
    /// Older versions: `Key=Value`.
    instance_tag: Option<String>,
    volume_tag: Option<String>,
    /// Newer versions: a map.
    instance_tags: Option<BTreeMap<String, String>>,
    volume_tags: Option<BTreeMap<String, String>>,
    lock_mode: Option<String>,
    lock_duration: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoliConfig {
    #[allow(dead_code)]
    global: Option<serde_yaml::Value>,
    jobs: BTreeMap<String, MoliJob>,
}

/// `text` of molibackup's YAML file `path`, as policy files; or every
/// error, each naming the file (and line, where YAML tells it).
pub fn from_molibackup(path: &Path, text: &str) -> Result<Vec<PolicyFile>, Vec<String>> {
    let config: MoliConfig = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map_or(String::new(), |l| format!(":{}:{}", l.line(), l.column()));
        vec![format!(
            "{}{at}: not a molibackup configuration: {e} (expected a `jobs:` map of ebs-snapshot jobs, as in molibackup's README)",
            path.display()
        )]
    })?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for (job_name, job) in &config.jobs {
        match molibackup_job(path, job_name, job) {
            Ok(file) => files.push(file),
            Err(e) => errors.push(e),
        }
    }
    if config.jobs.is_empty() {
        errors.push(format!(
            "{}: `jobs` is empty: nothing to convert",
            path.display()
        ));
    }
    finish(files, errors)
}

fn molibackup_job(path: &Path, job_name: &str, job: &MoliJob) -> Result<PolicyFile, String> {
    let at = format!("{}: job {job_name}", path.display());
    if job.module != "ebs-snapshot" {
        return Err(format!(
            "{at}: module \"{}\" is not one backupctl replaces (only ebs-snapshot)",
            job.module
        ));
    }
    let pair = |key: &str, text: &Option<String>| -> Result<BTreeMap<String, String>, String> {
        let Some(text) = text else {
            return Ok(BTreeMap::new());
        };
        let (k, v) = text
            .split_once('=')
            .ok_or_else(|| format!("{at}: `{key}` is \"{text}\": expected TagName=TagValue"))?;
        Ok(BTreeMap::from([(k.to_string(), v.to_string())]))
    };
    let mut instance_tags = pair("instance_tag", &job.instance_tag)?;
    instance_tags.extend(job.instance_tags.clone().unwrap_or_default());
    let mut volume_tags = pair("volume_tag", &job.volume_tag)?;
    volume_tags.extend(job.volume_tags.clone().unwrap_or_default());
    let retention = job.retention.unwrap_or(30);
    if retention <= 0 {
        return Err(format!(
            "{at}: `retention` is {retention}: expected a number of days greater than 0"
        ));
    }
    let name = policy_name(job_name);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Converted from molibackup job `{job_name}` by `backupctl import-config`."
    );
    let _ = writeln!(
        t,
        "# Schedule `backupctl apply --auto-approve` as molibackup was (e.g. daily from cron)."
    );
    if job.accesskey_id.is_some() || job.accesskey_secret.is_some() {
        let _ = writeln!(
            t,
            "# The job's access keys were not carried over: backupctl takes credentials from the"
        );
        let _ = writeln!(
            t,
            "# standard AWS chain (environment, profile, instance role), never from policy files."
        );
    }
    // molibackup locked each new snapshot for `lock_duration` days.
    let lock = match (job.lock_mode.as_deref(), job.lock_duration) {
        (Some(mode @ ("governance" | "compliance")), Some(days))
            if (1..=36_500).contains(&days) =>
        {
            Some(format!("lock = {{ mode = \"{mode}\", days = {days} }}"))
        }
        (None, None) => None,
        _ => {
            let _ = writeln!(
                t,
                "# The job's lock_mode/lock_duration could not be read as a lock (a mode of"
            );
            let _ = writeln!(
                t,
                "# governance or compliance, 1 to 36500 days): add `lock` to [backup] by hand."
            );
            None
        }
    };
    if job.lock_mode.as_deref() == Some("compliance") && lock.is_some() {
        let _ = writeln!(
            t,
            "# Compliance locks cannot be undone: apply sets them only with --allow-compliance-lock."
        );
    }
    let disabled = job.enabled == Some(false) || job.dryrun == Some(true);
    if job.dryrun == Some(true) {
        let _ = writeln!(t, "# The job was a dry run: this policy is disabled; `backupctl plan` shows what it would do.");
    }
    let _ = writeln!(t, "name = {}", quoted(&name));
    if disabled {
        let _ = writeln!(t, "enabled = false");
    }
    let _ = writeln!(t, "\n[target]\nregions = [{}]", quoted(&job.aws_region));
    if let Some(id) = &job.instance_id {
        let _ = writeln!(t, "instance_ids = [{}]", quoted(id));
    }
    if !instance_tags.is_empty() {
        let _ = writeln!(t, "instance_tags = {}", inline(&instance_tags));
    }
    if !volume_tags.is_empty() {
        let _ = writeln!(t, "volume_tags = {}", inline(&volume_tags));
    }
    let _ = writeln!(t, "\n[backup]\nkind = \"snapshot\"\nevery = \"1 day\"");
    if let Some(lock) = lock {
        let _ = writeln!(t, "{lock}");
    }
    let _ = writeln!(
        t,
        "\n[retention]\nmax_age = \"{retention} days\"\nkeep_last = 1"
    );
    let _ = writeln!(t, "\n[adopt]\nfrom = \"molibackup\"");
    Ok(PolicyFile {
        file_name: format!("{name}.toml"),
        text: t,
    })
}

/// backupViaTag's command line (the words after the program name) as a
/// policy file. `every` is how often it ran (its cron line is not part of
/// the command line).
pub fn from_backupviatag(args: &[String], every: &str) -> Result<Vec<PolicyFile>, Vec<String>> {
    let usage = "expected backupViaTag's own arguments, e.g. -t Backup:prodDaily -e \"+30 days\"";
    let mut tag = None;
    let mut expiry = None;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (flag, inline_value) = match word.as_str() {
            w if w.len() > 2 && (w.starts_with("-t") || w.starts_with("-e")) => {
                (&w[..2], Some(w[2..].to_string()))
            }
            w => (w, None),
        };
        let value = match inline_value {
            Some(v) => v,
            None => match words.next() {
                Some(v) if flag == "-t" || flag == "-e" => v.clone(),
                _ => {
                    return Err(vec![format!(
                        "backupViaTag arguments: unexpected \"{word}\"; {usage}"
                    )])
                }
            },
        };
        match flag {
            "-t" => tag = Some(value),
            "-e" => expiry = Some(value),
            _ => {
                return Err(vec![format!(
                    "backupViaTag arguments: unexpected \"{word}\"; {usage}"
                )])
            }
        }
    }
    let (Some(tag), Some(expiry)) = (tag, expiry) else {
        return Err(vec![format!(
            "backupViaTag arguments: both -t and -e are needed; {usage}"
        )]);
    };
    // As backupViaTag read it: `cut -d ":" -f 1` and `-f 2`.
    let mut parts = tag.split(':');
    let key = parts.next().unwrap_or("").to_string();
    let value = parts.next().unwrap_or("").to_string();
    if key.is_empty() || value.is_empty() {
        return Err(vec![format!(
            "backupViaTag arguments: -t \"{tag}\": expected Key:Value, the instance tag it selected"
        )]);
    }
    let name = policy_name(&format!("backupviatag-{key}-{value}"));
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Converted from `backupViaTag -t {tag} -e \"{expiry}\"` by `backupctl import-config`."
    );
    let _ = writeln!(
        t,
        "# backupViaTag fixed each AMI's expiry when it made it; here max_age applies to every"
    );
    let _ = writeln!(
        t,
        "# backup of the policy, and an adopted AMI's Expire tag is still honoured as a floor."
    );
    let _ = writeln!(t, "name = {}", quoted(&name));
    let _ = writeln!(t, "\n[target]\nregions = [\"*\"]");
    let _ = writeln!(
        t,
        "instance_tags = {}",
        inline(&BTreeMap::from([(key, value)]))
    );
    let _ = writeln!(
        t,
        "\n[backup]\nkind = \"ami\"\nevery = {}\nreboot = \"tag\"",
        quoted(every)
    );
    let _ = writeln!(
        t,
        "\n[retention]\nmax_age = {}\nkeep_last = 1",
        quoted(expiry.trim())
    );
    let _ = writeln!(t, "\n[adopt]\nfrom = \"backupViaTag\"");
    finish(
        vec![PolicyFile {
            file_name: format!("{name}.toml"),
            text: t,
        }],
        Vec::new(),
    )
}

/// Checks every file with the policy parser, as `validate` does.
fn finish(files: Vec<PolicyFile>, mut errors: Vec<String>) -> Result<Vec<PolicyFile>, Vec<String>> {
    let mut names = BTreeMap::new();
    for f in &files {
        if let Err(found) = parse_policy(Path::new(&f.file_name), &f.text) {
            errors.extend(found.iter().map(|e| e.to_string()));
        }
        if let Some(other) = names.insert(f.file_name.clone(), f) {
            errors.push(format!(
                "two jobs become policy file {}: rename one job",
                other.file_name
            ));
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// A valid policy name from a job name: lower case, `[a-z0-9_-]`, at most
/// 64 characters.
fn policy_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(64);
    if name.is_empty() {
        name.push_str("imported");
    }
    name
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out += &format!("\\u{:04X}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn inline(tags: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{} = {}", quoted(k), quoted(v)))
        .collect();
    format!("{{ {} }}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of molibackup's README, jobs and all.
    const README_EXAMPLE: &str = r#"---
global:
  loglevel: info

jobs:
    myjob01:
      module: ebs-snapshot
      enabled: true
      dryrun: false
      retention: 180
      aws_region: "us-west-2"
      accesskey_id: "MyAccessKeyId"
      accesskey_secret: "MyAccessKeySecret"
      instance_id: "i-01233456789abcdef"
    myjob02:
      module: ebs-snapshot
      enabled: true
      dryrun: false
      retention: 60
      aws_region: "us-west-2"
      instance_id: "local"
    myjob03:
      module: ebs-snapshot
      enabled: true
      dryrun: false
      retention: 90
      aws_region: "us-west-2"
      accesskey_id: "MyAccessKeyId"
      accesskey_secret: "MyAccessKeySecret"
      instance_tags:
        Molibackup_enabled: "true"
        Environment: "production"
      volume_tags:
        Molibackup_enabled: "true"
      lock_mode: "governance"
      lock_duration: 7
"#;

    fn parsed(f: &PolicyFile) -> crate::policy::Policy {
        parse_policy(Path::new(&f.file_name), &f.text)
            .unwrap_or_else(|e| panic!("{}: {e:?}", f.text))
            .0
    }

    #[test]
    fn molibackup_readme_jobs_become_policies() {
        let files = from_molibackup(Path::new("molibackup.yaml"), README_EXAMPLE).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.file_name.as_str()).collect();
        assert_eq!(names, ["myjob01.toml", "myjob02.toml", "myjob03.toml"]);
        for f in &files {
            assert!(
                !f.text.contains("MyAccessKey"),
                "credentials never carried over: {}",
                f.text
            );
            let p = parsed(f);
            assert_eq!(p.adopt, Some(crate::policy::OldTool::Molibackup));
            assert_eq!(p.backup.kind, crate::policy::Kind::Snapshot);
        }
        assert!(files[0].text.contains("max_age = \"180 days\""));
        assert!(files[0]
            .text
            .contains("instance_ids = [\"i-01233456789abcdef\"]"));
        assert!(files[1].text.contains("instance_ids = [\"local\"]"));
        let third = parsed(&files[2]);
        assert_eq!(third.target.instance_tags.len(), 2);
        assert_eq!(third.target.volume_tags.len(), 1);
        assert_eq!(
            third.backup.lock,
            Some(crate::policy::Lock {
                mode: crate::policy::LockMode::Governance,
                days: 7,
                cool_off_hours: 0
            }),
            "molibackup's lock is carried over"
        );
        assert_eq!(parsed(&files[0]).backup.lock, None);
        assert!(files[0].text.contains("access keys were not carried over"));
    }

    #[test]
    fn molibackup_mistakes_are_errors_with_their_place() {
        let err = from_molibackup(
            Path::new("m.yaml"),
            "jobs:\n  a:\n    module: ebs-snapshot\n    aws_region: us-east-1\n    retension: 3\n",
        )
        .unwrap_err();
        assert!(err[0].starts_with("m.yaml:"), "{err:?}");
        assert!(err[0].contains("retension"), "{err:?}");
        // Selects nothing: the policy parser's own error, as validate says it.
        let err = from_molibackup(
            Path::new("m.yaml"),
            "jobs:\n  a:\n    module: ebs-snapshot\n    aws_region: us-east-1\n",
        )
        .unwrap_err();
        assert!(
            err.iter()
                .any(|e| e.contains("a.toml:") && e.contains("instance")),
            "{err:?}"
        );
        let err = from_molibackup(Path::new("m.yaml"), "jobs:\n  a:\n    module: ebs-snapshot\n    aws_region: mars-1\n    instance_id: local\n").unwrap_err();
        assert!(err.iter().any(|e| e.contains("mars-1")), "{err:?}");
        let err = from_molibackup(Path::new("m.yaml"), "jobs:\n  a:\n    module: ebs-snapshot\n    aws_region: us-east-1\n    instance_tag: nope\n").unwrap_err();
        assert!(err[0].contains("TagName=TagValue"), "{err:?}");
    }

    #[test]
    fn backupviatag_usage_examples_become_policies() {
        // backupViaTag's own usage examples.
        for (args, name, max_age) in [
            (
                vec!["-t", "Backup:shortTerm", "-e", "+7 days"],
                "backupviatag-backup-shortterm.toml",
                "+7 days",
            ),
            (
                vec!["-t", "environment:prod", "-e", "+3 months"],
                "backupviatag-environment-prod.toml",
                "+3 months",
            ),
            (
                vec!["-t", "Backup:forever", "-e", "never"],
                "backupviatag-backup-forever.toml",
                "never",
            ),
        ] {
            let args: Vec<String> = args.into_iter().map(String::from).collect();
            let files = from_backupviatag(&args, "1 day").unwrap();
            assert_eq!(files[0].file_name, name);
            let p = parsed(&files[0]);
            assert_eq!(p.adopt, Some(crate::policy::OldTool::BackupViaTag));
            assert_eq!(p.target.regions, crate::policy::Regions::All);
            assert!(
                files[0].text.contains(&format!("max_age = \"{max_age}\"")),
                "{}",
                files[0].text
            );
        }
        let bad = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            from_backupviatag(&args, "1 day").unwrap_err().join("\n")
        };
        assert!(bad(&["-t", "Backup"]).contains("both -t and -e"));
        assert!(bad(&["-t", "Backup", "-e", "+7 days"]).contains("expected Key:Value"));
        assert!(bad(&["-t", "B:x", "-e", "1.5 days"]).contains("36 hours"));
        assert!(bad(&["-x", "1"]).contains("unexpected \"-x\""));
    }
}
