//! The append-only journal file: finding the chain head from its tail, appending lines and
//! fsyncing them, splitting it into lines, and setting aside a torn tail.
//!
//! Every function that writes is called with `journal.lock` held exclusively (see
//! [`super::lock`]), so the bytes after the last `\n` seen under that lock can only be a
//! crash's leftovers, never another process's write in progress.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::seq_and_hash;
use super::StoreError;

/// File name of the journal inside the data directory.
pub const JOURNAL: &str = "journal.jsonl";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Opens (creating, and fsyncing the directory when new) the journal for reading and appending.
pub fn open(data_dir: &Path) -> Result<File, StoreError> {
    let path = data_dir.join(JOURNAL);
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(io(&path))?;
    if !existed {
        file.sync_all().map_err(io(&path))?;
        sync_dir(data_dir)?;
    }
    Ok(file)
}

/// fsyncs a directory so that a create or rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// What the end of the journal looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Ends with a complete record line (or is empty: `head` is `None`). `len` is the file size.
    Clean {
        head: Option<(u64, String)>,
        len: u64,
    },
    /// Bytes from `keep` to `len` are not a complete, readable record line.
    Torn { keep: u64, len: u64 },
}

/// Reads the journal's tail: the last complete line's `seq` and `hash`, or where a torn tail
/// starts. Reads backwards in growing chunks, so cost does not depend on the journal's size.
pub fn tail(file: &File, path: &Path) -> Result<Tail, StoreError> {
    let len = file.metadata().map_err(io(path))?.len();
    tail_at(file, path, len)
}

/// [`tail`] of the first `len` bytes of the journal.
pub fn tail_at(file: &File, path: &Path, len: u64) -> Result<Tail, StoreError> {
    if len == 0 {
        return Ok(Tail::Clean { head: None, len });
    }
    let mut chunk: u64 = 4 * 1024;
    loop {
        let start = len.saturating_sub(chunk);
        let mut buf = vec![0u8; (len - start) as usize];
        file.read_exact_at(&mut buf, start).map_err(io(path))?;
        let ends_clean = buf.last() == Some(&b'\n');
        let body = if ends_clean {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        };
        match body.iter().rposition(|&b| b == b'\n') {
            Some(pos) => {
                let line_start = start + pos as u64 + 1;
                if !ends_clean {
                    return Ok(Tail::Torn {
                        keep: line_start,
                        len,
                    });
                }
                return Ok(classify(&body[pos + 1..], line_start, len));
            }
            None if start == 0 => {
                if !ends_clean {
                    return Ok(Tail::Torn { keep: 0, len });
                }
                return Ok(classify(body, 0, len));
            }
            None => chunk = chunk.saturating_mul(4),
        }
    }
}

fn classify(line: &[u8], line_start: u64, len: u64) -> Tail {
    match seq_and_hash(line) {
        Some(head) => Tail::Clean {
            head: Some(head),
            len,
        },
        // A newline-terminated last line that is not a record (e.g. zeros left by a crash
        // after the size was extended) was never acknowledged either.
        None => Tail::Torn {
            keep: line_start,
            len,
        },
    }
}

/// Appends `bytes` (whole lines, each ending in `\n`) with one `write` call where the
/// kernel takes it all (a short write is continued). Not durable until [`sync_data`].
pub fn write_lines(file: &mut File, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    file.write_all(bytes).map_err(io(path))
}

/// Makes appended lines durable. `sync_data` (fdatasync) is enough for an append: it also
/// flushes the size change, which is the metadata needed to read the data back.
pub fn sync_data(file: &File, path: &Path) -> Result<(), StoreError> {
    file.sync_data().map_err(io(path))
}

/// Cuts the journal back to `keep` bytes and makes that durable (after a failed write or
/// fsync, whose bytes were never acknowledged and whose state on disk is unknown).
pub fn truncate(file: &File, path: &Path, keep: u64) -> Result<(), StoreError> {
    file.set_len(keep)
        .and_then(|()| file.sync_all())
        .map_err(io(path))
}

/// Moves the bytes from `keep` to `len` into `journal.torn-<timestamp>` (fsync'd), then
/// truncates the journal to `keep` (fsync'd). Returns the file name it saved them as.
pub fn set_aside(data_dir: &Path, file: &File, keep: u64, len: u64) -> Result<String, StoreError> {
    let path = data_dir.join(JOURNAL);
    let mut torn = vec![0u8; (len - keep) as usize];
    file.read_exact_at(&mut torn, keep).map_err(io(&path))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let mut name = format!("journal.torn-{stamp}");
    let mut n = 1;
    while data_dir.join(&name).exists() {
        n += 1;
        name = format!("journal.torn-{stamp}-{n}");
    }
    let aside: PathBuf = data_dir.join(&name);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&aside)
        .map_err(io(&aside))?;
    out.write_all(&torn).map_err(io(&aside))?;
    out.sync_all().map_err(io(&aside))?;
    sync_dir(data_dir)?;
    file.set_len(keep).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    Ok(name)
}

/// Reads the journal from `from` up to its last `\n` (complete lines only). A reader that does
/// not hold `journal.lock` may see a writer's line half-written: it simply stops before it.
pub fn read_complete_from(file: &File, path: &Path, from: u64) -> Result<Vec<u8>, StoreError> {
    let len = file.metadata().map_err(io(path))?.len();
    if len <= from {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut buf, from).map_err(io(path))?;
    match buf.iter().rposition(|&b| b == b'\n') {
        Some(pos) => buf.truncate(pos + 1),
        None => buf.clear(),
    }
    Ok(buf)
}

/// Splits journal bytes into lines: `(start offset, line without its '\n')` for every
/// complete line, plus the bytes after the last `\n` (a torn tail) if any.
pub fn lines(bytes: &[u8]) -> (Vec<(u64, &[u8])>, &[u8]) {
    let mut out = Vec::new();
    let mut start = 0usize;
    while let Some(pos) = bytes[start..].iter().position(|&b| b == b'\n') {
        out.push((start as u64, &bytes[start..start + pos]));
        start += pos + 1;
    }
    (out, &bytes[start..])
}

/// Reads a whole journal under a shared `journal.lock`, so no append is half-visible.
pub fn snapshot(data_dir: &Path) -> Result<Vec<u8>, StoreError> {
    let path = data_dir.join(JOURNAL);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let _lock = super::lock::FileLock::shared(&data_dir.join(super::JOURNAL_LOCK))?;
    std::fs::read(&path).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_and_keep_torn_tail() {
        let (l, torn) = lines(b"a\nbc\nxy");
        assert_eq!(l, vec![(0, &b"a"[..]), (2, &b"bc"[..])]);
        assert_eq!(torn, b"xy");
    }
}
