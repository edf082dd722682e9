//! Rollback: the compensating action of a submitted write, drafted through the same ladder.
//!
//! A submit playbook names its compensating playbook (`undo: { playbook: refund-cancel,
//! inputs: { refund_id: field.refund_id } }`). [`plan`] turns a submitted run into the
//! request of that playbook's draft: its inputs taken from the run's inputs and extracted
//! fields, the same case reference and claims, and `rollback_of` naming the run, so the
//! journal links the two. The draft then goes through approval and submit like any other
//! write: a rollback is never sent without a reviewer.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::evidence::{Event, Store};
use crate::playbook::{Playbook, UndoSource, SECRET};
use crate::runner::{Engine, RunRequest};

/// Why a run cannot be rolled back.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("no run {0} in the journal (`clerk runs list` shows the runs)")]
    NoSuchRun(String),
    #[error(
        "run {run} is not a completed submit ({what}); only a write that was sent is rolled back"
    )]
    NotASubmit { run: String, what: String },
    #[error("playbook {playbook} of run {run} names no compensating playbook (`undo:`)")]
    NoUndo { run: String, playbook: String },
    #[error("run {run} is already being rolled back by run {by} ({status})")]
    AlreadyRolledBack {
        run: String,
        by: String,
        status: String,
    },
    #[error("the playbook of run {run}: {why}")]
    Playbook { run: String, why: String },
    #[error("input {input} of {undo} comes from {source_name} of run {run}, which {why}")]
    MissingValue {
        run: String,
        undo: String,
        input: String,
        source_name: String,
        why: String,
    },
    #[error(transparent)]
    Store(#[from] crate::evidence::StoreError),
}

/// A rollback ready to draft: the compensating playbook and its request.
#[derive(Debug, Clone)]
pub struct Plan {
    pub playbook: Arc<Playbook>,
    pub request: RunRequest,
}

/// The run (if any) that already rolls back `run_id` and has not failed: a second rollback
/// of one write is refused.
fn existing_rollback(
    store: &Store,
    run_id: &str,
) -> Result<Option<(String, String)>, crate::evidence::StoreError> {
    let mut found = None;
    for r in store.records()? {
        if let Event::RunStarted {
            run_id: id,
            rollback_of: Some(of),
            ..
        } = &r.event
        {
            if of == run_id {
                found = Some(id.clone());
            }
        }
    }
    let Some(id) = found else {
        return Ok(None);
    };
    let status = store
        .run(&id)?
        .map(|d| d.summary.status)
        .unwrap_or_else(|| "unknown".into());
    Ok(match status.as_str() {
        "failed" | "refused" | "paused" | "session_expired" | "interrupted" => None,
        _ => Some((id, status)),
    })
}

/// Plans the rollback of `run_id` as `operator`, with `extra` inputs for the compensating
/// playbook (e.g. a cancellation reason). Blocking: reads the journal.
pub fn plan(
    engine: &Engine,
    run_id: &str,
    operator: &str,
    extra: &BTreeMap<String, String>,
) -> Result<Plan, RollbackError> {
    let store = &engine.store;
    let d = store
        .run(run_id)?
        .ok_or_else(|| RollbackError::NoSuchRun(run_id.to_owned()))?;
    let sent = d.summary.mode == "submit" && d.summary.status == "ok" && d.approval_id.is_some();
    if !sent {
        return Err(RollbackError::NotASubmit {
            run: run_id.to_owned(),
            what: format!("a {} run that ended {}", d.summary.mode, d.summary.status),
        });
    }
    let submitted =
        engine
            .stored_playbook(&d.playbook_sha256)
            .map_err(|e| RollbackError::Playbook {
                run: run_id.to_owned(),
                why: e.to_string(),
            })?;
    let undo = submitted
        .undo
        .clone()
        .ok_or_else(|| RollbackError::NoUndo {
            run: run_id.to_owned(),
            playbook: submitted.name.clone(),
        })?;
    if let Some((by, status)) = existing_rollback(store, run_id)? {
        return Err(RollbackError::AlreadyRolledBack {
            run: run_id.to_owned(),
            by,
            status,
        });
    }
    let playbook = crate::playbook::embedded::find_playbook(
        &engine.data_dir,
        &undo.playbook,
        Some(&engine.config),
    )
    .map_err(|diags| RollbackError::Playbook {
        run: run_id.to_owned(),
        why: format!("its undo playbook {}: {diags}", undo.playbook),
    })?;
    let mut inputs = BTreeMap::new();
    for (name, source) in &undo.inputs {
        let (source_name, value, why) = match source {
            UndoSource::Input(n) => (
                format!("input {n}"),
                d.inputs.get(n).filter(|v| *v != SECRET),
                "is secret or absent",
            ),
            UndoSource::Field(n) => (
                format!("field {n}"),
                d.fields.get(n),
                "the run did not extract",
            ),
        };
        match value {
            Some(v) => {
                inputs.insert(name.clone(), v.clone());
            }
            None => {
                return Err(RollbackError::MissingValue {
                    run: run_id.to_owned(),
                    undo: undo.playbook.clone(),
                    input: name.clone(),
                    source_name,
                    why: why.to_owned(),
                })
            }
        }
    }
    for (k, v) in extra {
        inputs.insert(k.clone(), v.clone());
    }
    let playbook = Arc::new(playbook);
    Ok(Plan {
        request: RunRequest {
            playbook: playbook.clone(),
            inputs,
            operator: operator.to_owned(),
            case_ref: d.summary.case_ref.clone(),
            batch_id: None,
            approval: None,
            claims: d.claims.clone(),
            replay_of: None,
            rollback_of: Some(run_id.to_owned()),
            offline: None,
            sample: false,
        },
        playbook,
    })
}
