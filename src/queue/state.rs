//! The queue's state and its transitions, without any I/O.
//!
//! Every mutation is planned as a list of [`Change`]s against the current state (which checks
//! it is allowed), written to the log, and only then applied with [`State::apply`] — the same
//! function that replays the log on open, so what is in memory is always what the log says.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Backoff, ChannelPause, Claim, Disposition, Failure, FailureKind, Job, JobFilter, JobId,
    JobSpec, JobState, Lease, Outcome, Priority, QueueError, QueueLimits,
};

/// One state change, as written to the log (`"type"` names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Change {
    Enqueued {
        job: JobId,
        at: DateTime<Utc>,
        /// Boxed: a spec is far larger than any other change.
        spec: Box<JobSpec>,
    },
    Claimed {
        job: JobId,
        worker: String,
        token: String,
        attempt: u32,
        at: DateTime<Utc>,
        lease_ms: u64,
        until: DateTime<Utc>,
    },
    Heartbeat {
        job: JobId,
        token: String,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    Completed {
        job: JobId,
        token: String,
        at: DateTime<Utc>,
        outcome: Outcome,
    },
    Failed {
        job: JobId,
        token: String,
        at: DateTime<Utc>,
        kind: FailureKind,
        reason: String,
        next: Disposition,
        /// The attempt's run in the evidence journal, if it started one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
    },
    LeaseExpired {
        job: JobId,
        token: String,
        at: DateTime<Utc>,
        reason: String,
        next: Disposition,
    },
    /// Given back without a verdict (pause, shutdown, an expired session): the attempt does
    /// not count.
    Released {
        job: JobId,
        token: String,
        at: DateTime<Utc>,
        reason: String,
        not_before: Option<DateTime<Utc>>,
    },
    /// Its worker's daemon died mid-run (found at the next start): given back without
    /// counting an attempt, but counted as a crash; after [`MAX_CRASHES`] it is
    /// dead-lettered (`dead`), so a crash loop cannot run a job forever.
    Abandoned {
        job: JobId,
        token: String,
        at: DateTime<Utc>,
        reason: String,
        dead: Option<String>,
    },
    Retried {
        job: JobId,
        at: DateTime<Utc>,
    },
    Dropped {
        job: JobId,
        at: DateTime<Utc>,
    },
    Paused {
        channel: String,
        reason: String,
        at: DateTime<Utc>,
    },
    Resumed {
        channel: String,
        at: DateTime<Utc>,
    },
}

/// A job and what only the queue may know about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    job: Job,
    /// The current lease's token, while claimed.
    token: Option<String>,
    /// The current lease's length, while claimed.
    lease_ms: u64,
}

/// Everything the queue knows. Serialized whole into a snapshot by compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct State {
    /// The id the next enqueued job gets.
    next_id: u64,
    jobs: BTreeMap<u64, Entry>,
    paused: BTreeMap<String, ChannelPause>,
    /// Per channel: the start (claim time) of its latest run.
    last_start: BTreeMap<String, DateTime<Utc>>,
    /// Queued jobs in claim order (derived; rebuilt after loading a snapshot).
    #[serde(skip)]
    queued: BTreeSet<(Reverse<Priority>, JobId)>,
    /// Claimed jobs (derived).
    #[serde(skip)]
    claimed: BTreeSet<JobId>,
}

impl Default for State {
    fn default() -> Self {
        State {
            next_id: 1,
            jobs: BTreeMap::new(),
            paused: BTreeMap::new(),
            last_start: BTreeMap::new(),
            queued: BTreeSet::new(),
            claimed: BTreeSet::new(),
        }
    }
}

/// Longest lease (and longest backoff) accepted: keeps time arithmetic far from overflow.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// `t + d`; `d` is at most [`MAX_DURATION`] (checked by callers), so this cannot overflow for
/// any time chrono can print.
pub(super) fn plus(t: DateTime<Utc>, d: Duration) -> Result<DateTime<Utc>, QueueError> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .ok_or_else(|| QueueError::BadInput(format!("time out of range: {t} + {d:?}")))
}

impl State {
    /// Rebuilds the derived indexes (after deserializing a snapshot).
    pub(super) fn rebuild_indexes(&mut self) {
        self.queued.clear();
        self.claimed.clear();
        for (id, e) in &self.jobs {
            match e.job.state {
                JobState::Queued => {
                    self.queued
                        .insert((Reverse(e.job.spec.priority), JobId(*id)));
                }
                JobState::Claimed => {
                    self.claimed.insert(JobId(*id));
                }
                _ => {}
            }
        }
    }

    pub(super) fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id.0).map(|e| &e.job)
    }

    pub(super) fn list(&self, filter: &JobFilter) -> Vec<Job> {
        self.jobs
            .values()
            .map(|e| &e.job)
            .filter(|j| filter.state.is_none_or(|s| j.state == s))
            .filter(|j| {
                filter
                    .channel
                    .as_deref()
                    .is_none_or(|c| j.spec.channel == c)
            })
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    pub(super) fn paused(&self) -> &BTreeMap<String, ChannelPause> {
        &self.paused
    }

    // ------------------------------------------------------------------ planning

    pub(super) fn plan_enqueue(
        &self,
        spec: JobSpec,
        at: DateTime<Utc>,
    ) -> Result<(JobId, Change), QueueError> {
        check_spec(&spec)?;
        let job = JobId(self.next_id);
        Ok((
            job,
            Change::Enqueued {
                job,
                at,
                spec: Box::new(spec),
            },
        ))
    }

    /// Every lease that ended at or before `now`, expired: queued again at once, or
    /// dead-lettered when that was the job's last attempt.
    pub(super) fn plan_expiries(&self, now: DateTime<Utc>) -> Vec<Change> {
        self.plan_lease_ends(now, |lease, n| {
            (lease.until <= now).then(|| expiry_reason(lease, n))
        })
    }

    /// Every claimed job with its lease and the lease's token.
    fn leases(&self) -> impl Iterator<Item = (JobId, &Job, &Lease, &String)> + '_ {
        self.claimed.iter().filter_map(|id| {
            let e = self.jobs.get(&id.0)?;
            match (&e.job.lease, &e.token) {
                (Some(lease), Some(token)) => Some((*id, &e.job, lease, token)),
                _ => None,
            }
        })
    }

    /// The leases of workers whose name starts with `worker_prefix` (a daemon that died),
    /// given back without spending the attempt but counted as a crash ([`Change::Abandoned`]).
    pub(super) fn plan_abandon(
        &self,
        worker_prefix: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        for (id, job, lease, token) in self.leases() {
            if !lease.worker.starts_with(worker_prefix) {
                continue;
            }
            let crashes = job.crashes + 1;
            let why = format!(
                "attempt {} by worker {} abandoned: {reason}",
                job.attempts, lease.worker
            );
            out.push(Change::Abandoned {
                job: id,
                token: token.clone(),
                at: now,
                dead: (crashes >= super::MAX_CRASHES).then(|| {
                    format!(
                        "abandoned {crashes} times by a clerk serve that stopped mid-run (a crash loop?); last: {why}"
                    )
                }),
                reason: why,
            });
        }
        out
    }

    /// Ends the leases `ended` gives a reason for.
    fn plan_lease_ends(
        &self,
        now: DateTime<Utc>,
        ended: impl Fn(&Lease, u32) -> Option<String>,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        for (id, job, lease, token) in self.leases() {
            let (n, max) = (job.attempts, job.spec.max_attempts);
            let Some(reason) = ended(lease, n) else {
                continue;
            };
            let next = after_lease_end(n, max, &reason);
            out.push(Change::LeaseExpired {
                job: id,
                token: token.clone(),
                at: now,
                reason,
                next,
            });
        }
        out
    }

    /// The claim of the next job that may run at `now`, if any. Expire leases first
    /// ([`State::plan_expiries`]): an expired lease still counts against the limits here.
    pub(super) fn plan_claim(
        &self,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
        limits: &QueueLimits,
        token: String,
    ) -> Result<Option<(Claim, Change)>, QueueError> {
        check_claim(worker, lease)?;
        if self.claimed.len() >= limits.global {
            return Ok(None);
        }
        let mut running: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &self.claimed {
            if let Some(e) = self.jobs.get(&id.0) {
                *running.entry(e.job.spec.channel.as_str()).or_default() += 1;
            }
        }
        let mut blocked: BTreeSet<&str> = BTreeSet::new();
        for (_, id) in &self.queued {
            let Some(e) = self.jobs.get(&id.0) else {
                continue;
            };
            let channel = e.job.spec.channel.as_str();
            if blocked.contains(channel) || e.job.not_before.is_some_and(|t| t > now) {
                continue;
            }
            let limit = limits.channel(channel);
            let too_soon = match self.last_start.get(channel) {
                Some(last) => now < plus(*last, limit.min_interval)?,
                None => false,
            };
            if self.paused.contains_key(channel)
                || running.get(channel).copied().unwrap_or(0) >= limit.concurrent
                || too_soon
            {
                blocked.insert(channel);
                continue;
            }
            let until = plus(now, lease)?;
            let attempt = e.job.attempts.saturating_add(1);
            let claim = Claim {
                job: *id,
                token: token.clone(),
                worker: worker.to_owned(),
                attempt,
                claimed_at: now,
                lease,
                lease_until: until,
                spec: e.job.spec.clone(),
            };
            let change = Change::Claimed {
                job: *id,
                worker: worker.to_owned(),
                token,
                attempt,
                at: now,
                lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
                until,
            };
            return Ok(Some((claim, change)));
        }
        Ok(None)
    }

    /// The entry `claim` still holds, or why it lost it.
    fn held(&self, claim: &Claim) -> Result<&Entry, QueueError> {
        let e = self
            .jobs
            .get(&claim.job.0)
            .ok_or(QueueError::UnknownJob(claim.job))?;
        if e.token.as_deref() == Some(claim.token.as_str()) {
            return Ok(e);
        }
        Err(lease_lost(&e.job, claim))
    }

    /// `Ok` while `claim` holds its job's lease at `now` ([`super::RunQueue::fence`]).
    pub(super) fn check_fence(&self, claim: &Claim, now: DateTime<Utc>) -> Result<(), QueueError> {
        fence_check(&self.held(claim)?.job, claim, now)
    }

    pub(super) fn plan_heartbeat(
        &self,
        claim: &Claim,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, Change), QueueError> {
        let e = self.held(claim)?;
        if let Some(lease) = &e.job.lease {
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
        let until = plus(now, Duration::from_millis(e.lease_ms))?;
        Ok((
            until,
            Change::Heartbeat {
                job: claim.job,
                token: claim.token.clone(),
                at: now,
                until,
            },
        ))
    }

    pub(super) fn plan_complete(
        &self,
        claim: &Claim,
        outcome: Outcome,
        at: DateTime<Utc>,
    ) -> Result<Change, QueueError> {
        self.held(claim)?;
        Ok(Change::Completed {
            job: claim.job,
            token: claim.token.clone(),
            at,
            outcome,
        })
    }

    /// `random` chooses the backoff's jitter.
    pub(super) fn plan_fail(
        &self,
        claim: &Claim,
        failure: Failure,
        now: DateTime<Utc>,
        backoff: &Backoff,
        random: u64,
    ) -> Result<(Disposition, Change), QueueError> {
        let e = self.held(claim)?;
        let next = after_failure(&e.job, &failure, now, backoff, random)?;
        let change = Change::Failed {
            job: claim.job,
            token: claim.token.clone(),
            at: now,
            kind: failure.kind,
            reason: failure.reason,
            next: next.clone(),
            run_id: failure.run_id,
        };
        Ok((next, change))
    }

    pub(super) fn plan_release(
        &self,
        claim: &Claim,
        reason: String,
        not_before: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<Change, QueueError> {
        self.held(claim)?;
        Ok(Change::Released {
            job: claim.job,
            token: claim.token.clone(),
            at,
            reason,
            not_before,
        })
    }

    fn entry(&self, job: JobId) -> Result<&Entry, QueueError> {
        self.jobs.get(&job.0).ok_or(QueueError::UnknownJob(job))
    }

    pub(super) fn plan_retry(&self, job: JobId, at: DateTime<Utc>) -> Result<Change, QueueError> {
        match self.entry(job)?.job.state {
            JobState::Dead => Ok(Change::Retried { job, at }),
            state => Err(QueueError::InvalidState {
                job,
                state,
                action: "retry (only dead-lettered jobs are retried)",
            }),
        }
    }

    pub(super) fn plan_drop(&self, job: JobId, at: DateTime<Utc>) -> Result<Change, QueueError> {
        match self.entry(job)?.job.state {
            JobState::Queued | JobState::Dead => Ok(Change::Dropped { job, at }),
            state => Err(QueueError::InvalidState {
                job,
                state,
                action: "drop (only queued and dead-lettered jobs are dropped)",
            }),
        }
    }

    pub(super) fn plan_pause(
        &self,
        channel: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Change, QueueError> {
        if channel.trim().is_empty() {
            return Err(QueueError::BadInput("which channel? (empty name)".into()));
        }
        Ok(Change::Paused {
            channel: channel.to_owned(),
            reason: reason.to_owned(),
            at,
        })
    }

    pub(super) fn plan_resume(&self, channel: &str, at: DateTime<Utc>) -> Option<Change> {
        self.paused.contains_key(channel).then(|| Change::Resumed {
            channel: channel.to_owned(),
            at,
        })
    }

    // ------------------------------------------------------------------ applying

    /// Applies one change, or says why it cannot apply (then nothing changed).
    pub(super) fn apply(&mut self, change: &Change) -> Result<(), String> {
        self.apply_change(change)?;
        if let Change::Failed {
            job,
            run_id: Some(run_id),
            ..
        } = change
        {
            if let Some(e) = self.jobs.get_mut(&job.0) {
                e.job.last_run_id = Some(run_id.clone());
            }
        }
        Ok(())
    }

    fn apply_change(&mut self, change: &Change) -> Result<(), String> {
        match change {
            Change::Enqueued { job, at, spec } => {
                if self.jobs.contains_key(&job.0) {
                    return Err(format!("job {job} enqueued twice"));
                }
                let entry = Entry {
                    job: Job::queued(*job, (**spec).clone(), *at),
                    token: None,
                    lease_ms: 0,
                };
                self.jobs.insert(job.0, entry);
                self.queued.insert((Reverse(spec.priority), *job));
                self.next_id = self.next_id.max(job.0.saturating_add(1));
            }
            Change::Claimed {
                job,
                worker,
                token,
                attempt,
                at,
                lease_ms,
                until,
            } => {
                let e = self.in_state(*job, JobState::Queued, "claimed")?;
                if *attempt != e.job.attempts.saturating_add(1) {
                    return Err(format!(
                        "job {job} claimed for attempt {attempt} after {} attempts",
                        e.job.attempts
                    ));
                }
                e.job.state = JobState::Claimed;
                e.job.attempts = *attempt;
                e.job.not_before = None;
                e.job.lease = Some(Lease {
                    worker: worker.clone(),
                    claimed_at: *at,
                    until: *until,
                });
                e.token = Some(token.clone());
                e.lease_ms = *lease_ms;
                let (priority, channel) = (e.job.spec.priority, e.job.spec.channel.clone());
                self.queued.remove(&(Reverse(priority), *job));
                self.claimed.insert(*job);
                let last = self.last_start.entry(channel).or_insert(*at);
                *last = (*last).max(*at);
            }
            Change::Heartbeat {
                job, token, until, ..
            } => {
                let e = self.leased(*job, token, "heartbeat")?;
                if let Some(lease) = &mut e.job.lease {
                    lease.until = *until;
                }
            }
            Change::Completed {
                job,
                token,
                at,
                outcome,
            } => {
                let e = self.leased(*job, token, "completed")?;
                e.job.state = JobState::Done;
                e.job.outcome = Some(outcome.clone());
                e.job.finished_at = Some(*at);
                e.job.lease = None;
                e.token = None;
                self.claimed.remove(job);
            }
            Change::Failed {
                job,
                token,
                at,
                reason,
                next,
                ..
            }
            | Change::LeaseExpired {
                job,
                token,
                at,
                reason,
                next,
            } => {
                let e = self.leased(*job, token, "failed")?;
                e.job.last_error = Some(reason.clone());
                e.job.lease = None;
                e.token = None;
                let priority = e.job.spec.priority;
                match next {
                    Disposition::Retry { not_before } => {
                        e.job.state = JobState::Queued;
                        e.job.not_before = *not_before;
                        self.queued.insert((Reverse(priority), *job));
                    }
                    Disposition::Dead { reason } => {
                        e.job.state = JobState::Dead;
                        e.job.dead_reason = Some(reason.clone());
                        e.job.finished_at = Some(*at);
                    }
                }
                self.claimed.remove(job);
            }
            Change::Abandoned {
                job,
                token,
                at,
                reason,
                dead,
            } => {
                let e = self.leased(*job, token, "abandoned")?;
                e.job.attempts = e.job.attempts.saturating_sub(1);
                e.job.crashes += 1;
                e.job.last_error = Some(reason.clone());
                e.job.lease = None;
                e.token = None;
                let priority = e.job.spec.priority;
                match dead {
                    Some(why) => {
                        e.job.state = JobState::Dead;
                        e.job.dead_reason = Some(why.clone());
                        e.job.finished_at = Some(*at);
                    }
                    None => {
                        e.job.state = JobState::Queued;
                        e.job.not_before = None;
                        self.queued.insert((Reverse(priority), *job));
                    }
                }
                self.claimed.remove(job);
            }
            Change::Released {
                job,
                token,
                reason,
                not_before,
                ..
            } => {
                let e = self.leased(*job, token, "released")?;
                e.job.state = JobState::Queued;
                e.job.attempts = e.job.attempts.saturating_sub(1);
                e.job.not_before = *not_before;
                e.job.last_error = Some(reason.clone());
                e.job.lease = None;
                e.token = None;
                let priority = e.job.spec.priority;
                self.queued.insert((Reverse(priority), *job));
                self.claimed.remove(job);
            }
            Change::Retried { job, .. } => {
                let e = self.in_state(*job, JobState::Dead, "retried")?;
                e.job.state = JobState::Queued;
                e.job.attempts = 0;
                e.job.not_before = None;
                e.job.dead_reason = None;
                e.job.finished_at = None;
                let priority = e.job.spec.priority;
                self.queued.insert((Reverse(priority), *job));
            }
            Change::Dropped { job, at } => {
                let e = self
                    .jobs
                    .get_mut(&job.0)
                    .ok_or_else(|| format!("job {job} dropped but never enqueued"))?;
                if !matches!(e.job.state, JobState::Queued | JobState::Dead) {
                    return Err(format!("job {job} dropped while {}", e.job.state));
                }
                e.job.state = JobState::Dropped;
                e.job.not_before = None;
                e.job.finished_at = Some(*at);
                let priority = e.job.spec.priority;
                self.queued.remove(&(Reverse(priority), *job));
            }
            Change::Paused {
                channel,
                reason,
                at,
            } => {
                self.paused.insert(
                    channel.clone(),
                    ChannelPause {
                        reason: reason.clone(),
                        since: *at,
                    },
                );
            }
            Change::Resumed { channel, .. } => {
                self.paused.remove(channel);
            }
        }
        Ok(())
    }

    fn in_state(&mut self, job: JobId, state: JobState, what: &str) -> Result<&mut Entry, String> {
        let e = self
            .jobs
            .get_mut(&job.0)
            .ok_or_else(|| format!("job {job} {what} but never enqueued"))?;
        if e.job.state != state {
            return Err(format!("job {job} {what} while {}", e.job.state));
        }
        Ok(e)
    }

    fn leased(&mut self, job: JobId, token: &str, what: &str) -> Result<&mut Entry, String> {
        let e = self.in_state(job, JobState::Claimed, what)?;
        if e.token.as_deref() != Some(token) {
            return Err(format!("job {job} {what} under a lease it no longer had"));
        }
        Ok(e)
    }
}

/// Refuses a job that could never run (no playbook, channel or operator; no attempts).
pub(super) fn check_spec(spec: &JobSpec) -> Result<(), QueueError> {
    for (field, value) in [
        ("playbook", &spec.playbook),
        ("channel", &spec.channel),
        ("operator", &spec.operator),
    ] {
        if value.trim().is_empty() {
            return Err(QueueError::BadInput(format!(
                "cannot enqueue a job without a {field}"
            )));
        }
    }
    if spec.max_attempts == 0 {
        return Err(QueueError::BadInput(
            "cannot enqueue a job with max_attempts 0 (it could never run)".into(),
        ));
    }
    Ok(())
}

/// Why `claim` no longer holds `job` (its token is not the job's).
pub(super) fn lease_lost(job: &Job, claim: &Claim) -> QueueError {
    let lost = |reason: String| QueueError::LeaseLost {
        job: claim.job,
        reason,
    };
    match (&job.state, &job.lease) {
        (JobState::Claimed, Some(lease)) => lost(format!(
            "the job was claimed again (attempt {} by worker {})",
            job.attempts, lease.worker
        )),
        (JobState::Queued, _) if job.attempts >= claim.attempt => lost(format!(
            "the lease expired and the job was queued again ({})",
            job.last_error.as_deref().unwrap_or("no reason recorded")
        )),
        (state, _) => lost(format!("the job is {state} now")),
    }
}

/// The fencing rule on a job `claim` holds: its lease must not have ended at `now`.
pub(super) fn fence_check(job: &Job, claim: &Claim, now: DateTime<Utc>) -> Result<(), QueueError> {
    match &job.lease {
        Some(lease) if lease.until > now => Ok(()),
        Some(lease) => Err(QueueError::LeaseLost {
            job: claim.job,
            reason: format!(
                "the lease ended at {}, before {} (fencing check of attempt {})",
                lease.until.to_rfc3339(),
                now.to_rfc3339(),
                claim.attempt
            ),
        }),
        None => Err(QueueError::LeaseLost {
            job: claim.job,
            reason: "the job holds no lease".into(),
        }),
    }
}

/// What a failed attempt does to `job`: dead-lettered, or queued again after the backoff.
pub(super) fn after_failure(
    job: &Job,
    failure: &Failure,
    now: DateTime<Utc>,
    backoff: &Backoff,
    random: u64,
) -> Result<Disposition, QueueError> {
    let (n, max) = (job.attempts, job.spec.max_attempts);
    Ok(match failure.kind {
        FailureKind::Permanent => Disposition::Dead {
            reason: format!("permanent failure on attempt {n}: {}", failure.reason),
        },
        FailureKind::Transient if n >= max => Disposition::Dead {
            reason: format!(
                "gave up after {n} of {max} attempts; last: {}",
                failure.reason
            ),
        },
        FailureKind::Transient => Disposition::Retry {
            not_before: Some(plus(now, backoff.delay(n, random))?),
        },
    })
}

/// Why an expired lease ended (attempt `n`).
pub(super) fn expiry_reason(lease: &Lease, n: u32) -> String {
    format!(
        "lease of worker {} expired at {} during attempt {n} (the worker stopped \
         heartbeating: it may have died)",
        lease.worker,
        lease.until.to_rfc3339()
    )
}

/// What an ended lease does: queued again at once, or dead-lettered after the last attempt.
pub(super) fn after_lease_end(n: u32, max: u32, reason: &str) -> Disposition {
    if n >= max {
        Disposition::Dead {
            reason: format!("gave up after {n} of {max} attempts; last: {reason}"),
        }
    } else {
        Disposition::Retry { not_before: None }
    }
}

/// Refuses a claim without a worker name or with a lease out of range.
pub(super) fn check_claim(worker: &str, lease: Duration) -> Result<(), QueueError> {
    if worker.trim().is_empty() {
        return Err(QueueError::BadInput(
            "a worker needs a name to claim".into(),
        ));
    }
    if lease.is_zero() || lease > MAX_DURATION {
        return Err(QueueError::BadInput(format!(
            "a lease must be longer than 0 and at most {} days (got {lease:?})",
            MAX_DURATION.as_secs() / 86_400
        )));
    }
    Ok(())
}
