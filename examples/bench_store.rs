//! Benchmark of the evidence store: verify throughput against `sha256sum`, and acknowledged
//! (fsync'd) appends per second from one writer against four concurrent writers.
//!
//! ```text
//! cargo run --release --example bench_store -- [MIB] [--dir DIR] [--appends-only]
//!     [--records N] [--rounds R]
//! ```
//!
//! 1. Generates MIB MiB (default 1100) of random-noise PNGs of 1-4 MB each, stored through
//!    `put_png` with an EvidenceCaptured record each, in a temporary data directory (or DIR).
//! 2. Times `verify(All)` and `sha256sum` over the same files (sequential `sha256sum` processes
//!    of 64 files each, after one untimed read to warm the page cache for both) and prints MB/s
//!    and the ratio.
//! 3. Appends N records (default 4000) into a fresh store from 1 writer thread (baseline:
//!    every append alone in its round, one fsync each) and from 4 writer threads (group
//!    commit), R times each (default 3), alternating; prints records/s (each append counted
//!    when `Store::append` returned, i.e. after its fsync), fsyncs, mean batch, the median of
//!    each and the ratio. `--appends-only` skips steps 1 and 2.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clerk::evidence::verify::{verify, Scope};
use clerk::evidence::{Event, Store, StoreError};

fn noise_png(target_bytes: usize, seed: &mut u64) -> Result<Vec<u8>, image::ImageError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let width = 1024u32;
    let height = (target_bytes / (3 * width as usize)).max(1) as u32;
    let mut raw = vec![0u8; (width * height * 3) as usize];
    for chunk in raw.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let bytes = seed.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    let mut out = Vec::with_capacity(raw.len() + 4096);
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&raw, width, height, image::ExtendedColorType::Rgb8)?;
    Ok(out)
}

fn fields() -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::new()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let mut mib: u64 = 1100;
    let mut i = 0;
    while i < args.len() {
        if matches!(args[i].as_str(), "--dir" | "--records" | "--rounds") {
            i += 2;
            continue;
        }
        if let Ok(n) = args[i].parse() {
            mib = n;
        }
        i += 1;
    }
    let dir_arg = value_of("--dir").map(PathBuf::from);
    let records: u64 = value_of("--records")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let rounds: usize = value_of("--rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    if args.iter().any(|a| a == "--shared-journal") {
        println!(
            "reproduce: cargo run --release --example bench_store -- --shared-journal \
             --records {records} --rounds {rounds}"
        );
        return bench_shared(records, rounds);
    }
    if args.iter().any(|a| a == "--appends-only") {
        println!(
            "reproduce: cargo run --release --example bench_store -- --appends-only \
             --records {records} --rounds {rounds}"
        );
        return bench_appends(records, rounds);
    }
    let _tmp;
    let data_dir = match dir_arg {
        Some(d) => d,
        None => {
            _tmp = tempfile::tempdir()?;
            _tmp.path().join("data")
        }
    };
    println!("reproduce: cargo run --release --example bench_store -- {mib}");
    println!(
        "data dir: {} ({} cores)",
        data_dir.display(),
        std::thread::available_parallelism()?.get()
    );

    // 1. Populate.
    let store = Store::open(&data_dir)?;
    let target = mib * 1024 * 1024;
    let mut written = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let run_id = "r-bench".to_owned();
    store.append(Event::RunStarted {
        run_id: run_id.clone(),
        playbook: "bench".into(),
        playbook_version: "1".into(),
        playbook_sha256: "0".repeat(64),
        channel: "bench".into(),
        mode: "read_only".into(),
        operator: "bench".into(),
        case_ref: Some("BENCH".into()),
        inputs: fields(),
        batch_id: None,
        approval_id: None,
        owner: store.owner(),
        claims: Default::default(),
        replay_of: None,
        rollback_of: None,
    })?;
    let started = Instant::now();
    let mut n = 0u64;
    while written < target {
        seed ^= n.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let size = 1_000_000 + (seed % 3_000_000) as usize;
        let png = noise_png(size, &mut seed)?;
        let info = store.put_png(&png)?;
        n += 1;
        store.append(Event::EvidenceCaptured {
            run_id: run_id.clone(),
            step: n,
            name: format!("noise {n}"),
            sha256: info.sha256,
            bytes: info.bytes,
            width: info.width as u64,
            height: info.height as u64,
            blank: info.blank,
            url: "about:blank".into(),
            title: "noise".into(),
            captured_at: "2026-01-01T00:00:00.000Z".into(),
            fields: fields(),
            masks: Vec::new(),
            responses: Vec::new(),
        })?;
        written += info.bytes;
        if n % 50 == 0 {
            println!("  {n} PNGs, {} MiB", written / (1024 * 1024));
        }
    }
    store.append(Event::RunFinished {
        run_id,
        status: "ok".into(),
        error: None,
        fields: fields(),
        finished_at: "2026-01-01T00:00:01.000Z".into(),
        browser: None,
    })?;
    drop(store);
    println!(
        "generated {n} PNGs, {:.1} MiB in {:.1}s",
        written as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    // 2. verify vs sha256sum.
    let files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("screenshots"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    let total: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let sha256sum = |files: &[PathBuf]| -> Result<usize, Box<dyn std::error::Error>> {
        let mut lines = 0;
        for batch in files.chunks(64) {
            let out = Command::new("sha256sum").args(batch).output()?;
            if !out.status.success() {
                return Err("sha256sum failed".into());
            }
            lines += out
                .stdout
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
        }
        Ok(lines)
    };
    warm(&files)?;
    let t = Instant::now();
    let hashed = sha256sum(&files)?;
    let sha_secs = t.elapsed().as_secs_f64();
    assert_eq!(hashed, files.len());
    let t = Instant::now();
    let report = verify(&data_dir, &Scope::All)?;
    let verify_secs = t.elapsed().as_secs_f64();
    if !report.ok() {
        return Err(format!("verify found problems:\n{report}").into());
    }
    let mb = total as f64 / 1e6;
    println!(
        "sha256sum: {} files, {mb:.0} MB in {sha_secs:.2}s = {:.0} MB/s",
        files.len(),
        mb / sha_secs
    );
    println!(
        "verify(All): {} files, {} records, {:.0} MB in {verify_secs:.2}s = {:.0} MB/s",
        report.files_checked,
        report.records_checked,
        report.bytes_hashed as f64 / 1e6,
        report.bytes_hashed as f64 / 1e6 / verify_secs
    );
    println!(
        "ratio verify/sha256sum throughput: {:.2}x",
        sha_secs / verify_secs
    );

    // 3. Acknowledged appends: 1 writer against 4.
    bench_appends(records, rounds)
}

/// Appends `per` `pause` records from one thread per store, all at once; returns the
/// seconds until every one was acknowledged.
fn timed_appends(stores: &[Store], per: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let results: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(w, store)| {
                s.spawn(move || {
                    for i in 0..per {
                        store.append(Event::Pause {
                            on: i % 2 == 0,
                            user: format!("bench-{w}"),
                            reason: format!("#{i}"),
                            at: "t".into(),
                            channel: None,
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(StoreError::Other("writer panicked".into())))
            })
            .collect()
    });
    let secs = t.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    Ok(secs)
}

/// Appends `records` records from `writers` threads into a fresh store; returns records/s
/// (all acknowledged) and the fsyncs they took.
fn appends(writers: u64, records: u64) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let fresh = tempfile::tempdir()?;
    let store = Store::open(fresh.path())?;
    let per = records / writers;
    let before = store.commit_stats();
    let stores: Vec<Store> = (0..writers).map(|_| store.clone()).collect();
    let secs = timed_appends(&stores, per)?;
    let after = store.commit_stats();
    if after.records - before.records != per * writers {
        return Err("not every append was committed".into());
    }
    Ok(((per * writers) as f64 / secs, after.fsyncs - before.fsyncs))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_appends(records: u64, rounds: usize) -> Result<(), Box<dyn std::error::Error>> {
    let (mut one, mut four) = (Vec::new(), Vec::new());
    for round in 1..=rounds.max(1) {
        for (writers, out) in [(1u64, &mut one), (4u64, &mut four)] {
            let (rate, fsyncs) = appends(writers, records)?;
            println!(
                "append round {round}: {writers} writer(s), {records} records, {fsyncs} fsyncs \
                 (mean batch {:.2}) = {rate:.0} acknowledged records/s",
                records as f64 / fsyncs.max(1) as f64
            );
            out.push(rate);
        }
    }
    let (one, four) = (median(one), median(four));
    println!(
        "append medians: 1 writer {one:.0} records/s, 4 writers {four:.0} records/s, ratio {:.2}x",
        four / one
    );
    Ok(())
}

/// 4 writers on 2 nodes (2 stores per node directory, each with its own connection, as a
/// daemon and a CLI command would be) appending into one shared journal in PostgreSQL.
fn shared_appends(url: &str, records: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let open = |dir: &Path, node: &str| -> Result<Store, Box<dyn std::error::Error>> {
        let journal = clerk::db::journal::PgJournal::open(url, node)?;
        Ok(Store::open_with(dir, Some(std::sync::Arc::new(journal)))?)
    };
    let stores = [
        open(a.path(), "a")?,
        open(a.path(), "a")?,
        open(b.path(), "b")?,
        open(b.path(), "b")?,
    ];
    let per = records / 4;
    let secs = timed_appends(&stores, per)?;
    let head = stores[0].head()?.map(|h| h.seq).unwrap_or(0);
    if head != per * 4 {
        return Err(format!("the shared journal holds {head} records, not {}", per * 4).into());
    }
    Ok((per * 4) as f64 / secs)
}

/// The file journal (4 writers, one store) against the shared journal in PostgreSQL (4
/// writers on 2 nodes), alternating, a fresh journal each round.
fn bench_shared(records: u64, rounds: usize) -> Result<(), Box<dyn std::error::Error>> {
    let pg = clerk::sample::postgres::Postgres::start()?;
    let (mut file, mut shared) = (Vec::new(), Vec::new());
    for round in 1..=rounds.max(1) {
        let (rate, _) = appends(4, records)?;
        println!("round {round}: file journal, 4 writers: {rate:.0} acknowledged records/s");
        file.push(rate);
        let url = pg.create_database(&format!("bench{round}"))?;
        clerk::db::migrate(&url)?;
        let rate = shared_appends(&url, records)?;
        println!(
            "round {round}: PostgreSQL journal, 4 writers on 2 nodes: {rate:.0} acknowledged records/s"
        );
        shared.push(rate);
    }
    let (file, shared) = (median(file), median(shared));
    println!(
        "medians: file journal {file:.0} records/s, PostgreSQL journal {shared:.0} records/s, ratio {:.2}",
        shared / file
    );
    Ok(())
}

/// Reads every file once so that both timed runs see a warm page cache.
fn warm(files: &[PathBuf]) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        read_all(f, &mut buf)?;
    }
    Ok(())
}

fn read_all(path: &Path, buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    while f.read(buf)? > 0 {}
    Ok(())
}
