//! Replay: a recorded run executed again, with the same playbook text (by its hash, from the
//! playbook store), the same inputs and the same case claims, and compared with what was
//! recorded: the run's outcome, every extracted field, the case verdict and every
//! screenshot's hash (captures are deterministic: an unchanged page gives the same bytes).
//!
//! A replay is a run of its own, recorded like any other, whose `run_started` names the run
//! it replays (`replay_of`). Only read-only runs are replayed here: a draft or a submit would
//! have to hold its write without queueing an approval, which the engine does not do yet.
//! `--playbook FILE` replays the recorded run with another version of its playbook (what a
//! playbook change would do to last month's cases).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::playbook::{Mode, Playbook, SECRET};
use crate::runner::{Engine, EngineError, RunReport, RunRequest, StoredPlaybookError};

/// Why a run cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no run {0} in the journal (`clerk runs list` shows the runs)")]
    NoSuchRun(String),
    #[error("run {run} has not finished ({status}); only finished runs are replayed")]
    NotFinished { run: String, status: String },
    #[error("run {run} is a {mode} run; replay re-executes read-only runs only")]
    WritingRun { run: String, mode: String },
    #[error("the playbook of run {run}: {source}")]
    Playbook {
        run: String,
        #[source]
        source: StoredPlaybookError,
    },
    #[error("playbook {given} cannot replay run {run} of playbook {recorded}: {why}")]
    OtherPlaybook {
        run: String,
        given: String,
        recorded: String,
        why: String,
    },
    #[error("secret input {name} of run {run} is not stored: set CLERK_SECRET_{env} to replay it")]
    Secret {
        run: String,
        name: String,
        env: String,
    },
    #[error(transparent)]
    Store(#[from] crate::evidence::StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One thing that differs between the recorded run and its replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `status`, `field`, `case`, `screenshot` or `playbook`.
    pub what: String,
    /// The field's or screenshot's name (empty for `status`, `case` and `playbook`).
    pub name: String,
    pub recorded: Option<String>,
    pub replayed: Option<String>,
}

/// What `clerk replay` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The recorded run.
    pub run_id: String,
    /// The replay's own run.
    pub replay_run_id: Option<String>,
    /// SHA-256 of the playbook text replayed (the recorded one unless `--playbook`).
    pub playbook_sha256: String,
    /// No difference at all.
    pub same: bool,
    pub differences: Vec<Difference>,
    /// The replay's own report.
    pub replay: RunReport,
}

/// Replays `run_id` as `operator`. `playbook`: another version of the run's playbook to
/// replay it with (same name and channel); `None` replays the recorded text.
pub async fn replay(
    engine: &Engine,
    run_id: &str,
    operator: &str,
    playbook: Option<Arc<Playbook>>,
) -> Result<ReplayReport, ReplayError> {
    let store = engine.store.clone();
    let wanted = run_id.to_owned();
    let recorded = tokio::task::spawn_blocking(move || store.run(&wanted))
        .await
        .map_err(|e| crate::evidence::StoreError::Other(format!("run lookup failed: {e}")))??
        .ok_or_else(|| ReplayError::NoSuchRun(run_id.to_owned()))?;
    if recorded.summary.finished_at.is_none() {
        return Err(ReplayError::NotFinished {
            run: run_id.to_owned(),
            status: recorded.summary.status.clone(),
        });
    }
    let original = engine
        .stored_playbook(&recorded.playbook_sha256)
        .map_err(|source| ReplayError::Playbook {
            run: run_id.to_owned(),
            source,
        })?;
    let playbook = match playbook {
        None => Arc::new(original),
        Some(p) => {
            let why = if p.name != original.name {
                Some(format!("its name is {}", p.name))
            } else if p.channel != original.channel {
                Some(format!("its channel is {}", p.channel))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ReplayError::OtherPlaybook {
                    run: run_id.to_owned(),
                    given: p.source.display().to_string(),
                    recorded: original.name.clone(),
                    why,
                });
            }
            p
        }
    };
    if playbook.mode != Mode::ReadOnly || recorded.summary.mode != "read_only" {
        return Err(ReplayError::WritingRun {
            run: run_id.to_owned(),
            mode: recorded.summary.mode.clone(),
        });
    }
    // Secrets were never stored: they are given again through the environment.
    let mut inputs = recorded.inputs.clone();
    for (name, value) in inputs.iter_mut() {
        if value == SECRET {
            let env = name.to_ascii_uppercase();
            *value =
                std::env::var(format!("CLERK_SECRET_{env}")).map_err(|_| ReplayError::Secret {
                    run: run_id.to_owned(),
                    name: name.clone(),
                    env,
                })?;
        }
    }
    let report = engine
        .run(RunRequest {
            playbook: playbook.clone(),
            inputs,
            operator: operator.to_owned(),
            case_ref: recorded.summary.case_ref.clone(),
            batch_id: None,
            approval: None,
            claims: recorded.claims.clone(),
            replay_of: Some(run_id.to_owned()),
            rollback_of: None,
        })
        .await?;

    let mut differences = Vec::new();
    if playbook.sha256 != recorded.playbook_sha256 {
        differences.push(Difference {
            what: "playbook".into(),
            name: String::new(),
            recorded: Some(recorded.playbook_sha256.clone()),
            replayed: Some(playbook.sha256.clone()),
        });
    }
    let status = report.status.as_str();
    if status != recorded.summary.status {
        differences.push(Difference {
            what: "status".into(),
            name: String::new(),
            recorded: Some(recorded.summary.status.clone()),
            replayed: Some(status.to_owned()),
        });
    }
    let names: BTreeSet<&String> = recorded.fields.keys().chain(report.fields.keys()).collect();
    for name in names {
        let (a, b) = (recorded.fields.get(name), report.fields.get(name));
        if a != b {
            differences.push(Difference {
                what: "field".into(),
                name: name.clone(),
                recorded: a.cloned(),
                replayed: b.cloned(),
            });
        }
    }
    // The replay's own case verdict, from its records.
    let replayed_case = match &report.run_id {
        Some(id) => {
            let store = engine.store.clone();
            let id = id.clone();
            tokio::task::spawn_blocking(move || store.run(&id))
                .await
                .map_err(|e| {
                    crate::evidence::StoreError::Other(format!("run lookup failed: {e}"))
                })??
                .and_then(|d| d.case)
                .map(|c| c.verdict)
        }
        None => None,
    };
    let recorded_case = recorded.case.as_ref().map(|c| c.verdict.clone());
    if recorded_case != replayed_case {
        differences.push(Difference {
            what: "case".into(),
            name: String::new(),
            recorded: recorded_case,
            replayed: replayed_case,
        });
    }
    let shots = |pairs: Vec<(String, String)>| -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, sha) in pairs {
            m.entry(name).or_default().push(sha);
        }
        m
    };
    let before = shots(
        recorded
            .evidence
            .iter()
            .map(|e| (e.name.clone(), e.sha256.clone()))
            .collect(),
    );
    let after = shots(
        report
            .screenshots
            .iter()
            .map(|s| (s.name.clone(), s.sha256.clone()))
            .collect(),
    );
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        let (a, b) = (before.get(name), after.get(name));
        if a != b {
            differences.push(Difference {
                what: "screenshot".into(),
                name: name.clone(),
                recorded: a.map(|v| v.join(",")),
                replayed: b.map(|v| v.join(",")),
            });
        }
    }
    Ok(ReplayReport {
        run_id: run_id.to_owned(),
        replay_run_id: report.run_id.clone(),
        playbook_sha256: playbook.sha256.clone(),
        same: differences.is_empty(),
        differences,
        replay: report,
    })
}

/// The report as text: one line per difference.
pub fn render(r: &ReplayReport) -> String {
    let mut out = format!(
        "replay of {} as {}: {}\n",
        r.run_id,
        r.replay_run_id.as_deref().unwrap_or("(not started)"),
        if r.same {
            "the same".to_owned()
        } else {
            format!("{} difference(s)", r.differences.len())
        }
    );
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    for d in &r.differences {
        let what = if d.name.is_empty() {
            d.what.clone()
        } else {
            format!("{} {}", d.what, d.name)
        };
        out.push_str(&format!(
            "  {what}: recorded {} / replayed {}\n",
            show(&d.recorded),
            show(&d.replayed)
        ));
    }
    if let Some(e) = &r.replay.error {
        out.push_str(&format!(
            "  replay ended {}: {e}\n",
            r.replay.status.as_str()
        ));
    }
    out
}
