//! Authorization as a hostile insider meets it (issue 16): one role table for every
//! state-changing API route, each refusal and each queue change in the journal; failed-login
//! limits that parallel requests cannot beat; sessions that lose their powers the moment
//! the user's role, password or sessions change.

use serde_json::{json, Value};

use crate::common::http::{http, Resp};
use crate::common::World;
use crate::console::{add_users, get, login, password, post, start, try_login, world, TestClock};
use clerk::evidence::Event;
use clerk::users::Role;

fn token(world: &World, user: &str) -> String {
    clerk::users::create_token(
        world.data_dir(),
        &world.engine.config,
        user,
        "2026-01-01T00:00:00.000Z",
    )
    .unwrap()
}

async fn call(port: u16, bearer: &str, method: &str, path: &str, body: Value) -> Resp {
    let auth = format!("Bearer {bearer}");
    let text = body.to_string();
    http(
        port,
        method,
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        (method == "POST").then_some(text.as_str()),
    )
    .await
}

fn records(world: &World) -> Vec<Event> {
    world
        .engine
        .store
        .records()
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect()
}

/// Every state-changing route, for each role: refused (403, a `refused` record naming the
/// user and the action) or let through (and a queue change is recorded under the user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_changing_route_follows_the_role_table_and_is_recorded() {
    let world = world("\n[[user]]\nname = \"otto\"\nrole = \"operator\"\n").await;
    add_users(&world);
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    // A dead job to retry and drop.
    let bad = r#"name: will-fail
version: "1"
description: fails at once
channel: sample
mode: read_only
steps:
  - goto: /orders/SO-100001
  - assert: { selector: "h1", equals: "not the title" }
"#;
    let (auditor, reviewer, operator) = (
        token(&world, "audrey"),
        token(&world, "carol"),
        token(&world, "otto"),
    );
    let r = call(
        port,
        &operator,
        "POST",
        "/api/runs",
        json!({ "playbook_yaml": bad, "rows": [{}, {}] }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (job, other): (u64, u64) = (
        r.json()["jobs"][0].as_u64().unwrap(),
        r.json()["jobs"][1].as_u64().unwrap(),
    );
    let t = std::time::Instant::now();
    for id in [job, other] {
        loop {
            let j = call(
                port,
                &operator,
                "GET",
                &format!("/api/jobs/{id}"),
                json!({}),
            )
            .await;
            if j.json()["state"] == "dead" {
                break;
            }
            assert!(t.elapsed().as_secs() < 90, "{}", j.body);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    // (route, body, roles allowed)
    let routes: Vec<(&str, String, Value, &[&str])> = vec![
        (
            "POST",
            "/api/runs".into(),
            json!({ "playbook": "order-lookup", "rows": [{"order_id": "SO-100001"}] }),
            &["operator"],
        ),
        (
            "POST",
            format!("/api/jobs/{job}/retry"),
            json!({}),
            &["operator"],
        ),
        (
            "POST",
            format!("/api/jobs/{other}/drop"),
            json!({}),
            &["operator"],
        ),
        (
            "POST",
            "/api/queue/sample/resume".into(),
            json!({}),
            &["operator"],
        ),
        (
            "POST",
            "/api/submit".into(),
            json!({ "approval_id": "a-none" }),
            &["operator"],
        ),
        (
            "POST",
            "/api/schedules".into(),
            json!({ "name": "nightly", "playbook": "order-lookup", "every": "1h" }),
            &["operator"],
        ),
        (
            "POST",
            "/api/schedules/nightly/pause".into(),
            json!({ "reason": "x" }),
            &["operator"],
        ),
        (
            "POST",
            "/api/approvals/a-none/decide".into(),
            json!({ "approve": true }),
            &["reviewer"],
        ),
        (
            "POST",
            "/api/pause".into(),
            json!({ "reason": "drill", "channel": "sample" }),
            &["operator", "reviewer"],
        ),
        (
            "POST",
            "/api/resume".into(),
            json!({ "reason": "drill over", "channel": "sample" }),
            &["operator", "reviewer"],
        ),
    ];
    for (who, tok, role) in [
        ("audrey", &auditor, "auditor"),
        ("carol", &reviewer, "reviewer"),
        ("otto", &operator, "operator"),
    ] {
        for (method, path, body, allowed) in &routes {
            let before = records(&world).len();
            let r = call(port, tok, method, path, body.clone()).await;
            let new: Vec<Event> = records(&world).split_off(before);
            if allowed.contains(&role) {
                // The role lets it through (the engine's own checks may still refuse).
                let by_role = format!("role {role} may not");
                assert!(
                    !r.body.contains(&by_role),
                    "{role} {method} {path}: {}",
                    r.body
                );
                assert!(
                    !new.iter().any(
                        |e| matches!(e, Event::Refused { reason, .. } if reason.contains(&by_role))
                    ),
                    "{role} {method} {path}: {new:#?}"
                );
            } else {
                assert_eq!(r.status, 403, "{role} {method} {path}: {}", r.body);
                let recorded = new.iter().any(|e| {
                    matches!(e, Event::Refused { user, reason, .. }
                        if user == who && reason.contains(&format!("role {role} may not")))
                });
                assert!(
                    recorded,
                    "{role} {method} {path}: no refusal recorded: {new:#?}"
                );
            }
        }
    }
    // The console: the same table over its state-changing routes, logged in as each role.
    clerk::users::set_password(
        world.data_dir(),
        &world.engine.config,
        "otto",
        &password("otto"),
    )
    .unwrap();
    // (path, form fields, roles allowed)
    type ConsoleRoute<'a> = (String, Vec<(&'a str, &'a str)>, &'a [&'a str]);
    let console_routes: Vec<ConsoleRoute> = vec![
        (
            "/approvals/a-none/decide".into(),
            vec![("decision", "approve")],
            &["reviewer"],
        ),
        (format!("/queue/{other}/retry"), vec![], &["operator"]),
        (
            "/pause".into(),
            vec![("reason", "drill"), ("channel", "sample")],
            &["operator", "reviewer"],
        ),
        (
            "/resume".into(),
            vec![("reason", "drill over"), ("channel", "sample")],
            &["operator", "reviewer"],
        ),
        (
            "/runs/r-none/verify".into(),
            vec![],
            &["operator", "reviewer", "auditor"],
        ),
        (
            "/cases/none/bundle.tar".into(),
            vec![],
            &["operator", "reviewer", "auditor"],
        ),
    ];
    for (who, role) in [
        ("audrey", "auditor"),
        ("carol", "reviewer"),
        ("otto", "operator"),
    ] {
        let cookie = login(port, who).await;
        let page = get(port, "/queue", Some(&cookie)).await;
        let token = crate::console::csrf(&page.body);
        for (path, form, allowed) in &console_routes {
            let before = records(&world).len();
            let mut form = form.clone();
            form.push(("csrf", token.as_str()));
            let r = post(port, path, Some(&cookie), &form).await;
            let new: Vec<Event> = records(&world).split_off(before);
            let by_role = format!("role {role} may not");
            if allowed.contains(&role) {
                assert!(
                    r.status != 403 || !r.body.contains(&by_role),
                    "console {role} {path}: {} {}",
                    r.status,
                    r.body
                );
                assert!(
                    !new.iter().any(
                        |e| matches!(e, Event::Refused { reason, .. } if reason.contains(&by_role))
                    ),
                    "console {role} {path}: {new:#?}"
                );
            } else {
                assert_eq!(r.status, 403, "console {role} {path}: {}", r.body);
                assert!(
                    new.iter()
                        .any(|e| matches!(e, Event::Refused { user, reason, .. }
                        if user == who && reason.contains(&by_role))),
                    "console {role} {path}: no refusal recorded: {new:#?}"
                );
            }
        }
    }
    // Each queue change the operator made is in the journal under their name.
    let changes: Vec<(String, String)> = records(&world)
        .into_iter()
        .filter_map(|e| match e {
            Event::QueueChanged { action, user, .. } => Some((action, user)),
            _ => None,
        })
        .collect();
    for action in ["enqueue", "retry", "drop", "resume_channel"] {
        assert!(
            changes.iter().any(|(a, u)| a == action && u == "otto"),
            "{action}: {changes:?}"
        );
    }
    // A token naming someone else is refused whatever the role.
    let r = call(
        port,
        &operator,
        "POST",
        &format!("/api/jobs/{job}/retry"),
        json!({ "user": "carol" }),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Bulk: one request cannot queue an unbounded batch.
    let rows: Vec<Value> = (0..clerk_rows_limit() + 1).map(|_| json!({})).collect();
    let r = call(
        port,
        &operator,
        "POST",
        "/api/runs",
        json!({ "playbook": "order-lookup", "rows": rows }),
    )
    .await;
    assert_eq!(r.status, 413, "{}", &r.body[..r.body.len().min(300)]);
    running.shutdown();
    running.wait().await.unwrap();
}

fn clerk_rows_limit() -> usize {
    5_000
}

/// 29 wrong passwords sent at once meet the limit before any of them is checked: at most
/// 5 are checked, the rest are refused, and the right password after them is refused too.
/// Another user from the same address is not locked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_logins_cannot_beat_the_failed_login_limit() {
    let world = world("").await;
    add_users(&world);
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let attempts = (0..29).map(|i| {
        let pw = format!("wrong-{i}");
        async move { try_login(port, "carol", &pw).await.status }
    });
    let statuses = futures::future::join_all(attempts).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        checked <= 5,
        "{checked} wrong passwords were checked: {statuses:?}"
    );
    assert_eq!(checked + limited, 29, "{statuses:?}");
    let right = try_login(port, "carol", &password("carol")).await;
    assert_eq!(
        right.status, 429,
        "logged in after 29 failures: {}",
        right.status
    );
    // ops, from the same address, may still log in.
    let ok = try_login(port, "ops", &password("ops")).await;
    assert_eq!(ok.status, 303);
    running.shutdown();
    running.wait().await.unwrap();
}

/// A session's powers follow the user as they are now: a role taken away is refused on the
/// very next request, a new password ends every session, and "log out everywhere" too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_or_a_new_password_ends_the_old_sessions_powers_at_once() {
    let world = world("").await;
    add_users(&world);
    // dave's role comes from `clerk user add --role`, so it can change while he is logged in.
    clerk::users::add_user(
        world.data_dir(),
        &world.engine.config,
        "dave",
        &password("dave"),
        Some(Role::Reviewer),
    )
    .unwrap();
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let dave = login(port, "dave").await;
    let page = get(port, "/approvals", Some(&dave)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("(reviewer)"), "{}", page.body);
    // Now an auditor (the role alone changes, as an admin edits users/roles.json): the
    // same session shows the new role and may not pause.
    let roles = clerk::users::roles_path(world.data_dir());
    let text = std::fs::read_to_string(&roles).unwrap();
    assert!(text.contains("reviewer"), "{text}");
    std::fs::write(&roles, text.replace("reviewer", "auditor")).unwrap();
    let page = get(port, "/approvals", Some(&dave)).await;
    assert!(page.body.contains("(auditor)"), "{}", page.body);
    let token = crate::console::csrf(&page.body);
    let r = post(
        port,
        "/pause",
        Some(&dave),
        &[("csrf", token.as_str()), ("reason", "x"), ("channel", "")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(running.daemon.engine.pause.state().global.is_none());

    // A new password ends the session.
    let carol = login(port, "carol").await;
    assert_eq!(get(port, "/approvals", Some(&carol)).await.status, 200);
    clerk::users::set_password(
        world.data_dir(),
        &world.engine.config,
        "carol",
        "a-new-one-entirely",
    )
    .unwrap();
    let r = get(port, "/approvals", Some(&carol)).await;
    assert_eq!(r.status, 303, "the old session still works");
    assert_eq!(r.header("location"), Some("/login"));

    // Log out everywhere: both of ops's sessions end.
    let (a, b) = (login(port, "ops").await, login(port, "ops").await);
    let page = get(port, "/approvals", Some(&a)).await;
    let token = crate::console::csrf(&page.body);
    let r = post(
        port,
        "/logout-everywhere",
        Some(&a),
        &[("csrf", token.as_str())],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    for s in [&a, &b] {
        assert_eq!(get(port, "/approvals", Some(s)).await.status, 303);
    }
    running.shutdown();
    running.wait().await.unwrap();
}

/// A reviewer is shown what is sent, not what it looks like: a held value with a bidi
/// override and its note are shown with the hidden characters written out; a user name
/// with a zero-width space is refused; free text is bounded on the server; a GET of a
/// bundle records nothing and a POST records who exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_characters_are_shown_text_is_bounded_and_a_download_writes_nothing() {
    let world = world("").await;
    add_users(&world);
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.status == "delivered" && o.total_cents >= 300)
        .unwrap();
    let spoof = "\u{202e}00.0001 :tnuoma";
    let r = world
        .run_as(
            &crate::common::playbook("refund-draft"),
            &[
                ("order_id", order.id.as_str()),
                ("amount", "1.00"),
                ("reason", "wrong_item"),
                ("note", spoof),
                ("supervisor_pin", "73914628"),
            ],
            "ops",
            None,
        )
        .await;
    assert_eq!(r.status, clerk::runner::RunStatus::Drafted, "{:?}", r.error);
    let id = r.approval_id.unwrap();
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let carol = login(port, "carol").await;
    let page = get(port, &format!("/approvals/{}", id), Some(&carol)).await;
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains('\u{202e}'),
        "a raw bidi override reached the page"
    );
    assert!(
        page.body.contains("⟨U+202E⟩00.0001 :tnuoma"),
        "{}",
        page.body
    );
    // `clerk approvals show` too.
    let out = std::process::Command::new(crate::common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["approvals", "show", &id])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("⟨U+202E⟩") && !shown.contains('\u{202e}'),
        "{shown}"
    );

    // A name that looks like carol's.
    let err = clerk::users::add_user(
        world.data_dir(),
        &world.engine.config,
        "car\u{200b}ol",
        "a-long-password",
        Some(Role::Reviewer),
    )
    .unwrap_err();
    assert!(err.to_string().contains("car⟨U+200B⟩ol"), "{err}");

    // 1.5 MiB of pause reason: refused, nothing paused or recorded as a pause.
    let ops = token(&world, "ops");
    let huge = "x".repeat(1_500_000);
    let r = call(port, &ops, "POST", "/api/pause", json!({ "reason": huge })).await;
    assert_eq!(r.status, 400, "{}", &r.body[..r.body.len().min(200)]);
    assert!(running.daemon.engine.pause.state().global.is_none());
    let long_note = "n".repeat(5000);
    let r = call(
        port,
        &token(&world, "carol"),
        "POST",
        &format!("/api/approvals/{id}/decide"),
        json!({ "approve": true, "note": long_note }),
    )
    .await;
    assert!(
        r.body.contains("at most 2000"),
        "{}",
        &r.body[..r.body.len().min(200)]
    );

    // A bundle download writes nothing; an export by POST is recorded under its user.
    let case = "CASE-42";
    let r = world
        .engine
        .run(clerk::runner::RunRequest {
            playbook: crate::common::playbook("order-lookup"),
            inputs: crate::common::inputs(&[("order_id", order.id.as_str())]),
            operator: "ops".into(),
            case_ref: Some(case.into()),
            batch_id: None,
            approval: None,
            claims: Default::default(),
            replay_of: None,
            rollback_of: None,
            offline: None,
            sample: false,
        })
        .await
        .unwrap();
    assert_eq!(r.status, clerk::runner::RunStatus::Ok, "{:?}", r.error);
    let before = records(&world).len();
    let auditor = token(&world, "audrey");
    let r = call(
        port,
        &auditor,
        "GET",
        &format!("/api/cases/{case}/bundle.tar"),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = get(port, &format!("/cases/{case}/bundle.tar"), Some(&carol)).await;
    assert_eq!(r.status, 200);
    assert_eq!(records(&world).len(), before, "a GET changed the journal");
    let r = call(
        port,
        &auditor,
        "POST",
        &format!("/api/cases/{case}/bundle.tar"),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200);
    let new = records(&world).split_off(before);
    assert!(
        matches!(new.as_slice(), [Event::CheckpointExported { by: Some(by), .. }] if by == "audrey"),
        "{new:#?}"
    );
    running.shutdown();
    running.wait().await.unwrap();
}

/// A schedule cannot make the daemon read an internal service: inputs URLs on this host or
/// a private network are refused unless `[serve] inputs_url_allow` lists them, and the
/// internal server sees no request at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_inputs_url_is_refused_and_never_fetched() {
    let world = world("").await;
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal_port = internal.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let server = tokio::spawn(async move {
        while let Ok((_s, _)) = internal.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let token = running.daemon.instance().token.clone();
    for url in [
        format!("http://127.0.0.1:{internal_port}/db-password.csv"),
        format!("http://localhost:{internal_port}/db-password.csv"),
        format!("http://[::1]:{internal_port}/x.csv"),
        "http://10.1.2.3/x.csv".to_owned(),
        "http://169.254.169.254/latest/meta-data.csv".to_owned(),
    ] {
        let body = json!({
            "name": "leak", "playbook": "order-lookup", "every": "1h",
            "inputs_from_url": url, "user": "ops"
        })
        .to_string();
        let r = http(
            port,
            "POST",
            "/api/schedules",
            &[
                (clerk::instance::TOKEN_HEADER, token.as_str()),
                ("Content-Type", "application/json"),
            ],
            Some(&body),
        )
        .await;
        assert_eq!(r.status, 400, "{url}: {}", r.body);
        assert!(r.body.contains("inputs_url_allow"), "{url}: {}", r.body);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!records(&world)
        .iter()
        .any(|e| matches!(e, Event::ScheduleAdded { .. })));
    server.abort();
    running.shutdown();
    running.wait().await.unwrap();
}

/// A CLI that cannot read the data directory looks for the daemon at the configured port,
/// and whatever listens there must prove it holds the caller's token before the token is
/// sent: a fake listener on the port never receives it; the real daemon proves itself.
/// (The CLI runs as `nobody`, who cannot read the root-owned data directory.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_listener_on_the_daemons_port_never_receives_a_token() {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::PermissionsExt as _;
    let world = world("").await;
    add_users(&world);
    let token = token(&world, "carol");
    // The daemon's data directory, as the README sets it up: its owner's alone.
    std::fs::set_permissions(world.data_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // A listener that took the port: it records what it is sent and answers `{}`.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in fake.incoming() {
            let Ok(mut c) = conn else { break };
            let mut buf = [0u8; 8192];
            let n = c.read(&mut buf).unwrap_or(0);
            log.lock().unwrap().extend_from_slice(&buf[..n]);
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"proof\":\"no\"}",
            );
        }
    });
    // A config the CLI's user can read, naming that port.
    let cfg_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cfg_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = std::fs::read_to_string(world.data_dir().join("clerk.toml")).unwrap();
    let write_cfg = |port: u16| {
        let path = cfg_dir.path().join("clerk.toml");
        std::fs::write(&path, format!("{base}\n[serve]\nport = {port}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    };
    // The binary where `nobody` may run it, wherever the checkout is.
    let bin = cfg_dir.path().join("clerk");
    std::fs::copy(crate::common::clerk_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |cfg: &std::path::Path, args: &[&str]| {
        std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "env"])
            .arg(format!("CLERK_TOKEN={token}"))
            .arg("HOME=/tmp")
            .arg(&bin)
            .arg("--data-dir")
            .arg(world.data_dir())
            .arg("--config")
            .arg(cfg)
            .args(args)
            .current_dir("/")
            .output()
            .unwrap()
    };
    let cfg = write_cfg(fake_port);
    let out = tokio::task::block_in_place(|| as_nobody(&cfg, &["status"]));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("did not prove"), "{said}");
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(
        got.contains("/api/hello"),
        "the CLI asked for a proof: {got}"
    );
    assert!(
        !got.contains(&token),
        "the token reached the fake listener: {got}"
    );
    assert!(!got.to_lowercase().contains("authorization"), "{got}");

    // The real daemon proves itself, and the CLI then works through it.
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let cfg = write_cfg(running.addr.port());
    let out = tokio::task::block_in_place(|| as_nobody(&cfg, &["status"]));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("daemon: running"), "{said}");
    running.shutdown();
    running.wait().await.unwrap();
}

/// `POST /api/schedules` opens no file a request names: a path as the playbook (absolute,
/// relative escape, `/etc/shadow`) or as the inputs is refused without echoing a byte of
/// it. `clerk schedule add FILE --inputs FILE` through the daemon reads both files itself,
/// as the caller, and sends the text and the rows; the schedule pins the text by hash and
/// keeps the rows, and its firing queues exactly those rows with exactly that text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_through_the_api_name_no_file_and_the_cli_sends_contents() {
    let world = world("").await;
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let token = running.daemon.instance().token.clone();
    let secret = world.dir.path().join("secret.csv");
    std::fs::write(&secret, "order_id\nTOP-SECRET-ROW\n").unwrap();
    let post = |body: Value| {
        let text = body.to_string();
        let token = token.clone();
        async move {
            http(
                port,
                "POST",
                "/api/schedules",
                &[
                    (clerk::instance::TOKEN_HEADER, token.as_str()),
                    ("Content-Type", "application/json"),
                ],
                Some(&text),
            )
            .await
        }
    };
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    for playbook in [
        "/etc/shadow".to_owned(),
        "/etc/passwd".to_owned(),
        "../../../../etc/passwd".to_owned(),
        secret.display().to_string(),
        shipped.join("order-lookup.yaml").display().to_string(),
    ] {
        let r = post(json!({
            "name": "leak", "playbook": playbook, "every": "1h", "user": "ops"
        }))
        .await;
        assert_eq!(r.status, 400, "{playbook}: {}", r.body);
        assert!(r.body.contains("refused"), "{playbook}: {}", r.body);
        for leaked in ["root:", "TOP-SECRET", "steps:"] {
            assert!(!r.body.contains(leaked), "{playbook}: {}", r.body);
        }
    }
    let r = post(json!({
        "name": "leak", "playbook": "order-lookup", "every": "1h",
        "inputs": secret.display().to_string(), "user": "ops"
    }))
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("inputs_rows"), "{}", r.body);
    assert!(!r.body.contains("TOP-SECRET"), "{}", r.body);
    assert!(!records(&world)
        .iter()
        .any(|e| matches!(e, Event::ScheduleAdded { .. })));

    // The CLI, through the daemon, with a playbook file of its own and an inputs file.
    let mine = world.dir.path().join("my-lookup.yaml");
    let text = std::fs::read_to_string(shipped.join("order-lookup.yaml"))
        .unwrap()
        .replace("name: order-lookup", "name: my-lookup");
    std::fs::write(&mine, &text).unwrap();
    let rows = world.dir.path().join("rows.csv");
    std::fs::write(&rows, "order_id\nSO-100001\nSO-100002\n").unwrap();
    let out = std::process::Command::new(crate::common::clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["schedule", "add", "mine", "--playbook"])
        .arg(&mine)
        .args(["--every", "1h", "--inputs"])
        .arg(&rows)
        .args(["--as", "ops"])
        .env_remove("CLERK_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 rows of"), "{stderr}");
    let views = http(
        port,
        "GET",
        "/api/schedules",
        &[(clerk::instance::TOKEN_HEADER, token.as_str())],
        None,
    )
    .await
    .json();
    let view = &views[0];
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    };
    assert_eq!(view["playbook"], sha.as_str(), "{views}");
    assert_eq!(view["playbook_sha256"], sha.as_str(), "{views}");
    assert!(view["playbook_file"].is_null(), "{views}");
    assert_eq!(
        view["inputs"],
        json!({"kind": "rows", "rows": 2}),
        "{views}"
    );
    running.shutdown();
    running.wait().await.unwrap();

    // The file changes afterwards; the firing runs the rows and the text that were sent.
    std::fs::write(&mine, text.replace("SO-", "XX-")).unwrap();
    std::fs::write(&rows, "order_id\nSO-999999\n").unwrap();
    // `wait` returns once the stopped daemon let go of the queue.
    let queue = clerk::queue::EmbeddedQueue::open(
        world.data_dir(),
        clerk::queue::limits_for(&world.engine.config, 1),
        clerk::queue::Backoff::default(),
    )
    .expect("the stopped daemon let go of the queue");
    let no_urls =
        |_: &str| -> Result<clerk::serve::scheduler::Rows, String> { Err("no URLs here".into()) };
    let report = clerk::serve::scheduler::Ticker {
        store: &world.engine.store,
        queue: &queue,
        config: &world.engine.config,
        max_attempts: 1,
        // Interval slots are aligned to the clock, so the first one falls anywhere in the
        // next hour: a grace of two hours keeps it due, whatever minute the test runs at.
        grace: std::time::Duration::from_secs(7200),
        fetch: &no_urls,
    }
    .tick(chrono::Utc::now() + chrono::TimeDelta::hours(1))
    .unwrap();
    assert_eq!(report.fired.len(), 1, "{report:?}");
    use clerk::queue::RunQueue as _;
    let jobs = queue.list(&clerk::queue::JobFilter::default()).unwrap();
    let mut orders: Vec<String> = jobs
        .iter()
        .map(|j| j.spec.inputs["order_id"].clone())
        .collect();
    orders.sort();
    assert_eq!(orders, ["SO-100001", "SO-100002"]);
    assert!(jobs
        .iter()
        .all(|j| j.spec.playbook_sha256.as_deref() == Some(sha.as_str())));
}

/// A client that starts a request and never finishes its headers is cut off after
/// `[serve] header_timeout`, while other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let world = world("\n[serve]\nheader_timeout = \"1s\"\n").await;
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(b"GET /api/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // Served while the slow ones hang.
    let r = get(port, "/login", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let started = std::time::Instant::now();
    for mut s in slow {
        let mut buf = Vec::new();
        // Without a header timeout this read never ends (the test fails at 15 s).
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(15), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a slow-header connection is still open");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    running.shutdown();
    running.wait().await.unwrap();
}
