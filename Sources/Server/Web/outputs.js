// What an execution produced, shown the same way in the chat and in the notebook: stdout, stderr, the
// traceback, the value of the last expression (its HTML, a DataFrame's table, only inside a sandboxed frame),
// figures, the files it wrote with their sizes and download links, and why it stopped when a limit ended it.

import { pageURL } from './api.js';
import { formatBytes, formatSeconds, h } from './dom.js';

/**
 * The only way HTML from an execution reaches a document: the `srcdoc` of a frame sandboxed without
 * `allow-scripts` (nothing in it runs). `allow-same-origin` lets the page measure the frame's content to size
 * it; without scripts the framed document can do nothing with that origin. The Trusted Types policy of the
 * page's Content-Security-Policy names this policy only.
 */
const framePolicy = globalThis.trustedTypes?.createPolicy('sandboxed-frame', { createHTML: (html) => html });

const FRAME_STYLE = `
  :root { color-scheme: light dark; font: 13px/1.45 system-ui, sans-serif; }
  body { margin: 0; padding: 2px; }
  table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { border: 1px solid color-mix(in srgb, currentColor 18%, transparent); padding: 3px 8px; text-align: right; }
  thead th { background: color-mix(in srgb, currentColor 7%, transparent); }
  tbody tr:nth-child(even) { background: color-mix(in srgb, currentColor 4%, transparent); }
`;

const MAX_FRAME_HEIGHT = 480;

export function htmlFrame(html, title = 'HTML output of the code') {
  const frame = h('iframe', { class: 'html-output', sandbox: 'allow-same-origin', title, referrerpolicy: 'no-referrer' });
  const doc = `<!doctype html><html><head><meta charset="utf-8"><style>${FRAME_STYLE}</style></head><body>${html}</body></html>`;
  frame.srcdoc = framePolicy ? framePolicy.createHTML(doc) : doc;
  frame.addEventListener('load', () => {
    const doc = frame.contentDocument;
    if (!doc?.body) return;
    // As tall as its content (up to a limit, then it scrolls), again when an image inside it loads.
    const fit = () => {
      const sideways = doc.documentElement.scrollWidth > doc.documentElement.clientWidth ? 18 : 0;
      const height = Math.ceil(doc.body.getBoundingClientRect().height) + sideways + 4;
      frame.style.height = `${Math.min(height, MAX_FRAME_HEIGHT)}px`;
    };
    fit();
    doc.addEventListener('load', fit, true);
  });
  return frame;
}

/** Tracebacks carry terminal colour codes; the page shows plain text. */
export function stripAnsi(text) {
  return String(text ?? '').replace(/\u001b\[[0-9;?]*[ -/]*[@-~]/g, '');
}

const STOPPED = {
  timeout: ['Timed out', 'The code ran longer than its time limit and was stopped.'],
  memory_limit: ['Out of memory', 'The code used more memory than its limit and was stopped.'],
  output_limit: ['Too much output', 'The code wrote more output than the sandbox keeps and was stopped.'],
  killed: ['Stopped', 'The code was killed.'],
  blocked_syscall: ['Blocked', 'The code made a system call the sandbox forbids and was stopped.'],
};

/** The note shown when a limit (or the sandbox) ended an execution; null when it ran to its end. */
export function stopNote(result) {
  const stopped = STOPPED[result.status];
  if (!stopped) return null;
  let [title, text] = stopped;
  if (result.status === 'blocked_syscall' && result.blocked_syscall) text = `The code called ${result.blocked_syscall}, which the sandbox forbids; it was stopped.`;
  if (result.usage?.wall_ms) text += ` (after ${formatSeconds(result.usage.wall_ms)})`;
  return h('p', { class: `note limit ${result.status}`, role: 'alert' }, h('strong', {}, `${title}: `), text);
}

/** Output as it arrives while code runs (the notebook's live stdout and stderr). */
export class LiveOutput {
  constructor(container) {
    this.container = container;
    this.streams = {};
  }

  write(stream, text) {
    let pre = this.streams[stream];
    if (!pre) {
      pre = h('pre', { class: `stream ${stream}` });
      this.streams[stream] = pre;
      this.container.append(pre);
    }
    pre.append(text);
  }
}

/** A native execution result (`/v1/execute`, or `x_codeinterp.execution` of a chat's code run). */
export function renderResult(result) {
  const note = stopNote(result);
  const parts = [note];
  if (result.stdout) parts.push(stream('stdout', result.stdout, result.truncated?.stdout));
  if (result.stderr) parts.push(stream('stderr', result.stderr, result.truncated?.stderr));
  // A limit's own error (no traceback: the sandbox stopped the code) says what the note above says.
  if (result.error && !(note && !result.error.traceback?.length)) {
    parts.push(h('div', { class: 'traceback', role: 'group', 'aria-label': 'Error' },
      h('p', { class: 'error-title' }, `${result.error.name}: ${result.error.value}`),
      result.error.traceback?.length ? h('pre', {}, stripAnsi(result.error.traceback.join('\n'))) : null));
  }
  const value = result.result;
  if (value?.['text/html']) parts.push(h('div', { class: 'value' }, htmlFrame(value['text/html'])));
  else if (value?.['text/plain'] !== undefined) parts.push(h('pre', { class: 'value' }, value['text/plain']));
  const figures = (result.displays ?? []).filter((d) => d.mime_type?.startsWith('image/') && d.url);
  figures.forEach((display, k) => parts.push(figure(display.url, `Figure ${k + 1} of the code`)));
  const shown = new Set((result.displays ?? []).map((d) => d.file_id));
  parts.push(fileList((result.files ?? []).filter((f) => !shown.has(f.id))));
  return parts.filter(Boolean);
}

/** OpenAI's `outputs` of a code_interpreter_call (logs and images), for runs stored without the native result. */
export function renderOpenAIOutputs(outputs) {
  return (outputs ?? []).map((output, k) => {
    if (output.type === 'logs') return stream('stdout', output.logs);
    if (output.type === 'image' && output.url?.startsWith('data:image/')) return figure(output.url, `Figure ${k + 1} of the code`);
    return null;
  }).filter(Boolean);
}

function stream(name, text, truncated) {
  const shown = text.replace(/^\n+|\n+$/g, '');
  return h('pre', { class: `stream ${name}` }, shown, truncated ? h('span', { class: 'note' }, '\n[output truncated by the sandbox]') : null);
}

function figure(url, alt) {
  return h('figure', { class: 'figure' }, h('img', { src: pageURL(url), alt, loading: 'lazy' }));
}

/** The files an execution wrote, with sizes and download links; null when none. */
export function fileList(files, { label = 'Files written' } = {}) {
  if (!files.length) return null;
  return h('div', { class: 'files-written' },
    h('p', { class: 'files-label' }, label),
    h('ul', {}, files.map((file) => h('li', {}, fileLink(file)))));
}

export function fileLink(file) {
  const name = file.name ?? file.filename ?? file.path?.split('/').pop() ?? file.id;
  const size = file.size_bytes ?? file.bytes;
  return [
    h('a', { href: pageURL(file.url), download: name, class: 'file-link' }, name),
    h('span', { class: 'file-size' }, ` ${formatBytes(size)}${file.mime_type ? ` · ${file.mime_type}` : ''}`),
  ];
}
