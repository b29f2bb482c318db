'use strict';
// Comparison peer for the distriSocks load tests: a minimal 1:1 chat server on
// Socket.IO v4 with the Redis adapter. Run two (or more) of these behind one
// Redis; a message sent to a user connected to another process crosses Redis
// pub/sub. Nothing is persisted, nothing is acknowledged. See README.md.

const http = require('node:http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

const PORT = parsePort(process.env.PORT);
const HOST = process.env.HOST || '127.0.0.1';
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

function parsePort(raw) {
  const n = Number(raw);
  if (!raw || !Number.isInteger(n) || n < 1 || n > 65535) {
    console.error(`server.js: env PORT must be a TCP port number, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

function log(msg) {
  console.log(`[socketio-peer pid=${process.pid} port=${PORT}] ${msg}`);
}

let io; // set in main(); the HTTP handler reads the connection count from it

function stats() {
  const m = process.memoryUsage();
  return {
    pid: process.pid,
    port: PORT,
    connections: io ? io.engine.clientsCount : 0,
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
  };
}

function sendJson(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(data),
    'cache-control': 'no-store',
  });
  res.end(data);
}

// Requests that are not for /socket.io/ land here (Socket.IO intercepts its own path).
function onHttpRequest(req, res) {
  const path = (req.url || '/').split('?')[0];
  if (req.method !== 'GET') {
    return sendJson(res, 405, { error: 'method not allowed' });
  }
  switch (path) {
    case '/healthz':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
      return res.end('ok\n');
    case '/stats':
      return sendJson(res, 200, stats());
    case '/gc':
      if (typeof global.gc !== 'function') {
        return sendJson(res, 501, { error: 'gc not exposed: start node with --expose-gc' });
      }
      global.gc();
      return sendJson(res, 200, stats());
    default:
      return sendJson(res, 404, { error: 'not found' });
  }
}

async function main() {
  const pubClient = createClient({ url: REDIS_URL });
  const subClient = pubClient.duplicate();
  for (const [name, c] of [['pub', pubClient], ['sub', subClient]]) {
    // node-redis reconnects by itself; log each distinct error once, not every retry.
    let last = '';
    c.on('error', (err) => {
      if (err.message !== last) log(`redis ${name} client error: ${err.message} (reconnecting)`);
      last = err.message;
    });
    c.on('ready', () => {
      if (last) log(`redis ${name} client reconnected`);
      last = '';
    });
  }
  // node-redis keeps retrying a refused connection; bound the start-up wait.
  let connectTimer;
  await Promise.race([
    Promise.all([pubClient.connect(), subClient.connect()]),
    new Promise((_, reject) => {
      connectTimer = setTimeout(() => reject(new Error(`redis at ${REDIS_URL} not reachable within 10s`)), 10000);
    }),
  ]);
  clearTimeout(connectTimer);

  const httpServer = http.createServer(onHttpRequest);
  io = new Server(httpServer, {
    transports: ['websocket'],
    perMessageDeflate: false,
    httpCompression: false,
    serveClient: false,
    // pingInterval / pingTimeout left at the Socket.IO defaults (25000 / 20000 ms).
    adapter: createAdapter(pubClient, subClient),
  });

  // The user id comes from the handshake query; without it the Socket.IO
  // CONNECT is refused (the client gets `44{"message":"user_id required"}`).
  io.use((socket, next) => {
    const uid = socket.handshake.query.user_id;
    if (typeof uid !== 'string' || uid.length === 0) {
      return next(new Error('user_id required'));
    }
    socket.data.userId = uid;
    next();
  });

  io.on('connection', (socket) => {
    const senderId = socket.data.userId;
    socket.join('user:' + senderId);

    socket.on('send', (msg) => {
      if (msg === null || typeof msg !== 'object') return;
      const rid = msg.reciever_id;
      if ((typeof rid !== 'string' && typeof rid !== 'number') || rid === '') return;
      const recieverId = String(rid);
      // Through the Redis adapter: delivered locally and published to Redis so
      // the other process(es) deliver to their own members of the room.
      io.to('user:' + recieverId).emit('message', {
        sender_id: senderId,
        reciever_id: recieverId,
        payload: msg.payload,
      });
    });
  });

  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(PORT, HOST, resolve);
  });
  log(`listening on http://${HOST}:${PORT} (redis ${REDIS_URL}, gc ${typeof global.gc === 'function' ? 'exposed' : 'not exposed'})`);

  let closing = false;
  const shutdown = (sig) => {
    if (closing) return;
    closing = true;
    log(`${sig}: shutting down`);
    const hard = setTimeout(() => process.exit(1), 5000);
    hard.unref();
    io.close(() => {
      Promise.allSettled([pubClient.quit(), subClient.quit()]).finally(() => process.exit(0));
    });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => {
  console.error(`server.js: failed to start on port ${PORT}: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
