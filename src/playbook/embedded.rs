//! Playbooks compiled into clerk, so the demo, `clerk submit` and schedules work from any
//! directory, and how a playbook is found by name.

use std::path::{Path, PathBuf};

use crate::channel::Config;
use crate::playbook::{self, Diagnostics, Playbook};

/// Playbooks compiled into clerk, so the demo and `clerk submit` work from any directory.
pub const EMBEDDED: &[(&str, &[u8])] = &[
    (
        "order-lookup",
        include_bytes!("../../playbooks/order-lookup.yaml"),
    ),
    (
        "logistics-screenshot",
        include_bytes!("../../playbooks/logistics-screenshot.yaml"),
    ),
    (
        "refund-draft",
        include_bytes!("../../playbooks/refund-draft.yaml"),
    ),
    (
        "refund-cancel",
        include_bytes!("../../playbooks/refund-cancel.yaml"),
    ),
    (
        "order-note",
        include_bytes!("../../playbooks/order-note.yaml"),
    ),
    ("login", include_bytes!("../../playbooks/login.yaml")),
    (
        "spa-order-lookup",
        include_bytes!("../../playbooks/spa-order-lookup.yaml"),
    ),
    (
        "spa-refund",
        include_bytes!("../../playbooks/spa-refund.yaml"),
    ),
];

/// Finds a playbook by name: `playbooks/NAME.yaml` in the data directory, else the
/// embedded copy. The current directory is never searched: a daemon started from `/` and a
/// CLI started anywhere must find the same playbook.
pub fn find_playbook(
    data_dir: &Path,
    name: &str,
    config: Option<&Config>,
) -> Result<Playbook, Diagnostics> {
    if !is_playbook_name(name) {
        return Err(Diagnostics::io(
            Path::new(name),
            &std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a playbook name (letters, digits, `-` and `_`; a name, never a path)",
            ),
        ));
    }
    let p = data_dir.join("playbooks").join(format!("{name}.yaml"));
    if p.is_file() {
        return playbook::load(&p, config);
    }
    embedded(name, config)
}

/// True for a plain playbook name: ASCII letters, digits, `-`, `_` and `.` (not leading),
/// at most 128 characters. Such a name can never climb out of `playbooks/`.
pub fn is_playbook_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.contains("..")
}

/// An embedded playbook by name.
pub fn embedded(name: &str, config: Option<&Config>) -> Result<Playbook, Diagnostics> {
    let path = PathBuf::from(format!("playbooks/{name}.yaml"));
    match EMBEDDED.iter().find(|(n, _)| *n == name) {
        Some((_, bytes)) => playbook::parse(&path, bytes, config),
        None => Err(Diagnostics::io(
            &path,
            &std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such playbook (in the data directory's playbooks/ or compiled into clerk)",
            ),
        )),
    }
}
