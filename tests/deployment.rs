//! What a real deployment hits (issue 15): the daemon started from `/` as a service manager
//! starts it, the CLI run from any directory, playbooks edited after an approval, failures
//! that must name what was searched and why, and decisions that need the reviewer's own
//! credential. Real Chromium, the real `clerk` binary, the sample seller center.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::evidence::Event;
use clerk::playbook::Playbook;
use clerk::runner::RunStatus;

use crate::common::{clerk_bin, playbook, Daemon, World};

const PIN: &str = "73914628";

/// The shipped refund playbook, renamed: its file name is not its name, and no playbook of
/// that name is compiled into clerk, so nothing can find it by name.
fn renamed_refund(world: &World) -> (PathBuf, Arc<Playbook>) {
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/refund-draft.yaml"),
    )
    .unwrap()
    .replace("name: refund-draft", "name: sa-refund");
    let dir = world.data_dir().join("drafts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("my-refund-v2.yaml");
    std::fs::write(&path, yaml).unwrap();
    let pb =
        clerk::playbook::load(&path, Some(&world.engine.config)).unwrap_or_else(|d| panic!("{d}"));
    (path, Arc::new(pb))
}

fn delivered(nth: usize) -> String {
    clerk::sample::orders()
        .iter()
        .filter(|o| o.status == "delivered" && o.total_cents >= 300)
        .nth(nth)
        .unwrap()
        .id
        .clone()
}

async fn draft(world: &World, pb: &Arc<Playbook>, order: &str) -> String {
    let r = world
        .run_as(
            pb,
            &[
                ("order_id", order),
                ("amount", "1.00"),
                ("reason", "wrong_item"),
                ("note", "deployment test"),
                ("supervisor_pin", PIN),
            ],
            "ops",
            None,
        )
        .await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    r.approval_id.expect("an approval request")
}

/// The real `clerk` on the world's data directory, from `cwd`, with `env`.
fn clerk_in(world: &World, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(clerk_bin())
        .current_dir(cwd)
        .arg("--data-dir")
        .arg(world.data_dir())
        .args(args)
        .env_remove("CLERK_TOKEN")
        .env_remove("CLERK_TOKEN_FILE")
        .env_remove("CLERK_SECRET_SUPERVISOR_PIN")
        .env("HOME", world.data_dir())
        .envs(env.iter().copied())
        .output()
        .expect("clerk runs")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn accepted_refunds(world: &World) -> usize {
    world.center.refunds().iter().filter(|r| r.accepted).count()
}

/// The approved submit runs the exact approved playbook text, wherever clerk runs from:
/// a daemon started from `/` submits an approval decided through it; `clerk submit` from
/// another directory runs the stored text; a playbook edited after the approval is refused
/// with both hashes named and nothing sent, and the approved text is still what a plain
/// `clerk submit` sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_submit_runs_the_approved_text_wherever_clerk_starts() {
    let world = World::new().await;
    let (path, pb) = renamed_refund(&world);
    let a = draft(&world, &pb, &delivered(0)).await;

    // The stored text is the file's bytes, under the hash the run recorded.
    let stored = world
        .data_dir()
        .join("playbook-texts")
        .join(format!("{}.yaml", pb.sha256));
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(&path).unwrap()
    );

    // A daemon started from `/`, as the README's systemd unit starts it.
    let daemon = Daemon::spawn_in(
        world.data_dir(),
        Some(Path::new("/")),
        &[("CLERK_SECRET_SUPERVISOR_PIN", PIN)],
    );
    daemon.ready(world.data_dir()).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let out = clerk_in(
        &world,
        elsewhere.path(),
        &["--as", "carol", "approve", &a],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("its submit is queued as job"),
        "{}",
        text(&out)
    );
    let t = Instant::now();
    while accepted_refunds(&world) < 1 {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "the approved submit never reached the seller center; journal: {:#?}",
            world
                .engine
                .store
                .records()
                .unwrap()
                .iter()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
    assert_eq!(world.center.refunds().len(), 1);

    // No daemon: approved directly, then the playbook file is edited.
    let b = draft(&world, &pb, &delivered(1)).await;
    clerk::approval::decide(&world.engine, &b, "carol", true, None).expect("carol approves");
    let mut edited = std::fs::read_to_string(&path).unwrap();
    edited.push_str("# tweaked after review\n");
    std::fs::write(&path, &edited).unwrap();
    let edited_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(edited.as_bytes()));
    let out = clerk_in(
        &world,
        elsewhere.path(),
        &[
            "--as",
            "ops",
            "submit",
            &b,
            "--playbook",
            path.to_str().unwrap(),
        ],
        &[("CLERK_SECRET_SUPERVISOR_PIN", PIN)],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&pb.sha256) && said.contains(&edited_sha),
        "both hashes are named: {said}"
    );
    assert!(said.contains("draft again"), "{said}");
    assert_eq!(world.center.refunds().len(), 1, "nothing was sent");

    // `clerk submit` from `/`, without --playbook: the approved text, not the edited file.
    let out = clerk_in(
        &world,
        Path::new("/"),
        &["--as", "ops", "submit", &b],
        &[("CLERK_SECRET_SUPERVISOR_PIN", PIN)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(accepted_refunds(&world), 2);
    let submit_runs: Vec<String> = world
        .engine
        .store
        .records()
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::RunStarted {
                approval_id: Some(_),
                playbook_sha256,
                ..
            } => Some(playbook_sha256),
            _ => None,
        })
        .collect();
    assert_eq!(submit_runs, vec![pb.sha256.clone(), pb.sha256.clone()]);
}

/// A failing step says what was searched (the rendered locator, secrets masked), tells a
/// missing attribute from a missing element, and an unreachable seller center from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_the_rendered_locator_the_attribute_and_an_unreachable_center() {
    let world = World::new().await;
    let order = delivered(0);
    let yaml = "name: probe\nversion: \"1\"\ndescription: probe\nchannel: sample\nmode: read_only\n\
         inputs:\n  order_id: { type: string }\n  token: { type: string, secret: true, required: false }\n\
         steps:\n  - goto: /orders/{{order_id}}\n  - wait_for: { selector: \"h1\" }\n  - {STEP}\n"
        .to_owned();
    let run = |step: &str, inputs: Vec<(&'static str, String)>| {
        let pb = world.playbook_from("probe", &yaml.replace("{STEP}", step));
        let world = &world;
        async move {
            let inputs: Vec<(&str, &str)> = inputs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            world.run_as(&pb, &inputs, "ops", None).await
        }
    };

    // The locator as searched, not as templated.
    let r = run(
        "wait_for: { selector: \"[data-missing='{{order_id}}']\" }\n    timeout: 1s",
        vec![("order_id", order.clone())],
    )
    .await;
    let err = r.error.clone().unwrap_or_default();
    assert_eq!(r.status, RunStatus::Failed, "{err}");
    assert!(err.contains(&format!("[data-missing='{order}']")), "{err}");
    assert!(!err.contains("{{"), "{err}");

    // A secret in a locator is masked in the message.
    let r = run(
        "wait_for: { text: \"code {{token}}\" }\n    timeout: 1s",
        vec![
            ("order_id", order.clone()),
            ("token", "s3cr3t-v4lue".into()),
        ],
    )
    .await;
    let err = r.error.clone().unwrap_or_default();
    assert!(err.contains("code <secret>"), "{err}");
    assert!(!err.contains("s3cr3t-v4lue"), "{err}");

    // The element exists, the attribute does not.
    let r = run(
        "extract: { field: x, selector: \"h1\", from: attribute, attribute: data-nope }",
        vec![("order_id", order.clone())],
    )
    .await;
    let err = r.error.clone().unwrap_or_default();
    assert_eq!(r.status, RunStatus::Failed, "{err}");
    assert!(err.contains("h1 has no attribute `data-nope`"), "{err}");
    assert!(!err.contains("element not found"), "{err}");
    assert!(!r.transient, "a missing attribute is not worth a retry");

    // The seller center goes away mid-run (behind a proxy the test cuts): the step's failure
    // says it is unreachable and the run is transient (the queue retries it).
    let proxy = crate::common::proxy::Proxy::start(world.center.port()).await;
    let engine = proxied_engine(&world, proxy.port());
    let path = engine.data_dir.join("probe.yaml");
    std::fs::write(
        &path,
        yaml.replace(
            "{STEP}",
            "wait_for: { selector: \"#never-there\" }\n    timeout: 6s",
        ),
    )
    .unwrap();
    let pb = Arc::new(
        clerk::playbook::load(&path, Some(&engine.config)).unwrap_or_else(|d| panic!("{d}")),
    );
    // Cut once the order page came through the proxy (a fixed delay would race the
    // browser's launch and the session check on a loaded machine).
    let through_proxy = format!("127.0.0.1:{}", proxy.port());
    let order_path = format!("/orders/{order}");
    let cutter = async {
        let t0 = std::time::Instant::now();
        while !world
            .center
            .requests()
            .iter()
            .any(|q| q.host == through_proxy && q.path == order_path)
            && t0.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.cut_after(Duration::ZERO).await.unwrap();
    };
    let (r, ()) = tokio::join!(
        engine.run(clerk::runner::RunRequest {
            playbook: pb,
            inputs: crate::common::inputs(&[("order_id", &order)]),
            operator: "ops".into(),
            case_ref: None,
            batch_id: None,
            approval: None,
            claims: Default::default(),
            replay_of: None,
            rollback_of: None,
            offline: None,
            sample: false,
        }),
        cutter
    );
    let r = r.unwrap();
    engine.shutdown().await;
    let err = r.error.clone().unwrap_or_default();
    assert_eq!(r.status, RunStatus::Failed, "{err}");
    assert!(err.contains("the seller center is unreachable"), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", proxy.port())),
        "{err}"
    );
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(r.transient, "an unreachable seller center is worth a retry");
}

/// An engine on its own data directory whose channel reaches the sample seller center
/// through the proxy on `port` (the session's cookies are the host's, whatever the port).
fn proxied_engine(world: &World, port: u16) -> clerk::runner::Engine {
    let dir = world.data_dir().join("proxied");
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("clerk.toml");
    std::fs::write(&config_path, clerk::sample::demo_config(port, "ops")).unwrap();
    let config = clerk::channel::Config::load(&config_path).unwrap();
    world
        .center
        .storage_state("ops", Duration::from_secs(3600))
        .save(&config.channel("sample").unwrap().session_path(&dir))
        .unwrap();
    let store = clerk::evidence::Store::open(&dir).unwrap();
    clerk::runner::Engine::new(dir, config, store, world.engine.launch.clone())
}

/// A form whose page validates on the client sends nothing: the draft's submit step fails
/// (it is not `ok`), the page after the click is evidence, the message is the page's own,
/// and the run ends long before the step's timeout. An approved submit the page then
/// refuses is refused the same way, with zero writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_the_page_refuses_fails_at_once_with_the_page_after_the_click() {
    let world = World::new().await;
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/spa-refund.yaml"),
    )
    .unwrap();
    // The submit step may wait a minute for its write; it must not need to.
    let yaml = yaml.replacen("    submit:", "    timeout: 60s\n    submit:", 1);
    let pb = world.playbook_from("spa-refund-60s", &yaml);
    let order = clerk::sample::orders()
        .iter()
        .find(|o| o.total_cents > 10_000)
        .unwrap()
        .id
        .clone();
    let inputs = [
        ("order_id", order.as_str()),
        ("amount", "12.50"),
        ("reason", "Item damaged"),
        ("method", "original_payment"),
        ("note", "crushed"),
    ];
    const MSG: &str = "Refund amount must be at most 7.39";
    let submit_step = pb
        .steps
        .iter()
        .find(|s| s.action.kind() == "submit")
        .unwrap()
        .index as u64;
    let check = |r: &clerk::runner::RunReport, what: &str| {
        let err = r.error.clone().unwrap_or_default();
        assert!(
            err.contains("sent no write") && err.contains(MSG),
            "{what}: {err}"
        );
        assert!(
            r.duration_ms < 30_000,
            "{what}: waited {} ms",
            r.duration_ms
        );
        let records = world.records(r.run_id.as_deref().unwrap());
        let step_outcome = records.iter().find_map(|rec| match &rec.event {
            Event::StepFinished { step, outcome, .. } if *step == submit_step => {
                Some(outcome.clone())
            }
            _ => None,
        });
        assert_ne!(step_outcome.as_deref(), Some("ok"), "{what}: {records:#?}");
        assert!(
            step_outcome.is_some(),
            "{what}: the submit step is recorded"
        );
        let after = records.iter().any(|rec| {
            matches!(&rec.event, Event::EvidenceCaptured { name, .. } if name == "after-submit-click")
        });
        assert!(after, "{what}: no screenshot after the click: {records:#?}");
    };

    // Draft: the page refuses at once.
    world.center.set_spa_client_error(Some(MSG));
    let r = world.run_as(&pb, &inputs, "ops", None).await;
    world.center.set_spa_client_error(None);
    assert_eq!(r.status, RunStatus::Failed, "{:?}", r.error);
    assert!(r.approval_id.is_none());
    check(&r, "draft");

    // An approved submit the page then refuses.
    let r = world.run_as(&pb, &inputs, "ops", None).await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    let id = r.approval_id.unwrap();
    clerk::approval::decide(&world.engine, &id, "carol", true, None).unwrap();
    world.center.clear_log();
    world.center.set_spa_client_error(Some(MSG));
    let r = world.run_as(&pb, &inputs, "ops", Some(&id)).await;
    world.center.set_spa_client_error(None);
    assert_eq!(r.status, RunStatus::Refused, "{:?}", r.error);
    check(&r, "submit");
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    assert!(world.center.spa_refunds().is_empty());
}

/// A login the page rejects ends at the page's failure text, not at the next step's
/// timeout; a login whose secret is not in the environment is refused before a browser is
/// started, naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_login_ends_at_the_pages_text_and_missing_secrets_are_named_first() {
    let world = World::new().await;
    let yaml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/login.yaml"))
            .unwrap()
            .replace("timeout: 15s", "timeout: 60s");
    let path = world.data_dir().join("login-60s.yaml");
    std::fs::write(&path, yaml).unwrap();
    let login = |env: &[(&str, &str)]| {
        clerk_in(
            &world,
            world.data_dir(),
            &[
                "--as",
                "ops",
                "login",
                "sample",
                "--playbook",
                path.to_str().unwrap(),
            ],
            env,
        )
    };
    let t = Instant::now();
    let out = tokio::task::block_in_place(|| {
        login(&[
            ("SAMPLE_USER", "ops"),
            ("SAMPLE_PASSWORD", "not-the-password"),
        ])
    });
    let took = t.elapsed();
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("Wrong user name or password."), "{said}");
    assert!(took < Duration::from_secs(45), "waited {took:?}: {said}");

    let before = world.engine.store.records().unwrap().len();
    let out = tokio::task::block_in_place(|| {
        Command::new(clerk_bin())
            .arg("--data-dir")
            .arg(world.data_dir())
            .args([
                "--as",
                "ops",
                "login",
                "sample",
                "--playbook",
                path.to_str().unwrap(),
            ])
            .env("SAMPLE_USER", "ops")
            .env_remove("SAMPLE_PASSWORD")
            .output()
            .unwrap()
    });
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("SAMPLE_PASSWORD"), "{said}");
    let after = world.engine.store.records().unwrap();
    let new: Vec<&Event> = after[before..].iter().map(|r| &r.event).collect();
    assert!(
        new.iter().any(
            |e| matches!(e, Event::Refused { reason, .. } if reason.contains("SAMPLE_PASSWORD"))
        ),
        "{new:#?}"
    );
    assert!(
        !new.iter().any(|e| matches!(e, Event::RunStarted { .. })),
        "no run (and no browser) was started: {new:#?}"
    );
}

/// With named users, a decision needs the reviewer's own token: `--as` alone is refused
/// and recorded, directly and through the daemon's instance token; carol's own token works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_needs_the_reviewers_own_credential_when_users_are_declared() {
    let world = crate::console::world("").await;
    crate::console::add_users(&world);
    let pb = playbook("refund-draft");
    let a = draft(&world, &pb, &delivered(0)).await;
    let here = world.data_dir().to_owned();

    // Direct mode, a name only.
    let out = clerk_in(&world, &here, &["--as", "carol", "approve", &a], &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("own API token"), "{said}");
    let refused = crate::console::refusals(&world, "carol");
    assert!(
        refused.iter().any(|(action, _)| action == "approve"),
        "{refused:?}"
    );
    assert_eq!(
        clerk::approval::load(&world.engine, &a).unwrap().state,
        clerk::approval::ApprovalState::Pending
    );

    // Through the daemon with only the instance token (what `--as` without CLERK_TOKEN uses).
    let daemon = Daemon::spawn(world.data_dir());
    daemon.ready(world.data_dir()).await;
    let out = tokio::task::block_in_place(|| {
        clerk_in(&world, &here, &["--as", "carol", "approve", &a], &[])
    });
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("own credential"), "{said}");
    assert!(
        crate::console::refusals(&world, "carol").len() >= 2,
        "the daemon recorded its refusal too"
    );
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());

    // Carol's own token decides, as carol; naming someone else with it is refused.
    let token = clerk::users::create_token(
        world.data_dir(),
        &world.engine.config,
        "carol",
        "2026-01-01T00:00:00.000Z",
    )
    .unwrap();
    let out = clerk_in(
        &world,
        &here,
        &["--as", "ops", "approve", &a],
        &[("CLERK_TOKEN", &token)],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = clerk_in(&world, &here, &["approve", &a], &[("CLERK_TOKEN", &token)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let decided = clerk::approval::load(&world.engine, &a).unwrap();
    assert_eq!(decided.state, clerk::approval::ApprovalState::Approved);
    assert_eq!(decided.decision.unwrap().reviewer, "carol");

    // Enabling a suspended auto-approval policy is a decision too: a name alone is refused
    // and recorded before anything else is looked at.
    let out = clerk_in(
        &world,
        &here,
        &[
            "--as",
            "carol",
            "policy",
            "enable",
            "any",
            "--channel",
            "sample",
        ],
        &[],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains("policy_enable needs the user's own API token"),
        "{said}"
    );
    assert!(
        crate::console::refusals(&world, "carol")
            .iter()
            .any(|(action, _)| action == "policy_enable"),
        "the refusal is recorded"
    );
}
