//! The queue's files: the log's byte format, reading it back, setting aside a torn tail, and
//! snapshots.
//!
//! `queue.log` is UTF-8, one transaction per line, each line ending in `\n`:
//!
//! ```text
//! {"seq":7,"changes":[{"type":"claimed","job":3,...}],"sum":"<64 hex>"}
//! ```
//!
//! `seq` counts lines from 1 without gaps (continuing after the snapshot's `seq`); `changes`
//! are applied in order, all or none (see `state::Change` for the types); `sum` is the
//! lowercase hex SHA-256 of the line's bytes with the `,"sum":"…"` member taken out (that is,
//! of the exact bytes `{"seq":7,"changes":[…]}`). A line is written with one `write` and
//! acknowledged only after `fdatasync`; one writer appends at a time, so after a crash only
//! the last line can be incomplete or unreadable, and that line was never acknowledged: it is
//! moved to `queue.log.torn-<time>` at open. An unreadable line anywhere else is corruption
//! and the queue refuses to open, naming the line.
//!
//! `queue.snapshot` (written by compaction) is one line of the same form with `state` in
//! place of `changes`: the whole state after the log line `seq`. Log lines up to that `seq`
//! are skipped when replaying (compaction truncates them after the snapshot is durable).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::state::{Change, State};
use super::QueueError;

/// The log, inside the queue directory.
pub(super) const LOG: &str = "queue.log";
/// The snapshot written by compaction.
pub(super) const SNAPSHOT: &str = "queue.snapshot";
/// The lock held by the process that has the queue open.
pub(super) const LOCK: &str = "queue.lock";

const SUM_OPEN: &[u8] = b",\"sum\":\"";
/// `,"sum":"` + 64 hex + `"}`.
const SUM_LEN: usize = SUM_OPEN.len() + 64 + 2;

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One log line.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LogLine {
    pub seq: u64,
    pub changes: Vec<Change>,
}

/// The snapshot file's content.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    seq: u64,
    state: State,
}

/// Adds the `sum` member to a serialized JSON object and a `\n`.
fn seal(body: String) -> Vec<u8> {
    let sum = hex::encode(Sha256::digest(body.as_bytes()));
    let mut line = body.into_bytes();
    line.pop(); // the closing brace
    line.extend_from_slice(SUM_OPEN);
    line.extend_from_slice(sum.as_bytes());
    line.extend_from_slice(b"\"}\n");
    line
}

/// Checks a line's `sum` (the line without its `\n`) and returns the bytes it covers.
fn unseal(line: &[u8]) -> Result<Vec<u8>, String> {
    if line.len() < SUM_LEN + 2 || !line.ends_with(b"\"}") {
        return Err("not a checksummed line (no `sum` at its end)".into());
    }
    let (head, tail) = line.split_at(line.len() - SUM_LEN);
    let Some(hex_sum) = tail
        .strip_prefix(SUM_OPEN)
        .and_then(|t| t.strip_suffix(b"\"}"))
    else {
        return Err("not a checksummed line (no `sum` at its end)".into());
    };
    let mut body = head.to_vec();
    body.push(b'}');
    let actual = hex::encode(Sha256::digest(&body));
    if actual.as_bytes() != hex_sum {
        return Err(format!(
            "checksum mismatch (sum says {}, the line hashes to {actual})",
            String::from_utf8_lossy(hex_sum)
        ));
    }
    Ok(body)
}

/// The bytes of log line `seq` (with its `\n`).
pub(super) fn encode(seq: u64, changes: &[Change]) -> Result<Vec<u8>, QueueError> {
    let body = serde_json::to_string(&LogLine {
        seq,
        changes: changes.to_vec(),
    })
    .map_err(|e| QueueError::BadInput(format!("cannot serialize a queue change: {e}")))?;
    Ok(seal(body))
}

/// Parses one line (without its `\n`), checksum first.
pub(super) fn decode(line: &[u8]) -> Result<LogLine, String> {
    let body = unseal(line)?;
    serde_json::from_slice(&body).map_err(|e| format!("checksum fine but unreadable: {e}"))
}

/// What reading the log found.
#[derive(Debug)]
pub(super) struct Scan {
    /// `(line number from 1, line)` for every good line.
    pub lines: Vec<(u64, LogLine)>,
    /// A torn last line: where it starts and what is wrong with it.
    pub torn: Option<(u64, String)>,
}

/// Reads log bytes. A bad last line is torn; a bad line before the last is corruption.
pub(super) fn scan(bytes: &[u8], path: &Path) -> Result<Scan, QueueError> {
    let mut starts = Vec::new();
    let mut start = 0usize;
    while let Some(pos) = bytes[start..].iter().position(|&b| b == b'\n') {
        starts.push((start, start + pos));
        start += pos + 1;
    }
    let rest = &bytes[start..];
    let mut lines = Vec::with_capacity(starts.len());
    let mut torn = None;
    let last = starts.len();
    for (i, (from, to)) in starts.into_iter().enumerate() {
        let number = i as u64 + 1;
        match decode(&bytes[from..to]) {
            Ok(line) => lines.push((number, line)),
            Err(reason) if number == last as u64 && rest.is_empty() => {
                torn = Some((from as u64, format!("line {number}: {reason}")));
            }
            Err(reason) => {
                return Err(QueueError::Corrupt {
                    path: path.to_owned(),
                    line: number,
                    reason,
                })
            }
        }
    }
    if !rest.is_empty() {
        torn = Some((
            start as u64,
            format!(
                "line {}: {} bytes without a final newline",
                last + 1,
                rest.len()
            ),
        ));
    }
    Ok(Scan { lines, torn })
}

/// fsyncs a directory so that a create or rename inside it is durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Opens (creating, and fsyncing the directory when new) the log for reading and appending.
pub(super) fn open_log(dir: &Path) -> Result<File, QueueError> {
    let path = dir.join(LOG);
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(io(&path))?;
    if !existed {
        file.sync_all().map_err(io(&path))?;
        sync_dir(dir)?;
    }
    Ok(file)
}

/// Copies the log's bytes from `keep` on into `queue.log.torn-<time>` (fsync'd), then cuts the
/// log back to `keep` (fsync'd). Returns the path it saved them to.
pub(super) fn set_aside(
    dir: &Path,
    file: &File,
    bytes: &[u8],
    keep: u64,
) -> Result<PathBuf, QueueError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let mut aside = dir.join(format!("{LOG}.torn-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = dir.join(format!("{LOG}.torn-{stamp}-{n}"));
    }
    let torn = usize::try_from(keep)
        .ok()
        .and_then(|k| bytes.get(k..))
        .unwrap_or_default();
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&aside)
        .map_err(io(&aside))?;
    out.write_all(torn).map_err(io(&aside))?;
    out.sync_all().map_err(io(&aside))?;
    sync_dir(dir)?;
    truncate(file, &dir.join(LOG), keep)?;
    Ok(aside)
}

/// Cuts the log back to `keep` bytes, durably.
pub(super) fn truncate(file: &File, path: &Path, keep: u64) -> Result<(), QueueError> {
    file.set_len(keep)
        .and_then(|()| file.sync_all())
        .map_err(io(path))
}

/// Reads the snapshot, if there is one: the state after log line `seq`.
pub(super) fn read_snapshot(dir: &Path) -> Result<Option<(u64, State)>, QueueError> {
    let path = dir.join(SNAPSHOT);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(QueueError::Io { path, source }),
    };
    let corrupt = |reason: String| QueueError::Corrupt {
        path: path.clone(),
        line: 1,
        reason,
    };
    // Written whole to a temporary file and renamed only after an fsync: any damage is
    // corruption, never a torn write.
    let line = bytes
        .strip_suffix(b"\n")
        .ok_or_else(|| corrupt("no final newline".into()))?;
    let body = unseal(line).map_err(corrupt)?;
    let snap: Snapshot = serde_json::from_slice(&body)
        .map_err(|e| corrupt(format!("checksum fine but unreadable: {e}")))?;
    let mut state = snap.state;
    state.rebuild_indexes();
    Ok(Some((snap.seq, state)))
}

/// Writes the snapshot durably: temporary file, fsync, rename, fsync of the directory.
pub(super) fn write_snapshot(dir: &Path, seq: u64, state: &State) -> Result<(), QueueError> {
    #[derive(Serialize)]
    struct SnapshotRef<'a> {
        seq: u64,
        state: &'a State,
    }
    let body = serde_json::to_string(&SnapshotRef { seq, state })
        .map_err(|e| QueueError::BadInput(format!("cannot serialize the queue state: {e}")))?;
    let bytes = seal(body);
    let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
    let path = dir.join(SNAPSHOT);
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    out.write_all(&bytes).map_err(io(&tmp))?;
    out.sync_all().map_err(io(&tmp))?;
    drop(out);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("queue.log")
    }

    #[test]
    fn sealed_lines_verify_and_any_flipped_byte_is_caught() {
        let line = encode(1, &[]).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        assert!(body.starts_with(b"{\"seq\":1,\"changes\":[],\"sum\":\""));
        assert_eq!(decode(body).unwrap().seq, 1);
        for i in 0..body.len() {
            let mut bad = body.to_vec();
            bad[i] ^= 0x01;
            assert!(decode(&bad).is_err(), "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn scan_treats_only_a_bad_last_line_as_torn() {
        let mut log = encode(1, &[]).unwrap();
        log.extend(encode(2, &[]).unwrap());
        let good_len = log.len() as u64;

        let mut torn = log.clone();
        torn.extend_from_slice(b"{\"seq\":3,\"chan");
        let s = scan(&torn, &p()).unwrap();
        assert_eq!(s.lines.len(), 2);
        assert_eq!(s.torn.as_ref().map(|t| t.0), Some(good_len));

        let mut garbage = log.clone();
        garbage.extend_from_slice(b"\0\0\0\0\n");
        let s = scan(&garbage, &p()).unwrap();
        assert_eq!(s.lines.len(), 2);
        assert_eq!(s.torn.as_ref().map(|t| t.0), Some(good_len));

        let mut middle = encode(1, &[]).unwrap();
        middle.extend_from_slice(b"not a line\n");
        middle.extend(encode(2, &[]).unwrap());
        match scan(&middle, &p()) {
            Err(QueueError::Corrupt { line: 2, .. }) => {}
            other => panic!("expected corruption at line 2, got {other:?}"),
        }

        let clean = scan(&log, &p()).unwrap();
        assert!(clean.torn.is_none());
        assert_eq!(clean.lines.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2]);
    }
}
