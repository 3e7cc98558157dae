// Calls to the proxy's API from the page: JSON in and out, the API's error message kept,
// a 401 sends the person back to sign-in, state-changing calls carry X-Requested-With
// (the CSRF signal cookie sessions need).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let unauthorized = () => {};
export function onUnauthorized(handler) {
  unauthorized = handler;
}
export function signalUnauthorized() {
  unauthorized();
}

/** `api('POST', '/start', {...})` → the parsed answer; throws ApiError with the API's message. */
export async function api(method, path, body, options = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-Requested-With'] = 'agentapi-proxy-dashboard';
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached.');
  }
  if (response.status === 401 && !options.keepOn401) unauthorized();
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  let code = `http_${response.status}`;
  try {
    const body = await response.json();
    message = body.message || body.detail || body.title || message;
    code = body.code || code;
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(response.status, code, message);
}
