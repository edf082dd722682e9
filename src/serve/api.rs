//! The daemon's HTTP API: JSON in and out, errors as `{"error": "..."}` with a fitting
//! status. Bound to 127.0.0.1; every `/api` call must carry the token from `serve.json`
//! ([`crate::instance::TOKEN_HEADER`]), which only users who can read the data directory
//! have. `GET /metrics` (Prometheus text) needs no token.
//!
//! State changes go through the same engine functions as the CLI without a daemon, and are
//! recorded under the user the request names.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Daemon, DecideError};
use crate::queue::{JobFilter, JobId, JobSpec, JobState, Priority, QueueError};
use crate::schedule::{self, AddRequest, InputsSpec, ScheduleError, TriggerSpec};

type D = State<Arc<Daemon>>;

/// An API error: a status and a message, answered as `{"error": message}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ApiErrorBody { error: self.1 })).into_response()
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiErrorBody {
    /// What went wrong, and what to do about it.
    pub error: String,
}

/// The error answers every API route may give (documented once).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum ApiErrors {
    /// The request is malformed: a body or parameter that does not parse, an unknown field.
    #[response(status = 400)]
    BadRequest(ApiErrorBody),
    /// No credential, or an unknown or revoked one.
    #[response(status = 401)]
    Unauthorized(ApiErrorBody),
    /// Authenticated, but not allowed (acting as someone else, four eyes, a role that may not).
    #[response(status = 403)]
    Forbidden(ApiErrorBody),
    /// No such run, job, approval, schedule or case.
    #[response(status = 404)]
    NotFound(ApiErrorBody),
    /// The state does not allow it (a job that is not dead, a schedule already paused).
    #[response(status = 409)]
    Conflict(ApiErrorBody),
    /// The body is larger than the daemon takes.
    #[response(status = 413)]
    TooLarge(ApiErrorBody),
    /// The body is not JSON (`Content-Type: application/json` is needed).
    #[response(status = 415)]
    UnsupportedMediaType(ApiErrorBody),
    /// The JSON does not have the fields this route takes.
    #[response(status = 422)]
    Unprocessable(ApiErrorBody),
    /// The daemon failed (its store or queue); the message says how.
    #[response(status = 500)]
    Internal(ApiErrorBody),
}

/// A JSON body whose rejection (not JSON, wrong fields, too large) is a JSON error too.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError(
                e.status(),
                format!("request body: {}", e.body_text()),
            )),
        }
    }
}

/// Path parameters whose rejection (e.g. a job id that is not a number) is a JSON error.
pub struct Route<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Route<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Route(v)),
            Err(e) => Err(ApiError(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

/// Query parameters whose rejection is a JSON error.
pub struct Params<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(e) => Err(ApiError(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn internal(msg: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.to_string())
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let status = match &e {
            QueueError::UnknownJob(_) => StatusCode::NOT_FOUND,
            QueueError::InvalidState { .. } | QueueError::LeaseLost { .. } => StatusCode::CONFLICT,
            QueueError::BadInput(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        let status = match e.exit_code() {
            2 => StatusCode::BAD_REQUEST,
            3 => StatusCode::FORBIDDEN,
            4 => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn to_json<T: Serialize>(v: &T) -> ApiResult {
    serde_json::to_value(v).map(Json).map_err(internal)
}

/// Who is calling the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Identity {
    /// The instance token from `serve.json`: whoever can read the daemon's 0600 file owns
    /// the data directory anyway, so the `user` a body names is taken as given (a claim).
    Local,
    /// A per-user API token or a console session: the daemon acts as this user, with the
    /// role they have now (read again on every request).
    User(String, crate::users::Role),
}

/// Authenticates every API call: `Authorization: Bearer <token>` (a `clerk user token`),
/// the console's session cookie (a POST also needs the session's CSRF token in
/// `x-clerk-csrf`), or the instance token in `x-clerk-token`.
async fn authenticate(State(d): D, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let unauthorized = |m: &str| ApiError(StatusCode::UNAUTHORIZED, m.to_owned()).into_response();
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let identity = if let Some(token) = bearer {
        match d.tokens.user_of(&d.engine.config, token.trim()) {
            Some((user, role)) => Identity::User(user, role),
            None => return unauthorized("unknown or revoked API token"),
        }
    } else if let Some(given) = headers
        .get(crate::instance::TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        if !crate::users::constant_eq(given.as_bytes(), d.instance().token.as_bytes()) {
            return unauthorized(&format!(
                "wrong {} header (the token is in the data directory's serve.json)",
                crate::instance::TOKEN_HEADER
            ));
        }
        Identity::Local
    } else if let Some(session) = super::console::session_of(&d, headers) {
        if req.method() != axum::http::Method::GET {
            let csrf = headers.get("x-clerk-csrf").and_then(|v| v.to_str().ok());
            let ok = csrf
                .is_some_and(|c| crate::users::constant_eq(c.as_bytes(), session.csrf.as_bytes()));
            if !ok {
                return ApiError(
                    StatusCode::FORBIDDEN,
                    "a POST with the console's session needs its CSRF token in x-clerk-csrf".into(),
                )
                .into_response();
            }
        }
        Identity::User(session.user, session.role)
    } else {
        return unauthorized(&format!(
            "authenticate: Authorization: Bearer <token from `clerk user token NAME`>, the console's session, or the {} header (the instance token is in the data directory's serve.json)",
            crate::instance::TOKEN_HEADER
        ));
    };
    req.extensions_mut().insert(identity);
    next.run(req).await
}

/// The user an API call acts as, once it is authorized. With a user token or session: that
/// user, whatever the body leaves empty; a body naming someone else is refused (403) and
/// recorded, and so is a role that does not permit `perm` ([`crate::users::permits`], the
/// same table the console uses). With the instance token: the body's user, as claimed
/// (the data directory's owner may do anything but decide in someone's name).
fn acting_user(
    d: &Daemon,
    who: &Identity,
    claimed: &str,
    action: &str,
    perm: crate::users::Permission,
) -> Result<String, ApiError> {
    let refuse = |user: &str, reason: String, message: String| {
        let recorded = d.engine.store.append(crate::evidence::Event::Refused {
            action: action.to_owned(),
            approval_id: None,
            run_id: None,
            user: user.to_owned(),
            reason,
            at: crate::evidence::timestamp((d.engine.clock)()),
        });
        if let Err(e) = recorded {
            tracing::error!("cannot record a refusal: {e}");
        }
        ApiError(StatusCode::FORBIDDEN, message)
    };
    match who {
        Identity::Local if claimed.is_empty() => Err(bad("say who acts: `user` is empty")),
        Identity::Local => Ok(claimed.to_owned()),
        Identity::User(u, _) if !claimed.is_empty() && claimed != u => {
            let reason = format!("authenticated as `{u}`, the request names `{claimed}`");
            Err(refuse(
                u,
                reason.clone(),
                format!("{reason}: you can only act as yourself (leave --as out)"),
            ))
        }
        Identity::User(u, role) if !crate::users::permits(*role, perm) => {
            let reason = format!("role {role} may not {}", perm.as_str());
            Err(refuse(u, reason.clone(), reason))
        }
        Identity::User(u, _) => Ok(u.clone()),
    }
}

/// A queue change made with the instance token that names nobody is recorded as the data
/// directory's owner's (the instance token's holder), never as nobody.
fn owner_if_unnamed(who: &Identity, user: &str) -> String {
    match who {
        Identity::Local if user.is_empty() => "(instance token: the data directory's owner)".into(),
        _ => user.to_owned(),
    }
}

/// Records a change of the queue under the user who made it.
async fn record_queue_change(
    d: &Daemon,
    action: &str,
    jobs: Vec<u64>,
    channel: Option<String>,
    user: &str,
) -> Result<(), ApiError> {
    d.engine
        .record(crate::evidence::Event::QueueChanged {
            action: action.to_owned(),
            jobs,
            channel,
            user: user.to_owned(),
            at: crate::evidence::timestamp((d.engine.clock)()),
        })
        .await
        .map_err(internal)
}

/// An optional JSON body: an empty body is `T::default()`, anything else must parse.
pub struct OptBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for OptBody<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptBody(T::default()));
        }
        serde_json::from_slice(&bytes).map(OptBody).map_err(|e| {
            ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("request body: {e}"),
            )
        })
    }
}

/// Who acts on a queue change (`{"user": ...}`, optional with a personal credential).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct QueueChange {
    #[serde(default)]
    user: String,
}

/// The daemon's API described as OpenAPI 3.1, built from the handlers' own `#[utoipa::path]`
/// attributes: every `/api` route is registered through [`api_routes`], so a route cannot
/// exist without its documentation (`GET /api/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "clerk daemon API",
        description = "JSON in and out; every error is `{\"error\": message}`. Authenticate with `Authorization: Bearer <token from clerk user token NAME>`, the console's session cookie (a POST also needs `x-clerk-csrf`), or the instance token from `serve.json` in `x-clerk-token`."
    ),
    components(schemas(ApiErrorBody))
)]
struct ApiDoc;

/// Every route of the API with its documentation, unauthenticated routes included.
fn api_routes() -> (
    Router<Arc<Daemon>>,
    Router<Arc<Daemon>>,
    utoipa::openapi::OpenApi,
) {
    use utoipa::OpenApi as _;
    use utoipa_axum::{router::OpenApiRouter, routes};
    let (authenticated, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(status))
        .routes(routes!(list_runs, enqueue_runs))
        .routes(routes!(show_run))
        .routes(routes!(list_reviews))
        .routes(routes!(rollback_run))
        .routes(routes!(run_report))
        .routes(routes!(verify_run))
        .routes(routes!(verify_scope))
        .routes(routes!(list_approvals))
        .routes(routes!(show_approval))
        .routes(routes!(decide))
        .routes(routes!(submit))
        .routes(routes!(list_jobs))
        .routes(routes!(show_job))
        .routes(routes!(retry_job))
        .routes(routes!(drop_job))
        .routes(routes!(resume_channel))
        .routes(routes!(list_schedules, add_schedule))
        .routes(routes!(pause_schedule))
        .routes(routes!(resume_schedule))
        .routes(routes!(remove_schedule))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(stats))
        .routes(routes!(show_case))
        .routes(routes!(case_bundle, export_case_bundle))
        .routes(routes!(tlog_checkpoint))
        .routes(routes!(tlog_consistency))
        .routes(routes!(tlog_cosignature))
        .split_for_parts();
    let (open, open_doc) = OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(hello))
        .split_for_parts();
    let mut doc = doc;
    doc.merge(open_doc);
    (authenticated, open, doc)
}

/// The OpenAPI document of the API (what `GET /api/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().2
}

pub(super) fn router(d: Arc<Daemon>) -> Router {
    let (authenticated, open, doc) = api_routes();
    let doc = Arc::new(doc);
    let api = authenticated.route_layer(middleware::from_fn_with_state(d.clone(), authenticate));
    api.merge(open)
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such API route".into()) })
        .with_state(d.clone())
        .merge(super::console::router(d))
}

#[derive(Debug, Deserialize)]
struct HelloQuery {
    id: String,
    nonce: String,
}

/// `GET /api/hello?id=&nonce=` (no token): proves to a CLI that this daemon holds the
/// CLI's token (see [`crate::users::token_proof`]) before the CLI sends it.
#[utoipa::path(
    get,
    path = "/api/hello",
    tag = "daemon",
    description = "No token: the daemon proves it holds a caller's token (HMAC-SHA-256 keyed by the token's stored hash over the nonce) before the caller sends it.",
    params(("id" = String, Query, description = "SHA-256 of the token's stored hash"), ("nonce" = String, Query, description = "32 to 128 random characters")),
    responses((status = 200, description = "JSON `{proof}`", body = serde_json::Value), ApiErrors)
)]
async fn hello(State(d): D, Params(q): Params<HelloQuery>) -> ApiResult {
    if q.nonce.len() < 32 || q.nonce.len() > 128 {
        return Err(bad("the nonce must be 32 to 128 characters"));
    }
    match d.tokens.prove(&q.id, &q.nonce) {
        Some(proof) => Ok(Json(json!({ "proof": proof }))),
        None => Err(ApiError(StatusCode::NOT_FOUND, "no such token".into())),
    }
}

/// Queue depth of one channel.
#[derive(Debug, Default, Serialize)]
struct Depth {
    queued: usize,
    claimed: usize,
    dead: usize,
}

#[utoipa::path(
    get,
    path = "/api/status",
    tag = "daemon",
    description = "The daemon, its browser pool, runs in flight, the pause state and the queue depth per channel.",
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn status(State(d): D) -> ApiResult {
    let jobs = d.queue_call(|q| q.list(&JobFilter::default())).await?;
    let mut depth: BTreeMap<String, Depth> = BTreeMap::new();
    for j in &jobs {
        let e = depth.entry(j.spec.channel.clone()).or_default();
        match j.state {
            JobState::Queued => e.queued += 1,
            JobState::Claimed => e.claimed += 1,
            JobState::Dead => e.dead += 1,
            _ => {}
        }
    }
    let paused = d.queue_call(|q| q.paused_channels()).await?;
    let pool = d.engine.pool.stats();
    let i = d.instance();
    let limits: BTreeMap<&str, Value> = d
        .engine
        .config
        .channels
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                json!({ "max_pages": c.max_pages, "min_interval_ms": c.min_interval().as_millis() as u64 }),
            )
        })
        .collect();
    let cluster = match d.cluster_view().await {
        None => Value::Null,
        Some(Ok((nodes, now))) => json!({
            "node": d.node(),
            "nodes": nodes.iter().map(|n| json!({
                "node": n.node,
                "address": n.address,
                "pid": n.pid,
                "started_at": n.started_at,
                "last_seen": n.last_seen,
                "heartbeat_age_secs": (now - n.last_seen).num_milliseconds() as f64 / 1000.0,
                "pages": n.pages,
                "busy": n.busy,
            })).collect::<Vec<_>>(),
        }),
        Some(Err(e)) => json!({ "node": d.node(), "error": e }),
    };
    Ok(Json(json!({
        "daemon": {
            "pid": i.pid,
            "addr": i.addr.to_string(),
            "started_at": i.started_at,
            "version": i.version,
            "stopping": d.stopping(),
            "pages": d.opts.pages,
        },
        "pool": {
            "browsers": pool.pids.len(),
            "pids": pool.pids,
            "launched": pool.launched,
            "replaced": pool.replaced,
            "recycled": pool.recycled,
        },
        "in_flight": d.in_flight(),
        "pause": d.engine.pause.state(),
        "queue": depth,
        "paused_channels": paused,
        "tlog_alarm": d.tlog_alarm.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        "limits": limits,
        "cluster": cluster,
    })))
}

/// Rows one `POST /api/runs` may queue.
pub const MAX_ROWS_PER_REQUEST: usize = 5_000;
/// Jobs one user may have waiting in the queue at once.
pub const MAX_QUEUED_PER_USER: usize = 20_000;

/// `POST /api/runs`: one job per row.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EnqueueRuns {
    /// A playbook name (`<data>/playbooks/NAME.yaml` or compiled into clerk) or the SHA-256
    /// of a text already in the playbook store. Never a path: the daemon opens no file a
    /// request names.
    #[serde(default)]
    playbook: Option<String>,
    /// The playbook's exact text (what `clerk run FILE` sends); stored by its hash.
    #[serde(default)]
    playbook_yaml: Option<String>,
    #[serde(default)]
    rows: Vec<BTreeMap<String, String>>,
    #[serde(default)]
    user: String,
    case_ref: Option<String>,
    /// `manual` (default) or `scheduled`; `submit` is only for approved submits.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    priority: Option<Priority>,
    /// Records the runs under this batch id (`clerk run` sends one).
    #[serde(default)]
    batch_id: Option<String>,
}

/// The playbook a request names, pinned by its exact text in the store: the text itself
/// (`playbook_yaml`), the hash of a stored text, or a plain name. A path is refused before
/// anything is opened, and no error echoes the content of a file the request named.
pub(super) async fn resolve_playbook(
    d: &Daemon,
    name: Option<&str>,
    yaml: Option<&str>,
) -> Result<crate::playbook::Playbook, ApiError> {
    let engine = d.engine.clone();
    let (name, yaml) = (name.map(str::to_owned), yaml.map(str::to_owned));
    tokio::task::spawn_blocking(move || {
        let config = Some(engine.config.as_ref());
        let pb = match (name.as_deref(), yaml) {
            (_, Some(text)) => crate::playbook::parse(
                std::path::Path::new(name.as_deref().unwrap_or("playbook_yaml")),
                text.as_bytes(),
                config,
            )
            .map_err(|diag| bad(diag.to_string()))?,
            (Some(h), None) if crate::evidence::text::is_sha256(h) => {
                engine.stored_playbook(h).map_err(|e| bad(e.to_string()))?
            }
            (Some(n), None) if crate::playbook::embedded::is_playbook_name(n) => {
                crate::playbook::embedded::find_playbook(&engine.data_dir, n, config)
                    .map_err(|diag| bad(diag.to_string()))?
            }
            (Some(_), None) => return Err(bad(
                "refused: `playbook` must be a playbook name (letters, digits, `-`, `_`) or the \
                     SHA-256 of a stored playbook text; the daemon opens no file a request names \
                     (send the file's text as `playbook_yaml`, as `clerk run FILE` does)",
            )),
            (None, None) => return Err(bad("give `playbook` (a name or hash) or `playbook_yaml`")),
        };
        engine.store_playbook(&pb).map_err(internal)?;
        Ok(pb)
    })
    .await
    .map_err(internal)?
}

#[utoipa::path(
    post,
    path = "/api/runs",
    tag = "runs",
    description = "Queues one run per row of inputs. Answers `{\"jobs\": [ids], \"playbook_sha256\": hash}`: the playbook is pinned by its exact text.",
    request_body = EnqueueRuns,
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn enqueue_runs(
    State(d): D,
    Extension(who): Extension<Identity>,
    Body(mut body): Body<EnqueueRuns>,
) -> ApiResult {
    body.user = acting_user(&d, &who, &body.user, "run", crate::users::Permission::Run)?;
    if body.priority == Some(Priority::Submit) {
        return Err(bad(
            "priority `submit` is only for approved submits (POST /api/submit queues them)",
        ));
    }
    let playbook =
        resolve_playbook(&d, body.playbook.as_deref(), body.playbook_yaml.as_deref()).await?;
    if playbook.mode == crate::playbook::Mode::Login {
        return Err(bad(
            "a login playbook is not queued: run `clerk login CHANNEL --playbook FILE`",
        ));
    }
    if body.rows.len() > MAX_ROWS_PER_REQUEST {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} rows in one request; at most {MAX_ROWS_PER_REQUEST} (split the batch)",
                body.rows.len()
            ),
        ));
    }
    let operator = body.user.clone();
    let waiting = d
        .queue_call(move |q| {
            Ok(q.list(&JobFilter {
                state: Some(JobState::Queued),
                ..JobFilter::default()
            })?
            .into_iter()
            .filter(|j| j.spec.operator == operator)
            .count())
        })
        .await?;
    if waiting + body.rows.len().max(1) > MAX_QUEUED_PER_USER {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "`{}` has {waiting} jobs waiting; at most {MAX_QUEUED_PER_USER} may wait at once",
                body.user
            ),
        ));
    }
    let rows = if body.rows.is_empty() {
        vec![BTreeMap::new()]
    } else {
        body.rows
    };
    let mut specs = Vec::new();
    for inputs in rows {
        let mut spec = JobSpec::new(&playbook.name, &playbook.channel, &body.user);
        spec.playbook_sha256 = Some(playbook.sha256.clone());
        spec.batch_id = body.batch_id.clone();
        // `claim.NAME` keys of a row are the case's claims.
        let (inputs, claims) = crate::batch::split_claims(&inputs);
        spec.inputs = inputs;
        spec.claims = claims;
        spec.case_ref = body.case_ref.clone();
        spec.priority = body.priority.unwrap_or(Priority::Manual);
        spec.max_attempts = d.opts.max_attempts;
        crate::serve::cluster_job(
            &d.engine.config,
            &d.engine.store,
            &mut spec,
            playbook.mode != crate::channel::Mode::ReadOnly,
        )
        .map_err(internal)?;
        specs.push(spec);
    }
    let ids = d
        .queue_call(move |q| {
            specs
                .into_iter()
                .map(|s| q.enqueue(s))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    d.wake();
    let raw: Vec<u64> = ids.iter().map(|j| j.0).collect();
    record_queue_change(
        &d,
        "enqueue",
        raw,
        Some(playbook.channel.clone()),
        &body.user,
    )
    .await?;
    Ok(Json(
        json!({ "jobs": ids, "playbook_sha256": playbook.sha256 }),
    ))
}

#[derive(Debug, Deserialize)]
struct JobQuery {
    state: Option<String>,
    channel: Option<String>,
    limit: Option<usize>,
}

fn parse_state(s: &str) -> Result<JobState, ApiError> {
    Ok(match s {
        "queued" => JobState::Queued,
        "claimed" => JobState::Claimed,
        "done" => JobState::Done,
        "dead" => JobState::Dead,
        "dropped" => JobState::Dropped,
        other => {
            return Err(bad(format!(
                "unknown job state {other:?} (queued, claimed, done, dead, dropped)"
            )))
        }
    })
}

#[utoipa::path(
    get,
    path = "/api/jobs",
    tag = "queue",
    description = "Jobs of the run queue, in id order.",
    params(("state" = Option<String>, Query, description = "queued, claimed, done, dead or dropped"), ("channel" = Option<String>, Query, description = "Only this channel"), ("limit" = Option<usize>, Query, description = "At most this many")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn list_jobs(State(d): D, Params(q): Params<JobQuery>) -> ApiResult {
    let filter = JobFilter {
        state: q.state.as_deref().map(parse_state).transpose()?,
        channel: q.channel,
        limit: q.limit,
    };
    let jobs = d.queue_call(move |q| q.list(&filter)).await?;
    to_json(&jobs)
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = "queue",
    description = "One job: its spec, state, attempts, lease, outcome or dead-letter reason.",
    params(("id" = u64, Path, description = "Job id")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn show_job(State(d): D, Route(id): Route<u64>) -> ApiResult {
    match d.queue_call(move |q| q.get(JobId(id))).await? {
        Some(job) => to_json(&job),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no job {id} in the queue"),
        )),
    }
}

#[utoipa::path(
    post,
    path = "/api/jobs/{id}/retry",
    tag = "queue",
    description = "Queues a dead-lettered job again.",
    request_body(content = QueueChange, description = "optional: who acts (with the instance token)"),
    params(("id" = u64, Path, description = "Job id")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn retry_job(
    State(d): D,
    Route(id): Route<u64>,
    Extension(who): Extension<Identity>,
    OptBody(body): OptBody<QueueChange>,
) -> ApiResult {
    let user = acting_user(
        &d,
        &who,
        &owner_if_unnamed(&who, &body.user),
        "queue_retry",
        crate::users::Permission::Queue,
    )?;
    d.queue_call(move |q| q.retry(JobId(id))).await?;
    d.wake();
    record_queue_change(&d, "retry", vec![id], None, &user).await?;
    Ok(Json(json!({ "job": id, "state": "queued" })))
}

#[utoipa::path(
    post,
    path = "/api/jobs/{id}/drop",
    tag = "queue",
    description = "Drops a queued or dead-lettered job.",
    request_body(content = QueueChange, description = "optional: who acts (with the instance token)"),
    params(("id" = u64, Path, description = "Job id")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn drop_job(
    State(d): D,
    Route(id): Route<u64>,
    Extension(who): Extension<Identity>,
    OptBody(body): OptBody<QueueChange>,
) -> ApiResult {
    let user = acting_user(
        &d,
        &who,
        &owner_if_unnamed(&who, &body.user),
        "queue_drop",
        crate::users::Permission::Queue,
    )?;
    d.queue_call(move |q| q.drop_job(JobId(id))).await?;
    record_queue_change(&d, "drop", vec![id], None, &user).await?;
    Ok(Json(json!({ "job": id, "state": "dropped" })))
}

#[utoipa::path(
    post,
    path = "/api/queue/{channel}/resume",
    tag = "queue",
    description = "Resumes a channel's queue paused after its session expired.",
    request_body(content = QueueChange, description = "optional: who acts (with the instance token)"),
    params(("channel" = String, Path, description = "Channel id")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn resume_channel(
    State(d): D,
    Route(channel): Route<String>,
    Extension(who): Extension<Identity>,
    OptBody(body): OptBody<QueueChange>,
) -> ApiResult {
    let user = acting_user(
        &d,
        &who,
        &owner_if_unnamed(&who, &body.user),
        "queue_resume",
        crate::users::Permission::Queue,
    )?;
    let c = channel.clone();
    d.queue_call(move |q| q.resume_channel(&c)).await?;
    d.wake();
    record_queue_change(&d, "resume_channel", vec![], Some(channel.clone()), &user).await?;
    Ok(Json(json!({ "channel": channel, "queue": "resumed" })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Decide {
    #[serde(default)]
    user: String,
    approve: bool,
    note: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/approvals/{id}/decide",
    tag = "approvals",
    description = "Approves or rejects as the authenticated reviewer (four eyes, the channel's reviewer list and the reviewer's role apply). An approval queues its submit. Needs the reviewer's own token or console session when users are declared.",
    request_body = Decide,
    params(("id" = String, Path, description = "Approval id")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn decide(
    State(d): D,
    Route(id): Route<String>,
    Extension(who): Extension<Identity>,
    Body(body): Body<Decide>,
) -> ApiResult {
    let action = if body.approve { "approve" } else { "reject" };
    if who == Identity::Local && crate::users::declared(&d.engine.data_dir, &d.engine.config) {
        // The instance token operates the daemon; it decides in no one's name.
        let claimed = if body.user.is_empty() {
            "(nobody named)"
        } else {
            body.user.as_str()
        };
        let reason = format!(
            "{action} needs the reviewer's own credential (a token from `clerk user token NAME`, or the console): \
             the instance token names `{claimed}` only as a claim"
        );
        let recorded = d.engine.store.append(crate::evidence::Event::Refused {
            action: action.to_owned(),
            approval_id: Some(id.clone()),
            run_id: None,
            user: claimed.to_owned(),
            reason: reason.clone(),
            at: crate::evidence::timestamp((d.engine.clock)()),
        });
        if let Err(e) = recorded {
            tracing::error!("cannot record a refusal: {e}");
        }
        return Err(ApiError(StatusCode::FORBIDDEN, reason));
    }
    let user = acting_user(
        &d,
        &who,
        &body.user,
        action,
        crate::users::Permission::Decide,
    )?;
    match d.decide(&id, &user, body.approve, body.note).await {
        Ok((approval, submit)) => Ok(Json(json!({
            "approval": approval,
            "submit_job": submit,
        }))),
        Err(DecideError::Approval(e)) => Err(ApiError(StatusCode::FORBIDDEN, e.to_string())),
        Err(e) => Err(internal(e)),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Submit {
    approval_id: String,
    #[serde(default)]
    user: String,
    /// A playbook text to run instead of the approved one (`clerk submit --playbook FILE`):
    /// the engine refuses it, naming both hashes, unless it is byte for byte the approved
    /// text. Default: the approved text, from the playbook store.
    #[serde(default)]
    playbook_yaml: Option<String>,
    /// Inputs to give again (secrets are never stored).
    #[serde(default)]
    inputs: BTreeMap<String, String>,
}

/// Enqueues an approved submit at the highest priority, or answers with the job the
/// approval already has (`"queued": false`). Every check (approval state, binding, expiry,
/// four eyes) is the engine's, when the run starts.
#[utoipa::path(
    post,
    path = "/api/submit",
    tag = "approvals",
    description = "Queues the submit of an approved draft at the highest priority (or answers with the job it already has, `\"queued\": false`). The approved playbook text is what runs.",
    request_body = Submit,
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn submit(
    State(d): D,
    Extension(who): Extension<Identity>,
    Body(body): Body<Submit>,
) -> ApiResult {
    let user = acting_user(
        &d,
        &who,
        &body.user,
        "submit",
        crate::users::Permission::Submit,
    )?;
    let engine = d.engine.clone();
    let id = body.approval_id.clone();
    let approval = tokio::task::spawn_blocking(move || crate::approval::load(&engine, &id))
        .await
        .map_err(internal)?
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
    let pinned = match body.playbook_yaml.as_deref() {
        Some(text) => Some(
            resolve_playbook(&d, Some(&approval.request.content.playbook), Some(text))
                .await?
                .sha256,
        ),
        None => None,
    };
    let (job, queued) = d
        .enqueue_submit(&approval, &user, pinned, body.inputs)
        .await?;
    Ok(Json(json!({ "jobs": [job.id], "queued": queued })))
}

/// `GET /api/runs`: the runs page's data (same filters).
#[utoipa::path(
    get,
    path = "/api/runs",
    tag = "runs",
    description = "The runs page's data: runs from the index, newest first, filtered like the console's runs page.",
    params(("channel" = Option<String>, Query, description = "Only this channel"), ("playbook" = Option<String>, Query, description = "Only this playbook name"), ("status" = Option<String>, Query, description = "running, ok, failed, refused, session_expired, interrupted"), ("case" = Option<String>, Query, description = "Only this case reference"), ("since" = Option<String>, Query, description = "RFC 3339 time or YYYY-MM-DD")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn list_runs(State(d): D, Params(f): Params<super::views::RunsFilter>) -> ApiResult {
    let store = d.engine.store.clone();
    let rows = tokio::task::spawn_blocking(move || super::views::runs(&store, &f))
        .await
        .map_err(internal)?
        .map_err(|e| bad(e.to_string()))?;
    to_json(&rows)
}

/// `GET /api/reviews`: the cases to review (the console's `/reviews`).
#[utoipa::path(
    get,
    path = "/api/reviews",
    tag = "runs",
    description = "Runs whose case claims the page did not confirm (lookups that ended needs_review, drafts refused before filling), newest first: claims and page values, verdicts, the last screenshot.",
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn list_reviews(State(d): D) -> ApiResult {
    let store = d.engine.store.clone();
    let items = tokio::task::spawn_blocking(move || super::views::reviews(&store))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    to_json(&items)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Rollback {
    #[serde(default)]
    user: String,
    /// Inputs of the compensating playbook besides those `undo:` maps (e.g. a reason).
    #[serde(default)]
    inputs: BTreeMap<String, String>,
}

/// `POST /api/runs/{id}/rollback`: queues the draft of a submitted run's compensating
/// action (its playbook's `undo:`), linked to the run; the draft waits for a reviewer.
#[utoipa::path(
    post,
    path = "/api/runs/{id}/rollback",
    tag = "runs",
    description = "Queues the draft of the compensating action of a submitted run (its playbook's `undo:`), linked to it by `rollback_of`. Answers `{\"job\": id}`; 409 when the run is not a sent write, names no undo, or already has a rollback.",
    params(("id" = String, Path, description = "Run id")),
    request_body = Rollback,
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn rollback_run(
    State(d): D,
    Extension(who): Extension<Identity>,
    Route(id): Route<String>,
    Body(body): Body<Rollback>,
) -> ApiResult {
    let user = acting_user(
        &d,
        &who,
        &body.user,
        "rollback",
        crate::users::Permission::Run,
    )?;
    let job = crate::serve::enqueue_rollback(&d, &id, &user, body.inputs)
        .await
        .map_err(|(code, msg)| ApiError(code, msg))?;
    to_json(&serde_json::json!({ "job": job.0, "rollback_of": id }))
}

/// `GET /api/runs/{id}`: the run page's data.
#[utoipa::path(
    get,
    path = "/api/runs/{id}",
    tag = "runs",
    description = "One run as the journal tells it: steps, evidence, blocked and allowed requests, approvals, fields.",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn show_run(State(d): D, Route(id): Route<String>) -> ApiResult {
    let store = d.engine.store.clone();
    let wanted = id.clone();
    match tokio::task::spawn_blocking(move || store.run(&wanted))
        .await
        .map_err(internal)?
    {
        Ok(Some(run)) => to_json(&run),
        Ok(None) => Err(ApiError(StatusCode::NOT_FOUND, format!("no run {id}"))),
        Err(e) => Err(internal(e)),
    }
}

/// `GET /api/runs/{id}/report`: the run as `clerk run --json` reports it, from the journal.
#[utoipa::path(
    get,
    path = "/api/runs/{id}/report",
    tag = "runs",
    description = "One run in the shape `clerk run --json` prints for each run (`timings` is null: the journal does not keep them).",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn run_report(State(d): D, Route(id): Route<String>) -> ApiResult {
    let store = d.engine.store.clone();
    let wanted = id.clone();
    match tokio::task::spawn_blocking(move || store.run(&wanted))
        .await
        .map_err(internal)?
    {
        Ok(Some(run)) => to_json(&crate::runner::RunReport::from_detail(&run)),
        Ok(None) => match d.shared_report(&id).await {
            // Ran on another node of the cluster: its report from the database.
            Some(report) => Ok(Json(report)),
            None => Err(ApiError(StatusCode::NOT_FOUND, format!("no run {id}"))),
        },
        Err(e) => Err(internal(e)),
    }
}

/// `POST /api/runs/{id}/verify`: re-hashes the run's screenshots and records ("verify now").
#[utoipa::path(
    post,
    path = "/api/runs/{id}/verify",
    tag = "evidence",
    description = "Re-hashes one run's screenshots and records (the console's \"verify now\"). Answers `{\"intact\": bool, \"report\": VerifyReport}`.",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn verify_run(State(d): D, Route(id): Route<String>) -> ApiResult {
    let store = d.engine.store.clone();
    let report = tokio::task::spawn_blocking(move || {
        crate::evidence::verify::verify_store(&store, &crate::evidence::verify::Scope::Run(id))
    })
    .await
    .map_err(internal)?
    .map_err(|e| bad(e.to_string()))?;
    Ok(Json(json!({ "intact": report.ok(), "report": report })))
}

/// `POST /api/verify`: `clerk verify` (all, a run or a case) in the daemon, whose own
/// index is then compared with the journal too.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    case: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/verify",
    tag = "evidence",
    description = "`clerk verify` in the daemon: the journal chain, the files and the daemon's own index. Answers the verify report.",
    request_body = VerifyBody,
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn verify_scope(State(d): D, Body(body): Body<VerifyBody>) -> ApiResult {
    use crate::evidence::verify::Scope;
    let scope = match (body.run, body.case) {
        (Some(r), None) => Scope::Run(r),
        (None, Some(c)) => Scope::Case(c),
        (None, None) => Scope::All,
        _ => return Err(bad("give at most one of run and case")),
    };
    let store = d.engine.store.clone();
    let report =
        tokio::task::spawn_blocking(move || crate::evidence::verify::verify_store(&store, &scope))
            .await
            .map_err(internal)?
            .map_err(|e| bad(e.to_string()))?;
    to_json(&report)
}

/// `GET /api/approvals`: the approvals page's data (same filters, same order).
#[utoipa::path(
    get,
    path = "/api/approvals",
    tag = "approvals",
    description = "The approvals page's data: pending first, then oldest first.",
    params(("channel" = Option<String>, Query, description = "Only this channel"), ("playbook" = Option<String>, Query, description = "Only this playbook name"), ("case" = Option<String>, Query, description = "Only this case reference")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn list_approvals(State(d): D, Params(f): Params<super::views::ApprovalFilter>) -> ApiResult {
    let engine = d.engine.clone();
    let all = tokio::task::spawn_blocking(move || super::views::approvals(&engine, &f))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    to_json(&all)
}

/// `GET /api/approvals/{id}`: one approval, its state and decision.
#[utoipa::path(
    get,
    path = "/api/approvals/{id}",
    tag = "approvals",
    description = "One approval: its request (held write, values, inputs), state and decision.",
    params(("id" = String, Path, description = "Approval id")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn show_approval(State(d): D, Route(id): Route<String>) -> ApiResult {
    let engine = d.engine.clone();
    match tokio::task::spawn_blocking(move || crate::approval::load(&engine, &id))
        .await
        .map_err(internal)?
    {
        Ok(a) => to_json(&a),
        Err(e) => Err(ApiError(StatusCode::NOT_FOUND, e.to_string())),
    }
}

/// `GET /api/cases/{case}`: the case view's data.
#[utoipa::path(
    get,
    path = "/api/cases/{case}",
    tag = "evidence",
    description = "The case view's data: the case's runs, screenshots and approvals in journal order.",
    params(("case" = String, Path, description = "Case reference")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn show_case(State(d): D, Route(case): Route<String>) -> ApiResult {
    let store = d.engine.store.clone();
    let wanted = case.clone();
    match tokio::task::spawn_blocking(move || super::views::case(&store, &wanted))
        .await
        .map_err(internal)?
    {
        Ok(Some(v)) => to_json(&v),
        Ok(None) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no run has case reference {case}"),
        )),
        Err(e) => Err(internal(e)),
    }
}

/// `GET /api/cases/{case}/bundle.tar`: the case's auditor bundle, a read-only copy.
#[utoipa::path(
    get,
    path = "/api/cases/{case}/bundle.tar",
    tag = "evidence",
    description = "The case's auditor bundle as a tar (manifest, journal excerpt, screenshots, SHA256SUMS): a read-only copy; nothing is recorded.",
    params(("case" = String, Path, description = "Case reference")),
    responses((status = 200, description = "application/x-tar", content_type = "application/x-tar"), ApiErrors)
)]
async fn case_bundle(State(d): D, Route(case): Route<String>) -> Result<Response, ApiError> {
    send_bundle(&d, case, None).await
}

/// `POST /api/cases/{case}/bundle.tar`: the bundle, the export recorded under the caller.
#[utoipa::path(
    post,
    path = "/api/cases/{case}/bundle.tar",
    tag = "evidence",
    description = "The same bundle, the export recorded as a checkpoint naming who exported (as clerk export does).",
    params(("case" = String, Path, description = "Case reference")),
    responses((status = 200, description = "application/x-tar", content_type = "application/x-tar"), ApiErrors)
)]
async fn export_case_bundle(
    State(d): D,
    Route(case): Route<String>,
    Extension(who): Extension<Identity>,
    OptBody(body): OptBody<QueueChange>,
) -> Result<Response, ApiError> {
    let user = acting_user(
        &d,
        &who,
        &owner_if_unnamed(&who, &body.user),
        "export",
        crate::users::Permission::Read,
    )?;
    send_bundle(&d, case, Some(user)).await
}

async fn send_bundle(d: &Daemon, case: String, by: Option<String>) -> Result<Response, ApiError> {
    let store = d.engine.store.clone();
    let wanted = case.clone();
    match tokio::task::spawn_blocking(move || {
        super::views::case_bundle(&store, &wanted, by.as_deref())
    })
    .await
    .map_err(internal)?
    {
        Ok(tar) => Ok(super::console::tar_response(&case, tar)),
        Err(e) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("cannot export case {case}: {e}"),
        )),
    }
}

#[utoipa::path(
    get,
    path = "/api/schedules",
    tag = "schedules",
    description = "Every schedule with its next and last firing.",
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn list_schedules(State(d): D) -> ApiResult {
    let store = d.engine.store.clone();
    let now = (d.engine.clock)();
    let views = tokio::task::spawn_blocking(move || {
        schedule::Schedules::load(&store).map(|s| s.iter().map(|s| s.view(now)).collect::<Vec<_>>())
    })
    .await
    .map_err(internal)??;
    to_json(&views)
}

/// `POST /api/schedules`: as `clerk schedule add`, without files: the playbook by name,
/// hash or text, the inputs as rows or a URL.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddSchedule {
    name: String,
    /// A playbook name or the SHA-256 of a stored playbook text (never a path).
    playbook: Option<String>,
    /// Or the playbook's text, stored content-addressed and pinned by its hash.
    playbook_yaml: Option<String>,
    cron: Option<String>,
    tz: Option<String>,
    every: Option<String>,
    /// Refused: the daemon opens no file a request names (present only to say so).
    #[schema(value_type = Option<String>)]
    inputs: Option<Value>,
    /// Input rows kept in the schedule (one run per row at every firing).
    inputs_rows: Option<Vec<BTreeMap<String, String>>>,
    inputs_from_url: Option<String>,
    case_from: Option<String>,
    #[serde(default = "one")]
    jobs: usize,
    #[serde(default)]
    user: String,
}

fn one() -> usize {
    1
}

#[utoipa::path(
    post,
    path = "/api/schedules",
    tag = "schedules",
    description = "Adds a schedule (as `clerk schedule add`).",
    request_body = AddSchedule,
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn add_schedule(
    State(d): D,
    Extension(who): Extension<Identity>,
    Body(body): Body<AddSchedule>,
) -> ApiResult {
    let user = acting_user(
        &d,
        &who,
        &body.user,
        "schedule_add",
        crate::users::Permission::Schedule,
    )?;
    let trigger = match (body.cron, body.every) {
        (Some(expr), None) => TriggerSpec::Cron { expr, tz: body.tz },
        (None, Some(every)) => TriggerSpec::Every(every),
        _ => return Err(bad("give exactly one of cron and every")),
    };
    if body.inputs.is_some() {
        return Err(bad(
            "refused: `inputs` would name a file, and the daemon opens no file a request \
             names; send the rows as `inputs_rows` (as `clerk schedule add --inputs FILE` \
             does) or give `inputs_from_url`",
        ));
    }
    let inputs = match (body.inputs_rows, body.inputs_from_url) {
        (None, None) => InputsSpec::None,
        (Some(rows), None) => {
            if rows.len() > MAX_ROWS_PER_REQUEST {
                return Err(ApiError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "{} rows in one schedule; at most {MAX_ROWS_PER_REQUEST}",
                        rows.len()
                    ),
                ));
            }
            InputsSpec::Rows(rows)
        }
        (None, Some(u)) => InputsSpec::Url(u),
        _ => return Err(bad("give at most one of inputs_rows and inputs_from_url")),
    };
    // A name or hash as given (a named schedule follows its playbook's updates); a text is
    // stored and pinned by its hash. Paths are refused, and nothing is read for them.
    let playbook = match (&body.playbook, &body.playbook_yaml) {
        (_, Some(_)) => {
            let pb = resolve_playbook(&d, body.playbook.as_deref(), body.playbook_yaml.as_deref())
                .await?;
            pb.sha256
        }
        (Some(p), None) => {
            resolve_playbook(&d, Some(p), None).await?;
            p.clone()
        }
        (None, None) => return Err(bad("give `playbook` (a name or hash) or `playbook_yaml`")),
    };
    let request = AddRequest {
        name: body.name,
        playbook,
        trigger,
        inputs,
        case_from: body.case_from,
        jobs: body.jobs,
        files_allowed: false,
    };
    let engine = d.engine.clone();
    let now = (engine.clock)();
    let added = tokio::task::spawn_blocking(move || {
        schedule::add(
            &engine.store,
            &engine.config,
            &engine.data_dir,
            &request,
            &user,
            now,
        )
    })
    .await
    .map_err(internal)??;
    to_json(&added.view(now))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ScheduleChange {
    #[serde(default)]
    user: String,
    reason: Option<String>,
}

async fn change_schedule(
    d: Arc<Daemon>,
    who: Identity,
    name: String,
    mut body: ScheduleChange,
    what: &'static str,
) -> ApiResult {
    body.user = acting_user(
        &d,
        &who,
        &body.user,
        &format!("schedule_{what}"),
        crate::users::Permission::Schedule,
    )?;
    let engine = d.engine.clone();
    let now = (engine.clock)();
    let n = name.clone();
    tokio::task::spawn_blocking(move || match what {
        "pause" => schedule::pause(
            &engine.store,
            &n,
            &body.user,
            body.reason.as_deref().unwrap_or(""),
            now,
        ),
        "resume" => schedule::resume(&engine.store, &n, &body.user, now),
        _ => schedule::remove(&engine.store, &n, &body.user, now),
    })
    .await
    .map_err(internal)??;
    Ok(Json(json!({ "schedule": name, "done": what })))
}

#[utoipa::path(
    post,
    path = "/api/schedules/{name}/pause",
    tag = "schedules",
    description = "Pauses a schedule.",
    request_body = ScheduleChange,
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn pause_schedule(
    State(d): D,
    Route(name): Route<String>,
    Extension(who): Extension<Identity>,
    Body(body): Body<ScheduleChange>,
) -> ApiResult {
    change_schedule(d, who, name, body, "pause").await
}

#[utoipa::path(
    post,
    path = "/api/schedules/{name}/resume",
    tag = "schedules",
    description = "Resumes a schedule.",
    request_body = ScheduleChange,
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn resume_schedule(
    State(d): D,
    Route(name): Route<String>,
    Extension(who): Extension<Identity>,
    Body(body): Body<ScheduleChange>,
) -> ApiResult {
    change_schedule(d, who, name, body, "resume").await
}

#[utoipa::path(
    post,
    path = "/api/schedules/{name}/remove",
    tag = "schedules",
    description = "Removes a schedule.",
    request_body = ScheduleChange,
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn remove_schedule(
    State(d): D,
    Route(name): Route<String>,
    Extension(who): Extension<Identity>,
    Body(body): Body<ScheduleChange>,
) -> ApiResult {
    change_schedule(d, who, name, body, "remove").await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    #[serde(default)]
    user: String,
    reason: String,
    channel: Option<String>,
}

async fn change_pause(d: Arc<Daemon>, who: Identity, on: bool, mut body: PauseBody) -> ApiResult {
    body.user = acting_user(
        &d,
        &who,
        &body.user,
        if on { "pause" } else { "resume" },
        crate::users::Permission::Pause,
    )?;
    let scope = crate::pause::PauseScope::from_channel(body.channel.as_deref());
    let now = (d.engine.clock)();
    let board = &d.engine.pause;
    let changed = if on {
        board
            .pause(scope.clone(), &body.user, &body.reason, now)
            .await
    } else {
        board
            .resume(scope.clone(), &body.user, &body.reason, now)
            .await
    };
    if changed.is_ok() {
        d.publish_pause(&scope, on, &body.user, &body.reason);
    }
    d.pause_changed();
    match changed {
        Ok(c) => Ok(Json(json!({
            "at": c.at,
            "seq": c.seq,
            "state": c.state,
            "file_error": c.file_error,
        }))),
        Err(e) => {
            let status = match e.exit_code() {
                3 => StatusCode::FORBIDDEN,
                2 => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            Err(ApiError(status, e.to_string()))
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/pause",
    tag = "pause",
    description = "Emergency pause of everything or of one channel: recorded, and every guard fails every write at once.",
    request_body = PauseBody,
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn pause(
    State(d): D,
    Extension(who): Extension<Identity>,
    Body(body): Body<PauseBody>,
) -> ApiResult {
    change_pause(d, who, true, body).await
}

#[utoipa::path(
    post,
    path = "/api/resume",
    tag = "pause",
    description = "Ends an emergency pause (everything or one channel).",
    request_body = PauseBody,
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn resume(
    State(d): D,
    Extension(who): Extension<Identity>,
    Body(body): Body<PauseBody>,
) -> ApiResult {
    change_pause(d, who, false, body).await
}

#[derive(Debug, Deserialize)]
struct StatsParams {
    since: Option<String>,
    until: Option<String>,
    channel: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "stats",
    description = "The weekly numbers (as `clerk stats --json`) for a period and optionally one channel.",
    params(("since" = Option<String>, Query, description = "RFC 3339 or YYYY-MM-DD; default a week ago"), ("until" = Option<String>, Query, description = "RFC 3339 or YYYY-MM-DD; default now"), ("channel" = Option<String>, Query, description = "Only this channel")),
    responses((status = 200, description = "JSON", body = serde_json::Value), ApiErrors)
)]
async fn stats(State(d): D, Params(p): Params<StatsParams>) -> ApiResult {
    let now = (d.engine.clock)();
    let time = |t: Option<String>, default| match t {
        Some(t) => crate::stats::parse_time(&t, now).map_err(|e| bad(e.to_string())),
        None => Ok(default),
    };
    let q = crate::stats::StatsQuery {
        since: time(p.since, now - chrono::TimeDelta::days(7))?,
        until: time(p.until, now)?,
        channel: p.channel,
    };
    let store = d.engine.store.clone();
    let stats = tokio::task::spawn_blocking(move || crate::stats::compute(&store, &q, now))
        .await
        .map_err(internal)?
        .map_err(|e| bad(e.to_string()))?;
    to_json(&stats)
}

/// `GET /api/tlog/checkpoint`: the latest signed checkpoint (what witnesses cosign).
#[utoipa::path(
    get,
    path = "/api/tlog/checkpoint",
    tag = "evidence",
    description = "The transparency log's latest signed checkpoint (C2SP signed note in `note`) with the witness cosignatures kept for it (the daemon signs one at start, every `[log] checkpoint_every` or `checkpoint_records`, and at shutdown). Witnesses fetch it with a consistency proof from the checkpoint they cosigned last.",
    responses((status = 200, description = "JSON `{origin, size, root, note}`", body = serde_json::Value), ApiErrors)
)]
async fn tlog_checkpoint(State(d): D) -> ApiResult {
    // A GET signs nothing: the daemon's signer keeps the checkpoint fresh.
    let dir = d.engine.store.data_dir().to_owned();
    let latest = tokio::task::spawn_blocking(move || crate::evidence::tlog::latest(&dir))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let alarm = d
        .tlog_alarm
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (witnesses, quorum) = d.engine.store.witnesses();
    let dir = d.engine.store.data_dir().to_owned();
    let latest = latest.map(|l| {
        crate::evidence::tlog::with_cosignatures(&dir, l.clone(), &witnesses).unwrap_or(l)
    });
    match latest {
        Some(l) => Ok(Json(json!({
            "witnesses": crate::evidence::tlog::cosigners(&l, &witnesses),
            "quorum": quorum,
            "origin": l.checkpoint.origin,
            "size": l.checkpoint.size,
            "root": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, l.checkpoint.root),
            "note": l.to_text(),
            "alarm": alarm,
        }))),
        None => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            alarm.unwrap_or_else(|| "no checkpoint has been signed yet".into()),
        )),
    }
}

/// `POST /api/tlog/cosignature`: a witness hands back a checkpoint it cosigned.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Cosigned {
    /// The checkpoint as a signed note, with the witness's cosignature line.
    note: String,
    #[serde(default)]
    user: String,
}

#[utoipa::path(
    post,
    path = "/api/tlog/cosignature",
    tag = "evidence",
    description = "A witness returns a checkpoint of this log with its cosignature. Only cosignatures of the keys in `[log] witnesses` that check are kept; the checkpoint must be one this log signed.",
    request_body = Cosigned,
    responses((status = 200, description = "JSON `{added, witnesses, quorum}`", body = serde_json::Value), ApiErrors)
)]
async fn tlog_cosignature(
    State(d): D,
    Extension(who): Extension<Identity>,
    Body(body): Body<Cosigned>,
) -> ApiResult {
    acting_user(
        &d,
        &who,
        &owner_if_unnamed(&who, &body.user),
        "cosign",
        crate::users::Permission::Read,
    )?;
    let (witnesses, quorum) = d.engine.store.witnesses();
    if witnesses.is_empty() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "no witnesses are configured ([log] witnesses): cosignatures are not kept".into(),
        ));
    }
    let dir = d.engine.store.data_dir().to_owned();
    let note = body.note;
    let (added, cp) = tokio::task::spawn_blocking(move || {
        let added = crate::evidence::tlog::add_cosignatures(&dir, &note, &witnesses)?;
        let cp = crate::evidence::tlog::SignedCheckpoint::parse(&note)?;
        let merged = crate::evidence::tlog::cosignatures_for(&dir, &cp.checkpoint, &witnesses)?;
        Ok::<_, crate::evidence::tlog::TlogError>((
            added,
            crate::evidence::tlog::cosigners(&merged, &witnesses),
        ))
    })
    .await
    .map_err(internal)?
    .map_err(|e| bad(e.to_string()))?;
    Ok(Json(
        json!({ "added": added, "witnesses": cp, "quorum": quorum }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyParams {
    old: u64,
    new: u64,
}

/// `GET /api/tlog/consistency?old=M&new=N`: the RFC 6962 consistency proof between sizes.
#[utoipa::path(
    get,
    path = "/api/tlog/consistency",
    tag = "evidence",
    description = "The consistency proof (base64 hashes, RFC 6962 2.1.2) from tree size `old` to tree size `new` of the journal's Merkle log.",
    params(("old" = u64, Query, description = "Old tree size"), ("new" = u64, Query, description = "New tree size")),
    responses((status = 200, description = "JSON `{old, new, proof}`", body = serde_json::Value), ApiErrors)
)]
async fn tlog_consistency(State(d): D, Params(p): Params<ConsistencyParams>) -> ApiResult {
    let dir = d.engine.store.data_dir().to_owned();
    let (old, new) = (p.old, p.new);
    let proof = tokio::task::spawn_blocking(move || {
        let tree =
            crate::evidence::tlog::journal_tree(&dir).map_err(|e| internal(e.to_string()))?;
        if old == 0 || old == new {
            return Ok(Vec::new());
        }
        tree.consistency_proof(old, new)
            .map_err(|e| bad(e.to_string()))
    })
    .await
    .map_err(internal)??;
    let b64 = |h: &[u8; 32]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h);
    Ok(Json(json!({
        "old": old,
        "new": new,
        "proof": proof.iter().map(b64).collect::<Vec<_>>(),
    })))
}

/// `GET /metrics`: counters over all time from the journal, gauges from the daemon.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "daemon",
    description = "OpenMetrics text: counters from the journal, gauges from the daemon. No token needed.",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"))
)]
async fn metrics(State(d): D) -> Response {
    match render_metrics(&d).await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn render_metrics(d: &Arc<Daemon>) -> Result<String, ApiError> {
    let now = (d.engine.clock)();
    let q = crate::stats::StatsQuery {
        since: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        until: now,
        channel: None,
    };
    let store = d.engine.store.clone();
    let stats = tokio::task::spawn_blocking(move || crate::stats::compute(&store, &q, now))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let jobs = d.queue_call(|q| q.list(&JobFilter::default())).await?;
    let mut live = crate::stats::metrics::LiveMetrics::default();
    fill_live(d, &jobs, &mut live);
    if let Some(Ok((nodes, now))) = d.cluster_view().await {
        live.nodes = nodes
            .iter()
            .map(|n| crate::stats::metrics::LiveNode {
                node: n.node.clone(),
                heartbeat_age_secs: (now - n.last_seen).num_milliseconds() as f64 / 1000.0,
                pages: u64::try_from(n.pages).unwrap_or(0),
                busy: u64::try_from(n.busy).unwrap_or(0),
            })
            .collect();
    }
    crate::stats::metrics::render_metrics(&stats, &live).map_err(internal)
}

fn fill_live(
    d: &Daemon,
    jobs: &[crate::queue::Job],
    live: &mut crate::stats::metrics::LiveMetrics,
) {
    for j in jobs {
        if matches!(
            j.state,
            JobState::Queued | JobState::Claimed | JobState::Dead
        ) {
            *live
                .queue_depth
                .entry(j.spec.channel.clone())
                .or_default()
                .entry(j.state.to_string())
                .or_default() += 1;
        }
    }
    let pause = d.engine.pause.state();
    live.paused = pause.global.is_some();
    for c in &d.engine.config.channels {
        live.channel_max_pages
            .insert(c.id.clone(), c.max_pages as u64);
    }
    for c in &d.engine.config.channels {
        live.channels_paused
            .insert(c.id.clone(), pause.channels.contains_key(&c.id));
    }
    live.pool_browsers = d.engine.pool.stats().pids.len() as u64;
    live.pool_contexts = d
        .engine
        .pool
        .browsers()
        .iter()
        .map(|b| b.contexts_open() as u64)
        .sum();
    live.runs_in_flight = d.in_flight().len() as u64;
    live.evidence_not_copied = d.evidence_backlog();
}
