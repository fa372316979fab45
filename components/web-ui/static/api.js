// The Data API from the browser. The bearer token the user enters is kept for this tab only
// (sessionStorage) and sent with every request; nothing else is stored.
const KEY = 'wattlet-token';

export function token() {
  return sessionStorage.getItem(KEY) || '';
}

// An error answer of the Data API (`{"error", "code"}`): programs branch on `code` (the
// survey's refusal codes, e.g. `invalid_token`, `consent_revoked`), never on the message, which
// is for people and may change wording. `code` is null when something else answered (a proxy).
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const headers = { authorization: `Bearer ${token()}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = data && typeof data.code === 'string' ? data.code : null;
    throw new ApiError(response.status, code, (data && data.error) || `HTTP ${response.status}`);
  }
  return data;
}

// A GET whose answer is text (a CSV download): the text and the `x-wattlet-next` header (the
// next page's query, if any). Errors as `api`'s.
export async function apiText(path) {
  const response = await fetch(path, { headers: { authorization: `Bearer ${token()}` } });
  const text = await response.text();
  if (!response.ok) {
    let data = null;
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
    const code = data && typeof data.code === 'string' ? data.code : null;
    throw new ApiError(response.status, code, (data && data.error) || `HTTP ${response.status}`);
  }
  return { text, next: response.headers.get('x-wattlet-next') };
}

// Builds an element; children are nodes or text (never parsed as HTML, so data cannot inject).
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? '')));
  }
  return node;
}

// What to tell people about a failed call: the API's message, and what to do about a refused
// token.
export function explain(error) {
  if (error.code === 'invalid_token' || error.code === 'token_revoked') {
    return `${error.message}. Enter a valid token.`;
  }
  return error.message;
}

export function show(box, kind, text) {
  box.className = `message ${kind}`;
  box.textContent = text;
  box.hidden = false;
}

// The token form: stores the token and calls `ready` now (if a token is kept) and on submit.
export function bindToken(form, ready) {
  const input = form.querySelector('input');
  input.value = token();
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    ready();
  });
  if (token()) ready();
}

// "3 min ago" for an RFC 3339 time, "never" for none.
export function ago(time) {
  if (!time) return 'never';
  const seconds = Math.max(0, (Date.now() - Date.parse(time)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

// A line chart of one quantity over time, as SVG (no library: a polyline, its points and two
// axes).
export function chart(points, label, unit) {
  const width = 760, height = 260, left = 60, bottom = 30;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', width);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${label} in ${unit}`);
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  let lo = Math.min(...points.map((p) => p.v)), hi = Math.max(...points.map((p) => p.v));
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (t) => left + (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0)) * (width - left - 10);
  const y = (v) => 10 + (1 - (v - lo) / (hi - lo)) * (height - bottom - 10);
  add('line', { x1: left, y1: 10, x2: left, y2: height - bottom, stroke: '#8a979f' });
  add('line', { x1: left, y1: height - bottom, x2: width - 10, y2: height - bottom, stroke: '#8a979f' });
  add('text', { x: left - 6, y: 16, 'text-anchor': 'end', 'font-size': 12 }, hi.toFixed(3));
  add('text', { x: left - 6, y: height - bottom, 'text-anchor': 'end', 'font-size': 12 }, lo.toFixed(3));
  add('text', { x: left, y: height - 8, 'font-size': 12 }, new Date(t0).toLocaleString());
  add('text', { x: width - 10, y: height - 8, 'text-anchor': 'end', 'font-size': 12 }, new Date(t1).toLocaleString());
  add('polyline', {
    points: points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' '),
    fill: 'none', stroke: '#2e7d5b', 'stroke-width': 2, 'data-points': points.length,
  });
  // Few points: each marked, so a lone report still shows.
  if (points.length <= 100) {
    for (const p of points) {
      add('circle', { cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 3, fill: '#2e7d5b', class: 'point' });
    }
  }
  return svg;
}
