//! Navigation and waiting: `wait_for` (`goto` is a URL template, checked by
//! [`Validator::url_template`]).

use url::Url;

use super::super::raw::{pos, RawWaitFor, Shorthand, Spanned};
use super::super::{Action, Template, UrlPattern, WaitCondition};
use super::{sample_inputs, Validator, PLACEHOLDER_BASE};

const WAIT_HINT: &str = "give exactly one of `selector: CSS`, `element: LOCATOR`, `text: TEXT`, `url: GLOB`, `url_matches: REGEX` or `network_idle: true`";

impl Validator<'_> {
    pub(super) fn wait_for(
        &mut self,
        w: Spanned<Shorthand<RawWaitFor>>,
        field: &str,
    ) -> Option<Action> {
        let at = pos(&w);
        let w: RawWaitFor = match w.value {
            Shorthand::Short(s) => {
                return self
                    .css_locator(&s, at, field, "`wait_for` selector")
                    .map(|l| Action::WaitFor {
                        condition: WaitCondition::Visible(l),
                    })
            }
            Shorthand::Invalid(found) => {
                self.err_hint(
                    at,
                    field,
                    format!("`wait_for` expects a selector or a mapping, found {found}"),
                    "e.g. `wait_for: { selector: \"#order-status\" }`",
                );
                return None;
            }
            Shorthand::Full(w) => w,
        };
        let count = usize::from(w.selector.is_some())
            + usize::from(w.element.is_some())
            + usize::from(w.text.is_some())
            + usize::from(w.url.is_some())
            + usize::from(w.url_matches.is_some())
            + usize::from(w.network_idle.is_some());
        if count != 1 {
            self.err_hint(
                at,
                field,
                if count == 0 {
                    "`wait_for` has no condition"
                } else {
                    "`wait_for` has more than one condition"
                },
                WAIT_HINT,
            );
            return None;
        }
        let condition = if let Some(s) = &w.selector {
            WaitCondition::Visible(self.css_locator(
                &s.value,
                pos(s),
                &format!("{field}.selector"),
                "selector",
            )?)
        } else if let Some(e) = &w.element {
            WaitCondition::Visible(self.locator_value(e, &format!("{field}.element"), "element")?)
        } else if let Some(t) = &w.text {
            WaitCondition::Text(self.template(t, &format!("{field}.text"))?)
        } else if let Some(u) = &w.url {
            let ufield = format!("{field}.url");
            let t = self.template(u, &ufield)?;
            self.no_secrets_in_url_wait(&t, u, &ufield);
            let base = match self.channel {
                Some(c) => c.base_url.clone(),
                None => Url::parse(PLACEHOLDER_BASE).ok()?,
            };
            if let Err(e) = t.render_url_glob(&base, &sample_inputs(&t, "1")) {
                self.err_hint(
                    pos(u),
                    &ufield,
                    format!("bad URL glob `{}`: {e}", u.value),
                    "a path on the channel's base URL or a full URL; `*` matches any run without `/`, `**` any run (e.g. `/app/#/orders/{{order_id}}**`)",
                );
                return None;
            }
            WaitCondition::Url(UrlPattern::Glob(t))
        } else if let Some(r) = &w.url_matches {
            let rfield = format!("{field}.url_matches");
            let t = self.template(r, &rfield)?;
            self.no_secrets_in_url_wait(&t, r, &rfield);
            if let Err(e) = t.render_url_regex(&sample_inputs(&t, "1")) {
                let reason = match e {
                    super::super::TemplateError::BadRegex { reason, .. } => reason,
                    other => other.to_string(),
                };
                self.err_hint(
                    pos(r),
                    &rfield,
                    format!("invalid regex in `url_matches`: {reason}"),
                    "patterns use Rust regex syntax and match anywhere in the full URL; quote them with single quotes in YAML",
                );
                return None;
            }
            WaitCondition::Url(UrlPattern::Regex(t))
        } else {
            match &w.network_idle {
                Some(n) if n.value => WaitCondition::NetworkIdle,
                Some(n) => {
                    self.err_hint(
                        pos(n),
                        format!("{field}.network_idle"),
                        "`network_idle: false` waits for nothing",
                        "write `network_idle: true` or remove the step",
                    );
                    return None;
                }
                None => return None,
            }
        };
        Some(Action::WaitFor { condition })
    }

    /// A URL pattern is shown in the step's message when the wait fails, percent-encoded,
    /// where scrubbing would not recognise a secret.
    fn no_secrets_in_url_wait(&mut self, t: &Template, s: &Spanned<String>, field: &str) {
        for name in t.inputs() {
            if self.inputs.get(name).is_some_and(|d| d.secret) {
                self.err_hint(
                    pos(s),
                    field,
                    format!("secret input `{name}` is used in a URL pattern"),
                    "URL patterns appear in messages and records; wait for an element or a text instead",
                );
            }
        }
    }
}
