//! Playbook parsing and `clerk check` diagnostics, at the library level: the shipped
//! playbooks are valid, and each kind of mistake an author makes is reported at the right
//! line and column with a message that names the problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clerk::channel::Config;
use clerk::playbook::{
    self, Action, Diagnostic, InputKind, Locator, Mode, ShotTarget, ValueSource,
};

const CONFIG: &str = r##"
[[channel]]
id = "sample"
base_url = "http://127.0.0.1:7878/"
allowed_origins = ["http://chat.localhost:7878"]
owner = "olivia"
operators = ["olivia"]
reviewers = ["rita"]
modes = ["read_only", "draft", "submit", "login"]
session = "sessions/sample.json"
logged_in_check = { url = "/account", selector = "#account-user" }

[[channel]]
id = "lookups-only"
base_url = "http://127.0.0.1:7979/"
owner = "olivia"
session = "sessions/lookups.json"
logged_in_check = { url = "/account", selector = "#account-user" }
"##;

fn config() -> Config {
    match Config::parse(Path::new("clerk.toml"), CONFIG) {
        Ok(c) => c,
        Err(e) => panic!("test config does not parse: {e}"),
    }
}

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn load_ok(name: &str) -> playbook::Playbook {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("playbooks")
        .join(name);
    match playbook::load(&path, Some(&config())) {
        Ok(p) => p,
        Err(d) => panic!("{name} does not validate:\n{d}"),
    }
}

#[test]
fn every_shipped_playbook_is_valid_with_and_without_config() {
    let files = shipped();
    assert!(
        files.len() >= 5,
        "expected the five shipped playbooks, found {files:?}"
    );
    let cfg = config();
    for file in &files {
        for config in [None, Some(&cfg)] {
            match playbook::load(file, config) {
                Ok(p) => {
                    let stem = file
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default();
                    assert_eq!(p.name, stem, "playbook name should match its file name");
                    assert_eq!(p.channel, "sample");
                    assert_eq!(p.sha256.len(), 64);
                }
                Err(d) => panic!("{} does not validate:\n{d}", file.display()),
            }
        }
    }
    let all = playbook::check_files(
        &[Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks")],
        Some(&cfg),
    );
    assert!(
        all.is_empty(),
        "check_files on playbooks/ reported: {all:?}"
    );
}

#[test]
fn order_lookup_is_a_read_only_lookup_with_evidence() {
    let p = load_ok("order-lookup.yaml");
    assert_eq!(p.mode, Mode::ReadOnly);
    assert_eq!(p.inputs.len(), 1);
    assert_eq!(p.inputs[0].name, "order_id");
    let fields: Vec<(&str, bool)> = p
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Extract {
                field, required, ..
            } => Some((field.as_str(), *required)),
            _ => None,
        })
        .collect();
    assert_eq!(
        fields,
        vec![("status", true), ("total", true), ("tracking_no", false)]
    );
    assert!(p.steps.iter().any(|s| matches!(
        &s.action,
        Action::Screenshot { name, target: ShotTarget::FullPage, .. } if name == "order-page"
    )));
    assert_eq!(p.steps[0].name, "open order");
    assert_eq!(p.steps[1].name, "wait_for 2");
    assert!(p
        .steps
        .iter()
        .any(|s| s.timeout == Some(std::time::Duration::from_secs(10))));
    let ok: BTreeMap<String, String> = [("order_id".to_owned(), "SO-100042".to_owned())].into();
    assert_eq!(p.bind_inputs(&ok).map(|i| i.len()), Ok(1));
}

#[test]
fn refund_draft_masks_the_pin_and_submits_once() {
    let p = load_ok("refund-draft.yaml");
    assert_eq!(p.mode, Mode::Submit);
    assert_eq!(
        p.secret_inputs().collect::<Vec<_>>(),
        vec!["supervisor_pin"]
    );
    let amount = p.inputs.iter().find(|i| i.name == "amount").map(|i| i.kind);
    assert_eq!(amount, Some(InputKind::Number));
    let submits: Vec<_> = p
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Submit { control, expect } => Some((
                control.display(),
                expect.method.clone(),
                expect.url.source.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        submits,
        vec![(
            "#submit-refund".to_owned(),
            "POST".to_owned(),
            "/orders/{{order_id}}/refund".to_owned()
        )]
    );
    let pin_fill = p.steps.iter().find_map(|s| match &s.action {
        Action::Fill {
            value: ValueSource::Template(t),
            secret,
            ..
        } if t.source.contains("supervisor_pin") => Some(*secret),
        _ => None,
    });
    assert_eq!(pin_fill, Some(true));
    let masked = p.steps.iter().any(|s| matches!(
        &s.action,
        Action::Screenshot { name, mask, .. } if name == "refund-form" && mask == &vec![Locator::css("#supervisor-pin")]
    ));
    assert!(
        masked,
        "the refund-form screenshot must mask the supervisor PIN"
    );
}

#[test]
fn login_takes_credentials_from_the_environment_only() {
    let p = load_ok("login.yaml");
    assert_eq!(p.mode, Mode::Login);
    let envs: Vec<(String, bool)> = p
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Fill {
                value: ValueSource::Env(v),
                secret,
                ..
            } => Some((v.clone(), *secret)),
            Action::Fill { .. } => panic!("login fill not from env"),
            _ => None,
        })
        .collect();
    assert_eq!(
        envs,
        vec![
            ("SAMPLE_USER".to_owned(), true),
            ("SAMPLE_PASSWORD".to_owned(), true)
        ]
    );
}

/// A valid read-only playbook; each case below breaks one thing in it.
const BASE: &str = r##"name: t
version: "1"
description: test
channel: sample
mode: read_only
inputs:
  order_id: { type: string, pattern: '^SO-\d{6}$' }
steps:
  - goto: /orders/{{order_id}}
  - extract: { field: status, selector: "#order-status" }
  - screenshot: { name: page }
"##;

struct Case {
    name: &'static str,
    yaml: String,
    with_config: bool,
    line: usize,
    column: usize,
    message: &'static str,
    hint: Option<&'static str>,
}

fn case(
    name: &'static str,
    yaml: impl Into<String>,
    line: usize,
    column: usize,
    message: &'static str,
) -> Case {
    Case {
        name,
        yaml: yaml.into(),
        with_config: false,
        line,
        column,
        message,
        hint: None,
    }
}

fn diags(yaml: &str, with_config: bool) -> Vec<Diagnostic> {
    let cfg = config();
    match playbook::parse(
        Path::new("case.yaml"),
        yaml.as_bytes(),
        with_config.then_some(&cfg),
    ) {
        Ok(_) => Vec::new(),
        Err(d) => d.0,
    }
}

fn cases() -> Vec<Case> {
    let b = BASE;
    vec![
        case("bad indentation", b.replace("version: \"1\"", "  version: \"1\""), 2, 10, "invalid YAML: mapping values are not allowed"),
        case("tab in indentation", b.replace("  - extract", "\t- extract"), 10, 1, "tab character in indentation"),
        Case { hint: Some("valid keys here: name, version"), ..case("unknown top-level key", format!("{b}colour: blue\n"), 12, 1, "unknown top-level key `colour`") },
        Case {
            hint: Some("did you mean `fill`?"),
            ..case("unknown step kind fil", b.replace("  - screenshot: { name: page }", "  - fil: { selector: \"#a\", value: x }"), 11, 5, "unknown step key `fil`")
        },
        Case { hint: Some("did you mean `selector`?"), ..case("unknown field in extract", b.replace("selector: \"#order-status\"", "selectr: \"#order-status\""), 10, 31, "unknown key `selectr`") },
        case("two kinds in one step", b.replace("  - screenshot: { name: page }", "  - screenshot: { name: page }\n    click: \"#x\""), 11, 5, "step has 2 kinds (click, screenshot)"),
        case("step with no kind", b.replace("  - screenshot: { name: page }", "  - name: nothing"), 11, 5, "step has no kind"),
        case("missing name", b.replace("name: t\n", ""), 1, 1, "missing required key `name`"),
        Case { hint: Some("did you mean `read_only`?"), ..case("bad mode", b.replace("mode: read_only", "mode: readonly"), 5, 7, "unknown mode `readonly`") },
        case("undeclared input in goto", b.replace("{{order_id}}", "{{order}}"), 9, 11, "template names undeclared input `order`"),
        case("unclosed template", b.replace("{{order_id}}", "{{order_id"), 9, 11, "malformed template"),
        Case { with_config: true, hint: Some("allowed origins: http://127.0.0.1:7878"), ..case("off-origin absolute url", b.replace("/orders/{{order_id}}", "https://evil.example/orders/{{order_id}}"), 9, 11, "outside the allowed origins of channel `sample`") },
        case("fill in read_only", b.replace("  - screenshot: { name: page }", "  - fill: { selector: \"#a\", value: x }\n  - screenshot: { name: page }"), 11, 11, "`fill` steps are not allowed in a read_only playbook"),
        case("submit in read_only", b.replace("  - screenshot: { name: page }", "  - submit: { control: \"#go\", expect: { method: POST, url: /x } }"), 11, 13, "`submit` steps are not allowed in a read_only playbook"),
        case("invalid regex", b.replace("'^SO-\\d{6}$'", "'^SO-(\\d{6}$'"), 7, 38, "invalid regex pattern for input `order_id`: unclosed group"),
        Case { hint: Some("\"10s\""), ..case("invalid timeout", b.replace("  - screenshot: { name: page }", "  - screenshot: { name: page }\n    timeout: 10 sec"), 12, 14, "invalid timeout `10 sec`") },
        case("duplicate screenshot name", format!("{b}  - screenshot: page\n"), 12, 17, "screenshot name `page` is already used at line 11"),
        case("assert on unknown field", format!("{b}  - assert: {{ field: total, equals: \"1\" }}\n"), 12, 22, "assert on field `total`, which no earlier step extracts"),
        case("assert before extract", b.replace("  - extract:", "  - assert: { field: status, equals: paid }\n  - extract:"), 10, 22, "assert on field `status`, which no earlier step extracts"),
        Case { with_config: true, hint: Some("did you mean `sample`?"), ..case("unknown channel", b.replace("channel: sample", "channel: sampel"), 4, 10, "unknown channel `sampel`") },
        Case { with_config: true, ..case("mode not permitted by channel", b.replace("channel: sample", "channel: lookups-only").replace("mode: read_only", "mode: submit").replace("  - screenshot: { name: page }", "  - submit: { control: \"#go\", expect: { method: POST, url: /x } }"), 5, 7, "mode `submit` is not permitted by channel `lookups-only`") },
        case("upload of a non-file input", b.replace("mode: read_only", "mode: draft").replace("  - screenshot: { name: page }", "  - upload: { selector: \"#f\", input: order_id }\n  - submit: { control: \"#go\", expect: { method: POST, url: /x } }"), 11, 38, "upload input `order_id` is not of type file"),
        case("draft without submit", b.replace("mode: read_only", "mode: draft"), 9, 3, "draft playbook has no submit step"),
        case("submit playbook with two submits", b.replace("mode: read_only", "mode: submit").replace("  - screenshot: { name: page }", "  - submit: { control: \"#a\", expect: { method: POST, url: /x } }\n  - submit: { control: \"#b\", expect: { method: POST, url: /y } }"), 12, 5, "more than one submit step"),
        case("login fill not from env", b.replace("mode: read_only", "mode: login").replace("  - screenshot: { name: page }", "  - fill: { selector: \"#password\", value: hunter2 }"), 11, 43, "login playbook `fill` values must come from `env`"),
        case("empty steps", b.split("  - goto").next().unwrap_or_default().replace("steps:\n", "steps: []\n"), 8, 8, "playbook has no steps"),
        case("bad input type", b.replace("type: string", "type: text"), 7, 21, "unknown input type `text`"),
        case("duplicate extract field", b.replace("  - screenshot: { name: page }", "  - extract: { field: status, selector: \"#other\" }"), 11, 23, "field `status` is already extracted at line 10"),
        case("unquoted template value", b.replace("  - screenshot: { name: page }", "  - wait_for: { text: {{order_id}} }"), 11, 23, "expected"),
        case("secret input in url", b.replace("pattern: '^SO-\\d{6}$'", "secret: true"), 9, 11, "secret input `order_id` is used in a URL"),
        case("input in host", b.replace("/orders/{{order_id}}", "https://{{order_id}}.example.com/"), 9, 11, "may not appear in the scheme or host"),
        case("duplicate key", b.replace("mode: read_only", "mode: read_only\nmode: draft"), 6, 1, "duplicate key `mode`"),
        case("not a mapping", "- just\n- a list\n", 1, 1, "expected"),
        case("wait_for with two conditions", b.replace("  - screenshot: { name: page }", "  - wait_for: { selector: \"#a\", text: b }"), 11, 15, "more than one condition"),
    ]
}

#[test]
fn each_malformed_playbook_is_reported_at_its_line_and_column() {
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 18);
    for c in &all {
        let found = diags(&c.yaml, c.with_config);
        let hit = found.iter().find(|d| d.message.contains(c.message));
        match hit {
            None => failures.push(format!(
                "[{}] no diagnostic containing {:?}; got:\n{}",
                c.name,
                c.message,
                render(&found)
            )),
            Some(d) => {
                if (d.line, d.column) != (c.line, c.column) {
                    failures.push(format!(
                        "[{}] expected {}:{}, got {}",
                        c.name, c.line, c.column, d
                    ));
                }
                if let Some(h) = c.hint {
                    if !d.hint.as_deref().unwrap_or_default().contains(h) {
                        failures.push(format!("[{}] hint should contain {h:?}: {d}", c.name));
                    }
                }
                if d.file != Path::new("case.yaml") {
                    failures.push(format!("[{}] wrong file in {d}", c.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn render(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_file_with_several_problems_reports_all_of_them() {
    let yaml = r##"name: Bad Name
version: "1"
description: several problems at once
channel: sample
mode: read_only
inputs:
  photo: { type: file }
steps:
  - goto: /orders/{{order}}
  - fill: { selector: "#a", value: x }
  - screenshot: { name: page }
    timeout: soon
  - screenshot: page
  - assert: { field: nothing, equals: x }
"##;
    let found = diags(yaml, false);
    let expected = [
        (1, 7, "playbook name `Bad Name`"),
        (9, 11, "undeclared input `order`"),
        (10, 11, "`fill` steps are not allowed"),
        (12, 14, "invalid timeout `soon`"),
        (13, 17, "screenshot name `page` is already used"),
        (14, 22, "assert on field `nothing`"),
    ];
    for (line, column, msg) in expected {
        assert!(
            found
                .iter()
                .any(|d| d.line == line && d.column == column && d.message.contains(msg)),
            "missing {line}:{column} {msg:?} in:\n{}",
            render(&found)
        );
    }
    assert_eq!(
        found.len(),
        expected.len(),
        "unexpected extra diagnostics:\n{}",
        render(&found)
    );
}

#[test]
fn diagnostics_display_like_a_compiler() {
    let found = diags(
        &BASE.replace(
            "  - screenshot: { name: page }",
            "  - fil: { selector: \"#a\" }",
        ),
        false,
    );
    let text = playbook::Diagnostics(found).to_string();
    assert_eq!(
        text,
        "case.yaml:11:5: error: unknown step key `fil` (field steps[2].fil)\n  hint: did you mean `fill`? valid step keys: name, timeout, goto, wait_for, extract, assert, click, screenshot, fill, select, check, uncheck, upload, submit"
    );
}

#[test]
fn fixtures_in_tests_data_are_all_reported_by_check_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad-playbooks");
    let found = playbook::check_files(std::slice::from_ref(&dir), Some(&config()));
    let files: std::collections::BTreeSet<String> = found
        .iter()
        .filter_map(|d| {
            d.file
                .file_name()
                .and_then(|f| f.to_str())
                .map(str::to_owned)
        })
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| {
            e.ok()
                .and_then(|e| e.file_name().to_str().map(str::to_owned))
        })
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    assert!(!on_disk.is_empty());
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        on_disk,
        "every fixture must produce a diagnostic"
    );
}

#[test]
fn check_files_reports_unreadable_files_non_utf8_and_duplicate_names() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        if let Err(e) = std::fs::write(&p, bytes) {
            panic!("write {name}: {e}");
        }
        p
    };
    let a = write("a.yaml", BASE.as_bytes());
    let b = write("b.yaml", BASE.as_bytes());
    let latin1 = write("c.yaml", b"name: caf\xe9\n");
    let missing = dir.path().join("missing.yaml");
    let found = playbook::check_files(&[a, b.clone(), latin1.clone(), missing.clone()], None);
    assert!(
        found
            .iter()
            .any(|d| d.file == b && d.message.contains("playbook name `t` is also used by")),
        "{}",
        render(&found)
    );
    assert!(
        found.iter().any(|d| d.file == latin1
            && d.line == 1
            && d.column == 10
            && d.message.contains("not valid UTF-8")),
        "{}",
        render(&found)
    );
    assert!(
        found
            .iter()
            .any(|d| d.file == missing && d.message.starts_with("cannot read file")),
        "{}",
        render(&found)
    );
    assert_eq!(found.len(), 3, "{}", render(&found));
}

#[test]
fn bind_inputs_checks_presence_types_and_patterns() {
    let yaml = r##"name: binder
version: 2
description: inputs of every type
channel: sample
mode: read_only
inputs:
  order_id: { type: string, pattern: '^SO-\d{6}$' }
  amount: { type: number }
  day: { type: date, required: false }
  pin: { type: string, secret: true, pattern: '\d{4}', required: false }
  choice: { type: string, pattern: 'a|ab', required: false }
steps:
  - goto: /orders/{{order_id}}
"##;
    let p = match playbook::parse(Path::new("binder.yaml"), yaml.as_bytes(), None) {
        Ok(p) => p,
        Err(d) => panic!("{d}"),
    };
    assert_eq!(p.version, "2");
    let inputs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let good = p.bind_inputs(&inputs(&[
        ("order_id", "SO-100001"),
        ("amount", "12.5"),
        ("day", "2024-02-29"),
    ]));
    assert_eq!(
        good.map(|b| b.keys().cloned().collect::<Vec<_>>()),
        Ok(vec![
            "amount".to_owned(),
            "day".to_owned(),
            "order_id".to_owned()
        ])
    );

    let errs = p
        .bind_inputs(&inputs(&[
            ("order_id", "SO-1"),
            ("amount", "NaN"),
            ("day", "2023-02-29"),
            ("pin", "12345"),
            ("choice", "abc"),
            ("extra", "x"),
        ]))
        .err()
        .unwrap_or_default();
    let joined = errs.join("\n");
    assert!(
        errs.contains(&r##"input order_id: "SO-1" does not match pattern ^SO-\d{6}$"##.to_owned()),
        "{joined}"
    );
    assert!(
        joined.contains("input amount: \"NaN\" is not a number"),
        "{joined}"
    );
    assert!(
        joined.contains("input day: \"2023-02-29\" is not a date"),
        "{joined}"
    );
    assert!(
        joined.contains("input pin: the value does not match pattern"),
        "{joined}"
    );
    assert!(
        !joined.contains("12345"),
        "secret values must never appear in messages: {joined}"
    );
    assert!(
        joined.contains("input choice: \"abc\" does not match pattern a|ab"),
        "{joined}"
    );
    assert!(joined.contains("unknown input `extra`"), "{joined}");
    assert_eq!(errs.len(), 6, "{joined}");

    let missing = p
        .bind_inputs(&inputs(&[("amount", "1")]))
        .err()
        .unwrap_or_default();
    assert_eq!(missing, vec!["input order_id is required".to_owned()]);
    let bad_day = p.bind_inputs(&inputs(&[
        ("order_id", "SO-100001"),
        ("amount", "1"),
        ("day", "2024-2-1"),
    ]));
    assert!(bad_day.is_err());
    let inf = p.bind_inputs(&inputs(&[("order_id", "SO-100001"), ("amount", "1e999")]));
    assert!(inf.is_err(), "infinite numbers are not amounts");
}

#[test]
fn garbage_never_panics() {
    let mut inputs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"~".to_vec(),
        b"[".to_vec(),
        b"{{{{".to_vec(),
        b"steps: 3".to_vec(),
        b"steps: [3, [4], {goto: [1]}]".to_vec(),
        b"inputs: [a]".to_vec(),
        b"inputs: {a: 1}".to_vec(),
        b"a: &a [*a]".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        b"name: x\n---\nname: y\n".to_vec(),
        b"steps:\n  - goto: '{{'\n  - goto: '}}{{ }}'\n  - click: ~\n  - screenshot: [1]\n"
            .to_vec(),
        b"? [a]\n: b\n".to_vec(),
    ];
    // Deep nesting must hit the parser's recursion limit, not overflow the stack.
    inputs.push(format!("steps: {}", "[".repeat(100_000)).into_bytes());
    inputs.push(format!("steps:\n{}", "- ".repeat(50_000)).into_bytes());
    inputs.push(format!("steps:\n  - click: {}", "[".repeat(100_000)).into_bytes());
    inputs.push(
        format!(
            "steps:\n  - screenshot: {{ name: a, mask: {} }}",
            "[".repeat(5_000)
        )
        .into_bytes(),
    );
    inputs.push(format!("inputs: {}", "{a: ".repeat(5_000)).into_bytes());
    inputs.push(format!("colour: {}", "- ".repeat(5_000)).into_bytes());
    // Every prefix of a valid playbook, cut at every byte.
    for cut in 0..BASE.len() {
        inputs.push(BASE.as_bytes()[..cut].to_vec());
    }
    let cfg = config();
    for bytes in inputs {
        let r = std::panic::catch_unwind(|| {
            playbook::parse(Path::new("g.yaml"), &bytes, Some(&cfg)).map(|_| ())
        });
        assert!(
            r.is_ok(),
            "panicked on {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_yields_ok_or_located_diagnostics(s in "[ -~\\n\\t{}:\\-\\[\\]]{0,200}") {
            let cfg = config();
            if let Err(d) = playbook::parse(Path::new("p.yaml"), s.as_bytes(), Some(&cfg)) {
                prop_assert!(!d.0.is_empty());
                for diag in &d.0 {
                    prop_assert!(diag.line >= 1 && diag.column >= 1, "{}", diag);
                    prop_assert!(!diag.message.is_empty());
                }
            }
        }

        #[test]
        fn url_inputs_never_change_host_or_depth(value in "\\PC{1,40}") {
            prop_assume!(value != "." && value != "..");
            let t = match playbook::Template::parse("/orders/{{id}}/refund") { Ok(t) => t, Err(e) => panic!("{e}") };
            let base = match url::Url::parse("http://127.0.0.1:7878/") { Ok(u) => u, Err(e) => panic!("{e}") };
            let inputs: BTreeMap<String, String> = [("id".to_owned(), value.clone())].into();
            let url = match t.render_url(&base, &inputs) { Ok(u) => u, Err(e) => panic!("{value:?}: {e}") };
            prop_assert_eq!(url.host_str(), Some("127.0.0.1"));
            prop_assert_eq!(url.path_segments().map(|s| s.count()), Some(3));
            prop_assert!(url.path().starts_with("/orders/"));
            prop_assert!(url.path().ends_with("/refund"));
            prop_assert_eq!(url.query(), None);
            prop_assert_eq!(url.fragment(), None);
        }
    }
}
