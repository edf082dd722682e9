//! The sample seller center's single-page app and its JSON / WebSocket API, over real HTTP
//! (a raw client on a TcpStream), plus one real-Chromium smoke test of the app itself.
//!
//! Run with `cargo test --test tests sample_spa`.

use std::time::{Duration, Instant};

use clerk::sample::{self, SampleCenter, SampleOptions, SpaKnobs};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::http::{http, Resp};
use crate::common::World;

async fn start() -> SampleCenter {
    SampleCenter::start(SampleOptions::default()).await.unwrap()
}

fn cookie(center: &SampleCenter, user: &str, valid_for: i64) -> String {
    let c = center.storage_state(user, valid_for).cookies.remove(0);
    format!("{}={}", c.name, c.value)
}

/// GET as a signed-in client.
async fn get(port: u16, path: &str, cookie: &str) -> Resp {
    http(port, "GET", path, &[("Cookie", cookie)], None).await
}

/// The session's CSRF token, from `/api/csrf`.
async fn csrf(port: u16, cookie: &str) -> String {
    let r = get(port, "/api/csrf", cookie).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["token"].as_str().unwrap().to_owned()
}

/// A JSON write as the app sends it.
async fn send_json(
    port: u16,
    method: &str,
    path: &str,
    cookie: &str,
    token: Option<&str>,
    body: &str,
) -> Resp {
    let mut headers = vec![("Cookie", cookie), ("Content-Type", "application/json")];
    if let Some(t) = token {
        headers.push(("X-CSRF-Token", t));
    }
    http(port, method, path, &headers, Some(body)).await
}

const ORDER: &str = "SO-100001";

#[tokio::test]
async fn api_answers_401_without_a_session_and_the_shell_is_public() {
    let center = start().await;
    let port = center.port();
    for path in [
        "/api/me",
        "/api/csrf",
        "/api/orders",
        "/api/orders/SO-100001",
    ] {
        let r = http(port, "GET", path, &[], None).await;
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert!(r.header("content-type").unwrap().contains("json"));
        assert_eq!(r.json()["error"], "not signed in");
    }
    let expired = cookie(&center, "ops", -60);
    assert_eq!(get(port, "/api/me", &expired).await.status, 401);
    let ops = cookie(&center, "ops", 3600);
    let me = get(port, "/api/me", &ops).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"], "ops");

    // The shell and its assets need no session; the CSRF meta is filled only with one.
    let shell = http(port, "GET", "/app/", &[], None).await;
    assert_eq!(shell.status, 200);
    assert!(shell.body.contains(r#"<main id="app""#));
    assert!(shell.body.contains(r#"<script src="/app/app.js">"#));
    assert!(shell
        .body
        .contains(r#"<meta name="csrf-token" content="">"#));
    let token = csrf(port, &ops).await;
    let shell = get(port, "/app/", &ops).await;
    assert!(shell
        .body
        .contains(&format!(r#"<meta name="csrf-token" content="{token}">"#)));
    let js = http(port, "GET", "/app/app.js", &[], None).await;
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().contains("javascript"));
    assert!(js.body.contains("Submit refund request"));
    let css = http(port, "GET", "/app/app.css", &[], None).await;
    assert!(css.header("content-type").unwrap().contains("text/css"));
    assert_eq!(http(port, "GET", "/app", &[], None).await.status, 303);
}

#[tokio::test]
async fn api_login_sets_the_same_session_cookie_and_logout_clears_it() {
    let center = start().await;
    let port = center.port();
    let bad = send_json(
        port,
        "POST",
        "/api/login",
        "",
        None,
        r#"{"username":"ops","password":"nope"}"#,
    )
    .await;
    assert_eq!(bad.status, 401);
    assert!(bad.session_cookie().is_none());
    let ok = send_json(
        port,
        "POST",
        "/api/login",
        "",
        None,
        r#"{"username":"alice","password":"alice-pass"}"#,
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["user"], "alice");
    let c = ok.session_cookie().unwrap();
    assert_eq!(get(port, "/api/me", &c).await.json()["user"], "alice");
    // The same cookie works for the server-rendered pages.
    assert_eq!(get(port, "/orders", &c).await.status, 200);
    let out = send_json(port, "POST", "/api/logout", &c, None, "").await;
    assert_eq!(out.status, 204);
    assert_eq!(out.session_cookie().as_deref(), Some("sc_session="));
}

#[tokio::test]
async fn orders_detail_and_tracking_come_from_the_data_set() {
    let center = start().await;
    let port = center.port();
    let ops = cookie(&center, "ops", 3600);
    let list = get(port, "/api/orders?q=", &ops).await.json();
    assert_eq!(list["total"], 200);
    assert_eq!(list["orders"].as_array().unwrap().len(), 20);
    let found = get(port, "/api/orders?q=Yan%20Rossi", &ops).await.json();
    assert!(found["orders"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"] == ORDER));

    let o = sample::order(ORDER).unwrap();
    let detail = get(port, &format!("/api/orders/{ORDER}"), &ops)
        .await
        .json();
    assert_eq!(detail["status"], o.status);
    assert_eq!(detail["total"], o.total_display());
    assert_eq!(detail["ref"], sample::order_ref(o));
    let tracking = get(port, &format!("/api/orders/{ORDER}/tracking"), &ops)
        .await
        .json();
    assert_eq!(tracking["tracking_no"], "SF8129735404648");
    let missing = get(port, "/api/orders/SO-999999", &ops).await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"]
        .as_str()
        .unwrap()
        .contains("SO-999999"));
}

#[tokio::test]
async fn refunds_require_the_sessions_csrf_token() {
    let center = start().await;
    let port = center.port();
    let ops = cookie(&center, "ops", 3600);
    let path = format!("/api/orders/{ORDER}/refunds");
    let body = r#"{"amount":"1.00","reason":"damaged","method":"original_payment"}"#;
    let none = send_json(port, "POST", &path, &ops, None, body).await;
    assert_eq!(none.status, 403, "{none:?}");
    let wrong = send_json(port, "POST", &path, &ops, Some("deadbeef"), body).await;
    assert_eq!(wrong.status, 403);
    // Another session's token does not fit either.
    let alice = cookie(&center, "alice", 3600);
    let alice_token = csrf(port, &alice).await;
    let foreign = send_json(port, "POST", &path, &ops, Some(&alice_token), body).await;
    assert_eq!(foreign.status, 403);
    let refunds = center.spa_refunds();
    assert_eq!(refunds.len(), 3);
    assert!(refunds.iter().all(|r| !r.accepted && !r.csrf_valid));
    assert!(refunds.iter().all(|r| r.refund_id.is_empty()));
}

#[tokio::test]
async fn a_valid_refund_is_recorded_with_its_exact_body() {
    let center = start().await;
    let port = center.port();
    let ops = cookie(&center, "ops", 3600);
    let token = csrf(port, &ops).await;
    let path = format!("/api/orders/{ORDER}/refunds");
    let body = r#"{"amount":"12.50","reason":"not_received","method":"store_credit","note":"Parcel lost","notify":true,"date":"2024-03-15","requestId":"5f0c…-ü","clientTs":1700000000123}"#;
    let r = send_json(port, "POST", &path, &ops, Some(&token), body).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["refund_id"], "RF-0001");
    let refunds = center.spa_refunds();
    assert_eq!(refunds.len(), 1);
    let rec = &refunds[0];
    assert!(rec.accepted && rec.csrf_valid, "{rec:?}");
    assert_eq!(rec.body, serde_json::from_str::<Value>(body).unwrap());
    assert_eq!(rec.raw, body);
    assert_eq!(rec.user.as_deref(), Some("ops"));
    // The HTTP log has the write with its raw body too.
    let writes = center.writes();
    let w = writes.iter().find(|w| w.path == path).unwrap();
    assert_eq!(w.method, "POST");
    assert_eq!(w.form["_body"], body);

    // Validation: too much, unknown reason, not JSON.
    let too_much = format!(
        r#"{{"amount":"{}","reason":"damaged","method":"original_payment"}}"#,
        sample::order(ORDER).unwrap().total_cents / 100 + 1
    );
    let r = send_json(port, "POST", &path, &ops, Some(&token), &too_much).await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"].as_str().unwrap().contains("exceeds"));
    let r = send_json(
        port,
        "POST",
        &path,
        &ops,
        Some(&token),
        r#"{"amount":"1","reason":"bored","method":"original_payment"}"#,
    )
    .await;
    assert_eq!(r.status, 422);
    let r = send_json(port, "POST", &path, &ops, Some(&token), "amount=1").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        center.spa_refunds().iter().filter(|r| r.accepted).count(),
        1
    );
}

#[tokio::test]
async fn shipping_note_put_is_recorded_and_shown() {
    let center = start().await;
    let port = center.port();
    let ops = cookie(&center, "ops", 3600);
    let token = csrf(port, &ops).await;
    let path = format!("/api/orders/{ORDER}");
    let body = r#"{"shipping_note":"Leave at the front desk"}"#;
    let denied = send_json(port, "PUT", &path, &ops, None, body).await;
    assert_eq!(denied.status, 403);
    let r = send_json(port, "PUT", &path, &ops, Some(&token), body).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        get(port, &path, &ops).await.json()["shipping_note"],
        "Leave at the front desk"
    );
    let edits = center.spa_edits();
    assert_eq!(edits.len(), 2);
    assert!(!edits[0].accepted);
    assert!(edits[1].accepted);
    assert_eq!(
        edits[1].body,
        json!({"shipping_note": "Leave at the front desk"})
    );
    let puts: Vec<_> = center
        .writes()
        .into_iter()
        .filter(|w| w.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2);
    assert_eq!(puts[1].form["_body"], body);
}

#[tokio::test]
async fn knobs_work_over_http_and_from_rust() {
    let center = start().await;
    let port = center.port();
    let ops = cookie(&center, "ops", 3600);
    let form_path = format!("/api/orders/{ORDER}/refund-form");

    let form = get(port, &form_path, &ops).await.json();
    assert_eq!(form["method_default"], "original_payment");
    assert_eq!(
        form["features"],
        json!({"extra_field": false, "double_write": false, "no_write": false, "amount_as_number": false, "client_error": null})
    );
    let r = http(
        port,
        "POST",
        "/_control/spa?extra_field=1&double_write=1&no_write=1&refund_method_default=store_credit",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let form = get(port, &form_path, &ops).await.json();
    assert_eq!(form["method_default"], "store_credit");
    assert_eq!(
        form["features"],
        json!({"extra_field": true, "double_write": true, "no_write": true, "amount_as_number": false, "client_error": null})
    );
    // An unknown method default is offered as an extra option, and accepted.
    center.set_spa_refund_method_default(Some("bank_transfer"));
    let form = get(port, &form_path, &ops).await.json();
    assert!(form["methods"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["value"] == "bank_transfer"));
    assert_eq!(
        http(port, "POST", "/_control/spa?no_write=maybe", &[], None)
            .await
            .status,
        400
    );

    // api_401: every API call answers 401 even with a valid session; login/logout still work.
    let r = http(port, "POST", "/_control/spa?api_401=1", &[], None).await;
    assert_eq!(r.json()["api_401"], true);
    assert_eq!(get(port, "/api/me", &ops).await.status, 401);
    assert_eq!(get(port, &form_path, &ops).await.status, 401);
    assert_eq!(
        send_json(port, "POST", "/api/logout", &ops, None, "")
            .await
            .status,
        204
    );
    // Server-rendered pages are not affected.
    assert_eq!(get(port, "/orders", &ops).await.status, 200);

    let r = http(port, "POST", "/_control/spa?reset=1", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(center.spa_knobs(), SpaKnobs::default());
    assert_eq!(get(port, "/api/me", &ops).await.status, 200);

    center.set_spa_extra_field(true);
    center.set_spa_double_write(true);
    center.set_spa_no_write(true);
    center.set_spa_api_401(true);
    let k = center.spa_knobs();
    assert!(k.extra_field && k.double_write && k.no_write && k.api_401);
    let r = http(port, "GET", "/_control/spa", &[], None).await;
    assert_eq!(r.json()["double_write"], true);
    center.reset_spa_knobs();
    assert_eq!(center.spa_knobs(), SpaKnobs::default());
    // Control paths are never logged.
    assert!(center.requests().iter().all(|r| !r.path.starts_with("/_")));
}

#[tokio::test]
async fn hostile_pages_are_served_and_their_writes_land_in_the_log() {
    let center = start().await;
    let port = center.port();
    let ops = cookie(&center, "ops", 3600);
    for (path, marker) in [
        ("/app/hostile/sw.html", "sw registering"),
        ("/app/hostile/srcdoc.html", "srcdoc="),
        ("/app/hostile/ws.html", "ws connecting"),
    ] {
        let r = get(port, path, &ops).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body.contains(marker), "{path}");
    }
    let sw = get(port, "/app/hostile/sw.js", &ops).await;
    assert!(sw.header("content-type").unwrap().contains("javascript"));
    assert!(sw.body.contains("/api/sw-install"));
    let r = send_json(port, "POST", "/api/sw-install", &ops, None, "{}").await;
    assert_eq!(r.status, 204);
    let r = http(
        port,
        "POST",
        "/api/srcdoc-submit",
        &[
            ("Cookie", &ops),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some("probe=srcdoc"),
    )
    .await;
    assert_eq!(r.status, 200);
    let writes = center.writes();
    assert!(writes.iter().any(|w| w.path == "/api/sw-install"));
    assert!(writes
        .iter()
        .any(|w| w.path == "/api/srcdoc-submit" && w.form["probe"] == "srcdoc"));
}

/// Opens a WebSocket with a raw RFC 6455 handshake; returns the stream (after a 101) or
/// the HTTP status the server answered instead.
async fn ws_connect(port: u16, cookie: Option<&str>) -> Result<TcpStream, u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!(
        "GET /api/feed HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // Read the response head byte by byte so that no frame byte is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    if status == 101 {
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        Ok(s)
    } else {
        Err(status)
    }
}

/// A masked client text frame.
fn ws_text_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x81u8];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one (unmasked, server) frame: opcode and payload.
async fn ws_read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.unwrap();
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await.unwrap();
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).await.unwrap();
        len = u64::from_be_bytes(b);
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await.unwrap();
    (h[0] & 0x0f, payload)
}

#[tokio::test]
async fn websocket_feed_records_connections_and_client_frames() {
    let center = start().await;
    let port = center.port();
    assert_eq!(ws_connect(port, None).await.err(), Some(401));
    assert!(center.ws_events().is_empty());

    let ops = cookie(&center, "ops", 3600);
    let mut s = ws_connect(port, Some(&ops)).await.unwrap();
    let (op, first) = ws_read_frame(&mut s).await;
    assert_eq!(op, 1);
    let first: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(first["type"], "status");
    let hello = format!(r#"{{"type":"hello","order":"{ORDER}"}}"#);
    s.write_all(&ws_text_frame(&hello)).await.unwrap();
    // After the hello, the pushed status names the order.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, msg) = tokio::time::timeout(Duration::from_secs(5), ws_read_frame(&mut s))
            .await
            .unwrap();
        let msg: Value = serde_json::from_slice(&msg).unwrap();
        if msg["order"] == ORDER {
            assert_eq!(msg["status"], sample::order(ORDER).unwrap().status);
            break;
        }
        assert!(Instant::now() < deadline, "no status for {ORDER}");
    }
    let frames = center.ws_frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].text.as_deref(), Some(hello.as_str()));
    assert_eq!(frames[0].user.as_deref(), Some("ops"));
    assert_eq!(frames[0].path, "/api/feed");
    let events = center.ws_events();
    assert_eq!(events[0].kind, "connect");
    assert!(events[0].seq < frames[0].seq);
    // The handshake is in the HTTP log as a GET (not a write).
    assert!(center
        .requests()
        .iter()
        .any(|r| r.path == "/api/feed" && r.method == "GET"));
    assert!(center.writes().is_empty());

    // /_log/ws shows the same; closing is recorded.
    let log = http(port, "GET", "/_log/ws", &[], None).await.json();
    assert_eq!(log[1]["kind"], "frame");
    assert_eq!(log[1]["text"], hello.as_str());
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !center.ws_events().iter().any(|e| e.kind == "close") {
        assert!(Instant::now() < deadline, "close not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    center.clear_log();
    assert!(center.ws_events().is_empty());
}

/// The app itself in real headless Chromium: the detail route of a new document renders the
/// order, the tracking number late, and the shadow-DOM summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_detail_route_with_late_tracking_and_shadow_summary() {
    let world = World::new().await;
    let (browser, tab, base_url) = world.browser().await;
    let o = sample::order(ORDER).unwrap();
    let url = base_url.join(&format!("app/#/orders/{ORDER}")).unwrap();
    tab.goto(&url, Duration::from_secs(30)).await.unwrap();
    tab.wait_visible(
        &clerk::browser::Find::css("[data-testid=tracking-no]"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let seen: Value = tab
        .eval(
            r#"const s = document.querySelector('section[data-order-id="' + arg + '"]');
               const summary = document.querySelector('order-summary');
               const root = summary && summary.shadowRoot;
               return {
                 h1: s.querySelector('h1').textContent,
                 status: s.querySelector('[data-testid=order-status]').textContent,
                 total: s.querySelector('[data-testid=order-total]').textContent,
                 ref: s.querySelector('.ref').textContent,
                 tracking: s.querySelector('[data-testid=tracking-no]').textContent,
                 summary: root ? root.querySelector('[data-testid=summary-total]').textContent : null,
                 copy: root ? root.querySelector('button').textContent : null,
                 tab: s.querySelector('button[role=tab]#tab-logistics').textContent,
                 user: document.querySelector('[data-testid=user-menu] b').textContent,
               };"#,
            json!(ORDER),
        )
        .await
        .unwrap();
    browser.close().await;
    assert_eq!(seen["h1"], format!("Order {ORDER}"));
    assert_eq!(seen["status"], o.status);
    assert_eq!(seen["total"], o.total_display());
    assert_eq!(seen["ref"], sample::order_ref(o));
    assert_eq!(seen["tracking"], o.tracking_no.clone().unwrap());
    assert_eq!(seen["summary"], o.total_display());
    assert_eq!(seen["copy"], "Copy");
    assert_eq!(seen["tab"], "Logistics");
    assert_eq!(seen["user"], "ops");
    // A read-only browser session sent no write over HTTP.
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
}
