//! The runner: walks a playbook step by step in one browser, records every action, stops at
//! gates.
//!
//! [`Engine`] is the one entry point every front end uses (the CLI today; the scheduler and
//! the reviewer console later): it owns the config, the evidence store and the browser
//! settings, and [`Engine::run`] executes one run from authorization to the last record.
//! Safety checks live here and in the browser's network guard, never in a front end:
//! operator and mode checks, the session check, origin checks on every navigation, the
//! read-only guard, and the submit gate (see [`crate::approval`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use url::Url;

pub use crate::approval::Fence;
use crate::approval::{self, SubmitGate};
use crate::browser::{
    Browser, BrowserError, ElementRect, Find, GuardEvent, LaunchOptions, Policy, Pool, PoolConfig,
    Tab,
};
use crate::channel::{Channel, Config, SessionCheck};
use crate::evidence::{new_run_id, Event, PngInfo, Store, StoreError};
use crate::pause::{PauseBoard, PauseInfo};
use crate::playbook::{
    redact, render_find, Action, AssertCheck, AssertSubject, ExtractSource, Locator, Mode,
    Playbook, ShotTarget, Step, ValueSource, WaitCondition, SECRET,
};

/// A source of "now" (injectable, so expiry can be tested without sleeping).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// RFC 3339 UTC with milliseconds, as every record uses (the store's one format).
pub use crate::evidence::timestamp;

impl approval::Ledger for Engine {
    fn store(&self) -> &Store {
        &self.store
    }
    fn config(&self) -> &Config {
        &self.config
    }
    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }
}

/// Errors that stop the engine itself (as opposed to a run that fails, which is a report).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Browser(#[from] BrowserError),
}

/// Everything a run needs besides its request; shared by every front end.
#[derive(Clone)]
pub struct Engine {
    pub data_dir: PathBuf,
    pub config: Arc<Config>,
    pub store: Store,
    pub launch: LaunchOptions,
    pub clock: Clock,
    /// Default timeout of one step.
    pub step_timeout: Duration,
    /// Warm browsers shared by this engine's runs, each run in its own browser context.
    pub pool: Pool,
    /// The emergency pause: checked before a run starts and before every step; its switches
    /// are in the guard of every browser context this engine opens.
    pub pause: PauseBoard,
    /// (Chromium, channel) pairs whose session a run has proven live in that browser and
    /// that no run has found expired or failed since: their runs skip the session check's
    /// page load and rely on the channel's `login_url` detection instead (only channels
    /// that name one). A new browser checks again.
    verified_sessions: Arc<std::sync::Mutex<std::collections::BTreeSet<(u64, String)>>>,
    /// Playbook texts this engine has already put in the store (saves a re-hash per run).
    stored_texts: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Object storage every run's evidence blobs are copied to when it ends
    /// (`[cluster] evidence`; `evidence::blob`).
    pub blobs: Option<Arc<dyn crate::evidence::blob::BlobStore>>,
}

/// Why a playbook named by its hash cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum StoredPlaybookError {
    /// No intact text with that hash in the playbook store.
    #[error("the playbook text with SHA-256 {sha256} is not in the playbook store: {reason}")]
    Missing { sha256: String, reason: String },
    /// The stored text no longer validates (e.g. the channel was removed from the config).
    #[error(
        "the stored playbook {path} does not validate against the current config:\n{diagnostics}"
    )]
    Invalid { path: String, diagnostics: String },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub playbook: Arc<Playbook>,
    /// Raw input values (bound and checked by the engine).
    pub inputs: BTreeMap<String, String>,
    pub operator: String,
    pub case_ref: Option<String>,
    pub batch_id: Option<String>,
    /// The approval a submit run executes.
    pub approval: Option<String>,
    /// The case's claims (the facts the customer gave), compared with the page by the
    /// playbook's `match:` rules. A submit run takes its draft's (what was approved).
    pub claims: crate::case::Claims,
    /// The recorded run this run replays (`crate::replay`), named in its `run_started`.
    pub replay_of: Option<String>,
    /// The submitted run this run compensates (`crate::rollback`).
    pub rollback_of: Option<String>,
    /// Offline replay: the recorded responses every request is answered from; no session
    /// is loaded or checked and nothing reaches the seller center.
    pub offline: Option<Arc<crate::browser::offline::Recording>>,
    /// A replay sample: every response the run loads is recorded, subresources included
    /// (needs an engine whose browsers pause them: `LaunchOptions::record_subresources`).
    pub sample: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Ok,
    Failed,
    Refused,
    SessionExpired,
    /// A draft was filled and queued for approval (nothing submitted).
    Drafted,
    /// The emergency pause stopped it: not started, or stopped before a step.
    Paused,
    /// A read-only run whose case claims conflict with the page, or could not be compared
    /// with it: its evidence is kept, and the case waits for a person.
    NeedsReview,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Refused => "refused",
            RunStatus::SessionExpired => "session_expired",
            RunStatus::Drafted => "drafted",
            RunStatus::Paused => "paused",
            RunStatus::NeedsReview => "needs_review",
        }
    }

    /// The status a `run_finished` record names (`ok`, `failed`, ...); `None` for others
    /// (e.g. `interrupted`).
    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "ok" => RunStatus::Ok,
            "failed" => RunStatus::Failed,
            "refused" => RunStatus::Refused,
            "session_expired" => RunStatus::SessionExpired,
            "drafted" => RunStatus::Drafted,
            "paused" => RunStatus::Paused,
            "needs_review" => RunStatus::NeedsReview,
            _ => return None,
        })
    }
}

/// A stored screenshot of a run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Shot {
    pub name: String,
    pub sha256: String,
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub blank: bool,
}

/// A request the guard blocked or let through as a write.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GuardRecord {
    pub blocked: bool,
    pub method: String,
    pub url: String,
    pub step: Option<u64>,
    pub reason: String,
}

/// The outcome of one run: what `clerk run --json` prints for each run, whether the run
/// happened in the CLI's process or in `clerk serve` (then it is read back from the
/// journal with [`RunReport::from_detail`]).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunReport {
    pub run_id: Option<String>,
    pub playbook: String,
    pub inputs: BTreeMap<String, String>,
    pub status: RunStatus,
    pub error: Option<String>,
    pub fields: BTreeMap<String, String>,
    pub screenshots: Vec<Shot>,
    pub guard: Vec<GuardRecord>,
    /// The approval request a draft created.
    pub approval_id: Option<String>,
    pub duration_ms: u64,
    /// Where the run's time went; `null` for a run read back from the journal (a run the
    /// daemon executed), which does not keep these measurements.
    pub timings: Option<Timings>,
    /// A failure outside the page (browser crash or hang, a browser call timing out, the
    /// seller center unreachable): a queue retries such runs.
    pub transient: bool,
    /// The connection to the run's remote browser dropped mid-run: the run failed closed
    /// (Chromium disposed its context with the connection) and says nothing about the job,
    /// so a queue gives the job back without spending an attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub browser_lost: bool,
    /// The auto-approval policy (`policy:NAME@HASH`) that approved this draft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approved_by: Option<String>,
    /// The submit that followed an automatic approval (its own run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_submit: Option<Box<RunReport>>,
}

/// Where a run's time went, in milliseconds. The parts add up to about `duration_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Timings {
    /// Getting a browser context from the pool and giving it back.
    pub browser_ms: f64,
    /// The session check (when it ran).
    pub session_ms: f64,
    /// Steps, less their captures and records: navigation, waits, reads, input.
    pub page_ms: f64,
    /// Captures: settling the page, the CDP screenshot, masks.
    pub capture_ms: f64,
    /// Hashing, checking and writing each PNG (fsync'd).
    pub png_ms: f64,
    /// Appending (fsync'd, group-committed) the run's journal records.
    pub journal_ms: f64,
}

/// Running totals behind [`Timings`].
#[derive(Debug, Clone, Copy, Default)]
struct Spent {
    browser: Duration,
    session: Duration,
    /// Whole steps (captures and records made inside them included).
    steps: Duration,
    capture: Duration,
    png: Duration,
    journal: Duration,
    /// The part of `journal` spent inside steps.
    journal_in_steps: Duration,
}

impl Spent {
    fn timings(&self) -> Timings {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // Captures, PNGs and the records made inside steps are counted on their own.
        let page = self
            .steps
            .saturating_sub(self.capture + self.png + self.journal_in_steps);
        Timings {
            browser_ms: ms(self.browser),
            session_ms: ms(self.session),
            page_ms: ms(page),
            capture_ms: ms(self.capture),
            png_ms: ms(self.png),
            journal_ms: ms(self.journal),
        }
    }
}

impl RunReport {
    /// Requests the guard blocked.
    pub fn blocked(&self) -> usize {
        self.guard.iter().filter(|g| g.blocked).count()
    }

    /// The report of a run as the journal tells it (what a daemon's run looks like to a
    /// client): the same fields as a live report, `timings` excepted. A run that has not
    /// finished (or was interrupted) is `failed` with the journal's reason.
    pub fn from_detail(d: &crate::evidence::RunDetail) -> RunReport {
        let requested = d.approvals.iter().find_map(|r| match &r.event {
            Event::ApprovalRequested {
                approval_id,
                run_id,
                ..
            } if *run_id == d.summary.run_id => Some(approval_id.clone()),
            _ => None,
        });
        let status = match RunStatus::parse(&d.summary.status) {
            Some(RunStatus::Ok) if requested.is_some() => RunStatus::Drafted,
            Some(s) => s,
            None => RunStatus::Failed,
        };
        let error = d.error.clone().or_else(|| {
            (RunStatus::parse(&d.summary.status).is_none())
                .then(|| format!("run {}", d.summary.status))
        });
        let mut guard: Vec<(u64, GuardRecord)> = d
            .blocked
            .iter()
            .map(|b| {
                (
                    b.seq,
                    GuardRecord {
                        blocked: true,
                        method: b.method.clone(),
                        url: b.url.clone(),
                        step: b.step,
                        reason: b.reason.clone(),
                    },
                )
            })
            .chain(d.allowed.iter().map(|a| {
                (
                    a.seq,
                    GuardRecord {
                        blocked: false,
                        method: a.method.clone(),
                        url: a.url.clone(),
                        step: a.step,
                        reason: a.reason.clone(),
                    },
                )
            }))
            .collect();
        guard.sort_by_key(|(seq, _)| *seq);
        let ms = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_millis())
                .ok()
        };
        let duration_ms = match (
            ms(&d.summary.started_at),
            d.summary.finished_at.as_deref().and_then(ms),
        ) {
            (Some(a), Some(b)) if b >= a => (b - a) as u64,
            _ => 0,
        };
        RunReport {
            run_id: Some(d.summary.run_id.clone()),
            playbook: d.summary.playbook.clone(),
            inputs: d.inputs.clone(),
            status,
            error,
            fields: d.fields.clone(),
            screenshots: d
                .evidence
                .iter()
                .map(|e| Shot {
                    name: e.name.clone(),
                    sha256: e.sha256.clone(),
                    path: PathBuf::from(&e.path),
                    width: u32::try_from(e.width).unwrap_or(u32::MAX),
                    height: u32::try_from(e.height).unwrap_or(u32::MAX),
                    blank: e.blank,
                })
                .collect(),
            guard: guard.into_iter().map(|(_, g)| g).collect(),
            approval_id: requested,
            duration_ms,
            timings: None,
            transient: false,
            browser_lost: false,
            auto_approved_by: None,
            auto_submit: None,
        }
    }
}

/// Resolves with the first of `texts` that the page shows (its visible text, checked every
/// 200 ms); never resolves otherwise.
async fn watch_failure_text(tab: &Tab, texts: &[String]) -> String {
    loop {
        let found: Option<String> = tab
            .eval(
                "const t = (document.body && document.body.innerText) || ''; \
                 return arg.find((x) => t.includes(x)) || null;",
                serde_json::json!(texts),
            )
            .await
            .ok()
            .flatten();
        if let Some(f) = found {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the seller center at `base` can be reached at all (a TCP connection to its host
/// and port within 2 s): `Some(why)` when it cannot. Asked only after a step failed, to tell
/// an unreachable seller center from a missing element.
async fn unreachable(base: &Url) -> Option<String> {
    let host = base.host_str()?.to_owned();
    let port = base.port_or_known_default()?;
    let target = format!(
        "{}:{port}",
        host.trim_start_matches('[').trim_end_matches(']')
    );
    let connect = tokio::net::TcpStream::connect((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    ));
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("connecting to {target} failed: {e}")),
        Err(_) => Some(format!("connecting to {target} timed out after 2s")),
    }
}

/// Why a step failed, or that a run must stop at a gate.
enum StepStop {
    Failed(String),
    /// A failure of the browser rather than of the page (crash, hang, timeout of a browser
    /// call): the run fails, and may be retried. Turned into `Failed` (and the run marked
    /// transient) as soon as a step returns it.
    Transient(String),
    /// The run is over without error (a draft stopped at its submit step).
    Drafted,
    Refused(String),
    /// The page went to the channel's login page: the session is gone.
    SessionExpired(String),
}

impl From<BrowserError> for StepStop {
    fn from(e: BrowserError) -> Self {
        match e {
            // Marked here; the step loop turns it into the channel's re-authorize message.
            BrowserError::LoginPage(url) => StepStop::SessionExpired(url),
            // The browser, not the page: trying again later can help.
            e @ (BrowserError::Timeout { .. }
            | BrowserError::Cdp { .. }
            | BrowserError::Gone
            | BrowserError::Launch(_)) => StepStop::Transient(e.to_string()),
            e => StepStop::Failed(e.to_string()),
        }
    }
}

/// Why the session check did not pass.
enum SessionProblem {
    Expired(String),
    Unreachable(String),
}

/// State of one run in progress.
struct RunState<'a> {
    engine: &'a Engine,
    run_id: String,
    playbook: &'a Playbook,
    channel: &'a Channel,
    inputs: BTreeMap<String, String>,
    /// Values that must never be recorded (secret inputs and env values).
    secrets: Vec<String>,
    fields: BTreeMap<String, String>,
    screenshots: Vec<Shot>,
    guard_log: Vec<GuardRecord>,
    /// Locators of secret fields filled so far (masked in captures).
    secret_fields: Vec<Find>,
    /// Locators filled so far (read back for drafts).
    filled: Vec<Find>,
    gate: Option<SubmitGate>,
    approval_id: Option<String>,
    operator: String,
    case_ref: Option<String>,
    spent: Spent,
    /// The front end's fencing check before an approval is spent ([`Engine::run_fenced`]).
    fence: Option<Fence>,
    /// The remote browser's connection dropped during the run.
    browser_lost: bool,
    /// The run failed for a reason outside the page (browser crash or hang, unreachable
    /// seller center): trying again later may succeed.
    transient: bool,
    /// The run's guard, once it has a browser (its recorded responses are taken from it).
    guard: Option<crate::browser::Guard>,
    /// Recorded responses live now: `METHOD URL` → WARC record id of the latest.
    live: BTreeMap<String, String>,
    /// The browser the run got (recorded in `run_finished`).
    browser_identity: Option<crate::evidence::BrowserIdentity>,
    /// The case's claims.
    claims: crate::case::Claims,
    /// The case check, once made.
    case: Option<crate::case::Outcome>,
    /// Offline replay: the recording the guard answers from (`RunRequest::offline`).
    offline: Option<Arc<crate::browser::offline::Recording>>,
    /// A replay sample: every response is recorded (`RunRequest::sample`).
    sample: bool,
    /// A replay (`RunRequest::replay_of`): a submit step holds its write and records it
    /// (`write_held`) instead of requesting an approval.
    replaying: bool,
}

impl Engine {
    /// Opens the engine on a data directory.
    /// The pause state is folded from the journal (`<data>/pause.json` is rebuilt from it);
    /// if it cannot be read, the engine starts paused.
    pub fn new(data_dir: PathBuf, config: Config, store: Store, launch: LaunchOptions) -> Engine {
        let mut launch = launch;
        if launch.remote.is_empty() {
            launch.remote = config.browsers.clone();
        }
        let config = Arc::new(config);
        let pause = PauseBoard::open(&store, config.clone(), &data_dir).unwrap_or_else(|e| {
            tracing::error!("cannot read the pause state: {e}; everything is paused");
            PauseBoard::failed_closed(&store, config.clone(), &data_dir, e.to_string())
        });
        // A front end checks this first and refuses to start with the reason; here a bad
        // setting is logged and nothing is copied (the local files stay the ground truth).
        let blobs =
            crate::evidence::blob::open(config.cluster.evidence_store()).unwrap_or_else(|e| {
                tracing::error!("evidence blobs are not copied: {e}");
                None
            });
        Engine {
            blobs,
            data_dir,
            config,
            pause,
            store,
            pool: Pool::new(launch.clone(), PoolConfig::default()),
            launch,
            clock: system_clock(),
            step_timeout: Duration::from_secs(10),
            verified_sessions: Arc::default(),
            stored_texts: Arc::default(),
        }
    }

    /// Puts a playbook's exact text in the store's playbook texts (once per engine and
    /// hash). Done before its first `RunStarted`, so every run's playbook can be read back.
    pub fn store_playbook(&self, playbook: &Playbook) -> Result<(), StoreError> {
        let known = self
            .stored_texts
            .lock()
            .map(|s| s.contains(&playbook.sha256))
            .unwrap_or(false);
        if !known {
            let sha = self.store.put_playbook_text(playbook.text.bytes())?;
            if let Ok(mut s) = self.stored_texts.lock() {
                s.insert(sha);
            }
        }
        Ok(())
    }

    /// The playbook whose exact text is stored under `sha256`, validated against the
    /// current config. This is how approvals, queued jobs and replays load a playbook: by
    /// what was run or reviewed, never by a path or a name resolved now.
    pub fn stored_playbook(&self, sha256: &str) -> Result<Playbook, StoredPlaybookError> {
        let bytes = self
            .store
            .playbook_text(sha256)
            .map_err(|e| StoredPlaybookError::Missing {
                sha256: sha256.to_owned(),
                reason: e.to_string(),
            })?;
        let path = self.store.playbook_text_path(sha256);
        crate::playbook::parse(&path, &bytes, Some(&self.config)).map_err(|d| {
            StoredPlaybookError::Invalid {
                path: path.display().to_string(),
                diagnostics: d.to_string(),
            }
        })
    }

    /// The same engine with its own pool, configured as given (the old pool is left to its
    /// other holders, if any).
    pub fn with_pool(mut self, config: PoolConfig) -> Engine {
        self.pool = Pool::new(self.launch.clone(), config);
        self
    }

    /// Kills the pool's browsers. Dropping the last clone of the engine does it too.
    pub async fn shutdown(&self) {
        self.pool.shutdown().await;
    }

    /// The next run on `channel` checks its session again, in every browser.
    fn forget_session(&self, channel: &str) {
        if let Ok(mut v) = self.verified_sessions.lock() {
            v.retain(|(_, c)| c != channel);
        }
    }

    fn now(&self) -> String {
        timestamp((self.clock)())
    }

    /// Appends a record from async code without blocking the runtime's workers.
    pub async fn record(&self, event: Event) -> Result<(), StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.append(event))
            .await
            .map_err(|e| StoreError::Other(format!("append task failed: {e}")))??;
        Ok(())
    }

    /// Records a refusal and returns it as a report.
    async fn refuse(
        &self,
        req: &RunRequest,
        run_id: Option<String>,
        reason: String,
    ) -> Result<RunReport, EngineError> {
        let recorded = format!(
            "{} ({}): {reason}",
            req.playbook.name,
            req.playbook.source.display()
        );
        self.refuse_as(req, run_id, reason, recorded, RunStatus::Refused)
            .await
    }

    /// A run not started because of the emergency pause: a refusal whose recorded reason
    /// is `paused by U since T: R`, reported as `paused`.
    async fn refuse_paused(
        &self,
        req: &RunRequest,
        info: &PauseInfo,
    ) -> Result<RunReport, EngineError> {
        let reason = info.message();
        let recorded = format!(
            "{reason} (not started: {} ({}))",
            req.playbook.name,
            req.playbook.source.display()
        );
        self.refuse_as(req, None, reason, recorded, RunStatus::Paused)
            .await
    }

    async fn refuse_as(
        &self,
        req: &RunRequest,
        run_id: Option<String>,
        reason: String,
        recorded: String,
        status: RunStatus,
    ) -> Result<RunReport, EngineError> {
        self.record(Event::Refused {
            action: "run".into(),
            approval_id: req.approval.clone(),
            run_id: run_id.clone(),
            user: req.operator.clone(),
            reason: recorded,
            at: self.now(),
        })
        .await?;
        Ok(RunReport {
            timings: Some(Timings::default()),
            run_id,
            playbook: req.playbook.name.clone(),
            inputs: redact(&req.playbook, &req.inputs),
            status,
            error: Some(reason),
            fields: BTreeMap::new(),
            screenshots: vec![],
            guard: vec![],
            approval_id: None,
            duration_ms: 0,
            transient: false,
            browser_lost: false,
            auto_approved_by: None,
            auto_submit: None,
        })
    }

    /// Executes one run. Every outcome, including refusals, is recorded; an `Err` means the
    /// evidence store itself failed.
    pub async fn run(&self, req: RunRequest) -> Result<RunReport, EngineError> {
        self.run_as(req, None).await
    }

    /// [`Engine::run`] under a run id chosen by the caller (a front end that must be able to
    /// name the run before it ends, e.g. to mark it interrupted). The id must be new.
    pub async fn run_as(
        &self,
        req: RunRequest,
        run_id: Option<String>,
    ) -> Result<RunReport, EngineError> {
        self.run_fenced(req, run_id, None).await
    }

    /// [`Engine::run_as`] with a fencing check: `fence` is awaited right before the run's
    /// approval is spent (before anything of a submit reaches the seller center); an `Err`
    /// refuses the submit, recorded with its reason. The daemon passes its queue's check, so
    /// a node that lost its job's lease (paused past it, cut off) never submits.
    pub async fn run_fenced(
        &self,
        req: RunRequest,
        run_id: Option<String>,
        fence: Option<Fence>,
    ) -> Result<RunReport, EngineError> {
        let mut report = self.execute(req.clone(), run_id, fence.clone()).await?;
        self.copy_evidence(&report).await;
        // The policy gate: a draft whose held write an earned, unsuspended policy of the
        // channel covers is approved by that policy and submitted at once, through the same
        // submit gate as any approval.
        // Only channels with a policy for this playbook pay for the look (a journal read).
        let has_policy = self.config.channel(&req.playbook.channel).is_ok_and(|c| {
            c.auto_approve
                .iter()
                .any(|p| p.playbook == req.playbook.name)
        });
        if let (true, RunStatus::Drafted, Some(id)) =
            (has_policy, report.status, report.approval_id.clone())
        {
            let (engine, approval) = (self.clone(), id.clone());
            let decided =
                tokio::task::spawn_blocking(move || crate::policy::consider(&engine, &approval))
                    .await
                    .map_err(|e| StoreError::Other(format!("policy task failed: {e}")))??;
            if let Some(policy) = decided {
                tracing::info!(approval = %id, %policy, "approved automatically; submitting");
                let submit = RunRequest {
                    approval: Some(id),
                    claims: crate::case::Claims::new(),
                    replay_of: None,
                    rollback_of: None,
                    offline: None,
                    sample: false,
                    ..req
                };
                let sent = self.execute(submit, None, fence).await?;
                self.copy_evidence(&sent).await;
                report.auto_approved_by = Some(policy);
                report.auto_submit = Some(Box::new(sent));
            }
        }
        Ok(report)
    }

    /// Copies a finished run's evidence blobs to object storage (`[cluster] evidence`) and
    /// records each copy. A failure leaves them for the daemon's next pass
    /// (`evidence::blob::copy_all`); the run's own outcome does not change.
    async fn copy_evidence(&self, report: &RunReport) {
        let (Some(blobs), Some(run_id)) = (&self.blobs, &report.run_id) else {
            return;
        };
        // A slow or hanging storage must not hold the run (or a daemon's worker) for long:
        // what is not copied in time is left to the next pass.
        let copied = tokio::time::timeout(
            Duration::from_secs(15),
            crate::evidence::blob::copy_run(&self.store, blobs.as_ref(), run_id),
        )
        .await;
        let Ok(copied) = copied else {
            tracing::warn!(run = %run_id, "copying the run's evidence to {} took over 15 s; the rest is left to the next pass", blobs.describe());
            return;
        };
        match copied {
            Ok(r) if r.failed.is_empty() => {
                tracing::debug!(run = %run_id, copied = r.copied, "evidence copied to {}", blobs.describe())
            }
            Ok(r) => tracing::warn!(
                run = %run_id,
                "{} of the run's evidence blobs were not copied to {} (tried again later): {}",
                r.failed.len(),
                blobs.describe(),
                r.failed.join("; ")
            ),
            Err(e) => tracing::warn!(run = %run_id, "evidence copy failed: {e}"),
        }
    }

    async fn execute(
        &self,
        req: RunRequest,
        run_id: Option<String>,
        fence: Option<Fence>,
    ) -> Result<RunReport, EngineError> {
        let started = Instant::now();
        let playbook = req.playbook.clone();
        let channel = match self.config.channel(&playbook.channel) {
            Ok(c) => c.clone(),
            Err(e) => return self.refuse(&req, None, e.to_string()).await,
        };
        if let Err(e) = channel.authorize_operator(&req.operator) {
            return self.refuse(&req, None, e.to_string()).await;
        }
        // A submit playbook without an approval drafts; drafting needs the draft mode's
        // permission or the submit mode's.
        let effective = match (playbook.mode, &req.approval) {
            (Mode::Submit, None) => Mode::Draft,
            (m, _) => m,
        };
        let permitted = channel
            .permit_mode(playbook.mode)
            .or_else(|e| match effective {
                Mode::Draft => channel.permit_mode(Mode::Draft),
                _ => Err(e),
            });
        if let Err(e) = permitted {
            return self.refuse(&req, None, e.to_string()).await;
        }
        let inputs = match playbook.bind_inputs(&req.inputs) {
            Ok(i) => i,
            Err(errors) => return self.refuse(&req, None, errors.join("; ")).await,
        };
        // Secrets are never stored, so a replayed run must be given them again.
        if let Some(name) = playbook
            .secret_inputs()
            .find(|n| inputs.get(*n).map(String::as_str) == Some(SECRET))
        {
            return self
                .refuse(
                    &req,
                    None,
                    format!("secret input {name} must be given again (clerk submit reads it from CLERK_SECRET_{})", name.to_ascii_uppercase()),
                )
                .await;
        }
        // Values the playbook takes from the environment must be there before a browser is
        // launched (not found out at the fill step, after a page load).
        let missing_env: Vec<&str> = playbook
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Fill {
                    value: crate::playbook::ValueSource::Env(var),
                    ..
                } if std::env::var_os(var).is_none() => Some(var.as_str()),
                _ => None,
            })
            .collect();
        if !missing_env.is_empty() {
            return self
                .refuse(
                    &req,
                    None,
                    format!(
                        "not set in the environment: {} (the playbook fills fields from {}); set {} and run again",
                        missing_env.join(", "),
                        if missing_env.len() > 1 { "these variables" } else { "this variable" },
                        if missing_env.len() > 1 { "them" } else { "it" },
                    ),
                )
                .await;
        }
        // The submit gate: checked before a browser is even launched, enforced again at the
        // submit step.
        let gate = match &req.approval {
            Some(id) => {
                match approval::gate_for_run(self, id, &playbook, &inputs, &channel, &req.operator)
                {
                    Ok(g) => Some(g),
                    Err(reason) => {
                        return self.refuse(&req, None, reason.to_string()).await;
                    }
                }
            }
            None => None,
        };
        // A submit run's claims are its draft's: what the reviewer saw and approved.
        let claims = match &gate {
            Some(g) => {
                if !req.claims.is_empty() && req.claims != g.approval.content.claims {
                    return self
                        .refuse(
                            &req,
                            None,
                            format!(
                                "the case claims given ({}) differ from those of approval {}'s draft ({}); a submit runs with the claims that were reviewed",
                                show_claims(&req.claims),
                                g.approval.approval_id,
                                show_claims(&g.approval.content.claims)
                            ),
                        )
                        .await;
                }
                g.approval.content.claims.clone()
            }
            None => req.claims.clone(),
        };
        if let Err(reason) = check_claims(&playbook, &channel, effective, &claims) {
            return self.refuse(&req, None, reason).await;
        }
        if playbook.mode != Mode::Submit && req.approval.is_some() {
            return self
                .refuse(
                    &req,
                    None,
                    "an approval was given for a playbook that does not submit".into(),
                )
                .await;
        }

        // The emergency pause: checked while holding off a pause of this process until the
        // run's `RunStarted` is durable, so no run starts after a pause record.
        let start_gate = self.pause.start_gate().await;
        self.pause.refresh();
        if let Some(info) = self.pause.is_paused(&channel.id) {
            drop(start_gate);
            return self.refuse_paused(&req, &info).await;
        }
        let run_id = run_id.unwrap_or_else(|| new_run_id((self.clock)()));
        let secrets: Vec<String> = playbook
            .secret_inputs()
            .filter_map(|n| inputs.get(n).cloned())
            .filter(|v| !v.is_empty())
            .collect();
        let t_record = Instant::now();
        {
            let (engine, pb) = (self.clone(), playbook.clone());
            tokio::task::spawn_blocking(move || engine.store_playbook(&pb))
                .await
                .map_err(|e| StoreError::Other(format!("playbook store task failed: {e}")))??;
        }
        self.record(Event::RunStarted {
            run_id: run_id.clone(),
            playbook: playbook.name.clone(),
            playbook_version: playbook.version.clone(),
            playbook_sha256: playbook.sha256.clone(),
            channel: channel.id.clone(),
            mode: effective.as_str().to_owned(),
            operator: req.operator.clone(),
            case_ref: req.case_ref.clone(),
            inputs: redact(&playbook, &inputs),
            batch_id: req.batch_id.clone(),
            approval_id: req.approval.clone(),
            owner: self.store.owner(),
            claims: claims.clone(),
            replay_of: req.replay_of.clone(),
            rollback_of: req.rollback_of.clone(),
        })
        .await?;
        drop(start_gate);
        let started_record = t_record.elapsed();
        // Every log line of the run carries its id, channel and playbook (and, inside a
        // step, the step): `--log-format json` puts them in each line's `span`/`spans`.
        let span = tracing::info_span!(
            "run",
            run_id = %run_id,
            channel = %channel.id,
            playbook = %playbook.name
        );
        span.in_scope(|| tracing::info!("run started"));

        let mut state = RunState {
            engine: self,
            run_id: run_id.clone(),
            playbook: &playbook,
            channel: &channel,
            inputs,
            secrets,
            fields: BTreeMap::new(),
            screenshots: vec![],
            guard_log: vec![],
            secret_fields: vec![],
            guard: None,
            live: BTreeMap::new(),
            browser_identity: None,
            filled: vec![],
            gate,
            approval_id: None,
            operator: req.operator.clone(),
            case_ref: req.case_ref.clone(),
            spent: Spent::default(),
            transient: false,
            fence,
            browser_lost: false,
            claims,
            case: None,
            offline: req.offline.clone(),
            sample: req.sample,
            replaying: req.replay_of.is_some(),
        };
        state.spent.journal += started_record;
        let (status, error) =
            tracing::Instrument::instrument(state.execute(), span.clone()).await?;
        if !matches!(
            status,
            RunStatus::Ok
                | RunStatus::Drafted
                | RunStatus::Refused
                | RunStatus::Paused
                | RunStatus::NeedsReview
        ) {
            // After any failure or expiry the next run proves the session again.
            self.forget_session(&channel.id);
        }
        let finished_status = if status == RunStatus::Drafted {
            "ok"
        } else {
            status.as_str()
        };
        let t_record = Instant::now();
        self.record(Event::RunFinished {
            run_id: run_id.clone(),
            status: finished_status.to_owned(),
            error: error.clone(),
            fields: state.fields.clone(),
            finished_at: self.now(),
            browser: state.browser_identity.clone(),
        })
        .await?;
        state.spent.journal += t_record.elapsed();
        span.in_scope(|| tracing::info!(status = status.as_str(), "run finished"));
        Ok(RunReport {
            run_id: Some(run_id),
            playbook: playbook.name.clone(),
            inputs: redact(&playbook, &state.inputs),
            status,
            error,
            fields: state.fields,
            screenshots: state.screenshots,
            guard: state.guard_log,
            approval_id: state.approval_id,
            duration_ms: started.elapsed().as_millis() as u64,
            timings: Some(state.spent.timings()),
            transient: status == RunStatus::Failed && state.transient,
            browser_lost: status == RunStatus::Failed && state.browser_lost,
            auto_approved_by: None,
            auto_submit: None,
        })
    }
}

impl<'a> RunState<'a> {
    /// Launches the browser, checks the session and runs the steps. The browser is closed
    /// (Chromium killed and reaped) on every path out of here.
    async fn execute(&mut self) -> Result<(RunStatus, Option<String>), EngineError> {
        let engine = self.engine;
        // A login run starts from nothing: it is how a session comes to exist.
        let login = self.playbook.mode == Mode::Login;
        if self.sample && !engine.launch.record_subresources {
            return Ok((
                RunStatus::Failed,
                Some(
                    "a replay sample records every response, and this engine's browsers do not \
                     pause subresources: record samples with `clerk run --sample`"
                        .into(),
                ),
            ));
        }
        // An offline replay is answered from its recording: it needs no session.
        let session = if login || self.offline.is_some() {
            None
        } else {
            match self.channel.load_session(&engine.data_dir) {
                Ok(s) => Some(s),
                Err(e) => return Ok((RunStatus::SessionExpired, Some(e.to_string()))),
            }
        };
        if let Some(stop) = self.paused_before("its browser") {
            return Ok(stop);
        }
        let record = match self.record_policy() {
            Ok(r) => r,
            Err(e) => return Ok((RunStatus::Failed, Some(e))),
        };
        let policy = Policy {
            record,
            allowed_origins: self.channel.allowed_origins.clone(),
            read_only_exceptions: self.channel.read_only_exceptions.clone(),
            // Offline, no WebSocket may open: the recording cannot answer one.
            websocket_allow: if self.offline.is_some() {
                Vec::new()
            } else {
                self.channel.websocket_allow.clone()
            },
            service_workers: self.channel.service_workers == crate::channel::ServiceWorkers::Allow,
            pause: engine.pause.switch(&self.channel.id),
            offline: self.offline.clone(),
        };
        // Batch isolation may hand this run the context of the previous successful run with
        // the same channel, playbook, operator and session; only read-only runs share.
        let reuse = (self.playbook.mode == Mode::ReadOnly && self.offline.is_none()).then(|| {
            let session_hash = session
                .as_ref()
                .and_then(|s| serde_json::to_vec(s).ok())
                .map(|b| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b)))
                .unwrap_or_default();
            format!(
                "{}\n{}\n{}\n{}",
                self.channel.id, self.playbook.sha256, self.operator, session_hash
            )
        });
        let t_browser = Instant::now();
        let acquired = engine
            .pool
            .acquire(policy, session.as_ref(), reuse.as_deref())
            .await;
        self.spent.browser += t_browser.elapsed();
        let (mut browser, tab) = match acquired {
            Ok(b) => b,
            Err(e) => {
                self.transient = true;
                return Ok((RunStatus::Failed, Some(format!("no browser: {e}"))));
            }
        };
        // A login run is meant to be on the login page.
        tab.set_login_pages(if self.playbook.mode == Mode::Login {
            vec![]
        } else {
            self.channel
                .login_url
                .iter()
                .filter_map(|g| crate::url_pattern::glob(g, &self.channel.base_url).ok())
                .collect()
        });
        self.guard = Some(browser.guard().clone());
        self.browser_identity = Some(browser.chromium().identity().clone());
        let result = self.execute_in(&mut browser, &tab).await;
        // Whatever happened, record what the guard saw, then give the context back.
        let late = browser.settle_events().await;
        let late = self.classify(&browser, &tab, late).await;
        let t_record = Instant::now();
        let flushed = match self.flush_responses().await {
            Ok(_) => self.record_guard(late).await,
            Err(e) => Err(e),
        };
        self.guard = None;
        self.spent.journal += t_record.elapsed();
        let ok = matches!(result, Ok((RunStatus::Ok, _)));
        // A browser that crashed or stopped answering fails the run with that reason; the
        // pool replaces it before the next run.
        let crashed = browser.crash_report();
        let remote = browser.chromium().is_remote();
        let t_browser = Instant::now();
        engine
            .pool
            .release(browser, tab, if ok { reuse } else { None })
            .await;
        self.spent.browser += t_browser.elapsed();
        if crashed.is_some() {
            self.transient = true;
            self.browser_lost = remote;
        }
        let outcome = match (result?, crashed) {
            ((RunStatus::Failed, error), Some(crash)) => (
                RunStatus::Failed,
                Some(match error {
                    Some(e) => format!("{crash}; the step failed with: {e}"),
                    None => crash,
                }),
            ),
            (outcome, _) => outcome,
        };
        flushed?;
        Ok(outcome)
    }

    async fn execute_in(
        &mut self,
        browser: &mut Browser,
        tab: &Tab,
    ) -> Result<(RunStatus, Option<String>), EngineError> {
        // The session is checked when a batch starts and after any run that failed or found
        // it expired; in between, a run that lands on the login page ends as expired anyway
        // (`login_url`), so the check's page load is not repeated for every row.
        let channel_id = self.channel.id.clone();
        let trusted = !self.channel.login_url.is_empty()
            && self
                .engine
                .verified_sessions
                .lock()
                .map(|v| v.contains(&(browser.chromium().id(), channel_id.clone())))
                .unwrap_or(false);
        let offline = self.offline.is_some();
        let checked = if self.playbook.mode == Mode::Login || trusted || offline {
            Ok(())
        } else {
            let t_session = Instant::now();
            let checked = self.check_session(browser, tab).await?;
            self.spent.session += t_session.elapsed();
            checked
        };
        match checked {
            Ok(()) if offline => {}
            Ok(()) => {
                if let Ok(mut v) = self.engine.verified_sessions.lock() {
                    v.insert((browser.chromium().id(), channel_id.clone()));
                }
            }
            Err(SessionProblem::Expired(msg)) => {
                self.engine.forget_session(&channel_id);
                return Ok((RunStatus::SessionExpired, Some(msg)));
            }
            Err(SessionProblem::Unreachable(msg)) => {
                self.engine.forget_session(&channel_id);
                self.transient = true;
                return Ok((RunStatus::Failed, Some(msg)));
            }
        }
        let steps = self.playbook.steps.clone();
        for step in &steps {
            // The emergency pause stops the run here, before the step (the guard already
            // fails every write of the context since the moment it flipped).
            if let Some(stop) =
                self.paused_before(&format!("step {} \"{}\"", step.index + 1, step.name))
            {
                return Ok(stop);
            }
            // Case matching: nothing is filled or sent on a case whose claims the page does
            // not confirm.
            if self.case.is_none() && step.action.writes() && !self.playbook.matching.is_empty() {
                let outcome = self.check_case(tab, Some(step)).await?;
                if outcome.verdict != crate::case::Verdict::Matched {
                    let reason = format!(
                        "case {}: {}; nothing was filled or sent",
                        outcome.verdict.as_str(),
                        self.scrub(&outcome.explain())
                    );
                    self.engine
                        .record(Event::Refused {
                            action: "draft".into(),
                            approval_id: None,
                            run_id: Some(self.run_id.clone()),
                            user: self.operator.clone(),
                            reason: format!(
                                "step {} \"{}\" ({}): {reason}",
                                step.index + 1,
                                step.name,
                                step.action.kind()
                            ),
                            at: self.engine.now(),
                        })
                        .await?;
                    return Ok((
                        RunStatus::Refused,
                        Some(format!(
                            "step {} \"{}\" refused: {reason}",
                            step.index + 1,
                            step.name
                        )),
                    ));
                }
            }
            browser.guard().set_step(Some(step.index));
            let started_at = self.engine.now();
            let t0 = Instant::now();
            let before = self.fields.clone();
            let step_span = tracing::info_span!(
                "step",
                step = step.index + 1,
                kind = step.action.kind(),
                name = %step.name
            );
            let failure_texts = self.playbook.failure_texts.clone();
            let mut outcome = {
                let run = tracing::Instrument::instrument(
                    self.step(browser, tab, step),
                    step_span.clone(),
                );
                if failure_texts.is_empty() {
                    run.await
                } else {
                    // The page said the run cannot succeed (a failed login): end the step now.
                    tokio::select! {
                        r = run => r,
                        shown = watch_failure_text(tab, &failure_texts) => Err(StepStop::Failed(
                            format!("the page shows the failure text {shown:?}")
                        )),
                    }
                }
            };
            step_span.in_scope(|| match &outcome {
                Ok(()) => tracing::debug!("step ok"),
                Err(StepStop::Failed(m) | StepStop::Transient(m)) => {
                    tracing::info!(error = %self.scrub(m), "step failed")
                }
                Err(_) => tracing::info!("step stopped the run"),
            });
            if let Err(StepStop::Transient(m)) = outcome {
                self.transient = true;
                outcome = Err(StepStop::Failed(m));
            }
            // A step that failed because the seller center stopped answering says so (and is
            // worth retrying), instead of looking like a missing element.
            if let Err(StepStop::Failed(m)) = &outcome {
                if let Some(why) = unreachable(&self.channel.base_url).await {
                    self.transient = true;
                    outcome = Err(StepStop::Failed(format!(
                        "the seller center is unreachable: {why} (channel {}); the step failed with: {m}",
                        self.channel.id
                    )));
                }
            }
            self.spent.steps += t0.elapsed();
            // A single-page app that lost its session routes itself to the login page, at
            // any step: that ends the run as expired, whatever the step made of it.
            if matches!(
                outcome,
                Ok(()) | Err(StepStop::Failed(_)) | Err(StepStop::SessionExpired(_))
            ) {
                if let Some(msg) = self.landed_on_login(tab).await {
                    outcome = Err(StepStop::SessionExpired(msg));
                } else if let Err(StepStop::SessionExpired(url)) = &outcome {
                    outcome = Err(StepStop::SessionExpired(self.expired_message(url)));
                }
            }
            let events = browser.drain_events();
            let events = self.classify(browser, tab, events).await;
            let t_record = Instant::now();
            let live = self.flush_responses().await?;
            self.record_guard(events).await?;
            self.spent.journal += t_record.elapsed();
            let new_fields: BTreeMap<String, String> = self
                .fields
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let responses = if new_fields.is_empty() {
                Vec::new()
            } else {
                live
            };
            let (outcome_name, error) = match &outcome {
                Ok(()) | Err(StepStop::Drafted) => ("ok", None),
                Err(StepStop::Failed(m) | StepStop::Transient(m)) => {
                    ("failed", Some(self.scrub(m)))
                }
                Err(StepStop::Refused(m)) => ("refused", Some(self.scrub(m))),
                Err(StepStop::SessionExpired(m)) => ("session_expired", Some(self.scrub(m))),
            };
            let t_record = Instant::now();
            self.engine
                .record(Event::StepFinished {
                    run_id: self.run_id.clone(),
                    step: step.index as u64,
                    name: step.name.clone(),
                    kind: step.action.kind().to_owned(),
                    outcome: outcome_name.to_owned(),
                    error: error.clone(),
                    started_at,
                    duration_ms: t0.elapsed().as_millis() as u64,
                    fields: new_fields,
                    responses,
                })
                .await?;
            self.spent.journal += t_record.elapsed();
            // A step that failed while the pause was on (its writes failed by the guard, a
            // draft with nothing held, a submit whose write was withheld) ends the run as
            // paused, saying what the step met.
            if let Err(StepStop::Failed(m) | StepStop::Refused(m)) = &outcome {
                if let Some((status, Some(msg))) = self.paused_before("the next step") {
                    let msg = format!(
                        "{msg}; step {} \"{}\" did not complete: {}",
                        step.index + 1,
                        step.name,
                        self.scrub(m)
                    );
                    return Ok((status, Some(msg)));
                }
            }
            match outcome {
                Ok(()) => {}
                // The approval request was made inside the step (see `Action::Submit`).
                Err(StepStop::Drafted) => return Ok((RunStatus::Drafted, None)),
                Err(StepStop::Failed(m) | StepStop::Transient(m)) => {
                    return Ok((
                        RunStatus::Failed,
                        Some(self.scrub(&format!(
                            "step {} \"{}\" ({}): {m}",
                            step.index + 1,
                            step.name,
                            step.action.kind()
                        ))),
                    ))
                }
                Err(StepStop::SessionExpired(m)) => {
                    return Ok((RunStatus::SessionExpired, Some(self.scrub(&m))));
                }
                Err(StepStop::Refused(m)) => {
                    return Ok((
                        RunStatus::Refused,
                        Some(self.scrub(&format!(
                            "step {} \"{}\" refused: {m}",
                            step.index + 1,
                            step.name
                        ))),
                    ))
                }
            }
        }
        browser.guard().set_step(None);
        // A read-only run checks its case at the end: a mismatch keeps the evidence and
        // hands the case to a person.
        if self.case.is_none() && !self.playbook.matching.is_empty() {
            let outcome = self.check_case(tab, None).await?;
            if outcome.verdict != crate::case::Verdict::Matched {
                return Ok((
                    RunStatus::NeedsReview,
                    Some(format!(
                        "case {}: {}",
                        outcome.verdict.as_str(),
                        self.scrub(&outcome.explain())
                    )),
                ));
            }
        }
        if self.playbook.mode == Mode::Login {
            let state = browser.storage_state(tab).await?;
            let path = self.channel.session_path(&self.engine.data_dir);
            if let Err(e) = state.save(&path) {
                return Ok((RunStatus::Failed, Some(e.to_string())));
            }
            tracing::info!(channel = %self.channel.id, path = %path.display(), "session saved");
        }
        Ok((RunStatus::Ok, None))
    }

    /// `Some((paused, "paused by U since T: R; stopped before WHAT"))` while the run's channel
    /// (or everything) is paused.
    fn paused_before(&self, what: &str) -> Option<(RunStatus, Option<String>)> {
        self.engine.pause.refresh();
        let info = self.engine.pause.is_paused(&self.channel.id)?;
        tracing::info!(run = %self.run_id, "{}", info.message());
        Some((
            RunStatus::Paused,
            Some(format!("{}; stopped before {what}", info.message())),
        ))
    }

    /// Reads every `match:` rule's page value, compares it with the claims and records the
    /// verdict (`case_checked`). `before`: the write step it is made before.
    async fn check_case(
        &mut self,
        tab: &Tab,
        before: Option<&Step>,
    ) -> Result<crate::case::Outcome, EngineError> {
        let rules = self.playbook.matching.clone();
        // Elements are read as the page shows them now; one whose claim was given may be
        // late content, and is waited for up to the step timeout.
        let deadline = Instant::now()
            + before
                .map(|s| self.timeout(s))
                .unwrap_or(self.engine.step_timeout);
        let mut found = Vec::with_capacity(rules.len());
        for rule in &rules {
            let value = match &rule.read {
                crate::playbook::MatchRead::Field(f) => self
                    .fields
                    .get(f)
                    .cloned()
                    .ok_or_else(|| format!("field {f} was not extracted")),
                crate::playbook::MatchRead::Element { locator, value } => {
                    let claimed =
                        crate::case::claimed(&rule.claim, &self.claims, &self.inputs).is_some();
                    self.read_for_match(tab, locator, *value, claimed.then_some(deadline))
                        .await
                }
            };
            found.push(value.map(|v| self.scrub(&v)));
        }
        let evaluated: Vec<crate::case::Rule<'_>> = rules
            .iter()
            .zip(found)
            .map(|(r, found)| crate::case::Rule {
                claim: &r.claim,
                field: r.read.describe(),
                compare: r.compare,
                required: r.required,
                found,
            })
            .collect();
        let inputs = crate::playbook::redact(self.playbook, &self.inputs);
        let outcome = crate::case::evaluate(&evaluated, &self.claims, &inputs);
        let t_record = Instant::now();
        self.engine
            .record(Event::CaseChecked {
                run_id: self.run_id.clone(),
                verdict: outcome.verdict.as_str().to_owned(),
                checks: outcome.checks.clone(),
                before_step: before.map(|s| s.index as u64),
                at: self.engine.now(),
            })
            .await?;
        self.spent.journal += t_record.elapsed();
        tracing::info!(run = %self.run_id, verdict = outcome.verdict.as_str(), "case checked");
        self.case = Some(outcome.clone());
        Ok(outcome)
    }

    /// An element's text (or value) for a match rule; waits for it until `deadline` when
    /// given.
    async fn read_for_match(
        &self,
        tab: &Tab,
        locator: &Locator,
        value: bool,
        deadline: Option<Instant>,
    ) -> Result<String, String> {
        let find = self.find(locator).map_err(|e| match e {
            StepStop::Failed(m) | StepStop::Transient(m) | StepStop::Refused(m) => m,
            StepStop::SessionExpired(m) => m,
            StepStop::Drafted => "cannot render the locator".into(),
        })?;
        loop {
            let read = if value {
                tab.value(&find).await
            } else {
                tab.text(&find).await
            };
            match read {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => return Err(format!("cannot read {}: {e}", find.display)),
            }
            match deadline {
                Some(d) if Instant::now() < d => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => return Err(format!("element not found: {}", find.display)),
            }
        }
    }

    fn draft_context(&self) -> approval::DraftContext {
        approval::DraftContext {
            claims: self.claims.clone(),
            run_id: self.run_id.clone(),
            playbook: self.playbook.clone(),
            channel: self.channel.clone(),
            inputs: self.inputs.clone(),
            secrets: self.secrets.clone(),
            secret_fields: self.secret_fields.clone(),
            filled: self.filled.clone(),
            operator: self.operator.clone(),
            case_ref: self.case_ref.clone(),
            draft_screenshot: self.screenshots.last().map(|s| s.sha256.clone()),
            fence: self.fence.clone(),
        }
    }

    /// Replaces every secret value in a message.
    fn scrub(&self, msg: &str) -> String {
        let mut out = msg.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), SECRET);
        }
        out
    }

    /// Pairs each guard decision with the kind of target its frame is.
    async fn classify(
        &self,
        browser: &Browser,
        tab: &Tab,
        events: Vec<GuardEvent>,
    ) -> Vec<(GuardEvent, String)> {
        if events.is_empty() {
            return vec![];
        }
        let main = tab.main_frame().await.unwrap_or_default();
        events
            .into_iter()
            .map(|e| {
                let target = browser.classify_frame(&e.frame, &main);
                (e, target)
            })
            .collect()
    }

    async fn record_guard(&mut self, events: Vec<(GuardEvent, String)>) -> Result<(), EngineError> {
        for (e, target) in events {
            let step = (e.step >= 0).then_some(e.step as u64);
            let url = self.scrub(&e.url);
            self.guard_log.push(GuardRecord {
                blocked: e.blocked,
                method: e.method.clone(),
                url: url.clone(),
                step,
                reason: e.reason.clone(),
            });
            let event = if e.blocked {
                tracing::info!(run = %self.run_id, method = %e.method, url = %url, "request blocked: {}", e.reason);
                Event::RequestBlocked {
                    run_id: self.run_id.clone(),
                    step,
                    method: e.method,
                    url,
                    resource_type: e.resource_type,
                    frame: e.frame,
                    target,
                    reason: e.reason,
                }
            } else {
                Event::RequestAllowed {
                    run_id: self.run_id.clone(),
                    step,
                    method: e.method,
                    url,
                    reason: e.reason,
                }
            };
            self.engine.record(event).await?;
        }
        Ok(())
    }

    /// Proves the session is live before any lookup. `Ok(Err(msg))` means expired.
    async fn check_session(
        &mut self,
        browser: &mut Browser,
        tab: &Tab,
    ) -> Result<Result<(), SessionProblem>, EngineError> {
        let check = &self.channel.logged_in_check;
        let expired = |why: String| {
            format!(
                "session for channel {} has expired: re-authorize ({}) [{why}]",
                self.channel.id,
                self.channel.reauthorize_hint(&self.engine.data_dir)
            )
        };
        let form = match check.form() {
            Ok(f) => f,
            Err(e) => return Ok(Err(SessionProblem::Unreachable(e))),
        };
        let (path, selector, want_status) = match form {
            SessionCheck::Page { url, selector } => (url, Some(selector), None),
            SessionCheck::Probe { request, status } => (request, None, Some(status)),
        };
        let url = match self.channel.base_url.join(path) {
            Ok(u) => u,
            Err(e) => {
                return Ok(Err(SessionProblem::Unreachable(format!(
                    "bad logged_in_check url: {e}"
                ))))
            }
        };
        let timeout = self.engine.step_timeout;
        let landed = tab.goto(&url, timeout).await;
        if let Err(BrowserError::LoginPage(page)) = &landed {
            let events = browser.drain_events();
            let events = self.classify(browser, tab, events).await;
            self.record_guard(events).await?;
            return Ok(Err(SessionProblem::Expired(expired(format!(
                "{url} went to the login page {page}"
            )))));
        }
        if let Err(e) = landed {
            // An unreachable seller center is not an expired session.
            return Ok(Err(SessionProblem::Unreachable(format!(
                "cannot reach channel {} at {url}: {e}",
                self.channel.id
            ))));
        }
        // A seller center answering 5xx is failing; that says nothing about the session.
        if let Ok(Some(status)) = tab.response_status().await {
            if status >= 500 {
                let events = browser.drain_events();
                let events = self.classify(browser, tab, events).await;
                self.record_guard(events).await?;
                return Ok(Err(SessionProblem::Unreachable(format!(
                    "channel {} answered {status} at {url}: the seller center is failing (the session was not checked)",
                    self.channel.id
                ))));
            }
        }
        let verdict: Result<(), String> = match (selector, want_status) {
            (Some(selector), _) => tab
                .wait_visible(&Find::css(selector), Duration::from_secs(3))
                .await
                .map_err(|_| format!("{selector} not found")),
            (None, Some(want)) => match tab.response_status().await {
                Ok(Some(got)) if got == want => Ok(()),
                Ok(Some(got)) => Err(format!("{url} answered {got}, not {want}")),
                Ok(None) => Err(format!("{url} gave no HTTP status")),
                Err(e) => Err(format!("cannot read the status of {url}: {e}")),
            },
            (None, None) => Ok(()),
        };
        let events = browser.drain_events();
        let events = self.classify(browser, tab, events).await;
        self.record_guard(events).await?;
        let landed = tab.url().await.unwrap_or_default();
        if self.channel.is_login_page(&landed) {
            return Ok(Err(SessionProblem::Expired(expired(format!(
                "landed on the login page {landed}"
            )))));
        }
        match verdict {
            Ok(()) => Ok(Ok(())),
            Err(why) => Ok(Err(SessionProblem::Expired(expired(format!(
                "{why} at {landed}"
            ))))),
        }
    }

    /// When the page has landed on the channel's login page, the message that ends the run
    /// as `session_expired`.
    async fn landed_on_login(&self, tab: &Tab) -> Option<String> {
        if self.channel.login_url.is_empty() || self.playbook.mode == Mode::Login {
            return None;
        }
        let landed = tab.url().await.ok()?;
        self.channel
            .is_login_page(&landed)
            .then(|| self.expired_message(&landed))
    }

    /// The re-authorize message for a run whose page went to `login_page`.
    fn expired_message(&self, login_page: &str) -> String {
        format!(
            "session for channel {} has expired: re-authorize ({}) [the page went to the login page {}]",
            self.channel.id,
            self.channel.reauthorize_hint(&self.engine.data_dir),
            self.scrub(login_page)
        )
    }

    /// [`render_find`] with this run's inputs and channel; a render error fails the step.
    fn find(&self, locator: &Locator) -> Result<Find, StepStop> {
        render_find(
            locator,
            &self.inputs,
            &self.channel.testid_attribute,
            &self.secrets,
        )
        .map_err(|e| StepStop::Failed(format!("cannot render locator {}: {e}", locator.display())))
    }

    fn timeout(&self, step: &Step) -> Duration {
        step.timeout.unwrap_or(self.engine.step_timeout)
    }

    /// Fails the step if the main frame tried to leave the allowed origins. A write the page
    /// sends as a navigation (a self-submitting form) is blocked and recorded, but the page
    /// stays where it is, so it does not fail the step.
    async fn check_navigation(&self, browser: &mut Browser, tab: &Tab) -> Result<(), StepStop> {
        let main = tab.main_frame().await?;
        let events = browser.peek_events();
        if let Some(e) = events
            .iter()
            .find(|e| e.blocked && e.off_origin && e.navigation && e.frame == main)
        {
            return Err(StepStop::Failed(format!(
                "navigation to {} blocked: {}",
                self.scrub(&e.url),
                e.reason
            )));
        }
        Ok(())
    }

    async fn step(
        &mut self,
        browser: &mut Browser,
        tab: &Tab,
        step: &Step,
    ) -> Result<(), StepStop> {
        let timeout = self.timeout(step);
        match &step.action {
            Action::Goto { url } => {
                let url = url
                    .render_url(&self.channel.base_url, &self.inputs)
                    .map_err(|e| StepStop::Failed(e.to_string()))?;
                self.ensure_allowed(&url)?;
                let nav = tab.goto(&url, timeout).await;
                self.check_navigation(browser, tab).await?;
                nav?;
                // A seller center that is down or overloaded: worth trying again later.
                if let Ok(Some(code)) = tab.response_status().await {
                    if code >= 500 {
                        return Err(StepStop::Transient(format!(
                            "the seller center answered HTTP {code} for {url}"
                        )));
                    }
                }
            }
            Action::WaitFor { condition } => match condition {
                WaitCondition::Visible(locator) => {
                    tab.wait_visible(&self.find(locator)?, timeout).await?
                }
                WaitCondition::Url(pattern) => {
                    let re = pattern
                        .regex(&self.channel.base_url, &self.inputs)
                        .map_err(|e| StepStop::Failed(e.to_string()))?;
                    tab.wait_url(&re, timeout).await?
                }
                WaitCondition::Text(t) => {
                    let text = t
                        .render_text(&self.inputs)
                        .map_err(|e| StepStop::Failed(e.to_string()))?;
                    tab.wait_text(&text, timeout).await?
                }
                WaitCondition::NetworkIdle => {
                    tab.network_idle(Duration::from_millis(500), timeout)
                        .await?
                }
            },
            Action::Extract {
                field,
                locator,
                source,
                required,
            } => {
                let find = self.find(locator)?;
                let value = match source {
                    ExtractSource::Text => tab.text(&find).await?,
                    ExtractSource::Attribute(name) => {
                        let name = name
                            .render_attribute_name(&self.inputs)
                            .map_err(|e| StepStop::Failed(e.to_string()))?;
                        match tab.attribute_of(&find, &name).await? {
                            Some(None) if *required => {
                                return Err(StepStop::Failed(format!(
                                    "element {} has no attribute `{name}` (step {} \"{}\")",
                                    find.display,
                                    step.index + 1,
                                    step.name
                                )))
                            }
                            found => found.flatten(),
                        }
                    }
                    ExtractSource::Value => tab.value(&find).await?,
                };
                match value {
                    Some(v) => {
                        self.fields.insert(field.clone(), v);
                    }
                    None if *required => {
                        return Err(StepStop::Failed(format!(
                            "element not found: {} (step {} \"{}\")",
                            find.display,
                            step.index + 1,
                            step.name
                        )))
                    }
                    None => {}
                }
            }
            Action::Assert { subject, check } => {
                let (what, actual) = match subject {
                    AssertSubject::Field(f) => (format!("field {f}"), self.fields.get(f).cloned()),
                    AssertSubject::Element(locator) => {
                        (locator.display(), tab.text(&self.find(locator)?).await?)
                    }
                };
                let actual =
                    actual.ok_or_else(|| StepStop::Failed(format!("{what} has no value")))?;
                let render = |t: &crate::playbook::Template| {
                    t.render_text(&self.inputs)
                        .map_err(|e| StepStop::Failed(e.to_string()))
                };
                let ok = match check {
                    AssertCheck::Equals(t) => actual == render(t)?,
                    AssertCheck::Contains(t) => actual.contains(&render(t)?),
                    AssertCheck::Matches(t) => t
                        .render_regex(&self.inputs)
                        .map_err(|e| StepStop::Failed(e.to_string()))?
                        .is_match(&actual),
                };
                if !ok {
                    return Err(StepStop::Failed(format!(
                        "assertion failed: {what} is {:?}",
                        self.scrub(&actual)
                    )));
                }
            }
            Action::Click { locator } => {
                tab.click(&self.find(locator)?, timeout).await?;
                // A click may start a navigation (a new document, or a route change that
                // never fires a load event): wait until the network is quiet and the
                // document loaded, then check it did not try to leave the channel. Two
                // animation frames first give the click's handlers time to start it.
                tab.animation_frames(2).await?;
                tab.network_idle(Duration::from_millis(100), timeout)
                    .await?;
                tab.wait_loaded(timeout).await?;
                self.check_navigation(browser, tab).await?;
            }
            Action::Screenshot { name, target, mask } => {
                self.screenshot(tab, name, target, mask, timeout, step)
                    .await?;
            }
            Action::Fill {
                locator,
                value,
                secret,
            } => {
                let v = match value {
                    ValueSource::Template(t) => t
                        .render_text(&self.inputs)
                        .map_err(|e| StepStop::Failed(e.to_string()))?,
                    ValueSource::Env(var) => {
                        let v = std::env::var(var).map_err(|_| {
                            StepStop::Failed(format!("environment variable {var} is not set"))
                        })?;
                        if !v.is_empty() {
                            self.secrets.push(v.clone());
                        }
                        v
                    }
                };
                let is_secret = *secret
                    || matches!(value, ValueSource::Env(_))
                    || (!v.is_empty() && self.secrets.contains(&v));
                let find = self.find(locator)?;
                if is_secret {
                    self.secret_fields.push(find.clone());
                }
                self.filled.push(find.clone());
                tab.fill(&find, &v, timeout).await?;
            }
            Action::Select { locator, value } => {
                let v = value
                    .render_text(&self.inputs)
                    .map_err(|e| StepStop::Failed(e.to_string()))?;
                let find = self.find(locator)?;
                self.filled.push(find.clone());
                tab.select(&find, &v, timeout).await?;
            }
            Action::Check { locator, checked } => {
                let find = self.find(locator)?;
                self.filled.push(find.clone());
                tab.set_checked(&find, *checked, timeout).await?;
            }
            Action::Upload { locator, input } => {
                let path = self
                    .inputs
                    .get(input)
                    .ok_or_else(|| StepStop::Failed(format!("input {input} has no value")))?;
                let find = self.find(locator)?;
                self.filled.push(find.clone());
                tab.upload(&find, std::path::Path::new(path), timeout)
                    .await?;
            }
            Action::Submit { control, expect } => {
                match self.playbook.mode {
                    Mode::Login => {
                        let url = expect
                            .url
                            .render_url(&self.channel.base_url, &self.inputs)
                            .map_err(|e| StepStop::Failed(e.to_string()))?;
                        let control = self.find(control)?;
                        approval::submit_armed(
                            browser,
                            tab,
                            &control,
                            &expect.method,
                            &url,
                            timeout,
                        )
                        .await
                        .map_err(StepStop::Failed)?;
                        self.check_navigation(browser, tab).await?;
                    }
                    _ => match self.gate.take() {
                        // No approval: this is a draft. The filled form as the reviewer will
                        // see it (secrets masked), then the approval request bound to the
                        // write the page tries to send; the run stops here.
                        None => {
                            self.screenshot(
                                tab,
                                "draft",
                                &ShotTarget::FullPage,
                                &[],
                                timeout,
                                step,
                            )
                            .await?;
                            if self.replaying {
                                let held = approval::hold_for_replay(
                                    self.engine,
                                    self.draft_context(),
                                    browser,
                                    tab,
                                    step,
                                )
                                .await;
                                return Err(match held {
                                    Ok(_) => StepStop::Drafted,
                                    Err(e) => StepStop::Failed(e),
                                });
                            }
                            let requested = approval::request_from_draft(
                                self.engine,
                                self.draft_context(),
                                browser,
                                tab,
                                step,
                            )
                            .await;
                            match requested {
                                Ok(id) => {
                                    self.approval_id = Some(id);
                                    return Err(StepStop::Drafted);
                                }
                                Err(e) => {
                                    self.after_click_evidence(tab, step).await;
                                    return Err(StepStop::Failed(e));
                                }
                            }
                        }
                        Some(gate) => {
                            let ctx = self.draft_context();
                            let submitted = approval::submit_with_gate(
                                self.engine,
                                ctx,
                                gate,
                                browser,
                                tab,
                                step,
                            )
                            .await;
                            if submitted.is_err() {
                                self.after_click_evidence(tab, step).await;
                            }
                            submitted.map_err(|e| match e {
                                approval::SubmitFailure::Refused(m) => StepStop::Refused(m),
                                approval::SubmitFailure::Failed(m) => StepStop::Failed(m),
                            })?;
                            self.check_navigation(browser, tab).await?;
                            // The page the seller center answered with is evidence too.
                            self.screenshot(
                                tab,
                                "submit-result",
                                &ShotTarget::FullPage,
                                &[],
                                timeout,
                                step,
                            )
                            .await?;
                        }
                    },
                }
            }
        }
        Ok(())
    }

    /// After a submit step that sent nothing, or was refused: the page as it is then (a
    /// validation message, an error banner) is evidence too, under `after-submit-click`.
    /// Best effort: a capture that fails here does not change why the step failed.
    async fn after_click_evidence(&mut self, tab: &Tab, step: &Step) {
        let shot = self
            .screenshot(
                tab,
                "after-submit-click",
                &ShotTarget::FullPage,
                &[],
                Duration::from_secs(5),
                step,
            )
            .await;
        if let Err(StepStop::Failed(m) | StepStop::Transient(m)) = shot {
            tracing::warn!("no screenshot after the submit click: {}", self.scrub(&m));
        }
    }

    fn ensure_allowed(&self, url: &Url) -> Result<(), StepStop> {
        if self.channel.allows_origin(url) {
            Ok(())
        } else {
            Err(StepStop::Failed(format!(
                "{url} is outside channel {}'s allowed origins ({})",
                self.channel.id,
                self.channel.allowed_origins.join(", ")
            )))
        }
    }

    /// What the guard records for this run: the channel's `record_responses` and the
    /// playbook's `record:` globs (none in login mode: its responses carry credentials).
    fn record_policy(&self) -> Result<crate::browser::RecordPolicy, String> {
        let mut responses = Vec::new();
        if self.playbook.mode != Mode::Login {
            for g in self
                .channel
                .record_responses
                .iter()
                .chain(&self.playbook.record)
            {
                responses.push(
                    crate::url_pattern::glob(g, &self.channel.base_url)
                        .map_err(|e| format!("record glob of the playbook or channel: {e}"))?,
                );
            }
        }
        Ok(crate::browser::RecordPolicy {
            responses,
            documents: self.channel.record_documents,
            max_bytes: self.channel.record_max_bytes,
            everything: self.sample && self.playbook.mode != Mode::Login,
        })
    }

    /// Stores the responses the guard recorded since the last call (one WARC file and one
    /// `response_recorded` record each, in arrival order) and returns the record ids of
    /// the responses live now (the latest per method and URL).
    async fn flush_responses(&mut self) -> Result<Vec<String>, EngineError> {
        let Some(guard) = &self.guard else {
            return Ok(Vec::new());
        };
        for mut ex in guard.take_recorded() {
            // Secret inputs never reach a record: not in the URL, the request's headers or
            // its body (what clerk sent). The response is the server's, kept as sent.
            ex.url = self.scrub(&ex.url);
            for (_, v) in ex.request_headers.iter_mut() {
                *v = self.scrub(v);
            }
            if !self.secrets.is_empty() {
                if let Ok(text) = std::str::from_utf8(&ex.request_body) {
                    ex.request_body = self.scrub(text).into_bytes();
                }
            }
            let store = self.engine.store.clone();
            let exchange = ex.clone();
            let stored = tokio::task::spawn_blocking(move || store.put_warc(&exchange))
                .await
                .map_err(|e| {
                    EngineError::Store(StoreError::Io {
                        path: self
                            .engine
                            .store
                            .data_dir()
                            .join(crate::evidence::warc::WARC_DIR),
                        source: std::io::Error::other(e.to_string()),
                    })
                })??;
            self.engine
                .record(Event::ResponseRecorded {
                    run_id: self.run_id.clone(),
                    step: u64::try_from(ex.step).ok(),
                    method: ex.method.clone(),
                    url: ex.url.clone(),
                    status: u64::from(ex.status),
                    mime: ex.mime(),
                    resource_type: ex.resource_type.clone(),
                    record_id: stored.record_id.clone(),
                    request_record_id: stored.request_record_id.clone(),
                    warc_sha256: stored.sha256.clone(),
                    warc_bytes: stored.bytes,
                    response_length: stored.response_length,
                    payload_digest: stored.payload_digest.clone(),
                    payload_bytes: stored.payload_bytes,
                    full_bytes: ex.full_bytes,
                    truncated: ex.truncated(),
                    cap: ex.cap,
                    received_at: ex
                        .received_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                })
                .await?;
            self.live
                .insert(format!("{} {}", ex.method, ex.url), stored.record_id);
        }
        Ok(self.live.values().cloned().collect())
    }

    async fn screenshot(
        &mut self,
        tab: &Tab,
        name: &str,
        target: &ShotTarget,
        mask: &[Locator],
        timeout: Duration,
        step: &Step,
    ) -> Result<(), StepStop> {
        let t_capture = Instant::now();
        tab.settle(timeout).await?;
        // Never store a login page as evidence of anything.
        if let Some(msg) = self.landed_on_login(tab).await {
            return Err(StepStop::SessionExpired(msg));
        }
        let (png, origin) = match target {
            ShotTarget::FullPage => (tab.screenshot_full().await?, (0.0, 0.0)),
            ShotTarget::Element(locator) => {
                let find = self.find(locator)?;
                tab.wait_visible(&find, timeout).await?;
                let rect = tab.rect(&find).await?.ok_or_else(|| {
                    StepStop::Failed(format!("element not found: {}", find.display))
                })?;
                (tab.capture(rect).await?, (rect.x, rect.y))
            }
        };
        // Mask secret fields and the playbook's mask selectors, in image coordinates.
        let mut regions: Vec<ElementRect> = Vec::new();
        let mut locators = Vec::with_capacity(mask.len() + self.secret_fields.len());
        for m in mask {
            locators.push(self.find(m)?);
        }
        locators.extend(self.secret_fields.iter().cloned());
        for loc in locators {
            if let Some(r) = tab.rect(&loc).await? {
                regions.push(ElementRect {
                    x: r.x - origin.0,
                    y: r.y - origin.1,
                    width: r.width,
                    height: r.height,
                });
            }
        }
        let mut unique: Vec<ElementRect> = Vec::with_capacity(regions.len());
        for r in regions {
            if !unique.contains(&r) {
                unique.push(r);
            }
        }
        let regions = unique;
        let (png, masks) = if regions.is_empty() {
            (png, vec![])
        } else {
            approval::mask_png(&png, &regions).map_err(StepStop::Failed)?
        };
        self.spent.capture += t_capture.elapsed();
        let t_png = Instant::now();
        let store = self.engine.store.clone();
        let info: PngInfo = tokio::task::spawn_blocking(move || store.put_png(&png))
            .await
            .map_err(|e| StepStop::Failed(e.to_string()))?
            .map_err(|e| StepStop::Failed(e.to_string()))?;
        self.spent.png += t_png.elapsed();
        let url = self.scrub(&tab.url().await.unwrap_or_default());
        let title = self.scrub(&tab.title().await.unwrap_or_default());
        let fields = self
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), self.scrub(v)))
            .collect();
        let t_record = Instant::now();
        let responses = self
            .flush_responses()
            .await
            .map_err(|e| StepStop::Failed(e.to_string()))?;
        let recorded = self
            .engine
            .record(Event::EvidenceCaptured {
                run_id: self.run_id.clone(),
                step: step.index as u64,
                name: name.to_owned(),
                sha256: info.sha256.clone(),
                bytes: info.bytes,
                width: info.width as u64,
                height: info.height as u64,
                blank: info.blank,
                url,
                title,
                captured_at: self.engine.now(),
                fields,
                masks,
                responses,
            })
            .await;
        self.spent.journal += t_record.elapsed();
        self.spent.journal_in_steps += t_record.elapsed();
        recorded.map_err(|e| StepStop::Failed(e.to_string()))?;
        if info.blank {
            tracing::warn!(run = %self.run_id, "screenshot {name} is a single colour");
        }
        self.screenshots.push(Shot {
            name: name.to_owned(),
            sha256: info.sha256,
            path: info.path,
            width: info.width,
            height: info.height,
            blank: info.blank,
        });
        Ok(())
    }
}

/// `a=b, c=d` (or `none`).
fn show_claims(claims: &crate::case::Claims) -> String {
    if claims.is_empty() {
        return "none".into();
    }
    claims
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Claims checked before a browser starts: the channel's `require_match` for writes, and
/// each claim a rule compares must be comparable that way.
fn check_claims(
    playbook: &Playbook,
    channel: &crate::channel::Channel,
    effective: Mode,
    claims: &crate::case::Claims,
) -> Result<(), String> {
    if matches!(effective, Mode::Draft | Mode::Submit)
        && channel.require_match
        && playbook.matching.is_empty()
    {
        return Err(format!(
            "channel {} requires case matching before any write, and playbook {} ({}) declares no `match:` rules; add rules comparing the case's claims with the page (README, \"Case matching\"), or set `require_match = false` on the channel",
            channel.id,
            playbook.name,
            playbook.source.display()
        ));
    }
    for (name, value) in claims {
        if !crate::playbook::is_claim_name(name) {
            return Err(format!(
                "claim name {name:?} is not valid: claim names are lowercase letters, digits and `_`"
            ));
        }
        if let Some(rule) = playbook.matching.iter().find(|r| r.claim == *name) {
            if let Err(e) = rule.compare.check_claim(value) {
                return Err(format!(
                    "claim {name}={value:?} cannot be compared as {} (playbook {} line {}): {e}",
                    rule.compare, playbook.name, rule.line
                ));
            }
        }
    }
    Ok(())
}
