//! Helpers every CLI handler shares: exit codes, the acting user, the config, the engine.
//!
//! Exit codes: 0 success; 1 a run failed or verification found a problem; 2 invalid
//! input (playbook, config, inputs file, usage); 3 refused (authorization, approvals);
//! 4 a channel's session is missing or expired.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::browser::LaunchOptions;
use crate::channel::Config;
use crate::cli::args::Cli;
use crate::evidence::Store;
use crate::playbook::{self, Playbook};
use crate::runner::{Engine, RunStatus};

/// An error with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

/// An error that makes the process exit with `code`.
pub fn exit(code: u8, message: impl Into<String>) -> anyhow::Error {
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

pub fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| cli.data_dir.join("clerk.toml"))
}

pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Config::load(&config_path(cli)).map_err(|e| exit(2, e.to_string()))
}

/// The log key of this data directory (created at first start), per `[log]` of `config`.
pub fn log_key(
    data_dir: &Path,
    settings: &crate::channel::LogSettings,
) -> anyhow::Result<(
    crate::evidence::tlog::LogKey,
    crate::evidence::tlog::KeyOpened,
)> {
    let (data_dir, path, origin) = key_location(data_dir, settings);
    crate::evidence::tlog::LogKey::open(&path, &data_dir, &origin)
        .map_err(|e| exit(2, e.to_string()))
}

/// The canonical data directory, the log key's file and the origin a new key gets, per
/// `[log]` (defaults: `<data dir>.log-key` beside it, `clerk.<host>/<dir name>`).
pub fn key_location(
    data_dir: &Path,
    settings: &crate::channel::LogSettings,
) -> (PathBuf, PathBuf, String) {
    use crate::evidence::tlog;
    let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let path = settings
        .key_file
        .clone()
        .unwrap_or_else(|| tlog::default_key_path(&data_dir));
    let origin = settings
        .origin
        .clone()
        .unwrap_or_else(|| tlog::default_origin(&data_dir));
    (data_dir, path, origin)
}

/// Attaches the log key to `store`, so that exports sign a checkpoint and carry proofs.
pub fn attach_log_key(store: &Store, settings: &crate::channel::LogSettings) -> anyhow::Result<()> {
    let (key, opened) = log_key(store.data_dir(), settings)?;
    if opened == crate::evidence::tlog::KeyOpened::Created {
        eprintln!(
            "created the log key {} (mode 0600; keep it out of backups of the data directory)\n  public key: {}",
            key.path().display(),
            key.verifier_key()
        );
    }
    store.set_log_key(key);
    let witnesses = settings
        .witnesses
        .iter()
        .filter_map(|w| crate::evidence::note::NoteVerifier::parse(w).ok())
        .collect();
    store.set_witnesses(witnesses, settings.witness_quorum);
    Ok(())
}

/// The `[log]` settings of the config, or the defaults when there is no config file.
pub fn log_settings(cli: &Cli) -> anyhow::Result<crate::channel::LogSettings> {
    if config_path(cli).exists() {
        Ok(load_config(cli)?.log)
    } else {
        Ok(crate::channel::LogSettings::default())
    }
}

/// Opens the evidence store of the data directory: with `[cluster] journal = "database"`,
/// as this node's copy of the shared journal in the cluster database.
pub fn open_store(cli: &Cli) -> anyhow::Result<Store> {
    let config = if config_path(cli).exists() {
        Some(load_config(cli)?)
    } else {
        None
    };
    open_store_with(cli, config.as_ref())
}

/// [`open_store`] with the configuration already loaded.
pub fn open_store_with(cli: &Cli, config: Option<&Config>) -> anyhow::Result<Store> {
    let shared: Option<Arc<dyn crate::evidence::shared::SharedJournal>> =
        match config.and_then(|c| c.cluster.shared_journal().map(|url| (c, url))) {
            Some((c, url)) => Some(Arc::new(
                crate::db::journal::PgJournal::open(url, &c.cluster.node_name())
                    .map_err(|e| exit(2, format!("the shared journal: {e}")))?,
            )),
            None => None,
        };
    Store::open_with(&cli.data_dir, shared).context("opening the evidence store")
}

/// Opens the store and the engine for commands that run browsers or decide approvals.
pub fn engine(cli: &Cli) -> anyhow::Result<Engine> {
    let config = load_config(cli)?;
    let store = open_store_with(cli, Some(&config))?;
    attach_log_key(&store, &config.log)?;
    if let Err(e) = crate::evidence::blob::open(config.cluster.evidence_store()) {
        return Err(exit(2, e.to_string()));
    }
    let launch =
        LaunchOptions::for_remote(config.browsers.clone()).map_err(|e| exit(2, e.to_string()))?;
    Ok(Engine::new(cli.data_dir.clone(), config, store, launch))
}

/// Loads the playbook a command names: a file, or, when no such file exists and the
/// argument is a plain name (`order-lookup`), `DATA/playbooks/NAME.yaml`, else the copy
/// compiled into clerk (as the API and schedules resolve names). The error says every
/// place that was searched.
pub fn load_playbook(
    cli: &Cli,
    path: &Path,
    config: Option<&Config>,
) -> anyhow::Result<Arc<Playbook>> {
    let name = path.to_str().filter(|n| {
        playbook::embedded::is_playbook_name(n) && !n.ends_with(".yaml") && !n.ends_with(".yml")
    });
    match name {
        Some(name) if !path.exists() => {
            playbook::embedded::find_playbook(&cli.data_dir, name, config)
                .map(Arc::new)
                .map_err(|d| {
                    let cwd = std::env::current_dir()
                        .map(|c| c.display().to_string())
                        .unwrap_or_else(|_| "the current directory".into());
                    exit(
                        2,
                        format!(
                            "playbook `{name}`: no file `{name}` in {cwd}, no {} and no playbook of that name compiled into clerk ({}): {d}",
                            cli.data_dir.join("playbooks").join(format!("{name}.yaml")).display(),
                            playbook::embedded::EMBEDDED
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })
        }
        _ => playbook::load(path, config)
            .map(Arc::new)
            .map_err(|d| exit(2, d.to_string())),
    }
}

/// Parses `NAME=VALUE` pairs.
pub fn parse_pairs(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
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
pub fn status_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Ok | RunStatus::Drafted => 0,
        RunStatus::Failed => 1,
        RunStatus::Refused => 3,
        RunStatus::SessionExpired => 4,
        RunStatus::Paused => 5,
        RunStatus::NeedsReview => 6,
    }
}

/// What `clerk submit` prints (with or without a daemon); the exit code is the run's.
pub fn print_submit(
    id: &str,
    report: &crate::runner::RunReport,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        match report.status {
            crate::runner::RunStatus::Ok => {
                println!(
                    "submitted {id} in run {}",
                    report.run_id.clone().unwrap_or_default()
                );
                for s in &report.screenshots {
                    println!("  {} {} {}", s.name, s.sha256, s.path.display());
                }
            }
            _ => eprintln!(
                "not submitted ({}): {}",
                report.status.as_str(),
                report.error.clone().unwrap_or_default()
            ),
        }
    }
    Ok(std::process::ExitCode::from(status_code(report.status)))
}

/// The caller's API token: `CLERK_TOKEN`, else the file `CLERK_TOKEN_FILE` names, else
/// `~/.config/clerk/token` if it exists.
pub fn user_token() -> Option<String> {
    let from_file =
        |p: std::path::PathBuf| std::fs::read_to_string(p).ok().map(|t| t.trim().to_owned());
    std::env::var("CLERK_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .or_else(|| std::env::var_os("CLERK_TOKEN_FILE").and_then(|p| from_file(p.into())))
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(|h| from_file(std::path::Path::new(&h).join(".config/clerk/token")))
        })
        .filter(|t| !t.is_empty())
}
