//! The browser: the only module that speaks CDP.
//!
//! One [`Browser`] is one Chromium process with a fresh profile, a fixed viewport and
//! device scale, animations off, the network [`guard`] installed on the browser target,
//! and one [`Tab`] that the runner drives. Every CDP call goes through [`cdp`], which puts
//! a timeout on it. Chromium is killed and reaped when the `Browser` is closed or dropped,
//! whatever the exit path (see [`process`]).
//!
//! Targets (who is who, workers released from chromiumoxide's debugger wait, WebSocket
//! traffic on allowed sockets) are followed in [`targets`]; the headers that close the
//! channels Fetch cannot see are built in [`containment`].

mod containment;
mod guard;
mod process;
mod tab;
mod targets;

pub use guard::{ArmedWrite, Guard, GuardEvent, HeldWrite, Judge, Judgement, Policy, JUDGED_HOLD};
pub use process::{find_chromium, kill_all};
pub use tab::{ElementRect, FieldValue, Find, Tab};

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::handler::HandlerConfig;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::channel::StorageState;
use process::ChromiumProcess;
use targets::{SocketRecorder, Targets};

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
        })
    }

    fn args(&self) -> Vec<String> {
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
            "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,LocalNetworkAccessChecks",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--metrics-recording-only",
            "--mute-audio",
            "--hide-scrollbars",
            "--password-store=basic",
            "--use-mock-keychain",
            "--force-color-profile=srgb",
            "--force-device-scale-factor=1",
            "--font-render-hinting=none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--window-size={},{}", self.width, self.height));
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Chromium refuses to run its sandbox as root.
            args.push("--no-sandbox".into());
        }
        args
    }
}

/// One Chromium with its guard and one tab.
pub struct Browser {
    cdp: Arc<chromiumoxide::Browser>,
    handler: tokio::task::JoinHandle<()>,
    process: ChromiumProcess,
    guard: Guard,
    events: mpsc::UnboundedReceiver<GuardEvent>,
    /// Records WebSocket traffic on the sockets the channel allows.
    sockets: SocketRecorder,
    /// Events received but not yet drained.
    pending: Vec<GuardEvent>,
    /// Target id → target type (`page`, `iframe`, `worker`, ...), from Target events.
    targets: Targets,
    opts: LaunchOptions,
}

impl Browser {
    /// Launches Chromium, installs the guard and applies the session (cookies and
    /// localStorage) so that it is in place before any page script runs.
    pub async fn launch(
        opts: &LaunchOptions,
        policy: Policy,
        session: Option<&StorageState>,
    ) -> Result<(Browser, Tab), BrowserError> {
        let (process, ws) = {
            let exe = opts.executable.clone();
            let args = opts.args();
            let t = opts.launch_timeout;
            tokio::task::spawn_blocking(move || ChromiumProcess::spawn(&exe, &args, t))
                .await
                .map_err(|e| BrowserError::Launch(e.to_string()))??
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
                return Err(BrowserError::Launch(format!(
                    "{e}; chromium stderr:\n{}",
                    process.stderr_tail()
                )))
            }
        };
        // The handler must be polled for the browser's whole life.
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::trace!("cdp handler: {e}");
                }
            }
        });
        let cdp_browser = Arc::new(cdp_browser);
        let targets: Targets = Arc::new(Mutex::new(HashMap::new()));
        let sessions = targets::Sessions::default();
        targets::track(&cdp_browser, &targets, &sessions, opts.cdp_timeout).await?;
        let (guard, events) = Guard::install(
            cdp_browser.clone(),
            policy,
            targets.clone(),
            opts.cdp_timeout,
        )
        .await?;
        let sockets = SocketRecorder::new(guard.clone());
        targets::record_child_sockets(&cdp_browser, &sockets, &sessions, opts.cdp_timeout).await?;
        let mut browser = Browser {
            cdp: cdp_browser,
            handler,
            process,
            guard,
            events,
            sockets,
            pending: Vec::new(),
            targets,
            opts: opts.clone(),
        };
        match browser.open_tab(session).await {
            Ok(tab) => Ok((browser, tab)),
            Err(e) => {
                browser.close().await;
                Err(e)
            }
        }
    }

    async fn open_tab(&mut self, session: Option<&StorageState>) -> Result<Tab, BrowserError> {
        let t = self.opts.cdp_timeout;
        if let Some(state) = session {
            let cookies = tab::cookie_params(state);
            if !cookies.is_empty() {
                let params =
                    chromiumoxide::cdp::browser_protocol::storage::SetCookiesParams::new(cookies);
                cdp(t, "Storage.setCookies", self.cdp.execute(params)).await?;
            }
        }
        let page = cdp(t, "Target.createTarget", self.cdp.new_page("about:blank")).await?;
        // Known before its first navigation (the event may still be on its way).
        if let Ok(mut targets) = self.targets.lock() {
            targets.insert(page.target_id().inner().clone(), "page".into());
        }
        targets::record_page_sockets(&page, &self.sockets, t).await?;
        Tab::prepare(page, self.guard.clone(), t, session).await
    }

    /// The guard of this browser.
    pub fn guard(&self) -> &Guard {
        &self.guard
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
        let kind = self.targets.lock().ok().and_then(|t| t.get(frame).cloned());
        match kind.as_deref() {
            Some("page") => "popup".into(),
            Some("iframe") => "iframe (own process)".into(),
            Some(other) => other.to_owned(),
            None => "frame".into(),
        }
    }

    /// The session as Playwright's storageState: every cookie of the browser, and the
    /// localStorage of the tab's current origin.
    pub async fn storage_state(&self, tab: &Tab) -> Result<StorageState, BrowserError> {
        let params = chromiumoxide::cdp::browser_protocol::storage::GetCookiesParams::default();
        let r = cdp(
            self.opts.cdp_timeout,
            "Storage.getCookies",
            self.cdp.execute(params),
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

    /// Number of targets of a type (`page`, `iframe`, `worker`, ...) Chromium reports.
    pub async fn count_targets(&self, kind: &str) -> Result<usize, BrowserError> {
        let params = chromiumoxide::cdp::browser_protocol::target::GetTargetsParams::default();
        let targets = cdp(
            self.opts.cdp_timeout,
            "Target.getTargets",
            self.cdp.execute(params),
        )
        .await?;
        Ok(targets
            .result
            .target_infos
            .iter()
            .filter(|t| t.r#type == kind)
            .count())
    }

    /// The browser process id (for tests that check reaping).
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Closes the browser: kills and reaps Chromium, stops the handler.
    pub async fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.process.kill();
        self.handler.abort();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.shutdown();
    }
}
