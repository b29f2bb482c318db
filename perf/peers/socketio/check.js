'use strict';
// Wire check for the Socket.IO peer, speaking raw Engine.IO v4 / Socket.IO v5
// framing over a plain WebSocket exactly as the Rust load generator does (no
// socket.io-client). Needs two running processes (./start.sh).
//
//   node check.js [PORT_A [PORT_B]] [--ping]
//
// --ping additionally waits for a server ping ("2"), answers "3", and checks
// the connection survives past pingInterval + pingTimeout (about 50 s).
// Exit 0 when every check passed, 1 otherwise.

const WebSocket = require('ws');

const args = process.argv.slice(2);
const withPing = args.includes('--ping');
const ports = args.filter((a) => !a.startsWith('--'));
const HOST = process.env.HOST || '127.0.0.1';
const PORT_A = Number(ports[0] || 3001);
const PORT_B = Number(ports[1] || 3002);
const STEP_TIMEOUT_MS = 5000;
const OVERALL_TIMEOUT_MS = withPing ? 90000 : 30000;

let passed = 0;
let failed = 0;
function ok(name, detail) {
  passed++;
  console.log(`ok   ${name}${detail ? ' — ' + detail : ''}`);
}
function fail(name, detail) {
  failed++;
  console.log(`FAIL ${name}${detail ? ' — ' + detail : ''}`);
}

// A raw Engine.IO client: queues incoming text frames, answers pings.
class RawClient {
  constructor(label, port, userId) {
    this.label = label;
    this.port = port;
    this.userId = userId;
    this.queue = [];
    this.waiters = [];
    this.pings = 0;
    this.closed = null;
    const q = userId === undefined ? '' : `&user_id=${encodeURIComponent(userId)}`;
    this.url = `ws://${HOST}:${port}/socket.io/?EIO=4&transport=websocket${q}`;
    this.ws = new WebSocket(this.url, { perMessageDeflate: false });
    this.ws.on('message', (data, isBinary) => {
      const text = isBinary ? `<binary ${data.length} bytes>` : data.toString('utf8');
      if (text === '2') {
        // Engine.IO v4: the server pings, the client answers.
        this.pings++;
        this.ws.send('3');
        return;
      }
      this.push(text);
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.push(null);
    });
    this.ws.on('error', (err) => {
      this.closed = this.closed || { error: err.message };
      this.push(null);
    });
  }

  push(frame) {
    const w = this.waiters.shift();
    if (w) w(frame);
    else this.queue.push(frame);
  }

  // Next text frame (null when the socket closed), or reject after a timeout.
  next(timeoutMs = STEP_TIMEOUT_MS) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(done);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`${this.label}: no frame within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (frame) => {
        clearTimeout(t);
        resolve(frame);
      };
      this.waiters.push(done);
    });
  }

  send(text) {
    this.ws.send(text);
  }

  close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close();
    }
  }
}

// open (0{...}) -> send 40 -> expect 40{"sid":...}
async function handshake(c) {
  const open = await c.next();
  if (typeof open !== 'string' || !open.startsWith('0{')) {
    throw new Error(`${c.label}: expected Engine.IO open "0{...}", got ${JSON.stringify(open)} ${JSON.stringify(c.closed)}`);
  }
  const info = JSON.parse(open.slice(1));
  c.send('40');
  const connect = await c.next();
  if (typeof connect !== 'string' || !connect.startsWith('40{')) {
    throw new Error(`${c.label}: expected Socket.IO connect "40{...}", got ${JSON.stringify(connect)}`);
  }
  const ack = JSON.parse(connect.slice(2));
  if (typeof ack.sid !== 'string') throw new Error(`${c.label}: connect ack without sid: ${connect}`);
  return { info, ack, open, connect };
}

function parseEvent(frame) {
  if (typeof frame !== 'string' || !frame.startsWith('42')) return null;
  try {
    return JSON.parse(frame.slice(2));
  } catch {
    return null;
  }
}

// Wait for the next 42["message",...] on c (skipping nothing: any other frame is a failure).
async function expectMessage(c, want) {
  const frame = await c.next();
  const ev = parseEvent(frame);
  if (!ev || ev[0] !== 'message') {
    throw new Error(`${c.label}: expected 42["message",...], got ${JSON.stringify(frame)}`);
  }
  const m = ev[1] || {};
  for (const k of ['sender_id', 'reciever_id', 'payload']) {
    if (m[k] !== want[k]) throw new Error(`${c.label}: ${k} is ${JSON.stringify(m[k])}, want ${JSON.stringify(want[k])}`);
  }
  return frame;
}

async function expectSilence(c, ms) {
  try {
    const frame = await c.next(ms);
    throw new Error(`${c.label}: unexpected frame ${JSON.stringify(frame)}`);
  } catch (e) {
    if (e.message.includes('no frame within')) return;
    throw e;
  }
}

function sendFrame(to, payload) {
  return '42' + JSON.stringify(['send', { reciever_id: to, payload }]);
}

async function step(name, fn) {
  try {
    const detail = await fn();
    ok(name, detail);
    return true;
  } catch (e) {
    fail(name, e.message);
    return false;
  }
}

async function httpJson(port, path) {
  const res = await fetch(`http://${HOST}:${port}${path}`);
  const body = await res.text();
  return { status: res.status, body };
}

async function main() {
  const run = Date.now().toString(36);
  const userA = `a-${run}`;
  const userB = `b-${run}`;
  const userC = `c-${run}`;
  const clients = [];
  const mk = (label, port, uid) => {
    const c = new RawClient(label, port, uid);
    clients.push(c);
    return c;
  };
  console.log(`check: A=${userA} on :${PORT_A}, B=${userB} on :${PORT_B}, C=${userC} on :${PORT_A}`);

  try {
    for (const p of [PORT_A, PORT_B]) {
      await step(`GET /healthz on :${p}`, async () => {
        const r = await httpJson(p, '/healthz');
        if (r.status !== 200) throw new Error(`status ${r.status}`);
        return '200';
      });
      await step(`GET /stats on :${p}`, async () => {
        const r = await httpJson(p, '/stats');
        const s = JSON.parse(r.body);
        for (const k of ['pid', 'connections', 'rss', 'heapUsed']) {
          if (typeof s[k] !== 'number') throw new Error(`missing ${k}: ${r.body}`);
        }
        return r.body;
      });
    }
    const pidA = JSON.parse((await httpJson(PORT_A, '/stats')).body).pid;
    const pidB = JSON.parse((await httpJson(PORT_B, '/stats')).body).pid;
    await step('the two ports are two processes', async () => {
      if (pidA === pidB) throw new Error(`both report pid ${pidA}`);
      return `pids ${pidA} and ${pidB}`;
    });

    const a = mk('A', PORT_A, userA);
    const b = mk('B', PORT_B, userB);
    const c = mk('C', PORT_A, userC);
    for (const cl of [a, b, c]) {
      const good = await step(`${cl.label} handshake on :${cl.port} (0{..} -> 40 -> 40{"sid":..})`, async () => {
        const h = await handshake(cl);
        return `open ${h.open} | connect ${h.connect}`;
      });
      if (!good) throw new Error('handshake failed; stopping');
    }

    await step(`A(:${PORT_A}) -> B(:${PORT_B}) across processes via Redis`, async () => {
      const payload = `hello B from A ${run}`;
      const frame = sendFrame(userB, payload);
      const t0 = process.hrtime.bigint();
      a.send(frame);
      const got = await expectMessage(b, { sender_id: userA, reciever_id: userB, payload });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      return `sent ${frame} | B received ${got} in ${ms.toFixed(2)} ms`;
    });

    await step(`B(:${PORT_B}) -> A(:${PORT_A}) across processes via Redis`, async () => {
      const payload = `hello A from B ${run}`;
      const frame = sendFrame(userA, payload);
      b.send(frame);
      const got = await expectMessage(a, { sender_id: userB, reciever_id: userA, payload });
      return `A received ${got}`;
    });

    await step(`A -> C on the same process (:${PORT_A})`, async () => {
      const payload = { nested: true, n: 1 };
      a.send('42' + JSON.stringify(['send', { reciever_id: userC, payload }]));
      const frame = await c.next();
      const ev = parseEvent(frame);
      if (!ev || ev[0] !== 'message' || ev[1].sender_id !== userA || JSON.stringify(ev[1].payload) !== JSON.stringify(payload)) {
        throw new Error(`C got ${JSON.stringify(frame)}`);
      }
      return `C received ${frame}`;
    });

    await step('no echo to the sender, no leak to third parties', async () => {
      await Promise.all([expectSilence(a, 300), expectSilence(b, 300), expectSilence(c, 300)]);
      return 'A, B and C got nothing extra within 300 ms';
    });

    await step('a second connection of B (on :' + PORT_A + ') also receives (room per user)', async () => {
      const b2 = mk('B2', PORT_A, userB);
      await handshake(b2);
      const payload = `to both B sockets ${run}`;
      c.send(sendFrame(userB, payload));
      const want = { sender_id: userC, reciever_id: userB, payload };
      await Promise.all([expectMessage(b, want), expectMessage(b2, want)]);
      b2.close();
      return 'B on :' + PORT_B + ' and B2 on :' + PORT_A + ' both received';
    });

    await step('connect without user_id is refused with 44{...}', async () => {
      const x = mk('X', PORT_A, undefined);
      const open = await x.next();
      if (typeof open !== 'string' || !open.startsWith('0{')) throw new Error(`open: ${JSON.stringify(open)}`);
      x.send('40');
      const frame = await x.next();
      if (typeof frame !== 'string' || !frame.startsWith('44')) throw new Error(`got ${JSON.stringify(frame)}`);
      x.close();
      return `got ${frame}`;
    });

    await step('/stats counts the open connections', async () => {
      const sa = JSON.parse((await httpJson(PORT_A, '/stats')).body);
      const sb = JSON.parse((await httpJson(PORT_B, '/stats')).body);
      if (sa.connections < 2 || sb.connections < 1) throw new Error(`:${PORT_A} ${sa.connections}, :${PORT_B} ${sb.connections}`);
      return `:${PORT_A} ${sa.connections}, :${PORT_B} ${sb.connections} (includes other clients, if any)`;
    });

    if (withPing) {
      await step('server ping "2" answered with "3"; connection survives pingInterval + pingTimeout', async () => {
        const h = { pingInterval: 25000, pingTimeout: 20000 };
        const deadline = Date.now() + h.pingInterval + h.pingTimeout + 5000;
        while (a.pings === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
        if (a.pings === 0) throw new Error('no ping from the server');
        await new Promise((r) => setTimeout(r, h.pingTimeout + 2000));
        if (a.closed) throw new Error(`A closed: ${JSON.stringify(a.closed)}`);
        const payload = `after ping ${run}`;
        a.send(sendFrame(userB, payload));
        await expectMessage(b, { sender_id: userA, reciever_id: userB, payload });
        return `A saw ${a.pings} ping(s), still delivering`;
      });
    }
  } catch (e) {
    fail('check aborted', e.message);
  } finally {
    for (const cl of clients) cl.close();
  }

  console.log(`check: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

setTimeout(() => {
  console.log(`check: timed out after ${OVERALL_TIMEOUT_MS} ms`);
  console.log(`check: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS).unref();

main();
