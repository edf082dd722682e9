//! Validation.
use super::*;
pub(crate) fn parse(_path: &Path, _bytes: &[u8], _config: Option<&Config>) -> Result<Playbook, Diagnostics> {
    todo!()
}
pub(crate) fn bind_inputs(_p: &Playbook, _v: &BTreeMap<String, String>) -> Result<Inputs, Vec<String>> {
    todo!()
}
