//! What the console's pages show, as data: built once here, rendered as HTML by the console
//! and returned as JSON by the API, so both always say the same thing.

use serde::Serialize;

use crate::evidence::{Event, Record, RunFilter, RunSummary, Store, StoreError};

/// Everything recorded about one case reference, in journal order.
#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    pub case_ref: String,
    /// The case's runs, oldest first.
    pub runs: Vec<RunSummary>,
    /// Runs, screenshots and approvals of the case, in journal (time) order.
    pub events: Vec<CaseEvent>,
}

/// One line of a case's history.
#[derive(Debug, Clone, Serialize)]
pub struct CaseEvent {
    pub seq: u64,
    /// The record's time (the store's clock).
    pub ts: String,
    /// `run_started`, `run_finished`, `run_interrupted`, `screenshot`, `request_blocked`,
    /// `approval_requested`, `approval_decided`, `approval_used`, `refused`.
    pub kind: String,
    pub text: String,
    pub run_id: Option<String>,
    pub approval_id: Option<String>,
    /// For a screenshot: its name and SHA-256.
    pub screenshot: Option<(String, String)>,
}

/// The case's history; `None` when no run carries that case reference.
pub fn case(store: &Store, case_ref: &str) -> Result<Option<CaseView>, StoreError> {
    let runs = store.list_runs(&RunFilter {
        case_ref: Some(case_ref.to_owned()),
        ..RunFilter::default()
    })?;
    if runs.is_empty() {
        return Ok(None);
    }
    let mut records: Vec<Record> = Vec::new();
    for r in &runs {
        if let Some(detail) = store.run(&r.run_id)? {
            records.extend(detail.records);
            records.extend(detail.approvals);
        }
    }
    records.sort_by_key(|r| r.seq);
    records.dedup_by_key(|r| r.seq);
    let events = records.iter().filter_map(case_event).collect();
    Ok(Some(CaseView {
        case_ref: case_ref.to_owned(),
        runs,
        events,
    }))
}

fn case_event(r: &Record) -> Option<CaseEvent> {
    let mut e = CaseEvent {
        seq: r.seq,
        ts: r.ts.clone(),
        kind: String::new(),
        text: String::new(),
        run_id: None,
        approval_id: None,
        screenshot: None,
    };
    match &r.event {
        Event::RunStarted {
            run_id,
            playbook,
            mode,
            operator,
            channel,
            rollback_of,
            replay_of,
            ..
        } => {
            e.kind = "run_started".into();
            e.text = format!("{playbook} ({mode}) on {channel} started by {operator}");
            if let Some(of) = rollback_of {
                e.text.push_str(&format!(", rolling back run {of}"));
            }
            if let Some(of) = replay_of {
                e.text.push_str(&format!(", replaying run {of}"));
            }
            e.run_id = Some(run_id.clone());
        }
        Event::CaseChecked {
            run_id,
            verdict,
            checks,
            ..
        } => {
            e.kind = "case_checked".into();
            let bad: Vec<String> = checks
                .iter()
                .filter(|c| {
                    matches!(
                        c.verdict,
                        crate::case::Verdict::Conflict | crate::case::Verdict::Unverifiable
                    )
                })
                .map(crate::case::Check::describe)
                .collect();
            e.text = if bad.is_empty() {
                format!("case {verdict}")
            } else {
                format!("case {verdict}: {}", bad.join("; "))
            };
            e.run_id = Some(run_id.clone());
        }
        Event::RunFinished {
            run_id,
            status,
            error,
            ..
        } => {
            e.kind = "run_finished".into();
            e.text = match error {
                Some(err) => format!("finished {status}: {err}"),
                None => format!("finished {status}"),
            };
            e.run_id = Some(run_id.clone());
        }
        Event::RunInterrupted { run_id, reason } => {
            e.kind = "run_interrupted".into();
            e.text = format!("interrupted: {reason}");
            e.run_id = Some(run_id.clone());
        }
        Event::EvidenceCaptured {
            run_id,
            name,
            sha256,
            width,
            height,
            ..
        } => {
            e.kind = "screenshot".into();
            e.text = format!("screenshot {name} ({width}×{height})");
            e.run_id = Some(run_id.clone());
            e.screenshot = Some((name.clone(), sha256.clone()));
        }
        Event::RequestBlocked {
            run_id,
            method,
            url,
            ..
        } => {
            e.kind = "request_blocked".into();
            e.text = format!("blocked {method} {url}");
            e.run_id = Some(run_id.clone());
        }
        Event::ApprovalRequested {
            approval_id,
            run_id,
            requester,
            expires_at,
            ..
        } => {
            e.kind = "approval_requested".into();
            e.text = format!("approval requested by {requester}, expires {expires_at}");
            e.run_id = Some(run_id.clone());
            e.approval_id = Some(approval_id.clone());
        }
        Event::ApprovalDecided {
            approval_id,
            decision,
            reviewer,
            note,
            ..
        } => {
            e.kind = "approval_decided".into();
            e.text = match note {
                Some(n) => format!("{decision} by {reviewer}: {n}"),
                None => format!("{decision} by {reviewer}"),
            };
            e.approval_id = Some(approval_id.clone());
        }
        Event::ApprovalUsed {
            approval_id,
            run_id,
            ..
        } => {
            e.kind = "approval_used".into();
            e.text = format!("used by submit run {run_id}");
            e.run_id = Some(run_id.clone());
            e.approval_id = Some(approval_id.clone());
        }
        Event::Refused {
            action,
            approval_id,
            run_id,
            user,
            reason,
            ..
        } => {
            e.kind = "refused".into();
            e.text = format!("{action} by {user} refused: {reason}");
            e.run_id = run_id.clone();
            e.approval_id = approval_id.clone();
        }
        _ => return None,
    }
    Some(e)
}

/// The case's auditor bundle (as `clerk export --case` writes it) as a tar archive under
/// the folder `case-<ref>/`. With `by`, the export is recorded (a checkpoint naming who
/// exported); without, it is a read-only copy that changes nothing (a GET).
pub fn case_bundle(store: &Store, case_ref: &str, by: Option<&str>) -> Result<Vec<u8>, StoreError> {
    let tmp = tempfile::Builder::new()
        .prefix("clerk-bundle-")
        .tempdir()
        .map_err(|source| StoreError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let dir = tmp.path().join("bundle");
    crate::evidence::export::export_by(
        store,
        &crate::evidence::verify::Scope::Case(case_ref.to_owned()),
        &dir,
        by,
    )?;
    crate::evidence::export::tar_bundle(
        &dir,
        &format!("case-{case_ref}"),
        chrono::Utc::now().timestamp(),
    )
}

/// What the approvals pages filter by (empty: any).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ApprovalFilter {
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub playbook: String,
    #[serde(default)]
    pub case: String,
}

/// Approvals matching `f`: pending first, then oldest first.
pub fn approvals(
    engine: &crate::runner::Engine,
    f: &ApprovalFilter,
) -> Result<Vec<crate::approval::Approval>, crate::approval::ApprovalError> {
    use crate::approval::ApprovalState;
    let mut all = crate::approval::list(engine, false, None)?;
    let keep = |want: &str, have: &str| want.trim().is_empty() || want.trim() == have;
    all.retain(|x| {
        keep(&f.channel, &x.request.content.channel)
            && keep(&f.playbook, &x.request.content.playbook)
            && keep(&f.case, x.request.case_ref.as_deref().unwrap_or(""))
    });
    all.sort_by(|x, y| {
        (x.state != ApprovalState::Pending, &x.request.created_at)
            .cmp(&(y.state != ApprovalState::Pending, &y.request.created_at))
    });
    Ok(all)
}

/// What the runs pages filter by (empty: any; `since` a date or RFC 3339 time).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RunsFilter {
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub playbook: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub case: String,
    #[serde(default)]
    pub since: String,
}

fn some(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Runs matching `f`, oldest first.
pub fn runs(store: &Store, f: &RunsFilter) -> Result<Vec<RunSummary>, StoreError> {
    let since = match some(&f.since) {
        Some(t) => Some(crate::evidence::parse_since(&t)?),
        None => None,
    };
    let mut rows = store.list_runs(&RunFilter {
        channel: some(&f.channel),
        case_ref: some(&f.case),
        since,
        status: some(&f.status),
    })?;
    if let Some(p) = some(&f.playbook) {
        rows.retain(|r| r.playbook == p);
    }
    Ok(rows)
}

/// A case waiting for a person: a run whose case claims the page did not confirm (a lookup
/// that ended `needs_review`, a draft refused before anything was filled).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReviewItem {
    pub run: RunSummary,
    /// `conflict` or `unverifiable`.
    pub verdict: String,
    pub checks: Vec<crate::case::Check>,
    /// The run's last screenshot (what the page showed), if it took one.
    pub screenshot: Option<(String, String)>,
    pub error: Option<String>,
}

/// Every case to review, newest first.
pub fn reviews(store: &Store) -> Result<Vec<ReviewItem>, StoreError> {
    let mut out = Vec::new();
    for status in ["needs_review", "refused"] {
        let rows = store.list_runs(&RunFilter {
            status: Some(status.to_owned()),
            ..RunFilter::default()
        })?;
        for row in rows {
            let Some(d) = store.run(&row.run_id)? else {
                continue;
            };
            let Some(case) = d.case.filter(|c| c.verdict != "matched") else {
                continue;
            };
            out.push(ReviewItem {
                screenshot: d
                    .evidence
                    .last()
                    .map(|e| (e.name.clone(), e.sha256.clone())),
                error: d.error.clone(),
                run: d.summary,
                verdict: case.verdict,
                checks: case.checks,
            });
        }
    }
    out.sort_by(|a, b| b.run.started_at.cmp(&a.run.started_at));
    Ok(out)
}
