//! The record of an apply: one line per change as its outcome becomes
//! known, and the versioned JSON report (`apply --report FILE`, `apply
//! --format json`) that schedulers forward to chat and audit logs.
//!
//! The report is written whatever the exit code: after a full, a partly
//! failed or an interrupted apply, when the guard held deletions back, when
//! a saved plan was refused, and when the run ended before it could plan
//! (then with the error and no changes). Like the JSON plan it is a public
//! format: bump [`FORMAT_VERSION`] (minor for additions, major for anything
//! a reader could trip on) and update the README.

use crate::apply::{ApplyReport, Outcome, NOT_STARTED};
use crate::error::ExitCode;
use crate::plan::{Change, Plan};
use crate::provider::Done;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// `major.minor`.
pub const FORMAT_VERSION: &str = "1.4";

/// One line for a person: what happened to one change.
pub fn line(o: &Outcome) -> String {
    let c = &o.change;
    let account = c
        .account
        .as_ref()
        .map_or(String::new(), |a| format!("{a} / "));
    let of = format!("of {} ({account}{} / {})", c.source, c.policy, c.region);
    match &o.result {
        Ok(Done::Created(ids)) => format!("+ created {} {of}", ids.join(", ")),
        Ok(Done::Deleted(ids)) => format!("- deleted {} {of}", ids.join(", ")),
        Ok(Done::Adopted(ids)) => format!("~ adopted {} {of}", ids.join(", ")),
        Ok(Done::Locked(ids)) => format!("~ locked {} {of}", ids.join(", ")),
        Ok(Done::Protected(id)) => format!("~ protected {id} {of}"),
        Ok(Done::Unprotected(id)) => format!("~ unprotected {id} {of}"),
        Ok(Done::Shared(ids)) => format!("~ shared {} {of}", ids.join(", ")),
        Ok(Done::Unshared(ids)) => format!("~ unshared {} {of}", ids.join(", ")),
        Ok(Done::Postponed(e)) => {
            format!("> postponed {}: {e}; the next run makes it", c.address())
        }
        Err(e) if e.code == NOT_STARTED => format!(". not started: {}", c.address()),
        Err(e) => format!(
            "! failed to {} {}: {e}",
            c.action.verb(),
            c.action.target_id().map_or(c.address(), str::to_string)
        ),
    }
}

/// What one apply run did, gathered as it goes.
#[derive(Debug, Default)]
pub struct Run {
    /// The real clock when the run started.
    pub started_at: Option<DateTime<Utc>>,
    pub plan_file: Option<String>,
    /// The plan applied (its identity only).
    pub plan: Option<PlanId>,
    /// Changes held back: deletions (the mass-deletion guard) and compliance
    /// locks (without `--allow-compliance-lock`).
    pub held_back: Vec<Change>,
    pub applied: Option<ApplyReport>,
    /// The saved plan no longer held: why.
    pub refused: Vec<String>,
    /// The operator answered something else than "yes".
    pub cancelled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanId {
    pub generated_at: String,
    pub policies_digest: String,
    pub inventory_fingerprint: String,
}

impl PlanId {
    pub fn of(plan: &Plan) -> PlanId {
        PlanId {
            generated_at: time(plan.generated_at),
            policies_digest: plan.policies_digest.clone(),
            inventory_fingerprint: plan.inventory_fingerprint.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonReport {
    pub format_version: String,
    pub tool: crate::plan::json::JsonTool,
    pub started_at: String,
    pub finished_at: String,
    pub exit_code: i32,
    /// `applied`, `failed` (some change failed), `interrupted`,
    /// `no_changes`, `held_back` (only deletions were due and the guard
    /// held them), `cancelled`, `refused` (a saved plan that no longer
    /// holds) or `error` (the run ended before applying).
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    pub changes: Vec<JsonOutcome>,
    pub summary: JsonCounts,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonOutcome {
    /// As in the JSON plan.
    pub address: String,
    pub actions: Vec<String>,
    pub operation: String,
    /// The account, in plans that span accounts (1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub policy: String,
    pub region: String,
    pub source: String,
    /// The backup deleted, adopted, locked, protected or unprotected
    /// (absent for creations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `created`, `deleted`, `adopted`, `locked` (1.2), `protected`,
    /// `unprotected` (1.3), `shared`, `unshared` (1.4), `postponed`,
    /// `failed`, `not_started` (interrupted first) or `held_back` (by the
    /// guard, or a compliance lock without its flag).
    pub outcome: String,
    /// The ids made (`created`), gone (`deleted`), tagged (`adopted`),
    /// locked (`locked`), or the image (`protected`, `unprotected`).
    pub ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JsonError>,
    /// The AWS request id of each call made for the change, in order.
    pub request_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonError {
    /// AWS's error code (`InvalidAMIID.Unavailable`…) or backupctl's
    /// (`NotAdopted`).
    pub code: String,
    pub message: String,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JsonCounts {
    pub created: usize,
    pub deleted: usize,
    pub adopted: usize,
    /// Changes that locked snapshots (1.2); absent when there are none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub locked: usize,
    /// Images whose deregistration protection was enabled (1.3); absent
    /// when there are none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub protected: usize,
    /// Images whose deregistration protection was disabled (1.3); absent
    /// when there are none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unprotected: usize,
    /// Backups shared with another account for a copy, and unshared
    /// (1.4); absent when there are none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shared: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unshared: usize,
    pub postponed: usize,
    pub failed: usize,
    pub not_started: usize,
    pub held_back: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn outcome(o: &Outcome) -> JsonOutcome {
    let (name, ids, error) = match &o.result {
        Ok(Done::Created(ids)) => ("created", ids.clone(), None),
        Ok(Done::Deleted(ids)) => ("deleted", ids.clone(), None),
        Ok(Done::Adopted(ids)) => ("adopted", ids.clone(), None),
        Ok(Done::Locked(ids)) => ("locked", ids.clone(), None),
        Ok(Done::Protected(id)) => ("protected", vec![id.clone()], None),
        Ok(Done::Unprotected(id)) => ("unprotected", vec![id.clone()], None),
        Ok(Done::Shared(ids)) => ("shared", ids.clone(), None),
        Ok(Done::Unshared(ids)) => ("unshared", ids.clone(), None),
        Ok(Done::Postponed(e)) => ("postponed", Vec::new(), Some(e)),
        Err(e) if e.code == NOT_STARTED => ("not_started", Vec::new(), None),
        Err(e) => ("failed", Vec::new(), Some(e)),
    };
    JsonOutcome {
        outcome: name.to_string(),
        ids,
        error: error.map(|e| JsonError {
            code: e.code.clone(),
            message: e.message.clone(),
        }),
        request_ids: o.request_ids.clone(),
        started_at: o.started_at.map(time),
        elapsed_ms: u64::try_from(o.elapsed.as_millis()).unwrap_or(u64::MAX),
        ..planned(&o.change, "")
    }
}

fn planned(c: &Change, outcome: &str) -> JsonOutcome {
    JsonOutcome {
        address: c.address(),
        actions: vec![c.action.verb().to_string()],
        operation: c.action.operation(),
        account: c.account.clone(),
        policy: c.policy.clone(),
        region: c.region.clone(),
        source: c.source.clone(),
        id: c.action.target_id().map(str::to_string),
        outcome: outcome.to_string(),
        ids: Vec::new(),
        error: None,
        request_ids: Vec::new(),
        started_at: None,
        elapsed_ms: 0,
    }
}

impl Run {
    /// The report of the run, ended with `code` (and `error`, when it ended
    /// on one), at `finished_at`.
    pub fn report(
        &self,
        code: ExitCode,
        error: Option<String>,
        finished_at: DateTime<Utc>,
    ) -> JsonReport {
        let mut changes: Vec<JsonOutcome> = self
            .applied
            .iter()
            .flat_map(|r| r.outcomes.iter().map(outcome))
            .collect();
        changes.extend(self.held_back.iter().map(|c| planned(c, "held_back")));
        let count = |name: &str| changes.iter().filter(|c| c.outcome == name).count();
        let summary = JsonCounts {
            created: count("created"),
            deleted: count("deleted"),
            adopted: count("adopted"),
            locked: count("locked"),
            protected: count("protected"),
            unprotected: count("unprotected"),
            shared: count("shared"),
            unshared: count("unshared"),
            postponed: count("postponed"),
            failed: count("failed"),
            not_started: count("not_started"),
            held_back: count("held_back"),
        };
        let result = if error.is_some() {
            if self.refused.is_empty() {
                "error"
            } else {
                "refused"
            }
        } else if self.cancelled {
            "cancelled"
        } else if summary.not_started > 0 || code == ExitCode::Interrupted {
            "interrupted"
        } else if summary.failed > 0 {
            "failed"
        } else if changes.iter().all(|c| c.outcome == "held_back") && !changes.is_empty() {
            "held_back"
        } else if changes.is_empty() {
            "no_changes"
        } else {
            "applied"
        };
        JsonReport {
            format_version: FORMAT_VERSION.to_string(),
            tool: crate::plan::json::JsonTool {
                name: "backupctl".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            started_at: time(self.started_at.unwrap_or(finished_at)),
            finished_at: time(finished_at),
            exit_code: code as i32,
            result: result.to_string(),
            error,
            plan_file: self.plan_file.clone(),
            plan: self.plan.clone(),
            refused: self.refused.clone(),
            changes,
            summary,
        }
    }
}
