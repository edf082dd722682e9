//! HTML of the sample seller center, built with `format!` templates.
//!
//! The pages are what clerk screenshots as evidence, so they aim to look like a plausible,
//! plain seller center: a header with the shop name and the signed-in user, readable tables,
//! system sans-serif fonts only and no external assets. Element ids are a contract with the
//! playbooks (see the module docs of [`super`]); do not rename them.

use std::collections::BTreeMap;

use super::data::{format_cny, Order, STATUSES};
use super::{NoteRecord, RefundRecord};

/// The shop whose seller center this is.
pub const SHOP_NAME: &str = "Lotus Home Goods";

const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;font-family:sans-serif;font-size:14px;color:#1f2933;background:#f3f5f7}
header{display:flex;align-items:center;gap:24px;padding:0 24px;height:52px;background:#1e3a5f;color:#fff}
header .logo{font-weight:bold;font-size:17px}
header .logo small{font-weight:normal;opacity:.75;margin-left:6px}
header nav a{color:#dbe7f5;text-decoration:none;margin-right:16px}
header .user{margin-left:auto;font-size:13px}
header .user a{color:#dbe7f5;margin-left:12px}
main{max-width:1080px;margin:24px auto;padding:0 24px}
h1{font-size:20px;margin:0 0 16px}
h2{font-size:16px;margin:20px 0 8px}
.card{background:#fff;border:1px solid #d9dee4;border-radius:6px;padding:16px 20px;margin-bottom:16px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:8px 10px;border-bottom:1px solid #e4e8ec}
th{background:#eef1f4;font-weight:bold;color:#3e4c59}
td.num,th.num{text-align:right}
a{color:#1f5fa8}
.status{display:inline-block;padding:2px 8px;border-radius:10px;font-size:12px;background:#e4e8ec}
.status-paid{background:#dbeafe}.status-shipped{background:#fef3c7}.status-delivered{background:#d1fae5}
.status-refunded{background:#fce7f3}.status-cancelled{background:#e5e7eb;color:#6b7280}.status-pending_payment{background:#fff7ed}
.tabs{display:flex;gap:4px;border-bottom:2px solid #d9dee4;margin-bottom:16px}
.tabs a{padding:8px 14px;text-decoration:none;color:#3e4c59;border-radius:4px 4px 0 0}
.tabs a.active{background:#fff;border:1px solid #d9dee4;border-bottom:2px solid #fff;margin-bottom:-2px;font-weight:bold}
dl.facts{display:grid;grid-template-columns:160px 1fr;gap:6px 12px;margin:0}
dl.facts dt{color:#616e7c}dl.facts dd{margin:0;font-weight:bold}
form .row{display:grid;grid-template-columns:160px 320px;gap:12px;align-items:center;margin-bottom:12px}
label{color:#3e4c59}
input[type=text],input[type=password],input[type=number],select,textarea{font:inherit;padding:6px 8px;border:1px solid #b6c0ca;border-radius:4px;width:100%}
textarea{min-height:64px}
button{font:inherit;padding:7px 16px;border-radius:4px;border:1px solid #1e3a5f;background:#1e3a5f;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1e3a5f}
.error{background:#fdecea;border:1px solid #f5b5ad;color:#8a1f11;padding:10px 14px;border-radius:4px;margin-bottom:12px}
.notice{background:#e8f5e9;border:1px solid #a5d6a7;padding:10px 14px;border-radius:4px;margin-bottom:12px}
.muted{color:#7b8794}
.pager{display:flex;gap:16px;align-items:center;margin-top:12px}
ol#timeline{list-style:none;padding:0;margin:0}
ol#timeline li{padding:8px 0 8px 16px;border-left:3px solid #9fb3c8;margin-left:6px}
ol#timeline li:first-child{border-left-color:#1e3a5f}
ol#timeline .time{color:#616e7c;display:inline-block;width:150px}
#risk-panel{min-height:20px}
.side{display:grid;grid-template-columns:1fr 300px;gap:16px}
iframe#chat-widget{width:300px;height:180px;border:1px solid #d9dee4;border-radius:6px;background:#fff}
ul#notes{padding-left:18px}
"#;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JavaScript string literal that is safe inside a `<script>` element.
pub fn js_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned())
        .to_string()
        .replace("</", "<\\/")
        .replace("<!--", "<\\!--")
}

/// The common frame: header with shop name and signed-in user, then `body`.
pub fn layout(title: &str, user: Option<&str>, body: &str) -> String {
    let user_html = match user {
        Some(u) => format!(
            r#"<span class="user" id="header-user">Signed in as <b>{}</b><a href="/account">Account</a><a href="/logout" id="logout-link">Log out</a></span>"#,
            esc(u)
        ),
        None => r#"<span class="user" id="header-user">Not signed in</span>"#.to_owned(),
    };
    let nav = if user.is_some() {
        r#"<nav><a href="/orders">Orders</a><a href="/account">Account</a></nav>"#
    } else {
        ""
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · {shop} Seller Center</title>
<link rel="icon" href="data:,"><style>{CSS}</style></head>
<body><header><span class="logo">{shop}<small>Seller Center</small></span>{nav}{user_html}</header>
<main>
{body}
</main></body></html>"#,
        title = esc(title),
        shop = SHOP_NAME,
    )
}

pub fn login_page(next: &str, error: Option<&str>) -> String {
    let error_html = error
        .map(|e| format!(r#"<div class="error" id="login-error">{}</div>"#, esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<div class="card" style="max-width:520px;margin:40px auto">
<h1>Sign in to the Seller Center</h1>
{error_html}
<form id="login-form" method="POST" action="/login">
<input type="hidden" name="next" value="{next}">
<div class="row"><label for="username">User name</label><input type="text" id="username" name="username" autocomplete="username"></div>
<div class="row"><label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password"></div>
<button type="submit" id="login-button">Sign in</button>
</form></div>"#,
        next = esc(next)
    );
    layout("Sign in", None, &body)
}

pub fn account_page(user: &str, expires: &str) -> String {
    let body = format!(
        r#"<h1>Account</h1><div class="card"><dl class="facts">
<dt>User</dt><dd id="account-user">{user}</dd>
<dt>Shop</dt><dd>{SHOP_NAME}</dd>
<dt>Session expires</dt><dd id="session-expires">{expires}</dd>
</dl></div>"#,
        user = esc(user),
        expires = esc(expires)
    );
    layout("Account", Some(user), &body)
}

fn status_badge(status: &str) -> String {
    format!(
        r#"<span class="status status-{s}">{s}</span>"#,
        s = esc(status)
    )
}

/// What the orders list shows: one page of matching orders.
pub struct OrdersView<'a> {
    pub q: &'a str,
    pub status: &'a str,
    pub page: usize,
    pub pages: usize,
    pub total_matches: usize,
    pub rows: &'a [&'a Order],
}

fn orders_link(q: &str, status: &str, page: usize) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("q", q)
        .append_pair("status", status)
        .append_pair("page", &page.to_string())
        .finish();
    format!("/orders?{}", esc(&query))
}

pub fn orders_page(user: &str, v: &OrdersView<'_>) -> String {
    let mut options = String::from(r#"<option value="">All statuses</option>"#);
    for s in STATUSES {
        let selected = if s == v.status { " selected" } else { "" };
        options.push_str(&format!(r#"<option value="{s}"{selected}>{s}</option>"#));
    }
    let mut rows = String::new();
    for o in v.rows {
        rows.push_str(&format!(
            r#"<tr class="order-row" data-order-id="{id}"><td><a href="/orders/{id}">{id}</a></td><td>{created}</td><td>{status}</td><td class="num">{total}</td><td>{customer}</td></tr>
"#,
            id = esc(&o.id),
            created = esc(&o.created),
            status = status_badge(&o.status),
            total = esc(&o.total_display()),
            customer = esc(&o.customer),
        ));
    }
    if v.rows.is_empty() {
        rows.push_str(r#"<tr id="no-results"><td colspan="5" class="muted">No orders match your search.</td></tr>"#);
    }
    let prev = if v.page > 1 {
        format!(
            r#"<a id="prev-page" href="{}">&larr; Previous</a>"#,
            orders_link(v.q, v.status, v.page - 1)
        )
    } else {
        String::new()
    };
    let next = if v.page < v.pages {
        format!(
            r#"<a id="next-page" href="{}">Next &rarr;</a>"#,
            orders_link(v.q, v.status, v.page + 1)
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"<h1>Orders</h1>
<form id="search-form" method="GET" action="/orders" class="card" style="display:flex;gap:12px;align-items:center">
<label for="search">Search</label><input type="text" id="search" name="q" value="{q}" placeholder="Order id or customer" style="width:260px">
<label for="status-filter">Status</label><select id="status-filter" name="status" style="width:180px">{options}</select>
<button type="submit" id="search-button">Search</button>
</form>
<table id="orders"><thead><tr><th>Order</th><th>Created</th><th>Status</th><th class="num">Total</th><th>Customer</th></tr></thead>
<tbody>
{rows}</tbody></table>
<div class="pager">{prev}<span id="page-info">Page {page} of {pages}</span>{next}<span class="muted" id="match-count">{matches} orders</span></div>"#,
        q = esc(v.q),
        page = v.page,
        pages = v.pages,
        matches = v.total_matches,
    );
    layout("Orders", Some(user), &body)
}

fn tabs(order: &Order, active: &str) -> String {
    let tab = |id: &str, href: String, label: &str| {
        let class = if id == active {
            r#" class="active""#
        } else {
            ""
        };
        format!(r#"<a id="{id}" href="{href}"{class}>{label}</a>"#)
    };
    let id = esc(&order.id);
    format!(
        r#"<div class="tabs">{}{}{}{}</div>"#,
        tab("tab-overview", format!("/orders/{id}"), "Overview"),
        tab(
            "tab-logistics",
            format!("/orders/{id}/tracking"),
            "Logistics"
        ),
        tab(
            "tab-aftersales",
            format!("/orders/{id}/refund"),
            "After-sales"
        ),
        tab("tab-notes", format!("/orders/{id}/notes"), "Notes"),
    )
}

/// The order overview, including its deliberately adversarial scripts (beacon, cross-site
/// chat iframe, dedicated worker, late risk panel, outside link, pop-ups).
pub fn order_page(user: &str, order: &Order, cross_site_base: &str) -> String {
    let id = esc(&order.id);
    let mut items = String::new();
    for it in &order.items {
        items.push_str(&format!(
            r#"<tr class="item-row"><td>{sku}</td><td>{name}</td><td class="num">{qty}</td><td class="num">{price}</td><td class="num">{line}</td></tr>
"#,
            sku = esc(&it.sku),
            name = esc(&it.name),
            qty = it.quantity,
            price = format_cny(it.unit_price_cents),
            line = format_cny(it.line_total_cents()),
        ));
    }
    let tracking = match (&order.carrier, &order.tracking_no) {
        (Some(c), Some(t)) => format!(
            r#"<dt>Carrier</dt><dd id="carrier">{}</dd><dt>Tracking number</dt><dd id="tracking-no">{}</dd>"#,
            esc(c),
            esc(t)
        ),
        _ => r#"<dt>Tracking number</dt><dd class="muted">none yet</dd>"#.to_owned(),
    };
    let chat_src = format!("{}widget/chat?order={}", cross_site_base, id);
    let body = format!(
        r#"<h1>Order <span id="order-id">{id}</span></h1>
{tabs}
<div class="side"><div>
<div class="card"><dl class="facts">
<dt>Status</dt><dd><span id="order-status" class="status status-{status}">{status}</span></dd>
<dt>Customer</dt><dd id="customer-name">{customer}</dd>
<dt>Phone</dt><dd id="customer-phone">{phone}</dd>
<dt>Created</dt><dd id="order-created">{created}</dd>
<dt>Total</dt><dd id="order-total">{total}</dd>
{tracking}
</dl></div>
<h2>Items</h2>
<table id="items"><thead><tr><th>SKU</th><th>Product</th><th class="num">Qty</th><th class="num">Unit price</th><th class="num">Line total</th></tr></thead>
<tbody>
{items}</tbody></table>
<h2>Risk assessment</h2>
<div class="card"><div id="risk-panel" aria-live="polite"></div></div>
<p><a id="outside-link" href="http://outside.invalid/help">Help center</a>
 &nbsp; <button type="button" class="secondary" id="open-popup">Show promotion</button>
 <button type="button" class="secondary" id="open-outside-popup">Carrier site</button></p>
</div>
<div><h2>Customer chat</h2><iframe id="chat-widget" src="{chat_src}" title="Customer chat"></iframe></div>
</div>
<script>
(function(){{
  var orderId = {id_js};
  try {{ navigator.sendBeacon('/analytics/collect', JSON.stringify({{event:'order_view', order: orderId, at: Date.now()}})); }} catch (e) {{}}
  try {{ new Worker('/static/metrics-worker.js'); }} catch (e) {{}}
  setTimeout(function(){{
    fetch('/api/orders/' + encodeURIComponent(orderId) + '/risk', {{credentials:'same-origin'}})
      .then(function(r){{ return r.json(); }})
      .then(function(j){{ document.getElementById('risk-panel').textContent = 'Risk: ' + j.level + ' (score ' + j.score + ')'; }})
      .catch(function(){{ document.getElementById('risk-panel').textContent = 'Risk: unavailable'; }});
  }}, 1500);
  document.getElementById('open-popup').addEventListener('click', function(){{ window.open('/promo?order=' + encodeURIComponent(orderId)); }});
  document.getElementById('open-outside-popup').addEventListener('click', function(){{ window.open('http://outside.invalid/popup'); }});
}})();
</script>"#,
        tabs = tabs(order, "tab-overview"),
        status = esc(&order.status),
        customer = esc(&order.customer),
        phone = esc(&order.phone),
        created = esc(&order.created),
        total = esc(&order.total_display()),
        chat_src = esc(&chat_src),
        id_js = js_str(&order.id),
    );
    layout(&format!("Order {}", order.id), Some(user), &body)
}

pub fn not_found_page(user: Option<&str>, what: &str) -> String {
    let body = format!(
        r#"<div class="card"><h1 id="not-found">Not found</h1><p>{}</p><p><a href="/orders">Back to orders</a></p></div>"#,
        esc(what)
    );
    layout("Not found", user, &body)
}

/// Logistics tab; also auto-submits `form#viewed-form` in the main frame ~300 ms after load
/// (the server answers 204, so the page stays).
pub fn tracking_page(user: &str, order: &Order) -> String {
    let id = esc(&order.id);
    let content = match (&order.carrier, &order.tracking_no) {
        (Some(carrier), Some(no)) => {
            let mut events = String::new();
            for ev in order.events.iter().rev() {
                events.push_str(&format!(
                    r#"<li class="event"><span class="time">{}</span> <span class="desc">{}</span></li>
"#,
                    esc(&ev.time),
                    esc(&ev.description)
                ));
            }
            let latest = order
                .latest_event()
                .map(|e| esc(&e.description))
                .unwrap_or_default();
            format!(
                r#"<div class="card"><dl class="facts">
<dt>Carrier</dt><dd id="carrier">{carrier}</dd>
<dt>Tracking number</dt><dd id="tracking-no">{no}</dd>
<dt>Latest</dt><dd id="latest-event">{latest}</dd>
</dl></div>
<h2>Timeline</h2><div class="card"><ol id="timeline">
{events}</ol></div>"#,
                carrier = esc(carrier),
                no = esc(no),
            )
        }
        _ => {
            r#"<div class="card" id="no-tracking">This order has no shipment yet.</div>"#.to_owned()
        }
    };
    let body = format!(
        r#"<h1>Order <span id="order-id">{id}</span></h1>
{tabs}
{content}
<form id="viewed-form" method="POST" action="/tracking/viewed" style="display:none">
<input type="hidden" name="order_id" value="{id}"><input type="hidden" name="view" value="logistics">
</form>
<script>
setTimeout(function(){{ document.getElementById('viewed-form').submit(); }}, 300);
</script>"#,
        tabs = tabs(order, "tab-logistics"),
    );
    layout(&format!("Logistics {}", order.id), Some(user), &body)
}

/// Field names of the refund form, in display order.
pub const REFUND_FIELDS: [&str; 6] = [
    "amount",
    "reason",
    "method",
    "note",
    "supervisor_pin",
    "notify",
];

pub(super) const REASONS: [(&str, &str); 4] = [
    ("damaged", "Item damaged"),
    ("not_received", "Not received"),
    ("wrong_item", "Wrong item sent"),
    ("other", "Other"),
];
pub(super) const METHODS: [(&str, &str); 2] = [
    ("original_payment", "Original payment method"),
    ("store_credit", "Store credit"),
];

fn select_options(choices: &[(&str, &str)], selected: &str) -> String {
    let mut out = String::new();
    let mut matched = false;
    for (value, label) in choices {
        let sel = if *value == selected {
            matched = true;
            " selected"
        } else {
            ""
        };
        out.push_str(&format!(r#"<option value="{value}"{sel}>{label}</option>"#));
    }
    // A default the form does not know (set through the control API) is still offered and
    // selected, as a seller center that added a new option would do.
    if !matched && !selected.is_empty() {
        out.push_str(&format!(
            r#"<option value="{v}" selected>{v}</option>"#,
            v = esc(selected)
        ));
    }
    out
}

/// The after-sales refund form. `defaults` holds per-field default values (see
/// [`REFUND_FIELDS`]); `double_write` makes the submit handler fire a second POST.
pub fn refund_page(
    user: &str,
    order: &Order,
    csrf: &str,
    defaults: &BTreeMap<String, String>,
    double_write: bool,
    error: Option<&str>,
) -> String {
    let id = esc(&order.id);
    let d = |k: &str, fallback: &str| {
        defaults
            .get(k)
            .cloned()
            .unwrap_or_else(|| fallback.to_owned())
    };
    let notify_checked = if d("notify", "") == "yes" {
        " checked"
    } else {
        ""
    };
    let error_html = error
        .map(|e| format!(r#"<div class="error" id="refund-error">{}</div>"#, esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<h1>Order <span id="order-id">{id}</span></h1>
{tabs}
<div class="card">
<h2 style="margin-top:0">Request a refund</h2>
<p class="muted">Customer <span id="customer-name">{customer}</span>, phone <span id="customer-phone">{phone}</span>. Order total <span id="order-total">{total}</span>.</p>
{error_html}
<form id="refund-form" method="POST" action="/orders/{id}/refund" data-double-write="{dw}">
<input type="hidden" name="csrf_token" value="{csrf}">
<div class="row"><label for="refund-amount">Refund amount</label><input type="text" id="refund-amount" name="amount" inputmode="decimal" value="{amount}"></div>
<div class="row"><label for="refund-reason">Reason</label><select id="refund-reason" name="reason">{reasons}</select></div>
<div class="row"><label for="refund-method">Refund method</label><select id="refund-method" name="method">{methods}</select></div>
<div class="row"><label for="refund-note">Note</label><textarea id="refund-note" name="note">{note}</textarea></div>
<div class="row"><label for="supervisor-pin">Supervisor PIN</label><input type="text" id="supervisor-pin" name="supervisor_pin" value="{pin}" autocomplete="off"></div>
<div class="row"><label for="notify-customer">Notify customer</label><input type="checkbox" id="notify-customer" name="notify" value="yes"{notify_checked} style="width:auto;justify-self:start"></div>
<button type="submit" id="submit-refund">Submit refund</button> <span class="muted" id="autosave-status"></span>
</form></div>
<script>
(function(){{
  var form = document.getElementById('refund-form');
  var status = document.getElementById('autosave-status');
  var timer = null;
  form.addEventListener('input', function(){{
    if (timer) clearTimeout(timer);
    timer = setTimeout(function(){{
      fetch(form.getAttribute('action') + '/autosave', {{method:'POST', credentials:'same-origin', body: new URLSearchParams(new FormData(form))}})
        .then(function(r){{ status.textContent = r.ok ? 'Draft autosaved' : 'Autosave failed'; }})
        .catch(function(){{ status.textContent = 'Autosave failed'; }});
    }}, 300);
  }});
  form.addEventListener('submit', function(){{
    if (form.getAttribute('data-double-write') === '1') {{
      try {{ fetch('/analytics/refund-submit', {{method:'POST', keepalive:true, credentials:'same-origin', body: new URLSearchParams({{order: {id_js}, event: 'refund_submit'}})}}); }} catch (e) {{}}
    }}
  }});
}})();
</script>"#,
        tabs = tabs(order, "tab-aftersales"),
        total = esc(&order.total_display()),
        customer = esc(&order.customer),
        phone = esc(&order.phone),
        dw = if double_write { "1" } else { "0" },
        csrf = esc(csrf),
        amount = esc(&d("amount", "")),
        reasons = select_options(&REASONS, &d("reason", "damaged")),
        methods = select_options(&METHODS, &d("method", "original_payment")),
        note = esc(&d("note", "")),
        pin = esc(&d("supervisor_pin", "")),
        id_js = js_str(&order.id),
    );
    layout(&format!("Refund {}", order.id), Some(user), &body)
}

pub fn refund_result_page(
    user: &str,
    order: &Order,
    rec: &RefundRecord,
    amount_display: &str,
    csrf: &str,
) -> String {
    let id = esc(&order.id);
    let (status, cancel) = match &rec.cancelled {
        Some(why) => (format!("Cancelled ({})", esc(why)), String::new()),
        None => (
            "Requested".to_owned(),
            format!(
                r#"<div class="card"><h2 style="margin-top:0">Cancel this refund</h2>
<form id="cancel-form" method="POST" action="/orders/{id}/refund/{rid}/cancel">
<input type="hidden" name="csrf_token" value="{csrf}">
<div class="row"><label for="cancel-reason">Cancellation reason</label><input type="text" id="cancel-reason" name="reason"></div>
<button type="submit" id="cancel-refund" class="secondary">Cancel refund</button>
</form></div>"#,
                rid = esc(&rec.refund_id),
                csrf = esc(csrf),
            ),
        ),
    };
    let field = |k: &str| esc(rec.fields.get(k).map(String::as_str).unwrap_or(""));
    let pin = if rec
        .fields
        .get("supervisor_pin")
        .is_some_and(|p| !p.is_empty())
    {
        "provided"
    } else {
        "not provided"
    };
    let notify = if rec.fields.get("notify").is_some_and(|v| v == "yes") {
        "yes"
    } else {
        "no"
    };
    let body = format!(
        r#"<h1>Order <span id="order-id">{id}</span></h1>
{tabs}
<div class="notice" id="refund-result">Refund {rid} requested for {amount} (reason: {reason}, method: {method}).</div>
<div class="card"><dl class="facts">
<dt>Refund id</dt><dd id="refund-id">{rid}</dd>
<dt>Amount</dt><dd id="refund-amount-value">{amount}</dd>
<dt>Reason</dt><dd id="refund-reason-value">{reason}</dd>
<dt>Method</dt><dd id="refund-method-value">{method}</dd>
<dt>Note</dt><dd id="refund-note-value">{note}</dd>
<dt>Supervisor PIN</dt><dd id="refund-pin-value">{pin}</dd>
<dt>Notify customer</dt><dd id="refund-notify-value">{notify}</dd>
<dt>Requested by</dt><dd id="refund-user">{by}</dd>
<dt>Status</dt><dd id="refund-status">{status}</dd>
</dl></div>
{cancel}"#,
        tabs = tabs(order, "tab-aftersales"),
        rid = esc(&rec.refund_id),
        amount = esc(amount_display),
        reason = field("reason"),
        method = field("method"),
        note = field("note"),
        by = esc(rec.user.as_deref().unwrap_or("")),
    );
    layout(&format!("Refund {}", rec.refund_id), Some(user), &body)
}

pub fn csrf_error_page(user: &str, order: &Order) -> String {
    let body = format!(
        r#"<div class="card"><h1 id="csrf-error">Request rejected</h1>
<p>The form was stale or did not come from this seller center (invalid CSRF token). Nothing was changed.</p>
<p><a href="/orders/{id}">Back to order {id}</a></p></div>"#,
        id = esc(&order.id)
    );
    layout("Request rejected", Some(user), &body)
}

const NOTE_TAGS: [(&str, &str); 3] = [
    ("follow_up", "Follow up"),
    ("vip", "VIP"),
    ("fraud_check", "Fraud check"),
];

pub fn notes_page(user: &str, order: &Order, notes: &[&NoteRecord], csrf: &str) -> String {
    let id = esc(&order.id);
    let mut list = String::new();
    for n in notes {
        list.push_str(&format!(
            r#"<li class="note"><span class="note-tag status">{tag}</span> <span class="note-text">{text}</span> <span class="muted">— {by}, {at}</span></li>
"#,
            tag = esc(&n.tag),
            text = esc(&n.note),
            by = esc(n.user.as_deref().unwrap_or("")),
            at = esc(&n.at),
        ));
    }
    if notes.is_empty() {
        list.push_str(r#"<li class="muted" id="no-notes">No internal notes yet.</li>"#);
    }
    let body = format!(
        r#"<h1>Order <span id="order-id">{id}</span></h1>
{tabs}
<div class="card"><h2 style="margin-top:0">Internal notes</h2><ul id="notes">
{list}</ul></div>
<div class="card">
<form id="note-form" method="POST" action="/orders/{id}/notes" enctype="multipart/form-data">
<input type="hidden" name="csrf_token" value="{csrf}">
<div class="row"><label for="note-text">Internal note</label><textarea id="note-text" name="note"></textarea></div>
<div class="row"><label for="note-tag">Tag</label><select id="note-tag" name="tag">{tags}</select></div>
<div class="row"><label for="note-attachment">Attachment</label><input type="file" id="note-attachment" name="attachment"></div>
<button type="submit" id="add-note">Add note</button>
</form></div>"#,
        tabs = tabs(order, "tab-notes"),
        csrf = esc(csrf),
        tags = select_options(&NOTE_TAGS, "follow_up"),
    );
    layout(&format!("Notes {}", order.id), Some(user), &body)
}

/// The third-party chat widget, served to the order page's iframe from the other host name.
/// `offline`: the widget says so at once, without its presence POST (the same page for a
/// browser that lets the POST out and one that blocks it, for benchmarks).
pub fn chat_widget_page(order: &str, offline: bool) -> String {
    if offline {
        return r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Chat</title>
<style>body{margin:0;font-family:sans-serif;font-size:13px;background:#fff}.bar{background:#0f766e;color:#fff;padding:8px 10px;font-weight:bold}.msg{padding:8px 10px;color:#334}</style></head>
<body><div class="bar">LiveHelp chat</div><div class="msg" id="chat-status">Chat offline</div></body></html>"#
            .to_owned();
    }
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Chat</title>
<style>body{{margin:0;font-family:sans-serif;font-size:13px;background:#fff}}.bar{{background:#0f766e;color:#fff;padding:8px 10px;font-weight:bold}}.msg{{padding:8px 10px;color:#334}}</style></head>
<body><div class="bar">LiveHelp chat</div><div class="msg" id="chat-status">Connecting…</div>
<script>
(function(){{
  var order = {order};
  fetch('/widget/presence', {{method:'POST', body: new URLSearchParams({{order: order, state: 'online'}})}})
    .then(function(){{ document.getElementById('chat-status').textContent = 'Agent available for order ' + order; }})
    .catch(function(){{ document.getElementById('chat-status').textContent = 'Chat offline'; }});
  try {{ new Worker('/static/widget-worker.js'); }} catch (e) {{}}
}})();
</script></body></html>"#,
        order = js_str(order)
    )
}

/// The promotion pop-up; records an impression with a POST on load.
pub fn promo_page(user: Option<&str>, order: &str) -> String {
    let body = format!(
        r#"<div class="card"><h1 id="promo-title">Summer promotion</h1><p>Offer 10% off the next order to the customer of <b id="promo-order">{order_html}</b>.</p></div>
<script>
fetch('/promo/impression', {{method:'POST', body: new URLSearchParams({{order: {order_js}, slot: 'popup'}})}}).catch(function(){{}});
</script>"#,
        order_html = esc(order),
        order_js = js_str(order)
    );
    layout("Promotion", user, &body)
}

/// Started by the order page: reports to the shop's own analytics from a dedicated worker.
pub const METRICS_WORKER_JS: &str = "// Dedicated worker of the order page: reports page metrics.\n\
fetch('/analytics/worker', {method: 'POST', body: new URLSearchParams({source: 'metrics-worker', at: String(Date.now())})}).catch(function () {});\n";

/// Started by the cross-site chat widget.
pub const WIDGET_WORKER_JS: &str = "// Dedicated worker of the chat widget: keeps presence alive.\n\
fetch('/widget/worker', {method: 'POST', body: new URLSearchParams({source: 'widget-worker', at: String(Date.now())})}).catch(function () {});\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(js_str("</script>"), r#""<\/script>""#);
    }
}
