//! URL globs: how channels name their login page and playbooks wait for a route.
//!
//! A glob is matched against a page's whole `href`, fragment included, because hash
//! routers keep the route there (`/app/#/orders/SO-1`). `**` matches any run of characters
//! (`**/` zero or more whole segments),
//! `*` any run without `/`, `?` is literal (URLs are full of them); everything else is
//! literal. A glob that does not start with a scheme is resolved against the channel's base
//! URL, so `/app/#/login**` means the login route of this channel's origin. Matching is on
//! the compiled regex, anchored at both ends.

use regex::Regex;
use url::Url;

/// A glob that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlPatternError {
    #[error("URL glob `{glob}` cannot be resolved against {base}: {reason}")]
    Resolve {
        glob: String,
        base: String,
        reason: String,
    },
    #[error("URL regex `{pattern}` is invalid: {reason}")]
    Regex { pattern: String, reason: String },
}

/// Compiles a glob (see the module docs) into an anchored regex over full URLs.
pub fn glob(pattern: &str, base: &Url) -> Result<Regex, UrlPatternError> {
    let absolute = if has_scheme(pattern) {
        pattern.to_owned()
    } else {
        // Resolve the part before the first wildcard, keep the wildcards literal.
        let cut = pattern.find('*').unwrap_or(pattern.len());
        let (head, tail) = pattern.split_at(cut);
        let joined = base
            .join(head)
            .map_err(|e| UrlPatternError::Resolve {
                glob: pattern.to_owned(),
                base: base.to_string(),
                reason: e.to_string(),
            })?
            .to_string();
        // `Url::join("")` keeps the base's own fragment-free form; an empty head with a
        // trailing `#` would be dropped, so keep what the author wrote after the head.
        let joined = if head.ends_with('#') && !joined.ends_with('#') {
            format!("{joined}#")
        } else {
            joined
        };
        format!("{joined}{tail}")
    };
    let mut re = String::from("^");
    let mut chars = absolute.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '*' {
            if chars.peek() == Some(&'*') {
                chars.next();
                if chars.peek() == Some(&'/') {
                    // `**/` is zero or more whole segments, so `**/login` matches `/login`.
                    chars.next();
                    re.push_str("(?:.*/)?");
                } else {
                    re.push_str(".*");
                }
            } else {
                re.push_str("[^/]*");
            }
        } else {
            re.push_str(&regex::escape(&c.to_string()));
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| UrlPatternError::Regex {
        pattern: re.clone(),
        reason: e.to_string(),
    })
}

fn has_scheme(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:8931/").unwrap()
    }

    #[test]
    fn relative_globs_resolve_against_the_base() {
        let re = glob("/app/#/login**", &base()).unwrap();
        assert!(re.is_match("http://127.0.0.1:8931/app/#/login"));
        assert!(re.is_match("http://127.0.0.1:8931/app/#/login?next=%2Forders"));
        assert!(!re.is_match("http://127.0.0.1:8931/app/#/orders"));
        assert!(!re.is_match("http://evil.example/app/#/login"));
    }

    #[test]
    fn single_star_stops_at_slashes() {
        let re = glob("/orders/*", &base()).unwrap();
        assert!(re.is_match("http://127.0.0.1:8931/orders/SO-1"));
        assert!(!re.is_match("http://127.0.0.1:8931/orders/SO-1/refund"));
        let re = glob("**/login*", &base()).unwrap();
        assert!(re.is_match("http://127.0.0.1:8931/login?next=x"));
        assert!(!re.is_match("http://127.0.0.1:8931/login?next=/x"));
    }

    #[test]
    fn absolute_globs_and_literal_question_marks() {
        let re = glob("http://127.0.0.1:8931/login?next=*", &base()).unwrap();
        assert!(re.is_match("http://127.0.0.1:8931/login?next=abc"));
        assert!(!re.is_match("http://127.0.0.1:8931/loginXnext=abc"));
    }
}
