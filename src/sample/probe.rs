//! Probe pages: what a page can see of earlier runs (cookies, localStorage, the HTTP cache),
//! and a page that keeps writing. Used by the isolation and attribution tests.
//!
//! `GET /probe/isolation?mark=M` shows the `probe_mark` cookie the request carried and the
//! `probe_mark` localStorage item the page found, then sets both to `M`. It loads
//! `/probe/cached.js`, which is cacheable for an hour: the server's request log says how
//! often a browser actually fetched it. `GET /probe/writer` POSTs to `/probe/beacon` as soon
//! as it loads and every 200 ms after. `GET /probe/flood` keeps eight POSTs to
//! `/probe/beacon` in flight at all times (each one failed is sent again 5 ms later), so a
//! browser whose guard goes away at any instant has a write to let out.
//!
//! `GET /probe/gate?name=K` is late content the test controls: the page asks
//! `/probe/gate-state?name=K` every 100 ms and shows `#open` once
//! [`super::SampleCenter::open_gate`] opened `K`. With `&write=1` it also POSTs to
//! `/probe/beacon` every 100 ms and reports how many of those failed in each poll
//! (`&failed=N`), so the server's log tells the test what the page tried.

use std::sync::Arc;

use axum::extract::Query;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::Shared;

#[derive(Deserialize)]
struct Mark {
    #[serde(default)]
    mark: String,
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/probe/isolation", get(isolation))
        .route("/probe/cached.js", get(cached_js))
        .route("/probe/writer", get(writer))
        .route("/probe/flood", get(flood))
        .route("/probe/beacon", post(|| async { StatusCode::NO_CONTENT }))
        .route("/probe/gate", get(gate))
        .route("/probe/gate-state", get(gate_state))
}

#[derive(Deserialize)]
struct GateQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    write: Option<String>,
}

async fn gate(Query(q): Query<GateQuery>) -> Response {
    let name = clean(&q.name);
    let write = q.write.as_deref() == Some("1");
    let body = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>gate {name}</title></head>
<body><h1 id="gate">Waiting for gate {name}</h1><p id="status">closed</p>
<script>
  const write = {write};
  let failed = 0, sent = 0;
  const beacon = () => fetch('/probe/beacon', {{ method: 'POST', body: 'n=' + (++sent) }})
    .then(r => {{ if (!r.ok) failed++; }}, () => {{ failed++; }});
  const poll = () => fetch('/probe/gate-state?name={name}&failed=' + failed)
    .then(r => r.json())
    .then(s => {{
      if (s.open && !document.getElementById('open')) {{
        const p = document.createElement('p');
        p.id = 'open';
        p.textContent = 'open';
        document.body.appendChild(p);
        document.getElementById('status').textContent = 'open';
      }}
    }}, () => {{}});
  setInterval(() => {{ if (write) beacon(); poll(); }}, 100);
  if (write) beacon();
  poll();
</script></body></html>"#
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn gate_state(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    Query(q): Query<GateQuery>,
) -> Response {
    let open = shared.lock().gates.contains(&clean(&q.name));
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{{\"open\":{open}}}"),
    )
        .into_response()
}

/// Text safe in HTML and in a JS string: marks are test inputs, kept to `[A-Za-z0-9_-]`.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

async fn isolation(headers: HeaderMap, Query(q): Query<Mark>) -> Response {
    let seen_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix("probe_mark="))
        .map(clean)
        .next()
        .unwrap_or_else(|| "none".into());
    let mark = clean(&q.mark);
    let body = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>isolation probe</title>
<script src="/probe/cached.js"></script></head>
<body><h1>What this page sees</h1>
<p>cookie: <span id="cookie-seen">{seen_cookie}</span></p>
<p>localStorage: <span id="storage-seen"></span></p>
<p>cached script: <span id="cached-script">not run</span></p>
<p id="done-wrap"></p>
<script>
  const seen = localStorage.getItem('probe_mark');
  document.getElementById('storage-seen').textContent = seen === null ? 'none' : seen;
  localStorage.setItem('probe_mark', '{mark}');
  document.cookie = 'probe_mark={mark}; path=/';
  document.getElementById('cached-script').textContent = window.probeCached ? 'ran' : 'missing';
  const done = document.createElement('span');
  done.id = 'done';
  done.textContent = 'done';
  document.getElementById('done-wrap').appendChild(done);
</script></body></html>"#
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn cached_js() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        "window.probeCached = true;\n",
    )
        .into_response()
}

async fn flood() -> Response {
    let body = r#"<!doctype html><html><head><meta charset="utf-8"><title>flood</title></head>
<body><h1 id="flood">This page never stops writing</h1>
<script>
  let n = 0;
  const one = () => fetch('/probe/beacon', { method: 'POST', body: 'n=' + (++n) })
    .then(() => setTimeout(one, 5), () => setTimeout(one, 5));
  for (let i = 0; i < 8; i++) one();
</script></body></html>"#;
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn writer() -> Response {
    let body = r#"<!doctype html><html><head><meta charset="utf-8"><title>writer</title></head>
<body><h1 id="writer">This page keeps writing</h1><p id="sent">0</p>
<script>
  let n = 0;
  const send = () => fetch('/probe/beacon', { method: 'POST', body: 'n=' + (++n) })
    .catch(() => {})
    .finally(() => {
      const el = document.getElementById('sent');
      el.textContent = String(n);
      el.dataset.n = String(n);
    });
  send();
  setInterval(send, 200);
</script></body></html>"#;
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}
