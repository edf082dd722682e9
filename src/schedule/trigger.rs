//! When a schedule fires: cron expressions in an IANA time zone (`croner` + `chrono-tz`) or a
//! fixed interval, and the slots (firing times) they produce.
//!
//! A slot is an instant (UTC). Cron slots are whole seconds of the schedule's time zone,
//! found by croner on the zoned time, so daylight-saving changes are croner's rules
//! (measured in the unit tests, Europe/Berlin): a fixed time that falls into the gap when
//! clocks go forward runs once, at the first time after it (`30 2 * * *` at 03:00); a local
//! time that happens twice when clocks go back runs once, the first time (an hourly
//! pattern runs once in the repeated hour). Interval slots are the multiples of the interval since the
//! Unix epoch (`--every 30m` fires at :00 and :30 UTC, `--every 1d` at midnight UTC): they
//! do not depend on when the schedule was added, so every process computes the same slots.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::ScheduleError;

/// The shortest interval `--every` accepts.
pub const MIN_EVERY: Duration = Duration::from_secs(60);
/// The longest interval `--every` accepts (a year and a day).
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 86_400);

/// A cron expression, parsed once, with the text it was parsed from.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    /// Shared: a parsed pattern is large and never changes.
    cron: std::sync::Arc<croner::Cron>,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpr {}

impl CronExpr {
    /// The expression as given (whitespace normalized to single spaces).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// What makes a schedule fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Slots where the expression matches the local time of `tz`.
    Cron { expr: CronExpr, tz: Tz },
    /// Every multiple of the interval since the Unix epoch (whole seconds).
    Every(Duration),
}

impl Trigger {
    /// The first slot strictly after `t`, `None` when there is none (a cron expression that
    /// matches no date after `t`).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Every(every) => {
                let step = i64::try_from(every.as_secs()).ok().filter(|s| *s > 0)?;
                let k = t.timestamp().div_euclid(step).checked_add(1)?;
                Utc.timestamp_opt(k.checked_mul(step)?, 0).single()
            }
            Trigger::Cron { expr, tz } => cron_next(&expr.cron, tz, t),
        }
    }

    /// The last slot at or before `until` and strictly after `after`, if any.
    ///
    /// Uses only [`Trigger::next_after`]: it looks for a slot in windows ending at `until`
    /// that double in length until one holds a slot (or reaches back to `after`), then walks
    /// forward to the last one. The walk covers at most about twice the slots of the first
    /// window that holds one, so it stays short whatever the gap.
    pub fn last_in(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if until <= after {
            return None;
        }
        if let Trigger::Every(every) = self {
            let step = i64::try_from(every.as_secs()).ok().filter(|s| *s > 0)?;
            let k = until.timestamp().div_euclid(step);
            let slot = Utc.timestamp_opt(k.checked_mul(step)?, 0).single()?;
            return (slot > after).then_some(slot);
        }
        let mut window = chrono::Duration::seconds(1);
        loop {
            let from = until
                .checked_sub_signed(window)
                .filter(|f| *f > after)
                .unwrap_or(after);
            let mut last = None;
            let mut cursor = from;
            while let Some(next) = self.next_after(cursor) {
                if next > until {
                    break;
                }
                last = Some(next);
                cursor = next;
            }
            if last.is_some() || from == after {
                return last;
            }
            window = window.checked_mul(2)?;
        }
    }

    /// The time zone cron expressions are evaluated in (`None` for intervals).
    pub fn tz(&self) -> Option<Tz> {
        match self {
            Trigger::Cron { tz, .. } => Some(*tz),
            Trigger::Every(_) => None,
        }
    }

    /// `cron 0 8 * * * (Asia/Shanghai)` or `every 30m`.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Cron { expr, tz } => format!("cron {} ({})", expr.as_str(), tz.name()),
            Trigger::Every(d) => format!("every {}", format_every(*d)),
        }
    }
}

/// The next match of `cron` strictly after `t`, evaluated in `tz`.
fn cron_next(cron: &croner::Cron, tz: &Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Slots are whole seconds: the first one after `t` is the first one after `t`'s second
    // (croner would otherwise carry the fraction into its answer).
    let mut from = t.with_nanosecond(0).unwrap_or(t).with_timezone(tz);
    // In a repeated hour (daylight saving ends) croner answers the earlier instant of an
    // ambiguous local time, which can be at or before `t`: search again from there, so
    // callers can rely on "strictly after".
    for _ in 0..3 {
        let next = cron.find_next_occurrence(&from, false).ok()?;
        let next = next.with_timezone(&Utc);
        if next > t {
            return Some(next);
        }
        from = next.with_timezone(tz);
    }
    None
}

/// Names of the fields of a 5-field and a 6-field (seconds first) expression.
const FIELDS_5: [&str; 5] = ["minute", "hour", "day of month", "month", "day of week"];
const FIELDS_6: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day of month",
    "month",
    "day of week",
];

fn croner_parse(text: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| e.to_string())
}

/// Parses a cron expression: 5 fields (minute hour day-of-month month day-of-week) or 6
/// with seconds first, or an alias (`@daily`, `@hourly`, ...). The error names the field
/// that is wrong. An expression that never matches (`0 0 30 2 *`) is refused.
pub fn parse_cron(text: &str) -> Result<CronExpr, ScheduleError> {
    let expr = compile_cron(text)?;
    // A pattern can parse and still never match (February 30th).
    let probe = Trigger::Cron {
        expr: expr.clone(),
        tz: Tz::UTC,
    };
    if probe.next_after(Utc::now()).is_none() {
        return Err(ScheduleError::BadCron {
            expr: text.to_owned(),
            field: "expression".to_owned(),
            message: "it never matches a date (e.g. a day the month does not have)".to_owned(),
        });
    }
    Ok(expr)
}

/// [`parse_cron`] without the check that the expression matches some date (records of
/// schedules already added are folded with this).
pub(crate) fn compile_cron(text: &str) -> Result<CronExpr, ScheduleError> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let normalized = fields.join(" ");
    let bad = |field: &str, message: String| ScheduleError::BadCron {
        expr: text.to_owned(),
        field: field.to_owned(),
        message,
    };
    if normalized.is_empty() {
        return Err(bad("expression", "it is empty".into()));
    }
    let names: &[&str] = match fields.len() {
        1 if normalized.starts_with('@') => &[],
        5 => &FIELDS_5,
        6 => &FIELDS_6,
        n => {
            return Err(bad(
                "expression",
                format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 \
                     (second first), found {n}"
                ),
            ))
        }
    };
    let cron = match croner_parse(&normalized) {
        Ok(c) => c,
        Err(message) => {
            // Name the field: the first one that fails on its own, every other field `*`.
            let field = names
                .iter()
                .enumerate()
                .find(|(i, _)| {
                    let probe: Vec<&str> = (0..names.len())
                        .map(|j| if j == *i { fields[j] } else { "*" })
                        .collect();
                    croner_parse(&probe.join(" ")).is_err()
                })
                .map(|(i, name)| format!("{name} field `{}`", fields[i]))
                .unwrap_or_else(|| "expression".to_owned());
            return Err(bad(&field, message));
        }
    };
    Ok(CronExpr {
        text: normalized,
        cron: std::sync::Arc::new(cron),
    })
}

/// Parses an IANA time zone name (`Asia/Shanghai`, `Europe/Berlin`, `UTC`).
pub fn parse_tz(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name.trim()).map_err(|_| ScheduleError::BadTz(name.to_owned()))
}

/// Parses `--every`: a whole number followed by `s`, `m`, `h` or `d` (`90s`, `30m`, `2h`,
/// `1d`), at least a minute and at most 366 days.
pub fn parse_every(text: &str) -> Result<Duration, ScheduleError> {
    let bad = |message: &str| ScheduleError::BadEvery {
        value: text.to_owned(),
        message: message.to_owned(),
    };
    let t = text.trim();
    let unit_at = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("missing unit: write e.g. 90s, 30m, 2h or 1d"))?;
    let (number, unit) = t.split_at(unit_at);
    if number.is_empty() {
        return Err(bad("expected a whole number before the unit, e.g. 30m"));
    }
    let n: u64 = number.parse().map_err(|_| bad("the number is too large"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(bad(
                "unknown unit: use s, m, h or d (e.g. 90s, 30m, 2h, 1d)",
            ))
        }
    };
    let secs = n
        .checked_mul(scale)
        .ok_or_else(|| bad("the number is too large"))?;
    let d = Duration::from_secs(secs);
    if d < MIN_EVERY {
        return Err(bad("the shortest interval is 1 minute (60s)"));
    }
    if d > MAX_EVERY {
        return Err(bad("the longest interval is 366 days"));
    }
    Ok(d)
}

/// An interval in the largest unit that divides it: `30m`, `2h`, `90s`, `1d`.
pub fn format_every(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s > 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s > 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
