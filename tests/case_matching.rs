//! Case claims and matching (issue 19): the facts a customer gave are compared with what
//! the seller center shows before clerk fills or sends anything, in real headless Chromium
//! against the sample seller center (server-rendered pages and the single-page app).
//!
//! What the user cares about, checked on the seller center's side: a case that does not
//! match gets zero writes and no filled form; the refusal names the claim, the field and
//! both values; a read-only lookup that does not match keeps its evidence and ends
//! `needs_review` (exit code 6); a matched draft carries its claims into the approval, and
//! the submit runs with exactly those.

use crate::common;

use std::process::Command;

use clerk::approval;
use clerk::evidence::{Event, Record};
use clerk::runner::{RunReport, RunStatus};
use common::{playbook, World};

/// A delivered order with a refundable total, and a refund of a third of it.
fn delivered(nth: usize) -> (&'static clerk::sample::Order, String) {
    let order = clerk::sample::orders()
        .iter()
        .filter(|o| o.status == "delivered" && o.total_cents >= 300)
        .nth(nth)
        .expect("enough delivered orders");
    let cents = order.total_cents / 3;
    (order, format!("{}.{:02}", cents / 100, cents % 100))
}

fn refund_inputs<'a>(order: &'a str, amount: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("order_id", order),
        ("amount", amount),
        ("reason", "damaged"),
        ("note", "Broken on arrival"),
    ]
}

fn spa_refund_inputs<'a>(order: &'a str, amount: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("order_id", order),
        ("amount", amount),
        ("reason", "Item damaged"),
        ("method", "store_credit"),
        ("note", "Broken on arrival"),
    ]
}

/// The full-width form of an ASCII string (what a customer's phone keyboard may send).
fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            ' ' => '\u{3000}',
            _ => c,
        })
        .collect()
}

/// The case check records of a run.
fn case_checks(world: &World, run_id: &str) -> Vec<(String, Vec<clerk::case::Check>)> {
    world
        .records(run_id)
        .into_iter()
        .filter_map(|r| match r.event {
            Event::CaseChecked {
                verdict, checks, ..
            } => Some((verdict, checks)),
            _ => None,
        })
        .collect()
}

fn step_kinds(world: &World, run_id: &str) -> Vec<String> {
    world
        .records(run_id)
        .into_iter()
        .filter_map(|r| match r.event {
            Event::StepFinished { kind, .. } => Some(kind),
            _ => None,
        })
        .collect()
}

fn refusals(world: &World, run_id: &str) -> Vec<String> {
    world
        .engine
        .store
        .records()
        .expect("journal")
        .into_iter()
        .filter_map(|r: Record| match r.event {
            Event::Refused {
                run_id: Some(id),
                reason,
                ..
            } if id == run_id => Some(reason),
            _ => None,
        })
        .collect()
}

/// A refused case: zero writes received, no write step ran, one refusal naming `needles`.
fn assert_refused_case(world: &World, r: &RunReport, needles: &[&str]) {
    assert_eq!(r.status, RunStatus::Refused, "{:?}", r.error);
    assert!(
        world.center.writes().is_empty(),
        "a mismatched case wrote to the seller center: {:#?}",
        world.center.writes()
    );
    assert!(r.approval_id.is_none(), "no approval for a mismatched case");
    let run_id = r.run_id.clone().expect("the run started");
    let kinds = step_kinds(world, &run_id);
    for k in ["fill", "select", "check", "submit"] {
        assert!(
            !kinds.iter().any(|s| s == k),
            "a {k} step ran on a mismatched case: {kinds:?}"
        );
    }
    let reasons = refusals(world, &run_id);
    assert_eq!(reasons.len(), 1, "one refusal recorded: {reasons:?}");
    let error = r.error.clone().unwrap_or_default();
    for n in needles {
        assert!(
            reasons[0].contains(n),
            "refusal {:?} lacks {n:?}",
            reasons[0]
        );
        assert!(error.contains(n), "error {error:?} lacks {n:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_is_drafted_only_for_a_matching_case_and_submitted_with_its_claims() {
    let world = World::new().await;
    let pb = playbook("refund-draft");
    let (order, amount) = delivered(3);
    let last4 = &order.phone[order.phone.len() - 4..];

    // The customer's phone, wrong in its last digit: refused before anything is filled.
    let wrong = format!("{}{}", &last4[..3], (last4.as_bytes()[3] - b'0' + 1) % 10);
    world.center.clear_log();
    let r = world
        .run_claims(
            &pb,
            &refund_inputs(&order.id, &amount),
            &[("phone", &wrong)],
            None,
        )
        .await;
    assert_refused_case(
        &world,
        &r,
        &["phone", &format!("{wrong:?}"), &order.phone, "conflict"],
    );
    let run_id = r.run_id.clone().unwrap();
    let checks = case_checks(&world, &run_id);
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].0, "conflict");
    let phone = checks[0].1.iter().find(|c| c.claim == "phone").unwrap();
    assert_eq!(phone.found.as_deref(), Some(order.phone.as_str()));
    assert_eq!(phone.verdict, clerk::case::Verdict::Conflict);
    // The order id was not claimed: the input stood for it, and matched the page.
    let id = checks[0].1.iter().find(|c| c.claim == "order_id").unwrap();
    assert_eq!(
        (id.source.as_str(), id.verdict),
        ("input", clerk::case::Verdict::Matched)
    );

    // The last two digits, right but too few to tell: unverifiable, refused just the same.
    world.center.clear_log();
    let r = world
        .run_claims(
            &pb,
            &refund_inputs(&order.id, &amount),
            &[("phone", &last4[2..])],
            None,
        )
        .await;
    assert_refused_case(&world, &r, &["unverifiable", "phone"]);

    // The customer's name in another word order and case, the phone's last four digits
    // typed full-width: the case matches and the draft is made.
    let mut words: Vec<&str> = order.customer.split(' ').collect();
    words.reverse();
    let name = words.join(" ").to_uppercase();
    let phone_claim = full_width(last4);
    let claims = [("customer", name.as_str()), ("phone", phone_claim.as_str())];
    world.center.clear_log();
    let r = world
        .run_claims(&pb, &refund_inputs(&order.id, &amount), &claims, None)
        .await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    let draft_run = r.run_id.clone().unwrap();
    let checks = case_checks(&world, &draft_run);
    assert_eq!(checks.len(), 1, "checked once, before the first fill");
    assert_eq!(checks[0].0, "matched", "{:?}", checks[0].1);
    let id = r.approval_id.clone().expect("a draft");
    let pending = approval::load(&world.engine, &id).expect("approval");
    assert_eq!(
        pending.request.content.claims,
        claims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    );
    approval::decide(&world.engine, &id, "carol", true, None).expect("carol approves");

    // A submit given other claims than the reviewed ones is refused, nothing sent.
    world.center.clear_log();
    let refunds_before = world.center.refunds().len();
    let r = world
        .run_claims(
            &pb,
            &refund_inputs(&order.id, &amount),
            &[("customer", "Someone Else")],
            Some(&id),
        )
        .await;
    assert_eq!(r.status, RunStatus::Refused, "{:?}", r.error);
    assert!(r.error.unwrap_or_default().contains("differ"));
    assert!(world.center.writes().is_empty());

    // The submit without claims runs with the draft's, checks them again, sends once.
    let r = world
        .run_claims(&pb, &refund_inputs(&order.id, &amount), &[], Some(&id))
        .await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    assert_eq!(world.center.refunds().len(), refunds_before + 1);
    let submit_run = r.run_id.clone().unwrap();
    let started = world
        .records(&submit_run)
        .into_iter()
        .find_map(|r| match r.event {
            Event::RunStarted { claims, .. } => Some(claims),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        started.get("customer").map(String::as_str),
        Some(name.as_str())
    );
    assert_eq!(case_checks(&world, &submit_run)[0].0, "matched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_page_apps_refund_form_is_not_touched_for_another_customer() {
    let world = World::new().await;
    let pb = playbook("spa-refund");
    let (order, amount) = delivered(4);

    world.center.clear_log();
    let r = world
        .run_claims(
            &pb,
            &spa_refund_inputs(&order.id, &amount),
            &[("customer", "Nobody Known")],
            None,
        )
        .await;
    assert_refused_case(
        &world,
        &r,
        &["customer", "\"Nobody Known\"", &order.customer],
    );

    // The SPA renders the order late (after a JSON fetch); the claimed name and phone
    // match it.
    world.center.clear_log();
    let r = world
        .run_claims(
            &pb,
            &spa_refund_inputs(&order.id, &amount),
            &[
                ("customer", &order.customer),
                ("phone", &order.phone[order.phone.len() - 4..]),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    assert!(world.center.writes().is_empty());
    let checks = case_checks(&world, r.run_id.as_deref().unwrap());
    assert_eq!(checks[0].0, "matched", "{:?}", checks[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_whose_case_conflicts_ends_needs_review_with_its_evidence() {
    let world = World::new().await;
    let order = &clerk::sample::orders()[7];
    let dir = world.data_dir().to_owned();
    let lookup =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/order-lookup.yaml");
    let run = |claims: &[&str]| {
        let mut c = Command::new(common::clerk_bin());
        c.arg("--data-dir")
            .arg(&dir)
            .args(["--as", "ops", "run"])
            .arg(&lookup)
            .args(["-i", &format!("order_id={}", order.id), "--json"])
            .env_remove("CLERK_DATA_DIR")
            .env_remove("CLERK_USER");
        for claim in claims {
            c.args(["--claim", claim]);
        }
        c.output().expect("clerk runs")
    };

    // The total claimed as the customer wrote it (currency sign, full-width digits).
    let total = format!(
        "￥{}",
        full_width(&format!(
            "{}.{:02}",
            order.total_cents / 100,
            order.total_cents % 100
        ))
    );
    let out = run(&[
        &format!("total={total}"),
        &format!("customer={}", order.customer),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&["customer=Somebody Else"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(6),
        "needs_review exits 6: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json report");
    let report = &v["runs"][0];
    assert_eq!(report["status"], "needs_review");
    assert_eq!(v["needs_review"], 1);
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("\"Somebody Else\"") && error.contains(&order.customer),
        "{error}"
    );
    // The evidence is kept for the reviewer: the screenshot is on disk, hashed.
    let shots = report["screenshots"].as_array().expect("screenshots");
    assert_eq!(shots.len(), 1);
    let sha = shots[0]["sha256"].as_str().unwrap();
    let bytes = std::fs::read(dir.join("screenshots").join(format!("{sha}.png"))).unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        sha
    );
    assert!(world.center.writes().is_empty());

    // The weekly numbers count both checks.
    let stats = Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(&dir)
        .args(["stats", "--json"])
        .env_remove("CLERK_DATA_DIR")
        .output()
        .expect("clerk stats");
    let s: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats json");
    let cases = &s["overall"]["cases"];
    assert_eq!(
        (
            cases["checked"].as_u64(),
            cases["matched"].as_u64(),
            cases["conflicts"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{s:#}"
    );
    assert_eq!(
        cases["writes_prevented"], 0,
        "a lookup writes nothing to prevent"
    );

    // A claim that cannot be compared as the rule says is refused before any browser.
    let out = run(&["total=about twenty"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cannot be compared as amount"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_requires_match_rules_for_writes_unless_it_opts_out() {
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/order-note.yaml"),
    )
    .unwrap();
    let start = yaml.find("match:").expect("order-note has match rules");
    let end = yaml[start..].find("steps:").unwrap() + start;
    let unmatched = format!("{}{}", &yaml[..start], &yaml[end..]);
    let order = &clerk::sample::orders()[2].id;
    let inputs = [
        ("order_id", order.as_str()),
        ("note", "Called the customer back"),
        ("tag", "follow_up"),
    ];

    // Default (no `require_match` key): on.
    let world = World::with_config(|c| c.replace("require_match = true\n", "")).await;
    let pb = world.playbook_from("note-unmatched", &unmatched);
    let r = world.run_claims(&pb, &inputs, &[], None).await;
    assert_eq!(r.status, RunStatus::Refused);
    assert!(r.run_id.is_none(), "refused before a run starts");
    let error = r.error.unwrap_or_default();
    assert!(
        error.contains("requires case matching") && error.contains("require_match = false"),
        "{error}"
    );
    assert!(world.center.writes().is_empty());
    let recorded = world
        .engine
        .store
        .records()
        .unwrap()
        .into_iter()
        .any(|r| matches!(r.event, Event::Refused { ref reason, .. } if reason.contains("requires case matching")));
    assert!(recorded, "the refusal is recorded");

    // The shipped playbook with its rules drafts.
    let r = world
        .run_claims(&playbook("order-note"), &inputs, &[], None)
        .await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);

    // A channel that opts out drafts without rules.
    let world =
        World::with_config(|c| c.replace("require_match = true", "require_match = false")).await;
    let pb = world.playbook_from("note-unmatched", &unmatched);
    let r = world.run_claims(&pb, &inputs, &[], None).await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
}

#[test]
fn match_rules_are_checked_with_file_line_and_field() {
    let bad = r##"name: bad-match
version: "1"
description: d
channel: sample
mode: submit
inputs:
  order_id: { type: string }
match:
  phone: { selector: "#customer-phone", as: telephone }
  total: { field: total, as: amount }
  late: { field: late }
  both: { field: x, selector: "#x" }
  Bad-Name: { selector: "#y" }
steps:
  - goto: /orders/{{order_id}}/notes
  - fill: { selector: "#note-text", value: "x" }
  - extract: { field: late, selector: "#late" }
  - submit:
      control: "#add-note"
      expect: { method: POST, url: "/orders/{{order_id}}/notes" }
"##;
    let err = clerk::playbook::parse(std::path::Path::new("bad-match.yaml"), bad.as_bytes(), None)
        .expect_err("invalid match rules");
    let text = err.to_string();
    for (line, field, what) in [
        (9, "match.phone.as", "unknown comparison `telephone`"),
        (10, "match.total.field", "field `total` is not extracted"),
        (11, "match.late.field", "after the first write step"),
        (12, "match.both.field", "not both"),
        (13, "match", "claim name `Bad-Name` is not valid"),
    ] {
        let found = err
            .0
            .iter()
            .any(|d| d.line == line && d.field == field && d.message.contains(what));
        assert!(
            found,
            "no diagnostic at line {line} field {field} saying {what:?}:\n{text}"
        );
    }
    assert!(text.contains("bad-match.yaml"), "{text}");
}

/// Through `clerk serve`: `--claim` reaches the queued job, the lookup ends `needs_review`
/// (exit 6), and the console's "Cases to review" shows the claims and the page's values
/// side by side with the screenshot (and its JSON twin lists the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_claims_reach_the_run_and_the_console_lists_the_case_for_review() {
    let world = crate::console::world("").await;
    crate::console::add_users(&world);
    // Started from `/`, as its service unit starts it.
    let daemon = common::Daemon::spawn_in(world.data_dir(), Some(std::path::Path::new("/")), &[]);
    let (port, token) = daemon.ready(world.data_dir()).await;
    let order = &clerk::sample::orders()[11];
    let out = tokio::task::block_in_place(|| {
        Command::new(common::clerk_bin())
            .arg("--data-dir")
            .arg(world.data_dir())
            .args([
                "--as",
                "ops",
                "run",
                "order-lookup",
                "--json",
                "--case",
                "CASE-77",
            ])
            .args(["-i", &format!("order_id={}", order.id)])
            .args(["--claim", "customer=Zed Nobody", "--claim", "phone=0000"])
            .env_remove("CLERK_DATA_DIR")
            .env_remove("CLERK_USER")
            .output()
            .expect("clerk runs")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["runs"][0]["status"], "needs_review", "{v:#}");
    let run_id = v["runs"][0]["run_id"].as_str().unwrap().to_owned();

    // The JSON twin, with the instance token.
    let r = common::http::http(
        port,
        "GET",
        "/api/reviews",
        &[(clerk::instance::TOKEN_HEADER, token.as_str())],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let items = r.json();
    let item = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["run"]["run_id"] == run_id.as_str())
        .unwrap_or_else(|| panic!("{items:#}"));
    assert_eq!(item["verdict"], "conflict");
    let customer = item["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["claim"] == "customer")
        .unwrap();
    assert_eq!(customer["claimed"], "Zed Nobody");
    assert_eq!(customer["found"], order.customer.as_str());
    let sha = item["screenshot"][1]
        .as_str()
        .expect("the screenshot")
        .to_owned();

    // The page a reviewer opens: both values in one row, the screenshot beside them.
    let audrey = crate::console::login(port, "audrey").await;
    let page = crate::console::get(port, "/reviews", Some(&audrey)).await;
    assert_eq!(page.status, 200);
    let row_at = page.body.find("Zed Nobody").expect("the claimed name");
    let row_end = page.body[row_at..].find("</tr>").unwrap() + row_at;
    assert!(
        page.body[row_at..row_end].contains(&order.customer),
        "{}",
        &page.body[row_at..row_end]
    );
    assert!(page.body.contains(&format!("/screenshots/{sha}.png")));
    assert!(
        page.body.contains(&order.phone),
        "the phone as the page shows it"
    );
    let run_page = crate::console::get(port, &format!("/runs/{run_id}"), Some(&audrey)).await;
    assert!(run_page.body.contains("Case check"), "{}", run_page.body);
    let shot = crate::console::get(port, &format!("/screenshots/{sha}.png"), Some(&audrey)).await;
    assert_eq!(shot.status, 200);
    assert!(world.center.writes().is_empty());
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
}
