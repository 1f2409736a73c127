export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nestjs-durable-sse: resumable generation</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
  #answer { white-space: pre-wrap; border: 1px solid #ddd; padding: 1rem; min-height: 6rem; }
  #state { font-weight: 600; } code { background: #f3f3f3; padding: 0 .25rem; }
</style>
</head>
<body>
<h1>Resumable generation</h1>
<form id="form"><input id="prompt" placeholder="Ask something" maxlength="2000" size="50" autofocus> <button>Generate</button></form>
<p>State: <span id="state">idle</span> · last event id: <code id="last-id">–</code> · <small>reload the page mid-answer: it resumes</small></p>
<div id="answer"></div>
<script>
  // What the page keeps across reloads: the job's resume URL, the last event id, the text so far.
  const saved = () => JSON.parse(localStorage.getItem('generation') || 'null');
  const save = (g) => localStorage.setItem('generation', JSON.stringify(g));
  const $ = (id) => document.getElementById(id);
  const show = (g) => { $('answer').textContent = g.text; $('last-id').textContent = g.lastId || '–'; };
  const setState = (s) => { $('state').textContent = s; };

  function onEvent(g, type, id, data) {
    if (type === 'token') { g.text += data; g.lastId = id; }
    if (type === 'done') { g.done = true; g.lastId = id; setState('done'); }
    if (type === 'error') { g.done = true; g.lastId = id; setState('error: ' + JSON.parse(data).title); }
    save(g); show(g);
  }

  // After a reload or a dropped connection: the browser's own EventSource, from the last id.
  function resume(g) {
    setState('resuming');
    const source = new EventSource(g.url + '?lastEventId=' + encodeURIComponent(g.lastId || '0'));
    source.onopen = () => setState('streaming');
    for (const type of ['token', 'done']) {
      source.addEventListener(type, (e) => { onEvent(g, type, e.lastEventId, e.data); if (type === 'done') source.close(); });
    }
    source.addEventListener('error', (e) => {
      if (e.data) { onEvent(g, 'error', e.lastEventId, e.data); source.close(); }
      else if (source.readyState === EventSource.CLOSED && !g.done) setState('closed');
    });
  }

  // The start: a POST with a body, read with fetch (EventSource can only GET).
  async function start(prompt) {
    const g = { url: null, lastId: null, text: '', done: false };
    save(g); show(g); setState('starting');
    const response = await fetch('/generate', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
      body: JSON.stringify({ prompt }),
    });
    if (response.status !== 200) { setState('refused: ' + response.status); return; }
    g.url = response.headers.get('content-location'); save(g); setState('streaming');
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf('\\n\\n')) >= 0) {
          const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
          let id = null, type = 'message', data = [];
          for (const line of block.split('\\n')) {
            const at = line.indexOf(':'); if (at <= 0) continue;
            const field = line.slice(0, at), val = line.slice(at + 1).replace(/^ /, '');
            if (field === 'id') id = val; else if (field === 'event') type = val; else if (field === 'data') data.push(val);
          }
          if (data.length) onEvent(g, type, id, data.join('\\n'));
        }
      }
    } catch (error) { /* connection lost: resumed below */ }
    if (!g.done) resume(g);
  }

  $('form').onsubmit = (e) => { e.preventDefault(); const p = $('prompt').value.trim(); if (p) start(p); };
  const g = saved();
  if (g) { show(g); if (g.url && !g.done) resume(g); else if (g.done) setState('done'); }
</script>
</body>
</html>
`;
