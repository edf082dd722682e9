//! The canonical form of a write: what a reviewer approves and what a submit must send again.
//!
//! Single-page apps send their writes with `fetch`, as JSON, with tokens in headers and ids
//! and timestamps in the body. clerk therefore binds an approval not to an HTML form but to
//! the request itself, as the guard held it during the draft. This module turns the raw
//! request (method, URL, content type, body bytes) into a [`Write`]: the body decoded for the
//! reviewer (JSON values, form fields, multipart parts with the SHA-256 of each file) and
//! cleaned of what must never be stored (CSRF-style tokens; secret values become
//! `<secret>`). Cookies and headers other than the content type are never part of it.
//!
//! [`Write::comparable`] is the part two writes must share to be "the same write": the
//! write without the fields the playbook or channel names as volatile (request ids, client
//! timestamps, idempotency keys). The draft hash covers the comparable form, so a submit
//! passes only when its write equals the reviewed one in every non-volatile field.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::playbook::SECRET;

/// A decoded write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// Upper-case HTTP method.
    pub method: String,
    /// The full URL, query included (the fragment is never sent).
    pub url: String,
    /// The media type of the body (`application/json`), parameters dropped.
    pub content_type: Option<String>,
    pub body: Body,
}

/// A decoded body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Body {
    None,
    /// `application/json` (or `+json`): the parsed value.
    Json {
        value: Value,
    },
    /// `application/x-www-form-urlencoded`: the fields in order.
    Form {
        fields: Vec<(String, String)>,
    },
    /// `multipart/form-data`: the parts in order.
    Multipart {
        parts: Vec<Part>,
    },
    /// Other UTF-8 text.
    Text {
        text: String,
    },
    /// Anything else, or a body the browser did not expose whole: its hash and size.
    Opaque {
        sha256: String,
        bytes: u64,
        complete: bool,
    },
}

/// One multipart part: a field value, or a file by name, type and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes: Option<u64>,
}

/// What to keep out of a write.
#[derive(Debug, Clone, Default)]
pub struct Scrub<'a> {
    /// Values that must never be stored (secret inputs, `env:` values).
    pub secrets: &'a [String],
}

/// Field names that carry per-page tokens rather than reviewed values.
pub fn is_token_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["csrf", "xsrf", "authenticity_token", "nonce", "_token"]
        .iter()
        .any(|t| n.contains(t))
}

impl Write {
    /// Decodes a raw request. `body_complete` is false when the browser said there was a body
    /// but did not expose all of its bytes (e.g. a file streamed from disk).
    pub fn decode(
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
        body_complete: bool,
        scrub: &Scrub<'_>,
    ) -> Write {
        let media = content_type.map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let mut url = url.to_owned();
        if let Some(i) = url.find('#') {
            url.truncate(i);
        }
        let body = match body {
            None if body_complete => Body::None,
            None => Body::Opaque {
                sha256: String::new(),
                bytes: 0,
                complete: false,
            },
            // A multipart body whose file parts Chromium did not expose (a file chosen in a
            // file input): its fields are still compared, its files only by name (the form's
            // values, also in the draft hash, name them). The boundary is random per send,
            // so the raw bytes could never be compared.
            Some(bytes) if !body_complete => {
                match (media.as_deref(), content_type.and_then(boundary)) {
                    (Some("multipart/form-data"), Some(b)) => {
                        match parse_multipart(bytes, &b, scrub) {
                            Some(parts) => Body::Multipart { parts },
                            None => unknown(),
                        }
                    }
                    (Some("multipart/form-data"), None) => unknown(),
                    _ => opaque(bytes, false),
                }
            }
            Some(bytes) => decode_body(media.as_deref(), content_type, bytes, scrub),
        };
        Write {
            method: method.to_ascii_uppercase(),
            url: scrub_str(&url, scrub),
            content_type: media,
            body,
        }
    }

    /// The write without volatile fields: what two writes must share to be the same write.
    pub fn comparable(&self, volatile: &[String]) -> Write {
        let mut w = self.clone();
        let is_volatile = |k: &str| volatile.iter().any(|v| v == k);
        w.body = match &self.body {
            Body::Json { value } => Body::Json {
                value: strip_json(value, &is_volatile),
            },
            Body::Form { fields } => Body::Form {
                fields: fields
                    .iter()
                    .filter(|(k, _)| !is_volatile(k))
                    .cloned()
                    .collect(),
            },
            Body::Multipart { parts } => Body::Multipart {
                parts: parts
                    .iter()
                    .filter(|p| !is_volatile(&p.name))
                    .cloned()
                    .collect(),
            },
            other => other.clone(),
        };
        w
    }

    /// Human-readable differences between this (approved) write and `other` (the one the
    /// page sends now), for refusal messages. Values of secret fields are already redacted.
    pub fn differences(&self, other: &Write) -> Vec<String> {
        let mut out = Vec::new();
        if self.method != other.method {
            out.push(format!(
                "method: approved {}, now {}",
                self.method, other.method
            ));
        }
        if self.url != other.url {
            out.push(format!("url: approved {}, now {}", self.url, other.url));
        }
        if self.content_type != other.content_type {
            out.push(format!(
                "content type: approved {}, now {}",
                self.content_type.as_deref().unwrap_or("none"),
                other.content_type.as_deref().unwrap_or("none")
            ));
        }
        match (&self.body, &other.body) {
            (Body::Json { value: a }, Body::Json { value: b }) => diff_json("", a, b, &mut out),
            (Body::Form { fields: a }, Body::Form { fields: b }) => {
                diff_pairs(a, b, &mut out);
            }
            (a, b) if a != b => out.push("the body differs".into()),
            _ => {}
        }
        out
    }

    /// `METHOD URL`, for messages.
    pub fn summary(&self) -> String {
        format!("{} {}", self.method, self.url)
    }
}

/// A body whose bytes are not known.
fn unknown() -> Body {
    Body::Opaque {
        sha256: String::new(),
        bytes: 0,
        complete: false,
    }
}

fn opaque(bytes: &[u8], complete: bool) -> Body {
    Body::Opaque {
        sha256: hex::encode(Sha256::digest(bytes)),
        bytes: bytes.len() as u64,
        complete,
    }
}

fn scrub_str(s: &str, scrub: &Scrub<'_>) -> String {
    let mut out = s.to_owned();
    for secret in scrub.secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), SECRET);
    }
    out
}

fn decode_body(
    media: Option<&str>,
    raw_type: Option<&str>,
    bytes: &[u8],
    scrub: &Scrub<'_>,
) -> Body {
    match media {
        Some(m) if m == "application/json" || m.ends_with("+json") => {
            match serde_json::from_slice::<Value>(bytes) {
                Ok(v) => Body::Json {
                    value: clean_json(&v, scrub),
                },
                Err(_) => opaque(bytes, true),
            }
        }
        Some("application/x-www-form-urlencoded") => Body::Form {
            fields: url::form_urlencoded::parse(bytes)
                .filter(|(k, _)| !is_token_field(k))
                .map(|(k, v)| (k.into_owned(), scrub_value(&v, scrub)))
                .collect(),
        },
        Some("multipart/form-data") => match raw_type.and_then(boundary) {
            Some(b) => match parse_multipart(bytes, &b, scrub) {
                Some(parts) => Body::Multipart { parts },
                None => opaque(bytes, true),
            },
            None => opaque(bytes, true),
        },
        _ => match std::str::from_utf8(bytes) {
            Ok(t)
                if t.len() <= 64 * 1024
                    && (media.is_none() || media.is_some_and(|m| m.starts_with("text/"))) =>
            {
                Body::Text {
                    text: scrub_str(t, scrub),
                }
            }
            _ => opaque(bytes, true),
        },
    }
}

fn scrub_value(v: &str, scrub: &Scrub<'_>) -> String {
    if scrub.secrets.iter().any(|s| !s.is_empty() && s == v) {
        SECRET.to_owned()
    } else {
        scrub_str(v, scrub)
    }
}

/// The key of the one-member object that stands for a non-integer JSON number in the stored
/// form of a body: `{"$number": "12.5"}` (the journal has no floats). A real member name that
/// starts with `$` is stored with one more `$` in front, so the stored form never confuses
/// a number with an object or a string: the string `"12.5"` and the number `12.5` differ.
pub const NUMBER_TAG: &str = "$number";

/// Drops token keys at any depth, redacts secret values, and puts non-integer numbers in
/// their tagged form (see [`NUMBER_TAG`]).
fn clean_json(v: &Value, scrub: &Scrub<'_>) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !is_token_field(k))
                .map(|(k, v)| {
                    let key = if k.starts_with('$') {
                        format!("${k}")
                    } else {
                        k.clone()
                    };
                    (key, clean_json(v, scrub))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| clean_json(i, scrub)).collect()),
        Value::String(s) => Value::String(scrub_value(s, scrub)),
        Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
            let mut tagged = serde_json::Map::new();
            tagged.insert(NUMBER_TAG.to_owned(), Value::String(n.to_string()));
            Value::Object(tagged)
        }
        other => other.clone(),
    }
}

/// The JSON value a stored body stands for: tagged numbers back to numbers, escaped member
/// names back to their own. What a reviewer is shown, typed (`12.5` vs `"12.5"`).
pub fn restore_json(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(text)) = map.get(NUMBER_TAG) {
                    if let Ok(n @ Value::Number(_)) = serde_json::from_str::<Value>(text) {
                        return n;
                    }
                }
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let key = k.strip_prefix('$').filter(|r| r.starts_with('$'));
                        (key.unwrap_or(k).to_owned(), restore_json(v))
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(restore_json).collect()),
        other => other.clone(),
    }
}

/// A stored JSON value as the reviewer reads it: typed JSON text (strings in quotes,
/// numbers bare), with its type's name.
pub fn typed_text(v: &Value) -> (String, &'static str) {
    let real = restore_json(v);
    let kind = match &real {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    (real.to_string(), kind)
}

fn strip_json(v: &Value, is_volatile: &dyn Fn(&str) -> bool) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !is_volatile(k))
                .map(|(k, v)| (k.clone(), strip_json(v, is_volatile)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| strip_json(i, is_volatile)).collect())
        }
        other => other.clone(),
    }
}

fn diff_json(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match y.get(k) {
                    Some(vb) => diff_json(&p, va, vb, out),
                    None => out.push(format!("{p}: missing now")),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.push(format!("{p}: new field with {vb}"));
                }
            }
        }
        (x, y) if x != y => {
            let ((xt, xk), (yt, yk)) = (typed_text(x), typed_text(y));
            let (xk, yk) = if xk == yk { ("", "") } else { (xk, yk) };
            let paren = |k: &str| {
                if k.is_empty() {
                    String::new()
                } else {
                    format!(" ({k})")
                }
            };
            out.push(format!(
                "{}: approved {xt}{}, now {yt}{}",
                if path.is_empty() { "body" } else { path },
                paren(xk),
                paren(yk)
            ))
        }
        _ => {}
    }
}

fn diff_pairs(a: &[(String, String)], b: &[(String, String)], out: &mut Vec<String>) {
    for (k, v) in b {
        match a.iter().find(|(ka, _)| ka == k) {
            Some((_, va)) if va != v => out.push(format!("{k}: approved {va:?}, now {v:?}")),
            None => out.push(format!("{k}: new field with {v:?}")),
            _ => {}
        }
    }
    for (k, _) in a {
        if !b.iter().any(|(kb, _)| kb == k) {
            out.push(format!("{k}: missing now"));
        }
    }
    if out.is_empty() && a != b {
        out.push("the fields' order differs".into());
    }
}

fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_owned())
    })
}

/// A small multipart/form-data reader: enough to show a reviewer the fields and to hash the
/// files. `None` when the body is not well-formed (it is then kept as an opaque hash).
fn parse_multipart(body: &[u8], boundary: &str, scrub: &Scrub<'_>) -> Option<Vec<Part>> {
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut parts = Vec::new();
    let mut pos = find(body, d, 0)? + d.len();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Some(parts);
        }
        // Skip the CRLF after the delimiter.
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = std::str::from_utf8(body.get(pos..head_end)?).ok()?;
        let content_start = head_end + 4;
        let next = find(body, d, content_start)?;
        // The content ends with the CRLF before the next delimiter.
        let content = body.get(content_start..next.checked_sub(2)?)?;
        let mut name = None;
        let mut filename = None;
        let mut ctype = None;
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':')?;
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for p in v.split(';').skip(1) {
                    if let Some((pk, pv)) = p.trim().split_once('=') {
                        let pv = pv.trim_matches('"').to_owned();
                        match pk.trim() {
                            "name" => name = Some(pv),
                            "filename" => filename = Some(pv),
                            _ => {}
                        }
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                ctype = Some(v.trim().to_owned());
            }
        }
        let name = name?;
        if !is_token_field(&name) {
            parts.push(if filename.is_some() {
                Part {
                    name,
                    value: None,
                    filename,
                    content_type: ctype,
                    sha256: Some(hex::encode(Sha256::digest(content))),
                    bytes: Some(content.len() as u64),
                }
            } else {
                Part {
                    name,
                    value: Some(scrub_value(&String::from_utf8_lossy(content), scrub)),
                    filename: None,
                    content_type: None,
                    sha256: None,
                    bytes: None,
                }
            });
        }
        pos = next + d.len();
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO: Scrub<'static> = Scrub { secrets: &[] };

    #[test]
    fn json_bodies_drop_tokens_and_keep_the_rest() {
        let w = Write::decode(
            "post",
            "http://h/api/x?a=1#frag",
            Some("application/json; charset=utf-8"),
            Some(br#"{"amount":"12.50","csrfToken":"t","meta":{"requestId":"r1"}}"#),
            true,
            &NO,
        );
        assert_eq!(w.method, "POST");
        assert_eq!(w.url, "http://h/api/x?a=1");
        assert_eq!(w.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            w.body,
            Body::Json {
                value: serde_json::json!({"amount":"12.50","meta":{"requestId":"r1"}})
            }
        );
        let c = w.comparable(&["requestId".into()]);
        assert_eq!(
            c.body,
            Body::Json {
                value: serde_json::json!({"amount":"12.50","meta":{}})
            }
        );
    }

    #[test]
    fn a_number_and_the_string_of_its_digits_are_different_writes() {
        let json = |body: &[u8]| {
            Write::decode(
                "POST",
                "http://h/r",
                Some("application/json"),
                Some(body),
                true,
                &NO,
            )
        };
        let number = json(br#"{"amount":12.5,"qty":5,"$ref":"a"}"#);
        let string = json(br#"{"amount":"12.5","qty":5,"$ref":"a"}"#);
        let tag_lookalike = json(br#"{"amount":{"$number":"12.5"},"qty":5,"$ref":"a"}"#);
        assert_ne!(number.comparable(&[]), string.comparable(&[]));
        assert_ne!(number.comparable(&[]), tag_lookalike.comparable(&[]));
        assert_ne!(string.comparable(&[]), tag_lookalike.comparable(&[]));
        let diff = number.comparable(&[]).differences(&string.comparable(&[]));
        assert_eq!(
            diff,
            vec![r#"amount: approved 12.5 (number), now "12.5" (string)"#.to_owned()]
        );
        // The stored form has no floats, and restores to what the page sent.
        let Body::Json { value } = &number.body else {
            panic!("json body")
        };
        assert!(crate::evidence::record::canonical(value).is_ok());
        assert_eq!(
            restore_json(value),
            serde_json::json!({"amount":12.5,"qty":5,"$ref":"a"})
        );
        assert_eq!(typed_text(&value["amount"]), ("12.5".to_owned(), "number"));
        let Body::Json { value } = &string.body else {
            panic!("json body")
        };
        assert_eq!(
            typed_text(&value["amount"]),
            ("\"12.5\"".to_owned(), "string")
        );
    }

    #[test]
    fn differences_name_the_field() {
        let a = Write::decode(
            "POST",
            "http://h/x",
            Some("application/json"),
            Some(br#"{"a":1,"b":2}"#),
            true,
            &NO,
        );
        let b = Write::decode(
            "POST",
            "http://h/x",
            Some("application/json"),
            Some(br#"{"a":1,"b":3,"c":4}"#),
            true,
            &NO,
        );
        assert_eq!(
            a.differences(&b),
            vec![
                "b: approved 2, now 3".to_string(),
                "c: new field with 4".to_string()
            ]
        );
        assert!(a.differences(&a).is_empty());
    }

    #[test]
    fn secrets_never_survive() {
        let secrets = vec!["hunter2".to_string()];
        let s = Scrub { secrets: &secrets };
        let w = Write::decode(
            "POST",
            "http://h/x",
            Some("application/x-www-form-urlencoded"),
            Some(b"pin=hunter2&_csrf=z&n=1"),
            true,
            &s,
        );
        assert_eq!(
            w.body,
            Body::Form {
                fields: vec![("pin".into(), SECRET.into()), ("n".into(), "1".into())]
            }
        );
        let j = Write::decode(
            "POST",
            "http://h/x",
            Some("application/json"),
            Some(br#"{"p":"hunter2","q":"a hunter2 b"}"#),
            true,
            &s,
        );
        assert!(!serde_json::to_string(&j).unwrap().contains("hunter2"));
    }

    #[test]
    fn multipart_parts_and_file_hashes() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nabc\r\n--XyZ--\r\n";
        let w = Write::decode(
            "POST",
            "http://h/x",
            Some("multipart/form-data; boundary=XyZ"),
            Some(body),
            true,
            &NO,
        );
        let Body::Multipart { parts } = w.body else {
            panic!("not multipart: {:?}", w.body)
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].value.as_deref(), Some("hello"));
        assert_eq!(parts[1].filename.as_deref(), Some("a.txt"));
        assert_eq!(
            parts[1].sha256.as_deref(),
            Some(hex::encode(Sha256::digest(b"abc")).as_str())
        );
    }

    #[test]
    fn incomplete_bodies_are_opaque_and_never_equal_a_complete_one() {
        let a = Write::decode(
            "POST",
            "http://h/x",
            Some("application/json"),
            Some(b"{}"),
            false,
            &NO,
        );
        assert!(matches!(
            a.body,
            Body::Opaque {
                complete: false,
                ..
            }
        ));
        let b = Write::decode(
            "POST",
            "http://h/x",
            Some("application/json"),
            Some(b"{}"),
            true,
            &NO,
        );
        assert_ne!(a, b);
    }
}
