//! `clerk check` from the command line: a table of malformed playbooks, each reported at
//! its file, line and column with exit code 2, never a panic.

use crate::common;

const CASES: &[(&str, &str, usize, usize, &str)] = &[
    (
        "assert-unknown",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - assert: { field: nope, equals: x }
"##,
        10,
        22,
        "assert on field `nope`, which ",
    ),
    (
        "bad-mode",
        r##"name: t
version: "1"
description: d
channel: sample
mode: yolo
inputs:
  order_id: { type: string }
steps:
  - goto: /x
"##,
        5,
        7,
        "unknown mode `yolo` (field mod",
    ),
    (
        "bad-regex",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - assert: { selector: '#a', matches: '(' }
"##,
        10,
        40,
        "invalid regex in `matches`: un",
    ),
    (
        "bad-timeout",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
    timeout: soon
"##,
        10,
        14,
        "invalid timeout `soon` (field ",
    ),
    (
        "bad-yaml",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
   - click: x
"##,
        10,
        4,
        "invalid YAML: while parsing a ",
    ),
    (
        "dup-shot",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - screenshot: { name: a }
  - screenshot: { name: a }
"##,
        11,
        25,
        "screenshot name `a` is already",
    ),
    (
        "empty-steps",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
"##,
        1,
        1,
        "missing required key `steps` (",
    ),
    (
        "fill-ro",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - fill: { selector: '#a', value: b }
"##,
        10,
        11,
        "`fill` steps are not allowed i",
    ),
    (
        "missing-name",
        r##"version: "1"
description: d
channel: sample
mode: read_only
steps:
  - goto: /orders
"##,
        1,
        1,
        "missing required key `name` (f",
    ),
    (
        "off-origin",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: http://evil.example/orders
"##,
        9,
        11,
        "url `http://evil.example/order",
    ),
    (
        "submit-ro",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - submit: { control: '#s', expect: { method: POST, url: /x } }
"##,
        10,
        13,
        "`submit` steps are not allowed",
    ),
    (
        "tab",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
	- goto: /orders
"##,
        9,
        1,
        "tab character in indentation",
    ),
    (
        "two-kinds",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
    click: '#a'
"##,
        9,
        5,
        "step has 2 kinds (goto, click)",
    ),
    (
        "unclosed",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders/{{order_id
"##,
        9,
        11,
        "malformed template `/orders/{{",
    ),
    (
        "undeclared",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders/{{order}}
"##,
        9,
        11,
        "template names undeclared inpu",
    ),
    (
        "unknown-channel",
        r##"name: t
version: "1"
description: d
channel: nowhere
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
"##,
        4,
        10,
        "unknown channel `nowhere` (fie",
    ),
    (
        "unknown-step",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - fil: { selector: x, value: y }
"##,
        9,
        5,
        "unknown step key `fil` (field ",
    ),
    (
        "unknown-top",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
colour: red
"##,
        10,
        1,
        "unknown top-level key `colour`",
    ),
    (
        "template-in-field",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - extract: { field: "{{order_id}}", selector: "#x" }
"##,
        10,
        23,
        "templates are not rendered in `field` (field steps[1].extract.field)",
    ),
    (
        "template-in-shot-name",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - screenshot: { name: "o-{{order_id}}" }
"##,
        10,
        25,
        "templates are not rendered in `name` (field steps[1].screenshot.name)",
    ),
    (
        "template-in-role",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - click: { role: "{{order_id}}" }
"##,
        10,
        20,
        "templates are not rendered in `role` (field steps[1].click.role)",
    ),
    (
        "undeclared-in-selector",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - wait_for: { selector: "[data-order-id=\"{{order}}\"] .ref" }
"##,
        10,
        27,
        "template names undeclared input `order` (field steps[1].wait_for.selector)",
    ),
    (
        "undeclared-in-role-name",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - click: { role: button, name: "Refund {{amount}}" }
"##,
        10,
        34,
        "template names undeclared input `amount` (field steps[1].click.name)",
    ),
    (
        "undeclared-in-url-wait",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - wait_for: { url: "/app/#/orders/{{id}}" }
"##,
        10,
        22,
        "template names undeclared input `id` (field steps[1].wait_for.url)",
    ),
    (
        "unknown-role",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - click: { role: buton }
"##,
        10,
        20,
        "unknown role `buton` (field steps[1].click.role)",
    ),
    (
        "nth-not-integer",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - click: { text: Next, nth: last }
"##,
        10,
        31,
        "`nth` must be an integer, found the string \"last\" (field steps[1].click.nth)",
    ),
    (
        "two-kind-locator",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - click: { role: button, testid: save }
"##,
        10,
        36,
        "locator has both `role` and `testid` (field steps[1].click.testid)",
    ),
    (
        "name-without-role",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - click: { testid: save, name: Save }
"##,
        10,
        34,
        "`name` is only used with `role` (field steps[1].click.name)",
    ),
    (
        "within-malformed",
        r##"name: t
version: "1"
description: d
channel: sample
mode: read_only
inputs:
  order_id: { type: string }
steps:
  - goto: /orders
  - click: { role: button, within: [a] }
"##,
        10,
        36,
        "`within` expects a selector string or a locator mapping, found a sequence (field steps[1].click.within)",
    ),
];

#[test]
fn each_malformed_playbook_fails_check_at_its_line_and_column_with_exit_2() {
    assert!(CASES.len() >= 29);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clerk.toml"),
        clerk::sample::demo_config(8931, "ops"),
    )
    .unwrap();
    for (name, body, line, col, message) in CASES {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, body).unwrap();
        let out = std::process::Command::new(common::clerk_bin())
            .arg("--data-dir")
            .arg(dir.path())
            .arg("check")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let expected = format!("{}:{line}:{col}: error: {message}", file.display());
        assert!(
            stderr.contains(&expected),
            "{name}: expected {expected:?} in\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[test]
fn shipped_playbooks_pass_check_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clerk.toml"),
        clerk::sample::demo_config(8931, "ops"),
    )
    .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let out = std::process::Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(dir.path())
        .arg("check")
        .args(&files)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The auditor's path through the command line, on a real run: find the run by case,
/// export the case, check the bundle with `sha256sum -c` and `clerk verify --bundle`,
/// then see both fail after one byte of a screenshot changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditor_finds_exports_and_verifies_a_case_from_the_command_line() {
    let world = common::World::new().await;
    let order = &clerk::sample::orders()[3].id;
    let report = world
        .engine
        .run(clerk::runner::RunRequest {
            playbook: common::playbook("order-lookup"),
            inputs: common::inputs(&[("order_id", order)]),
            operator: "ops".into(),
            case_ref: Some("TICKET-77".into()),
            batch_id: None,
            approval: None,
            claims: Default::default(),
            replay_of: None,
            rollback_of: None,
            offline: None,
            sample: false,
        })
        .await
        .unwrap();
    assert_eq!(
        report.status,
        clerk::runner::RunStatus::Ok,
        "{:?}",
        report.error
    );
    let run_id = report.run_id.clone().unwrap();
    let clerk = |args: &[&str]| {
        std::process::Command::new(common::clerk_bin())
            .arg("--data-dir")
            .arg(world.data_dir())
            .args(args)
            .output()
            .unwrap()
    };

    let out = clerk(&["runs", "list", "--case", "TICKET-77", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["run_id"], run_id.as_str());
    let out = clerk(&["runs", "show", &run_id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&report.screenshots[0].sha256), "{text}");
    assert!(text.contains("blocked requests"), "{text}");

    let bundle = world.data_dir().join("bundle");
    let out = clerk(&[
        "export",
        "--case",
        "TICKET-77",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stdout)
    );
    let out = clerk(&["verify", "--bundle", bundle.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = clerk(&["verify", "--case", "TICKET-77", "--no-index"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // One byte of the exported screenshot changes: both checks fail, naming the file.
    let png = bundle
        .join("screenshots")
        .join(format!("{}.png", report.screenshots[0].sha256));
    let mut bytes = std::fs::read(&png).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let mut perms = std::fs::metadata(&png).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&png, perms).unwrap();
    std::fs::write(&png, bytes).unwrap();
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(!sums.status.success());
    let out = clerk(&["verify", "--bundle", bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&report.screenshots[0].sha256),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Someone who is not an operator of the channel is refused before any browser starts, the
/// message says who may, and the refusal is on record.
#[test]
fn non_operator_is_refused_with_exit_3_and_a_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clerk.toml"),
        clerk::sample::demo_config(8931, "ops"),
    )
    .unwrap();
    let playbook =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/order-lookup.yaml");
    let out = std::process::Command::new(common::clerk_bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--as", "mallory", "run"])
        .arg(&playbook)
        .args(["-i", "order_id=SO-100001"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("`mallory` is not an operator of channel `sample` (operators: ops, alice)"),
        "{stdout}"
    );
    let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
    assert!(journal.contains("\"type\":\"refused\""), "{journal}");
    assert!(journal.contains("mallory"));
    assert!(
        !journal.contains("run_started"),
        "a refused run must not start"
    );
}

/// `clerk run NAME` finds a playbook by name from any directory (the data directory's
/// `playbooks/`, else the copy compiled into clerk), as the API and schedules do; a name
/// found nowhere is exit 2 with every place searched.
#[tokio::test(flavor = "multi_thread")]
async fn a_playbook_is_found_by_name_from_any_directory() {
    let world = common::World::new().await;
    let order = &clerk::sample::orders()[1].id;
    let run = |name: &str| {
        std::process::Command::new(common::clerk_bin())
            .current_dir("/")
            .arg("--data-dir")
            .arg(world.data_dir())
            .args(["--as", "ops", "run", name, "-i"])
            .arg(format!("order_id={order}"))
            .output()
            .unwrap()
    };
    // Compiled into clerk.
    let out = run("order-lookup");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 ok"), "{text}");
    // In the data directory's playbooks/.
    let own = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/order-lookup.yaml"),
    )
    .unwrap()
    .replace("name: order-lookup", "name: my-lookup");
    std::fs::create_dir_all(world.data_dir().join("playbooks")).unwrap();
    std::fs::write(world.data_dir().join("playbooks/my-lookup.yaml"), own).unwrap();
    let out = run("my-lookup");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("my-lookup"), "{text}");
    // Nowhere.
    let out = run("no-such-playbook");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("no file `no-such-playbook` in /"), "{text}");
    assert!(
        text.contains(&format!(
            "{}",
            world
                .data_dir()
                .join("playbooks/no-such-playbook.yaml")
                .display()
        )),
        "{text}"
    );
    assert!(text.contains("order-lookup"), "{text}");
}
