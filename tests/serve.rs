//! `clerk serve`: the daemon's queue execution on the pool against the sample seller center
//! (limits, retries, dead letters, expired sessions), its API, its single-instance lock, and
//! SIGTERM/SIGKILL of the real binary mid-batch.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::http::http;
use crate::common::{clerk_bin, Daemon, World};
use clerk::evidence::Event;
use clerk::queue::JobState;
use clerk::serve::{Running, ServeOptions};

/// A playbook that looks up one order quickly (no wait for the late risk panel).
const QUICK: &str = r##"name: quick-lookup
version: "1"
description: order status and a screenshot
channel: sample
mode: read_only
inputs:
  order_id: { type: string, pattern: '^SO-\d{6}$' }
steps:
  - goto: /orders/{{order_id}}
  - wait_for: { selector: "#order-status" }
  - extract: { field: status, selector: "#order-status" }
  - screenshot: { name: order }
"##;

/// A lookup that waits for the risk panel (1.5 s after load): long enough to kill its
/// browser mid-run.
const SLOW: &str = r##"name: slow-lookup
version: "1"
description: waits for the late risk panel
channel: sample
mode: read_only
inputs:
  order_id: { type: string, pattern: '^SO-\d{6}$' }
steps:
  - goto: /orders/{{order_id}}
  - wait_for: { text: "Risk:" }
    timeout: 10s
  - screenshot: { name: order }
"##;

/// An assertion that can never hold: a permanent failure.
const WRONG: &str = r##"name: wrong-total
version: "1"
description: asserts a total the order does not have
channel: sample
mode: read_only
inputs:
  order_id: { type: string, pattern: '^SO-\d{6}$' }
steps:
  - goto: /orders/{{order_id}}
  - assert: { selector: "#order-total", equals: "no such total" }
"##;

fn serve_config(extra_channel: &str, serve: &str) -> impl FnOnce(String) -> String {
    let extra_channel = extra_channel.to_owned();
    let serve = serve.to_owned();
    move |c: String| {
        let c = c.replacen(
            "approval_ttl_hours = 24",
            &format!("approval_ttl_hours = 24\n{extra_channel}"),
            1,
        );
        format!("{c}\n[serve]\n{serve}\n")
    }
}

fn opts(pages: usize) -> ServeOptions {
    ServeOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        pages,
        lease: Duration::from_secs(60),
        shutdown_deadline: Duration::from_secs(20),
        schedule_grace: Duration::from_secs(900),
        scheduler_tick: Duration::from_secs(3600),
        idle_wait: Duration::from_millis(100),
        max_attempts: 3,
        run_scheduler: false,
    }
}

async fn start(world: &World, opts: ServeOptions) -> Running {
    let engine = clerk::runner::Engine::new(
        world.data_dir().to_owned(),
        (*world.engine.config).clone(),
        world.engine.store.clone(),
        world.engine.launch.clone(),
    );
    clerk::serve::start(engine, opts)
        .await
        .expect("daemon starts")
}

async fn api(running: &Running, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let token = running.daemon.instance().token.clone();
    let body = body.map(|b| b.to_string());
    let r = http(
        running.addr.port(),
        method,
        path,
        &[
            (clerk::instance::TOKEN_HEADER, token.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.as_deref(),
    )
    .await;
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

async fn enqueue(running: &Running, playbook: &Path, orders: &[String]) -> Vec<u64> {
    let rows: Vec<Value> = orders.iter().map(|o| json!({ "order_id": o })).collect();
    let (status, v) = api(
        running,
        "POST",
        "/api/runs",
        Some(json!({
            "playbook_yaml": std::fs::read_to_string(playbook).expect("the playbook file"),
            "rows": rows,
            "user": "ops"
        })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_u64().unwrap())
        .collect()
}

async fn job(running: &Running, id: u64) -> Value {
    let (status, v) = api(running, "GET", &format!("/api/jobs/{id}"), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// Waits until every job is done, dead or dropped (or the deadline passes: then fails,
/// printing the jobs).
async fn settled(running: &Running, ids: &[u64], within: Duration) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let mut all = Vec::new();
        for id in ids {
            all.push(job(running, *id).await);
        }
        if all
            .iter()
            .all(|j| matches!(j["state"].as_str(), Some("done" | "dead" | "dropped")))
        {
            return all;
        }
        assert!(
            start.elapsed() < within,
            "jobs did not settle: {}",
            serde_json::to_string_pretty(&all).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn orders(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("SO-{:06}", 100001 + (i % 40)))
        .collect()
}

fn journal_events(world: &World) -> Vec<Event> {
    let text = std::fs::read_to_string(world.data_dir().join("journal.jsonl")).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| serde_json::from_value::<Event>(v["event"].clone()).ok())
        .collect()
}

/// Claim times of jobs from the queue's log (the queue's own record of when runs started),
/// and the most jobs claimed and not finished at once.
fn claims_from_queue_log(data_dir: &Path) -> (Vec<chrono::DateTime<chrono::Utc>>, i32) {
    let qlog = std::fs::read_to_string(data_dir.join("queue/queue.log")).unwrap();
    let mut claims = Vec::new();
    // In log order: the log is the queue's sequence of transactions (times inside them
    // come from different callers' clocks and may be out of order by a few ms).
    let mut events: Vec<i32> = Vec::new();
    let mut changes = Vec::new();
    for line in qlog.lines() {
        let Some(start) = line.find('{') else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&line[start..]) else {
            continue;
        };
        collect_changes(&v, &mut changes);
    }
    for change in changes {
        let at = |c: &Value| -> chrono::DateTime<chrono::Utc> {
            chrono::DateTime::parse_from_rfc3339(c["at"].as_str().unwrap())
                .unwrap()
                .into()
        };
        match change["type"].as_str() {
            Some("claimed") => {
                claims.push(at(&change));
                events.push(1);
            }
            Some("completed" | "failed" | "released" | "lease_expired") => events.push(-1),
            _ => {}
        }
    }
    let (mut open, mut max) = (0, 0);
    for d in events {
        open += d;
        max = max.max(open);
    }
    (claims, max)
}

/// Queue changes anywhere in a log line (whatever envelope the log uses).
fn collect_changes(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            if m.get("type").and_then(Value::as_str).is_some() && m.contains_key("job") {
                out.push(v.clone());
                return;
            }
            for x in m.values() {
                collect_changes(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_changes(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_lookups_keep_the_channels_page_limit_and_interval_at_the_seller_center() {
    let world = World::with_config(serve_config(
        "max_pages = 2\nmin_interval = \"100ms\"",
        "pages = 4",
    ))
    .await;
    // A slow seller center: each order page takes 150 ms to answer, so runs that overlap
    // are seen overlapping at the server.
    world.center.set_order_delay(Duration::from_millis(150));
    world.playbook_from("quick-lookup", QUICK);
    let path = world.data_dir().join("quick-lookup.yaml");
    let running = start(&world, opts(4)).await;
    let ids = enqueue(&running, &path, &orders(200)).await;
    assert_eq!(ids.len(), 200);
    let jobs = settled(&running, &ids, Duration::from_secs(900)).await;
    for j in &jobs {
        assert_eq!(j["state"], "done", "{j}");
        assert_eq!(j["outcome"]["status"], "ok", "{j}");
    }
    let loads = world
        .center
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/orders/SO-"))
        .count();
    assert_eq!(loads, 200, "one order page per run");
    // At the seller center: never more than 2 order pages answered at once (4 workers were
    // free), and 2 at some point (the channel's pages were used).
    assert_eq!(world.center.max_concurrent_order_pages(), 2);
    // In the queue's own log: never more than 2 runs of the channel between claim and
    // finish, and their starts at least the interval apart.
    let (claims, max_open) = claims_from_queue_log(world.data_dir());
    assert_eq!(claims.len(), 200, "each job claimed once");
    assert!(max_open <= 2, "{max_open} runs of one channel at once");
    for w in claims.windows(2) {
        assert!(
            w[1] - w[0] >= chrono::TimeDelta::milliseconds(100),
            "runs started {} ms apart",
            (w[1] - w[0]).num_milliseconds()
        );
    }
    // Every run is in the journal, finished ok, with its screenshot.
    let finished = journal_events(&world)
        .into_iter()
        .filter(|e| matches!(e, Event::RunFinished { status, .. } if status == "ok"))
        .count();
    assert_eq!(finished, 200);
    running.shutdown();
    let summary = running.wait().await.unwrap();
    assert!(summary.interrupted.is_empty());
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A channel whose seller center does not answer: every run fails transiently.
fn down_channel(port: u16) -> String {
    format!(
        r##"
[[channel]]
id = "down"
base_url = "http://127.0.0.1:{port}/"
owner = "ops-lead"
operators = ["ops"]
reviewers = ["carol"]
modes = ["read_only"]
session = "sessions/down.json"
logged_in_check = {{ url = "/account", selector = "#account-user" }}
"##
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_chromium_is_retried_transient_failures_dead_letter_and_permanent_ones_do_not_retry()
{
    let port = closed_port();
    let world = World::with_config(move |c| {
        format!(
            "{}\n[serve]\nretry_base = \"100ms\"\nretry_max = \"200ms\"\n{}",
            c,
            down_channel(port)
        )
    })
    .await;
    // The down channel has a session (the sample one): its runs fail at the session check.
    std::fs::copy(
        world.data_dir().join("sessions/sample.json"),
        world.data_dir().join("sessions/down.json"),
    )
    .unwrap();
    world.playbook_from("slow-lookup", SLOW);
    world.playbook_from("wrong-total", WRONG);
    std::fs::write(
        world.data_dir().join("down-lookup.yaml"),
        QUICK
            .replace("channel: sample", "channel: down")
            .replace("quick-lookup", "down-lookup"),
    )
    .unwrap();
    let mut o = opts(2);
    o.max_attempts = 2;
    let running = start(&world, o).await;

    // 1. A Chromium killed mid-run: the run fails, the job is retried and succeeds.
    let slow = enqueue(
        &running,
        &world.data_dir().join("slow-lookup.yaml"),
        &orders(1),
    )
    .await;
    let t = Instant::now();
    while !world
        .center
        .requests()
        .iter()
        .any(|r| r.path == "/orders/SO-100001")
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the run never loaded its page"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pids = running.daemon.engine.pool.stats().pids;
    assert_eq!(pids.len(), 1);
    // SAFETY: a plain syscall on the Chromium the daemon's pool started.
    unsafe {
        libc::kill(pids[0] as i32, libc::SIGKILL);
    }
    let done = settled(&running, &slow, Duration::from_secs(120)).await;
    assert_eq!(done[0]["state"], "done", "{}", done[0]);
    assert_eq!(done[0]["outcome"]["status"], "ok");
    assert_eq!(done[0]["attempts"], 2, "one failed attempt, one good");
    assert!(
        done[0]["last_error"].as_str().unwrap().contains("exited"),
        "{}",
        done[0]
    );
    assert!(
        !running.daemon.engine.pool.stats().pids.contains(&pids[0]),
        "the dead browser was replaced"
    );

    // 2. A run that always fails transiently: retried, then dead-lettered with the reason.
    let down = enqueue(
        &running,
        &world.data_dir().join("down-lookup.yaml"),
        &orders(1),
    )
    .await;
    let dead = settled(&running, &down, Duration::from_secs(120)).await;
    assert_eq!(dead[0]["state"], "dead", "{}", dead[0]);
    assert_eq!(dead[0]["attempts"], 2);
    let reason = dead[0]["dead_reason"].as_str().unwrap();
    assert!(reason.contains("gave up after 2 of 2 attempts"), "{reason}");
    assert!(reason.contains("cannot reach channel down"), "{reason}");

    // 3. A permanent failure (an assertion): dead-lettered at once.
    let wrong = enqueue(
        &running,
        &world.data_dir().join("wrong-total.yaml"),
        &orders(1),
    )
    .await;
    let perm = settled(&running, &wrong, Duration::from_secs(120)).await;
    assert_eq!(perm[0]["state"], "dead", "{}", perm[0]);
    assert_eq!(perm[0]["attempts"], 1, "not retried");
    assert!(perm[0]["dead_reason"]
        .as_str()
        .unwrap()
        .starts_with("permanent failure on attempt 1"));

    // The journal holds each retry and dead letter, for the weekly numbers.
    let events = journal_events(&world);
    let retried: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::JobRetried { job, .. } => Some(*job),
            _ => None,
        })
        .collect();
    let dead_lettered: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::JobDeadLettered { job, .. } => Some(*job),
            _ => None,
        })
        .collect();
    assert_eq!(retried, vec![slow[0], down[0]]);
    assert_eq!(dead_lettered, vec![down[0], wrong[0]]);

    // Dead letters can be retried (and fail again here) or dropped.
    let (status, _) = api(
        &running,
        "POST",
        &format!("/api/jobs/{}/drop", wrong[0]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(job(&running, wrong[0]).await["state"], "dropped");
    let (status, v) = api(
        &running,
        "POST",
        &format!("/api/jobs/{}/retry", wrong[0]),
        None,
    )
    .await;
    assert_eq!(status, 409, "a dropped job stays dropped: {v}");
    assert!(v["error"].as_str().unwrap().contains("dropped"));
    running.shutdown();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_session_pauses_the_channels_queue_instead_of_failing_every_row() {
    let world = World::with_config(serve_config("", "")).await;
    world.playbook_from("quick-lookup", QUICK);
    let session_file = world.data_dir().join("sessions/sample.json");
    world
        .center
        .storage_state("ops", -60i64)
        .save(&session_file)
        .unwrap();
    let running = start(&world, opts(1)).await;
    let ids = enqueue(
        &running,
        &world.data_dir().join("quick-lookup.yaml"),
        &orders(3),
    )
    .await;
    // The first run finds the session expired; the channel's queue pauses.
    let t = Instant::now();
    let status = loop {
        let (_, s) = api(&running, "GET", "/api/status", None).await;
        if s["paused_channels"]["sample"].is_object() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "never paused: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = status["paused_channels"]["sample"]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("session expired"), "{reason}");
    assert!(reason.contains("ops-lead must re-authorize"), "{reason}");
    // Nothing failed: every row waits, no attempt spent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in &ids {
        let j = job(&running, *id).await;
        assert_eq!(j["state"], "queued", "{j}");
        assert_eq!(j["attempts"], 0, "{j}");
    }
    let started = journal_events(&world)
        .iter()
        .filter(|e| matches!(e, Event::RunStarted { .. }))
        .count();
    assert_eq!(started, 1, "one run found out; the others never started");
    // Re-authorized, then resumed: the rows run.
    world
        .center
        .storage_state("ops", Duration::from_secs(3600))
        .save(&session_file)
        .unwrap();
    let (code, _) = api(&running, "POST", "/api/queue/sample/resume", None).await;
    assert_eq!(code, 200);
    for j in settled(&running, &ids, Duration::from_secs(120)).await {
        assert_eq!(j["outcome"]["status"], "ok", "{j}");
    }
    running.shutdown();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_per_data_directory_and_the_api_wants_its_token() {
    let world = World::new().await;
    let running = start(&world, opts(1)).await;
    // In this process…
    let again = clerk::serve::start(world.engine.clone(), opts(1)).await;
    let msg = again.err().expect("a second daemon is refused").to_string();
    assert!(
        msg.contains(&format!("clerk serve (pid {}", std::process::id())),
        "{msg}"
    );
    // …and from the real binary.
    let out = Command::new(clerk_bin())
        .args(["--data-dir"])
        .arg(world.data_dir())
        .args(["serve", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already served by clerk serve (pid"), "{err}");
    assert!(err.contains(&running.addr.to_string()), "{err}");
    // Without the token, the API answers 401 with a JSON error.
    let r = http(running.addr.port(), "GET", "/api/status", &[], None).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("serve.json"));
    running.shutdown();
    running.wait().await.unwrap();
    assert!(!world.data_dir().join("serve.json").exists());
}

async fn call(port: u16, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let r = http(
        port,
        method,
        path,
        &[
            (clerk::instance::TOKEN_HEADER, token),
            ("Content-Type", "application/json"),
        ],
        body.as_deref(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

async fn wait_for_runs(world: &World, n: usize) {
    let t = Instant::now();
    while journal_events(world)
        .iter()
        .filter(|e| matches!(e, Event::RunStarted { .. }))
        .count()
        < n
    {
        assert!(t.elapsed() < Duration::from_secs(120), "runs never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_sigterm_mid_batch_lose_nothing_and_the_work_completes() {
    let world = World::with_config(serve_config(
        "max_pages = 2",
        "pages = 2\nshutdown_deadline = \"300ms\"",
    ))
    .await;
    world.playbook_from("slow-lookup", SLOW);
    let playbook = world.data_dir().join("slow-lookup.yaml");
    let dir = world.data_dir().to_owned();

    // SIGKILL with runs in flight.
    let daemon = Daemon::spawn(&dir);
    let (port, token) = daemon.ready(&dir).await;
    let rows: Vec<Value> = orders(6).iter().map(|o| json!({ "order_id": o })).collect();
    let v = call(
        port,
        &token,
        "POST",
        "/api/runs",
        Some(json!({
            "playbook_yaml": std::fs::read_to_string(playbook).expect("the playbook file"),
            "rows": rows,
            "user": "ops"
        })),
    )
    .await;
    let ids: Vec<u64> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(ids.len(), 6);
    wait_for_runs(&world, 1).await;
    daemon.signal(libc::SIGKILL);
    daemon.wait();

    // Started again: the killed daemon's runs are marked interrupted, its jobs queued again.
    let daemon = Daemon::spawn(&dir);
    let (port, token) = daemon.ready(&dir).await;
    let interrupted_by_kill = journal_events(&world)
        .iter()
        .filter(|e| matches!(e, Event::RunInterrupted { .. }))
        .count();
    assert!(
        interrupted_by_kill >= 1,
        "the killed runs are marked interrupted"
    );
    // SIGTERM with runs in flight: they cannot finish in 300 ms.
    let before = journal_events(&world)
        .iter()
        .filter(|e| matches!(e, Event::RunStarted { .. }))
        .count();
    wait_for_runs(&world, before + 1).await;
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait();
    assert!(status.success(), "graceful exit: {status:?}");
    let interrupted = journal_events(&world)
        .iter()
        .filter(
            |e| matches!(e, Event::RunInterrupted { reason, .. } if reason.contains("shut down")),
        )
        .count();
    assert!(
        interrupted >= 1,
        "runs stopped by SIGTERM are marked interrupted"
    );
    let _ = (port, token);

    // Third start: everything completes.
    let daemon = Daemon::spawn(&dir);
    let (port, token) = daemon.ready(&dir).await;
    let t = Instant::now();
    loop {
        let jobs = call(port, &token, "GET", "/api/jobs", None).await;
        let jobs = jobs.as_array().unwrap().clone();
        if jobs.iter().all(|j| j["state"] == "done") {
            for j in &jobs {
                assert_eq!(j["outcome"]["status"], "ok", "{j}");
            }
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(180), "{jobs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
    // Each order has a finished run; every record and screenshot verifies.
    let ok_runs = journal_events(&world)
        .iter()
        .filter(|e| matches!(e, Event::RunFinished { status, .. } if status == "ok"))
        .count();
    assert_eq!(ok_runs, 6);
    let verify = Command::new(clerk_bin())
        .arg("--data-dir")
        .arg(&dir)
        .args(["verify", "--all", "--no-index"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert!(
        crate::common::processes_with(&dir.display().to_string()).is_empty(),
        "no Chromium or daemon left"
    );
    let _ = JobState::Done;
}

/// One job in flight through three SIGKILLs of `clerk serve` (one attempt allowed): each
/// crash marks its run interrupted and gives the claim back without spending the attempt,
/// and the fourth daemon finishes the job once, with evidence that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_in_flight_through_three_sigkills_completes_after_the_restarts() {
    let world = World::with_config(serve_config("", "pages = 1\nmax_attempts = 1")).await;
    world.playbook_from("slow-lookup", SLOW);
    let playbook = world.data_dir().join("slow-lookup.yaml");
    let dir = world.data_dir().to_owned();
    let started = |world: &World| {
        journal_events(world)
            .iter()
            .filter(|e| matches!(e, Event::RunStarted { .. }))
            .count()
    };
    let mut job = None;
    for kill in 1..=3 {
        let daemon = Daemon::spawn(&dir);
        let (port, token) = daemon.ready(&dir).await;
        if job.is_none() {
            let v = call(
                port,
                &token,
                "POST",
                "/api/runs",
                Some(json!({
                    "playbook_yaml": std::fs::read_to_string(&playbook).expect("the playbook"),
                    "rows": [{ "order_id": orders(1)[0] }],
                    "user": "ops"
                })),
            )
            .await;
            job = v["jobs"][0].as_u64();
        }
        // In flight: its run started (the slow step takes 1.5 s), then the daemon dies.
        wait_for_runs(&world, kill).await;
        daemon.signal(libc::SIGKILL);
        daemon.wait();
        assert_eq!(started(&world), kill, "one run per daemon");
    }
    let job = job.expect("a job id");
    let daemon = Daemon::spawn(&dir);
    let (port, token) = daemon.ready(&dir).await;
    let t = Instant::now();
    let done = loop {
        let j = call(port, &token, "GET", &format!("/api/jobs/{job}"), None).await;
        if j["state"] == "done" || j["state"] == "dead" {
            break j;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["outcome"]["status"], "ok", "{done}");
    assert_eq!(done["crashes"], 3, "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
    let events = journal_events(&world);
    let interrupted = events
        .iter()
        .filter(|e| matches!(e, Event::RunInterrupted { .. }))
        .count();
    assert_eq!(interrupted, 3, "each killed run marked interrupted");
    let finished_ok = events
        .iter()
        .filter(|e| matches!(e, Event::RunFinished { status, .. } if status == "ok"))
        .count();
    assert_eq!(finished_ok, 1, "the lookup ran to the end exactly once");
    let verify = Command::new(clerk_bin())
        .arg("--data-dir")
        .arg(&dir)
        .args(["verify", "--all", "--no-index"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert!(
        crate::common::processes_with(&dir.display().to_string()).is_empty(),
        "no Chromium or daemon left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_through_the_daemon_stops_claims_and_runs_and_resume_finishes_the_batch() {
    let world = World::with_config(serve_config("max_pages = 2", "pages = 2")).await;
    world.playbook_from("slow-lookup", SLOW);
    let running = start(&world, opts(2)).await;
    let ids = enqueue(
        &running,
        &world.data_dir().join("slow-lookup.yaml"),
        &orders(6),
    )
    .await;
    // Two runs in their wait for the late risk panel.
    let t = Instant::now();
    while world
        .center
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/orders/SO-"))
        .count()
        < 2
    {
        assert!(t.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, v) = api(
        &running,
        "POST",
        "/api/pause",
        Some(json!({ "user": "ops", "reason": "carrier pages look wrong" })),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let paused_at = v["at"].as_str().unwrap().to_owned();
    let pause_seq = v["seq"].as_u64().unwrap();
    // The in-flight runs stop at their next step, as paused; their jobs wait, no attempt
    // spent; nothing else starts.
    let t = Instant::now();
    loop {
        let (_, s) = api(&running, "GET", "/api/status", None).await;
        if s["in_flight"].as_array().unwrap().is_empty() {
            assert!(
                s["pause"]["global"]["reason"] == "carrier pages look wrong",
                "{s}"
            );
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    for id in &ids {
        let j = job(&running, *id).await;
        assert_eq!(j["state"], "queued", "{j}");
        assert_eq!(j["attempts"], 0, "{j}");
    }
    let text = std::fs::read_to_string(world.data_dir().join("journal.jsonl")).unwrap();
    let mut paused_runs = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let seq = v["seq"].as_u64().unwrap();
        match v["event"]["type"].as_str() {
            Some("run_started") => assert!(seq < pause_seq, "a run started after the pause"),
            Some("run_finished") if v["event"]["status"] == "paused" => paused_runs += 1,
            _ => {}
        }
    }
    assert_eq!(paused_runs, 2);
    assert!(
        world.center.writes().iter().all(|w| w.at <= paused_at),
        "the seller center received a write after the pause"
    );
    // /metrics while paused: OpenMetrics that a Prometheus parser reads.
    let r = http(running.addr.port(), "GET", "/metrics", &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().contains("openmetrics"));
    let lines: Vec<_> = r.body.lines().map(|l| Ok(l.to_owned())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).unwrap();
    let gauge = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("channel").is_none())
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(gauge("clerk_paused"), Some(1.0), "{}", r.body);
    // Resumed: the six orders complete.
    let (code, _) = api(
        &running,
        "POST",
        "/api/resume",
        Some(json!({ "user": "ops", "reason": "pages fixed" })),
    )
    .await;
    assert_eq!(code, 200);
    for j in settled(&running, &ids, Duration::from_secs(180)).await {
        assert_eq!(j["outcome"]["status"], "ok", "{j}");
    }
    let (_, stats) = api(&running, "GET", "/api/stats?since=1d", None).await;
    assert_eq!(stats["overall"]["ok"], 6, "{stats}");
    assert_eq!(stats["overall"]["runs_by_outcome"]["paused"], 2, "{stats}");
    running.shutdown();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_goes_through_a_running_daemon_and_says_so() {
    let world = World::with_config(serve_config("", "")).await;
    world.playbook_from("quick-lookup", QUICK);
    let running = start(&world, opts(1)).await;
    let clerk = |args: &[&str]| {
        let dir = world.data_dir().to_owned();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(clerk_bin())
                    .arg("--data-dir")
                    .arg(&dir)
                    .args(["--as", "ops"])
                    .args(&args)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let path = world.data_dir().join("quick-lookup.yaml");
    let out = clerk(&["run", path.to_str().unwrap(), "-i", "order_id=SO-100001"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}{stdout}");
    assert!(stderr.contains("through clerk serve"), "{stderr}");
    // The same results table as without a daemon.
    assert!(
        stdout.contains("quick-lookup") && stdout.contains("1 runs: 1 ok"),
        "{stdout}"
    );
    // The run was the daemon's: a job in its queue.
    let (_, jobs) = api(&running, "GET", "/api/jobs", None).await;
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    let out = clerk(&["queue", "list"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("quick-lookup"));
    // `--json` through the daemon: the same shape as without one (checked below).
    let out = clerk(&[
        "run",
        path.to_str().unwrap(),
        "-i",
        "order_id=SO-100002",
        "--json",
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let via_daemon: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert!(
        via_daemon["runs"][0]["fields"]["status"].is_string(),
        "{via_daemon}"
    );
    assert_eq!(via_daemon["runs"][0]["status"], "ok", "{via_daemon}");
    assert!(
        via_daemon["runs"][0]["screenshots"][0]["sha256"].is_string(),
        "{via_daemon}"
    );
    assert_eq!(via_daemon["ok"], 1, "{via_daemon}");
    // verify goes through the daemon, which checks its own index.
    let out = clerk(&["verify", "--all", "--json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["index_checked"], true, "{report}");
    // A reader that stops reading ends clerk quietly (no panic on the closed pipe).
    let piped = tokio::task::spawn_blocking({
        let dir = world.data_dir().to_owned();
        move || {
            Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "set -o pipefail; '{}' --data-dir '{}' queue list 2>&1 | {{ exec 0<&-; sleep 1; }}",
                    clerk_bin().display(),
                    dir.display()
                ))
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        piped.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&piped.stdout)
    );
    let out = clerk(&["pause", "--channel", "sample", "--reason", "audit"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("through clerk serve"));
    assert!(running.daemon.engine.pause.is_paused("sample").is_some());
    let out = clerk(&["status"]).await;
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("daemon: running"), "{status}");
    assert!(
        !status.contains("Array") && !status.contains("Number(") && !status.contains('"'),
        "no debug formatting: {status}"
    );
    assert!(status.contains("audit"), "{status}");
    let out = clerk(&["resume", "--channel", "sample", "--reason", "done"]).await;
    assert_eq!(out.status.code(), Some(0));
    running.shutdown();
    running.wait().await.unwrap();
    // Without a daemon, status says so.
    let out = clerk(&["status"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("daemon: not running"));
    // And `clerk run --json` prints the same shape, key for key.
    let out = clerk(&[
        "run",
        path.to_str().unwrap(),
        "-i",
        "order_id=SO-100003",
        "--json",
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let direct: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&direct), keys(&via_daemon));
    assert_eq!(keys(&direct["runs"][0]), keys(&via_daemon["runs"][0]));
    assert_eq!(
        keys(&direct["runs"][0]["screenshots"][0]),
        keys(&via_daemon["runs"][0]["screenshots"][0])
    );
    assert!(
        direct["runs"][0]["fields"]["status"].is_string(),
        "{direct}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_run_channel_playbook_and_step_on_every_line_of_a_run() {
    let world = World::new().await;
    world.playbook_from("quick-lookup", QUICK);
    let path = world.data_dir().join("quick-lookup.yaml");
    let dir = world.data_dir().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(clerk_bin())
            .arg("--data-dir")
            .arg(&dir)
            .args(["--as", "ops", "--log-format", "json", "-vv", "run"])
            .arg(&path)
            .args(["-i", "order_id=SO-100001", "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of_run: Vec<&Value> = lines
        .iter()
        .filter(|l| l["spans"].as_array().is_some_and(|s| !s.is_empty()))
        .collect();
    assert!(of_run.len() >= 4, "{stderr}");
    let run_id = of_run[0]["spans"][0]["run_id"].as_str().unwrap().to_owned();
    assert!(run_id.starts_with("r-"));
    for l in &of_run {
        let run = &l["spans"][0];
        assert_eq!(run["name"], "run", "{l}");
        assert_eq!(run["run_id"], run_id.as_str(), "{l}");
        assert_eq!(run["channel"], "sample", "{l}");
        assert_eq!(run["playbook"], "quick-lookup", "{l}");
    }
    // Step lines name their step; the four steps all logged.
    let steps: std::collections::BTreeSet<u64> = of_run
        .iter()
        .filter_map(|l| l["spans"].get(1))
        .filter_map(|s| s["step"].as_u64())
        .collect();
    assert_eq!(steps, (1..=4).collect());
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "run started"
                && l["span"]["run_id"] == run_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_center_5xx_is_retried_and_then_succeeds() {
    let world = World::with_config(serve_config(
        "",
        "retry_base = \"100ms\"\nretry_max = \"100ms\"",
    ))
    .await;
    world.playbook_from("quick-lookup", QUICK);
    world.center.fail_next_order_pages(1);
    let running = start(&world, opts(1)).await;
    let ids = enqueue(
        &running,
        &world.data_dir().join("quick-lookup.yaml"),
        &orders(1),
    )
    .await;
    let j = &settled(&running, &ids, Duration::from_secs(60)).await[0];
    assert_eq!(j["outcome"]["status"], "ok", "{j}");
    assert_eq!(j["attempts"], 2, "{j}");
    assert!(
        j["last_error"].as_str().unwrap().contains("HTTP 503"),
        "{j}"
    );
    running.shutdown();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_submit_go_through_the_daemon_which_holds_the_secret() {
    let world = World::new().await;
    // A draft, made directly (no daemon yet).
    let pb = crate::common::playbook("refund-draft");
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.status == "delivered" && o.total_cents >= 300)
        .unwrap()
        .id
        .clone();
    let report = world
        .run_as(
            &pb,
            &[
                ("order_id", order.as_str()),
                ("amount", "1.00"),
                ("reason", "wrong_item"),
                ("note", "photos in the case"),
                ("supervisor_pin", "73914628"),
            ],
            "ops",
            None,
        )
        .await;
    let id = report.approval_id.clone().expect("drafted");
    // The daemon, as a process, with the secret in its own environment only.
    let dir = world.data_dir().to_owned();
    let child = Command::new(clerk_bin())
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--port", "0"])
        .env("CLERK_SECRET_SUPERVISOR_PIN", "73914628")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon { child };
    daemon.ready(&dir).await;
    let cli = |args: Vec<&'static str>, extra: String| {
        let dir = dir.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(clerk_bin())
                    .arg("--data-dir")
                    .arg(&dir)
                    .args(&args)
                    .arg(extra)
                    .env_remove("CLERK_SECRET_SUPERVISOR_PIN")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    // The requester cannot approve their own draft, through the daemon either.
    let own = cli(vec!["--as", "ops", "approve"], id.clone()).await;
    assert_eq!(
        own.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let ok = cli(vec!["--as", "carol", "approve"], id.clone()).await;
    let err = String::from_utf8_lossy(&ok.stderr);
    assert_eq!(ok.status.code(), Some(0), "{err}");
    assert!(err.contains("through clerk serve"), "{err}");
    // The approval queued its submit (run as the requester); `clerk submit` finds that job
    // instead of queuing a second one, and waits for it.
    let said = String::from_utf8_lossy(&ok.stdout);
    assert!(said.contains("its submit is queued as job"), "{said}");
    let sub = cli(vec!["--as", "ops", "submit"], id.clone()).await;
    let out = String::from_utf8_lossy(&sub.stdout);
    assert_eq!(
        sub.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&sub.stderr)
    );
    let refunds = world.center.refunds();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert!(refunds[0].accepted, "{refunds:?}");
    assert_eq!(refunds[0].order_id, order);
    // The secret reached the seller center but was never queued.
    let qlog = std::fs::read_to_string(dir.join("queue/queue.log")).unwrap();
    assert!(!qlog.contains("73914628"));
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_runs_the_single_page_app_lookup_by_playbook_name() {
    // The sample's React-style app: hash routes, fetch-loaded content, a WebSocket feed.
    let world = World::with_config(serve_config("max_pages = 2", "pages = 2")).await;
    let running = start(&world, opts(2)).await;
    let wanted = ["SO-100001", "SO-100002", "SO-100003", "SO-100004"];
    let rows: Vec<Value> = wanted.iter().map(|o| json!({ "order_id": o })).collect();
    let (status, v) = api(
        &running,
        "POST",
        "/api/runs",
        Some(json!({ "playbook": "spa-order-lookup", "rows": rows, "user": "ops" })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let ids: Vec<u64> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let jobs = settled(&running, &ids, Duration::from_secs(180)).await;
    for (j, order) in jobs.iter().zip(wanted) {
        assert_eq!(j["outcome"]["status"], "ok", "{j}");
        let run_id = j["outcome"]["run_id"].as_str().unwrap();
        let fields: Vec<(String, String)> = world
            .records(run_id)
            .into_iter()
            .filter_map(|r| match r.event {
                Event::RunFinished { fields, .. } => Some(fields.into_iter().collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        let data = clerk::sample::orders()
            .iter()
            .find(|o| o.id == order)
            .unwrap();
        assert!(
            fields
                .iter()
                .any(|(k, v)| k == "status" && *v == data.status),
            "{order}: {fields:?}"
        );
    }
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    running.shutdown();
    running.wait().await.unwrap();
}

/// Every API route is in the OpenAPI document the daemon serves (built from the handlers:
/// no route is registered outside it), every documented route exists, and every error,
/// including a body or path that does not parse, is `{"error": ...}` JSON. A playbook named
/// by a path is refused without the daemon opening it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_is_documented_and_every_error_is_json() {
    let world = World::new().await;
    let running = start(&world, opts(1)).await;
    let port = running.addr.port();
    let token = running.daemon.instance().token.clone();

    // The document, without a token.
    let r = http(port, "GET", "/api/openapi.json", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc: Value = r.json();
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                operations.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    // What the router registers: every `/api` route goes through `routes!` (a tidy check on
    // the source, so a route added beside it fails here).
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/serve/api.rs"))
            .unwrap();
    let handlers = source.matches("#[utoipa::path(").count();
    assert_eq!(operations.len(), handlers, "{operations:?}");
    let bypass: Vec<&str> = source
        .lines()
        .filter(|l| l.contains(".route(\"/") && !l.contains("/api/openapi.json"))
        .collect();
    assert!(
        bypass.is_empty(),
        "routes outside the OpenAPI router: {bypass:?}"
    );
    for want in [
        ("POST", "/api/runs"),
        ("GET", "/api/runs/{id}/report"),
        ("POST", "/api/approvals/{id}/decide"),
        ("POST", "/api/verify"),
        ("GET", "/metrics"),
    ] {
        assert!(
            operations.iter().any(|(m, p)| m == want.0 && p == want.1),
            "{want:?} missing from {operations:?}"
        );
    }

    // Each documented operation exists and answers JSON (or its documented type).
    for (method, path) in &operations {
        let concrete = path
            .replace("{id}", "no-such-thing")
            .replace("{channel}", "no-such-channel")
            .replace("{name}", "no-such-schedule")
            .replace("{case}", "no-such-case");
        let body = (method == "POST").then(|| "{}".to_owned());
        let r = http(
            port,
            method,
            &concrete,
            &[
                (clerk::instance::TOKEN_HEADER, token.as_str()),
                ("Content-Type", "application/json"),
            ],
            body.as_deref(),
        )
        .await;
        assert!(
            !r.body.contains("no such API route"),
            "{method} {path} is documented but not routed"
        );
        if path != "/metrics" {
            let v: Value = serde_json::from_str(&r.body)
                .unwrap_or_else(|e| panic!("{method} {concrete}: not JSON ({e}): {}", r.body));
            if r.status >= 400 {
                assert!(v["error"].is_string(), "{method} {concrete}: {v}");
            }
        }
    }

    // Bodies and paths that do not parse, and unknown routes: JSON errors.
    let auth = [
        (clerk::instance::TOKEN_HEADER, token.as_str()),
        ("Content-Type", "application/json"),
    ];
    for (method, path, body, status) in [
        ("POST", "/api/runs", Some("{not json"), 400),
        ("POST", "/api/runs", Some(r#"{"rows": 5}"#), 422),
        (
            "POST",
            "/api/runs",
            Some(r#"{"playbook": "order-lookup", "colour": 1}"#),
            422,
        ),
        ("GET", "/api/jobs/abc", None, 400),
        ("GET", "/api/jobs?limit=many", None, 400),
        ("GET", "/api/nothing-here", None, 404),
    ] {
        let r = http(port, method, path, &auth, body).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", r.body));
        assert!(v["error"].is_string(), "{method} {path}: {v}");
    }

    // A playbook named by a path is refused before anything is opened; the message echoes
    // no file content and no mangled path.
    let secret_file = world.data_dir().join("not-a-playbook.txt");
    std::fs::write(&secret_file, "root:hunter2\n").unwrap();
    for name in [
        secret_file.display().to_string(),
        "playbooks/order-lookup.yaml".to_owned(),
        "../../etc/passwd".to_owned(),
    ] {
        let (status, v) = api(
            &running,
            "POST",
            "/api/runs",
            Some(json!({ "playbook": name, "user": "ops" })),
        )
        .await;
        assert_eq!(status, 400, "{name}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains("opens no file"), "{name}: {msg}");
        assert!(
            !msg.contains("hunter2") && !msg.contains("playbooks/playbooks"),
            "{msg}"
        );
    }
    // By name it works, pinned by the text's hash.
    let (status, v) = api(
        &running,
        "POST",
        "/api/runs",
        Some(json!({ "playbook": "order-lookup", "rows": [{"order_id": "SO-100001"}], "user": "ops" })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["playbook_sha256"].as_str().map(str::len), Some(64), "{v}");
    running.shutdown();
    running.wait().await.unwrap();
}
