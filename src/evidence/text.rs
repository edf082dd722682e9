//! Content-addressed playbook texts: `playbook-texts/<sha256>.yaml`.
//!
//! A playbook is part of what a reviewer approves and what an auditor reads back, so the
//! exact bytes every run started with are kept beside the screenshots, named by their
//! SHA-256 (the `playbook_sha256` of `run_started`). An approval, a queued job and a
//! replay name a playbook by that hash and load exactly those bytes, whatever the current
//! directory or the file on disk says now. Written like a screenshot: temp file, fsync,
//! rename, fsync the directory, read-only; a file is never replaced by other bytes.

use std::path::{Path, PathBuf};

use super::png::{hash_file, write_read_only};
use super::record::sha256_hex;
use super::StoreError;

/// Directory of the playbook texts inside the data directory.
pub const PLAYBOOK_TEXTS: &str = "playbook-texts";

/// Path of the playbook text with this hash.
pub fn path_for(data_dir: &Path, sha256: &str) -> PathBuf {
    data_dir.join(PLAYBOOK_TEXTS).join(format!("{sha256}.yaml"))
}

/// True for 64 lowercase hex digits (anything else never names a stored file).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Stores `text` under its SHA-256 (idempotent: an intact file is left alone, a damaged
/// one is rewritten with the good bytes). Returns the hash.
pub fn put(data_dir: &Path, text: &[u8]) -> Result<String, StoreError> {
    let sha256 = sha256_hex(text);
    let dir = data_dir.join(PLAYBOOK_TEXTS);
    let path = path_for(data_dir, &sha256);
    if let Ok((existing, _)) = hash_file(&path) {
        if existing == sha256 {
            return Ok(sha256);
        }
        tracing::warn!(path = %path.display(), "stored playbook text no longer matches its name; rewriting it");
    }
    std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
        path: dir.clone(),
        source,
    })?;
    write_read_only(&dir, &path, text)?;
    Ok(sha256)
}

/// The stored text with this hash, re-hashed on read: a missing file or one whose bytes no
/// longer match its name is an error naming the file.
pub fn get(data_dir: &Path, sha256: &str) -> Result<Vec<u8>, StoreError> {
    if !is_sha256(sha256) {
        return Err(StoreError::BadInput(format!(
            "`{sha256}` is not a playbook hash (64 lowercase hex digits)"
        )));
    }
    let path = path_for(data_dir, sha256);
    let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
        path: path.clone(),
        source,
    })?;
    let actual = sha256_hex(&bytes);
    if actual != sha256 {
        return Err(StoreError::Other(format!(
            "{}: the stored playbook text hashes to {actual}, not {sha256} (run `clerk verify`)",
            path.display()
        )));
    }
    Ok(bytes)
}
