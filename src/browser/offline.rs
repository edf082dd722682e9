//! A recording served instead of the network: the responses a run recorded (its WARC
//! records), answered by the guard to the replaying page through the same Fetch
//! interception that records them, so an offline replay never contacts the seller center.
//!
//! A request is matched by method and full URL (without fragment). A URL recorded several
//! times (a page polling an endpoint) gets its responses in recorded order, the last one
//! repeated. A request with no recorded response is failed (`InternetDisconnected`) and
//! recorded as blocked: nothing leaves the browser either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One recorded response, as it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedResponse {
    pub status: u16,
    pub status_text: String,
    /// Response headers as recorded (credential values redacted: those are left out).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Chromium's resource type when it was recorded (`Document`, `Script`, `Fetch`, …).
    pub resource_type: String,
}

/// The responses recorded for one method and URL, in order, and how many were served.
type Served = (Vec<Arc<RecordedResponse>>, usize);

/// The responses of one recorded run, by method and URL.
#[derive(Debug, Default)]
pub struct Recording {
    /// (METHOD, URL) → its responses.
    by_request: Mutex<HashMap<(String, String), Served>>,
    len: usize,
}

impl Recording {
    pub fn new() -> Recording {
        Recording::default()
    }

    /// Adds one recorded exchange (in recorded order).
    pub fn add(&mut self, method: &str, url: &str, response: RecordedResponse) {
        let key = (method.to_ascii_uppercase(), without_fragment(url));
        if let Ok(mut m) = self.by_request.lock() {
            m.entry(key).or_default().0.push(Arc::new(response));
            self.len += 1;
        }
    }

    /// How many responses it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The response to serve to `method url` now, if any was recorded.
    pub fn next(&self, method: &str, url: &str) -> Option<Arc<RecordedResponse>> {
        let key = (method.to_ascii_uppercase(), without_fragment(url));
        let mut m = self.by_request.lock().ok()?;
        let (responses, served) = m.get_mut(&key)?;
        let i = (*served).min(responses.len().checked_sub(1)?);
        *served += 1;
        responses.get(i).cloned()
    }
}

fn without_fragment(url: &str) -> String {
    url.split('#').next().unwrap_or(url).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(body: &str) -> RecordedResponse {
        RecordedResponse {
            status: 200,
            status_text: "OK".into(),
            headers: vec![],
            body: body.as_bytes().to_vec(),
            resource_type: "Fetch".into(),
        }
    }

    #[test]
    fn repeated_urls_are_served_in_recorded_order_then_the_last_again() {
        let mut r = Recording::new();
        r.add("get", "http://a.test/api/x?q=1", resp("one"));
        r.add("GET", "http://a.test/api/x?q=1", resp("two"));
        r.add("GET", "http://a.test/page", resp("page"));
        assert_eq!(r.len(), 3);
        let body = |o: Option<Arc<RecordedResponse>>| {
            String::from_utf8(o.map(|r| r.body.clone()).unwrap_or_default()).unwrap()
        };
        assert_eq!(body(r.next("GET", "http://a.test/api/x?q=1")), "one");
        assert_eq!(body(r.next("GET", "http://a.test/api/x?q=1#frag")), "two");
        assert_eq!(body(r.next("GET", "http://a.test/api/x?q=1")), "two");
        assert!(r.next("POST", "http://a.test/api/x?q=1").is_none());
        assert!(r.next("GET", "http://a.test/api/x?q=2").is_none());
        assert_eq!(body(r.next("GET", "http://a.test/page")), "page");
    }
}
