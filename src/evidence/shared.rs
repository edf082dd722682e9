//! The seam for a journal shared by every node of an installation (cluster mode,
//! `[cluster] journal = "database"`).
//!
//! The shared journal is the ground truth: it chains each record onto the installation's
//! head inside one transaction under one lock, so records appended by several nodes form one
//! linear chain, and it acknowledges a record only once that transaction has committed. The
//! lines it stores are byte-identical to the lines of `journal.jsonl`.
//!
//! Each node keeps `journal.jsonl` as a **verified copy** of that chain: at open, after every
//! append and before verify, export and reindex the store pulls the lines it lacks (in seq
//! order, each one checked to chain onto the one before), so `clerk verify`, `clerk export`
//! and the Merkle log read the same file format in both modes. The index's queries
//! ([`Queries`], a supertrait here) are answered by the shared journal itself, from every
//! node's committed records. A copy that no longer agrees with the
//! database is never "repaired" silently: the store refuses to open and `clerk verify`
//! names the first differing seq (see [`super::Store::compare_shared`]).
//!
//! Three rules are the journal's, not the caller's, so they hold across nodes:
//! - an approval is used once: a second `approval_used` for the same approval is refused
//!   inside the appending transaction;
//! - a record may carry a [`JobFence`]: it is appended only if the queue still shows that
//!   claim as current in the same transaction (a node that lost its lease cannot spend an
//!   approval);
//! - an interrupted run takes no more records of its own progress
//!   ([`super::index::continues_run`]): a process taken for gone that comes back cannot
//!   continue behind its run's `run_interrupted`.
//!
//! The PostgreSQL implementation is `db::journal`.

use chrono::{DateTime, Utc};

use super::index::{Keys, Queries};
use super::record::Prepared;

/// A record as the shared journal chained it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub seq: u64,
    pub hash: String,
    /// The journal line, without its `\n`.
    pub line: String,
}

/// A claim on a queued job that must still be current when the record is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFence {
    pub job: u64,
    /// The claim's secret token (changes with every claim).
    pub token: String,
    /// The claimant's clock: the lease must end after it.
    pub now: DateTime<Utc>,
}

/// One record to append.
#[derive(Debug, Clone)]
pub struct Pending {
    pub prepared: Prepared,
    pub fence: Option<JobFence>,
}

/// Why the shared journal refused one record of a batch (the others were appended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `approval_used` for an approval that is used already.
    AlreadyUsed { approval_id: String, by_run: String },
    /// The record's fence no longer holds.
    Fenced(String),
    /// A record of a run's own progress after the run was interrupted (see
    /// [`super::index::continues_run`]).
    RunEnded(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::AlreadyUsed {
                approval_id,
                by_run,
            } => write!(
                f,
                "approval {approval_id} is used already (by run {by_run}); an approval is used once"
            ),
            Refusal::Fenced(why) => write!(f, "fencing check failed: {why}"),
            Refusal::RunEnded(run) => write!(
                f,
                "run {run} was marked interrupted in the shared journal (its process was \
                 taken for gone); it takes no more records of its own"
            ),
        }
    }
}

/// Errors of a shared journal.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SharedError {
    /// The database could not be reached or failed; nothing of the batch was acknowledged.
    #[error("shared journal at {target}: {reason}")]
    Unavailable { target: String, reason: String },
    /// The transaction's commit failed and whether it committed could not be found out.
    #[error("shared journal at {target}: commit outcome unknown: {reason}")]
    Unknown { target: String, reason: String },
}

/// What several nodes share: the chain's ground truth, and the index that answers every
/// node's queries ([`Queries`], read straight from the shared journal).
pub trait SharedJournal: Queries + Send + Sync {
    /// Where it is, without credentials (for messages and `clerk verify`).
    fn describe(&self) -> String;

    /// Chains the batch onto the head in order, in one transaction, and commits it. A record
    /// refused by a journal rule is left out (the rest chain without a gap) and reported in
    /// its place. Returns once the transaction has committed.
    fn append(&self, batch: Vec<Pending>) -> Result<Vec<Result<Sealed, Refusal>>, SharedError>;

    /// Up to `limit` records with `seq > after`, in seq order: `(seq, hash, line)`.
    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Sealed>, SharedError>;

    /// Rebuilds the index that answers [`Queries`] from the journal's records; returns how
    /// many records it indexed.
    fn reindex(&self) -> Result<u64, SharedError>;

    /// Up to `limit` rows of the index that answers [`Queries`] with `seq > after`, in seq
    /// order: what each record is filed under, as stored (`clerk verify` recomputes them).
    fn index_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Keys)>, SharedError>;

    /// The head `(seq, hash)`, `None` when empty.
    fn head(&self) -> Result<Option<(u64, String)>, SharedError>;
}

/// How a node's copy compares with the shared journal (`clerk verify`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Comparison {
    /// The shared journal's description (`postgres://host:port/db`).
    pub journal: String,
    /// Records in the shared journal.
    pub shared_records: u64,
    /// Complete lines in this node's copy.
    pub local_records: u64,
    /// The first record where the copy and the shared journal differ, if any.
    pub first_difference: Option<Difference>,
    /// Rows of the shared journal's index (what queries read).
    pub index_rows: u64,
    /// The first record whose index row is missing or is not what its line says (a run
    /// hidden from `runs list` by a deleted or edited row, say), if any.
    pub index_difference: Option<Difference>,
}

/// A record that differs between the copy and the shared journal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    pub seq: u64,
    pub what: String,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.first_difference.is_none()
            && self.shared_records == self.local_records
            && self.index_difference.is_none()
    }
}
