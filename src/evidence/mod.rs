//! The evidence store: the only module that persists anything (and the only one that
//! imports sled).
//!
//! Ground truth is (a) content-addressed PNG files under `screenshots/` and (b) the
//! append-only, hash-chained journal `journal.jsonl`, fsync'd before a record is
//! acknowledged. The sled index under `index/` answers queries and is rebuilt from the
//! journal and the files whenever it is missing, behind or damaged.
//!
//! CONTRACT (implemented by the evidence work; signatures are fixed, bodies are not):

mod event;

pub use event::{Event, RunId};

use std::path::{Path, PathBuf};

/// Errors of the evidence store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("evidence store i/o error at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("evidence store: {0}")]
    Other(String),
}

/// A record as stored: chain fields plus the event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Hash of the previous record (64 zeros for the first).
    pub prev: String,
    /// SHA-256 over the canonical serialization of everything but `hash`.
    pub hash: String,
    pub event: Event,
}

/// What `append` acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: String,
}

/// A stored screenshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PngInfo {
    pub sha256: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    /// Every pixel has the same colour.
    pub blank: bool,
    /// Absolute path of the stored file.
    pub path: PathBuf,
}

/// Handle to an open store; cheap to clone, safe to share between tasks and threads.
#[derive(Clone)]
pub struct Store {
    _private: (),
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(_data_dir: &Path) -> Result<Store, StoreError> {
        todo!("evidence store")
    }

    /// Appends one record: chained, fsync'd, indexed. Returns once durable.
    pub fn append(&self, _event: Event) -> Result<Appended, StoreError> {
        todo!("evidence store")
    }

    /// Stores a PNG under its SHA-256 (idempotent), after decoding it with `image`.
    pub fn put_png(&self, _png: &[u8]) -> Result<PngInfo, StoreError> {
        todo!("evidence store")
    }

    /// The identifier of this process's lock (goes into `RunStarted.owner`).
    pub fn owner(&self) -> String {
        todo!("evidence store")
    }

    /// All records of one run, in sequence order.
    pub fn run_records(&self, _run_id: &str) -> Result<Vec<Record>, StoreError> {
        todo!("evidence store")
    }
}
