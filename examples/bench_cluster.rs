//! The cluster mode's cost and gain, each against a baseline in the same invocation:
//!
//! 1. the same queued batch of read-only lookups through `clerk serve` on the embedded queue
//!    (one daemon), on PostgreSQL with one node, and on PostgreSQL with two nodes (separate
//!    data directories and Chromiums, one shared queue), alternating, two rounds;
//! 2. the queue alone: enqueue → claim → complete cycles per second, embedded (fsync'd log)
//!    against PostgreSQL (one transaction each), with 1 and 4 workers.
//!
//! PostgreSQL is a throwaway server started here (Debian's binaries, default settings,
//! fsync on). cargo run --release --example bench_cluster -- [ORDERS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clerk::browser::LaunchOptions;
use clerk::channel::Config;
use clerk::evidence::Store;
use clerk::queue::{
    Backoff, EmbeddedQueue, JobFilter, JobSpec, JobState, Outcome, PgQueue, Priority, QueueLimits,
    RunQueue,
};
use clerk::runner::Engine;
use clerk::sample::postgres::Postgres;
use clerk::sample::{SampleCenter, SampleOptions};
use clerk::serve::ServeOptions;

const LOOKUP: &str = r##"name: bench-lookup
version: "1"
description: order status, total and tracking number, with a full-page screenshot
channel: sample
mode: read_only
inputs:
  order_id: { type: string, pattern: '^SO-\d{6}$' }
steps:
  - goto: /orders/{{order_id}}
  - wait_for: { selector: "#order-status" }
  - extract: { field: status, selector: "#order-status" }
  - extract: { field: total, selector: "#order-total" }
  - extract: { field: tracking_no, selector: "#tracking-no", required: false }
  - screenshot: { name: order-page }
"##;

const PAGES: usize = 2;

/// A node's data directory: the sample channel (4 pages at once for the installation),
/// `[serve] pages = 2`, a session, and (cluster) the database and the node's name.
fn node_dir(
    center: &SampleCenter,
    cluster: Option<(&str, &str)>,
) -> anyhow::Result<(tempfile::TempDir, Config)> {
    let dir = tempfile::tempdir()?;
    let mut text = clerk::sample::demo_config(center.port(), "ops").replacen(
        "approval_ttl_hours = 24",
        "approval_ttl_hours = 24\nmax_pages = 4",
        1,
    ) + &format!("\n[serve]\npages = {PAGES}\n");
    if let Some((url, node)) = cluster {
        text.push_str(&format!(
            "\n[cluster]\ndatabase = \"{url}\"\nnode = \"{node}\"\n"
        ));
    }
    let path = dir.path().join("clerk.toml");
    std::fs::write(&path, text)?;
    let config = Config::load(&path)?;
    center
        .storage_state("ops", Duration::from_secs(3600))
        .save(&config.channel("sample")?.session_path(dir.path()))?;
    Ok((dir, config))
}

fn orders(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("SO-{:06}", 100001 + (i % 40)))
        .collect()
}

/// `nodes` daemons (0 = one daemon on the embedded queue) drain `n` queued lookups.
/// Returns seconds from the first enqueue to the last job done.
async fn served(
    center: &SampleCenter,
    pg: &Postgres,
    nodes: usize,
    n: usize,
) -> anyhow::Result<f64> {
    let url = if nodes == 0 {
        None
    } else {
        let url = pg.fresh_database("bench")?;
        let u = url.clone();
        tokio::task::spawn_blocking(move || clerk::db::migrate(&u)).await??;
        Some(url)
    };
    let mut dirs = Vec::new();
    let mut running = Vec::new();
    for i in 0..nodes.max(1) {
        let name = format!("n{i}");
        let (dir, config) = node_dir(center, url.as_deref().map(|u| (u, name.as_str())))?;
        let store = Store::open(dir.path())?;
        let engine = Engine::new(
            dir.path().to_owned(),
            config,
            store,
            LaunchOptions::detect()?,
        );
        let mut opts = ServeOptions::from_config(&engine.config, Some(0));
        opts.run_scheduler = false;
        running.push(clerk::serve::start(engine, opts).await?);
        dirs.push(dir);
    }
    // The playbook text in every node's store; jobs pinned to it by hash.
    let mut sha = String::new();
    for r in &running {
        sha = r.daemon.engine.store.put_playbook_text(LOOKUP.as_bytes())?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let q = running[0].daemon.queue.clone();
    let t = Instant::now();
    let specs: Vec<JobSpec> = orders(n)
        .into_iter()
        .map(|o| {
            let mut spec = JobSpec::new("bench-lookup", "sample", "ops");
            spec.playbook_sha256 = Some(sha.clone());
            spec.priority = Priority::Bulk;
            spec.inputs.insert("order_id".into(), o);
            spec
        })
        .collect();
    {
        let q = q.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for s in specs {
                q.enqueue(s)?;
            }
            Ok(())
        })
        .await??;
    }
    for r in &running {
        r.daemon.wake();
    }
    loop {
        let qq = q.clone();
        let jobs = tokio::task::spawn_blocking(move || qq.list(&JobFilter::default())).await??;
        if jobs
            .iter()
            .all(|j| matches!(j.state, JobState::Done | JobState::Dead))
        {
            let bad = jobs
                .iter()
                .filter(|j| j.outcome.as_ref().map(|o| o.status.as_str()) != Some("ok"))
                .count();
            anyhow::ensure!(bad == 0, "{bad} jobs did not end ok");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    for r in &running {
        r.shutdown();
    }
    for r in running {
        r.wait().await?;
    }
    drop(dirs);
    Ok(secs)
}

fn roomy() -> QueueLimits {
    let mut l = QueueLimits {
        global: 64,
        ..Default::default()
    };
    l.channel_default.concurrent = 64;
    l
}

/// Enqueue → claim → complete cycles per second with `workers` threads.
fn queue_cycles(q: Arc<dyn RunQueue>, workers: usize, per_worker: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let q = q.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                for i in 0..per_worker {
                    let mut s = JobSpec::new("p", &format!("ch{}", i % 4), "ops");
                    s.priority = Priority::Bulk;
                    q.enqueue(s)?;
                    let Some(c) = q.claim(&format!("w{w}"), Duration::from_secs(60), Utc::now())?
                    else {
                        continue;
                    };
                    q.complete(
                        &c,
                        Outcome {
                            run_id: None,
                            status: "ok".into(),
                        },
                    )?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    Ok((workers * per_worker) as f64 / t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let pg = tokio::task::spawn_blocking(Postgres::start).await??;
    let center = SampleCenter::start(SampleOptions {
        port: 0,
        secret: None,
    })
    .await?;
    center.set_chat_offline(true);
    println!(
        "queued batch: {n} read-only lookups (order page, 3 fields, full-page PNG), {PAGES} \
         pages per node"
    );
    println!(
        "{:>6} {:>22} {:>14} {:>18}",
        "round", "setup", "orders/min", "vs embedded"
    );
    // Warm-up, not counted.
    served(&center, &pg, 0, 5).await?;
    for round in 1..=2 {
        let base = served(&center, &pg, 0, n).await?;
        let per_min = |secs: f64| n as f64 * 60.0 / secs;
        println!(
            "{round:>6} {:>22} {:>14.1} {:>18}",
            "embedded, 1 daemon",
            per_min(base),
            "1.00"
        );
        for nodes in [1, 2] {
            let s = served(&center, &pg, nodes, n).await?;
            println!(
                "{round:>6} {:>22} {:>14.1} {:>18.2}",
                format!("postgres, {nodes} node(s)"),
                per_min(s),
                per_min(s) / per_min(base)
            );
        }
    }

    println!("\nqueue alone: enqueue -> claim -> complete cycles per second");
    println!(
        "{:>8} {:>12} {:>12} {:>8}",
        "workers", "embedded", "postgres", "ratio"
    );
    for workers in [1, 4] {
        let per = 400 / workers;
        let dir = tempfile::tempdir()?;
        let emb: Arc<dyn RunQueue> = Arc::new(EmbeddedQueue::open(
            dir.path(),
            roomy(),
            Backoff::default(),
        )?);
        let e = tokio::task::spawn_blocking(move || queue_cycles(emb, workers, per)).await??;
        let url = pg.fresh_database("cycles")?;
        let p = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
            clerk::db::migrate(&url)?;
            // One queue per worker: each node has one connection.
            let q: Arc<dyn RunQueue> =
                Arc::new(PgQueue::open(&url, "n", roomy(), Backoff::default())?);
            if workers == 1 {
                return queue_cycles(q, 1, per);
            }
            let t = Instant::now();
            let threads: Vec<_> = (0..workers)
                .map(|w| {
                    let url = url.clone();
                    std::thread::spawn(move || -> anyhow::Result<()> {
                        let q: Arc<dyn RunQueue> = Arc::new(PgQueue::open(
                            &url,
                            &format!("n{w}"),
                            roomy(),
                            Backoff::default(),
                        )?);
                        queue_cycles(q, 1, per)?;
                        Ok(())
                    })
                })
                .collect();
            for t in threads {
                t.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
            }
            Ok((workers * per) as f64 / t.elapsed().as_secs_f64())
        })
        .await??;
        println!("{workers:>8} {e:>12.0} {p:>12.0} {:>8.2}", p / e);
    }
    println!(
        "ratios: PostgreSQL / embedded (>1: PostgreSQL is faster). PostgreSQL workers use one \
         connection each (one per node in production)."
    );
    Ok(())
}
