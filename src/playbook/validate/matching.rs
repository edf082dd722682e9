//! `match:`: rules between a run's case claims and what the page shows.

use super::super::diag::suggestion_hint;
use super::super::raw::{pos, RawMatchRule, Spanned};
use super::super::{MatchRead, MatchRule, Mode, Step};
use super::{is_input_name, Validator};
use crate::case::Compare;

impl Validator<'_> {
    /// Validates every rule. `steps` are the validated steps (to check that a `field` is
    /// extracted, and before the first write step in draft and submit playbooks).
    pub(super) fn matching(
        &mut self,
        raw: Vec<(Spanned<String>, Spanned<RawMatchRule>)>,
        mode: Option<Mode>,
        steps: &[Step],
    ) -> Vec<MatchRule> {
        let mut out = Vec::new();
        if mode == Some(Mode::Login) {
            if let Some((k, _)) = raw.first() {
                self.err_hint(
                    pos(k),
                    "match",
                    "a login playbook has no case to match",
                    "remove `match:`; case claims are checked by the lookups and writes that work on a case",
                );
            }
            return out;
        }
        let first_write = steps.iter().find(|s| s.action.writes());
        let mut seen: Vec<String> = Vec::new();
        for (name, rule) in raw {
            let field = format!("match.{}", name.value);
            let at = pos(&rule);
            if !is_input_name(&name.value) {
                self.err_hint(
                    pos(&name),
                    "match",
                    format!("claim name `{}` is not valid", name.value),
                    "claim names are lowercase letters, digits and `_`, e.g. `customer` or `phone_last4`",
                );
                continue;
            }
            if seen.contains(&name.value) {
                self.err_hint(
                    pos(&name),
                    field,
                    format!("claim `{}` has two rules", name.value),
                    "give each claim one rule",
                );
                continue;
            }
            seen.push(name.value.clone());
            let r = rule.value;
            let compare = match &r.compare {
                None => Some(Compare::Text),
                Some(c) => match Compare::parse(c.value.trim()) {
                    Some(c) => Some(c),
                    None => {
                        let hint = suggestion_hint(&c.value, Compare::NAMES, "comparisons");
                        self.err_hint(
                            pos(c),
                            format!("{field}.as"),
                            format!("unknown comparison `{}`", c.value),
                            hint,
                        );
                        None
                    }
                },
            };
            let value = match &r.from {
                None => Some(false),
                Some(f) if f.value == "text" => Some(false),
                Some(f) if f.value == "value" => Some(true),
                Some(f) => {
                    let hint = suggestion_hint(&f.value, &["text", "value"], "sources");
                    self.err_hint(
                        pos(f),
                        format!("{field}.from"),
                        format!("unknown source `{}` for a match rule", f.value),
                        hint,
                    );
                    None
                }
            };
            let keys = r.locator_keys();
            let read = match (&r.field, keys.any()) {
                (Some(f), true) => {
                    self.err_hint(
                        pos(f),
                        format!("{field}.field"),
                        "a match rule reads either an extracted `field` or an element, not both",
                        "keep `field: NAME`, or the locator keys (`selector`, `testid`, ...)",
                    );
                    None
                }
                (Some(f), false) => {
                    if r.from.is_some() {
                        self.err_hint(
                            pos(f),
                            format!("{field}.from"),
                            "`from` applies to an element, not to an extracted field",
                            "remove `from`",
                        );
                    }
                    match self.extracted.get(&f.value).copied() {
                        None => {
                            let known: Vec<&str> =
                                self.extracted.keys().map(String::as_str).collect();
                            let hint = if known.is_empty() {
                                "no step extracts a field; read an element instead, e.g. `selector: \"#customer-name\"`".to_owned()
                            } else {
                                suggestion_hint(&f.value, &known, "extracted fields")
                            };
                            self.err_hint(
                                pos(f),
                                format!("{field}.field"),
                                format!("field `{}` is not extracted by any step", f.value),
                                hint,
                            );
                            None
                        }
                        Some(line) => match (mode, first_write) {
                            (Some(Mode::Draft | Mode::Submit), Some(w)) if line > w.line => {
                                self.err_hint(
                                    pos(f),
                                    format!("{field}.field"),
                                    format!(
                                        "field `{}` is extracted at line {line}, after the first write step (line {}): the case is matched before anything is filled",
                                        f.value, w.line
                                    ),
                                    "extract it before the first fill, select, check, upload or submit step, or read the element in the rule itself",
                                );
                                None
                            }
                            _ => Some(MatchRead::Field(f.value.clone())),
                        },
                    }
                }
                (None, true) => {
                    self.locator_keys(keys, at, &field, "match")
                        .map(|locator| MatchRead::Element {
                            locator,
                            value: value.unwrap_or(false),
                        })
                }
                (None, false) => {
                    self.err_hint(
                        at,
                        field,
                        "a match rule needs `field` or a locator",
                        "e.g. `customer: { selector: \"#customer-name\", as: name }` or `total: { field: total, as: amount }`",
                    );
                    None
                }
            };
            let (Some(read), Some(compare), Some(_)) = (read, compare, value) else {
                continue;
            };
            out.push(MatchRule {
                claim: name.value.clone(),
                read,
                compare,
                required: r.required.map(|r| r.value).unwrap_or(true),
                line: at.0,
            });
        }
        out
    }
}

impl Validator<'_> {
    /// `undo:`: only a submit playbook names one; every input source must exist.
    pub(super) fn undo(
        &mut self,
        raw: Spanned<super::super::raw::RawUndo>,
        mode: Option<Mode>,
    ) -> Option<super::super::Undo> {
        use super::super::{Undo, UndoSource};
        let at = pos(&raw);
        if mode.is_some_and(|m| m != Mode::Submit) {
            self.err_hint(
                at,
                "undo",
                "only a submit playbook names a compensating playbook",
                "remove `undo:`, or make the playbook `mode: submit`",
            );
            return None;
        }
        let raw = raw.value;
        let playbook = match &raw.playbook {
            Some(p) if super::is_playbook_name(&p.value) => Some(p.value.clone()),
            Some(p) => {
                self.err_hint(
                    pos(p),
                    "undo.playbook",
                    format!("`{}` is not a playbook name", p.value),
                    "name the compensating playbook, e.g. `playbook: refund-cancel`",
                );
                None
            }
            None => {
                self.err_hint(
                    at,
                    "undo.playbook",
                    "`undo` is missing `playbook`",
                    "e.g. `undo: { playbook: refund-cancel, inputs: { refund_id: field.refund_id } }`",
                );
                None
            }
        };
        let mut inputs = Vec::new();
        let mut ok = true;
        for (name, value) in raw.inputs.map(|i| i.value.0).unwrap_or_default() {
            let field = format!("undo.inputs.{}", name.value);
            let source = match value.value.split_once('.') {
                Some(("input", n)) if self.inputs.contains_key(n) => {
                    Some(UndoSource::Input(n.to_owned()))
                }
                Some(("field", n)) if self.extracted.contains_key(n) => {
                    Some(UndoSource::Field(n.to_owned()))
                }
                Some(("input", n)) => {
                    self.err_hint(
                        pos(&value),
                        field,
                        format!("`{n}` is not an input of this playbook"),
                        "use `input.NAME` with a declared input",
                    );
                    None
                }
                Some(("field", n)) => {
                    self.err_hint(
                        pos(&value),
                        field,
                        format!("no step extracts a field `{n}`"),
                        "use `field.NAME` with a field an `extract` step reads",
                    );
                    None
                }
                _ => {
                    self.err_hint(
                        pos(&value),
                        field,
                        format!("`{}` names no value of the submitted run", value.value),
                        "write `input.NAME` (the run's input) or `field.NAME` (a field it extracted)",
                    );
                    None
                }
            };
            match source {
                Some(s) => inputs.push((name.value.clone(), s)),
                None => ok = false,
            }
        }
        Some(Undo {
            playbook: playbook?,
            inputs,
        })
        .filter(|_| ok)
    }
}
