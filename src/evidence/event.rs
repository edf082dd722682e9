//! What a journal record says: one [`Event`] per record.
//!
//! Every field is a string, an integer, a bool, a list or a map with string keys, so that
//! the canonical serialization (see ARCHITECTURE.md) is reproducible by any JSON library:
//! no floats anywhere.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which browser a run used, as its `run_finished` record says: `local`, or a remote
/// endpoint's scheme, host and port (never its path or query, where tokens live), and what
/// `Browser.getVersion` answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserIdentity {
    pub endpoint: String,
    /// e.g. `HeadlessChrome/156.0.8078.129`.
    pub product: String,
    /// CDP version, e.g. `1.3`.
    pub protocol: String,
}

/// Identifies one run (`r-YYYYMMDDTHHMMSSZ-xxxxxxxx`).
pub type RunId = String;

/// The body of one journal record. Serialized with `"type"` naming the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A run began. `owner` names the live process that runs it (see the store's lock files):
    /// a run whose owner is gone and that never finished is marked interrupted.
    RunStarted {
        run_id: RunId,
        playbook: String,
        playbook_version: String,
        /// SHA-256 of the playbook file bytes.
        playbook_sha256: String,
        channel: String,
        mode: String,
        operator: String,
        case_ref: Option<String>,
        /// Input values; secret inputs are replaced by `"<secret>"` before they get here.
        inputs: BTreeMap<String, String>,
        /// Batch this run belongs to, if any.
        batch_id: Option<String>,
        /// Approval this run executes (submit runs).
        approval_id: Option<String>,
        owner: String,
        /// The case's claims: the facts the customer gave (`--claim NAME=VALUE`), compared
        /// with the page by the playbook's `match:` rules (absent when none were given).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        claims: BTreeMap<String, String>,
        /// The recorded run this run replays (`clerk replay`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replay_of: Option<RunId>,
        /// The submitted run this run compensates (`clerk rollback`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollback_of: Option<RunId>,
    },
    /// The run's case claims were compared with the page (`match:` rules): before the first
    /// write step of a draft or submit, at the end of a read-only run.
    CaseChecked {
        run_id: RunId,
        /// `matched`, `conflict` or `unverifiable`.
        verdict: String,
        /// One per rule, in the playbook's order.
        checks: Vec<crate::case::Check>,
        /// The step the check was made before (0-based); `None` at the end of the run.
        before_step: Option<u64>,
        at: String,
    },
    /// A step ended (successfully or not).
    StepFinished {
        run_id: RunId,
        step: u64,
        name: String,
        kind: String,
        /// `ok`, `failed` or `refused`.
        outcome: String,
        error: Option<String>,
        started_at: String,
        duration_ms: u64,
        /// Fields extracted by this step.
        fields: BTreeMap<String, String>,
        /// Record ids (`urn:uuid:…`) of the recorded responses live when the step ended
        /// (the latest per method and URL): what the extracted fields were read over.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        responses: Vec<String>,
    },
    /// A screenshot was stored under `screenshots/<sha256>.png`.
    EvidenceCaptured {
        run_id: RunId,
        step: u64,
        name: String,
        sha256: String,
        bytes: u64,
        width: u64,
        height: u64,
        /// The capture is a single colour (probably not evidence of anything).
        blank: bool,
        url: String,
        title: String,
        captured_at: String,
        /// All fields extracted so far in the run.
        fields: BTreeMap<String, String>,
        /// Regions painted over before hashing (secret fields): `x,y,w,h` in image pixels.
        masks: Vec<String>,
        /// Record ids (`urn:uuid:…`) of the recorded responses live when it was taken (the
        /// latest per method and URL).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        responses: Vec<String>,
    },
    /// A response the guard recorded (with its request), stored as
    /// `warc/<warc_sha256>.warc.gz`: the response record at offset 0 (`response_length`
    /// bytes), then the request record (see `evidence::warc`).
    ResponseRecorded {
        run_id: RunId,
        step: Option<u64>,
        method: String,
        url: String,
        status: u64,
        /// Media type of the response, without parameters.
        mime: String,
        /// `Document`, `Xhr` or `Fetch` (Chromium's resource type).
        resource_type: String,
        record_id: String,
        request_record_id: String,
        warc_sha256: String,
        warc_bytes: u64,
        response_length: u64,
        /// `sha256:<hex>` of the recorded body.
        payload_digest: String,
        payload_bytes: u64,
        /// Bytes the server sent (decoded); more than `payload_bytes` when the cap cut it.
        full_bytes: u64,
        truncated: bool,
        /// The channel's cap on a recorded body, in bytes.
        cap: u64,
        received_at: String,
    },
    /// The network guard failed a request.
    RequestBlocked {
        run_id: RunId,
        /// Step during which it happened (the step index; `None` before the first step).
        step: Option<u64>,
        method: String,
        url: String,
        /// Resource type as Chromium reports it (Document, XHR, Fetch, Ping, ...).
        resource_type: String,
        /// Frame that issued it.
        frame: String,
        /// What kind of target that frame is: `page`, `popup`, `iframe (own process)` or
        /// `frame` (an in-process subframe, or a worker's owner).
        target: String,
        reason: String,
    },
    /// The guard let a write through: a channel's read-only exception, or the one approved submit.
    RequestAllowed {
        run_id: RunId,
        step: Option<u64>,
        method: String,
        url: String,
        reason: String,
    },
    /// A run ended. `status` is `ok`, `failed`, `refused` or `session_expired`.
    RunFinished {
        run_id: RunId,
        status: String,
        error: Option<String>,
        fields: BTreeMap<String, String>,
        finished_at: String,
        /// The browser the run used (none if it never got one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        browser: Option<BrowserIdentity>,
    },
    /// A run was found unfinished after its process died.
    RunInterrupted { run_id: RunId, reason: String },
    /// A replay of a draft or submit run (`clerk replay`, `clerk test`) reached its submit
    /// step: the write the page would send, held by the guard and never sent, and not
    /// queued for approval. `draft` is the canonical JSON of what an approval request
    /// would cover (`approval::DraftContent`), `draft_hash` its hash.
    WriteHeld {
        run_id: RunId,
        step: u64,
        draft: String,
        draft_hash: String,
        at: String,
    },
    /// An approval was requested for a draft (see `approval`).
    ApprovalRequested {
        approval_id: String,
        run_id: RunId,
        /// Canonical JSON of the approval request (what the draft hash covers).
        request: String,
        draft_hash: String,
        requester: String,
        channel: String,
        case_ref: Option<String>,
        created_at: String,
        expires_at: String,
    },
    /// A reviewer approved or rejected.
    ApprovalDecided {
        approval_id: String,
        /// `approved` or `rejected`.
        decision: String,
        reviewer: String,
        note: Option<String>,
        draft_hash: String,
        decided_at: String,
    },
    /// A person rejected a draft that an auto-approval policy covers: the policy approves
    /// nothing until it is enabled again.
    PolicySuspended {
        channel: String,
        /// The policy's name in the channel's config.
        policy: String,
        /// `policy:NAME@HASH` of the policy text suspended.
        policy_id: String,
        approval_id: String,
        reviewer: String,
        reason: String,
        at: String,
    },
    /// A suspended policy was enabled again.
    PolicyEnabled {
        channel: String,
        policy: String,
        policy_id: String,
        user: String,
        at: String,
    },
    /// An approved submit went through; the approval cannot be used again.
    ApprovalUsed {
        approval_id: String,
        run_id: RunId,
        used_at: String,
    },
    /// Something was refused (a submit without usable approval, a self-approval, ...).
    Refused {
        /// What was refused: `submit`, `approve`, `reject`, `run`, `schedule_add`.
        action: String,
        approval_id: Option<String>,
        run_id: Option<RunId>,
        user: String,
        reason: String,
        at: String,
    },
    /// The emergency pause was switched on (`on`) or off (a resume), for one channel or, with
    /// no `channel`, for everything (see `pause`). `channel` is left out of the line when
    /// absent, so records written before it existed keep their bytes and their hash.
    Pause {
        on: bool,
        user: String,
        reason: String,
        at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
    },
    /// A bundle was exported; verify checks the journal still reaches this point.
    CheckpointExported {
        seq: u64,
        hash: String,
        out: String,
        at: String,
        /// Who exported (absent in records made before clerk recorded it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The store found and set aside a torn, unacknowledged tail of the journal.
    JournalRepaired {
        dropped_bytes: u64,
        saved_as: String,
        at: String,
    },
    /// A schedule was added (see `schedule`): what it runs, when, with which inputs. Names
    /// are unique among schedules not removed; a second `schedule_added` for a live name
    /// (two adds racing) is ignored when the records are folded.
    ScheduleAdded {
        name: String,
        /// The playbook as given: a file path or the name of a playbook.
        playbook: String,
        /// Absolute path of the playbook file when one was given (`None`: found by name).
        playbook_file: Option<String>,
        /// The playbook's `name:`, channel, mode and SHA-256 when the schedule was added.
        playbook_name: String,
        channel: String,
        mode: String,
        playbook_sha256: String,
        /// Exactly one of `cron` (with its IANA time zone `tz`) and `every_secs`.
        cron: Option<String>,
        tz: Option<String>,
        every_secs: Option<u64>,
        /// Where each firing reads its input rows: a file (absolute path), a URL, or neither.
        inputs_file: Option<String>,
        inputs_url: Option<String>,
        /// Or rows given when the schedule was added (through the daemon's API).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs_rows: Option<Vec<std::collections::BTreeMap<String, String>>>,
        /// Input whose value becomes each run's case reference.
        case_from: Option<String>,
        /// Runs of one firing at once.
        jobs: u64,
        by: String,
        at: String,
    },
    /// A schedule stopped firing until resumed; its slots meanwhile are neither fired nor missed.
    SchedulePaused {
        name: String,
        by: String,
        reason: String,
        at: String,
    },
    /// A paused schedule fires again, from the first slot after `at`.
    ScheduleResumed {
        name: String,
        by: String,
        at: String,
    },
    /// A schedule was removed; its name may be added again (a new schedule).
    ScheduleRemoved {
        name: String,
        by: String,
        at: String,
    },
    /// A schedule fired for `slot` (RFC 3339 UTC): the queue jobs it enqueued. `covers` is
    /// the number of slots within the grace window this one firing stands for (1: only
    /// `slot`; more after downtime: the earlier ones are not fired separately).
    ScheduleFired {
        name: String,
        slot: String,
        covers: u64,
        job_ids: Vec<u64>,
        at: String,
    },
    /// A due slot was not fired, e.g. because the previous firing was still running.
    ScheduleSkipped {
        name: String,
        slot: String,
        covers: u64,
        reason: String,
        at: String,
    },
    /// Slots older than the grace window passed without firing (clerk was not running):
    /// `count` slots from `first_slot` to `slot`, the last of them. `count` is exact up to
    /// the scan limit; `count_capped` says it stopped counting there.
    ScheduleMissed {
        name: String,
        first_slot: String,
        slot: String,
        count: u64,
        count_capped: bool,
        at: String,
    },
    /// The daemon's queue put a job back after a transient failure (attempt `attempt`
    /// failed); it runs again not before `not_before` (RFC 3339 UTC).
    JobRetried {
        job: u64,
        run_id: Option<RunId>,
        channel: String,
        playbook: String,
        attempt: u32,
        reason: String,
        not_before: Option<String>,
        at: String,
    },
    /// The daemon's queue gave up on a job (a permanent failure, or `attempts` used up): it
    /// is in the dead-letter list with `reason`.
    JobDeadLettered {
        job: u64,
        run_id: Option<RunId>,
        channel: String,
        playbook: String,
        attempts: u32,
        reason: String,
        at: String,
    },
    /// An evidence blob was copied to object storage (`[cluster] evidence`) and the storage
    /// acknowledged it: create-only, its SHA-256 re-verified by the storage.
    BlobStored {
        /// The run whose record named the blob.
        run_id: Option<RunId>,
        kind: super::blob::BlobKind,
        sha256: String,
        /// `s3://bucket/key`.
        location: String,
        /// The object version, when the bucket keeps versions.
        version_id: Option<String>,
        /// Object Lock retention, when the bucket has Object Lock.
        retention: Option<super::blob::Retention>,
        at: String,
    },
    /// Someone changed the daemon's queue: `action` is `enqueue`, `retry`, `drop` or
    /// `resume_channel`; `jobs` the jobs it touched (for a channel resume, none).
    QueueChanged {
        action: String,
        jobs: Vec<u64>,
        channel: Option<String>,
        user: String,
        at: String,
    },
}

impl Event {
    /// The variant name as serialized (`run_started`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run_started",
            Event::StepFinished { .. } => "step_finished",
            Event::CaseChecked { .. } => "case_checked",
            Event::EvidenceCaptured { .. } => "evidence_captured",
            Event::ResponseRecorded { .. } => "response_recorded",
            Event::RequestBlocked { .. } => "request_blocked",
            Event::RequestAllowed { .. } => "request_allowed",
            Event::RunFinished { .. } => "run_finished",
            Event::RunInterrupted { .. } => "run_interrupted",
            Event::WriteHeld { .. } => "write_held",
            Event::ApprovalRequested { .. } => "approval_requested",
            Event::ApprovalDecided { .. } => "approval_decided",
            Event::PolicySuspended { .. } => "policy_suspended",
            Event::PolicyEnabled { .. } => "policy_enabled",
            Event::ApprovalUsed { .. } => "approval_used",
            Event::Refused { .. } => "refused",
            Event::Pause { .. } => "pause",
            Event::CheckpointExported { .. } => "checkpoint_exported",
            Event::JournalRepaired { .. } => "journal_repaired",
            Event::ScheduleAdded { .. } => "schedule_added",
            Event::SchedulePaused { .. } => "schedule_paused",
            Event::ScheduleResumed { .. } => "schedule_resumed",
            Event::ScheduleRemoved { .. } => "schedule_removed",
            Event::ScheduleFired { .. } => "schedule_fired",
            Event::ScheduleSkipped { .. } => "schedule_skipped",
            Event::ScheduleMissed { .. } => "schedule_missed",
            Event::JobRetried { .. } => "job_retried",
            Event::JobDeadLettered { .. } => "job_dead_lettered",
            Event::QueueChanged { .. } => "queue_changed",
            Event::BlobStored { .. } => "blob_stored",
        }
    }

    /// The schedule this record is about, if it is a schedule record.
    pub fn schedule_name(&self) -> Option<&str> {
        match self {
            Event::ScheduleAdded { name, .. }
            | Event::SchedulePaused { name, .. }
            | Event::ScheduleResumed { name, .. }
            | Event::ScheduleRemoved { name, .. }
            | Event::ScheduleFired { name, .. }
            | Event::ScheduleSkipped { name, .. }
            | Event::ScheduleMissed { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The run this record belongs to, if any.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Event::RunStarted { run_id, .. }
            | Event::StepFinished { run_id, .. }
            | Event::CaseChecked { run_id, .. }
            | Event::EvidenceCaptured { run_id, .. }
            | Event::ResponseRecorded { run_id, .. }
            | Event::RequestBlocked { run_id, .. }
            | Event::RequestAllowed { run_id, .. }
            | Event::RunFinished { run_id, .. }
            | Event::RunInterrupted { run_id, .. }
            | Event::WriteHeld { run_id, .. }
            | Event::ApprovalRequested { run_id, .. }
            | Event::ApprovalUsed { run_id, .. } => Some(run_id),
            Event::Refused { run_id, .. }
            | Event::JobRetried { run_id, .. }
            | Event::JobDeadLettered { run_id, .. }
            | Event::BlobStored { run_id, .. } => run_id.as_deref(),
            _ => None,
        }
    }
}

/// A new run id: time plus randomness from the OS. There is no fallback: without the OS's
/// random source clerk stops (fails closed) rather than make guessable ids.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore as _};
    format!(
        "r-{}-{:08x}",
        now.format("%Y%m%dT%H%M%SZ"),
        OsRng.next_u32()
    )
}
