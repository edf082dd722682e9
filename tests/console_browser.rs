//! The reviewer console driven by real headless Chromium, as a reviewer, a requester and an
//! auditor use it: typing into the login form, clicking links and buttons, with the sample
//! seller center's single-page app behind the daemon. The draft is the shipped `spa-refund`
//! (a form sent by `fetch` as JSON); the approval queues its submit, which the daemon runs.
//!
//! The browser here is a plain Chromium (clerk's launch switches, no guard): it plays the
//! reviewer's own browser, which must be able to POST to the console.

use std::path::PathBuf;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use futures::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::common::{playbook, World};
use crate::console::{add_users, password, refusals, start, world, TestClock};
use clerk::approval::ApprovalState;
use clerk::browser::{ChromiumProcess, LaunchOptions};
use clerk::queue::{JobFilter, JobState};
use clerk::runner::RunStatus;

const NOTE: &str = "<script>document.title='owned'</script> box crushed";

/// A reviewer's browser: a Chromium process (killed when dropped) and one page.
struct Reviewer {
    page: Page,
    base: String,
    _browser: chromiumoxide::Browser,
    _handler: tokio::task::JoinHandle<()>,
    _process: ChromiumProcess,
}

impl Reviewer {
    async fn launch(port: u16) -> Reviewer {
        let opts = LaunchOptions::detect().expect("chromium is installed");
        let (process, ws) = {
            let (exe, args) = (opts.executable.clone(), opts.args());
            tokio::task::spawn_blocking(move || {
                ChromiumProcess::spawn(&exe, &args, Duration::from_secs(30))
            })
            .await
            .unwrap()
            .expect("chromium starts")
        };
        let (browser, mut handler) = chromiumoxide::Browser::connect(ws).await.unwrap();
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        let page = browser.new_page("about:blank").await.unwrap();
        let r = Reviewer {
            page,
            base: format!("http://127.0.0.1:{port}"),
            _browser: browser,
            _handler: handler,
            _process: process,
        };
        r.viewport(1280, 800).await;
        r
    }

    async fn viewport(&self, width: i64, height: i64) {
        self.page
            .execute(SetDeviceMetricsOverrideParams::new(
                width, height, 1.0, false,
            ))
            .await
            .unwrap();
    }

    async fn open(&self, path: &str) {
        self.page
            .goto(format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    async fn js<T: DeserializeOwned>(&self, expr: &str) -> T {
        self.page
            .evaluate(expr)
            .await
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .into_value()
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    /// Waits (up to 60 s, a hang guard, not a measure) until `expr` is true in the page.
    async fn until(&self, expr: &str) {
        for _ in 0..600 {
            let ok = matches!(
                self.page
                    .evaluate(expr)
                    .await
                    .map(|v| v.into_value::<bool>()),
                Ok(Ok(true))
            );
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never true: {expr}; page: {}", self.text().await);
    }

    async fn text(&self) -> String {
        self.js("document.body ? document.body.innerText : ''")
            .await
    }

    async fn path(&self) -> String {
        self.js("location.pathname").await
    }

    async fn type_into(&self, selector: &str, text: &str) {
        self.page
            .find_element(selector)
            .await
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
            .click()
            .await
            .unwrap()
            .type_str(text)
            .await
            .unwrap();
    }

    /// Clicks and waits for the page at `path_after` (a new document) to be loaded.
    async fn click_to(&self, selector: &str, path_after: &str) {
        self.js::<bool>("window.__before = true; true").await;
        self.page
            .find_element(selector)
            .await
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
            .click()
            .await
            .unwrap();
        self.until(&format!(
            "!window.__before && location.pathname === {path_after:?} && document.readyState === 'complete'"
        ))
        .await;
    }

    async fn has(&self, selector: &str) -> bool {
        self.js(&format!("document.querySelector({selector:?}) !== null"))
            .await
    }

    /// Logs in through the form, as a person would.
    async fn login(&self, user: &str) {
        self.open("/login").await;
        self.type_into("input[name=user]", user).await;
        self.type_into("input[name=password]", &password(user))
            .await;
        self.click_to("form[action='/login'] button[type=submit]", "/approvals")
            .await;
        let who: String = self.js("document.querySelector('.who').textContent").await;
        assert!(who.starts_with(user), "{who}");
    }

    async fn logout(&self) {
        self.click_to("form.logout button", "/login").await;
    }

    /// POSTs a form from the page (a forged request: fetch, with the page's cookie) and
    /// returns the status.
    async fn forge(&self, path: &str, fields: &[(&str, &str)]) -> u16 {
        let body = serde_json::to_string(&fields.to_vec()).unwrap();
        self.js(&format!(
            "fetch({path:?}, {{method: 'POST', body: new URLSearchParams({body}), redirect: 'manual'}}).then(r => r.status)"
        ))
        .await
    }

    async fn csrf(&self) -> String {
        self.js("document.querySelector('input[name=csrf]').value")
            .await
    }

    /// A PNG of the page at `width`×`height`, kept under the test's target directory.
    async fn snapshot(&self, name: &str, width: i64, height: i64) -> PathBuf {
        self.viewport(width, height).await;
        let png = self
            .page
            .screenshot(ScreenshotParams::builder().full_page(true).build())
            .await
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-pages");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{width}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// Width and height of a PNG file (its IHDR).
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[1..4], b"PNG");
    let n = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (n(16), n(20))
}

/// Drafts the shipped SPA refund as `ops`: nothing reaches the seller center; returns the
/// approval id.
async fn spa_draft(world: &World, order: &str, amount: &str) -> String {
    world.center.clear_log();
    let r = world
        .run_as(
            &playbook("spa-refund"),
            &[
                ("order_id", order),
                ("amount", amount),
                ("reason", "Item damaged"),
                ("method", "store_credit"),
                ("note", NOTE),
            ],
            "ops",
            None,
        )
        .await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );
    assert!(world.center.spa_refunds().is_empty());
    r.approval_id.expect("an approval request")
}

fn big_orders() -> Vec<&'static clerk::sample::Order> {
    clerk::sample::orders()
        .iter()
        .filter(|o| o.total_cents > 10_000)
        .take(2)
        .collect()
}

/// A reviewer logs in, opens the pending SPA refund draft, sees the filled form's
/// screenshot, the values and the held JSON body, and approves it; the daemon then sends
/// the submit, which reaches the seller center exactly once with those values, and the
/// approval page links to the submit run and its result screenshot. The page stays usable
/// (no sideways scrolling) at a phone's width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_the_spa_refund_in_chromium_and_it_is_sent_once() {
    let world = world("").await;
    add_users(&world);
    let order = big_orders()[0].id.clone();
    let id = spa_draft(&world, &order, "12.50").await;
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let approval = clerk::approval::load(&running.daemon.engine, &id).unwrap();
    let held = approval.request.held.clone().expect("the held write");
    let clerk::write::Body::Json { value: held_body } = &held.body else {
        panic!("not JSON: {:?}", held.body)
    };
    let draft_png = std::fs::read(
        world
            .engine
            .store
            .screenshot_path(approval.request.screenshot_sha256.as_deref().unwrap()),
    )
    .unwrap();

    let carol = Reviewer::launch(running.addr.port()).await;
    carol.login("carol").await;
    let title: String = carol.js("document.title").await;
    assert!(title.contains("(1 pending)"), "{title}");
    // At a desktop's width no header, state or id is broken in the middle of a word (an
    // inline box broken across lines has more than one client rectangle).
    carol.snapshot("approvals", 1280, 800).await;
    let broken: Vec<String> = carol
        .js("[...document.querySelectorAll('th, .state, td a, .expires')].filter(e => [...e.childNodes].some(n => n.nodeType === 3) && (() => { const r = document.createRange(); r.selectNodeContents(e); return r.getClientRects().length > 1 && !/\\s/.test(e.textContent.trim()); })()).map(e => e.textContent)")
        .await;
    assert!(broken.is_empty(), "broken mid-word at 1280 px: {broken:?}");
    carol
        .click_to(
            &format!("a[href='/approvals/{id}']"),
            &format!("/approvals/{id}"),
        )
        .await;

    // The filled form's screenshot is displayed (served to the logged-in reviewer, decoded
    // by the browser at the evidence's own size).
    carol
        .until("(() => { const i = document.querySelector('section.shot img'); return !!i && i.complete && i.naturalWidth > 0; })()")
        .await;
    let shown: (u32, u32) = carol
        .js("(() => { const i = document.querySelector('section.shot img'); return [i.naturalWidth, i.naturalHeight]; })()")
        .await;
    assert_eq!(shown, png_size(&draft_png));

    // The values and the held JSON body, the note as text (no script ran, none was added).
    let values: String = carol
        .js("document.querySelector('table.values').innerText")
        .await;
    // Typed as the page sends them: strings in quotes, with their type.
    for line in [
        "amount\t\"12.50\" (string)",
        "reason\t\"damaged\" (string)",
        "method\t\"store_credit\" (string)",
        "notify\ttrue (boolean)",
    ] {
        assert!(values.contains(line), "{line:?} not in {values}");
    }
    assert!(
        values.contains("requestId") && values.contains("not compared"),
        "{values}"
    );
    let inputs: String = carol
        .js("document.querySelector('table.inputs').innerText")
        .await;
    assert!(inputs.contains(&format!("order_id\t{order}")), "{inputs}");
    let body: String = carol
        .js("document.querySelector('pre.body').innerText")
        .await;
    let shown_json: serde_json::Value = serde_json::from_str(&body).expect("the body is JSON");
    assert_eq!(&shown_json, held_body);
    assert_eq!(shown_json["amount"], "12.50");
    assert_eq!(shown_json["note"], NOTE);
    assert!(carol.text().await.contains(NOTE));
    let title: String = carol.js("document.title").await;
    assert_ne!(title, "owned");
    let inline: usize = carol
        .js("[...document.scripts].filter(s => !s.src).length")
        .await;
    assert_eq!(inline, 0, "an inline script in the page");

    // The expiry counts down (the console's own script, allowed by its CSP).
    carol
        .until("document.querySelector('.countdown[data-expires]').dataset.ticking === 'yes'")
        .await;
    let left: String = carol
        .js("document.querySelector('.countdown').textContent")
        .await;
    // Hours and minutes while more than an hour is left (no ticking seconds).
    assert!(left.starts_with("in ") && left.ends_with(" min"), "{left}");
    assert!(!left.contains(" s"), "{left}");

    // At a desktop's and a phone's width: the decision controls are on the page and nothing
    // scrolls sideways.
    for (w, h) in [(1280, 800), (390, 844)] {
        let shot = carol.snapshot("approval", w, h).await;
        assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
        let overflow: i64 = carol
            .js("document.documentElement.scrollWidth - window.innerWidth")
            .await;
        assert!(overflow <= 0, "{overflow} px sideways at {w} px wide");
        let button: f64 = carol
            .js("document.querySelector('button[value=approve]').getBoundingClientRect().width")
            .await;
        assert!(button > 0.0, "no Approve button at {w} px");
    }
    carol.viewport(1280, 800).await;

    // Approve, with a note.
    carol
        .type_into("textarea[name=note]", "amount matches the photos")
        .await;
    carol
        .click_to("button[value=approve]", &format!("/approvals/{id}"))
        .await;
    let text = carol.text().await;
    assert!(text.contains("approved by carol"), "{text}");
    assert!(text.contains("amount matches the photos"), "{text}");

    // The daemon runs the submit (as the requester); wait for the approval to be spent.
    let mut used = None;
    for _ in 0..600 {
        let a = clerk::approval::load(&running.daemon.engine, &id).unwrap();
        if a.state == ApprovalState::Used {
            used = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let used = used.expect("the approval was used by a submit run");
    let submit_run = used.used_by_run.clone().expect("the submit run");
    let jobs = running.daemon.queue.list(&JobFilter::default()).unwrap();
    let submit_jobs: Vec<_> = jobs
        .iter()
        .filter(|j| j.spec.approval_id.as_deref() == Some(id.as_str()))
        .collect();
    assert_eq!(submit_jobs.len(), 1, "{submit_jobs:?}");
    assert_eq!(submit_jobs[0].spec.operator, "ops");
    for _ in 0..600 {
        let j = running
            .daemon
            .queue
            .get(submit_jobs[0].id)
            .unwrap()
            .unwrap();
        if j.state == JobState::Done {
            break;
        }
        assert!(
            matches!(j.state, JobState::Queued | JobState::Claimed),
            "{:?}: {:?}",
            j.state,
            j.last_error
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Exactly one write reached the seller center: the refund, with the reviewed values.
    let refunds = world.center.spa_refunds();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert!(refunds[0].accepted, "{:?}", refunds[0].rejection);
    for key in ["amount", "reason", "method", "note", "notify", "date"] {
        assert_eq!(refunds[0].body[key], held_body[key], "{key}");
    }
    assert_eq!(
        world.center.writes().len(),
        1,
        "{:?}",
        world.center.writes()
    );

    // The approval page links to the submit run and shows its result screenshot.
    let run = world
        .engine
        .store
        .run(&submit_run)
        .unwrap()
        .expect("the submit run");
    assert_eq!(run.summary.status, "ok", "{:?}", run.error);
    let result = run
        .evidence
        .iter()
        .find(|e| e.name == "refund-result")
        .expect("the result screenshot");
    carol.open(&format!("/approvals/{id}")).await;
    let text = carol.text().await;
    assert!(text.contains("used"), "{text}");
    let img = format!("img[src='/screenshots/{}.png']", result.sha256);
    carol
        .until(&format!(
            "(() => {{ const i = document.querySelector({img:?}); return !!i && i.complete && i.naturalWidth > 0; }})()"
        ))
        .await;
    carol
        .click_to(
            &format!("a[href='/runs/{submit_run}']"),
            &format!("/runs/{submit_run}"),
        )
        .await;
    let text = carol.text().await;
    assert!(text.contains(&result.sha256), "{text}");
    for (w, h) in [(1280, 800), (390, 844)] {
        carol.snapshot("submit-run", w, h).await;
        let overflow: i64 = carol
            .js("document.documentElement.scrollWidth - window.innerWidth")
            .await;
        assert!(overflow <= 0, "{overflow} px sideways at {w} px wide");
    }

    running.shutdown();
    running.wait().await.unwrap();
}

/// The same draft rejected in the browser: nothing reaches the seller center, no submit is
/// queued, and the draft run shows the rejection and its note. Before that: the requester
/// gets no Approve button and a forged approval is refused; an auditor sees no decision or
/// pause control and forged POSTs are refused and recorded; a POST without the session's
/// CSRF token is refused; a logged-out browser gets no screenshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_four_eyes_auditor_and_csrf_in_chromium() {
    let world = world("").await;
    add_users(&world);
    let order = big_orders()[1].id.clone();
    let id = spa_draft(&world, &order, "30.00").await;
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let approval = clerk::approval::load(&running.daemon.engine, &id).unwrap();
    let sha = approval.request.screenshot_sha256.clone().unwrap();
    let decide = format!("/approvals/{id}/decide");
    let page = format!("/approvals/{id}");
    let b = Reviewer::launch(running.addr.port()).await;

    // Logged out: the screenshot is refused, pages send to the login form.
    b.open("/login").await;
    let status: u16 = b
        .js(&format!(
            "fetch('/screenshots/{sha}.png').then(r => r.status)"
        ))
        .await;
    assert_eq!(status, 401);
    b.open(&page).await;
    assert_eq!(b.path().await, "/login");

    // The requester (also a reviewer of the channel): no button; a forged approval with a
    // valid CSRF token is refused by the engine.
    b.login("ops").await;
    b.open(&page).await;
    assert!(!b.has("button[value=approve]").await);
    assert!(b.text().await.contains("You requested this draft"));
    let csrf = b.csrf().await;
    let status = b
        .forge(&decide, &[("csrf", &csrf), ("decision", "approve")])
        .await;
    assert_eq!(status, 403);
    b.logout().await;

    // The auditor: no decision and no pause control; forged POSTs refused and recorded.
    b.login("audrey").await;
    b.open(&page).await;
    assert!(!b.has("form.decide").await);
    assert!(!b.has("form[action='/pause']").await);
    assert!(
        b.has("section.shot img").await,
        "the auditor sees the draft"
    );
    let csrf = b.csrf().await;
    assert_eq!(
        b.forge(&decide, &[("csrf", &csrf), ("decision", "approve")])
            .await,
        403
    );
    assert_eq!(
        b.forge("/pause", &[("csrf", &csrf), ("reason", "forged")])
            .await,
        403
    );
    let refused = refusals(&world, "audrey");
    assert!(
        refused.iter().any(|(a, _)| a == "approve") && refused.iter().any(|(a, _)| a == "pause"),
        "{refused:?}"
    );
    assert!(running.daemon.engine.pause.state().global.is_none());
    b.logout().await;

    // The reviewer: a POST without the CSRF token, or with another session's, is refused.
    b.login("carol").await;
    b.open(&page).await;
    assert_eq!(b.forge(&decide, &[("decision", "approve")]).await, 403);
    assert_eq!(
        b.forge(&decide, &[("csrf", &csrf), ("decision", "approve")])
            .await,
        403
    );
    let a = clerk::approval::load(&running.daemon.engine, &id).unwrap();
    assert_eq!(a.state, ApprovalState::Pending);

    // Reject, with a note, through the form.
    b.type_into("textarea[name=note]", "amount needs a manager")
        .await;
    b.click_to("button[value=reject]", &page).await;
    let text = b.text().await;
    assert!(text.contains("rejected by carol"), "{text}");
    let a = clerk::approval::load(&running.daemon.engine, &id).unwrap();
    assert_eq!(a.state, ApprovalState::Rejected);

    // Nothing was queued or sent.
    let jobs = running.daemon.queue.list(&JobFilter::default()).unwrap();
    assert!(
        jobs.iter().all(|j| j.spec.approval_id.is_none()),
        "{jobs:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(world.center.spa_refunds().is_empty());
    assert!(
        world.center.writes().is_empty(),
        "{:?}",
        world.center.writes()
    );

    // The draft run shows the rejection and its note.
    b.open(&format!("/runs/{}", approval.request.run_id)).await;
    let text = b.text().await;
    assert!(
        text.contains("rejected by carol") && text.contains("amount needs a manager"),
        "{text}"
    );

    running.shutdown();
    running.wait().await.unwrap();
}

/// What the reviewer's browser renders, not only what the server sends: a held value with
/// a right-to-left override and a zero-width space shows both written out (`⟨U+202E⟩`,
/// `⟨U+200B⟩`) and laid out in stored order (the mark left of the digits that follow it);
/// no raw control reaches the page; a 900-character pause reason without a space wraps in
/// the status bar, and nothing scrolls sideways at a phone's width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_characters_are_written_out_in_the_reviewers_browser() {
    let world = world("").await;
    add_users(&world);
    let order = big_orders()[0].id.clone();
    let note = "\u{202E}00.0001 :tnuoma by car\u{200B}ol";
    let r = world
        .run_as(
            &playbook("spa-refund"),
            &[
                ("order_id", order.as_str()),
                ("amount", "1.00"),
                ("reason", "Item damaged"),
                ("method", "store_credit"),
                ("note", note),
            ],
            "ops",
            None,
        )
        .await;
    assert_eq!(r.status, RunStatus::Drafted, "{:?}", r.error);
    let id = r.approval_id.expect("an approval request");
    let clock = TestClock::default();
    let running = start(&world, &clock).await;
    let b = Reviewer::launch(running.addr.port()).await;
    b.login("carol").await;
    // A long unbroken pause reason, paused from the console.
    let csrf = b.csrf().await;
    let reason = "x".repeat(900);
    let status = b
        .forge(
            "/pause",
            &[("csrf", &csrf), ("reason", &reason), ("channel", "sample")],
        )
        .await;
    assert!(status == 303 || status == 0 || status == 200, "{status}");
    b.open(&format!("/approvals/{id}")).await;
    let text = b.text().await;
    assert!(
        text.contains("⟨U+202E⟩00.0001 :tnuoma by car⟨U+200B⟩ol"),
        "{text}"
    );
    assert!(text.contains(&reason[..100]), "the pause reason is shown");
    let raw: bool = b
        .js("/[\\u202a-\\u202e\\u2066-\\u2069\\u200b-\\u200f\\ufeff]/.test(document.documentElement.outerHTML)")
        .await;
    assert!(!raw, "a raw format character reached the page");
    // Laid out in stored order: the written-out mark is left of the digits after it.
    let order_ok: bool = b
        .js(r#"(() => {
            const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            let n;
            while ((n = w.nextNode())) {
                const i = n.data.indexOf('⟨U+202E⟩00.0001');
                if (i < 0) continue;
                const at = (k) => { const r = document.createRange(); r.setStart(n, k); r.setEnd(n, k + 1); return r.getBoundingClientRect(); };
                const mark = at(i), digit = at(i + 8);
                return mark.top === digit.top ? mark.left < digit.left : mark.top < digit.top;
            }
            return false;
        })()"#)
        .await;
    assert!(order_ok, "the value is not laid out in stored order");
    for (w, h) in [(1280, 800), (390, 844)] {
        let shot = b.snapshot("hidden-characters", w, h).await;
        assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
        let overflow: i64 = b
            .js("document.documentElement.scrollWidth - window.innerWidth")
            .await;
        assert!(overflow <= 0, "{overflow} px sideways at {w} px wide");
    }
    running.shutdown();
    running.wait().await.unwrap();
}
