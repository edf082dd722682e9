//! Group commit: the appends of every thread of one process share `write`s and fsyncs.
//!
//! Leader/follower. A caller serializes its event canonically (outside any lock), queues it
//! and waits. When no round is under way it leads one: it takes the in-process journal mutex
//! and the `journal.lock` flock, then takes *every* queued event (including those that
//! arrived while it waited for the lock), reads the chain head from the file's tail, chains
//! them in queue order, writes them with one `write`, makes them durable with one
//! `fdatasync`, releases the lock and hands each caller its own [`Appended`]. Callers that
//! queue while a round is in flight are batched into the next round, which one of them
//! leads. The leader updates the index (one sled transaction for the batch) after it has
//! released the others, so that work overlaps the next round's fsync.
//!
//! Nobody is acknowledged before the fsync covering its line has returned. A failed write or
//! fsync fails every caller of the round; the round's bytes are then cut off again (truncate
//! and fsync) because after a failed fsync their state on disk is unknown, and chaining new
//! records onto lines that may not exist after a reboot would break the chain. If even that
//! fails, the next round retries it before writing anything, and fails while it cannot.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use super::index::Queries as _;
use super::journal::{self, Tail};
use super::lock::FileLock;
use super::record::{self, Prepared};
use super::shared::{JobFence, Pending, Refusal};
use super::{lock_recover, now, Appended, Event, Store, StoreError, JOURNAL_LOCK};

/// What the threads of one process share to commit together.
#[derive(Default)]
pub(super) struct Committer {
    state: Mutex<State>,
    /// Signalled when a round has published its outcomes and given up the lead.
    turn: Condvar,
    /// Successful fdatasyncs of the journal that made appended records durable.
    fsyncs: AtomicU64,
    /// Records those fsyncs made durable.
    records: AtomicU64,
    /// Test hook: the next journal fsync fails as if the disk had reported an error.
    fail_next_fsync: AtomicBool,
    /// A failed batch that could not be cut off: `(keep, len)`, the journal's length before
    /// the batch and right after the failure. Only touched under the journal mutex.
    unresolved: Mutex<Option<(u64, u64)>>,
}

#[derive(Default)]
struct State {
    next_ticket: u64,
    /// Appends waiting for the next round, in arrival order.
    queue: Vec<(u64, Pending)>,
    /// A round is under way (its leader may still be waiting for the flock).
    leading: bool,
    /// Outcomes published by finished rounds, taken by their callers.
    done: HashMap<u64, Outcome>,
}

type Outcome = Result<Acked, StoreError>;

struct Acked {
    appended: Appended,
    fsyncs_before_write: u64,
    batch: usize,
}

/// How one append was committed (test hook: proves acknowledgement follows the fsync).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendTrace {
    /// The store's fsync counter read just before the batch holding the record was written.
    pub fsyncs_before_write: u64,
    /// The fsync counter read by the caller's thread when it was acknowledged.
    pub fsyncs_at_ack: u64,
    /// Records in that batch (1: no other append shared the fsync).
    pub batch: usize,
}

/// Counters of the group committer (tests and benchmarks).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Journal fdatasyncs that made appended records durable.
    pub fsyncs: u64,
    /// Records those fsyncs made durable.
    pub records: u64,
    /// Appends queued and not yet taken into a round.
    pub queued: usize,
}

/// A record written by a round.
pub(super) struct Written {
    pub appended: Appended,
    /// Offset of the line in the journal.
    pub start: u64,
    /// The line without its `\n`.
    pub line: String,
}

/// The lead of one round. Dropping it publishes the outcomes (a missing one, after a panic,
/// becomes an error), gives up the lead and wakes the waiting callers.
struct Round<'a> {
    commit: &'a Committer,
    tickets: Vec<u64>,
    outcomes: Vec<Outcome>,
}

impl Round<'_> {
    fn take_queue(&mut self) -> Vec<Pending> {
        let mut state = lock_recover(&self.commit.state);
        let (tickets, batch) = state.queue.drain(..).unzip();
        self.tickets = tickets;
        batch
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        let mut outcomes = std::mem::take(&mut self.outcomes).into_iter();
        let mut state = lock_recover(&self.commit.state);
        for ticket in self.tickets.drain(..) {
            let outcome = outcomes.next().unwrap_or_else(|| {
                Err(StoreError::Other(
                    "the append round was aborted (a panic while appending); whether this \
                     record was written is unknown until the journal is read"
                        .into(),
                ))
            });
            state.done.insert(ticket, outcome);
        }
        state.leading = false;
        drop(state);
        self.commit.turn.notify_all();
    }
}

impl Store {
    /// Appends one record: chained, fsync'd, indexed. Returns once durable.
    ///
    /// Appends from several threads are group-committed: they share one `write` and one
    /// fsync, and each caller returns only after the fsync covering its own line.
    ///
    /// The record is durable when this returns `Ok`; if only the index update fails, the
    /// error is logged and the index catches up on the next query.
    pub fn append(&self, event: Event) -> Result<Appended, StoreError> {
        self.append_traced(event).map(|(appended, _)| appended)
    }

    /// [`Store::append`], also telling how the record was committed.
    #[doc(hidden)]
    pub fn append_traced(&self, event: Event) -> Result<(Appended, AppendTrace), StoreError> {
        self.append_pending(event, None)
    }

    /// [`Store::append`] of a record that must only be appended while `fence` holds: with a
    /// shared journal the claim is checked in the appending transaction (see [`super::shared`]).
    /// A refusal (fence lost, approval used already) is [`StoreError::Refused`].
    pub fn append_fenced(
        &self,
        event: Event,
        fence: Option<JobFence>,
    ) -> Result<Appended, StoreError> {
        self.append_pending(event, fence).map(|(a, _)| a)
    }

    fn append_pending(
        &self,
        event: Event,
        fence: Option<JobFence>,
    ) -> Result<(Appended, AppendTrace), StoreError> {
        let prepared = Pending {
            prepared: Prepared::new(event)?,
            fence,
        };
        let commit = &self.inner.commit;
        let mut state = lock_recover(&commit.state);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push((ticket, prepared));
        loop {
            if let Some(outcome) = state.done.remove(&ticket) {
                drop(state);
                let acked = outcome?;
                let trace = AppendTrace {
                    fsyncs_before_write: acked.fsyncs_before_write,
                    fsyncs_at_ack: commit.fsyncs.load(Ordering::SeqCst),
                    batch: acked.batch,
                };
                return Ok((acked.appended, trace));
            }
            if state.leading {
                state = commit
                    .turn
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.leading = true;
            drop(state);
            self.lead();
            state = lock_recover(&commit.state);
        }
    }

    /// Leads one round, then indexes what it wrote.
    fn lead(&self) {
        let mut round = Round {
            commit: &self.inner.commit,
            tickets: Vec::new(),
            outcomes: Vec::new(),
        };
        let written = self.run_round(&mut round);
        drop(round);
        self.index_written(&written);
    }

    fn run_round(&self, round: &mut Round<'_>) -> Vec<Written> {
        if let Some(shared) = self.inner.shared.clone() {
            return self.run_shared_round(round, &*shared);
        }
        let mut file = lock_recover(&self.inner.journal);
        let flock = FileLock::exclusive(&self.inner.data_dir.join(JOURNAL_LOCK));
        // Taken after the flock: whoever queued while we waited for it rides along.
        let batch = round.take_queue();
        let result = flock.and_then(|_flock| {
            let refused = self.refusals_locked(&batch)?;
            let accepted = batch
                .into_iter()
                .zip(&refused)
                .filter(|(_, r)| r.is_none())
                .map(|(p, _)| p.prepared)
                .collect();
            let (written, fsyncs) = self.write_batch_locked(&mut file, accepted)?;
            Ok((written, fsyncs, refused))
        });
        drop(file);
        match result {
            Ok((written, fsyncs_before_write, refused)) => {
                let n = written.len();
                let mut acked = written.iter();
                round.outcomes = refused
                    .into_iter()
                    .map(|r| match r {
                        Some(why) => Err(StoreError::Refused(why.to_string())),
                        None => acked
                            .next()
                            .map(|w| Acked {
                                appended: w.appended.clone(),
                                fsyncs_before_write,
                                batch: n,
                            })
                            .ok_or_else(|| StoreError::Other("append round lost a record".into())),
                    })
                    .collect();
                written
            }
            Err(e) => {
                round.outcomes = round.tickets.iter().map(|_| Err(e.duplicate())).collect();
                Vec::new()
            }
        }
    }

    /// The journal's rule, checked under the flock with the index caught up: an approval is
    /// used once. `None` for each record that may be appended.
    fn refusals_locked(&self, batch: &[Pending]) -> Result<Vec<Option<Refusal>>, StoreError> {
        let mut out = Vec::with_capacity(batch.len());
        let mut used_here: std::collections::HashMap<String, String> = Default::default();
        let mut index = None;
        for p in batch {
            let Event::ApprovalUsed {
                approval_id,
                run_id,
                ..
            } = p.prepared.event()
            else {
                out.push(None);
                continue;
            };
            if index.is_none() {
                let mut i = lock_recover(&self.inner.index);
                i.sync(&self.inner.reader, &self.journal_path())?;
                index = Some(i);
            }
            let mut by = used_here.get(approval_id).cloned();
            if by.is_none() {
                if let Some(i) = &index {
                    by = i
                        .approval_records(approval_id)?
                        .into_iter()
                        .find_map(|r| match r.event {
                            Event::ApprovalUsed { run_id, .. } => Some(run_id),
                            _ => None,
                        });
                }
            }
            match by {
                Some(by_run) => out.push(Some(Refusal::AlreadyUsed {
                    approval_id: approval_id.clone(),
                    by_run,
                })),
                None => {
                    used_here.insert(approval_id.clone(), run_id.clone());
                    out.push(None);
                }
            }
        }
        Ok(out)
    }

    /// A round on a shared journal: one transaction there (which acknowledges), then this
    /// node's copy catches up with it (every node's records, in seq order).
    fn run_shared_round(
        &self,
        round: &mut Round<'_>,
        shared: &dyn super::shared::SharedJournal,
    ) -> Vec<Written> {
        let mut file = lock_recover(&self.inner.journal);
        let batch = round.take_queue();
        let fsyncs_before_write = self.inner.commit.fsyncs.load(Ordering::SeqCst);
        match shared.append(batch) {
            Ok(results) => {
                let n = results.iter().filter(|r| r.is_ok()).count();
                round.outcomes = results
                    .into_iter()
                    .map(|r| match r {
                        Ok(s) => Ok(Acked {
                            appended: Appended {
                                seq: s.seq,
                                hash: s.hash,
                            },
                            fsyncs_before_write,
                            batch: n,
                        }),
                        Err(why) => Err(StoreError::Refused(why.to_string())),
                    })
                    .collect();
            }
            Err(e) => {
                let e = StoreError::Shared(e);
                round.outcomes = round.tickets.iter().map(|_| Err(e.duplicate())).collect();
                return Vec::new();
            }
        }
        // Durable in the shared journal already: a failed catch-up only delays the copy (the
        // next query or append retries it).
        match self.catch_up_with_file(&mut file) {
            Ok(written) => written,
            Err(e) => {
                tracing::warn!(error = %e, "records are committed to the shared journal but this node's copy could not catch up");
                Vec::new()
            }
        }
    }

    /// One sled transaction for a round's records (or a catch-up if the index is elsewhere).
    pub(super) fn index_written(&self, written: &[Written]) {
        let Some(first) = written.first() else {
            return;
        };
        let mut index = lock_recover(&self.inner.index);
        let result = if index.meta().end == first.start {
            let lines: Vec<(u64, &[u8])> = written
                .iter()
                .map(|w| (w.start, w.line.as_bytes()))
                .collect();
            index.apply_lines(&lines)
        } else {
            index.sync(&self.inner.reader, &self.journal_path())
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, seq = first.appended.seq, records = written.len(),
                "records are durable but the index update failed");
        }
    }

    /// Chains `batch` onto the head read from the file's tail, writes it with one `write` and
    /// fsyncs once. Returns the records and the fsync counter read before the write. Caller
    /// holds the in-process journal mutex and the flock. On error nothing was acknowledged
    /// and the batch's bytes have been cut off again (or will be, before the next write).
    pub(super) fn write_batch_locked(
        &self,
        file: &mut File,
        batch: Vec<Prepared>,
    ) -> Result<(Vec<Written>, u64), StoreError> {
        let path = self.journal_path();
        let commit = &self.inner.commit;
        self.resolve_failed_batch(file, &path)?;
        let (head, len) = self.head_locked(file)?;
        let (mut seq, mut prev) = match head {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, record::GENESIS_PREV.to_owned()),
        };
        let mut bytes = Vec::new();
        let mut written = Vec::with_capacity(batch.len());
        for prepared in batch {
            let (rec, line) = record::seal_prepared(seq, now(), prev, prepared);
            let start = len + bytes.len() as u64;
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            seq = rec.seq + 1;
            prev = rec.hash.clone();
            written.push(Written {
                appended: Appended {
                    seq: rec.seq,
                    hash: rec.hash,
                },
                start,
                line,
            });
        }
        let fsyncs_before_write = commit.fsyncs.load(Ordering::SeqCst);
        if written.is_empty() {
            return Ok((written, fsyncs_before_write));
        }
        let result =
            journal::write_lines(file, &path, &bytes).and_then(|()| self.sync_journal(file, &path));
        if let Err(e) = result {
            self.cut_off(file, &path, len, &e);
            return Err(e);
        }
        commit.fsyncs.fetch_add(1, Ordering::SeqCst);
        commit
            .records
            .fetch_add(written.len() as u64, Ordering::SeqCst);
        Ok((written, fsyncs_before_write))
    }

    fn sync_journal(&self, file: &File, path: &Path) -> Result<(), StoreError> {
        if self
            .inner
            .commit
            .fail_next_fsync
            .swap(false, Ordering::SeqCst)
        {
            return Err(StoreError::Io {
                path: path.to_owned(),
                source: std::io::Error::other("injected fsync failure (test hook)"),
            });
        }
        journal::sync_data(file, path)
    }

    /// After a failed write or fsync: truncate the journal back to `keep` (durably).
    fn cut_off(&self, file: &File, path: &Path, keep: u64, why: &StoreError) {
        let mut unresolved = lock_recover(&self.inner.commit.unresolved);
        match journal::truncate(file, path, keep) {
            Ok(()) => {
                *unresolved = None;
                tracing::error!(error = %why, len = keep,
                    "journal write failed; the batch was failed and cut off again");
            }
            Err(e) => {
                let len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
                *unresolved = Some((keep, len));
                tracing::error!(error = %why, cut_off_error = %e, len = keep,
                    "journal write failed and the batch could not be cut off; retrying before the next append");
            }
        }
    }

    /// Retries cutting off a failed batch, if nobody has written since. Fails (and so fails
    /// the round) while it cannot: chaining onto lines of unknown durability is worse.
    fn resolve_failed_batch(&self, file: &File, path: &Path) -> Result<(), StoreError> {
        let mut unresolved = lock_recover(&self.inner.commit.unresolved);
        let Some((keep, len_then)) = *unresolved else {
            return Ok(());
        };
        let len_now = file
            .metadata()
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?
            .len();
        if len_now != len_then {
            // Another process has written since (and read the tail under the lock itself).
            tracing::warn!(
                keep,
                len_then,
                len_now,
                "journal changed since a failed batch; not cutting it off"
            );
            *unresolved = None;
            return Ok(());
        }
        journal::truncate(file, path, keep)?;
        *unresolved = None;
        tracing::warn!(
            len = keep,
            "cut off a failed batch left by an earlier error"
        );
        Ok(())
    }

    /// The chain head and the journal's length, a torn tail set aside first. Caller holds the
    /// journal mutex and the flock.
    fn head_locked(&self, file: &mut File) -> Result<(Option<(u64, String)>, u64), StoreError> {
        let path = self.journal_path();
        match journal::tail(file, &path)? {
            Tail::Clean { head, len } => Ok((head, len)),
            Tail::Torn { .. } => {
                // A writer crashed after we opened: set it aside first.
                self.repair_tail(file)?;
                match journal::tail(file, &path)? {
                    Tail::Clean { head, len } => Ok((head, len)),
                    Tail::Torn { .. } => Err(StoreError::Other(
                        "journal tail still torn after repair".into(),
                    )),
                }
            }
        }
    }

    /// The number of journal fsyncs that made appended records durable.
    #[doc(hidden)]
    pub fn fsync_count(&self) -> u64 {
        self.inner.commit.fsyncs.load(Ordering::SeqCst)
    }

    /// Counters of the group committer.
    #[doc(hidden)]
    pub fn commit_stats(&self) -> CommitStats {
        let commit = &self.inner.commit;
        CommitStats {
            fsyncs: commit.fsyncs.load(Ordering::SeqCst),
            records: commit.records.load(Ordering::SeqCst),
            queued: lock_recover(&commit.state).queue.len(),
        }
    }

    /// Test hook: the next journal fsync of this store fails with an I/O error.
    #[doc(hidden)]
    pub fn fail_next_fsync(&self) {
        self.inner
            .commit
            .fail_next_fsync
            .store(true, Ordering::SeqCst);
    }
}
