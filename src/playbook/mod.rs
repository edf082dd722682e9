//! Playbooks: declarative YAML descriptions of what clerk does in a seller center.
//!
//! Two stages, as in ripgrep's `lowargs`/`hiargs`: [`raw`] mirrors the YAML with
//! serde (`deny_unknown_fields`, spans kept), and validation turns it into a
//! [`Playbook`] whose every step is typed and checked. Validation never stops at
//! the first problem: it returns every [`Diagnostic`] it finds, each naming the
//! file, line, column and field, with a hint.
//!
//! Nothing here touches a browser, the network or the evidence store.

mod diag;
pub mod embedded;
mod locator;
mod raw;
mod template;
mod validate;

pub use diag::{Diagnostic, Diagnostics};
pub use locator::{render_find, Locator, LocatorKind, ARIA_ROLES};
pub use template::{css_escape, Template, TemplateError, TemplatePart};
pub use validate::check_files;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::channel::Config;

pub use crate::channel::Mode;

/// A valid claim (and input) name: `[a-z_][a-z0-9_]*`.
pub fn is_claim_name(name: &str) -> bool {
    template::is_input_name(name)
}

/// Placeholder stored instead of a secret value.
pub const SECRET: &str = "<secret>";

/// Inputs with secret values replaced.
pub fn redact(playbook: &Playbook, inputs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    inputs
        .iter()
        .map(|(k, v)| {
            let secret = playbook.inputs.iter().any(|i| i.name == *k && i.secret);
            (
                k.clone(),
                if secret { SECRET.to_owned() } else { v.clone() },
            )
        })
        .collect()
}

/// A validated playbook, ready to run.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub version: String,
    pub description: String,
    /// Channel id; must exist in the config when run (checked by `check` when a config is given).
    pub channel: String,
    pub mode: Mode,
    /// Declared inputs, in file order.
    pub inputs: Vec<InputSpec>,
    pub steps: Vec<Step>,
    /// `failure_text:` texts that, once any page of the run shows one, fail the step under
    /// way at once (e.g. a login page's "Invalid username or password") instead of letting
    /// it wait out its timeout.
    pub failure_texts: Vec<String>,
    /// `record:` URL globs of data endpoints whose responses the run keeps as WARC records,
    /// besides the channel's `record_responses`.
    pub record: Vec<String>,
    /// `match:` rules between the run's case claims and what the page shows, in file
    /// order (see [`crate::case`]).
    pub matching: Vec<MatchRule>,
    /// `undo:`: the playbook that compensates a submit of this one (`clerk rollback`).
    pub undo: Option<Undo>,
    /// Where it was loaded from (or `<embedded>/NAME.yaml`).
    pub source: PathBuf,
    /// SHA-256 (lowercase hex) of the exact file bytes.
    pub sha256: String,
    /// The exact file bytes: what is stored, content-addressed, in the evidence store when
    /// a run starts, so an approval or a queued job can name this exact text by `sha256`.
    pub text: Text,
}

/// A playbook's exact bytes (shared, cheap to clone; `Debug` shows the length only).
#[derive(Clone, PartialEq, Eq)]
pub struct Text(pub std::sync::Arc<[u8]>);

impl Text {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Text({} bytes)", self.0.len())
    }
}

/// One `match:` rule.
#[derive(Debug, Clone)]
pub struct MatchRule {
    /// The claim's name.
    pub claim: String,
    pub read: MatchRead,
    pub compare: crate::case::Compare,
    /// A required rule needs its claim (or an input of the same name); an optional one is
    /// compared only when the claim is given.
    pub required: bool,
    /// 1-based line of the rule in the file.
    pub line: usize,
}

/// A submit playbook's compensating action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undo {
    /// The compensating playbook's name (found as `clerk run` finds a name).
    pub playbook: String,
    /// Its inputs, in file order: name and where the value comes from.
    pub inputs: Vec<(String, UndoSource)>,
}

/// Where an input of the compensating playbook comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoSource {
    /// `input.NAME`: the submitted run's input.
    Input(String),
    /// `field.NAME`: a field the submitted run extracted.
    Field(String),
}

/// Where a match rule's page value comes from.
#[derive(Debug, Clone)]
pub enum MatchRead {
    /// A field an `extract` step read.
    Field(String),
    /// An element read when the rule is evaluated (its text, or its value with `from: value`).
    Element { locator: Locator, value: bool },
}

impl MatchRead {
    /// How messages and records name it: `field total`, or the locator.
    pub fn describe(&self) -> String {
        match self {
            MatchRead::Field(f) => format!("field {f}"),
            MatchRead::Element { locator, value } => {
                let d = locator.display();
                if *value {
                    format!("{d} (value)")
                } else {
                    d
                }
            }
        }
    }
}

impl Action {
    /// Steps that change a form or send it: no such step runs in a run whose case does not
    /// match (`draft` and `submit` playbooks).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Action::Fill { .. }
                | Action::Select { .. }
                | Action::Check { .. }
                | Action::Upload { .. }
                | Action::Submit { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    String,
    Number,
    /// `YYYY-MM-DD`
    Date,
    /// A path to a local file (for `upload`).
    File,
}

#[derive(Debug, Clone)]
pub struct InputSpec {
    pub name: String,
    pub kind: InputKind,
    pub required: bool,
    pub pattern: Option<regex::Regex>,
    pub description: String,
    /// Never written to logs, records, approvals; masked in screenshots when filled.
    pub secret: bool,
}

/// One step of a playbook.
#[derive(Debug, Clone)]
pub struct Step {
    /// 0-based position in `steps`.
    pub index: usize,
    /// The `name:` given in YAML, or `"<kind> <index+1>"`.
    pub name: String,
    /// 1-based line of the step in the file (for messages).
    pub line: usize,
    /// Per-step timeout (`timeout: 10s` / milliseconds); `None` means the runner default.
    pub timeout: Option<Duration>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub enum WaitCondition {
    /// An element becomes visible.
    Visible(Locator),
    /// The page's text contains this (templated) string.
    Text(Template),
    /// The page's full URL (fragment included) matches.
    Url(UrlPattern),
    /// No request has been issued for a quiet period.
    NetworkIdle,
}

/// A templated pattern over a page's full `href`, fragment included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlPattern {
    /// `wait_for: { url: GLOB }`: `*` is any run without `/`, `**` any run; a glob without
    /// a scheme is resolved against the channel's base URL; inputs are percent-encoded.
    Glob(Template),
    /// `wait_for: { url_matches: REGEX }`: unanchored; inputs are percent-encoded, then
    /// inserted literally.
    Regex(Template),
}

impl UrlPattern {
    /// The compiled pattern for this run: matches the URLs this pattern describes.
    pub fn regex(&self, base: &url::Url, inputs: &Inputs) -> Result<regex::Regex, TemplateError> {
        match self {
            UrlPattern::Glob(t) => t.render_url_glob(base, inputs),
            UrlPattern::Regex(t) => t.render_url_regex(inputs),
        }
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        match self {
            UrlPattern::Glob(t) | UrlPattern::Regex(t) => &t.source,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractSource {
    Text,
    /// An attribute, by a (templated) name that must render to a valid attribute name.
    Attribute(Template),
    Value,
}

#[derive(Debug, Clone)]
pub enum AssertSubject {
    /// A field extracted earlier in this run.
    Field(String),
    /// The text of the element a locator finds.
    Element(Locator),
}

#[derive(Debug, Clone)]
pub enum AssertCheck {
    /// Inputs inserted verbatim.
    Equals(Template),
    /// Inputs inserted verbatim.
    Contains(Template),
    /// A regex; inputs inserted literally (`regex::escape`), see [`Template::render_regex`].
    Matches(Template),
}

#[derive(Debug, Clone)]
pub enum ShotTarget {
    FullPage,
    Element(Locator),
}

/// Where a filled value comes from.
#[derive(Debug, Clone)]
pub enum ValueSource {
    Template(Template),
    /// An environment variable (a secret: never logged or recorded).
    Env(String),
}

/// The one write a `submit` step expects to cause.
#[derive(Debug, Clone)]
pub struct ExpectedWrite {
    /// Upper-case HTTP method, e.g. `POST`.
    pub method: String,
    /// A URL pattern: a path on the channel's base URL or a full URL; `*` matches any run of
    /// characters except `/`, `**` any run at all. Templated inputs allowed.
    pub url: Template,
    /// Volatile body fields (tokens, timestamps, idempotency keys) left out when the held
    /// write is compared with the approved one: a JSON key name at any depth or a form
    /// field name. Plain names, not templates.
    pub ignore: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Action {
    Goto {
        url: Template,
    },
    WaitFor {
        condition: WaitCondition,
    },
    Extract {
        field: String,
        locator: Locator,
        source: ExtractSource,
        required: bool,
    },
    Assert {
        subject: AssertSubject,
        check: AssertCheck,
    },
    Click {
        locator: Locator,
    },
    Screenshot {
        name: String,
        target: ShotTarget,
        mask: Vec<Locator>,
    },
    Fill {
        locator: Locator,
        value: ValueSource,
        secret: bool,
    },
    Select {
        locator: Locator,
        value: Template,
    },
    Check {
        locator: Locator,
        checked: bool,
    },
    Upload {
        locator: Locator,
        input: String,
    },
    Submit {
        control: Locator,
        expect: ExpectedWrite,
    },
}

impl Action {
    /// The YAML key of this step kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Goto { .. } => "goto",
            Action::WaitFor { .. } => "wait_for",
            Action::Extract { .. } => "extract",
            Action::Assert { .. } => "assert",
            Action::Click { .. } => "click",
            Action::Screenshot { .. } => "screenshot",
            Action::Fill { .. } => "fill",
            Action::Select { .. } => "select",
            Action::Check { checked: true, .. } => "check",
            Action::Check { checked: false, .. } => "uncheck",
            Action::Upload { .. } => "upload",
            Action::Submit { .. } => "submit",
        }
    }
}

/// Input values for one run, by input name (already validated against the specs by
/// [`Playbook::bind_inputs`]).
pub type Inputs = BTreeMap<String, String>;

/// Parses and validates a playbook file. When `config` is given, the channel must exist,
/// the playbook's mode must be permitted by it and every absolute URL must be inside its
/// allowed origins.
pub fn load(path: &Path, config: Option<&Config>) -> Result<Playbook, Diagnostics> {
    let bytes = std::fs::read(path).map_err(|e| Diagnostics::io(path, &e))?;
    parse(path, &bytes, config)
}

/// Like [`load`], for bytes already in memory (embedded playbooks, tests).
pub fn parse(path: &Path, bytes: &[u8], config: Option<&Config>) -> Result<Playbook, Diagnostics> {
    validate::parse(path, bytes, config)
}

impl Playbook {
    /// Checks a row of input values against the declared inputs: required present, type,
    /// pattern; unknown names rejected. Returns the bound inputs (optional ones absent
    /// stay absent). Messages name the input and say what was expected.
    pub fn bind_inputs(&self, values: &BTreeMap<String, String>) -> Result<Inputs, Vec<String>> {
        validate::bind_inputs(self, values)
    }

    /// Names of inputs marked `secret`.
    pub fn secret_inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .filter(|i| i.secret)
            .map(|i| i.name.as_str())
    }
}
