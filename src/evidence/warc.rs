//! The server's own words: HTTP exchanges kept as WARC 1.1 records.
//!
//! # Byte format (normative; ARCHITECTURE.md copies this)
//!
//! One recorded exchange is one file `warc/<sha256>.warc.gz`, named (like screenshots) by
//! the SHA-256 of its bytes, mode 0444. It is two gzip members, concatenated (which is what
//! a `.warc.gz` is): first the `response` record, then its `request` record. Each record is
//!
//! ```text
//! WARC/1.1\r\n
//! WARC-Type: response\r\n                      (or request)
//! WARC-Record-ID: <urn:uuid:…>\r\n
//! WARC-Date: 2026-12-06T19:00:00.123Z\r\n      (RFC 3339 UTC, milliseconds)
//! WARC-Target-URI: http://…\r\n
//! [WARC-Concurrent-To: <urn:uuid:…>\r\n]       (request: the response's id)
//! Content-Type: application/http;msgtype=response\r\n
//! WARC-Payload-Digest: sha256:<64 lowercase hex>\r\n
//! WARC-Block-Digest: sha256:<64 lowercase hex>\r\n
//! [WARC-Truncated: length\r\n]                 (the body was longer than the channel's cap)
//! Content-Length: <bytes of the block>\r\n
//! \r\n
//! <block>\r\n\r\n
//! ```
//!
//! The block is the HTTP message as the browser saw it: status line (`HTTP/1.1 200 OK`) or
//! request line (`GET /path?q HTTP/1.1`, then `Host:`), headers, an empty line, the body.
//! The payload is the body **decoded** (Chromium hands clerk the body after removing any
//! `Content-Encoding`), so `Content-Encoding` and `Transfer-Encoding` are dropped and
//! `Content-Length` states the recorded body's length. Credentials never reach a record:
//! `Cookie`, `Set-Cookie`, `Authorization`, `Proxy-Authorization` and every header whose
//! name contains `token`, `csrf`, `xsrf`, `secret`, `session`, `api-key` or `apikey` keep
//! their name and get the value [`REDACTED`]. The payload digest is SHA-256 over the
//! recorded body, the block digest over the whole block, both lowercase hex after
//! `sha256:`.
//!
//! The journal's `response_recorded` record names the file's SHA-256, the response
//! member's length (it starts at offset 0), the record ids and the payload digest, so the
//! digest is a Merkle leaf like every record (see `tlog`).

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::png::{hash_file, write_read_only};
use super::StoreError;

/// Directory of the WARC files inside the data directory.
pub const WARC_DIR: &str = "warc";

/// The value a credential header gets in a record.
pub const REDACTED: &str = "<redacted by clerk>";

/// One HTTP exchange the guard recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub status: u16,
    pub status_text: String,
    pub response_headers: Vec<(String, String)>,
    /// The body as recorded: at most `cap` bytes.
    pub body: Vec<u8>,
    /// How many (decoded) bytes the server sent.
    pub full_bytes: u64,
    /// The channel's cap on a recorded body.
    pub cap: u64,
    /// Chromium's resource type (`Document`, `Xhr`, `Fetch`).
    pub resource_type: String,
    pub received_at: DateTime<Utc>,
    /// Step index current when it arrived (-1 before the first step).
    pub step: i64,
}

impl Exchange {
    /// The body was longer than the cap (the record holds its first `cap` bytes).
    pub fn truncated(&self) -> bool {
        self.full_bytes > self.body.len() as u64
    }

    /// The response's media type, without parameters (`application/json`).
    pub fn mime(&self) -> String {
        header(&self.response_headers, "content-type")
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default()
    }
}

/// What [`put`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// SHA-256 of the file (its name).
    pub sha256: String,
    pub bytes: u64,
    /// Length of the response member (it starts at offset 0).
    pub response_length: u64,
    pub record_id: String,
    pub request_record_id: String,
    /// `sha256:<hex>` of the recorded body.
    pub payload_digest: String,
    pub payload_bytes: u64,
}

/// A WARC file that does not hold what its journal record says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarcError {
    #[error("not a gzip member at offset {offset}: {reason}")]
    Gzip { offset: u64, reason: String },
    #[error("not a WARC/1.1 record: {0}")]
    Shape(String),
    #[error("{what} is {found}, the record says {expected}")]
    Digest {
        what: &'static str,
        expected: String,
        found: String,
    },
}

/// Path of the WARC file with this hash.
pub fn path_for(data_dir: &Path, sha256: &str) -> PathBuf {
    data_dir.join(WARC_DIR).join(format!("{sha256}.warc.gz"))
}

/// Builds the file for `ex` and stores it durably under its SHA-256 (temp file, fsync,
/// rename, fsync the directory).
pub fn put(data_dir: &Path, ex: &Exchange) -> Result<Stored, StoreError> {
    let (bytes, mut stored) = build(ex);
    let dir = data_dir.join(WARC_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
        path: dir.clone(),
        source,
    })?;
    let path = path_for(data_dir, &stored.sha256);
    if !matches!(hash_file(&path), Ok((h, _)) if h == stored.sha256) {
        write_read_only(&dir, &path, &bytes)?;
    }
    stored.bytes = bytes.len() as u64;
    Ok(stored)
}

fn hex_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether a header carries a credential (its value is replaced by [`REDACTED`]).
pub fn is_credential(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "cookie" | "set-cookie" | "authorization" | "proxy-authorization"
    ) || [
        "token", "csrf", "xsrf", "secret", "session", "api-key", "apikey",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Header lines as recorded: credentials redacted, CR/LF stripped from values.
fn header_lines(headers: &[(String, String)], skip: &[&str], out: &mut Vec<u8>) {
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if skip.contains(&lower.as_str()) || name.is_empty() || name.starts_with(':') {
            continue;
        }
        let value = if is_credential(name) {
            REDACTED.to_owned()
        } else {
            value.replace(['\r', '\n'], " ")
        };
        out.extend_from_slice(name.replace(['\r', '\n', ':'], "").as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn reason_phrase(status: u16, text: &str) -> String {
    if !text.is_empty() {
        return text.replace(['\r', '\n'], " ");
    }
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "",
    }
    .to_owned()
}

fn response_block(ex: &Exchange) -> Vec<u8> {
    let mut block = format!(
        "HTTP/1.1 {} {}\r\n",
        ex.status,
        reason_phrase(ex.status, &ex.status_text)
    )
    .into_bytes();
    header_lines(
        &ex.response_headers,
        &["content-encoding", "transfer-encoding", "content-length"],
        &mut block,
    );
    block.extend_from_slice(format!("Content-Length: {}\r\n\r\n", ex.body.len()).as_bytes());
    block.extend_from_slice(&ex.body);
    block
}

fn request_block(ex: &Exchange) -> Vec<u8> {
    let (target, host) = match url::Url::parse(&ex.url) {
        Ok(u) => {
            let mut t = u.path().to_owned();
            if let Some(q) = u.query() {
                t.push('?');
                t.push_str(q);
            }
            let host = match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => String::new(),
            };
            (t, host)
        }
        Err(_) => (ex.url.clone(), String::new()),
    };
    let mut block = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        ex.method.replace(['\r', '\n', ' '], ""),
        target.replace(['\r', '\n', ' '], "%20"),
        host
    )
    .into_bytes();
    header_lines(&ex.request_headers, &["host", "content-length"], &mut block);
    if !ex.request_body.is_empty() {
        block
            .extend_from_slice(format!("Content-Length: {}\r\n", ex.request_body.len()).as_bytes());
    }
    block.extend_from_slice(b"\r\n");
    block.extend_from_slice(&ex.request_body);
    block
}

#[allow(clippy::too_many_arguments)]
fn record(
    kind: &str,
    id: &str,
    date: &str,
    uri: &str,
    concurrent: Option<&str>,
    block: &[u8],
    payload: &[u8],
    truncated: bool,
) -> Vec<u8> {
    let mut head = format!(
        "WARC/1.1\r\nWARC-Type: {kind}\r\nWARC-Record-ID: <{id}>\r\nWARC-Date: {date}\r\nWARC-Target-URI: {uri}\r\n"
    );
    if let Some(c) = concurrent {
        head.push_str(&format!("WARC-Concurrent-To: <{c}>\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: application/http;msgtype={kind}\r\nWARC-Payload-Digest: {}\r\nWARC-Block-Digest: {}\r\n",
        hex_digest(payload),
        hex_digest(block)
    ));
    if truncated {
        head.push_str("WARC-Truncated: length\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", block.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(block);
    out.extend_from_slice(b"\r\n\r\n");
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// The file for `ex` (response member, then request member) and what it holds; `bytes` of
/// the returned [`Stored`] is filled in by [`put`].
pub fn build(ex: &Exchange) -> (Vec<u8>, Stored) {
    let record_id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let request_record_id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let date = ex
        .received_at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let uri = ex.url.replace(['\r', '\n', ' '], "%20");
    let response = record(
        "response",
        &record_id,
        &date,
        &uri,
        None,
        &response_block(ex),
        &ex.body,
        ex.truncated(),
    );
    let request = record(
        "request",
        &request_record_id,
        &date,
        &uri,
        Some(&record_id),
        &request_block(ex),
        &ex.request_body,
        false,
    );
    let mut bytes = gzip(&response);
    let response_length = bytes.len() as u64;
    bytes.extend_from_slice(&gzip(&request));
    let stored = Stored {
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: bytes.len() as u64,
        response_length,
        record_id,
        request_record_id,
        payload_digest: hex_digest(&ex.body),
        payload_bytes: ex.body.len() as u64,
    };
    (bytes, stored)
}

/// One WARC record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Offset and length of its gzip member in the file.
    pub offset: u64,
    pub length: u64,
    /// WARC header fields in order.
    pub headers: Vec<(String, String)>,
    pub block: Vec<u8>,
}

impl Parsed {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The HTTP body inside the block (after the first empty line).
    pub fn payload(&self) -> &[u8] {
        split_http(&self.block).1
    }

    /// The HTTP header lines of the block, as (name, value).
    pub fn http_headers(&self) -> Vec<(String, String)> {
        let head = String::from_utf8_lossy(split_http(&self.block).0).into_owned();
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }

    /// Checks the block and payload digests the record states.
    pub fn check_digests(&self) -> Result<(), WarcError> {
        for (what, name, bytes) in [
            ("the block digest", "WARC-Block-Digest", &self.block[..]),
            ("the payload digest", "WARC-Payload-Digest", self.payload()),
        ] {
            let stated = self
                .header(name)
                .ok_or_else(|| WarcError::Shape(format!("no {name}")))?;
            let found = hex_digest(bytes);
            if stated != found {
                return Err(WarcError::Digest {
                    what,
                    expected: stated.to_owned(),
                    found,
                });
            }
        }
        Ok(())
    }
}

fn split_http(block: &[u8]) -> (&[u8], &[u8]) {
    match block.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&block[..i], &block[i + 4..]),
        None => (block, &[]),
    }
}

/// Every record of a `.warc.gz` (gzip members, one record each).
pub fn read_records(bytes: &[u8]) -> Result<Vec<Parsed>, WarcError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let offset = (bytes.len() - rest.len()) as u64;
        let mut dec = flate2::bufread::GzDecoder::new(rest);
        let mut plain = Vec::new();
        dec.read_to_end(&mut plain).map_err(|e| WarcError::Gzip {
            offset,
            reason: e.to_string(),
        })?;
        let mut inner = dec.into_inner();
        // `into_inner` returns the reader positioned after the member.
        let after = inner.fill_buf().map(|b| b.len()).unwrap_or(0);
        let length = (rest.len() - after) as u64;
        rest = &rest[rest.len() - after..];
        out.push(parse_record(&plain, offset, length)?);
    }
    Ok(out)
}

fn parse_record(plain: &[u8], offset: u64, length: u64) -> Result<Parsed, WarcError> {
    let (head, rest) = split_http(plain);
    let head =
        std::str::from_utf8(head).map_err(|_| WarcError::Shape("header is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    if lines.next() != Some("WARC/1.1") {
        return Err(WarcError::Shape("first line is not WARC/1.1".into()));
    }
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = header(&headers, "Content-Length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| WarcError::Shape("no Content-Length".into()))?;
    let block = rest
        .get(..len)
        .ok_or_else(|| WarcError::Shape(format!("block shorter than its Content-Length {len}")))?;
    if rest.get(len..) != Some(&b"\r\n\r\n"[..]) {
        return Err(WarcError::Shape(
            "record does not end with CRLF CRLF after its block".into(),
        ));
    }
    Ok(Parsed {
        offset,
        length,
        headers,
        block: block.to_vec(),
    })
}

/// Checks a stored exchange file against its journal record: the file's SHA-256, then both
/// records' digests, the response record's id, payload digest and member length.
pub fn check(
    bytes: &[u8],
    sha256: &str,
    record_id: &str,
    payload_digest: &str,
    response_length: u64,
) -> Result<Vec<Parsed>, WarcError> {
    let found = hex::encode(Sha256::digest(bytes));
    if found != sha256 {
        return Err(WarcError::Digest {
            what: "the file's SHA-256",
            expected: sha256.to_owned(),
            found,
        });
    }
    let records = read_records(bytes)?;
    let response = records
        .first()
        .ok_or_else(|| WarcError::Shape("no records".into()))?;
    for r in &records {
        r.check_digests()?;
    }
    let id = response.header("WARC-Record-ID").unwrap_or("");
    if id != format!("<{record_id}>") {
        return Err(WarcError::Shape(format!(
            "the response record's id is {id}, the journal says <{record_id}>"
        )));
    }
    if response.header("WARC-Payload-Digest") != Some(payload_digest) {
        return Err(WarcError::Digest {
            what: "the stated payload digest",
            expected: payload_digest.to_owned(),
            found: response
                .header("WARC-Payload-Digest")
                .unwrap_or("none")
                .to_owned(),
        });
    }
    if response.length != response_length {
        return Err(WarcError::Shape(format!(
            "the response member is {} bytes, the journal says {response_length}",
            response.length
        )));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(body: &[u8], full: u64) -> Exchange {
        Exchange {
            method: "GET".into(),
            url: "http://127.0.0.1:8080/api/orders/SO-1?x=1".into(),
            request_headers: vec![
                ("Accept".into(), "application/json".into()),
                ("Cookie".into(), "sc_session=abc".into()),
                ("X-CSRF-Token".into(), "t0k3n".into()),
            ],
            request_body: Vec::new(),
            status: 200,
            status_text: String::new(),
            response_headers: vec![
                (
                    "content-type".into(),
                    "application/json; charset=utf-8".into(),
                ),
                ("content-encoding".into(), "gzip".into()),
                ("set-cookie".into(), "sc_session=new".into()),
            ],
            body: body.to_vec(),
            full_bytes: full,
            cap: 1 << 20,
            resource_type: "Fetch".into(),
            received_at: DateTime::parse_from_rfc3339("2026-12-06T19:00:00.123Z")
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or_default(),
            step: 0,
        }
    }

    #[test]
    fn a_built_file_reads_back_with_matching_digests_and_no_credentials() {
        let ex = exchange(br#"{"status":"shipped"}"#, 20);
        let (bytes, stored) = build(&ex);
        let records = check(
            &bytes,
            &stored.sha256,
            &stored.record_id,
            &stored.payload_digest,
            stored.response_length,
        )
        .expect("intact");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].header("WARC-Type"), Some("response"));
        assert_eq!(records[0].payload(), br#"{"status":"shipped"}"#);
        assert_eq!(records[1].header("WARC-Type"), Some("request"));
        assert_eq!(
            records[1].header("WARC-Concurrent-To"),
            Some(format!("<{}>", stored.record_id).as_str())
        );
        let text = String::from_utf8_lossy(&records[0].block).into_owned()
            + &String::from_utf8_lossy(&records[1].block);
        assert!(!text.contains("abc") && !text.contains("t0k3n") && !text.contains("new"));
        assert!(!text.to_ascii_lowercase().contains("content-encoding"));
        assert!(records[0].header("WARC-Truncated").is_none());
    }

    #[test]
    fn a_flipped_byte_or_a_wrong_id_is_reported() {
        let ex = exchange(b"hello world", 11);
        let (mut bytes, stored) = build(&ex);
        assert!(check(
            &bytes,
            &stored.sha256,
            "urn:uuid:other",
            &stored.payload_digest,
            stored.response_length
        )
        .is_err());
        let last = bytes.len() - 30;
        bytes[last] ^= 1;
        let err = check(
            &bytes,
            &stored.sha256,
            &stored.record_id,
            &stored.payload_digest,
            stored.response_length,
        )
        .expect_err("flipped");
        assert!(err.to_string().contains("SHA-256"), "{err}");
    }

    #[test]
    fn a_truncated_body_says_so() {
        let ex = exchange(b"0123", 10);
        let (bytes, _) = build(&ex);
        let records = read_records(&bytes).expect("reads");
        assert_eq!(records[0].header("WARC-Truncated"), Some("length"));
    }
}
