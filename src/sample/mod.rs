//! The sample seller center: a small but realistic seller-center web app that clerk's demo
//! and every browser test drive.
//!
//! It serves the shop "Lotus Home Goods" on `127.0.0.1` (and, best effort, `[::1]`) with a
//! deterministic data set of 200 orders ([`orders`]), signed stateless session cookies
//! (users `ops`, `alice`, `carol`), an after-sales refund form with CSRF protection and
//! an order-notes form. Several pages deliberately misbehave the way real seller centers do
//! (analytics beacons, cross-site iframes, dedicated workers, self-submitting forms, late
//! content, pop-ups, outside links) so that clerk's network guard and evidence capture are
//! tested against them.
//!
//! Everything the server receives (except the test-control paths `/_*`) is recorded as a
//! [`LoggedRequest`], so tests can prove which writes reached the server.
//!
//! Routes and their element ids are a contract with the playbooks; see [`pages`].

mod config;
mod data;
mod form;
mod pages;
pub mod postgres;
mod probe;
mod session;
mod spa;

pub use config::{demo_config, DEMO_CONFIG_MARKER};
pub use data::{format_cny, order, orders, Item, Order, TrackingEvent, ORDER_COUNT, STATUSES};
pub use pages::SHOP_NAME;
pub use session::{COOKIE_NAME, DEFAULT_SECRET, LOGIN_SESSION_SECS, USERS};
pub use spa::{order_ref, SpaEditRecord, SpaKnobs, SpaRefundRecord, WsEvent};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::channel::{StorageState, StoredCookie};
use session::Signer;

/// Largest request body the server accepts (uploads included).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How to start a [`SampleCenter`].
#[derive(Debug, Clone, Default)]
pub struct SampleOptions {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// HMAC key for session cookies and CSRF tokens; `None` uses [`DEFAULT_SECRET`], fixed so
    /// that sessions and rendered forms survive restarts.
    pub secret: Option<String>,
}

/// One request the server received.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoggedRequest {
    /// 1-based, increasing for the life of the server (not reset by [`SampleCenter::clear_log`]).
    pub seq: u64,
    /// Upper-case method, e.g. `POST`.
    pub method: String,
    /// The `Host` header as sent, with the port: `127.0.0.1:PORT` or `localhost:PORT`.
    pub host: String,
    pub path: String,
    /// Raw query string without `?` (empty when none).
    pub query: String,
    /// Urlencoded or multipart text fields (file parts as `file:NAME (N bytes)`, repeated
    /// names joined with `,`); any other non-empty body verbatim under `_body`.
    pub form: BTreeMap<String, String>,
    /// User of a valid, unexpired session cookie, if the request carried one.
    pub user: Option<String>,
    /// When the server received it: RFC 3339 UTC with milliseconds, the journal's format.
    pub at: String,
}

/// A refund request the server received (accepted or not).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RefundRecord {
    /// `RF-0001`, `RF-0002`, … in arrival order (per server instance).
    pub refund_id: String,
    pub order_id: String,
    /// Session user who posted it.
    pub user: Option<String>,
    /// Every form field exactly as posted (including `csrf_token`).
    pub fields: BTreeMap<String, String>,
    pub csrf_valid: bool,
    /// True when the refund was created (valid CSRF and a valid amount).
    pub accepted: bool,
    /// Why it was not accepted.
    pub rejection: Option<String>,
    /// RFC 3339 UTC.
    pub received_at: String,
    /// Set when the refund was cancelled (`POST .../cancel`): the reason given.
    pub cancelled: Option<String>,
}

/// An internal order note the server received (accepted or not).
#[derive(Clone, Debug, serde::Serialize)]
pub struct NoteRecord {
    pub order_id: String,
    pub user: Option<String>,
    pub note: String,
    pub tag: String,
    pub csrf_valid: bool,
    /// True when the note was stored and is listed on the notes page.
    pub accepted: bool,
    /// RFC 3339 UTC.
    pub at: String,
}

/// How long a session made by [`SampleCenter::storage_state`] stays valid, in whole seconds.
/// Zero or negative means already expired. Converts from `std::time::Duration`,
/// `chrono::Duration` and `i64` seconds, so callers can write any of
/// `Duration::from_secs(3600)`, `chrono::Duration::seconds(-60)` or `-60`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionValidity(pub i64);

impl From<Duration> for SessionValidity {
    fn from(d: Duration) -> Self {
        SessionValidity(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
    }
}

impl From<chrono::Duration> for SessionValidity {
    fn from(d: chrono::Duration) -> Self {
        SessionValidity(d.num_seconds())
    }
}

impl From<i64> for SessionValidity {
    fn from(secs: i64) -> Self {
        SessionValidity(secs)
    }
}

/// Fields of the refund form whose default value [`SampleCenter::set_refund_default`] may set.
pub const REFUND_FIELDS: [&str; 6] = pages::REFUND_FIELDS;

struct Inner {
    seq: u64,
    log: Vec<LoggedRequest>,
    refunds: Vec<RefundRecord>,
    notes: Vec<NoteRecord>,
    refund_defaults: BTreeMap<String, String>,
    double_write: bool,
    /// The chat widget says "Chat offline" without trying its presence POST.
    chat_offline: bool,
    /// Refunds numbered so far, by either the server-rendered form or the SPA API.
    refund_no: u64,
    /// Gates opened by [`SampleCenter::open_gate`] (see `probe.rs`).
    gates: std::collections::BTreeSet<String>,
    spa: spa::SpaState,
    /// Order pages (`GET /orders/SO-…`) being answered now, and the most at once.
    order_pages_open: u64,
    order_pages_max: u64,
    /// How long an order page takes to answer.
    order_delay: std::time::Duration,
    /// See [`SampleCenter::set_misreport_status`].
    misreport_status: bool,
    /// The next this many order pages answer 503.
    order_failures: u64,
    /// The next this many account pages (the demo channel's session check) answer 503.
    account_failures: u64,
}

impl Inner {
    /// The next refund id, `RF-0001`, `RF-0002`, … (shared by both refund paths).
    fn next_refund_id(&mut self) -> String {
        self.refund_no += 1;
        format!("RF-{:04}", self.refund_no)
    }
}

struct Shared {
    signer: Signer,
    port: u16,
    inner: Mutex<Inner>,
    /// Becomes true when the server stops; long-lived WebSocket tasks watch it.
    stopped: watch::Receiver<bool>,
}

impl Shared {
    /// A panicking handler must not take the whole test server down with it, so a poisoned
    /// lock is simply reused (the data is append-only records and flags).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cross_site_base(&self) -> String {
        format!("http://localhost:{}/", self.port)
    }

    /// The `Set-Cookie` value of a fresh login session for `user` (`None` only for a name
    /// that cannot be a header value, which no known user has).
    fn login_cookie(&self, user: &str) -> Option<HeaderValue> {
        let expiry = chrono::Utc::now().timestamp() + LOGIN_SESSION_SECS;
        let cookie = format!(
            "{COOKIE_NAME}={}; HttpOnly; Path=/; SameSite=Lax; Max-Age={LOGIN_SESSION_SECS}",
            self.signer.session_value(user, expiry)
        );
        HeaderValue::from_str(&cookie).ok()
    }

    fn set_refund_default(&self, field: &str, value: &str) -> bool {
        if !REFUND_FIELDS.contains(&field) {
            return false;
        }
        self.lock()
            .refund_defaults
            .insert(field.to_owned(), value.to_owned());
        true
    }
}

/// A running sample seller center. Dropping it stops the server too (without waiting).
pub struct SampleCenter {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SampleCenter {
    /// Binds `127.0.0.1:port` (and `[::1]` on the same port when possible, so that
    /// `localhost` works whichever address a browser tries first) and serves in spawned tasks.
    pub async fn start(opts: SampleOptions) -> std::io::Result<SampleCenter> {
        let listener = TcpListener::bind(("127.0.0.1", opts.port)).await?;
        let port = listener.local_addr()?.port();
        let v6 = match TcpListener::bind(("::1", port)).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::debug!("sample seller center: not listening on [::1]:{port}: {e}");
                None
            }
        };
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            signer: Signer::new(opts.secret.as_deref()),
            port,
            inner: Mutex::new(Inner {
                seq: 0,
                log: Vec::new(),
                refunds: Vec::new(),
                notes: Vec::new(),
                refund_defaults: BTreeMap::new(),
                double_write: false,
                chat_offline: false,
                refund_no: 0,
                gates: Default::default(),
                spa: spa::SpaState::default(),
                order_pages_open: 0,
                order_pages_max: 0,
                order_delay: std::time::Duration::ZERO,
                misreport_status: false,
                order_failures: 0,
                account_failures: 0,
            }),
            stopped: stopped.clone(),
        });
        let app = router(shared.clone());
        let mut tasks = Vec::new();
        for l in std::iter::once(listener).chain(v6) {
            let app = app.clone();
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    while !*stopped.borrow_and_update() {
                        if stopped.changed().await.is_err() {
                            break;
                        }
                    }
                };
                if let Err(e) = axum::serve(l, app).with_graceful_shutdown(shutdown).await {
                    tracing::warn!("sample seller center stopped with an error: {e}");
                }
            }));
        }
        Ok(SampleCenter {
            shared,
            stop,
            tasks,
        })
    }

    /// `http://127.0.0.1:PORT/`
    pub fn base_url(&self) -> url::Url {
        url_or_panic(&format!("http://127.0.0.1:{}/", self.shared.port))
    }

    /// `http://localhost:PORT/`: the same server under another site, so that Chromium puts
    /// its frames in a separate renderer process (out-of-process iframes).
    pub fn cross_site_url(&self) -> url::Url {
        url_or_panic(&self.shared.cross_site_base())
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Every request received so far except `/_*` paths, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Received requests whose method is not GET, HEAD or OPTIONS.
    pub fn writes(&self) -> Vec<LoggedRequest> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| is_write(&r.method))
            .cloned()
            .collect()
    }

    /// Forgets the request log and the WebSocket log (sequence numbers keep increasing).
    pub fn clear_log(&self) {
        let mut inner = self.shared.lock();
        inner.log.clear();
        inner.spa.clear_ws();
    }

    /// A Playwright `storageState` holding a session cookie for `user`, valid for
    /// `valid_for` from now (see [`SessionValidity`]; zero or negative = already expired,
    /// which the server treats exactly like no session). An expired session is written as a
    /// browser-session cookie (`expires: -1`) so that the browser still sends it and the
    /// server is the one that rejects it, as with a server-side timeout.
    pub fn storage_state(&self, user: &str, valid_for: impl Into<SessionValidity>) -> StorageState {
        let valid_for = valid_for.into().0;
        let expiry = chrono::Utc::now().timestamp().saturating_add(valid_for);
        let value = self.shared.signer.session_value(user, expiry);
        StorageState {
            cookies: vec![StoredCookie {
                name: COOKIE_NAME.to_owned(),
                value,
                domain: "127.0.0.1".to_owned(),
                path: "/".to_owned(),
                expires: if valid_for > 0 { expiry as f64 } else { -1.0 },
                http_only: true,
                secure: false,
                same_site: Some("Lax".to_owned()),
            }],
            origins: Vec::new(),
        }
    }

    /// Changes the default of a refund-form field (one of [`REFUND_FIELDS`], e.g. `method` →
    /// `store_credit`) for forms served from now on. Unknown fields are ignored with a warning.
    pub fn set_refund_default(&self, field: &str, value: &str) {
        if !self.shared.set_refund_default(field, value) {
            tracing::warn!("sample seller center: refund form has no field `{field}` (known: {REFUND_FIELDS:?})");
        }
    }

    /// When on, refund forms served from now on also fire `POST /analytics/refund-submit`
    /// from their submit handler, before the form itself is submitted.
    /// The order page's chat widget shows "Chat offline" at once instead of POSTing its
    /// presence (so a tool that lets the POST out and one that blocks it capture the same
    /// pixels; for benchmarks).
    pub fn set_chat_offline(&self, on: bool) {
        self.shared.lock().chat_offline = on;
    }

    /// Order pages take `delay` to answer (a slow seller center; lets tests see how many
    /// runs overlap at the server).
    pub fn set_order_delay(&self, delay: std::time::Duration) {
        self.shared.lock().order_delay = delay;
    }

    /// The order pages (server-rendered and SPA) show the status [`MISREPORTED_STATUS`]
    /// whatever the order's data says: a script rewrites it after the data arrived. A page
    /// that shows what its server never sent (`clerk verify --server-match` reports it).
    pub fn set_misreport_status(&self, on: bool) {
        self.shared.lock().misreport_status = on;
    }

    /// The next `n` order pages answer `503 Service Unavailable` (an overloaded seller
    /// center).
    pub fn fail_next_order_pages(&self, n: u64) {
        self.shared.lock().order_failures = n;
    }

    /// The next `n` account pages (`GET /account`, the demo channel's session check) answer
    /// `503 Service Unavailable`: the seller center is failing, the session is fine.
    pub fn fail_next_account_pages(&self, n: u64) {
        self.shared.lock().account_failures = n;
    }

    /// The most order pages (`GET /orders/SO-…`) the server was answering at once.
    pub fn max_concurrent_order_pages(&self) -> u64 {
        self.shared.lock().order_pages_max
    }

    /// Opens the gate `name`: its `/probe/gate?name=NAME` pages show `#open` on their next
    /// poll. Tests use it to hold runs in the middle of a wait step until they say so.
    pub fn open_gate(&self, name: &str) {
        self.shared.lock().gates.insert(name.to_owned());
    }

    /// Closes the gate `name` again: its pages wait until [`SampleCenter::open_gate`].
    pub fn close_gate(&self, name: &str) {
        self.shared.lock().gates.remove(name);
    }

    pub fn set_double_write(&self, on: bool) {
        self.shared.lock().double_write = on;
    }

    /// Refund requests received, in arrival order.
    pub fn refunds(&self) -> Vec<RefundRecord> {
        self.shared.lock().refunds.clone()
    }

    /// Order notes received, in arrival order.
    pub fn notes(&self) -> Vec<NoteRecord> {
        self.shared.lock().notes.clone()
    }

    /// Stops accepting connections, lets in-flight requests finish (at most 5 s), then returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for SampleCenter {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The URLs built here are `http://<literal host>:<u16>/`, always valid.
fn url_or_panic(s: &str) -> url::Url {
    url::Url::parse(s).expect("http://host:port/ with a literal host and a u16 port is a valid URL")
}

fn is_write(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// What the observing middleware learned about a request, for the handlers.
#[derive(Clone, Debug)]
struct Ctx {
    user: Option<String>,
    session_expiry: Option<i64>,
    form: BTreeMap<String, String>,
}

impl Ctx {
    fn field(&self, name: &str) -> &str {
        self.form.get(name).map(String::as_str).unwrap_or("")
    }
}

/// Paths served without a session.
fn is_public(path: &str) -> bool {
    path == "/login"
        || path == "/logout"
        || path == "/promo"
        || path == "/app"
        || spa::is_session_endpoint(path)
        || [
            "/static/",
            "/widget/",
            "/promo/",
            "/analytics/",
            "/_",
            "/app/",
        ]
        .iter()
        .any(|p| path.starts_with(p))
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/orders") }))
        .route("/login", get(login_form).post(login_submit))
        .route("/logout", get(logout))
        .route("/account", get(account))
        .route("/orders", get(orders_list))
        .route("/orders/{id}", get(order_detail))
        .route("/orders/{id}/tracking", get(tracking))
        .route("/orders/{id}/refund", get(refund_form).post(refund_submit))
        .route("/orders/{id}/refund/autosave", post(refund_autosave))
        .route("/orders/{id}/refund/{refund_id}", get(refund_result))
        .route(
            "/orders/{id}/refund/{refund_id}/cancel",
            post(refund_cancel),
        )
        .route("/orders/{id}/notes", get(notes_page).post(notes_submit))
        .route("/api/orders/{id}/risk", get(risk))
        .route("/tracking/viewed", post(no_content))
        .route("/analytics/{kind}", post(no_content))
        .route("/widget/chat", get(chat_widget))
        .route("/widget/presence", post(no_content))
        .route("/widget/worker", post(no_content))
        .route("/promo", get(promo))
        .route("/promo/impression", post(no_content))
        .route(
            "/static/metrics-worker.js",
            get(|| async { javascript(pages::METRICS_WORKER_JS) }),
        )
        .route(
            "/static/widget-worker.js",
            get(|| async { javascript(pages::WIDGET_WORKER_JS) }),
        )
        .route("/_log", get(log_json))
        .route("/_log/clear", post(log_clear))
        .route("/_control/refund-default", post(control_refund_default))
        .route("/_control/double-write", post(control_double_write))
        .merge(spa::routes())
        .merge(probe::routes())
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .with_state(shared)
}

/// Runs before every handler: buffers and parses the body, resolves the session, records the
/// request (unless `/_*`) and redirects anonymous requests for protected paths to the login.
async fn observe(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable",
            )
                .into_response()
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let form = form::parse_body(content_type, &bytes);
    let now = chrono::Utc::now().timestamp();
    let session = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_from_header)
        .and_then(|v| shared.signer.check_session(v, now));
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let user = session.as_ref().map(|(u, _)| u.clone());

    if !path.starts_with("/_") {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let mut inner = shared.lock();
        inner.seq += 1;
        let entry = LoggedRequest {
            seq: inner.seq,
            method: parts.method.as_str().to_owned(),
            host,
            path: path.clone(),
            query: query.clone(),
            form: form.clone(),
            user: user.clone(),
            at: crate::evidence::timestamp(chrono::Utc::now()),
        };
        inner.log.push(entry);
    }

    // The JSON API answers 401 instead of redirecting, as an SPA's backend does; the
    // `api_401` knob makes it do so even with a valid session.
    if path.starts_with("/api/")
        && !spa::is_session_endpoint(&path)
        && (user.is_none() || shared.lock().spa.api_401(&path))
    {
        return spa::unauthorized();
    }

    if user.is_none() && !is_public(&path) {
        let target = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        let next_q: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        return Redirect::to(&format!("/login?next={next_q}")).into_response();
    }

    parts.extensions.insert(Ctx {
        user,
        session_expiry: session.map(|(_, e)| e),
        form,
    });
    if parts.method == axum::http::Method::GET && parts.uri.path() == "/account" {
        let fail = {
            let mut inner = shared.lock();
            let fail = inner.account_failures > 0;
            inner.account_failures = inner.account_failures.saturating_sub(1);
            fail
        };
        if fail {
            return unavailable();
        }
    }
    let order_page =
        parts.method == axum::http::Method::GET && parts.uri.path().starts_with("/orders/SO-");
    if !order_page {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    let (delay, fail) = {
        let mut inner = shared.lock();
        let fail = inner.order_failures > 0;
        inner.order_failures = inner.order_failures.saturating_sub(1);
        inner.order_pages_open += 1;
        inner.order_pages_max = inner.order_pages_max.max(inner.order_pages_open);
        (inner.order_delay, fail)
    };
    /// Counts the page as answered even if the client goes away mid-answer.
    struct Closing(Arc<Shared>);
    impl Drop for Closing {
        fn drop(&mut self) {
            let mut inner = self.0.lock();
            inner.order_pages_open = inner.order_pages_open.saturating_sub(1);
        }
    }
    let _closing = Closing(shared.clone());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fail {
        return unavailable();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html("<h1>Service unavailable</h1><p>Try again later.</p>"),
    )
        .into_response()
}

/// Why a page handler could not produce its page; rendered as the matching response.
#[derive(Debug, thiserror::Error)]
enum PageError {
    /// Handlers behind the session check always have a user; this keeps them honest anyway.
    #[error("not signed in")]
    NotSignedIn,
    #[error("there is no order {id}")]
    NoSuchOrder { id: String, user: Option<String> },
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::NotSignedIn => Redirect::to("/login").into_response(),
            PageError::NoSuchOrder { id, user } => {
                not_found(user.as_deref(), &format!("There is no order {id}."))
            }
        }
    }
}

fn user_of(ctx: &Ctx) -> Result<&str, PageError> {
    ctx.user.as_deref().ok_or(PageError::NotSignedIn)
}

/// The signed-in user and the order a per-order page is about.
fn user_and_order<'c>(ctx: &'c Ctx, id: &str) -> Result<(&'c str, &'static Order), PageError> {
    Ok((user_of(ctx)?, find_order(ctx, id)?))
}

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn javascript(src: &'static str) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        src,
    )
        .into_response()
}

async fn no_content() -> StatusCode {
    StatusCode::NO_CONTENT
}

fn not_found(user: Option<&str>, what: &str) -> Response {
    html(StatusCode::NOT_FOUND, pages::not_found_page(user, what))
}

/// Looks up an order for a handler (unknown ids become the 404 page).
fn find_order(ctx: &Ctx, id: &str) -> Result<&'static Order, PageError> {
    order(id).ok_or_else(|| PageError::NoSuchOrder {
        id: id.to_owned(),
        user: ctx.user.clone(),
    })
}

async fn fallback(Extension(ctx): Extension<Ctx>) -> Response {
    not_found(ctx.user.as_deref(), "This page does not exist.")
}

/// Only same-site absolute paths are followed after login (no open redirect).
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/orders"
    }
}

#[derive(Deserialize, Default)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

async fn login_form(Query(q): Query<NextQuery>) -> Response {
    html(StatusCode::OK, pages::login_page(safe_next(&q.next), None))
}

async fn login_submit(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let user = ctx.field("username").trim();
    let next = safe_next(ctx.field("next"));
    if !session::password_ok(user, ctx.field("password")) {
        return html(
            StatusCode::OK,
            pages::login_page(next, Some("Wrong user name or password.")),
        );
    }
    let mut resp = Redirect::to(next).into_response();
    match shared.login_cookie(user) {
        Some(v) => {
            resp.headers_mut().insert(header::SET_COOKIE, v);
            resp
        }
        // Unreachable for the known users, whose names are plain ASCII.
        None => html(
            StatusCode::BAD_REQUEST,
            pages::login_page(next, Some("Invalid user name.")),
        ),
    }
}

async fn logout() -> Response {
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sc_session=; HttpOnly; Path=/; SameSite=Lax; Max-Age=0"),
    );
    resp
}

async fn account(Extension(ctx): Extension<Ctx>) -> Result<Response, PageError> {
    let user = user_of(&ctx)?;
    let expires = ctx
        .session_expiry
        .and_then(|e| chrono::DateTime::from_timestamp(e, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    Ok(html(StatusCode::OK, pages::account_page(user, &expires)))
}

#[derive(Deserialize, Default)]
struct OrdersQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    page: String,
}

/// Orders per page of the list.
pub const PAGE_SIZE: usize = 20;

async fn orders_list(
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<OrdersQuery>,
) -> Result<Response, PageError> {
    let user = user_of(&ctx)?;
    let needle = q.q.trim().to_lowercase();
    let matches: Vec<&Order> = orders()
        .iter()
        .filter(|o| q.status.is_empty() || o.status == q.status)
        .filter(|o| {
            needle.is_empty()
                || o.id.to_lowercase().contains(&needle)
                || o.customer.to_lowercase().contains(&needle)
                || o.tracking_no
                    .as_deref()
                    .is_some_and(|t| t.to_lowercase().contains(&needle))
        })
        .collect();
    let pages = matches.len().div_ceil(PAGE_SIZE).max(1);
    let page = q.page.trim().parse::<usize>().unwrap_or(1).clamp(1, pages);
    let start = (page - 1) * PAGE_SIZE;
    let rows: Vec<&Order> = matches
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .copied()
        .collect();
    let view = pages::OrdersView {
        q: &q.q,
        status: &q.status,
        page,
        pages,
        total_matches: matches.len(),
        rows: &rows,
    };
    Ok(html(StatusCode::OK, pages::orders_page(user, &view)))
}

async fn order_detail(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (user, order) = user_and_order(&ctx, &id)?;
    let mut page = pages::order_page(user, order, &shared.cross_site_base());
    if shared.lock().misreport_status {
        let script = format!(
            "<script>document.getElementById('order-status').textContent = '{MISREPORTED_STATUS}';</script></body>"
        );
        page = page.replacen("</body>", &script, 1);
    }
    Ok(html(StatusCode::OK, page))
}

/// What the order pages show as the status under [`SampleCenter::set_misreport_status`]
/// (no order has it; the SPA's script holds it too).
pub const MISREPORTED_STATUS: &str = "Cancelled by buyer";

async fn tracking(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (user, order) = user_and_order(&ctx, &id)?;
    Ok(html(StatusCode::OK, pages::tracking_page(user, order)))
}

/// A deterministic risk assessment, served late to the order page's `#risk-panel`.
async fn risk(Extension(ctx): Extension<Ctx>, Path(id): Path<String>) -> Response {
    let order = match find_order(&ctx, &id) {
        Ok(o) => o,
        Err(_) => {
            return (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "no such order"})),
            )
                .into_response()
        }
    };
    let score = (order.total_cents / 100 + i64::from(order.items.len() as u32) * 7) % 100;
    let level = match score {
        0..=39 => "low",
        40..=74 => "medium",
        _ => "high",
    };
    Json(serde_json::json!({"order_id": order.id, "level": level, "score": score})).into_response()
}

async fn refund_form(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (user, order) = user_and_order(&ctx, &id)?;
    let (defaults, double_write) = {
        let inner = shared.lock();
        (inner.refund_defaults.clone(), inner.double_write)
    };
    let csrf = shared.signer.csrf_token(user, &order.id);
    Ok(html(
        StatusCode::OK,
        pages::refund_page(user, order, &csrf, &defaults, double_write, None),
    ))
}

/// Parses a refund amount such as `12.5` or `12.50` into cents; at most two decimals.
fn parse_amount_cents(text: &str) -> Option<i64> {
    let t = text.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 2
        || !frac.chars().all(|c| c.is_ascii_digit())
        || (t.contains('.') && frac.is_empty())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().ok()?
    };
    whole.checked_mul(100)?.checked_add(frac)
}

async fn refund_submit(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (user, order) = user_and_order(&ctx, &id)?;
    let csrf_valid = shared
        .signer
        .check_csrf(user, &order.id, ctx.field("csrf_token"));
    let amount = parse_amount_cents(ctx.field("amount"));
    let rejection = if !csrf_valid {
        Some("invalid CSRF token".to_owned())
    } else {
        match amount {
            None => Some(
                "Refund amount must be a number with at most two decimals, e.g. 12.50.".to_owned(),
            ),
            Some(0) => Some("Refund amount must be greater than zero.".to_owned()),
            Some(c) if c > order.total_cents => Some(format!(
                "Refund amount {} exceeds the order total {}.",
                format_cny(c),
                order.total_display()
            )),
            Some(_) => None,
        }
    };
    let record = {
        let mut inner = shared.lock();
        let record = RefundRecord {
            refund_id: inner.next_refund_id(),
            order_id: order.id.clone(),
            user: Some(user.to_owned()),
            fields: ctx.form.clone(),
            csrf_valid,
            accepted: rejection.is_none(),
            rejection: rejection.clone(),
            received_at: now_rfc3339(),
            cancelled: None,
        };
        inner.refunds.push(record.clone());
        record
    };
    Ok(match rejection {
        None => Redirect::to(&format!("/orders/{}/refund/{}", order.id, record.refund_id))
            .into_response(),
        Some(_) if !csrf_valid => html(StatusCode::FORBIDDEN, pages::csrf_error_page(user, order)),
        Some(message) => {
            // Re-render the form with what was posted, as a seller center does on a
            // validation error.
            let mut posted = ctx.form.clone();
            posted.remove("csrf_token");
            if !posted.contains_key("notify") {
                posted.insert("notify".to_owned(), String::new());
            }
            let csrf = shared.signer.csrf_token(user, &order.id);
            let page = pages::refund_page(
                user,
                order,
                &csrf,
                &posted,
                shared.lock().double_write,
                Some(&message),
            );
            html(StatusCode::UNPROCESSABLE_ENTITY, page)
        }
    })
}

async fn refund_autosave(
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    find_order(&ctx, &id)?;
    Ok(Json(serde_json::json!({"saved": true, "at": now_rfc3339()})).into_response())
}

async fn refund_result(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path((id, refund_id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (user, order) = user_and_order(&ctx, &id)?;
    let record = shared
        .lock()
        .refunds
        .iter()
        .find(|r| r.accepted && r.refund_id == refund_id && r.order_id == order.id)
        .cloned();
    Ok(match record {
        Some(rec) => {
            let amount =
                parse_amount_cents(rec.fields.get("amount").map(String::as_str).unwrap_or(""))
                    .map(format_cny)
                    .unwrap_or_default();
            let csrf = shared.signer.csrf_token(user, &order.id);
            html(
                StatusCode::OK,
                pages::refund_result_page(user, order, &rec, &amount, &csrf),
            )
        }
        None => not_found(
            Some(user),
            &format!("There is no refund {refund_id} for order {}.", order.id),
        ),
    })
}

/// Cancels an accepted refund (the compensating action of a refund): the form on the
/// refund's page, CSRF-checked; a refund is cancelled at most once.
async fn refund_cancel(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path((id, refund_id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (user, order) = user_and_order(&ctx, &id)?;
    if !shared
        .signer
        .check_csrf(user, &order.id, ctx.field("csrf_token"))
    {
        return Ok(html(
            StatusCode::FORBIDDEN,
            pages::csrf_error_page(user, order),
        ));
    }
    let reason = ctx.field("reason").trim().to_owned();
    let mut inner = shared.lock();
    let Some(rec) = inner
        .refunds
        .iter_mut()
        .find(|r| r.accepted && r.refund_id == refund_id && r.order_id == order.id)
    else {
        drop(inner);
        return Ok(not_found(
            Some(user),
            &format!("There is no refund {refund_id} for order {}.", order.id),
        ));
    };
    if rec.cancelled.is_none() {
        rec.cancelled = Some(if reason.is_empty() {
            "no reason given".into()
        } else {
            reason
        });
    }
    drop(inner);
    Ok(Redirect::to(&format!("/orders/{}/refund/{refund_id}", order.id)).into_response())
}

async fn notes_page(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (user, order) = user_and_order(&ctx, &id)?;
    let notes: Vec<NoteRecord> = shared
        .lock()
        .notes
        .iter()
        .filter(|n| n.accepted && n.order_id == order.id)
        .cloned()
        .collect();
    let refs: Vec<&NoteRecord> = notes.iter().collect();
    let csrf = shared.signer.csrf_token(user, &order.id);
    Ok(html(
        StatusCode::OK,
        pages::notes_page(user, order, &refs, &csrf),
    ))
}

async fn notes_submit(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (user, order) = user_and_order(&ctx, &id)?;
    let csrf_valid = shared
        .signer
        .check_csrf(user, &order.id, ctx.field("csrf_token"));
    let note = ctx.field("note").trim().to_owned();
    let accepted = csrf_valid && !note.is_empty();
    shared.lock().notes.push(NoteRecord {
        order_id: order.id.clone(),
        user: Some(user.to_owned()),
        note,
        tag: ctx.field("tag").to_owned(),
        csrf_valid,
        accepted,
        at: now_rfc3339(),
    });
    if !csrf_valid {
        return Ok(html(
            StatusCode::FORBIDDEN,
            pages::csrf_error_page(user, order),
        ));
    }
    // An empty note is ignored, as most seller centers do; the list is shown again.
    Ok(Redirect::to(&format!("/orders/{}/notes", order.id)).into_response())
}

#[derive(Deserialize, Default)]
struct OrderParam {
    #[serde(default)]
    order: String,
}

async fn chat_widget(State(shared): State<Arc<Shared>>, Query(q): Query<OrderParam>) -> Response {
    let offline = shared.lock().chat_offline;
    html(StatusCode::OK, pages::chat_widget_page(&q.order, offline))
}

async fn promo(Extension(ctx): Extension<Ctx>, Query(q): Query<OrderParam>) -> Response {
    html(
        StatusCode::OK,
        pages::promo_page(ctx.user.as_deref(), &q.order),
    )
}

#[derive(Deserialize, Default)]
struct LogQuery {
    #[serde(default)]
    writes: String,
}

async fn log_json(State(shared): State<Arc<Shared>>, Query(q): Query<LogQuery>) -> Response {
    let only_writes = matches!(q.writes.as_str(), "1" | "true" | "yes");
    let log: Vec<LoggedRequest> = shared
        .lock()
        .log
        .iter()
        .filter(|r| !only_writes || is_write(&r.method))
        .cloned()
        .collect();
    Json(log).into_response()
}

async fn log_clear(State(shared): State<Arc<Shared>>) -> StatusCode {
    let mut inner = shared.lock();
    inner.log.clear();
    inner.spa.clear_ws();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize, Default)]
struct RefundDefaultQuery {
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: String,
}

async fn control_refund_default(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<RefundDefaultQuery>,
) -> Response {
    if shared.set_refund_default(&q.field, &q.value) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "unknown refund field `{}`; known: {}",
                q.field,
                REFUND_FIELDS.join(", ")
            ),
        )
            .into_response()
    }
}

#[derive(Deserialize, Default)]
struct OnQuery {
    #[serde(default)]
    on: String,
}

async fn control_double_write(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<OnQuery>,
) -> Response {
    let on = match q.on.as_str() {
        "1" | "true" | "on" => true,
        "0" | "false" | "off" => false,
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!("on must be 1 or 0, not `{other}`"),
            )
                .into_response()
        }
    };
    shared.lock().double_write = on;
    StatusCode::NO_CONTENT.into_response()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount_cents("12.50"), Some(1250));
        assert_eq!(parse_amount_cents("12.5"), Some(1250));
        assert_eq!(parse_amount_cents(" 7 "), Some(700));
        assert_eq!(parse_amount_cents("0.05"), Some(5));
        for bad in ["", "12.", ".5", "1.234", "-3", "1e3", "12,50", "abc"] {
            assert_eq!(parse_amount_cents(bad), None, "{bad}");
        }
    }

    #[test]
    fn next_is_never_an_open_redirect() {
        assert_eq!(safe_next("/orders/SO-100001"), "/orders/SO-100001");
        assert_eq!(safe_next("//evil.example/"), "/orders");
        assert_eq!(safe_next("http://evil.example/"), "/orders");
        assert_eq!(safe_next(""), "/orders");
    }

    #[test]
    fn public_paths() {
        assert!(is_public("/login"));
        assert!(is_public("/static/metrics-worker.js"));
        assert!(is_public("/_log"));
        assert!(!is_public("/orders"));
        assert!(!is_public("/promotions"));
    }
}
