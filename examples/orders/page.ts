/**
 * The example's page: subscribes with the browser's own EventSource, shows live orders, the
 * connection state and the last event id, and places orders with an Idempotency-Key. Every
 * received event is listed in the log (nothing is deduplicated here, so a duplicate delivery
 * would show).
 */
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Orders · nestjs-durable-sse</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }
  h1 { font-size: 1.4rem; margin-bottom: .25rem; }
  .bar { display: flex; gap: 1.5rem; flex-wrap: wrap; padding: .6rem .8rem; background: #f4f5f7; border-radius: 6px; }
  #state { font-weight: 600; } .open { color: #0a7d32; } .connecting { color: #b26b00; } .closed { color: #b00020; }
  code { background: #eceef1; padding: 0 .3rem; border-radius: 3px; }
  form { margin: 1rem 0; display: flex; gap: .5rem; } input { padding: .35rem .5rem; } button { padding: .35rem .8rem; cursor: pointer; }
  table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e3e5e8; }
  .cols { display: grid; grid-template-columns: 3fr 2fr; gap: 1.5rem; }
  #log { font: 12px/1.5 ui-monospace, monospace; list-style: none; padding: 0; max-height: 24rem; overflow: auto; }
</style>
</head>
<body>
<h1>Orders</h1>
<p>Placed through <code>POST /orders</code> (idempotent), written with their events in one transaction,
   delivered from the PostgreSQL outbox over <code>GET /orders/stream</code>.</p>
<div class="bar">
  <span>Connection: <span id="state" class="connecting">connecting</span></span>
  <span>Last event id: <code id="last-id">none</code></span>
  <span>Events received: <code id="count">0</code></span>
</div>
<form id="place">
  <input id="item" placeholder="Item" value="Coffee beans" maxlength="100" required>
  <input id="quantity" type="number" min="1" max="1000" value="1" required>
  <button>Place order</button>
</form>
<div class="cols">
  <section><h2>Live orders</h2>
    <table><thead><tr><th>#</th><th>Item</th><th>Qty</th><th>Status</th><th></th></tr></thead><tbody id="orders"></tbody></table>
  </section>
  <section><h2>Event log</h2><ul id="log"></ul></section>
</div>
<script>
(() => {
  const $ = (id) => document.getElementById(id);
  const TYPES = ['order.placed', 'order.paid', 'order.shipped', 'order.delivered', 'order.cancelled'];
  const NEXT = { placed: 'paid', paid: 'shipped', shipped: 'delivered' };
  const orders = new Map();
  let lastEventId = '';
  let count = 0;
  let source;

  const show = (text, cls) => { $('state').textContent = text; $('state').className = cls; };

  const render = () => {
    const rows = [...orders.values()].sort((a, b) => Number(b.id) - Number(a.id));
    $('orders').replaceChildren(...rows.map((order) => {
      const tr = document.createElement('tr');
      tr.dataset.orderId = order.id;
      for (const value of [order.id, order.item, order.quantity, order.status]) {
        const td = document.createElement('td'); td.textContent = value; tr.append(td);
      }
      const td = document.createElement('td');
      if (NEXT[order.status]) {
        const button = document.createElement('button');
        button.textContent = 'mark ' + NEXT[order.status];
        button.onclick = () => send('/orders/' + order.id + '/status', { status: NEXT[order.status] });
        td.append(button);
      }
      tr.append(td);
      return tr;
    }));
  };

  const onEvent = (event) => {
    count++;
    lastEventId = event.lastEventId;
    $('count').textContent = String(count);
    $('last-id').textContent = lastEventId || 'none';
    const li = document.createElement('li');
    li.dataset.eventId = event.lastEventId;
    li.dataset.type = event.type;
    if (event.type === 'reset') {
      li.textContent = event.lastEventId + ' reset: reloading the list';
      void loadRecent();
    } else {
      const order = JSON.parse(event.data);
      orders.set(order.id, order);
      li.dataset.orderId = order.id;
      li.textContent = event.lastEventId + ' ' + event.type + ' #' + order.id + ' ' + order.item;
      render();
    }
    $('log').prepend(li);
  };

  // EventSource reconnects by itself after network errors, sending Last-Event-ID. It gives up
  // (CLOSED) on a non-200 answer; then reopen it ourselves, resuming from the last id we saw.
  const connect = () => {
    const url = '/orders/stream' + (lastEventId ? '?lastEventId=' + encodeURIComponent(lastEventId) : '');
    source = new EventSource(url);
    source.onopen = () => show('open', 'open');
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        show('closed, retrying', 'closed');
        setTimeout(connect, 2000);
      } else {
        show('reconnecting', 'connecting');
      }
    };
    for (const type of [...TYPES, 'reset']) source.addEventListener(type, onEvent);
  };

  // Resolves with the position the list was read at (its Last-Event-ID header).
  const loadRecent = async () => {
    const response = await fetch('/orders');
    if (!response.ok) return undefined;
    for (const order of await response.json()) if (!orders.has(order.id)) orders.set(order.id, order);
    render();
    return response.headers.get('last-event-id') || undefined;
  };

  // crypto.randomUUID exists only in secure contexts (https, localhost).
  const newKey = () => crypto.randomUUID ? crypto.randomUUID()
    : Date.now().toString(36) + '-' + Array.from(crypto.getRandomValues(new Uint32Array(4)), (n) => n.toString(36)).join('');

  const send = async (path, body) => {
    // One key per user action: a retry of this request (same key) places nothing twice.
    const response = await fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': newKey() },
      body: JSON.stringify(body),
    });
    if (!response.ok) alert('Request failed: ' + response.status + ' ' + (await response.text()));
  };

  $('place').onsubmit = (event) => {
    event.preventDefault();
    void send('/orders', { item: $('item').value, quantity: Number($('quantity').value) });
  };

  // The list first, then the stream from exactly where the list was read: orders placed in
  // between arrive once, none twice (docs/streams.md).
  loadRecent().then(
    (position) => {
      if (!lastEventId && position) lastEventId = position;
      connect();
    },
    () => connect(),
  );
})();
</script>
</body>
</html>
`;
