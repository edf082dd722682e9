//! Self-contained bundles for auditors.
//!
//! Layout of a bundle directory:
//!
//! ```text
//! SHA256SUMS             `sha256sum -c` format: "<hex>  <path>" for EVERY other file
//! manifest.json          runs, steps, fields, evidence (with record seq + chain hash),
//!                        playbook hashes, channels, operators, chain head at export time
//! journal.jsonl          the exact original journal lines of the scope, in journal order
//! screenshots/<sha256>.png
//! warc/<sha256>.warc.gz  the recorded server responses (see `warc`)
//! archive.wacz           with `--wacz`: the same responses as a WACZ package (`wacz`)
//! VERIFY.md              how to check the bundle with sha256sum and python3 only
//! verify_journal.py      the ~30-line checker VERIFY.md describes
//! ```
//!
//! SHA256SUMS covers manifest.json, journal.jsonl, VERIFY.md, verify_journal.py and every
//! PNG (everything but itself). The excerpt's `prev` links are not contiguous (other runs'
//! records are interleaved in the full journal): a bundle proves each record's own hash and
//! its seq; the link to the full chain is the manifest's chain head, which the data
//! directory's `checkpoints.jsonl` and the CheckpointExported record pin down.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use super::journal::{self, lines};
use super::merkle::{self, Tree};
use super::png::hash_file;
use super::query::{approvals_mentioned, build_detail, timestamp};
use super::record::sha256_hex;
use super::tlog::{self, Proof, SignedCheckpoint, TlogError};
use super::verify::{parse_parallel, select_scope, Checkpoint, Scope, CHECKPOINTS};
use super::{Appended, Event, Record, Store, StoreError};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// The Python checker shipped in every bundle (also `tests/verify_python.py`).
pub const VERIFY_PY: &str = include_str!("../../tests/verify_python.py");

/// The Python checker of `.tlog-proof` files shipped in every bundle with proofs (standard
/// library plus the `openssl` command for Ed25519).
pub const VERIFY_PROOF_PY: &str = include_str!("../../tests/verify_proof.py");

/// What `export` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub out: PathBuf,
    pub runs: Vec<String>,
    pub records: usize,
    pub screenshots: usize,
    /// Recorded responses (WARC files) in the bundle.
    pub responses: usize,
    /// Every file of the bundle, relative.
    pub files: Vec<String>,
    /// Chain head the bundle covers.
    pub head: Appended,
    /// The CheckpointExported record appended for it (none for a read-only copy).
    pub checkpoint: Option<Appended>,
    /// The signed checkpoint the bundle's proofs go against (none without a log key).
    pub signed: Option<SignedSummary>,
}

/// The signed checkpoint of a bundle, in short.
#[derive(Debug, Clone, Serialize)]
pub struct SignedSummary {
    pub origin: String,
    pub size: u64,
    /// Witnesses that cosigned it.
    pub witnesses: Vec<String>,
    pub quorum: usize,
    /// At least `quorum` witnesses cosigned.
    pub final_: bool,
}

impl std::fmt::Display for ExportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "exported {} run(s), {} records, {} screenshots, {} recorded responses to {}",
            self.runs.len(),
            self.records,
            self.screenshots,
            self.responses,
            self.out.display()
        )?;
        writeln!(
            f,
            "chain head at export: seq {} hash {}",
            self.head.seq, self.head.hash
        )?;
        match &self.checkpoint {
            Some(c) => writeln!(f, "checkpoint record: seq {} hash {}", c.seq, c.hash)?,
            None => writeln!(f, "no checkpoint recorded (a read-only copy)")?,
        }
        match &self.signed {
            Some(s) if s.final_ => writeln!(
                f,
                "proofs against signed checkpoint size {} of {}{}: final",
                s.size,
                s.origin,
                if s.witnesses.is_empty() {
                    String::new()
                } else {
                    format!(", cosigned by {}", s.witnesses.join(", "))
                }
            )?,
            Some(s) => writeln!(
                f,
                "proofs against signed checkpoint size {} of {}: NOT FINAL, {} of the {} witness cosignatures required; export again once the witnesses have cosigned",
                s.size,
                s.origin,
                s.witnesses.len(),
                s.quorum
            )?,
            None => writeln!(f, "no proofs: no log key is attached")?,
        }
        writeln!(f, "check it with: cd {} && sha256sum -c SHA256SUMS && python3 verify_journal.py journal.jsonl --excerpt", self.out.display())?;
        if self.signed.is_some() {
            writeln!(
                f,
                "and each record offline, with the log's public key from `clerk key show` (not from the bundle): python3 verify_proof.py --key 'KEY' proofs/*.tlog-proof"
            )?;
        }
        Ok(())
    }
}

/// The part of manifest.json that is a pure function of the excerpt's records, so
/// `verify_bundle` can recompute it and compare.
pub fn manifest_body(records: &[Record]) -> Value {
    let mut runs = Vec::new();
    let mut evidence = Vec::new();
    let mut playbooks: Vec<Value> = Vec::new();
    let mut channels = std::collections::BTreeSet::new();
    let mut operators = std::collections::BTreeSet::new();
    let mut responses = Vec::new();
    let mut field_sources = Vec::new();
    // A screenshot or a step names the responses live at the time by WARC record id; the
    // manifest turns them into the record seqs (`responses[].record_seq`).
    let response_seq: std::collections::BTreeMap<&str, u64> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::ResponseRecorded { record_id, .. } => Some((record_id.as_str(), r.seq)),
            _ => None,
        })
        .collect();
    for r in records {
        match &r.event {
            Event::RunStarted {
                run_id,
                playbook,
                playbook_version,
                playbook_sha256,
                channel,
                operator,
                ..
            } => {
                let own: Vec<Record> = records
                    .iter()
                    .filter(|x| x.event.run_id() == Some(run_id.as_str()))
                    .cloned()
                    .collect();
                let ids = approvals_mentioned(&own);
                let approvals: Vec<Record> = records
                    .iter()
                    .filter(|x| {
                        super::index::approval_of(&x.event)
                            .is_some_and(|a| ids.iter().any(|i| i == a))
                    })
                    .cloned()
                    .collect();
                if let Some(detail) =
                    build_detail(own, approvals, &|sha| format!("screenshots/{sha}.png"))
                {
                    let mut v = serde_json::to_value(&detail).unwrap_or(Value::Null);
                    if let Value::Object(m) = &mut v {
                        m.insert(
                            "records".into(),
                            json!(detail.records.iter().map(|x| x.seq).collect::<Vec<_>>()),
                        );
                        m.insert(
                            "approvals".into(),
                            json!(detail.approvals.iter().map(|x| x.seq).collect::<Vec<_>>()),
                        );
                    }
                    runs.push(v);
                }
                let pb = json!({"name": playbook, "version": playbook_version, "sha256": playbook_sha256});
                if !playbooks.contains(&pb) {
                    playbooks.push(pb);
                }
                channels.insert(channel.clone());
                operators.insert(operator.clone());
            }
            Event::EvidenceCaptured {
                run_id,
                step,
                name,
                sha256,
                bytes,
                width,
                height,
                blank,
                responses: live,
                ..
            } => {
                evidence.push(json!({
                    "sha256": sha256, "path": format!("screenshots/{sha256}.png"), "bytes": bytes,
                    "width": width, "height": height, "blank": blank, "run_id": run_id, "step": step,
                    "name": name, "record_seq": r.seq, "record_hash": r.hash,
                    "responses": live.iter().map(|id| response_seq.get(id.as_str()).copied()).collect::<Vec<_>>(),
                }));
            }
            Event::StepFinished {
                run_id,
                step,
                fields,
                responses: live,
                ..
            } if !fields.is_empty() => {
                field_sources.push(json!({
                    "run_id": run_id, "step": step, "record_seq": r.seq,
                    "fields": fields.keys().collect::<Vec<_>>(),
                    "responses": live.iter().map(|id| response_seq.get(id.as_str()).copied()).collect::<Vec<_>>(),
                }));
            }
            Event::ResponseRecorded {
                run_id,
                step,
                method,
                url,
                status,
                mime,
                record_id,
                warc_sha256,
                payload_digest,
                payload_bytes,
                truncated,
                cap,
                ..
            } => {
                responses.push(json!({
                    "record_seq": r.seq, "record_hash": r.hash, "run_id": run_id, "step": step,
                    "method": method, "url": url, "status": status, "mime": mime,
                    "warc_record_id": record_id,
                    "path": format!("{}/{warc_sha256}.warc.gz", super::warc::WARC_DIR),
                    "sha256": warc_sha256, "payload_digest": payload_digest,
                    "payload_bytes": payload_bytes, "truncated": truncated, "cap": cap,
                }));
            }
            _ => {}
        }
    }
    let recs: Vec<Value> = records
        .iter()
        .map(|r| json!({"seq": r.seq, "hash": r.hash, "prev": r.prev, "ts": r.ts, "type": r.event.type_name(), "run_id": r.event.run_id()}))
        .collect();
    json!({
        "runs": runs,
        "records": recs,
        "evidence": evidence,
        "responses": responses,
        "field_sources": field_sources,
        "playbooks": playbooks,
        "channels": channels,
        "operators": operators,
    })
}

/// The bytes of a content-addressed file and their SHA-256, refused when they no longer
/// match the name its record (seq) gives: a bundle must never launder tampering.
fn read_checked(
    src: &Path,
    sha256: &str,
    what: &str,
    seq: u64,
) -> Result<(Vec<u8>, String), StoreError> {
    let bytes = std::fs::read(src).map_err(|source| StoreError::Io {
        path: src.to_owned(),
        source,
    })?;
    let actual = sha256_hex(&bytes);
    if actual != sha256 {
        return Err(StoreError::Other(format!(
            "{what} {} no longer matches its hash (record seq {seq}); run `clerk verify`",
            src.display()
        )));
    }
    Ok((bytes, actual))
}

fn write_file(out: &Path, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let path = out.join(rel);
    let io = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::File::create(&path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

fn verify_md(
    head: &Appended,
    scope: &Scope,
    runs: &[String],
    checkpoint: Option<&SignedCheckpoint>,
    responses: usize,
) -> String {
    let warc = if responses == 0 {
        String::new()
    } else {
        format!(
            r#"
6. The {responses} server responses the runs recorded are WARC 1.1 files in `warc/`, each
   named by its SHA-256 (checked by step 1) and named by a `response_recorded` record
   (`warc_sha256`, `record_id`, `payload_digest`), so each is in the proofs too. Each file
   is the response record then its request record, gzip members; `warcio check
   warc/*.warc.gz` (PyPI's warcio) recomputes every `WARC-Payload-Digest` and
   `WARC-Block-Digest` (`sha256:` + hex). `manifest.json` links each screenshot
   (`evidence[].responses`) and each step's extracted fields (`field_sources[]`) to the
   record seqs of the responses live at the time. What the records hold is what clerk's
   browser received: client-attested, not proof that the server sent it (TLS gives
   none). With clerk: `clerk verify --server-match RUN` on the data directory.
"#
        )
    };
    let proofs = match checkpoint {
        None => String::new(),
        Some(cp) => format!(
            r#"
5. Each record is in the log the clerk instance signed, without its journal: `proofs/`
   holds one C2SP tlog-proof (https://c2sp.org/tlog-proof) per record of this bundle,
   against the checkpoint in `checkpoint` (log `{origin}`, {size} records). Get the
   log's public key from the clerk instance's operator or a witness, NOT from this
   bundle (`log.pub` is a copy for convenience; a forger would replace it too), then:

       python3 verify_proof.py --key 'LOG-PUBLIC-KEY' proofs/*.tlog-proof

   and for a screenshot, that its record names exactly that file:

       python3 verify_proof.py --key 'LOG-PUBLIC-KEY' proofs/SEQ.tlog-proof --file screenshots/SHA.png

   Add `--witness 'WITNESS-KEY'` (repeatable) and `--quorum K` to require witness
   cosignatures. The script recomputes each record's hash from its line (the `extra`
   line), its leaf `SHA-256(0x00 || hash)`, the audit path up to the root (RFC 6962), and
   checks the Ed25519 signatures with `openssl pkeyutl -verify -rawin` (OpenSSL 3). With
   clerk: `clerk verify --proof proofs/SEQ.tlog-proof --key 'LOG-PUBLIC-KEY'`.
"#,
            origin = cp.checkpoint.origin,
            size = cp.checkpoint.size,
        ),
    };
    format!(
        r#"# Verifying this evidence bundle

Exported by clerk for {scope} (runs: {runs}). Chain head at export time: record seq {seq},
hash `{hash}`.

Everything below uses standard tools only.

1. Every file is intact (SHA256SUMS lists every file of the bundle except itself,
   including this VERIFY.md and verify_journal.py):

       sha256sum -c SHA256SUMS

2. Every journal record is unaltered:

       python3 verify_journal.py journal.jsonl --excerpt

   Each line of `journal.jsonl` is copied byte for byte from the store's journal. A
   record's `hash` is the SHA-256 of the canonical JSON of the line without its `hash`
   key: keys sorted, no whitespace, non-ASCII written as-is, i.e. Python's
   `json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)`.
   Records of other runs sit between these in the full journal, so `seq` only
   increases here and `prev` does not point at the line above; against the full
   journal (`clerk verify`, or the same script without `--excerpt`) seqs are
   contiguous and every `prev` is the previous record's `hash`.

3. Every screenshot is the one the record names: the file name is the SHA-256 of the
   PNG (`sha256sum screenshots/*.png`), equal to the `sha256` field of its
   `evidence_captured` record and to `evidence[].sha256` in manifest.json.

4. manifest.json summarizes the records (runs, steps, extracted fields, evidence with
   each record's seq and chain hash, playbook hashes, channel, operator). The chain head
   above was also written into the store's journal as a `checkpoint_exported` record,
   so a later truncation of the store's journal is detected by `clerk verify`.

{proofs}{warc}
verify_journal.py:

```python
{script}```
"#,
        proofs = proofs,
        warc = warc,
        scope = scope,
        runs = if runs.is_empty() {
            "none".to_owned()
        } else {
            runs.join(", ")
        },
        seq = head.seq,
        hash = head.hash,
        script = VERIFY_PY,
    )
}

/// Writes a bundle for `scope` into `out` (which must not exist or be empty), then appends
/// a CheckpointExported record and remembers the checkpoint in `checkpoints.jsonl`.
///
/// Refuses to export evidence that does not verify (an edited record or a PNG whose bytes
/// changed): a bundle must never launder tampering.
pub fn export(store: &Store, scope: &Scope, out: &Path) -> Result<ExportReport, StoreError> {
    export_by(store, scope, out, Some(""))
}

/// [`export`] recording who exported (`by`; `Some("")` records nobody in particular), or,
/// with `by = None`, a read-only copy that records nothing (what a plain download gives:
/// a GET must not change the store).
pub fn export_by(
    store: &Store,
    scope: &Scope,
    out: &Path,
    by: Option<&str>,
) -> Result<ExportReport, StoreError> {
    export_with(store, scope, out, by, false)
}

/// [`export_by`], adding `archive.wacz` (the recorded responses as a WACZ package, see
/// [`super::wacz`]) when `wacz` is set.
pub fn export_with(
    store: &Store,
    scope: &Scope,
    out: &Path,
    by: Option<&str>,
    wacz: bool,
) -> Result<ExportReport, StoreError> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(|source| StoreError::Io {
            path: out.to_owned(),
            source,
        })?;
        if entries.next().is_some() {
            return Err(StoreError::OutputNotEmpty(out.to_owned()));
        }
    }
    let data_dir = store.data_dir();
    // Sign first, snapshot after: the snapshot then holds every record the checkpoint covers.
    // A read-only copy (a GET) signs nothing: it proves what the latest checkpoint covers.
    let writes = by.is_some();
    let sign_now = || -> Result<Option<SignedCheckpoint>, StoreError> {
        if writes {
            Ok(store
                .checkpoint_now()
                .map_err(tlog_err)?
                .map(|s| s.checkpoint))
        } else if store.log_key().is_some() {
            tlog::latest(data_dir).map_err(tlog_err)
        } else {
            Ok(None)
        }
    };
    let mut signed = sign_now()?;
    let snapshot = journal::snapshot(data_dir)?;
    let (all_lines, _) = lines(&snapshot);
    let parsed = parse_parallel(&all_lines);
    let mut entries = Vec::new();
    for ((_, raw), p) in all_lines.iter().zip(parsed) {
        if let Ok(p) = p {
            entries.push((*raw, p));
        }
    }
    let head = entries
        .last()
        .map(|(_, p)| Appended {
            seq: p.record.seq,
            hash: p.record.hash.clone(),
        })
        .ok_or_else(|| StoreError::BadInput("the journal is empty: nothing to export".into()))?;
    let refs: Vec<&Record> = entries.iter().map(|(_, p)| &p.record).collect();
    let chosen = select_scope(&refs, scope)?;
    let newest = chosen.iter().map(|&i| refs[i].seq).max().unwrap_or(0);
    if writes && signed.as_ref().is_some_and(|s| s.checkpoint.size < newest) {
        // Records of the scope were appended between signing and the snapshot.
        signed = sign_now()?;
    }
    // The checkpoint the proofs go against: the newest one the witness quorum already
    // cosigned that covers the scope, else the one just signed (with what cosignatures
    // it has): then the bundle says it is not final.
    let (witnesses, quorum) = store.witnesses();
    let mut chosen_cp: Option<SignedCheckpoint> = None;
    if let Some(s) = &signed {
        let own =
            tlog::with_cosignatures(data_dir, s.clone(), &witnesses).unwrap_or_else(|_| s.clone());
        if quorum > 0 && tlog::cosigners(&own, &witnesses).len() < quorum {
            for h in tlog::history(data_dir).map_err(tlog_err)?.iter().rev() {
                if h.checkpoint.size < newest {
                    break;
                }
                let c =
                    tlog::with_cosignatures(data_dir, h.clone(), &witnesses).map_err(tlog_err)?;
                if tlog::cosigners(&c, &witnesses).len() >= quorum {
                    chosen_cp = Some(c);
                    break;
                }
            }
        }
        chosen_cp = chosen_cp.or(Some(own));
    }
    let tree = match &chosen_cp {
        Some(cp) => Some(proof_tree(&refs, cp)?),
        None => None,
    };
    let witnessed = chosen_cp
        .as_ref()
        .map(|cp| tlog::cosigners(cp, &witnesses))
        .unwrap_or_default();
    let mut excerpt = Vec::new();
    let mut records = Vec::new();
    for &i in &chosen {
        let (raw, p) = &entries[i];
        if !p.intact() {
            return Err(StoreError::Other(format!(
                "record seq {} does not match its hash; run `clerk verify` before exporting",
                p.record.seq
            )));
        }
        excerpt.extend_from_slice(raw);
        excerpt.push(b'\n');
        records.push(p.record.clone());
    }

    let shots = out.join("screenshots");
    std::fs::create_dir_all(&shots).map_err(|source| StoreError::Io {
        path: shots.clone(),
        source,
    })?;
    let mut sums: Vec<(String, String)> = Vec::new();
    let mut copied = std::collections::BTreeSet::new();
    for r in &records {
        if let Event::EvidenceCaptured { sha256, .. } = &r.event {
            if !copied.insert(sha256.clone()) {
                continue;
            }
            let (bytes, actual) =
                read_checked(&store.screenshot_path(sha256), sha256, "screenshot", r.seq)?;
            let rel = format!("screenshots/{sha256}.png");
            write_file(out, &rel, &bytes)?;
            sums.push((actual, rel));
        }
    }
    // The recorded responses: their WARC files, re-hashed against the records.
    let mut warcs = 0usize;
    for r in &records {
        if let Event::ResponseRecorded { warc_sha256, .. } = &r.event {
            if !copied.insert(warc_sha256.clone()) {
                continue;
            }
            let (bytes, actual) = read_checked(
                &store.warc_path(warc_sha256),
                warc_sha256,
                "recorded response",
                r.seq,
            )?;
            if warcs == 0 {
                let dir = out.join(super::warc::WARC_DIR);
                std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
            warcs += 1;
            let rel = format!("{}/{warc_sha256}.warc.gz", super::warc::WARC_DIR);
            write_file(out, &rel, &bytes)?;
            sums.push((actual, rel));
        }
    }
    let mut wacz_summary = None;
    if wacz {
        let path = out.join("archive.wacz");
        let title = format!("clerk evidence: {scope}");
        wacz_summary = Some(super::wacz::write(store, &records, &path, &title)?);
        let (h, _) = hash_file(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        sums.push((h, "archive.wacz".into()));
    }
    let mut proof_paths = serde_json::Map::new();
    let mut unproven: Vec<u64> = Vec::new();
    if let (Some(cp), Some(tree)) = (&chosen_cp, &tree) {
        let dir = out.join("proofs");
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        for &i in &chosen {
            let (raw, p) = &entries[i];
            if p.record.seq > cp.checkpoint.size {
                // Only in a read-only copy: newer than the latest signed checkpoint.
                unproven.push(p.record.seq);
                continue;
            }
            let index = p.record.seq - 1;
            let path = tree
                .inclusion_proof(index, cp.checkpoint.size)
                .map_err(|e| {
                    StoreError::Other(format!("proof of record seq {}: {e}", p.record.seq))
                })?;
            let proof = Proof {
                extra: Some(raw.to_vec()),
                index,
                path,
                checkpoint: cp.clone(),
            };
            let rel = format!("proofs/{}.tlog-proof", p.record.seq);
            let text = proof.to_text();
            write_file(out, &rel, text.as_bytes())?;
            sums.push((sha256_hex(text.as_bytes()), rel.clone()));
            proof_paths.insert(p.record.seq.to_string(), json!(rel));
        }
        journal::sync_dir(&dir)?;
        let keys = tlog::read_keys(data_dir).map_err(tlog_err)?;
        let pub_text: String = keys.iter().map(|k| format!("{k}\n")).collect();
        let cp_text = cp.to_text();
        for (rel, bytes) in [
            ("log.pub", pub_text.as_bytes()),
            ("checkpoint", cp_text.as_bytes()),
            ("verify_proof.py", VERIFY_PROOF_PY.as_bytes()),
        ] {
            write_file(out, rel, bytes)?;
            sums.push((sha256_hex(bytes), rel.to_owned()));
        }
    }
    let runs: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::RunStarted { run_id, .. } => Some(run_id.clone()),
            _ => None,
        })
        .collect();
    let mut manifest = manifest_body(&records);
    if let Value::Object(m) = &mut manifest {
        m.insert("format".into(), json!("clerk-evidence-bundle/1"));
        m.insert("exported_at".into(), json!(timestamp(chrono::Utc::now())));
        m.insert(
            "scope".into(),
            serde_json::to_value(scope).unwrap_or(Value::Null),
        );
        m.insert(
            "chain_head".into(),
            serde_json::to_value(&head).unwrap_or(Value::Null),
        );
        m.insert("journal_excerpt".into(), json!("journal.jsonl"));
        if let Some(w) = &wacz_summary {
            m.insert(
                "wacz".into(),
                json!({"path": "archive.wacz", "responses": w.responses, "pages": w.pages}),
            );
        }
        if let Some(cp) = &chosen_cp {
            let c = &cp.checkpoint;
            m.insert(
                "tlog".into(),
                json!({
                    "origin": c.origin,
                    "size": c.size,
                    "root": B64.encode(c.root),
                    "checkpoint": "checkpoint",
                    "log_keys": "log.pub",
                    "proofs": proof_paths,
                    "witnesses": witnessed,
                    "quorum": quorum,
                    "final": witnessed.len() >= quorum && unproven.is_empty(),
                    "unproven": unproven,
                }),
            );
        }
        m.insert(
            "excerpt_note".into(),
            json!(
                "journal.jsonl holds the scope's records only; their prev links are not contiguous"
            ),
        );
    }
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| StoreError::Other(e.to_string()))?;
    let md = verify_md(&head, scope, &runs, chosen_cp.as_ref(), warcs);
    for (rel, bytes) in [
        ("manifest.json", manifest_bytes.as_slice()),
        ("journal.jsonl", excerpt.as_slice()),
        ("VERIFY.md", md.as_bytes()),
        ("verify_journal.py", VERIFY_PY.as_bytes()),
    ] {
        write_file(out, rel, bytes)?;
        sums.push((sha256_hex(bytes), rel.to_owned()));
    }
    sums.sort_by(|a, b| a.1.cmp(&b.1));
    let sums_text: String = sums.iter().map(|(h, p)| format!("{h}  {p}\n")).collect();
    write_file(out, "SHA256SUMS", sums_text.as_bytes())?;
    // Double-check what landed on disk before vouching for it with a checkpoint.
    for (h, p) in &sums {
        let (actual, _) = hash_file(&out.join(p)).map_err(|source| StoreError::Io {
            path: out.join(p),
            source,
        })?;
        if &actual != h {
            return Err(StoreError::Other(format!(
                "{} changed while exporting",
                out.join(p).display()
            )));
        }
    }
    journal::sync_dir(&shots)?;
    journal::sync_dir(out)?;

    let out_abs = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_owned());
    let checkpoint = match by {
        Some(by) => Some(record_checkpoint(store, &head, &out_abs, by)?),
        None => None,
    };

    let mut files: Vec<String> = sums.into_iter().map(|(_, p)| p).collect();
    files.push("SHA256SUMS".into());
    files.sort();
    Ok(ExportReport {
        out: out_abs,
        runs,
        records: records.len(),
        screenshots: copied.len() - warcs,
        responses: warcs,
        files,
        head,
        checkpoint,
        signed: chosen_cp.as_ref().map(|cp| SignedSummary {
            origin: cp.checkpoint.origin.clone(),
            size: cp.checkpoint.size,
            final_: witnessed.len() >= quorum && unproven.is_empty(),
            witnesses: witnessed.clone(),
            quorum,
        }),
    })
}

fn tlog_err(e: TlogError) -> StoreError {
    match e {
        TlogError::Store(s) => s,
        other => StoreError::Other(other.to_string()),
    }
}

/// The Merkle tree of the snapshot's records, checked to have the signed checkpoint's root
/// at its size (the snapshot must extend what was just signed).
fn proof_tree(records: &[&Record], cp: &SignedCheckpoint) -> Result<Tree, StoreError> {
    let size = cp.checkpoint.size;
    let mut tree = Tree::new();
    for (i, r) in records.iter().enumerate() {
        if r.seq != i as u64 + 1 {
            return Err(StoreError::Other(format!(
                "the journal is not contiguous at record seq {} (run `clerk verify`)",
                r.seq
            )));
        }
        let leaf = merkle::record_leaf(&r.hash).ok_or_else(|| {
            StoreError::Other(format!("record seq {} has a malformed hash", r.seq))
        })?;
        tree.push(leaf);
    }
    match tree.root(size) {
        Ok(root) if root == cp.checkpoint.root => Ok(tree),
        Ok(_) => Err(StoreError::Other(format!(
            "the journal's first {size} records no longer have the root just signed; run `clerk verify`"
        ))),
        Err(e) => Err(StoreError::Other(format!("checkpoint size {size}: {e}"))),
    }
}

/// Appends the CheckpointExported record of an export (naming who exported) and remembers
/// it in `checkpoints.jsonl`.
fn record_checkpoint(
    store: &Store,
    head: &Appended,
    out_abs: &Path,
    by: &str,
) -> Result<Appended, StoreError> {
    let data_dir = store.data_dir();
    let at = timestamp(chrono::Utc::now());
    let checkpoint = store.append(Event::CheckpointExported {
        seq: head.seq,
        hash: head.hash.clone(),
        out: out_abs.display().to_string(),
        at: at.clone(),
        by: (!by.is_empty()).then(|| by.to_owned()),
    })?;
    let cp = Checkpoint {
        seq: head.seq,
        hash: head.hash.clone(),
        checkpoint_seq: checkpoint.seq,
        checkpoint_hash: checkpoint.hash.clone(),
        out: out_abs.display().to_string(),
        at,
    };
    let cp_path = data_dir.join(CHECKPOINTS);
    let line = serde_json::to_string(&cp).map_err(|e| StoreError::Other(e.to_string()))? + "\n";
    let io = |source| StoreError::Io {
        path: cp_path.clone(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cp_path)
        .map_err(io)?;
    f.write_all(line.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    // The export's own record goes under a signed checkpoint at once: dropping it later
    // (truncating "after the export") contradicts a signature, not only checkpoints.jsonl.
    store.checkpoint_now().map_err(tlog_err)?;

    Ok(checkpoint)
}

/// The bundle directory `dir` as a POSIX (ustar) tar archive whose entries sit under the
/// folder `top/`: `tar -xf` it, `cd top`, and `sha256sum -c SHA256SUMS` checks it as the
/// directory would. Files in name order, mode 0644, the given modification time.
pub fn tar_bundle(dir: &Path, top: &str, mtime: i64) -> Result<Vec<u8>, StoreError> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let top = tar_safe(top);
    let mut out = Vec::new();
    out.extend(tar_header(&format!("{top}/"), 0, mtime, b'5')?);
    for rel in files {
        let path = dir.join(&rel);
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Io { path, source })?;
        out.extend(tar_header(
            &format!("{top}/{rel}"),
            bytes.len() as u64,
            mtime,
            b'0',
        )?);
        out.extend_from_slice(&bytes);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

/// A folder name for a tar entry: letters, digits, `.`, `_` and `-` kept, the rest `_`.
fn tar_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.trim_start_matches('.') {
        "" => "bundle".into(),
        t => t.to_owned(),
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// One 512-byte ustar header; a name over 100 bytes is split at a `/` into prefix and name.
fn tar_header(name: &str, size: u64, mtime: i64, kind: u8) -> Result<[u8; 512], StoreError> {
    let mut h = [0u8; 512];
    let (prefix, short) = if name.len() <= 100 {
        ("", name)
    } else {
        let cut = name
            .get(..name.len().min(156))
            .and_then(|head| head.rfind('/'))
            .filter(|&i| name.len() - i - 1 <= 100)
            .ok_or_else(|| StoreError::Other(format!("{name}: too long for a tar entry")))?;
        (&name[..cut], &name[cut + 1..])
    };
    let put =
        |h: &mut [u8; 512], at: usize, field: &[u8]| h[at..at + field.len()].copy_from_slice(field);
    put(&mut h, 0, short.as_bytes());
    put(
        &mut h,
        100,
        if kind == b'5' {
            b"0000755\0"
        } else {
            b"0000644\0"
        },
    );
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, format!("{:011o}\0", mtime.max(0)).as_bytes());
    put(&mut h, 148, b"        ");
    h[156] = kind;
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    put(&mut h, 265, b"clerk");
    put(&mut h, 297, b"clerk");
    put(&mut h, 345, prefix.as_bytes());
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

#[cfg(test)]
mod tar_tests {
    use super::*;

    #[test]
    fn the_system_tar_extracts_every_file_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("b");
        std::fs::create_dir_all(src.join("screenshots")).unwrap();
        let long = format!("screenshots/{}.png", "a".repeat(64));
        std::fs::write(src.join(&long), vec![7u8; 1500]).unwrap();
        std::fs::write(src.join("SHA256SUMS"), b"x  y\n").unwrap();
        std::fs::write(src.join("empty"), b"").unwrap();
        let tar = tar_bundle(&src, "case/../evil name", 1_700_000_000).unwrap();
        assert_eq!(tar.len() % 512, 0);
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let file = dir.path().join("b.tar");
        std::fs::write(&file, &tar).unwrap();
        let status = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&file)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        let top = out.join("case_.._evil_name");
        assert_eq!(std::fs::read(top.join(&long)).unwrap(), vec![7u8; 1500]);
        assert_eq!(std::fs::read(top.join("SHA256SUMS")).unwrap(), b"x  y\n");
        assert_eq!(std::fs::read(top.join("empty")).unwrap(), b"");
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            1,
            "one top folder only"
        );
    }
}
