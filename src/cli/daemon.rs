//! CLI handlers for the daemon: `clerk serve`, `clerk status`, `clerk queue …`, and the
//! client that sends state-changing commands to a running daemon instead of opening the
//! store (it speaks the daemon's JSON API; it does not link the daemon's code).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::args::{Cli, QueueCommand};
use super::common::{current_user, exit, load_config, status_code, Exit};
use crate::instance::{self, Instance};
use crate::queue::{JobFilter, JobId, JobState, RunQueue};
use crate::runner::{RunReport, RunStatus};

/// A running daemon, reached through its API.
pub struct Daemon {
    pub instance: Instance,
    agent: ureq::Agent,
    /// The caller's own API token (`clerk user token`): the daemon then acts as its user.
    user_token: Option<String>,
}

/// Asks the listener at `addr` to prove it holds `token` (without sending the token).
fn prove_daemon(addr: &std::net::SocketAddr, token: &str) -> Result<(), String> {
    let nonce = crate::users::random_token(24);
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .redirects(0)
        .build();
    let url = format!(
        "http://{addr}/api/hello?id={}&nonce={nonce}",
        crate::users::token_id(token)
    );
    let answer: Value = agent
        .get(&url)
        .call()
        .map_err(|e| e.to_string())?
        .into_json()
        .map_err(|e| e.to_string())?;
    let want = crate::users::token_proof(&crate::users::stored_hash(token), &nonce);
    match answer.get("proof").and_then(Value::as_str) {
        Some(p) if crate::users::constant_eq(p.as_bytes(), want.as_bytes()) => Ok(()),
        _ => Err("no valid proof".into()),
    }
}

impl Daemon {
    /// The daemon serving `cli`'s data directory, if one runs. With an API token of the
    /// caller's own and a data directory the caller cannot read (the daemon owns it as its
    /// own system user), the daemon is the one at the config's `[serve] port`.
    pub fn find(cli: &Cli) -> Option<Daemon> {
        let user_token = super::common::user_token();
        let instance = match instance::presence(&cli.data_dir) {
            instance::Presence::Live(i) => i,
            instance::Presence::Absent => return None,
            // Only when the caller cannot see the data directory (the daemon owns it as its
            // own user) is the daemon looked for at the configured port.
            instance::Presence::Hidden => {
                let token = user_token.as_ref()?;
                let config = match load_config(cli) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("warning: no daemon found: cannot read the config to find its port: {e:#}");
                        return None;
                    }
                };
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], config.serve.port));
                // Whatever listens there must prove it holds this token before it gets it.
                if let Err(why) = prove_daemon(&addr, token) {
                    eprintln!(
                        "warning: the listener at http://{addr} did not prove it is clerk serve ({why}); \
                         your token was not sent to it"
                    );
                    return None;
                }
                Instance {
                    pid: 0,
                    addr,
                    started_at: String::new(),
                    token: String::new(),
                    version: String::new(),
                }
            }
        };
        Some(Daemon {
            instance,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .build(),
            user_token,
        })
    }

    /// Who the request says acts: `--as` (or, without a token of one's own, the OS user).
    /// With one's own token and no `--as`, nobody: the daemon acts as the token's user.
    pub fn claimed_user(&self, cli: &Cli) -> String {
        match (&cli.user, &self.user_token) {
            (Some(u), _) => u.clone(),
            (None, Some(_)) => String::new(),
            (None, None) => current_user(cli),
        }
    }

    fn authorize(&self, r: ureq::Request) -> ureq::Request {
        match &self.user_token {
            Some(t) => r.set("Authorization", &format!("Bearer {t}")),
            None => r.set(instance::TOKEN_HEADER, &self.instance.token),
        }
    }

    /// Says on stderr that the command goes through the daemon.
    pub fn announce(&self) {
        eprintln!(
            "(through clerk serve, pid {}, http://{})",
            self.instance.pid, self.instance.addr
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.instance.addr)
    }

    fn answer(&self, result: Result<ureq::Response, ureq::Error>) -> anyhow::Result<Value> {
        match result {
            Ok(r) => r.into_json().context("reading the daemon's answer"),
            Err(ureq::Error::Status(code, r)) => {
                let body: Value = r.into_json().unwrap_or(Value::Null);
                let msg = body
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
                    .to_owned();
                let exit_code = match code {
                    400 | 404 | 422 => 2,
                    403 => 3,
                    _ => 1,
                };
                Err(exit(exit_code, msg))
            }
            Err(e) => Err(exit(
                1,
                format!(
                    "cannot reach clerk serve (pid {}) at http://{}: {e}",
                    self.instance.pid, self.instance.addr
                ),
            )),
        }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.authorize(self.agent.get(&self.url(path))).call();
        self.answer(r)
    }

    pub fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .authorize(self.agent.post(&self.url(path)))
            .send_json(body);
        self.answer(r)
    }

    /// Waits until every job is done, dead or dropped; returns them.
    pub fn wait_jobs(&self, ids: &[u64]) -> anyhow::Result<Vec<Value>> {
        let mut done = BTreeMap::new();
        loop {
            let status = self.get("/api/status")?;
            let paused = status
                .get("paused_channels")
                .cloned()
                .unwrap_or(Value::Null);
            for id in ids {
                if done.contains_key(id) {
                    continue;
                }
                let mut job = self.get(&format!("/api/jobs/{id}"))?;
                let state = job.get("state").and_then(Value::as_str).unwrap_or("");
                let channel = job
                    .pointer("/spec/channel")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if matches!(state, "done" | "dead" | "dropped") {
                    done.insert(*id, job);
                } else if let Some(p) = paused.get(&channel).filter(|_| state == "queued") {
                    // It waits for the channel's queue to be resumed: stop waiting here.
                    job["state"] = json!("waiting");
                    job["last_error"] = json!(format!(
                        "channel {channel}'s queue is paused: {}",
                        p.get("reason").and_then(Value::as_str).unwrap_or("")
                    ));
                    done.insert(*id, job);
                }
            }
            if done.len() == ids.len() {
                return Ok(ids.iter().filter_map(|i| done.remove(i)).collect());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Runs blocking client calls off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("client task failed")?
}

/// The installation's queue, when no daemon is running here (embedded: the data directory's;
/// cluster: the shared database).
fn open_queue(cli: &Cli) -> anyhow::Result<Box<dyn RunQueue>> {
    let config = load_config(cli)?;
    crate::queue::open(&config, &cli.data_dir, config.serve.pages)
        .map_err(|e| exit(1, e.to_string()))
}

fn print_jobs(jobs: &[Value]) {
    println!(
        "{:>6}  {:<8} {:<10} {:<22} {:>4}  detail",
        "job", "state", "channel", "playbook", "try"
    );
    for j in jobs {
        let s = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let spec = j.get("spec").cloned().unwrap_or(Value::Null);
        let sp = |k: &str| spec.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let playbook = sp("playbook");
        let playbook = Path::new(&playbook)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or(playbook);
        let detail = match s("state").as_str() {
            "dead" => s("dead_reason"),
            "done" => j
                .pointer("/outcome/status")
                .and_then(Value::as_str)
                .map(|st| {
                    format!(
                        "{st} {}",
                        j.pointer("/outcome/run_id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    )
                })
                .unwrap_or_default(),
            "queued" | "waiting" => {
                match (j.get("not_before").and_then(Value::as_str), s("last_error")) {
                    (Some(t), e) => format!("not before {t}; last: {e}"),
                    (None, e) => e,
                }
            }
            "claimed" => j
                .pointer("/lease/worker")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            _ => String::new(),
        };
        println!(
            "{:>6}  {:<8} {:<10} {:<22} {:>4}  {}",
            j.get("id").and_then(Value::as_u64).unwrap_or(0),
            s("state"),
            sp("channel"),
            playbook,
            j.get("attempts").and_then(Value::as_u64).unwrap_or(0),
            detail
        );
    }
}

fn parse_state(s: &str) -> anyhow::Result<JobState> {
    Ok(match s {
        "queued" => JobState::Queued,
        "claimed" => JobState::Claimed,
        "done" => JobState::Done,
        "dead" => JobState::Dead,
        "dropped" => JobState::Dropped,
        other => {
            return Err(exit(
                2,
                format!("unknown state {other:?} (queued, claimed, done, dead, dropped)"),
            ))
        }
    })
}

/// `clerk queue …`: through the daemon when it runs, else on the queue files directly.
pub async fn queue(cli: &Cli, command: &QueueCommand) -> anyhow::Result<ExitCode> {
    let daemon = Daemon::find(cli);
    match command {
        QueueCommand::List {
            state,
            channel,
            json,
        } => {
            let jobs: Vec<Value> = match &daemon {
                Some(d) => {
                    let mut q = Vec::new();
                    if let Some(s) = state {
                        q.push(format!("state={s}"));
                    }
                    if let Some(c) = channel {
                        q.push(format!("channel={c}"));
                    }
                    let path = format!("/api/jobs?{}", q.join("&"));
                    let v = daemon_call(d, move |d| d.get(&path)).await?;
                    v.as_array().cloned().unwrap_or_default()
                }
                None => {
                    let filter = JobFilter {
                        state: state.as_deref().map(parse_state).transpose()?,
                        channel: channel.clone(),
                        limit: None,
                    };
                    let q = open_queue(cli)?;
                    q.list(&filter)?
                        .iter()
                        .map(serde_json::to_value)
                        .collect::<Result<_, _>>()?
                }
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else if jobs.is_empty() {
                println!("no jobs");
            } else {
                print_jobs(&jobs);
            }
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Show { job, json: _ } => {
            let v = match &daemon {
                Some(d) => {
                    let path = format!("/api/jobs/{job}");
                    daemon_call(d, move |d| d.get(&path)).await?
                }
                None => match open_queue(cli)?.get(JobId(*job))? {
                    Some(j) => serde_json::to_value(j)?,
                    None => return Err(exit(2, format!("no job {job} in the queue"))),
                },
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Retry { job } | QueueCommand::Drop { job } => {
            let retry = matches!(command, QueueCommand::Retry { .. });
            match &daemon {
                Some(d) => {
                    d.announce();
                    let path = format!("/api/jobs/{job}/{}", if retry { "retry" } else { "drop" });
                    let body = json!({ "user": d.claimed_user(cli) });
                    daemon_call(d, move |d| d.post(&path, body)).await?;
                }
                None => {
                    let q = open_queue(cli)?;
                    let r = if retry {
                        q.retry(JobId(*job))
                    } else {
                        q.drop_job(JobId(*job))
                    };
                    r.map_err(|e| exit(2, e.to_string()))?;
                    record_queue_change(
                        cli,
                        if retry { "retry" } else { "drop" },
                        vec![*job],
                        None,
                    )?;
                }
            }
            println!(
                "job {job} {}",
                if retry { "queued again" } else { "dropped" }
            );
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Resume { channel } => {
            match &daemon {
                Some(d) => {
                    d.announce();
                    let path = format!("/api/queue/{channel}/resume");
                    let body = json!({ "user": d.claimed_user(cli) });
                    daemon_call(d, move |d| d.post(&path, body)).await?;
                }
                None => {
                    open_queue(cli)?
                        .resume_channel(channel)
                        .map_err(|e| exit(2, e.to_string()))?;
                    record_queue_change(cli, "resume_channel", vec![], Some(channel.clone()))?;
                }
            }
            println!("queue of channel {channel} resumed");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Records a queue change made without a daemon, under the acting user.
fn record_queue_change(
    cli: &Cli,
    action: &str,
    jobs: Vec<u64>,
    channel: Option<String>,
) -> anyhow::Result<()> {
    let store = crate::cli::common::open_store(cli)?;
    store.append(crate::evidence::Event::QueueChanged {
        action: action.to_owned(),
        jobs,
        channel,
        user: current_user(cli),
        at: crate::evidence::timestamp(chrono::Utc::now()),
    })?;
    Ok(())
}

/// A blocking call on the daemon, off the runtime.
pub async fn daemon_call<T: Send + 'static>(
    d: &Daemon,
    f: impl FnOnce(&Daemon) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let d = Daemon {
        instance: d.instance.clone(),
        agent: d.agent.clone(),
        user_token: d.user_token.clone(),
    };
    blocking(move || f(&d)).await
}

/// `clerk status`.
pub async fn status(cli: &Cli, json_out: bool) -> anyhow::Result<ExitCode> {
    let v = match Daemon::find(cli) {
        Some(d) => daemon_call(&d, |d| d.get("/api/status")).await?,
        None => {
            let q = open_queue(cli)?;
            let mut depth: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
            for j in q.list(&JobFilter::default())? {
                if matches!(
                    j.state,
                    JobState::Queued | JobState::Claimed | JobState::Dead
                ) {
                    *depth
                        .entry(j.spec.channel.clone())
                        .or_default()
                        .entry(j.state.to_string())
                        .or_default() += 1;
                }
            }
            let config = std::sync::Arc::new(load_config(cli)?);
            let store = crate::cli::common::open_store_with(cli, Some(&config))?;
            let pause = crate::pause::PauseBoard::open(&store, config, &cli.data_dir)
                .context("reading the pause state")?
                .state();
            json!({
                "daemon": null,
                "queue": depth,
                "paused_channels": q.paused_channels()?,
                "pause": pause,
            })
        }
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    match v.get("daemon").filter(|d| !d.is_null()) {
        Some(d) => println!(
            "daemon: running, pid {}, http://{}, since {}{}",
            d["pid"].as_u64().unwrap_or(0),
            d["addr"].as_str().unwrap_or(""),
            d["started_at"].as_str().unwrap_or(""),
            if d["stopping"].as_bool() == Some(true) {
                " (shutting down)"
            } else {
                ""
            }
        ),
        None => println!("daemon: not running (`clerk serve` starts it)"),
    }
    if let Some(state) = v
        .get("pause")
        .and_then(|p| serde_json::from_value::<crate::pause::PauseState>(p.clone()).ok())
    {
        print!("{}", super::pause::render(&state));
    }
    if let Some(p) = v.get("pool") {
        let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        let pids: Vec<String> = p
            .get("pids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .map(|pid| pid.to_string())
            .collect();
        println!(
            "pool: {} Chromium process{}{}; launched {}, replaced {}, recycled {}",
            n("browsers"),
            if n("browsers") == 1 { "" } else { "es" },
            if pids.is_empty() {
                String::new()
            } else {
                format!(" (pid {})", pids.join(", "))
            },
            n("launched"),
            n("replaced"),
            n("recycled")
        );
    }
    if let Some(f) = v.get("in_flight").and_then(Value::as_array) {
        println!("in flight: {} run(s)", f.len());
        for r in f {
            println!(
                "  job {} run {} ({} / {})",
                r["job"].as_u64().unwrap_or(0),
                r["run_id"].as_str().unwrap_or(""),
                r["channel"].as_str().unwrap_or(""),
                r["playbook"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(c) = v.get("cluster").filter(|c| !c.is_null()) {
        println!(
            "cluster: this node is {}",
            c["node"].as_str().unwrap_or("?")
        );
        if let Some(e) = c.get("error").and_then(Value::as_str) {
            println!("  database unreachable: {e}");
        }
        for n in c
            .get("nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            println!(
                "  node {}: http://{} pid {}, last heartbeat {:.1} s ago, {} of {} page(s) busy",
                n["node"].as_str().unwrap_or("?"),
                n["address"].as_str().unwrap_or("?"),
                n["pid"].as_u64().unwrap_or(0),
                n["heartbeat_age_secs"].as_f64().unwrap_or(f64::NAN),
                n["busy"].as_u64().unwrap_or(0),
                n["pages"].as_u64().unwrap_or(0)
            );
        }
    }
    if let Some(l) = v.get("limits").and_then(Value::as_object) {
        let scope = if v.get("cluster").is_some_and(|c| !c.is_null()) {
            "installation-wide"
        } else {
            "this daemon"
        };
        for (channel, l) in l {
            println!(
                "limit {channel}: {} page(s) at once, {} ms between starts ({scope})",
                l["max_pages"].as_u64().unwrap_or(0),
                l["min_interval_ms"].as_u64().unwrap_or(0)
            );
        }
    }
    println!("queue:");
    match v.get("queue").and_then(Value::as_object) {
        Some(q) if !q.is_empty() => {
            for (channel, d) in q {
                let n = |k: &str| d.get(k).and_then(Value::as_u64).unwrap_or(0);
                println!(
                    "  {channel}: {} queued, {} running, {} dead-lettered",
                    n("queued"),
                    n("claimed"),
                    n("dead")
                );
            }
        }
        _ => println!("  empty"),
    }
    if let Some(p) = v.get("paused_channels").and_then(Value::as_object) {
        for (channel, info) in p {
            println!(
                "  {channel}: queue PAUSED since {}: {}",
                info["since"].as_str().unwrap_or(""),
                info["reason"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `clerk run` through the daemon: one job per row (the playbooks' exact texts are sent,
/// so the daemon never opens a path), then waits and prints the same report, in the same
/// shape, as a run without a daemon.
pub async fn run_via(
    d: &Daemon,
    playbooks: Vec<String>,
    rows: Vec<BTreeMap<String, String>>,
    user: String,
    case_ref: Option<String>,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    d.announce();
    let started = std::time::Instant::now();
    let batch_id = crate::batch::new_batch_id(chrono::Utc::now());
    let batch = batch_id.clone();
    let runs = daemon_call(d, move |d| {
        let mut ids = Vec::new();
        for text in &playbooks {
            let v = d.post(
                "/api/runs",
                json!({ "playbook_yaml": text, "rows": rows, "user": user,
                        "case_ref": case_ref, "batch_id": batch }),
            )?;
            ids.extend(
                v.get("jobs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64),
            );
        }
        eprintln!(
            "queued job{} {}; waiting for {} to finish",
            if ids.len() == 1 { "" } else { "s" },
            ids.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if ids.len() == 1 { "it" } else { "them" }
        );
        let jobs = d.wait_jobs(&ids)?;
        jobs.iter().map(|j| d.report_of(j)).collect()
    })
    .await?;
    let report = crate::batch::summarize(batch_id, runs, started.elapsed().as_millis() as u64);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::batch::render(&report));
    }
    let code = report
        .runs
        .iter()
        .map(|r| status_code(r.status))
        .max()
        .unwrap_or(0);
    Ok(ExitCode::from(code))
}

impl Daemon {
    /// The report of a finished (or waiting) job: its run's report as the journal tells it,
    /// or, for a job that never started a run, one saying why.
    pub fn report_of(&self, job: &Value) -> anyhow::Result<RunReport> {
        let run_id = job
            .pointer("/outcome/run_id")
            .and_then(Value::as_str)
            .or_else(|| job.get("last_run_id").and_then(Value::as_str));
        let state = job.get("state").and_then(Value::as_str).unwrap_or("");
        if let Some(run) = run_id.filter(|_| state != "waiting") {
            let v = self.get(&format!("/api/runs/{run}/report"))?;
            let mut report: RunReport = serde_json::from_value(v)
                .with_context(|| format!("reading the report of run {run}"))?;
            if state == "dead" && matches!(report.status, RunStatus::Ok | RunStatus::Drafted) {
                report.status = RunStatus::Failed;
            }
            if state == "dead" && report.error.is_none() {
                report.error = job
                    .get("dead_reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            return Ok(report);
        }
        let text = |k: &str| job.get(k).and_then(Value::as_str).map(str::to_owned);
        let reason = text("dead_reason").or_else(|| text("last_error"));
        let status = match state {
            "waiting" => RunStatus::SessionExpired,
            "dropped" => RunStatus::Refused,
            _ if reason.as_deref().is_some_and(|r| r.starts_with("refused")) => RunStatus::Refused,
            _ => RunStatus::Failed,
        };
        Ok(RunReport {
            run_id: None,
            playbook: job
                .pointer("/spec/playbook")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            inputs: job
                .pointer("/spec/inputs")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
            status,
            error: Some(match state {
                "dropped" => "the job was dropped from the queue".to_owned(),
                _ => reason.unwrap_or_else(|| format!("job {state}")),
            }),
            fields: BTreeMap::new(),
            screenshots: vec![],
            guard: vec![],
            approval_id: None,
            duration_ms: 0,
            timings: None,
            transient: false,
            browser_lost: false,
            auto_approved_by: None,
            auto_submit: None,
        })
    }
}

/// `clerk approve` / `clerk reject` through the daemon.
pub async fn decide_via(
    cli: &Cli,
    id: &str,
    approve: bool,
    note: Option<String>,
) -> anyhow::Result<ExitCode> {
    let d = Daemon::find(cli).ok_or_else(|| exit(1, "clerk serve stopped"))?;
    d.announce();
    let reviewer = d.claimed_user(cli);
    let path = format!("/api/approvals/{id}/decide");
    let body = json!({ "user": reviewer, "approve": approve, "note": note });
    let v = daemon_call(&d, move |d| d.post(&path, body))
        .await
        .map_err(|e| match e.downcast::<Exit>() {
            Ok(x) if x.code == 3 => exit(3, format!("refused: {}", x.message)),
            Ok(x) => x.into(),
            Err(e) => e,
        })?;
    let reviewer = v
        .pointer("/approval/decision/reviewer")
        .and_then(Value::as_str)
        .unwrap_or(&reviewer);
    println!(
        "{} {} by {reviewer}",
        v.pointer("/approval/request/approval_id")
            .and_then(Value::as_str)
            .unwrap_or(id),
        v.pointer("/approval/state")
            .and_then(Value::as_str)
            .unwrap_or("")
    );
    if let Some(job) = v.pointer("/submit_job/id").and_then(Value::as_u64) {
        println!(
            "its submit is queued as job {job}, run as the requester \
             (follow it with `clerk queue show {job}`; `clerk submit {id}` waits for it)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `clerk submit` through the daemon: an approved submit job at the highest priority, then
/// the same report as a submit without a daemon. Secret inputs are not sent: the daemon
/// reads them from its own `CLERK_SECRET_<NAME>`. A `--playbook` file is sent as text; the
/// engine refuses it unless it is the approved text.
pub async fn submit_via(
    cli: &Cli,
    d: &Daemon,
    id: &str,
    playbook: Option<&Path>,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    d.announce();
    let playbook_yaml = match playbook {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| exit(2, format!("{}: {e}", p.display())))?)
        }
        None => None,
    };
    let body =
        json!({ "approval_id": id, "user": d.claimed_user(cli), "playbook_yaml": playbook_yaml });
    let report = daemon_call(d, move |d| {
        let v = d.post("/api/submit", body)?;
        let ids: Vec<u64> = v
            .get("jobs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        let jobs = d.wait_jobs(&ids)?;
        let job = jobs
            .first()
            .ok_or_else(|| anyhow::anyhow!("the daemon queued no job for approval"))?;
        d.report_of(job)
    })
    .await?;
    crate::cli::common::print_submit(id, &report, json_out)
}

/// `clerk rollback RUN` while a daemon serves the data directory: the draft is queued
/// there and waited for.
pub async fn rollback_via(
    cli: &Cli,
    d: &Daemon,
    run: &str,
    extra: &std::collections::BTreeMap<String, String>,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    d.announce();
    let body = json!({ "user": d.claimed_user(cli), "inputs": extra });
    let path = format!("/api/runs/{run}/rollback");
    let report = daemon_call(d, move |d| {
        let v = d.post(&path, body)?;
        let job = v
            .get("job")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow::anyhow!("the daemon queued no rollback job: {v}"))?;
        let jobs = d.wait_jobs(&[job])?;
        let job = jobs
            .first()
            .ok_or_else(|| anyhow::anyhow!("rollback job {job} vanished"))?;
        d.report_of(job)
    })
    .await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "rollback of {run} ended {}{}",
            report.status.as_str(),
            match (&report.approval_id, &report.error) {
                (Some(id), _) => format!(": approval {id} waits for a reviewer"),
                (None, Some(e)) => format!(": {e}"),
                _ => String::new(),
            }
        );
    }
    Ok(ExitCode::from(crate::cli::common::status_code(
        report.status,
    )))
}
