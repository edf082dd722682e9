//! clerk against its peer, in one invocation: Playwright (playwright-core driving the same
//! Debian Chromium, `bench/peer.js`) and clerk collect the same evidence for the same orders
//! of the sample seller center, at 1 and 2 pages, on the single-page app (`/app/`, hash
//! routes) and on the server-rendered pages. The job, for each order: open the order's
//! route, wait for its reference and tracking number, read four fields, take a full-page
//! PNG, hash it and store it. clerk does it with everything it adds: the network guard on
//! every request, fsync'd hash-chained records, PNG checks.
//!
//! Prints, per area, order count and page count, both tools' seconds and orders/min, the
//! ratio clerk / Playwright (above 1.0: clerk is faster), how the PNGs of both tools agree
//! ("same/near/total": byte-identical / at most 2 colour levels apart anywhere / distinct
//! orders; Playwright's 2-page row compares it with its own 1-page run), the peak PSS of
//! all Chromium processes, clerk's time split, and the memory of the second page.
//!
//! scripts/bench.sh [ORDERS]    (installs playwright-core into bench/, builds, runs this)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::batch::{run_batch, BatchOptions};
use clerk::browser::LaunchOptions;
use clerk::browser::{Isolation, PoolConfig};
use clerk::channel::Config;
use clerk::evidence::Store;
use clerk::runner::{Engine, RunStatus, Timings};
use clerk::sample::{SampleCenter, SampleOptions};

/// One kind of page: where an order lives, what to wait for, which fields to read.
struct Area {
    name: &'static str,
    route: &'static str,
    wait: [&'static str; 2],
    fields: [(&'static str, &'static str); 4],
}

const AREAS: [Area; 2] = [
    Area {
        name: "spa",
        route: "/app/#/orders/{id}",
        wait: [
            r#"[data-order-id="{id}"] .ref"#,
            r#"[data-order-id="{id}"] [data-testid=tracking-no]"#,
        ],
        fields: [
            (
                "status",
                r#"[data-order-id="{id}"] [data-testid=order-status]"#,
            ),
            (
                "total",
                r#"[data-order-id="{id}"] [data-testid=order-total]"#,
            ),
            ("reference", r#"[data-order-id="{id}"] .ref"#),
            (
                "tracking_no",
                r#"[data-order-id="{id}"] [data-testid=tracking-no]"#,
            ),
        ],
    },
    Area {
        name: "server-rendered",
        route: "/orders/{id}",
        wait: ["#order-id", "#tracking-no"],
        fields: [
            ("status", "#order-status"),
            ("total", "#order-total"),
            ("customer", "#customer-name"),
            ("tracking_no", "#tracking-no"),
        ],
    },
];

fn playbook_yaml(area: &Area) -> String {
    let sub = |s: &str| s.replace("{id}", "{{order_id}}");
    let mut steps = format!("  - goto: {}\n", sub(area.route));
    for w in area.wait {
        steps.push_str(&format!("  - wait_for: {{ selector: '{}' }}\n", sub(w)));
    }
    for (name, sel) in area.fields {
        steps.push_str(&format!(
            "  - extract: {{ field: {name}, selector: '{}' }}\n",
            sub(sel)
        ));
    }
    steps.push_str("  - screenshot: { name: order }\n");
    format!(
        "name: bench-{}\nversion: \"1\"\ndescription: benchmark job\nchannel: sample\nmode: read_only\n\
         inputs:\n  order_id: {{ type: string }}\nsteps:\n{steps}",
        area.name.replace(' ', "-")
    )
}

struct Outcome {
    seconds: f64,
    hashes: BTreeMap<String, String>,
    /// Peak PSS of all Chromium processes while the job ran, in MiB.
    peak_pss_mib: f64,
    /// clerk only: the summed time split of its runs.
    split: Option<Timings>,
}

/// Samples the summed PSS (`/proc/PID/smaps_rollup`) of every process running the Chromium
/// binary, every 100 ms, keeping the peak. PSS shares each page of memory among the
/// processes that map it, so the sum is what the browser really costs (summed RSS counts
/// shared pages once per process).
struct PssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<f64>,
}

impl PssSampler {
    fn start(exe: PathBuf) -> PssSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0.0f64;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(chromium_pss_kib(&exe) / 1024.0);
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        PssSampler { stop, thread }
    }

    fn finish(self) -> f64 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap_or(f64::NAN)
    }
}

#[path = "support/pss.rs"]
mod pss;

fn chromium_pss_kib(exe: &Path) -> f64 {
    pss::pss_kib(|_, e| e == Some(exe))
}

fn peer(
    root: &Path,
    center: &SampleCenter,
    state: &Path,
    area: &Area,
    ids: &[String],
    pages: usize,
    out: &Path,
) -> anyhow::Result<Outcome> {
    let opts = LaunchOptions::detect()?;
    let job = serde_json::json!({
        "chromium": opts.executable,
        "base": center.base_url().to_string(),
        "storageState": state,
        "pages": pages,
        "width": opts.width,
        "height": opts.height,
        "out": out,
        "area": {
            "route": area.route,
            "wait": area.wait,
            "fields": area.fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        },
        "orders": ids,
    });
    let job_path = out.with_extension("json");
    std::fs::write(&job_path, serde_json::to_vec(&job)?)?;
    let sampler = PssSampler::start(opts.executable.clone());
    let output = std::process::Command::new("node")
        .arg(root.join("bench/peer.js"))
        .arg(&job_path)
        .current_dir(root.join("bench"))
        .output();
    let peak_pss_mib = sampler.finish();
    let output = output?;
    if !output.status.success() {
        anyhow::bail!(
            "playwright job failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let mut hashes = BTreeMap::new();
    if let Some(orders) = v["orders"].as_object() {
        for (id, o) in orders {
            hashes.insert(id.clone(), o["sha256"].as_str().unwrap_or("").to_owned());
        }
    }
    Ok(Outcome {
        seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
        hashes,
        peak_pss_mib,
        split: None,
    })
}

async fn clerk_run(
    center: &SampleCenter,
    area: &Area,
    ids: &[String],
    pages: usize,
    setup: &Setup,
    keep: Option<&Path>,
    out: &Path,
) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(out)?;
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("clerk.toml");
    let mut config_text = clerk::sample::demo_config(center.port(), "ops");
    if !setup.record {
        config_text = config_text.replace("record_responses = [\"/api/orders/**\"]", "");
    }
    std::fs::write(&config_path, config_text)?;
    let config = Config::load(&config_path)?;
    center
        .storage_state("ops", Duration::from_secs(3600))
        .save(&config.channel("sample")?.session_path(dir.path()))?;
    let pb_path = dir.path().join("bench.yaml");
    std::fs::write(&pb_path, playbook_yaml(area))?;
    let playbook = Arc::new(
        clerk::playbook::load(&pb_path, Some(&config)).map_err(|d| anyhow::anyhow!("{d}"))?,
    );
    let launch = LaunchOptions::detect()?;
    let exe = launch.executable.clone();
    let engine = Engine::new(
        dir.path().to_owned(),
        config,
        Store::open(dir.path())?,
        launch,
    )
    .with_pool(PoolConfig {
        browsers: setup.browsers.min(pages),
        isolation: setup.isolation,
        ..PoolConfig::default()
    });
    let rows = ids
        .iter()
        .map(|id| BTreeMap::from([("order_id".to_owned(), id.clone())]))
        .collect();
    let opts = BatchOptions {
        jobs: pages,
        operator: "ops".into(),
        case_ref: None,
        progress: false,
        sample: false,
    };
    let sampler = PssSampler::start(exe);
    let t0 = Instant::now();
    let report = run_batch(&engine, &[playbook], rows, &opts).await;
    let seconds = t0.elapsed().as_secs_f64();
    engine.shutdown().await;
    let peak_pss_mib = sampler.finish();
    let report = report?;
    let mut split = Timings::default();
    for r in &report.runs {
        split.browser_ms += r.timings.as_ref().map_or(0.0, |t| t.browser_ms);
        split.session_ms += r.timings.as_ref().map_or(0.0, |t| t.session_ms);
        split.page_ms += r.timings.as_ref().map_or(0.0, |t| t.page_ms);
        split.capture_ms += r.timings.as_ref().map_or(0.0, |t| t.capture_ms);
        split.png_ms += r.timings.as_ref().map_or(0.0, |t| t.png_ms);
        split.journal_ms += r.timings.as_ref().map_or(0.0, |t| t.journal_ms);
    }
    let mut hashes = BTreeMap::new();
    for r in &report.runs {
        if r.status != RunStatus::Ok {
            anyhow::bail!("clerk run failed: {:?}", r.error);
        }
        let id = r.inputs.get("order_id").cloned().unwrap_or_default();
        if let Some(s) = r.screenshots.first() {
            std::fs::copy(
                engine.store.screenshot_path(&s.sha256),
                out.join(format!("{}.png", s.sha256)),
            )?;
        }
        if let (Some(k), Some(s)) = (keep, r.screenshots.first()) {
            let _ = std::fs::create_dir_all(k);
            let _ = std::fs::copy(
                engine.store.screenshot_path(&s.sha256),
                k.join(format!(
                    "{}-{pages}-{id}-clerk-{}.png",
                    area.name, setup.name
                )),
            );
        }
        hashes.insert(
            id,
            r.screenshots
                .first()
                .map(|s| s.sha256.clone())
                .unwrap_or_default(),
        );
    }
    Ok(Outcome {
        seconds,
        hashes,
        peak_pss_mib,
        split: Some(split),
    })
}

/// How two PNGs compare: byte-identical, or the largest difference of any colour channel of
/// any pixel (`None`: different sizes or unreadable).
fn compare_png(a: &Path, b: &Path) -> (bool, Option<u8>) {
    let (Ok(ba), Ok(bb)) = (std::fs::read(a), std::fs::read(b)) else {
        return (false, None);
    };
    if ba == bb {
        return (true, Some(0));
    }
    let (Ok(ia), Ok(ib)) = (
        image::load_from_memory(&ba).map(|i| i.to_rgba8()),
        image::load_from_memory(&bb).map(|i| i.to_rgba8()),
    ) else {
        return (false, None);
    };
    if ia.dimensions() != ib.dimensions() {
        return (false, None);
    }
    let max = ia
        .as_raw()
        .iter()
        .zip(ib.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    (false, Some(max))
}

/// Over the distinct orders: how many PNGs are byte-identical between two jobs, and how
/// many differ by at most 2 colour levels anywhere (anti-aliasing), as "same/near/total".
fn agreement(
    ids: &[String],
    a: (&Path, &BTreeMap<String, String>),
    b: (&Path, &BTreeMap<String, String>),
) -> String {
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    let (mut same, mut near) = (0, 0);
    for id in &distinct {
        let (Some(ha), Some(hb)) = (a.1.get(*id), b.1.get(*id)) else {
            continue;
        };
        match compare_png(
            &a.0.join(format!("{ha}.png")),
            &b.0.join(format!("{hb}.png")),
        ) {
            (true, _) => {
                same += 1;
                near += 1;
            }
            (false, Some(d)) if d <= 2 => near += 1,
            _ => {}
        }
    }
    format!("{same}/{near}/{}", distinct.len())
}

/// How clerk shares browsers in one measured setting.
struct Setup {
    name: &'static str,
    isolation: Isolation,
    /// Chromium processes at most (never more than pages).
    browsers: usize,
    /// Keep the server's responses as WARC records (the demo channel's `record_responses`).
    record: bool,
}

const SETUPS: [Setup; 4] = [
    Setup {
        name: "batch",
        isolation: Isolation::Batch,
        browsers: 1,
        record: true,
    },
    Setup {
        name: "run",
        isolation: Isolation::Run,
        browsers: 1,
        record: true,
    },
    Setup {
        name: "batch, N procs",
        isolation: Isolation::Batch,
        browsers: 2,
        record: true,
    },
    // The same batch without the server's responses recorded: what the WARC records cost.
    Setup {
        name: "batch, no WARC",
        isolation: Isolation::Batch,
        browsers: 1,
        record: false,
    },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() { vec![20] } else { counts };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !root.join("bench/node_modules/playwright-core").exists() {
        anyhow::bail!("playwright-core is not installed: run scripts/bench.sh");
    }
    let center = SampleCenter::start(SampleOptions {
        port: 0,
        secret: None,
    })
    .await?;
    // Playwright lets the live feed's WebSocket connect and clerk's guard does not: without
    // the feed both tools see the same page.
    center.set_spa_no_feed(true);
    // Likewise the order page's chat widget, which shows "Agent available" only when its
    // presence POST goes out (clerk's guard blocks it).
    center.set_chat_offline(true);
    let work = tempfile::tempdir()?;
    // BENCH_KEEP=DIR keeps both tools' PNGs for a side-by-side look.
    let keep = std::env::var_os("BENCH_KEEP").map(PathBuf::from);
    let state = work.path().join("state.json");
    center
        .storage_state("ops", Duration::from_secs(3600))
        .save(&state)?;
    // Orders with a tracking number, so the server-rendered page has one to wait for;
    // repeated when more are asked for than exist.
    let tracked: Vec<String> = clerk::sample::orders()
        .iter()
        .filter(|o| o.tracking_no.is_some())
        .map(|o| o.id.clone())
        .collect();
    println!(
        "bench_peer: Chromium {}, {} cores",
        LaunchOptions::detect()?.executable.display(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<16} {:>6} {:>5} {:<15} {:>8} {:>9} {:>7} {:>8} {:>9} {:>10}",
        "area",
        "orders",
        "pages",
        "tool",
        "seconds",
        "orders/m",
        "ratio",
        "same PNG",
        "PSS MiB",
        "split"
    );
    let mut pss: BTreeMap<(String, usize, String), f64> = BTreeMap::new();
    // Playwright's PNGs at 1 page, to compare its 2-page run with (its own agreement).
    let mut pw_one: BTreeMap<(String, usize), (PathBuf, BTreeMap<String, String>)> =
        BTreeMap::new();
    for &n in &counts {
        let ids: Vec<String> = tracked.iter().cycle().take(n).cloned().collect();
        for area in &AREAS {
            for pages in [1usize, 2] {
                let out = work
                    .path()
                    .join(format!("pw-{}-{n}-{pages}", area.name.replace(' ', "-")));
                let pw = peer(&root, &center, &state, area, &ids, pages, &out)?;
                if let Some(k) = &keep {
                    let _ = std::fs::create_dir_all(k);
                    for (id, sha) in &pw.hashes {
                        let _ = std::fs::copy(
                            out.join(format!("{sha}.png")),
                            k.join(format!("{}-{pages}-{id}-pw.png", area.name)),
                        );
                    }
                }
                let per_min = |s: f64| ids.len() as f64 * 60.0 / s;
                // Playwright against itself: its 2-page PNGs against its 1-page ones.
                let self_agreement = match pw_one.get(&(area.name.into(), n)) {
                    Some((dir, hashes)) => agreement(&ids, (dir, hashes), (&out, &pw.hashes)),
                    None => String::new(),
                };
                if pages == 1 {
                    pw_one.insert((area.name.into(), n), (out.clone(), pw.hashes.clone()));
                }
                println!(
                    "{:<16} {:>6} {:>5} {:<15} {:>8.2} {:>9.1} {:>7} {:>9} {:>9.0}{}",
                    area.name,
                    n,
                    pages,
                    "playwright",
                    pw.seconds,
                    per_min(pw.seconds),
                    "1.00",
                    self_agreement,
                    pw.peak_pss_mib,
                    if self_agreement.is_empty() {
                        ""
                    } else {
                        "  (PNGs vs its own 1-page run)"
                    }
                );
                pss.insert(
                    (area.name.into(), pages, "playwright".into()),
                    pw.peak_pss_mib,
                );
                for setup in &SETUPS {
                    if setup.browsers > 1 && (pages == 1 || n > 20) {
                        continue;
                    }
                    if !setup.record && n > 20 {
                        continue;
                    }
                    let ck_out = work.path().join(format!(
                        "clerk-{}-{n}-{pages}-{}",
                        area.name.replace(' ', "-"),
                        setup.name.replace([' ', ','], "-")
                    ));
                    let ck = clerk_run(&center, area, &ids, pages, setup, keep.as_deref(), &ck_out)
                        .await?;
                    let same = agreement(&ids, (&out, &pw.hashes), (&ck_out, &ck.hashes));
                    let split = ck.split.clone().unwrap_or_default();
                    let total = split.browser_ms
                        + split.session_ms
                        + split.page_ms
                        + split.capture_ms
                        + split.png_ms
                        + split.journal_ms;
                    let pct = |v: f64| if total > 0.0 { 100.0 * v / total } else { 0.0 };
                    println!(
                        "{:<16} {:>6} {:>5} {:<15} {:>8.2} {:>9.1} {:>7.2} {:>9} {:>9.0} browser {:.0}% session {:.0}% page {:.0}% capture {:.0}% png {:.0}% journal {:.0}%",
                        area.name,
                        n,
                        pages,
                        format!("clerk {}", setup.name),
                        ck.seconds,
                        per_min(ck.seconds),
                        pw.seconds / ck.seconds,
                        same,
                        ck.peak_pss_mib,
                        pct(split.browser_ms),
                        pct(split.session_ms),
                        pct(split.page_ms),
                        pct(split.capture_ms),
                        pct(split.png_ms),
                        pct(split.journal_ms),
                    );
                    pss.insert(
                        (area.name.into(), pages, format!("clerk {}", setup.name)),
                        ck.peak_pss_mib,
                    );
                }
            }
        }
    }
    println!("\nmemory of the second page (peak PSS at 2 pages minus at 1 page, MiB):");
    for area in &AREAS {
        for tool in ["playwright", "clerk batch", "clerk run"] {
            let one = pss.get(&(area.name.into(), 1, tool.into()));
            let two = pss.get(&(area.name.into(), 2, tool.into()));
            if let (Some(one), Some(two)) = (one, two) {
                println!("  {:<16} {:<12} {:>6.0}", area.name, tool, two - one);
            }
        }
        if let (Some(one), Some(two)) = (
            pss.get(&(area.name.into(), 1, "clerk batch".into())),
            pss.get(&(area.name.into(), 2, "clerk batch, N procs".into())),
        ) {
            println!(
                "  {:<16} {:<12} {:>6.0}  (second page in a second Chromium)",
                area.name,
                "clerk batch",
                two - one
            );
        }
    }
    Ok(())
}
