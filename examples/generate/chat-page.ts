/** The `/chat` page of the generate demo; its script is {@link CHAT_CLIENT}, bundled. */
export const CHAT_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nestjs-durable-sse: the AI SDK's useChat, resumable</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
  .message { white-space: pre-wrap; border: 1px solid #ddd; padding: .5rem 1rem; margin: .5rem 0; }
  .assistant { background: #f7f7f7; } #state { font-weight: 600; }
</style>
</head>
<body>
<h1>Chat (AI SDK client, <code>@SseChat()</code>)</h1>
<form id="form"><input id="prompt" placeholder="Ask something" size="50" autofocus> <button>Send</button>
<button type="button" id="stop">Stop</button> <button type="button" id="new">New chat</button></form>
<p>State: <span id="state">loading</span> · <small>reload the page mid-answer: it resumes, on any instance</small></p>
<div id="messages"></div>
<script type="module" src="/chat.js"></script>
</body>
</html>
`;

/**
 * The page's client, on the `ai` package's own classes: `AbstractChat` (what `useChat` wraps)
 * with a plain state, and `DefaultChatTransport`. On load it shows the chat's stored messages and
 * calls `resumeStream()`, as `useChat({ resume: true })` does.
 */
export const CHAT_CLIENT = `
import { AbstractChat, DefaultChatTransport } from 'ai';

const $ = (id) => document.getElementById(id);
const newId = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
let chatId = localStorage.getItem('chat-id');
if (!chatId) localStorage.setItem('chat-id', (chatId = newId()));

function render(state) {
  $('state').textContent = state.status;
  $('messages').replaceChildren(
    ...state.messages.map((message) => {
      const div = document.createElement('div');
      div.className = 'message ' + message.role;
      div.dataset.role = message.role;
      div.textContent = message.parts.map((part) => (part.type === 'text' ? part.text : '')).join('');
      return div;
    }),
  );
}

function pageState(messages) {
  let status = 'ready';
  const state = {
    error: undefined,
    messages,
    get status() { return status; },
    set status(value) { status = value; render(state); },
    pushMessage(message) { state.messages = state.messages.concat(message); render(state); },
    popMessage() { state.messages = state.messages.slice(0, -1); render(state); },
    replaceMessage(index, message) {
      state.messages = state.messages.map((m, i) => (i === index ? message : m));
      render(state);
    },
    snapshot: (value) => structuredClone(value),
  };
  return state;
}

class PageChat extends AbstractChat {}

const history = await (await fetch('/api/chat/' + encodeURIComponent(chatId) + '/messages')).json();
const state = pageState(history);
const chat = new PageChat({
  id: chatId,
  transport: new DefaultChatTransport({ api: '/api/chat' }),
  state,
});
render(state);
window.chat = chat;
// useChat({ resume: true }): a turn still running (a reload mid-answer) continues here.
void chat.resumeStream();

$('form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('prompt').value.trim();
  if (text) void chat.sendMessage({ text });
  $('prompt').value = '';
});
// With resume, the client's stop() only drops the connection: the stop endpoint ends the turn.
$('stop').addEventListener('click', () => {
  void chat.stop();
  void fetch('/api/chat/' + encodeURIComponent(chatId) + '/stream', { method: 'DELETE' });
});
$('new').addEventListener('click', () => {
  localStorage.setItem('chat-id', newId());
  location.reload();
});
`;
