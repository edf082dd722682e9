//! A web archive of what the server said: the recorded responses of an export's runs as one
//! WACZ 1.2 package (https://specs.webrecorder.net/wacz/1.2.0/) that ReplayWeb.page opens
//! and `wacz validate` accepts.
//!
//! ```text
//! archive/data.warc.gz    every recorded exchange of the scope, in journal order: the
//!                         stored `warc/<sha256>.warc.gz` files concatenated as they are
//!                         (gzip members concatenate), so each record's bytes are the
//!                         journal's
//! indexes/index.cdxj      one line per response record: SURT key, 14-digit timestamp,
//!                         JSON {url, mime, status, digest, length, offset, filename,
//!                         recordId}, sorted
//! pages/pages.jsonl       the pages screenshotted (url, ts, title), after the
//!                         `json-pages-1.0` header line
//! datapackage.json        resources with `sha256:` hashes and sizes, `wacz_version`
//!                         "1.1.1" (what the 1.2.0 spec and `wacz validate` expect)
//! datapackage-digest.json the SHA-256 of datapackage.json (unsigned: see below)
//! ```
//!
//! Every entry is STORED (not deflated), so the WARC can be read by range. The package is
//! not signed with the WACZ signing spec: clerk's signature over the same bytes is the
//! transparency log (each record's journal line names its WARC file's SHA-256 and is a
//! Merkle leaf); the bundle's proofs cover it.

use std::io::Write;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Event, Record, Store, StoreError};

/// What [`write`] put in the package.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WaczSummary {
    pub responses: usize,
    pub pages: usize,
    pub bytes: u64,
}

/// The SURT form of a URL as CDXJ indexes key it: host labels reversed and comma-joined
/// (`www` dropped; an IP address kept as is), `:port` when not the scheme's default, `)`,
/// the path and the query with its arguments sorted; lowercase.
pub fn surt(url: &str) -> String {
    let Ok(u) = url::Url::parse(url) else {
        return url.to_ascii_lowercase();
    };
    let host = u.host_str().unwrap_or("").to_ascii_lowercase();
    let mut key = if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        host
    } else {
        let mut labels: Vec<&str> = host.split('.').collect();
        labels.reverse();
        if labels.last() == Some(&"www") {
            labels.pop();
        }
        labels.join(",")
    };
    if let Some(p) = u.port() {
        key.push_str(&format!(":{p}"));
    }
    key.push(')');
    key.push_str(u.path());
    if let Some(q) = u.query() {
        let mut args: Vec<&str> = q.split('&').collect();
        args.sort_unstable();
        key.push('?');
        key.push_str(&args.join("&"));
    }
    key.to_ascii_lowercase()
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn zip_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Writes the WACZ of `records`' recorded responses and screenshotted pages to `out`.
/// Each WARC file is re-hashed against its record before it goes in.
pub fn write(
    store: &Store,
    records: &[Record],
    out: &Path,
    title: &str,
) -> Result<WaczSummary, StoreError> {
    let mut data = Vec::new();
    let mut cdxj = Vec::new();
    let mut pages =
        vec![json!({"format": "json-pages-1.0", "id": "pages", "title": title}).to_string()];
    let mut summary = WaczSummary::default();
    let mut seen_pages = std::collections::BTreeSet::new();
    for r in records {
        match &r.event {
            Event::ResponseRecorded {
                url,
                mime,
                status,
                record_id,
                warc_sha256,
                response_length,
                payload_digest,
                received_at,
                ..
            } => {
                let path = store.warc_path(warc_sha256);
                let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
                if hex::encode(Sha256::digest(&bytes)) != *warc_sha256 {
                    return Err(StoreError::Other(format!(
                        "recorded response {} no longer matches its hash (record seq {}); run `clerk verify`",
                        path.display(),
                        r.seq
                    )));
                }
                let ts: String = received_at
                    .chars()
                    .filter(char::is_ascii_digit)
                    .take(14)
                    .collect();
                let entry = json!({
                    "url": url,
                    "mime": mime,
                    "status": status.to_string(),
                    "digest": payload_digest,
                    "length": response_length.to_string(),
                    "offset": data.len().to_string(),
                    "filename": "data.warc.gz",
                    "recordId": format!("<{record_id}>"),
                });
                cdxj.push(format!("{} {ts} {entry}", surt(url)));
                data.extend_from_slice(&bytes);
                summary.responses += 1;
            }
            Event::EvidenceCaptured {
                url,
                title,
                captured_at,
                ..
            } if seen_pages.insert((url.clone(), captured_at.clone())) => {
                pages.push(
                    json!({
                        "id": format!("clerk-{}", r.seq),
                        "url": url,
                        "ts": captured_at,
                        "title": title,
                    })
                    .to_string(),
                );
                summary.pages += 1;
            }
            _ => {}
        }
    }
    cdxj.sort();
    let mut index = cdxj.join("\n");
    if !index.is_empty() {
        index.push('\n');
    }
    let pages = pages.join("\n") + "\n";
    let entries: Vec<(&str, &[u8])> = vec![
        ("archive/data.warc.gz", &data),
        ("indexes/index.cdxj", index.as_bytes()),
        ("pages/pages.jsonl", pages.as_bytes()),
    ];
    let resources: Vec<serde_json::Value> = entries
        .iter()
        .map(|(path, bytes)| {
            json!({
                "name": path.rsplit('/').next().unwrap_or(path),
                "path": path,
                "hash": sha(bytes),
                "bytes": bytes.len(),
            })
        })
        .collect();
    let created = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let package = serde_json::to_string_pretty(&json!({
        "profile": "data-package",
        "resources": resources,
        "title": title,
        "created": created,
        "wacz_version": "1.1.1",
        "software": format!("clerk {}", env!("CARGO_PKG_VERSION")),
    }))
    .map_err(|e| StoreError::Other(e.to_string()))?;
    let digest = serde_json::to_string_pretty(&json!({
        "path": "datapackage.json",
        "hash": sha(package.as_bytes()),
    }))
    .map_err(|e| StoreError::Other(e.to_string()))?;

    let file = std::fs::File::create(out).map_err(|source| StoreError::Io {
        path: out.to_owned(),
        source,
    })?;
    let mut zip = zip::ZipWriter::new(file);
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(data.len() > u32::MAX as usize / 2);
    for (path, bytes) in entries.iter().copied().chain([
        ("datapackage.json", package.as_bytes()),
        ("datapackage-digest.json", digest.as_bytes()),
    ]) {
        zip.start_file(path, stored).map_err(|e| zip_err(out, e))?;
        zip.write_all(bytes).map_err(|e| zip_err(out, e))?;
    }
    let file = zip.finish().map_err(|e| zip_err(out, e))?;
    file.sync_all().map_err(|source| StoreError::Io {
        path: out.to_owned(),
        source,
    })?;
    summary.bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::surt;

    #[test]
    fn surt_keys() {
        assert_eq!(
            surt("http://127.0.0.1:8080/api/orders/SO-1?b=2&a=1"),
            "127.0.0.1:8080)/api/orders/so-1?a=1&b=2"
        );
        assert_eq!(surt("https://www.Example.com/x"), "com,example)/x");
    }
}
