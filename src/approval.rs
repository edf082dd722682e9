//! Approvals: the gate between a reviewed draft and the one write it allows.
//!
//! Lifecycle, all of it journal records: `ApprovalRequested` (a draft stopped at its submit
//! step) → `ApprovalDecided` (approved or rejected by a reviewer of the channel who is not
//! the requester) → `ApprovalUsed` (an approved submit went through; never again). An
//! approval past its `expires_at` is expired. State is always derived from the records,
//! never stored elsewhere.
//!
//! The **draft hash** binds an approval to exactly what was reviewed. It is the SHA-256
//! (hex) of the canonical JSON (see [`crate::evidence`]'s canonical form: sorted keys, no
//! whitespace) of [`DraftContent`]: channel, playbook name and file hash, the bound inputs
//! (secrets replaced by `<secret>`), the live values of the form the submit control
//! belongs to, in document order (CSRF-style tokens left out, secret values replaced), and
//! the declared write (method and URL). A submit run reads the live form back right
//! before the submit control, recomputes the hash and submits nothing unless it is equal.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::browser::{ArmedWrite, Browser, ElementRect, FieldValue, Find, HeldWrite, Tab};
use crate::channel::{Channel, Config};
use crate::evidence::{timestamp, Event, Record, Store, StoreError};
use crate::playbook::{Action, Inputs, Mode, Playbook, Step, SECRET};
use crate::write::{Scrub, Write};

/// A check made right before an irreversible step (the daemon's queue fencing check before
/// an approval is spent); `Err(why)` refuses the step.
#[derive(Clone)]
pub struct Fence {
    check: std::sync::Arc<
        dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync,
    >,
    /// The claim itself (job id and token), checked again by a shared journal in the
    /// transaction that records the approval as used.
    job: Option<(u64, String)>,
}

impl Fence {
    pub fn new(
        check: impl Fn() -> futures::future::BoxFuture<'static, Result<(), String>>
            + Send
            + Sync
            + 'static,
    ) -> Fence {
        Fence {
            check: std::sync::Arc::new(check),
            job: None,
        }
    }

    /// The queue claim this fence stands for.
    pub fn for_claim(mut self, job: u64, token: String) -> Fence {
        self.job = Some((job, token));
        self
    }

    /// Runs the check.
    pub async fn check(&self) -> Result<(), String> {
        (self.check)().await
    }

    /// The claim as the journal checks it, at `now`.
    pub fn job_fence(&self, now: DateTime<Utc>) -> Option<crate::evidence::shared::JobFence> {
        self.job
            .as_ref()
            .map(|(job, token)| crate::evidence::shared::JobFence {
                job: *job,
                token: token.clone(),
                now,
            })
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}

/// What a draft run knows when it reaches its submit step.
#[derive(Debug, Clone)]
pub struct DraftContext {
    pub run_id: String,
    pub playbook: Playbook,
    pub channel: Channel,
    pub inputs: Inputs,
    pub secrets: Vec<String>,
    pub secret_fields: Vec<Find>,
    pub filled: Vec<Find>,
    pub operator: String,
    pub case_ref: Option<String>,
    pub draft_screenshot: Option<String>,
    /// The front end's fencing check, made before the approval is spent.
    pub fence: Option<Fence>,
    /// The case's claims (matched against the page before anything was filled).
    pub claims: BTreeMap<String, String>,
}

/// The content the draft hash covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftContent {
    pub channel: String,
    pub playbook: String,
    pub playbook_sha256: String,
    pub inputs: BTreeMap<String, String>,
    pub values: Vec<FieldValue>,
    pub write: DeclaredWrite,
    /// The write the page sent when the submit control was activated during the draft, as
    /// the guard held it: decoded, tokens and volatile fields left out, secrets redacted
    /// (see [`crate::write`]). A submit passes only if the page sends an equal write.
    /// Absent in approvals requested before clerk held writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Write>,
    /// The case's claims the draft was matched with: an approval covers them too, and the
    /// submit runs with them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

/// The write a submit step declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredWrite {
    pub method: String,
    pub url: String,
}

/// An approval request as stored (canonical JSON in the `ApprovalRequested` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub approval_id: String,
    pub run_id: String,
    pub case_ref: Option<String>,
    pub requester: String,
    pub created_at: String,
    pub expires_at: String,
    /// SHA-256 of the draft screenshot (the filled form, secrets masked).
    pub screenshot_sha256: Option<String>,
    pub content: DraftContent,
    pub draft_hash: String,
    /// The held write in full, volatile fields included, for the reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Write>,
    /// The body fields left out of the comparison (channel `volatile_fields` and the submit
    /// step's `expect.ignore`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volatile: Vec<String>,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    Expired,
    Used,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Expired => "expired",
            ApprovalState::Used => "used",
        }
    }
}

/// A decision as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub decision: String,
    pub reviewer: String,
    pub note: Option<String>,
    pub decided_at: String,
}

/// An approval with its derived state.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub request: ApprovalRequest,
    pub state: ApprovalState,
    pub decision: Option<Decision>,
    pub used_by_run: Option<String>,
    pub refusals: Vec<String>,
}

/// Errors of the approval workflow; every one of them is also recorded as a refusal.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("unknown approval {0}")]
    Unknown(String),
    #[error("approval {id} is {state}, not approved{extra}")]
    NotUsable {
        id: String,
        state: &'static str,
        extra: String,
    },
    #[error("`{user}` is not a reviewer of channel `{channel}` (reviewers: {reviewers})")]
    NotReviewer {
        user: String,
        channel: String,
        reviewers: String,
    },
    #[error("`{0}` requested this approval and cannot decide it (four eyes)")]
    SelfApproval(String),
    #[error("approval {id} was already decided ({state})")]
    AlreadyDecided { id: String, state: &'static str },
    #[error("a rejection needs a note saying why")]
    NoteRequired,
    #[error("the note has {0} characters; at most {MAX_NOTE_CHARS}")]
    NoteTooLong(usize),
    #[error("channel `{0}` no longer permits submit")]
    SubmitNotPermitted(String),
    #[error("playbook {path} is not the version approval {id} was drafted with: its SHA-256 is {now}, the approved text's is {then} (stored as playbook-texts/{then}.yaml). Submit without --playbook to send exactly what was approved, or draft again with this version (`clerk run {path} ...`) and have the new draft reviewed")]
    PlaybookChanged {
        id: String,
        path: String,
        now: String,
        then: String,
    },
    #[error("the playbook is `{now}` but approval {id} is for `{then}`")]
    WrongPlaybook {
        id: String,
        now: String,
        then: String,
    },
    #[error("inputs differ from approval {id}: {detail}")]
    InputsChanged { id: String, detail: String },
    #[error("unknown channel `{0}`")]
    UnknownChannel(String),
    #[error("evidence store: {0}")]
    Store(String),
}

/// Why a submit step did not submit.
pub enum SubmitFailure {
    Refused(String),
    Failed(String),
}

/// A checked permission to submit once.
#[derive(Debug, Clone)]
pub struct SubmitGate {
    pub approval: ApprovalRequest,
}

/// What approvals need from whoever runs them: the evidence store, the channels' config and
/// the clock. The runner's `Engine` implements it; this module never names the runner.
pub trait Ledger {
    fn store(&self) -> &Store;
    fn config(&self) -> &Config;
    /// Now, from the engine's (injectable) clock.
    fn now(&self) -> DateTime<Utc>;
}

/// Appends a record from async code without blocking the runtime.
async fn record(ledger: &impl Ledger, event: Event) -> Result<(), StoreError> {
    let store = ledger.store().clone();
    tokio::task::spawn_blocking(move || store.append(event))
        .await
        .map_err(|e| StoreError::Other(format!("append task failed: {e}")))??;
    Ok(())
}

/// SHA-256 of the canonical JSON of the draft content.
pub fn draft_hash(content: &DraftContent) -> String {
    let value = serde_json::to_value(content).unwrap_or(serde_json::Value::Null);
    hex::encode(Sha256::digest(canonical_json(&value).as_bytes()))
}

/// Canonical JSON (the evidence store's form: sorted keys, no whitespace, no floats).
pub fn canonical_json(v: &serde_json::Value) -> String {
    crate::evidence::record::canonical(v).unwrap_or_else(|_| v.to_string())
}

fn new_approval_id(now: DateTime<Utc>) -> String {
    let run = crate::evidence::new_run_id(now);
    format!("a-{}", run.trim_start_matches("r-"))
}

/// Field names that carry per-page tokens, not reviewed values.
fn is_token_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["csrf", "xsrf", "authenticity_token", "nonce", "_token"]
        .iter()
        .any(|t| n.contains(t))
}

/// Reads the live form around `control`, leaving tokens out and secrets masked; empty when
/// the control is not in a form (a script sends the write).
async fn live_values(
    tab: &Tab,
    control: &Find,
    secrets: &[String],
) -> Result<Vec<FieldValue>, String> {
    let values = tab
        .form_values(control)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    Ok(values
        .into_iter()
        .filter(|f| !is_token_field(&f.name))
        .map(|f| FieldValue {
            value: if secrets.iter().any(|s| !s.is_empty() && *s == f.value) {
                SECRET.to_owned()
            } else {
                f.value
            },
            name: f.name,
        })
        .collect())
}

fn declared_write(
    step: &Step,
    channel: &Channel,
    inputs: &Inputs,
) -> Result<(Find, DeclaredWrite), String> {
    let Action::Submit { control, expect } = &step.action else {
        return Err("not a submit step".into());
    };
    let control = crate::playbook::render_find(control, inputs, &channel.testid_attribute, &[])
        .map_err(|e| format!("cannot render submit control {}: {e}", control.display()))?;
    let url = expect
        .url
        .render_url(&channel.base_url, inputs)
        .map_err(|e| e.to_string())?;
    if !channel.allows_origin(&url) {
        return Err(format!(
            "declared write {url} is outside the channel's allowed origins"
        ));
    }
    Ok((
        control,
        DeclaredWrite {
            method: expect.method.to_ascii_uppercase(),
            url: without_query(&url),
        },
    ))
}

fn without_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Checks the form would send the declared write.
async fn check_form_target(tab: &Tab, control: &Find, write: &DeclaredWrite) -> Result<(), String> {
    let target = tab.form_target(control).await.map_err(|e| e.to_string())?;
    match target {
        Some((method, action)) => {
            let action_bare = Url::parse(&action)
                .map(|u| without_query(&u))
                .unwrap_or(action.clone());
            if method.eq_ignore_ascii_case(&write.method) && action_bare == write.url {
                Ok(())
            } else {
                Err(format!(
                    "the form sends {method} {action_bare} but the playbook declares {} {}",
                    write.method, write.url
                ))
            }
        }
        None => Err(format!(
            "submit control {} is not inside a form",
            control.display
        )),
    }
}

fn redacted_inputs(ctx: &DraftContext) -> BTreeMap<String, String> {
    crate::playbook::redact(&ctx.playbook, &ctx.inputs)
}

/// The volatile body fields of a submit step: the channel's and the step's own.
fn volatile_fields(step: &Step, channel: &Channel) -> Vec<String> {
    let mut out = channel.volatile_fields.clone();
    if let Action::Submit { expect, .. } = &step.action {
        for f in &expect.ignore {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
    }
    out
}

/// Activates `control` with the guard holding writes: every write the page sends is failed
/// (nothing reaches the seller center) and kept. Waits for the first one, then for the
/// network to be quiet, so that a second write is seen too.
/// How long a page may stay quiet (no request) after a submit control was activated before
/// clerk concludes that it will send nothing.
pub const NO_WRITE_QUIET: Duration = Duration::from_millis(1500);

/// What a page did after its submit control was activated.
enum AfterClick {
    /// The write came.
    Wrote,
    /// No write, and the page says why (validation messages that appeared after the click)
    /// or went quiet; the text says which.
    NoWrite(String),
    /// Nothing within the step's timeout.
    TimedOut,
}

/// Waits after a click until `wrote()` says the write came, and ends early when the page
/// shows a new validation error (then waits a moment longer for a write anyway) or when it
/// has been quiet for [`NO_WRITE_QUIET`] since the click.
async fn after_click(
    tab: &Tab,
    guard: &crate::browser::Guard,
    timeout: Duration,
    before: &[String],
    wrote: impl Fn() -> bool,
) -> AfterClick {
    let start = std::time::Instant::now();
    let mut next_look = Duration::from_millis(150);
    loop {
        if wrote() {
            return AfterClick::Wrote;
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return AfterClick::TimedOut;
        }
        if elapsed >= next_look {
            next_look = elapsed + Duration::from_millis(250);
            let shown: Vec<String> = tab
                .validation_messages()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|m| !before.contains(m))
                .collect();
            if !shown.is_empty() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if wrote() {
                    return AfterClick::Wrote;
                }
                return AfterClick::NoWrite(format!(
                    "the page shows {} (after {:.1} s)",
                    shown
                        .iter()
                        .map(|m| format!("{m:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    start.elapsed().as_secs_f64()
                ));
            }
            if elapsed >= NO_WRITE_QUIET && guard.quiet_for() >= NO_WRITE_QUIET {
                return AfterClick::NoWrite(format!(
                    "the page settled without sending it (no request for {:.1} s after the click)",
                    NO_WRITE_QUIET.as_secs_f64()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn hold_the_write(
    browser: &mut Browser,
    tab: &Tab,
    control: &Find,
    timeout: Duration,
) -> Result<(Vec<HeldWrite>, Option<String>), String> {
    let guard = browser.guard().clone();
    guard.take_held();
    let before = tab.validation_messages().await.unwrap_or_default();
    guard.hold_writes(true);
    let clicked = tab.click(control, timeout).await;
    let mut held = Vec::new();
    let mut why = None;
    if clicked.is_ok() {
        match after_click(tab, &guard, timeout, &before, || guard.has_held()).await {
            AfterClick::Wrote | AfterClick::TimedOut => {}
            AfterClick::NoWrite(w) => why = Some(w),
        }
        held.extend(guard.take_held());
        if !held.is_empty() {
            let _ = tab
                .network_idle(Duration::from_millis(300), Duration::from_secs(5))
                .await;
            held.extend(guard.take_held());
        }
    }
    guard.hold_writes(false);
    clicked.map_err(|e| e.to_string())?;
    Ok((held, why))
}

/// What a draft's submit step held: the content an approval covers, the write as decoded,
/// and the fields left out of the comparison.
struct Held {
    content: DraftContent,
    full: Write,
    volatile: Vec<String>,
}

/// Activates the submit control of a draft with the guard holding writes, and returns the
/// one write to the declared endpoint the page tried to send (never sent).
async fn hold_draft(
    ctx: &DraftContext,
    browser: &mut Browser,
    tab: &Tab,
    step: &Step,
) -> Result<Held, String> {
    let (control, write) = declared_write(step, &ctx.channel, &ctx.inputs)?;
    let timeout = step.timeout.unwrap_or(Duration::from_secs(10));
    tab.settle(Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let values = live_values(tab, &control, &ctx.secrets).await?;
    let (held, why) = hold_the_write(browser, tab, &control, timeout).await?;
    // Writes the page makes on its own meanwhile (an autosave, an analytics call) are
    // blocked and recorded like any other; the approval is about the declared endpoint.
    let to_declared = |h: &&HeldWrite| {
        let bare = Url::parse(&h.url)
            .map(|u| without_query(&u))
            .unwrap_or_else(|_| h.url.clone());
        h.method.eq_ignore_ascii_case(&write.method) && bare == write.url
    };
    let matching: Vec<&HeldWrite> = held.iter().filter(to_declared).collect();
    let list = |ws: &[HeldWrite]| {
        ws.iter()
            .map(|h| format!("{} {}", h.method, h.url))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let first = match matching.as_slice() {
        [] if held.is_empty() => {
            return Err(format!(
                "activating the submit control {} sent no write: {}; the playbook declares {} {}, and the draft needs the page to send it",
                control.display,
                why.unwrap_or_else(|| format!("nothing within {timeout:?}")),
                write.method,
                write.url
            ))
        }
        [] => {
            return Err(format!(
                "the page sends {} but the playbook declares {} {}",
                list(&held),
                write.method,
                write.url
            ))
        }
        [one] => *one,
        many => {
            return Err(format!(
                "activating the submit control {} sent {} writes to {} {}: an approval covers exactly one write",
                control.display,
                many.len(),
                write.method,
                write.url
            ))
        }
    };
    let volatile = volatile_fields(step, &ctx.channel);
    let full = Write::decode(
        &first.method,
        &first.url,
        first.content_type.as_deref(),
        first.body.as_deref(),
        first.body_complete,
        &Scrub {
            secrets: &ctx.secrets,
        },
    );
    let content = DraftContent {
        channel: ctx.channel.id.clone(),
        playbook: ctx.playbook.name.clone(),
        playbook_sha256: ctx.playbook.sha256.clone(),
        inputs: redacted_inputs(ctx),
        values,
        write,
        request: Some(full.comparable(&volatile)),
        claims: ctx.claims.clone(),
    };
    Ok(Held {
        content,
        full,
        volatile,
    })
}

/// A replay's submit step (`crate::replay`): the write the page would send, held and never
/// sent, recorded as `write_held` for comparison with the recorded run's approval; nothing
/// is queued for review.
pub async fn hold_for_replay(
    ledger: &impl Ledger,
    ctx: DraftContext,
    browser: &mut Browser,
    tab: &Tab,
    step: &Step,
) -> Result<String, String> {
    let held = hold_draft(&ctx, browser, tab, step).await?;
    let json = serde_json::to_value(&held.content).map_err(|e| e.to_string())?;
    let hash = draft_hash(&held.content);
    record(
        ledger,
        Event::WriteHeld {
            run_id: ctx.run_id.clone(),
            step: step.index as u64,
            draft: canonical_json(&json),
            draft_hash: hash.clone(),
            at: timestamp(ledger.now()),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(hash)
}

/// Turns a draft stopped at its submit step into a pending approval request: activates the
/// submit control with the guard holding writes, and binds the request to the write the page
/// tried to send.
pub async fn request_from_draft(
    ledger: &impl Ledger,
    ctx: DraftContext,
    browser: &mut Browser,
    tab: &Tab,
    step: &Step,
) -> Result<String, String> {
    let Held {
        content,
        full,
        volatile,
    } = hold_draft(&ctx, browser, tab, step).await?;
    let now = ledger.now();
    let expires = now + chrono::Duration::hours(ctx.channel.approval_ttl_hours as i64);
    let approval_id = new_approval_id(now);
    let request = ApprovalRequest {
        approval_id: approval_id.clone(),
        run_id: ctx.run_id.clone(),
        case_ref: ctx.case_ref.clone(),
        requester: ctx.operator.clone(),
        created_at: timestamp(now),
        expires_at: timestamp(expires),
        screenshot_sha256: ctx.draft_screenshot.clone(),
        draft_hash: draft_hash(&content),
        content,
        held: Some(full),
        volatile,
    };
    let json = serde_json::to_value(&request).map_err(|e| e.to_string())?;
    record(
        ledger,
        Event::ApprovalRequested {
            approval_id: approval_id.clone(),
            run_id: ctx.run_id.clone(),
            request: canonical_json(&json),
            draft_hash: request.draft_hash.clone(),
            requester: ctx.operator.clone(),
            channel: ctx.channel.id.clone(),
            case_ref: ctx.case_ref.clone(),
            created_at: request.created_at.clone(),
            expires_at: request.expires_at.clone(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(approval_id)
}

/// Derives an approval's state from its records.
pub fn from_records(records: &[Record], now: DateTime<Utc>) -> Option<Approval> {
    let mut request: Option<ApprovalRequest> = None;
    let mut decision = None;
    let mut used_by_run = None;
    let mut refusals = Vec::new();
    for r in records {
        match &r.event {
            Event::ApprovalRequested { request: json, .. } => {
                request = serde_json::from_str(json).ok();
            }
            Event::ApprovalDecided {
                decision: d,
                reviewer,
                note,
                decided_at,
                ..
            } if decision.is_none() => {
                decision = Some(Decision {
                    decision: d.clone(),
                    reviewer: reviewer.clone(),
                    note: note.clone(),
                    decided_at: decided_at.clone(),
                });
            }
            Event::ApprovalUsed { run_id, .. } => {
                used_by_run.get_or_insert_with(|| run_id.clone());
            }
            Event::Refused {
                action,
                user,
                reason,
                at,
                ..
            } => {
                refusals.push(format!("{at} {action} by {user}: {reason}"));
            }
            _ => {}
        }
    }
    let request = request?;
    let expired = DateTime::parse_from_rfc3339(&request.expires_at)
        .map(|t| now > t.with_timezone(&Utc))
        .unwrap_or(true);
    let state = if used_by_run.is_some() {
        ApprovalState::Used
    } else {
        match decision.as_ref().map(|d| d.decision.as_str()) {
            Some("rejected") => ApprovalState::Rejected,
            _ if expired => ApprovalState::Expired,
            Some("approved") => ApprovalState::Approved,
            _ => ApprovalState::Pending,
        }
    };
    Some(Approval {
        request,
        state,
        decision,
        used_by_run,
        refusals,
    })
}

/// Loads one approval.
pub fn load(ledger: &impl Ledger, id: &str) -> Result<Approval, ApprovalError> {
    let records = ledger
        .store()
        .approval_records(id)
        .map_err(|e| ApprovalError::Store(e.to_string()))?;
    from_records(&records, ledger.now()).ok_or_else(|| ApprovalError::Unknown(id.to_owned()))
}

/// Every approval, newest first, optionally only pending ones or one channel's.
pub fn list(
    ledger: &impl Ledger,
    pending_only: bool,
    channel: Option<&str>,
) -> Result<Vec<Approval>, ApprovalError> {
    let ids = ledger
        .store()
        .approval_ids()
        .map_err(|e| ApprovalError::Store(e.to_string()))?;
    let mut out = Vec::new();
    for id in ids {
        if let Ok(a) = load(ledger, &id) {
            if pending_only && a.state != ApprovalState::Pending {
                continue;
            }
            if channel.is_some_and(|c| c != a.request.content.channel) {
                continue;
            }
            out.push(a);
        }
    }
    out.sort_by(|a, b| b.request.created_at.cmp(&a.request.created_at));
    Ok(out)
}

/// What kind of refusal a refused submit's reason describes (the messages are made in this
/// file: keep them and this in step). The *mismatched* submits are those where what would
/// go out is not what was approved: `draft_changed` (the live form's draft hash differs),
/// `write_differs` (the write the page sent, or the playbook declares, is not the approved
/// one), `no_write` (clicking sent nothing: the page refused the reviewed values, e.g. a
/// validation error) and `playbook_changed` (another playbook text than the approved one).
/// `second_write` (the page tried another write to the endpoint), `already_used` (the
/// approval's one write was sent already) and `not_usable` (the approval is not approved or
/// expired, the inputs changed, ...) are not; the first two are *duplicates*: a repeated
/// send that was prevented ([`is_duplicate_kind`]).
pub fn submit_refusal_kind(reason: &str) -> &'static str {
    if reason.contains("second write") {
        "second_write"
    } else if reason.contains("(already used by run ") {
        "already_used"
    } else if reason.contains("draft hash mismatch") {
        "draft_changed"
    } else if reason.contains("is not the approved write")
        || (reason.starts_with("declared write ") && reason.contains("differs from the approved"))
        || reason.starts_with("the form sends ")
    {
        "write_differs"
    } else if reason.contains("sent no write") || reason.contains("did not send the declared") {
        "no_write"
    } else if reason.contains("is not the version approval") {
        "playbook_changed"
    } else {
        "not_usable"
    }
}

/// True for the refusal kinds that mean "what the browser would send is not what was
/// approved" (see [`submit_refusal_kind`]).
pub fn is_mismatch_kind(kind: &str) -> bool {
    matches!(
        kind,
        "draft_changed" | "write_differs" | "no_write" | "playbook_changed"
    )
}

/// True for the refusal kinds that mean "this write was sent once already" (a double
/// submit, or an approval used again): see [`submit_refusal_kind`].
pub fn is_duplicate_kind(kind: &str) -> bool {
    matches!(kind, "second_write" | "already_used")
}

/// Records a refusal. The refusal itself stands whether or not the record could be written
/// (nothing is submitted either way); a store failure is logged loudly.
fn refusal(ledger: &impl Ledger, action: &str, id: &str, user: &str, reason: &str) {
    let appended = ledger.store().append(Event::Refused {
        action: action.to_owned(),
        approval_id: Some(id.to_owned()),
        run_id: None,
        user: user.to_owned(),
        reason: reason.to_owned(),
        at: timestamp(ledger.now()),
    });
    if let Err(e) = appended {
        tracing::error!(
            approval = id,
            "could not record the refusal of {action} ({reason}): {e}"
        );
    }
}

/// The longest decision note clerk keeps (checked here, whatever front end sent it).
pub const MAX_NOTE_CHARS: usize = 2000;

/// Records a reviewer's decision. Refusals are recorded too.
pub fn decide(
    ledger: &impl Ledger,
    id: &str,
    reviewer: &str,
    approve: bool,
    note: Option<String>,
) -> Result<Approval, ApprovalError> {
    let action = if approve { "approve" } else { "reject" };
    let result = (|| {
        let approval = load(ledger, id)?;
        let channel = ledger
            .config()
            .channel(&approval.request.content.channel)
            .map_err(|_| ApprovalError::UnknownChannel(approval.request.content.channel.clone()))?;
        if !channel.is_reviewer(reviewer) {
            return Err(ApprovalError::NotReviewer {
                user: reviewer.to_owned(),
                channel: channel.id.clone(),
                reviewers: if channel.reviewers.is_empty() {
                    "none".into()
                } else {
                    channel.reviewers.join(", ")
                },
            });
        }
        if approval.request.requester == reviewer {
            return Err(ApprovalError::SelfApproval(reviewer.to_owned()));
        }
        if approval.state != ApprovalState::Pending {
            return Err(ApprovalError::AlreadyDecided {
                id: id.to_owned(),
                state: approval.state.as_str(),
            });
        }
        if !approve && note.as_deref().map(str::trim).unwrap_or("").is_empty() {
            return Err(ApprovalError::NoteRequired);
        }
        if let Some(n) = note.as_deref().map(|n| n.chars().count()) {
            if n > MAX_NOTE_CHARS {
                return Err(ApprovalError::NoteTooLong(n));
            }
        }
        ledger
            .store()
            .append(Event::ApprovalDecided {
                approval_id: id.to_owned(),
                decision: if approve { "approved" } else { "rejected" }.to_owned(),
                reviewer: reviewer.to_owned(),
                note: note.clone(),
                draft_hash: approval.request.draft_hash.clone(),
                decided_at: timestamp(ledger.now()),
            })
            .map_err(|e| ApprovalError::Store(e.to_string()))?;
        load(ledger, id)
    })();
    if let Err(e) = &result {
        if !matches!(e, ApprovalError::Store(_)) {
            refusal(ledger, action, id, reviewer, &e.to_string());
        }
    }
    result
}

/// Checks, before any browser starts, that `id` may be used by this run.
pub fn gate_for_run(
    ledger: &impl Ledger,
    id: &str,
    playbook: &Playbook,
    inputs: &Inputs,
    channel: &Channel,
    _operator: &str,
) -> Result<SubmitGate, ApprovalError> {
    let approval = load(ledger, id)?;
    if approval.state != ApprovalState::Approved {
        let extra = match approval.state {
            ApprovalState::Used => format!(
                " (already used by run {})",
                approval.used_by_run.clone().unwrap_or_default()
            ),
            ApprovalState::Expired => format!(" (expired at {})", approval.request.expires_at),
            _ => String::new(),
        };
        return Err(ApprovalError::NotUsable {
            id: id.to_owned(),
            state: approval.state.as_str(),
            extra,
        });
    }
    if !channel.modes.contains(&Mode::Submit) {
        return Err(ApprovalError::SubmitNotPermitted(channel.id.clone()));
    }
    let req = &approval.request;
    if playbook.name != req.content.playbook {
        return Err(ApprovalError::WrongPlaybook {
            id: id.to_owned(),
            now: playbook.name.clone(),
            then: req.content.playbook.clone(),
        });
    }
    if playbook.sha256 != req.content.playbook_sha256 {
        return Err(ApprovalError::PlaybookChanged {
            id: id.to_owned(),
            path: playbook.source.display().to_string(),
            now: playbook.sha256.clone(),
            then: req.content.playbook_sha256.clone(),
        });
    }
    let redacted = crate::playbook::redact(playbook, inputs);
    if redacted != req.content.inputs {
        return Err(ApprovalError::InputsChanged {
            id: id.to_owned(),
            detail: format!("approved {:?}, given {:?}", req.content.inputs, redacted),
        });
    }
    Ok(SubmitGate {
        approval: approval.request,
    })
}

/// The inputs an approved request was drafted with (secret ones must come from elsewhere).
pub fn inputs_of(approval: &Approval) -> BTreeMap<String, String> {
    approval.request.content.inputs.clone()
}

/// Runs the submit step of an approved run: re-reads the form, recomputes the draft hash,
/// marks the approval used, opens the guard for exactly the declared write and clicks.
pub async fn submit_with_gate(
    ledger: &impl Ledger,
    ctx: DraftContext,
    gate: SubmitGate,
    browser: &mut Browser,
    tab: &Tab,
    step: &Step,
) -> Result<(), SubmitFailure> {
    let id = gate.approval.approval_id.clone();
    let refuse = |reason: String| {
        refusal(ledger, "submit", &id, &ctx.operator, &reason);
        SubmitFailure::Refused(reason)
    };
    let (control, write) =
        declared_write(step, &ctx.channel, &ctx.inputs).map_err(SubmitFailure::Failed)?;
    if write != gate.approval.content.write {
        return Err(refuse(format!(
            "declared write {} {} differs from the approved {} {}",
            write.method,
            write.url,
            gate.approval.content.write.method,
            gate.approval.content.write.url
        )));
    }
    tab.settle(Duration::from_secs(5))
        .await
        .map_err(|e| SubmitFailure::Failed(e.to_string()))?;
    let approved_request = gate.approval.content.request.clone();
    if approved_request.is_none() {
        // Approvals from before clerk held writes: the form must send the declared write.
        check_form_target(tab, &control, &write)
            .await
            .map_err(&refuse)?;
    }
    let values = live_values(tab, &control, &ctx.secrets)
        .await
        .map_err(SubmitFailure::Failed)?;
    let content = DraftContent {
        channel: ctx.channel.id.clone(),
        playbook: ctx.playbook.name.clone(),
        playbook_sha256: ctx.playbook.sha256.clone(),
        inputs: redacted_inputs(&ctx),
        values: values.clone(),
        write: write.clone(),
        request: gate.approval.content.request.clone(),
        claims: ctx.claims.clone(),
    };
    let hash = draft_hash(&content);
    if hash != gate.approval.draft_hash {
        let approved = &gate.approval.content.values;
        let mut diffs = Vec::new();
        for v in &values {
            match approved.iter().find(|a| a.name == v.name) {
                Some(a) if a.value != v.value => diffs.push(format!(
                    "{}: approved {:?}, now {:?}",
                    v.name, a.value, v.value
                )),
                None => diffs.push(format!("{}: new field with {:?}", v.name, v.value)),
                _ => {}
            }
        }
        for a in approved {
            if !values.iter().any(|v| v.name == a.name) {
                diffs.push(format!("{}: missing now", a.name));
            }
        }
        return Err(refuse(format!(
            "draft hash mismatch (approved {}, now {hash}): {}",
            gate.approval.draft_hash,
            if diffs.is_empty() {
                "the form's structure changed".to_owned()
            } else {
                diffs.join("; ")
            }
        )));
    }
    // The claimant still holds the job (a node that lost its lease must not act: another
    // attempt may be running), checked before the approval is spent.
    if let Some(fence) = &ctx.fence {
        fence
            .check()
            .await
            .map_err(|why| refuse(format!("fencing check failed: {why}")))?;
    }
    // Last check against the store, then mark used *before* the click: a crash after the
    // click can never allow a second use.
    let current = load(ledger, &id).map_err(|e| SubmitFailure::Failed(e.to_string()))?;
    if current.state != ApprovalState::Approved {
        return Err(refuse(format!(
            "approval {id} is {} now",
            current.state.as_str()
        )));
    }
    // The journal refuses a second use (and, with a shared journal, a lost claim) in the
    // same transaction that records this one.
    let job_fence = ctx.fence.as_ref().and_then(|f| f.job_fence(ledger.now()));
    let used = Event::ApprovalUsed {
        approval_id: id.clone(),
        run_id: ctx.run_id.clone(),
        used_at: timestamp(ledger.now()),
    };
    let store = ledger.store().clone();
    match tokio::task::spawn_blocking(move || store.append_fenced(used, job_fence)).await {
        Ok(Ok(_)) => {}
        Ok(Err(StoreError::Refused(why))) => return Err(refuse(why)),
        Ok(Err(e)) => return Err(SubmitFailure::Failed(e.to_string())),
        Err(e) => return Err(SubmitFailure::Failed(format!("append task failed: {e}"))),
    }
    let Some(approved) = approved_request else {
        let url = Url::parse(&write.url).map_err(|e| SubmitFailure::Failed(e.to_string()))?;
        return submit_armed(
            browser,
            tab,
            &control,
            &write.method,
            &url,
            Duration::from_secs(15),
        )
        .await
        .map_err(|m| {
            if m.contains("not the approved write") || m.contains("second write") {
                refuse(m)
            } else {
                SubmitFailure::Failed(m)
            }
        });
    };
    // The page's write must equal the approved one in every non-volatile part: the guard
    // holds it, this judge compares, and only an equal write goes out, once.
    let volatile = gate.approval.volatile.clone();
    let secrets = ctx.secrets.clone();
    let want = approved.clone();
    // Only writes to the approved endpoint are judged: an autosave or analytics call the page
    // fires meanwhile is blocked and recorded, and does not decide the submit.
    let endpoint = Url::parse(&want.url)
        .map(|u| ArmedWrite {
            method: want.method.clone(),
            url: without_query(&u),
        })
        .map_err(|e| SubmitFailure::Failed(format!("the approved write has no valid URL: {e}")))?;
    let judge: crate::browser::Judge = Box::new(move |h: &HeldWrite| {
        let got = Write::decode(
            &h.method,
            &h.url,
            h.content_type.as_deref(),
            h.body.as_deref(),
            h.body_complete,
            &Scrub { secrets: &secrets },
        )
        .comparable(&volatile);
        if got == want {
            Ok(())
        } else {
            let diffs = want.differences(&got);
            Err(if diffs.is_empty() {
                "the write differs from the approved one".to_owned()
            } else {
                diffs.join("; ")
            })
        }
    });
    let timeout = step.timeout.unwrap_or(Duration::from_secs(15));
    let guard = browser.guard().clone();
    let before = tab.validation_messages().await.unwrap_or_default();
    guard.arm_judged(endpoint, judge);
    if let Err(e) = tab.click(&control, timeout).await {
        guard.disarm();
        return Err(SubmitFailure::Failed(e.to_string()));
    }
    let why = match after_click(tab, &guard, timeout, &before, || guard.judged_now()).await {
        AfterClick::NoWrite(why) => Some(why),
        AfterClick::Wrote | AfterClick::TimedOut => None,
    };
    let verdict = guard.wait_judged(Duration::from_millis(50)).await;
    // Let the held write be answered and a second write show itself.
    let _ = tab
        .network_idle(
            crate::browser::JUDGED_HOLD + Duration::from_millis(100),
            Duration::from_secs(5),
        )
        .await;
    let started = std::time::Instant::now();
    while verdict.as_ref().is_some_and(|v| v.is_ok())
        && guard.approved_outcome().is_none()
        && started.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    guard.disarm();
    match verdict {
        None => Err(refuse(format!(
            "activating {} sent no write: {}; nothing was submitted",
            control.display,
            why.unwrap_or_else(|| format!("nothing within {timeout:?}"))
        ))),
        Some(Err((h, why))) => Err(refuse(format!(
            "the page's write {} {} is not the approved write ({why}): nothing was submitted",
            h.method, h.url
        ))),
        Some(Ok(_)) => match (guard.approved_outcome(), guard.tripped()) {
            (Some(true), None) => Ok(()),
            (Some(true), Some(other)) => Err(refuse(format!(
                "the approved write was sent once; the page then tried a second write ({other}), which was blocked"
            ))),
            (_, Some(other)) => Err(refuse(format!(
                "the page sent a second write ({other}) together with the approved one: nothing was submitted"
            ))),
            (_, None) => Err(SubmitFailure::Failed(
                "the approved write was not answered in time".into(),
            )),
        },
    }
}

/// Opens the guard for exactly one `method url` write, clicks `control` and checks that the
/// write, and only it, went out.
pub async fn submit_armed(
    browser: &mut Browser,
    tab: &Tab,
    control: &Find,
    method: &str,
    url: &Url,
    timeout: Duration,
) -> Result<(), String> {
    let guard = browser.guard().clone();
    guard.arm(ArmedWrite {
        method: method.to_ascii_uppercase(),
        url: without_query(url),
    });
    let clicked = tab.click(control, timeout).await;
    if let Err(e) = clicked {
        guard.disarm();
        return Err(e.to_string());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = tab.network_idle(Duration::from_millis(400), timeout).await;
    let _ = tab.wait_loaded(timeout).await;
    let unused = guard.disarm();
    if let Some(other) = guard.tripped() {
        return Err(format!(
            "the page tried a second write during submit ({other}), which is not the approved write: nothing was submitted"
        ));
    }
    if unused {
        return Err(format!(
            "clicking {} did not send the declared {method} {url}",
            control.display
        ));
    }
    Ok(())
}

/// Paints each region black on a PNG and returns the new PNG and the regions as `x,y,w,h`.
pub fn mask_png(png: &[u8], regions: &[ElementRect]) -> Result<(Vec<u8>, Vec<String>), String> {
    let mut img = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .map_err(|e| format!("capture is not a PNG: {e}"))?
        .to_rgba8();
    let (w, h) = img.dimensions();
    let mut masks = Vec::new();
    for r in regions {
        // Grow by 2 px so anti-aliased edges of the text are covered too.
        let x0 = (r.x - 2.0).floor().max(0.0) as u32;
        let y0 = (r.y - 2.0).floor().max(0.0) as u32;
        let x1 = ((r.x + r.width + 2.0).ceil().max(0.0) as u32).min(w);
        let y1 = ((r.y + r.height + 2.0).ceil().max(0.0) as u32).min(h);
        if x0 >= x1 || y0 >= y1 {
            continue;
        }
        for y in y0..y1 {
            for x in x0..x1 {
                img.put_pixel(x, y, image::Rgba([0, 0, 0, 255]));
            }
        }
        masks.push(format!("{},{},{},{}", x0, y0, x1 - x0, y1 - y0));
    }
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode masked PNG: {e}"))?;
    Ok((out, masks))
}
