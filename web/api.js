// api.js — the REST API (/api/v1) and the session's token.
//
// The token lives in sessionStorage (ADR 030): one tab's session, gone when
// the tab closes, never sent by the browser on its own (no CSRF), and it
// survives the 3-D Secure round trip to the provider's page and back.

const BASE = '/api/v1';
let KEY = 'orion.token';

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  set token(t) { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); },
  // The admin console keeps its own key: a shopper signed in to the shop in
  // the same tab is not an admin of the console, and signing out of one
  // leaves the other (ADR 030 §6).
  use(key) { KEY = key; },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
  // Field errors of a 400 problem: {field: message}.
  get fields() {
    const out = {};
    for (const e of this.problem.errors || []) {
      const name = e.field || e.name || e.pointer || '';
      if (name) out[name.replace(/^\/|^#\//, '')] = e.message || e.detail || 'invalid';
    }
    return out;
  }
}

export function idempotencyKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export async function api(method, path, body, extraHeaders = {}) {
  const headers = { Accept: 'application/json', ...extraHeaders };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(BASE + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  // The body is read even when empty (204): a response left unread is
  // cancelled, which the browser reports as a failed request.
  const text = await res.text();
  if (res.status === 204) return null;
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    if (res.status === 401) session.token = null;
    throw new ApiError(res.status, data);
  }
  return data;
}

// Server-Sent Events over fetch(): EventSource cannot send the Authorization
// header the events route needs, so the stream is read here. Calls
// onEvent({id, event, data}) per event; resumes with Last-Event-ID after a
// drop until the server ends the stream (then onEnd) or signal aborts.
// onOpen() runs each time the server answers with the stream (a feed that
// starts with the next change is only live from then on).
export async function streamEvents(path, onEvent, { signal, onEnd, onOpen } = {}) {
  let lastId = null;
  let retryMs = 1000;
  while (!signal || !signal.aborted) {
    const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${session.token}` };
    if (lastId) headers['Last-Event-ID'] = lastId;
    let res;
    try {
      res = await fetch(BASE + path, { headers, signal, cache: 'no-store' });
    } catch (e) {
      if (signal && signal.aborted) return;
      await new Promise((r) => setTimeout(r, retryMs));
      continue;
    }
    if (res.status === 204 || !res.ok || !res.body) { if (onEnd) onEnd(res.status); return; }
    if (onOpen) onOpen();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let ev = { id: null, event: 'message', data: [] };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let nl;
        while ((nl = buffer.search(/\r\n|\n|\r/)) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
          if (line === '') {
            if (ev.data.length) {
              if (ev.id !== null) lastId = ev.id;
              onEvent({ id: ev.id, event: ev.event, data: ev.data.join('\n') });
            }
            ev = { id: null, event: 'message', data: [] };
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'data') ev.data.push(val);
          else if (field === 'event') ev.event = val;
          else if (field === 'id') ev.id = val;
          else if (field === 'retry' && /^\d+$/.test(val)) retryMs = Number(val);
        }
      }
    } catch (e) {
      if (signal && signal.aborted) return;
    }
    // The server ends the stream once the checkout is done (a large retry:).
    if (retryMs > 60000) { if (onEnd) onEnd(200); return; }
    await new Promise((r) => setTimeout(r, retryMs));
  }
}

// Digits of the currency's minor unit (2 for EUR, 0 for JPY, 3 for KWD):
// amounts are integers of that unit.
export function minorDigits(currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    return 2; // not a currency code: the API says so
  }
}

export function money(cents, currency = 'EUR') {
  return new Intl.NumberFormat('en', { style: 'currency', currency }).format(cents / 10 ** minorDigits(currency));
}
