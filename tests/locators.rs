//! Locators and custom widgets in real headless Chromium: role + accessible name, label,
//! text, test id, `within`, `nth`, strictness and open shadow roots; `select` on native,
//! MUI-, Ant Design-, Headless UI- and Element Plus-like widgets; check/uncheck on
//! `role=checkbox` / `role=switch`; `fill` on contenteditable and on a controlled input with
//! React's value tracker. The fixture pages (tests/locators/*.html) are served by a small
//! axum server on 127.0.0.1:0 that lives inside the test.

use std::time::Duration;

use clerk::browser::{Browser, BrowserError, Find, LaunchOptions, Policy, Tab};
use serde_json::{json, Value};

const LOCATE: &str = include_str!("locators/locate.html");
const WIDGETS: &str = include_str!("locators/widgets.html");

/// Step timeout: generous, never asserted on.
const T: Duration = Duration::from_secs(20);
/// For lookups that must not find anything.
const SHORT: Duration = Duration::from_millis(600);

/// Serves the fixture pages; returns the origin.
async fn serve() -> String {
    use axum::response::Html;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/locate", get(|| async { Html(LOCATE) }))
        .route("/widgets", get(|| async { Html(WIDGETS) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A guarded browser on one fixture page.
async fn open(page: &str) -> (Browser, Tab) {
    let origin = serve().await;
    let policy = Policy {
        allowed_origins: vec![origin.clone()],
        read_only_exceptions: vec![],
        ..Policy::default()
    };
    let (browser, tab) = Browser::launch(&LaunchOptions::detect().unwrap(), policy, None)
        .await
        .unwrap();
    let url = url::Url::parse(&format!("{origin}/{page}")).unwrap();
    tab.goto(&url, T).await.unwrap();
    tab.wait_loaded(T).await.unwrap();
    (browser, tab)
}

fn loc(spec: Value, display: &str) -> Find {
    Find {
        spec,
        display: display.to_owned(),
    }
}

fn css(s: &str) -> Find {
    Find::css(s)
}

/// Id of the element a locator finds (strict).
async fn id_of(tab: &Tab, find: &Find) -> Option<String> {
    tab.attribute(find, "id").await.unwrap()
}

/// Which fixture button was clicked last.
async fn last_click(tab: &Tab) -> String {
    tab.text(&css("#out")).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_and_accessible_name_exact_and_substring() {
    let (browser, tab) = open("locate").await;
    let role = |name: &str, exact: bool| {
        loc(
            json!({"role": "button", "name": name, "exact": exact}),
            &format!("role=button[name={name:?}]"),
        )
    };
    // Name from content, from aria-label, on an explicit role, whitespace collapsed.
    tab.click(&role("Save draft", true), T).await.unwrap();
    assert_eq!(last_click(&tab).await, "b-save");
    tab.click(&role("Save and close", true), T).await.unwrap();
    assert_eq!(last_click(&tab).await, "b-save-icon");
    tab.click(&role("Submit refund request", true), T)
        .await
        .unwrap();
    assert_eq!(last_click(&tab).await, "b-div");
    // A link's name spans its inline children.
    let link = loc(
        json!({"role": "link", "name": "Open order details"}),
        "role=link",
    );
    tab.click(&link, T).await.unwrap();
    assert_eq!(last_click(&tab).await, "link");
    // Heading by role and name.
    let h = loc(json!({"role": "heading", "name": "Order SO-1"}), "heading");
    assert_eq!(tab.text(&h).await.unwrap().as_deref(), Some("Order SO-1"));
    // Exact is exact: case and whole string.
    let err = tab
        .click(&role("save draft", true), SHORT)
        .await
        .unwrap_err();
    assert!(matches!(err, BrowserError::ElementNotFound { .. }), "{err}");
    let err = tab.click(&role("Save", true), SHORT).await.unwrap_err();
    assert!(matches!(err, BrowserError::ElementNotFound { .. }), "{err}");
    // Not exact: case-insensitive substring.
    tab.click(&role("AND CLOSE", false), T).await.unwrap();
    assert_eq!(last_click(&tab).await, "b-save-icon");
    // ... and still strict: "save" is in two names.
    let err = tab.click(&role("save", false), T).await.unwrap_err();
    assert!(err.to_string().contains("matched 2 elements"), "{err}");
    // Hidden elements (display:none, aria-hidden subtree, `hidden`, visibility:hidden) have
    // no role: only the visible "Archive" button matches.
    tab.click(&role("Archive", true), T).await.unwrap();
    assert_eq!(last_click(&tab).await, "b-archive");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_for_wrapping_aria_label_and_labelledby() {
    let (browser, tab) = open("locate").await;
    let label = |t: &str| loc(json!({"label": t}), &format!("label {t:?}"));
    // <label for>, its aria-hidden "*" left out.
    assert_eq!(
        id_of(&tab, &label("Refund amount")).await.as_deref(),
        Some("amount")
    );
    // A wrapping <label>.
    assert_eq!(
        id_of(&tab, &label("Customer note")).await.as_deref(),
        Some("note")
    );
    // aria-label.
    assert_eq!(
        id_of(&tab, &label("Search orders")).await.as_deref(),
        Some("search")
    );
    // aria-labelledby.
    assert_eq!(
        id_of(&tab, &label("Tracking number")).await.as_deref(),
        Some("tracking")
    );
    // Not exact: case-insensitive substring.
    let loose = loc(json!({"label": "refund", "exact": false}), "label ~refund");
    assert_eq!(id_of(&tab, &loose).await.as_deref(), Some("amount"));
    // Exact does not match a part of a label.
    assert_eq!(id_of(&tab, &label("Refund")).await, None);
    // The label locator drives fill like any other.
    tab.fill(&label("Tracking number"), "1Z999", T)
        .await
        .unwrap();
    assert_eq!(
        tab.value(&css("#tracking")).await.unwrap().as_deref(),
        Some("1Z999")
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_finds_the_smallest_visible_element() {
    let (browser, tab) = open("locate").await;
    // Both the span and its parent div read "Total due": the span is found.
    let t = loc(json!({"text": "Total due"}), "text \"Total due\"");
    assert_eq!(id_of(&tab, &t).await.as_deref(), Some("t-child"));
    // Whitespace is collapsed and text spans inline children.
    let t = loc(json!({"text": "Shipped on Monday"}), "text");
    assert_eq!(id_of(&tab, &t).await.as_deref(), Some("t-words"));
    // Not exact: the smallest element containing it, whatever the case.
    let t = loc(json!({"text": "monday", "exact": false}), "text ~monday");
    assert_eq!(tab.text(&t).await.unwrap().as_deref(), Some("Monday"));
    // Invisible text is not matched.
    let t = loc(json!({"text": "Ghost text"}), "text \"Ghost text\"");
    let err = tab.wait_visible(&t, SHORT).await.unwrap_err();
    assert!(matches!(err, BrowserError::ElementNotFound { .. }), "{err}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testid_with_default_and_custom_attribute() {
    let (browser, tab) = open("locate").await;
    let custom = loc(
        json!({"testid": "order-total", "attr": "data-qa"}),
        "testid order-total",
    );
    assert_eq!(tab.text(&custom).await.unwrap().as_deref(), Some("12.50"));
    let default = loc(json!({"testid": "order-total"}), "testid order-total");
    assert_eq!(tab.text(&default).await.unwrap().as_deref(), Some("99.00"));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_scopes_the_search() {
    let (browser, tab) = open("locate").await;
    let edit = loc(
        json!({"role": "button", "name": "Edit", "within": {"css": "#panel-b"}}),
        "#panel-b >> role=button[name=\"Edit\"]",
    );
    tab.click(&edit, T).await.unwrap();
    assert_eq!(last_click(&tab).await, "edit-b");
    // The scope itself can be any locator, and nests.
    let edit = loc(
        json!({"css": "button", "within": {"text": "Notes", "within": {"css": "body"}}}),
        "text \"Notes\" >> button",
    );
    // "Notes" is the h3, which contains no button.
    let err = tab.click(&edit, SHORT).await.unwrap_err();
    assert!(matches!(err, BrowserError::ElementNotFound { .. }), "{err}");
    let edit = loc(
        json!({"css": "button.edit", "within": {"css": ".panel", "nth": 2}}),
        ".panel >> nth=2 >> button.edit",
    );
    tab.click(&edit, T).await.unwrap();
    assert_eq!(last_click(&tab).await, "edit-c");
    // An ambiguous scope is an error too.
    let edit = loc(
        json!({"css": "button", "within": {"css": ".panel"}}),
        ".panel >> button",
    );
    let err = tab.click(&edit, T).await.unwrap_err().to_string();
    assert!(err.contains("within: scope matched 3 elements"), "{err}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nth_picks_from_the_start_and_from_the_end() {
    let (browser, tab) = open("locate").await;
    let nth = |n: i64| {
        loc(
            json!({"role": "button", "name": "Edit", "nth": n}),
            &format!("role=button[name=\"Edit\"] >> nth={n}"),
        )
    };
    for (n, want) in [
        (0, "edit-a"),
        (1, "edit-b"),
        (2, "edit-c"),
        (-1, "edit-c"),
        (-3, "edit-a"),
    ] {
        tab.click(&nth(n), T).await.unwrap();
        assert_eq!(last_click(&tab).await, want, "nth={n}");
    }
    let err = tab.click(&nth(3), SHORT).await.unwrap_err();
    assert!(matches!(err, BrowserError::ElementNotFound { .. }), "{err}");
    let err = tab.click(&nth(-4), SHORT).await.unwrap_err();
    assert!(matches!(err, BrowserError::ElementNotFound { .. }), "{err}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strictness_error_names_count_and_elements() {
    let (browser, tab) = open("locate").await;
    let edit = loc(
        json!({"role": "button", "name": "Edit"}),
        "role=button[name=\"Edit\"]",
    );
    // Fails at once (a long timeout would otherwise end in ElementNotFound), with what matched.
    let err = tab.click(&edit, Duration::from_secs(60)).await.unwrap_err();
    let BrowserError::Page(msg) = &err else {
        panic!("expected an ambiguity error, got {err:?}");
    };
    assert_eq!(
        msg,
        "locator role=button[name=\"Edit\"] matched 3 elements: button#edit-a.edit \"Edit\", \
         button#edit-b.edit \"Edit\", button#edit-c.edit \"Edit\" (use nth: or within: to pick one)"
    );
    // Reads are strict too: never the first of several.
    let err = tab.text(&css("button.edit")).await.unwrap_err().to_string();
    assert!(err.contains("matched 3 elements"), "{err}");
    let err = tab
        .wait_visible(&css(".panel h3"), T)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("matched 3 elements"), "{err}");
    assert!(err.contains("h3 \"Shipping\""), "{err}");
    // More than five are listed as five and an ellipsis.
    let err = tab.text(&css("section *")).await.unwrap_err().to_string();
    assert!(err.contains(", …"), "{err}");
    // An invalid selector is reported, not waited for.
    let err = tab
        .click(&css("button[["), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is invalid"), "{err}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_shadow_roots_are_pierced_by_css_role_text_and_testid() {
    let (browser, tab) = open("locate").await;
    tab.click(&css("button.copy"), T).await.unwrap();
    assert_eq!(last_click(&tab).await, "shadow-copy");
    tab.click(&css("#out"), T).await.unwrap();
    let role = loc(
        json!({"role": "button", "name": "Copy total"}),
        "role=button[name=\"Copy total\"]",
    );
    tab.wait_visible(&role, T).await.unwrap();
    tab.click(&role, T).await.unwrap();
    assert_eq!(last_click(&tab).await, "shadow-copy");
    let text = loc(json!({"text": "Copy total"}), "text \"Copy total\"");
    assert_eq!(
        tab.attribute(&text, "class").await.unwrap().as_deref(),
        Some("copy")
    );
    let testid = loc(
        json!({"testid": "shadow-total", "attr": "data-qa"}),
        "testid shadow-total",
    );
    assert_eq!(tab.text(&testid).await.unwrap().as_deref(), Some("42.00"));
    // within a shadow host reaches into its shadow root.
    let scoped = loc(
        json!({"css": "button", "within": {"css": "order-summary"}}),
        "order-summary >> button",
    );
    assert_eq!(
        tab.text(&scoped).await.unwrap().as_deref(),
        Some("Copy total")
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_select_by_value_and_by_label_with_keyboard_events() {
    let (browser, tab) = open("widgets").await;
    let method = loc(json!({"label": "Refund method"}), "label \"Refund method\"");
    // Down past a disabled option.
    tab.select(&method, "bank", T).await.unwrap();
    assert_eq!(
        tab.value(&css("#method")).await.unwrap().as_deref(),
        Some("bank")
    );
    // Up, by visible label.
    tab.select(&method, "Original card", T).await.unwrap();
    assert_eq!(
        tab.value(&css("#method")).await.unwrap().as_deref(),
        Some("card")
    );
    // The page saw the browser's own change events, one per key that moved the selection:
    // ArrowDown twice to "bank" (past the disabled option), ArrowUp once to "card".
    assert_eq!(
        tab.text(&css("#method-state")).await.unwrap().as_deref(),
        Some("card (3 change events)")
    );
    let err = tab
        .select(&method, "wallet", T)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("option \"wallet\" is disabled"), "{err}");
    let err = tab
        .select(&method, "cheque", T)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "no option \"cheque\" (options: \"\" \"Choose…\", card \"Original card\", wallet \"Store wallet\", bank \"Bank transfer\", cash \"Cash\")"
        ),
        "{err}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mui_like_select_by_value_and_by_label() {
    let (browser, tab) = open("widgets").await;
    let reason = loc(json!({"label": "Reason"}), "label \"Reason\"");
    // By value; the last option is below the menu's fold.
    tab.select(&reason, "other", T).await.unwrap();
    assert_eq!(
        tab.text(&css("#mui-select")).await.unwrap().as_deref(),
        Some("Other")
    );
    assert_eq!(
        tab.value(&css(".MuiSelect-nativeInput"))
            .await
            .unwrap()
            .as_deref(),
        Some("other")
    );
    // By label, through the role locator (the name includes the current value).
    let combo = loc(
        json!({"role": "combobox", "name": "reason", "exact": false}),
        "role=combobox[name~=reason]",
    );
    tab.select(&combo, "Wrong item sent", T).await.unwrap();
    assert_eq!(
        tab.value(&css(".MuiSelect-nativeInput"))
            .await
            .unwrap()
            .as_deref(),
        Some("wrong_item")
    );
    // The menu closed again.
    assert_eq!(tab.rect(&css("#mui-menu")).await.unwrap(), None);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_option_lists_the_options_that_exist() {
    let (browser, tab) = open("widgets").await;
    let reason = loc(json!({"label": "Reason"}), "label \"Reason\"");
    let err = tab
        .select(&reason, "refund_all", T)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "select label \"Reason\": no option \"refund_all\" (options: damaged \"Damaged in transit\", \
         wrong_item \"Wrong item sent\", late \"Arrived late\", missing_parts \"Missing parts\", \
         changed_mind \"Customer changed mind\", duplicate \"Duplicate order\", price \"Price adjustment\", \
         other \"Other\")"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ant_like_select_in_a_portal_by_value_and_by_label() {
    let (browser, tab) = open("widgets").await;
    let carrier = loc(json!({"label": "Carrier"}), "label \"Carrier\"");
    // By label.
    tab.select(&carrier, "SF Express", T).await.unwrap();
    assert_eq!(
        tab.attribute(&css("#ant-root .ant-select-selection-item"), "title")
            .await
            .unwrap()
            .as_deref(),
        Some("SF Express")
    );
    // By value, far from the active item: Ant keeps values only in an accessibility list
    // around the active (hovered) item, so the options are hovered until it shows.
    let root = loc(json!({"css": "#ant-root"}), "#ant-root");
    tab.select(&root, "ups", T).await.unwrap();
    assert_eq!(
        tab.text(&css("#ant-root .ant-select-selection-item"))
            .await
            .unwrap()
            .as_deref(),
        Some("UPS Standard")
    );
    // The portal stays in the document, hidden.
    assert!(!tab
        .rect(&css(".ant-select-dropdown"))
        .await
        .unwrap()
        .is_some_and(|r| r.height > 0.0));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_ui_like_listbox_by_value_and_by_label() {
    let (browser, tab) = open("widgets").await;
    let button = loc(
        json!({"role": "button", "name": "Assignee", "exact": false}),
        "role=button[name~=Assignee]",
    );
    tab.select(&button, "devon", T).await.unwrap();
    assert_eq!(
        tab.value(&css("#hui input[name=assignee]"))
            .await
            .unwrap()
            .as_deref(),
        Some("devon")
    );
    assert_eq!(
        tab.text(&css("#hui-button")).await.unwrap().as_deref(),
        Some("Devon Webb")
    );
    let label = loc(json!({"label": "Assignee"}), "label \"Assignee\"");
    tab.select(&label, "Tom Cook", T).await.unwrap();
    assert_eq!(
        tab.value(&css("#hui input[name=assignee]"))
            .await
            .unwrap()
            .as_deref(),
        Some("tom")
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn element_plus_like_select_by_label() {
    let (browser, tab) = open("widgets").await;
    let status = loc(
        json!({"role": "combobox", "name": "Order status"}),
        "role=combobox[name=\"Order status\"]",
    );
    tab.select(&status, "Shipped", T).await.unwrap();
    assert_eq!(
        tab.text(&css("#ep-shown")).await.unwrap().as_deref(),
        Some("Shipped")
    );
    let wrapper = css("#ep-status");
    tab.select(&wrapper, "processing", T).await.unwrap();
    assert_eq!(
        tab.text(&css("#ep-shown")).await.unwrap().as_deref(),
        Some("Processing")
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_uncheck_role_checkbox_and_role_switch() {
    let (browser, tab) = open("widgets").await;
    let gift = loc(
        json!({"role": "checkbox", "name": "Gift wrap"}),
        "role=checkbox[name=\"Gift wrap\"]",
    );
    tab.set_checked(&gift, true, T).await.unwrap();
    assert_eq!(
        tab.attribute(&css("#gift"), "aria-checked")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    // Already checked: no click.
    tab.set_checked(&gift, true, T).await.unwrap();
    assert_eq!(
        tab.text(&css("#gift-clicks")).await.unwrap().as_deref(),
        Some("1")
    );
    tab.set_checked(&gift, false, T).await.unwrap();
    assert_eq!(
        tab.attribute(&css("#gift"), "aria-checked")
            .await
            .unwrap()
            .as_deref(),
        Some("false")
    );
    let notify = loc(
        json!({"label": "Notify customer"}),
        "label \"Notify customer\"",
    );
    tab.set_checked(&notify, false, T).await.unwrap();
    assert_eq!(
        tab.attribute(&css("#notify"), "aria-checked")
            .await
            .unwrap()
            .as_deref(),
        Some("false")
    );
    tab.set_checked(&notify, true, T).await.unwrap();
    let switch = loc(json!({"role": "switch"}), "role=switch");
    assert_eq!(
        tab.attribute(&switch, "aria-checked")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        tab.text(&css("#notify-clicks")).await.unwrap().as_deref(),
        Some("2")
    );
    // Something that is not a checkbox says so.
    let err = tab
        .set_checked(&css("#note"), true, T)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a checkbox"), "{err}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_contenteditable_replaces_its_text() {
    let (browser, tab) = open("widgets").await;
    let note = loc(
        json!({"role": "textbox", "name": "Note to customer"}),
        "role=textbox[name=\"Note to customer\"]",
    );
    tab.fill(&note, "Thanks for waiting.\nRefund issued.", T)
        .await
        .unwrap();
    assert_eq!(
        tab.text(&css("#note")).await.unwrap().as_deref(),
        Some("Thanks for waiting.\nRefund issued.")
    );
    // The page's own state followed the input events.
    assert_eq!(
        tab.text(&css("#note-state")).await.unwrap().as_deref(),
        Some("Thanks for waiting.\nRefund issued.")
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_controlled_input_updates_app_state() {
    let (browser, tab) = open("widgets").await;
    let amount = loc(json!({"label": "Refund amount"}), "label \"Refund amount\"");
    assert_eq!(
        tab.text(&css("#amount-state")).await.unwrap().as_deref(),
        Some("42.00")
    );
    tab.fill(&amount, "17.5", T).await.unwrap();
    // The old value is gone (not "42.0017.5") and the app's state is the new value.
    assert_eq!(tab.value(&amount).await.unwrap().as_deref(), Some("17.5"));
    assert_eq!(
        tab.text(&css("#amount-state")).await.unwrap().as_deref(),
        Some("17.5")
    );
    // Filling the empty string clears it.
    tab.fill(&amount, "", T).await.unwrap();
    assert_eq!(
        tab.text(&css("#amount-state")).await.unwrap().as_deref(),
        Some("")
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_read_back_mismatch_fails_without_the_value() {
    let (browser, tab) = open("widgets").await;
    let voucher = loc(json!({"label": "Voucher code"}), "label \"Voucher code\"");
    let err = tab
        .fill(&voucher, "spring-sale", T)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not show the value typed"), "{err}");
    assert!(!err.to_lowercase().contains("spring"), "{err}");
    let err = tab
        .fill(&css("#amount"), "two\nlines", T)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("single-line"), "{err}");
    browser.close().await;
}
