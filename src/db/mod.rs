//! The PostgreSQL database of a cluster installation (`[cluster] database` in `clerk.toml`):
//! connecting, the versioned schema (`src/db/migrations/`, applied by `clerk db migrate`
//! through refinery) and the check that the schema is current before a node starts.
//!
//! The embedded default (no `[cluster]` section) never touches this module.

pub mod cluster;
pub mod journal;

use std::time::Duration;

use postgres::{Client, Config, NoTls};

mod embedded {
    refinery::embed_migrations!("src/db/migrations");
}

/// The table refinery records applied migrations in.
const HISTORY: &str = "clerk_schema_history";

/// The advisory lock `clerk db migrate` holds, so two nodes migrating at once take turns.
const MIGRATE_LOCK: i64 = 0x636c_6572_6b00_0001;

/// Errors of the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("bad database URL in [cluster] database: {0}")]
    BadUrl(String),
    #[error(
        "cannot reach PostgreSQL at {target}: {reason} (is it running, and does the URL in \
         [cluster] database name the right host, port, user and database?)"
    )]
    Connect { target: String, reason: String },
    #[error("PostgreSQL error: {0}")]
    Query(String),
    #[error(
        "the database schema is at version {have}, this clerk needs version {need}: run \
         `clerk db migrate` (once, from any node)"
    )]
    SchemaOld { have: i32, need: i32 },
    #[error(
        "the database schema is at version {have}, newer than this clerk knows ({need}): \
         upgrade clerk on this node"
    )]
    SchemaNew { have: i32, need: i32 },
    #[error("migration failed: {0}")]
    Migrate(String),
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError::Query(describe(&e))
    }
}

/// A PostgreSQL error said in full (the driver's Display hides the server's message).
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}

/// Where a database URL points, without its password (for messages and status pages).
pub fn target(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}@{}:{}{}",
            u.username(),
            u.host_str().unwrap_or("?"),
            u.port().unwrap_or(5432),
            u.path()
        ),
        Err(_) => "(unparsable URL)".into(),
    }
}

/// How long the server lets a session sit idle inside an open transaction before it ends the
/// session. Every clerk transaction is a few statements with nothing but the node's own CPU
/// work between them, so a transaction idle this long belongs to a node that is paused
/// (stopped VM, SIGSTOP, swapped out) — and whatever it locked (a job row, the journal's
/// advisory lock) would otherwise stop every other node until it came back. Shorter than
/// any sensible lease, so a paused node's job is rescued when its lease ends, not later.
pub const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(3);

/// Connection settings from a URL; the password, if any, comes from `PGPASSWORD` (never from
/// the config file). Connection and statement deadlines are set so a dead server is an error,
/// not a hang, and a paused node's open transaction is ended ([`IDLE_IN_TRANSACTION`]).
pub fn config(url: &str) -> Result<Config, DbError> {
    let mut config: Config = url
        .parse()
        .map_err(|e: postgres::Error| DbError::BadUrl(format!("{} ({e})", target(url))))?;
    if config.get_password().is_none() {
        if let Ok(pw) = std::env::var("PGPASSWORD") {
            config.password(pw);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.tcp_user_timeout(Duration::from_secs(30));
    config.keepalives_idle(Duration::from_secs(30));
    config.application_name("clerk");
    config.options(&format!(
        "-c statement_timeout=30000 -c idle_in_transaction_session_timeout={}",
        IDLE_IN_TRANSACTION.as_millis()
    ));
    Ok(config)
}

/// Runs `f` where the synchronous driver may block: on this thread when it drives no async
/// runtime, else on a scoped thread of its own (the `postgres` driver runs its own runtime
/// and must not be called from a task of another).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Opens one connection.
pub fn connect(url: &str) -> Result<Client, DbError> {
    config(url)?.connect(NoTls).map_err(|e| DbError::Connect {
        target: target(url),
        reason: describe(&e),
    })
}

fn runner() -> refinery::Runner {
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY);
    runner.set_abort_divergent(true)
}

/// The schema version this clerk needs.
pub fn schema_version() -> i32 {
    runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// The version the database is at (0 when never migrated).
pub fn current_version(client: &mut Client) -> Result<i32, DbError> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one(&format!("SELECT max(version) FROM {HISTORY}"), &[])?
        .get(0);
    Ok(v.unwrap_or(0))
}

/// Refuses a database whose schema is not the one this clerk needs.
pub fn check_schema(client: &mut Client) -> Result<(), DbError> {
    let (have, need) = (current_version(client)?, schema_version());
    match have.cmp(&need) {
        std::cmp::Ordering::Less => Err(DbError::SchemaOld { have, need }),
        std::cmp::Ordering::Greater => Err(DbError::SchemaNew { have, need }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// What `clerk db migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
    /// `V<n>__<name>` of each migration applied now.
    pub applied: Vec<String>,
}

/// Applies the migrations the database lacks, each in its own transaction, under an advisory
/// lock (nodes migrating at once take turns; the second finds nothing to do).
pub fn migrate(url: &str) -> Result<Migrated, DbError> {
    let mut client = connect(url)?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])?;
    let result = (|| {
        let from = current_version(&mut client)?;
        if from > schema_version() {
            return Err(DbError::SchemaNew {
                have: from,
                need: schema_version(),
            });
        }
        let report = runner()
            .run(&mut client)
            .map_err(|e| DbError::Migrate(e.to_string()))?;
        let applied = report
            .applied_migrations()
            .iter()
            .map(|m| format!("V{}__{}", m.version(), m.name()))
            .collect();
        Ok(Migrated {
            from,
            to: current_version(&mut client)?,
            applied,
        })
    })();
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]);
    result
}
