//! The firing rules with an injected clock (nothing sleeps), the parsers, the records and
//! their fold.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::evidence::record::{parse_line, seal, GENESIS_PREV};
use crate::evidence::verify::{verify, Scope};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn cron(expr: &str, tz: &str) -> Trigger {
    Trigger::Cron {
        expr: parse_cron(expr).unwrap(),
        tz: parse_tz(tz).unwrap(),
    }
}

fn every(text: &str) -> Trigger {
    Trigger::Every(parse_every(text).unwrap())
}

fn sched(name: &str, trigger: Trigger, since: DateTime<Utc>) -> Schedule {
    Schedule {
        name: name.to_owned(),
        playbook: "order-lookup".into(),
        playbook_file: None,
        playbook_name: "order-lookup".into(),
        channel: "sample".into(),
        mode: "read_only".into(),
        playbook_sha256: "0".repeat(64),
        trigger,
        inputs: InputSource::None,
        case_from: None,
        jobs: 1,
        paused: false,
        pause: None,
        created_by: "ops".into(),
        created_at: since,
        active_since: since,
        last_slot: None,
        last_fired: None,
        last_skipped: None,
        last_missed: None,
    }
}

const MIN: Duration = Duration::from_secs(60);
const GRACE: Duration = DEFAULT_GRACE;

/// Calls `decide` every `step` from `from` to `to` (inclusive), recording what it says in
/// memory; returns the fired slots and the missed ranges.
fn simulate(
    s: &Schedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: Duration,
) -> (Vec<(DateTime<Utc>, u64)>, Vec<MissedSlots>) {
    let mut last = s.last_slot;
    let mut fired = Vec::new();
    let mut missed = Vec::new();
    let mut now = from;
    while now <= to {
        let d = decide(s, last, now, GRACE, false);
        if let Some(m) = &d.missed {
            missed.push(m.clone());
        }
        if let Action::Fire { slot, covers } = d.action {
            fired.push((slot, covers));
        }
        if let Some(h) = d.high_water() {
            assert!(last.is_none_or(|l| h > l), "the mark only moves forward");
            last = Some(h);
        }
        now += chrono::Duration::from_std(step).unwrap();
    }
    (fired, missed)
}

// ---- triggers -------------------------------------------------------------------------

#[test]
fn cron_is_evaluated_in_the_schedule_time_zone() {
    let shanghai = cron("0 8 * * *", "Asia/Shanghai");
    // 08:30 in Shanghai: the next 08:00 there is tomorrow, 00:00 UTC.
    assert_eq!(
        shanghai.next_after(t("2026-05-01T00:30:00Z")),
        Some(t("2026-05-02T00:00:00Z"))
    );
    assert_eq!(
        shanghai.next_after(t("2026-05-01T23:59:59Z")),
        Some(t("2026-05-02T00:00:00Z"))
    );
    // Strictly after: a slot is never its own successor.
    assert_eq!(
        shanghai.next_after(t("2026-05-02T00:00:00Z")),
        Some(t("2026-05-03T00:00:00Z"))
    );
    let utc = cron("0 8 * * *", "UTC");
    assert_eq!(
        utc.next_after(t("2026-05-01T00:30:00Z")),
        Some(t("2026-05-01T08:00:00Z"))
    );
    // Sub-second times.
    assert_eq!(
        utc.next_after(t("2026-05-01T08:00:00.500Z")),
        Some(t("2026-05-02T08:00:00Z"))
    );
}

#[test]
fn six_field_cron_has_seconds() {
    let c = cron("*/20 * * * * *", "UTC");
    assert_eq!(
        c.next_after(t("2026-05-01T10:00:05Z")),
        Some(t("2026-05-01T10:00:20Z"))
    );
    assert_eq!(
        c.next_after(t("2026-05-01T10:00:40Z")),
        Some(t("2026-05-01T10:01:00Z"))
    );
}

#[test]
fn interval_slots_are_multiples_of_the_interval_since_the_epoch() {
    let e = every("30m");
    assert_eq!(
        e.next_after(t("2026-05-01T10:07:13Z")),
        Some(t("2026-05-01T10:30:00Z"))
    );
    assert_eq!(
        e.next_after(t("2026-05-01T10:30:00Z")),
        Some(t("2026-05-01T11:00:00Z"))
    );
    assert_eq!(
        e.next_after(t("2026-05-01T10:29:59.999Z")),
        Some(t("2026-05-01T10:30:00Z"))
    );
    assert_eq!(
        every("1d").next_after(t("2026-05-01T10:00:00Z")),
        Some(t("2026-05-02T00:00:00Z"))
    );
    assert_eq!(
        every("90s").next_after(t("1970-01-01T00:00:00Z")),
        Some(t("1970-01-01T00:01:30Z"))
    );
}

#[test]
fn last_in_finds_the_latest_slot_of_a_range() {
    let c = cron("0 8 * * *", "UTC");
    assert_eq!(
        c.last_in(t("2026-01-01T00:00:00Z"), t("2026-05-01T09:00:00Z")),
        Some(t("2026-05-01T08:00:00Z"))
    );
    assert_eq!(
        c.last_in(t("2026-05-01T08:00:00Z"), t("2026-05-01T09:00:00Z")),
        None,
        "the range excludes its start"
    );
    assert_eq!(
        c.last_in(t("2026-05-01T07:00:00Z"), t("2026-05-01T08:00:00Z")),
        Some(t("2026-05-01T08:00:00Z")),
        "and includes its end"
    );
    let yearly = cron("0 0 1 1 *", "UTC");
    assert_eq!(
        yearly.last_in(t("2000-06-01T00:00:00Z"), t("2026-05-01T00:00:00Z")),
        Some(t("2026-01-01T00:00:00Z"))
    );
    let e = every("30m");
    assert_eq!(
        e.last_in(t("2026-05-01T09:00:00Z"), t("2026-05-01T10:59:00Z")),
        Some(t("2026-05-01T10:30:00Z"))
    );
    assert_eq!(
        e.last_in(t("2026-05-01T10:31:00Z"), t("2026-05-01T10:59:00Z")),
        None
    );
}

// ---- firing rules -----------------------------------------------------------------------

#[test]
fn a_due_slot_fires_once() {
    let s = sched("daily", cron("0 8 * * *", "UTC"), t("2026-05-01T07:00:00Z"));
    assert_eq!(
        decide(&s, None, t("2026-05-01T07:59:59Z"), GRACE, false),
        Decision::wait()
    );
    let d = decide(&s, None, t("2026-05-01T08:00:30Z"), GRACE, false);
    assert_eq!(
        d,
        Decision {
            missed: None,
            action: Action::Fire {
                slot: t("2026-05-01T08:00:00Z"),
                covers: 1
            }
        }
    );
    // Recorded: the next minute does nothing.
    let last = d.high_water();
    assert_eq!(last, Some(t("2026-05-01T08:00:00Z")));
    assert_eq!(
        decide(&s, last, t("2026-05-01T08:01:30Z"), GRACE, false),
        Decision::wait()
    );
    assert_eq!(
        next_after(&s, t("2026-05-01T08:01:30Z")),
        Some(t("2026-05-02T08:00:00Z"))
    );
}

#[test]
fn slots_before_the_schedule_was_added_never_fire() {
    // Added at 08:05: the 08:00 slot is within the grace window but predates the schedule.
    let s = sched("daily", cron("0 8 * * *", "UTC"), t("2026-05-01T08:05:00Z"));
    assert_eq!(
        decide(&s, None, t("2026-05-01T08:06:00Z"), GRACE, false),
        Decision::wait()
    );
}

#[test]
fn missed_slots_within_the_grace_window_fire_once() {
    // Every 5 minutes; clerk was down from 10:01 to 10:14: 10:05 and 10:10 were not fired.
    let s = sched("often", every("5m"), t("2026-05-01T09:00:00Z"));
    let d = decide(
        &s,
        Some(t("2026-05-01T10:00:00Z")),
        t("2026-05-01T10:14:00Z"),
        GRACE,
        false,
    );
    assert_eq!(d.missed, None);
    assert_eq!(
        d.action,
        Action::Fire {
            slot: t("2026-05-01T10:10:00Z"),
            covers: 2
        }
    );
    let ev = d
        .fired_event("often", &[7, 8], t("2026-05-01T10:14:00Z"))
        .unwrap();
    assert_eq!(
        ev,
        Event::ScheduleFired {
            name: "often".into(),
            slot: "2026-05-01T10:10:00.000Z".into(),
            covers: 2,
            job_ids: vec![7, 8],
            at: "2026-05-01T10:14:00.000Z".into(),
        }
    );
    assert_eq!(d.missed_event("often", t("2026-05-01T10:14:00Z")), None);
    assert_eq!(d.skipped_event("often", t("2026-05-01T10:14:00Z")), None);
}

#[test]
fn slots_older_than_the_grace_window_are_missed_as_one_range() {
    let s = sched("often", every("5m"), t("2026-05-01T09:00:00Z"));
    // Down from 10:01 to 12:03; the grace window reaches back to 11:48.
    let d = decide(
        &s,
        Some(t("2026-05-01T10:00:00Z")),
        t("2026-05-01T12:03:00Z"),
        GRACE,
        false,
    );
    assert_eq!(
        d.missed,
        Some(MissedSlots {
            first: t("2026-05-01T10:05:00Z"),
            last: t("2026-05-01T11:45:00Z"),
            count: 21,
            count_capped: false,
        })
    );
    assert_eq!(
        d.action,
        Action::Fire {
            slot: t("2026-05-01T12:00:00Z"),
            covers: 3
        }
    );
    assert_eq!(d.high_water(), Some(t("2026-05-01T12:00:00Z")));
    assert_eq!(
        d.missed_event("often", t("2026-05-01T12:03:00Z")),
        Some(Event::ScheduleMissed {
            name: "often".into(),
            first_slot: "2026-05-01T10:05:00.000Z".into(),
            slot: "2026-05-01T11:45:00.000Z".into(),
            count: 21,
            count_capped: false,
            at: "2026-05-01T12:03:00.000Z".into(),
        })
    );

    // A daily cron down for two days: both slots missed, nothing due, nothing fires.
    let s = sched("daily", cron("0 8 * * *", "UTC"), t("2026-04-01T00:00:00Z"));
    let d = decide(
        &s,
        Some(t("2026-05-01T08:00:00Z")),
        t("2026-05-03T09:00:00Z"),
        GRACE,
        false,
    );
    assert_eq!(d.action, Action::Wait);
    let m = d.missed.clone().unwrap();
    assert_eq!(
        (m.first, m.last, m.count),
        (t("2026-05-02T08:00:00Z"), t("2026-05-03T08:00:00Z"), 2)
    );
    // Recorded, they are not reported again.
    assert_eq!(
        decide(&s, d.high_water(), t("2026-05-03T09:01:00Z"), GRACE, false),
        Decision::wait()
    );
}

#[test]
fn a_long_outage_counts_missed_slots_up_to_the_cap() {
    let s = sched("fast", cron("* * * * *", "UTC"), t("2025-01-01T00:00:00Z"));
    let d = decide(
        &s,
        Some(t("2025-01-01T00:00:00Z")),
        t("2026-01-01T00:00:30Z"),
        GRACE,
        false,
    );
    let m = d.missed.unwrap();
    assert_eq!(m.first, t("2025-01-01T00:01:00Z"));
    assert_eq!(m.last, t("2025-12-31T23:45:00Z"));
    assert_eq!((m.count, m.count_capped), (MAX_COUNT, true));
    assert_eq!(
        d.action,
        Action::Fire {
            slot: t("2026-01-01T00:00:00Z"),
            covers: 15
        }
    );
    // Intervals count exactly by arithmetic, and cap the same way.
    let s = sched("iv", every("1m"), t("2025-01-01T00:00:00Z"));
    let d = decide(&s, None, t("2025-01-01T02:00:00Z"), GRACE, false);
    assert_eq!(d.missed.unwrap().count, 105);
}

#[test]
fn a_running_previous_firing_skips_the_slot_for_good() {
    let s = sched("often", every("5m"), t("2026-05-01T09:00:00Z"));
    let last = Some(t("2026-05-01T10:00:00Z"));
    let d = decide(&s, last, t("2026-05-01T10:05:10Z"), GRACE, true);
    assert_eq!(
        d.action,
        Action::Skip {
            slot: t("2026-05-01T10:05:00Z"),
            covers: 1,
            reason: "the previous firing is still running".into()
        }
    );
    assert!(matches!(
        d.skipped_event("often", t("2026-05-01T10:05:10Z")),
        Some(Event::ScheduleSkipped { covers: 1, .. })
    ));
    assert_eq!(d.fired_event("often", &[], t("2026-05-01T10:05:10Z")), None);
    // The previous firing finishes at 10:06: the skipped slot does not fire late.
    assert_eq!(
        decide(&s, d.high_water(), t("2026-05-01T10:06:00Z"), GRACE, false),
        Decision::wait()
    );
    assert_eq!(
        decide(&s, d.high_water(), t("2026-05-01T10:10:00Z"), GRACE, false).action,
        Action::Fire {
            slot: t("2026-05-01T10:10:00Z"),
            covers: 1
        }
    );
}

#[test]
fn a_paused_schedule_does_nothing_and_resuming_skips_the_pause() {
    let mut s = sched("often", every("5m"), t("2026-05-01T09:00:00Z"));
    s.paused = true;
    assert_eq!(
        decide(
            &s,
            Some(t("2026-05-01T10:00:00Z")),
            t("2026-05-01T10:30:00Z"),
            GRACE,
            false
        ),
        Decision::wait()
    );
    assert_eq!(next_after(&s, t("2026-05-01T10:30:00Z")), None);
    // Resumed at 10:20:00: slots up to and including 10:20 were the pause's.
    s.paused = false;
    s.active_since = t("2026-05-01T10:20:00Z");
    assert_eq!(
        decide(
            &s,
            Some(t("2026-05-01T10:00:00Z")),
            t("2026-05-01T10:21:00Z"),
            GRACE,
            false
        ),
        Decision::wait()
    );
    assert_eq!(
        decide(
            &s,
            Some(t("2026-05-01T10:00:00Z")),
            t("2026-05-01T10:25:00Z"),
            GRACE,
            false
        )
        .action,
        Action::Fire {
            slot: t("2026-05-01T10:25:00Z"),
            covers: 1
        }
    );
}

#[test]
fn calling_every_minute_fires_every_slot_exactly_once() {
    let s = sched("half-hourly", every("30m"), t("2026-05-01T00:00:00Z"));
    let (fired, missed) = simulate(
        &s,
        t("2026-05-01T00:00:00Z"),
        t("2026-05-01T12:00:00Z"),
        MIN,
    );
    assert!(missed.is_empty());
    assert_eq!(fired.len(), 24);
    for (i, (slot, covers)) in fired.iter().enumerate() {
        assert_eq!(*covers, 1);
        assert_eq!(
            *slot,
            t("2026-05-01T00:30:00Z") + chrono::Duration::minutes(30 * i as i64)
        );
    }
}

#[test]
fn dst_changes_in_berlin_never_fire_a_slot_twice() {
    // Europe/Berlin: 2026-03-29 02:00 → 03:00 (02:30 does not exist); 2026-10-25 03:00 →
    // 02:00 (02:30 happens twice).
    let daily = sched(
        "night",
        cron("30 2 * * *", "Europe/Berlin"),
        t("2026-03-27T00:00:00Z"),
    );
    let (fired, missed) = simulate(
        &daily,
        t("2026-03-27T00:00:00Z"),
        t("2026-03-31T00:00:00Z"),
        MIN,
    );
    assert!(missed.is_empty());
    let slots: Vec<_> = fired.iter().map(|(s, _)| *s).collect();
    // 27th, 28th, 30th at 02:30 local; on the 29th 02:30 does not exist: at most one firing
    // that day.
    assert!(slots.contains(&t("2026-03-27T01:30:00Z")), "{slots:?}");
    assert!(slots.contains(&t("2026-03-28T01:30:00Z")), "{slots:?}");
    assert!(slots.contains(&t("2026-03-30T00:30:00Z")), "{slots:?}");
    let on_29th: Vec<_> = slots
        .iter()
        .filter(|s| **s >= t("2026-03-28T23:00:00Z") && **s < t("2026-03-29T22:00:00Z"))
        .collect();
    // croner runs a fixed time that falls into the gap at the first time after it, once:
    // 03:00 CEST.
    assert_eq!(on_29th, [&t("2026-03-29T01:00:00Z")], "{slots:?}");

    let daily = sched(
        "night",
        cron("30 2 * * *", "Europe/Berlin"),
        t("2026-10-23T00:00:00Z"),
    );
    let (fired, missed) = simulate(
        &daily,
        t("2026-10-23T00:00:00Z"),
        t("2026-10-27T00:00:00Z"),
        MIN,
    );
    assert!(missed.is_empty());
    let on_25th: Vec<_> = fired
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| *s >= t("2026-10-24T22:00:00Z") && *s < t("2026-10-25T23:00:00Z"))
        .collect();
    assert_eq!(
        on_25th,
        [t("2026-10-25T00:30:00Z")],
        "02:30 happens twice, fires once, the first time: {fired:?}"
    );
    assert_eq!(fired.len(), 4, "{fired:?}");

    // Hourly across both changes: every slot distinct and increasing, none twice. In spring
    // every UTC hour is a local full hour (10 slots); in autumn local 02:00 comes twice and
    // runs once, at its first occurrence (9 slots: 01:00 UTC, the second 02:00, is not one).
    for (from, to, count) in [
        ("2026-03-28T20:00:00Z", "2026-03-29T06:00:00Z", 10),
        ("2026-10-24T20:00:00Z", "2026-10-25T06:00:00Z", 9),
    ] {
        let hourly = sched("hourly", cron("0 * * * *", "Europe/Berlin"), t(from));
        let (fired, missed) = simulate(&hourly, t(from), t(to), MIN);
        assert!(missed.is_empty());
        assert!(fired.windows(2).all(|w| w[0].0 < w[1].0), "{fired:?}");
        assert_eq!(fired.len(), count, "{fired:?}");
    }
}

// ---- parsing ----------------------------------------------------------------------------

fn cron_error(expr: &str) -> String {
    match parse_cron(expr) {
        Err(e @ ScheduleError::BadCron { .. }) => e.to_string(),
        other => panic!("{expr}: expected a cron error, got {other:?}"),
    }
}

#[test]
fn cron_errors_name_the_field() {
    assert!(cron_error("0 25 * * *").contains("hour field `25`"));
    assert!(cron_error("61 * * * *").contains("minute field `61`"));
    assert!(cron_error("0 8 32 * *").contains("day of month field `32`"));
    assert!(cron_error("0 8 * 13 *").contains("month field `13`"));
    assert!(cron_error("0 8 * * MON-XYZ").contains("day of week field `MON-XYZ`"));
    assert!(cron_error("75 0 8 * * *").contains("second field `75`"));
    assert!(cron_error("0 8 * *").contains("expected 5 fields"));
    assert!(cron_error("0 8 * * * * *").contains("found 7"));
    assert!(cron_error("   ").contains("empty"));
    assert!(cron_error("0 0 30 2 *").contains("never matches"));
    assert!(parse_cron("@daily").is_ok());
    assert_eq!(parse_cron(" 0  8 * * *  ").unwrap().as_str(), "0 8 * * *");
}

#[test]
fn time_zones_are_iana_names() {
    assert_eq!(parse_tz("Asia/Shanghai").unwrap().name(), "Asia/Shanghai");
    assert_eq!(parse_tz("UTC").unwrap().name(), "UTC");
    let e = parse_tz("Mars/Olympus_Mons").unwrap_err();
    assert!(matches!(e, ScheduleError::BadTz(_)));
    assert!(e.to_string().contains("IANA"), "{e}");
}

#[test]
fn intervals_parse_and_refuse_clearly() {
    assert_eq!(parse_every("30m").unwrap(), Duration::from_secs(1800));
    assert_eq!(parse_every("2h").unwrap(), Duration::from_secs(7200));
    assert_eq!(parse_every("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_every("1d").unwrap(), Duration::from_secs(86_400));
    for (text, needle) in [
        ("30s", "shortest interval is 1 minute"),
        ("0m", "shortest interval is 1 minute"),
        ("30", "missing unit"),
        ("5w", "unknown unit"),
        ("1.5h", "unknown unit"),
        ("m", "whole number"),
        ("", "missing unit"),
        ("-5m", "whole number"),
        ("400d", "longest interval"),
        ("99999999999999999999m", "too large"),
        ("9999999999999999d", "too large"),
    ] {
        let e = parse_every(text).unwrap_err();
        assert!(matches!(e, ScheduleError::BadEvery { .. }), "{text}: {e:?}");
        assert!(e.to_string().contains(needle), "{text}: {e}");
    }
    for d in ["30m", "2h", "90s", "1d"] {
        assert_eq!(format_every(parse_every(d).unwrap()), d);
    }
}

#[test]
fn names_are_checked() {
    for ok in ["morning-logistics", "a", "carrier.wait_30m", "X1"] {
        assert!(validate_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "-x", "has space", "ünï", "a/b", &"x".repeat(65)] {
        assert!(
            matches!(validate_name(bad), Err(ScheduleError::BadName(_))),
            "{bad}"
        );
    }
}

// ---- records ----------------------------------------------------------------------------

fn all_schedule_events() -> Vec<Event> {
    let s = sched(
        "s",
        cron("0 8 * * *", "Asia/Shanghai"),
        t("2026-05-01T00:00:00Z"),
    );
    vec![
        s.added_event(),
        Event::SchedulePaused {
            name: "s".into(),
            by: "ops".into(),
            reason: "carrier portal down".into(),
            at: "2026-05-01T01:00:00.000Z".into(),
        },
        Event::ScheduleResumed {
            name: "s".into(),
            by: "ops".into(),
            at: "2026-05-01T02:00:00.000Z".into(),
        },
        Event::ScheduleFired {
            name: "s".into(),
            slot: "2026-05-02T00:00:00.000Z".into(),
            covers: 1,
            job_ids: vec![1, 2],
            at: "2026-05-02T00:00:05.000Z".into(),
        },
        Event::ScheduleSkipped {
            name: "s".into(),
            slot: "2026-05-03T00:00:00.000Z".into(),
            covers: 1,
            reason: "the previous firing is still running".into(),
            at: "2026-05-03T00:00:05.000Z".into(),
        },
        Event::ScheduleMissed {
            name: "s".into(),
            first_slot: "2026-05-04T00:00:00.000Z".into(),
            slot: "2026-05-05T00:00:00.000Z".into(),
            count: 2,
            count_capped: false,
            at: "2026-05-05T01:00:00.000Z".into(),
        },
        Event::ScheduleRemoved {
            name: "s".into(),
            by: "ops".into(),
            at: "2026-05-06T00:00:00.000Z".into(),
        },
    ]
}

#[test]
fn schedule_records_follow_the_event_conventions() {
    let mut prev = GENESIS_PREV.to_owned();
    for (i, event) in all_schedule_events().into_iter().enumerate() {
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["type"], event.type_name());
        assert!(event.type_name().starts_with("schedule_"));
        assert_eq!(event.schedule_name(), Some("s"));
        assert_eq!(event.run_id(), None);
        let (record, line) = seal(
            i as u64 + 1,
            "2026-05-01T00:00:00.000Z".into(),
            prev.clone(),
            event,
        )
        .unwrap();
        let parsed = parse_line(line.as_bytes()).unwrap();
        assert!(parsed.intact());
        assert_eq!(parsed.record, record);
        prev = record.hash;
    }
    // Unknown fields are refused, as for every record.
    let bad = r#"{"type":"schedule_removed","name":"s","by":"ops","at":"t","extra":1}"#;
    assert!(serde_json::from_str::<Event>(bad).is_err());
}

#[test]
fn the_added_record_round_trips() {
    let mut s = sched(
        "s",
        cron("0 8 * * 1-5", "Asia/Shanghai"),
        t("2026-05-01T00:00:00.123Z"),
    );
    s.inputs = InputSource::File("/data/open-refunds.csv".into());
    s.case_from = Some("order_id".into());
    s.jobs = 3;
    s.playbook_file = Some("/data/playbooks/x.yaml".into());
    assert_eq!(Schedule::from_added(&s.added_event()).unwrap(), s);
    let mut e = sched("e", every("30m"), t("2026-05-01T00:00:00Z"));
    e.inputs = InputSource::Url("https://ops.example/open.csv".into());
    assert_eq!(Schedule::from_added(&e.added_event()).unwrap(), e);
    assert!(Schedule::from_added(&all_schedule_events()[1]).is_err());
}

fn record(seq: u64, event: Event) -> Record {
    seal(
        seq,
        "2026-05-01T00:00:00.000Z".into(),
        GENESIS_PREV.into(),
        event,
    )
    .unwrap()
    .0
}

#[test]
fn the_fold_keeps_names_unique_and_state_per_incarnation() {
    let first = sched("s", every("30m"), t("2026-05-01T00:00:00Z"));
    let mut rival = sched("s", every("1h"), t("2026-05-01T00:00:01Z"));
    rival.created_by = "alice".into();
    let events = all_schedule_events();
    let mut records = vec![
        record(1, first.added_event()),
        record(2, rival.added_event()),
    ];
    let mut seq = 3;
    for e in &events[1..6] {
        records.push(record(seq, e.clone()));
        seq += 1;
    }
    let folded = Schedules::from_records(&records);
    let s = folded.get("s").unwrap();
    assert_eq!(s.trigger, every("30m"), "the first add wins");
    assert_eq!(s.created_by, "ops");
    assert!(!s.paused);
    assert_eq!(s.active_since, t("2026-05-01T02:00:00Z"), "resume moves it");
    assert_eq!(s.last_slot, Some(t("2026-05-05T00:00:00Z")));
    assert_eq!(s.last_fired.as_ref().unwrap().job_ids, vec![1, 2]);
    assert_eq!(s.last_missed.as_ref().unwrap().count, 2);
    assert!(s.last_skipped.is_some());

    // Paused, then removed, then added again: a fresh schedule.
    records.push(record(seq, events[1].clone()));
    let paused = Schedules::from_records(&records);
    assert!(paused.get("s").unwrap().paused);
    assert_eq!(paused.get("s").unwrap().pause.as_ref().unwrap().by, "ops");
    records.push(record(seq + 1, events[6].clone()));
    assert!(Schedules::from_records(&records).is_empty());
    records.push(record(seq + 2, rival.added_event()));
    let again = Schedules::from_records(&records);
    let s = again.get("s").unwrap();
    assert_eq!(s.created_by, "alice");
    assert_eq!(s.last_slot, None);
    assert!(s.last_fired.is_none() && !s.paused);

    // Slots never move the mark back.
    records.push(record(
        seq + 3,
        Event::ScheduleFired {
            name: "s".into(),
            slot: "2026-06-01T00:00:00.000Z".into(),
            covers: 1,
            job_ids: vec![],
            at: "x".into(),
        },
    ));
    records.push(record(
        seq + 4,
        Event::ScheduleMissed {
            name: "s".into(),
            first_slot: "2026-05-20T00:00:00.000Z".into(),
            slot: "2026-05-21T00:00:00.000Z".into(),
            count: 2,
            count_capped: false,
            at: "x".into(),
        },
    ));
    let s = Schedules::from_records(&records).get("s").unwrap().clone();
    assert_eq!(s.last_slot, Some(t("2026-06-01T00:00:00Z")));
}

/// The daemon's loop against a real store, reopened ("restarted") every 7 minutes and after
/// an outage: every slot is recorded at most once, and `clerk verify` accepts the records.
#[test]
fn restarts_recompute_from_the_journal_and_never_fire_a_slot_twice() {
    let dir = tempfile::tempdir().unwrap();
    let start = t("2026-05-01T07:58:00Z");
    let s = sched("carrier", every("5m"), start);
    {
        let store = Store::open(dir.path()).unwrap();
        store.append(s.added_event()).unwrap();
    }
    let mut now = start;
    let mut store = Store::open(dir.path()).unwrap();
    let mut step = 0;
    while now <= t("2026-05-01T11:01:00Z") {
        // An outage from 08:41 to 09:50: nothing runs.
        let down = now > t("2026-05-01T08:41:00Z") && now < t("2026-05-01T09:50:00Z");
        if !down {
            if step % 7 == 0 {
                drop(store);
                store = Store::open(dir.path()).unwrap();
            }
            let all = Schedules::load(&store).unwrap();
            let cur = all.get("carrier").unwrap();
            // A firing "runs" for 90 seconds; the catch-up after the outage for 6 minutes.
            let running = cur.last_fired.as_ref().is_some_and(|f| {
                let took = if f.covers > 1 { 360 } else { 90 };
                now - t(&f.at) < chrono::Duration::seconds(took)
            });
            let d = decide(cur, cur.last_slot, now, GRACE, running);
            // Deciding twice at the same instant gives the same answer (pure).
            assert_eq!(d, decide(cur, cur.last_slot, now, GRACE, running));
            if let Some(e) = d.missed_event("carrier", now) {
                store.append(e).unwrap();
            }
            if let Some(e) = d.skipped_event("carrier", now) {
                store.append(e).unwrap();
            }
            if let Some(e) = d.fired_event("carrier", &[step], now) {
                store.append(e).unwrap();
            }
        }
        now += chrono::Duration::seconds(50);
        step += 1;
    }
    let records = store.schedule_records().unwrap();
    let mut slots = Vec::new();
    let mut missed = 0;
    for r in &records {
        match &r.event {
            Event::ScheduleFired { slot, .. } | Event::ScheduleSkipped { slot, .. } => {
                slots.push(t(slot))
            }
            Event::ScheduleMissed {
                first_slot,
                slot,
                count,
                ..
            } => {
                missed += count;
                assert_eq!(*first_slot, "2026-05-01T08:45:00.000Z");
                assert_eq!(*slot, "2026-05-01T09:35:00.000Z");
            }
            _ => {}
        }
    }
    assert!(slots.windows(2).all(|w| w[0] < w[1]), "{slots:?}");
    assert_eq!(missed, 11);
    // Back at 09:50:30, 09:40 .. 09:50 are within the grace window: one firing for them.
    let catch_up = records.iter().find_map(|r| match &r.event {
        Event::ScheduleFired { slot, covers, .. } if slot == "2026-05-01T09:50:00.000Z" => {
            Some(*covers)
        }
        _ => None,
    });
    assert_eq!(catch_up, Some(3));
    // It was still running at 09:55:30: 09:55 skipped, and not fired later.
    let skipped: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::ScheduleSkipped { slot, .. } => Some(slot.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, ["2026-05-01T09:55:00.000Z"]);
    // 08:00 .. 08:40 (9), the catch-up, 09:55 .. 11:00 (14): each slot once, fired or skipped.
    assert_eq!(slots.len(), 9 + 1 + 14);
    drop(store);
    let report = verify(dir.path(), &Scope::All).unwrap();
    assert!(report.ok(), "{report}");
}

#[test]
fn job_specs_carry_the_schedule_and_the_case() {
    let mut s = sched("s", every("30m"), t("2026-05-01T00:00:00Z"));
    s.case_from = Some("order_id".into());
    let rows = vec![
        BTreeMap::from([("order_id".to_owned(), "SO-100001".to_owned())]),
        BTreeMap::from([("order_id".to_owned(), String::new())]),
    ];
    let specs = s.job_specs(t("2026-05-01T08:00:00Z"), rows);
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0].case_ref.as_deref(), Some("SO-100001"));
    assert_eq!(specs[1].case_ref, None);
    assert_eq!(specs[0].priority, Priority::Scheduled);
    assert_eq!(specs[0].schedule.as_deref(), Some("s"));
    assert_eq!(specs[0].slot, Some(t("2026-05-01T08:00:00Z")));
    assert_eq!(specs[0].operator, "ops");
    assert_eq!(specs[0].playbook, "order-lookup");
    s.playbook_file = Some("/p/x.yaml".into());
    assert_eq!(
        s.job_specs(t("2026-05-01T08:00:00Z"), vec![BTreeMap::new()])[0].playbook,
        "/p/x.yaml"
    );
}

#[test]
fn jobs_enqueued_for_an_unrecorded_slot_are_found() {
    let job = |id: u64, schedule: Option<&str>, slot: &str| Job {
        id: JobId(id),
        spec: JobSpec {
            schedule: schedule.map(str::to_owned),
            slot: Some(t(slot)),
            ..JobSpec::new("p", "sample", "ops")
        },
        state: JobState::Queued,
        // Enqueue times come from the queue's own clock: they do not decide.
        enqueued_at: t("2030-01-01T00:00:00Z"),
        attempts: 0,
        not_before: None,
        lease: None,
        last_error: None,
        dead_reason: None,
        outcome: None,
        last_run_id: None,
        crashes: 0,
        finished_at: None,
    };
    let jobs = vec![
        job(1, Some("s"), "2026-05-01T07:30:00Z"),
        job(2, Some("s"), "2026-05-01T08:00:00Z"),
        job(3, Some("other"), "2026-05-01T08:00:00Z"),
        job(4, None, "2026-05-01T08:00:00Z"),
        job(5, Some("s"), "2026-05-01T08:00:00Z"),
    ];
    assert_eq!(
        unrecorded_jobs("s", t("2026-05-01T08:00:00Z"), &jobs),
        vec![JobId(2), JobId(5)]
    );
}
