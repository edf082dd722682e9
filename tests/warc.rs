//! The server's own words: the responses of a channel's data endpoints (and the documents a
//! run opens) kept as WARC 1.1 records beside the screenshots, each a journal record;
//! `verify --server-match`; the WACZ export, checked with PyPI's `warcio` and `wacz`.

use std::path::{Path, PathBuf};
use std::process::Command;

use clerk::evidence::server_match::server_match;
use clerk::evidence::verify::{verify, verify_bundle, Problem, Scope};
use clerk::evidence::{Event, Record};
use clerk::runner::RunStatus;

use crate::common::World;

/// A tool of the auditors' virtualenv (`scripts/install-deps.sh` creates it).
fn audit_tool(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".audit-venv/bin")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-deps.sh",
        p.display()
    );
    p
}

fn clerk(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(crate::common::clerk_bin())
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(dir.join("clerk.toml"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// An order that has a tracking number (every field of the lookups comes from the server).
fn tracked_order() -> &'static clerk::sample::Order {
    clerk::sample::orders()
        .iter()
        .find(|o| o.tracking_no.is_some())
        .expect("an order with tracking")
}

struct Recorded {
    seq: u64,
    url: String,
    resource_type: String,
    record_id: String,
    warc_sha256: String,
    payload_digest: String,
    payload_bytes: u64,
    full_bytes: u64,
    truncated: bool,
    cap: u64,
}

fn recorded(records: &[Record]) -> Vec<Recorded> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            Event::ResponseRecorded {
                url,
                resource_type,
                record_id,
                warc_sha256,
                payload_digest,
                payload_bytes,
                full_bytes,
                truncated,
                cap,
                ..
            } => Some(Recorded {
                seq: r.seq,
                url: url.clone(),
                resource_type: resource_type.clone(),
                record_id: record_id.clone(),
                warc_sha256: warc_sha256.clone(),
                payload_digest: payload_digest.clone(),
                payload_bytes: *payload_bytes,
                full_bytes: *full_bytes,
                truncated: *truncated,
                cap: *cap,
            }),
            _ => None,
        })
        .collect()
}

/// What `warcio` reads in each file: (record id, type, target URI, sha256 of the payload
/// recomputed, the stated payload digest, WARC-Truncated).
const WARCIO_READ: &str = r#"
import hashlib, json, sys
from warcio.archiveiterator import ArchiveIterator
out = []
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        for rec in ArchiveIterator(f):
            body = rec.content_stream().read()
            out.append({
                "id": rec.rec_headers.get_header('WARC-Record-ID'),
                "type": rec.rec_type,
                "uri": rec.rec_headers.get_header('WARC-Target-URI'),
                "sha256": "sha256:" + hashlib.sha256(body).hexdigest(),
                "stated": rec.rec_headers.get_header('WARC-Payload-Digest'),
                "truncated": rec.rec_headers.get_header('WARC-Truncated'),
                "offset": f.tell(),
            })
print(json.dumps(out))
"#;

fn warcio_read(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let out = Command::new(audit_tool("python"))
        .arg("-c")
        .arg(WARCIO_READ)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `warcio check` (digests of every record) over the files.
fn warcio_check(files: &[PathBuf]) {
    let out = Command::new(audit_tool("warcio"))
        .arg("check")
        .arg("-v")
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "warcio check failed: {text}");
    assert!(!text.contains("digest failed"), "{text}");
}

/// The response records of a run are what warcio reads in its files, with digests that
/// match a recomputation; returns them.
fn check_recorded_with_warcio(world: &World, run_id: &str) -> Vec<Recorded> {
    let rec = recorded(&world.records(run_id));
    assert!(!rec.is_empty(), "run {run_id} recorded no responses");
    let files: Vec<PathBuf> = rec
        .iter()
        .map(|r| world.engine.store.warc_path(&r.warc_sha256))
        .collect();
    warcio_check(&files);
    let read = warcio_read(&files);
    for r in &rec {
        let resp = read
            .iter()
            .find(|x| x["id"] == format!("<{}>", r.record_id))
            .unwrap_or_else(|| panic!("warcio does not see record {}", r.record_id));
        assert_eq!(resp["type"], "response");
        assert_eq!(resp["uri"], r.url.as_str());
        assert_eq!(resp["sha256"], r.payload_digest.as_str(), "{}", r.url);
        assert_eq!(resp["stated"], r.payload_digest.as_str());
        let sha = clerk::evidence::record::sha256_hex(
            &std::fs::read(world.engine.store.warc_path(&r.warc_sha256)).unwrap(),
        );
        assert_eq!(sha, r.warc_sha256, "the file is named by its SHA-256");
    }
    // Every response has its request record, concurrent to it.
    assert_eq!(
        read.iter().filter(|x| x["type"] == "request").count(),
        rec.len()
    );
    rec
}

/// The server-rendered order page: its document and the risk panel's JSON are recorded,
/// warcio agrees with every digest, the screenshot names both as live, every field the
/// lookup extracted is in what the server sent, and the page still got every byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_rendered_lookup_keeps_the_servers_words_and_every_field_matches() {
    let world = World::new().await;
    let o = tracked_order();
    let (r, run_id) = world.run_ok("order-lookup", &o.id).await;
    assert_eq!(r.fields["status"], o.status);
    let rec = check_recorded_with_warcio(&world, &run_id);
    let doc = rec
        .iter()
        .find(|x| x.url.ends_with(&format!("/orders/{}", o.id)))
        .expect("the order document is recorded");
    assert_eq!(doc.resource_type, "Document");
    let risk = rec
        .iter()
        .find(|x| x.url.ends_with(&format!("/api/orders/{}/risk", o.id)))
        .expect("the risk JSON is recorded");
    assert!(!risk.truncated && risk.payload_bytes == risk.full_bytes);
    assert_eq!(risk.cap, clerk::channel::DEFAULT_RECORD_MAX_BYTES);
    // No credential reached a record: the session cookie's value is nowhere in the files.
    let session = std::fs::read_to_string(
        world
            .engine
            .config
            .channel("sample")
            .unwrap()
            .session_path(world.data_dir()),
    )
    .unwrap();
    let state: serde_json::Value = serde_json::from_str(&session).unwrap();
    let cookie = state["cookies"][0]["value"].as_str().unwrap().to_owned();
    assert!(cookie.len() > 8);
    for f in rec
        .iter()
        .map(|x| world.engine.store.warc_path(&x.warc_sha256))
    {
        let text = warcio_read(std::slice::from_ref(&f));
        assert!(!text.is_empty());
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "gzip -dc {} | grep -c -F -e '{cookie}' || true",
                f.display()
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0",
            "{}",
            f.display()
        );
    }
    // The screenshot names the responses live when it was taken.
    let shot = world
        .records(&run_id)
        .into_iter()
        .find_map(|x| match x.event {
            Event::EvidenceCaptured { responses, .. } => Some(responses),
            _ => None,
        })
        .unwrap();
    assert!(
        shot.contains(&doc.record_id) && shot.contains(&risk.record_id),
        "{shot:?}"
    );

    let m = server_match(&world.engine.store, &run_id).unwrap();
    assert!(m.ok(), "{m}");
    assert!(m.fields.iter().any(|f| f.field == "status"));
    let (code, out) = clerk(world.data_dir(), &["verify", "--server-match", &run_id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SERVER MATCH"), "{out}");
    assert!(world.center.writes().is_empty());
}

/// A page that shows a value its server never sent (a script rewrites the status) is
/// reported by `verify --server-match`, on the server-rendered page and in the SPA, naming
/// the field and the value; the other fields still match.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_showing_what_the_server_never_sent_is_reported() {
    let world = World::new().await;
    world.center.set_misreport_status(true);
    let o = tracked_order();
    for pb in ["order-lookup", "spa-order-lookup"] {
        let r = world
            .run(&crate::common::playbook(pb), &[("order_id", &o.id)])
            .await;
        assert_eq!(r.status, RunStatus::Ok, "{pb}: {:?}", r.error);
        let run_id = r.run_id.clone().unwrap();
        assert_eq!(
            r.fields["status"],
            clerk::sample::MISREPORTED_STATUS,
            "{pb}"
        );
        let m = server_match(&world.engine.store, &run_id).unwrap();
        assert!(!m.ok(), "{pb}: {m}");
        let unmatched: Vec<&str> = m.unmatched().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(unmatched, vec!["status"], "{pb}: {m}");
        let (code, out) = clerk(world.data_dir(), &["verify", "--server-match", &run_id]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("NOT SAID") && out.contains(clerk::sample::MISREPORTED_STATUS),
            "{out}"
        );
        assert!(out.contains("SERVER MISMATCH"), "{out}");
    }
}

/// The SPA's lookup records its order JSON; the export carries the WARC files (in
/// SHA256SUMS, checked by `sha256sum -c`), links each screenshot and field to response
/// records, and `--wacz` writes a package `wacz validate` accepts whose CDXJ offsets point
/// at the right records. A flipped byte in a WARC body, in the store or in the bundle, is
/// reported with the record's seq.
#[tokio::test(flavor = "multi_thread")]
async fn spa_lookup_exports_a_valid_wacz_and_a_flipped_warc_byte_is_caught() {
    let world = World::new().await;
    let o = tracked_order();
    let (_, run_id) = world.run_ok("spa-order-lookup", &o.id).await;
    let rec = check_recorded_with_warcio(&world, &run_id);
    let order_json = rec
        .iter()
        .find(|x| x.url.ends_with(&format!("/api/orders/{}", o.id)))
        .expect("the order JSON is recorded");
    assert!(matches!(order_json.resource_type.as_str(), "Fetch" | "Xhr"));
    assert!(rec
        .iter()
        .any(|x| x.resource_type == "Document" && x.url.contains("/app/")));
    let m = server_match(&world.engine.store, &run_id).unwrap();
    assert!(m.ok(), "{m}");

    let out = world.data_dir().join("bundle");
    let (code, text) = clerk(
        world.data_dir(),
        &[
            "export",
            "--run",
            &run_id,
            "--out",
            out.to_str().unwrap(),
            "--wacz",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(crate::evidence_store::sha256sum_check(&out));
    let listed = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    for x in &rec {
        assert!(listed.contains(&format!("warc/{}.warc.gz", x.warc_sha256)));
    }
    assert!(listed.contains("archive.wacz"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["responses"].as_array().unwrap().len(), rec.len());
    // Each screenshot names the latest order JSON fetched before it (the logistics tab
    // fetches it again), and the steps that extracted fields name the responses too.
    let order_seqs: Vec<serde_json::Value> = rec
        .iter()
        .filter(|x| x.url == order_json.url)
        .map(|x| serde_json::json!(x.seq))
        .collect();
    for e in manifest["evidence"].as_array().unwrap() {
        let live = e["responses"].as_array().unwrap();
        let named: Vec<_> = live.iter().filter(|s| order_seqs.contains(s)).collect();
        assert_eq!(named.len(), 1, "{e}");
        let newest_before = order_seqs
            .iter()
            .filter(|s| s.as_u64() < e["record_seq"].as_u64())
            .max_by_key(|s| s.as_u64())
            .unwrap();
        assert_eq!(named[0], newest_before, "{e}");
    }
    assert!(manifest["field_sources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["responses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| order_seqs.contains(s))));
    assert!(verify_bundle(&out).unwrap().ok());

    // wacz validate, and the CDXJ's offsets read back with warcio.
    let wacz = out.join("archive.wacz");
    let v = Command::new(audit_tool("wacz"))
        .args(["validate", "-f"])
        .arg(&wacz)
        .output()
        .unwrap();
    let vtext = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        v.status.success() && vtext.contains("Validation succeeded"),
        "{vtext}"
    );
    let check = Command::new(audit_tool("python"))
        .arg("-c")
        .arg(
            r#"
import io, json, sys, zipfile
from warcio.archiveiterator import ArchiveIterator
z = zipfile.ZipFile(sys.argv[1])
data = z.read('archive/data.warc.gz')
n = 0
for line in z.read('indexes/index.cdxj').decode().splitlines():
    key, ts, js = line.split(' ', 2)
    e = json.loads(js)
    chunk = data[int(e['offset']):int(e['offset']) + int(e['length'])]
    rec = next(iter(ArchiveIterator(io.BytesIO(chunk))))
    assert rec.rec_headers.get_header('WARC-Record-ID') == e['recordId'], line
    assert rec.rec_headers.get_header('WARC-Target-URI') == e['url'], line
    assert len(ts) == 14, ts
    n += 1
pages = z.read('pages/pages.jsonl').decode().splitlines()
assert json.loads(pages[0])['format'] == 'json-pages-1.0'
print(n, len(pages) - 1)
"#,
        )
        .arg(&wacz)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        format!("{} 2", rec.len())
    );

    // A flipped byte in the body of the order JSON's WARC file: in the bundle, then in the
    // store. Each is named by the record's seq.
    let flip = |path: &Path| {
        let mut b = std::fs::read(path).unwrap();
        let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let i = b.len() / 3;
        b[i] ^= 0x01;
        std::fs::write(path, b).unwrap();
    };
    flip(&out.join(format!("warc/{}.warc.gz", order_json.warc_sha256)));
    let report = verify_bundle(&out).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Warc { seq, .. } if *seq == order_json.seq)),
        "{report}"
    );
    flip(&world.engine.store.warc_path(&order_json.warc_sha256));
    let report = verify(world.data_dir(), &Scope::Run(run_id.clone())).unwrap();
    let named = report
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::Warc { seq, .. } if *seq == order_json.seq))
        .count();
    assert_eq!(named, 1, "{report}");
    assert!(report
        .to_string()
        .contains(&format!("record seq {}", order_json.seq)));
    let m = server_match(&world.engine.store, &run_id).unwrap();
    assert!(!m.ok() && !m.problems.is_empty(), "{m}");
}

/// A body over the channel's cap is cut in the record (`WARC-Truncated: length`, the cap and
/// the full size in the journal record), while the page still gets every byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_cap_is_cut_in_the_record_only() {
    let world = World::with_config(|c| {
        c.replace(
            "approval_ttl_hours = 24",
            "approval_ttl_hours = 24\nrecord_max_bytes = 64",
        )
    })
    .await;
    let o = tracked_order();
    let (r, run_id) = world.run_ok("spa-order-lookup", &o.id).await;
    assert_eq!(r.fields["status"], o.status, "the page got the whole body");
    let rec = check_recorded_with_warcio(&world, &run_id);
    let files: Vec<PathBuf> = rec
        .iter()
        .map(|x| world.engine.store.warc_path(&x.warc_sha256))
        .collect();
    let read = warcio_read(&files);
    for x in &rec {
        assert_eq!(x.cap, 64);
        assert!(x.payload_bytes <= 64);
        if x.full_bytes > 64 {
            assert!(x.truncated && x.payload_bytes == 64, "{}", x.url);
            let w = read
                .iter()
                .find(|y| y["id"] == format!("<{}>", x.record_id))
                .unwrap();
            assert_eq!(w["truncated"], "length");
        }
    }
    assert!(rec.iter().any(|x| x.truncated));
}
