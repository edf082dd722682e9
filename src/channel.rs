//! Channels: the seller centers clerk may work in, and the authorized sessions it uses.
//!
//! The config file (`clerk.toml` in the data directory unless `--config` says
//! otherwise) lists channels. A channel says where the seller center is
//! (`base_url`), which origins a run may reach at all (`allowed_origins`), who
//! owns it, who may run playbooks on it (`operators`) and review drafts
//! (`reviewers`), which modes it permits, and where its session lives.
//!
//! A session file is Playwright's `storageState` JSON (cookies plus per-origin
//! localStorage), so a person can log in once with any tool and hand the
//! session to clerk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

/// The rung of the safety ladder a playbook runs on (defined here, where channels permit it,
/// and re-exported as `playbook::Mode`, so that `channel` does not depend on `playbook`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Lookups and screenshots; the network guard fails every write.
    ReadOnly,
    /// Forms are filled but never submitted; the filled form is queued for review.
    Draft,
    /// A `submit` step runs only with a stored, matching, unused approval.
    Submit,
    /// Writes a channel's session file from a login form; secrets come from the environment.
    Login,
}

impl Mode {
    /// The name used in YAML, TOML and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadOnly => "read_only",
            Mode::Draft => "draft",
            Mode::Submit => "submit",
            Mode::Login => "login",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors reading or using the channel config and session files.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("cannot read config {path}: {source} (create it, or pass --config FILE; `clerk demo` writes one)")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    ParseConfig { path: PathBuf, message: String },
    #[error("unknown channel `{id}` (channels in {path}: {known})")]
    UnknownChannel {
        id: String,
        path: PathBuf,
        known: String,
    },
    #[error("`{user}` is not an operator of channel `{channel}` (operators: {operators}); ask the channel owner `{owner}` to add you")]
    NotOperator {
        user: String,
        channel: String,
        operators: String,
        owner: String,
    },
    #[error("channel `{channel}` does not permit mode `{mode}` (permitted: {permitted})")]
    ModeNotPermitted {
        channel: String,
        mode: Mode,
        permitted: String,
    },
    #[error("no session for channel `{channel}`: {path} is missing; authorize it with `clerk login {channel} --playbook FILE` or copy a Playwright storageState JSON there")]
    MissingSession { channel: String, path: PathBuf },
    #[error("session file {path} for channel `{channel}` is unreadable: {message}")]
    BadSession {
        channel: String,
        path: PathBuf,
        message: String,
    },
    #[error("cannot write session file {path}: {source}")]
    WriteSession {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How clerk proves a channel's session is live before any lookup: either a page that
/// shows `selector` only when logged in (`{ url, selector }`), or an HTTP probe made with
/// the session, as single-page apps check it (`{ request = "/api/me", status = 200 }`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct LoggedInCheck {
    /// Path on the base URL (or full URL inside the allowed origins) to open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A selector that is present only when logged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// A URL (path on the base URL) fetched with the session as a GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The status the probe must answer with (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// The two forms of [`LoggedInCheck`], checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCheck<'a> {
    Page { url: &'a str, selector: &'a str },
    Probe { request: &'a str, status: u16 },
}

impl LoggedInCheck {
    /// The check's form, or what is wrong with it.
    pub fn form(&self) -> Result<SessionCheck<'_>, String> {
        match (&self.url, &self.selector, &self.request) {
            (Some(url), Some(selector), None) if self.status.is_none() => {
                Ok(SessionCheck::Page { url, selector })
            }
            (None, None, Some(request)) => Ok(SessionCheck::Probe {
                request,
                status: self.status.unwrap_or(200),
            }),
            _ => {
                Err("logged_in_check takes either { url, selector } or { request, status }".into())
            }
        }
    }
}

/// A request that is allowed in read-only mode although its method writes (e.g. a search API
/// that uses POST). Matched exactly on method and URL without query.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReadOnlyException {
    pub method: String,
    pub url: String,
}

/// One seller center clerk may work in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub id: String,
    pub base_url: Url,
    /// Origins (`scheme://host:port`) any request of a run may reach. The base URL's origin
    /// is always included.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub owner: String,
    /// Users who may run playbooks on this channel.
    #[serde(default)]
    pub operators: Vec<String>,
    /// Users who may approve or reject drafts on this channel.
    #[serde(default)]
    pub reviewers: Vec<String>,
    /// Modes this channel permits.
    #[serde(default = "default_modes")]
    pub modes: Vec<Mode>,
    /// Session file (storageState JSON), relative to the data directory unless absolute.
    pub session: PathBuf,
    pub logged_in_check: LoggedInCheck,
    #[serde(default)]
    pub read_only_exceptions: Vec<ReadOnlyException>,
    /// How long an approval request stays decidable.
    #[serde(default = "default_approval_ttl_hours")]
    pub approval_ttl_hours: u64,
    /// The attribute `testid:` locators match (`data-testid`, `data-test`, `data-qa`, ...).
    #[serde(default = "default_testid_attribute")]
    pub testid_attribute: String,
    /// URL globs (see [`crate::url_pattern`]) of the channel's login page: a run that lands
    /// on one, at the session check or at any later step, ends as `session_expired` and no
    /// screenshot of it is stored.
    #[serde(default)]
    pub login_url: Vec<String>,
    /// `block` (default): service workers may not register in guarded runs; `allow`: they
    /// may, and their requests are guarded like any other.
    #[serde(default)]
    pub service_workers: ServiceWorkers,
    /// WebSocket endpoints (exact `ws://` / `wss://` URLs without query) a read-only run may
    /// open, e.g. a live order feed; every frame the page sends on them is still recorded.
    #[serde(default)]
    pub websocket_allow: Vec<String>,
    /// Body fields (JSON keys at any depth, form field names) whose values change on every
    /// send (request ids, client timestamps, idempotency keys): kept out of the comparison
    /// between an approved write and the write a submit sends.
    #[serde(default)]
    pub volatile_fields: Vec<String>,
    /// Under `clerk serve`: at most this many runs of this channel at once (pages open on
    /// the seller center). Default 1.
    #[serde(default = "default_max_pages")]
    pub max_pages: usize,
    /// The channel's data endpoints (URL globs, like `login_url`): the responses to these
    /// requests are kept as WARC records beside the screenshots, in every mode but login
    /// (a playbook's `record:` adds its own). While any is named, the documents a run
    /// navigates to are kept too, unless `record_documents = false`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_responses: Vec<String>,
    #[serde(default = "default_true")]
    pub record_documents: bool,
    /// Largest body kept per recorded response, in bytes (the rest is cut and the record
    /// says `WARC-Truncated: length`). Default 2 MiB.
    #[serde(default = "default_record_max_bytes")]
    pub record_max_bytes: u64,
    /// Under `clerk serve`: the least time between the starts of two runs on this channel,
    /// e.g. `"2s"`, `"500ms"`, `"1m"`. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_interval: Option<String>,
    /// Every draft and submit playbook of this channel must declare `match:` rules, and a
    /// run writes only when the case's claims match the page. On unless set to `false`.
    #[serde(default = "default_true")]
    pub require_match: bool,
    /// Auto-approval policies (`[[channel.auto_approve]]`, see `crate::policy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_approve: Vec<AutoApprove>,
}

/// One auto-approval policy of a channel: which drafts' held writes it may approve, once
/// earned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoApprove {
    pub name: String,
    /// The playbook whose drafts it judges.
    pub playbook: String,
    /// The held write's method ...
    pub method: String,
    /// ... and URL: a glob (`*` any run without `/`, `**` any run) on the channel's base URL.
    pub url: String,
    /// Conditions on the write's decoded body fields (top-level JSON keys, form fields).
    #[serde(default)]
    pub fields: BTreeMap<String, FieldRule>,
    /// Human-reviewed drafts of the same playbook and write needed in the window ...
    pub min_reviewed: u64,
    /// ... of this many days ...
    pub within_days: u64,
    /// ... with at least this share approved (0 to 100).
    pub min_pass_percent: u64,
}

/// A condition on one body field; every key given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// An amount at most this (`"20.00"`), compared in minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<String>,
}

impl Channel {
    /// `min_interval` as a duration (checked when the config is parsed).
    pub fn min_interval(&self) -> Duration {
        self.min_interval
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
            .unwrap_or(Duration::ZERO)
    }
}

/// Parses `"250ms"`, `"2s"`, `"5m"`, `"1h"`: a whole number and a unit.
/// One remote browser: `endpoint = "http://HOST:PORT"` (its `/json/version` names the
/// WebSocket) or `"ws://HOST:PORT/devtools/browser/ID"` (a query, e.g. a token, is sent but
/// never recorded). Each endpoint serves one clerk node: two CDP clients intercepting the
/// same browser would fail each other's requests.
///
/// Every run context in a remote browser sends its traffic through the node's dead-man
/// relay (`browser::relay`), which the browser must be able to dial: by default this
/// machine's address on the route to the browser's host, on a port the kernel picks.
/// `relay = "HOST:PORT"` says what the browser dials instead (behind NAT or a tunnel), and
/// `relay_listen = "IP:PORT"` where to listen when that is not an address of this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserEndpoint {
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_listen: Option<String>,
}

impl BrowserEndpoint {
    /// An endpoint with the default relay.
    pub fn new(endpoint: impl Into<String>) -> BrowserEndpoint {
        BrowserEndpoint {
            endpoint: endpoint.into(),
            relay: None,
            relay_listen: None,
        }
    }
}

/// What may be recorded of a CDP endpoint: scheme, host and port only (never a path, a
/// query or credentials, where tokens live).
pub fn endpoint_identity(endpoint: &str) -> String {
    match Url::parse(endpoint) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => "<not a URL>".to_owned(),
        },
        Err(_) => "<not a URL>".to_owned(),
    }
}

fn default_true() -> bool {
    true
}

/// 2 MiB.
pub const DEFAULT_RECORD_MAX_BYTES: u64 = 2 * 1024 * 1024;

fn default_record_max_bytes() -> u64 {
    DEFAULT_RECORD_MAX_BYTES
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m or h, e.g. \"2s\")"))?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use ms, s, m or h)"
            ))
        }
    };
    match ms {
        Some(ms) if ms <= 366 * 86_400_000 => Ok(Duration::from_millis(ms)),
        _ => Err(format!("`{text}` is longer than a year")),
    }
}

/// Settings of a cluster installation (`[cluster]` in the config): several `clerk serve`
/// nodes sharing one PostgreSQL database. Absent: the embedded default (the queue, journal
/// and index in the data directory).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// `postgres://USER@HOST:PORT/DATABASE`; the password comes from the environment
    /// (`PGPASSWORD`), never from this file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// This node's name, unique in the installation (the `CLERK_NODE` environment variable
    /// overrides it; default: the host name). A node restarting under the same name takes
    /// back what its predecessor held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `s3://BUCKET/PREFIX`: every evidence blob (screenshot, WARC record, playbook text) is
    /// also stored there under its SHA-256, create-only and re-verified by the storage
    /// (`evidence::blob`). Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`), never from this file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The S3 endpoint for a storage other than AWS (`http://minio:9000`): path-style
    /// requests are used then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_endpoint: Option<String>,
    /// The bucket's region (default `us-east-1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_region: Option<String>,
    /// Where the journal lives: `"node"` (default: each node's `journal.jsonl`) or
    /// `"database"` (one chain in `[cluster] database`, appended by every node; each node's
    /// `journal.jsonl` becomes its verified copy, see `evidence::shared`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

impl ClusterSettings {
    /// The object storage evidence blobs are copied to, if any.
    pub fn evidence_target(&self) -> Option<&str> {
        self.evidence.as_deref().filter(|e| !e.trim().is_empty())
    }

    /// [`ClusterSettings::evidence_target`] with its endpoint and region.
    pub fn evidence_store(&self) -> Option<crate::evidence::blob::S3Target<'_>> {
        self.evidence_target()
            .map(|url| crate::evidence::blob::S3Target {
                url,
                endpoint: self.evidence_endpoint.as_deref(),
                region: self.evidence_region.as_deref(),
            })
    }

    /// The database URL when the installation is a cluster.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref().filter(|d| !d.trim().is_empty())
    }

    /// The database URL when the journal is kept there (`journal = "database"`).
    pub fn shared_journal(&self) -> Option<&str> {
        match self.journal.as_deref().map(str::trim) {
            Some("database") => self.database(),
            _ => None,
        }
    }

    /// This node's name: `CLERK_NODE`, else `node`, else the host name.
    pub fn node_name(&self) -> String {
        std::env::var("CLERK_NODE")
            .ok()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| self.node.clone().filter(|n| !n.trim().is_empty()))
            .unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .ok()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "localhost".into())
            })
    }

    fn check(&self) -> Result<(), String> {
        if let Some(db) = self.database() {
            let url = Url::parse(db).map_err(|e| {
                format!("[cluster] database: not a URL ({e}); e.g. postgres://clerk@db:5432/clerk")
            })?;
            if !matches!(url.scheme(), "postgres" | "postgresql") {
                return Err(format!(
                    "[cluster] database: scheme `{}` is not postgres:// (PostgreSQL is the \
                     only cluster database)",
                    url.scheme()
                ));
            }
            if url.password().is_some() {
                return Err(
                    "[cluster] database: the URL holds a password; remove it and set \
                            PGPASSWORD in the environment of each node instead (the config \
                            file is not a place for secrets)"
                        .into(),
                );
            }
            if url.query_pairs().any(|(k, _)| k == "password") {
                return Err(
                    "[cluster] database: `password=` in the URL; set PGPASSWORD in \
                            the environment instead"
                        .into(),
                );
            }
        }
        if let Some(e) = self.evidence_target() {
            let url = Url::parse(e).map_err(|err| {
                format!("[cluster] evidence: not a URL ({err}); e.g. s3://clerk-evidence/prod")
            })?;
            if url.scheme() != "s3" || url.host_str().is_none_or(str::is_empty) {
                return Err(format!(
                    "[cluster] evidence `{e}`: give s3://BUCKET or s3://BUCKET/PREFIX"
                ));
            }
            if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
                return Err(
                    "[cluster] evidence: the URL holds credentials or a query; set \
                            AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment \
                            of each node instead"
                        .into(),
                );
            }
        }
        if let Some(ep) = &self.evidence_endpoint {
            let ok = Url::parse(ep)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.password().is_none())
                .unwrap_or(false);
            if !ok {
                return Err(format!(
                    "[cluster] evidence_endpoint `{ep}`: give http(s)://HOST:PORT, without credentials"
                ));
            }
        }
        match self.journal.as_deref().map(str::trim) {
            None | Some("node") => {}
            Some("database") if self.database().is_none() => {
                return Err(
                    "[cluster] journal = \"database\" needs [cluster] database = \"postgres://…\""
                        .into(),
                )
            }
            Some("database") => {}
            Some(other) => {
                return Err(format!(
                    "[cluster] journal `{other}`: give \"node\" (each node's journal.jsonl) or \"database\" (one chain in [cluster] database)"
                ))
            }
        }
        if let Some(n) = &self.node {
            if n.contains('/') || n.chars().any(char::is_whitespace) {
                return Err(format!(
                    "[cluster] node `{n}`: no `/` or spaces in a node name"
                ));
            }
        }
        Ok(())
    }
}

/// Settings of the `clerk serve` daemon (`[serve]` in the config; every key optional).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSettings {
    /// Port of the HTTP API on 127.0.0.1.
    pub port: u16,
    /// Runs at once, all channels together (pages in the pool).
    pub pages: usize,
    /// Chromium processes of the pool.
    pub browsers: usize,
    /// Attempts before a transiently failing run is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubled after each failed attempt (with jitter), e.g. `"30s"`.
    pub retry_base: String,
    /// Longest retry delay, e.g. `"1h"`.
    pub retry_max: String,
    /// How late a scheduled slot may still fire after a restart, e.g. `"15m"`.
    pub schedule_grace: String,
    /// How long in-flight runs may take to finish after SIGTERM before they are stopped,
    /// marked interrupted and queued again, e.g. `"30s"`.
    pub shutdown_deadline: String,
    /// Mark the reviewer console's session cookie `Secure` (set it when the console is
    /// reached over TLS, e.g. behind a TLS-terminating proxy).
    pub cookie_secure: bool,
    /// Queue the submit of an approval decided "approve" through the daemon (console or API)
    /// at once, run as the requester. Off: submits are asked for with `clerk submit`.
    pub submit_on_approve: bool,
    /// URL prefixes schedules may fetch inputs from even though they are on this host or a
    /// private network (loopback, private, link-local and unspecified addresses are refused
    /// otherwise: the daemon must not become a way to read internal services).
    pub inputs_url_allow: Vec<String>,
    /// How long a client may take to send a request's headers before the connection is
    /// closed (slow-header connections must not hold the daemon's sockets), e.g. `"10s"`.
    pub header_timeout: String,
    /// How long a run's claim on its queued job lasts without a heartbeat (heartbeats renew
    /// it every third of it). A node stopped longer than this loses the job: another attempt
    /// may start, and the stopped node's submit is refused by the fencing check. E.g. `"2m"`.
    pub lease: String,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            port: 7878,
            pages: 2,
            browsers: 1,
            max_attempts: 3,
            retry_base: "30s".into(),
            retry_max: "1h".into(),
            schedule_grace: "15m".into(),
            shutdown_deadline: "30s".into(),
            cookie_secure: false,
            submit_on_approve: true,
            inputs_url_allow: Vec::new(),
            header_timeout: "10s".into(),
            lease: "2m".into(),
        }
    }
}

fn default_max_pages() -> usize {
    1
}

/// Whether service workers may register in guarded runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceWorkers {
    #[default]
    Block,
    Allow,
}

fn default_testid_attribute() -> String {
    "data-testid".into()
}

fn default_modes() -> Vec<Mode> {
    vec![Mode::ReadOnly]
}

fn default_approval_ttl_hours() -> u64 {
    24
}

/// What a named user of the reviewer console may do (`[[user]] role = "reviewer"`).
/// Deciding approvals also needs the user listed as a reviewer of the channel, and pausing
/// as an operator or reviewer of some channel: the role narrows, it never widens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Reviewer,
    Auditor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transparency log's settings (`[log]` in the config; every key optional).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// The log's private key file; must be outside the data directory. Default: beside it,
    /// `<data dir>.log-key`. Created (mode 0600) at first start.
    pub key_file: Option<PathBuf>,
    /// The log's name in its checkpoints, set when the key is created. Default
    /// `clerk.<host name>/<data dir name>`.
    pub origin: Option<String>,
    /// The daemon signs a checkpoint at most this often when records were appended, e.g.
    /// `"60s"` (and at every export).
    pub checkpoint_every: String,
    /// ... or as soon as this many records were appended since the last checkpoint.
    pub checkpoint_records: u64,
    /// Public keys of the witnesses whose cosignatures count (`clerk witness init` prints
    /// one), e.g. `["audit.example/w1+1a2b3c4d+BK..."]`.
    pub witnesses: Vec<String>,
    /// How many of `witnesses` must have cosigned a checkpoint before an export against it
    /// is called final.
    pub witness_quorum: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            key_file: None,
            origin: None,
            checkpoint_every: "60s".into(),
            checkpoint_records: 1000,
            witnesses: Vec::new(),
            witness_quorum: 0,
        }
    }
}

/// A named user (`[[user]]` in the config); the password hash is in `<data>/users/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
}

/// The parsed config file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, rename = "channel")]
    pub channels: Vec<Channel>,
    /// Named users of the reviewer console and their roles.
    #[serde(default, rename = "user", skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserConfig>,
    /// The daemon's settings.
    #[serde(default)]
    pub serve: ServeSettings,
    /// The transparency log's settings.
    #[serde(default)]
    pub log: LogSettings,
    /// Remote browsers (`[[browser]]`): Chromiums started elsewhere with remote debugging,
    /// reached over their CDP WebSocket instead of launched here.
    #[serde(default, rename = "browser", skip_serializing_if = "Vec::is_empty")]
    pub browsers: Vec<BrowserEndpoint>,
    /// Several nodes sharing one PostgreSQL database (`[cluster]`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub cluster: ClusterSettings,
    /// Where the file was read from (not part of the file).
    #[serde(skip)]
    pub path: PathBuf,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ChannelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ChannelError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses config text; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ChannelError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let raw = e.to_string();
            // The keys a channel cannot do without, said as what to add.
            let hint = if raw.contains("missing field `logged_in_check`") {
                "\nhint: every [[channel]] needs `logged_in_check`: a page that only a logged-in \
                 user sees and a selector on it, e.g. logged_in_check = { url = \"/account\", \
                 selector = \"#account-user\" } (or an HTTP probe: { request = \"/api/me\", status = 200 })"
            } else if raw.contains("approval_ttl_hours") {
                "\nhint: approval_ttl_hours is a whole number of hours, e.g. approval_ttl_hours = 24"
            } else {
                ""
            };
            ChannelError::ParseConfig {
                path: path.to_owned(),
                message: format!("{raw}{hint}"),
            }
        })?;
        config.path = path.to_owned();
        let serve = &config.serve;
        for (key, value) in [
            ("retry_base", &serve.retry_base),
            ("retry_max", &serve.retry_max),
            ("schedule_grace", &serve.schedule_grace),
            ("shutdown_deadline", &serve.shutdown_deadline),
            ("header_timeout", &serve.header_timeout),
            ("lease", &serve.lease),
        ] {
            if let Err(e) = parse_duration(value) {
                return Err(ChannelError::ParseConfig {
                    path: path.to_owned(),
                    message: format!("[serve] {key} {e}"),
                });
            }
        }
        config
            .cluster
            .check()
            .map_err(|message| ChannelError::ParseConfig {
                path: path.to_owned(),
                message,
            })?;
        for b in &config.browsers {
            let ok = Url::parse(&b.endpoint)
                .map(|u| {
                    matches!(u.scheme(), "ws" | "wss" | "http" | "https") && u.host().is_some()
                })
                .unwrap_or(false);
            if !ok {
                return Err(ChannelError::ParseConfig {
                    path: path.to_owned(),
                    message: format!(
                        "[[browser]] endpoint `{}` is not a CDP endpoint: give `http://HOST:PORT` (a Chromium started with --remote-debugging-port) or its `ws://HOST:PORT/devtools/browser/…` URL",
                        endpoint_identity(&b.endpoint)
                    ),
                });
            }
        }
        if let Err(e) = parse_duration(&config.log.checkpoint_every) {
            return Err(ChannelError::ParseConfig {
                path: path.to_owned(),
                message: format!("[log] checkpoint_every {e}"),
            });
        }
        for w in &config.log.witnesses {
            match crate::evidence::note::NoteVerifier::parse(w) {
                Ok(v) if v.is_cosigner() => {}
                Ok(_) => {
                    return Err(ChannelError::ParseConfig {
                        path: path.to_owned(),
                        message: format!("[log] witnesses: `{w}` is a log key, not a witness's cosigning key (`clerk witness init` prints one)"),
                    })
                }
                Err(e) => {
                    return Err(ChannelError::ParseConfig {
                        path: path.to_owned(),
                        message: format!("[log] witnesses: `{w}`: {e}"),
                    })
                }
            }
        }
        if config.log.witness_quorum > config.log.witnesses.len() {
            return Err(ChannelError::ParseConfig {
                path: path.to_owned(),
                message: format!(
                    "[log] witness_quorum = {} but only {} witnesses are listed",
                    config.log.witness_quorum,
                    config.log.witnesses.len()
                ),
            });
        }
        if config.log.checkpoint_records == 0 {
            return Err(ChannelError::ParseConfig {
                path: path.to_owned(),
                message: "[log] checkpoint_records must be at least 1".into(),
            });
        }
        if serve.pages == 0 || serve.browsers == 0 || serve.max_attempts == 0 {
            return Err(ChannelError::ParseConfig {
                path: path.to_owned(),
                message: "[serve] pages, browsers and max_attempts must be at least 1".into(),
            });
        }
        let mut names = std::collections::BTreeSet::new();
        for user in &config.users {
            if !crate::display::is_safe_name(&user.name) {
                return Err(ChannelError::ParseConfig {
                    path: path.to_owned(),
                    message: format!(
                        "[[user]] `{}`: a user name is 1 to 64 ASCII letters, digits, `.`, `_`, `-` or `@`, starting with a letter or digit (nothing invisible, nothing that looks like another name)",
                        crate::display::visible(&user.name)
                    ),
                });
            }
            if user.name.trim().is_empty() || !names.insert(user.name.clone()) {
                return Err(ChannelError::ParseConfig {
                    path: path.to_owned(),
                    message: format!("[[user]] `{}` is empty or listed twice", user.name),
                });
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for channel in &mut config.channels {
            if !seen.insert(channel.id.clone()) {
                return Err(ChannelError::ParseConfig {
                    path: path.to_owned(),
                    message: format!("channel `{}` is listed twice", channel.id),
                });
            }
            let mut origins = Vec::new();
            for o in std::iter::once(channel.base_url.origin().ascii_serialization()).chain(
                channel
                    .allowed_origins
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_owned()),
            ) {
                let parsed = Url::parse(&o).map_err(|e| ChannelError::ParseConfig {
                    path: path.to_owned(),
                    message: format!(
                        "channel `{}`: allowed origin `{o}` is not a URL: {e}",
                        channel.id
                    ),
                })?;
                let norm = parsed.origin().ascii_serialization();
                if !origins.contains(&norm) {
                    origins.push(norm);
                }
            }
            channel.allowed_origins = origins;
            if let Err(e) = channel.logged_in_check.form() {
                return Err(ChannelError::ParseConfig {
                    path: path.to_owned(),
                    message: format!("channel `{}`: {e}", channel.id),
                });
            }
            if channel.max_pages == 0 {
                return Err(ChannelError::ParseConfig {
                    path: path.to_owned(),
                    message: format!(
                        "channel `{}`: max_pages must be at least 1 (pause a channel to stop it)",
                        channel.id
                    ),
                });
            }
            if let Some(Err(e)) = channel.min_interval.as_deref().map(parse_duration) {
                return Err(ChannelError::ParseConfig {
                    path: path.to_owned(),
                    message: format!("channel `{}`: min_interval {e}", channel.id),
                });
            }
            for (key, globs) in [
                ("login_url", &channel.login_url),
                ("record_responses", &channel.record_responses),
            ] {
                for g in globs {
                    if let Err(e) = crate::url_pattern::glob(g, &channel.base_url) {
                        return Err(ChannelError::ParseConfig {
                            path: path.to_owned(),
                            message: format!("channel `{}`: {key}: {e}", channel.id),
                        });
                    }
                }
            }
            if channel.record_max_bytes == 0 {
                return Err(ChannelError::ParseConfig {
                    path: path.to_owned(),
                    message: format!(
                        "channel `{}`: record_max_bytes must be at least 1 (name no record_responses to record nothing)",
                        channel.id
                    ),
                });
            }
        }
        Ok(config)
    }

    /// Serializes the config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The role of a named user, if the config names them.
    pub fn role_of(&self, user: &str) -> Option<Role> {
        self.users.iter().find(|u| u.name == user).map(|u| u.role)
    }

    /// Finds a channel by id.
    pub fn channel(&self, id: &str) -> Result<&Channel, ChannelError> {
        self.channels
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ChannelError::UnknownChannel {
                id: id.to_owned(),
                path: self.path.clone(),
                known: if self.channels.is_empty() {
                    "none".to_owned()
                } else {
                    self.channels
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }
}

impl Channel {
    /// True when `url` is one of the channel's login pages.
    pub fn is_login_page(&self, url: &str) -> bool {
        self.login_url.iter().any(|g| {
            crate::url_pattern::glob(g, &self.base_url)
                .map(|re| re.is_match(url))
                .unwrap_or(false)
        })
    }

    /// True when `url`'s origin is one of the allowed origins.
    pub fn allows_origin(&self, url: &Url) -> bool {
        let origin = url.origin().ascii_serialization();
        self.allowed_origins.contains(&origin)
    }

    /// Refuses users who are not operators of this channel.
    pub fn authorize_operator(&self, user: &str) -> Result<(), ChannelError> {
        if self.operators.iter().any(|o| o == user) {
            Ok(())
        } else {
            Err(ChannelError::NotOperator {
                user: user.to_owned(),
                channel: self.id.clone(),
                operators: join_or_none(&self.operators),
                owner: self.owner.clone(),
            })
        }
    }

    /// True when `user` may decide approvals on this channel.
    pub fn is_reviewer(&self, user: &str) -> bool {
        self.reviewers.iter().any(|r| r == user)
    }

    /// Refuses modes the channel does not permit.
    pub fn permit_mode(&self, mode: Mode) -> Result<(), ChannelError> {
        if self.modes.contains(&mode) {
            Ok(())
        } else {
            Err(ChannelError::ModeNotPermitted {
                channel: self.id.clone(),
                mode,
                permitted: self
                    .modes
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// The session file's path, resolved against the data directory.
    pub fn session_path(&self, data_dir: &Path) -> PathBuf {
        if self.session.is_absolute() {
            self.session.clone()
        } else {
            data_dir.join(&self.session)
        }
    }

    /// Reads the channel's session file.
    pub fn load_session(&self, data_dir: &Path) -> Result<StorageState, ChannelError> {
        let path = self.session_path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ChannelError::MissingSession {
                    channel: self.id.clone(),
                    path,
                })
            }
            Err(e) => {
                return Err(ChannelError::BadSession {
                    channel: self.id.clone(),
                    path,
                    message: e.to_string(),
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| ChannelError::BadSession {
            channel: self.id.clone(),
            path,
            message: format!("not a storageState JSON: {e}"),
        })
    }

    /// What a person must do when the session has expired.
    pub fn reauthorize_hint(&self, data_dir: &Path) -> String {
        format!(
            "run `clerk login {} --playbook FILE` with the login secrets in the environment, or log in with a browser and save its storageState JSON to {}",
            self.id,
            self.session_path(data_dir).display()
        )
    }
}

fn join_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// Playwright's `storageState` format.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageState {
    #[serde(default)]
    pub cookies: Vec<StoredCookie>,
    #[serde(default)]
    pub origins: Vec<OriginStorage>,
}

/// One cookie of a `storageState`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredCookie {
    pub name: String,
    pub value: String,
    pub domain: String,
    #[serde(default = "slash")]
    pub path: String,
    /// Unix seconds; -1 for a session cookie.
    #[serde(default = "minus_one")]
    pub expires: f64,
    #[serde(default)]
    pub http_only: bool,
    #[serde(default)]
    pub secure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
}

fn slash() -> String {
    "/".to_owned()
}

fn minus_one() -> f64 {
    -1.0
}

/// localStorage of one origin in a `storageState`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OriginStorage {
    pub origin: String,
    #[serde(default)]
    pub local_storage: Vec<NameValue>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

impl StorageState {
    /// Writes the session atomically (temp file, fsync, rename), readable only by the owner.
    pub fn save(&self, path: &Path) -> Result<(), ChannelError> {
        let err = |source| ChannelError::WriteSession {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
        std::io::Write::write_all(&mut tmp, &json).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600));
        }
        tmp.persist(path).map_err(|e| err(e.error))?;
        Ok(())
    }

    /// localStorage entries by origin.
    pub fn local_storage(&self) -> BTreeMap<String, Vec<(String, String)>> {
        self.origins
            .iter()
            .map(|o| {
                (
                    o.origin.clone(),
                    o.local_storage
                        .iter()
                        .map(|kv| (kv.name.clone(), kv.value.clone()))
                        .collect(),
                )
            })
            .collect()
    }
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_without_its_session_check_or_with_fractional_hours_says_what_to_write() {
        let base = "[[channel]]\nid = \"a\"\nbase_url = \"http://127.0.0.1:1/\"\nowner = \"o\"\nsession = \"sessions/a.json\"\n";
        let err = Config::parse(Path::new("clerk.toml"), base)
            .unwrap_err()
            .to_string();
        assert!(err.contains("logged_in_check = { url"), "{err}");
        let text = format!(
            "{base}logged_in_check = {{ url = \"/account\", selector = \"#me\" }}\napproval_ttl_hours = 1.5\n"
        );
        let err = Config::parse(Path::new("clerk.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole number of hours"), "{err}");
    }
}
