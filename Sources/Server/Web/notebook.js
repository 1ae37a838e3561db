// The notebook: cells of Python run one after another in a session (/v1/sessions: variables, imports and
// /mnt/data persist), stdout shown live while a cell runs (/v1/execute, streamed), a time limit per run, a stop
// button, the session's files, and a restart. The cells' code is kept in this browser (local storage), so a
// reload loses nothing that was typed.

import { ApiError } from './api.js';
import { autoGrow, clear, formatSeconds, h } from './dom.js';
import { fileLink, LiveOutput, renderResult } from './outputs.js';

const STORED_SESSION = 'codeinterp.notebook.session';
const STORED_CELLS = 'codeinterp.notebook.cells';

export class Notebook {
  constructor(view, { api }) {
    this.api = api;
    this.list = view.querySelector('#cells');
    this.fileList = view.querySelector('#session-files');
    this.status = view.querySelector('#session-status');
    this.timeLimit = view.querySelector('#time-limit');
    this.upload = view.querySelector('#notebook-upload');
    this.cells = [];
    this.count = 0;
    this.queue = Promise.resolve();
    this.sessionId = read(STORED_SESSION);
    /** Why the previous session is gone, said along with the next one. */
    this.sessionNote = null;
    this.started = false;

    view.querySelector('#add-cell').addEventListener('click', () => this.addCell('', { focus: true }));
    view.querySelector('#run-all').addEventListener('click', () => { for (const cell of this.cells) this.run(cell); });
    view.querySelector('#restart').addEventListener('click', () => this.restart());
    this.upload.addEventListener('change', () => this.uploadFiles());
  }

  /** Called when the notebook is first shown: its cells back, its session checked. */
  async start() {
    if (this.started) return;
    this.started = true;
    let codes = [];
    try {
      codes = JSON.parse(read(STORED_CELLS) ?? '[]');
    } catch {
      codes = [];
    }
    if (!Array.isArray(codes) || codes.length === 0) codes = [''];
    for (const code of codes) this.addCell(String(code));
    if (this.sessionId) {
      try {
        const session = await this.api.get(`/v1/sessions/${this.sessionId}`);
        this.showSession(session);
        await this.refreshFiles();
      } catch (error) {
        if (error.status === 404) this.forgetSession('The previous session has expired: the next run starts a new one.');
        else this.setStatus(error.message);
      }
    } else {
      this.setStatus('No session yet: the first run starts one.');
    }
  }

  addCell(code, { after = null, focus = false } = {}) {
    const cell = new Cell(this, code);
    const index = after ? this.cells.indexOf(after) + 1 : this.cells.length;
    this.cells.splice(index, 0, cell);
    const next = this.cells[index + 1];
    this.list.insertBefore(cell.node, next ? next.node : null);
    this.numberCells();
    if (focus) cell.input.focus();
    this.save();
    return cell;
  }

  removeCell(cell) {
    cell.controller?.abort();
    cell.removed = true;
    const index = this.cells.indexOf(cell);
    this.cells.splice(index, 1);
    cell.node.remove();
    if (this.cells.length === 0) this.addCell('');
    this.numberCells();
    this.cells[Math.min(index, this.cells.length - 1)].input.focus();
    this.save();
  }

  numberCells() {
    this.cells.forEach((cell, k) => cell.setPosition(k + 1));
  }

  save() {
    write(STORED_CELLS, JSON.stringify(this.cells.map((cell) => cell.input.value)));
  }

  /** Shift+Enter: runs the cell and moves to the next one (a new one after the last). */
  runAndAdvance(cell) {
    this.run(cell);
    const next = this.cells[this.cells.indexOf(cell) + 1] ?? this.addCell('', { after: cell });
    next.input.focus();
  }

  /** Queues the cell: cells run one at a time, in the order they were asked to. */
  run(cell) {
    if (cell.state === 'queued' || cell.state === 'running') return;
    cell.queue();
    this.queue = this.queue.then(() => this.execute(cell));
  }

  async execute(cell) {
    if (cell.removed || cell.state !== 'queued') return;
    const controller = new AbortController();
    cell.controller = controller;
    cell.begin();
    try {
      const result = await this.runInSession(cell, controller.signal);
      this.count += 1;
      cell.finish(result, this.count);
    } catch (error) {
      if (error.name === 'AbortError') cell.stopped();
      else cell.fail(error.message);
    } finally {
      cell.controller = null;
    }
    await this.refreshFiles();
  }

  async runInSession(cell, signal) {
    for (let attempt = 0; ; attempt += 1) {
      const sessionId = await this.session();
      const body = { code: cell.input.value, session_id: sessionId };
      const limit = Number(this.timeLimit.value);
      if (this.timeLimit.value && !(limit > 0)) throw new ApiError('The time limit must be a positive number of seconds.');
      if (limit > 0) body.timeout_s = limit;
      const live = new LiveOutput(cell.outputs);
      try {
        for await (const { event, data } of this.api.stream('/v1/execute', body, { signal })) {
          if (event === 'stdout' || event === 'stderr') live.write(event, data.text);
          else if (event === 'result') return data;
          else if (event === 'error') throw new ApiError(data.error?.message ?? 'The sandbox failed to run the cell.');
        }
        throw new ApiError('The server ended the run without its result.');
      } catch (error) {
        // The session expired (idle too long) or was deleted: start another once, and say so.
        if (attempt === 0 && error.status === 404 && error.param === 'session_id') {
          this.forgetSession('The session had expired; this run started a new one (earlier variables and files are gone).');
          clear(cell.outputs);
          continue;
        }
        throw error;
      }
    }
  }

  /** The session's id, created on first use. */
  async session() {
    if (this.sessionId) return this.sessionId;
    const session = await this.api.post('/v1/sessions', { name: 'notebook' });
    this.sessionId = session.id;
    write(STORED_SESSION, session.id);
    this.showSession(session);
    return session.id;
  }

  /** `why` stays in the status line after the next session is shown. */
  forgetSession(why) {
    this.sessionId = null;
    write(STORED_SESSION, null);
    this.count = 0;
    this.sessionNote = why;
    this.setStatus(why);
    clear(this.fileList);
  }

  showSession(session) {
    const note = this.sessionNote ? ` · ${this.sessionNote}` : '';
    this.sessionNote = null;
    this.setStatus(`Session ${session.id.slice(0, 8)} · idle timeout ${Math.round(session.idle_timeout_s / 60)} min${note}`);
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  /** A fresh interpreter with the same files: a new session seeded with this one's files, then this one ended. */
  async restart() {
    for (const cell of this.cells) cell.controller?.abort();
    if (!this.sessionId) {
      this.setStatus('No session to restart: the next run starts one.');
      return;
    }
    this.setStatus('Restarting…');
    try {
      const files = await this.api.get(`/v1/sessions/${this.sessionId}/files`);
      const session = await this.api.post('/v1/sessions', { name: 'notebook', file_ids: files.data.map((f) => f.id) });
      const old = this.sessionId;
      this.sessionId = session.id;
      write(STORED_SESSION, session.id);
      await this.api.delete(`/v1/sessions/${old}`).catch(() => {});
      this.count = 0;
      for (const cell of this.cells) cell.setCount(null);
      this.showSession(session);
      this.setStatus(`${this.status.textContent} · restarted: variables are gone, files kept`);
    } catch (error) {
      this.setStatus(`The restart failed: ${error.message}`);
    }
    await this.refreshFiles();
  }

  async refreshFiles() {
    if (!this.sessionId) return;
    let files;
    try {
      files = (await this.api.get(`/v1/sessions/${this.sessionId}/files`)).data;
    } catch (error) {
      if (error.status === 404) this.forgetSession('The session has expired: the next run starts a new one.');
      return;
    }
    clear(this.fileList);
    if (files.length === 0) this.fileList.append(h('li', { class: 'empty' }, 'No files yet. What the code saves to /mnt/data shows here.'));
    for (const file of files) this.fileList.append(h('li', {}, fileLink({ ...file, name: file.path?.replace(/^\/mnt\/data\//, '') || file.name })));
  }

  async uploadFiles() {
    const picked = [...this.upload.files];
    this.upload.value = '';
    try {
      const sessionId = await this.session();
      for (const file of picked) {
        this.setStatus(`Uploading ${file.name}…`);
        await this.api.upload(`/v1/sessions/${sessionId}/files`, file);
      }
      this.setStatus(`Uploaded ${picked.map((f) => f.name).join(', ')} to /mnt/data.`);
    } catch (error) {
      this.setStatus(`The upload failed: ${error.message}`);
    }
    await this.refreshFiles();
  }
}

/** One cell: its code, its run controls and what its last run produced. */
class Cell {
  constructor(notebook, code) {
    this.notebook = notebook;
    this.state = 'idle';
    /** The last key was Escape: the next Tab leaves the cell instead of indenting. */
    this.escaped = false;
    this.prompt = h('span', { class: 'prompt', 'aria-hidden': 'true' }, '[ ]');
    this.input = h('textarea', { class: 'code-input', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off',
      rows: '1', placeholder: 'Python code. Shift+Enter runs it.' });
    this.input.value = code;
    this.runButton = h('button', { type: 'button', class: 'run', title: 'Run (Shift+Enter)', onclick: () => notebook.run(this) }, 'Run');
    this.stopButton = h('button', { type: 'button', class: 'stop', hidden: true, onclick: () => this.controller?.abort() }, 'Stop');
    this.deleteButton = h('button', { type: 'button', class: 'quiet', onclick: () => notebook.removeCell(this) }, 'Delete');
    this.stateLabel = h('span', { class: 'cell-state', role: 'status' });
    this.outputs = h('div', { class: 'outputs', 'aria-live': 'polite' });
    this.node = h('li', { class: 'cell' },
      this.prompt,
      h('div', { class: 'cell-body' },
        this.input,
        h('div', { class: 'cell-bar' }, this.runButton, this.stopButton, this.stateLabel, h('span', { class: 'spacer' }), this.deleteButton),
        this.outputs));
    const fit = autoGrow(this.input);
    this.input.addEventListener('input', () => notebook.save());
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && event.shiftKey) {
        event.preventDefault();
        notebook.runAndAdvance(this);
      } else if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        notebook.run(this);
      } else if (event.key === 'Tab' && !event.shiftKey && !this.escaped) {
        // Tab indents, as in any code editor; Escape, then Tab, moves on (the toolbar says so), so that the
        // keyboard is never trapped in a cell.
        event.preventDefault();
        this.input.setRangeText('    ', this.input.selectionStart, this.input.selectionEnd, 'end');
        fit();
        notebook.save();
      }
      this.escaped = event.key === 'Escape';
    });
  }

  setPosition(n) {
    this.input.setAttribute('aria-label', `Code of cell ${n}`);
    this.runButton.setAttribute('aria-label', `Run cell ${n}`);
    this.stopButton.setAttribute('aria-label', `Stop cell ${n}`);
    this.deleteButton.setAttribute('aria-label', `Delete cell ${n}`);
  }

  setCount(count) {
    this.prompt.textContent = count === null ? '[ ]' : `[${count}]`;
  }

  queue() {
    this.state = 'queued';
    this.node.dataset.state = 'queued';
    this.stateLabel.textContent = 'Waiting for the cell before…';
  }

  begin() {
    this.state = 'running';
    this.node.dataset.state = 'running';
    this.node.removeAttribute('data-status');
    this.prompt.textContent = '[*]';
    clear(this.outputs);
    this.runButton.hidden = true;
    this.stopButton.hidden = false;
    this.started = performance.now();
    const tick = () => { this.stateLabel.textContent = `Running… ${formatSeconds(performance.now() - this.started)}`; };
    tick();
    this.timer = setInterval(tick, 100);
  }

  end(stateText) {
    clearInterval(this.timer);
    this.state = 'idle';
    this.node.dataset.state = 'idle';
    this.runButton.hidden = false;
    if (document.activeElement === this.stopButton) this.runButton.focus();
    this.stopButton.hidden = true;
    this.stateLabel.textContent = stateText;
  }

  finish(result, count) {
    clear(this.outputs).append(...renderResult(result));
    this.setCount(count);
    this.node.dataset.status = result.status;
    const took = formatSeconds(result.usage?.wall_ms ?? performance.now() - this.started);
    this.end(result.status === 'ok' ? took : result.status === 'error' ? `Raised an error · ${took}` : `Stopped by a limit · ${took}`);
  }

  stopped() {
    this.setCount(null);
    this.node.dataset.status = 'stopped';
    const took = formatSeconds(performance.now() - this.started);
    this.outputs.append(h('p', { class: 'note limit', role: 'alert' }, h('strong', {}, 'Stopped: '),
      `you stopped the cell after ${took}. Its interpreter was ended: the next run starts a fresh one (variables are gone, files stay).`));
    this.end(`Stopped · ${took}`);
  }

  fail(message) {
    this.setCount(null);
    this.node.dataset.status = 'failed';
    this.outputs.append(h('p', { class: 'note error', role: 'alert' }, `Could not run the cell: ${message}`));
    this.end('Not run');
  }
}

function read(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function write(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // Storage refused: the notebook works, and forgets at the next load.
  }
}
