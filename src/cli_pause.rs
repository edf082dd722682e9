//! `clerk pause` and `clerk resume` (direct mode: the store of the data directory, no
//! daemon). Front-end code only; the rules and the records are in [`crate::pause`].

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;

use crate::cli::{current_user, exit, load_config, Cli, Command};
use crate::evidence::Store;
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
    let config = Arc::new(load_config(cli)?);
    let store = Store::open(&cli.data_dir).context("opening the evidence store")?;
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
