export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nestjs-durable-sse demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
  #state { font-weight: 600; }
  .open { color: #0a7d32; } .connecting { color: #b26b00; } .closed { color: #b00020; }
  ul { padding-left: 1.2rem; } code { background: #f3f3f3; padding: 0 .25rem; }
</style>
</head>
<body>
<h1>nestjs-durable-sse</h1>
<p>Connection: <span id="state" class="connecting">connecting</span> ·
   last event id: <code id="last">–</code> · server time: <code id="clock">–</code></p>
<form id="form"><input id="text" placeholder="Say something" maxlength="500" autofocus> <button>Send</button></form>
<ul id="messages"></ul>
<script>
  const state = document.getElementById('state');
  const show = (text, cls) => { state.textContent = text; state.className = cls; };
  const source = new EventSource('/stream');
  source.onopen = () => show('open', 'open');
  source.onerror = () => show(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting', source.readyState === EventSource.CLOSED ? 'closed' : 'connecting');
  const remember = (event) => { document.getElementById('last').textContent = event.lastEventId || '–'; };
  source.addEventListener('tick', (event) => { remember(event); document.getElementById('clock').textContent = JSON.parse(event.data).now; });
  source.addEventListener('message', (event) => {
    remember(event);
    const li = document.createElement('li');
    li.textContent = JSON.parse(event.data).text;
    document.getElementById('messages').prepend(li);
  });
  source.addEventListener('reset', () => { document.getElementById('messages').innerHTML = '<li><em>(reconnected: earlier messages may have been missed)</em></li>'; });
  document.getElementById('form').onsubmit = async (e) => {
    e.preventDefault();
    const input = document.getElementById('text');
    if (!input.value.trim()) return;
    await fetch('/messages', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: input.value }) });
    input.value = '';
  };
</script>
</body>
</html>
`;
