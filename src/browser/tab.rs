//! One page of a run, driven through CDP.
//!
//! clerk reads the DOM from an isolated world (`Page.createIsolatedWorld`): the page's own
//! scripts cannot redefine the getters clerk uses to read text and field values back. Input
//! is typed with `Input.dispatchKeyEvent` and clicks are real mouse events, so the page sees
//! what a person's browser would send; nothing is injected into the page's own world.
//!
//! Elements are found by the locator engine in `locate.js` (CSS, role and accessible name,
//! label, text, test id; `within`, `nth`; open shadow roots pierced), prefixed to every
//! evaluation. Matching is strict: a locator that matches several elements is an error
//! naming them, never its first match. Widgets (native and ARIA selects, checkboxes and
//! switches, text fields and contenteditable) are operated with real mouse and keyboard
//! events and their state is read back afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chromiumoxide::cdp::browser_protocol::dom::SetFileInputFilesParams;
use chromiumoxide::cdp::browser_protocol::emulation::{MediaFeature, SetEmulatedMediaParams};
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchKeyEventParams, DispatchKeyEventType, DispatchMouseEventParams, DispatchMouseEventType,
    InsertTextParams, MouseButton,
};
use chromiumoxide::cdp::browser_protocol::network::CookieParam;
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, BringToFrontParams, CaptureScreenshotFormat,
    CaptureScreenshotParams, CreateIsolatedWorldParams, FrameId, Viewport,
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
    /// Set when the browser's DevTools connection closed (Chromium died).
    gone: Arc<AtomicBool>,
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

/// The locator engine and widget helpers (`locate.js`), prefixed to every evaluation in
/// clerk's isolated world. It defines `__clerk`: `resolve`, `findAll`, `find`, `describe`,
/// `visible`, `rect`, `point` and the widget helpers used below.
const PRELUDE: &str = include_str!("locate.js");

/// Ctrl as a CDP key-event modifier bit.
const CTRL: i64 = 2;

/// How long a widget gets to show the state a real input event gave it before clerk says it
/// did not take (capped by the step's timeout).
const READ_BACK: Duration = Duration::from_secs(3);

/// What an element operation in the page reported. Produced by [`element_script`] and
/// [`kept_script`]: the page-side wrapper turns the locator's resolution and the body's
/// result into one of these, so that "not found yet", "not ready yet", "ambiguous" and
/// "never possible" are told apart in Rust.
#[derive(Debug, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Outcome<T> {
    /// Found uniquely; the body returned `v`.
    Ok { v: T },
    /// Nothing matches (yet).
    Missing,
    /// Found but not ready: not visible, covered, still opening (`why`).
    Wait { why: String },
    /// More than one element matches and no `nth` picks one (`scope`: it was the `within`).
    Ambiguous {
        count: u64,
        items: Vec<String>,
        #[serde(default)]
        scope: bool,
    },
    /// The locator itself is wrong (invalid CSS, no kind).
    Invalid { message: String },
    /// The element can never be operated on this way (`msg` completes "<locator> ...").
    Fail { msg: String },
}

/// The page-side tail shared by the wrappers: maps the body's value `__v` to an outcome.
/// A body returns `{__wait: why}` to be polled again and `{__fail: msg}` to stop.
const OUTCOME_TAIL: &str = "if (__v && typeof __v === 'object' && !Array.isArray(__v)) { \
       if (typeof __v.__wait === 'string') return {k: 'wait', why: __v.__wait}; \
       if (typeof __v.__fail === 'string') return {k: 'fail', msg: __v.__fail}; } \
     return {k: 'ok', v: __v === undefined ? null : __v};";

/// Wraps `body` so it runs with `el` bound to the element `arg.loc` finds (strictly, with
/// within/nth) and `extra` to `arg.extra`.
fn element_script(body: &str) -> String {
    format!(
        "const __r = __clerk.resolve(arg.loc); \
         if (__r.error === 'ambiguous') return {{k: 'ambiguous', count: __r.count, items: __r.items, scope: !!__r.scope}}; \
         if (__r.error === 'invalid') return {{k: 'invalid', message: __r.message}}; \
         if (!__r.el) return {{k: 'missing'}}; \
         const el = __r.el, extra = arg.extra; \
         const __v = await (async () => {{ {body} }})(); {OUTCOME_TAIL}"
    )
}

/// Wraps `body` to run on the element a previous `*Prepare` kept (`__clerk.kept()`), with
/// `extra` bound to `arg`.
fn kept_script(body: &str) -> String {
    format!(
        "if (!__clerk.kept()) return {{k: 'fail', msg: 'was removed from the page'}}; \
         const extra = arg; \
         const __v = await (async () => {{ {body} }})(); {OUTCOME_TAIL}"
    )
}

/// The error for a locator that matched more than one element.
fn ambiguous(find: &Find, count: u64, items: &[String], scope: bool) -> BrowserError {
    let mut list = items.join(", ");
    if (items.len() as u64) < count {
        list.push_str(", …");
    }
    let what = if scope {
        format!("locator {}: its within: scope", find.display)
    } else {
        format!("locator {}", find.display)
    };
    BrowserError::Page(format!(
        "{what} matched {count} elements: {list} (use nth: or within: to pick one)"
    ))
}

/// The error for an outcome that ends an operation (anything but `Ok`, `Missing`, `Wait`).
fn stop_error<T>(find: &Find, outcome: Outcome<T>) -> BrowserError {
    match outcome {
        Outcome::Ambiguous {
            count,
            items,
            scope,
        } => ambiguous(find, count, &items, scope),
        Outcome::Invalid { message } => {
            BrowserError::Page(format!("locator {} is invalid: {message}", find.display))
        }
        Outcome::Fail { msg } => BrowserError::Page(format!("{} {msg}", find.display)),
        Outcome::Wait { why } => BrowserError::Page(format!("{} {why}", find.display)),
        Outcome::Ok { .. } | Outcome::Missing => BrowserError::ElementNotFound {
            selector: find.display.clone(),
            after: Duration::ZERO,
        },
    }
}

/// Whether an evaluation error is a bug in clerk's own script (report it at once) rather
/// than a page in the middle of navigating (wait and try again).
/// An error retrying cannot cure: the page's script failed, or the browser is gone.
fn is_final(e: &BrowserError) -> bool {
    matches!(e, BrowserError::Gone)
        || matches!(e, BrowserError::Page(m) if m.starts_with("script error") || m.starts_with("unexpected script result"))
}

/// One key as CDP names it. `commands` are editing commands Chromium runs with the key
/// (`selectAll`), as a platform's key bindings would.
struct KeySpec<'a> {
    key: &'a str,
    code: &'a str,
    vk: i64,
    modifiers: i64,
    commands: &'a [&'a str],
}

/// `(key, code, windows virtual key code)` for a character on a US keyboard, so pages that
/// look at `event.code` or `keyCode` see what a person's keyboard sends; `("x", "", 0)` for
/// characters without a key of their own.
fn key_for(ch: char) -> (String, String, i64) {
    let key = ch.to_string();
    match ch {
        'a'..='z' => (
            key,
            format!("Key{}", ch.to_ascii_uppercase()),
            ch.to_ascii_uppercase() as i64,
        ),
        'A'..='Z' => (key, format!("Key{ch}"), ch as i64),
        '0'..='9' => (key, format!("Digit{ch}"), ch as i64),
        ' ' => (key, "Space".into(), 32),
        '.' => (key, "Period".into(), 190),
        ',' => (key, "Comma".into(), 188),
        '-' => (key, "Minus".into(), 189),
        _ => (key, String::new(), 0),
    }
}

impl Tab {
    pub(super) async fn prepare(
        page: Page,
        guard: Guard,
        gone: Arc<AtomicBool>,
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
            gone,
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

    /// What the page shows as validation errors now: the visible text of `role=alert`
    /// elements, and the messages of form controls that are `aria-invalid` or fail the
    /// browser's own constraints (in forms that do not opt out with `novalidate`). Each at
    /// most 200 characters, at most 10.
    pub async fn validation_messages(&self) -> Result<Vec<String>, BrowserError> {
        self.eval(
            r#"const out = [];
            const seen = new Set();
            const visible = (el) => {
              const r = el.getBoundingClientRect();
              const st = getComputedStyle(el);
              return r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && st.display !== 'none';
            };
            const add = (t) => {
              t = String(t || '').replace(/\s+/g, ' ').trim().slice(0, 200);
              if (t && !seen.has(t) && out.length < 10) { seen.add(t); out.push(t); }
            };
            for (const el of document.querySelectorAll('[role=alert]')) if (visible(el)) add(el.innerText);
            for (const el of document.querySelectorAll('[aria-invalid=true]')) {
              if (!visible(el)) continue;
              const id = el.getAttribute('aria-errormessage') || '';
              const msg = id && document.getElementById(id);
              add((msg && msg.innerText) || el.validationMessage || ('invalid: ' + (el.name || el.id || el.tagName.toLowerCase())));
            }
            for (const el of document.querySelectorAll('form:not([novalidate]) :invalid')) {
              if (visible(el) && el.validationMessage) add((el.name || el.id || el.tagName.toLowerCase()) + ': ' + el.validationMessage);
            }
            return out;"#,
            serde_json::Value::Null,
        )
        .await
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
            if self.gone.load(Ordering::SeqCst) {
                return Err(BrowserError::Gone);
            }
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
        // The guard failing a main-frame navigation is an answer too: a new document that
        // submits a form while it loads is abandoned by the browser and never completes;
        // once it is interactive and its navigation was stopped, it is as loaded as it gets.
        let blocked_before = self.guard.main_navigations_blocked();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let slice = left.min(Duration::from_millis(500));
            match self
                .wait_js(cond, serde_json::json!([token, url.as_str()]), slice)
                .await?
            {
                Some(serde_json::Value::String(s)) if s == "ok" => return Ok(()),
                Some(_) => {
                    return Err(BrowserError::Page(format!(
                        "navigation to {url} failed: the browser shows an error page"
                    )))
                }
                None => {}
            }
            if !same_document && self.guard.main_navigations_blocked() > blocked_before {
                let state: Result<(bool, String), _> = self
                    .eval(
                        "return [window.__clerkDoc !== arg, document.readyState];",
                        serde_json::json!(token),
                    )
                    .await;
                if let Ok((true, ready)) = state {
                    if ready != "loading" {
                        return Ok(());
                    }
                }
            }
            if start.elapsed() >= timeout {
                return Err(BrowserError::Timeout {
                    what: format!("navigation to {url}"),
                    after: timeout,
                });
            }
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
            if self.gone.load(Ordering::SeqCst) {
                return Err(BrowserError::Gone);
            }
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
                Err(BrowserError::Gone) => return Err(BrowserError::Gone),
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

    /// Waits until the element a locator finds is visible. Fails at once when the locator
    /// matches several elements.
    pub async fn wait_visible(
        &self,
        locator: &Find,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        let _: bool = self
            .wait_element(
                locator,
                "return __clerk.visible(el) ? true : {__wait: 'not_visible'};",
                serde_json::Value::Null,
                timeout,
            )
            .await?;
        Ok(())
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
    /// between ends the wait early). A page that is not being rendered (its popup took the
    /// foreground) gets no frames: there each frame is given up after 100 ms.
    pub async fn animation_frames(&self, n: u32) -> Result<(), BrowserError> {
        let r: Result<bool, _> = self
            .eval(
                "for (let i = 0; i < arg; i++) await new Promise(r => { requestAnimationFrame(r); setTimeout(r, 100); }); return true;",
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
                     while (calm < 2 && performance.now() < deadline) { changed = false; await new Promise(r => { requestAnimationFrame(r); setTimeout(r, 100); }); calm = changed ? 0 : calm + 1; } \
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

    /// Evaluates `body` with `el` bound to the element `find` resolves to (strictly: an
    /// ambiguous locator is reported, never narrowed to its first match).
    async fn on_element<T: serde::de::DeserializeOwned>(
        &self,
        find: &Find,
        body: &str,
        extra: serde_json::Value,
    ) -> Result<Outcome<T>, BrowserError> {
        self.eval(
            &element_script(body),
            serde_json::json!({ "loc": find.spec, "extra": extra }),
        )
        .await
    }

    /// Evaluates `body` against the element a previous `*Prepare` call kept.
    async fn on_kept<T: serde::de::DeserializeOwned>(
        &self,
        body: &str,
        extra: serde_json::Value,
    ) -> Result<Outcome<T>, BrowserError> {
        self.eval(&kept_script(body), extra).await
    }

    /// Like [`Tab::on_kept`] for bodies that always answer: anything but a value is an error
    /// about `find`.
    async fn kept_value<T: serde::de::DeserializeOwned>(
        &self,
        find: &Find,
        body: &str,
        extra: serde_json::Value,
    ) -> Result<T, BrowserError> {
        match self.on_kept(body, extra).await? {
            Outcome::Ok { v } => Ok(v),
            other => Err(stop_error(find, other)),
        }
    }

    /// Reads something from the element `find` resolves to, without waiting: `None` when
    /// nothing matches, an error when several do.
    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        find: &Find,
        body: &str,
        extra: serde_json::Value,
    ) -> Result<Option<T>, BrowserError> {
        match self.on_element(find, body, extra).await? {
            Outcome::Ok { v } => Ok(Some(v)),
            Outcome::Missing | Outcome::Wait { .. } => Ok(None),
            other => Err(stop_error(find, other)),
        }
    }

    /// Polls `body` on the element `find` resolves to until it returns a value. Keeps
    /// waiting while nothing matches or the body asks to (`{__wait}`); fails at once when
    /// the locator is ambiguous or invalid or the body gives up (`{__fail}`); after
    /// `timeout`, [`BrowserError::ElementNotFound`] (or why the element was not ready).
    async fn wait_element<T: serde::de::DeserializeOwned>(
        &self,
        find: &Find,
        body: &str,
        extra: serde_json::Value,
        timeout: Duration,
    ) -> Result<T, BrowserError> {
        let start = Instant::now();
        let mut last: Option<String> = None;
        loop {
            match self.on_element(find, body, extra.clone()).await {
                Ok(Outcome::Ok { v }) => return Ok(v),
                Ok(Outcome::Missing) => last = None,
                Ok(Outcome::Wait { why }) => last = Some(why),
                Ok(other) => return Err(stop_error(find, other)),
                Err(e) if is_final(&e) => return Err(e),
                // A navigation in flight: the next poll sees the new document.
                Err(e) => tracing::debug!("waiting for {}: {e}", find.display),
            }
            if start.elapsed() >= timeout {
                return Err(match last.as_deref() {
                    None => BrowserError::ElementNotFound {
                        selector: find.display.clone(),
                        after: timeout,
                    },
                    Some("not_visible") => BrowserError::ElementNotFound {
                        selector: format!("{} (present but not visible)", find.display),
                        after: timeout,
                    },
                    Some(why) => {
                        BrowserError::Page(format!("{} {why} (after {timeout:?})", find.display))
                    }
                });
            }
            let left = timeout.saturating_sub(start.elapsed());
            self.next_change(left.min(Duration::from_millis(250)))
                .await?;
        }
    }

    /// Waits for the page to change (a DOM mutation, a history or hash change, a new
    /// document) or for `max`, whichever comes first. Fails with
    /// [`BrowserError::LoginPage`] when the page is then on one of the channel's login pages.
    async fn next_change(&self, max: Duration) -> Result<(), BrowserError> {
        let href: Result<String, _> = self
            .eval(
                "await new Promise((resolve) => { \
                   let done = false; \
                   const finish = () => { if (done) return; done = true; obs.disconnect(); clearTimeout(t); \
                     removeEventListener('hashchange', finish); removeEventListener('popstate', finish); resolve(); }; \
                   const obs = new MutationObserver(finish); \
                   obs.observe(document, {subtree: true, childList: true, attributes: true, characterData: true}); \
                   addEventListener('hashchange', finish); addEventListener('popstate', finish); \
                   const t = setTimeout(finish, arg); }); \
                 return location.href;",
                serde_json::json!(max.as_millis() as u64),
            )
            .await;
        match href {
            Ok(h) if self.is_login_page(&h) => Err(BrowserError::LoginPage(h)),
            Err(e) if is_final(&e) => Err(e),
            // A navigation replaced the document: that is a change too.
            _ => Ok(()),
        }
    }

    /// Text of the element a locator finds (`None` if there is none).
    pub async fn text(&self, locator: &Find) -> Result<Option<String>, BrowserError> {
        self.read(
            locator,
            "return el.innerText.trim();",
            serde_json::Value::Null,
        )
        .await
    }

    /// An attribute of the element a locator finds.
    pub async fn attribute(
        &self,
        locator: &Find,
        name: &str,
    ) -> Result<Option<String>, BrowserError> {
        let v: Option<Option<String>> = self
            .read(
                locator,
                "return el.getAttribute(extra);",
                serde_json::json!(name),
            )
            .await?;
        Ok(v.flatten())
    }

    /// An attribute of the element a locator finds, telling a missing element (`None`)
    /// from an element without the attribute (`Some(None)`).
    pub async fn attribute_of(
        &self,
        locator: &Find,
        name: &str,
    ) -> Result<Option<Option<String>>, BrowserError> {
        self.read(
            locator,
            "return el.getAttribute(extra);",
            serde_json::json!(name),
        )
        .await
    }

    /// The live `value` of the element a locator finds.
    pub async fn value(&self, locator: &Find) -> Result<Option<String>, BrowserError> {
        let v: Option<Option<String>> = self
            .read(
                locator,
                "return 'value' in el ? String(el.value) : null;",
                serde_json::Value::Null,
            )
            .await?;
        Ok(v.flatten())
    }

    /// Page rectangle of the element a locator finds.
    pub async fn rect(&self, locator: &Find) -> Result<Option<ElementRect>, BrowserError> {
        self.read(locator, "return __clerk.rect(el);", serde_json::Value::Null)
            .await
    }

    /// Page rectangles of every element a locator matches (all of them, not strict: this is
    /// for masking, where each match must be covered). `within` must still be unique.
    pub async fn rects(&self, locator: &Find) -> Result<Vec<ElementRect>, BrowserError> {
        let out: Outcome<Vec<ElementRect>> = self
            .eval(
                "const m = __clerk.matches(arg); \
                 if (m.error === 'ambiguous') return {k: 'ambiguous', count: m.count, items: m.items, scope: true}; \
                 if (m.error === 'invalid') return {k: 'invalid', message: m.message}; \
                 if (m.error) return {k: 'ok', v: []}; \
                 return {k: 'ok', v: m.els.map(__clerk.rect)};",
                locator.spec.clone(),
            )
            .await?;
        match out {
            Outcome::Ok { v } => Ok(v),
            other => Err(stop_error(locator, other)),
        }
    }

    /// Waits for the element, scrolls it into view and returns the viewport point where a
    /// real click reaches it (visible, inside the viewport, not covered by another element).
    async fn center(&self, locator: &Find, timeout: Duration) -> Result<(f64, f64), BrowserError> {
        self.wait_element(
            locator,
            "return __clerk.point(el);",
            serde_json::Value::Null,
            timeout,
        )
        .await
    }

    /// Brings the tab to the front when a popup it opened hid it: a hidden page renders no
    /// frames and acknowledges input only after a long delay (measured: 5 s per click).
    async fn to_front_if_hidden(&self) -> Result<(), BrowserError> {
        let hidden: bool = self
            .eval(
                "return document.visibilityState === 'hidden';",
                serde_json::Value::Null,
            )
            .await
            .unwrap_or(false);
        if hidden {
            cdp(
                self.timeout,
                "Page.bringToFront",
                self.page.execute(BringToFrontParams::default()),
            )
            .await?;
        }
        Ok(())
    }

    /// A left click at a viewport point: move, press, release, as a mouse does.
    async fn press_at(&self, x: f64, y: f64) -> Result<(), BrowserError> {
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
                let buttons = if kind == DispatchMouseEventType::MousePressed {
                    1
                } else {
                    0
                };
                b = b.button(MouseButton::Left).buttons(buttons).click_count(1);
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

    /// Sends one mouse event.
    async fn mouse(
        &self,
        params: Result<DispatchMouseEventParams, String>,
    ) -> Result<(), BrowserError> {
        let params = params.map_err(BrowserError::Page)?;
        cdp(
            self.timeout,
            "Input.dispatchMouseEvent",
            self.page.execute(params),
        )
        .await?;
        Ok(())
    }

    /// Moves the mouse to a viewport point (lists that follow the hovered item).
    async fn hover_at(&self, x: f64, y: f64) -> Result<(), BrowserError> {
        self.mouse(
            DispatchMouseEventParams::builder()
                .r#type(DispatchMouseEventType::MouseMoved)
                .x(x)
                .y(y)
                .build(),
        )
        .await
    }

    /// Turns the mouse wheel at a viewport point (scrolls lists that render lazily).
    async fn wheel_at(&self, x: f64, y: f64, delta_y: f64) -> Result<(), BrowserError> {
        self.mouse(
            DispatchMouseEventParams::builder()
                .r#type(DispatchMouseEventType::MouseWheel)
                .x(x)
                .y(y)
                .delta_x(0.0)
                .delta_y(delta_y)
                .build(),
        )
        .await
    }

    /// Clicks the element with real mouse events.
    pub async fn click(&self, locator: &Find, timeout: Duration) -> Result<(), BrowserError> {
        let (x, y) = self.center(locator, timeout).await?;
        self.to_front_if_hidden().await?;
        self.press_at(x, y).await
    }

    /// One key event for `k`, typing `text` when given.
    async fn key(
        &self,
        kind: DispatchKeyEventType,
        k: &KeySpec<'_>,
        text: Option<&str>,
    ) -> Result<(), BrowserError> {
        let mut b = DispatchKeyEventParams::builder()
            .r#type(kind)
            .key(k.key)
            .code(k.code)
            .windows_virtual_key_code(k.vk)
            .modifiers(k.modifiers);
        if let Some(t) = text {
            b = b.text(t).unmodified_text(t);
        }
        if !k.commands.is_empty() {
            b = b.commands(k.commands.iter().map(|c| c.to_string()).collect::<Vec<_>>());
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

    /// Presses and releases a key that types nothing (arrows, Backspace, Ctrl+A).
    async fn press_key(
        &self,
        key: &str,
        vk: i64,
        modifiers: i64,
        commands: &[&str],
    ) -> Result<(), BrowserError> {
        let code = if key.len() == 1 {
            format!("Key{}", key.to_ascii_uppercase())
        } else {
            key.to_owned()
        };
        let mut k = KeySpec {
            key,
            code: &code,
            vk,
            modifiers,
            commands,
        };
        self.key(DispatchKeyEventType::RawKeyDown, &k, None).await?;
        k.commands = &[];
        self.key(DispatchKeyEventType::KeyUp, &k, None).await
    }

    /// Types `value` into the focused element key by key (`\n` as Enter, tabs inserted as
    /// text so that focus stays).
    async fn type_text(&self, value: &str) -> Result<(), BrowserError> {
        for ch in value.chars() {
            if ch == '\t' {
                cdp(
                    self.timeout,
                    "Input.insertText",
                    self.page.execute(InsertTextParams::new("\t")),
                )
                .await?;
                continue;
            }
            let (key, code, vk, text) = if ch == '\n' {
                ("Enter".to_owned(), "Enter".to_owned(), 13, "\r".to_owned())
            } else {
                let (key, code, vk) = key_for(ch);
                (key, code, vk, ch.to_string())
            };
            let k = KeySpec {
                key: &key,
                code: &code,
                vk,
                modifiers: 0,
                commands: &[],
            };
            self.key(DispatchKeyEventType::KeyDown, &k, Some(&text))
                .await?;
            self.key(DispatchKeyEventType::KeyUp, &k, None).await?;
        }
        Ok(())
    }

    /// Fills a text field: clicks it, selects everything (Ctrl+A), deletes it (Backspace)
    /// and types `value` key by key, as a person would. Works on `<input>`, `<textarea>`,
    /// `contenteditable` / `role=textbox` elements and controlled inputs (React's value
    /// tracker sees real input events, so the app's state follows). Then reads the field
    /// back and fails unless it shows exactly `value`; `value` may be secret, so it is never
    /// part of an error.
    pub async fn fill(
        &self,
        locator: &Find,
        value: &str,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        #[derive(Deserialize)]
        struct Prep {
            point: (f64, f64),
            editable: bool,
            multiline: bool,
        }
        let prep: Prep = self
            .wait_element(
                locator,
                "return __clerk.fillPrepare(el);",
                serde_json::Value::Null,
                timeout,
            )
            .await?;
        let value = value.replace("\r\n", "\n");
        if value.contains('\n') && !prep.multiline {
            return Err(BrowserError::Page(format!(
                "fill {}: the value has a line break but the field is a single-line input",
                locator.display
            )));
        }
        self.press_at(prep.point.0, prep.point.1).await?;
        let focused: bool = self
            .kept_value(
                locator,
                "return __clerk.fillFocus();",
                serde_json::Value::Null,
            )
            .await?;
        if !focused {
            return Err(BrowserError::Page(format!(
                "cannot focus {}",
                locator.display
            )));
        }
        // Delete whatever is there (the old value), as a person would.
        self.press_key("a", 65, CTRL, &["selectAll"]).await?;
        self.press_key("Backspace", 8, 0, &[]).await?;
        self.type_text(&value).await?;
        let shows = |shown: &str| {
            if prep.editable {
                let clean = |s: &str| s.replace('\u{a0}', " ").trim_end_matches('\n').to_owned();
                clean(shown) == clean(&value)
            } else {
                shown == value
            }
        };
        let start = Instant::now();
        loop {
            let shown: Option<String> = self
                .kept_value(
                    locator,
                    "return __clerk.fillRead();",
                    serde_json::Value::Null,
                )
                .await?;
            if shown.as_deref().is_some_and(shows) {
                return Ok(());
            }
            if start.elapsed() >= READ_BACK.min(timeout) {
                return Err(BrowserError::Page(format!(
                    "fill {}: the field does not show the value typed (the page changed, formatted or refused it)",
                    locator.display
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Chooses an option, by value or by visible label, with real input events, then reads
    /// back that the widget shows it.
    ///
    /// A native `<select>` is focused and moved with the arrow keys, Home and End, as a
    /// keyboard user does: headless Chromium cannot open a select's popup, so there is no
    /// mouse path. Chromium fires trusted `input`/`change` events for each key that changes
    /// the selection (the shortest key sequence is used); should the page swallow the keys,
    /// the option is assigned and the same events fired, and either way the selection is
    /// read back. An ARIA combobox or listbox (MUI,
    /// Ant Design, Element Plus, Headless UI) is clicked open, its option found in the list
    /// it controls (`aria-controls`/`aria-owns`) or in a list that appeared on opening
    /// (portals at the end of `<body>` included), scrolled into view (lazily rendered lists
    /// are scrolled with the mouse wheel) and clicked. A missing option fails with the
    /// options that exist.
    pub async fn select(
        &self,
        locator: &Find,
        value: &str,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        #[derive(Deserialize)]
        struct Prep {
            kind: String,
            #[serde(default)]
            point: Option<(f64, f64)>,
        }
        let prep: Prep = self
            .wait_element(
                locator,
                "return __clerk.selectPrepare(el);",
                serde_json::Value::Null,
                timeout,
            )
            .await?;
        if prep.kind == "native" {
            self.select_native(locator, value).await
        } else {
            self.select_listbox(locator, value, prep.point, timeout)
                .await
        }
    }

    /// `select` on a native `<select>` (kept by `selectPrepare`).
    async fn select_native(&self, locator: &Find, value: &str) -> Result<(), BrowserError> {
        #[derive(Deserialize)]
        struct Plan {
            value: String,
            label: String,
            index: i64,
            keys: Vec<String>,
            focused: bool,
        }
        let plan: Plan = self
            .kept_value(
                locator,
                "return __clerk.nativePlan(extra);",
                serde_json::json!(value),
            )
            .await?;
        if plan.focused {
            for key in &plan.keys {
                let vk = match key.as_str() {
                    "ArrowDown" => 40,
                    "ArrowUp" => 38,
                    "Home" => 36,
                    "End" => 35,
                    other => {
                        return Err(BrowserError::Page(format!(
                            "select {}: unexpected key {other:?} in the plan",
                            locator.display
                        )))
                    }
                };
                self.press_key(key, vk, 0, &[]).await?;
            }
        }
        if self
            .native_selected(locator, &plan.value, plan.index)
            .await?
        {
            return Ok(());
        }
        // The page swallowed the keys (a keydown handler, an unfocusable select): choose it
        // the way the browser would and fire the same events, then check it stayed.
        tracing::debug!(
            "{}: keyboard selection did not take; assigning the option",
            locator.display
        );
        let _: bool = self
            .kept_value(
                locator,
                "return __clerk.nativeAssign(extra);",
                serde_json::json!(plan.index),
            )
            .await?;
        if self
            .native_selected(locator, &plan.value, plan.index)
            .await?
        {
            Ok(())
        } else {
            Err(BrowserError::Page(format!(
                "select {}: option {:?} did not stay selected",
                locator.display, plan.label
            )))
        }
    }

    /// Whether the kept native `<select>` now has option `index` (with `value`) selected,
    /// polled briefly: the change is applied by the browser's own event handling.
    async fn native_selected(
        &self,
        locator: &Find,
        value: &str,
        index: i64,
    ) -> Result<bool, BrowserError> {
        for _ in 0..10 {
            let now: Option<(String, i64)> = self
                .kept_value(
                    locator,
                    "const r = __clerk.nativeRead(); return r && [r.value, r.index];",
                    serde_json::Value::Null,
                )
                .await?;
            if now.as_ref().is_some_and(|(v, i)| v == value && *i == index) {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(false)
    }

    /// `select` on an ARIA combobox / listbox (kept by `selectPrepare`); `open` is where to
    /// click to open it (`None` when it is already open or always shown).
    async fn select_listbox(
        &self,
        locator: &Find,
        value: &str,
        open: Option<(f64, f64)>,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        #[derive(Deserialize)]
        struct Scroll {
            x: f64,
            y: f64,
            step: f64,
            #[serde(rename = "atTop")]
            at_top: bool,
            #[serde(rename = "atEnd")]
            at_end: bool,
        }
        #[derive(Deserialize)]
        struct Pick {
            state: String,
            #[serde(default)]
            point: Option<(f64, f64)>,
            #[serde(default)]
            label: String,
            #[serde(default)]
            value: Option<String>,
            #[serde(default)]
            options: Vec<String>,
            #[serde(default)]
            scroll: Option<Scroll>,
            #[serde(default)]
            hover: Option<(f64, f64)>,
        }
        let start = Instant::now();
        if let Some((x, y)) = open {
            self.press_at(x, y).await?;
        }
        let mut seen: Vec<String> = Vec::new();
        // A scrolled list is first wheeled to its top, then down to its end.
        let mut upwards = true;
        let mut wheels = 0;
        let mut exhausted_at: Option<Instant> = None;
        let mut waiting_why = "no list of options opened".to_owned();
        let chosen = loop {
            let pick: Outcome<Pick> = self
                .on_kept("return __clerk.ariaPick(extra);", serde_json::json!(value))
                .await?;
            match pick {
                Outcome::Ok { v } if v.state == "found" => break v,
                Outcome::Ok { v } if v.state == "missing" => {
                    for o in v.options {
                        if !seen.contains(&o) {
                            seen.push(o);
                        }
                    }
                    let mut moved = false;
                    if let Some((x, y)) = v.hover {
                        self.hover_at(x, y).await?;
                        moved = true;
                        exhausted_at = None;
                    } else if let Some(s) = v.scroll {
                        if upwards && s.at_top {
                            upwards = false;
                        }
                        if wheels < 200 && (upwards || !s.at_end) {
                            let delta = if upwards { -s.step } else { s.step };
                            self.wheel_at(s.x, s.y, delta).await?;
                            wheels += 1;
                            moved = true;
                            exhausted_at = None;
                        }
                    }
                    // Options may still be loading: fail only when the list has looked the
                    // same, fully scrolled, for a second.
                    if !moved {
                        let since = *exhausted_at.get_or_insert_with(Instant::now);
                        if since.elapsed() >= Duration::from_secs(1) || start.elapsed() >= timeout {
                            let list = if seen.is_empty() {
                                "none".to_owned()
                            } else {
                                seen.join(", ")
                            };
                            return Err(BrowserError::Page(format!(
                                "select {}: no option {value:?} (options: {list})",
                                locator.display
                            )));
                        }
                    }
                }
                Outcome::Ok { .. } => waiting_why = "no list of options opened".to_owned(),
                Outcome::Wait { why } => waiting_why = format!("the option {why}"),
                other => return Err(stop_error(locator, other)),
            }
            if start.elapsed() >= timeout {
                return Err(BrowserError::Page(format!(
                    "select {}: {waiting_why} (after {timeout:?})",
                    locator.display
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let Some((x, y)) = chosen.point else {
            return Err(BrowserError::Page(format!(
                "select {}: the option has no point to click",
                locator.display
            )));
        };
        self.press_at(x, y).await?;
        let read_back = Instant::now();
        loop {
            let shows: bool = self
                .kept_value(
                    locator,
                    "return __clerk.ariaShows(extra[0], extra[1]);",
                    serde_json::json!([chosen.label, chosen.value]),
                )
                .await?;
            if shows {
                return Ok(());
            }
            if read_back.elapsed() >= READ_BACK.min(timeout) {
                return Err(BrowserError::Page(format!(
                    "select {}: clicked option {:?} but the widget does not show it",
                    locator.display, chosen.label
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets a checkbox, radio button or switch (native, `role=checkbox`, `role=switch`,
    /// `aria-checked` / `aria-pressed`) to `checked`: clicks it only when its state differs,
    /// then reads the state back.
    pub async fn set_checked(
        &self,
        locator: &Find,
        checked: bool,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        #[derive(Deserialize)]
        struct Prep {
            checked: bool,
            radio: bool,
            point: (f64, f64),
        }
        let prep: Prep = self
            .wait_element(
                locator,
                "return __clerk.checkPrepare(el);",
                serde_json::Value::Null,
                timeout,
            )
            .await?;
        if prep.checked == checked {
            return Ok(());
        }
        if prep.radio && !checked {
            return Err(BrowserError::Page(format!(
                "{} is a radio button: it cannot be unchecked (check another option instead)",
                locator.display
            )));
        }
        self.press_at(prep.point.0, prep.point.1).await?;
        let start = Instant::now();
        loop {
            let now: Option<bool> = self
                .kept_value(
                    locator,
                    "return __clerk.checkRead();",
                    serde_json::Value::Null,
                )
                .await?;
            if now == Some(checked) {
                return Ok(());
            }
            if start.elapsed() >= READ_BACK.min(timeout) {
                return Err(BrowserError::Page(format!(
                    "{} did not change state",
                    locator.display
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Puts a local file into a file input (the located input, the input a located label
    /// is for, or the one file input inside the located element). File inputs are often
    /// hidden behind a styled button, so this waits for presence, not visibility.
    pub async fn upload(
        &self,
        locator: &Find,
        path: &std::path::Path,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        let _: bool = self
            .wait_element(
                locator,
                "return __clerk.uploadPrepare(el);",
                serde_json::Value::Null,
                timeout,
            )
            .await?;
        let ctx = self.context(false).await?;
        let params = EvaluateParams::builder()
            .expression(
                "(() => { const k = window.__clerkKept; return k && k.el && k.el.isConnected ? k.el : null; })()",
            )
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
    /// name). `None` when the control is not found or not inside a form.
    pub async fn form_values(
        &self,
        control: &Find,
    ) -> Result<Option<Vec<FieldValue>>, BrowserError> {
        let v: Option<Option<Vec<FieldValue>>> = self
            .read(
                control,
                "const f = el.form || el.closest('form'); if (!f) return null; \
                 const out = []; for (const [k, v] of new FormData(f)) out.push({name: k, value: typeof v === 'string' ? v : ('file:' + v.name)}); return out;",
                serde_json::Value::Null,
            )
            .await?;
        Ok(v.flatten())
    }

    /// The form's `method` and absolute `action` for the form containing `control`.
    pub async fn form_target(
        &self,
        control: &Find,
    ) -> Result<Option<(String, String)>, BrowserError> {
        let v: Option<Option<(String, String)>> = self
            .read(
                control,
                "const f = el.form || el.closest('form'); if (!f) return null; \
                 const m = el.getAttribute('formmethod') || f.getAttribute('method') || 'get'; \
                 const a = el.getAttribute('formaction') || f.getAttribute('action') || location.href; \
                 return [String(m).toUpperCase(), new URL(a, document.baseURI).href];",
                serde_json::Value::Null,
            )
            .await?;
        Ok(v.flatten())
    }

    /// A PNG of the whole page (beyond the viewport), at scale 1.
    pub async fn screenshot_full(&self) -> Result<Vec<u8>, BrowserError> {
        let (width, height, fits): (f64, f64, bool) = self
            .eval(
                "const d = document.documentElement, b = document.body; \
                 const w = Math.max(d.scrollWidth, b ? b.scrollWidth : 0, d.clientWidth); \
                 const h = Math.max(d.scrollHeight, b ? b.scrollHeight : 0, d.clientHeight); \
                 return [w, h, w <= innerWidth && h <= innerHeight && scrollX === 0 && scrollY === 0];",
                serde_json::Value::Null,
            )
            .await?;
        let rect = ElementRect {
            x: 0.0,
            y: 0.0,
            width,
            height: height.min(16000.0),
        };
        // A page that fits the viewport is captured from what is on screen, as Playwright
        // does: capturing "beyond the viewport" re-rasterizes and can move anti-aliased
        // edges by a colour level, so the same page would give other bytes than Playwright.
        self.capture_with(rect, !fits).await
    }

    /// A PNG of one page rectangle (the element's page rectangle: correct when scrolled).
    pub async fn capture(&self, rect: ElementRect) -> Result<Vec<u8>, BrowserError> {
        self.capture_with(rect, true).await
    }

    async fn capture_with(
        &self,
        rect: ElementRect,
        beyond_viewport: bool,
    ) -> Result<Vec<u8>, BrowserError> {
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
            .capture_beyond_viewport(beyond_viewport)
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
