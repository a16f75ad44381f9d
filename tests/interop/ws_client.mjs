// SPDX-License-Identifier: MIT
// Interop: Node's `ws` client (npm, pinned by package-lock.json) against adieu-server's
// demo app. Run by tests/integration/test_35_interop.py as
//
//   node tests/interop/ws_client.mjs ws://127.0.0.1:PORT/ TIMEOUT_MS IDLE_MS
//
// Two connections:
//   session       echo round trip (text `hello` -> `hello/answer`), a 1 MiB binary message
//                 echoed, a 1 MiB text message answered, a ping answered by a pong with
//                 the same payload, then (IDLE_MS > 0) silence until the server's keep-alive
//                 ping arrives (ws answers it by itself), a message after it, and a clean
//                 close 1000 started by us;
//   server_close  the demo's `close`: the server closes with 1000.
// Prints one JSON object per connection on stdout ({"case", "port", "code", ...}); exits 0
// when every step passed, 1 on a failed step (a JSON object with "error"), 2 on the timeout.
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

const [url, timeoutArg, idleArg] = process.argv.slice(2);
if (!url) {
  console.error('usage: node ws_client.mjs URL [TIMEOUT_MS] [IDLE_MS]');
  process.exit(2);
}
const timeoutMs = Number(timeoutArg || 30000);
const idleMs = Number(idleArg || 0);
const MiB = 1 << 20;

const overall = setTimeout(() => {
  console.log(JSON.stringify({ case: current, error: `timed out after ${timeoutMs} ms` }));
  process.exit(2);
}, timeoutMs);
let current = 'start';

function fail(msg) {
  throw new Error(`${current}: ${msg}`);
}

// A connection whose events are awaited one at a time.
function connect() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * MiB });
    const queue = [];
    const waiters = [];
    const push = (ev) => {
      const w = waiters.shift();
      if (w) w(ev);
      else queue.push(ev);
    };
    const conn = {
      ws,
      port: null,
      next() {
        return queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r));
      },
    };
    ws.on('upgrade', (res) => { conn.port = res.socket.localPort; });
    ws.on('open', () => resolve(conn));
    ws.on('message', (data, isBinary) => push({ type: 'message', data, isBinary }));
    ws.on('ping', (data) => push({ type: 'ping', data }));
    ws.on('pong', (data) => push({ type: 'pong', data }));
    ws.on('close', (code, reason) => push({ type: 'close', code, reason: reason.toString() }));
    ws.on('error', (err) => { push({ type: 'error', err: String(err) }); reject(err); });
  });
}

async function expectMessage(conn, want, isBinary) {
  const ev = await conn.next();
  if (ev.type !== 'message') fail(`expected a message, got ${JSON.stringify(ev).slice(0, 200)}`);
  if (ev.isBinary !== isBinary) fail(`message binary=${ev.isBinary}, expected ${isBinary}`);
  if (!Buffer.from(ev.data).equals(Buffer.from(want))) {
    fail(`reply differs (${ev.data.length} bytes, expected ${want.length})`);
  }
}

async function session() {
  current = 'session';
  const conn = await connect();
  const { ws } = conn;
  const out = { case: 'session', port: conn.port };

  ws.send('hello');
  await expectMessage(conn, 'hello/answer', false);

  const big = randomBytes(MiB);
  ws.send(big, { binary: true });
  await expectMessage(conn, big, true);

  const bigText = 'x'.repeat(MiB);
  ws.send(bigText);
  await expectMessage(conn, bigText + '/answer', false);

  ws.ping(Buffer.from('ping-from-node'));
  let ev = await conn.next();
  if (ev.type !== 'pong' || ev.data.toString() !== 'ping-from-node') {
    fail(`expected the pong, got ${JSON.stringify(ev).slice(0, 200)}`);
  }
  out.pong = true;

  if (idleMs > 0) {
    // silent: the server's keep-alive ping must come after about IDLE_MS; ws answers it
    const t0 = Date.now();
    ev = await conn.next();
    if (ev.type !== 'ping') fail(`expected the server's keep-alive ping, got ${ev.type}`);
    out.server_ping_after_ms = Date.now() - t0;
    ws.send('after the ping');
    await expectMessage(conn, 'after the ping/answer', false);
  }

  ws.close(1000, 'bye');
  ev = await conn.next();
  if (ev.type !== 'close') fail(`expected the close, got ${ev.type}`);
  out.code = ev.code;
  out.reason = ev.reason;
  if (ev.code !== 1000) fail(`close code ${ev.code}`);
  return out;
}

async function serverClose() {
  current = 'server_close';
  const conn = await connect();
  conn.ws.send('close');
  const ev = await conn.next();
  if (ev.type !== 'close') fail(`expected the server's close, got ${JSON.stringify(ev).slice(0, 200)}`);
  if (ev.code !== 1000) fail(`server closed with ${ev.code}, expected 1000`);
  return { case: 'server_close', port: conn.port, code: ev.code, reason: ev.reason };
}

try {
  console.log(JSON.stringify(await session()));
  console.log(JSON.stringify(await serverClose()));
  clearTimeout(overall);
  process.exit(0);
} catch (err) {
  console.log(JSON.stringify({ case: current, error: String(err && err.message || err) }));
  process.exit(1);
}
