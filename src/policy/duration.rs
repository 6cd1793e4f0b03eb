//! Durations as operators write them in policy files.
//!
//! The old tools took GNU-date phrases ("30 days", "6 months", "1 year"), so
//! those must parse as written. Months and years are calendar units: "1 month"
//! before 31 March is 28 or 29 February, not 30 days, which is what people mean
//! when they say "keep six months of backups". A bare `m` is ambiguous
//! (minutes or months?) and is rejected rather than guessed.

use chrono::{DateTime, Months, TimeDelta, Utc};
use std::fmt;

/// The unit of a [`Duration`]. Fixed units are exact; months and years follow
/// the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
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
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }
}

/// A positive amount of a unit, e.g. `30 days` or `6 months`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    pub amount: u32,
    pub unit: Unit,
}

/// `max_age`: a duration, or `never` (keep forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxAge {
    Never,
    After(Duration),
}

impl Duration {
    /// A fixed length for the duration (a month counted as 28 days, a year
    /// as 365), for schedules rather than ages; `None` past chrono's range.
    pub fn approx_length(&self) -> Option<TimeDelta> {
        let n = i64::from(self.amount);
        match self.unit {
            Unit::Minute => TimeDelta::try_minutes(n),
            Unit::Hour => TimeDelta::try_hours(n),
            Unit::Day => TimeDelta::try_days(n),
            Unit::Week => TimeDelta::try_weeks(n),
            Unit::Month => n.checked_mul(28).and_then(TimeDelta::try_days),
            Unit::Year => n.checked_mul(365).and_then(TimeDelta::try_days),
        }
    }

    /// The instant `self` before `t`; `None` only for absurd amounts that
    /// leave chrono's range (treated by callers as "older than everything").
    pub fn before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let n = i64::from(self.amount);
        match self.unit {
            Unit::Minute => t.checked_sub_signed(TimeDelta::try_minutes(n)?),
            Unit::Hour => t.checked_sub_signed(TimeDelta::try_hours(n)?),
            Unit::Day => t.checked_sub_signed(TimeDelta::try_days(n)?),
            Unit::Week => t.checked_sub_signed(TimeDelta::try_weeks(n)?),
            Unit::Month => t.checked_sub_months(Months::new(self.amount)),
            Unit::Year => t.checked_sub_months(Months::new(self.amount.checked_mul(12)?)),
        }
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
        let plural = if self.amount == 1 { "" } else { "s" };
        write!(f, "{} {}{}", self.amount, self.unit.singular(), plural)
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

/// Parses `<number><unit>` or `<number> <unit>`. The error is a sentence
/// fragment that says what was expected; the caller adds file and position.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, rest) = trimmed.split_at(digits_end);
    let unit_text = rest.trim_start();
    const EXPECTED: &str =
        "expected a number and a unit, like \"30 days\", \"12h\", \"6 months\" or \"1 year\"";
    if number.is_empty() {
        return Err(format!("\"{text}\" is not a duration: {EXPECTED}"));
    }
    let amount: u32 = number
        .parse()
        .map_err(|_| format!("\"{text}\": the number {number} is too large"))?;
    if amount == 0 {
        return Err(format!(
            "\"{text}\" is zero: a duration must be at least 1 of its unit"
        ));
    }
    let unit = match unit_text.to_ascii_lowercase().as_str() {
        "min" | "mins" | "minute" | "minutes" => Unit::Minute,
        "h" | "hr" | "hrs" | "hour" | "hours" => Unit::Hour,
        "d" | "day" | "days" => Unit::Day,
        "w" | "week" | "weeks" => Unit::Week,
        "mo" | "month" | "months" => Unit::Month,
        "y" | "year" | "years" => Unit::Year,
        "m" => {
            return Err(format!(
                "\"{text}\": the unit \"m\" is ambiguous; write \"{amount}min\" for minutes or \"{amount}mo\" for months"
            ))
        }
        "" => return Err(format!("\"{text}\" has no unit: {EXPECTED}")),
        other => {
            return Err(format!(
                "\"{text}\": unknown unit \"{other}\"; expected one of min, h, d, w, mo, y (or minutes, hours, days, weeks, months, years)"
            ))
        }
    };
    Ok(Duration { amount, unit })
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
        Duration { amount, unit }
    }

    fn at(y: i32, m: u32, day: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, day, h, 0, 0).unwrap()
    }

    #[test]
    fn parses_every_documented_spelling() {
        let table = [
            ("30 days", d(30, Unit::Day)),
            ("30days", d(30, Unit::Day)),
            ("30d", d(30, Unit::Day)),
            ("1 day", d(1, Unit::Day)),
            ("6 months", d(6, Unit::Month)),
            ("6mo", d(6, Unit::Month)),
            ("1 month", d(1, Unit::Month)),
            ("1 year", d(1, Unit::Year)),
            ("2y", d(2, Unit::Year)),
            ("12h", d(12, Unit::Hour)),
            ("12 hours", d(12, Unit::Hour)),
            ("1 hour", d(1, Unit::Hour)),
            ("90min", d(90, Unit::Minute)),
            ("5 minutes", d(5, Unit::Minute)),
            ("2 weeks", d(2, Unit::Week)),
            ("1w", d(1, Unit::Week)),
            ("  7 Days ", d(7, Unit::Day)),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_with_a_helpful_message() {
        let table = [
            ("5m", "ambiguous; write \"5min\" for minutes or \"5mo\""),
            ("", "is not a duration"),
            ("days", "is not a duration"),
            ("30", "has no unit"),
            ("0 days", "is zero"),
            ("3 fortnights", "unknown unit \"fortnights\""),
            ("-1 day", "is not a duration"),
            ("99999999999 days", "too large"),
            ("never", "is not a duration"),
        ];
        for (text, want) in table {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
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
