//! Views of runs derived from their records: list rows and the full detail of one run.
//!
//! Run status is never stored as mutable state; it is derived from the records every time:
//! `running` until a `RunFinished` (its `status`: ok / failed / refused / session_expired)
//! or a `RunInterrupted` (`interrupted`); the last of those wins.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;

use super::{Event, Record, StoreError};

/// Which runs `list_runs` returns (all conditions must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub channel: Option<String>,
    pub case_ref: Option<String>,
    /// Runs started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Derived status: running, ok, failed, refused, session_expired, interrupted.
    pub status: Option<String>,
}

/// Parses `--since`: RFC 3339 (`2026-05-01T09:00:00Z`) or a date (`2026-05-01`, midnight UTC).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, StoreError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(StoreError::BadInput(format!(
        "`{text}` is neither an RFC 3339 time (2026-05-01T09:00:00Z) nor a date (2026-05-01)"
    )))
}

/// A record timestamp: RFC 3339 UTC with milliseconds (sorts as text).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One row of `list_runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub playbook: String,
    pub channel: String,
    pub mode: String,
    pub operator: String,
    pub case_ref: Option<String>,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub steps_ok: usize,
    pub steps_failed: usize,
    pub evidence: usize,
    pub blocked: usize,
}

/// One finished step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepView {
    pub seq: u64,
    pub step: u64,
    pub name: String,
    pub kind: String,
    pub outcome: String,
    pub error: Option<String>,
    pub started_at: String,
    pub duration_ms: u64,
    pub fields: BTreeMap<String, String>,
}

/// One screenshot with the record that vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceView {
    pub seq: u64,
    /// Hash of the EvidenceCaptured record (its place in the chain).
    pub record_hash: String,
    pub step: u64,
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    pub width: u64,
    pub height: u64,
    pub blank: bool,
    pub url: String,
    pub title: String,
    pub captured_at: String,
    pub masks: Vec<String>,
    /// Where the PNG is (absolute in a store, relative in an export bundle).
    pub path: String,
}

/// A request the network guard failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedView {
    pub seq: u64,
    pub step: Option<u64>,
    pub method: String,
    pub url: String,
    pub resource_type: String,
    pub frame: String,
    pub target: String,
    pub reason: String,
}

/// A write the guard let through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowedView {
    pub seq: u64,
    pub step: Option<u64>,
    pub method: String,
    pub url: String,
    pub reason: String,
}

/// Everything about one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunDetail {
    pub summary: RunSummary,
    pub playbook_version: String,
    pub playbook_sha256: String,
    pub batch_id: Option<String>,
    pub approval_id: Option<String>,
    pub owner: String,
    pub inputs: BTreeMap<String, String>,
    pub steps: Vec<StepView>,
    pub evidence: Vec<EvidenceView>,
    pub blocked: Vec<BlockedView>,
    pub allowed: Vec<AllowedView>,
    /// The run's own records, in seq order.
    pub records: Vec<Record>,
    /// Approval records (requested / decided / used / refused) about approvals this run
    /// requested or used, in seq order.
    pub approvals: Vec<Record>,
    /// Why the run failed or was interrupted.
    pub error: Option<String>,
    /// Extracted fields: the final set if the run finished, else what the steps extracted.
    pub fields: BTreeMap<String, String>,
    /// The browser the run used (from `run_finished`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<super::BrowserIdentity>,
    /// The case's claims (`run_started`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// The case check (`case_checked`): its verdict and one check per `match:` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<CaseCheckView>,
    /// The recorded run this run replays (`clerk replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// The submitted run this run compensates (`clerk rollback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
}

/// A run's case check, as pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseCheckView {
    pub seq: u64,
    /// `matched`, `conflict` or `unverifiable`.
    pub verdict: String,
    pub checks: Vec<crate::case::Check>,
}

/// Approval ids a run's records mention.
pub fn approvals_mentioned(records: &[Record]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for r in records {
        let id = match &r.event {
            Event::RunStarted { approval_id, .. } | Event::Refused { approval_id, .. } => {
                approval_id.as_deref()
            }
            Event::ApprovalRequested { approval_id, .. }
            | Event::ApprovalUsed { approval_id, .. } => Some(approval_id.as_str()),
            _ => None,
        };
        if let Some(id) = id {
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_owned());
            }
        }
    }
    ids
}

/// Builds the detail of a run from its records (seq order). `None` without a RunStarted.
/// `path_of` maps a PNG hash to the path shown for it.
pub fn build_detail(
    records: Vec<Record>,
    approvals: Vec<Record>,
    path_of: &dyn Fn(&str) -> String,
) -> Option<RunDetail> {
    let start = records.iter().find_map(|r| match &r.event {
        Event::RunStarted {
            run_id,
            playbook,
            playbook_version,
            playbook_sha256,
            channel,
            mode,
            operator,
            case_ref,
            inputs,
            batch_id,
            approval_id,
            owner,
            claims,
            replay_of,
            rollback_of,
        } => Some((
            r.ts.clone(),
            run_id,
            playbook,
            playbook_version,
            playbook_sha256,
            channel,
            mode,
            operator,
            case_ref,
            inputs,
            batch_id,
            approval_id,
            owner,
            (claims, replay_of, rollback_of),
        )),
        _ => None,
    })?;
    let (
        started_at,
        run_id,
        playbook,
        version,
        pb_sha,
        channel,
        mode,
        operator,
        case_ref,
        inputs,
        batch_id,
        approval_id,
        owner,
        (claims, replay_of, rollback_of),
    ) = start;
    let mut d = RunDetail {
        summary: RunSummary {
            run_id: run_id.clone(),
            playbook: playbook.clone(),
            channel: channel.clone(),
            mode: mode.clone(),
            operator: operator.clone(),
            case_ref: case_ref.clone(),
            status: "running".to_owned(),
            started_at,
            finished_at: None,
            steps_ok: 0,
            steps_failed: 0,
            evidence: 0,
            blocked: 0,
        },
        playbook_version: version.clone(),
        playbook_sha256: pb_sha.clone(),
        batch_id: batch_id.clone(),
        approval_id: approval_id.clone(),
        owner: owner.clone(),
        inputs: inputs.clone(),
        steps: Vec::new(),
        evidence: Vec::new(),
        blocked: Vec::new(),
        allowed: Vec::new(),
        records: Vec::new(),
        approvals,
        error: None,
        fields: BTreeMap::new(),
        browser: None,
        claims: claims.clone(),
        case: None,
        replay_of: replay_of.clone(),
        rollback_of: rollback_of.clone(),
    };
    let mut final_fields = None;
    for r in &records {
        match &r.event {
            Event::StepFinished {
                step,
                name,
                kind,
                outcome,
                error,
                started_at,
                duration_ms,
                fields,
                ..
            } => {
                if outcome == "ok" {
                    d.summary.steps_ok += 1;
                } else {
                    d.summary.steps_failed += 1;
                }
                d.fields
                    .extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                d.steps.push(StepView {
                    seq: r.seq,
                    step: *step,
                    name: name.clone(),
                    kind: kind.clone(),
                    outcome: outcome.clone(),
                    error: error.clone(),
                    started_at: started_at.clone(),
                    duration_ms: *duration_ms,
                    fields: fields.clone(),
                });
            }
            Event::EvidenceCaptured {
                step,
                name,
                sha256,
                bytes,
                width,
                height,
                blank,
                url,
                title,
                captured_at,
                masks,
                ..
            } => {
                d.evidence.push(EvidenceView {
                    seq: r.seq,
                    record_hash: r.hash.clone(),
                    step: *step,
                    name: name.clone(),
                    sha256: sha256.clone(),
                    bytes: *bytes,
                    width: *width,
                    height: *height,
                    blank: *blank,
                    url: url.clone(),
                    title: title.clone(),
                    captured_at: captured_at.clone(),
                    masks: masks.clone(),
                    path: path_of(sha256),
                });
            }
            Event::RequestBlocked {
                step,
                method,
                url,
                resource_type,
                frame,
                target,
                reason,
                ..
            } => {
                d.blocked.push(BlockedView {
                    seq: r.seq,
                    step: *step,
                    method: method.clone(),
                    url: url.clone(),
                    resource_type: resource_type.clone(),
                    frame: frame.clone(),
                    target: target.clone(),
                    reason: reason.clone(),
                });
            }
            Event::CaseChecked {
                verdict, checks, ..
            } => {
                d.case = Some(CaseCheckView {
                    seq: r.seq,
                    verdict: verdict.clone(),
                    checks: checks.clone(),
                });
            }
            Event::RequestAllowed {
                step,
                method,
                url,
                reason,
                ..
            } => {
                d.allowed.push(AllowedView {
                    seq: r.seq,
                    step: *step,
                    method: method.clone(),
                    url: url.clone(),
                    reason: reason.clone(),
                });
            }
            Event::RunFinished {
                status,
                error,
                fields,
                finished_at,
                browser,
                ..
            } => {
                d.browser = browser.clone();
                d.summary.status = status.clone();
                d.summary.finished_at = Some(finished_at.clone());
                d.error = error.clone();
                final_fields = Some(fields.clone());
            }
            Event::RunInterrupted { reason, .. } => {
                d.summary.status = "interrupted".to_owned();
                d.summary.finished_at = Some(r.ts.clone());
                d.error = Some(reason.clone());
            }
            _ => {}
        }
    }
    if let Some(fields) = final_fields {
        d.fields = fields;
    }
    d.summary.evidence = d.evidence.len();
    d.summary.blocked = d.blocked.len();
    d.records = records;
    Some(d)
}

/// Rows of `list_runs` printed as a table.
pub struct RunTable<'a>(pub &'a [RunSummary]);

impl fmt::Display for RunTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "no runs");
        }
        writeln!(
            f,
            "{:<28} {:<15} {:<24} {:<14} {:<24} {:<14} {:>9} {:>8} {:>7}",
            "RUN",
            "STATUS",
            "STARTED",
            "CHANNEL",
            "PLAYBOOK",
            "CASE",
            "STEPS",
            "EVIDENCE",
            "BLOCKED"
        )?;
        for r in self.0 {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps = format!("{}ok/{}x", self.steps_ok, self.steps_failed);
        write!(
            f,
            "{:<28} {:<15} {:<24} {:<14} {:<24} {:<14} {:>9} {:>8} {:>7}",
            self.run_id,
            self.status,
            self.started_at,
            self.channel,
            self.playbook,
            self.case_ref.as_deref().unwrap_or("-"),
            steps,
            self.evidence,
            self.blocked
        )
    }
}

fn fields_line(fields: &BTreeMap<String, String>) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for RunDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        writeln!(f, "run {}  [{}]", s.run_id, s.status)?;
        writeln!(
            f,
            "  playbook {} {} (sha256 {})",
            s.playbook, self.playbook_version, self.playbook_sha256
        )?;
        writeln!(
            f,
            "  channel {}  mode {}  operator {}  case {}",
            s.channel,
            s.mode,
            s.operator,
            s.case_ref.as_deref().unwrap_or("-")
        )?;
        writeln!(
            f,
            "  started {}  finished {}",
            s.started_at,
            s.finished_at.as_deref().unwrap_or("-")
        )?;
        if let Some(b) = &self.batch_id {
            writeln!(f, "  batch {b}")?;
        }
        if let Some(b) = &self.browser {
            writeln!(
                f,
                "  browser {} ({}, CDP {})",
                b.endpoint, b.product, b.protocol
            )?;
        }
        if let Some(a) = &self.approval_id {
            writeln!(f, "  executes approval {a}")?;
        }
        if !self.inputs.is_empty() {
            writeln!(f, "  inputs: {}", fields_line(&self.inputs))?;
        }
        // Records number steps from 0; people count from 1, as the default step names do.
        writeln!(f, "steps ({} ok, {} not ok):", s.steps_ok, s.steps_failed)?;
        for st in &self.steps {
            writeln!(
                f,
                "  {}. {} ({}) {} in {} ms at {}{}",
                st.step + 1,
                st.name,
                st.kind,
                st.outcome,
                st.duration_ms,
                st.started_at,
                st.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )?;
            if !st.fields.is_empty() {
                writeln!(f, "      fields: {}", fields_line(&st.fields))?;
            }
        }
        writeln!(f, "evidence ({}):", self.evidence.len())?;
        for e in &self.evidence {
            writeln!(
                f,
                "  step {} {}: {}x{} {} bytes{} sha256 {} (record seq {})\n      {}",
                e.step + 1,
                e.name,
                e.width,
                e.height,
                e.bytes,
                if e.blank { " BLANK" } else { "" },
                e.sha256,
                e.seq,
                e.path
            )?;
        }
        if !self.blocked.is_empty() {
            writeln!(f, "blocked requests ({}):", self.blocked.len())?;
            for b in &self.blocked {
                writeln!(
                    f,
                    "  step {} {} {} ({} from {} {}): {}",
                    b.step
                        .map(|s| (s + 1).to_string())
                        .unwrap_or_else(|| "-".into()),
                    b.method,
                    b.url,
                    b.resource_type,
                    b.target,
                    b.frame,
                    b.reason
                )?;
            }
        }
        if !self.allowed.is_empty() {
            writeln!(f, "allowed writes ({}):", self.allowed.len())?;
            for a in &self.allowed {
                writeln!(f, "  {} {}: {}", a.method, a.url, a.reason)?;
            }
        }
        if !self.approvals.is_empty() {
            writeln!(f, "approvals:")?;
            for r in &self.approvals {
                writeln!(
                    f,
                    "  seq {} {} {}",
                    r.seq,
                    r.ts,
                    describe_approval(&r.event)
                )?;
            }
        }
        if let Some(e) = &self.error {
            writeln!(f, "error: {e}")?;
        }
        if !self.fields.is_empty() {
            writeln!(f, "fields: {}", fields_line(&self.fields))?;
        }
        Ok(())
    }
}

fn describe_approval(e: &Event) -> String {
    match e {
        Event::ApprovalRequested {
            approval_id,
            requester,
            draft_hash,
            expires_at,
            ..
        } => {
            format!(
                "requested {approval_id} by {requester} (draft {draft_hash}, expires {expires_at})"
            )
        }
        Event::ApprovalDecided {
            approval_id,
            decision,
            reviewer,
            note,
            ..
        } => format!(
            "{decision} {approval_id} by {reviewer}{}",
            note.as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        ),
        Event::ApprovalUsed {
            approval_id,
            run_id,
            ..
        } => format!("used {approval_id} by run {run_id}"),
        Event::Refused {
            action,
            user,
            reason,
            ..
        } => format!("refused {action} for {user}: {reason}"),
        other => other.type_name().to_owned(),
    }
}
