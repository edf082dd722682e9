//! Turns a request body into the field map recorded in [`super::LoggedRequest::form`] and
//! handed to the handlers.
//!
//! Recording every write's fields is what lets clerk's tests prove that a submitted value is
//! exactly the reviewed one, so the parsing covers what browsers actually send: urlencoded
//! forms, multipart forms (text fields; a file part is summarised as
//! `file:NAME (N bytes)`), and anything else kept verbatim under `_body`.

use std::collections::BTreeMap;

/// Parses `body` according to its `Content-Type`.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if body.is_empty() {
        return out;
    }
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in url::form_urlencoded::parse(body) {
            insert(&mut out, k.into_owned(), v.into_owned());
        }
        return out;
    }
    if ct.starts_with("multipart/form-data") {
        if let Some(boundary) = content_type.and_then(boundary_of) {
            if let Some(fields) = parse_multipart(body, &boundary) {
                return fields;
            }
        }
    }
    out.insert(
        "_body".to_owned(),
        String::from_utf8_lossy(body).into_owned(),
    );
    out
}

/// Repeated names (e.g. several checkboxes) are joined with `,` so that no value is lost.
fn insert(out: &mut BTreeMap<String, String>, key: String, value: String) {
    out.entry(key)
        .and_modify(|v: &mut String| {
            v.push(',');
            v.push_str(&value);
        })
        .or_insert(value);
}

/// The `boundary` parameter of a multipart content type (case of the value preserved).
fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case("boundary") {
            Some(v.trim().trim_matches('"').to_owned())
        } else {
            None
        }
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Parses a multipart body; `None` when it is malformed.
fn parse_multipart(body: &[u8], boundary: &str) -> Option<BTreeMap<String, String>> {
    let delimiter = format!("--{boundary}");
    let mut out = BTreeMap::new();
    let mut pos = find(body, delimiter.as_bytes(), 0)? + delimiter.len();
    loop {
        // After a delimiter: `--` ends the body, otherwise CRLF then a part.
        if body[pos..].starts_with(b"--") {
            return Some(out);
        }
        pos = find(body, b"\r\n", pos)? + 2;
        let headers_end = find(body, b"\r\n\r\n", pos)?;
        let headers = String::from_utf8_lossy(&body[pos..headers_end]).into_owned();
        let content_start = headers_end + 4;
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), content_start)?;
        let content = &body[content_start..next];
        let (name, filename) = disposition(&headers);
        if let Some(name) = name {
            let value = match filename {
                Some(file) => format!("file:{file} ({} bytes)", content.len()),
                None => String::from_utf8_lossy(content).into_owned(),
            };
            insert(&mut out, name, value);
        }
        pos = next + 2 + delimiter.len();
    }
}

/// `name` and `filename` of a part's `Content-Disposition` header.
fn disposition(headers: &str) -> (Option<String>, Option<String>) {
    let Some(line) = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
    else {
        return (None, None);
    };
    let mut name = None;
    let mut filename = None;
    for param in line.split(';').skip(1) {
        if let Some((k, v)) = param.trim().split_once('=') {
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "name" => name = Some(v),
                "filename" => filename = Some(v),
                _ => {}
            }
        }
    }
    (name, filename)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_with_repeats() {
        let f = parse_body(
            Some("application/x-www-form-urlencoded"),
            b"a=1+2&b=%C3%A9&a=3",
        );
        assert_eq!(f.get("a").map(String::as_str), Some("1 2,3"));
        assert_eq!(f.get("b").map(String::as_str), Some("é"));
    }

    #[test]
    fn multipart_text_and_file() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\nworld\r\n--XyZ\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1\r\n--XyZ--\r\n";
        let f = parse_body(Some("multipart/form-data; boundary=XyZ"), body);
        assert_eq!(f.get("note").map(String::as_str), Some("hello\r\nworld"));
        assert_eq!(
            f.get("doc").map(String::as_str),
            Some("file:a.pdf (6 bytes)")
        );
    }

    #[test]
    fn other_bodies_are_kept_raw() {
        let f = parse_body(Some("text/plain;charset=UTF-8"), b"{\"event\":\"x\"}");
        assert_eq!(
            f.get("_body").map(String::as_str),
            Some("{\"event\":\"x\"}")
        );
        let broken = parse_body(Some("multipart/form-data; boundary=Q"), b"junk");
        assert_eq!(broken.get("_body").map(String::as_str), Some("junk"));
    }
}
