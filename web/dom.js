// dom.js — building the pages' elements, shared by the storefront (app.js)
// and the admin console (admin/console.js).
//
// Every text goes through textContent: nothing the API returns is ever
// parsed as HTML (ADR 030 §3).
import { ApiError } from './api.js';

// h('p', {class: 'x', onclick: fn}, 'text', child...)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// A polite live region's announcer: announce('Saved.').
export function announcer(region) {
  return (text) => {
    region.textContent = '';
    setTimeout(() => { region.textContent = text; }, 50);
  };
}

export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, e instanceof Error ? e.message : String(e));
}

// Shows a problem's field errors next to their inputs (aria-invalid and
// aria-describedby), the problem itself at the end of the form, and moves
// the focus to the first bad field. alias maps an API field name to the
// form's ({price_cents: 'price'}).
export function fieldErrors(form, e, alias = {}) {
  clearErrors(form);
  const fields = e instanceof ApiError ? e.fields : {};
  let first = null;
  for (const [name, message] of Object.entries(fields)) {
    const input = form.elements[alias[name] || name];
    if (!input || !input.id) continue;
    const id = `${input.id}-error`;
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-describedby', [input.dataset.hint, id].filter(Boolean).join(' '));
    input.after(h('p', { class: 'error field-error', id }, message));
    first = first || input;
  }
  form.append(errorBox(e));
  if (first) first.focus();
}

export function clearErrors(form) {
  form.querySelectorAll('.error').forEach((n) => n.remove());
  for (const input of form.querySelectorAll('[aria-invalid]')) {
    input.removeAttribute('aria-invalid');
    if (input.dataset.hint) input.setAttribute('aria-describedby', input.dataset.hint);
    else input.removeAttribute('aria-describedby');
  }
}

// A labelled input in its .field box; extra attributes go to the input.
// hint: a line of help under the label, tied with aria-describedby.
export function field(id, label, type = 'text', extra = {}, hint = null) {
  const attrs = { id, name: id, type, ...extra };
  if (hint) {
    attrs['aria-describedby'] = `${id}-hint`;
    attrs['data-hint'] = `${id}-hint`;
  }
  const input = type === 'textarea' ? h('textarea', { ...attrs, type: null }) : h('input', attrs);
  return h('div', { class: 'field' }, h('label', { for: id }, label),
    hint ? h('p', { class: 'muted hint', id: `${id}-hint` }, hint) : null, input);
}

// Same-origin links that mine(url) accepts navigate inside the page with
// go(path) (no reload: the page's state and streams are its own); any other
// link, or one opened with a modifier key, is the browser's.
export function followLinks(mine, go) {
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest('a');
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !mine(url)) return;
    ev.preventDefault();
    go(url.pathname + url.search);
  });
}
