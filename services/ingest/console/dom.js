// Building the page without ever parsing data as HTML: every customer string
// and payload becomes a text node (textContent), never innerHTML.

const SVG = 'http://www.w3.org/2000/svg';

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      // A handler's failure (an API error after a click) is told, not dropped.
      el.addEventListener(key.slice(2), (event) => {
        const done = value(event);
        if (done && typeof done.catch === 'function') {
          done.catch((error) => say(error.status ? `The API answered ${error.status}: ${error.message}`
            : `Something failed: ${error.message}`, 'error'));
        }
      });
    } else if (key === 'class') {
      el.setAttribute('class', value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('a', {href: '#/x'}, 'text', otherNode). */
export function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, for the charts. */
export function s(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** An in-page link to a console route; its parts are encoded. */
export function route(...parts) {
  return '#/' + parts.map((p) => encodeURIComponent(p)).join('/');
}

export function when(iso) {
  if (!iso) return '—';
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return String(iso);
  return at.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/Z$/, ' UTC');
}

export function percent(rate) {
  return rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(1)}%`;
}

/** A table in a scrolling box (readable on a phone), with a caption. */
export function table(caption, headings, rows) {
  return h('div', {class: 'scroll', role: 'region', 'aria-label': caption, tabindex: '0'},
    h('table', {},
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, headings.map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', {colspan: headings.length}, 'None.')))));
}

export function badge(text, kind) {
  return h('span', {class: `badge ${kind || ''}`}, text);
}

let toastTimer = null;
/** Tell the user (and screen readers, through the live region) what happened. */
export function say(message, kind = 'ok') {
  const status = document.getElementById('status');
  status.className = `toast ${kind} shown`;
  status.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { status.className = 'toast'; }, 6000);
}

/** A modal confirmation (native <dialog>: focus moves in and is kept there). */
export function confirmDialog(title, text, action) {
  return new Promise((resolve) => {
    const dialog = h('dialog', {'aria-labelledby': 'dialog-title'},
      h('h2', {id: 'dialog-title'}, title),
      h('p', {}, text),
      h('form', {method: 'dialog', class: 'actions'},
        h('button', {value: 'cancel', type: 'submit', class: 'secondary'}, 'Cancel'),
        h('button', {value: 'ok', type: 'submit', class: 'danger'}, action)));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Replace `el`'s content with `children` (nodes, text, arrays; null skipped). */
export function put(el, ...children) {
  return fill(clear(el), {}, children);
}
