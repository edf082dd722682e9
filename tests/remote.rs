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
                    claims: Default::default(),
                    replay_of: None,
                    rollback_of: None,
                    offline: None,
                    sample: false,
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
    assert!(report.browser_lost, "a queue gives such a job back");
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

/// Through `clerk serve`: the connection to the remote browser is cut while a run holds at a
/// gate; the run fails closed and its job is released (queued again, no attempt spent), and
/// once the endpoint answers again the job runs and completes, guarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_connection_releases_the_daemons_job() {
    let (_chromium, real_port, proxy) = remote_chromium().await;
    let proxy_port = proxy.port();
    let world = world_on(proxy_port).await;
    let engine = clerk::runner::Engine::new(
        world.data_dir().to_owned(),
        (*world.engine.config).clone(),
        world.engine.store.clone(),
        world.engine.launch.clone(),
    );
    let mut opts = clerk::serve::ServeOptions::from_config(&engine.config, Some(0));
    opts.run_scheduler = false;
    opts.idle_wait = Duration::from_millis(100);
    let running = clerk::serve::start(engine, opts)
        .await
        .expect("daemon starts");
    let pb = world.playbook_from(
        "held",
        concat!(
            "name: held\nversion: \"1\"\ndescription: holds at a gate\n",
            "channel: sample\nmode: read_only\nsteps:\n",
            "  - goto: /probe/gate?name=remote\n",
            "  - wait_for: { selector: \"#open\" }\n    timeout: 60s\n",
            "  - screenshot: { name: gate }\n",
        ),
    );
    world.engine.store_playbook(&pb).unwrap();
    let mut spec = clerk::queue::JobSpec::new("held", "sample", "ops");
    spec.playbook_sha256 = Some(pb.sha256.clone());
    let q = running.daemon.queue.clone();
    let job = tokio::task::spawn_blocking(move || q.enqueue(spec))
        .await
        .unwrap()
        .unwrap();
    running.daemon.wake();
    let get = |running: &clerk::serve::Running| {
        let q = running.daemon.queue.clone();
        async move {
            tokio::task::spawn_blocking(move || q.get(job))
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        }
    };
    // Holding at the gate in the remote browser.
    let t = std::time::Instant::now();
    loop {
        let pages: serde_json::Value =
            ureq::get(&format!("http://127.0.0.1:{real_port}/json/list"))
                .call()
                .unwrap()
                .into_json()
                .unwrap();
        if pages.to_string().contains("/probe/gate") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the run never reached the gate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.cut_after(Duration::ZERO).await.unwrap();
    let t = std::time::Instant::now();
    loop {
        let j = get(&running).await;
        if j.last_error
            .as_deref()
            .is_some_and(|e| e.contains("released"))
        {
            assert_eq!(j.attempts, 0, "a release spends no attempt: {j:?}");
            assert!(j.last_error.unwrap().contains("remote browser"));
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "not released: {j:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The endpoint answers again: the job runs to the end.
    let _proxy = Proxy::start_on(proxy_port, real_port).await;
    world.center.open_gate("remote");
    let t = std::time::Instant::now();
    loop {
        let j = get(&running).await;
        if j.state == clerk::queue::JobState::Done {
            assert_eq!(j.outcome.unwrap().status, "ok");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "never completed: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(world.center.writes().is_empty());
    running.shutdown();
    running.wait().await.unwrap();
}

const FLOOD: &str = r#"name: flood
version: "1"
description: a page that never stops writing, and a wait that never ends
channel: sample
mode: read_only
steps:
  - goto: /probe/flood
  - wait_for: { text: "this text never appears" }
    timeout: 60s
"#;

/// The clerk process itself is SIGKILLed (three times) while its run's page in a remote
/// browser keeps eight writes in flight: Chromium lets the requests the guard held go, and
/// runs the page unintercepted until it disposes the context, but the context's only way out
/// is the dead process's relay, so not one write reaches the seller center; the page is
/// gone afterwards. (Without the relay this leaked writes: the test fails when
/// `proxyServer` is left out of the context.)
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_clerk_lets_no_write_out_of_a_remote_browser() {
    use std::process::{Command, Stdio};
    let (_chromium, real_port, _proxy) = remote_chromium().await;
    let world = world_on(real_port).await;
    let playbook = world.data_dir().join("flood.yaml");
    std::fs::write(&playbook, FLOOD).unwrap();
    let list = || -> String {
        ureq::get(&format!("http://127.0.0.1:{real_port}/json/list"))
            .call()
            .map(|r| r.into_string().unwrap_or_default())
            .unwrap_or_default()
    };
    for round in 0..3 {
        let mut child = Command::new(crate::common::clerk_bin())
            .arg("--data-dir")
            .arg(world.data_dir())
            .args(["--as", "ops", "run"])
            .arg(&playbook)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let open = std::time::Instant::now();
        while !list().contains("/probe/flood") {
            assert!(
                open.elapsed() < Duration::from_secs(30),
                "round {round}: the flood page never opened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Flooding under the guard for a while, then the process dies at once.
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            world.center.writes().is_empty(),
            "round {round}: {} writes got out of the remote browser after clerk died: {:?}",
            world.center.writes().len(),
            world.center.writes().first()
        );
        let pages = list();
        assert!(
            !pages.contains("/probe/flood"),
            "round {round}: the run's page outlived clerk: {pages}"
        );
    }
}

/// Everything a run context of a remote browser sends goes through the relay, so the relay
/// must carry what real pages do: the single-page app (hash routing, `fetch`, shadow DOM)
/// reads every field, and a channel's allowed WebSocket feed opens and its frames reach
/// the server; nothing else is written.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_carries_an_spa_and_an_allowed_websocket() {
    let (_chromium, port, _proxy) = remote_chromium().await;
    let world = World::with_config(|c| {
        let center = c
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap()
            .to_owned();
        format!(
            "{}\n[[browser]]\nendpoint = \"http://127.0.0.1:{port}\"\n",
            c.replace(
                "approval_ttl_hours = 24",
                &format!(
                    "websocket_allow = [\"ws://127.0.0.1:{center}/api/feed\"]\napproval_ttl_hours = 24"
                ),
            )
        )
    })
    .await;
    let pb = crate::common::playbook("spa-order-lookup");
    let o = &clerk::sample::orders()[2];
    let r = world.run(&pb, &[("order_id", &o.id)]).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    assert_eq!(r.fields["status"], o.status);
    assert_eq!(r.fields["summary_total"], o.total_display());
    assert!(world.engine.pool.browsers()[0].is_remote());
    let visit = world.playbook_from(
        "visit",
        "name: visit\nversion: \"1\"\ndescription: the live feed\nchannel: sample\nmode: read_only\nsteps:\n  - goto: /app/hostile/ws.html\n  - wait_for: { text: \"ws open\" }\n    timeout: 30s\n",
    );
    let r = world.run(&visit, &[]).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    assert!(
        !world.center.ws_frames().is_empty(),
        "the allowed feed's frames did not come through the relay"
    );
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
}
