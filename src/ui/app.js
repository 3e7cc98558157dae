// The dashboard's entry point: who is signed in, the header, and client-side routing
// between the pages (`/ui/`, `/ui/sessions/{id}`, `/ui/profiles`, `/ui/overview`).

import { api, onUnauthorized } from './api.js';
import { h, replace } from './dom.js';
import { watchConnection } from './sse.js';
import { startSessionStream, stopSessionStream } from './store.js';
import { mountSignIn } from './signin.js';
import { mountSessions } from './sessions.js';
import { mountSession } from './session.js';
import { mountProfiles } from './profiles.js';
import { mountOverview } from './overview.js';

const context = { me: null, types: null, navigate };
let unmount = null;

function isAdmin() {
  return context.me && context.me.role === 'admin';
}
context.isAdmin = isAdmin;

function navigate(path, replaceState = false) {
  if (replaceState) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

function renderHeader() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  const signOut = document.getElementById('signout');
  const path = location.pathname;
  const link = (href, label, active) =>
    h('a', { href, 'aria-current': active ? 'page' : null }, label);
  if (!context.me) {
    replace(nav);
    replace(who);
    signOut.hidden = true;
    return;
  }
  replace(nav,
    link('/ui/', 'Sessions', path === '/ui/' || path.startsWith('/ui/sessions/')),
    link('/ui/profiles', 'Profiles', path === '/ui/profiles'),
    isAdmin() ? link('/ui/overview', 'Overview', path === '/ui/overview') : null);
  replace(who, h('span', { class: 'user', title: `Signed in as ${context.me.user_id}` }, context.me.user_id),
    isAdmin() ? h('span', { class: 'role' }, 'admin') : null);
  signOut.hidden = !context.types || !context.types.enabled;
}

function render() {
  if (unmount) unmount();
  unmount = null;
  renderHeader();
  const main = document.getElementById('main');
  replace(main);
  if (!context.me) {
    unmount = mountSignIn(main, context, signedIn);
    return;
  }
  const path = location.pathname;
  const session = path.match(/^\/ui\/sessions\/([^/]+)\/?$/);
  if (path === '/ui/' || path === '/ui') unmount = mountSessions(main, context);
  else if (session) unmount = mountSession(main, context, decodeURIComponent(session[1]));
  else if (path === '/ui/profiles') unmount = mountProfiles(main, context);
  else if (path === '/ui/overview') unmount = mountOverview(main, context);
  else {
    document.title = 'Not found · agentapi-proxy';
    main.append(h('h1', null, 'Page not found'), h('p', null, h('a', { href: '/ui/' }, 'Back to sessions')));
  }
}

async function signedIn() {
  context.me = await api('GET', '/auth/status', undefined, { keepOn401: true });
  startSessionStream();
  render();
}

function signedOut() {
  if (!context.me) return;
  context.me = null;
  stopSessionStream();
  render();
}

async function signOut() {
  try {
    await api('POST', '/auth/logout', undefined, { keepOn401: true });
  } catch {
    // Ended already, or the server is away: the page forgets the person either way.
  }
  signedOut();
}

function interceptLinks(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = event.target.closest('a[href]');
  if (!anchor || anchor.target || anchor.hasAttribute('download')) return;
  const url = new URL(anchor.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui/')) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

async function boot() {
  onUnauthorized(signedOut);
  document.addEventListener('click', interceptLinks);
  window.addEventListener('popstate', render);
  document.getElementById('signout').addEventListener('click', signOut);
  const indicator = document.getElementById('conn');
  watchConnection((reconnecting) => {
    indicator.textContent = reconnecting ? 'reconnecting…' : '';
    indicator.hidden = !reconnecting;
  });
  const main = document.getElementById('main');
  for (;;) {
    try {
      context.types = await api('GET', '/auth/types');
      break;
    } catch (error) {
      replace(main, h('p', { class: 'error', role: 'alert' }, `The server cannot be reached: ${error.message}`));
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  try {
    context.me = await api('GET', '/auth/status', undefined, { keepOn401: true });
    startSessionStream();
  } catch (error) {
    if (error.status !== 401) replace(main, h('p', { class: 'error', role: 'alert' }, error.message));
  }
  render();
}

boot();
