/*
 * The sample seller center's single-page app: plain JavaScript, no build step, no
 * dependencies. It behaves the way admin consoles built with React + a hash router + a
 * component library behave, because those are what clerk has to drive:
 *
 * - hash routes (#/orders, #/orders/:id, #/orders/:id/logistics, #/orders/:id/refund,
 *   #/orders/:id/edit, #/login); changing route never loads a new document;
 * - data comes from the JSON API after the shell has loaded, some of it late;
 * - every write is a fetch() with a JSON body and an X-CSRF-Token header;
 * - any 401 from the API makes the app POST /api/logout and route to #/login;
 * - the refund form uses a React-style controlled input, an ARIA combobox rendered in a
 *   portal, a date picker dialog, a switch, a native select and a contenteditable note;
 * - the order detail opens a WebSocket feed and sends a frame on it;
 * - <order-summary> is a custom element with an open shadow root.
 *
 * The DOM (test ids, roles, accessible names) is a contract with clerk's playbooks and
 * tests: see README.md, "The sample single-page app". Keep it stable.
 */
(function () {
  'use strict';

  var app = document.getElementById('app');
  var userSlot = document.getElementById('user-slot');
  var liveSlot = document.getElementById('live-slot');
  var meta = document.querySelector('meta[name="csrf-token"]');

  var state = {
    user: null,
    csrf: meta ? meta.getAttribute('content') || '' : '',
    renderId: 0,
    feed: null,
    feedOrder: null,
    loggingOut: false,
  };

  var MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
    'September', 'October', 'November', 'December'];

  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }

  function $(sel, root) { return (root || document).querySelector(sel); }

  // ---------------------------------------------------------------- API

  function ApiError(status, message) {
    this.status = status;
    this.message = message;
  }

  /** fetch() wrapper: JSON in and out, CSRF header on writes, any 401 → session expired. */
  function api(method, path, body) {
    var opts = { method: method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    if (method !== 'GET') opts.headers['X-CSRF-Token'] = state.csrf;
    return fetch(path, opts).then(function (r) {
      if (r.status === 401) {
        sessionExpired();
        throw new ApiError(401, 'Your session has expired.');
      }
      return r.text().then(function (t) {
        var data = null;
        try { data = t ? JSON.parse(t) : null; } catch (e) { data = null; }
        if (!r.ok) throw new ApiError(r.status, (data && data.error) || 'HTTP ' + r.status);
        return data;
      });
    }, function () {
      throw new ApiError(0, 'Network error: the request did not reach the server.');
    });
  }

  /** The reaction to any 401: log out on the server, forget the user, go to #/login. */
  function sessionExpired() {
    state.user = null;
    renderUser();
    closeFeed();
    var here = location.hash;
    if (here && here.indexOf('#/login') !== 0) {
      try { sessionStorage.setItem('sample-app-next', here); } catch (e) { /* private mode */ }
    }
    if (!state.loggingOut) {
      state.loggingOut = true;
      fetch('/api/logout', { method: 'POST', credentials: 'same-origin' })
        .catch(function () {})
        .then(function () { state.loggingOut = false; });
    }
    if (location.hash !== '#/login') location.hash = '#/login';
  }

  function loadMe() {
    return api('GET', '/api/me').then(function (me) {
      state.user = me.user;
      state.liveFeed = !(me.features && me.features.live_feed === false);
      // Test knob: show a status the order API never sent (see `set_misreport_status`).
      state.misreport = !!(me.features && me.features.misreport_status === true);
      renderUser();
      if (!state.csrf) {
        return api('GET', '/api/csrf').then(function (c) { state.csrf = c.token; });
      }
    });
  }

  function renderUser() {
    if (!state.user) {
      userSlot.innerHTML = '';
      return;
    }
    userSlot.innerHTML = '<span data-testid="user-menu">Signed in as <b>' + esc(state.user) +
      '</b><button type="button" class="small" id="logout-button">Log out</button></span>';
    $('#logout-button').addEventListener('click', function () {
      fetch('/api/logout', { method: 'POST', credentials: 'same-origin' })
        .catch(function () {})
        .then(function () {
          state.user = null;
          state.csrf = '';
          renderUser();
          location.hash = '#/login';
        });
    });
  }

  // ---------------------------------------------------------------- router

  function parseHash() {
    var h = location.hash.replace(/^#/, '') || '/';
    var q = '';
    var i = h.indexOf('?');
    if (i >= 0) { q = h.slice(i + 1); h = h.slice(0, i); }
    return { path: h, params: new URLSearchParams(q) };
  }

  function closePopups() {
    Array.prototype.forEach.call(document.querySelectorAll('body > .popover'), function (p) {
      p.remove();
    });
  }

  function route() {
    var r = parseHash();
    var rid = ++state.renderId;
    closePopups();
    var m = /^\/orders\/([^/]+)(?:\/(logistics|refund|edit))?$/.exec(r.path);
    var orderId = m ? decodeURIComponent(m[1]) : null;
    var detail = m && (!m[2] || m[2] === 'logistics');
    if (!detail || state.feedOrder !== orderId) closeFeed();

    if (r.path === '/' || r.path === '') { location.replace('#/orders'); return; }
    if (r.path === '/login') { renderLogin(); return; }
    if (!state.user) {
      app.innerHTML = '<p class="muted">Loading…</p>';
      loadMe().then(function () { if (rid === state.renderId) route(); }, function (e) {
        if (e.status !== 401 && rid === state.renderId) renderError('Could not load the app', e);
      });
      return;
    }
    if (r.path === '/orders') { renderOrders(rid, r.params); return; }
    if (m && detail) { renderDetail(rid, orderId, m[2] === 'logistics' ? 'logistics' : 'overview'); return; }
    if (m && m[2] === 'refund') { renderRefund(rid, orderId); return; }
    if (m && m[2] === 'edit') { renderEdit(rid, orderId); return; }
    document.title = 'Not found · Lotus Home Goods';
    app.innerHTML = '<div class="card"><h1>Not found</h1><p>This page does not exist.</p>' +
      '<p><a href="#/orders">Back to orders</a></p></div>';
  }

  function renderError(title, e) {
    if (e && e.status === 401) return;
    document.title = title + ' · Lotus Home Goods';
    app.innerHTML = '<div class="card"><h1>' + esc(title) + '</h1><div class="error" role="alert">' +
      esc(e && e.message) + '</div><p><a href="#/orders">Back to orders</a></p></div>';
  }

  // ---------------------------------------------------------------- #/login

  function renderLogin() {
    document.title = 'Sign in · Lotus Home Goods';
    app.innerHTML =
      '<section class="card" aria-labelledby="login-title" data-testid="login-page">' +
      '<h1 id="login-title">Sign in</h1>' +
      '<form id="login-form" novalidate>' +
      '<div class="row"><label for="login-username">User name</label>' +
      '<input type="text" id="login-username" name="username" autocomplete="username"></div>' +
      '<div class="row"><label for="login-password">Password</label>' +
      '<input type="password" id="login-password" name="password" autocomplete="current-password"></div>' +
      '<div id="login-feedback"></div>' +
      '<button type="submit" id="login-submit">Sign in</button></form></section>';
    $('#login-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var feedback = $('#login-feedback');
      fetch('/api/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ username: $('#login-username').value, password: $('#login-password').value }),
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) throw new ApiError(r.status, data.error || 'Sign-in failed.');
          return data;
        });
      }).then(function (data) {
        state.user = data.user;
        renderUser();
        return api('GET', '/api/csrf').then(function (c) { state.csrf = c.token; });
      }).then(function () {
        var next = '#/orders';
        try { next = sessionStorage.getItem('sample-app-next') || next; sessionStorage.removeItem('sample-app-next'); } catch (e) { /* ignore */ }
        location.hash = next;
      }, function (e) {
        feedback.innerHTML = '<div class="error" role="alert">' +
          esc(e instanceof ApiError ? e.message : 'Network error: could not sign in.') + '</div>';
      });
    });
  }

  // ---------------------------------------------------------------- #/orders

  function renderOrders(rid, params) {
    var q = params.get('q') || '';
    var page = params.get('page') || '1';
    document.title = 'Orders · Lotus Home Goods';
    app.innerHTML = '<p class="muted">Loading orders…</p>';
    api('GET', '/api/orders?q=' + encodeURIComponent(q) + '&page=' + encodeURIComponent(page)).then(function (res) {
      if (rid !== state.renderId) return;
      var rows = res.orders.map(function (o) {
        return '<tr data-order-id="' + esc(o.id) + '"><td><a href="#/orders/' + encodeURIComponent(o.id) + '">' +
          esc(o.id) + '</a></td><td>' + esc(o.created) + '</td><td><span class="status">' + esc(o.status) +
          '</span></td><td class="num">' + esc(o.total) + '</td><td>' + esc(o.customer) + '</td>' +
          // Every row has its own "View" button: deliberately ambiguous without a scope.
          '<td><button type="button" class="small secondary" data-view="' + esc(o.id) + '">View</button></td></tr>';
      }).join('');
      app.innerHTML =
        '<h1>Orders</h1>' +
        '<form role="search" aria-label="Order search" class="toolbar" id="search-form">' +
        '<label for="order-search">Search orders</label>' +
        '<input type="search" id="order-search" name="q" placeholder="Order id, customer or tracking number" value="' + esc(q) + '">' +
        '<button type="submit">Search</button></form>' +
        '<p class="muted" data-testid="result-count">' + res.total + (res.total === 1 ? ' order' : ' orders') + '</p>' +
        '<div class="card" style="padding:0"><table aria-label="Orders"><thead><tr><th>Order</th><th>Created</th>' +
        '<th>Status</th><th class="num">Total</th><th>Customer</th><th>Actions</th></tr></thead><tbody>' +
        (rows || '<tr><td colspan="6" class="muted">No orders match.</td></tr>') + '</tbody></table></div>' +
        '<div class="toolbar"><button type="button" class="secondary small" id="prev-page"' + (res.page <= 1 ? ' disabled' : '') +
        '>Previous page</button><span data-testid="page-info">Page ' + res.page + ' of ' + res.pages +
        '</span><button type="button" class="secondary small" id="next-page"' + (res.page >= res.pages ? ' disabled' : '') +
        '>Next page</button></div>';
      var go = function (p) {
        location.hash = '#/orders?q=' + encodeURIComponent(q) + '&page=' + p;
      };
      $('#search-form').addEventListener('submit', function (ev) {
        ev.preventDefault();
        location.hash = '#/orders?q=' + encodeURIComponent($('#order-search').value);
      });
      $('#prev-page').addEventListener('click', function () { go(res.page - 1); });
      $('#next-page').addEventListener('click', function () { go(res.page + 1); });
      Array.prototype.forEach.call(app.querySelectorAll('button[data-view]'), function (b) {
        b.addEventListener('click', function () {
          location.hash = '#/orders/' + encodeURIComponent(b.getAttribute('data-view'));
        });
      });
    }, function (e) { if (rid === state.renderId) renderError('Orders', e); });
  }

  // ---------------------------------------------------------------- #/orders/:id

  function openFeed(orderId) {
    if (state.feed && state.feedOrder === orderId) return;
    closeFeed();
    liveSlot.innerHTML = '<div data-testid="live-feed" role="status">Live updates: connecting…</div>';
    var el = liveSlot.firstChild;
    var ws;
    try {
      ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/feed');
    } catch (e) {
      el.textContent = 'Live updates: offline';
      return;
    }
    state.feed = ws;
    state.feedOrder = orderId;
    ws.onopen = function () {
      el.textContent = 'Live updates: connected';
      // The feed is read-only in spirit, but like many real ones the client "subscribes"
      // by sending a frame: a write over the WebSocket that clerk must not let through.
      ws.send(JSON.stringify({ type: 'hello', order: orderId }));
    };
    ws.onmessage = function (ev) {
      var msg = null;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (state.feed === ws && msg && msg.type === 'status' && msg.order === orderId) {
        el.textContent = 'Live updates: connected · status ' + msg.status;
      }
    };
    ws.onerror = ws.onclose = function () {
      if (state.feed === ws) el.textContent = 'Live updates: offline';
    };
  }

  function closeFeed() {
    var ws = state.feed;
    state.feed = null;
    state.feedOrder = null;
    if (ws) { try { ws.close(); } catch (e) { /* already closed */ } }
    liveSlot.innerHTML = '';
  }

  function renderDetail(rid, orderId, tab) {
    document.title = 'Order ' + orderId + ' · Lotus Home Goods';
    app.innerHTML = '<p class="muted">Loading order…</p>';
    api('GET', '/api/orders/' + encodeURIComponent(orderId)).then(function (o) {
      if (rid !== state.renderId) return;
      var id = esc(o.id);
      var overview = tab === 'overview';
      var items = o.items.map(function (i) {
        return '<tr><td>' + esc(i.sku) + '</td><td>' + esc(i.name) + '</td><td class="num">' + i.quantity +
          '</td><td class="num">' + esc(i.unit_price) + '</td><td class="num">' + esc(i.line_total) + '</td></tr>';
      }).join('');
      var panel = overview
        ? '<dl class="facts">' +
          '<dt>Status</dt><dd><span class="status" data-testid="order-status">' + esc(state.misreport ? 'Cancelled by buyer' : o.status) + '</span></dd>' +
          '<dt>Total</dt><dd data-testid="order-total">' + esc(o.total) + '</dd>' +
          '<dt>Customer</dt><dd data-testid="order-customer">' + esc(o.customer) + '</dd>' +
          '<dt>Phone</dt><dd data-testid="customer-phone">' + esc(o.phone) + '</dd>' +
          '<dt>Created</dt><dd data-testid="order-created">' + esc(o.created) + '</dd>' +
          // This "Copy" and the one inside <order-summary> share a name on purpose.
          '<dt>Reference</dt><dd><span class="ref">' + esc(o.ref) + '</span> ' +
          '<button type="button" class="small secondary" id="copy-ref">Copy</button></dd>' +
          '<dt>Tracking number</dt><dd id="tracking-slot"><span class="muted">Loading…</span></dd>' +
          '<dt>Shipping note</dt><dd data-testid="shipping-note">' + (o.shipping_note ? esc(o.shipping_note) : '—') + '</dd>' +
          '</dl><h2>Items</h2><table aria-label="Items"><thead><tr><th>SKU</th><th>Item</th><th class="num">Qty</th>' +
          '<th class="num">Unit price</th><th class="num">Line total</th></tr></thead><tbody>' + items + '</tbody></table>'
        : '<dl class="facts"><dt>Carrier</dt><dd data-testid="carrier">' + esc(o.carrier || '—') + '</dd>' +
          '<dt>Tracking number</dt><dd id="tracking-slot"><span class="muted">Loading…</span></dd>' +
          '<dt>Latest event</dt><dd id="latest-slot"><span class="muted">Loading…</span></dd></dl>' +
          '<h2>Tracking events</h2><ol data-testid="tracking-events" aria-label="Tracking events"></ol>';
      app.innerHTML =
        '<section data-order-id="' + id + '" class="card" aria-labelledby="order-title">' +
        '<h1 id="order-title">Order <span data-testid="order-id">' + id + '</span></h1>' +
        '<div role="tablist" aria-label="Order sections">' +
        '<button type="button" role="tab" id="tab-overview" aria-controls="order-panel" aria-selected="' + overview + '"' +
        (overview ? '' : ' tabindex="-1"') + '>Overview</button>' +
        '<button type="button" role="tab" id="tab-logistics" aria-controls="order-panel" aria-selected="' + !overview + '"' +
        (overview ? ' tabindex="-1"' : '') + '>Logistics</button></div>' +
        '<div role="tabpanel" id="order-panel" aria-labelledby="' + (overview ? 'tab-overview' : 'tab-logistics') + '">' +
        panel + '</div>' +
        '<order-summary total="' + esc(o.total) + '" items="' + o.items.length + '"></order-summary>' +
        '<div class="actions"><a href="#/orders/' + encodeURIComponent(o.id) + '/refund">Request refund</a>' +
        '<a href="#/orders/' + encodeURIComponent(o.id) + '/edit">Edit shipping note</a>' +
        '<a href="#/orders">Back to orders</a></div></section>';
      var base = '#/orders/' + encodeURIComponent(o.id);
      $('#tab-overview').addEventListener('click', function () { location.hash = base; });
      $('#tab-logistics').addEventListener('click', function () { location.hash = base + '/logistics'; });
      $('[role=tablist]').addEventListener('keydown', function (ev) {
        if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
          location.hash = overview ? base + '/logistics' : base;
        }
      });
      var copy = $('#copy-ref');
      if (copy) copy.addEventListener('click', function () { copyText(o.ref, copy); });
      if (state.liveFeed !== false) openFeed(o.id);
      // The tracking number comes late, from a second call, as on real consoles.
      setTimeout(function () {
        if (rid !== state.renderId) return;
        api('GET', '/api/orders/' + encodeURIComponent(o.id) + '/tracking').then(function (t) {
          if (rid !== state.renderId) return;
          var slot = $('#tracking-slot');
          if (slot) {
            slot.innerHTML = '<span data-testid="tracking-no">' + esc(t.tracking_no || 'Not shipped yet') + '</span>';
          }
          var latest = $('#latest-slot');
          if (latest) {
            var last = t.events[t.events.length - 1];
            latest.innerHTML = '<span data-testid="latest-event">' + esc(last ? last.description : 'No events yet') + '</span>';
          }
          var list = $('[data-testid=tracking-events]');
          if (list) {
            list.innerHTML = t.events.map(function (e) {
              return '<li class="event"><span class="time">' + esc(e.time) + '</span> <span class="desc">' + esc(e.description) + '</span></li>';
            }).join('');
          }
        }, function (e) {
          var slot = $('#tracking-slot');
          if (slot && rid === state.renderId && e.status !== 401) {
            slot.innerHTML = '<span class="error" role="alert">' + esc(e.message) + '</span>';
          }
        });
      }, 350);
    }, function (e) { if (rid === state.renderId) renderError('Order ' + orderId, e); });
  }

  function copyText(text, button) {
    var done = function (label) {
      button.textContent = label;
      setTimeout(function () { button.textContent = 'Copy'; }, 1500);
    };
    try {
      navigator.clipboard.writeText(text).then(function () { done('Copied'); }, function () { done('Copy failed'); });
    } catch (e) {
      done('Copy failed');
    }
  }

  /** <order-summary total="CNY 1.00" items="2">: a web component with an OPEN shadow root. */
  class OrderSummary extends HTMLElement {
    static get observedAttributes() { return ['total', 'items']; }
    connectedCallback() { this.render(); }
    attributeChangedCallback() { if (this.shadowRoot) this.render(); }
  }
  OrderSummary.prototype.render = function () {
    var root = this.shadowRoot || this.attachShadow({ mode: 'open' });
    var total = this.getAttribute('total') || '';
    var items = this.getAttribute('items') || '0';
    root.innerHTML =
      '<style>:host{display:block;margin-top:16px}.box{display:flex;gap:12px;align-items:center;padding:10px 14px;' +
      'border:1px dashed #9fb3c8;border-radius:6px;background:#f8fafc}strong{font-size:16px}' +
      'button{font:inherit;padding:3px 10px;border-radius:4px;border:1px solid #1e3a5f;background:#fff;color:#1e3a5f;cursor:pointer}</style>' +
      '<div class="box" part="box"><span>Order total</span><strong data-testid="summary-total">' + esc(total) +
      '</strong><span class="items">' + esc(items) + (items === '1' ? ' item' : ' items') + '</span>' +
      '<button type="button">Copy</button></div>';
    var button = root.querySelector('button');
    button.addEventListener('click', function () { copyText(total, button); });
  };
  if (!customElements.get('order-summary')) customElements.define('order-summary', OrderSummary);

  // ---------------------------------------------------------------- #/orders/:id/refund

  /*
   * A controlled input that behaves like React's. React keeps the value in component state
   * and decides whether an `input` event is a change by comparing the node's current value
   * with a "value tracker": React redefines the `value` property on the node itself, so
   * every `node.value = x` done by a script (React's own re-renders included) also records
   * x in the tracker. When an `input` event arrives and the tracker already holds the
   * node's value, React concludes nothing changed and does not call onChange: the state
   * keeps the old value, the screen shows the new one, and the form later sends the OLD
   * value. Real typing changes the value inside the browser without going through the
   * property setter, so the tracker differs and the change is seen.
   *
   * Consequences for automation (exactly as with React):
   *   el.value = 'x'; el.dispatchEvent(new Event('input', {bubbles: true}))  → ignored;
   *   real key/insertText input events, or the prototype's setter
   *   (Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(el, 'x'))
   *   followed by an input event                                           → state updated.
   * A script running in another JavaScript world (an isolated world) does not see the
   * instance property either, so its `el.value = x` bypasses the tracker, as in React.
   */
  function controlledInput(node, initial, onChange) {
    var proto = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value');
    var tracked = '';
    Object.defineProperty(node, 'value', {
      configurable: true,
      enumerable: proto.enumerable,
      get: function () { return proto.get.call(this); },
      set: function (v) { tracked = '' + v; proto.set.call(this, v); },
    });
    node.value = initial; // a "render": goes through the tracker
    node.addEventListener('input', function () {
      var actual = proto.get.call(node);
      if (actual === tracked) return; // "no change": React calls no onChange
      tracked = actual;
      var next = onChange(actual);
      node.value = next; // re-render from state
    });
  }

  function uuid() {
    if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }

  function pad(n) { return (n < 10 ? '0' : '') + n; }

  function renderRefund(rid, orderId) {
    document.title = 'Refund ' + orderId + ' · Lotus Home Goods';
    app.innerHTML = '<p class="muted">Loading refund form…</p>';
    var path = '/api/orders/' + encodeURIComponent(orderId);
    Promise.all([api('GET', path), api('GET', path + '/refund-form')]).then(function (res) {
      if (rid !== state.renderId) return;
      var o = res[0];
      var cfg = res[1];
      var st = { amount: '', reason: '', method: cfg.method_default, note: '', notify: false, date: '' };
      var id = esc(o.id);
      var methods = cfg.methods.map(function (m) {
        return '<option value="' + esc(m.value) + '"' + (m.value === cfg.method_default ? ' selected' : '') + '>' + esc(m.label) + '</option>';
      }).join('');
      app.innerHTML =
        '<section data-order-id="' + id + '" class="card" aria-labelledby="refund-title">' +
        '<h1 id="refund-title">Refund for order <span data-testid="order-id">' + id + '</span></h1>' +
        '<p class="muted">Customer <span data-testid="order-customer">' + esc(o.customer) + '</span>, phone <span data-testid="customer-phone">' + esc(o.phone) + '</span>. Order total <span data-testid="order-total">' + esc(o.total) + '</span>.</p>' +
        '<form id="refund-form" novalidate>' +
        '<div class="row"><label for="refund-amount">Refund amount</label>' +
        '<input type="text" id="refund-amount" inputmode="decimal" autocomplete="off" aria-describedby="amount-hint">' +
        '<span id="amount-hint" class="muted">At most ' + esc(cfg.max_amount) + '</span></div>' +
        '<div class="row"><span class="label" id="reason-label">Refund reason</span><div class="select-wrap">' +
        '<div role="combobox" id="refund-reason" tabindex="0" aria-haspopup="listbox" aria-expanded="false" ' +
        'aria-label="Refund reason" data-empty>Select a reason</div>' +
        '<input class="native-input" aria-hidden="true" tabindex="-1" name="reason" value=""></div></div>' +
        '<div class="row"><label for="refund-date">Refund date</label><div class="date-wrap">' +
        '<input type="text" id="refund-date" placeholder="YYYY-MM-DD" autocomplete="off">' +
        '<button type="button" class="secondary small" id="date-button" aria-label="Choose refund date" ' +
        'aria-haspopup="dialog" aria-expanded="false">Choose…</button></div></div>' +
        '<div class="row"><label for="refund-method">Refund method</label><select id="refund-method">' + methods + '</select></div>' +
        '<div class="row"><span class="label" id="notify-label">Notify customer</span><div class="switch-row">' +
        '<button type="button" role="switch" id="notify-switch" aria-checked="false" aria-labelledby="notify-label">' +
        '<span class="knob"></span></button></div></div>' +
        '<div class="row"><span class="label">Note</span>' +
        '<div id="refund-note" role="textbox" aria-multiline="true" contenteditable="true" aria-label="Note"></div></div>' +
        '<div id="refund-feedback"></div>' +
        '<div class="actions"><button type="button" id="submit-refund">Submit refund request</button>' +
        '<a href="#/orders/' + encodeURIComponent(o.id) + '">Cancel</a></div>' +
        '</form></section>';

      $('#refund-form').addEventListener('submit', function (ev) { ev.preventDefault(); });
      controlledInput($('#refund-amount'), st.amount, function (v) { st.amount = v; return st.amount; });
      setupCombobox($('#refund-reason'), cfg.reasons, function (v) { st.reason = v; });
      setupDatePicker($('#refund-date'), $('#date-button'), o.created.slice(0, 7), function (v) { st.date = v; });
      $('#refund-method').addEventListener('change', function (ev) { st.method = ev.target.value; });
      var sw = $('#notify-switch');
      sw.addEventListener('click', function () {
        st.notify = !st.notify;
        sw.setAttribute('aria-checked', String(st.notify));
      });
      var note = $('#refund-note');
      note.addEventListener('input', function () { st.note = note.innerText.replace(/\n$/, ''); });

      var submit = $('#submit-refund');
      var feedback = $('#refund-feedback');
      submit.addEventListener('click', function () {
        // Test knob no_write: the button does nothing at all.
        if (cfg.features.no_write) return;
        // Test knob client_error: client-side validation refuses to send.
        if (cfg.features.client_error) {
          feedback.innerHTML = '<div class="error" role="alert" data-testid="refund-error">' +
            esc(cfg.features.client_error) + '</div>';
          return;
        }
        var body = {
          amount: st.amount,
          reason: st.reason,
          method: st.method,
          note: st.note,
          notify: st.notify,
          date: st.date,
          requestId: uuid(),
          clientTs: Date.now(),
        };
        // Test knob amount_as_number: the same digits as a JSON number.
        if (cfg.features.amount_as_number) body.amount = Number(st.amount);
        // Test knob extra_field: a field the form never showed.
        if (cfg.features.extra_field) body.coupon = 'SAVE10';
        var send = function () { return api('POST', path + '/refunds', body); };
        submit.disabled = true;
        feedback.innerHTML = '<p class="muted">Submitting…</p>';
        var first = send();
        // Test knob double_write: the same POST again at once, as a double-submit bug does
        // (both requests are on the wire before either answers).
        var all = cfg.features.double_write
          ? Promise.all([first, send()]).then(function (r) { return r[0]; })
          : first;
        all.then(function (r) {
          if (rid !== state.renderId) return;
          feedback.innerHTML = '<div class="notice" role="status" data-testid="refund-result">Refund ' +
            esc(r.refund_id) + ' requested</div>';
        }, function (e) {
          if (rid !== state.renderId) return;
          submit.disabled = false;
          if (e.status === 401) return;
          feedback.innerHTML = '<div class="error" role="alert" data-testid="refund-error">' + esc(e.message) + '</div>';
        });
      });
    }, function (e) { if (rid === state.renderId) renderError('Refund for order ' + orderId, e); });
  }

  /** A MUI-like select: the listbox is rendered in a portal at the end of <body> while open. */
  function setupCombobox(box, choices, onChange) {
    var native = box.parentNode.querySelector('.native-input');
    var value = '';
    var active = -1;
    var popover = null;

    function close() {
      if (!popover) return;
      popover.remove();
      popover = null;
      box.setAttribute('aria-expanded', 'false');
      box.removeAttribute('aria-controls');
      box.removeAttribute('aria-activedescendant');
      document.removeEventListener('mousedown', outside, true);
    }
    function outside(ev) {
      if (popover && !popover.contains(ev.target) && ev.target !== box) close();
    }
    function choose(i) {
      var c = choices[i];
      value = c.value;
      box.textContent = c.label;
      box.removeAttribute('data-empty');
      native.value = c.value;
      onChange(c.value);
      close();
      box.focus();
    }
    function highlight(i) {
      if (!popover) return;
      active = (i + choices.length) % choices.length;
      Array.prototype.forEach.call(popover.querySelectorAll('[role=option]'), function (li, j) {
        li.classList.toggle('active', j === active);
      });
      box.setAttribute('aria-activedescendant', 'reason-option-' + active);
    }
    function open() {
      if (popover) return;
      var r = box.getBoundingClientRect();
      popover = document.createElement('div');
      popover.className = 'popover';
      popover.style.left = (r.left + window.scrollX) + 'px';
      popover.style.top = (r.bottom + window.scrollY + 2) + 'px';
      popover.innerHTML = '<ul role="listbox" id="reason-listbox" aria-label="Refund reasons">' +
        choices.map(function (c, i) {
          return '<li role="option" id="reason-option-' + i + '" data-value="' + esc(c.value) + '" aria-selected="' +
            (c.value === value) + '">' + esc(c.label) + '</li>';
        }).join('') + '</ul>';
      document.body.appendChild(popover);
      box.setAttribute('aria-expanded', 'true');
      box.setAttribute('aria-controls', 'reason-listbox');
      Array.prototype.forEach.call(popover.querySelectorAll('[role=option]'), function (li, i) {
        li.addEventListener('click', function () { choose(i); });
      });
      var current = -1;
      choices.forEach(function (c, i) { if (c.value === value) current = i; });
      highlight(current < 0 ? 0 : current);
      document.addEventListener('mousedown', outside, true);
    }
    box.addEventListener('click', function () { if (popover) close(); else open(); });
    box.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape') { close(); return; }
      if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        ev.preventDefault();
        if (!popover) { open(); return; }
        highlight(active + (ev.key === 'ArrowDown' ? 1 : -1));
        return;
      }
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        if (popover && active >= 0) choose(active); else open();
      }
    });
  }

  /** A text input plus a small role=dialog month grid. */
  function setupDatePicker(input, button, fallbackMonth, onChange) {
    var dialog = null;
    var shown = null; // {y, m} with m 0-based

    input.addEventListener('input', function () { onChange(input.value); });

    function monthOf(text) {
      var mm = /^(\d{4})-(\d{2})/.exec(text || '');
      if (!mm) return null;
      var y = +mm[1];
      var m = +mm[2] - 1;
      return m >= 0 && m < 12 ? { y: y, m: m } : null;
    }
    function close() {
      if (!dialog) return;
      dialog.remove();
      dialog = null;
      button.setAttribute('aria-expanded', 'false');
      document.removeEventListener('mousedown', outside, true);
    }
    function outside(ev) {
      if (dialog && !dialog.contains(ev.target) && ev.target !== button) close();
    }
    function draw() {
      var first = new Date(Date.UTC(shown.y, shown.m, 1));
      var days = new Date(Date.UTC(shown.y, shown.m + 1, 0)).getUTCDate();
      var lead = (first.getUTCDay() + 6) % 7; // weeks start on Monday
      var cells = [];
      var i;
      for (i = 0; i < lead; i++) cells.push('<td role="gridcell"></td>');
      for (i = 1; i <= days; i++) {
        var iso = shown.y + '-' + pad(shown.m + 1) + '-' + pad(i);
        cells.push('<td role="gridcell" aria-selected="' + (iso === input.value) + '"><button type="button" data-date="' +
          iso + '" aria-label="' + iso + '">' + i + '</button></td>');
      }
      while (cells.length % 7) cells.push('<td role="gridcell"></td>');
      var rows = '';
      for (i = 0; i < cells.length; i += 7) rows += '<tr>' + cells.slice(i, i + 7).join('') + '</tr>';
      dialog.innerHTML =
        '<header><button type="button" class="small secondary" data-nav="-1" aria-label="Previous month">‹</button>' +
        '<h2 id="picker-month">' + MONTHS[shown.m] + ' ' + shown.y + '</h2>' +
        '<button type="button" class="small secondary" data-nav="1" aria-label="Next month">›</button></header>' +
        '<table role="grid" aria-labelledby="picker-month"><thead><tr><th>Mo</th><th>Tu</th><th>We</th><th>Th</th>' +
        '<th>Fr</th><th>Sa</th><th>Su</th></tr></thead><tbody>' + rows + '</tbody></table>';
    }
    function open() {
      if (dialog) return;
      shown = monthOf(input.value) || monthOf(fallbackMonth) || { y: 2024, m: 0 };
      dialog = document.createElement('div');
      dialog.className = 'popover picker';
      dialog.setAttribute('role', 'dialog');
      dialog.setAttribute('aria-label', 'Refund date picker');
      dialog.style.top = '100%';
      dialog.style.left = '0';
      input.parentNode.appendChild(dialog);
      draw();
      button.setAttribute('aria-expanded', 'true');
      dialog.addEventListener('click', function (ev) {
        var t = ev.target.closest('button');
        if (!t) return;
        if (t.hasAttribute('data-nav')) {
          var m = shown.m + +t.getAttribute('data-nav');
          shown = { y: shown.y + Math.floor(m / 12), m: (m + 12) % 12 };
          draw();
        } else if (t.hasAttribute('data-date')) {
          input.value = t.getAttribute('data-date');
          onChange(input.value);
          close();
          input.focus();
        }
      });
      dialog.addEventListener('keydown', function (ev) { if (ev.key === 'Escape') { close(); button.focus(); } });
      document.addEventListener('mousedown', outside, true);
    }
    button.addEventListener('click', function () { if (dialog) close(); else open(); });
  }

  // ---------------------------------------------------------------- #/orders/:id/edit

  function renderEdit(rid, orderId) {
    document.title = 'Edit ' + orderId + ' · Lotus Home Goods';
    app.innerHTML = '<p class="muted">Loading order…</p>';
    api('GET', '/api/orders/' + encodeURIComponent(orderId)).then(function (o) {
      if (rid !== state.renderId) return;
      var id = esc(o.id);
      app.innerHTML =
        '<section data-order-id="' + id + '" class="card" aria-labelledby="edit-title">' +
        '<h1 id="edit-title">Edit shipping note for order ' + id + '</h1>' +
        '<form id="edit-form" novalidate>' +
        '<div class="row"><label for="shipping-note">Shipping note</label>' +
        '<textarea id="shipping-note" name="shipping_note" maxlength="500">' + esc(o.shipping_note) + '</textarea></div>' +
        '<div id="edit-feedback"></div>' +
        '<div class="actions"><button type="submit" id="save-note">Save shipping note</button>' +
        '<a href="#/orders/' + encodeURIComponent(o.id) + '">Cancel</a></div></form></section>';
      var feedback = $('#edit-feedback');
      $('#edit-form').addEventListener('submit', function (ev) {
        ev.preventDefault();
        api('PUT', '/api/orders/' + encodeURIComponent(o.id), { shipping_note: $('#shipping-note').value }).then(function () {
          if (rid !== state.renderId) return;
          feedback.innerHTML = '<div class="notice" role="status" data-testid="edit-result">Shipping note saved</div>';
        }, function (e) {
          if (rid !== state.renderId || e.status === 401) return;
          feedback.innerHTML = '<div class="error" role="alert" data-testid="edit-error">' + esc(e.message) + '</div>';
        });
      });
    }, function (e) { if (rid === state.renderId) renderError('Order ' + orderId, e); });
  }

  // ---------------------------------------------------------------- start

  window.addEventListener('hashchange', route);
  route();
})();
