//! Raw serde mirror of the YAML, with source locations kept.
//!
//! # Playbook format (the contract)
//!
//! ```yaml
//! name: order-lookup            # required, [a-z0-9-]+
//! version: "1"                  # required (string or number, stored as string)
//! description: Look up an order # required
//! channel: sample               # required: a channel id from clerk.toml
//! mode: read_only               # read_only | draft | submit | login
//! inputs:                       # map name -> spec; names [a-z_][a-z0-9_]*; file order kept
//!   order_id: { type: string, required: true, pattern: '^SO-\d{6}$', description: "...", secret: false }
//!   # type: string | number | date (YYYY-MM-DD) | file; required defaults to true;
//!   # pattern must match the whole value; secret values are never logged or recorded
//! steps:                        # each step: optional name, optional timeout ("500ms", "10s",
//!                               # "2m", or a bare number of milliseconds), exactly one kind key
//!   - goto: /orders/{{order_id}}                 # path on the channel base URL, or a full URL;
//!   - goto: "/app/#/orders/{{order_id}}"         # fragment (hash-route) changes work too
//!   - wait_for: { selector: "#order-status" }   # a plain string is a selector; or
//!                                               # { element: LOCATOR } | { text: "Risk:" } |
//!                                               # { url: GLOB } | { url_matches: REGEX } | { network_idle: true }
//!   - wait_for: { url: "/app/#/orders/{{order_id}}/**" }  # full href, fragment included; `*` = any run
//!                                               # without `/`, `**` = any run; relative to the base URL
//!   - extract: { field: status, selector: "#order-status" }  # from: text (default) | value | attribute,
//!                                               # with attribute: NAME (templated, must render to a name)
//!   - extract: { field: total, testid: order-total, required: false }
//!   - assert: { field: status, matches: "^(paid|shipped)$" } # or a LOCATOR's keys instead of field;
//!                                               # one of equals | contains | matches
//!   - click: { role: link, name: Logistics }     # a LOCATOR (a string is a CSS selector)
//!   - screenshot: { name: order-page }           # full page; or element: LOCATOR; mask: [LOCATOR, ...]
//!                                               # (a plain string is the name)
//!   - fill: { label: "Refund amount", value: "{{amount}}" }  # LOCATOR keys + value | env: VAR (secret);
//!                                               # secret: true masks it
//!   - select: { role: combobox, name: Reason, value: "{{reason}}" }  # option value or visible label
//!   - check: { role: switch, name: Notify customer }  # and uncheck; a LOCATOR
//!   - upload: { selector: "#attachment", input: photo }  # input must be of type file
//!   - submit:
//!       control: { role: button, name: Submit refund request }   # a LOCATOR
//!       expect: { method: POST, url: "/api/orders/{{order_id}}/refunds", ignore: [requestId, clientTs] }
//! ```
//!
//! A LOCATOR is a CSS selector string, or a mapping with exactly one kind key:
//! `selector: CSS`, `role: ROLE` (a WAI-ARIA role, with optional `name: TEXT`, the
//! accessible name), `label: TEXT`, `text: TEXT` or `testid: ID` (the channel's
//! `testid_attribute`, `data-testid` by default); `exact: false` (role, label, text) matches
//! a case-insensitive substring instead of the whole trimmed text; `within: LOCATOR` searches
//! only inside the one element that finds (at most 8 levels); `nth: N` picks a match (0 the
//! first, -1 the last), otherwise a locator matching several elements is an error. In
//! `fill`, `select`, `upload`, `extract` and `assert` the locator's keys sit in the step's own
//! mapping. `submit.expect.ignore` names volatile body fields (JSON keys at any depth, form
//! field names) left out when the held write is compared with the approved one.
//!
//! Templates: `{{name}}` (spaces inside the braces allowed) names a declared input. Each place
//! escapes for itself: selectors as `CSS.escape` does (an input can never change a selector's
//! structure), URLs and URL globs percent-encoded, `url_matches` and `assert.matches`
//! regex-escaped, texts, names, labels, values, `equals` and `contains` verbatim,
//! `extract.attribute` must render to an attribute name. Templates are rendered in: `goto`,
//! every locator text (selector, role `name`, label, text, testid), `wait_for` text / url /
//! url_matches, `fill` and `select` values, `assert` equals / contains / matches,
//! `extract.attribute`, `submit.expect.url`. Anywhere else (`field`, step and screenshot
//! `name`, `role`, `env`, `timeout`, `method`, `ignore`, `from`, `input`, the top-level keys,
//! input descriptions and patterns) a `{{…}}` is reported by `clerk check`. A YAML value that
//! *starts* with `{{` must be quoted (`value: "{{amount}}"`), otherwise YAML reads it as a
//! mapping.
//!
//! Modes restrict steps: `read_only` allows goto, wait_for, extract, assert, click,
//! screenshot; `draft` and `submit` allow every step and need exactly one `submit` step;
//! `login` allows goto, wait_for, fill, click, submit, extract, assert, screenshot, and its
//! `fill` values must come from `env`.
//!
//! # Design
//!
//! Every struct denies unknown fields, and every field that validation may complain about is
//! a [`Spanned`] so the complaint can name its line and column. Fields that are required by
//! the format are still `Option` here: validation reports *all* missing keys at once instead
//! of serde stopping at the first. Step kinds are optional fields of one struct (not an
//! enum) because serde-saphyr loses spans inside flattened, untagged and internally tagged
//! enums; validation checks that exactly one kind is set.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
pub(crate) use serde_saphyr::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlaybook {
    pub name: Option<Spanned<String>>,
    pub version: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub channel: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub inputs: Option<Spanned<RawInputs>>,
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
    pub failure_text: Option<Spanned<Vec<Spanned<String>>>>,
    pub record: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(rename = "match")]
    pub match_: Option<Spanned<RawMatch>>,
    pub undo: Option<Spanned<RawUndo>>,
}

/// `undo:` of a submit playbook: its compensating playbook and where that one's inputs come
/// from (`input.NAME` of the submitted run, or `field.NAME` it extracted).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUndo {
    pub playbook: Option<Spanned<String>>,
    pub inputs: Option<Spanned<RawPairs>>,
}

/// A mapping of names to strings, in file order, spans kept.
#[derive(Debug, Default)]
pub(crate) struct RawPairs(pub Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for RawPairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPairs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPairs, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value()?;
                    out.push((key, value));
                }
                Ok(RawPairs(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `match:` in file order: claim name -> rule.
#[derive(Debug, Default)]
pub(crate) struct RawMatch(pub Vec<(Spanned<String>, Spanned<RawMatchRule>)>);

impl<'de> Deserialize<'de> for RawMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMatch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of claim names to match rules")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMatch, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value()?;
                    out.push((key, value));
                }
                Ok(RawMatch(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Top-level keys, for hints.
pub(crate) const TOP_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "channel",
    "mode",
    "inputs",
    "steps",
    "failure_text",
    "record",
    "match",
    "undo",
];

/// `inputs:` in file order (a `BTreeMap` would sort them, and the order is what `clerk run`
/// shows and what batch CSV headers follow).
#[derive(Debug, Default)]
pub(crate) struct RawInputs(pub Vec<(Spanned<String>, Spanned<RawInput>)>);

impl<'de> Deserialize<'de> for RawInputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawInputs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of input names to input specs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawInputs, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value()?;
                    out.push((key, value));
                }
                Ok(RawInputs(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// One input spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInput {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub required: Option<Spanned<bool>>,
    pub pattern: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub secret: Option<Spanned<bool>>,
}

/// One step: `name`, `timeout` and exactly one kind key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    pub name: Option<Spanned<String>>,
    /// `"500ms"`, `"10s"`, `"2m"`, or a bare number of milliseconds.
    pub timeout: Option<Spanned<String>>,
    pub goto: Option<Spanned<String>>,
    pub wait_for: Option<Spanned<Shorthand<RawWaitFor>>>,
    pub extract: Option<Spanned<RawExtract>>,
    #[serde(rename = "assert")]
    pub assert_: Option<Spanned<RawAssert>>,
    pub click: Option<Spanned<Shorthand<RawLocator>>>,
    pub screenshot: Option<Spanned<Shorthand<RawScreenshot>>>,
    pub fill: Option<Spanned<RawFill>>,
    pub select: Option<Spanned<RawSelect>>,
    pub check: Option<Spanned<Shorthand<RawLocator>>>,
    pub uncheck: Option<Spanned<Shorthand<RawLocator>>>,
    pub upload: Option<Spanned<RawUpload>>,
    pub submit: Option<Spanned<RawSubmit>>,
}

/// Step kind keys, in the order the format lists them.
pub(crate) const STEP_KINDS: &[&str] = &[
    "goto",
    "wait_for",
    "extract",
    "assert",
    "click",
    "screenshot",
    "fill",
    "select",
    "check",
    "uncheck",
    "upload",
    "submit",
];

/// A value written either as a plain string (the common case, e.g. `click: "#tab"`) or as a
/// mapping with options. Anything else is kept as [`Shorthand::Invalid`] so validation can
/// report it at the value's own location.
#[derive(Debug)]
pub(crate) enum Shorthand<T> {
    Short(String),
    Full(T),
    /// What was found instead (`"a sequence"`, `"a number"`, ...).
    Invalid(&'static str),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shorthand<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Locators nest through `within:`; each level costs serde-saphyr a lot of stack,
        // so the depth is bounded well below what a 2 MiB worker thread can hold.
        let Some(_guard) = ShorthandDepth::enter() else {
            return Err(de::Error::custom(format!(
                "locators nested more than {MAX_SHORTHAND_DEPTH} deep (through `within:`)"
            )));
        };
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Shorthand<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a mapping")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Shorthand::Short(s.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Shorthand::Invalid("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Shorthand::Invalid("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Shorthand::Invalid("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Shorthand::Invalid("a number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Shorthand::Invalid("nothing"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Shorthand::Invalid("a sequence"))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Shorthand::Full)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Declares a mapping that takes a locator's keys flattened among its own (`fill`,
/// `select`, `upload`, `extract`, `assert`) and the standalone locator mapping itself.
/// The keys are spelled out in each struct rather than `#[serde(flatten)]`ed, because
/// flattening loses spans and `deny_unknown_fields` in serde-saphyr.
macro_rules! with_locator_keys {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
            pub selector: Option<Spanned<String>>,
            pub role: Option<Spanned<String>>,
            pub name: Option<Spanned<String>>,
            pub exact: Option<Spanned<Scalar>>,
            pub label: Option<Spanned<String>>,
            pub text: Option<Spanned<String>>,
            pub testid: Option<Spanned<String>>,
            pub within: Option<Box<Spanned<Shorthand<RawLocator>>>>,
            pub nth: Option<Spanned<Scalar>>,
        }

        impl $name {
            /// This mapping's locator keys.
            pub(crate) fn locator_keys(&self) -> LocatorKeys<'_> {
                LocatorKeys {
                    selector: self.selector.as_ref(),
                    role: self.role.as_ref(),
                    name: self.name.as_ref(),
                    exact: self.exact.as_ref(),
                    label: self.label.as_ref(),
                    text: self.text.as_ref(),
                    testid: self.testid.as_ref(),
                    within: self.within.as_deref(),
                    nth: self.nth.as_ref(),
                }
            }
        }
    };
}

/// A locator's keys, borrowed from whichever mapping holds them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocatorKeys<'a> {
    pub selector: Option<&'a Spanned<String>>,
    pub role: Option<&'a Spanned<String>>,
    pub name: Option<&'a Spanned<String>>,
    pub exact: Option<&'a Spanned<Scalar>>,
    pub label: Option<&'a Spanned<String>>,
    pub text: Option<&'a Spanned<String>>,
    pub testid: Option<&'a Spanned<String>>,
    pub within: Option<&'a Spanned<Shorthand<RawLocator>>>,
    pub nth: Option<&'a Spanned<Scalar>>,
}

impl LocatorKeys<'_> {
    /// True when any locator key is present.
    pub(crate) fn any(&self) -> bool {
        self.selector.is_some()
            || self.role.is_some()
            || self.name.is_some()
            || self.exact.is_some()
            || self.label.is_some()
            || self.text.is_some()
            || self.testid.is_some()
            || self.within.is_some()
            || self.nth.is_some()
    }
}

/// The keys that say what kind of locator a mapping is; exactly one is required.
pub(crate) const LOCATOR_KINDS: &[&str] = &["selector", "role", "label", "text", "testid"];

with_locator_keys! {
    /// A locator written as a mapping: one kind key (`selector`, `role`, `label`, `text`,
    /// `testid`), with `name` and `exact` where the kind takes them, `within` and `nth`.
    RawLocator {}
}

/// Any YAML scalar, kept with what it was, for keys whose type validation reports itself
/// (`nth` must be an integer, `exact` a boolean) at the value's own line and column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// What was found instead (`"a sequence"`, `"a mapping"`, ...).
    Other(&'static str),
}

impl Scalar {
    /// How to name this value in a message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Scalar::Bool(b) => format!("the boolean {b}"),
            Scalar::Int(i) => format!("the integer {i}"),
            Scalar::Float(f) => format!("the number {f}"),
            Scalar::Str(s) => format!("the string {s:?}"),
            Scalar::Other(what) => (*what).to_owned(),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(i))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(u)
                    .map(Scalar::Int)
                    .unwrap_or(Scalar::Other("a number too large")))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(f))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(s.to_owned()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other("nothing"))
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other("nothing"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("a sequence"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("a mapping"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `wait_for`; the shorthand string is a selector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWaitFor {
    pub selector: Option<Spanned<String>>,
    pub element: Option<Spanned<Shorthand<RawLocator>>>,
    pub text: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub url_matches: Option<Spanned<String>>,
    pub network_idle: Option<Spanned<bool>>,
}

with_locator_keys! {
    /// One `match:` rule: a `field` extracted by a step, or a locator (its keys flattened)
    /// read when the rule is evaluated; `as` says how to compare; `required` (default true).
    RawMatchRule {
        field: Option<Spanned<String>>,
        from: Option<Spanned<String>>,
        #[serde(rename = "as")]
        compare: Option<Spanned<String>>,
        required: Option<Spanned<bool>>,
    }
}

with_locator_keys! {
    RawExtract {
        field: Option<Spanned<String>>,
        from: Option<Spanned<String>>,
        attribute: Option<Spanned<String>>,
        required: Option<Spanned<bool>>,
    }
}

with_locator_keys! {
    /// `assert`: a `field` or a locator (its keys flattened), and one check.
    RawAssert {
        field: Option<Spanned<String>>,
        equals: Option<Spanned<String>>,
        contains: Option<Spanned<String>>,
        matches: Option<Spanned<String>>,
    }
}

/// `screenshot`; the shorthand string is the name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScreenshot {
    pub name: Option<Spanned<String>>,
    pub element: Option<Spanned<Shorthand<RawLocator>>>,
    pub mask: Option<Spanned<Vec<Spanned<Shorthand<RawLocator>>>>>,
}

with_locator_keys! {
    RawFill {
        value: Option<Spanned<String>>,
        env: Option<Spanned<String>>,
        secret: Option<Spanned<bool>>,
    }
}

with_locator_keys! {
    RawSelect {
        value: Option<Spanned<String>>,
    }
}

with_locator_keys! {
    RawUpload {
        input: Option<Spanned<String>>,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubmit {
    pub control: Option<Spanned<Shorthand<RawLocator>>>,
    pub expect: Option<Spanned<RawExpect>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExpect {
    pub method: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub ignore: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A schema-free view of the document, used only to name the field a serde error points
/// at (serde-saphyr reports a line and column, not a path).
#[derive(Debug)]
pub(crate) enum Node {
    Scalar,
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

/// Deepest nesting [`Node`] reads. Playbooks nest about six levels; the limit keeps a
/// hostile file from exhausting a small (2 MiB worker-thread) stack while the error path
/// builds this tree.
const MAX_NODE_DEPTH: usize = 32;

thread_local! {
    static NODE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts one level of [`Node`] nesting for as long as it lives.
struct DepthGuard;

impl DepthGuard {
    fn enter() -> Option<DepthGuard> {
        NODE_DEPTH.with(|d| {
            if d.get() >= MAX_NODE_DEPTH {
                None
            } else {
                d.set(d.get() + 1);
                Some(DepthGuard)
            }
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        NODE_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Deepest nesting of [`Shorthand`] values (a locator `within` a locator `within` ...).
/// Real playbooks scope two or three levels deep.
pub(crate) const MAX_SHORTHAND_DEPTH: usize = 8;

thread_local! {
    static SHORTHAND_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts one level of [`Shorthand`] nesting for as long as it lives.
struct ShorthandDepth;

impl ShorthandDepth {
    fn enter() -> Option<ShorthandDepth> {
        SHORTHAND_DEPTH.with(|d| {
            if d.get() >= MAX_SHORTHAND_DEPTH {
                None
            } else {
                d.set(d.get() + 1);
                Some(ShorthandDepth)
            }
        })
    }
}

impl Drop for ShorthandDepth {
    fn drop(&mut self) {
        SHORTHAND_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Some(_guard) = DepthGuard::enter() else {
            return Err(de::Error::custom("document nested too deeply"));
        };
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(Node::Seq(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value()?;
                    out.push((key, value));
                }
                Ok(Node::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// 1-based (line, column) of a spanned value.
pub(crate) fn pos<T>(s: &Spanned<T>) -> (usize, usize) {
    (s.referenced.line() as usize, s.referenced.column() as usize)
}

impl Node {
    /// The path of the key or element that starts last at or before `(line, column)`:
    /// the field a serde error at that position is about.
    pub(crate) fn path_at(root: &Spanned<Node>, at: (usize, usize)) -> String {
        let mut best = (String::new(), (0usize, 0usize));
        fn walk(
            node: &Spanned<Node>,
            path: &str,
            at: (usize, usize),
            best: &mut (String, (usize, usize)),
        ) {
            fn consider(
                best: &mut (String, (usize, usize)),
                at: (usize, usize),
                p: String,
                loc: (usize, usize),
            ) {
                if loc <= at && loc >= best.1 && loc != (0, 0) {
                    *best = (p, loc);
                }
            }
            match &node.value {
                Node::Scalar => {}
                Node::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        consider(best, at, p.clone(), pos(item));
                        walk(item, &p, at, best);
                    }
                }
                Node::Map(entries) => {
                    for (key, value) in entries {
                        let p = if path.is_empty() {
                            key.value.clone()
                        } else {
                            format!("{path}.{}", key.value)
                        };
                        consider(best, at, p.clone(), pos(key));
                        walk(value, &p, at, best);
                    }
                }
            }
        }
        walk(root, "", at, &mut best);
        best.0
    }
}
