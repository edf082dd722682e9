//! This node's copy of the shared journal (cluster mode, see [`super::shared`]): catching it
//! up, checking that it still agrees with the shared journal, and recovery at open.
//!
//! The copy is written only here, under the in-process journal mutex and the `journal.lock`
//! flock, and only with lines the shared journal returned, each checked before it is written:
//! its seq follows the copy's head, its `prev` is the copy's head hash, and its content hashes
//! to its `hash`. So the copy is always a verified prefix of the shared chain, and the
//! index, `clerk verify`, `clerk export` and the Merkle log read it as they read a local
//! journal.

use std::fs::File;
use std::sync::Arc;

use super::commit::Written;
use super::index;
use super::index::Queries as _;
use super::journal::{self, Tail};
use super::lock::{self, FileLock};
use super::record::{self, Prepared};
use super::shared::{Comparison, Difference, Pending, SharedJournal};
use super::{lock_recover, Appended, Event, Store, StoreError, JOURNAL_LOCK, LOCKS_DIR};

/// Marks a data directory whose journal is a copy of a shared journal (holds its description).
pub const SHARED_MARKER: &str = "journal.shared";

/// A data directory is either a node's own journal or a copy of a shared one, for good: a
/// store opened the other way would append to a copy, or adopt a node journal as a copy.
pub(super) fn check_marker(
    data_dir: &std::path::Path,
    shared: Option<&dyn SharedJournal>,
) -> Result<(), StoreError> {
    let marker = data_dir.join(SHARED_MARKER);
    let journal = data_dir.join(journal::JOURNAL);
    let has_records = std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0);
    match (shared, marker.exists()) {
        (None, false) | (Some(_), true) => Ok(()),
        (None, true) => Err(StoreError::BadInput(format!(
            "{} is this node's copy of the shared journal in the cluster database \
             ([cluster] journal = \"database\"); run clerk with that configuration \
             (--config), so records go to the shared journal",
            journal.display()
        ))),
        (Some(s), false) if has_records => Err(StoreError::BadInput(format!(
            "{} holds this node's own journal, so it cannot become a copy of the shared \
             journal at {}: give this node an empty data directory, or keep [cluster] \
             journal = \"node\"",
            journal.display(),
            s.describe()
        ))),
        (Some(s), false) => {
            std::fs::write(&marker, format!("{}\n", s.describe()))
                .and_then(|()| std::fs::File::open(&marker)?.sync_all())
                .map_err(|source| StoreError::Io {
                    path: marker.clone(),
                    source,
                })?;
            journal::sync_dir(data_dir)
        }
    }
}

/// Records fetched per query while catching up.
const PAGE: usize = 2000;

/// Calls `f` with every record of the shared journal, in seq order, read page by page.
fn each_record(
    shared: &dyn SharedJournal,
    mut f: impl FnMut(super::shared::Sealed) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after = 0u64;
    loop {
        let page = shared.read_after(after, PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.seq;
        for s in page {
            f(s)?;
        }
    }
}

/// Every record of the shared journal, in seq order, read page by page from the database.
pub(super) fn all_records(shared: &dyn SharedJournal) -> Result<Vec<super::Record>, StoreError> {
    let mut out = Vec::new();
    each_record(shared, |s| {
        let parsed = record::parse_line(s.line.as_bytes()).map_err(|e| {
            StoreError::Other(format!(
                "the shared journal at {} holds an unreadable record at seq {}: {e} \
                 (run `clerk verify`)",
                shared.describe(),
                s.seq
            ))
        })?;
        out.push(parsed.record);
        Ok(())
    })?;
    Ok(out)
}

impl Store {
    /// The shared journal, if this store has one.
    pub fn shared_journal(&self) -> Option<Arc<dyn SharedJournal>> {
        self.inner.shared.clone()
    }

    /// Brings this node's copy up to the shared journal's head (no-op without one). Every
    /// query calls it, so what a node shows includes every node's records.
    pub fn catch_up(&self) -> Result<(), StoreError> {
        if self.inner.shared.is_none() {
            return Ok(());
        }
        let mut file = lock_recover(&self.inner.journal);
        let written = self.catch_up_with_file(&mut file)?;
        drop(file);
        self.index_written(&written);
        Ok(())
    }

    /// Caller holds the journal mutex (`file`); takes the flock. Returns what it wrote.
    pub(super) fn catch_up_with_file(&self, file: &mut File) -> Result<Vec<Written>, StoreError> {
        let Some(shared) = self.inner.shared.clone() else {
            return Ok(Vec::new());
        };
        let _flock = FileLock::exclusive(&self.inner.data_dir.join(JOURNAL_LOCK))?;
        let path = self.journal_path();
        let (head, mut len) = self.copy_head_locked(file)?;
        let (mut seq, mut hash) = head.unwrap_or((0, record::GENESIS_PREV.to_owned()));
        let mut out = Vec::new();
        loop {
            let page = shared.read_after(seq, PAGE)?;
            if page.is_empty() {
                break;
            }
            let mut bytes = Vec::new();
            let mut written = Vec::with_capacity(page.len());
            for s in page {
                let parsed = record::parse_line(s.line.as_bytes()).map_err(|e| {
                    diverged(&*shared, s.seq, &format!("its line is unreadable: {e}"))
                })?;
                let r = &parsed.record;
                if s.seq != seq + 1 || r.seq != s.seq {
                    return Err(diverged(
                        &*shared,
                        seq + 1,
                        &format!("the next record has seq {} (line says {})", s.seq, r.seq),
                    ));
                }
                if r.prev != hash {
                    return Err(diverged(
                        &*shared,
                        s.seq,
                        "its `prev` is not the hash of the record before it in this node's copy",
                    ));
                }
                if !parsed.intact() || r.hash != s.hash {
                    return Err(diverged(
                        &*shared,
                        s.seq,
                        "its content does not hash to its `hash`",
                    ));
                }
                written.push(Written {
                    appended: Appended {
                        seq: s.seq,
                        hash: s.hash.clone(),
                    },
                    start: len + bytes.len() as u64,
                    line: s.line.clone(),
                });
                bytes.extend_from_slice(s.line.as_bytes());
                bytes.push(b'\n');
                seq = s.seq;
                hash = s.hash;
            }
            // Not fsync'd: the shared journal is the durable copy. A crash may leave this
            // copy's tail short or torn; the next catch-up sets a torn tail aside and pulls
            // the missing lines again.
            journal::write_lines(file, &path, &bytes)?;
            len += bytes.len() as u64;
            out.extend(written);
        }
        Ok(out)
    }

    /// The copy's head and length. A torn tail is only a copy's unfinished write: it is set
    /// aside (kept, as locally) and dropped from the copy, with no record of its own, because
    /// the shared journal has every acknowledged line.
    fn copy_head_locked(
        &self,
        file: &mut File,
    ) -> Result<(Option<(u64, String)>, u64), StoreError> {
        let path = self.journal_path();
        match journal::tail(file, &path)? {
            Tail::Clean { head, len } => Ok((head, len)),
            Tail::Torn { keep, len } => {
                let saved_as = journal::set_aside(&self.inner.data_dir, file, keep, len)?;
                tracing::warn!(dropped = len - keep, %saved_as,
                    "this node's copy of the shared journal had a torn tail; set it aside");
                match journal::tail(file, &path)? {
                    Tail::Clean { head, len } => Ok((head, len)),
                    Tail::Torn { .. } => Err(StoreError::Other(
                        "journal copy's tail still torn after setting it aside".into(),
                    )),
                }
            }
        }
    }

    /// Recovery at open with a shared journal: the copy's head must be the shared journal's
    /// record at that seq; then catch up; then interrupt the open runs of this node's owners
    /// that are gone (only this node can tell: their lock files are here).
    pub(super) fn recover_shared(&self) -> Result<(), StoreError> {
        let Some(shared) = self.inner.shared.clone() else {
            return Ok(());
        };
        let mut file = lock_recover(&self.inner.journal);
        {
            let _flock = FileLock::exclusive(&self.inner.data_dir.join(JOURNAL_LOCK))?;
            let (head, _) = self.copy_head_locked(&mut file)?;
            if let Some((seq, hash)) = head {
                let theirs = shared.read_after(seq - 1, 1)?;
                match theirs.first() {
                    Some(s) if s.seq == seq && s.hash == hash => {}
                    Some(s) if s.seq == seq => {
                        return Err(diverged(
                            &*shared,
                            seq,
                            &format!(
                                "this node's copy has hash {hash}, the shared journal {}",
                                s.hash
                            ),
                        ))
                    }
                    _ => {
                        return Err(diverged(
                            &*shared,
                            seq,
                            "this node's copy has it and the shared journal does not",
                        ))
                    }
                }
            }
        }
        self.catch_up_with_file(&mut file)?;
        let mut index = lock_recover(&self.inner.index);
        index.sync(&self.inner.reader, &self.journal_path())?;
        let locks = self.inner.data_dir.join(LOCKS_DIR);
        let mut batch = Vec::new();
        let mut gone = Vec::new();
        for (run_id, owner) in index.open_runs()? {
            if !locks.join(format!("{owner}.lock")).exists() || lock::owner_alive(&locks, &owner)? {
                continue;
            }
            batch.push(Pending {
                prepared: Prepared::new(Event::RunInterrupted {
                    run_id: run_id.clone(),
                    reason: format!(
                        "the process that ran it (owner {owner} on this node) ended before the \
                         run finished; records up to its last step are intact"
                    ),
                })?,
                fence: None,
            });
            gone.push((run_id, owner));
        }
        drop(index);
        if !batch.is_empty() {
            for r in shared.append(batch)? {
                if let Err(why) = r {
                    tracing::warn!(%why, "the shared journal refused an interruption record");
                }
            }
            self.catch_up_with_file(&mut file)?;
            lock_recover(&self.inner.index).sync(&self.inner.reader, &self.journal_path())?;
        }
        for (run_id, owner) in gone {
            tracing::warn!(run = %run_id, %owner, "marked run interrupted");
            let _ = std::fs::remove_file(locks.join(format!("{owner}.lock")));
        }
        Ok(())
    }

    /// Catches up, then compares this node's copy line by line with the shared journal
    /// (`clerk verify`). `None` without a shared journal.
    pub fn compare_shared(&self) -> Result<Option<Comparison>, StoreError> {
        let Some(shared) = self.inner.shared.clone() else {
            return Ok(None);
        };
        self.catch_up()?;
        compare_copy(&self.inner.data_dir, &*shared).map(Some)
    }
}

/// Compares the copy in `data_dir` line by line with the shared journal, without opening a
/// store (so a copy that no longer agrees can still be examined). The copy may be behind:
/// the counts then differ and [`Comparison::ok`] is false, with no `first_difference`.
pub fn compare_copy(
    data_dir: &std::path::Path,
    shared: &dyn SharedJournal,
) -> Result<Comparison, StoreError> {
    let bytes = journal::snapshot(data_dir)?;
    let (lines, _) = journal::lines(&bytes);
    let mut cmp = Comparison {
        journal: shared.describe(),
        shared_records: 0,
        local_records: lines.len() as u64,
        first_difference: None,
        index_rows: 0,
        index_difference: None,
    };
    let mut local = lines.iter();
    each_record(shared, |s| {
        cmp.shared_records += 1;
        if cmp.first_difference.is_some() {
            return Ok(());
        }
        let what = match local.next() {
            None => None,
            Some((offset, line)) if *line != s.line.as_bytes() => Some(format!(
                "the line at byte {offset} of this node's journal.jsonl differs from the shared journal's"
            )),
            Some(_) if s.seq != cmp.shared_records => Some(format!(
                "the shared journal skips from {} to {}",
                cmp.shared_records - 1,
                s.seq
            )),
            Some(_) => None,
        };
        if let Some(what) = what {
            cmp.first_difference = Some(Difference { seq: s.seq, what });
        }
        Ok(())
    })?;
    check_index(shared, &mut cmp)?;
    if cmp.first_difference.is_none() && cmp.local_records > cmp.shared_records {
        cmp.first_difference = Some(Difference {
            seq: cmp.shared_records + 1,
            what: "this node's copy has it and the shared journal does not".into(),
        });
    }
    Ok(cmp)
}

/// Recomputes what every record of the shared journal is filed under and compares it with
/// the shared journal's index row by row: a row deleted, added or edited (a run hidden from
/// listings, an approval filed elsewhere) is reported at its seq.
fn check_index(shared: &dyn SharedJournal, cmp: &mut Comparison) -> Result<(), StoreError> {
    let mut rows = std::collections::BTreeMap::new();
    let mut after = 0u64;
    loop {
        let page = shared.index_after(after, PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        rows.extend(page);
    }
    cmp.index_rows = rows.len() as u64;
    let mut first: Option<Difference> = None;
    let mut note = |seq: u64, what: String| {
        if first.as_ref().is_none_or(|d| seq < d.seq) {
            first = Some(Difference { seq, what });
        }
    };
    each_record(shared, |s| {
        let want = record::parse_line(s.line.as_bytes())
            .ok()
            .map(|p| index::keys_of(&p.record));
        match (rows.remove(&s.seq), want) {
            (None, _) => note(s.seq, "the record has no row in the index".into()),
            (Some(got), Some(want)) if got == want => {}
            (Some(got), want) => note(
                s.seq,
                format!(
                    "the index row says {got:?}, the record says {}",
                    want.map_or("nothing readable".into(), |w| format!("{w:?}"))
                ),
            ),
        }
        Ok(())
    })?;
    if let Some(seq) = rows.keys().next() {
        note(
            *seq,
            "the index has a row for a record the journal does not have".into(),
        );
    }
    cmp.index_difference = first;
    Ok(())
}

fn diverged(shared: &dyn SharedJournal, seq: u64, what: &str) -> StoreError {
    StoreError::Diverged(format!(
        "this node's copy of the journal (journal.jsonl) does not agree with the shared journal \
         at {} at seq {seq}: {what}. Nothing was changed; run `clerk verify` to see which side \
         was altered. If the shared journal is intact, move journal.jsonl and index/ aside and \
         restart: the copy is rebuilt from the shared journal",
        shared.describe()
    ))
}
