//! What people are shown: characters that change how text *looks* without being seen are
//! made visible. A held value `"\u{202e}00.0001 :tnuoma"` would otherwise render as
//! "amount: 1000.00", and a user named `car\u{200b}ol` as "carol". Every reviewer view (the
//! console's pages, `clerk approvals show`) passes its text through [`visible`]; machines
//! (the JSON API, the journal) get the exact value.

use std::borrow::Cow;

/// True for a character that is invisible or reorders text: bidi embeddings, overrides
/// and isolates, zero-width characters, the word joiner and invisible operators, the BOM,
/// the soft hyphen, the Mongolian vowel separator, interlinear annotation marks and other
/// C0/C1 controls except tab and line breaks.
pub fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}'
    ) || (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// `text` with every hidden character written out as `⟨U+XXXX⟩` (borrowed when there is
/// none).
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_hidden(c) {
            out.push_str(&format!("⟨U+{:04X}⟩", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// True for a user name clerk accepts: 1 to 64 ASCII letters, digits, `.`, `_`, `-` and
/// `@`, starting with a letter or digit. Nothing in it can look like another name.
pub fn is_safe_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_zero_width_characters_are_written_out() {
        assert_eq!(
            visible("\u{202e}00.0001 :tnuoma"),
            "⟨U+202E⟩00.0001 :tnuoma"
        );
        assert_eq!(visible("car\u{200b}ol"), "car⟨U+200B⟩ol");
        assert_eq!(visible("line\none\ttab"), "line\none\ttab");
        assert!(matches!(visible("plain 12.50 €"), Cow::Borrowed(_)));
        assert!(is_safe_name("carol") && is_safe_name("ops-lead.2"));
        assert!(!is_safe_name("car\u{200b}ol") && !is_safe_name("") && !is_safe_name("-x"));
        assert!(!is_safe_name("Ｃarol"));
    }
}
