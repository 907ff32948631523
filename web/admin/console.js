// console.js — the admin console at /admin/: plain ES modules, no build
// step, talking only to the REST API (ADR 030). Pages: sign in, dashboard,
// products, inventory (live), orders desk, mail log.
import { api, ApiError, session, idempotencyKey, streamEvents, money, minorDigits } from '../api.js';
import { h, announcer, errorBox, fieldErrors, clearErrors, field, followLinks } from '../dom.js';

session.use('orion.admin.token'); // not the shop's session (ADR 030 §6)

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const announce = announcer(document.getElementById('announce'));
const PAGE_LIMIT = 100; // the API's largest page
const COUNT_PAGES = 10; // the dashboard counts at most this many pages
let leaving = null; // AbortController of the current page's work (streams)
let navigated = false;

// ---- frame ---------------------------------------------------------------

function render(title, ...children) {
  document.title = `${title} — Orion admin`;
  main.replaceChildren(h('h1', { id: 'page-title' }, title), ...children.filter((c) => c !== null && c !== undefined));
  if (navigated) main.focus();
}

export function go(path) {
  navigated = true;
  history.pushState(null, '', path);
  route();
}

// To sign in first: the address is replaced (Back does not return to a
// page that would only send the admin here again), and a page the browser
// opened keeps the browser's focus.
function redirect(path) {
  history.replaceState(null, '', path);
  route();
}

function updateNav() {
  nav.hidden = !session.token;
  for (const a of nav.querySelectorAll('a[href^="/admin/"]')) {
    const p = new URL(a.href).pathname;
    const here = p === '/admin/' ? location.pathname === '/admin/' : location.pathname.startsWith(p);
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

document.getElementById('sign-out').addEventListener('click', async () => {
  try { await api('POST', '/auth/logout'); } catch { /* the token is dropped anyway */ }
  session.token = null;
  announce('Signed out.');
  go('/admin/login');
});

function requireAdmin() {
  if (session.token) return true;
  const here = location.pathname + location.search;
  redirect(`/admin/login${here !== '/admin/' ? `?next=${encodeURIComponent(here)}` : ''}`);
  return false;
}

// A failed read of a page: signed out (401) goes back to sign in; any other
// error is shown where the page would be.
function failed(e, where = main) {
  if (e instanceof ApiError && e.status === 401) {
    announce('Your session ended; sign in again.');
    requireAdmin();
    return;
  }
  if (e instanceof ApiError && e.status === 403) {
    where.append(errorBox(new Error('This account is not an admin (any more): sign out and in with an admin account.')));
    return;
  }
  where.append(errorBox(e));
}

function time(iso, timeStyle = 'short') {
  return iso ? new Date(iso).toLocaleString('en', { dateStyle: 'medium', timeStyle }) : '';
}

function statusBadge(status) {
  return h('span', { class: `status ${status}`, 'data-status': status }, status.replace(/_/g, ' '));
}

function table(caption, columns, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' }, h('table', attrs,
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label || c)))),
    h('tbody', {}, rows)));
}

// Pages through a list route; returns {items, more} (more: pages left).
async function collect(path, params, pages = COUNT_PAGES) {
  const items = [];
  const q = new URLSearchParams({ ...params, limit: String(PAGE_LIMIT) });
  for (let i = 0; i < pages; i++) {
    const page = await api('GET', `${path}?${q}`);
    items.push(...page.items);
    if (!page.next_cursor) return { items, more: false };
    q.set('cursor', page.next_cursor);
  }
  return { items, more: true };
}

// A "More" button under a list: loads the next page with fetchPage(cursor)
// and hands its items to add(); gone at the end.
function moreButton(label, cursor, fetchPage, add) {
  const button = h('button', { type: 'button', class: 'secondary' }, label);
  let next = cursor;
  button.hidden = !next;
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const page = await fetchPage(next);
      add(page.items);
      next = page.next_cursor;
      button.hidden = !next;
      announce(`${page.items.length} more loaded.`);
    } catch (e) {
      failed(e, button.parentNode);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

// A form's submit: its errors cleared and its button disabled while
// fn(form.elements) runs; a refusal shows by its fields (alias: API field →
// form field), a session that ended (401 while signed in) goes to sign in.
function onSubmit(form, fn, alias = {}) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    form.querySelectorAll('.note').forEach((n) => n.remove());
    const button = form.querySelector('button[type=submit]');
    const signedIn = !!session.token;
    button.disabled = true;
    try {
      await fn(form.elements);
    } catch (e) {
      if (signedIn && e instanceof ApiError && e.status === 401) failed(e); else fieldErrors(form, e, alias);
    } finally {
      button.disabled = false;
    }
  });
}

// ---- sign in ---------------------------------------------------------------

function nextPath() {
  const next = new URLSearchParams(location.search).get('next') || '/admin/';
  return next.startsWith('/admin/') ? next : '/admin/';
}

function loginPage() {
  const form = h('form', { class: 'panel', novalidate: true },
    field('email', 'Email', 'email', { autocomplete: 'username', required: true }),
    field('password', 'Password', 'password', { autocomplete: 'current-password', required: true }),
    h('button', { type: 'submit' }, 'Sign in'));
  onSubmit(form, async (e) => {
    try {
      const t = await api('POST', '/auth/login', { email: e.email.value, password: e.password.value });
      session.token = t.access_token;
      const me = await api('GET', '/me');
      if (me.role !== 'admin') {
        // Refused here, before any admin route answers 403: the account is
        // signed out again and told where it belongs.
        try { await api('POST', '/auth/logout'); } catch { /* dropped anyway */ }
        session.token = null;
        e.password.value = '';
        form.append(h('p', { class: 'error', role: 'alert', id: 'not-admin' },
          `${me.email} is a customer account: the console is for admins. `,
          h('a', { href: '/' }, 'Go to the shop'), ' to shop with it.'));
        e.email.focus();
        return;
      }
      announce(`Signed in as ${me.email}.`);
      go(nextPath());
    } catch (err) {
      session.token = null;
      throw err;
    }
  });
  render('Sign in to the console', h('p', {}, 'For the shop\'s admins. Shoppers sign in at ', h('a', { href: '/login' }, 'the shop'), '.'), form);
}

// ---- dashboard -------------------------------------------------------------

const PAID = ['confirmed', 'shipped', 'delivered'];
const OPEN = ['pending', 'awaiting_confirmation', 'awaiting_payment', 'confirmed'];

function tile(id, title, value, ...lines) {
  return h('li', { class: 'tile', id }, h('h2', {}, title), h('p', { class: 'value' }, value), ...lines);
}

function atLeast(n, more) { return more ? `${n}+` : String(n); }

async function dashboardPage() {
  if (!requireAdmin()) return;
  const tiles = h('ul', { class: 'tiles', 'aria-label': 'Today at a glance', 'aria-busy': 'true' });
  render('Dashboard', tiles,
    h('p', { class: 'muted' }, 'Counted from the admin order and inventory lists (read models); today is since midnight, this browser\'s time.'));
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  try {
    const [today, inventory, ...open] = await Promise.all([
      collect('/admin/orders', { since: midnight.toISOString() }),
      collect('/admin/inventory', {}),
      ...OPEN.map((status) => collect('/admin/orders', { status })),
    ]);
    const revenue = new Map();
    for (const o of today.items) {
      if (PAID.includes(o.status)) revenue.set(o.currency, (revenue.get(o.currency) || 0) + o.total_cents);
    }
    const openCount = open.reduce((n, r) => n + r.items.length, 0);
    const openMore = open.some((r) => r.more);
    const toShip = open[OPEN.indexOf('confirmed')];
    const low = inventory.items.filter((i) => i.low);
    tiles.replaceChildren(
      tile('tile-orders-today', 'Orders today', atLeast(today.items.length, today.more),
        h('p', {}, h('a', { href: `/admin/orders?since=${encodeURIComponent(isoDate(midnight))}` }, 'See today\'s orders'))),
      tile('tile-revenue', 'Revenue today',
        revenue.size ? [...revenue].map(([c, v]) => money(v, c)).join(' + ') : money(0),
        h('p', { class: 'muted' }, 'Paid orders placed today (not cancelled).')),
      tile('tile-open', 'Open orders', atLeast(openCount, openMore),
        h('p', {}, h('a', { href: '/admin/orders?status=confirmed' }, `${atLeast(toShip.items.length, toShip.more)} paid, to ship`))),
      tile('tile-low', 'Low stock', atLeast(low.length, inventory.more),
        h('p', {}, h('a', { href: '/admin/inventory?low=1' }, 'See the low items'))));
    tiles.setAttribute('aria-busy', 'false');
  } catch (e) {
    tiles.remove();
    failed(e);
  }
}

function isoDate(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

// ---- products --------------------------------------------------------------

function productRow(p) {
  return h('tr', { 'data-product-id': p.id },
    h('th', { scope: 'row' }, h('a', { href: `/admin/products/${encodeURIComponent(p.id)}` }, p.name)),
    h('td', {}, p.sku), h('td', {}, p.category || ''),
    h('td', { class: 'num' }, money(p.price_cents, p.currency)),
    h('td', { class: 'num' }, String(p.available)));
}

async function productsPage() {
  if (!requireAdmin()) return;
  const q = new URLSearchParams(location.search).get('q') || '';
  const form = h('form', { class: 'toolbar', role: 'search' },
    field('q', 'Search products', 'search', { value: q }),
    h('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = form.elements.q.value.trim();
    go(`/admin/products${v ? `?q=${encodeURIComponent(v)}` : ''}`);
  });
  const summary = h('p', { role: 'status', id: 'results' });
  const body = h('tbody');
  render('Products', h('p', {}, h('a', { href: '/admin/products/new', id: 'new-product' }, 'New product')), form, summary);
  const query = (cursor) => {
    const p = new URLSearchParams({ limit: '50' });
    if (q) p.set('q', q);
    if (cursor) p.set('cursor', cursor);
    return api('GET', `/products?${p}`);
  };
  try {
    const page = await query(null);
    body.replaceChildren(...page.items.map(productRow));
    summary.textContent = `${page.items.length}${page.next_cursor ? '+' : ''} product${page.items.length === 1 ? '' : 's'}${q ? ` matching “${q}”` : ''}.`;
    const t = table('Products', ['Name', 'SKU', 'Category', { label: 'Price', num: true }, { label: 'Available', num: true }], []);
    t.querySelector('tbody').replaceWith(body);
    main.append(t, moreButton('More products', page.next_cursor, query, (items) => body.append(...items.map(productRow))));
  } catch (e) {
    failed(e);
  }
}

// "12.50" EUR → 1250 (the currency's minor unit); anything else goes to the
// API as typed, whose field error then says what is wrong (one source of
// truth for the rules).
function minorUnits(text, currency) {
  const t = text.trim();
  const digits = minorDigits(currency);
  const re = digits ? new RegExp(`^-?\\d+(\\.\\d{1,${digits}})?$`) : /^-?\d+$/;
  return re.test(t) ? Math.round(Number(t) * 10 ** digits) : t;
}
function integer(text) {
  const t = text.trim();
  return /^-?\d+$/.test(t) ? Number(t) : t;
}

const PRODUCT_ALIAS = { price_cents: 'price' };

function productForm(p) {
  const creating = !p;
  const form = h('form', { class: 'panel', id: 'product-form', novalidate: true, 'aria-labelledby': 'page-title' },
    creating ? field('sku', 'SKU', 'text', { required: true, autocomplete: 'off' }, 'Letters, digits, dot, dash and underscore; unique.') : null,
    field('name', 'Name', 'text', { required: true, autocomplete: 'off' }),
    field('description', 'Description', 'textarea'),
    field('price', 'Price', 'text', { inputmode: 'decimal', required: true, autocomplete: 'off' },
      `In ${p ? p.currency : 'the currency below'}, e.g. 12.50.`),
    creating ? field('currency', 'Currency', 'text', { value: 'EUR', required: true, autocomplete: 'off' }, 'ISO 4217 code.') : null,
    field('category', 'Category', 'text', { autocomplete: 'off' }, 'Lowercase letters, digits and dashes.'),
    creating ? field('initial_stock', 'Initial stock', 'text', { inputmode: 'numeric', value: '0' }) : null,
    field('low_stock_threshold', 'Low-stock threshold', 'text', { inputmode: 'numeric', autocomplete: 'off' },
      creating ? 'Units of available stock below which the item is low; empty for the shop\'s default.' : 'Units of available stock below which the item is low.'),
    h('button', { type: 'submit' }, creating ? 'Create product' : 'Save changes'));
  if (p) {
    form.elements.name.value = p.name;
    form.elements.description.value = p.description || '';
    const digits = minorDigits(p.currency);
    form.elements.price.value = (p.price_cents / 10 ** digits).toFixed(digits);
    form.elements.category.value = p.category || '';
    form.elements.low_stock_threshold.value = String(p.low_stock_threshold);
  }
  return form;
}

function productBody(form, p) {
  const e = form.elements;
  const body = {
    name: e.name.value, description: e.description.value,
    price_cents: minorUnits(e.price.value, p ? p.currency : e.currency.value.trim()), category: e.category.value.trim(),
  };
  const threshold = e.low_stock_threshold.value.trim();
  if (threshold !== '') body.low_stock_threshold = integer(threshold);
  if (!p) {
    return { sku: e.sku.value.trim(), ...body, currency: e.currency.value.trim(), initial_stock: integer(e.initial_stock.value) };
  }
  // an update sends what changed
  const was = { name: p.name, description: p.description || '', price_cents: p.price_cents, category: p.category || '', low_stock_threshold: p.low_stock_threshold };
  return Object.fromEntries(Object.entries(body).filter(([k, v]) => v !== was[k]));
}

function newProductPage() {
  if (!requireAdmin()) return;
  const form = productForm(null);
  onSubmit(form, async () => {
    const p = await api('POST', '/admin/products', productBody(form, null));
    announce(`Product ${p.name} created.`);
    go(`/admin/products/${encodeURIComponent(p.id)}?created=1`);
  }, PRODUCT_ALIAS);
  render('New product', form, h('p', {}, h('a', { href: '/admin/products' }, 'Back to the products')));
}

async function productPage(id) {
  if (!requireAdmin()) return;
  render('Product');
  let p;
  try {
    p = await api('GET', `/admin/products/${encodeURIComponent(id)}`);
  } catch (e) {
    render(e instanceof ApiError && e.status === 404 ? 'Product not found' : 'Product');
    failed(e);
    main.append(h('p', {}, h('a', { href: '/admin/products' }, 'Back to the products')));
    return;
  }
  const created = new URLSearchParams(location.search).has('created');
  if (created) history.replaceState(null, '', location.pathname); // said once, not on a reload
  const form = productForm(p);
  onSubmit(form, async () => {
    const body = productBody(form, p);
    if (!Object.keys(body).length) {
      form.append(h('p', { role: 'status', class: 'note muted' }, 'Nothing changed.'));
      return;
    }
    p = await api('PATCH', `/admin/products/${encodeURIComponent(p.id)}`, body);
    document.getElementById('page-title').textContent = p.name;
    form.append(h('p', { role: 'status', class: 'note saved' }, 'Saved.'));
  }, PRODUCT_ALIAS);
  const del = h('button', { type: 'button', class: 'danger', id: 'delete' }, 'Delete product');
  const confirmBox = h('div', { hidden: true, id: 'delete-confirm', role: 'group', 'aria-labelledby': 'delete-question' },
    h('p', { id: 'delete-question' }, `Delete ${p.name}? It leaves the catalog at once; open carts drop it.`),
    h('button', { type: 'button', class: 'danger', id: 'delete-yes' }, 'Delete for good'), ' ',
    h('button', { type: 'button', class: 'secondary', id: 'delete-no' }, 'Keep it'));
  del.addEventListener('click', () => { confirmBox.hidden = false; del.hidden = true; confirmBox.querySelector('#delete-yes').focus(); });
  confirmBox.querySelector('#delete-no').addEventListener('click', () => { confirmBox.hidden = true; del.hidden = false; del.focus(); });
  confirmBox.querySelector('#delete-yes').addEventListener('click', async (ev) => {
    ev.target.disabled = true;
    try {
      await api('DELETE', `/admin/products/${encodeURIComponent(p.id)}`);
      announce(`${p.name} deleted.`);
      go('/admin/products');
    } catch (e) {
      ev.target.disabled = false;
      failed(e, confirmBox);
    }
  });
  render(p.name,
    created ? h('p', { role: 'status', id: 'created' }, 'Product created. ', h('a', { href: `/products/${encodeURIComponent(p.id)}` }, 'See it in the shop')) : null,
    h('dl', { class: 'facts' },
      h('dt', {}, 'SKU'), h('dd', {}, p.sku),
      h('dt', {}, 'Currency'), h('dd', {}, p.currency),
      h('dt', {}, 'Stock'), h('dd', {}, `${p.on_hand} on hand, ${p.reserved} reserved, ${p.available} available`, p.low ? ' ' : '',
        p.low ? h('span', { class: 'badge low' }, 'Low') : '', ' ', h('a', { href: '/admin/inventory' }, 'Adjust'))),
    form,
    h('h2', {}, 'Delete'), del, confirmBox,
    h('p', {}, h('a', { href: '/admin/products' }, 'Back to the products')));
}

// ---- inventory (live) ------------------------------------------------------

const LEVELS = ['on_hand', 'reserved', 'available', 'low_stock_threshold'];

function levelCells(item) {
  return [
    ...LEVELS.map((k) => h('td', { class: 'num', 'data-col': k }, String(item[k] ?? ''))),
    h('td', { 'data-col': 'low' }, item.low ? h('span', { class: 'badge low' }, 'Low') : 'OK'),
  ];
}

function inventoryRow(item, onAdjust) {
  const adjust = h('button', { type: 'button', class: 'secondary', 'data-adjust': item.sku }, 'Adjust',
    h('span', { class: 'visually-hidden' }, ` ${item.name}`));
  adjust.addEventListener('click', () => onAdjust(item.product_id));
  return h('tr', { 'data-product-id': item.product_id, class: item.low ? 'low' : null },
    h('th', { scope: 'row' }, h('a', { href: `/admin/products/${encodeURIComponent(item.product_id)}` }, item.name)),
    h('td', {}, item.sku), ...levelCells(item), h('td', {}, adjust));
}

function updateRow(row, levels) {
  if (levels.on_hand === null || levels.on_hand === undefined) return false; // an event from before levels
  const cells = levelCells(levels);
  for (const cell of cells) row.querySelector(`[data-col="${cell.dataset.col}"]`).replaceWith(cell);
  row.classList.toggle('low', !!levels.low);
  row.classList.remove('changed');
  void row.offsetWidth; // restart the highlight
  row.classList.add('changed');
  return true;
}

async function inventoryPage() {
  if (!requireAdmin()) return;
  const onlyLow = new URLSearchParams(location.search).has('low');
  const items = new Map(); // product_id -> item
  const live = h('p', { class: 'live', id: 'live', 'data-live': 'off' }, 'Live updates: connecting…');
  const select = h('select', { id: 'adjust-product', name: 'product', required: true });
  const form = h('form', { class: 'panel toolbar', id: 'adjust', 'aria-labelledby': 'adjust-title', novalidate: true },
    h('h2', { id: 'adjust-title', class: 'visually-hidden' }, 'Adjust stock'),
    h('div', { class: 'field' }, h('label', { for: 'adjust-product' }, 'Product'), select),
    field('delta', 'Units to add (negative removes)', 'text', { inputmode: 'numeric', required: true, autocomplete: 'off', size: '8' }),
    field('reason', 'Reason', 'text', { required: true, autocomplete: 'off', value: 'stock count' }),
    h('button', { type: 'submit' }, 'Adjust stock'));
  const summary = h('p', { id: 'results' });
  const filter = h('p', {}, h('a', { href: onlyLow ? '/admin/inventory' : '/admin/inventory?low=1' }, onlyLow ? 'Show every item' : 'Show only low stock'));
  const body = h('tbody');
  const focusAdjust = (productId) => { select.value = productId; form.elements.delta.focus(); };
  render(onlyLow ? 'Inventory: low stock' : 'Inventory', live, form, filter);
  const rowOf = (id) => body.querySelector(`tr[data-product-id="${CSS.escape(id)}"]`);
  // The feed starts with the next change, so the list is read again each
  // time the feed opens; until that read answers, events wait, and then are
  // applied in order (each carries the levels after it: one the list already
  // shows changes nothing). A list read before the feed opened only fills the
  // page meanwhile.
  let synced = false;
  let generation = 0;
  const early = [];
  const apply = ({ event, data }) => {
    if (!synced) { early.push({ event, data }); return; }
    let d;
    try { d = JSON.parse(data); } catch { return; }
    const item = items.get(d.product_id);
    if (!item) { resync(); return; } // a product new since the list: read it again
    if (event === 'stock') {
      Object.assign(item, Object.fromEntries(Object.entries(d).filter(([k]) => [...LEVELS, 'low'].includes(k))));
    } else if (event === 'low_stock' || event === 'low_stock_cleared') {
      Object.assign(item, { on_hand: d.on_hand, reserved: d.reserved, available: d.available, low: event === 'low_stock' });
      announce(event === 'low_stock' ? `Low stock: ${item.name}, ${d.available} available.` : `${item.name} is no longer low.`);
    }
    const row = rowOf(d.product_id);
    if (row && updateRow(row, item) && onlyLow && !item.low) row.remove();
  };
  const show = (all) => {
    items.clear();
    for (const i of all.items) items.set(i.product_id, i);
    const shown = all.items.filter((i) => !onlyLow || i.low);
    body.replaceChildren(...shown.map((i) => inventoryRow(i, focusAdjust)));
    const chosen = select.value;
    select.replaceChildren(...all.items.map((i) => h('option', { value: i.product_id }, `${i.name} (${i.sku})`)));
    if (chosen) select.value = chosen;
    summary.textContent = `${shown.length}${all.more ? '+' : ''} item${shown.length === 1 ? '' : 's'}, ${all.items.filter((i) => i.low).length} low.`;
  };
  const load = async (sync) => {
    const mine = sync ? ++generation : generation;
    if (sync) synced = false;
    try {
      const all = await collect('/admin/inventory', {});
      if (mine !== generation || (!sync && synced)) return; // a newer read answers
      show(all);
      if (sync) {
        synced = true;
        for (const e of early.splice(0)) apply(e);
        live.dataset.live = 'on'; // the list and the feed in step
        live.textContent = 'Live updates: on';
      }
    } catch (e) {
      failed(e);
    }
  };
  const resync = () => load(true);
  const t = table('Stock levels', ['Product', 'SKU', { label: 'On hand', num: true }, { label: 'Reserved', num: true },
    { label: 'Available', num: true }, { label: 'Low below', num: true }, 'Level', h('span', { class: 'visually-hidden' }, 'Actions')], [],
  { id: 'inventory' });
  t.querySelector('tbody').replaceWith(body);
  main.append(summary, t);
  streamEvents('/admin/inventory/events', apply, {
    signal: leaving.signal,
    onOpen: resync,
    onEnd: (status) => {
      live.dataset.live = 'off';
      live.textContent = `Live updates: off (${status}); reload the page to try again.`;
      if (status === 401) failed(new ApiError(401, null));
    },
  });
  load(false);
  onSubmit(form, async (e) => {
    const levels = await api('POST', `/admin/inventory/${encodeURIComponent(select.value)}/adjustments`,
      { delta: integer(e.delta.value), reason: e.reason.value }, { 'Idempotency-Key': idempotencyKey() });
    const item = items.get(select.value);
    if (item) {
      Object.assign(item, levels);
      const row = rowOf(select.value);
      if (row) updateRow(row, item);
      announce(`${item.name}: ${levels.on_hand} on hand, ${levels.available} available.`);
    }
    e.delta.value = '';
  });
}

// ---- orders desk -----------------------------------------------------------

const STATUSES = ['pending', 'awaiting_confirmation', 'awaiting_payment', 'confirmed', 'shipped', 'delivered', 'cancelled', 'payment_failed'];

function orderRow(o) {
  return h('tr', { 'data-order-id': o.id },
    h('th', { scope: 'row' }, h('a', { href: `/admin/orders/${encodeURIComponent(o.id)}` }, o.id)),
    h('td', {}, time(o.created_at)),
    h('td', {}, o.customer && o.customer.email ? o.customer.email : h('span', { class: 'muted' }, 'erased')),
    h('td', {}, statusBadge(o.status)),
    h('td', { class: 'num' }, String(o.item_count)),
    h('td', { class: 'num' }, money(o.total_cents, o.currency)));
}

// A date field's day as the API's bound: its first or last millisecond in
// this browser's time zone.
function dayBound(value, end) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) return null;
  const d = new Date(`${value}T00:00:00`);
  if (end) d.setHours(23, 59, 59, 999);
  return d.toISOString();
}

async function ordersPage() {
  if (!requireAdmin()) return;
  const params = new URLSearchParams(location.search);
  const status = h('select', { id: 'status', name: 'status' }, h('option', { value: '' }, 'Any status'),
    STATUSES.map((s) => h('option', { value: s }, s.replace(/_/g, ' '))));
  status.value = params.get('status') || '';
  const form = h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Filter orders', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'status' }, 'Status'), status),
    field('email', 'Customer email', 'email', { value: params.get('email') || '', autocomplete: 'off' }),
    field('since', 'Placed from', 'date', { value: params.get('since') || '' }),
    field('until', 'Placed until', 'date', { value: params.get('until') || '' }),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    for (const k of ['status', 'email', 'since', 'until']) {
      const v = form.elements[k].value.trim();
      if (v) next.set(k, v);
    }
    go(`/admin/orders${next.toString() ? `?${next}` : ''}`);
  });
  const summary = h('p', { role: 'status', id: 'results' });
  render('Orders', form, summary);
  const query = new URLSearchParams({ limit: '50' });
  if (params.get('status')) query.set('status', params.get('status'));
  if (params.get('email')) query.set('customer_email', params.get('email'));
  const since = dayBound(params.get('since') || '', false);
  const until = dayBound(params.get('until') || '', true);
  if (since) query.set('since', since);
  if (until) query.set('until', until);
  const fetchPage = (cursor) => {
    if (cursor) query.set('cursor', cursor);
    return api('GET', `/admin/orders?${query}`);
  };
  try {
    const page = await fetchPage(null);
    const body = h('tbody', {}, page.items.map(orderRow));
    const filters = [...params.keys()].length;
    summary.textContent = page.items.length
      ? `${page.items.length}${page.next_cursor ? '+' : ''} order${page.items.length === 1 ? '' : 's'}, newest first.`
      : `No order${filters ? ' matches these filters' : ' yet'}.`;
    if (!page.items.length) return;
    const t = table('Orders', ['Order', 'Placed', 'Customer', 'Status', { label: 'Lines', num: true }, { label: 'Total', num: true }], [], { id: 'orders' });
    t.querySelector('tbody').replaceWith(body);
    main.append(t, moreButton('More orders', page.next_cursor, fetchPage, (items) => body.append(...items.map(orderRow))));
  } catch (e) {
    failed(e);
  }
}

function actionForm(id, title, fields, submit, submitted, danger = false) {
  const form = h('form', { class: 'panel', id, 'aria-labelledby': `${id}-title`, novalidate: true },
    h('h3', { id: `${id}-title` }, title), ...fields,
    h('button', { type: 'submit', class: danger ? 'danger' : null }, submit));
  onSubmit(form, submitted);
  return form;
}

function orderActions(o, done) {
  const path = `/admin/orders/${encodeURIComponent(o.id)}`;
  const forms = [];
  if (o.status === 'confirmed') {
    forms.push(actionForm('ship', 'Ship', [
      field('carrier', 'Carrier', 'text', { required: true, autocomplete: 'off' }),
      field('tracking_number', 'Tracking number', 'text', { required: true, autocomplete: 'off' })],
    'Mark shipped', async (e) => {
      await api('POST', `${path}/ship`, { carrier: e.carrier.value.trim(), tracking_number: e.tracking_number.value.trim() });
      done('Order shipped; the customer is emailed the tracking number.');
    }));
  }
  if (o.status === 'shipped') {
    forms.push(actionForm('deliver', 'Deliver', [h('p', {}, 'The carrier delivered the parcel.')], 'Mark delivered', async () => {
      await api('POST', `${path}/deliver`, {});
      done('Order delivered.');
    }));
  }
  if (['pending', 'awaiting_confirmation', 'awaiting_payment', 'confirmed'].includes(o.status)) {
    const paid = o.status === 'confirmed';
    forms.push(actionForm('cancel', paid ? 'Cancel and refund' : 'Cancel', [
      paid ? h('p', {}, `The card is refunded ${money(o.total_cents, o.currency)} and the units return to stock.`)
        : h('p', {}, 'The reserved units are released.'),
      field('reason', 'Reason (for the log)', 'text', { required: true, autocomplete: 'off' })],
    paid ? 'Cancel and refund' : 'Cancel order', async (e) => {
      await api('POST', `${path}/cancel`, { reason: e.reason.value.trim() });
      done(paid ? 'Order cancelled; the refund is on its way.' : 'Order cancelled.');
    }, true));
  }
  if (o.refund && o.refund.status === 'failed') {
    forms.push(actionForm('refund', 'Refund failed', [h('p', {}, 'The provider refused the refund; ask it again.')], 'Retry the refund', async () => {
      await api('POST', `${path}/refund`);
      done('Refund asked again.');
    }));
  }
  return forms.length ? [h('h2', {}, 'Actions'), h('div', { class: 'actions' }, forms)] : [];
}

async function orderPage(id, message = null) {
  if (!requireAdmin()) return;
  render(`Order ${id}`);
  let o;
  try {
    o = await api('GET', `/admin/orders/${encodeURIComponent(id)}`);
  } catch (e) {
    render(e instanceof ApiError && e.status === 404 ? 'Order not found' : `Order ${id}`);
    failed(e);
    return;
  }
  const done = (text) => {
    announce(text);
    orderPage(id, text);
  };
  const facts = [
    h('dt', {}, 'Status'), h('dd', { id: 'order-status' }, statusBadge(o.status)),
    h('dt', {}, 'Customer'), h('dd', {}, o.customer && o.customer.email
      ? h('a', { href: `/admin/orders?email=${encodeURIComponent(o.customer.email)}` }, o.customer.email) : 'erased'),
    h('dt', {}, 'Placed'), h('dd', {}, time(o.created_at)),
    h('dt', {}, 'Total'), h('dd', {}, money(o.total_cents, o.currency)),
  ];
  if (o.payment && o.payment.last4) facts.push(h('dt', {}, 'Card'), h('dd', {}, `${o.payment.brand} ending ${o.payment.last4}`));
  if (o.refund) facts.push(h('dt', {}, 'Refund'), h('dd', { id: 'order-refund' }, `${money(o.refund.amount_cents, o.currency)}, ${o.refund.status}`));
  if (o.shipment) {
    facts.push(h('dt', {}, 'Shipment'), h('dd', { id: 'order-shipment' }, `${o.shipment.carrier} ${o.shipment.tracking_number}, shipped ${time(o.shipment.shipped_at)}`,
      o.shipment.delivered_at ? `, delivered ${time(o.shipment.delivered_at)}` : ''));
  }
  render(`Order ${o.id}`,
    message ? h('p', { role: 'status', class: 'saved', id: 'order-message', tabindex: '-1' }, message) : null,
    h('dl', { class: 'facts' }, facts),
    table('Order lines', ['Product', { label: 'Quantity', num: true }, { label: 'Unit price', num: true }],
      o.items.map((l) => h('tr', {}, h('th', { scope: 'row' }, l.name), h('td', { class: 'num' }, String(l.quantity)),
        h('td', { class: 'num' }, money(l.unit_price_cents, o.currency))))),
    ...orderActions(o, done),
    h('h2', {}, 'Status history'),
    h('ol', { id: 'order-history' }, o.history.map((e) => h('li', {}, statusBadge(e.status), ` ${time(e.at)}`, e.reason ? ` (${e.reason})` : ''))),
    h('h2', {}, 'Timeline'),
    h('p', { class: 'muted' }, 'Every event of the order\'s story, across the order, its stock, payment, cart and emails.'),
    table('Timeline', [{ label: 'Seq', num: true }, 'Time', 'Aggregate', 'Event', 'Summary'],
      o.timeline.map((e) => h('tr', {}, h('td', { class: 'num' }, String(e.seq)), h('td', { class: 'when' }, time(e.at, 'medium')),
        h('td', {}, e.aggregate), h('td', {}, e.type), h('td', {}, e.summary))), { id: 'timeline' }),
    o.timeline_truncated ? h('p', { class: 'muted' }, 'The timeline is cut at 256 events; “orion replay --order ID” tells the rest.') : null,
    h('p', {}, h('a', { href: '/admin/orders' }, 'Back to the orders')));
  if (message) document.getElementById('order-message').focus(); // the answer, then the page
}

// ---- mail log --------------------------------------------------------------

function mailRow(m, onResend) {
  const what = m.order_id ? h('a', { href: `/admin/orders/${encodeURIComponent(m.order_id)}` }, m.order_id)
    : m.product_id ? h('a', { href: `/admin/products/${encodeURIComponent(m.product_id)}` }, m.product_id) : '';
  let action = '';
  if (m.order_id && m.status !== 'pending') {
    action = h('button', { type: 'button', class: m.status === 'failed' ? null : 'secondary', 'data-resend': m.id }, 'Resend',
      h('span', { class: 'visually-hidden' }, ` the ${m.kind} email to ${m.recipient}`));
    action.addEventListener('click', () => onResend(m, action));
  }
  return h('tr', { 'data-mail-id': m.id, 'data-status': m.status },
    h('td', {}, h('span', { class: `badge ${m.status}` }, m.status)),
    h('td', {}, m.kind.replace(/_/g, ' ')), h('td', {}, what), h('td', {}, m.recipient),
    h('td', { class: 'num' }, String(m.attempts)), h('td', {}, m.last_error || ''),
    h('td', {}, time(m.delivered_at || m.updated_at)), h('td', {}, action));
}

// (a function: each table needs its own header cells)
const mailColumns = () => ['Status', 'Email', 'Order or product', 'Recipient', { label: 'Attempts', num: true }, 'Last error', 'Updated',
  h('span', { class: 'visually-hidden' }, 'Actions')];

async function mailPage(message = null) {
  if (!requireAdmin()) return;
  const refresh = h('button', { type: 'button', class: 'secondary', id: 'refresh' }, 'Refresh');
  refresh.addEventListener('click', () => { announce('Mail log refreshed.'); mailPage(); });
  render('Mail log', message ? h('p', { role: 'status', class: 'saved', id: 'mail-message', tabindex: '-1' }, message) : null,
    h('p', {}, 'Failed emails first: the mail role gave up on them after its attempts. A resend opens the email\'s log again and sends it once more. ', refresh));
  if (message) document.getElementById('mail-message').focus(); // the answer, then the log
  const onResend = async (m, button) => {
    button.disabled = true;
    try {
      await api('POST', `/admin/mail/${encodeURIComponent(m.id)}/resend`, {});
      mailPage(`Resend of the ${m.kind.replace(/_/g, ' ')} email to ${m.recipient} requested.`);
      announce('Resend requested.');
    } catch (e) {
      button.disabled = false;
      failed(e, button.parentNode);
    }
  };
  try {
    const [bad, all] = await Promise.all([collect('/admin/mail', { status: 'failed' }, 1), api('GET', `/admin/mail?limit=${PAGE_LIMIT}`)]);
    main.append(h('h2', { id: 'failed-title' }, `Failed (${atLeast(bad.items.length, bad.more)})`),
      bad.items.length ? table('Failed emails', mailColumns(), bad.items.map((m) => mailRow(m, onResend)), { id: 'mail-failed' })
        : h('p', { id: 'mail-failed-none' }, 'No failed email.'));
    const rest = (items) => items.filter((m) => m.status !== 'failed').map((m) => mailRow(m, onResend));
    const body = h('tbody', {}, rest(all.items));
    const t = table('Other emails', mailColumns(), [], { id: 'mail-all' });
    t.querySelector('tbody').replaceWith(body);
    main.append(h('h2', {}, 'Pending and delivered'), t,
      moreButton('More emails', all.next_cursor, (c) => api('GET', `/admin/mail?limit=${PAGE_LIMIT}&cursor=${encodeURIComponent(c)}`),
        (items) => body.append(...rest(items))));
  } catch (e) {
    failed(e);
  }
}

// ---- routing ---------------------------------------------------------------

// Each page: its path, and the function that draws it (with the path's id).
const PAGES = [
  [/^\/admin\/login$/, loginPage],
  [/^\/admin\/$/, dashboardPage],
  [/^\/admin\/products$/, productsPage],
  [/^\/admin\/products\/new$/, newProductPage],
  [/^\/admin\/products\/([A-Za-z0-9_-]+)$/, productPage],
  [/^\/admin\/inventory$/, inventoryPage],
  [/^\/admin\/orders$/, ordersPage],
  [/^\/admin\/orders\/([A-Za-z0-9_-]+)$/, orderPage],
  [/^\/admin\/mail$/, mailPage],
];

function route() {
  if (leaving) leaving.abort(); // the page left: its streams end
  leaving = new AbortController();
  updateNav();
  for (const [re, page] of PAGES) {
    const m = location.pathname.match(re);
    if (m) return m[1] ? page(m[1]) : page();
  }
  return render('Page not found', h('p', {}, h('a', { href: '/admin/' }, 'Back to the dashboard')));
}

// Links inside the console navigate in the page (no reload); the shop's and
// the API's are ordinary navigations.
followLinks((url) => url.pathname.startsWith('/admin/'), go);
window.addEventListener('popstate', () => { navigated = true; route(); });
route();
