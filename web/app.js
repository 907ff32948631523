// app.js — the demo storefront: plain ES modules, no build step, talking
// only to the public REST API (and, for the card, to the payment provider).
import { api, ApiError, session, idempotencyKey, streamEvents, money } from './api.js';
import { h, announcer, errorBox, fieldErrors, field as labelledField, followLinks } from './dom.js';

const main = document.getElementById('main');
const announcerRegion = document.getElementById('announce');
let leaving = null; // AbortController of the current page's work (streams)

const announce = announcer(announcerRegion);

// A page loaded by the browser keeps the browser's focus (the skip link
// comes first); after an in-page navigation the focus moves to the content,
// so keyboard and screen reader users land on the new page's heading.
let navigated = false;

function render(title, ...children) {
  document.title = `${title} — Orion shop`;
  main.replaceChildren(h('h1', { id: 'page-title' }, title), ...children.filter((c) => c !== null && c !== undefined));
  if (navigated) main.focus();
}

export function go(path) {
  navigated = true;
  history.pushState(null, '', path);
  route();
}

function requireLogin() {
  if (session.token) return true;
  go(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  return false;
}

function updateNav() {
  const li = document.getElementById('nav-account');
  if (session.token) {
    li.replaceChildren(h('button', {
      class: 'secondary', type: 'button',
      onclick: async () => {
        try { await api('POST', '/auth/logout'); } catch { /* the token is dropped anyway */ }
        session.token = null;
        updateNav();
        go('/');
      },
    }, 'Sign out'));
  } else {
    li.replaceChildren(h('a', { href: '/login' }, 'Sign in'));
  }
}

// ---- catalog -------------------------------------------------------------

async function addToCart(productId, quantity, button) {
  if (!requireLogin()) return;
  button.disabled = true;
  try {
    const cart = await api('POST', '/cart/items', { product_id: productId, quantity });
    const count = cart.items.reduce((n, l) => n + l.quantity, 0);
    announce(`Added to cart. The cart holds ${count} item${count === 1 ? '' : 's'}.`);
    button.firstChild.textContent = 'Added';
  } catch (e) {
    button.after(errorBox(e));
  } finally {
    button.disabled = false;
  }
}

function productCard(p) {
  const button = h('button', { type: 'button', 'data-add': p.name }, 'Add to cart',
    h('span', { class: 'visually-hidden' }, `: ${p.name}`));
  button.addEventListener('click', () => addToCart(p.id, 1, button));
  return h('li', { class: 'card' },
    h('h2', {}, h('a', { href: `/products/${encodeURIComponent(p.id)}` }, p.name)),
    h('p', { class: 'muted' }, p.category || ''),
    h('p', { class: 'price' }, money(p.price_cents, p.currency)),
    h('p', {}, p.available > 0 ? `${p.available} in stock` : 'Out of stock'),
    p.available > 0 ? button : null);
}

let knownCategories = new Set();

async function catalogPage() {
  const params = new URLSearchParams(location.search);
  const q = params.get('q') || '';
  const category = params.get('category') || '';
  const query = new URLSearchParams({ limit: '50' });
  if (q) query.set('q', q);
  if (category) query.set('category', category);
  const list = h('ul', { class: 'grid', 'aria-label': 'Products' });
  const select = h('select', { id: 'category', name: 'category' }, h('option', { value: '' }, 'All categories'));
  const form = h('form', { class: 'search', role: 'search' },
    h('div', {}, h('label', { for: 'q' }, 'Search products'),
      h('input', { id: 'q', name: 'q', type: 'search', value: q })),
    h('div', {}, h('label', { for: 'category' }, 'Category'), select),
    h('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    const fq = form.elements.q.value.trim();
    if (fq) next.set('q', fq);
    if (select.value) next.set('category', select.value);
    go(`/${next.toString() ? `?${next}` : ''}`);
  });
  const summary = h('p', { id: 'results', role: 'status' });
  render('Catalog', form, summary, list);
  try {
    const page = await api('GET', `/products?${query}`);
    if (!q && !category) knownCategories = new Set(page.items.map((p) => p.category).filter(Boolean));
    for (const c of [...knownCategories, category].filter(Boolean).sort()) {
      if (![...select.options].some((o) => o.value === c)) select.append(h('option', { value: c }, c));
    }
    select.value = category;
    list.replaceChildren(...page.items.map(productCard));
    summary.textContent = `${page.items.length} product${page.items.length === 1 ? '' : 's'}` +
      (q ? ` matching “${q}”` : '') + (category ? ` in ${category}` : '');
  } catch (e) {
    list.replaceWith(errorBox(e));
  }
}

async function productPage(id) {
  render('Product');
  try {
    const p = await api('GET', `/products/${encodeURIComponent(id)}`);
    const qty = h('input', { id: 'qty', type: 'number', min: '1', max: '999', value: '1', inputmode: 'numeric' });
    const button = h('button', { type: 'submit' }, 'Add to cart');
    const form = h('form', {}, h('div', { class: 'field' }, h('label', { for: 'qty' }, 'Quantity'), qty), button);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      addToCart(p.id, Number(qty.value) || 1, button);
    });
    render(p.name,
      h('p', { class: 'price' }, money(p.price_cents, p.currency)),
      h('p', {}, p.description || ''),
      h('p', { class: 'muted' }, `SKU ${p.sku} · ${p.category || 'uncategorised'} · ${p.available} in stock`),
      p.available > 0 ? form : h('p', {}, 'Out of stock'),
      h('p', {}, h('a', { href: '/' }, 'Back to the catalog')));
  } catch (e) {
    render(e instanceof ApiError && e.status === 404 ? 'Product not found' : 'Product', errorBox(e));
  }
}

// ---- cart ----------------------------------------------------------------

function cartTable(cart, onChange) {
  const rows = cart.items.map((l) => {
    const inputId = `qty-${l.product_id}`;
    const qty = h('input', { id: inputId, type: 'number', min: '0', max: '999', value: String(l.quantity),
      inputmode: 'numeric', class: 'qty' });
    qty.addEventListener('change', () => onChange(l.product_id, Number(qty.value)));
    const remove = h('button', { type: 'button', class: 'secondary' }, 'Remove',
      h('span', { class: 'visually-hidden' }, `: ${l.name}`));
    remove.addEventListener('click', () => onChange(l.product_id, 0));
    return h('tr', {},
      h('th', { scope: 'row' }, l.name),
      h('td', {}, money(l.unit_price_cents, cart.currency)),
      h('td', {}, h('label', { for: inputId, class: 'visually-hidden' }, `Quantity of ${l.name}`), qty),
      h('td', { class: 'line-total' }, money(l.line_total_cents, cart.currency)),
      h('td', {}, remove));
  });
  return h('table', {},
    h('caption', { class: 'visually-hidden' }, 'Cart lines'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col' }, 'Price'),
      h('th', { scope: 'col' }, 'Quantity'), h('th', { scope: 'col' }, 'Total'),
      h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
    h('tbody', {}, rows));
}

async function cartPage() {
  if (!requireLogin()) return;
  render('Your cart');
  const show = (cart) => {
    if (!cart.items.length) {
      render('Your cart', h('p', {}, 'Your cart is empty. ', h('a', { href: '/' }, 'Browse the catalog')));
      return;
    }
    const place = h('button', { type: 'button', id: 'place-order' }, 'Place order');
    place.addEventListener('click', async () => {
      place.disabled = true;
      try {
        const order = await api('POST', '/orders', {}, { 'Idempotency-Key': idempotencyKey() });
        go(`/orders/${encodeURIComponent(order.id)}`);
      } catch (e) {
        place.disabled = false;
        place.after(errorBox(e));
      }
    });
    const total = h('p', { class: 'price', id: 'cart-total' }, `Total: ${money(cart.total_cents, cart.currency)}`);
    render('Your cart', cartTable(cart, async (productId, quantity) => {
      try {
        const next = await api('PUT', `/cart/items/${encodeURIComponent(productId)}`, { quantity });
        show(next);
        announce(`Cart updated. Total ${money(next.total_cents, next.currency)}.`);
        const again = document.getElementById(`qty-${productId}`);
        if (again) again.focus();
      } catch (e) {
        main.append(errorBox(e));
      }
    }), total, h('p', {}, 'Placing the order reserves the stock; a confirmation link is emailed to you.'), place);
  };
  try {
    show(await api('GET', '/cart'));
  } catch (e) {
    main.append(errorBox(e));
  }
}

// ---- accounts ------------------------------------------------------------

// A required input with its autocomplete token (dom.js lays it out).
function field(id, label, type, autocomplete, extra = {}) {
  return labelledField(id, label, type, { autocomplete, required: true, ...extra });
}

async function login(email, password) {
  const t = await api('POST', '/auth/login', { email, password });
  session.token = t.access_token;
  updateNav();
}

function nextPath() {
  const next = new URLSearchParams(location.search).get('next') || '/';
  return next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

function loginPage() {
  const form = h('form', {}, field('email', 'Email', 'email', 'username'),
    field('password', 'Password', 'password', 'current-password'),
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await login(form.elements.email.value, form.elements.password.value);
      go(nextPath());
    } catch (e) {
      fieldErrors(form, e);
    }
  });
  render('Sign in', form, h('p', {}, 'New here? ', h('a', { href: `/register${location.search}` }, 'Create an account')),
    h('p', {}, h('a', { href: '/forgot-password' }, 'Forgot your password?')));
}

function registerPage() {
  const form = h('form', {}, field('name', 'Name', 'text', 'name'), field('email', 'Email', 'email', 'username'),
    field('password', 'Password', 'password', 'new-password', { minlength: '12' }),
    h('p', { class: 'muted', id: 'password-hint' }, 'At least 12 characters; not a common password.'),
    h('button', { type: 'submit' }, 'Create account'));
  form.elements.password.setAttribute('aria-describedby', 'password-hint');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const { name, email, password } = form.elements;
    try {
      // 202 whether or not the address has an account (ADR 031): the email says which
      await api('POST', '/auth/register', { name: name.value, email: email.value, password: password.value });
      try {
        await login(email.value, password.value);
      } catch { /* an address that had an account, with another password: the email tells its owner */ }
      checkEmailPage(email.value);
    } catch (e) {
      fieldErrors(form, e);
    }
  });
  render('Create an account', form);
}

// After registering: the address is verified by the emailed link before
// the shopper can place an order (the cart and the catalog work meanwhile).
function checkEmailPage(email) {
  announce('Check your email to verify your address.');
  render('Check your email',
    h('p', { id: 'check-email' }, `We sent an email to ${email}. Open the link in it to verify your address: `,
      'you can place orders once it is verified.'),
    h('p', { class: 'muted' }, 'No email? Look in your spam folder. If you already had an account, the email says so.'),
    h('p', {}, h('a', { href: nextPath() }, 'Continue shopping')));
}

function forgotPasswordPage() {
  const form = h('form', {}, field('email', 'Email', 'email', 'username'),
    h('button', { type: 'submit' }, 'Email me a reset link'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', '/auth/password-reset', { email: form.elements.email.value });
      render('Check your email', h('p', { id: 'check-email' },
        'If an account has this address, we emailed it a link to choose a new password. The link works once, for an hour.'));
    } catch (e) {
      fieldErrors(form, e);
    }
  });
  render('Reset your password', form);
}

// The emailed reset link opens here: /reset-password?token=...
function resetPasswordPage() {
  const token = new URLSearchParams(location.search).get('token') || '';
  const form = h('form', {}, field('password', 'New password', 'password', 'new-password', { minlength: '12' }),
    h('p', { class: 'muted', id: 'password-hint' }, 'At least 12 characters; not a common password.'),
    h('button', { type: 'submit' }, 'Set the new password'));
  form.elements.password.setAttribute('aria-describedby', 'password-hint');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', '/auth/password-reset/confirm', { token, password: form.elements.password.value });
      session.token = null;
      updateNav();
      render('Password changed', h('p', {}, 'Your password is changed, and every device was signed out. ',
        h('a', { href: '/login' }, 'Sign in')));
    } catch (e) {
      fieldErrors(form, e);
    }
  });
  render('Choose a new password', form);
}

// ---- orders --------------------------------------------------------------

const STATUS_TEXT = {
  pending: 'Placed: reserving the stock',
  awaiting_confirmation: 'Awaiting confirmation: open the link we emailed you',
  awaiting_payment: 'Confirmed by email: awaiting payment',
  confirmed: 'Paid and confirmed',
  cancelled: 'Cancelled',
  payment_failed: 'Payment failed',
  shipped: 'Shipped',
  delivered: 'Delivered',
};

function statusBadge(status) {
  return h('span', { class: `status ${status}`, 'data-status': status }, status);
}

async function ordersPage() {
  if (!requireLogin()) return;
  render('Your orders');
  try {
    const page = await api('GET', '/orders?limit=50');
    if (!page.items.length) {
      main.append(h('p', {}, 'No orders yet.'));
      return;
    }
    main.append(h('ul', { class: 'orders' }, page.items.map((o) => h('li', {},
      h('a', { href: `/orders/${encodeURIComponent(o.id)}` }, `Order ${o.id}`), ' — ', statusBadge(o.status),
      ` — ${money(o.total_cents, o.currency)}`, o.created_at ? ` — ${new Date(o.created_at).toLocaleString('en')}` : ''))));
  } catch (e) {
    main.append(errorBox(e));
  }
}

// The card goes to the provider only: Orion gets the payment method's id.
async function tokenize(config, card) {
  const form = new URLSearchParams({
    type: 'card', 'card[number]': card.number, 'card[exp_month]': card.exp_month,
    'card[exp_year]': card.exp_year, 'card[cvc]': card.cvc,
  });
  const res = await fetch(`${config.provider_url.replace(/\/$/, '')}/v1/payment_methods`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${config.publishable_key}`, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form.toString(),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((data.error && data.error.message) || 'the card was refused');
  return data.id;
}

function paymentForm(order, onPaid) {
  const form = h('form', { id: 'pay', 'aria-labelledby': 'pay-title' },
    h('h2', { id: 'pay-title' }, 'Pay by card'),
    h('p', { class: 'muted' }, 'Your card number goes straight to the payment provider; the shop never sees it.'),
    field('card-number', 'Card number', 'text', 'cc-number', { inputmode: 'numeric', pattern: '[0-9 ]{12,23}' }),
    h('div', { class: 'row' },
      field('exp-month', 'Expiry month', 'number', 'cc-exp-month', { min: '1', max: '12' }),
      field('exp-year', 'Expiry year', 'number', 'cc-exp-year', { min: '2024', max: '2099' }),
      field('cvc', 'Security code', 'text', 'cc-csc', { inputmode: 'numeric', pattern: '[0-9]{3,4}' })),
    h('button', { type: 'submit' }, `Pay ${money(order.total_cents, order.currency)}`));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    form.querySelectorAll('.error').forEach((n) => n.remove());
    try {
      const config = await api('GET', '/payments/config');
      const pm = await tokenize(config, {
        number: form.elements['card-number'].value.replace(/\s+/g, ''),
        exp_month: form.elements['exp-month'].value, exp_year: form.elements['exp-year'].value,
        cvc: form.elements.cvc.value,
      });
      const paid = await api('POST', `/orders/${encodeURIComponent(order.id)}/payment`, { payment_method: pm },
        { 'Idempotency-Key': idempotencyKey() });
      const action = paid.payment && paid.payment.next_action;
      const url = action && (action.url || (action.redirect_to_url && action.redirect_to_url.url));
      if (url) {
        announce('Your bank asks you to approve the payment; opening its page.');
        // 3-D Secure: the provider returns to /orders/{id}, where the order
        // may still await its webhook (the view need not show the challenge).
        sessionStorage.setItem(`orion.3ds.${order.id}`, url);
        location.assign(url);
        return;
      }
      onPaid(paid);
    } catch (e) {
      button.disabled = false;
      form.append(errorBox(e));
    }
  });
  return form;
}

async function orderPage(id) {
  if (!requireLogin()) return;
  render('Order');
  let order;
  try {
    order = await api('GET', `/orders/${encodeURIComponent(id)}`);
  } catch (e) {
    render(e instanceof ApiError && e.status === 404 ? 'Order not found' : 'Order', errorBox(e));
    return;
  }
  const statusLine = h('p', { id: 'order-status', role: 'status', 'aria-live': 'polite' });
  const history = h('ol', { id: 'order-history' });
  const payArea = h('div', { id: 'pay-area' });
  const show = (status, entries) => {
    statusLine.replaceChildren('Status: ', statusBadge(status), ' ', STATUS_TEXT[status] || '');
    history.replaceChildren(...entries.map((e) => h('li', {}, `${e.status}`,
      e.reason ? ` (${e.reason})` : '', e.at ? ` — ${new Date(e.at).toLocaleString('en')}` : '')));
    const challengeKey = `orion.3ds.${order.id}`;
    const action = order.payment && order.payment.status === 'requires_action' ? order.payment.next_action : null;
    const actionUrl = (action && (action.url || (action.redirect_to_url && action.redirect_to_url.url))) ||
      sessionStorage.getItem(challengeKey);
    if (status !== 'awaiting_payment') sessionStorage.removeItem(challengeKey);
    if (status === 'awaiting_payment' && actionUrl) {
      // Back from (or away from) the bank's page: its webhook settles the
      // order; until then the check can be opened again, or another card used.
      const other = h('button', { type: 'button', class: 'secondary' }, 'Pay with another card');
      other.addEventListener('click', () => {
        sessionStorage.removeItem(challengeKey);
        if (order.payment && order.payment.status === 'requires_action') order.payment = null;
        payArea.replaceChildren(paymentForm(order, (paid) => { order = paid; show(paid.status, paid.history || entries); }));
        payArea.querySelector('input').focus();
      });
      payArea.replaceChildren(h('div', { id: 'pay-pending' },
        h('p', {}, 'Your bank is checking the payment; this page shows the result as soon as it arrives. ',
          h('a', { href: actionUrl }, 'Open the 3-D Secure check again')), other));
    } else if (status === 'awaiting_payment') {
      if (!payArea.querySelector('#pay')) {
        payArea.replaceChildren(paymentForm(order, (paid) => { order = paid; show(paid.status, paid.history || entries); }));
      }
    } else {
      payArea.replaceChildren();
    }
  };
  render(`Order ${order.id}`, statusLine,
    h('table', {}, h('caption', { class: 'visually-hidden' }, 'Order lines'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col' }, 'Quantity'),
        h('th', { scope: 'col' }, 'Price'))),
      h('tbody', {}, order.items.map((l) => h('tr', {}, h('th', { scope: 'row' }, l.name),
        h('td', {}, String(l.quantity)), h('td', {}, money(l.unit_price_cents, order.currency)))))),
    h('p', { class: 'price' }, `Total: ${money(order.total_cents, order.currency)}`),
    order.payment && order.payment.last4 ? h('p', {}, `Card: ${order.payment.brand} ending ${order.payment.last4}`) : null,
    payArea,
    h('h2', {}, 'History'), history);
  const entries = [...(order.history || [])];
  show(order.status, entries);
  // Live status: the events route over fetch() (it needs the bearer token).
  const seen = new Set(entries.map((e) => `${e.status}@${e.at}`));
  streamEvents(`/orders/${encodeURIComponent(order.id)}/events`, ({ event, data }) => {
    if (event !== 'status') return;
    let entry;
    try { entry = JSON.parse(data); } catch { return; }
    if (seen.has(`${entry.status}@${entry.at}`)) return;
    seen.add(`${entry.status}@${entry.at}`);
    entries.push(entry);
    show(entry.status, entries);
    announce(`Order status: ${STATUS_TEXT[entry.status] || entry.status}`);
  }, { signal: leaving.signal });
}

// ---- the confirmation link (the email's link, opened in the shop) ---------

async function confirmPage(id) {
  const token = new URLSearchParams(location.search).get('token') || '';
  const button = h('button', { type: 'button', id: 'confirm' }, 'Confirm my order');
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const order = await api('POST', `/orders/${encodeURIComponent(id)}/confirm`, { token });
      render('Order confirmed', h('p', {}, `Thank you: order ${order.id} is confirmed and awaits payment.`),
        h('p', {}, h('a', { href: `/orders/${encodeURIComponent(order.id)}` }, 'Go to the order and pay')));
    } catch (e) {
      button.disabled = false;
      button.after(errorBox(e));
    }
  });
  render('Confirm your order', h('p', {}, `Confirm order ${id} to go on to payment.`), button);
}

// ---- routing -------------------------------------------------------------

async function route() {
  if (leaving) leaving.abort();
  leaving = new AbortController();
  updateNav();
  const path = location.pathname;
  let m;
  if (path === '/') return catalogPage();
  if ((m = path.match(/^\/products\/([A-Za-z0-9_-]+)$/))) return productPage(m[1]);
  if (path === '/cart') return cartPage();
  if (path === '/login') return loginPage();
  if (path === '/register') return registerPage();
  if (path === '/forgot-password') return forgotPasswordPage();
  if (path === '/reset-password') return resetPasswordPage();
  if (path === '/orders') return ordersPage();
  if ((m = path.match(/^\/orders\/([A-Za-z0-9_-]+)$/))) return orderPage(m[1]);
  if ((m = path.match(/^\/confirm\/([A-Za-z0-9_-]+)$/))) return confirmPage(m[1]);
  render('Page not found', h('p', {}, h('a', { href: '/' }, 'Back to the catalog')));
}

// Same-origin links navigate inside the page (no reload, the token stays).
followLinks((url) => !url.pathname.startsWith('/api/') && !url.pathname.startsWith('/admin'), go);
window.addEventListener('popstate', () => { navigated = true; route(); });
route();
