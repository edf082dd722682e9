//! `{{input}}` templates.
//!
//! A template is a string in which `{{name}}` (spaces inside the braces allowed) stands for
//! the value of a declared input. Templates appear in URLs (`goto`, `submit.expect.url`,
//! `wait_for.url`), selectors and the texts of locators, filled and selected values,
//! waited-for text, assertions and extracted attribute names.
//!
//! Each context a template is rendered in escapes the inserted values for itself:
//!
//! - [`Template::render_text`] substitutes values verbatim: a refund note must reach the
//!   form exactly as the operator typed it.
//! - [`Template::render_css`] escapes every substituted value exactly as `CSS.escape` does
//!   (see [`css_escape`]): the result is one identifier's worth of characters, valid both
//!   as an identifier and inside a quoted attribute value, so no input can add a combinator,
//!   a comma, a bracket or a quote to a selector.
//! - [`Template::render_regex`] inserts each value as a literal (`regex::escape`).
//! - [`Template::render_url`] percent-encodes every substituted byte outside the RFC 3986
//!   unreserved set, then proves the rendered URL has the same shape as the template
//!   (origin, path depth, literal path prefix, query and fragment structure). An input value
//!   such as `../admin?x=1#` therefore can never steer a run to another page, another
//!   origin or another query: it stays inside the one path segment or query value the
//!   playbook author put it in.

use url::Url;

use super::Inputs;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The text as written in the playbook.
    pub source: String,
    /// Literal text and input references, in order; adjacent literals are merged.
    pub parts: Vec<TemplatePart>,
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    /// The name of a declared input.
    Input(String),
}

/// Why a template cannot be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{{{` at character {offset}; close it with `}}}}`")]
    Unclosed { offset: usize },
    #[error("empty input name in `{{{{}}}}` at character {offset}")]
    EmptyName { offset: usize },
    #[error("`{name}` is not a valid input name (use lowercase letters, digits and `_`, starting with a letter or `_`)")]
    InvalidName { name: String },
    #[error("template names undeclared input `{name}`")]
    UndeclaredInput { name: String },
    #[error("input `{name}` would change the structure of the URL: {reason}")]
    StructureChanged { name: String, reason: String },
    #[error("bad URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("regex `{pattern}` is invalid: {reason}")]
    BadRegex { pattern: String, reason: String },
    #[error("`{name}` is not a valid attribute name (expected letters, digits, `-`, `_`, `:` or `.`, not starting with a digit, `-` or `.`)")]
    BadAttributeName { name: String },
    #[error(transparent)]
    UrlPattern(#[from] crate::url_pattern::UrlPatternError),
}

/// True for `[a-z_][a-z0-9_]*`, the shape of input names.
pub(crate) fn is_input_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Percent-encodes every byte outside the RFC 3986 unreserved set (`A-Z a-z 0-9 - . _ ~`),
/// so that no value can introduce `/`, `?`, `#`, `%`, `&`, `=`, `@`, `:` or whitespace
/// into a URL.
pub(crate) fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes `value` as the CSSOM's `CSS.escape` does
/// (<https://drafts.csswg.org/cssom/#serialize-an-identifier>): NUL becomes U+FFFD; control
/// characters (U+0001–U+001F, U+007F), a leading digit and a digit after a leading `-`
/// become hex escapes followed by a space (`\31 `); a lone `-` becomes `\-`; every other
/// ASCII character except `[A-Za-z0-9_-]` is backslash-escaped; characters from U+0080 up
/// are kept. The result is valid as an identifier and inside a quoted string alike.
pub fn css_escape(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let hex = |out: &mut String| out.push_str(&format!("\\{:x} ", u32::from(c)));
        if c == '\0' {
            out.push('\u{FFFD}');
        } else if matches!(c, '\u{1}'..='\u{1f}' | '\u{7f}')
            || (i == 0 && c.is_ascii_digit())
            || (i == 1 && c.is_ascii_digit() && chars[0] == '-')
        {
            hex(&mut out);
        } else if i == 0 && c == '-' && chars.len() == 1 {
            out.push_str("\\-");
        } else if u32::from(c) >= 0x80 || c == '-' || c == '_' || c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('\\');
            out.push(c);
        }
    }
    out
}

/// `[A-Za-z_:][-A-Za-z0-9_:.]*`, the names `getAttribute` can be asked for in playbooks.
pub(crate) fn is_attribute_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
}

/// The last line of a regex error ("error: unclosed group"), without the `error: `.
pub(crate) fn regex_reason(s: &str) -> String {
    let last = s
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

/// Where in a URL template an input sits; decides what an empty value would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlPart {
    Authority,
    Path,
    QueryOrFragment,
}

/// Placeholder used to learn the template's own URL shape; made only of unreserved
/// characters so it cannot alter that shape itself.
const PLACEHOLDER: &str = "clerk-input-placeholder";

impl Template {
    /// Parses `{{name}}` references; everything else is literal.
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let mut parts: Vec<TemplatePart> = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        let mut consumed = 0usize;
        while let Some(open) = rest.find("{{") {
            literal.push_str(&rest[..open]);
            let after_open = &rest[open + 2..];
            let Some(close) = after_open.find("}}") else {
                return Err(TemplateError::Unclosed {
                    offset: s[..consumed + open].chars().count(),
                });
            };
            let name = after_open[..close].trim();
            if name.is_empty() {
                return Err(TemplateError::EmptyName {
                    offset: s[..consumed + open].chars().count(),
                });
            }
            if !is_input_name(name) {
                return Err(TemplateError::InvalidName {
                    name: name.to_owned(),
                });
            }
            if !literal.is_empty() {
                parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(TemplatePart::Input(name.to_owned()));
            let advance = open + 2 + close + 2;
            consumed += advance;
            rest = &rest[advance..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        Ok(Template {
            source: s.to_owned(),
            parts,
        })
    }

    /// Names of the inputs referenced, in order of appearance (repeats included).
    pub fn inputs(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Input(name) => Some(name.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    /// True when the template references no input at all.
    pub fn is_literal(&self) -> bool {
        self.inputs().next().is_none()
    }

    /// Plain substitution, for values typed into forms and texts compared on pages.
    /// A missing (optional, not given) input renders as the empty string.
    pub fn render_text(&self, inputs: &Inputs) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Input(name) => {
                    if let Some(value) = inputs.get(name) {
                        out.push_str(value);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Substitutes every input through `escape` (a missing optional input is empty).
    fn render_with(&self, inputs: &Inputs, escape: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Input(name) => {
                    out.push_str(&escape(inputs.get(name).map(String::as_str).unwrap_or("")))
                }
            }
        }
        out
    }

    /// Renders a CSS selector: the literal parts as written, every inserted value escaped
    /// as `CSS.escape` does ([`css_escape`]), so a value can never change the selector's
    /// structure (`"] , *` stays one run of characters of one identifier or string).
    pub fn render_css(&self, inputs: &Inputs) -> Result<String, TemplateError> {
        Ok(self.render_with(inputs, css_escape))
    }

    /// Renders a regular expression: the literal parts are regex syntax, every inserted
    /// value matches itself literally (`regex::escape`).
    pub fn render_regex(&self, inputs: &Inputs) -> Result<regex::Regex, TemplateError> {
        let pattern = self.render_with(inputs, regex::escape);
        regex::Regex::new(&pattern).map_err(|e| TemplateError::BadRegex {
            reason: regex_reason(&e.to_string()),
            pattern,
        })
    }

    /// Renders an attribute name (`extract.attribute`); the result must be one XML-style
    /// name, `[A-Za-z_:][-A-Za-z0-9_:.]*`.
    pub fn render_attribute_name(&self, inputs: &Inputs) -> Result<String, TemplateError> {
        let name = self.render_with(inputs, str::to_owned);
        if is_attribute_name(&name) {
            Ok(name)
        } else {
            Err(TemplateError::BadAttributeName { name })
        }
    }

    /// Renders a URL glob (`wait_for.url`): every value percent-encoded as in
    /// [`Template::render_url`] (so `*` in a value is `%2A`, never a wildcard), then
    /// compiled by [`crate::url_pattern::glob`] against `base`.
    pub fn render_url_glob(
        &self,
        base: &Url,
        inputs: &Inputs,
    ) -> Result<regex::Regex, TemplateError> {
        self.refuse_dot_segments(inputs)?;
        let glob = self.render_with(inputs, encode_component);
        Ok(crate::url_pattern::glob(&glob, base)?)
    }

    /// Renders a URL regex (`wait_for.url_matches`): every value percent-encoded as in a
    /// URL, then inserted literally.
    pub fn render_url_regex(&self, inputs: &Inputs) -> Result<regex::Regex, TemplateError> {
        let pattern = self.render_with(inputs, |v| regex::escape(&encode_component(v)));
        regex::Regex::new(&pattern).map_err(|e| TemplateError::BadRegex {
            reason: regex_reason(&e.to_string()),
            pattern,
        })
    }

    /// `.` and `..` are unreserved, so percent-encoding leaves them; as a path segment they
    /// would move the URL up a level.
    fn refuse_dot_segments(&self, inputs: &Inputs) -> Result<(), TemplateError> {
        for name in self.inputs() {
            let value = inputs.get(name).map(String::as_str).unwrap_or("");
            if value == "." || value == ".." {
                return Err(TemplateError::StructureChanged {
                    name: name.to_owned(),
                    reason: format!("the value `{value}` is a relative path segment"),
                });
            }
        }
        Ok(())
    }

    /// Renders a URL template: a path joined to `base`, or an absolute URL.
    ///
    /// Every substituted value is percent-encoded (see [`encode_component`]); values that
    /// are exactly `.` or `..` are refused (they are unreserved, so encoding alone would not
    /// neutralise them); an input inside the scheme or host is refused; an empty value in
    /// the path is refused (it would make `/orders//refund`). The result must have the
    /// template's origin, path depth, literal path prefix and query/fragment structure.
    pub fn render_url(&self, base: &Url, inputs: &Inputs) -> Result<Url, TemplateError> {
        let absolute = has_scheme(&self.source);
        let mut rendered = String::new();
        let mut shape = String::new();
        let mut part_kind = if absolute {
            UrlPart::Authority
        } else {
            UrlPart::Path
        };
        let mut literal_so_far = String::new();
        let mut first_input_at: Option<usize> = None;
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => {
                    rendered.push_str(text);
                    shape.push_str(text);
                    literal_so_far.push_str(text);
                    part_kind = classify(&literal_so_far, absolute);
                }
                TemplatePart::Input(name) => {
                    let value = inputs.get(name).map(String::as_str).unwrap_or("");
                    match part_kind {
                        UrlPart::Authority => {
                            return Err(TemplateError::StructureChanged {
                                name: name.clone(),
                                reason: "inputs may not appear in the scheme or host".to_owned(),
                            })
                        }
                        UrlPart::Path if value.is_empty() => {
                            return Err(TemplateError::StructureChanged {
                                name: name.clone(),
                                reason: "an empty value would leave an empty path segment"
                                    .to_owned(),
                            })
                        }
                        _ => {}
                    }
                    if value == "." || value == ".." {
                        return Err(TemplateError::StructureChanged {
                            name: name.clone(),
                            reason: format!("the value `{value}` is a relative path segment"),
                        });
                    }
                    first_input_at.get_or_insert(shape.len());
                    rendered.push_str(&encode_component(value));
                    shape.push_str(PLACEHOLDER);
                    literal_so_far.push_str(PLACEHOLDER);
                }
            }
        }
        let resolve = |text: &str| -> Result<Url, TemplateError> {
            let parsed = if absolute {
                Url::parse(text)
            } else {
                base.join(text)
            };
            parsed.map_err(|e| TemplateError::BadUrl {
                url: text.to_owned(),
                reason: e.to_string(),
            })
        };
        let expected = resolve(&shape)?;
        let actual = resolve(&rendered)?;
        if !matches!(expected.scheme(), "http" | "https") {
            return Err(TemplateError::BadUrl {
                url: self.source.clone(),
                reason: format!("scheme `{}` is not http or https", expected.scheme()),
            });
        }
        if !absolute && expected.origin() != base.origin() {
            return Err(TemplateError::BadUrl {
                url: self.source.clone(),
                reason: "a path must stay on the channel's base URL; write a full URL instead"
                    .to_owned(),
            });
        }
        let blame = || self.inputs().next().unwrap_or("?").to_owned();
        let changed = |reason: &str| TemplateError::StructureChanged {
            name: blame(),
            reason: reason.to_owned(),
        };
        if actual.origin() != expected.origin() {
            return Err(changed("the origin changed"));
        }
        let segments = |u: &Url| u.path_segments().map(|s| s.count()).unwrap_or(0);
        if segments(&actual) != segments(&expected) {
            return Err(changed("the number of path segments changed"));
        }
        let expected_path = expected.path();
        let prefix = match expected_path.find(PLACEHOLDER) {
            Some(at) => &expected_path[..at],
            None => expected_path,
        };
        let prefix_ok = if expected_path.contains(PLACEHOLDER) {
            actual.path().starts_with(prefix)
        } else {
            actual.path() == expected_path
        };
        if !prefix_ok {
            return Err(changed("the literal path prefix changed"));
        }
        let pairs = |u: &Url| u.query().map(|q| q.split('&').count());
        if pairs(&actual) != pairs(&expected) {
            return Err(changed("the query structure changed"));
        }
        if actual.fragment().is_some() != expected.fragment().is_some() {
            return Err(changed("the fragment changed"));
        }
        Ok(actual)
    }
}

/// True when `s` starts with `scheme:` (RFC 3986: a letter, then letters, digits, `+-.`).
pub(crate) fn has_scheme(s: &str) -> bool {
    let Some(colon) = s.find(':') else {
        return false;
    };
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Which URL component the text after `literal` falls into.
fn classify(literal: &str, absolute: bool) -> UrlPart {
    if literal.contains('?') || literal.contains('#') {
        return UrlPart::QueryOrFragment;
    }
    if absolute {
        // `scheme://authority/...`: the path starts at the first `/` after `//`.
        let after_scheme = literal.find(':').map(|c| &literal[c + 1..]).unwrap_or("");
        let Some(authority) = after_scheme.strip_prefix("//") else {
            return UrlPart::Path;
        };
        if authority.contains('/') {
            UrlPart::Path
        } else {
            UrlPart::Authority
        }
    } else if literal.starts_with("//") && !literal[2..].contains('/') {
        UrlPart::Authority
    } else {
        UrlPart::Path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> Inputs {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn base() -> Url {
        Url::parse("http://127.0.0.1:8080/").expect("static URL")
    }

    #[test]
    fn parses_inputs_with_spaces_and_literals() {
        let t = Template::parse("/orders/{{ order_id }}/refund?x={{amount}}").expect("valid");
        assert_eq!(
            t.parts,
            vec![
                TemplatePart::Literal("/orders/".into()),
                TemplatePart::Input("order_id".into()),
                TemplatePart::Literal("/refund?x=".into()),
                TemplatePart::Input("amount".into()),
            ]
        );
        assert_eq!(t.inputs().collect::<Vec<_>>(), vec!["order_id", "amount"]);
    }

    #[test]
    fn rejects_malformed_templates() {
        assert_eq!(
            Template::parse("/a/{{id"),
            Err(TemplateError::Unclosed { offset: 3 })
        );
        assert_eq!(
            Template::parse("x{{  }}"),
            Err(TemplateError::EmptyName { offset: 1 })
        );
        assert!(matches!(
            Template::parse("{{Order-Id}}"),
            Err(TemplateError::InvalidName { .. })
        ));
        assert_eq!(
            Template::parse("a } b { c").map(|t| t.is_literal()),
            Ok(true)
        );
    }

    #[test]
    fn text_rendering_is_verbatim_and_tolerates_missing_optionals() {
        let t = Template::parse("Refund {{amount}} for {{note}}!").expect("valid");
        let out = t
            .render_text(&inputs(&[("amount", "12.50 / ?#")]))
            .expect("renders");
        assert_eq!(out, "Refund 12.50 / ?# for !");
    }

    #[test]
    fn hostile_values_stay_inside_one_path_segment() {
        let t = Template::parse("/orders/{{order_id}}/refund").expect("valid");
        for value in [
            "../admin?x=1#",
            "a b",
            "ünï/cödé",
            "ü/é",
            "%2e%2e",
            "..%2f..",
            "//evil.example",
        ] {
            let url = t
                .render_url(&base(), &inputs(&[("order_id", value)]))
                .expect(value);
            assert_eq!(url.host_str(), Some("127.0.0.1"), "{value}");
            assert_eq!(url.port(), Some(8080), "{value}");
            let segs: Vec<&str> = url.path_segments().expect("http URL").collect();
            assert_eq!(segs.len(), 3, "{value} -> {url}");
            assert_eq!(segs[0], "orders");
            assert_eq!(segs[2], "refund");
            assert_eq!(url.query(), None, "{value}");
            assert_eq!(url.fragment(), None, "{value}");
        }
    }

    #[test]
    fn dot_segments_and_empty_path_values_are_refused() {
        let t = Template::parse("/orders/{{order_id}}").expect("valid");
        for value in ["..", ".", ""] {
            let err = t.render_url(&base(), &inputs(&[("order_id", value)]));
            assert!(
                matches!(err, Err(TemplateError::StructureChanged { .. })),
                "{value}: {err:?}"
            );
        }
    }

    #[test]
    fn query_values_are_encoded_and_keep_pair_count() {
        let t = Template::parse("/search?q={{q}}&page=1").expect("valid");
        let url = t
            .render_url(&base(), &inputs(&[("q", "a&admin=1#frag")]))
            .expect("renders");
        assert_eq!(url.path(), "/search");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("q".into(), "a&admin=1#frag".into()),
                ("page".into(), "1".into())
            ]
        );
        let empty = t
            .render_url(&base(), &inputs(&[]))
            .expect("empty query value is fine");
        assert_eq!(empty.query(), Some("q=&page=1"));
    }

    #[test]
    fn absolute_templates_keep_their_origin_and_refuse_inputs_in_the_host() {
        let t = Template::parse("https://shop.example.com/o/{{id}}").expect("valid");
        let url = t
            .render_url(&base(), &inputs(&[("id", "@evil.com/x")]))
            .expect("renders");
        assert_eq!(url.host_str(), Some("shop.example.com"));
        assert_eq!(url.path(), "/o/%40evil.com%2Fx");
        let host = Template::parse("https://{{shop}}.example.com/").expect("valid");
        assert!(matches!(
            host.render_url(&base(), &inputs(&[("shop", "a")])),
            Err(TemplateError::StructureChanged { .. })
        ));
        let js = Template::parse("javascript:alert(1)").expect("valid");
        assert!(matches!(
            js.render_url(&base(), &inputs(&[])),
            Err(TemplateError::BadUrl { .. })
        ));
    }

    #[test]
    fn whole_url_input_cannot_escape_the_base_origin() {
        let t = Template::parse("{{target}}").expect("valid");
        let url = t
            .render_url(
                &base(),
                &inputs(&[("target", "https://evil.example/steal")]),
            )
            .expect("renders as one relative segment");
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert_eq!(url.path_segments().map(|s| s.count()), Some(1));
    }

    /// The CSSOM spec's own examples and the edge cases it names.
    #[test]
    fn css_escape_matches_the_cssom_algorithm() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("\0", "\u{FFFD}"),
            ("a\0b", "a\u{FFFD}b"),
            ("0a", "\\30 a"),
            ("1a2b3c", "\\31 a2b3c"),
            ("-0a", "-\\30 a"),
            ("--a", "--a"),
            ("-", "\\-"),
            ("-a", "-a"),
            ("a-1", "a-1"),
            ("__x9", "__x9"),
            ("\u{1}\u{2}\u{1e}\u{1f}", "\\1 \\2 \\1e \\1f "),
            ("\u{7f}", "\\7f "),
            ("\u{80}\u{2d}\u{5f}\u{a9}", "\u{80}\u{2d}\u{5f}\u{a9}"),
            (" !xy", "\\ \\!xy"),
            ("\u{1D306}", "\u{1D306}"),
            ("a\"b'c", "a\\\"b\\'c"),
            ("\"] , *", "\\\"\\]\\ \\,\\ \\*"),
            ("a\\b", "a\\\\b"),
            ("x\ny\tz", "x\\a y\\9 z"),
            ("SO-000123", "SO-000123"),
            ("订单 1", "订单\\ 1"),
        ];
        for (input, want) in cases {
            assert_eq!(css_escape(input), *want, "{input:?}");
        }
    }

    #[test]
    fn css_rendering_escapes_only_the_inserted_values() {
        let t = Template::parse("[data-order-id=\"{{id}}\"] .ref, #o-{{id}}").expect("valid");
        let css = t
            .render_css(&inputs(&[("id", "\"] , *")]))
            .expect("renders");
        assert_eq!(
            css,
            "[data-order-id=\"\\\"\\]\\ \\,\\ \\*\"] .ref, #o-\\\"\\]\\ \\,\\ \\*"
        );
        let plain = t
            .render_css(&inputs(&[("id", "SO-000123")]))
            .expect("renders");
        assert_eq!(plain, "[data-order-id=\"SO-000123\"] .ref, #o-SO-000123");
        let missing = t.render_css(&inputs(&[])).expect("renders");
        assert_eq!(missing, "[data-order-id=\"\"] .ref, #o-");
    }

    #[test]
    fn regex_rendering_inserts_values_literally() {
        let t = Template::parse("^Order {{id}} \\(paid\\)$").expect("valid");
        let re = t
            .render_regex(&inputs(&[("id", "SO-1.*|x")]))
            .expect("compiles");
        assert!(re.is_match("Order SO-1.*|x (paid)"));
        assert!(!re.is_match("Order SO-1234 (paid)"));
        let bad = Template::parse("({{id}}").expect("valid");
        assert!(matches!(
            bad.render_regex(&inputs(&[("id", "a")])),
            Err(TemplateError::BadRegex { .. })
        ));
    }

    #[test]
    fn attribute_names_must_render_to_a_name() {
        let t = Template::parse("data-{{what}}").expect("valid");
        assert_eq!(
            t.render_attribute_name(&inputs(&[("what", "order-id")])),
            Ok("data-order-id".to_owned())
        );
        for bad in ["x onclick", "a\"b", "x=1", "é"] {
            assert_eq!(
                t.render_attribute_name(&inputs(&[("what", bad)])),
                Err(TemplateError::BadAttributeName {
                    name: format!("data-{bad}")
                }),
                "{bad:?}"
            );
        }
        let whole = Template::parse("{{what}}").expect("valid");
        assert!(whole
            .render_attribute_name(&inputs(&[("what", "1x")]))
            .is_err());
        assert!(whole.render_attribute_name(&inputs(&[])).is_err());
        assert!(is_attribute_name("xlink:href") && is_attribute_name("_a.b-c"));
        assert!(!is_attribute_name("-a") && !is_attribute_name(".a") && !is_attribute_name("é"));
    }

    #[test]
    fn url_globs_encode_inputs_so_they_are_never_wildcards() {
        let base = Url::parse("http://127.0.0.1:8931/").expect("static URL");
        let t = Template::parse("/app/#/orders/{{id}}").expect("valid");
        let re = t
            .render_url_glob(&base, &inputs(&[("id", "SO-000123")]))
            .expect("compiles");
        assert!(re.is_match("http://127.0.0.1:8931/app/#/orders/SO-000123"));
        assert!(!re.is_match("http://127.0.0.1:8931/app/#/orders/SO-000124"));
        let star = t
            .render_url_glob(&base, &inputs(&[("id", "**")]))
            .expect("compiles");
        assert!(star.is_match("http://127.0.0.1:8931/app/#/orders/%2A%2A"));
        assert!(!star.is_match("http://127.0.0.1:8931/app/#/orders/SO-1"));
        let tail = Template::parse("/app/#/orders/{{id}}/**").expect("valid");
        let re = tail
            .render_url_glob(&base, &inputs(&[("id", "a b/c")]))
            .expect("compiles");
        assert!(re.is_match("http://127.0.0.1:8931/app/#/orders/a%20b%2Fc/logistics"));
        assert!(matches!(
            t.render_url_glob(&base, &inputs(&[("id", "..")])),
            Err(TemplateError::StructureChanged { .. })
        ));
    }

    #[test]
    fn url_regexes_encode_then_escape_inputs() {
        let t = Template::parse("#/orders/{{id}}(/logistics)?$").expect("valid");
        let re = t
            .render_url_regex(&inputs(&[("id", "SO.1 x")]))
            .expect("compiles");
        assert!(re.is_match("http://h/app/#/orders/SO.1%20x/logistics"));
        assert!(!re.is_match("http://h/app/#/orders/SOx1%20x"));
    }

    /// Reads one CSS escape at the start of `rest` (after its backslash), as CSS Syntax's
    /// "consume an escaped code point" does; returns the code point and the bytes used.
    fn unescape_one(rest: &str) -> Option<(char, usize)> {
        let hex: String = rest
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .take(6)
            .collect();
        if hex.is_empty() {
            let c = rest.chars().next()?;
            if c == '\n' {
                return None;
            }
            return Some((c, c.len_utf8()));
        }
        let mut used = hex.len();
        if matches!(rest[used..].chars().next(), Some(' ' | '\t' | '\n')) {
            used += 1;
        }
        let n = u32::from_str_radix(&hex, 16).ok()?;
        Some((char::from_u32(n).unwrap_or('\u{FFFD}'), used))
    }

    /// Walks an escaped value: every character outside an escape must not be one that
    /// could end an identifier or a string, or start another selector; returns the value
    /// the CSS parser reads back.
    fn read_back(escaped: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut i = 0;
        while i < escaped.len() {
            let rest = &escaped[i..];
            let c = rest.chars().next().ok_or("empty")?;
            if c == '\\' {
                let (got, used) = unescape_one(&rest[1..]).ok_or("dangling backslash")?;
                out.push(got);
                i += 1 + used;
                continue;
            }
            if matches!(
                c,
                '"' | '\''
                    | ']'
                    | '['
                    | ','
                    | ' '
                    | '\t'
                    | '\n'
                    | '\r'
                    | '\u{c}'
                    | '>'
                    | '+'
                    | '~'
                    | '('
                    | ')'
                    | '.'
                    | '#'
                    | ':'
                    | '*'
                    | '{'
                    | '}'
            ) || (c as u32) < 0x20
                || c == '\u{7f}'
            {
                return Err(format!("unescaped {c:?} in {escaped:?}"));
            }
            out.push(c);
            i += c.len_utf8();
        }
        Ok(out)
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            /// For any input, the selector's literal parts are unchanged, the inserted part
            /// contains no unescaped `"`, `'`, `]`, `,`, `\`, whitespace, `>`, `+`, `~`,
            /// `(`, `)`, it reads back as the input (NUL as U+FFFD), and it is a valid
            /// identifier start.
            #[test]
            fn css_inputs_never_change_a_selectors_structure(value in any::<String>()) {
                let t = Template::parse("[data-id=\"{{v}}\"] > .x, #{{v}}").expect("valid");
                let css = t.render_css(&inputs(&[("v", &value)])).expect("renders");
                let esc = css_escape(&value);
                prop_assert_eq!(&css, &format!("[data-id=\"{esc}\"] > .x, #{esc}"));
                let back = read_back(&esc).map_err(TestCaseError::fail)?;
                prop_assert_eq!(back, value.replace('\0', "\u{FFFD}"));
                match esc.chars().next() {
                    Some(a) => prop_assert!(!a.is_ascii_digit(), "{esc:?}"),
                    None => prop_assert!(value.is_empty()),
                }
                if let (Some('-'), Some(b)) = (esc.chars().next(), esc.chars().nth(1)) {
                    prop_assert!(!b.is_ascii_digit(), "{esc:?}");
                }
                prop_assert!(esc != "-");
            }

            #[test]
            fn css_escape_of_ascii_punctuation_reads_back(value in "[ -~\\x00-\\x1f]{0,24}") {
                let esc = css_escape(&value);
                let back = read_back(&esc).map_err(TestCaseError::fail)?;
                prop_assert_eq!(back, value.replace('\0', "\u{FFFD}"));
            }
        }
    }
}
