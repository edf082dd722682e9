//! Cluster mode: several `clerk serve` processes (separate data directories) sharing one
//! real PostgreSQL (a throwaway cluster started here) and one sample seller center.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::http::http;
use crate::common::{clerk_bin, Daemon, World};
use clerk::sample::postgres::Postgres;

pub(crate) const LOOKUP: &str = r##"name: cluster-lookup
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

/// `yaml` with two first steps that hold the run at the sample center's gate `gate` until
/// the test opens it.
pub(crate) fn held_at_gate(yaml: &str, gate: &str) -> String {
    yaml.replacen(
        "steps:\n",
        &format!(
            "steps:\n  - goto: /probe/gate?name={gate}\n  - wait_for: {{ selector: \"#open\" }}\n    timeout: 60s\n"
        ),
        1,
    )
}

/// Queues one lookup of `order` with `yaml` through a node's API, as ops; its job id.
pub(crate) async fn queue_one(port: u16, token: &str, yaml: &str, order: &str) -> u64 {
    let queued = api(
        port,
        token,
        "POST",
        "/api/runs",
        Some(json!({ "playbook_yaml": yaml, "rows": [{ "order_id": order }], "user": "ops" })),
    )
    .await;
    queued["jobs"][0]
        .as_u64()
        .unwrap_or_else(|| panic!("no job queued: {queued}"))
}

/// The demo config with the channel limited to `max_pages` and `[cluster] database = url`.
pub(crate) fn cluster_config(url: &str, max_pages: usize) -> impl FnOnce(String) -> String {
    let url = url.to_owned();
    move |c: String| {
        let c = c.replacen(
            "approval_ttl_hours = 24",
            &format!("approval_ttl_hours = 24\nmax_pages = {max_pages}"),
            1,
        );
        format!("{c}\n[serve]\npages = 2\nlease = \"5s\"\n\n[cluster]\ndatabase = \"{url}\"\n")
    }
}

/// A node's data directory: the world's config and a session of its own.
pub(crate) fn node_dir(world: &World) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(world.data_dir().join("clerk.toml")).unwrap();
    std::fs::write(dir.path().join("clerk.toml"), config).unwrap();
    let cfg = clerk::channel::Config::load(&dir.path().join("clerk.toml")).unwrap();
    world
        .center
        .storage_state("ops", Duration::from_secs(3600))
        .save(&cfg.channel("sample").unwrap().session_path(dir.path()))
        .unwrap();
    dir
}

/// A Chromium with remote debugging on `port` (0: any free one), as an operator starts one
/// on another machine; and its port.
fn remote_chromium_on(port: u16) -> (clerk::browser::ChromiumProcess, u16) {
    let opts = clerk::browser::LaunchOptions::detect().expect("chromium is installed");
    let args: Vec<String> = opts
        .args()
        .into_iter()
        .map(|a| {
            if a == "--remote-debugging-port=0" {
                format!("--remote-debugging-port={port}")
            } else {
                a
            }
        })
        .collect();
    let (process, ws) =
        clerk::browser::ChromiumProcess::spawn(&opts.executable, &args, opts.launch_timeout)
            .expect("chromium starts");
    let port = url::Url::parse(&ws)
        .ok()
        .and_then(|u| u.port())
        .expect("a port");
    (process, port)
}

/// Points a node at a remote browser.
fn use_remote_browser(dir: &Path, port: u16) {
    let path = dir.join("clerk.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{config}\n[[browser]]\nendpoint = \"http://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
}

pub(crate) fn clerk(data: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(clerk_bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub(crate) async fn api(
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
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
    assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

pub(crate) fn journal_events(data: &Path) -> Vec<Value> {
    std::fs::read_to_string(data.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["event"].clone())
        .collect()
}

/// Two nodes drain one queue: a node killed mid-batch (SIGKILL) leaves its claim to be
/// rescued by the other when its lease ends; the other runs the jobs the first one queued;
/// every job completes once, the channel's page limit holds across nodes at the seller
/// center, either node reports every run, and both evidence stores verify. Before the schema exists,
/// `clerk serve` refuses to start and says to run `clerk db migrate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_one_queue_and_survive_a_killed_node() {
    let pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .unwrap()
        .expect("PostgreSQL starts (scripts/install-deps.sh installs it)");
    let url = pg.create_database("clerk").unwrap();
    // The world's own data directory stays unused (its engine holds the store open): both
    // nodes get directories of their own.
    let world = World::with_config(cluster_config(&url, 1)).await;
    let (a_dir, b_dir) = (node_dir(&world), node_dir(&world));
    let (a, b) = (a_dir.path(), b_dir.path());

    // An unmigrated database: serve refuses, saying what to do.
    let out = clerk(a, &[("CLERK_NODE", "a")], &["serve", "--port", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clerk db migrate"), "{err}");
    let out = clerk(a, &[], &["db", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema version 0"));
    let out = clerk(a, &[], &["db", "migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrated from version 0"));
    let out = clerk(b, &[], &["db", "status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Node a alone first: it runs the first jobs.
    let mut node_a = Daemon::spawn_in(a, None, &[("CLERK_NODE", "a")]);
    let (port_a, token_a) = node_a.ready(a).await;

    let orders: Vec<String> = (0..16).map(|i| format!("SO-{:06}", 100001 + i)).collect();
    let rows: Vec<Value> = orders.iter().map(|o| json!({ "order_id": o })).collect();
    let queued = api(
        port_a,
        &token_a,
        "POST",
        "/api/runs",
        Some(json!({ "playbook_yaml": LOOKUP, "rows": rows, "user": "ops" })),
    )
    .await;
    let ids: Vec<u64> = queued["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 16);
    let done_count = |port: u16, token: String| {
        let ids = ids.clone();
        async move {
            let mut done = 0;
            for id in &ids {
                let j = api(port, &token, "GET", &format!("/api/jobs/{id}"), None).await;
                if j["state"] == "done" {
                    done += 1;
                }
            }
            done
        }
    };
    let wait_done = |port: u16, token: String, n: usize, what: &'static str| async move {
        let t = Instant::now();
        while done_count(port, token.clone()).await < n {
            assert!(t.elapsed() < Duration::from_secs(180), "{what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_done(port_a, token_a.clone(), 4, "node a made no progress").await;
    // Node a dies mid-batch; node b starts: it sees the jobs node a queued (one queue), runs
    // them, and rescues node a's claim once its lease (5 s) has ended.
    node_a.signal(libc::SIGKILL);
    let _ = node_a.child.wait();
    let node_b = Daemon::spawn_in(b, None, &[("CLERK_NODE", "b")]);
    let (port_b, token_b) = node_b.ready(b).await;
    wait_done(port_b, token_b.clone(), 9, "node b did not take over").await;
    // Node a again, under the same name: both nodes share the rest.
    node_a = Daemon::spawn_in(a, None, &[("CLERK_NODE", "a")]);
    let (port_a, token_a) = node_a.ready(a).await;
    wait_done(port_b, token_b.clone(), 16, "jobs did not all complete").await;

    // Either node reports every job's run, whichever node ran it (`clerk run` through a
    // daemon prints these).
    for id in &ids {
        let j = api(port_b, &token_b, "GET", &format!("/api/jobs/{id}"), None).await;
        let run = j["outcome"]["run_id"].as_str().unwrap().to_owned();
        for (port, token) in [(port_a, &token_a), (port_b, &token_b)] {
            let r = api(port, token, "GET", &format!("/api/runs/{run}/report"), None).await;
            assert_eq!(r["status"], "ok", "{r}");
        }
    }
    node_a.signal(libc::SIGTERM);
    node_b.signal(libc::SIGTERM);
    assert!(node_a.wait().success(), "node a stops cleanly on SIGTERM");
    assert!(node_b.wait().success(), "node b stops cleanly on SIGTERM");

    // Every job done once, with its run in one of the two journals, finished ok.
    let mut ok_runs = std::collections::BTreeMap::new();
    for data in [a, b] {
        for e in journal_events(data) {
            if e["type"] == "run_finished" && e["status"] == "ok" {
                ok_runs.insert(e["run_id"].as_str().unwrap().to_owned(), data.to_owned());
            }
        }
    }
    let (hot, finished) = clerk::db::off_runtime(|| {
        let mut db = clerk::db::connect(&url).unwrap();
        let hot: i64 = db
            .query_one("SELECT count(*) FROM clerk_jobs", &[])
            .unwrap()
            .get(0);
        let finished: Vec<(i64, String, Value)> = db
            .query(
                "SELECT id, state, job FROM clerk_jobs_finished ORDER BY id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        (hot, finished)
    });
    assert_eq!(hot, 0, "no job left queued or claimed");
    assert_eq!(finished.len(), ids.len());
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for (id, state, job) in &finished {
        assert_eq!(state, "done", "job {id}: {job}");
        let run = job["outcome"]["run_id"].as_str().unwrap();
        let node = ok_runs
            .get(run)
            .unwrap_or_else(|| panic!("job {id}'s run {run} finished ok in no journal"));
        *per_node.entry(node.display().to_string()).or_default() += 1;
    }
    let ran_a = per_node.get(&a.display().to_string()).copied().unwrap_or(0);
    let ran_b = per_node.get(&b.display().to_string()).copied().unwrap_or(0);
    assert!(ran_a >= 4 && ran_b >= 5, "a ran {ran_a}, b ran {ran_b}");
    // The channel's limit (1 page) held across both nodes, as the seller center saw it.
    assert_eq!(world.center.max_concurrent_order_pages(), 1);
    for data in [a, b] {
        let out = clerk(data, &[], &["verify"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    drop(pg);
}

const PIN: &str = "73914628";

/// The shipped refund playbook, holding at a gate the test controls before it opens the form.
fn gated_refund(world: &World) -> std::sync::Arc<clerk::playbook::Playbook> {
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/refund-draft.yaml"),
    )
    .unwrap()
    .replace("name: refund-draft", "name: gated-refund");
    let yaml = held_at_gate(&yaml, "hold");
    world.playbook_from("gated-refund", &yaml)
}

/// A node stopped (SIGSTOP) past its lease while its approved submit waits on the page:
/// another node's claim expires the lease; when the node continues (SIGCONT), the fencing
/// check refuses its submit before the approval is spent — zero writes at the seller
/// center, a `refused` record saying why — and a retry of the job then submits exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_node_cannot_submit() {
    let (pg, url) = migrated_database().await;
    let config = cluster_config(&url, 1);
    let world =
        World::with_config(move |c| config(c).replace("lease = \"5s\"", "lease = \"3s\"")).await;
    let pb = gated_refund(&world);
    world.center.open_gate("hold");
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.status == "delivered" && o.total_cents >= 300)
        .unwrap()
        .id
        .clone();
    let r = world
        .run_as(
            &pb,
            &[
                ("order_id", order.as_str()),
                ("amount", "1.00"),
                ("reason", "wrong_item"),
                ("note", "fencing test"),
                ("supervisor_pin", PIN),
            ],
            "ops",
            None,
        )
        .await;
    assert_eq!(r.status, clerk::runner::RunStatus::Drafted, "{:?}", r.error);
    let approval = r.approval_id.clone().expect("an approval was requested");
    world.center.close_gate("hold");

    let node_a = Daemon::spawn_in(
        world.data_dir(),
        None,
        &[("CLERK_NODE", "a"), ("CLERK_SECRET_SUPERVISOR_PIN", PIN)],
    );
    node_a.ready(world.data_dir()).await;
    let out = clerk(
        world.data_dir(),
        &[("HOME", world.data_dir().to_str().unwrap())],
        &["--as", "carol", "approve", &approval],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("its submit is queued as job"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The submit run is holding at the gate on node a.
    let t = Instant::now();
    let at_gate = || {
        world
            .center
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/probe/gate"))
            .count()
    };
    let before = at_gate();
    while at_gate() < before + 3 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the submit never reached the gate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node_a.signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Another node asks for work: the stopped node's lease (3 s) has ended, so it is
    // expired; a submit has one attempt, so the job is dead-lettered. (Had node a been
    // stopped inside a transaction, the server ends that session after
    // db::IDLE_IN_TRANSACTION and its row lock with it, so node b asks again until then.)
    let (job_id, state) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            use clerk::queue::RunQueue;
            let b = clerk::queue::PgQueue::open(
                &url,
                "b",
                clerk::queue::QueueLimits::default(),
                clerk::queue::Backoff::default(),
            )
            .unwrap();
            let t = Instant::now();
            loop {
                assert!(b
                    .claim("b/serve/w0", Duration::from_secs(60), chrono::Utc::now())
                    .unwrap()
                    .is_none());
                let jobs = b.list(&clerk::queue::JobFilter::default()).unwrap();
                assert_eq!(jobs.len(), 1);
                if jobs[0].state != clerk::queue::JobState::Claimed
                    || t.elapsed() > clerk::db::IDLE_IN_TRANSACTION * 3
                {
                    break (jobs[0].id, jobs[0].state);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .await
        .unwrap()
    };
    assert_eq!(state, clerk::queue::JobState::Dead);
    world.center.open_gate("hold");
    node_a.signal(libc::SIGCONT);
    // Node a's run reaches its submit step: the fencing check refuses it.
    let t = Instant::now();
    let refusal = loop {
        let found = journal_events(world.data_dir()).into_iter().find(|e| {
            e["type"] == "refused"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("fencing check failed"))
        });
        if let Some(e) = found {
            break e;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no fencing refusal recorded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = refusal["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("job {job_id}")), "{reason}");
    assert!(
        world.center.refunds().is_empty(),
        "the stale node wrote nothing"
    );
    // The approval was not spent: retried, the job submits once.
    let out = clerk(
        world.data_dir(),
        &[],
        &["queue", "retry", &job_id.to_string()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Instant::now();
    while world.center.refunds().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the retried submit never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    node_a.signal(libc::SIGTERM);
    let _ = node_a.wait();
    let refunds = world.center.refunds();
    assert_eq!(refunds.len(), 1, "exactly one write");
    assert!(refunds[0].accepted);
    drop(pg);
}

pub(crate) async fn in_flight(port: u16, token: &str) -> usize {
    api(port, token, "GET", "/api/status", None).await["in_flight"]
        .as_array()
        .map_or(0, Vec::len)
}

/// A pause made on one node reaches the other within moments (through the database's
/// NOTIFY): its board records it naming the node it came from, and the run it is executing
/// stops before its next step; a resume made there comes back the same way. `clerk status`
/// and `/metrics` on any node list every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_on_one_node_stops_the_other_and_status_lists_every_node() {
    let (pg, url) = migrated_database().await;
    let world = World::with_config(cluster_config(&url, 1)).await;
    let (a_dir, b_dir) = (node_dir(&world), node_dir(&world));
    let (a, b) = (a_dir.path(), b_dir.path());
    let node_a = Daemon::spawn_in(a, None, &[("CLERK_NODE", "a")]);
    let node_b = Daemon::spawn_in(b, None, &[("CLERK_NODE", "b")]);
    let (port_a, token_a) = node_a.ready(a).await;
    let (port_b, token_b) = node_b.ready(b).await;

    let job = queue_one(port_a, &token_a, &held_at_gate(LOOKUP, "held"), "SO-100001").await;
    // Which node runs it?
    let t = Instant::now();
    let (runner, other) = loop {
        if in_flight(port_a, &token_a).await == 1 {
            break ((a, port_a, &token_a, "a"), (b, port_b, &token_b, "b"));
        }
        if in_flight(port_b, &token_b).await == 1 {
            break ((b, port_b, &token_b, "b"), (a, port_a, &token_a, "a"));
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Paused on the other node.
    api(
        other.1,
        other.2,
        "POST",
        "/api/pause",
        Some(json!({ "user": "ops", "reason": "incident 7 on the seller center" })),
    )
    .await;
    let t = Instant::now();
    loop {
        let s = api(runner.1, runner.2, "GET", "/api/status", None).await;
        if !s["pause"]["global"].is_null() {
            let reason = s["pause"]["global"]["reason"].as_str().unwrap_or("");
            assert!(
                reason.contains("incident 7") && reason.contains(&format!("from node {}", other.3)),
                "{reason}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the pause never reached node {}",
            runner.3
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The held run stops before its next step.
    world.center.open_gate("held");
    let t = Instant::now();
    loop {
        let paused = journal_events(runner.0)
            .iter()
            .any(|e| e["type"] == "run_finished" && e["status"] == "paused");
        if paused {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the run was not stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(world
        .center
        .requests()
        .iter()
        .all(|r| !r.path.starts_with("/orders/SO-100001")));

    // Status and metrics on either node list both nodes.
    let out = clerk(a, &[], &["status"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("cluster: this node is a"), "{said}");
    assert!(
        said.contains("node a: http://") && said.contains("node b: http://"),
        "{said}"
    );
    assert!(said.contains("limit sample: 1 page(s) at once"), "{said}");
    let m = http(
        port_b,
        "GET",
        "/metrics",
        &[(clerk::instance::TOKEN_HEADER, token_b.as_str())],
        None,
    )
    .await;
    assert!(
        m.body.contains("clerk_cluster_node_busy{node=\"a\"}"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("clerk_channel_max_pages{channel=\"sample\"} 1"),
        "{}",
        m.body
    );

    // Resumed on the node that ran the job: the other node's board follows, and the job
    // (given back by the pause) completes.
    api(
        runner.1,
        runner.2,
        "POST",
        "/api/resume",
        Some(json!({ "user": "ops", "reason": "incident 7 closed" })),
    )
    .await;
    let t = Instant::now();
    loop {
        let s = api(other.1, other.2, "GET", "/api/status", None).await;
        let j = api(other.1, other.2, "GET", &format!("/api/jobs/{job}"), None).await;
        if s["pause"]["global"].is_null() && j["state"] == "done" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "resume did not come back: {s} {j}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resumed = journal_events(other.0).into_iter().any(|e| {
        e["type"] == "pause"
            && e["on"] == false
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("from node {}", runner.3)))
    });
    assert!(resumed, "node {} recorded the resume it adopted", other.3);
    node_a.signal(libc::SIGTERM);
    node_b.signal(libc::SIGTERM);
    let _ = (node_a.wait(), node_b.wait());
    drop(pg);
}

/// `clerk verify` on `data` until it passes (at most 90 s; returns its output). With a
/// shared journal a node may need another node's screenshots from the bucket, which that
/// node copies when each run ends or, for runs cut off by a kill, when it starts again.
pub(crate) async fn verify_eventually(data: &Path, env: &[(&str, &str)]) -> String {
    let t = Instant::now();
    loop {
        let out = clerk(data, env, &["verify"]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "{} does not verify: {}{}",
            data.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A throwaway PostgreSQL with a `clerk` database at the current schema.
pub(crate) async fn migrated_database() -> (Postgres, String) {
    let pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .unwrap()
        .expect("PostgreSQL starts");
    let url = pg.create_database("clerk").unwrap();
    clerk::db::off_runtime(|| clerk::db::migrate(&url)).unwrap();
    (pg, url)
}

/// Jobs done, read from the database (None while it is unreachable).
fn done_in_db(url: &str) -> Option<i64> {
    clerk::db::off_runtime(|| {
        let mut c = clerk::db::connect(url).ok()?;
        c.query_one(
            "SELECT count(*) FROM clerk_jobs_finished WHERE state = 'done'",
            &[],
        )
        .ok()
        .map(|r| r.get(0))
    })
}

async fn wait_db_done(url: &str, n: i64, what: &str) {
    let t = Instant::now();
    while done_in_db(url).unwrap_or(0) < n {
        assert!(t.elapsed() < Duration::from_secs(240), "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Chaos, lookups only: two nodes, each driving a remote Chromium of its own, drain 300
/// queued lookups on three channels (one page each, four pages in all) while each node is
/// SIGKILLed and restarted, PostgreSQL is restarted, the nodes' database connections are
/// terminated, and node a's Chromium is killed and started again. Every job completes
/// exactly once, with an ok run in one node's journal; the seller center never saw more
/// order pages at once than the channels' limits allow together, and not one write (the
/// pages' widgets keep posting; a node killed mid-request must not let one out of its
/// remote browser); both evidence stores verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_every_lookup_completes_once() {
    chaos_lookups(false).await;
}

/// [`chaos_every_lookup_completes_once`] with the journal in PostgreSQL and the evidence in a
/// bucket: the same guarantees while the database that holds the journal is restarted and
/// its connections are terminated under the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_every_lookup_completes_once_on_a_shared_journal() {
    chaos_lookups(true).await;
}

async fn chaos_lookups(shared: bool) {
    use crate::common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
    let s3 = S3Server::start("evidence").await;
    let endpoint = s3.endpoint();
    let (mut pg, url) = migrated_database().await;
    let base = cluster_config(&url, 1);
    let world = World::with_config(move |c| {
        let c = base(c);
        let c = if shared {
            format!(
                "{c}journal = \"database\"\nevidence = \"s3://evidence/chaos\"\nevidence_endpoint = \"{endpoint}\"\n"
            )
        } else {
            c
        };
        // Two more channels on the same seller center, one page each.
        let sample = c
            .split("[[channel]]")
            .nth(1)
            .and_then(|t| t.split("\n[").next())
            .unwrap()
            .to_owned();
        let mut extra = String::new();
        for n in [2, 3] {
            extra.push_str(&format!(
                "\n[[channel]]{}\n",
                sample
                    .replace("id = \"sample\"", &format!("id = \"sample{n}\""))
                    .replace("sessions/sample.json", &format!("sessions/sample{n}.json"))
            ));
        }
        c.replacen("\n[serve]", &format!("{extra}\n[serve]"), 1)
    })
    .await;
    let (a_dir, b_dir) = (node_dir(&world), node_dir(&world));
    let (a, b) = (a_dir.path(), b_dir.path());
    for dir in [a, b] {
        for n in [2, 3] {
            world
                .center
                .storage_state("ops", Duration::from_secs(3600))
                .save(&dir.join(format!("sessions/sample{n}.json")))
                .unwrap();
        }
    }
    let (mut chrome_a, cdp_a) = remote_chromium_on(0);
    let (_chrome_b, cdp_b) = remote_chromium_on(0);
    use_remote_browser(a, cdp_a);
    use_remote_browser(b, cdp_b);
    let creds = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    let env_a = [("CLERK_NODE", "a"), creds[0], creds[1]];
    let env_b = [("CLERK_NODE", "b"), creds[0], creds[1]];
    let mut node_a = Daemon::spawn_in(a, None, &env_a);
    let mut node_b = Daemon::spawn_in(b, None, &env_b);
    let (port_a, token_a) = node_a.ready(a).await;
    node_b.ready(b).await;
    let mut ids = Vec::new();
    for channel in ["sample", "sample2", "sample3"] {
        let rows: Vec<Value> = (0..100)
            .map(|i| json!({ "order_id": format!("SO-{:06}", 100001 + i) }))
            .collect();
        let yaml = LOOKUP
            .replace("channel: sample", &format!("channel: {channel}"))
            .replace("name: cluster-lookup", &format!("name: lookup-{channel}"));
        let queued = api(
            port_a,
            &token_a,
            "POST",
            "/api/runs",
            Some(json!({ "playbook_yaml": yaml, "rows": rows, "user": "ops" })),
        )
        .await;
        ids.extend(
            queued["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j.as_u64().unwrap()),
        );
    }
    assert_eq!(ids.len(), 300);

    wait_db_done(&url, 30, "no progress").await;
    node_a.signal(libc::SIGKILL);
    let _ = node_a.child.wait();
    node_a = Daemon::spawn_in(a, None, &env_a);
    node_a.ready(a).await;

    wait_db_done(&url, 75, "no progress after killing node a").await;
    tokio::task::block_in_place(|| {
        pg.stop().unwrap();
        std::thread::sleep(Duration::from_secs(1));
        pg.start_server().unwrap();
    });

    wait_db_done(&url, 125, "no progress after restarting PostgreSQL").await;
    let killed = clerk::db::off_runtime(|| {
        let mut c = clerk::db::connect(&url).unwrap();
        c.query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'clerk' AND pid <> pg_backend_pid()) k",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
    });
    assert!(
        killed >= 2,
        "the nodes' connections were terminated ({killed})"
    );

    wait_db_done(&url, 150, "no progress after terminating the backends").await;
    // Node a's browser dies mid-batch and comes back on the same port: the run it was in
    // fails closed, its job is given back, and node a reconnects with the guard afresh.
    chrome_a.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (chrome_a_again, _) = remote_chromium_on(cdp_a);
    let _chrome_a = chrome_a_again;

    wait_db_done(&url, 200, "no progress after restarting node a's browser").await;
    node_b.signal(libc::SIGKILL);
    let _ = node_b.child.wait();
    node_b = Daemon::spawn_in(b, None, &env_b);
    node_b.ready(b).await;

    wait_db_done(&url, 300, "not every job completed").await;
    node_a.signal(libc::SIGTERM);
    node_b.signal(libc::SIGTERM);
    assert!(node_a.wait().success());
    assert!(node_b.wait().success());
    if shared {
        // Bring both copies up to the shared journal's head.
        for data in [a, b] {
            let out = clerk(data, &creds, &["runs", "list"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    let mut ok_runs = std::collections::BTreeSet::new();
    for data in [a, b] {
        for e in journal_events(data) {
            if e["type"] == "run_finished" && e["status"] == "ok" {
                ok_runs.insert(e["run_id"].as_str().unwrap().to_owned());
            }
        }
    }
    let (hot, finished) = clerk::db::off_runtime(|| {
        let mut db = clerk::db::connect(&url).unwrap();
        let hot: i64 = db
            .query_one("SELECT count(*) FROM clerk_jobs", &[])
            .unwrap()
            .get(0);
        let finished: Vec<(String, Value)> = db
            .query("SELECT state, job FROM clerk_jobs_finished", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        (hot, finished)
    });
    assert_eq!(hot, 0);
    assert_eq!(finished.len(), 300, "each job finished once");
    for (state, job) in &finished {
        assert_eq!(state, "done", "{job}");
        let run = job["outcome"]["run_id"].as_str().unwrap();
        assert!(
            ok_runs.contains(run),
            "job {}'s run {run} is in no journal",
            job["id"]
        );
    }
    assert!(
        world.center.writes().is_empty(),
        "writes reached the seller center: {:?}",
        world.center.writes()
    );
    let peak = world.center.max_concurrent_order_pages();
    assert!(
        peak <= 3,
        "at most 3 order pages at once (1 per channel), saw {peak}"
    );
    for data in [a, b] {
        verify_eventually(data, &creds).await;
    }
    drop(pg);
}

/// Finished jobs by state, read from the database.
fn finished_in_db(url: &str) -> Option<(i64, i64)> {
    clerk::db::off_runtime(|| {
        let mut c = clerk::db::connect(url).ok()?;
        let row = c
            .query_one(
                "SELECT count(*), (SELECT count(*) FROM clerk_jobs) FROM clerk_jobs_finished",
                &[],
            )
            .ok()?;
        Some((row.get(0), row.get(1)))
    })
}

/// Chaos with writes: node a (its own remote Chromium) drafts ten refunds queued through
/// its API, a reviewer approves all ten (each approval queues its submit, pinned to node a,
/// where the approvals are), and node a is SIGKILLed twice while the submits run, with
/// lookups going on on both nodes. No order is ever refunded twice and no approval is used
/// twice: a submit cut off before its approval was spent runs again and submits once; one
/// cut off after is refused ("already used") rather than sent again. Every job ends, the
/// journals verify, and every refund at the seller center belongs to an approval node a
/// recorded as used.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_approved_submits_never_happen_twice() {
    chaos_submits(false).await;
}

/// [`chaos_approved_submits_never_happen_twice`] with the journal in PostgreSQL
/// (`journal = "database"`, evidence in a bucket): the same guarantees, each approval's
/// single use now enforced by the transaction that records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_approved_submits_never_happen_twice_on_a_shared_journal() {
    chaos_submits(true).await;
}

async fn chaos_submits(shared: bool) {
    use crate::common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
    let s3 = S3Server::start("evidence").await;
    let (pg, url) = migrated_database().await;
    let config = cluster_config(&url, 2);
    let endpoint = s3.endpoint();
    let world = World::with_config(move |c| {
        let c = config(c);
        if shared {
            format!(
                "{c}journal = \"database\"\nevidence = \"s3://evidence/chaos\"\nevidence_endpoint = \"{endpoint}\"\n"
            )
        } else {
            c
        }
    })
    .await;
    let (a_dir, b_dir) = (node_dir(&world), node_dir(&world));
    let (a, b) = (a_dir.path(), b_dir.path());
    let (_chrome_a, cdp_a) = remote_chromium_on(0);
    let (_chrome_b, cdp_b) = remote_chromium_on(0);
    use_remote_browser(a, cdp_a);
    use_remote_browser(b, cdp_b);
    let creds = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    let env_a = [
        ("CLERK_NODE", "a"),
        ("CLERK_SECRET_SUPERVISOR_PIN", PIN),
        creds[0],
        creds[1],
    ];
    let env_b = [("CLERK_NODE", "b"), creds[0], creds[1]];
    let mut node_a = Daemon::spawn_in(a, None, &env_a);
    let node_b = Daemon::spawn_in(b, None, &env_b);
    let (mut port_a, mut token_a) = node_a.ready(a).await;
    node_b.ready(b).await;

    let orders: Vec<String> = clerk::sample::orders()
        .iter()
        .filter(|o| o.status == "delivered" && o.total_cents >= 300)
        .take(10)
        .map(|o| o.id.clone())
        .collect();
    assert_eq!(orders.len(), 10);
    let refund_yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/refund-draft.yaml"),
    )
    .unwrap();
    let rows: Vec<Value> = orders
        .iter()
        .map(|o| json!({ "order_id": o, "amount": "1.00", "reason": "damaged", "note": "chaos" }))
        .collect();
    api(
        port_a,
        &token_a,
        "POST",
        "/api/runs",
        Some(json!({ "playbook_yaml": refund_yaml, "rows": rows, "user": "ops" })),
    )
    .await;
    let lookups: Vec<Value> = (0..20)
        .map(|i| json!({ "order_id": format!("SO-{:06}", 100001 + i) }))
        .collect();
    api(
        port_a,
        &token_a,
        "POST",
        "/api/runs",
        Some(json!({ "playbook_yaml": LOOKUP, "rows": lookups, "user": "ops" })),
    )
    .await;

    // Ten drafts, each asking for approval in node a's journal.
    let t = Instant::now();
    let approvals = loop {
        let ids: Vec<String> = journal_events(a)
            .into_iter()
            .filter(|e| e["type"] == "approval_requested")
            .map(|e| e["approval_id"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() == 10 {
            break ids;
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "only {} drafts asked for approval",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(world.center.refunds().is_empty(), "a draft sent its write");
    for id in &approvals {
        let decided = api(
            port_a,
            &token_a,
            "POST",
            &format!("/api/approvals/{id}/decide"),
            Some(json!({ "user": "carol", "approve": true })),
        )
        .await;
        assert!(decided["submit_job"]["id"].is_u64(), "{decided}");
    }

    // Node a dies as soon as the first refund arrives, and again at the fifth.
    for at in [1, 5] {
        let t = Instant::now();
        while world.center.refunds().len() < at {
            assert!(
                t.elapsed() < Duration::from_secs(180),
                "{} refunds so far, waiting for {at}",
                world.center.refunds().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node_a.signal(libc::SIGKILL);
        let _ = node_a.child.wait();
        node_a = Daemon::spawn_in(a, None, &env_a);
        (port_a, token_a) = node_a.ready(a).await;
    }
    let _ = (port_a, token_a);

    // Every job ends (done, or dead when its approval was spent by a killed attempt).
    let t = Instant::now();
    loop {
        if let Some((finished, hot)) = finished_in_db(&url) {
            if finished == 40 && hot == 0 {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "jobs never all ended: {:?}",
            finished_in_db(&url)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node_a.signal(libc::SIGTERM);
    node_b.signal(libc::SIGTERM);
    assert!(node_a.wait().success());
    assert!(node_b.wait().success());

    let refunds = world.center.refunds();
    let mut per_order = std::collections::BTreeMap::<String, usize>::new();
    for r in &refunds {
        *per_order.entry(r.order_id.clone()).or_default() += 1;
    }
    assert!(
        per_order.values().all(|n| *n == 1),
        "an order was refunded twice: {per_order:?}"
    );
    if shared {
        // Bring node a's copy up to the shared journal's head (node b appended last).
        let out = clerk(a, &creds, &["runs", "list"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let events = journal_events(a);
    let mut used = std::collections::BTreeMap::<String, usize>::new();
    for e in events.iter().filter(|e| e["type"] == "approval_used") {
        *used
            .entry(e["approval_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        used.values().all(|n| *n == 1),
        "an approval was used twice: {used:?}"
    );
    assert!(
        refunds.len() <= used.len(),
        "{} refunds but only {} approvals used",
        refunds.len(),
        used.len()
    );
    assert!(refunds.len() >= 5, "only {} refunds", refunds.len());
    // Whatever was not submitted says why in the journal.
    for id in &approvals {
        if used.contains_key(id) {
            continue;
        }
        panic!("approval {id} was neither used nor refused");
    }
    let refused: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "refused")
        .filter_map(|e| e["reason"].as_str())
        .collect();
    let interrupted = events
        .iter()
        .filter(|e| e["type"] == "run_interrupted")
        .count();
    eprintln!(
        "chaos with writes (shared journal: {shared}): {} refunds for 10 approvals, {} approvals used, {interrupted} runs interrupted by the kills, refusals: {refused:?}",
        refunds.len(),
        used.len()
    );
    for data in [a, b] {
        verify_eventually(data, &creds).await;
    }
    drop(pg);
}
