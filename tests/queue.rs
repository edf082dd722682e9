//! The durable run queue on disk: reopening, torn and damaged lines, compaction, and a child
//! process SIGKILLed while it enqueues, claims and completes (nothing it acknowledged may be
//! missing afterwards). No browser involved.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use clerk::queue::{
    Backoff, ChannelLimits, ChannelPause, Disposition, EmbeddedQueue, Failure, Job, JobFilter,
    JobId, JobSpec, JobState, Outcome, Priority, QueueError, QueueLimits, RunQueue, QUEUE_DIR,
};

const LEASE: Duration = Duration::from_secs(60);

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-05-01T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(secs)
}

fn limits() -> QueueLimits {
    let mut channels = BTreeMap::new();
    channels.insert(
        "slow".to_owned(),
        ChannelLimits {
            concurrent: 2,
            min_interval: Duration::from_secs(30),
        },
    );
    QueueLimits {
        global: 10_000,
        channel_default: ChannelLimits {
            concurrent: 10_000,
            min_interval: Duration::ZERO,
        },
        channels,
    }
}

fn open(dir: &Path) -> EmbeddedQueue {
    EmbeddedQueue::open(dir, limits(), Backoff::default()).unwrap()
}

fn spec(channel: &str, n: u64) -> JobSpec {
    let mut s = JobSpec::new("order-lookup", channel, "ops-anna");
    s.inputs.insert("order".into(), format!("SO-{n}"));
    s.inputs
        .insert("note".into(), "Bestellung — “quoted” \u{1}\t\n中文".into());
    s.case_ref = Some(format!("CASE-{n}"));
    s.schedule = (n % 2 == 0).then(|| "nightly".to_owned());
    s.approval_id = (n % 3 == 0).then(|| format!("ap-{n}"));
    s.priority = [
        Priority::Bulk,
        Priority::Scheduled,
        Priority::Manual,
        Priority::Submit,
    ][(n % 4) as usize];
    s
}

/// Everything observable through the interface.
fn everything(q: &dyn RunQueue) -> (Vec<Job>, BTreeMap<String, ChannelPause>) {
    (
        q.list(&JobFilter::default()).unwrap(),
        q.paused_channels().unwrap(),
    )
}

/// Fills a queue with jobs in every state; returns a claim that is still leased.
fn busy_queue(q: &dyn RunQueue) -> clerk::queue::Claim {
    for n in 0..12 {
        q.enqueue(spec(if n % 3 == 0 { "slow" } else { "shop" }, n))
            .unwrap();
    }
    let done = q.claim("w1", LEASE, at(0)).unwrap().unwrap();
    q.complete(
        &done,
        Outcome {
            run_id: Some("r-1".into()),
            status: "ok".into(),
        },
    )
    .unwrap();
    let retried = q.claim("w1", LEASE, at(1)).unwrap().unwrap();
    q.fail(&retried, Failure::transient("503"), at(2)).unwrap();
    let dead = q.claim("w2", LEASE, at(3)).unwrap().unwrap();
    q.fail(&dead, Failure::permanent("no such order"), at(3))
        .unwrap();
    let expiring = q.claim("w3", LEASE, at(4)).unwrap().unwrap();
    let held = q.claim("w4", LEASE, at(5)).unwrap().unwrap();
    q.heartbeat(&held, at(50)).unwrap();
    q.drop_job(JobId(1)).unwrap();
    q.pause_channel("other", "maintenance").unwrap();
    q.pause_channel("gone", "x").unwrap();
    q.resume_channel("gone").unwrap();
    // Expires `expiring` (its lease ended at 64) and claims the retried job, whose backoff
    // has passed; that attempt fails again.
    let again = q.claim("w5", LEASE, at(70)).unwrap().unwrap();
    assert_eq!((again.job, again.attempt), (retried.job, 2));
    let Disposition::Retry {
        not_before: Some(_),
    } = q
        .fail(&again, Failure::transient("503 again"), at(71))
        .unwrap()
    else {
        panic!("a second transient failure of three attempts should be retried");
    };
    let expired = q.get(expiring.job).unwrap().unwrap();
    assert_eq!((expired.state, expired.attempts), (JobState::Queued, 1));
    assert!(expired.last_error.unwrap().contains("expired"));
    held
}

// ---------------------------------------------------------------- reopen

#[test]
fn reopening_keeps_every_job_lease_pause_and_start_time() {
    let tmp = tempfile::tempdir().unwrap();
    let q = open(tmp.path());
    let held = busy_queue(&q);
    let before = everything(&q);
    assert!(before.0.iter().any(|j| j.state == JobState::Dead));
    assert!(before.0.iter().any(|j| j.not_before.is_some()));
    drop(q);

    let (q, report) =
        EmbeddedQueue::open_reporting(tmp.path(), limits(), Backoff::default()).unwrap();
    assert!(report.torn.is_none() && !report.snapshot && report.replayed > 10);
    assert_eq!(everything(&q), before);
    // The lease and its token survived: the worker can go on.
    assert_eq!(q.heartbeat(&held, at(100)).unwrap(), at(160));
    // Ids go on where they stopped.
    assert_eq!(q.enqueue(spec("shop", 99)).unwrap(), JobId(13));
    // The slow channel's last start (job 4, at 0) still spaces the next one: with `shop`
    // paused, nothing may start before 30.
    q.pause_channel("shop", "only slow").unwrap();
    assert!(q.claim("w", LEASE, at(29)).unwrap().is_none());
    let slow = q.claim("w", LEASE, at(30)).unwrap().unwrap();
    assert_eq!((slow.job, slow.spec.channel.as_str()), (JobId(7), "slow"));
}

// ---------------------------------------------------------------- torn and damaged lines

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_torn_last_line_is_set_aside_and_every_earlier_change_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join(QUEUE_DIR).join("queue.log");
    let q = open(tmp.path());
    busy_queue(&q);
    let before = everything(&q);
    drop(q);
    let good = std::fs::read(&log).unwrap();

    // A crash in the middle of writing a line: no newline.
    let torn = b"{\"seq\":99,\"changes\":[{\"type\":\"enqueued\",\"job\":13,\"at";
    append_raw(&log, torn);
    let (q, report) =
        EmbeddedQueue::open_reporting(tmp.path(), limits(), Backoff::default()).unwrap();
    let (aside, reason) = report.torn.expect("the torn line was not reported");
    assert!(reason.contains("without a final newline"), "{reason}");
    assert_eq!(std::fs::read(&aside).unwrap(), torn);
    assert_eq!(std::fs::read(&log).unwrap(), good);
    assert_eq!(everything(&q), before);
    // Appending goes on after the good lines, and the next open is clean.
    let id = q.enqueue(spec("shop", 50)).unwrap();
    drop(q);
    let (q, report) =
        EmbeddedQueue::open_reporting(tmp.path(), limits(), Backoff::default()).unwrap();
    assert!(report.torn.is_none());
    assert!(q.get(id).unwrap().is_some());
    let before = everything(&q);
    drop(q);

    // Garbage ending in a newline (zeros a crash left after the size grew, or a line whose
    // checksum does not match) is torn too, as long as it is the last line.
    let good = std::fs::read(&log).unwrap();
    let last = good[..good.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let mut flipped = good[last..].to_vec();
    let i = flipped.iter().position(|&b| b == b':').unwrap() + 1;
    flipped[i] ^= 0x01;
    for garbage in [b"\0\0\0\0\0\0\0\0\n".to_vec(), flipped] {
        append_raw(&log, &garbage);
        let (q, report) =
            EmbeddedQueue::open_reporting(tmp.path(), limits(), Backoff::default()).unwrap();
        assert!(report.torn.is_some(), "{garbage:?} was not set aside");
        assert_eq!(everything(&q), before);
        assert_eq!(std::fs::read(&log).unwrap(), good);
    }
}

#[test]
fn a_damaged_line_before_the_last_is_refused_with_its_number() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join(QUEUE_DIR).join("queue.log");
    let q = open(tmp.path());
    for n in 0..5 {
        q.enqueue(spec("shop", n)).unwrap();
    }
    drop(q);
    let bytes = std::fs::read(&log).unwrap();
    let third = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(1)
        .unwrap()
        .0
        + 1;
    let mut damaged = bytes.clone();
    let at_so = third
        + damaged[third..]
            .windows(3)
            .position(|w| w == b"SO-")
            .unwrap();
    damaged[at_so + 3] = b'7'; // SO-2 becomes SO-7: still valid JSON, wrong checksum
    std::fs::write(&log, &damaged).unwrap();
    match EmbeddedQueue::open(tmp.path(), limits(), Backoff::default()) {
        Err(e @ QueueError::Corrupt { line: 3, .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("at line 3") && msg.contains("checksum"),
                "{msg}"
            );
        }
        Err(e) => panic!("expected corruption at line 3, got {e}"),
        Ok(_) => panic!("a damaged line in the middle was accepted"),
    }
    // Nothing was repaired or cut: the file is as we left it.
    assert_eq!(std::fs::read(&log).unwrap(), damaged);

    // A missing line (valid lines, a gap in seq) is refused as well.
    let mut gap = Vec::new();
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if i != 1 {
            gap.extend_from_slice(line);
        }
    }
    std::fs::write(&log, &gap).unwrap();
    assert!(matches!(
        EmbeddedQueue::open(tmp.path(), limits(), Backoff::default()),
        Err(QueueError::Corrupt { line: 2, .. })
    ));
}

// ---------------------------------------------------------------- compaction

#[test]
fn compaction_keeps_the_state_and_a_crash_before_emptying_the_log_is_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(QUEUE_DIR);
    let q = open(tmp.path());
    let held = busy_queue(&q);
    let full_log = std::fs::read(q.log_path()).unwrap();
    q.compact().unwrap();
    assert_eq!(std::fs::metadata(q.log_path()).unwrap().len(), 0);
    assert!(dir.join("queue.snapshot").exists());
    let id = q.enqueue(spec("shop", 77)).unwrap();
    q.heartbeat(&held, at(60)).unwrap();
    let before = everything(&q);
    let after_compaction = std::fs::read(q.log_path()).unwrap();
    drop(q);

    let (q, report) =
        EmbeddedQueue::open_reporting(tmp.path(), limits(), Backoff::default()).unwrap();
    assert!(report.snapshot);
    assert_eq!(report.replayed, 2);
    assert_eq!(everything(&q), before);
    assert_eq!(q.get(id).unwrap().unwrap().state, JobState::Queued);
    drop(q);

    // As if the process died after the snapshot's rename, before the log was emptied: the
    // old lines are skipped, the new ones replayed.
    let mut crashed = full_log;
    crashed.extend_from_slice(&after_compaction);
    std::fs::write(dir.join("queue.log"), &crashed).unwrap();
    let (q, report) =
        EmbeddedQueue::open_reporting(tmp.path(), limits(), Backoff::default()).unwrap();
    assert_eq!(report.replayed, 2);
    assert_eq!(everything(&q), before);
    drop(q);

    // A damaged snapshot is refused, never silently replaced by a shorter history.
    let snap = dir.join("queue.snapshot");
    let mut bytes = std::fs::read(&snap).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&snap, &bytes).unwrap();
    assert!(matches!(
        EmbeddedQueue::open(tmp.path(), limits(), Backoff::default()),
        Err(QueueError::Corrupt { .. })
    ));
}

// ---------------------------------------------------------------- SIGKILL

const CHILD_ENV: &str = "CLERK_QUEUE_CHILD_DIR";
/// Marks an acknowledged change in the child's output (libtest may print on the same line).
const ACK: &str = "@ack ";

/// What a worker does with its claim, by iteration.
fn worker_loop(dir: &Path, iterations: u64, deadline: Instant, out: &mut dyn Write) {
    // Retries wait an hour and leases last an hour: the only claimable job is a new one (or
    // one whose claim the previous child never acknowledged).
    let backoff = Backoff {
        base: Duration::from_secs(3600),
        max: Duration::from_secs(7200),
        jitter_percent: 20,
    };
    let q = EmbeddedQueue::open(dir, limits(), backoff).unwrap();
    let lease = Duration::from_secs(3600);
    let mut ack = |s: String| {
        writeln!(out, "{ACK}{s}").unwrap();
        out.flush().unwrap();
    };
    for i in 0..iterations {
        if Instant::now() > deadline {
            break;
        }
        let id = q.enqueue(spec("shop", i)).unwrap();
        ack(format!("enqueued {id}"));
        let c = q.claim("child", lease, Utc::now()).unwrap().unwrap();
        ack(format!("claimed {} {}", c.job, c.attempt));
        match i % 4 {
            0 | 1 => {
                let outcome = Outcome {
                    run_id: Some(format!("run-{}", c.job)),
                    status: "ok".into(),
                };
                q.complete(&c, outcome).unwrap();
                ack(format!("completed {}", c.job));
            }
            2 => {
                let d = q
                    .fail(&c, Failure::transient("seller center 503"), Utc::now())
                    .unwrap();
                assert!(matches!(d, Disposition::Retry { .. }), "{d:?}");
                ack(format!("retrying {}", c.job));
            }
            _ => {
                let until = q.heartbeat(&c, Utc::now()).unwrap();
                ack(format!(
                    "heartbeat {} {}",
                    c.job,
                    until.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                ));
            }
        }
    }
}

/// Checks that every acknowledged change in `acks` (lines containing [`ACK`]) is in the queue.
/// Returns how many acknowledgements it checked.
/// `unacked` is how many kills there were: each may have left one enqueue unacknowledged.
fn check_acknowledged(dir: &Path, acks: &str, unacked: usize) -> usize {
    let mut last: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut enqueued = Vec::new();
    let mut count = 0;
    for line in acks.lines() {
        let Some((_, ack)) = line.split_once(ACK) else {
            continue;
        };
        count += 1;
        let words: Vec<String> = ack.split(' ').map(str::to_owned).collect();
        let id: u64 = words[1].parse().unwrap();
        if words[0] == "enqueued" {
            enqueued.push(id);
        }
        last.insert(id, words);
    }
    let (q, report) = EmbeddedQueue::open_reporting(dir, limits(), Backoff::default())
        .unwrap_or_else(|e| panic!("the queue did not reopen after the kill: {e}"));
    let jobs: BTreeMap<u64, Job> = q
        .list(&JobFilter::default())
        .unwrap()
        .into_iter()
        .map(|j| (j.id.0, j))
        .collect();
    // Ids are handed out in order, and at most one enqueue was under way at each kill.
    assert!(
        enqueued.windows(2).all(|w| w[0] < w[1]),
        "acknowledged ids do not increase: {enqueued:?}"
    );
    assert!(
        jobs.len() >= enqueued.len() && jobs.len() <= enqueued.len() + unacked,
        "{} jobs in the queue, {} acknowledged enqueues (torn: {:?})",
        jobs.len(),
        enqueued.len(),
        report.torn
    );
    for (id, words) in &last {
        let job = jobs
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged job {id} is missing"));
        let what = format!("job {id}, last acknowledged `{}`: {job:?}", words.join(" "));
        match words[0].as_str() {
            "enqueued" => {}
            "claimed" => {
                let attempt: u32 = words[2].parse().unwrap();
                assert!(job.attempts >= attempt, "{what}");
            }
            "completed" => {
                assert_eq!(job.state, JobState::Done, "{what}");
                assert_eq!(
                    job.outcome.as_ref().and_then(|o| o.run_id.clone()),
                    Some(format!("run-{id}")),
                    "{what}"
                );
            }
            "retrying" => {
                assert_eq!(job.state, JobState::Queued, "{what}");
                assert!(job.not_before.is_some(), "{what}");
                assert_eq!(
                    job.last_error.as_deref(),
                    Some("seller center 503"),
                    "{what}"
                );
            }
            "heartbeat" => {
                let until = DateTime::parse_from_rfc3339(&words[2]).unwrap();
                assert_eq!(job.state, JobState::Claimed, "{what}");
                assert_eq!(
                    job.lease.as_ref().map(|l| l.until),
                    Some(until.into()),
                    "{what}"
                );
            }
            other => panic!("unknown acknowledgement {other}"),
        }
    }
    count
}

/// In a child process (env var set): enqueues, claims, completes, fails and heartbeats in a
/// loop until killed, printing each acknowledged change. Run directly: a short loop in this
/// process, checked the same way.
#[test]
fn child_process_enqueuer() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let deadline = Instant::now() + Duration::from_secs(60);
        worker_loop(Path::new(&dir), 1_000_000, deadline, &mut std::io::stdout());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    let far = Instant::now() + Duration::from_secs(3600);
    worker_loop(tmp.path(), 40, far, &mut out);
    let acks = String::from_utf8(out).unwrap();
    assert_eq!(check_acknowledged(tmp.path(), &acks, 0), 120);
}

#[test]
fn sigkill_loses_no_acknowledged_change() {
    use std::os::unix::process::ExitStatusExt;

    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut all_acks = String::new();
    // Three children in turn on one queue, each killed after a different number of acks.
    for (round, kill_after) in [40, 157, 311].into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "queue::child_process_enqueuer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        let mut killed = false;
        // Reads until the pipe closes: acks printed between the kill and the child's death
        // were acknowledged too.
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.contains(ACK) {
                seen += 1;
                all_acks.push_str(&line);
                all_acks.push('\n');
            }
            if seen >= kill_after && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the child was not killed mid-way ({status}, {seen} acks)"
        );
        let checked = check_acknowledged(tmp.path(), &all_acks, round + 1);
        assert!(checked >= kill_after);
    }
}
