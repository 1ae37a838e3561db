// The codeinterp HTTP API as the page uses it: JSON requests, uploads and Server-Sent Events, with the API key
// as a header (never in a URL) and every failure turned into an ApiError a person can read.

export class ApiError extends Error {
  /**
   * @param {string} message what went wrong, in words for the person using the page
   * @param {{status?: number, code?: string, param?: string, retryAfter?: number, network?: boolean}} details
   */
  constructor(message, details = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = details.status ?? 0;
    this.code = details.code ?? null;
    this.param = details.param ?? null;
    this.retryAfter = details.retryAfter ?? null;
    this.network = details.network ?? false;
  }

  get unauthorized() { return this.status === 401; }
}

/** What a failed response means for the person at the page. */
async function errorFrom(response) {
  let message = '';
  let code = null;
  let param = null;
  try {
    const body = await response.json();
    message = body?.error?.message ?? '';
    code = body?.error?.code ?? null;
    param = body?.error?.param ?? null;
  } catch {
    // Not the error envelope (a proxy's page): the status says enough.
  }
  const retryAfter = Number(response.headers.get('Retry-After')) || null;
  const status = response.status;
  let text;
  if (status === 401) text = 'The server refused the API key. Sign in again with the key codeinterp serve printed.';
  else if (status === 429) {
    text = `Too many requests right now${message ? ` (${message})` : ''}.`;
    if (retryAfter) text += ` Try again in ${retryAfter} s.`;
  } else if (status === 413) text = message || 'That is larger than the server accepts.';
  else if (status >= 500) text = `The server failed: ${message || response.statusText || status}.`;
  else text = message || `The request failed (HTTP ${status}).`;
  return new ApiError(text, { status, code, param, retryAfter });
}

function networkError(error) {
  if (error?.name === 'AbortError') return error;
  return new ApiError('Cannot reach the codeinterp server. Is it still running?', { network: true });
}

export class Api {
  /**
   * @param {() => string|null} key the API key to send
   * @param {(error: ApiError) => void} onUnauthorized called when the server refuses the key
   */
  constructor(key, onUnauthorized = () => {}) {
    this.key = key;
    this.onUnauthorized = onUnauthorized;
  }

  /** A fetch of `path` that resolves with an ok Response or throws an ApiError (an AbortError when aborted). */
  async fetch(method, path, { json, body, headers = {}, signal } = {}) {
    const init = { method, headers: { ...headers }, signal, cache: 'no-store', credentials: 'omit' };
    const key = this.key();
    if (key) init.headers.Authorization = `Bearer ${key}`;
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    } else if (body !== undefined) {
      init.body = body;
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw networkError(error);
    }
    if (!response.ok) {
      const error = await errorFrom(response);
      if (error.unauthorized) this.onUnauthorized(error);
      throw error;
    }
    return response;
  }

  async json(method, path, options) {
    const response = await this.fetch(method, path, options);
    return response.json();
  }

  get(path, options) { return this.json('GET', path, options); }
  post(path, json, options = {}) { return this.json('POST', path, { ...options, json }); }
  delete(path, options) { return this.json('DELETE', path, options); }

  /** Uploads a File as multipart/form-data (field `file`) to `path`. */
  upload(path, file, fields = {}, options = {}) {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append('file', file, file.name);
    return this.json('POST', path, { ...options, body: form });
  }

  /** Every page of a list route (`{data, has_more, last_id}`), oldest first when `order=asc`. */
  async list(path, { limit = 100 } = {}) {
    const items = [];
    let after = null;
    for (;;) {
      const separator = path.includes('?') ? '&' : '?';
      const page = await this.get(`${path}${separator}limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      items.push(...page.data);
      if (!page.has_more || !page.last_id) return items;
      after = page.last_id;
    }
  }

  /**
   * POSTs `json` and reads the answer as Server-Sent Events: yields `{event, data}` (data parsed as JSON).
   * Throws before the first event when the server refuses the request, so nothing has been shown yet.
   */
  async *stream(path, json, { signal } = {}) {
    const response = await this.fetch('POST', path, { json, signal, headers: { Accept: 'text/event-stream' } });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (error) {
          throw error?.name === 'AbortError' ? error : new ApiError('The connection to the server broke off.', { network: true });
        }
        if (chunk.done) break;
        buffer += chunk.value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = parseEvent(block);
          if (event) yield event;
        }
      }
    } finally {
      reader.releaseLock();
    }
  }
}

/** One SSE block (`event: T` / `data: ...` lines); comments (`: keep-alive`) give null. */
function parseEvent(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return null;
  const text = data.join('\n');
  try {
    return { event, data: JSON.parse(text) };
  } catch {
    return { event, data: text };
  }
}

/**
 * A file URL from the API (absolute, signed: `http://host:port/v1/files/ID/content?expires=..&sig=..`) as a
 * path on this page's own origin: the server's public_url may name another host than the one in the address
 * bar, and the page's policy loads images only from its own origin.
 */
export function pageURL(url) {
  if (!url) return url;
  try {
    const parsed = new URL(url, location.href);
    if (parsed.pathname.startsWith('/v1/files/')) return parsed.pathname + parsed.search;
  } catch {
    // Not a URL: left as it is (the caller decides what to do with it).
  }
  return url;
}
