// The sign-in page: an API key form (POST /auth/login sets the session cookie) and, when
// the server has GitHub OAuth, a link into the existing browser flow.

import { api } from './api.js';
import { h, field, errorLine } from './dom.js';

export function mountSignIn(main, context, signedIn) {
  document.title = 'Sign in · agentapi-proxy';
  const types = (context.types && context.types.types) || [];
  const has = (type) => types.some((entry) => entry.type === type);
  const card = h('section', { class: 'card signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'));
  if (has('oauth')) {
    card.append(h('a', { class: 'button primary', href: '/oauth/login?return_to=%2Fui%2F', id: 'github-signin' }, 'Sign in with GitHub'));
  }
  if (has('api_key') || has('github') || !has('oauth')) {
    const key = h('input', { type: 'password', name: 'api_key', autocomplete: 'off', required: true, spellcheck: 'false' });
    const error = errorLine();
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in with an API key');
    const form = h('form', { class: 'stack', id: 'key-signin' },
      field('API key', key, 'A static key, a GitHub token or a token this proxy issued.'),
      submit, error.el);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.clear();
      submit.disabled = true;
      try {
        await api('POST', '/auth/login', { api_key: key.value }, { keepOn401: true });
        key.value = '';
        await signedIn();
      } catch (failure) {
        error.show(failure.status === 401 ? `That key was not accepted: ${failure.message}` : failure.message);
        submit.disabled = false;
        key.focus();
      }
    });
    card.append(form);
    setTimeout(() => key.focus(), 0);
  }
  main.append(card);
  return () => {};
}
