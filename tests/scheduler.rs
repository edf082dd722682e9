//! The daemon's scheduler over a simulated day, with an injected clock (no sleeping): every
//! slot fires once, a restart neither loses a due slot nor fires one twice, a crash between
//! enqueuing and recording is repaired without doubling, and an overlapping firing is
//! skipped and recorded.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use clerk::channel::Config;
use clerk::evidence::{Event, Store};
use clerk::queue::{
    Backoff, ChannelLimits, EmbeddedQueue, JobFilter, JobState, Outcome, QueueLimits, RunQueue,
};
use clerk::schedule::{self, AddRequest, InputsSpec, TriggerSpec};
use clerk::serve::scheduler::{Rows, Ticker};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn limits() -> QueueLimits {
    QueueLimits {
        global: 100,
        channel_default: ChannelLimits {
            concurrent: 100,
            min_interval: Duration::ZERO,
        },
        channels: BTreeMap::new(),
    }
}

/// What the daemon holds while it runs.
struct Daemon {
    store: Store,
    queue: EmbeddedQueue,
    config: Config,
}

impl Daemon {
    fn start(dir: &std::path::Path) -> Daemon {
        Daemon {
            store: Store::open(dir).unwrap(),
            queue: EmbeddedQueue::open(dir, limits(), Backoff::default()).unwrap(),
            config: Config::load(&dir.join("clerk.toml")).unwrap(),
        }
    }

    fn tick(&self, now: DateTime<Utc>) -> clerk::serve::scheduler::TickReport {
        let no_urls = |_: &str| -> Result<Rows, String> { Err("no URLs here".into()) };
        Ticker {
            store: &self.store,
            queue: &self.queue,
            config: &self.config,
            max_attempts: 3,
            grace: Duration::from_secs(15 * 60),
            fetch: &no_urls,
        }
        .tick(now)
        .unwrap()
    }

    /// Runs every queued job to completion at `now` (the workers, simulated).
    fn finish_all(&self, now: DateTime<Utc>) {
        while let Some(c) = self
            .queue
            .claim("test/w", Duration::from_secs(60), now)
            .unwrap()
        {
            self.queue
                .complete(
                    &c,
                    Outcome {
                        run_id: None,
                        status: "ok".into(),
                    },
                )
                .unwrap();
        }
    }
}

#[test]
fn every_slot_of_a_simulated_day_is_fired_once_across_restarts_crashes_and_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clerk.toml"),
        clerk::sample::demo_config(8931, "ops"),
    )
    .unwrap();
    let inputs = dir.path().join("orders.csv");
    std::fs::write(&inputs, "order_id\nSO-100001\nSO-100002\n").unwrap();
    let created = t("2026-11-22T23:59:00Z");
    {
        let d = Daemon::start(dir.path());
        schedule::add(
            &d.store,
            &d.config,
            dir.path(),
            &AddRequest {
                name: "two-hourly".into(),
                playbook: "order-lookup".into(),
                trigger: TriggerSpec::Cron {
                    expr: "0 */2 * * *".into(),
                    tz: None,
                },
                inputs: InputsSpec::File(inputs.clone()),
                case_from: Some("order_id".into()),
                jobs: 1,
                files_allowed: true,
            },
            "ops",
            created,
        )
        .unwrap();
    }
    let day = t("2026-11-23T00:00:00Z");
    let minute = |m: i64| day + TimeDelta::minutes(m);
    let mut d = Daemon::start(dir.path());
    let mut m = 0;
    while m < 24 * 60 {
        let now = minute(m);
        match m {
            // Down from 09:30 to 12:05: 10:00 is older than the grace window when it comes
            // back (missed), 12:00 is within it (fires once, at 12:05).
            570 => {
                drop(d);
                m = 725;
                d = Daemon::start(dir.path());
                continue;
            }
            // 14:00: the daemon enqueues the firing's jobs and dies before recording it.
            840 => {
                let s = schedule::Schedules::load(&d.store).unwrap();
                let sched = s.get("two-hourly").unwrap();
                let rows = clerk::batch::read_rows(&inputs).unwrap();
                for spec in sched.job_specs(now, rows) {
                    d.queue.enqueue(spec).unwrap();
                }
                drop(d);
                d = Daemon::start(dir.path());
                // Restarted a minute later: the jobs are found and recorded, not doubled.
                m += 1;
                d.tick(minute(m));
                d.finish_all(minute(m));
                m += 1;
                continue;
            }
            _ => {}
        }
        d.tick(now);
        // The 16:00 firing is still running at 18:00: its jobs finish at 18:30.
        let busy = (16 * 60..18 * 60 + 30).contains(&m);
        if !busy {
            d.finish_all(now);
        }
        m += 1;
    }

    // What the journal says, slot by slot.
    let records = d.store.schedule_records().unwrap();
    let mut fired = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut missed = Vec::new();
    for r in &records {
        match &r.event {
            Event::ScheduleFired {
                slot, job_ids, at, ..
            } => {
                assert!(
                    fired
                        .insert(slot.clone(), (job_ids.clone(), at.clone()))
                        .is_none(),
                    "slot {slot} fired twice"
                );
            }
            Event::ScheduleSkipped { slot, reason, .. } => {
                skipped.push((slot.clone(), reason.clone()))
            }
            Event::ScheduleMissed {
                first_slot,
                slot,
                count,
                ..
            } => missed.push((first_slot.clone(), slot.clone(), *count)),
            _ => {}
        }
    }
    let h = |h: u32| format!("2026-11-23T{h:02}:00:00.000Z");
    let want: Vec<String> = [0, 2, 4, 6, 8, 12, 14, 16, 20, 22]
        .iter()
        .map(|x| h(*x))
        .collect();
    assert_eq!(fired.keys().cloned().collect::<Vec<_>>(), want);
    assert_eq!(missed, vec![(h(10), h(10), 1)]);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].0, h(18));
    assert!(skipped[0].1.contains("still running"), "{skipped:?}");
    // Each firing at its slot's minute, except 12:00 (at the restart) and 14:00 (recorded
    // after the crash).
    assert_eq!(fired[&h(12)].1, "2026-11-23T12:05:00.000Z");
    assert_eq!(fired[&h(14)].1, "2026-11-23T14:01:00.000Z");
    assert_eq!(fired[&h(2)].1, "2026-11-23T02:00:00.000Z");
    // Two jobs per firing (two rows), each job in exactly one firing, none unrecorded.
    let jobs = d.queue.list(&JobFilter::default()).unwrap();
    assert_eq!(jobs.len(), 2 * want.len());
    let mut recorded: Vec<u64> = fired.values().flat_map(|(ids, _)| ids.clone()).collect();
    recorded.sort();
    let mut all: Vec<u64> = jobs.iter().map(|j| j.id.0).collect();
    all.sort();
    assert_eq!(recorded, all);
    for j in &jobs {
        assert_eq!(j.state, JobState::Done);
        assert_eq!(j.spec.schedule.as_deref(), Some("two-hourly"));
        assert!(j.spec.case_ref.as_deref().unwrap().starts_with("SO-10000"));
    }
}

/// A one-shot HTTP server answering every request with `content_type` and `body`.
async fn serve_once(content_type: &'static str, status: &'static str, body: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_urls_are_fetched_as_csv_or_json_lines_and_failures_are_named() {
    use clerk::serve::scheduler::fetch_rows;
    let csv = serve_once(
        "text/csv",
        "200 OK",
        "order_id,note\nSO-100001,a\nSO-100002,\n",
    )
    .await;
    let jsonl = serve_once(
        "application/octet-stream",
        "200 OK",
        "{\"order_id\":\"SO-100003\"}\n\n{\"order_id\":\"SO-100004\",\"n\":5}\n",
    )
    .await;
    let html = serve_once("text/html", "200 OK", "<p>login</p>").await;
    let gone = serve_once("text/plain", "404 Not Found", "no").await;
    let rows = tokio::task::spawn_blocking(move || {
        (
            fetch_rows(&format!("http://127.0.0.1:{csv}/open")),
            fetch_rows(&format!("http://127.0.0.1:{jsonl}/waiting.jsonl")),
            fetch_rows(&format!("http://127.0.0.1:{html}/list")),
            fetch_rows(&format!("http://127.0.0.1:{gone}/x.csv")),
        )
    })
    .await
    .unwrap();
    let csv_rows = rows.0.unwrap();
    assert_eq!(csv_rows.len(), 2);
    assert_eq!(csv_rows[0]["note"], "a");
    assert!(!csv_rows[1].contains_key("note"));
    let json_rows = rows.1.unwrap();
    assert_eq!(json_rows[1]["order_id"], "SO-100004");
    assert_eq!(json_rows[1]["n"], "5");
    assert!(rows.2.unwrap_err().contains("text/html"));
    assert!(rows.3.unwrap_err().contains("404"));
}
