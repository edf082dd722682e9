//! Remote browsers: a Chromium started elsewhere, reached only over its CDP WebSocket (here
//! through a TCP proxy the test can cut). The guard is installed on it as on a local one,
//! the run records which browser it used but never the endpoint's token, and a connection
//! cut mid-run never lets a page go on unguarded: the run's context is disposed with the
//! connection (no write reaches the seller center), the run fails as transient, and the
//! next run reconnects with the guard installed afresh.

use std::time::Duration;

use clerk::browser::{ChromiumProcess, LaunchOptions};
use clerk::evidence::Event;
use clerk::runner::RunStatus;

use crate::common::proxy::Proxy;
use crate::common::World;

/// A Chromium with remote debugging on a port of its own (as an operator would start one on
/// another machine), and a proxy in front of it.
async fn remote_chromium() -> (ChromiumProcess, u16, Proxy) {
    let opts = LaunchOptions::detect().expect("chromium is installed");
    let (process, ws) = ChromiumProcess::spawn(&opts.executable, &opts.args(), opts.launch_timeout)
        .expect("chromium starts");
    let port: u16 = url::Url::parse(&ws).unwrap().port().unwrap();
    let proxy = Proxy::start(port).await;
    (process, port, proxy)
}

async fn world_on(proxy_port: u16) -> World {
    World::with_config(|c| {
        format!(
            "{c}\n[[browser]]\nendpoint = \"http://127.0.0.1:{proxy_port}/?token=s3cr3t-t0ken\"\n"
        )
    })
    .await
}

fn browser_of(world: &World, run_id: &str) -> Option<clerk::evidence::BrowserIdentity> {
    world
        .records(run_id)
        .into_iter()
        .find_map(|r| match r.event {
            Event::RunFinished { browser, .. } => browser,
            _ => None,
        })
}

/// A lookup in a remote browser: guarded (the page's analytics writes are blocked and
/// recorded, none reaches the seller center), its endpoint and version recorded without the
/// token, and no local Chromium launched.
#[tokio::test(flavor = "multi_thread")]
async fn a_remote_browser_is_guarded_and_recorded_without_its_token() {
    let (_chromium, _port, proxy) = remote_chromium().await;
    let world = world_on(proxy.port()).await;
    let o = &clerk::sample::orders()[0];
    let (r, run_id) = world.run_ok("order-lookup", &o.id).await;
    assert_eq!(r.fields["status"], o.status);
    let b = browser_of(&world, &run_id).expect("the run names its browser");
    assert_eq!(b.endpoint, format!("http://127.0.0.1:{}", proxy.port()));
    assert!(b.product.contains("Chrome"), "{b:?}");
    assert!(!b.protocol.is_empty());
    assert!(r.blocked() > 0, "the guard blocked the page's writes");
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    let journal = std::fs::read_to_string(world.data_dir().join("journal.jsonl")).unwrap();
    assert!(
        !journal.contains("s3cr3t"),
        "the endpoint's token is in the journal"
    );
    let browsers = world.engine.pool.browsers();
    assert_eq!(browsers.len(), 1);
    assert!(browsers[0].is_remote() && browsers[0].pid() == 0);
    // `runs show` says which browser.
    let detail = world.engine.store.run(&run_id).unwrap().unwrap();
    assert!(detail
        .to_string()
        .contains(&format!("browser http://127.0.0.1:{}", proxy.port())));
}

const WRITER: &str = r#"name: writer
version: "1"
description: a page that keeps writing, and a wait that never ends
channel: sample
mode: read_only
steps:
  - goto: /probe/writer
  - wait_for: { text: "this text never appears" }
    timeout: 30s
"#;

/// The CDP connection is cut mid-run while the page keeps trying to write: the run ends
/// (transient, naming the remote browser) well before its wait would, no write ever reaches
/// the seller center (Chromium disposed the run's context with the connection, so the page
/// did not go on unguarded), and the next run reconnects and is guarded again.
#[tokio::test(flavor = "multi_thread")]
async fn a_cut_connection_leaves_no_page_running_unguarded() {
    let (_chromium, real_port, proxy) = remote_chromium().await;
    let proxy_port = proxy.port();
    let world = world_on(proxy_port).await;
    let pb = world.playbook_from("writer", WRITER);
    let run = {
        let world_engine = world.engine.clone();
        let pb = pb.clone();
        tokio::spawn(async move {
            world_engine
                .run(clerk::runner::RunRequest {
                    playbook: pb,
                    inputs: Default::default(),
                    operator: "ops".into(),
                    case_ref: None,
                    batch_id: None,
                    approval: None,
                })
                .await
        })
    };
    // The writer page is up and posting (every post failed by the guard).
    let open = std::time::Instant::now();
    loop {
        let pages: serde_json::Value =
            ureq::get(&format!("http://127.0.0.1:{real_port}/json/list"))
                .call()
                .unwrap()
                .into_json()
                .unwrap();
        if pages.to_string().contains("/probe/writer") {
            break;
        }
        assert!(
            open.elapsed() < Duration::from_secs(20),
            "the writer page never opened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut_at = std::time::Instant::now();
    proxy.cut_after(Duration::ZERO).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(25), run)
        .await
        .expect("the run ends when its browser goes, not after its 30 s wait")
        .unwrap()
        .unwrap();
    assert!(cut_at.elapsed() < Duration::from_secs(20));
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.transient,
        "a lost browser is worth retrying: {:?}",
        report.error
    );
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("remote browser"), "{error}");
    // The page would post every 200 ms if it still ran anywhere without the guard.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    let pages: serde_json::Value = ureq::get(&format!("http://127.0.0.1:{real_port}/json/list"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert!(
        !pages.to_string().contains("/probe/writer"),
        "the run's page outlived its connection: {pages}"
    );

    // The endpoint comes back: the next run reconnects, guarded again.
    let _proxy = Proxy::start_on(proxy_port, real_port).await;
    let o = &clerk::sample::orders()[0];
    let (r, _) = world.run_ok("order-lookup", &o.id).await;
    assert!(r.blocked() > 0);
    assert!(world.center.writes().is_empty());
    assert!(world.engine.pool.stats().launched >= 2, "it reconnected");
}

/// A `[[browser]]` endpoint that is not a CDP URL is refused when the config is read, and
/// the message never repeats the endpoint's token.
#[test]
fn a_bad_endpoint_is_refused_without_echoing_its_token() {
    let text = format!(
        "{}\n[[browser]]\nendpoint = \"ftp://cdp.example:9222/x?token=s3cr3t\"\n",
        clerk::sample::demo_config(8931, "ops")
    );
    let err = clerk::channel::Config::parse(std::path::Path::new("clerk.toml"), &text)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("[[browser]]") && err.contains("ftp://cdp.example:9222"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");
}
