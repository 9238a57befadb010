// Health: per webhook, success rate and latency (GET …/webhooks/{id}/stats) as
// charts, and the latency of its recent attempts.
import {api, appPath} from './api.js';
import {h, route, when, percent, badge} from './dom.js';
import {bars, latencyStrip} from './charts.js';

export async function render(ctx) {
  const {webhooks} = await api('GET', appPath(['webhooks']));
  ctx.main.append(h('h1', {}, 'Health'));
  if (!webhooks.length) ctx.main.append(h('p', {}, 'No webhooks.'));
  const cards = await Promise.all(webhooks.map((w) => card(w)));
  ctx.main.append(h('div', {class: 'cards'}, cards));
}

async function card(webhook) {
  const id = webhook.id;
  const [stats, attempts] = await Promise.all([
    api('GET', appPath(['webhooks', id, 'stats'])).catch(() => null),
    api('GET', appPath(['webhooks', id, 'attempts'], {limit: 60})).catch(() => ({attempts: []})),
  ]);
  const headingId = `health-${id}`;
  const body = [h('h2', {id: headingId}, h('a', {href: route('webhooks', id)}, webhook.target))];
  if (!stats) {
    body.push(h('p', {class: 'muted'}, 'The event log did not answer; try again in a moment.'));
  } else {
    const windows = [['Last hour', stats.hour], ['Last day', stats.day], ['Last week', stats.week]];
    body.push(
      bars('Success rate', windows.map(([label, w]) => ({label, value: w.success_rate,
        text: percent(w.success_rate), kind: w.success_rate === null || w.success_rate >= 0.95 ? 'ok' : 'bad'})), 1),
      bars('Latency (last day)', [
        {label: 'p50', value: stats.latency.p50_ms, text: ms(stats.latency.p50_ms)},
        {label: 'p95', value: stats.latency.p95_ms, text: ms(stats.latency.p95_ms)},
      ], Math.max(stats.latency.p95_ms || 0, stats.latency.p50_ms || 0, 1)),
      latencyStrip('Latency of recent attempts', attempts.attempts),
      h('dl', {class: 'facts'},
        h('dt', {}, 'Delivered / failed (day)'), h('dd', {}, `${stats.day.delivered} / ${stats.day.failed}`),
        h('dt', {}, 'Last success'), h('dd', {}, when(stats.last_success_at)),
        h('dt', {}, 'Last failure'), h('dd', {}, stats.last_failure_at
          ? `${when(stats.last_failure_at)}: ${stats.last_failure || ''}` : '—'),
        h('dt', {}, 'Failure streak'), h('dd', {}, String(stats.failure_streak)),
        h('dt', {}, 'Dead letters'), h('dd', {}, String(stats.dead_letters)),
        h('dt', {}, 'Circuit breaker'), h('dd', {}, badge(stats.breaker.state,
          stats.breaker.state === 'open' ? 'bad' : 'ok'),
        stats.breaker.until ? ` until ${when(stats.breaker.until)}` : '')));
  }
  return h('section', {class: 'card', 'aria-labelledby': headingId}, body);
}

function ms(value) {
  return value === null || value === undefined ? '—' : `${Math.round(value)} ms`;
}
