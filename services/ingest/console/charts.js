// Charts drawn as inline SVG (no chart library): bars with their values
// written beside them, and a latency strip of recent attempts. Every chart has
// a text alternative (role="img" and an aria-label that says its numbers).
import {s} from './dom.js';

/** Horizontal bars: [{label, value, text, kind}] with value in 0..max. */
export function bars(title, items, max) {
  const row = 28;
  const width = 320;
  const labelWidth = 92;
  const valueWidth = 70;
  const scale = (width - labelWidth - valueWidth) / (max || 1);
  const summary = items.map((i) => `${i.label} ${i.text}`).join(', ');
  return s('svg', {class: 'chart', viewBox: `0 0 ${width} ${items.length * row + 4}`, role: 'img',
    'aria-label': `${title}: ${summary}`},
  s('title', {}, `${title}: ${summary}`),
  items.map((item, n) => {
    const y = n * row + 4;
    const length = item.value === null ? 0 : Math.max(item.value * scale, item.value > 0 ? 2 : 0);
    return s('g', {},
      s('text', {x: 0, y: y + 16, class: 'label'}, item.label),
      s('rect', {x: labelWidth, y, width: width - labelWidth - valueWidth, height: 20, class: 'track'}),
      s('rect', {x: labelWidth, y, width: length, height: 20, class: `bar ${item.kind || ''}`}),
      s('text', {x: width - valueWidth + 6, y: y + 16, class: 'value'}, item.text));
  }));
}

/** Latency of recent attempts, oldest left: a bar each, failures marked. */
export function latencyStrip(title, attempts) {
  const width = 320;
  const height = 80;
  const shown = attempts.filter((a) => a.result === 'success' || a.result === 'failure'
    || a.result === 'gone').slice(0, 60).reverse();
  const most = Math.max(1, ...shown.map((a) => a.latency_ms || 0));
  const step = width / Math.max(shown.length, 1);
  const failures = shown.filter((a) => a.result !== 'success').length;
  const label = shown.length
    ? `${title}: ${shown.length} attempts, slowest ${Math.round(most)} ms, ${failures} failed`
    : `${title}: no attempts yet`;
  return s('svg', {class: 'chart', viewBox: `0 0 ${width} ${height + 16}`, role: 'img', 'aria-label': label},
    s('title', {}, label),
    s('line', {x1: 0, x2: width, y1: height, y2: height, class: 'axis'}),
    shown.map((a, n) => {
      const tall = Math.max(2, ((a.latency_ms || 0) / most) * (height - 4));
      return s('rect', {x: n * step + 1, y: height - tall, width: Math.max(step - 2, 1), height: tall,
        class: `bar ${a.result === 'success' ? 'ok' : 'bad'}`});
    }),
    s('text', {x: 0, y: height + 14, class: 'label'}, `slowest ${Math.round(most)} ms`),
    s('text', {x: width, y: height + 14, class: 'label end'}, 'newest →'));
}
