// orion.mjs — starts a real `orion serve` for the browser suite (embedded
// nats-server, the bundled payment sandbox, Maildir under the data dir) on a
// kernel-picked port, and always stops it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const ADMIN = { email: 'root@orion.test', password: 'admin-password-1' };

// env: more ORION_* settings for this server (e.g. ORION_SMTP_URL).
export async function startOrion({ bin = process.env.ORION_BIN, keep = !!process.env.ORION_BROWSER_KEEP, env: extra = {} } = {}) {
  if (!bin) throw new Error('ORION_BIN is not set (meson sets it)');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-browser-'));
  const logPath = path.join(dataDir, 'serve.log');
  const log = fs.openSync(logPath, 'a');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ORION_')));
  Object.assign(env, {
    ORION_DATA_DIR: dataDir,
    ORION_HTTP_ADDR: '127.0.0.1:0',
    ORION_ADMIN_EMAIL: ADMIN.email,
    ORION_ADMIN_PASSWORD: ADMIN.password,
    ORION_LOG_LEVEL: 'info',
    ORION_PASSWORD_MEMORY_KIB: '8192',
    ORION_AUTH_ADDRESS_BURST: '100000',
    ORION_AUTH_ADDRESS_PER_MINUTE: '100000',
    ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS: '100000',
    ORION_ORDERS_BURST: '100000',
    ORION_ORDERS_PER_MINUTE: '100000',
  });
  if (process.env.ORION_WEB_DIR) env.ORION_WEB_DIR = process.env.ORION_WEB_DIR;
  Object.assign(env, extra);
  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', log, log], detached: false });
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const stop = async () => {
    if (exited === null) {
      child.kill('SIGTERM');
      for (let i = 0; i < 150 && exited === null; i++) await sleep(100);
      if (exited === null) child.kill('SIGKILL');
      for (let i = 0; i < 50 && exited === null; i++) await sleep(100);
    }
    fs.closeSync(log);
    if (!keep) fs.rmSync(dataDir, { recursive: true, force: true });
    return exited;
  };
  // Stopped even when the test dies: a last-chance kill on exit.
  process.on('exit', () => { if (exited === null) child.kill('SIGKILL'); });
  let base = null;
  for (let i = 0; i < 600 && !base; i++) {
    if (exited !== null) break;
    const m = fs.readFileSync(logPath, 'utf8').match(/Orion is running: (http:\/\/127\.0\.0\.1:\d+)/);
    if (m) base = m[1];
    else await sleep(100);
  }
  if (!base) {
    const text = fs.readFileSync(logPath, 'utf8');
    await stop();
    throw new Error(`orion serve did not start:\n${text.slice(-3000)}`);
  }
  for (let i = 0; i < 300; i++) {
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.status === 200) break;
    } catch { /* not yet */ }
    await sleep(100);
  }
  return { base, dataDir, logPath, stop };
}

// The confirmation link of order id from the Maildir under dataDir.
export async function confirmationLink(dataDir, orderId, timeoutMs = 15000) {
  const re = new RegExp(`(https?://\\S+/orders/${orderId}/confirm\\?token=[A-Za-z0-9_-]+)`);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const file of walk(dataDir)) {
      if (!/\/(new|cur)\/[^/]+$/.test(file)) continue;
      const text = fs.readFileSync(file, 'utf8').replace(/=\r?\n/g, '');
      const m = text.match(re);
      if (m) return m[1];
    }
    await sleep(200);
  }
  throw new Error(`no confirmation email for ${orderId} in ${dataDir}`);
}

// The link of an account email (ADR 031) to `to` from the Maildir under
// dataDir: kind 'verify' (/api/v1/auth/verify?token=) or 'reset'
// (/reset-password?token=).
export async function accountLink(dataDir, to, kind, timeoutMs = 15000) {
  const route = kind === 'verify' ? '/api/v1/auth/verify' : '/reset-password';
  const re = new RegExp(`(https?://\\S+${route}\\?token=[A-Za-z0-9_.-]+)`);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const file of walk(dataDir)) {
      if (!/\/(new|cur)\/[^/]+$/.test(file)) continue;
      const text = fs.readFileSync(file, 'utf8').replace(/=\r?\n/g, '');
      if (!text.includes(`\nTo: ${to}\r`)) continue;
      const m = text.match(re);
      if (m) return m[1];
    }
    await sleep(200);
  }
  throw new Error(`no ${kind} email to ${to} in ${dataDir}`);
}

function* walk(dir) {
  let entries = [];
  try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.isFile()) yield p;
  }
}

export async function apiCall(base, method, p, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(`${base}/api/v1${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

// A customer account, logged in: its bearer token. Registration answers 201
// (the account) or, with email verification (the accounts issue), 202; the
// server of a test that places orders without verifying runs with
// ORION_REQUIRE_EMAIL_VERIFICATION=0.
export async function shopperToken(base, email, password = 'correct horse battery staple 42', name = 'Test Shopper') {
  const reg = await apiCall(base, 'POST', '/auth/register', { body: { email, password, name } });
  assert.ok(reg.status === 201 || reg.status === 202, `register ${email}: ${reg.status} ${reg.text}`);
  const login = await apiCall(base, 'POST', '/auth/login', { body: { email, password } });
  assert.equal(login.status, 200, login.text);
  return login.json.access_token;
}

// A small SMTP server on a kernel-picked loopback port (ORION_SMTP_URL=
// sink.url) that keeps every message in memory. refuse(re) answers 550 to
// the recipients matching re (null: accept all again), so an email can be
// made to fail on purpose.
export async function startSmtpSink() {
  const messages = []; // {from, to: [], data}
  let refusing = null;
  const sockets = new Set();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    let tx = { from: null, to: [] };
    let inData = false;
    let data = '';
    const say = (line) => sock.write(`${line}\r\n`);
    say('220 orion-sink ESMTP');
    sock.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      for (;;) {
        if (inData) {
          data += buf;
          buf = '';
          const end = data.indexOf('\r\n.\r\n');
          if (end < 0) return;
          buf = data.slice(end + 5);
          messages.push({ ...tx, data: data.slice(0, end + 2).replace(/^\.\./gm, '.') });
          inData = false;
          data = '';
          tx = { from: null, to: [] };
          say('250 2.0.0 queued');
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') { say('250-orion-sink'); say('250 8BITMIME'); } else if (verb === 'HELO') say('250 orion-sink');
        else if (verb === 'MAIL') { tx = { from: line.slice(10).trim(), to: [] }; say('250 2.1.0 ok'); } else if (verb === 'RCPT') {
          const to = line.slice(8).trim().replace(/^<|>$/g, '');
          if (refusing && refusing.test(to)) say('550 5.1.1 mailbox unavailable (refused by the test)');
          else { tx.to.push(to); say('250 2.1.5 ok'); }
        } else if (verb === 'DATA') {
          if (!tx.to.length) say('554 5.5.1 no valid recipients');
          else { inData = true; say('354 end with <CRLF>.<CRLF>'); }
        } else if (verb === 'RSET') { tx = { from: null, to: [] }; say('250 ok'); } else if (verb === 'NOOP') say('250 ok');
        else if (verb === 'QUIT') { say('221 bye'); sock.end(); return; } else say('502 5.5.2 not implemented');
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    refuse(re) { refusing = re; },
    // The text of the messages to `to` (soft line breaks and =3D undone).
    textsTo(to) {
      return messages.filter((m) => m.to.includes(to)).map((m) => m.data.replace(/=\r?\n/g, '').replace(/=3D/g, '='));
    },
    async confirmationToken(orderId, timeoutMs = 15000) {
      const re = new RegExp(`/orders/${orderId}/confirm\\?token=([A-Za-z0-9_-]+)`);
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        for (const m of messages) {
          const hit = m.data.replace(/=\r?\n/g, '').replace(/=3D/g, '=').match(re);
          if (hit) return hit[1];
        }
        await sleep(100);
      }
      throw new Error(`no confirmation email for ${orderId} at the SMTP sink`);
    },
    stop() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

// Polls fn until it returns a truthy value (returned) or timeoutMs passes.
export async function waitFor(fn, what, timeoutMs = 20000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

// What every page of a browser story is checked for, and measured by
// (createChecker({artifacts})): no console error, no failed request, no
// answer >= 400 unless the story expects it (expectHttp), axe-core without a
// serious or critical violation; each page's JavaScript bytes and first
// contentful paint are recorded and printed (report), not asserted.
export function createChecker({ artifacts }) {
  const axeSource = fs.readFileSync(path.join(path.dirname(new URL(import.meta.url).pathname),
    'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
  const problems = []; // {page, what}
  const measures = []; // {page, jsBytes, jsFiles, fcpMs}
  const sizes = new Map(); // script URL -> bytes
  const expected = []; // {status, method, re}: answers the story provokes
  const c = { current: 'start', problems, measures };

  const isExpected = (status, method, url) => {
    const i = expected.findIndex((e) => e.status === status && e.method === method && e.re.test(new URL(url).pathname));
    if (i < 0) return false;
    expected[i].seen = (expected[i].seen || 0) + 1;
    return true;
  };

  // The story provokes this answer once (a 400 with field errors): neither
  // it nor the browser's console line about it is a problem.
  c.expectHttp = (status, method, re) => { expected.push({ status, method, re }); };
  c.doneExpecting = () => {
    const unseen = expected.filter((e) => !e.seen);
    expected.length = 0;
    assert.equal(unseen.length, 0, `expected answers that never came: ${JSON.stringify(unseen.map((e) => `${e.status} ${e.method} ${e.re}`))}`);
  };

  c.watch = (page) => {
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const loc = m.location();
      const status = Number((m.text().match(/status of (\d{3})/) || [])[1]);
      if (status && loc && loc.url && expected.some((e) => e.status === status && e.re.test(new URL(loc.url).pathname))) return;
      problems.push({ page: c.current, what: `console error: ${m.text()}` });
    });
    page.on('pageerror', (e) => problems.push({ page: c.current, what: `uncaught: ${e.message}` }));
    page.on('requestfailed', (r) => {
      const why = r.failure() ? r.failure().errorText : '?';
      // A live stream cut by leaving its page is not a failure.
      if (why === 'net::ERR_ABORTED' && /\/events$/.test(new URL(r.url()).pathname)) return;
      problems.push({ page: c.current, what: `request failed: ${r.method()} ${r.url()} ${why}` });
    });
    page.on('response', (r) => {
      if (r.status() < 400 || isExpected(r.status(), r.request().method(), r.url())) return;
      problems.push({ page: c.current, what: `HTTP ${r.status()}: ${r.request().method()} ${r.url()}` });
    });
  };

  c.checkPage = async (page, name, { measure = true } = {}) => {
    c.current = name;
    await page.evaluate(axeSource); // DevTools evaluation: the page's CSP stays as strict as shipped
    const result = await page.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const r = await axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
    });
    const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    for (const v of result) console.log(`   axe ${name}: ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(', ')}`);
    assert.equal(bad.length, 0, `${name}: axe serious/critical violations: ${JSON.stringify(bad)}`);
    const mine = problems.filter((p) => p.page === name);
    assert.equal(mine.length, 0, `${name}: ${mine.map((p) => p.what).join('; ')}`);
    if (!measure) return;
    const m = await page.evaluate(() => {
      const js = performance.getEntriesByType('resource').filter((e) => e.initiatorType === 'script' || /\.m?js$/.test(new URL(e.name).pathname));
      const fcp = performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint');
      return { jsUrls: js.map((e) => e.name), fcpMs: fcp ? Math.round(fcp.startTime) : null };
    });
    // Sizes from the server (a cached script reports no body size).
    let jsBytes = 0;
    for (const url of new Set(m.jsUrls)) {
      if (!sizes.has(url)) sizes.set(url, (await (await fetch(url)).arrayBuffer()).byteLength);
      jsBytes += sizes.get(url);
    }
    measures.push({ page: name, jsBytes, jsFiles: new Set(m.jsUrls).size, fcpMs: m.fcpMs });
  };

  // Every open tab into artifacts/<tag>-tab<N>.png.
  c.screenshots = async (browser, tag) => {
    fs.mkdirSync(artifacts, { recursive: true });
    const pages = await browser.pages();
    for (let i = 0; i < pages.length; i++) {
      if (pages[i].url() === 'about:blank') continue;
      const file = path.join(artifacts, `${tag}-tab${i}.png`);
      try {
        await pages[i].screenshot({ path: file, fullPage: true });
        console.log(`screenshot: ${file} (${pages[i].url()})`);
      } catch (e) {
        console.log(`screenshot of tab ${i} failed: ${e.message}`);
      }
    }
  };

  // Prints the measures and the problems; true if there were problems.
  c.report = () => {
    console.log('\npage weight and first render (measured, not asserted):');
    const seen = new Set();
    for (const m of measures) {
      if (seen.has(m.page)) continue;
      seen.add(m.page);
      console.log(`  ${m.page.padEnd(18)} JS ${String(m.jsBytes).padStart(7)} bytes in ${m.jsFiles} file(s), first contentful paint ${m.fcpMs} ms`);
    }
    if (problems.length) {
      console.log('\nproblems seen:');
      for (const p of problems) console.log(`  [${p.page}] ${p.what}`);
    }
    return problems.length > 0;
  };
  return c;
}

// Debian's chromium (ORION_CHROMIUM overrides), headless; no sandbox only as
// root, where chromium refuses to start with one.
export function launchBrowser() {
  return puppeteer.launch({
    executablePath: process.env.ORION_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    protocolTimeout: 30000,
    args: [...(process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : []), '--disable-dev-shm-usage'],
  });
}
