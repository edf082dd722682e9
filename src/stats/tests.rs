//! Period boundaries, channel filtering and the classifiers, on hand-made records (the
//! store stamps `ts` with the real clock, so these build records directly).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use super::*;

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 4, h, m, 0)
        .single()
        .expect("valid time")
}

struct Journal(Vec<Record>);

impl Journal {
    fn at(&mut self, when: DateTime<Utc>, event: Event) -> &mut Self {
        let seq = self.0.len() as u64 + 1;
        self.0.push(Record {
            seq,
            ts: evidence::timestamp(when),
            prev: String::new(),
            hash: String::new(),
            event,
        });
        self
    }

    fn run(&mut self, id: &str, channel: &str, start: DateTime<Utc>) -> &mut Self {
        self.run_of(id, channel, start, None)
    }

    /// A run that replays `replay_of` (`clerk replay`) when given.
    fn run_of(
        &mut self,
        id: &str,
        channel: &str,
        start: DateTime<Utc>,
        replay_of: Option<&str>,
    ) -> &mut Self {
        self.at(
            start,
            Event::RunStarted {
                run_id: id.into(),
                playbook: "p".into(),
                playbook_version: "1".into(),
                playbook_sha256: format!("sha-{channel}"),
                channel: channel.into(),
                mode: "read_only".into(),
                operator: "ops".into(),
                case_ref: None,
                inputs: BTreeMap::new(),
                batch_id: None,
                approval_id: None,
                owner: "o".into(),
                claims: Default::default(),
                replay_of: replay_of.map(str::to_owned),
                rollback_of: None,
            },
        )
    }

    fn finish(&mut self, id: &str, status: &str, at: DateTime<Utc>) -> &mut Self {
        self.at(
            at,
            Event::RunFinished {
                run_id: id.into(),
                status: status.into(),
                error: None,
                fields: BTreeMap::new(),
                finished_at: evidence::timestamp(at),
                browser: None,
            },
        )
    }
}

fn query(since: DateTime<Utc>, until: DateTime<Utc>, channel: Option<&str>) -> StatsQuery {
    StatsQuery {
        since,
        until,
        channel: channel.map(str::to_owned),
    }
}

fn stats(j: &Journal, q: &StatsQuery) -> Stats {
    compute_records(&j.0, q, t(23, 0), &mut |_| true).expect("stats compute")
}

#[test]
fn a_run_counts_in_the_period_of_its_start_and_since_is_inclusive_until_exclusive() {
    let mut j = Journal(Vec::new());
    j.run("before", "a", t(8, 59))
        .finish("before", "ok", t(9, 1))
        .run("at-since", "a", t(9, 0))
        .finish("at-since", "failed", t(9, 2))
        .run("late-finish", "a", t(9, 30))
        .finish("late-finish", "ok", t(10, 0))
        .run("at-until", "a", t(10, 0))
        .finish("at-until", "ok", t(10, 1));
    let s = stats(&j, &query(t(9, 0), t(10, 0), None));
    assert_eq!(s.overall.runs, 2, "{s:#?}");
    // The finish of late-finish is at `until`: the journal as it stood then had no finish.
    assert_eq!(s.overall.runs_by_outcome.get("failed"), Some(&1));
    assert_eq!(s.overall.runs_by_outcome.get("unfinished"), Some(&1));
    assert_eq!(s.overall.finished, 1);
    assert_eq!(s.overall.success_rate, Some(0.0));
    // One minute later late-finish's finish is in; at-until started but its finish is not.
    let s = stats(&j, &query(t(9, 0), t(10, 1), None));
    assert_eq!(s.overall.runs, 3);
    assert_eq!(s.overall.ok, 1);
    assert_eq!(s.overall.runs_by_outcome.get("unfinished"), Some(&1));
    assert_eq!(s.overall.run_durations.count, 2);
    assert_eq!(s.overall.run_durations.sum_secs, 120.0 + 1800.0);
    assert_eq!(s.days.len(), 1);
    assert_eq!(s.days[0].date, "2026-05-04");
    assert_eq!((s.days[0].runs, s.days[0].ok, s.days[0].not_ok), (3, 1, 1));
}

#[test]
fn paused_runs_are_listed_but_not_judged() {
    let mut j = Journal(Vec::new());
    j.run("ok", "a", t(9, 0))
        .finish("ok", "ok", t(9, 1))
        .run("stopped", "a", t(9, 2))
        .finish("stopped", "paused", t(9, 3))
        .run("bad", "a", t(9, 4))
        .finish("bad", "failed", t(9, 5));
    let s = stats(&j, &query(t(9, 0), t(10, 0), None));
    assert_eq!(s.overall.runs, 3);
    assert_eq!(s.overall.runs_by_outcome.get("paused"), Some(&1));
    assert_eq!(s.overall.finished, 2, "{s:#?}");
    assert_eq!(s.overall.success_rate, Some(0.5));
    assert_eq!((s.days[0].runs, s.days[0].ok, s.days[0].not_ok), (3, 1, 1));
}

#[test]
fn one_channel_is_counted_alone_and_overall_is_the_sum() {
    let mut j = Journal(Vec::new());
    j.run("a1", "a", t(9, 0))
        .finish("a1", "ok", t(9, 1))
        .run("b1", "b", t(9, 5))
        .finish("b1", "session_expired", t(9, 6))
        .run("b2", "b", t(9, 7))
        .finish("b2", "ok", t(9, 8));
    j.at(
        t(9, 7),
        Event::RequestBlocked {
            run_id: "b2".into(),
            step: Some(0),
            method: "POST".into(),
            url: "http://x/".into(),
            resource_type: "XHR".into(),
            frame: "f".into(),
            target: "page".into(),
            reason: "POST is a write and no approved submit allows it".into(),
        },
    );
    j.at(
        t(9, 9),
        Event::JobRetried {
            job: 1,
            run_id: None,
            channel: "a".into(),
            playbook: "p".into(),
            attempt: 1,
            reason: "timeout".into(),
            not_before: None,
            at: "x".into(),
        },
    );
    let all = stats(&j, &query(t(0, 0), t(12, 0), None));
    assert_eq!(all.overall.runs, 3);
    assert_eq!(all.channels.len(), 2);
    assert_eq!(all.channels["b"].session_expiries, 1);
    assert_eq!(all.channels["b"].blocked_by_kind.get("write"), Some(&1));
    assert_eq!(all.channels["a"].retries, 1);
    assert_eq!(all.overall.retries, 1);
    assert_eq!(all.days.len(), 1, "12 hours of one day: {:?}", all.days);

    let b = stats(&j, &query(t(0, 0), t(12, 0), Some("b")));
    assert_eq!(b.channels.keys().collect::<Vec<_>>(), vec!["b"]);
    assert_eq!(b.overall, b.channels["b"]);
    assert_eq!(b.overall.runs, 2);
    assert_eq!(b.overall.retries, 0);
    assert_eq!(b.overall.blocked_requests, 1);
    assert_eq!(b.days[0].runs, 2);
}

#[test]
fn an_empty_period_is_an_error() {
    let j = Journal(Vec::new());
    assert!(matches!(
        compute_records(&j.0, &query(t(9, 0), t(9, 0), None), t(9, 0), &mut |_| true),
        Err(StatsError::EmptyPeriod { .. })
    ));
}

#[test]
fn days_cover_the_whole_period() {
    let j = Journal(Vec::new());
    let since = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
    let until = Utc.with_ymd_and_hms(2026, 5, 4, 0, 0, 0).unwrap();
    let s = stats(&j, &query(since, until, None));
    let dates: Vec<&str> = s.days.iter().map(|d| d.date.as_str()).collect();
    assert_eq!(dates, ["2026-05-01", "2026-05-02", "2026-05-03"]);
}

#[test]
fn times_parse_as_spans_back_from_now_or_as_dates() {
    let now = t(12, 0);
    assert_eq!(
        parse_time("7d", now).unwrap(),
        now - chrono::Duration::days(7)
    );
    assert_eq!(
        parse_time("24h", now).unwrap(),
        now - chrono::Duration::hours(24)
    );
    assert_eq!(parse_time("30m", now).unwrap(), t(11, 30));
    assert_eq!(
        parse_time("2w", now).unwrap(),
        now - chrono::Duration::days(14)
    );
    assert_eq!(
        parse_time("2026-05-01", now).unwrap(),
        Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap()
    );
    assert_eq!(parse_time("2026-05-04T09:00:00Z", now).unwrap(), t(9, 0));
    for bad in ["", "7", "d", "7y", "yesterday", "99999999999999999999d"] {
        assert!(parse_time(bad, now).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn percentiles_are_nearest_rank() {
    let l = latency(vec![5000, 1000, 3000, 2000, 4000]);
    assert_eq!(l.count, 5);
    assert_eq!(l.median_secs, Some(3.0));
    assert_eq!(l.p90_secs, Some(5.0));
    assert_eq!(l.max_secs, Some(5.0));
    let l = latency(vec![1000, 2000]);
    assert_eq!(l.median_secs, Some(1.0));
    assert_eq!(latency(vec![]).median_secs, None);
}

#[test]
fn blocked_reasons_are_grouped_by_kind() {
    for (method, reason, kind) in [
        (
            "GET",
            "origin http://outside.invalid is not in the channel's allowed origins",
            "off_origin",
        ),
        (
            "POST",
            "POST is a write and no approved submit allows it",
            "write",
        ),
        (
            "POST",
            "POST is a write: held for review, not sent",
            "draft_held_write",
        ),
        (
            "POST",
            "POST http://h/x is not the approved write; the submit window is closed",
            "submit_window",
        ),
        (
            "POST",
            "POST http://h/x is not the approved endpoint (blocked during the submit)",
            "submit_window",
        ),
        (
            "WEBSOCKET",
            "websocket ws://h/ blocked: the channel allows no WebSocket to it",
            "websocket",
        ),
        (
            "CONNECT",
            "connection to http://h/ blocked by the guard's content security policy (connect-src)",
            "connection",
        ),
        (
            "GET",
            "service worker registration blocked: the channel does not allow service workers",
            "service_worker",
        ),
        (
            "POST",
            "content security policy report of the site (not sent)",
            "site_csp_report",
        ),
        ("GET", "something new", "other"),
    ] {
        assert_eq!(blocked_kind(method, reason), kind, "{reason}");
    }
}

#[test]
fn submit_refusals_are_classified_and_mismatches_told_apart() {
    use crate::approval::{is_mismatch_kind, submit_refusal_kind};
    for (reason, kind, mismatch) in [
        ("draft hash mismatch (approved a, now b): method: approved \"x\", now \"y\"", "draft_changed", true),
        ("the page's write POST http://h/r is not the approved write (body.amount): nothing was submitted", "write_differs", true),
        ("declared write POST http://h/a differs from the approved POST http://h/b", "write_differs", true),
        ("the page sent a second write (POST http://h/r) together with the approved one: nothing was submitted", "second_write", false),
        ("the page tried a second write during submit (POST x), which is not the approved write: nothing was submitted", "second_write", false),
        ("activating #submit sent no write: nothing within 15s; nothing was submitted", "no_write", true),
        ("playbook p.yaml is not the version approval ap-1 was drafted with: its SHA-256 is a, the approved text's is b", "playbook_changed", true),
        ("refund-draft (p.yaml): approval ap-1 is expired", "not_usable", false),
    ] {
        let k = submit_refusal_kind(reason);
        assert_eq!(k, kind, "{reason}");
        assert_eq!(is_mismatch_kind(k), mismatch, "{reason}");
    }
}

fn requested(j: &mut Journal, id: &str, at: DateTime<Utc>, expires: DateTime<Utc>) {
    j.at(
        at,
        Event::ApprovalRequested {
            approval_id: id.into(),
            run_id: format!("run-{id}"),
            request: "{}".into(),
            draft_hash: "h".into(),
            requester: "ops".into(),
            channel: "a".into(),
            case_ref: None,
            created_at: evidence::timestamp(at),
            expires_at: evidence::timestamp(expires),
        },
    );
}

fn decided(j: &mut Journal, id: &str, decision: &str, at: DateTime<Utc>) {
    j.at(
        at,
        Event::ApprovalDecided {
            approval_id: id.into(),
            decision: decision.into(),
            reviewer: "carol".into(),
            note: None,
            draft_hash: "h".into(),
            decided_at: evidence::timestamp(at),
        },
    );
}

#[test]
fn approvals_wait_until_decided_or_expired_and_latencies_come_from_record_times() {
    let mut j = Journal(Vec::new());
    requested(&mut j, "x", t(9, 0), t(12, 0));
    requested(&mut j, "y", t(9, 5), t(10, 0));
    requested(&mut j, "z", t(9, 6), t(12, 0));
    decided(&mut j, "x", "approved", t(9, 10));
    decided(&mut j, "z", "rejected", t(9, 36));
    // A second decision does not count.
    decided(&mut j, "z", "approved", t(9, 37));
    j.at(
        t(9, 30),
        Event::ApprovalUsed {
            approval_id: "x".into(),
            run_id: "r".into(),
            used_at: "x".into(),
        },
    );
    j.at(
        t(9, 30),
        Event::RequestAllowed {
            run_id: "r".into(),
            step: Some(3),
            method: "POST".into(),
            url: "http://h/r".into(),
            reason: crate::browser::APPROVED_SUBMIT.into(),
        },
    );
    j.at(
        t(9, 40),
        Event::Refused {
            action: "submit".into(),
            approval_id: Some("z".into()),
            run_id: None,
            user: "ops".into(),
            reason: "draft hash mismatch (approved a, now b): the form's structure changed".into(),
            at: "x".into(),
        },
    );
    j.at(
        t(9, 41),
        Event::Refused {
            action: "submit".into(),
            approval_id: Some("x".into()),
            run_id: None,
            user: "ops".into(),
            reason: "approval x is used (already used by run r-1)".into(),
            at: "x".into(),
        },
    );
    // At 9:20: x decided, y and z waiting (z for 14 minutes).
    let s = stats(&j, &query(t(9, 0), t(9, 20), None));
    let ap = &s.overall.approvals;
    assert_eq!(
        (ap.requested, ap.decided, ap.approved, ap.pending),
        (3, 1, 1, 2)
    );
    assert_eq!(ap.oldest_pending_age_secs, Some(15.0 * 60.0));
    assert_eq!(ap.waiting[0].approval_id, "y");
    assert_eq!(ap.latency.median_secs, Some(600.0));
    assert_eq!(ap.submitted, 0);
    // At 10:30: y expired (not waiting), z rejected after 30 minutes, x submitted.
    let s = stats(&j, &query(t(9, 0), t(10, 30), None));
    let ap = &s.overall.approvals;
    assert_eq!(
        (ap.decided, ap.approved, ap.rejected, ap.pending),
        (2, 1, 1, 0)
    );
    assert_eq!(ap.pass_rate, Some(0.5));
    assert_eq!(ap.latency.max_secs, Some(1800.0));
    assert_eq!(ap.latency.median_secs, Some(600.0));
    assert_eq!(ap.submitted, 1);
    assert_eq!(ap.decided_to_submitted.max_secs, Some(1200.0));
    assert_eq!(s.overall.submits.refused, 2);
    assert_eq!(s.overall.submits.mismatched, 1);
    assert_eq!(s.overall.submits.duplicates, 1, "the approval used again");
    assert_eq!(s.overall.submits.refused_by_kind["already_used"], 1);
    // Decisions before the period are not in it; the waiting count is as of until.
    let s = stats(&j, &query(t(9, 35), t(10, 30), None));
    let ap = &s.overall.approvals;
    assert_eq!(
        (ap.requested, ap.decided, ap.rejected, ap.submitted),
        (0, 1, 1, 0)
    );
}

#[test]
fn evidence_is_complete_only_with_every_screenshot_step_captured_and_verified() {
    let mut j = Journal(Vec::new());
    let shot = |j: &mut Journal, run: &str, at, outcome: &str, sha: Option<&str>| {
        j.at(
            at,
            Event::StepFinished {
                run_id: run.into(),
                step: 2,
                name: "s".into(),
                kind: "screenshot".into(),
                outcome: outcome.into(),
                error: None,
                started_at: "x".into(),
                duration_ms: 1,
                fields: BTreeMap::new(),
                responses: vec![],
            },
        );
        if let Some(sha) = sha {
            j.at(
                at,
                Event::EvidenceCaptured {
                    run_id: run.into(),
                    step: 2,
                    name: "s".into(),
                    sha256: sha.into(),
                    bytes: 1,
                    width: 1,
                    height: 1,
                    blank: false,
                    url: "u".into(),
                    title: "t".into(),
                    captured_at: "x".into(),
                    fields: BTreeMap::new(),
                    masks: vec![],
                    responses: vec![],
                },
            );
        }
    };
    j.run("good", "a", t(9, 0));
    shot(&mut j, "good", t(9, 1), "ok", Some("aa"));
    j.finish("good", "ok", t(9, 2));
    j.run("bad-file", "a", t(9, 3));
    shot(&mut j, "bad-file", t(9, 4), "ok", Some("bb"));
    j.finish("bad-file", "ok", t(9, 5));
    // Failed before reaching the screenshot step, which the playbook has.
    j.run("early", "a", t(9, 6))
        .finish("early", "failed", t(9, 7));
    j.run("step-failed", "a", t(9, 8));
    shot(&mut j, "step-failed", t(9, 9), "failed", None);
    j.finish("step-failed", "failed", t(9, 10));
    // Still running: not judged.
    j.run("running", "a", t(9, 11));
    // Another playbook without screenshot steps: not judged.
    j.run("other", "b", t(9, 12))
        .finish("other", "ok", t(9, 13));
    let s = compute_records(
        &j.0,
        &query(t(0, 0), t(12, 0), None),
        t(12, 0),
        &mut |sha| sha == "aa",
    )
    .unwrap();
    let e = &s.overall.evidence;
    assert_eq!((e.judged, e.complete, e.incomplete), (4, 1, 3), "{e:?}");
    assert_eq!(e.completeness, Some(0.25));
    assert_eq!(s.channels["b"].evidence.judged, 0);
}

#[test]
fn approvals_expired_unreviewed_and_missed_slots_are_counted() {
    let mut j = Journal(Vec::new());
    let requested =
        |id: &str, at: DateTime<Utc>, expires: DateTime<Utc>| Event::ApprovalRequested {
            approval_id: id.into(),
            run_id: format!("run-{id}"),
            request: "{}".into(),
            draft_hash: "h".into(),
            requester: "ops".into(),
            channel: "a".into(),
            case_ref: None,
            created_at: evidence::timestamp(at),
            expires_at: evidence::timestamp(expires),
        };
    let decided = |id: &str, at: DateTime<Utc>| Event::ApprovalDecided {
        approval_id: id.into(),
        decision: "approved".into(),
        reviewer: "carol".into(),
        note: None,
        draft_hash: "h".into(),
        decided_at: evidence::timestamp(at),
    };
    j.at(t(9, 0), requested("timely", t(9, 0), t(9, 30)))
        .at(t(9, 10), decided("timely", t(9, 10)))
        .at(t(9, 1), requested("forgotten", t(9, 1), t(9, 31)))
        .at(t(9, 2), requested("late", t(9, 2), t(9, 32)))
        // Decided after it had expired: still a timeout.
        .at(t(9, 40), decided("late", t(9, 40)))
        // Expires after the period: not (yet) a timeout.
        .at(t(9, 3), requested("open", t(9, 3), t(11, 0)))
        .at(
            t(9, 50),
            Event::ScheduleMissed {
                name: "nightly".into(),
                first_slot: evidence::timestamp(t(8, 0)),
                slot: evidence::timestamp(t(9, 0)),
                count: 3,
                count_capped: false,
                at: evidence::timestamp(t(9, 50)),
            },
        );
    let s = stats(&j, &query(t(9, 0), t(10, 0), None));
    assert_eq!(s.overall.approvals.expired, 2, "{:#?}", s.overall.approvals);
    assert_eq!(s.overall.approvals.decided, 2);
    assert_eq!(s.overall.approvals.expired_rate, Some(0.5));
    assert_eq!(s.overall.missed_slots, 3);
    // A channel's numbers cannot attribute a schedule's slots.
    let s = stats(&j, &query(t(9, 0), t(10, 0), Some("a")));
    assert_eq!(s.overall.approvals.expired, 2);
    assert_eq!(s.overall.missed_slots, 0);
}

#[test]
fn replays_are_counted_apart_and_in_no_other_number() {
    let mut j = Journal(Vec::new());
    j.run("real", "a", t(9, 0)).finish("real", "ok", t(9, 1));
    j.run_of("replay", "a", t(9, 5), Some("real"))
        .finish("replay", "failed", t(9, 6));
    let s = stats(&j, &query(t(9, 0), t(10, 0), None));
    assert_eq!(s.overall.replays, 1);
    assert_eq!(s.overall.runs, 1, "{s:#?}");
    assert_eq!(s.overall.success_rate, Some(1.0));
    assert_eq!(s.channels["a"].replays, 1);
}
