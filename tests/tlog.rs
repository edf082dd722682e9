//! The transparency log over the journal: signed checkpoints, the tamper alarm, offline
//! proofs (checked by clerk and by the bundle's Python script), key handling and rotation,
//! consistency between checkpoints, and the daemon's endpoints for witnesses.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use clerk::evidence::export::export;
use clerk::evidence::merkle;
use clerk::evidence::note::{Note, NoteSigner, NoteVerifier};
use clerk::evidence::record::{parse_line, seal};
use clerk::evidence::tlog::{self, LogKey, Proof, SignedCheckpoint, TlogError};
use clerk::evidence::verify::{verify, verify_store, Problem, Scope};
use clerk::evidence::{Event, Store};

use crate::evidence_store::{journal_lines, populate, problems_text, sha256sum_check, write_lines};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A data directory `<tmp>/data` with its key beside it, as a first start makes them.
struct Log {
    tmp: tempfile::TempDir,
    store: Store,
    key: LogKey,
}

impl Log {
    fn new() -> Log {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let store = Store::open(&dir).unwrap();
        let (key, opened) = LogKey::open(
            &tlog::default_key_path(store.data_dir()),
            store.data_dir(),
            "clerk.test/shop",
        )
        .unwrap();
        assert_eq!(opened, tlog::KeyOpened::Created);
        store.set_log_key(key.clone());
        Log { tmp, store, key }
    }

    fn dir(&self) -> PathBuf {
        self.store.data_dir().to_owned()
    }

    fn key_text(&self) -> String {
        self.key.verifier_key()
    }
}

fn clerk(args: &[&str], dir: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(crate::common::clerk_bin());
    if let Some(d) = dir {
        cmd.arg("--data-dir").arg(d);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn python(bundle: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg("verify_proof.py")
        .args(args)
        .current_dir(bundle)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `python3 verify_proof.py` over every proof of `bundle`, with the log's key and, when
/// given, a witness key at quorum 1.
fn python_all_proofs(bundle: &Path, key: &str, witness: Option<&str>) -> (bool, String) {
    let proofs = proofs_in(bundle);
    let mut args = vec!["--key", key];
    if let Some(w) = witness {
        args.extend(["--witness", w, "--quorum", "1"]);
    }
    args.extend(proofs.iter().map(String::as_str));
    python(bundle, &args)
}

fn proofs_in(bundle: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(bundle.join("proofs"))
        .unwrap()
        .map(|e| format!("proofs/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    v.sort();
    v
}

/// An export carries one proof per record, the checkpoint and the keys, all in SHA256SUMS;
/// clerk and the bundle's own Python script (stdlib + openssl) accept every proof with only
/// the log's public key; a screenshot is tied to its record; and every kind of change to a
/// proof, its record, its path, its checkpoint or the key makes both refuse.
#[test]
fn every_exported_record_has_a_proof_that_clerk_and_python_check_offline() {
    let log = Log::new();
    populate(&log.store);
    let out = log.tmp.path().join("bundle");
    let report = export(&log.store, &Scope::Run("r-a".into()), &out).unwrap();
    let proofs = proofs_in(&out);
    assert_eq!(proofs.len(), report.records, "{proofs:?}");
    for f in ["checkpoint", "log.pub", "verify_proof.py"] {
        assert!(
            report.files.iter().any(|x| x == f),
            "{f} in {:?}",
            report.files
        );
    }
    assert!(sha256sum_check(&out));
    assert!(
        report.to_string().contains("python3 verify_proof.py"),
        "{report}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let size = manifest["tlog"]["size"].as_u64().unwrap();
    assert_eq!(size, report.head.seq, "the checkpoint covers the snapshot");
    assert_eq!(manifest["tlog"]["origin"], "clerk.test/shop");

    // Python, with only the public key.
    let key = log.key_text();
    let mut args = vec!["--key", key.as_str()];
    args.extend(proofs.iter().map(String::as_str));
    let (ok, text) = python(&out, &args);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "OK: {} of {} proofs hold",
            proofs.len(),
            proofs.len()
        )),
        "{text}"
    );
    // clerk, the same.
    let mut cargs = vec!["verify", "--key", key.as_str(), "--proof"];
    let abs: Vec<String> = proofs
        .iter()
        .map(|p| out.join(p).display().to_string())
        .collect();
    cargs.extend(abs.iter().map(String::as_str));
    let (ok, text) = clerk(&cargs, None);
    assert!(ok, "{text}");

    // A screenshot and its record's proof; another screenshot with it fails.
    let d = log.store.run("r-a").unwrap().unwrap();
    let shots: Vec<(u64, String)> = d
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::EvidenceCaptured { sha256, .. } => Some((r.seq, sha256.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(shots.len(), 2);
    let (seq, sha) = &shots[0];
    let proof = format!("proofs/{seq}.tlog-proof");
    let png = format!("screenshots/{sha}.png");
    let other = format!("screenshots/{}.png", shots[1].1);
    assert!(python(&out, &["--key", &key, "--file", &png, &proof]).0);
    let (ok, text) = python(&out, &["--key", &key, "--file", &other, &proof]);
    assert!(!ok && text.contains("does not name a file"), "{text}");
    let (ok, text) = clerk(
        &[
            "verify",
            "--key",
            &key,
            "--file",
            &out.join(&other).display().to_string(),
            "--proof",
            &out.join(&proof).display().to_string(),
        ],
        None,
    );
    assert!(!ok && text.contains("does not name a file"), "{text}");

    // Every change is refused by both checkers, with a reason naming what failed.
    let original = std::fs::read_to_string(out.join(&proof)).unwrap();
    let parsed = Proof::parse(&original).unwrap();
    let edit_record = {
        let mut p = parsed.clone();
        let line = String::from_utf8(p.extra.clone().unwrap()).unwrap();
        p.extra = Some(line.replacen("\"step\":1", "\"step\":2", 1).into_bytes());
        assert_ne!(p.extra, parsed.extra);
        p.to_text()
    };
    let other_index = {
        let mut p = parsed.clone();
        p.index += 1;
        p.to_text()
    };
    let bad_path = {
        let mut p = parsed.clone();
        p.path[0][0] ^= 1;
        p.to_text()
    };
    let short_path = {
        let mut p = parsed.clone();
        p.path.pop();
        p.to_text()
    };
    let other_root = original.replacen(
        &B64.encode(parsed.checkpoint.checkpoint.root),
        &B64.encode([7u8; 32]),
        1,
    );
    let bigger_tree = original.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
    let cases = [
        ("record edited", edit_record, "edited"),
        ("index changed", other_index, "index"),
        (
            "audit path hash changed",
            bad_path,
            "not in the checkpointed tree",
        ),
        (
            "audit path shortened",
            short_path,
            "not in the checkpointed tree",
        ),
        ("checkpoint root changed", other_root, "not signed"),
        ("checkpoint size changed", bigger_tree, "not signed"),
    ];
    for (name, text, why) in cases {
        assert_ne!(text, original, "{name}");
        let path = out.join("proofs/tampered.tlog-proof");
        std::fs::write(&path, &text).unwrap();
        let (ok, py) = python(&out, &["--key", &key, "proofs/tampered.tlog-proof"]);
        assert!(
            !ok && py.contains("FAILED") && py.contains(why),
            "{name}: python said {py}"
        );
        let (ok, rs) = clerk(
            &[
                "verify",
                "--key",
                &key,
                "--proof",
                &path.display().to_string(),
            ],
            None,
        );
        assert!(!ok && rs.contains("FAILED"), "{name}: clerk said {rs}");
        std::fs::remove_file(&path).unwrap();
    }
    // Another log's key, and a witness quorum nobody met.
    let stranger = NoteSigner::generate("clerk.test/shop", false)
        .unwrap()
        .verifier_key();
    let (ok, py) = python(&out, &["--key", &stranger, &proof]);
    assert!(!ok && py.contains("not signed by the log key"), "{py}");
    let w = NoteSigner::generate("witness.test", true)
        .unwrap()
        .verifier_key();
    let (ok, py) = python(
        &out,
        &["--key", &key, "--witness", &w, "--quorum", "1", &proof],
    );
    assert!(!ok && py.contains("0 of 1 witness"), "{py}");
    let (ok, rs) = clerk(
        &[
            "verify",
            "--key",
            &key,
            "--witness",
            &w,
            "--quorum",
            "1",
            "--proof",
            &out.join(&proof).display().to_string(),
        ],
        None,
    );
    assert!(!ok && rs.contains("0 of the 1 witness"), "{rs}");

    // The private key is nowhere in the data directory or the bundle.
    let secret = std::fs::read_to_string(log.key.path()).unwrap();
    let seed_b64 = secret.trim().rsplit('+').next().unwrap().to_owned();
    for root in [log.dir(), out.clone()] {
        for file in walk(&root) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&seed_b64),
                "private key in {}",
                file.display()
            );
        }
    }
}

/// A `pause` record of a drill, the `i`th.
fn drill(i: u64) -> Event {
    Event::Pause {
        on: i % 2 == 0,
        user: "ops".into(),
        reason: format!("drill {i}"),
        at: "2026-05-01T09:00:00.000Z".into(),
        channel: None,
    }
}

/// Waits (up to 10 s) until the daemon's signer has signed a checkpoint of `size` or more.
async fn wait_covered(data_dir: &Path, size: u64) -> Option<SignedCheckpoint> {
    for _ in 0..100 {
        if let Some(l) = tlog::latest(data_dir).unwrap() {
            if l.checkpoint.size >= size {
                return Some(l);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The roots clerk signs agree with an independent implementation (the bundle's Python
/// script computes RFC 6962's recursive definition) at every size of a growing journal, and
/// checkpoints are signed incrementally with each one extending the last.
#[test]
fn signed_roots_agree_with_the_python_implementation_at_every_size() {
    let log = Log::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verify_proof.py");
    let mut previous: Option<SignedCheckpoint> = None;
    for round in 0..9u32 {
        for i in 0..(round * 3 + 1) {
            log.store
                .append(Event::Pause {
                    on: i % 2 == 0,
                    user: format!("u{round}"),
                    reason: format!("r{i}"),
                    at: "2026-05-01T09:00:00.000Z".into(),
                    channel: None,
                })
                .unwrap();
        }
        let signed = log.store.sign_checkpoint(&log.key).unwrap();
        assert!(signed.new);
        let cp = signed.checkpoint;
        let out = Command::new("python3")
            .arg(&script)
            .arg("--tree-root")
            .arg(log.dir().join("journal.jsonl"))
            .arg(cp.checkpoint.size.to_string())
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            B64.encode(cp.checkpoint.root),
            "size {}",
            cp.checkpoint.size
        );
        if let Some(prev) = previous {
            let tree = tlog::journal_tree(&log.dir()).unwrap();
            let proof = tree
                .consistency_proof(prev.checkpoint.size, cp.checkpoint.size)
                .unwrap();
            tlog::check_consistency(&prev, &cp, &proof, &[log.key.verifier()]).unwrap();
        }
        previous = Some(cp);
    }
    // Nothing appended: the latest checkpoint stands, nothing new is signed.
    assert!(!log.store.sign_checkpoint(&log.key).unwrap().new);
    // Incremental: nine checkpoints, one read of the journal from its start (the bug the
    // benchmark found re-read it before every checkpoint after the first).
    assert_eq!(log.store.tree_cold_reads(), 1);
    // Another process signs at a size this cache has not reached yet: checked on the way.
    let other = Store::open(&log.dir()).unwrap();
    let pause = || Event::Pause {
        on: true,
        user: "x".into(),
        reason: "y".into(),
        at: "2026-05-01T09:00:00.000Z".into(),
        channel: None,
    };
    log.store.append(pause()).unwrap();
    other.sign_checkpoint(&log.key).unwrap();
    log.store.sign_checkpoint(&log.key).unwrap();
    assert_eq!(log.store.tree_cold_reads(), 1);
    // ... at a size this cache has already passed: one re-read, to check that root.
    log.store.append(pause()).unwrap();
    other.sign_checkpoint(&log.key).unwrap();
    log.store.append(pause()).unwrap();
    log.store.tree_head().unwrap();
    log.store.sign_checkpoint(&log.key).unwrap();
    assert_eq!(log.store.tree_cold_reads(), 2);
    assert_eq!(tlog::history(&log.dir()).unwrap().len(), 12);
}

/// What a host administrator can do to the journal (rewrite a record and recompute the whole
/// chain and the export checkpoints, reorder, drop the last records, edit one byte) passes
/// the hash-chain checks, or not; every one is caught by the signed checkpoint: clerk refuses
/// to sign on (recorded, with the checkpoint named) and `clerk verify` names the checkpoint.
#[test]
fn a_journal_rewritten_on_the_host_is_refused_by_the_signer_and_named_by_verify() {
    type Tamper = fn(&Path);
    let rows: Vec<(&str, Tamper, &str)> = vec![
        (
            "a record rewritten and the chain recomputed",
            rewrite_record_2,
            "no longer have the root",
        ),
        (
            "the last records dropped",
            |dir| {
                let lines = journal_lines(dir);
                write_lines(dir, &lines[..lines.len() - 3]);
            },
            "were removed",
        ),
        (
            "two records swapped and the chain recomputed",
            |dir| {
                let mut records: Vec<_> = journal_lines(dir)
                    .iter()
                    .map(|l| parse_line(l.as_bytes()).unwrap().record)
                    .collect();
                records.swap(3, 4);
                write_lines(dir, &resealed(records));
            },
            "no longer have the root",
        ),
    ];
    for (name, tamper, why) in rows {
        let log = Log::new();
        populate(&log.store);
        let signed = log.store.sign_checkpoint(&log.key).unwrap();
        let size = signed.checkpoint.checkpoint.size;
        let before = verify_store(&log.store, &Scope::All).unwrap();
        assert!(before.ok(), "{before}");
        let dir = log.dir();
        let key = log.key.clone();
        let Log { tmp, store, .. } = log;
        drop(store);
        // The administrator covers the tracks the chain alone would leave.
        tamper(&dir);
        let _ = std::fs::remove_dir_all(dir.join("index"));
        let _ = std::fs::remove_file(dir.join("checkpoints.jsonl"));

        let report = verify(&dir, &Scope::All).unwrap();
        let text = problems_text(&report);
        assert!(
            report.problems.iter().all(|p| matches!(p, Problem::SignedCheckpoint { .. })),
            "{name}: the chain checks alone pass such a rewrite, only the signed checkpoint should speak:\n{text}"
        );
        assert!(
            text.contains(&format!("signed checkpoint of size {size}")) && text.contains(why),
            "{name}: {text}"
        );

        let store = Store::open(&dir).unwrap();
        let err = store.sign_checkpoint(&key).unwrap_err();
        assert!(
            matches!(
                err,
                TlogError::Inconsistent { .. } | TlogError::Truncated { .. }
            ),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("TAMPER ALARM"), "{err}");
        let refused = store
            .records()
            .unwrap()
            .into_iter()
            .filter(|r| matches!(&r.event, Event::Refused { action, .. } if action == "sign_checkpoint"))
            .count();
        assert_eq!(refused, 1, "{name}: the refusal is recorded");
        // Still refused later: nothing was signed over the rewritten journal.
        assert!(store.sign_checkpoint(&key).is_err());
        assert_eq!(tlog::latest(&dir).unwrap().unwrap().checkpoint.size, size);
        drop(tmp);
    }
}

/// A byte flipped in the middle of the journal: the chain names the record, and the signer
/// refuses too.
#[test]
fn a_flipped_byte_is_named_by_the_chain_and_stops_the_signer() {
    let log = Log::new();
    populate(&log.store);
    log.store.sign_checkpoint(&log.key).unwrap();
    let mut lines = journal_lines(&log.dir());
    lines[4] = lines[4].replacen("\"ok\"", "\"OK\"", 1);
    write_lines(&log.dir(), &lines);
    let report = verify(&log.dir(), &Scope::All).unwrap();
    assert!(problems_text(&report).contains("record seq 5"), "{report}");
    // A fresh process reads the journal from the start and meets the change.
    let dir = log.dir();
    let key = log.key.clone();
    drop(log.store);
    let store = Store::open(&dir).unwrap();
    let err = store.sign_checkpoint(&key).unwrap_err();
    assert!(err.to_string().contains("TAMPER ALARM"), "{err}");
}

/// Key handling: created 0600 outside the data directory; refused inside it, readable by
/// others, missing on a log that has signed, or not one of the log's keys; rotation keeps
/// old checkpoints verifiable with the old public key and signs on with the new one.
#[test]
fn the_log_key_is_guarded_and_rotation_keeps_old_checkpoints_verifiable() {
    use std::os::unix::fs::PermissionsExt as _;
    let log = Log::new();
    let dir = log.dir();
    let path = log.key.path().to_owned();
    assert!(!path.starts_with(&dir), "{}", path.display());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    populate(&log.store);
    let first = log.store.sign_checkpoint(&log.key).unwrap().checkpoint;

    // Inside the data directory.
    let inside = dir.join("keys/log.key");
    let err = LogKey::open(&inside, &dir, "x").unwrap_err().to_string();
    assert!(err.contains("inside the data directory"), "{err}");
    assert!(!inside.exists());
    // Readable by others.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = LogKey::open(&path, &dir, "x").unwrap_err().to_string();
    assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Missing, on a log that has signed: not silently replaced by a new key.
    let elsewhere = log.tmp.path().join("moved.key");
    std::fs::rename(&path, &elsewhere).unwrap();
    let err = LogKey::open(&path, &dir, "x").unwrap_err().to_string();
    assert!(
        err.contains("is missing") && err.contains(&log.key_text()),
        "{err}"
    );
    assert!(!path.exists());
    std::fs::rename(&elsewhere, &path).unwrap();
    // Another key that is not this log's.
    let stranger = log.tmp.path().join("stranger.key");
    let s = NoteSigner::generate("clerk.test/shop", false).unwrap();
    std::fs::write(&stranger, s.private_text()).unwrap();
    std::fs::set_permissions(&stranger, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = LogKey::open(&stranger, &dir, "x").unwrap_err().to_string();
    assert!(err.contains("not one of this log's keys"), "{err}");
    // Garbage in the key file.
    std::fs::write(&stranger, "not a key").unwrap();
    let err = LogKey::open(&stranger, &dir, "x").unwrap_err().to_string();
    assert!(
        err.contains("stranger.key") && err.contains("PRIVATE+KEY"),
        "{err}"
    );

    // Rotation.
    let new = LogKey::rotate(&path, &dir, "x").unwrap();
    assert_eq!(new.origin(), "clerk.test/shop");
    assert_ne!(new.verifier_key(), log.key_text());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    log.store
        .append(Event::Pause {
            on: true,
            user: "ops".into(),
            reason: "after rotation".into(),
            at: "2026-05-01T10:00:00.000Z".into(),
            channel: None,
        })
        .unwrap();
    let second = log.store.sign_checkpoint(&new).unwrap().checkpoint;
    let old_v = NoteVerifier::parse(&log.key_text()).unwrap();
    let new_v = new.verifier();
    assert!(first.note.verified_by(&old_v).is_some());
    assert!(first.note.verified_by(&new_v).is_none());
    assert!(second.note.verified_by(&new_v).is_some());
    assert!(second.note.verified_by(&old_v).is_none());
    assert_eq!(
        tlog::read_keys(&dir).unwrap(),
        vec![log.key_text(), new.verifier_key()]
    );
    // The old key is gone for signing; both keys verify their checkpoints in `verify`.
    let err = LogKey::open(&path, &dir, "x")
        .map(|(k, _)| k.verifier_key())
        .unwrap();
    assert_eq!(err, new.verifier_key());
    let report = verify_store(&log.store, &Scope::All).unwrap();
    assert!(report.ok(), "{report}");
    // A bundle exported now carries both public keys; its proofs check with the new one,
    // and the consistency between the two checkpoints holds with both keys given.
    log.store.set_log_key(new.clone());
    let out = log.tmp.path().join("bundle");
    export(&log.store, &Scope::Run("r-b".into()), &out).unwrap();
    let pubs = std::fs::read_to_string(out.join("log.pub")).unwrap();
    assert!(pubs.contains(&log.key_text()) && pubs.contains(&new.verifier_key()));
    let (ok, text) = python_all_proofs(&out, &new.verifier_key(), None);
    assert!(ok, "{text}");
    let tree = tlog::journal_tree(&dir).unwrap();
    let proof = tree
        .consistency_proof(first.checkpoint.size, second.checkpoint.size)
        .unwrap();
    tlog::check_consistency(&first, &second, &proof, &[old_v.clone(), new_v.clone()]).unwrap();
    assert!(tlog::check_consistency(&first, &second, &proof, &[new_v]).is_err());
}

/// `clerk verify --consistency OLD NEW`: two checkpoints of this log pass; a forged
/// checkpoint of the same size with another root (a fork, signed with the log's own key as
/// a host admin could) is reported as a fork; and `clerk key show` / `clerk checkpoint`
/// work from the command line.
#[test]
fn consistency_between_checkpoints_and_a_fork_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, shown) = clerk(&["key", "show"], Some(&dir));
    assert!(ok, "{shown}");
    let vkey = shown.lines().next().unwrap().to_owned();
    assert!(NoteVerifier::parse(&vkey).is_ok(), "{shown}");
    assert!(tmp.path().join("data.log-key").exists());
    {
        let store = Store::open(&dir).unwrap();
        populate(&store);
    }
    let (ok, first) = clerk(&["checkpoint"], Some(&dir));
    assert!(ok, "{first}");
    let old = tmp.path().join("old.cp");
    std::fs::write(&old, std::fs::read(dir.join("tlog/checkpoint")).unwrap()).unwrap();
    {
        let store = Store::open(&dir).unwrap();
        populate(&store);
    }
    let (ok, _) = clerk(&["checkpoint"], Some(&dir));
    assert!(ok);
    let new = dir.join("tlog/checkpoint");
    let (ok, text) = clerk(
        &[
            "verify",
            "--consistency",
            &old.display().to_string(),
            &new.display().to_string(),
        ],
        Some(&dir),
    );
    assert!(ok && text.contains("extends"), "{text}");
    // The same with the public key given explicitly.
    let (ok, text) = clerk(
        &[
            "verify",
            "--key",
            &vkey,
            "--consistency",
            &old.display().to_string(),
            &new.display().to_string(),
        ],
        Some(&dir),
    );
    assert!(ok, "{text}");

    // A fork: the log's own key signs another root for the old size.
    let secret = std::fs::read_to_string(tmp.path().join("data.log-key")).unwrap();
    let signer = NoteSigner::parse(&secret).unwrap();
    let old_cp = SignedCheckpoint::parse(&std::fs::read_to_string(&old).unwrap()).unwrap();
    let mut forged = old_cp.checkpoint.clone();
    forged.root[0] ^= 1;
    let forged_path = tmp.path().join("forged.cp");
    std::fs::write(&forged_path, Note::sign(&forged.text(), &signer).to_text()).unwrap();
    for (a, b) in [(&old, &forged_path), (&forged_path, &new)] {
        let (ok, text) = clerk(
            &[
                "verify",
                "--consistency",
                &a.display().to_string(),
                &b.display().to_string(),
            ],
            Some(&dir),
        );
        assert!(!ok && text.contains("FORK"), "{text}");
    }
}

/// The daemon signs a checkpoint at start and serves it with consistency proofs (the
/// witness's view); both check out against the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_its_checkpoint_and_consistency_proofs() {
    use crate::common::http::http;
    use crate::console::{start, world, TestClock};
    let world = world("\n[log]\ncheckpoint_every = \"1s\"\ncheckpoint_records = 5\n").await;
    let data_dir = world.data_dir().to_owned();
    let (key, _) = LogKey::open(
        &tlog::default_key_path(&data_dir),
        &data_dir,
        "clerk.test/daemon",
    )
    .unwrap();
    world.engine.store.set_log_key(key.clone());
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let token = running.daemon.instance().token.clone();
    let get = |path: String| {
        let token = token.clone();
        async move {
            http(
                port,
                "GET",
                &path,
                &[(clerk::instance::TOKEN_HEADER, token.as_str())],
                None,
            )
            .await
        }
    };
    // The daemon signs one at start (a GET signs nothing itself).
    let mut r = get("/api/tlog/checkpoint".into()).await;
    for _ in 0..100 {
        if r.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        r = get("/api/tlog/checkpoint".into()).await;
    }
    assert_eq!(r.status, 200, "{}", r.body);
    let first = SignedCheckpoint::parse(r.json()["note"].as_str().unwrap()).unwrap();
    assert!(first.note.verified_by(&key.verifier()).is_some());
    // Records appended: the daemon's signer catches up on its own.
    for i in 0..7 {
        world.engine.store.append(drill(i)).unwrap();
    }
    let head = world.engine.store.head().unwrap().unwrap().seq;
    let second = wait_covered(&data_dir, head)
        .await
        .expect("the daemon signed a checkpoint covering the new records");
    let r = get(format!(
        "/api/tlog/consistency?old={}&new={}",
        first.checkpoint.size, second.checkpoint.size
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let proof: Vec<merkle::Hash> = r.json()["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    tlog::check_consistency(&first, &second, &proof, &[key.verifier()]).unwrap();
    // A consistency proof past the log's size is a clear 400.
    let r = get(format!("/api/tlog/consistency?old=1&new={}", head + 100)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Without credentials, nothing.
    let r = http(port, "GET", "/api/tlog/checkpoint", &[], None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    running.shutdown();
    running.wait().await.unwrap();
    // At shutdown the last records went under a checkpoint too.
    let head = world.engine.store.head().unwrap().unwrap().seq;
    assert_eq!(
        tlog::latest(&data_dir).unwrap().unwrap().checkpoint.size,
        head
    );
}

fn witness(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(crate::common::clerk_bin())
        .arg("witness")
        .args(args)
        .env_remove("CLERK_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What a host administrator does: record seq 2 says something else, and every hash after
/// it is recomputed so that the chain holds.
fn rewrite_record_2(dir: &Path) {
    let mut records: Vec<_> = journal_lines(dir)
        .iter()
        .map(|l| parse_line(l.as_bytes()).unwrap().record)
        .collect();
    if let Event::StepFinished { fields, .. } = &mut records[1].event {
        fields.insert("status".into(), "returned".into());
    }
    write_lines(dir, &resealed(records));
}

/// A witness on another machine (here: a copy of the data directory, the air-gapped mode)
/// cosigns each checkpoint that extends the last it cosigned; the cosignature carried back
/// makes the next export final and its proofs check with the witness's key. When the host
/// administrator rewrites the journal and re-signs it with the log's own key (the attack a
/// log key alone cannot stop), the witness refuses with exit 3, names the fork, keeps both
/// checkpoints and counts it, for a same-size fork and for a larger one alike.
#[test]
fn a_witness_cosigns_consistent_checkpoints_and_refuses_a_rewritten_log() {
    let log = Log::new();
    populate(&log.store);
    log.store.sign_checkpoint(&log.key).unwrap();
    let wdir = log.tmp.path().join("witness");
    let (code, out) = witness(&[
        "init",
        "--dir",
        wdir.to_str().unwrap(),
        "--name",
        "audit.test/w1",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let wkey = out.lines().next().unwrap().to_owned();
    assert!(NoteVerifier::parse(&wkey).unwrap().is_cosigner());
    // The log's config lists the witness, quorum 1.
    let dir = log.dir();
    std::fs::write(
        dir.join("clerk.toml"),
        format!("[log]\nwitnesses = [\"{wkey}\"]\nwitness_quorum = 1\n"),
    )
    .unwrap();
    let lk = log.key_text();
    let run = |out_file: &Path| {
        witness(&[
            "run",
            "--dir",
            wdir.to_str().unwrap(),
            "--log-key",
            &lk,
            "--from",
            dir.to_str().unwrap(),
            "--out",
            out_file.to_str().unwrap(),
        ])
    };
    let carried = log.tmp.path().join("cosigned.note");
    let (code, out) = run(&carried);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("cosigned checkpoint size") && out.contains("first sight"),
        "{out}"
    );
    let (ok, text) = clerk(
        &["checkpoint", "--add-cosigned", carried.to_str().unwrap()],
        Some(&dir),
    );
    assert!(ok && text.contains("audit.test/w1"), "{text}");

    // More records, a new checkpoint: consistent, cosigned; then nothing new: the same.
    populate(&log.store);
    log.store.sign_checkpoint(&log.key).unwrap();
    let (code, out) = run(&carried);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("cosigned checkpoint size"), "{out}");
    let (ok, text) = clerk(
        &["checkpoint", "--add-cosigned", carried.to_str().unwrap()],
        Some(&dir),
    );
    assert!(ok, "{text}");
    let (code, out) = run(&carried);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("already cosigned"), "{out}");

    // An export now is final: its proofs carry the cosignature and pass with quorum 1.
    let wv = NoteVerifier::parse(&wkey).unwrap();
    log.store.set_witnesses(vec![wv.clone()], 1);
    let bundle = log.tmp.path().join("bundle");
    let report = export(&log.store, &Scope::Run("r-a".into()), &bundle).unwrap();
    let s = report.signed.clone().unwrap();
    assert!(s.final_ && s.witnesses == ["audit.test/w1"], "{report}");
    let (ok, text) = python_all_proofs(&bundle, &lk, Some(&wkey));
    assert!(ok, "{text}");

    // The export signed a checkpoint over its own record: the witness cosigns it too.
    let (code, out) = run(&carried);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("cosigned checkpoint size"), "{out}");

    // A same-size fork: the log's own key signs another root for the size the witness holds.
    let size_before = tlog::latest(&dir).unwrap().unwrap().checkpoint.size;
    let honest = std::fs::read_to_string(dir.join(tlog::LATEST)).unwrap();
    let signer = NoteSigner::parse(&std::fs::read_to_string(log.key.path()).unwrap()).unwrap();
    let mut other = SignedCheckpoint::parse(&honest).unwrap().checkpoint;
    other.root[5] ^= 0x40;
    std::fs::write(
        dir.join(tlog::LATEST),
        Note::sign(&other.text(), &signer).to_text(),
    )
    .unwrap();
    let (code, out) = run(&carried);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("FORK") && out.contains(&format!("two checkpoints of size {size_before}")),
        "{out}"
    );
    std::fs::write(dir.join(tlog::LATEST), &honest).unwrap();

    // The host admin rewrites record 2, recomputes the chain, throws away tlog/ and signs
    // the rewritten journal with the log's own key: a valid signature over another history.
    let key = log.key.clone();
    let Log { tmp, store, .. } = log;
    drop(store);
    let mut lines = journal_lines(&dir);
    lines.truncate(size_before as usize);
    write_lines(&dir, &lines);
    rewrite_record_2(&dir);
    std::fs::remove_dir_all(dir.join("tlog")).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("index"));
    let (key, _) = LogKey::open(key.path(), &dir, "ignored").unwrap();
    let store = Store::open(&dir).unwrap();
    store
        .append(Event::Pause {
            on: false,
            user: "admin".into(),
            reason: "cover".into(),
            at: "2026-05-01T11:00:00.000Z".into(),
            channel: None,
        })
        .unwrap();
    let forged = store.sign_checkpoint(&key).unwrap().checkpoint;
    assert!(forged.checkpoint.size > size_before);
    let (code, out) = run(&carried);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("FORK") && out.contains("not an extension"),
        "{out}"
    );
    let forks: Vec<_> = walk(&wdir.join("logs"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/forks/"))
        .collect();
    assert_eq!(forks.len(), 4, "both sides of both forks: {forks:?}");
    let prom = std::fs::read_to_string(wdir.join("witness.prom")).unwrap();
    assert!(prom.contains("clerk_witness_forks_total 2"), "{prom}");
    // What it holds is still the honest checkpoint, cosigned.
    let held = std::fs::read_to_string(
        walk(&wdir.join("logs"))
            .into_iter()
            .find(|p| p.ends_with("latest"))
            .unwrap(),
    )
    .unwrap();
    let held = SignedCheckpoint::parse(&held).unwrap();
    assert_eq!(held.checkpoint.size, size_before);
    assert_ne!(held.checkpoint.root, other.root);
    assert!(held.note.verified_by(&wv).is_some());
    let seen = std::fs::read_to_string(
        walk(&wdir.join("logs"))
            .into_iter()
            .find(|p| p.ends_with("seen.jsonl"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(seen.matches("\"verdict\":\"fork\"").count(), 2, "{seen}");

    // A checkpoint signed by some other key is refused as unsigned (exit 3 too).
    let (code, out) = witness(&[
        "run",
        "--dir",
        wdir.to_str().unwrap(),
        "--log-key",
        &NoteSigner::generate(key.origin(), false)
            .unwrap()
            .verifier_key(),
        "--from",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("not signed by the log key"), "{out}");
    drop(tmp);
}

/// Over HTTP: the witness fetches the daemon's checkpoint and consistency proof with an
/// auditor's token, cosigns, and hands the cosignature back; the daemon keeps it (only for
/// configured witnesses) and serves the cosigned checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_over_http_hands_its_cosignature_back_to_the_daemon() {
    use crate::common::http::http;
    use crate::console::{start, world, TestClock};
    let wtmp = tempfile::tempdir().unwrap();
    let wdir = wtmp.path().join("w");
    let w = clerk::witness::Witness::init(&wdir, "audit.test/http").unwrap();
    let wkey = w.verifier_key();
    let world = world(&format!(
        "\n[log]\nwitnesses = [\"{wkey}\"]\nwitness_quorum = 1\ncheckpoint_every = \"1s\"\n"
    ))
    .await;
    let data_dir = world.data_dir().to_owned();
    let (key, _) = LogKey::open(
        &tlog::default_key_path(&data_dir),
        &data_dir,
        "clerk.test/http",
    )
    .unwrap();
    world.engine.store.set_log_key(key.clone());
    world.engine.store.set_witnesses(vec![w.verifier()], 1);
    let token = clerk::users::create_token(
        &data_dir,
        &world.engine.config,
        "audrey",
        "2026-01-01T00:00:00.000Z",
    )
    .unwrap();
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let url = format!("http://127.0.0.1:{port}");
    let lk = key.verifier_key();
    let wd = wdir.to_str().unwrap().to_owned();
    let run = {
        let (url, lk, wd, token) = (url.clone(), lk.clone(), wd.clone(), token.clone());
        move || {
            let out = Command::new(crate::common::clerk_bin())
                .args([
                    "witness",
                    "run",
                    "--dir",
                    &wd,
                    "--log-key",
                    &lk,
                    "--url",
                    &url,
                ])
                .env("CLERK_TOKEN", &token)
                .output()
                .unwrap();
            (
                out.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }
    };
    wait_covered(&data_dir, 0).await;
    let r1 = run.clone();
    let (code, out) = tokio::task::spawn_blocking(r1).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("handed back"), "{out}");
    for i in 0..4 {
        world.engine.store.append(drill(i)).unwrap();
    }
    // The daemon's signer covers them within its cadence (1 s here).
    wait_covered(&data_dir, world.engine.store.head().unwrap().unwrap().seq).await;
    let (code, out) = tokio::task::spawn_blocking(run).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("cosigned checkpoint size") && out.contains("handed back"),
        "{out}"
    );
    let r = http(
        port,
        "GET",
        "/api/tlog/checkpoint",
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["witnesses"],
        serde_json::json!(["audit.test/http"]),
        "{v}"
    );
    let served = SignedCheckpoint::parse(v["note"].as_str().unwrap()).unwrap();
    assert!(served.note.verified_by(&w.verifier()).is_some());
    // A cosignature by a witness the log does not list is not kept.
    let stranger = clerk::witness::Witness::init(&wtmp.path().join("s"), "stranger.test").unwrap();
    let mut proof = |_: u64, _: u64| -> Result<Vec<merkle::Hash>, String> { Ok(Vec::new()) };
    let seen = stranger
        .observe(
            &key.verifier(),
            v["note"].as_str().unwrap(),
            1_765_000_000,
            &mut proof,
        )
        .unwrap();
    let r = http(
        port,
        "POST",
        "/api/tlog/cosignature",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        Some(&serde_json::json!({"note": seen.held.to_text()}).to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["added"], serde_json::json!([]), "{}", r.body);
    running.shutdown();
    running.wait().await.unwrap();
}

/// Appends `n` sealed `pause` records to a closed store's journal (fast: no fsync each).
fn extend_journal(dir: &Path, n: usize) {
    let mut lines = journal_lines(dir);
    let last = parse_line(lines.last().unwrap().as_bytes()).unwrap().record;
    let (mut seq, mut prev) = (last.seq, last.hash);
    for i in 0..n {
        seq += 1;
        let (r, line) = seal(
            seq,
            "2026-05-01T12:00:00.000Z".into(),
            prev.clone(),
            Event::Pause {
                on: i % 2 == 0,
                user: format!("ops-{}", i % 7),
                reason: format!("drill {i}"),
                at: "2026-05-01T12:00:00.000Z".into(),
                channel: None,
            },
        )
        .unwrap();
        prev = r.hash;
        lines.push(line);
    }
    write_lines(dir, &lines);
}

/// The journal, the screenshots and the log's public files of `from` (no index: the
/// administrator rebuilds it anyway) in a fresh directory.
fn copy_evidence(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["journal.jsonl", "checkpoints.jsonl"] {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    }
    crate::evidence_store::copy_dir(&from.join("screenshots"), &to.join("screenshots"));
    crate::evidence_store::copy_dir(&from.join("tlog"), &to.join("tlog"));
}

fn resealed(records: Vec<clerk::evidence::Record>) -> Vec<String> {
    let mut prev = clerk::evidence::record::GENESIS_PREV.to_owned();
    let mut out = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        let (sealed, line) = seal(i as u64 + 1, r.ts, prev.clone(), r.event).unwrap();
        prev = sealed.hash;
        out.push(line);
    }
    out
}

/// The tamper suite of issue 17 on a journal of more than 10,000 records whose checkpoint a
/// witness has cosigned and of which a bundle was exported: a flipped byte, a deleted record
/// and two swapped records at ten places each, the last records truncated after the export
/// with the index rebuilt and the export checkpoints removed, a record rewritten with the
/// whole chain, the export checkpoints and the log's files recomputed and re-signed with the
/// log's own key, and a fork served to the witness. Every case is caught (by `verify`, by
/// the witness, or by a proof failing the witness quorum) and the message names the record
/// or the checkpoint.
#[test]
fn the_tamper_suite_on_ten_thousand_records_catches_every_case() {
    let log = Log::new();
    populate(&log.store);
    let dir = log.dir();
    let key = log.key.clone();
    let Log { tmp, store, .. } = log;
    drop(store);
    extend_journal(&dir, 10_000);
    let store = Store::open(&dir).unwrap();
    store.set_log_key(key.clone());
    let total = store.head().unwrap().unwrap().seq;
    assert!(total > 10_000);
    // The witness cosigns; the daemon keeps its cosignature; the export is final.
    let wdir = tmp.path().join("witness");
    let w = clerk::witness::Witness::init(&wdir, "audit.test/tamper").unwrap();
    let signed = store.sign_checkpoint(&key).unwrap().checkpoint;
    let proof_from = |d: PathBuf| {
        move |o: u64, n: u64| -> Result<Vec<merkle::Hash>, String> {
            tlog::journal_tree(&d)
                .map_err(|e| e.to_string())?
                .consistency_proof(o, n)
                .map_err(|e| e.to_string())
        }
    };
    let mut honest = proof_from(dir.clone());
    let seen = w
        .observe(
            &key.verifier(),
            &signed.to_text(),
            1_765_000_000,
            &mut honest,
        )
        .unwrap();
    tlog::add_cosignatures(&dir, &seen.held.to_text(), &[w.verifier()]).unwrap();
    store.set_witnesses(vec![w.verifier()], 1);
    let bundle = tmp.path().join("bundle");
    let report = export(&store, &Scope::Run("r-b".into()), &bundle).unwrap();
    assert!(report.signed.as_ref().unwrap().final_, "{report}");
    // The export's own record went under a new checkpoint; the witness cosigns that too.
    let after = tlog::latest(&dir).unwrap().unwrap();
    assert_eq!(after.checkpoint.size, store.head().unwrap().unwrap().seq);
    let seen = w
        .observe(
            &key.verifier(),
            &after.to_text(),
            1_765_000_050,
            &mut honest,
        )
        .unwrap();
    assert_eq!(seen.verdict, clerk::witness::Verdict::Cosigned);
    let held_size = after.checkpoint.size;
    drop(store);
    let pristine = tmp.path().join("pristine");
    copy_evidence(&dir, &pristine);
    let lines = journal_lines(&pristine);
    let n = lines.len();
    let signed_size = signed.checkpoint.size;
    let places: Vec<usize> = (0..10).map(|k| 20 + k * (n - 40) / 9).collect();
    let mut cases = 0;
    let mut caught = 0;
    let mut check = |name: String, ok: bool, text: &str| {
        cases += 1;
        if ok {
            caught += 1;
        } else {
            eprintln!("NOT CAUGHT: {name}: {text}");
        }
    };
    let fresh = |tag: &str| -> PathBuf {
        let d = tmp.path().join(format!("case-{tag}"));
        copy_evidence(&pristine, &d);
        d
    };
    // What a copy of the witness (its state as it is now) says to `note`, the log being `d`.
    let witness_says = |tag: &str, note: &str, d: &Path| -> String {
        let ws = tmp.path().join(format!("w-{tag}"));
        crate::evidence_store::copy_dir(&wdir, &ws);
        let wc = clerk::witness::Witness::open(&ws).unwrap();
        let mut p = proof_from(d.to_owned());
        match wc.observe(&key.verifier(), note, 1_765_000_100, &mut p) {
            Err(e) => e.to_string(),
            Ok(_) => "cosigned".into(),
        }
    };
    let verify_text = |d: &Path| {
        let r = clerk::evidence::verify::verify_without_index(d, &Scope::All).unwrap();
        (r.ok(), problems_text(&r))
    };

    for &at in &places {
        let seq = at + 1;
        // A flipped byte inside the record's event.
        let d = fresh(&format!("flip-{at}"));
        let mut l = journal_lines(&d);
        let pos = l[at].find("\"event\":{").unwrap() + 12;
        let mut bytes = l[at].clone().into_bytes();
        bytes[pos] ^= 0x01;
        l[at] = String::from_utf8_lossy(&bytes).into_owned();
        write_lines(&d, &l);
        let (ok, text) = verify_text(&d);
        check(
            format!("flip at seq {seq}"),
            !ok && (text.contains(&format!("record seq {seq} "))
                || text.contains(&format!("journal line {seq} "))),
            &text,
        );
        // A deleted record.
        let d = fresh(&format!("del-{at}"));
        let mut l = journal_lines(&d);
        l.remove(at);
        write_lines(&d, &l);
        let (ok, text) = verify_text(&d);
        check(
            format!("delete seq {seq}"),
            !ok && text.contains(&format!("record seq {seq} is missing")),
            &text,
        );
        // Two records swapped.
        let d = fresh(&format!("swap-{at}"));
        let mut l = journal_lines(&d);
        l.swap(at, at + 1);
        write_lines(&d, &l);
        let (ok, text) = verify_text(&d);
        check(
            format!("swap seq {seq}/{}", seq + 1),
            !ok && text.contains(&format!("seq {}", seq + 1)),
            &text,
        );
    }
    // Truncated after the export, index rebuilt, the export checkpoints removed: `verify`
    // names the signed checkpoint; and if the administrator also re-signs the shortened
    // journal, the witness refuses the rollback.
    for cut in [1usize, 2, 50, 5_000, n - 17] {
        let d = fresh(&format!("cut-{cut}"));
        let mut l = journal_lines(&d);
        l.truncate(n - cut);
        write_lines(&d, &l);
        std::fs::remove_file(d.join("checkpoints.jsonl")).ok();
        Store::open(&d).unwrap().reindex().unwrap();
        let (ok, text) = verify_text(&d);
        check(
            format!("truncate {cut} (verify)"),
            !ok && text.contains(&format!("signed checkpoint of size {held_size}"))
                && text.contains("were removed"),
            &text,
        );
        std::fs::remove_dir_all(d.join("tlog")).unwrap();
        let (k2, _) = LogKey::open(key.path(), &d, "x").unwrap();
        let resigned = Store::open(&d).unwrap().sign_checkpoint(&k2).unwrap();
        let text = witness_says(&format!("cut-{cut}"), &resigned.checkpoint.to_text(), &d);
        check(
            format!("truncate {cut} (witness)"),
            text.contains("FORK") && text.contains(&format!("size {held_size}")),
            &text,
        );
    }
    // Rewritten and re-signed by the host's administrator, who holds the log key.
    for &at in places.iter().take(5) {
        let seq = at + 1;
        let d = fresh(&format!("rewrite-{at}"));
        let mut records: Vec<_> = journal_lines(&d)
            .iter()
            .map(|l| parse_line(l.as_bytes()).unwrap().record)
            .collect();
        records[at].ts = "2026-05-01T12:00:00.001Z".into();
        write_lines(&d, &resealed(records));
        std::fs::remove_file(d.join("checkpoints.jsonl")).ok();
        std::fs::remove_dir_all(d.join("tlog")).unwrap();
        let (k2, _) = LogKey::open(key.path(), &d, "x").unwrap();
        let st = Store::open(&d).unwrap();
        let forged = st.sign_checkpoint(&k2).unwrap().checkpoint;
        // The host's own verify cannot tell: everything was recomputed and re-signed.
        // The witness can.
        let text = witness_says(&format!("rewrite-{at}"), &forged.to_text(), &d);
        check(
            format!("rewrite seq {seq} (witness)"),
            text.contains("FORK") && text.contains(&format!("size {held_size}")),
            &text,
        );
        // And a proof the rewritten host now hands out for that record fails the quorum.
        st.set_log_key(k2.clone());
        st.set_witnesses(vec![w.verifier()], 1);
        let re = tmp.path().join(format!("bundle-rewrite-{at}"));
        let rep = export(&st, &Scope::Run("r-b".into()), &re).unwrap();
        let s = rep.signed.unwrap();
        check(
            format!("rewrite seq {seq} (bundle not final)"),
            !s.final_,
            "final",
        );
        let some = proofs_in(&re)[0].clone();
        let proof = Proof::parse(&std::fs::read_to_string(re.join(&some)).unwrap()).unwrap();
        let r = tlog::check_proof(&proof, &[key.verifier()], &[w.verifier()], 1, None);
        let text = r.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
        check(
            format!("rewrite seq {seq} (offline proof)"),
            r.is_err() && text.contains("0 of the 1 witness"),
            &text,
        );
    }
    // A fork served straight to the witness: the log's key signs another root at its size.
    let signer = NoteSigner::parse(&std::fs::read_to_string(key.path()).unwrap()).unwrap();
    let mut other = signed.checkpoint.clone();
    other.root[31] ^= 0x80;
    let mut p = proof_from(pristine.clone());
    let mut serve_fork = |cp: &clerk::evidence::note::Checkpoint| {
        let note = Note::sign(&cp.text(), &signer).to_text();
        let r = w.observe(&key.verifier(), &note, 1_765_000_300, &mut p);
        r.err().map(|e| e.to_string()).unwrap_or_default()
    };
    let text = serve_fork(&other);
    check(
        "fork served".into(),
        text.contains("FORK") && text.contains(&format!("size {signed_size}")),
        &text,
    );
    // And one of the held size: two roots for one size.
    let mut same = after.checkpoint.clone();
    same.root[0] ^= 0x01;
    let text = serve_fork(&same);
    check(
        "same-size fork served".into(),
        text.contains(&format!("two checkpoints of size {held_size}")),
        &text,
    );

    assert_eq!(caught, cases, "{caught} of {cases} tamperings caught");
    assert!(cases >= 50, "{cases}");
    // The untouched copy still verifies, and the bundle's proofs pass with the quorum.
    assert!(verify_text(&pristine).0);
    let kt = key.verifier_key();
    let wk = w.verifier_key();
    let (ok, text) = python_all_proofs(&bundle, &kt, Some(&wk));
    assert!(ok, "{text}");
}

/// A read-only copy (what a GET download makes) signs nothing and appends nothing: its
/// proofs go against the latest signed checkpoint, and records newer than it are listed as
/// unproven, the bundle not final.
#[test]
fn a_read_only_copy_signs_nothing_and_lists_what_it_cannot_prove() {
    let log = Log::new();
    populate(&log.store);
    log.store.sign_checkpoint(&log.key).unwrap();
    let signed = tlog::latest(&log.dir()).unwrap().unwrap().checkpoint.size;
    // A new run after the checkpoint.
    log.store
        .append(Event::StepFinished {
            run_id: "r-a".into(),
            step: 3,
            name: "late".into(),
            kind: "extract".into(),
            outcome: "ok".into(),
            error: None,
            started_at: "2026-05-01T09:00:09.000Z".into(),
            duration_ms: 5,
            fields: Default::default(),
            responses: vec![],
        })
        .unwrap();
    let snapshot = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = walk(&d.join("tlog"))
            .into_iter()
            .filter(|p| !p.ends_with("sign.lock"))
            .map(|p| {
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        v.push((
            d.join("journal.jsonl"),
            std::fs::read(d.join("journal.jsonl")).unwrap(),
        ));
        v.sort();
        v
    };
    let before = snapshot(&log.dir());
    let out = log.tmp.path().join("copy");
    let report =
        clerk::evidence::export::export_by(&log.store, &Scope::Run("r-a".into()), &out, None)
            .unwrap();
    assert_eq!(
        snapshot(&log.dir()),
        before,
        "a read-only copy wrote to the data directory"
    );
    let s = report.signed.unwrap();
    assert_eq!(s.size, signed);
    assert!(!s.final_);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let late = signed + 1;
    assert_eq!(
        manifest["tlog"]["unproven"],
        serde_json::json!([late]),
        "{manifest}"
    );
    assert!(!out.join(format!("proofs/{late}.tlog-proof")).exists());
    let proofs = proofs_in(&out);
    assert_eq!(proofs.len(), report.records - 1);
    let (ok, text) = python_all_proofs(&out, &log.key_text(), None);
    assert!(ok, "{text}");
}
