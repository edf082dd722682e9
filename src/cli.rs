//! The command line: clap definitions and dispatch to the library. Front-end code only:
//! every rule (authorization, gates, recording) lives in the engine.
//!
//! Exit codes: 0 success; 1 a run failed or verification found a problem; 2 invalid
//! input (playbook, config, inputs file, usage); 3 refused (authorization, approvals);
//! 4 a channel's session is missing or expired.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};

use crate::batch::{self, BatchOptions};
use crate::browser::{LaunchOptions, PoolConfig};
use crate::channel::Config;
use crate::evidence::Store;
use crate::playbook::{self, Playbook};
use crate::runner::{Engine, RunRequest, RunStatus};

/// clerk: back-office agent for e-commerce service teams.
#[derive(Debug, Parser)]
#[command(name = "clerk", version, about, long_about = None)]
pub struct Cli {
    /// Data directory: config, sessions, screenshots/, journal, index.
    #[arg(long, global = true, env = "CLERK_DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,
    /// Config file (default: clerk.toml in the data directory).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Who is running clerk (default: the OS user).
    #[arg(long = "as", global = true, env = "CLERK_USER")]
    pub user: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the sample seller center, look up 20 orders read-only, draft one refund.
    Demo(DemoArgs),
    /// Validate playbooks without a browser.
    Check {
        /// Playbook files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run one or more playbooks, once or for every row of an inputs file.
    Run(RunArgs),
    /// Write a channel's session by running a login playbook (secrets from the environment).
    Login {
        channel: String,
        #[arg(long)]
        playbook: PathBuf,
    },
    /// Runs recorded in the evidence store.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Verify screenshots, the hash chain and the index (or an exported bundle).
    Verify(VerifyArgs),
    /// Export a self-contained bundle for auditors.
    Export {
        #[arg(long, conflicts_with = "case", required_unless_present = "case")]
        run: Option<String>,
        #[arg(long)]
        case: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Rebuild the index from the journal and the screenshot files.
    Reindex,
    /// Approval requests created by drafts.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// Approve a pending draft (as a reviewer of its channel, not its requester).
    Approve {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a pending draft, saying why.
    Reject {
        id: String,
        #[arg(long, required = true)]
        note: String,
    },
    /// Execute an approved draft: fill again, check the draft hash, submit exactly once.
    Submit {
        id: String,
        /// Playbook file (default: playbooks/NAME.yaml, else the embedded one).
        #[arg(long)]
        playbook: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Schedules: playbooks that run by themselves (fired by the future `clerk serve`).
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Emergency pause: no new run, in-flight runs stop before their next step, every write
    /// of every open browser is denied (global, or one channel with --channel).
    Pause(crate::cli_pause::PauseArgs),
    /// Lift an emergency pause (global, or one channel with --channel).
    Resume(crate::cli_pause::PauseArgs),
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule (validates the playbook, the trigger and the inputs first).
    Add(ScheduleAddArgs),
    /// List schedules: trigger, time zone, next firing, paused, last firing.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one schedule.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop a schedule from firing until it is resumed.
    Pause {
        name: String,
        /// Why (recorded).
        #[arg(long, required = true)]
        reason: String,
    },
    /// Let a paused schedule fire again, from the next slot on.
    Resume { name: String },
    /// Remove a schedule (its records stay; the name may be used again).
    Remove { name: String },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("trigger").required(true).args(["cron", "every"])))]
pub struct ScheduleAddArgs {
    /// Unique name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Playbook file, or the name of a playbook (playbooks/NAME.yaml or an embedded one).
    #[arg(long)]
    pub playbook: String,
    /// Cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with
    /// seconds first, evaluated in --tz.
    #[arg(long)]
    pub cron: Option<String>,
    /// Fixed interval: 90s, 30m, 2h, 1d (at least 1m; counted from the Unix epoch in UTC).
    #[arg(long)]
    pub every: Option<String>,
    /// IANA time zone of the cron expression (default UTC).
    #[arg(long, conflicts_with = "every")]
    pub tz: Option<String>,
    /// One run per row at each firing: .csv with a header row, or .jsonl (read at each firing).
    #[arg(long, conflicts_with = "inputs_from_url")]
    pub inputs: Option<PathBuf>,
    /// Fetch the rows from this URL at each firing (.csv or .jsonl content).
    #[arg(long)]
    pub inputs_from_url: Option<String>,
    /// Input whose value becomes each run's case reference.
    #[arg(long)]
    pub case_from: Option<String>,
    /// Runs of one firing at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port of the sample seller center (0 picks a free one).
    #[arg(long, default_value_t = 8931)]
    pub port: u16,
    /// Orders to look up.
    #[arg(long, default_value_t = 20)]
    pub orders: usize,
    /// Runs (pages) at once.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[arg(long)]
    pub json: bool,
}

/// How runs share browsers (see the README, "Browsers and isolation").
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// `run`: a fresh browser context per run; `batch`: consecutive successful read-only
    /// runs of the same channel, playbook, operator and session reuse one (warm page and
    /// cache, shared site cookies).
    #[arg(long, default_value = "batch", value_parser = ["run", "batch"])]
    pub isolation: String,
    /// Chromium processes at most (runs beyond that share them, one context each).
    #[arg(long, default_value_t = 1)]
    pub browsers: usize,
    /// A Chromium is replaced after this many runs.
    #[arg(long, default_value_t = 200)]
    pub recycle_after: u32,
}

impl PoolArgs {
    pub fn config(&self) -> PoolConfig {
        PoolConfig {
            browsers: self.browsers.max(1),
            recycle_after: self.recycle_after.max(1),
            isolation: self.isolation.parse().unwrap_or_default(),
            ..PoolConfig::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Playbook files.
    #[arg(required = true)]
    pub playbooks: Vec<PathBuf>,
    /// An input value, NAME=VALUE (repeatable).
    #[arg(long = "input", short = 'i')]
    pub input: Vec<String>,
    /// One run per row: .csv with a header row, or .jsonl.
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    /// Runs (pages) at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    #[command(flatten)]
    pub pool: PoolArgs,
    /// Service case or ticket the evidence is for.
    #[arg(long)]
    pub case: Option<String>,
    /// Print machine-readable results.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs.
    List {
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        case: Option<String>,
        /// RFC 3339 time or YYYY-MM-DD.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one run: steps, fields, screenshots, blocked requests, approvals.
    Show {
        run: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long, conflicts_with_all = ["case", "all", "bundle"])]
    pub run: Option<String>,
    #[arg(long, conflicts_with_all = ["all", "bundle"])]
    pub case: Option<String>,
    #[arg(long, conflicts_with = "bundle")]
    pub all: bool,
    /// Verify an exported bundle offline.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests.
    List {
        #[arg(long)]
        pending: bool,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one approval request: values, screenshot, what will be submitted where.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// An error with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

/// An error that makes the process exit with `code`.
pub(crate) fn exit(code: u8, message: impl Into<String>) -> anyhow::Error {
    Exit {
        code,
        message: message.into(),
    }
    .into()
}

/// The user clerk acts as.
pub fn current_user(cli: &Cli) -> String {
    cli.user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .or_else(os_user)
        .unwrap_or_else(|| "unknown".into())
}

/// The name of the effective OS user, from the password database.
fn os_user() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy it at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_owned)
    }
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| cli.data_dir.join("clerk.toml"))
}

pub(crate) fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Config::load(&config_path(cli)).map_err(|e| exit(2, e.to_string()))
}

/// Opens the store and the engine for commands that run browsers or decide approvals.
pub fn engine(cli: &Cli) -> anyhow::Result<Engine> {
    let config = load_config(cli)?;
    let store = Store::open(&cli.data_dir).context("opening the evidence store")?;
    let launch = LaunchOptions::detect().map_err(|e| exit(2, e.to_string()))?;
    Ok(Engine::new(cli.data_dir.clone(), config, store, launch))
}

fn load_playbook(path: &Path, config: Option<&Config>) -> anyhow::Result<Arc<Playbook>> {
    playbook::load(path, config)
        .map(Arc::new)
        .map_err(|d| exit(2, d.to_string()))
}

/// Parses `NAME=VALUE` pairs.
fn parse_pairs(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| exit(2, format!("--input {p:?}: expected NAME=VALUE")))?;
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(out)
}

/// The exit code a run's outcome maps to.
pub(crate) fn status_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Ok | RunStatus::Drafted => 0,
        RunStatus::Failed => 1,
        RunStatus::Refused => 3,
        RunStatus::SessionExpired => 4,
        RunStatus::Paused => 5,
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo(args) => crate::demo::run(&cli, args).await,
        Command::Check { files } => {
            let config = Config::load(&config_path(&cli)).ok();
            let diags = playbook::check_files(files, config.as_ref());
            if diags.is_empty() {
                println!("{} playbook(s) ok", files.len());
                Ok(ExitCode::SUCCESS)
            } else {
                for d in &diags {
                    eprintln!("{d}");
                }
                eprintln!("{} problem(s) found", diags.len());
                Ok(ExitCode::from(2))
            }
        }
        Command::Run(args) => {
            let engine = engine(&cli)?.with_pool(args.pool.config());
            let playbooks = args
                .playbooks
                .iter()
                .map(|p| load_playbook(p, Some(&engine.config)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let base = parse_pairs(&args.input)?;
            let rows = match &args.inputs {
                Some(path) => batch::read_rows(path)
                    .map_err(|e| exit(2, e.to_string()))?
                    .into_iter()
                    .map(|mut r| {
                        for (k, v) in &base {
                            r.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                        r
                    })
                    .collect(),
                None => vec![base],
            };
            let opts = BatchOptions {
                jobs: args.jobs,
                operator: current_user(&cli),
                case_ref: args.case.clone(),
                progress: !args.json,
            };
            let report = batch::run_batch(&engine, &playbooks, rows, &opts).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", batch::render(&report));
            }
            let code = report
                .runs
                .iter()
                .map(|r| status_code(r.status))
                .max()
                .unwrap_or(0);
            Ok(ExitCode::from(code))
        }
        Command::Login {
            channel,
            playbook: path,
        } => {
            let engine = engine(&cli)?;
            let pb = load_playbook(path, Some(&engine.config))?;
            if pb.mode != crate::playbook::Mode::Login {
                bail!(exit(
                    2,
                    format!(
                        "{} is not a login playbook (mode: {})",
                        path.display(),
                        pb.mode
                    )
                ));
            }
            if pb.channel != *channel {
                bail!(exit(
                    2,
                    format!(
                        "{} logs into channel `{}`, not `{channel}`",
                        path.display(),
                        pb.channel
                    )
                ));
            }
            let report = engine
                .run(RunRequest {
                    playbook: pb,
                    inputs: BTreeMap::new(),
                    operator: current_user(&cli),
                    case_ref: None,
                    batch_id: None,
                    approval: None,
                })
                .await?;
            match report.status {
                RunStatus::Ok => {
                    println!("session for channel {channel} saved");
                    Ok(ExitCode::SUCCESS)
                }
                s => {
                    eprintln!("login failed: {}", report.error.unwrap_or_default());
                    Ok(ExitCode::from(status_code(s)))
                }
            }
        }
        Command::Runs { command } => crate::report::runs(&cli, command),
        Command::Verify(args) => crate::report::verify(&cli, args),
        Command::Export { run, case, out } => {
            crate::report::export(&cli, run.clone(), case.clone(), out)
        }
        Command::Reindex => crate::report::reindex(&cli),
        Command::Approvals { command } => crate::report::approvals(&cli, command),
        Command::Approve { id, note } => crate::report::decide(&cli, id, true, note.clone()),
        Command::Reject { id, note } => crate::report::decide(&cli, id, false, Some(note.clone())),
        Command::Submit { id, playbook, json } => {
            crate::report::submit(&cli, id, playbook.as_deref(), *json).await
        }
        Command::Schedule { command } => crate::schedule_cli::run(&cli, command),
        Command::Pause(args) | Command::Resume(args) => crate::cli_pause::run(&cli, args).await,
    }
}
