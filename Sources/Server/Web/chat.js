// The chat: a conversation with the configured model through /v1/responses (streamed), whose code runs here.
// Conversations live in the server's database (/v1/conversations); files are uploaded with /v1/files and
// attached to the message, which puts them in the conversation's container.

import { pageURL } from './api.js';
import { autoGrow, clear, formatBytes, formatSeconds, h } from './dom.js';
import { defaultLink, renderMarkdown } from './markdown.js';
import { renderOpenAIOutputs, renderResult } from './outputs.js';

const INCLUDE = ['code_interpreter_call.outputs', 'x_codeinterp.execution'];
const TOOLS = [{ type: 'code_interpreter', container: { type: 'auto' } }];
const SUGGESTIONS = ['Chart the quarterly sales per region', 'Which region grew the fastest?'];

export class Chat {
  /**
   * @param {HTMLElement} view the chat's section of the page
   * @param {{api: import('./api.js').Api, model: () => string, onOpen: (id: string|null) => void}} options
   *   `onOpen` is told which conversation is shown (for the address bar).
   */
  constructor(view, { api, model, onOpen }) {
    this.api = api;
    this.model = model;
    this.onOpen = onOpen;
    this.list = view.querySelector('#conversation-list');
    this.transcript = view.querySelector('#transcript');
    this.form = view.querySelector('#composer');
    this.input = view.querySelector('#message');
    this.sendButton = view.querySelector('#send');
    this.stopButton = view.querySelector('#stop');
    this.attachInput = view.querySelector('#attach-input');
    this.attachmentList = view.querySelector('#attachments');
    this.status = view.querySelector('#chat-status');
    this.error = view.querySelector('#chat-error');

    this.conversationId = null;
    this.conversations = [];
    /** Files picked for the next message: {file: File, id: string|null (once uploaded)}. */
    this.attachments = [];
    /** The open conversation's files: stored file id → signed URL, and /mnt/data path → newest file. */
    this.fileURLs = new Map();
    this.pathFiles = new Map();
    this.streaming = null;
    this.loading = 0;
    // The transcript follows what streams in while the person is at its end; scrolled up, it stays put.
    // (A scroll event comes a frame late, when more may have streamed in: only a move up from where the page
    // last put it counts as the person's.)
    this.follow = true;
    this.pinnedTop = 0;
    this.transcript.addEventListener('scroll', () => {
      const t = this.transcript;
      if (t.scrollHeight - t.scrollTop - t.clientHeight < 48) this.follow = true;
      else if (t.scrollTop < this.pinnedTop - 4) this.follow = false;
    });
    this.growth = new ResizeObserver(() => this.keepAtEnd());

    this.fitInput = autoGrow(this.input);
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this.stopButton.addEventListener('click', () => this.streaming?.abort());
    this.attachInput.addEventListener('change', () => {
      for (const file of this.attachInput.files) this.attachments.push({ file, id: null });
      this.attachInput.value = '';
      this.showAttachments();
    });
    view.querySelector('#new-chat').addEventListener('click', () => {
      this.newChat();
      this.input.focus();
    });
  }

  // MARK: Conversations

  async refreshList() {
    try {
      const page = await this.api.get('/v1/conversations?limit=50');
      this.conversations = page.data;
    } catch (error) {
      this.showError(`The conversations could not be listed: ${error.message}`);
      return;
    }
    this.renderList();
  }

  renderList() {
    clear(this.list);
    if (this.conversations.length === 0) {
      this.list.append(h('li', { class: 'empty' }, 'No conversations yet.'));
      return;
    }
    for (const conversation of this.conversations) {
      const title = conversationTitle(conversation);
      const current = conversation.id === this.conversationId;
      this.list.append(h('li', { class: current ? 'current' : '' },
        h('a', { href: `#chat/${conversation.id}`, 'aria-current': current ? 'page' : false, class: 'conversation-link' },
          h('span', { class: 'title' }, title),
          h('time', { datetime: new Date(conversation.created_at * 1000).toISOString() }, when(conversation.created_at))),
        h('button', { type: 'button', class: 'icon quiet', 'aria-label': `Delete “${title}”`, title: 'Delete',
          onclick: () => this.deleteConversation(conversation) }, '×')));
    }
  }

  async deleteConversation(conversation) {
    try {
      await this.api.delete(`/v1/conversations/${conversation.id}`);
    } catch (error) {
      this.showError(`The conversation could not be deleted: ${error.message}`);
      return;
    }
    if (conversation.id === this.conversationId) this.newChat();
    await this.refreshList();
  }

  /** An empty conversation (created on the server with the first message). */
  newChat() {
    this.leave();
    this.conversationId = null;
    this.fileURLs.clear();
    this.pathFiles.clear();
    clear(this.transcript).append(this.intro());
    this.follow = true;
    this.pinnedTop = 0;
    this.renderList();
    this.onOpen(null);
  }

  intro() {
    return h('li', { class: 'intro' },
      h('h2', {}, 'Ask for an analysis, a chart or a file'),
      h('p', {}, 'The model writes Python; codeinterp runs it here, in a sandbox, and shows what it printed, drew and saved. '
        + 'Attach a CSV or Excel file and the code can read it.'),
      h('div', { class: 'suggestions' }, SUGGESTIONS.map((text) => h('button', {
        type: 'button', class: 'suggestion', onclick: () => {
          this.input.value = text;
          this.fitInput();
          this.input.focus();
        },
      }, text))));
  }

  /** Shows a stored conversation. */
  async open(id) {
    if (id === this.conversationId && this.transcript.childElementCount) return;
    this.leave();
    this.conversationId = id;
    this.fileURLs.clear();
    this.pathFiles.clear();
    this.renderList();
    clear(this.transcript);
    this.follow = true;
    this.pinnedTop = 0;
    const ticket = ++this.loading;
    this.setStatus('Loading the conversation…');
    let items;
    try {
      const include = INCLUDE.map((value) => `include=${encodeURIComponent(value)}`).join('&');
      items = await this.api.list(`/v1/conversations/${id}/items?order=asc&${include}`);
    } catch (error) {
      if (ticket !== this.loading) return;
      this.setStatus('');
      if (error.status === 404) {
        this.newChat();
        this.showError('That conversation no longer exists: this is a new one.');
      } else {
        this.showError(`The conversation could not be loaded: ${error.message}`);
      }
      return;
    }
    if (ticket !== this.loading) return;
    this.setStatus('');
    let turn = null;
    for (const item of items) {
      if (item.type === 'message' && item.role === 'user') {
        turn = null;
        this.appendTurn(userTurn(item.content));
        continue;
      }
      if (!turn) {
        turn = new AssistantTurn(this);
        this.appendTurn(turn.node);
      }
      turn.show(item);
    }
    if (!items.length) this.transcript.append(this.intro());
  }

  appendTurn(node) {
    this.transcript.append(node);
    this.growth.observe(node);
    this.keepAtEnd();
  }

  keepAtEnd() {
    if (!this.follow) return;
    this.transcript.scrollTop = this.transcript.scrollHeight;
    this.pinnedTop = this.transcript.scrollTop;
  }

  /** Stops the answer being streamed, if any, because the person went to another conversation. */
  leave() {
    if (!this.streaming) return;
    this.streaming.left = true;
    this.streaming.abort();
  }

  // MARK: Sending

  async send() {
    const text = this.input.value.trim();
    if (this.streaming || (!text && this.attachments.length === 0)) return;
    this.showError('');
    const controller = new AbortController();
    this.streaming = controller;
    this.setBusy(true);
    const conversation = this.conversationId;
    const attachments = [...this.attachments];
    const bubble = userTurn(null, text, attachments.map((a) => a.file.name));
    this.transcript.querySelector('.intro')?.remove();
    this.follow = true;
    this.appendTurn(bubble);
    let started = false;
    let turn = null;
    try {
      this.setStatus(attachments.length ? 'Uploading…' : 'Sending…');
      for (const attachment of attachments) {
        attachment.id ??= (await this.api.upload('/v1/files', attachment.file, { purpose: 'user_data' }, { signal: controller.signal })).id;
      }
      if (!this.conversationId) {
        const created = await this.api.post('/v1/conversations', { metadata: { title: titleFor(text, attachments) } });
        this.conversationId = created.id;
        this.onOpen(created.id);
      }
      const content = [];
      if (text) content.push({ type: 'input_text', text });
      for (const attachment of attachments) content.push({ type: 'input_file', file_id: attachment.id });
      const body = {
        model: this.model(), conversation: this.conversationId, input: [{ type: 'message', role: 'user', content }],
        tools: TOOLS, include: INCLUDE, stream: true, store: true,
      };
      this.setStatus('Waiting for the model…');
      for await (const { data } of this.api.stream('/v1/responses', body, { signal: controller.signal })) {
        if (!started) {
          started = true;
          // The server took the message: it is in the conversation now, no longer only in the box.
          this.input.value = '';
          this.fitInput();
          this.attachments = this.attachments.filter((a) => !attachments.includes(a));
          this.showAttachments();
          turn = new AssistantTurn(this);
          this.appendTurn(turn.node);
          this.refreshList();
        }
        turn.event(data);
        this.setStatus(turn.activity());
      }
      if (turn?.failure) this.restore(text, turn.failure);
    } catch (error) {
      if (error.name === 'AbortError' && controller.left) {
        // Gone to another conversation: this one's view is no longer on the page.
      } else if (error.name === 'AbortError') {
        turn?.stopped();
        if (!started) this.unsend(bubble);
        else this.restore(text, 'Stopped. The message was not kept; it is back in the box.');
      } else if (!started) {
        this.unsend(bubble);
        this.showError(error.message);
      } else {
        turn.fail(error.message);
        this.restore(text, error.message);
      }
      if (!started && conversation !== this.conversationId && this.conversationId) this.refreshList();
    } finally {
      if (this.streaming === controller) this.streaming = null;
      this.setBusy(false);
      this.setStatus('');
    }
  }

  /** The message did not go out: its bubble goes (its text is still in the box). */
  unsend(bubble) {
    bubble.remove();
    if (!this.transcript.childElementCount) this.transcript.append(this.intro());
  }

  /** After a failure mid-answer: the server kept nothing of this turn, so the text goes back in the box. */
  restore(text, why) {
    if (!this.input.value.trim()) {
      this.input.value = text;
      this.fitInput();
    }
    this.showError(why);
  }

  setBusy(busy) {
    this.sendButton.hidden = busy;
    this.stopButton.hidden = !busy;
    this.transcript.setAttribute('aria-busy', busy ? 'true' : 'false');
    if (!busy && document.activeElement === this.stopButton) this.input.focus();
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  showAttachments() {
    clear(this.attachmentList);
    for (const attachment of this.attachments) {
      this.attachmentList.append(h('li', { class: 'chip' },
        h('span', {}, attachment.file.name), h('span', { class: 'file-size' }, ` ${formatBytes(attachment.file.size)}`),
        h('button', { type: 'button', class: 'icon quiet', 'aria-label': `Remove ${attachment.file.name}`, onclick: () => {
          this.attachments = this.attachments.filter((a) => a !== attachment);
          this.showAttachments();
          this.input.focus();
        } }, '×')));
    }
  }

  // MARK: Files of the conversation

  /** Records the files an execution wrote, so that `sandbox:/mnt/data/...` links in answers find them. */
  learnFiles(files) {
    for (const file of files ?? []) {
      if (!file.url) continue;
      this.fileURLs.set(file.id, file.url);
      if (file.path) this.pathFiles.set(file.path, file);
    }
  }

  /** Signed URLs of cited files this page has not seen in a result (an upload), fetched once. */
  async lookUpFiles(ids) {
    const missing = ids.filter((id) => !this.fileURLs.has(id));
    await Promise.all(missing.map(async (id) => {
      try {
        const file = await this.api.get(`/v1/files/${id}`);
        this.fileURLs.set(id, file.url);
      } catch {
        // Gone (expired): the link stays plain text.
      }
    }));
    return missing.length > 0;
  }

  /** Where a link of an answer goes: `sandbox:/mnt/data/NAME` becomes the file's download URL. */
  resolveLink(href, cited) {
    if (!href.startsWith('sandbox:')) return defaultLink(href);
    const path = href.slice('sandbox:'.length);
    const id = cited.get(href);
    const url = (id && this.fileURLs.get(id)) || this.pathFiles.get(path)?.url;
    if (!url) return null;
    return { href: pageURL(url), download: path.split('/').pop(), title: path };
  }
}

// MARK: Views of one turn

/** What the model did in one turn: code runs and text, in order, as they stream in or as they were stored. */
class AssistantTurn {
  constructor(chat) {
    this.chat = chat;
    this.node = h('li', { class: 'turn assistant' });
    this.parts = new Map();
    this.failure = null;
  }

  part(index, item) {
    let part = this.parts.get(index);
    if (!part && item) {
      part = item.type === 'code_interpreter_call' ? new CodeRun(this.chat) : item.type === 'message' ? new Answer(this.chat) : null;
      if (part) {
        this.parts.set(index, part);
        this.node.append(part.node);
      }
    }
    return part;
  }

  /** A stored item (a reopened conversation). */
  show(item) {
    const part = this.part(this.parts.size, item);
    part?.done(item);
  }

  /** One event of the response stream. */
  event(e) {
    switch (e.type) {
      case 'response.output_item.added':
        this.part(e.output_index, e.item);
        break;
      case 'response.code_interpreter_call_code.delta':
        this.parts.get(e.output_index)?.appendCode(e.delta);
        break;
      case 'response.code_interpreter_call.interpreting':
        this.parts.get(e.output_index)?.running();
        break;
      case 'response.output_text.delta':
        this.parts.get(e.output_index)?.append(e.delta);
        break;
      case 'response.output_item.done':
        this.part(e.output_index, e.item)?.done(e.item);
        break;
      case 'response.failed':
        this.fail(e.response?.error?.message ?? 'The model failed.');
        break;
      case 'response.incomplete':
        this.node.append(h('p', { class: 'note' }, 'The answer was cut short (the model reached its output limit).'));
        break;
      case 'error':
        this.fail(e.message ?? 'The server failed.');
        break;
      default:
        break;
    }
  }

  activity() {
    const running = [...this.parts.values()].find((p) => p.state === 'running');
    if (running) return 'Running code…';
    const writing = [...this.parts.values()].find((p) => p.state === 'writing');
    if (writing) return writing instanceof CodeRun ? 'Writing code…' : 'Answering…';
    return 'Thinking…';
  }

  fail(message) {
    this.failure = message;
    for (const part of this.parts.values()) part.interrupt?.();
    this.node.append(h('p', { class: 'note error', role: 'alert' }, message));
  }

  stopped() {
    for (const part of this.parts.values()) part.interrupt?.();
    this.node.append(h('p', { class: 'note' }, 'Stopped.'));
  }
}

/** A code_interpreter_call: the code as the model writes it, then what running it produced. */
class CodeRun {
  constructor(chat) {
    this.chat = chat;
    this.state = 'writing';
    this.code = h('code', { class: 'language-python' });
    this.label = h('span', { class: 'run-state' }, 'Writing code…');
    this.outputs = h('div', { class: 'outputs' });
    this.node = h('section', { class: 'code-run', 'aria-label': 'Code run' },
      h('header', {}, h('span', { class: 'run-title' }, 'Python'), this.label),
      h('pre', { class: 'code' }, this.code), this.outputs);
  }

  appendCode(delta) {
    this.code.append(delta);
  }

  running() {
    this.state = 'running';
    const started = performance.now();
    const tick = () => { this.label.textContent = `Running… ${formatSeconds(performance.now() - started)}`; };
    tick();
    this.timer = setInterval(tick, 200);
    this.started = started;
  }

  done(item) {
    clearInterval(this.timer);
    this.state = 'done';
    this.code.textContent = item.code ?? this.code.textContent;
    const execution = item.x_codeinterp?.execution;
    clear(this.outputs);
    if (execution) {
      this.chat.learnFiles(execution.files);
      this.chat.learnFiles((execution.displays ?? []).map((d) => ({ id: d.file_id, url: d.url })));
      this.outputs.append(...renderResult(execution));
      const seconds = execution.usage?.wall_ms !== undefined ? formatSeconds(execution.usage.wall_ms) : '';
      this.label.textContent = execution.status === 'ok' ? `Ran in ${seconds}` : `${label(execution.status)} · ${seconds}`;
      this.node.dataset.status = execution.status;
    } else {
      this.outputs.append(...renderOpenAIOutputs(item.outputs));
      this.label.textContent = item.status === 'completed' ? 'Ran' : label(item.status);
      this.node.dataset.status = item.status;
    }
  }

  interrupt() {
    if (this.state === 'done') return;
    clearInterval(this.timer);
    this.state = 'done';
    this.label.textContent = 'Interrupted';
  }
}

/** The model's text, rendered as Markdown while it streams and again with its citations when it is done. */
class Answer {
  constructor(chat) {
    this.chat = chat;
    this.state = 'writing';
    this.text = '';
    this.cited = new Map();
    this.node = h('div', { class: 'answer markdown' });
    this.pending = false;
  }

  append(delta) {
    this.text += delta;
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  async done(item) {
    this.state = 'done';
    const part = (item.content ?? []).find((p) => p.type === 'output_text');
    this.text = part?.text ?? this.text;
    const scalars = Array.from(this.text);
    for (const a of part?.annotations ?? []) {
      if (a.type === 'container_file_citation' && a.end_index > a.start_index) {
        this.cited.set(scalars.slice(a.start_index, a.end_index).join(''), a.file_id);
      }
    }
    this.render();
    if (await this.chat.lookUpFiles([...this.cited.values()])) this.render();
  }

  interrupt() {
    this.state = 'done';
  }

  render() {
    const chat = this.chat;
    clear(this.node).append(renderMarkdown(this.text, {
      link: (href) => chat.resolveLink(href, this.cited),
      image: (src) => (src.startsWith('sandbox:') ? chat.resolveLink(src, this.cited)?.href ?? null : null),
    }));
  }
}

function userTurn(content, text = null, names = []) {
  const parts = content ?? [];
  const texts = text !== null ? [text] : parts.filter((p) => p.type === 'input_text').map((p) => p.text);
  const files = content ? parts.filter((p) => p.type === 'input_file').map((p) => p.filename ?? p.file_id) : names;
  return h('li', { class: 'turn user' },
    h('div', { class: 'bubble' },
      texts.filter(Boolean).map((t) => h('p', { class: 'user-text' }, t)),
      files.length ? h('ul', { class: 'attached' }, files.map((name) => h('li', { class: 'chip' }, name))) : null));
}

function label(status) {
  return { timeout: 'Timed out', memory_limit: 'Out of memory', output_limit: 'Too much output', killed: 'Stopped',
    blocked_syscall: 'Blocked', error: 'Raised an error', failed: 'Failed', incomplete: 'Interrupted' }[status] ?? status;
}

function conversationTitle(conversation) {
  return conversation.metadata?.title || `Conversation of ${when(conversation.created_at)}`;
}

function titleFor(text, attachments) {
  const line = (text.split('\n').find((l) => l.trim()) ?? '').trim() || attachments.map((a) => a.file.name).join(', ') || 'Conversation';
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}

function when(seconds) {
  const date = new Date(seconds * 1000);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleDateString([], { month: 'short', day: 'numeric' });
}
