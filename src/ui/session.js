// The Session page: the conversation (read from /{id}/messages, then live from
// /{id}/events, agent replies growing in place), the composer, and a side panel with the
// session's detail, its logs (with follow) and ready-to-copy commands.

import { api } from './api.js';
import { h, replace, field, copyButton, errorLine } from './dom.js';
import { openStream } from './sse.js';
import { sessions, removed, subscribe } from './store.js';
import { absoluteTime, relativeTime, shortId, statusLabel, terminalText, isLive } from './format.js';

export function mountSession(main, context, id) {
  document.title = `Session ${shortId(id)} · agentapi-proxy`;
  const base = `/${encodeURIComponent(id)}`;
  const badge = h('span', { class: 'badge', id: 'session-status' });
  const working = h('span', { class: 'working', id: 'agent-working', role: 'status', hidden: true }, 'working…');
  const ended = h('p', { class: 'ended', id: 'session-ended', role: 'status', hidden: true });
  const conversation = h('ol', { class: 'conversation', id: 'conversation', 'aria-label': 'Conversation', 'aria-live': 'polite' });
  const streamError = errorLine();
  const composer = composerForm(base);
  const panel = sidePanel(id, base);
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '/ui/' }, '← Sessions')),
    h('div', { class: 'page-head' }, h('h1', null, 'Session ', h('span', { class: 'mono', title: id }, shortId(id))),
      badge, working, copyButton('Copy id', () => id, 'Copy the session id')),
    ended,
    h('div', { class: 'session-layout' },
      h('section', { class: 'chat', 'aria-label': 'Conversation' }, conversation, streamError.el, composer.el),
      panel.el));

  const messages = new Map();
  let agentStatus = null;
  let detail = null;

  function showMessage(message) {
    let item = messages.get(message.id);
    if (!item) {
      const who = h('span', { class: 'who' });
      const text = h('pre', { class: 'text' });
      item = { el: h('li', { class: `msg msg-${message.role}`, 'data-message-id': message.id }, who, text), who, text, content: null };
      messages.set(message.id, item);
      const after = [...messages.keys()].filter((k) => k > message.id).sort((a, b) => a - b)[0];
      const nearBottom = conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 80;
      conversation.insertBefore(item.el, after === undefined ? null : messages.get(after).el);
      if (nearBottom) conversation.scrollTop = conversation.scrollHeight;
    }
    const content = message.content ?? message.message ?? '';
    if (item.content !== content) {
      const nearBottom = conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 80;
      item.content = content;
      item.text.textContent = message.role === 'agent' ? terminalText(content) : content;
      item.who.textContent = `${message.role === 'agent' ? 'agent' : 'you'}${message.time ? ` · ${absoluteTime(message.time)}` : ''}`;
      if (nearBottom) conversation.scrollTop = conversation.scrollHeight;
    }
  }

  function updateState() {
    const live = sessions.get(id);
    const gone = removed.get(id);
    const latest = live || gone;
    if (latest) detail = { ...detail, ...latest };
    if (detail) {
      badge.className = `badge status-${detail.status}`;
      badge.textContent = statusLabel(detail);
      panel.showDetail(detail);
    }
    const over = detail && !isLive(detail);
    if (over || (gone && !live)) {
      ended.hidden = false;
      const parts = [];
      if (detail.status === 'exited' || detail.status === 'failed') {
        parts.push(`This session ${detail.status === 'failed' ? 'failed to start' : 'has exited'}`);
        if (detail.exit_code !== null && detail.exit_code !== undefined) parts.push(`with code ${detail.exit_code}`);
        if (detail.exit_reason) parts.push(`(${detail.exit_reason.replaceAll('_', ' ')})`);
      } else parts.push(`This session is ${detail.status}`);
      if (gone && !live) parts.push('and was removed');
      ended.textContent = `${parts.join(' ')}.`;
    } else ended.hidden = true;
    const running = agentStatus === 'running';
    working.hidden = !running || Boolean(over);
    composer.setState(over ? 'ended' : running ? 'running' : agentStatus === 'stable' ? 'ready' : 'waiting');
  }

  async function loadMessages() {
    try {
      const answer = await api('GET', `${base}/messages`);
      for (const message of answer.messages || []) showMessage(message);
      streamError.clear();
    } catch (failure) {
      if (failure.status !== 503) streamError.show(`The conversation cannot be read: ${failure.message}`);
    }
  }

  let events = null;
  function connect() {
    events = openStream(`${base}/events`, {
      onOpen() {
        streamError.clear();
        loadMessages();
      },
      onEvent(name, data) {
        if (name === 'message_update') showMessage(data);
        else if (name === 'status_change') { agentStatus = data.status; updateState(); }
        else if (name === 'agent_error') streamError.show(`Agent error: ${data.message}`);
      },
      onRefused(code) {
        if (code === 404 || code === 403) {
          streamError.show(code === 404 ? 'This session does not exist or is not yours.' : 'You may not access this session.');
          return true;
        }
        return false;
      },
    });
  }

  async function start() {
    try {
      detail = await api('GET', `/sessions/${encodeURIComponent(id)}`);
      agentStatus = detail.agent_status || agentStatus;
    } catch (failure) {
      if (!sessions.has(id)) {
        streamError.show(failure.status === 404 ? 'This session does not exist or is not yours.' : failure.message);
        composer.setState('ended');
        return;
      }
    }
    updateState();
    if (detail && isLive(detail)) connect();
    else loadMessages();
  }

  const unsubscribe = subscribe(() => {
    updateState();
    if (!events && detail && isLive(detail)) connect();
  });
  start();
  return () => { unsubscribe(); if (events) events.close(); panel.close(); };
}

function composerForm(base) {
  const input = h('textarea', { name: 'message', rows: 3, id: 'composer-input' });
  const send = h('button', { type: 'submit', class: 'primary', id: 'composer-send' }, 'Send');
  const reason = h('p', { class: 'muted', id: 'composer-reason', role: 'status' });
  const error = errorLine();
  let state = 'waiting';
  let sending = false;
  const form = h('form', { class: 'composer', 'aria-label': 'Send a message' },
    field('Message', input, 'Ctrl+Enter (⌘+Enter) sends.'), h('div', { class: 'row' }, send, reason), error.el);
  function refresh() {
    const blocked = sending || state !== 'ready';
    send.disabled = blocked;
    input.disabled = state === 'ended';
    reason.textContent = sending ? 'Sending…'
      : state === 'running' ? 'The agent is working; you can send once it is done.'
        : state === 'ended' ? 'The session has ended.'
          : state === 'waiting' ? 'Waiting for the agent…' : '';
  }
  async function submit() {
    if (send.disabled || !input.value.trim()) return;
    error.clear();
    sending = true;
    refresh();
    try {
      await api('POST', `${base}/message`, { content: input.value, type: 'user' });
      input.value = '';
    } catch (failure) {
      error.show(`Not sent: ${failure.message}`);
    } finally {
      sending = false;
      refresh();
    }
  }
  form.addEventListener('submit', (event) => { event.preventDefault(); submit(); });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
  });
  refresh();
  return { el: form, setState(next) { state = next; refresh(); } };
}

function sidePanel(id, base) {
  const tabs = [['details', 'Details'], ['logs', 'Logs'], ['commands', 'Commands']];
  const list = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Session panels' });
  const panels = {};
  const buttons = {};
  for (const [key, label] of tabs) {
    buttons[key] = h('button', { type: 'button', role: 'tab', id: `tab-${key}`, 'aria-controls': `panel-${key}` }, label);
    panels[key] = h('div', { role: 'tabpanel', id: `panel-${key}`, 'aria-labelledby': `tab-${key}`, class: 'panel' });
    buttons[key].addEventListener('click', () => select(key));
    list.append(buttons[key]);
  }
  list.addEventListener('keydown', (event) => {
    const keys = tabs.map(([key]) => key);
    const index = keys.indexOf(current);
    const step = event.key === 'ArrowRight' ? 1 : event.key === 'ArrowLeft' ? -1 : 0;
    if (!step) return;
    const next = keys[(index + step + keys.length) % keys.length];
    select(next);
    buttons[next].focus();
  });
  let current = 'details';
  const detailList = h('dl', { class: 'detail', id: 'session-detail' });
  panels.details.append(detailList);

  const logs = h('pre', { class: 'logs', id: 'session-logs', tabindex: '0', 'aria-label': 'Agent log' });
  const follow = h('input', { type: 'checkbox', id: 'logs-follow', checked: true });
  const refreshButton = h('button', { type: 'button', class: 'small' }, 'Refresh');
  const logError = errorLine();
  panels.logs.append(h('div', { class: 'row' }, h('label', { class: 'check' }, follow, ' Follow'), refreshButton), logError.el, logs);
  let followTimer = null;
  async function loadLogs() {
    try {
      const text = await api('GET', `/sessions/${encodeURIComponent(id)}/logs?tail=500`);
      const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 40;
      logs.textContent = terminalText(text) || '(no output yet)';
      if (follow.checked || atBottom) logs.scrollTop = logs.scrollHeight;
      logError.clear();
    } catch (failure) {
      logError.show(failure.message);
    }
  }
  function scheduleFollow() {
    clearTimeout(followTimer);
    if (current === 'logs' && follow.checked && !document.hidden) {
      followTimer = setTimeout(async () => { await loadLogs(); scheduleFollow(); }, 2000);
    }
  }
  refreshButton.addEventListener('click', loadLogs);
  follow.addEventListener('change', scheduleFollow);

  const origin = location.origin;
  const curl = `curl -N -H "X-API-Key: $AGENTAPI_PROXY_API_KEY" ${origin}${base}/events\n\n` +
    `curl -H "X-API-Key: $AGENTAPI_PROXY_API_KEY" -H 'Content-Type: application/json' \\\n` +
    `  -d '{"content": "hello", "type": "user"}' ${origin}${base}/message`;
  const client = `agentapi-proxy client send -e ${origin} -s ${id} "hello"\n` +
    `agentapi-proxy client events -e ${origin} -s ${id}`;
  panels.commands.append(
    h('p', { class: 'muted' }, 'Set AGENTAPI_PROXY_API_KEY to your API key first.'),
    h('h3', null, 'curl'), h('pre', { class: 'command', id: 'command-curl' }, curl), copyButton('Copy curl', () => curl),
    h('h3', null, 'agentapi-proxy client'), h('pre', { class: 'command', id: 'command-client' }, client), copyButton('Copy client command', () => client));

  function select(key) {
    current = key;
    for (const [other] of tabs) {
      buttons[other].setAttribute('aria-selected', String(other === key));
      buttons[other].tabIndex = other === key ? 0 : -1;
      panels[other].hidden = other !== key;
    }
    if (key === 'logs') loadLogs();
    scheduleFollow();
  }
  select('details');

  return {
    el: h('aside', { class: 'side card', 'aria-label': 'Session details' }, list, ...Object.values(panels)),
    showDetail(detail) {
      const row = (name, value) => (value === null || value === undefined || value === '' ? null : [h('dt', null, name), h('dd', null, value)]);
      const tags = Object.entries(detail.tags || {});
      const env = detail.environment ? Object.keys(detail.environment) : detail.env_names;
      replace(detailList,
        row('Status', statusLabel(detail)),
        row('Owner', detail.user_id),
        row('Started', detail.started_at ? `${absoluteTime(detail.started_at)} (${relativeTime(detail.started_at)})` : null),
        row('Ended', detail.ended_at ? absoluteTime(detail.ended_at) : null),
        row('Exit code', detail.exit_code),
        row('Exit reason', detail.exit_reason),
        row('Agent', detail.agent_status),
        row('First prompt', detail.initial_message),
        row('Restarts', detail.restarts),
        row('Port', detail.port),
        tags.length ? [h('dt', null, 'Tags'), h('dd', { class: 'tags' }, tags.map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`)))] : null,
        env && env.length ? row('Environment', env.join(', ')) : null);
    },
    close() { clearTimeout(followTimer); },
  };
}
