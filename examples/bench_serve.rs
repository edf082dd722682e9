//! Queue throughput of the `clerk serve` daemon against the sample seller center, at 1, 2
//! and 4 pages, each against a baseline run in the same invocation: the same lookups as a
//! direct batch (`clerk run --inputs … --jobs N`, no queue, no daemon) at the same number of
//! pages. Also the daemon's memory (PSS of clerk's process plus every Chromium process):
//! idle before its first run, busy with N pages (peak), and idle with a warm pool.
//!
//! cargo run --release --example bench_serve -- [ORDERS]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::batch::{run_batch, BatchOptions};
use clerk::browser::LaunchOptions;
use clerk::channel::Config;
use clerk::evidence::Store;
use clerk::queue::{JobFilter, JobSpec, JobState, Priority};
use clerk::runner::Engine;
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

#[path = "support/pss.rs"]
mod pss;

/// PSS in KiB of this process plus every process running `chromium`.
fn pss_kib(chromium: &Path) -> f64 {
    let me = std::process::id();
    pss::pss_kib(|pid, exe| pid == me || exe == Some(chromium))
}

/// Peak PSS (MiB) while it runs, sampled every 100 ms.
struct Peak {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<f64>,
}

impl Peak {
    fn start(chromium: PathBuf) -> Peak {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0.0f64;
            while !flag.load(Ordering::SeqCst) {
                peak = peak.max(pss_kib(&chromium) / 1024.0);
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        Peak { stop, thread }
    }

    fn finish(self) -> f64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or(f64::NAN)
    }
}

/// A data directory with the sample channel (pages and interval as given) and a session.
fn data_dir(center: &SampleCenter, pages: usize) -> anyhow::Result<(tempfile::TempDir, Config)> {
    let dir = tempfile::tempdir()?;
    let config_text = clerk::sample::demo_config(center.port(), "ops").replacen(
        "approval_ttl_hours = 24",
        &format!("approval_ttl_hours = 24\nmax_pages = {pages}"),
        1,
    ) + &format!("\n[serve]\npages = {pages}\n");
    let path = dir.path().join("clerk.toml");
    std::fs::write(&path, config_text)?;
    let config = Config::load(&path)?;
    center
        .storage_state("ops", Duration::from_secs(3600))
        .save(&config.channel("sample")?.session_path(dir.path()))?;
    std::fs::write(dir.path().join("bench-lookup.yaml"), LOOKUP)?;
    // Queued jobs name a playbook (DATA/playbooks/NAME.yaml), never a path.
    std::fs::create_dir_all(dir.path().join("playbooks"))?;
    std::fs::write(dir.path().join("playbooks/bench-lookup.yaml"), LOOKUP)?;
    Ok((dir, config))
}

fn orders(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("SO-{:06}", 100001 + (i % 40)))
        .collect()
}

/// The baseline: a direct batch at `pages`. Returns seconds.
async fn batch(center: &SampleCenter, pages: usize, n: usize) -> anyhow::Result<f64> {
    let (dir, config) = data_dir(center, pages)?;
    let store = Store::open(dir.path())?;
    let engine = Engine::new(
        dir.path().to_owned(),
        config,
        store,
        LaunchOptions::detect()?,
    );
    let playbook = Arc::new(
        clerk::playbook::load(&dir.path().join("bench-lookup.yaml"), Some(&engine.config))
            .map_err(|d| anyhow::anyhow!("{d}"))?,
    );
    let rows = orders(n)
        .into_iter()
        .map(|o| [("order_id".to_owned(), o)].into_iter().collect())
        .collect();
    let opts = BatchOptions {
        jobs: pages,
        operator: "ops".into(),
        case_ref: None,
        progress: false,
        sample: false,
    };
    let t = Instant::now();
    let report = run_batch(&engine, &[playbook], rows, &opts).await?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(report.all_ok(), "baseline batch had failures");
    engine.shutdown().await;
    Ok(secs)
}

struct Served {
    secs: f64,
    idle_cold_mib: f64,
    busy_peak_mib: f64,
    idle_warm_mib: f64,
}

/// The daemon at `pages`: all jobs enqueued at once, timed until the last is done.
async fn served(center: &SampleCenter, pages: usize, n: usize) -> anyhow::Result<Served> {
    let (dir, config) = data_dir(center, pages)?;
    let store = Store::open(dir.path())?;
    let launch = LaunchOptions::detect()?;
    let chromium = launch.executable.clone();
    let engine = Engine::new(dir.path().to_owned(), config, store, launch);
    let mut opts = ServeOptions::from_config(&engine.config, Some(0));
    opts.run_scheduler = false;
    let running = clerk::serve::start(engine, opts).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_cold_mib = pss_kib(&chromium) / 1024.0;
    let peak = Peak::start(chromium.clone());
    let playbook = "bench-lookup".to_owned();
    let t = Instant::now();
    let q = running.daemon.queue.clone();
    for o in orders(n) {
        let mut spec = JobSpec::new(&playbook, "sample", "ops");
        spec.priority = Priority::Bulk;
        spec.inputs.insert("order_id".into(), o);
        q.enqueue(spec)?;
    }
    running.daemon.wake();
    loop {
        let jobs = q.list(&JobFilter::default())?;
        if jobs
            .iter()
            .all(|j| matches!(j.state, JobState::Done | JobState::Dead))
        {
            let bad = jobs
                .iter()
                .filter(|j| j.outcome.as_ref().map(|o| o.status.as_str()) != Some("ok"))
                .count();
            anyhow::ensure!(bad == 0, "{bad} daemon jobs did not end ok");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let busy_peak_mib = peak.finish();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let idle_warm_mib = pss_kib(&chromium) / 1024.0;
    running.shutdown();
    running.wait().await?;
    drop(dir);
    Ok(Served {
        secs,
        idle_cold_mib,
        busy_peak_mib,
        idle_warm_mib,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let center = SampleCenter::start(SampleOptions {
        port: 0,
        secret: None,
    })
    .await?;
    center.set_chat_offline(true);
    println!("queue throughput, {n} read-only lookups (order page, 3 fields, full-page PNG)");
    println!(
        "{:>5} {:>14} {:>14} {:>8} {:>13} {:>13} {:>13}",
        "pages", "batch ord/min", "serve ord/min", "ratio", "idle MiB", "busy MiB", "warm idle MiB"
    );
    for pages in [1, 2, 4] {
        // Warm-up of the machine's caches: one small batch, not counted.
        if pages == 1 {
            batch(&center, 1, 5).await?;
        }
        let base = batch(&center, pages, n).await?;
        let s = served(&center, pages, n).await?;
        let per_min = |secs: f64| n as f64 * 60.0 / secs;
        println!(
            "{:>5} {:>14.1} {:>14.1} {:>8.2} {:>13.0} {:>13.0} {:>13.0}",
            pages,
            per_min(base),
            per_min(s.secs),
            per_min(s.secs) / per_min(base),
            s.idle_cold_mib,
            s.busy_peak_mib,
            s.idle_warm_mib
        );
    }
    println!(
        "ratio: serve / batch orders per minute at the same pages (>1: the daemon is faster). \
         MiB: PSS of this process (daemon and sample seller center) plus every Chromium process."
    );
    Ok(())
}
