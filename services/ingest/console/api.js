// The public API, as a script would use it: Authorization: Bearer <token>.
// The token comes from a portal link's fragment (#token=…, which no browser
// sends to a server or in a Referer) or is pasted; it is kept in this tab's
// sessionStorage only.

const TOKEN = 'hookbus.token';
const APP = 'hookbus.app';

/** Move a portal link's token from the fragment to sessionStorage, and strip
 * it (true if there was one). Also on a hashchange: a link that differs from the
 * page only in its fragment (a platform swapping the iframe's link) loads no page. */
export function takeTokenFromFragment() {
  if (!location.hash.startsWith('#token=')) return false;
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  if (token) {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.removeItem(APP);
  }
  history.replaceState(null, '', location.pathname + location.search + '#/webhooks');
  return true;
}

export function signIn(token) {
  sessionStorage.setItem(TOKEN, token.trim());
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(APP);
}

export function token() {
  return sessionStorage.getItem(TOKEN);
}

/** The token's claims, read (not verified: the API verifies) to shape the page. */
export function claims() {
  const value = token();
  if (!value) return null;
  try {
    const part = value.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const parsed = JSON.parse(atob(part.padEnd(part.length + (4 - part.length % 4) % 4, '=')));
    return parsed && typeof parsed === 'object' ? parsed : null;
  } catch {
    return null;
  }
}

/** The app the console shows: the token's, or the one an operator chose. */
export function currentApp() {
  const c = claims();
  if (c && c.scope === 'app' && typeof c.app_id === 'string') return c.app_id;
  return sessionStorage.getItem(APP);
}

export function chooseApp(appId) {
  sessionStorage.setItem(APP, appId);
}

export class ApiError extends Error {
  constructor(status, body) {
    const error = body && body.error;
    super(error && typeof error.message === 'string' ? error.message : `HTTP ${status}`);
    this.status = status;
  }
}

export async function api(method, path, body) {
  const headers = {Authorization: `Bearer ${token()}`};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers, cache: 'no-store', referrerPolicy: 'no-referrer',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = response.headers.get('Content-Type') || '';
  const data = response.status !== 204 && type.includes('json') ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** `/v1/apps/{app}/…`, every part encoded; a query object is appended. */
export function appPath(parts, query) {
  const path = `/v1/apps/${[currentApp(), ...parts].map(encodeURIComponent).join('/')}`;
  const search = new URLSearchParams(
    Object.entries(query || {}).filter(([, v]) => v !== undefined && v !== null && v !== ''));
  return search.toString() ? `${path}?${search}` : path;
}

export function pathFor(appId, parts, query) {
  const path = `/v1/apps/${[appId, ...parts].map(encodeURIComponent).join('/')}`;
  const search = new URLSearchParams(query || {});
  return search.toString() ? `${path}?${search}` : path;
}

let eventTypes = null;
/** GET /v1/event-types, once. */
export async function loadEventTypes() {
  eventTypes = eventTypes || await api('GET', '/v1/event-types');
  return eventTypes;
}

/** Requests the browser queues at once (its connections per host): the
 * operator's pages ask per app and per webhook, and an app count has no bound. */
export const AT_ONCE = 6;

/** `fn` of each item, at most `limit` running at a time, none started once
 * `alive()` is false (the user left the page): the results, in order
 * (undefined for those not started). */
export async function mapBounded(items, limit, fn, alive = () => true) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length && alive()) {
      const n = next++;
      results[n] = await fn(items[n], n);
    }
  };
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker));
  return results;
}
