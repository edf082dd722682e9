//! The emergency pause: no new run, in-flight runs stop before their next step, every write
//! of an open browser context is failed from the moment it flips, across processes too.
//!
//! Runs are held in the middle of a wait step by the sample seller center's gate pages
//! (`/probe/gate?name=K` shows `#open` once the test opens `K`), so "in flight" is a fact the
//! server's request log proves, not a matter of timing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::evidence::record::parse_line;
use clerk::evidence::verify::{verify_store, Scope};
use clerk::evidence::{Event, Record};
use clerk::pause::{PauseError, PauseScope, PAUSE_FILE};
use clerk::playbook::Playbook;
use clerk::runner::{Engine, RunReport, RunRequest, RunStatus};

use crate::common::{clerk_bin, inputs, World};

/// Waits until `done` holds (polling; the limit only turns a hang into a failure).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn gated(world: &World, write: bool) -> Arc<Playbook> {
    let extra = if write { "&write=1" } else { "" };
    world.playbook_from(
        if write { "gated-writer" } else { "gated" },
        &format!(
            r##"name: {name}
version: "1"
description: waits at a gate the test opens
channel: sample
mode: read_only
inputs:
  gate: {{ type: string }}
steps:
  - goto: "/probe/gate?name={{{{gate}}}}{extra}"
  - wait_for: {{ selector: "#open" }}
    timeout: 90s
  - extract: {{ field: status, selector: "#status" }}
  - assert: {{ field: status, equals: "open" }}
"##,
            name = if write { "gated-writer" } else { "gated" }
        ),
    )
}

fn request(pb: &Arc<Playbook>, gate: &str) -> RunRequest {
    RunRequest {
        playbook: pb.clone(),
        inputs: inputs(&[("gate", gate)]),
        operator: "ops".into(),
        case_ref: None,
        batch_id: None,
        approval: None,
        claims: Default::default(),
        replay_of: None,
        rollback_of: None,
        offline: None,
        sample: false,
    }
}

fn spawn_run(
    engine: &Engine,
    pb: &Arc<Playbook>,
    gate: &str,
) -> tokio::task::JoinHandle<RunReport> {
    let engine = engine.clone();
    let req = request(pb, gate);
    tokio::spawn(async move { engine.run(req).await.expect("engine runs") })
}

/// The page of gate `name` is loaded and polling: its run is inside the wait step.
fn polling(world: &World, name: &str) -> bool {
    world
        .center
        .requests()
        .iter()
        .any(|r| r.path == "/probe/gate-state" && r.query.contains(&format!("name={name}&")))
}

/// How many runs have finished their first step (the `goto`): they are in the wait step.
fn past_goto(world: &World) -> usize {
    journal(world)
        .iter()
        .filter(|r| matches!(r.event, Event::StepFinished { step: 0, .. }))
        .count()
}

/// Every record of the journal, in order.
fn journal(world: &World) -> Vec<Record> {
    let bytes = std::fs::read(world.data_dir().join("journal.jsonl")).unwrap();
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| parse_line(l).unwrap().record)
        .collect()
}

fn record_at(world: &World, seq: u64) -> Record {
    journal(world)
        .into_iter()
        .find(|r| r.seq == seq)
        .expect("record")
}

fn started_seq(world: &World, run_id: &str) -> u64 {
    world
        .records(run_id)
        .iter()
        .find(|r| matches!(r.event, Event::RunStarted { .. }))
        .map(|r| r.seq)
        .expect("RunStarted")
}

fn sample() -> PauseScope {
    PauseScope::Channel("sample".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_during_a_batch_stops_new_and_in_flight_runs_and_resume_finishes_the_work() {
    let world = World::new().await;
    let engine = world.engine.clone();
    let pb = gated(&world, false);
    let inflight: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|g| spawn_run(&engine, &pb, g))
        .collect();
    until("three runs wait at their gates", || {
        ["a", "b", "c"].iter().all(|g| polling(&world, g)) && past_goto(&world) == 3
    })
    .await;

    // Two more runs start while the pause is being recorded: each either started before
    // the pause record or not at all.
    let racing: Vec<_> = ["d", "e"]
        .iter()
        .map(|g| spawn_run(&engine, &pb, g))
        .collect();
    let changed = engine
        .pause
        .pause(sample(), "alice", "refund spike", (engine.clock)())
        .await
        .expect("alice may pause");
    let pause_seq = changed.seq;
    let info = engine.pause.is_paused("sample").expect("sample is paused");
    assert_eq!(
        (info.user.as_str(), info.reason.as_str()),
        ("alice", "refund spike")
    );
    assert_eq!(engine.pause.is_paused("other"), None, "only one channel");

    // A run asked for after the pause does not start and opens no browser.
    let late = engine.run(request(&pb, "f")).await.unwrap();
    assert_eq!(late.status, RunStatus::Paused);
    assert_eq!(late.run_id, None);
    let msg = late.error.clone().unwrap();
    assert!(
        msg.starts_with(&format!(
            "paused by alice since {}: refund spike",
            changed.at
        )),
        "{msg}"
    );
    assert!(!polling(&world, "f"), "no page of the refused run");

    // Let every page past its wait: each run stops before its next step.
    for g in ["a", "b", "c", "d", "e"] {
        world.center.open_gate(g);
    }
    let mut reports = Vec::new();
    for h in inflight.into_iter().chain(racing) {
        reports.push(h.await.unwrap());
    }
    for r in &reports {
        assert_eq!(r.status, RunStatus::Paused, "{:?}", r.error);
        let e = r.error.clone().unwrap();
        assert!(
            e.contains("paused by alice") && e.contains("refund spike"),
            "{e}"
        );
    }
    let records = journal(&world);
    // No run started after the pause record.
    for r in &records {
        if let Event::RunStarted { run_id, .. } = &r.event {
            assert!(
                r.seq < pause_seq,
                "{run_id} started (seq {}) after the pause (seq {pause_seq})",
                r.seq
            );
        }
    }
    for r in &reports {
        let Some(run_id) = &r.run_id else {
            continue; // a racing run refused at start
        };
        let run = world.records(run_id);
        // At most the step in flight at the pause finished after it; nothing after it.
        let steps_after = run
            .iter()
            .filter(|x| x.seq > pause_seq && matches!(x.event, Event::StepFinished { .. }))
            .count();
        assert!(
            steps_after <= 1,
            "{run_id}: {steps_after} steps after the pause"
        );
        let finished = run.last().unwrap();
        match &finished.event {
            Event::RunFinished { status, error, .. } => {
                assert_eq!(status, "paused");
                assert!(error.as_deref().unwrap().contains("stopped before step"));
            }
            other => panic!("last record {other:?}"),
        }
    }
    // a, b and c were in their wait step: it finished, and the run stopped before step 3.
    for r in &reports[..3] {
        assert!(r.run_id.is_some());
        let e = r.error.clone().unwrap();
        assert!(e.ends_with("stopped before step 3 \"extract 3\""), "{e}");
    }
    // Runs refused by the pause are recorded with who and why.
    let refused: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(&r.event, Event::Refused { reason, .. } if reason.starts_with("paused by alice since")))
        .collect();
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|r| r.seq > pause_seq));

    // Resume (a reviewer may), then the remaining work completes.
    let resumed = engine
        .pause
        .resume(sample(), "carol", "spike explained", (engine.clock)())
        .await
        .expect("carol may resume");
    assert_eq!(engine.pause.is_paused("sample"), None);
    let mut redo = Vec::new();
    for g in ["a", "b", "c", "d", "e", "f"] {
        world.center.open_gate(g);
        redo.push(spawn_run(&engine, &pb, g));
    }
    for h in redo {
        let r = h.await.unwrap();
        assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
        assert!(started_seq(&world, r.run_id.as_ref().unwrap()) > resumed.seq);
    }
    let report = verify_store(&world.engine.store, &Scope::All).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_script_that_posts_after_the_pause_is_blocked() {
    // The channel lets the beacon out in read-only mode, so before the pause the page's
    // writes do reach the server.
    let world = World::with_config(|c| {
        let base = c
            .split("base_url = \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        c.replace(
            "approval_ttl_hours = 24",
            &format!(
                "approval_ttl_hours = 24\nread_only_exceptions = [{{ method = \"POST\", url = \"{base}/probe/beacon\" }}]"
            ),
        )
    })
    .await;
    let engine = world.engine.clone();
    let pb = gated(&world, true);
    let run = spawn_run(&engine, &pb, "w");
    let beacons = |world: &World| {
        world
            .center
            .writes()
            .into_iter()
            .filter(|r| r.path == "/probe/beacon")
            .collect::<Vec<_>>()
    };
    until(
        "the page's writes reach the server in the wait step",
        || beacons(&world).len() >= 2 && past_goto(&world) == 1,
    )
    .await;

    // A global pause, by an operator.
    let changed = engine
        .pause
        .pause(
            PauseScope::Global,
            "ops",
            "suspicious writes",
            (engine.clock)(),
        )
        .await
        .unwrap();
    let pause_ts = record_at(&world, changed.seq).ts;
    // The page keeps trying: wait until it reported three failed writes after the pause.
    until("the page saw its writes fail", || {
        world.center.requests().iter().any(|r| {
            r.path == "/probe/gate-state"
                && r.at > pause_ts
                && r.query
                    .split("failed=")
                    .nth(1)
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n >= 3)
        })
    })
    .await;
    world.center.open_gate("w");
    let report = run.await.unwrap();
    assert_eq!(report.status, RunStatus::Paused, "{:?}", report.error);

    // The seller center logged zero writes after the pause record's time.
    let after: Vec<_> = beacons(&world)
        .into_iter()
        .filter(|r| r.at > pause_ts)
        .collect();
    assert!(
        after.is_empty(),
        "writes after the pause ({pause_ts}): {after:?}"
    );
    assert!(world.center.writes().iter().all(|w| w.at <= pause_ts));
    // The guard recorded them as blocked, reason "paused"; before, as allowed.
    let run_id = report.run_id.clone().unwrap();
    let records = world.records(&run_id);
    let blocked = records
        .iter()
        .filter(|r| {
            matches!(&r.event, Event::RequestBlocked { method, url, reason, .. }
                if method == "POST" && url.ends_with("/probe/beacon") && reason == "paused")
        })
        .count();
    assert!(blocked >= 3, "{blocked} paused writes recorded");
    assert!(records.iter().any(|r| matches!(&r.event,
        Event::RequestAllowed { url, .. } if url.ends_with("/probe/beacon"))));

    engine
        .pause
        .resume(PauseScope::Global, "ops", "false alarm", (engine.clock)())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_made_by_clerk_pause_in_another_process_stops_a_run_before_its_next_step() {
    let world = World::new().await;
    let engine = world.engine.clone();
    let pb = gated(&world, false);
    let run = spawn_run(&engine, &pb, "x");
    until("the run waits at its gate", || {
        polling(&world, "x") && past_goto(&world) == 1
    })
    .await;

    let clerk = |args: &[&str]| {
        std::process::Command::new(clerk_bin())
            .arg("--data-dir")
            .arg(world.data_dir())
            .args(args)
            .output()
            .unwrap()
    };
    let out = clerk(&[
        "--as",
        "alice",
        "pause",
        "--channel",
        "sample",
        "--reason",
        "carrier outage",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("paused channel sample by alice"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PAUSED channel sample: by alice since"),
        "{stdout}"
    );
    assert!(world.data_dir().join(PAUSE_FILE).exists());

    // The other process's pause stops this engine's run before its next step.
    world.center.open_gate("x");
    let report = run.await.unwrap();
    assert_eq!(report.status, RunStatus::Paused, "{:?}", report.error);
    assert!(report.error.unwrap().contains("carrier outage"));
    // The watcher flipped this engine's guard switch as well.
    until("the watcher sees the pause", || {
        engine.pause.switch("sample").is_on()
    })
    .await;

    // Someone unknown may not resume; alice may, from the other process too.
    let out = clerk(&[
        "--as",
        "mallory",
        "resume",
        "--channel",
        "sample",
        "--reason",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mallory"));
    let out = clerk(&[
        "--as",
        "alice",
        "resume",
        "--channel",
        "sample",
        "--reason",
        "carrier back",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing is paused"));
    until("the watcher sees the resume", || {
        !engine.pause.switch("sample").is_on()
    })
    .await;
    let again = engine.run(request(&pb, "x")).await.unwrap();
    assert_eq!(again.status, RunStatus::Ok, "{:?}", again.error);
}

#[tokio::test]
async fn pause_by_an_unknown_user_is_refused_and_records_carry_who_why_when_where() {
    let world = World::new().await;
    let engine = world.engine.clone();
    let now = (engine.clock)();
    let refused = engine
        .pause
        .pause(PauseScope::Global, "mallory", "because", now)
        .await;
    assert!(
        matches!(&refused, Err(PauseError::Unauthorized { user, .. }) if user == "mallory"),
        "{:?}",
        refused.err()
    );
    assert!(engine.pause.is_paused("sample").is_none());
    assert!(!engine.pause.switch("sample").is_on());
    let blank = engine.pause.pause(sample(), "alice", "  ", now).await;
    assert!(matches!(blank, Err(PauseError::NoReason(_))));
    let unknown = engine
        .pause
        .pause(PauseScope::Channel("nope".into()), "alice", "x", now)
        .await;
    assert!(matches!(unknown, Err(PauseError::UnknownChannel { .. })));
    let not_paused = engine.pause.resume(sample(), "alice", "x", now).await;
    assert!(matches!(not_paused, Err(PauseError::NotPaused(_))));

    let p = engine
        .pause
        .pause(sample(), "carol", "audit", now)
        .await
        .unwrap();
    let g = engine
        .pause
        .pause(PauseScope::Global, "alice", "all stop", now)
        .await
        .unwrap();
    // Resuming the channel leaves it stopped by the global pause.
    let r = engine
        .pause
        .resume(sample(), "carol", "audit done", now)
        .await
        .unwrap();
    assert_eq!(
        engine.pause.is_paused("sample").map(|i| i.channel),
        Some(None)
    );
    let state = engine.pause.state();
    assert!(state.channels.is_empty() && state.global.is_some());

    let records = journal(&world);
    let at = clerk::evidence::timestamp(now);
    let pauses: Vec<(u64, bool, String, String, String, Option<String>)> = records
        .iter()
        .filter_map(|rec| match &rec.event {
            Event::Pause {
                on,
                user,
                reason,
                at,
                channel,
            } => Some((
                rec.seq,
                *on,
                user.clone(),
                reason.clone(),
                at.clone(),
                channel.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        pauses,
        vec![
            (
                p.seq,
                true,
                "carol".into(),
                "audit".into(),
                at.clone(),
                Some("sample".into())
            ),
            (
                g.seq,
                true,
                "alice".into(),
                "all stop".into(),
                at.clone(),
                None
            ),
            (
                r.seq,
                false,
                "carol".into(),
                "audit done".into(),
                at.clone(),
                Some("sample".into())
            ),
        ]
    );
    // The global record's line has no `channel` key at all.
    let line = std::fs::read_to_string(world.data_dir().join("journal.jsonl")).unwrap();
    let global_line = line.lines().find(|l| l.contains("all stop")).unwrap();
    assert!(!global_line.contains("\"channel\""), "{global_line}");
    assert!(records.iter().any(|rec| matches!(&rec.event,
        Event::Refused { action, user, .. } if action == "pause" && user == "mallory")));
    // A new engine on the same data directory folds the same state from the journal.
    let store = clerk::evidence::Store::open(world.data_dir()).unwrap();
    let board =
        clerk::pause::PauseBoard::open(&store, engine.config.clone(), world.data_dir()).unwrap();
    assert_eq!(board.state(), engine.pause.state());
    let report = verify_store(&world.engine.store, &Scope::All).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_takes_effect_while_the_browser_hangs() {
    let world = World::new().await;
    let engine = world.engine.clone();
    let pb = gated(&world, false);
    let run = spawn_run(&engine, &pb, "h");
    until("the run waits at its gate", || {
        polling(&world, "h") && past_goto(&world) == 1
    })
    .await;
    // Freeze every Chromium process of the pool: no CDP call can be answered now.
    let pids = engine.pool.stats().pids;
    assert!(!pids.is_empty());
    let signal = |sig: libc::c_int| {
        for pid in &pids {
            // SAFETY: plain kill(2) on the process group of a Chromium this test's pool owns.
            assert_eq!(unsafe { libc::kill(-*pid, sig) }, 0);
        }
    };
    signal(libc::SIGSTOP);
    let paused = engine
        .pause
        .pause(
            PauseScope::Global,
            "alice",
            "browser stuck",
            (engine.clock)(),
        )
        .await;
    let switch_on = engine.pause.switch("sample").is_on();
    signal(libc::SIGCONT);
    let changed = paused.expect("the pause does not wait for the browser");
    assert!(
        switch_on,
        "the guard's switch closed while the browser was frozen"
    );
    assert_eq!(
        record_at(&world, changed.seq).event,
        Event::Pause {
            on: true,
            user: "alice".into(),
            reason: "browser stuck".into(),
            at: changed.at.clone(),
            channel: None,
        }
    );
    world.center.open_gate("h");
    let report = run.await.unwrap();
    assert_eq!(report.status, RunStatus::Paused, "{:?}", report.error);
}
