//! Form input: `fill`, `select`, `upload` (`check` / `uncheck` take a bare locator).

use super::super::raw::{pos, RawFill, RawSelect, RawUpload, Spanned};
use super::super::{Action, InputKind, Mode, ValueSource};
use super::{is_env_name, Validator};

impl Validator<'_> {
    pub(super) fn fill(
        &mut self,
        f: Spanned<RawFill>,
        field: &str,
        mode: Option<Mode>,
    ) -> Option<Action> {
        let at = pos(&f);
        let f = f.value;
        let locator = self.locator_keys(f.locator_keys(), at, field, "fill");
        let value = match (&f.value, &f.env) {
            (Some(v), None) => {
                if mode == Some(Mode::Login) {
                    self.err_hint(pos(v), format!("{field}.value"), "in a login playbook `fill` values must come from `env`", "write `env: VAR_NAME` and export VAR_NAME before `clerk login`; credentials never go in files");
                }
                self.template(v, &format!("{field}.value"))
                    .map(ValueSource::Template)
            }
            (None, Some(e)) if !self.untemplated(e, &format!("{field}.env")) => None,
            (None, Some(e)) if is_env_name(&e.value) => Some(ValueSource::Env(e.value.clone())),
            (None, Some(e)) => {
                self.err_hint(
                    pos(e),
                    format!("{field}.env"),
                    format!("`{}` is not an environment variable name", e.value),
                    "use upper-case letters, digits and `_`, e.g. `SAMPLE_PASSWORD`",
                );
                None
            }
            (Some(_), Some(_)) => {
                self.err_hint(
                    at,
                    field,
                    "`fill` has both `value` and `env`",
                    "give exactly one of `value` or `env`",
                );
                None
            }
            (None, None) => {
                self.err_hint(
                    at,
                    field,
                    "`fill` is missing `value` or `env`",
                    "e.g. `value: \"{{amount}}\"` or `env: SAMPLE_PASSWORD`",
                );
                None
            }
        };
        let implied = match &value {
            Some(ValueSource::Env(_)) => true,
            Some(ValueSource::Template(t)) => t
                .inputs()
                .any(|n| self.inputs.get(n).is_some_and(|d| d.secret)),
            None => false,
        };
        let secret = match &f.secret {
            Some(s) if !s.value && implied => {
                self.err_hint(pos(s), format!("{field}.secret"), "`secret: false` on a value that comes from a secret", "values from `env` or from secret inputs are always masked; remove `secret: false`");
                true
            }
            Some(s) => s.value || implied,
            None => implied,
        };
        Some(Action::Fill {
            locator: locator?,
            value: value?,
            secret,
        })
    }

    pub(super) fn select(&mut self, s: Spanned<RawSelect>, field: &str) -> Option<Action> {
        let at = pos(&s);
        let s = s.value;
        let locator = self.locator_keys(s.locator_keys(), at, field, "select");
        let value = match &s.value {
            Some(v) => self.template(v, &format!("{field}.value")),
            None => {
                self.err_hint(
                    at,
                    field,
                    "`select` is missing `value`",
                    "give the option's value or its visible label, e.g. `value: \"{{reason}}\"`",
                );
                None
            }
        };
        Some(Action::Select {
            locator: locator?,
            value: value?,
        })
    }

    pub(super) fn upload(&mut self, u: Spanned<RawUpload>, field: &str) -> Option<Action> {
        let at = pos(&u);
        let u = u.value;
        let locator = self.locator_keys(u.locator_keys(), at, field, "upload");
        let input = match &u.input {
            Some(i) if !self.untemplated(i, &format!("{field}.input")) => None,
            Some(i) => match self.inputs.get(&i.value) {
                Some(d) if d.kind == InputKind::File => Some(i.value.clone()),
                Some(_) => {
                    self.err_hint(
                        pos(i),
                        format!("{field}.input"),
                        format!("upload input `{}` is not of type file", i.value),
                        format!("declare it with `type: file` under `inputs.{}`", i.value),
                    );
                    None
                }
                None => {
                    self.err_hint(
                        pos(i),
                        format!("{field}.input"),
                        format!("upload names undeclared input `{}`", i.value),
                        "declare it under `inputs:` with `type: file`",
                    );
                    None
                }
            },
            None => {
                self.err_hint(
                    at,
                    field,
                    "`upload` is missing `input`",
                    "name an input of type file, e.g. `input: photo`",
                );
                None
            }
        };
        Some(Action::Upload {
            locator: locator?,
            input: input?,
        })
    }
}
