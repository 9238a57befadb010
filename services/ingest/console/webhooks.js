// Webhooks: the list with each endpoint's health; create and edit with a
// trigger picker (canonical types and each seed platform's names, described
// from GET /v1/event-types); delete; reveal, copy and rotate the secret; send a
// test event and watch its attempt arrive.
import {api, appPath, loadEventTypes} from './api.js';
import {h, clear, put, route, when, percent, table, badge, say, confirmDialog} from './dom.js';

export async function render(ctx) {
  const [id, action] = ctx.parts;
  if (id === 'new') return form(ctx, null);
  if (id && action === 'edit') return form(ctx, await api('GET', appPath(['webhooks', id])));
  if (id) return detail(ctx, id);
  return list(ctx);
}

async function statsOf(id) {
  try {
    return await api('GET', appPath(['webhooks', id, 'stats']));
  } catch {
    return null;  // the event log may be moving: the list still shows
  }
}

function statusOf(webhook) {
  if (webhook.enabled) return badge('enabled', 'ok');
  return h('span', {}, badge('disabled', 'bad'),
    webhook.disabled_reason ? h('span', {class: 'muted'}, ` ${webhook.disabled_reason}`) : '');
}

async function list(ctx) {
  const {webhooks} = await api('GET', appPath(['webhooks']));
  const stats = await Promise.all(webhooks.map((w) => statsOf(w.id)));
  ctx.main.append(
    h('div', {class: 'title'}, h('h1', {}, 'Webhooks'),
      ctx.readOnly ? null : h('a', {class: 'button', href: '#/webhooks/new'}, 'New webhook')),
    h('p', {class: 'muted'}, `${webhooks.length} endpoint${webhooks.length === 1 ? '' : 's'}. `
      + 'Success rate over the last day.'),
    table('Webhooks of this app', ['Endpoint', 'Triggers', 'Status', 'Success (day)', 'Last failure'],
      webhooks.map((w, n) => h('tr', {},
        h('td', {}, h('a', {href: route('webhooks', w.id)}, w.target),
          w.description ? h('div', {class: 'muted'}, w.description) : null),
        h('td', {}, w.triggers.map((t) => h('code', {class: 'trigger'}, t))),
        h('td', {}, statusOf(w)),
        h('td', {}, stats[n] ? percent(stats[n].day.success_rate) : '—'),
        h('td', {}, stats[n] && stats[n].last_failure_at
          ? h('span', {}, when(stats[n].last_failure_at),
            h('div', {class: 'muted'}, stats[n].last_failure || ''))
          : '—')))));
}

function attemptsTable(attempts) {
  return table('Latest attempts, newest first',
    ['At', 'Event', 'Type', 'Attempt', 'Result', 'Code', 'Latency', 'Error'],
    attempts.map((a) => h('tr', {},
      h('td', {}, when(a.at)),
      h('td', {}, h('a', {href: route('events', a.event_id)}, a.event_id)),
      h('td', {}, a.event_type),
      h('td', {}, a.attempt),
      h('td', {}, badge(a.result, a.result === 'success' ? 'ok' : 'bad')),
      h('td', {}, a.status_code ?? '—'),
      h('td', {}, a.latency_ms ? `${Math.round(a.latency_ms)} ms` : '—'),
      h('td', {}, a.error || ''))));
}

async function detail(ctx, id) {
  const webhook = await api('GET', appPath(['webhooks', id]));
  const stats = await statsOf(id);
  const secretBox = h('code', {id: 'secret', class: 'secret'}, '••••••••••••');
  let revealed = false;
  const key = webhook.signature_scheme === 'v1a' ? webhook.public_key : webhook.secret;
  const revealButton = h('button', {type: 'button', class: 'secondary', 'aria-controls': 'secret',
    onclick: () => {
      revealed = !revealed;
      secretBox.textContent = revealed ? (key || '(not shown)') : '••••••••••••';
      revealButton.textContent = revealed ? 'Hide' : 'Reveal';
    }}, 'Reveal');
  const copy = h('button', {type: 'button', class: 'secondary', onclick: async () => {
    try {
      await navigator.clipboard.writeText(key || '');
      say('Secret copied.');
    } catch {
      revealed = true;
      secretBox.textContent = key || '';
      window.getSelection().selectAllChildren(secretBox);
      say('Copying is not allowed here: the secret is selected, copy it with your keyboard.', 'error');
    }
  }}, 'Copy');
  const rotate = h('button', {type: 'button', class: 'secondary', onclick: async () => {
    if (!await confirmDialog('Rotate the secret?',
      'A new secret signs from now on; the old one keeps signing beside it for the overlap '
      + '(24 h by default), so receivers can switch.', 'Rotate')) return;
    const rotated = await api('POST', appPath(['webhooks', id, 'secret', 'rotate']));
    say('Secret rotated: the new one is shown.');
    await ctx.refresh();
    const box = document.getElementById('secret');
    box.textContent = rotated.secret || rotated.public_key || '';
  }}, 'Rotate');
  const attemptsBox = h('div', {id: 'attempts'});
  let shown = '';
  const loadAttempts = async () => {
    const page = await api('GET', appPath(['webhooks', id, 'attempts'], {limit: 20}));
    const key = JSON.stringify(page.attempts);
    if (key === shown) return;
    shown = key;
    put(attemptsBox, attemptsTable(page.attempts));
  };
  const test = h('button', {type: 'button', disabled: !webhook.enabled, onclick: async () => {
    const sent = await api('POST', appPath(['webhooks', id, 'test']));
    say(`Test event ${sent.id} sent; its attempt shows below when it is made.`);
    await loadAttempts();
  }}, 'Send test event');
  const remove = h('button', {type: 'button', class: 'danger', onclick: async () => {
    if (!await confirmDialog('Delete this webhook?',
      `${webhook.target} gets nothing more, and the deletion cannot be undone.`, 'Delete')) return;
    await api('DELETE', appPath(['webhooks', id]));
    say('Webhook deleted.');
    ctx.go('#/webhooks');
  }}, 'Delete');
  const facts = [
    ['Target', webhook.target], ['Description', webhook.description || '—'],
    ['Triggers', h('span', {}, webhook.triggers.map((t) => h('code', {class: 'trigger'}, t)))],
    ['Status', statusOf(webhook)],
    ['Signature', webhook.signature_scheme], ['Target type', webhook.target_type],
    ['Payload format', webhook.payload_format || 'standard'],
    ['Version', webhook.version], ['Created', when(webhook.created_at)],
    ['Updated', when(webhook.updated_at)],
  ];
  if (stats) {
    facts.push(['Success (day)', percent(stats.day.success_rate)],
      ['Last failure', stats.last_failure_at ? `${when(stats.last_failure_at)}: ${stats.last_failure || ''}` : '—'],
      ['Dead letters', h('a', {href: '#/dead-letters'}, String(stats.dead_letters))]);
  }
  ctx.main.append(
    h('p', {class: 'crumbs'}, h('a', {href: '#/webhooks'}, 'Webhooks'), ' / ', webhook.id),
    h('div', {class: 'title'}, h('h1', {}, webhook.description || webhook.target),
      ctx.readOnly ? null : h('div', {class: 'actions'},
        h('a', {class: 'button secondary', href: route('webhooks', id, 'edit')}, 'Edit'), remove)),
    h('dl', {class: 'facts'}, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h('h2', {}, webhook.signature_scheme === 'v1a' ? 'Public key' : 'Signing secret'),
    h('div', {class: 'actions'}, secretBox, revealButton, copy, ctx.readOnly ? null : rotate),
    h('h2', {}, 'Attempts'),
    ctx.readOnly ? null : h('div', {class: 'actions'}, test,
      webhook.enabled ? null : h('span', {class: 'muted'}, 'Enable the webhook to test it.')),
    attemptsBox);
  await loadAttempts();
  ctx.every(() => loadAttempts().catch(() => {}), 2000);
}

/** Every name a trigger may take, by vocabulary, with what it stands for. */
function vocabularies(types) {
  const byName = {canonical: new Map(), smooch: new Map(), chatwoot: new Map(),
    sinch: new Map(), nativemsg: new Map()};
  const wild = byName.canonical;
  for (const t of types.event_types) {
    if (t.type === 'webhook.test') continue;
    wild.set(t.type, [t]);
    const resource = `${t.type.split('.')[0]}.*`;
    wild.set(resource, [...(wild.get(resource) || []), t]);
    for (const [vocabulary, names] of Object.entries(t.aliases)) {
      for (const name of names) {
        const map = byName[vocabulary] || (byName[vocabulary] = new Map());
        map.set(name, [...(map.get(name) || []), t]);
      }
    }
  }
  wild.set('*', [{type: '*', description: 'Every event type.'}]);
  return byName;
}

const LABELS = {canonical: 'Hookbus (canonical)', smooch: 'Smooch', chatwoot: 'Chatwoot',
  sinch: 'Sinch', nativemsg: 'nativeMsg'};

function triggerPicker(types, selected) {
  const names = vocabularies(types);
  const chosen = h('ul', {class: 'chips', 'aria-label': 'Chosen triggers'});
  const options = h('div', {class: 'options', id: 'trigger-options'});
  const vocabulary = h('select', {id: 'vocabulary', 'aria-controls': 'trigger-options'},
    Object.keys(names).map((v) => h('option', {value: v}, LABELS[v] || v)));
  const filter = h('input', {id: 'trigger-filter', type: 'search', placeholder: 'Filter',
    'aria-controls': 'trigger-options'});
  const showChosen = () => {
    clear(chosen);
    for (const name of selected) {
      chosen.append(h('li', {}, h('code', {}, name), h('button', {type: 'button',
        class: 'link', 'aria-label': `Remove ${name}`, onclick: () => {
          selected.delete(name);
          showChosen();
          showOptions();
        }}, '×')));
    }
    if (!selected.size) chosen.append(h('li', {class: 'muted'}, 'None: the default, message.'));
  };
  const showOptions = () => {
    clear(options);
    const needle = filter.value.trim().toLowerCase();
    let n = 0;
    for (const [name, stands] of names[vocabulary.value]) {
      const text = `${name} ${stands.map((t) => `${t.type} ${t.description}`).join(' ')}`;
      if (needle && !text.toLowerCase().includes(needle)) continue;
      const box = h('input', {type: 'checkbox', id: `trigger-${n}`, value: name,
        checked: selected.has(name), onchange: () => {
          if (box.checked) selected.add(name); else selected.delete(name);
          showChosen();
        }});
      const means = stands.map((t) => (t.type === name ? t.description : `${t.type}: ${t.description}`));
      options.append(h('div', {class: 'option'}, box,
        h('label', {for: `trigger-${n}`}, h('code', {}, name),
          h('span', {class: 'muted'}, ` ${means.join(' ')}`))));
      n += 1;
    }
  };
  vocabulary.addEventListener('change', showOptions);
  filter.addEventListener('input', showOptions);
  showChosen();
  showOptions();
  return h('fieldset', {class: 'picker'}, h('legend', {}, 'Triggers'),
    h('p', {class: 'muted'}, 'Pick names of any platform: each stands for canonical event types.'),
    chosen,
    h('div', {class: 'row'},
      h('label', {for: 'vocabulary'}, 'Names of'), vocabulary,
      h('label', {for: 'trigger-filter', class: 'visually-hidden'}, 'Filter triggers'), filter),
    options);
}

// The formats of contract §7 (schemas/payload_formats.py), as the API takes them.
const PAYLOAD_FORMATS = [
  ['standard', 'Standard (Hookbus envelope)'], ['chatwoot', 'Chatwoot'],
  ['nativemsg', 'nativeMsg'], ['smooch', 'Smooch'], ['sinch', 'Sinch'],
];

async function form(ctx, webhook) {
  const types = await loadEventTypes();
  const selected = new Set(webhook ? webhook.triggers : []);
  const target = h('input', {id: 'target', name: 'target', type: 'url', required: true,
    value: webhook ? webhook.target : '', placeholder: 'https://example.com/webhooks',
    autocomplete: 'off', maxlength: 742});
  const description = h('input', {id: 'description', name: 'description',
    value: webhook ? webhook.description : ''});
  const enabled = h('input', {id: 'enabled', type: 'checkbox', checked: webhook ? webhook.enabled : true});
  const current = webhook ? (webhook.payload_format || 'standard') : 'standard';
  const format = h('select', {id: 'payload_format', name: 'payload_format',
    'aria-describedby': 'payload_format-help'},
    ...PAYLOAD_FORMATS.map(([value, label]) =>
      h('option', {value, selected: value === current}, label)));
  const errors = h('div', {id: 'form-errors', role: 'alert'});
  const title = webhook ? 'Edit webhook' : 'New webhook';
  ctx.main.append(
    h('p', {class: 'crumbs'}, h('a', {href: '#/webhooks'}, 'Webhooks'), ' / ',
      webhook ? webhook.id : 'new'),
    h('h1', {}, title),
    h('form', {class: 'stack', novalidate: true, onsubmit: async (e) => {
      e.preventDefault();
      clear(errors);
      const body = {target: target.value.trim(), description: description.value,
        enabled: enabled.checked, payload_format: format.value};
      if (selected.size) body.triggers = [...selected];
      try {
        let saved;
        if (webhook) {
          body.version = webhook.version;
          if (!selected.size) body.triggers = ['message'];
          saved = await api('PATCH', appPath(['webhooks', webhook.id]), body);
        } else {
          saved = await api('POST', appPath(['webhooks']), body);
        }
        say(webhook ? 'Webhook saved.' : 'Webhook created.');
        ctx.go(route('webhooks', saved.id));
      } catch (error) {
        errors.append(h('p', {class: 'error'}, error.message));
        errors.focus();
      }
    }},
    h('label', {for: 'target'}, 'Endpoint URL'), target,
    h('label', {for: 'description'}, 'Description'), description,
    triggerPicker(types, selected),
    h('label', {for: 'payload_format'}, 'Payload format'), format,
    h('p', {id: 'payload_format-help', class: 'muted'},
      'The body your endpoint receives: the Hookbus envelope, or the shape another ' +
      'platform sends, so a receiver written for it keeps working. Signed the same way.'),
    h('div', {class: 'check'}, enabled, h('label', {for: 'enabled'}, 'Enabled')),
    errors,
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, webhook ? 'Save' : 'Create'),
      h('a', {class: 'button secondary', href: webhook ? route('webhooks', webhook.id) : '#/webhooks'},
        'Cancel'))));
  errors.setAttribute('tabindex', '-1');
}
