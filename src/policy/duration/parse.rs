//! Reading a duration phrase the way GNU date reads a relative date.
//!
//! backupViaTag passed `-e "+30 days"` to `date --date`, so its users wrote
//! GNU's grammar: an optional `+`, then one or more items, each an amount and
//! a unit ("1 week 2 days", "1 year 6 months"), a bare unit ("week" is one
//! week), `next`/ordinal words ("next month", "third day") or `tomorrow`;
//! units in GNU's spellings (year, month, fortnight, week, day, hour,
//! minute/min, second/sec, any case, an `s` for plurals). Each accepted phrase
//! spans what `date -d` adds for it (checked against GNU date's own answers in
//! `fixtures/durations/gnu-date.tsv`).
//!
//! What GNU date would read as going back in time (`-1 day`, `3 weeks ago`,
//! `last week`), as nothing (`0 days`, `now`), and what it refuses
//! (`1.5 days`) is rejected with a hint: a retention period must be a
//! positive span. backupctl's own short forms (`30d`, `12h`, `2w`, `1y`,
//! `6mo`, `90min`, `2hr`) stay accepted, but a single-letter unit only when
//! attached to its number: GNU date reads "30 d" as the clock time in
//! military time zone D, so the phrase is ambiguous. A bare `m` (minutes or
//! months?) is rejected too.

use super::{Duration, Unit};

const EXPECTED: &str = "expected an amount and a unit, like \"30 days\", \"+30 days\", \"1 week 2 days\", \"12h\", \"6 months\" or \"1 year\"";

#[derive(Debug, PartialEq)]
enum Token<'a> {
    /// Digits, maybe signed; `fraction` holds what follows a `.` or `,`.
    Number {
        negative: bool,
        digits: &'a str,
        fraction: Option<&'a str>,
    },
    /// Letters, with whether a number ends right before them ("30d").
    Word { text: &'a str, attached: bool },
}

fn tokens(text: &str) -> Result<Vec<Token<'_>>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut number_ended_at = None;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let attached = number_ended_at == Some(start);
            out.push(Token::Word {
                text: &text[start..i],
                attached,
            });
        } else if c.is_ascii_digit() || c == b'+' || c == b'-' {
            let negative = c == b'-';
            if !c.is_ascii_digit() {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i == bytes.len() || !bytes[i].is_ascii_digit() {
                    return Err(format!(
                        "\"{text}\": a sign must be followed by a number; {EXPECTED}"
                    ));
                }
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &text[start..i];
            let mut fraction = None;
            if i + 1 < bytes.len()
                && matches!(bytes[i], b'.' | b',')
                && bytes[i + 1].is_ascii_digit()
            {
                let f = i + 1;
                i = f;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                fraction = Some(&text[f..i]);
            }
            out.push(Token::Number {
                negative,
                digits,
                fraction,
            });
            number_ended_at = Some(i);
            continue;
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(format!(
                "\"{text}\": unexpected \"{ch}\"; {EXPECTED} (parts separated by spaces only)"
            ));
        }
        number_ended_at = None;
    }
    Ok(out)
}

/// GNU date's unit words, and backupctl's short forms. The `bool` says the
/// word is a short form that GNU date reads as something else when it stands
/// alone (a military time zone letter).
fn unit(word: &str) -> Option<(Unit, u32, bool)> {
    let lower = word.to_ascii_lowercase();
    let gnu = |w: &str| match w {
        "year" => Some((Unit::Year, 1)),
        "month" => Some((Unit::Month, 1)),
        "fortnight" => Some((Unit::Week, 2)),
        "week" => Some((Unit::Week, 1)),
        "day" => Some((Unit::Day, 1)),
        "hour" => Some((Unit::Hour, 1)),
        "minute" | "min" => Some((Unit::Minute, 1)),
        "second" | "sec" => Some((Unit::Second, 1)),
        _ => None,
    };
    if let Some((u, n)) = gnu(&lower).or_else(|| lower.strip_suffix('s').and_then(gnu)) {
        return Some((u, n, false));
    }
    match lower.as_str() {
        "mo" => Some((Unit::Month, 1, false)),
        "hr" | "hrs" => Some((Unit::Hour, 1, false)),
        "y" => Some((Unit::Year, 1, true)),
        "w" => Some((Unit::Week, 1, true)),
        "d" => Some((Unit::Day, 1, true)),
        "h" => Some((Unit::Hour, 1, true)),
        _ => None,
    }
}

/// GNU date's ordinal words that count forward.
fn ordinal(word: &str) -> Option<u32> {
    let words = [
        "next", "first", "", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
        "tenth", "eleventh", "twelfth",
    ];
    let lower = word.to_ascii_lowercase();
    match lower.as_str() {
        "next" => Some(1),
        _ => words
            .iter()
            .position(|w| !w.is_empty() && *w == lower)
            .map(|p| p as u32),
    }
}

/// How to write `whole.fraction` of `unit` in a smaller unit, if exactly.
fn fraction_hint(whole: &str, fraction: &str, unit: Unit, per: u32) -> String {
    // `per` is 2 for fortnights, counted as weeks.
    let smaller: &[(Unit, u32)] = match unit {
        Unit::Year => &[(Unit::Month, 12)],
        Unit::Week => &[(Unit::Day, 7), (Unit::Hour, 7 * 24)],
        Unit::Day => &[(Unit::Hour, 24), (Unit::Minute, 24 * 60)],
        Unit::Hour => &[(Unit::Minute, 60), (Unit::Second, 3600)],
        Unit::Minute => &[(Unit::Second, 60)],
        Unit::Month | Unit::Second => &[],
    };
    let exact = smaller.iter().find_map(|&(small, factor)| {
        let scale = 10u64.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        let value =
            whole.parse::<u64>().ok()?.checked_mul(scale)? + fraction.parse::<u64>().ok()?;
        let total = value.checked_mul(u64::from(factor * per))?;
        let whole = u32::try_from(total / scale).ok()?;
        (total % scale == 0).then(|| Duration::of(whole, small))
    });
    match exact {
        Some(d) => format!("; write \"{d}\""),
        None => "; write it in a smaller unit".to_string(),
    }
}

/// Parses a duration phrase. The error is a sentence fragment that says what
/// was expected; the caller adds file and position.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let tokens = tokens(text)?;
    if tokens.is_empty() {
        return Err(format!("\"{text}\" is not a duration: {EXPECTED}"));
    }
    let backwards = |what: &str| {
        Err(format!(
            "\"{text}\" counts backwards ({what}): a duration is a positive span, like \"30 days\""
        ))
    };
    let mut total = Duration::default();
    // An amount waiting for its unit, and how it was written.
    let mut pending: Option<(u32, &Token)> = None;
    for token in &tokens {
        match token {
            Token::Number {
                negative,
                digits,
                fraction,
            } => {
                if let Some((_, before)) = pending {
                    return Err(missing_unit(text, before));
                }
                if *negative {
                    return backwards("a negative amount");
                }
                let amount = if fraction.is_some() {
                    0
                } else {
                    digits
                        .parse()
                        .map_err(|_| format!("\"{text}\": the number {digits} is too large"))?
                };
                pending = Some((amount, token));
            }
            Token::Word {
                text: word,
                attached,
            } => {
                let lower = word.to_ascii_lowercase();
                match lower.as_str() {
                    "ago" => return backwards("\"ago\""),
                    "last" | "yesterday" => return backwards(&format!("\"{word}\"")),
                    "m" => {
                        let n = pending.map_or(1, |(n, _)| n);
                        return Err(format!(
                            "\"{text}\": the unit \"m\" is ambiguous; write \"{n}min\" for minutes or \"{n}mo\" for months"
                        ));
                    }
                    "tomorrow" | "today" | "now" | "this" if pending.is_none() => {
                        if lower == "tomorrow" {
                            total = total.plus(1, Unit::Day).ok_or_else(|| too_large(text))?;
                        } else if lower == "this" {
                            pending = Some((0, token));
                        }
                        continue;
                    }
                    _ => {}
                }
                if let Some(n) = ordinal(word) {
                    if let Some((_, before)) = pending {
                        return Err(missing_unit(text, before));
                    }
                    pending = Some((n, token));
                    continue;
                }
                let Some((unit, per, letter)) = unit(word) else {
                    if pending.is_none() && total.is_zero() {
                        return Err(format!("\"{text}\" is not a duration: {EXPECTED}"));
                    }
                    return Err(format!(
                        "\"{text}\": unknown unit \"{word}\"; expected one of years, months, fortnights, weeks, days, hours, minutes, seconds (or the short forms y, mo, w, d, h, min)"
                    ));
                };
                if letter && !attached {
                    let n = pending.map_or(1, |(n, _)| n);
                    return Err(format!(
                        "\"{text}\": a one-letter unit must touch its number (\"{n}{word}\"), or be written out (\"{}\"): GNU date reads a lone \"{word}\" as a time zone",
                        Duration::of(n.max(1), unit)
                    ));
                }
                let amount = match pending.take() {
                    Some((
                        _,
                        Token::Number {
                            digits,
                            fraction: Some(fraction),
                            ..
                        },
                    )) => {
                        return Err(format!(
                            "\"{text}\": fractions are not accepted (GNU date refuses them too){}",
                            fraction_hint(digits, fraction, unit, per)
                        ))
                    }
                    Some((n, _)) => n,
                    None if letter => {
                        return Err(format!("\"{text}\" is not a duration: {EXPECTED}"))
                    }
                    None => 1,
                };
                let amount = amount.checked_mul(per).ok_or_else(|| too_large(text))?;
                total = total.plus(amount, unit).ok_or_else(|| too_large(text))?;
            }
        }
    }
    if let Some((_, token)) = pending {
        return Err(match token {
            Token::Number { .. } if tokens.len() == 1 => {
                format!("\"{text}\" has no unit: {EXPECTED}")
            }
            _ => missing_unit(text, token),
        });
    }
    if total.is_zero() {
        return Err(format!(
            "\"{text}\" is zero: a duration must be at least 1 of its unit"
        ));
    }
    if total.steps().is_none() || total.approx_length().is_none() {
        return Err(too_large(text));
    }
    Ok(total)
}

fn missing_unit(text: &str, token: &Token) -> String {
    let what = match token {
        Token::Number { digits, .. } => digits.to_string(),
        Token::Word { text, .. } => format!("\"{text}\""),
    };
    format!("\"{text}\": {what} has no unit after it; {EXPECTED}")
}

fn too_large(text: &str) -> String {
    format!(
        "\"{text}\" is too large a duration (to keep backups forever, write max_age = \"never\")"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn d(amount: u32, unit: Unit) -> Duration {
        Duration::of(amount, unit)
    }

    #[test]
    fn parses_every_documented_spelling() {
        let table = [
            ("30 days", d(30, Unit::Day)),
            ("30days", d(30, Unit::Day)),
            ("30d", d(30, Unit::Day)),
            ("+30 days", d(30, Unit::Day)),
            ("+ 30 days", d(30, Unit::Day)),
            ("1 day", d(1, Unit::Day)),
            ("6 months", d(6, Unit::Month)),
            ("6mo", d(6, Unit::Month)),
            ("6 mo", d(6, Unit::Month)),
            ("1 month", d(1, Unit::Month)),
            ("1 year", d(1, Unit::Year)),
            ("2y", d(2, Unit::Year)),
            ("12h", d(12, Unit::Hour)),
            ("2 hrs", d(2, Unit::Hour)),
            ("12 hours", d(12, Unit::Hour)),
            ("90min", d(90, Unit::Minute)),
            ("5 minutes", d(5, Unit::Minute)),
            ("2 weeks", d(2, Unit::Week)),
            ("1 fortnight", d(2, Unit::Week)),
            ("1w", d(1, Unit::Week)),
            ("  7 Days ", d(7, Unit::Day)),
            ("week", d(1, Unit::Week)),
            ("next month", d(1, Unit::Month)),
            ("tomorrow", d(1, Unit::Day)),
            (
                "1 week 2 days",
                d(1, Unit::Week).plus(2, Unit::Day).unwrap(),
            ),
            (
                "1 year 6 months",
                d(1, Unit::Year).plus(6, Unit::Month).unwrap(),
            ),
            (
                "+1 week +2 days",
                d(1, Unit::Week).plus(2, Unit::Day).unwrap(),
            ),
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
            ("days 30", "30 has no unit after it"),
            ("30", "has no unit"),
            ("0 days", "is zero"),
            ("now", "is zero"),
            ("this week", "is zero"),
            ("3 fortnites", "unknown unit \"fortnites\""),
            ("-1 day", "counts backwards"),
            ("3 weeks ago", "counts backwards"),
            ("last week", "counts backwards"),
            ("1 week -2 days", "counts backwards"),
            (
                "1.5 days",
                "fractions are not accepted (GNU date refuses them too); write \"36 hours\"",
            ),
            ("0.5 weeks", "write \"84 hours\""),
            ("1,5 years", "write \"18 months\""),
            ("1.5 months", "write it in a smaller unit"),
            (
                "30 d",
                "must touch its number (\"30d\"), or be written out (\"30 days\")",
            ),
            ("d", "must touch"),
            ("1 week, 2 days", "unexpected \",\""),
            ("99999999999 days", "too large"),
            ("4294967295 years 4294967295 years", "too large"),
            ("never", "is not a duration"),
            ("forever", "is not a duration"),
            ("+", "a sign must be followed by a number"),
        ];
        for (text, want) in table {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    /// Every phrase of the GNU-date fixture: where GNU date adds a positive
    /// span, the same span from the same start; where it adds nothing, goes
    /// back or refuses the phrase, a rejection (backupctl's short forms,
    /// which GNU date does not know, and a negative part, aside).
    #[test]
    fn every_phrase_spans_what_gnu_date_adds() {
        let fixture = include_str!("../../../fixtures/durations/gnu-date.tsv");
        let start = Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap();
        let short_forms = ["6 mo", "2 hr"];
        // GNU date sums it to 5 days; a part that counts back is a typo more
        // often than a way to write 5 days.
        let refused_on_purpose = ["1 week -2 days"];
        let mut checked = 0;
        for line in fixture.lines().filter(|l| !l.starts_with('#')) {
            let (phrase, gnu) = line.split_once('\t').expect("phrase<TAB>span");
            let ours = parse_duration(phrase);
            match gnu.parse::<i64>() {
                _ if refused_on_purpose.contains(&phrase) => assert!(ours.is_err(), "{phrase:?}"),
                Ok(span) if span > 0 => {
                    let d = ours.unwrap_or_else(|e| {
                        panic!("{phrase:?}: GNU adds {span} s, we refuse: {e}")
                    });
                    let end = d.after(start).expect("in range");
                    assert_eq!((end - start).num_seconds(), span, "{phrase:?} ({d})");
                }
                _ if short_forms.contains(&phrase) => assert!(ours.is_ok(), "{phrase:?}"),
                _ => assert!(
                    ours.is_err(),
                    "{phrase:?}: GNU says {gnu}, we accept {ours:?}"
                ),
            }
            checked += 1;
        }
        assert!(checked > 300, "the fixture holds {checked} phrases");
    }
}
