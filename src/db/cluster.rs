//! The cluster's shared state besides the queue: the pause state every node mirrors, and the
//! nodes' heartbeats (schema: `migrations/V2__cluster.sql`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::Client;
use serde::Serialize;

use super::DbError;

/// The NOTIFY channel of pause changes.
pub const PAUSE_CHANNEL: &str = "clerk_pause";

/// The scope key of a global pause.
pub const GLOBAL: &str = "*";

/// One scope's shared pause state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedPause {
    pub paused: bool,
    pub user: String,
    pub reason: String,
    /// The node that changed it last.
    pub node: String,
    pub changed: DateTime<Utc>,
}

/// Every scope's shared pause state (`*` = global).
pub fn pauses(client: &mut Client) -> Result<BTreeMap<String, SharedPause>, DbError> {
    let rows = client.query(
        "SELECT scope, paused, username, reason, node, changed FROM clerk_pause_state",
        &[],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                SharedPause {
                    paused: r.get(1),
                    user: r.get(2),
                    reason: r.get(3),
                    node: r.get(4),
                    changed: r.get(5),
                },
            )
        })
        .collect())
}

/// Records a pause or resume of `scope` made on `node`, and tells every node (NOTIFY).
pub fn set_pause(
    client: &mut Client,
    scope: &str,
    paused: bool,
    user: &str,
    reason: &str,
    node: &str,
) -> Result<(), DbError> {
    let mut tx = client.transaction()?;
    tx.execute(
        "INSERT INTO clerk_pause_state (scope, paused, username, reason, node, changed) \
         VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (scope) DO UPDATE SET \
         paused = $2, username = $3, reason = $4, node = $5, changed = now(), \
         version = clerk_pause_state.version + 1",
        &[&scope, &paused, &user, &reason, &node],
    )?;
    tx.execute("SELECT pg_notify($1, $2)", &[&PAUSE_CHANNEL, &scope])?;
    tx.commit()?;
    Ok(())
}

/// A node's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeBeat {
    pub node: String,
    /// The node's API address.
    pub address: String,
    pub pid: i32,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Pages (runs at once) of the node.
    pub pages: i32,
    /// Runs in flight on it.
    pub busy: i32,
}

/// Records `beat` (its `last_seen` is the database's clock). `owner` is the store owner id
/// of the node's daemon when its journal is shared (the `owner` of the runs it starts):
/// [`orphaned_runs`] finds that daemon's runs once the node has gone silent.
pub fn beat(client: &mut Client, beat: &NodeBeat, owner: Option<&str>) -> Result<(), DbError> {
    client.execute(
        "INSERT INTO clerk_nodes (node, address, pid, started_at, last_seen, pages, busy, owner) \
         VALUES ($1, $2, $3, $4, now(), $5, $6, $7) ON CONFLICT (node) DO UPDATE SET \
         address = $2, pid = $3, started_at = $4, last_seen = now(), pages = $5, busy = $6, \
         owner = $7",
        &[
            &beat.node,
            &beat.address,
            &beat.pid,
            &beat.started_at,
            &beat.pages,
            &beat.busy,
            &owner,
        ],
    )?;
    Ok(())
}

/// A run of a node that has gone silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub run_id: String,
    pub node: String,
    pub last_seen: DateTime<Utc>,
}

/// Open runs in the shared journal started by the daemon of a node whose last heartbeat is
/// older than `silent_for` (by the database's clock): that daemon is gone or cut off, and
/// its runs cannot finish. Runs of other processes (a `clerk run` on that node) are never
/// listed: only runs whose owner is the one the node's daemon beat with.
pub fn orphaned_runs(client: &mut Client, silent_for: Duration) -> Result<Vec<Orphan>, DbError> {
    let secs = silent_for.as_secs_f64();
    let rows = client.query(
        "SELECT k.run_id, n.node, n.last_seen FROM clerk_nodes n \
         JOIN clerk_journal_keys k ON k.starts_run AND k.owner = n.owner \
         WHERE n.last_seen < now() - make_interval(secs => $1) \
         AND NOT EXISTS (SELECT 1 FROM clerk_journal_keys e WHERE e.ends_run \
         AND e.run_id = k.run_id) ORDER BY k.seq",
        &[&secs],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| Orphan {
            run_id: r.get(0),
            node: r.get(1),
            last_seen: r.get(2),
        })
        .collect())
}

/// Every node that ever beat, by name.
pub fn nodes(client: &mut Client) -> Result<Vec<NodeBeat>, DbError> {
    let rows = client.query(
        "SELECT node, address, pid, started_at, last_seen, pages, busy FROM clerk_nodes \
         ORDER BY node",
        &[],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| NodeBeat {
            node: r.get(0),
            address: r.get(1),
            pid: r.get(2),
            started_at: r.get(3),
            last_seen: r.get(4),
            pages: r.get(5),
            busy: r.get(6),
        })
        .collect())
}

/// Jobs queued (claimable or waiting) and claimed, per channel.
pub fn depth(client: &mut Client) -> Result<BTreeMap<String, (i64, i64)>, DbError> {
    let rows = client.query(
        "SELECT channel, count(*) FILTER (WHERE state = 'queued'), \
         count(*) FILTER (WHERE state = 'claimed') FROM clerk_jobs GROUP BY channel",
        &[],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2))))
        .collect())
}

/// Keeps a finished run's report for clients of other nodes.
pub fn put_report(
    client: &mut Client,
    run_id: &str,
    node: &str,
    report: &serde_json::Value,
) -> Result<(), DbError> {
    client.execute(
        "INSERT INTO clerk_run_reports (run_id, node, report) VALUES ($1, $2, $3) \
         ON CONFLICT (run_id) DO NOTHING",
        &[&run_id, &node, report],
    )?;
    Ok(())
}

/// A run's report and the node that ran it.
pub fn report(
    client: &mut Client,
    run_id: &str,
) -> Result<Option<(String, serde_json::Value)>, DbError> {
    Ok(client
        .query_opt(
            "SELECT node, report FROM clerk_run_reports WHERE run_id = $1",
            &[&run_id],
        )?
        .map(|r| (r.get(0), r.get(1))))
}
