// A small Markdown renderer for the model's answers: paragraphs, headings, lists (nested), fenced and inline
// code, tables, block quotes, rules, emphasis, links and images.
//
// Safety comes from how it builds: it never produces an HTML string. It parses the text itself and creates DOM
// nodes, every piece of text as a text node, so `<script>` or `<img onerror=...>` in an answer is shown as the
// characters it is. Links and images go through `options.link` / `options.image`, which decide what a URL may
// be (by default: http, https and mailto links; no images), so `javascript:` and the like never become links.

// What may interrupt a paragraph (an ordered list only when it starts at 1: "2023. was a year" is prose).
const BLOCK_START = /^ {0,3}(?:[-*+] |1[.)] |#{1,6}(?: |$)|>|```|~~~|(?:[-*_] *){3,}$)/;
const LIST_ITEM = /^( {0,12})([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;
const FENCE = /^( {0,3})(`{3,}|~{3,})[ \t]*([^`\s]*)?.*$/;

/**
 * @param {string} source Markdown text (possibly incomplete: it may be streaming in)
 * @param {{link?: (href: string) => ({href: string, download?: string, title?: string}|null),
 *          image?: (src: string) => (string|null)}} options
 * @returns {DocumentFragment}
 */
export function renderMarkdown(source, options = {}) {
  const settings = {
    link: options.link ?? defaultLink,
    image: options.image ?? (() => null),
  };
  const fragment = document.createDocumentFragment();
  const lines = String(source ?? '').replace(/\r\n?/g, '\n').split('\n');
  blocks(lines, fragment, settings);
  return fragment;
}

export function defaultLink(href) {
  return /^(https?:|mailto:)/i.test(href) ? { href } : null;
}

// MARK: Blocks

function blocks(lines, parent, settings) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    let m;
    if ((m = FENCE.exec(line))) {
      i = fencedCode(lines, i, m, parent);
    } else if ((m = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/.exec(line))) {
      parent.append(element(`h${m[1].length}`, inline(m[2] ?? '', settings)));
      i += 1;
    } else if (/^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/.test(line)) {
      parent.append(document.createElement('hr'));
      i += 1;
    } else if (/^ {0,3}>/.test(line)) {
      const quoted = [];
      while (i < lines.length && lines[i].trim() && (/^ {0,3}>/.test(lines[i]) || !BLOCK_START.test(lines[i]))) {
        quoted.push(lines[i].replace(/^ {0,3}> ?/, ''));
        i += 1;
      }
      const quote = document.createElement('blockquote');
      blocks(quoted, quote, settings);
      parent.append(quote);
    } else if (LIST_ITEM.test(line)) {
      i = list(lines, i, parent, settings);
    } else if (isTableStart(lines, i)) {
      i = table(lines, i, parent, settings);
    } else {
      const text = [];
      while (i < lines.length && lines[i].trim() && (text.length === 0 || !interrupts(lines, i))) {
        text.push(lines[i]);
        i += 1;
      }
      parent.append(element('p', inline(text.join('\n').trim(), settings)));
    }
  }
}

/** A line that ends a paragraph: another block starting. */
function interrupts(lines, i) {
  return BLOCK_START.test(lines[i]) || isTableStart(lines, i);
}

function fencedCode(lines, start, match, parent) {
  const indent = match[1].length;
  const fence = match[2];
  const language = match[3] ?? '';
  const body = [];
  let i = start + 1;
  while (i < lines.length) {
    const close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(lines[i]);
    if (close && close[1][0] === fence[0] && close[1].length >= fence.length) {
      i += 1;
      break;
    }
    body.push(lines[i].replace(new RegExp(`^ {0,${indent}}`), ''));
    i += 1;
  }
  const code = element('code', [body.join('\n')]);
  if (/^[\w+-]+$/.test(language)) code.className = `language-${language}`;
  parent.append(element('pre', [code]));
  return i;
}

function list(lines, start, parent, settings) {
  const first = LIST_ITEM.exec(lines[start]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const marker = ordered ? first[2].slice(-1) : first[2];
  const node = document.createElement(ordered ? 'ol' : 'ul');
  if (ordered && Number.parseInt(first[2], 10) !== 1) node.start = Number.parseInt(first[2], 10);
  let i = start;
  let loose = false;
  const items = [];
  while (i < lines.length) {
    const m = LIST_ITEM.exec(lines[i]);
    if (!m || m[1].length !== indent || (/\d/.test(m[2]) !== ordered) || m[2].slice(-1) !== marker.slice(-1)) break;
    const contentIndent = indent + m[2].length + 1;
    const body = [m[3] ?? ''];
    i += 1;
    let sawBlank = false;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) {
        sawBlank = true;
        body.push('');
        i += 1;
        continue;
      }
      const leading = line.length - line.trimStart().length;
      if (leading >= contentIndent || (leading > indent && LIST_ITEM.test(line))) {
        body.push(line.slice(Math.min(leading, contentIndent)));
      } else if (!sawBlank && !BLOCK_START.test(line) && !LIST_ITEM.test(line)) {
        body.push(line.trim()); // a lazy continuation of the item's paragraph
      } else {
        break;
      }
      sawBlank = false;
      i += 1;
    }
    while (body.length && !body[body.length - 1].trim()) body.pop();
    if (body.some((line, k) => !line.trim() && k > 0 && k < body.length - 1)) loose = true;
    items.push(body);
    // A blank line between items makes the list loose; one before a non-item ends it.
    if (sawBlank && !(i < lines.length && LIST_ITEM.test(lines[i]) && LIST_ITEM.exec(lines[i])[1].length === indent)) break;
    if (sawBlank) loose = true;
  }
  for (const body of items) {
    const item = document.createElement('li');
    blocks(body, item, settings);
    // A tight list shows its items' text without paragraph spacing.
    if (!loose) {
      for (const p of [...item.children].filter((child) => child.tagName === 'P')) p.replaceWith(...p.childNodes);
    }
    node.append(item);
  }
  parent.append(node);
  return i;
}

function splitRow(line) {
  let row = line.trim();
  if (row.startsWith('|')) row = row.slice(1);
  if (row.endsWith('|') && !row.endsWith('\\|')) row = row.slice(0, -1);
  const cells = [];
  let current = '';
  let inCode = false;
  for (let k = 0; k < row.length; k += 1) {
    const c = row[k];
    if (c === '\\' && row[k + 1] === '|') {
      current += '|';
      k += 1;
    } else if (c === '`') {
      inCode = !inCode;
      current += c;
    } else if (c === '|' && !inCode) {
      cells.push(current.trim());
      current = '';
    } else {
      current += c;
    }
  }
  cells.push(current.trim());
  return cells;
}

function isTableStart(lines, i) {
  if (i + 1 >= lines.length || !lines[i].includes('|')) return false;
  const separator = lines[i + 1].trim();
  if (!/^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?$/.test(separator)) return false;
  return splitRow(lines[i]).length === splitRow(lines[i + 1]).length;
}

function table(lines, start, parent, settings) {
  const header = splitRow(lines[start]);
  const aligns = splitRow(lines[start + 1]).map((cell) => {
    const left = cell.startsWith(':');
    const right = cell.endsWith(':');
    return left && right ? 'center' : right ? 'right' : left ? 'left' : '';
  });
  const cell = (tag, text, k) => {
    const node = element(tag, inline(text, settings));
    if (aligns[k]) node.style.textAlign = aligns[k];
    return node;
  };
  const head = element('thead', [element('tr', header.map((text, k) => cell('th', text, k)))]);
  const body = document.createElement('tbody');
  let i = start + 2;
  while (i < lines.length && lines[i].trim() && lines[i].includes('|')) {
    const cells = splitRow(lines[i]);
    body.append(element('tr', header.map((_, k) => cell('td', cells[k] ?? '', k))));
    i += 1;
  }
  // Wide tables scroll inside their own box instead of widening the conversation.
  parent.append(element('div', [element('table', [head, body])], 'table-scroll'));
  return i;
}

// MARK: Inline

const PUNCTUATION = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/;

/** The nodes of one span of inline Markdown. */
function inline(text, settings) {
  const out = [];
  let plain = '';
  const flush = () => {
    if (plain) out.push(document.createTextNode(plain));
    plain = '';
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const rest = text.slice(i);
    let m;
    if (c === '\\' && PUNCTUATION.test(text[i + 1] ?? '')) {
      plain += text[i + 1];
      i += 2;
    } else if (c === '\\' && text[i + 1] === '\n') {
      flush();
      out.push(document.createElement('br'));
      i += 2;
    } else if (c === '\n') {
      // Two trailing spaces make a hard break; otherwise a newline is a space.
      if (plain.endsWith('  ')) {
        plain = plain.trimEnd();
        flush();
        out.push(document.createElement('br'));
      } else {
        plain = `${plain.trimEnd()} `;
      }
      i += 1;
    } else if (c === '`' && (m = /^(`+)([^]*?[^`])\1(?!`)/.exec(rest))) {
      flush();
      let code = m[2].replace(/\n/g, ' ');
      if (/^ .* $/.test(code) && code.trim()) code = code.slice(1, -1);
      out.push(element('code', [code]));
      i += m[0].length;
    } else if (c === '!' && text[i + 1] === '[' && (m = linkAt(text, i + 1))) {
      flush();
      out.push(imageNode(m, settings));
      i = m.end;
    } else if (c === '[' && (m = linkAt(text, i))) {
      flush();
      out.push(linkNode(m.label, m.href, m.title, settings));
      i = m.end;
    } else if (c === '<' && (m = /^<((?:https?|mailto):[^\s<>]+)>/i.exec(rest))) {
      flush();
      out.push(linkNode(null, m[1], null, settings));
      i += m[0].length;
    } else if ((c === 'h' || c === 'H') && !/[\w/]$/.test(plain) && (m = /^https?:\/\/[^\s<>]+/i.exec(rest))) {
      flush();
      const url = m[0].replace(/[.,;:!?'")\]]+$/, '');
      out.push(linkNode(null, url, null, settings));
      i += url.length;
    } else if ((c === '*' || c === '_' || c === '~') && (m = emphasisAt(text, i))) {
      flush();
      out.push(element(m.tag, inline(m.inner, settings)));
      i = m.end;
    } else {
      plain += c;
      i += 1;
    }
  }
  flush();
  return out;
}

/** `**strong**`, `*em*`, `_em_`, `__strong__`, `~~deleted~~` starting at `i`, or null. */
function emphasisAt(text, i) {
  const c = text[i];
  const double = text[i + 1] === c;
  if (c === '~' && !double) return null;
  const run = double ? c + c : c;
  const open = i + run.length;
  // Opening: followed by a non-space; `_` not inside a word (snake_case names stay as they are).
  if (!text[open] || /\s/.test(text[open])) return null;
  if (c === '_' && /[\p{L}\p{N}]/u.test(text[i - 1] ?? '')) return null;
  let k = open;
  while ((k = text.indexOf(run, k + 1)) >= 0) {
    if (/\s/.test(text[k - 1])) continue;
    if (!double && text[k + 1] === c) {
      k += 1; // `*a **b** c*`: a double run inside a single one is not its end
      continue;
    }
    if (c === '_' && /[\p{L}\p{N}]/u.test(text[k + run.length] ?? '')) continue;
    const inner = text.slice(open, k);
    if (!inner.trim()) return null;
    return { tag: c === '~' ? 'del' : double ? 'strong' : 'em', inner, end: k + run.length };
  }
  return null;
}

/** `[label](href "title")` starting at the `[` at `i`: {label, href, title, end} or null. */
function linkAt(text, i) {
  let depth = 0;
  let k = i;
  for (; k < text.length; k += 1) {
    if (text[k] === '\\') k += 1;
    else if (text[k] === '[') depth += 1;
    else if (text[k] === ']') {
      depth -= 1;
      if (depth === 0) break;
    }
  }
  if (depth !== 0 || text[k + 1] !== '(') return null;
  const label = text.slice(i + 1, k);
  let j = k + 2;
  while (text[j] === ' ') j += 1;
  let href;
  if (text[j] === '<') {
    const close = text.indexOf('>', j);
    if (close < 0) return null;
    href = text.slice(j + 1, close);
    j = close + 1;
  } else {
    let parens = 0;
    const begin = j;
    for (; j < text.length; j += 1) {
      const c = text[j];
      if (c === '\\') j += 1;
      else if (c === '(') parens += 1;
      else if (c === ')') {
        if (parens === 0) break;
        parens -= 1;
      } else if (/\s/.test(c)) break;
    }
    href = text.slice(begin, j);
  }
  while (text[j] === ' ') j += 1;
  let title = null;
  const quote = text[j];
  if (quote === '"' || quote === "'") {
    const close = text.indexOf(quote, j + 1);
    if (close < 0) return null;
    title = text.slice(j + 1, close);
    j = close + 1;
    while (text[j] === ' ') j += 1;
  }
  if (text[j] !== ')') return null;
  return { label, href: href.replace(/\\(.)/g, '$1'), title, end: j + 1 };
}

function linkNode(label, href, title, settings) {
  const children = label === null ? [href] : inline(label, settings);
  const target = settings.link(href.trim());
  if (!target) {
    // Not a URL the page opens: the text stays, the link does not.
    return element('span', children, 'unlinked', { title: href });
  }
  const a = element('a', children);
  a.href = target.href;
  if (target.download !== undefined) a.download = target.download;
  else {
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
  }
  if (target.title || title) a.title = target.title || title;
  return a;
}

function imageNode(match, settings) {
  const src = settings.image(match.href.trim());
  if (!src) return linkNode(match.label || match.href, match.href, match.title, settings);
  const img = document.createElement('img');
  img.src = src;
  img.alt = match.label;
  if (match.title) img.title = match.title;
  return img;
}

function element(tag, children, className, attributes = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}
