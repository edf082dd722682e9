//! The policy gate (issue 19): low-risk refunds approved automatically once earned, judged
//! on the held write, suspended by a human rejection until the channel's owner enables the
//! policy again; in real headless Chromium against the sample seller center.

use crate::common;

use clerk::approval::{self, ApprovalState};
use clerk::evidence::Event;
use clerk::runner::{RunReport, RunStatus};
use common::{playbook, World};

const POLICY: &str = r#"
[[channel.auto_approve]]
name = "small-damaged-refunds"
playbook = "refund-draft"
method = "POST"
url = "/orders/*/refund"
min_reviewed = 2
within_days = 30
min_pass_percent = 60
[channel.auto_approve.fields]
amount = { max = "20.00" }
reason = { equals = "damaged" }
"#;

/// Drafts a refund of `amount` for the `nth` delivered order of at least CNY 30.
async fn draft(world: &World, nth: usize, amount: &str, reason: &str) -> RunReport {
    let order = clerk::sample::orders()
        .iter()
        .filter(|o| o.status == "delivered" && o.total_cents >= 3000)
        .nth(nth)
        .expect("enough delivered orders");
    let r = world
        .run_claims(
            &playbook("refund-draft"),
            &[
                ("order_id", order.id.as_str()),
                ("amount", amount),
                ("reason", reason),
                ("note", "Box crushed"),
            ],
            &[("customer", order.customer.as_str())],
            None,
        )
        .await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    r
}

fn pending(world: &World, r: &RunReport) -> String {
    assert!(r.auto_approved_by.is_none(), "{:?}", r.auto_approved_by);
    let id = r.approval_id.clone().unwrap();
    assert_eq!(
        approval::load(&world.engine, &id).unwrap().state,
        ApprovalState::Pending
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_approves_only_what_it_earned_and_a_rejection_suspends_it() {
    let world = World::with_config(|c| format!("{c}{POLICY}")).await;

    // Nothing earned yet: three drafts wait for a person.
    let a = pending(&world, &draft(&world, 0, "10.00", "damaged").await);
    let b = pending(&world, &draft(&world, 1, "12.50", "damaged").await);
    let c = pending(&world, &draft(&world, 2, "8.00", "damaged").await);
    assert!(world.center.writes().is_empty());
    clerk::policy::decide(&world.engine, &a, "carol", true, None).unwrap();
    clerk::policy::decide(&world.engine, &b, "carol", true, None).unwrap();
    // A person rejects a write the policy covers: the policy is suspended.
    clerk::policy::decide(
        &world.engine,
        &c,
        "carol",
        false,
        Some("photos missing".into()),
    )
    .unwrap();
    let suspended = world.engine.store.records().unwrap().into_iter().any(
        |r| matches!(r.event, Event::PolicySuspended { ref approval_id, .. } if *approval_id == c),
    );
    assert!(suspended, "the rejection suspends the policy");
    let d = draft(&world, 3, "10.00", "damaged").await;
    pending(&world, &d);

    // Only the channel's owner enables it again.
    let out = world.clerk(
        "ops",
        &[
            "policy",
            "enable",
            "small-damaged-refunds",
            "--channel",
            "sample",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = world.clerk(
        "ops-lead",
        &[
            "policy",
            "enable",
            "small-damaged-refunds",
            "--channel",
            "sample",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Earned (3 reviewed, 2 approved: 66% >= 60%): approved by the policy and sent once.
    world.center.clear_log();
    let refunds = world.center.refunds().len();
    let e = draft(&world, 4, "10.00", "damaged").await;
    let by = e.auto_approved_by.clone().expect("approved by the policy");
    assert!(by.starts_with("policy:small-damaged-refunds@"), "{by}");
    let sent = e.auto_submit.as_ref().expect("submitted at once");
    assert_eq!(sent.status, RunStatus::Ok, "{:?}", sent.error);
    assert_eq!(world.center.refunds().len(), refunds + 1);
    assert_eq!(
        world
            .center
            .writes()
            .iter()
            .filter(|w| w.path.ends_with("/refund"))
            .count(),
        1
    );
    let id = e.approval_id.clone().unwrap();
    let a = approval::load(&world.engine, &id).unwrap();
    assert_eq!(a.state, ApprovalState::Used);
    let decision = a.decision.unwrap();
    assert_eq!(decision.reviewer, by);
    let note = decision.note.unwrap_or_default();
    assert!(
        note.contains("3 human-reviewed drafts in 30 days, 2 approved (66%)"),
        "{note}"
    );
    assert!(
        note.contains("amount 10.00 <= 20.00") && note.contains("reason = damaged"),
        "{note}"
    );

    // Outside the policy: too much, or another reason.
    pending(&world, &draft(&world, 5, "25.00", "damaged").await);
    pending(&world, &draft(&world, 6, "10.00", "wrong_item").await);

    let out = world.clerk("ops", &["policy", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["name"], "small-damaged-refunds");
    assert_eq!(v[0]["suspended"], serde_json::Value::Null);
    assert_eq!(v[0]["earned"], true);
    assert_eq!(v[0]["auto_approved"], 1);
    assert_eq!(v[0]["figures"]["reviewed"], 3);
    assert_eq!(v[0]["min_reviewed"], 2);
    // The weekly numbers tell automatic from reviewed decisions.
    let out = world.clerk("ops", &["stats", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats json");
    let ap = &s["overall"]["approvals"];
    assert_eq!(ap["decided_by_people"], 3, "{ap:#}");
    assert_eq!(ap["decided_by_policy"][by.as_str()], 1, "{ap:#}");
    let out = world.clerk("ops", &["verify", "--all", "--no-index"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
