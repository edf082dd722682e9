//! The network guard: every request of every target passes here before it leaves Chromium.
//!
//! Interception is enabled once, on the *browser* target (`Fetch.enable` without a session),
//! which pauses the requests of every page, popup, iframe (cross-site ones in their own
//! process included) and worker of the browser. A page-level `Fetch.enable` would miss
//! out-of-process iframes and workers; the tests prove that the browser-level one does not.
//!
//! Decisions, in order:
//! 1. a URL whose origin is not in the channel's allowed origins is failed;
//! 2. a method other than GET, HEAD and OPTIONS is failed, unless it is one of the channel's
//!    exact read-only exceptions, or the single write a submit step has armed;
//! 3. everything else continues.
//!
//! Every paused request is continued or failed (a forgotten one hangs the page), each CDP
//! call with a timeout. Every failure and every allowed write becomes a [`GuardEvent`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams, EventRequestPaused, FailRequestParams, RequestPattern,
    RequestStage,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use futures::StreamExt;
use tokio::sync::mpsc;
use url::Url;

use super::{cdp, BrowserError};
use crate::channel::ReadOnlyException;

/// What the guard lets through.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Serialized origins (`http://127.0.0.1:8080`).
    pub allowed_origins: Vec<String>,
    /// Writes allowed in read-only mode (exact method and URL without query).
    pub read_only_exceptions: Vec<ReadOnlyException>,
}

/// The one write a submit step may cause.
#[derive(Debug, Clone)]
pub struct ArmedWrite {
    pub method: String,
    /// Exact URL (without query) the write must go to.
    pub url: String,
}

/// A decision worth recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardEvent {
    pub blocked: bool,
    pub method: String,
    pub url: String,
    pub resource_type: String,
    pub frame: String,
    pub reason: String,
    /// Step index current when the request was paused (-1 before the first step).
    pub step: i64,
    /// A top-level or frame navigation (resource type Document).
    pub navigation: bool,
    /// Blocked because its origin is outside the channel (as opposed to being a write).
    pub off_origin: bool,
}

struct Shared {
    policy: Policy,
    armed: Mutex<Option<ArmedWrite>>,
    /// Set when a write other than the armed one was attempted while armed: the submit
    /// window closes and stays closed.
    tripped: Mutex<Option<String>>,
    step: AtomicI64,
    /// Milliseconds since `epoch` of the last paused request (for network idle).
    last_request_ms: AtomicU64,
    requests_seen: AtomicU64,
    epoch: Instant,
}

/// Handle to a running guard; cheap to clone.
#[derive(Clone)]
pub struct Guard {
    shared: Arc<Shared>,
}

impl Guard {
    /// Enables browser-wide interception and starts the task answering paused requests.
    /// Returns the guard and the stream of its events.
    pub(super) async fn install(
        browser: Arc<chromiumoxide::Browser>,
        policy: Policy,
        timeout: Duration,
    ) -> Result<(Guard, mpsc::UnboundedReceiver<GuardEvent>), BrowserError> {
        let shared = Arc::new(Shared {
            policy,
            armed: Mutex::new(None),
            tripped: Mutex::new(None),
            step: AtomicI64::new(-1),
            last_request_ms: AtomicU64::new(0),
            requests_seen: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let mut paused = cdp(timeout, "listen for paused requests", async {
            browser.event_listener::<EventRequestPaused>().await
        })
        .await?;
        let enable = EnableParams::builder()
            .pattern(
                RequestPattern::builder()
                    .url_pattern("*")
                    .request_stage(RequestStage::Request)
                    .build(),
            )
            .build();
        cdp(timeout, "Fetch.enable on the browser target", async {
            browser.execute(enable).await
        })
        .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task_shared = shared.clone();
        tokio::spawn(async move {
            while let Some(ev) = paused.next().await {
                // Decide in arrival order (the armed write must go to the first matching
                // request, and a stray write seen first must close the window), then
                // answer on its own task: one slow CDP reply must not stall the others.
                let event = decide(&task_shared, &ev);
                let browser = browser.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = if let Some(e) = &event.as_ref().filter(|e| e.blocked) {
                        let reason = if e.navigation {
                            // Aborted navigations leave the current document in place
                            // instead of committing an error page.
                            ErrorReason::Aborted
                        } else {
                            ErrorReason::BlockedByClient
                        };
                        browser
                            .execute(FailRequestParams::new(ev.request_id.clone(), reason))
                            .await
                            .map(|_| ())
                    } else {
                        browser
                            .execute(ContinueRequestParams::new(ev.request_id.clone()))
                            .await
                            .map(|_| ())
                    };
                    if let Err(err) = result {
                        tracing::debug!(url = %ev.request.url, "answering a paused request failed: {err}");
                    }
                    if let Some(event) = event {
                        let _ = tx.send(event);
                    }
                });
            }
        });
        Ok((Guard { shared }, rx))
    }

    /// Records which step is running, so events can be attributed to it.
    pub fn set_step(&self, step: Option<usize>) {
        self.shared
            .step
            .store(step.map(|s| s as i64).unwrap_or(-1), Ordering::SeqCst);
    }

    /// Allows exactly one write matching `write`; the first matching request consumes it.
    pub fn arm(&self, write: ArmedWrite) {
        if let Ok(mut a) = self.shared.armed.lock() {
            *a = Some(write);
        }
    }

    /// The write that closed the submit window, if one did.
    pub fn tripped(&self) -> Option<String> {
        self.shared.tripped.lock().ok().and_then(|t| t.clone())
    }

    /// Withdraws an armed write; returns true if it was still unused.
    pub fn disarm(&self) -> bool {
        self.shared
            .armed
            .lock()
            .map(|mut a| a.take().is_some())
            .unwrap_or(false)
    }

    /// How long since the last request was paused.
    pub fn quiet_for(&self) -> Duration {
        let last = self.shared.last_request_ms.load(Ordering::SeqCst);
        let now = self.shared.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(last))
    }

    /// How many requests the guard has seen.
    pub fn requests_seen(&self) -> u64 {
        self.shared.requests_seen.load(Ordering::SeqCst)
    }
}

fn is_read(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

fn without_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Decides on one paused request. Returns the event to record (None for ordinary reads).
fn decide(shared: &Shared, ev: &EventRequestPaused) -> Option<GuardEvent> {
    shared.requests_seen.fetch_add(1, Ordering::SeqCst);
    shared
        .last_request_ms
        .store(shared.epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
    let method = ev.request.method.to_ascii_uppercase();
    let raw_url = ev.request.url.clone() + ev.request.url_fragment.as_deref().unwrap_or("");
    let navigation = ev.resource_type == ResourceType::Document;
    let mk = |blocked: bool, reason: String| GuardEvent {
        blocked,
        method: method.clone(),
        url: raw_url.clone(),
        resource_type: format!("{:?}", ev.resource_type),
        frame: ev.frame_id.inner().clone(),
        reason,
        step: shared.step.load(Ordering::SeqCst),
        navigation,
        off_origin: false,
    };
    let off_origin = |reason: String| GuardEvent {
        off_origin: true,
        ..mk(true, reason)
    };
    let url = match Url::parse(&ev.request.url) {
        Ok(u) => u,
        Err(_) => return Some(off_origin("unparsable URL".into())),
    };
    // Requests that never reach the network (data:, blob:) carry nothing out.
    if matches!(url.scheme(), "data" | "blob" | "about") {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    if !shared.policy.allowed_origins.contains(&origin) {
        return Some(off_origin(format!(
            "origin {origin} is not in the channel's allowed origins"
        )));
    }
    if is_read(&method) {
        return None;
    }
    let bare = without_query(&url);
    if let Ok(mut armed) = shared.armed.lock() {
        if let Some(a) = armed.as_ref() {
            if a.method == method && a.url == bare {
                *armed = None;
                return Some(mk(false, "the approved submit".into()));
            }
            // Any other write while the window is open closes it: the page is sending
            // something nobody reviewed, so nothing is sent at all.
            *armed = None;
            if let Ok(mut t) = shared.tripped.lock() {
                t.get_or_insert_with(|| format!("{method} {bare}"));
            }
            return Some(mk(
                true,
                format!("{method} {bare} is not the approved write; the submit window is closed"),
            ));
        }
    }
    if shared
        .policy
        .read_only_exceptions
        .iter()
        .any(|e| e.method.eq_ignore_ascii_case(&method) && e.url == bare)
    {
        return Some(mk(false, "channel read-only exception".into()));
    }
    Some(mk(
        true,
        format!("{method} is a write and no approved submit allows it"),
    ))
}
