//! `clerk serve`: the daemon that owns a data directory. It runs the scheduler, executes the
//! durable run queue on the engine's browser pool, and answers an HTTP API on 127.0.0.1 that
//! the CLI (and the reviewer console) use.
//!
//! A front end: it depends on the engine (runner, approvals, queue, schedules, evidence),
//! never the reverse, and never on the CLI.
//!
//! ```text
//!  scheduler ──enqueue──▶ RunQueue ◀──claim/heartbeat/complete/fail/release── workers ──▶ Engine::run_as
//!      ▲                     ▲                                                     │
//!      └──── API (axum) ─────┴───── enqueue, pause, approve, status, metrics ──────┘
//! ```
//!
//! Shutdown (SIGTERM, Ctrl-C, or the `shutdown` future of [`serve`]): nothing new is
//! claimed or fired, in-flight runs get `shutdown_deadline` to finish; the rest are stopped,
//! recorded `run_interrupted` and given back to the queue (the attempt does not count).
//! Chromium is reaped, `serve.json` removed, the lock released.

mod api;
mod checkpointer;
mod cluster;

pub use api::{openapi, ApiErrorBody};
mod console;
mod executor;
mod listener;
pub mod scheduler;
pub mod views;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{watch, Notify};

use crate::approval::Approval;
use crate::channel::{parse_duration, Config};
use crate::instance::{self, Instance, InstanceError};
use crate::queue::{
    Claim, EmbeddedQueue, Job, JobFilter, JobId, JobSpec, JobState, Priority, QueueError, RunQueue,
};
use crate::runner::Engine;

/// How the daemon runs (from the config's `[serve]` table, see [`ServeOptions::from_config`]).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where the API listens: 127.0.0.1 and a port (0: any free port).
    pub bind: SocketAddr,
    /// Runs at once, all channels together.
    pub pages: usize,
    /// Queue lease of a run; heartbeats renew it every third of it.
    pub lease: Duration,
    /// Time in-flight runs get to finish after a shutdown request.
    pub shutdown_deadline: Duration,
    /// How late a schedule slot may still fire.
    pub schedule_grace: Duration,
    /// How often the scheduler looks at the schedules.
    pub scheduler_tick: Duration,
    /// Longest wait of an idle worker before it asks the queue again (it is woken at once by
    /// an enqueue, a finished run or a resume; this only catches retry and interval times).
    pub idle_wait: Duration,
    /// Attempts of a job whose run fails transiently.
    pub max_attempts: u32,
    /// Whether the scheduler runs (tests drive it by hand).
    pub run_scheduler: bool,
}

impl ServeOptions {
    /// Options from the config, with the API on `127.0.0.1:port` (`port` overrides the
    /// config's).
    pub fn from_config(config: &Config, port: Option<u16>) -> ServeOptions {
        let s = &config.serve;
        let d = |t: &str, default: u64| parse_duration(t).unwrap_or(Duration::from_secs(default));
        ServeOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(s.port))),
            pages: s.pages.max(1),
            lease: d(&s.lease, 120).max(Duration::from_secs(1)),
            shutdown_deadline: d(&s.shutdown_deadline, 30),
            schedule_grace: d(&s.schedule_grace, 900),
            scheduler_tick: Duration::from_secs(15),
            idle_wait: Duration::from_millis(250),
            max_attempts: s.max_attempts.max(1),
            run_scheduler: true,
        }
    }
}

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the API server failed: {0}")]
    Api(String),
}

/// A run a worker is executing.
#[derive(Debug, Clone, Serialize)]
pub struct InFlight {
    pub job: JobId,
    pub run_id: String,
    pub channel: String,
    pub playbook: String,
    pub worker: String,
    pub started_at: DateTime<Utc>,
}

/// What a daemon did, returned when it stops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServeSummary {
    /// Jobs whose run was stopped by the shutdown and given back to the queue.
    pub interrupted: Vec<JobId>,
    /// Claims of a previous daemon found at start and queued again.
    pub abandoned_at_start: Vec<JobId>,
}

/// The daemon's shared state.
pub struct Daemon {
    pub engine: Engine,
    pub queue: Arc<dyn RunQueue>,
    pub opts: ServeOptions,
    instance: Instance,
    /// Workers and the scheduler wait on this; enqueues, finished runs and resumes notify.
    wake: Notify,
    /// Notified when a pause or resume went through the API.
    pause_changed: Notify,
    stopping: watch::Sender<bool>,
    in_flight: Mutex<BTreeMap<JobId, (InFlight, Claim)>>,
    /// Prefix of this daemon's worker names (`<host>/serve/`).
    worker_prefix: String,
    /// Held while looking for an approval's submit job and enqueuing one, so one approval
    /// never gets two.
    submit_lock: tokio::sync::Mutex<()>,
    /// The console's logged-in users (also accepted by the API).
    sessions: console::session::Sessions,
    /// The per-user API tokens (`clerk user token`).
    tokens: crate::users::TokenBook,
    /// Why the last checkpoint could not be signed (the tamper alarm), until one is.
    tlog_alarm: Mutex<Option<String>>,
    /// In a cluster installation: the node's link to the shared database (pause mirror,
    /// heartbeat).
    cluster: Option<Arc<cluster::ClusterLink>>,
    /// Evidence blobs the last copy pass could not copy to object storage (`-1`: no
    /// `[cluster] evidence`, or no pass yet).
    evidence_backlog: std::sync::atomic::AtomicI64,
}

/// Why a decision through the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error(transparent)]
    Approval(#[from] crate::approval::ApprovalError),
    #[error("the decision is recorded, but its submit could not be queued: {0}")]
    Queue(#[from] QueueError),
    #[error("the decision task failed: {0}")]
    Task(String),
}

impl Daemon {
    /// Evidence blobs the last copy pass could not copy (`None`: no object storage, or no
    /// pass yet).
    pub fn evidence_backlog(&self) -> Option<u64> {
        u64::try_from(
            self.evidence_backlog
                .load(std::sync::atomic::Ordering::SeqCst),
        )
        .ok()
    }

    /// True once shutdown began.
    pub fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Says a pause changed: the queue's mirror is updated at once.
    pub fn pause_changed(&self) {
        self.pause_changed.notify_waiters();
        self.wake();
    }

    /// Tells the other nodes of a cluster about a pause or resume made here (no-op in the
    /// embedded default).
    pub fn publish_pause(
        &self,
        scope: &crate::pause::PauseScope,
        paused: bool,
        user: &str,
        reason: &str,
    ) {
        if let Some(link) = &self.cluster {
            link.publish(scope, paused, user, reason);
        }
    }

    /// Cluster mode: every node's heartbeat and the shared queue's depth per channel, read
    /// from the database (`None` in the embedded default).
    pub async fn cluster_view(
        &self,
    ) -> Option<Result<(Vec<crate::db::cluster::NodeBeat>, chrono::DateTime<Utc>), String>> {
        let link = self.cluster.clone()?;
        Some(
            tokio::task::spawn_blocking(move || {
                let mut c = crate::db::connect(&link.url).map_err(|e| e.to_string())?;
                let nodes = crate::db::cluster::nodes(&mut c).map_err(|e| e.to_string())?;
                let now: chrono::DateTime<Utc> = c
                    .query_one("SELECT now()", &[])
                    .map_err(|e| crate::db::describe(&e))?
                    .get(0);
                Ok((nodes, now))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string())),
        )
    }

    /// Cluster mode: keeps a finished run's report in the database, so a client of any node
    /// can read the outcome of a job this node ran.
    pub async fn share_report(&self, run_id: &str, report: &crate::runner::RunReport) {
        let Some(link) = self.cluster.clone() else {
            return;
        };
        let Ok(value) = serde_json::to_value(report) else {
            return;
        };
        let run_id = run_id.to_owned();
        let shared = tokio::task::spawn_blocking(move || {
            let mut c = crate::db::connect(&link.url)?;
            crate::db::cluster::put_report(&mut c, &run_id, &link.node, &value)
        })
        .await;
        match shared {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot share the run's report with the cluster")
            }
            Err(e) => tracing::error!(error = %e, "report task failed"),
        }
    }

    /// Cluster mode: a run another node ran, as its report (`None`: embedded, or unknown).
    pub async fn shared_report(&self, run_id: &str) -> Option<serde_json::Value> {
        let link = self.cluster.clone()?;
        let run_id = run_id.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut c = crate::db::connect(&link.url).ok()?;
            crate::db::cluster::report(&mut c, &run_id).ok().flatten()
        })
        .await
        .ok()
        .flatten()
        .map(|(node, mut report)| {
            if let Some(o) = report.as_object_mut() {
                o.insert("node".into(), serde_json::Value::String(node));
            }
            report
        })
    }

    /// This node's name in a cluster installation.
    pub fn node(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.node.as_str())
    }

    /// Wakes idle workers (something may have become claimable).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The runs executing now.
    pub fn in_flight(&self) -> Vec<InFlight> {
        self.in_flight
            .lock()
            .map(|m| m.values().map(|(f, _)| f.clone()).collect())
            .unwrap_or_default()
    }

    /// Runs `f(queue)` on a blocking thread (queue calls wait for an fsync).
    pub async fn queue_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn RunQueue) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let q = self.queue.clone();
        tokio::task::spawn_blocking(move || f(q.as_ref()))
            .await
            .map_err(|e| QueueError::Broken(format!("queue task failed: {e}")))?
    }

    fn now(&self) -> DateTime<Utc> {
        (self.engine.clock)()
    }

    /// Decides an approval as `user` (every check is the engine's). An approval decided
    /// "approve" gets its submit queued at once, run as the requester, unless the config's
    /// `[serve] submit_on_approve` is off. Returns the approval and that job.
    pub async fn decide(
        &self,
        id: &str,
        user: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<(Approval, Option<Job>), DecideError> {
        let engine = self.engine.clone();
        let (id, user) = (id.to_owned(), user.to_owned());
        let approval = tokio::task::spawn_blocking(move || {
            crate::policy::decide(&engine, &id, &user, approve, note)
        })
        .await
        .map_err(|e| DecideError::Task(e.to_string()))??;
        if !approve || !self.engine.config.serve.submit_on_approve {
            return Ok((approval, None));
        }
        let requester = approval.request.requester.clone();
        let (job, _) = self
            .enqueue_submit(&approval, &requester, None, BTreeMap::new())
            .await?;
        Ok((approval, Some(job)))
    }

    /// Queues the submit of an approved draft at the highest priority, run as `user`, unless
    /// the approval already has a submit job that is queued, running or done: then that job
    /// is returned and `false` says nothing was added. Every check (approval state, binding,
    /// expiry, four eyes) is the engine's, when the run starts.
    pub async fn enqueue_submit(
        &self,
        approval: &Approval,
        user: &str,
        playbook_sha256: Option<String>,
        extra_inputs: BTreeMap<String, String>,
    ) -> Result<(Job, bool), QueueError> {
        let _one = self.submit_lock.lock().await;
        let id = approval.request.approval_id.clone();
        let wanted = id.clone();
        let existing = self
            .queue_call(move |q| {
                Ok(q.list(&JobFilter::default())?.into_iter().find(|j| {
                    j.spec.approval_id.as_deref() == Some(wanted.as_str())
                        && matches!(
                            j.state,
                            JobState::Queued | JobState::Claimed | JobState::Done
                        )
                }))
            })
            .await?;
        if let Some(job) = existing {
            return Ok((job, false));
        }
        let mut inputs = crate::approval::inputs_of(approval);
        inputs.extend(extra_inputs);
        let content = &approval.request.content;
        let mut spec = JobSpec::new(&content.playbook, &content.channel, user);
        // The approved text, by the hash the draft ran with (or a text the caller gave, which
        // the engine refuses unless it is that text).
        spec.playbook_sha256 =
            Some(playbook_sha256.unwrap_or_else(|| content.playbook_sha256.clone()));
        spec.inputs = inputs;
        spec.case_ref = approval.request.case_ref.clone();
        spec.approval_id = Some(id);
        spec.priority = Priority::Submit;
        // A submit is never retried on its own: the approval is spent when the click is made.
        spec.max_attempts = 1;
        cluster_job(&self.engine.config, &self.engine.store, &mut spec, true)
            .map_err(QueueError::BadInput)?;
        let job = self
            .queue_call(move |q| {
                let id = q.enqueue(spec)?;
                q.get(id)?
                    .ok_or_else(|| QueueError::Broken(format!("job {id} vanished after enqueue")))
            })
            .await?;
        self.wake();
        Ok((job, true))
    }
}

/// Readies a job for a cluster installation's shared queue: it carries its playbook's text
/// (by the hash it is pinned to; the node that claims it may not have the text in its
/// evidence store), and a run that drafts or submits (`writes`) stays on this node, whose
/// journal holds its approvals. Nothing changes in the embedded default.
pub(crate) fn cluster_job(
    config: &crate::channel::Config,
    store: &crate::evidence::Store,
    spec: &mut JobSpec,
    writes: bool,
) -> Result<(), String> {
    if config.cluster.database().is_none() {
        return Ok(());
    }
    if writes {
        spec.node = Some(config.cluster.node_name());
    }
    let Some(sha) = &spec.playbook_sha256 else {
        return Ok(());
    };
    let bytes = store
        .playbook_text(sha)
        .map_err(|e| format!("cannot read the playbook text {sha}: {e}"))?;
    spec.playbook_text =
        Some(String::from_utf8(bytes).map_err(|_| format!("playbook text {sha} is not UTF-8"))?);
    Ok(())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A started daemon: its address and a handle to wait for it.
pub struct Running {
    pub addr: SocketAddr,
    pub daemon: Arc<Daemon>,
    task: tokio::task::JoinHandle<Result<ServeSummary, ServeError>>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Asks the daemon to shut down (as SIGTERM does).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the daemon stopped and its last tasks let go of the queue (whose lock a
    /// next daemon, or a command, on the same data directory needs at once); at most 10 s
    /// for those after the daemon's own task ended.
    pub async fn wait(self) -> Result<ServeSummary, ServeError> {
        let Running { daemon, task, .. } = self;
        let queue = Arc::downgrade(&daemon.queue);
        drop(daemon);
        let summary = task
            .await
            .map_err(|e| ServeError::Api(format!("daemon task failed: {e}")))?;
        let since = std::time::Instant::now();
        while queue.strong_count() > 0 {
            if since.elapsed() > std::time::Duration::from_secs(10) {
                tracing::warn!("the stopped daemon's queue is still held after 10 s");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        summary
    }
}

/// Copies evidence blobs no run copied (storage down, a crash before the copy) to object
/// storage: at start, then every minute.
async fn copy_evidence(d: Arc<Daemon>, blobs: Arc<dyn crate::evidence::blob::BlobStore>) {
    let mut stopping = d.stopping.subscribe();
    loop {
        match crate::evidence::blob::copy_all(&d.engine.store, blobs.as_ref()).await {
            Ok(r) => {
                d.evidence_backlog
                    .store(r.failed.len() as i64, std::sync::atomic::Ordering::SeqCst);
                if r.copied > 0 || !r.failed.is_empty() {
                    tracing::info!(
                        copied = r.copied,
                        failed = r.failed.len(),
                        "evidence left over copied to {}",
                        blobs.describe()
                    )
                }
            }
            Err(e) => tracing::warn!("copying evidence to {}: {e}", blobs.describe()),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// Claims the data directory, opens the queue, binds the API and starts the daemon's tasks.
/// Returns once it is listening; [`Running::shutdown`] stops it.
pub async fn start(engine: Engine, opts: ServeOptions) -> Result<Running, ServeError> {
    let data_dir = engine.data_dir.clone();
    let started_at = (engine.clock)();
    let mut claimed = instance::claim(&data_dir, crate::evidence::timestamp(started_at))?;
    let limits = crate::queue::limits_for(&engine.config, opts.pages);
    let engine_cluster = engine
        .config
        .cluster
        .database()
        .map(|url| (url.to_owned(), engine.config.cluster.node_name()));
    let cluster = engine_cluster.is_some();
    let (queue, worker_prefix, abandon_prefix): (Arc<dyn RunQueue>, String, String) = if cluster {
        let config = engine.config.clone();
        let node = config.cluster.node_name();
        let pages = opts.pages;
        let dir = data_dir.clone();
        let queue = tokio::task::spawn_blocking(move || crate::queue::open(&config, &dir, pages))
            .await
            .map_err(|e| ServeError::Api(e.to_string()))??;
        let prefix = format!("{node}/serve/");
        // Claims under this node's name are its predecessor's: dead. Other nodes' are theirs.
        (Arc::from(queue), prefix.clone(), prefix)
    } else {
        let queue = Arc::new(EmbeddedQueue::open(
            &data_dir,
            limits,
            crate::queue::backoff_for(&engine.config),
        )?);
        // We hold the data directory: claims of any earlier daemon on it are dead.
        (queue, format!("{}/serve/", host_name()), String::new())
    };
    let abandoned = {
        let q = queue.clone();
        let now = started_at;
        tokio::task::spawn_blocking(move || {
            q.abandon(
                &abandon_prefix,
                "clerk serve stopped before the run finished (found when it started again)",
                now,
            )
        })
        .await
        .map_err(|e| ServeError::Api(e.to_string()))??
    };
    for job in &abandoned {
        tracing::warn!(%job, "queued again: its run was in flight when clerk serve stopped");
    }
    let listener = tokio::net::TcpListener::bind(opts.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: opts.bind,
        source,
    })?;
    let instance = claimed.publish(addr)?;
    let (stopping, _) = watch::channel(false);
    let daemon = Arc::new(Daemon {
        engine,
        queue,
        opts,
        instance,
        wake: Notify::new(),
        pause_changed: Notify::new(),
        stopping,
        in_flight: Mutex::new(BTreeMap::new()),
        worker_prefix,
        submit_lock: tokio::sync::Mutex::new(()),
        sessions: console::session::Sessions::open(&data_dir, started_at),
        tokens: crate::users::TokenBook::new(&data_dir),
        tlog_alarm: Mutex::new(None),
        cluster: engine_cluster.map(|(url, node)| {
            Arc::new(cluster::ClusterLink {
                url,
                node,
                started_at,
                outbox: Mutex::new(Vec::new()),
            })
        }),
        evidence_backlog: std::sync::atomic::AtomicI64::new(-1),
    });
    let cluster_thread = daemon
        .cluster
        .clone()
        .map(|link| cluster::spawn(daemon.clone(), link));
    let (stop, mut stop_rx) = watch::channel(false);
    let d = daemon.clone();
    let task = tokio::spawn(async move {
        let api = {
            let d = d.clone();
            let stopping = d.stopping.subscribe();
            let header_timeout = parse_duration(&d.engine.config.serve.header_timeout)
                .unwrap_or(Duration::from_secs(10));
            tokio::spawn(listener::serve(
                listener,
                api::router(d.clone()),
                header_timeout,
                stopping,
                d.opts.shutdown_deadline,
            ))
        };
        let mut workers = tokio::task::JoinSet::new();
        for n in 0..d.opts.pages {
            let d = d.clone();
            workers.spawn(executor::worker(d, n));
        }
        let pause_sync = tokio::spawn(executor::sync_pauses(d.clone()));
        let checkpoints = tokio::spawn(checkpointer::run(d.clone()));
        let copies = d.engine.blobs.clone().map(|blobs| {
            let d = d.clone();
            tokio::spawn(async move { copy_evidence(d, blobs).await })
        });
        let scheduler = d
            .opts
            .run_scheduler
            .then(|| tokio::spawn(scheduler::run(d.clone())));
        tracing::info!(%addr, pid = std::process::id(), "clerk serve listening");
        let _ = stop_rx.wait_for(|s| *s).await;
        tracing::info!("clerk serve shutting down");
        let _ = d.stopping.send(true);
        d.wake();
        if let Some(s) = scheduler {
            s.abort();
        }
        pause_sync.abort();
        if let Some(c) = copies {
            c.abort();
        }
        let _ = checkpoints.await;
        let deadline = tokio::time::sleep(d.opts.shutdown_deadline);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = workers.join_next() => if next.is_none() { break },
                _ = &mut deadline => {
                    workers.abort_all();
                    while workers.join_next().await.is_some() {}
                    break;
                }
            }
        }
        let summary = ServeSummary {
            interrupted: executor::interrupt_left_over(&d).await,
            abandoned_at_start: abandoned,
        };
        if let Some(t) = cluster_thread {
            // It sees `stopping` within a second (it publishes what it owes first).
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // The last records (interruptions included) go under a signed checkpoint.
        checkpointer::sign(&d).await;
        d.engine.shutdown().await;
        let _ = api.await;
        drop(claimed);
        Ok(summary)
    });
    Ok(Running {
        addr,
        daemon,
        task,
        stop,
    })
}

/// Runs the daemon in the foreground until SIGTERM or Ctrl-C (`clerk serve`).
pub async fn serve(engine: Engine, opts: ServeOptions) -> Result<ServeSummary, ServeError> {
    let data_dir = engine.data_dir.clone();
    let running = start(engine, opts).await?;
    eprintln!(
        "clerk serve: data directory {}, API on http://{}, pid {} (SIGTERM or Ctrl-C stops it)",
        data_dir.display(),
        running.addr,
        std::process::id()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ServeError::Api(format!("cannot listen for SIGTERM: {e}")))?;
    tokio::select! {
        _ = term.recv() => eprintln!("clerk serve: SIGTERM, shutting down"),
        _ = tokio::signal::ctrl_c() => eprintln!("clerk serve: Ctrl-C, shutting down"),
    }
    running.shutdown();
    let summary = running.wait().await?;
    if !summary.interrupted.is_empty() {
        eprintln!(
            "clerk serve: {} run(s) did not finish in time: marked interrupted and queued \
             again (jobs {:?})",
            summary.interrupted.len(),
            summary.interrupted.iter().map(|j| j.0).collect::<Vec<_>>()
        );
    }
    eprintln!("clerk serve: stopped");
    Ok(summary)
}

/// Queues the draft of a submitted run's compensating action (`crate::rollback`), as
/// `user`: what the console's rollback button and `POST /api/runs/{id}/rollback` do. The
/// draft then waits for a reviewer like any other.
pub(crate) async fn enqueue_rollback(
    d: &Arc<Daemon>,
    run_id: &str,
    user: &str,
    extra: BTreeMap<String, String>,
) -> Result<crate::queue::JobId, (axum::http::StatusCode, String)> {
    use axum::http::StatusCode;
    let (engine, run, who) = (d.engine.clone(), run_id.to_owned(), user.to_owned());
    let plan = tokio::task::spawn_blocking(move || {
        let plan = crate::rollback::plan(&engine, &run, &who, &extra)?;
        engine.store_playbook(&plan.playbook)?;
        Ok::<_, crate::rollback::RollbackError>(plan)
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| {
        let code = match e {
            crate::rollback::RollbackError::NoSuchRun(_) => StatusCode::NOT_FOUND,
            crate::rollback::RollbackError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::CONFLICT,
        };
        (code, e.to_string())
    })?;
    let pb = &plan.playbook;
    let mut spec = JobSpec::new(&pb.name, &pb.channel, user);
    spec.playbook_sha256 = Some(pb.sha256.clone());
    spec.inputs = plan.request.inputs.clone();
    spec.claims = plan.request.claims.clone();
    spec.case_ref = plan.request.case_ref.clone();
    spec.rollback_of = Some(run_id.to_owned());
    spec.max_attempts = d.opts.max_attempts;
    cluster_job(&d.engine.config, &d.engine.store, &mut spec, true)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let job = d
        .queue_call(move |q| q.enqueue(spec))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    d.wake();
    tracing::info!(run = %run_id, job = job.0, %user, "rollback draft queued");
    Ok(job)
}
