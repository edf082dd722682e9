//! `clerk witness init | key | run`: the witness's front end (HTTP to a clerk daemon, or a
//! copy of the data directory for air-gapped setups).

use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;

use super::args::WitnessCommand;
use super::common::exit;
use crate::evidence::merkle::Hash;
use crate::evidence::note::NoteVerifier;
use crate::evidence::tlog;
use crate::witness::{Verdict, Witness};

/// Exit status of a fork or a checkpoint the log did not sign.
const ALARM: u8 = 3;

pub async fn run(command: &WitnessCommand) -> anyhow::Result<ExitCode> {
    match command {
        WitnessCommand::Init { dir, name } => {
            let w = Witness::init(dir, name).map_err(|e| exit(2, e.to_string()))?;
            println!("{}", w.verifier_key());
            eprintln!(
                "witness key created in {} (mode 0600); add the line above to the log's [log] witnesses",
                dir.join(crate::witness::KEY_FILE).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Key { dir } => {
            let w = Witness::open(dir).map_err(|e| exit(2, e.to_string()))?;
            println!("{}", w.verifier_key());
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Run {
            dir,
            log_key,
            url,
            token,
            from,
            out,
            every,
        } => {
            let witness = Witness::open(dir).map_err(|e| exit(2, e.to_string()))?;
            let keys: Vec<NoteVerifier> = log_key
                .iter()
                .map(|k| {
                    NoteVerifier::parse(k).map_err(|e| exit(2, format!("--log-key `{k}`: {e}")))
                })
                .collect::<Result<_, _>>()?;
            let every = every
                .as_deref()
                .map(|e| {
                    crate::channel::parse_duration(e).map_err(|m| exit(2, format!("--every {m}")))
                })
                .transpose()?;
            let source = match (url, from) {
                (Some(u), _) => Source::Http {
                    base: u.trim_end_matches('/').to_owned(),
                    token: token.clone().ok_or_else(|| {
                        exit(2, "--url needs a token: --token or CLERK_TOKEN (`clerk user token NAME` on the clerk host)")
                    })?,
                    agent: ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(30))
                        .build(),
                },
                (None, Some(f)) => Source::Files {
                    data_dir: f.clone(),
                    out: out.clone(),
                },
                (None, None) => return Err(exit(2, "say where the log is: --url or --from")),
            };
            loop {
                let code = tokio::task::block_in_place(|| once(&witness, &keys, &source));
                match every {
                    None => return Ok(code),
                    Some(d) => {
                        if code == ExitCode::from(ALARM) {
                            // A fork stays a fork: keep alarming, never cosign past it.
                            eprintln!("witness: alarm raised; checking again in {d:?}");
                        }
                        tokio::time::sleep(d).await;
                    }
                }
            }
        }
    }
}

enum Source {
    Http {
        base: String,
        token: String,
        agent: ureq::Agent,
    },
    Files {
        data_dir: std::path::PathBuf,
        out: Option<std::path::PathBuf>,
    },
}

impl Source {
    fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        let Source::Http { base, token, agent } = self else {
            return Err("not an HTTP source".into());
        };
        let resp = agent
            .get(&format!("{base}{path}"))
            .set("Authorization", &format!("Bearer {token}"))
            .call();
        match resp {
            Ok(r) => r.into_json().map_err(|e| format!("{path}: {e}")),
            Err(ureq::Error::Status(code, r)) => Err(format!(
                "{path}: HTTP {code}: {}",
                r.into_string().unwrap_or_default()
            )),
            Err(e) => Err(format!("{base}{path}: {e}")),
        }
    }

    fn latest(&self) -> Result<String, String> {
        match self {
            Source::Http { .. } => self
                .get("/api/tlog/checkpoint")?
                .get("note")
                .and_then(|n| n.as_str())
                .map(str::to_owned)
                .ok_or_else(|| "the daemon's answer has no `note`".into()),
            Source::Files { data_dir, .. } => {
                let p = data_dir.join(tlog::LATEST);
                std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
            }
        }
    }

    fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, String> {
        match self {
            Source::Http { .. } => {
                let v = self.get(&format!("/api/tlog/consistency?old={old}&new={new}"))?;
                v.get("proof")
                    .and_then(|p| p.as_array())
                    .ok_or("the daemon's answer has no `proof`")?
                    .iter()
                    .map(|h| {
                        let raw = base64::engine::general_purpose::STANDARD
                            .decode(h.as_str().unwrap_or_default())
                            .map_err(|e| e.to_string())?;
                        raw.try_into()
                            .map_err(|_| "a proof hash is not 32 bytes".to_owned())
                    })
                    .collect()
            }
            Source::Files { data_dir, .. } => {
                let tree = tlog::journal_tree(data_dir).map_err(|e| e.to_string())?;
                tree.consistency_proof(old, new).map_err(|e| e.to_string())
            }
        }
    }

    fn deliver(&self, note: &str) -> Result<String, String> {
        match self {
            Source::Http { base, token, agent } => {
                let r = agent
                    .post(&format!("{base}/api/tlog/cosignature"))
                    .set("Authorization", &format!("Bearer {token}"))
                    .send_json(serde_json::json!({ "note": note }));
                match r {
                    Ok(_) => Ok(format!("handed back to {base}")),
                    Err(ureq::Error::Status(code, r)) => Err(format!(
                        "the daemon did not keep the cosignature: HTTP {code}: {}",
                        r.into_string().unwrap_or_default()
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            Source::Files { out: Some(out), .. } => std::fs::write(out, note)
                .map(|()| {
                    format!(
                        "written to {} (carry it back: clerk checkpoint --add-cosigned FILE)",
                        out.display()
                    )
                })
                .map_err(|e| format!("{}: {e}", out.display())),
            Source::Files { out: None, .. } => Ok("not handed back (no --out)".into()),
        }
    }
}

fn once(witness: &Witness, keys: &[NoteVerifier], source: &Source) -> ExitCode {
    let offered = match source.latest() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("witness: cannot fetch the checkpoint: {e}");
            return ExitCode::from(1);
        }
    };
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let origin = tlog::SignedCheckpoint::parse(&offered)
        .map(|c| c.checkpoint.origin)
        .unwrap_or_default();
    // The key of this log (after a rotation several may be given).
    let key = keys
        .iter()
        .find(|k| {
            k.name() == origin && {
                tlog::SignedCheckpoint::parse(&offered)
                    .map(|c| c.note.verified_by(k).is_some())
                    .unwrap_or(false)
            }
        })
        .or_else(|| keys.first());
    let Some(key) = key else {
        return ExitCode::from(2);
    };
    let mut proof = |o: u64, n: u64| source.consistency(o, n);
    match witness.observe(key, &offered, now, &mut proof) {
        Ok(seen) => {
            let c = &seen.held.checkpoint;
            let what = match seen.verdict {
                Verdict::Cosigned => format!(
                    "cosigned checkpoint size {} of {} (held size {})",
                    c.size,
                    c.origin,
                    seen.previous
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "none: first sight".into())
                ),
                Verdict::Same => format!(
                    "checkpoint size {} of {} is the one already cosigned",
                    c.size, c.origin
                ),
                Verdict::Stale => format!(
                    "offered an older checkpoint, consistent with size {} held",
                    c.size
                ),
            };
            println!("witness: {what}");
            if seen.verdict != Verdict::Stale {
                match source.deliver(&seen.held.to_text()) {
                    Ok(m) => println!("witness: cosignature {m}"),
                    Err(e) => {
                        eprintln!("witness: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("witness: {e}");
            tracing::error!(error = %e, "witness alarm");
            if e.is_alarm() {
                ExitCode::from(ALARM)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
