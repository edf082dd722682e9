//! Benchmark of the transparency log: what signing checkpoints costs the append path, and how
//! fast an auditor checks a bundle's inclusion proofs offline.
//!
//! ```text
//! cargo run --release --example bench_tlog -- [--records N] [--rounds R] [--proofs P]
//! ```
//!
//! 1. Appends N records (default 20000) from 4 writer threads into a fresh store, R times
//!    (default 3) for each of: no checkpoints (baseline); a signer thread as the daemon's
//!    (polls every 500 ms, signs once 1000 records were appended); and, as upper bounds of
//!    the cost, signers polling every 10 ms that sign every 1000 and every 100 records.
//!    Rounds alternate; prints records/s, checkpoints signed, the median of each and the
//!    ratio to the baseline.
//! 2. Builds a run of P records (default 10000), exports it (one `.tlog-proof` per record),
//!    then checks every proof with only the log's public key: with clerk's checker
//!    (`tlog::check_proof`, what `clerk verify --proof` runs) and with the bundle's
//!    `verify_proof.py` (Python stdlib + openssl), against `sha256sum -c SHA256SUMS` over the
//!    same bundle as the baseline. Prints proofs/s and the ratios.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::evidence::export::export;
use clerk::evidence::note::NoteVerifier;
use clerk::evidence::tlog::{self, LogKey, Proof};
use clerk::evidence::verify::Scope;
use clerk::evidence::{Event, Store};

fn arg(args: &[String], flag: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pause(writer: usize, i: usize) -> Event {
    Event::Pause {
        on: i % 2 == 0,
        user: format!("writer-{writer}"),
        reason: format!("bench {i}"),
        at: "2026-12-06T00:00:00.000Z".into(),
        channel: None,
    }
}

fn open_log(dir: &Path) -> Result<(Store, LogKey), Box<dyn std::error::Error>> {
    let store = Store::open(dir)?;
    let (key, _) = LogKey::open(
        &tlog::default_key_path(store.data_dir()),
        store.data_dir(),
        "clerk.bench/log",
    )?;
    store.set_log_key(key.clone());
    Ok((store, key))
}

/// One round: records/s and checkpoints signed, with a signer every `every` records (none
/// when 0).
fn append_round(
    records: usize,
    every: u64,
    poll_ms: u64,
) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let (store, key) = open_log(&tmp.path().join("data"))?;
    let done = Arc::new(AtomicBool::new(false));
    let signer = (every > 0).then(|| {
        let (store, key, done) = (store.clone(), key.clone(), done.clone());
        std::thread::spawn(move || {
            let mut signed_at = 0u64;
            let mut count = 0u64;
            let mut busy = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(poll_ms));
                if let Ok((size, _)) = store.tree_head() {
                    if size >= signed_at + every {
                        let t = Instant::now();
                        let signed = store.sign_checkpoint(&key);
                        busy += t.elapsed();
                        if let Ok(s) = signed {
                            signed_at = s.checkpoint.checkpoint.size;
                            count += 1;
                        }
                    }
                }
            }
            eprintln!("  signer: {count} checkpoints, {busy:?} signing");
            count
        })
    });
    let writers = 4;
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..records / writers {
                    store.append(pause(w, i)).expect("append");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "writer panicked")?;
    }
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let count = match signer {
        Some(h) => h.join().map_err(|_| "signer panicked")?,
        None => 0,
    };
    Ok(((records / writers * writers) as f64 / secs, count))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let records = arg(&args, "--records", 20_000);
    let rounds = arg(&args, "--rounds", 3);
    let proofs = arg(&args, "--proofs", 10_000);

    println!("## appends, 4 writers, {records} records per round");
    println!("| round | no checkpoints (records/s) | daemon default: poll 500 ms, ≥ 1000 records | poll 10 ms, every 1000 records | poll 10 ms, every 100 records |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    let mut cols: [Vec<f64>; 4] = Default::default();
    for r in 1..=rounds {
        let (a, _) = append_round(records, 0, 0)?;
        let (b, nb) = append_round(records, 1000, 500)?;
        let (c, nc) = append_round(records, 1000, 10)?;
        let (e, ne) = append_round(records, 100, 10)?;
        println!(
            "| {r} | {a:.0} | {b:.0} ({nb} signed) | {c:.0} ({nc} signed) | {e:.0} ({ne} signed) |"
        );
        for (col, v) in cols.iter_mut().zip([a, b, c, e]) {
            col.push(v);
        }
    }
    let m: Vec<f64> = cols.into_iter().map(median).collect();
    println!(
        "| **median** | **{:.0}** | **{:.0}** ({:.3}×) | **{:.0}** ({:.3}×) | **{:.0}** ({:.3}×) |",
        m[0],
        m[1],
        m[1] / m[0],
        m[2],
        m[2] / m[0],
        m[3],
        m[3] / m[0]
    );

    println!("\n## offline proofs of a {proofs}-record run");
    let tmp = tempfile::tempdir()?;
    let (store, key) = open_log(&tmp.path().join("data"))?;
    let run = "r-bench".to_owned();
    store.append(Event::RunStarted {
        run_id: run.clone(),
        playbook: "bench".into(),
        playbook_version: "1".into(),
        playbook_sha256: "ab".repeat(32),
        channel: "bench".into(),
        mode: "read_only".into(),
        operator: "bench".into(),
        case_ref: None,
        inputs: Default::default(),
        batch_id: None,
        approval_id: None,
        owner: store.owner(),
        claims: Default::default(),
        replay_of: None,
        rollback_of: None,
    })?;
    for n in 1..proofs.saturating_sub(1) {
        store.append(Event::StepFinished {
            run_id: run.clone(),
            step: n as u64,
            name: format!("step {n}"),
            kind: "extract".into(),
            outcome: "ok".into(),
            error: None,
            started_at: "2026-12-06T00:00:00.000Z".into(),
            duration_ms: 1,
            fields: Default::default(),
            responses: Vec::new(),
        })?;
    }
    store.append(Event::RunFinished {
        run_id: run.clone(),
        status: "ok".into(),
        error: None,
        fields: Default::default(),
        finished_at: "2026-12-06T00:00:01.000Z".into(),
        browser: None,
    })?;
    let out = tmp.path().join("bundle");
    let report = export(&store, &Scope::Run(run), &out)?;
    println!(
        "exported {} records, {} files",
        report.records,
        report.files.len()
    );
    let files: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(out.join("proofs"))?
            .map(|e| e.map(|e| format!("proofs/{}", e.file_name().to_string_lossy())))
            .collect::<Result<_, _>>()?;
        v.sort();
        v
    };
    let n = files.len() as f64;

    // Baseline: sha256sum -c over the whole bundle.
    let t = Instant::now();
    let ok = Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(&out)
        .status()?
        .success();
    let sums = t.elapsed().as_secs_f64();
    assert!(ok, "sha256sum -c failed");

    let verifier = NoteVerifier::parse(&key.verifier_key())?;
    let t = Instant::now();
    for f in &files {
        let text = std::fs::read_to_string(out.join(f))?;
        let proof = Proof::parse(&text)?;
        tlog::check_proof(&proof, std::slice::from_ref(&verifier), &[], 0, None)?;
    }
    let clerk_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let py = Command::new("python3")
        .arg("verify_proof.py")
        .arg("--key")
        .arg(key.verifier_key())
        .args(&files)
        .current_dir(&out)
        .output()?;
    let py_secs = t.elapsed().as_secs_f64();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stdout)
    );

    println!("| checker | seconds | proofs/s | vs sha256sum -c |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| `sha256sum -c SHA256SUMS` (baseline, {} files) | {sums:.2} | {:.0} files/s | 1.00 |",
        report.files.len(),
        report.files.len() as f64 / sums
    );
    println!(
        "| clerk (`tlog::check_proof`, as `clerk verify --proof`) | {clerk_secs:.2} | {:.0} | {:.2}× the time |",
        n / clerk_secs,
        clerk_secs / sums
    );
    println!(
        "| `python3 verify_proof.py` (stdlib + openssl) | {py_secs:.2} | {:.0} | {:.2}× the time |",
        n / py_secs,
        py_secs / sums
    );
    Ok(())
}
