//! The network guard: every request of every target passes here before it leaves Chromium.
//!
//! Interception is enabled once, on the *browser* target (`Fetch.enable` without a session),
//! which pauses the requests of every page, popup, iframe (cross-site ones in their own
//! process included), dedicated, shared and service worker of the browser. A page-level
//! `Fetch.enable` would miss out-of-process iframes and workers; the tests prove that the
//! browser-level one does not.
//!
//! Decisions on a request, in order:
//! 1. the guard's own CSP reports (see [`super::containment`]) are failed and turned into
//!    events: they say which WebSocket (or other `connect-src` connection) Chromium refused;
//! 2. a URL whose origin is not in the channel's allowed origins is failed;
//! 3. a service worker script (`Service-Worker: script` request header) is failed unless the
//!    channel allows service workers: registration then rejects at once, nothing waits;
//! 4. GET, HEAD and OPTIONS continue;
//! 5. a write while a submit window is open goes to that window: the exact armed write
//!    ([`Guard::arm`]) or the judge ([`Guard::arm_judged`]) lets the first one through, once;
//!    any other write closes the window ("trips") and is failed;
//! 6. the channel's exact read-only exceptions continue;
//! 7. every other write is failed, and kept when a draft holds writes ([`Guard::hold_writes`]).
//!
//! Decisions are taken in arrival order (the window goes to the first write), and answered
//! on their own tasks so one slow reply does not stall the others. Every paused request is
//! answered, whatever happens, each CDP call with a timeout: a forgotten one hangs the page.
//!
//! How a failure is answered matters to navigations. A blocked navigation of a *main frame*
//! (a page or popup target) fails with `Aborted`, which leaves its document in place (no
//! error page is captured as evidence). A blocked navigation of a *subframe* fails with
//! `BlockedByClient`, which commits an error page in that frame: measured on Chromium 156, a
//! subframe whose navigation was `Aborted` (or answered 204) while its document was still
//! loading (a `srcdoc` iframe whose form submits itself) never fires `load`, and
//! chromiumoxide's `Page.navigate`, which waits for `load` in every frame, then never
//! returns. The main frame has the same property when its *own* document submits a form
//! while still parsing; a navigation waiter must not depend on `load` for that reason.
//!
//! Responses: documents and worker scripts (resource types `Document` and `Other`) are also
//! paused at the response stage, to carry the headers that close WebSocket, WebTransport and
//! WebRTC ([`super::containment`] says what was measured). Documents are fulfilled with their
//! own status, headers and body plus those headers; if the body cannot be read the document
//! is failed (as a blocked navigation), never let in without them.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, ContinueResponseParams, EnableParams, EventRequestPaused,
    FailRequestParams, FulfillRequestParams, GetResponseBodyParams, HeaderEntry, RequestPattern,
    RequestStage, TakeResponseBodyAsStreamParams,
};
use chromiumoxide::cdp::browser_protocol::io::{CloseParams, ReadParams};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use url::Url;

use super::containment::{self, REPORT_PATH};
use super::offline::{RecordedResponse, Recording};
use super::{cdp, BrowserError, Targets};
use crate::channel::ReadOnlyException;
use crate::evidence::warc::Exchange;

/// The emergency pause as the guard sees it: two lock-free flags owned by the pause board
/// (`crate::pause::PauseBoard`), one for everything and one for the context's channel. The
/// guard reads them for every request, so a flip takes effect on the very next request of
/// every context that holds them, without any CDP call. The default is never paused.
#[derive(Clone, Default)]
pub struct PauseSwitch {
    global: Arc<AtomicBool>,
    channel: Arc<AtomicBool>,
}

impl PauseSwitch {
    /// A switch reading the given flags (the board keeps the other ends).
    pub fn new(global: Arc<AtomicBool>, channel: Arc<AtomicBool>) -> PauseSwitch {
        PauseSwitch { global, channel }
    }

    /// Paused now, globally or for the channel.
    pub fn is_on(&self) -> bool {
        self.global.load(Ordering::SeqCst) || self.channel.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for PauseSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PauseSwitch({})",
            if self.is_on() { "on" } else { "off" }
        )
    }
}

/// The reason recorded for every request the guard fails because of the emergency pause.
pub const PAUSED: &str = "paused";

/// Requests being decided, and writes the guard let through whose `Fetch.continueRequest`
/// has not returned yet, in this process (every guard of every Chromium).
static DECIDING: AtomicU64 = AtomicU64::new(0);

/// Counts one request in [`DECIDING`] from before its decision reads the pause switch until
/// dropped.
struct Deciding;

impl Deciding {
    fn start() -> Deciding {
        DECIDING.fetch_add(1, Ordering::SeqCst);
        Deciding
    }
}

impl Drop for Deciding {
    fn drop(&mut self) {
        LAST_DECIDED_MS.store(process_ms(), Ordering::SeqCst);
        DECIDING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// When (ms since the first call, [`process_ms`]) the last request was decided and, if let
/// through, handed to Chromium.
static LAST_DECIDED_MS: AtomicU64 = AtomicU64::new(0);

/// How long a request handed to Chromium may still take to reach the seller center: the
/// pause record is written no sooner than this after the last request the guard let go.
const IN_TRANSIT: Duration = Duration::from_millis(300);

fn process_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Waits (without any CDP call) until every write a guard of this process decided to send
/// before now has been handed to Chromium, or `limit` passes (a hung browser). Called after
/// a pause switch closes, so that the pause record is written only once nothing let through
/// before it is still on its way out of clerk. Returns whether everything settled.
pub async fn writes_settled(limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while DECIDING.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Handed to Chromium is not yet at the server: give the last one its time in transit
    // (at most IN_TRANSIT from now; a pause does not wait for pages that keep loading).
    let last = LAST_DECIDED_MS.load(Ordering::SeqCst);
    let transit = u64::try_from(IN_TRANSIT.as_millis()).unwrap_or(300);
    let waited = process_ms().saturating_sub(last);
    if last > 0 && waited < transit {
        tokio::time::sleep(Duration::from_millis(transit - waited)).await;
    }
    true
}

/// What the guard lets through.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Serialized origins (`http://127.0.0.1:8080`).
    pub allowed_origins: Vec<String>,
    /// Writes allowed in read-only mode (exact method and URL without query).
    pub read_only_exceptions: Vec<ReadOnlyException>,
    /// Exact `ws://` / `wss://` URLs (no query) a page may open, read-only. Frames the page
    /// sends on them are still recorded.
    pub websocket_allow: Vec<String>,
    /// Whether service workers may register (false: their script request is failed).
    pub service_workers: bool,
    /// The emergency pause: while on, every write (any method but GET and HEAD, the armed
    /// or judged submit write and held draft writes included) is failed.
    pub pause: PauseSwitch,
    /// Which responses are kept as WARC records.
    pub record: RecordPolicy,
    /// Offline replay: every request that would go to the network is answered from this
    /// recording instead (or failed when it holds no response for it).
    pub offline: Option<Arc<Recording>>,
}

/// Which responses the guard keeps (see `evidence::warc`): those of requests whose URL one
/// of `responses` matches and, while any is named and `documents` is set, every document.
#[derive(Debug, Clone, Default)]
pub struct RecordPolicy {
    /// Anchored regexes over full URLs (compiled `url_pattern` globs).
    pub responses: Vec<regex::Regex>,
    pub documents: bool,
    /// Largest body kept per record; the rest is cut (`WARC-Truncated: length`).
    pub max_bytes: u64,
    /// A replay sample: every response the run loads is kept, subresources (scripts, style
    /// sheets, images, fonts) included, so the run can be replayed offline. Needs a browser
    /// launched with `LaunchOptions::record_subresources`.
    pub everything: bool,
}

impl RecordPolicy {
    fn wants(&self, url: &str, document: bool) -> bool {
        if self.everything {
            return true;
        }
        if self.responses.is_empty() {
            return false;
        }
        (document && self.documents) || self.responses.iter().any(|r| r.is_match(url))
    }
}

/// A body larger than this is failed rather than buffered (a recorded response is held
/// whole until it is handed to the page).
const MAX_BUFFERED_BODY: usize = 256 * 1024 * 1024;

/// The one write a submit step may cause (exact method and URL).
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
    /// HTTP method; `WEBSOCKET` for a WebSocket handshake, `WEBSOCKET FRAME` for a frame sent
    /// on an allowed socket, `CONNECT` for another connection the CSP refused.
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

/// A write the page tried to send, as the guard saw it. Request headers are never kept (so
/// no cookie, `Authorization` or CSRF header), only the content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldWrite {
    pub method: String,
    /// Full URL, query included.
    pub url: String,
    pub content_type: Option<String>,
    /// The body bytes; `None` if the page sent none or Chromium did not expose them.
    pub body: Option<Vec<u8>>,
    /// False when the request has a body whose bytes Chromium did not (all) expose: measured
    /// on Chromium 156, the part of a multipart body that comes from a file chosen in a file
    /// input carries no bytes (a `File` built in script does), and is left out of `body`.
    pub body_complete: bool,
    pub resource_type: String,
    pub frame: String,
}

/// Decides whether the write of an open submit window is the approved one.
pub type Judge = Box<dyn Fn(&HeldWrite) -> Result<(), String> + Send + Sync>;

/// The outcome of a judged write: `Ok` (sent) or `Err` with the judge's reason (not sent).
pub type Judgement = Result<HeldWrite, (HeldWrite, String)>;

/// The submit window.
enum Window {
    Closed,
    /// Legacy: exactly this method and URL, once.
    Armed(ArmedWrite),
    /// The first write to the endpoint (method and URL without query) goes to the judge;
    /// writes elsewhere (an autosave, analytics) are failed and recorded, and leave the
    /// window open.
    Judging(ArmedWrite, Judge),
    /// The judged write (`METHOD url-without-query`) has been seen: another write to the
    /// same endpoint (a double submit) trips the window; any other write is failed and
    /// recorded without touching the approved one.
    Judged(String),
}

struct Shared {
    policy: Policy,
    /// `connect-src` sources, computed once.
    connect_sources: String,
    window: Mutex<Window>,
    /// Set when a write other than the approved one was attempted while a window was open:
    /// the window closes and stays closed.
    tripped: Mutex<Option<String>>,
    judged: watch::Sender<Option<Judgement>>,
    hold: AtomicBool,
    held: Mutex<Vec<HeldWrite>>,
    /// Main-frame navigations failed so far (their document stays in place).
    main_navigations_blocked: AtomicU64,
    /// The judged write was sent (after its hold).
    approved_sent: AtomicBool,
    /// The judged write was failed after its hold because another write tripped the window.
    approved_withheld: AtomicBool,
    step: AtomicI64,
    /// Milliseconds since `epoch` of the last paused request (for network idle).
    last_request_ms: AtomicU64,
    requests_seen: AtomicU64,
    epoch: Instant,
    /// Target id → type, to tell main frames from subframes.
    targets: Targets,
    events: mpsc::UnboundedSender<GuardEvent>,
    /// Responses recorded and not yet taken by the run.
    recorded: Mutex<Vec<Exchange>>,
}

impl Shared {
    fn new(
        policy: Policy,
        connect_sources: String,
        targets: Targets,
        events: mpsc::UnboundedSender<GuardEvent>,
    ) -> Shared {
        Shared {
            connect_sources,
            policy,
            window: Mutex::new(Window::Closed),
            tripped: Mutex::new(None),
            judged: watch::channel(None).0,
            hold: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
            main_navigations_blocked: AtomicU64::new(0),
            approved_sent: AtomicBool::new(false),
            approved_withheld: AtomicBool::new(false),
            step: AtomicI64::new(-1),
            last_request_ms: AtomicU64::new(0),
            requests_seen: AtomicU64::new(0),
            epoch: Instant::now(),
            targets,
            events,
            recorded: Mutex::new(Vec::new()),
        }
    }
}

/// Which run each paused request belongs to. One per Chromium: every browser context (one
/// run, or one batch worker) registers its guard here under its `browserContextId`.
///
/// `Fetch.requestPaused` on the browser target names no context and no session, only a
/// `frameId`: the main frame of a page or popup and the root of an out-of-process iframe
/// (whose ids are their target ids), the worker itself for service and shared workers, or an
/// in-process subframe (dedicated workers' requests carry their frame's id). Target ids map
/// to contexts through `Target.targetCreated` (`TargetInfo.browserContextId`, tracked in
/// [`Targets`]; chromiumoxide does not track contexts it did not create, its issue #316);
/// a subframe is looked up once in the frame trees of the registered contexts' pages, then
/// cached; a target not seen yet is asked about (`Target.getTargetInfo`). A request none of
/// this attributes to a registered context is failed (fail closed) and kept here.
#[derive(Clone)]
pub(crate) struct Registry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    contexts: Mutex<std::collections::HashMap<String, Arc<Shared>>>,
    /// In-process subframe id → context id.
    frames: Mutex<std::collections::HashMap<String, String>>,
    targets: Targets,
    unattributed: Mutex<Vec<GuardEvent>>,
}

impl Registry {
    pub(crate) fn new(targets: Targets) -> Registry {
        Registry {
            inner: Arc::new(RegistryInner {
                contexts: Mutex::default(),
                frames: Mutex::default(),
                targets,
                unattributed: Mutex::default(),
            }),
        }
    }

    /// Creates the guard of a browser context; its decisions arrive on the receiver.
    pub(crate) fn register(
        &self,
        context: &str,
        policy: Policy,
    ) -> (Guard, mpsc::UnboundedReceiver<GuardEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let connect_sources =
            containment::connect_sources(&policy.allowed_origins, &policy.websocket_allow);
        let shared = Arc::new(Shared::new(
            policy,
            connect_sources,
            self.inner.targets.clone(),
            tx,
        ));
        if let Ok(mut c) = self.inner.contexts.lock() {
            c.insert(context.to_owned(), shared.clone());
        }
        (Guard { shared }, rx)
    }

    /// Forgets a context: from now on its requests are unattributable (and failed).
    pub(crate) fn unregister(&self, context: &str) {
        if let Ok(mut c) = self.inner.contexts.lock() {
            c.remove(context);
        }
        if let Ok(mut f) = self.inner.frames.lock() {
            f.retain(|_, c| c != context);
        }
    }

    /// A frame of a context's page, as `Page.frameAttached` announced it.
    pub(crate) fn add_frame(&self, frame: &str, context: &str) {
        if let Ok(mut f) = self.inner.frames.lock() {
            f.insert(frame.to_owned(), context.to_owned());
        }
    }

    /// A frame that is gone (`Page.frameDetached`).
    pub(crate) fn remove_frame(&self, frame: &str) {
        if let Ok(mut f) = self.inner.frames.lock() {
            f.remove(frame);
        }
    }

    /// Contexts registered now.
    pub(crate) fn contexts(&self) -> usize {
        self.inner.contexts.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The context a frame or target belongs to, from what is known already.
    fn known_context(&self, frame: &str) -> Option<String> {
        let from_target = self
            .inner
            .targets
            .lock()
            .ok()
            .and_then(|t| t.get(frame).and_then(|e| e.context.clone()));
        from_target.or_else(|| {
            self.inner
                .frames
                .lock()
                .ok()
                .and_then(|f| f.get(frame).cloned())
        })
    }

    fn shared_of(&self, context: &str) -> Option<Arc<Shared>> {
        self.inner
            .contexts
            .lock()
            .ok()
            .and_then(|c| c.get(context).cloned())
    }

    /// The guard of the run a frame or target belongs to, from what is known already
    /// (for events that are not requests: WebSocket traffic).
    pub(crate) fn guard_for(&self, frame: &str) -> Option<Guard> {
        let context = self.known_context(frame)?;
        self.shared_of(&context).map(|shared| Guard { shared })
    }

    /// The guard state of the run a paused request belongs to, or `None` (fail it).
    async fn attribute(
        &self,
        browser: &chromiumoxide::Browser,
        frame: &str,
        timeout: Duration,
    ) -> Option<Arc<Shared>> {
        if frame.is_empty() {
            return None;
        }
        if let Some(context) = self.known_context(frame) {
            return self.shared_of(&context);
        }
        // The event that names the frame (`targetCreated`, `frameAttached`) usually precedes
        // its first request on the wire, but reaches its listener on another task: give
        // those a moment before asking Chromium.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            if let Some(context) = self.known_context(frame) {
                return self.shared_of(&context);
            }
        }
        // Short timeouts: the guard answers nothing else meanwhile.
        let context = self
            .look_up(browser, frame, timeout.min(Duration::from_secs(2)))
            .await?;
        if let Ok(mut f) = self.inner.frames.lock() {
            f.insert(frame.to_owned(), context.clone());
        }
        self.shared_of(&context)
    }

    /// The slow path, once per unknown frame: the frame trees of the registered contexts'
    /// pages, then `Target.getTargetInfo` for a target whose creation event is still on its
    /// way.
    async fn look_up(
        &self,
        browser: &chromiumoxide::Browser,
        frame: &str,
        timeout: Duration,
    ) -> Option<String> {
        use chromiumoxide::cdp::browser_protocol::page::{FrameTree, GetFrameTreeParams};
        use chromiumoxide::cdp::browser_protocol::target::{GetTargetInfoParams, TargetId};
        let contexts: std::collections::HashSet<String> = self
            .inner
            .contexts
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        let pages: Vec<(String, String)> = self
            .inner
            .targets
            .lock()
            .map(|t| {
                t.iter()
                    .filter(|(_, e)| e.kind == "page")
                    .filter_map(|(id, e)| {
                        e.context
                            .as_ref()
                            .filter(|c| contexts.contains(*c))
                            .map(|c| (id.clone(), c.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        fn contains(tree: &FrameTree, frame: &str) -> bool {
            tree.frame.id.inner() == frame
                || tree
                    .child_frames
                    .iter()
                    .flatten()
                    .any(|c| contains(c, frame))
        }
        // A target whose creation event is still on its way (a popup, a worker, an
        // out-of-process iframe): its id is the frame id.
        let params = GetTargetInfoParams::builder()
            .target_id(TargetId::new(frame))
            .build();
        if let Ok(info) = cdp(timeout, "Target.getTargetInfo", browser.execute(params)).await {
            return info
                .result
                .target_info
                .browser_context_id
                .as_ref()
                .map(|c| c.inner().clone())
                .filter(|c| contexts.contains(c));
        }
        // An in-process subframe: look in the frame trees of the contexts' pages.
        for (target, context) in pages {
            let Ok(page) = cdp(
                timeout,
                "find a page",
                browser.get_page(TargetId::new(target)),
            )
            .await
            else {
                continue;
            };
            if let Ok(tree) = cdp(
                timeout,
                "Page.getFrameTree",
                page.execute(GetFrameTreeParams::default()),
            )
            .await
            {
                if contains(&tree.result.frame_tree, frame) {
                    return Some(context);
                }
            }
        }
        None
    }

    /// Records a request no run owns (it is failed).
    fn unattributed(&self, ev: &EventRequestPaused) {
        tracing::warn!(
            url = %ev.request.url,
            frame = %ev.frame_id.inner(),
            "a request no run owns was failed"
        );
        if let Ok(mut u) = self.inner.unattributed.lock() {
            if u.len() < 1000 {
                u.push(GuardEvent {
                    blocked: true,
                    method: ev.request.method.to_ascii_uppercase(),
                    url: ev.request.url.clone(),
                    resource_type: resource_type_name(&ev.resource_type),
                    frame: ev.frame_id.inner().clone(),
                    reason: "no run owns the frame or target that sent it: failed".into(),
                    step: -1,
                    navigation: ev.resource_type == ResourceType::Document,
                    off_origin: false,
                });
            }
        }
    }

    /// The requests failed because no run owned them.
    pub(crate) fn unattributed_requests(&self) -> Vec<GuardEvent> {
        self.inner
            .unattributed
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }
}

/// Handle to a running guard; cheap to clone.
#[derive(Clone)]
pub struct Guard {
    shared: Arc<Shared>,
}

/// How a paused request is answered at the request stage.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Continue,
    Fail(ErrorReason),
    /// The judged write: held for [`JUDGED_HOLD`] first, then sent only if no other write
    /// tripped the window meanwhile (a double submit sends nothing at all).
    ContinueUnlessTripped,
    /// Offline replay: answered from the recording, nothing sent.
    Fulfill(Arc<RecordedResponse>),
}

/// The reason recorded (`request_allowed`) for the one write a submit sends: the weekly
/// numbers count a submit only when this record exists.
pub const APPROVED_SUBMIT: &str = "the approved submit";

/// How long the approved write is held before it is sent, so that a second write the page
/// starts at the same moment (a double submit) stops both.
pub const JUDGED_HOLD: Duration = Duration::from_millis(250);

impl Guard {
    /// Enables browser-wide interception and starts the task answering paused requests.
    /// Each request is attributed to the run (browser context) its frame or target belongs
    /// to and decided by that run's guard; a request no run owns is failed and recorded in
    /// the registry.
    pub(super) async fn install(
        browser: Arc<chromiumoxide::Browser>,
        registry: Registry,
        timeout: Duration,
        subresources: bool,
    ) -> Result<(), BrowserError> {
        let mut paused = cdp(timeout, "listen for paused requests", async {
            browser.event_listener::<EventRequestPaused>().await
        })
        .await?;
        let response_stage = |t: ResourceType| {
            RequestPattern::builder()
                .url_pattern("*")
                .resource_type(t)
                .request_stage(RequestStage::Response)
                .build()
        };
        let mut enable = EnableParams::builder()
            .pattern(
                RequestPattern::builder()
                    .url_pattern("*")
                    .request_stage(RequestStage::Request)
                    .build(),
            )
            .pattern(response_stage(ResourceType::Document))
            .pattern(response_stage(ResourceType::Other))
            // Data endpoints a channel records (others are continued untouched).
            .pattern(response_stage(ResourceType::Xhr))
            .pattern(response_stage(ResourceType::Fetch));
        if subresources {
            // Replay samples keep every response (`RecordPolicy::everything`); other runs'
            // subresources are continued untouched at this stage. Streams (event sources,
            // media ranges) and pings are left alone.
            for t in [
                ResourceType::Script,
                ResourceType::Stylesheet,
                ResourceType::Image,
                ResourceType::Font,
            ] {
                enable = enable.pattern(response_stage(t));
            }
        }
        let enable = enable.build();
        cdp(timeout, "Fetch.enable on the browser target", async {
            browser.execute(enable).await
        })
        .await?;
        tokio::spawn(async move {
            while let Some(ev) = paused.next().await {
                let browser = browser.clone();
                let Some(shared) = registry
                    .attribute(&browser, ev.frame_id.inner(), timeout)
                    .await
                else {
                    registry.unattributed(&ev);
                    tokio::spawn(async move {
                        let fail = FailRequestParams::new(
                            ev.request_id.clone(),
                            ErrorReason::BlockedByClient,
                        );
                        if let Err(e) =
                            cdp(timeout, "Fetch.failRequest", browser.execute(fail)).await
                        {
                            tracing::warn!(url = %ev.request.url, "failing an unattributed request failed: {e}");
                        }
                    });
                    continue;
                };
                if ev.response_status_code.is_some() || ev.response_error_reason.is_some() {
                    tokio::spawn(async move {
                        answer_response(&browser, &shared, &ev, timeout).await;
                    });
                    continue;
                }
                // Decide in arrival order (the window must go to the first write, and a
                // stray write seen first must close it), then answer on its own task.
                let deciding = Deciding::start();
                let (answer, event) = decide(&shared, &ev);
                let (answer, event) = match &shared.policy.offline {
                    Some(recording) => serve_offline(&shared, recording, &ev, answer, event),
                    None => (answer, event),
                };
                let sending = match answer {
                    Answer::ContinueUnlessTripped => Some(deciding),
                    Answer::Continue if event.as_ref().is_some_and(|e| !e.blocked) => {
                        Some(deciding)
                    }
                    _ => None,
                };
                tokio::spawn(async move {
                    // Dropped once the write is handed to Chromium (or failed).
                    let _sending = sending;
                    let mut event = event;
                    let id = ev.request_id.clone();
                    let result = match answer {
                        Answer::Continue => cdp(
                            timeout,
                            "Fetch.continueRequest",
                            browser.execute(ContinueRequestParams::new(id)),
                        )
                        .await
                        .map(|_| ()),
                        Answer::Fail(reason) => cdp(
                            timeout,
                            "Fetch.failRequest",
                            browser.execute(FailRequestParams::new(id, reason)),
                        )
                        .await
                        .map(|_| ()),
                        Answer::Fulfill(response) => {
                            let params = offline_params(&shared, &ev, &response);
                            cdp(timeout, "Fetch.fulfillRequest", browser.execute(params))
                                .await
                                .map(|_| ())
                        }
                        Answer::ContinueUnlessTripped => {
                            tokio::time::sleep(JUDGED_HOLD).await;
                            let tripped = shared.tripped.lock().ok().and_then(|t| t.clone());
                            let withheld = match tripped {
                                Some(other) => Some(format!(
                                    "the approved write was withheld: another write ({other}) came while it was held"
                                )),
                                // Paused while the approved write was held: it is not sent.
                                None if shared.policy.pause.is_on() => {
                                    trip(shared.as_ref(), format!("{PAUSED} while the approved write was held"));
                                    Some(PAUSED.to_owned())
                                }
                                None => None,
                            };
                            if let Some(reason) = withheld {
                                shared.approved_withheld.store(true, Ordering::SeqCst);
                                // Recorded as blocked only: it never reached the server.
                                let _ = shared.events.send(GuardEvent {
                                    blocked: true,
                                    reason,
                                    ..event.take().unwrap_or_else(|| GuardEvent {
                                        blocked: true,
                                        method: ev.request.method.clone(),
                                        url: ev.request.url.clone(),
                                        resource_type: format!("{:?}", ev.resource_type),
                                        frame: ev.frame_id.inner().clone(),
                                        reason: String::new(),
                                        step: shared.step.load(Ordering::SeqCst),
                                        navigation: false,
                                        off_origin: false,
                                    })
                                });
                                cdp(
                                    timeout,
                                    "Fetch.failRequest",
                                    browser.execute(FailRequestParams::new(
                                        id,
                                        ErrorReason::BlockedByClient,
                                    )),
                                )
                                .await
                                .map(|_| ())
                            } else {
                                shared.approved_sent.store(true, Ordering::SeqCst);
                                cdp(
                                    timeout,
                                    "Fetch.continueRequest",
                                    browser.execute(ContinueRequestParams::new(id)),
                                )
                                .await
                                .map(|_| ())
                            }
                        }
                    };
                    if let Err(err) = result {
                        tracing::warn!(url = %ev.request.url, "answering a paused request failed: {err}");
                    }
                    if let Some(event) = event {
                        let _ = shared.events.send(event);
                    }
                });
            }
        });
        Ok(())
    }

    /// Prepares the guard for a new run in the same browser context (batch isolation): the
    /// submit window closed, nothing held or tripped, no step.
    pub fn begin_run(&self) {
        let s = &self.shared;
        if let Ok(mut w) = s.window.lock() {
            *w = Window::Closed;
        }
        if let Ok(mut t) = s.tripped.lock() {
            *t = None;
        }
        s.judged.send_replace(None);
        s.hold.store(false, Ordering::SeqCst);
        if let Ok(mut h) = s.held.lock() {
            h.clear();
        }
        s.approved_sent.store(false, Ordering::SeqCst);
        s.approved_withheld.store(false, Ordering::SeqCst);
        s.step.store(-1, Ordering::SeqCst);
        if let Ok(mut r) = s.recorded.lock() {
            r.clear();
        }
    }

    /// The responses recorded since the last call, in arrival order.
    pub fn take_recorded(&self) -> Vec<Exchange> {
        self.shared
            .recorded
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    /// Whether this run records responses at all.
    pub fn records(&self) -> bool {
        !self.shared.policy.record.responses.is_empty()
    }

    /// Records which step is running, so events can be attributed to it.
    pub fn set_step(&self, step: Option<usize>) {
        self.shared
            .step
            .store(step.map(|s| s as i64).unwrap_or(-1), Ordering::SeqCst);
    }

    /// The step index events are attributed to now (-1 before the first step).
    /// The WebSocket endpoints the channel allows (the only ones the page can connect to).
    pub(super) fn websocket_allow(&self) -> &[String] {
        &self.shared.policy.websocket_allow
    }

    pub(super) fn step(&self) -> i64 {
        self.shared.step.load(Ordering::SeqCst)
    }

    /// Records an event the guard did not decide itself (WebSocket traffic seen on a page).
    pub(super) fn record(&self, event: GuardEvent) {
        let _ = self.shared.events.send(event);
    }

    /// Allows exactly one write matching `write`; the first matching request consumes it.
    /// Any other write while armed is failed and trips the window.
    pub fn arm(&self, write: ArmedWrite) {
        if let Ok(mut w) = self.shared.window.lock() {
            *w = Window::Armed(write);
        }
    }

    /// Opens a submit window whose first write to `endpoint` (method and URL without query)
    /// is given to `judge` (in arrival order, before it is answered): `Ok` → that write is
    /// sent, exactly once; `Err(why)` → it is failed, the window closes and `why` is
    /// recorded. A further write to the endpoint while the window is open is failed and trips
    /// it; writes elsewhere are failed and recorded without touching the window. Returns at
    /// once; [`Guard::wait_judged`] waits for the verdict. The judge must not call back into
    /// the guard.
    pub fn arm_judged(&self, endpoint: ArmedWrite, judge: Judge) {
        self.shared.judged.send_replace(None);
        self.shared.approved_sent.store(false, Ordering::SeqCst);
        self.shared.approved_withheld.store(false, Ordering::SeqCst);
        if let Ok(mut w) = self.shared.window.lock() {
            *w = Window::Judging(endpoint, judge);
        }
    }

    /// Waits until the write of a [`Guard::arm_judged`] window has been judged, or `timeout`
    /// passes (`None`).
    pub async fn wait_judged(&self, timeout: Duration) -> Option<Judgement> {
        let mut rx = self.shared.judged.subscribe();
        let done = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        match done {
            Ok(Ok(v)) => v.clone(),
            _ => None,
        }
    }

    /// True once a write to the armed endpoint has been judged (either way).
    pub fn judged_now(&self) -> bool {
        self.shared.judged.borrow().is_some()
    }

    /// True while writes are held and at least one is waiting to be taken.
    pub fn has_held(&self) -> bool {
        self.shared
            .held
            .lock()
            .map(|h| !h.is_empty())
            .unwrap_or(false)
    }

    /// Whether the judged write has been answered: `Some(true)` sent, `Some(false)` withheld
    /// (another write came while it was held), `None` not yet (or never judged Ok).
    pub fn approved_outcome(&self) -> Option<bool> {
        if self.shared.approved_sent.load(Ordering::SeqCst) {
            Some(true)
        } else if self.shared.approved_withheld.load(Ordering::SeqCst) {
            Some(false)
        } else {
            None
        }
    }

    /// The write that closed the submit window, if one did (a write that was not the
    /// approved one, one the judge refused, or a second write).
    pub fn tripped(&self) -> Option<String> {
        self.shared.tripped.lock().ok().and_then(|t| t.clone())
    }

    /// Closes the submit window; returns true if it was open and no write had used it.
    pub fn disarm(&self) -> bool {
        self.shared
            .window
            .lock()
            .map(|mut w| {
                let unused = matches!(*w, Window::Armed(_) | Window::Judging(..));
                *w = Window::Closed;
                unused
            })
            .unwrap_or(false)
    }

    /// Drafts: while on, every write the guard fails for being a write (not a read-only
    /// exception, not the write of an open submit window) is also kept for review.
    pub fn hold_writes(&self, on: bool) {
        self.shared.hold.store(on, Ordering::SeqCst);
    }

    /// The writes kept since the last call, in arrival order.
    pub fn take_held(&self) -> Vec<HeldWrite> {
        self.shared
            .held
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default()
    }

    /// How long since the last request was paused.
    pub fn quiet_for(&self) -> Duration {
        let last = self.shared.last_request_ms.load(Ordering::SeqCst);
        let now = self.shared.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(last))
    }

    /// How many main-frame navigations the guard has failed so far.
    pub fn main_navigations_blocked(&self) -> u64 {
        self.shared.main_navigations_blocked.load(Ordering::SeqCst)
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

/// A request header, by case-insensitive name.
fn header(ev: &EventRequestPaused, name: &str) -> Option<String> {
    ev.request
        .headers
        .inner()
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str().map(str::to_owned))
}

/// The request body as Chromium exposes it: (bytes, complete).
fn body_of(ev: &EventRequestPaused) -> (Option<Vec<u8>>, bool) {
    let Some(entries) = ev.request.post_data_entries.as_ref() else {
        // A body Chromium did not hand over at all.
        return (None, !ev.request.has_post_data.unwrap_or(false));
    };
    let mut bytes = Vec::new();
    let mut complete = true;
    for e in entries {
        match e
            .bytes
            .as_ref()
            .map(|b| base64::engine::general_purpose::STANDARD.decode(AsRef::<str>::as_ref(b)))
        {
            Some(Ok(b)) => bytes.extend_from_slice(&b),
            // A file-backed part (no bytes) or undecodable data.
            Some(Err(_)) | None => complete = false,
        }
    }
    (Some(bytes), complete)
}

fn held_write(ev: &EventRequestPaused, method: &str, url: &str) -> HeldWrite {
    let (body, body_complete) = body_of(ev);
    HeldWrite {
        method: method.to_owned(),
        url: url.to_owned(),
        content_type: header(ev, "content-type"),
        body,
        body_complete,
        resource_type: resource_type_name(&ev.resource_type),
        frame: ev.frame_id.inner().clone(),
    }
}

fn resource_type_name(t: &ResourceType) -> String {
    format!("{t:?}")
}

/// Is `frame` the main frame of a page (or popup) target?
fn is_main_frame(shared: &Shared, frame: &str) -> bool {
    shared
        .targets
        .lock()
        .map(|t| t.get(frame).map(|e| e.kind.as_str()) == Some("page"))
        .unwrap_or(false)
}

/// Offline replay: whatever would reach the network is answered from the recording (or
/// failed, and recorded as blocked, when the recording has no response for it). Decisions
/// that fail a request stand; `data:`/`blob:`/`about:` requests never reach the network.
fn serve_offline(
    shared: &Shared,
    recording: &Recording,
    ev: &EventRequestPaused,
    answer: Answer,
    event: Option<GuardEvent>,
) -> (Answer, Option<GuardEvent>) {
    if !matches!(answer, Answer::Continue | Answer::ContinueUnlessTripped) {
        return (answer, event);
    }
    let networked = Url::parse(&ev.request.url)
        .map(|u| matches!(u.scheme(), "http" | "https"))
        .unwrap_or(false);
    if !networked {
        return (answer, event);
    }
    let method = ev.request.method.to_ascii_uppercase();
    match recording.next(&method, &ev.request.url) {
        // A write the guard would have let out (a read-only exception) is answered too:
        // its record says it never left.
        Some(response) => (
            Answer::Fulfill(response),
            event.map(|e| GuardEvent {
                reason: format!(
                    "{} (offline replay: answered from the recording, not sent)",
                    e.reason
                ),
                ..e
            }),
        ),
        None => {
            let reason = format!(
                "offline replay: the recording holds no response to {method} {} (nothing was sent to the seller center)",
                ev.request.url
            );
            let e = GuardEvent {
                blocked: true,
                method,
                url: ev.request.url.clone() + ev.request.url_fragment.as_deref().unwrap_or(""),
                resource_type: resource_type_name(&ev.resource_type),
                frame: ev.frame_id.inner().clone(),
                reason,
                step: shared.step.load(Ordering::SeqCst),
                navigation: ev.resource_type == ResourceType::Document,
                off_origin: false,
            };
            (Answer::Fail(ErrorReason::InternetDisconnected), Some(e))
        }
    }
}

/// The fulfilment of a request from the recording: its status, headers and body, with the
/// guard's containment headers on documents and worker scripts as when it was let in live.
fn offline_params(
    shared: &Shared,
    ev: &EventRequestPaused,
    response: &RecordedResponse,
) -> FulfillRequestParams {
    let mut headers: Vec<HeaderEntry> = response
        .headers
        .iter()
        .filter(|(name, value)| {
            !containment::dropped_on_fulfill(name) && value != crate::evidence::warc::REDACTED
        })
        .map(|(name, value)| HeaderEntry::new(name.clone(), value.clone()))
        .collect();
    if let Ok(url) = Url::parse(&ev.request.url) {
        if ev.resource_type == ResourceType::Document {
            headers.push(HeaderEntry::new(
                "Content-Security-Policy",
                containment::csp_for(&shared.connect_sources, &url),
            ));
            headers.push(HeaderEntry::new(
                "Connection-Allowlist",
                containment::CONNECTION_ALLOWLIST,
            ));
        } else if ev.resource_type == ResourceType::Other {
            headers.push(HeaderEntry::new(
                "Content-Security-Policy",
                containment::csp_for(&shared.connect_sources, &url),
            ));
        }
    }
    let mut params = FulfillRequestParams::new(ev.request_id.clone(), i64::from(response.status));
    params.response_headers = Some(headers);
    params.body = Some(
        base64::engine::general_purpose::STANDARD
            .encode(&response.body)
            .into(),
    );
    params.response_phrase = Some(response.status_text.clone()).filter(|s| !s.is_empty());
    params
}

/// How a blocked request is failed: see the module docs for why navigations differ.
fn fail_reason(shared: &Shared, ev: &EventRequestPaused) -> ErrorReason {
    if ev.resource_type == ResourceType::Document {
        if is_main_frame(shared, ev.frame_id.inner()) {
            // The current document stays; no error page is captured as evidence.
            shared
                .main_navigations_blocked
                .fetch_add(1, Ordering::SeqCst);
            ErrorReason::Aborted
        } else {
            // The frame commits an error page and finishes loading, so nothing that waits
            // for the page's frames to load is left waiting.
            ErrorReason::BlockedByClient
        }
    } else {
        ErrorReason::BlockedByClient
    }
}

/// Decides on one paused request (request stage). Returns how to answer and the event to
/// record (None for ordinary reads).
fn decide(shared: &Shared, ev: &EventRequestPaused) -> (Answer, Option<GuardEvent>) {
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
        resource_type: resource_type_name(&ev.resource_type),
        frame: ev.frame_id.inner().clone(),
        reason,
        step: shared.step.load(Ordering::SeqCst),
        navigation,
        off_origin: false,
    };
    let fail = Answer::Fail(fail_reason(shared, ev));
    let url = match Url::parse(&ev.request.url) {
        Ok(u) => u,
        Err(_) => {
            let e = GuardEvent {
                off_origin: true,
                ..mk(true, "unparsable URL".into())
            };
            return (fail, Some(e));
        }
    };
    // Requests that never reach the network (data:, blob:) carry nothing out.
    if matches!(url.scheme(), "data" | "blob" | "about") {
        return (Answer::Continue, None);
    }
    let is_report = ev.resource_type == ResourceType::CspViolationReport;
    if is_report && url.path() == REPORT_PATH {
        return (fail, Some(violation_event(shared, ev)));
    }
    let origin = url.origin().ascii_serialization();
    if !shared.policy.allowed_origins.contains(&origin) {
        let e = GuardEvent {
            off_origin: true,
            ..mk(
                true,
                format!("origin {origin} is not in the channel's allowed origins"),
            )
        };
        return (fail, Some(e));
    }
    if !shared.policy.service_workers
        && header(ev, "service-worker").is_some_and(|v| v.eq_ignore_ascii_case("script"))
    {
        return (
            fail,
            Some(mk(
                true,
                "service worker registration blocked: the channel does not allow service workers"
                    .into(),
            )),
        );
    }
    // The emergency pause: nothing but GET and HEAD leaves, whatever window is open. Reads
    // outside the allowed origins were failed above, paused or not.
    if shared.policy.pause.is_on() && !matches!(method.as_str(), "GET" | "HEAD") {
        let window_open = shared
            .window
            .lock()
            .map(|w| !matches!(*w, Window::Closed))
            .unwrap_or(true);
        if window_open {
            // The submit is over: nothing it sends now may go out.
            trip(
                shared,
                format!("{method} {}: {PAUSED}", without_query(&url)),
            );
        }
        return (fail, Some(mk(true, PAUSED.into())));
    }
    if is_read(&method) {
        return (Answer::Continue, None);
    }
    if is_report {
        // The site's own CSP report: a write of the browser's, never a candidate for the
        // submit window or for review.
        return (
            fail,
            Some(mk(
                true,
                "content security policy report of the site (not sent)".into(),
            )),
        );
    }
    let bare = without_query(&url);
    if let Ok(mut window) = shared.window.lock() {
        match std::mem::replace(&mut *window, Window::Closed) {
            Window::Closed => {}
            Window::Armed(a) => {
                if a.method == method && a.url == bare {
                    return (Answer::Continue, Some(mk(false, APPROVED_SUBMIT.into())));
                }
                // Any other write while the window is open closes it: the page is sending
                // something nobody reviewed, so nothing is sent at all.
                trip(shared, format!("{method} {bare}"));
                return (
                    fail,
                    Some(mk(
                        true,
                        format!(
                        "{method} {bare} is not the approved write; the submit window is closed"
                    ),
                    )),
                );
            }
            Window::Judging(endpoint, judge) => {
                if endpoint.method != method || endpoint.url != bare {
                    *window = Window::Judging(endpoint, judge);
                    return (
                        fail,
                        Some(mk(
                            true,
                            format!(
                                "{method} {bare} is not the approved endpoint (blocked during the submit)"
                            ),
                        )),
                    );
                }
                let write = held_write(ev, &method, &raw_url);
                *window = Window::Judged(format!("{method} {bare}"));
                return match judge(&write) {
                    Ok(()) => {
                        shared.judged.send_replace(Some(Ok(write)));
                        (
                            Answer::ContinueUnlessTripped,
                            Some(mk(
                                false,
                                format!("{APPROVED_SUBMIT} (equal to the approved write)"),
                            )),
                        )
                    }
                    Err(why) => {
                        trip(shared, format!("{method} {bare}: {why}"));
                        let reason = format!(
                            "{method} {bare} is not the approved write: {why}; the submit window is closed"
                        );
                        shared.judged.send_replace(Some(Err((write, why))));
                        (fail, Some(mk(true, reason)))
                    }
                };
            }
            Window::Judged(approved) => {
                let this = format!("{method} {bare}");
                let same_endpoint = this == approved;
                *window = Window::Judged(approved);
                if !same_endpoint {
                    // An unrelated write (an autosave, an analytics call) is not sent, and
                    // does not cancel the approved write, which reviewers saw alone.
                    return (
                        fail,
                        Some(mk(
                            true,
                            format!("{this} is not the approved write (blocked during the submit)"),
                        )),
                    );
                }
                trip(shared, this.clone());
                return (
                    fail,
                    Some(mk(
                        true,
                        format!(
                            "{this} is a second write to the approved endpoint during the submit; the submit window is closed"
                        ),
                    )),
                );
            }
        }
    }
    if shared
        .policy
        .read_only_exceptions
        .iter()
        .any(|e| e.method.eq_ignore_ascii_case(&method) && e.url == bare)
    {
        return (
            Answer::Continue,
            Some(mk(false, "channel read-only exception".into())),
        );
    }
    if shared.hold.load(Ordering::SeqCst) {
        let write = held_write(ev, &method, &raw_url);
        if let Ok(mut held) = shared.held.lock() {
            held.push(write);
        }
        return (
            fail,
            Some(mk(
                true,
                format!("{method} is a write: held for review, not sent"),
            )),
        );
    }
    (
        fail,
        Some(mk(
            true,
            format!("{method} is a write and no approved submit allows it"),
        )),
    )
}

/// Closes the window for good; the first reason is kept.
fn trip(shared: &Shared, what: String) {
    if let Ok(mut t) = shared.tripped.lock() {
        t.get_or_insert(what);
    }
}

/// The event for one of the guard's own CSP reports: what Chromium refused, and where.
fn violation_event(shared: &Shared, ev: &EventRequestPaused) -> GuardEvent {
    let (body, _) = body_of(ev);
    let v = body.as_deref().and_then(containment::parse_report);
    let step = shared.step.load(Ordering::SeqCst);
    let frame = ev.frame_id.inner().clone();
    let Some(v) = v else {
        return GuardEvent {
            blocked: true,
            method: "CONNECT".into(),
            url: String::new(),
            resource_type: "Other".into(),
            frame,
            reason: "a connection was refused by the guard's content security policy (unreadable report)".into(),
            step,
            navigation: false,
            off_origin: false,
        };
    };
    let target = Url::parse(&v.blocked).ok();
    let websocket = target
        .as_ref()
        .is_some_and(|u| matches!(u.scheme(), "ws" | "wss"));
    // Is it a connection to an allowed origin (as `ws:` is to `http:`)?
    let off_origin = !target
        .map(|mut u| {
            let scheme = match u.scheme() {
                "ws" => "http",
                "wss" => "https",
                s => s,
            }
            .to_owned();
            let _ = u.set_scheme(&scheme);
            shared
                .policy
                .allowed_origins
                .contains(&u.origin().ascii_serialization())
        })
        .unwrap_or(false);
    let from = match &v.source {
        Some(s) => format!("{} ({s})", v.document),
        None => v.document.clone(),
    };
    let (method, resource_type, reason) = if websocket {
        (
            "WEBSOCKET",
            "WebSocket",
            format!(
                "websocket {} blocked: the channel allows no WebSocket to it (guard's content security policy, connect-src); opened by {from}",
                v.blocked
            ),
        )
    } else {
        (
            "CONNECT",
            "Other",
            format!(
                "connection to {} blocked by the guard's content security policy (connect-src: fetch, XHR, beacon, EventSource or WebTransport); opened by {from}",
                v.blocked
            ),
        )
    };
    GuardEvent {
        blocked: true,
        method: method.into(),
        url: v.blocked,
        resource_type: resource_type.into(),
        frame,
        reason,
        step,
        navigation: false,
        off_origin,
    }
}

/// Answers a request paused at the response stage: documents get the guard's headers (by
/// fulfilling them), worker scripts get its CSP, everything is answered exactly once.
async fn answer_response(
    browser: &chromiumoxide::Browser,
    shared: &Shared,
    ev: &EventRequestPaused,
    timeout: Duration,
) {
    let id = ev.request_id.clone();
    let result = if let Some(reason) = ev.response_error_reason.clone() {
        cdp(
            timeout,
            "Fetch.failRequest",
            browser.execute(FailRequestParams::new(id, reason)),
        )
        .await
        .map(|_| ())
    } else {
        let status = ev.response_status_code.unwrap_or(200);
        let headers = ev.response_headers.clone().unwrap_or_default();
        let has_location = headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("location"));
        let url = Url::parse(&ev.request.url).ok();
        let no_document =
            matches!(status, 204 | 205 | 304) || ((300..400).contains(&status) && has_location);
        match url {
            // Nothing is rendered from these (or the URL is not one we can name a report
            // origin for): pass them on untouched.
            None => plain_continue(browser, ev, timeout).await,
            Some(_) if no_document => plain_continue(browser, ev, timeout).await,
            Some(url) if ev.resource_type == ResourceType::Document => {
                fulfill_document(browser, shared, ev, &url, status, headers, timeout).await
            }
            Some(_)
                if !matches!(
                    ev.resource_type,
                    ResourceType::Xhr | ResourceType::Fetch | ResourceType::Other
                ) =>
            {
                // A subresource (only paused when the browser records them for samples).
                if shared.policy.record.everything {
                    fulfill_recorded(browser, shared, ev, status, headers, timeout).await
                } else {
                    plain_continue(browser, ev, timeout).await
                }
            }
            Some(_) if matches!(ev.resource_type, ResourceType::Xhr | ResourceType::Fetch) => {
                if shared.policy.record.wants(&ev.request.url, false) {
                    fulfill_recorded(browser, shared, ev, status, headers, timeout).await
                } else {
                    plain_continue(browser, ev, timeout).await
                }
            }
            Some(url) => {
                let mut headers = headers;
                headers.push(HeaderEntry::new(
                    "Content-Security-Policy",
                    containment::csp_for(&shared.connect_sources, &url),
                ));
                let params = ContinueResponseParams::builder()
                    .request_id(id)
                    .response_code(status)
                    .response_headers(headers)
                    .build()
                    .map_err(|e| BrowserError::Page(e.to_string()));
                match params {
                    Ok(p) => cdp(timeout, "Fetch.continueResponse", browser.execute(p))
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                }
            }
        }
    };
    if let Err(err) = result {
        tracing::warn!(url = %ev.request.url, "answering a paused response failed: {err}");
    }
}

async fn plain_continue(
    browser: &chromiumoxide::Browser,
    ev: &EventRequestPaused,
    timeout: Duration,
) -> Result<(), BrowserError> {
    cdp(
        timeout,
        "Fetch.continueResponse",
        browser.execute(ContinueResponseParams::new(ev.request_id.clone())),
    )
    .await
    .map(|_| ())
}

/// Reads a paused response's whole body through `Fetch.takeResponseBodyAsStream` and
/// `IO.read` (after which the request must be fulfilled or failed, never continued).
async fn take_body(
    browser: &chromiumoxide::Browser,
    ev: &EventRequestPaused,
    timeout: Duration,
) -> Result<Vec<u8>, BrowserError> {
    let stream = cdp(
        timeout,
        "Fetch.takeResponseBodyAsStream",
        browser.execute(TakeResponseBodyAsStreamParams::new(ev.request_id.clone())),
    )
    .await?
    .result
    .stream;
    let mut out = Vec::new();
    let read = async {
        loop {
            let mut params = ReadParams::new(stream.clone());
            params.size = Some(1 << 20);
            let chunk = cdp(timeout, "IO.read", browser.execute(params))
                .await?
                .result
                .clone();
            if chunk.base64_encoded == Some(true) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(chunk.data.as_bytes())
                    .map_err(|e| BrowserError::Page(format!("IO.read returned bad base64: {e}")))?;
                out.extend_from_slice(&bytes);
            } else {
                out.extend_from_slice(chunk.data.as_bytes());
            }
            if out.len() > MAX_BUFFERED_BODY {
                return Err(BrowserError::Page(format!(
                    "the body is larger than {MAX_BUFFERED_BODY} bytes"
                )));
            }
            if chunk.eof {
                return Ok(());
            }
        }
    };
    let result = read.await;
    let _ = cdp(
        timeout,
        "IO.close",
        browser.execute(CloseParams::new(stream)),
    )
    .await;
    result.map(|()| out)
}

/// A paused response's body in one `Fetch.getResponseBody` (documents nobody records).
async fn get_body(
    browser: &chromiumoxide::Browser,
    ev: &EventRequestPaused,
    timeout: Duration,
) -> Result<Vec<u8>, BrowserError> {
    let body = cdp(
        timeout,
        "Fetch.getResponseBody",
        browser.execute(GetResponseBodyParams::new(ev.request_id.clone())),
    )
    .await?;
    if body.result.base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(body.result.body.as_bytes())
            .map_err(|e| {
                BrowserError::Page(format!("Fetch.getResponseBody returned bad base64: {e}"))
            })
    } else {
        Ok(body.result.body.clone().into_bytes())
    }
}

/// Keeps the exchange for the run (the body cut at the channel's cap).
fn keep(
    shared: &Shared,
    ev: &EventRequestPaused,
    status: i64,
    headers: &[HeaderEntry],
    body: &[u8],
) {
    let cap = shared.policy.record.max_bytes.max(1);
    let kept = &body[..body.len().min(cap as usize)];
    let request_headers = ev
        .request
        .headers
        .inner()
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let exchange = Exchange {
        method: ev.request.method.to_ascii_uppercase(),
        url: ev.request.url.clone(),
        request_headers,
        request_body: body_of(ev).0.unwrap_or_default(),
        status: u16::try_from(status).unwrap_or(0),
        status_text: ev.response_status_text.clone().unwrap_or_default(),
        response_headers: headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        body: kept.to_vec(),
        full_bytes: body.len() as u64,
        cap,
        resource_type: resource_type_name(&ev.resource_type),
        received_at: chrono::Utc::now(),
        step: shared.step.load(Ordering::SeqCst),
    };
    if let Ok(mut r) = shared.recorded.lock() {
        r.push(exchange);
    }
}

/// Fails a response whose body could not be read, recording why.
async fn fail_unread(
    browser: &chromiumoxide::Browser,
    shared: &Shared,
    ev: &EventRequestPaused,
    why: String,
    navigation: bool,
    timeout: Duration,
) -> Result<(), BrowserError> {
    let _ = shared.events.send(GuardEvent {
        blocked: true,
        method: ev.request.method.to_ascii_uppercase(),
        url: ev.request.url.clone(),
        resource_type: resource_type_name(&ev.resource_type),
        frame: ev.frame_id.inner().clone(),
        reason: why,
        step: shared.step.load(Ordering::SeqCst),
        navigation,
        off_origin: false,
    });
    cdp(
        timeout,
        "Fetch.failRequest",
        browser.execute(FailRequestParams::new(
            ev.request_id.clone(),
            fail_reason(shared, ev),
        )),
    )
    .await
    .map(|_| ())
}

fn fulfill_params(
    ev: &EventRequestPaused,
    status: i64,
    headers: Vec<HeaderEntry>,
    body: &[u8],
) -> FulfillRequestParams {
    let mut params = FulfillRequestParams::new(ev.request_id.clone(), status);
    params.response_headers = Some(headers);
    params.body = Some(
        base64::engine::general_purpose::STANDARD
            .encode(body)
            .into(),
    );
    params.response_phrase = ev.response_status_text.clone().filter(|s| !s.is_empty());
    params
}

/// Records a data endpoint's response and hands the same bytes to the page.
async fn fulfill_recorded(
    browser: &chromiumoxide::Browser,
    shared: &Shared,
    ev: &EventRequestPaused,
    status: i64,
    headers: Vec<HeaderEntry>,
    timeout: Duration,
) -> Result<(), BrowserError> {
    let body = match take_body(browser, ev, timeout).await {
        Ok(b) => b,
        Err(e) => {
            let why = format!("response not let in: clerk could not read it to record it ({e})");
            return fail_unread(browser, shared, ev, why, false, timeout).await;
        }
    };
    keep(shared, ev, status, &headers, &body);
    let out: Vec<HeaderEntry> = headers
        .into_iter()
        .filter(|h| !containment::dropped_on_fulfill(&h.name))
        .collect();
    cdp(
        timeout,
        "Fetch.fulfillRequest",
        browser.execute(fulfill_params(ev, status, out, &body)),
    )
    .await
    .map(|_| ())
}

/// Re-delivers a document with the guard's headers (recording it when the channel records
/// documents). If its body cannot be read, the document is failed rather than let in
/// without them.
async fn fulfill_document(
    browser: &chromiumoxide::Browser,
    shared: &Shared,
    ev: &EventRequestPaused,
    url: &Url,
    status: i64,
    headers: Vec<HeaderEntry>,
    timeout: Duration,
) -> Result<(), BrowserError> {
    let record = shared.policy.record.wants(&ev.request.url, true);
    let body = if record {
        take_body(browser, ev, timeout).await
    } else {
        get_body(browser, ev, timeout).await
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let why = format!(
                "document not let in: the guard could not add its connection policy to it ({e})"
            );
            return fail_unread(browser, shared, ev, why, true, timeout).await;
        }
    };
    if record {
        keep(shared, ev, status, &headers, &body);
    }
    let mut out: Vec<HeaderEntry> = headers
        .into_iter()
        .filter(|h| !containment::dropped_on_fulfill(&h.name))
        .collect();
    out.push(HeaderEntry::new(
        "Content-Security-Policy",
        containment::csp_for(&shared.connect_sources, url),
    ));
    out.push(HeaderEntry::new(
        "Connection-Allowlist",
        containment::CONNECTION_ALLOWLIST,
    ));
    cdp(
        timeout,
        "Fetch.fulfillRequest",
        browser.execute(fulfill_params(ev, status, out, &body)),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::targets::TargetEntry;
    use serde_json::{json, Value};

    fn shared(policy: Policy) -> Shared {
        Shared::new(
            policy,
            String::new(),
            Arc::new(Mutex::new(
                [(
                    "MAIN".to_owned(),
                    TargetEntry {
                        kind: "page".into(),
                        context: Some("C".into()),
                    },
                )]
                .into(),
            )),
            mpsc::unbounded_channel().0,
        )
    }

    fn policy() -> Policy {
        Policy {
            allowed_origins: vec!["http://a.test".into()],
            ..Policy::default()
        }
    }

    fn paused(
        method: &str,
        url: &str,
        kind: &str,
        frame: &str,
        extra: Value,
    ) -> EventRequestPaused {
        let mut request = json!({
            "url": url, "method": method, "headers": {},
            "initialPriority": "High", "referrerPolicy": "no-referrer",
        });
        if let (Some(r), Some(e)) = (request.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        serde_json::from_value(json!({
            "requestId": "r1", "request": request, "frameId": frame, "resourceType": kind,
        }))
        .unwrap()
    }

    fn post(body: &str) -> EventRequestPaused {
        let b64 = base64::engine::general_purpose::STANDARD.encode(body);
        paused(
            "POST",
            "http://a.test/api/refunds?x=1",
            "Fetch",
            "MAIN",
            json!({"headers": {"content-type": "application/json", "Cookie": "s=1"},
                   "hasPostData": true, "postDataEntries": [{"bytes": b64}]}),
        )
    }

    fn endpoint() -> ArmedWrite {
        ArmedWrite {
            method: "POST".into(),
            url: "http://a.test/api/refunds".into(),
        }
    }

    #[test]
    fn an_unrelated_write_before_the_submit_is_blocked_and_the_submit_still_judged() {
        let s = shared(policy());
        *s.window.lock().unwrap() = Window::Judging(endpoint(), Box::new(|_: &HeldWrite| Ok(())));
        let autosave = paused(
            "POST",
            "http://a.test/api/refunds/autosave",
            "Fetch",
            "MAIN",
            json!({"headers": {}, "hasPostData": false}),
        );
        let (answer, event) = decide(&s, &autosave);
        assert_eq!(answer, Answer::Fail(ErrorReason::BlockedByClient));
        assert!(event.unwrap().reason.contains("not the approved endpoint"));
        assert!(s.judged.borrow().is_none(), "the autosave was not judged");
        assert_eq!(s.tripped.lock().unwrap().clone(), None);
        assert_eq!(decide(&s, &post("ok")).0, Answer::ContinueUnlessTripped);
        assert!(matches!(*s.judged.borrow(), Some(Ok(_))));
    }

    #[test]
    fn draft_holds_the_write_without_headers() {
        let s = shared(policy());
        s.hold.store(true, Ordering::SeqCst);
        let (answer, event) = decide(&s, &post(r#"{"a":1}"#));
        assert_eq!(answer, Answer::Fail(ErrorReason::BlockedByClient));
        assert!(event.unwrap().reason.contains("held for review"));
        let held = s.held.lock().unwrap().clone();
        assert_eq!(
            held,
            vec![HeldWrite {
                method: "POST".into(),
                url: "http://a.test/api/refunds?x=1".into(),
                content_type: Some("application/json".into()),
                body: Some(br#"{"a":1}"#.to_vec()),
                body_complete: true,
                resource_type: "Fetch".into(),
                frame: "MAIN".into(),
            }]
        );
    }

    #[test]
    fn a_file_part_without_bytes_makes_the_body_incomplete() {
        let ev = paused(
            "POST",
            "http://a.test/upload",
            "Document",
            "MAIN",
            json!({"hasPostData": true, "postDataEntries": [{"bytes": "YQ=="}, {}]}),
        );
        assert_eq!(body_of(&ev), (Some(b"a".to_vec()), false));
        let ev = paused(
            "POST",
            "http://a.test/upload",
            "Document",
            "MAIN",
            json!({"hasPostData": true}),
        );
        assert_eq!(body_of(&ev), (None, false));
    }

    #[test]
    fn judged_window_sends_once_then_trips() {
        let s = shared(policy());
        *s.window.lock().unwrap() = Window::Judging(
            endpoint(),
            Box::new(|w: &HeldWrite| {
                if w.body.as_deref() == Some(b"ok".as_slice()) {
                    Ok(())
                } else {
                    Err("differs".into())
                }
            }),
        );
        assert_eq!(decide(&s, &post("ok")).0, Answer::ContinueUnlessTripped);
        assert!(matches!(*s.judged.borrow(), Some(Ok(_))));
        assert_eq!(s.tripped.lock().unwrap().clone(), None);
        let (answer, event) = decide(&s, &post("ok"));
        assert_eq!(answer, Answer::Fail(ErrorReason::BlockedByClient));
        assert!(event.unwrap().reason.contains("second write"));
        assert!(s.tripped.lock().unwrap().is_some());
    }

    #[test]
    fn an_unrelated_write_after_the_judged_one_is_blocked_without_tripping() {
        let s = shared(policy());
        *s.window.lock().unwrap() = Window::Judging(endpoint(), Box::new(|_: &HeldWrite| Ok(())));
        assert_eq!(decide(&s, &post("ok")).0, Answer::ContinueUnlessTripped);
        let autosave = paused(
            "POST",
            "http://a.test/api/autosave",
            "Fetch",
            "MAIN",
            json!({"headers": {}, "hasPostData": false}),
        );
        let (answer, event) = decide(&s, &autosave);
        assert_eq!(answer, Answer::Fail(ErrorReason::BlockedByClient));
        assert!(event.unwrap().reason.contains("not the approved write"));
        assert_eq!(
            s.tripped.lock().unwrap().clone(),
            None,
            "the approved write stands"
        );
        // The same endpoint again is a double submit: it trips.
        decide(&s, &post("ok"));
        assert!(s.tripped.lock().unwrap().is_some());
    }

    #[test]
    fn refused_judgement_fails_and_closes() {
        let s = shared(policy());
        *s.window.lock().unwrap() =
            Window::Judging(endpoint(), Box::new(|_: &HeldWrite| Err("no".into())));
        assert_eq!(
            decide(&s, &post("x")).0,
            Answer::Fail(ErrorReason::BlockedByClient)
        );
        match &*s.judged.borrow() {
            Some(Err((w, why))) => {
                assert_eq!(why, "no");
                assert_eq!(w.body.as_deref(), Some(b"x".as_slice()));
            }
            other => panic!("{other:?}"),
        }
        assert!(s.tripped.lock().unwrap().is_some());
    }

    #[test]
    fn legacy_armed_write_is_consumed_once() {
        let s = shared(policy());
        *s.window.lock().unwrap() = Window::Armed(ArmedWrite {
            method: "POST".into(),
            url: "http://a.test/api/refunds".into(),
        });
        assert_eq!(decide(&s, &post("x")).0, Answer::Continue);
        // Consumed: the next write is an ordinary blocked write, not a trip.
        assert_eq!(
            decide(&s, &post("x")).0,
            Answer::Fail(ErrorReason::BlockedByClient)
        );
        assert_eq!(s.tripped.lock().unwrap().clone(), None);
    }

    #[test]
    fn blocked_navigations_abort_only_main_frames() {
        let s = shared(policy());
        let main = paused("POST", "http://a.test/f", "Document", "MAIN", json!({}));
        let sub = paused("POST", "http://a.test/f", "Document", "SUBFRAME", json!({}));
        assert_eq!(decide(&s, &main).0, Answer::Fail(ErrorReason::Aborted));
        assert_eq!(
            decide(&s, &sub).0,
            Answer::Fail(ErrorReason::BlockedByClient)
        );
    }

    #[test]
    fn service_worker_scripts_need_the_channel_s_consent() {
        let ev = paused(
            "GET",
            "http://a.test/sw.js",
            "Other",
            "SW",
            json!({"headers": {"Service-Worker": "script"}}),
        );
        let (answer, event) = decide(&shared(policy()), &ev);
        assert_eq!(answer, Answer::Fail(ErrorReason::BlockedByClient));
        assert!(event.unwrap().reason.contains("service worker"));
        let allowing = Policy {
            service_workers: true,
            ..policy()
        };
        assert_eq!(decide(&shared(allowing), &ev), (Answer::Continue, None));
    }

    #[test]
    fn csp_reports_become_websocket_events_and_never_trip() {
        let s = shared(policy());
        *s.window.lock().unwrap() = Window::Judging(endpoint(), Box::new(|_: &HeldWrite| Ok(())));
        let report =
            r#"{"csp-report":{"document-uri":"http://a.test/p","blocked-uri":"ws://a.test/ws?t"}}"#;
        let ev = paused(
            "POST",
            "http://a.test/__clerk/csp-report",
            "CSPViolationReport",
            "MAIN",
            json!({"hasPostData": true, "postDataEntries": [{"bytes": base64::engine::general_purpose::STANDARD.encode(report)}]}),
        );
        let (answer, event) = decide(&s, &ev);
        assert_eq!(answer, Answer::Fail(ErrorReason::BlockedByClient));
        let e = event.unwrap();
        assert_eq!(
            (e.method.as_str(), e.url.as_str()),
            ("WEBSOCKET", "ws://a.test/ws?t")
        );
        assert!(!e.off_origin);
        assert!(matches!(*s.window.lock().unwrap(), Window::Judging(..)));
    }

    #[test]
    fn a_pause_fails_every_write_at_once_and_closes_the_submit_window() {
        let global = Arc::new(AtomicBool::new(false));
        let channel = Arc::new(AtomicBool::new(false));
        let s = shared(Policy {
            read_only_exceptions: vec![ReadOnlyException {
                method: "POST".into(),
                url: "http://a.test/api/refunds".into(),
            }],
            pause: PauseSwitch::new(global.clone(), channel.clone()),
            ..policy()
        });
        // Before the pause the read-only exception lets the write through.
        assert_eq!(decide(&s, &post("a")).0, Answer::Continue);
        for flag in [&channel, &global] {
            flag.store(true, Ordering::SeqCst);
            let (answer, event) = decide(&s, &post("b"));
            assert_eq!(answer, Answer::Fail(ErrorReason::BlockedByClient));
            assert_eq!(event.unwrap().reason, PAUSED);
            // Reads of the channel still load; OPTIONS is not a read here.
            let get = paused("GET", "http://a.test/x", "Fetch", "MAIN", json!({}));
            assert_eq!(decide(&s, &get), (Answer::Continue, None));
            let options = paused("OPTIONS", "http://a.test/x", "Fetch", "MAIN", json!({}));
            assert_eq!(
                decide(&s, &options).0.clone(),
                Answer::Fail(ErrorReason::BlockedByClient)
            );
            // A request outside the allowed origins stays failed.
            let out = paused("GET", "http://outside.invalid/", "Fetch", "MAIN", json!({}));
            assert!(decide(&s, &out).1.unwrap().off_origin);
            flag.store(false, Ordering::SeqCst);
        }
        // The approved write of an open submit window is not sent either, and the window
        // trips so the submit is over.
        *s.window.lock().unwrap() = Window::Judging(endpoint(), Box::new(|_: &HeldWrite| Ok(())));
        channel.store(true, Ordering::SeqCst);
        let (answer, event) = decide(&s, &post("ok"));
        assert_eq!(answer, Answer::Fail(ErrorReason::BlockedByClient));
        assert_eq!(event.unwrap().reason, PAUSED);
        assert!(s.tripped.lock().unwrap().clone().unwrap().contains(PAUSED));
        assert!(s.judged.borrow().is_none(), "nothing was judged");
        // A draft's writes are failed, not held.
        s.hold.store(true, Ordering::SeqCst);
        assert_eq!(decide(&s, &post("c")).1.unwrap().reason, PAUSED);
        assert!(s.held.lock().unwrap().is_empty());
    }
}
