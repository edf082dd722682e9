//! Replay: a recorded run executed again, with the same playbook text (by its hash, from the
//! playbook store), the same inputs and the same case claims, and compared with what was
//! recorded: the run's outcome, every extracted field, the case verdict and every
//! screenshot's hash (captures are deterministic: an unchanged page gives the same bytes).
//!
//! A replay is a run of its own, recorded like any other, whose `run_started` names the run
//! it replays (`replay_of`). A draft or submit run is replayed up to its submit step, where
//! the guard holds the write the page would send (never sent) and the engine records it as
//! `write_held` instead of requesting an approval; it is compared with the write the
//! recorded run's approval covered (method, URL, decoded body fields, form values). A run
//! that sent its write is compared on the steps before its submit step only.
//! `--playbook FILE` replays the recorded run with another version of its playbook (what a
//! playbook change would do to last month's cases).
//!
//! **Offline** (`--offline`), the replaying browser is answered from the run's recorded
//! server responses (its WARC records, through the guard's Fetch interception:
//! `browser::offline`) instead of the seller center: no session is needed and nothing is
//! sent. A request the recording has no response for is failed and recorded as blocked, and
//! the report lists it (`unrecorded`). Ordinary runs keep documents and the channel's data
//! endpoints; a page that needs its scripts and style sheets (a single-page app) replays
//! offline only from a **replay sample**, a run recorded with `clerk run --sample`, which
//! keeps every response.
//!
//! **`clerk test PLAYBOOK --samples DIR`** replays, offline, every recorded run of that
//! playbook found in the export bundles under DIR (`clerk export --run … --out DIR/…`;
//! each bundle is checked against its `SHA256SUMS` first) with the given version of the
//! playbook, and reports per case what changed, as text, JSON or JUnit XML.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::browser::offline::{RecordedResponse, Recording};
use crate::evidence::{Event, RunDetail};
use crate::playbook::{Mode, Playbook, SECRET};
use crate::runner::{Engine, EngineError, RunReport, RunRequest, StoredPlaybookError};

/// Why a run cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no run {0} in the journal (`clerk runs list` shows the runs)")]
    NoSuchRun(String),
    #[error("run {run} has not finished ({status}); only finished runs are replayed")]
    NotFinished { run: String, status: String },
    #[error("run {run} is a {mode} run: a login is not replayed (it is how a session is made)")]
    LoginRun { run: String, mode: String },
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
    #[error(
        "the recorded response to {url} of run {run} cannot be served offline ({path}): {why}"
    )]
    Recording {
        run: String,
        url: String,
        path: String,
        why: String,
    },
    #[error("no replay samples in {dir}: {why}")]
    NoSamples { dir: String, why: String },
    #[error(transparent)]
    Store(#[from] crate::evidence::StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One thing that differs between the recorded run and its replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `status`, `field`, `case`, `screenshot`, `playbook`, `write` (the held write's
    /// method, URL or a body field) or `form` (a form value the draft read).
    pub what: String,
    /// The field's or screenshot's name (empty for `status`, `case` and `playbook`).
    pub name: String,
    pub recorded: Option<String>,
    pub replayed: Option<String>,
}

impl Difference {
    /// `what name: recorded A / replayed B`, as the reports print it.
    pub fn line(&self) -> String {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        let what = if self.name.is_empty() {
            self.what.clone()
        } else {
            format!("{} {}", self.what, self.name)
        };
        format!(
            "{what}: recorded {} / replayed {}",
            show(&self.recorded),
            show(&self.replayed)
        )
    }
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
    /// Answered from the recorded responses, not the seller center.
    pub offline: bool,
    /// No difference at all.
    pub same: bool,
    pub differences: Vec<Difference>,
    /// Offline: the requests (`METHOD URL`) the recording held no response for, failed in
    /// the replay (a page that needs its scripts replays only from a replay sample).
    pub unrecorded: Vec<String>,
    /// The replay's own report.
    pub replay: RunReport,
}

/// Replays `run_id` as `operator`. `playbook`: another version of the run's playbook to
/// replay it with (same name and channel); `None` replays the recorded text. `offline`:
/// answered from the run's recorded responses, not the seller center.
pub async fn replay(
    engine: &Engine,
    run_id: &str,
    operator: &str,
    playbook: Option<Arc<Playbook>>,
    offline: bool,
) -> Result<ReplayReport, ReplayError> {
    let store = engine.store.clone();
    let wanted = run_id.to_owned();
    let recorded = tokio::task::spawn_blocking(move || store.run(&wanted))
        .await
        .map_err(|e| crate::evidence::StoreError::Other(format!("run lookup failed: {e}")))??
        .ok_or_else(|| ReplayError::NoSuchRun(run_id.to_owned()))?;
    let original = engine
        .stored_playbook(&recorded.playbook_sha256)
        .map_err(|source| ReplayError::Playbook {
            run: run_id.to_owned(),
            source,
        })?;
    let playbook = match playbook {
        None => Arc::new(original),
        Some(p) => {
            same_playbook(run_id, &p, &original.name, &original.channel)?;
            p
        }
    };
    let recording = if offline {
        // In a cluster the run may have been made on another node: its WARC files come
        // back from object storage first (each checked against its hash).
        if let Some(blobs) = &engine.blobs {
            crate::evidence::blob::restore_missing(
                engine.store.data_dir(),
                blobs.as_ref(),
                &recorded.records,
            )
            .await
            .map_err(|e| crate::evidence::StoreError::Other(e.to_string()))?;
        }
        let store = engine.store.clone();
        Some(recording_of(&recorded.records, &|sha| {
            store.warc_path(sha)
        })?)
    } else {
        None
    };
    replay_detail(engine, &recorded, playbook, operator, recording).await
}

/// The given playbook may replay a run of `name` on `channel` only if it is a version of it.
fn same_playbook(run_id: &str, p: &Playbook, name: &str, channel: &str) -> Result<(), ReplayError> {
    let why = if p.name != name {
        Some(format!("its name is {}", p.name))
    } else if p.channel != channel {
        Some(format!("its channel is {}", p.channel))
    } else {
        None
    };
    match why {
        Some(why) => Err(ReplayError::OtherPlaybook {
            run: run_id.to_owned(),
            given: p.source.display().to_string(),
            recorded: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// The recorded responses among `records` (`response_recorded`), read back from their WARC
/// files (`warc_path` of each file's SHA-256) and checked against the records' digests.
pub fn recording_of(
    records: &[crate::evidence::Record],
    warc_path: &dyn Fn(&str) -> std::path::PathBuf,
) -> Result<Recording, ReplayError> {
    let mut recording = Recording::new();
    for r in records {
        let Event::ResponseRecorded {
            run_id,
            method,
            url,
            status,
            resource_type,
            record_id,
            warc_sha256,
            response_length,
            payload_digest,
            ..
        } = &r.event
        else {
            continue;
        };
        let path = warc_path(warc_sha256);
        let bad = |why: String| ReplayError::Recording {
            run: run_id.to_string(),
            url: url.clone(),
            path: path.display().to_string(),
            why,
        };
        let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        let parsed = crate::evidence::warc::check(
            &bytes,
            warc_sha256,
            record_id,
            payload_digest,
            *response_length,
        )
        .map_err(|e| bad(e.to_string()))?;
        let Some(response) = parsed.first() else {
            return Err(bad("no response record in the file".into()));
        };
        let status_line = String::from_utf8_lossy(
            response
                .block
                .split(|b| *b == b'\n')
                .next()
                .unwrap_or_default(),
        )
        .trim_end()
        .to_owned();
        let status_text = status_line
            .splitn(3, ' ')
            .nth(2)
            .unwrap_or_default()
            .to_owned();
        recording.add(
            method,
            url,
            RecordedResponse {
                status: u16::try_from(*status).unwrap_or(200),
                status_text,
                headers: response.http_headers(),
                body: response.payload().to_vec(),
                resource_type: resource_type.clone(),
            },
        );
    }
    Ok(recording)
}

/// Replays the run `recorded` describes with `playbook` (answered from `recording` when
/// given) and compares.
async fn replay_detail(
    engine: &Engine,
    recorded: &RunDetail,
    playbook: Arc<Playbook>,
    operator: &str,
    recording: Option<Recording>,
) -> Result<ReplayReport, ReplayError> {
    let run_id = recorded.summary.run_id.as_str();
    if recorded.summary.finished_at.is_none() {
        return Err(ReplayError::NotFinished {
            run: run_id.to_owned(),
            status: recorded.summary.status.clone(),
        });
    }
    if playbook.mode == Mode::Login || recorded.summary.mode == "login" {
        return Err(ReplayError::LoginRun {
            run: run_id.to_owned(),
            mode: recorded.summary.mode.clone(),
        });
    }
    // A run that sent its write (it used an approval) is compared up to its submit step:
    // the replay holds the write there and goes no further.
    let cut: Option<u64> = recorded.approval_id.as_ref().and_then(|_| {
        recorded
            .steps
            .iter()
            .find(|s| s.kind == "submit")
            .map(|s| s.step)
    });
    let before_cut = |step: u64| cut.is_none_or(|c| step < c);
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
    let offline = recording.is_some();
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
            offline: recording.map(Arc::new),
            sample: false,
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
    // A draft ends `ok` in the journal (its approval request says it was drafted); a
    // replay's held write ends it `drafted`.
    let status = match report.status.as_str() {
        "drafted" => "ok",
        s => s,
    };
    if status != recorded.summary.status {
        differences.push(Difference {
            what: "status".into(),
            name: String::new(),
            recorded: Some(recorded.summary.status.clone()),
            replayed: Some(status.to_owned()),
        });
    }
    let fields_before = |steps: &[crate::evidence::StepView]| -> BTreeMap<String, String> {
        steps
            .iter()
            .filter(|s| before_cut(s.step))
            .flat_map(|s| s.fields.clone())
            .collect()
    };
    // The replay stops at its submit step: its fields are all from before it.
    let recorded_fields = match cut {
        None => recorded.fields.clone(),
        Some(_) => fields_before(&recorded.steps),
    };
    let names: BTreeSet<String> = recorded_fields
        .keys()
        .chain(report.fields.keys())
        .cloned()
        .collect();
    for name in &names {
        let (a, b) = (recorded_fields.get(name), report.fields.get(name));
        if a != b {
            differences.push(Difference {
                what: "field".into(),
                name: name.clone(),
                recorded: a.cloned(),
                replayed: b.cloned(),
            });
        }
    }
    // The replay's own case verdict and blocked requests, from its records.
    let replayed = match &report.run_id {
        Some(id) => {
            let store = engine.store.clone();
            let id = id.clone();
            tokio::task::spawn_blocking(move || store.run(&id))
                .await
                .map_err(|e| {
                    crate::evidence::StoreError::Other(format!("run lookup failed: {e}"))
                })??
        }
        None => None,
    };
    let replayed_case = replayed
        .as_ref()
        .and_then(|d| d.case.as_ref())
        .map(|c| c.verdict.clone());
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
            .filter(|e| before_cut(e.step))
            .map(|e| (e.name.clone(), e.sha256.clone()))
            .collect(),
    );
    let after = shots(match &replayed {
        Some(d) => d
            .evidence
            .iter()
            .filter(|e| before_cut(e.step))
            .map(|e| (e.name.clone(), e.sha256.clone()))
            .collect(),
        None => report
            .screenshots
            .iter()
            .map(|s| (s.name.clone(), s.sha256.clone()))
            .collect(),
    });
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
    if recorded.summary.mode != "read_only" {
        write_differences(recorded, replayed.as_ref(), &mut differences);
    }
    // Offline, what the recording could not answer (not a difference by itself: a worker
    // script an ordinary run did not keep may change nothing the case is about).
    let mut unrecorded: Vec<String> = Vec::new();
    for b in replayed.iter().flat_map(|d| d.blocked.iter()) {
        let request = format!("{} {}", b.method, b.url);
        if b.reason.starts_with(OFFLINE_MISS) && !unrecorded.contains(&request) {
            unrecorded.push(request);
        }
    }
    Ok(ReplayReport {
        run_id: run_id.to_owned(),
        replay_run_id: report.run_id.clone(),
        playbook_sha256: playbook.sha256.clone(),
        offline,
        same: differences.is_empty(),
        differences,
        unrecorded,
        replay: report,
    })
}

/// The write a draft or submit run held for its approval (the approval it requested, or the
/// one it used), against the write its replay held (`write_held`).
fn write_differences(
    recorded: &RunDetail,
    replayed: Option<&RunDetail>,
    out: &mut Vec<Difference>,
) {
    let run = recorded.summary.run_id.as_str();
    let approved = recorded
        .records
        .iter()
        .chain(&recorded.approvals)
        .find_map(|r| match &r.event {
            Event::ApprovalRequested {
                approval_id,
                run_id,
                request,
                ..
            } if run_id.as_str() == run || recorded.approval_id.as_ref() == Some(approval_id) => {
                serde_json::from_str::<crate::approval::ApprovalRequest>(request)
                    .ok()
                    .map(|a| a.content)
            }
            _ => None,
        });
    let held = replayed.and_then(|d| {
        d.records.iter().find_map(|r| match &r.event {
            Event::WriteHeld { draft, .. } => {
                serde_json::from_str::<crate::approval::DraftContent>(draft).ok()
            }
            _ => None,
        })
    });
    let summary = |c: &crate::approval::DraftContent| match &c.request {
        Some(w) => w.summary(),
        None => format!("{} {}", c.write.method, c.write.url),
    };
    match (approved, held) {
        (None, None) => {}
        (Some(a), Some(h)) => {
            if crate::approval::draft_hash(&a) == crate::approval::draft_hash(&h) {
                return;
            }
            let before = out.len();
            if let (Some(wa), Some(wh)) = (&a.request, &h.request) {
                for d in wa.differences(wh) {
                    out.push(Difference {
                        what: "write".into(),
                        name: d,
                        recorded: Some(wa.summary()),
                        replayed: Some(wh.summary()),
                    });
                }
            }
            let va: BTreeMap<&str, &str> = a
                .values
                .iter()
                .map(|v| (v.name.as_str(), v.value.as_str()))
                .collect();
            let vh: BTreeMap<&str, &str> = h
                .values
                .iter()
                .map(|v| (v.name.as_str(), v.value.as_str()))
                .collect();
            for name in va.keys().chain(vh.keys()).collect::<BTreeSet<_>>() {
                if va.get(name) != vh.get(name) {
                    out.push(Difference {
                        what: "form".into(),
                        name: (*name).to_owned(),
                        recorded: va.get(name).map(|v| (*v).to_owned()),
                        replayed: vh.get(name).map(|v| (*v).to_owned()),
                    });
                }
            }
            if out.len() == before {
                out.push(Difference {
                    what: "write".into(),
                    name: "draft hash".into(),
                    recorded: Some(crate::approval::draft_hash(&a)),
                    replayed: Some(crate::approval::draft_hash(&h)),
                });
            }
        }
        (a, h) => out.push(Difference {
            what: "write".into(),
            name: String::new(),
            recorded: a.as_ref().map(summary),
            replayed: h.as_ref().map(summary),
        }),
    }
}

/// How the guard's refusal of a request the recording has no response for begins.
const OFFLINE_MISS: &str = "offline replay: the recording holds no response";

/// The report as text: one line per difference.
pub fn render(r: &ReplayReport) -> String {
    let mut out = format!(
        "replay of {} as {}{}: {}\n",
        r.run_id,
        r.replay_run_id.as_deref().unwrap_or("(not started)"),
        if r.offline {
            " (offline, from the recorded responses)"
        } else {
            ""
        },
        if r.same {
            "the same".to_owned()
        } else {
            format!("{} difference(s)", r.differences.len())
        }
    );
    for d in &r.differences {
        out.push_str(&format!("  {}\n", d.line()));
    }
    for u in &r.unrecorded {
        out.push_str(&format!("  not in the recording (failed offline): {u}\n"));
    }
    if let Some(e) = &r.replay.error {
        out.push_str(&format!(
            "  replay ended {}: {e}\n",
            r.replay.status.as_str()
        ));
    }
    out
}

/// How one replay sample fared under `clerk test`.
#[derive(Debug, Clone, Serialize)]
pub struct SampleResult {
    /// The bundle directory it came from.
    pub bundle: String,
    pub run_id: String,
    pub case_ref: Option<String>,
    /// `same`, `changed`, `error` (could not be replayed) or `skipped` (another playbook's
    /// run, or one that writes).
    pub outcome: String,
    pub differences: Vec<Difference>,
    /// Requests the sample's recording held no response for.
    pub unrecorded: Vec<String>,
    pub replay_run_id: Option<String>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl SampleResult {
    /// ` (case REF)` when the sample has a case reference.
    fn case_suffix(&self) -> String {
        self.case_ref
            .as_deref()
            .map(|k| format!(" (case {k})"))
            .unwrap_or_default()
    }
}

/// What `clerk test` prints.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub playbook: String,
    pub playbook_sha256: String,
    pub samples: String,
    pub cases: Vec<SampleResult>,
    pub same: usize,
    pub changed: usize,
    pub errors: usize,
    pub skipped: usize,
}

impl TestReport {
    /// Every replayed case is the same, and there was at least one.
    pub fn passed(&self) -> bool {
        self.changed == 0 && self.errors == 0 && self.same > 0
    }
}

/// The export bundles under `dir`: `dir` itself when it is one, else its subdirectories
/// that are (sorted by name).
fn bundles(dir: &Path) -> Result<Vec<PathBuf>, ReplayError> {
    let sums = |d: &Path| d.join("SHA256SUMS").is_file();
    if sums(dir) {
        return Ok(vec![dir.to_path_buf()]);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| ReplayError::NoSamples {
        dir: dir.display().to_string(),
        why: e.to_string(),
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && sums(p))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(ReplayError::NoSamples {
            dir: dir.display().to_string(),
            why: "neither it nor any directory in it is an export bundle (no SHA256SUMS); \
                  make samples with `clerk export --run RUN --out DIR/NAME`"
                .into(),
        });
    }
    Ok(found)
}

/// Checks every file a bundle's `SHA256SUMS` lists, as `sha256sum -c` would.
fn check_bundle(bundle: &Path) -> Result<(), String> {
    let sums = std::fs::read_to_string(bundle.join("SHA256SUMS"))
        .map_err(|e| format!("SHA256SUMS: {e}"))?;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let Some((hex, name)) = line.split_once("  ") else {
            return Err(format!("SHA256SUMS: malformed line {line:?}"));
        };
        let name = name.trim_start_matches('*');
        let bytes = std::fs::read(bundle.join(name)).map_err(|e| format!("{name}: {e}"))?;
        let got = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if got != hex {
            return Err(format!(
                "{name}: its SHA-256 is {got}, SHA256SUMS says {hex} (the sample was changed)"
            ));
        }
    }
    Ok(())
}

/// The runs of one bundle, from its `journal.jsonl` (every line's hash checked).
fn bundle_runs(bundle: &Path) -> Result<Vec<RunDetail>, String> {
    let text =
        std::fs::read(bundle.join("journal.jsonl")).map_err(|e| format!("journal.jsonl: {e}"))?;
    let mut by_run: BTreeMap<String, Vec<crate::evidence::Record>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    // Every approval record of the bundle: a submit run's approval was requested by its
    // draft run, whose records may not be in the bundle.
    let mut approvals: Vec<crate::evidence::Record> = Vec::new();
    for (n, line) in text
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
    {
        let parsed = crate::evidence::record::parse_line(line)
            .map_err(|e| format!("journal.jsonl line {}: {e}", n + 1))?;
        if !parsed.intact() {
            return Err(format!(
                "journal.jsonl line {}: the record's hash does not match its content",
                n + 1
            ));
        }
        if matches!(
            parsed.record.event,
            Event::ApprovalRequested { .. }
                | Event::ApprovalDecided { .. }
                | Event::ApprovalUsed { .. }
        ) {
            approvals.push(parsed.record.clone());
        }
        if let Some(id) = parsed.record.event.run_id().map(str::to_owned) {
            if !by_run.contains_key(&id) {
                order.push(id.clone());
            }
            by_run.entry(id).or_default().push(parsed.record);
        }
    }
    let shots = bundle.join("screenshots");
    Ok(order
        .into_iter()
        .filter_map(|id| {
            let records = by_run.remove(&id)?;
            crate::evidence::build_detail(records, approvals.clone(), &|sha| {
                shots.join(format!("{sha}.png")).display().to_string()
            })
        })
        .collect())
}

/// `clerk test`: replays, offline, every recorded read-only run of `playbook` in the
/// samples under `dir`, with this version of the playbook.
pub async fn test_samples(
    engine: &Engine,
    playbook: Arc<Playbook>,
    dir: &Path,
    operator: &str,
) -> Result<TestReport, ReplayError> {
    let mut cases = Vec::new();
    for bundle in bundles(dir)? {
        let shown = bundle.display().to_string();
        let case =
            |run_id: &str, case_ref: Option<String>, outcome: &str, error: String| SampleResult {
                bundle: shown.clone(),
                run_id: run_id.to_owned(),
                case_ref,
                outcome: outcome.into(),
                differences: Vec::new(),
                unrecorded: Vec::new(),
                replay_run_id: None,
                error: Some(error),
                duration_ms: 0,
            };
        let runs = match check_bundle(&bundle).and_then(|()| bundle_runs(&bundle)) {
            Ok(runs) => runs,
            Err(e) => {
                cases.push(case("(bundle)", None, "error", e));
                continue;
            }
        };
        for run in runs {
            let run_id = run.summary.run_id.clone();
            let case_ref = run.summary.case_ref.clone();
            if run.summary.playbook != playbook.name {
                let why = format!("a run of playbook {}", run.summary.playbook);
                cases.push(case(&run_id, case_ref, "skipped", why));
                continue;
            }
            if run.summary.mode == "login" {
                let why = "a login run: logins are not replayed".to_owned();
                cases.push(case(&run_id, case_ref, "skipped", why));
                continue;
            }
            let t = std::time::Instant::now();
            let warcs = bundle.join(crate::evidence::warc::WARC_DIR);
            let replayed = match same_playbook(
                &run_id,
                &playbook,
                &run.summary.playbook,
                &run.summary.channel,
            )
            .and_then(|()| recording_of(&run.records, &|sha| warcs.join(format!("{sha}.warc.gz"))))
            {
                Ok(recording) => {
                    replay_detail(engine, &run, playbook.clone(), operator, Some(recording)).await
                }
                Err(e) => Err(e),
            };
            let duration_ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
            match replayed {
                Ok(r) => {
                    // The playbook change is what is being tested, not a difference.
                    let differences: Vec<Difference> = r
                        .differences
                        .into_iter()
                        .filter(|d| d.what != "playbook")
                        .collect();
                    cases.push(SampleResult {
                        bundle: shown.clone(),
                        run_id,
                        case_ref,
                        outcome: if differences.is_empty() {
                            "same"
                        } else {
                            "changed"
                        }
                        .into(),
                        differences,
                        unrecorded: r.unrecorded,
                        replay_run_id: r.replay_run_id,
                        error: r.replay.error.clone(),
                        duration_ms,
                    });
                }
                Err(e @ (ReplayError::Store(_) | ReplayError::Engine(_))) => return Err(e),
                Err(e) => cases.push(SampleResult {
                    duration_ms,
                    ..case(&run_id, case_ref, "error", e.to_string())
                }),
            }
        }
    }
    let count = |o: &str| cases.iter().filter(|c| c.outcome == o).count();
    Ok(TestReport {
        playbook: playbook.source.display().to_string(),
        playbook_sha256: playbook.sha256.clone(),
        samples: dir.display().to_string(),
        same: count("same"),
        changed: count("changed"),
        errors: count("error"),
        skipped: count("skipped"),
        cases,
    })
}

/// The test report as text: one line per case, its differences under it.
pub fn render_test(r: &TestReport) -> String {
    let mut out = String::new();
    for c in &r.cases {
        let case = c.case_suffix();
        out.push_str(&format!("{:<8} {}{case}", c.outcome, c.run_id));
        if let Some(e) = &c.error {
            out.push_str(&format!(": {e}"));
        }
        out.push('\n');
        for d in &c.differences {
            out.push_str(&format!("         {}\n", d.line()));
        }
        for u in &c.unrecorded {
            out.push_str(&format!("         not in the recording: {u}\n"));
        }
    }
    out.push_str(&format!(
        "{}: {} same, {} changed, {} could not be replayed, {} skipped ({} with {})\n",
        if r.passed() { "passed" } else { "FAILED" },
        r.same,
        r.changed,
        r.errors,
        r.skipped,
        r.samples,
        r.playbook
    ));
    out
}

/// The test report as JUnit XML (one `testcase` per sample; changed cases are failures,
/// cases that could not be replayed are errors).
pub fn junit(r: &TestReport) -> String {
    fn esc(s: &str) -> String {
        let mut o = String::with_capacity(s.len());
        for ch in s.chars() {
            match ch {
                '&' => o.push_str("&amp;"),
                '<' => o.push_str("&lt;"),
                '>' => o.push_str("&gt;"),
                '"' => o.push_str("&quot;"),
                '\'' => o.push_str("&apos;"),
                c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
                c => o.push(c),
            }
        }
        o
    }
    let secs = |ms: u64| format!("{:.3}", ms as f64 / 1000.0);
    let total: u64 = r.cases.iter().map(|c| c.duration_ms).sum();
    let name = format!("clerk test {}", r.playbook);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">\n",
        esc(&name),
        r.cases.len(),
        r.changed,
        r.errors,
        r.skipped,
        secs(total)
    ));
    out.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">\n",
        esc(&r.samples),
        r.cases.len(),
        r.changed,
        r.errors,
        r.skipped,
        secs(total)
    ));
    for c in &r.cases {
        let case = c.case_suffix();
        out.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
            esc(&c.bundle),
            esc(&format!("{}{case}", c.run_id)),
            secs(c.duration_ms)
        ));
        let body = c
            .differences
            .iter()
            .map(Difference::line)
            .chain(
                c.unrecorded
                    .iter()
                    .map(|u| format!("not in the recording: {u}")),
            )
            .collect::<Vec<_>>()
            .join("\n");
        match c.outcome.as_str() {
            "same" => out.push_str("/>\n"),
            "changed" => out.push_str(&format!(
                ">\n      <failure message=\"{} difference(s)\" type=\"changed\">{}</failure>\n    </testcase>\n",
                c.differences.len(),
                esc(&body)
            )),
            "skipped" => out.push_str(&format!(
                ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                esc(c.error.as_deref().unwrap_or_default())
            )),
            _ => out.push_str(&format!(
                ">\n      <error message=\"{}\" type=\"not replayable\"/>\n    </testcase>\n",
                esc(c.error.as_deref().unwrap_or_default())
            )),
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
