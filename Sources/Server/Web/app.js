// The page's entry point: signs in, then shows the chat or the notebook (`#chat`, `#chat/<conversation id>`,
// `#notebook`).

import { Api } from './api.js';
import { currentKey, forgetKey, saveKey, takeTokenFromAddress } from './auth.js';
import { Chat } from './chat.js';
import { Notebook } from './notebook.js';

// Before anything else: the key leaves the address bar (and the history) at once.
takeTokenFromAddress();

const $ = (selector) => document.querySelector(selector);

const signInView = $('#sign-in');
const signInForm = $('#sign-in-form');
const signInKey = $('#sign-in-key');
const signInError = $('#sign-in-error');
const banner = $('#banner');
const appViews = { chat: $('#chat-view'), notebook: $('#notebook-view') };
const tabs = { chat: $('#tab-chat'), notebook: $('#tab-notebook') };

let model = null;
const api = new Api(currentKey, () => showSignIn('The server refused the saved key. Sign in again.'));
const chat = new Chat(appViews.chat, {
  api,
  model: () => model,
  onOpen: (id) => history.replaceState(history.state, '', id ? `#chat/${id}` : '#chat'),
});
const notebook = new Notebook(appViews.notebook, { api });

function showSignIn(message = '') {
  signInView.hidden = false;
  for (const view of Object.values(appViews)) view.hidden = true;
  $('#tabs').hidden = true;
  $('#sign-out').hidden = true;
  signInError.textContent = message;
  signInKey.focus();
}

function showBanner(message, retry) {
  banner.replaceChildren(message, ' ');
  if (retry) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = 'Try again';
    button.addEventListener('click', retry);
    banner.append(button);
  }
  banner.hidden = false;
}

/**
 * Checks the key with the server (and learns the model's name): 'ok' (the page is shown), 'refused' (the form
 * is), 'unreachable' (a banner says so) or 'none' (no key yet: the form).
 */
async function signIn() {
  try {
    return await checkKey();
  } finally {
    $('#connecting').hidden = true;
  }
}

async function checkKey() {
  if (!currentKey()) {
    showSignIn();
    return 'none';
  }
  let models;
  try {
    models = await api.get('/v1/models');
  } catch (error) {
    if (error.unauthorized) return 'refused'; // the api's handler has shown the form
    showBanner(error.message, () => { banner.hidden = true; start(); });
    return 'unreachable';
  }
  banner.hidden = true;
  model = models.data[0]?.id ?? 'codeinterp';
  $('#model-name').textContent = `Model: ${model}`;
  signInView.hidden = true;
  $('#tabs').hidden = false;
  $('#sign-out').hidden = false;
  return 'ok';
}

let started = false;

/** `signedIn`: the key was just checked. */
async function start(signedIn = false) {
  if (!signedIn && (await signIn()) !== 'ok') return;
  if (!started) {
    started = true;
    chat.refreshList();
    window.addEventListener('hashchange', route);
  }
  route();
}

function route() {
  const [name, id] = location.hash.replace(/^#/, '').split('/');
  const view = name === 'notebook' ? 'notebook' : 'chat';
  for (const [key, element] of Object.entries(appViews)) element.hidden = key !== view;
  for (const [key, tab] of Object.entries(tabs)) {
    if (key === view) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  if (view === 'notebook') {
    notebook.start();
  } else if (id && /^conv_[A-Za-z0-9]+$/.test(id)) {
    chat.open(id);
  } else if (!chat.conversationId) {
    chat.newChat();
  }
  document.title = view === 'notebook' ? 'Notebook · codeinterp' : 'Chat · codeinterp';
}

signInForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = signInKey.value.trim();
  if (!key) return;
  saveKey(key);
  signInError.textContent = 'Checking…';
  const outcome = await signIn();
  if (outcome === 'ok') {
    signInKey.value = '';
    signInError.textContent = '';
    start(true);
    return;
  }
  // Not kept; the key stays in the field, to correct it or to try again.
  forgetKey();
  signInError.textContent = outcome === 'refused' ? 'The server refused that key.' : 'The server could not be reached.';
  signInKey.select();
});

$('#sign-out').addEventListener('click', () => {
  forgetKey();
  showSignIn('Signed out. The key is no longer kept in this browser.');
});

start();
