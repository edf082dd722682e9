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
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/order-lookup.yaml"),
    )
    .unwrap()
    .replace(
        "  - extract: { field: total, selector: \"#order-total\" }\n",
        "  - extract: { field: total, selector: \"#order-total\" }\n  - extract: { field: created, selector: \"#order-created\" }\n",
    );
    let changed = world.data_dir().join("order-lookup-v2.yaml");
    std::fs::write(&changed, yaml).unwrap();
    let out = world.clerk(
        "ops",
        &[
            "replay",
            &run,
            "--json",
            "--playbook",
            changed.to_str().unwrap(),
        ],
    );
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

    // A run that writes is not replayed (and nothing is run).
    let note = world
        .run(
            &playbook("order-note"),
            &[("order_id", &order.id), ("note", "x"), ("tag", "vip")],
        )
        .await;
    let out = world.clerk("ops", &["replay", note.run_id.as_deref().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only runs only"));
    let out = world.clerk("ops", &["replay", "r-nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run r-nope"));
}
