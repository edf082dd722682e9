//! Verification of a data directory and of an export bundle.
//!
//! [`verify`] reads the journal and the files directly (never trusting the index), so it
//! works while another process holds the store. It checks, in this order:
//!
//! 1. every journal line: readable, its own hash matches its content (parallel);
//! 2. the chain: seqs 1, 2, 3, ... in file order and every `prev` equal to the previous
//!    line's `hash` (always the whole chain, whatever the scope: chain integrity is global);
//! 3. `checkpoints.jsonl`: the journal still reaches every exported head with the same hash;
//! 4. the scope's PNGs: present, same length and SHA-256 as their name and record (parallel,
//!    on every core: large stores verify at the speed of SHA-256);
//! 5. the sled index, if it can be opened: its entries are exactly what the journal prefix
//!    it has read produces.
//!
//! A journal that ends without `\n` (a crash mid-append not yet repaired by an open) is an
//! unacknowledged record: reported as a note, not a problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::index::{self, Index, Peek};
use super::journal::{self, lines};
use super::png::{hash_file, path_for};
use super::query::approvals_mentioned;
use super::record::{parse_line, ParsedLine, RecordError, GENESIS_PREV};
use super::{Appended, Event, Record, StoreError};

/// What to verify (the chain is always checked whole; the scope picks the PNGs re-hashed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", content = "id", rename_all = "snake_case")]
pub enum Scope {
    All,
    Run(String),
    Case(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("all"),
            Scope::Run(r) => write!(f, "run {r}"),
            Scope::Case(c) => write!(f, "case {c}"),
        }
    }
}

/// File (in the data directory) that remembers every export's chain head.
pub const CHECKPOINTS: &str = "checkpoints.jsonl";

/// One line of `checkpoints.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Chain head the bundle covered.
    pub seq: u64,
    pub hash: String,
    /// The CheckpointExported record itself.
    pub checkpoint_seq: u64,
    pub checkpoint_hash: String,
    pub out: String,
    pub at: String,
}

/// One thing wrong, naming the record seq (and journal line) or the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    UnreadableLine {
        line: u64,
        after_seq: Option<u64>,
        error: String,
    },
    RecordEdited {
        seq: u64,
        line: u64,
        stored_hash: String,
        computed_hash: String,
    },
    BrokenLink {
        seq: u64,
        line: u64,
        prev: String,
        expected: String,
    },
    RecordsMissing {
        line: u64,
        from_seq: u64,
        to_seq: u64,
    },
    Reordered {
        seq: u64,
        line: u64,
        after_seq: u64,
    },
    Truncated {
        checkpoint_seq: u64,
        journal_last_seq: u64,
        exported_to: String,
        at: String,
    },
    CheckpointMismatch {
        seq: u64,
        expected_hash: String,
        found_hash: Option<String>,
        exported_to: String,
    },
    MissingFile {
        sha256: String,
        path: String,
        seqs: Vec<u64>,
    },
    FileMismatch {
        sha256: String,
        path: String,
        actual_sha256: String,
        expected_bytes: u64,
        actual_bytes: u64,
        seqs: Vec<u64>,
    },
    FileUnreadable {
        path: String,
        error: String,
        seqs: Vec<u64>,
    },
    IndexDisagrees {
        detail: String,
    },
    IndexDamaged {
        error: String,
    },
    /// The index exists but could not be compared (another process has it open): the check
    /// was skipped, so the result cannot be INTACT.
    IndexNotChecked {
        reason: String,
    },
    BundleFile {
        path: String,
        detail: String,
    },
    /// The journal does not extend a checkpoint the log signed (see `tlog`).
    SignedCheckpoint {
        size: u64,
        detail: String,
    },
    Manifest {
        detail: String,
    },
    /// A recorded response's WARC file does not hold what its journal record says.
    Warc {
        seq: u64,
        url: String,
        path: String,
        detail: String,
    },
}

fn seqs_text(seqs: &[u64]) -> String {
    seqs.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnreadableLine { line, after_seq, error } => write!(
                f,
                "journal line {line} (after record seq {}) is not a readable record: {error}",
                after_seq.map(|s| s.to_string()).unwrap_or_else(|| "none".into())
            ),
            Problem::RecordEdited { seq, line, stored_hash, computed_hash } => write!(
                f,
                "record seq {seq} (journal line {line}) was edited: its content hashes to {computed_hash}, not to its recorded hash {stored_hash}"
            ),
            Problem::BrokenLink { seq, line, prev, expected } => write!(
                f,
                "record seq {seq} (journal line {line}) does not link to record seq {}: prev is {prev}, expected {expected} (record seq {} was replaced or edited with a recomputed hash)",
                seq.saturating_sub(1),
                seq.saturating_sub(1)
            ),
            Problem::RecordsMissing { line, from_seq, to_seq } => {
                if from_seq == to_seq {
                    write!(f, "record seq {from_seq} is missing (removed before journal line {line})")
                } else {
                    write!(f, "records seq {from_seq}..{to_seq} are missing (removed before journal line {line})")
                }
            }
            Problem::Reordered { seq, line, after_seq } => write!(
                f,
                "record seq {seq} (journal line {line}) comes right after record seq {after_seq}: records were reordered or duplicated"
            ),
            Problem::Truncated { checkpoint_seq, journal_last_seq, exported_to, at } => write!(
                f,
                "journal truncated: it ends at record seq {journal_last_seq}, but an export to {exported_to} at {at} checkpointed the chain at seq {checkpoint_seq}"
            ),
            Problem::CheckpointMismatch { seq, expected_hash, found_hash, exported_to } => match found_hash {
                Some(h) => write!(
                    f,
                    "record seq {seq} has hash {h}, but the export to {exported_to} checkpointed it as {expected_hash}"
                ),
                None => write!(
                    f,
                    "record seq {seq}, checkpointed by the export to {exported_to} with hash {expected_hash}, is not in the journal"
                ),
            },
            Problem::MissingFile { sha256: _, path, seqs } => {
                write!(f, "screenshot {path} is missing (referenced by record seq {})", seqs_text(seqs))
            }
            Problem::FileMismatch { sha256, path, actual_sha256, expected_bytes, actual_bytes, seqs } => write!(
                f,
                "screenshot {path} no longer matches: expected sha256 {sha256} ({expected_bytes} bytes), found {actual_sha256} ({actual_bytes} bytes) (record seq {})",
                seqs_text(seqs)
            ),
            Problem::FileUnreadable { path, error, seqs } => {
                write!(f, "screenshot {path} cannot be read: {error} (record seq {})", seqs_text(seqs))
            }
            Problem::IndexDisagrees { detail } => write!(f, "index disagrees with the journal: {detail} (`clerk reindex` rebuilds it)"),
            Problem::IndexDamaged { error } => write!(f, "index damaged: {error} (`clerk reindex` rebuilds it)"),
            Problem::IndexNotChecked { reason } => write!(f, "index not checked: {reason}"),
            Problem::BundleFile { path, detail } => write!(f, "bundle file {path}: {detail}"),
            Problem::Manifest { detail } => write!(f, "manifest.json: {detail}"),
            Problem::SignedCheckpoint { size, detail } => {
                write!(f, "signed checkpoint of size {size}: {detail}")
            }
            Problem::Warc { seq, url, path, detail } => write!(
                f,
                "recorded response {url} (record seq {seq}, {path}): {detail}"
            ),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct VerifyReport {
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not integrity failures.
    pub notes: Vec<String>,
    /// The last record of the journal (of the bundle: its manifest's chain head).
    pub head: Option<Appended>,
    pub records_checked: u64,
    pub files_checked: u64,
    pub bytes_hashed: u64,
    /// What was verified (`all`, `run R`, `case C`, `bundle DIR`).
    pub scope: String,
    /// Whether the index was compared with the journal.
    pub index_checked: bool,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "PROBLEM: {p}")?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        writeln!(
            f,
            "checked {} records, {} files ({:.1} MiB hashed), scope {}",
            self.records_checked,
            self.files_checked,
            self.bytes_hashed as f64 / (1024.0 * 1024.0),
            self.scope
        )?;
        match &self.head {
            Some(h) => writeln!(f, "chain head: seq {} hash {}", h.seq, h.hash)?,
            None => writeln!(f, "chain head: none (empty journal)")?,
        }
        if self.ok() {
            writeln!(f, "result: INTACT")
        } else {
            writeln!(f, "result: {} PROBLEM(S)", self.problems.len())
        }
    }
}

fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Parses and re-hashes lines on every core. Results are in line order.
pub(crate) fn parse_parallel(lines: &[(u64, &[u8])]) -> Vec<Result<ParsedLine, RecordError>> {
    let n = workers().min(lines.len().max(1));
    let chunk = lines.len().div_ceil(n).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || part.iter().map(|(_, l)| parse_line(l)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// A journal line that parsed, with its position.
pub(crate) struct Entry {
    /// 1-based line number.
    pub line_no: u64,
    pub parsed: ParsedLine,
}

/// Checks own hashes and the chain; returns the readable entries.
fn check_chain(
    lines: &[(u64, &[u8])],
    parsed: Vec<Result<ParsedLine, RecordError>>,
    problems: &mut Vec<Problem>,
) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(lines.len());
    for (i, result) in parsed.into_iter().enumerate() {
        let line_no = i as u64 + 1;
        match result {
            Ok(p) => entries.push(Entry { line_no, parsed: p }),
            Err(e) => problems.push(Problem::UnreadableLine {
                line: line_no,
                after_seq: entries.last().map(|e: &Entry| e.parsed.record.seq),
                error: e.to_string(),
            }),
        }
    }
    let present: BTreeSet<u64> = entries.iter().map(|e| e.parsed.record.seq).collect();
    let mut prev_seq = 0u64;
    let mut prev_hash = GENESIS_PREV.to_owned();
    for e in &entries {
        let r = &e.parsed.record;
        if !e.parsed.intact() {
            problems.push(Problem::RecordEdited {
                seq: r.seq,
                line: e.line_no,
                stored_hash: r.hash.clone(),
                computed_hash: e.parsed.computed_hash.clone(),
            });
        }
        if r.seq == prev_seq + 1 {
            if r.prev != prev_hash {
                problems.push(Problem::BrokenLink {
                    seq: r.seq,
                    line: e.line_no,
                    prev: r.prev.clone(),
                    expected: prev_hash.clone(),
                });
            }
        } else if r.seq > prev_seq + 1 {
            // Seqs skipped here: absent everywhere means removed; present elsewhere means moved.
            let mut gap_start = prev_seq + 1;
            let mut any_missing = false;
            for &s in present.range(prev_seq + 1..r.seq) {
                if s > gap_start {
                    problems.push(Problem::RecordsMissing {
                        line: e.line_no,
                        from_seq: gap_start,
                        to_seq: s - 1,
                    });
                    any_missing = true;
                }
                gap_start = s + 1;
            }
            if gap_start < r.seq {
                problems.push(Problem::RecordsMissing {
                    line: e.line_no,
                    from_seq: gap_start,
                    to_seq: r.seq - 1,
                });
                any_missing = true;
            }
            if !any_missing || present.range(prev_seq + 1..r.seq).next().is_some() {
                problems.push(Problem::Reordered {
                    seq: r.seq,
                    line: e.line_no,
                    after_seq: prev_seq,
                });
            }
        } else {
            problems.push(Problem::Reordered {
                seq: r.seq,
                line: e.line_no,
                after_seq: prev_seq,
            });
        }
        prev_seq = r.seq;
        prev_hash = r.hash.clone();
    }
    entries
}

/// Indices (into `records`) of the records a scope covers: the runs' own records plus the
/// approval records about approvals those runs requested or used.
pub(crate) fn select_scope(records: &[&Record], scope: &Scope) -> Result<Vec<usize>, StoreError> {
    let runs: BTreeSet<&str> = match scope {
        Scope::All => return Ok((0..records.len()).collect()),
        Scope::Run(id) => {
            if !records
                .iter()
                .any(|r| matches!(&r.event, Event::RunStarted { run_id, .. } if run_id == id))
            {
                return Err(StoreError::UnknownRun(id.clone()));
            }
            std::iter::once(id.as_str()).collect()
        }
        Scope::Case(case) => {
            let runs: BTreeSet<&str> = records
                .iter()
                .filter_map(|r| match &r.event {
                    Event::RunStarted {
                        run_id,
                        case_ref: Some(c),
                        ..
                    } if c == case => Some(run_id.as_str()),
                    _ => None,
                })
                .collect();
            if runs.is_empty() {
                return Err(StoreError::UnknownCase(case.clone()));
            }
            runs
        }
    };
    let own: Vec<Record> = records
        .iter()
        .filter(|r| r.event.run_id().is_some_and(|id| runs.contains(id)))
        .map(|r| (*r).clone())
        .collect();
    let approvals: BTreeSet<String> = approvals_mentioned(&own).into_iter().collect();
    Ok(records
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.event.run_id().is_some_and(|id| runs.contains(id))
                || index::approval_of(&r.event).is_some_and(|a| approvals.contains(a))
        })
        .map(|(i, _)| i)
        .collect())
}

/// A PNG to re-hash: expected size and the records that reference it.
struct FileCheck {
    sha256: String,
    path: PathBuf,
    shown: String,
    bytes: u64,
    seqs: Vec<u64>,
}

/// Re-hashes files on every core; returns (problems, files checked, bytes hashed).
fn hash_files(checks: &[FileCheck]) -> (Vec<Problem>, u64, u64) {
    let next = AtomicUsize::new(0);
    let n = workers().min(checks.len().max(1));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    let mut problems = Vec::new();
                    let (mut files, mut bytes) = (0u64, 0u64);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(c) = checks.get(i) else { break };
                        files += 1;
                        match hash_file(&c.path) {
                            Ok((sha, len)) => {
                                bytes += len;
                                if sha != c.sha256 || len != c.bytes {
                                    problems.push(Problem::FileMismatch {
                                        sha256: c.sha256.clone(),
                                        path: c.shown.clone(),
                                        actual_sha256: sha,
                                        expected_bytes: c.bytes,
                                        actual_bytes: len,
                                        seqs: c.seqs.clone(),
                                    });
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                problems.push(Problem::MissingFile {
                                    sha256: c.sha256.clone(),
                                    path: c.shown.clone(),
                                    seqs: c.seqs.clone(),
                                })
                            }
                            Err(e) => problems.push(Problem::FileUnreadable {
                                path: c.shown.clone(),
                                error: e.to_string(),
                                seqs: c.seqs.clone(),
                            }),
                        }
                    }
                    (problems, files, bytes)
                })
            })
            .collect();
        let mut out = (Vec::new(), 0, 0);
        for h in handles {
            if let Ok((p, f, b)) = h.join() {
                out.0.extend(p);
                out.1 += f;
                out.2 += b;
            }
        }
        out.0.sort_by_key(|a| a.to_string());
        out
    })
}

fn file_checks<'a>(
    records: impl Iterator<Item = &'a Record>,
    path_of: &dyn Fn(&str) -> (PathBuf, String),
) -> Vec<FileCheck> {
    let mut by_sha: BTreeMap<String, FileCheck> = BTreeMap::new();
    for r in records {
        if let Event::EvidenceCaptured { sha256, bytes, .. } = &r.event {
            let (path, shown) = path_of(sha256);
            by_sha
                .entry(sha256.clone())
                .or_insert_with(|| FileCheck {
                    sha256: sha256.clone(),
                    path,
                    shown,
                    bytes: *bytes,
                    seqs: Vec::new(),
                })
                .seqs
                .push(r.seq);
        }
    }
    by_sha.into_values().collect()
}

/// Checks the WARC file of every `response_recorded` record: its SHA-256, both records'
/// digests, the response record's id, payload digest and member length.
fn warc_checks<'a>(
    records: impl Iterator<Item = &'a Record>,
    path_of: &dyn Fn(&str) -> (PathBuf, String),
) -> (Vec<Problem>, u64, u64) {
    let mut problems = Vec::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    for r in records {
        let Event::ResponseRecorded {
            url,
            record_id,
            warc_sha256,
            payload_digest,
            response_length,
            ..
        } = &r.event
        else {
            continue;
        };
        let (path, shown) = path_of(warc_sha256);
        let problem = |detail: String| Problem::Warc {
            seq: r.seq,
            url: url.clone(),
            path: shown.clone(),
            detail,
        };
        files += 1;
        match std::fs::read(&path) {
            Ok(data) => {
                bytes += data.len() as u64;
                if let Err(e) = super::warc::check(
                    &data,
                    warc_sha256,
                    record_id,
                    payload_digest,
                    *response_length,
                ) {
                    problems.push(problem(e.to_string()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(problem("the WARC file is missing".into()))
            }
            Err(e) => problems.push(problem(format!("the WARC file cannot be read: {e}"))),
        }
    }
    (problems, files, bytes)
}

/// Reads `checkpoints.jsonl` (missing file: no checkpoints).
pub(crate) fn read_checkpoints(data_dir: &Path) -> Result<Vec<Checkpoint>, StoreError> {
    let path = data_dir.join(CHECKPOINTS);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StoreError::Io { path, source }),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Verifies a data directory. Works while other processes use the store.
pub fn verify(data_dir: &Path, scope: &Scope) -> Result<VerifyReport, StoreError> {
    verify_with(data_dir, scope, None)
}

/// [`verify`] of the journal and the files only: the index is left out on purpose, and the
/// report says so.
pub fn verify_without_index(data_dir: &Path, scope: &Scope) -> Result<VerifyReport, StoreError> {
    verify_with(data_dir, scope, Some(Peek::Skipped))
}

/// The journal's records in `scope`, read from the file (no index, no lock): what the
/// object-storage check (`evidence::blob::check_copies`) reads back. Lines that do not parse
/// are left out (`verify` itself reports them).
pub fn records_in_scope(data_dir: &Path, scope: &Scope) -> Result<Vec<Record>, StoreError> {
    let snapshot = journal::snapshot(data_dir)?;
    let (lines, _) = lines(&snapshot);
    let parsed: Vec<Record> = parse_parallel(&lines)
        .into_iter()
        .filter_map(|p| p.ok().map(|p| p.record))
        .collect();
    let refs: Vec<&Record> = parsed.iter().collect();
    let keep = select_scope(&refs, scope)?;
    Ok(keep.into_iter().map(|i| parsed[i].clone()).collect())
}

/// [`verify`] from the process that owns the store (the daemon): its open index is compared
/// with the journal instead of being skipped as "in use".
pub fn verify_store(store: &super::Store, scope: &Scope) -> Result<VerifyReport, StoreError> {
    store.catch_up()?;
    let peek = store.index_peek()?;
    verify_with(store.data_dir(), scope, Some(peek))
}

fn verify_with(
    data_dir: &Path,
    scope: &Scope,
    index: Option<Peek>,
) -> Result<VerifyReport, StoreError> {
    let journal_path = data_dir.join(journal::JOURNAL);
    if !journal_path.exists() {
        return Err(StoreError::BadInput(format!(
            "no evidence store at {}: {} does not exist",
            data_dir.display(),
            journal_path.display()
        )));
    }
    let snapshot = journal::snapshot(data_dir)?;
    let (lines, torn) = lines(&snapshot);
    let mut report = VerifyReport {
        scope: scope.to_string(),
        ..Default::default()
    };
    if !torn.is_empty() {
        report.notes.push(format!(
            "the journal ends with {} bytes of an unfinished record (a crash mid-append); it was never acknowledged and is set aside at the next open",
            torn.len()
        ));
    }
    let parsed = parse_parallel(&lines);
    let entries = check_chain(&lines, parsed, &mut report.problems);
    report.records_checked = lines.len() as u64;
    report.head = entries.last().map(|e| Appended {
        seq: e.parsed.record.seq,
        hash: e.parsed.record.hash.clone(),
    });

    // Checkpoints: the journal must still reach every exported head, unchanged.
    let last_seq = entries
        .iter()
        .map(|e| e.parsed.record.seq)
        .max()
        .unwrap_or(0);
    let by_seq: BTreeMap<u64, &str> = entries
        .iter()
        .rev()
        .map(|e| (e.parsed.record.seq, e.parsed.record.hash.as_str()))
        .collect();
    for cp in read_checkpoints(data_dir)? {
        if last_seq < cp.checkpoint_seq.max(cp.seq) {
            report.problems.push(Problem::Truncated {
                checkpoint_seq: cp.checkpoint_seq.max(cp.seq),
                journal_last_seq: last_seq,
                exported_to: cp.out.clone(),
                at: cp.at.clone(),
            });
        }
        for (seq, hash) in [(cp.seq, &cp.hash), (cp.checkpoint_seq, &cp.checkpoint_hash)] {
            let found = by_seq.get(&seq).map(|h| h.to_string());
            if seq <= last_seq && found.as_deref() != Some(hash.as_str()) {
                report.problems.push(Problem::CheckpointMismatch {
                    seq,
                    expected_hash: hash.clone(),
                    found_hash: found,
                    exported_to: cp.out.clone(),
                });
            }
        }
    }

    // Signed checkpoints: the journal must extend every one the log signed.
    let leaves: Vec<&str> = entries
        .iter()
        .map(|e| e.parsed.record.hash.as_str())
        .collect();
    signed_checkpoint_problems(data_dir, &leaves, &mut report);

    // The scope's PNGs.
    let records: Vec<&Record> = entries.iter().map(|e| &e.parsed.record).collect();
    let chosen = select_scope(&records, scope)?;
    let checks = file_checks(chosen.iter().map(|&i| records[i]), &|sha| {
        let p = path_for(data_dir, sha);
        let shown = p.display().to_string();
        (p, shown)
    });
    let (file_problems, files, bytes) = hash_files(&checks);
    report.problems.extend(file_problems);
    report.files_checked = files;
    report.bytes_hashed = bytes;
    let (warc_problems, files, bytes) = warc_checks(chosen.iter().map(|&i| records[i]), &|sha| {
        let p = super::warc::path_for(data_dir, sha);
        let shown = p.display().to_string();
        (p, shown)
    });
    report.problems.extend(warc_problems);
    report.files_checked += files;
    report.bytes_hashed += bytes;

    check_index(data_dir, &snapshot, &mut report, index)?;
    Ok(report)
}

/// Checks every signed checkpoint of `tlog/` against the journal's records (their hashes in
/// journal order): each is signed by one of the log's keys, covers no more records than the
/// journal holds, and has the root of the journal's first `size` records.
fn signed_checkpoint_problems(data_dir: &Path, hashes: &[&str], report: &mut VerifyReport) {
    use super::tlog;
    let mut push = |size: u64, detail: String| {
        report
            .problems
            .push(Problem::SignedCheckpoint { size, detail })
    };
    let keys = match tlog::verifiers(data_dir) {
        Ok(k) => k,
        Err(e) => return push(0, e.to_string()),
    };
    let mut all = match tlog::history(data_dir) {
        Ok(h) => h,
        Err(e) => return push(0, e.to_string()),
    };
    match tlog::latest(data_dir) {
        Ok(Some(l)) => all.push(l),
        Ok(None) => {}
        Err(e) => push(0, e.to_string()),
    }
    if all.is_empty() {
        return;
    }
    let mut tree = super::merkle::Tree::new();
    for h in hashes {
        match super::merkle::record_leaf(h) {
            Some(leaf) => tree.push(leaf),
            None => return push(0, "a record hash is malformed".into()),
        }
    }
    let mut checked = BTreeSet::new();
    for cp in all {
        let c = &cp.checkpoint;
        if !checked.insert((c.size, c.root)) {
            continue;
        }
        if cp.signed_by(&keys).is_none() {
            push(
                c.size,
                format!(
                    "not signed by any key in {} (forged or re-signed?)",
                    tlog::KEYS
                ),
            );
            continue;
        }
        if c.size > tree.size() {
            push(
                c.size,
                format!(
                    "the journal has {} records; records seq {}..{} were removed after the log signed them",
                    tree.size(),
                    tree.size() + 1,
                    c.size
                ),
            );
            continue;
        }
        match tree.root(c.size) {
            Ok(root) if root == c.root => {}
            _ => push(
                c.size,
                format!(
                    "the journal's first {} records no longer have the root the log signed (`{}`): a record at or before seq {} was changed, removed or reordered and the chain recomputed",
                    c.size,
                    c.origin,
                    c.size
                ),
            ),
        }
    }
}

fn describe_key(k: &[u8]) -> String {
    if let Some(rest) = k.strip_prefix(b"s:") {
        if let Ok(b) = <[u8; 8]>::try_from(rest) {
            return format!("record seq {}", u64::from_be_bytes(b));
        }
    }
    let seq_suffixed = [&b"run:"[..], b"ev:", b"ap:"]
        .iter()
        .any(|p| k.starts_with(p));
    if seq_suffixed && k.len() > 9 && k[k.len() - 9] == 0 {
        let (head, tail) = k.split_at(k.len() - 8);
        let seq = <[u8; 8]>::try_from(tail)
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        return format!(
            "{} seq {seq}",
            String::from_utf8_lossy(&head[..head.len() - 1])
        );
    }
    String::from_utf8_lossy(k).replace('\0', "/")
}

fn check_index(
    data_dir: &Path,
    snapshot: &[u8],
    report: &mut VerifyReport,
    index: Option<Peek>,
) -> Result<(), StoreError> {
    let peek = match index {
        Some(p) => p,
        None => Index::peek(data_dir)?,
    };
    match peek {
        Peek::Skipped => report
            .notes
            .push("index not checked: left out on request (--no-index)".to_owned()),
        // A check that could not run is never reported as passed.
        Peek::InUse => report.problems.push(Problem::IndexNotChecked {
            reason: "another process has it open (a `clerk serve` or a running `clerk` command); \
                     `clerk verify` goes through a running daemon by itself, otherwise run it \
                     again when that command has finished"
                .to_owned(),
        }),
        Peek::Missing => report
            .notes
            .push("index not checked: there is none yet (it is built at the next open)".to_owned()),
        Peek::Damaged(error) => report.problems.push(Problem::IndexDamaged { error }),
        Peek::Entries(actual, meta) => {
            report.index_checked = true;
            let Some(meta) = meta else {
                if !actual.is_empty() {
                    report.problems.push(Problem::IndexDisagrees {
                        detail:
                            "the index has entries but no record of how far it read the journal"
                                .to_owned(),
                    });
                }
                return Ok(());
            };
            let (expected, behind) = index::expected_entries(snapshot, meta.last_seq);
            let mut diffs = Vec::new();
            for (k, v) in &expected {
                match actual.get(k) {
                    None => diffs.push(format!("{} missing from the index", describe_key(k))),
                    Some(a) if a != v => diffs.push(format!(
                        "{} differs between index and journal",
                        describe_key(k)
                    )),
                    _ => {}
                }
            }
            for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
                diffs.push(format!(
                    "{} is in the index but not in the journal",
                    describe_key(k)
                ));
            }
            if !diffs.is_empty() {
                let total = diffs.len();
                let mut detail = diffs.into_iter().take(20).collect::<Vec<_>>().join("; ");
                if total > 20 {
                    detail.push_str(&format!("; and {} more", total - 20));
                }
                report.problems.push(Problem::IndexDisagrees { detail });
            } else if behind > 0 {
                report.notes.push(format!(
                    "index is behind the journal by {behind} record(s) (it catches up at the next open)"
                ));
            }
        }
    }
    Ok(())
}

/// Checks an export bundle offline, without the data directory: SHA256SUMS (and that it
/// lists every file), every journal line's own hash and increasing seqs (an excerpt's `prev`
/// links are not contiguous: other runs' records sit between), manifest.json against the
/// journal lines, and every referenced PNG's hash.
pub fn verify_bundle(dir: &Path) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport {
        scope: format!("bundle {}", dir.display()),
        ..Default::default()
    };
    if !dir.is_dir() {
        return Err(StoreError::BadInput(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    // 1. SHA256SUMS.
    let mut listed = BTreeSet::new();
    match std::fs::read_to_string(dir.join("SHA256SUMS")) {
        Err(e) => report.problems.push(Problem::BundleFile {
            path: "SHA256SUMS".into(),
            detail: format!("cannot read: {e}"),
        }),
        Ok(text) => {
            for (i, line) in text.lines().enumerate() {
                let Some((sum, rel)) = line.split_once("  ") else {
                    report.problems.push(Problem::BundleFile {
                        path: "SHA256SUMS".into(),
                        detail: format!("line {} is not `<sha256>  <path>`", i + 1),
                    });
                    continue;
                };
                let safe = !rel.is_empty()
                    && !rel.starts_with('/')
                    && Path::new(rel)
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)));
                if !safe || sum.len() != 64 {
                    report.problems.push(Problem::BundleFile {
                        path: "SHA256SUMS".into(),
                        detail: format!(
                            "line {} is malformed or names a path outside the bundle",
                            i + 1
                        ),
                    });
                    continue;
                }
                listed.insert(rel.to_owned());
                report.files_checked += 1;
                match hash_file(&dir.join(rel)) {
                    Ok((actual, len)) => {
                        report.bytes_hashed += len;
                        if actual != sum {
                            report.problems.push(Problem::BundleFile {
                                path: rel.to_owned(),
                                detail: format!("sha256 is {actual}, SHA256SUMS says {sum}"),
                            });
                        }
                    }
                    Err(e) => report.problems.push(Problem::BundleFile {
                        path: rel.to_owned(),
                        detail: format!("cannot read: {e}"),
                    }),
                }
            }
        }
    }
    for rel in bundle_files(dir)? {
        if rel != "SHA256SUMS" && !listed.contains(&rel) {
            report.problems.push(Problem::BundleFile {
                path: rel,
                detail: "not listed in SHA256SUMS".into(),
            });
        }
    }
    // 2. Journal excerpt: own hashes, increasing seqs.
    let journal_bytes = std::fs::read(dir.join("journal.jsonl")).unwrap_or_else(|e| {
        report.problems.push(Problem::BundleFile {
            path: "journal.jsonl".into(),
            detail: format!("cannot read: {e}"),
        });
        Vec::new()
    });
    let (lines, torn) = lines(&journal_bytes);
    if !torn.is_empty() {
        report.problems.push(Problem::BundleFile {
            path: "journal.jsonl".into(),
            detail: "last line is incomplete".into(),
        });
    }
    report.records_checked = lines.len() as u64;
    let mut records = Vec::new();
    let mut last = 0u64;
    for (i, result) in parse_parallel(&lines).into_iter().enumerate() {
        let line_no = i as u64 + 1;
        match result {
            Err(e) => report.problems.push(Problem::UnreadableLine {
                line: line_no,
                after_seq: Some(last),
                error: e.to_string(),
            }),
            Ok(p) => {
                let r = &p.record;
                if !p.intact() {
                    report.problems.push(Problem::RecordEdited {
                        seq: r.seq,
                        line: line_no,
                        stored_hash: r.hash.clone(),
                        computed_hash: p.computed_hash.clone(),
                    });
                }
                if r.seq <= last {
                    report.problems.push(Problem::Reordered {
                        seq: r.seq,
                        line: line_no,
                        after_seq: last,
                    });
                }
                last = r.seq;
                records.push(p.record);
            }
        }
    }
    // 3. Manifest against the journal lines.
    match std::fs::read(dir.join("manifest.json"))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string()))
    {
        Err(e) => report.problems.push(Problem::Manifest {
            detail: format!("cannot read: {e}"),
        }),
        Ok(manifest) => {
            let body = super::export::manifest_body(&records);
            if let serde_json::Value::Object(expected) = body {
                for (key, value) in expected {
                    if manifest.get(&key) != Some(&value) {
                        report.problems.push(Problem::Manifest {
                            detail: format!("`{key}` does not match the records in journal.jsonl"),
                        });
                    }
                }
            }
            let head: Option<Appended> = manifest
                .get("chain_head")
                .and_then(|h| serde_json::from_value(h.clone()).ok());
            match &head {
                None => report.problems.push(Problem::Manifest {
                    detail: "no readable `chain_head`".into(),
                }),
                Some(h) => {
                    if last > h.seq {
                        report.problems.push(Problem::Manifest {
                            detail: format!(
                                "journal.jsonl has record seq {last}, beyond the chain head seq {}",
                                h.seq
                            ),
                        });
                    }
                    if let Some(r) = records.iter().find(|r| r.seq == h.seq) {
                        if r.hash != h.hash {
                            report.problems.push(Problem::Manifest {
                                detail: format!("chain head seq {} hash differs from record seq {} in journal.jsonl", h.seq, r.seq),
                            });
                        }
                    }
                }
            }
            report.head = head;
        }
    }
    // 4. The PNGs the records reference.
    let checks = file_checks(records.iter(), &|sha| {
        let rel = format!("screenshots/{sha}.png");
        (dir.join(&rel), rel)
    });
    let (problems, files, bytes) = hash_files(&checks);
    report.problems.extend(problems);
    report.files_checked += files;
    report.bytes_hashed += bytes;
    // 5. The recorded responses (WARC files) the records reference.
    let (problems, files, bytes) = warc_checks(records.iter(), &|sha| {
        let rel = format!("{}/{sha}.warc.gz", super::warc::WARC_DIR);
        (dir.join(&rel), rel)
    });
    report.problems.extend(problems);
    report.files_checked += files;
    report.bytes_hashed += bytes;
    Ok(report)
}

/// Every regular file under `dir`, as `/`-separated relative paths.
pub(crate) fn bundle_files(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let entries = std::fs::read_dir(&abs).map_err(|source| StoreError::Io {
            path: abs.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Io {
                path: abs.clone(),
                source,
            })?;
            let child = rel.join(entry.file_name());
            let kind = entry.file_type().map_err(|source| StoreError::Io {
                path: entry.path(),
                source,
            })?;
            if kind.is_dir() {
                stack.push(child);
            } else {
                out.push(child.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}
