//! The browser: the only module that speaks CDP.
//!
//! A [`Chromium`] is one browser process with a fresh profile, a fixed viewport and device
//! scale, and the network [`guard`] installed on the browser target once. A [`Browser`] is
//! one run's browser context inside it (`Target.createBrowserContext`: its own cookies,
//! storage and cache, the channel's session loaded into it), with the run's guard and one
//! [`Tab`] that the runner drives. A [`Pool`] keeps Chromiums warm across runs, replaces
//! crashed ones and recycles old ones ([`pool`]). Every CDP call goes through [`cdp`], which
//! puts a timeout on it. Chromium is killed and reaped when the last handle to it goes,
//! whatever the exit path (see [`process`]).
//!
//! Targets (who is who, workers released from chromiumoxide's debugger wait, WebSocket
//! traffic on allowed sockets) are followed in [`targets`]; the headers that close the
//! channels Fetch cannot see are built in [`containment`].

mod containment;
mod guard;
pub mod offline;
mod pool;
mod process;
pub mod relay;
mod tab;
mod targets;

pub use guard::writes_settled;
pub use guard::{
    ArmedWrite, Guard, GuardEvent, HeldWrite, Judge, Judgement, PauseSwitch, Policy, RecordPolicy,
    APPROVED_SUBMIT, JUDGED_HOLD, PAUSED,
};
pub use pool::{Isolation, Pool, PoolConfig, PoolStats};
pub use process::{find_chromium, kill_all, ChromiumProcess};
pub use tab::{ElementRect, FieldValue, Find, Tab};

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::handler::HandlerConfig;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::channel::StorageState;
use guard::Registry;
use targets::{SocketRecorder, TargetEntry, Targets};

/// Errors of the browser layer.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("chromium not found: {0}")]
    NotFound(String),
    #[error("cannot launch chromium: {0}")]
    Launch(String),
    #[error("browser call `{what}` timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("browser call `{what}` failed: {message}")]
    Cdp { what: String, message: String },
    #[error("element not found: {selector} (after {after:?})")]
    ElementNotFound { selector: String, after: Duration },
    #[error("{0}")]
    Page(String),
    #[error("the page went to the login page {0}")]
    LoginPage(String),
    #[error("the browser is gone (its DevTools connection closed)")]
    Gone,
}

/// Runs one CDP call with a timeout, naming it in errors.
pub(crate) async fn cdp<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, BrowserError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BrowserError::Cdp {
            what: what.to_owned(),
            message: e.to_string(),
        }),
        Err(_) => Err(BrowserError::Timeout {
            what: what.to_owned(),
            after: timeout,
        }),
    }
}

/// How browsers are launched.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    pub executable: PathBuf,
    pub width: u32,
    pub height: u32,
    /// Timeout of every single CDP call.
    pub cdp_timeout: Duration,
    pub launch_timeout: Duration,
    /// Remote browsers (CDP endpoints) to connect to instead of launching `executable`:
    /// one Chromium per endpoint (see `channel::BrowserEndpoint`).
    pub remote: Vec<crate::channel::BrowserEndpoint>,
    /// Pause subresource responses too, so replay samples can keep them
    /// (`RecordPolicy::everything`); off by default (it costs a round trip per subresource).
    pub record_subresources: bool,
}

impl LaunchOptions {
    /// Defaults: auto-detected Chromium, 1280×800 at scale 1, 15 s per CDP call.
    pub fn detect() -> Result<LaunchOptions, BrowserError> {
        Ok(LaunchOptions {
            executable: find_chromium()?,
            width: 1280,
            height: 800,
            cdp_timeout: Duration::from_secs(15),
            launch_timeout: Duration::from_secs(30),
            remote: Vec::new(),
            record_subresources: false,
        })
    }

    /// Options for `remote` endpoints: no local Chromium is needed (the executable is
    /// detected if there is one, for runs that launch).
    pub fn for_remote(
        remote: Vec<crate::channel::BrowserEndpoint>,
    ) -> Result<LaunchOptions, BrowserError> {
        let mut opts = LaunchOptions::detect().unwrap_or(LaunchOptions {
            executable: PathBuf::new(),
            width: 1280,
            height: 800,
            cdp_timeout: Duration::from_secs(15),
            launch_timeout: Duration::from_secs(30),
            remote: Vec::new(),
            record_subresources: false,
        });
        if remote.is_empty() && opts.executable.as_os_str().is_empty() {
            return Err(find_chromium().err().unwrap_or(BrowserError::Launch(
                "no Chromium found and no [[browser]] endpoint configured".into(),
            )));
        }
        opts.remote = remote;
        Ok(opts)
    }

    /// The command-line switches clerk launches Chromium with (the user-data-dir aside).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--headless=new",
            "--remote-debugging-port=0",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-breakpad",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            // LocalNetworkAccessChecks: documents the guard re-delivers (to add its connection
            // policy) have no remote address, so Local Network Access would take them for
            // public pages and refuse their requests and WebSockets to a loopback or private
            // seller center. The guard's origin rules are stricter than LNA.
            "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,PaintHolding,LocalNetworkAccessChecks",
            // As Playwright launches it (the benchmark's peer), so that the same page gives
            // the same pixels: screenshots from a new surface, no paint holding, pages that
            // never count as backgrounded (several contexts render at once).
            "--enable-features=CDPScreenshotNewSurface",
            "--disable-background-timer-throttling",
            "--disable-backgrounding-occluded-windows",
            "--disable-renderer-backgrounding",
            "--disable-back-forward-cache",
            "--disable-ipc-flooding-protection",
            "--disable-hang-monitor",
            "--disable-field-trial-config",
            "--blink-settings=primaryHoverType=2,availableHoverTypes=2,primaryPointerType=4,availablePointerTypes=4",
            "--disable-gpu",
            // Tiles are rastered whole, never as a partial update over their previous
            // pixels: partial raster re-blends anti-aliased edges (rounded corners) over
            // what was there, so a page that changed while loading gave PNGs a colour level
            // or two apart run to run (measured: Playwright against itself, 1 vs 2 pages,
            // 16/20 identical without it, 20/20 with it).
            "--disable-partial-raster",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--metrics-recording-only",
            "--mute-audio",
            "--hide-scrollbars",
            "--password-store=basic",
            "--use-mock-keychain",
            "--force-color-profile=srgb",
            "--font-render-hinting=none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // No --window-size and no --force-device-scale-factor: the viewport and the scale
        // are emulated per page (as Playwright does), and a window of another size or a
        // forced scale changes how layers are rasterized.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Chromium refuses to run its sandbox as root.
            args.push("--no-sandbox".into());
        }
        args
    }
}

/// One Chromium process: the guard's interception, the targets it has, the contexts (runs)
/// living in it. Shared by the [`Browser`]s of its runs; killed and reaped when dropped.
pub struct Chromium {
    id: u64,
    cdp: Arc<chromiumoxide::Browser>,
    handler: tokio::task::JoinHandle<()>,
    /// The local process (none for a remote browser).
    process: Mutex<Option<ChromiumProcess>>,
    /// Its pid (0 for a remote browser).
    pid: i32,
    /// Which browser this is, as recorded with every run.
    identity: BrowserIdentity,
    /// The endpoint as configured (remote browsers; empty for a local one).
    endpoint_url: String,
    /// The dead-man relay every run context of a remote browser sends its traffic through
    /// (none for a local one, which dies with clerk).
    relay: Option<Arc<relay::Relay>>,
    registry: Registry,
    targets: Targets,
    /// Records WebSocket traffic on the sockets a channel allows, per run.
    sockets: SocketRecorder,
    /// Browser contexts opened so far.
    opened: AtomicU32,
    /// Runs served so far (a kept context's every run counts: batch isolation).
    runs: AtomicU32,
    /// Set when a CDP call of one of its runs timed out or the process is gone: no new run
    /// goes to it.
    broken: AtomicBool,
    /// Set when the DevTools connection closed.
    gone: Arc<AtomicBool>,
    opts: LaunchOptions,
}

static NEXT_CHROMIUM: AtomicU64 = AtomicU64::new(1);

pub use crate::evidence::BrowserIdentity;

/// The browser WebSocket of a CDP endpoint: a `ws://`/`wss://` URL as is; for
/// `http(s)://HOST:PORT`, the `webSocketDebuggerUrl` of its `/json/version`, with the
/// endpoint's host and port (Chromium names its own address, which a proxy or a container
/// hides) and the endpoint's query kept.
async fn websocket_url(endpoint: &str, timeout: Duration) -> Result<String, BrowserError> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| BrowserError::Launch(format!("bad endpoint: {e}")))?;
    if matches!(url.scheme(), "ws" | "wss") {
        return Ok(endpoint.to_owned());
    }
    let mut version = url.clone();
    version.set_path("/json/version");
    let fetched = tokio::task::spawn_blocking(move || {
        ureq::get(version.as_str())
            .timeout(timeout)
            .call()
            .map_err(|e| e.to_string())?
            .into_json::<serde_json::Value>()
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| BrowserError::Launch(e.to_string()))?
    .map_err(|e| BrowserError::Launch(format!("GET /json/version: {e}")))?;
    let ws = fetched["webSocketDebuggerUrl"].as_str().ok_or_else(|| {
        BrowserError::Launch("/json/version names no webSocketDebuggerUrl".into())
    })?;
    let mut ws = url::Url::parse(ws)
        .map_err(|e| BrowserError::Launch(format!("bad webSocketDebuggerUrl: {e}")))?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    ws.set_scheme(scheme)
        .map_err(|_| BrowserError::Launch("cannot set the WebSocket scheme".into()))?;
    ws.set_host(url.host_str())
        .map_err(|e| BrowserError::Launch(format!("bad host: {e}")))?;
    ws.set_port(url.port_or_known_default())
        .map_err(|_| BrowserError::Launch("cannot set the WebSocket port".into()))?;
    ws.set_query(url.query());
    Ok(ws.to_string())
}

impl Chromium {
    /// Launches Chromium (or, with remote endpoints in `opts`, connects to `endpoint`) and
    /// installs the guard on its browser target.
    pub async fn launch(opts: &LaunchOptions) -> Result<Arc<Chromium>, BrowserError> {
        let (process, ws) = {
            let exe = opts.executable.clone();
            let args = opts.args();
            let t = opts.launch_timeout;
            tokio::task::spawn_blocking(move || ChromiumProcess::spawn(&exe, &args, t))
                .await
                .map_err(|e| BrowserError::Launch(e.to_string()))??
        };
        let pid = process.pid();
        let chromium = Chromium::attach(opts, ws, Some(process), "local".to_owned(), None).await?;
        tracing::debug!(pid, "chromium launched");
        Ok(chromium)
    }

    /// Connects to a remote browser's CDP endpoint (`http://HOST:PORT`, whose
    /// `/json/version` names the WebSocket, or the `ws://` URL itself), with bounded tries
    /// and backoff, and installs the guard on its browser target as for a local one.
    pub async fn connect(
        opts: &LaunchOptions,
        remote: &crate::channel::BrowserEndpoint,
    ) -> Result<Arc<Chromium>, BrowserError> {
        let endpoint = remote.endpoint.as_str();
        let identity = crate::channel::endpoint_identity(endpoint);
        let plan = relay::RelayPlan::for_endpoint(
            endpoint,
            remote.relay.as_deref(),
            remote.relay_listen.as_deref(),
        )?;
        let deadline = tokio::time::Instant::now() + opts.launch_timeout;
        let mut wait = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            tries += 1;
            let attempt = async {
                let ws = websocket_url(endpoint, opts.cdp_timeout).await?;
                let relay = Arc::new(relay::Relay::start(plan.clone()).await?);
                Chromium::attach(
                    opts,
                    ws,
                    None,
                    identity.clone(),
                    Some((endpoint.to_owned(), relay)),
                )
                .await
            };
            match attempt.await {
                Ok(c) => {
                    tracing::debug!(endpoint = %identity, tries, "remote chromium connected");
                    return Ok(c);
                }
                Err(e) if tries < 5 && tokio::time::Instant::now() + wait < deadline => {
                    tracing::warn!(endpoint = %identity, "cannot reach the remote browser ({e}); trying again in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    return Err(BrowserError::Launch(format!(
                        "the remote browser {identity} cannot be reached after {tries} tries: {e}"
                    )))
                }
            }
        }
    }

    /// Connects to `ws` and sets everything up; `process` is the local process, if any.
    async fn attach(
        opts: &LaunchOptions,
        ws: String,
        process: Option<ChromiumProcess>,
        endpoint: String,
        remote: Option<(String, Arc<relay::Relay>)>,
    ) -> Result<Arc<Chromium>, BrowserError> {
        let (endpoint_url, relay) = match remote {
            Some((url, relay)) => (Some(url), Some(relay)),
            None => (None, None),
        };
        let config = HandlerConfig {
            viewport: Some(Viewport {
                width: opts.width,
                height: opts.height,
                device_scale_factor: Some(1.0),
                emulating_mobile: false,
                is_landscape: false,
                has_touch: false,
            }),
            request_timeout: opts.cdp_timeout,
            ..HandlerConfig::default()
        };
        let (cdp_browser, mut handler) = match cdp(
            opts.cdp_timeout,
            "connect to chromium",
            chromiumoxide::Browser::connect_with_config(ws, config),
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                return Err(BrowserError::Launch(match &process {
                    Some(p) => format!("{e}; chromium stderr:\n{}", p.stderr_tail()),
                    None => format!("{e} (remote browser {endpoint})"),
                }))
            }
        };
        // The handler must be polled for the browser's whole life. It yields an error only
        // when the connection breaks (Chromium died); it would then stay pending for good
        // and leave every call waiting for its timeout, so it is dropped at once: pending
        // calls fail, and waits see `gone`.
        let gone = Arc::new(AtomicBool::new(false));
        let handler = tokio::spawn({
            let gone = gone.clone();
            let relay = relay.clone();
            async move {
                while let Some(event) = handler.next().await {
                    if let Err(e) = event {
                        tracing::debug!("chromium connection lost: {e}");
                        break;
                    }
                }
                gone.store(true, Ordering::SeqCst);
                // Whatever Chromium releases now goes nowhere.
                if let Some(r) = relay {
                    r.shut();
                }
            }
        });
        let pid = process.as_ref().map(|p| p.pid()).unwrap_or(0);
        if process.is_some() {
            watch_exit(pid, gone.clone(), handler.abort_handle());
        }
        let cdp_browser = Arc::new(cdp_browser);
        let version = cdp(
            opts.cdp_timeout,
            "Browser.getVersion",
            cdp_browser.execute(
                chromiumoxide::cdp::browser_protocol::browser::GetVersionParams::default(),
            ),
        )
        .await;
        let (product, protocol) = match &version {
            Ok(v) => (v.result.product.clone(), v.result.protocol_version.clone()),
            Err(_) => (String::new(), String::new()),
        };
        let targets: Targets = Arc::new(Mutex::new(HashMap::new()));
        let registry = Registry::new(targets.clone());
        let sockets = SocketRecorder::new(registry.clone());
        let chromium = Arc::new(Chromium {
            id: NEXT_CHROMIUM.fetch_add(1, Ordering::SeqCst),
            cdp: cdp_browser.clone(),
            handler,
            process: Mutex::new(process),
            pid,
            identity: BrowserIdentity {
                endpoint,
                product,
                protocol,
            },
            endpoint_url: endpoint_url.unwrap_or_default(),
            relay,
            registry: registry.clone(),
            targets: targets.clone(),
            sockets: sockets.clone(),
            opened: AtomicU32::new(0),
            runs: AtomicU32::new(0),
            broken: AtomicBool::new(false),
            gone,
            opts: opts.clone(),
        });
        // Dropping `chromium` on an error below kills a local process (and drops the
        // connection to a remote one).
        version?;
        let t = opts.cdp_timeout;
        let sessions = targets::Sessions::default();
        targets::track(&cdp_browser, &targets, &sessions, t).await?;
        Guard::install(cdp_browser.clone(), registry, t, opts.record_subresources).await?;
        targets::record_child_sockets(&cdp_browser, &sockets, &sessions, t).await?;
        Ok(chromium)
    }

    /// Opens a new browser context for one run: the guard registered for it before any page
    /// exists, the session's cookies set in it, one tab.
    pub async fn open(
        self: &Arc<Self>,
        policy: Policy,
        session: Option<&StorageState>,
    ) -> Result<(Browser, Tab), BrowserError> {
        use chromiumoxide::cdp::browser_protocol::target::{
            CreateBrowserContextParams, CreateTargetParams,
        };
        let t = self.opts.cdp_timeout;
        let created = cdp(
            t,
            "Target.createBrowserContext",
            // Disposed by Chromium if the connection drops: a page must never go on running
            // without the guard (which lives in this connection).
            // A remote browser's context goes out only through this node's relay (to
            // loopback too), which dies with this process: see `relay`.
            self.cdp.execute(CreateBrowserContextParams {
                dispose_on_detach: Some(true),
                proxy_server: self.relay.as_ref().map(|r| r.proxy_server()),
                proxy_bypass_list: self.relay.as_ref().map(|_| "<-loopback>".to_owned()),
                ..Default::default()
            }),
        )
        .await
        .inspect_err(|_| self.check_health())?;
        let context_id = created.result.browser_context_id.clone();
        let context = context_id.inner().clone();
        self.opened.fetch_add(1, Ordering::SeqCst);
        let (guard, events) = self.registry.register(&context, policy);
        let mut browser = Browser {
            chromium: self.clone(),
            context: context.clone(),
            guard,
            events,
            pending: Vec::new(),
            disposed: false,
            runs: 0,
        };
        let tab = async {
            if let Some(state) = session {
                let cookies = tab::cookie_params(state);
                if !cookies.is_empty() {
                    let mut params =
                        chromiumoxide::cdp::browser_protocol::storage::SetCookiesParams::new(
                            cookies,
                        );
                    params.browser_context_id = Some(context_id.clone());
                    cdp(t, "Storage.setCookies", self.cdp.execute(params)).await?;
                }
            }
            let params = CreateTargetParams::builder()
                .url("about:blank")
                .browser_context_id(context_id.clone())
                .build()
                .map_err(BrowserError::Page)?;
            let page = cdp(t, "Target.createTarget", self.cdp.new_page(params)).await?;
            // Known before its first navigation (the event may still be on its way).
            if let Ok(mut targets) = self.targets.lock() {
                targets.insert(
                    page.target_id().inner().clone(),
                    TargetEntry {
                        kind: "page".into(),
                        context: Some(context.clone()),
                    },
                );
            }
            self.follow_frames(&page, &context).await?;
            targets::record_page_sockets(&page, &self.sockets, t).await?;
            Tab::prepare(page, browser.guard.clone(), self.gone.clone(), t, session).await
        }
        .await;
        match tab {
            Ok(tab) => Ok((browser, tab)),
            Err(e) => {
                self.check_health();
                browser.dispose().await;
                Err(e)
            }
        }
    }

    /// Attributes the page's subframes to its context as they attach, so that their first
    /// request is not held up by a look-up.
    async fn follow_frames(
        &self,
        page: &chromiumoxide::Page,
        context: &str,
    ) -> Result<(), BrowserError> {
        use chromiumoxide::cdp::browser_protocol::page::{EventFrameAttached, EventFrameDetached};
        let t = self.opts.cdp_timeout;
        let mut attached = cdp(t, "listen for frames", async {
            page.event_listener::<EventFrameAttached>().await
        })
        .await?;
        let mut detached = cdp(t, "listen for frames", async {
            page.event_listener::<EventFrameDetached>().await
        })
        .await?;
        let (registry, ctx) = (self.registry.clone(), context.to_owned());
        tokio::spawn(async move {
            while let Some(ev) = attached.next().await {
                registry.add_frame(ev.frame_id.inner(), &ctx);
            }
        });
        let registry = self.registry.clone();
        tokio::spawn(async move {
            while let Some(ev) = detached.next().await {
                registry.remove_frame(ev.frame_id.inner());
            }
        });
        Ok(())
    }

    /// Whether the process still runs and answers: false once it exited, its CDP connection
    /// closed, or a call of one of its runs timed out.
    pub fn alive(&self) -> bool {
        if self.broken.load(Ordering::SeqCst)
            || self.gone.load(Ordering::SeqCst)
            || self.handler.is_finished()
        {
            return false;
        }
        let exited = self
            .process
            .lock()
            .map(|mut p| p.as_mut().is_some_and(|p| p.exit_status().is_some()))
            .unwrap_or(true);
        !exited
    }

    /// Marks the process broken if it is gone.
    fn check_health(&self) {
        if !self.alive() {
            self.broken.store(true, Ordering::SeqCst);
        }
    }

    /// Why the process is gone, if it is: its exit status and the end of its stderr.
    pub fn crash_report(&self) -> Option<String> {
        if self.is_remote() {
            return self.gone.load(Ordering::SeqCst).then(|| {
                format!(
                    "the remote browser {} stopped answering (its DevTools connection closed; the run's browser context is disposed with it)",
                    self.identity.endpoint
                )
            });
        }
        let status = self
            .process
            .lock()
            .ok()?
            .as_mut()
            .and_then(|p| p.exit_status());
        let gone = status.is_some() || self.gone.load(Ordering::SeqCst);
        if !gone {
            return None;
        }
        let tail = self
            .process
            .lock()
            .map(|p| p.as_ref().map(|p| p.stderr_tail()).unwrap_or_default())
            .unwrap_or_default();
        let last = tail.lines().last().unwrap_or("").trim().to_owned();
        Some(format!(
            "Chromium (pid {}) {}{}",
            self.pid,
            match status {
                Some(s) => format!("exited during the run ({s})"),
                None => "stopped answering (its DevTools connection closed)".into(),
            },
            if last.is_empty() {
                String::new()
            } else {
                format!("; its last words: {last}")
            }
        ))
    }

    /// Marks the process as not answering: it is replaced once its runs are gone.
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::SeqCst);
    }

    /// The browser process id (also its process group id); 0 for a remote browser.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Which browser this is (recorded with every run).
    pub fn identity(&self) -> &BrowserIdentity {
        &self.identity
    }

    /// The remote endpoint as configured (empty for a local browser).
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint_url
    }

    /// Reached over a CDP endpoint rather than launched here.
    pub fn is_remote(&self) -> bool {
        self.identity.endpoint != "local"
    }

    /// A number unique to this process in this clerk (pids can be reused).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Browser contexts opened so far in this process.
    pub fn contexts_opened(&self) -> u32 {
        self.opened.load(Ordering::SeqCst)
    }

    /// Runs this process has served (in new or kept contexts), as the pool counted them.
    pub fn runs_served(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }

    /// Counts one more run served.
    pub(super) fn count_run(&self) {
        self.runs.fetch_add(1, Ordering::SeqCst);
    }

    /// Browser contexts open now.
    pub fn contexts_open(&self) -> usize {
        self.registry.contexts()
    }

    /// Requests failed because no run owned the frame or target that sent them.
    pub fn unattributed_requests(&self) -> Vec<GuardEvent> {
        self.registry.unattributed_requests()
    }

    /// Opens a page that belongs to no run (in the default browser context) and sends it to
    /// `url`: every request it makes is unattributable and must be failed. For tests.
    #[doc(hidden)]
    pub async fn open_page_outside_any_run(&self, url: &str) -> Result<(), BrowserError> {
        cdp(
            self.opts.cdp_timeout,
            "Target.createTarget",
            self.cdp.new_page(url),
        )
        .await
        .map(|_| ())
    }

    /// Kills and reaps the process now.
    pub fn kill(&self) {
        self.broken.store(true, Ordering::SeqCst);
        if let Ok(mut p) = self.process.lock() {
            if let Some(p) = p.as_mut() {
                p.kill();
            }
        }
        // For a remote browser this closes the connection: its contexts are disposed on
        // detach (`disposeOnDetach`), so no page of ours outlives the guard, and the relay
        // is shut first, so nothing Chromium releases meanwhile gets out.
        if let Some(r) = &self.relay {
            r.shut();
        }
        self.handler.abort();
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Notices the browser process's exit as it happens (a pidfd becomes readable): sets `gone`
/// and stops the CDP handler, so that pending calls fail at once and waits end with
/// [`BrowserError::Gone`] instead of running out their timeouts. chromiumoxide's handler
/// does not end by itself when the connection closes.
fn watch_exit(pid: i32, gone: Arc<AtomicBool>, handler: tokio::task::AbortHandle) {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        tracing::debug!(
            pid,
            "pidfd_open failed ({}): a crash is noticed by call timeouts only",
            std::io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: the fd was just returned to us and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the OwnedFd, which keeps the fd open and unchanged for the
    // AsyncFd's whole life.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    };
    let fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!(pid, "cannot watch chromium's exit: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        let _ = fd.readable().await;
        gone.store(true, Ordering::SeqCst);
        handler.abort();
        tracing::debug!(pid, "chromium exited");
    });
}

/// One run's browser: a browser context of a [`Chromium`], its guard and its events.
pub struct Browser {
    chromium: Arc<Chromium>,
    context: String,
    guard: Guard,
    events: mpsc::UnboundedReceiver<GuardEvent>,
    /// Events received but not yet drained.
    pending: Vec<GuardEvent>,
    disposed: bool,
    /// Runs this context has served (batch isolation hands it to several).
    pub(super) runs: u32,
}

impl Browser {
    /// Launches a Chromium of its own for one run (no pool), with the guard installed and
    /// the session (cookies and localStorage) in place before any page script runs.
    /// Closing the browser kills that Chromium.
    pub async fn launch(
        opts: &LaunchOptions,
        policy: Policy,
        session: Option<&StorageState>,
    ) -> Result<(Browser, Tab), BrowserError> {
        let chromium = Chromium::launch(opts).await?;
        chromium.open(policy, session).await
    }

    /// The guard of this run.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The Chromium this run lives in.
    pub fn chromium(&self) -> &Arc<Chromium> {
        &self.chromium
    }

    /// The browser context id.
    pub fn context_id(&self) -> &str {
        &self.context
    }

    /// Guard decisions made since the last drain.
    pub fn drain_events(&mut self) -> Vec<GuardEvent> {
        self.peek_events();
        std::mem::take(&mut self.pending)
    }

    /// Guard decisions made since the last drain, left in place.
    pub fn peek_events(&mut self) -> &[GuardEvent] {
        while let Ok(e) = self.events.try_recv() {
            self.pending.push(e);
        }
        &self.pending
    }

    /// What kind of target a frame is, for the record of a guard decision: the tab's main
    /// frame is `page`; a frame that is itself a target is a `popup` (another page) or an
    /// `iframe (own process)`; a service or shared worker (whose requests carry its own
    /// target id) is `service_worker` / `shared_worker`; anything else is an in-process
    /// `frame` (which is also where a dedicated worker's requests are attributed).
    pub fn classify_frame(&self, frame: &str, main_frame: &str) -> String {
        if frame == main_frame {
            return "page".into();
        }
        let kind = self
            .chromium
            .targets
            .lock()
            .ok()
            .and_then(|t| t.get(frame).map(|e| e.kind.clone()));
        match kind.as_deref() {
            Some("page") => "popup".into(),
            Some("iframe") => "iframe (own process)".into(),
            Some(other) => other.to_owned(),
            None => "frame".into(),
        }
    }

    /// The session as Playwright's storageState: every cookie of the run's context, and the
    /// localStorage of the tab's current origin.
    pub async fn storage_state(&self, tab: &Tab) -> Result<StorageState, BrowserError> {
        let params = chromiumoxide::cdp::browser_protocol::storage::GetCookiesParams {
            browser_context_id: Some(self.context.clone().into()),
        };
        let r = cdp(
            self.chromium.opts.cdp_timeout,
            "Storage.getCookies",
            self.chromium.cdp.execute(params),
        )
        .await?;
        let cookies = r
            .result
            .cookies
            .iter()
            .map(|c| crate::channel::StoredCookie {
                name: c.name.clone(),
                value: c.value.clone(),
                domain: c.domain.clone(),
                path: c.path.clone(),
                expires: if c.session { -1.0 } else { c.expires },
                http_only: c.http_only,
                secure: c.secure,
                same_site: c.same_site.as_ref().map(|s| format!("{s:?}")),
            })
            .collect();
        let (origin, items): (String, Vec<(String, String)>) = tab
            .eval(
                "const out = []; try { for (let i = 0; i < localStorage.length; i++) { const k = localStorage.key(i); out.push([k, localStorage.getItem(k)]); } } catch (e) {} return [location.origin, out];",
                serde_json::Value::Null,
            )
            .await?;
        let origins = if items.is_empty() {
            vec![]
        } else {
            vec![crate::channel::OriginStorage {
                origin,
                local_storage: items
                    .into_iter()
                    .map(|(name, value)| crate::channel::NameValue { name, value })
                    .collect(),
            }]
        };
        Ok(StorageState { cookies, origins })
    }

    /// Waits briefly for guard decisions still in flight, then drains them.
    pub async fn settle_events(&mut self) -> Vec<GuardEvent> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.drain_events()
    }

    /// Number of targets of a type (`page`, `iframe`, `worker`, ...) of this run's context.
    pub async fn count_targets(&self, kind: &str) -> Result<usize, BrowserError> {
        let params = chromiumoxide::cdp::browser_protocol::target::GetTargetsParams::default();
        let targets = cdp(
            self.chromium.opts.cdp_timeout,
            "Target.getTargets",
            self.chromium.cdp.execute(params),
        )
        .await?;
        Ok(targets
            .result
            .target_infos
            .iter()
            .filter(|t| t.r#type == kind)
            .filter(|t| {
                t.browser_context_id
                    .as_ref()
                    .is_some_and(|c| *c.inner() == self.context)
            })
            .count())
    }

    /// The browser process id (for tests that check reaping).
    pub fn pid(&self) -> i32 {
        self.chromium.pid()
    }

    /// Why the browser is gone, if it crashed or stopped answering.
    pub fn crash_report(&self) -> Option<String> {
        self.chromium.crash_report()
    }

    /// Disposes the run's browser context (its pages, cookies, storage and cache go with
    /// it); its requests are unattributable from now on.
    pub async fn dispose(&mut self) {
        if self.disposed {
            return;
        }
        self.disposed = true;
        self.chromium.registry.unregister(&self.context);
        if !self.chromium.alive() {
            return;
        }
        use chromiumoxide::cdp::browser_protocol::target::DisposeBrowserContextParams;
        let params = DisposeBrowserContextParams::new(self.context.clone());
        // Short: a browser that does not answer this is replaced anyway.
        if let Err(e) = cdp(
            Duration::from_secs(5),
            "Target.disposeBrowserContext",
            self.chromium.cdp.execute(params),
        )
        .await
        {
            tracing::warn!(pid = self.chromium.pid, "{e}");
            self.chromium.mark_broken();
        }
    }

    /// Closes the run's browser: disposes its context; a Chromium no pool holds is killed
    /// and reaped when its last run is closed.
    pub async fn close(mut self) {
        self.dispose().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.disposed {
            self.disposed = true;
            self.chromium.registry.unregister(&self.context);
            // Dropped without `close` (an error path): dispose in the background if a
            // runtime is still there; the process goes with its last handle anyway.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let chromium = self.chromium.clone();
                let context = self.context.clone();
                rt.spawn(async move {
                    use chromiumoxide::cdp::browser_protocol::target::DisposeBrowserContextParams;
                    let _ = cdp(
                        Duration::from_secs(5),
                        "Target.disposeBrowserContext",
                        chromium
                            .cdp
                            .execute(DisposeBrowserContextParams::new(context)),
                    )
                    .await;
                });
            }
        }
    }
}
