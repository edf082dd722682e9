//! Locators: a CSS selector string, or a mapping with exactly one kind key (`selector`,
//! `role`, `label`, `text`, `testid`), `name` and `exact` where the kind takes them, and
//! the modifiers `within` (a locator, recursively) and `nth` (an integer).

use super::super::diag::nearest;
use super::super::raw::{pos, LocatorKeys, RawLocator, Scalar, Shorthand, Spanned, LOCATOR_KINDS};
use super::super::{Locator, LocatorKind, ARIA_ROLES};
use super::Validator;

/// Hint for a locator that names no kind.
const KIND_HINT: &str = "give exactly one of `selector: CSS`, `role: ROLE` (with `name:`), `label: TEXT`, `text: TEXT` or `testid: ID`";

impl Validator<'_> {
    /// A locator written as a value: a CSS selector string or a locator mapping. `what` is
    /// the key it is the value of (`click`, `element`, `within`, ...), for messages.
    pub(super) fn locator_value(
        &mut self,
        v: &Spanned<Shorthand<RawLocator>>,
        field: &str,
        what: &str,
    ) -> Option<Locator> {
        let at = pos(v);
        match &v.value {
            Shorthand::Short(s) => self.css_locator(s, at, field, &format!("`{what}` selector")),
            Shorthand::Full(map) => self.locator_keys(map.locator_keys(), at, field, what),
            Shorthand::Invalid(found) => {
                self.err_hint(
                    at,
                    field,
                    format!(
                        "`{what}` expects a selector string or a locator mapping, found {found}"
                    ),
                    format!(
                        "e.g. `{what}: \"#element\"` or `{what}: {{ role: button, name: Save }}`"
                    ),
                );
                None
            }
        }
    }

    /// A CSS selector template at a known position.
    pub(super) fn css_locator(
        &mut self,
        css: &str,
        at: (usize, usize),
        field: &str,
        what: &str,
    ) -> Option<Locator> {
        if css.trim().is_empty() {
            self.err_hint(
                at,
                field,
                format!("{what} is empty"),
                "give a CSS selector, e.g. `\"#order-status\"`",
            );
            return None;
        }
        let t = self.template_at(css, at, field)?;
        Some(Locator {
            kind: LocatorKind::Css(t),
            within: None,
            nth: None,
        })
    }

    /// A locator from its keys (a locator mapping, or the keys flattened into a step's
    /// mapping). `field` is the path of that mapping, `at` its position; `what` names the
    /// step or key for messages.
    pub(super) fn locator_keys(
        &mut self,
        k: LocatorKeys<'_>,
        at: (usize, usize),
        field: &str,
        what: &str,
    ) -> Option<Locator> {
        let mut kinds: Vec<(&str, &Spanned<String>)> = [
            ("selector", k.selector),
            ("role", k.role),
            ("label", k.label),
            ("text", k.text),
            ("testid", k.testid),
        ]
        .into_iter()
        .filter_map(|(key, v)| v.map(|v| (key, v)))
        .collect();
        // In the order written, so the second one written is the one reported.
        kinds.sort_by_key(|(_, v)| pos(*v));
        let (kind, value) = match kinds.as_slice() {
            [] => {
                self.err_hint(
                    at,
                    field,
                    format!(
                        "`{what}` does not say which element: it has none of {}",
                        LOCATOR_KINDS
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    KIND_HINT,
                );
                return None;
            }
            [one] => *one,
            [(first, _), (second, v), ..] => {
                self.err_hint(
                    pos(v),
                    format!("{field}.{second}"),
                    format!("locator has both `{first}` and `{second}`"),
                    format!("{KIND_HINT}; to search inside another element use `within:`"),
                );
                return None;
            }
        };
        let mut ok = true;
        let exact = match k.exact {
            None => true,
            Some(e) => {
                if !matches!(kind, "role" | "label" | "text") {
                    self.err_hint(
                        pos(e),
                        format!("{field}.exact"),
                        "`exact` is only used with `role`, `label` or `text`",
                        format!("a `{kind}` locator always matches exactly; remove `exact`"),
                    );
                    ok = false;
                }
                match &e.value {
                    Scalar::Bool(b) => *b,
                    Scalar::Str(s)
                        if !self.untemplated_at(s, pos(e), &format!("{field}.exact")) =>
                    {
                        ok = false;
                        true
                    }
                    other => {
                        self.err_hint(
                            pos(e),
                            format!("{field}.exact"),
                            format!("`exact` must be true or false, found {}", other.describe()),
                            "`exact: true` (the default) compares the whole text; `exact: false` matches a case-insensitive substring",
                        );
                        ok = false;
                        true
                    }
                }
            }
        };
        if let Some(n) = k.name {
            if kind != "role" {
                self.err_hint(
                    pos(n),
                    format!("{field}.name"),
                    "`name` is only used with `role`",
                    format!("`name` is the accessible name of a `role:` locator; a `{kind}` locator takes no name"),
                );
                ok = false;
            }
        }
        let nth = match k.nth {
            None => None,
            Some(n) => match &n.value {
                Scalar::Int(i) => Some(*i),
                Scalar::Str(s) if !self.untemplated_at(s, pos(n), &format!("{field}.nth")) => {
                    ok = false;
                    None
                }
                other => {
                    self.err_hint(
                        pos(n),
                        format!("{field}.nth"),
                        format!("`nth` must be an integer, found {}", other.describe()),
                        "0 is the first match, 1 the second, -1 the last",
                    );
                    ok = false;
                    None
                }
            },
        };
        let within = match k.within {
            None => None,
            Some(w) => match self.locator_value(w, &format!("{field}.within"), "within") {
                Some(l) => Some(Box::new(l)),
                None => {
                    ok = false;
                    None
                }
            },
        };
        let kfield = format!("{field}.{kind}");
        let at = pos(value);
        let text = &value.value;
        let nonempty = |v: &mut Self| {
            if text.trim().is_empty() {
                v.err(at, &kfield, format!("`{kind}` is empty"));
                false
            } else {
                true
            }
        };
        let kind = match kind {
            "selector" => self
                .css_locator(text, at, &kfield, "selector")
                .map(|l| l.kind),
            "role" => {
                let role_ok = self.untemplated(value, &kfield)
                    && {
                        if ARIA_ROLES.contains(&text.as_str()) {
                            true
                        } else {
                            let hint = match nearest(text, ARIA_ROLES) {
                            Some(near) => format!("did you mean `{near}`? roles are the WAI-ARIA ones: button, link, textbox, checkbox, radio, combobox, listbox, option, switch, tab, heading, row, cell, dialog, ..."),
                            None => "roles are the WAI-ARIA ones: button, link, textbox, checkbox, radio, combobox, listbox, option, switch, tab, heading, row, cell, dialog, ...".to_owned(),
                        };
                            self.err_hint(at, &kfield, format!("unknown role `{text}`"), hint);
                            false
                        }
                    };
                let name = match k.name {
                    Some(n) if n.value.trim().is_empty() => {
                        self.err(pos(n), format!("{field}.name"), "`name` is empty");
                        ok = false;
                        None
                    }
                    Some(n) => {
                        let t = self.template(n, &format!("{field}.name"));
                        ok &= t.is_some();
                        t
                    }
                    None => None,
                };
                role_ok.then(|| LocatorKind::Role {
                    role: text.clone(),
                    name,
                    exact,
                })
            }
            "label" => nonempty(self)
                .then(|| self.template(value, &kfield))
                .flatten()
                .map(|text| LocatorKind::Label { text, exact }),
            "text" => nonempty(self)
                .then(|| self.template(value, &kfield))
                .flatten()
                .map(|text| LocatorKind::Text { text, exact }),
            _ => nonempty(self)
                .then(|| self.template(value, &kfield))
                .flatten()
                .map(LocatorKind::TestId),
        }?;
        if let LocatorKind::Role {
            role, name: None, ..
        } = &kind
        {
            if ok && within.is_none() && nth.is_none() && NAME_EXPECTED.contains(&role.as_str()) {
                self.err_hint(
                    at,
                    &kfield,
                    format!("`role: {role}` without `name` matches every {role} on the page"),
                    format!("add `name:` (the {role}'s accessible name, e.g. its label or text), or scope it with `within:` or pick one with `nth:`"),
                );
                return None;
            }
        }
        ok.then_some(Locator { kind, within, nth })
    }
}

/// Roles a page usually has many of: a locator of one of these needs a `name` (or a
/// `within` / `nth`) to say which. Landmarks and other one-per-page roles (`main`,
/// `dialog`, `alert`, ...) may go without.
const NAME_EXPECTED: &[&str] = &[
    "button",
    "cell",
    "checkbox",
    "columnheader",
    "combobox",
    "gridcell",
    "heading",
    "link",
    "listitem",
    "menuitem",
    "menuitemcheckbox",
    "menuitemradio",
    "option",
    "radio",
    "row",
    "rowheader",
    "searchbox",
    "slider",
    "spinbutton",
    "switch",
    "tab",
    "textbox",
    "treeitem",
];

#[cfg(test)]
mod tests {
    #[test]
    fn roles_are_sorted_and_unique() {
        let roles = super::ARIA_ROLES;
        assert!(roles.windows(2).all(|w| w[0] < w[1]));
        assert!(roles.contains(&"combobox") && roles.contains(&"switch"));
    }
}
