//! Closing the channels that the Fetch domain never sees: WebSocket, WebTransport, WebRTC.
//!
//! Fetch pauses every HTTP request of every target, but a WebSocket handshake, a
//! WebTransport session and WebRTC's P2P sockets never pass through it. So the guard adds two
//! response headers to every document (and a CSP to every worker script) it lets in, and
//! Chromium itself then refuses those connections. What follows was measured on Chromium
//! 156.0.8078.79 (Debian, headless) with throwaway CDP probes against a local server that
//! logged every HTTP request, WebSocket handshake and frame, UDP datagram and TCP connection.
//!
//! **`Content-Security-Policy: connect-src <allowed origins> <allowed ws endpoints> blob:
//! data:; report-uri <document origin>/__clerk/csp-report`** closes WebSockets, including
//! those to an *allowed* origin: with it, no handshake reached the server from the page, an
//! `about:blank` iframe (driven by its parent), a `srcdoc` iframe, a sandboxed `srcdoc`
//! iframe, a `data:` iframe, a `blob:` iframe, a dedicated worker, a module worker, a `blob:`
//! worker, a shared worker and a service worker; each attempt produced one report. The
//! sources name the allowed origins explicitly: `http://host:port` does not match
//! `ws://host:port` (nor `https://host:port`, so WebTransport to a non-default port of an
//! allowed host is refused too), while `'self'` does match `ws:` and is not used. CSP is
//! additive: the site's own policies stay in force. Reports are POSTed by the browser to the
//! `report-uri`; the guard sees them in Fetch (resource type `CSPViolationReport`), never lets
//! them out, and turns each into a [`super::GuardEvent`].
//!
//! Two traps, both measured:
//! - `Fetch.continueResponse` with an added header does **not** apply it to a document
//!   (Chromium parses a document's policies before the interception; an added
//!   `default-src 'none'` did not even stop inline scripts). The guard therefore fulfills
//!   documents (`Fetch.getResponseBody` + `Fetch.fulfillRequest`) with the original status,
//!   headers and body plus its own headers. For worker scripts (resource type `Other`) an
//!   added header via `continueResponse` *is* applied (dedicated, module, shared and service
//!   workers all had their WebSockets refused), so those are not buffered.
//! - A fulfilled document has no remote IP address, so Local Network Access classifies it as
//!   public and then refuses its WebSockets and subresources to loopback or private
//!   addresses (`net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS`). clerk launches Chromium
//!   with `LocalNetworkAccessChecks` disabled: the guard's own origin rules are stricter, and
//!   a seller center on a private network must keep working.
//!
//! **`Connection-Allowlist: ("http://*:*/*" "https://*:*/*");redirects=allow;webrtc=block`**
//! (Chromium 152+, honoured by this build without any `--enable-features`) closes WebRTC: with
//! it no STUN datagram and no TURN-over-TCP connection left the browser, and `webrtc=allow`
//! reopened both. It allows every http(s) URL on purpose: an allowlist that named only the
//! channel's origins would make Chromium refuse off-origin requests before Fetch sees them,
//! and the guard would lose the record. It does not close WebSockets at all (an allowlist of
//! `response-origin` still let `ws:` to the same origin through), hence the CSP.
//! `redirects=allow` is needed because the header otherwise refuses every redirect of a
//! `fetch`. It is only put on documents: workers cannot create `RTCPeerConnection`. A site's
//! own `Connection-Allowlist` is replaced (Chromium enforces only the first list).
//!
//! Not closed, measured: `--disable-quic` does not stop WebTransport (QUIC packets still went
//! out when nothing else refused it) and `--force-webrtc-ip-handling-policy=
//! disable_non_proxied_udp` changed nothing for STUN or TURN, so neither is relied upon. A
//! WebTransport session to an *allowed* `https` origin on its own port would pass both
//! headers (CSP `connect-src` cannot tell it from a `fetch`); it needs the seller center to
//! serve WebTransport over HTTP/3.

use serde_json::Value;
use url::Url;

/// Path (on the document's own origin) where Chromium posts the guard's CSP reports.
pub(super) const REPORT_PATH: &str = "/__clerk/csp-report";

/// The `Connection-Allowlist` value put on documents (see the module docs).
pub(super) const CONNECTION_ALLOWLIST: &str =
    r#"("http://*:*/*" "https://*:*/*");redirects=allow;webrtc=block"#;

/// Response headers a fulfilled document must not keep: the body handed back is already
/// decoded and complete, and the guard's own allowlist replaces the site's.
const DROPPED_ON_FULFILL: &[&str] = &[
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "connection-allowlist",
];

/// The `connect-src` sources: every allowed http(s) origin and allowed WebSocket endpoint,
/// plus `blob:` and `data:` (they never reach the network, and pages fetch them).
pub(super) fn connect_sources(allowed_origins: &[String], websocket_allow: &[String]) -> String {
    let mut sources: Vec<String> = Vec::new();
    for o in allowed_origins {
        match Url::parse(o) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                sources.push(u.origin().ascii_serialization())
            }
            _ => {
                tracing::warn!(origin = %o, "allowed origin is not an http(s) origin; left out of connect-src")
            }
        }
    }
    for w in websocket_allow {
        match Url::parse(w) {
            Ok(mut u) if matches!(u.scheme(), "ws" | "wss") => {
                // CSP path matching ignores the query; a path without a trailing slash is
                // an exact match.
                u.set_query(None);
                u.set_fragment(None);
                sources.push(u.to_string());
            }
            _ => tracing::warn!(endpoint = %w, "websocket_allow entry is not a ws(s) URL; ignored"),
        }
    }
    sources.push("blob:".into());
    sources.push("data:".into());
    sources.join(" ")
}

/// The CSP for a response from `response_url`, reporting to the same origin.
pub(super) fn csp_for(connect_sources: &str, response_url: &Url) -> String {
    format!(
        "connect-src {connect_sources}; report-uri {}{REPORT_PATH}",
        response_url.origin().ascii_serialization()
    )
}

/// Is this header dropped when the guard fulfills a document?
pub(super) fn dropped_on_fulfill(name: &str) -> bool {
    DROPPED_ON_FULFILL
        .iter()
        .any(|d| d.eq_ignore_ascii_case(name))
}

/// What one CSP report says was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Violation {
    /// The refused URL (`ws://…`, `https://…`), as Chromium reports it.
    pub blocked: String,
    /// The document or worker that tried.
    pub document: String,
    /// `file:line` of the script that tried, when reported.
    pub source: Option<String>,
}

/// Reads a `report-uri` body (`{"csp-report": {...}}`, `application/csp-report`).
pub(super) fn parse_report(body: &[u8]) -> Option<Violation> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let r = v.get("csp-report")?;
    let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
    let source = s("source-file").map(|f| match r.get("line-number").and_then(Value::as_i64) {
        Some(l) => format!("{f}:{l}"),
        None => f,
    });
    Some(Violation {
        blocked: s("blocked-uri")?,
        document: s("document-uri").unwrap_or_default(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_sources_name_origins_and_endpoints_but_not_self() {
        let s = connect_sources(
            &[
                "http://127.0.0.1:8931".into(),
                "https://seller.example".into(),
            ],
            &["ws://127.0.0.1:8931/api/feed?x=1".into(), "nonsense".into()],
        );
        assert_eq!(
            s,
            "http://127.0.0.1:8931 https://seller.example ws://127.0.0.1:8931/api/feed blob: data:"
        );
        let u = Url::parse("http://127.0.0.1:8931/orders/1").unwrap();
        assert_eq!(
            csp_for(&s, &u),
            format!("connect-src {s}; report-uri http://127.0.0.1:8931/__clerk/csp-report")
        );
    }

    #[test]
    fn reports_are_read_and_garbage_is_not() {
        let body = br#"{"csp-report":{"document-uri":"http://a/x","blocked-uri":"ws://a/ws?t=1","source-file":"http://a/x","line-number":3}}"#;
        assert_eq!(
            parse_report(body),
            Some(Violation {
                blocked: "ws://a/ws?t=1".into(),
                document: "http://a/x".into(),
                source: Some("http://a/x:3".into()),
            })
        );
        assert_eq!(parse_report(b"not json"), None);
        assert_eq!(parse_report(br#"{"csp-report":{}}"#), None);
    }
}
