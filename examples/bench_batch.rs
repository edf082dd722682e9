//! Throughput of read-only lookup batches: the 20-order `order-lookup` batch at `--jobs 1`
//! (the baseline) and `--jobs 2`, in one invocation, against the sample seller center.
//! Prints orders per minute, the ratio to the baseline, and the peak resident memory of
//! clerk plus every Chromium process it started (sampled every 50 ms from /proc).
//!
//! cargo run --example bench_batch -- [ORDERS] [REPEATS]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::batch::{run_batch, BatchOptions};
use clerk::browser::LaunchOptions;
use clerk::channel::Config;
use clerk::evidence::Store;
use clerk::runner::Engine;
use clerk::sample::{SampleCenter, SampleOptions};

/// Resident set size in KiB of `pid` and all its descendants.
fn tree_rss_kib(root: u32) -> u64 {
    let mut parent_of = BTreeMap::new();
    let mut rss = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // Fields after the command name, which is in parentheses and may contain spaces.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ppid: u32 = fields.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            let pages: u64 = fields.get(21).and_then(|p| p.parse().ok()).unwrap_or(0);
            parent_of.insert(pid, ppid);
            rss.insert(pid, pages * 4);
        }
    }
    let in_tree = |mut pid: u32| {
        while pid > 1 {
            if pid == root {
                return true;
            }
            pid = parent_of.get(&pid).copied().unwrap_or(0);
        }
        false
    };
    rss.iter()
        .filter(|(p, _)| in_tree(**p))
        .map(|(_, r)| r)
        .sum()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let orders: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let repeats: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let center = SampleCenter::start(SampleOptions {
        port: 0,
        secret: None,
    })
    .await?;
    let rows: Vec<BTreeMap<String, String>> = clerk::sample::orders()
        .iter()
        .take(orders)
        .map(|o| BTreeMap::from([("order_id".to_owned(), o.id.clone())]))
        .collect();
    println!("bench_batch: {orders} orders, order-lookup, {repeats} repeat(s) per setting");
    println!(
        "{:<8} {:>10} {:>14} {:>10} {:>16}",
        "jobs", "seconds", "orders/min", "ratio", "peak RSS (MiB)"
    );
    let mut baseline = None;
    for jobs in [1usize, 2] {
        for _ in 0..repeats {
            let dir = tempfile::tempdir()?;
            let config_path = dir.path().join("clerk.toml");
            std::fs::write(
                &config_path,
                clerk::sample::demo_config(center.port(), "ops"),
            )?;
            let config = Config::load(&config_path)?;
            center
                .storage_state("ops", Duration::from_secs(3600))
                .save(&config.channel("sample")?.session_path(dir.path()))?;
            let store = Store::open(dir.path())?;
            let engine = Engine::new(
                dir.path().to_owned(),
                config.clone(),
                store,
                LaunchOptions::detect()?,
            );
            let playbook = Arc::new(
                clerk::playbook::embedded::embedded("order-lookup", Some(&config))
                    .map_err(|d| anyhow::anyhow!("{d}"))?,
            );

            let peak = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let sampler = {
                let (peak, stop) = (peak.clone(), stop.clone());
                std::thread::spawn(move || {
                    let me = std::process::id();
                    while !stop.load(Ordering::SeqCst) {
                        peak.fetch_max(tree_rss_kib(me), Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
            };
            let opts = BatchOptions {
                jobs,
                operator: "ops".into(),
                case_ref: None,
                progress: false,
                sample: false,
            };
            let t0 = Instant::now();
            let report = run_batch(&engine, &[playbook], rows.clone(), &opts).await?;
            let secs = t0.elapsed().as_secs_f64();
            stop.store(true, Ordering::SeqCst);
            let _ = sampler.join();
            anyhow::ensure!(
                report.all_ok(),
                "batch had failures:\n{}",
                clerk::batch::render(&report)
            );
            let per_min = orders as f64 / secs * 60.0;
            let base = *baseline.get_or_insert(per_min);
            println!(
                "{:<8} {:>10.1} {:>14.1} {:>10.2} {:>16.0}",
                jobs,
                secs,
                per_min,
                per_min / base,
                peak.load(Ordering::SeqCst) as f64 / 1024.0
            );
        }
    }
    anyhow::ensure!(
        center.writes().is_empty(),
        "writes reached the seller center"
    );
    center.shutdown().await;
    Ok(())
}
