// The Sessions page: the live list (from the session store), filters, the New session form
// and stopping a session (after a confirmation).

import { api } from './api.js';
import { h, replace, field, copyButton, errorLine } from './dom.js';
import { sessions, removed, status, subscribe, refreshOnce, stopped } from './store.js';
import { absoluteTime, relativeTime, shortId, statusLabel } from './format.js';

const STATUSES = ['starting', 'active', 'stopping', 'exited', 'failed'];

export function mountSessions(main, context) {
  document.title = 'Sessions · agentapi-proxy';
  const admin = context.isAdmin();
  const filters = {
    status: h('select', { name: 'status' }, h('option', { value: '' }, 'Any'),
      STATUSES.map((s) => h('option', { value: s }, s))),
    tag: h('input', { type: 'search', name: 'tag', placeholder: 'key=value', autocomplete: 'off' }),
    text: h('input', { type: 'search', name: 'text', placeholder: 'id, tag, user…', autocomplete: 'off' }),
    user: h('select', { name: 'user' }, h('option', { value: '' }, 'Everyone')),
  };
  const form = newSessionForm(context);
  const toggle = h('button', { type: 'button', class: 'primary', id: 'new-session', 'aria-expanded': 'false' }, 'New session');
  toggle.addEventListener('click', () => form.show(toggle));
  const list = h('ul', { class: 'sessions', id: 'session-list', 'aria-label': 'Sessions' });
  const note = h('p', { class: 'muted', role: 'status' });
  main.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Sessions'), toggle),
    form.el,
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter sessions' },
      field('Status', filters.status), field('Tag', filters.tag), field('Search', filters.text),
      admin ? field('User', filters.user) : null),
    note, list);
  for (const control of Object.values(filters)) control.addEventListener('input', render);
  filters.tag.closest('form').addEventListener('submit', (event) => event.preventDefault());

  const rows = new Map();
  const confirming = new Set();

  function matches(session) {
    if (filters.status.value && session.status !== filters.status.value) return false;
    if (admin && filters.user.value && session.user_id !== filters.user.value) return false;
    const tag = filters.tag.value.trim();
    if (tag) {
      const [key, ...rest] = tag.split('=');
      const value = rest.join('=');
      const tags = session.tags || {};
      if (!(key in tags) || (rest.length > 0 && value !== '' && tags[key] !== value)) return false;
    }
    const text = filters.text.value.trim().toLowerCase();
    if (text) {
      const haystack = [session.session_id, session.user_id, session.status,
        ...Object.entries(session.tags || {}).map(([k, v]) => `${k}=${v}`)].join(' ').toLowerCase();
      if (!haystack.includes(text)) return false;
    }
    return true;
  }

  function updateUsers() {
    const users = [...new Set([...sessions.values()].map((s) => s.user_id))].sort();
    const current = filters.user.value;
    const known = [...filters.user.options].slice(1).map((o) => o.value);
    if (known.join('\n') === users.join('\n')) return;
    replace(filters.user, h('option', { value: '' }, 'Everyone'),
      users.map((u) => h('option', { value: u, selected: u === current }, u)));
  }

  function render() {
    if (admin) updateUsers();
    const all = [...sessions.values(), ...[...removed.values()].map((s) => ({ ...s, removed: true }))];
    all.sort((a, b) => String(b.started_at).localeCompare(String(a.started_at)));
    const shown = all.filter(matches);
    const wanted = new Set(shown.map((s) => s.session_id));
    for (const [id, row] of rows) if (!wanted.has(id)) { row.el.remove(); rows.delete(id); }
    let previous = null;
    for (const session of shown) {
      let row = rows.get(session.session_id);
      const key = JSON.stringify(session) + confirming.has(session.session_id);
      if (!row) {
        row = { el: h('li', { class: 'session-row', 'data-session-id': session.session_id }), key: '' };
        rows.set(session.session_id, row);
      }
      if (row.key !== key) {
        row.key = key;
        fillRow(row.el, session);
      }
      const expected = previous ? previous.nextSibling : list.firstChild;
      if (expected !== row.el) list.insertBefore(row.el, expected);
      previous = row.el;
    }
    if (!status.ready) note.textContent = 'Loading sessions…';
    else if (all.length === 0) note.textContent = 'No sessions yet. Start one with “New session”.';
    else if (shown.length === 0) note.textContent = 'No session matches these filters.';
    else note.textContent = status.live ? '' : 'Live updates are not available on this server.';
  }

  function fillRow(el, session) {
    const id = session.session_id;
    el.classList.toggle('removed', Boolean(session.removed));
    const started = h('time', { datetime: session.started_at, title: absoluteTime(session.started_at), 'data-relative': session.started_at },
      relativeTime(session.started_at));
    const tags = Object.entries(session.tags || {}).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`));
    const actions = h('div', { class: 'actions' });
    if (session.removed) {
      actions.append(h('span', { class: 'muted' }, 'removed'));
    } else if (confirming.has(id)) {
      const yes = h('button', { type: 'button', class: 'danger small confirm-stop' }, 'Yes, stop it');
      const no = h('button', { type: 'button', class: 'small' }, 'Cancel');
      const error = errorLine();
      yes.addEventListener('click', async () => {
        yes.disabled = true;
        no.disabled = true;
        yes.textContent = 'Stopping…';
        try {
          await api('DELETE', `/sessions/${encodeURIComponent(id)}`);
          confirming.delete(id);
          stopped(id);
          render();
        } catch (failure) {
          error.show(failure.message);
          yes.disabled = false;
          no.disabled = false;
          yes.textContent = 'Yes, stop it';
        }
      });
      no.addEventListener('click', () => { confirming.delete(id); render(); });
      actions.append(h('span', null, 'Stop this session?'), yes, no, error.el);
      setTimeout(() => yes.focus(), 0);
    } else {
      const stop = h('button', { type: 'button', class: 'small stop', 'aria-label': `Stop session ${shortId(id)}` }, 'Stop');
      stop.addEventListener('click', () => { confirming.add(id); render(); });
      actions.append(stop);
    }
    replace(el,
      h('span', { class: `badge status-${session.status}` }, statusLabel(session)),
      h('div', { class: 'ident' },
        h('a', { href: `/ui/sessions/${encodeURIComponent(id)}`, class: 'mono', title: id }, shortId(id)),
        copyButton('Copy', () => id, `Copy session id ${shortId(id)}`)),
      admin ? h('span', { class: 'owner', title: 'Owner' }, session.user_id) : null,
      h('div', { class: 'tags' }, tags),
      started,
      actions,
      session.initial_message ? h('span', { class: 'muted first-prompt' }, `first prompt ${session.initial_message}`) : null);
  }

  const unsubscribe = subscribe(render);
  const clock = setInterval(() => {
    for (const time of list.querySelectorAll('time[data-relative]')) time.textContent = relativeTime(time.dataset.relative);
  }, 30000);
  render();
  return () => { unsubscribe(); clearInterval(clock); };
}

/** Rows of name/value inputs (tags, environment) with an Add button. */
function pairRows(legend, nameLabel, valueLabel, secret, addLabel) {
  const rows = h('div', { class: 'pairs' });
  const add = h('button', { type: 'button', class: 'small' }, addLabel);
  function addRow() {
    const name = h('input', { type: 'text', autocomplete: 'off', 'aria-label': nameLabel });
    const value = h('input', { type: secret ? 'password' : 'text', autocomplete: 'off', 'aria-label': valueLabel });
    const remove = h('button', { type: 'button', class: 'small', 'aria-label': `Remove this ${nameLabel.toLowerCase()}` }, '×');
    const row = h('div', { class: 'pair' }, name, value, remove);
    remove.addEventListener('click', () => row.remove());
    rows.append(row);
    name.focus();
  }
  add.addEventListener('click', addRow);
  return {
    el: h('fieldset', null, h('legend', null, legend), rows, add),
    values() {
      const out = {};
      for (const row of rows.children) {
        const [name, value] = row.querySelectorAll('input');
        if (name.value.trim()) out[name.value.trim()] = value.value;
      }
      return out;
    },
    clear() { rows.replaceChildren(); },
  };
}

function newSessionForm(context) {
  const profile = h('select', { name: 'profile' }, h('option', { value: '' }, 'None'));
  const message = h('textarea', { name: 'message', rows: 3 });
  const repository = h('input', { type: 'text', name: 'repository', placeholder: 'owner/repo', autocomplete: 'off' });
  const tags = pairRows('Tags', 'Tag name', 'Tag value', false, 'Add tag');
  const environment = pairRows('Environment', 'Variable name', 'Variable value', true, 'Add variable');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Start session');
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const progress = h('p', { class: 'progress', role: 'status' });
  const error = errorLine();
  const el = h('form', { class: 'card stack new-session', id: 'new-session-form', hidden: true, 'aria-label': 'New session' },
    h('h2', null, 'New session'),
    field('Profile', profile), field('Initial message', message), field('Repository', repository),
    tags.el, environment.el,
    h('small', { class: 'muted' }, 'Environment values are sent once and never shown again.'),
    h('div', { class: 'row' }, submit, cancel), progress, error.el);
  let opener = null;

  async function loadProfiles() {
    try {
      const answer = await api('GET', '/profiles');
      const current = profile.value;
      replace(profile, h('option', { value: '' }, 'None'),
        answer.profiles.map((p) => h('option', { value: p.id, selected: p.id === current }, p.name)));
    } catch {
      // Without profile:list the form starts plain sessions only.
    }
  }

  function hide() {
    el.hidden = true;
    if (opener) { opener.setAttribute('aria-expanded', 'false'); opener.focus(); }
  }
  cancel.addEventListener('click', hide);
  el.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    const body = { environment: environment.values(), tags: tags.values() };
    if (repository.value.trim()) body.tags.repository = repository.value.trim();
    if (message.value.trim()) body.message = message.value;
    let path = '/start';
    if (profile.value) { path = '/start-with-profile'; body.profile_id = profile.value; }
    submit.disabled = true;
    progress.textContent = 'Starting… waiting for the agent to answer.';
    try {
      const answer = await api('POST', path, body);
      environment.clear();
      message.value = '';
      progress.replaceChildren('Started ',
        h('a', { href: `/ui/sessions/${encodeURIComponent(answer.session_id)}` }, shortId(answer.session_id)), '.');
      await refreshOnce();
    } catch (failure) {
      progress.textContent = '';
      error.show(`The session did not start: ${failure.message}`);
    } finally {
      submit.disabled = false;
    }
  });
  return {
    el,
    show(button) {
      opener = button;
      el.hidden = false;
      button.setAttribute('aria-expanded', 'true');
      progress.textContent = '';
      error.clear();
      loadProfiles();
      profile.focus();
    },
  };
}
