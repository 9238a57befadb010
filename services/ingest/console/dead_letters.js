// Dead letters, per webhook, and Replay: a job (POST …/replay answers 202
// with it) whose progress is polled (GET …/replay/{job}).
import {api, appPath} from './api.js';
import {h, put, route, when, table, badge, say} from './dom.js';

export async function render(ctx) {
  const {webhooks} = await api('GET', appPath(['webhooks']));
  ctx.main.append(h('h1', {}, 'Dead letters'),
    h('p', {class: 'muted'}, 'Deliveries that failed their last attempt. Replay puts them back '
      + 'on the queue: each gets a new attempt series.'));
  if (!webhooks.length) ctx.main.append(h('p', {}, 'No webhooks.'));
  for (const webhook of webhooks) ctx.main.append(await section(ctx, webhook));
}

async function section(ctx, webhook) {
  const id = webhook.id;
  const [stats, attempts] = await Promise.all([
    api('GET', appPath(['webhooks', id, 'stats'])).catch(() => null),
    api('GET', appPath(['webhooks', id, 'attempts'], {limit: 100})).catch(() => ({attempts: []})),
  ]);
  const dead = attempts.attempts.filter((a) => a.result === 'dead');
  const progress = h('div', {class: 'job', 'aria-live': 'polite'});
  const headingId = `dl-${id}`;
  const replay = h('button', {type: 'button', onclick: async () => {
    replay.disabled = true;
    const job = await api('POST', appPath(['webhooks', id, 'replay']), {}).catch((error) => {
      replay.disabled = false;
      throw error;
    });
    say('Replay started.');
    follow(ctx, id, job, progress, () => { replay.disabled = false; });
  }}, 'Replay dead letters');
  return h('section', {class: 'card', 'aria-labelledby': headingId},
    h('h2', {id: headingId}, h('a', {href: route('webhooks', id)}, webhook.target)),
    h('p', {}, 'In the dead letters: ', h('strong', {class: 'dead-count'},
      stats ? String(stats.dead_letters) : '—')),
    ctx.readOnly ? null : h('div', {class: 'actions'}, replay),
    progress,
    table(`Recent dead letters of ${webhook.target}`, ['At', 'Event', 'Type', 'Reason'],
      dead.map((a) => h('tr', {},
        h('td', {}, when(a.at)),
        h('td', {}, h('a', {href: route('events', a.event_id)}, a.event_id)),
        h('td', {}, a.event_type),
        h('td', {}, a.error || '')))));
}

function follow(ctx, webhookId, job, box, done) {
  const show = (j) => {
    put(box, 
      h('p', {}, 'Replay ', h('code', {}, j.id), ': ', badge(j.state, j.state === 'failed' ? 'bad' : 'ok'),
        ` ${j.replayed} replayed, ${j.scanned} of ${j.total} read`,
        j.finished_at ? ` · finished ${when(j.finished_at)}` : ''),
      h('progress', {max: Math.max(j.total, 1), value: j.total ? j.scanned : (j.state === 'done' ? 1 : 0),
        'aria-label': 'Replay progress'}),
      j.error ? h('p', {class: 'error'}, j.error) : null);
  };
  show(job);
  let finished = job.state !== 'running';
  if (finished) { done(); return; }
  ctx.every(async () => {
    if (finished) return;
    try {
      const now = await api('GET', appPath(['webhooks', webhookId, 'replay', job.id]));
      show(now);
      if (now.state !== 'running') { finished = true; done(); }
    } catch { /* polled again */ }
  }, 1000);
}
