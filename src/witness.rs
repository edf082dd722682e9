//! A witness of a clerk log: run elsewhere, under someone else's control, it cosigns a
//! checkpoint only after checking that it extends the last one it cosigned.
//!
//! The witness keeps, in its own state directory (never the clerk data directory):
//!
//! ```text
//! witness.key                      its Ed25519 cosigning key (0600, Go note format, type 0x04)
//! logs/<origin>/latest             the last checkpoint it cosigned, with its cosignature
//! logs/<origin>/seen.jsonl         every checkpoint offered: {at, size, root, verdict, note}
//! logs/<origin>/forks/<n>-<t>-{held,offered}-<size>.note  both sides of each fork it was shown
//! witness.prom                     counters for a node exporter's textfile collector
//! ```
//!
//! Verdicts: `cosigned` (new, consistent), `same` (already cosigned), `stale` (older than
//! what it holds but consistent with it: nothing to sign), `fork` (two checkpoints of one
//! size with different roots, or a consistency proof that fails, or a smaller checkpoint
//! that the held one does not extend), `unsigned` (not signed by the log's key).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::evidence::merkle::{self, Hash};
use crate::evidence::note::{NoteError, NoteSigner, NoteVerifier};
use crate::evidence::tlog::SignedCheckpoint;

/// File name of the witness's key in its state directory.
pub const KEY_FILE: &str = "witness.key";

/// Errors of a witness.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("witness key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error(
        "FORK: {detail}. Both checkpoints are kept in {kept}; nothing was cosigned. Tell the \
         auditors: the log showed two different histories"
    )]
    Fork { detail: String, kept: PathBuf },
    #[error("refused: {0}")]
    Refused(String),
    #[error("cannot get what to check from the log: {0}")]
    Source(String),
    #[error(transparent)]
    Note(#[from] NoteError),
}

impl WitnessError {
    /// True for the outcomes that are alarms (a fork or a checkpoint the log did not sign).
    pub fn is_alarm(&self) -> bool {
        matches!(self, WitnessError::Fork { .. } | WitnessError::Refused(_))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WitnessError + '_ {
    move |source| WitnessError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What [`Witness::observe`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// New and consistent: cosigned now.
    Cosigned,
    /// The very checkpoint it already cosigned.
    Same,
    /// Older than the one it holds, and consistent with it.
    Stale,
}

/// The witness's answer to an offered checkpoint.
#[derive(Debug, Clone)]
pub struct Observed {
    pub verdict: Verdict,
    /// The checkpoint it holds now, with its cosignature (what to give back to the log).
    pub held: SignedCheckpoint,
    /// The size it held before.
    pub previous: Option<u64>,
}

/// A witness and its state directory.
pub struct Witness {
    dir: PathBuf,
    signer: NoteSigner,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Seen {
    at: u64,
    size: u64,
    root: String,
    verdict: String,
    note: String,
}

impl Witness {
    /// Creates a witness with a new key named `name` in `dir` (refuses to replace a key).
    pub fn init(dir: &Path, name: &str) -> Result<Witness, WitnessError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(KEY_FILE);
        let signer = NoteSigner::generate(name, true)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| WitnessError::Key {
                path: path.clone(),
                detail: if e.kind() == std::io::ErrorKind::AlreadyExists {
                    "exists already; a witness keeps its key (use `clerk witness key`)".into()
                } else {
                    e.to_string()
                },
            })?;
        f.write_all(format!("{}\n", signer.private_text()).as_bytes())
            .map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        Ok(Witness {
            dir: dir.to_owned(),
            signer,
        })
    }

    /// Opens the witness in `dir` (its key must be readable by its owner only).
    pub fn open(dir: &Path) -> Result<Witness, WitnessError> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(KEY_FILE);
        let key_err = |detail: String| WitnessError::Key {
            path: path.clone(),
            detail,
        };
        let meta = std::fs::metadata(&path).map_err(|e| {
            key_err(format!(
                "{e}; create the witness first with `clerk witness init --dir {} --name NAME`",
                dir.display()
            ))
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(key_err(format!(
                "has mode {mode:o}; it must be readable by its owner only: chmod 600 {}",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let signer = NoteSigner::parse(&text).map_err(|e| key_err(e.to_string()))?;
        if !signer.verifier().is_cosigner() {
            return Err(key_err("is not a cosigning (type 0x04) key".into()));
        }
        Ok(Witness {
            dir: dir.to_owned(),
            signer,
        })
    }

    /// The public key to configure in the log (`[log] witnesses`) and give auditors.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    fn log_dir(&self, origin: &str) -> PathBuf {
        let safe: String = origin
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join("logs").join(safe)
    }

    /// The checkpoint this witness holds (last cosigned) for `origin`.
    pub fn held(&self, origin: &str) -> Result<Option<SignedCheckpoint>, WitnessError> {
        let path = self.log_dir(origin).join("latest");
        match std::fs::read_to_string(&path) {
            Ok(t) => SignedCheckpoint::parse(&t)
                .map(Some)
                .map_err(|e| WitnessError::Source(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(WitnessError::Io { path, source }),
        }
    }

    /// Checks `offered` (a signed checkpoint's text) against what this witness holds for its
    /// log and cosigns it if it is new and consistent. `proof(old, new)` fetches the
    /// consistency proof between two sizes from the log (only called when needed). On a fork
    /// both checkpoints are kept and the error says where.
    pub fn observe(
        &self,
        log_key: &NoteVerifier,
        offered: &str,
        now: u64,
        proof: &mut dyn FnMut(u64, u64) -> Result<Vec<Hash>, String>,
    ) -> Result<Observed, WitnessError> {
        let new = SignedCheckpoint::parse(offered)
            .map_err(|e| WitnessError::Refused(format!("not a signed checkpoint: {e}")))?;
        let c = &new.checkpoint;
        let dir = self.log_dir(&c.origin);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if log_key.is_cosigner()
            || log_key.name() != c.origin
            || new.note.verified_by(log_key).is_none()
        {
            self.record(&dir, &new, now, "unsigned")?;
            self.bump("clerk_witness_refused_total")?;
            return Err(WitnessError::Refused(format!(
                "the checkpoint of `{}` (size {}) is not signed by the log key {}",
                c.origin,
                c.size,
                log_key.key_text()
            )));
        }
        let held = self.held(&c.origin)?;
        let previous = held.as_ref().map(|h| h.checkpoint.size);
        if let Some(h) = &held {
            let o = &h.checkpoint;
            let fork = |detail: String| -> Result<Observed, WitnessError> {
                let forks = dir.join("forks");
                std::fs::create_dir_all(&forks).map_err(io(&forks))?;
                let n = std::fs::read_dir(&forks).map(|d| d.count()).unwrap_or(0) / 2 + 1;
                for (side, cp) in [("held", h), ("offered", &new)] {
                    let p = forks.join(format!("{n:04}-{now}-{side}-{}.note", cp.checkpoint.size));
                    std::fs::write(&p, cp.to_text()).map_err(io(&p))?;
                }
                self.record(&dir, &new, now, "fork")?;
                self.bump("clerk_witness_forks_total")?;
                tracing::error!(origin = %c.origin, held = o.size, offered = c.size, %detail, "FORK: refusing to cosign");
                Err(WitnessError::Fork {
                    detail,
                    kept: forks.clone(),
                })
            };
            if c.size == o.size {
                if c.root != o.root {
                    return fork(format!(
                        "two checkpoints of size {} with different roots ({} held, {} offered)",
                        c.size,
                        B64.encode(o.root),
                        B64.encode(c.root)
                    ));
                }
                self.record(&dir, &new, now, "same")?;
                return Ok(Observed {
                    verdict: Verdict::Same,
                    held: h.clone(),
                    previous,
                });
            }
            let (small, big) = if c.size < o.size { (c, o) } else { (o, c) };
            if small.size > 0 {
                let hashes = match proof(small.size, big.size) {
                    Ok(h) => h,
                    // A log whose latest checkpoint is older than one it signed before, and
                    // that cannot prove the two consistent, has rolled back.
                    Err(e) if c.size < o.size => {
                        return fork(format!(
                            "the log's latest checkpoint has size {} but it signed size {} before, and cannot prove them consistent ({e}): records were removed",
                            c.size, o.size
                        ))
                    }
                    Err(e) => return Err(WitnessError::Source(e)),
                };
                if let Err(e) = merkle::verify_consistency(
                    small.size,
                    big.size,
                    &small.root,
                    &big.root,
                    &hashes,
                ) {
                    return fork(format!(
                        "checkpoint size {} is not an extension of checkpoint size {}: {e}",
                        big.size, small.size
                    ));
                }
            }
            if c.size < o.size {
                self.record(&dir, &new, now, "stale")?;
                return Ok(Observed {
                    verdict: Verdict::Stale,
                    held: h.clone(),
                    previous,
                });
            }
        }
        // New, and (when there was one) consistent with what was held: cosign.
        let mut cosigned = new.clone();
        cosigned
            .note
            .add_line(&self.signer.cosign_line(&new.note.text, now));
        let latest = dir.join("latest");
        let tmp = dir.join("latest.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(cosigned.to_text().as_bytes())
                .map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &latest).map_err(io(&latest))?;
        self.record(&dir, &cosigned, now, "cosigned")?;
        self.bump("clerk_witness_cosigned_total")?;
        Ok(Observed {
            verdict: Verdict::Cosigned,
            held: cosigned,
            previous,
        })
    }

    fn record(
        &self,
        dir: &Path,
        cp: &SignedCheckpoint,
        now: u64,
        verdict: &str,
    ) -> Result<(), WitnessError> {
        let path = dir.join("seen.jsonl");
        let line = serde_json::to_string(&Seen {
            at: now,
            size: cp.checkpoint.size,
            root: B64.encode(cp.checkpoint.root),
            verdict: verdict.into(),
            note: cp.to_text(),
        })
        .map_err(|e| WitnessError::Source(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(format!("{line}\n").as_bytes())
            .map_err(io(&path))?;
        f.sync_all().map_err(io(&path))
    }

    /// Adds one to a counter of `witness.prom` (OpenMetrics text, rewritten atomically).
    fn bump(&self, counter: &str) -> Result<(), WitnessError> {
        let path = self.dir.join("witness.prom");
        let mut counts: std::collections::BTreeMap<String, u64> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect();
        for name in [
            "clerk_witness_cosigned_total",
            "clerk_witness_forks_total",
            "clerk_witness_refused_total",
        ] {
            counts.entry(name.into()).or_insert(0);
        }
        *counts.entry(counter.to_owned()).or_insert(0) += 1;
        let mut text = String::new();
        for (k, v) in &counts {
            text.push_str(&format!(
                "# TYPE {} counter\n{k} {v}\n",
                k.trim_end_matches("_total")
            ));
        }
        text.push_str("# EOF\n");
        let tmp = self.dir.join("witness.prom.tmp");
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }
}
