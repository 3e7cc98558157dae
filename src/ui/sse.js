// Server-sent event streams read with fetch (so a 401 is seen and the page can go back to
// sign-in), reconnecting with capped exponential backoff. Each stream reports whether it is
// connected; the header shows "reconnecting…" while any stream is down.

import { signalUnauthorized } from './api.js';

const down = new Set();
const watchers = new Set();

/** `f(isReconnecting)` on every change of the page's overall stream state. */
export function watchConnection(f) {
  watchers.add(f);
  f(down.size > 0);
}

function mark(stream, isDown) {
  const before = down.size > 0;
  if (isDown) down.add(stream); else down.delete(stream);
  if (before !== down.size > 0) for (const f of watchers) f(down.size > 0);
}

/**
 * Opens `url` as an event stream. `onOpen()` runs on each (re)connection before its first
 * frame, `onEvent(name, data)` for each frame with data (JSON parsed when it parses).
 * `onRefused(status)` runs when the server answers with an error; returning true stops the
 * stream for good (for example 404: the session is gone).
 */
export function openStream(url, { onOpen, onEvent, onRefused }) {
  const stream = {};
  let closed = false;
  let controller = null;
  let attempt = 0;
  let timer = null;

  async function connect() {
    if (closed) return;
    controller = new AbortController();
    try {
      const response = await fetch(url, {
        headers: { Accept: 'text/event-stream' },
        credentials: 'same-origin',
        cache: 'no-store',
        signal: controller.signal,
      });
      if (response.status === 401) {
        close();
        signalUnauthorized();
        return;
      }
      if (!response.ok) {
        if (onRefused && onRefused(response.status)) {
          close();
          return;
        }
        throw new Error(`HTTP ${response.status}`);
      }
      attempt = 0;
      mark(stream, false);
      if (onOpen) onOpen();
      await read(response.body, onEvent, () => closed);
    } catch {
      // Network error, abort or a refused answer: retried below unless closed.
    }
    if (closed) return;
    mark(stream, true);
    const delay = Math.min(10000, 400 * 2 ** attempt) * (0.8 + Math.random() * 0.4);
    attempt += 1;
    timer = setTimeout(connect, delay);
  }

  function close() {
    closed = true;
    clearTimeout(timer);
    if (controller) controller.abort();
    mark(stream, false);
  }

  stream.close = close;
  connect();
  return stream;
}

async function read(body, onEvent, isClosed) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done || isClosed()) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      dispatch(frame, onEvent);
    }
  }
}

function dispatch(frame, onEvent) {
  let name = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return;
  const text = data.join('\n');
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: handed over as text.
  }
  onEvent(name, parsed);
}
