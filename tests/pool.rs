//! The browser pool: runs share warm Chromium processes, each in its own browser context.
//! What one run leaves behind (cookies, localStorage, cache) is invisible to the next; each
//! request is attributed to the run whose context sent it, even when two runs share a
//! browser at the same moment; a request no run owns is failed; a Chromium killed mid-run
//! fails that run with the reason and the next run gets a new one; spent browsers are
//! recycled; nothing outlives the engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::browser::{Isolation, PoolConfig};
use clerk::evidence::Event;
use clerk::playbook::Playbook;
use clerk::runner::{RunReport, RunStatus};

use crate::common::World;

/// A world whose engine has its own pool with these settings.
async fn world_with_pool(config: PoolConfig) -> World {
    let mut world = World::new().await;
    world.engine = world.engine.clone().with_pool(config);
    world
}

fn pool(browsers: usize, isolation: Isolation, recycle_after: u32) -> PoolConfig {
    PoolConfig {
        browsers,
        isolation,
        recycle_after,
        ..PoolConfig::default()
    }
}

/// Visits the isolation probe twice (the second visit proves state does persist inside one
/// context), reading what the page saw each time.
fn probe_playbook(world: &World) -> Arc<Playbook> {
    world.playbook_from(
        "probe",
        r##"name: probe
version: "1"
description: what a page sees of earlier runs
channel: sample
mode: read_only
inputs:
  mark: { type: string }
  expect: { type: string }
steps:
  - goto: "/probe/isolation?mark={{mark}}"
  - wait_for: { selector: "#done" }
  - extract: { field: cookie, selector: "#cookie-seen" }
  - extract: { field: storage, selector: "#storage-seen" }
  - extract: { field: script, selector: "#cached-script" }
  - goto: "/probe/isolation?mark={{mark}}&again=1"
  - wait_for: { selector: "#done" }
  - extract: { field: cookie_again, selector: "#cookie-seen" }
  - extract: { field: storage_again, selector: "#storage-seen" }
  - assert: { field: script, equals: "{{expect}}" }
"##,
    )
}

async fn probe(world: &World, pb: &Arc<Playbook>, mark: &str, operator: &str) -> RunReport {
    world
        .run_as(pb, &[("mark", mark), ("expect", "ran")], operator, None)
        .await
}

/// How often a browser fetched the cacheable probe script.
fn cached_fetches(world: &World) -> usize {
    world
        .center
        .requests()
        .iter()
        .filter(|r| r.path == "/probe/cached.js")
        .count()
}

fn assert_saw(r: &RunReport, cookie: &str, storage: &str) {
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    assert_eq!(r.fields["cookie"], cookie, "cookie seen by {:?}", r.inputs);
    assert_eq!(
        r.fields["storage"], storage,
        "storage seen by {:?}",
        r.inputs
    );
    assert_eq!(r.fields["script"], "ran");
}

/// Run isolation: two runs in the same pooled Chromium, one after the other, do not see each
/// other's cookies, localStorage or cached files; inside one run they do persist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_one_pooled_browser_share_no_cookies_storage_or_cache() {
    let world = world_with_pool(pool(1, Isolation::Run, 100)).await;
    let pb = probe_playbook(&world);
    world.center.clear_log();

    let a = probe(&world, &pb, "alpha", "ops").await;
    assert_saw(&a, "none", "none");
    assert_eq!(a.fields["cookie_again"], "alpha", "state persists in a run");
    assert_eq!(a.fields["storage_again"], "alpha");
    assert_eq!(
        cached_fetches(&world),
        1,
        "the second visit of a run is served from its cache"
    );

    let b = probe(&world, &pb, "beta", "ops").await;
    assert_saw(&b, "none", "none");
    assert_eq!(b.fields["cookie_again"], "beta");
    assert_eq!(
        cached_fetches(&world),
        2,
        "a new run does not get the previous run's cache"
    );

    let stats = world.engine.pool.stats();
    assert_eq!(
        stats.launched, 1,
        "both runs used one warm Chromium: {stats:?}"
    );
    assert_eq!(stats.reused, 0);
    assert_eq!(stats.pids.len(), 1);
    let browsers = world.engine.pool.browsers();
    assert_eq!(browsers[0].contexts_opened(), 2, "one context per run");
    assert_eq!(browsers[0].contexts_open(), 0, "both disposed");
}

/// Batch isolation: the next successful read-only run with the same channel, playbook,
/// operator and session reuses the context (and sees what the site stored); another operator
/// does not, and neither does the run after a failed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_isolation_reuses_a_context_only_for_the_same_key_after_success() {
    let world = world_with_pool(pool(1, Isolation::Batch, 100)).await;
    let pb = probe_playbook(&world);
    world.center.clear_log();

    let a = probe(&world, &pb, "alpha", "ops").await;
    assert_saw(&a, "none", "none");
    let b = probe(&world, &pb, "beta", "ops").await;
    assert_saw(&b, "alpha", "alpha");
    assert_eq!(
        cached_fetches(&world),
        1,
        "the reused context keeps its cache"
    );
    assert_eq!(world.engine.pool.stats().reused, 1);

    // Another operator: a context of its own.
    let c = probe(&world, &pb, "gamma", "alice").await;
    assert_saw(&c, "none", "none");

    // A failed run (its assertion fails) gives up its context: the next run starts clean.
    let failed = world
        .run_as(&pb, &[("mark", "delta"), ("expect", "never")], "ops", None)
        .await;
    assert_eq!(failed.status, RunStatus::Failed, "{:?}", failed.error);
    assert_eq!(failed.fields["cookie"], "beta", "it reused the ops context");
    let e = probe(&world, &pb, "epsilon", "ops").await;
    assert_saw(&e, "none", "none");
    assert_eq!(world.engine.pool.stats().launched, 1);
}

/// Two runs in the same Chromium at the same moment: the page of one keeps POSTing, the
/// other only reads. Every blocked write is recorded in the writer's run, none in the
/// reader's, and nothing reaches the seller center.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_attributed_to_their_run_under_concurrency() {
    let world = world_with_pool(pool(1, Isolation::Run, 100)).await;
    let writer = world.playbook_from(
        "writer",
        r##"name: writer
version: "1"
description: a page that keeps writing
channel: sample
mode: read_only
steps:
  - goto: /probe/writer
  - wait_for: { selector: "#sent[data-n='12']" }
    timeout: 30s
  - screenshot: writer
"##,
    );
    let reader = probe_playbook(&world);
    world.center.clear_log();
    let (w, r) = tokio::join!(world.run(&writer, &[]), async {
        // Start the reader while the writer's page is writing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        probe(&world, &reader, "reader", "ops").await
    });
    assert_eq!(w.status, RunStatus::Ok, "{:?}", w.error);
    assert_saw(&r, "none", "none");
    let w_run = w.run_id.clone().expect("writer run id");
    let r_run = r.run_id.clone().expect("reader run id");
    let beacons = |run: &str| {
        world
            .blocked_urls(run)
            .iter()
            .filter(|(m, u)| m == "POST" && u.ends_with("/probe/beacon"))
            .count()
    };
    assert!(
        beacons(&w_run) >= 12,
        "the writer's run records its page's writes: {:?}",
        world.blocked_urls(&w_run)
    );
    assert_eq!(
        beacons(&r_run),
        0,
        "the reader's run records none of them: {:?}",
        world.blocked_urls(&r_run)
    );
    // The records name the writer's steps.
    let steps: Vec<Option<u64>> = world
        .records(&w_run)
        .into_iter()
        .filter_map(|rec| match rec.event {
            Event::RequestBlocked { url, step, .. } if url.ends_with("/probe/beacon") => Some(step),
            _ => None,
        })
        .collect();
    // Writes during a step name it (the page goes on writing after the last step too).
    assert!(steps.iter().any(Option::is_some), "{steps:?}");
    assert!(steps.iter().flatten().all(|s| *s < 3), "{steps:?}");
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    let stats = world.engine.pool.stats();
    assert_eq!(stats.launched, 1, "one Chromium served both: {stats:?}");
    assert!(world.engine.pool.browsers()[0]
        .unattributed_requests()
        .is_empty());
}

/// A page no run owns (in the browser's default context): its requests are failed, recorded
/// as unattributable, and never reach the seller center.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_run_owns_is_failed() {
    let world = world_with_pool(pool(1, Isolation::Run, 100)).await;
    let pb = probe_playbook(&world);
    assert_saw(&probe(&world, &pb, "one", "ops").await, "none", "none");
    let chromium = world.engine.pool.browsers().remove(0);
    world.center.clear_log();
    let url = world.center.base_url().join("/probe/writer").unwrap();
    chromium
        .open_page_outside_any_run(url.as_str())
        .await
        .expect("the page opens");
    let started = Instant::now();
    while !chromium
        .unattributed_requests()
        .iter()
        .any(|e| e.url.ends_with("/probe/writer") && e.blocked)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no unattributed request recorded: {:?}",
            chromium.unattributed_requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        world.center.requests().is_empty(),
        "a request no run owns reached the server: {:?}",
        world.center.requests()
    );
    // Runs still work next to it.
    assert_saw(&probe(&world, &pb, "two", "ops").await, "none", "none");
}

/// Killing the pooled Chromium in the middle of a run fails that run with the reason; the
/// next run gets a new browser; the killed one is reaped; nothing is left when the engine
/// goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_browser_fails_its_run_and_the_next_run_gets_a_new_one() {
    let world = world_with_pool(pool(1, Isolation::Run, 100)).await;
    let stuck = world.playbook_from(
        "stuck",
        r##"name: stuck
version: "1"
description: waits for something that never comes
channel: sample
mode: read_only
steps:
  - goto: /probe/writer
  - wait_for: { selector: "#never" }
    timeout: 60s
"##,
    );
    let engine = world.engine.clone();
    let running = tokio::spawn({
        let stuck = stuck.clone();
        async move {
            engine
                .run(clerk::runner::RunRequest {
                    playbook: stuck,
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
        }
    });
    // Wait until the run's page is writing, i.e. the run is inside its wait.
    let started = Instant::now();
    while !world
        .center
        .requests()
        .iter()
        .any(|r| r.path == "/probe/writer")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = world.engine.pool.stats().pids;
    assert_eq!(first.len(), 1);
    let victim = first[0];
    // SAFETY: plain syscall on the Chromium the pool started.
    unsafe {
        libc::kill(victim, libc::SIGKILL);
    }
    let report = running
        .await
        .expect("the run task")
        .expect("the engine reports the run");
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("Chromium (pid {victim})")),
        "the failure names the browser: {error}"
    );
    assert!(
        error.contains("exited during the run") || error.contains("stopped answering"),
        "{error}"
    );
    let finished = world
        .records(report.run_id.as_deref().expect("run id"))
        .into_iter()
        .any(|r| matches!(r.event, Event::RunFinished { ref status, .. } if status == "failed"));
    assert!(finished, "the run is recorded as failed");

    let pb = probe_playbook(&world);
    assert_saw(&probe(&world, &pb, "after", "ops").await, "none", "none");
    let stats = world.engine.pool.stats();
    assert_eq!(stats.launched, 2, "{stats:?}");
    assert_eq!(stats.replaced, 1, "{stats:?}");
    assert!(!stats.pids.contains(&victim));
    assert!(
        !alive(victim),
        "the killed Chromium was reaped (no zombie left)"
    );
    let pids = stats.pids.clone();
    drop(world);
    for pid in pids {
        assert!(!alive(pid), "chromium {pid} outlived the engine");
    }
}

/// A browser that has opened `recycle_after` contexts takes no more and is killed when its
/// last run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_browser_is_recycled() {
    let world = world_with_pool(pool(1, Isolation::Run, 2)).await;
    let pb = probe_playbook(&world);
    let mut pids = Vec::new();
    for mark in ["r1", "r2", "r3"] {
        assert_saw(&probe(&world, &pb, mark, "ops").await, "none", "none");
        pids.push(world.engine.pool.stats().pids);
    }
    let stats = world.engine.pool.stats();
    assert_eq!(stats.launched, 2, "{stats:?}");
    assert_eq!(stats.recycled, 1, "{stats:?}");
    // The first Chromium served two runs and was retired when the second ended.
    assert_eq!(pids[0].len(), 1);
    assert!(pids[1].is_empty(), "{pids:?}");
    assert!(!alive(pids[0][0]), "the spent one is gone");
    assert_eq!(pids[2].len(), 1);
    assert_ne!(pids[0], pids[2]);
}

/// A live (not zombie) process with this pid.
fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && stat.split_whitespace().nth(2) != Some("Z")
}

/// Batch isolation in a long batch: a kept context serves at most `context_runs` runs (the
/// next run starts in a fresh context, with the session), and a Chromium is recycled after
/// `recycle_after` runs, kept contexts' runs included — so neither grows without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_batch_recycles_its_context_and_its_browser() {
    let world = world_with_pool(PoolConfig {
        browsers: 1,
        isolation: Isolation::Batch,
        recycle_after: 5,
        context_runs: 2,
        ..PoolConfig::default()
    })
    .await;
    let pb = probe_playbook(&world);
    let marks = ["m1", "m2", "m3", "m4", "m5", "m6"];
    let mut seen = Vec::new();
    for mark in marks {
        let r = probe(&world, &pb, mark, "ops").await;
        assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
        seen.push(r.fields["cookie"].clone());
    }
    // Runs 1, 3 and 5 start in a fresh context (they see no earlier cookie), 2 and 4 reuse
    // the one before; the fifth run spent the first Chromium (two of its five runs were in
    // kept contexts), so the sixth starts in a new one.
    assert_eq!(
        seen,
        ["none", "m1", "none", "m3", "none", "none"],
        "{seen:?}"
    );
    let stats = world.engine.pool.stats();
    assert_eq!(stats.reused, 2, "{stats:?}");
    assert_eq!(stats.contexts_recycled, 2, "{stats:?}");
    assert_eq!(stats.launched, 2, "{stats:?}");
    assert_eq!(stats.recycled, 1, "{stats:?}");
}
