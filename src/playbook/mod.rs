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
mod raw;
mod template;
mod validate;

pub use diag::{Diagnostic, Diagnostics};
pub use template::{Template, TemplateError, TemplatePart};
pub use validate::check_files;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::channel::Config;

/// The rung of the safety ladder a playbook runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Lookups and screenshots; the network guard fails every write.
    ReadOnly,
    /// Forms are filled but never submitted; the filled form is queued for review.
    Draft,
    /// A `submit` step runs only with a stored, matching, unused approval.
    Submit,
    /// Writes a channel's session file from a login form; secrets come from the environment.
    Login,
}

impl Mode {
    /// The name used in YAML, TOML and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadOnly => "read_only",
            Mode::Draft => "draft",
            Mode::Submit => "submit",
            Mode::Login => "login",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Where it was loaded from (or `<embedded>/NAME.yaml`).
    pub source: PathBuf,
    /// SHA-256 (lowercase hex) of the exact file bytes.
    pub sha256: String,
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

/// How an element is found: a CSS selector, or the text of its `<label>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    Css(String),
    Label(String),
}

#[derive(Debug, Clone)]
pub enum WaitCondition {
    /// A CSS selector becomes visible.
    Visible(String),
    /// The page's text contains this (templated) string.
    Text(Template),
    /// No request has been issued for a quiet period.
    NetworkIdle,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractSource {
    Text,
    Attribute(String),
    Value,
}

#[derive(Debug, Clone)]
pub enum AssertSubject {
    /// A field extracted earlier in this run.
    Field(String),
    /// The text of the first element matching a selector.
    Selector(String),
}

#[derive(Debug, Clone)]
pub enum AssertCheck {
    Equals(Template),
    Contains(Template),
    Matches(regex::Regex),
}

#[derive(Debug, Clone)]
pub enum ShotTarget {
    FullPage,
    Element(String),
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
        selector: String,
        source: ExtractSource,
        required: bool,
    },
    Assert {
        subject: AssertSubject,
        check: AssertCheck,
    },
    Click {
        selector: String,
    },
    Screenshot {
        name: String,
        target: ShotTarget,
        mask: Vec<String>,
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
        control: String,
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
