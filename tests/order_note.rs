//! The second shipped submit playbook, end to end: an internal note is drafted (nothing
//! written), approved by a reviewer, then added exactly once; the CLI shows it all.

use crate::common;

use clerk::approval::{self, ApprovalState};
use clerk::runner::RunStatus;
use common::{playbook, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_note_is_drafted_approved_and_added_once() {
    let world = World::new().await;
    let pb = playbook("order-note");
    let order = &clerk::sample::orders()[7].id;
    let note = "customer called twice — check courier SLA";
    let inputs = [
        ("order_id", order.as_str()),
        ("note", note),
        ("tag", "follow_up"),
    ];

    let draft = world.run(&pb, &inputs).await;
    assert_eq!(draft.status, RunStatus::Drafted, "{:?}", draft.error);
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    let id = draft.approval_id.clone().unwrap();
    let pending = approval::load(&world.engine, &id).unwrap();
    assert_eq!(pending.state, ApprovalState::Pending);
    let values: Vec<(String, String)> = pending
        .request
        .content
        .values
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    assert!(values.contains(&("note".into(), note.into())), "{values:?}");
    assert!(
        values.contains(&("tag".into(), "follow_up".into())),
        "{values:?}"
    );

    approval::decide(&world.engine, &id, "carol", true, Some("ok".into())).unwrap();
    let done = world.run_as(&pb, &inputs, "ops", Some(&id)).await;
    assert_eq!(done.status, RunStatus::Ok, "{:?}", done.error);
    let writes = world.center.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].path, format!("/orders/{order}/notes"));
    let notes = world.center.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].note, note);
    assert!(notes[0].csrf_valid);
    assert_eq!(
        approval::load(&world.engine, &id).unwrap().state,
        ApprovalState::Used
    );
    assert!(done.screenshots.iter().any(|s| s.name == "notes-after"));

    // The approval is visible to a reviewer from the command line, and used.
    let out = std::process::Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["approvals", "show", &id])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("state      used"), "{stdout}");
    assert!(stdout.contains(note), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "will submit POST http://127.0.0.1:{}/orders/{order}/notes",
            world.center.port()
        )),
        "{stdout}"
    );
}

/// `upload` puts a local file into a file input through CDP; the reviewed values name the
/// file, and the one approved write carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_file_is_reviewed_and_sent_once() {
    let world = World::new().await;
    let photo = world.data_dir().join("parcel.png");
    std::fs::write(&photo, b"\x89PNG\r\n\x1a\nnot really an image but bytes").unwrap();
    let pb = world.playbook_from(
        "note-with-photo",
        r##"name: note-with-photo
version: "1"
description: add a note with an attachment, after review
channel: sample
mode: submit
inputs:
  order_id: { type: string }
  photo: { type: file }
match:
  order_id: { selector: "#order-id" }
steps:
  - goto: /orders/{{order_id}}/notes
  - fill: { label: "Internal note", value: "photo of the parcel attached" }
  - upload: { selector: "#note-attachment", input: photo }
  - submit: { control: "#add-note", expect: { method: POST, url: "/orders/{{order_id}}/notes" } }
  - wait_for: { text: "photo of the parcel attached" }
"##,
    );
    let order = &clerk::sample::orders()[9].id;
    let path = photo.to_string_lossy().to_string();
    let inputs = [("order_id", order.as_str()), ("photo", path.as_str())];
    let draft = world.run(&pb, &inputs).await;
    assert_eq!(draft.status, RunStatus::Drafted, "{:?}", draft.error);
    assert!(world.center.writes().is_empty());
    let id = draft.approval_id.unwrap();
    let values = approval::load(&world.engine, &id)
        .unwrap()
        .request
        .content
        .values;
    assert!(
        values
            .iter()
            .any(|v| v.name == "attachment" && v.value == "file:parcel.png"),
        "{values:?}"
    );
    approval::decide(&world.engine, &id, "carol", true, None).unwrap();
    let done = world.run_as(&pb, &inputs, "ops", Some(&id)).await;
    assert_eq!(done.status, RunStatus::Ok, "{:?}", done.error);
    let writes = world.center.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    let attachment = writes[0]
        .form
        .get("attachment")
        .cloned()
        .unwrap_or_default();
    assert!(
        attachment.starts_with("file:parcel.png"),
        "{:?}",
        writes[0].form
    );
}

/// An approval given while the channel permitted submit is refused, with a record, once the
/// channel's owner has taken the submit mode away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_is_refused_when_the_channel_no_longer_permits_submit() {
    let world = World::new().await;
    let pb = playbook("order-note");
    let order = &clerk::sample::orders()[11].id;
    let inputs = [
        ("order_id", order.as_str()),
        ("note", "needs a call back"),
        ("tag", "vip"),
    ];
    let draft = world.run(&pb, &inputs).await;
    let id = draft.approval_id.clone().expect("drafted");
    approval::decide(&world.engine, &id, "carol", true, None).unwrap();

    let text = clerk::sample::demo_config(world.center.port(), "ops").replace(
        r#"modes = ["read_only", "draft", "submit", "login"]"#,
        r#"modes = ["read_only", "draft"]"#,
    );
    let path = world.data_dir().join("no-submit.toml");
    std::fs::write(&path, text).unwrap();
    let mut engine = world.engine.clone();
    engine.config = std::sync::Arc::new(clerk::channel::Config::load(&path).unwrap());
    let report = engine
        .run(clerk::runner::RunRequest {
            playbook: pb.clone(),
            inputs: common::inputs(&inputs),
            operator: "ops".into(),
            case_ref: None,
            batch_id: None,
            approval: Some(id.clone()),
            claims: Default::default(),
            replay_of: None,
            rollback_of: None,
            offline: None,
            sample: false,
        })
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Refused);
    let err = report.error.unwrap();
    assert!(err.contains("does not permit mode `submit`"), "{err}");
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    let refusals: Vec<_> = world
        .engine
        .store
        .approval_records(&id)
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r.event, clerk::evidence::Event::Refused { .. }))
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(
        approval::load(&world.engine, &id).unwrap().state,
        ApprovalState::Approved,
        "a refused attempt does not spend the approval"
    );
}
