//! Batches: many runs from a file of input rows, with bounded concurrency and progress.
//!
//! A batch never stops at a failed row: each row × playbook is one run, recorded on its
//! own, and the summary lists what failed and why.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use crate::playbook::Playbook;
use crate::runner::{Engine, EngineError, RunReport, RunRequest, RunStatus};

/// Errors reading an inputs file.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("cannot read inputs file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Row {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: unknown inputs format (use .csv with a header row, or .jsonl with one JSON object per line)")]
    Format { path: String },
}

/// Reads input rows from a CSV (header row names the inputs) or JSONL file.
pub fn read_rows(path: &Path) -> Result<Vec<BTreeMap<String, String>>, BatchError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| BatchError::Read {
        path: p.clone(),
        source,
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    parse_rows(&p, &text, &ext)
}

/// Parses input rows from text: `format` is `csv` (header row names the inputs) or `jsonl`
/// (`ndjson`); `source` names the text in messages (a path or a URL).
pub fn parse_rows(
    source: &str,
    text: &str,
    format: &str,
) -> Result<Vec<BTreeMap<String, String>>, BatchError> {
    let p = source.to_owned();
    match format {
        "csv" => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| BatchError::Row {
                    path: p.clone(),
                    line: 1,
                    message: e.to_string(),
                })?
                .clone();
            let mut rows = Vec::new();
            for (i, rec) in reader.records().enumerate() {
                let rec = rec.map_err(|e| BatchError::Row {
                    path: p.clone(),
                    line: i + 2,
                    message: e.to_string(),
                })?;
                let row: BTreeMap<String, String> = headers
                    .iter()
                    .zip(rec.iter())
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                rows.push(row);
            }
            Ok(rows)
        }
        "jsonl" | "ndjson" => {
            let mut rows = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| BatchError::Row {
                        path: p.clone(),
                        line: i + 1,
                        message: format!("not JSON: {e}"),
                    })?;
                let obj = v.as_object().ok_or_else(|| BatchError::Row {
                    path: p.clone(),
                    line: i + 1,
                    message: "expected a JSON object of input values".into(),
                })?;
                let mut row = BTreeMap::new();
                for (k, v) in obj {
                    let s = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => continue,
                        other => other.to_string(),
                    };
                    row.insert(k.clone(), s);
                }
                rows.push(row);
            }
            Ok(rows)
        }
        _ => Err(BatchError::Format { path: p }),
    }
}

/// How to run a batch.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Runs (browsers) at once.
    pub jobs: usize,
    pub operator: String,
    pub case_ref: Option<String>,
    /// Print progress (a bar on a terminal, lines otherwise).
    pub progress: bool,
    /// Record every run as a replay sample (`RunRequest::sample`).
    pub sample: bool,
}

/// Everything a batch did.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub batch_id: String,
    pub runs: Vec<RunReport>,
    pub ok: usize,
    pub failed: usize,
    pub refused: usize,
    pub session_expired: usize,
    pub drafted: usize,
    /// Not started, or stopped before a step, by the emergency pause.
    pub paused: usize,
    /// Read-only runs whose case claims the page did not confirm.
    pub needs_review: usize,
    pub blocked_requests: usize,
    pub duration_ms: u64,
}

impl BatchReport {
    /// True when every run ended ok (or as a draft).
    pub fn all_ok(&self) -> bool {
        self.failed == 0 && self.refused == 0 && self.session_expired == 0 && self.needs_review == 0
    }
}

/// Prefix of the inputs-file columns (and `--input`-like pairs) that carry case claims:
/// `claim.customer`, `claim.phone`.
pub const CLAIM_PREFIX: &str = "claim.";

/// Splits a row into its inputs and its case claims (`claim.NAME` columns).
pub fn split_claims(
    row: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut inputs = BTreeMap::new();
    let mut claims = BTreeMap::new();
    for (k, v) in row {
        match k.strip_prefix(CLAIM_PREFIX) {
            Some(name) => {
                // An empty cell claims nothing.
                if !v.trim().is_empty() {
                    claims.insert(name.to_owned(), v.clone());
                }
            }
            None => {
                inputs.insert(k.clone(), v.clone());
            }
        }
    }
    (inputs, claims)
}

/// Runs every row with every playbook, `jobs` at a time, in row order in the report.
pub async fn run_batch(
    engine: &Engine,
    playbooks: &[Arc<Playbook>],
    rows: Vec<BTreeMap<String, String>>,
    opts: &BatchOptions,
) -> Result<BatchReport, EngineError> {
    let started = std::time::Instant::now();
    let batch_id = new_batch_id((engine.clock)());
    let mut requests = Vec::new();
    for row in &rows {
        for p in playbooks {
            let (inputs, claims) = split_claims(row);
            requests.push(RunRequest {
                playbook: p.clone(),
                inputs,
                operator: opts.operator.clone(),
                case_ref: opts.case_ref.clone(),
                batch_id: Some(batch_id.clone()),
                approval: None,
                claims,
                replay_of: None,
                rollback_of: None,
                offline: None,
                sample: opts.sample,
            });
        }
    }
    let total = requests.len();
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let jobs = opts.jobs.max(1);
    let mut results: Vec<Option<RunReport>> = vec![None; total];
    let mut stream = futures::stream::iter(
        requests
            .into_iter()
            .enumerate()
            .map(|(i, req)| async move { (i, engine.run(req).await) }),
    )
    .buffer_unordered(jobs);
    let mut done = 0;
    while let Some((i, result)) = stream.next().await {
        let report = result?;
        done += 1;
        let line = format!(
            "[{done}/{total}] {} {} {}{}",
            report.status.as_str(),
            report.playbook,
            report
                .inputs
                .values()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            report
                .error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        if let Some(b) = &bar {
            b.inc(1);
            b.set_message(format!("{} {}", report.status.as_str(), report.playbook));
            if report.status != RunStatus::Ok && report.status != RunStatus::Drafted {
                b.println(line);
            }
        } else if opts.progress {
            eprintln!("{line}");
        }
        results[i] = Some(report);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let runs: Vec<RunReport> = results.into_iter().flatten().collect();
    Ok(summarize(
        batch_id,
        runs,
        started.elapsed().as_millis() as u64,
    ))
}

/// A new batch id (`b-…`, as run ids are made).
pub fn new_batch_id(now: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "b-{}",
        crate::evidence::new_run_id(now).trim_start_matches("r-")
    )
}

/// The batch report of these runs: the one shape `clerk run --json` prints, whether the
/// runs happened in this process or in `clerk serve`.
pub fn summarize(batch_id: String, runs: Vec<RunReport>, duration_ms: u64) -> BatchReport {
    let count = |s: RunStatus| runs.iter().filter(|r| r.status == s).count();
    BatchReport {
        batch_id,
        ok: count(RunStatus::Ok),
        failed: count(RunStatus::Failed),
        refused: count(RunStatus::Refused),
        session_expired: count(RunStatus::SessionExpired),
        drafted: count(RunStatus::Drafted),
        paused: count(RunStatus::Paused),
        needs_review: count(RunStatus::NeedsReview),
        blocked_requests: runs.iter().map(|r| r.blocked()).sum(),
        runs,
        duration_ms,
    }
}

/// A value on one table line: line breaks and tabs shown as `\n`, `\r`, `\t` (the JSON
/// output keeps the value as extracted).
fn one_line(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}

/// A plain-text results table and summary.
pub fn render(report: &BatchReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<22} {:<16} {:<14} {:<10} {}\n",
        "PLAYBOOK", "INPUTS", "STATUS", "BLOCKED", "FIELDS / SCREENSHOTS"
    ));
    for r in &report.runs {
        let inputs = one_line(&r.inputs.values().cloned().collect::<Vec<_>>().join(","));
        let fields = r
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={}", one_line(v)))
            .collect::<Vec<_>>()
            .join(" ");
        let shots = r
            .screenshots
            .iter()
            .map(|s| format!("{}:{}", s.name, &s.sha256[..12.min(s.sha256.len())]))
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!(
            "{:<22} {:<16} {:<14} {:<10} {} {}\n",
            r.playbook,
            inputs,
            r.status.as_str(),
            r.blocked(),
            fields,
            shots
        ));
    }
    out.push_str(&format!(
        "\n{} runs: {} ok, {} failed, {} refused, {} session expired, {} drafted, {} paused; {} requests blocked by the guard ({:.1}s)\n",
        report.runs.len(),
        report.ok,
        report.failed,
        report.refused,
        report.session_expired,
        report.drafted,
        report.paused,
        report.blocked_requests,
        report.duration_ms as f64 / 1000.0
    ));
    if report.needs_review > 0 {
        out.push_str(&format!(
            "{} run(s) need review: the case's claims do not match the page (see `not ok` below)\n",
            report.needs_review
        ));
    }
    let failing: Vec<&RunReport> = report
        .runs
        .iter()
        .filter(|r| !matches!(r.status, RunStatus::Ok | RunStatus::Drafted))
        .collect();
    if !failing.is_empty() {
        out.push_str("\nnot ok:\n");
        for r in failing {
            out.push_str(&format!(
                "  {} {} [{}]: {}\n",
                r.playbook,
                r.inputs.values().cloned().collect::<Vec<_>>().join(","),
                r.run_id.clone().unwrap_or_else(|| "not started".into()),
                one_line(&r.error.clone().unwrap_or_default())
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{RunReport, RunStatus};

    #[test]
    fn a_multi_line_field_stays_on_its_row() {
        let run = RunReport {
            run_id: Some("r-1".into()),
            playbook: "lookup".into(),
            inputs: [("order_id".to_owned(), "SO-1".to_owned())].into(),
            status: RunStatus::Ok,
            error: None,
            fields: [("address".to_owned(), "Line 1\nLine 2\tx".to_owned())].into(),
            screenshots: vec![],
            guard: vec![],
            approval_id: None,
            duration_ms: 1,
            timings: None,
            transient: false,
            browser_lost: false,
            auto_approved_by: None,
            auto_submit: None,
        };
        let text = render(&summarize("b-1".into(), vec![run], 1));
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("lookup")).collect();
        assert_eq!(rows.len(), 1, "{text}");
        assert!(rows[0].contains("address=Line 1\\nLine 2\\tx"), "{text}");
    }
}
