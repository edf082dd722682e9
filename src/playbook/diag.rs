//! Diagnostics: what is wrong with a playbook, and where.
//!
//! A diagnostic names the file, the 1-based line and column, the field (a path such as
//! `steps[3].fill` or `inputs.order_id.pattern`, with 0-based list indexes) and says what is
//! wrong in lowercase words that name the thing. The hint, when there is one, says how to
//! fix it. The format mirrors compilers (`FILE:LINE:COL: error: ...`) so editors and CI
//! logs can jump to the spot.
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a playbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem concerns the whole file (e.g. it cannot be read).
    pub line: usize,
    /// 1-based, in characters; 0 when `line` is 0.
    pub column: usize,
    /// Path of the offending field; empty for whole-file problems.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at a known position.
    pub fn new(
        file: &Path,
        line: usize,
        column: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": error: {}", self.message)?;
        if !self.field.is_empty() {
            write!(f, " (field {})", self.field)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one or more files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The file could not be read at all.
    pub fn io(path: &Path, err: &std::io::Error) -> Diagnostics {
        Diagnostics(vec![Diagnostic {
            file: path.to_owned(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read file: {err}"),
            hint: None,
        }])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Levenshtein distance in characters; small inputs only (keys and modes).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The valid word nearest to `word`, when it is within edit distance 2.
pub(crate) fn nearest<'a>(word: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|v| (edit_distance(word, v), *v))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// `did you mean `x`? valid KIND: a, b, c`
pub(crate) fn suggestion_hint(word: &str, valid: &[&str], kind: &str) -> String {
    let list = valid.join(", ");
    match nearest(word, valid) {
        Some(near) => format!("did you mean `{near}`? valid {kind}: {list}"),
        None => format!("valid {kind}: {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_position_field_and_hint() {
        let d = Diagnostic::new(Path::new("p.yaml"), 3, 5, "steps[1]", "unknown key `fil`")
            .with_hint("did you mean `fill`?");
        assert_eq!(
            d.to_string(),
            "p.yaml:3:5: error: unknown key `fil` (field steps[1])\n  hint: did you mean `fill`?"
        );
        let io = Diagnostics::io(Path::new("x.yaml"), &std::io::Error::other("boom"));
        assert_eq!(io.to_string(), "x.yaml: error: cannot read file: boom");
    }

    #[test]
    fn suggests_only_close_words() {
        assert_eq!(nearest("fil", &["goto", "fill", "select"]), Some("fill"));
        assert_eq!(
            nearest("readonly", &["read_only", "draft"]),
            Some("read_only")
        );
        assert_eq!(nearest("zzzzzz", &["goto", "fill"]), None);
    }
}
