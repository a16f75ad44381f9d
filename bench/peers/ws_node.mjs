// SPDX-License-Identifier: MIT
// WebSocket echo server on Node's `ws` (pinned in package-lock.json), a peer for bench/run.
//
// Each message is sent back as it came, text as text and binary as binary, in order.
// Options match adieu-server's defaults where they differ from the library's: no
// permessage-deflate, messages up to 16 MiB.
//
//     node bench/peers/ws_node.mjs [--host 127.0.0.1] [--port 9104]
//
// SIGINT or SIGTERM closes every connection (1001) and exits 0.
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '9104' },
  },
});

const wss = new WebSocketServer({
  host: values.host,
  port: Number(values.port),
  perMessageDeflate: false,
  maxPayload: 16 * 1024 * 1024,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('error', (err) => {
  console.error(`ws_node: ${err.message}`);
  process.exit(1);
});

function stop() {
  for (const ws of wss.clients) ws.close(1001, 'server shutdown');
  wss.close(() => process.exit(0));
  // Peers that never answer the close frame must not keep the process alive.
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
