//! Following the browser's targets: who is who, workers released from the debugger wait,
//! WebSocket traffic on the sockets a channel allows.
//!
//! Targets are tracked from `Target.targetCreated` (id → type) so that the guard can tell a
//! page's main frame from a subframe and the runner can say which kind of target sent a
//! request.
//!
//! Service and shared workers are released from "waiting for the debugger" here:
//! chromiumoxide auto-attaches to every target of a page with `waitForDebuggerOnStart`, and
//! for a `service_worker` it queues `Runtime.runIfWaitingForDebugger` *and then detaches*.
//! Measured on Chromium 156, with a CDP probe doing exactly that and with clerk itself: the
//! run command stays pending until the worker's script has been fetched, the detach lands
//! first, and the worker stays paused for good: `register()` never settles, the install
//! handler never runs, and a page waiting on `navigator.serviceWorker.ready` hangs. So for
//! each worker (and out-of-process iframe) clerk attaches its own *non-flat* session from
//! the browser connection and sends `Runtime.runIfWaitingForDebugger` and `Network.enable`
//! through `Target.sendMessageToTarget` (chromiumoxide can only address flat sessions it
//! manages itself). The session is kept for the target's life: detaching it early could
//! stall the worker again, and it carries the target's WebSocket events.
//!
//! WebSocket traffic: the guard's CSP refuses every socket except a channel's
//! `websocket_allow` endpoints; on those, the opening and every frame sent are recorded,
//! from the tab's own `Network` events and from those of its workers and out-of-process
//! iframes (measured: without the worker sessions, a frame a dedicated worker sent on an
//! allowed socket reached the server unrecorded). Popups' sockets are not followed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chromiumoxide::cdp::browser_protocol::network::{
    EventWebSocketClosed, EventWebSocketCreated, EventWebSocketFrameSent,
};
use chromiumoxide::cdp::browser_protocol::target::{
    AttachToTargetParams, EventReceivedMessageFromTarget, EventTargetCreated, EventTargetDestroyed,
    TargetId,
};
use futures::StreamExt;
use serde_json::Value;
use sha2::Digest as _;

use super::guard::Registry;
use super::{cdp, BrowserError, Guard, GuardEvent};

/// What is known about a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetEntry {
    /// `page`, `iframe`, `worker`, `service_worker`, `shared_worker`, ...
    pub kind: String,
    /// Its browser context (`TargetInfo.browserContextId`).
    pub context: Option<String>,
}

/// Target id → what is known about it, shared with the guard.
pub(crate) type Targets = Arc<Mutex<HashMap<String, TargetEntry>>>;

/// Non-flat session id → target id, for the sessions clerk attaches itself.
#[derive(Clone, Default)]
pub(super) struct Sessions(Arc<Mutex<HashMap<String, String>>>);

/// Target types clerk attaches its own session to.
const WATCHED: &[&str] = &["service_worker", "shared_worker", "worker", "iframe"];

/// Keeps `targets` up to date and watches workers and out-of-process iframes.
pub(super) async fn track(
    browser: &Arc<chromiumoxide::Browser>,
    targets: &Targets,
    sessions: &Sessions,
    timeout: Duration,
) -> Result<(), BrowserError> {
    let mut created = cdp(timeout, "listen for targets", async {
        browser.event_listener::<EventTargetCreated>().await
    })
    .await?;
    let mut destroyed = cdp(timeout, "listen for targets", async {
        browser.event_listener::<EventTargetDestroyed>().await
    })
    .await?;
    {
        // A long-lived browser sees thousands of targets: forget the ones that are gone.
        let (targets, sessions) = (targets.clone(), sessions.clone());
        tokio::spawn(async move {
            while let Some(ev) = destroyed.next().await {
                let id = ev.target_id.inner();
                if let Ok(mut t) = targets.lock() {
                    t.remove(id);
                }
                if let Ok(mut s) = sessions.0.lock() {
                    s.retain(|_, target| target != id);
                }
            }
        });
    }
    let targets = targets.clone();
    let sessions = sessions.clone();
    let browser = browser.clone();
    tokio::spawn(async move {
        while let Some(ev) = created.next().await {
            let id = ev.target_info.target_id.inner().clone();
            let kind = ev.target_info.r#type.clone();
            let context = ev
                .target_info
                .browser_context_id
                .as_ref()
                .map(|c| c.inner().clone());
            if let Ok(mut t) = targets.lock() {
                t.insert(
                    id.clone(),
                    TargetEntry {
                        kind: kind.clone(),
                        context,
                    },
                );
            }
            if WATCHED.contains(&kind.as_str()) {
                let (browser, sessions) = (browser.clone(), sessions.clone());
                tokio::spawn(async move {
                    if let Err(e) = watch(&browser, &id, &sessions, timeout).await {
                        // A target gone before we got to it is not a problem.
                        tracing::debug!(target = %id, "cannot watch a {kind}: {e}");
                    }
                });
            }
        }
    });
    Ok(())
}

/// Attaches a non-flat session, runs the target if it waits for a debugger, and enables
/// its Network events.
async fn watch(
    browser: &chromiumoxide::Browser,
    target: &str,
    sessions: &Sessions,
    timeout: Duration,
) -> Result<(), BrowserError> {
    let attach = AttachToTargetParams::builder()
        .target_id(TargetId::new(target))
        .flatten(false)
        .build()
        .map_err(BrowserError::Page)?;
    let session = cdp(timeout, "Target.attachToTarget", browser.execute(attach)).await?;
    let session_id = session.result.session_id.inner().clone();
    if let Ok(mut s) = sessions.0.lock() {
        s.insert(session_id.clone(), target.to_owned());
    }
    // Network first: a worker waiting for the debugger opens its sockets only once it runs,
    // and their `webSocketCreated` (which names the URL) must not be missed.
    for message in [
        r#"{"id":1,"method":"Network.enable"}"#,
        r#"{"id":2,"method":"Runtime.runIfWaitingForDebugger"}"#,
    ] {
        let send = SendMessageToTarget {
            session_id: session_id.clone(),
            message: message.into(),
        };
        cdp(timeout, "Target.sendMessageToTarget", browser.execute(send)).await?;
    }
    Ok(())
}

/// `Target.sendMessageToTarget` (deprecated in CDP, absent from chromiumoxide's generated
/// types, still served by Chromium 156).
#[derive(Debug, Clone, serde::Serialize)]
struct SendMessageToTarget {
    #[serde(rename = "sessionId")]
    session_id: String,
    message: String,
}

impl chromiumoxide::types::Method for SendMessageToTarget {
    fn identifier(&self) -> chromiumoxide::types::MethodId {
        "Target.sendMessageToTarget".into()
    }
}

impl chromiumoxide::types::Command for SendMessageToTarget {
    type Response = Value;
}

/// Sockets remembered before those of pages no run owns are forgotten.
const SOCKETS_KEPT: usize = 1024;

/// (frame, request id) → (URL, closed).
type SocketMap = HashMap<(String, String), (String, bool)>;

/// Turns WebSocket events into guard events of the run whose target sent them.
#[derive(Clone)]
pub(super) struct SocketRecorder {
    registry: Registry,
    /// (frame, request id) → URL of each socket opened, and whether it closed since.
    sockets: Arc<Mutex<SocketMap>>,
}

impl SocketRecorder {
    pub(super) fn new(registry: Registry) -> SocketRecorder {
        SocketRecorder {
            registry,
            sockets: Arc::default(),
        }
    }

    fn event(guard: &Guard, method: &str, frame: &str, url: String, reason: String) -> GuardEvent {
        GuardEvent {
            blocked: false,
            method: method.into(),
            url,
            resource_type: "WebSocket".into(),
            frame: frame.to_owned(),
            reason,
            step: guard.step(),
            navigation: false,
            off_origin: false,
        }
    }

    fn created(&self, frame: &str, request_id: &str, url: &str) {
        if let Ok(mut s) = self.sockets.lock() {
            // A long-lived daemon must not keep every socket it ever saw: past the limit,
            // closed sockets and those of pages no run owns any more are forgotten. (Not at
            // the close itself: events of a page arrive on separate streams, so a frame sent
            // just before the close may be handled after it.)
            if s.len() >= SOCKETS_KEPT {
                s.retain(|(f, _), (_, closed)| !*closed && self.registry.guard_for(f).is_some());
            }
            s.insert(
                (frame.to_owned(), request_id.to_owned()),
                (url.to_owned(), false),
            );
        }
        let Some(guard) = self.registry.guard_for(frame) else {
            tracing::warn!(%url, %frame, "a websocket no run owns");
            return;
        };
        guard.record(Self::event(
            &guard,
            "WEBSOCKET",
            frame,
            url.to_owned(),
            "websocket to an endpoint the channel allows (read-only exception)".into(),
        ));
    }

    fn closed(&self, frame: &str, request_id: &str) {
        if let Ok(mut s) = self.sockets.lock() {
            if let Some(entry) = s.get_mut(&(frame.to_owned(), request_id.to_owned())) {
                entry.1 = true;
            }
        }
    }

    /// Sockets remembered now.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.sockets.lock().map(|s| s.len()).unwrap_or(0)
    }

    fn url_of(&self, frame: &str, request_id: &str) -> Option<String> {
        self.sockets.lock().ok().and_then(|s| {
            s.get(&(frame.to_owned(), request_id.to_owned()))
                .map(|(url, _)| url.clone())
        })
    }

    async fn sent(&self, frame: &str, request_id: &str, opcode: f64, payload: &str) {
        // A page's `webSocketCreated` and `webSocketFrameSent` arrive on separate streams:
        // give the creation (which names the URL) a moment to be handled first.
        let mut url = self.url_of(frame, request_id);
        for _ in 0..50 {
            if url.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            url = self.url_of(frame, request_id);
        }
        let Some(guard) = self.registry.guard_for(frame) else {
            tracing::warn!(?url, %frame, "a websocket frame no run owns");
            return;
        };
        // A worker may open its socket before clerk's session on it listens. The socket is
        // still one the channel allows (the connection policy refuses every other), so the
        // allowed endpoints name it, or name the few it can be.
        let url = url.unwrap_or_else(|| guard.websocket_allow().join(" or "));
        guard.record(Self::event(
            &guard,
            "WEBSOCKET FRAME",
            frame,
            url,
            describe_frame(opcode, payload),
        ));
    }
}

/// Records the tab's own WebSocket traffic.
pub(super) async fn record_page_sockets(
    page: &chromiumoxide::Page,
    recorder: &SocketRecorder,
    timeout: Duration,
) -> Result<(), BrowserError> {
    let mut created = cdp(timeout, "listen for websockets", async {
        page.event_listener::<EventWebSocketCreated>().await
    })
    .await?;
    let mut sent = cdp(timeout, "listen for websocket frames", async {
        page.event_listener::<EventWebSocketFrameSent>().await
    })
    .await?;
    let mut closed = cdp(timeout, "listen for closed websockets", async {
        page.event_listener::<EventWebSocketClosed>().await
    })
    .await?;
    let frame = page.target_id().inner().clone();
    {
        let (recorder, frame) = (recorder.clone(), frame.clone());
        tokio::spawn(async move {
            while let Some(ev) = created.next().await {
                recorder.created(&frame, ev.request_id.inner(), &ev.url);
            }
        });
    }
    {
        let (recorder, frame) = (recorder.clone(), frame.clone());
        tokio::spawn(async move {
            while let Some(ev) = closed.next().await {
                recorder.closed(&frame, ev.request_id.inner());
            }
        });
    }
    let recorder = recorder.clone();
    tokio::spawn(async move {
        while let Some(ev) = sent.next().await {
            recorder
                .sent(
                    &frame,
                    ev.request_id.inner(),
                    ev.response.opcode,
                    &ev.response.payload_data,
                )
                .await;
        }
    });
    Ok(())
}

/// Records WebSocket traffic of the workers and iframes clerk watches.
pub(super) async fn record_child_sockets(
    browser: &chromiumoxide::Browser,
    recorder: &SocketRecorder,
    sessions: &Sessions,
    timeout: Duration,
) -> Result<(), BrowserError> {
    let mut messages = cdp(timeout, "listen for target messages", async {
        browser
            .event_listener::<EventReceivedMessageFromTarget>()
            .await
    })
    .await?;
    let (recorder, sessions) = (recorder.clone(), sessions.clone());
    tokio::spawn(async move {
        while let Some(ev) = messages.next().await {
            let Some(frame) = sessions
                .0
                .lock()
                .ok()
                .and_then(|s| s.get(ev.session_id.inner()).cloned())
            else {
                continue;
            };
            let Ok(msg) = serde_json::from_str::<Value>(&ev.message) else {
                continue;
            };
            let params = &msg["params"];
            let request_id = params["requestId"].as_str().unwrap_or_default();
            match msg["method"].as_str() {
                Some("Network.webSocketCreated") => {
                    recorder.created(
                        &frame,
                        request_id,
                        params["url"].as_str().unwrap_or_default(),
                    );
                }
                Some("Network.webSocketClosed") => recorder.closed(&frame, request_id),
                Some("Network.webSocketFrameSent") => {
                    let frame_data = &params["response"];
                    recorder
                        .sent(
                            &frame,
                            request_id,
                            frame_data["opcode"].as_f64().unwrap_or(0.0),
                            frame_data["payloadData"].as_str().unwrap_or_default(),
                        )
                        .await;
                }
                _ => {}
            }
        }
    });
    Ok(())
}

/// A description of a sent frame: kind, size and SHA-256 of its payload. The content itself
/// is not recorded: it may carry values typed into the page, secret inputs included, and
/// guard reasons are journaled as they are.
fn describe_frame(opcode: f64, payload: &str) -> String {
    let (kind, bytes) = if opcode == 1.0 {
        ("text", payload.as_bytes().to_vec())
    } else {
        // Binary payloads arrive base64-encoded.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .unwrap_or_else(|_| payload.as_bytes().to_vec());
        ("binary", bytes)
    };
    format!(
        "{kind} frame sent on a channel-allowed websocket: {} bytes, sha256 {}",
        bytes.len(),
        hex::encode(sha2::Sha256::digest(&bytes))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_forgotten_when_closed_or_when_no_run_owns_them() {
        let recorder = SocketRecorder::new(Registry::new(Arc::default()));
        recorder.created("frame", "1", "ws://127.0.0.1/feed");
        recorder.created("frame", "2", "ws://127.0.0.1/feed");
        recorder.closed("frame", "1");
        // A frame handled after the close still finds its socket's URL.
        assert_eq!(recorder.remembered(), 2);
        // Past the limit, closed sockets and those of pages no run owns (here: all of
        // them) are dropped.
        for i in 0..SOCKETS_KEPT * 2 {
            recorder.created("gone", &i.to_string(), "ws://127.0.0.1/feed");
        }
        assert!(
            recorder.remembered() <= SOCKETS_KEPT,
            "{}",
            recorder.remembered()
        );
    }
}
