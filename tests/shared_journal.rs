//! The journal in PostgreSQL (`[cluster] journal = "database"`): one hash chain appended by
//! several nodes at once, each node's `journal.jsonl` a verified copy of it, `clerk verify`
//! comparing the two, an approval used once across nodes, and a lost claim refused in the
//! appending transaction. Real PostgreSQL (a throwaway cluster started here), real stores.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::evidence::{Event, Store, StoreError};

use crate::cluster::{clerk, cluster_config, migrated_database, node_dir};
use crate::common::World;

/// The demo config with `[cluster] database = url` and `journal = "database"`.
async fn shared_world(url: &str) -> World {
    let config = cluster_config(url, 2);
    World::with_config(move |c| format!("{}journal = \"database\"\n", config(c))).await
}

fn shared_store(dir: &Path, url: &str, node: &str) -> Store {
    let journal = clerk::db::journal::PgJournal::open(url, node).expect("the journal opens");
    Store::open_with(dir, Some(Arc::new(journal))).expect("the store opens")
}

fn marker(i: u64) -> Event {
    Event::QueueChanged {
        action: format!("test-{i}"),
        jobs: vec![i],
        channel: None,
        user: "tester".into(),
        at: clerk::evidence::timestamp(chrono::Utc::now()),
    }
}

fn used(approval: &str, run: &str) -> Event {
    Event::ApprovalUsed {
        approval_id: approval.into(),
        run_id: run.into(),
        used_at: clerk::evidence::timestamp(chrono::Utc::now()),
    }
}

fn sql(url: &str, statement: &str) -> Result<u64, String> {
    let (url, statement) = (url.to_owned(), statement.to_owned());
    clerk::db::off_runtime(move || {
        let mut c = clerk::db::connect(&url).map_err(|e| e.to_string())?;
        c.batch_execute(&statement)
            .map(|()| 0)
            .map_err(|e| clerk::db::describe(&e))
    })
}

fn count(url: &str, query: &str) -> i64 {
    let (url, query) = (url.to_owned(), query.to_owned());
    clerk::db::off_runtime(move || {
        let mut c = clerk::db::connect(&url).unwrap();
        c.query_one(&query, &[]).unwrap().get(0)
    })
}

/// Four writers on two nodes (two stores per node, as a daemon and a CLI command would
/// have) append 150 records each at once: the shared journal holds one gapless, linear
/// chain of 600 records; both nodes' copies are byte-identical to it and `clerk verify`
/// passes on both. Then each side is altered in turn and `clerk verify` names the seq:
/// a line edited in the database (the append-only trigger refuses the plain UPDATE, so the
/// test disables it as a superuser could), and a node's copy rewritten with a chain
/// recomputed so the copy verifies on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_nodes_append_one_chain_and_verify_finds_either_side_altered() {
    let (pg, url) = migrated_database().await;
    let world = shared_world(&url).await;
    let (a, b) = (node_dir(&world), node_dir(&world));
    let (a_path, b_path) = (a.path().to_owned(), b.path().to_owned());
    let u = url.clone();
    let (secs, stores) = tokio::task::spawn_blocking(move || {
        let stores = [
            shared_store(&a_path, &u, "a"),
            shared_store(&a_path, &u, "a"),
            shared_store(&b_path, &u, "b"),
            shared_store(&b_path, &u, "b"),
        ];
        let t = Instant::now();
        std::thread::scope(|s| {
            for (w, store) in stores.iter().enumerate() {
                s.spawn(move || {
                    for i in 0..150u64 {
                        store.append(marker(w as u64 * 1000 + i)).expect("append");
                    }
                });
            }
        });
        (t.elapsed().as_secs_f64(), stores)
    })
    .await
    .unwrap();
    eprintln!(
        "shared journal: 600 appends from 4 writers on 2 nodes in {secs:.2} s ({:.0} appends/s)",
        600.0 / secs
    );
    assert_eq!(count(&url, "SELECT count(*) FROM clerk_journal"), 600);
    assert_eq!(count(&url, "SELECT max(seq) FROM clerk_journal"), 600);
    // Every writer's records are there, once each.
    for w in 0..4 {
        let n = count(
            &url,
            &format!(
                "SELECT count(*) FROM clerk_journal WHERE line LIKE '%\"action\":\"test-{}%'",
                w * 1000
            ),
        );
        assert_eq!(n, 1, "writer {w}'s first record is there once");
    }
    let heads = tokio::task::spawn_blocking(move || {
        let heads: Vec<_> = stores.iter().map(|s| s.head().unwrap()).collect();
        drop(stores);
        heads
    })
    .await
    .unwrap();
    assert!(heads.iter().all(|h| h.as_ref().map(|h| h.seq) == Some(600)));
    let copy_a = std::fs::read(a.path().join("journal.jsonl")).unwrap();
    let copy_b = std::fs::read(b.path().join("journal.jsonl")).unwrap();
    assert_eq!(copy_a, copy_b, "both nodes hold the same chain");
    for (i, line) in String::from_utf8(copy_a.clone())
        .unwrap()
        .lines()
        .enumerate()
    {
        let r = clerk::evidence::record::parse_line(line.as_bytes()).unwrap();
        assert!(r.intact());
        assert_eq!(r.record.seq, i as u64 + 1);
    }
    for dir in [a.path(), b.path()] {
        let out = clerk(dir, &[], &["verify"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("600 records; this node's copy agrees line by line"),
            "{text}"
        );
    }
    let out = clerk(a.path(), &[], &["db", "status"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("shared journal: 600 records, head seq 600")
            && said.contains("node a: 300 records appended")
            && said.contains("node b: 300 records appended"),
        "{said}"
    );
    // A copy cannot be opened as a node journal (its appends would fork the chain).
    let err = Store::open(a.path()).err().expect("refused").to_string();
    assert!(err.contains("copy of the shared journal"), "{err}");

    // The database side: the trigger refuses edits, even a superuser's plain UPDATE.
    let refused = sql(
        &url,
        "UPDATE clerk_journal SET line = replace(line, 'test-100\"', 'test-999\"') WHERE seq = 101",
    )
    .expect_err("the journal table is append-only");
    assert!(refused.contains("append-only"), "{refused}");
    let refused = sql(&url, "DELETE FROM clerk_journal WHERE seq = 600").unwrap_err();
    assert!(refused.contains("append-only"), "{refused}");
    sql(
        &url,
        "ALTER TABLE clerk_journal DISABLE TRIGGER clerk_journal_no_update; \
         UPDATE clerk_journal SET line = replace(line, '\"user\":\"tester\"', '\"user\":\"mallory\"') WHERE seq = 101; \
         ALTER TABLE clerk_journal ENABLE TRIGGER clerk_journal_no_update;",
    )
    .unwrap();
    let out = clerk(a.path(), &[], &["verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("DIFFERS at seq 101"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&clerk(a.path(), &[], &["verify", "--json"]).stdout).unwrap();
    assert_eq!(json["shared_journal"]["first_difference"]["seq"], 101);
    // Put it back (a restore from backup), and both verify again.
    let original = String::from_utf8(copy_b.clone())
        .unwrap()
        .lines()
        .nth(100)
        .unwrap()
        .replace('\'', "''");
    sql(
        &url,
        &format!(
            "ALTER TABLE clerk_journal DISABLE TRIGGER clerk_journal_no_update; \
             UPDATE clerk_journal SET line = '{original}' WHERE seq = 101; \
             ALTER TABLE clerk_journal ENABLE TRIGGER clerk_journal_no_update;"
        ),
    )
    .unwrap();
    assert!(clerk(a.path(), &[], &["verify"]).status.success());

    // The node side: node b's host admin rewrites record 300 of its copy and recomputes
    // every hash after it, so the copy verifies as a chain on its own.
    let text = String::from_utf8(copy_b).unwrap();
    let mut records: Vec<clerk::evidence::Record> = text
        .lines()
        .map(|l| {
            clerk::evidence::record::parse_line(l.as_bytes())
                .unwrap()
                .record
        })
        .collect();
    if let Event::QueueChanged { user, .. } = &mut records[299].event {
        *user = "mallory".into();
    }
    let mut prev = records[298].hash.clone();
    let mut rewritten: Vec<String> = text.lines().take(299).map(str::to_owned).collect();
    for r in &records[299..] {
        let (sealed, line) =
            clerk::evidence::record::seal(r.seq, r.ts.clone(), prev, r.event.clone()).unwrap();
        prev = sealed.hash;
        rewritten.push(line);
    }
    std::fs::write(b.path().join("journal.jsonl"), rewritten.join("\n") + "\n").unwrap();
    std::fs::remove_dir_all(b.path().join("index")).unwrap();
    let out = clerk(b.path(), &[], &["verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("DIFFERS at seq 300"), "{text}");
    // And the altered copy is not used: the node refuses to open it.
    let u = url.clone();
    let b_path = b.path().to_owned();
    let err = tokio::task::spawn_blocking(move || {
        let journal = clerk::db::journal::PgJournal::open(&u, "b").unwrap();
        Store::open_with(&b_path, Some(Arc::new(journal)))
            .err()
            .map(|e| e.to_string())
    })
    .await
    .unwrap()
    .expect("the diverged copy is refused");
    assert!(
        err.contains("does not agree with the shared journal"),
        "{err}"
    );
    drop(pg);
}

/// Eight threads on two nodes race to use one approval: exactly one use is recorded, the
/// other seven are refused naming the run that used it — in the shared journal (the rule is
/// checked in the appending transaction) and in a node journal (under its lock). And a use
/// fenced by a queue claim is refused in the appending transaction once that claim is stale
/// or its lease has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_is_used_once_and_a_lost_claim_cannot_use_it() {
    let (pg, url) = migrated_database().await;
    let world = shared_world(&url).await;
    let (a, b) = (node_dir(&world), node_dir(&world));
    let local = tempfile::tempdir().unwrap();
    let (a_path, b_path, local_path) = (
        a.path().to_owned(),
        b.path().to_owned(),
        local.path().to_owned(),
    );
    let u = url.clone();
    tokio::task::spawn_blocking(move || {
        let race = |stores: Vec<Store>, approval: &str| -> (usize, Vec<String>) {
            let results: Vec<Result<_, StoreError>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|i| {
                        let store = stores[i % stores.len()].clone();
                        let approval = approval.to_owned();
                        s.spawn(move || store.append(used(&approval, &format!("run-{i}"))))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let ok = results.iter().filter(|r| r.is_ok()).count();
            let refused = results
                .into_iter()
                .filter_map(|r| match r {
                    Err(StoreError::Refused(why)) => Some(why),
                    Err(e) => panic!("not a refusal: {e}"),
                    Ok(_) => None,
                })
                .collect();
            (ok, refused)
        };
        let shared = vec![
            shared_store(&a_path, &u, "a"),
            shared_store(&b_path, &u, "b"),
        ];
        let (ok, refused) = race(shared.clone(), "ap-shared");
        assert_eq!(ok, 1, "{refused:?}");
        assert_eq!(refused.len(), 7);
        assert!(
            refused
                .iter()
                .all(|r| r.contains("used already (by run run-")),
            "{refused:?}"
        );
        let embedded = vec![
            Store::open(&local_path).unwrap(),
            Store::open(&local_path).unwrap(),
        ];
        let (ok, refused) = race(embedded.clone(), "ap-local");
        assert_eq!(ok, 1, "{refused:?}");
        assert_eq!(refused.len(), 7);
        let uses = embedded[0]
            .approval_records("ap-local")
            .unwrap()
            .into_iter()
            .filter(|r| matches!(r.event, Event::ApprovalUsed { .. }))
            .count();
        assert_eq!(uses, 1, "one use in the node journal");

        // Fencing in the appending transaction.
        use clerk::queue::RunQueue;
        let q = clerk::queue::PgQueue::open(
            &u,
            "a",
            clerk::queue::QueueLimits::default(),
            clerk::queue::Backoff::default(),
        )
        .unwrap();
        let job = q
            .enqueue(clerk::queue::JobSpec::new("refund-draft", "sample", "ops"))
            .unwrap();
        let first = q
            .claim("a/w0", Duration::from_millis(500), chrono::Utc::now())
            .unwrap()
            .expect("claimed");
        assert_eq!(first.job, job);
        std::thread::sleep(Duration::from_millis(700));
        let second = q
            .claim("a/w1", Duration::from_secs(60), chrono::Utc::now())
            .unwrap()
            .expect("claimed again after the lease ended");
        assert_ne!(first.token, second.token);
        let fence = |token: &str, now: chrono::DateTime<chrono::Utc>| {
            Some(clerk::evidence::shared::JobFence {
                job: job.0,
                token: token.to_owned(),
                now,
            })
        };
        let stale = shared[1]
            .append_fenced(
                used("ap-fenced", "run-stale"),
                fence(&first.token, chrono::Utc::now()),
            )
            .expect_err("a stale claim is refused");
        assert!(stale.to_string().contains("claimed again since"), "{stale}");
        let late = shared[1]
            .append_fenced(
                used("ap-fenced", "run-late"),
                fence(
                    &second.token,
                    chrono::Utc::now() + chrono::Duration::seconds(120),
                ),
            )
            .expect_err("a use after the lease ended is refused");
        assert!(late.to_string().contains("ended at"), "{late}");
        shared[0]
            .append_fenced(
                used("ap-fenced", "run-current"),
                fence(&second.token, chrono::Utc::now()),
            )
            .expect("the current claim uses it");
        drop(shared);
    })
    .await
    .unwrap();
    assert_eq!(count(&url, "SELECT count(*) FROM clerk_approval_uses"), 2);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM clerk_journal WHERE line LIKE '%\"type\":\"approval_used\"%'"
        ),
        2,
        "one use of ap-shared and one of ap-fenced"
    );
    drop(pg);
}

/// Two `clerk serve` nodes on one shared journal and one bucket (node b started from `/`),
/// eight server-rendered and two single-page-app lookups, node a SIGKILLed mid-batch and
/// restarted: every run is in the one chain, either node lists every run whichever node
/// ran it, the run node a was in when it died is marked interrupted (by node a, which alone
/// can tell its process is gone), both nodes verify (node b fetching node a's screenshots
/// from the bucket), and node b exports a run node a ran into a bundle `sha256sum -c`
/// accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_serving_nodes_share_one_journal_and_either_exports_any_run() {
    use crate::cluster::{api, journal_events, LOOKUP};
    use crate::common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
    use crate::common::Daemon;
    use serde_json::{json, Value};

    let s3 = S3Server::start("evidence").await;
    let (pg, url) = migrated_database().await;
    let endpoint = s3.endpoint();
    let config = cluster_config(&url, 1);
    let world = World::with_config(move |c| {
        format!(
            "{}journal = \"database\"\nevidence = \"s3://evidence/shop\"\nevidence_endpoint = \"{endpoint}\"\n",
            config(c)
        )
    })
    .await;
    let (a_dir, b_dir) = (node_dir(&world), node_dir(&world));
    let (a, b) = (a_dir.path(), b_dir.path());
    let creds = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    let env = |node: &'static str| {
        let mut e = vec![("CLERK_NODE", node)];
        e.extend(creds);
        e
    };
    let mut node_a = Daemon::spawn_in(a, None, &env("a"));
    let (port_a, token_a) = node_a.ready(a).await;
    let rows: Vec<Value> = (0..8)
        .map(|i| json!({ "order_id": format!("SO-{:06}", 100001 + i) }))
        .collect();
    let queued = api(
        port_a,
        &token_a,
        "POST",
        "/api/runs",
        Some(json!({ "playbook_yaml": LOOKUP, "rows": rows, "user": "ops" })),
    )
    .await;
    // And two lookups in the single-page admin console (hash routes, a JSON API, a
    // WebSocket feed the guard closes).
    let spa = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/spa-order-lookup.yaml"),
    )
    .unwrap();
    let queued_spa = api(
        port_a,
        &token_a,
        "POST",
        "/api/runs",
        Some(json!({
            "playbook_yaml": spa,
            "rows": [{ "order_id": "SO-100011" }, { "order_id": "SO-100012" }],
            "user": "ops"
        })),
    )
    .await;
    let ids: Vec<u64> = queued["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(queued_spa["jobs"].as_array().unwrap())
        .map(|j| j.as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 10, "{queued_spa}");
    let done = |port: u16, token: String| {
        let ids = ids.clone();
        async move {
            let mut runs = Vec::new();
            for id in &ids {
                let j = api(port, &token, "GET", &format!("/api/jobs/{id}"), None).await;
                if j["state"] == "done" {
                    runs.push(j["outcome"]["run_id"].as_str().unwrap().to_owned());
                }
            }
            runs
        }
    };
    let t = Instant::now();
    while done(port_a, token_a.clone()).await.len() < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "node a made no progress"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ran_by_a = done(port_a, token_a.clone()).await;
    node_a.signal(libc::SIGKILL);
    let _ = node_a.child.wait();
    // Node b is started from `/`, as a service manager starts it.
    let node_b = Daemon::spawn_in(b, Some(Path::new("/")), &env("b"));
    let (port_b, token_b) = node_b.ready(b).await;
    node_a = Daemon::spawn_in(a, None, &env("a"));
    node_a.ready(a).await;
    let t = Instant::now();
    let runs = loop {
        let runs = done(port_b, token_b.clone()).await;
        if runs.len() == ids.len() {
            break runs;
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "the jobs did not all complete"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    node_a.signal(libc::SIGTERM);
    node_b.signal(libc::SIGTERM);
    let _ = (node_a.wait(), node_b.wait());

    // Either node lists every run, whichever node ran it.
    for dir in [a, b] {
        let out = clerk(dir, &creds, &["runs", "list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        for run in &runs {
            let r = listed
                .iter()
                .find(|r| r["run_id"] == run.as_str())
                .unwrap_or_else(|| panic!("{} does not list run {run}", dir.display()));
            assert_eq!(r["status"], "ok", "{r}");
        }
    }
    // One chain: both copies are the same bytes, and every run that started has ended
    // (the one node a was in when killed is interrupted, by node a on its restart).
    assert_eq!(
        std::fs::read(a.join("journal.jsonl")).unwrap(),
        std::fs::read(b.join("journal.jsonl")).unwrap()
    );
    let events = journal_events(b);
    let started: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e["type"] == "run_started")
        .map(|e| e["run_id"].as_str().unwrap())
        .collect();
    let ended: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e["type"] == "run_finished" || e["type"] == "run_interrupted")
        .map(|e| e["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(started, ended, "every run in the chain has ended");
    // Both verify; node b reads node a's screenshots from the bucket (node a copied what it
    // left behind when it restarted, so allow it a moment).
    for dir in [a, b] {
        let said = crate::cluster::verify_eventually(dir, &creds).await;
        assert!(
            said.contains("this node's copy agrees line by line"),
            "{said}"
        );
        assert!(said.contains("rows, each what its record says"), "{said}");
    }
    // Node b exports a run node a ran; the bundle checks with sha256sum alone.
    let run = &ran_by_a[0];
    let bundle = tempfile::tempdir().unwrap().keep().join("bundle");
    let out = clerk(
        b,
        &creds,
        &["export", "--run", run, "--out", bundle.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stdout)
    );
    assert!(String::from_utf8_lossy(&sums.stdout).contains(".png: OK"));
    let _ = std::fs::remove_dir_all(bundle.parent().unwrap());
    drop(pg);
}

/// Two nodes' schedulers on one shared journal and one queue tick at the same instants
/// (threads released together, every simulated five minutes for ten hours of an hourly
/// schedule): each slot fires once, with one job per input row, not once per node. The
/// scheduler takes the installation's turn (an advisory lock) and reads the schedules after
/// taking it, so the node that comes second sees the slot fired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_slot_fires_once_across_nodes_on_a_shared_journal() {
    use chrono::{DateTime, TimeDelta, Utc};
    use clerk::queue::{Backoff, JobFilter, PgQueue, QueueLimits, RunQueue};
    use clerk::schedule::{self, AddRequest, InputsSpec, TriggerSpec};
    use clerk::serve::scheduler::{Rows, Ticker};

    let (pg, url) = migrated_database().await;
    let world = shared_world(&url).await;
    let (a, b) = (node_dir(&world), node_dir(&world));
    let (a_path, b_path) = (a.path().to_owned(), b.path().to_owned());
    let u = url.clone();
    tokio::task::spawn_blocking(move || {
        let config = clerk::channel::Config::load(&a_path.join("clerk.toml")).unwrap();
        let nodes: Vec<(Store, PgQueue)> = [(&a_path, "a"), (&b_path, "b")]
            .into_iter()
            .map(|(dir, node)| {
                (
                    shared_store(dir, &u, node),
                    PgQueue::open(&u, node, QueueLimits::default(), Backoff::default()).unwrap(),
                )
            })
            .collect();
        let day: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().unwrap();
        schedule::add(
            &nodes[0].0,
            &config,
            &a_path,
            &AddRequest {
                name: "hourly".into(),
                playbook: "order-lookup".into(),
                trigger: TriggerSpec::Cron {
                    expr: "0 * * * *".into(),
                    tz: None,
                },
                inputs: InputsSpec::Rows(vec![
                    [("order_id".to_owned(), "SO-100001".to_owned())].into(),
                    [("order_id".to_owned(), "SO-100002".to_owned())].into(),
                ]),
                case_from: Some("order_id".into()),
                jobs: 1,
                files_allowed: false,
            },
            "ops",
            day - TimeDelta::minutes(1),
        )
        .unwrap();
        let no_urls = |_: &str| -> Result<Rows, String> { Err("no URLs here".into()) };
        let barrier = std::sync::Barrier::new(2);
        for step in 0..(10 * 12) {
            let now = day + TimeDelta::minutes(5 * step);
            std::thread::scope(|s| {
                for (store, queue) in &nodes {
                    let (barrier, no_urls, config) = (&barrier, &no_urls, &config);
                    s.spawn(move || {
                        barrier.wait();
                        Ticker {
                            store,
                            queue,
                            config,
                            max_attempts: 3,
                            grace: Duration::from_secs(15 * 60),
                            fetch: no_urls,
                        }
                        .tick(now)
                        .unwrap()
                    });
                }
            });
            // The workers, simulated: every queued job ends.
            while let Some(c) = nodes[1]
                .1
                .claim("b/w", Duration::from_secs(60), now)
                .unwrap()
            {
                nodes[1]
                    .1
                    .complete(
                        &c,
                        clerk::queue::Outcome {
                            run_id: None,
                            status: "ok".into(),
                        },
                    )
                    .unwrap();
            }
        }
        let jobs = nodes[0].1.list(&JobFilter::default()).unwrap();
        let mut fired = std::collections::BTreeMap::<String, usize>::new();
        for r in nodes[1].0.schedule_records().unwrap() {
            if let Event::ScheduleFired { slot, .. } = r.event {
                *fired.entry(slot).or_default() += 1;
            }
        }
        assert_eq!(fired.len(), 10, "{fired:?}");
        assert!(
            fired.values().all(|n| *n == 1),
            "a slot fired twice: {fired:?}"
        );
        assert_eq!(jobs.len(), 20, "one job per row per slot");
        // The turn is an advisory lock on a queue connection: a scheduler whose connection
        // was replaced mid-tick has lost it without knowing, and another node may tick at
        // the same time. The queue still enqueues a slot's jobs once: eight racing firings
        // of one slot on both nodes all get the same two jobs.
        let slot = day + TimeDelta::hours(30);
        let specs = || {
            (1..=2)
                .map(|n| {
                    let mut spec = clerk::queue::JobSpec::new("order-lookup", "sample", "ops");
                    spec.inputs = [("order_id".to_owned(), format!("SO-10000{n}"))].into();
                    spec.schedule = Some("hourly".into());
                    spec.slot = Some(slot);
                    spec
                })
                .collect::<Vec<_>>()
        };
        let barrier = std::sync::Barrier::new(8);
        let got: Vec<Vec<clerk::queue::JobId>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (queue, barrier, specs) = (&nodes[i % 2].1, &barrier, &specs);
                    s.spawn(move || {
                        barrier.wait();
                        queue.enqueue_slot("hourly", slot, specs()).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(got[0].len(), 2);
        assert!(got.iter().all(|ids| *ids == got[0]), "{got:?}");
        let queued: Vec<_> = nodes[0]
            .1
            .list(&JobFilter::default())
            .unwrap()
            .into_iter()
            .filter(|j| j.spec.slot == Some(slot))
            .collect();
        assert_eq!(queued.len(), 2, "the slot's jobs were enqueued once");
        drop(nodes);
    })
    .await
    .unwrap();
    drop(pg);
}

/// The store's queries answer the same from a node journal and from a shared journal, and
/// a node that appended nothing answers from its copy exactly as the node that appended
/// everything. When the appending store goes away with a run open, its node's next store
/// marks that run interrupted, and the other node sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_answer_the_same_on_a_node_journal_and_on_another_nodes_copy() {
    use crate::evidence_store::{populate, snapshot_queries};
    let (pg, url) = migrated_database().await;
    let (f, a, b) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (f_path, a_path, b_path) = (
        f.path().to_owned(),
        a.path().to_owned(),
        b.path().to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        let normal = |store: &Store, text: String| {
            text.replace(&store.data_dir().display().to_string(), "DATA")
                .replace(&store.owner(), "OWNER")
        };
        let local = Store::open(&f_path).unwrap();
        populate(&local);
        let node_a = shared_store(&a_path, &url, "a");
        populate(&node_a);
        let node_b = shared_store(&b_path, &url, "b");
        let from_a = normal(&node_a, snapshot_queries(&node_a));
        let from_b = snapshot_queries(&node_b)
            .replace(&node_b.data_dir().display().to_string(), "DATA")
            .replace(&node_a.owner(), "OWNER");
        assert_eq!(
            from_b, from_a,
            "node b answers from the shared journal as node a does"
        );
        // The queries read PostgreSQL directly: a run node a starts now is listed by node b
        // at once, while node b's copy (caught up on its own appends and at verify) has not
        // been touched by the queries.
        let copy_len = || {
            std::fs::metadata(b_path.join("journal.jsonl"))
                .unwrap()
                .len()
        };
        let before = copy_len();
        node_a
            .append(crate::evidence_store::run_started(
                &node_a,
                "r-late",
                "shop-late",
                Some("CASE-LATE"),
                None,
            ))
            .unwrap();
        let late = clerk::evidence::RunFilter {
            channel: Some("shop-late".into()),
            ..Default::default()
        };
        let listed: Vec<String> = node_b
            .list_runs(&late)
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        assert_eq!(listed, vec!["r-late".to_owned()]);
        assert_eq!(copy_len(), before, "the query did not read node b's copy");
        node_a
            .append(crate::evidence_store::finished("r-late", "ok"))
            .unwrap();
        // `clerk verify` recomputes every index row from its record: a row edited so that
        // a run drops out of the listings is found at its seq.
        let journal = clerk::db::journal::PgJournal::open(&url, "checker").unwrap();
        let clean = clerk::evidence::compare_copy(&b_path, &journal).unwrap();
        assert_eq!(clean.index_difference, None);
        assert_eq!(
            i64::try_from(clean.index_rows).unwrap(),
            count(&url, "SELECT count(*) FROM clerk_journal")
        );
        let start_seq = node_b.run_records("r-late").unwrap()[0].seq;
        sql(
            &url,
            "UPDATE clerk_journal_keys SET starts_run = false, channel = NULL, case_ref = NULL, \
             started = NULL, owner = NULL WHERE run_id = 'r-late' AND starts_run",
        )
        .unwrap();
        assert!(
            node_b.list_runs(&late).unwrap().is_empty(),
            "the run is hidden"
        );
        let hidden = clerk::evidence::compare_copy(&b_path, &journal).unwrap();
        let d = hidden
            .index_difference
            .clone()
            .expect("verify finds the edited row");
        assert_eq!(d.seq, start_seq, "{d:?}");
        assert!(!hidden.ok());
        drop(journal);
        // The index table is a cache of clerk_journal: rows lost (records appended before
        // migration V4, or a table emptied by hand) are indexed again by the next node that
        // opens the journal, and `clerk reindex` rebuilds it; the answers do not change.
        let records = count(&url, "SELECT count(*) FROM clerk_journal");
        sql(&url, "DELETE FROM clerk_journal_keys WHERE seq > 3").unwrap();
        assert_eq!(count(&url, "SELECT count(*) FROM clerk_journal_keys"), 3);
        let b3 = shared_store(&b_path, &url, "b");
        assert_eq!(
            count(&url, "SELECT count(*) FROM clerk_journal_keys"),
            records
        );
        let report = b3.reindex().unwrap();
        let (_, reindexed) = report
            .shared
            .clone()
            .expect("a shared journal was reindexed");
        assert_eq!(i64::try_from(reindexed).unwrap(), records);
        assert!(
            report.to_string().contains("shared journal's index"),
            "{report}"
        );
        drop(b3);
        assert_eq!(
            node_b.list_runs(&late).unwrap().len(),
            1,
            "answers from the rebuilt index"
        );
        // Between the two journals only the chain fields differ (each record's time, and so
        // its hash and the next one's `prev`, and a run's start taken from its record).
        fn without_chain_fields(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    for k in ["ts", "hash", "prev", "record_hash", "started_at"] {
                        m.remove(k);
                    }
                    m.values_mut().for_each(without_chain_fields);
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(without_chain_fields),
                _ => {}
            }
        }
        let comparable = |text: String| {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            without_chain_fields(&mut v);
            v
        };
        assert_eq!(
            comparable(normal(&local, snapshot_queries(&local))),
            comparable(from_a.clone()),
            "the shared journal answers as a node journal"
        );
        // Node a's store ends with r-c open. A store on node b cannot tell that node a's
        // process is gone, and leaves the run alone; node a's next store interrupts it.
        drop(node_a);
        assert!(a_path.join("locks").read_dir().unwrap().count() > 0);
        let b2 = shared_store(&b_path, &url, "b");
        assert_eq!(b2.run("r-c").unwrap().unwrap().summary.status, "running");
        drop(b2);
        let again = shared_store(&a_path, &url, "a");
        assert_eq!(
            again.run("r-c").unwrap().unwrap().summary.status,
            "interrupted"
        );
        assert_eq!(
            node_b.run("r-c").unwrap().unwrap().summary.status,
            "interrupted",
            "node b sees it"
        );
        let a_runs = node_b
            .records()
            .unwrap()
            .into_iter()
            .filter(|r| matches!(r.event, Event::RunInterrupted { .. }))
            .count();
        assert_eq!(a_runs, 1);
        drop((again, node_b, local));
    })
    .await
    .unwrap();
    drop(pg);
}

/// Once a run is interrupted in the shared journal, records of its own progress are refused
/// whichever node appends them (a process taken for gone that comes back cannot continue
/// behind the interruption), and so is a second interruption (two nodes sweeping at once);
/// records about the run from outside it (a refusal, a retried job) are still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_takes_no_more_records_of_its_own() {
    use crate::evidence_store::{finished, run_started, step};
    let (pg, url) = migrated_database().await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a_path, b_path) = (a.path().to_owned(), b.path().to_owned());
    tokio::task::spawn_blocking(move || {
        let node_a = shared_store(&a_path, &url, "a");
        let node_b = shared_store(&b_path, &url, "b");
        node_a
            .append(run_started(&node_a, "r-1", "shop-a", None, None))
            .unwrap();
        node_a.append(step("r-1", 1, "ok", &[])).unwrap();
        let interrupt = |by: &str| Event::RunInterrupted {
            run_id: "r-1".into(),
            reason: format!("node a went silent; marked by node {by}"),
        };
        node_b.append(interrupt("b")).unwrap();
        for (store, event) in [
            (&node_a, step("r-1", 2, "ok", &[])),
            (&node_a, finished("r-1", "ok")),
            (&node_b, interrupt("b again")),
        ] {
            match store.append(event) {
                Err(StoreError::Refused(why)) => {
                    assert!(why.contains("run r-1 was marked interrupted"), "{why}")
                }
                other => panic!("not refused: {other:?}"),
            }
        }
        node_a
            .append(Event::JobRetried {
                job: 7,
                run_id: Some("r-1".into()),
                channel: "shop-a".into(),
                playbook: "lookup".into(),
                attempt: 1,
                reason: "its node went silent".into(),
                not_before: None,
                at: clerk::evidence::timestamp(chrono::Utc::now()),
            })
            .expect("a record about the run from outside it is accepted");
        let records = node_b.run_records("r-1").unwrap();
        let kinds: Vec<&str> = records.iter().map(|r| r.event.type_name()).collect();
        assert_eq!(
            kinds,
            [
                "run_started",
                "step_finished",
                "run_interrupted",
                "job_retried"
            ]
        );
        assert_eq!(
            node_b.run("r-1").unwrap().unwrap().summary.status,
            "interrupted"
        );
    })
    .await
    .unwrap();
    drop(pg);
}

/// Every record of the shared journal, as JSON.
fn shared_events(url: &str) -> Vec<serde_json::Value> {
    let url = url.to_owned();
    clerk::db::off_runtime(move || {
        let mut c = clerk::db::connect(&url).unwrap();
        c.query("SELECT line FROM clerk_journal ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(r.get::<_, &str>(0)).unwrap();
                v["event"].clone()
            })
            .collect()
    })
}

/// A node that goes silent mid-run (SIGSTOP: its daemon neither beats nor appends) is taken
/// for gone once it has been silent for twice the lease: the other node marks its run
/// interrupted, naming it, and runs the job again. When the stopped node continues
/// (SIGCONT), nothing of its run follows the interruption (it finds its lease lost and
/// stops; were it to go on, the shared journal refuses the run's own records, see
/// `an_interrupted_run_takes_no_more_records_of_its_own`), and the job is done once, by
/// the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_nodes_run_is_interrupted_by_another_node_and_cannot_continue() {
    use crate::cluster::{api, in_flight, LOOKUP};
    use crate::common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
    use crate::common::Daemon;

    let s3 = S3Server::start("evidence").await;
    let endpoint = s3.endpoint();
    let (pg, url) = migrated_database().await;
    let config = cluster_config(&url, 1);
    let world = World::with_config(move |c| {
        format!(
            "{}journal = \"database\"\nevidence = \"s3://evidence/shop\"\nevidence_endpoint = \"{endpoint}\"\n",
            config(c).replace("lease = \"5s\"", "lease = \"2s\"")
        )
    })
    .await;
    let creds = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    let (a_dir, b_dir) = (node_dir(&world), node_dir(&world));
    let (a, b) = (a_dir.path(), b_dir.path());
    let gated = crate::cluster::held_at_gate(LOOKUP, "hold");
    let node_a = Daemon::spawn_in(a, None, &[("CLERK_NODE", "a"), creds[0], creds[1]]);
    let (port_a, token_a) = node_a.ready(a).await;
    let job = crate::cluster::queue_one(port_a, &token_a, &gated, "SO-100007").await;
    // Node a's run is holding at the gate.
    let t = Instant::now();
    let run = loop {
        let started = shared_events(&url)
            .into_iter()
            .find(|e| e["type"] == "run_started")
            .and_then(|e| e["run_id"].as_str().map(str::to_owned));
        if let Some(run) = started {
            break run;
        }
        if t.elapsed() > Duration::from_secs(60) {
            let j = api(port_a, &token_a, "GET", &format!("/api/jobs/{job}"), None).await;
            panic!("node a never started the run: {j}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    node_a.signal(libc::SIGSTOP);
    let node_b = Daemon::spawn_in(b, None, &[("CLERK_NODE", "b"), creds[0], creds[1]]);
    let (port_b, token_b) = node_b.ready(b).await;
    let t = Instant::now();
    let interrupted = loop {
        let found = shared_events(&url)
            .into_iter()
            .find(|e| e["type"] == "run_interrupted" && e["run_id"] == run.as_str());
        if let Some(e) = found {
            break e;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "node b never marked node a's run interrupted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = interrupted["reason"].as_str().unwrap();
    assert!(
        reason.contains("node a has not been heard from since") && reason.contains("node b"),
        "{reason}"
    );
    // Node b runs the job again; node a continues and its run tries to go on.
    world.center.open_gate("hold");
    let t = Instant::now();
    let outcome = loop {
        let j = api(port_b, &token_b, "GET", &format!("/api/jobs/{job}"), None).await;
        if j["state"] == "done" {
            break j["outcome"].clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "node b did not finish the job: {j}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(outcome["run_id"], run.as_str(), "{outcome}");
    node_a.signal(libc::SIGCONT);
    let t = Instant::now();
    while in_flight(port_a, &token_a).await > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "node a's stale run never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node_a.signal(libc::SIGTERM);
    node_b.signal(libc::SIGTERM);
    let _ = (node_a.wait(), node_b.wait());

    let events = shared_events(&url);
    let of_run: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["run_id"] == run.as_str())
        .collect();
    let cut = of_run
        .iter()
        .position(|e| e["type"] == "run_interrupted")
        .unwrap();
    let after: Vec<&str> = of_run[cut + 1..]
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect();
    assert!(
        after.iter().all(|t| ![
            "step_finished",
            "evidence_captured",
            "run_finished",
            "run_interrupted"
        ]
        .contains(t)),
        "the stale run went on after its interruption: {after:?}"
    );
    let done_runs = events
        .iter()
        .filter(|e| e["type"] == "run_finished" && e["status"] == "ok")
        .count();
    assert_eq!(done_runs, 1, "the job ran to the end once");
    for dir in [a, b] {
        let said = crate::cluster::verify_eventually(dir, &creds).await;
        assert!(
            said.contains("this node's copy agrees line by line"),
            "{said}"
        );
    }
    drop(pg);
}
