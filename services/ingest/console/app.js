// The console's shell: sign-in, the theme of a portal link, the header, and a
// router over the fragment (#/webhooks, #/events/evt_1, …). Each page is a
// module that renders from the public API; pages' timers stop on navigation.
import {takeTokenFromFragment, signIn, signOut, claims, currentApp, chooseApp, ApiError}
  from './api.js';
import {h, clear, say} from './dom.js';
import * as webhooks from './webhooks.js';
import * as events from './events.js';
import * as deadLetters from './dead_letters.js';
import * as health from './health.js';
import * as operator from './operator.js';

const PAGES = {
  'webhooks': webhooks, 'events': events, 'dead-letters': deadLetters,
  'health': health, 'operator': operator,
};
let timers = [];
let generation = 0;

/** What a page gets: where to render, the route's parts and query, helpers. */
function context(main, parts, query) {
  const c = claims() || {};
  const mine = generation;
  return {
    main, parts, query,
    readOnly: c.read_only !== undefined && c.read_only !== false,
    admin: c.scope === 'admin',
    /** Run `fn` every `ms` until the user leaves the page. */
    every(fn, ms) { if (mine === generation) timers.push(setInterval(fn, ms)); },
    /** False once the user has left the page (its work should stop). */
    alive: () => mine === generation,
    go(hash) { location.hash = hash; },
    refresh: () => render(),
  };
}

function parseHash() {
  const [path, search] = location.hash.replace(/^#\/?/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return {parts, query: new URLSearchParams(search || '')};
}

function applyTheme() {
  const params = new URLSearchParams(location.search);
  const accent = params.get('accent');
  if (accent && /^#[0-9a-fA-F]{6}$/.test(accent)) {
    const root = document.documentElement.style;
    root.setProperty('--accent', accent);
    const [r, g, b] = [1, 3, 5].map((i) => {
      const c = parseInt(accent.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    // Text on the accent: whichever of black and white contrasts more.
    root.setProperty('--on-accent', luminance > 0.179 ? '#000000' : '#ffffff');
    // Links keep the default colour unless the accent reads on white (4.5:1).
    if (1.05 / (luminance + 0.05) >= 4.5) root.setProperty('--link', accent);
  }
  const logo = params.get('logo');
  // The rules ingest applies before its Content-Security-Policy lets the logo's
  // origin in (services/ingest/portal.py logo_origin); a logo it still refuses
  // (http, unless HOOKBUS_ALLOW_HTTP) fails to load and is hidden.
  if (logo && logo.length <= 2048 && !/[\s\x00-\x1f]/.test(logo)
      && /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?([/?#]|$)/i.test(logo)) {
    try {
      const url = new URL(logo);
      if (url.protocol === 'https:' || url.protocol === 'http:') {
        const img = document.getElementById('logo');
        img.addEventListener('error', () => { img.hidden = true; });
        img.src = url.href;
        img.alt = '';
        img.hidden = false;
      }
    } catch { /* not a URL: no logo */ }
  }
}

function header() {
  const c = claims();
  const who = clear(document.getElementById('who'));
  const nav = document.getElementById('nav');
  nav.hidden = !c;
  document.getElementById('nav-operator').hidden = !(c && c.scope === 'admin');
  for (const link of nav.querySelectorAll('a')) {
    const current = location.hash.startsWith(link.getAttribute('href'));
    if (current) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
  if (!c) return;
  const app = currentApp();
  if (c.scope === 'admin') {
    const input = h('input', {id: 'app-choice', name: 'app', value: app || '', size: 14,
      autocomplete: 'off', required: true});
    who.append(h('form', {class: 'inline', onsubmit: (e) => {
      e.preventDefault();
      chooseApp(input.value.trim());
      render();
    }}, h('label', {for: 'app-choice'}, 'App'), input, h('button', {type: 'submit'}, 'Open')));
    who.append(h('span', {class: 'badge'}, 'operator'));
  } else {
    who.append(h('span', {}, 'App ', h('strong', {}, app)));
  }
  if (c.read_only !== undefined && c.read_only !== false) who.append(h('span', {class: 'badge'}, 'read-only'));
  who.append(h('button', {type: 'button', class: 'secondary', onclick: () => {
    signOut();
    location.hash = '#/';
    render();
  }}, 'Sign out'));
}

function signInPage(main) {
  const field = h('textarea', {id: 'token', name: 'token', rows: 4, required: true,
    autocomplete: 'off', spellcheck: 'false'});
  main.append(h('h1', {}, 'Sign in'),
    h('p', {}, 'Paste an API token (a JWT of app or admin scope, as ',
      h('code', {}, 'make token'), ' prints). It stays in this browser tab only.'),
    h('form', {class: 'stack', onsubmit: (e) => {
      e.preventDefault();
      signIn(field.value);
      if (!claims()) { say('That is not a JWT.', 'error'); return; }
      location.hash = claims().scope === 'admin' ? '#/operator' : '#/webhooks';
      render();
    }}, h('label', {for: 'token'}, 'API token'), field,
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Sign in'))));
  field.focus();
}

async function render(moveFocus = false) {
  timers.forEach(clearInterval);
  timers = [];
  generation += 1;
  header();
  // Each render fills its own view: one that a later render replaced fills a
  // view no longer in the page.
  const main = h('div', {class: 'view'});
  clear(document.getElementById('main')).append(main);
  const c = claims();
  if (!c) { signInPage(main); return; }
  const {parts, query} = parseHash();
  const name = parts[0] || (c.scope === 'admin' && !currentApp() ? 'operator' : 'webhooks');
  const page = PAGES[name];
  if (!page || (name === 'operator' && c.scope !== 'admin')) {
    main.append(h('h1', {}, 'Not found'), h('p', {}, 'No such page.'));
    return;
  }
  if (name !== 'operator' && !currentApp()) {
    main.append(h('h1', {}, 'Choose an app'),
      h('p', {}, 'Name an app in the header, or pick one on the ',
        h('a', {href: '#/operator'}, 'Operator'), ' page.'));
    return;
  }
  try {
    await page.render(context(main, parts.slice(1), query));
  } catch (error) {
    main.append(h('div', {class: 'error', role: 'alert'},
      error instanceof ApiError ? `The API answered ${error.status}: ${error.message}`
        : `Something failed: ${error.message}`));
  }
  const heading = main.querySelector('h1');
  if (heading && (moveFocus || document.activeElement === document.body)) {
    heading.setAttribute('tabindex', '-1');
    heading.focus();
  }
}

takeTokenFromFragment();
applyTheme();
window.addEventListener('hashchange', () => {
  if (takeTokenFromFragment() || location.hash.startsWith('#/') || location.hash === '') render(true);
});
// The skip link moves the focus without touching the fragment (the route).
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  document.getElementById('main').focus();
});
render();
