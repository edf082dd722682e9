//! The emergency pause, engine side: a global or per-channel stop.
//!
//! A pause (1) starts no new run ([`crate::runner::Engine::run`] answers `paused`), (2) stops
//! every in-flight run before its next step (`RunFinished{paused}`), and (3) at once makes
//! the network guard of every open browser context of the paused channel (every channel for
//! a global pause) fail every write and every request outside the allowed origins. The guard
//! reads a lock-free [`PauseSwitch`] the board owns, on every request it decides, so the
//! pause needs no CDP call and works while a browser hangs or the queue is full.
//!
//! Pause and resume are `pause` journal records (`on`, `user`, `reason`, `at`, `channel`;
//! no `channel` = global): the journal is the ground truth, and the board is its fold. A
//! change is appended (fsync'd) before the board's state changes; only the guard's switch is
//! closed *before* the append of a pause (denying writes early is always safe) and opened
//! only *after* the append of a resume.
//!
//! Other processes on the same data directory (a `clerk run` while `clerk pause` runs in
//! another terminal, no daemon) learn of a change through `<data>/pause.json`: after each
//! record the state folded from the journal (under `locks/pause.lock`, so concurrent writers
//! agree) is written to a temporary file, fsync'd and renamed over it. Each board checks the
//! file's stamp every [`WATCH_EVERY`] on a watcher thread, and again before every run and
//! every step, and adopts a state whose `seq` is newer than its own. The file is rebuilt from
//! the journal when a board opens; it is a notice, never the record.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::browser::PauseSwitch;
use crate::channel::Config;
use crate::evidence::lock::FileLock;
use crate::evidence::{timestamp, Event, Record, Store, StoreError};

/// The file other processes watch.
pub const PAUSE_FILE: &str = "pause.json";
/// Serializes writers of [`PAUSE_FILE`] across processes.
const PAUSE_LOCK: &str = "locks/pause.lock";
/// How long a pause waits for writes already let through to be handed to Chromium.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);
/// How often the watcher looks at [`PAUSE_FILE`].
pub const WATCH_EVERY: Duration = Duration::from_millis(200);

/// What a pause or resume applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PauseScope {
    /// Every channel.
    Global,
    Channel(String),
}

impl PauseScope {
    /// `None` (global) or the channel.
    pub fn from_channel(channel: Option<&str>) -> PauseScope {
        match channel {
            Some(c) => PauseScope::Channel(c.to_owned()),
            None => PauseScope::Global,
        }
    }

    fn channel(&self) -> Option<&str> {
        match self {
            PauseScope::Global => None,
            PauseScope::Channel(c) => Some(c),
        }
    }
}

impl std::fmt::Display for PauseScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PauseScope::Global => f.write_str("everything"),
            PauseScope::Channel(c) => write!(f, "channel {c}"),
        }
    }
}

/// One pause in effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseInfo {
    /// `None`: global.
    pub channel: Option<String>,
    pub user: String,
    pub reason: String,
    /// The pause record's `at`.
    pub since: String,
    /// The pause record's seq.
    pub seq: u64,
}

impl PauseInfo {
    /// `paused by U since T: R`, the text runs stopped by this pause carry.
    pub fn message(&self) -> String {
        format!(
            "paused by {} since {}: {}",
            self.user, self.since, self.reason
        )
    }
}

/// Every pause in effect, folded from the journal's `pause` records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseState {
    /// Seq of the last pause record folded in (0: none).
    pub seq: u64,
    pub global: Option<PauseInfo>,
    pub channels: BTreeMap<String, PauseInfo>,
}

impl PauseState {
    /// Folds pause records (in seq order; other records are ignored).
    pub fn fold(records: &[Record]) -> PauseState {
        let mut state = PauseState::default();
        for r in records {
            state.apply(r);
        }
        state
    }

    /// Applies one record (ignored unless it is a pause record newer than the state).
    pub fn apply(&mut self, record: &Record) {
        let Event::Pause {
            on,
            user,
            reason,
            at,
            channel,
        } = &record.event
        else {
            return;
        };
        if record.seq <= self.seq {
            return;
        }
        self.seq = record.seq;
        let info = PauseInfo {
            channel: channel.clone(),
            user: user.clone(),
            reason: reason.clone(),
            since: at.clone(),
            seq: record.seq,
        };
        match (channel, on) {
            (None, true) => self.global = Some(info),
            (None, false) => self.global = None,
            (Some(c), true) => {
                self.channels.insert(c.clone(), info);
            }
            (Some(c), false) => {
                self.channels.remove(c);
            }
        }
    }

    /// The pause that stops `channel` now: the global one first.
    pub fn paused(&self, channel: &str) -> Option<&PauseInfo> {
        self.global.as_ref().or_else(|| self.channels.get(channel))
    }

    /// Whether anything is paused.
    pub fn any(&self) -> bool {
        self.global.is_some() || !self.channels.is_empty()
    }

    fn scope_on(&self, scope: &PauseScope) -> bool {
        match scope {
            PauseScope::Global => self.global.is_some(),
            PauseScope::Channel(c) => self.channels.contains_key(c),
        }
    }
}

/// The longest pause or resume reason clerk keeps (checked here, for every front end).
pub const MAX_REASON_CHARS: usize = 1000;

/// Why a pause or resume was not made.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("`{user}` may not {action}: only the operators and reviewers of a channel in {config} may (refused and recorded)")]
    Unauthorized {
        user: String,
        action: &'static str,
        config: String,
    },
    #[error("unknown channel `{channel}` (channels: {known})")]
    UnknownChannel { channel: String, known: String },
    #[error("a reason is required to {0}")]
    NoReason(&'static str),
    #[error("the reason has {0} characters; at most {MAX_REASON_CHARS}")]
    ReasonTooLong(usize),
    #[error("{0} is not paused")]
    NotPaused(PauseScope),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the pause task failed: {0}")]
    Task(String),
}

impl PauseError {
    /// The CLI's exit code for it.
    pub fn exit_code(&self) -> u8 {
        match self {
            PauseError::Unauthorized { .. } => 3,
            PauseError::UnknownChannel { .. }
            | PauseError::NoReason(_)
            | PauseError::ReasonTooLong(_) => 2,
            PauseError::NotPaused(_) => 1,
            PauseError::Store(_) | PauseError::Task(_) => 1,
        }
    }
}

/// A pause or resume that was recorded.
#[derive(Debug, Clone)]
pub struct Changed {
    /// Seq of its journal record.
    pub seq: u64,
    /// The record's `at`.
    pub at: String,
    /// Every pause in effect afterwards.
    pub state: PauseState,
    /// Set when [`PAUSE_FILE`] could not be written: other processes learn of the change
    /// only when their board next opens.
    pub file_error: Option<String>,
}

/// (inode, length, mtime) of [`PAUSE_FILE`], to notice a rename over it.
type Stamp = (u64, u64, Option<std::time::SystemTime>);

struct Inner {
    store: Store,
    config: Arc<Config>,
    data_dir: PathBuf,
    state: Mutex<PauseState>,
    /// The guard's side of the switch: one flag for everything, one per channel (created
    /// on first use, never replaced, so every guard holding one sees every flip).
    global: Arc<AtomicBool>,
    channels: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// Held (shared) by a run from its pause check until its `RunStarted` is durable, and
    /// (exclusive) by a pause of this process around its append: no run of this process
    /// starts after a pause record.
    gate: tokio::sync::RwLock<()>,
    seen: Mutex<Option<Stamp>>,
}

/// The pause state of one engine; cheap to clone.
#[derive(Clone)]
pub struct PauseBoard {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl PauseBoard {
    /// Folds the journal's pause records, rewrites [`PAUSE_FILE`] from them and starts
    /// watching it.
    pub fn open(
        store: &Store,
        config: Arc<Config>,
        data_dir: &Path,
    ) -> Result<PauseBoard, StoreError> {
        let state = PauseState::fold(&store.pause_records()?);
        let board = PauseBoard::with_state(store, config, data_dir, state);
        if let Err(e) = board.write_file() {
            tracing::warn!("cannot write {}: {e}", board.file().display());
        }
        board.note_stamp();
        board.watch();
        Ok(board)
    }

    /// A board that stops everything: used when the journal's pause records cannot be read
    /// (clerk does not run without knowing whether it is paused).
    pub fn failed_closed(
        store: &Store,
        config: Arc<Config>,
        data_dir: &Path,
        why: String,
    ) -> PauseBoard {
        let state = PauseState {
            seq: 0,
            global: Some(PauseInfo {
                channel: None,
                user: "clerk".into(),
                reason: format!("the pause state could not be read from the journal: {why}"),
                since: timestamp(Utc::now()),
                seq: 0,
            }),
            channels: BTreeMap::new(),
        };
        let board = PauseBoard::with_state(store, config, data_dir, state);
        board.watch();
        board
    }

    fn with_state(
        store: &Store,
        config: Arc<Config>,
        data_dir: &Path,
        state: PauseState,
    ) -> PauseBoard {
        PauseBoard {
            inner: Arc::new(Inner {
                store: store.clone(),
                config,
                data_dir: data_dir.to_owned(),
                global: Arc::new(AtomicBool::new(state.global.is_some())),
                state: Mutex::new(state),
                channels: Mutex::default(),
                gate: tokio::sync::RwLock::new(()),
                seen: Mutex::new(None),
            }),
        }
    }

    /// `<data>/pause.json`.
    pub fn file(&self) -> PathBuf {
        self.inner.data_dir.join(PAUSE_FILE)
    }

    /// The switch a browser context of `channel` gives its guard.
    pub fn switch(&self, channel: &str) -> PauseSwitch {
        PauseSwitch::new(self.inner.global.clone(), self.channel_flag(channel))
    }

    fn channel_flag(&self, channel: &str) -> Arc<AtomicBool> {
        let state = lock(&self.inner.state);
        let mut flags = lock(&self.inner.channels);
        flags
            .entry(channel.to_owned())
            .or_insert_with(|| Arc::new(AtomicBool::new(state.channels.contains_key(channel))))
            .clone()
    }

    /// The pause that stops `channel` now, if any (global first).
    pub fn is_paused(&self, channel: &str) -> Option<PauseInfo> {
        lock(&self.inner.state).paused(channel).cloned()
    }

    /// Whether everything is paused now.
    pub fn is_paused_globally(&self) -> bool {
        lock(&self.inner.state).global.is_some()
    }

    /// Every pause in effect (for `clerk status` and `clerk pause`).
    pub fn state(&self) -> PauseState {
        lock(&self.inner.state).clone()
    }

    /// Waits until no pause of this process is being recorded, and holds it off until the
    /// guard is dropped: a run holds it from its pause check until its `RunStarted` record is
    /// durable.
    pub async fn start_gate(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.inner.gate.read().await
    }

    /// Who may pause and resume: any operator or reviewer of any channel.
    fn authorized(&self, user: &str) -> bool {
        self.inner
            .config
            .channels
            .iter()
            .any(|c| c.operators.iter().any(|o| o == user) || c.reviewers.iter().any(|r| r == user))
    }

    /// Switches the pause on for `scope`. The guard's switch closes first; then the record
    /// is appended (fsync'd), the board's state changes, and [`PAUSE_FILE`] is rewritten.
    /// Pausing what is paused already records a new pause (the latest user and reason).
    pub async fn pause(
        &self,
        scope: PauseScope,
        user: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Changed, PauseError> {
        self.change(true, scope, user, reason, now).await
    }

    /// Switches the pause off for `scope` (a reason is required too). The record is
    /// appended before anything opens. Resuming a channel while everything is paused leaves
    /// it stopped by the global pause.
    pub async fn resume(
        &self,
        scope: PauseScope,
        user: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Changed, PauseError> {
        self.change(false, scope, user, reason, now).await
    }

    async fn change(
        &self,
        on: bool,
        scope: PauseScope,
        user: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Changed, PauseError> {
        let action = if on { "pause" } else { "resume" };
        let at = timestamp(now);
        if !self.authorized(user) {
            let config = self.inner.config.path.display().to_string();
            self.append(Event::Refused {
                action: action.into(),
                approval_id: None,
                run_id: None,
                user: user.to_owned(),
                reason: format!(
                    "{action} {scope}: `{user}` is not an operator or reviewer of any channel ({reason})"
                ),
                at: at.clone(),
            })
            .await?;
            return Err(PauseError::Unauthorized {
                user: user.to_owned(),
                action,
                config,
            });
        }
        if reason.trim().is_empty() {
            return Err(PauseError::NoReason(action));
        }
        let n = reason.chars().count();
        if n > MAX_REASON_CHARS {
            return Err(PauseError::ReasonTooLong(n));
        }
        if let PauseScope::Channel(c) = &scope {
            if let Err(e) = self.inner.config.channel(c) {
                let known = self
                    .inner
                    .config
                    .channels
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                tracing::debug!("{e}");
                return Err(PauseError::UnknownChannel {
                    channel: c.clone(),
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known
                    },
                });
            }
        }
        self.refresh();
        if !on && !self.state().scope_on(&scope) {
            return Err(PauseError::NotPaused(scope));
        }
        let _exclusive = self.inner.gate.write().await;
        if on {
            // Deny writes before anything else: safe whatever happens next. Then let the
            // writes decided just before be handed to Chromium, so none leaves after the
            // record (bounded: a hung browser does not hold the pause up).
            self.flag(&scope).store(true, Ordering::SeqCst);
            if !crate::browser::writes_settled(SETTLE_LIMIT).await {
                tracing::warn!("a write let through before the pause is still being sent");
            }
        }
        let appended = self
            .append(Event::Pause {
                on,
                user: user.to_owned(),
                reason: reason.to_owned(),
                at: at.clone(),
                channel: scope.channel().map(str::to_owned),
            })
            .await;
        let seq = match appended {
            Ok(seq) => seq,
            Err(e) => {
                // Not recorded: the switch goes back to what the state says.
                self.sync_flags(&self.state());
                return Err(e);
            }
        };
        // The record is durable: the state follows it, folded from the journal (records
        // other processes appended meanwhile included), and the file tells other processes.
        let written = {
            let board = self.clone();
            tokio::task::spawn_blocking(move || board.write_file())
                .await
                .map_err(|e| PauseError::Task(e.to_string()))?
        };
        let (state, file_error) = match written {
            Ok(state) => (state, None),
            Err(e) => {
                tracing::warn!("cannot write {}: {e}", self.file().display());
                let mut state = self.state();
                if let Ok(records) = self.inner.store.pause_records() {
                    state = PauseState::fold(&records);
                }
                (state, Some(e.to_string()))
            }
        };
        self.adopt(state.clone());
        self.note_stamp();
        Ok(Changed {
            seq,
            at,
            state,
            file_error,
        })
    }

    async fn append(&self, event: Event) -> Result<u64, PauseError> {
        let store = self.inner.store.clone();
        let appended = tokio::task::spawn_blocking(move || store.append(event))
            .await
            .map_err(|e| PauseError::Task(e.to_string()))??;
        Ok(appended.seq)
    }

    fn flag(&self, scope: &PauseScope) -> Arc<AtomicBool> {
        match scope {
            PauseScope::Global => self.inner.global.clone(),
            PauseScope::Channel(c) => self.channel_flag(c),
        }
    }

    /// Sets every switch from `state`.
    fn sync_flags(&self, state: &PauseState) {
        self.inner
            .global
            .store(state.global.is_some(), Ordering::SeqCst);
        for (channel, flag) in lock(&self.inner.channels).iter() {
            flag.store(state.channels.contains_key(channel), Ordering::SeqCst);
        }
    }

    /// Takes `state` if it is not older than the board's (never goes back), and sets every
    /// switch from it.
    fn adopt(&self, state: PauseState) {
        let mut current = lock(&self.inner.state);
        if state.seq < current.seq {
            return;
        }
        *current = state;
        self.sync_flags(&current);
    }

    /// Folds the journal's pause records and writes them to [`PAUSE_FILE`] atomically
    /// (temporary file, fsync, rename, fsync of the directory), under `locks/pause.lock`.
    fn write_file(&self) -> Result<PauseState, StoreError> {
        let dir = &self.inner.data_dir;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        let locks = dir.join("locks");
        std::fs::create_dir_all(&locks).map_err(io(&locks))?;
        let _lock = FileLock::exclusive(&dir.join(PAUSE_LOCK))?;
        let state = PauseState::fold(&self.inner.store.pause_records()?);
        let bytes = serde_json::to_vec_pretty(&state)
            .map_err(|e| StoreError::Other(format!("serializing the pause state: {e}")))?;
        let tmp = dir.join(format!("{PAUSE_FILE}.tmp"));
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        let file = self.file();
        std::fs::rename(&tmp, &file).map_err(io(&file))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(state)
    }

    fn stamp(&self) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(self.file()).ok()?;
        Some((m.ino(), m.len(), m.modified().ok()))
    }

    fn note_stamp(&self) {
        let stamp = self.stamp();
        *lock(&self.inner.seen) = stamp;
    }

    /// Adopts [`PAUSE_FILE`] if it changed since last seen and says something newer (a
    /// pause or resume made by another process). Cheap when nothing changed: one `stat`.
    pub fn refresh(&self) {
        let stamp = self.stamp();
        {
            let mut seen = lock(&self.inner.seen);
            if *seen == stamp {
                return;
            }
            *seen = stamp;
        }
        let Ok(bytes) = std::fs::read(self.file()) else {
            return;
        };
        match serde_json::from_slice::<PauseState>(&bytes) {
            Ok(state) => {
                if state.seq > lock(&self.inner.state).seq {
                    tracing::info!(
                        paused = state.any(),
                        "pause state changed by another process"
                    );
                    self.adopt(state);
                }
            }
            Err(e) => tracing::warn!("ignoring an unreadable {}: {e}", self.file().display()),
        }
    }

    /// Starts the watcher thread; it ends when the last clone of the board is dropped.
    fn watch(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("clerk-pause-watch".into())
            .spawn(move || loop {
                std::thread::sleep(WATCH_EVERY);
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                PauseBoard { inner }.refresh();
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot watch the pause file: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, on: bool, channel: Option<&str>) -> Record {
        Record {
            seq,
            ts: "t".into(),
            prev: String::new(),
            hash: String::new(),
            event: Event::Pause {
                on,
                user: format!("u{seq}"),
                reason: "r".into(),
                at: format!("at{seq}"),
                channel: channel.map(str::to_owned),
            },
        }
    }

    #[test]
    fn fold_keeps_the_latest_record_per_scope() {
        let s = PauseState::fold(&[
            rec(1, true, Some("a")),
            rec(2, true, None),
            rec(3, true, Some("b")),
            rec(4, false, None),
            rec(5, false, Some("a")),
        ]);
        assert_eq!(s.seq, 5);
        assert!(s.global.is_none());
        assert_eq!(s.paused("a"), None);
        let b = s.paused("b").unwrap();
        assert_eq!((b.user.as_str(), b.since.as_str()), ("u3", "at3"));
        let g = PauseState::fold(&[rec(1, true, Some("b")), rec(2, true, None)]);
        assert_eq!(
            g.paused("b").unwrap().seq,
            2,
            "the global pause comes first"
        );
        assert_eq!(
            g.paused("zzz").unwrap().message(),
            "paused by u2 since at2: r"
        );
    }
}
