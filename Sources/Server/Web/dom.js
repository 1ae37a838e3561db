// Building DOM nodes. Every piece of text goes in as a text node: nothing the page shows is parsed as HTML
// (the Content-Security-Policy's Trusted Types refuse HTML strings anyway, but for the sandboxed frames).

/**
 * h('button', {class: 'run', type: 'button', onclick: fn, 'aria-label': 'Run'}, 'Run')
 * Properties: `class`, `text`, `dataset` ({key: value}), `on*` functions (listeners), `hidden`/`disabled`
 * booleans; anything else becomes an attribute. Children: nodes, strings (text), arrays, null/undefined/false.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) {
      // Never a handler attribute: the policy refuses them, and they would be code in a string.
      if (typeof value !== 'function') throw new TypeError(`${name} must be a function`);
      node.addEventListener(name.slice(2), value);
    }
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return '';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export function formatSeconds(milliseconds) {
  if (milliseconds < 1000) return `${Math.round(milliseconds)} ms`;
  const seconds = milliseconds / 1000;
  return seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s`;
}

/** Grows a textarea with its content (up to its CSS max-height). */
export function autoGrow(textarea) {
  const fit = () => {
    if (!textarea.offsetParent) return; // hidden: measured once it is shown (on focus)
    textarea.style.height = 'auto';
    textarea.style.height = `${textarea.scrollHeight + 2}px`;
  };
  textarea.addEventListener('input', fit);
  textarea.addEventListener('focus', fit);
  window.addEventListener('resize', fit);
  requestAnimationFrame(fit);
  return fit;
}
