// storefront.mjs — the `browser` suite's shopper story, in Debian's chromium
// (headless, driven by puppeteer-core) against a real `orion serve`:
// register, browse, search, filter by category, add two products, change a
// quantity, place the order, open the emailed confirmation link, see the
// status change live (no reload), pay with 4242 at the provider from the
// browser; then a second order paid with the 3-D Secure card, approved on
// the provider's page, back on the order page where the status turns
// `confirmed` live; the order history and the admin page.
//
// Every page of the shop: no console error, no failed request (nor any
// answer >= 400), axe-core with no serious or critical violation. Each
// page's JavaScript (bytes) and first render (first contentful paint) are
// measured and printed, not asserted. On failure every open tab is
// screenshotted into ORION_BROWSER_ARTIFACTS (meson sets
// <build>/meson-logs/browser, beside the test logs); a passing run leaves
// storefront.png and order.png there, the README's pictures.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ADMIN, accountLink, apiCall, confirmationLink, createChecker, launchBrowser, startOrion } from './orion.mjs';

const artifacts = process.env.ORION_BROWSER_ARTIFACTS || path.join(process.cwd(), 'meson-logs', 'browser');
const step = (s) => console.log(`-- ${s}`);

const check = createChecker({ artifacts }); // every page's checks and measures (orion.mjs)
const { watch, checkPage } = check;

// Loads a shop path as a fresh navigation (a new document: its own FCP).
async function open(page, base, p, name, waitUntil = 'networkidle0') {
  check.current = name;
  await page.goto(`${base}${p}`, { waitUntil });
}

async function text(page, selector) {
  return page.$eval(selector, (e) => e.textContent);
}

async function waitStatus(page, status, timeout = 20000) {
  await page.waitForSelector(`#order-status [data-status="${status}"]`, { timeout });
}

async function seedCatalog(base) {
  const login = await apiCall(base, 'POST', '/auth/login', { body: ADMIN });
  assert.equal(login.status, 200, login.text);
  const token = login.json.access_token;
  const products = [
    { sku: 'LAMP-1', name: 'Desk lamp', description: 'A warm LED desk lamp.', price_cents: 3900, category: 'home' },
    { sku: 'MUG-1', name: 'Coffee mug', description: 'Stoneware, 350 ml.', price_cents: 1250, category: 'kitchen' },
    { sku: 'KETTLE-1', name: 'Kettle', description: 'Stainless steel, 1.7 l.', price_cents: 4500, category: 'kitchen' },
  ];
  for (const p of products) {
    const r = await apiCall(base, 'POST', '/admin/products', { token, body: { ...p, currency: 'EUR', initial_stock: 50 } });
    assert.equal(r.status, 201, r.text);
  }
  for (let i = 0; i < 100; i++) {
    const r = await apiCall(base, 'GET', '/products?limit=50');
    if (r.status === 200 && r.json.items.length === products.length && r.json.items.every((p) => p.available > 0)) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('the catalog never showed the seeded products');
}

// Places the cart as an order from the cart page; returns the order id.
async function placeOrder(page, base) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }).catch(() => null), page.click('a[href="/cart"]')]);
  await page.waitForSelector('#place-order');
  await page.click('#place-order');
  await page.waitForFunction(() => /^\/orders\/[A-Za-z0-9_-]+$/.test(location.pathname));
  await page.waitForSelector('#order-status [data-status]');
  return page.evaluate(() => location.pathname.split('/').pop());
}

// Opens an emailed link in its own tab and submits its page's form there
// (the gateway's page, as a shopper's mail client would open it); the page
// that answers must say `done`.
async function submitEmailedLink(browser, link, name, done) {
  const tab = await browser.newPage();
  watch(tab);
  check.current = name;
  await tab.goto(link, { waitUntil: 'load' });
  await checkPage(tab, name, { measure: false });
  await Promise.all([tab.waitForNavigation({ waitUntil: 'load' }), tab.click('form button, form [type=submit]')]);
  const body = await tab.$eval('body', (b) => b.textContent);
  assert.match(body, done, `the ${name} page says: ${body}`);
  await checkPage(tab, name, { measure: false });
  await tab.close();
}

async function confirmByEmail(browser, dataDir, orderId) {
  await submitEmailedLink(browser, await confirmationLink(dataDir, orderId), 'confirmation link', /confirmed/i);
}

// The same email's token through the shop's own page (/confirm/{id}?token=),
// the one a storefront deployment links to: JSON POST .../confirm.
async function confirmInShop(browser, orion, orderId) {
  const link = new URL(await confirmationLink(orion.dataDir, orderId));
  const tab = await browser.newPage();
  watch(tab);
  await open(tab, orion.base, `/confirm/${orderId}?token=${link.searchParams.get('token')}`, 'shop confirmation');
  await tab.waitForSelector('#confirm');
  await checkPage(tab, 'shop confirmation');
  await tab.click('#confirm');
  await tab.waitForFunction(() => document.querySelector('h1').textContent === 'Order confirmed');
  await checkPage(tab, 'shop confirmation', { measure: false });
  await tab.close();
}

async function pay(page, card) {
  await page.waitForSelector('#pay');
  await page.type('#card-number', card);
  await page.type('#exp-month', '12');
  await page.type('#exp-year', '2031');
  await page.type('#cvc', '123');
  await page.click('#pay button[type=submit]');
}

async function main() {
  const orion = await startOrion();
  step(`orion serve at ${orion.base} (data ${orion.dataDir})`);
  const browser = await launchBrowser();
  let failed = null;
  try {
    await seedCatalog(orion.base);
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 900 });
    watch(page);

    step('catalog, signed out');
    await open(page, orion.base, '/', 'catalog');
    await page.waitForSelector('.grid li');
    assert.equal((await page.$$('.grid li')).length, 3);
    await checkPage(page, 'catalog');

    step('the CSP holds in the browser: an injected inline script does not run');
    check.current = 'csp probe';
    const probe = await page.evaluate(() => new Promise((resolve) => {
      document.addEventListener('securitypolicyviolation', (e) => resolve(e.effectiveDirective), { once: true });
      const el = document.createElement('script');
      el.textContent = 'window.__inlineRan = true';
      document.body.append(el);
      setTimeout(() => resolve(window.__inlineRan ? 'ran' : 'no report'), 2000);
    }));
    assert.equal(probe, 'script-src-elem', `inline script: ${probe}`);
    assert.equal(await page.evaluate(() => window.__inlineRan), undefined);
    // the browser's own report of the probe is the expected console error
    const { problems } = check;
    for (let i = problems.length - 1; i >= 0; i--) if (problems[i].page === 'csp probe') problems.splice(i, 1);

    step('keyboard: the skip link comes first and moves the focus to the content');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
    await page.keyboard.press('Enter');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'q', 'after the skip link: the search field');

    step('register (from the sign-in page)');
    await open(page, orion.base, '/login', 'sign in');
    await checkPage(page, 'sign in');
    await page.click('a[href^="/register"]');
    check.current = 'register';
    await page.waitForSelector('#name');
    await checkPage(page, 'register', { measure: false });
    const email = `shopper-${Date.now()}@orion.test`;
    await page.type('#name', 'Ada Shopper');
    await page.type('#email', email);
    await page.type('#password', 'correct horse battery staple 42');
    await page.click('form button[type=submit]');
    // the page tells the shopper to check their email (ADR 031); signed in meanwhile
    await page.waitForSelector('#check-email');
    assert.match(await text(page, '#check-email'), new RegExp(`sent an email to ${email.replace(/[.]/g, '\\.')}`));
    await page.waitForSelector('#nav-account button');
    await checkPage(page, 'check your email', { measure: false });

    step('verify the address by the emailed link (the Maildir), then go on');
    await submitEmailedLink(browser, await accountLink(orion.dataDir, email, 'verify'), 'verification link', /verified/i);
    check.current = 'catalog';
    await page.click('#check-email ~ p a');
    await page.waitForSelector('.grid li');

    step('search and category');
    check.current = 'catalog';
    await page.type('#q', 'lamp');
    await page.click('form.search button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('.grid li').length === 1 &&
      document.querySelector('.grid li h2').textContent === 'Desk lamp');
    await page.click('#q', { clickCount: 3 });
    await page.keyboard.press('Backspace');
    await page.select('#category', 'kitchen');
    await page.click('form.search button[type=submit]');
    await page.waitForFunction(() => new URL(location.href).searchParams.get('category') === 'kitchen' &&
      document.querySelectorAll('.grid li').length === 2);
    await checkPage(page, 'catalog', { measure: false });

    step('add two products: the mug from the list, the lamp from its page');
    await page.click('button[data-add="Coffee mug"]');
    await page.waitForFunction(() => document.getElementById('announce').textContent.includes('1 item'));
    await open(page, orion.base, '/', 'catalog');
    await page.waitForSelector('.grid li');
    await page.evaluate(() => [...document.querySelectorAll('.grid li h2 a')].find((a) => a.textContent === 'Desk lamp').click());
    check.current = 'product';
    await page.waitForSelector('#qty');
    const productName = await text(page, 'h1');
    await page.click('form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('announce').textContent.includes('2 items'));
    await open(page, orion.base, new URL(page.url()).pathname, 'product');
    await page.waitForSelector('#qty');
    await checkPage(page, 'product');

    step('cart: change a quantity');
    await open(page, orion.base, '/cart', 'cart');
    await page.waitForSelector('input.qty');
    assert.equal((await page.$$('input.qty')).length, 2);
    const before = await text(page, '#cart-total');
    const mugQty = await page.$('input[id^="qty-"]');
    await mugQty.click({ clickCount: 3 });
    await page.keyboard.type('3');
    await page.keyboard.press('Tab'); // change fires: PUT /cart/items/{id}
    await page.waitForFunction((b) => document.getElementById('cart-total') && document.getElementById('cart-total').textContent !== b, {}, before);
    assert.equal(await page.$eval('input[id^="qty-"]', (e) => e.value), '3');
    await checkPage(page, 'cart');
    console.log(`   cart: ${before} -> ${await text(page, '#cart-total')} (${productName} and the mug)`);

    step('place the order; confirm by the emailed link; live status');
    const order1 = await placeOrder(page, orion.base);
    check.current = 'order';
    await page.evaluate(() => { window.__sameDocument = true; });
    await waitStatus(page, 'awaiting_confirmation');
    await confirmByEmail(browser, orion.dataDir, order1);
    await waitStatus(page, 'awaiting_payment'); // arrived over the event stream
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the order page was not reloaded');

    step('pay with 4242 (tokenized at the provider from the browser)');
    await pay(page, '4242 4242 4242 4242');
    await waitStatus(page, 'confirmed');
    // the event stream's own report (only the stream announces a status)
    await page.waitForFunction(() => document.getElementById('announce').textContent === 'Order status: Paid and confirmed');
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the order page was not reloaded');
    await open(page, orion.base, `/orders/${order1}`, 'order');
    await waitStatus(page, 'confirmed');
    await checkPage(page, 'order');
    fs.mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, 'order.png') });

    step('second order: the 3-D Secure card, approved on the provider page');
    await open(page, orion.base, '/', 'catalog');
    await page.waitForSelector('button[data-add="Kettle"]');
    await page.click('button[data-add="Kettle"]');
    await page.waitForFunction(() => document.getElementById('announce').textContent.includes('item'));
    const order2 = await placeOrder(page, orion.base);
    check.current = 'order';
    await waitStatus(page, 'awaiting_confirmation');
    await confirmInShop(browser, orion, order2);
    await waitStatus(page, 'awaiting_payment');
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), pay(page, '4000 0025 0000 3155')]);
    check.current = 'provider 3-D Secure page';
    const challenge = new URL(page.url());
    assert.notEqual(challenge.origin, orion.base, `left the shop for the provider: ${page.url()}`);
    // The shopper comes back without answering the bank: the order page
    // offers the check again (and another card), not a second card form.
    await open(page, orion.base, `/orders/${order2}`, 'order', 'load'); // its stream stays open
    await page.waitForSelector('#pay-pending a');
    assert.equal(await page.$('#pay'), null, 'no second card form while the bank checks');
    await waitStatus(page, 'awaiting_payment');
    await checkPage(page, 'order', { measure: false });
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#pay-pending a')]);
    check.current = 'provider 3-D Secure page';
    assert.equal(page.url(), challenge.href, 'the link reopens the same check');
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[value="approve"]')]);
    check.current = 'order';
    assert.equal(new URL(page.url()).pathname, `/orders/${order2}`, 'the provider returned to the order page');
    await page.waitForSelector('#order-status [data-status]');
    const landed = await page.$eval('#order-status [data-status]', (e) => e.dataset.status);
    if (landed === 'awaiting_payment') {
      assert.ok(await page.$('#pay-pending a'), 'while the bank checks: a link to its page, no second card form');
      assert.equal(await page.$('#pay'), null);
    }
    await page.evaluate(() => { window.__sameDocument = true; });
    await waitStatus(page, 'confirmed'); // by the provider's webhook, shown live
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the order page was not reloaded');
    console.log(landed === 'confirmed'
      ? '   3-D Secure: the webhook was faster than the return: the order page opened as confirmed'
      : `   3-D Secure: back on the order page as ${landed}, then confirmed live (the webhook, over the stream)`);
    await checkPage(page, 'order', { measure: false });

    step('order history');
    await open(page, orion.base, '/orders', 'orders');
    await page.waitForSelector('ul.orders li');
    const listed = await page.$$eval('ul.orders li a', (as) => as.map((a) => a.textContent));
    assert.ok(listed.some((t) => t.includes(order1)) && listed.some((t) => t.includes(order2)), listed.join(', '));
    await checkPage(page, 'orders');

    step('admin console placeholder');
    await open(page, orion.base, '/admin/', 'admin');
    await checkPage(page, 'admin');

    // The README's pictures (docs/img/), made here: `cp` them after a run.
    await open(page, orion.base, '/', 'catalog');
    await page.waitForSelector('.grid li');
    await page.screenshot({ path: path.join(artifacts, 'storefront.png') });
  } catch (e) {
    failed = e;
    console.log(`FAIL: ${e.stack || e}`);
    await check.screenshots(browser, 'failure');
  } finally {
    await browser.close().catch(() => {});
    const exit = await orion.stop();
    step(`orion serve stopped (${JSON.stringify(exit)})`);
  }

  const problemsSeen = check.report();
  if (failed || problemsSeen) process.exit(1);
  console.log('\nbrowser suite: OK');
}

main().catch((e) => {
  console.log(`FAIL: ${e.stack || e}`);
  process.exit(1);
});
