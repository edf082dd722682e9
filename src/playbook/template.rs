//! `{{input}}` templates.
/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub source: String,
    pub parts: Vec<TemplatePart>,
}
/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Input(String),
}
/// Template errors.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("bad template")]
    Bad,
}
