// clerk's locator engine and widget helpers, evaluated in clerk's isolated world.
//
// Why it lives here: the page's own scripts cannot see or redefine anything in the isolated
// world, so the getters used to find elements, read names and read values back are the
// browser's own. The file is embedded into tab.rs (include_str!) and prefixed to every
// evaluation; it must define `__clerk` and nothing else.
//
// Locator JSON (what the runner renders, see the issue 7 contract §2):
//   {"css": S} | {"role": R, "name"?: N, "exact"?: bool} | {"label": T, "exact"?: bool}
//   | {"text": T, "exact"?: bool} | {"testid": ID, "attr"?: "data-testid"}
//   plus optional "within": <locator> and "nth": integer (negative counts from the end).
//
// Matching pierces OPEN shadow roots for every kind, never enters iframes, and returns
// elements in document (flat-tree pre-order) order. Role and text matching skip elements
// hidden from users and assistive technology. Without `nth`, resolve() is strict: more
// than one match is reported as ambiguous, never silently narrowed to the first.
//
// Widget helpers only compute points, read state and keep the element being operated on
// between evaluations (window.__clerkKept, a global of the isolated world). They never set
// widget state: every change is made by real CDP input events sent from Rust.
const __clerk = (() => {
  'use strict';

  // ---- per-evaluation caches -------------------------------------------------------------
  const styleCache = new Map();
  const attrHiddenCache = new Map();
  const textCache = new Map();

  const norm = (s) => String(s == null ? '' : s).replace(/\s+/g, ' ').trim();
  const style = (el) => {
    let s = styleCache.get(el);
    if (!s) {
      s = getComputedStyle(el);
      styleCache.set(el, s);
    }
    return s;
  };

  // Parent in the flat tree: slot for slotted nodes, host for shadow roots' children.
  const parentOf = (el) => {
    if (el.assignedSlot) return el.assignedSlot;
    if (el.parentElement) return el.parentElement;
    const p = el.parentNode;
    return p && p.nodeType === 11 && p.host ? p.host : null;
  };

  // Whether `a` contains `b` (or is `b`) in the flat tree (crossing shadow boundaries).
  const flatContains = (a, b) => {
    for (let n = b; n; n = parentOf(n)) if (n === a) return true;
    return false;
  };

  // Child nodes as rendered: a host's shadow tree, a slot's assigned nodes.
  const flatChildNodes = (n) => {
    if (n.shadowRoot) return Array.from(n.shadowRoot.childNodes);
    if (n.localName === 'slot' && typeof n.assignedNodes === 'function') {
      const a = n.assignedNodes();
      if (a.length) return a;
    }
    return Array.from(n.childNodes);
  };

  // Every element under `root` (excluding root itself), in pre-order, descending into open
  // shadow roots right after their host. <template> contents and iframes are not entered.
  const elementsUnder = (root) => {
    const out = [];
    const visit = (parent) => {
      for (let c = parent.firstElementChild; c; c = c.nextElementSibling) {
        out.push(c);
        if (c.shadowRoot) visit(c.shadowRoot);
        visit(c);
      }
    };
    if (root.shadowRoot) visit(root.shadowRoot);
    visit(root);
    return out;
  };

  // ---- hidden ----------------------------------------------------------------------------
  const attrHidden = (el) => {
    if (attrHiddenCache.has(el)) return attrHiddenCache.get(el);
    let h =
      (el.getAttribute('aria-hidden') || '').trim().toLowerCase() === 'true' ||
      el.hasAttribute('hidden') ||
      el.hasAttribute('inert');
    if (!h) {
      const p = parentOf(el);
      h = p ? attrHidden(p) : false;
    }
    attrHiddenCache.set(el, h);
    return h;
  };

  // Not rendered: display:none (self or ancestor), visibility hidden/collapse.
  const styleHidden = (el) => {
    const name = el.localName;
    if (name === 'option' || name === 'optgroup') {
      const sel = el.closest('select, datalist');
      if (sel) return sel.localName === 'datalist' || styleHidden(sel);
    }
    const s = style(el);
    if (s.display === 'contents') {
      const p = parentOf(el);
      return (p ? styleHidden(p) : false) || s.visibility !== 'visible';
    }
    if (typeof el.checkVisibility === 'function') {
      return !el.checkVisibility({ visibilityProperty: true });
    }
    for (let n = el; n; n = parentOf(n)) if (style(n).display === 'none') return true;
    return s.visibility !== 'visible';
  };

  // Hidden from users and assistive technology (what role and text matching skip).
  const isHidden = (el) => attrHidden(el) || styleHidden(el);

  const hasBox = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const visible = (el) => !!el && el.isConnected && !styleHidden(el) && hasBox(el);

  // ---- roles -----------------------------------------------------------------------------
  const explicitRole = (el) => {
    const r = (el.getAttribute('role') || '').trim().toLowerCase().split(/\s+/)[0];
    return r || null;
  };
  const hasOwnName = (el) =>
    !!(norm(el.getAttribute('aria-label')) || el.getAttribute('aria-labelledby') || norm(el.getAttribute('title')));
  const inSectioning = (el) =>
    !!(el.parentElement && el.parentElement.closest('article, aside, main, nav, section'));

  const inputRole = (el) => {
    const type = (el.getAttribute('type') || 'text').trim().toLowerCase();
    const list = el.hasAttribute('list');
    switch (type) {
      case 'button': case 'submit': case 'reset': case 'image': return 'button';
      case 'checkbox': return 'checkbox';
      case 'radio': return 'radio';
      case 'range': return 'slider';
      case 'number': return 'spinbutton';
      case 'search': return list ? 'combobox' : 'searchbox';
      case 'hidden': case 'file': case 'color': return null;
      default: return list ? 'combobox' : 'textbox';
    }
  };

  const implicitRole = (el) => {
    const t = el.localName;
    switch (t) {
      case 'a': case 'area': return el.hasAttribute('href') ? 'link' : null;
      case 'article': return 'article';
      case 'aside': return 'complementary';
      case 'button': return 'button';
      case 'datalist': return 'listbox';
      case 'dd': return 'definition';
      case 'details': return 'group';
      case 'dialog': return 'dialog';
      case 'dt': return 'term';
      case 'fieldset': return 'group';
      case 'figure': return 'figure';
      case 'footer': return inSectioning(el) ? null : 'contentinfo';
      case 'form': return hasOwnName(el) ? 'form' : null;
      case 'h1': case 'h2': case 'h3': case 'h4': case 'h5': case 'h6': return 'heading';
      case 'header': return inSectioning(el) ? null : 'banner';
      case 'hr': return 'separator';
      case 'img': return el.getAttribute('alt') === '' && !hasOwnName(el) ? 'presentation' : 'img';
      case 'input': return inputRole(el);
      case 'li': return 'listitem';
      case 'main': return 'main';
      case 'menu': case 'ol': case 'ul': return 'list';
      case 'meter': return 'meter';
      case 'nav': return 'navigation';
      case 'optgroup': return 'group';
      case 'option': return 'option';
      case 'output': return 'status';
      case 'p': return 'paragraph';
      case 'progress': return 'progressbar';
      case 'search': return 'search';
      case 'section': return hasOwnName(el) ? 'region' : null;
      case 'select': return el.multiple || el.size > 1 ? 'listbox' : 'combobox';
      case 'table': return 'table';
      case 'tbody': case 'tfoot': case 'thead': return 'rowgroup';
      case 'td': return el.closest('[role=grid], [role=treegrid]') ? 'gridcell' : 'cell';
      case 'th': return (el.getAttribute('scope') || '').toLowerCase() === 'row' ? 'rowheader' : 'columnheader';
      case 'textarea': return 'textbox';
      case 'tr': return 'row';
      default: return null;
    }
  };

  // The explicit role attribute wins over the element's implicit role.
  const roleOf = (el) => explicitRole(el) || implicitRole(el);

  const NAME_FROM_CONTENT = new Set([
    'button', 'cell', 'checkbox', 'columnheader', 'gridcell', 'heading', 'link', 'menuitem',
    'menuitemcheckbox', 'menuitemradio', 'option', 'radio', 'row', 'rowheader', 'switch', 'tab',
    'tooltip', 'treeitem',
  ]);
  const SKIP_TEXT = new Set(['script', 'style', 'noscript', 'template', 'head']);

  // ---- accessible names (a reasonable subset of accname 1.2) -----------------------------
  const byIdRefs = (el, attr) => {
    const ids = (el.getAttribute(attr) || '').split(/\s+/).filter(Boolean);
    const root = el.getRootNode();
    const out = [];
    for (const id of ids) {
      const r = (root.getElementById ? root.getElementById(id) : null) || document.getElementById(id);
      if (r) out.push(r);
    }
    return out;
  };

  const selectedOptionText = (sel) =>
    Array.from(sel.selectedOptions || []).map((o) => o.label || o.text).join(' ');

  // An element's name. `referenced`: reached through aria-labelledby (hidden allowed, no
  // second hop); `recursing`: part of an ancestor's name from content.
  const nameOf = (el, ctx, referenced, recursing) => {
    if (ctx.visiting.has(el)) return '';
    if (!referenced && !ctx.includeHidden && isHidden(el)) return '';
    if (!referenced && !recursing) {
      const refs = byIdRefs(el, 'aria-labelledby');
      if (refs.length) {
        const parts = refs.map((r) => {
          const sub = { visiting: new Set(), includeHidden: isHidden(r) };
          return nameOf(r, sub, true, true);
        });
        const joined = norm(parts.join(' '));
        if (joined) return joined;
      }
    }
    const role = roleOf(el);
    const t = el.localName;
    // Embedded controls inside another element's name contribute their current choice, but
    // never a typed value: names end up in error messages and typed values may be secret.
    if (recursing && !referenced) {
      if (t === 'select') return selectedOptionText(el);
      if (t === 'input' || t === 'textarea') return '';
      if (role === 'textbox' || role === 'searchbox' || role === 'spinbutton' || role === 'slider') return '';
    }
    const aria = norm(el.getAttribute('aria-label'));
    if (aria) return aria;
    ctx.visiting.add(el);
    try {
      const native = nativeName(el, ctx);
      if (native) return native;
      if (recursing || referenced || NAME_FROM_CONTENT.has(role)) {
        const c = norm(contentText(el, ctx));
        if (c) return c;
      }
      const title = norm(el.getAttribute('title'));
      if (title) return title;
      if ((t === 'input' || t === 'textarea') && !recursing) return norm(el.getAttribute('placeholder'));
      return '';
    } finally {
      ctx.visiting.delete(el);
    }
  };

  const nativeName = (el, ctx) => {
    const t = el.localName;
    if (t === 'input') {
      const type = (el.getAttribute('type') || 'text').toLowerCase();
      if (type === 'button' || type === 'submit' || type === 'reset') {
        return norm(el.value) || (type === 'submit' ? 'Submit' : type === 'reset' ? 'Reset' : '');
      }
      if (type === 'image') return norm(el.getAttribute('alt')) || norm(el.value) || 'Submit';
    }
    if (el.labels && el.labels.length && t !== 'button') {
      const s = norm(Array.from(el.labels).map((l) => nameOf(l, ctx, false, true)).join(' '));
      if (s) return s;
    }
    if (t === 'img' || t === 'area') return norm(el.getAttribute('alt'));
    const first = (sel) => {
      const c = el.querySelector(sel);
      return c && c.parentElement === el ? norm(contentText(c, ctx)) : '';
    };
    if (t === 'fieldset') return first('legend');
    if (t === 'figure') return first('figcaption');
    if (t === 'table') return first('caption');
    if (t === 'svg') return first('title');
    return '';
  };

  const contentText = (el, ctx) => {
    if (el.localName === 'select') return selectedOptionText(el);
    let out = '';
    for (const c of flatChildNodes(el)) {
      if (c.nodeType === 3) out += c.data;
      else if (c.nodeType === 1) {
        if (SKIP_TEXT.has(c.localName)) continue;
        if (c.localName === 'br') {
          out += ' ';
          continue;
        }
        const part = nameOf(c, ctx, false, true);
        out += style(c).display === 'inline' ? part : ' ' + part + ' ';
      }
    }
    return out;
  };

  const accessibleName = (el) => norm(nameOf(el, { visiting: new Set(), includeHidden: false }, false, false));

  // ---- visible text (text kind) -----------------------------------------------------------
  // Rendered text of an element: hidden children, scripts and form values left out (form
  // values may be secret); block boxes separated by a space, so `<p>A</p><p>B</p>` reads
  // "A B". Buttons made of <input> read their value.
  const textOf = (el) => {
    if (textCache.has(el)) return textCache.get(el);
    let out = '';
    const t = el.localName;
    if (t === 'input') {
      const type = (el.getAttribute('type') || 'text').toLowerCase();
      if (type === 'button' || type === 'submit' || type === 'reset') out = el.value;
    } else if (t === 'textarea' || t === 'select' || SKIP_TEXT.has(t)) {
      out = '';
    } else {
      for (const c of flatChildNodes(el)) {
        if (c.nodeType === 3) out += c.data;
        else if (c.nodeType === 1) {
          if (c.localName === 'br') {
            out += ' ';
            continue;
          }
          if (styleHidden(c) && !(c.localName === 'slot')) continue;
          const part = textOf(c);
          out += style(c).display === 'inline' ? part : ' ' + part + ' ';
        }
      }
    }
    out = norm(out);
    textCache.set(el, out);
    return out;
  };

  // ---- label kind -------------------------------------------------------------------------
  // Text of a <label> or an aria-labelledby target, without the controls inside it and
  // without aria-hidden decorations (the "*" of required fields).
  const labelText = (node) => {
    let out = '';
    for (const c of flatChildNodes(node)) {
      if (c.nodeType === 3) out += c.data;
      else if (c.nodeType === 1) {
        const t = c.localName;
        if (SKIP_TEXT.has(t) || t === 'input' || t === 'select' || t === 'textarea' || t === 'button') continue;
        if ((c.getAttribute('aria-hidden') || '').toLowerCase() === 'true' || styleHidden(c)) continue;
        const part = labelText(c);
        out += style(c).display === 'inline' ? part : ' ' + part + ' ';
      }
    }
    return norm(out);
  };

  const labelsOf = (el) => {
    const out = [];
    const aria = norm(el.getAttribute('aria-label'));
    if (aria) out.push(aria);
    if (el.hasAttribute('aria-labelledby')) {
      // Each referenced element is a label on its own (MUI labels a select by its label and
      // by itself), and together they are the name.
      const refs = byIdRefs(el, 'aria-labelledby').filter((r) => r !== el);
      const texts = refs.map(labelText).filter(Boolean);
      out.push(...texts);
      if (texts.length > 1) out.push(norm(texts.join(' ')));
    }
    if (el.labels) for (const l of el.labels) out.push(labelText(l));
    return out.filter(Boolean);
  };

  // ---- matching ---------------------------------------------------------------------------
  const textMatcher = (want, exact) => {
    const w = norm(want);
    if (exact === false) {
      const lw = w.toLowerCase();
      return (s) => norm(s).toLowerCase().includes(lw);
    }
    return (s) => norm(s) === w;
  };

  const checkCss = (css) => {
    // Throws a SyntaxError for an invalid selector, before any matching.
    document.createDocumentFragment().querySelector(css);
  };

  // Elements under `scope` matching the locator's kind (no within/nth).
  const matchKind = (spec, scope) => {
    const all = elementsUnder(scope);
    if (typeof spec.css === 'string') {
      checkCss(spec.css);
      return all.filter((el) => el.matches(spec.css));
    }
    if (typeof spec.testid === 'string') {
      const attr = typeof spec.attr === 'string' && spec.attr ? spec.attr : 'data-testid';
      return all.filter((el) => el.getAttribute(attr) === spec.testid);
    }
    if (typeof spec.role === 'string') {
      const want = spec.role.trim().toLowerCase();
      const nameOk = typeof spec.name === 'string' ? textMatcher(spec.name, spec.exact) : null;
      return all.filter((el) => roleOf(el) === want && !isHidden(el) && (!nameOk || nameOk(accessibleName(el))));
    }
    if (typeof spec.label === 'string') {
      const ok = textMatcher(spec.label, spec.exact);
      return all.filter((el) => {
        if (!(el.hasAttribute('aria-label') || el.hasAttribute('aria-labelledby') || (el.labels && el.labels.length))) return false;
        return labelsOf(el).some(ok);
      });
    }
    if (typeof spec.text === 'string') {
      const ok = textMatcher(spec.text, spec.exact);
      const hits = all.filter((el) => !isHidden(el) && ok(textOf(el)));
      // Keep the smallest: drop every match that contains another match.
      const containsHit = new Set();
      for (const h of hits) for (let p = parentOf(h); p; p = parentOf(p)) containsHit.add(p);
      return hits.filter((h) => !containsHit.has(h));
    }
    throw new Error('locator has no kind (css, role, label, text or testid)');
  };

  // {els} | {error: ...}: within resolved strictly, nth applied when given.
  const matches = (spec) => {
    if (!spec || typeof spec !== 'object') return { error: 'invalid', message: 'locator is not an object' };
    let scope = document;
    if (spec.within) {
      const w = resolve(spec.within);
      if (w.error === 'ambiguous') return Object.assign({}, w, { scope: true });
      if (w.error) return w;
      scope = w.el;
    }
    let els;
    try {
      els = matchKind(spec, scope);
    } catch (e) {
      return { error: 'invalid', message: String((e && e.message) || e) };
    }
    if (spec.nth !== undefined && spec.nth !== null) {
      const n = Number(spec.nth);
      if (!Number.isInteger(n)) return { error: 'invalid', message: 'nth is not an integer' };
      const i = n < 0 ? els.length + n : n;
      return { els: i >= 0 && i < els.length ? [els[i]] : [] };
    }
    return { els };
  };

  const resolve = (spec) => {
    const m = matches(spec);
    if (m.error) return m;
    if (m.els.length === 0) return { error: 'not_found' };
    if (m.els.length > 1) {
      return { error: 'ambiguous', count: m.els.length, items: m.els.slice(0, 5).map(describe) };
    }
    return { el: m.els[0] };
  };

  // ---- descriptions -----------------------------------------------------------------------
  const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);
  const TESTID_ATTRS = ['data-testid', 'data-test-id', 'data-test', 'data-qa', 'data-cy'];

  // `button#save.primary "Save draft"`: tag, id, two classes, explicit role, test id, name
  // for inputs, then the accessible name or visible text. Never a typed value.
  const describe = (el) => {
    if (!el || el.nodeType !== 1) return String(el);
    let s = el.localName;
    if (el.id) s += '#' + clip(CSS.escape(el.id), 40);
    const classes = Array.from(el.classList).slice(0, 2);
    for (const c of classes) s += '.' + clip(CSS.escape(c), 30);
    const r = el.getAttribute('role');
    if (r) s += '[role=' + clip(r, 20) + ']';
    for (const a of TESTID_ATTRS) {
      const v = el.getAttribute(a);
      if (v !== null) {
        s += '[' + a + '=' + JSON.stringify(clip(v, 30)) + ']';
        break;
      }
    }
    if ((el.localName === 'input' || el.localName === 'select' || el.localName === 'textarea') && el.getAttribute('name')) {
      s += '[name=' + JSON.stringify(clip(el.getAttribute('name'), 30)) + ']';
    }
    // Editable text may be a secret just typed: an element that is or holds one is
    // described by its name only.
    let label = accessibleName(el);
    if (!label && !el.isContentEditable && !el.querySelector('[contenteditable]:not([contenteditable=false])')) label = textOf(el);
    if (label) s += ' ' + JSON.stringify(clip(label, 40));
    return s;
  };

  // ---- points for real mouse events -------------------------------------------------------
  const deepElementFromPoint = (x, y) => {
    let hit = document.elementFromPoint(x, y);
    while (hit && hit.shadowRoot) {
      const inner = hit.shadowRoot.elementFromPoint(x, y);
      if (!inner || inner === hit) break;
      hit = inner;
    }
    return hit;
  };

  // Whether a mouse event at a point that hit `hit` reaches `el`.
  const reaches = (el, hit) => {
    if (!hit) return false;
    if (flatContains(el, hit)) return true;
    // A control covered by its own label (custom-styled checkboxes) is still activated.
    if (el.labels && Array.from(el.labels).some((l) => flatContains(l, hit))) return true;
    // An element that lets events through reaches the ancestor that handles them.
    if (style(el).pointerEvents === 'none' && flatContains(hit, el)) return true;
    return false;
  };

  // Scrolls `el` into view and returns the viewport point a real click should go to, or
  // {__wait: reason} while it is invisible, off screen or covered by another element.
  const point = (el) => {
    if (!el || !el.isConnected) return { __fail: 'was removed from the page' };
    if (styleHidden(el)) return { __wait: 'not_visible' };
    el.scrollIntoView({ block: 'center', inline: 'center' });
    const r = el.getBoundingClientRect();
    if (r.width <= 0 || r.height <= 0) return { __wait: 'not_visible' };
    const left = Math.max(r.left, 0), right = Math.min(r.right, window.innerWidth);
    const top = Math.max(r.top, 0), bottom = Math.min(r.bottom, window.innerHeight);
    if (right <= left || bottom <= top) return { __wait: 'is outside the viewport' };
    const w = right - left, h = bottom - top;
    let covered = null;
    for (const [fx, fy] of [[0.5, 0.5], [0.25, 0.5], [0.75, 0.5], [0.5, 0.25], [0.5, 0.75]]) {
      const x = left + w * fx, y = top + h * fy;
      const hit = deepElementFromPoint(x, y);
      if (reaches(el, hit)) return [x, y];
      if (!covered && hit) covered = hit;
    }
    return { __wait: 'is covered by ' + (covered ? describe(covered) : 'nothing clickable') };
  };

  const rect = (el) => {
    const r = el.getBoundingClientRect();
    return { x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height };
  };

  const deepActive = () => {
    let a = document.activeElement;
    while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
    return a;
  };

  // ---- the element being operated on, kept between evaluations ---------------------------
  const keep = (state) => {
    window.__clerkKept = state;
    return state;
  };
  const kept = () => {
    const k = window.__clerkKept;
    return k && k.el && k.el.isConnected ? k : null;
  };

  const deepQueryAll = (root, sel) => elementsUnder(root).filter((e) => e.matches(sel));
  const isDisabled = (el) =>
    !!el.disabled || (el.getAttribute('aria-disabled') || '').toLowerCase() === 'true' ||
    !!(el.closest && el.closest('fieldset[disabled]') && el.matches('input, select, textarea, button'));

  // ---- fill -------------------------------------------------------------------------------
  const NOT_TEXT = new Set(['checkbox', 'radio', 'file', 'hidden', 'button', 'submit', 'reset', 'image', 'range', 'color']);
  const isTextField = (el) =>
    el.localName === 'textarea' ||
    (el.localName === 'input' && !NOT_TEXT.has((el.getAttribute('type') || '').trim().toLowerCase()));

  const fillPrepare = (el) => {
    let target = null;
    if (isTextField(el) || el.isContentEditable) target = el;
    else if (el.localName === 'label' && el.control && isTextField(el.control)) target = el.control;
    else {
      target = elementsUnder(el).find((e) => (isTextField(e) || (e.isContentEditable && !(e.parentElement && e.parentElement.isContentEditable))) && !styleHidden(e)) || null;
    }
    if (!target) return { __fail: 'is not a text field or an editable element' };
    if (isDisabled(target)) return { __fail: 'is disabled' };
    if (target.readOnly) return { __fail: 'is read-only' };
    const editable = !isTextField(target);
    keep({ el: target, editable });
    const p = point(target);
    return Array.isArray(p) ? { point: p, editable, multiline: editable || target.localName === 'textarea' } : p;
  };

  // Makes sure the kept field has the keyboard focus after the click.
  const fillFocus = () => {
    const k = kept();
    if (!k) return false;
    const a = deepActive();
    if (!(a && flatContains(k.el, a))) k.el.focus();
    const b = deepActive();
    return !!b && flatContains(k.el, b);
  };

  const fillRead = () => {
    const k = kept();
    if (!k) return null;
    return k.editable ? k.el.innerText : String(k.el.value);
  };

  // ---- check / uncheck --------------------------------------------------------------------
  const CHECK_ROLES = new Set(['checkbox', 'switch', 'radio', 'menuitemcheckbox', 'menuitemradio']);
  const isNativeCheck = (e) => e.localName === 'input' && ['checkbox', 'radio'].includes((e.type || '').toLowerCase());
  const checkState = (ctrl) => {
    if (isNativeCheck(ctrl)) return ctrl.checked;
    return (ctrl.getAttribute('aria-checked') || ctrl.getAttribute('aria-pressed') || '').toLowerCase() === 'true';
  };

  const checkPrepare = (el) => {
    let ctrl = null;
    if (isNativeCheck(el) || CHECK_ROLES.has(explicitRole(el) || '')) ctrl = el;
    else if (el.localName === 'label' && el.control && isNativeCheck(el.control)) ctrl = el.control;
    else if (explicitRole(el) === 'button' && el.hasAttribute('aria-pressed')) ctrl = el;
    else {
      const inner = deepQueryAll(el, 'input[type=checkbox], input[type=radio], [role=checkbox], [role=switch], [role=radio]');
      if (inner.length === 1) ctrl = inner[0];
    }
    if (!ctrl) return { __fail: 'is not a checkbox, radio button or switch' };
    if (isDisabled(ctrl)) return { __fail: 'is disabled' };
    const radio = (isNativeCheck(ctrl) && ctrl.type.toLowerCase() === 'radio') || ['radio', 'menuitemradio'].includes(explicitRole(ctrl) || '');
    // What to click: the located element, else the control, else one of its labels.
    let p = point(el);
    if (!Array.isArray(p) && ctrl !== el) p = point(ctrl);
    if (!Array.isArray(p) && ctrl.labels) {
      for (const l of ctrl.labels) {
        const q = point(l);
        if (Array.isArray(q)) {
          p = q;
          break;
        }
      }
    }
    if (!Array.isArray(p)) return p;
    keep({ el: ctrl });
    return { checked: checkState(ctrl), radio, point: p };
  };

  const checkRead = () => {
    const k = kept();
    return k ? checkState(k.el) : null;
  };

  // ---- select -----------------------------------------------------------------------------
  const POPUP = (e) => {
    const v = (e.getAttribute('aria-haspopup') || '').toLowerCase();
    return v !== '' && v !== 'false';
  };
  const triggerOf = (el) => {
    const r = roleOf(el);
    if (r === 'combobox' || POPUP(el)) return el;
    const inner = elementsUnder(el).find((e) => (roleOf(e) === 'combobox' || POPUP(e)) && !styleHidden(e));
    return inner || null;
  };
  const OPTION_SEL = '[role=option], .ant-select-item-option, .el-select-dropdown__item';
  const isListContainer = (e) =>
    roleOf(e) === 'listbox' || e.classList.contains('ant-select-dropdown') || e.classList.contains('el-select-dropdown');
  const visibleListContainers = () => elementsUnder(document).filter((e) => isListContainer(e) && !styleHidden(e));

  const selectPrepare = (el) => {
    if (!visible(el)) return { __wait: 'not_visible' };
    let native = el.localName === 'select' ? el : null;
    const trigger = native ? null : triggerOf(el);
    if (!native && !trigger && roleOf(el) !== 'listbox') {
      const inner = deepQueryAll(el, 'select');
      if (inner.length === 1) native = inner[0];
    }
    if (native) {
      if (native.disabled) return { __fail: 'is disabled' };
      keep({ el: native, native: true });
      return { kind: 'native' };
    }
    if (roleOf(el) === 'listbox') {
      keep({ el, listbox: el, before: [] });
      return { kind: 'listbox', expanded: true };
    }
    if (!trigger) return { __fail: 'is not a <select>, a combobox or a listbox' };
    if (isDisabled(trigger) || isDisabled(el)) return { __fail: 'is disabled' };
    const expanded = (trigger.getAttribute('aria-expanded') || '').toLowerCase() === 'true';
    keep({ el, trigger, before: expanded ? [] : visibleListContainers() });
    // Click the located element when it is a wrapper (Ant, Element Plus): its centre is on
    // the part that opens the list; else the trigger itself.
    const target = el === trigger || visible(el) ? el : trigger;
    const p = expanded ? null : point(target);
    if (p && !Array.isArray(p)) return p;
    return { kind: 'combobox', expanded, point: p };
  };

  // `value "Label"` (the value alone when it is the label, `""` when it is empty).
  const optionItem = (o) =>
    o.value === null || o.value === undefined || o.value === o.label
      ? JSON.stringify(o.label)
      : (o.value === '' ? '""' : o.value) + ' ' + JSON.stringify(o.label);
  const optionList = (items) => (items.length ? items.map(optionItem).join(', ') : 'none');

  // Native <select>: the option wanted and the keys that reach it.
  const nativePlan = (want) => {
    const k = kept();
    if (!k) return { __fail: 'was removed from the page' };
    const sel = k.el;
    const opts = Array.from(sel.options);
    const label = (o) => norm(o.label || o.text);
    const lw = norm(want).toLowerCase();
    const opt =
      opts.find((o) => o.value === want) ||
      opts.find((o) => label(o) === norm(want)) ||
      opts.find((o) => label(o).toLowerCase() === lw);
    if (!opt) {
      return { __fail: 'no option ' + JSON.stringify(want) + ' (options: ' + optionList(opts.map((o) => ({ value: o.value, label: label(o) }))) + ')' };
    }
    const off = (o) => o.disabled || (o.parentElement && o.parentElement.localName === 'optgroup' && o.parentElement.disabled);
    if (off(opt)) return { __fail: 'option ' + JSON.stringify(want) + ' is disabled' };
    // Keys a keyboard user would press on the focused, closed <select> (Chromium changes
    // the selection and fires input/change on each): arrows from the current option, or
    // Home/End first when that is shorter. Arrows and Home/End skip disabled options.
    const enabled = opts.filter((o) => !off(o)).map((o) => o.index);
    const at = (i) => enabled.indexOf(i);
    const t = at(opt.index);
    const c = at(sel.selectedIndex);
    const plans = [];
    if (c >= 0) plans.push(Array(Math.abs(t - c)).fill(t > c ? 'ArrowDown' : 'ArrowUp'));
    plans.push(['Home'].concat(Array(t).fill('ArrowDown')));
    plans.push(['End'].concat(Array(enabled.length - 1 - t).fill('ArrowUp')));
    const keys = sel.selectedIndex === opt.index ? [] : plans.reduce((a, b) => (b.length < a.length ? b : a));
    sel.focus();
    return { value: opt.value, label: label(opt), index: opt.index, keys, focused: deepActive() === sel };
  };

  const nativeRead = () => {
    const k = kept();
    if (!k) return null;
    return { value: k.el.value, index: k.el.selectedIndex };
  };

  // Last resort for a native <select> that ignores keyboard selection.
  const nativeAssign = (index) => {
    const k = kept();
    if (!k) return false;
    k.el.selectedIndex = index;
    k.el.dispatchEvent(new Event('input', { bubbles: true }));
    k.el.dispatchEvent(new Event('change', { bubbles: true }));
    return true;
  };

  // Option containers of the kept combobox: referenced ones first (aria-controls,
  // aria-owns), then visible listboxes that appeared since it was opened (portals
  // included), then any visible listbox.
  const optionContainers = (k) => {
    if (k.listbox) return { refs: [k.listbox], others: [] };
    const refs = [];
    const sources = [k.el, k.trigger].concat(elementsUnder(k.el).filter((e) => roleOf(e) === 'combobox'));
    for (const s of sources) {
      if (!s) continue;
      for (const a of ['aria-controls', 'aria-owns']) {
        for (const r of byIdRefs(s, a)) if (!refs.includes(r) && !styleHidden(r)) refs.push(r);
      }
    }
    const fresh = visibleListContainers().filter((c) => !k.before.includes(c) && !refs.includes(c));
    return { refs, others: fresh };
  };

  const optionInfo = (o) => {
    const title = norm(o.getAttribute('title'));
    const label = norm(o.getAttribute('aria-label')) || textOf(o) || title;
    let value = o.getAttribute('data-value');
    if (value === null) value = o.getAttribute('value');
    return { el: o, label, title, value, clickable: visible(o), disabled: isDisabled(o) || o.classList.contains('ant-select-item-option-disabled') };
  };

  // Finds the option wanted among the open list's options: by value (data-value / value
  // attribute, or the accessibility-only options Ant Design renders next to its visible
  // list), then by label, then by label ignoring case.
  const ariaPick = (want) => {
    const k = kept();
    if (!k) return { __fail: 'was removed from the page' };
    const { refs, others } = optionContainers(k);
    const collect = (containers) => {
      const seen = new Set();
      const out = [];
      for (const c of containers) {
        const list = (c.matches(OPTION_SEL) ? [c] : []).concat(deepQueryAll(c, OPTION_SEL));
        for (const o of list) if (!seen.has(o)) {
          seen.add(o);
          out.push(optionInfo(o));
        }
      }
      return out;
    };
    let opts = collect(refs);
    if (!opts.some((o) => o.clickable)) opts = opts.concat(collect(others));
    const clickable = opts.filter((o) => o.clickable);
    if (!clickable.length) return { state: 'waiting' };
    const w = norm(want);
    const tiers = [
      () => clickable.filter((o) => o.value === want),
      () => {
        const a11y = opts.filter((o) => !o.clickable && norm(o.el.textContent) === w && o.label);
        return a11y.length ? clickable.filter((o) => a11y.some((a) => a.label === o.label || a.label === o.title)) : [];
      },
      () => clickable.filter((o) => o.label === w || o.title === w),
      () => clickable.filter((o) => o.label.toLowerCase() === w.toLowerCase()),
    ];
    for (const tier of tiers) {
      const found = tier();
      if (found.length > 1) return { __fail: 'option ' + JSON.stringify(want) + ' matches ' + found.length + ' options: ' + found.slice(0, 5).map((o) => describe(o.el)).join(', ') };
      if (found.length === 1) {
        const o = found[0];
        if (o.disabled) return { __fail: 'option ' + JSON.stringify(want) + ' is disabled' };
        const p = point(o.el);
        if (!Array.isArray(p)) return p;
        k.option = o.el;
        return { state: 'found', point: p, label: o.label, value: o.value };
      }
    }
    // Not rendered (yet, or scrolled away in a virtual list): say what is there and where to
    // scroll for more.
    const items = clickable.map(optionItem);
    // Ant Design renders values only in an accessibility list that follows the active
    // (hovered) item: hover each visible option once to reveal the rest.
    if (opts.some((o) => !o.clickable && o.el.getAttribute('role') === 'option')) {
      k.hovered = k.hovered || [];
      const next = clickable.find((o) => !k.hovered.includes(o.el));
      if (next) {
        k.hovered.push(next.el);
        const p = point(next.el);
        if (Array.isArray(p)) return { state: 'missing', options: items, hover: p };
      }
    }
    let scroller = null;
    for (let n = clickable[0].el; n && n !== document.body; n = parentOf(n)) {
      const s = style(n);
      if (n.scrollHeight > n.clientHeight + 1 && /(auto|scroll)/.test(s.overflowY)) {
        scroller = n;
        break;
      }
    }
    let scroll = null;
    if (scroller) {
      const r = scroller.getBoundingClientRect();
      scroll = {
        x: r.left + r.width / 2,
        y: r.top + r.height / 2,
        step: Math.max(40, scroller.clientHeight * 0.8),
        atTop: scroller.scrollTop <= 0,
        atEnd: scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 1,
      };
    }
    return { state: 'missing', options: items, scroll };
  };

  // Whether the kept widget now shows the chosen option: its text, an input's value or a
  // [title] inside it contains the label, a hidden input holds the value, or the option is
  // marked selected while the list is still open.
  // Where a combobox shows its choice: the located element, its trigger, the known widget
  // wrappers, and the nearest ancestor (up to four levels, not reaching another widget) of
  // the trigger that has text (selects built around a hidden <input>, as Ant Design's and
  // Element Plus's are, show the choice in a sibling of the input).
  const widgetRoots = (k) => {
    const roots = [k.el, k.trigger].filter(Boolean);
    const start = k.trigger || k.el;
    const known = start.closest('.ant-select, .el-select, .MuiInputBase-root');
    if (known) roots.push(known);
    let n = start;
    for (let i = 0; i < 4; i++) {
      n = parentOf(n);
      if (!n || n === document.body || n === document.documentElement) break;
      const others = deepQueryAll(n, 'select, textarea, [role=combobox], [aria-haspopup]').filter((e) => e !== k.trigger && e !== k.el);
      if (others.length) break;
      if (textOf(n)) {
        roots.push(n);
        break;
      }
    }
    return roots;
  };

  const ariaShows = (label, value) => {
    const k = kept();
    if (!k) return false;
    const roots = widgetRoots(k);
    const l = norm(label);
    for (const r of roots) {
      if (l) {
        if (textOf(r).includes(l)) return true;
        if (r.localName === 'input' && norm(r.value).includes(l)) return true;
      }
      const inner = [r].concat(elementsUnder(r));
      for (const e of inner) {
        if (l && e.hasAttribute('title') && norm(e.getAttribute('title')).includes(l)) return true;
        if (e.localName === 'input') {
          const hiddenInput = e.type === 'hidden' || (e.getAttribute('aria-hidden') || '') === 'true' || styleHidden(e);
          if (hiddenInput && value !== null && value !== undefined && e.value === value) return true;
          if (!hiddenInput && l && norm(e.value).includes(l)) return true;
        }
      }
    }
    if (k.listbox && k.option && k.option.isConnected) {
      return (k.option.getAttribute('aria-selected') || '').toLowerCase() === 'true';
    }
    return false;
  };

  // ---- upload -----------------------------------------------------------------------------
  const uploadPrepare = (el) => {
    const isFile = (e) => e.localName === 'input' && (e.type || '').toLowerCase() === 'file';
    let input = isFile(el) ? el : null;
    if (!input && el.localName === 'label' && el.control && isFile(el.control)) input = el.control;
    if (!input) {
      const inner = elementsUnder(el).filter(isFile);
      if (inner.length === 1) input = inner[0];
    }
    if (!input) return { __fail: 'is not a file input' };
    if (input.disabled) return { __fail: 'is disabled' };
    keep({ el: input });
    return true;
  };

  return {
    findAll: (spec) => matches(spec).els || [],
    matches,
    resolve,
    find: (spec) => resolve(spec).el || null,
    describe,
    visible,
    isHidden,
    rect,
    point,
    accessibleName,
    roleOf,
    textOf,
    keep,
    kept,
    fillPrepare,
    fillFocus,
    fillRead,
    checkPrepare,
    checkRead,
    selectPrepare,
    nativePlan,
    nativeRead,
    nativeAssign,
    ariaPick,
    ariaShows,
    uploadPrepare,
  };
})();
