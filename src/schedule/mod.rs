//! Schedules: evidence collection that runs by itself ("every morning at 8, screenshot the
//! logistics page of every open refund case"), part of the future `clerk serve` daemon.
//!
//! Engine level, no loop and no HTTP: this module holds the model, the journal records that
//! store it, the firing rules and the operations behind `clerk schedule`. The daemon calls
//! [`Schedules::load`] (or folds new records with [`Schedules::apply`]), [`decide`] for each
//! schedule every minute, and appends what the decision says (see ARCHITECTURE.md,
//! "Schedules").
//!
//! **Storage.** Schedules live in the journal, as `schedule_added`, `schedule_paused`,
//! `schedule_resumed`, `schedule_removed`, `schedule_fired`, `schedule_skipped` and
//! `schedule_missed` records, so every change is audited and survives restarts; the current
//! set is the fold of those records in seq order. Nothing else is stored.

mod fire;
mod trigger;

#[cfg(test)]
mod tests;

pub use fire::{decide, next_after, Action, Decision, MissedSlots, DEFAULT_GRACE, MAX_COUNT};
pub use trigger::{
    format_every, parse_cron, parse_every, parse_tz, CronExpr, Trigger, MAX_EVERY, MIN_EVERY,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::channel::Config;
use crate::evidence::{timestamp, Event, Record, Store, StoreError};
use crate::playbook::{Mode, Playbook};
use crate::queue::{Job, JobId, JobSpec, JobState, Priority, QueueError, RunQueue};

/// Errors of schedule operations. Everything but [`ScheduleError::Store`] and
/// [`ScheduleError::Refused`] is a problem with what was asked (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule name `{0}` is not valid: use 1 to 64 letters, digits, `.`, `_` or `-`, \
         starting with a letter or a digit"
    )]
    BadName(String),
    #[error(
        "a schedule named `{0}` already exists (see `clerk schedule show {0}`; remove it \
         first to replace it)"
    )]
    Duplicate(String),
    #[error("no schedule named `{0}` (see `clerk schedule list`)")]
    Unknown(String),
    #[error("invalid cron expression `{expr}`: {}", field_message(field, message))]
    BadCron {
        /// The expression as given.
        expr: String,
        /// The field to blame (`minute field `61``), or `expression` when none is.
        field: String,
        message: String,
    },
    #[error(
        "unknown time zone `{0}`: use an IANA name such as Asia/Shanghai, Europe/Berlin or UTC"
    )]
    BadTz(String),
    #[error("invalid interval `{value}`: {message}")]
    BadEvery { value: String, message: String },
    #[error("playbook `{playbook}`: {message}")]
    Playbook { playbook: String, message: String },
    #[error("inputs: {0}")]
    Inputs(String),
    #[error("{0}")]
    Invalid(String),
    #[error("schedule `{name}` is already paused (by {by} at {at}: {reason})")]
    AlreadyPaused {
        name: String,
        by: String,
        at: String,
        reason: String,
    },
    #[error("schedule `{0}` is not paused")]
    NotPaused(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn field_message(field: &str, message: &str) -> String {
    if field == "expression" {
        message.to_owned()
    } else {
        format!("{field}: {message}")
    }
}

impl ScheduleError {
    /// The `clerk` exit code this error deserves: 1 the store failed, 3 refused, 2 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ScheduleError::Store(_) => 1,
            ScheduleError::Refused(_) => 3,
            _ => 2,
        }
    }
}

/// Where a firing reads its input rows (one run per row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// One run without inputs.
    None,
    /// A `.csv` (header row) or `.jsonl` file, read again at every firing (absolute path).
    File(PathBuf),
    /// A URL answering such a file, fetched at every firing.
    Url(String),
    /// Rows given when the schedule was added (through the daemon's API, which opens no
    /// file a request names), kept in the `schedule_added` record.
    Rows(Vec<BTreeMap<String, String>>),
}

/// Who paused a schedule, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PauseInfo {
    pub by: String,
    pub reason: String,
    pub at: String,
}

/// A recorded firing (or skip) of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Firing {
    /// The slot, RFC 3339 UTC.
    pub slot: String,
    /// Due slots this firing stood for.
    pub covers: u64,
    /// Queue jobs it enqueued (empty for a skip).
    pub job_ids: Vec<u64>,
    /// Why it was skipped (skips only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: String,
}

/// A recorded range of missed slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissedRecord {
    pub first_slot: String,
    pub slot: String,
    pub count: u64,
    pub count_capped: bool,
    pub at: String,
}

/// A schedule as the journal's records describe it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: String,
    /// The playbook as given (a path or a playbook name).
    pub playbook: String,
    /// Absolute path of the playbook file when a file was given.
    pub playbook_file: Option<PathBuf>,
    /// The playbook's name, channel, mode and SHA-256 when the schedule was added.
    pub playbook_name: String,
    pub channel: String,
    pub mode: String,
    pub playbook_sha256: String,
    pub trigger: Trigger,
    pub inputs: InputSource,
    /// Input whose value becomes each run's case reference.
    pub case_from: Option<String>,
    /// Runs of one firing at once.
    pub jobs: usize,
    pub paused: bool,
    /// While paused: by whom, when, why.
    pub pause: Option<PauseInfo>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Only slots after this fire: when it was added, or last resumed.
    pub active_since: DateTime<Utc>,
    /// The high-water mark: the latest slot recorded as fired, skipped or missed.
    pub last_slot: Option<DateTime<Utc>>,
    pub last_fired: Option<Firing>,
    pub last_skipped: Option<Firing>,
    pub last_missed: Option<MissedRecord>,
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Schedule {
    /// The `schedule_added` record that describes this schedule.
    pub fn added_event(&self) -> Event {
        let (cron, tz, every_secs) = match &self.trigger {
            Trigger::Cron { expr, tz } => (
                Some(expr.as_str().to_owned()),
                Some(tz.name().to_owned()),
                None,
            ),
            Trigger::Every(d) => (None, None, Some(d.as_secs())),
        };
        let (inputs_file, inputs_url, inputs_rows) = match &self.inputs {
            InputSource::None => (None, None, None),
            InputSource::File(p) => (Some(p.display().to_string()), None, None),
            InputSource::Url(u) => (None, Some(u.clone()), None),
            InputSource::Rows(rows) => (None, None, Some(rows.clone())),
        };
        Event::ScheduleAdded {
            name: self.name.clone(),
            playbook: self.playbook.clone(),
            playbook_file: self.playbook_file.as_ref().map(|p| p.display().to_string()),
            playbook_name: self.playbook_name.clone(),
            channel: self.channel.clone(),
            mode: self.mode.clone(),
            playbook_sha256: self.playbook_sha256.clone(),
            cron,
            tz,
            every_secs,
            inputs_file,
            inputs_url,
            inputs_rows,
            case_from: self.case_from.clone(),
            jobs: self.jobs as u64,
            by: self.created_by.clone(),
            at: timestamp(self.created_at),
        }
    }

    /// The schedule a `schedule_added` record describes (nothing fired yet).
    pub fn from_added(event: &Event) -> Result<Schedule, String> {
        let Event::ScheduleAdded {
            name,
            playbook,
            playbook_file,
            playbook_name,
            channel,
            mode,
            playbook_sha256,
            cron,
            tz,
            every_secs,
            inputs_file,
            inputs_url,
            inputs_rows,
            case_from,
            jobs,
            by,
            at,
        } = event
        else {
            return Err(format!(
                "not a schedule_added record: {}",
                event.type_name()
            ));
        };
        let trigger = match (cron, every_secs) {
            (Some(expr), None) => Trigger::Cron {
                expr: trigger::compile_cron(expr).map_err(|e| e.to_string())?,
                tz: parse_tz(tz.as_deref().unwrap_or("UTC")).map_err(|e| e.to_string())?,
            },
            (None, Some(secs)) if *secs > 0 => Trigger::Every(Duration::from_secs(*secs)),
            _ => return Err("neither a cron expression nor an interval".into()),
        };
        let inputs = match (inputs_file, inputs_url, inputs_rows) {
            (None, None, None) => InputSource::None,
            (Some(f), None, None) => InputSource::File(PathBuf::from(f)),
            (None, Some(u), None) => InputSource::Url(u.clone()),
            (None, None, Some(rows)) => InputSource::Rows(rows.clone()),
            _ => return Err("more than one of inputs file, URL and rows".into()),
        };
        let created_at = parse_time(at).ok_or_else(|| format!("bad time `{at}`"))?;
        Ok(Schedule {
            name: name.clone(),
            playbook: playbook.clone(),
            playbook_file: playbook_file.as_ref().map(PathBuf::from),
            playbook_name: playbook_name.clone(),
            channel: channel.clone(),
            mode: mode.clone(),
            playbook_sha256: playbook_sha256.clone(),
            trigger,
            inputs,
            case_from: case_from.clone(),
            jobs: usize::try_from(*jobs).unwrap_or(usize::MAX).max(1),
            paused: false,
            pause: None,
            created_by: by.clone(),
            created_at,
            active_since: created_at,
            last_slot: None,
            last_fired: None,
            last_skipped: None,
            last_missed: None,
        })
    }

    /// The playbook this schedule runs, loaded now (the file, or the playbook of that name:
    /// `<data>/playbooks/NAME.yaml`, `./playbooks/NAME.yaml`, else an embedded one).
    pub fn load_playbook(
        &self,
        data_dir: &Path,
        config: Option<&Config>,
    ) -> Result<Playbook, ScheduleError> {
        let result = match &self.playbook_file {
            Some(file) => crate::playbook::load(file, config),
            None if crate::evidence::text::is_sha256(&self.playbook) => {
                stored_playbook(data_dir, &self.playbook, config)
            }
            None => crate::playbook::embedded::find_playbook(data_dir, &self.playbook, config),
        };
        result.map_err(|d| ScheduleError::Playbook {
            playbook: self.playbook.clone(),
            message: d.to_string(),
        })
    }

    /// The queue jobs of one firing: one per input row, at `Scheduled` priority, recorded
    /// under the schedule's creator, with the case reference from `case_from`. The job's
    /// `playbook` is the playbook file's absolute path when a file was given, else its name.
    pub fn job_specs(
        &self,
        slot: DateTime<Utc>,
        rows: Vec<BTreeMap<String, String>>,
    ) -> Vec<JobSpec> {
        let playbook = self
            .playbook_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| self.playbook.clone());
        rows.into_iter()
            .map(|inputs| {
                let mut spec = JobSpec::new(&playbook, &self.channel, &self.created_by);
                spec.priority = Priority::Scheduled;
                spec.schedule = Some(self.name.clone());
                spec.slot = Some(slot);
                spec.case_ref = self
                    .case_from
                    .as_ref()
                    .and_then(|field| inputs.get(field))
                    .filter(|v| !v.is_empty())
                    .cloned();
                spec.inputs = inputs;
                spec
            })
            .collect()
    }

    /// What `list --json` and `show --json` print, with the next firing after `now`.
    pub fn view(&self, now: DateTime<Utc>) -> ScheduleView {
        let next = next_after(self, now);
        let tz = self.trigger.tz();
        ScheduleView {
            name: self.name.clone(),
            playbook: self.playbook.clone(),
            playbook_file: self.playbook_file.as_ref().map(|p| p.display().to_string()),
            playbook_name: self.playbook_name.clone(),
            channel: self.channel.clone(),
            mode: self.mode.clone(),
            playbook_sha256: self.playbook_sha256.clone(),
            trigger: match &self.trigger {
                Trigger::Cron { expr, .. } => TriggerView::Cron {
                    expr: expr.as_str().to_owned(),
                },
                Trigger::Every(d) => TriggerView::Every {
                    every: format_every(*d),
                    seconds: d.as_secs(),
                },
            },
            tz: tz.map(|t| t.name().to_owned()),
            inputs: match &self.inputs {
                InputSource::None => InputsView::None,
                InputSource::File(p) => InputsView::File {
                    path: p.display().to_string(),
                },
                InputSource::Url(u) => InputsView::Url { url: u.clone() },
                InputSource::Rows(rows) => InputsView::Rows { rows: rows.len() },
            },
            case_from: self.case_from.clone(),
            jobs: self.jobs,
            paused: self.paused,
            pause: self.pause.clone(),
            created_by: self.created_by.clone(),
            created_at: timestamp(self.created_at),
            next_firing: next.map(timestamp),
            next_firing_local: next.map(|n| local(n, tz)),
            last_slot: self.last_slot.map(timestamp),
            last_fired: self.last_fired.clone(),
            last_skipped: self.last_skipped.clone(),
            last_missed: self.last_missed.clone(),
        }
    }
}

/// `t` in the schedule's time zone (UTC for intervals), RFC 3339 with its offset.
pub fn local(t: DateTime<Utc>, tz: Option<Tz>) -> String {
    t.with_timezone(&tz.unwrap_or(Tz::UTC))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A schedule for people and programs (`--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleView {
    pub name: String,
    pub playbook: String,
    pub playbook_file: Option<String>,
    pub playbook_name: String,
    pub channel: String,
    pub mode: String,
    pub playbook_sha256: String,
    pub trigger: TriggerView,
    /// The IANA time zone of a cron trigger (`None` for intervals, which are UTC-based).
    pub tz: Option<String>,
    pub inputs: InputsView,
    pub case_from: Option<String>,
    pub jobs: usize,
    pub paused: bool,
    pub pause: Option<PauseInfo>,
    pub created_by: String,
    pub created_at: String,
    /// The next slot (RFC 3339 UTC), `None` while paused.
    pub next_firing: Option<String>,
    /// The same in the schedule's time zone, with its offset.
    pub next_firing_local: Option<String>,
    /// The high-water mark.
    pub last_slot: Option<String>,
    pub last_fired: Option<Firing>,
    pub last_skipped: Option<Firing>,
    pub last_missed: Option<MissedRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerView {
    Cron { expr: String },
    Every { every: String, seconds: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputsView {
    None,
    File {
        path: String,
    },
    Url {
        url: String,
    },
    /// Rows kept in the schedule (how many).
    Rows {
        rows: usize,
    },
}

/// The current schedules: the fold of the journal's schedule records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedules {
    by_name: BTreeMap<String, Schedule>,
}

impl Schedules {
    /// Folds every schedule record of the store.
    pub fn load(store: &Store) -> Result<Schedules, ScheduleError> {
        Ok(Schedules::from_records(&store.schedule_records()?))
    }

    /// Folds `records` (schedule records in seq order; others are ignored).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Schedules {
        let mut out = Schedules::default();
        for r in records {
            out.apply(r);
        }
        out
    }

    /// Applies one record (the daemon folds the records it appends, or reloads).
    ///
    /// Rules: `schedule_added` for a name that is live is ignored (two adds raced; the first
    /// wins); records about a name that is not live are ignored; slots only move the
    /// high-water mark forward.
    pub fn apply(&mut self, record: &Record) {
        let Some(name) = record.event.schedule_name() else {
            return;
        };
        if let Event::ScheduleAdded { .. } = &record.event {
            if !self.by_name.contains_key(name) {
                match Schedule::from_added(&record.event) {
                    Ok(s) => {
                        self.by_name.insert(name.to_owned(), s);
                    }
                    Err(e) => {
                        tracing::warn!(seq = record.seq, %e, "unusable schedule_added record")
                    }
                }
            }
            return;
        }
        if let Event::ScheduleRemoved { .. } = &record.event {
            self.by_name.remove(name);
            return;
        }
        let Some(s) = self.by_name.get_mut(name) else {
            return;
        };
        let mut advance = |slot: &str| {
            if let Some(t) = parse_time(slot) {
                if s.last_slot.is_none_or(|l| t > l) {
                    s.last_slot = Some(t);
                }
            }
        };
        match &record.event {
            Event::ScheduleFired {
                slot,
                covers,
                job_ids,
                at,
                ..
            } => {
                advance(slot);
                s.last_fired = Some(Firing {
                    slot: slot.clone(),
                    covers: *covers,
                    job_ids: job_ids.clone(),
                    reason: None,
                    at: at.clone(),
                });
            }
            Event::ScheduleSkipped {
                slot,
                covers,
                reason,
                at,
                ..
            } => {
                advance(slot);
                s.last_skipped = Some(Firing {
                    slot: slot.clone(),
                    covers: *covers,
                    job_ids: Vec::new(),
                    reason: Some(reason.clone()),
                    at: at.clone(),
                });
            }
            Event::ScheduleMissed {
                first_slot,
                slot,
                count,
                count_capped,
                at,
                ..
            } => {
                advance(slot);
                s.last_missed = Some(MissedRecord {
                    first_slot: first_slot.clone(),
                    slot: slot.clone(),
                    count: *count,
                    count_capped: *count_capped,
                    at: at.clone(),
                });
            }
            Event::SchedulePaused { by, reason, at, .. } => {
                s.paused = true;
                s.pause = Some(PauseInfo {
                    by: by.clone(),
                    reason: reason.clone(),
                    at: at.clone(),
                });
            }
            Event::ScheduleResumed { at, .. } => {
                s.paused = false;
                s.pause = None;
                if let Some(t) = parse_time(at) {
                    if t > s.active_since {
                        s.active_since = t;
                    }
                }
            }
            _ => {}
        }
    }

    pub fn get(&self, name: &str) -> Option<&Schedule> {
        self.by_name.get(name)
    }

    /// Every schedule, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Schedule> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Checks a schedule name: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), ScheduleError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ScheduleError::BadName(name.to_owned()))
    }
}

/// The trigger as asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerSpec {
    /// A cron expression and an optional IANA zone (default: UTC; channels have no time
    /// zone setting).
    Cron { expr: String, tz: Option<String> },
    /// An interval such as `30m`.
    Every(String),
}

/// Where inputs come from, as asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputsSpec {
    None,
    File(PathBuf),
    Url(String),
    Rows(Vec<BTreeMap<String, String>>),
}

/// Every row binds to the playbook's inputs (else the first bad row, numbered from 1).
fn check_rows(
    playbook: &Playbook,
    source: &str,
    rows: &[BTreeMap<String, String>],
) -> Result<(), ScheduleError> {
    for (i, row) in rows.iter().enumerate() {
        if let Err(problems) = playbook.bind_inputs(row) {
            return Err(ScheduleError::Inputs(format!(
                "{source}: row {}: {}",
                i + 1,
                problems.join("; ")
            )));
        }
    }
    Ok(())
}

/// A `schedule add` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddRequest {
    pub name: String,
    /// A playbook file, or the name of one (`<data>/playbooks/`, `./playbooks/`, embedded).
    pub playbook: String,
    pub trigger: TriggerSpec,
    pub inputs: InputsSpec,
    pub case_from: Option<String>,
    pub jobs: usize,
    /// Whether the request may name files (the CLI run by the data directory's owner). A
    /// request through the daemon's API may not: its playbook is a name or the hash of a
    /// stored text, its inputs rows or a URL, and no path it names is ever opened.
    pub files_allowed: bool,
}

/// Validates a request into a schedule (nothing recorded). `by` must be an operator of the
/// playbook's channel.
pub fn prepare(
    request: &AddRequest,
    config: &Config,
    data_dir: &Path,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Schedule, ScheduleError> {
    validate_name(&request.name)?;
    let trigger = match &request.trigger {
        TriggerSpec::Cron { expr, tz } => Trigger::Cron {
            expr: parse_cron(expr)?,
            tz: match tz {
                Some(name) => parse_tz(name)?,
                None => Tz::UTC,
            },
        },
        TriggerSpec::Every(text) => Trigger::Every(parse_every(text)?),
    };
    if request.jobs == 0 {
        return Err(ScheduleError::Invalid(
            "--jobs must be at least 1".to_owned(),
        ));
    }
    // The playbook: a file if one exists at that path, else a playbook name.
    let given = Path::new(&request.playbook);
    let by_hash = crate::evidence::text::is_sha256(&request.playbook);
    let looks_like_path = request.playbook.contains('/')
        || request.playbook.ends_with(".yaml")
        || request.playbook.ends_with(".yml");
    if !request.files_allowed {
        if !by_hash && !crate::playbook::embedded::is_playbook_name(&request.playbook) {
            return Err(ScheduleError::Playbook {
                playbook: crate::display::visible(&request.playbook).into_owned(),
                message: "refused: give a playbook name or the SHA-256 of a stored playbook                           text; the daemon opens no file a request names"
                    .to_owned(),
            });
        }
        if matches!(request.inputs, InputsSpec::File(_)) {
            return Err(ScheduleError::Inputs(
                "refused: the daemon opens no inputs file a request names; send the rows                  (`inputs_rows`) or an inputs URL"
                    .to_owned(),
            ));
        }
    }
    let playbook_file = if by_hash || !request.files_allowed {
        None
    } else if given.is_file() {
        Some(
            std::fs::canonicalize(given).map_err(|e| ScheduleError::Playbook {
                playbook: request.playbook.clone(),
                message: e.to_string(),
            })?,
        )
    } else if looks_like_path {
        return Err(ScheduleError::Playbook {
            playbook: request.playbook.clone(),
            message: "no such file".to_owned(),
        });
    } else {
        None
    };
    let loaded = match &playbook_file {
        Some(file) => crate::playbook::load(file, Some(config)),
        None if by_hash => stored_playbook(data_dir, &request.playbook, Some(config)),
        None => crate::playbook::embedded::find_playbook(data_dir, &request.playbook, Some(config)),
    }
    .map_err(|d| ScheduleError::Playbook {
        playbook: request.playbook.clone(),
        message: d.to_string(),
    })?;
    if matches!(loaded.mode, Mode::Submit | Mode::Login) {
        return Err(ScheduleError::Playbook {
            playbook: request.playbook.clone(),
            message: format!(
                "mode {} cannot be scheduled (schedules run read_only and draft playbooks)",
                loaded.mode
            ),
        });
    }
    let secrets: Vec<&str> = loaded.secret_inputs().collect();
    if !secrets.is_empty() {
        return Err(ScheduleError::Playbook {
            playbook: request.playbook.clone(),
            message: format!(
                "it has secret inputs ({}), which scheduled runs cannot be given",
                secrets.join(", ")
            ),
        });
    }
    let channel = config
        .channel(&loaded.channel)
        .map_err(|e| ScheduleError::Playbook {
            playbook: request.playbook.clone(),
            message: e.to_string(),
        })?;
    channel
        .authorize_operator(by)
        .map_err(|e| ScheduleError::Refused(e.to_string()))?;
    let declared: Vec<&str> = loaded.inputs.iter().map(|i| i.name.as_str()).collect();
    if let Some(field) = &request.case_from {
        if !declared.contains(&field.as_str()) {
            return Err(ScheduleError::Invalid(format!(
                "--case-from `{field}` is not an input of playbook {} (inputs: {})",
                loaded.name,
                if declared.is_empty() {
                    "none".to_owned()
                } else {
                    declared.join(", ")
                }
            )));
        }
    }
    let inputs = match &request.inputs {
        InputsSpec::None => {
            let required: Vec<&str> = loaded
                .inputs
                .iter()
                .filter(|i| i.required)
                .map(|i| i.name.as_str())
                .collect();
            if !required.is_empty() {
                return Err(ScheduleError::Inputs(format!(
                    "playbook {} needs inputs ({}): give --inputs FILE or --inputs-from-url URL",
                    loaded.name,
                    required.join(", ")
                )));
            }
            if request.case_from.is_some() {
                return Err(ScheduleError::Inputs(
                    "--case-from needs --inputs or --inputs-from-url".to_owned(),
                ));
            }
            InputSource::None
        }
        InputsSpec::Rows(rows) => {
            check_rows(&loaded, "inputs_rows", rows)?;
            InputSource::Rows(rows.clone())
        }
        InputsSpec::File(path) => {
            let rows =
                crate::batch::read_rows(path).map_err(|e| ScheduleError::Inputs(e.to_string()))?;
            check_rows(&loaded, &path.display().to_string(), &rows)?;
            let abs = std::fs::canonicalize(path)
                .map_err(|e| ScheduleError::Inputs(format!("{}: {e}", path.display())))?;
            InputSource::File(abs)
        }
        InputsSpec::Url(text) => {
            let url = url::Url::parse(text)
                .map_err(|e| ScheduleError::Inputs(format!("`{text}` is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ScheduleError::Inputs(format!(
                    "`{text}`: only http and https URLs are supported"
                )));
            }
            // The URL goes into the journal: no credentials in it.
            if !url.username().is_empty() || url.password().is_some() {
                return Err(ScheduleError::Inputs(
                    "the inputs URL carries a user name or password, which would be recorded \
                     in the journal; leave credentials out of it"
                        .to_owned(),
                ));
            }
            check_inputs_url(&url, &config.serve.inputs_url_allow)
                .map_err(ScheduleError::Inputs)?;
            InputSource::Url(url.to_string())
        }
    };
    // Records carry millisecond times; the schedule starts at the time its record says.
    let created_at = parse_time(&timestamp(now)).unwrap_or(now);
    Ok(Schedule {
        name: request.name.clone(),
        playbook: request.playbook.clone(),
        playbook_file,
        playbook_name: loaded.name.clone(),
        channel: loaded.channel.clone(),
        mode: loaded.mode.as_str().to_owned(),
        playbook_sha256: loaded.sha256.clone(),
        trigger,
        inputs,
        case_from: request.case_from.clone(),
        jobs: request.jobs,
        paused: false,
        pause: None,
        created_by: by.to_owned(),
        created_at,
        active_since: created_at,
        last_slot: None,
        last_fired: None,
        last_skipped: None,
        last_missed: None,
    })
}

/// The playbook whose exact text is stored under `sha256` in the data directory's
/// playbook texts (re-hashed on read).
fn stored_playbook(
    data_dir: &Path,
    sha256: &str,
    config: Option<&Config>,
) -> Result<Playbook, crate::playbook::Diagnostics> {
    let path = crate::evidence::text::path_for(data_dir, sha256);
    let bytes = crate::evidence::text::get(data_dir, sha256).map_err(|e| {
        crate::playbook::Diagnostics::io(&path, &std::io::Error::other(e.to_string()))
    })?;
    crate::playbook::parse(&path, &bytes, config)
}

/// `schedule add`: validates the request and records `schedule_added`. A refusal (the user
/// is not an operator of the channel) is recorded as `refused`.
pub fn add(
    store: &Store,
    config: &Config,
    data_dir: &Path,
    request: &AddRequest,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Schedule, ScheduleError> {
    validate_name(&request.name)?;
    if Schedules::load(store)?.get(&request.name).is_some() {
        return Err(ScheduleError::Duplicate(request.name.clone()));
    }
    let schedule = match prepare(request, config, data_dir, by, now) {
        Ok(s) => s,
        Err(ScheduleError::Refused(reason)) => {
            store.append(Event::Refused {
                action: "schedule_add".to_owned(),
                approval_id: None,
                run_id: None,
                user: by.to_owned(),
                reason: format!("schedule {}: {reason}", request.name),
                at: timestamp(now),
            })?;
            return Err(ScheduleError::Refused(reason));
        }
        Err(e) => return Err(e),
    };
    store.append(schedule.added_event())?;
    Ok(schedule)
}

fn live(store: &Store, name: &str) -> Result<Schedule, ScheduleError> {
    Schedules::load(store)?
        .get(name)
        .cloned()
        .ok_or_else(|| ScheduleError::Unknown(name.to_owned()))
}

/// `schedule pause`: records `schedule_paused` (refused if already paused).
pub fn pause(
    store: &Store,
    name: &str,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), ScheduleError> {
    let s = live(store, name)?;
    if let Some(p) = s.pause {
        return Err(ScheduleError::AlreadyPaused {
            name: name.to_owned(),
            by: p.by,
            at: p.at,
            reason: p.reason,
        });
    }
    if reason.trim().is_empty() {
        return Err(ScheduleError::Invalid(
            "--reason must say why the schedule is paused".to_owned(),
        ));
    }
    store.append(Event::SchedulePaused {
        name: name.to_owned(),
        by: by.to_owned(),
        reason: reason.to_owned(),
        at: timestamp(now),
    })?;
    Ok(())
}

/// `schedule resume`: records `schedule_resumed` (refused if not paused).
pub fn resume(
    store: &Store,
    name: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<(), ScheduleError> {
    let s = live(store, name)?;
    if !s.paused {
        return Err(ScheduleError::NotPaused(name.to_owned()));
    }
    store.append(Event::ScheduleResumed {
        name: name.to_owned(),
        by: by.to_owned(),
        at: timestamp(now),
    })?;
    Ok(())
}

/// `schedule remove`: records `schedule_removed`; the name may be added again.
pub fn remove(
    store: &Store,
    name: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<(), ScheduleError> {
    live(store, name)?;
    store.append(Event::ScheduleRemoved {
        name: name.to_owned(),
        by: by.to_owned(),
        at: timestamp(now),
    })?;
    Ok(())
}

/// Whether a recorded firing still has queued or claimed jobs (the `previous_running`
/// argument of [`decide`]). A job the queue no longer knows counts as finished.
pub fn firing_running(firing: &Firing, queue: &dyn RunQueue) -> Result<bool, QueueError> {
    for id in &firing.job_ids {
        if let Some(job) = queue.get(JobId(*id))? {
            if matches!(job.state, JobState::Queued | JobState::Claimed) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Jobs enqueued for `schedule`'s `slot`: when the daemon finds some for a slot [`decide`]
/// says to fire, it enqueued them and stopped before recording `schedule_fired` (a crash
/// between the two). It must then record them instead of enqueuing again.
pub fn unrecorded_jobs(schedule: &str, slot: DateTime<Utc>, jobs: &[Job]) -> Vec<JobId> {
    jobs.iter()
        .filter(|j| j.spec.schedule.as_deref() == Some(schedule) && j.spec.slot == Some(slot))
        .map(|j| j.id)
        .collect()
}

/// Whether a schedule may fetch its inputs from `url`: a URL that starts with one of the
/// `allow` prefixes (`[serve] inputs_url_allow`) may; any other may only if its host is a
/// name or address that resolves to public addresses only (never loopback, private,
/// link-local, unique-local or unspecified). Checked when the schedule is added and again
/// before every fetch (a name may resolve elsewhere later).
pub fn check_inputs_url(url: &url::Url, allow: &[String]) -> Result<(), String> {
    let text = url.as_str();
    if allow
        .iter()
        .any(|p| !p.is_empty() && text.starts_with(p.as_str()))
    {
        return Ok(());
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("`{text}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    // A name that does not resolve now cannot be fetched now either; it is checked again
    // before each fetch.
    let addrs: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .map(|a| a.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return Err(format!(
            "`{text}` points at this host; schedules fetch inputs from there only when \
             [serve] inputs_url_allow lists the URL's prefix"
        ));
    }
    if let Some(ip) = addrs.iter().find(|ip| is_internal(**ip)) {
        return Err(format!(
            "`{text}` points at {ip}, an address on this host or a private network; schedules \
             fetch inputs from there only when [serve] inputs_url_allow lists the URL's prefix"
        ));
    }
    Ok(())
}

fn is_internal(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(v4.into()))
        }
    }
}
