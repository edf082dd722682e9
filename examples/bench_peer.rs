//! clerk against its peer, in one invocation: Playwright (playwright-core driving the same
//! Debian Chromium, `bench/peer.js`) and clerk collect the same evidence for the same orders
//! of the sample seller center, at 1 and 2 pages, on the single-page app (`/app/`, hash
//! routes) and on the server-rendered pages. The job, for each order: open the order's
//! route, wait for its reference and tracking number, read four fields, take a full-page
//! PNG, hash it and store it. clerk does it with everything it adds: the network guard on
//! every request, fsync'd hash-chained records, PNG checks.
//!
//! Prints, per area and page count, both tools' seconds and orders/min, the ratio
//! clerk / Playwright (above 1.0: clerk is faster), and how many orders got byte-identical
//! PNGs from both tools.
//!
//! scripts/bench.sh [ORDERS]    (installs playwright-core into bench/, builds, runs this)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::batch::{run_batch, BatchOptions};
use clerk::browser::LaunchOptions;
use clerk::channel::Config;
use clerk::evidence::Store;
use clerk::runner::{Engine, RunStatus};
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
    let output = std::process::Command::new("node")
        .arg(root.join("bench/peer.js"))
        .arg(&job_path)
        .current_dir(root.join("bench"))
        .output()?;
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
    })
}

async fn clerk_run(
    center: &SampleCenter,
    area: &Area,
    ids: &[String],
    pages: usize,
    keep: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("clerk.toml");
    std::fs::write(&config_path, clerk::demo::demo_config(center.port(), "ops"))?;
    let config = Config::load(&config_path)?;
    center
        .storage_state("ops", Duration::from_secs(3600))
        .save(&config.channel("sample")?.session_path(dir.path()))?;
    let pb_path = dir.path().join("bench.yaml");
    std::fs::write(&pb_path, playbook_yaml(area))?;
    let playbook = Arc::new(
        clerk::playbook::load(&pb_path, Some(&config)).map_err(|d| anyhow::anyhow!("{d}"))?,
    );
    let engine = Engine::new(
        dir.path().to_owned(),
        config,
        Store::open(dir.path())?,
        LaunchOptions::detect()?,
    );
    let rows = ids
        .iter()
        .map(|id| BTreeMap::from([("order_id".to_owned(), id.clone())]))
        .collect();
    let opts = BatchOptions {
        jobs: pages,
        operator: "ops".into(),
        case_ref: None,
        progress: false,
    };
    let t0 = Instant::now();
    let report = run_batch(&engine, &[playbook], rows, &opts).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut hashes = BTreeMap::new();
    for r in &report.runs {
        if r.status != RunStatus::Ok {
            anyhow::bail!("clerk run failed: {:?}", r.error);
        }
        let id = r.inputs.get("order_id").cloned().unwrap_or_default();
        if let (Some(k), Some(s)) = (keep, r.screenshots.first()) {
            let _ = std::fs::create_dir_all(k);
            let _ = std::fs::copy(
                engine.store.screenshot_path(&s.sha256),
                k.join(format!("{}-{pages}-{id}-clerk.png", area.name)),
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
    Ok(Outcome { seconds, hashes })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let orders: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
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
    let work = tempfile::tempdir()?;
    // BENCH_KEEP=DIR keeps both tools' PNGs for a side-by-side look.
    let keep = std::env::var_os("BENCH_KEEP").map(PathBuf::from);
    let state = work.path().join("state.json");
    center
        .storage_state("ops", Duration::from_secs(3600))
        .save(&state)?;
    // Orders with a tracking number, so the server-rendered page has one to wait for.
    let ids: Vec<String> = clerk::sample::orders()
        .iter()
        .filter(|o| o.tracking_no.is_some())
        .take(orders)
        .map(|o| o.id.clone())
        .collect();
    println!(
        "bench_peer: {} orders per setting, Chromium {}",
        ids.len(),
        LaunchOptions::detect()?.executable.display()
    );
    println!(
        "{:<16} {:>5} {:>12} {:>12} {:>12} {:>12} {:>8} {:>10}",
        "area", "pages", "pw s", "pw ord/min", "clerk s", "clerk o/min", "ratio", "same PNG"
    );
    for area in &AREAS {
        for pages in [1usize, 2] {
            let out = work
                .path()
                .join(format!("pw-{}-{pages}", area.name.replace(' ', "-")));
            let pw = peer(&root, &center, &state, area, &ids, pages, &out)?;
            let ck = clerk_run(&center, area, &ids, pages, keep.as_deref()).await?;
            if let Some(k) = &keep {
                let _ = std::fs::create_dir_all(k);
                for (id, sha) in &pw.hashes {
                    let _ = std::fs::copy(
                        out.join(format!("{sha}.png")),
                        k.join(format!("{}-{pages}-{id}-pw.png", area.name)),
                    );
                }
            }
            let same = ids
                .iter()
                .filter(|id| {
                    pw.hashes.contains_key(*id) && pw.hashes.get(*id) == ck.hashes.get(*id)
                })
                .count();
            let per_min = |s: f64| ids.len() as f64 * 60.0 / s;
            println!(
                "{:<16} {:>5} {:>12.2} {:>12.1} {:>12.2} {:>12.1} {:>8.2} {:>7}/{}",
                area.name,
                pages,
                pw.seconds,
                per_min(pw.seconds),
                ck.seconds,
                per_min(ck.seconds),
                pw.seconds / ck.seconds,
                same,
                ids.len()
            );
        }
    }
    Ok(())
}
