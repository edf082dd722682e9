//! `submit`: the control that sends the one write, and the write it must be.

use super::super::raw::{pos, RawSubmit, Spanned};
use super::super::{Action, ExpectedWrite};
use super::{Validator, WRITE_METHODS};

impl Validator<'_> {
    pub(super) fn submit(&mut self, s: Spanned<RawSubmit>, field: &str) -> Option<Action> {
        let at = pos(&s);
        let s = s.value;
        let control = match &s.control {
            Some(c) => self.locator_value(c, &format!("{field}.control"), "control"),
            None => {
                self.err_hint(
                    at,
                    format!("{field}.control"),
                    "missing `control` (the submit button's locator)",
                    "e.g. `control: \"#submit-refund\"` or `control: { role: button, name: \"Submit refund request\" }`",
                );
                None
            }
        };
        let Some(expect) = s.expect else {
            self.err_hint(at, field, "`submit` is missing `expect`", "say which request the submit must cause, e.g. `expect: { method: POST, url: \"/orders/{{order_id}}/refund\" }`");
            return None;
        };
        let eat = pos(&expect);
        let method = match &expect.value.method {
            Some(m) if !self.untemplated(m, &format!("{field}.expect.method")) => None,
            Some(m) => {
                let up = m.value.trim().to_ascii_uppercase();
                if WRITE_METHODS.contains(&up.as_str()) {
                    Some(up)
                } else {
                    self.err_hint(
                        pos(m),
                        format!("{field}.expect.method"),
                        format!("`{}` is not a write method", m.value),
                        format!("use one of {}", WRITE_METHODS.join(", ")),
                    );
                    None
                }
            }
            None => {
                self.err_hint(
                    eat,
                    format!("{field}.expect"),
                    "`expect` is missing `method`",
                    "e.g. `method: POST`",
                );
                None
            }
        };
        let url = match &expect.value.url {
            Some(u) => self.url_template(u, &format!("{field}.expect.url")),
            None => {
                self.err_hint(
                    eat,
                    format!("{field}.expect"),
                    "`expect` is missing `url`",
                    "e.g. `url: \"/orders/{{order_id}}/refund\"`",
                );
                None
            }
        };
        let mut ignore = Some(Vec::new());
        for (i, name) in expect
            .value
            .ignore
            .iter()
            .flat_map(|l| l.value.iter())
            .enumerate()
        {
            let ifield = format!("{field}.expect.ignore[{i}]");
            if !self.untemplated(name, &ifield) {
                ignore = None;
            } else if name.value.trim().is_empty() {
                self.err_hint(
                    pos(name),
                    ifield,
                    "`ignore` names an empty field",
                    "name a volatile body field, e.g. `requestId` (a JSON key at any depth or a form field name)",
                );
                ignore = None;
            } else if let Some(v) = ignore.as_mut() {
                if !v.contains(&name.value) {
                    v.push(name.value.clone());
                }
            }
        }
        Some(Action::Submit {
            control: control?,
            expect: ExpectedWrite {
                method: method?,
                url: url?,
                ignore: ignore?,
            },
        })
    }
}
