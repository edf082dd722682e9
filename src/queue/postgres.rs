//! [`PgQueue`]: the run queue in PostgreSQL, shared by every `clerk serve` node of a cluster
//! installation (`[cluster] database`). Schema: `src/db/migrations/V1__queue.sql`.
//!
//! Every method is one transaction (READ COMMITTED), durable when it returns. The rules are
//! the [`RunQueue`] contract, checked by the same tests as the embedded queue; what changes
//! with several nodes:
//!
//! - **claims** lock the chosen job row with `FOR UPDATE SKIP LOCKED` (two nodes never take
//!   the same job, and never wait on each other's rows);
//! - **per-channel limits hold for the installation**: a claim takes the channel's
//!   transaction-scoped advisory lock (`pg_try_advisory_xact_lock`, skipping a channel
//!   another node is claiming at this instant), then counts the channel's claimed jobs of
//!   all nodes and reads its last start (`clerk_channels`) before choosing;
//! - **the global limit is the node's pages**: claims held by this node (`node` column);
//! - **expired leases** of any node are rescued by whichever node claims next;
//! - **fencing**: every change to a claimed job re-reads the row `FOR UPDATE` and compares
//!   the lease token (new for every claim, so it fences by attempt); [`RunQueue::fence`]
//!   does the same and also refuses an ended lease;
//! - finished jobs move to `clerk_jobs_finished` in the transaction that finishes them.
//!
//! Decisions are made in Rust on the job read under its row lock, as in the embedded queue;
//! the whole job is stored as JSON, the indexed columns are derived from it on every write.
//!
//! Connection: one per queue, behind a mutex (a node's workers claim a few jobs a minute).
//! A connection found dead (PostgreSQL restarted, backend terminated) is replaced, and a
//! transaction that failed because of it before its commit is run once more on the new one;
//! a failed commit is reported, not retried (its outcome is unknown).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::types::Json;
use postgres::{Client, Transaction};

use super::embedded::{new_token, random_u64};
use super::state::{
    after_failure, after_lease_end, check_claim, check_spec, expiry_reason, fence_check,
    lease_lost, plus,
};
use super::{
    Backoff, ChannelPause, Claim, Disposition, Failure, Job, JobFilter, JobId, JobSpec, JobState,
    Lease, Outcome, QueueError, QueueLimits, RunQueue, MAX_CRASHES,
};

/// First key of the channels' advisory locks (the second is `hashtext(channel)`).
const CHANNEL_LOCK_SPACE: i32 = 0x636c_6b01;

/// The run queue of a cluster installation, in PostgreSQL.
/// The advisory lock of the scheduler's turn (see [`RunQueue::begin_scheduler_turn`]).
const SCHEDULER_LOCK: i64 = 0x636c_6572_6b00_0003;

pub struct PgQueue {
    url: String,
    node: String,
    limits: QueueLimits,
    backoff: Backoff,
    conn: Mutex<Option<Client>>,
}

fn db(e: postgres::Error) -> QueueError {
    // Class 08: connection exception; 57: operator intervention (admin shutdown,
    // pg_terminate_backend, crash shutdown).
    let lost = e.is_closed()
        || e.code()
            .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"));
    if lost {
        QueueError::ConnectionLost(crate::db::describe(&e))
    } else {
        QueueError::Database(crate::db::describe(&e))
    }
}

fn dberr(e: crate::db::DbError) -> QueueError {
    QueueError::Database(e.to_string())
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Claimed => "claimed",
        JobState::Done => "done",
        JobState::Dead => "dead",
        JobState::Dropped => "dropped",
    }
}

fn lease_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A hot row read under its row lock.
struct Hot {
    job: Job,
    token: Option<String>,
    lease_ms: i64,
}

impl PgQueue {
    /// Connects to the database at `url` as node `node` (the prefix of its workers' names,
    /// unique in the installation) and checks the schema is the one this clerk needs.
    pub fn open(
        url: &str,
        node: &str,
        limits: QueueLimits,
        backoff: Backoff,
    ) -> Result<PgQueue, QueueError> {
        limits.check()?;
        backoff.check()?;
        if node.trim().is_empty() {
            return Err(QueueError::BadInput("a cluster node needs a name".into()));
        }
        let client = crate::db::off_runtime(|| {
            let mut client = crate::db::connect(url)?;
            crate::db::check_schema(&mut client)?;
            Ok(client)
        })
        .map_err(dberr)?;
        Ok(PgQueue {
            url: url.to_owned(),
            node: node.to_owned(),
            limits,
            backoff,
            conn: Mutex::new(Some(client)),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The limits `claim` enforces.
    pub fn limits(&self) -> &QueueLimits {
        &self.limits
    }

    /// Runs `f` in one transaction and commits it. A dead connection is replaced; when `f`
    /// failed on a connection that turned out dead, it runs once more on a new one.
    /// Runs `f` on the connection outside a transaction (session-level statements).
    fn session<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, QueueError> {
        crate::db::off_runtime(|| {
            let mut slot = self.conn.lock().map_err(|_| {
                QueueError::Broken("a thread panicked while using the queue".into())
            })?;
            if slot.as_ref().is_none_or(|c| c.is_closed()) {
                *slot = Some(crate::db::connect(&self.url).map_err(dberr)?);
            }
            let Some(client) = slot.as_mut() else {
                return Err(QueueError::Broken("no connection".into()));
            };
            let result = f(client).map_err(db);
            if client.is_closed() {
                *slot = None;
            }
            result
        })
    }

    fn tx<T: Send>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> Result<T, QueueError> + Send,
    ) -> Result<T, QueueError> {
        crate::db::off_runtime(|| self.tx_here(f))
    }

    fn tx_here<T>(
        &self,
        mut f: impl FnMut(&mut Transaction<'_>) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let mut slot = self
            .conn
            .lock()
            .map_err(|_| QueueError::Broken("a thread panicked while using the queue".into()))?;
        for round in 0..2 {
            if slot.as_ref().is_none_or(|c| c.is_closed()) {
                *slot = Some(crate::db::connect(&self.url).map_err(dberr)?);
            }
            let Some(client) = slot.as_mut() else {
                continue;
            };
            let outcome = run_tx(client, &mut f);
            let dead = client.is_closed()
                || matches!(
                    outcome,
                    Err(TxError::BeforeCommit(QueueError::ConnectionLost(_)))
                );
            if dead {
                *slot = None;
            }
            match outcome {
                Ok(v) => return Ok(v),
                Err(TxError::BeforeCommit(e)) if dead && round == 0 => {
                    tracing::warn!(error = %e, "queue database connection lost; retrying once on a new one");
                }
                Err(TxError::BeforeCommit(e)) => return Err(e),
                Err(TxError::Commit(e)) => {
                    return Err(QueueError::Database(format!(
                        "commit failed, outcome unknown: {}",
                        crate::db::describe(&e)
                    )))
                }
            }
        }
        Err(QueueError::Database(
            "the connection died twice in a row".into(),
        ))
    }
}

enum TxError {
    /// Nothing was committed.
    BeforeCommit(QueueError),
    /// The commit itself failed: the outcome is unknown.
    Commit(postgres::Error),
}

fn run_tx<T>(
    client: &mut Client,
    f: &mut impl FnMut(&mut Transaction<'_>) -> Result<T, QueueError>,
) -> Result<T, TxError> {
    let mut tx = client
        .transaction()
        .map_err(|e| TxError::BeforeCommit(db(e)))?;
    match f(&mut tx) {
        Ok(v) => tx.commit().map(|()| v).map_err(TxError::Commit),
        Err(e) => {
            let _ = tx.rollback();
            Err(TxError::BeforeCommit(e))
        }
    }
}

impl Drop for PgQueue {
    fn drop(&mut self) {
        // The driver's client blocks on its own runtime when dropped: never on an async
        // thread (a daemon drops its queue at the end of its async shutdown).
        let client = self.conn.get_mut().ok().and_then(Option::take);
        if let Some(client) = client {
            crate::db::off_runtime(move || drop(client));
        }
    }
}

// ---------------------------------------------------------------- rows

fn load_hot(tx: &mut Transaction<'_>, id: JobId) -> Result<Option<Hot>, QueueError> {
    let row = tx
        .query_opt(
            "SELECT job, token, lease_ms FROM clerk_jobs WHERE id = $1 FOR UPDATE",
            &[&(id.0 as i64)],
        )
        .map_err(db)?;
    Ok(row.map(|r| Hot {
        job: r.get::<_, Json<Job>>(0).0,
        token: r.get(1),
        lease_ms: r.get(2),
    }))
}

fn load_finished(tx: &mut Transaction<'_>, id: JobId) -> Result<Option<Job>, QueueError> {
    let row = tx
        .query_opt(
            "SELECT job FROM clerk_jobs_finished WHERE id = $1 FOR UPDATE",
            &[&(id.0 as i64)],
        )
        .map_err(db)?;
    Ok(row.map(|r| r.get::<_, Json<Job>>(0).0))
}

/// Writes a queued or claimed job (insert or update).
fn write_hot(
    tx: &mut Transaction<'_>,
    job: &Job,
    token: Option<&str>,
    lease_ms: i64,
    node: Option<&str>,
) -> Result<(), QueueError> {
    let worker = job.lease.as_ref().map(|l| l.worker.as_str());
    let until = job.lease.as_ref().map(|l| l.until);
    tx.execute(
        "INSERT INTO clerk_jobs (id, channel, priority, state, not_before, token, worker, node, \
         lease_until, lease_ms, job, pinned) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (id) DO UPDATE SET channel = $2, priority = $3, state = $4, \
         not_before = $5, token = $6, worker = $7, node = $8, lease_until = $9, \
         lease_ms = $10, job = $11, pinned = $12",
        &[
            &(job.id.0 as i64),
            &job.spec.channel,
            &(job.spec.priority as i32),
            &state_name(job.state),
            &job.not_before,
            &token,
            &worker,
            &node,
            &until,
            &lease_ms,
            &Json(job),
            &job.spec.node,
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// Moves a finished (done, dead, dropped) job out of the hot table.
fn write_finished(tx: &mut Transaction<'_>, job: &Job) -> Result<(), QueueError> {
    let id = job.id.0 as i64;
    tx.execute("DELETE FROM clerk_jobs WHERE id = $1", &[&id])
        .map_err(db)?;
    let at = job.finished_at.unwrap_or_else(Utc::now);
    tx.execute(
        "INSERT INTO clerk_jobs_finished (id, channel, state, finished_at, job) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET state = $3, \
         finished_at = $4, job = $5",
        &[
            &id,
            &job.spec.channel,
            &state_name(job.state),
            &at,
            &Json(job),
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// The NOTIFY channel that wakes idle workers of every node: a job became claimable (or a
/// claim ended, freeing a channel's slot).
pub const JOBS_CHANNEL: &str = "clerk_jobs";

fn notify(tx: &mut Transaction<'_>, channel: &str) -> Result<(), QueueError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&JOBS_CHANNEL, &channel])
        .map_err(db)?;
    Ok(())
}

/// Writes a job wherever its state belongs.
fn write(tx: &mut Transaction<'_>, job: &Job) -> Result<(), QueueError> {
    match job.state {
        JobState::Queued => write_hot(tx, job, None, 0, None),
        JobState::Claimed => Err(QueueError::Broken(format!(
            "job {} written as claimed without its lease (a bug)",
            job.id
        ))),
        JobState::Done | JobState::Dead | JobState::Dropped => write_finished(tx, job),
    }
}

/// The job `claim` still holds (read under its row lock), or why it lost it.
fn held(tx: &mut Transaction<'_>, claim: &Claim) -> Result<Hot, QueueError> {
    let Some(hot) = load_hot(tx, claim.job)? else {
        return match load_finished(tx, claim.job)? {
            Some(job) => Err(lease_lost(&job, claim)),
            None => Err(QueueError::UnknownJob(claim.job)),
        };
    };
    if hot.token.as_deref() == Some(claim.token.as_str()) {
        return Ok(hot);
    }
    Err(lease_lost(&hot.job, claim))
}

/// Ends a lease: `next` says whether the job is queued again or dead-lettered.
fn end_lease(job: &mut Job, reason: String, next: &Disposition, at: DateTime<Utc>) {
    job.last_error = Some(reason);
    job.lease = None;
    match next {
        Disposition::Retry { not_before } => {
            job.state = JobState::Queued;
            job.not_before = *not_before;
        }
        Disposition::Dead { reason } => {
            job.state = JobState::Dead;
            job.dead_reason = Some(reason.clone());
            job.finished_at = Some(at);
        }
    }
}

/// Expires every lease that ended at or before `now`, of any node.
fn expire(tx: &mut Transaction<'_>, now: DateTime<Utc>) -> Result<(), QueueError> {
    let rows = tx
        .query(
            "SELECT job FROM clerk_jobs WHERE state = 'claimed' AND lease_until <= $1 \
             ORDER BY id FOR UPDATE SKIP LOCKED",
            &[&now],
        )
        .map_err(db)?;
    for row in rows {
        let mut job = row.get::<_, Json<Job>>(0).0;
        let Some(lease) = job.lease.clone() else {
            continue;
        };
        if lease.until > now {
            continue; // the column is rounded to microseconds; the job's own time decides
        }
        let reason = expiry_reason(&lease, job.attempts);
        tracing::warn!(job = %job.id, %reason, "queue lease expired");
        let next = after_lease_end(job.attempts, job.spec.max_attempts, &reason);
        end_lease(&mut job, reason, &next, now);
        write(tx, &job)?;
    }
    Ok(())
}

impl PgQueue {
    /// The claim transaction's choice, after expiries.
    fn choose(
        &self,
        tx: &mut Transaction<'_>,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Claim>, QueueError> {
        let mine: i64 = tx
            .query_one(
                "SELECT count(*) FROM clerk_jobs WHERE state = 'claimed' AND node = $1",
                &[&self.node],
            )
            .map_err(db)?
            .get(0);
        if mine >= i64::try_from(self.limits.global).unwrap_or(i64::MAX) {
            return Ok(None);
        }
        // The best runnable job of each unpaused channel, best first.
        let mut candidates: Vec<(i32, i64, String)> = tx
            .query(
                "SELECT DISTINCT ON (j.channel) j.priority, j.id, j.channel FROM clerk_jobs j \
                 WHERE j.state = 'queued' AND (j.not_before IS NULL OR j.not_before <= $1) \
                 AND (j.pinned IS NULL OR j.pinned = $2) \
                 AND NOT EXISTS (SELECT 1 FROM clerk_channels c WHERE c.channel = j.channel \
                 AND c.paused_reason IS NOT NULL) \
                 ORDER BY j.channel, j.priority DESC, j.id",
                &[&now, &self.node],
            )
            .map_err(db)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, channel) in candidates {
            let locked: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock($1, hashtext($2))",
                    &[&CHANNEL_LOCK_SPACE, &channel],
                )
                .map_err(db)?
                .get(0);
            if !locked {
                continue; // another node is claiming on this channel right now
            }
            tx.execute(
                "INSERT INTO clerk_channels (channel) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&channel],
            )
            .map_err(db)?;
            let row = tx
                .query_one(
                    "SELECT last_start, paused_reason IS NOT NULL FROM clerk_channels \
                     WHERE channel = $1",
                    &[&channel],
                )
                .map_err(db)?;
            let (last, paused): (Option<DateTime<Utc>>, bool) = (row.get(0), row.get(1));
            let running: i64 = tx
                .query_one(
                    "SELECT count(*) FROM clerk_jobs WHERE state = 'claimed' AND channel = $1",
                    &[&channel],
                )
                .map_err(db)?
                .get(0);
            let limit = self.limits.channel(&channel);
            let too_soon = match last {
                Some(last) => now < plus(last, limit.min_interval)?,
                None => false,
            };
            if paused || running >= i64::try_from(limit.concurrent).unwrap_or(i64::MAX) || too_soon
            {
                continue;
            }
            let Some(row) = tx
                .query_opt(
                    "SELECT job FROM clerk_jobs WHERE channel = $1 AND state = 'queued' \
                     AND (not_before IS NULL OR not_before <= $2) \
                     AND (pinned IS NULL OR pinned = $3) \
                     ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    &[&channel, &now, &self.node],
                )
                .map_err(db)?
            else {
                continue;
            };
            let mut job = row.get::<_, Json<Job>>(0).0;
            let until = plus(now, lease)?;
            let attempt = job.attempts.saturating_add(1);
            let token = new_token();
            job.state = JobState::Claimed;
            job.attempts = attempt;
            job.not_before = None;
            job.lease = Some(Lease {
                worker: worker.to_owned(),
                claimed_at: now,
                until,
            });
            write_hot(
                tx,
                &job,
                Some(&token),
                lease_ms(lease),
                Some(self.node.as_str()),
            )?;
            tx.execute(
                "UPDATE clerk_channels SET last_start = greatest(coalesce(last_start, $2), $2) \
                 WHERE channel = $1",
                &[&channel, &now],
            )
            .map_err(db)?;
            return Ok(Some(Claim {
                job: job.id,
                token,
                worker: worker.to_owned(),
                attempt,
                claimed_at: now,
                lease,
                lease_until: until,
                spec: job.spec,
            }));
        }
        Ok(None)
    }
}

/// Inserts a new queued job (and wakes idle workers when the transaction commits).
fn insert_queued(tx: &mut Transaction<'_>, spec: &JobSpec) -> Result<JobId, QueueError> {
    let id: i64 = tx
        .query_one("SELECT nextval('clerk_job_ids')", &[])
        .map_err(db)?
        .get(0);
    let job = Job::queued(JobId(id as u64), spec.clone(), Utc::now());
    write_hot(tx, &job, None, 0, None)?;
    notify(tx, &job.spec.channel)?;
    Ok(job.id)
}

impl RunQueue for PgQueue {
    fn enqueue(&self, spec: JobSpec) -> Result<JobId, QueueError> {
        check_spec(&spec)?;
        self.tx(|tx| insert_queued(tx, &spec))
    }

    fn claim(
        &self,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Claim>, QueueError> {
        check_claim(worker, lease)?;
        self.tx(|tx| {
            expire(tx, now)?;
            self.choose(tx, worker, lease, now)
        })
    }

    fn fence(&self, claim: &Claim, now: DateTime<Utc>) -> Result<(), QueueError> {
        self.tx(|tx| fence_check(&held(tx, claim)?.job, claim, now))
    }

    fn enqueue_slot(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        specs: Vec<JobSpec>,
    ) -> Result<Vec<JobId>, QueueError> {
        for spec in &specs {
            check_spec(spec)?;
        }
        self.tx(|tx| {
            let taken = tx
                .query_opt(
                    "INSERT INTO clerk_schedule_slots (schedule, slot, jobs, node) \
                     VALUES ($1, $2, '{}', $3) ON CONFLICT DO NOTHING RETURNING 1",
                    &[&schedule, &slot, &self.node],
                )
                .map_err(db)?
                .is_none();
            if taken {
                // Fired already (by this node or another): the same jobs.
                let jobs: Vec<i64> = tx
                    .query_one(
                        "SELECT jobs FROM clerk_schedule_slots WHERE schedule = $1 AND slot = $2",
                        &[&schedule, &slot],
                    )
                    .map_err(db)?
                    .get(0);
                tracing::info!(%schedule, %slot, "this slot's jobs were enqueued already; not again");
                return Ok(jobs.into_iter().map(|j| JobId(j as u64)).collect());
            }
            let ids = specs
                .iter()
                .map(|spec| insert_queued(tx, spec))
                .collect::<Result<Vec<JobId>, _>>()?;
            let raw: Vec<i64> = ids.iter().map(|j| j.0 as i64).collect();
            tx.execute(
                "UPDATE clerk_schedule_slots SET jobs = $3 WHERE schedule = $1 AND slot = $2",
                &[&schedule, &slot, &raw],
            )
            .map_err(db)?;
            Ok(ids)
        })
    }

    fn begin_scheduler_turn(&self) -> Result<bool, QueueError> {
        // A session lock on this queue's connection: a node that dies or loses the
        // connection gives the turn up with it.
        self.session(|c| {
            c.query_one("SELECT pg_try_advisory_lock($1)", &[&SCHEDULER_LOCK])
                .map(|r| r.get::<_, bool>(0))
        })
    }

    fn end_scheduler_turn(&self) {
        if let Err(e) = self.session(|c| {
            c.query_one("SELECT pg_advisory_unlock($1)", &[&SCHEDULER_LOCK])
                .map(|_| ())
        }) {
            tracing::warn!(error = %e, "cannot give the scheduler turn back (it ends with the connection)");
        }
    }

    fn heartbeat(&self, claim: &Claim, now: DateTime<Utc>) -> Result<DateTime<Utc>, QueueError> {
        self.tx(|tx| {
            let mut hot = held(tx, claim)?;
            if let Some(lease) = &hot.job.lease {
                if lease.until <= now {
                    return Err(QueueError::LeaseLost {
                        job: claim.job,
                        reason: format!(
                            "the lease ended at {}, before this heartbeat at {}",
                            lease.until.to_rfc3339(),
                            now.to_rfc3339()
                        ),
                    });
                }
            }
            let until = plus(
                now,
                Duration::from_millis(u64::try_from(hot.lease_ms).unwrap_or(0)),
            )?;
            if let Some(lease) = &mut hot.job.lease {
                lease.until = until;
            }
            write_hot(
                tx,
                &hot.job,
                hot.token.as_deref(),
                hot.lease_ms,
                Some(self.node.as_str()),
            )?;
            Ok(until)
        })
    }

    fn complete(&self, claim: &Claim, outcome: Outcome) -> Result<(), QueueError> {
        self.tx(|tx| {
            let mut job = held(tx, claim)?.job;
            job.state = JobState::Done;
            job.outcome = Some(outcome.clone());
            job.finished_at = Some(Utc::now());
            job.lease = None;
            write(tx, &job)?;
            notify(tx, &job.spec.channel)
        })
    }

    fn fail(
        &self,
        claim: &Claim,
        failure: Failure,
        now: DateTime<Utc>,
    ) -> Result<Disposition, QueueError> {
        let random = random_u64();
        self.tx(|tx| {
            let mut job = held(tx, claim)?.job;
            let next = after_failure(&job, &failure, now, &self.backoff, random)?;
            end_lease(&mut job, failure.reason.clone(), &next, now);
            if let Some(run_id) = &failure.run_id {
                job.last_run_id = Some(run_id.clone());
            }
            write(tx, &job)?;
            notify(tx, &job.spec.channel)?;
            Ok(next)
        })
    }

    fn release(
        &self,
        claim: &Claim,
        reason: &str,
        not_before: Option<DateTime<Utc>>,
        _now: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        self.tx(|tx| {
            let mut job = held(tx, claim)?.job;
            job.state = JobState::Queued;
            job.attempts = job.attempts.saturating_sub(1);
            job.not_before = not_before;
            job.last_error = Some(reason.to_owned());
            job.lease = None;
            write(tx, &job)?;
            notify(tx, &job.spec.channel)
        })
    }

    fn abandon(
        &self,
        worker_prefix: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>, QueueError> {
        self.tx(|tx| {
            let rows = tx
                .query(
                    "SELECT job FROM clerk_jobs WHERE state = 'claimed' \
                     AND starts_with(worker, $1) ORDER BY id FOR UPDATE",
                    &[&worker_prefix],
                )
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let mut job = row.get::<_, Json<Job>>(0).0;
                let worker = job
                    .lease
                    .as_ref()
                    .map(|l| l.worker.clone())
                    .unwrap_or_default();
                let why = format!(
                    "attempt {} by worker {worker} abandoned: {reason}",
                    job.attempts
                );
                job.attempts = job.attempts.saturating_sub(1);
                job.crashes += 1;
                job.last_error = Some(why.clone());
                job.lease = None;
                if job.crashes >= MAX_CRASHES {
                    job.state = JobState::Dead;
                    job.dead_reason = Some(format!(
                        "abandoned {} times by a clerk serve that stopped mid-run (a crash \
                         loop?); last: {why}",
                        job.crashes
                    ));
                    job.finished_at = Some(now);
                } else {
                    job.state = JobState::Queued;
                    job.not_before = None;
                }
                write(tx, &job)?;
                out.push(job.id);
            }
            Ok(out)
        })
    }

    fn retry(&self, id: JobId) -> Result<(), QueueError> {
        self.tx(|tx| {
            let Some(mut job) = load_finished(tx, id)? else {
                return match load_hot(tx, id)? {
                    Some(hot) => Err(QueueError::InvalidState {
                        job: id,
                        state: hot.job.state,
                        action: "retry (only dead-lettered jobs are retried)",
                    }),
                    None => Err(QueueError::UnknownJob(id)),
                };
            };
            if job.state != JobState::Dead {
                return Err(QueueError::InvalidState {
                    job: id,
                    state: job.state,
                    action: "retry (only dead-lettered jobs are retried)",
                });
            }
            tx.execute(
                "DELETE FROM clerk_jobs_finished WHERE id = $1",
                &[&(id.0 as i64)],
            )
            .map_err(db)?;
            job.state = JobState::Queued;
            job.attempts = 0;
            job.not_before = None;
            job.dead_reason = None;
            job.finished_at = None;
            write(tx, &job)?;
            notify(tx, &job.spec.channel)
        })
    }

    fn drop_job(&self, id: JobId) -> Result<(), QueueError> {
        self.tx(|tx| {
            let mut job = match load_hot(tx, id)? {
                Some(hot) => hot.job,
                None => load_finished(tx, id)?.ok_or(QueueError::UnknownJob(id))?,
            };
            if !matches!(job.state, JobState::Queued | JobState::Dead) {
                return Err(QueueError::InvalidState {
                    job: id,
                    state: job.state,
                    action: "drop (only queued and dead-lettered jobs are dropped)",
                });
            }
            job.state = JobState::Dropped;
            job.not_before = None;
            job.finished_at = Some(Utc::now());
            write(tx, &job)
        })
    }

    fn pause_channel(&self, channel: &str, reason: &str) -> Result<(), QueueError> {
        if channel.trim().is_empty() {
            return Err(QueueError::BadInput("which channel? (empty name)".into()));
        }
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO clerk_channels (channel, paused_reason, paused_since) \
                 VALUES ($1, $2, $3) ON CONFLICT (channel) DO UPDATE \
                 SET paused_reason = $2, paused_since = $3",
                &[&channel, &reason, &Utc::now()],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn resume_channel(&self, channel: &str) -> Result<(), QueueError> {
        self.tx(|tx| {
            let n = tx
                .execute(
                    "UPDATE clerk_channels SET paused_reason = NULL, paused_since = NULL \
                     WHERE channel = $1 AND paused_reason IS NOT NULL",
                    &[&channel],
                )
                .map_err(db)?;
            if n > 0 {
                notify(tx, channel)?;
            }
            Ok(())
        })
    }

    fn paused_channels(&self) -> Result<BTreeMap<String, ChannelPause>, QueueError> {
        self.tx(|tx| {
            let rows = tx
                .query(
                    "SELECT channel, paused_reason, paused_since FROM clerk_channels \
                     WHERE paused_reason IS NOT NULL",
                    &[],
                )
                .map_err(db)?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let since: Option<DateTime<Utc>> = r.get(2);
                    (
                        r.get::<_, String>(0),
                        ChannelPause {
                            reason: r.get(1),
                            since: since.unwrap_or_else(Utc::now),
                        },
                    )
                })
                .collect())
        })
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, QueueError> {
        let state = filter.state.map(state_name);
        let limit = filter.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        self.tx(|tx| {
            let rows = tx
                .query(
                    "SELECT job FROM (SELECT id, channel, state, job FROM clerk_jobs \
                     UNION ALL SELECT id, channel, state, job FROM clerk_jobs_finished) j \
                     WHERE ($1::text IS NULL OR state = $1) \
                     AND ($2::text IS NULL OR channel = $2) ORDER BY id LIMIT $3",
                    &[&state, &filter.channel, &limit],
                )
                .map_err(db)?;
            Ok(rows
                .into_iter()
                .map(|r| r.get::<_, Json<Job>>(0).0)
                .collect())
        })
    }

    fn get(&self, id: JobId) -> Result<Option<Job>, QueueError> {
        self.tx(|tx| {
            let row = tx
                .query_opt(
                    "SELECT job FROM clerk_jobs WHERE id = $1 UNION ALL \
                     SELECT job FROM clerk_jobs_finished WHERE id = $1",
                    &[&(id.0 as i64)],
                )
                .map_err(db)?;
            Ok(row.map(|r| r.get::<_, Json<Job>>(0).0))
        })
    }
}
