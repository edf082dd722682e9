//! Tests of the evidence store: tamper detection, export bundles, index rebuild, concurrency
//! across threads and processes, interrupted runs, torn tails, and the record format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clerk::evidence::export::export;
use clerk::evidence::record::{line_of, parse_line, seal};
use clerk::evidence::verify::{verify, verify_bundle, verify_store, Scope, VerifyReport};
use clerk::evidence::{Event, RunFilter, Store, StoreError};
use proptest::prelude::*;

// ---------------------------------------------------------------- helpers

/// A noise PNG (distinct per seed) of `w`x`h`.
fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn run_started(
    store: &Store,
    run: &str,
    channel: &str,
    case: Option<&str>,
    owner: Option<&str>,
) -> Event {
    Event::RunStarted {
        run_id: run.into(),
        playbook: "order-lookup".into(),
        playbook_version: "1".into(),
        playbook_sha256: "ab".repeat(32),
        channel: channel.into(),
        mode: "read_only".into(),
        operator: "ops-anna".into(),
        case_ref: case.map(Into::into),
        inputs: map(&[
            ("order", "Bestellung Nr. 42 — “quoted” \u{1}\t\n"),
            ("note", "中文"),
        ]),
        batch_id: None,
        approval_id: None,
        owner: owner.map(Into::into).unwrap_or_else(|| store.owner()),
        claims: Default::default(),
        replay_of: None,
        rollback_of: None,
    }
}

pub(crate) fn step(run: &str, n: u64, outcome: &str, fields: &[(&str, &str)]) -> Event {
    Event::StepFinished {
        run_id: run.into(),
        step: n,
        name: format!("step {n}"),
        kind: "extract".into(),
        outcome: outcome.into(),
        error: (outcome != "ok").then(|| "selector not found".into()),
        started_at: "2026-05-01T09:00:00.000Z".into(),
        duration_ms: 120 + n,
        fields: map(fields),
        responses: vec![],
    }
}

fn evidence(store: &Store, run: &str, n: u64, seed: u32) -> Event {
    let info = store.put_png(&png(40, 30, seed)).unwrap();
    Event::EvidenceCaptured {
        run_id: run.into(),
        step: n,
        name: format!("shot {n}"),
        sha256: info.sha256,
        bytes: info.bytes,
        width: info.width as u64,
        height: info.height as u64,
        blank: info.blank,
        url: "https://seller.example/orders/42?q=ü".into(),
        title: "Order 42 — Übersicht".into(),
        captured_at: "2026-05-01T09:00:01.000Z".into(),
        fields: map(&[("status", "shipped")]),
        masks: vec!["0,0,10,10".into()],
        responses: vec![],
    }
}

pub(crate) fn finished(run: &str, status: &str) -> Event {
    Event::RunFinished {
        run_id: run.into(),
        status: status.into(),
        error: (status != "ok").then(|| "step 2 failed".into()),
        fields: map(&[("status", "shipped"), ("carrier", "DHL")]),
        finished_at: "2026-05-01T09:00:05.000Z".into(),
        browser: None,
    }
}

/// Three runs: r-a (shop-a, CASE-1, ok, 2 screenshots, a blocked request), r-b (shop-b,
/// CASE-2, failed, approval requested and decided), r-c (shop-a, running, owned by `store`).
pub(crate) fn populate(store: &Store) {
    let events = vec![
        run_started(store, "r-a", "shop-a", Some("CASE-1"), None),
        step("r-a", 1, "ok", &[("status", "shipped")]),
        evidence(store, "r-a", 1, 1),
        Event::RequestBlocked {
            run_id: "r-a".into(),
            step: Some(1),
            method: "POST".into(),
            url: "https://seller.example/api/cancel".into(),
            resource_type: "XHR".into(),
            frame: "main".into(),
            target: "page".into(),
            reason: "read_only: writes are blocked".into(),
        },
        step("r-a", 2, "ok", &[("carrier", "DHL")]),
        evidence(store, "r-a", 2, 2),
        finished("r-a", "ok"),
        run_started(store, "r-b", "shop-b", Some("CASE-2"), None),
        step("r-b", 1, "ok", &[]),
        evidence(store, "r-b", 1, 3),
        Event::ApprovalRequested {
            approval_id: "ap-1".into(),
            run_id: "r-b".into(),
            request: "{\"refund\":\"12.00\"}".into(),
            draft_hash: "cd".repeat(32),
            requester: "ops-anna".into(),
            channel: "shop-b".into(),
            case_ref: Some("CASE-2".into()),
            created_at: "2026-05-01T09:01:00.000Z".into(),
            expires_at: "2026-05-02T09:01:00.000Z".into(),
        },
        step("r-b", 2, "failed", &[]),
        finished("r-b", "failed"),
        Event::ApprovalDecided {
            approval_id: "ap-1".into(),
            decision: "rejected".into(),
            reviewer: "rev-bob".into(),
            note: Some("amount wrong".into()),
            draft_hash: "cd".repeat(32),
            decided_at: "2026-05-01T09:02:00.000Z".into(),
        },
        run_started(store, "r-c", "shop-a", None, None),
        step("r-c", 1, "ok", &[]),
    ];
    for e in events {
        store.append(e).unwrap();
    }
}

fn journal(dir: &Path) -> PathBuf {
    dir.join("journal.jsonl")
}

pub(crate) fn journal_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(journal(dir))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn write_lines(dir: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(journal(dir), text).unwrap();
}

fn flip_byte(path: &Path, at: usize) {
    make_writable(path);
    let mut bytes = std::fs::read(path).unwrap();
    let i = at.min(bytes.len() - 1);
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

pub(crate) fn problems_text(report: &VerifyReport) -> String {
    report.problems.iter().map(|p| format!("{p}\n")).collect()
}

/// Seq of the first record whose line contains `needle`.
fn seq_of(dir: &Path, needle: &str) -> u64 {
    journal_lines(dir)
        .iter()
        .map(|l| parse_line(l.as_bytes()).unwrap().record)
        .find(|r| line_of(r).unwrap().contains(needle))
        .unwrap()
        .seq
}

// ---------------------------------------------------------------- tamper table

#[test]
fn untouched_store_verifies_and_every_tampering_is_detected_by_name() {
    type Tamper = fn(&Path, &Store) -> String;
    let rows: Vec<(&str, Tamper)> = vec![
        ("png byte changed", |dir, store| {
            let d = store.run("r-a").unwrap().unwrap();
            let sha = d.evidence[0].sha256.clone();
            flip_byte(&dir.join("screenshots").join(format!("{sha}.png")), 100);
            format!("{sha}.png no longer matches")
        }),
        ("png deleted", |dir, store| {
            let d = store.run("r-b").unwrap().unwrap();
            let sha = d.evidence[0].sha256.clone();
            std::fs::remove_file(dir.join("screenshots").join(format!("{sha}.png"))).unwrap();
            format!(
                "{sha}.png is missing (referenced by record seq {})",
                d.evidence[0].seq
            )
        }),
        ("journal field edited", |dir, _| {
            let seq = seq_of(dir, "\"channel\":\"shop-b\",\"inputs\"");
            let mut lines = journal_lines(dir);
            let i = (seq - 1) as usize;
            lines[i] = lines[i].replacen("\"channel\":\"shop-b\"", "\"channel\":\"shop-x\"", 1);
            write_lines(dir, &lines);
            format!("record seq {seq} (journal line {seq}) was edited")
        }),
        ("journal field edited and hash recomputed", |dir, _| {
            let mut lines = journal_lines(dir);
            let mut rec = parse_line(lines[3].as_bytes()).unwrap().record;
            if let Event::RequestBlocked { url, .. } = &mut rec.event {
                *url = "https://seller.example/api/harmless".into();
            }
            let (_, forged) =
                seal(rec.seq, rec.ts.clone(), rec.prev.clone(), rec.event.clone()).unwrap();
            lines[3] = forged;
            write_lines(dir, &lines);
            "record seq 5 (journal line 5) does not link to record seq 4".to_owned()
        }),
        ("journal line deleted", |dir, _| {
            let mut lines = journal_lines(dir);
            lines.remove(6);
            write_lines(dir, &lines);
            "record seq 7 is missing".to_owned()
        }),
        ("two journal lines swapped", |dir, _| {
            let mut lines = journal_lines(dir);
            lines.swap(8, 9);
            write_lines(dir, &lines);
            "record seq 10 (journal line 9) comes right after record seq 8: records were reordered"
                .to_owned()
        }),
        (
            "journal truncated after an export checkpoint",
            |dir, store| {
                let out = dir.parent().unwrap().join("bundle-trunc");
                let report = export(store, &Scope::Run("r-a".into()), &out).unwrap();
                assert_eq!(report.checkpoint.as_ref().unwrap().seq, report.head.seq + 1);
                let mut lines = journal_lines(dir);
                lines.truncate(lines.len() - 3);
                write_lines(dir, &lines);
                format!(
                    "journal truncated: it ends at record seq {}, but an export to {}",
                    lines.len(),
                    report.out.display()
                )
            },
        ),
    ];
    for (name, tamper) in rows {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let store = Store::open(&dir).unwrap();
        populate(&store);
        let before = verify_store(&store, &Scope::All).unwrap();
        assert!(before.ok(), "{name}: untouched store must verify: {before}");
        assert!(
            before.index_checked,
            "{name}: the open store's own index is compared"
        );
        assert_eq!(before.files_checked, 3, "{name}");
        let expected = tamper(&dir, &store);
        drop(store);
        let report = verify(&dir, &Scope::All).unwrap();
        eprintln!("--- {name}:\n{report}");
        assert!(!report.ok(), "{name}: tampering not detected:\n{report}");
        assert!(
            problems_text(&report).contains(&expected),
            "{name}: expected a problem containing {expected:?}, got:\n{}",
            problems_text(&report)
        );
        assert!(report.to_string().contains("result: "), "{name}");
    }
}

#[test]
fn intact_store_reports_head_and_checks_index_when_free() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    populate(&store);
    let head = store.head().unwrap().unwrap();
    // Another process has the index open: the check is skipped, so the result is not INTACT.
    let busy = verify(dir, &Scope::All).unwrap();
    assert!(!busy.ok(), "{busy}");
    assert!(!busy.index_checked);
    assert!(!busy.to_string().contains("INTACT"), "{busy}");
    assert!(busy.to_string().contains("index not checked"), "{busy}");
    // The process that has it open checks it.
    let own = verify_store(&store, &Scope::All).unwrap();
    assert!(own.ok() && own.index_checked, "{own}");
    drop(store);
    let report = verify(dir, &Scope::All).unwrap();
    assert!(report.ok(), "{report}");
    assert!(report.index_checked);
    assert_eq!(report.head.as_ref(), Some(&head));
    assert!(report
        .to_string()
        .contains(&format!("chain head: seq {} hash {}", head.seq, head.hash)));
    // Run scope: whole chain, only that run's PNGs.
    let scoped = verify(dir, &Scope::Run("r-b".into())).unwrap();
    assert!(scoped.ok());
    assert_eq!(scoped.files_checked, 1);
    assert_eq!(scoped.records_checked, report.records_checked);
    assert_eq!(
        verify(dir, &Scope::Case("CASE-1".into()))
            .unwrap()
            .files_checked,
        2
    );
    assert!(matches!(
        verify(dir, &Scope::Run("nope".into())),
        Err(StoreError::UnknownRun(_))
    ));
}

#[test]
fn scoped_verify_still_checks_the_whole_chain_but_only_scope_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    populate(&store);
    let sha_a = store.run("r-a").unwrap().unwrap().evidence[0]
        .sha256
        .clone();
    drop(store);
    std::fs::remove_file(dir.join("screenshots").join(format!("{sha_a}.png"))).unwrap();
    let mut lines = journal_lines(dir);
    lines[13] = lines[13].replacen("rejected", "approved", 1);
    write_lines(dir, &lines);
    let report = verify(dir, &Scope::Run("r-c".into())).unwrap();
    let text = problems_text(&report);
    assert!(
        text.contains("record seq 14 (journal line 14) was edited"),
        "{text}"
    );
    assert!(
        !text.contains(&sha_a),
        "r-a's files are out of scope: {text}"
    );
}

// ---------------------------------------------------------------- export

pub(crate) fn sha256sum_check(dir: &Path) -> bool {
    Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn export_bundle_passes_sha256sum_and_verify_bundle_and_fails_after_any_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = Store::open(&dir).unwrap();
    populate(&store);
    let out = tmp.path().join("bundle");
    let report = export(&store, &Scope::Run("r-b".into()), &out).unwrap();
    assert_eq!(report.runs, vec!["r-b".to_owned()]);
    assert_eq!(report.screenshots, 1);
    // The excerpt: r-b's records plus the approval decision about its approval, byte-exact.
    let full = std::fs::read_to_string(journal(&dir)).unwrap();
    let excerpt = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let ex_lines: Vec<&str> = excerpt.lines().collect();
    assert_eq!(ex_lines.len(), 7, "{excerpt}");
    for l in &ex_lines {
        assert!(
            full.lines().any(|f| f == *l),
            "excerpt line is not an original line: {l}"
        );
    }
    assert!(excerpt.contains("\"type\":\"approval_decided\""));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["chain_head"]["seq"], report.head.seq);
    assert_eq!(manifest["runs"][0]["summary"]["status"], "failed");
    assert_eq!(manifest["channels"], serde_json::json!(["shop-b"]));
    assert_eq!(manifest["evidence"].as_array().unwrap().len(), 1);
    // The export is pinned in the store's journal and verifies there.
    let cp = store.head().unwrap().unwrap();
    assert_eq!(Some(cp), report.checkpoint);
    drop(store);
    assert!(verify(&dir, &Scope::All).unwrap().ok());

    assert!(sha256sum_check(&out), "sha256sum -c must accept the bundle");
    let ok = verify_bundle(&out).unwrap();
    assert!(ok.ok(), "{ok}");
    assert_eq!(ok.head.as_ref(), Some(&report.head));
    let py = Command::new("python3")
        .args(["verify_journal.py", "journal.jsonl", "--excerpt"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stdout)
    );

    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let mut files: Vec<String> = sums.lines().map(|l| l[66..].to_owned()).collect();
    assert!(files.contains(&"VERIFY.md".to_owned()) && files.contains(&"manifest.json".to_owned()));
    files.push("SHA256SUMS".into());
    assert_eq!(files.len(), 6, "{files:?}");
    for (i, file) in files.iter().enumerate() {
        let copy = tmp.path().join(format!("edited-{i}"));
        copy_dir(&out, &copy);
        let path = copy.join(file);
        if file == "SHA256SUMS" {
            // One hex digit of the first checksum.
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[0] = if bytes[0] == b'0' { b'1' } else { b'0' };
            std::fs::write(&path, bytes).unwrap();
        } else {
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            flip_byte(&path, len / 2);
        }
        assert!(
            !sha256sum_check(&copy),
            "sha256sum -c accepted an edited {file}"
        );
        let r = verify_bundle(&copy).unwrap();
        assert!(!r.ok(), "verify_bundle accepted an edited {file}");
        assert!(
            problems_text(&r).contains(
                file.trim_start_matches("screenshots/")
                    .trim_end_matches(".png")
            ),
            "{file}: {r}"
        );
    }
    // A file slipped into the bundle is reported too.
    std::fs::write(out.join("extra.txt"), "x").unwrap();
    assert!(problems_text(&verify_bundle(&out).unwrap())
        .contains("extra.txt: not listed in SHA256SUMS"));
}

#[test]
fn export_by_case_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = Store::open(&dir).unwrap();
    populate(&store);
    let out = tmp.path().join("case1");
    let report = export(&store, &Scope::Case("CASE-1".into()), &out).unwrap();
    assert_eq!(report.runs, vec!["r-a".to_owned()]);
    assert_eq!(report.screenshots, 2);
    assert!(verify_bundle(&out).unwrap().ok());
    assert!(matches!(
        export(&store, &Scope::Run("r-a".into()), &out),
        Err(StoreError::OutputNotEmpty(_))
    ));
    assert!(matches!(
        export(&store, &Scope::Case("NOPE".into()), &tmp.path().join("x")),
        Err(StoreError::UnknownCase(_))
    ));
    // Tampered evidence is not exported.
    let sha = store.run("r-a").unwrap().unwrap().evidence[1]
        .sha256
        .clone();
    flip_byte(&store.screenshot_path(&sha), 50);
    let err = export(&store, &Scope::Run("r-a".into()), &tmp.path().join("y")).unwrap_err();
    assert!(
        err.to_string().contains("no longer matches its hash"),
        "{err}"
    );
}

// ---------------------------------------------------------------- queries and index

pub(crate) fn snapshot_queries(store: &Store) -> String {
    let all = store.list_runs(&RunFilter::default()).unwrap();
    let shop_a = store
        .list_runs(&RunFilter {
            channel: Some("shop-a".into()),
            ..Default::default()
        })
        .unwrap();
    let case2 = store
        .list_runs(&RunFilter {
            case_ref: Some("CASE-2".into()),
            ..Default::default()
        })
        .unwrap();
    let failed = store
        .list_runs(&RunFilter {
            status: Some("failed".into()),
            ..Default::default()
        })
        .unwrap();
    let detail: Vec<_> = ["r-a", "r-b", "r-c"]
        .iter()
        .map(|r| store.run(r).unwrap())
        .collect();
    serde_json::to_string(&serde_json::json!({
        "all": all, "shop_a": shop_a, "case2": case2, "failed": failed, "detail": detail,
        "approvals": store.approval_ids().unwrap(),
        "ap1": store.approval_records("ap-1").unwrap(),
    }))
    .unwrap()
}

#[test]
fn queries_answer_from_the_records() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    populate(&store);
    let all = store.list_runs(&RunFilter::default()).unwrap();
    let ids: Vec<_> = all
        .iter()
        .map(|r| (r.run_id.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![("r-a", "ok"), ("r-b", "failed"), ("r-c", "running")]
    );
    assert_eq!(
        (all[0].steps_ok, all[0].evidence, all[0].blocked),
        (2, 2, 1)
    );
    assert_eq!((all[1].steps_ok, all[1].steps_failed), (1, 1));
    let shop_a = store
        .list_runs(&RunFilter {
            channel: Some("shop-a".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        shop_a.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        vec!["r-a", "r-c"]
    );
    let case = store
        .list_runs(&RunFilter {
            case_ref: Some("CASE-2".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(case.len(), 1);
    assert_eq!(case[0].run_id, "r-b");
    let past = clerk::evidence::parse_since("2000-01-01").unwrap();
    assert_eq!(
        store
            .list_runs(&RunFilter {
                since: Some(past),
                ..Default::default()
            })
            .unwrap()
            .len(),
        3
    );
    let future = clerk::evidence::parse_since("2999-01-01T00:00:00Z").unwrap();
    assert!(store
        .list_runs(&RunFilter {
            since: Some(future),
            ..Default::default()
        })
        .unwrap()
        .is_empty());
    assert!(clerk::evidence::parse_since("yesterday").is_err());

    let b = store.run("r-b").unwrap().unwrap();
    assert_eq!(b.approvals.len(), 2, "requested and decided");
    assert!(b.approvals.iter().any(
        |r| matches!(&r.event, Event::ApprovalDecided { decision, .. } if decision == "rejected")
    ));
    assert_eq!(b.error.as_deref(), Some("step 2 failed"));
    let a = store.run("r-a").unwrap().unwrap();
    assert_eq!(a.fields.get("carrier").map(String::as_str), Some("DHL"));
    assert_eq!(a.blocked[0].url, "https://seller.example/api/cancel");
    assert!(Path::new(&a.evidence[0].path).exists());
    assert_eq!(a.steps[1].duration_ms, 122);
    let shown = a.to_string();
    assert!(
        shown.contains("blocked requests (1)") && shown.contains(&a.evidence[0].sha256),
        "{shown}"
    );
    assert!(store.run("missing").unwrap().is_none());
    assert_eq!(store.approval_ids().unwrap(), vec!["ap-1".to_owned()]);
    assert_eq!(
        store.evidence_records(&a.evidence[0].sha256).unwrap().len(),
        1
    );
}

#[test]
fn missing_or_damaged_index_is_rebuilt_with_identical_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    populate(&store);
    drop(store);
    // Reopening marks r-c interrupted (its owner is gone): take the snapshot after that.
    let store = Store::open(dir).unwrap();
    let before = snapshot_queries(&store);
    assert!(before.contains("interrupted"));
    drop(store);

    std::fs::remove_dir_all(dir.join("index")).unwrap();
    let store = Store::open(dir).unwrap();
    assert!(store.index_is_persistent());
    assert_eq!(snapshot_queries(&store), before);
    let re = store.reindex().unwrap();
    assert_eq!((re.runs, re.screenshots), (3, 3));
    assert!(re.missing_screenshots.is_empty());
    assert_eq!(snapshot_queries(&store), before);
    drop(store);
    assert!(dir.join("index").is_dir());

    // Damage: overwrite every file sled wrote with garbage.
    for entry in std::fs::read_dir(dir.join("index")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, b"garbage garbage garbage").unwrap();
        }
    }
    let store = Store::open(dir).unwrap();
    assert_eq!(snapshot_queries(&store), before);
    drop(store);
    let report = verify(dir, &Scope::All).unwrap();
    assert!(report.ok() && report.index_checked, "{report}");
}

#[test]
fn second_store_on_same_dir_uses_an_ephemeral_index_and_sees_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open(tmp.path()).unwrap();
    populate(&a);
    let b = Store::open(tmp.path()).unwrap();
    assert!(a.index_is_persistent() && !b.index_is_persistent());
    assert_eq!(snapshot_queries(&a), snapshot_queries(&b));
    b.append(finished("r-c", "ok")).unwrap();
    // The owner catches up from the journal before answering.
    assert_eq!(a.run("r-c").unwrap().unwrap().summary.status, "ok");
    assert_eq!(snapshot_queries(&a), snapshot_queries(&b));
}

#[test]
fn put_png_is_content_addressed_idempotent_and_refuses_non_png() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let bytes = png(64, 48, 9);
    let a = store.put_png(&bytes).unwrap();
    let b = store.put_png(&bytes).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        (a.width, a.height, a.bytes, a.blank),
        (64, 48, bytes.len() as u64, false)
    );
    assert_eq!(std::fs::read(&a.path).unwrap(), bytes);
    assert_eq!(a.path, store.screenshot_path(&a.sha256));
    let mut blank = Vec::new();
    image::RgbImage::from_pixel(10, 10, image::Rgb([255, 255, 255]))
        .write_to(
            &mut std::io::Cursor::new(&mut blank),
            image::ImageFormat::Png,
        )
        .unwrap();
    assert!(store.put_png(&blank).unwrap().blank);
    assert!(matches!(
        store.put_png(b"GIF89a not a png"),
        Err(StoreError::NotPng(_))
    ));
    // A damaged stored copy is repaired by storing the same screenshot again.
    flip_byte(&a.path, 10);
    store.put_png(&bytes).unwrap();
    assert_eq!(std::fs::read(&a.path).unwrap(), bytes);
}

// ---------------------------------------------------------------- concurrency

const CHILD_ENV: &str = "CLERK_EVIDENCE_CHILD_DIR";
const PER_WRITER: u64 = 200;

fn pause(writer: &str, i: u64) -> Event {
    Event::Pause {
        on: i % 2 == 0,
        user: writer.into(),
        reason: format!("{writer} #{i}"),
        at: "t".into(),
        channel: None,
    }
}

/// In a child process (env var set): appends PER_WRITER records into the parent's store.
/// Run directly: two stores in this process on one fresh directory alternate appends.
#[test]
fn child_process_appender() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let store = Store::open(Path::new(&dir)).unwrap();
        let me = format!("proc-{}", std::process::id());
        for i in 0..PER_WRITER {
            store.append(pause(&me, i)).unwrap();
        }
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (
        Store::open(tmp.path()).unwrap(),
        Store::open(tmp.path()).unwrap(),
    );
    for i in 0..20 {
        assert_eq!(a.append(pause("a", i)).unwrap().seq, 2 * i + 1);
        assert_eq!(b.append(pause("b", i)).unwrap().seq, 2 * i + 2);
    }
    assert!(verify_store(&a, &Scope::All).unwrap().ok());
}

#[test]
fn threads_and_processes_append_one_unbroken_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let store = Store::open(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "evidence_store::child_process_appender",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &dir)
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = store.clone();
            s.spawn(move || {
                let me = format!("thread-{t}");
                let mut last = 0;
                for i in 0..PER_WRITER {
                    let seq = store.append(pause(&me, i)).unwrap().seq;
                    assert!(seq > last, "seqs acknowledged to one writer must increase");
                    last = seq;
                }
            });
        }
    });
    for mut c in children {
        assert!(c.wait().unwrap().success(), "child appender failed");
    }
    let total = 6 * PER_WRITER;
    assert_eq!(store.head().unwrap().unwrap().seq, total);
    let seqs: Vec<u64> = journal_lines(&dir)
        .iter()
        .map(|l| parse_line(l.as_bytes()).unwrap().record.seq)
        .collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    let mut per_writer: BTreeMap<String, u64> = BTreeMap::new();
    for l in journal_lines(&dir) {
        if let Event::Pause { user, .. } = parse_line(l.as_bytes()).unwrap().record.event {
            let w = if user.starts_with("proc-") {
                "proc".to_owned()
            } else {
                user
            };
            *per_writer.entry(w).or_default() += 1;
        }
    }
    assert_eq!(per_writer.get("proc"), Some(&(2 * PER_WRITER)));
    assert_eq!(per_writer.len(), 5);
    drop(store);
    let report = verify(&dir, &Scope::All).unwrap();
    assert!(report.ok() && report.index_checked, "{report}");
    assert_eq!(report.records_checked, total);
}

// ---------------------------------------------------------------- group commit

/// Holds `journal.lock` the way another process would, until dropped.
fn hold_journal_lock(dir: &Path) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("journal.lock"))
        .unwrap();
    fs2::FileExt::lock_exclusive(&f).unwrap();
    f
}

/// Waits (a hang guard, not a timing assertion) until `n` appends are queued.
fn wait_queued(store: &Store, n: usize) {
    for _ in 0..20_000 {
        if store.commit_stats().queued == n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("never saw {n} queued appends: {:?}", store.commit_stats());
}

#[test]
fn concurrent_appends_are_acknowledged_only_after_the_fsync_covering_them() {
    const THREADS: u64 = 8;
    const EACH: u64 = 100;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    let before = store.commit_stats();
    let acked: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || {
                    let me = format!("writer-{t}");
                    (0..EACH)
                        .map(|i| store.append_traced(pause(&me, i)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = THREADS * EACH;
    let mut by_seq = BTreeMap::new();
    let mut batches = Vec::new();
    for mine in &acked {
        assert!(
            mine.windows(2).all(|w| w[0].0.seq < w[1].0.seq),
            "seqs acknowledged to one writer must increase"
        );
        for (appended, trace) in mine {
            // The real property: the fsync counter moved between the write of this record's
            // batch and its acknowledgement, i.e. its covering fsync had returned.
            assert!(
                trace.fsyncs_at_ack > trace.fsyncs_before_write,
                "seq {} acknowledged before its fsync: {trace:?}",
                appended.seq
            );
            assert!(by_seq.insert(appended.seq, appended.hash.clone()).is_none());
            batches.push(trace.batch);
        }
    }
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    for line in journal_lines(dir) {
        let record = parse_line(line.as_bytes()).unwrap().record;
        assert_eq!(by_seq.get(&record.seq), Some(&record.hash));
    }
    let after = store.commit_stats();
    let fsyncs = after.fsyncs - before.fsyncs;
    assert_eq!(after.records - before.records, total);
    assert!(
        fsyncs >= 1 && fsyncs <= total,
        "{fsyncs} fsyncs for {total} records"
    );
    eprintln!(
        "{total} records in {fsyncs} fsyncs; largest batch {}",
        batches.iter().max().unwrap()
    );
    drop(store);
    let report = verify(dir, &Scope::All).unwrap();
    assert!(report.ok() && report.index_checked, "{report}");
    assert_eq!(report.records_checked, total);
}

#[test]
fn appends_queued_behind_the_journal_lock_share_one_write_and_one_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    populate(&store);
    let head = store.head().unwrap().unwrap();
    let fsyncs = store.fsync_count();
    let lock = hold_journal_lock(dir);
    let acked: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || store.append_traced(pause(&format!("w{t}"), 0)).unwrap())
            })
            .collect();
        // The first caller leads and waits for the flock; the others queue behind it.
        wait_queued(&store, 4);
        drop(lock);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(store.fsync_count(), fsyncs + 1);
    let mut seqs: Vec<u64> = acked.iter().map(|(a, _)| a.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (head.seq + 1..=head.seq + 4).collect::<Vec<_>>());
    for (_, trace) in &acked {
        assert_eq!(trace.batch, 4);
        assert_eq!(trace.fsyncs_before_write, fsyncs);
        assert!(trace.fsyncs_at_ack > fsyncs);
    }
    // Indexed in one go, and queries see every record.
    assert_eq!(
        store.run_records("r-a").unwrap().len(),
        journal_lines(dir)
            .iter()
            .filter(|l| l.contains("\"run_id\":\"r-a\""))
            .count()
    );
    drop(store);
    assert!(verify(dir, &Scope::All).unwrap().ok());
}

#[test]
fn a_failed_fsync_fails_the_whole_batch_and_leaves_no_trace_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    populate(&store);
    let head = store.head().unwrap().unwrap();
    let bytes = std::fs::read(journal(dir)).unwrap();
    let fsyncs = store.fsync_count();
    let lock = hold_journal_lock(dir);
    store.fail_next_fsync();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || store.append(pause(&format!("w{t}"), 0)))
            })
            .collect();
        wait_queued(&store, 3);
        drop(lock);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert!(
            matches!(r, Err(StoreError::Io { .. })),
            "every caller of the failed batch gets the error: {r:?}"
        );
    }
    assert_eq!(store.fsync_count(), fsyncs, "no fsync succeeded");
    assert_eq!(
        std::fs::read(journal(dir)).unwrap(),
        bytes,
        "the failed batch was cut off again"
    );
    // The next append chains onto the last acknowledged record.
    let next = store.append(pause("after", 0)).unwrap();
    assert_eq!(next.seq, head.seq + 1);
    let last = parse_line(journal_lines(dir).last().unwrap().as_bytes())
        .unwrap()
        .record;
    assert_eq!(last.prev, head.hash);
    assert_eq!(store.list_runs(&RunFilter::default()).unwrap().len(), 3);
    drop(store);
    let report = verify(dir, &Scope::All).unwrap();
    assert!(report.ok() && report.notes.is_empty(), "{report}");
}

// ---------------------------------------------------------------- crash recovery

#[test]
fn runs_of_dead_owners_are_interrupted_and_live_ones_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let a = Store::open(dir).unwrap();
    a.append(run_started(&a, "r-live", "shop-a", None, None))
        .unwrap();
    a.append(step("r-live", 1, "ok", &[("k", "v")])).unwrap();
    a.append(run_started(
        &a,
        "r-ghost",
        "shop-a",
        None,
        Some("ghost-owner"),
    ))
    .unwrap();
    a.append(run_started(
        &a,
        "r-done",
        "shop-a",
        None,
        Some("ghost-owner"),
    ))
    .unwrap();
    a.append(finished("r-done", "ok")).unwrap();
    let evil = "../../etc/passwd";
    a.append(run_started(&a, "r-evil", "shop-a", None, Some(evil)))
        .unwrap();

    // A second store while `a` lives: r-live stays running; the ghost runs are interrupted.
    let b = Store::open(dir).unwrap();
    assert_eq!(b.run("r-live").unwrap().unwrap().summary.status, "running");
    assert_eq!(
        b.run("r-ghost").unwrap().unwrap().summary.status,
        "interrupted"
    );
    assert_eq!(
        b.run("r-evil").unwrap().unwrap().summary.status,
        "interrupted"
    );
    assert_eq!(b.run("r-done").unwrap().unwrap().summary.status, "ok");
    drop(b);
    drop(a);

    let c = Store::open(dir).unwrap();
    let live = c.run("r-live").unwrap().unwrap();
    assert_eq!(live.summary.status, "interrupted");
    assert_eq!(live.steps.len(), 1, "completed steps stay intact");
    assert_eq!(live.fields.get("k").map(String::as_str), Some("v"));
    assert!(matches!(
        live.records.last().map(|r| &r.event),
        Some(Event::RunInterrupted { .. })
    ));
    let interrupted = c
        .list_runs(&RunFilter {
            status: Some("interrupted".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(interrupted.len(), 3);
    // Exactly one RunInterrupted per run, even after more opens.
    drop(c);
    let d = Store::open(dir).unwrap();
    let n = journal_lines(dir)
        .iter()
        .filter(|l| l.contains("\"type\":\"run_interrupted\""))
        .count();
    assert_eq!(n, 3);
    drop(d);
    assert!(verify(dir, &Scope::All).unwrap().ok());
}

#[test]
fn torn_tail_is_set_aside_at_open_and_verify_stays_clean() {
    for torn in [&b"{\"seq\":99,\"ts\":\"2026-"[..], &b"\0\0\0\0\0\0\n"[..]] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let store = Store::open(dir).unwrap();
        populate(&store);
        let head = store.head().unwrap().unwrap();
        drop(store);
        let mut bytes = std::fs::read(journal(dir)).unwrap();
        bytes.extend_from_slice(torn);
        std::fs::write(journal(dir), &bytes).unwrap();

        let store = Store::open(dir).unwrap();
        let new_head = store.head().unwrap().unwrap();
        assert!(new_head.seq > head.seq);
        let repaired = journal_lines(dir)
            .iter()
            .map(|l| parse_line(l.as_bytes()).unwrap().record)
            .find(|r| matches!(r.event, Event::JournalRepaired { .. }))
            .expect("a JournalRepaired record");
        assert_eq!(repaired.seq, head.seq + 1);
        assert_eq!(repaired.prev, head.hash);
        let Event::JournalRepaired {
            dropped_bytes,
            saved_as,
            ..
        } = repaired.event
        else {
            unreachable!()
        };
        assert_eq!(dropped_bytes, torn.len() as u64);
        assert_eq!(std::fs::read(dir.join(&saved_as)).unwrap(), torn);
        assert_eq!(store.list_runs(&RunFilter::default()).unwrap().len(), 3);
        drop(store);
        let report = verify(dir, &Scope::All).unwrap();
        assert!(report.ok(), "{report}");
    }
}

#[test]
fn unrepaired_torn_tail_is_a_note_not_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    populate(&store);
    drop(store);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(journal(tmp.path()))
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":").unwrap();
    let report = verify(tmp.path(), &Scope::All).unwrap();
    assert!(report.ok(), "{report}");
    assert!(report.notes.iter().any(|n| n.contains("unfinished record")));
}

// ---------------------------------------------------------------- format

#[test]
fn python_verifier_accepts_real_journal_and_rejects_one_byte_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    populate(&store);
    store
        .append(Event::Pause {
            on: true,
            user: "ünïcødé 中文 😀".into(),
            reason: "\u{0}\u{1f}\u{7f}\"\\\u{2028}".into(),
            at: "x".into(),
            channel: Some("sample".into()),
        })
        .unwrap();
    drop(store);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verify_python.py");
    let run = |p: &Path| {
        Command::new("python3")
            .arg(&script)
            .arg(p)
            .output()
            .unwrap()
    };
    let ok = run(&journal(dir));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("INTACT: 17 records"));

    let mut bytes = std::fs::read(journal(dir)).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let at = text.find("shop-b").unwrap() + 5;
    bytes[at] = b'c';
    std::fs::write(journal(dir), &bytes).unwrap();
    let bad = run(&journal(dir));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("was edited"));
}

fn arb_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[\\x00-\\x7f\u{e9}\u{4e2d}\u{1f600}\u{2028}]{0,12}").unwrap()
}

fn arb_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(arb_text(), arb_text(), 0..4)
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            arb_text(),
            arb_text(),
            proptest::option::of(arb_text()),
            arb_map(),
            any::<bool>()
        )
            .prop_map(
                |(run_id, channel, case_ref, inputs, submit)| Event::RunStarted {
                    run_id,
                    playbook: "p".into(),
                    playbook_version: "1".into(),
                    playbook_sha256: "0".repeat(64),
                    channel,
                    mode: "draft".into(),
                    operator: "op".into(),
                    case_ref,
                    inputs,
                    batch_id: None,
                    approval_id: submit.then(|| "ap".into()),
                    owner: "o".into(),
                    claims: Default::default(),
                    replay_of: None,
                    rollback_of: None,
                }
            ),
        (
            arb_text(),
            any::<u64>(),
            arb_text(),
            proptest::option::of(arb_text()),
            any::<u64>(),
            arb_map()
        )
            .prop_map(|(run_id, step, name, error, duration_ms, fields)| {
                Event::StepFinished {
                    run_id,
                    step,
                    name,
                    kind: "click".into(),
                    outcome: "ok".into(),
                    error,
                    started_at: "s".into(),
                    duration_ms,
                    fields,
                    responses: vec![],
                }
            }),
        (
            arb_text(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(arb_text(), 0..3),
            arb_map()
        )
            .prop_map(|(run_id, bytes, width, blank, masks, fields)| {
                Event::EvidenceCaptured {
                    run_id,
                    step: 1,
                    name: "n".into(),
                    sha256: "f".repeat(64),
                    bytes,
                    width,
                    height: 1,
                    blank,
                    url: "u".into(),
                    title: "t".into(),
                    captured_at: "c".into(),
                    fields,
                    masks,
                    responses: vec![],
                }
            }),
        (
            arb_text(),
            proptest::option::of(arb_text()),
            proptest::option::of(arb_text()),
            arb_text()
        )
            .prop_map(|(action, approval_id, run_id, reason)| Event::Refused {
                action,
                approval_id,
                run_id,
                user: "u".into(),
                reason,
                at: "a".into()
            }),
        (any::<bool>(), arb_text(), arb_text()).prop_map(|(on, user, reason)| Event::Pause {
            on,
            user,
            reason,
            at: "a".into(),
            channel: None,
        }),
    ]
}

/// Paths to every scalar in a JSON value.
fn leaves(v: &serde_json::Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| {
            let mut p = path.clone();
            p.push(k.clone());
            leaves(x, p, out)
        }),
        serde_json::Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| {
            let mut p = path.clone();
            p.push(i.to_string());
            leaves(x, p, out)
        }),
        _ => out.push(path),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_event_round_trips_and_any_field_change_breaks_the_hash(
        event in arb_event(),
        seq in 1u64..u64::MAX,
        ts in arb_text(),
        pick in any::<prop::sample::Index>(),
    ) {
        let (record, line) = seal(seq, ts, "0".repeat(64), event).unwrap();
        prop_assert!(!line.contains('\n'));
        let parsed = parse_line(line.as_bytes()).unwrap();
        prop_assert!(parsed.intact());
        prop_assert_eq!(&parsed.record, &record);
        prop_assert_eq!(line_of(&record).unwrap(), line.clone());

        let mut value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let mut paths = Vec::new();
        leaves(&value, Vec::new(), &mut paths);
        paths.retain(|p| p[0] != "hash");
        let path = pick.get(&paths).clone();
        let mut slot = &mut value;
        for k in &path {
            slot = match slot {
                serde_json::Value::Object(m) => m.get_mut(k).unwrap(),
                serde_json::Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
                _ => unreachable!(),
            };
        }
        *slot = match slot.take() {
            serde_json::Value::String(s) => serde_json::Value::String(format!("{s}x")),
            serde_json::Value::Bool(b) => serde_json::Value::Bool(!b),
            serde_json::Value::Number(n) => serde_json::json!(n.as_u64().map(|x| x.wrapping_add(1)).unwrap_or(0)),
            serde_json::Value::Null => serde_json::Value::String(String::new()),
            other => other,
        };
        let edited = serde_json::to_string(&value).unwrap();
        // An edit that makes the line unparseable (e.g. `type` no longer names an event) is
        // rejected too; one that parses must no longer match its hash.
        if let Ok(p) = parse_line(edited.as_bytes()) {
            prop_assert!(!p.intact(), "edit of {:?} kept the hash", path);
        }
    }
}
