// Events: the event log with filters (type, status, time) and a live view
// (polling); an event's page with its payload, each webhook's attempt
// timeline, and Resend.
import {api, appPath, loadEventTypes} from './api.js';
import {h, clear, put, route, when, table, badge, say} from './dom.js';

export async function render(ctx) {
  if (ctx.parts[0]) return detail(ctx, ctx.parts[0]);
  return list(ctx);
}

const STATUSES = ['', 'failed', 'pending', 'delivered', 'retrying', 'dead', 'dropped'];

function counts(deliveries) {
  const shown = Object.entries(deliveries).filter(([, n]) => n > 0);
  if (!shown.length) return h('span', {class: 'muted'}, 'no webhook');
  return h('span', {}, shown.map(([status, n]) => badge(`${n} ${status}`,
    status === 'delivered' ? 'ok' : status === 'pending' ? '' : 'bad')));
}

/** A datetime-local value (local time) as an ISO instant, or undefined. */
function instant(value) {
  if (!value) return undefined;
  const at = new Date(value);
  return Number.isNaN(at.getTime()) ? undefined : at.toISOString();
}

async function list(ctx) {
  const types = await loadEventTypes();
  const q = ctx.query;
  const type = h('select', {id: 'f-type', name: 'type'}, h('option', {value: ''}, 'Any type'),
    types.event_types.map((t) => h('option', {value: t.type, selected: q.get('type') === t.type}, t.type)));
  const status = h('select', {id: 'f-status', name: 'status'},
    STATUSES.map((s) => h('option', {value: s, selected: (q.get('status') || '') === s},
      s || 'Any status')));
  const since = h('input', {id: 'f-since', name: 'since', type: 'datetime-local', value: q.get('since') || ''});
  const until = h('input', {id: 'f-until', name: 'until', type: 'datetime-local', value: q.get('until') || ''});
  const live = h('input', {id: 'live', type: 'checkbox', checked: true});
  const results = h('div', {id: 'events'});
  const more = h('div', {});
  const seen = new Set();
  const query = () => ({type: q.get('type'), status: q.get('status'),
    since: instant(q.get('since')), until: instant(q.get('until')), limit: 50});
  const row = (e, fresh) => h('tr', {class: fresh ? 'fresh' : null},
    h('td', {}, when(e.created_at)),
    h('td', {}, h('code', {}, e.type)),
    h('td', {}, h('a', {href: route('events', e.id)}, e.id)),
    h('td', {}, counts(e.deliveries)));
  let shown = '';
  const show = (page, first) => {
    const key = JSON.stringify(page);
    if (key === shown) return;  // unchanged: keep the table (and the focus in it)
    shown = key;
    const rows = page.events.map((e) => {
      const fresh = !first && !seen.has(e.id);
      seen.add(e.id);
      return row(e, fresh);
    });
    put(results, table('Events, newest first', ['Created', 'Type', 'Event', 'Deliveries'], rows));
    clear(more);
    if (page.next) {
      more.append(h('button', {type: 'button', class: 'secondary', onclick: async () => {
        live.checked = false;
        const older = await api('GET', appPath(['events'], {...query(), cursor: page.next}));
        results.querySelector('tbody').append(...older.events.map((e) => row(e, false)));
        page.next = older.next;
        if (!older.next) more.remove();
      }}, 'Older events'));
    }
  };
  ctx.main.append(
    h('h1', {}, 'Events'),
    h('form', {class: 'filters', onsubmit: (e) => {
      e.preventDefault();
      const next = new URLSearchParams(Object.entries({type: type.value, status: status.value,
        since: since.value, until: until.value}).filter(([, v]) => v));
      ctx.go(`#/events${next.toString() ? `?${next}` : ''}`);
    }},
    h('div', {}, h('label', {for: 'f-type'}, 'Type'), type),
    h('div', {}, h('label', {for: 'f-status'}, 'Status'), status),
    h('div', {}, h('label', {for: 'f-since'}, 'Since'), since),
    h('div', {}, h('label', {for: 'f-until'}, 'Until'), until),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Filter'))),
    h('div', {class: 'check'}, live, h('label', {for: 'live'}, 'Live: look for new events every 3 s')),
    results, more);
  show(await api('GET', appPath(['events'], query())), true);
  ctx.every(async () => {
    if (!live.checked) return;
    try {
      show(await api('GET', appPath(['events'], query())), false);
    } catch { /* the next poll tries again */ }
  }, 3000);
}

function timeline(attempts) {
  if (!attempts.length) return h('p', {class: 'muted'}, 'No attempt yet.');
  return h('ol', {class: 'timeline'}, attempts.map((a) => h('li', {class: `result-${a.result}`},
    h('span', {class: 'at'}, when(a.at)), ' ',
    badge(a.result, a.result === 'success' ? 'ok' : a.result === 'deferred' ? '' : 'bad'), ' ',
    h('span', {}, `attempt ${a.attempt}`),
    a.status_code ? h('span', {}, ` · HTTP ${a.status_code}`) : null,
    a.latency_ms ? h('span', {}, ` · ${Math.round(a.latency_ms)} ms`) : null,
    a.origin ? h('span', {class: 'muted'}, ` · ${a.origin}`) : null,
    a.error ? h('div', {class: 'muted'}, a.error) : null)));
}

async function detail(ctx, id) {
  const box = h('div', {});
  let shown = '';
  let busy = true;
  let resentAt = 0;  // deliveries under way (or a resend): the page follows them
  const load = async () => {
    const found = await api('GET', appPath(['events', id]));
    busy = found.deliveries.some((d) => d.status === 'pending' || d.status === 'retrying');
    const key = JSON.stringify(found);
    if (key === shown) return;
    shown = key;
    const event = found.event;
    const resend = async (webhookId) => {
      const sent = await api('POST', appPath(['events', id, 'resend']),
        webhookId ? {webhook_id: webhookId} : {});
      say(`Resent to ${sent.webhook_ids.length} webhook${sent.webhook_ids.length === 1 ? '' : 's'}.`);
      resentAt = Date.now();
    };
    put(box, 
      h('div', {class: 'title'}, h('h1', {}, event.type),
        ctx.readOnly || !found.deliveries.length ? null
          : h('button', {type: 'button', onclick: () => resend(null)}, 'Resend to all')),
      h('dl', {class: 'facts'},
        h('dt', {}, 'Event'), h('dd', {}, h('code', {}, event.id)),
        h('dt', {}, 'Created'), h('dd', {}, when(event.created_at)),
        h('dt', {}, 'App'), h('dd', {}, event.app_id)),
      h('h2', {}, 'Deliveries'),
      found.deliveries.length ? h('div', {}, found.deliveries.map((d) => h('section', {class: 'delivery'},
        h('h3', {}, h('a', {href: route('webhooks', d.webhook_id)}, d.webhook_id), ' ',
          badge(d.status, d.status === 'delivered' ? 'ok' : d.status === 'pending' ? '' : 'bad')),
        timeline(d.attempts),
        ctx.readOnly ? null : h('button', {type: 'button', class: 'secondary',
          'aria-label': `Resend to ${d.webhook_id}`, onclick: () => resend(d.webhook_id)}, 'Resend'))))
        : h('p', {class: 'muted'}, 'No webhook matched this event.'),
      h('h2', {}, 'Payload'),
      h('pre', {class: 'payload', tabindex: '0', 'aria-label': 'Payload'}, JSON.stringify(event, null, 2)));
  };
  ctx.main.append(h('p', {class: 'crumbs'}, h('a', {href: '#/events'}, 'Events'), ' / ', id), box);
  await load();
  ctx.every(() => {
    if (busy || Date.now() - resentAt < 30000) load().catch(() => {});
  }, 2000);
}
