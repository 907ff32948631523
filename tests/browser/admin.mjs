// admin.mjs — the `browser` suite's admin story, in Debian's chromium
// (headless, driven by puppeteer-core) against a real `orion serve` whose
// mail goes to a small SMTP sink of the test (orion.mjs):
//
// a link into the console asks to sign in first, and a customer is refused;
// the admin signs in by keyboard, lands on the linked order, and sees the
// dashboard's numbers; creates a product (a bad price first: the API's field
// error shows by the field), edits it, sees it in the storefront; adjusts
// stock on the inventory page, whose levels also change live (no reload) when
// stock moves elsewhere; finds a shopper's orders by email, ships one (its
// email is refused by the SMTP sink, so it fails), delivers it, cancels and
// refunds the other; resends the failed email from the mail log, which then
// shows it delivered; deletes a product; signs out (the token ends).
//
// The shoppers and their paid orders are made through the REST API in the
// set-up. Every console page: no console error, no failed request (nor an
// answer >= 400 the story did not provoke), axe-core with no serious or
// critical violation; each page's JavaScript and first render are printed,
// not asserted. On failure every open tab is screenshotted into
// ORION_BROWSER_ARTIFACTS (meson: <build>/meson-logs/browser); a passing run
// leaves console.png (the dashboard, the README's picture) and
// console-order.png (a paid order on the desk, before it ships) there.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ADMIN, apiCall, createChecker, launchBrowser, shopperToken, startOrion, startSmtpSink, waitFor } from './orion.mjs';

const artifacts = process.env.ORION_BROWSER_ARTIFACTS || path.join(process.cwd(), 'meson-logs', 'browser');
const step = (s) => console.log(`-- ${s}`);
const check = createChecker({ artifacts });
const stamp = Date.now().toString(36);

async function adminToken(base) {
  const r = await apiCall(base, 'POST', '/auth/login', { body: ADMIN });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

async function seedCatalog(base, token) {
  const products = [
    { sku: 'LAMP-1', name: 'Desk lamp', description: 'A warm LED desk lamp.', price_cents: 3900, category: 'home', initial_stock: 50 },
    { sku: 'MUG-1', name: 'Coffee mug', description: 'Stoneware, 350 ml.', price_cents: 1250, category: 'kitchen', initial_stock: 50 },
    { sku: 'VASE-1', name: 'Glass vase', description: 'The last few.', price_cents: 2400, category: 'home', initial_stock: 2 },
    { sku: 'POSTER-1', name: 'Old poster', description: 'To be removed.', price_cents: 500, category: 'home', initial_stock: 1 },
  ];
  const ids = {};
  for (const p of products) {
    const r = await apiCall(base, 'POST', '/admin/products', { token, body: { ...p, currency: 'EUR', low_stock_threshold: 5 } });
    assert.equal(r.status, 201, r.text);
    ids[p.sku] = r.json.id;
  }
  await waitFor(async () => {
    const r = await apiCall(base, 'GET', '/products?limit=50');
    return r.status === 200 && r.json.items.length === products.length;
  }, 'the seeded catalog');
  return ids;
}

// A shopper's order paid with 4242 through the REST API (confirmed by the
// emailed token, the card tokenized at the provider): its id and total.
async function paidOrder(base, sink, token, lines) {
  for (const [productId, quantity] of lines) {
    const r = await apiCall(base, 'POST', '/cart/items', { token, body: { product_id: productId, quantity } });
    assert.equal(r.status, 200, r.text);
  }
  const placed = await apiCall(base, 'POST', '/orders', { token, body: {} });
  assert.equal(placed.status, 202, placed.text);
  const id = placed.json.id;
  const confirmed = await apiCall(base, 'POST', `/orders/${id}/confirm`, { body: { token: await sink.confirmationToken(id) } });
  assert.equal(confirmed.status, 200, confirmed.text);
  const config = (await apiCall(base, 'GET', '/payments/config')).json;
  const pm = await fetch(`${config.provider_url.replace(/\/$/, '')}/v1/payment_methods`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${config.publishable_key}`, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ type: 'card', 'card[number]': '4242424242424242', 'card[exp_month]': '12', 'card[exp_year]': '2031', 'card[cvc]': '123' }),
  }).then((r) => r.json());
  assert.ok(pm.id, JSON.stringify(pm));
  const paid = await apiCall(base, 'POST', `/orders/${id}/payment`, { token, body: { payment_method: pm.id } });
  assert.equal(paid.status, 200, paid.text);
  await waitFor(async () => (await apiCall(base, 'GET', `/orders/${id}`, { token })).json.status === 'confirmed', `order ${id} confirmed`);
  return { id, total: paid.json.total_cents };
}

// A fresh load of a page (its own first render); a page with a live stream
// never goes network-idle: 'load' for it.
async function open(page, base, p, name, waitUntil = 'networkidle0') {
  check.current = name;
  await page.goto(`${base}${p}`, { waitUntil });
}

// A console link followed inside the page (client-side routing).
async function follow(page, selector, name) {
  check.current = name;
  await page.click(selector);
}

const text = (page, selector) => page.$eval(selector, (e) => e.textContent.trim());

// An IANA zone of a whole-hour offset in which the time now is between 12:00 and 12:59.
function noonZone() {
  const offset = 12 - new Date().getUTCHours(); // -11 .. 12
  return offset >= 0 ? `Etc/GMT-${offset}` : `Etc/GMT+${-offset}`; // Etc/ signs are inverted
}

async function main() {
  const sink = await startSmtpSink();
  const orion = await startOrion({
    env: { ORION_SMTP_URL: sink.url, ORION_MAIL_MAX_ATTEMPTS: '2', ORION_REQUIRE_EMAIL_VERIFICATION: '0' },
  });
  step(`orion serve at ${orion.base} (data ${orion.dataDir}); mail to ${sink.url}`);
  const browser = await launchBrowser();
  let failed = null;
  try {
    const base = orion.base;
    const admin = await adminToken(base);
    const ids = await seedCatalog(base, admin);
    step('set-up: two shoppers; Ada pays two orders, Bob places one');
    const ada = `ada-${stamp}@orion.test`;
    const bob = `bob-${stamp}@orion.test`;
    const adaToken = await shopperToken(base, ada, undefined, 'Ada Shopper');
    const bobToken = await shopperToken(base, bob, undefined, 'Bob Shopper');
    const toShip = await paidOrder(base, sink, adaToken, [[ids['LAMP-1'], 1]]);
    const toRefund = await paidOrder(base, sink, adaToken, [[ids['MUG-1'], 2]]);
    const bobCart = await apiCall(base, 'POST', '/cart/items', { token: bobToken, body: { product_id: ids['MUG-1'], quantity: 1 } });
    assert.equal(bobCart.status, 200, bobCart.text);
    const bobOrder = await apiCall(base, 'POST', '/orders', { token: bobToken, body: {} });
    assert.equal(bobOrder.status, 202, bobOrder.text);
    await waitFor(async () => (await apiCall(base, 'GET', `/orders/${bobOrder.json.id}`, { token: bobToken })).json.status === 'awaiting_confirmation',
      'Bob\'s order awaiting confirmation');

    // the read models the console reads have caught up with the set-up
    await waitFor(async () => (await apiCall(base, 'GET', '/admin/inventory?limit=100', { token: admin })).json.items.filter((i) => i.low).length === 2,
      'the vase and the poster low in the inventory');

    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    // The console counts "today" from the browser's midnight: a zone where it is about
    // noon now, so a run near midnight cannot split the story's orders over two days.
    await page.emulateTimezone(noonZone());
    check.watch(page);

    step('a link into the console asks to sign in first; a customer is refused');
    await open(page, base, `/admin/orders/${bobOrder.json.id}`, 'console sign in');
    await page.waitForFunction(() => location.pathname === '/admin/login');
    assert.equal(new URL(page.url()).searchParams.get('next'), `/admin/orders/${bobOrder.json.id}`);
    await page.waitForSelector('#email');
    await check.checkPage(page, 'console sign in');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.className), 'skip', 'the skip link comes first');
    await page.type('#email', ada);
    await page.type('#password', 'correct horse battery staple 42');
    await page.click('form button[type=submit]');
    await page.waitForSelector('#not-admin');
    assert.match(await text(page, '#not-admin'), /customer account: the console is for admins/);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('orion.admin.token')), null, 'no customer session kept');
    await check.checkPage(page, 'console sign in', { measure: false });

    step('the admin signs in (by keyboard) and lands on the linked page; the dashboard');
    await page.click('#email', { clickCount: 3 });
    await page.keyboard.type(ADMIN.email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(ADMIN.password);
    await page.keyboard.press('Enter');
    check.current = 'order';
    await page.waitForSelector('#order-status [data-status="awaiting_confirmation"]');
    assert.equal(await text(page, 'h1'), `Order ${bobOrder.json.id}`);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'main', 'the focus is on the new page');
    await open(page, base, '/admin/', 'dashboard'); // a fresh load, measured
    await page.waitForSelector('.tiles[aria-busy="false"]');
    const tileValue = (id) => text(page, `#${id} .value`);
    assert.equal(await tileValue('tile-orders-today'), '3', 'orders today: Ada\'s two and Bob\'s');
    const revenue = await tileValue('tile-revenue');
    assert.equal(revenue, new Intl.NumberFormat('en', { style: 'currency', currency: 'EUR' }).format((toShip.total + toRefund.total) / 100), 'revenue: the paid orders');
    assert.equal(await tileValue('tile-open'), '3', 'open: two paid to ship, one awaiting confirmation');
    assert.equal(await tileValue('tile-low'), '2', 'low stock: the vase and the poster');
    await check.checkPage(page, 'dashboard');
    fs.mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, 'console.png') }); // the README's picture

    step('products: a bad price shows its field error, then the product is created');
    await follow(page, 'nav a[href="/admin/products"]', 'products');
    await page.waitForSelector('table tbody tr');
    assert.equal((await page.$$('table tbody tr')).length, 4);
    await check.checkPage(page, 'products', { measure: false });
    await follow(page, '#new-product', 'new product');
    await page.waitForSelector('#sku');
    await check.checkPage(page, 'new product', { measure: false });
    const name = `Walnut tray ${stamp}`;
    await page.type('#sku', `TRAY-${stamp}`.toUpperCase());
    await page.type('#name', name);
    await page.type('#description', 'Oiled walnut, 40 × 30 cm.');
    await page.type('#price', '-5');
    await page.type('#category', 'home');
    await page.click('#initial_stock', { clickCount: 3 });
    await page.keyboard.type('7');
    check.expectHttp(400, 'POST', /^\/api\/v1\/admin\/products$/);
    await page.click('#product-form button[type=submit]');
    await page.waitForSelector('#price-error');
    assert.match(await text(page, '#price-error'), /./);
    assert.equal(await page.$eval('#price', (e) => e.getAttribute('aria-invalid')), 'true');
    assert.match(await page.$eval('#price', (e) => e.getAttribute('aria-describedby')), /price-error/);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'price', 'the focus is on the bad field');
    console.log(`   price -5: "${await text(page, '#price-error')}"`);
    await check.checkPage(page, 'new product', { measure: false });
    check.doneExpecting();
    await page.click('#price', { clickCount: 3 });
    await page.keyboard.type('19.90');
    await page.click('#product-form button[type=submit]');
    await page.waitForSelector('#created');
    const productId = await page.evaluate(() => location.pathname.split('/').pop());
    assert.equal(await text(page, 'h1'), name);
    assert.equal(await page.$('#price-error'), null, 'the field error is gone');
    await open(page, base, `/admin/products/${productId}`, 'product');
    await page.waitForSelector('#product-form');
    await check.checkPage(page, 'product');

    step('edit: the price');
    await page.click('#price', { clickCount: 3 });
    await page.keyboard.type('21.50');
    await page.click('#product-form button[type=submit]');
    await page.waitForSelector('#product-form .saved');
    const stored = await apiCall(base, 'GET', `/admin/products/${productId}`, { token: admin });
    assert.equal(stored.json.price_cents, 2150, stored.text);

    step('the product in the storefront');
    await waitFor(async () => (await apiCall(base, 'GET', `/products/${productId}`)).status === 200 &&
      (await apiCall(base, 'GET', `/products/${productId}`)).json.price_cents === 2150, 'the product in the catalog');
    await open(page, base, `/?q=${encodeURIComponent('walnut')}`, 'storefront');
    await page.waitForSelector('.grid li');
    const cards = await page.$$eval('.grid li', (lis) => lis.map((li) => li.textContent));
    assert.ok(cards.some((c) => c.includes(name) && c.includes('€21.50') && c.includes('7 in stock')), cards.join(' | '));
    await check.checkPage(page, 'storefront', { measure: false });
    await open(page, base, '/admin/products?q=walnut', 'products');
    await page.waitForSelector('table tbody tr');
    assert.deepEqual(await page.$$eval('table tbody tr th', (ths) => ths.map((t) => t.textContent)), [name], 'the console\'s search');
    await check.checkPage(page, 'products');

    step('inventory: low items highlighted, an adjustment, live levels');
    await waitFor(async () => (await apiCall(base, 'GET', '/admin/inventory?limit=100', { token: admin })).json.items.some((i) => i.product_id === productId),
      'the new product in the inventory');
    await open(page, base, '/admin/inventory', 'inventory', 'load');
    await page.waitForSelector('#live[data-live="on"]');
    await page.waitForSelector(`tr[data-product-id="${productId}"]`);
    const row = (id) => `#inventory tr[data-product-id="${id}"]`;
    const cell = (id, col) => text(page, `${row(id)} [data-col="${col}"]`);
    assert.equal(await page.$eval(row(ids['VASE-1']), (r) => r.classList.contains('low')), true, 'the vase is low');
    assert.equal(await cell(ids['VASE-1'], 'low'), 'Low');
    assert.equal(await page.$eval(row(productId), (r) => r.classList.contains('low')), false);
    await check.checkPage(page, 'inventory');
    await page.evaluate(() => { window.__sameDocument = true; });
    await page.click(`${row(productId)} button[data-adjust]`);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'delta', 'Adjust moves the focus to the form');
    assert.equal(await page.$eval('#adjust-product', (s) => s.value), productId);
    await page.keyboard.type('-3');
    await page.click('#adjust button[type=submit]');
    await page.waitForFunction((sel) => document.querySelector(`${sel} [data-col="on_hand"]`).textContent === '4', {}, row(productId));
    await page.waitForFunction((sel) => document.querySelector(sel).classList.contains('low'), {}, row(productId));
    step('   stock moves elsewhere (the REST API): the page follows live');
    const lampBefore = Number(await cell(ids['LAMP-1'], 'on_hand'));
    const adjusted = await apiCall(base, 'POST', `/admin/inventory/${ids['LAMP-1']}/adjustments`,
      { token: admin, body: { delta: 10, reason: 'delivery from the supplier' } });
    assert.equal(adjusted.status, 200, adjusted.text);
    await page.waitForFunction((sel, want) => document.querySelector(`${sel} [data-col="on_hand"]`).textContent === want,
      {}, row(ids['LAMP-1']), String(lampBefore + 10));
    const restocked = await apiCall(base, 'POST', `/admin/inventory/${ids['VASE-1']}/adjustments`,
      { token: admin, body: { delta: 20, reason: 'restocked' } });
    assert.equal(restocked.status, 200, restocked.text);
    await page.waitForFunction((sel) => !document.querySelector(sel).classList.contains('low'), {}, row(ids['VASE-1']));
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the inventory page was not reloaded');
    await check.checkPage(page, 'inventory', { measure: false });

    step('orders desk: find Ada\'s orders by email');
    await follow(page, 'nav a[href="/admin/orders"]', 'orders');
    await page.waitForSelector('#orders tbody tr');
    assert.equal((await page.$$('#orders tbody tr')).length, 3, 'every order');
    await open(page, base, '/admin/orders', 'orders');
    await page.waitForSelector('#orders tbody tr');
    await check.checkPage(page, 'orders');
    await page.type('#email', ada);
    await page.click('form[role=search] button[type=submit]');
    await page.waitForFunction(() => new URL(location.href).searchParams.has('email') && document.querySelectorAll('#orders tbody tr').length === 2);
    const found = await page.$$eval('#orders tbody tr', (rs) => rs.map((r) => r.dataset.orderId).sort());
    assert.deepEqual(found, [toShip.id, toRefund.id].sort());
    await page.select('#status', 'awaiting_confirmation');
    await page.click('#email', { clickCount: 3 });
    await page.keyboard.press('Backspace');
    await page.click('form[role=search] button[type=submit]');
    await page.waitForFunction((id) => [...document.querySelectorAll('#orders tbody tr')].map((r) => r.dataset.orderId).join() === id, {}, bobOrder.json.id);
    await check.checkPage(page, 'orders', { measure: false });
    // today and yesterday as the page's clock and zone tell them
    const [today, yesterday] = await page.evaluate(() => {
      const day = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
      return [day(new Date()), day(new Date(Date.now() - 86400000))];
    });
    await open(page, base, `/admin/orders?until=${yesterday}`, 'orders');
    assert.match(await text(page, '#results'), /No order matches these filters/);
    assert.equal(await page.$eval('#until', (e) => e.value), yesterday, 'the filter stays in its field');
    await open(page, base, `/admin/orders?since=${today}&email=${encodeURIComponent(bob)}`, 'orders');
    await page.waitForSelector('#orders tbody tr');
    assert.deepEqual(await page.$$eval('#orders tbody tr', (rs) => rs.map((r) => r.dataset.orderId)), [bobOrder.json.id]);

    step('ship Ada\'s first order (its email refused by the SMTP sink: it fails)');
    sink.refuse(new RegExp(`^${ada.replace(/[.+]/g, '\\$&')}$`));
    await open(page, base, `/admin/orders/${toShip.id}`, 'order');
    await page.waitForSelector('#timeline tbody tr');
    const events = await page.$$eval('#timeline tbody tr td:nth-child(4)', (tds) => tds.map((t) => t.textContent));
    assert.ok(events.includes('OrderPlaced') && events.some((t) => /Paid/.test(t)), `timeline: ${events.join(', ')}`);
    await check.checkPage(page, 'order');
    await page.screenshot({ path: path.join(artifacts, 'console-order.png') }); // the README's second picture
    await page.type('#carrier', 'DHL');
    await page.type('#tracking_number', `JD${stamp}`.toUpperCase());
    await page.click('#ship button[type=submit]');
    await page.waitForSelector('#order-status [data-status="shipped"]');
    assert.match(await text(page, '#order-shipment'), new RegExp(`DHL JD${stamp}`, 'i'));
    assert.equal(await page.evaluate(() => document.activeElement.id), 'order-message', 'the focus is on the answer');
    await check.checkPage(page, 'order', { measure: false });
    const failedMail = await waitFor(async () => {
      const r = await apiCall(base, 'GET', `/admin/mail?order_id=${toShip.id}`, { token: admin });
      return r.json.items.find((m) => m.kind === 'shipped' && m.status === 'failed');
    }, 'the shipped email failed', 30000, 250);
    sink.refuse(null);

    step('deliver it');
    await page.click('#deliver button[type=submit]');
    await page.waitForSelector('#order-status [data-status="delivered"]');

    step('cancel and refund Ada\'s second order');
    await open(page, base, `/admin/orders?email=${encodeURIComponent(ada)}`, 'orders');
    await page.waitForSelector(`#orders tr[data-order-id="${toRefund.id}"] a`);
    await follow(page, `#orders tr[data-order-id="${toRefund.id}"] a`, 'order');
    await page.waitForSelector('#cancel');
    assert.equal(await text(page, '#cancel-title'), 'Cancel and refund');
    await page.type('#reason', 'the customer called: wrong colour');
    await page.click('#cancel button[type=submit]');
    await page.waitForSelector('#order-status [data-status="cancelled"]');
    assert.match(await text(page, '#order-refund'), /(pending|succeeded)$/);
    await waitFor(async () => (await apiCall(base, 'GET', `/admin/orders/${toRefund.id}`, { token: admin })).json.refund?.status === 'succeeded', 'the refund');
    await check.checkPage(page, 'order', { measure: false });

    step('mail log: the failed email first; resend it');
    await follow(page, 'nav a[href="/admin/mail"]', 'mail');
    await page.waitForSelector(`#mail-failed tr[data-mail-id="${failedMail.id}"]`);
    await open(page, base, '/admin/mail', 'mail');
    await page.waitForSelector(`#mail-failed tr[data-mail-id="${failedMail.id}"]`);
    const firstTable = await page.$eval('main table', (t) => t.id);
    assert.equal(firstTable, 'mail-failed', 'failed emails come first');
    await check.checkPage(page, 'mail');
    const before = sink.textsTo(ada).length;
    await page.click(`button[data-resend="${failedMail.id}"]`);
    await page.waitForSelector('#mail-message');
    await waitFor(async () => {
      await page.click('#refresh');
      await page.waitForSelector('#mail-all');
      return page.$(`#mail-all tr[data-mail-id="${failedMail.id}"][data-status="delivered"]`);
    }, 'the resent email delivered', 30000, 500);
    assert.equal(await page.$('#mail-failed-none') !== null || !(await page.$(`#mail-failed tr[data-mail-id="${failedMail.id}"]`)), true);
    const arrived = sink.textsTo(ada).slice(before);
    assert.ok(arrived.some((m) => m.includes(`JD${stamp}`.toUpperCase())), 'the shipped email (with its tracking number) reached the shopper');
    await check.checkPage(page, 'mail', { measure: false });

    step('delete a product');
    await open(page, base, `/admin/products/${ids['POSTER-1']}`, 'product');
    await page.waitForSelector('#delete');
    await page.click('#delete');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'delete-yes');
    await check.checkPage(page, 'product', { measure: false });
    await page.click('#delete-yes');
    await page.waitForFunction(() => location.pathname === '/admin/products');
    assert.equal((await apiCall(base, 'GET', `/admin/products/${ids['POSTER-1']}`, { token: admin })).status, 404);

    step('sign out: the token ends');
    const token = await page.evaluate(() => sessionStorage.getItem('orion.admin.token'));
    await page.click('#sign-out');
    await page.waitForFunction(() => location.pathname === '/admin/login');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('orion.admin.token')), null);
    assert.equal(await page.$eval('#nav', (n) => n.hidden), true, 'no console menu when signed out');
    assert.equal((await apiCall(base, 'GET', '/me', { token })).status, 401, 'the server refuses the ended token');
    await check.checkPage(page, 'console sign in', { measure: false });

  } catch (e) {
    failed = e;
    console.log(`FAIL: ${e.stack || e}`);
    await check.screenshots(browser, 'admin-failure');
  } finally {
    await browser.close().catch(() => {});
    const exit = await orion.stop();
    await sink.stop();
    step(`orion serve stopped (${JSON.stringify(exit)})`);
  }
  const problems = check.report();
  if (failed || problems) process.exit(1);
  console.log('\nbrowser suite (admin): OK');
}

main().catch((e) => {
  console.log(`FAIL: ${e.stack || e}`);
  process.exit(1);
});
