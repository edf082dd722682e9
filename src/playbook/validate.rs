//! Validation: raw YAML mirror -> typed [`Playbook`], collecting every problem.
//!
//! Order of work: bytes must be UTF-8; the YAML must deserialize into the raw mirror (a
//! syntax error, an unknown key or a wrongly typed value stops here, with one diagnostic
//! located by serde-saphyr and named by [`Node::path_at`]); then every semantic rule is
//! checked and *all* violations are reported together, so an author fixes a file in one
//! pass instead of one error per `clerk check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{MessageFormatter, UserMessageFormatter};
use sha2::{Digest, Sha256};
use url::Url;

use super::diag::suggestion_hint;
use super::raw::{pos, Node, RawInput, RawPlaybook, RawStep, Spanned, STEP_KINDS, TOP_KEYS};
use super::template::{is_input_name, regex_reason};
use super::*;

mod form;
mod locators;
mod matching;
mod navigation;
mod reads;
mod submit;

const MODES: &[&str] = &["read_only", "draft", "submit", "login"];
const INPUT_TYPES: &[&str] = &["string", "number", "date", "file"];
const READ_ONLY_STEPS: &[&str] = &[
    "goto",
    "wait_for",
    "extract",
    "assert",
    "click",
    "screenshot",
];
const LOGIN_STEPS: &[&str] = &[
    "goto",
    "wait_for",
    "fill",
    "click",
    "submit",
    "extract",
    "assert",
    "screenshot",
];
const WRITE_METHODS: &[&str] = &["POST", "PUT", "PATCH", "DELETE"];
/// Longest per-step timeout accepted: anything longer is a mistake, not a slow page.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Base used to try-render relative URL templates when no config names the channel.
const PLACEHOLDER_BASE: &str = "http://channel.invalid/";

/// Parses and validates one playbook (see [`super::parse`]).
pub(crate) fn parse(
    path: &Path,
    bytes: &[u8],
    config: Option<&Config>,
) -> Result<Playbook, Diagnostics> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = line_col_of_byte(bytes, e.valid_up_to());
            return Err(Diagnostics(vec![Diagnostic::new(
                path,
                line,
                column,
                "",
                format!(
                    "file is not valid UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            )
            .with_hint("save the playbook as UTF-8")]));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw: RawPlaybook = match serde_saphyr::from_str(text) {
        Ok(raw) => raw,
        Err(err) => return Err(Diagnostics(every_problem(path, text, bytes, &err, config))),
    };
    let mut v = Validator::new(path, config);
    let playbook = v.playbook(raw, bytes);
    // Report in file order, whatever order the checks ran in.
    v.diags.sort_by_key(|d| (d.line, d.column));
    if v.diags.is_empty() {
        Ok(playbook)
    } else {
        Err(Diagnostics(v.diags))
    }
}

/// Loads every file (directories: every `*.yaml` / `*.yml` inside, sorted) and returns
/// all diagnostics, including playbooks that share a `name` (runs and approvals are keyed
/// by it, so two files with one name would be ambiguous).
pub fn check_files(paths: &[PathBuf], config: Option<&Config>) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.is_file()
                                && matches!(
                                    p.extension().and_then(|e| e.to_str()),
                                    Some("yaml" | "yml")
                                )
                        })
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => diags.extend(Diagnostics::io(path, &e)),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in &files {
        match super::load(file, config) {
            Ok(pb) => {
                if let Some(first) = names.get(&pb.name) {
                    diags.push(
                        Diagnostic::new(
                            file,
                            1,
                            1,
                            "name",
                            format!(
                                "playbook name `{}` is also used by {}",
                                pb.name,
                                first.display()
                            ),
                        )
                        .with_hint("give every playbook a distinct name"),
                    );
                } else {
                    names.insert(pb.name.clone(), file.clone());
                }
            }
            Err(d) => diags.extend(d),
        }
    }
    diags
}

/// Checks run inputs against the declared specs (see [`Playbook::bind_inputs`]).
pub(crate) fn bind_inputs(
    playbook: &Playbook,
    values: &BTreeMap<String, String>,
) -> Result<Inputs, Vec<String>> {
    let mut errors = Vec::new();
    let mut bound = Inputs::new();
    for name in values.keys() {
        if !playbook.inputs.iter().any(|i| &i.name == name) {
            let declared: Vec<&str> = playbook.inputs.iter().map(|i| i.name.as_str()).collect();
            errors.push(format!(
                "unknown input `{name}` (playbook {} declares: {})",
                playbook.name,
                if declared.is_empty() {
                    "none".to_owned()
                } else {
                    declared.join(", ")
                }
            ));
        }
    }
    for spec in &playbook.inputs {
        let name = &spec.name;
        let value = match values.get(name) {
            Some(v) if !v.is_empty() => v,
            _ => {
                if spec.required {
                    errors.push(format!("input {name} is required{}", describe(spec)));
                }
                continue;
            }
        };
        // Secret values never appear in messages: they end up in logs and terminals.
        let shown = if spec.secret {
            "the value".to_owned()
        } else {
            format!("{value:?}")
        };
        let kind_error = match spec.kind {
            InputKind::String => None,
            InputKind::Number => match value.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => None,
                _ => Some(format!("input {name}: {shown} is not a number")),
            },
            InputKind::Date => {
                let shaped = value.len() == 10
                    && value.bytes().enumerate().all(|(i, b)| {
                        if i == 4 || i == 7 {
                            b == b'-'
                        } else {
                            b.is_ascii_digit()
                        }
                    });
                if shaped && chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok() {
                    None
                } else {
                    Some(format!("input {name}: {shown} is not a date (expected YYYY-MM-DD, a real calendar day)"))
                }
            }
            InputKind::File => {
                if Path::new(value).is_file() {
                    None
                } else {
                    Some(format!("input {name}: {shown} is not an existing file"))
                }
            }
        };
        if let Some(e) = kind_error {
            errors.push(e);
            continue;
        }
        if let Some(pattern) = &spec.pattern {
            // Whole-value match: `^(?:...)$`, so `a|ab` cannot accept `abc` by its prefix.
            match regex::Regex::new(&format!("^(?:{})$", pattern.as_str())) {
                Ok(whole) if whole.is_match(value) => {}
                Ok(_) => errors.push(format!(
                    "input {name}: {shown} does not match pattern {}",
                    pattern.as_str()
                )),
                Err(e) => errors.push(format!("input {name}: pattern cannot be used: {e}")),
            }
        }
        bound.insert(name.clone(), value.clone());
    }
    if errors.is_empty() {
        Ok(bound)
    } else {
        Err(errors)
    }
}

fn describe(spec: &InputSpec) -> String {
    if spec.description.is_empty() {
        String::new()
    } else {
        format!(" ({})", spec.description)
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col_of_byte(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Turns a serde-saphyr error into diagnostics, with the field path when the document is
/// still readable as YAML, and a hint for the usual causes.
/// Every problem of a file whose YAML does not fit the playbook format, in one pass: the
/// top-level keys and each step of a block-style `steps:` list are read on their own (the
/// other lines blanked, so lines and columns stay those of the file), every one that does
/// not fit is reported, and the steps that do are validated as usual. Checks that need the
/// whole list (a draft's one submit step, fields extracted by a broken step) wait until
/// every step reads. Falls back to the first error when the file is not YAML at all or the
/// steps are not a block list.
fn every_problem(
    path: &Path,
    text: &str,
    bytes: &[u8],
    err: &serde_saphyr::Error,
    config: Option<&Config>,
) -> Vec<Diagnostic> {
    let first = yaml_error(path, text, err);
    let Some(mut more) = split_problems(path, text, bytes, config) else {
        return first;
    };
    if more.is_empty() {
        return first;
    }
    for d in first {
        if !more
            .iter()
            .any(|m| (m.line, m.column, &m.message) == (d.line, d.column, &d.message))
        {
            more.push(d);
        }
    }
    more.sort_by_key(|d| (d.line, d.column));
    more
}

/// See [`every_problem`]; `None` when the file cannot be split into top level and steps.
fn split_problems(
    path: &Path,
    text: &str,
    bytes: &[u8],
    config: Option<&Config>,
) -> Option<Vec<Diagnostic>> {
    let tree: Spanned<Node> = serde_saphyr::from_str(text).ok()?;
    let Node::Map(entries) = &tree.value else {
        return None;
    };
    let lines: Vec<&str> = text.lines().collect();
    let (steps_key, steps_node) = entries.iter().find(|(k, _)| k.value == "steps")?;
    let Node::Seq(items) = &steps_node.value else {
        return None;
    };
    // Where the steps block ends: the next top-level key after `steps`, or the end.
    let steps_line = pos(steps_key).0;
    let block_end = entries
        .iter()
        .map(|(k, _)| pos(k).0)
        .filter(|l| *l > steps_line)
        .min()
        .unwrap_or(lines.len() + 1);
    // Each item starts on the line of its `-` (block style only).
    let mut starts = Vec::new();
    for item in items {
        let (line, col) = pos(item);
        let dash = (steps_line + 1..=line).rev().find(|l| {
            lines
                .get(l - 1)
                .map(|t| {
                    let t: String = t.chars().take(col.saturating_sub(1)).collect();
                    t.trim_start().starts_with('-')
                })
                .unwrap_or(false)
        })?;
        starts.push(dash);
    }
    if starts.is_empty() || starts.windows(2).any(|w| w[0] >= w[1]) {
        return None;
    }
    let masked = |keep: &dyn Fn(usize) -> bool, dash_line: Option<usize>| -> String {
        let mut out = String::with_capacity(text.len());
        for (i, l) in lines.iter().enumerate() {
            let n = i + 1;
            if keep(n) {
                if Some(n) == dash_line {
                    let at = l.find('-').unwrap_or(0);
                    out.push_str(&l[..at]);
                    out.push(' ');
                    out.push_str(&l[at + 1..]);
                } else {
                    out.push_str(l);
                }
            }
            out.push('\n');
        }
        out
    };
    let mut diags = Vec::new();
    let mut good: Vec<(usize, Spanned<RawStep>)> = Vec::new();
    let mut ranges = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(block_end);
        ranges.push((*start, end));
        let one = masked(&|n| n >= *start && n < end, Some(*start));
        match serde_saphyr::from_str::<Spanned<RawStep>>(&one) {
            Ok(step) => good.push((i, step)),
            Err(e) => diags.extend(yaml_error(path, text, &e)),
        }
    }
    let first_step = starts[0];
    // The top level: each top-level entry that does not fit is reported and left out, and
    // the rest read again (a few times at most), so the steps are still validated.
    let mut key_lines: Vec<usize> = entries.iter().map(|(k, _)| pos(k).0).collect();
    key_lines.sort_unstable();
    let mut dropped: Vec<(usize, usize)> = Vec::new();
    let mut raw = None;
    for _ in 0..8 {
        let top = masked(
            &|n| {
                (n < first_step || n >= block_end)
                    && !dropped.iter().any(|(a, b)| n >= *a && n < *b)
            },
            None,
        );
        match serde_saphyr::from_str::<RawPlaybook>(&top) {
            Ok(r) => {
                raw = Some(r);
                break;
            }
            Err(e) => {
                let d = yaml_error(path, text, &e);
                let line = d.first().map(|d| d.line).unwrap_or(0);
                diags.extend(d);
                // The top-level entry holding that line (never `steps` itself).
                let Some(start) = key_lines.iter().rev().find(|l| **l <= line).copied() else {
                    break;
                };
                if start == steps_line || dropped.iter().any(|(a, _)| *a == start) {
                    break;
                }
                let end = key_lines
                    .iter()
                    .find(|l| **l > start)
                    .copied()
                    .unwrap_or(lines.len() + 1);
                dropped.push((start, end));
            }
        }
    }
    if let Some(mut raw) = raw {
        // The steps that read, validated in place under their own numbers.
        let numbers: Vec<usize> = good.iter().map(|(i, _)| *i).collect();
        let steps: Vec<Spanned<RawStep>> = good.into_iter().map(|(_, s)| s).collect();
        let complete = steps.len() == items.len();
        raw.steps = Some(Spanned::new(
            steps,
            steps_node.referenced,
            steps_node.defined,
        ));
        let mut v = Validator::new(path, config);
        v.step_numbers = Some(numbers);
        let _ = v.playbook(raw, bytes);
        // Checks across steps are left for when every step reads.
        diags.extend(v.diags.into_iter().filter(|d| {
            complete
                || (d.field != "steps" && !d.message.contains("which no earlier step extracts"))
        }));
    }
    Some(diags)
}

fn yaml_error(path: &Path, text: &str, err: &serde_saphyr::Error) -> Vec<Diagnostic> {
    let inner = err.without_snippet();
    let (line, column) = inner
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .filter(|(l, _)| *l > 0)
        .unwrap_or((1, 1));
    let tree: Option<Spanned<Node>> = serde_saphyr::from_str(text).ok();
    let syntax_ok = tree.is_some();
    let field = tree
        .as_ref()
        .map(|t| Node::path_at(t, (line, column)))
        .unwrap_or_default();
    if !syntax_ok {
        // Tabs are the most common cause of YAML syntax errors and the parser often reports
        // them elsewhere; name every tab-indented line instead.
        let tabs: Vec<Diagnostic> = text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| {
                let indent: String = l.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
                indent.find('\t').map(|col| {
                    Diagnostic::new(path, i + 1, col + 1, "", "tab character in indentation")
                        .with_hint("YAML indents with spaces only; replace the tab with spaces")
                })
            })
            .collect();
        if !tabs.is_empty() {
            return tabs;
        }
    }
    let diag = match inner {
        serde_saphyr::Error::SerdeUnknownField {
            field: key,
            expected,
            ..
        } => {
            let what = if expected.contains(&"goto") {
                "unknown step key"
            } else if expected == TOP_KEYS {
                "unknown top-level key"
            } else {
                "unknown key"
            };
            let kind = if expected.contains(&"goto") {
                "step keys"
            } else {
                "keys here"
            };
            Diagnostic::new(path, line, column, field, format!("{what} `{key}`"))
                .with_hint(suggestion_hint(key, expected, kind))
        }
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => Diagnostic::new(
            path,
            line,
            column,
            field,
            match key {
                Some(k) => format!("duplicate key `{k}`"),
                None => "duplicate key".to_owned(),
            },
        )
        .with_hint("each key may appear only once in a mapping"),
        other => {
            let text_msg = UserMessageFormatter.format_message(other).into_owned();
            let message = lowercase_first(&text_msg);
            let at = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
            let rest: String = at.chars().skip(column.saturating_sub(1)).collect();
            let hint = if message.starts_with("locators nested more than") {
                "a locator is scoped by `within:` a few levels at most; scope it by a closer, more specific element".to_owned()
            } else if rest.starts_with("{{") {
                "quote values that start with a template, e.g. value: \"{{amount}}\"".to_owned()
            } else if syntax_ok {
                "this value has the wrong type for this key; see the playbook format".to_owned()
            } else {
                "check the indentation (spaces only, children indented under their parent) and the quoting on or just above this line".to_owned()
            };
            let message = if syntax_ok {
                message
            } else {
                format!("invalid YAML: {message}")
            };
            Diagnostic::new(path, line, column, field, message).with_hint(hint)
        }
    };
    vec![diag]
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A declared input, as validation needs it.
struct Declared {
    kind: InputKind,
    secret: bool,
}

/// Walks the raw playbook once, building the typed one and collecting diagnostics.
struct Validator<'a> {
    path: &'a Path,
    config: Option<&'a Config>,
    diags: Vec<Diagnostic>,
    inputs: BTreeMap<String, Declared>,
    /// Extracted field -> line of the step that extracts it.
    extracted: BTreeMap<String, usize>,
    /// Screenshot name -> line where it is first used.
    shots: BTreeMap<String, usize>,
    /// The channel, when the config knows it (for URL checks).
    channel: Option<&'a crate::channel::Channel>,
    /// The file's step numbers of the steps given, when only some of them could be read
    /// (see [`every_problem`]); `None`: they are all there, in order.
    step_numbers: Option<Vec<usize>>,
}

fn kinds_set(step: &RawStep) -> Vec<(&'static str, (usize, usize))> {
    let mut out = Vec::new();
    let mut add = |kind: &'static str, at: Option<(usize, usize)>| {
        if let Some(at) = at {
            out.push((kind, at));
        }
    };
    add("goto", step.goto.as_ref().map(pos));
    add("wait_for", step.wait_for.as_ref().map(pos));
    add("extract", step.extract.as_ref().map(pos));
    add("assert", step.assert_.as_ref().map(pos));
    add("click", step.click.as_ref().map(pos));
    add("screenshot", step.screenshot.as_ref().map(pos));
    add("fill", step.fill.as_ref().map(pos));
    add("select", step.select.as_ref().map(pos));
    add("check", step.check.as_ref().map(pos));
    add("uncheck", step.uncheck.as_ref().map(pos));
    add("upload", step.upload.as_ref().map(pos));
    add("submit", step.submit.as_ref().map(pos));
    out
}

/// True when `s` has a `{{` closed by a later `}}`: something meant as a template.
fn looks_templated(s: &str) -> bool {
    s.find("{{")
        .is_some_and(|open| s[open + 2..].contains("}}"))
}

/// Sample values for every input a template names, to try-render it while checking.
fn sample_inputs(t: &Template, value: &str) -> Inputs {
    t.inputs()
        .map(|n| (n.to_owned(), value.to_owned()))
        .collect()
}

/// `[a-z0-9-]+`
fn is_playbook_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `[A-Z_][A-Z0-9_]*`, the portable shape of environment variable names.
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `"500ms"`, `"10s"`, `"2m"`, or a bare number of milliseconds.
fn parse_timeout(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (digits, unit_ms) = if let Some(d) = s.strip_suffix("ms") {
        (d, 1u64)
    } else if let Some(d) = s.strip_suffix('s') {
        (d, 1000)
    } else if let Some(d) = s.strip_suffix('m') {
        (d, 60_000)
    } else {
        (s, 1)
    };
    let digits = digits.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let d = Duration::from_millis(n.checked_mul(unit_ms)?);
    (d > Duration::ZERO && d <= MAX_TIMEOUT).then_some(d)
}

impl<'a> Validator<'a> {
    fn new(path: &'a Path, config: Option<&'a Config>) -> Self {
        Validator {
            path,
            config,
            diags: Vec::new(),
            inputs: BTreeMap::new(),
            extracted: BTreeMap::new(),
            shots: BTreeMap::new(),
            channel: None,
            step_numbers: None,
        }
    }

    fn err(&mut self, at: (usize, usize), field: impl Into<String>, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(
            self.path,
            at.0.max(1),
            at.1.max(1),
            field,
            message,
        ));
    }

    fn err_hint(
        &mut self,
        at: (usize, usize),
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags.push(
            Diagnostic::new(self.path, at.0.max(1), at.1.max(1), field, message).with_hint(hint),
        );
    }

    /// A required top-level string; reports it missing or empty.
    fn required(
        &mut self,
        value: Option<Spanned<String>>,
        key: &str,
        hint: &str,
    ) -> Option<Spanned<String>> {
        match value {
            Some(v) if !v.value.trim().is_empty() => self.untemplated(&v, key).then_some(v),
            Some(v) => {
                self.err_hint(pos(&v), key, format!("`{key}` is empty"), hint);
                None
            }
            None => {
                self.err_hint((1, 1), key, format!("missing required key `{key}`"), hint);
                None
            }
        }
    }

    fn playbook(&mut self, raw: RawPlaybook, bytes: &[u8]) -> Playbook {
        let name = self.required(
            raw.name,
            "name",
            "add `name: my-playbook` (lowercase letters, digits, `-`)",
        );
        if let Some(n) = &name {
            if !is_playbook_name(&n.value) {
                self.err_hint(
                    pos(n),
                    "name",
                    format!(
                        "playbook name `{}` is not made of lowercase letters, digits and `-`",
                        n.value
                    ),
                    "e.g. `name: order-lookup`",
                );
            }
        }
        let version = self.required(raw.version, "version", "add `version: \"1\"`");
        let description = self.required(
            raw.description,
            "description",
            "add `description: what this playbook does`",
        );
        let channel = self.required(
            raw.channel,
            "channel",
            "add `channel: ID`, a channel id from clerk.toml",
        );
        let mode_raw = self.required(
            raw.mode,
            "mode",
            "add `mode: read_only` (or draft, submit, login)",
        );
        let mode = mode_raw.as_ref().and_then(|m| {
            let mode = match m.value.as_str() {
                "read_only" => Some(Mode::ReadOnly),
                "draft" => Some(Mode::Draft),
                "submit" => Some(Mode::Submit),
                "login" => Some(Mode::Login),
                _ => None,
            };
            if mode.is_none() {
                let hint = suggestion_hint(&m.value, MODES, "modes");
                self.err_hint(pos(m), "mode", format!("unknown mode `{}`", m.value), hint);
            }
            mode
        });

        if let (Some(config), Some(ch)) = (self.config, &channel) {
            match config.channel(&ch.value) {
                Ok(c) => {
                    self.channel = Some(c);
                    if let Some(mode) = mode {
                        if let Err(e) = c.permit_mode(mode) {
                            self.err_hint(
                                mode_raw.as_ref().map(pos).unwrap_or((1, 1)),
                                "mode",
                                format!("mode `{mode}` is not permitted by channel `{}`", c.id),
                                format!(
                                    "{e}; ask the channel owner `{}` or pick a permitted mode",
                                    c.owner
                                ),
                            );
                        }
                    }
                }
                Err(_) => {
                    let known: Vec<&str> = config.channels.iter().map(|c| c.id.as_str()).collect();
                    let hint = if known.is_empty() {
                        format!("{} defines no channels", config.path.display())
                    } else {
                        suggestion_hint(&ch.value, &known, "channels")
                    };
                    self.err_hint(
                        pos(ch),
                        "channel",
                        format!("unknown channel `{}`", ch.value),
                        hint,
                    );
                }
            }
        }

        let inputs = match raw.inputs {
            Some(i) => self.inputs(i.value.0),
            None => Vec::new(),
        };
        let mut failure_texts = Vec::new();
        for (i, t) in raw
            .failure_text
            .iter()
            .flat_map(|l| l.value.iter())
            .enumerate()
        {
            let field = format!("failure_text[{i}]");
            if !self.untemplated(t, &field) {
                continue;
            }
            if t.value.trim().is_empty() {
                self.err_hint(
                    pos(t),
                    field,
                    "a failure text is empty",
                    "give the text the page shows when the run cannot succeed, e.g. `Invalid username or password`",
                );
            } else {
                failure_texts.push(t.value.trim().to_owned());
            }
        }

        let mut record = Vec::new();
        for (i, t) in raw.record.iter().flat_map(|l| l.value.iter()).enumerate() {
            let field = format!("record[{i}]");
            if !self.untemplated(t, &field) {
                continue;
            }
            let g = t.value.trim();
            if !(g.starts_with('/') || g.starts_with("http://") || g.starts_with("https://")) {
                self.err_hint(
                    pos(t),
                    field,
                    "a record glob must be a path on the channel or a full http(s) URL",
                    "name the data endpoints whose responses to keep, e.g. `/api/orders/**`",
                );
            } else {
                record.push(g.to_owned());
            }
        }

        let raw_match = raw.match_;
        let raw_undo = raw.undo;
        let mut steps = Vec::new();
        match raw.steps {
            None => self.err_hint(
                (1, 1),
                "steps",
                "missing required key `steps`",
                "add `steps:` with at least one step",
            ),
            Some(s) if s.value.is_empty() => self.err_hint(
                pos(&s),
                "steps",
                "playbook has no steps",
                "add at least one step under `steps:`",
            ),
            Some(s) => {
                let steps_at = pos(&s);
                let mut submits = Vec::new();
                for (i, raw_step) in s.value.into_iter().enumerate() {
                    let index = self
                        .step_numbers
                        .as_ref()
                        .and_then(|n| n.get(i).copied())
                        .unwrap_or(i);
                    // Counted as written, so a submit step with a mistake in it is
                    // reported for that mistake, not also as a missing submit step.
                    if raw_step.value.submit.is_some() {
                        submits.push(pos(&raw_step));
                    }
                    if let Some(step) = self.step(index, raw_step, mode) {
                        steps.push(step);
                    }
                }
                if let Some(mode @ (Mode::Draft | Mode::Submit)) = mode {
                    if submits.is_empty() {
                        self.err_hint(
                            steps_at,
                            "steps",
                            format!("{mode} playbook has no submit step"),
                            "draft and submit playbooks fill one form and end with one `submit` step naming its control and expected request; use mode read_only for lookups",
                        );
                    }
                    for extra in submits.iter().skip(1) {
                        self.err_hint(
                            *extra,
                            "steps",
                            format!("{mode} playbook has more than one submit step"),
                            "a draft or submit playbook submits exactly one form; split it into several playbooks",
                        );
                    }
                }
            }
        }

        let matching = match raw_match {
            Some(m) => self.matching(m.value.0, mode, &steps),
            None => Vec::new(),
        };

        let undo = raw_undo.and_then(|u| self.undo(u, mode));

        Playbook {
            undo,
            matching,
            name: name.map(|n| n.value).unwrap_or_default(),
            version: version.map(|n| n.value).unwrap_or_default(),
            description: description.map(|n| n.value).unwrap_or_default(),
            channel: channel.map(|n| n.value).unwrap_or_default(),
            mode: mode.unwrap_or(Mode::ReadOnly),
            inputs,
            steps,
            failure_texts,
            record,
            source: self.path.to_owned(),
            sha256: hex::encode(Sha256::digest(bytes)),
            text: super::Text(std::sync::Arc::from(bytes)),
        }
    }

    fn inputs(&mut self, raw: Vec<(Spanned<String>, Spanned<RawInput>)>) -> Vec<InputSpec> {
        let mut out = Vec::new();
        for (name, spec) in raw {
            let field = format!("inputs.{}", name.value);
            if !is_input_name(&name.value) {
                self.err_hint(
                    pos(&name),
                    &field,
                    format!("input name `{}` is not valid", name.value),
                    "input names are lowercase letters, digits and `_`, starting with a letter or `_`",
                );
            }
            let spec = spec.value;
            let kind = match &spec.kind {
                None => InputKind::String,
                Some(k) if !self.untemplated(k, &format!("{field}.type")) => InputKind::String,
                Some(k) => match k.value.as_str() {
                    "string" => InputKind::String,
                    "number" => InputKind::Number,
                    "date" => InputKind::Date,
                    "file" => InputKind::File,
                    other => {
                        let hint = suggestion_hint(other, INPUT_TYPES, "types");
                        self.err_hint(
                            pos(k),
                            format!("{field}.type"),
                            format!("unknown input type `{other}`"),
                            hint,
                        );
                        InputKind::String
                    }
                },
            };
            if let Some(d) = &spec.description {
                self.untemplated(d, &format!("{field}.description"));
            }
            let pattern = spec.pattern.as_ref().filter(|p| self.untemplated(p, &format!("{field}.pattern"))).and_then(|p| match regex::Regex::new(&p.value) {
                Ok(re) => Some(re),
                Err(e) => {
                    self.err_hint(
                        pos(p),
                        format!("{field}.pattern"),
                        format!("invalid regex pattern for input `{}`: {}", name.value, regex_reason(&e.to_string())),
                        "patterns use Rust regex syntax (https://docs.rs/regex); quote them with single quotes in YAML",
                    );
                    None
                }
            });
            let secret = spec.secret.map(|s| s.value).unwrap_or(false);
            self.inputs
                .insert(name.value.clone(), Declared { kind, secret });
            out.push(InputSpec {
                name: name.value,
                kind,
                required: spec.required.map(|r| r.value).unwrap_or(true),
                pattern,
                description: spec.description.map(|d| d.value).unwrap_or_default(),
                secret,
            });
        }
        out
    }

    /// Reports a `{{…}}` in a field where templates are not rendered (names, modes,
    /// methods, roles, environment variable names, ...). Returns false when it did.
    fn untemplated(&mut self, s: &Spanned<String>, field: &str) -> bool {
        self.untemplated_at(&s.value, pos(s), field)
    }

    /// [`Self::untemplated`] for text whose position is known separately.
    fn untemplated_at(&mut self, text: &str, at: (usize, usize), field: &str) -> bool {
        if !looks_templated(text) {
            return true;
        }
        let last = field.rsplit('.').next().unwrap_or(field);
        let key = last.split('[').next().unwrap_or(last);
        self.err_hint(
            at,
            field,
            format!("templates are not rendered in `{key}`"),
            format!("`{key}` is used as written, so `{{{{…}}}}` would stay literal; templates are rendered in selectors and locator texts, URLs, values, `wait_for` texts and patterns, assertions and `extract.attribute`"),
        );
        false
    }

    /// Parses a template and checks that it names declared inputs only.
    fn template(&mut self, s: &Spanned<String>, field: &str) -> Option<Template> {
        self.template_at(&s.value, pos(s), field)
    }

    /// [`Self::template`] for text whose position is known separately.
    fn template_at(&mut self, text: &str, at: (usize, usize), field: &str) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => {
                let undeclared: Vec<String> = t
                    .inputs()
                    .filter(|n| !self.inputs.contains_key(*n))
                    .map(str::to_owned)
                    .collect();
                for name in undeclared {
                    let declared: Vec<&str> = self.inputs.keys().map(String::as_str).collect();
                    let hint = if declared.is_empty() {
                        format!("declare it under `inputs:`, e.g. `inputs: {{ {name}: {{ type: string }} }}`")
                    } else {
                        format!(
                            "declare it under `inputs:`; {}",
                            suggestion_hint(&name, &declared, "inputs")
                        )
                    };
                    self.err_hint(
                        at,
                        field,
                        format!("template names undeclared input `{name}`"),
                        hint,
                    );
                }
                Some(t)
            }
            Err(e) => {
                self.err_hint(
                    at,
                    field,
                    format!("malformed template `{text}`: {e}"),
                    "write inputs as {{name}}",
                );
                None
            }
        }
    }

    /// A template used as a URL: renders it with sample values to prove its shape, keeps
    /// secrets out of it (URLs are recorded), and with a config keeps absolute URLs inside
    /// the channel's allowed origins.
    fn url_template(&mut self, s: &Spanned<String>, field: &str) -> Option<Template> {
        let t = self.template(s, field)?;
        for name in t.inputs() {
            if self.inputs.get(name).is_some_and(|d| d.secret) {
                self.err_hint(
                    pos(s),
                    field,
                    format!("secret input `{name}` is used in a URL"),
                    "URLs are recorded in the evidence journal; pass secrets through `fill` instead",
                );
            }
        }
        let base = match self.channel {
            Some(c) => c.base_url.clone(),
            None => Url::parse(PLACEHOLDER_BASE).ok()?,
        };
        let sample: Inputs = t.inputs().map(|n| (n.to_owned(), "1".to_owned())).collect();
        match t.render_url(&base, &sample) {
            Ok(url) => {
                if let Some(c) = self.channel {
                    if !c.allows_origin(&url) {
                        self.err_hint(
                            pos(s),
                            field,
                            format!(
                                "url `{}` is outside the allowed origins of channel `{}`",
                                s.value, c.id
                            ),
                            format!(
                                "allowed origins: {}; add the origin to `allowed_origins` in {} if it is really part of this seller center",
                                c.allowed_origins.join(", "),
                                self.config.map(|c| c.path.display().to_string()).unwrap_or_default()
                            ),
                        );
                    }
                }
            }
            Err(e) => self.err_hint(
                pos(s),
                field,
                format!("bad URL template `{}`: {e}", s.value),
                "write a path on the channel's base URL (`/orders/{{order_id}}`) or a full http(s) URL; inputs may not appear in the host",
            ),
        }
        Some(t)
    }

    fn step(&mut self, index: usize, raw: Spanned<RawStep>, mode: Option<Mode>) -> Option<Step> {
        let at = pos(&raw);
        let field = format!("steps[{index}]");
        let step = raw.value;
        let kinds = kinds_set(&step);
        if let Some(n) = &step.name {
            self.untemplated(n, &format!("{field}.name"));
        }
        let timeout = step.timeout.as_ref().and_then(|t| {
            if !self.untemplated(t, &format!("{field}.timeout")) {
                return None;
            }
            let d = parse_timeout(&t.value);
            if d.is_none() {
                self.err_hint(
                    pos(t),
                    format!("{field}.timeout"),
                    format!("invalid timeout `{}`", t.value),
                    "write a whole number followed by ms, s or m (e.g. \"500ms\", \"10s\", \"2m\"), between 1ms and 60m",
                );
            }
            d
        });
        let (kind, kind_at) = match kinds.as_slice() {
            [] => {
                self.err_hint(
                    at,
                    &field,
                    "step has no kind",
                    format!("give exactly one of: {}", STEP_KINDS.join(", ")),
                );
                return None;
            }
            [one] => *one,
            many => {
                let names: Vec<&str> = many.iter().map(|(k, _)| *k).collect();
                self.err_hint(
                    at,
                    &field,
                    format!(
                        "step has {} kinds ({}); a step does exactly one thing",
                        many.len(),
                        names.join(", ")
                    ),
                    "split it into one step per kind",
                );
                return None;
            }
        };
        let kfield = format!("{field}.{kind}");
        if let Some(mode) = mode {
            let allowed = match mode {
                Mode::ReadOnly => Some(READ_ONLY_STEPS),
                Mode::Login => Some(LOGIN_STEPS),
                Mode::Draft | Mode::Submit => None,
            };
            if let Some(allowed) = allowed.filter(|a| !a.contains(&kind)) {
                let fix = if mode == Mode::ReadOnly {
                    "; use mode draft or submit for steps that change data"
                } else {
                    ""
                };
                self.err_hint(
                    kind_at,
                    &kfield,
                    format!("`{kind}` steps are not allowed in a {mode} playbook"),
                    format!("{mode} allows: {}{fix}", allowed.join(", ")),
                );
            }
        }
        let name = match &step.name {
            Some(n) if !n.value.trim().is_empty() => n.value.trim().to_owned(),
            _ => format!("{kind} {}", index + 1),
        };
        let action = self.action(step, &kfield, mode)?;
        Some(Step {
            index,
            name,
            line: at.0,
            timeout,
            action,
        })
    }

    fn action(&mut self, step: RawStep, field: &str, mode: Option<Mode>) -> Option<Action> {
        if let Some(g) = &step.goto {
            return self.url_template(g, field).map(|url| Action::Goto { url });
        }
        if let Some(w) = step.wait_for {
            return self.wait_for(w, field);
        }
        if let Some(e) = step.extract {
            return self.extract(e, field);
        }
        if let Some(a) = step.assert_ {
            return self.assert(a, field);
        }
        if let Some(c) = &step.click {
            return self
                .locator_value(c, field, "click")
                .map(|locator| Action::Click { locator });
        }
        if let Some(s) = step.screenshot {
            return self.screenshot(s, field);
        }
        if let Some(f) = step.fill {
            return self.fill(f, field, mode);
        }
        if let Some(s) = step.select {
            return self.select(s, field);
        }
        if let Some(c) = &step.check {
            return self
                .locator_value(c, field, "check")
                .map(|locator| Action::Check {
                    locator,
                    checked: true,
                });
        }
        if let Some(c) = &step.uncheck {
            return self
                .locator_value(c, field, "uncheck")
                .map(|locator| Action::Check {
                    locator,
                    checked: false,
                });
        }
        if let Some(u) = step.upload {
            return self.upload(u, field);
        }
        if let Some(s) = step.submit {
            return self.submit(s, field);
        }
        None
    }
}
