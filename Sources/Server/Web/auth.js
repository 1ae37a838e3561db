// Signing in, as Jupyter does: `codeinterp serve` prints `/?token=KEY`; the page keeps the key in this browser's
// local storage and takes it out of the address bar (and so out of the history) before anything else runs.
// Without a key the page asks for one.

const STORAGE = 'codeinterp.apiKey';
/** The key given in this load, for when the browser refuses local storage. */
let memoryKey = null;

/** Moves `?token=` from the address into storage; true when there was one. */
export function takeTokenFromAddress() {
  const url = new URL(location.href);
  const token = url.searchParams.get('token');
  if (token === null) return false;
  url.searchParams.delete('token');
  history.replaceState(history.state, '', url.pathname + url.search + url.hash);
  if (token.trim()) saveKey(token.trim());
  return true;
}

export function storedKey() {
  try {
    return localStorage.getItem(STORAGE);
  } catch {
    return null; // storage refused (a private window's policy): the page then asks at each load
  }
}

export function saveKey(key) {
  try {
    localStorage.setItem(STORAGE, key);
  } catch {
    // Kept for this load only (see storedKey).
  }
  memoryKey = key;
}

export function forgetKey() {
  try {
    localStorage.removeItem(STORAGE);
  } catch {
    // Nothing was stored.
  }
  memoryKey = null;
}

/** The key to send: the stored one, or the one given in this load when storage is refused. */
export function currentKey() {
  return storedKey() ?? memoryKey;
}
