//! `clerk demo`: the main job on an embedded default.
//!
//! Starts the sample seller center, writes a channel config and an authorized session for
//! it, looks up orders read-only (order page and logistics page, with screenshots), shows
//! how many writes the guard blocked and how many reached the seller center (zero), and
//! drafts one refund that waits for a reviewer.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::batch::{self, BatchOptions};
use crate::channel::Config;
use crate::cli::args::{Cli, DemoArgs};
use crate::cli::common::{current_user, engine, Exit};
use crate::playbook::embedded::embedded;
use crate::runner::{RunRequest, RunStatus};
use crate::sample::{demo_config, SampleCenter, SampleOptions, DEMO_CONFIG_MARKER};

/// Writes the demo config unless a config that the demo did not write is in the way.
fn write_config(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        if !existing.starts_with(DEMO_CONFIG_MARKER) {
            return Err(Exit {
                code: 2,
                message: format!(
                    "{} exists and was not written by the demo; run the demo in another directory (--data-dir DIR) so your config is left alone",
                    path.display()
                ),
            }
            .into());
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A binary next to the running clerk, as a path a person can paste (relative when it is
/// under the current directory).
fn sibling_binary(name: &str) -> String {
    let exe = std::env::current_exe().ok();
    let path = exe
        .as_ref()
        .and_then(|e| e.parent())
        .map(|dir| dir.join(name))
        .filter(|p| p.is_file());
    match path {
        Some(p) => {
            let cwd = std::env::current_dir().unwrap_or_default();
            p.strip_prefix(&cwd)
                .map(|r| Path::new(".").join(r))
                .unwrap_or(p.clone())
                .display()
                .to_string()
        }
        None => format!("cargo run --bin {name} --"),
    }
}

/// How to call this clerk again on the same data directory.
fn invocation(data_dir: &Path) -> String {
    let clerk = sibling_binary("clerk");
    if data_dir == Path::new(".") {
        clerk
    } else {
        format!("{clerk} --data-dir {}", data_dir.display())
    }
}

/// Runs the demo.
pub async fn run(cli: &Cli, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir.clone();
    std::fs::create_dir_all(&data_dir)?;
    let center = SampleCenter::start(SampleOptions {
        port: args.port,
        secret: None,
    })
    .await
    .with_context(|| format!("starting the sample seller center on port {}", args.port))?;
    let port = center.port();
    println!("sample seller center: {}", center.base_url());

    let operator = current_user(cli);
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| data_dir.join("clerk.toml"));
    write_config(&config_path, &demo_config(port, &operator))?;
    let config = Config::load(&config_path)?;
    let channel = config.channel("sample")?.clone();
    let session = center.storage_state("ops", Duration::from_secs(12 * 3600));
    session.save(&channel.session_path(&data_dir))?;
    println!(
        "config: {}  session: {}",
        config_path.display(),
        channel.session_path(&data_dir).display()
    );

    let engine = engine(cli)?.with_pool(args.pool.config());
    let lookup =
        Arc::new(embedded("order-lookup", Some(&config)).map_err(|d| anyhow::anyhow!("{d}"))?);
    let logistics = Arc::new(
        embedded("logistics-screenshot", Some(&config)).map_err(|d| anyhow::anyhow!("{d}"))?,
    );
    let rows: Vec<BTreeMap<String, String>> = crate::sample::orders()
        .iter()
        .take(args.orders)
        .map(|o| BTreeMap::from([("order_id".to_owned(), o.id.clone())]))
        .collect();
    println!(
        "looking up {} orders read-only ({} runs, {} at a time)...",
        rows.len(),
        rows.len() * 2,
        args.jobs
    );
    let opts = BatchOptions {
        jobs: args.jobs,
        operator: operator.clone(),
        case_ref: Some("demo".into()),
        progress: true,
        sample: false,
    };
    let spa_rows: Vec<BTreeMap<String, String>> = rows.iter().take(5).cloned().collect();
    let report = batch::run_batch(&engine, &[lookup, logistics], rows, &opts).await?;

    // The same kind of lookup in the single-page admin console: hash routes, a JSON API,
    // late content, a shadow-DOM widget, a live WebSocket feed the guard keeps closed.
    let spa_lookup =
        Arc::new(embedded("spa-order-lookup", Some(&config)).map_err(|d| anyhow::anyhow!("{d}"))?);
    println!(
        "looking up {} orders in the single-page app (/app/, hash routes)...",
        spa_rows.len()
    );
    let spa_report = batch::run_batch(&engine, &[spa_lookup], spa_rows, &opts).await?;
    let writes_received = center.writes().len();

    // One refund, drafted and left for a reviewer.
    let refund_order = crate::sample::orders()
        .iter()
        .find(|o| o.status == "delivered")
        .map(|o| o.id.clone())
        .unwrap_or_else(|| "SO-100001".into());
    let refund =
        Arc::new(embedded("refund-draft", Some(&config)).map_err(|d| anyhow::anyhow!("{d}"))?);
    let draft = engine
        .run(RunRequest {
            playbook: refund,
            inputs: BTreeMap::from([
                ("order_id".to_owned(), refund_order.clone()),
                ("amount".to_owned(), "12.50".to_owned()),
                ("reason".to_owned(), "damaged".to_owned()),
                (
                    "note".to_owned(),
                    "parcel arrived crushed; photos in case DEMO-1".to_owned(),
                ),
            ]),
            operator: operator.clone(),
            case_ref: Some("DEMO-1".into()),
            batch_id: None,
            approval: None,
            claims: Default::default(),
            replay_of: None,
            rollback_of: None,
            offline: None,
            sample: false,
        })
        .await?;
    let writes_after_draft = center.writes().len();
    center.shutdown().await;

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "batch": report,
                "spa_batch": spa_report,
                "writes_received_by_seller_center": writes_after_draft,
                "draft": draft,
            }))?
        );
    } else {
        println!();
        print!("{}", batch::render(&report));
        println!();
        println!("single-page app:");
        print!("{}", batch::render(&spa_report));
        println!(
            "screenshots: {}/ ({} files)",
            engine
                .store
                .screenshot_path("x")
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            report
                .runs
                .iter()
                .chain(spa_report.runs.iter())
                .map(|r| r.screenshots.len())
                .sum::<usize>()
        );
        println!(
            "write attempts blocked by the guard: {}; writes that reached the seller center: {}",
            report.blocked_requests + spa_report.blocked_requests,
            writes_received
        );
        // The server's own words: what the recorded responses say of the extracted fields.
        let (mut responses, mut fields, mut said, mut example) = (0, 0, 0, None);
        for run in report.runs.iter().chain(spa_report.runs.iter()) {
            let Some(id) = run.run_id.as_deref() else {
                continue;
            };
            if let Ok(m) = crate::evidence::server_match::server_match(&engine.store, id) {
                responses += m.responses;
                fields += m.fields.len();
                said += m.fields.len() - m.unmatched().len();
                example.get_or_insert_with(|| id.to_owned());
            }
        }
        println!(
            "server responses recorded (warc/): {responses}; extracted fields found in them: {said} of {fields} (the others are texts the page itself renders, e.g. \"Not shipped yet\")"
        );
        println!();
        let clerk = invocation(&data_dir);
        if let Some(id) = &example {
            println!(
                "what the server said of one run's fields: {clerk} verify --server-match {id}"
            );
        }
        match (&draft.status, &draft.approval_id) {
            (RunStatus::Drafted, Some(id)) => {
                println!(
                    "refund for {refund_order} drafted (run {}), nothing submitted; writes received so far: {writes_after_draft}",
                    draft.run_id.clone().unwrap_or_default()
                );
                println!("a reviewer approves it and an operator submits it, with the seller center running again:");
                println!(
                    "  {} --port {port} &",
                    sibling_binary("sample-seller-center")
                );
                println!("  {clerk} approvals show {id}");
                println!("  {clerk} approve {id} --as carol --note \"photos checked\"");
                println!("  {clerk} submit {id} --as ops");
            }
            _ => println!(
                "refund draft did not complete ({}): {}",
                draft.status.as_str(),
                draft.error.clone().unwrap_or_default()
            ),
        }
        println!("verify everything: {clerk} verify --all");
    }
    let ok = report.all_ok()
        && spa_report.all_ok()
        && draft.status == RunStatus::Drafted
        && writes_after_draft == 0;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
