//! One page of a run, driven through CDP.
//!
//! clerk reads the DOM from an isolated world (`Page.createIsolatedWorld`): the page's own
//! scripts cannot redefine the getters clerk uses to read text and field values back. Input
//! is typed with `Input.dispatchKeyEvent` and clicks are real mouse events, so the page sees
//! what a person's browser would send; nothing is injected into the page's own world.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chromiumoxide::cdp::browser_protocol::dom::SetFileInputFilesParams;
use chromiumoxide::cdp::browser_protocol::emulation::{MediaFeature, SetEmulatedMediaParams};
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchKeyEventParams, DispatchKeyEventType, DispatchMouseEventParams, DispatchMouseEventType,
    MouseButton,
};
use chromiumoxide::cdp::browser_protocol::network::CookieParam;
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, CaptureScreenshotFormat, CaptureScreenshotParams,
    CreateIsolatedWorldParams, FrameId, Viewport,
};
use chromiumoxide::cdp::js_protocol::runtime::{EvaluateParams, ExecutionContextId};
use chromiumoxide::Page;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{cdp, BrowserError, Guard};
use crate::channel::StorageState;

/// A rectangle in page (document) CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ElementRect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// A form control's live value, as the browser would submit it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValue {
    pub name: String,
    pub value: String,
}

/// An element locator rendered for the browser: the JSON the isolated world's locator
/// engine takes (`{"css": ...}`, `{"label": ...}`, ...) and how to name it in messages.
/// The runner renders playbook locators (templates filled, inputs escaped) into this;
/// the browser module never sees playbook types.
#[derive(Debug, Clone, PartialEq)]
pub struct Find {
    pub spec: serde_json::Value,
    pub display: String,
}

impl Find {
    /// A plain CSS selector.
    pub fn css(selector: &str) -> Find {
        Find {
            spec: serde_json::json!({ "css": selector }),
            display: selector.to_owned(),
        }
    }

    /// The control labelled `text`.
    pub fn label(text: &str) -> Find {
        Find {
            spec: serde_json::json!({ "label": text }),
            display: format!("label {text:?}"),
        }
    }
}

/// One page of a run.
pub struct Tab {
    page: Page,
    guard: Guard,
    timeout: Duration,
    world: Mutex<Option<(String, ExecutionContextId)>>,
    /// The channel's login pages: any wait that sees the page land on one ends at once
    /// with [`BrowserError::LoginPage`].
    login_pages: Mutex<Vec<regex::Regex>>,
}

/// How long the network must have been quiet (no new request seen by the guard) before a
/// capture: long enough for a response handler's follow-up request to start, short enough
/// not to matter per screenshot.
const SETTLE_QUIET: Duration = Duration::from_millis(100);

/// CSS that stops animations, transitions and the blinking caret, so captures are stable.
const STILL_CSS: &str = "*,*::before,*::after{animation:none!important;transition:none!important;caret-color:transparent!important;scroll-behavior:auto!important}";

/// Helper functions installed in clerk's isolated world on every call.
const PRELUDE: &str = r#"
const __clerk = {
  find(loc) {
    if (loc.css !== undefined) return document.querySelector(loc.css);
    const want = loc.label.trim().toLowerCase();
    for (const l of document.querySelectorAll('label')) {
      if (l.textContent.trim().toLowerCase() === want) {
        if (l.control) return l.control;
        if (l.htmlFor) return document.getElementById(l.htmlFor);
      }
    }
    return null;
  },
  visible(el) {
    if (!el) return false;
    const s = getComputedStyle(el);
    if (s.visibility === 'hidden' || s.display === 'none') return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  },
  rect(el) {
    const r = el.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height};
  },
};
"#;

impl Tab {
    pub(super) async fn prepare(
        page: Page,
        guard: Guard,
        timeout: Duration,
        session: Option<&StorageState>,
    ) -> Result<Tab, BrowserError> {
        let mut script = format!(
            "(() => {{ const add = () => {{ const s = document.createElement('style'); s.textContent = {css}; (document.head || document.documentElement).appendChild(s); }}; if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', add); else add(); }})();",
            css = serde_json::to_string(STILL_CSS).unwrap_or_default()
        );
        if let Some(state) = session {
            for (origin, items) in state.local_storage() {
                let items = serde_json::to_string(&items).unwrap_or_else(|_| "[]".into());
                let origin = serde_json::to_string(&origin).unwrap_or_else(|_| "\"\"".into());
                script.push_str(&format!(
                    "(() => {{ try {{ if (location.origin === {origin}) {{ for (const [k, v] of {items}) localStorage.setItem(k, v); }} }} catch (e) {{}} }})();"
                ));
            }
        }
        cdp(
            timeout,
            "Page.addScriptToEvaluateOnNewDocument",
            page.execute(AddScriptToEvaluateOnNewDocumentParams::new(script)),
        )
        .await?;
        let media = SetEmulatedMediaParams::builder()
            .feature(MediaFeature::new("prefers-reduced-motion", "reduce"))
            .build();
        cdp(timeout, "Emulation.setEmulatedMedia", page.execute(media)).await?;
        // A dialog (alert, confirm, beforeunload) would block every later call on this page:
        // leave pages without asking, dismiss everything else.
        {
            use chromiumoxide::cdp::browser_protocol::page::{
                DialogType, EventJavascriptDialogOpening, HandleJavaScriptDialogParams,
            };
            use futures::StreamExt;
            let mut dialogs = cdp(timeout, "listen for dialogs", async {
                page.event_listener::<EventJavascriptDialogOpening>().await
            })
            .await?;
            let dialog_page = page.clone();
            tokio::spawn(async move {
                while let Some(ev) = dialogs.next().await {
                    let accept = ev.r#type == DialogType::Beforeunload;
                    tracing::debug!(kind = ?ev.r#type, "page opened a dialog; answering it");
                    let answer = HandleJavaScriptDialogParams::new(accept);
                    if let Err(e) = cdp(
                        timeout,
                        "Page.handleJavaScriptDialog",
                        dialog_page.execute(answer),
                    )
                    .await
                    {
                        tracing::debug!("{e}");
                    }
                }
            });
        }
        Ok(Tab {
            page,
            guard,
            timeout,
            world: Mutex::new(None),
            login_pages: Mutex::new(Vec::new()),
        })
    }

    /// Names the channel's login pages (compiled URL globs): a wait that sees the page go to
    /// one stops waiting and fails with [`BrowserError::LoginPage`].
    pub fn set_login_pages(&self, pages: Vec<regex::Regex>) {
        if let Ok(mut l) = self.login_pages.lock() {
            *l = pages;
        }
    }

    fn is_login_page(&self, href: &str) -> bool {
        self.login_pages
            .lock()
            .map(|l| l.iter().any(|re| re.is_match(href)))
            .unwrap_or(false)
    }

    /// The timeout used for single CDP calls.
    pub fn cdp_timeout(&self) -> Duration {
        self.timeout
    }

    /// The main frame's id.
    pub async fn main_frame(&self) -> Result<String, BrowserError> {
        let f = cdp(self.timeout, "main frame", self.page.mainframe()).await?;
        Ok(f.map(|f| f.inner().clone())
            .unwrap_or_else(|| self.page.target_id().inner().clone()))
    }

    async fn context(&self, fresh: bool) -> Result<ExecutionContextId, BrowserError> {
        let frame = self.main_frame().await?;
        if !fresh {
            if let Ok(w) = self.world.lock() {
                if let Some((f, id)) = w.as_ref() {
                    if *f == frame {
                        return Ok(*id);
                    }
                }
            }
        }
        let params = CreateIsolatedWorldParams::builder()
            .frame_id(FrameId::new(frame.clone()))
            .world_name("clerk")
            .build()
            .map_err(BrowserError::Page)?;
        let r = cdp(
            self.timeout,
            "Page.createIsolatedWorld",
            self.page.execute(params),
        )
        .await?;
        let id = r.result.execution_context_id;
        if let Ok(mut w) = self.world.lock() {
            *w = Some((frame, id));
        }
        Ok(id)
    }

    /// Evaluates `body` (a function body that may `return`) in clerk's isolated world and
    /// returns its JSON value. `arg` is available as `arg`.
    pub async fn eval<T: serde::de::DeserializeOwned>(
        &self,
        body: &str,
        arg: serde_json::Value,
    ) -> Result<T, BrowserError> {
        let expr = format!(
            "(async () => {{ {PRELUDE}; const arg = {arg}; {body} }})()",
            arg = arg
        );
        let mut last_err = None;
        for attempt in 0..3 {
            let ctx = self.context(attempt > 0).await?;
            let params = EvaluateParams::builder()
                .expression(expr.clone())
                .context_id(ctx)
                .return_by_value(true)
                .await_promise(true)
                .build()
                .map_err(BrowserError::Page)?;
            match cdp(self.timeout, "Runtime.evaluate", self.page.execute(params)).await {
                Ok(r) => {
                    if let Some(ex) = &r.result.exception_details {
                        let text = ex
                            .exception
                            .as_ref()
                            .and_then(|e| e.description.clone())
                            .unwrap_or_else(|| ex.text.clone());
                        return Err(BrowserError::Page(format!("script error: {text}")));
                    }
                    let v = r
                        .result
                        .result
                        .value
                        .clone()
                        .unwrap_or(serde_json::Value::Null);
                    return serde_json::from_value(v)
                        .map_err(|e| BrowserError::Page(format!("unexpected script result: {e}")));
                }
                // The world dies with its document; a navigation in between needs a new one.
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| BrowserError::Page("evaluation failed".into())))
    }

    /// Navigates the tab and waits until the navigation is done: for a new document, until
    /// that document has replaced the old one and is loaded; for a same-document navigation
    /// (only the fragment changes, as with hash routers), until the page's current history
    /// entry is a new one. Never waits for a load event that a same-document navigation
    /// will not fire.
    ///
    /// The navigation is started from clerk's isolated world (`location.assign`), not with
    /// `Page.navigate`: chromiumoxide answers `Page.navigate` only once the main frame *and
    /// every child frame* report `load`, which never happens for a fragment change or for a
    /// frame whose navigation the guard aborted. A navigation the guard aborts leaves the
    /// previous document in place; the caller checks the guard's events.
    pub async fn goto(&self, url: &Url, timeout: Duration) -> Result<(), BrowserError> {
        let start = Instant::now();
        let current = self.url().await.unwrap_or_default();
        let same_document = is_same_document(&current, url);
        let token = format!("{:x}", rand_u64());
        // Mark the current document and history entry, then navigate.
        let _: bool = self
            .eval(
                "window.__clerkDoc = arg[0]; \
                 window.__clerkEntry = (window.navigation && navigation.currentEntry) ? navigation.currentEntry.id : null; \
                 location.assign(arg[1]); return true;",
                serde_json::json!([token, url.as_str()]),
            )
            .await?;
        // Done when: an error page (fail), or for a same-document navigation a new history
        // entry (or the exact URL) in the marked document, or for a new document an unmarked,
        // completely loaded one.
        let cond = if same_document {
            "location.href.startsWith('chrome-error:') ? 'error' : \
             (window.__clerkDoc === arg[0] && ((window.__clerkEntry !== null && window.navigation && \
               navigation.currentEntry && navigation.currentEntry.id !== window.__clerkEntry) || location.href === arg[1])) ? 'ok' : null"
        } else {
            "location.href.startsWith('chrome-error:') ? 'error' : \
             (window.__clerkDoc !== arg[0] && document.readyState === 'complete') ? 'ok' : null"
        };
        let left = timeout.saturating_sub(start.elapsed());
        match self
            .wait_js(cond, serde_json::json!([token, url.as_str()]), left)
            .await?
        {
            Some(serde_json::Value::String(s)) if s == "ok" => Ok(()),
            Some(_) => Err(BrowserError::Page(format!(
                "navigation to {url} failed: the browser shows an error page"
            ))),
            None => Err(BrowserError::Timeout {
                what: format!("navigation to {url}"),
                after: timeout,
            }),
        }
    }

    /// Waits until `document.readyState` is `complete`.
    pub async fn wait_loaded(&self, timeout: Duration) -> Result<(), BrowserError> {
        match self
            .wait_js(
                "document.readyState === 'complete'",
                serde_json::Value::Null,
                timeout,
            )
            .await?
        {
            Some(_) => Ok(()),
            None => Err(BrowserError::Timeout {
                what: "page load".into(),
                after: timeout,
            }),
        }
    }

    /// Waits until the main frame's URL (with its fragment) matches `pattern`, reacting to
    /// history and hash changes and to new documents.
    pub async fn wait_url(
        &self,
        pattern: &regex::Regex,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        let start = Instant::now();
        let mut seen = self.url().await.unwrap_or_default();
        loop {
            if pattern.is_match(&seen) {
                return Ok(());
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(BrowserError::Page(format!(
                    "the URL did not match {pattern} (it is {seen}, after {timeout:?})"
                )));
            }
            if let Some(serde_json::Value::String(href)) = self
                .wait_js(
                    "location.href !== arg ? location.href : null",
                    serde_json::json!(seen),
                    left,
                )
                .await?
            {
                seen = href;
            }
        }
    }

    /// The HTTP status the current document was served with (`None` for documents that did
    /// not come from the network, such as `about:blank`).
    pub async fn response_status(&self) -> Result<Option<u16>, BrowserError> {
        self.eval(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return n && n.responseStatus ? n.responseStatus : null;",
            serde_json::Value::Null,
        )
        .await
    }

    /// The current URL of the main frame.
    pub async fn url(&self) -> Result<String, BrowserError> {
        self.eval("return location.href;", serde_json::Value::Null)
            .await
    }

    /// The document title.
    pub async fn title(&self) -> Result<String, BrowserError> {
        self.eval("return document.title;", serde_json::Value::Null)
            .await
    }

    /// Waits, reacting to the page rather than polling it, until the JavaScript expression
    /// `cond` (which may use `arg`) is truthy, and returns its value; `None` when `timeout`
    /// passes first.
    ///
    /// One `Runtime.evaluate` awaits a promise that re-checks `cond` on every DOM mutation,
    /// history or hash change and ready-state change, and gives up after a slice of at most
    /// a second (so a slow page never holds a CDP call near its timeout, and a check that
    /// depends on layout alone is still re-run). A navigation destroys the isolated world
    /// mid-wait; the next slice runs in the new document's world.
    pub(crate) async fn wait_js(
        &self,
        cond: &str,
        arg: serde_json::Value,
        timeout: Duration,
    ) -> Result<Option<serde_json::Value>, BrowserError> {
        let start = Instant::now();
        let mut href = self.url().await.unwrap_or_default();
        loop {
            if self.is_login_page(&href) {
                return Err(BrowserError::LoginPage(href));
            }
            let left = timeout.saturating_sub(start.elapsed());
            let slice = left.min(Duration::from_millis(1000)).as_millis() as u64;
            // Besides `cond`, a change of URL ends the slice, so that a page that routes
            // itself to its login page is noticed at once.
            let body = format!(
                "const __href = {href0}; \
                 const check = () => {{ try {{ const v = ({cond}); if (v) return v; }} catch (e) {{}} \
                   return location.href !== __href ? {{__clerk_href: location.href}} : null; }}; \
                 const first = check(); if (first) return first; \
                 return await new Promise((resolve) => {{ \
                   let done = false; \
                   const finish = (v) => {{ if (done) return; done = true; obs.disconnect(); clearTimeout(timer); \
                     removeEventListener('hashchange', again); removeEventListener('popstate', again); \
                     document.removeEventListener('readystatechange', again); \
                     if (window.navigation) navigation.removeEventListener('currententrychange', again); \
                     resolve(v); }}; \
                   const again = () => {{ const v = check(); if (v) finish(v); }}; \
                   const obs = new MutationObserver(again); \
                   obs.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}}); \
                   addEventListener('hashchange', again); addEventListener('popstate', again); \
                   document.addEventListener('readystatechange', again); \
                   if (window.navigation) navigation.addEventListener('currententrychange', again); \
                   const timer = setTimeout(() => finish(check()), {slice}); \
                 }});",
                href0 = serde_json::Value::String(href.clone())
            );
            match self.eval::<serde_json::Value>(&body, arg.clone()).await {
                Ok(v) if v.get("__clerk_href").is_some() => {
                    href = v["__clerk_href"].as_str().unwrap_or_default().to_owned();
                    continue;
                }
                Ok(v) if !v.is_null() && v != serde_json::Value::Bool(false) => return Ok(Some(v)),
                Ok(_) => {}
                // The world went away with its document; the next slice finds the new one.
                Err(BrowserError::Page(m)) if m.starts_with("script error") => {
                    return Err(BrowserError::Page(m))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
        }
    }

    /// Waits until a boolean script body is true (see [`Tab::wait_js`]); `timeout_error`
    /// says what was not found when time runs out.
    async fn wait_until(
        &self,
        body: &str,
        arg: serde_json::Value,
        timeout: Duration,
        timeout_error: impl FnOnce() -> BrowserError,
    ) -> Result<(), BrowserError> {
        let cond = format!("(() => {{ {body} }})()");
        match self.wait_js(&cond, arg, timeout).await? {
            Some(_) => Ok(()),
            None => Err(timeout_error()),
        }
    }

    /// Waits until the element a locator finds is visible.
    pub async fn wait_visible(
        &self,
        locator: &Find,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        self.wait_until(
            "return __clerk.visible(__clerk.find(arg));",
            locator.spec.clone(),
            timeout,
            || BrowserError::ElementNotFound {
                selector: locator.display.clone(),
                after: timeout,
            },
        )
        .await
    }

    /// Waits until the page's visible text contains `text`.
    pub async fn wait_text(&self, text: &str, timeout: Duration) -> Result<(), BrowserError> {
        self.wait_until(
            "return !!document.body && document.body.innerText.includes(arg);",
            serde_json::json!(text),
            timeout,
            || {
                BrowserError::Page(format!(
                    "text not found on the page: {text:?} (after {timeout:?})"
                ))
            },
        )
        .await
    }

    /// Waits for `n` animation frames of the page (a navigation replacing the document in
    /// between ends the wait early).
    pub async fn animation_frames(&self, n: u32) -> Result<(), BrowserError> {
        let r: Result<bool, _> = self
            .eval(
                "for (let i = 0; i < arg; i++) await new Promise(r => requestAnimationFrame(r)); return true;",
                serde_json::json!(n),
            )
            .await;
        match r {
            Err(BrowserError::Page(m)) if m.starts_with("script error") => {
                Err(BrowserError::Page(m))
            }
            _ => Ok(()),
        }
    }

    /// Waits until no request has been issued for `quiet`: sleeps exactly until the quiet
    /// period would end, and again if a request came in meanwhile.
    pub async fn network_idle(
        &self,
        quiet: Duration,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        let start = Instant::now();
        loop {
            let q = self.guard.quiet_for();
            if q >= quiet {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(BrowserError::Timeout {
                    what: "network idle".into(),
                    after: timeout,
                });
            }
            tokio::time::sleep((quiet - q).min(timeout.saturating_sub(start.elapsed()))).await;
        }
    }

    /// Waits for the page to settle before a capture: loaded, fonts ready, images decoded,
    /// no DOM mutation for two animation frames, and no request for [`SETTLE_QUIET`]. Each
    /// part reacts to the page; nothing sleeps for a fixed time.
    pub async fn settle(&self, timeout: Duration) -> Result<(), BrowserError> {
        let start = Instant::now();
        self.wait_loaded(timeout).await?;
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let stable: bool = self
                .eval(
                    "const deadline = performance.now() + arg; \
                     await Promise.race([document.fonts.ready, new Promise(r => setTimeout(r, arg))]); \
                     const pending = [...document.images].filter(i => !i.complete); \
                     await Promise.race([Promise.all(pending.map(i => new Promise(r => { i.addEventListener('load', r, {once: true}); i.addEventListener('error', r, {once: true}); }))), \
                                         new Promise(r => setTimeout(r, Math.max(0, deadline - performance.now())))]); \
                     let changed = false; const obs = new MutationObserver(() => { changed = true; }); \
                     obs.observe(document, {subtree: true, childList: true, attributes: true, characterData: true}); \
                     let calm = 0; \
                     while (calm < 2 && performance.now() < deadline) { changed = false; await new Promise(r => requestAnimationFrame(r)); calm = changed ? 0 : calm + 1; } \
                     obs.disconnect(); return calm >= 2;",
                    serde_json::json!(left.min(Duration::from_secs(5)).as_millis() as u64),
                )
                .await?;
            let quiet = self.guard.quiet_for();
            if stable && quiet >= SETTLE_QUIET {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                // A page that never stops changing is still captured; say so in the logs.
                tracing::warn!("page did not settle within {timeout:?}; capturing anyway");
                return Ok(());
            }
            if quiet < SETTLE_QUIET {
                tokio::time::sleep(SETTLE_QUIET - quiet).await;
            }
        }
    }

    /// Text of the element a locator finds (`None` if there is none).
    pub async fn text(&self, locator: &Find) -> Result<Option<String>, BrowserError> {
        self.eval(
            "const el = __clerk.find(arg); return el ? el.innerText.trim() : null;",
            locator.spec.clone(),
        )
        .await
    }

    /// An attribute of the element a locator finds.
    pub async fn attribute(
        &self,
        locator: &Find,
        name: &str,
    ) -> Result<Option<String>, BrowserError> {
        self.eval(
            "const el = __clerk.find(arg[0]); return el ? el.getAttribute(arg[1]) : null;",
            serde_json::json!([locator.spec, name]),
        )
        .await
    }

    /// The live `value` of the element a locator finds.
    pub async fn value(&self, locator: &Find) -> Result<Option<String>, BrowserError> {
        self.eval(
            "const el = __clerk.find(arg); return el && 'value' in el ? String(el.value) : null;",
            locator.spec.clone(),
        )
        .await
    }

    /// Page rectangle of the element a locator finds.
    pub async fn rect(&self, locator: &Find) -> Result<Option<ElementRect>, BrowserError> {
        self.eval(
            "const el = __clerk.find(arg); return el ? __clerk.rect(el) : null;",
            locator.spec.clone(),
        )
        .await
    }

    /// Scrolls the element into view and returns its centre in viewport coordinates.
    async fn center(&self, locator: &Find, timeout: Duration) -> Result<(f64, f64), BrowserError> {
        let start = Instant::now();
        loop {
            let c: Option<(f64, f64)> = self
                .eval(
                    "const el = __clerk.find(arg); if (!__clerk.visible(el)) return null; \
                     el.scrollIntoView({block: 'center', inline: 'center'}); \
                     const r = el.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2];",
                    locator.spec.clone(),
                )
                .await
                .unwrap_or(None);
            if let Some(c) = c {
                return Ok(c);
            }
            if start.elapsed() >= timeout {
                return Err(BrowserError::ElementNotFound {
                    selector: locator.display.clone(),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element with real mouse events.
    pub async fn click(&self, locator: &Find, timeout: Duration) -> Result<(), BrowserError> {
        let (x, y) = self.center(locator, timeout).await?;
        for kind in [
            DispatchMouseEventType::MouseMoved,
            DispatchMouseEventType::MousePressed,
            DispatchMouseEventType::MouseReleased,
        ] {
            let mut b = DispatchMouseEventParams::builder()
                .r#type(kind.clone())
                .x(x)
                .y(y);
            if kind != DispatchMouseEventType::MouseMoved {
                b = b.button(MouseButton::Left).click_count(1);
            }
            let params = b.build().map_err(BrowserError::Page)?;
            cdp(
                self.timeout,
                "Input.dispatchMouseEvent",
                self.page.execute(params),
            )
            .await?;
        }
        Ok(())
    }

    async fn key(
        &self,
        kind: DispatchKeyEventType,
        key: &str,
        code: &str,
        vk: i64,
        text: Option<&str>,
    ) -> Result<(), BrowserError> {
        let mut b = DispatchKeyEventParams::builder()
            .r#type(kind)
            .key(key)
            .code(code)
            .windows_virtual_key_code(vk);
        if let Some(t) = text {
            b = b.text(t).unmodified_text(t);
        }
        let params = b.build().map_err(BrowserError::Page)?;
        cdp(
            self.timeout,
            "Input.dispatchKeyEvent",
            self.page.execute(params),
        )
        .await?;
        Ok(())
    }

    /// Focuses a text field, clears it and types `value` key by key.
    pub async fn fill(
        &self,
        locator: &Find,
        value: &str,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        self.click(locator, timeout).await?;
        let ok: bool = self
            .eval(
                "const el = __clerk.find(arg); if (!el) return false; el.focus(); \
                 if (typeof el.select === 'function') el.select(); return document.activeElement === el;",
                locator.spec.clone(),
            )
            .await?;
        if !ok {
            return Err(BrowserError::Page(format!(
                "cannot focus {}",
                locator.display.clone()
            )));
        }
        // Delete whatever is selected (the old value), as a person would.
        self.key(
            DispatchKeyEventType::RawKeyDown,
            "Backspace",
            "Backspace",
            8,
            None,
        )
        .await?;
        self.key(
            DispatchKeyEventType::KeyUp,
            "Backspace",
            "Backspace",
            8,
            None,
        )
        .await?;
        for ch in value.chars() {
            let s = ch.to_string();
            if ch == '\n' {
                self.key(
                    DispatchKeyEventType::KeyDown,
                    "Enter",
                    "Enter",
                    13,
                    Some("\r"),
                )
                .await?;
                self.key(DispatchKeyEventType::KeyUp, "Enter", "Enter", 13, None)
                    .await?;
            } else {
                self.key(DispatchKeyEventType::KeyDown, &s, "", 0, Some(&s))
                    .await?;
                self.key(DispatchKeyEventType::KeyUp, &s, "", 0, None)
                    .await?;
            }
        }
        Ok(())
    }

    /// Chooses an option of a `<select>` by value (or visible text) and fires input/change.
    pub async fn select(
        &self,
        locator: &Find,
        value: &str,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        self.center(locator, timeout).await?;
        let r: Option<String> = self
            .eval(
                "const el = __clerk.find(arg[0]); if (!el || el.tagName !== 'SELECT') return 'not a <select>'; \
                 const opt = [...el.options].find(o => o.value === arg[1]) || [...el.options].find(o => o.text.trim() === arg[1]); \
                 if (!opt) return 'no option ' + JSON.stringify(arg[1]) + ' (options: ' + [...el.options].map(o => o.value).join(', ') + ')'; \
                 el.focus(); el.value = opt.value; \
                 el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); return null;",
                serde_json::json!([locator.spec.clone(), value]),
            )
            .await?;
        match r {
            None => Ok(()),
            Some(msg) => Err(BrowserError::Page(format!(
                "{}: {msg}",
                locator.display.clone()
            ))),
        }
    }

    /// Sets a checkbox to `checked` by clicking it when it is not already.
    pub async fn set_checked(
        &self,
        locator: &Find,
        checked: bool,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        let now: Option<bool> = self
            .eval(
                "const el = __clerk.find(arg); return el ? !!el.checked : null;",
                locator.spec.clone(),
            )
            .await?;
        match now {
            None => Err(BrowserError::ElementNotFound {
                selector: locator.display.clone(),
                after: timeout,
            }),
            Some(c) if c == checked => Ok(()),
            Some(_) => {
                self.click(locator, timeout).await?;
                let after: Option<bool> = self
                    .eval(
                        "const el = __clerk.find(arg); return el ? !!el.checked : null;",
                        locator.spec.clone(),
                    )
                    .await?;
                if after == Some(checked) {
                    Ok(())
                } else {
                    Err(BrowserError::Page(format!(
                        "{} did not change state",
                        locator.display.clone()
                    )))
                }
            }
        }
    }

    /// Puts a local file into a file input.
    pub async fn upload(
        &self,
        locator: &Find,
        path: &std::path::Path,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        self.center(locator, timeout).await?;
        let ctx = self.context(false).await?;
        let expr = format!(
            "(() => {{ {PRELUDE}; return __clerk.find({}); }})()",
            locator.spec.clone()
        );
        let params = EvaluateParams::builder()
            .expression(expr)
            .context_id(ctx)
            .build()
            .map_err(BrowserError::Page)?;
        let r = cdp(self.timeout, "Runtime.evaluate", self.page.execute(params)).await?;
        let object =
            r.result
                .result
                .object_id
                .clone()
                .ok_or_else(|| BrowserError::ElementNotFound {
                    selector: locator.display.clone(),
                    after: timeout,
                })?;
        let params = SetFileInputFilesParams::builder()
            .file(path.display().to_string())
            .object_id(object)
            .build()
            .map_err(BrowserError::Page)?;
        cdp(
            self.timeout,
            "DOM.setFileInputFiles",
            self.page.execute(params),
        )
        .await?;
        Ok(())
    }

    /// The values the form containing `control` would submit, in document order (files by
    /// name). `None` when the control is not inside a form.
    pub async fn form_values(
        &self,
        control: &Find,
    ) -> Result<Option<Vec<FieldValue>>, BrowserError> {
        self.eval(
            "const c = __clerk.find(arg); const f = c && (c.form || c.closest('form')); if (!f) return null; \
             const out = []; for (const [k, v] of new FormData(f)) out.push({name: k, value: typeof v === 'string' ? v : ('file:' + v.name)}); return out;",
            control.spec.clone(),
        )
        .await
    }

    /// The form's `method` and absolute `action` for the form containing `control`.
    pub async fn form_target(
        &self,
        control: &Find,
    ) -> Result<Option<(String, String)>, BrowserError> {
        self.eval(
            "const c = __clerk.find(arg); const f = c && (c.form || c.closest('form')); if (!f) return null; \
             const m = c.getAttribute('formmethod') || f.getAttribute('method') || 'get'; \
             const a = c.getAttribute('formaction') || f.getAttribute('action') || location.href; \
             return [String(m).toUpperCase(), new URL(a, document.baseURI).href];",
            control.spec.clone(),
        )
        .await
    }

    /// A PNG of the whole page (beyond the viewport), at scale 1.
    pub async fn screenshot_full(&self) -> Result<Vec<u8>, BrowserError> {
        let size: (f64, f64) = self
            .eval(
                "const d = document.documentElement, b = document.body; \
                 return [Math.max(d.scrollWidth, b ? b.scrollWidth : 0, d.clientWidth), Math.max(d.scrollHeight, b ? b.scrollHeight : 0, d.clientHeight)];",
                serde_json::Value::Null,
            )
            .await?;
        self.capture(ElementRect {
            x: 0.0,
            y: 0.0,
            width: size.0,
            height: size.1.min(16000.0),
        })
        .await
    }

    /// A PNG of one page rectangle (the element's page rectangle: correct when scrolled).
    pub async fn capture(&self, rect: ElementRect) -> Result<Vec<u8>, BrowserError> {
        let clip = Viewport {
            x: rect.x.max(0.0).floor(),
            y: rect.y.max(0.0).floor(),
            width: rect.width.max(1.0).ceil(),
            height: rect.height.max(1.0).ceil(),
            scale: 1.0,
        };
        let params = CaptureScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .clip(clip)
            .capture_beyond_viewport(true)
            .build();
        let r = cdp(
            self.timeout.max(Duration::from_secs(30)),
            "Page.captureScreenshot",
            self.page.execute(params),
        )
        .await?;
        let data: &str = r.result.data.as_ref();
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| BrowserError::Page(format!("screenshot is not base64: {e}")))
    }
}

/// True when going from `current` to `target` is a same-document navigation: the URLs
/// differ at most in the fragment and the target has one (without a fragment, navigating to
/// the same URL reloads).
fn is_same_document(current: &str, target: &Url) -> bool {
    let Ok(mut cur) = Url::parse(current) else {
        return false;
    };
    if target.fragment().is_none() {
        return false;
    }
    let mut t = target.clone();
    cur.set_fragment(None);
    t.set_fragment(None);
    cur == t
}

/// A random number for one-off markers (not security-relevant).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Cookies of a storageState as CDP cookie parameters.
pub(super) fn cookie_params(state: &StorageState) -> Vec<CookieParam> {
    state
        .cookies
        .iter()
        .filter_map(|c| {
            let mut b = CookieParam::builder()
                .name(c.name.clone())
                .value(c.value.clone())
                .domain(c.domain.clone())
                .path(c.path.clone())
                .http_only(c.http_only)
                .secure(c.secure);
            if c.expires > 0.0 {
                b = b.expires(
                    chromiumoxide::cdp::browser_protocol::network::TimeSinceEpoch::new(c.expires),
                );
            }
            b.build().ok()
        })
        .collect()
}
