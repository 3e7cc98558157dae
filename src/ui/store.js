// The sessions the signed-in person may see, kept live from `GET /sessions/events`: the
// stream replays the current list, then `ready`, then changes. On a reconnect the replay is
// applied again and sessions it no longer names are dropped, so nothing is lost or stale.

import { api } from './api.js';
import { openStream } from './sse.js';

export const sessions = new Map();
/** The last state of sessions removed while this page was open (the list shows them dimmed). */
export const removed = new Map();
const listeners = new Set();
let stream = null;
let replaying = null;
let scheduled = false;
export const status = { ready: false, live: true };

export function subscribe(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

function changed() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    for (const f of listeners) f();
  });
}

export function startSessionStream() {
  if (stream) return;
  stream = openStream('/sessions/events', {
    onOpen() {
      replaying = new Set();
    },
    onEvent(name, data) {
      if (name === 'session' && data && data.session_id) {
        sessions.set(data.session_id, data);
        removed.delete(data.session_id);
        if (replaying) replaying.add(data.session_id);
      } else if (name === 'removed' && data && data.session_id) {
        const last = sessions.get(data.session_id);
        if (last) removed.set(data.session_id, last);
        sessions.delete(data.session_id);
      } else if (name === 'ready') {
        if (replaying) {
          for (const id of [...sessions.keys()]) if (!replaying.has(id)) sessions.delete(id);
        }
        replaying = null;
        status.ready = true;
      }
      changed();
    },
    onRefused(code) {
      // A server without the stream: show the list once, without live updates.
      if (code !== 404) return false;
      status.live = false;
      refreshOnce();
      return true;
    },
  });
}

/** Without the live stream only: reads the list again (after this page changed something). */
export async function refreshOnce() {
  if (status.live) return;
  const answer = await api('GET', '/search?limit=500');
  sessions.clear();
  for (const session of answer.sessions) sessions.set(session.session_id, session);
  status.ready = true;
  changed();
}

/** A session this page stopped (DELETE answered once its agent was gone): shown as exited. */
export function stopped(id) {
  const last = sessions.get(id) || removed.get(id);
  if (last) removed.set(id, last.status === 'exited' ? last : { ...last, status: 'exited', agent_status: null });
  sessions.delete(id);
  changed();
}

export function stopSessionStream() {
  if (stream) stream.close();
  stream = null;
  sessions.clear();
  removed.clear();
  status.ready = false;
  status.live = true;
}
