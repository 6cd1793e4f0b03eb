//! Which backups of one source (or one volume) to keep and which to delete.
//!
//! Pure and separate from the planner so that the rules that protect data can
//! be read, and tested, in one place:
//!
//! - the newest `keep_last` good backups are always kept, however old;
//! - a backup is deleted only if a newer good backup exists (so the newest
//!   good one, and anything newer than it, always survives: when backups stop
//!   working, retention must not wipe the history);
//! - a pending backup is never deleted;
//! - otherwise a backup older than `max_age` is deleted.
//!
//! Backups are ranked newest first by EC2's own time, which no tag can
//! change; age for `max_age` counts from the start of the run that made the
//! backup (its `backupctl:created-at` tag, trusted up to an hour before EC2's
//! time and without limit after it: [`Backup::aged_from`]), so a daily job
//! with `max_age = "7 days"` keeps seven backups, not eight, and a wrong tag
//! can make a backup older by an hour at most.
//! The rules work on [`Backup`]s: images, snapshot sets and legacy snapshots
//! alike (see `sets`).

use crate::inventory::Backup;
use crate::plan::{Reason, ReasonCode};
use crate::policy::{human_age, MaxAge, Retention};
use chrono::{DateTime, Utc};

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep(Reason),
    Delete(Reason),
}

impl Verdict {
    pub fn is_delete(&self) -> bool {
        matches!(self, Verdict::Delete(_))
    }
}

/// Decides for every backup of one group; returns the backups newest first,
/// each with its verdict.
pub fn evaluate<'a, B: Backup>(
    backups: &[&'a B],
    rules: &Retention,
    now: DateTime<Utc>,
) -> Vec<(&'a B, Verdict)> {
    let mut sorted: Vec<&B> = backups.to_vec();
    sorted.sort_by(|a, b| {
        b.native_time()
            .cmp(&a.native_time())
            .then_with(|| b.id().cmp(a.id()))
    });
    let mut newer_good = 0u32;
    let mut out = Vec::with_capacity(sorted.len());
    for b in sorted {
        let verdict = decide(b, newer_good, rules, now);
        if b.is_good() {
            newer_good = newer_good.saturating_add(1);
        }
        out.push((b, verdict));
    }
    out
}

fn decide<B: Backup>(b: &B, newer_good: u32, rules: &Retention, now: DateTime<Utc>) -> Verdict {
    let keep = |code, message: String| Verdict::Keep(Reason { code, message });
    let created = b.aged_from();
    let age = human_age(created, now);
    if b.is_good() && newer_good < rules.keep_last {
        return keep(
            ReasonCode::KeepLast,
            format!(
                "keep_last: newest good backup #{} of {}",
                newer_good + 1,
                rules.keep_last
            ),
        );
    }
    if b.is_pending() {
        return keep(ReasonCode::Pending, "pending: still being created".into());
    }
    if newer_good == 0 {
        return if b.is_good() {
            keep(
                ReasonCode::NewestGood,
                "newest good backup: never deleted".into(),
            )
        } else {
            keep(
                ReasonCode::NoNewerGood,
                "no newer good backup exists, so it is not deleted".into(),
            )
        };
    }
    match rules.max_age {
        MaxAge::Never => keep(ReasonCode::NotExpired, "not expired: max_age never".into()),
        MaxAge::After(max) if max.elapsed(created, now) => Verdict::Delete(Reason {
            code: ReasonCode::Expired,
            message: format!("expired: {age} old, max_age {max}"),
        }),
        MaxAge::After(max) => keep(
            ReasonCode::NotExpired,
            format!("not expired: {age} old, max_age {max}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Image, ImageState};
    use crate::policy::{parse_max_age, tags};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap()
    }

    fn image(id: &str, days_old: i64, state: ImageState) -> Image {
        Image {
            id: id.into(),
            name: id.into(),
            state,
            created_at: now() - chrono::TimeDelta::days(days_old),
            tags: [(tags::POLICY.to_string(), "p".to_string())].into(),
            snapshot_ids: vec![],
            deregistration_protection: None,
        }
    }

    fn rules(max_age: &str, keep_last: u32) -> Retention {
        Retention {
            max_age: parse_max_age(max_age).unwrap(),
            keep_last,
            require_recycle_bin: false,
        }
    }

    /// Runs the rules and returns, newest first, "id:code" for each backup.
    fn run(images: &[Image], r: &Retention) -> Vec<String> {
        let refs: Vec<&Image> = images.iter().collect();
        evaluate(&refs, r, now())
            .into_iter()
            .map(|(b, v)| {
                let (tag, reason) = match v {
                    Verdict::Keep(r) => ("keep", r),
                    Verdict::Delete(r) => ("delete", r),
                };
                format!("{}:{tag}:{}", b.id, reason.code.as_str())
            })
            .collect()
    }

    use ImageState::{Available as A, Failed as F, Pending as P};

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            images: Vec<Image>,
            rules: Retention,
            want: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                name: "expired beyond keep_last are deleted",
                images: vec![image("a", 1, A), image("b", 40, A), image("c", 50, A)],
                rules: rules("30 days", 1),
                want: vec!["a:keep:keep_last", "b:delete:expired", "c:delete:expired"],
            },
            Case {
                name: "keep_last protects old backups",
                images: vec![image("a", 40, A), image("b", 50, A), image("c", 60, A)],
                rules: rules("30 days", 2),
                want: vec!["a:keep:keep_last", "b:keep:keep_last", "c:delete:expired"],
            },
            Case {
                name: "keep_last 0 still keeps the newest good one",
                images: vec![image("a", 40, A), image("b", 50, A)],
                rules: rules("30 days", 0),
                want: vec!["a:keep:newest_good", "b:delete:expired"],
            },
            Case {
                name: "failed newer backups do not count as good",
                images: vec![image("f1", 1, F), image("f2", 2, F), image("a", 90, A)],
                rules: rules("30 days", 0),
                want: vec![
                    "f1:keep:no_newer_good",
                    "f2:keep:no_newer_good",
                    "a:keep:newest_good",
                ],
            },
            Case {
                name: "pending never deleted and not counted as good",
                images: vec![image("p", 45, P), image("a", 50, A), image("b", 60, A)],
                rules: rules("30 days", 1),
                want: vec!["p:keep:pending", "a:keep:keep_last", "b:delete:expired"],
            },
            Case {
                name: "old failed backup deleted once a newer good exists",
                images: vec![image("a", 1, A), image("f", 40, F)],
                rules: rules("30 days", 1),
                want: vec!["a:keep:keep_last", "f:delete:expired"],
            },
            Case {
                name: "never expires",
                images: vec![image("a", 1, A), image("b", 4000, A)],
                rules: rules("never", 1),
                want: vec!["a:keep:keep_last", "b:keep:not_expired"],
            },
            Case {
                name: "young backups are kept",
                images: vec![image("a", 1, A), image("b", 29, A)],
                rules: rules("30 days", 1),
                want: vec!["a:keep:keep_last", "b:keep:not_expired"],
            },
            Case {
                name: "calendar months: 2026-05-22 is exactly 6 months before now",
                images: vec![image("a", 1, A), image("b", 184, A), image("c", 183, A)],
                rules: rules("6 months", 1),
                want: vec!["a:keep:keep_last", "c:keep:not_expired", "b:delete:expired"],
            },
            Case {
                name: "empty group",
                images: vec![],
                rules: rules("30 days", 1),
                want: vec![],
            },
        ];
        for case in cases {
            assert_eq!(run(&case.images, &case.rules), case.want, "{}", case.name);
        }
    }

    #[test]
    fn a_created_at_tag_can_make_a_backup_younger_but_older_by_an_hour_at_most() {
        let mut young_tag = image("b", 40, A);
        young_tag
            .tags
            .insert(tags::CREATED_AT, "2026-11-21T00:00:00Z");
        let mut old_tag = image("c", 40, A);
        old_tag
            .tags
            .insert(tags::CREATED_AT, "2020-01-01T00:00:00Z");
        let images = vec![image("a", 0, A), young_tag, old_tag];
        // Ranked by EC2's time (a tie here, broken by id), aged by the tag.
        assert_eq!(
            run(&images, &rules("30 days", 1)),
            vec!["a:keep:keep_last", "c:delete:expired", "b:keep:not_expired"]
        );
        // 29 days by EC2's time; the tag says 31: aged 29 days and an hour.
        let mut slow_clock = image("d", 29, A);
        slow_clock.tags.insert(
            tags::CREATED_AT,
            (now() - chrono::TimeDelta::days(31)).to_rfc3339(),
        );
        assert_eq!(
            run(&[image("a", 0, A), slow_clock], &rules("30 days", 1)),
            vec!["a:keep:keep_last", "d:keep:not_expired"]
        );
    }

    /// The crash campaign found it: yesterday's daily backup, recorded by EC2
    /// a few seconds after that run started, was 23h59m old at today's run
    /// and kept one more day than `max_age = "1 day"` says.
    #[test]
    fn a_backup_is_aged_from_the_start_of_the_run_that_made_it() {
        let run_start = now() - chrono::TimeDelta::days(1);
        let mut yesterday = image("y", 1, A);
        yesterday.created_at = run_start + chrono::TimeDelta::seconds(40);
        yesterday
            .tags
            .insert(tags::CREATED_AT, run_start.to_rfc3339());
        assert_eq!(
            run(&[image("a", 0, A), yesterday], &rules("1 day", 1)),
            vec!["a:keep:keep_last", "y:delete:expired"]
        );
    }

    /// Issue 8: a tag in the future (a fast clock) must not take a
    /// `keep_last` slot from the real newest backups.
    #[test]
    fn a_future_tag_never_shortens_retention() {
        let mut future = image("f", 10, A);
        future.tags.insert(tags::CREATED_AT, "2030-01-01T00:00:00Z");
        let images = vec![future, image("a", 1, A), image("b", 2, A), image("c", 3, A)];
        assert_eq!(
            run(&images, &rules("1 day", 3)),
            vec![
                "a:keep:keep_last",
                "b:keep:keep_last",
                "c:keep:keep_last",
                "f:keep:not_expired"
            ]
        );
    }
}
