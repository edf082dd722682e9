//! The sample seller center's single-page app (`/app/`) and the JSON API it talks to
//! (`/api/…`, `WS /api/feed`).
//!
//! Real seller centers are mostly admin consoles built as single-page apps: a static shell,
//! hash routes, forms sent by `fetch` as JSON with a CSRF header, custom ARIA widgets, a
//! live WebSocket feed and shadow-DOM components. The server-rendered pages next to this
//! module cannot exercise any of that, so clerk's SPA navigation, locators, widget
//! drivers, held-write approvals and WebSocket guard are tested against this app instead.
//! It is plain JavaScript with no build step (the assets under `app/` are embedded with
//! `include_str!`), reuses the order data set and the signed session cookie (so
//! [`SampleCenter::storage_state`] works for it too), and shares the request log: every
//! JSON write shows up in [`SampleCenter::writes`] with its raw body under `_body`.
//!
//! WebSocket traffic never appears in the HTTP log (only its handshake `GET` does), so the
//! feed records connections, every client frame and closes as [`WsEvent`]s
//! ([`SampleCenter::ws_events`], `GET /_log/ws`), numbered with the same sequence as the
//! HTTP log.
//!
//! Test knobs ([`SpaKnobs`], `POST /_control/spa?…`) make the app misbehave in the ways the
//! approval gate must catch: an extra body field, a second write, no write at all, a changed
//! server-provided default, and an API that answers 401 to everything.
//!
//! The DOM the app renders (test ids, roles, labels) is a contract with the playbooks and
//! is described in README.md ("The sample single-page app").

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::data::{format_cny, order, orders, Order};
use super::pages::{METHODS, REASONS};
use super::{html, javascript, now_rfc3339, parse_amount_cents, Ctx, SampleCenter, Shared};

/// How often the live feed pushes a status message.
const FEED_INTERVAL: Duration = Duration::from_millis(500);

/// Server-side part of the tracking number's lateness; the app waits a little more before
/// asking, so `[data-testid=tracking-no]` appears a few hundred ms after the order data.
const TRACKING_DELAY: Duration = Duration::from_millis(250);

/// Longest shipping note `PUT /api/orders/:id` accepts, in characters.
const MAX_SHIPPING_NOTE: usize = 500;

/// Orders per page of `GET /api/orders`.
const API_PAGE_SIZE: usize = 20;

const INDEX_HTML: &str = include_str!("app/index.html");
const APP_JS: &str = include_str!("app/app.js");
const APP_CSS: &str = include_str!("app/app.css");
const HOSTILE_SW_HTML: &str = include_str!("app/hostile/sw.html");
const HOSTILE_SW_JS: &str = include_str!("app/hostile/sw.js");
const HOSTILE_SRCDOC_HTML: &str = include_str!("app/hostile/srcdoc.html");
const HOSTILE_WS_HTML: &str = include_str!("app/hostile/ws.html");
const HOSTILE_AUTOSUBMIT_HTML: &str = include_str!("app/hostile/autosubmit.html");
/// A small app routed with the History API (`/app/h/...`), next to the hash-routed one.
const HISTORY_HTML: &str = include_str!("app/history.html");

/// Test knobs of the SPA (all off / `None` by default).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpaKnobs {
    /// The app adds `"coupon":"SAVE10"` to the refund body.
    pub extra_field: bool,
    /// The app sends the refund POST twice at once (a double-submit bug).
    pub double_write: bool,
    /// The refund submit button does nothing observable on the network.
    pub no_write: bool,
    /// The refund form refuses to send and shows this message instead (`role=alert`), as a
    /// form with client-side validation does: clicking submit sends no write at all.
    pub client_error: Option<String>,
    /// The app sends the refund amount as a JSON number (`12.5`) instead of the string the
    /// input holds (`"12.5"`): the same digits, another type.
    pub amount_as_number: bool,
    /// Every `/api/*` call (except `/api/login` and `/api/logout`) answers 401.
    pub api_401: bool,
    /// The order page does not open its live WebSocket feed (for benchmarks that compare
    /// screenshots with a tool that lets the feed connect).
    pub no_feed: bool,
    /// Only the API calls about this order answer 401: a session that "expires" in the
    /// middle of a run that looks up several orders.
    pub api_401_order: Option<String>,
    /// Overrides the server-provided default of the "Refund method" select
    /// (`original_payment` otherwise); an unknown value is offered as an extra option.
    pub refund_method_default: Option<String>,
}

/// A refund request the SPA API received (accepted or not).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SpaRefundRecord {
    /// `RF-0001`, … shared with the server-rendered refunds; empty when not accepted.
    pub refund_id: String,
    pub order_id: String,
    pub user: Option<String>,
    /// The request body parsed as JSON (`Null` when it was not JSON).
    pub body: Value,
    /// The request body exactly as received (lossy UTF-8).
    pub raw: String,
    /// Whether `X-CSRF-Token` matched the session's token.
    pub csrf_valid: bool,
    pub accepted: bool,
    pub rejection: Option<String>,
    /// RFC 3339 UTC.
    pub received_at: String,
}

/// A shipping-note edit (`PUT /api/orders/:id`) the SPA API received (accepted or not).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SpaEditRecord {
    pub order_id: String,
    pub user: Option<String>,
    /// The request body parsed as JSON (`Null` when it was not JSON).
    pub body: Value,
    pub raw: String,
    pub csrf_valid: bool,
    pub accepted: bool,
    /// RFC 3339 UTC.
    pub received_at: String,
}

/// One WebSocket event on `/api/feed`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WsEvent {
    /// Same sequence as [`super::LoggedRequest::seq`], so both logs can be interleaved.
    pub seq: u64,
    /// 1-based connection number (per server instance).
    pub conn: u64,
    /// `connect`, `frame` (sent by the client) or `close`.
    pub kind: String,
    /// Request path of the handshake (`/api/feed`) and its query, if any.
    pub path: String,
    pub user: Option<String>,
    /// Text of a frame (lossy UTF-8 for a binary frame); `None` for connect/close.
    pub text: Option<String>,
    /// True for a binary frame.
    pub binary: bool,
    /// RFC 3339 UTC.
    pub at: String,
}

/// The SPA's part of the server state.
#[derive(Default)]
pub(super) struct SpaState {
    knobs: SpaKnobs,
    refunds: Vec<SpaRefundRecord>,
    edits: Vec<SpaEditRecord>,
    ws: Vec<WsEvent>,
    ws_conns: u64,
    /// Shipping notes saved through the API, by order id.
    shipping_notes: std::collections::BTreeMap<String, String>,
}

impl SpaState {
    pub(super) fn api_401(&self, path: &str) -> bool {
        self.knobs.api_401
            || self
                .knobs
                .api_401_order
                .as_deref()
                .is_some_and(|id| path.starts_with(&format!("/api/orders/{id}")))
    }

    pub(super) fn clear_ws(&mut self) {
        self.ws.clear();
    }
}

/// The order reference shown in `.ref` on the SPA's detail page, e.g. `LHG-20240305-0123`:
/// derived from the order (no state), so tests can compute it.
pub fn order_ref(order: &Order) -> String {
    let date: String = order
        .created
        .chars()
        .take(10)
        .filter(char::is_ascii_digit)
        .collect();
    let n = order.id.trim_start_matches("SO-");
    let tail = n.get(n.len().saturating_sub(4)..).unwrap_or(n);
    format!("LHG-{date}-{tail}")
}

/// Paths under `/api/` that manage the session itself: served without one, and exempt from
/// the `api_401` knob (so a test can still log in and out).
pub(super) fn is_session_endpoint(path: &str) -> bool {
    path == "/api/login" || path == "/api/logout"
}

/// The 401 every API call answers without a valid session.
pub(super) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "not signed in", "login": "/app/#/login"})),
    )
        .into_response()
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn css(src: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], src).into_response()
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/app", get(|| async { Redirect::to("/app/") }))
        .route("/app/", get(shell))
        .route("/app/app.js", get(|| async { javascript(APP_JS) }))
        .route("/app/app.css", get(|| async { css(APP_CSS) }))
        .route(
            "/app/hostile/sw.html",
            get(|| async { html(StatusCode::OK, HOSTILE_SW_HTML.to_owned()) }),
        )
        .route(
            "/app/hostile/sw.js",
            get(|| async { javascript(HOSTILE_SW_JS) }),
        )
        .route(
            "/app/hostile/srcdoc.html",
            get(|| async { html(StatusCode::OK, HOSTILE_SRCDOC_HTML.to_owned()) }),
        )
        .route(
            "/app/hostile/ws.html",
            get(|| async { html(StatusCode::OK, HOSTILE_WS_HTML.to_owned()) }),
        )
        .route(
            "/app/hostile/autosubmit.html",
            get(|| async { html(StatusCode::OK, HOSTILE_AUTOSUBMIT_HTML.to_owned()) }),
        )
        .route("/api/keepalive", post(hostile_write))
        .route(
            "/app/h/{*route}",
            get(|| async { html(StatusCode::OK, HISTORY_HTML.to_owned()) }),
        )
        .route("/api/login", post(api_login))
        .route("/api/logout", post(api_logout))
        .route("/api/me", get(api_me))
        .route("/api/csrf", get(api_csrf))
        .route("/api/orders", get(api_orders))
        .route("/api/orders/{id}", get(api_order).put(api_edit))
        .route("/api/orders/{id}/tracking", get(api_tracking))
        .route("/api/orders/{id}/refund-form", get(api_refund_form))
        .route("/api/orders/{id}/refunds", post(api_refund))
        .route("/api/feed", get(api_feed))
        .route("/api/sw-install", post(hostile_write))
        .route("/api/srcdoc-submit", post(srcdoc_submit))
        .route("/_log/ws", get(ws_log))
        .route("/_control/spa", get(control_get).post(control_spa))
}

/// The CSRF token of the session in `ctx`: bound to the user and the session's expiry, and
/// stateless like the session itself, so it survives a server restart between a draft and
/// its submit.
fn session_csrf(shared: &Shared, ctx: &Ctx) -> Option<String> {
    let user = ctx.user.as_deref()?;
    let expiry = ctx.session_expiry?;
    Some(
        shared
            .signer
            .csrf_token(user, &format!("spa-session:{expiry}")),
    )
}

fn csrf_ok(shared: &Shared, ctx: &Ctx, headers: &HeaderMap) -> bool {
    let (Some(user), Some(expiry)) = (ctx.user.as_deref(), ctx.session_expiry) else {
        return false;
    };
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    shared
        .signer
        .check_csrf(user, &format!("spa-session:{expiry}"), token)
}

/// The shell, with the session's CSRF token in `<meta name="csrf-token">` (empty without a
/// session; the app asks `/api/csrf` after logging in).
async fn shell(State(shared): State<Arc<Shared>>, Extension(ctx): Extension<Ctx>) -> Response {
    let token = session_csrf(&shared, &ctx).unwrap_or_default();
    html(StatusCode::OK, INDEX_HTML.replace("__CSRF_TOKEN__", &token))
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn api_login(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(login) = serde_json::from_slice::<LoginBody>(&body) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "expected JSON {username, password}",
        );
    };
    let user = login.username.trim();
    if !super::session::password_ok(user, &login.password) {
        return api_error(StatusCode::UNAUTHORIZED, "Wrong user name or password.");
    }
    match shared.login_cookie(user) {
        Some(cookie) => {
            let mut resp = Json(json!({ "user": user })).into_response();
            resp.headers_mut().insert(header::SET_COOKIE, cookie);
            resp
        }
        None => api_error(StatusCode::BAD_REQUEST, "invalid user name"),
    }
}

async fn api_logout() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sc_session=; HttpOnly; Path=/; SameSite=Lax; Max-Age=0"),
    );
    resp
}

async fn api_me(State(shared): State<Arc<Shared>>, Extension(ctx): Extension<Ctx>) -> Response {
    let Some(user) = ctx.user.as_deref() else {
        return unauthorized();
    };
    let (live_feed, misreport) = {
        let inner = shared.lock();
        (!inner.spa.knobs.no_feed, inner.misreport_status)
    };
    let expires = ctx
        .session_expiry
        .and_then(|e| chrono::DateTime::from_timestamp(e, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Json(
        json!({"user": user, "shop": super::SHOP_NAME, "session_expires": expires,
                "features": {"live_feed": live_feed, "misreport_status": misreport}}),
    )
    .into_response()
}

async fn api_csrf(State(shared): State<Arc<Shared>>, Extension(ctx): Extension<Ctx>) -> Response {
    match session_csrf(&shared, &ctx) {
        Some(token) => Json(json!({ "token": token })).into_response(),
        None => unauthorized(),
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: String,
}

fn order_summary(o: &Order) -> Value {
    json!({
        "id": o.id,
        "status": o.status,
        "created": o.created,
        "customer": o.customer,
        "total": o.total_display(),
        "total_cents": o.total_cents,
    })
}

async fn api_orders(Query(q): Query<ListQuery>) -> Response {
    let needle = q.q.trim().to_lowercase();
    let matches: Vec<&Order> = orders()
        .iter()
        .filter(|o| {
            needle.is_empty()
                || o.id.to_lowercase().contains(&needle)
                || o.customer.to_lowercase().contains(&needle)
                || o.tracking_no
                    .as_deref()
                    .is_some_and(|t| t.to_lowercase().contains(&needle))
        })
        .collect();
    let pages = matches.len().div_ceil(API_PAGE_SIZE).max(1);
    let page = q.page.trim().parse::<usize>().unwrap_or(1).clamp(1, pages);
    let rows: Vec<Value> = matches
        .iter()
        .skip((page - 1) * API_PAGE_SIZE)
        .take(API_PAGE_SIZE)
        .map(|o| order_summary(o))
        .collect();
    Json(json!({
        "q": q.q,
        "page": page,
        "pages": pages,
        "total": matches.len(),
        "orders": rows,
    }))
    .into_response()
}

/// Why an API handler cannot answer with data.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("there is no order {0}")]
    NoSuchOrder(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::NoSuchOrder(_) => api_error(StatusCode::NOT_FOUND, &self.to_string()),
        }
    }
}

fn find(id: &str) -> Result<&'static Order, ApiError> {
    order(id).ok_or_else(|| ApiError::NoSuchOrder(id.to_owned()))
}

async fn api_order(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let o = match find(&id) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let note = shared
        .lock()
        .spa
        .shipping_notes
        .get(&o.id)
        .cloned()
        .unwrap_or_default();
    let items: Vec<Value> = o
        .items
        .iter()
        .map(|i| {
            json!({
                "sku": i.sku,
                "name": i.name,
                "quantity": i.quantity,
                "unit_price": format_cny(i.unit_price_cents),
                "line_total": format_cny(i.line_total_cents()),
            })
        })
        .collect();
    let mut v = order_summary(o);
    if let Value::Object(m) = &mut v {
        m.insert("ref".into(), json!(order_ref(o)));
        m.insert("items".into(), json!(items));
        m.insert("carrier".into(), json!(o.carrier));
        m.insert("shipping_note".into(), json!(note));
        m.insert("phone".into(), json!(o.phone));
    }
    Json(v).into_response()
}

async fn api_tracking(Path(id): Path<String>) -> Response {
    let o = match find(&id) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    tokio::time::sleep(TRACKING_DELAY).await;
    Json(json!({
        "order_id": o.id,
        "carrier": o.carrier,
        "tracking_no": o.tracking_no,
        "events": o.events,
    }))
    .into_response()
}

fn choices(list: &[(&str, &str)]) -> Vec<Value> {
    list.iter()
        .map(|(value, label)| json!({"value": value, "label": label}))
        .collect()
}

/// What the refund form needs from the server: choices, the method default and the app's
/// feature flags (where the test knobs reach the app).
async fn api_refund_form(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let o = match find(&id) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let knobs = shared.lock().spa.knobs.clone();
    let method_default = knobs
        .refund_method_default
        .clone()
        .unwrap_or_else(|| "original_payment".to_owned());
    let mut methods = choices(&METHODS);
    if !METHODS.iter().any(|(v, _)| *v == method_default) {
        methods.push(json!({"value": method_default, "label": method_default}));
    }
    Json(json!({
        "order_id": o.id,
        "total": o.total_display(),
        "max_amount": format!("{}.{:02}", o.total_cents / 100, o.total_cents % 100),
        "reasons": choices(&REASONS),
        "methods": methods,
        "method_default": method_default,
        "features": {
            "extra_field": knobs.extra_field,
            "double_write": knobs.double_write,
            "no_write": knobs.no_write,
            "amount_as_number": knobs.amount_as_number,
            "client_error": knobs.client_error,
        },
    }))
    .into_response()
}

/// An amount sent as a JSON string (`"12.50"`) or number (`12.5`), in cents.
fn amount_cents(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => parse_amount_cents(s),
        Value::Number(n) => parse_amount_cents(&n.to_string()),
        _ => None,
    }
}

/// Why a refund body is not acceptable, if it is not.
fn refund_rejection(o: &Order, body: &Value, method_default: &str) -> Option<String> {
    let Value::Object(m) = body else {
        return Some("expected a JSON object".to_owned());
    };
    match amount_cents(m.get("amount")) {
        None => {
            return Some(
                "Refund amount must be a number with at most two decimals, e.g. 12.50.".into(),
            )
        }
        Some(0) => return Some("Refund amount must be greater than zero.".into()),
        Some(c) if c > o.total_cents => {
            return Some(format!(
                "Refund amount {} exceeds the order total {}.",
                format_cny(c),
                o.total_display()
            ))
        }
        Some(_) => {}
    }
    let reason = m.get("reason").and_then(Value::as_str).unwrap_or("");
    if !REASONS.iter().any(|(v, _)| *v == reason) {
        return Some(format!("Unknown refund reason `{reason}`."));
    }
    let method = m.get("method").and_then(Value::as_str).unwrap_or("");
    if method != method_default && !METHODS.iter().any(|(v, _)| *v == method) {
        return Some(format!("Unknown refund method `{method}`."));
    }
    None
}

async fn api_refund(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let o = match find(&id) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let csrf_valid = csrf_ok(&shared, &ctx, &headers);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let mut inner = shared.lock();
    let method_default = inner
        .spa
        .knobs
        .refund_method_default
        .clone()
        .unwrap_or_else(|| "original_payment".to_owned());
    let (status, rejection) = if !csrf_valid {
        (StatusCode::FORBIDDEN, Some("invalid CSRF token".to_owned()))
    } else {
        match &parsed {
            None => (
                StatusCode::BAD_REQUEST,
                Some("the body is not JSON".to_owned()),
            ),
            Some(v) => match refund_rejection(o, v, &method_default) {
                Some(why) => (StatusCode::UNPROCESSABLE_ENTITY, Some(why)),
                None => (StatusCode::CREATED, None),
            },
        }
    };
    let refund_id = if rejection.is_none() {
        inner.next_refund_id()
    } else {
        String::new()
    };
    inner.spa.refunds.push(SpaRefundRecord {
        refund_id: refund_id.clone(),
        order_id: o.id.clone(),
        user: ctx.user.clone(),
        body: parsed.unwrap_or(Value::Null),
        raw: String::from_utf8_lossy(&body).into_owned(),
        csrf_valid,
        accepted: rejection.is_none(),
        rejection: rejection.clone(),
        received_at: now_rfc3339(),
    });
    drop(inner);
    match rejection {
        None => (
            status,
            Json(json!({"refund_id": refund_id, "order_id": o.id, "status": "requested"})),
        )
            .into_response(),
        Some(why) => api_error(status, &why),
    }
}

async fn api_edit(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let o = match find(&id) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let csrf_valid = csrf_ok(&shared, &ctx, &headers);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let note = parsed
        .as_ref()
        .and_then(|v| v.get("shipping_note"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (status, error) = match (&note, csrf_valid) {
        (_, false) => (StatusCode::FORBIDDEN, Some("invalid CSRF token".to_owned())),
        (None, true) => (
            StatusCode::BAD_REQUEST,
            Some("expected JSON {shipping_note: string}".to_owned()),
        ),
        (Some(n), true) if n.chars().count() > MAX_SHIPPING_NOTE => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(format!(
                "The shipping note is longer than {MAX_SHIPPING_NOTE} characters."
            )),
        ),
        (Some(_), true) => (StatusCode::OK, None),
    };
    let mut inner = shared.lock();
    if let (None, Some(n)) = (&error, &note) {
        inner.spa.shipping_notes.insert(o.id.clone(), n.clone());
    }
    inner.spa.edits.push(SpaEditRecord {
        order_id: o.id.clone(),
        user: ctx.user.clone(),
        body: parsed.unwrap_or(Value::Null),
        raw: String::from_utf8_lossy(&body).into_owned(),
        csrf_valid,
        accepted: error.is_none(),
        received_at: now_rfc3339(),
    });
    drop(inner);
    match error {
        None => Json(json!({"order_id": o.id, "shipping_note": note})).into_response(),
        Some(why) => api_error(status, &why),
    }
}

/// Targets of the hostile pages' writes: they succeed, so a write that leaks is visible in
/// the request log and nowhere else.
async fn hostile_write() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn srcdoc_submit() -> Response {
    html(
        StatusCode::OK,
        "<!doctype html><p id=\"srcdoc-result\">form received</p>".to_owned(),
    )
}

/// `WS /api/feed`: a live status feed. The handshake has been through the session check in
/// `observe` like any `/api/*` request.
async fn api_feed(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| uri.path().to_owned());
    let user = ctx.user.clone();
    ws.on_upgrade(move |socket| feed(shared, socket, path, user))
}

impl Shared {
    fn record_ws(
        &self,
        conn: u64,
        kind: &str,
        path: &str,
        user: &Option<String>,
        frame: Option<(String, bool)>,
    ) {
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        let (text, binary) = match frame {
            Some((t, b)) => (Some(t), b),
            None => (None, false),
        };
        inner.spa.ws.push(WsEvent {
            seq,
            conn,
            kind: kind.to_owned(),
            path: path.to_owned(),
            user: user.clone(),
            text,
            binary,
            at: now_rfc3339(),
        });
    }
}

async fn feed(shared: Arc<Shared>, mut socket: WebSocket, path: String, user: Option<String>) {
    let conn = {
        let mut inner = shared.lock();
        inner.spa.ws_conns += 1;
        inner.spa.ws_conns
    };
    shared.record_ws(conn, "connect", &path, &user, None);
    let mut stopped = shared.stopped.clone();
    let mut tick = tokio::time::interval(FEED_INTERVAL);
    let mut subscribed: Option<&'static Order> = None;
    let mut n: u64 = 0;
    while !*stopped.borrow_and_update() {
        tokio::select! {
            _ = tick.tick() => {
                n += 1;
                let msg = json!({
                    "type": "status",
                    "seq": n,
                    "order": subscribed.map(|o| o.id.as_str()),
                    "status": subscribed.map(|o| o.status.as_str()),
                });
                if socket.send(Message::Text(msg.to_string().into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let text = t.as_str().to_owned();
                    if let Some(o) = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v.get("order").and_then(Value::as_str).and_then(order))
                    {
                        subscribed = Some(o);
                    }
                    shared.record_ws(conn, "frame", &path, &user, Some((text, false)));
                }
                Some(Ok(Message::Binary(b))) => {
                    let text = String::from_utf8_lossy(&b).into_owned();
                    shared.record_ws(conn, "frame", &path, &user, Some((text, true)));
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            // The server stops (or is gone): end the connection.
            changed = stopped.changed() => if changed.is_err() { break; },
        }
    }
    shared.record_ws(conn, "close", &path, &user, None);
}

async fn ws_log(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.lock().spa.ws.clone()).into_response()
}

#[derive(Deserialize, Default)]
struct ControlQuery {
    reset: Option<String>,
    extra_field: Option<String>,
    double_write: Option<String>,
    no_write: Option<String>,
    api_401: Option<String>,
    refund_method_default: Option<String>,
}

fn flag(name: &str, v: &Option<String>) -> Result<Option<bool>, String> {
    match v.as_deref() {
        None => Ok(None),
        Some("1" | "true" | "on" | "yes") => Ok(Some(true)),
        Some("0" | "false" | "off" | "no") => Ok(Some(false)),
        Some(other) => Err(format!("{name} must be 1 or 0, not `{other}`")),
    }
}

async fn control_get(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.lock().spa.knobs.clone()).into_response()
}

/// `POST /_control/spa?reset=1&extra_field=1&double_write=1&no_write=1&api_401=1&refund_method_default=V`:
/// `reset` first (everything off), then each parameter given; an empty
/// `refund_method_default` restores the built-in default. Answers the knobs now in force.
async fn control_spa(State(shared): State<Arc<Shared>>, Query(q): Query<ControlQuery>) -> Response {
    let parsed = (|| {
        Ok::<_, String>((
            flag("reset", &q.reset)?,
            flag("extra_field", &q.extra_field)?,
            flag("double_write", &q.double_write)?,
            flag("no_write", &q.no_write)?,
            flag("api_401", &q.api_401)?,
        ))
    })();
    let (reset, extra, double, none, a401) = match parsed {
        Ok(p) => p,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let mut inner = shared.lock();
    let k = &mut inner.spa.knobs;
    if reset == Some(true) {
        *k = SpaKnobs::default();
    }
    if let Some(v) = extra {
        k.extra_field = v;
    }
    if let Some(v) = double {
        k.double_write = v;
    }
    if let Some(v) = none {
        k.no_write = v;
    }
    if let Some(v) = a401 {
        k.api_401 = v;
    }
    if let Some(v) = &q.refund_method_default {
        k.refund_method_default = (!v.is_empty()).then(|| v.clone());
    }
    Json(k.clone()).into_response()
}

impl SampleCenter {
    /// The SPA's test knobs now in force.
    pub fn spa_knobs(&self) -> SpaKnobs {
        self.shared.lock().spa.knobs.clone()
    }

    /// Replaces all SPA knobs at once.
    pub fn set_spa_knobs(&self, knobs: SpaKnobs) {
        self.shared.lock().spa.knobs = knobs;
    }

    /// Turns every SPA knob off (as `POST /_control/spa?reset=1`).
    pub fn reset_spa_knobs(&self) {
        self.set_spa_knobs(SpaKnobs::default());
    }

    /// See [`SpaKnobs::extra_field`].
    pub fn set_spa_extra_field(&self, on: bool) {
        self.shared.lock().spa.knobs.extra_field = on;
    }

    /// See [`SpaKnobs::double_write`].
    pub fn set_spa_double_write(&self, on: bool) {
        self.shared.lock().spa.knobs.double_write = on;
    }

    /// See [`SpaKnobs::no_write`].
    pub fn set_spa_no_write(&self, on: bool) {
        self.shared.lock().spa.knobs.no_write = on;
    }

    /// See [`SpaKnobs::client_error`].
    pub fn set_spa_client_error(&self, message: Option<&str>) {
        self.shared.lock().spa.knobs.client_error = message.map(str::to_owned);
    }

    /// See [`SpaKnobs::amount_as_number`].
    pub fn set_spa_amount_as_number(&self, on: bool) {
        self.shared.lock().spa.knobs.amount_as_number = on;
    }

    /// See [`SpaKnobs::no_feed`].
    pub fn set_spa_no_feed(&self, on: bool) {
        self.shared.lock().spa.knobs.no_feed = on;
    }

    /// See [`SpaKnobs::api_401_order`].
    pub fn set_spa_api_401_order(&self, order: Option<&str>) {
        self.shared.lock().spa.knobs.api_401_order = order.map(str::to_owned);
    }

    /// See [`SpaKnobs::api_401`].
    pub fn set_spa_api_401(&self, on: bool) {
        self.shared.lock().spa.knobs.api_401 = on;
    }

    /// See [`SpaKnobs::refund_method_default`]; `None` restores `original_payment`.
    pub fn set_spa_refund_method_default(&self, value: Option<&str>) {
        self.shared.lock().spa.knobs.refund_method_default = value.map(str::to_owned);
    }

    /// Refund requests the SPA API received, in arrival order.
    pub fn spa_refunds(&self) -> Vec<SpaRefundRecord> {
        self.shared.lock().spa.refunds.clone()
    }

    /// Shipping-note edits the SPA API received, in arrival order.
    pub fn spa_edits(&self) -> Vec<SpaEditRecord> {
        self.shared.lock().spa.edits.clone()
    }

    /// WebSocket connections, client frames and closes on `/api/feed`, in order.
    pub fn ws_events(&self) -> Vec<WsEvent> {
        self.shared.lock().spa.ws.clone()
    }

    /// Only the frames clients sent over WebSocket (the writes a WebSocket can carry).
    pub fn ws_frames(&self) -> Vec<WsEvent> {
        self.shared
            .lock()
            .spa
            .ws
            .iter()
            .filter(|e| e.kind == "frame")
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_refs_are_stable_and_distinct() {
        let all = orders();
        let a = order_ref(&all[0]);
        assert!(a.starts_with("LHG-") && a.ends_with("-0001"), "{a}");
        assert_eq!(a.len(), "LHG-20240101-0001".len(), "{a}");
        let refs: std::collections::BTreeSet<String> = all.iter().map(order_ref).collect();
        assert_eq!(refs.len(), all.len());
    }

    #[test]
    fn the_app_is_public_and_the_api_is_not() {
        use super::super::is_public;
        assert!(is_public("/app/") && is_public("/app/app.js") && is_public("/app"));
        assert!(is_public("/api/login") && is_public("/api/logout"));
        assert!(!is_public("/api/me") && !is_public("/api/feed") && !is_public("/apps"));
    }

    #[test]
    fn refund_validation() {
        let o = &orders()[0];
        let ok = json!({"amount": "0.01", "reason": "damaged", "method": "store_credit"});
        assert_eq!(refund_rejection(o, &ok, "original_payment"), None);
        let too_much = json!({"amount": format!("{}", o.total_cents / 100 + 1), "reason": "damaged", "method": "store_credit"});
        assert!(refund_rejection(o, &too_much, "original_payment").is_some());
        let bad_reason = json!({"amount": 1, "reason": "bored", "method": "store_credit"});
        assert!(refund_rejection(o, &bad_reason, "original_payment").is_some());
        let custom = json!({"amount": 1, "reason": "other", "method": "voucher"});
        assert_eq!(refund_rejection(o, &custom, "voucher"), None);
        assert!(refund_rejection(o, &custom, "original_payment").is_some());
    }
}
