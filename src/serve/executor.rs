//! Workers: claim a job, run it on the engine under a heartbeated lease, and tell the queue
//! how it went.
//!
//! | run status        | queue                                                          |
//! |-------------------|----------------------------------------------------------------|
//! | ok, drafted       | complete                                                       |
//! | failed, transient | fail (transient): retried after a backoff, or dead-lettered     |
//! | failed, other     | fail (permanent): dead-lettered with the reason                 |
//! | refused           | fail (permanent)                                               |
//! | session_expired   | the channel's queue is paused (re-authorize, then resume); the |
//! |                   | job is given back without spending an attempt                  |
//! | failed, remote    | the remote browser's connection dropped mid-run (failed        |
//! | browser lost      | closed): released, without spending an attempt                 |
//!
//! Transient: the browser crashed or stopped answering, a browser call timed out, the seller
//! center could not be reached or answered 5xx ([`RunReport::transient`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Daemon, InFlight};
use crate::evidence::new_run_id;
use crate::evidence::Event;
use crate::playbook::Playbook;
use crate::queue::{Claim, Disposition, Failure, JobId, JobSpec, Outcome};
use crate::runner::{RunReport, RunRequest, RunStatus};

/// One worker: claims and runs jobs until the daemon stops.
pub(super) async fn worker(d: Arc<Daemon>, n: usize) {
    let name = format!("{}w{n}-{}", d.worker_prefix, std::process::id());
    loop {
        if d.stopping() {
            return;
        }
        // Registered before asking, so a wake between the claim and the wait is not lost.
        let woken = d.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // A global emergency pause: nothing is claimed (channel pauses are the queue's, see
        // `sync_pauses`).
        let claim = if d.engine.pause.is_paused_globally() {
            Ok(None)
        } else {
            let (lease, now, worker) = (d.opts.lease, d.now(), name.clone());
            d.queue_call(move |q| q.claim(&worker, lease, now)).await
        };
        match claim {
            Ok(Some(claim)) => run_claim(&d, claim).await,
            Ok(None) => {
                let _ = tokio::time::timeout(d.opts.idle_wait, woken).await;
            }
            Err(e) => {
                tracing::error!(worker = %name, error = %e, "cannot claim from the queue");
                let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
            }
        }
    }
}

/// Loads a job's playbook: the exact text it was queued with (by hash, from the store's
/// playbook texts), or, for a job queued without one, the playbook of that name in
/// `<data>/playbooks/` or compiled into clerk. Never a path: the daemon's current
/// directory means nothing.
fn load_playbook(d: &Daemon, spec: &JobSpec) -> Result<Playbook, String> {
    match &spec.playbook_sha256 {
        Some(sha) => {
            // Queued on another node of a cluster: the job carries the text; keep it here
            // (under its own hash, which must be the one the job is pinned to).
            if let Some(text) = &spec.playbook_text {
                if d.engine.store.playbook_text(sha).is_err() {
                    let got = d
                        .engine
                        .store
                        .put_playbook_text(text.as_bytes())
                        .map_err(|e| e.to_string())?;
                    if &got != sha {
                        return Err(format!(
                            "the job's playbook text hashes to {got}, not to {sha} it is pinned to"
                        ));
                    }
                }
            }
            d.engine.stored_playbook(sha).map_err(|e| e.to_string())
        }
        None => crate::playbook::embedded::find_playbook(
            &d.engine.data_dir,
            &spec.playbook,
            Some(d.engine.config.as_ref()),
        )
        .map_err(|diag| diag.to_string()),
    }
}

async fn run_claim(d: &Arc<Daemon>, claim: Claim) {
    let spec = claim.spec.clone();
    let playbook = match load_playbook(d, &spec) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            let reason = format!("the playbook cannot be loaded: {e}");
            settle(d, &claim, None, Verdict::Fail(Failure::permanent(reason))).await;
            return;
        }
    };
    let run_id = new_run_id(d.now());
    if let Ok(mut m) = d.in_flight.lock() {
        m.insert(
            claim.job,
            (
                InFlight {
                    job: claim.job,
                    run_id: run_id.clone(),
                    channel: spec.channel.clone(),
                    playbook: playbook.name.clone(),
                    worker: claim.worker.clone(),
                    started_at: Utc::now(),
                },
                claim.clone(),
            ),
        );
    }
    // Secrets are never queued: the daemon takes them from its environment.
    // Claims come with the job, or as `claim.NAME` keys of its inputs (schedule rows).
    let (mut inputs, mut claims) = crate::batch::split_claims(&spec.inputs);
    claims.extend(spec.claims.clone());
    for name in playbook.secret_inputs() {
        let missing = inputs
            .get(name)
            .is_none_or(|v| v.is_empty() || v == crate::playbook::SECRET);
        if missing {
            if let Ok(v) = std::env::var(format!("CLERK_SECRET_{}", name.to_ascii_uppercase())) {
                inputs.insert(name.to_owned(), v);
            }
        }
    }
    let req = RunRequest {
        playbook,
        inputs,
        operator: spec.operator.clone(),
        case_ref: spec.case_ref.clone(),
        batch_id: spec
            .batch_id
            .clone()
            .or_else(|| spec.schedule.as_ref().map(|s| format!("schedule:{s}"))),
        approval: spec.approval_id.clone(),
        claims,
        replay_of: None,
        rollback_of: spec.rollback_of.clone(),
        offline: None,
        sample: false,
    };
    // A submit spends its approval only while this node still holds the job's lease.
    let fence = spec.approval_id.as_ref().map(|_| {
        let (d, c) = (d.clone(), claim.clone());
        crate::approval::Fence::new(move || {
            let (d, c) = (d.clone(), c.clone());
            Box::pin(async move {
                let now = d.now();
                d.queue_call(move |q| q.fence(&c, now))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .for_claim(claim.job.0, claim.token.clone())
    });
    let run = d.engine.run_fenced(req, Some(run_id.clone()), fence);
    tokio::pin!(run);
    let beat = claim.lease / 3;
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tokio::time::sleep(beat) => {
                let (c, now) = (claim.clone(), d.now());
                if let Err(e) = d.queue_call(move |q| q.heartbeat(&c, now)).await {
                    tracing::warn!(job = %claim.job, error = %e, "heartbeat failed");
                }
            }
        }
    };
    if let Ok(mut m) = d.in_flight.lock() {
        m.remove(&claim.job);
    }
    let verdict = match &result {
        Ok(report) => verdict_of(report),
        // The evidence store failed: nothing the job did is wrong; try again later.
        Err(e) => Verdict::Fail(Failure::transient(format!(
            "the evidence store failed: {e}"
        ))),
    };
    if let Ok(report) = &result {
        d.share_report(&run_id, report).await;
    }
    if let (Ok(report), Verdict::SessionExpired) = (&result, &verdict) {
        pause_for_session(d, &spec.channel, report).await;
    }
    settle(d, &claim, Some(run_id), verdict).await;
    d.wake();
}

/// What the queue is told about a finished run.
enum Verdict {
    Complete(String),
    Fail(Failure),
    SessionExpired,
    /// Stopped by the emergency pause: given back.
    Paused(String),
}

fn verdict_of(report: &RunReport) -> Verdict {
    let error = || report.error.clone().unwrap_or_default();
    match report.status {
        RunStatus::Ok | RunStatus::Drafted | RunStatus::NeedsReview => {
            Verdict::Complete(report.status.as_str().into())
        }
        RunStatus::SessionExpired => Verdict::SessionExpired,
        RunStatus::Paused => Verdict::Paused(error()),
        // A remote browser's connection dropped: the run failed closed; nothing is known
        // about the job, which is given back (a few seconds later) without an attempt.
        RunStatus::Failed if report.browser_lost => Verdict::Paused(format!(
            "released: {} (the run failed closed; the job is queued again)",
            error()
        )),
        RunStatus::Refused => Verdict::Fail(Failure::permanent(format!("refused: {}", error()))),
        RunStatus::Failed if report.transient => Verdict::Fail(Failure::transient(error())),
        RunStatus::Failed => Verdict::Fail(Failure::permanent(error())),
    }
}

/// Pauses the channel's queue after its session expired, saying who must re-authorize.
async fn pause_for_session(d: &Daemon, channel: &str, report: &RunReport) {
    let who = d
        .engine
        .config
        .channel(channel)
        .map(|c| c.owner.clone())
        .unwrap_or_default();
    let reason = format!(
        "session expired in run {}: {} — {who} must re-authorize (clerk login {channel} …), \
         then `clerk queue resume {channel}`",
        report.run_id.as_deref().unwrap_or("?"),
        report
            .error
            .as_deref()
            .unwrap_or("the seller center asked for a login"),
    );
    let c = channel.to_owned();
    let r = reason.clone();
    match d.queue_call(move |q| q.pause_channel(&c, &r)).await {
        Ok(()) => tracing::warn!(%channel, %reason, "channel queue paused"),
        Err(e) => tracing::error!(%channel, error = %e, "cannot pause the channel's queue"),
    }
}

async fn settle(d: &Daemon, claim: &Claim, run_id: Option<String>, verdict: Verdict) {
    let c = claim.clone();
    let now = d.now();
    let spec = &claim.spec;
    let result = match verdict {
        Verdict::Complete(status) => {
            let outcome = Outcome {
                run_id: run_id.clone(),
                status,
            };
            d.queue_call(move |q| q.complete(&c, outcome)).await
        }
        Verdict::SessionExpired => {
            let reason = "the channel's session expired; queued again for after re-authorization";
            d.queue_call(move |q| q.release(&c, reason, None, now))
                .await
        }
        Verdict::Paused(why) => {
            // Not claimable again before the pause is mirrored into the queue.
            let later = now + chrono::TimeDelta::seconds(1);
            d.queue_call(move |q| q.release(&c, &why, Some(later), now))
                .await
        }
        Verdict::Fail(mut failure) => {
            failure.run_id = run_id.clone();
            let reason = failure.reason.clone();
            match d.queue_call(move |q| q.fail(&c, failure, now)).await {
                Ok(disposition) => {
                    record_disposition(d, claim, run_id, &reason, &disposition).await;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        tracing::error!(job = %claim.job, playbook = %spec.playbook, error = %e, "cannot settle the job");
    }
}

/// Journals a retry or a dead letter, so the weekly numbers count them.
async fn record_disposition(
    d: &Daemon,
    claim: &Claim,
    run_id: Option<String>,
    reason: &str,
    disposition: &Disposition,
) {
    let spec = &claim.spec;
    let at = crate::evidence::timestamp(d.now());
    let event = match disposition {
        Disposition::Retry { not_before } => Event::JobRetried {
            job: claim.job.0,
            run_id,
            channel: spec.channel.clone(),
            playbook: spec.playbook.clone(),
            attempt: claim.attempt,
            reason: reason.to_owned(),
            not_before: not_before.map(crate::evidence::timestamp),
            at,
        },
        Disposition::Dead { reason } => Event::JobDeadLettered {
            job: claim.job.0,
            run_id,
            channel: spec.channel.clone(),
            playbook: spec.playbook.clone(),
            attempts: claim.attempt,
            reason: reason.clone(),
            at,
        },
    };
    if let Err(e) = d.engine.record(event).await {
        tracing::error!(job = %claim.job, error = %e, "cannot journal the job's disposition");
    }
}

/// After the shutdown deadline: the runs still in flight were stopped; mark each
/// interrupted in the journal and give its job back to the queue.
pub(super) async fn interrupt_left_over(d: &Daemon) -> Vec<JobId> {
    let left: BTreeMap<JobId, (InFlight, Claim)> = d
        .in_flight
        .lock()
        .map(|mut m| std::mem::take(&mut *m))
        .unwrap_or_default();
    let mut out = Vec::new();
    for (job, (f, claim)) in left {
        let started = d
            .engine
            .store
            .run_records(&f.run_id)
            .map(|r| !r.is_empty())
            .unwrap_or(false);
        if started {
            let event = Event::RunInterrupted {
                run_id: f.run_id.clone(),
                reason: format!(
                    "clerk serve shut down and the run did not finish within {:?}; job {job} \
                     queued again",
                    d.opts.shutdown_deadline
                ),
            };
            if let Err(e) = d.engine.record(event).await {
                tracing::error!(run = %f.run_id, error = %e, "cannot mark the run interrupted");
            }
        }
        // Given back: the shutdown says nothing about the job, so the attempt does not count.
        let now = d.now();
        match d
            .queue_call(move |q| {
                q.release(
                    &claim,
                    "clerk serve shut down before the run finished",
                    None,
                    now,
                )
            })
            .await
        {
            Ok(_) => out.push(job),
            Err(e) => tracing::error!(%job, error = %e, "cannot give the job back"),
        }
    }
    out
}

/// Prefix of the queue pause reasons that mirror the emergency pause of a channel.
pub(super) const EMERGENCY: &str = "emergency pause: ";

/// Mirrors the emergency pause of channels into the queue, so their jobs are not claimed,
/// and lifts the mirror when the channel is resumed (queue pauses of other kinds, such as
/// an expired session, stay). Runs until the daemon stops.
pub(super) async fn sync_pauses(d: Arc<Daemon>) {
    loop {
        if d.stopping() {
            return;
        }
        let state = d.engine.pause.state();
        let dd = d.clone();
        // In a cluster, every node mirrors its own board into the shared queue; a node
        // lifts only the emergency pauses it put there (its tag), so a node whose board has
        // not yet adopted another node's pause does not undo it.
        let tag = d.node().map(|n| format!(" [node {n}]"));
        let synced = dd
            .queue_call(move |q| {
                let queued = q.paused_channels()?;
                let mut changed = false;
                let ours = |reason: &str| match &tag {
                    Some(t) => reason.ends_with(t.as_str()),
                    None => true,
                };
                for (channel, info) in &state.channels {
                    let reason = format!(
                        "{EMERGENCY}{}{}",
                        info.message(),
                        tag.as_deref().unwrap_or("")
                    );
                    let current = queued.get(channel);
                    let stale_own = current
                        .is_some_and(|p| p.reason.starts_with(EMERGENCY) && ours(&p.reason))
                        && current.map(|p| &p.reason) != Some(&reason);
                    if current.is_none() || stale_own {
                        q.pause_channel(channel, &reason)?;
                        changed = true;
                    }
                }
                for (channel, p) in &queued {
                    if p.reason.starts_with(EMERGENCY)
                        && ours(&p.reason)
                        && !state.channels.contains_key(channel)
                    {
                        q.resume_channel(channel)?;
                        changed = true;
                    }
                }
                Ok(changed)
            })
            .await;
        match synced {
            Ok(true) => d.wake(),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot mirror the pause into the queue"),
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), d.pause_changed.notified()).await;
    }
}
