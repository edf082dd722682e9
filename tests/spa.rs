//! clerk on a single-page app: the sample seller center's `/app/` (hash routes, a JSON API,
//! late content, custom widgets, `fetch` writes), driven by playbooks in real Chromium.

use clerk::runner::RunStatus;

use crate::common::World;

/// The first `n` orders of the sample data set.
fn orders(n: usize) -> Vec<&'static clerk::sample::Order> {
    clerk::sample::orders().iter().take(n).collect()
}

/// Several lookups by hash route in one run, and a click that routes: every navigation is
/// same-document after the first, so none of them fires a load event. The step timeout is a
/// minute: a navigation that waited for a load event would fail the run, not slow it.
#[tokio::test(flavor = "multi_thread")]
async fn hash_route_lookups_and_a_routing_click_complete() {
    let world = World::new().await;
    let picked = orders(3);
    let mut steps = String::from(
        "  - goto: /app/#/orders\n    timeout: 60s\n  - wait_for: { selector: \"[data-testid=result-count]\" }\n    timeout: 60s\n",
    );
    for o in &picked {
        let id = &o.id;
        steps.push_str(&format!(
            "  - goto: /app/#/orders/{id}\n    timeout: 60s\n\
             \x20 - wait_for: {{ selector: '[data-order-id=\"{id}\"] [data-testid=tracking-no]' }}\n    timeout: 60s\n\
             \x20 - extract: {{ field: status_{n}, selector: '[data-order-id=\"{id}\"] [data-testid=order-status]' }}\n\
             \x20 - extract: {{ field: total_{n}, selector: '[data-order-id=\"{id}\"] [data-testid=order-total]' }}\n\
             \x20 - extract: {{ field: ref_{n}, selector: '[data-order-id=\"{id}\"] .ref' }}\n",
            n = id.replace('-', "_").to_lowercase(),
        ));
    }
    let last = &picked[picked.len() - 1].id;
    steps.push_str(&format!(
        "  - click: \"#tab-logistics\"\n    timeout: 60s\n\
         \x20 - wait_for: {{ selector: '[data-order-id=\"{last}\"] [data-testid=latest-event]' }}\n    timeout: 60s\n\
         \x20 - extract: {{ field: latest, selector: '[data-testid=latest-event]' }}\n\
         \x20 - extract: {{ field: url_after_click, selector: 'body', from: attribute, attribute: data-route, required: false }}\n\
         \x20 - screenshot: {{ name: logistics, mask: ['[data-testid=live-feed]'] }}\n    timeout: 60s\n"
    ));
    let yaml = format!(
        "name: spa-routes\nversion: \"1\"\ndescription: hash routes\nchannel: sample\nmode: read_only\nsteps:\n{steps}"
    );
    let pb = world.playbook_from("spa-routes", &yaml);
    let r = world.run(&pb, &[]).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    for o in &picked {
        let n = o.id.replace('-', "_").to_lowercase();
        assert_eq!(r.fields[&format!("status_{n}")], o.status, "{}", o.id);
        assert_eq!(
            r.fields[&format!("total_{n}")],
            o.total_display(),
            "{}",
            o.id
        );
        assert_eq!(
            r.fields[&format!("ref_{n}")],
            clerk::sample::order_ref(o),
            "{}",
            o.id
        );
    }
    let latest = picked[picked.len() - 1]
        .latest_event()
        .map(|e| e.description.clone())
        .unwrap_or_else(|| "No events yet".into());
    assert_eq!(r.fields["latest"], latest);
    assert_eq!(r.screenshots.len(), 1);
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
}

/// The demo config with the SPA's session probe instead of the account page.
pub fn spa_config(config: String) -> String {
    config.replace(
        r##"logged_in_check = { url = "/account", selector = "#account-user" }"##,
        r##"logged_in_check = { request = "/api/me", status = 200 }"##,
    )
}

/// A lookup of several orders by hash route, each waiting for its late tracking number.
fn lookup_yaml(ids: &[&str]) -> String {
    let mut steps = String::new();
    for id in ids {
        steps.push_str(&format!(
            "  - goto: /app/#/orders/{id}\n    timeout: 60s\n\
             \x20 - wait_for: {{ selector: '[data-order-id=\"{id}\"] [data-testid=tracking-no]' }}\n    timeout: 60s\n\
             \x20 - screenshot: {{ name: order-{lid}, mask: ['[data-testid=live-feed]'] }}\n    timeout: 60s\n",
            lid = id.to_lowercase()
        ));
    }
    format!(
        "name: spa-several\nversion: \"1\"\ndescription: several orders\nchannel: sample\nmode: read_only\nsteps:\n{steps}"
    )
}

/// An API that answers 401 ends the run as `session_expired`, at the session check (an HTTP
/// probe) and in the middle of a run (the app routes itself to `#/login`), with no
/// screenshot of the login page and no timeout run out.
#[tokio::test(flavor = "multi_thread")]
async fn expired_api_session_ends_the_run_at_the_check_and_mid_run() {
    use clerk::evidence::Event;
    let world = World::with_config(spa_config).await;
    let ids: Vec<&str> = orders(2).iter().map(|o| o.id.as_str()).collect();
    let pb = world.playbook_from("spa-several", &lookup_yaml(&ids));

    world.center.set_spa_api_401(true);
    let r = world.run(&pb, &[]).await;
    assert_eq!(r.status, RunStatus::SessionExpired, "{:?}", r.error);
    let err = r.error.clone().unwrap();
    assert!(
        err.starts_with("session for channel sample has expired: re-authorize ("),
        "{err}"
    );
    assert!(err.contains("answered 401, not 200"), "{err}");
    assert!(r.screenshots.is_empty());

    // Mid-run: the first order works, the API refuses the second, the app logs out.
    world.center.set_spa_api_401(false);
    world.center.set_spa_api_401_order(Some(ids[1]));
    let r = world.run(&pb, &[]).await;
    assert_eq!(r.status, RunStatus::SessionExpired, "{:?}", r.error);
    let err = r.error.clone().unwrap();
    assert!(err.contains("#/login"), "{err}");
    assert_eq!(r.screenshots.len(), 1, "only the first order is evidence");
    let records = world.records(r.run_id.as_deref().unwrap());
    let shots: Vec<String> = records
        .iter()
        .filter_map(|rec| match &rec.event {
            Event::EvidenceCaptured { url, .. } => Some(url.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(shots.len(), 1);
    assert!(shots[0].contains(ids[0]), "{shots:?}");
    // The app's logout POST was blocked, not sent.
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    assert!(world
        .blocked_urls(r.run_id.as_deref().unwrap())
        .iter()
        .any(|(m, u)| m == "POST" && u.ends_with("/api/logout")));
}

/// The shipped `spa-order-lookup` playbook over several orders: fields equal the data set,
/// the shadow-DOM total is read, the routing click lands on the logistics route, two
/// screenshots per order, and nothing is written (the live feed's WebSocket included).
#[tokio::test(flavor = "multi_thread")]
async fn shipped_spa_lookup_reads_every_field_and_writes_nothing() {
    let world = World::new().await;
    let pb = crate::common::playbook("spa-order-lookup");
    for o in orders(3) {
        let r = world.run(&pb, &[("order_id", &o.id)]).await;
        assert_eq!(r.status, RunStatus::Ok, "{}: {:?}", o.id, r.error);
        assert_eq!(r.fields["status"], o.status);
        assert_eq!(r.fields["total"], o.total_display());
        assert_eq!(r.fields["reference"], clerk::sample::order_ref(o));
        assert_eq!(r.fields["summary_total"], o.total_display());
        let tracking = o
            .tracking_no
            .clone()
            .unwrap_or_else(|| "Not shipped yet".into());
        assert_eq!(r.fields["tracking_no"], tracking);
        assert_eq!(r.screenshots.len(), 2);
    }
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    assert!(
        world.center.ws_frames().is_empty(),
        "the feed's frames reached the server: {:?}",
        world.center.ws_frames()
    );
}

/// A refund playbook for the SPA that leaves the refund method at the page's default, so a
/// change of that default on the page changes the write.
const REFUND_YAML: &str = r#"name: spa-refund-test
version: "1"
description: refund through the SPA
channel: sample
mode: submit
inputs:
  order_id: { type: string }
  amount: { type: number }
  reason: { type: string }
  note: { type: string }
match:
  order_id: { testid: order-id }
steps:
  - goto: /app/#/orders/{{order_id}}/refund
  - wait_for: { element: { role: button, name: Submit refund request } }
  - fill: { label: Refund amount, value: "{{amount}}" }
  - select: { role: combobox, name: Refund reason, value: "{{reason}}" }
  - check: { role: switch, name: Notify customer }
  - fill: { role: textbox, name: Note, value: "{{note}}" }
  - screenshot: { name: refund-form, mask: [{ testid: live-feed }] }
  - submit:
      control: { role: button, name: Submit refund request }
      expect: { method: POST, url: "/api/orders/{{order_id}}/refunds", ignore: [requestId, clientTs] }
    timeout: 5s
  - wait_for: { element: { testid: refund-result } }
  - screenshot: { name: refund-result, mask: [{ testid: live-feed }] }
"#;

/// Drafts a refund for `order`, checks nothing was written and returns the approval id.
async fn spa_draft(
    world: &World,
    pb: &std::sync::Arc<clerk::playbook::Playbook>,
    inputs: &[(&str, &str)],
) -> String {
    world.center.clear_log();
    let before = world.center.spa_refunds().len();
    let r = world.run_as(pb, inputs, "ops", None).await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    assert_eq!(world.center.spa_refunds().len(), before);
    let id = r.approval_id.clone().expect("an approval was requested");
    clerk::approval::decide(&world.engine, &id, "carol", true, None).expect("carol approves");
    id
}

/// The SPA refund through the whole ladder: the draft sends nothing and the approval holds
/// the exact JSON the app tried to send; the approved submit sends exactly that, once; and
/// a submit is refused with zero writes when the page adds a field, sends two writes, sends
/// none, or a value on the page changed since the draft.
#[tokio::test(flavor = "multi_thread")]
async fn spa_refund_is_bound_to_the_exact_request() {
    let world = World::new().await;
    let pb = world.playbook_from("spa-refund-test", REFUND_YAML);
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.total_cents > 10_000)
        .expect("an order over CNY 100");
    let inputs = [
        ("order_id", order.id.as_str()),
        ("amount", "12.50"),
        ("reason", "Item damaged"),
        ("note", "Box arrived crushed"),
    ];

    // Draft: the approval carries the held JSON body.
    let id = spa_draft(&world, &pb, &inputs).await;
    let a = clerk::approval::load(&world.engine, &id).unwrap();
    let held = a.request.held.clone().expect("the held write");
    assert_eq!(held.method, "POST");
    assert!(
        held.url
            .ends_with(&format!("/api/orders/{}/refunds", order.id)),
        "{}",
        held.url
    );
    assert_eq!(held.content_type.as_deref(), Some("application/json"));
    let clerk::write::Body::Json { value } = &held.body else {
        panic!("not JSON: {:?}", held.body)
    };
    assert_eq!(value["amount"], "12.50");
    assert_eq!(value["reason"], "damaged");
    assert_eq!(value["note"], "Box arrived crushed");
    assert_eq!(value["notify"], true);
    assert!(
        value.get("requestId").is_some(),
        "volatile fields are shown"
    );
    assert!(a.request.volatile.contains(&"requestId".to_string()));
    let stored = a.request.content.request.clone().unwrap();
    let clerk::write::Body::Json { value: compared } = &stored.body else {
        panic!()
    };
    assert!(compared.get("requestId").is_none() && compared.get("clientTs").is_none());

    // Approved submit: exactly one POST with exactly the reviewed values.
    world.center.clear_log();
    let r = world.run_as(&pb, &inputs, "ops", Some(&id)).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    let refunds = world.center.spa_refunds();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert!(refunds[0].accepted, "{:?}", refunds[0].rejection);
    for key in ["amount", "reason", "method", "note", "notify", "date"] {
        assert_eq!(refunds[0].body[key], value[key], "{key}");
    }
    assert_eq!(
        world.center.writes().len(),
        1,
        "{:?}",
        world.center.writes()
    );
    let used = clerk::approval::load(&world.engine, &id).unwrap();
    assert_eq!(used.state, clerk::approval::ApprovalState::Used);

    // Refusals, each with zero writes and a reason.
    type Knob = fn(&clerk::sample::SampleCenter);
    let cases: [(&str, Knob, Knob, &str); 5] = [
        (
            "extra field",
            |c| c.set_spa_extra_field(true),
            |c| c.set_spa_extra_field(false),
            "coupon: new field",
        ),
        (
            "double write",
            |c| c.set_spa_double_write(true),
            |c| c.set_spa_double_write(false),
            "second write",
        ),
        (
            "no write",
            |c| c.set_spa_no_write(true),
            |c| c.set_spa_no_write(false),
            "sent no write",
        ),
        (
            "changed value",
            |c| c.set_spa_refund_method_default(Some("store_credit")),
            |c| c.set_spa_refund_method_default(None),
            "method: approved",
        ),
        (
            // The same digits as a JSON number instead of the reviewed string.
            "number instead of string",
            |c| c.set_spa_amount_as_number(true),
            |c| c.set_spa_amount_as_number(false),
            r#"amount: approved "12.50" (string), now 12.5 (number)"#,
        ),
    ];
    for (what, on, off, why) in cases {
        let id = spa_draft(&world, &pb, &inputs).await;
        let before = world.center.spa_refunds().len();
        on(&world.center);
        world.center.clear_log();
        let r = world.run_as(&pb, &inputs, "ops", Some(&id)).await;
        off(&world.center);
        assert_eq!(r.status, RunStatus::Refused, "{what}: {:?}", r.error);
        let err = r.error.clone().unwrap_or_default();
        assert!(err.contains(why), "{what}: {err}");
        assert_eq!(
            world.center.spa_refunds().len(),
            before,
            "{what}: a refund was received"
        );
        assert!(
            world.center.writes().is_empty(),
            "{what}: {:?}",
            world.center.writes()
        );
        let refused = world
            .records(r.run_id.as_deref().unwrap())
            .into_iter()
            .any(|rec| matches!(rec.event, clerk::evidence::Event::RunFinished { ref status, .. } if status == "refused"));
        assert!(refused, "{what}: the run is recorded as refused");
    }
}

/// One read-only page visit with a generous timeout: `goto`, wait for `text`, screenshot.
fn visit_yaml(path: &str, text: &str) -> String {
    format!(
        "name: visit\nversion: \"1\"\ndescription: visit a page\nchannel: sample\nmode: read_only\nsteps:\n\
         \x20 - goto: {path}\n    timeout: 60s\n\
         \x20 - wait_for: {{ text: \"{text}\" }}\n    timeout: 60s\n\
         \x20 - screenshot: {{ name: page }}\n    timeout: 60s\n"
    )
}

/// Pages that fight back, in read-only runs: a service worker whose install handler POSTs,
/// a `srcdoc` iframe that submits a form by itself, and a WebSocket to the channel's own
/// origin that sends a frame. Each run finishes (no step runs out its minute), the seller
/// center receives no write, no WebSocket frame (nor connection), and the run records each
/// attempt.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_pages_finish_write_nothing_and_are_recorded() {
    let world = World::new().await;
    let cases = [
        ("/app/hostile/sw.html", "sw failed", "/app/hostile/sw.js"),
        (
            "/app/hostile/srcdoc.html",
            "confirms the payment method",
            "/api/srcdoc-submit",
        ),
        ("/app/hostile/ws.html", "ws error", "/api/feed"),
        (
            "/app/hostile/autosubmit.html",
            "confirms your session",
            "/api/keepalive",
        ),
    ];
    for (path, text, attempt) in cases {
        world.center.clear_log();
        let pb = world.playbook_from("visit", &visit_yaml(path, text));
        let r = world.run(&pb, &[]).await;
        assert_eq!(r.status, RunStatus::Ok, "{path}: {:?}", r.error);
        assert!(
            world.center.writes().is_empty(),
            "{path}: {:?}",
            world.center.writes()
        );
        assert!(
            world.center.ws_events().is_empty(),
            "{path}: {:?}",
            world.center.ws_events()
        );
        let blocked = world.blocked(r.run_id.as_deref().unwrap());
        assert!(
            blocked.iter().any(|(_, url, _)| url.contains(attempt)),
            "{path}: attempt on {attempt} not recorded: {blocked:?}"
        );
    }
    let sw_install = world
        .center
        .requests()
        .iter()
        .any(|q| q.path == "/api/sw-install");
    assert!(!sw_install);
}

/// A channel that allows its live feed explicitly: the socket opens, and every frame the
/// page sends on it is recorded as an allowed exception.
#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_websocket_feed_is_recorded_frame_by_frame() {
    let world = World::with_config(|c| {
        let port = c
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap()
            .to_owned();
        c.replace(
            "approval_ttl_hours = 24",
            &format!(
                "websocket_allow = [\"ws://127.0.0.1:{port}/api/feed\"]\napproval_ttl_hours = 24"
            ),
        )
    })
    .await;
    let pb = world.playbook_from("visit", &visit_yaml("/app/hostile/ws.html", "ws open"));
    let r = world.run(&pb, &[]).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    assert!(
        !world.center.ws_frames().is_empty(),
        "the allowed feed got no frame"
    );
    let frames = world
        .records(r.run_id.as_deref().unwrap())
        .into_iter()
        .filter(|rec| {
            matches!(&rec.event, clerk::evidence::Event::RequestAllowed { method, url, .. }
                if method == "WEBSOCKET FRAME" && url.ends_with("/api/feed"))
        })
        .count();
    assert!(frames >= 1, "no frame recorded");
}

/// Inputs inside selectors are escaped as CSS.escape does: a hostile value can never
/// change which element a selector finds (here it would widen the selector to every order
/// status on the page, or break out of the attribute value).
#[tokio::test(flavor = "multi_thread")]
async fn hostile_inputs_in_selectors_never_change_what_is_found() {
    let world = World::new().await;
    let o = &clerk::sample::orders()[0];
    let yaml = r#"name: pick
version: "1"
description: read one order's status by a templated selector
channel: sample
mode: read_only
inputs:
  real: { type: string }
  probe: { type: string }
steps:
  - goto: /app/#/orders/{{real}}
  - wait_for: { element: { testid: tracking-no } }
  - extract: { field: status, selector: '[data-order-id="{{probe}}"] [data-testid=order-status]' }
  - extract: { field: heading, role: heading, name: "Order {{probe}}" }
"#;
    let pb = world.playbook_from("pick", yaml);
    let ok = world.run(&pb, &[("real", &o.id), ("probe", &o.id)]).await;
    assert_eq!(ok.status, RunStatus::Ok, "{:?}", ok.error);
    assert_eq!(ok.fields["status"], o.status);
    let hostile = [
        format!("{}\"] , *", o.id),
        format!("{}\"], [data-testid=order-status", o.id),
        "\\".to_string(),
        format!("{}' i], *[x='", o.id),
        "\"\u{0}\u{202e}订单\"".to_string(),
        format!("{}\\\"] , [data-testid", o.id),
    ];
    for probe in &hostile {
        let r = world.run(&pb, &[("real", &o.id), ("probe", probe)]).await;
        assert_eq!(
            r.status,
            RunStatus::Failed,
            "{probe:?} found something: {:?}",
            r.fields
        );
        assert!(
            !r.fields.contains_key("status"),
            "{probe:?}: {:?}",
            r.fields
        );
        let err = r.error.unwrap_or_default();
        assert!(err.contains("element not found"), "{probe:?}: {err}");
    }
}

/// A History-API router: a click that routes with `pushState` (no document, no load
/// event), a `wait_for: { url }` on the new route, then a `goto` to another route, which
/// loads a new document from the same shell.
#[tokio::test(flavor = "multi_thread")]
async fn history_api_routes_complete() {
    let world = World::new().await;
    let picked = orders(2);
    let (a, b) = (&picked[0], &picked[1]);
    let yaml = format!(
        r#"name: history
version: "1"
description: history routes
channel: sample
mode: read_only
steps:
  - goto: /app/h/orders
    timeout: 60s
  - click: {{ role: link, name: "{a}" }}
    timeout: 60s
  - wait_for: {{ url: "/app/h/orders/{a}" }}
    timeout: 60s
  - wait_for: {{ selector: '[data-order-id="{a}"] [data-testid=order-status]' }}
    timeout: 60s
  - extract: {{ field: first, selector: '[data-order-id="{a}"] [data-testid=order-status]' }}
  - goto: /app/h/orders/{b}
    timeout: 60s
  - wait_for: {{ selector: '[data-order-id="{b}"] [data-testid=order-status]' }}
    timeout: 60s
  - extract: {{ field: second, testid: order-status }}
"#,
        a = a.id,
        b = b.id
    );
    let pb = world.playbook_from("history", &yaml);
    let r = world.run(&pb, &[]).await;
    assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    assert_eq!(r.fields["first"], a.status);
    assert_eq!(r.fields["second"], b.status);
    assert!(world.center.writes().is_empty());
}

/// Capture is deterministic: the same pages give the same PNG bytes whether runs go one at
/// a time or two at once (with partial raster, re-blended anti-aliased corners of a page
/// that changed while loading came out a colour level apart now and then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_pages_give_the_same_png_bytes_one_at_a_time_and_two_at_once() {
    let world = World::new().await;
    let pb = crate::common::playbook("spa-order-lookup");
    let ids: Vec<String> = orders(4).iter().map(|o| o.id.clone()).collect();
    let hashes = |r: &clerk::runner::RunReport| {
        assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
        r.screenshots
            .iter()
            .map(|s| (s.name.clone(), s.sha256.clone()))
            .collect::<Vec<_>>()
    };
    let mut alone = Vec::new();
    for id in &ids {
        alone.push(hashes(&world.run(&pb, &[("order_id", id)]).await));
    }
    for (pair, want) in ids.chunks(2).zip(alone.chunks(2)) {
        let (first, second) = (
            [("order_id", pair[0].as_str())],
            [("order_id", pair[1].as_str())],
        );
        let (a, b) = tokio::join!(world.run(&pb, &first), world.run(&pb, &second));
        assert_eq!(hashes(&a), want[0], "{}", pair[0]);
        assert_eq!(hashes(&b), want[1], "{}", pair[1]);
    }
}
