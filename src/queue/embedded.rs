//! [`EmbeddedQueue`]: the queue in the data directory, for one process.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::log::{self, io};
use super::state::{Change, State};
use super::{
    Backoff, ChannelPause, Claim, Disposition, Failure, Job, JobFilter, JobId, JobSpec, Outcome,
    QueueError, QueueLimits, RunQueue,
};
use crate::evidence::lock::FileLock;
use crate::evidence::StoreError;

/// Directory of the queue inside the data directory.
pub const QUEUE_DIR: &str = "queue";

/// The run queue of one process, kept in `<data>/queue/` (see the module docs for the files).
///
/// Opening takes an exclusive lock: a second open, in this process or another, fails with
/// [`QueueError::Locked`] until the first is dropped. Every method that changes something
/// writes one log line and returns after its `fdatasync`; methods are serialized by a mutex
/// (a daemon claims a few jobs a minute: the fsync is the whole cost).
pub struct EmbeddedQueue {
    dir: PathBuf,
    limits: QueueLimits,
    backoff: Backoff,
    inner: Mutex<Inner>,
    /// Test hook: the next log fsync fails as if the disk had reported an error.
    fail_next_sync: AtomicBool,
    /// Successful fdatasyncs of the log (each made one acknowledged line durable).
    syncs: AtomicU64,
    _lock: FileLock,
}

struct Inner {
    log: File,
    /// The log's length: everything up to here is acknowledged.
    len: u64,
    /// The `seq` of the last line (or of the snapshot when the log is empty).
    seq: u64,
    state: State,
    /// Set when a failed write could not be cut off again: nothing more is written.
    broken: Option<String>,
}

/// What [`EmbeddedQueue::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Log lines replayed (after the snapshot, if any).
    pub replayed: u64,
    /// Whether a snapshot was loaded.
    pub snapshot: bool,
    /// Where a torn last line was set aside, and what was wrong with it.
    pub torn: Option<(PathBuf, String)>,
}

fn store_err(e: StoreError) -> QueueError {
    match e {
        StoreError::Io { path, source } => QueueError::Io { path, source },
        other => QueueError::BadInput(other.to_string()),
    }
}

fn poisoned<T>(_: T) -> QueueError {
    QueueError::Broken("a thread panicked while changing the queue".into())
}

/// 64 bits nobody can predict in advance (tokens, jitter): SHA-256 of the process id, the
/// time and a counter.
pub(super) fn random_u64() -> u64 {
    random_bytes()
        .first_chunk::<8>()
        .map(|b| u64::from_le_bytes(*b))
        .unwrap_or(0)
}

fn random_bytes() -> [u8; 32] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(nanos.to_le_bytes());
    h.update(n.to_le_bytes());
    h.finalize().into()
}

pub(super) fn new_token() -> String {
    hex::encode(&random_bytes()[..16])
}

impl EmbeddedQueue {
    /// Opens (creating if needed) the queue in `<data_dir>/queue/`: loads the snapshot,
    /// replays the log, sets a torn last line aside.
    pub fn open(
        data_dir: &Path,
        limits: QueueLimits,
        backoff: Backoff,
    ) -> Result<EmbeddedQueue, QueueError> {
        Self::open_reporting(data_dir, limits, backoff).map(|(q, _)| q)
    }

    /// [`EmbeddedQueue::open`], also telling what it found.
    pub fn open_reporting(
        data_dir: &Path,
        limits: QueueLimits,
        backoff: Backoff,
    ) -> Result<(EmbeddedQueue, OpenReport), QueueError> {
        limits.check()?;
        backoff.check()?;
        let dir = data_dir.join(QUEUE_DIR);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            log::sync_dir(data_dir)?;
        }
        let lock_path = dir.join(log::LOCK);
        let lock = FileLock::try_exclusive(&lock_path)
            .map_err(store_err)?
            .ok_or_else(|| QueueError::Locked(dir.clone()))?;

        let mut report = OpenReport::default();
        let (mut seq, mut state) = match log::read_snapshot(&dir)? {
            Some((seq, state)) => {
                report.snapshot = true;
                (seq, state)
            }
            None => (0, State::default()),
        };
        let log_path = dir.join(log::LOG);
        let file = log::open_log(&dir)?;
        let bytes = std::fs::read(&log_path).map_err(io(&log_path))?;
        let scan = log::scan(&bytes, &log_path)?;
        let corrupt = |line: u64, reason: String| QueueError::Corrupt {
            path: log_path.clone(),
            line,
            reason,
        };
        for (number, line) in scan.lines {
            if line.seq <= seq {
                continue; // already in the snapshot
            }
            if line.seq != seq + 1 {
                return Err(corrupt(
                    number,
                    format!("seq {} follows seq {seq}: lines are missing", line.seq),
                ));
            }
            for change in &line.changes {
                state
                    .apply(change)
                    .map_err(|reason| corrupt(number, reason))?;
            }
            seq = line.seq;
            report.replayed += 1;
        }
        let mut len = bytes.len() as u64;
        if let Some((keep, reason)) = scan.torn {
            let aside = log::set_aside(&dir, &file, &bytes, keep)?;
            tracing::warn!(dropped = len - keep, saved_as = %aside.display(), %reason,
                "queue log had a torn last line (never acknowledged); set it aside");
            report.torn = Some((aside, reason));
            len = keep;
        }
        let queue = EmbeddedQueue {
            dir,
            limits,
            backoff,
            inner: Mutex::new(Inner {
                log: file,
                len,
                seq,
                state,
                broken: None,
            }),
            fail_next_sync: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            _lock: lock,
        };
        Ok((queue, report))
    }

    /// The queue's directory (`<data>/queue`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(log::LOG)
    }

    /// The limits `claim` enforces.
    pub fn limits(&self) -> &QueueLimits {
        &self.limits
    }

    /// Writes the whole state to `queue.snapshot` (temporary file, fsync, rename, fsync of
    /// the directory), then empties the log. A crash in between leaves a log whose lines
    /// the snapshot already covers; they are skipped at open.
    pub fn compact(&self) -> Result<(), QueueError> {
        let mut inner = self.lock()?;
        let inner = &mut *inner;
        if let Some(why) = &inner.broken {
            return Err(QueueError::Broken(why.clone()));
        }
        log::write_snapshot(&self.dir, inner.seq, &inner.state)?;
        let path = self.log_path();
        if let Err(e) = log::truncate(&inner.log, &path, 0) {
            // The snapshot covers every line; whatever the log's length now, lines up to
            // `seq` are skipped at open. Appending after a half-done truncate is not safe.
            inner.broken = Some(format!("emptying the log after a snapshot failed: {e}"));
            return Err(e);
        }
        inner.len = 0;
        Ok(())
    }

    /// Test hook: the next log fsync fails with an I/O error.
    #[doc(hidden)]
    pub fn fail_next_sync(&self) {
        self.fail_next_sync.store(true, Ordering::SeqCst);
    }

    /// How many log lines this queue has fsync'd (tests: a change returns after its fsync).
    #[doc(hidden)]
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, QueueError> {
        self.inner.lock().map_err(poisoned)
    }

    /// Writes `changes` as one log line, fsyncs it, then applies them. On a failed write or
    /// fsync nothing is applied and the line is cut off again.
    fn commit(&self, inner: &mut Inner, changes: &[Change]) -> Result<(), QueueError> {
        if changes.is_empty() {
            return Ok(());
        }
        if let Some(why) = &inner.broken {
            return Err(QueueError::Broken(why.clone()));
        }
        let seq = inner.seq + 1;
        let line = log::encode(seq, changes)?;
        let path = self.log_path();
        let written = inner
            .log
            .write_all(&line)
            .map_err(io(&path))
            .and_then(|()| {
                if self.fail_next_sync.swap(false, Ordering::SeqCst) {
                    return Err(QueueError::Io {
                        path: path.clone(),
                        source: std::io::Error::other("injected fsync failure (test hook)"),
                    });
                }
                inner.log.sync_data().map_err(io(&path))
            });
        if let Err(e) = written {
            // After a failed write or fsync the line's state on disk is unknown: cut it off
            // so that it can neither be replayed later nor have lines appended after it.
            if let Err(cut) = log::truncate(&inner.log, &path, inner.len) {
                inner.broken = Some(format!("{e}; then cutting the line off failed: {cut}"));
            }
            return Err(e);
        }
        self.syncs.fetch_add(1, Ordering::SeqCst);
        inner.len += line.len() as u64;
        inner.seq = seq;
        for change in changes {
            if let Err(reason) = inner.state.apply(change) {
                // A change planned against this very state did not apply: a bug. The log has
                // it; the memory does not. Stop writing: reopening replays the log.
                let why = format!("line {seq} was written but does not apply: {reason}");
                inner.broken = Some(why.clone());
                return Err(QueueError::Broken(why));
            }
        }
        Ok(())
    }
}

impl RunQueue for EmbeddedQueue {
    fn enqueue(&self, spec: JobSpec) -> Result<JobId, QueueError> {
        let mut inner = self.lock()?;
        let (job, change) = inner.state.plan_enqueue(spec, Utc::now())?;
        self.commit(&mut inner, &[change])?;
        Ok(job)
    }

    fn claim(
        &self,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Claim>, QueueError> {
        let mut inner = self.lock()?;
        let expired = inner.state.plan_expiries(now);
        for change in &expired {
            if let Change::LeaseExpired { job, reason, .. } = change {
                tracing::warn!(%job, %reason, "queue lease expired");
            }
        }
        self.commit(&mut inner, &expired)?;
        let planned = inner
            .state
            .plan_claim(worker, lease, now, &self.limits, new_token())?;
        let Some((claim, change)) = planned else {
            return Ok(None);
        };
        self.commit(&mut inner, &[change])?;
        Ok(Some(claim))
    }

    fn heartbeat(&self, claim: &Claim, now: DateTime<Utc>) -> Result<DateTime<Utc>, QueueError> {
        let mut inner = self.lock()?;
        let (until, change) = inner.state.plan_heartbeat(claim, now)?;
        self.commit(&mut inner, &[change])?;
        Ok(until)
    }

    fn fence(&self, claim: &Claim, now: DateTime<Utc>) -> Result<(), QueueError> {
        self.lock()?.state.check_fence(claim, now)
    }

    fn complete(&self, claim: &Claim, outcome: Outcome) -> Result<(), QueueError> {
        let mut inner = self.lock()?;
        let change = inner.state.plan_complete(claim, outcome, Utc::now())?;
        self.commit(&mut inner, &[change])
    }

    fn fail(
        &self,
        claim: &Claim,
        failure: Failure,
        now: DateTime<Utc>,
    ) -> Result<Disposition, QueueError> {
        let mut inner = self.lock()?;
        let (disposition, change) =
            inner
                .state
                .plan_fail(claim, failure, now, &self.backoff, random_u64())?;
        self.commit(&mut inner, &[change])?;
        Ok(disposition)
    }

    fn release(
        &self,
        claim: &Claim,
        reason: &str,
        not_before: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let mut inner = self.lock()?;
        let change = inner
            .state
            .plan_release(claim, reason.to_owned(), not_before, now)?;
        self.commit(&mut inner, &[change])
    }

    fn abandon(
        &self,
        worker_prefix: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>, QueueError> {
        let mut inner = self.lock()?;
        let changes = inner.state.plan_abandon(worker_prefix, reason, now);
        self.commit(&mut inner, &changes)?;
        Ok(changes
            .iter()
            .filter_map(|c| match c {
                Change::Abandoned { job, .. } => Some(*job),
                _ => None,
            })
            .collect())
    }

    fn retry(&self, job: JobId) -> Result<(), QueueError> {
        let mut inner = self.lock()?;
        let change = inner.state.plan_retry(job, Utc::now())?;
        self.commit(&mut inner, &[change])
    }

    fn drop_job(&self, job: JobId) -> Result<(), QueueError> {
        let mut inner = self.lock()?;
        let change = inner.state.plan_drop(job, Utc::now())?;
        self.commit(&mut inner, &[change])
    }

    fn pause_channel(&self, channel: &str, reason: &str) -> Result<(), QueueError> {
        let mut inner = self.lock()?;
        let change = inner.state.plan_pause(channel, reason, Utc::now())?;
        self.commit(&mut inner, &[change])
    }

    fn resume_channel(&self, channel: &str) -> Result<(), QueueError> {
        let mut inner = self.lock()?;
        let changes: Vec<Change> = inner
            .state
            .plan_resume(channel, Utc::now())
            .into_iter()
            .collect();
        self.commit(&mut inner, &changes)
    }

    fn paused_channels(&self) -> Result<BTreeMap<String, ChannelPause>, QueueError> {
        Ok(self.lock()?.state.paused().clone())
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, QueueError> {
        Ok(self.lock()?.state.list(filter))
    }

    fn get(&self, job: JobId) -> Result<Option<Job>, QueueError> {
        Ok(self.lock()?.state.job(job).cloned())
    }
}
