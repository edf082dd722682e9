//! `clerk pause` and `clerk resume` (direct mode: the store of the data directory, no
//! daemon). Front-end code only; the rules and the records are in [`crate::pause`].

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;

use super::args::{Cli, Command};
use super::common::{current_user, exit, load_config};
use crate::pause::{PauseBoard, PauseScope, PauseState};

/// Arguments of `clerk pause` and `clerk resume` (the user is the global `--as`).
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// One channel only (default: everything).
    #[arg(long)]
    pub channel: Option<String>,
    /// Why (recorded in the journal with who and when).
    #[arg(long, required = true)]
    pub reason: String,
    /// Print the pause state as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `clerk pause` or `clerk resume`.
pub async fn run(cli: &Cli, args: &PauseArgs) -> anyhow::Result<ExitCode> {
    let on = matches!(cli.command, Command::Pause(_));
    if let Some(d) = super::daemon::Daemon::find(cli) {
        return via_daemon(cli, &d, args, on).await;
    }
    let config = Arc::new(load_config(cli)?);
    let store = crate::cli::common::open_store(cli)?;
    let board = PauseBoard::open(&store, config, &cli.data_dir)
        .context("reading the pause state from the journal")?;
    let user = current_user(cli);
    let scope = PauseScope::from_channel(args.channel.as_deref());
    let changed = if on {
        board
            .pause(scope.clone(), &user, &args.reason, Utc::now())
            .await
    } else {
        board
            .resume(scope.clone(), &user, &args.reason, Utc::now())
            .await
    }
    .map_err(|e| exit(e.exit_code(), e.to_string()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&changed.state)?);
    } else {
        let verb = if on { "paused" } else { "resumed" };
        println!(
            "{verb} {scope} by {user} at {} (journal record {}): {}",
            changed.at, changed.seq, args.reason
        );
        print!("{}", render(&changed.state));
    }
    if let Some(e) = &changed.file_error {
        eprintln!(
            "warning: recorded, but other clerk processes were not told ({e}); they see it when they next start"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Through a running daemon: it switches the guards of its open browsers at once.
async fn via_daemon(
    cli: &Cli,
    d: &super::daemon::Daemon,
    args: &PauseArgs,
    on: bool,
) -> anyhow::Result<ExitCode> {
    d.announce();
    let user = d.claimed_user(cli);
    let body = serde_json::json!({ "user": user, "reason": args.reason, "channel": args.channel });
    let path = if on { "/api/pause" } else { "/api/resume" };
    let v = super::daemon::daemon_call(d, move |d| d.post(path, body)).await?;
    let state: PauseState =
        serde_json::from_value(v["state"].clone()).context("reading the daemon's answer")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&state)?);
    } else {
        let scope = PauseScope::from_channel(args.channel.as_deref());
        let verb = if on { "paused" } else { "resumed" };
        println!(
            "{verb} {scope} by {user} at {} (journal record {}): {}",
            v["at"].as_str().unwrap_or(""),
            v["seq"].as_u64().unwrap_or(0),
            args.reason
        );
        print!("{}", render(&state));
    }
    Ok(ExitCode::SUCCESS)
}

/// What is paused, by whom, since when (also for `clerk status`).
pub fn render(state: &PauseState) -> String {
    let mut out = String::new();
    if !state.any() {
        out.push_str("nothing is paused\n");
        return out;
    }
    if let Some(g) = &state.global {
        out.push_str(&format!(
            "PAUSED everything: by {} since {}: {}\n",
            g.user, g.since, g.reason
        ));
    }
    for (channel, p) in &state.channels {
        out.push_str(&format!(
            "PAUSED channel {channel}: by {} since {}: {}\n",
            p.user, p.since, p.reason
        ));
    }
    out
}
