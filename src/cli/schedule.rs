//! `clerk schedule add|list|show|pause|resume|remove`: front-end code only; the rules and
//! the records are in [`crate::schedule`].

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;

use crate::cli::args::{Cli, ScheduleAddArgs, ScheduleCommand};
use crate::cli::common::{current_user, exit, load_config};
use crate::evidence::Store;
use crate::schedule::{
    self, local, AddRequest, InputsSpec, InputsView, Schedule, ScheduleError, ScheduleView,
    Schedules, TriggerSpec, TriggerView,
};

fn open_store(cli: &Cli) -> anyhow::Result<Store> {
    crate::cli::common::open_store(cli)
}

fn fail(e: ScheduleError) -> anyhow::Error {
    exit(e.exit_code(), e.to_string())
}

/// Runs a `clerk schedule` subcommand.
pub fn run(cli: &Cli, command: &ScheduleCommand) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    if let Some(d) = super::daemon::Daemon::find(cli) {
        if let Some(code) = via_daemon(cli, &d, command)? {
            return Ok(code);
        }
    }
    match command {
        ScheduleCommand::Add(args) => add(cli, args),
        ScheduleCommand::List { json } => {
            let store = open_store(cli)?;
            let all = Schedules::load(&store).map_err(fail)?;
            let views: Vec<ScheduleView> = all.iter().map(|s| s.view(now)).collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print!("{}", table(&views));
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Show { name, json } => {
            let store = open_store(cli)?;
            let all = Schedules::load(&store).map_err(fail)?;
            let s = all
                .get(name)
                .ok_or_else(|| fail(ScheduleError::Unknown(name.clone())))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&s.view(now))?);
            } else {
                print!("{}", detail(s, &s.view(now)));
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Pause { name, reason } => {
            let store = open_store(cli)?;
            schedule::pause(&store, name, &current_user(cli), reason, now).map_err(fail)?;
            println!("schedule {name} paused: {reason}");
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Resume { name } => {
            let store = open_store(cli)?;
            schedule::resume(&store, name, &current_user(cli), now).map_err(fail)?;
            let next = Schedules::load(&store)
                .ok()
                .and_then(|all| all.get(name).map(|s| s.view(now)))
                .and_then(|v| v.next_firing_local);
            println!(
                "schedule {name} resumed; next firing {}",
                next.as_deref().unwrap_or("none")
            );
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Remove { name } => {
            let store = open_store(cli)?;
            schedule::remove(&store, name, &current_user(cli), now).map_err(fail)?;
            println!("schedule {name} removed");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The state-changing subcommands, sent to a running daemon (`None`: not one of them).
fn via_daemon(
    cli: &Cli,
    d: &super::daemon::Daemon,
    command: &ScheduleCommand,
) -> anyhow::Result<Option<ExitCode>> {
    use serde_json::json;
    let user = d.claimed_user(cli);
    match command {
        ScheduleCommand::Add(args) => {
            d.announce();
            // The daemon opens no file a request names: the playbook file's text and the
            // inputs file's rows are read here, as the caller, and sent.
            let path = std::path::Path::new(&args.playbook);
            let playbook_yaml = if path.is_file() {
                Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                )
            } else {
                None
            };
            let inputs_rows = match args.inputs.as_deref() {
                Some(file) => {
                    let rows = crate::batch::read_rows(file).map_err(|e| exit(2, e.to_string()))?;
                    eprintln!(
                        "clerk: {} rows of {} kept in the schedule (the daemon reads no file; \
                         add the schedule again to change them)",
                        rows.len(),
                        file.display()
                    );
                    Some(rows)
                }
                None => None,
            };
            let v = d.post(
                "/api/schedules",
                json!({
                    "name": args.name, "playbook": args.playbook, "playbook_yaml": playbook_yaml,
                    "cron": args.cron, "tz": args.tz,
                    "every": args.every, "inputs_rows": inputs_rows,
                    "inputs_from_url": args.inputs_from_url, "case_from": args.case_from,
                    "jobs": args.jobs, "user": user,
                }),
            )?;
            println!(
                "schedule {} added; next firing {}",
                v.get("name")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or(""),
                v.get("next_firing_local")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("none")
            );
            Ok(Some(ExitCode::SUCCESS))
        }
        ScheduleCommand::Pause { name, reason } => {
            d.announce();
            d.post(
                &format!("/api/schedules/{name}/pause"),
                json!({ "user": user, "reason": reason }),
            )?;
            println!("schedule {name} paused: {reason}");
            Ok(Some(ExitCode::SUCCESS))
        }
        ScheduleCommand::Resume { name } => {
            d.announce();
            d.post(
                &format!("/api/schedules/{name}/resume"),
                json!({ "user": user }),
            )?;
            println!("schedule {name} resumed");
            Ok(Some(ExitCode::SUCCESS))
        }
        ScheduleCommand::Remove { name } => {
            d.announce();
            d.post(
                &format!("/api/schedules/{name}/remove"),
                json!({ "user": user }),
            )?;
            println!("schedule {name} removed");
            Ok(Some(ExitCode::SUCCESS))
        }
        ScheduleCommand::List { .. } | ScheduleCommand::Show { .. } => Ok(None),
    }
}

fn add(cli: &Cli, args: &ScheduleAddArgs) -> anyhow::Result<ExitCode> {
    let trigger = match (&args.cron, &args.every) {
        (Some(expr), None) => TriggerSpec::Cron {
            expr: expr.clone(),
            tz: args.tz.clone(),
        },
        (None, Some(every)) => TriggerSpec::Every(every.clone()),
        _ => return Err(exit(2, "give exactly one of --cron and --every")),
    };
    let inputs = match (&args.inputs, &args.inputs_from_url) {
        (Some(file), None) => InputsSpec::File(file.clone()),
        (None, Some(url)) => InputsSpec::Url(url.clone()),
        (None, None) => InputsSpec::None,
        _ => {
            return Err(exit(
                2,
                "give at most one of --inputs and --inputs-from-url",
            ))
        }
    };
    let request = AddRequest {
        name: args.name.clone(),
        playbook: args.playbook.clone(),
        trigger,
        inputs,
        case_from: args.case_from.clone(),
        jobs: args.jobs,
        files_allowed: true,
    };
    let config = load_config(cli)?;
    let store = open_store(cli)?;
    let now = Utc::now();
    let s = schedule::add(
        &store,
        &config,
        &cli.data_dir,
        &request,
        &current_user(cli),
        now,
    )
    .map_err(fail)?;
    let view = s.view(now);
    println!(
        "schedule {} added: {} runs {} on channel {}; next firing {}",
        s.name,
        s.trigger.describe(),
        s.playbook_name,
        s.channel,
        view.next_firing_local.as_deref().unwrap_or("none")
    );
    Ok(ExitCode::SUCCESS)
}

fn trigger_text(v: &ScheduleView) -> String {
    match &v.trigger {
        TriggerView::Cron { expr } => format!("cron {expr}"),
        TriggerView::Every { every, .. } => format!("every {every}"),
    }
}

/// The `schedule list` table.
pub fn table(views: &[ScheduleView]) -> String {
    if views.is_empty() {
        return "no schedules (add one with `clerk schedule add`)\n".to_owned();
    }
    let rows: Vec<[String; 7]> = views
        .iter()
        .map(|v| {
            [
                v.name.clone(),
                v.playbook_name.clone(),
                trigger_text(v),
                v.tz.clone().unwrap_or_else(|| "UTC".into()),
                v.next_firing_local.clone().unwrap_or_else(|| "-".into()),
                if v.paused { "yes" } else { "no" }.to_owned(),
                v.last_fired
                    .as_ref()
                    .map(|f| f.slot.clone())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "PLAYBOOK",
        "TRIGGER",
        "TZ",
        "NEXT FIRING",
        "PAUSED",
        "LAST FIRING",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// The `schedule show` text.
pub fn detail(s: &Schedule, v: &ScheduleView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "schedule   {}", v.name);
    let _ = writeln!(
        out,
        "playbook   {} ({}{}, sha256 {} when added)",
        v.playbook_name,
        v.playbook,
        v.playbook_file
            .as_ref()
            .filter(|f| **f != v.playbook)
            .map(|f| format!(" = {f}"))
            .unwrap_or_default(),
        v.playbook_sha256
    );
    let _ = writeln!(out, "channel    {} ({})", v.channel, v.mode);
    let _ = writeln!(out, "trigger    {}", s.trigger.describe());
    let inputs = match &v.inputs {
        InputsView::None => "none (one run per firing)".to_owned(),
        InputsView::File { path } => format!("file {path} (one run per row)"),
        InputsView::Url { url } => format!("url {url} (one run per row)"),
        InputsView::Rows { rows } => format!("{rows} rows kept in the schedule (one run each)"),
    };
    let _ = writeln!(out, "inputs     {inputs}");
    if let Some(c) = &v.case_from {
        let _ = writeln!(out, "case from  input {c}");
    }
    let _ = writeln!(out, "jobs       {}", v.jobs);
    match &v.pause {
        Some(p) => {
            let _ = writeln!(
                out,
                "state      paused by {} at {}: {}",
                p.by, p.at, p.reason
            );
        }
        None => {
            let _ = writeln!(out, "state      active");
        }
    }
    let _ = writeln!(out, "created    by {} at {}", v.created_by, v.created_at);
    let _ = writeln!(
        out,
        "next       {}",
        match (&v.next_firing_local, &v.next_firing) {
            (Some(l), Some(u)) => format!("{l} ({u})"),
            _ => "- (paused)".to_owned(),
        }
    );
    match &v.last_fired {
        Some(f) => {
            let _ = writeln!(
                out,
                "last fired slot {} ({}) at {}, jobs {}{}",
                f.slot,
                parse_local(&f.slot, s),
                f.at,
                f.job_ids
                    .iter()
                    .map(|j| j.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if f.covers > 1 {
                    format!(", covering {} slots", f.covers)
                } else {
                    String::new()
                }
            );
        }
        None => {
            let _ = writeln!(out, "last fired never");
        }
    }
    if let Some(k) = &v.last_skipped {
        let _ = writeln!(
            out,
            "last skipped slot {} at {}: {}",
            k.slot,
            k.at,
            k.reason.as_deref().unwrap_or("")
        );
    }
    if let Some(m) = &v.last_missed {
        let _ = writeln!(
            out,
            "last missed {}{} slots from {} to {} (recorded at {})",
            if m.count_capped { "at least " } else { "" },
            m.count,
            m.first_slot,
            m.slot,
            m.at
        );
    }
    out
}

fn parse_local(slot: &str, s: &Schedule) -> String {
    chrono::DateTime::parse_from_rfc3339(slot)
        .map(|t| local(t.with_timezone(&Utc), s.trigger.tz()))
        .unwrap_or_else(|_| slot.to_owned())
}
