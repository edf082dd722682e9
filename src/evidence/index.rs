//! The sled index: the only file in clerk that imports sled.
//!
//! The index is a cache of the journal, never the only copy of anything. One sled tree holds
//! everything under prefixed keys (`\0` separates variable parts; seqs are 8-byte big-endian
//! so they sort numerically):
//!
//! | key                                   | value        | what for                       |
//! |---------------------------------------|--------------|--------------------------------|
//! | `s:` seq                              | journal line | every record by seq            |
//! | `run:` run_id `\0` seq                | -            | records of a run               |
//! | `runs:` run_id                        | seq          | every run                      |
//! | `ch:` channel `\0` run_id             | -            | runs by channel                |
//! | `case:` case_ref `\0` run_id          | -            | runs by case reference         |
//! | `time:` started ts `\0` run_id        | -            | runs by time                   |
//! | `open:` run_id                        | owner        | runs started and not ended     |
//! | `ev:` sha256 `\0` seq                 | -            | evidence by PNG hash           |
//! | `ap:` approval_id `\0` seq            | -            | approval records               |
//! | `apid:` approval_id                   | -            | every approval id              |
//! | `sch:` seq                            | -            | schedule records               |
//! | `pause:` seq                          | -            | pause and resume records       |
//! | `meta`                                | see [`Meta`] | how far the journal is indexed |
//!
//! Every record is written in a sled transaction together with `meta` (one transaction per
//! group-committed batch of appends, or per chunk of lines when catching up), so after a crash
//! the index is a consistent prefix of the journal and catches up from `meta.end`. sled's
//! flush is not a full fsync and a hard kill can damage it: [`Index::sync`] checks `meta`
//! against the journal bytes and rebuilds from scratch when they disagree or sled fails.
//!
//! Only one process may open a sled directory. The store that gets `locks/index.lock` owns
//! `index/`; every other store builds an ephemeral (temporary) sled from the journal.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::journal::{lines, read_complete_from};
use super::lock::FileLock;
use super::record::{parse_line, sha256_hex};
use super::{Event, Record, StoreError};

/// Directory of the persistent index inside the data directory.
pub const INDEX_DIR: &str = "index";
/// Lock file that says which store owns `index/`.
pub const INDEX_LOCK: &str = "locks/index.lock";

const META: &[u8] = b"meta";
/// Lines indexed per sled transaction when catching up from the journal.
const SYNC_CHUNK: usize = 256;

/// One change to the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
}

fn key(prefix: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

fn seq_key(prefix: &str, name: &str, seq: u64) -> Vec<u8> {
    key(prefix, &[name.as_bytes(), &seq.to_be_bytes()])
}

/// What one record is filed under: the one place that decides which query finds a record,
/// shared by the sled index ([`ops_for`]) and the shared journal's index in PostgreSQL
/// (`db::journal`), so both answer every query alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    /// The run the record belongs to ([`Event::run_id`]).
    pub run_id: Option<String>,
    /// The approval an approval record is about ([`approval_of`]).
    pub approval_id: Option<String>,
    /// The PNG hash of an evidence record.
    pub sha256: Option<String>,
    /// Set on `run_started`.
    pub start: Option<Start>,
    /// `run_finished` or `run_interrupted`: the run is no longer open.
    pub ends_run: bool,
    /// `run_interrupted`: the run was declared over while its process may still live (see
    /// [`continues_run`]).
    pub interrupts_run: bool,
    /// A schedule record.
    pub schedule: bool,
    /// A pause or resume record.
    pub pause: bool,
}

/// What a `run_started` record is filed under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Start {
    pub channel: String,
    pub case_ref: Option<String>,
    /// The record's `ts` (runs are listed in start order).
    pub ts: String,
    /// The store that runs it (see [`super::Store::owner`]).
    pub owner: String,
    /// The approval a submit run uses.
    pub approval_id: Option<String>,
}

/// What `record` is filed under.
pub fn keys_of(record: &Record) -> Keys {
    let start = match &record.event {
        Event::RunStarted {
            channel,
            case_ref,
            owner,
            approval_id,
            ..
        } => Some(Start {
            channel: channel.clone(),
            case_ref: case_ref.clone(),
            ts: record.ts.clone(),
            owner: owner.clone(),
            approval_id: approval_id.clone(),
        }),
        _ => None,
    };
    Keys {
        run_id: record.event.run_id().map(str::to_owned),
        approval_id: approval_of(&record.event).map(str::to_owned),
        sha256: match &record.event {
            Event::EvidenceCaptured { sha256, .. } => Some(sha256.clone()),
            _ => None,
        },
        start,
        ends_run: matches!(
            record.event,
            Event::RunFinished { .. } | Event::RunInterrupted { .. }
        ),
        interrupts_run: matches!(record.event, Event::RunInterrupted { .. }),
        schedule: record.event.schedule_name().is_some(),
        pause: matches!(record.event, Event::Pause { .. }),
    }
}

/// Whether `event` is a step of its run's own progress (what only the process running it
/// appends): once the run is interrupted, a shared journal refuses these, so a process that
/// was declared gone (its node stopped heartbeating) and comes back cannot continue the run
/// behind the interruption. Records about a run from outside it (a blocked request, a
/// refusal, a retried or dead-lettered job, a stored blob) are still accepted.
pub fn continues_run(event: &Event) -> bool {
    matches!(
        event,
        Event::StepFinished { .. }
            | Event::CaseChecked { .. }
            | Event::EvidenceCaptured { .. }
            | Event::ResponseRecorded { .. }
            | Event::RequestAllowed { .. }
            | Event::RunFinished { .. }
            | Event::RunInterrupted { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalUsed { .. }
    )
}

/// The index entries one record contributes (also used by verify to compute what the index
/// should contain).
pub fn ops_for(record: &Record, line: &[u8]) -> Vec<Op> {
    let seq = record.seq;
    let k = keys_of(record);
    let mut ops = vec![Op::Put(key("s:", &[&seq.to_be_bytes()]), line.to_vec())];
    if let Some(run_id) = &k.run_id {
        ops.push(Op::Put(seq_key("run:", run_id, seq), Vec::new()));
    }
    if let (Some(start), Some(run_id)) = (&k.start, &k.run_id) {
        ops.push(Op::Put(
            key("runs:", &[run_id.as_bytes()]),
            seq.to_be_bytes().to_vec(),
        ));
        ops.push(Op::Put(
            key("ch:", &[start.channel.as_bytes(), run_id.as_bytes()]),
            Vec::new(),
        ));
        if let Some(case) = &start.case_ref {
            ops.push(Op::Put(
                key("case:", &[case.as_bytes(), run_id.as_bytes()]),
                Vec::new(),
            ));
        }
        ops.push(Op::Put(
            key("time:", &[start.ts.as_bytes(), run_id.as_bytes()]),
            Vec::new(),
        ));
        ops.push(Op::Put(
            key("open:", &[run_id.as_bytes()]),
            start.owner.as_bytes().to_vec(),
        ));
        if let Some(id) = &start.approval_id {
            ops.push(Op::Put(key("apid:", &[id.as_bytes()]), Vec::new()));
        }
    }
    if let (true, Some(run_id)) = (k.ends_run, &k.run_id) {
        ops.push(Op::Del(key("open:", &[run_id.as_bytes()])));
    }
    if let Some(sha256) = &k.sha256 {
        ops.push(Op::Put(seq_key("ev:", sha256, seq), Vec::new()));
    }
    if let Some(id) = &k.approval_id {
        ops.push(Op::Put(seq_key("ap:", id, seq), Vec::new()));
        ops.push(Op::Put(key("apid:", &[id.as_bytes()]), Vec::new()));
    }
    if k.schedule {
        ops.push(Op::Put(key("sch:", &[&seq.to_be_bytes()]), Vec::new()));
    }
    if k.pause {
        ops.push(Op::Put(key("pause:", &[&seq.to_be_bytes()]), Vec::new()));
    }
    ops
}

/// Which runs [`Queries::runs_by`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Channel,
    Case,
}

/// The index's queries: what `runs list`, `runs show`, `approvals`, the console and the
/// schedule and pause folds ask. The sled [`Index`] answers them in the embedded mode; the
/// shared journal's index in PostgreSQL (`db::journal`) answers them in cluster mode with
/// `journal = "database"`, straight from the database.
pub trait Queries {
    /// Records of a run, in seq order.
    fn run_records(&self, run_id: &str) -> Result<Vec<Record>, StoreError>;
    /// Approval records mentioning `approval_id`, in seq order.
    fn approval_records(&self, approval_id: &str) -> Result<Vec<Record>, StoreError>;
    /// Evidence records of a PNG hash, in seq order.
    fn evidence_records(&self, sha256: &str) -> Result<Vec<Record>, StoreError>;
    /// Every schedule record, in seq order.
    fn schedule_records(&self) -> Result<Vec<Record>, StoreError>;
    /// Every pause and resume record, in seq order.
    fn pause_records(&self) -> Result<Vec<Record>, StoreError>;
    /// Every approval id, sorted.
    fn approval_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Runs started at or after `since_ts` (same format as record `ts`), in start order
    /// (ties by run id).
    fn runs_since(&self, since_ts: Option<&str>) -> Result<Vec<String>, StoreError>;
    /// Run ids of a channel or a case reference, sorted.
    fn runs_by(&self, by: By, name: &str) -> Result<Vec<String>, StoreError>;
    /// Runs started and neither finished nor interrupted, with their owners, by run id.
    fn open_runs(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Number of runs.
    fn run_count(&self) -> Result<usize, StoreError>;
}

/// The approval an approval record (requested, decided, used, refused) is about.
pub fn approval_of(event: &Event) -> Option<&str> {
    match event {
        Event::ApprovalRequested { approval_id, .. }
        | Event::ApprovalDecided { approval_id, .. }
        | Event::ApprovalUsed { approval_id, .. } => Some(approval_id),
        Event::Refused { approval_id, .. } => approval_id.as_deref(),
        _ => None,
    }
}

/// How far the index has read the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Highest seq indexed (0 when none).
    pub last_seq: u64,
    /// Start offset of the last line read.
    pub line_start: u64,
    /// Offset just past the last line read (its `\n`).
    pub end: u64,
    /// SHA-256 of the last line's raw bytes: proves the journal still has that line there.
    pub line_digest: String,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24 + 64);
        v.extend_from_slice(&self.last_seq.to_be_bytes());
        v.extend_from_slice(&self.line_start.to_be_bytes());
        v.extend_from_slice(&self.end.to_be_bytes());
        v.extend_from_slice(self.line_digest.as_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Meta> {
        if v.len() != 24 + 64 {
            return None;
        }
        let n = |i: usize| {
            v.get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        Some(Meta {
            last_seq: n(0)?,
            line_start: n(8)?,
            end: n(16)?,
            line_digest: String::from_utf8(v[24..].to_vec()).ok()?,
        })
    }
}

/// Applies ops to an in-memory map exactly as they are applied to sled (verify uses it).
pub fn apply_to_map(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: Vec<Op>) {
    for op in ops {
        match op {
            Op::Put(k, v) => {
                map.insert(k, v);
            }
            Op::Del(k) => {
                map.remove(&k);
            }
        }
    }
}

/// The index entries (without `meta`) the journal's records up to `max_seq` should produce,
/// and how many records lie beyond `max_seq` (not indexed yet). Comparing by seq rather than
/// by byte offset keeps the comparison meaningful after the journal was edited.
pub fn expected_entries(bytes: &[u8], max_seq: u64) -> (BTreeMap<Vec<u8>, Vec<u8>>, usize) {
    let mut map = BTreeMap::new();
    let mut beyond = 0;
    for (_, line) in lines(bytes).0 {
        if let Ok(parsed) = parse_line(line) {
            if parsed.record.seq <= max_seq {
                apply_to_map(&mut map, ops_for(&parsed.record, line));
            } else {
                beyond += 1;
            }
        }
    }
    (map, beyond)
}

fn sled_err(context: &str) -> impl FnOnce(sled::Error) -> StoreError + '_ {
    move |e| StoreError::Index(format!("{context}: {e}"))
}

/// An open index: persistent (`index/`) or ephemeral.
pub struct Index {
    db: sled::Db,
    meta: Meta,
    persistent: Option<PathBuf>,
    _lock: Option<FileLock>,
}

/// Opening the persistent index outside a store (verify).
pub enum Peek {
    /// Another store owns it.
    InUse,
    /// Not read: the caller leaves the index out of this check on purpose.
    Skipped,
    /// There is no `index/` directory.
    Missing,
    /// sled could not open it.
    Damaged(String),
    /// Its entries (without `meta`) and its meta.
    Entries(BTreeMap<Vec<u8>, Vec<u8>>, Option<Meta>),
}

/// Every entry of an index (without `meta`) and its meta.
fn entries(db: &sled::Db) -> Result<Peek, StoreError> {
    let mut map = BTreeMap::new();
    let mut meta = None;
    for item in db.iter() {
        let (k, v) = item.map_err(sled_err("reading the index"))?;
        if &*k == META {
            meta = Meta::decode(&v);
        } else {
            map.insert(k.to_vec(), v.to_vec());
        }
    }
    Ok(Peek::Entries(map, meta))
}

/// Opens the sled directory. We hold `locks/index.lock` when we get here, so sled's own
/// file lock can only be held by a store of this process that has just been dropped: sled
/// releases it when its background flusher exits, a moment after the last handle is gone.
/// That case is waited out (up to 3 s) rather than taken for damage.
fn open_sled(dir: &Path) -> Result<sled::Db, String> {
    let mut tries = 0;
    loop {
        match open_sled_once(dir) {
            Err(e) if e.contains("could not acquire lock") && tries < 30 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn open_sled_once(dir: &Path) -> Result<sled::Db, String> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(64 * 1024 * 1024);
    // sled may panic on a damaged directory instead of returning an error.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        config.open().map_err(|e| e.to_string())
    })) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("sled panicked while opening it".to_owned()),
    }
}

impl Index {
    /// Opens the persistent index if no other store owns it, otherwise an ephemeral one.
    /// A persistent index sled cannot open is deleted and recreated (it is rebuilt by
    /// [`Index::sync`]).
    pub fn open(data_dir: &Path) -> Result<Index, StoreError> {
        let Some(lock) = FileLock::try_exclusive(&data_dir.join(INDEX_LOCK))? else {
            return Self::ephemeral();
        };
        let dir = data_dir.join(INDEX_DIR);
        let db = match open_sled(&dir) {
            Ok(db) => db,
            Err(why) => {
                tracing::warn!(index = %dir.display(), %why, "index damaged; rebuilding it from the journal");
                std::fs::remove_dir_all(&dir).map_err(|source| StoreError::Io {
                    path: dir.clone(),
                    source,
                })?;
                open_sled(&dir).map_err(|e| {
                    StoreError::Index(format!("cannot create {}: {e}", dir.display()))
                })?
            }
        };
        let meta = Self::read_meta(&db)?;
        Ok(Index {
            db,
            meta,
            persistent: Some(dir),
            _lock: Some(lock),
        })
    }

    /// A temporary index for a store that does not own `index/`.
    pub fn ephemeral() -> Result<Index, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .flush_every_ms(None)
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .map_err(sled_err("cannot create an ephemeral index"))?;
        Ok(Index {
            db,
            meta: Meta::default(),
            persistent: None,
            _lock: None,
        })
    }

    /// Reads the persistent index without keeping it open (for verify).
    pub fn peek(data_dir: &Path) -> Result<Peek, StoreError> {
        let dir = data_dir.join(INDEX_DIR);
        if !dir.exists() {
            return Ok(Peek::Missing);
        }
        let Some(_lock) = FileLock::try_exclusive(&data_dir.join(INDEX_LOCK))? else {
            return Ok(Peek::InUse);
        };
        match open_sled(&dir) {
            Ok(db) => entries(&db),
            Err(e) => Ok(Peek::Damaged(e)),
        }
    }

    /// This open index's entries, as [`Index::peek`] reads a closed one (for verify in the
    /// process that owns it). An ephemeral index is not the shared one: `InUse`.
    pub fn peek_open(&self) -> Result<Peek, StoreError> {
        if self.persistent.is_none() {
            return Ok(Peek::InUse);
        }
        entries(&self.db)
    }

    fn read_meta(db: &sled::Db) -> Result<Meta, StoreError> {
        Ok(db
            .get(META)
            .map_err(sled_err("reading index meta"))?
            .and_then(|v| Meta::decode(&v))
            .unwrap_or_default())
    }

    /// True when this is the shared `index/` rather than an ephemeral copy.
    pub fn is_persistent(&self) -> bool {
        self.persistent.is_some()
    }

    /// How far the journal is indexed.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Empties the index.
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.db.clear().map_err(sled_err("clearing the index"))?;
        self.meta = Meta::default();
        Ok(())
    }

    /// Does the journal still hold, at `meta.line_start..meta.end`, the line last indexed?
    fn still_matches(&self, journal: &File) -> bool {
        use std::os::unix::fs::FileExt;
        if self.meta.end == 0 {
            return self.db.is_empty();
        }
        let Some(len) = self.meta.end.checked_sub(self.meta.line_start) else {
            return false;
        };
        let mut buf = vec![0u8; len as usize];
        if journal
            .read_exact_at(&mut buf, self.meta.line_start)
            .is_err()
        {
            return false;
        }
        buf.last() == Some(&b'\n') && sha256_hex(&buf[..buf.len() - 1]) == self.meta.line_digest
    }

    /// Brings the index up to the journal's last complete line; rebuilds it from scratch when
    /// it no longer matches the journal (journal replaced, truncated, index damaged).
    pub fn sync(&mut self, journal: &File, journal_path: &Path) -> Result<(), StoreError> {
        if !self.still_matches(journal) {
            if self.meta.end > 0 || !self.db.is_empty() {
                tracing::warn!("index does not match the journal; rebuilding it");
            }
            self.clear()?;
        }
        let bytes = read_complete_from(journal, journal_path, self.meta.end)?;
        let base = self.meta.end;
        let lines: Vec<(u64, &[u8])> = lines(&bytes)
            .0
            .into_iter()
            .map(|(off, line)| (base + off, line))
            .collect();
        for chunk in lines.chunks(SYNC_CHUNK) {
            self.apply_lines(chunk)?;
        }
        Ok(())
    }

    /// Indexes consecutive journal lines `(start offset, line without '\n')` in one sled
    /// transaction together with `meta`, so the index stays a prefix of the journal. A line
    /// that is not a readable record only moves `meta` (verify reports it).
    pub fn apply_lines(&mut self, lines: &[(u64, &[u8])]) -> Result<(), StoreError> {
        let Some(&(last_start, last_line)) = lines.last() else {
            return Ok(());
        };
        let mut ops = Vec::new();
        let mut last_seq = self.meta.last_seq;
        for &(start, line) in lines {
            match parse_line(line) {
                Ok(parsed) => {
                    last_seq = last_seq.max(parsed.record.seq);
                    ops.extend(ops_for(&parsed.record, line));
                }
                Err(e) => {
                    tracing::warn!(offset = start, error = %e, "journal line is not a record; not indexed");
                }
            }
        }
        let meta = Meta {
            last_seq,
            line_start: last_start,
            end: last_start + last_line.len() as u64 + 1,
            line_digest: sha256_hex(last_line),
        };
        let encoded = meta.encode();
        self.db
            .transaction(|tx| {
                for op in &ops {
                    match op {
                        Op::Put(k, v) => {
                            tx.insert(k.as_slice(), v.as_slice())?;
                        }
                        Op::Del(k) => {
                            tx.remove(k.as_slice())?;
                        }
                    }
                }
                tx.insert(META, encoded.as_slice())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| StoreError::Index(format!("writing the index: {e:?}")))?;
        self.meta = meta;
        Ok(())
    }

    /// The journal line stored for `seq`.
    pub fn line(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get(key("s:", &[&seq.to_be_bytes()]))
            .map_err(sled_err("reading the index"))?
            .map(|v| v.to_vec()))
    }

    fn records_of(&self, seqs: Vec<u64>) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(line) = self.line(seq)? {
                if let Ok(parsed) = parse_line(&line) {
                    out.push(parsed.record);
                }
            }
        }
        Ok(out)
    }

    fn seqs_under(&self, prefix: Vec<u8>) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(&prefix) {
            let (k, _) = item.map_err(sled_err("reading the index"))?;
            if let Some(tail) = k.get(k.len().saturating_sub(8)..) {
                if k.len() == prefix.len() + 8 {
                    if let Ok(b) = <[u8; 8]>::try_from(tail) {
                        out.push(u64::from_be_bytes(b));
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn names_under(&self, prefix: &[u8]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(prefix) {
            let (k, v) = item.map_err(sled_err("reading the index"))?;
            out.push((
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                v.to_vec(),
            ));
        }
        Ok(out)
    }
}

impl Queries for Index {
    /// Records of a run, in seq order.
    fn run_records(&self, run_id: &str) -> Result<Vec<Record>, StoreError> {
        let mut prefix = key("run:", &[run_id.as_bytes()]);
        prefix.push(0);
        let seqs = self.seqs_under(prefix)?;
        self.records_of(seqs)
    }

    /// Approval records mentioning `approval_id`, in seq order.
    fn approval_records(&self, approval_id: &str) -> Result<Vec<Record>, StoreError> {
        let mut prefix = key("ap:", &[approval_id.as_bytes()]);
        prefix.push(0);
        let seqs = self.seqs_under(prefix)?;
        self.records_of(seqs)
    }

    /// Evidence records of a PNG hash.
    fn evidence_records(&self, sha256: &str) -> Result<Vec<Record>, StoreError> {
        let mut prefix = key("ev:", &[sha256.as_bytes()]);
        prefix.push(0);
        let seqs = self.seqs_under(prefix)?;
        self.records_of(seqs)
    }

    /// Every schedule record (added, paused, resumed, removed, fired, skipped, missed), in
    /// seq order.
    fn schedule_records(&self) -> Result<Vec<Record>, StoreError> {
        let seqs = self.seqs_under(b"sch:".to_vec())?;
        self.records_of(seqs)
    }

    /// Every pause and resume record, in seq order.
    fn pause_records(&self) -> Result<Vec<Record>, StoreError> {
        let seqs = self.seqs_under(b"pause:".to_vec())?;
        self.records_of(seqs)
    }

    /// Every approval id, sorted.
    fn approval_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .names_under(b"apid:")?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// Runs started at or after `since_ts` (same format as record `ts`), in start order.
    fn runs_since(&self, since_ts: Option<&str>) -> Result<Vec<String>, StoreError> {
        let start = key("time:", &[since_ts.unwrap_or("").as_bytes()]);
        let mut out = Vec::new();
        for item in self.db.range(start..) {
            let (k, _) = item.map_err(sled_err("reading the index"))?;
            if !k.starts_with(b"time:") {
                break;
            }
            if let Some(pos) = k.iter().position(|&b| b == 0) {
                out.push(String::from_utf8_lossy(&k[pos + 1..]).into_owned());
            }
        }
        Ok(out)
    }

    /// Run ids filed under `ch:`/`case:` + `name`.
    fn runs_by(&self, by: By, name: &str) -> Result<Vec<String>, StoreError> {
        let prefix = match by {
            By::Channel => "ch:",
            By::Case => "case:",
        };
        let mut p = key(prefix, &[name.as_bytes()]);
        p.push(0);
        Ok(self.names_under(&p)?.into_iter().map(|(n, _)| n).collect())
    }

    /// Runs started and neither finished nor interrupted, with their owners.
    fn open_runs(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .names_under(b"open:")?
            .into_iter()
            .map(|(run, owner)| (run, String::from_utf8_lossy(&owner).into_owned()))
            .collect())
    }

    /// Number of runs indexed.
    fn run_count(&self) -> Result<usize, StoreError> {
        Ok(self.db.scan_prefix(b"runs:").count())
    }
}
