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
