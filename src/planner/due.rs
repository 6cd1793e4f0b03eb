//! When a new backup is due.
//!
//! A scheduler that runs once per `every` must get exactly one backup per
//! run, never none and never two. Runs drift: cron starts a little early or
//! late, observing and applying take minutes, EC2 records a backup seconds
//! after the run's clock. Judging "at least `every` old" exactly skips a run
//! whenever the previous backup landed a little later than this run started,
//! which on a daily schedule means 48 hours without a backup. So:
//!
//! - a backup's age is counted from when it was taken, the earlier of its
//!   `backupctl:created-at` tag (the clock of the run that made it, read when
//!   that run started) and EC2's own time ([`Backup::taken_at`]): time spent
//!   observing and applying does not count, and a tag from a fast clock can
//!   never delay the next backup;
//! - a backup is due once the newest good-or-pending one is `every` old less a
//!   slack of a quarter of `every`, at most one hour ([`slack`]), so a run
//!   that starts early still finds it due.
//!
//! The price: a scheduler that runs much more often than `every` gets a
//! backup every `every` less the slack (45 minutes for `every = "1h"`, 23
//! hours for `"1 day"`).
//!
//! [`Backup::taken_at`]: crate::inventory::Backup::taken_at

use crate::policy::{human_age, Duration};
use chrono::{DateTime, TimeDelta, Utc};

/// The slack is `every` divided by this...
pub const SLACK_DIVISOR: i32 = 4;
/// ...and at most this many minutes.
pub const SLACK_CAP_MINUTES: i64 = 60;

/// How much earlier than `every` a backup is already due: a quarter of
/// `every` (a month counted as 28 days, a year as 365), at most an hour.
pub fn slack(every: Duration) -> TimeDelta {
    let cap = TimeDelta::minutes(SLACK_CAP_MINUTES);
    every
        .approx_length()
        .map_or(cap, |l| (l / SLACK_DIVISOR).min(cap))
}

/// `Some(why)` when a backup is due at `now`, given when the newest
/// good-or-pending backup was taken; `none` is the reason when there is none.
/// The reason lacks the "due: " prefix.
pub fn due(
    every: Duration,
    newest: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    none: &str,
) -> Option<String> {
    let Some(taken) = newest else {
        return Some(none.to_string());
    };
    let judged_at = now.checked_add_signed(slack(every)).unwrap_or(now);
    every
        .elapsed(taken, judged_at)
        .then(|| format!("newest backup {} old, every {every}", human_age(taken, now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_duration;
    use chrono::TimeZone;

    fn every(text: &str) -> Duration {
        parse_duration(text).unwrap()
    }

    #[test]
    fn slack_is_a_quarter_of_every_at_most_an_hour() {
        assert_eq!(slack(every("1h")), TimeDelta::minutes(15));
        assert_eq!(slack(every("20min")), TimeDelta::minutes(5));
        assert_eq!(slack(every("12h")), TimeDelta::hours(1));
        assert_eq!(slack(every("1 day")), TimeDelta::hours(1));
        assert_eq!(slack(every("1 year")), TimeDelta::hours(1));
        assert_eq!(slack(every("1000 years")), TimeDelta::hours(1));
    }

    #[test]
    fn due_a_little_before_every_and_not_before() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap();
        let daily = every("1 day");
        let ago = |m: i64| Some(now - TimeDelta::minutes(m));
        // The previous daily run's backup, 23h59m old: due (the bug was "no").
        assert!(due(daily, ago(24 * 60 - 1), now, "none").is_some());
        assert!(due(daily, ago(23 * 60), now, "none").is_some());
        assert!(due(daily, ago(23 * 60 - 1), now, "none").is_none());
        assert!(due(daily, ago(0), now, "none").is_none());
        assert_eq!(
            due(daily, None, now, "no backup yet").unwrap(),
            "no backup yet"
        );
        let hourly = every("1h");
        assert!(due(hourly, ago(45), now, "none").is_some());
        assert!(due(hourly, ago(44), now, "none").is_none());
    }
}
