//! Rollback (issue 19): a submitted refund's compensating action (`undo: refund-cancel`),
//! drafted through the same ladder, linked to the run it undoes, in real headless Chromium
//! against the sample seller center: nothing is sent before a reviewer approves it, it is
//! sent once after, and the seller center's refund ends cancelled.

use crate::common;

use clerk::approval;
use clerk::evidence::Event;
use clerk::runner::RunStatus;
use common::{playbook, World};

/// Drafts, approves (carol) and submits (ops) a refund; returns the submit run's id and
/// the refund id the seller center gave it.
async fn submitted_refund(world: &World, nth: usize) -> (String, String) {
    let order = clerk::sample::orders()
        .iter()
        .filter(|o| o.status == "delivered" && o.total_cents >= 300)
        .nth(nth)
        .expect("a delivered order");
    let amount = format!(
        "{}.{:02}",
        order.total_cents / 300,
        order.total_cents / 3 % 100
    );
    let inputs = [
        ("order_id", order.id.as_str()),
        ("amount", amount.as_str()),
        ("reason", "damaged"),
        ("note", "Broken on arrival"),
    ];
    let pb = playbook("refund-draft");
    let draft = world
        .run_claims(&pb, &inputs, &[("customer", &order.customer)], None)
        .await;
    assert_eq!(draft.status, RunStatus::Drafted, "{:?}", draft.error);
    let id = draft.approval_id.unwrap();
    approval::decide(&world.engine, &id, "carol", true, None).unwrap();
    let sent = world.run_claims(&pb, &inputs, &[], Some(&id)).await;
    assert_eq!(sent.status, RunStatus::Ok, "{:?}", sent.error);
    let refund_id = sent.fields["refund_id"].clone();
    (sent.run_id.unwrap(), refund_id)
}

fn started(
    world: &World,
    run: &str,
) -> (
    Option<String>,
    Option<String>,
    std::collections::BTreeMap<String, String>,
) {
    world
        .records(run)
        .into_iter()
        .find_map(|r| match r.event {
            Event::RunStarted {
                rollback_of,
                case_ref,
                claims,
                ..
            } => Some((rollback_of, case_ref, claims)),
            _ => None,
        })
        .expect("run_started")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_refund_is_rolled_back_through_review_and_sent_once() {
    let world = World::new().await;
    let (run, refund_id) = submitted_refund(&world, 5).await;
    world.center.clear_log();

    let out = world.clerk(
        "ops",
        &[
            "rollback",
            &run,
            "--json",
            "-i",
            "reason=Customer kept the item",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["status"], "drafted", "{report:#}");
    assert_eq!(report["playbook"], "refund-cancel");
    assert_eq!(report["inputs"]["refund_id"], refund_id.as_str());
    assert!(
        world.center.writes().is_empty(),
        "a rollback draft sent something: {:?}",
        world.center.writes()
    );
    let rollback_run = report["run_id"].as_str().unwrap().to_owned();
    let (of, case, claims) = started(&world, &rollback_run);
    assert_eq!(
        of.as_deref(),
        Some(run.as_str()),
        "the journal links the rollback to the run"
    );
    assert_eq!(case.as_deref(), Some("CASE-MATCH"), "same case");
    assert!(
        claims.contains_key("customer"),
        "the case's claims (the draft's, carried by its submit) come along: {claims:?}"
    );
    let undo_id = report["approval_id"].as_str().unwrap().to_owned();

    // One rollback per write.
    let again = world.clerk("ops", &["rollback", &run]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already being rolled back"));

    // Approved by a reviewer, then sent once: the refund is cancelled.
    approval::decide(&world.engine, &undo_id, "carol", true, None).unwrap();
    let out = world.clerk("ops", &["submit", &undo_id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let cancels: Vec<_> = world
        .center
        .writes()
        .into_iter()
        .filter(|w| w.path.ends_with("/cancel"))
        .collect();
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    let refund = world
        .center
        .refunds()
        .into_iter()
        .find(|r| r.refund_id == refund_id)
        .unwrap();
    assert_eq!(refund.cancelled.as_deref(), Some("Customer kept the item"));

    // Only a sent write is rolled back; the rollback's own submit has no undo.
    let draft_run = world
        .engine
        .store
        .records()
        .unwrap()
        .into_iter()
        .find_map(|r| match r.event {
            Event::RunStarted { run_id, mode, .. } if mode == "draft" => Some(run_id),
            _ => None,
        })
        .unwrap();
    let out = world.clerk("ops", &["rollback", &draft_run]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a completed submit"));
    let cancel_submit = world
        .engine
        .store
        .records()
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::RunStarted {
                run_id,
                playbook,
                mode,
                ..
            } if playbook == "refund-cancel" && mode == "submit" => Some(run_id),
            _ => None,
        })
        .next_back()
        .unwrap();
    let out = world.clerk("ops", &["rollback", &cancel_submit]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("names no compensating playbook"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_drafts_a_rollback_from_the_console() {
    let world = World::with_config(|c| {
        let c = c.replacen("operators = [", "operators = [\"olga\", ", 1);
        format!(
            "{c}\n[[user]]\nname = \"carol\"\nrole = \"reviewer\"\n\n[[user]]\nname = \"olga\"\nrole = \"operator\"\n\n[[user]]\nname = \"audrey\"\nrole = \"auditor\"\n"
        )
    })
    .await;
    for u in ["carol", "olga", "audrey"] {
        clerk::users::set_password(
            world.data_dir(),
            &world.engine.config,
            u,
            &crate::console::password(u),
        )
        .unwrap();
    }
    let (run, _refund) = submitted_refund(&world, 6).await;
    let clock = crate::console::TestClock::default();
    let running = crate::console::start(&world, &clock).await;
    let port = running.addr.port();

    // An auditor sees no button and is refused (and the refusal recorded).
    let audrey = crate::console::login(port, "audrey").await;
    let page = crate::console::get(port, &format!("/runs/{run}"), Some(&audrey)).await;
    assert!(!page.body.contains("Draft rollback"));
    let token = crate::console::csrf(&page.body);
    let r = crate::console::post(
        port,
        &format!("/runs/{run}/rollback"),
        Some(&audrey),
        &[("csrf", token.as_str())],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(crate::console::refusals(&world, "audrey")
        .iter()
        .any(|(a, _)| a == "rollback"));

    let olga = crate::console::login(port, "olga").await;
    let page = crate::console::get(port, &format!("/runs/{run}"), Some(&olga)).await;
    assert!(page.body.contains("Draft rollback"), "{}", page.body);
    let token = crate::console::csrf(&page.body);
    world.center.clear_log();
    let r = crate::console::post(
        port,
        &format!("/runs/{run}/rollback"),
        Some(&olga),
        &[("csrf", token.as_str())],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    // The queued draft runs; its approval waits for a reviewer.
    let t = std::time::Instant::now();
    let rollback_run = loop {
        let found = world
            .engine
            .store
            .records()
            .unwrap()
            .into_iter()
            .find_map(|r| match r.event {
                Event::RunStarted {
                    run_id,
                    rollback_of: Some(of),
                    ..
                } if of == run => Some(run_id),
                _ => None,
            });
        if let Some(id) = found {
            if world
                .engine
                .store
                .run(&id)
                .unwrap()
                .and_then(|d| d.summary.finished_at)
                .is_some()
            {
                break id;
            }
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "the rollback draft never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let d = world.engine.store.run(&rollback_run).unwrap().unwrap();
    assert_eq!(d.summary.operator, "olga");
    assert_eq!(d.summary.status, "ok", "{:?}", d.error);
    let requested = d
        .records
        .iter()
        .any(|r| matches!(r.event, Event::ApprovalRequested { .. }));
    assert!(requested, "the rollback is a draft waiting for review");
    assert!(world.center.writes().is_empty());
    let page = crate::console::get(port, &format!("/runs/{rollback_run}"), Some(&olga)).await;
    assert!(page.body.contains("Rollback of"), "{}", page.body);
    // The case view shows the write and its rollback together.
    let case = crate::console::get(port, "/cases/CASE-MATCH", Some(&olga)).await;
    assert_eq!(case.status, 200);
    assert!(
        case.body.contains(&format!("rolling back run {run}")),
        "{}",
        case.body
    );
    assert!(case.body.contains("refund-cancel (draft)"), "{}", case.body);
    running.shutdown();
    running.wait().await.unwrap();
}
