//! Read-only evidence runs in real headless Chromium against the sample seller center.

use crate::common;

use std::time::Duration;

use clerk::evidence::Event;
use clerk::runner::RunStatus;
use common::{playbook, World};
use sha2::{Digest, Sha256};

/// The read-only batch of 20 orders extracts exactly the sample data, stores one PNG per
/// screenshot named by its SHA-256, and lets no write reach the seller center.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_20_orders_matches_sample_data_and_writes_nothing() {
    let world = World::new().await;
    let lookup = playbook("order-lookup");
    let logistics = playbook("logistics-screenshot");
    let rows: Vec<_> = clerk::sample::orders()
        .iter()
        .take(20)
        .map(|o| common::inputs(&[("order_id", &o.id)]))
        .collect();
    let opts = clerk::batch::BatchOptions {
        jobs: 2,
        operator: "ops".into(),
        case_ref: Some("CASE-20".into()),
        progress: false,
        sample: false,
    };
    let report = clerk::batch::run_batch(&world.engine, &[lookup, logistics], rows, &opts)
        .await
        .unwrap();
    assert_eq!(report.runs.len(), 40);
    assert!(report.all_ok(), "{}", clerk::batch::render(&report));
    for run in &report.runs {
        let id = &run.inputs["order_id"];
        let order = clerk::sample::order(id).unwrap();
        if run.playbook == "order-lookup" {
            assert_eq!(run.fields["status"], order.status, "{id}");
            assert_eq!(run.fields["total"], order.total_display(), "{id}");
            assert_eq!(
                run.fields.get("tracking_no"),
                order.tracking_no.as_ref(),
                "{id}"
            );
        } else {
            assert_eq!(
                run.fields.get("tracking_no"),
                order.tracking_no.as_ref(),
                "{id}"
            );
        }
        assert_eq!(run.screenshots.len(), 1);
        for shot in &run.screenshots {
            let bytes = std::fs::read(&shot.path).unwrap();
            let hash = hex::encode(Sha256::digest(&bytes));
            assert_eq!(hash, shot.sha256);
            assert_eq!(
                shot.path.file_name().unwrap().to_string_lossy(),
                format!("{hash}.png")
            );
            assert!(!shot.blank, "{id}: blank capture");
            assert!(
                shot.width >= 1000 && shot.height >= 400,
                "{}x{}",
                shot.width,
                shot.height
            );
        }
    }
    assert!(
        world.center.writes().is_empty(),
        "writes reached the seller center: {:?}",
        world.center.writes()
    );
    // The adversarial pages tried to write, and every attempt is on record.
    assert!(report.blocked_requests >= 40);
}

/// Every kind of write the adversarial pages attempt is blocked and recorded on the run:
/// beacon, cross-site iframe (its own process), workers, self-submitting form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_writes_are_blocked_and_recorded() {
    let world = World::new().await;
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.tracking_no.is_some())
        .unwrap();
    let r1 = world
        .run(&playbook("order-lookup"), &[("order_id", &order.id)])
        .await;
    assert_eq!(r1.status, RunStatus::Ok, "{:?}", r1.error);
    let r2 = world
        .run(
            &playbook("logistics-screenshot"),
            &[("order_id", &order.id)],
        )
        .await;
    assert_eq!(r2.status, RunStatus::Ok, "{:?}", r2.error);
    let mut blocked = world.blocked_urls(r1.run_id.as_deref().unwrap());
    blocked.extend(world.blocked_urls(r2.run_id.as_deref().unwrap()));
    for path in [
        "/analytics/collect",
        "/widget/presence",
        "/widget/worker",
        "/analytics/worker",
        "/tracking/viewed",
    ] {
        assert!(
            blocked.iter().any(|(m, u)| m == "POST" && u.contains(path)),
            "no blocked POST to {path} in {blocked:?}"
        );
    }
    // Each is attributed to the kind of target that sent it.
    let targets = world.blocked(r1.run_id.as_deref().unwrap());
    let target_of = |path: &str| {
        targets
            .iter()
            .find(|(_, u, _)| u.contains(path))
            .map(|(_, _, t)| t.clone())
            .unwrap_or_default()
    };
    assert_eq!(target_of("/widget/presence"), "iframe (own process)");
    assert_eq!(target_of("/analytics/collect"), "page");
    // The iframe really loaded (it was allowed to GET) but never wrote.
    let requests = world.center.requests();
    assert!(requests
        .iter()
        .any(|r| r.path.starts_with("/widget/chat") && r.host.starts_with("localhost")));
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
}

/// The chat widget runs in its own renderer process (an out-of-process iframe target), so
/// the guard's coverage of it is not an accident of the process model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_iframe_is_out_of_process_and_still_guarded() {
    let world = World::new().await;
    let (mut browser, tab, base_url) = world.browser().await;
    let order = &clerk::sample::orders()[0];
    let url = base_url.join(&format!("orders/{}", order.id)).unwrap();
    tab.goto(&url, Duration::from_secs(10)).await.unwrap();
    tab.wait_visible(
        &clerk::browser::Find::css("#chat-widget"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    tab.network_idle(Duration::from_millis(800), Duration::from_secs(10))
        .await
        .unwrap();
    let iframes = browser.count_targets("iframe").await.unwrap();
    let events = browser.settle_events().await;
    let pid = browser.pid();
    browser.close().await;
    assert!(
        iframes >= 1,
        "the cross-site iframe is not a separate target"
    );
    assert!(
        events
            .iter()
            .any(|e| e.blocked && e.url.contains("/widget/presence")),
        "{events:?}"
    );
    assert!(world.center.writes().is_empty());
    // Closing reaps Chromium.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid));
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) == Some("Z"))
        .unwrap_or(true)
}

/// Clicking a link to an outside host fails the step, records the blocked navigation, and
/// leaves the seller center untouched; popups (same-site and outside) are guarded too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_navigation_fails_the_step_and_popups_are_guarded() {
    let world = World::new().await;
    let order = &clerk::sample::orders()[1].id;
    let nav = world.playbook_from(
        "nav",
        r##"name: leave-site
version: "1"
description: click a link to an outside host
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders/{{order_id}}
  - wait_for: { selector: "#outside-link" }
  - click: "#outside-link"
  - screenshot: { name: after-click }
"##,
    );
    let r = world.run(&nav, &[("order_id", order)]).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.clone().unwrap();
    assert!(
        err.contains("navigation to http://outside.invalid/help blocked"),
        "{err}"
    );
    assert!(
        r.screenshots.is_empty(),
        "a failed navigation must not be captured as evidence"
    );
    let blocked = world.blocked_urls(r.run_id.as_deref().unwrap());
    assert!(
        blocked
            .iter()
            .any(|(_, u)| u.starts_with("http://outside.invalid/help")),
        "{blocked:?}"
    );

    let popups = world.playbook_from(
        "popups",
        r##"name: popups
version: "1"
description: open a same-site popup that writes and an outside popup
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders/{{order_id}}
  - wait_for: { selector: "#open-popup" }
  - click: "#open-popup"
  - click: "#open-outside-popup"
  - wait_for: { network_idle: true }
"##,
    );
    let r = world.run(&popups, &[("order_id", order)]).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    let blocked = world.blocked_urls(r.run_id.as_deref().unwrap());
    assert!(
        blocked
            .iter()
            .any(|(m, u)| m == "POST" && u.contains("/promo/impression")),
        "{blocked:?}"
    );
    assert!(
        blocked
            .iter()
            .any(|(_, u)| u.starts_with("http://outside.invalid/popup")),
        "{blocked:?}"
    );
    let targets = world.blocked(r.run_id.as_deref().unwrap());
    assert!(
        targets
            .iter()
            .any(|(_, u, t)| u.contains("/promo/impression") && t == "popup"),
        "{targets:?}"
    );
    assert!(
        world
            .center
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/promo")),
        "the popup did open"
    );
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
}

/// An expired or missing session fails the run before any lookup, with instructions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_or_missing_session_fails_before_any_lookup() {
    let world = World::new().await;
    let channel = world.engine.config.channel("sample").unwrap().clone();
    let session_path = channel.session_path(world.data_dir());
    world
        .center
        .storage_state("ops", -60i64)
        .save(&session_path)
        .unwrap();
    world.center.clear_log();
    let order = &clerk::sample::orders()[2].id;
    let r = world
        .run(&playbook("order-lookup"), &[("order_id", order)])
        .await;
    assert_eq!(r.status, RunStatus::SessionExpired);
    let err = r.error.clone().unwrap();
    assert!(
        err.starts_with("session for channel sample has expired: re-authorize ("),
        "{err}"
    );
    assert!(r.screenshots.is_empty());
    assert!(
        !world
            .center
            .requests()
            .iter()
            .any(|q| q.path.starts_with("/orders")),
        "a lookup happened with an expired session"
    );
    let records = world.records(r.run_id.as_deref().unwrap());
    assert!(records.iter().any(
        |rec| matches!(&rec.event, Event::RunFinished { status, .. } if status == "session_expired")
    ));
    assert!(!records
        .iter()
        .any(|rec| matches!(rec.event, Event::EvidenceCaptured { .. })));

    std::fs::remove_file(&session_path).unwrap();
    let r = world
        .run(&playbook("order-lookup"), &[("order_id", order)])
        .await;
    assert_eq!(r.status, RunStatus::SessionExpired);
    assert!(
        r.error
            .clone()
            .unwrap()
            .contains("no session for channel `sample`"),
        "{:?}",
        r.error
    );
}

/// A seller center answering 503 to the session check is failing, not logged out: the run
/// fails as transient (the daemon retries it) instead of ending `session_expired` (which
/// would pause the channel and ask someone to log in again), and nothing is looked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_seller_center_at_the_session_check_is_not_an_expired_session() {
    let world = World::new().await;
    world.center.fail_next_account_pages(1);
    world.center.clear_log();
    let order = &clerk::sample::orders()[3].id;
    let r = world
        .run(&playbook("order-lookup"), &[("order_id", order)])
        .await;
    assert_eq!(r.status, RunStatus::Failed, "{:?}", r.error);
    assert!(r.transient, "a 503 is worth a retry");
    let err = r.error.clone().unwrap();
    assert!(
        err.contains("answered 503") && !err.contains("expired"),
        "{err}"
    );
    assert!(r.screenshots.is_empty());
    assert!(
        !world
            .center
            .requests()
            .iter()
            .any(|q| q.path.starts_with("/orders")),
        "a lookup happened without a checked session"
    );
    // The next run finds the seller center well again and the session live.
    let r = world
        .run(&playbook("order-lookup"), &[("order_id", order)])
        .await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
}

/// Input values are percent-encoded into one path segment: they never change the path or
/// the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_values_never_change_path_or_host() {
    let world = World::new().await;
    let pb = world.playbook_from(
        "free",
        r##"name: free-lookup
version: "1"
description: order lookup without an input pattern
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders/{{order_id}}
  - wait_for: { selector: "#not-found" }
"##,
    );
    for value in ["../admin?x=1#", "a b/c", "ünï/cödé", "@evil.example"] {
        world.center.clear_log();
        let r = world.run(&pb, &[("order_id", value)]).await;
        assert_eq!(r.status, RunStatus::Ok, "{value}: {:?}", r.error);
        let paths: Vec<String> = world
            .center
            .requests()
            .iter()
            .filter(|q| q.path.starts_with("/orders/"))
            .map(|q| q.path.clone())
            .collect();
        assert_eq!(paths.len(), 1, "{value}: {paths:?}");
        let rest = &paths[0]["/orders/".len()..];
        assert!(
            !rest.contains('/') && !rest.contains('?') && !rest.contains('#'),
            "{value} -> {rest}"
        );
        assert!(world
            .center
            .requests()
            .iter()
            .all(|q| !q.path.starts_with("/admin")));
        assert!(world
            .center
            .requests()
            .iter()
            .all(|q| q.host.starts_with("127.0.0.1")));
    }
}

/// A step that times out fails the run, and no Chromium outlives the clerk process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_step_leaves_no_chromium_behind() {
    let world = World::new().await;
    let pb_path = world.data_dir().join("slow.yaml");
    std::fs::write(
        &pb_path,
        r##"name: never
version: "1"
description: waits for something that never appears
channel: sample
mode: read_only
steps:
  - goto: /orders
  - wait_for: { selector: "#never-there" }
    timeout: 1s
"##,
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["--as", "ops", "run"])
        .arg(&pb_path)
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("#never-there"), "{stdout}");
    let needle = tmp.path().to_string_lossy().to_string();
    for _ in 0..50 {
        if common::processes_with(&needle).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        common::processes_with(&needle).is_empty(),
        "chromium outlived clerk"
    );
}

/// `clerk login`: a login playbook with credentials from the environment writes a session
/// that the next read-only run uses; the password reaches neither the journal nor stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_playbook_writes_a_working_session() {
    let world = World::new().await;
    let channel = world.engine.config.channel("sample").unwrap().clone();
    let session_path = channel.session_path(world.data_dir());
    std::fs::remove_file(&session_path).unwrap();
    let login_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/login.yaml");
    let out = std::process::Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["--as", "ops", "-vv", "login", "sample", "--playbook"])
        .arg(&login_path)
        .env("SAMPLE_USER", "ops")
        .env("SAMPLE_PASSWORD", "ops-pass")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(session_path.is_file());
    assert!(!stdout.contains("ops-pass") && !stderr.contains("ops-pass"));
    let journal = std::fs::read_to_string(world.data_dir().join("journal.jsonl")).unwrap();
    assert!(!journal.contains("ops-pass"), "password in the journal");
    // The only write of the login run was the declared POST /login.
    let writes = world.center.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].path, "/login");
    let r = world
        .run(
            &playbook("order-lookup"),
            &[("order_id", &clerk::sample::orders()[4].id)],
        )
        .await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
}

/// Ctrl-C (SIGINT) mid-run: clerk exits 130, takes its Chromium with it, and the run it
/// left is marked interrupted at the next start with what it had recorded intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_reaps_chromium_and_the_run_is_marked_interrupted() {
    let world = World::new().await;
    let pb_path = world.data_dir().join("hang.yaml");
    std::fs::write(
        &pb_path,
        r##"name: hang
version: "1"
description: opens an order and waits for something that never appears
channel: sample
mode: read_only
steps:
  - goto: /orders/SO-100001
  - screenshot: { name: before-hang }
  - wait_for: { selector: "#never-there" }
    timeout: 60s
"##,
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let needle = tmp.path().to_string_lossy().to_string();
    let mut child = std::process::Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["--as", "ops", "run"])
        .arg(&pb_path)
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the screenshot is recorded: the run is then inside its long wait.
    let journal = world.data_dir().join("journal.jsonl");
    let mut waited = 0;
    while !std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .contains("\"type\":\"evidence_captured\"")
    {
        assert!(waited < 600, "the run never reached its screenshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert!(
        !common::processes_with(&needle).is_empty(),
        "no chromium was running"
    );
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("clerk did not exit after SIGINT");
    assert_eq!(status.code(), Some(130));
    for _ in 0..50 {
        if common::processes_with(&needle).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        common::processes_with(&needle).is_empty(),
        "chromium outlived clerk"
    );

    let out = std::process::Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["runs", "list", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["playbook"] == "hang")
        .expect("the run is listed");
    assert_eq!(run["status"], "interrupted", "{run}");
    assert_eq!(run["evidence"], 1, "{run}");
    let verify = std::process::Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["verify", "--all", "--no-index"])
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// Every read-only step kind against a real page: attribute and value extraction, the
/// three assertions, network idle, a click on a tab, and an element capture that is
/// exactly the element even when it lies below the fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_only_step_kind_works_and_element_captures_are_exact() {
    let world = World::new().await;
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.events.len() >= 3)
        .unwrap();
    let pb = world.playbook_from(
        "kinds",
        r##"name: kinds
version: "1"
description: every read-only step kind
channel: sample
mode: read_only
inputs:
  order_id: { type: string, pattern: '^SO-\d{6}$' }
steps:
  - goto: /orders?q={{order_id}}
  - wait_for: { network_idle: true }
  - extract: { field: link, selector: "tr.order-row a", attribute: href }
  - extract: { field: query, selector: "#search", from: value }
  - assert: { field: query, equals: "{{order_id}}" }
  - assert: { field: link, contains: "/orders/{{order_id}}" }
  - goto: /orders/{{order_id}}
  - click: "#tab-logistics"
  - wait_for: { selector: "ol#timeline" }
  - assert: { selector: "#latest-event", matches: "\\S" }
  - screenshot: { name: timeline, element: "ol#timeline" }
"##,
    );
    let r = world.run(&pb, &[("order_id", &order.id)]).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    assert_eq!(r.fields["query"], order.id);
    assert!(r.fields["link"].ends_with(&format!("/orders/{}", order.id)));
    let shot = &r.screenshots[0];
    let img = image::open(&shot.path).unwrap().to_rgba8();
    // The element's own size, measured in the same browser state.
    let (browser, tab, base_url) = world.browser().await;
    let url = base_url
        .join(&format!("orders/{}/tracking", order.id))
        .unwrap();
    tab.goto(&url, Duration::from_secs(10)).await.unwrap();
    let rect = tab
        .rect(&clerk::browser::Find::css("ol#timeline"))
        .await
        .unwrap()
        .unwrap();
    browser.close().await;
    assert_eq!(img.width(), rect.width.ceil() as u32, "{rect:?}");
    assert_eq!(img.height(), rect.height.ceil() as u32, "{rect:?}");
    assert!(!shot.blank);

    // A failing assertion fails the run and names what it saw.
    let bad = world.playbook_from(
        "bad-assert",
        r##"name: bad-assert
version: "1"
description: an assertion that does not hold
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders/{{order_id}}
  - extract: { field: status, selector: "#order-status" }
  - assert: { field: status, equals: "teleported" }
"##,
    );
    let r = world.run(&bad, &[("order_id", &order.id)]).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.unwrap();
    assert!(err.contains("assertion failed: field status is"), "{err}");
}
