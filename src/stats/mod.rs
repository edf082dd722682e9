//! The weekly numbers: how the automation did over a period, computed from the journal
//! alone (engine code: no front end imported; `clerk stats` and the daemon's `/metrics`
//! print what [`compute`] returns).
//!
//! **Which records count.** The journal is read as it stood at `until`: records whose `ts`
//! is at or after `until` are ignored. Times are the records' `ts` (the store's clock),
//! never the times inside events, so every number is reproducible from `journal.jsonl`.
//!
//! - A **run** belongs to the period (and to the UTC day) of its `run_started` record, and
//!   to that record's channel. Its outcome is its `run_finished` status (`ok`, `failed`,
//!   `refused`, `session_expired`; a draft finishes `ok`, its mode says `draft`), else
//!   `interrupted` (a `run_interrupted` record), else `unfinished`.
//! - **Success rate**: runs finished `ok` / runs with a `run_finished` record, except runs
//!   finished `paused` (stopped by a person's emergency pause, not failed by the automation;
//!   they are counted in `runs_by_outcome` only and their evidence is not judged).
//! - **Evidence completeness**: a run's *screenshot steps* are the step indices that any run
//!   of the same playbook (same `playbook_sha256`, so the same file) finished with a
//!   `step_finished` of kind `screenshot`, anywhere in the journal before `until`. A run
//!   with screenshot steps that has ended (finished or interrupted) is *complete* when every
//!   one of them finished `ok` with an `evidence_captured` record of that step, and every
//!   screenshot the run recorded (the draft capture too) exists under `screenshots/` and
//!   hashes to its recorded SHA-256. Runs still unfinished are not judged.
//! - **Blocked requests**: `request_blocked` records in the period, by [`blocked_kind`].
//! - **Approvals** (channel of the `approval_requested` record; the first decision counts):
//!   requested, decided, approved and rejected in the period; latency from the request to
//!   the decision for decisions in the period, and from the decision to `approval_used` for
//!   submits in the period (median and p90 by nearest rank, max); *pending*: requested before
//!   `until`, undecided and unused then, and not expired at `until`, with its age at
//!   `min(until, now)`. Review pass rate: approved / decided.
//! - **Refused submits**: `refused` records with an approval id whose action is `submit`
//!   (refused at the submit step) or `run` (refused before the run started); their kind is
//!   [`crate::approval::submit_refusal_kind`]; *mismatched* ones are those whose live form
//!   or write was not the approved one.
//! - **Retries and dead letters**: `job_retried` / `job_dead_lettered` records in the period.
//! - **Session expiries**: runs of the period finished `session_expired`.

pub mod metrics;

pub use metrics::{render_metrics, LiveMetrics, MetricsError};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::approval;
use crate::evidence::{self, Event, Record, Store, StoreError};

/// Upper bounds (seconds) of the run duration histogram's buckets (`+Inf` follows).
pub const DURATION_BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// At most this many days get a row in [`Stats::days`] for a long period; beyond it only
/// days with runs are listed.
const MAX_DAY_ROWS: i64 = 400;

/// Errors of the stats computation.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("`{0}` is not a time: give 7d, 24h, 30m, 2w, an RFC 3339 time or a date (YYYY-MM-DD)")]
    BadTime(String),
    #[error("the period is empty: since {since} is not before until {until}")]
    EmptyPeriod { since: String, until: String },
    #[error("journal record {seq} has an unreadable time `{ts}`")]
    BadRecordTime { seq: u64, ts: String },
}

/// The period `[since, until)` and, optionally, the one channel to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub channel: Option<String>,
}

/// Everything `clerk stats` reports. Field names are stable (the `--json` output and the
/// daemon's API).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// The period, RFC 3339 UTC (`until` excluded).
    pub since: String,
    pub until: String,
    /// The channel asked for, if one was.
    pub channel: Option<String>,
    /// All channels together (only the asked-for channel when there is one).
    pub overall: Numbers,
    /// Per channel that has anything in the period.
    pub channels: BTreeMap<String, Numbers>,
    /// Per UTC day of the period, oldest first.
    pub days: Vec<Day>,
}

/// One channel's (or every channel's) numbers for the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Numbers {
    /// Runs started in the period.
    pub runs: u64,
    /// By outcome: `ok`, `failed`, `refused`, `session_expired` (finished), `interrupted`,
    /// `unfinished`, or any other status a `run_finished` record names.
    pub runs_by_outcome: BTreeMap<String, u64>,
    /// Runs with a `run_finished` record, except `paused` ones.
    pub finished: u64,
    /// Runs finished `ok` (drafts included).
    pub ok: u64,
    /// Of those, draft runs (mode `draft`).
    pub drafts: u64,
    /// `ok / finished`; `None` when nothing finished.
    pub success_rate: Option<f64>,
    pub evidence: EvidenceNumbers,
    /// `request_blocked` records in the period.
    pub blocked_requests: u64,
    /// By [`blocked_kind`].
    pub blocked_by_kind: BTreeMap<String, u64>,
    pub approvals: ApprovalNumbers,
    pub submits: SubmitNumbers,
    /// `job_retried` records in the period.
    pub retries: u64,
    /// `job_dead_lettered` records in the period.
    pub dead_letters: u64,
    /// Runs finished `session_expired`.
    pub session_expiries: u64,
    /// Case checks of runs in the period (`match:` rules).
    pub cases: CaseNumbers,
    /// Scheduled slots that passed without a firing (`schedule_missed`), in the period.
    /// Counted overall only: a schedule's records do not name a channel.
    pub missed_slots: u64,
    /// Replays (`clerk replay`, `clerk test`) started in the period. They are checks of
    /// playbooks, not service work: none of their records counts in any other number.
    #[serde(default)]
    pub replays: u64,
    /// Durations (first record to `run_finished`) of the period's finished runs.
    pub run_durations: DurationHistogram,
}

/// Evidence completeness.
/// How the case checks of a period came out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaseNumbers {
    /// Runs whose case claims were compared with the page.
    pub checked: u64,
    pub matched: u64,
    /// The page contradicted a claim (wrong order, wrong customer).
    pub conflicts: u64,
    /// A claim could not be compared (not given, not shown, too few digits).
    pub unverifiable: u64,
    /// Drafts and submits stopped before anything was filled (wrong send prevented).
    pub writes_prevented: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EvidenceNumbers {
    /// Ended runs whose playbook has screenshot steps.
    pub judged: u64,
    pub complete: u64,
    pub incomplete: u64,
    /// `complete / judged`.
    pub completeness: Option<f64>,
}

/// Approvals and review.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApprovalNumbers {
    pub requested: u64,
    pub decided: u64,
    pub approved: u64,
    pub rejected: u64,
    /// `approved / decided`.
    pub pass_rate: Option<f64>,
    /// Approved drafts whose write reached the seller center in the period (`approval_used`
    /// by a run in which the guard let the approved write out; a used approval whose
    /// submit was then refused, or sent nothing, is not counted).
    pub submitted: u64,
    /// Request → decision, for decisions in the period.
    pub latency: Latency,
    /// Decision → `approval_used`, for submits in the period.
    pub decided_to_submitted: Latency,
    /// Decided in the period by people.
    pub decided_by_people: u64,
    /// Decided in the period by an auto-approval policy, by `policy:NAME@HASH`.
    pub decided_by_policy: BTreeMap<String, u64>,
    /// Expired in the period without a decision (nobody reviewed them in time).
    pub expired: u64,
    /// `expired / (decided + expired)`: the waiting-timeout rate.
    pub expired_rate: Option<f64>,
    /// Waiting for a reviewer at `until`.
    pub pending: u64,
    pub oldest_pending_age_secs: Option<f64>,
    /// The waiting approvals, oldest first.
    pub waiting: Vec<PendingApproval>,
}

/// An approval waiting for a reviewer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingApproval {
    pub approval_id: String,
    pub channel: String,
    pub requested_at: String,
    pub age_secs: f64,
}

/// A latency distribution in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub median_secs: Option<f64>,
    pub p90_secs: Option<f64>,
    pub max_secs: Option<f64>,
}

/// Refused submits.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SubmitNumbers {
    /// `refused` records with an approval id and action `submit` or `run`.
    pub refused: u64,
    /// Of those, the ones whose form or write did not match the approved draft.
    pub mismatched: u64,
    /// Of those, the repeated sends prevented: a second write of a submit, or an approval
    /// used again ([`crate::approval::is_duplicate_kind`]).
    #[serde(default)]
    pub duplicates: u64,
    /// By [`crate::approval::submit_refusal_kind`].
    pub refused_by_kind: BTreeMap<String, u64>,
}

/// A histogram of run durations: `counts[i]` runs took at most `bounds_secs[i]` seconds and
/// more than the bound before; the last count is above every bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DurationHistogram {
    pub bounds_secs: Vec<f64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_secs: f64,
}

impl Default for DurationHistogram {
    fn default() -> Self {
        DurationHistogram {
            bounds_secs: DURATION_BUCKETS.to_vec(),
            counts: vec![0; DURATION_BUCKETS.len() + 1],
            count: 0,
            sum_secs: 0.0,
        }
    }
}

impl DurationHistogram {
    fn observe(&mut self, secs: f64) {
        let i = self
            .bounds_secs
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds_secs.len());
        self.counts[i] += 1;
        self.count += 1;
        self.sum_secs += secs;
    }
}

/// One UTC day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub runs: u64,
    pub ok: u64,
    /// Finished, not `ok`.
    pub not_ok: u64,
}

/// The kind of a blocked request, from the guard's reason (`src/browser/guard.rs` writes
/// them): `off_origin` (outside the channel's allowed origins), `write` (a write in a
/// read-only run), `draft_held_write` (a draft's write held for review), `submit_window`
/// (another write while a submit was armed or judged), `websocket`, `connection` (fetch,
/// beacon, EventSource, WebTransport closed by the guard's connect-src), `service_worker`,
/// `site_csp_report` (the site's own CSP report), `other`.
pub fn blocked_kind(method: &str, reason: &str) -> &'static str {
    if method == "WEBSOCKET" || reason.starts_with("websocket ") {
        "websocket"
    } else if reason.contains("not in the channel's allowed origins") || reason == "unparsable URL"
    {
        "off_origin"
    } else if reason.contains("held for review") {
        "draft_held_write"
    } else if reason.contains("no approved submit allows it") {
        "write"
    } else if reason.contains("submit window") || reason.contains("during the submit") {
        "submit_window"
    } else if reason.starts_with("connection to ")
        || reason.contains("guard's content security policy")
    {
        "connection"
    } else if reason.starts_with("service worker") {
        "service_worker"
    } else if reason.starts_with("content security policy report of the site") {
        "site_csp_report"
    } else {
        "other"
    }
}

/// Parses a `--since`/`--until` value: a span back from `now` (`30m`, `24h`, `7d`, `2w`),
/// or what [`evidence::parse_since`] accepts (RFC 3339, `YYYY-MM-DD`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, StatsError> {
    let t = text.trim();
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let digits = &t[..t.len() - 1];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = digits
                .parse()
                .map_err(|_| StatsError::BadTime(text.to_owned()))?;
            let span = match unit {
                'm' => Duration::try_minutes(n),
                'h' => Duration::try_hours(n),
                'd' => Duration::try_days(n),
                'w' => Duration::try_weeks(n),
                _ => None,
            };
            return span
                .and_then(|s| now.checked_sub_signed(s))
                .ok_or_else(|| StatsError::BadTime(text.to_owned()));
        }
    }
    evidence::parse_since(t).map_err(|_| StatsError::BadTime(text.to_owned()))
}

/// Computes the numbers of `q` from the store's journal; `now` is the reference for the age
/// of waiting approvals when `until` is in the future. Screenshots are checked on disk.
pub fn compute(store: &Store, q: &StatsQuery, now: DateTime<Utc>) -> Result<Stats, StatsError> {
    let records = store.records()?;
    let mut checked: HashMap<String, bool> = HashMap::new();
    let mut png_ok = |sha: &str| -> bool {
        *checked
            .entry(sha.to_owned())
            .or_insert_with(|| png_verifies(&store.screenshot_path(sha), sha))
    };
    compute_records(&records, q, now, &mut png_ok)
}

/// The file exists and its SHA-256 is `sha`.
fn png_verifies(path: &std::path::Path, sha: &str) -> bool {
    use sha2::{Digest, Sha256};
    match std::fs::read(path) {
        Ok(bytes) => hex::encode(Sha256::digest(&bytes)) == sha,
        Err(_) => false,
    }
}

/// What the journal says about one run.
#[derive(Default)]
struct RunInfo {
    channel: String,
    mode: String,
    playbook_sha256: String,
    started: String,
    in_period: bool,
    finished: Option<(String, String)>,
    interrupted: bool,
    /// Screenshot steps finished, with whether they finished `ok`.
    shot_steps: BTreeMap<u64, bool>,
    /// `(step, sha256)` of every capture.
    captures: Vec<(u64, String)>,
    /// The case check's verdict (`matched`, `conflict`, `unverifiable`).
    case: Option<String>,
}

/// What the journal says about one approval.
#[derive(Default)]
struct ApprovalInfo {
    channel: String,
    requested: String,
    expires_at: String,
    decision: Option<(String, String)>,
    /// Who decided it.
    reviewer: Option<String>,
    used: Option<String>,
    /// The run that used it.
    used_by: Option<String>,
}

/// Numbers plus the samples behind the percentiles.
#[derive(Default)]
struct Acc {
    n: Numbers,
    latency_ms: Vec<i64>,
    to_submit_ms: Vec<i64>,
}

struct Tally<'a> {
    filter: Option<&'a str>,
    overall: Acc,
    channels: BTreeMap<String, Acc>,
}

impl Tally<'_> {
    /// Applies `f` to the overall numbers and the channel's, unless the channel is filtered out.
    fn add(&mut self, channel: &str, f: impl Fn(&mut Acc)) {
        if self.filter.is_some_and(|c| c != channel) {
            return;
        }
        f(&mut self.overall);
        f(self.channels.entry(channel.to_owned()).or_default());
    }
}

fn millis_between(from: &str, to: &str) -> Option<i64> {
    let a = DateTime::parse_from_rfc3339(from).ok()?;
    let b = DateTime::parse_from_rfc3339(to).ok()?;
    Some((b - a).num_milliseconds())
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    *map.entry(key.to_owned()).or_default() += 1;
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Nearest-rank percentile (`p` in (0, 1]) of sorted samples.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn latency(mut samples: Vec<i64>) -> Latency {
    samples.sort_unstable();
    let secs = |v: Option<i64>| v.map(|ms| ms as f64 / 1000.0);
    Latency {
        count: samples.len() as u64,
        median_secs: secs(percentile(&samples, 0.5)),
        p90_secs: secs(percentile(&samples, 0.9)),
        max_secs: secs(samples.last().copied()),
    }
}

fn finish(acc: Acc) -> Numbers {
    let mut n = acc.n;
    n.success_rate = ratio(n.ok, n.finished);
    n.evidence.completeness = ratio(n.evidence.complete, n.evidence.judged);
    n.approvals.pass_rate = ratio(n.approvals.approved, n.approvals.decided);
    n.approvals.expired_rate = ratio(
        n.approvals.expired,
        n.approvals.decided + n.approvals.expired,
    );
    n.approvals.latency = latency(acc.latency_ms);
    n.approvals.decided_to_submitted = latency(acc.to_submit_ms);
    n.approvals
        .waiting
        .sort_by(|a, b| a.requested_at.cmp(&b.requested_at));
    n.approvals.oldest_pending_age_secs = n.approvals.waiting.first().map(|p| p.age_secs);
    n
}

/// [`compute`] over records already read (journal order); `png_ok(sha256)` says whether a
/// screenshot exists and hashes to its name.
pub fn compute_records(
    records: &[Record],
    q: &StatsQuery,
    now: DateTime<Utc>,
    png_ok: &mut dyn FnMut(&str) -> bool,
) -> Result<Stats, StatsError> {
    let since = evidence::timestamp(q.since);
    let until = evidence::timestamp(q.until);
    if since >= until {
        return Err(StatsError::EmptyPeriod { since, until });
    }
    let in_period = |ts: &str| ts >= since.as_str() && ts < until.as_str();
    let reference = q.until.min(now);

    let mut tally = Tally {
        filter: q.channel.as_deref(),
        overall: Acc::default(),
        channels: BTreeMap::new(),
    };
    let mut runs: HashMap<String, RunInfo> = HashMap::new();
    let mut run_order: Vec<String> = Vec::new();
    let mut shot_steps: HashMap<String, BTreeSet<u64>> = HashMap::new();
    let mut approvals: HashMap<String, ApprovalInfo> = HashMap::new();
    let mut approval_order: Vec<String> = Vec::new();
    let mut sent: BTreeSet<String> = BTreeSet::new();
    let mut replays: HashSet<String> = HashSet::new();

    for r in records {
        // Record times are canonical RFC 3339 UTC with milliseconds: they sort as text.
        if r.ts.len() != 24 || !r.ts.ends_with('Z') {
            return Err(StatsError::BadRecordTime {
                seq: r.seq,
                ts: r.ts.clone(),
            });
        }
        if r.ts.as_str() >= until.as_str() {
            continue;
        }
        let ts = r.ts.as_str();
        if let Event::RunStarted {
            run_id,
            channel,
            replay_of: Some(_),
            ..
        } = &r.event
        {
            replays.insert(run_id.clone());
            if in_period(ts) {
                tally.add(channel, |a| a.n.replays += 1);
            }
            continue;
        }
        if r.event.run_id().is_some_and(|id| replays.contains(id)) {
            continue;
        }
        match &r.event {
            Event::RunStarted {
                run_id,
                channel,
                mode,
                playbook_sha256,
                ..
            } => {
                if !runs.contains_key(run_id) {
                    run_order.push(run_id.clone());
                }
                runs.insert(
                    run_id.clone(),
                    RunInfo {
                        channel: channel.clone(),
                        mode: mode.clone(),
                        playbook_sha256: playbook_sha256.clone(),
                        started: r.ts.clone(),
                        in_period: in_period(ts),
                        ..RunInfo::default()
                    },
                );
            }
            Event::StepFinished {
                run_id,
                step,
                kind,
                outcome,
                ..
            } if kind == "screenshot" => {
                if let Some(run) = runs.get_mut(run_id) {
                    run.shot_steps.insert(*step, outcome == "ok");
                    shot_steps
                        .entry(run.playbook_sha256.clone())
                        .or_default()
                        .insert(*step);
                }
            }
            Event::CaseChecked {
                run_id, verdict, ..
            } => {
                if let Some(run) = runs.get_mut(run_id) {
                    run.case = Some(verdict.clone());
                }
            }
            Event::EvidenceCaptured {
                run_id,
                step,
                sha256,
                ..
            } => {
                if let Some(run) = runs.get_mut(run_id) {
                    run.captures.push((*step, sha256.clone()));
                }
            }
            Event::RunFinished { run_id, status, .. } => {
                if let Some(run) = runs.get_mut(run_id) {
                    if run.finished.is_none() {
                        run.finished = Some((status.clone(), r.ts.clone()));
                    }
                }
            }
            Event::RunInterrupted { run_id, .. } => {
                if let Some(run) = runs.get_mut(run_id) {
                    run.interrupted = true;
                }
            }
            Event::RequestBlocked {
                run_id,
                method,
                reason,
                ..
            } if in_period(ts) => {
                let channel = runs
                    .get(run_id)
                    .map(|run| run.channel.clone())
                    .unwrap_or_default();
                let kind = blocked_kind(method, reason);
                tally.add(&channel, |a| {
                    a.n.blocked_requests += 1;
                    bump(&mut a.n.blocked_by_kind, kind);
                });
            }
            Event::ApprovalRequested {
                approval_id,
                channel,
                expires_at,
                ..
            } if !approvals.contains_key(approval_id) => {
                approval_order.push(approval_id.clone());
                approvals.insert(
                    approval_id.clone(),
                    ApprovalInfo {
                        channel: channel.clone(),
                        requested: r.ts.clone(),
                        expires_at: expires_at.clone(),
                        ..ApprovalInfo::default()
                    },
                );
            }
            Event::ScheduleMissed { count, .. } if in_period(ts) && q.channel.is_none() => {
                tally.overall.n.missed_slots += count;
            }
            Event::ApprovalDecided {
                approval_id,
                decision,
                reviewer,
                ..
            } => {
                if let Some(a) = approvals.get_mut(approval_id) {
                    if a.decision.is_none() {
                        a.decision = Some((decision.clone(), r.ts.clone()));
                        a.reviewer = Some(reviewer.clone());
                    }
                }
            }
            Event::ApprovalUsed {
                approval_id,
                run_id,
                ..
            } => {
                if let Some(a) = approvals.get_mut(approval_id) {
                    if a.used.is_none() {
                        a.used = Some(r.ts.clone());
                        a.used_by = Some(run_id.clone());
                    }
                }
            }
            // The guard let the approved write out to the seller center.
            Event::RequestAllowed { run_id, reason, .. }
                if reason.starts_with(crate::browser::APPROVED_SUBMIT) =>
            {
                sent.insert(run_id.clone());
            }
            Event::Refused {
                action,
                approval_id: Some(id),
                run_id,
                reason,
                ..
            } if in_period(ts) && (action == "submit" || action == "run") => {
                let channel = approvals
                    .get(id)
                    .map(|a| a.channel.clone())
                    .or_else(|| {
                        run_id
                            .as_ref()
                            .and_then(|rid| runs.get(rid))
                            .map(|run| run.channel.clone())
                    })
                    .unwrap_or_default();
                let kind = approval::submit_refusal_kind(reason);
                let mismatch = approval::is_mismatch_kind(kind);
                let duplicate = approval::is_duplicate_kind(kind);
                tally.add(&channel, |a| {
                    a.n.submits.refused += 1;
                    if mismatch {
                        a.n.submits.mismatched += 1;
                    }
                    if duplicate {
                        a.n.submits.duplicates += 1;
                    }
                    bump(&mut a.n.submits.refused_by_kind, kind);
                });
            }
            Event::JobRetried { channel, .. } if in_period(ts) => {
                tally.add(channel, |a| a.n.retries += 1);
            }
            Event::JobDeadLettered { channel, .. } if in_period(ts) => {
                tally.add(channel, |a| a.n.dead_letters += 1);
            }
            _ => {}
        }
    }

    // Runs of the period.
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for id in &run_order {
        let Some(run) = runs.get(id) else { continue };
        if !run.in_period || tally.filter.is_some_and(|c| c != run.channel) {
            continue;
        }
        let outcome = match (&run.finished, run.interrupted) {
            (Some((status, _)), _) => status.clone(),
            (None, true) => "interrupted".to_owned(),
            (None, false) => "unfinished".to_owned(),
        };
        // A paused run was stopped by a person: it is listed by outcome, but neither its
        // success nor its evidence is judged.
        let paused = run.finished.is_some() && outcome == "paused";
        let finished = run.finished.is_some() && !paused;
        let ok = outcome == "ok" && finished;
        let draft = ok && run.mode == "draft";
        let expired = finished && outcome == "session_expired";
        let duration = run
            .finished
            .as_ref()
            .and_then(|(_, end)| millis_between(&run.started, end));
        let judged = match shot_steps.get(&run.playbook_sha256) {
            Some(steps) if !steps.is_empty() && !paused && (finished || run.interrupted) => {
                let all_steps = steps.iter().all(|s| {
                    run.shot_steps.get(s) == Some(&true)
                        && run.captures.iter().any(|(step, _)| step == s)
                });
                let files = run.captures.iter().all(|(_, sha)| png_ok(sha));
                Some(all_steps && files)
            }
            _ => None,
        };
        tally.add(&run.channel, |a| {
            a.n.runs += 1;
            bump(&mut a.n.runs_by_outcome, &outcome);
            if finished {
                a.n.finished += 1;
            }
            if ok {
                a.n.ok += 1;
            }
            if draft {
                a.n.drafts += 1;
            }
            if expired {
                a.n.session_expiries += 1;
            }
            if let Some(verdict) = &run.case {
                a.n.cases.checked += 1;
                match verdict.as_str() {
                    "matched" => a.n.cases.matched += 1,
                    "conflict" => a.n.cases.conflicts += 1,
                    _ => a.n.cases.unverifiable += 1,
                }
                if verdict != "matched" && matches!(run.mode.as_str(), "draft" | "submit") {
                    a.n.cases.writes_prevented += 1;
                }
            }
            if let Some(ms) = duration {
                a.n.run_durations.observe(ms.max(0) as f64 / 1000.0);
            }
            if let Some(complete) = judged {
                a.n.evidence.judged += 1;
                if complete {
                    a.n.evidence.complete += 1;
                } else {
                    a.n.evidence.incomplete += 1;
                }
            }
        });
        let day = days.entry(run.started[..10].to_owned()).or_default();
        day.runs += 1;
        if ok {
            day.ok += 1;
        } else if finished {
            day.not_ok += 1;
        }
    }

    // Approvals.
    for id in &approval_order {
        let Some(a) = approvals.get(id) else { continue };
        let requested_in = in_period(&a.requested);
        let decided_in = a.decision.as_ref().filter(|(_, ts)| in_period(ts));
        let latency_ms = decided_in.and_then(|(_, ts)| millis_between(&a.requested, ts));
        // Marked used before the click; submitted only if the write then reached the seller
        // center.
        let submitted_in = a
            .used
            .as_ref()
            .filter(|ts| in_period(ts))
            .filter(|_| a.used_by.as_ref().is_some_and(|run| sent.contains(run)));
        let used_in = a.used.as_ref().filter(|ts| in_period(ts));
        let to_submit_ms = used_in.and_then(|used| {
            a.decision
                .as_ref()
                .and_then(|(_, decided)| millis_between(decided, used))
        });
        let expires = DateTime::parse_from_rfc3339(&a.expires_at)
            .ok()
            .map(|t| t.with_timezone(&Utc));
        let not_expired = expires.is_some_and(|t| t > q.until);
        // Expired in the period with no decision before it (and never used).
        let expired_in = expires.is_some_and(|t| t >= q.since && t < q.until && t <= reference)
            && a.used.is_none()
            && a.decision.as_ref().is_none_or(|(_, ts)| {
                DateTime::parse_from_rfc3339(ts)
                    .map(|d| d.with_timezone(&Utc) >= expires.unwrap_or(q.until))
                    .unwrap_or(false)
            });
        let waiting = (a.decision.is_none() && a.used.is_none() && not_expired).then(|| {
            let age_ms = DateTime::parse_from_rfc3339(&a.requested)
                .map(|t| (reference - t.with_timezone(&Utc)).num_milliseconds())
                .unwrap_or(0);
            PendingApproval {
                approval_id: id.clone(),
                channel: a.channel.clone(),
                requested_at: a.requested.clone(),
                age_secs: age_ms.max(0) as f64 / 1000.0,
            }
        });
        tally.add(&a.channel, |acc| {
            let ap = &mut acc.n.approvals;
            if requested_in {
                ap.requested += 1;
            }
            if let Some((decision, _)) = decided_in {
                ap.decided += 1;
                match a.reviewer.as_deref() {
                    Some(r) if r.starts_with(crate::policy::REVIEWER_PREFIX) => {
                        *ap.decided_by_policy.entry(r.to_owned()).or_default() += 1
                    }
                    _ => ap.decided_by_people += 1,
                }
                match decision.as_str() {
                    "approved" => ap.approved += 1,
                    "rejected" => ap.rejected += 1,
                    _ => {}
                }
            }
            if let Some(ms) = latency_ms {
                acc.latency_ms.push(ms);
            }
            if expired_in {
                acc.n.approvals.expired += 1;
            }
            if submitted_in.is_some() {
                acc.n.approvals.submitted += 1;
            }
            if let Some(ms) = to_submit_ms {
                acc.to_submit_ms.push(ms);
            }
            if let Some(p) = &waiting {
                acc.n.approvals.pending += 1;
                acc.n.approvals.waiting.push(p.clone());
            }
        });
    }

    Ok(Stats {
        since,
        until,
        channel: q.channel.clone(),
        days: day_rows(q, days),
        overall: finish(tally.overall),
        channels: tally
            .channels
            .into_iter()
            .map(|(c, acc)| (c, finish(acc)))
            .collect(),
    })
}

/// Every day of the period (only days with runs when the period is very long).
fn day_rows(q: &StatsQuery, mut seen: BTreeMap<String, Day>) -> Vec<Day> {
    let first = q.since.date_naive();
    let last = (q.until - Duration::milliseconds(1)).date_naive();
    if (last - first).num_days() > MAX_DAY_ROWS {
        return seen
            .into_iter()
            .map(|(date, mut d)| {
                d.date = date;
                d
            })
            .collect();
    }
    let mut out = Vec::new();
    let mut day: NaiveDate = first;
    while day <= last {
        let date = day.format("%Y-%m-%d").to_string();
        let mut row = seen.remove(&date).unwrap_or_default();
        row.date = date;
        out.push(row);
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests;
