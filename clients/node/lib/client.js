// zhost/lib/client.js — the Promise-based ZHP/1 client: attach, send, request, watch, BYE.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const { EventEmitter } = require('events');
const zmq = require('zeromq');
const P = require('./protocol');
const { CMD } = P;

const ONCE_PORT_BASE = 2 ** 32;      // once ports (request replies) are numbered from here
const DEFAULT_HEARTBEAT_MS = 1000;
const LIVENESS = 3;
// A receive step goes on over frames that are already waiting (sock.readable), at most
// this many, before its posts leave (the broker's loop turn is bounded the same way).
const STEP_MAX_FRAMES = 64;

class ZhostError extends Error {}

// A message came back as a RETURN (§5): code/reason/at are the root cause (failures[0]).
class Undeliverable extends ZhostError {
  constructor(msg) {
    const meta = msg.meta || {};
    const failures = Array.isArray(meta.failures) ? meta.failures.filter((f) => f && typeof f === 'object') : [];
    const root = failures[0] || {};
    const code = typeof root.code === 'string' ? root.code : 'UNKNOWN';
    super(`${code}: ${root.reason || ''} (at ${root.at || '?'}, to ${meta.dest})`);
    this.name = 'Undeliverable';
    this.code = code;
    this.reason = root.reason || '';
    this.at = root.at || '';
    this.failures = failures;
    this.dest = meta.dest;
    this.meta = meta.meta && typeof meta.meta === 'object' ? meta.meta : {};
    this.payload = msg.parts;
    this.sender = msg.dest;
    this.bouncer = msg.src;
  }
}
class TimeoutError extends ZhostError { constructor(m) { super(m); this.name = 'TimeoutError'; this.code = 'TIMEOUT'; } }
class BrokerError extends ZhostError {
  constructor(body) {
    super(`ERROR ${body.code}: ${body.reason || ''}${body.dest ? ` (dest ${body.dest})` : ''}`);
    this.name = 'BrokerError';
    this.code = body.code; this.reason = body.reason || ''; this.dest = body.dest; this.seq = body.seq;
  }
}
class AgentError extends ZhostError {
  constructor(op, err, answer) {
    super(`${op}: ${err.code}: ${err.message}`);
    this.name = 'AgentError'; this.op = op; this.code = err.code; this.errorMessage = err.message; this.answer = answer;
  }
}
class HandshakeFailed extends ZhostError {
  constructor(endpoint, event, reason, error) {
    super(`${endpoint}: ${reason}`);
    this.name = 'HandshakeFailed'; this.code = 'HANDSHAKE_FAILED'; this.endpoint = endpoint; this.event = event; this.reason = reason; this.cause = error;
  }
}
class Closed extends ZhostError { constructor(reason) { super(`closed: ${reason}`); this.name = 'Closed'; this.code = 'CLOSED'; this.reason = reason; } }
class BrokerDead extends ZhostError {
  constructor(ms) { super(`the broker has been silent for ${ms} ms`); this.name = 'BrokerDead'; this.code = 'BROKER_DEAD'; }
}

function routingId() {
  const b = crypto.randomBytes(16);
  while (b[0] === 0) b[0] = crypto.randomBytes(1)[0];
  return b;
}

// Read a zcert file (as `zhost-ctl keygen` writes them): {publicKey, secretKey?} in Z85.
function readCert(path) {
  let text;
  try { text = fs.readFileSync(path, 'utf8'); } catch (e) { throw new Error(`${path}: no such certificate file`); }
  const get = (k) => { const m = text.match(new RegExp(`^\\s*${k}\\s*=\\s*"([^"]{40})"`, 'm')); return m ? m[1] : null; };
  const publicKey = get('public-key');
  if (!publicKey) throw new Error(`${path}: not a zcert certificate (no public-key)`);
  return { publicKey, secretKey: get('secret-key') };
}

// The curve option of attach() from certificate files: the broker's (NAME.key; public is
// enough) and this client's (NAME.key with NAME.key_secret beside it, either name).
function loadCurve(serverCert, clientCert) {
  const server = readCert(serverCert);
  const base = clientCert.endsWith('_secret') ? clientCert.slice(0, -7) : clientCert;
  const secretPath = base + '_secret';
  if (!fs.existsSync(secretPath)) {
    if (fs.existsSync(clientCert)) throw new Error(`${clientCert}: no secret key (is ${secretPath} beside it?)`);
    throw new Error(`${clientCert}: no such certificate file`);
  }
  const client = readCert(secretPath);
  if (!client.secretKey) throw new Error(`${clientCert}: no secret key in ${secretPath}`);
  return { serverKey: server.publicKey, publicKey: client.publicKey, secretKey: client.secretKey };
}

function handshakeReason(type, error, curve) {
  if (type === 'handshake:error:auth') {
    return `refused this client's CURVE key (ZAP status ${error && error.errno}): is its public certificate in the broker's --curve-allow or --curve-admin directory?`;
  }
  if (type === 'handshake:error:protocol') {
    if (error && /MECHANISM/i.test(String(error.code))) {
      return 'security mechanism mismatch: ' + (curve ? 'this client offers CURVE and the broker does not run it' : 'the broker requires CURVE (give attach() the curve option)');
    }
    return `ZMTP handshake failed (protocol error ${error && error.code})`;
  }
  return 'ZMTP handshake failed ' + (curve ? '(is the server key the broker\'s, and does it run CURVE?)' : '(does the broker require CURVE?)');
}

// An async iterator (and event emitter) over a §8 watch: the snapshot, then each event.
class Watch extends EventEmitter {
  constructor(client, portNumber) {
    super();
    this.client = client; this.portNumber = portNumber; this.snapshot = null; this.closed = false;
    this._queue = []; this._waiters = []; this._error = null;
  }
  _push(item) {
    if (this.closed) return;
    this.emit(item.event ? 'event' : 'snapshot', item);
    const w = this._waiters.shift();
    if (w) w.resolve({ value: item, done: false }); else this._queue.push(item);
  }
  _end(err) {
    if (this.closed) return;
    this.closed = true; this._error = err || null;
    this.client._ports.delete(this.portNumber);
    if (err && this.listenerCount('error')) this.emit('error', err);
    this.emit('end');
    for (const w of this._waiters.splice(0)) err ? w.reject(err) : w.resolve({ value: undefined, done: true });
  }
  next() {
    if (this._queue.length) return Promise.resolve({ value: this._queue.shift(), done: false });
    if (this.closed) return this._error ? Promise.reject(this._error) : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }
  async return() { await this.close(); return { value: undefined, done: true }; }
  [Symbol.asyncIterator]() { return this; }
  // Send `unwatch` and end the iteration.
  async close() {
    if (this.closed) return;
    this._end(null);
    if (this.client.closed === null) {
      try { await this.client.agentCall('unwatch', {}, { timeout: 5000 }); } catch (e) { /* the watch ends anyway */ }
    }
  }
}

class Client extends EventEmitter {
  constructor(endpoint, opts) {
    super();
    this.endpoint = endpoint;          // what we connect to
    this.label = opts.label || null;
    this.actorName = opts.actor || 'client';
    this.curve = opts.curve || null;
    this.address = null; this.id = null; this.host = null; this.agentAddress = null;
    this.bootstrap = null; this.heartbeatMs = DEFAULT_HEARTBEAT_MS; this.liveness = LIVENESS;
    this.maxMsgBytes = 16 << 20; this.incarnation = null;
    this.closed = null;                // the reason, once closed
    this.alive = true;
    this._heartbeat = opts.heartbeat !== false;
    this._seq = 0; this._once = ONCE_PORT_BASE;
    this._pending = new Map();         // once port number -> {resolve, reject, timer, seq}
    this._ports = new Map();           // port number -> handler(msg)
    this._sendChain = Promise.resolve();
    this._inflight = 0;
    this._lastSent = Date.now(); this._lastRecv = Date.now(); this._lastAttach = 0;
    this._byeReceived = false; this._byeWaiter = null;
    // messages counts SENDs/RETURNs (BATCH elements each count); batches counts BATCH frames
    this.counters = { pingsSent: 0, pongsSent: 0, pingsReceived: 0, messagesSent: 0, messagesReceived: 0, batchesSent: 0, batchesReceived: 0 };
    // BATCH (§14): asked for in ATTACH unless opts.batch is false; on once BOOTSTRAP says so
    this._batchWanted = opts.batch !== false;
    this.batch = false; this.batchMaxBytes = 0;
    this._stepOpen = false;            // a receive step: from a frame's dispatch to _endStep
    this._nextPending = 0;             // the step goes on over a frame already waiting:
    this._nextToken = 0;               // the token of that receive() (see _loop)
    this._corks = 0;                   // open cork() calls
    this._queue = [];                  // posts held for the step's end: {el, resolve, reject}
    this._queueBytes = P.HEADER_SIZE;  // the BATCH frame they would make
    const sockOpts = { routingId: routingId(), linger: 1000, receiveHighWaterMark: 0 };
    if (this.curve) Object.assign(sockOpts, { curveServerKey: this.curve.serverKey, curvePublicKey: this.curve.publicKey, curveSecretKey: this.curve.secretKey });
    this.sock = new zmq.Dealer(sockOpts);
  }

  get actorAddress() { return `${this.actorName}.${this.id}@${this.host}`; }
  portAddress(n) { return `${this.actorName}.${this.id}:${n}@${this.host}`; }

  // zeromq v6 allows one send at a time: sends are chained. A send can block (no pipe
  // while the broker is away or its handshake fails), so nothing waits on the chain
  // unbounded and heartbeats are not queued behind a blocked send.
  _sendFrames(frames) {
    this._inflight++;
    const p = this._sendChain.then(() => {
      if (this.sock.closed) throw new Closed(this.closed || 'socket closed');
      this._lastSent = Date.now();
      return this.sock.send(frames);
    });
    this._sendChain = p.catch(() => {}).then(() => { this._inflight--; });
    return p;
  }

  // --- posting (§14's client rule) ---
  // A SEND or RETURN (its frames). Inside a step (a receive step, or cork() .. flush())
  // on a connection that negotiated BATCH, a one-frame message that fits is held and
  // leaves with the others when the step ends; otherwise what is held goes first, then
  // this message, at once. Resolves once it is handed to the socket.
  _post(frames) {
    this.counters.messagesSent++;
    const el = frames.length === 1 ? frames[0] : null;
    if (this.batch && el && (this._stepOpen || this._corks > 0) && P.batchSize([el.length]) <= this.batchMaxBytes) {
      if (this._queueBytes + P.BATCH_LEN_SIZE + el.length > this.batchMaxBytes) this._flushQueue();   // split
      return new Promise((resolve, reject) => {
        this._queue.push({ el, resolve, reject });
        this._queueBytes += P.BATCH_LEN_SIZE + el.length;
      });
    }
    this._flushQueue();
    return this._sendFrames(frames);
  }

  // Hand what is held to the socket: one element alone as the lone message it is, more
  // as one BATCH frame (_post keeps it within batch_max_bytes).
  _flushQueue() {
    const q = this._queue;
    if (!q.length) return Promise.resolve();
    this._queue = []; this._queueBytes = P.HEADER_SIZE;
    if (q.length === 1 || !this.batch) {      // (a new BOOTSTRAP may have turned BATCH off)
      return Promise.all(q.map((e) => this._sendFrames([e.el]).then(e.resolve, (err) => { e.reject(err); }))).then(() => {});
    }
    const p = this._sendFrames(P.encodeBatch(q.map((e) => e.el)));
    this.counters.batchesSent++;
    p.then(() => { for (const e of q) e.resolve(); }, (err) => { for (const e of q) e.reject(err); });
    return p.catch(() => {});
  }

  // The end of a receive step: after the frame's dispatch and the promise reactions it
  // started (a microtask queued behind them), before control goes back to the event loop.
  _endStep() {
    this._stepOpen = false;
    if (this._corks === 0) this._flushQueue();
  }

  // Hold posts until flush() (nestable): they leave together as BATCH frames.
  cork() { this._check(); this._corks++; }

  // End one cork(); when none is left open, send what is held now (also inside a handler:
  // later posts of that step are held again until it ends). Resolves once handed over.
  flush() {
    if (this._corks > 0) this._corks--;
    return this._corks === 0 ? this._flushQueue() : Promise.resolve();
  }

  _sendAttach() {
    const body = { pid: process.pid, lang: 'node' };
    if (this.label) body.label = this.label;
    if (this._batchWanted) body.batch = true;
    this._lastAttach = Date.now();
    return this._sendFrames(P.encodeControl(CMD.ATTACH, body)).catch(() => {});
  }

  async _attach(timeoutMs) {
    let onEvent = null, succeeded = false;
    const watched = ['handshake', 'disconnect', 'handshake:error:auth', 'handshake:error:protocol', 'handshake:error:other'];
    const failed = new Promise((resolve, reject) => {
      onEvent = (ev) => {
        if (ev.type === 'handshake') { succeeded = true; return; }
        // as libzhost: a connection closed before its handshake completed is a refusal
        // too (which side notices first decides how a refusal shows); after it, the
        // broker going away (libzmq reconnects)
        if (ev.type === 'disconnect') {
          if (!succeeded) reject(new HandshakeFailed(ev.address || this.endpoint, ev.type, 'ZMTP handshake failed (the connection closed before it completed; ' + (this.curve ? 'is the server key the broker\'s, and is this key allowed?)' : 'does the broker require CURVE?)')));
          return;
        }
        reject(new HandshakeFailed(ev.address || this.endpoint, ev.type, handshakeReason(ev.type, ev.error, !!this.curve), ev.error));
      };
      for (const t of watched) this.sock.events.on(t, onEvent);
    });
    const booted = new Promise((resolve, reject) => { this._bootWaiter = { resolve, reject }; });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`no BOOTSTRAP from ${this.endpoint} within ${timeoutMs} ms`)), timeoutMs);
    });
    this.sock.connect(this.endpoint);
    this._loop();
    this._sendAttach();
    try {
      await Promise.race([booted, failed, timeout]);
    } finally {
      clearTimeout(timer);
      this._bootWaiter = null;
      for (const t of watched) this.sock.events.off(t, onEvent);
    }
    this._timer = setInterval(() => this._tick(), Math.max(10, Math.floor(this.heartbeatMs / 4)));
    // later reconnects (e.g. a broker restarted with other keys) are reported as events
    const later = (ev) => this.emit('handshakeFailed', new HandshakeFailed(ev.address || this.endpoint, ev.type, handshakeReason(ev.type, ev.error, !!this.curve), ev.error));
    for (const t of ['handshake:error:auth', 'handshake:error:protocol', 'handshake:error:other']) this.sock.events.on(t, later);
  }

  // Each received frame is dispatched inside a receive step: posts made by handlers, and
  // by the promise reactions a dispatch starts (request() answers), are held. The step
  // ends in a microtask queued behind those reactions, so what it held leaves in the
  // same event-loop turn, before any I/O or timer: no added latency. When the next frame
  // is already waiting (sock.readable; receive() then resolves at once), the step goes
  // on over it, at most STEP_MAX_FRAMES; should that receive() not resolve within this
  // turn's microtasks after all, a fallback two microtasks later ends the step anyway.
  async _loop() {
    let inStep = 0;
    try {
      for (;;) {
        const frames = await this.sock.receive();
        this._nextPending = 0;
        this._lastRecv = Date.now();
        if (!this.alive) { this.alive = true; this.emit('alive'); }
        this._stepOpen = true;
        if (frames.length && frames[0].length >= P.HEADER_SIZE && frames[0][3] === CMD.BATCH) await this._onBatch(frames);
        else this._dispatch(frames);
        if (++inStep < STEP_MAX_FRAMES && !this.sock.closed && this.sock.readable) {
          const token = ++this._nextToken;
          this._nextPending = token;
          queueMicrotask(() => queueMicrotask(() => { if (this._nextPending === token) { inStep = 0; this._endStep(); } }));
          continue;
        }
        inStep = 0;
        queueMicrotask(() => this._endStep());
      }
    } catch (e) {
      if (this.closed === null && !this.sock.closed) this._fail(new Closed('receive failed: ' + e.message));
    }
  }

  _tick() {
    const now = Date.now();
    if (this._heartbeat && this.closed === null && this._inflight === 0 && now - this._lastSent >= this.heartbeatMs) {
      this.counters.pingsSent++;
      this._sendFrames(P.encodeControl(CMD.PING)).catch(() => {});
    }
    const limit = this.liveness * this.heartbeatMs;
    if (this._heartbeat && this.closed === null && now - this._lastRecv >= limit) {
      if (this.alive) { this.alive = false; this.emit('dead', new BrokerDead(now - this._lastRecv)); }
      // a broker silent for LIVENESS heartbeats may have restarted: ask again
      // (a live broker answers the same routing id with the same BOOTSTRAP)
      if (now - this._lastAttach >= limit) this._sendAttach();
    }
  }

  _dispatch(frames) {
    let msg;
    try { msg = P.decodeMessage(frames); } catch (e) { return; }    // not ZHP/1: dropped
    switch (msg.cmd) {
      case CMD.SEND: this.counters.messagesReceived++; return this._onSend(msg);
      case CMD.RETURN: this.counters.messagesReceived++; return this._onReturn(msg);
      case CMD.PING:
        this.counters.pingsReceived++; this.counters.pongsSent++;
        this._sendFrames(P.encodeControl(CMD.PONG)).catch(() => {});
        return;
      case CMD.PONG: return;
      case CMD.BOOTSTRAP: return this._onBootstrap(msg.body);
      case CMD.ERROR: return this._onError(msg.body);
      case CMD.BYE:
        this._byeReceived = true;
        if (this._byeWaiter) this._byeWaiter();
        else if (this.closed === null) this._fail(new Closed(String(msg.body.reason || 'bye')));
        return;
      default: return;
    }
  }

  // Each element in order, exactly as if it had come alone: one microtask between two
  // elements, as between lone frames already waiting (the loop's await), so the reactions
  // one element starts (e.g. the code after `await c.watch()`) run before the next. A bad
  // element is dropped as a lone one would be; a container fault drops the rest (the
  // elements before it stand).
  async _onBatch(frames) {
    let walk;
    try { walk = P.walkBatch(frames); } catch (e) { return; }
    this.counters.batchesReceived++;
    let first = true;
    for (const msg of walk.elements) {
      if (msg instanceof Error) continue;
      if (!first) await null;
      first = false;
      if (this.closed !== null) return;
      this.counters.messagesReceived++;
      if (msg.cmd === CMD.SEND) this._onSend(msg); else this._onReturn(msg);
    }
  }

  _onBootstrap(body) {
    let a;
    try { a = P.parseAddress(body.proc, 'proc'); } catch (e) { return; }   // unusable: ignored
    const previous = this.incarnation;
    this.bootstrap = body; this.address = body.proc; this.id = a.proc; this.host = a.endpoint;
    if (Number.isInteger(body.heartbeat_ms) && body.heartbeat_ms > 0) this.heartbeatMs = body.heartbeat_ms;
    if (Number.isInteger(body.liveness) && body.liveness > 0) this.liveness = body.liveness;
    if (Number.isInteger(body.max_msg_bytes)) this.maxMsgBytes = body.max_msg_bytes;
    // BATCH only where both said so; batch_max_bytes (default 256 KiB) bounds our frames
    const bmax = Number.isInteger(body.batch_max_bytes) && body.batch_max_bytes > 0 ? body.batch_max_bytes : P.BATCH_MAX_BYTES_DEFAULT;
    this.batchMaxBytes = Math.min(bmax, this.maxMsgBytes);
    this.batch = this._batchWanted && body.batch === true;
    if (!this.batch) this._flushQueue();
    this.incarnation = body.incarnation;
    this.agentAddress = typeof body.agent === 'string' ? body.agent : `host_agent.service@${this.host}`;
    if (this._bootWaiter) this._bootWaiter.resolve();
    else if (previous !== undefined && previous !== null && String(previous) !== String(body.incarnation)) this.emit('reattached', body);
  }

  _onError(body) {
    const err = new BrokerError(body);
    if (this._bootWaiter) { this._bootWaiter.reject(err); return; }
    if (err.code === 401 && this.closed === null) this._sendAttach();   // the broker forgot us
    if (Number.isInteger(body.seq)) {
      for (const [n, p] of this._pending) if (p.seq === body.seq) { this._settle(n, null, err); return; }
    }
    if (this.listenerCount('brokerError')) this.emit('brokerError', err);
  }

  _bounce(msg, code, reason) {
    if (!(msg.flags & P.F_RETURN_UNDELIVERABLE)) return;
    const meta = { failures: [{ code, reason, at: this.address }], dest: msg.dest, meta: msg.meta || {} };
    this._post(P.encodeSend(msg.src, this.actorAddress, msg.parts, meta, { cmd: CMD.RETURN })).catch(() => {});
  }

  _onSend(msg) {
    let a;
    try { a = P.parseAddress(msg.dest, 'port'); } catch (e) { return; }
    if (a.actor !== this.actorName) { this._bounce(msg, 'NO_SUCH_ACTOR', `no actor ${a.actor} on ${this.address}`); return; }
    if (this._pending.has(a.port)) { this._settle(a.port, msg, null); return; }
    const handler = this._ports.get(a.port);
    if (!handler) { this._bounce(msg, 'NO_SUCH_PORT', `no port ${a.port} on ${this.actorAddress}`); return; }
    handler(msg);
  }

  _onReturn(msg) {
    const err = new Undeliverable(msg);
    let n = null;
    try { if (typeof err.meta.reply === 'string') n = P.parseAddress(err.meta.reply, 'port').port; } catch (e) { n = null; }
    if (n !== null && this._pending.has(n)) { this._settle(n, null, err); return; }
    if (n !== null && this._ports.get(n) && this._ports.get(n).watch) { this._ports.get(n).watch._end(err); return; }
    this.emit('undeliverable', err);
  }

  _settle(n, msg, err) {
    const p = this._pending.get(n);
    if (!p) return;
    this._pending.delete(n);
    clearTimeout(p.timer);
    if (err) p.reject(err); else p.resolve(msg);
  }

  _fail(err) {
    if (this.closed !== null) return;
    this.closed = err.reason || err.message;
    for (const e of this._queue.splice(0)) e.reject(err);
    for (const n of [...this._pending.keys()]) this._settle(n, null, err);
    for (const h of this._ports.values()) if (h.watch) h.watch._end(err);
    clearInterval(this._timer);
    try { this.sock.close(); } catch (e) { /* already closed */ }
    this.emit('close', err);
  }

  _check() { if (this.closed !== null) throw new Closed(this.closed); }

  // Listen on port n of the client's actor: handler(message) for each SEND to it.
  port(n, handler) {
    if (!Number.isSafeInteger(n) || n < 0 || n >= ONCE_PORT_BASE) throw new RangeError('a port number is 0..2^32-1 (higher numbers are once ports)');
    if (handler) this._ports.set(n, handler); else this._ports.delete(n);
    return this.portAddress(n);
  }

  // SEND (fire and forget). Resolves with the message's seq once it is handed to the socket.
  async send(dest, parts = [], opts = {}) {
    this._check();
    P.parseAddress(String(dest), 'port');
    const meta = Object.assign({}, opts.meta || {});
    if (opts.reply) meta.reply = String(opts.reply);
    if (opts.headers) meta.headers = opts.headers;
    if (!Number.isInteger(meta.seq)) meta.seq = ++this._seq;
    const frames = P.encodeSend(dest, opts.src || this.actorAddress, Array.isArray(parts) ? parts : [parts], meta,
      { undeliverable: !!opts.undeliverable, ttl: opts.ttl === undefined ? P.DEFAULT_TTL : opts.ttl });
    const size = frames.reduce((s, f) => s + f.length, 0);
    if (size > this.maxMsgBytes) throw new RangeError(`message of ${size} bytes is over max_msg_bytes (${this.maxMsgBytes})`);
    await this._post(frames);
    return meta.seq;
  }

  // Request/reply: resolves with the answer (a message: .parts, .src, .meta); rejects with
  // Undeliverable (the RETURN), BrokerError, TimeoutError or Closed.
  request(dest, parts = [], opts = {}) {
    return new Promise((resolve, reject) => {
      this._check();
      const n = ++this._once;
      const seq = ++this._seq;
      const timeout = opts.timeout === undefined ? 5000 : opts.timeout;
      const p = { resolve, reject, seq, timer: null };
      p.timer = setTimeout(() => this._settle(n, null, new TimeoutError(`no answer from ${dest} within ${timeout} ms`)), timeout);
      this._pending.set(n, p);
      const meta = Object.assign({}, opts.meta || {}, { seq });
      this.send(dest, parts, { meta, reply: this.portAddress(n), headers: opts.headers, undeliverable: true })
        .catch((e) => this._settle(n, null, e));
    });
  }

  // One host-agent op (§8): resolves with the answer map; AgentError when ok is false.
  async agentCall(op, args = {}, opts = {}) {
    const answer = await this.request(agentPort(this.agentAddress), [P.pack(Object.assign({ op }, args))], opts);
    return checkAnswer(op, answer);
  }

  // §8 watch: a Watch (async iterator / emitter). Resolves after the snapshot arrived;
  // rejects with AgentError when the agent refuses the op (e.g. a broker without watch).
  watch(opts = {}) {
    this._check();
    const n = ++this._once;
    const w = new Watch(this, n);
    const seq = ++this._seq;
    const timeout = opts.timeout === undefined ? 5000 : opts.timeout;
    return new Promise((resolve, reject) => {
      let first = true;
      const timer = setTimeout(() => { this._ports.delete(n); reject(new TimeoutError(`no watch answer within ${timeout} ms`)); }, timeout);
      const handler = (msg) => {
        let answer;
        try { answer = P.unpack(msg.parts[0] || Buffer.alloc(0)); } catch (e) { answer = null; }
        if (first) {
          first = false; clearTimeout(timer);
          try { checkAnswer('watch', answer); } catch (e) { this._ports.delete(n); reject(e); return; }
          w.snapshot = answer.procs || [];
          w._push({ procs: w.snapshot });
          resolve(w);
        } else if (answer && typeof answer === 'object') w._push(answer);
      };
      handler.watch = w;
      this._ports.set(n, handler);
      // a RETURN of the watch request before its answer
      const origEnd = w._end.bind(w);
      w._end = (err) => { if (first) { first = false; clearTimeout(timer); this._ports.delete(n); reject(err); } origEnd(err); };
      this.send(agentPort(this.agentAddress), [P.pack({ op: 'watch' })], { meta: { seq }, reply: this.portAddress(n), undeliverable: true })
        .catch((e) => w._end(e));
    });
  }

  ping(opts) { return this.agentCall('ping', {}, opts); }

  // Clean BYE: wait (at most 3 heartbeats) for the broker's BYE so that everything sent
  // before is routed, then close. Resolves true when the broker confirmed.
  async close(reason = 'bye', opts = {}) {
    if (this.closed !== null) return this._byeReceived;
    const timeout = opts.timeout === undefined ? this.liveness * this.heartbeatMs : opts.timeout;
    let timer;
    const confirmed = new Promise((resolve) => {
      this._byeWaiter = () => resolve(true);
      timer = setTimeout(() => resolve(false), timeout);
    });
    this._corks = 0; this._flushQueue();   // what is held goes before the BYE
    this._sendFrames(P.encodeControl(CMD.BYE, { reason })).catch(() => {});
    const ok = this._byeReceived || await confirmed;
    clearTimeout(timer);
    clearInterval(this._timer);
    this.closed = reason;
    const err = new Closed(reason);
    for (const n of [...this._pending.keys()]) this._settle(n, null, err);
    for (const h of this._ports.values()) if (h.watch) h.watch._end(null);
    if (this._inflight) await Promise.race([this._sendChain, new Promise((r) => setTimeout(r, Math.min(timeout, 1000)))]);
    this.sock.linger = ok ? 0 : 1000;
    this.sock.close();
    this.emit('close', null);
    return ok;
  }
}

function agentPort(agent) {
  const a = P.parseAddress(agent, ['actor', 'port']);
  return `${a.actor}.${a.proc}:1@${a.endpoint}`;
}

function checkAnswer(op, answer) {
  if (answer && answer.parts) {
    try { answer = P.unpack(answer.parts[0] || Buffer.alloc(0)); } catch (e) { throw new ZhostError(`${op}: answer is not msgpack`); }
  }
  if (!answer || typeof answer !== 'object' || typeof answer.ok !== 'boolean') throw new ZhostError(`${op}: answer is not {ok: bool, ...}`);
  if (!answer.ok) throw new AgentError(op, answer.error || {}, answer);
  return answer;
}

// Attach to a broker frontend (or control socket). opts: label, actor, curve
// ({serverKey, publicKey, secretKey} in Z85, see loadCurve), timeout (ms), heartbeat.
async function attach(endpoint, opts = {}) {
  if (opts.label !== undefined && !/^[a-z](?:[a-z0-9_-]{0,61}[a-z0-9])?$/.test(opts.label)) throw new P.AddressError(`label: ${JSON.stringify(opts.label)} is not a label`);
  const c = new Client(endpoint, opts);
  try {
    await c._attach(opts.timeout === undefined ? 5000 : opts.timeout);
  } catch (e) {
    c.closed = e.message;
    c.sock.linger = 0;
    c.sock.close();
    throw e;
  }
  return c;
}

module.exports = { attach, loadCurve, readCert, Client, Watch, ZhostError, Undeliverable, TimeoutError, BrokerError,
  AgentError, HandshakeFailed, Closed, BrokerDead, ONCE_PORT_BASE };
