//! `clerk key`, `clerk checkpoint`, and `clerk verify --proof / --consistency`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::args::{Cli, KeyCommand, VerifyArgs};
use super::common::{exit, log_key, log_settings};
use crate::evidence::note::NoteVerifier;
use crate::evidence::tlog::{self, LogKey, Proof, SignedCheckpoint};

/// `clerk key show | rotate`.
pub fn key(cli: &Cli, command: &KeyCommand) -> anyhow::Result<ExitCode> {
    let settings = log_settings(cli)?;
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating {}", cli.data_dir.display()))?;
    let key = match command {
        KeyCommand::Show => {
            let (key, opened) = log_key(&cli.data_dir, &settings)?;
            if opened == tlog::KeyOpened::Created {
                eprintln!("created the log key {} (mode 0600)", key.path().display());
            }
            key
        }
        KeyCommand::Rotate => {
            let (data_dir, path, origin) = super::common::key_location(&cli.data_dir, &settings);
            let old = tlog::read_keys(&data_dir)?;
            let key =
                LogKey::rotate(&path, &data_dir, &origin).map_err(|e| exit(2, e.to_string()))?;
            eprintln!(
                "rotated the log key {}; earlier public keys stay in {} ({} of them), so \
                 checkpoints they signed keep verifying. Give witnesses and auditors the new key.",
                key.path().display(),
                data_dir.join(tlog::KEYS).display(),
                old.len()
            );
            // The first checkpoint under the new key, so the rotation is witnessed soon.
            let store = crate::cli::common::open_store(cli)?;
            let signed = store
                .sign_checkpoint(&key)
                .map_err(|e| exit(1, e.to_string()))?;
            eprintln!(
                "signed checkpoint size {} with the new key",
                signed.checkpoint.checkpoint.size
            );
            key
        }
    };
    println!("{}", key.verifier_key());
    eprintln!(
        "log {} · key file {} (private, mode 0600) · public keys in {}",
        key.origin(),
        key.path().display(),
        cli.data_dir.join(tlog::KEYS).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `clerk checkpoint`.
pub fn checkpoint(cli: &Cli, json: bool) -> anyhow::Result<ExitCode> {
    let settings = log_settings(cli)?;
    let store = crate::cli::common::open_store(cli)?;
    let (key, _) = log_key(store.data_dir(), &settings)?;
    let signed = store
        .sign_checkpoint(&key)
        .map_err(|e| exit(1, e.to_string()))?;
    let c = &signed.checkpoint.checkpoint;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "origin": c.origin,
                "size": c.size,
                "new": signed.new,
                "note": signed.checkpoint.to_text(),
            }))?
        );
    } else {
        eprintln!(
            "{} checkpoint of {} records",
            if signed.new {
                "signed a"
            } else {
                "already signed: the latest"
            },
            c.size
        );
        print!("{}", signed.checkpoint.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_keys(texts: &[String], what: &str) -> anyhow::Result<Vec<NoteVerifier>> {
    texts
        .iter()
        .map(|t| NoteVerifier::parse(t).map_err(|e| exit(2, format!("{what} `{t}`: {e}"))))
        .collect()
}

fn read_checkpoint(path: &Path) -> anyhow::Result<SignedCheckpoint> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| exit(2, format!("cannot read {}: {e}", path.display())))?;
    SignedCheckpoint::parse(&text).map_err(|e| exit(2, format!("{}: {e}", path.display())))
}

/// `clerk verify --proof FILE... --key KEY`.
pub fn verify_proofs(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if args.key.is_empty() {
        return Err(exit(
            2,
            "say which log key to trust: --key '<origin>+<id>+<key>' (from the clerk \
             instance's operator: `clerk key show`; not from the bundle itself)",
        ));
    }
    let keys = parse_keys(&args.key, "log key")?;
    let witnesses = parse_keys(&args.witness, "witness key")?;
    if args.quorum > witnesses.len() {
        return Err(exit(
            2,
            format!(
                "--quorum {} needs at least that many --witness keys",
                args.quorum
            ),
        ));
    }
    let file_sha = match &args.file {
        Some(p) => Some(
            std::fs::read(p)
                .map(|b| crate::evidence::record::sha256_hex(&b))
                .map_err(|e| exit(2, format!("cannot read {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let mut failed = 0usize;
    for path in &args.proof {
        let outcome = std::fs::read_to_string(path)
            .map_err(|e| tlog::TlogError::Proof(format!("cannot read: {e}")))
            .and_then(|t| Proof::parse(&t))
            .and_then(|p| tlog::check_proof(&p, &keys, &witnesses, args.quorum, None));
        match outcome {
            Ok(check) => {
                let named = match &check.record.event {
                    crate::evidence::Event::EvidenceCaptured { sha256, .. } => Some(sha256),
                    _ => None,
                };
                if let Some(want) = &file_sha {
                    if named != Some(want) {
                        println!(
                            "{}: FAILED: record seq {} does not name a file with sha256 {want}",
                            path.display(),
                            check.record.seq
                        );
                        failed += 1;
                        continue;
                    }
                }
                println!(
                    "{}: OK: record seq {} ({}) is in checkpoint size {} of {}{}",
                    path.display(),
                    check.record.seq,
                    check.record.event.type_name(),
                    check.size,
                    check.origin,
                    if check.witnesses.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", cosigned by {}",
                            check
                                .witnesses
                                .iter()
                                .map(|(w, _)| w.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                );
            }
            Err(e) => {
                println!("{}: FAILED: {e}", path.display());
                failed += 1;
            }
        }
    }
    println!(
        "{}: {} of {} proofs hold",
        if failed == 0 { "OK" } else { "FAILED" },
        args.proof.len() - failed,
        args.proof.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `clerk verify --consistency OLD NEW`.
pub fn verify_consistency(cli: &Cli, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let (old_path, new_path): (&PathBuf, &PathBuf) = match args.consistency.as_slice() {
        [a, b] => (a, b),
        _ => return Err(exit(2, "--consistency takes two checkpoint files: OLD NEW")),
    };
    let old = read_checkpoint(old_path)?;
    let new = read_checkpoint(new_path)?;
    let keys = if args.key.is_empty() {
        tlog::verifiers(&cli.data_dir).map_err(|e| exit(2, e.to_string()))?
    } else {
        parse_keys(&args.key, "log key")?
    };
    let (o, n) = (old.checkpoint.size, new.checkpoint.size);
    let proof = if o > 0 && o < n {
        let tree = tlog::journal_tree(&cli.data_dir).map_err(|e| exit(1, e.to_string()))?;
        match tree.consistency_proof(o, n) {
            Ok(p) => p,
            Err(e) => {
                println!("FAILED: this journal cannot prove size {o} to {n}: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        Vec::new()
    };
    match tlog::check_consistency(&old, &new, &proof, &keys) {
        Ok(()) => {
            println!(
                "OK: checkpoint size {n} extends checkpoint size {o} of {} ({} proof hashes)",
                new.checkpoint.origin,
                proof.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `clerk checkpoint --add-cosigned FILE`: keeps the configured witnesses' cosignatures on
/// a checkpoint this log signed.
pub fn add_cosigned(cli: &Cli, file: &Path) -> anyhow::Result<ExitCode> {
    let settings = log_settings(cli)?;
    let witnesses = parse_keys(&settings.witnesses, "[log] witnesses")?;
    if witnesses.is_empty() {
        return Err(exit(
            2,
            "no witnesses are configured ([log] witnesses in the config): nothing to keep",
        ));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| exit(2, format!("cannot read {}: {e}", file.display())))?;
    let added = tlog::add_cosignatures(&cli.data_dir, &text, &witnesses)
        .map_err(|e| exit(1, format!("{}: {e}", file.display())))?;
    if added.is_empty() {
        println!(
            "no new cosignature of a configured witness on {}",
            file.display()
        );
    } else {
        println!("kept the cosignatures of {}", added.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
