// Building DOM nodes. Text always goes in as text nodes: data from the server, agents or
// users is never parsed as HTML anywhere in the dashboard.

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'selected', 'hidden']);

/** `h('button', {class: 'primary', onclick: f}, 'Send')` */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

let counter = 0;
/** A fresh element id, for label/control pairs. */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled form field: `<label>` then the control. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid('f');
  return h('div', { class: 'field' },
    h('label', { for: control.id }, label), control,
    hint ? h('small', { class: 'muted' }, hint) : null);
}

/** A button that copies `text()` to the clipboard and says so. */
export function copyButton(label, text, accessibleName) {
  const button = h('button', { type: 'button', class: 'small', 'aria-label': accessibleName || label }, label);
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text());
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Select and copy';
    }
    setTimeout(() => { button.textContent = label; }, 1500);
  });
  return button;
}

/** An error line (`role=alert`), empty until `show(message)`. */
export function errorLine() {
  const el = h('p', { class: 'error', role: 'alert' });
  return { el, show(message) { el.textContent = message || ''; }, clear() { el.textContent = ''; } };
}
