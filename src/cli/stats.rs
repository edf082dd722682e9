//! `clerk stats`: front-end code only; the numbers come from [`crate::stats`].

use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::Utc;
use clap::Args;

use super::args::Cli;
use super::common::exit;
use crate::stats::{self, Latency, Numbers, Stats, StatsQuery};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Start of the period: 7d, 24h, 30m, 2w back from now, an RFC 3339 time or a date.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// End of the period (excluded), same forms; default now.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Print the numbers as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `clerk stats`.
pub fn run(cli: &Cli, args: &StatsArgs) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let since = stats::parse_time(&args.since, now).map_err(|e| exit(2, e.to_string()))?;
    let until = match &args.until {
        Some(u) => stats::parse_time(u, now).map_err(|e| exit(2, e.to_string()))?,
        None => now,
    };
    let q = StatsQuery {
        since,
        until,
        channel: args.channel.clone(),
    };
    let store = crate::cli::common::open_store(cli)?;
    let s = stats::compute(&store, &q, now).map_err(|e| match e {
        stats::StatsError::EmptyPeriod { .. } => exit(2, e.to_string()),
        other => anyhow::Error::new(other),
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", table(&s));
    }
    Ok(ExitCode::SUCCESS)
}

fn pct(r: Option<f64>) -> String {
    r.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn secs(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.1}s"),
        Some(s) if s < 7200.0 => format!("{:.1}m", s / 60.0),
        Some(s) if s < 172_800.0 => format!("{:.1}h", s / 3600.0),
        Some(s) => format!("{:.1}d", s / 86400.0),
    }
}

fn lat(l: &Latency) -> String {
    if l.count == 0 {
        return "-".into();
    }
    format!(
        "{} / {} / {}",
        secs(l.median_secs),
        secs(l.p90_secs),
        secs(l.max_secs)
    )
}

/// The table: one row per number, one column per channel, then all channels.
pub fn table(s: &Stats) -> String {
    let mut cols: Vec<(&str, &Numbers)> = s.channels.iter().map(|(c, n)| (c.as_str(), n)).collect();
    if s.channel.is_none() || cols.is_empty() {
        cols.push(("all", &s.overall));
    }
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&Numbers) -> String| {
        rows.push((label.to_owned(), cols.iter().map(|(_, n)| f(n)).collect()));
    };
    row("runs", &|n| n.runs.to_string());
    let mut outcomes: Vec<&String> = s.overall.runs_by_outcome.keys().collect();
    outcomes.sort();
    for o in &outcomes {
        row(&format!("  {o}"), &|n| {
            n.runs_by_outcome.get(*o).copied().unwrap_or(0).to_string()
        });
    }
    row("  of ok: drafts", &|n| n.drafts.to_string());
    row("success rate (ok/finished)", &|n| pct(n.success_rate));
    row("evidence complete", &|n| {
        format!(
            "{}/{} {}",
            n.evidence.complete,
            n.evidence.judged,
            pct(n.evidence.completeness)
        )
    });
    row("blocked requests", &|n| n.blocked_requests.to_string());
    let kinds: Vec<&String> = s.overall.blocked_by_kind.keys().collect();
    for k in &kinds {
        row(&format!("  {k}"), &|n| {
            n.blocked_by_kind.get(*k).copied().unwrap_or(0).to_string()
        });
    }
    row("approvals requested", &|n| {
        n.approvals.requested.to_string()
    });
    row("  decided (approved/rejected)", &|n| {
        format!(
            "{} ({}/{})",
            n.approvals.decided, n.approvals.approved, n.approvals.rejected
        )
    });
    row("  review pass rate", &|n| pct(n.approvals.pass_rate));
    row("  latency med/p90/max", &|n| lat(&n.approvals.latency));
    row("  submitted", &|n| n.approvals.submitted.to_string());
    row("  decided->submitted med/p90/max", &|n| {
        lat(&n.approvals.decided_to_submitted)
    });
    row("  waiting (oldest)", &|n| {
        format!(
            "{} ({})",
            n.approvals.pending,
            secs(n.approvals.oldest_pending_age_secs)
        )
    });
    row("submits refused", &|n| n.submits.refused.to_string());
    row("  mismatched", &|n| n.submits.mismatched.to_string());
    row("  duplicates", &|n| n.submits.duplicates.to_string());
    row("retries", &|n| n.retries.to_string());
    row("dead letters", &|n| n.dead_letters.to_string());
    row("session expiries", &|n| n.session_expiries.to_string());
    row("cases checked", &|n| {
        format!(
            "{} ({} matched, {} conflict, {} unverifiable)",
            n.cases.checked, n.cases.matched, n.cases.conflicts, n.cases.unverifiable
        )
    });
    row("  writes prevented", &|n| {
        n.cases.writes_prevented.to_string()
    });
    row("  decided by people / policies", &|n| {
        format!(
            "{} / {}",
            n.approvals.decided_by_people,
            n.approvals.decided_by_policy.values().sum::<u64>()
        )
    });
    row("approvals expired", &|n| {
        format!(
            "{} ({} of decided + expired)",
            n.approvals.expired,
            pct(n.approvals.expired_rate)
        )
    });
    row("missed scheduled slots", &|n| n.missed_slots.to_string());
    row("replays (not counted above)", &|n| n.replays.to_string());

    let mut out = String::new();
    let _ = writeln!(
        out,
        "clerk stats {} .. {}{}",
        s.since,
        s.until,
        s.channel
            .as_deref()
            .map(|c| format!(" (channel {c})"))
            .unwrap_or_default()
    );
    let label_w = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            rows.iter()
                .map(|(_, v)| v[i].chars().count())
                .chain([name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let _ = write!(out, "{:label_w$}", "");
    for ((name, _), w) in cols.iter().zip(&widths) {
        let _ = write!(out, "  {name:>w$}");
    }
    out.push('\n');
    for (label, values) in &rows {
        let _ = write!(out, "{label:label_w$}");
        for (v, w) in values.iter().zip(&widths) {
            let _ = write!(out, "  {v:>w$}");
        }
        out.push('\n');
    }
    if !s.days.is_empty() {
        out.push('\n');
        let runs: Vec<u64> = s.days.iter().map(|d| d.runs).collect();
        let oks: Vec<u64> = s.days.iter().map(|d| d.ok).collect();
        let _ = writeln!(out, "runs per day  {}", sparkline(&runs, &runs));
        let _ = writeln!(out, "ok per day    {}", sparkline(&oks, &runs));
        let max = runs.iter().copied().max().unwrap_or(0).max(1);
        for d in &s.days {
            let ok = (d.ok * 40).div_ceil(max) as usize;
            let rest = ((d.runs * 40).div_ceil(max) as usize).saturating_sub(ok);
            let _ = writeln!(
                out,
                "{}  {:>4} runs {:>4} ok  {}{}",
                d.date,
                d.runs,
                d.ok,
                "█".repeat(ok),
                "░".repeat(rest)
            );
        }
        let _ = writeln!(out, "(█ ok, ░ other runs)");
    }
    out
}

/// One block character per value, scaled to the maximum of `scale`.
fn sparkline(values: &[u64], scale: &[u64]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = scale.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|v| {
            if *v == 0 || max == 0 {
                ' '
            } else {
                BLOCKS[((v * 8).div_ceil(max) as usize).clamp(1, 8) - 1]
            }
        })
        .collect()
}
