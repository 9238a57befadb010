// Operator (admin token): the apps (GET /v1/apps), an event id looked up
// across apps, the failing endpoints and the dead letters in total — all from
// the public API, one request per app and webhook (no private listing).
import {api, pathFor, chooseApp, mapBounded, AT_ONCE} from './api.js';
import {h, put, when, percent, table, badge} from './dom.js';

export async function render(ctx) {
  const {apps} = await api('GET', '/v1/apps');
  const open = (appId, hash) => { chooseApp(appId); ctx.go(hash); ctx.refresh(); };
  const lookup = h('input', {id: 'lookup', name: 'event_id', required: true, autocomplete: 'off',
    placeholder: 'evt_…'});
  const found = h('div', {id: 'lookup-result', 'aria-live': 'polite'});
  const failing = h('div', {id: 'failing'}, h('p', {class: 'muted'}, 'Reading every webhook’s stats…'));
  ctx.main.append(
    h('h1', {}, 'Operator'),
    h('h2', {}, 'Apps'),
    table('Apps with webhooks', ['App', 'Webhooks', 'Disabled', ''],
      apps.map((a) => h('tr', {},
        h('td', {}, h('code', {}, a.app_id)),
        h('td', {}, String(a.webhooks)),
        h('td', {}, String(a.disabled)),
        h('td', {}, h('button', {type: 'button', class: 'secondary',
          'aria-label': `Open app ${a.app_id}`, onclick: () => open(a.app_id, '#/webhooks')}, 'Open'))))),
    h('h2', {}, 'Find an event'),
    h('form', {class: 'inline', onsubmit: async (e) => {
      e.preventDefault();
      const id = lookup.value.trim();
      put(found, h('p', {class: 'muted'}, `Looking in ${apps.length} apps…`));
      const hits = (await mapBounded(apps, AT_ONCE, async (a) => {
        try {
          return {app: a.app_id, detail: await api('GET', pathFor(a.app_id, ['events', id]))};
        } catch {
          return null;
        }
      }, ctx.alive)).filter(Boolean);
      put(found, hits.length
        ? h('div', {}, hits.map((hit) => h('p', {}, 'In app ', h('code', {}, hit.app), ': ',
          h('code', {}, hit.detail.event.type), ` · ${hit.detail.deliveries.length} deliveries `,
          h('button', {type: 'button', class: 'secondary', onclick: () =>
            open(hit.app, `#/events/${encodeURIComponent(id)}`)}, 'Open'))))
        : h('p', {}, `No app with webhooks has an event ${id} in its log.`));
    }}, h('label', {for: 'lookup'}, 'Event id'), lookup, h('button', {type: 'submit'}, 'Find')),
    found,
    h('h2', {}, 'Failing endpoints'),
    failing);
  // Every app's webhooks, then each one's stats: a few requests at a time, and
  // none once the user has left the page.
  const lists = await mapBounded(apps, AT_ONCE, (a) => api('GET', pathFor(a.app_id, ['webhooks']))
    .then(({webhooks}) => webhooks.map((w) => [a, w]), () => []), ctx.alive);
  const pairs = lists.filter(Boolean).flat();
  const allStats = await mapBounded(pairs, AT_ONCE, ([a, w]) =>
    api('GET', pathFor(a.app_id, ['webhooks', w.id, 'stats'])).catch(() => null), ctx.alive);
  if (!ctx.alive()) return;
  const rows = [];
  let dead = 0;
  pairs.forEach(([a, w], n) => {
    const stats = allStats[n];
    dead += stats ? stats.dead_letters : 0;
    if (!w.enabled || (stats && (stats.failure_streak > 0 || stats.dead_letters > 0))) {
      rows.push(h('tr', {},
        h('td', {}, h('code', {}, a.app_id)),
        h('td', {}, w.target),
        h('td', {}, w.enabled ? badge('enabled', 'ok') : badge(`disabled${w.disabled_reason ? `: ${w.disabled_reason}` : ''}`, 'bad')),
        h('td', {}, stats ? percent(stats.day.success_rate) : '—'),
        h('td', {}, stats ? String(stats.failure_streak) : '—'),
        h('td', {}, stats ? String(stats.dead_letters) : '—'),
        h('td', {}, stats && stats.last_failure_at ? `${when(stats.last_failure_at)}: ${stats.last_failure || ''}` : '—')));
    }
  });
  put(failing, 
    h('p', {}, 'Dead letters in total: ', h('strong', {id: 'dead-total'}, String(dead))),
    table('Endpoints failing, disabled, or with dead letters',
      ['App', 'Endpoint', 'Status', 'Success (day)', 'Streak', 'Dead letters', 'Last failure'], rows));
}
