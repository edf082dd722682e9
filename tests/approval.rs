//! The draft → approve → submit workflow (issue 4), end to end in real headless Chromium
//! against the sample seller center.
//!
//! What the user cares about, and what every test here checks on the seller center's side
//! (`SampleCenter::writes()` / `refunds()`), not only on clerk's: a draft sends nothing; an
//! approved submit sends exactly one write with exactly the reviewed values; every way a
//! submit can be wrong sends nothing and leaves a `Refused` record saying why; a secret
//! input never lands on disk or in a log; and the journal still verifies afterwards.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use clerk::approval::{self, ApprovalState};
use clerk::browser::FieldValue;
use clerk::evidence::{Event, Record};
use clerk::playbook::Playbook;
use clerk::runner::{RunReport, RunStatus};
use common::{playbook, World};
use sha2::{Digest, Sha256};

/// A supervisor PIN distinctive enough that finding it anywhere means it leaked.
const PIN: &str = "73914628";

/// The inputs of one refund draft.
struct Refund {
    order_id: String,
    amount: String,
    reason: &'static str,
    note: String,
}

impl Refund {
    /// A refund of about a third of a delivered order's total (the sample center refuses
    /// amounts above the total), `nth` picking among the delivered orders so that different
    /// drafts of one test do not share an order.
    fn for_delivered(nth: usize) -> Refund {
        let order = clerk::sample::orders()
            .iter()
            .filter(|o| o.status == "delivered" && o.total_cents >= 300)
            .nth(nth)
            .expect("the sample data has enough delivered orders");
        let cents = order.total_cents / 3;
        Refund {
            order_id: order.id.clone(),
            amount: format!("{}.{:02}", cents / 100, cents % 100),
            reason: "wrong_item",
            note: format!("Wrong colour sent; photos in case {}", 8800 + nth),
        }
    }

    /// Inputs as the operator types them, the secret PIN included.
    fn inputs(&self) -> Vec<(&str, &str)> {
        vec![
            ("order_id", self.order_id.as_str()),
            ("amount", self.amount.as_str()),
            ("reason", self.reason),
            ("note", self.note.as_str()),
            ("supervisor_pin", PIN),
        ]
    }

    /// The refund form's values a reviewer must see, in document order: what was typed,
    /// the page's default refund method, the checked notify box, the PIN masked.
    fn reviewed_values(&self) -> Vec<FieldValue> {
        [
            ("amount", self.amount.as_str()),
            ("reason", self.reason),
            ("method", "original_payment"),
            ("note", self.note.as_str()),
            ("supervisor_pin", "<secret>"),
            ("notify", "yes"),
        ]
        .iter()
        .map(|(n, v)| FieldValue {
            name: (*n).to_owned(),
            value: (*v).to_owned(),
        })
        .collect()
    }

    fn refund_path(&self) -> String {
        format!("/orders/{}/refund", self.order_id)
    }
}

/// Every record of the journal, parsed from `journal.jsonl` itself (not the index).
fn journal(world: &World) -> Vec<Record> {
    let bytes = std::fs::read(world.data_dir().join("journal.jsonl")).expect("journal.jsonl");
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            clerk::evidence::record::parse_line(l)
                .expect("journal line parses")
                .record
        })
        .collect()
}

/// A `Refused` record as (action, approval id, user, reason).
#[derive(Debug, Clone)]
struct Refusal {
    action: String,
    approval_id: Option<String>,
    user: String,
    reason: String,
}

/// `Refused` records appended after the first `skip` records of the journal.
fn refusals_after(world: &World, skip: usize) -> Vec<Refusal> {
    journal(world)
        .into_iter()
        .skip(skip)
        .filter_map(|r| match r.event {
            Event::Refused {
                action,
                approval_id,
                user,
                reason,
                ..
            } => Some(Refusal {
                action,
                approval_id,
                user,
                reason,
            }),
            _ => None,
        })
        .collect()
}

/// Asserts that exactly one `Refused` record was appended since `mark`, refusing `action`
/// by `user` about approval `id`, and that its reason contains `why`.
fn assert_refused(
    world: &World,
    mark: usize,
    action: &str,
    id: &str,
    user: &str,
    why: &str,
) -> Refusal {
    let new = refusals_after(world, mark);
    let about: Vec<&Refusal> = new
        .iter()
        .filter(|r| r.approval_id.as_deref() == Some(id))
        .collect();
    assert_eq!(
        about.len(),
        1,
        "expected one refusal about {id}, got {new:#?}"
    );
    let r = about[0].clone();
    assert_eq!(r.action, action, "{r:?}");
    assert_eq!(r.user, user, "{r:?}");
    assert!(r.reason.contains(why), "refusal should say {why:?}: {r:?}");
    r
}

/// Drafts a refund as `ops` and returns the run report (asserted drafted, nothing written).
async fn draft(world: &World, pb: &Arc<Playbook>, refund: &Refund) -> (RunReport, String) {
    world.center.clear_log();
    let report = world.run_as(pb, &refund.inputs(), "ops", None).await;
    assert_eq!(
        report.status,
        RunStatus::Drafted,
        "draft failed: {:?}",
        report.error
    );
    let id = report
        .approval_id
        .clone()
        .expect("a draft creates an approval request");
    assert!(
        world.center.writes().is_empty(),
        "a draft wrote to the seller center: {:#?}",
        world.center.writes()
    );
    (report, id)
}

/// Submits approval `id` as `ops` with the draft's inputs (the PIN given again in clear).
async fn submit(world: &World, pb: &Arc<Playbook>, refund: &Refund, id: &str) -> RunReport {
    world.run_as(pb, &refund.inputs(), "ops", Some(id)).await
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(
        std::fs::read(path).expect("screenshot file is readable"),
    ))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("readable directory").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// `(sha256, masks)` of the screenshots named `name` that a run captured.
fn captures(world: &World, run_id: &str, name: &str) -> Vec<(String, Vec<String>)> {
    world
        .records(run_id)
        .into_iter()
        .filter_map(|r| match r.event {
            Event::EvidenceCaptured {
                name: n,
                sha256,
                masks,
                ..
            } if n == name => Some((sha256, masks)),
            _ => None,
        })
        .collect()
}

/// Asserts that a stored screenshot has at least one mask region, that no region is most
/// of the image (a black page proves nothing), and that every pixel of every region is
/// black.
fn assert_masked_black(world: &World, sha: &str, masks: &[String]) {
    assert!(!masks.is_empty(), "screenshot {sha} has no mask region");
    let bytes = std::fs::read(world.engine.store.screenshot_path(sha)).expect("screenshot file");
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .expect("screenshot is a PNG")
        .to_rgba8();
    let (w, h) = img.dimensions();
    for m in masks {
        let n: Vec<u32> = m
            .split(',')
            .map(|v| v.parse().expect("mask is x,y,w,h"))
            .collect();
        let [x, y, mw, mh] = n[..] else {
            panic!("mask {m:?} is not x,y,w,h")
        };
        assert!(mw > 0 && mh > 0, "empty mask {m}");
        assert!(
            x + mw <= w && y + mh <= h,
            "mask {m} outside the {w}x{h} image"
        );
        assert!(
            u64::from(mw) * u64::from(mh) * 4 < u64::from(w) * u64::from(h),
            "mask {m} covers most of the image"
        );
        for py in y..y + mh {
            for px in x..x + mw {
                let p = img.get_pixel(px, py);
                assert_eq!(
                    &p.0[..3],
                    &[0, 0, 0],
                    "pixel ({px},{py}) of mask {m} in {sha} is not black"
                );
            }
        }
    }
}

/// Runs the `clerk` binary on the world's data directory as `ops`, with debug logging.
fn clerk(world: &World, args: &[&str]) -> std::process::Output {
    clerk_as(world, "ops", args, &[])
}

/// Runs the `clerk` binary on the world's data directory as `user`, with debug logging and
/// extra environment variables.
fn clerk_as(
    world: &World,
    user: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["--as", user])
        .args(args)
        .env("CLERK_LOG", "debug")
        .env_remove("CLERK_DATA_DIR")
        .env_remove("CLERK_USER")
        .env_remove("CLERK_SECRET_SUPERVISOR_PIN")
        .envs(env.iter().copied())
        .output()
        .expect("the clerk binary runs")
}

/// stdout and stderr of a finished `clerk`, for messages and secret checks.
fn outputs(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `clerk verify --all` on the world's data directory exits 0.
fn assert_verifies(world: &World) {
    let out = clerk(world, &["verify", "--all", "--no-index"]);
    assert!(
        out.status.success(),
        "clerk verify --all failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every decision recorded in the journal about `id` shows in the detail of the draft run
/// that requested it (what `clerk runs show` prints for auditors).
fn assert_decisions_in_run_detail(world: &World, draft_run: &str, id: &str) {
    let decided: Vec<Record> = journal(world)
        .into_iter()
        .filter(
            |r| matches!(&r.event, Event::ApprovalDecided { approval_id, .. } if approval_id == id),
        )
        .collect();
    assert!(!decided.is_empty(), "no decision about {id} in the journal");
    let detail = world
        .engine
        .store
        .run(draft_run)
        .expect("store answers")
        .expect("draft run is known");
    for d in &decided {
        assert!(
            detail
                .approvals
                .iter()
                .any(|a| a.seq == d.seq && a.hash == d.hash),
            "decision {:?} missing from run {draft_run}'s approvals: {:#?}",
            d.event,
            detail.approvals
        );
    }
}

/// Asserts that the PIN is in no file of the data directory: journal.jsonl, every file of
/// the sled index under index/, screenshots, locks, sessions, config.
fn assert_pin_nowhere_on_disk(world: &World) {
    let files = files_under(world.data_dir());
    assert!(files.iter().any(|f| f.ends_with("journal.jsonl")));
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(world.data_dir().join("index"))),
        "no index files: {files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f).expect("readable data file");
        assert!(!contains(&bytes, PIN), "the PIN is in {}", f.display());
    }
}

/// Draft, approve, submit: the draft writes nothing and queues exactly what was typed; the
/// approved submit sends exactly one POST with those values and a valid CSRF token, its
/// result page is evidence, and the approval cannot be used a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_draft_is_submitted_exactly_once_with_the_reviewed_values() {
    let world = World::new().await;
    let pb = playbook("refund-draft");
    let refund = Refund::for_delivered(0);

    // Draft: nothing reaches the seller center although the page autosaves on typing.
    let (drafted, id) = draft(&world, &pb, &refund).await;
    let draft_run = drafted.run_id.clone().expect("draft run id");
    let autosave = format!("{}/autosave", refund.refund_path());
    assert!(
        world
            .blocked_urls(&draft_run)
            .iter()
            .any(|(m, u)| m == "POST" && u.ends_with(&autosave)),
        "the autosave POST should be blocked and recorded: {:?}",
        world.blocked_urls(&draft_run)
    );

    let pending = approval::load(&world.engine, &id).expect("approval loads");
    assert_eq!(pending.state, ApprovalState::Pending);
    assert_eq!(pending.request.requester, "ops");
    assert_eq!(pending.request.run_id, draft_run);
    assert_eq!(pending.request.content.values, refund.reviewed_values());
    assert_eq!(pending.request.content.write.method, "POST");
    assert_eq!(
        pending.request.content.write.url,
        world
            .center
            .base_url()
            .join(&refund.refund_path())
            .unwrap()
            .to_string()
    );
    let shot = pending
        .request
        .screenshot_sha256
        .clone()
        .expect("the draft has a screenshot");
    let shot_path = world.engine.store.screenshot_path(&shot);
    assert!(shot_path.starts_with(world.engine.store.data_dir().join("screenshots")));
    assert_eq!(
        sha256_file(&shot_path),
        shot,
        "the draft screenshot is content-addressed"
    );
    assert!(drafted
        .screenshots
        .iter()
        .any(|s| s.name == "draft" && s.sha256 == shot));

    // Approve as a reviewer, submit as the operator.
    let approved = approval::decide(
        &world.engine,
        &id,
        "carol",
        true,
        Some("checked photos".into()),
    )
    .expect("carol may approve");
    assert_eq!(approved.state, ApprovalState::Approved);
    world.center.clear_log();
    let submitted = submit(&world, &pb, &refund, &id).await;
    assert_eq!(
        submitted.status,
        RunStatus::Ok,
        "submit failed: {:?}",
        submitted.error
    );

    let writes = world.center.writes();
    assert_eq!(
        writes.len(),
        1,
        "exactly one write must reach the seller center: {writes:#?}"
    );
    assert_eq!(writes[0].method, "POST");
    assert_eq!(writes[0].path, refund.refund_path());
    let refunds = world.center.refunds();
    assert_eq!(refunds.len(), 1, "{refunds:#?}");
    let rec = &refunds[0];
    assert!(
        rec.csrf_valid,
        "the submit must carry the page's CSRF token: {rec:?}"
    );
    assert!(rec.accepted, "{rec:?}");
    assert_eq!(rec.user.as_deref(), Some("ops"));
    let mut sent = rec.fields.clone();
    assert!(sent.remove("csrf_token").is_some_and(|t| !t.is_empty()));
    let mut expected: std::collections::BTreeMap<String, String> = refund
        .reviewed_values()
        .into_iter()
        .map(|f| (f.name, f.value))
        .collect();
    // The reviewer saw the PIN masked; the seller center gets the real one.
    expected.insert("supervisor_pin".into(), PIN.into());
    assert_eq!(
        sent, expected,
        "the seller center must receive exactly the approved values"
    );

    // The seller center's answer is evidence.
    assert_eq!(submitted.fields.get("refund_id"), Some(&rec.refund_id));
    for name in ["submit-result", "refund-result"] {
        let s = submitted
            .screenshots
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} screenshot in {:?}", submitted.screenshots));
        assert_eq!(sha256_file(&s.path), s.sha256);
        assert!(!s.blank, "{name} is blank");
    }
    let used = approval::load(&world.engine, &id).expect("approval loads");
    assert_eq!(used.state, ApprovalState::Used);
    assert_eq!(used.used_by_run, submitted.run_id);

    // A second use is refused and sends nothing.
    world.center.clear_log();
    let mark = journal(&world).len();
    let again = submit(&world, &pb, &refund, &id).await;
    assert_eq!(again.status, RunStatus::Refused, "{again:?}");
    assert!(
        world.center.writes().is_empty(),
        "{:#?}",
        world.center.writes()
    );
    assert_eq!(world.center.refunds().len(), 1);
    // Refused before any browser starts: the engine's run-level refusal.
    assert_refused(&world, mark, "run", &id, "ops", "already used");

    // Another draft through the command line, with debug logging: the PIN is in no output
    // of the binary.
    let cli_refund = Refund::for_delivered(1);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let playbook_file = manifest.join("playbooks/refund-draft.yaml");
    let mut args = vec!["run".to_owned(), playbook_file.display().to_string()];
    for (k, v) in cli_refund.inputs() {
        args.push("-i".into());
        args.push(format!("{k}={v}"));
    }
    world.center.clear_log();
    let out = clerk(&world, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let (stdout, stderr) = outputs(&out);
    assert!(
        out.status.success(),
        "clerk run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("run started"),
        "debug logging was not on:\n{stderr}"
    );
    assert!(!stdout.contains(PIN), "the PIN is on stdout:\n{stdout}");
    assert!(!stderr.contains(PIN), "the PIN is in the debug log");
    assert!(
        world.center.writes().is_empty(),
        "{:#?}",
        world.center.writes()
    );
    let cli_drafts: Vec<(String, String)> = journal(&world)
        .into_iter()
        .filter_map(|r| match r.event {
            Event::ApprovalRequested {
                approval_id,
                run_id,
                ..
            } if run_id != draft_run => Some((run_id, approval_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        cli_drafts.len(),
        1,
        "the CLI run should have drafted one approval: {cli_drafts:?}"
    );
    let (cli_run, cli_id) = cli_drafts[0].clone();

    // Approve and submit it through the command line too. The PIN was never stored, so the
    // submit refuses to start without it, then gets it from CLERK_SECRET_SUPERVISOR_PIN.
    let out = clerk_as(&world, "carol", &["approve", &cli_id, "--note", "ok"], &[]);
    assert!(
        out.status.success(),
        "clerk approve failed: {:?}",
        outputs(&out)
    );
    let submit_args = [
        "submit",
        cli_id.as_str(),
        "--playbook",
        playbook_file.to_str().expect("utf-8 path"),
    ];
    let out = clerk_as(&world, "ops", &submit_args, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "submit without the PIN: {:?}",
        outputs(&out)
    );
    assert!(
        outputs(&out).1.contains("CLERK_SECRET_SUPERVISOR_PIN"),
        "{:?}",
        outputs(&out)
    );
    assert!(
        world.center.writes().is_empty(),
        "{:#?}",
        world.center.writes()
    );
    let out = clerk_as(
        &world,
        "ops",
        &submit_args,
        &[("CLERK_SECRET_SUPERVISOR_PIN", PIN)],
    );
    let (stdout, stderr) = outputs(&out);
    assert!(
        out.status.success(),
        "clerk submit failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stdout.contains(PIN), "the PIN is on stdout:\n{stdout}");
    assert!(
        !stderr.contains(PIN),
        "the PIN is in the debug log of the submit"
    );
    let writes = world.center.writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(writes[0].path, cli_refund.refund_path());
    let refunds = world.center.refunds();
    let cli_rec = refunds.last().expect("a refund was received");
    assert!(cli_rec.csrf_valid && cli_rec.accepted, "{cli_rec:?}");
    assert_eq!(
        cli_rec.fields.get("supervisor_pin").map(String::as_str),
        Some(PIN)
    );
    assert_eq!(cli_rec.fields.get("amount"), Some(&cli_refund.amount));
    assert_eq!(
        approval::load(&world.engine, &cli_id).unwrap().state,
        ApprovalState::Used
    );

    // Secret: masked in the screenshots of both drafts...
    for run in [draft_run.clone(), cli_run] {
        for name in ["refund-form", "draft"] {
            let shots = captures(&world, &run, name);
            assert_eq!(
                shots.len(),
                1,
                "run {run} should have one {name} screenshot"
            );
            assert_masked_black(&world, &shots[0].0, &shots[0].1);
        }
    }
    // ...absent from every approval request...
    for r in journal(&world) {
        if let Event::ApprovalRequested { request, .. } = &r.event {
            assert!(
                !request.contains(PIN),
                "the PIN is in approval request {request}"
            );
            assert!(
                request.contains("<secret>"),
                "the PIN field should show as <secret>: {request}"
            );
        }
    }
    // ...and from every byte clerk wrote.
    assert_pin_nowhere_on_disk(&world);

    assert_decisions_in_run_detail(&world, &draft_run, &id);
    assert_verifies(&world);
}

/// Runs refund-draft on `engine` (which may differ from the world's: another clock or
/// config) as `ops`, submitting approval `id`.
async fn submit_on(
    engine: &clerk::runner::Engine,
    pb: &Arc<Playbook>,
    refund: &Refund,
    id: &str,
) -> RunReport {
    engine
        .run(clerk::runner::RunRequest {
            playbook: pb.clone(),
            inputs: common::inputs(&refund.inputs()),
            operator: "ops".into(),
            case_ref: None,
            batch_id: None,
            approval: Some(id.to_owned()),
            claims: Default::default(),
            replay_of: None,
            rollback_of: None,
            offline: None,
            sample: false,
        })
        .await
        .expect("engine runs")
}

/// Asserts a submit attempt was refused and that nothing at all reached the seller center.
fn assert_refused_without_writes(world: &World, report: &RunReport) {
    assert_eq!(report.status, RunStatus::Refused, "{report:#?}");
    assert!(
        world.center.writes().is_empty(),
        "a refused submit wrote to the seller center: {:#?}",
        world.center.writes()
    );
    assert!(
        world.center.refunds().is_empty(),
        "{:#?}",
        world.center.refunds()
    );
}

/// Every way a submit or a decision can be wrong is refused, sends nothing to the seller
/// center, and leaves a `Refused` record saying why: an unknown approval, a non-reviewer,
/// a self-approval, a pending or rejected draft, an expired approval, a form that changed
/// since review and a playbook edited since review. A page that also sends an unrelated
/// write during the submit gets only the approved write through (the SPA tests cover a
/// second write to the approved endpoint, which stops both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unusable_approval_is_refused_with_zero_writes_and_a_reason() {
    let world = World::new().await;
    let pb = playbook("refund-draft");

    // No approval behind the id at all.
    let ghost = "a-20990101T000000Z-deadbeef";
    world.center.clear_log();
    let mark = journal(&world).len();
    let r = submit(&world, &pb, &Refund::for_delivered(2), ghost).await;
    assert_refused_without_writes(&world, &r);
    assert_refused(&world, mark, "run", ghost, "ops", "unknown approval");

    // Draft A: decisions by the wrong people, then a rejection.
    let refund_a = Refund::for_delivered(2);
    let (draft_a, a) = draft(&world, &pb, &refund_a).await;
    let mark = journal(&world).len();
    let err = approval::decide(&world.engine, &a, "alice", true, None)
        .expect_err("alice is an operator, not a reviewer");
    assert!(
        matches!(err, approval::ApprovalError::NotReviewer { .. }),
        "{err}"
    );
    assert_refused(&world, mark, "approve", &a, "alice", "not a reviewer");

    // A config where ops reviews too: still ops cannot approve ops's own draft.
    let mut both = (*world.engine.config).clone();
    both.channels
        .iter_mut()
        .find(|c| c.id == "sample")
        .expect("sample channel")
        .reviewers
        .push("ops".into());
    let engine_both = clerk::runner::Engine::new(
        world.data_dir().to_owned(),
        both,
        world.engine.store.clone(),
        world.engine.launch.clone(),
    );
    let mark = journal(&world).len();
    let err = approval::decide(&engine_both, &a, "ops", true, None)
        .expect_err("the requester cannot approve");
    assert!(
        matches!(err, approval::ApprovalError::SelfApproval(_)),
        "{err}"
    );
    assert_refused(&world, mark, "approve", &a, "ops", "four eyes");
    assert_eq!(
        approval::load(&world.engine, &a).unwrap().state,
        ApprovalState::Pending
    );

    // Neither refused decision made it usable.
    world.center.clear_log();
    let mark = journal(&world).len();
    let r = submit(&world, &pb, &refund_a, &a).await;
    assert_refused_without_writes(&world, &r);
    assert_refused(&world, mark, "run", &a, "ops", "is pending, not approved");

    // A rejection must say why; then the draft can never be submitted.
    let mark = journal(&world).len();
    let err = approval::decide(&world.engine, &a, "carol", false, Some("  ".into()))
        .expect_err("a rejection needs a note");
    assert!(
        matches!(err, approval::ApprovalError::NoteRequired),
        "{err}"
    );
    assert_refused(&world, mark, "reject", &a, "carol", "needs a note");
    let rejected = approval::decide(
        &world.engine,
        &a,
        "carol",
        false,
        Some("amount exceeds the damage shown".into()),
    )
    .expect("carol may reject");
    assert_eq!(rejected.state, ApprovalState::Rejected);
    let mark = journal(&world).len();
    let r = submit(&world, &pb, &refund_a, &a).await;
    assert_refused_without_writes(&world, &r);
    assert_refused(&world, mark, "run", &a, "ops", "is rejected, not approved");

    // Draft B, approved, submitted 25 hours later: expired (the TTL is 24 h).
    let refund_b = Refund::for_delivered(3);
    let (draft_b, b) = draft(&world, &pb, &refund_b).await;
    approval::decide(&world.engine, &b, "carol", true, None).expect("carol approves");
    let mut later = world.engine.clone();
    later.clock = Arc::new(|| chrono::Utc::now() + chrono::Duration::hours(25));
    assert_eq!(
        approval::load(&later, &b).unwrap().state,
        ApprovalState::Expired
    );
    world.center.clear_log();
    let mark = journal(&world).len();
    let r = submit_on(&later, &pb, &refund_b, &b).await;
    assert_refused_without_writes(&world, &r);
    assert_refused(&world, mark, "run", &b, "ops", "is expired");

    // Draft C, approved, then the seller center changes the form's default refund method:
    // the live form no longer matches what carol saw.
    let refund_c = Refund::for_delivered(4);
    let (draft_c, c) = draft(&world, &pb, &refund_c).await;
    approval::decide(&world.engine, &c, "carol", true, None).expect("carol approves");
    world.center.set_refund_default("method", "store_credit");
    world.center.clear_log();
    let mark = journal(&world).len();
    let r = submit(&world, &pb, &refund_c, &c).await;
    world
        .center
        .set_refund_default("method", "original_payment");
    assert_refused_without_writes(&world, &r);
    let why = assert_refused(&world, mark, "submit", &c, "ops", "draft hash mismatch");
    assert!(
        why.reason.contains("method") && why.reason.contains("store_credit"),
        "the refusal should name the changed field: {why:?}"
    );
    assert!(!why.reason.contains(PIN), "{why:?}");

    // Draft D from a playbook file that is edited (one comment line) after approval.
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/refund-draft.yaml"),
    )
    .expect("shipped playbook");
    let edited = world.playbook_from("refund-local", &yaml);
    let refund_d = Refund::for_delivered(5);
    let (draft_d, d) = draft(&world, &edited, &refund_d).await;
    approval::decide(&world.engine, &d, "carol", true, None).expect("carol approves");
    let mut changed = yaml.clone();
    changed.push_str("# tweaked after review\n");
    std::fs::write(&edited.source, changed).expect("playbook file is writable");
    let reloaded = Arc::new(
        clerk::playbook::load(&edited.source, Some(&world.engine.config))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_ne!(reloaded.sha256, edited.sha256);
    world.center.clear_log();
    let mark = journal(&world).len();
    let r = submit(&world, &reloaded, &refund_d, &d).await;
    assert_refused_without_writes(&world, &r);
    assert_refused(
        &world,
        mark,
        "run",
        &d,
        "ops",
        "is not the version approval",
    );
    {
        let refusals = journal(&world);
        let why = refusals[mark..]
            .iter()
            .find_map(|r| match &r.event {
                Event::Refused { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .expect("a refusal");
        assert!(
            why.contains(&reloaded.sha256) && why.contains(&edited.sha256),
            "the refusal names both hashes: {why}"
        );
    }
    // The approved text itself is in the store, byte for byte, and is what a submit loads.
    let stored = world
        .engine
        .stored_playbook(&edited.sha256)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.text.bytes(), yaml.as_bytes());

    // Draft E, approved, but the page now fires another POST (an analytics call) from its
    // submit handler before the form's. Only writes to the approved endpoint are judged: the
    // analytics call is blocked and recorded, and the reviewed write alone goes out, once.
    let refund_e = Refund::for_delivered(6);
    let (draft_e, e) = draft(&world, &pb, &refund_e).await;
    approval::decide(&world.engine, &e, "carol", true, None).expect("carol approves");
    world.center.set_double_write(true);
    world.center.clear_log();
    let r = submit(&world, &pb, &refund_e, &e).await;
    world.center.set_double_write(false);
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let writes = world.center.writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(writes[0].path, refund_e.refund_path());
    let blocked = world.blocked_urls(r.run_id.as_deref().expect("the submit run started"));
    assert!(
        blocked
            .iter()
            .any(|(m, u)| m == "POST" && u.ends_with("/analytics/refund-submit")),
        "the analytics POST should be blocked and recorded: {blocked:?}"
    );
    assert!(
        !blocked
            .iter()
            .any(|(_, u)| u.ends_with(&refund_e.refund_path())),
        "the approved write was not blocked: {blocked:?}"
    );
    assert_eq!(
        approval::load(&world.engine, &e).unwrap().state,
        ApprovalState::Used
    );

    for (run, id) in [
        (&draft_a, &a),
        (&draft_b, &b),
        (&draft_c, &c),
        (&draft_d, &d),
        (&draft_e, &e),
    ] {
        assert_decisions_in_run_detail(&world, run.run_id.as_deref().expect("draft run id"), id);
    }
    // Refusal reasons list changed form values: the PIN must not be among them.
    assert_pin_nowhere_on_disk(&world);
    assert_verifies(&world);
}
