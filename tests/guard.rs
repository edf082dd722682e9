//! The network guard against hostile pages, in real headless Chromium: WebSockets (to an
//! allowed origin too), WebRTC, service workers, a self-submitting `srcdoc` iframe, and the
//! held / judged writes of drafts and submits. Each test serves its pages from a tiny axum
//! server on 127.0.0.1:0 that logs every HTTP request, WebSocket handshake and frame, so
//! "nothing reached the seller center" is checked where it counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clerk::browser::{Browser, GuardEvent, HeldWrite, LaunchOptions, Policy, Tab};
use serde_json::Value;
use sha2::Digest;
use url::Url;

/// What the fixture server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hit {
    /// `http`, `ws-connect` or `ws-frame`.
    kind: &'static str,
    method: String,
    /// Path and query.
    target: String,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Hit>>>;

#[derive(Clone)]
struct AppState {
    log: Log,
    pages: Arc<HashMap<&'static str, (&'static str, String)>>,
}

/// A tiny seller center: fixed pages, a catch-all that logs, and two WebSocket endpoints.
struct Fixture {
    port: u16,
    log: Log,
    _server: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn start() -> Fixture {
        let log: Log = Arc::default();
        let state = AppState {
            log: log.clone(),
            pages: Arc::new(pages()),
        };
        let app = Router::new()
            .route("/ws", get(ws_endpoint))
            .route("/feed", get(ws_endpoint))
            .fallback(serve)
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fixture {
            port,
            log,
            _server: server,
        }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{path}", self.origin())).unwrap()
    }

    fn hits(&self) -> Vec<Hit> {
        self.log.lock().unwrap().clone()
    }

    /// HTTP requests that are not reads.
    fn writes(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.kind == "http" && !matches!(h.method.as_str(), "GET" | "HEAD"))
            .collect()
    }

    /// WebSocket handshakes and frames.
    fn websocket(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.kind != "http")
            .collect()
    }

    fn got(&self, method: &str, path: &str) -> bool {
        self.hits()
            .iter()
            .any(|h| h.kind == "http" && h.method == method && h.target.starts_with(path))
    }
}

async fn serve(State(st): State<AppState>, method: Method, uri: Uri, body: Bytes) -> Response {
    let target = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    st.log.lock().unwrap().push(Hit {
        kind: "http",
        method: method.to_string(),
        target,
        body: body.to_vec(),
    });
    match st.pages.get(uri.path()) {
        Some((ct, text)) if method == Method::GET => {
            ([(header::CONTENT_TYPE, *ct)], text.clone()).into_response()
        }
        None if method == Method::GET => (StatusCode::NOT_FOUND, "not found").into_response(),
        _ => (StatusCode::OK, "ok").into_response(),
    }
}

async fn ws_endpoint(State(st): State<AppState>, uri: Uri, ws: WebSocketUpgrade) -> Response {
    let target = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    st.log.lock().unwrap().push(Hit {
        kind: "ws-connect",
        method: "GET".into(),
        target: target.clone(),
        body: vec![],
    });
    ws.on_upgrade(move |socket| record_frames(socket, st.log, target))
}

async fn record_frames(mut socket: WebSocket, log: Log, target: String) {
    while let Some(Ok(msg)) = socket.recv().await {
        let body = match msg {
            Message::Text(t) => t.as_str().as_bytes().to_vec(),
            Message::Binary(b) => b.to_vec(),
            Message::Close(_) => break,
            _ => continue,
        };
        log.lock().unwrap().push(Hit {
            kind: "ws-frame",
            method: "SEND".into(),
            target: target.clone(),
            body,
        });
    }
}

/// Shared page prelude: `note(tag, what)` appends a line to `#out`, which tests read from
/// clerk's isolated world (page globals are not visible there).
const NOTE: &str = r#"<pre id="out"></pre><script>
window.note = (tag, what) => { document.getElementById('out').textContent += tag + ':' + what + '\n'; };
window.WSO = location.origin.replace('http', 'ws');
</script>"#;

/// A worker that opens a WebSocket named by its `?tag=` and reports back.
const WS_WORKER: &str = r#"const tag = new URL(location.href).searchParams.get('tag') || 'blobworker';
const origin = self.WSO || location.origin.replace('http', 'ws');
try {
  const w = new WebSocket(origin + '/ws?' + tag);
  w.onopen = () => { w.send('frame-' + tag); postMessage('open'); };
  w.onerror = () => postMessage('error');
} catch (e) { postMessage('throw ' + e.name); }"#;

const WS_SHARED: &str = r#"onconnect = (e) => {
  const port = e.ports[0];
  try {
    const w = new WebSocket(location.origin.replace('http', 'ws') + '/ws?shared');
    w.onopen = () => { w.send('frame-shared'); port.postMessage('open'); };
    w.onerror = () => port.postMessage('error');
  } catch (err) { port.postMessage('throw ' + err.name); }
};"#;

fn pages() -> HashMap<&'static str, (&'static str, String)> {
    let html = "text/html; charset=utf-8";
    let js = "text/javascript";
    let mut p = HashMap::new();
    p.insert(
        "/ws-page",
        (
            html,
            format!(
                r#"<!doctype html><title>ws</title>{NOTE}<script>
function open(W, tag) {{
  try {{
    const w = new W(WSO + '/ws?' + tag);
    w.onopen = () => {{ w.send('frame-' + tag); note(tag, 'open'); }};
    w.onerror = () => note(tag, 'error');
  }} catch (e) {{ note(tag, 'throw ' + e.name); }}
}}
open(WebSocket, 'page');
const blank = document.createElement('iframe');
document.body.appendChild(blank);
open(blank.contentWindow.WebSocket, 'blank');
const sd = document.createElement('iframe');
sd.srcdoc = '<script>try {{ const w = new WebSocket(parent.WSO + "/ws?srcdoc"); w.onopen = () => {{ w.send("frame-srcdoc"); parent.note("srcdoc", "open"); }}; w.onerror = () => parent.note("srcdoc", "error"); }} catch (e) {{ parent.note("srcdoc", "throw"); }}<\/script>';
document.body.appendChild(sd);
const wk = new Worker('/ws-worker.js?tag=worker');
wk.onmessage = (e) => note('worker', e.data);
const src = 'self.WSO = ' + JSON.stringify(WSO) + ';\n' + {worker};
const bw = new Worker(URL.createObjectURL(new Blob([src], {{type: 'text/javascript'}})));
bw.onmessage = (e) => note('blobworker', e.data);
const sw = new SharedWorker('/ws-shared.js');
sw.port.onmessage = (e) => note('shared', e.data);
</script>"#,
                worker = serde_json::to_string(WS_WORKER).unwrap()
            ),
        ),
    );
    p.insert("/ws-worker.js", (js, WS_WORKER.to_owned()));
    p.insert("/ws-shared.js", (js, WS_SHARED.to_owned()));
    p.insert(
        "/feed-page",
        (
            html,
            format!(
                r#"<!doctype html><title>feed</title>{NOTE}<script>
const feed = new WebSocket(WSO + '/feed');
feed.onopen = () => {{ feed.send('hello-feed'); note('feed', 'open'); }};
feed.onerror = () => note('feed', 'error');
const fw = new Worker(URL.createObjectURL(new Blob(['const w = new WebSocket(' + JSON.stringify(WSO) + ' + "/feed"); w.onopen = () => postMessage("open"); w.onerror = () => postMessage("error"); onmessage = () => w.send("from-worker");'])));
// The worker sends once the page tells it to (a while after its socket opened): clerk
// watches a worker from a session it attaches after the worker started (known limit).
fw.onmessage = (e) => {{ note('wfeed', e.data); if (e.data === 'open') setTimeout(() => fw.postMessage('send'), 500); }};
const other = new WebSocket(WSO + '/ws?other');
other.onopen = () => {{ other.send('frame-other'); note('other', 'open'); }};
other.onerror = () => note('other', 'error');
</script>"#
            ),
        ),
    );
    p.insert(
        "/sw-page",
        (
            html,
            format!(
                r#"<!doctype html><title>sw</title>{NOTE}<script>
navigator.serviceWorker.register('/sw.js').then(() => note('sw', 'registered'), (e) => note('sw', 'register failed'));
navigator.serviceWorker.ready.then(() => note('sw', 'ready'));
</script>"#
            ),
        ),
    );
    p.insert(
        "/sw.js",
        (
            js,
            r#"self.addEventListener('install', (e) => e.waitUntil(
  fetch('/sw-post', {method: 'POST', body: 'from-sw'}).then(() => {}, () => {})));
self.addEventListener('activate', (e) => e.waitUntil(clients.claim()));"#
                .to_owned(),
        ),
    );
    p.insert(
        "/srcdoc-page",
        (
            html,
            r#"<!doctype html><title>srcdoc</title><p id="main">main document</p>
<iframe id="f" srcdoc='<form method="post" action="/submit"><input name="a" value="1"></form><script>document.forms[0].submit()</script>'></iframe>"#
                .to_owned(),
        ),
    );
    p.insert(
        "/held-page",
        (
            html,
            format!(
                r#"<!doctype html><title>held</title>{NOTE}<button id="send">Submit refund request</button><script>
let n = 0;
document.getElementById('send').addEventListener('click', () => {{
  n += 1;
  const tag = 'send' + n;
  fetch('/api/orders/SO-7/refunds?src=ui', {{
    method: 'POST',
    headers: {{'Content-Type': 'application/json', 'X-CSRF-Token': 'csrf-secret'}},
    body: JSON.stringify({{amount: '12.50', reason: 'damaged', note: 'ünïcode'}}),
  }}).then((r) => note(tag, 'status ' + r.status), () => note(tag, 'failed'));
}});
</script>"#
            ),
        ),
    );
    p.insert(
        "/rtc-page",
        (
            html,
            format!(
                r#"<!doctype html><title>rtc</title>{NOTE}<script>
(async () => {{
  const q = new URLSearchParams(location.search);
  try {{
    const pc = new RTCPeerConnection({{iceServers: [
      {{urls: 'stun:127.0.0.1:' + q.get('udp')}},
      {{urls: 'turn:127.0.0.1:' + q.get('tcp') + '?transport=tcp', username: 'exfil', credential: 'x'}},
    ]}});
    pc.onicegatheringstatechange = () => {{ if (pc.iceGatheringState === 'complete') note('rtc', 'gathered'); }};
    pc.createDataChannel('d');
    await pc.setLocalDescription(await pc.createOffer());
  }} catch (e) {{ note('rtc', 'throw ' + e.name); }}
}})();
</script>"#
            ),
        ),
    );
    p
}

/// A guarded browser on the fixture, as a run would have it.
async fn launch(fx: &Fixture, tweak: impl FnOnce(&mut Policy)) -> (Browser, Tab) {
    let mut policy = Policy {
        allowed_origins: vec![fx.origin()],
        ..Policy::default()
    };
    tweak(&mut policy);
    let opts = LaunchOptions::detect().expect("chromium is installed");
    Browser::launch(&opts, policy, None).await.unwrap()
}

/// The page's `#out` lines.
async fn out(tab: &Tab) -> String {
    tab.eval::<Option<String>>(
        "const o = document.getElementById('out'); return o ? o.textContent : null;",
        Value::Null,
    )
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Waits (up to 30 s) until every `tag:` has a line in `#out`; returns the lines by tag.
async fn wait_notes(tab: &Tab, tags: &[&str]) -> HashMap<String, String> {
    let start = Instant::now();
    loop {
        let text = out(tab).await;
        let notes: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(t, w)| (t.to_owned(), w.to_owned()))
            .collect();
        if tags.iter().all(|t| notes.contains_key(*t)) {
            return notes;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the page never reported {tags:?}; it said: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 15 s) until the guard has recorded an event matching `pred`.
async fn wait_event(browser: &mut Browser, what: &str, pred: impl Fn(&GuardEvent) -> bool) {
    let start = Instant::now();
    while !browser.peek_events().iter().any(&pred) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no guard event for {what}: {:#?}",
            browser.peek_events()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A page opens a WebSocket to the seller center's own (allowed) origin from every kind of
/// context, and sends a frame: no handshake reaches the server, and each attempt is a
/// blocked `WEBSOCKET` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_to_allowed_origin_is_closed_in_every_context_and_recorded() {
    let fx = Fixture::start().await;
    let (mut browser, tab) = launch(&fx, |_| {}).await;
    tab.goto(&fx.url("/ws-page"), Duration::from_secs(30))
        .await
        .unwrap();
    let tags = ["page", "blank", "srcdoc", "worker", "blobworker", "shared"];
    let notes = wait_notes(&tab, &tags).await;
    for tag in tags {
        assert_ne!(notes[tag], "open", "{tag}: the socket opened");
        wait_event(&mut browser, tag, |e| {
            e.blocked && e.method == "WEBSOCKET" && e.url.ends_with(&format!("/ws?{tag}"))
        })
        .await;
    }
    let events = browser.drain_events();
    let page = events
        .iter()
        .find(|e| e.method == "WEBSOCKET" && e.url.ends_with("/ws?page"))
        .unwrap();
    assert_eq!(page.url, format!("ws://127.0.0.1:{}/ws?page", fx.port));
    assert!(!page.off_origin, "{page:?}");
    assert!(page.reason.contains("websocket"), "{}", page.reason);
    browser.close().await;
    assert_eq!(
        fx.websocket(),
        vec![],
        "the seller center saw WebSocket traffic"
    );
    assert!(fx.writes().is_empty(), "{:?}", fx.writes());
}

/// A channel-allowed read-only endpoint connects; the frames the page and its worker send on
/// it reach the server and are recorded; another socket on the same page stays closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_websocket_endpoint_connects_and_its_frames_are_recorded() {
    let fx = Fixture::start().await;
    let feed = format!("ws://127.0.0.1:{}/feed", fx.port);
    let (mut browser, tab) = launch(&fx, |p| p.websocket_allow = vec![feed.clone()]).await;
    tab.goto(&fx.url("/feed-page"), Duration::from_secs(30))
        .await
        .unwrap();
    let notes = wait_notes(&tab, &["feed", "other", "wfeed"]).await;
    assert_eq!(notes["feed"], "open");
    assert_eq!(notes["wfeed"], "open");
    assert_ne!(notes["other"], "open");
    // The frame is recorded by size and hash, never by content.
    let digest = hex::encode(sha2::Sha256::digest(b"hello-feed"));
    wait_event(&mut browser, "the frame", |e| {
        e.method == "WEBSOCKET FRAME" && e.reason.contains(&digest)
    })
    .await;
    wait_event(&mut browser, "the other socket", |e| {
        e.blocked && e.method == "WEBSOCKET" && e.url.ends_with("/ws?other")
    })
    .await;
    // A frame a worker sends on the allowed socket is recorded too, and attributed to it.
    let from_worker = hex::encode(sha2::Sha256::digest(b"from-worker"));
    wait_event(&mut browser, "the worker's frame", |e| {
        e.method == "WEBSOCKET FRAME" && e.reason.contains(&from_worker)
    })
    .await;
    let main = tab.main_frame().await.unwrap();
    let events = browser.drain_events();
    let frame = events
        .iter()
        .find(|e| e.method == "WEBSOCKET FRAME" && e.reason.contains(&digest))
        .unwrap();
    assert!(!frame.blocked);
    assert_eq!(frame.url, feed);
    assert_eq!(browser.classify_frame(&frame.frame, &main), "page");
    let worker_frame = events
        .iter()
        .find(|e| e.method == "WEBSOCKET FRAME" && e.reason.contains(&from_worker))
        .unwrap();
    assert_eq!(worker_frame.url, feed);
    assert_eq!(browser.classify_frame(&worker_frame.frame, &main), "worker");
    assert!(events
        .iter()
        .any(|e| !e.blocked && e.method == "WEBSOCKET" && e.url == feed));
    browser.close().await;
    let ws = fx.websocket();
    assert!(
        ws.iter()
            .any(|h| h.kind == "ws-frame" && h.target == "/feed" && h.body == b"hello-feed"),
        "{ws:?}"
    );
    assert!(!ws.iter().any(|h| h.target.starts_with("/ws")), "{ws:?}");
}

/// WebRTC cannot reach a STUN (UDP) or TURN (TCP) server: ICE gathering completes without a
/// single datagram or connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_sends_nothing() {
    let fx = Fixture::start().await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let (udp_port, tcp_port) = (
        udp.local_addr().unwrap().port(),
        tcp.local_addr().unwrap().port(),
    );
    let s = seen.clone();
    let listeners = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            tokio::select! {
                r = udp.recv_from(&mut buf) => if let Ok((n, _)) = r { s.lock().unwrap().push(format!("udp {n} bytes")) },
                r = tcp.accept() => if r.is_ok() { s.lock().unwrap().push("tcp connection".into()) },
            }
        }
    });
    let (browser, tab) = launch(&fx, |_| {}).await;
    tab.goto(
        &fx.url(&format!("/rtc-page?udp={udp_port}&tcp={tcp_port}")),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let notes = wait_notes(&tab, &["rtc"]).await;
    browser.close().await;
    listeners.abort();
    assert!(
        notes["rtc"] == "gathered" || notes["rtc"].starts_with("throw"),
        "{notes:?}"
    );
    assert_eq!(*seen.lock().unwrap(), Vec::<String>::new());
}

/// By default a service worker cannot register: its script request is failed at once (the
/// page is told, nothing waits) and recorded; the server never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_worker_registration_is_blocked_and_recorded() {
    let fx = Fixture::start().await;
    let (mut browser, tab) = launch(&fx, |_| {}).await;
    tab.goto(&fx.url("/sw-page"), Duration::from_secs(30))
        .await
        .unwrap();
    let notes = wait_notes(&tab, &["sw"]).await;
    assert_eq!(notes["sw"], "register failed");
    wait_event(&mut browser, "the service worker script", |e| {
        e.blocked && e.url.ends_with("/sw.js") && e.reason.contains("service worker")
    })
    .await;
    browser.close().await;
    assert!(!fx.got("GET", "/sw.js"));
    assert!(fx.writes().is_empty(), "{:?}", fx.writes());
}

/// A channel that allows service workers gets one that installs and activates (no stall),
/// and the POST its install handler sends is blocked like any write, recorded, and
/// attributed to the service worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_service_worker_runs_and_its_write_is_blocked() {
    let fx = Fixture::start().await;
    let (mut browser, tab) = launch(&fx, |p| p.service_workers = true).await;
    tab.goto(&fx.url("/sw-page"), Duration::from_secs(30))
        .await
        .unwrap();
    let start = Instant::now();
    while !out(&tab).await.contains("sw:ready") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the service worker never became ready: {:?}",
            out(&tab).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_event(&mut browser, "the worker's POST", |e| {
        e.blocked && e.method == "POST" && e.url.ends_with("/sw-post")
    })
    .await;
    let main = tab.main_frame().await.unwrap();
    let events = browser.drain_events();
    let post = events.iter().find(|e| e.url.ends_with("/sw-post")).unwrap();
    assert_eq!(browser.classify_frame(&post.frame, &main), "service_worker");
    browser.close().await;
    assert!(fx.got("GET", "/sw.js"));
    assert!(fx.writes().is_empty(), "{:?}", fx.writes());
}

/// A `srcdoc` iframe that submits a form by itself: `goto` finishes (it used to wait for a
/// load event that never came), the POST never leaves, and the attempt is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srcdoc_self_submitting_form_does_not_hang_goto() {
    let fx = Fixture::start().await;
    let (mut browser, tab) = launch(&fx, |_| {}).await;
    let r = tab
        .goto(&fx.url("/srcdoc-page"), Duration::from_secs(30))
        .await;
    assert!(r.is_ok(), "goto failed: {r:?}");
    wait_event(&mut browser, "the srcdoc form", |e| {
        e.blocked && e.method == "POST" && e.url.ends_with("/submit") && e.navigation
    })
    .await;
    // The main document is the page that was asked for.
    let text: String = tab
        .eval(
            "return document.getElementById('main').textContent;",
            Value::Null,
        )
        .await
        .unwrap();
    assert_eq!(text, "main document");
    browser.close().await;
    assert!(fx.writes().is_empty(), "{:?}", fx.writes());
}

/// Clicks the page's submit button (a script click: the page's listener sends the write).
async fn click_send(tab: &Tab) {
    let clicked: bool = tab
        .eval(
            "const b = document.getElementById('send'); if (!b) return false; b.click(); return true;",
            Value::Null,
        )
        .await
        .unwrap();
    assert!(clicked);
}

const REFUND_BODY: &str = r#"{"amount":"12.50","reason":"damaged","note":"ünïcode"}"#;

/// A draft holds the write a script sends: method, full URL, content type and exact body
/// are kept, the CSRF header is not, and the server receives nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_write_keeps_the_exact_body_and_sends_nothing() {
    let fx = Fixture::start().await;
    let (mut browser, tab) = launch(&fx, |_| {}).await;
    tab.goto(&fx.url("/held-page"), Duration::from_secs(30))
        .await
        .unwrap();
    browser.guard().hold_writes(true);
    click_send(&tab).await;
    let notes = wait_notes(&tab, &["send1"]).await;
    assert_eq!(notes["send1"], "failed");
    let held = browser.guard().take_held();
    assert_eq!(
        held,
        vec![HeldWrite {
            method: "POST".into(),
            url: fx
                .url("/api/orders/SO-7/refunds?src=ui")
                .as_str()
                .to_owned(),
            content_type: Some("application/json".into()),
            body: Some(REFUND_BODY.as_bytes().to_vec()),
            body_complete: true,
            resource_type: "Xhr".into(),
            frame: tab.main_frame().await.unwrap(),
        }]
    );
    assert!(browser.guard().take_held().is_empty(), "take_held drains");
    let events = browser.settle_events().await;
    assert!(events
        .iter()
        .any(|e| e.blocked && e.method == "POST" && e.reason.contains("held for review")));
    browser.close().await;
    assert!(fx.writes().is_empty(), "{:?}", fx.writes());
}

/// The endpoint of the refund the held page sends.
fn refunds_endpoint(fx: &Fixture) -> clerk::browser::ArmedWrite {
    clerk::browser::ArmedWrite {
        method: "POST".into(),
        url: fx.url("/api/orders/SO-7/refunds").to_string(),
    }
}

/// A submit window with a judge: the write it accepts reaches the server exactly once, with
/// its exact body; a second write is refused and trips the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judged_write_goes_out_once_and_a_second_write_trips() {
    let fx = Fixture::start().await;
    let (mut browser, tab) = launch(&fx, |_| {}).await;
    tab.goto(&fx.url("/held-page"), Duration::from_secs(30))
        .await
        .unwrap();
    let guard = browser.guard().clone();
    guard.arm_judged(
        refunds_endpoint(&fx),
        Box::new(|w: &HeldWrite| {
            if w.body.as_deref() == Some(REFUND_BODY.as_bytes()) {
                Ok(())
            } else {
                Err("the body differs from the approved one".into())
            }
        }),
    );
    click_send(&tab).await;
    let verdict = guard.wait_judged(Duration::from_secs(30)).await;
    let sent = match verdict {
        Some(Ok(w)) => w,
        other => panic!("expected an accepted write, got {other:?}"),
    };
    assert_eq!(sent.method, "POST");
    let notes = wait_notes(&tab, &["send1"]).await;
    assert_eq!(notes["send1"], "status 200");
    assert_eq!(guard.tripped(), None);
    // A second write while the window is open: refused, and the window trips.
    click_send(&tab).await;
    let notes = wait_notes(&tab, &["send2"]).await;
    assert_eq!(notes["send2"], "failed");
    assert!(guard.tripped().is_some());
    assert!(!guard.disarm(), "the window was used");
    let events = browser.settle_events().await;
    assert!(events
        .iter()
        .any(|e| e.blocked && e.reason.contains("second write")));
    browser.close().await;
    let writes = fx.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].target, "/api/orders/SO-7/refunds?src=ui");
    assert_eq!(writes[0].body, REFUND_BODY.as_bytes());
}

/// A judge that finds the write different: nothing is sent, the reason is returned and
/// recorded, and the window is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_judged_write_sends_nothing_and_says_why() {
    let fx = Fixture::start().await;
    let (mut browser, tab) = launch(&fx, |_| {}).await;
    tab.goto(&fx.url("/held-page"), Duration::from_secs(30))
        .await
        .unwrap();
    let guard = browser.guard().clone();
    guard.arm_judged(
        refunds_endpoint(&fx),
        Box::new(|_: &HeldWrite| Err("amount 12.50 differs from the approved 10.00".into())),
    );
    click_send(&tab).await;
    match guard.wait_judged(Duration::from_secs(30)).await {
        Some(Err((w, why))) => {
            assert_eq!(w.body.as_deref(), Some(REFUND_BODY.as_bytes()));
            assert_eq!(why, "amount 12.50 differs from the approved 10.00");
        }
        other => panic!("expected a refused write, got {other:?}"),
    }
    let notes = wait_notes(&tab, &["send1"]).await;
    assert_eq!(notes["send1"], "failed");
    assert!(guard.tripped().is_some());
    let events = browser.settle_events().await;
    assert!(events
        .iter()
        .any(|e| e.blocked && e.reason.contains("differs from the approved 10.00")));
    browser.close().await;
    assert!(fx.writes().is_empty(), "{:?}", fx.writes());
}
