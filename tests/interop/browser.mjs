// SPDX-License-Identifier: MIT
// Interop: headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core pinned
// in package-lock.json) opening WebSockets to adieu-server's demo app from a page. Run by
// tests/integration/test_35_interop.py as
//
//   node tests/interop/browser.mjs ws://127.0.0.1:PORT/ TIMEOUT_MS IDLE_MS
//
// The page is served by this script from 127.0.0.1 (a page on about:blank counts as public
// and Chromium's Local Network Access checks would block its connection to a loopback
// address; a loopback page talking to a loopback server is what a developer does). In that
// page: an echo round trip, a 1 MiB binary and a 1 MiB text message, then
// (IDLE_MS > 0) silence for 2.5 x IDLE_MS (the server pings after IDLE_MS and would close
// after 2 x IDLE_MS had the browser not answered with a pong; a page cannot send a ping
// itself), a message after it, a clean close 1000 started by the page, and a second socket
// closed by the server (the demo's `close`). Prints one JSON object; exit 0 if every step
// passed, 1 otherwise, 2 on the timeout.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, timeoutArg, idleArg] = process.argv.slice(2);
if (!url) {
  console.error('usage: node browser.mjs URL [TIMEOUT_MS] [IDLE_MS]');
  process.exit(2);
}
const timeoutMs = Number(timeoutArg || 60000);
const idleMs = Number(idleArg || 0);
const CHROMIUM = process.env.ADIEU_CHROMIUM || '/usr/bin/chromium';

const userDataDir = mkdtempSync(join(tmpdir(), 'adieu-chromium-'));
let context = null;
let exitCode = 1;
let result = { error: 'not started' };

const overall = setTimeout(async () => {
  console.log(JSON.stringify({ ...result, error: `timed out after ${timeoutMs} ms` }));
  try { rmSync(userDataDir, { recursive: true, force: true }); } catch { /* ignore */ }
  process.exit(2);
}, timeoutMs);

// The page: plain HTML from 127.0.0.1, every request answered and closed.
const PAGE = '<!doctype html><html><head><meta charset="utf-8"><title>adieu interop</title>'
  + '<link rel="icon" href="data:,"></head><body>adieu interop</body></html>';
const pageServer = createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', Connection: 'close' });
  res.end(PAGE);
});

try {
  await new Promise((resolve, reject) => {
    pageServer.once('error', reject);
    pageServer.listen(0, '127.0.0.1', resolve);
  });
  const pageUrl = `http://127.0.0.1:${pageServer.address().port}/`;
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: timeoutMs,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const page = context.pages()[0] || await context.newPage();
  await page.goto(pageUrl);
  result = await page.evaluate(async ({ url, idleMs }) => {
    const MiB = 1 << 20;
    const out = { userAgent: navigator.userAgent };

    function open() {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.binaryType = 'arraybuffer';
        const queue = [];
        const waiters = [];
        const push = (ev) => { const w = waiters.shift(); if (w) w(ev); else queue.push(ev); };
        ws.onmessage = (e) => push({ type: 'message', data: e.data });
        ws.onclose = (e) => push({ type: 'close', code: e.code, reason: e.reason, clean: e.wasClean });
        ws.onerror = () => push({ type: 'error' });
        ws.onopen = () => resolve({
          ws,
          next: () => (queue.length ? Promise.resolve(queue.shift())
            : new Promise((r) => waiters.push(r))),
        });
        setTimeout(() => reject(new Error('open timed out')), 10000);
      });
    }
    async function expectText(c, want) {
      const ev = await c.next();
      if (ev.type !== 'message' || typeof ev.data !== 'string') {
        throw new Error(`expected text, got ${ev.type} ${typeof ev.data}`);
      }
      if (ev.data !== want) throw new Error(`text reply differs (${ev.data.length} chars)`);
    }
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

    const a = await open();
    a.ws.send('hello');
    await expectText(a, 'hello/answer');
    out.echo = true;

    const big = new Uint8Array(MiB);
    for (let i = 0; i < MiB; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
    a.ws.send(big);
    let ev = await a.next();
    if (ev.type !== 'message' || !(ev.data instanceof ArrayBuffer)) {
      throw new Error(`expected binary, got ${ev.type}`);
    }
    const got = new Uint8Array(ev.data);
    if (got.length !== MiB || !got.every((b, i) => b === big[i])) {
      throw new Error(`binary reply differs (${got.length} bytes)`);
    }
    const bigText = 'y'.repeat(MiB);
    a.ws.send(bigText);
    await expectText(a, bigText + '/answer');
    out.mib = true;

    if (idleMs > 0) {
      // The page stays silent past the server's ping and its pong timeout.
      await sleep(2.5 * idleMs);
      if (a.ws.readyState !== WebSocket.OPEN) throw new Error('closed while idle: no pong?');
      a.ws.send('after idle');
      await expectText(a, 'after idle/answer');
      out.survived_idle = true;
    }

    a.ws.close(1000, 'bye');
    ev = await a.next();
    if (ev.type !== 'close' || ev.code !== 1000 || !ev.clean) {
      throw new Error(`clean close: ${JSON.stringify(ev)}`);
    }
    out.close = ev;

    const b = await open();
    b.ws.send('close');
    ev = await b.next();
    if (ev.type !== 'close' || ev.code !== 1000 || !ev.clean) {
      throw new Error(`server close: ${JSON.stringify(ev)}`);
    }
    out.server_close = ev;
    return out;
  }, { url, idleMs });
  exitCode = 0;
} catch (err) {
  result = { ...result, error: String(err && err.message || err) };
} finally {
  if (context) {
    try { await context.close(); } catch { /* ignore */ }
  }
  try { rmSync(userDataDir, { recursive: true, force: true }); } catch { /* ignore */ }
  pageServer.close();
}
clearTimeout(overall);
console.log(JSON.stringify(result));
process.exit(exitCode);
