// orion.mjs — starts a real `orion serve` for the browser suite (embedded
// nats-server, the bundled payment sandbox, Maildir under the data dir) on a
// kernel-picked port, and always stops it.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const ADMIN = { email: 'root@orion.test', password: 'admin-password-1' };

export async function startOrion({ bin = process.env.ORION_BIN, keep = !!process.env.ORION_BROWSER_KEEP } = {}) {
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
