//! This node's part in a cluster installation (`[cluster] database`): its heartbeat in the
//! database (for `clerk status` and `/metrics` on any node), and the pause mirror.
//!
//! The pause mirror: a pause or resume made on any node (API, console) is written to
//! `clerk_pause_state` and NOTIFYed; every node LISTENs and applies what other nodes changed
//! to its own pause board — a journal record naming the node it came from, and the guard
//! switch of every open browser context flipped at once. A node starting (or reconnecting)
//! takes the union: pauses in effect in the cluster are adopted, pauses in effect only here
//! are published. Only an explicit resume ends a pause. While the database is unreachable
//! each node keeps its own board (a pause made here still stops this node at once) and
//! publishes what it owes when the database is back.
//!
//! With a shared journal the same thread sweeps for **orphaned runs**: open runs of a node
//! whose daemon has not beaten for twice the lease (killed for good, its VM gone, cut off)
//! are marked interrupted by whichever live node sees it first, naming the node and its last
//! heartbeat. The shared journal then refuses those runs' own records, so a node that was
//! only stopped and comes back cannot continue a run behind the interruption (its jobs were
//! rescued by then, and its submits are fenced anyway). A node restarting under its name
//! interrupts its predecessor's runs itself, at once (see `evidence::replica`).
//!
//! The same thread LISTENs for the queue's job NOTIFYs and wakes this node's idle workers,
//! so a job queued or a slot freed on any node is claimed without waiting for a poll.
//!
//! All database calls run on this module's own thread (the driver blocks).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use super::Daemon;
use crate::db::cluster::{self as shared, NodeBeat, SharedPause, GLOBAL, PAUSE_CHANNEL};
use crate::db::DbError;
use crate::pause::{PauseScope, PauseState};

/// A pause change made on this node, not yet written to the database.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    pub scope: String,
    pub paused: bool,
    pub user: String,
    pub reason: String,
}

/// What the node's cluster thread needs.
pub(super) struct ClusterLink {
    pub url: String,
    pub node: String,
    pub started_at: DateTime<Utc>,
    pub outbox: Mutex<Vec<Outgoing>>,
}

fn scope_key(scope: &PauseScope) -> String {
    match scope {
        PauseScope::Global => GLOBAL.to_owned(),
        PauseScope::Channel(c) => c.clone(),
    }
}

fn scope_of(key: &str) -> PauseScope {
    if key == GLOBAL {
        PauseScope::Global
    } else {
        PauseScope::Channel(key.to_owned())
    }
}

/// The scopes paused on this node: key → (user, reason).
fn local(state: &PauseState) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    if let Some(g) = &state.global {
        out.insert(GLOBAL.to_owned(), (g.user.clone(), g.reason.clone()));
    }
    for (c, p) in &state.channels {
        out.insert(c.clone(), (p.user.clone(), p.reason.clone()));
    }
    out
}

impl ClusterLink {
    /// Queues a change made on this node for the database.
    pub fn publish(&self, scope: &PauseScope, paused: bool, user: &str, reason: &str) {
        if let Ok(mut o) = self.outbox.lock() {
            o.push(Outgoing {
                scope: scope_key(scope),
                paused,
                user: user.to_owned(),
                reason: reason.to_owned(),
            });
        }
    }
}

/// Starts the node's cluster thread; it ends when the daemon stops.
pub(super) fn spawn(d: Arc<Daemon>, link: Arc<ClusterLink>) -> std::thread::JoinHandle<()> {
    let rt = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("clerk-cluster".into())
        .spawn(move || run(&d, &link, &rt))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot start the cluster thread: pauses of other nodes will not reach this one");
            std::thread::spawn(|| ())
        })
}

fn connect(url: &str) -> Result<Client, DbError> {
    let mut c = crate::db::connect(url)?;
    c.batch_execute(&format!(
        "LISTEN {PAUSE_CHANNEL}; LISTEN {}",
        crate::queue::JOBS_CHANNEL
    ))?;
    Ok(c)
}

fn run(d: &Arc<Daemon>, link: &ClusterLink, rt: &tokio::runtime::Handle) {
    // What each scope looked like in the database when this node last agreed with it.
    let mut seen: Option<BTreeMap<String, SharedPause>> = None;
    let mut client: Option<Client> = None;
    let mut warned = false;
    let mut swept = std::time::Instant::now();
    while !d.stopping() {
        if client.is_none() {
            match connect(&link.url) {
                Ok(c) => {
                    if warned {
                        tracing::info!("cluster database reachable again");
                    }
                    warned = false;
                    client = Some(c);
                    seen = None; // take the union again: changes may have been missed
                }
                Err(e) => {
                    if !warned {
                        tracing::error!(error = %e, "cluster database unreachable: pauses are not mirrored until it is back");
                        warned = true;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else {
            continue;
        };
        if let Err(e) = round(d, link, c, &mut seen, rt) {
            tracing::warn!(error = %e, "cluster round failed; reconnecting");
            client = None;
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        if swept.elapsed() >= SWEEP_EVERY && d.engine.store.shared_journal().is_some() {
            swept = std::time::Instant::now();
            if let Err(e) = sweep_orphans(d, link, c) {
                tracing::warn!(error = %e, "looking for runs of silent nodes failed");
            }
        }
        // Sleep until a NOTIFY or a second passes. A job NOTIFY (queued, finished, released
        // on any node) wakes this node's idle workers at once; a pause NOTIFY ends the wait
        // so the next round mirrors it.
        let until = std::time::Instant::now() + Duration::from_secs(1);
        let broken = loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break false;
            }
            let mut notes = c.notifications();
            let next = notes.timeout_iter(left).next();
            match next {
                Ok(Some(n)) if n.channel() == crate::queue::JOBS_CHANNEL => d.wake(),
                Ok(Some(_)) | Ok(None) => break false,
                Err(_) => break true,
            }
        };
        if broken {
            client = None;
        }
    }
}

/// How often this node looks for runs of silent nodes.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Marks interrupted the open runs of nodes silent for more than twice the lease.
fn sweep_orphans(d: &Arc<Daemon>, link: &ClusterLink, c: &mut Client) -> Result<(), DbError> {
    let silent_for = d.opts.lease.saturating_mul(2);
    for o in shared::orphaned_runs(c, silent_for)? {
        if o.node == link.node {
            // This node's own earlier daemon: its restart interrupted its runs already, or
            // will (its owner lock file says whether the process is gone).
            continue;
        }
        let event = crate::evidence::Event::RunInterrupted {
            run_id: o.run_id.clone(),
            reason: format!(
                "node {} has not been heard from since {} (more than twice the lease, {:?}), \
                 so the run cannot finish there; marked by node {}. Records up to its last \
                 step are intact; its job was given to another node when its lease ended",
                o.node,
                crate::evidence::timestamp(o.last_seen),
                silent_for,
                link.node
            ),
        };
        match d.engine.store.append(event) {
            Ok(_) => {
                tracing::warn!(run = %o.run_id, node = %o.node, "marked a silent node's run interrupted")
            }
            // Another node marked it first.
            Err(crate::evidence::StoreError::Refused(why)) => {
                tracing::debug!(run = %o.run_id, %why, "already interrupted");
            }
            Err(e) => {
                tracing::warn!(run = %o.run_id, error = %e, "cannot mark a silent node's run interrupted")
            }
        }
    }
    Ok(())
}

fn round(
    d: &Arc<Daemon>,
    link: &ClusterLink,
    c: &mut Client,
    seen: &mut Option<BTreeMap<String, SharedPause>>,
    rt: &tokio::runtime::Handle,
) -> Result<(), DbError> {
    shared::beat(
        c,
        &NodeBeat {
            node: link.node.clone(),
            address: d.instance().addr.to_string(),
            pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
            started_at: link.started_at,
            last_seen: Utc::now(),
            pages: i32::try_from(d.opts.pages).unwrap_or(i32::MAX),
            busy: i32::try_from(d.in_flight().len()).unwrap_or(i32::MAX),
        },
        d.engine
            .store
            .shared_journal()
            .map(|_| d.engine.store.owner())
            .as_deref(),
    )?;
    // What this node changed: written first (kept in the outbox until it is).
    let outgoing: Vec<Outgoing> = link.outbox.lock().map(|o| o.clone()).unwrap_or_default();
    for o in &outgoing {
        shared::set_pause(c, &o.scope, o.paused, &o.user, &o.reason, &link.node)?;
    }
    if let Ok(mut o) = link.outbox.lock() {
        let n = outgoing.len().min(o.len());
        o.drain(..n);
    }
    let cluster = shared::pauses(c)?;
    let mine = local(&d.engine.pause.state());
    match seen.take() {
        None => {
            // Union: pauses only here are published, pauses only there adopted.
            for (scope, (user, reason)) in &mine {
                if !cluster.get(scope).is_some_and(|s| s.paused) {
                    shared::set_pause(c, scope, true, user, reason, &link.node)?;
                }
            }
            for (scope, s) in &cluster {
                if s.paused && !mine.contains_key(scope) {
                    adopt(d, link, scope, s, rt);
                }
            }
        }
        Some(before) => {
            // Changes other nodes made since the last round.
            for (scope, s) in &cluster {
                let changed = before.get(scope).is_none_or(|b| b != s);
                if !changed || s.node == link.node {
                    continue;
                }
                if s.paused != mine.contains_key(scope) {
                    adopt(d, link, scope, s, rt);
                }
            }
        }
    }
    // What was read above, not a second read: a change another node makes after that read
    // must still look changed next round (a second read here would mark it seen unapplied).
    // This node's own writes of this round differ from it, and are skipped next round as
    // this node's.
    *seen = Some(cluster);
    Ok(())
}

/// Applies another node's change to this node's board.
fn adopt(
    d: &Arc<Daemon>,
    link: &ClusterLink,
    scope: &str,
    s: &SharedPause,
    rt: &tokio::runtime::Handle,
) {
    let reason = format!("{} (from node {})", s.reason, s.node);
    let board = &d.engine.pause;
    let now = (d.engine.clock)();
    let result = rt.block_on(async {
        if s.paused {
            board.pause(scope_of(scope), &s.user, &reason, now).await
        } else {
            board.resume(scope_of(scope), &s.user, &reason, now).await
        }
    });
    match result {
        Ok(_) => {
            tracing::warn!(scope, paused = s.paused, from = %s.node, node = %link.node, "pause change of another node applied");
            d.pause_changed();
        }
        Err(e) => {
            tracing::error!(scope, error = %e, from = %s.node, "cannot apply another node's pause change")
        }
    }
}
