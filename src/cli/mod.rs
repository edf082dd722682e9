//! The command line: dispatch of the parsed command (definitions in `args`, shared helpers
//! in `common`, handlers in `demo`, `report` and `schedule`). Front-end code only:
//! every rule (authorization, gates, recording) lives in the engine.
//!
//! Exit codes: see `common`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;

use crate::batch::{self, BatchOptions};
use crate::channel::Config;
use crate::playbook;
use crate::runner::{RunRequest, RunStatus};

pub mod args;
pub mod common;
pub mod daemon;
pub mod db;
pub mod demo;
pub mod pause;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod tlog;
pub mod user;
pub mod witness;

pub use args::{
    ApprovalsCommand, Cli, Command, DemoArgs, PoolArgs, QueueCommand, RunArgs, RunsCommand,
    ScheduleAddArgs, ScheduleCommand, UserCommand, VerifyArgs,
};
use common::{config_path, exit, load_playbook, parse_pairs, status_code};
pub use common::{current_user, engine, Exit};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo(args) => demo::run(&cli, args).await,
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
            if let Some(d) = daemon::Daemon::find(&cli) {
                if args.sample {
                    bail!(exit(
                        2,
                        format!(
                            "clerk serve (pid {}) owns this data directory, and replay samples \
                             are recorded by clerk run in its own browsers: stop the daemon, \
                             or record the sample with another data directory",
                            d.instance.pid
                        )
                    ));
                }
                return run_via_daemon(&cli, &d, args).await;
            }
            let mut engine = engine(&cli)?;
            engine.launch.record_subresources = args.sample;
            let engine = engine.with_pool(args.pool.config());
            let playbooks = args
                .playbooks
                .iter()
                .map(|p| load_playbook(&cli, p, Some(&engine.config)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let rows = input_rows(args)?;
            let opts = BatchOptions {
                jobs: args.jobs,
                operator: current_user(&cli),
                case_ref: args.case.clone(),
                progress: !args.json,
                sample: args.sample,
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
            let pb = load_playbook(&cli, path, Some(&engine.config))?;
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
                    claims: Default::default(),
                    replay_of: None,
                    rollback_of: None,
                    offline: None,
                    sample: false,
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
        Command::Runs { command } => report::runs(&cli, command),
        Command::Verify(args) => report::verify(&cli, args).await,
        Command::Export {
            run,
            case,
            out,
            wacz,
        } => report::export(&cli, run.clone(), case.clone(), out, *wacz).await,
        Command::Reindex => report::reindex(&cli),
        Command::Db { command } => db::run(&cli, command).map(|()| ExitCode::SUCCESS),
        Command::Key { command } => tlog::key(&cli, command),
        Command::Checkpoint {
            json,
            add_cosigned: None,
        } => tlog::checkpoint(&cli, *json),
        Command::Checkpoint {
            add_cosigned: Some(file),
            ..
        } => tlog::add_cosigned(&cli, file),
        Command::Witness { command } => witness::run(command).await,
        Command::Approvals { command } => report::approvals(&cli, command),
        Command::Approve { id, note } if daemon::Daemon::find(&cli).is_some() => {
            daemon::decide_via(&cli, id, true, note.clone()).await
        }
        Command::Reject { id, note } if daemon::Daemon::find(&cli).is_some() => {
            daemon::decide_via(&cli, id, false, Some(note.clone())).await
        }
        Command::Approve { id, note } => report::decide(&cli, id, true, note.clone()),
        Command::Reject { id, note } => report::decide(&cli, id, false, Some(note.clone())),
        Command::Submit { id, playbook, json } => {
            if let Some(d) = daemon::Daemon::find(&cli) {
                return daemon::submit_via(&cli, &d, id, playbook.as_deref(), *json).await;
            }
            report::submit(&cli, id, playbook.as_deref(), *json).await
        }
        Command::Schedule { command } => schedule::run(&cli, command),
        // Started by the binary (src/main.rs), which owns the signals: the CLI front end
        // does not link the daemon.
        Command::Serve { .. } => Err(exit(2, "clerk serve is started by the clerk binary")),
        Command::Status { json } => daemon::status(&cli, *json).await,
        Command::Queue { command } => daemon::queue(&cli, command).await,
        Command::Stats(args) => stats::run(&cli, args),
        Command::Policy { command } => report::policy(&cli, command),
        Command::Rollback { run, input, json } => {
            report::rollback(&cli, run, &common::parse_pairs(input)?, *json).await
        }
        Command::Replay {
            run,
            playbook,
            offline,
            json,
        } => report::replay(&cli, run, playbook.as_deref(), *offline, *json).await,
        Command::Test {
            playbook,
            samples,
            junit,
            json,
        } => report::test(&cli, playbook, samples, junit.as_deref(), *json).await,
        Command::Pause(args) | Command::Resume(args) => pause::run(&cli, args).await,
        Command::User { command } => user::run(&cli, command),
    }
}

/// `clerk run` while a daemon serves the data directory: the rows become queue jobs.
async fn run_via_daemon(cli: &Cli, d: &daemon::Daemon, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = common::load_config(cli)?;
    let mut playbooks = Vec::new();
    for p in &args.playbooks {
        let pb = load_playbook(cli, p, Some(&config))?;
        if let Some(name) = pb.secret_inputs().next() {
            bail!(exit(
                2,
                format!(
                    "{} takes secret input {name}: clerk serve does not queue secrets; give the \
                     daemon CLERK_SECRET_{} or stop it to run here",
                    p.display(),
                    name.to_ascii_uppercase()
                )
            ));
        }
        // The exact text that was checked above is what the daemon stores and runs.
        let text = String::from_utf8(pb.text.bytes().to_vec())
            .map_err(|_| exit(2, format!("{}: not UTF-8", p.display())))?;
        playbooks.push(text);
    }
    let rows = input_rows(args)?;
    daemon::run_via(
        d,
        playbooks,
        rows,
        d.claimed_user(cli),
        args.case.clone(),
        args.json,
    )
    .await
}

/// The rows of `clerk run`: each row of `--inputs` (or one row), completed by the `-i`
/// values it does not set.
fn input_rows(args: &RunArgs) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
    let mut base = parse_pairs(&args.input)?;
    for (k, v) in parse_pairs(&args.claim)? {
        base.insert(format!("{}{k}", batch::CLAIM_PREFIX), v);
    }
    Ok(match &args.inputs {
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
    })
}
