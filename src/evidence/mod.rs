//! The evidence store: the only module that persists anything (and the only one that
//! imports sled, in [`index`]).
//!
//! Ground truth is (a) content-addressed PNG files under `screenshots/` and (b) the
//! append-only, hash-chained journal `journal.jsonl`, fsync'd before a record is
//! acknowledged. The sled index under `index/` answers queries and is rebuilt from the
//! journal and the files whenever it is missing, behind or damaged.
//!
//! Data directory layout:
//!
//! ```text
//! journal.jsonl         the chain, one canonical JSON record per line (format: record.rs)
//! journal.lock          flock: exclusive to append, shared to snapshot
//! journal.torn-<ts>     torn tails set aside at open (never acknowledged records)
//! checkpoints.jsonl     one line per export: the chain head the bundle covered
//! tlog/                 the Merkle log's public keys and signed checkpoints (see [`tlog`])
//! screenshots/<sha256>.png
//! index/                sled (cache; rebuilt from the journal at will)
//! locks/index.lock      held by the store that owns index/
//! locks/<owner>.lock    held by each open store for its lifetime
//! ```
//!
//! Concurrency: appends are group-committed inside a process (see [`commit`]: one leader
//! writes and fsyncs every queued record at once) and serialized across processes by an
//! exclusive flock on `journal.lock`, under which the chain head is read from the file's
//! tail (never from memory or the index), so no two records can claim the same seq.

pub mod blob;
mod commit;
mod event;
pub mod export;
pub(crate) mod index;
mod journal;
pub(crate) mod lock;
pub mod merkle;
pub mod note;
mod png;
mod query;
pub mod record;
mod replica;
pub mod server_match;
pub mod shared;
pub mod text;
pub mod tlog;
pub mod verify;
pub mod wacz;
pub mod warc;

#[doc(hidden)]
pub use commit::{AppendTrace, CommitStats};
pub use event::{new_run_id, BrowserIdentity, Event, RunId};
pub use query::{
    build_detail, parse_since, timestamp, AllowedView, BlockedView, CaseCheckView, EvidenceView,
    RunDetail, RunFilter, RunSummary, RunTable, StepView,
};
pub use record::RecordError;
pub use replica::compare_copy;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use commit::Committer;
use index::{By, Index, Queries};
use journal::Tail;
use lock::FileLock;
use record::Prepared;

/// Lock file serializing appends across processes.
pub const JOURNAL_LOCK: &str = "journal.lock";
/// Directory of per-store liveness locks.
pub const LOCKS_DIR: &str = "locks";

/// Errors of the evidence store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("evidence store i/o error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("evidence index: {0} (the journal is intact; `clerk reindex` rebuilds the index)")]
    Index(String),
    #[error("not a PNG image: {0}")]
    NotPng(String),
    #[error("cannot write record: {0}")]
    Record(#[from] RecordError),
    #[error("{0}")]
    BadInput(String),
    #[error("no run `{0}` in the journal (see `clerk runs`)")]
    UnknownRun(String),
    #[error("no run with case reference `{0}` in the journal")]
    UnknownCase(String),
    #[error("output directory {0} exists and is not empty; choose a new directory")]
    OutputNotEmpty(PathBuf),
    #[error("evidence store: {0}")]
    Other(String),
    /// A journal rule refused the record (nothing was appended for it).
    #[error("the journal refused the record: {0}")]
    Refused(String),
    #[error(transparent)]
    Shared(#[from] shared::SharedError),
    /// This node's copy of the shared journal disagrees with it.
    #[error("{0}")]
    Diverged(String),
}

impl StoreError {
    /// The same error again, for each caller of a failed batch (`io::Error` is not `Clone`).
    fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Io { path, source } => StoreError::Io {
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            StoreError::Index(s) => StoreError::Index(s.clone()),
            StoreError::NotPng(s) => StoreError::NotPng(s.clone()),
            StoreError::Record(e) => StoreError::Record(e.clone()),
            StoreError::BadInput(s) => StoreError::BadInput(s.clone()),
            StoreError::UnknownRun(s) => StoreError::UnknownRun(s.clone()),
            StoreError::UnknownCase(s) => StoreError::UnknownCase(s.clone()),
            StoreError::OutputNotEmpty(p) => StoreError::OutputNotEmpty(p.clone()),
            StoreError::Other(s) => StoreError::Other(s.clone()),
            StoreError::Refused(s) => StoreError::Refused(s.clone()),
            StoreError::Shared(e) => StoreError::Shared(e.clone()),
            StoreError::Diverged(s) => StoreError::Diverged(s.clone()),
        }
    }
}

/// A record as stored: chain fields plus the event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Hash of the previous record (64 zeros for the first).
    pub prev: String,
    /// SHA-256 over the canonical serialization of everything but `hash`.
    pub hash: String,
    pub event: Event,
}

/// What `append` acknowledges; also a chain head.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Appended {
    pub seq: u64,
    pub hash: String,
}

/// A stored screenshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PngInfo {
    pub sha256: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    /// Every pixel has the same colour.
    pub blank: bool,
    /// Absolute path of the stored file.
    pub path: PathBuf,
}

/// What `reindex` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReindexReport {
    /// Journal lines indexed.
    pub records: u64,
    pub runs: usize,
    /// Distinct screenshots the journal references.
    pub screenshots: usize,
    /// Referenced screenshots whose file is absent (`clerk verify` tells more).
    pub missing_screenshots: Vec<String>,
    /// False when another process owns `index/` and an ephemeral index was rebuilt instead.
    pub persistent: bool,
    /// With a shared journal: the records its own index (the one queries read) was rebuilt
    /// from, and where it is.
    pub shared: Option<(String, u64)>,
}

impl std::fmt::Display for ReindexReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "reindexed {} records, {} runs, {} screenshots{}",
            self.records,
            self.runs,
            self.screenshots,
            if self.persistent {
                ""
            } else {
                " (ephemeral index: another process owns index/)"
            }
        )?;
        if let Some((journal, n)) = &self.shared {
            writeln!(
                f,
                "reindexed the shared journal's index at {journal}: {n} records"
            )?;
        }
        for m in &self.missing_screenshots {
            writeln!(f, "  missing screenshot {m}.png (run `clerk verify`)")?;
        }
        Ok(())
    }
}

struct Inner {
    data_dir: PathBuf,
    owner: String,
    owner_lock: Option<FileLock>,
    /// Append handle; held by the leader of a commit round (and by recovery at open).
    journal: Mutex<File>,
    /// The group committer's queue and counters.
    commit: Committer,
    /// Read handle for index catch-up and the chain head (positional reads only).
    reader: File,
    index: Mutex<Index>,
    /// The Merkle tree's right edge over the journal (see [`tlog`]).
    tree: Mutex<tlog::TreeCache>,
    /// Times the tree was read from the journal's start (for tests and benchmarks).
    tree_cold_reads: std::sync::atomic::AtomicU64,
    /// The key that signs checkpoints, once attached (see [`Store::set_log_key`]).
    log_key: Mutex<Option<tlog::LogKey>>,
    /// Witnesses whose cosignatures count, and how many an export needs to be final.
    witnesses: Mutex<(Vec<note::NoteVerifier>, usize)>,
    /// The installation's shared journal (cluster mode): `journal.jsonl` is then this node's
    /// verified copy of it (see [`shared`]).
    shared: Option<Arc<dyn shared::SharedJournal>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Remove our liveness file before releasing it: anyone checking afterwards finds it
        // missing or unlocked, and either way treats our unfinished runs as interrupted,
        // which is right, since nothing can finish them any more.
        // With a shared journal a missing lock file means "another node's owner", so the
        // file stays while this owner has runs open: this node's next store interrupts them.
        if let Some(lock) = self.owner_lock.take() {
            let keep = self.shared.is_some()
                && self
                    .index
                    .lock()
                    .map(|i| {
                        i.open_runs()
                            .map(|runs| runs.iter().any(|(_, o)| *o == self.owner))
                    })
                    .unwrap_or(Ok(true))
                    .unwrap_or(true);
            if !keep {
                let _ = std::fs::remove_file(lock.path());
            }
            drop(lock);
        }
    }
}

/// Handle to an open store; cheap to clone, safe to share between tasks and threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn now() -> String {
    query::timestamp(chrono::Utc::now())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn lock_recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves nothing half-done that matters: the
    // journal is re-read from the file and the index re-validated against it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`: sets aside a torn journal tail,
    /// brings the index up to date (rebuilding it if missing or damaged), and marks runs
    /// whose process is gone as interrupted.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(data_dir, None)
    }

    /// [`Store::open`] with the installation's shared journal (cluster mode), if any: the
    /// data directory's journal becomes this node's copy of it, caught up before it opens.
    pub fn open_with(
        data_dir: &Path,
        shared: Option<Arc<dyn shared::SharedJournal>>,
    ) -> Result<Store, StoreError> {
        for dir in [
            data_dir.to_path_buf(),
            data_dir.join(png::SCREENSHOTS),
            data_dir.join(LOCKS_DIR),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let data_dir = std::fs::canonicalize(data_dir).map_err(io_err(data_dir))?;
        let owner = lock::new_owner_id();
        let owner_path = data_dir.join(LOCKS_DIR).join(format!("{owner}.lock"));
        let owner_lock = FileLock::try_exclusive(&owner_path)?.ok_or_else(|| {
            StoreError::Other(format!("owner lock {} is taken", owner_path.display()))
        })?;
        replica::check_marker(&data_dir, shared.as_deref())?;
        let journal_file = journal::open(&data_dir)?;
        let journal_path = data_dir.join(journal::JOURNAL);
        let reader = File::open(&journal_path).map_err(io_err(&journal_path))?;
        let index = Index::open(&data_dir)?;
        let store = Store {
            inner: Arc::new(Inner {
                data_dir,
                owner,
                owner_lock: Some(owner_lock),
                journal: Mutex::new(journal_file),
                commit: Committer::default(),
                reader,
                index: Mutex::new(index),
                tree: Mutex::new(tlog::TreeCache::default()),
                tree_cold_reads: std::sync::atomic::AtomicU64::new(0),
                log_key: Mutex::new(None),
                witnesses: Mutex::new((Vec::new(), 0)),
                shared,
            }),
        };
        store.recover()?;
        Ok(store)
    }

    /// Under the journal lock: repair a torn tail, catch the index up, interrupt orphan runs.
    fn recover(&self) -> Result<(), StoreError> {
        if self.inner.shared.is_some() {
            return self.recover_shared();
        }
        let mut file = lock_recover(&self.inner.journal);
        let _flock = FileLock::exclusive(&self.inner.data_dir.join(JOURNAL_LOCK))?;
        self.repair_tail(&mut file)?;
        let mut index = lock_recover(&self.inner.index);
        index.sync(&self.inner.reader, &self.journal_path())?;
        let locks = self.inner.data_dir.join(LOCKS_DIR);
        let mut orphans = Vec::new();
        let mut batch = Vec::new();
        for (run_id, owner) in index.open_runs()? {
            if lock::owner_alive(&locks, &owner)? {
                continue;
            }
            batch.push(Prepared::new(Event::RunInterrupted {
                run_id: run_id.clone(),
                reason: format!(
                    "the process that ran it (owner {owner}) ended before the run finished; \
                     records up to its last step are intact"
                ),
            })?);
            orphans.push((run_id, owner));
        }
        // One write and one fsync for all of them; the index reads them back from the file.
        self.write_batch_locked(&mut file, batch)?;
        index.sync(&self.inner.reader, &self.journal_path())?;
        for (run_id, owner) in orphans {
            tracing::warn!(run = %run_id, %owner, "marked run interrupted");
        }
        Ok(())
    }

    fn journal_path(&self) -> PathBuf {
        self.inner.data_dir.join(journal::JOURNAL)
    }

    /// Sets a torn tail aside and records that it did. Caller holds the journal lock.
    fn repair_tail(&self, file: &mut File) -> Result<(), StoreError> {
        let path = self.journal_path();
        if let Tail::Torn { keep, len } = journal::tail(file, &path)? {
            let saved_as = journal::set_aside(&self.inner.data_dir, file, keep, len)?;
            tracing::warn!(dropped = len - keep, %saved_as, "journal had a torn tail; set it aside");
            let event = Event::JournalRepaired {
                dropped_bytes: len - keep,
                saved_as,
                at: now(),
            };
            self.write_batch_locked(file, vec![Prepared::new(event)?])?;
        }
        Ok(())
    }

    /// Stores a PNG under its SHA-256 (idempotent), after decoding it with `image`.
    pub fn put_png(&self, png: &[u8]) -> Result<PngInfo, StoreError> {
        png::put(&self.inner.data_dir, png)
    }

    /// Stores one recorded HTTP exchange as `warc/<sha256>.warc.gz` (see [`warc`]).
    pub fn put_warc(&self, exchange: &warc::Exchange) -> Result<warc::Stored, StoreError> {
        warc::put(&self.inner.data_dir, exchange)
    }

    /// Where the WARC file with this hash is stored.
    pub fn warc_path(&self, sha256: &str) -> PathBuf {
        warc::path_for(&self.inner.data_dir, sha256)
    }

    /// Stores a playbook's exact text under its SHA-256 (idempotent). Returns the hash.
    pub fn put_playbook_text(&self, text: &[u8]) -> Result<String, StoreError> {
        text::put(&self.inner.data_dir, text)
    }

    /// The playbook text stored under `sha256`, re-hashed on read.
    pub fn playbook_text(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        text::get(&self.inner.data_dir, sha256)
    }

    /// Where the playbook text with this hash is stored.
    pub fn playbook_text_path(&self, sha256: &str) -> PathBuf {
        text::path_for(&self.inner.data_dir, sha256)
    }

    /// The identifier of this process's lock (goes into `RunStarted.owner`).
    pub fn owner(&self) -> String {
        self.inner.owner.clone()
    }

    /// The (canonicalized) data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Where the screenshot with this hash is stored.
    pub fn screenshot_path(&self, sha256: &str) -> PathBuf {
        png::path_for(&self.inner.data_dir, sha256)
    }

    /// True when this store owns the persistent `index/` (false: ephemeral index).
    pub fn index_is_persistent(&self) -> bool {
        lock_recover(&self.inner.index).is_persistent()
    }

    /// The entries of this store's own index (for verify in the process that owns it),
    /// read under the index lock before the caller snapshots the journal: the index can then
    /// only be behind that snapshot, never ahead of it.
    pub fn index_peek(&self) -> Result<index::Peek, StoreError> {
        lock_recover(&self.inner.index).peek_open()
    }

    /// The index, caught up with the journal.
    fn synced(&self) -> Result<MutexGuard<'_, Index>, StoreError> {
        self.catch_up()?;
        let mut index = lock_recover(&self.inner.index);
        index.sync(&self.inner.reader, &self.journal_path())?;
        Ok(index)
    }

    /// Runs `f` on the index that answers queries: the shared journal's own index when the
    /// journal is shared (every node's records, straight from the database), otherwise the
    /// sled index caught up with `journal.jsonl`.
    fn query<T>(
        &self,
        f: impl FnOnce(&dyn Queries) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some(shared) = &self.inner.shared {
            let queries: &dyn Queries = &**shared;
            return f(queries);
        }
        let index = self.synced()?;
        f(&*index)
    }

    /// All records of one run, in sequence order.
    pub fn run_records(&self, run_id: &str) -> Result<Vec<Record>, StoreError> {
        self.query(|q| q.run_records(run_id))
    }

    /// Runs matching `filter`, in start order (oldest first).
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        self.query(|index| {
            let since = filter.since.map(query::timestamp);
            let mut ids = index.runs_since(since.as_deref())?;
            if let Some(channel) = &filter.channel {
                let on: std::collections::HashSet<String> =
                    index.runs_by(By::Channel, channel)?.into_iter().collect();
                ids.retain(|id| on.contains(id));
            }
            if let Some(case) = &filter.case_ref {
                let on: std::collections::HashSet<String> =
                    index.runs_by(By::Case, case)?.into_iter().collect();
                ids.retain(|id| on.contains(id));
            }
            let mut out = Vec::new();
            for id in ids {
                let records = index.run_records(&id)?;
                if let Some(detail) = query::build_detail(records, Vec::new(), &|_| String::new()) {
                    if filter
                        .status
                        .as_deref()
                        .is_none_or(|s| s == detail.summary.status)
                    {
                        out.push(detail.summary);
                    }
                }
            }
            Ok(out)
        })
    }

    /// Everything about one run; `None` if the journal has no such run.
    pub fn run(&self, run_id: &str) -> Result<Option<RunDetail>, StoreError> {
        let (records, approvals) = self.query(|index| {
            let records = index.run_records(run_id)?;
            let mut approvals: Vec<Record> = Vec::new();
            for id in query::approvals_mentioned(&records) {
                approvals.extend(index.approval_records(&id)?);
            }
            Ok((records, approvals))
        })?;
        let mut approvals = approvals;
        approvals.sort_by_key(|r| r.seq);
        approvals.dedup_by_key(|r| r.seq);
        let dir = self.inner.data_dir.clone();
        Ok(query::build_detail(records, approvals, &|sha| {
            png::path_for(&dir, sha).display().to_string()
        }))
    }

    /// ApprovalRequested / Decided / Used / Refused records mentioning `approval_id`.
    pub fn approval_records(&self, approval_id: &str) -> Result<Vec<Record>, StoreError> {
        self.query(|q| q.approval_records(approval_id))
    }

    /// Every schedule record, in sequence order (the `schedule` module folds them).
    pub fn schedule_records(&self) -> Result<Vec<Record>, StoreError> {
        self.query(|q| q.schedule_records())
    }

    /// Every pause and resume record, in sequence order (the `pause` module folds them).
    pub fn pause_records(&self) -> Result<Vec<Record>, StoreError> {
        self.query(|q| q.pause_records())
    }

    /// Every approval id the journal mentions, sorted.
    pub fn approval_ids(&self) -> Result<Vec<String>, StoreError> {
        self.query(|q| q.approval_ids())
    }

    /// Every record of the journal in journal (seq) order, read from `journal.jsonl` itself
    /// (complete lines only; not the index), or from the shared journal when there is one. Reads the whole file: meant for reports such as
    /// `clerk stats`, not for hot paths.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        if let Some(shared) = &self.inner.shared {
            return replica::all_records(&**shared);
        }
        let path = self.journal_path();
        let bytes = journal::read_complete_from(&self.inner.reader, &path, 0)?;
        let (lines, _) = journal::lines(&bytes);
        let mut out = Vec::with_capacity(lines.len());
        for (offset, line) in lines {
            let parsed = record::parse_line(line).map_err(|e| {
                StoreError::Other(format!(
                    "journal line at byte {offset} is unreadable: {e} (run `clerk verify`)"
                ))
            })?;
            out.push(parsed.record);
        }
        Ok(out)
    }

    /// Evidence records that reference the PNG with this hash.
    pub fn evidence_records(&self, sha256: &str) -> Result<Vec<Record>, StoreError> {
        self.query(|q| q.evidence_records(sha256))
    }

    /// Drops the index and rebuilds it from the journal; checks referenced files exist.
    pub fn reindex(&self) -> Result<ReindexReport, StoreError> {
        self.catch_up()?;
        let shared = match &self.inner.shared {
            Some(s) => Some((s.describe(), s.reindex()?)),
            None => None,
        };
        let mut index = lock_recover(&self.inner.index);
        index.clear()?;
        index.sync(&self.inner.reader, &self.journal_path())?;
        let bytes = journal::read_complete_from(&self.inner.reader, &self.journal_path(), 0)?;
        let mut records = 0u64;
        let mut shas = std::collections::BTreeSet::new();
        for (_, line) in journal::lines(&bytes).0 {
            records += 1;
            if let Ok(p) = record::parse_line(line) {
                if let Event::EvidenceCaptured { sha256, .. } = p.record.event {
                    shas.insert(sha256);
                }
            }
        }
        let missing_screenshots = shas
            .iter()
            .filter(|s| !self.screenshot_path(s).exists())
            .cloned()
            .collect();
        Ok(ReindexReport {
            records,
            runs: index.run_count()?,
            screenshots: shas.len(),
            missing_screenshots,
            persistent: index.is_persistent(),
            shared,
        })
    }

    /// The chain head: the last complete record in the journal (`None` when empty).
    pub fn head(&self) -> Result<Option<Appended>, StoreError> {
        self.catch_up()?;
        let path = self.journal_path();
        let mut tail = journal::tail(&self.inner.reader, &path)?;
        loop {
            match tail {
                Tail::Clean { head, .. } => {
                    return Ok(head.map(|(seq, hash)| Appended { seq, hash }))
                }
                Tail::Torn { keep, .. } => {
                    tail = journal::tail_at(&self.inner.reader, &path, keep)?
                }
            }
        }
    }
}
