//! Diagnostics: what is wrong with a playbook, and where.
use std::path::{Path, PathBuf};

/// One problem in a playbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
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
}
