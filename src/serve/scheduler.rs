//! The scheduler: at each tick, every schedule's due slot is decided ([`schedule::decide`])
//! and carried out — recorded as missed or skipped, or fired by enqueuing one job per input
//! row and recording `schedule_fired` with the job ids.
//!
//! One node at a time: a tick first takes the installation's scheduler turn
//! ([`RunQueue::begin_scheduler_turn`], an advisory lock with PostgreSQL), so nodes reading one
//! shared journal do not each fire the same slot.
//!
//! Exactly once per slot, across crashes: the high-water mark (the latest recorded slot) is
//! in the journal, and jobs carry their slot. A crash after enqueuing and before the
//! `schedule_fired` record leaves jobs the next tick finds ([`schedule::unrecorded_jobs`])
//! and records instead of enqueuing again; a crash before enqueuing leaves the slot due, and
//! it fires within the grace window or is recorded as missed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Daemon;
use crate::channel::Config;
use crate::evidence::{Store, StoreError};
use crate::queue::{JobFilter, JobId, QueueError, RunQueue};
use crate::schedule::{
    decide, firing_running, next_after, unrecorded_jobs, Action, InputSource, Schedule,
    ScheduleError, Schedules,
};

/// Rows of inputs, one run each.
pub type Rows = Vec<BTreeMap<String, String>>;

/// Errors of one tick (the daemon logs them and ticks again).
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// (schedule, slot, jobs) fired.
    pub fired: Vec<(String, DateTime<Utc>, Vec<JobId>)>,
    /// (schedule, slot, reason) skipped.
    pub skipped: Vec<(String, DateTime<Utc>, String)>,
    /// (schedule, missed slots).
    pub missed: Vec<(String, u64)>,
}

/// What a tick needs; `fetch` reads rows from an inputs URL.
pub struct Ticker<'a> {
    pub store: &'a Store,
    pub queue: &'a dyn RunQueue,
    pub config: &'a Config,
    /// Attempts of each enqueued job.
    pub max_attempts: u32,
    /// How late a slot may still fire.
    pub grace: Duration,
    pub fetch: &'a (dyn Fn(&str) -> Result<Rows, String> + Sync),
}

impl Ticker<'_> {
    /// Decides and carries out every schedule's due slot at `now`.
    pub fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, TickError> {
        // One node at a time, and the schedules read after taking the turn: a slot another
        // node fired a moment ago is then in the (shared) journal's high-water mark.
        if !self.queue.begin_scheduler_turn()? {
            return Ok(TickReport::default());
        }
        struct Turn<'q>(&'q dyn RunQueue);
        impl Drop for Turn<'_> {
            fn drop(&mut self) {
                self.0.end_scheduler_turn();
            }
        }
        let _turn = Turn(self.queue);
        let schedules = Schedules::load(self.store)?;
        let mut report = TickReport::default();
        for s in schedules.iter() {
            let running = match &s.last_fired {
                Some(f) => firing_running(f, self.queue)?,
                None => false,
            };
            let decision = decide(s, s.last_slot, now, self.grace, running);
            if let Some(event) = decision.missed_event(&s.name, now) {
                self.store.append(event)?;
                if let Some(m) = &decision.missed {
                    tracing::warn!(schedule = %s.name, count = m.count, "schedule slots missed");
                    report.missed.push((s.name.clone(), m.count));
                }
            }
            match &decision.action {
                Action::Wait => {}
                Action::Skip { slot, reason, .. } => {
                    if let Some(event) = decision.skipped_event(&s.name, now) {
                        self.store.append(event)?;
                    }
                    tracing::info!(schedule = %s.name, %slot, %reason, "firing skipped");
                    report.skipped.push((s.name.clone(), *slot, reason.clone()));
                }
                Action::Fire { slot, covers } => {
                    let found =
                        unrecorded_jobs(&s.name, *slot, &self.queue.list(&JobFilter::default())?);
                    let jobs = if !found.is_empty() {
                        found
                    } else {
                        // The playbook as it is now, pinned by its exact text: the jobs run
                        // these bytes even if the file changes before they are claimed.
                        let pinned = s
                            .load_playbook(self.store.data_dir(), Some(self.config))
                            .map_err(|e| format!("cannot load the playbook: {e}"))
                            .and_then(|pb| {
                                self.store
                                    .put_playbook_text(pb.text.bytes())
                                    .map(|sha| {
                                        (
                                            pb.name.clone(),
                                            sha,
                                            pb.mode != crate::channel::Mode::ReadOnly,
                                        )
                                    })
                                    .map_err(|e| format!("cannot store the playbook text: {e}"))
                            });
                        match pinned.and_then(|p| {
                            self.rows(s)
                                .map(|rows| (p, rows))
                                .map_err(|reason| format!("cannot read the inputs: {reason}"))
                        }) {
                            Ok(((name, sha, writes), rows)) => {
                                let mut specs = Vec::new();
                                for mut spec in s.job_specs(*slot, rows) {
                                    spec.max_attempts = self.max_attempts;
                                    spec.playbook = name.clone();
                                    spec.playbook_sha256 = Some(sha.clone());
                                    if let Err(e) = super::cluster_job(
                                        self.config,
                                        self.store,
                                        &mut spec,
                                        writes,
                                    ) {
                                        tracing::error!(error = %e, "scheduled job without its text");
                                    }
                                    specs.push(spec);
                                }
                                self.queue.enqueue_slot(&s.name, *slot, specs)?
                            }
                            Err(reason) => {
                                // Recorded as a skip with the reason: nothing to run.
                                self.store.append(crate::evidence::Event::ScheduleSkipped {
                                    name: s.name.clone(),
                                    slot: crate::evidence::timestamp(*slot),
                                    covers: *covers,
                                    reason: reason.clone(),
                                    at: crate::evidence::timestamp(now),
                                })?;
                                tracing::error!(schedule = %s.name, %reason, "firing skipped");
                                report.skipped.push((s.name.clone(), *slot, reason));
                                continue;
                            }
                        }
                    };
                    let raw: Vec<u64> = jobs.iter().map(|j| j.0).collect();
                    if let Some(event) = decision.fired_event(&s.name, &raw, now) {
                        self.store.append(event)?;
                    }
                    tracing::info!(schedule = %s.name, %slot, jobs = jobs.len(), "schedule fired");
                    report.fired.push((s.name.clone(), *slot, jobs));
                }
            }
        }
        Ok(report)
    }

    fn rows(&self, s: &Schedule) -> Result<Rows, String> {
        match &s.inputs {
            InputSource::None => Ok(vec![BTreeMap::new()]),
            InputSource::File(path) => crate::batch::read_rows(path).map_err(|e| e.to_string()),
            InputSource::Rows(rows) => Ok(rows.clone()),
            InputSource::Url(url) => {
                // Checked again before every fetch: a name may resolve elsewhere by now.
                let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
                crate::schedule::check_inputs_url(&parsed, &self.config.serve.inputs_url_allow)?;
                (self.fetch)(url)
            }
        }
    }

    /// The next slot of any active schedule after `now`.
    pub fn next_slot(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, TickError> {
        let schedules = Schedules::load(self.store)?;
        Ok(schedules.iter().filter_map(|s| next_after(s, now)).min())
    }
}

/// Fetches input rows from a URL: CSV or JSON lines, told apart by the path's extension or
/// else the response's content type. Bounded in time and size.
pub fn fetch_rows(url: &str) -> Result<Rows, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .redirects(0)
        .build();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let content_type = response.content_type().to_ascii_lowercase();
    let path = url::Url::parse(url)
        .map(|u| u.path().to_ascii_lowercase())
        .unwrap_or_default();
    let format = if path.ends_with(".csv") || content_type.contains("csv") {
        "csv"
    } else if path.ends_with(".jsonl")
        || path.ends_with(".ndjson")
        || content_type.contains("ndjson")
        || content_type.contains("jsonl")
        || content_type.contains("json")
    {
        "jsonl"
    } else {
        return Err(format!(
            "{url} answered {content_type:?}: name a .csv or .jsonl URL, or answer text/csv or \
             application/x-ndjson"
        ));
    };
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(response.into_reader(), 64 * 1024 * 1024),
        &mut text,
    )
    .map_err(|e| format!("reading {url}: {e}"))?;
    crate::batch::parse_rows(url, &text, format).map_err(|e| e.to_string())
}

/// The daemon's scheduler loop: ticks at start, then every `scheduler_tick` or at the next
/// slot, whichever comes first.
pub(super) async fn run(d: Arc<Daemon>) {
    loop {
        if d.stopping() {
            return;
        }
        let now = d.now();
        let dd = d.clone();
        let ticked = tokio::task::spawn_blocking(move || {
            let ticker = Ticker {
                store: &dd.engine.store,
                queue: dd.queue.as_ref(),
                config: &dd.engine.config,
                max_attempts: dd.opts.max_attempts,
                grace: dd.opts.schedule_grace,
                fetch: &fetch_rows,
            };
            let report = ticker.tick(now);
            let next = ticker.next_slot(now).ok().flatten();
            (report, next)
        })
        .await;
        let mut wait = d.opts.scheduler_tick;
        match ticked {
            Ok((Ok(report), next)) => {
                if !report.fired.is_empty() {
                    d.wake();
                }
                if let Some(next) = next {
                    let until = (next - d.now()).to_std().unwrap_or(Duration::ZERO);
                    wait = wait.min(until + Duration::from_millis(5));
                }
            }
            Ok((Err(e), _)) => tracing::error!(error = %e, "scheduler tick failed"),
            Err(e) => tracing::error!(error = %e, "scheduler task failed"),
        }
        tokio::time::sleep(wait).await;
    }
}
