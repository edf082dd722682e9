//! The durable run queue: every run of the `clerk serve` daemon (scheduled, manual, approved
//! submit) is enqueued here, claimed by a worker under a lease, and completed, failed
//! (retried with backoff or dead-lettered) or dropped.
//!
//! [`RunQueue`] is the one interface. It is shaped so that a PostgreSQL implementation (several
//! workers on several machines, `SELECT … FOR UPDATE SKIP LOCKED`) can provide it later:
//! methods are synchronous, take and return only the plain types of this module, take the
//! time (`now`) from the caller wherever a decision depends on it, and every method is one
//! transaction that is durable when it returns.
//!
//! [`EmbeddedQueue`] implements it in the data directory:
//!
//! ```text
//! queue/queue.log        append-only JSON lines, one transaction each, checksummed, fsync'd
//! queue/queue.snapshot   the state as of a log seq (written by `compact`), optional
//! queue/queue.lock       flock held by the one process that has the queue open
//! queue/queue.log.torn-<time>   a torn, never-acknowledged last line set aside at open
//! ```
//!
//! The log is the ground truth; the in-memory state is rebuilt by replaying it on open
//! (see `log.rs` for the byte format and `state.rs` for the transitions).
//!
//! Inputs are stored verbatim: never enqueue a secret value (secret inputs are resolved when
//! the run starts, like `env:` values), the queue log is not scrubbed.

mod embedded;
mod log;
mod postgres;
mod state;

#[cfg(test)]
mod tests;

pub use embedded::{EmbeddedQueue, OpenReport, QUEUE_DIR};
pub use postgres::{PgQueue, JOBS_CHANNEL};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::channel::{parse_duration, Config};
use serde::{Deserialize, Serialize};

/// Identifier of a queued job: assigned by the queue, increasing in enqueue order (a
/// PostgreSQL implementation would use a `bigserial`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who goes first: higher priorities are claimed before lower ones; equal priorities in
/// enqueue order (FIFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Rows of a bulk (batch) job.
    Bulk,
    /// Runs started by a schedule.
    Scheduled,
    /// Runs an operator asked for.
    Manual,
    /// An approved submit: its approval expires, so it goes first.
    Submit,
}

/// Claims a job may lose to daemons that died mid-run before it is dead-lettered.
pub const MAX_CRASHES: u32 = 5;

/// What to run. Stored verbatim in the queue log (so: no secret values in `inputs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Playbook name (what lists show).
    pub playbook: String,
    /// The exact playbook text to run, by its SHA-256 in the evidence store's playbook
    /// texts: pinned when the job is queued, so what runs is what was queued (and, for a
    /// submit, what was approved), whatever the daemon's directory or the file on disk.
    /// Absent only in jobs queued by older versions, which are resolved by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook_sha256: Option<String>,
    /// The text itself, in cluster installations: the node that claims the job may not have
    /// it in its evidence store. A node stores it there only if its SHA-256 is
    /// `playbook_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook_text: Option<String>,
    /// Only the cluster node of this name may claim the job. Set in cluster installations
    /// for runs that draft or submit: their approvals live in the journal of the node they
    /// were queued on (the embedded queue has one node and ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The batch the run is recorded under (`clerk run` through the daemon names one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// Channel id (`clerk.toml`); limits and pauses apply per channel.
    pub channel: String,
    pub inputs: BTreeMap<String, String>,
    /// Operator the run is recorded under.
    pub operator: String,
    pub case_ref: Option<String>,
    /// The case's claims (`--claim NAME=VALUE`), compared with the page by the playbook's
    /// `match:` rules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// The submitted run this job's run compensates (a rollback draft).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// For an approved submit: the approval it spends.
    pub approval_id: Option<String>,
    pub priority: Priority,
    /// The schedule that enqueued it, if any.
    pub schedule: Option<String>,
    /// The schedule's slot this job was enqueued for (with `schedule`): lets a scheduler
    /// that crashed between enqueuing and recording a firing find its jobs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<DateTime<Utc>>,
    /// Attempts before the job is dead-lettered (at least 1). An attempt is a claim; an
    /// expired lease counts as one.
    pub max_attempts: u32,
}

impl JobSpec {
    /// A manual run with no inputs and 3 attempts.
    pub fn new(playbook: &str, channel: &str, operator: &str) -> JobSpec {
        JobSpec {
            playbook: playbook.to_owned(),
            playbook_sha256: None,
            playbook_text: None,
            node: None,
            batch_id: None,
            channel: channel.to_owned(),
            inputs: BTreeMap::new(),
            operator: operator.to_owned(),
            case_ref: None,
            claims: BTreeMap::new(),
            rollback_of: None,
            approval_id: None,
            priority: Priority::Manual,
            schedule: None,
            slot: None,
            max_attempts: 3,
        }
    }
}

/// A job handed to a worker. The `token` identifies this lease: after the lease expired and
/// the job was claimed again, the old token is refused ([`QueueError::LeaseLost`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub job: JobId,
    pub token: String,
    pub worker: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub claimed_at: DateTime<Utc>,
    /// The lease length; each heartbeat extends the lease to `now + lease`.
    pub lease: Duration,
    pub lease_until: DateTime<Utc>,
    pub spec: JobSpec,
}

/// How a run ended, as far as the queue cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The evidence journal's run id, if the run started.
    pub run_id: Option<String>,
    /// The run's final status (e.g. `RunFinished.status`).
    pub status: String,
}

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Retried after a backoff, up to the job's `max_attempts`.
    Transient,
    /// Dead-lettered at once.
    Permanent,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub reason: String,
    /// The attempt's run in the evidence journal, if it started one (kept on the job as
    /// `last_run_id`, so a client can read the failed run's report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Transient,
            reason: reason.into(),
            run_id: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Permanent,
            reason: reason.into(),
            run_id: None,
        }
    }
}

/// What a failure did to the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "then")]
pub enum Disposition {
    /// Queued again; not claimable before `not_before` (`None`: at once).
    Retry { not_before: Option<DateTime<Utc>> },
    /// Dead-lettered: stays until [`RunQueue::retry`] or [`RunQueue::drop_job`].
    Dead { reason: String },
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to be claimed (perhaps not before `not_before`).
    Queued,
    /// Held by a worker under a lease.
    Claimed,
    /// Completed.
    Done,
    /// Dead-lettered: failed permanently or ran out of attempts.
    Dead,
    /// Dropped by an operator; final.
    Dropped,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Queued => "queued",
            JobState::Claimed => "claimed",
            JobState::Done => "done",
            JobState::Dead => "dead",
            JobState::Dropped => "dropped",
        })
    }
}

/// A job's current lease (its token is not shown: only the claimant holds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub worker: String,
    pub claimed_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// A job as the queue knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    pub enqueued_at: DateTime<Utc>,
    /// Attempts started (claims) since it was enqueued or last retried from the dead letter.
    pub attempts: u32,
    /// While queued after a transient failure: the earliest time it can be claimed.
    pub not_before: Option<DateTime<Utc>>,
    /// While claimed.
    pub lease: Option<Lease>,
    /// The reason of the last failed attempt (kept after a retry).
    pub last_error: Option<String>,
    /// While dead-lettered: why.
    pub dead_reason: Option<String>,
    /// Once done.
    pub outcome: Option<Outcome>,
    /// The run of the last failed attempt that started one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_id: Option<String>,
    /// Claims lost because the daemon holding them died mid-run (not attempts: a crash is
    /// not the job's fault; capped by [`MAX_CRASHES`]).
    #[serde(default)]
    pub crashes: u32,
    /// When it became done, dead or dropped.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    /// A job just enqueued: queued, no attempt yet.
    pub fn queued(id: JobId, spec: JobSpec, enqueued_at: DateTime<Utc>) -> Job {
        Job {
            id,
            spec,
            state: JobState::Queued,
            enqueued_at,
            attempts: 0,
            not_before: None,
            lease: None,
            last_error: None,
            dead_reason: None,
            outcome: None,
            last_run_id: None,
            crashes: 0,
            finished_at: None,
        }
    }
}

/// Which jobs [`RunQueue::list`] returns (all by default), in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub channel: Option<String>,
    /// At most this many (the lowest ids).
    pub limit: Option<usize>,
}

/// A paused channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPause {
    pub reason: String,
    pub since: DateTime<Utc>,
}

/// Limits of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Jobs of this channel claimed and not finished at once (at least 1).
    pub concurrent: usize,
    /// Minimum time between the starts (claims) of two runs on this channel.
    pub min_interval: Duration,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        ChannelLimits {
            concurrent: 1,
            min_interval: Duration::ZERO,
        }
    }
}

/// The scheduling limits `claim` enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimits {
    /// Jobs claimed and not finished at once, all channels together (at least 1).
    pub global: usize,
    /// Limits of channels not listed in `channels`.
    pub channel_default: ChannelLimits,
    pub channels: BTreeMap<String, ChannelLimits>,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            global: 4,
            channel_default: ChannelLimits::default(),
            channels: BTreeMap::new(),
        }
    }
}

impl QueueLimits {
    /// The limits of `channel`.
    pub fn channel(&self, channel: &str) -> ChannelLimits {
        self.channels
            .get(channel)
            .copied()
            .unwrap_or(self.channel_default)
    }

    fn check(&self) -> Result<(), QueueError> {
        if self.global == 0 {
            return Err(QueueError::BadInput(
                "queue limits: `global` must be at least 1 (pause channels to stop them)".into(),
            ));
        }
        let all = || {
            std::iter::once(("(default)", &self.channel_default))
                .chain(self.channels.iter().map(|(k, v)| (k.as_str(), v)))
        };
        if let Some((name, _)) = all().find(|(_, l)| l.concurrent == 0) {
            return Err(QueueError::BadInput(format!(
                "queue limits: channel {name}: `concurrent` must be at least 1 (pause a channel \
                 to stop it)"
            )));
        }
        if let Some((name, l)) = all().find(|(_, l)| l.min_interval > state::MAX_DURATION) {
            return Err(QueueError::BadInput(format!(
                "queue limits: channel {name}: `min_interval` {:?} is longer than {} days",
                l.min_interval,
                state::MAX_DURATION.as_secs() / 86_400
            )));
        }
        Ok(())
    }
}

/// Retry delays after transient failures: `base * 2^(n-1)` after the n-th failed attempt,
/// capped at `max`, minus a random jitter of up to `jitter_percent` of it (so retries of
/// jobs that failed together spread out, and a delay never exceeds the cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// 0 to 100.
    pub jitter_percent: u8,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
            jitter_percent: 20,
        }
    }
}

impl Backoff {
    /// The delay after the `failed`-th failed attempt (1 for the first), with `random` (any
    /// u64, uniformly distributed) choosing the jitter. Millisecond resolution.
    pub fn delay(&self, failed: u32, random: u64) -> Duration {
        let max_ms = duration_ms(self.max);
        let doublings = failed.saturating_sub(1).min(63);
        let full = duration_ms(self.base)
            .saturating_mul(1u64 << doublings)
            .min(max_ms);
        let spread = u128::from(full) * u128::from(self.jitter_percent.min(100)) / 100;
        let jitter = (spread * u128::from(random)) >> 64;
        // jitter <= spread <= full, so this never underflows.
        Duration::from_millis(full - jitter as u64)
    }
}

impl Backoff {
    fn check(&self) -> Result<(), QueueError> {
        if self.jitter_percent > 100 || self.max > state::MAX_DURATION || self.base.is_zero() {
            return Err(QueueError::BadInput(format!(
                "backoff: base must be above 0, max at most {} days, jitter_percent at most 100 \
                 (got {self:?})",
                state::MAX_DURATION.as_secs() / 86_400
            )));
        }
        Ok(())
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The queue limits the config asks for: `pages` at once, each channel's `max_pages` and
/// `min_interval`.
pub fn limits_for(config: &Config, pages: usize) -> QueueLimits {
    QueueLimits {
        global: pages.max(1),
        channel_default: ChannelLimits::default(),
        channels: config
            .channels
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    ChannelLimits {
                        concurrent: c.max_pages.max(1),
                        min_interval: c.min_interval(),
                    },
                )
            })
            .collect(),
    }
}

/// The installation's queue: in PostgreSQL when `[cluster] database` is set (as node
/// [`crate::channel::ClusterSettings::node_name`]), else in `data_dir`. `pages` is this
/// process's global limit.
pub fn open(
    config: &Config,
    data_dir: &std::path::Path,
    pages: usize,
) -> Result<Box<dyn RunQueue>, QueueError> {
    let limits = limits_for(config, pages);
    let backoff = backoff_for(config);
    Ok(match config.cluster.database() {
        Some(url) => Box::new(PgQueue::open(
            url,
            &config.cluster.node_name(),
            limits,
            backoff,
        )?),
        None => Box::new(EmbeddedQueue::open(data_dir, limits, backoff)?),
    })
}

/// The retry backoff the config asks for.
pub fn backoff_for(config: &Config) -> Backoff {
    let s = &config.serve;
    Backoff {
        base: parse_duration(&s.retry_base).unwrap_or(Duration::from_secs(30)),
        max: parse_duration(&s.retry_max).unwrap_or(Duration::from_secs(3600)),
        jitter_percent: 20,
    }
}

/// Errors of the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue i/o error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "queue file {path} is corrupt at line {line}: {reason} (only a torn last line is \
         repaired on its own; move the file aside to start an empty queue)"
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("no job {0} in the queue")]
    UnknownJob(JobId),
    #[error("lease on job {job} lost: {reason}")]
    LeaseLost { job: JobId, reason: String },
    #[error("cannot {action} job {job}: it is {state}")]
    InvalidState {
        job: JobId,
        state: JobState,
        action: &'static str,
    },
    #[error("the queue at {0} is already open (in another process, or in this one)")]
    Locked(PathBuf),
    #[error("{0}")]
    BadInput(String),
    /// The cluster queue's database failed or could not be reached (the operation did not
    /// happen, unless it says its outcome is unknown).
    #[error("queue database: {0}")]
    Database(String),
    /// The connection to the cluster queue's database broke (server restarted, backend
    /// terminated, network cut); nothing was committed. The next call reconnects.
    #[error("queue database connection lost: {0}")]
    ConnectionLost(String),
    #[error("the queue stopped after a failed write it could not undo ({0}); reopen it")]
    Broken(String),
}

/// The run queue. One narrow interface, implemented in the data directory by
/// [`EmbeddedQueue`] and meant to be implemented on PostgreSQL for several workers on several
/// machines.
///
/// Contract, whatever the implementation:
/// - every method is atomic, and durable when it returns `Ok` (a crash right after loses
///   nothing it acknowledged);
/// - `claim` picks, among queued jobs whose `not_before` has passed, the highest priority,
///   then the lowest [`JobId`], skipping jobs whose channel is paused, at its concurrency
///   limit, or started a run less than its `min_interval` before `now`; it returns `None`
///   when the global limit is reached. Before choosing, it expires every lease that ended
///   at or before `now`: such a job was attempted (the attempt counts) and is queued again
///   at once, or dead-lettered if it has no attempts left;
/// - a lease is identified by its claim's token: `heartbeat`, `complete` and `fail` refuse
///   a claim whose job was claimed again, expired, dropped or finished
///   ([`QueueError::LeaseLost`]); `heartbeat` also refuses a lease that ended at or before
///   `now`;
/// - times come from the caller (`now`) where a decision depends on them, so schedulers and
///   tests control the clock; other timestamps are informative.
///
/// Methods block (they wait for an fsync or a database round trip): from async code, call
/// them inside `tokio::task::spawn_blocking`.
pub trait RunQueue: Send + Sync {
    /// Adds a job; it is claimable at once.
    fn enqueue(&self, spec: JobSpec) -> Result<JobId, QueueError>;

    /// Hands the next job to `worker` for `lease` from `now`, or `None` if nothing may run.
    fn claim(
        &self,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Claim>, QueueError>;

    /// Extends the lease to `now + claim.lease`; returns the new end.
    fn heartbeat(&self, claim: &Claim, now: DateTime<Utc>) -> Result<DateTime<Utc>, QueueError>;

    /// The fencing check, made right before an irreversible step (spending an approval,
    /// letting a submit's write through): `Ok` only while `claim` still holds its job's lease
    /// at `now` — the job was not claimed again (its token, and so its attempt number, is
    /// still the job's latest) and the lease has not ended. A worker that lost its lease
    /// (paused past it, cut off from the database) gets [`QueueError::LeaseLost`] and must
    /// not act: another attempt may be running.
    fn fence(&self, claim: &Claim, now: DateTime<Utc>) -> Result<(), QueueError>;

    /// Takes the installation's scheduler turn: `Ok(false)` while another node's scheduler
    /// is ticking (this tick is then skipped; the next one comes within seconds). Several
    /// nodes reading one shared journal would otherwise fire the same slot each. Released
    /// by [`RunQueue::end_scheduler_turn`]. One process owns the embedded queue: always
    /// `Ok(true)` there.
    fn begin_scheduler_turn(&self) -> Result<bool, QueueError> {
        Ok(true)
    }

    /// Gives the scheduler turn back.
    fn end_scheduler_turn(&self) {}

    /// Enqueues the jobs of one firing of `schedule` at `slot`, once: a second call for the
    /// same schedule and slot enqueues nothing and returns the first call's jobs. The
    /// cluster queue keeps this across nodes in the enqueuing transaction (so a scheduler
    /// that lost its turn without knowing cannot double a slot); one process owns the
    /// embedded queue and its one scheduler finds the jobs of a slot it enqueued before
    /// recording the firing (see `serve::scheduler`), so it enqueues them one by one.
    fn enqueue_slot(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        specs: Vec<JobSpec>,
    ) -> Result<Vec<JobId>, QueueError> {
        let _ = (schedule, slot);
        specs.into_iter().map(|s| self.enqueue(s)).collect()
    }

    /// The run ended (whatever its status): the job is done.
    fn complete(&self, claim: &Claim, outcome: Outcome) -> Result<(), QueueError>;

    /// The attempt failed: transient → queued again after a backoff, or dead-lettered when
    /// it was the last attempt; permanent → dead-lettered at once.
    fn fail(
        &self,
        claim: &Claim,
        failure: Failure,
        now: DateTime<Utc>,
    ) -> Result<Disposition, QueueError>;

    /// Gives the job back without a verdict: queued again (not before `not_before`), and
    /// this attempt does not count. For runs stopped by a pause, a shutdown or an expired
    /// session, which say nothing about the job itself.
    fn release(
        &self,
        claim: &Claim,
        reason: &str,
        not_before: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), QueueError>;

    /// Ends at once the leases of the workers whose name starts with `worker_prefix`, known
    /// to be dead (a daemon restarting after a crash abandons its predecessor's claims): the
    /// jobs are queued again without counting the attempt (a crash is not the job's fault),
    /// but each such loss counts as a crash, and after [`MAX_CRASHES`] the job is
    /// dead-lettered saying so. Returns the jobs.
    fn abandon(
        &self,
        worker_prefix: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>, QueueError>;

    /// Moves a dead-lettered job back to the queue with a fresh count of attempts.
    fn retry(&self, job: JobId) -> Result<(), QueueError>;

    /// Drops a queued or dead-lettered job for good (a claimed one finishes or expires
    /// first). Not called `drop`: that name would be unusable on an `Arc<dyn RunQueue>`
    /// (it resolves to `Drop::drop`).
    fn drop_job(&self, job: JobId) -> Result<(), QueueError>;

    /// Stops claiming `channel`'s jobs (they stay queued; claimed ones run on).
    fn pause_channel(&self, channel: &str, reason: &str) -> Result<(), QueueError>;

    /// Claims `channel`'s jobs again. Resuming a channel that is not paused is a no-op.
    fn resume_channel(&self, channel: &str) -> Result<(), QueueError>;

    /// The paused channels.
    fn paused_channels(&self) -> Result<BTreeMap<String, ChannelPause>, QueueError>;

    /// Jobs matching `filter`, in id order.
    fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, QueueError>;

    /// One job, `None` if the queue never had it.
    fn get(&self, job: JobId) -> Result<Option<Job>, QueueError>;
}
