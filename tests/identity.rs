//! Proven identity with the daemon: per-user API tokens (made and revoked by the real
//! `clerk user token`, sent by the real CLI), the console's session on the API, roles given
//! by `clerk user add --role`, and console sessions that survive a daemon restart.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::http::{http, Resp};
use crate::common::{clerk_bin, playbook, World};
use crate::console::{
    add_users, get, login, password, refusals, start, try_login, world, TestClock,
};
use clerk::approval::ApprovalState;
use clerk::evidence::Event;
use clerk::runner::RunStatus;

fn clerk(
    world: &World,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> std::process::Output {
    let mut cmd = Command::new(clerk_bin());
    cmd.arg("--data-dir")
        .arg(world.data_dir())
        .args(args)
        .env_remove("CLERK_TOKEN")
        .env_remove("CLERK_TOKEN_FILE")
        .env("HOME", world.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

async fn api(
    port: u16,
    method: &str,
    path: &str,
    auth: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    let body = body.map(|b| b.to_string());
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(auth);
    http(port, method, path, &headers, body.as_deref()).await
}

async fn draft(world: &World) -> String {
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.status == "delivered" && o.total_cents >= 300)
        .unwrap();
    let r = world
        .run_as(
            &playbook("refund-draft"),
            &[
                ("order_id", order.id.as_str()),
                ("amount", "1.00"),
                ("reason", "wrong_item"),
                ("note", "identity test"),
                ("supervisor_pin", "73914628"),
            ],
            "ops",
            None,
        )
        .await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    r.approval_id.unwrap()
}

/// A token acts as its user and only as them: decisions and pauses are recorded under the
/// token's user, naming someone else is refused and recorded, a revoked or unknown token
/// is refused at once (no restart); the CLI sends the token and a different `--as` is
/// refused by the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_acts_as_its_user_and_only_as_them() {
    // `[serve] submit_on_approve = false`: this test is about who decides, not the submit.
    let world = world("\n[serve]\nsubmit_on_approve = false\n").await;
    add_users(&world);
    let id = draft(&world).await;
    let out = clerk(&world, &["user", "token", "mallory"], &[], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a token for someone without a role"
    );
    let out = clerk(&world, &["user", "token", "carol"], &[], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("clerk_"), "{token}");
    let stored = std::fs::read_to_string(clerk::users::tokens_path(world.data_dir())).unwrap();
    assert!(
        !stored.contains(&token[6..]),
        "the token is stored in clear"
    );

    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let bearer = format!("Bearer {token}");
    let carol = [("Authorization", bearer.as_str())];
    let decide = format!("/api/approvals/{id}/decide");

    // No credentials, or a made-up token: 401.
    let r = api(port, "GET", "/api/status", &[], None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = api(
        port,
        "GET",
        "/api/status",
        &[("Authorization", "Bearer clerk_00")],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Carol's token naming ops: refused and recorded under carol, naming ops.
    let r = api(
        port,
        "POST",
        &decide,
        &carol,
        Some(json!({ "user": "ops", "approve": true })),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let refused = refusals(&world, "carol");
    assert!(
        refused
            .iter()
            .any(|(a, why)| a == "approve" && why.contains("`ops`")),
        "{refused:?}"
    );
    let a = clerk::approval::load(&running.daemon.engine, &id).unwrap();
    assert_eq!(a.state, ApprovalState::Pending);

    // The token alone: carol decides.
    let r = api(
        port,
        "POST",
        &decide,
        &carol,
        Some(json!({ "approve": true, "note": "by token" })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = clerk::approval::load(&running.daemon.engine, &id).unwrap();
    assert_eq!(a.decision.unwrap().reviewer, "carol");

    // The CLI with CLERK_TOKEN: a pause recorded as carol without --as; with --as ops,
    // refused by the daemon.
    let env = [("CLERK_TOKEN", token.as_str())];
    let out = clerk(&world, &["pause", "--reason", "token pause"], &env, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("through clerk serve"), "{err}");
    let paused = running.daemon.engine.pause.state().global.expect("paused");
    assert_eq!(paused.user, "carol");
    let out = clerk(
        &world,
        &["--as", "ops", "resume", "--reason", "x"],
        &env,
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(running.daemon.engine.pause.state().global.is_some());
    // The same token from a file.
    let file = world.data_dir().join("carol.token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let out = clerk(
        &world,
        &["resume", "--reason", "from the file"],
        &[("CLERK_TOKEN_FILE", file.to_str().unwrap())],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(running.daemon.engine.pause.state().global.is_none());
    let resumed = world
        .engine
        .store
        .records()
        .unwrap()
        .into_iter()
        .rev()
        .find_map(|r| match r.event {
            Event::Pause {
                on: false, user, ..
            } => Some(user),
            _ => None,
        });
    assert_eq!(resumed.as_deref(), Some("carol"));

    // Revoked: refused at once, without a restart.
    let out = clerk(&world, &["user", "token", "carol", "--revoke"], &[], None);
    assert!(out.status.success());
    let r = api(port, "GET", "/api/status", &carol, None).await;
    assert_eq!(r.status, 401, "{}", r.body);

    running.shutdown();
    running.wait().await.unwrap();
}

/// The console's session works on the API (a POST needs its CSRF token too); a user made
/// with `clerk user add --role auditor` logs in with that role; sessions survive a daemon
/// restart, and so does a logout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_work_on_the_api_survive_restarts_and_user_add_sets_roles() {
    let world = world("").await;
    add_users(&world);
    let out = clerk(
        &world,
        &["user", "add", "dave", "--role", "auditor"],
        &[],
        Some(&format!("{}\n", password("dave"))),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = clerk(
        &world,
        &["user", "add", "carol", "--role", "admin"],
        &[],
        Some(&format!("{}\n", password("carol"))),
    );
    assert_eq!(out.status.code(), Some(2), "the config's role wins");

    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let dave = login(port, "dave").await;
    let r = get(port, "/approvals", Some(&dave)).await;
    assert!(r.body.contains("dave (auditor)"), "{}", r.body);
    let carol = login(port, "carol").await;
    let carol_page = get(port, "/approvals", Some(&carol)).await;
    let carol_csrf = crate::console::csrf(&carol_page.body);

    // The session on the API: GET as is, a POST only with the CSRF header.
    let cookie = format!("clerk_session={carol}");
    let r = api(
        port,
        "GET",
        "/api/status",
        &[("Cookie", cookie.as_str())],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pause = json!({ "reason": "via the session" });
    let r = api(
        port,
        "POST",
        "/api/pause",
        &[("Cookie", cookie.as_str())],
        Some(pause.clone()),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(running.daemon.engine.pause.state().global.is_none());
    let r = api(
        port,
        "POST",
        "/api/pause",
        &[
            ("Cookie", cookie.as_str()),
            ("x-clerk-csrf", carol_csrf.as_str()),
        ],
        Some(pause),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        running.daemon.engine.pause.state().global.unwrap().user,
        "carol"
    );

    // dave logs out; the daemon restarts: carol is still logged in, dave is not.
    let dave_page = get(port, "/approvals", Some(&dave)).await;
    let dave_csrf = crate::console::csrf(&dave_page.body);
    let r = crate::console::post(port, "/logout", Some(&dave), &[("csrf", &dave_csrf)]).await;
    assert_eq!(r.status, 303);
    running.shutdown();
    running.wait().await.unwrap();
    let stored = std::fs::read_to_string(world.data_dir().join("users/sessions.json")).unwrap();
    assert!(!stored.contains(&carol), "a session id stored in clear");
    let running = start(&world, &clock).await;
    let port = running.addr.port();
    let r = get(port, "/approvals", Some(&carol)).await;
    assert_eq!(r.status, 200, "carol was logged out by the restart");
    assert!(r.body.contains("carol (reviewer)"));
    let r = get(port, "/approvals", Some(&dave)).await;
    assert_eq!(r.status, 303, "a logout did not survive the restart");
    let r = try_login(port, "dave", "not the password").await;
    assert_eq!(r.status, 401);
    running.shutdown();
    running.wait().await.unwrap();
}
