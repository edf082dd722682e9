//! The one `clerk serve` daemon that owns a data directory: how it claims the directory and
//! how other clerk processes (the CLI) find it.
//!
//! ```text
//! locks/serve.lock   flock held for the daemon's whole life (released by the kernel on any exit)
//! serve.json         pid, API address, start time and the API token (mode 0600)
//! ```
//!
//! The lock, not the file, says whether a daemon is alive: a `serve.json` left by a daemon
//! that was SIGKILLed is ignored (and replaced by the next daemon), because its lock is free.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::evidence::lock::FileLock;

/// File describing the running daemon.
pub const FILE: &str = "serve.json";
/// Header carrying the API token.
pub const TOKEN_HEADER: &str = "x-clerk-token";

/// A running daemon as its `serve.json` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub pid: u32,
    /// Where its API listens (127.0.0.1).
    pub addr: SocketAddr,
    pub started_at: String,
    /// Sent by local clients in [`TOKEN_HEADER`]: only users who can read the data directory
    /// can drive the daemon through the API.
    pub token: String,
    pub version: String,
}

/// Errors claiming or reading the daemon's files.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "the data directory {data_dir} is already served by clerk serve (pid {pid}, API on \
         http://{addr}, since {since}); stop it first (`kill {pid}` or `systemctl stop clerk`)"
    )]
    AlreadyServed {
        data_dir: PathBuf,
        pid: u32,
        addr: String,
        since: String,
    },
    #[error(
        "the data directory {0} is already served by another clerk serve (its serve.json is \
         missing or unreadable)"
    )]
    AlreadyServedUnknown(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Lock(String),
}

fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("locks").join("serve.lock")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstanceError + '_ {
    move |source| InstanceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Held by the daemon: the lock, and the `serve.json` it published. Dropping it removes the
/// file and releases the lock.
#[derive(Debug)]
pub struct Claimed {
    data_dir: PathBuf,
    started_at: String,
    published: Option<PathBuf>,
    _lock: FileLock,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if let Some(file) = &self.published {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Random hex from the OS.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_err()
    {
        // No /dev/urandom: time and pid (the API is on 127.0.0.1 either way).
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        return hex::encode(<sha2::Sha256 as sha2::Digest>::digest(seed.as_bytes()));
    }
    hex::encode(buf)
}

/// Claims `data_dir` for a daemon: fails, naming the owner, if another daemon holds it.
pub fn claim(data_dir: &Path, started_at: String) -> Result<Claimed, InstanceError> {
    let locks = data_dir.join("locks");
    std::fs::create_dir_all(&locks).map_err(io(&locks))?;
    let lock_file = lock_path(data_dir);
    let lock =
        FileLock::try_exclusive(&lock_file).map_err(|e| InstanceError::Lock(e.to_string()))?;
    let Some(lock) = lock else {
        return Err(match read(data_dir) {
            Some(i) => InstanceError::AlreadyServed {
                data_dir: data_dir.to_owned(),
                pid: i.pid,
                addr: i.addr.to_string(),
                since: i.started_at,
            },
            None => InstanceError::AlreadyServedUnknown(data_dir.to_owned()),
        });
    };
    Ok(Claimed {
        data_dir: data_dir.to_owned(),
        started_at,
        published: None,
        _lock: lock,
    })
}

impl Claimed {
    /// Writes `serve.json` (mode 0600) for a daemon listening on `addr`.
    pub fn publish(&mut self, addr: SocketAddr) -> Result<Instance, InstanceError> {
        let instance = Instance {
            pid: std::process::id(),
            addr,
            started_at: self.started_at.clone(),
            token: random_hex(16),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let file = self.data_dir.join(FILE);
        let tmp = self.data_dir.join(format!("{FILE}.tmp"));
        let text = serde_json::to_string_pretty(&instance)
            .map_err(|e| InstanceError::Lock(format!("cannot serialize {FILE}: {e}")))?;
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(text.as_bytes()).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &file).map_err(io(&file))?;
        self.published = Some(file);
        Ok(instance)
    }
}

fn read(data_dir: &Path) -> Option<Instance> {
    let text = std::fs::read_to_string(data_dir.join(FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// What a process can tell about the daemon of a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// A daemon holds the lock; its published instance.
    Live(Instance),
    /// No daemon: the lock is free or was never taken.
    Absent,
    /// The caller may not look (the daemon owns the data directory as its own system user).
    Hidden,
}

/// Whether a daemon serves `data_dir`, or that the caller cannot tell.
pub fn presence(data_dir: &Path) -> Presence {
    let lock_file = lock_path(data_dir);
    match std::fs::metadata(&lock_file) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Presence::Hidden,
        Err(_) => {
            // No lock file: no daemon, unless the directory itself cannot be read.
            return match std::fs::read_dir(data_dir) {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Presence::Hidden,
                _ => Presence::Absent,
            };
        }
        Ok(_) => {}
    }
    match FileLock::try_exclusive(&lock_file) {
        Ok(Some(_free)) => Presence::Absent,
        Ok(None) => match read(data_dir) {
            Some(i) => Presence::Live(i),
            None => Presence::Hidden,
        },
        Err(_) => Presence::Hidden,
    }
}

/// The daemon serving `data_dir`, if one is alive (its lock is held).
pub fn discover(data_dir: &Path) -> Option<Instance> {
    let lock_file = lock_path(data_dir);
    if !lock_file.exists() {
        return None;
    }
    match FileLock::try_exclusive(&lock_file) {
        // Free: no daemon (a serve.json left behind is stale).
        Ok(Some(_free)) => None,
        Ok(None) => read(data_dir),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_naming_the_owner_and_a_stale_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:7878".parse().unwrap();
        assert_eq!(discover(dir.path()), None);
        let mut first = claim(dir.path(), "2026-11-22T06:00:00.000Z".into()).unwrap();
        let published = first.publish(addr).unwrap();
        let found = discover(dir.path()).unwrap();
        assert_eq!(found, published);
        let err = claim(dir.path(), "later".into()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())) && msg.contains("127.0.0.1:7878"),
            "{msg}"
        );
        drop(first);
        assert_eq!(discover(dir.path()), None);
        // A file left by a killed daemon (its lock is free) is not a daemon.
        std::fs::write(
            dir.path().join(FILE),
            serde_json::to_string(&found).unwrap(),
        )
        .unwrap();
        assert_eq!(discover(dir.path()), None);
        let mut again = claim(dir.path(), "t".into()).unwrap();
        assert_ne!(again.publish(addr).unwrap().token, found.token);
    }
}
