//! The reviewer console: server-rendered pages (askama, everything escaped, no script) on
//! the daemon's address, for people who do not use the command line.
//!
//! Users and roles come from the config (`[[user]]`), passwords from
//! `<data>/users/passwords.json` ([`crate::users`]). A login starts an in-memory session
//! (cookie `clerk_session`: HttpOnly, SameSite=Strict, Secure with `[serve] cookie_secure`;
//! 30 minutes idle, 12 hours at most, timed by the engine's clock). Every state change is a
//! POST carrying the session's CSRF token and goes through the engine's own functions
//! (`approval::decide`, `PauseBoard::pause`/`resume`), under the logged-in user's name; a
//! role that may not do it (an auditor) is refused with 403 and a `refused` record.

mod case;
mod stats;
pub(super) use case::tar_response;
pub(super) mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use super::views::{self, ApprovalFilter, RunsFilter};
use super::{Daemon, DecideError};
use crate::approval::{self, ApprovalError, ApprovalState};
use crate::evidence::{timestamp, Event};
use crate::pause::PauseScope;
use crate::users;
use session::{Limiter, Session};

/// The session cookie's name.
pub const COOKIE: &str = "clerk_session";

/// The Content-Security-Policy of every console response: no inline script (only the
/// console's own `/console.js`), styles and images from the console only.
pub const CSP: &str = "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; \
                       object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const CSS: &str = include_str!("templates/console.css");
const JS: &str = include_str!("templates/console.js");

struct Console {
    d: Arc<Daemon>,
    limiter: Limiter,
}

impl Console {
    fn now(&self) -> DateTime<Utc> {
        (self.d.engine.clock)()
    }

    /// Records a refusal of `action` by `user` (a role that may not do it).
    fn refuse(&self, action: &str, approval_id: Option<&str>, user: &str, reason: &str) {
        let appended = self.d.engine.store.append(Event::Refused {
            action: action.to_owned(),
            approval_id: approval_id.map(str::to_owned),
            run_id: None,
            user: user.to_owned(),
            reason: reason.to_owned(),
            at: timestamp(self.now()),
        });
        if let Err(e) = appended {
            tracing::error!("could not record the console's refusal of {action} by {user}: {e}");
        }
    }
}

type C = State<Arc<Console>>;

pub(super) fn router(d: Arc<Daemon>) -> Router {
    let console = Arc::new(Console {
        d,
        limiter: Limiter::default(),
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/approvals") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/approvals", get(approvals))
        .route("/approvals/{id}", get(approval_page))
        .route("/approvals/{id}/decide", post(decide))
        .route("/runs", get(runs))
        .route("/reviews", get(reviews))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/verify", post(verify_run))
        .route("/runs/{id}/rollback", post(rollback_run))
        .route("/cases/{case}", get(case::case_page))
        .route(
            "/cases/{case}/bundle.tar",
            get(case::bundle).post(case::bundle_recorded),
        )
        .route("/stats", get(stats::stats_page))
        .route("/queue", get(queue_page))
        .route("/queue/{id}/retry", post(retry_job))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/screenshots/{file}", get(screenshot))
        .route("/console.css", get(css))
        .route("/console.js", get(js))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

/// A page as a response (a template that fails to render is a 500).
fn page(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        // Every value a page shows (held values, inputs, notes, names, reasons) with its
        // invisible and text-reordering characters written out: the console's own templates
        // use none, so this touches only what came from outside.
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            crate::display::visible(&html).into_owned(),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the page: {e}"),
        )
            .into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    message: String,
    back: String,
}

fn error(status: StatusCode, message: impl Into<String>, back: &str) -> Response {
    page(
        status,
        &ErrorPage {
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: message.into(),
            back: back.to_owned(),
        },
    )
}

fn forbidden(message: impl Into<String>) -> Response {
    error(StatusCode::FORBIDDEN, message, "/approvals")
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, COOKIE)
}

/// The live console session a request's cookie names, if any (the API accepts it too).
pub(super) fn session_of(d: &Daemon, headers: &HeaderMap) -> Option<Session> {
    let id = session_id(headers)?;
    live_session(d, &id)
}

/// The session `id` if it is alive *and* still matches the user as they are now: the user
/// exists, their credential stamp (password, "log out everywhere", revoked tokens) is the
/// one the session was made with, and the role is the current one (a role change takes
/// effect on the next request). Anything else ends the session.
fn live_session(d: &Daemon, id: &str) -> Option<Session> {
    let mut s = d.sessions.touch(id, (d.engine.clock)())?;
    let config = &d.engine.config;
    let data_dir = &d.engine.data_dir;
    let now_stamp = users::credential_stamp(data_dir, config, &s.user);
    let role = users::role_of(data_dir, config, &s.user);
    match (now_stamp, role) {
        (Some(stamp), Some(role)) if !s.stamp.is_empty() && stamp == s.stamp => {
            s.role = role;
            Some(s)
        }
        _ => {
            tracing::info!(user = %s.user, "console session ended: the user's credentials or existence changed");
            d.sessions.remove(id);
            None
        }
    }
}

/// A request of a logged-in user.
struct Authed {
    id: String,
    s: Session,
}

impl FromRequestParts<Arc<Console>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Arc<Console>) -> Result<Self, Response> {
        let found = session_id(&parts.headers)
            .and_then(|id| live_session(&c.d, &id).map(|s| Authed { id, s }));
        match found {
            Some(a) => Ok(a),
            None if parts.method == Method::GET
                && !parts.uri.path().starts_with("/screenshots/") =>
            {
                Err(Redirect::to("/login").into_response())
            }
            None => Err(error(
                StatusCode::UNAUTHORIZED,
                "log in first (or again: sessions end after 30 minutes idle or 12 hours)",
                "/login",
            )),
        }
    }
}

impl Authed {
    /// The request's CSRF token is this session's.
    fn csrf_ok(&self, given: &str) -> bool {
        users::constant_eq(self.s.csrf.as_bytes(), given.as_bytes())
    }
}

/// The header and status bar of every page.
struct Chrome {
    user: String,
    role: String,
    csrf: String,
    paused: bool,
    global_paused: bool,
    pause_lines: Vec<String>,
    can_pause: bool,
    /// The config's channels (for the per-channel pause form).
    channels: Vec<String>,
    /// Channels paused now (each gets a Resume form).
    paused_channels: Vec<String>,
}

fn chrome(c: &Console, a: &Authed) -> Chrome {
    c.d.engine.pause.refresh();
    let state = c.d.engine.pause.state();
    let mut lines = Vec::new();
    if let Some(g) = &state.global {
        lines.push(format!("Everything {}", g.message()));
    }
    for p in state.channels.values() {
        lines.push(format!(
            "Channel {} {}",
            p.channel.as_deref().unwrap_or("?"),
            p.message()
        ));
    }
    if lines.is_empty() {
        lines.push("Running: nothing is paused.".into());
    }
    Chrome {
        user: a.s.user.clone(),
        role: a.s.role.to_string(),
        csrf: a.s.csrf.clone(),
        paused: state.any(),
        global_paused: state.global.is_some(),
        pause_lines: lines,
        can_pause: users::may_pause(a.s.role),
        channels: c
            .d
            .engine
            .config
            .channels
            .iter()
            .map(|ch| ch.id.clone())
            .collect(),
        paused_channels: state
            .channels
            .values()
            .filter_map(|p| p.channel.clone())
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    user: String,
    message: Option<String>,
    /// The login form's CSRF token (also in the [`LOGIN_COOKIE`] cookie).
    csrf: String,
}

/// The cookie that binds a login form to the browser that loaded it (double submit: a
/// login POST must carry the same value in its `csrf` field).
const LOGIN_COOKIE: &str = "clerk_login";

/// A login page with a fresh login CSRF token, set in its cookie too.
fn login_form(c: &Console, status: StatusCode, user: &str, message: Option<String>) -> Response {
    let token = users::random_token(32);
    let secure = if c.d.engine.config.serve.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{LOGIN_COOKIE}={token}; Path=/login; Max-Age=3600; HttpOnly; SameSite=Strict{secure}"
    );
    let mut r = page(
        status,
        &LoginPage {
            user: user.to_owned(),
            message,
            csrf: token,
        },
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn login_page(State(c): C) -> Response {
    login_form(&c, StatusCode::OK, "", None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The client's IP address (from the connection; "unknown" when the server was not
/// started with connect info).
struct PeerAddr(String);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ci| ci.0.ip().to_string())
                .unwrap_or_else(|| "unknown".into()),
        ))
    }
}

async fn login(
    State(c): C,
    PeerAddr(addr): PeerAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let now = c.now();
    let keys = session::login_keys(&f.user, &addr);
    let again = |status, message: String| login_form(&c, status, &f.user, Some(message));
    // Login CSRF: the form must come from a login page this browser loaded. Refused
    // before the password is looked at, and not counted as a failed login.
    let bound = cookie_value(&headers, LOGIN_COOKIE);
    let same = bound.as_deref().is_some_and(|b| {
        b.len() == f.csrf.len()
            && b.bytes()
                .zip(f.csrf.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    });
    if !same || f.csrf.is_empty() {
        return again(
            StatusCode::FORBIDDEN,
            "This login form has expired or did not come from this console: log in again.".into(),
        );
    }
    // Reserved before the password is checked: parallel attempts cannot all get through.
    if let Err(until) = c.limiter.reserve(&keys, now) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed logins for this user ({} from one address, {} in all, in {} minutes). Try again after {} UTC.",
                session::MAX_FAILS,
                session::MAX_USER_FAILS,
                session::FAIL_WINDOW.num_minutes(),
                until.format("%H:%M:%S")
            ),
        );
    }
    let engine = c.d.engine.clone();
    let (user, password) = (f.user.clone(), f.password.clone());
    let checked = tokio::task::spawn_blocking(move || {
        users::authenticate(&engine.data_dir, &engine.config, &user, &password)
    })
    .await;
    match checked {
        Ok(Ok(role)) => {
            c.limiter.succeeded(&keys, now);
            let stamp = users::credential_stamp(&c.d.engine.data_dir, &c.d.engine.config, &f.user)
                .unwrap_or_default();
            let id = c.d.sessions.create(&f.user, role, &stamp, now);
            let secure = if c.d.engine.config.serve.cookie_secure {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
            tracing::info!(user = %f.user, "console login");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/approvals")).into_response()
        }
        Ok(Err(users::UserError::BadCredentials)) => {
            tracing::warn!(user = %f.user, addr = %addr, "console login failed");
            again(StatusCode::UNAUTHORIZED, "Wrong user or password.".into())
        }
        Ok(Err(e)) => again(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => again(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

/// `POST /logout-everywhere`: ends every session of this user, in every browser.
async fn logout_everywhere(State(c): C, a: Authed, Form(f): Form<CsrfForm>) -> Response {
    if !a.csrf_ok(&f.csrf) {
        return forbidden("missing or wrong CSRF token");
    }
    if let Err(e) = users::end_sessions(&c.d.engine.data_dir, &a.s.user) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            "/approvals",
        );
    }
    c.d.sessions.remove(&a.id);
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

async fn logout(State(c): C, a: Authed, Form(f): Form<CsrfForm>) -> Response {
    if !a.csrf_ok(&f.csrf) {
        return forbidden("missing or wrong CSRF token");
    }
    c.d.sessions.remove(&a.id);
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

/// "3h 12m", "45s", "2d 4h".
fn span(d: TimeDelta) -> String {
    let s = d.num_seconds().abs();
    let (days, hours, mins) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m")
    } else {
        format!("{s}s")
    }
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn age(created: &str, now: DateTime<Utc>) -> String {
    parse_time(created)
        .map(|t| span(now - t))
        .unwrap_or_default()
}

fn expires_in(expires: &str, now: DateTime<Utc>) -> String {
    match parse_time(expires) {
        Some(t) if t > now => format!("in {}", span(t - now)),
        Some(t) => format!("expired {} ago", span(now - t)),
        None => "unknown".into(),
    }
}

struct Row {
    id: String,
    state: &'static str,
    channel: String,
    playbook: String,
    case_ref: String,
    requester: String,
    created_at: String,
    age: String,
    expires_at: String,
    expires_in: String,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    chrome: Chrome,
    pending: usize,
    rows: Vec<Row>,
    filter_channel: String,
    filter_playbook: String,
    filter_case: String,
}

async fn approvals(State(c): C, a: Authed, Query(f): Query<ApprovalFilter>) -> Response {
    let engine = c.d.engine.clone();
    let wanted = f.clone();
    let all = match tokio::task::spawn_blocking(move || views::approvals(&engine, &wanted)).await {
        Ok(Ok(all)) => all,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/"),
    };
    let now = c.now();
    let pending = all
        .iter()
        .filter(|x| x.state == ApprovalState::Pending)
        .count();
    let rows = all
        .iter()
        .map(|x| Row {
            id: x.request.approval_id.clone(),
            state: x.state.as_str(),
            channel: x.request.content.channel.clone(),
            playbook: x.request.content.playbook.clone(),
            case_ref: x.request.case_ref.clone().unwrap_or_default(),
            requester: x.request.requester.clone(),
            created_at: x.request.created_at.clone(),
            age: age(&x.request.created_at, now),
            expires_at: x.request.expires_at.clone(),
            expires_in: expires_in(&x.request.expires_at, now),
        })
        .collect();
    page(
        StatusCode::OK,
        &ApprovalsPage {
            chrome: chrome(&c, &a),
            pending,
            rows,
            filter_channel: f.channel,
            filter_playbook: f.playbook,
            filter_case: f.case,
        },
    )
}

struct DecisionView {
    decision: String,
    reviewer: String,
    decided_at: String,
    note: Option<String>,
}

struct Detail {
    id: String,
    state: &'static str,
    pending: bool,
    channel: String,
    playbook: String,
    playbook_sha256: String,
    draft_hash: String,
    case_ref: String,
    requester: String,
    run_id: String,
    created_at: String,
    age: String,
    expires_at: String,
    expires_in: String,
    screenshot: Option<String>,
    /// What the held write sends, field by field (volatile ones flagged), when its body
    /// has fields; else the form's values read back.
    values: Vec<(String, String, bool)>,
    /// The playbook inputs the operator gave (secrets redacted).
    inputs: Vec<(String, String)>,
    /// The case's claims the draft matched (bound into the draft hash).
    claims: Vec<(String, String)>,
    declared: String,
    /// Method, URL, content type, decoded body.
    held: Option<(String, String, String, String)>,
    decision: Option<DecisionView>,
    used_by_run: Option<String>,
    /// The submit run's status and its screenshots (name, SHA-256), once it is recorded.
    submit_result: Option<(String, Vec<(String, String)>)>,
    refusals: Vec<String>,
    /// The viewer requested it (four eyes: no decision controls).
    own: bool,
    /// The viewer's role and the channel's reviewer list let them decide.
    may_decide: bool,
}

#[derive(Template)]
#[template(path = "approval.html")]
struct ApprovalPage {
    chrome: Chrome,
    d: Detail,
}

fn body_text(body: &crate::write::Body) -> String {
    use crate::write::Body;
    match body {
        Body::None => "(no body)".into(),
        Body::Json { value } => {
            serde_json::to_string_pretty(&crate::write::restore_json(value)).unwrap_or_default()
        }
        Body::Form { fields } => fields
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// A write's body as (field, value, volatile) rows: JSON object members (nested values as
/// compact JSON), form fields, multipart parts (files by name and hash).
fn body_fields(body: &crate::write::Body, volatile: &[String]) -> Vec<(String, String, bool)> {
    use crate::write::Body;
    let row = |k: &str, v: String| (k.to_owned(), v, volatile.iter().any(|x| x == k));
    match body {
        Body::Json {
            value: serde_json::Value::Object(map),
        } => map
            .iter()
            .map(|(k, v)| {
                // Typed, as the page sends it: a string in quotes, a number bare.
                let (text, kind) = crate::write::typed_text(v);
                row(k, format!("{text}  ({kind})"))
            })
            .collect(),
        Body::Form { fields } => fields.iter().map(|(k, v)| row(k, v.clone())).collect(),
        Body::Multipart { parts } => parts
            .iter()
            .map(|p| {
                let text = match (&p.value, &p.filename, &p.sha256) {
                    (Some(v), _, _) => v.clone(),
                    (None, Some(f), Some(h)) => format!("file {f} (SHA-256 {h})"),
                    (None, Some(f), None) => format!("file {f}"),
                    _ => String::new(),
                };
                row(&p.name, text)
            })
            .collect(),
        _ => Vec::new(),
    }
}

async fn approval_page(State(c): C, a: Authed, Path(id): Path<String>) -> Response {
    let engine = c.d.engine.clone();
    let wanted = id.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let x = approval::load(&engine, &wanted)?;
        let submit = match &x.used_by_run {
            Some(run) => engine.store.run(run).ok().flatten(),
            None => None,
        };
        Ok::<_, ApprovalError>((x, submit))
    })
    .await;
    let (x, submit) = match loaded {
        Ok(Ok(x)) => x,
        Ok(Err(ApprovalError::Unknown(_))) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no approval {id}"),
                "/approvals",
            )
        }
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/"),
    };
    let now = c.now();
    let r = &x.request;
    let own = r.requester == a.s.user;
    let reviewer =
        c.d.engine
            .config
            .channel(&r.content.channel)
            .is_ok_and(|ch| ch.is_reviewer(&a.s.user));
    let d = Detail {
        id: r.approval_id.clone(),
        state: x.state.as_str(),
        pending: x.state == ApprovalState::Pending,
        channel: r.content.channel.clone(),
        playbook: r.content.playbook.clone(),
        playbook_sha256: r.content.playbook_sha256.clone(),
        draft_hash: r.draft_hash.clone(),
        case_ref: r.case_ref.clone().unwrap_or_default(),
        requester: r.requester.clone(),
        run_id: r.run_id.clone(),
        created_at: r.created_at.clone(),
        age: age(&r.created_at, now),
        expires_at: r.expires_at.clone(),
        expires_in: expires_in(&r.expires_at, now),
        screenshot: r.screenshot_sha256.clone(),
        values: r
            .held
            .as_ref()
            .map(|w| body_fields(&w.body, &r.volatile))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| {
                r.content
                    .values
                    .iter()
                    .map(|v| (v.name.clone(), v.value.clone(), false))
                    .collect()
            }),
        inputs: r
            .content
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        claims: r
            .content
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        declared: format!("{} {}", r.content.write.method, r.content.write.url),
        held: r.held.as_ref().map(|w| {
            (
                w.method.clone(),
                w.url.clone(),
                w.content_type.clone().unwrap_or_default(),
                body_text(&w.body),
            )
        }),
        decision: x.decision.as_ref().map(|dec| DecisionView {
            decision: dec.decision.clone(),
            reviewer: dec.reviewer.clone(),
            decided_at: dec.decided_at.clone(),
            note: dec.note.clone(),
        }),
        used_by_run: x.used_by_run.clone(),
        submit_result: submit.map(|run| {
            (
                run.summary.status.clone(),
                run.evidence
                    .iter()
                    .map(|e| (e.name.clone(), e.sha256.clone()))
                    .collect(),
            )
        }),
        refusals: x.refusals.clone(),
        own,
        may_decide: users::may_decide(a.s.role) && reviewer,
    };
    page(
        StatusCode::OK,
        &ApprovalPage {
            chrome: chrome(&c, &a),
            d,
        },
    )
}

#[derive(Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

async fn decide(
    State(c): C,
    a: Authed,
    Path(id): Path<String>,
    Form(f): Form<DecideForm>,
) -> Response {
    if !a.csrf_ok(&f.csrf) {
        return forbidden("missing or wrong CSRF token");
    }
    let approve = match f.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "decision must be approve or reject",
                "/approvals",
            )
        }
    };
    let action = if approve { "approve" } else { "reject" };
    if !users::may_decide(a.s.role) {
        let reason = format!("role {} may not decide approvals", a.s.role);
        c.refuse(action, Some(&id), &a.s.user, &reason);
        return forbidden(reason);
    }
    let note = Some(f.note.trim().to_owned()).filter(|n| !n.is_empty());
    let decided = c.d.decide(&id, &a.s.user, approve, note).await;
    let back = format!("/approvals/{}", encode(&id));
    match decided {
        Ok(_) => Redirect::to(&back).into_response(),
        Err(DecideError::Approval(e)) => {
            let status = match e {
                ApprovalError::SelfApproval(_) | ApprovalError::NotReviewer { .. } => {
                    StatusCode::FORBIDDEN
                }
                ApprovalError::Unknown(_) => StatusCode::NOT_FOUND,
                ApprovalError::AlreadyDecided { .. } => StatusCode::CONFLICT,
                ApprovalError::NoteRequired => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, e.to_string(), &back)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), &back),
    }
}

#[derive(Template)]
#[template(path = "reviews.html")]
struct ReviewsPage {
    chrome: Chrome,
    items: Vec<views::ReviewItem>,
    message: Option<String>,
}

/// `GET /reviews`: cases whose claims the page did not confirm, claims and page values side
/// by side, with the screenshot.
async fn reviews(State(c): C, a: Authed) -> Response {
    let store = c.d.engine.store.clone();
    let (items, message) = match tokio::task::spawn_blocking(move || views::reviews(&store)).await {
        Ok(Ok(items)) => (items, None),
        Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    page(
        StatusCode::OK,
        &ReviewsPage {
            chrome: chrome(&c, &a),
            items,
            message,
        },
    )
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    chrome: Chrome,
    f: RunsFilter,
    rows: Vec<crate::evidence::RunSummary>,
    message: Option<String>,
}

async fn runs(State(c): C, a: Authed, Query(f): Query<RunsFilter>) -> Response {
    let store = c.d.engine.store.clone();
    let wanted = f.clone();
    let (rows, message) =
        match tokio::task::spawn_blocking(move || views::runs(&store, &wanted)).await {
            Ok(Ok(rows)) => (rows, None),
            Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
    page(
        StatusCode::OK,
        &RunsPage {
            chrome: chrome(&c, &a),
            f,
            rows,
            message,
        },
    )
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    chrome: Chrome,
    r: crate::evidence::RunDetail,
    /// What happened to the approvals this run requested or used, in order.
    approval_lines: Vec<String>,
    /// Intact, and the report's lines.
    verified: Option<(bool, Vec<String>)>,
    /// The compensating playbook of a sent write, offered to operators as a rollback.
    undo: Option<String>,
}

async fn show_run(c: &Console, a: &Authed, id: String, verify: bool) -> Response {
    let store = c.d.engine.store.clone();
    let engine = c.d.engine.clone();
    let may_run = users::permits(a.s.role, users::Permission::Run);
    let wanted = id.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let run = store.run(&wanted)?;
        let undo = run
            .as_ref()
            .filter(|r| {
                may_run
                    && r.summary.mode == "submit"
                    && r.summary.status == "ok"
                    && r.approval_id.is_some()
            })
            .and_then(|r| engine.stored_playbook(&r.playbook_sha256).ok())
            .and_then(|p| p.undo)
            .map(|u| u.playbook);
        let verified = if verify && run.is_some() {
            let report = crate::evidence::verify::verify_store(
                &store,
                &crate::evidence::verify::Scope::Run(wanted.clone()),
            )?;
            Some((
                report.ok(),
                report.to_string().lines().map(str::to_owned).collect(),
            ))
        } else {
            None
        };
        Ok::<_, crate::evidence::StoreError>((run, verified, undo))
    })
    .await;
    match loaded {
        Ok(Ok((Some(r), verified, undo))) => page(
            StatusCode::OK,
            &RunPage {
                chrome: chrome(c, a),
                approval_lines: approval_lines(&r.approvals),
                r,
                verified,
                undo,
            },
        ),
        Ok(Ok((None, _, _))) => error(StatusCode::NOT_FOUND, format!("no run {id}"), "/runs"),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/runs"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/runs"),
    }
}

/// One line per approval record: requested, decided (with the note), used, refused.
fn approval_lines(records: &[crate::evidence::Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            Event::ApprovalRequested {
                approval_id,
                requester,
                created_at,
                ..
            } => Some(format!(
                "{approval_id} requested by {requester} at {created_at}"
            )),
            Event::ApprovalDecided {
                approval_id,
                decision,
                reviewer,
                note,
                decided_at,
                ..
            } => Some(match note {
                Some(n) => format!("{approval_id} {decision} by {reviewer} at {decided_at}: {n}"),
                None => format!("{approval_id} {decision} by {reviewer} at {decided_at}"),
            }),
            Event::ApprovalUsed {
                approval_id,
                run_id,
                used_at,
            } => Some(format!(
                "{approval_id} used by submit run {run_id} at {used_at}"
            )),
            Event::Refused {
                action,
                approval_id: Some(approval_id),
                user,
                reason,
                at,
                ..
            } => Some(format!(
                "{approval_id}: {action} by {user} refused at {at}: {reason}"
            )),
            _ => None,
        })
        .collect()
}

async fn run_page(State(c): C, a: Authed, Path(id): Path<String>) -> Response {
    show_run(&c, &a, id, false).await
}

/// `POST /runs/{id}/verify`: re-hashes the run's screenshots and records (every role; it
/// changes nothing, but it is a button, so a POST with the CSRF token).
async fn verify_run(
    State(c): C,
    a: Authed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !a.csrf_ok(&f.csrf) {
        return forbidden("missing or wrong CSRF token");
    }
    show_run(&c, &a, id, true).await
}

#[derive(Deserialize)]
struct PauseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    channel: String,
}

async fn change_pause(c: &Console, a: &Authed, on: bool, f: PauseForm) -> Response {
    if !a.csrf_ok(&f.csrf) {
        return forbidden("missing or wrong CSRF token");
    }
    let action = if on { "pause" } else { "resume" };
    if !users::may_pause(a.s.role) {
        let reason = format!("role {} may not {action}", a.s.role);
        c.refuse(action, None, &a.s.user, &reason);
        return forbidden(reason);
    }
    let channel = Some(f.channel.trim()).filter(|ch| !ch.is_empty());
    let scope = PauseScope::from_channel(channel);
    let now = c.now();
    let board = &c.d.engine.pause;
    let changed = if on {
        board.pause(scope.clone(), &a.s.user, &f.reason, now).await
    } else {
        board.resume(scope.clone(), &a.s.user, &f.reason, now).await
    };
    if changed.is_ok() {
        c.d.publish_pause(&scope, on, &a.s.user, &f.reason);
    }
    c.d.pause_changed();
    match changed {
        Ok(_) => Redirect::to("/approvals").into_response(),
        Err(e) => {
            let status = match e.exit_code() {
                3 => StatusCode::FORBIDDEN,
                2 => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            error(status, e.to_string(), "/approvals")
        }
    }
}

async fn pause(State(c): C, a: Authed, Form(f): Form<PauseForm>) -> Response {
    change_pause(&c, &a, true, f).await
}

async fn resume(State(c): C, a: Authed, Form(f): Form<PauseForm>) -> Response {
    change_pause(&c, &a, false, f).await
}

/// A job as the queue page shows it.
struct JobRow {
    id: u64,
    state: String,
    channel: String,
    playbook: String,
    attempts: u32,
    case_ref: String,
    detail: String,
    retryable: bool,
}

/// A schedule as the queue page shows it.
struct ScheduleRow {
    name: String,
    trigger: String,
    channel: String,
    next: String,
    paused: String,
    last: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    chrome: Chrome,
    jobs: Vec<JobRow>,
    schedules: Vec<ScheduleRow>,
    paused_channels: Vec<(String, String)>,
    may_retry: bool,
}

/// Whether a role may retry dead-lettered jobs (operators run things; admins may too).
fn may_retry(role: crate::channel::Role) -> bool {
    users::permits(role, users::Permission::Queue)
}

/// `GET /queue`: what runs when (schedules), what waits, what runs, and the dead letters
/// with their reasons.
async fn queue_page(State(c): C, a: Authed) -> Response {
    use crate::queue::{JobFilter, JobState};
    let now = c.now();
    let jobs = match c.d.queue_call(|q| q.list(&JobFilter::default())).await {
        Ok(j) => j,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/queue"),
    };
    let paused =
        c.d.queue_call(|q| q.paused_channels())
            .await
            .unwrap_or_default();
    let mut rows: Vec<JobRow> = jobs
        .iter()
        .filter(|j| {
            matches!(
                j.state,
                JobState::Queued | JobState::Claimed | JobState::Dead
            )
        })
        .map(|j| JobRow {
            id: j.id.0,
            state: j.state.to_string(),
            channel: j.spec.channel.clone(),
            playbook: std::path::Path::new(&j.spec.playbook)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| j.spec.playbook.clone()),
            attempts: j.attempts,
            case_ref: j.spec.case_ref.clone().unwrap_or_default(),
            detail: match j.state {
                JobState::Dead => j.dead_reason.clone().unwrap_or_default(),
                JobState::Claimed => j
                    .lease
                    .as_ref()
                    .map(|l| format!("running on {}", l.worker))
                    .unwrap_or_default(),
                _ => match (&j.not_before, &j.last_error) {
                    (Some(t), e) => format!(
                        "not before {}; last: {}",
                        crate::evidence::timestamp(*t),
                        e.as_deref().unwrap_or("")
                    ),
                    (None, e) => e.clone().unwrap_or_default(),
                },
            },
            retryable: j.state == JobState::Dead,
        })
        .collect();
    // Dead letters first, then running, then waiting.
    rows.sort_by_key(|r| (r.state != "dead", r.state != "claimed", r.id));
    let store = c.d.engine.store.clone();
    let schedules = tokio::task::spawn_blocking(move || crate::schedule::Schedules::load(&store))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|all| {
            all.iter()
                .map(|s| {
                    let v = s.view(now);
                    ScheduleRow {
                        name: v.name.clone(),
                        trigger: s.trigger.describe(),
                        channel: v.channel.clone(),
                        next: v.next_firing_local.clone().unwrap_or_else(|| "-".into()),
                        paused: v
                            .pause
                            .as_ref()
                            .map(|p| format!("paused by {} since {}: {}", p.by, p.at, p.reason))
                            .unwrap_or_default(),
                        last: v
                            .last_fired
                            .as_ref()
                            .map(|f| format!("{} ({} job(s))", f.slot, f.job_ids.len()))
                            .unwrap_or_else(|| "-".into()),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    page(
        StatusCode::OK,
        &QueuePage {
            chrome: chrome(&c, &a),
            jobs: rows,
            schedules,
            paused_channels: paused
                .into_iter()
                .map(|(ch, p)| (ch, format!("since {}: {}", p.since.to_rfc3339(), p.reason)))
                .collect(),
            may_retry: may_retry(a.s.role),
        },
    )
}

/// `POST /queue/{id}/retry`: a dead letter queued again (operators and admins).
/// `POST /runs/{id}/rollback`: an operator drafts the compensating action of a sent write
/// (queued; the draft waits for a reviewer like any other).
async fn rollback_run(
    State(c): C,
    a: Authed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !a.csrf_ok(&f.csrf) {
        return forbidden("missing or wrong CSRF token");
    }
    if !users::permits(a.s.role, users::Permission::Run) {
        let reason = format!("role {} may not draft a rollback", a.s.role);
        c.refuse("rollback", None, &a.s.user, &reason);
        return forbidden(reason);
    }
    let back = format!("/runs/{id}");
    match crate::serve::enqueue_rollback(&c.d, &id, &a.s.user, Default::default()).await {
        Ok(_) => Redirect::to("/queue").into_response(),
        Err((code, msg)) => error(code, msg, &back),
    }
}

async fn retry_job(
    State(c): C,
    a: Authed,
    Path(id): Path<u64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !a.csrf_ok(&f.csrf) {
        return forbidden("missing or wrong CSRF token");
    }
    if !may_retry(a.s.role) {
        let reason = format!("role {} may not retry queued jobs", a.s.role);
        c.refuse("retry", None, &a.s.user, &reason);
        return forbidden(reason);
    }
    match c
        .d
        .queue_call(move |q| q.retry(crate::queue::JobId(id)))
        .await
    {
        Ok(()) => {
            tracing::info!(job = id, user = %a.s.user, "dead letter queued again from the console");
            c.d.wake();
            let recorded =
                c.d.engine
                    .record(crate::evidence::Event::QueueChanged {
                        action: "retry".into(),
                        jobs: vec![id],
                        channel: None,
                        user: a.s.user.clone(),
                        at: crate::evidence::timestamp(c.now()),
                    })
                    .await;
            if let Err(e) = recorded {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/queue");
            }
            Redirect::to("/queue").into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e.to_string(), "/queue"),
    }
}

/// `GET /screenshots/<sha256>.png`: logged-in users only, as `image/png`, never sniffed.
async fn screenshot(State(c): C, _a: Authed, Path(file): Path<String>) -> Response {
    let sha = match file.strip_suffix(".png") {
        Some(s) if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            s.to_owned()
        }
        _ => return error(StatusCode::NOT_FOUND, "no such screenshot", "/approvals"),
    };
    match tokio::fs::read(c.d.engine.store.screenshot_path(&sha)).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "private, no-store"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => error(StatusCode::NOT_FOUND, "no such screenshot", "/approvals"),
    }
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        JS,
    )
        .into_response()
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_a_person_writes_them() {
        assert_eq!(span(TimeDelta::seconds(45)), "45s");
        assert_eq!(span(TimeDelta::minutes(125)), "2h 5m");
        assert_eq!(span(TimeDelta::hours(50)), "2d 2h");
    }

    #[test]
    fn templates_escape_content() {
        let html = LoginPage {
            user: "<script>alert(1)</script>".into(),
            message: Some("a & b".into()),
            csrf: "t".into(),
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
        assert!(html.contains("a &#38; b") || html.contains("a &amp; b"));
    }
}
