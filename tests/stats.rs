//! The weekly numbers (issue 9): `clerk stats --json` over a journal made by real runs in
//! real headless Chromium against the sample seller center equals what this test counts
//! itself from `journal.jsonl` (parsed line by line as plain JSON, never through clerk's
//! stats code), and the OpenMetrics text parses and carries the same values.

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::sync::Arc;

use chrono::DateTime;
use clerk::approval;
use clerk::evidence::Event;
use clerk::playbook::Playbook;
use clerk::runner::RunStatus;
use clerk::stats::{LiveMetrics, StatsQuery};
use common::{playbook, World};
use serde_json::Value;
use sha2::{Digest, Sha256};

const PIN: &str = "73914628";

/// A playbook whose wait fails quickly on a missing order, with a screenshot step after it:
/// a failed run of it is a run with missing evidence.
const LOOKUP: &str = r##"
name: stats-lookup
version: "1"
description: Order page with a short wait, then a screenshot
channel: sample
mode: read_only
inputs:
  order_id:
    type: string
    pattern: '^SO-\d{6}$'
steps:
  - goto: /orders/{{order_id}}
  - wait_for: { selector: "#order-status" }
    timeout: 2s
  - screenshot: { name: order }
"##;

/// Inputs of a refund draft for the `nth` delivered order.
fn refund(nth: usize) -> Vec<(String, String)> {
    let order = clerk::sample::orders()
        .iter()
        .filter(|o| o.status == "delivered" && o.total_cents >= 300)
        .nth(nth)
        .expect("enough delivered orders");
    let cents = order.total_cents / 3;
    vec![
        ("order_id".into(), order.id.clone()),
        (
            "amount".into(),
            format!("{}.{:02}", cents / 100, cents % 100),
        ),
        ("reason".into(), "wrong_item".into()),
        ("note".into(), format!("stats test {nth}")),
        ("supervisor_pin".into(), PIN.into()),
    ]
}

async fn run(
    world: &World,
    pb: &Arc<Playbook>,
    inputs: &[(String, String)],
    operator: &str,
    approval: Option<&str>,
) -> clerk::runner::RunReport {
    let pairs: Vec<(&str, &str)> = inputs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    world.run_as(pb, &pairs, operator, approval).await
}

async fn draft(world: &World, pb: &Arc<Playbook>, nth: usize) -> String {
    let r = run(world, pb, &refund(nth), "ops", None).await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    r.approval_id.expect("a draft requests an approval")
}

fn clerk_stats(world: &World, extra: &[&str]) -> Value {
    let out = Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["stats", "--since", "2000-01-01", "--json"])
        .args(extra)
        .env_remove("CLERK_DATA_DIR")
        .output()
        .expect("clerk runs");
    assert!(
        out.status.success(),
        "clerk stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("clerk stats --json prints JSON")
}

fn ms_between(a: &str, b: &str) -> i64 {
    let a = DateTime::parse_from_rfc3339(a).expect("record time");
    let b = DateTime::parse_from_rfc3339(b).expect("record time");
    (b - a).num_milliseconds()
}

/// What this test counts from `journal.jsonl` for one channel (`None`: all).
#[derive(Debug, Default)]
struct Expected {
    runs: u64,
    outcomes: BTreeMap<String, u64>,
    finished: u64,
    ok: u64,
    drafts: u64,
    judged: u64,
    complete: u64,
    blocked: u64,
    blocked_held: u64,
    requested: u64,
    approved: u64,
    rejected: u64,
    latencies_ms: Vec<i64>,
    submitted: u64,
    pending: u64,
    refused_submits: u64,
    mismatched: u64,
    retries: u64,
    dead_letters: u64,
    durations_ms: Vec<i64>,
}

fn count(lines: &[Value], data_dir: &std::path::Path, channel: Option<&str>) -> Expected {
    let ev = |l: &Value| l["event"].clone();
    let ts = |l: &Value| l["ts"].as_str().expect("ts").to_owned();
    let s = |v: &Value, k: &str| v[k].as_str().map(str::to_owned);
    let wanted = |c: &str| channel.is_none_or(|w| w == c);
    // Runs: channel, mode, playbook hash, start time.
    let mut run_channel: HashMap<String, String> = HashMap::new();
    let mut run_sha: HashMap<String, String> = HashMap::new();
    let mut starts: Vec<(String, String, String)> = Vec::new(); // (run, mode, ts)
    let mut finished: HashMap<String, (String, String)> = HashMap::new();
    let mut interrupted: BTreeSet<String> = BTreeSet::new();
    let mut shot_steps_of_sha: HashMap<String, BTreeSet<u64>> = HashMap::new();
    let mut shot_ok: HashMap<(String, u64), bool> = HashMap::new();
    let mut captures: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    let mut approval_channel: HashMap<String, String> = HashMap::new();
    let mut requested_at: HashMap<String, String> = HashMap::new();
    let mut decided: HashMap<String, (String, String)> = HashMap::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    // Runs whose approved write the guard let out to the seller center.
    let mut sent: BTreeSet<String> = BTreeSet::new();
    let mut used_by: HashMap<String, String> = HashMap::new();
    let mut e = Expected::default();
    for l in lines {
        let v = ev(l);
        let kind = s(&v, "type").expect("type");
        let run_id = s(&v, "run_id").unwrap_or_default();
        match kind.as_str() {
            "run_started" => {
                let c = s(&v, "channel").unwrap();
                run_channel.insert(run_id.clone(), c);
                run_sha.insert(run_id.clone(), s(&v, "playbook_sha256").unwrap());
                starts.push((run_id, s(&v, "mode").unwrap(), ts(l)));
            }
            "step_finished" if s(&v, "kind").as_deref() == Some("screenshot") => {
                let step = v["step"].as_u64().unwrap();
                shot_steps_of_sha
                    .entry(run_sha[&run_id].clone())
                    .or_default()
                    .insert(step);
                shot_ok.insert((run_id, step), s(&v, "outcome").as_deref() == Some("ok"));
            }
            "evidence_captured" => captures
                .entry(run_id)
                .or_default()
                .push((v["step"].as_u64().unwrap(), s(&v, "sha256").unwrap())),
            "run_finished" => {
                finished.insert(run_id, (s(&v, "status").unwrap(), ts(l)));
            }
            "run_interrupted" => {
                interrupted.insert(run_id);
            }
            "request_blocked" if wanted(&run_channel[&run_id]) => {
                e.blocked += 1;
                if s(&v, "reason").unwrap().contains("held for review") {
                    e.blocked_held += 1;
                }
            }
            "approval_requested" => {
                let id = s(&v, "approval_id").unwrap();
                approval_channel.insert(id.clone(), s(&v, "channel").unwrap());
                requested_at.insert(id, ts(l));
            }
            "approval_decided" => {
                let id = s(&v, "approval_id").unwrap();
                decided
                    .entry(id)
                    .or_insert((s(&v, "decision").unwrap(), ts(l)));
            }
            "approval_used" => {
                used.insert(s(&v, "approval_id").unwrap());
                used_by.insert(s(&v, "approval_id").unwrap(), run_id.clone());
            }
            "request_allowed"
                if s(&v, "reason").is_some_and(|r| r.starts_with("the approved submit")) =>
            {
                sent.insert(run_id.clone());
            }
            "refused" => {
                let Some(id) = s(&v, "approval_id") else {
                    continue;
                };
                let action = s(&v, "action").unwrap();
                if (action == "submit" || action == "run") && wanted(&approval_channel[&id]) {
                    e.refused_submits += 1;
                    let reason = s(&v, "reason").unwrap();
                    if (action == "submit"
                        && (reason.contains("draft hash mismatch")
                            || reason.contains("sent no write")
                            || (reason.contains("is not the approved write")
                                && !reason.contains("second write"))))
                        || reason.contains("is not the version approval")
                    {
                        e.mismatched += 1;
                    }
                }
            }
            "job_retried" if wanted(&s(&v, "channel").unwrap()) => e.retries += 1,
            "job_dead_lettered" if wanted(&s(&v, "channel").unwrap()) => e.dead_letters += 1,
            _ => {}
        }
    }
    for (run_id, mode, start) in &starts {
        if !wanted(&run_channel[run_id]) {
            continue;
        }
        e.runs += 1;
        let outcome = match finished.get(run_id) {
            Some((status, end)) => {
                e.finished += 1;
                e.durations_ms.push(ms_between(start, end));
                if status == "ok" {
                    e.ok += 1;
                    if mode == "draft" {
                        e.drafts += 1;
                    }
                }
                status.clone()
            }
            None if interrupted.contains(run_id) => "interrupted".into(),
            None => "unfinished".into(),
        };
        *e.outcomes.entry(outcome).or_default() += 1;
        let ended = finished.contains_key(run_id) || interrupted.contains(run_id);
        let steps = shot_steps_of_sha
            .get(&run_sha[run_id])
            .cloned()
            .unwrap_or_default();
        if ended && !steps.is_empty() {
            e.judged += 1;
            let caps = captures.get(run_id).cloned().unwrap_or_default();
            let every_step = steps.iter().all(|st| {
                shot_ok.get(&(run_id.clone(), *st)) == Some(&true)
                    && caps.iter().any(|(cs, _)| cs == st)
            });
            let files = caps.iter().all(|(_, sha)| {
                std::fs::read(data_dir.join("screenshots").join(format!("{sha}.png")))
                    .map(|b| hex::encode(Sha256::digest(&b)) == *sha)
                    .unwrap_or(false)
            });
            if every_step && files {
                e.complete += 1;
            }
        }
    }
    for (id, at) in &requested_at {
        if !wanted(&approval_channel[id]) {
            continue;
        }
        e.requested += 1;
        match decided.get(id) {
            Some((d, dts)) => {
                match d.as_str() {
                    "approved" => e.approved += 1,
                    _ => e.rejected += 1,
                }
                e.latencies_ms.push(ms_between(at, dts));
            }
            None if !used.contains(id) => e.pending += 1,
            None => {}
        }
        // Submitted: the approved write reached the seller center (an approval is marked
        // used before the click, so a used approval alone proves nothing was sent).
        if used_by.get(id).is_some_and(|run| sent.contains(run)) {
            e.submitted += 1;
        }
    }
    e.latencies_ms.sort_unstable();
    e
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn assert_numbers(got: &Value, e: &Expected, what: &str) {
    assert_eq!(num(&got["runs"]), e.runs, "{what} runs");
    let outcomes: BTreeMap<String, u64> =
        serde_json::from_value(got["runs_by_outcome"].clone()).unwrap();
    assert_eq!(outcomes, e.outcomes, "{what} runs by outcome");
    assert_eq!(num(&got["finished"]), e.finished, "{what} finished");
    assert_eq!(num(&got["ok"]), e.ok, "{what} ok");
    assert_eq!(num(&got["drafts"]), e.drafts, "{what} drafts");
    let rate = got["success_rate"].as_f64().expect("a success rate");
    assert!(
        (rate - e.ok as f64 / e.finished as f64).abs() < 1e-12,
        "{what} rate"
    );
    assert_eq!(num(&got["evidence"]["judged"]), e.judged, "{what} judged");
    assert_eq!(
        num(&got["evidence"]["complete"]),
        e.complete,
        "{what} complete"
    );
    assert_eq!(num(&got["blocked_requests"]), e.blocked, "{what} blocked");
    assert_eq!(
        got["blocked_by_kind"]["draft_held_write"]
            .as_u64()
            .unwrap_or(0),
        e.blocked_held,
        "{what} held writes"
    );
    let kinds: u64 = got["blocked_by_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(num)
        .sum();
    assert_eq!(kinds, e.blocked, "{what}: kinds add up");
    let ap = &got["approvals"];
    assert_eq!(num(&ap["requested"]), e.requested, "{what} requested");
    assert_eq!(
        num(&ap["decided"]),
        e.approved + e.rejected,
        "{what} decided"
    );
    assert_eq!(num(&ap["approved"]), e.approved, "{what} approved");
    assert_eq!(num(&ap["rejected"]), e.rejected, "{what} rejected");
    assert_eq!(num(&ap["pending"]), e.pending, "{what} pending");
    assert_eq!(num(&ap["submitted"]), e.submitted, "{what} submitted");
    let n = e.latencies_ms.len();
    assert_eq!(num(&ap["latency"]["count"]), n as u64);
    let median = e.latencies_ms[n.div_ceil(2) - 1] as f64 / 1000.0;
    assert_eq!(
        ap["latency"]["median_secs"].as_f64(),
        Some(median),
        "{what} median"
    );
    let max = e.latencies_ms[n - 1] as f64 / 1000.0;
    assert_eq!(ap["latency"]["max_secs"].as_f64(), Some(max), "{what} max");
    assert_eq!(
        num(&got["submits"]["refused"]),
        e.refused_submits,
        "{what} refused submits"
    );
    assert_eq!(
        num(&got["submits"]["mismatched"]),
        e.mismatched,
        "{what} mismatched"
    );
    assert_eq!(num(&got["retries"]), e.retries, "{what} retries");
    assert_eq!(
        num(&got["dead_letters"]),
        e.dead_letters,
        "{what} dead letters"
    );
    assert_eq!(
        num(&got["session_expiries"]),
        e.outcomes.get("session_expired").copied().unwrap_or(0),
        "{what} session expiries"
    );
    let d = &got["run_durations"];
    assert_eq!(num(&d["count"]), e.durations_ms.len() as u64);
    let sum: f64 = e.durations_ms.iter().map(|ms| *ms as f64 / 1000.0).sum();
    assert!(
        (d["sum_secs"].as_f64().unwrap() - sum).abs() < 1e-6,
        "{what} duration sum"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerk_stats_equals_counts_from_the_journal_and_metrics_parse() {
    let world = World::new().await;
    let session = world
        .engine
        .config
        .channel("sample")
        .unwrap()
        .session_path(world.data_dir());
    let orders = clerk::sample::orders();
    let tracked = orders
        .iter()
        .find(|o| o.tracking_no.is_some())
        .expect("an order with tracking");

    // session_expired first (before any browser has proven the session).
    world
        .center
        .storage_state("ops", -60i64)
        .save(&session)
        .unwrap();
    let r = world
        .run(&playbook("order-lookup"), &[("order_id", &tracked.id)])
        .await;
    assert_eq!(r.status, RunStatus::SessionExpired, "{:?}", r.error);
    world
        .center
        .storage_state("ops", 3600i64)
        .save(&session)
        .unwrap();

    // ok, with the page's adversarial writes blocked.
    let r = world
        .run(&playbook("order-lookup"), &[("order_id", &tracked.id)])
        .await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    let lookup = world.playbook_from("stats-lookup", LOOKUP);
    let r = world.run(&lookup, &[("order_id", &orders[1].id)]).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    // The same playbook on an order that does not exist: failed before its screenshot.
    let r = world.run(&lookup, &[("order_id", "SO-999999")]).await;
    assert_eq!(r.status, RunStatus::Failed, "{:?}", r.error);
    // An ok run whose screenshot is then damaged on disk: incomplete evidence.
    let r = world.run(&lookup, &[("order_id", &orders[2].id)]).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    let damaged = world.engine.store.screenshot_path(&r.screenshots[0].sha256);
    let mut perms = std::fs::metadata(&damaged).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&damaged, perms).unwrap();
    std::fs::write(&damaged, b"not the evidence").unwrap();
    // Refused before it started (not an operator): no run, not a submit.
    let r = world
        .run_as(&lookup, &[("order_id", &orders[1].id)], "mallory", None)
        .await;
    assert_eq!(r.status, RunStatus::Refused);

    // Drafts: approved and submitted; rejected (then submitted anyway: refused before the
    // run); approved but the form changed (a mismatched submit, run finished refused); one
    // left waiting.
    let pb = playbook("refund-draft");
    let a = draft(&world, &pb, 0).await;
    approval::decide(&world.engine, &a, "carol", true, None).expect("carol approves");
    let r = run(&world, &pb, &refund(0), "ops", Some(&a)).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    let b = draft(&world, &pb, 1).await;
    approval::decide(
        &world.engine,
        &b,
        "carol",
        false,
        Some("wrong amount".into()),
    )
    .expect("carol rejects");
    let r = run(&world, &pb, &refund(1), "ops", Some(&b)).await;
    assert_eq!(r.status, RunStatus::Refused);
    let c = draft(&world, &pb, 2).await;
    approval::decide(&world.engine, &c, "carol", true, None).expect("carol approves");
    world.center.set_refund_default("method", "store_credit");
    let r = run(&world, &pb, &refund(2), "ops", Some(&c)).await;
    world
        .center
        .set_refund_default("method", "original_payment");
    assert_eq!(r.status, RunStatus::Refused, "{:?}", r.error);
    // Approved and used, but the single-page app then sends the write twice at once:
    // both are withheld, nothing reaches the seller center, so it is not a submit.
    let spa = playbook("spa-refund");
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.total_cents > 10_000)
        .expect("an order over CNY 100");
    let spa_inputs = [
        ("order_id", order.id.as_str()),
        ("amount", "12.50"),
        ("reason", "Item damaged"),
        ("method", "original_payment"),
        ("note", "Box arrived crushed"),
    ];
    let r = world.run_as(&spa, &spa_inputs, "ops", None).await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    let d = r.approval_id.clone().expect("an approval");
    approval::decide(&world.engine, &d, "carol", true, None).expect("carol approves");
    world.center.set_spa_double_write(true);
    let r = world.run_as(&spa, &spa_inputs, "ops", Some(&d)).await;
    world.center.set_spa_double_write(false);
    assert_eq!(r.status, RunStatus::Refused, "{:?}", r.error);
    assert!(world.center.spa_refunds().iter().all(|r| !r.accepted));
    let _waiting = draft(&world, &pb, 3).await;

    // What the daemon's queue will record.
    let store = &world.engine.store;
    for (job, channel) in [(1, "sample"), (1, "sample"), (2, "other")] {
        store
            .append(Event::JobRetried {
                job,
                run_id: None,
                channel: channel.into(),
                playbook: "order-lookup".into(),
                attempt: 1,
                reason: "timeout".into(),
                not_before: None,
                at: "2026-01-01T00:00:00.000Z".into(),
            })
            .unwrap();
    }
    store
        .append(Event::JobDeadLettered {
            job: 1,
            run_id: None,
            channel: "sample".into(),
            playbook: "order-lookup".into(),
            attempts: 3,
            reason: "timeout".into(),
            at: "2026-01-01T00:00:00.000Z".into(),
        })
        .unwrap();

    // The test's own count, from the file.
    let text = std::fs::read_to_string(world.data_dir().join("journal.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let all = count(&lines, world.data_dir(), None);
    let sample = count(&lines, world.data_dir(), Some("sample"));
    let other = count(&lines, world.data_dir(), Some("other"));
    // The scenario is what it claims to be.
    for o in ["ok", "failed", "refused", "session_expired"] {
        assert!(all.outcomes.get(o).is_some_and(|n| *n >= 1), "{o}: {all:?}");
    }
    assert_eq!(
        (all.approved, all.rejected, all.pending),
        (3, 1, 1),
        "{all:?}"
    );
    assert_eq!((all.submitted, all.mismatched), (1, 1), "{all:?}");
    assert_eq!(all.refused_submits, 3, "{all:?}");
    // The seller center's own log agrees: one refund reached it.
    let accepted = world
        .center
        .refunds()
        .into_iter()
        .filter(|r| r.accepted)
        .count();
    assert_eq!(
        accepted as u64,
        all.submitted,
        "{:?}",
        world.center.refunds()
    );
    assert!(
        all.blocked_held >= 1 && all.blocked > all.blocked_held,
        "{all:?}"
    );
    assert!(all.judged >= 4 && all.complete + 2 <= all.judged, "{all:?}");
    assert_eq!((all.retries, sample.retries, other.retries), (3, 2, 1));

    let got = clerk_stats(&world, &[]);
    assert_numbers(&got["overall"], &all, "overall");
    assert_numbers(&got["channels"]["sample"], &sample, "sample");
    assert_eq!(num(&got["channels"]["other"]["retries"]), 1);
    assert_eq!(num(&got["channels"]["other"]["runs"]), 0);
    let days = got["days"].as_array().expect("days");
    let day_runs: u64 = days.iter().map(|d| num(&d["runs"])).sum();
    assert_eq!(day_runs, all.runs);

    let only = clerk_stats(&world, &["--channel", "other"]);
    assert_eq!(
        only["channels"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["other"]
    );
    assert_eq!(num(&only["overall"]["retries"]), 1);
    assert_eq!(num(&only["overall"]["runs"]), 0);
    // A period that ends before the first record has nothing in it.
    let none = clerk_stats(&world, &["--until", "2001-01-01"]);
    assert_eq!(num(&none["overall"]["runs"]), 0);
    assert_eq!(num(&none["overall"]["retries"]), 0);

    // The terminal table names every channel and the numbers.
    let out = Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["stats", "--since", "1d"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "sample",
        "other",
        "runs per day",
        "session_expired",
        "mismatched",
    ] {
        assert!(table.contains(needle), "{needle} missing from:\n{table}");
    }

    // Metrics: render from the same numbers, parse, compare.
    let now = chrono::Utc::now();
    let stats = clerk::stats::compute(
        store,
        &StatsQuery {
            since: clerk::evidence::parse_since("2000-01-01").unwrap(),
            until: now,
            channel: None,
        },
        now,
    )
    .unwrap();
    let mut live = LiveMetrics {
        paused: true,
        pool_browsers: 2,
        pool_contexts: 3,
        runs_in_flight: 1,
        ..LiveMetrics::default()
    };
    live.queue_depth.insert(
        "sample".into(),
        BTreeMap::from([("queued".into(), 7), ("dead".into(), 1)]),
    );
    live.channels_paused.insert("sample".into(), false);
    live.channels_paused.insert("other".into(), true);
    let text = clerk::stats::render_metrics(&stats, &live).unwrap();
    let families = strict_parse(&text);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("prometheus-parse reads it");
    let value = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        let hits: Vec<f64> = scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .filter_map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(*v),
                _ => None,
            })
            .collect();
        assert_eq!(hits.len(), 1, "{metric} {labels:?} in:\n{text}");
        hits[0]
    };
    let c = &stats.channels["sample"];
    for (status, n) in &c.runs_by_outcome {
        assert_eq!(
            value(
                "clerk_runs_total",
                &[("channel", "sample"), ("status", status)]
            ),
            *n as f64
        );
    }
    assert_eq!(
        value(
            "clerk_runs_total",
            &[("channel", "sample"), ("status", "session_expired")]
        ),
        all.outcomes["session_expired"] as f64
    );
    for (kind, n) in &c.blocked_by_kind {
        assert_eq!(
            value(
                "clerk_blocked_requests_total",
                &[("channel", "sample"), ("kind", kind)]
            ),
            *n as f64
        );
    }
    assert_eq!(
        value(
            "clerk_approvals_decided_total",
            &[("channel", "sample"), ("decision", "approved")]
        ),
        3.0
    );
    assert_eq!(
        value(
            "clerk_approvals_decided_total",
            &[("channel", "sample"), ("decision", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        value("clerk_submits_refused_total", &[("channel", "sample")]),
        3.0
    );
    assert_eq!(
        value("clerk_submits_mismatched_total", &[("channel", "sample")]),
        1.0
    );
    assert_eq!(
        value("clerk_job_retries_total", &[("channel", "sample")]),
        2.0
    );
    assert_eq!(
        value("clerk_job_retries_total", &[("channel", "other")]),
        1.0
    );
    assert_eq!(
        value("clerk_dead_letters_total", &[("channel", "sample")]),
        1.0
    );
    assert_eq!(
        value("clerk_session_expiries_total", &[("channel", "sample")]),
        1.0
    );
    assert_eq!(
        value("clerk_approvals_pending", &[("channel", "sample")]),
        1.0
    );
    assert_eq!(
        value(
            "clerk_approval_oldest_pending_age_seconds",
            &[("channel", "sample")]
        ),
        c.approvals.oldest_pending_age_secs.expect("an age")
    );
    assert_eq!(
        value(
            "clerk_queue_depth",
            &[("channel", "sample"), ("state", "queued")]
        ),
        7.0
    );
    assert_eq!(value("clerk_paused", &[]), 1.0);
    assert_eq!(value("clerk_channel_paused", &[("channel", "other")]), 1.0);
    assert_eq!(value("clerk_channel_paused", &[("channel", "sample")]), 0.0);
    assert_eq!(value("clerk_pool_browsers", &[]), 2.0);
    assert_eq!(value("clerk_pool_contexts", &[]), 3.0);
    assert_eq!(value("clerk_runs_in_flight", &[]), 1.0);
    // The histogram: cumulative buckets ending in +Inf = count, and the sum.
    let hist = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "clerk_run_duration_seconds" && s.labels.get("channel") == Some("sample")
        })
        .expect("duration histogram");
    let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
        panic!("not a histogram: {hist:?}")
    };
    let h = &c.run_durations;
    let mut cumulative = 0;
    for (i, bound) in h.bounds_secs.iter().enumerate() {
        cumulative += h.counts[i];
        let b = buckets
            .iter()
            .find(|b| b.less_than == *bound)
            .unwrap_or_else(|| panic!("bucket {bound}"));
        assert_eq!(b.count, cumulative as f64, "bucket {bound}");
    }
    let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    assert_eq!(inf.count, sample.durations_ms.len() as f64);
    assert_eq!(
        value("clerk_run_duration_seconds_count", &[("channel", "sample")]),
        inf.count
    );
    assert!(
        (value("clerk_run_duration_seconds_sum", &[("channel", "sample")]) - h.sum_secs).abs()
            < 1e-6
    );
    for name in [
        "clerk_runs",
        "clerk_run_duration_seconds",
        "clerk_queue_depth",
    ] {
        assert!(families.contains_key(name), "{name} not declared");
    }
}

/// A strict reading of the OpenMetrics text format's lines: every family is declared once
/// (`# HELP`, then `# TYPE`), every sample belongs to the family declared last (with the
/// suffix its type allows), label sets are well formed, values are numbers, and the text
/// ends with `# EOF`. Returns the families and their types.
fn strict_parse(text: &str) -> BTreeMap<String, String> {
    let sample = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*)?\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$"#,
    )
    .unwrap();
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(!families.contains_key(name), "{name} declared twice");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type {kind}"
            );
            families.insert(name.to_owned(), kind.to_owned());
            current = Some((name.to_owned(), kind.to_owned()));
        } else {
            let caps = sample
                .captures(line)
                .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
            let name = &caps[1];
            let (family, kind) = current.as_ref().expect("a sample before any # TYPE");
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "gauge" => &[""],
                _ => &["_bucket", "_sum", "_count"],
            };
            assert!(
                suffixes.iter().any(|s| name == format!("{family}{s}")),
                "{name} does not belong to {family} ({kind})"
            );
            let v = &caps[caps.len() - 1];
            assert!(
                v.parse::<f64>().is_ok() || v == "+Inf",
                "value {v} in {line}"
            );
        }
    }
    families
}
