// The Profiles page: list, create, edit, delete, and start a session from a profile.
// Secret environment values arrive redacted ("<redacted>") and are sent back unchanged,
// which the API reads as "keep the stored value".

import { api } from './api.js';
import { h, replace, field, errorLine } from './dom.js';
import { absoluteTime } from './format.js';

export function mountProfiles(main, context) {
  document.title = 'Profiles · agentapi-proxy';
  const list = h('ul', { class: 'profiles', id: 'profile-list', 'aria-label': 'Profiles' });
  const note = h('p', { class: 'muted', role: 'status' }, 'Loading profiles…');
  const error = errorLine();
  const editor = profileEditor(load);
  const create = h('button', { type: 'button', class: 'primary', id: 'new-profile' }, 'New profile');
  create.addEventListener('click', () => editor.open(null, create));
  main.append(h('div', { class: 'page-head' }, h('h1', null, 'Profiles'), create), editor.el, error.el, note, list);
  let alive = true;

  async function load() {
    try {
      const answer = await api('GET', '/profiles');
      if (!alive) return;
      note.textContent = answer.profiles.length ? '' : 'No profiles yet.';
      replace(list, answer.profiles.map(row));
    } catch (failure) {
      note.textContent = '';
      error.show(failure.message);
    }
  }

  function row(profile) {
    const rowError = errorLine();
    const start = h('button', { type: 'button', class: 'small primary' }, 'Start session');
    const edit = h('button', { type: 'button', class: 'small' }, 'Edit');
    const remove = h('button', { type: 'button', class: 'small danger' }, 'Delete');
    const actions = h('div', { class: 'actions' }, start, edit, remove);
    const el = h('li', { class: 'profile-row card', 'data-profile-id': profile.id },
      h('div', null, h('h2', { class: 'profile-name' }, profile.name),
        profile.description ? h('p', { class: 'muted' }, profile.description) : null,
        h('div', { class: 'tags' }, Object.entries(profile.tags || {}).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`))),
        Object.keys(profile.environment || {}).length
          ? h('p', { class: 'env' }, 'Environment: ', Object.entries(profile.environment).map(([k, v]) => `${k}=${v}`).join(', '))
          : null,
        h('small', { class: 'muted' }, context.isAdmin() ? `${profile.user_id} · ` : '',
          `updated ${absoluteTime(profile.updated_at)}`, profile.last_used_at ? ` · last used ${absoluteTime(profile.last_used_at)}` : '')),
      actions, rowError.el);
    start.addEventListener('click', async () => {
      start.disabled = true;
      start.textContent = 'Starting…';
      try {
        const answer = await api('POST', '/start-with-profile', { profile_id: profile.id });
        context.navigate(`/ui/sessions/${encodeURIComponent(answer.session_id)}`);
      } catch (failure) {
        rowError.show(`The session did not start: ${failure.message}`);
        start.disabled = false;
        start.textContent = 'Start session';
      }
    });
    edit.addEventListener('click', () => editor.open(profile, edit));
    remove.addEventListener('click', () => {
      const yes = h('button', { type: 'button', class: 'small danger confirm-delete' }, 'Yes, delete');
      const no = h('button', { type: 'button', class: 'small' }, 'Cancel');
      replace(actions, h('span', null, `Delete “${profile.name}”?`), yes, no);
      no.addEventListener('click', () => { replace(actions, start, edit, remove); remove.focus(); });
      yes.addEventListener('click', async () => {
        yes.disabled = true;
        try {
          await api('DELETE', `/profiles/${encodeURIComponent(profile.id)}`);
          load();
        } catch (failure) {
          rowError.show(failure.message);
          yes.disabled = false;
        }
      });
      yes.focus();
    });
    return el;
  }

  load();
  return () => { alive = false; };
}

function pairsText(object) {
  return Object.entries(object || {}).map(([k, v]) => `${k}=${v}`).join('\n');
}

function parsePairs(text, what) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const at = line.indexOf('=');
    if (at <= 0) throw new Error(`${what}: “${line.trim()}” is not NAME=value`);
    out[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return out;
}

function profileEditor(saved) {
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: '200', autocomplete: 'off' });
  const description = h('input', { type: 'text', name: 'description', autocomplete: 'off' });
  const tags = h('textarea', { name: 'tags', rows: 2, spellcheck: 'false' });
  const environment = h('textarea', { name: 'environment', rows: 3, spellcheck: 'false' });
  const prompt = h('textarea', { name: 'system_prompt', rows: 2 });
  const title = h('h2', null, 'New profile');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Save profile');
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const error = errorLine();
  const el = h('form', { class: 'card stack', id: 'profile-form', hidden: true, 'aria-label': 'Profile' },
    title, field('Name', name), field('Description', description),
    field('Tags', tags, 'One key=value per line.'),
    field('Environment', environment, 'One NAME=value per line. Secret values show as <redacted>; leave them so to keep them.'),
    field('System prompt', prompt), h('div', { class: 'row' }, submit, cancel), error.el);
  let editing = null;
  let opener = null;
  function close() {
    el.hidden = true;
    if (opener) opener.focus();
  }
  cancel.addEventListener('click', close);
  el.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    let body;
    try {
      body = {
        name: name.value, description: description.value, system_prompt: prompt.value,
        tags: parsePairs(tags.value, 'Tags'), environment: parsePairs(environment.value, 'Environment'),
      };
    } catch (failure) {
      error.show(failure.message);
      return;
    }
    submit.disabled = true;
    try {
      if (editing) await api('PUT', `/profiles/${encodeURIComponent(editing.id)}`, body);
      else await api('POST', '/profiles', body);
      close();
      saved();
    } catch (failure) {
      error.show(failure.message);
    } finally {
      submit.disabled = false;
    }
  });
  return {
    el,
    open(profile, button) {
      editing = profile;
      opener = button;
      title.textContent = profile ? `Edit profile` : 'New profile';
      name.value = profile ? profile.name : '';
      description.value = profile ? profile.description || '' : '';
      tags.value = profile ? pairsText(profile.tags) : '';
      environment.value = profile ? pairsText(profile.environment) : '';
      prompt.value = profile ? profile.system_prompt || '' : '';
      error.clear();
      el.hidden = false;
      name.focus();
    },
  };
}
