//! Replay (issue 19): a recorded read-only run executed again with the same playbook text,
//! inputs and claims, in real headless Chromium against the sample seller center, and
//! compared with what was recorded (outcome, fields, case verdict, screenshot hashes).

use crate::common;

use std::process::Output;

use clerk::evidence::Event;
use common::{playbook, World};

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A copy of a shipped playbook with `from` replaced by `to`, written into the data
/// directory as `file`.
fn changed_playbook(world: &World, shipped: &str, from: &str, to: &str, file: &str) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("playbooks/{shipped}.yaml")),
    )
    .unwrap();
    assert!(text.contains(from), "{shipped}.yaml has no {from:?}");
    let path = world.data_dir().join(file);
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_reports_what_changed_on_the_page_and_in_the_playbook() {
    let world = World::new().await;
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.status == "delivered")
        .expect("a delivered order");
    let r = world
        .run_claims(
            &playbook("order-lookup"),
            &[("order_id", &order.id)],
            &[("customer", &order.customer)],
            None,
        )
        .await;
    assert_eq!(r.status, clerk::runner::RunStatus::Ok, "{:?}", r.error);
    let run = r.run_id.clone().unwrap();

    // The same page: the same fields, verdict and PNG bytes.
    let out = world.clerk("ops", &["replay", &run, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_eq!(v["same"], true, "{v:#}");
    let replay_run = v["replay_run_id"].as_str().unwrap().to_owned();
    assert_ne!(replay_run, run);
    let started = world
        .records(&replay_run)
        .into_iter()
        .find_map(|r| match r.event {
            Event::RunStarted {
                replay_of, claims, ..
            } => Some((replay_of, claims)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        started.0.as_deref(),
        Some(run.as_str()),
        "the replay names the run it replays"
    );
    assert_eq!(
        started.1.get("customer"),
        Some(&order.customer),
        "the claims are replayed"
    );
    assert_eq!(
        v["replay"]["screenshots"][0]["sha256"],
        serde_json::json!(r.screenshots[0].sha256),
        "equal pages give equal bytes"
    );

    // The seller center now shows another status: the field and the screenshot differ.
    world.center.set_misreport_status(true);
    let out = world.clerk("ops", &["replay", &run, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    let diffs = v["differences"].as_array().unwrap();
    let status = diffs
        .iter()
        .find(|d| d["what"] == "field" && d["name"] == "status")
        .unwrap_or_else(|| panic!("no status difference: {v:#}"));
    assert_eq!(status["recorded"], order.status.as_str());
    assert_eq!(status["replayed"], clerk::sample::MISREPORTED_STATUS);
    assert!(
        diffs
            .iter()
            .any(|d| d["what"] == "screenshot" && d["name"] == "order-page"),
        "{v:#}"
    );
    let text = world.clerk("ops", &["replay", &run]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("field status: recorded"), "{text}");
    world.center.set_misreport_status(false);

    // A changed playbook (one more field read), replayed on the recorded case.
    let changed = changed_playbook(&world, "order-lookup", "  - extract: { field: total, selector: \"#order-total\" }\n",
        "  - extract: { field: total, selector: \"#order-total\" }\n  - extract: { field: created, selector: \"#order-created\" }\n", "order-lookup-v2.yaml");
    let out = world.clerk("ops", &["replay", &run, "--json", "--playbook", &changed]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let diffs = v["differences"].as_array().unwrap();
    assert!(diffs.iter().any(|d| d["what"] == "playbook"), "{v:#}");
    let created = diffs
        .iter()
        .find(|d| d["what"] == "field" && d["name"] == "created")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(created["recorded"], serde_json::Value::Null);
    assert_eq!(created["replayed"], order.created.as_str());
    assert!(world.center.writes().is_empty());

    let out = world.clerk("ops", &["replay", "r-nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run r-nope"));
}

/// Offline replay of a server-rendered lookup: answered from the run's recorded documents,
/// with no session and the seller center changed meanwhile — the center receives nothing,
/// and the replay is the same as the recorded run (same fields, same PNG bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_replay_sends_nothing_and_needs_no_session() {
    let world = World::new().await;
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.status == "delivered")
        .expect("a delivered order");
    let r = world
        .run_claims(
            &playbook("order-lookup"),
            &[("order_id", &order.id)],
            &[("customer", &order.customer)],
            None,
        )
        .await;
    assert_eq!(r.status, clerk::runner::RunStatus::Ok, "{:?}", r.error);
    let run = r.run_id.clone().unwrap();

    // The center now says something else and the session is gone: offline, neither matters.
    world.center.set_misreport_status(true);
    let channel = world.engine.config.channel("sample").unwrap().clone();
    std::fs::remove_file(channel.session_path(world.data_dir())).unwrap();
    world.center.clear_log();
    let out = world.clerk("ops", &["replay", &run, "--offline", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["same"], true, "{v:#}");
    assert_eq!(v["offline"], true);
    // The order page's worker script was not kept by an ordinary run: failed, and said.
    assert!(
        v["unrecorded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u.as_str().unwrap().ends_with("/static/metrics-worker.js")),
        "{v:#}"
    );
    assert_eq!(v["replay"]["fields"]["status"], order.status.as_str());
    assert_eq!(
        v["replay"]["screenshots"][0]["sha256"],
        serde_json::json!(r.screenshots[0].sha256),
        "the recorded page gives the recorded bytes"
    );
    assert!(
        world.center.requests().is_empty(),
        "an offline replay reached the seller center: {:?}",
        world.center.requests()
    );

    // A changed playbook whose customer rule reads another element: offline, the verdict
    // changes (the case now conflicts) and so does the outcome.
    let changed = changed_playbook(
        &world,
        "order-lookup",
        "customer: { selector: \"#customer-name\", as: name, required: false }",
        "customer: { selector: \"#order-status\", as: name, required: false }",
        "order-lookup-v3.yaml",
    );
    let out = world.clerk(
        "ops",
        &[
            "replay",
            &run,
            "--offline",
            "--json",
            "--playbook",
            &changed,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let diffs = v["differences"].as_array().unwrap();
    let case = diffs
        .iter()
        .find(|d| d["what"] == "case")
        .unwrap_or_else(|| panic!("no verdict difference: {v:#}"));
    assert_eq!(case["recorded"], "matched");
    assert_eq!(case["replayed"], "conflict");
    assert!(
        diffs
            .iter()
            .any(|d| d["what"] == "status" && d["replayed"] == "needs_review"),
        "{v:#}"
    );
    assert!(world.center.requests().is_empty());

    // Online, the same replay sees the change (and without a session, says so).
    let out = world.clerk("ops", &["replay", &run, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["replay"]["status"], "session_expired", "{v:#}");
}

/// Replay samples of the single-page app (`clerk run --sample` keeps its scripts and style
/// sheets too), exported as bundles and replayed offline by `clerk test` against the
/// shipped playbook (passes) and a changed one (fails, per case, in JUnit XML too); a run
/// recorded without `--sample` cannot load the app offline, and a tampered bundle is
/// refused. The seller center receives nothing during any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerk_test_replays_spa_samples_offline_and_reports_changes_per_case() {
    let world = World::new().await;
    let spa =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/spa-order-lookup.yaml");
    let spa = spa.to_str().unwrap();
    let orders: Vec<_> = clerk::sample::orders()
        .iter()
        .filter(|o| o.tracking_no.is_some())
        .take(2)
        .cloned()
        .collect();
    let samples = world.data_dir().join("samples");
    let mut recorded = Vec::new();
    for (i, o) in orders.iter().enumerate() {
        let input = format!("order_id={}", o.id);
        let mut args = vec!["run", spa, "-i", &input, "--case", "CASE-SAMPLE", "--json"];
        if i == 0 {
            args.push("--sample");
        }
        let out = world.clerk("ops", &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let run = json(&out)["runs"][0]["run_id"].as_str().unwrap().to_owned();
        let dir = samples.join(if i == 0 { "a-sample" } else { "b-plain" });
        let out = world.clerk(
            "ops",
            &["export", "--run", &run, "--out", dir.to_str().unwrap()],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        recorded.push((run, dir));
    }
    // The sample kept the app's script and style sheet; the plain run did not.
    let kept = |run: &str| -> Vec<String> {
        world
            .records(run)
            .into_iter()
            .filter_map(|r| match r.event {
                Event::ResponseRecorded { url, .. } => Some(url),
                _ => None,
            })
            .collect()
    };
    assert!(kept(&recorded[0].0)
        .iter()
        .any(|u| u.ends_with("/app/app.js")));
    assert!(!kept(&recorded[1].0)
        .iter()
        .any(|u| u.ends_with("/app/app.js")));

    // Only the sample: the shipped playbook replays it the same, offline.
    let only = world.data_dir().join("only-sample");
    std::fs::create_dir_all(&only).unwrap();
    std::fs::rename(&recorded[1].1, only.join("b-plain")).unwrap();
    world.center.clear_log();
    let junit = world.data_dir().join("junit.xml");
    let out = world.clerk(
        "ops",
        &[
            "test",
            spa,
            "--samples",
            samples.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("same     {} (case CASE-SAMPLE)", recorded[0].0)),
        "{text}"
    );
    assert!(
        text.starts_with("same") && text.contains("passed: 1 same, 0 changed"),
        "{text}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("tests=\"1\" failures=\"0\" errors=\"0\""),
        "{xml}"
    );
    assert!(xml.contains(&recorded[0].0), "{xml}");
    assert!(
        world.center.requests().is_empty(),
        "clerk test reached the seller center: {:?}",
        world.center.requests()
    );

    // A changed playbook: the reference is read from another element.
    let changed = changed_playbook(
        &world,
        "spa-order-lookup",
        "- extract: { field: reference, selector: '[data-order-id=\"{{order_id}}\"] .ref' }",
        "- extract: { field: reference, testid: order-status }",
        "spa-order-lookup-v2.yaml",
    );
    let out = world.clerk(
        "ops",
        &[
            "test",
            &changed,
            "--samples",
            samples.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_eq!(v["changed"], 1, "{v:#}");
    let case = &v["cases"][0];
    assert_eq!(case["outcome"], "changed");
    let diff = case["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["what"] == "field" && d["name"] == "reference")
        .unwrap_or_else(|| panic!("no reference difference: {v:#}"));
    assert_eq!(
        diff["recorded"],
        clerk::sample::order_ref(&orders[0]).as_str()
    );
    assert_eq!(diff["replayed"], orders[0].status.as_str());
    assert!(
        !case["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["what"] == "playbook"),
        "the playbook change itself is what is tested: {v:#}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(
        xml.contains("<failure message=") && xml.contains("field reference: recorded"),
        "{xml}"
    );

    // The plain run back among the samples: offline it cannot load the app's script.
    std::fs::rename(only.join("b-plain"), &recorded[1].1).unwrap();
    let out = world.clerk(
        "ops",
        &[
            "test",
            spa,
            "--samples",
            samples.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let plain = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["run_id"] == recorded[1].0.as_str())
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(plain["outcome"], "changed", "{v:#}");
    assert!(
        plain["unrecorded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u.as_str().unwrap().ends_with("/app/app.js")),
        "{v:#}"
    );

    // A changed byte in the sample's recorded responses: the bundle is refused.
    let warc = std::fs::read_dir(recorded[0].1.join("warc"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&warc).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let mut perms = std::fs::metadata(&warc).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&warc, perms).unwrap();
    std::fs::write(&warc, bytes).unwrap();
    let out = world.clerk(
        "ops",
        &[
            "test",
            spa,
            "--samples",
            samples.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let bad = &v["cases"][0];
    assert_eq!(bad["outcome"], "error", "{v:#}");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("the sample was changed"),
        "{v:#}"
    );
    assert!(
        world.center.requests().is_empty(),
        "{:?}",
        world.center.requests()
    );
}

/// A draft replays to its held write (offline: nothing sent, no approval queued) and a
/// changed playbook shows how the write changes; a submitted run replays up to its submit
/// step, online, and sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_replays_to_its_held_write_and_a_changed_playbook_shows_the_write_change() {
    let world = World::new().await;
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.status == "delivered" && o.total_cents >= 3000)
        .expect("a delivered order");
    let pb = playbook("refund-draft");
    let inputs = [
        ("order_id", order.id.as_str()),
        ("amount", "12.00"),
        ("reason", "damaged"),
        ("note", "Box crushed"),
    ];
    let claims = [("customer", order.customer.as_str())];
    let d = world.run_claims(&pb, &inputs, &claims, None).await;
    assert_eq!(d.status, clerk::runner::RunStatus::Drafted, "{:?}", d.error);
    let run = d.run_id.clone().unwrap();
    let approval = d.approval_id.clone().unwrap();
    let requested = |world: &World| {
        world
            .engine
            .store
            .records()
            .unwrap()
            .into_iter()
            .filter(|r| matches!(r.event, Event::ApprovalRequested { .. }))
            .count()
    };
    let approvals = requested(&world);

    world.center.clear_log();
    let out = world.clerk("ops", &["replay", &run, "--offline", "--json"]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    // The held write, the form and the case are the same. (The screenshots may differ: the
    // sample refund form autosaves 300 ms after the last input, a timer no settle can see,
    // so whether "Autosave failed" shows in a capture depends on timing.)
    assert!(
        v["differences"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["what"] == "screenshot"),
        "{v:#}"
    );
    assert_eq!(v["replay"]["status"], "drafted");
    assert_eq!(v["replay"]["approval_id"], serde_json::Value::Null);
    assert!(
        world.center.requests().is_empty(),
        "{:?}",
        world.center.requests()
    );
    assert_eq!(
        requested(&world),
        approvals,
        "a replay queues nothing for review"
    );
    let held = world
        .records(v["replay_run_id"].as_str().unwrap())
        .into_iter()
        .find_map(|r| match r.event {
            Event::WriteHeld { draft_hash, .. } => Some(draft_hash),
            _ => None,
        })
        .expect("the replay recorded the write it held");
    let a = clerk::approval::load(&world.engine, &approval).unwrap();
    assert_eq!(
        held, a.request.draft_hash,
        "the same write as the one reviewed"
    );

    // A changed playbook writes another note: the write and the form differ.
    let changed = changed_playbook(
        &world,
        "refund-draft",
        "value: \"{{note}}\" }",
        "value: \"{{note}} (checked)\" }",
        "refund-draft-v2.yaml",
    );
    let out = world.clerk(
        "ops",
        &[
            "replay",
            &run,
            "--offline",
            "--json",
            "--playbook",
            &changed,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    let diffs = v["differences"].as_array().unwrap();
    assert!(
        diffs.iter().any(|d| d["what"] == "write"
            && d["name"]
                .as_str()
                .unwrap()
                .contains("Box crushed (checked)")),
        "{v:#}"
    );
    assert!(
        diffs
            .iter()
            .any(|d| d["what"] == "form" && d["replayed"] == "Box crushed (checked)"),
        "{v:#}"
    );
    assert!(
        world.center.requests().is_empty(),
        "{:?}",
        world.center.requests()
    );

    // Approved and sent; the submit run replays (online) up to its submit step, sending
    // nothing again.
    clerk::policy::decide(&world.engine, &approval, "carol", true, None).unwrap();
    let s = world
        .run_claims(&pb, &inputs, &claims, Some(&approval))
        .await;
    assert_eq!(s.status, clerk::runner::RunStatus::Ok, "{:?}", s.error);
    let refunds = world.center.refunds().len();
    world.center.clear_log();
    let out = world.clerk("ops", &["replay", s.run_id.as_deref().unwrap(), "--json"]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert!(
        v["differences"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["what"] == "screenshot"),
        "the same fields and write up to the submit step: {v:#}"
    );
    assert_eq!(
        world.center.refunds().len(),
        refunds,
        "the replay sent nothing"
    );
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
}

/// The single-page app's refund (React-controlled inputs, an ARIA combobox and switch, a
/// JSON `fetch` submit) recorded as a replay sample and replayed offline: the JSON the app
/// would send is held again, equal to the one queued for review, with nothing sent and no
/// seller center needed; a playbook writing another note changes that body field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_page_apps_draft_replays_offline_to_the_same_json_write() {
    let world = World::new().await;
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.status == "delivered" && o.total_cents >= 3000)
        .expect("a delivered order");
    let spa = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/spa-refund.yaml");
    let spa = spa.to_str().unwrap();
    let inputs = [
        format!("order_id={}", order.id),
        "amount=12.00".to_owned(),
        "reason=Item damaged".to_owned(),
        "method=store_credit".to_owned(),
        "note=Broken on arrival".to_owned(),
    ];
    let mut args = vec!["run", spa, "--sample", "--json"];
    for i in &inputs {
        args.extend(["-i", i.as_str()]);
    }
    let claim = format!("customer={}", order.customer);
    args.extend(["--claim", claim.as_str()]);
    let out = world.clerk("ops", &args);
    let v = json(&out);
    let run = &v["runs"][0];
    assert_eq!(run["status"], "drafted", "{v:#}");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let approval = run["approval_id"].as_str().unwrap().to_owned();
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );

    world.center.clear_log();
    let out = world.clerk("ops", &["replay", &run_id, "--offline", "--json"]);
    let v = json(&out);
    assert!(
        v["differences"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["what"] == "screenshot"),
        "the same JSON write, form and case: {v:#}"
    );
    assert_eq!(v["replay"]["status"], "drafted");
    let held = world
        .records(v["replay_run_id"].as_str().unwrap())
        .into_iter()
        .find_map(|r| match r.event {
            Event::WriteHeld { draft_hash, .. } => Some(draft_hash),
            _ => None,
        })
        .expect("the replay held the app's write");
    let a = clerk::approval::load(&world.engine, &approval).unwrap();
    assert_eq!(held, a.request.draft_hash);
    assert!(
        world.center.requests().is_empty(),
        "{:?}",
        world.center.requests()
    );

    let changed = changed_playbook(
        &world,
        "spa-refund",
        "value: \"{{note}}\" }",
        "value: \"{{note}} (v2)\" }",
        "spa-refund-v2.yaml",
    );
    let out = world.clerk(
        "ops",
        &[
            "replay",
            &run_id,
            "--offline",
            "--json",
            "--playbook",
            &changed,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert!(
        v["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["what"] == "write"
                && d["name"]
                    .as_str()
                    .unwrap()
                    .contains("Broken on arrival (v2)")),
        "{v:#}"
    );
    assert!(world.center.requests().is_empty());
}
