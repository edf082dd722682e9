//! Playbook parsing and `clerk check` diagnostics, at the library level: the shipped
//! playbooks are valid, and each kind of mistake an author makes is reported at the right
//! line and column with a message that names the problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clerk::channel::Config;
use clerk::playbook::{
    self, Action, AssertCheck, AssertSubject, Diagnostic, ExtractSource, InputKind, Locator,
    LocatorKind, Mode, ShotTarget, ValueSource, WaitCondition,
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

/// A draft for a single-page app using every locator form, URL waits, templates in
/// selectors and texts, and `submit.expect.ignore`.
const SPA: &str = r##"name: spa-forms
version: "1"
description: every locator form
channel: sample
mode: draft
inputs:
  order_id: { type: string }
  amount: { type: number }
  reason: { type: string }
steps:
  - goto: "/app/#/orders/{{order_id}}"
  - wait_for: { url: "/app/#/orders/{{order_id}}" }
  - wait_for: { url_matches: '#/orders/{{order_id}}(/logistics)?$' }
  - wait_for: "[data-order-id=\"{{order_id}}\"] .ref"
  - wait_for: { element: { testid: order-status } }
  - extract: { field: status, testid: order-status }
  - extract: { field: total, role: cell, name: "Total", exact: false, within: { selector: "section[data-order-id=\"{{order_id}}\"]" }, nth: -1 }
  - extract: { field: ref, selector: ".ref", from: attribute, attribute: "data-{{reason}}" }
  - assert: { text: "Order {{order_id}}", matches: "^Order {{order_id}}$" }
  - click: { role: link, name: Logistics }
  - click: { text: "Refund", exact: false, nth: 0 }
  - fill: { label: "Refund amount", value: "{{amount}}" }
  - select: { role: combobox, name: Reason, value: "{{reason}}" }
  - check: { role: switch, name: "Notify customer" }
  - uncheck: { testid: "keep-{{order_id}}", within: "#o-{{order_id}}" }
  - screenshot: { name: form, element: { role: form }, mask: ["#pin", { label: PIN, exact: false }] }
  - submit:
      control: { role: button, name: "Submit refund request" }
      expect: { method: POST, url: "/api/orders/{{order_id}}/refunds", ignore: [requestId, clientTs] }
"##;

#[test]
fn every_locator_form_parses_and_renders_for_the_engine() {
    let p = match playbook::parse(Path::new("spa.yaml"), SPA.as_bytes(), Some(&config())) {
        Ok(p) => p,
        Err(d) => panic!("{d}"),
    };
    let inputs: BTreeMap<String, String> = [
        ("order_id".to_owned(), "SO-1\"] , *".to_owned()),
        ("amount".to_owned(), "12.50".to_owned()),
        ("reason".to_owned(), "damaged".to_owned()),
    ]
    .into();
    let render = |l: &Locator| match l.render(&inputs, "data-qa") {
        Ok(v) => v,
        Err(e) => panic!("{}: {e}", l.display()),
    };
    let mut seen = Vec::new();
    let base = url::Url::parse("http://127.0.0.1:7878/").unwrap();
    for s in &p.steps {
        let got = match &s.action {
            Action::WaitFor {
                condition: WaitCondition::Url(u),
            } => {
                let re = u.regex(&base, &inputs).unwrap();
                serde_json::json!({ "url": u.source(), "matches_route": re.is_match("http://127.0.0.1:7878/app/#/orders/SO-1%22%5D%20%2C%20%2A"), "matches_other": re.is_match("http://127.0.0.1:7878/app/#/orders/SO-2") })
            }
            Action::WaitFor {
                condition: WaitCondition::Visible(l),
            } => render(l),
            Action::Extract {
                locator,
                source: ExtractSource::Attribute(a),
                ..
            } => {
                serde_json::json!({ "loc": render(locator), "attribute": a.render_attribute_name(&inputs).unwrap() })
            }
            Action::Extract { locator, .. } => render(locator),
            Action::Assert {
                subject: AssertSubject::Element(l),
                check: AssertCheck::Matches(t),
            } => {
                let re = t.render_regex(&inputs).unwrap();
                serde_json::json!({ "loc": render(l), "ok": re.is_match("Order SO-1\"] , *"), "other": re.is_match("Order SO-1xxxx") })
            }
            Action::Click { locator } | Action::Check { locator, .. } => render(locator),
            Action::Fill { locator, .. } | Action::Select { locator, .. } => render(locator),
            Action::Screenshot {
                target: ShotTarget::Element(e),
                mask,
                ..
            } => {
                serde_json::json!({ "element": render(e), "mask": mask.iter().map(render).collect::<Vec<_>>() })
            }
            Action::Submit { control, expect } => {
                serde_json::json!({ "control": render(control), "ignore": expect.ignore })
            }
            Action::Goto { .. } => continue,
            other => panic!("unexpected step {other:?}"),
        };
        seen.push(got);
    }
    let esc = r#"SO-1\"\]\ \,\ \*"#;
    let expected = serde_json::json!([
        { "url": "/app/#/orders/{{order_id}}", "matches_route": true, "matches_other": false },
        { "url": "#/orders/{{order_id}}(/logistics)?$", "matches_route": true, "matches_other": false },
        { "css": format!("[data-order-id=\"{esc}\"] .ref") },
        { "testid": "order-status", "attr": "data-qa" },
        { "testid": "order-status", "attr": "data-qa" },
        { "role": "cell", "name": "Total", "exact": false, "nth": -1,
          "within": { "css": format!("section[data-order-id=\"{esc}\"]") } },
        { "loc": { "css": ".ref" }, "attribute": "data-damaged" },
        { "loc": { "text": "Order SO-1\"] , *", "exact": true }, "ok": true, "other": false },
        { "role": "link", "name": "Logistics", "exact": true },
        { "text": "Refund", "exact": false, "nth": 0 },
        { "label": "Refund amount", "exact": true },
        { "role": "combobox", "name": "Reason", "exact": true },
        { "role": "switch", "name": "Notify customer", "exact": true },
        { "testid": "keep-SO-1\"] , *", "attr": "data-qa", "within": { "css": format!("#o-{esc}") } },
        { "element": { "role": "form", "exact": true },
          "mask": [{ "css": "#pin" }, { "label": "PIN", "exact": false }] },
        { "control": { "role": "button", "name": "Submit refund request", "exact": true },
          "ignore": ["requestId", "clientTs"] },
    ]);
    assert_eq!(serde_json::Value::Array(seen), expected);
    let displays: Vec<String> = p
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Extract { locator, .. }
            | Action::Click { locator }
            | Action::Check { locator, .. } => Some(locator.display()),
            _ => None,
        })
        .collect();
    assert_eq!(
        displays,
        vec![
            "testid \"order-status\"".to_owned(),
            "section[data-order-id=\"{{order_id}}\"] >> role=cell[name=\"Total\"i] >> nth=-1"
                .to_owned(),
            ".ref".to_owned(),
            "role=link[name=\"Logistics\"]".to_owned(),
            "text \"Refund\"i >> nth=0".to_owned(),
            "role=switch[name=\"Notify customer\"]".to_owned(),
            "#o-{{order_id}} >> testid \"keep-{{order_id}}\"".to_owned(),
        ]
    );
}

#[test]
fn the_old_locator_forms_mean_what_they_meant() {
    let yaml = BASE.replace("mode: read_only", "mode: draft").replace(
        "  - screenshot: { name: page }",
        r##"  - wait_for: "#a"
  - wait_for: { selector: "#b" }
  - click: "#c"
  - click: { selector: "#d" }
  - fill: { selector: "#e", value: x }
  - fill: { label: "Refund amount", value: y }
  - check: { label: Notify }
  - screenshot: { name: page, element: "#f", mask: ["#g"] }
  - submit: { control: "#h", expect: { method: POST, url: /x } }"##,
    );
    let p = match playbook::parse(Path::new("old.yaml"), yaml.as_bytes(), None) {
        Ok(p) => p,
        Err(d) => panic!("{d}"),
    };
    let css = |s: &str| Locator::css(s);
    let label = |s: &str| Locator {
        kind: LocatorKind::Label {
            text: playbook::Template::parse(s).unwrap(),
            exact: true,
        },
        within: None,
        nth: None,
    };
    let found: Vec<Vec<Locator>> = p
        .steps
        .iter()
        .map(|s| match &s.action {
            Action::WaitFor {
                condition: WaitCondition::Visible(l),
            } => vec![l.clone()],
            Action::Extract { locator, .. }
            | Action::Click { locator }
            | Action::Check { locator, .. } => vec![locator.clone()],
            Action::Fill { locator, .. } => vec![locator.clone()],
            Action::Screenshot {
                target: ShotTarget::Element(e),
                mask,
                ..
            } => std::iter::once(e.clone())
                .chain(mask.iter().cloned())
                .collect(),
            Action::Submit { control, expect } => {
                assert!(expect.ignore.is_empty());
                vec![control.clone()]
            }
            _ => vec![],
        })
        .collect();
    assert_eq!(
        found,
        vec![
            vec![],
            vec![css("#order-status")],
            vec![css("#a")],
            vec![css("#b")],
            vec![css("#c")],
            vec![css("#d")],
            vec![css("#e")],
            vec![label("Refund amount")],
            vec![label("Notify")],
            vec![css("#f"), css("#g")],
            vec![css("#h")],
        ]
    );
}

/// The README's playbook example (with a mode that allows all its steps) is a valid
/// playbook, so the documentation cannot drift from the format.
#[test]
fn the_readme_playbook_example_validates() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start =
        readme.find("### Playbooks\n\n```yaml\n").unwrap() + "### Playbooks\n\n```yaml\n".len();
    let len = readme[start..].find("```").unwrap();
    let yaml = readme[start..start + len].replace("mode: read_only ", "mode: submit ");
    let yaml = yaml.replace(
        "  order_id: {",
        "  amount: { type: number }\n  reason: { type: string }\n  order_id: {",
    );
    match playbook::parse(Path::new("README.md"), yaml.as_bytes(), Some(&config())) {
        Ok(p) => assert_eq!(p.steps.len(), 12),
        Err(d) => panic!("README example:\n{d}\n{yaml}"),
    }
}

#[test]
fn within_scopes_a_few_levels_deep_and_no_deeper() {
    let ok = step(
        r##"  - click: { role: button, within: { text: Refund, within: { selector: "#b", within: "#a" } } }"##,
    );
    let p = match playbook::parse(Path::new("w.yaml"), ok.as_bytes(), None) {
        Ok(p) => p,
        Err(d) => panic!("{d}"),
    };
    let Some(Action::Click { locator }) = p.steps.last().map(|s| &s.action) else {
        panic!("no click");
    };
    assert_eq!(
        locator.display(),
        "#a >> #b >> text \"Refund\" >> role=button"
    );
    let deep = step(&format!(
        "  - click: {}\"#a\"{}",
        "{ role: button, within: ".repeat(20),
        " }".repeat(20)
    ));
    let found = diags(&deep, false);
    assert_eq!(found.len(), 1, "{}", render(&found));
    assert_eq!(found[0].line, 11, "{}", found[0]);
    assert!(
        found[0]
            .message
            .contains("locators nested more than 8 deep (through `within:`)"),
        "{}",
        found[0]
    );
    assert!(
        found[0].field.starts_with("steps[2].click.within"),
        "{}",
        found[0]
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
    let all = cases();
    assert!(all.len() >= 18);
    let failures = check_cases(&all);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Each case's diagnostic: present, at its line and column, with its hint, in its file.
fn check_cases(all: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in all {
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
    failures
}

/// `BASE` with its last step replaced by `step` (still read-only).
fn step(step: &str) -> String {
    BASE.replace("  - screenshot: { name: page }", step)
}

/// `BASE` as a draft: `step` then a submit step.
fn draft(step: &str) -> String {
    BASE.replace("mode: read_only", "mode: draft").replace(
        "  - screenshot: { name: page }",
        &format!("{step}\n  - submit: {{ control: \"#go\", expect: {{ method: POST, url: /x }} }}"),
    )
}

/// `BASE` as a draft whose last step is the given submit step.
fn submit_step(submit: &str) -> String {
    BASE.replace("mode: read_only", "mode: draft")
        .replace("  - screenshot: { name: page }", submit)
}

/// `BASE` with its `description:` line replaced.
fn top(line: &str) -> String {
    BASE.replace("description: test", line)
}

/// Locator and template mistakes: each case breaks one thing in `BASE` at line 11 (the
/// `description` at line 3) and must be reported there, once, with the message and hint.
fn locator_cases() -> Vec<Case> {
    vec![
        Case { hint: Some("give exactly one of `selector: CSS`"), ..case("locator without a kind", step("  - click: { nth: 1 }"), 11, 12, "`click` does not say which element: it has none of `selector`, `role`, `label`, `text`, `testid`") },
        Case { hint: Some("to search inside another element use `within:`"), ..case("locator with two kinds", step("  - click: { role: button, selector: \"#a\" }"), 11, 38, "locator has both `role` and `selector`") },
        case("name without role", step("  - click: { label: Amount, name: Total }"), 11, 35, "`name` is only used with `role`"),
        case("exact on a css locator", step("  - click: { selector: \"#a\", exact: false }"), 11, 37, "`exact` is only used with `role`, `label` or `text`"),
        case("exact not a boolean", step("  - click: { text: Next, exact: maybe }"), 11, 33, "`exact` must be true or false, found the string \"maybe\""),
        Case { hint: Some("-1 the last"), ..case("nth not an integer", step("  - click: { text: Next, nth: first }"), 11, 31, "`nth` must be an integer, found the string \"first\"") },
        case("nth a float", step("  - click: { text: Next, nth: 1.5 }"), 11, 31, "`nth` must be an integer, found the number 1.5"),
        case("within not a locator", step("  - click: { role: button, within: 3 }"), 11, 36, "`within` expects a selector string or a locator mapping, found a number"),
        case("within without a kind", step("  - click: { role: button, within: { nth: 0 } }"), 11, 36, "`within` does not say which element"),
        case("within nested error", step("  - click: { role: button, within: { label: Box, within: { role: nav } } }"), 11, 66, "unknown role `nav`"),
        Case { hint: Some("did you mean `button`?"), ..case("unknown role", step("  - click: { role: buton, name: Save }"), 11, 20, "unknown role `buton`") },
        case("empty label", step("  - click: { label: \"\" }"), 11, 21, "`label` is empty"),
        case("wait_for element without a kind", step("  - wait_for: { element: { exact: true } }"), 11, 26, "`element` does not say which element"),
        case("mask item not a locator", step("  - screenshot: { name: page, mask: [\"#pin\", 3] }"), 11, 46, "`mask` expects a selector string or a locator mapping, found a number"),
        case("assert on field and locator", step("  - assert: { field: status, testid: x, equals: paid }"), 11, 13, "`assert` has both `field` and an element locator"),
        case("fill without a locator", draft("  - fill: { value: x }"), 11, 11, "`fill` does not say which element"),
        Case { hint: Some("templates are rendered in selectors"), ..case("template in role", step("  - click: { role: \"{{order_id}}\" }"), 11, 20, "templates are not rendered in `role`") },
        case("template in extract field", step("  - extract: { field: \"{{order_id}}\", selector: \"#x\" }"), 11, 23, "templates are not rendered in `field`"),
        case("template in step name", step("  - name: \"open {{order_id}}\"\n    click: \"#a\""), 11, 11, "templates are not rendered in `name`"),
        case("template in screenshot name", step("  - screenshot: { name: \"shot-{{order_id}}\" }"), 11, 25, "templates are not rendered in `name`"),
        case("template in timeout", step("  - click: \"#a\"\n    timeout: \"{{order_id}}\""), 12, 14, "templates are not rendered in `timeout`"),
        case("template in env", draft("  - fill: { selector: \"#a\", env: \"{{order_id}}\" }"), 11, 34, "templates are not rendered in `env`"),
        case("template in method", submit_step("  - submit: { control: \"#go\", expect: { method: \"{{order_id}}\", url: /x } }"), 11, 49, "templates are not rendered in `method`"),
        case("template in ignore", submit_step("  - submit: { control: \"#go\", expect: { method: POST, url: /x, ignore: [requestId, \"{{order_id}}\"] } }"), 11, 84, "templates are not rendered in `ignore`"),
        case("template in extract from", step("  - extract: { field: x, selector: \"#x\", from: \"{{order_id}}\" }"), 11, 48, "templates are not rendered in `from`"),
        case("template in upload input", draft("  - upload: { selector: \"#f\", input: \"{{order_id}}\" }"), 11, 38, "templates are not rendered in `input`"),
        case("template in description", top("description: \"test {{order_id}}\""), 3, 14, "templates are not rendered in `description`"),
        Case { hint: Some("declare it under `inputs:`; valid inputs: order_id"), ..case("undeclared input in a selector", step("  - wait_for: \"[data-order-id=\\\"{{order}}\\\"] .ref\""), 11, 15, "template names undeclared input `order`") },
        case("undeclared input in wait_for selector", step("  - wait_for: { selector: \"#o-{{order}}\" }"), 11, 27, "template names undeclared input `order`"),
        case("undeclared input in a role name", step("  - click: { role: button, name: \"Refund {{amount}}\" }"), 11, 34, "template names undeclared input `amount`"),
        case("undeclared input in a label", draft("  - fill: { label: \"Amount {{currency}}\", value: \"1\" }"), 11, 20, "template names undeclared input `currency`"),
        case("undeclared input in a text", step("  - click: { text: \"Order {{oid}}\" }"), 11, 20, "template names undeclared input `oid`"),
        case("undeclared input in a testid", step("  - extract: { field: total, testid: \"total-{{oid}}\" }"), 11, 38, "template names undeclared input `oid`"),
        case("undeclared input in within", step("  - click: { role: button, within: \"#o-{{oid}}\" }"), 11, 36, "template names undeclared input `oid`"),
        case("undeclared input in a mask", step("  - screenshot: { name: page, mask: [{ testid: \"pin-{{oid}}\" }] }"), 11, 48, "template names undeclared input `oid`"),
        case("undeclared input in wait_for url", step("  - wait_for: { url: \"/app/#/orders/{{id}}\" }"), 11, 22, "template names undeclared input `id`"),
        case("undeclared input in url_matches", step("  - wait_for: { url_matches: \"#/orders/{{id}}$\" }"), 11, 30, "template names undeclared input `id`"),
        case("undeclared input in assert matches", step("  - assert: { field: status, matches: \"^{{state}}$\" }"), 11, 39, "template names undeclared input `state`"),
        case("undeclared input in assert equals", step("  - assert: { selector: \"#s\", equals: \"{{state}}\" }"), 11, 39, "template names undeclared input `state`"),
        case("undeclared input in extract attribute", step("  - extract: { field: x, selector: a, from: attribute, attribute: \"data-{{what}}\" }"), 11, 67, "template names undeclared input `what`"),
        case("undeclared input in submit control", submit_step("  - submit: { control: { role: button, name: \"Refund {{oid}}\" }, expect: { method: POST, url: /x } }"), 11, 46, "template names undeclared input `oid`"),
        case("invalid url_matches regex", step("  - wait_for: { url_matches: \"#/orders/(\" }"), 11, 30, "invalid regex in `url_matches`: unclosed group"),
        case("invalid assert regex with a template", step("  - assert: { field: status, matches: \"({{order_id}}\" }"), 11, 39, "invalid regex in `matches`: unclosed group"),
        case("invalid attribute name", step("  - extract: { field: x, selector: a, attribute: \"data id\" }"), 11, 50, "`data id` is not a valid attribute name"),
        case("attribute template that cannot be a name", step("  - extract: { field: x, selector: a, attribute: \"{{order_id}} x\" }"), 11, 50, "`{{order_id}} x` is not a valid attribute name"),
        Case { hint: Some("`url: GLOB`"), ..case("wait_for url and text", step("  - wait_for: { url: \"/x\", text: y }"), 11, 15, "`wait_for` has more than one condition") },
        case("submit without control", submit_step("  - submit: { expect: { method: POST, url: /x } }"), 11, 13, "missing `control` (the submit button's locator)"),
        case(
            "template in nth",
            step("  - click: { text: Next, nth: \"{{order_id}}\" }"),
            11,
            31,
            "templates are not rendered in `nth`",
        ),
        case(
            "template in input type",
            BASE.replace("type: string", "type: \"{{order_id}}\""),
            7,
            21,
            "templates are not rendered in `type`",
        ),
        case(
            "secret input in a URL wait",
            BASE.replace("pattern: '^SO-\\d{6}$'", "secret: true")
                .replace("  - goto: /orders/{{order_id}}", "  - goto: /orders")
                .replace(
                    "  - screenshot: { name: page }",
                    "  - wait_for: { url_matches: \"/orders/{{order_id}}$\" }",
                ),
            11,
            30,
            "secret input `order_id` is used in a URL pattern",
        ),
    ]
}

#[test]
fn each_locator_and_template_mistake_is_reported_once_at_its_line_and_column() {
    let all = locator_cases();
    assert!(all.len() >= 40);
    let mut failures = check_cases(&all);
    for c in &all {
        let found = diags(&c.yaml, c.with_config);
        if found.len() != 1 {
            failures.push(format!(
                "[{}] expected exactly one diagnostic, got:\n{}",
                c.name,
                render(&found)
            ));
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
fn the_spa_fixtures_report_every_locator_and_template_mistake_in_order() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad-playbooks");
    let files = [
        dir.join("spa-locators.yaml"),
        dir.join("templates-not-rendered.yaml"),
    ];
    let found = playbook::check_files(&files, Some(&config()));
    let got: Vec<(String, usize, usize, String)> = found
        .iter()
        .map(|d| {
            (
                d.file
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or_default()
                    .to_owned(),
                d.line,
                d.column,
                format!("{} (field {})", d.message, d.field),
            )
        })
        .collect();
    let want: Vec<(&str, usize, usize, &str)> = vec![
        ("spa-locators.yaml", 11, 22, "template names undeclared input `order` (field steps[1].wait_for.url)"),
        ("spa-locators.yaml", 12, 34, "unknown role `buton` (field steps[2].wait_for.element.role)"),
        ("spa-locators.yaml", 13, 57, "locator has both `testid` and `role` (field steps[3].extract.role)"),
        ("spa-locators.yaml", 14, 52, "`name` is only used with `role` (field steps[4].extract.name)"),
        ("spa-locators.yaml", 15, 31, "`nth` must be an integer, found the string \"last\" (field steps[5].click.nth)"),
        ("spa-locators.yaml", 16, 40, "`exact` is only used with `role`, `label` or `text` (field steps[6].click.exact)"),
        ("spa-locators.yaml", 17, 36, "`within` expects a selector string or a locator mapping, found a number (field steps[7].click.within)"),
        ("spa-locators.yaml", 18, 39, "`mask` does not say which element: it has none of `selector`, `role`, `label`, `text`, `testid` (field steps[8].screenshot.mask[0])"),
        ("templates-not-rendered.yaml", 10, 11, "templates are not rendered in `name` (field steps[0].name)"),
        ("templates-not-rendered.yaml", 12, 15, "template names undeclared input `order` (field steps[1].wait_for)"),
        ("templates-not-rendered.yaml", 13, 23, "templates are not rendered in `field` (field steps[2].extract.field)"),
        ("templates-not-rendered.yaml", 14, 35, "templates are not rendered in `env` (field steps[3].fill.env)"),
        ("templates-not-rendered.yaml", 15, 25, "templates are not rendered in `name` (field steps[4].screenshot.name)"),
        ("templates-not-rendered.yaml", 17, 38, "template names undeclared input `amount` (field steps[5].submit.control.name)"),
        ("templates-not-rendered.yaml", 18, 25, "templates are not rendered in `method` (field steps[5].submit.expect.method)"),
        ("templates-not-rendered.yaml", 18, 91, "templates are not rendered in `ignore` (field steps[5].submit.expect.ignore[0])"),
    ];
    let want: Vec<(String, usize, usize, String)> = want
        .into_iter()
        .map(|(f, l, c, m)| (f.to_owned(), l, c, m.to_owned()))
        .collect();
    assert_eq!(got, want, "{}", render(&found));
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
    // Locators nest through `within:`; a hostile depth must not overflow the stack either.
    inputs.push(format!("steps:\n  - click: {}", "{within: ".repeat(100_000)).into_bytes());
    inputs.push(
        format!(
            "steps:\n  - click: {}\"#a\"{}",
            "{role: button, within: ".repeat(300),
            "}".repeat(300)
        )
        .into_bytes(),
    );
    inputs.push(
        format!(
            "steps:\n  - fill: {{ value: x, within: {} }}",
            "{ nth: [".repeat(3_000)
        )
        .into_bytes(),
    );
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

/// A file with mistakes at every level (an unknown top-level key, a bad timeout, an unknown
/// step key, a role without a name, an unknown extract source) reports all five in one
/// pass, each at its own line and column: the steps and the top level are read separately,
/// so one YAML-level mistake no longer hides the rest.
#[test]
fn every_problem_of_a_file_is_reported_in_one_pass() {
    let yaml = r##"name: bad
version: "1"
description: five mistakes
channel: sample
mode: read_only
colour: blue
steps:
  - goto: /orders
    timeout: fast
  - wait_for: { selector: "#x" }
    bogus: 1
  - click: { role: button }
  - extract: { field: a, selector: "#a", from: colour }
  - screenshot: { name: page }
"##;
    let diags = match playbook::parse(Path::new("bad.yaml"), yaml.as_bytes(), Some(&config())) {
        Ok(_) => panic!("five mistakes passed"),
        Err(d) => d.0,
    };
    let got: Vec<(usize, String)> = diags.iter().map(|d| (d.line, d.field.clone())).collect();
    assert_eq!(
        got,
        vec![
            (6, "colour".to_owned()),
            (9, "steps[0].timeout".to_owned()),
            (11, "steps[1].bogus".to_owned()),
            (12, "steps[2].click.role".to_owned()),
            (13, "steps[3].extract.from".to_owned()),
        ],
        "{diags:#?}"
    );
    assert!(
        diags[3].message.contains("without `name`"),
        "{}",
        diags[3].message
    );
    // A role that is one per page needs no name.
    let ok = yaml
        .replace("colour: blue\n", "")
        .replace("    timeout: fast\n", "")
        .replace("    bogus: 1\n", "")
        .replace("role: button", "role: main")
        .replace("from: colour", "from: text");
    if let Err(d) = playbook::parse(Path::new("ok.yaml"), ok.as_bytes(), Some(&config())) {
        panic!("{d}");
    }
}
