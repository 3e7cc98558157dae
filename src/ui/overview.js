// The Overview page (admins): sessions by state and by user, capacity, agent exits and
// start failures of the last hour with their reasons (from the live session list), and the
// request and stream figures the proxy keeps for Prometheus (`GET /metrics`, read once per
// visit or on Refresh).

import { api } from './api.js';
import { h, replace, errorLine } from './dom.js';
import { sessions, removed, subscribe } from './store.js';
import { shortId, absoluteTime } from './format.js';

const HOUR = 3600 * 1000;

export function mountOverview(main, context) {
  document.title = 'Overview · agentapi-proxy';
  if (!context.isAdmin()) {
    main.append(h('h1', null, 'Overview'), h('p', null, 'This page is for admins.'));
    return () => {};
  }
  const byState = h('div', { class: 'card', id: 'overview-states' });
  const byUser = h('div', { class: 'card', id: 'overview-users' });
  const recent = h('div', { class: 'card wide', id: 'overview-exits' });
  const figures = h('div', { class: 'card', id: 'overview-metrics' });
  const refresh = h('button', { type: 'button', class: 'small' }, 'Refresh figures');
  const error = errorLine();
  main.append(h('div', { class: 'page-head' }, h('h1', null, 'Overview'), refresh), error.el,
    h('div', { class: 'grid' }, byState, byUser, figures, recent));

  function table(caption, head, rows) {
    return h('table', null, h('caption', null, caption),
      h('thead', null, h('tr', null, head.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, rows.length ? rows.map((r) => h('tr', null, r.map((c) => h('td', null, c))))
        : h('tr', null, h('td', { colspan: head.length }, 'None'))));
  }

  function count(values, key) {
    const out = new Map();
    for (const v of values) out.set(key(v), (out.get(key(v)) || 0) + 1);
    return [...out.entries()].sort((a, b) => b[1] - a[1]);
  }

  function render() {
    const all = [...sessions.values()];
    replace(byState, table('Sessions by state', ['State', 'Sessions'], count(all, (s) => s.status)));
    replace(byUser, table('Sessions by user', ['User', 'Sessions'], count(all, (s) => s.user_id)));
    const now = Date.now();
    const ended = [...all, ...removed.values()].filter((s) => (s.status === 'exited' || s.status === 'failed')
      && now - Date.parse(s.ended_at || s.started_at) < HOUR);
    replace(recent, table('Exits and start failures in the last hour', ['Session', 'User', 'Outcome', 'Reason', 'When'],
      ended.map((s) => [h('a', { href: `/ui/sessions/${encodeURIComponent(s.session_id)}`, class: 'mono' }, shortId(s.session_id)),
        s.user_id, s.status === 'failed' ? 'failed to start' : `exited ${s.exit_code ?? ''}`,
        (s.exit_reason || '').replaceAll('_', ' '), absoluteTime(s.ended_at || s.started_at)])));
  }

  async function loadFigures() {
    try {
      const text = await api('GET', '/metrics');
      replace(figures, table('Server figures', ['Figure', 'Value'], summarize(text)));
      error.clear();
    } catch (failure) {
      error.show(`Server figures cannot be read: ${failure.message}`);
    }
  }
  refresh.addEventListener('click', loadFigures);
  const unsubscribe = subscribe(render);
  render();
  loadFigures();
  return unsubscribe;
}

/** The headline figures out of the Prometheus text: sums over labels, by metric name. */
export function summarize(text) {
  const sums = new Map();
  const exits = new Map();
  for (const line of String(text).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (!match) continue;
    const [, name, labels = '', value] = match;
    const number = Number(value);
    if (!Number.isFinite(number)) continue;
    sums.set(name, (sums.get(name) || 0) + number);
    if (/agent_exits/.test(name)) {
      const reason = (labels.match(/reason="([^"]*)"/) || [])[1] || 'unknown';
      exits.set(reason, (exits.get(reason) || 0) + number);
    }
  }
  const pick = (pattern, label) => {
    const name = [...sums.keys()].find((n) => pattern.test(n) && !/_bucket$|_sum$|_count$/.test(n));
    return name ? [[label, String(sums.get(name))]] : [];
  };
  return [
    ...pick(/http_requests_total$/, 'HTTP requests (since start)'),
    ...pick(/open_streams/, 'Open streams'),
    ...pick(/proxied_requests/, 'Proxied requests'),
    ...pick(/session_starts/, 'Session starts'),
    ...pick(/session_restarts/, 'Agent restarts'),
    ...pick(/max_sessions|capacity/, 'Capacity (max sessions)'),
    ...pick(/auth_failures/, 'Authentication failures'),
    ...[...exits.entries()].map(([reason, n]) => [`Agent exits: ${reason.replaceAll('_', ' ')}`, String(n)]),
  ];
}
