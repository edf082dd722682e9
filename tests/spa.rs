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
        let tracking = o.tracking_no.clone().unwrap_or_else(|| "Not shipped yet".into());
        assert_eq!(r.fields["tracking_no"], tracking);
        assert_eq!(r.screenshots.len(), 2);
    }
    assert!(world.center.writes().is_empty(), "{:?}", world.center.writes());
    assert!(
        world.center.ws_frames().is_empty(),
        "the feed's frames reached the server: {:?}",
        world.center.ws_frames()
    );
}
