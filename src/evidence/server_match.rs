//! Did the server say it? Each field a run extracted from a page, looked for in the
//! responses the run recorded (`response_recorded`, see `warc`).
//!
//! A page can show what its server never sent: a script that rewrites a value, a stale
//! cache, a client-side bug, a tampered page. A field passes when its value (whitespace
//! collapsed) occurs in the searchable text of a response recorded before the step that
//! extracted it ended: for JSON, every string (unescaped) and number of the document, and
//! the raw text; for HTML, the text a reader sees (tags, scripts and styles removed,
//! entities decoded); for other text types, the text. A match that needs case folding is
//! reported as such. Every WARC file is checked against its record first (a tampered
//! response matches nothing).
//!
//! This is client-attested: the recorded bytes are what the browser received over TLS, and
//! TLS gives no proof to a third party of what a server sent (see README, auditors).

use serde::Serialize;

use super::warc;
use super::{Event, Store, StoreError};

/// Where a field's value was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub seq: u64,
    pub record_id: String,
    pub url: String,
    /// Found only after folding case.
    pub case_folded: bool,
}

/// One extracted field and what the server said of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldMatch {
    pub step: u64,
    pub field: String,
    pub value: String,
    /// Responses whose text holds the value; empty: the server never said it.
    pub found_in: Vec<Source>,
}

/// The outcome of `clerk verify --server-match RUN`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MatchReport {
    pub run_id: String,
    /// Responses the run recorded (and that were intact).
    pub responses: u64,
    pub fields: Vec<FieldMatch>,
    /// Recorded responses that could not be searched (damaged or missing files).
    pub problems: Vec<String>,
}

impl MatchReport {
    /// Fields the recorded responses do not hold.
    pub fn unmatched(&self) -> Vec<&FieldMatch> {
        self.fields
            .iter()
            .filter(|f| f.found_in.is_empty())
            .collect()
    }

    /// Every field found and every response intact.
    pub fn ok(&self) -> bool {
        self.responses > 0 && self.problems.is_empty() && self.unmatched().is_empty()
    }
}

impl std::fmt::Display for MatchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.problems {
            writeln!(f, "PROBLEM: {p}")?;
        }
        for m in &self.fields {
            match m.found_in.first() {
                Some(s) => writeln!(
                    f,
                    "ok        step {} {} = {:?}: in {} (record seq {}{})",
                    m.step + 1,
                    m.field,
                    m.value,
                    s.url,
                    s.seq,
                    if s.case_folded { ", case differs" } else { "" }
                )?,
                None => writeln!(
                    f,
                    "NOT SAID  step {} {} = {:?}: no recorded response of the run holds this value (the page shows something the server did not send)",
                    m.step + 1,
                    m.field,
                    m.value
                )?,
            }
        }
        let unmatched = self.unmatched().len();
        if self.responses == 0 {
            writeln!(
                f,
                "run {} recorded no server responses: name the channel's data endpoints in `record_responses` (or the playbook's `record:`)",
                self.run_id
            )
        } else {
            writeln!(
                f,
                "{}: {} of {} fields found in {} recorded responses of run {} (client-attested: what the browser received)",
                if self.ok() { "SERVER MATCH" } else { "SERVER MISMATCH" },
                self.fields.len() - unmatched,
                self.fields.len(),
                self.responses,
                self.run_id
            )
        }
    }
}

/// Collapses runs of whitespace to one space and trims.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn json_leaves(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        serde_json::Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push('\n');
        }
        serde_json::Value::Bool(b) => {
            out.push_str(if *b { "true\n" } else { "false\n" });
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_leaves(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| json_leaves(x, out)),
        serde_json::Value::Null => {}
    }
}

fn decode_entity(entity: &str) -> Option<String> {
    let named = match entity {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" | "#39" => Some('\''),
        "nbsp" => Some(' '),
        "yen" => Some('¥'),
        _ => None,
    };
    if let Some(c) = named {
        return Some(c.to_string());
    }
    let num = entity.strip_prefix('#')?;
    let code = match num.strip_prefix(['x', 'X']) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => num.parse().ok()?,
    };
    char::from_u32(code).map(|c| c.to_string())
}

/// The text of an HTML document as a reader sees it: no tags, no script or style content,
/// entities decoded, each element boundary a space.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let rest = &lower[i..];
            let skip_to = ["script", "style", "template", "noscript"]
                .iter()
                .find(|t| {
                    rest[1..].starts_with(*t)
                        && rest[1 + t.len()..]
                            .starts_with(|c: char| c == '>' || c.is_ascii_whitespace())
                })
                .map(|t| format!("</{t}"));
            let end = match skip_to {
                Some(close) => rest
                    .find(&close)
                    .and_then(|c| rest[c..].find('>').map(|g| c + g + 1)),
                None if rest.starts_with("<!--") => rest.find("-->").map(|e| e + 3),
                None => rest.find('>').map(|e| e + 1),
            };
            out.push(' ');
            i += end.unwrap_or(rest.len());
        } else if bytes[i] == b'&' {
            let rest = &html[i + 1..];
            match rest.find(';').filter(|&e| e <= 10) {
                Some(e) => match decode_entity(&rest[..e]) {
                    Some(text) => {
                        out.push_str(&text);
                        i += e + 2;
                    }
                    None => {
                        out.push('&');
                        i += 1;
                    }
                },
                None => {
                    out.push('&');
                    i += 1;
                }
            }
        } else {
            let next = html[i..]
                .find(['<', '&'])
                .map(|n| i + n)
                .unwrap_or(html.len());
            out.push_str(&html[i..next]);
            i = next;
        }
    }
    out
}

/// What a value is looked for in: see the module docs.
pub fn searchable(mime: &str, payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let mut out = String::new();
    if mime.contains("json") || serde_json::from_slice::<serde_json::Value>(payload).is_ok() {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) {
            json_leaves(&v, &mut out);
        }
        out.push_str(&text);
    } else if mime.contains("html") || text.trim_start().starts_with('<') {
        out.push_str(&html_text(&text));
    } else {
        out.push_str(&text);
    }
    collapse(&out)
}

/// Looks up every field `run_id` extracted in the responses it recorded.
pub fn server_match(store: &Store, run_id: &str) -> Result<MatchReport, StoreError> {
    let records = store.run_records(run_id)?;
    if !records
        .iter()
        .any(|r| matches!(r.event, Event::RunStarted { .. }))
    {
        return Err(StoreError::BadInput(format!(
            "no run {run_id} in this evidence store (`clerk runs list` shows the runs)"
        )));
    }
    let mut report = MatchReport {
        run_id: run_id.to_owned(),
        ..Default::default()
    };
    // (seq, record id, url, searchable text) of each intact response.
    let mut said: Vec<(u64, String, String, String)> = Vec::new();
    for r in &records {
        match &r.event {
            // A replay sample's scripts, style sheets and images say nothing about the case
            // (and a script's text would match almost any value).
            Event::ResponseRecorded { resource_type, .. }
                if !matches!(resource_type.as_str(), "Document" | "Xhr" | "Fetch") => {}
            Event::ResponseRecorded {
                url,
                mime,
                record_id,
                warc_sha256,
                payload_digest,
                response_length,
                ..
            } => {
                let path = store.warc_path(warc_sha256);
                let checked = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|data| {
                        warc::check(
                            &data,
                            warc_sha256,
                            record_id,
                            payload_digest,
                            *response_length,
                        )
                        .map_err(|e| e.to_string())
                    });
                match checked {
                    Ok(parsed) => {
                        let payload = parsed.first().map(|p| p.payload()).unwrap_or_default();
                        said.push((
                            r.seq,
                            record_id.clone(),
                            url.clone(),
                            searchable(mime, payload),
                        ));
                        report.responses += 1;
                    }
                    Err(e) => report.problems.push(format!(
                        "recorded response {url} (record seq {}, {}): {e}",
                        r.seq,
                        path.display()
                    )),
                }
            }
            Event::StepFinished { step, fields, .. } => {
                for (field, value) in fields {
                    let needle = collapse(value);
                    // Secret values are recorded as `<secret>` (`playbook::SECRET`).
                    if needle.is_empty() || value == "<secret>" {
                        continue;
                    }
                    let folded = needle.to_lowercase();
                    let found_in = said
                        .iter()
                        .filter(|(seq, ..)| *seq < r.seq)
                        .filter_map(|(seq, id, url, text)| {
                            let exact = text.contains(&needle);
                            (exact || text.to_lowercase().contains(&folded)).then(|| Source {
                                seq: *seq,
                                record_id: id.clone(),
                                url: url.clone(),
                                case_folded: !exact,
                            })
                        })
                        .collect();
                    report.fields.push(FieldMatch {
                        step: *step,
                        field: field.clone(),
                        value: value.clone(),
                        found_in,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_text_drops_tags_scripts_and_decodes_entities() {
        let html = "<p id=s>Ship&amp;ped</p><script>x.textContent='Refunded'</script><b>&#165;12.50</b><!-- Refunded -->";
        let t = collapse(&html_text(html));
        assert_eq!(t, "Ship&ped ¥12.50");
    }

    #[test]
    fn json_strings_are_searched_unescaped() {
        let s = searchable(
            "application/json",
            br#"{"a":"\u00a512.50","b":{"c":[3,"x\/y"]}}"#,
        );
        assert!(s.contains("¥12.50") && s.contains("x/y") && s.contains('3'));
    }
}
