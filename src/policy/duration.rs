//! Durations as operators write them in policy files.
//!
//! backupViaTag took GNU-date phrases ("+30 days", "1 week 2 days",
//! "6 months"), so those must mean here what they meant there ([`parse`]
//! reads them). Months and years are calendar units: "1 month" before
//! 31 March is 28 or 29 February, not 30 days, which is what people mean when
//! they say "keep six months of backups".

mod parse;

pub use parse::parse_duration;

use chrono::{DateTime, Months, TimeDelta, Utc};
use std::fmt;

/// A unit a duration is written in. Fixed units are exact; months and years
/// follow the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    fn singular(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    /// Largest first, the order a duration is displayed in.
    const ALL: [Unit; 7] = [
        Unit::Year,
        Unit::Month,
        Unit::Week,
        Unit::Day,
        Unit::Hour,
        Unit::Minute,
        Unit::Second,
    ];
}

/// A positive span, e.g. `30 days`, `6 months` or `1 week 2 days`: an amount
/// of each unit, as written (GNU date adds the parts of a compound phrase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Duration {
    /// Indexed like [`Unit::ALL`].
    amounts: [u32; 7],
}

/// `max_age`: a duration, or `never` (keep forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxAge {
    Never,
    After(Duration),
}

impl Duration {
    /// `amount` of `unit`.
    pub fn of(amount: u32, unit: Unit) -> Duration {
        let mut d = Duration::default();
        d.amounts[Self::slot(unit)] = amount;
        d
    }

    fn slot(unit: Unit) -> usize {
        Unit::ALL
            .iter()
            .position(|u| *u == unit)
            .expect("every unit has a slot")
    }

    fn amount(&self, unit: Unit) -> i64 {
        i64::from(self.amounts[Self::slot(unit)])
    }

    /// `self` plus `amount` of `unit`; `None` when an amount overflows.
    pub fn plus(mut self, amount: u32, unit: Unit) -> Option<Duration> {
        let slot = &mut self.amounts[Self::slot(unit)];
        *slot = slot.checked_add(amount)?;
        Some(self)
    }

    pub fn is_zero(&self) -> bool {
        self.amounts.iter().all(|a| *a == 0)
    }

    /// Calendar months (years count twelve), days (weeks count seven) and
    /// seconds: the three kinds of step GNU date takes.
    fn steps(&self) -> Option<(u32, i64, i64)> {
        let months = u32::try_from(self.amount(Unit::Year) * 12 + self.amount(Unit::Month)).ok()?;
        let days = self.amount(Unit::Week) * 7 + self.amount(Unit::Day);
        let seconds = self.amount(Unit::Hour) * 3600
            + self.amount(Unit::Minute) * 60
            + self.amount(Unit::Second);
        Some((months, days, seconds))
    }

    /// A fixed length for the duration (a month counted as 28 days, a year
    /// as 365), for schedules rather than ages; `None` past chrono's range.
    pub fn approx_length(&self) -> Option<TimeDelta> {
        let days = (self.amount(Unit::Year) * 365)
            .checked_add(self.amount(Unit::Month) * 28)?
            .checked_add(self.amount(Unit::Week) * 7)?
            .checked_add(self.amount(Unit::Day))?;
        let (_, _, seconds) = self.steps()?;
        TimeDelta::try_days(days)?.checked_add(&TimeDelta::try_seconds(seconds)?)
    }

    /// The instant `self` before `t`; `None` only for absurd amounts that
    /// leave chrono's range (treated by callers as "older than everything").
    pub fn before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (months, days, seconds) = self.steps()?;
        t.checked_sub_months(Months::new(months))?
            .checked_sub_signed(TimeDelta::try_days(days)?)?
            .checked_sub_signed(TimeDelta::try_seconds(seconds)?)
    }

    /// The instant `self` after `t`, stepping as GNU date does: months, then
    /// days, then seconds. Only a month step that lands past the end of a
    /// month differs: chrono stops at the month's last day, GNU date rolls
    /// over into the next month (31 January + 1 month: 28 February here,
    /// 3 March there).
    pub fn after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (months, days, seconds) = self.steps()?;
        t.checked_add_months(Months::new(months))?
            .checked_add_signed(TimeDelta::try_days(days)?)?
            .checked_add_signed(TimeDelta::try_seconds(seconds)?)
    }

    /// Whether something created at `created` is at least this old at `now`.
    pub fn elapsed(&self, created: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match self.before(now) {
            Some(cutoff) => created <= cutoff,
            None => false,
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (unit, amount) in Unit::ALL.iter().zip(self.amounts) {
            if amount == 0 {
                continue;
            }
            let plural = if amount == 1 { "" } else { "s" };
            let space = if first { "" } else { " " };
            write!(f, "{space}{amount} {}{plural}", unit.singular())?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Display for MaxAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxAge::Never => f.write_str("never"),
            MaxAge::After(d) => d.fmt(f),
        }
    }
}

/// Parses a `max_age`: a duration or `never`.
pub fn parse_max_age(text: &str) -> Result<MaxAge, String> {
    if text.trim().eq_ignore_ascii_case("never") {
        Ok(MaxAge::Never)
    } else {
        parse_duration(text).map(MaxAge::After)
    }
}

/// A short human age for reasons: "45 minutes", "26 hours", "31 days".
pub fn human_age(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let delta = to.signed_duration_since(from);
    let minutes = delta.num_minutes();
    if minutes < 0 {
        return "in the future".to_string();
    }
    let (n, unit) = if minutes < 120 {
        (minutes, "minute")
    } else if minutes < 48 * 60 {
        (delta.num_hours(), "hour")
    } else {
        (delta.num_days(), "day")
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn d(amount: u32, unit: Unit) -> Duration {
        Duration::of(amount, unit)
    }

    fn at(y: i32, m: u32, day: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, day, h, 0, 0).unwrap()
    }

    #[test]
    fn max_age_accepts_never() {
        assert_eq!(parse_max_age("never"), Ok(MaxAge::Never));
        assert_eq!(parse_max_age("Never"), Ok(MaxAge::Never));
        assert_eq!(parse_max_age("30d"), Ok(MaxAge::After(d(30, Unit::Day))));
    }

    #[test]
    fn calendar_months_follow_the_calendar() {
        // One month before 31 March is the end of February, not 1 March.
        assert_eq!(
            d(1, Unit::Month).before(at(2027, 3, 31, 0)),
            Some(at(2027, 2, 28, 0))
        );
        assert_eq!(
            d(1, Unit::Month).before(at(2028, 3, 31, 0)),
            Some(at(2028, 2, 29, 0))
        );
        assert_eq!(
            d(1, Unit::Year).before(at(2028, 2, 29, 0)),
            Some(at(2027, 2, 28, 0))
        );
        assert_eq!(
            d(6, Unit::Month).before(at(2027, 1, 15, 6)),
            Some(at(2026, 7, 15, 6))
        );
        assert_eq!(
            d(2, Unit::Week).before(at(2027, 1, 15, 6)),
            Some(at(2027, 1, 1, 6))
        );
    }

    #[test]
    fn elapsed_is_inclusive_at_the_boundary() {
        let now = at(2026, 11, 22, 12);
        let day = d(1, Unit::Day);
        assert!(day.elapsed(at(2026, 11, 21, 12), now));
        assert!(!day.elapsed(at(2026, 11, 21, 13), now));
        assert!(!d(u32::MAX, Unit::Year).elapsed(at(2000, 1, 1, 0), now));
    }

    #[test]
    fn ages_read_naturally() {
        let now = at(2026, 11, 22, 12);
        assert_eq!(human_age(at(2026, 11, 22, 11), now), "60 minutes");
        assert_eq!(human_age(at(2026, 11, 21, 10), now), "26 hours");
        assert_eq!(human_age(at(2026, 10, 22, 12), now), "31 days");
        assert_eq!(human_age(at(2026, 11, 23, 12), now), "in the future");
    }

    #[test]
    fn displays_like_it_is_written() {
        assert_eq!(d(1, Unit::Day).to_string(), "1 day");
        assert_eq!(d(30, Unit::Day).to_string(), "30 days");
        assert_eq!(MaxAge::Never.to_string(), "never");
    }
}
