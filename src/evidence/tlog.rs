//! The transparency log over the journal: the log key, signed checkpoints and proofs.
//!
//! Every record's `hash` is a leaf of an RFC 6962 Merkle tree (see [`super::merkle`]); leaf
//! index = `seq - 1`, tree size = the number of records. The store keeps the tree's right
//! edge (a [`Frontier`]) and extends it with the lines appended since it last looked, so a
//! checkpoint costs the new records' hashes, never a recomputation.
//!
//! Files (all public; the private key is never among them):
//!
//! ```text
//! tlog/keys               the log's verifier keys, one per line, oldest first
//! tlog/checkpoints.jsonl  every checkpoint signed, one JSON line {"size","root","note"} each
//!                         (fsync'd: the durable record; its last line is the latest)
//! tlog/checkpoint         a copy of the latest signed checkpoint (a C2SP signed note), for
//!                         readers of files; replaced atomically
//! tlog/sign.lock          flock held while a checkpoint is checked and signed
//! tlog/cosignatures.jsonl witness cosignatures received {"size","root","witness","note"}
//! ```
//!
//! The private key lives in its own file outside the data directory (`[log] key_file`,
//! default `<data dir>.log-key` beside it), mode 0600, in the format of Go's
//! `golang.org/x/mod/sumdb/note` (`PRIVATE+KEY+<origin>+<id>+<base64>`).
//!
//! **A log never signs two inconsistent checkpoints.** Before signing, the journal is
//! checked to extend the latest signed checkpoint: the tree of its first `size` records must
//! have that checkpoint's root, and every record since must chain to the one before. If not
//! (someone rewrote, dropped or reordered records), signing is refused with
//! [`TlogError::Inconsistent`] or [`TlogError::Truncated`]: the tamper alarm on the host.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::journal;
use super::lock::FileLock;
use super::merkle::{self, Frontier, Hash, ProofError};
use super::note::{Checkpoint, Note, NoteError, NoteSigner, NoteVerifier};
use super::record::GENESIS_PREV;
use super::{lock_recover, Store, StoreError};

/// Directory of the log's public files inside the data directory.
pub const TLOG_DIR: &str = "tlog";
/// The log's verifier keys.
pub const KEYS: &str = "tlog/keys";
/// The latest signed checkpoint.
pub const LATEST: &str = "tlog/checkpoint";
/// Every signed checkpoint.
pub const HISTORY: &str = "tlog/checkpoints.jsonl";
const SIGN_LOCK: &str = "tlog/sign.lock";
/// Witness cosignatures received, one JSON line `{"size","root","witness","note"}` each.
pub const COSIGNATURES: &str = "tlog/cosignatures.jsonl";
/// First line of a proof file (c2sp.org/tlog-proof).
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Errors of the log key, checkpoints and proofs.
#[derive(Debug, thiserror::Error)]
pub enum TlogError {
    #[error(
        "log key {path} is missing, but this log has signed checkpoints with {known}; restore \
         the key file (or point [log] key_file at it), or start a new key with `clerk key \
         rotate` (old checkpoints keep verifying with the old public key)"
    )]
    KeyMissing { path: PathBuf, known: String },
    #[error(
        "log key {path} has mode {mode:o}; it must be readable by its owner only: chmod 600 {path}"
    )]
    KeyMode { path: PathBuf, mode: u32 },
    #[error(
        "log key {path} is inside the data directory {data_dir}; the private key must live \
         outside the evidence (set [log] key_file to a path elsewhere)"
    )]
    KeyInDataDir { path: PathBuf, data_dir: PathBuf },
    #[error("log key {path}: {source}")]
    KeyFormat { path: PathBuf, source: NoteError },
    #[error(
        "log key {path} is `{found}`, which is not one of this log's keys ({known}); restore \
         the right key file or rotate with `clerk key rotate`"
    )]
    KeyUnknown {
        path: PathBuf,
        found: String,
        known: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "TAMPER ALARM: the journal no longer extends the last signed checkpoint (size {size}): \
         {detail}; clerk refuses to sign a checkpoint that contradicts it. Run `clerk verify` \
         and compare with a witness's or an export's checkpoint"
    )]
    Inconsistent { size: u64, detail: String },
    #[error(
        "TAMPER ALARM: the journal has {journal} records but checkpoint size {size} was signed; \
         records were removed. clerk refuses to sign a smaller log"
    )]
    Truncated { size: u64, journal: u64 },
    #[error("{path}: {detail}")]
    Stored { path: PathBuf, detail: String },
    #[error("proof: {0}")]
    Proof(String),
    #[error(transparent)]
    Merkle(#[from] ProofError),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlogError + '_ {
    move |source| TlogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The default key file: beside the data directory, `<data dir>.log-key`.
pub fn default_key_path(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "clerk".into());
    let parent = data_dir.parent().unwrap_or_else(|| Path::new("/"));
    parent.join(format!("{name}.log-key"))
}

/// The default origin: `clerk.<host name>/<data dir name>` (only characters a key name
/// may hold).
pub fn default_origin(data_dir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let dir = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "journal".into());
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("clerk.{}/{}", clean(&host), clean(&dir))
}

/// The log's signing key, loaded from its file.
#[derive(Debug, Clone)]
pub struct LogKey {
    signer: NoteSigner,
    path: PathBuf,
}

/// What [`LogKey::open`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOpened {
    Loaded,
    Created,
}

impl LogKey {
    /// Loads the key at `path`, or creates it there (mode 0600) on a log that has never
    /// signed. Refuses a key inside `data_dir`, a key file others can read, a key that is not
    /// one of the log's (`tlog/keys`), and a missing key on a log that has signed.
    pub fn open(
        path: &Path,
        data_dir: &Path,
        origin: &str,
    ) -> Result<(LogKey, KeyOpened), TlogError> {
        check_outside(path, data_dir)?;
        let known = read_keys(data_dir)?;
        if !path.exists() {
            if !known.is_empty() {
                return Err(TlogError::KeyMissing {
                    path: path.to_owned(),
                    known: known_list(&known),
                });
            }
            let signer = NoteSigner::generate(origin, false)?;
            if !write_private(path, &signer, false)? {
                // Another process created it a moment ago (two first starts at once).
                return LogKey::open(path, data_dir, origin);
            }
            add_key(data_dir, &signer.verifier_key())?;
            tracing::info!(key = %signer.verifier_key(), file = %path.display(), "created the log key");
            return Ok((
                LogKey {
                    signer,
                    path: path.to_owned(),
                },
                KeyOpened::Created,
            ));
        }
        let key = LogKey::load(path, data_dir)?;
        let vkey = key.signer.verifier_key();
        if known.is_empty() {
            add_key(data_dir, &vkey)?;
        } else if !known.iter().any(|k| k == &vkey) {
            return Err(TlogError::KeyUnknown {
                path: path.to_owned(),
                found: vkey,
                known: known_list(&known),
            });
        }
        Ok((key, KeyOpened::Loaded))
    }

    /// Reads and checks a key file (mode, format) without consulting `tlog/keys`.
    pub fn load(path: &Path, data_dir: &Path) -> Result<LogKey, TlogError> {
        use std::os::unix::fs::PermissionsExt as _;
        check_outside(path, data_dir)?;
        let meta = std::fs::metadata(path).map_err(io(path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TlogError::KeyMode {
                path: path.to_owned(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let signer = NoteSigner::parse(&text).map_err(|source| TlogError::KeyFormat {
            path: path.to_owned(),
            source,
        })?;
        Ok(LogKey {
            signer,
            path: path.to_owned(),
        })
    }

    /// Replaces the key at `path` with a new one of the same name (origin), adds its public
    /// key to `tlog/keys` and returns it. The old private key is overwritten; its public key
    /// stays in `tlog/keys`, so checkpoints it signed keep verifying.
    pub fn rotate(path: &Path, data_dir: &Path, origin: &str) -> Result<LogKey, TlogError> {
        check_outside(path, data_dir)?;
        let name = match LogKey::load(path, data_dir) {
            Ok(old) => old.signer.name().to_owned(),
            Err(_) => read_keys(data_dir)?
                .last()
                .and_then(|k| NoteVerifier::parse(k).ok())
                .map(|v| v.name().to_owned())
                .unwrap_or_else(|| origin.to_owned()),
        };
        let signer = NoteSigner::generate(&name, false)?;
        write_private(path, &signer, true)?;
        // `create_new` above plus the rename keep the mode 0600 of the new file.
        add_key(data_dir, &signer.verifier_key())?;
        tracing::warn!(key = %signer.verifier_key(), file = %path.display(), "rotated the log key");
        Ok(LogKey {
            signer,
            path: path.to_owned(),
        })
    }

    /// `<origin>+<id>+<base64 public key>`: what auditors and witnesses are given.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }
}

fn known_list(known: &[String]) -> String {
    known.join(", ")
}

fn check_outside(path: &Path, data_dir: &Path) -> Result<(), TlogError> {
    let abs = |p: &Path| -> PathBuf {
        let p = if p.is_absolute() {
            p.to_owned()
        } else {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_owned())
        };
        // Canonicalize the deepest existing ancestor, so symlinks cannot hide where it is.
        let mut existing = p.clone();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.file_name(), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name.to_owned());
                    existing = parent.to_owned();
                }
                _ => break,
            }
        }
        let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
        for r in rest.into_iter().rev() {
            out.push(r);
        }
        out
    };
    let (key, dir) = (abs(path), abs(data_dir));
    if key.starts_with(&dir) {
        return Err(TlogError::KeyInDataDir {
            path: key,
            data_dir: dir,
        });
    }
    Ok(())
}

/// Writes the key file whole before it appears under `path` (a temporary file, then a
/// rename to replace or a hard link to create, which fails if another process created it
/// first: then `Ok(false)`).
fn write_private(path: &Path, signer: &NoteSigner, replace: bool) -> Result<bool, TlogError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let target = parent.join(format!(
        ".{}.{}.new",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&target);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)
        .map_err(io(&target))?;
    f.write_all(format!("{}\n", signer.private_text()).as_bytes())
        .map_err(io(&target))?;
    f.sync_all().map_err(io(&target))?;
    let placed = if replace {
        std::fs::rename(&target, path).map_err(io(path))?;
        true
    } else {
        let linked = std::fs::hard_link(&target, path);
        let _ = std::fs::remove_file(&target);
        match linked {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(source) => {
                return Err(TlogError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    };
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io(parent))?;
    Ok(placed)
}

/// The log's verifier keys (`tlog/keys`), oldest first.
pub fn read_keys(data_dir: &Path) -> Result<Vec<String>, TlogError> {
    let path = data_dir.join(KEYS);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(TlogError::Io { path, source }),
    }
}

/// The log's verifier keys, parsed.
pub fn verifiers(data_dir: &Path) -> Result<Vec<NoteVerifier>, TlogError> {
    let path = data_dir.join(KEYS);
    read_keys(data_dir)?
        .iter()
        .map(|k| {
            NoteVerifier::parse(k).map_err(|e| TlogError::Stored {
                path: path.clone(),
                detail: e.to_string(),
            })
        })
        .collect()
}

fn append_synced(path: &Path, bytes: &[u8]) -> Result<(), TlogError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_data().map_err(io(path))
}

fn add_key(data_dir: &Path, vkey: &str) -> Result<(), TlogError> {
    let dir = data_dir.join(TLOG_DIR);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    if read_keys(data_dir)?.iter().any(|k| k == vkey) {
        return Ok(());
    }
    append_synced(&data_dir.join(KEYS), format!("{vkey}\n").as_bytes())?;
    journal::sync_dir(&dir).map_err(TlogError::Store)
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: Note,
}

impl SignedCheckpoint {
    /// Parses a signed note holding a checkpoint.
    pub fn parse(text: &str) -> Result<SignedCheckpoint, TlogError> {
        let note = Note::parse(text)?;
        let checkpoint = Checkpoint::parse(&note.text)?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    pub fn to_text(&self) -> String {
        self.note.to_text()
    }

    /// The first of `keys` whose signature is on the note.
    pub fn signed_by<'a>(&self, keys: &'a [NoteVerifier]) -> Option<&'a NoteVerifier> {
        keys.iter()
            .find(|k| !k.is_cosigner() && self.note.verified_by(k).is_some())
    }
}

/// One line of `tlog/checkpoints.jsonl`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct HistoryLine {
    size: u64,
    root: String,
    note: String,
}

/// The latest signed checkpoint, checked against the log's keys.
pub fn latest(data_dir: &Path) -> Result<Option<SignedCheckpoint>, TlogError> {
    // The history is the durable record (fsync'd per checkpoint); `tlog/checkpoint` is a
    // copy for readers of files (written without an fsync of its own).
    let path = data_dir.join(HISTORY);
    let text = match last_history_line(&path)? {
        Some(line) => {
            let parsed: HistoryLine =
                serde_json::from_str(&line).map_err(|e| TlogError::Stored {
                    path: path.clone(),
                    detail: format!("last line: {e}"),
                })?;
            parsed.note
        }
        None => return Ok(None),
    };
    let signed = SignedCheckpoint::parse(&text).map_err(|e| TlogError::Stored {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    if signed.signed_by(&verifiers(data_dir)?).is_none() {
        return Err(TlogError::Stored {
            path,
            detail: "its last checkpoint is not signed by any key in tlog/keys (was it replaced?)"
                .into(),
        });
    }
    Ok(Some(signed))
}

/// The last complete line of the history file, read from its end.
fn last_history_line(path: &Path) -> Result<Option<String>, TlogError> {
    use std::os::unix::fs::FileExt as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TlogError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let len = file.metadata().map_err(io(path))?.len();
    let mut chunk: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(chunk);
        let mut buf = vec![0u8; (len - start) as usize];
        file.read_exact_at(&mut buf, start).map_err(io(path))?;
        // Only complete lines count: a torn last line was never a checkpoint.
        let end = match buf.iter().rposition(|&b| b == b'\n') {
            Some(e) => e,
            None if start == 0 => return Ok(None),
            None => {
                chunk = chunk.saturating_mul(4);
                continue;
            }
        };
        match buf[..end].iter().rposition(|&b| b == b'\n') {
            Some(s) => return Ok(Some(String::from_utf8_lossy(&buf[s + 1..end]).into_owned())),
            None if start == 0 => {
                return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()))
            }
            None => chunk = chunk.saturating_mul(4),
        }
    }
}

/// Every checkpoint this log signed, oldest first.
pub fn history(data_dir: &Path) -> Result<Vec<SignedCheckpoint>, TlogError> {
    let path = data_dir.join(HISTORY);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(TlogError::Io { path, source }),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let parsed: HistoryLine = match serde_json::from_str(line) {
            Ok(p) => p,
            // A torn last line (a crash while appending) was never the latest checkpoint.
            Err(_) if i + 1 == text.lines().count() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(TlogError::Stored {
                    path,
                    detail: format!("line {}: {e}", i + 1),
                })
            }
        };
        out.push(
            SignedCheckpoint::parse(&parsed.note).map_err(|e| TlogError::Stored {
                path: path.clone(),
                detail: format!("line {}: {e}", i + 1),
            })?,
        );
    }
    Ok(out)
}

/// The store's view of the tree: its right edge and how far into the journal it has read.
#[derive(Debug, Default)]
pub(crate) struct TreeCache {
    frontier: Frontier,
    /// Journal bytes consumed.
    offset: u64,
    /// `hash` of the last record consumed (the next record's `prev`).
    last_hash: String,
    /// The signed checkpoint this cache was checked against on its way.
    checked: Option<(u64, Hash)>,
}

#[derive(serde::Deserialize)]
struct Link {
    seq: u64,
    prev: String,
    hash: String,
}

impl TreeCache {
    /// Reads the lines appended since the last call, checks each chains to the one before,
    /// pushes their leaves; checks the root at `expect.0` records equals `expect.1` on the
    /// way (a fresh cache reads from the start, so it always passes there).
    fn catch_up(&mut self, store: &Store, expect: Option<(u64, Hash)>) -> Result<(), TlogError> {
        if let Some(e) = expect {
            if self.checked != Some(e) && self.frontier.size() > e.0 {
                // Someone else signed a checkpoint this cache has already passed: re-read
                // from the start so that its root is checked, not assumed.
                *self = TreeCache::default();
            }
            if self.frontier.size() == e.0 {
                self.check(e)?;
            }
        }
        let path = store.journal_path();
        let len = std::fs::metadata(&path).map_err(io(&path))?.len();
        if len < self.offset {
            return Err(TlogError::Inconsistent {
                size: self.frontier.size(),
                detail: format!(
                    "journal.jsonl shrank from {} to {len} bytes while clerk was reading it",
                    self.offset
                ),
            });
        }
        // A cold read (a fresh process, or a re-read) also re-hashes every record's content:
        // the journal may have been edited while no clerk watched. Lines appended while this
        // process watches are chained to the last one it checked; re-hashing them would
        // catch nothing an attacker who can write the file could not avoid, and would cost
        // every append a second parse.
        let cold = self.offset == 0;
        if cold {
            store
                .inner
                .tree_cold_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let bytes = journal::read_complete_from(&store.inner.reader, &path, self.offset)?;
        let (lines, _) = journal::lines(&bytes);
        for (at, line) in lines {
            let link: Link = serde_json::from_slice(line).map_err(|e| TlogError::Inconsistent {
                size: self.frontier.size(),
                detail: format!("the line at byte {} is not a record: {e}", self.offset + at),
            })?;
            let want_prev = if self.frontier.size() == 0 {
                GENESIS_PREV
            } else {
                self.last_hash.as_str()
            };
            if link.seq != self.frontier.size() + 1 || link.prev != want_prev {
                return Err(TlogError::Inconsistent {
                    size: self.frontier.size(),
                    detail: format!(
                        "record seq {} (at byte {}) does not follow record seq {} (expected seq {} with prev {})",
                        link.seq,
                        self.offset + at,
                        self.frontier.size(),
                        self.frontier.size() + 1,
                        want_prev
                    ),
                });
            }
            let leaf = merkle::record_leaf(&link.hash).ok_or_else(|| TlogError::Inconsistent {
                size: self.frontier.size(),
                detail: format!("record seq {} has a malformed hash", link.seq),
            })?;
            // Never sign over a record whose content no longer matches its hash.
            let intact = !cold || super::record::parse_line(line).is_ok_and(|p| p.intact());
            if !intact {
                return Err(TlogError::Inconsistent {
                    size: self.frontier.size(),
                    detail: format!(
                        "record seq {} (at byte {}) does not match its hash: it was edited",
                        link.seq,
                        self.offset + at
                    ),
                });
            }
            self.frontier.push(leaf);
            self.last_hash = link.hash;
            if let Some(e) = expect {
                if self.frontier.size() == e.0 {
                    self.check(e)?;
                }
            }
        }
        self.offset += bytes.len() as u64;
        if let Some(e) = expect {
            if self.frontier.size() < e.0 {
                let journal = self.frontier.size();
                *self = TreeCache::default();
                return Err(TlogError::Truncated { size: e.0, journal });
            }
        }
        Ok(())
    }

    fn check(&mut self, (size, root): (u64, Hash)) -> Result<(), TlogError> {
        let ours = self.frontier.root();
        if ours != root {
            *self = TreeCache::default();
            return Err(TlogError::Inconsistent {
                size,
                detail: format!(
                    "the first {size} records have root {} but the checkpoint signed {}",
                    B64.encode(ours),
                    B64.encode(root)
                ),
            });
        }
        self.checked = Some((size, root));
        Ok(())
    }
}

/// What [`Store::sign_checkpoint`] did.
#[derive(Debug, Clone)]
pub struct Signed {
    pub checkpoint: SignedCheckpoint,
    /// False when the latest checkpoint already covered the whole journal.
    pub new: bool,
}

impl Store {
    /// Attaches the key that signs this store's checkpoints (exports sign one and carry
    /// proofs only when a key is attached).
    pub fn set_log_key(&self, key: LogKey) {
        *lock_recover(&self.inner.log_key) = Some(key);
    }

    /// The witnesses whose cosignatures count, and how many an export needs to be final.
    pub fn set_witnesses(&self, witnesses: Vec<NoteVerifier>, quorum: usize) {
        *lock_recover(&self.inner.witnesses) = (witnesses, quorum);
    }

    pub fn witnesses(&self) -> (Vec<NoteVerifier>, usize) {
        lock_recover(&self.inner.witnesses).clone()
    }

    /// The attached log key.
    pub fn log_key(&self) -> Option<LogKey> {
        lock_recover(&self.inner.log_key).clone()
    }

    /// Signs a checkpoint with the attached key (`None` when no key is attached).
    pub fn checkpoint_now(&self) -> Result<Option<Signed>, TlogError> {
        match self.log_key() {
            Some(key) => self.sign_checkpoint(&key).map(Some),
            None => Ok(None),
        }
    }

    /// How many times the Merkle tree was rebuilt from the journal's start in this process
    /// (once at first use; again only when another process signed a checkpoint).
    #[doc(hidden)]
    pub fn tree_cold_reads(&self) -> u64 {
        self.inner
            .tree_cold_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The tree's current size and root (reads only what was appended since last time).
    pub fn tree_head(&self) -> Result<(u64, Hash), TlogError> {
        let mut cache = lock_recover(&self.inner.tree);
        cache.catch_up(self, None)?;
        Ok((cache.frontier.size(), cache.frontier.root()))
    }

    /// Signs a checkpoint of the whole journal with `key`, after checking that the journal
    /// extends the latest signed checkpoint. Refusals (the tamper alarm) are recorded in the
    /// journal as `refused` records with action `sign_checkpoint`, and logged.
    pub fn sign_checkpoint(&self, key: &LogKey) -> Result<Signed, TlogError> {
        let data_dir = self.data_dir().to_owned();
        let dir = data_dir.join(TLOG_DIR);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let _lock = FileLock::exclusive(&data_dir.join(SIGN_LOCK))?;
        let last = latest(&data_dir)?;
        let expect = last
            .as_ref()
            .map(|l| (l.checkpoint.size, l.checkpoint.root));
        let head = {
            let mut cache = lock_recover(&self.inner.tree);
            cache.catch_up(self, expect).map(|()| {
                let head = (cache.frontier.size(), cache.frontier.root());
                // What is about to be signed is, by construction, what this cache holds: the
                // next signing checks against it without re-reading the journal.
                cache.checked = Some(head);
                head
            })
        };
        let (size, root) = match head {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "refused to sign a checkpoint");
                let _ = self.append(super::Event::Refused {
                    action: "sign_checkpoint".into(),
                    approval_id: None,
                    run_id: None,
                    user: "clerk".into(),
                    reason: e.to_string(),
                    at: super::now(),
                });
                return Err(e);
            }
        };
        if let Some(l) = &last {
            if l.checkpoint.size == size && l.signed_by(&[key.verifier()]).is_some() {
                return Ok(Signed {
                    checkpoint: l.clone(),
                    new: false,
                });
            }
        }
        let checkpoint = Checkpoint {
            origin: key.origin().to_owned(),
            size,
            root,
        };
        let note = Note::sign(&checkpoint.text(), &key.signer);
        let signed = SignedCheckpoint { checkpoint, note };
        let text = signed.to_text();
        let line = serde_json::to_string(&HistoryLine {
            size,
            root: B64.encode(root),
            note: text.clone(),
        })
        .map_err(|e| TlogError::Proof(e.to_string()))?;
        // One fsync per checkpoint: the history line is the durable record.
        let history_path = data_dir.join(HISTORY);
        let created = !history_path.exists();
        append_synced(&history_path, format!("{line}\n").as_bytes())?;
        if created {
            journal::sync_dir(&dir)?;
        }
        // The copy for file readers (a witness reading a copied data directory).
        let tmp = data_dir.join(format!("{LATEST}.tmp"));
        std::fs::write(&tmp, text.as_bytes()).map_err(io(&tmp))?;
        let latest_path = data_dir.join(LATEST);
        std::fs::rename(&tmp, &latest_path).map_err(io(&latest_path))?;
        Ok(Signed {
            checkpoint: signed,
            new: true,
        })
    }
}

/// A C2SP tlog-proof: a record's inclusion in a signed checkpoint, checkable offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The record's journal line (unauthenticated by itself: its hash is what is proved).
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub path: Vec<Hash>,
    pub checkpoint: SignedCheckpoint,
}

impl Proof {
    pub fn to_text(&self) -> String {
        let mut out = format!("{PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.path {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint.to_text());
        out
    }

    pub fn parse(text: &str) -> Result<Proof, TlogError> {
        let bad = |m: &str| TlogError::Proof(m.to_owned());
        let (head, note) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(PROOF_HEADER) {
            return Err(bad("the first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| bad("no index line"))?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                B64.decode(b64)
                    .map_err(|e| TlogError::Proof(format!("extra is not base64: {e}")))?,
            );
            line = lines.next().ok_or_else(|| bad("no index line"))?;
        }
        let index_text = line
            .strip_prefix("index ")
            .ok_or_else(|| bad("no index line"))?;
        if index_text.is_empty()
            || !index_text.bytes().all(|b| b.is_ascii_digit())
            || (index_text.len() > 1 && index_text.starts_with('0'))
        {
            return Err(bad("the index is not a decimal number"));
        }
        let index: u64 = index_text
            .parse()
            .map_err(|_| bad("the index is not a decimal number"))?;
        let mut path = Vec::new();
        for l in lines {
            let raw = B64
                .decode(l)
                .map_err(|e| TlogError::Proof(format!("audit path line `{l}`: {e}")))?;
            let h: Hash = raw
                .try_into()
                .map_err(|_| TlogError::Proof(format!("audit path line `{l}` is not 32 bytes")))?;
            path.push(h);
        }
        if path.len() > 64 {
            return Err(bad("the audit path is longer than 64 hashes"));
        }
        let checkpoint = SignedCheckpoint::parse(note)?;
        Ok(Proof {
            extra,
            index,
            path,
            checkpoint,
        })
    }
}

/// What a proof showed.
#[derive(Debug, Clone)]
pub struct ProofCheck {
    /// The record the proof is about (from `extra`), its hash recomputed and checked.
    pub record: super::Record,
    pub origin: String,
    pub size: u64,
    /// The log key that signed the checkpoint.
    pub log_key: String,
    /// Witnesses that cosigned, with the time they did.
    pub witnesses: Vec<(String, u64)>,
}

/// Checks a proof: the record in `extra` is intact (its hash recomputed), sits at `index`,
/// its leaf is in the checkpointed tree, the checkpoint is signed by one of `log_keys`
/// under `origin` (when given), and cosigned by at least `quorum` of `witnesses`.
pub fn check_proof(
    proof: &Proof,
    log_keys: &[NoteVerifier],
    witnesses: &[NoteVerifier],
    quorum: usize,
    origin: Option<&str>,
) -> Result<ProofCheck, TlogError> {
    let cp = &proof.checkpoint;
    if let Some(o) = origin {
        if cp.checkpoint.origin != o {
            return Err(TlogError::Proof(format!(
                "the checkpoint is of log `{}`, not `{o}`",
                cp.checkpoint.origin
            )));
        }
    }
    let signer = cp.signed_by(log_keys).ok_or_else(|| {
        TlogError::Proof(format!(
            "the checkpoint (size {}) is not signed by the log key{} given",
            cp.checkpoint.size,
            if log_keys.len() == 1 { "" } else { "s" }
        ))
    })?;
    if signer.name() != cp.checkpoint.origin {
        return Err(TlogError::Proof(format!(
            "the checkpoint's origin `{}` is not its signer's name `{}`",
            cp.checkpoint.origin,
            signer.name()
        )));
    }
    let mut cosigned = Vec::new();
    for w in witnesses {
        if let Some(t) = cp.note.verified_by(w) {
            if w.is_cosigner() {
                cosigned.push((w.name().to_owned(), t));
            }
        }
    }
    if cosigned.len() < quorum {
        return Err(TlogError::Proof(format!(
            "the checkpoint (size {}) has {} of the {quorum} witness cosignatures required",
            cp.checkpoint.size,
            cosigned.len()
        )));
    }
    let line = proof
        .extra
        .as_deref()
        .ok_or_else(|| TlogError::Proof("no record (extra line) in the proof".into()))?;
    let parsed = super::record::parse_line(line)
        .map_err(|e| TlogError::Proof(format!("the record in the proof is unreadable: {e}")))?;
    if !parsed.intact() {
        return Err(TlogError::Proof(format!(
            "record seq {} does not match its hash (it was edited)",
            parsed.record.seq
        )));
    }
    if parsed.record.seq != proof.index + 1 {
        return Err(TlogError::Proof(format!(
            "record seq {} cannot sit at index {} (index = seq - 1)",
            parsed.record.seq, proof.index
        )));
    }
    let leaf = merkle::record_leaf(&parsed.record.hash)
        .ok_or_else(|| TlogError::Proof("the record's hash is malformed".into()))?;
    merkle::verify_inclusion(
        proof.index,
        cp.checkpoint.size,
        &leaf,
        &proof.path,
        &cp.checkpoint.root,
    )
    .map_err(|e| {
        TlogError::Proof(format!(
            "record seq {} is not in the checkpointed tree of size {}: {e}",
            parsed.record.seq, cp.checkpoint.size
        ))
    })?;
    Ok(ProofCheck {
        record: parsed.record,
        origin: cp.checkpoint.origin.clone(),
        size: cp.checkpoint.size,
        log_key: signer.key_text(),
        witnesses: cosigned,
    })
}

/// The Merkle tree of a whole journal (read under a shared lock), each record checked to
/// follow the one before. For proofs; appends never rebuild it.
pub fn journal_tree(data_dir: &Path) -> Result<merkle::Tree, TlogError> {
    let bytes = journal::snapshot(data_dir)?;
    let (lines, _) = journal::lines(&bytes);
    let mut tree = merkle::Tree::new();
    let mut prev = GENESIS_PREV.to_owned();
    for (at, line) in lines {
        let link: Link = serde_json::from_slice(line).map_err(|e| TlogError::Inconsistent {
            size: tree.size(),
            detail: format!("the line at byte {at} is not a record: {e}"),
        })?;
        if link.seq != tree.size() + 1 || link.prev != prev {
            return Err(TlogError::Inconsistent {
                size: tree.size(),
                detail: format!(
                    "record seq {} (at byte {at}) does not follow record seq {}",
                    link.seq,
                    tree.size()
                ),
            });
        }
        let leaf = merkle::record_leaf(&link.hash).ok_or_else(|| TlogError::Inconsistent {
            size: tree.size(),
            detail: format!("record seq {} has a malformed hash", link.seq),
        })?;
        tree.push(leaf);
        prev = link.hash;
    }
    Ok(tree)
}

/// Checks that `new` extends `old`: both signed by one of `keys`, of the same origin, and the
/// consistency `proof` leads from `old`'s root to `new`'s. Names the fork when it does not.
pub fn check_consistency(
    old: &SignedCheckpoint,
    new: &SignedCheckpoint,
    proof: &[Hash],
    keys: &[NoteVerifier],
) -> Result<(), TlogError> {
    for (which, c) in [("old", old), ("new", new)] {
        if c.signed_by(keys).is_none() {
            return Err(TlogError::Proof(format!(
                "the {which} checkpoint (size {}) is not signed by the log key given",
                c.checkpoint.size
            )));
        }
    }
    let (o, n) = (&old.checkpoint, &new.checkpoint);
    if o.origin != n.origin {
        return Err(TlogError::Proof(format!(
            "the checkpoints are of different logs (`{}` and `{}`)",
            o.origin, n.origin
        )));
    }
    if o.size > n.size {
        return Err(TlogError::Proof(format!(
            "the old checkpoint (size {}) is larger than the new one (size {})",
            o.size, n.size
        )));
    }
    if o.size == n.size {
        if o.root != n.root {
            return Err(TlogError::Proof(format!(
                "FORK: two checkpoints of size {} with different roots ({} and {})",
                o.size,
                B64.encode(o.root),
                B64.encode(n.root)
            )));
        }
        return Ok(());
    }
    if o.size == 0 {
        return Ok(());
    }
    merkle::verify_consistency(o.size, n.size, &o.root, &n.root, proof).map_err(|e| {
        TlogError::Proof(format!(
            "FORK: checkpoint size {} is not an extension of checkpoint size {}: {e}",
            n.size, o.size
        ))
    })
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CosignLine {
    size: u64,
    root: String,
    witness: String,
    note: String,
}

/// Stores the cosignatures of `witnesses` found on `note_text`, a checkpoint this log
/// signed (it must be in its history). Returns the names of the witnesses whose
/// cosignature was new. Anything else on the note is ignored.
pub fn add_cosignatures(
    data_dir: &Path,
    note_text: &str,
    witnesses: &[NoteVerifier],
) -> Result<Vec<String>, TlogError> {
    let offered = SignedCheckpoint::parse(note_text)?;
    let c = &offered.checkpoint;
    if offered.signed_by(&verifiers(data_dir)?).is_none() {
        return Err(TlogError::Proof(format!(
            "the checkpoint (size {}) is not signed by this log's key",
            c.size
        )));
    }
    if !history(data_dir)?.iter().any(|h| h.checkpoint == *c) {
        return Err(TlogError::Proof(format!(
            "this log never signed a checkpoint of size {} with that root",
            c.size
        )));
    }
    let have = cosignatures_for(data_dir, c, witnesses)?;
    let mut added = Vec::new();
    let path = data_dir.join(COSIGNATURES);
    for w in witnesses.iter().filter(|w| w.is_cosigner()) {
        if offered.note.verified_by(w).is_none() || have.note.verified_by(w).is_some() {
            continue;
        }
        let line = serde_json::to_string(&CosignLine {
            size: c.size,
            root: B64.encode(c.root),
            witness: w.key_text(),
            note: offered.to_text(),
        })
        .map_err(|e| TlogError::Proof(e.to_string()))?;
        append_synced(&path, format!("{line}\n").as_bytes())?;
        added.push(w.name().to_owned());
    }
    Ok(added)
}

/// The checkpoint of `cp` this log signed (from its history), with every stored
/// cosignature of `witnesses` on it.
pub fn cosignatures_for(
    data_dir: &Path,
    cp: &Checkpoint,
    witnesses: &[NoteVerifier],
) -> Result<SignedCheckpoint, TlogError> {
    let base = history(data_dir)?
        .into_iter()
        .rev()
        .find(|h| h.checkpoint == *cp)
        .ok_or_else(|| {
            TlogError::Proof(format!(
                "this log never signed a checkpoint of size {}",
                cp.size
            ))
        })?;
    with_cosignatures(data_dir, base, witnesses)
}

/// `signed` with every stored cosignature of `witnesses` for its checkpoint added (only
/// signature lines that check against one of them; the log's own signature first).
pub fn with_cosignatures(
    data_dir: &Path,
    mut signed: SignedCheckpoint,
    witnesses: &[NoteVerifier],
) -> Result<SignedCheckpoint, TlogError> {
    let path = data_dir.join(COSIGNATURES);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(signed),
        Err(source) => return Err(TlogError::Io { path, source }),
    };
    let root = B64.encode(signed.checkpoint.root);
    for line in text.lines() {
        let Ok(l) = serde_json::from_str::<CosignLine>(line) else {
            continue;
        };
        if l.size != signed.checkpoint.size || l.root != root {
            continue;
        }
        let Ok(n) = SignedCheckpoint::parse(&l.note) else {
            continue;
        };
        let mut keep = n.note.clone();
        keep.signatures.retain(|sig| {
            witnesses.iter().any(|w| {
                w.name() == sig.name
                    && Note {
                        text: n.note.text.clone(),
                        signatures: vec![sig.clone()],
                    }
                    .verified_by(w)
                    .is_some()
            })
        });
        signed.note.merge(&keep);
    }
    Ok(signed)
}

/// How many of `witnesses` cosigned `cp`.
pub fn cosigners(cp: &SignedCheckpoint, witnesses: &[NoteVerifier]) -> Vec<String> {
    witnesses
        .iter()
        .filter(|w| w.is_cosigner() && cp.note.verified_by(w).is_some())
        .map(|w| w.name().to_owned())
        .collect()
}
