//! Locators: how a step names an element, and how that name is rendered for the browser.
//!
//! A locator is a CSS selector or one of the Playwright / Testing Library style queries
//! (by ARIA role and accessible name, by label, by text, by test id), optionally scoped to
//! the one element another locator finds (`within`) and optionally picking one of several
//! matches (`nth`). Every text in it is a [`Template`]; [`Locator::render`] fills the
//! inputs in, each context escaping for itself (CSS: [`super::css_escape`]; texts compared
//! by the browser-side engine: verbatim), and returns the JSON the isolated world's
//! locator engine takes.

use serde_json::{json, Map, Value};

use super::template::{Template, TemplateError, TemplatePart};
use super::Inputs;
use crate::browser::Find;

/// Where an element is, as a playbook says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    pub kind: LocatorKind,
    /// Search only inside the one element this locator finds.
    pub within: Option<Box<Locator>>,
    /// Which match to take (0-based; negative counts from the end). Without it, matching
    /// is strict: more than one match is an error.
    pub nth: Option<i64>,
}

/// What a locator matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocatorKind {
    /// A CSS selector; inserted inputs are escaped as `CSS.escape` does.
    Css(Template),
    /// An element of an ARIA role (explicit or implicit), optionally with an accessible
    /// name: equal after trimming and collapsing whitespace (`exact`), or a
    /// case-insensitive substring.
    Role {
        role: String,
        name: Option<Template>,
        exact: bool,
    },
    /// The control whose `<label>`, `aria-label` or `aria-labelledby` text is `text`.
    Label { text: Template, exact: bool },
    /// The smallest element whose visible text is `text`.
    Text { text: Template, exact: bool },
    /// The element whose test id attribute (per channel, `data-testid` by default) is this.
    TestId(Template),
}

impl Locator {
    /// A plain CSS selector with no inputs (for internal uses).
    pub fn css(selector: &str) -> Locator {
        Locator {
            kind: LocatorKind::Css(Template::literal(selector)),
            within: None,
            nth: None,
        }
    }

    /// Renders every template (CSS escapes inputs like `CSS.escape`, texts are verbatim)
    /// and returns the JSON the browser-side engine takes: `{"css": ..}`,
    /// `{"role": .., "name": .., "exact": ..}`, `{"label": .., "exact": ..}`,
    /// `{"text": .., "exact": ..}` or `{"testid": .., "attr": ..}`, with `"within"` (the
    /// same shape) and `"nth"` when given.
    pub fn render(&self, inputs: &Inputs, testid_attribute: &str) -> Result<Value, TemplateError> {
        let mut out = Map::new();
        match &self.kind {
            LocatorKind::Css(t) => {
                out.insert("css".into(), json!(t.render_css(inputs)?));
            }
            LocatorKind::Role { role, name, exact } => {
                out.insert("role".into(), json!(role));
                if let Some(name) = name {
                    out.insert("name".into(), json!(name.render_text(inputs)?));
                }
                out.insert("exact".into(), json!(exact));
            }
            LocatorKind::Label { text, exact } => {
                out.insert("label".into(), json!(text.render_text(inputs)?));
                out.insert("exact".into(), json!(exact));
            }
            LocatorKind::Text { text, exact } => {
                out.insert("text".into(), json!(text.render_text(inputs)?));
                out.insert("exact".into(), json!(exact));
            }
            LocatorKind::TestId(id) => {
                out.insert("testid".into(), json!(id.render_text(inputs)?));
                out.insert("attr".into(), json!(testid_attribute));
            }
        }
        if let Some(within) = &self.within {
            out.insert("within".into(), within.render(inputs, testid_attribute)?);
        }
        if let Some(nth) = self.nth {
            out.insert("nth".into(), json!(nth));
        }
        Ok(Value::Object(out))
    }

    /// [`Locator::display`] with every template rendered as the browser searched it (CSS
    /// escaped, texts verbatim), so a message in a batch names the value that failed.
    /// Values in `masked` (secrets) are shown as `<secret>`. Falls back to the templates as
    /// written if one does not render.
    pub fn display_rendered(&self, inputs: &Inputs, masked: &[String]) -> String {
        let inexact = |exact: bool| if exact { "" } else { "i" };
        let text = |t: &Template| -> String {
            let mut v = t.render_text(inputs).unwrap_or_else(|_| t.source.clone());
            for m in masked.iter().filter(|m| !m.is_empty()) {
                v = v.replace(m.as_str(), super::SECRET);
            }
            v
        };
        let own = match &self.kind {
            LocatorKind::Css(t) => {
                let mut v = t.render_css(inputs).unwrap_or_else(|_| t.source.clone());
                for m in masked.iter().filter(|m| !m.is_empty()) {
                    v = v.replace(m.as_str(), super::SECRET);
                    v = v.replace(&super::css_escape(m), super::SECRET);
                }
                v
            }
            LocatorKind::Role { role, name, exact } => match name {
                Some(n) => format!("role={role}[name={:?}{}]", text(n), inexact(*exact)),
                None => format!("role={role}"),
            },
            LocatorKind::Label { text: t, exact } => {
                format!("label {:?}{}", text(t), inexact(*exact))
            }
            LocatorKind::Text { text: t, exact } => {
                format!("text {:?}{}", text(t), inexact(*exact))
            }
            LocatorKind::TestId(id) => format!("testid {:?}", text(id)),
        };
        let mut out = match &self.within {
            Some(w) => format!("{} >> {own}", w.display_rendered(inputs, masked)),
            None => own,
        };
        if let Some(n) = self.nth {
            out.push_str(&format!(" >> nth={n}"));
        }
        out
    }

    /// Short human form for messages, with templates as written: `#save`,
    /// `role=button[name="Save"]`, `label "Amount"`, `text "Next" >> nth=1`,
    /// `#form >> role=button`; a case-insensitive substring match ends in `i`.
    pub fn display(&self) -> String {
        let inexact = |exact: bool| if exact { "" } else { "i" };
        let own = match &self.kind {
            LocatorKind::Css(t) => t.source.clone(),
            LocatorKind::Role { role, name, exact } => match name {
                Some(n) => format!("role={role}[name={:?}{}]", n.source, inexact(*exact)),
                None => format!("role={role}"),
            },
            LocatorKind::Label { text, exact } => {
                format!("label {:?}{}", text.source, inexact(*exact))
            }
            LocatorKind::Text { text, exact } => {
                format!("text {:?}{}", text.source, inexact(*exact))
            }
            LocatorKind::TestId(id) => format!("testid {:?}", id.source),
        };
        let mut out = match &self.within {
            Some(w) => format!("{} >> {own}", w.display()),
            None => own,
        };
        if let Some(n) = self.nth {
            out.push_str(&format!(" >> nth={n}"));
        }
        out
    }

    /// Every template in this locator and the ones it is within (for input checks).
    pub fn templates(&self) -> Vec<&Template> {
        let mut out: Vec<&Template> = match &self.kind {
            LocatorKind::Css(t) | LocatorKind::TestId(t) => vec![t],
            LocatorKind::Role { name, .. } => name.iter().collect(),
            LocatorKind::Label { text, .. } | LocatorKind::Text { text, .. } => vec![text],
        };
        if let Some(w) = &self.within {
            out.extend(w.templates());
        }
        out
    }
}

impl Template {
    /// A template with no inputs: `text` exactly as given, `{{` included.
    pub fn literal(text: &str) -> Template {
        Template {
            source: text.to_owned(),
            parts: if text.is_empty() {
                vec![]
            } else {
                vec![TemplatePart::Literal(text.to_owned())]
            },
        }
    }
}

/// WAI-ARIA roles a `role:` locator accepts (ARIA 1.2's concrete roles, as Playwright's
/// `getByRole` lists them).
pub const ARIA_ROLES: &[&str] = &[
    "alert",
    "alertdialog",
    "application",
    "article",
    "banner",
    "blockquote",
    "button",
    "caption",
    "cell",
    "checkbox",
    "code",
    "columnheader",
    "combobox",
    "complementary",
    "contentinfo",
    "definition",
    "deletion",
    "dialog",
    "directory",
    "document",
    "emphasis",
    "feed",
    "figure",
    "form",
    "generic",
    "grid",
    "gridcell",
    "group",
    "heading",
    "img",
    "insertion",
    "link",
    "list",
    "listbox",
    "listitem",
    "log",
    "main",
    "marquee",
    "math",
    "menu",
    "menubar",
    "menuitem",
    "menuitemcheckbox",
    "menuitemradio",
    "meter",
    "navigation",
    "none",
    "note",
    "option",
    "paragraph",
    "presentation",
    "progressbar",
    "radio",
    "radiogroup",
    "region",
    "row",
    "rowgroup",
    "rowheader",
    "scrollbar",
    "search",
    "searchbox",
    "separator",
    "slider",
    "spinbutton",
    "status",
    "strong",
    "subscript",
    "superscript",
    "switch",
    "tab",
    "table",
    "tablist",
    "tabpanel",
    "term",
    "textbox",
    "time",
    "timer",
    "toolbar",
    "tooltip",
    "tree",
    "treegrid",
    "treeitem",
];

/// A playbook locator rendered for the browser: templates filled in (CSS-escaped in
/// selectors), the channel's test id attribute applied.
pub fn render_find(
    locator: &Locator,
    inputs: &Inputs,
    testid_attribute: &str,
    masked: &[String],
) -> Result<Find, TemplateError> {
    Ok(Find {
        spec: locator.render(inputs, testid_attribute)?,
        display: locator.display_rendered(inputs, masked),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        match Template::parse(s) {
            Ok(t) => t,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn inputs(pairs: &[(&str, &str)]) -> Inputs {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn loc(kind: LocatorKind) -> Locator {
        Locator {
            kind,
            within: None,
            nth: None,
        }
    }

    #[test]
    fn renders_every_kind_to_the_engine_json() {
        let i = inputs(&[("id", "SO-1\"]"), ("who", "Ann \"A\"")]);
        let css = loc(LocatorKind::Css(t("[data-order-id=\"{{id}}\"] .ref")));
        assert_eq!(
            css.render(&i, "data-testid").ok(),
            Some(json!({"css": "[data-order-id=\"SO-1\\\"\\]\"] .ref"}))
        );
        let role = loc(LocatorKind::Role {
            role: "button".into(),
            name: Some(t("Refund {{who}}")),
            exact: false,
        });
        assert_eq!(
            role.render(&i, "data-testid").ok(),
            Some(json!({"role": "button", "name": "Refund Ann \"A\"", "exact": false}))
        );
        let bare = loc(LocatorKind::Role {
            role: "dialog".into(),
            name: None,
            exact: true,
        });
        assert_eq!(
            bare.render(&i, "data-testid").ok(),
            Some(json!({"role": "dialog", "exact": true}))
        );
        let label = loc(LocatorKind::Label {
            text: t("Amount"),
            exact: true,
        });
        assert_eq!(
            label.render(&i, "x").ok(),
            Some(json!({"label": "Amount", "exact": true}))
        );
        let text = Locator {
            kind: LocatorKind::Text {
                text: t("Order {{id}}"),
                exact: true,
            },
            within: Some(Box::new(Locator {
                kind: LocatorKind::TestId(t("order-{{id}}")),
                within: Some(Box::new(Locator::css("#main"))),
                nth: None,
            })),
            nth: Some(-1),
        };
        assert_eq!(
            text.render(&i, "data-qa").ok(),
            Some(json!({
                "text": "Order SO-1\"]",
                "exact": true,
                "within": {"testid": "order-SO-1\"]", "attr": "data-qa", "within": {"css": "#main"}},
                "nth": -1
            }))
        );
    }

    #[test]
    fn displays_like_the_contract() {
        assert_eq!(Locator::css("#save").display(), "#save");
        let role = loc(LocatorKind::Role {
            role: "button".into(),
            name: Some(t("Save")),
            exact: true,
        });
        assert_eq!(role.display(), "role=button[name=\"Save\"]");
        let label = loc(LocatorKind::Label {
            text: t("Amount"),
            exact: true,
        });
        assert_eq!(label.display(), "label \"Amount\"");
        let next = Locator {
            nth: Some(1),
            ..loc(LocatorKind::Text {
                text: t("Next"),
                exact: false,
            })
        };
        assert_eq!(next.display(), "text \"Next\"i >> nth=1");
        let scoped = Locator {
            within: Some(Box::new(Locator::css("#form"))),
            ..loc(LocatorKind::Role {
                role: "button".into(),
                name: None,
                exact: true,
            })
        };
        assert_eq!(scoped.display(), "#form >> role=button");
        let id = loc(LocatorKind::TestId(t("order-{{id}}")));
        assert_eq!(id.display(), "testid \"order-{{id}}\"");
    }

    #[test]
    fn literal_templates_keep_braces() {
        let l = Locator::css("a[title='{{x}}']");
        assert_eq!(
            l.render(&Inputs::new(), "data-testid").ok(),
            Some(json!({"css": "a[title='{{x}}']"}))
        );
        assert!(Template::literal("").parts.is_empty());
    }

    #[test]
    fn templates_lists_nested_ones() {
        let l = Locator {
            within: Some(Box::new(loc(LocatorKind::TestId(t("{{a}}"))))),
            ..loc(LocatorKind::Role {
                role: "row".into(),
                name: Some(t("{{b}}")),
                exact: true,
            })
        };
        let names: Vec<&str> = l.templates().iter().flat_map(|t| t.inputs()).collect();
        assert_eq!(names, vec!["b", "a"]);
    }
}
