// The Data API from the browser. The bearer token the user enters is kept for this tab only
// (sessionStorage) and sent with every request; nothing else is stored.
const KEY = 'wattlet-token';

export function token() {
  return sessionStorage.getItem(KEY) || '';
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
    throw new Error((data && data.error) || `HTTP ${response.status}`);
  }
  return data;
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
