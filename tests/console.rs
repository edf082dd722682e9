//! The reviewer console of `clerk serve` over real HTTP: users set with `clerk user add`,
//! login (wrong password, rate limit, cookie flags), the approvals pages with a refund
//! drafted in real headless Chromium against the sample seller center, escaping, CSRF,
//! four eyes, an auditor's forged POSTs, screenshots, pause from the status bar, and the
//! idle timeout with an injected clock.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};

use crate::common::http::{http, Resp};
use crate::common::{clerk_bin, playbook, World};
use clerk::approval::ApprovalState;
use clerk::evidence::Event;
use clerk::runner::RunStatus;
use clerk::serve::{Running, ServeOptions};

const NOTE: &str = "<script>alert('owned')</script> wrong colour";

/// A clock the test moves forward (seconds added to the system clock).
#[derive(Clone, Default)]
pub(crate) struct TestClock(Arc<AtomicI64>);

impl TestClock {
    pub(crate) fn advance(&self, d: TimeDelta) {
        self.0.fetch_add(d.num_seconds(), Ordering::SeqCst);
    }
    pub(crate) fn clock(&self) -> clerk::runner::Clock {
        let off = self.0.clone();
        Arc::new(move || Utc::now() + TimeDelta::seconds(off.load(Ordering::SeqCst)))
    }
}

/// The demo config with `ops` also a reviewer (to try approving their own draft) and four
/// console users; `extra` is appended (a `[serve]` table).
pub(crate) async fn world(extra: &str) -> World {
    World::with_config(|c| {
        let c = c.replacen(r#"reviewers = ["carol"]"#, r#"reviewers = ["carol", "ops"]"#, 1);
        format!(
            "{c}\n[[user]]\nname = \"carol\"\nrole = \"reviewer\"\n\n[[user]]\nname = \"ops\"\nrole = \"reviewer\"\n\n[[user]]\nname = \"audrey\"\nrole = \"auditor\"\n{extra}"
        )
    })
    .await
}

pub(crate) fn password(user: &str) -> String {
    format!("{user}-correct-horse")
}

/// Sets passwords: carol's through `clerk user add` with the password on stdin, the others
/// through the engine function the command calls.
pub(crate) fn add_users(world: &World) {
    let mut child = Command::new(clerk_bin())
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(["user", "add", "carol"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", password("carol")).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "clerk user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for u in ["ops", "audrey"] {
        clerk::users::set_password(world.data_dir(), &world.engine.config, u, &password(u))
            .unwrap();
    }
    let file = clerk::users::passwords_path(world.data_dir());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("$argon2id$"), "{text}");
    assert!(
        !text.contains(&password("carol")),
        "a password stored in clear"
    );
}

pub(crate) async fn start(world: &World, clock: &TestClock) -> Running {
    let mut engine = clerk::runner::Engine::new(
        world.data_dir().to_owned(),
        (*world.engine.config).clone(),
        world.engine.store.clone(),
        world.engine.launch.clone(),
    );
    engine.clock = clock.clock();
    let opts = ServeOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        pages: 1,
        lease: Duration::from_secs(60),
        shutdown_deadline: Duration::from_secs(10),
        schedule_grace: Duration::from_secs(900),
        scheduler_tick: Duration::from_secs(3600),
        idle_wait: Duration::from_millis(100),
        max_attempts: 1,
        run_scheduler: false,
    };
    clerk::serve::start(engine, opts)
        .await
        .expect("daemon starts")
}

pub(crate) async fn get(port: u16, path: &str, cookie: Option<&str>) -> Resp {
    let c = cookie.map(|c| format!("clerk_session={c}"));
    let headers: Vec<(&str, &str)> = c.iter().map(|c| ("Cookie", c.as_str())).collect();
    http(port, "GET", path, &headers, None).await
}

pub(crate) async fn post(
    port: u16,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> Resp {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let c = cookie.map(|c| format!("clerk_session={c}"));
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(c) = &c {
        headers.push(("Cookie", c.as_str()));
    }
    http(port, "POST", path, &headers, Some(&body)).await
}

/// Logs in and returns the session id from the cookie (asserting its flags; `Secure` only
/// with `[serve] cookie_secure`).
pub(crate) async fn login(port: u16, user: &str) -> String {
    login_secure(port, user, false).await
}

/// Loads the login form (its CSRF token and the cookie it is bound to), then posts it.
pub(crate) async fn try_login(port: u16, user: &str, pw: &str) -> Resp {
    let form = get(port, "/login", None).await;
    let bound = form
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("clerk_login="))
        .map(|(_, v)| v.split(';').next().unwrap_or_default().to_owned())
        .expect("the login form's cookie");
    let token = csrf(&form.body);
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("user", user), ("password", pw), ("csrf", token.as_str())])
        .finish();
    http(
        port,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", bound.as_str()),
        ],
        Some(&body),
    )
    .await
}

async fn login_secure(port: u16, user: &str, secure: bool) -> String {
    let r = try_login(port, user, &password(user)).await;
    assert_eq!(r.status, 303, "login of {user}: {}", r.body);
    assert_eq!(r.header("location"), Some("/approvals"));
    let cookie = r
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("clerk_session="))
        .map(|(_, v)| v.clone())
        .expect("a session cookie");
    let flags: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(flags.contains(&"HttpOnly"), "{cookie}");
    assert!(flags.contains(&"SameSite=Strict"), "{cookie}");
    assert_eq!(flags.contains(&"Secure"), secure, "{cookie}");
    let id = flags[0].trim_start_matches("clerk_session=").to_owned();
    assert_eq!(id.len(), 64, "{cookie}");
    id
}

pub(crate) fn csrf(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + r#"name="csrf" value=""#.len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// Drafts a refund as `ops` whose note carries a `<script>`; returns the approval id.
async fn draft(world: &World) -> String {
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.status == "delivered" && o.total_cents >= 300)
        .expect("a delivered order");
    let cents = order.total_cents / 3;
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let report = world
        .run_as(
            &playbook("refund-draft"),
            &[
                ("order_id", order.id.as_str()),
                ("amount", amount.as_str()),
                ("reason", "wrong_item"),
                ("note", NOTE),
                ("supervisor_pin", "73914628"),
            ],
            "ops",
            None,
        )
        .await;
    assert_eq!(report.status, RunStatus::Drafted, "{:?}", report.error);
    report.approval_id.expect("an approval request")
}

pub(crate) fn refusals(world: &World, user: &str) -> Vec<(String, String)> {
    world
        .engine
        .store
        .records()
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Refused {
                action,
                user: u,
                reason,
                ..
            } if u == user => Some((action, reason)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewer_console_login_approvals_four_eyes_csrf_and_pause() {
    let world = world("").await;
    add_users(&world);
    let id = draft(&world).await;
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let approval = clerk::approval::load(&running.daemon.engine, &id).unwrap();
    let sha = approval
        .request
        .screenshot_sha256
        .clone()
        .expect("the draft has a screenshot");
    let shot = format!("/screenshots/{sha}.png");

    // Logged out: pages send to the login form, screenshots are refused.
    let r = get(port, "/approvals", None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    let r = get(port, &shot, None).await;
    assert_eq!(r.status, 401, "a screenshot served without login");
    assert!(!r.body.contains("PNG"));
    let r = get(port, "/login", None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#"type="password""#));
    assert!(
        !r.body.contains("<script>"),
        "the console has no inline script"
    );

    // Wrong passwords are refused; five from one address block that address, even with
    // the right password, until the window has passed (the injected clock).
    // A login POST without the login form's token (login CSRF) is refused before the
    // password is looked at, and does not count as a failure.
    let r = post(
        port,
        "/login",
        None,
        &[("user", "carol"), ("password", &password("carol"))],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!r
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("clerk_session=")));
    // Failures count per user (from this address): mallory's do not lock carol out.
    for user in [
        "carol", "mallory", "carol", "carol", "mallory", "carol", "carol",
    ] {
        let r = try_login(port, user, "not-the-password").await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.body.contains("Wrong user or password"), "{}", r.body);
        assert!(!r
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("clerk_session=")));
    }
    let r = try_login(port, "carol", &password("carol")).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("Too many failed logins"), "{}", r.body);
    assert!(!r
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("clerk_session=")));
    clock.advance(TimeDelta::minutes(16));
    let carol = login(port, "carol").await;

    // The queue: the draft, pending, counted in the title, under a strict CSP.
    let r = get(port, "/approvals", Some(&carol)).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("<title>Approvals (1 pending) · clerk</title>"),
        "{}",
        r.body
    );
    assert!(r.body.contains(&id));
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.body.contains("Running: nothing is paused."));
    let r = get(port, "/approvals?channel=elsewhere", Some(&carol)).await;
    assert!(r.body.contains("(0 pending)") && !r.body.contains(&id));

    // The detail: screenshot, values with the note escaped, the held write, the buttons.
    let r = get(port, &format!("/approvals/{id}"), Some(&carol)).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&format!(r#"src="{shot}""#)), "{}", r.body);
    assert!(
        !r.body.contains("<script>alert"),
        "unescaped note: {}",
        r.body
    );
    assert!(
        r.body.contains("&#60;script&#62;alert") || r.body.contains("&lt;script&gt;alert"),
        "the note is not shown as text: {}",
        r.body
    );
    let held = approval.request.held.as_ref().expect("a held write");
    assert!(r.body.contains(&held.method));
    assert!(r.body.contains(&approval.request.content.playbook_sha256));
    assert!(r.body.contains(r#"value="approve""#), "{}", r.body);
    let carol_csrf = csrf(&r.body);

    // Screenshots for logged-in users: a PNG, never sniffed.
    let r = get(port, &shot, Some(&carol)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.body.starts_with("\u{FFFD}PNG"), "not a PNG");
    let r = get(port, "/screenshots/..%2Fjournal.jsonl", Some(&carol)).await;
    assert_eq!(r.status, 404);

    // An auditor sees everything but no decision or pause control; forged POSTs are
    // refused and recorded.
    let audrey = login(port, "audrey").await;
    let r = get(port, &format!("/approvals/{id}"), Some(&audrey)).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains(r#"value="approve""#), "{}", r.body);
    assert!(!r.body.contains(r#"action="/pause""#), "{}", r.body);
    let audrey_csrf = csrf(&r.body);
    let decide = format!("/approvals/{id}/decide");
    let r = post(
        port,
        &decide,
        Some(&audrey),
        &[("csrf", &audrey_csrf), ("decision", "approve")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post(
        port,
        "/pause",
        Some(&audrey),
        &[("csrf", &audrey_csrf), ("reason", "forged")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(running.daemon.engine.pause.state().global.is_none());
    let refused = refusals(&world, "audrey");
    assert!(
        refused.iter().any(|(a, _)| a == "approve") && refused.iter().any(|(a, _)| a == "pause"),
        "{refused:?}"
    );

    // Four eyes: the requester, a reviewer of the channel, gets no Approve button and a
    // forged approval is refused by the engine.
    let ops = login(port, "ops").await;
    let r = get(port, &format!("/approvals/{id}"), Some(&ops)).await;
    assert!(!r.body.contains(r#"value="approve""#), "{}", r.body);
    assert!(r.body.contains("You requested this draft"), "{}", r.body);
    let ops_csrf = csrf(&r.body);
    let r = post(
        port,
        &decide,
        Some(&ops),
        &[("csrf", &ops_csrf), ("decision", "approve")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("four eyes"), "{}", r.body);

    // CSRF: none, or another session's, is refused; nothing is decided.
    let r = post(port, &decide, Some(&carol), &[("decision", "approve")]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post(
        port,
        &decide,
        Some(&carol),
        &[("csrf", &ops_csrf), ("decision", "approve")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let a = clerk::approval::load(&running.daemon.engine, &id).unwrap();
    assert_eq!(a.state, ApprovalState::Pending);

    // With the token: approved by carol, through the engine, and shown on the page.
    let r = post(
        port,
        &decide,
        Some(&carol),
        &[
            ("csrf", &carol_csrf),
            ("decision", "approve"),
            ("note", "photos checked"),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some(format!("/approvals/{id}").as_str())
    );
    let a = clerk::approval::load(&running.daemon.engine, &id).unwrap();
    assert_eq!(a.state, ApprovalState::Approved);
    let decided: Vec<String> = world
        .engine
        .store
        .approval_records(&id)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::ApprovalDecided {
                reviewer, decision, ..
            } => Some(format!("{decision} by {reviewer}")),
            _ => None,
        })
        .collect();
    assert_eq!(decided, vec!["approved by carol".to_owned()]);
    let r = get(port, &format!("/approvals/{id}"), Some(&carol)).await;
    assert!(r.body.contains("approved</strong> by carol"), "{}", r.body);
    assert!(r.body.contains("photos checked"));
    assert!(!r.body.contains(r#"value="approve""#));

    // Pause from the status bar, shown with who and why; then resume.
    let r = post(
        port,
        "/pause",
        Some(&carol),
        &[("csrf", &carol_csrf), ("reason", "refund spike")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let global = running.daemon.engine.pause.state().global.expect("paused");
    assert_eq!(global.user, "carol");
    let r = get(port, "/approvals", Some(&carol)).await;
    assert!(
        r.body.contains("paused by carol") && r.body.contains("refund spike"),
        "{}",
        r.body
    );
    assert!(r.body.contains(r#"action="/resume""#));
    let r = post(
        port,
        "/resume",
        Some(&carol),
        &[("csrf", &carol_csrf), ("reason", "explained")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(running.daemon.engine.pause.state().global.is_none());

    // Runs: the draft run is listed; its page shows the screenshot and its hash; an auditor
    // may verify it ("verify now"), which names an altered file.
    let run_id = approval.request.run_id.clone();
    let r = get(port, "/runs?playbook=refund-draft", Some(&audrey)).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(&format!(r#"href="/runs/{run_id}""#)),
        "{}",
        r.body
    );
    let r = get(port, "/runs?playbook=other", Some(&audrey)).await;
    assert!(!r.body.contains(&run_id));
    let r = get(port, &format!("/runs/{run_id}"), Some(&audrey)).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&sha) && r.body.contains("Verify now"));
    let verify = format!("/runs/{run_id}/verify");
    let r = post(port, &verify, Some(&audrey), &[]).await;
    assert_eq!(r.status, 403, "verify without CSRF token");
    let r = post(port, &verify, Some(&audrey), &[("csrf", &audrey_csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Verification: INTACT"), "{}", r.body);
    let png = world.engine.store.screenshot_path(&sha);
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&png, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(&png).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&png, &bytes).unwrap();
    let r = post(port, &verify, Some(&audrey), &[("csrf", &audrey_csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Verification: PROBLEMS"), "{}", r.body);
    assert!(
        r.body.contains(&format!("{sha}.png")) && r.body.contains("no longer matches"),
        "{}",
        r.body
    );

    // Logout ends the session.
    let r = post(port, "/logout", Some(&carol), &[("csrf", &carol_csrf)]).await;
    assert_eq!(r.status, 303);
    let r = get(port, "/approvals", Some(&carol)).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));

    running.shutdown();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_end_after_thirty_idle_minutes_and_cookies_can_be_secure() {
    let world = world("\n[serve]\ncookie_secure = true\n").await;
    add_users(&world);
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let carol = login_secure(port, "carol", true).await;
    let page = get(port, "/approvals", Some(&carol)).await;
    let token = csrf(&page.body);
    // Each request restarts the idle time.
    for _ in 0..3 {
        clock.advance(TimeDelta::minutes(29));
        let r = get(port, "/approvals", Some(&carol)).await;
        assert_eq!(r.status, 200, "a session in use ended");
    }
    clock.advance(TimeDelta::minutes(31));
    let r = get(port, "/approvals", Some(&carol)).await;
    assert_eq!(r.status, 303, "an idle session still works");
    assert_eq!(r.header("location"), Some("/login"));
    let r = post(
        port,
        "/pause",
        Some(&carol),
        &[("csrf", &token), ("reason", "late")],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(running.daemon.engine.pause.state().global.is_none());
    running.shutdown();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_page_shows_dead_letters_and_schedules_and_only_operators_retry() {
    let world = world("[[user]]\nname = \"olga\"\nrole = \"operator\"\n").await;
    add_users(&world);
    clerk::users::set_password(
        world.data_dir(),
        &world.engine.config,
        "olga",
        &password("olga"),
    )
    .unwrap();
    // A job that fails permanently (an assertion that cannot hold): a dead letter.
    std::fs::write(
        world.data_dir().join("wrong.yaml"),
        r##"name: wrong-total
version: "1"
description: asserts a total the order does not have
channel: sample
mode: read_only
steps:
  - goto: /orders/SO-100001
  - assert: { selector: "#order-total", equals: "<b>no such total</b>" }
"##,
    )
    .unwrap();
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let mut spec = clerk::queue::JobSpec::new(
        &world.data_dir().join("wrong.yaml").display().to_string(),
        "sample",
        "ops",
    );
    spec.max_attempts = 1;
    let id = running.daemon.queue.enqueue(spec).unwrap();
    running.daemon.wake();
    let t = std::time::Instant::now();
    while running.daemon.queue.get(id).unwrap().unwrap().state != clerk::queue::JobState::Dead {
        assert!(t.elapsed() < Duration::from_secs(60), "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let orders = world.data_dir().join("orders.csv");
    std::fs::write(&orders, "order_id\nSO-100001\n").unwrap();
    clerk::schedule::add(
        &world.engine.store,
        &world.engine.config,
        world.data_dir(),
        &clerk::schedule::AddRequest {
            name: "mornings".into(),
            playbook: "order-lookup".into(),
            trigger: clerk::schedule::TriggerSpec::Cron {
                expr: "0 8 * * *".into(),
                tz: Some("Asia/Shanghai".into()),
            },
            inputs: clerk::schedule::InputsSpec::File(orders),
            case_from: None,
            jobs: 1,
            files_allowed: true,
        },
        "ops",
        Utc::now(),
    )
    .unwrap();
    let port = running.addr.port();

    // The auditor sees the dead letter and its reason (escaped), and no retry button; a
    // forged retry is refused and recorded.
    let audrey = login(port, "audrey").await;
    let page = get(port, "/queue", Some(&audrey)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("dead"), "{}", page.body);
    assert!(
        page.body.contains("permanent failure on attempt 1"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("<b>no such total</b>"),
        "content is escaped"
    );
    assert!(page.body.contains("mornings") && page.body.contains("Asia/Shanghai"));
    assert!(!page.body.contains(&format!("/queue/{}/retry", id.0)));
    let forged = post(
        port,
        &format!("/queue/{}/retry", id.0),
        Some(&audrey),
        &[("csrf", &csrf(&page.body))],
    )
    .await;
    assert_eq!(forged.status, 403);
    assert!(refusals(&world, "audrey").iter().any(|(a, _)| a == "retry"));
    assert_eq!(
        running.daemon.queue.get(id).unwrap().unwrap().state,
        clerk::queue::JobState::Dead
    );

    // The operator retries it: without the CSRF token refused, with it queued again.
    let olga = login(port, "olga").await;
    let page = get(port, "/queue", Some(&olga)).await;
    assert!(
        page.body.contains(&format!("/queue/{}/retry", id.0)),
        "{}",
        page.body
    );
    let no_token = post(port, &format!("/queue/{}/retry", id.0), Some(&olga), &[]).await;
    assert_eq!(no_token.status, 403);
    let ok = post(
        port,
        &format!("/queue/{}/retry", id.0),
        Some(&olga),
        &[("csrf", &csrf(&page.body))],
    )
    .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    // Queued again (it fails again at once here, which is the job's business): the queue's
    // log holds exactly one retry of it.
    let qlog = std::fs::read_to_string(world.data_dir().join("queue/queue.log")).unwrap();
    let retried = qlog
        .lines()
        .filter(|l| l.contains(r#""type":"retried""#) && l.contains(&format!(r#""job":{}"#, id.0)))
        .count();
    assert_eq!(retried, 1, "{qlog}");
    running.shutdown();
    running.wait().await.unwrap();
}

/// Runs the shipped `order-lookup` (or any playbook) for `case`.
async fn run_for_case(
    world: &World,
    pb: &str,
    inputs: &[(&str, &str)],
    case: &str,
) -> clerk::runner::RunReport {
    world
        .engine
        .run(clerk::runner::RunRequest {
            playbook: playbook(pb),
            inputs: crate::common::inputs(inputs),
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
        .expect("engine runs")
}

/// GET with the session cookie, keeping the body's bytes.
fn get_bytes(port: u16, path: &str, cookie: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::Read as _;
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let r = match agent
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .set("Cookie", &format!("clerk_session={cookie}"))
        .call()
    {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let headers = r
        .headers_names()
        .into_iter()
        .map(|k| {
            let v = r.header(&k).unwrap_or_default().to_owned();
            (k, v)
        })
        .collect();
    let status = r.status();
    let mut body = Vec::new();
    r.into_reader().read_to_end(&mut body).unwrap();
    (status, headers, body)
}

/// The case view lists one case's runs, screenshots and approval in journal order (and
/// nothing of another case), the same as its JSON; its bundle downloads as a tar whose
/// SHA256SUMS checks with `sha256sum -c` and `clerk verify --bundle`, and both catch a
/// flipped byte. Logged out, no bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_view_lists_a_case_in_order_and_exports_a_bundle_that_sha256sum_checks() {
    let world = world("").await;
    add_users(&world);
    let case = "T-9 <b>&";
    let orders = clerk::sample::orders();
    let first = run_for_case(&world, "order-lookup", &[("order_id", &orders[0].id)], case).await;
    let other = run_for_case(
        &world,
        "order-lookup",
        &[("order_id", &orders[1].id)],
        "T-10",
    )
    .await;
    let delivered = orders
        .iter()
        .find(|o| o.status == "delivered" && o.total_cents >= 300)
        .unwrap();
    let draft = run_for_case(
        &world,
        "refund-draft",
        &[
            ("order_id", delivered.id.as_str()),
            ("amount", "1.00"),
            ("reason", "wrong_item"),
            ("note", "case test"),
            ("supervisor_pin", "73914628"),
        ],
        case,
    )
    .await;
    assert_eq!(draft.status, RunStatus::Drafted, "{:?}", draft.error);
    let approval_id = draft.approval_id.clone().unwrap();
    let (first_id, other_id, draft_id) = (
        first.run_id.clone().unwrap(),
        other.run_id.clone().unwrap(),
        draft.run_id.clone().unwrap(),
    );
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let audrey = login(port, "audrey").await;
    let path = "/cases/T-9%20%3Cb%3E%26";

    // The page: both runs in order, every screenshot, the approval; the case escaped.
    let r = get(port, path, Some(&audrey)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("T-9 &#60;b&#62;&#38;") || r.body.contains("T-9 &lt;b&gt;&amp;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("T-9 <b>"));
    let at = |needle: &str| {
        r.body
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing"))
    };
    assert!(at(&format!("/runs/{first_id}")) < at(&format!("/runs/{draft_id}")));
    assert!(at(&format!("/approvals/{approval_id}")) > at(&format!("/runs/{draft_id}")));
    assert!(!r.body.contains(&other_id), "another case's run is listed");
    let mut shots = Vec::new();
    for id in [&first_id, &draft_id] {
        for e in world.engine.store.run(id).unwrap().unwrap().evidence {
            assert!(r.body.contains(&format!("/screenshots/{}.png", e.sha256)));
            shots.push(e.sha256);
        }
    }
    assert!(shots.len() >= 2);

    // The same facts as JSON through the API.
    let token = running.daemon.instance().token.clone();
    let j = http(
        port,
        "GET",
        &format!("/api{path}"),
        &[(clerk::instance::TOKEN_HEADER, token.as_str())],
        None,
    )
    .await
    .json();
    assert_eq!(j["case_ref"], case);
    let runs: Vec<&str> = j["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs, vec![first_id.as_str(), draft_id.as_str()]);
    let kinds: Vec<&str> = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert!(
        kinds.contains(&"approval_requested") && kinds.contains(&"screenshot"),
        "{kinds:?}"
    );
    let seqs: Vec<u64> = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // The bundle: a tar that checks with sha256sum and clerk, and catches a flipped byte.
    let (status, headers, tar) = tokio::task::spawn_blocking({
        let (p, c) = (format!("{path}/bundle.tar"), audrey.clone());
        move || get_bytes(port, &p, &c)
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "application/x-tar");
    assert!(header("content-disposition").starts_with("attachment;"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.tar"), &tar).unwrap();
    let ok = Command::new("tar")
        .arg("-xf")
        .arg(dir.path().join("b.tar"))
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let top = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("the bundle folder");
    let sums = |dir: &std::path::Path| {
        Command::new("sha256sum")
            .args(["-c", "--quiet", "SHA256SUMS"])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let out = sums(&top);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for sha in &shots {
        assert!(top.join(format!("screenshots/{sha}.png")).exists());
    }
    let verify = |dir: &std::path::Path| {
        Command::new(clerk_bin())
            .args(["verify", "--bundle"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = verify(&top);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let png = top.join(format!("screenshots/{}.png", shots[0]));
    let mut bytes = std::fs::read(&png).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&png, &bytes).unwrap();
    assert!(
        !sums(&top).status.success(),
        "sha256sum missed a flipped byte"
    );
    assert!(
        !verify(&top).status.success(),
        "clerk missed a flipped byte"
    );

    // Logged out: the login page, not the bundle.
    let r = get(port, &format!("{path}/bundle.tar"), None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));

    running.shutdown();
    running.wait().await.unwrap();
}

/// The numbers page draws each day's runs from the journal: its SVG bars carry the same
/// counts `clerk::stats::compute` gives, and the success rate point is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_numbers_page_charts_what_the_journal_says() {
    let world = world("").await;
    add_users(&world);
    let orders = clerk::sample::orders();
    for o in &orders[..2] {
        let r = world
            .run(&playbook("order-lookup"), &[("order_id", &o.id)])
            .await;
        assert_eq!(r.status, RunStatus::Ok, "{:?}", r.error);
    }
    let r = world
        .run(&playbook("order-lookup"), &[("order_id", "SO-999999")])
        .await;
    assert_eq!(r.status, RunStatus::Failed, "{:?}", r.error);
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let audrey = login(port, "audrey").await;
    let r = get(port, "/stats", Some(&audrey)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(r#"<svg id="runs-per-day""#), "{}", r.body);
    let now = chrono::Utc::now();
    let computed = clerk::stats::compute(
        &world.engine.store,
        &clerk::stats::StatsQuery {
            since: now - TimeDelta::days(7),
            until: now + TimeDelta::minutes(1),
            channel: None,
        },
        now,
    )
    .unwrap();
    assert_eq!(computed.overall.runs, 3);
    let today = computed
        .days
        .iter()
        .find(|d| d.runs > 0)
        .expect("a day with runs");
    assert_eq!((today.ok, today.not_ok), (2, 1));
    let bar = format!(
        r#"data-date="{}" data-ok="{}" data-not-ok="{}""#,
        today.date, today.ok, today.not_ok
    );
    assert!(r.body.contains(&bar), "{bar} not in {}", r.body);
    assert!(
        r.body
            .contains(&format!(r#"data-date="{}" data-rate="67""#, today.date)),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("<tr><th>Runs</th><td>3</td></tr>"),
        "{}",
        r.body
    );
    let r = get(port, "/stats?channel=elsewhere", Some(&audrey)).await;
    assert!(
        r.body.contains("<tr><th>Runs</th><td>0</td></tr>"),
        "{}",
        r.body
    );
    running.shutdown();
    running.wait().await.unwrap();
}

/// One channel can be paused and resumed from the status bar: the status bar says which,
/// by whom and why, and offers its Resume form; the auditor gets neither form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_is_paused_and_resumed_from_the_status_bar() {
    let world = world("").await;
    add_users(&world);
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let carol = login(port, "carol").await;
    let r = get(port, "/approvals", Some(&carol)).await;
    assert!(
        r.body.contains(r#"<option value="sample">sample</option>"#),
        "{}",
        r.body
    );
    let token = csrf(&r.body);
    let r = post(
        port,
        "/pause",
        Some(&carol),
        &[
            ("csrf", &token),
            ("channel", "sample"),
            ("reason", "carrier portal down"),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let state = running.daemon.engine.pause.state();
    assert!(state.global.is_none());
    assert_eq!(state.channels.len(), 1);
    let r = get(port, "/runs", Some(&carol)).await;
    assert!(
        r.body.contains("Channel sample paused by carol") && r.body.contains("carrier portal down"),
        "{}",
        r.body
    );
    assert!(r
        .body
        .contains(r#"<input type="hidden" name="channel" value="sample">"#));
    assert!(r.body.contains("Resume sample"));
    let audrey = login(port, "audrey").await;
    let r = get(port, "/runs", Some(&audrey)).await;
    assert!(!r.body.contains("Resume sample") && !r.body.contains("Pause channel"));
    let r = post(
        port,
        "/resume",
        Some(&carol),
        &[("csrf", &token), ("channel", "sample"), ("reason", "back")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(!running.daemon.engine.pause.state().any());
    running.shutdown();
    running.wait().await.unwrap();
}

/// The pages' data as JSON through the API (here with a console session, as a browser
/// script would): approvals (filtered, pending first), one approval, runs (filtered), one
/// run, and "verify now".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_has_its_json_twin() {
    let world = world("").await;
    add_users(&world);
    let id = draft(&world).await;
    let order = &clerk::sample::orders()[4].id;
    let lookup = world
        .run(&playbook("order-lookup"), &[("order_id", order)])
        .await;
    let run_id = lookup.run_id.clone().unwrap();
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let audrey = login(port, "audrey").await;
    let cookie = format!("clerk_session={audrey}");
    let get_json = |path: String| {
        let cookie = cookie.clone();
        async move {
            let r = http(port, "GET", &path, &[("Cookie", cookie.as_str())], None).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            r.json()
        }
    };
    let list = get_json("/api/approvals?channel=sample".into()).await;
    assert_eq!(list[0]["request"]["approval_id"], id.as_str());
    assert_eq!(list[0]["state"], "pending");
    let none = get_json("/api/approvals?channel=elsewhere".into()).await;
    assert_eq!(none.as_array().map(Vec::len), Some(0));
    let one = get_json(format!("/api/approvals/{id}")).await;
    assert_eq!(one["request"]["approval_id"], id.as_str());
    let runs = get_json("/api/runs?playbook=order-lookup".into()).await;
    let ids: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![run_id.as_str()]);
    let run = get_json(format!("/api/runs/{run_id}")).await;
    assert_eq!(run["summary"]["run_id"], run_id.as_str());
    assert_eq!(run["summary"]["status"], "ok");
    let page = get(port, "/approvals", Some(&audrey)).await;
    let token = csrf(&page.body);
    let r = http(
        port,
        "POST",
        &format!("/api/runs/{run_id}/verify"),
        &[
            ("Cookie", cookie.as_str()),
            ("x-clerk-csrf", token.as_str()),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["intact"], true);
    running.shutdown();
    running.wait().await.unwrap();
}
