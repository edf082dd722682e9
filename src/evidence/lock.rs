//! File locks (flock via fs2) that keep processes sharing one data directory from forking
//! the chain, and that tell whether the process that started a run is still alive.
//!
//! flock locks belong to an open file description: two `File`s opened separately on the same
//! path exclude each other even inside one process, which is what lets one process host
//! several independent [`super::Store`]s (the tests use that to simulate processes).
//!
//! - `journal.lock`: exclusive around "read the chain head from the journal's tail, append,
//!   fsync"; shared while a reader (verify, export) takes its snapshot of the journal.
//! - `locks/index.lock`: held by the one store that owns the sled index under `index/`.
//!   Others use an ephemeral index, so sled never sees two processes.
//! - `locks/<owner>.lock`: held for the life of each open store; a run whose owner lock is
//!   free belongs to a dead process.
//! - `queue/queue.lock`: held by the one `queue::EmbeddedQueue` open on a data directory.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::StoreError;

/// An acquired flock; released when dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    fn open(path: &Path) -> Result<File, StoreError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })
    }

    /// Blocks until the exclusive lock is held.
    pub fn exclusive(path: &Path) -> Result<FileLock, StoreError> {
        Self::acquire(path, fs2::FileExt::lock_exclusive)
    }

    /// Blocks until a shared lock is held.
    pub fn shared(path: &Path) -> Result<FileLock, StoreError> {
        Self::acquire(path, fs2::FileExt::lock_shared)
    }

    fn acquire(
        path: &Path,
        lock: fn(&std::fs::File) -> std::io::Result<()>,
    ) -> Result<FileLock, StoreError> {
        let file = Self::open(path)?;
        lock(&file).map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(FileLock {
            file,
            path: path.to_owned(),
        })
    }

    /// Takes the exclusive lock if nobody holds it; `Ok(None)` when someone does.
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>, StoreError> {
        let file = Self::open(path)?;
        match fs2::FileExt::try_lock_exclusive(&file) {
            Ok(()) => Ok(Some(FileLock {
                file,
                path: path.to_owned(),
            })),
            Err(e) if is_contended(&e) => Ok(None),
            Err(source) => Err(StoreError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The locked file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first makes it immediate even
        // if a clone of the descriptor were alive.
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

fn is_contended(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

/// True when an owner id can safely name a file under `locks/`.
pub fn valid_owner(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= 128
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether the store named `owner` is alive: its lock file exists and is locked by someone.
///
/// An owner id that cannot be a lock file name (not produced by this module) has no live
/// process behind it.
pub fn owner_alive(locks_dir: &Path, owner: &str) -> Result<bool, StoreError> {
    if !valid_owner(owner) {
        return Ok(false);
    }
    let path = locks_dir.join(format!("{owner}.lock"));
    // Never create it: a missing file means the owner is gone.
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(StoreError::Io { path, source }),
    };
    match fs2::FileExt::try_lock_shared(&file) {
        Ok(()) => {
            let _ = fs2::FileExt::unlock(&file);
            Ok(false)
        }
        Err(e) if is_contended(&e) => Ok(true),
        Err(source) => Err(StoreError::Io { path, source }),
    }
}

/// A fresh owner id: unique per store opened (pid, time, counter).
pub fn new_owner_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("p{}-{:x}-{n}", std::process::id(), nanos)
}
