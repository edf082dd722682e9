//! Process-level tests of the evidence store, driven by real read-only batches of the
//! `clerk` binary against the sample seller center: SIGKILL mid-batch, a deleted index,
//! two batches writing one data directory at once, and readers next to a running batch.
//!
//! These tests do not use `common::World`, because a `World` keeps a store open in the test
//! process; here every store belongs to a `clerk` child process, as in production.
//!
//! Each `clerk` child gets its own `TMPDIR`: Chromium profiles are created under it, so the
//! processes whose command line mentions that directory are exactly this test's browsers.
//!
//! Run with `cargo test --test crash -- --test-threads 1` (each test drives real Chromium).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clerk::channel::Config;
use clerk::sample::{SampleCenter, SampleOptions};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long a whole batch may take before a test gives up on it.
const BATCH_TIMEOUT: Duration = Duration::from_secs(240);

/// One test's surroundings: a sample seller center, a data directory with the demo config
/// and a live session for `ops`, and a private TMPDIR for the clerk processes.
struct Setup {
    center: SampleCenter,
    data: tempfile::TempDir,
    tmp: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let center = SampleCenter::start(SampleOptions {
            port: 0,
            secret: None,
        })
        .await
        .expect("sample seller center starts");
        let data = tempfile::Builder::new()
            .prefix("clerk-crash-data-")
            .tempdir()
            .expect("data dir");
        let tmp = tempfile::Builder::new()
            .prefix("clerk-crash-tmp-")
            .tempdir()
            .expect("tmp dir");
        let config_path = data.path().join("clerk.toml");
        std::fs::write(
            &config_path,
            clerk::sample::demo_config(center.port(), "ops"),
        )
        .expect("write clerk.toml");
        let config = Config::load(&config_path).expect("demo config loads");
        let session_path = config
            .channel("sample")
            .expect("demo config has channel sample")
            .session_path(data.path());
        center
            .storage_state("ops", Duration::from_secs(3600))
            .save(&session_path)
            .expect("save session");
        Setup { center, data, tmp }
    }

    fn data_dir(&self) -> PathBuf {
        self.data.path().to_owned()
    }

    fn tmp_dir(&self) -> PathBuf {
        self.tmp.path().to_owned()
    }

    /// Writes an inputs CSV (header `order_id`) with `count` sample orders from `skip` on.
    fn orders_csv(&self, name: &str, skip: usize, count: usize) -> PathBuf {
        let mut text = String::from("order_id\n");
        let orders = clerk::sample::orders();
        assert!(orders.len() >= skip + count, "not enough sample orders");
        for o in orders.iter().skip(skip).take(count) {
            text.push_str(&o.id);
            text.push('\n');
        }
        let path = self.data.path().join(name);
        std::fs::write(&path, text).expect("write orders csv");
        path
    }
}

/// The `order-lookup` playbook shipped in the repository.
fn order_lookup() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/order-lookup.yaml")
}

/// A `clerk` command on data directory `data` with `TMPDIR=tmp`.
fn clerk_cmd(data: &Path, tmp: &Path) -> Command {
    let mut cmd = Command::new(common::clerk_bin());
    cmd.arg("--data-dir")
        .arg(data)
        .env("TMPDIR", tmp)
        .env_remove("CLERK_DATA_DIR")
        .env_remove("CLERK_USER")
        .env_remove("CLERK_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs a short clerk command to completion.
fn clerk(data: &Path, tmp: &Path, args: &[&str]) -> Output {
    clerk_cmd(data, tmp)
        .args(args)
        .output()
        .expect("clerk starts")
}

/// A running `clerk run ... --json` batch; stdout and stderr go to files (a full pipe that
/// nobody reads would stall clerk).
struct Batch {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Batch {
    fn start(data: &Path, tmp: &Path, inputs: &Path, jobs: usize, label: &str) -> Batch {
        let stdout = tmp.join(format!("{label}.stdout"));
        let stderr = tmp.join(format!("{label}.stderr"));
        let child = clerk_cmd(data, tmp)
            .args(["--as", "ops", "run"])
            .arg(order_lookup())
            .arg("--inputs")
            .arg(inputs)
            .args(["--jobs", &jobs.to_string(), "--json"])
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("clerk run starts");
        Batch {
            child,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the batch to end (killing it after [`BATCH_TIMEOUT`]); returns its exit
    /// code and its `--json` report.
    fn finish(mut self) -> (Option<i32>, Value) {
        let deadline = Instant::now() + BATCH_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "batch did not finish in {BATCH_TIMEOUT:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "batch printed no JSON report ({e}); exit {status}; stdout:\n{text}\nstderr:\n{}",
                self.stderr()
            )
        });
        (status.code(), report)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // A failing assertion must not leave a clerk (and its browsers) running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The journal's bytes up to and including its last newline (complete records only).
fn journal_complete(data: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(data.join("journal.jsonl")).unwrap_or_default();
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(end);
    bytes
}

fn count_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// Every complete journal line, parsed.
fn journal_records(data: &Path) -> Vec<Value> {
    let bytes = journal_complete(data);
    let text = String::from_utf8(bytes).expect("journal is UTF-8");
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("journal line {} is not JSON ({e}): {line}", i + 1))
        })
        .collect()
}

fn event_type(record: &Value) -> &str {
    record["event"]["type"].as_str().unwrap_or("")
}

fn event_str<'a>(record: &'a Value, key: &str) -> &'a str {
    record["event"][key].as_str().unwrap_or("")
}

/// Runs started in the journal, with their final status as the records say: the status of
/// `run_finished`, `interrupted` for `run_interrupted`, `None` while still open.
fn run_states(records: &[Value]) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for r in records {
        let id = event_str(r, "run_id").to_owned();
        match event_type(r) {
            "run_started" => {
                out.insert(id, None);
            }
            "run_finished" => {
                out.insert(id, Some(event_str(r, "status").to_owned()));
            }
            "run_interrupted" => {
                out.insert(id, Some("interrupted".to_owned()));
            }
            _ => {}
        }
    }
    out
}

/// Asserts the chain shape: seq 1..N without gaps, each `prev` the previous `hash`.
fn assert_contiguous_chain(records: &[Value]) {
    assert!(!records.is_empty(), "journal is empty");
    let mut prev = "0".repeat(64);
    for (i, r) in records.iter().enumerate() {
        let seq = r["seq"].as_u64().expect("seq is an integer");
        assert_eq!(seq, i as u64 + 1, "seq gap or duplicate at line {}", i + 1);
        assert_eq!(
            r["prev"].as_str(),
            Some(prev.as_str()),
            "record {seq} does not chain to record {}",
            seq - 1
        );
        prev = r["hash"].as_str().expect("hash is a string").to_owned();
        assert_eq!(prev.len(), 64, "record {seq} hash is not SHA-256 hex");
    }
}

/// Asserts every `evidence_captured` record's PNG exists and hashes to its name.
/// Returns how many screenshots were checked.
fn assert_screenshots_match(data: &Path, records: &[Value]) -> usize {
    let mut checked = 0;
    for r in records
        .iter()
        .filter(|r| event_type(r) == "evidence_captured")
    {
        let sha = event_str(r, "sha256");
        let path = data.join("screenshots").join(format!("{sha}.png"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "record {} references {} which cannot be read: {e}",
                r["seq"],
                path.display()
            )
        });
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            sha,
            "{} does not hash to its name",
            path.display()
        );
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            path.display()
        );
        checked += 1;
    }
    checked
}

/// `clerk runs list --json`, asserted successful, parsed into run id → status.
fn runs_list(data: &Path, tmp: &Path) -> BTreeMap<String, String> {
    let out = clerk(data, tmp, &["runs", "list", "--json"]);
    assert!(
        out.status.success(),
        "`clerk runs list` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("runs list prints JSON");
    list.iter()
        .map(|r| {
            (
                r["run_id"].as_str().expect("run_id").to_owned(),
                r["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

fn assert_verify_ok(data: &Path, tmp: &Path) {
    let out = clerk(data, tmp, &["verify", "--all"]);
    assert!(
        out.status.success(),
        "`clerk verify --all` exited {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Process group of a live process (`/proc/PID/stat` field 5), `None` once it is gone.
fn process_group(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is parenthesized and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" {
        return None;
    }
    fields.nth(1)?.parse().ok()
}

/// Live processes (not zombies) in any of `groups`.
fn processes_in_groups(groups: &BTreeSet<i32>) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if process_group(pid).is_some_and(|g| groups.contains(&g)) {
            out.push(pid);
        }
    }
    out
}

/// Chromium processes of this test (command line mentions `tmp`) and their groups.
fn chromium_of(tmp: &Path) -> (Vec<u32>, BTreeSet<i32>) {
    let pids = common::processes_with(&tmp.display().to_string());
    let groups = pids.iter().filter_map(|&p| process_group(p)).collect();
    (pids, groups)
}

/// Polls until `done` holds, or panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs blocking test code off the runtime's workers, so the sample seller center (served
/// by this test's runtime) keeps answering Chromium.
/// These tests each drive whole batches of browsers; on a 2-core machine they run one at a
/// time so that `cargo test` needs no `--test-threads` flag.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// What one SIGKILL left behind, checked.
struct KillOutcome {
    /// Runs the kill interrupted.
    interrupted: usize,
}

/// Starts a batch, SIGKILLs clerk once the journal has grown by `new_lines` records while a
/// browser is up, and checks everything the brief promises about the aftermath.
fn kill_mid_batch(data: &Path, tmp: &Path, inputs: &Path, new_lines: usize) -> KillOutcome {
    let start_lines = count_lines(&journal_complete(data));
    let mut batch = Batch::start(data, tmp, inputs, 2, &format!("kill-{new_lines}"));
    let deadline = Instant::now() + BATCH_TIMEOUT;
    // Wait for the threshold with a browser up, so the kill lands mid-run.
    let groups = loop {
        if let Some(status) = batch.child.try_wait().expect("try_wait") {
            panic!(
                "batch ended ({status}) before the journal grew by {new_lines} lines; stderr:\n{}",
                batch.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "journal never grew by {new_lines} lines"
        );
        let lines = count_lines(&journal_complete(data));
        let (pids, groups) = chromium_of(tmp);
        if lines >= start_lines + new_lines && !pids.is_empty() {
            break groups;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let before = journal_complete(data);
    batch.child.kill().expect("SIGKILL clerk");
    batch.child.wait().expect("reap clerk");

    // Chromium dies with clerk (PDEATHSIG on the browser; its children follow it).
    wait_until(
        Duration::from_secs(5),
        "Chromium processes outlived the SIGKILLed clerk",
        || chromium_of(tmp).0.is_empty() && processes_in_groups(&groups).is_empty(),
    );

    // Acknowledged records survive byte for byte.
    let after = std::fs::read(data.join("journal.jsonl")).expect("journal exists");
    assert!(
        after.starts_with(&before),
        "the journal lost or changed records that were written before the kill"
    );
    let at_kill = run_states(&journal_records(data));
    let open: BTreeSet<String> = at_kill
        .iter()
        .filter(|(_, s)| s.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        !open.is_empty(),
        "a browser was up at the kill, so some run must have been in flight"
    );

    // Opening the store (any command) marks orphaned runs interrupted; finished ones keep
    // their status.
    let listed = runs_list(data, tmp);
    for (id, state) in &at_kill {
        let expected = state.as_deref().unwrap_or("interrupted");
        assert_eq!(
            listed.get(id).map(String::as_str),
            Some(expected),
            "run {id} after the kill"
        );
    }
    let after_list = std::fs::read(data.join("journal.jsonl")).expect("journal exists");
    assert!(
        after_list.starts_with(&before),
        "opening the store changed records written before the kill"
    );

    assert_verify_ok(data, tmp);
    let records = journal_records(data);
    assert_contiguous_chain(&records);
    assert_screenshots_match(data, &records);
    KillOutcome {
        interrupted: open.len(),
    }
}

/// SIGKILL at three points of three batches in one data directory: nothing acknowledged is
/// lost, no browser survives, orphaned runs become `interrupted`, everything verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_loses_nothing_and_leaves_no_browser() {
    let _serial = serial().await;
    let setup = Setup::new().await;
    let (data, tmp) = (setup.data_dir(), setup.tmp_dir());
    let inputs = setup.orders_csv("orders.csv", 0, 20);
    blocking(move || {
        let first = journal_complete(&data);
        let mut interrupted = 0;
        for new_lines in [5, 25, 60] {
            interrupted += kill_mid_batch(&data, &tmp, &inputs, new_lines).interrupted;
        }
        assert!(
            journal_complete(&data).starts_with(&first),
            "journal prefix changed"
        );
        let records = journal_records(&data);
        let interrupted_records = records
            .iter()
            .filter(|r| event_type(r) == "run_interrupted")
            .count();
        assert_eq!(
            interrupted_records, interrupted,
            "each orphaned run is marked interrupted exactly once"
        );
        assert!(
            records.iter().any(|r| event_type(r) == "evidence_captured"),
            "the batches captured no evidence before being killed"
        );
    })
    .await;
    assert!(
        setup.center.writes().is_empty(),
        "read-only runs reached the seller center with writes"
    );
}

/// Run ids of a `clerk run --json` report, asserting every run ended `ok`.
fn ok_run_ids(report: &Value) -> Vec<String> {
    let runs = report["runs"].as_array().expect("report has runs");
    runs.iter()
        .map(|r| {
            assert_eq!(r["status"], "ok", "run did not end ok: {r}");
            r["run_id"].as_str().expect("run_id").to_owned()
        })
        .collect()
}

/// Stdout of a clerk command that must succeed.
fn clerk_ok(data: &Path, tmp: &Path, args: &[&str]) -> Vec<u8> {
    let out = clerk(data, tmp, args);
    assert!(
        out.status.success(),
        "`clerk {}` exited {}: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Deleting `index/` after a complete batch changes no answer: the index is a cache of
/// the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_index_answers_exactly_as_before() {
    let _serial = serial().await;
    let setup = Setup::new().await;
    let (data, tmp) = (setup.data_dir(), setup.tmp_dir());
    let inputs = setup.orders_csv("orders.csv", 0, 20);
    blocking(move || {
        let (code, report) = Batch::start(&data, &tmp, &inputs, 2, "full").finish();
        assert_eq!(code, Some(0), "batch failed: {report}");
        let ids = ok_run_ids(&report);
        assert_eq!(ids.len(), 20);

        let list_before = clerk_ok(&data, &tmp, &["runs", "list", "--json"]);
        let listed: Vec<Value> = serde_json::from_slice(&list_before).expect("JSON");
        assert_eq!(listed.len(), 20, "runs list shows the batch's runs");
        let shows_before: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| clerk_ok(&data, &tmp, &["runs", "show", id, "--json"]))
            .collect();
        for (id, show) in ids.iter().zip(&shows_before) {
            let detail: Value = serde_json::from_slice(show).expect("JSON");
            assert_eq!(detail["summary"]["run_id"], id.as_str());
            assert_eq!(detail["evidence"].as_array().map(Vec::len), Some(1));
        }

        let index = data.join("index");
        assert!(
            index.is_dir(),
            "the batch left no persistent index to delete"
        );
        std::fs::remove_dir_all(&index).expect("delete index/");

        let list_after = clerk_ok(&data, &tmp, &["runs", "list", "--json"]);
        assert_eq!(
            String::from_utf8_lossy(&list_after),
            String::from_utf8_lossy(&list_before),
            "runs list changed after the index was deleted"
        );
        assert!(index.is_dir(), "the index was not rebuilt");
        for (id, before) in ids.iter().zip(&shows_before) {
            let after = clerk_ok(&data, &tmp, &["runs", "show", id, "--json"]);
            assert_eq!(
                String::from_utf8_lossy(&after),
                String::from_utf8_lossy(before),
                "runs show {id} changed after the index was deleted"
            );
        }
        assert_verify_ok(&data, &tmp);
    })
    .await;
}

/// Two batches writing one data directory at once: one chain, no forks, both listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_batches_share_one_chain() {
    let _serial = serial().await;
    let setup = Setup::new().await;
    let (data, tmp) = (setup.data_dir(), setup.tmp_dir());
    let first = setup.orders_csv("first.csv", 0, 10);
    let second = setup.orders_csv("second.csv", 10, 10);
    blocking(move || {
        // One browser each: two processes, two browsers, on a 2-core machine.
        let a = Batch::start(&data, &tmp, &first, 1, "first");
        let b = Batch::start(&data, &tmp, &second, 1, "second");
        let (code_a, report_a) = a.finish();
        let (code_b, report_b) = b.finish();
        assert_eq!(code_a, Some(0), "first batch failed: {report_a}");
        assert_eq!(code_b, Some(0), "second batch failed: {report_b}");
        let ids_a = ok_run_ids(&report_a);
        let ids_b = ok_run_ids(&report_b);
        assert_eq!((ids_a.len(), ids_b.len()), (10, 10));
        assert_ne!(report_a["batch_id"], report_b["batch_id"]);

        let records = journal_records(&data);
        assert_contiguous_chain(&records);

        // The batches really ran at the same time: their records interleave.
        let seqs_of = |ids: &[String]| -> Vec<u64> {
            records
                .iter()
                .filter(|r| ids.iter().any(|id| id == event_str(r, "run_id")))
                .filter_map(|r| r["seq"].as_u64())
                .collect()
        };
        let (sa, sb) = (seqs_of(&ids_a), seqs_of(&ids_b));
        let (a_first, a_last) = (sa[0], sa[sa.len() - 1]);
        assert!(
            sb.iter().any(|s| (a_first..a_last).contains(s)),
            "the two batches did not overlap, so this test proved nothing about concurrency"
        );
        // Every run's RunStarted names its own batch.
        for (ids, report) in [(&ids_a, &report_a), (&ids_b, &report_b)] {
            for id in ids {
                let started = records
                    .iter()
                    .find(|r| event_type(r) == "run_started" && event_str(r, "run_id") == id)
                    .unwrap_or_else(|| panic!("no run_started for {id}"));
                assert_eq!(started["event"]["batch_id"], report["batch_id"]);
            }
        }

        assert_verify_ok(&data, &tmp);
        assert_eq!(assert_screenshots_match(&data, &records), 20);
        let listed = runs_list(&data, &tmp);
        assert_eq!(listed.len(), 20, "runs list: {listed:?}");
        for id in ids_a.iter().chain(&ids_b) {
            assert_eq!(listed.get(id).map(String::as_str), Some("ok"), "run {id}");
        }
    })
    .await;
}

/// Readers in other processes while a batch runs: they answer, and they never mistake the
/// live batch's runs for orphans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_work_while_a_batch_runs() {
    let _serial = serial().await;
    let setup = Setup::new().await;
    let (data, tmp) = (setup.data_dir(), setup.tmp_dir());
    let inputs = setup.orders_csv("orders.csv", 0, 8);
    blocking(move || {
        let mut batch = Batch::start(&data, &tmp, &inputs, 2, "busy");
        let mut lists_during_run = 0;
        let mut shows_during_run = 0;
        let deadline = Instant::now() + BATCH_TIMEOUT;
        while batch.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "batch did not finish");
            let open: Vec<String> = run_states(&journal_records(&data))
                .into_iter()
                .filter(|(_, s)| s.is_none())
                .map(|(id, _)| id)
                .collect();
            if open.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            // A run is in flight right now; ask another process about it.
            let listed = runs_list(&data, &tmp);
            let status = listed.get(&open[0]).map(String::as_str);
            assert!(
                matches!(status, Some("running") | Some("ok")),
                "live run {} listed as {status:?} by another process",
                open[0]
            );
            lists_during_run += 1;
            let show = clerk_ok(&data, &tmp, &["runs", "show", &open[0], "--json"]);
            let detail: Value = serde_json::from_slice(&show).expect("JSON");
            assert_eq!(detail["summary"]["run_id"], open[0].as_str());
            shows_during_run += 1;
        }
        assert!(
            lists_during_run >= 2 && shows_during_run >= 2,
            "too few reads overlapped the batch ({lists_during_run} lists) to test anything"
        );
        let (code, report) = batch.finish();
        assert_eq!(code, Some(0), "batch failed next to readers: {report}");
        let ids = ok_run_ids(&report);
        let records = journal_records(&data);
        assert!(
            !records.iter().any(|r| event_type(r) == "run_interrupted"),
            "a reader marked a live run interrupted"
        );
        let listed = runs_list(&data, &tmp);
        for id in &ids {
            assert_eq!(listed.get(id).map(String::as_str), Some("ok"), "run {id}");
        }
        assert_contiguous_chain(&records);
        assert_verify_ok(&data, &tmp);
    })
    .await;
}
