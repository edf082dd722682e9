//! The sample seller center over real HTTP (no browser): data set, sessions, request log,
//! CSRF and the control API that clerk's browser tests rely on.
//!
//! Run with `cargo test --test sample_center`.

use std::time::Duration;

use clerk::sample::{self, SampleCenter, SampleOptions};

use crate::common::http::Resp;
use tokio::net::TcpStream;

/// The shared test client, with this file's shorthand: an optional session cookie and an
/// optional `(content type, body)`.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<(&str, &str)>,
) -> Resp {
    let mut headers = Vec::new();
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    if let Some((content_type, _)) = body {
        headers.push(("Content-Type", content_type));
    }
    crate::common::http::http(port, method, path, &headers, body.map(|(_, b)| b)).await
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url_encoded();
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn url_encoded() -> url::form_urlencoded::Serializer<'static, String> {
    url::form_urlencoded::Serializer::new(String::new())
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The `Cookie:` header value of a storageState made by the server.
fn cookie_of(
    center: &SampleCenter,
    user: &str,
    valid_for: impl Into<sample::SessionValidity>,
) -> String {
    let state = center.storage_state(user, valid_for);
    let c = &state.cookies[0];
    assert_eq!(c.name, "sc_session");
    assert_eq!(c.domain, "127.0.0.1");
    format!("{}={}", c.name, c.value)
}

/// The value attribute of the hidden `csrf_token` field in a page.
fn csrf_in(html: &str) -> String {
    let marker = r#"name="csrf_token" value=""#;
    let start = html.find(marker).expect("page has a csrf_token field") + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn start() -> SampleCenter {
    SampleCenter::start(SampleOptions::default())
        .await
        .expect("start sample center")
}

#[test]
fn data_set_is_deterministic_and_consistent() {
    let all = sample::orders();
    assert_eq!(all.len(), 200);
    for (i, o) in all.iter().enumerate() {
        assert_eq!(o.id, format!("SO-{}", 100_001 + i));
        assert!(
            sample::STATUSES.contains(&o.status.as_str()),
            "{}: {}",
            o.id,
            o.status
        );
        assert!(
            (1..=4).contains(&o.items.len()),
            "{} has {} items",
            o.id,
            o.items.len()
        );
        assert_eq!(
            o.total_cents,
            o.items.iter().map(|it| it.line_total_cents()).sum::<i64>(),
            "{}",
            o.id
        );
        let tracked = o.tracking_no.is_some();
        assert_eq!(
            tracked,
            o.carrier.is_some(),
            "{}: carrier and tracking number go together",
            o.id
        );
        match o.status.as_str() {
            "shipped" | "delivered" => {
                assert!(tracked, "{} is {} without tracking", o.id, o.status)
            }
            "refunded" => {}
            _ => assert!(
                !tracked,
                "{} is {} but has a tracking number",
                o.id, o.status
            ),
        }
        if tracked {
            assert!(
                (2..=6).contains(&o.events.len()),
                "{} has {} events",
                o.id,
                o.events.len()
            );
            assert!(
                o.events.windows(2).all(|w| w[0].time <= w[1].time),
                "{}: events oldest first",
                o.id
            );
        } else {
            assert!(o.events.is_empty(), "{}", o.id);
        }
    }
    // Every status occurs, and some refunded orders were shipped while others were not.
    for s in sample::STATUSES {
        assert!(all.iter().any(|o| o.status == s), "no order is {s}");
    }
    assert!(all
        .iter()
        .any(|o| o.status == "refunded" && o.tracking_no.is_some()));
    assert!(all
        .iter()
        .any(|o| o.status == "refunded" && o.tracking_no.is_none()));

    // Pinned values: demo playbooks and browser tests compare pages against these, so a
    // change to the generator must be deliberate.
    let first = sample::order("SO-100001").expect("SO-100001 exists");
    assert_eq!(first.status, "delivered");
    assert_eq!(first.customer, "Yan Rossi");
    assert_eq!(first.total_display(), "CNY 628.50");
    assert_eq!(first.tracking_no.as_deref(), Some("SF8129735404648"));
    let cancelled = sample::order("SO-100002").expect("SO-100002 exists");
    assert_eq!(
        (
            cancelled.status.as_str(),
            cancelled.total_display().as_str()
        ),
        ("cancelled", "CNY 369.30")
    );
    assert!(cancelled.tracking_no.is_none());
    assert_eq!(
        sample::order("SO-100200")
            .map(|o| o.total_display())
            .as_deref(),
        Some("CNY 261.80")
    );
    assert_eq!(all.iter().map(|o| o.total_cents).sum::<i64>(), 11_094_730);
    assert!(sample::order("SO-100201").is_none());
    assert!(sample::order("SO-100000").is_none());
}

#[tokio::test]
async fn login_sets_a_cookie_that_protected_pages_accept() {
    let center = start().await;
    let port = center.port();

    let anonymous = http(port, "GET", "/account", None, None).await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), Some("/login?next=%2Faccount"));

    let login_page = http(port, "GET", "/login?next=%2Faccount", None, None).await;
    assert_eq!(login_page.status, 200);
    for id in [
        r#"id="login-form""#,
        r#"id="username""#,
        r#"id="password""#,
        r#"id="login-button""#,
    ] {
        assert!(login_page.body.contains(id), "login page lacks {id}");
    }

    let wrong = http(
        port,
        "POST",
        "/login",
        None,
        Some((
            FORM,
            &form(&[
                ("username", "ops"),
                ("password", "nope"),
                ("next", "/account"),
            ]),
        )),
    )
    .await;
    assert!(
        wrong.body.contains(r#"id="login-error""#),
        "wrong password shows #login-error"
    );
    assert_eq!(
        wrong.session_cookie(),
        None,
        "wrong password sets no session"
    );

    let ok = http(
        port,
        "POST",
        "/login",
        None,
        Some((
            FORM,
            &form(&[
                ("username", "alice"),
                ("password", "alice-pass"),
                ("next", "/account"),
            ]),
        )),
    )
    .await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location"), Some("/account"));
    let set_cookie = ok.header("set-cookie").expect("login sets a cookie");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("Path=/"),
        "{set_cookie}"
    );
    let cookie = ok.session_cookie().expect("sc_session cookie");

    let account = http(port, "GET", "/account", Some(&cookie), None).await;
    assert_eq!(account.status, 200);
    assert!(
        account.body.contains(r#"<dd id="account-user">alice</dd>"#),
        "{}",
        account.body
    );

    // An open redirect through `next` is refused.
    let evil = http(
        port,
        "POST",
        "/login",
        None,
        Some((
            FORM,
            &form(&[
                ("username", "ops"),
                ("password", "ops-pass"),
                ("next", "//evil.example/"),
            ]),
        )),
    )
    .await;
    assert_eq!(evil.header("location"), Some("/orders"));
    center.shutdown().await;
}

#[tokio::test]
async fn expired_or_forged_cookies_are_sent_to_login() {
    let center = start().await;
    let port = center.port();

    let live = cookie_of(&center, "ops", Duration::from_secs(3600));
    assert_eq!(
        http(port, "GET", "/orders", Some(&live), None).await.status,
        200
    );

    for expired in [
        cookie_of(&center, "ops", Duration::ZERO),
        cookie_of(&center, "ops", -60_i64),
    ] {
        let resp = http(port, "GET", "/orders?page=2", Some(&expired), None).await;
        assert_eq!(resp.status, 303, "expired session must not be accepted");
        assert_eq!(
            resp.header("location"),
            Some("/login?next=%2Forders%3Fpage%3D2")
        );
    }
    let expired_state = center.storage_state("ops", chrono::Duration::seconds(-5));
    assert_eq!(
        expired_state.cookies[0].expires, -1.0,
        "expired sessions are browser-session cookies"
    );

    let forged = live.replacen("sc_session=ops|", "sc_session=carol|", 1);
    assert_ne!(forged, live);
    assert_eq!(
        http(port, "GET", "/orders", Some(&forged), None)
            .await
            .status,
        303
    );

    let other_secret = SampleCenter::start(SampleOptions {
        port: 0,
        secret: Some("another key".into()),
    })
    .await
    .expect("start second center");
    assert_eq!(
        http(other_secret.port(), "GET", "/orders", Some(&live), None)
            .await
            .status,
        303
    );
    other_secret.shutdown().await;
    center.shutdown().await;
}

#[tokio::test]
async fn sessions_and_forms_survive_a_restart_with_the_built_in_secret() {
    let first = start().await;
    let first_port = first.port();
    let cookie = cookie_of(&first, "ops", Duration::from_secs(3600));
    let form_page = http(
        first_port,
        "GET",
        "/orders/SO-100001/refund",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(form_page.status, 200);
    let csrf = csrf_in(&form_page.body);
    first.shutdown().await;
    assert!(
        TcpStream::connect(("127.0.0.1", first_port)).await.is_err(),
        "the first server must be gone after shutdown"
    );

    let second = start().await;
    assert_ne!(second.port(), first_port);
    let account = http(second.port(), "GET", "/account", Some(&cookie), None).await;
    assert_eq!(account.status, 200);
    assert!(account.body.contains(r#"<dd id="account-user">ops</dd>"#));

    // A form rendered by the first server is still accepted by the second one.
    let body = form(&[
        ("csrf_token", &csrf),
        ("amount", "12.5"),
        ("reason", "damaged"),
        ("method", "original_payment"),
    ]);
    let submitted = http(
        second.port(),
        "POST",
        "/orders/SO-100001/refund",
        Some(&cookie),
        Some((FORM, &body)),
    )
    .await;
    assert_eq!(submitted.status, 303, "{}", submitted.body);
    assert_eq!(
        submitted.header("location"),
        Some("/orders/SO-100001/refund/RF-0001")
    );
    let refunds = second.refunds();
    assert_eq!(refunds.len(), 1);
    assert!(refunds[0].csrf_valid && refunds[0].accepted);

    let result = http(
        second.port(),
        "GET",
        "/orders/SO-100001/refund/RF-0001",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(result.status, 200);
    assert!(
        result.body.contains(
            "Refund RF-0001 requested for CNY 12.50 (reason: damaged, method: original_payment)"
        ),
        "{}",
        result.body
    );
    second.shutdown().await;
}

#[tokio::test]
async fn log_records_writes_but_never_control_paths() {
    let center = start().await;
    let port = center.port();
    let cookie = cookie_of(&center, "carol", Duration::from_secs(600));

    http(port, "GET", "/orders/SO-100003?tab=x", Some(&cookie), None).await;
    http(
        port,
        "POST",
        "/analytics/collect",
        Some(&cookie),
        Some(("text/plain;charset=UTF-8", r#"{"event":"order_view"}"#)),
    )
    .await;
    http(
        port,
        "POST",
        "/tracking/viewed",
        Some(&cookie),
        Some((FORM, "order_id=SO-100003&view=logistics")),
    )
    .await;
    http(port, "POST", "/_control/double-write?on=1", None, None).await;
    let log_resp = http(port, "GET", "/_log", None, None).await;

    let requests = center.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert!(requests.iter().all(|r| !r.path.starts_with("/_")));
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/orders/SO-100003");
    assert_eq!(requests[0].query, "tab=x");
    assert_eq!(requests[0].host, format!("127.0.0.1:{port}"));
    assert_eq!(requests[0].user.as_deref(), Some("carol"));
    assert!(requests.windows(2).all(|w| w[0].seq < w[1].seq));

    let writes = center.writes();
    assert_eq!(
        writes.iter().map(|w| w.path.as_str()).collect::<Vec<_>>(),
        ["/analytics/collect", "/tracking/viewed"]
    );
    assert_eq!(
        writes[0].form.get("_body").map(String::as_str),
        Some(r#"{"event":"order_view"}"#)
    );
    assert_eq!(
        writes[1].form.get("order_id").map(String::as_str),
        Some("SO-100003")
    );

    let logged: Vec<serde_json::Value> =
        serde_json::from_str(&log_resp.body).expect("/_log is JSON");
    assert_eq!(logged.len(), 3);
    assert!(logged
        .iter()
        .all(|r| !r["path"].as_str().unwrap_or("/_").starts_with("/_")));
    let only_writes: Vec<serde_json::Value> =
        serde_json::from_str(&http(port, "GET", "/_log?writes=1", None, None).await.body)
            .expect("JSON");
    assert_eq!(only_writes.len(), 2);
    assert_eq!(only_writes[1]["form"]["view"], "logistics");

    assert_eq!(
        http(port, "POST", "/_log/clear", None, None).await.status,
        204
    );
    assert!(center.requests().is_empty());
    http(port, "GET", "/login", None, None).await;
    assert_eq!(center.requests().len(), 1);
    center.clear_log();
    assert!(center.requests().is_empty());
    center.shutdown().await;
}

#[tokio::test]
async fn refund_with_bad_csrf_is_forbidden_and_recorded() {
    let center = start().await;
    let port = center.port();
    let ops = cookie_of(&center, "ops", Duration::from_secs(600));
    let alice = cookie_of(&center, "alice", Duration::from_secs(600));
    let page = http(port, "GET", "/orders/SO-100004/refund", Some(&ops), None).await;
    let ops_token = csrf_in(&page.body);

    let forged = form(&[
        ("csrf_token", "deadbeef"),
        ("amount", "5.00"),
        ("reason", "other"),
        ("method", "store_credit"),
    ]);
    let resp = http(
        port,
        "POST",
        "/orders/SO-100004/refund",
        Some(&ops),
        Some((FORM, &forged)),
    )
    .await;
    assert_eq!(resp.status, 403);
    assert!(resp.body.contains(r#"id="csrf-error""#));

    // A token is bound to its user and order.
    let stolen = form(&[("csrf_token", &ops_token), ("amount", "5.00")]);
    assert_eq!(
        http(
            port,
            "POST",
            "/orders/SO-100004/refund",
            Some(&alice),
            Some((FORM, &stolen))
        )
        .await
        .status,
        403
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/orders/SO-100005/refund",
            Some(&ops),
            Some((FORM, &stolen))
        )
        .await
        .status,
        403
    );

    let refunds = center.refunds();
    assert_eq!(refunds.len(), 3);
    assert!(refunds.iter().all(|r| !r.csrf_valid && !r.accepted));
    assert_eq!(refunds[0].order_id, "SO-100004");
    assert_eq!(
        refunds[0].fields.get("method").map(String::as_str),
        Some("store_credit")
    );
    assert_eq!(refunds[1].user.as_deref(), Some("alice"));

    // No refund page exists for a rejected request.
    assert_eq!(
        http(
            port,
            "GET",
            "/orders/SO-100004/refund/RF-0001",
            Some(&ops),
            None
        )
        .await
        .status,
        404
    );

    // Anonymous posts never reach the handler.
    let anon = http(
        port,
        "POST",
        "/orders/SO-100004/refund",
        None,
        Some((FORM, &forged)),
    )
    .await;
    assert_eq!(anon.status, 303);
    assert_eq!(center.refunds().len(), 3);
    center.shutdown().await;
}

#[tokio::test]
async fn refund_amount_is_validated_against_the_order() {
    let center = start().await;
    let port = center.port();
    let ops = cookie_of(&center, "ops", Duration::from_secs(600));
    let token = csrf_in(
        &http(port, "GET", "/orders/SO-100002/refund", Some(&ops), None)
            .await
            .body,
    );
    let too_much = form(&[
        ("csrf_token", &token),
        ("amount", "369.31"),
        ("note", "<b>x</b>"),
    ]);
    let resp = http(
        port,
        "POST",
        "/orders/SO-100002/refund",
        Some(&ops),
        Some((FORM, &too_much)),
    )
    .await;
    assert_eq!(resp.status, 422);
    assert!(
        resp.body.contains(r#"id="refund-error""#)
            && resp.body.contains("exceeds the order total CNY 369.30")
    );
    assert!(
        resp.body.contains("&lt;b&gt;x&lt;/b&gt;"),
        "posted values are shown again, escaped"
    );
    let rec = &center.refunds()[0];
    assert!(rec.csrf_valid && !rec.accepted);
    center.shutdown().await;
}

#[tokio::test]
async fn refund_defaults_and_double_write_change_the_served_form() {
    let center = start().await;
    let port = center.port();
    let ops = cookie_of(&center, "ops", Duration::from_secs(600));
    let url = "/orders/SO-100010/refund";

    let before = http(port, "GET", url, Some(&ops), None).await.body;
    for id in [
        r#"id="refund-form" method="POST" action="/orders/SO-100010/refund""#,
        r#"id="refund-amount" name="amount""#,
        r#"id="refund-note" name="note""#,
        r#"id="supervisor-pin" name="supervisor_pin""#,
        r#"type="checkbox" id="notify-customer" name="notify" value="yes""#,
        r#"<label for="refund-method">Refund method</label>"#,
        r#"id="submit-refund""#,
    ] {
        assert!(before.contains(id), "refund form lacks {id}");
    }
    assert!(before.contains(r#"<option value="original_payment" selected>"#));
    assert!(before.contains(r#"<option value="damaged" selected>"#));
    assert!(before.contains(r#"data-double-write="0""#));

    center.set_refund_default("method", "store_credit");
    center.set_double_write(true);
    let after = http(port, "GET", url, Some(&ops), None).await.body;
    assert!(
        after.contains(r#"<option value="store_credit" selected>"#),
        "{after}"
    );
    assert!(!after.contains(r#"<option value="original_payment" selected>"#));
    assert!(after.contains(r#"data-double-write="1""#));

    // The same through the HTTP control API, which the binary exposes.
    assert_eq!(
        http(
            port,
            "POST",
            "/_control/refund-default?field=reason&value=wrong_item",
            None,
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/_control/refund-default?field=colour&value=red",
            None,
            None
        )
        .await
        .status,
        400
    );
    assert_eq!(
        http(port, "POST", "/_control/double-write?on=0", None, None)
            .await
            .status,
        204
    );
    let again = http(port, "GET", url, Some(&ops), None).await.body;
    assert!(again.contains(r#"<option value="wrong_item" selected>"#));
    assert!(again.contains(r#"data-double-write="0""#));
    center.shutdown().await;
}

#[tokio::test]
async fn orders_list_paginates_and_searches() {
    let center = start().await;
    let port = center.port();
    let ops = cookie_of(&center, "ops", Duration::from_secs(600));

    let rows = |html: &str| -> Vec<String> {
        html.match_indices(r#"class="order-row" data-order-id=""#)
            .map(|(i, m)| {
                html[i + m.len()..]
                    .split('"')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let first = http(port, "GET", "/orders", Some(&ops), None).await.body;
    assert_eq!(rows(&first).len(), 20);
    assert_eq!(rows(&first)[0], "SO-100001");
    assert!(first.contains(r#"<span id="page-info">Page 1 of 10</span>"#));
    assert!(first.contains(r#"id="next-page""#) && !first.contains(r#"id="prev-page""#));

    let last = http(port, "GET", "/orders?page=10", Some(&ops), None)
        .await
        .body;
    assert_eq!(rows(&last).last().map(String::as_str), Some("SO-100200"));
    assert!(last.contains("Page 10 of 10") && !last.contains(r#"id="next-page""#));

    let found = http(port, "GET", "/orders?q=SO-100123", Some(&ops), None)
        .await
        .body;
    assert_eq!(rows(&found), ["SO-100123"]);

    let by_status = http(port, "GET", "/orders?status=refunded", Some(&ops), None)
        .await
        .body;
    let expected: Vec<String> = sample::orders()
        .iter()
        .filter(|o| o.status == "refunded")
        .map(|o| o.id.clone())
        .collect();
    assert_eq!(rows(&by_status), expected);
    center.shutdown().await;
}

#[tokio::test]
async fn order_pages_carry_the_playbook_selectors() {
    let center = start().await;
    let port = center.port();
    let ops = cookie_of(&center, "ops", Duration::from_secs(600));
    let o = sample::order("SO-100001").expect("exists");

    let detail = http(port, "GET", "/orders/SO-100001", Some(&ops), None)
        .await
        .body;
    assert!(detail.contains(&format!(
        r#"<span id="order-status" class="status status-delivered">{}</span>"#,
        o.status
    )));
    assert!(detail.contains(&format!(
        r#"<dd id="order-total">{}</dd>"#,
        o.total_display()
    )));
    assert!(detail.contains(&format!(r#"<dd id="customer-name">{}</dd>"#, o.customer)));
    assert!(detail.contains(&format!(
        r#"<dd id="tracking-no">{}</dd>"#,
        o.tracking_no.as_deref().unwrap_or("?")
    )));
    assert!(detail.contains(&format!(
        r#"src="http://localhost:{port}/widget/chat?order=SO-100001""#
    )));
    for needle in [
        "sendBeacon('/analytics/collect'",
        "new Worker('/static/metrics-worker.js')",
        r#"id="risk-panel""#,
        r#"id="outside-link" href="http://outside.invalid/help""#,
        r#"id="open-popup""#,
        r#"id="open-outside-popup""#,
        r#"id="tab-logistics" href="/orders/SO-100001/tracking""#,
        r#"id="tab-aftersales""#,
        r#"id="tab-notes""#,
    ] {
        assert!(detail.contains(needle), "order page lacks {needle}");
    }
    let risk: serde_json::Value = serde_json::from_str(
        &http(port, "GET", "/api/orders/SO-100001/risk", Some(&ops), None)
            .await
            .body,
    )
    .expect("JSON");
    assert!(["low", "medium", "high"].contains(&risk["level"].as_str().unwrap_or("")));

    let tracking = http(port, "GET", "/orders/SO-100001/tracking", Some(&ops), None)
        .await
        .body;
    let latest = o.latest_event().expect("delivered order has events");
    assert!(tracking.contains(&format!(
        r#"<dd id="latest-event">{}</dd>"#,
        latest.description
    )));
    assert_eq!(
        tracking.matches(r#"<li class="event">"#).count(),
        o.events.len()
    );
    assert!(tracking.contains(r#"id="viewed-form" method="POST" action="/tracking/viewed""#));
    let untracked = http(port, "GET", "/orders/SO-100002/tracking", Some(&ops), None)
        .await
        .body;
    assert!(
        untracked.contains(r#"id="no-tracking""#) && !untracked.contains(r#"id="tracking-no""#)
    );

    let missing = http(port, "GET", "/orders/SO-999999", Some(&ops), None).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains(r#"id="not-found""#));

    // Public adversarial pieces need no session.
    let widget = http(port, "GET", "/widget/chat?order=SO-100001", None, None).await;
    assert!(
        widget.status == 200
            && widget.body.contains("fetch('/widget/presence'")
            && widget.body.contains("/static/widget-worker.js")
    );
    let worker = http(port, "GET", "/static/metrics-worker.js", None, None).await;
    assert!(worker
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/javascript"));
    assert!(worker.body.contains("/analytics/worker"));
    assert!(http(port, "GET", "/promo?order=SO-100001", None, None)
        .await
        .body
        .contains("/promo/impression"));
    center.shutdown().await;
}

#[tokio::test]
async fn notes_are_added_with_csrf_and_listed() {
    let center = start().await;
    let port = center.port();
    let ops = cookie_of(&center, "ops", Duration::from_secs(600));
    let page = http(port, "GET", "/orders/SO-100007/notes", Some(&ops), None)
        .await
        .body;
    assert!(page.contains(r#"id="no-notes""#));
    let token = csrf_in(&page);
    let body = form(&[
        ("csrf_token", &token),
        ("note", "Customer called <twice>"),
        ("tag", "vip"),
    ]);
    let resp = http(
        port,
        "POST",
        "/orders/SO-100007/notes",
        Some(&ops),
        Some((FORM, &body)),
    )
    .await;
    assert_eq!(
        (resp.status, resp.header("location")),
        (303, Some("/orders/SO-100007/notes"))
    );
    let listed = http(port, "GET", "/orders/SO-100007/notes", Some(&ops), None)
        .await
        .body;
    assert!(listed.contains("Customer called &lt;twice&gt;"));
    let bad = form(&[("csrf_token", "00"), ("note", "x"), ("tag", "vip")]);
    assert_eq!(
        http(
            port,
            "POST",
            "/orders/SO-100007/notes",
            Some(&ops),
            Some((FORM, &bad))
        )
        .await
        .status,
        403
    );
    let notes = center.notes();
    let summary: Vec<(bool, bool, &str)> = notes
        .iter()
        .map(|n| (n.csrf_valid, n.accepted, n.tag.as_str()))
        .collect();
    assert_eq!(summary, [(true, true, "vip"), (false, false, "vip")]);
    center.shutdown().await;
}

#[test]
fn binary_prints_its_url_and_serves() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sample-seller-center"))
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sample-seller-center");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read first line");
    let url = line
        .trim_end()
        .strip_prefix("sample seller center listening on ")
        .map(str::to_owned);
    let port: Option<u16> = url
        .as_deref()
        .and_then(|u| u.strip_prefix("http://127.0.0.1:"))
        .and_then(|p| p.strip_suffix('/'))
        .and_then(|p| p.parse().ok());
    let status = port.map(|p| {
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(http(p, "GET", "/login", None, None))
            .status
    });
    // Stop the child we started, by its own pid, before asserting.
    let _ = child.kill();
    let _ = child.wait();
    assert!(port.is_some(), "unexpected first line {line:?}");
    assert_eq!(status, Some(200));
}
