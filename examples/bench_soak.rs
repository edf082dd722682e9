//! Memory over a long queued batch: N lookups of the sample single-page app
//! (`playbooks/spa-order-lookup.yaml`: hash routes, a JSON API, two full-page PNGs) queued
//! through the `clerk serve` daemon at 2 pages, with PSS (this process — daemon and sample
//! seller center — plus every Chromium process) sampled after every 50 finished runs. Two
//! pools in one invocation: clerk's defaults (a kept context serves 50 runs, a Chromium 200)
//! and, as the baseline, a pool that never recycles (what batch isolation did before runs
//! were counted).
//!
//! cargo run --release --example bench_soak -- [RUNS]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clerk::browser::{LaunchOptions, PoolConfig};
use clerk::channel::Config;
use clerk::evidence::Store;
use clerk::queue::{JobFilter, JobSpec, JobState, Priority};
use clerk::runner::Engine;
use clerk::sample::{SampleCenter, SampleOptions};
use clerk::serve::ServeOptions;

#[path = "support/pss.rs"]
mod pss;

fn pss_mib(chromium: &Path) -> f64 {
    let me = std::process::id();
    pss::pss_kib(|pid, exe| pid == me || exe == Some(chromium)) / 1024.0
}

/// The PSS curve of one soak: (finished runs, MiB), and the seconds it took.
async fn soak(
    center: &SampleCenter,
    pool: PoolConfig,
    n: usize,
) -> anyhow::Result<(Vec<(usize, f64)>, f64)> {
    let dir = tempfile::tempdir()?;
    let pages = 2;
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
    let store = Store::open(dir.path())?;
    let launch = LaunchOptions::detect()?;
    let chromium: PathBuf = launch.executable.clone();
    let engine = Engine::new(dir.path().to_owned(), config, store, launch).with_pool(pool);
    let mut opts = ServeOptions::from_config(&engine.config, Some(0));
    opts.run_scheduler = false;
    let running = clerk::serve::start(engine, opts).await?;
    // Queued jobs name playbooks, never paths: the copy compiled into clerk.
    let playbook = "spa-order-lookup";
    let q = running.daemon.queue.clone();
    for i in 0..n {
        let mut spec = JobSpec::new(playbook, "sample", "ops");
        spec.priority = Priority::Bulk;
        spec.inputs
            .insert("order_id".into(), format!("SO-{:06}", 100001 + (i % 40)));
        q.enqueue(spec)?;
    }
    running.daemon.wake();
    let t = Instant::now();
    let mut curve = Vec::new();
    let mut next = 50;
    loop {
        let jobs = q.list(&JobFilter::default())?;
        let done = jobs
            .iter()
            .filter(|j| matches!(j.state, JobState::Done | JobState::Dead))
            .count();
        while done >= next && next <= n {
            curve.push((next, pss_mib(&chromium)));
            next += 50;
        }
        if done == n {
            let bad = jobs
                .iter()
                .filter(|j| j.outcome.as_ref().map(|o| o.status.as_str()) != Some("ok"))
                .count();
            let first = jobs
                .iter()
                .find(|j| j.outcome.as_ref().map(|o| o.status.as_str()) != Some("ok"))
                .map(|j| format!("{:?} {:?}", j.outcome, j.last_error));
            anyhow::ensure!(bad == 0, "{bad} daemon jobs did not end ok, e.g. {first:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    running.shutdown();
    running.wait().await?;
    Ok((curve, secs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(600);
    let center = SampleCenter::start(SampleOptions {
        port: 0,
        secret: None,
    })
    .await?;
    center.set_chat_offline(true);
    let recycling = PoolConfig {
        browsers: 1,
        ..PoolConfig::default()
    };
    let never = PoolConfig {
        browsers: 1,
        recycle_after: u32::MAX,
        context_runs: u32::MAX,
        ..PoolConfig::default()
    };
    println!("soak: {n} queued SPA lookups through clerk serve at 2 pages; PSS in MiB");
    let (base, base_secs) = soak(&center, never, n).await?;
    let (ours, ours_secs) = soak(&center, recycling, n).await?;
    println!(
        "{:>6} {:>22} {:>26}",
        "runs", "never recycled (MiB)", "context 50 / browser 200"
    );
    for ((runs, a), (_, b)) in base.iter().zip(&ours) {
        println!("{runs:>6} {a:>22.0} {b:>26.0}");
    }
    // A recycled pool's curve is a saw (a Chromium is replaced every 200 runs), so the
    // fair comparison is the peak of each 200-run window.
    let peaks = |c: &[(usize, f64)]| -> Vec<f64> {
        (0..n.div_ceil(200))
            .map(|w| {
                c.iter()
                    .filter(|(r, _)| *r > w * 200 && *r <= (w + 1) * 200)
                    .map(|(_, m)| *m)
                    .fold(0.0, f64::max)
            })
            .collect()
    };
    let show = |p: &[f64]| {
        p.iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let (a, b) = (peaks(&base), peaks(&ours));
    let growth = |p: &[f64]| match (p.first(), p.last()) {
        (Some(f), Some(l)) if *f > 0.0 => (l / f - 1.0) * 100.0,
        _ => f64::NAN,
    };
    println!(
        "peak MiB per 200 runs: never recycled {} ({:+.0}%), clerk's defaults {} ({:+.0}%); \
         time {:.0} s vs {:.0} s ({:.2}x)",
        show(&a),
        growth(&a),
        show(&b),
        growth(&b),
        base_secs,
        ours_secs,
        base_secs / ours_secs
    );
    Ok(())
}
