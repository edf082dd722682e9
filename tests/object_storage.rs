//! Evidence on S3-compatible object storage (`[cluster] evidence`), against a real S3 server
//! (`s3s-fs`, see `common::s3`): every blob a run's records name is copied create-only under
//! its SHA-256 with clerk's digest for the storage to re-verify, each copy is recorded in the
//! journal, `clerk verify` reads the copies back and names one that is missing or altered,
//! and blobs left behind while the storage was down are copied when it is back.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use clerk::evidence::blob::{BlobError, BlobKind, BlobStore, LocalBlobs, S3Blobs};
use clerk::evidence::Event;
use sha2::Digest as _;

use crate::common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use crate::common::{clerk_bin, World};

const BUCKET: &str = "evidence";
const PREFIX: &str = "shop-1";

/// Where a store keeps the blob with this relative name, as a file the test can touch.
type FileOf = Box<dyn Fn(&str) -> std::path::PathBuf>;

fn s3(server: &S3Server) -> S3Blobs {
    let url = format!("s3://{BUCKET}/{PREFIX}");
    let endpoint = server.endpoint();
    let target = clerk::evidence::blob::S3Target {
        url: &url,
        endpoint: Some(&endpoint),
        region: None,
    };
    S3Blobs::with_credentials(&target, ACCESS_KEY, SECRET_KEY, None).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A world whose config copies evidence to `server` (credentials only in the environment of
/// the processes that need them).
async fn world_on(server: &S3Server) -> World {
    let endpoint = server.endpoint();
    let mut world = World::with_config(move |c| {
        format!(
            "{c}\n[cluster]\nevidence = \"s3://{BUCKET}/{PREFIX}\"\nevidence_endpoint = \"{endpoint}\"\n"
        )
    })
    .await;
    world.engine.blobs = Some(Arc::new(s3(server)));
    world
}

fn verify(data: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(clerk_bin())
        .arg("--data-dir")
        .arg(data)
        .args(["verify", "--no-index"])
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
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

/// The same contract on a directory and on S3: create-only, idempotent for the same bytes,
/// bytes that do not hash to their name refused (on S3 by the storage itself, from the
/// `x-amz-checksum-sha256` clerk sends), an altered stored copy reported as differing.
#[tokio::test(flavor = "multi_thread")]
async fn the_blob_contract_holds_on_a_directory_and_on_s3() {
    let server = S3Server::start(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<(Box<dyn BlobStore>, FileOf)> = vec![
        (
            Box::new(LocalBlobs::new(dir.path())),
            Box::new({
                let d = dir.path().to_owned();
                move |rel: &str| d.join(rel)
            }),
        ),
        (
            Box::new(s3(&server)),
            Box::new({
                let root = server.object_path(BUCKET, PREFIX);
                move |rel: &str| root.join(rel)
            }),
        ),
    ];
    for (blobs, file_of) in &stores {
        let name = blobs.describe();
        let good = b"\x89PNG pretend screenshot bytes".to_vec();
        let h = sha(&good);
        let first = blobs.put(BlobKind::Screenshot, &h, &good).await.unwrap();
        assert!(!first.existed, "{name}");
        let file = file_of(&BlobKind::Screenshot.relative_path(&h));
        assert_eq!(
            sha(&std::fs::read(&file).unwrap()),
            h,
            "{name}: stored bytes"
        );
        assert!(
            blobs
                .put(BlobKind::Screenshot, &h, &good)
                .await
                .unwrap()
                .existed,
            "{name}: the second copy finds the first"
        );
        assert_eq!(
            blobs.get(BlobKind::Screenshot, &h).await.unwrap(),
            Some(good.clone())
        );
        assert_eq!(blobs.get(BlobKind::Warc, &h).await.unwrap(), None);
        // Bytes that are not what their name says: refused, nothing stored.
        let other = b"other bytes".to_vec();
        let wrong_name = sha(b"what clerk hashed");
        let e = blobs
            .put(BlobKind::Screenshot, &wrong_name, &other)
            .await
            .unwrap_err();
        assert!(
            matches!(e, BlobError::ChecksumRefused { .. }),
            "{name}: {e}"
        );
        if file_of(&BlobKind::Screenshot.relative_path(&wrong_name)).exists() {
            // s3s-fs writes the body before it checks the checksum and leaves the refused
            // bytes behind (AWS S3 and MinIO store nothing). clerk never takes them for a
            // copy: the right bytes find them and are told they differ.
            let e = blobs
                .put(BlobKind::Screenshot, &wrong_name, b"what clerk hashed")
                .await
                .unwrap_err();
            assert!(matches!(e, BlobError::Differs { .. }), "{name}: {e}");
        }
        // A stored copy altered behind clerk's back is found out, never overwritten.
        let w = b"a WARC record".to_vec();
        let wh = sha(&w);
        blobs.put(BlobKind::Warc, &wh, &w).await.unwrap();
        let wfile = file_of(&BlobKind::Warc.relative_path(&wh));
        let mut perms = std::fs::metadata(&wfile).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&wfile, perms).unwrap();
        std::fs::write(&wfile, b"an altered WARC record").unwrap();
        let e = blobs.put(BlobKind::Warc, &wh, &w).await.unwrap_err();
        assert!(matches!(e, BlobError::Differs { .. }), "{name}: {e}");
        assert_eq!(
            std::fs::read(&wfile).unwrap(),
            b"an altered WARC record",
            "{name}: create-only"
        );
    }
}

/// A lookup's screenshots, WARC records and playbook text are in the bucket under their
/// hashes when the run returns, each copy recorded; `clerk verify` reads them back; an
/// altered object and a deleted one are named, and the exit code says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_runs_evidence_is_in_the_bucket_and_verify_reads_it_back() {
    let server = S3Server::start(BUCKET).await;
    let world = world_on(&server).await;
    let o = &clerk::sample::orders()[0];
    let (_, run_id) = world.run_ok("order-lookup", &o.id).await;
    let records = world.records(&run_id);
    let mut wanted = Vec::new();
    for r in &records {
        match &r.event {
            Event::EvidenceCaptured { sha256, .. } => {
                wanted.push((BlobKind::Screenshot, sha256.clone()))
            }
            Event::ResponseRecorded { warc_sha256, .. } => {
                wanted.push((BlobKind::Warc, warc_sha256.clone()))
            }
            Event::RunStarted {
                playbook_sha256, ..
            } => wanted.push((BlobKind::PlaybookText, playbook_sha256.clone())),
            _ => {}
        }
    }
    assert!(wanted.iter().any(|(k, _)| *k == BlobKind::Screenshot));
    assert!(wanted.iter().any(|(k, _)| *k == BlobKind::Warc));
    let stored: Vec<(BlobKind, String, String)> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::BlobStored {
                kind,
                sha256,
                location,
                ..
            } => Some((*kind, sha256.clone(), location.clone())),
            _ => None,
        })
        .collect();
    for (kind, h) in &wanted {
        let rel = kind.relative_path(h);
        let (_, _, location) = stored
            .iter()
            .find(|(k, s, _)| k == kind && s == h)
            .unwrap_or_else(|| panic!("no blob_stored record for {rel}"));
        assert_eq!(location, &format!("s3://{BUCKET}/{PREFIX}/{rel}"));
        // The object's bytes hash to the name the journal gives them, as the local file's.
        let object = std::fs::read(server.object_path(BUCKET, &format!("{PREFIX}/{rel}")))
            .unwrap_or_else(|e| panic!("{rel} is not in the bucket: {e}"));
        assert_eq!(&sha(&object), h);
        assert_eq!(
            object,
            std::fs::read(world.data_dir().join(&rel)).unwrap(),
            "{rel}"
        );
    }
    assert_eq!(stored.len(), wanted.len(), "one record per blob");

    let (ok, out) = verify(world.data_dir(), &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "object storage s3://{BUCKET}/{PREFIX}: {} copies intact",
            wanted.len()
        )),
        "{out}"
    );
    // An offline replay on a disk without the run's WARC files (as on another node): they
    // come back from the bucket, each checked against its hash, and the replay is the same
    // without a request to the seller center.
    let warcs: Vec<std::path::PathBuf> = wanted
        .iter()
        .filter(|(k, _)| *k == BlobKind::Warc)
        .map(|(k, h)| world.data_dir().join(k.relative_path(h)))
        .collect();
    for p in &warcs {
        std::fs::remove_file(p).unwrap();
    }
    world.center.clear_log();
    let out = Command::new(clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["--as", "ops", "replay", &run_id, "--offline", "--json"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("\"same\": true"), "{said}");
    assert!(
        world.center.requests().is_empty(),
        "{:?}",
        world.center.requests()
    );
    for p in &warcs {
        assert!(p.exists(), "{} was not restored", p.display());
    }

    // Alter the screenshot in the bucket, delete the playbook text.
    let shot = wanted
        .iter()
        .find(|(k, _)| *k == BlobKind::Screenshot)
        .unwrap();
    let shot_key = format!("{PREFIX}/{}", shot.0.relative_path(&shot.1));
    std::fs::write(server.object_path(BUCKET, &shot_key), b"not the screenshot").unwrap();
    let text = wanted
        .iter()
        .find(|(k, _)| *k == BlobKind::PlaybookText)
        .unwrap();
    let text_key = format!("{PREFIX}/{}", text.0.relative_path(&text.1));
    std::fs::remove_file(server.object_path(BUCKET, &text_key)).unwrap();
    let (ok, out) = verify(world.data_dir(), &["--run", &run_id]);
    assert!(!ok, "verify passed an altered bucket:\n{out}");
    assert!(
        out.contains(&format!("DIFFERS s3://{BUCKET}/{shot_key}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("MISSING s3://{BUCKET}/{text_key}")),
        "{out}"
    );
    // Without credentials verify says what to set, not a stack of SDK errors.
    let out = Command::new(clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["verify", "--no-index"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}

/// The storage is down while a run ends: the run is not failed for it, its blobs are listed
/// by `clerk verify` as not copied yet, and the next pass (as `clerk serve` makes at start
/// and every minute) copies and records them once the storage is back.
#[tokio::test(flavor = "multi_thread")]
async fn blobs_left_behind_while_the_storage_was_down_are_copied_later() {
    let server = S3Server::start(BUCKET).await;
    let world = world_on(&server).await;
    let port = server.port;
    let root = server.root().to_owned();
    server.stop();
    let o = &clerk::sample::orders()[1];
    let (_, run_id) = world.run_ok("order-lookup", &o.id).await;
    let copied = |w: &World| {
        w.records(&run_id)
            .iter()
            .filter(|r| matches!(r.event, Event::BlobStored { .. }))
            .count()
    };
    assert_eq!(copied(&world), 0);
    let (_, out) = verify(world.data_dir(), &["--run", &run_id]);
    assert!(out.contains("not copied yet: screenshot "), "{out}");

    let _back = S3Server::serve(&root, port).await;
    let blobs = world.engine.blobs.clone().unwrap();
    let report = clerk::evidence::blob::copy_all(&world.engine.store, blobs.as_ref())
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.copied >= 3, "{report:?}");
    assert_eq!(copied(&world), report.copied);
    // A second pass has nothing left to do.
    let again = clerk::evidence::blob::copy_all(&world.engine.store, blobs.as_ref())
        .await
        .unwrap();
    assert_eq!(again.copied, 0);
    let (ok, out) = verify(world.data_dir(), &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(", 0 missing, 0 differ, 0 not copied yet"),
        "{out}"
    );
}

/// Waits until the daemon's `clerk_evidence_not_copied` satisfies `ok`; returns it.
async fn wait_metric(port: u16, token: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let t = std::time::Instant::now();
    loop {
        let r = crate::common::http::http(
            port,
            "GET",
            "/metrics",
            &[(clerk::instance::TOKEN_HEADER, token)],
            None,
        )
        .await;
        let value = r
            .body
            .lines()
            .find(|l| l.starts_with("clerk_evidence_not_copied"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value.filter(|v| ok(*v)) {
            return v;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "clerk_evidence_not_copied never got there: {value:?}\n{}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Waits until `clerk verify` finds every blob copied and intact.
async fn all_copied(data: &Path) {
    let t = std::time::Instant::now();
    loop {
        let (ok, out) = verify(data, &[]);
        if ok && out.contains(", 0 missing, 0 differ, 0 not copied yet") {
            return;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "not every blob was copied:\n{out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

fn blob_stored_count(data: &Path) -> usize {
    std::fs::read_to_string(data.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"type\":\"blob_stored\""))
        .count()
}

/// Through `clerk serve` started from `/` with the credentials in its environment: a
/// queued lookup's evidence is copied when the run ends; one that ended while the storage
/// was down is copied when the daemon next starts; a daemon without credentials refuses to
/// start and names the variables.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_copies_evidence_and_catches_up_after_an_outage() {
    use crate::common::Daemon;
    let server = S3Server::start(BUCKET).await;
    let world = world_on(&server).await;
    let data = world.data_dir().to_owned();
    let env = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    // No credentials: refused at start, exit 2, naming what to set.
    let out = Command::new(clerk_bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--port", "0"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .current_dir("/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");

    let queue_one = |port: u16, token: String, order: String| async move {
        let r = crate::common::http::http(
            port,
            "POST",
            "/api/runs",
            &[
                (clerk::instance::TOKEN_HEADER, token.as_str()),
                ("Content-Type", "application/json"),
            ],
            Some(
                &serde_json::json!({
                    "playbook": "order-lookup",
                    "rows": [{ "order_id": order }],
                    "user": "ops"
                })
                .to_string(),
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let wait_for = |what: &'static str, n: usize, data: std::path::PathBuf| async move {
        let t = std::time::Instant::now();
        while blob_stored_count(&data) < n {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(90),
                "{what}: {} blob_stored records",
                blob_stored_count(&data)
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let daemon = Daemon::spawn_in(&data, Some(Path::new("/")), &env);
    let (port, token) = daemon.ready(&data).await;
    queue_one(port, token.clone(), clerk::sample::orders()[3].id.clone()).await;
    wait_for("the first run's evidence was not copied", 3, data.clone()).await;
    all_copied(&data).await;
    let first = blob_stored_count(&data);

    // The storage goes away; a second lookup ends with nothing copied.
    let root = server.root().to_owned();
    let s3_port = server.port;
    server.stop();
    let runs_before = std::fs::read_to_string(data.join("journal.jsonl"))
        .unwrap()
        .matches("\"type\":\"run_finished\"")
        .count();
    queue_one(port, token, clerk::sample::orders()[4].id.clone()).await;
    let t = std::time::Instant::now();
    while std::fs::read_to_string(data.join("journal.jsonl"))
        .unwrap()
        .matches("\"type\":\"run_finished\"")
        .count()
        == runs_before
    {
        assert!(t.elapsed() < std::time::Duration::from_secs(90));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
    assert_eq!(
        blob_stored_count(&data),
        first,
        "copied while the storage was down?"
    );

    // A daemon started while the storage is still down: its first pass copies nothing,
    // and /metrics says how many blobs wait.
    let daemon = Daemon::spawn_in(&data, Some(Path::new("/")), &env);
    let (port, token) = daemon.ready(&data).await;
    let waiting = wait_metric(port, &token, |n| n > 0.0).await;
    assert!(waiting >= 2.0, "{waiting}");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());

    // Back: the next daemon copies what was left at start.
    let _back = S3Server::serve(&root, s3_port).await;
    let daemon = Daemon::spawn_in(&data, Some(Path::new("/")), &env);
    let (port, token) = daemon.ready(&data).await;
    wait_for(
        "left-overs were not copied at start",
        first + 2,
        data.clone(),
    )
    .await;
    all_copied(&data).await;
    assert_eq!(wait_metric(port, &token, |n| n == 0.0).await, 0.0);
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
}

/// The node's disk loses a screenshot and a WARC file is damaged: `clerk export` puts both
/// back from their recorded copies in the bucket (checked against their hashes), says so,
/// and the bundle passes `sha256sum -c` and `clerk verify --bundle`.
#[tokio::test(flavor = "multi_thread")]
async fn export_restores_lost_evidence_from_the_bucket() {
    let server = S3Server::start(BUCKET).await;
    let world = world_on(&server).await;
    let o = &clerk::sample::orders()[5];
    let (report, run_id) = world.run_ok("order-lookup", &o.id).await;
    let shot = report.screenshots[0].sha256.clone();
    let warc = world
        .records(&run_id)
        .iter()
        .find_map(|r| match &r.event {
            Event::ResponseRecorded { warc_sha256, .. } => Some(warc_sha256.clone()),
            _ => None,
        })
        .expect("a recorded response");
    let shot_file = world
        .data_dir()
        .join(BlobKind::Screenshot.relative_path(&shot));
    let warc_file = world.data_dir().join(BlobKind::Warc.relative_path(&warc));
    std::fs::remove_file(&shot_file).unwrap();
    let mut perms = std::fs::metadata(&warc_file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&warc_file, perms).unwrap();
    std::fs::write(&warc_file, b"damaged").unwrap();

    let bundle = world.data_dir().join("bundle");
    let out = Command::new(clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["export", "--run", &run_id, "--out"])
        .arg(&bundle)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "restored screenshots/{shot}.png from s3://{BUCKET}/{PREFIX}"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("restored warc/{warc}.warc.gz")),
        "{err}"
    );
    assert_eq!(sha(&std::fs::read(&shot_file).unwrap()), shot);
    assert_eq!(sha(&std::fs::read(&warc_file).unwrap()), warc);
    let sums = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stdout)
    );
    assert!(bundle.join(format!("screenshots/{shot}.png")).exists());
    let (ok, out) = verify(world.data_dir(), &["--run", &run_id]);
    assert!(ok, "{out}");
}
