//! Reads: `extract`, `assert`, `screenshot`.

use super::super::diag::suggestion_hint;
use super::super::raw::{pos, RawAssert, RawExtract, RawScreenshot, Shorthand, Spanned};
use super::super::{Action, AssertCheck, AssertSubject, ExtractSource, ShotTarget, TemplateError};
use super::{is_input_name, sample_inputs, Validator};

impl Validator<'_> {
    pub(super) fn extract(&mut self, e: Spanned<RawExtract>, field: &str) -> Option<Action> {
        let at = pos(&e);
        let e = e.value;
        let name = match &e.field {
            Some(f) if !self.untemplated(f, &format!("{field}.field")) => None,
            Some(f) if is_input_name(&f.value) => {
                if let Some(first) = self.extracted.get(&f.value) {
                    self.err_hint(
                        pos(f),
                        format!("{field}.field"),
                        format!("field `{}` is already extracted at line {first}", f.value),
                        "give each extracted field a distinct name",
                    );
                } else {
                    self.extracted.insert(f.value.clone(), pos(f).0);
                }
                Some(f.value.clone())
            }
            Some(f) => {
                self.err_hint(
                    pos(f),
                    format!("{field}.field"),
                    format!("field name `{}` is not valid", f.value),
                    "field names are lowercase letters, digits and `_`",
                );
                None
            }
            None => {
                self.err_hint(
                    at,
                    field,
                    "`extract` is missing `field`",
                    "name the extracted value, e.g. `field: status`",
                );
                None
            }
        };
        let locator = self.locator_keys(e.locator_keys(), at, field, "extract");
        let from = match &e.from {
            Some(f) if !self.untemplated(f, &format!("{field}.from")) => return None,
            Some(f) => Some((f.value.as_str(), pos(f))),
            None => None,
        };
        let source = match (from, &e.attribute) {
            (None | Some(("text", _)), None) => Some(ExtractSource::Text),
            (Some(("value", _)), None) => Some(ExtractSource::Value),
            (None | Some(("attribute", _)), Some(a)) if !a.value.trim().is_empty() => self
                .attribute_name(a, &format!("{field}.attribute"))
                .map(ExtractSource::Attribute),
            (Some(("attribute", fat)), _) => {
                self.err_hint(
                    fat,
                    format!("{field}.attribute"),
                    "`from: attribute` needs a non-empty `attribute`",
                    "e.g. `attribute: href`",
                );
                None
            }
            (Some((other, fat)), None) if !matches!(other, "text" | "value") => {
                let hint = suggestion_hint(other, &["text", "value", "attribute"], "sources");
                self.err_hint(
                    fat,
                    format!("{field}.from"),
                    format!("unknown extract source `{other}`"),
                    hint,
                );
                None
            }
            (_, Some(a)) => {
                self.err_hint(
                    pos(a),
                    format!("{field}.attribute"),
                    "`attribute` is only used with `from: attribute`",
                    "remove `attribute` or write `from: attribute`",
                );
                None
            }
            (Some(_), None) => None,
        };
        Some(Action::Extract {
            field: name?,
            locator: locator?,
            source: source?,
            required: e.required.map(|r| r.value).unwrap_or(true),
        })
    }

    /// `extract.attribute`: a template that must render to an attribute name.
    fn attribute_name(
        &mut self,
        a: &Spanned<String>,
        field: &str,
    ) -> Option<super::super::Template> {
        let t = self.template(a, field)?;
        if t.render_attribute_name(&sample_inputs(&t, "a")).is_err() {
            self.err_hint(
                pos(a),
                field,
                format!("`{}` is not a valid attribute name", a.value),
                "attribute names are letters, digits, `-`, `_`, `:` and `.`, starting with a letter, `_` or `:` (e.g. `href`, `data-order-id`)",
            );
            return None;
        }
        Some(t)
    }

    pub(super) fn assert(&mut self, a: Spanned<RawAssert>, field: &str) -> Option<Action> {
        let at = pos(&a);
        let a = a.value;
        let keys = a.locator_keys();
        let subject = match &a.field {
            Some(_) if keys.any() => {
                self.err_hint(
                    at,
                    field,
                    "`assert` has both `field` and an element locator",
                    "assert on a `field` extracted earlier, or on the text of one element (`selector`, `role`, `label`, `text` or `testid`), not both",
                );
                None
            }
            Some(f) if !self.untemplated(f, &format!("{field}.field")) => None,
            Some(f) => {
                if !self.extracted.contains_key(&f.value) {
                    let known: Vec<&str> = self.extracted.keys().map(String::as_str).collect();
                    let hint = if known.is_empty() {
                        "no field is extracted before this step; add an `extract` step first"
                            .to_owned()
                    } else {
                        format!(
                            "assert on a field extracted by an earlier step; {}",
                            suggestion_hint(&f.value, &known, "fields")
                        )
                    };
                    self.err_hint(
                        pos(f),
                        format!("{field}.field"),
                        format!(
                            "assert on field `{}`, which no earlier step extracts",
                            f.value
                        ),
                        hint,
                    );
                }
                Some(AssertSubject::Field(f.value.clone()))
            }
            None if keys.any() => self
                .locator_keys(keys, at, field, "assert")
                .map(AssertSubject::Element),
            None => {
                self.err_hint(
                    at,
                    field,
                    "`assert` needs exactly one of `field` or an element locator",
                    "e.g. `assert: { field: status, equals: paid }` or `assert: { testid: order-status, equals: paid }`",
                );
                None
            }
        };
        let checks = usize::from(a.equals.is_some())
            + usize::from(a.contains.is_some())
            + usize::from(a.matches.is_some());
        if checks != 1 {
            self.err_hint(
                at,
                field,
                "`assert` needs exactly one of `equals`, `contains` or `matches`",
                "e.g. `matches: \"^(paid|shipped)$\"`",
            );
            return None;
        }
        let check = if let Some(e) = &a.equals {
            self.template(e, &format!("{field}.equals"))
                .map(AssertCheck::Equals)
        } else if let Some(c) = &a.contains {
            self.template(c, &format!("{field}.contains"))
                .map(AssertCheck::Contains)
        } else if let Some(m) = &a.matches {
            let mfield = format!("{field}.matches");
            match self.template(m, &mfield) {
                Some(t) => match t.render_regex(&sample_inputs(&t, "1")) {
                    Ok(_) => Some(AssertCheck::Matches(t)),
                    Err(e) => {
                        let reason = match e {
                            TemplateError::BadRegex { reason, .. } => reason,
                            other => other.to_string(),
                        };
                        self.err_hint(
                            pos(m),
                            mfield,
                            format!("invalid regex in `matches`: {reason}"),
                            "patterns use Rust regex syntax; quote them with single quotes in YAML; inputs are inserted as literal text",
                        );
                        None
                    }
                },
                None => None,
            }
        } else {
            None
        };
        Some(Action::Assert {
            subject: subject?,
            check: check?,
        })
    }

    pub(super) fn screenshot(
        &mut self,
        s: Spanned<Shorthand<RawScreenshot>>,
        field: &str,
    ) -> Option<Action> {
        let at = pos(&s);
        let (name, name_at, target, mask) = match s.value {
            Shorthand::Short(n) => (Some(n), at, Some(ShotTarget::FullPage), Some(Vec::new())),
            Shorthand::Invalid(found) => {
                self.err_hint(
                    at,
                    field,
                    format!("`screenshot` expects a name or a mapping, found {found}"),
                    "e.g. `screenshot: { name: order-page }`",
                );
                return None;
            }
            Shorthand::Full(r) => {
                let name_at = r.name.as_ref().map(pos).unwrap_or(at);
                let target = match &r.element {
                    Some(e) => self
                        .locator_value(e, &format!("{field}.element"), "element")
                        .map(ShotTarget::Element),
                    None => Some(ShotTarget::FullPage),
                };
                let mut mask = Some(Vec::new());
                for (i, m) in r.mask.iter().flat_map(|m| m.value.iter()).enumerate() {
                    match self.locator_value(m, &format!("{field}.mask[{i}]"), "mask") {
                        Some(l) => {
                            if let Some(v) = mask.as_mut() {
                                v.push(l);
                            }
                        }
                        None => mask = None,
                    }
                }
                (r.name.map(|n| n.value), name_at, target, mask)
            }
        };
        let Some(name) = name else {
            self.err_hint(
                at,
                field,
                "`screenshot` is missing `name`",
                "e.g. `screenshot: { name: order-page }`",
            );
            return None;
        };
        if !self.untemplated_at(&name, name_at, &format!("{field}.name")) {
            return None;
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            self.err_hint(
                name_at,
                format!("{field}.name"),
                format!("screenshot name `{name}` is not valid"),
                "use lowercase letters, digits, `-` and `_`, e.g. `order-page`",
            );
            return None;
        }
        if let Some(first) = self.shots.get(&name) {
            self.err_hint(name_at, format!("{field}.name"), format!("screenshot name `{name}` is already used at line {first}"), "give every screenshot a distinct name: reviewers and exports refer to them by name");
        } else {
            self.shots.insert(name.clone(), name_at.0);
        }
        Some(Action::Screenshot {
            name,
            target: target?,
            mask: mask?,
        })
    }
}
