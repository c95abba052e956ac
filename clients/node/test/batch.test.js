// zhost/test/batch.test.js — BATCH (§14) in the Node client: the codec, and the client
// against a fake broker (a zeromq Router in this test that speaks BATCH). No real broker.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const zmq = require('zeromq');
const zhost = require('..');
const P = require('../lib/protocol');
const { CMD } = P;

const EP = 'tcp://127.0.0.1:7100';           // the endpoint the fake broker advertises
const PROC = `fake<2>@${EP}`;
const ME = `client.fake<2>@${EP}`;           // the client's actor address
const PEER = `peer.w<3>@${EP}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- codec ---

test('codec: encodeBatch / decodeMessage round trip, elements as lone messages', () => {
  const a = P.encodeSend(`${ME.replace('@', ':1@')}`, PEER, ['one'], { seq: 1 });
  const b = P.encodeSend(PEER.replace('@', ':2@'), ME, [], null, { ttl: 3 });
  const r = P.encodeSend(ME, 'service@' + EP, ['lost'], { failures: [{ code: 'NO_SUCH_PROC', reason: 'r', at: EP }] }, { cmd: CMD.RETURN });
  const [frame, ...more] = P.encodeBatch([a, b[0], r]);
  assert.equal(more.length, 0, 'one frame');
  assert.deepEqual([...frame.subarray(0, 6)], [0x5a, 0x48, 1, 0x12, 0, 0]);
  assert.equal(frame.length, P.batchSize([a[0].length, b[0].length, r[0].length]));
  assert.equal(frame.readUInt32BE(6), a[0].length);
  const msg = P.decodeMessage([frame]);
  assert.equal(msg.cmd, CMD.BATCH);
  const lone = [a, b, r].map((f) => P.decodeMessage(f));
  assert.deepEqual(msg.elements.map(({ frames, ...m }) => [m, frames.map((x) => x.toString('hex'))]),
    lone.map(({ frames, ...m }) => [m, frames.map((x) => x.toString('hex'))]));
  assert.equal(msg.elements[1].ttl, 3);
  assert.equal(msg.elements[2].cmd, CMD.RETURN);
});

test('codec: encodeBatch refuses what is not batched', () => {
  assert.throws(() => P.encodeBatch([]), P.ProtocolError);
  assert.throws(() => P.encodeBatch([P.encodeSend(PEER.replace('@', ':1@'), ME, ['a', 'b'])]), /payload frames/);
  assert.throws(() => P.encodeBatch([P.encodeControl(CMD.PING)]), P.ProtocolError);
  assert.throws(() => P.encodeBatch([Buffer.alloc(0)]), P.ProtocolError);
});

test('codec: walkBatch keeps the elements before a fault and skips a bad element', () => {
  const a = P.encodeSend(PEER.replace('@', ':1@'), ME, ['a'])[0];
  const [frame] = P.encodeBatch([a, a]);
  const cut = frame.subarray(0, frame.length - 2);
  assert.throws(() => P.decodeMessage([cut]), P.ProtocolError);
  const w = P.walkBatch([cut]);
  assert.equal(w.elements.length, 1);
  assert.match(w.error.message, /claims/);
  const ping = P.header(CMD.PING);
  const mixed = Buffer.concat([P.header(CMD.BATCH), u32(a.length), a, u32(ping.length), ping, u32(a.length), a]);
  const w2 = P.walkBatch([mixed]);
  assert.equal(w2.error, null);
  assert.deepEqual(w2.elements.map((e) => e instanceof P.ProtocolError), [false, true, false]);
  assert.throws(() => P.decodeMessage([mixed]), /element 2/);
  assert.throws(() => P.walkBatch([Buffer.from([0x5a, 0x48, 1, 0x12, 1, 0])]), /ttl and flags/);
  assert.equal(P.walkBatch([P.header(CMD.BATCH)]).error.message, 'BATCH: no elements');
});

function u32(n) { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; }

// --- a fake broker ---

class Fake {
  constructor(boot) {
    this.boot = boot;            // BOOTSTRAP fields over the defaults
    this.router = new zmq.Router({ linger: 0 });
    this.got = []; this.waiters = []; this.attach = null; this.id = null;
  }
  async start() {
    await this.router.bind('tcp://127.0.0.1:0');
    this.endpoint = this.router.lastEndpoint;
    this._run();
    return this;
  }
  async _run() {
    try {
      for await (const [id, ...frames] of this.router) {
        const cmd = frames[0][3];
        if (cmd === CMD.ATTACH) {
          this.id = id; this.attach = P.decodeMessage(frames).body;
          const body = Object.assign({ proc: PROC, host: EP, agent: `host_agent.service@${EP}`, heartbeat_ms: 1000,
            liveness: 3, max_msg_bytes: 1 << 24, hwm: 1000, incarnation: 7 }, this.boot);
          await this.router.send([id, ...P.encodeControl(CMD.BOOTSTRAP, body)]);
        } else if (cmd === CMD.PING) {
          await this.router.send([id, ...P.encodeControl(CMD.PONG)]);
        } else if (cmd === CMD.BYE) {
          await this.router.send([id, ...P.encodeControl(CMD.BYE, { reason: 'bye' })]);
        } else {
          const w = this.waiters.shift();
          if (w) w(frames); else this.got.push(frames);
        }
      }
    } catch (e) { /* closed */ }
  }
  // the next SEND/RETURN/BATCH frames the client sent, or null after ms
  next(ms = 2000) {
    if (this.got.length) return Promise.resolve(this.got.shift());
    return new Promise((resolve) => {
      const w = (f) => { clearTimeout(t); resolve(f); };
      const t = setTimeout(() => { this.waiters.splice(this.waiters.indexOf(w), 1); resolve(null); }, ms);
      this.waiters.push(w);
    });
  }
  // the next frames, decoded: {cmd, elements (for a BATCH, else [the message])}
  async nextMsg(ms) {
    const f = await this.next(ms);
    if (!f) return null;
    const m = P.decodeMessage(f);
    return { cmd: m.cmd, frames: f, elements: m.cmd === CMD.BATCH ? m.elements : [m] };
  }
  send(frames) { return this.router.send([this.id, ...frames]); }
  close() { this.router.close(); }
}

// a client of the fake broker (heartbeats off: the tests count frames)
async function withFake(boot, fn, opts = {}) {
  const f = await new Fake(boot).start();
  const c = await zhost.attach(f.endpoint, Object.assign({ heartbeat: false, timeout: 3000 }, opts));
  try { await fn(f, c); } finally {
    await c.close('bye', { timeout: 500 });
    f.close();
  }
}

const toMe = (port, text, meta = { seq: 1 }) => P.encodeSend(`client.fake<2>:${port}@${EP}`, PEER, [text], meta, { undeliverable: true })[0];
const returnTo = (dest, text, meta = {}) => P.encodeSend(ME, `service@${EP}`, [text],
  { failures: [{ code: 'NO_SUCH_PROC', reason: 'gone', at: EP }], dest, meta }, { cmd: CMD.RETURN })[0];
const texts = (m) => m.elements.map((e) => String(e.parts[0]));
const BOOT = { batch: true, batch_max_bytes: 262144 };

test('ATTACH asks for batch by default; BOOTSTRAP decides; batch: false asks nothing', async () => {
  await withFake(BOOT, async (f, c) => {
    assert.equal(f.attach.batch, true);
    assert.equal(c.batch, true);
    assert.equal(c.batchMaxBytes, 262144);
  });
  await withFake({ batch: true, batch_max_bytes: 1000 }, async (f, c) => {
    assert.equal(f.attach.batch, undefined, 'no batch key');
    assert.equal(c.batch, false, 'not asked for: off even though BOOTSTRAP says true');
  }, { batch: false });
  await withFake({}, async (f, c) => {
    assert.equal(c.batch, false, 'BOOTSTRAP without batch');
    assert.equal(c.batchMaxBytes, 262144, 'batch_max_bytes defaults to 256 KiB');
  });
});

test('a received BATCH dispatches its elements in order: handlers, requests, undeliverable', async () => {
  await withFake(BOOT, async (f, c) => {
    const seen = [];
    c.port(1, (m) => seen.push('port1 ' + m.parts[0]));
    c.port(2, (m) => seen.push('port2 ' + m.parts[0]));
    c.on('undeliverable', (e) => seen.push(`undeliverable ${e.code} ${e.dest}`));
    const answered = c.request(`echo.e1:1@${EP}`, ['q']).then((m) => seen.push('answer ' + m.parts[0]));
    const req = await f.nextMsg();
    assert.equal(req.cmd, CMD.SEND, 'a request outside any step leaves at once, alone');
    const reply = req.elements[0].meta.reply;
    const answer = P.encodeSend(reply, `echo.e1@${EP}`, ['A'], { seq: req.elements[0].meta.seq })[0];
    await f.send(P.encodeBatch([toMe(1, 'a'), returnTo(`x.y:1@${EP}`, 'r'), answer, toMe(2, 'b'), toMe(1, 'c')]));
    await answered;
    await sleep(20);
    // in the order of the elements, as lone messages: the request settled by the third
    // element has its reaction run before the fourth is dispatched
    assert.deepEqual(seen, ['port1 a', `undeliverable NO_SUCH_PROC x.y:1@${EP}`, 'answer A', 'port2 b', 'port1 c']);
    assert.equal(c.counters.batchesReceived, 1);
    assert.equal(c.counters.messagesReceived, 5, 'counters count messages, not frames');
  });
});

test('lone and batched messages interleaved keep their order', async () => {
  await withFake(BOOT, async (f, c) => {
    const seen = [];
    let done;
    const all = new Promise((r) => { done = r; });
    c.port(1, (m) => { seen.push(String(m.parts[0])); if (seen.length === 6) done(); });
    await f.send([toMe(1, '1')]);
    await f.send(P.encodeBatch([toMe(1, '2'), toMe(1, '3')]));
    await f.send([toMe(1, '4')]);
    await f.send(P.encodeBatch([toMe(1, '5')]));
    await f.send([toMe(1, '6')]);
    await all;
    assert.deepEqual(seen, ['1', '2', '3', '4', '5', '6']);
  });
});

test('a malformed BATCH: the elements before the fault stand, a bad element is skipped', async () => {
  await withFake(BOOT, async (f, c) => {
    const seen = [];
    c.port(1, (m) => seen.push(String(m.parts[0])));
    const ping = P.header(CMD.PING);
    const a = toMe(1, 'a'), b = toMe(1, 'b');
    await f.send([Buffer.concat([P.header(CMD.BATCH), u32(a.length), a, u32(ping.length), ping, u32(b.length), b, u32(99), Buffer.from('xx')])]);
    await f.send([toMe(1, 'after')]);
    await sleep(100);
    assert.deepEqual(seen, ['a', 'b', 'after']);
  });
});

test('posts made in handlers leave as one BATCH frame when the step ends', async () => {
  await withFake(BOOT, async (f, c) => {
    c.port(1, (m) => { c.send(m.meta.reply, ['re ' + m.parts[0]]); });
    const reply = `peer.w<3>:5@${EP}`;
    await f.send(P.encodeBatch(['a', 'b', 'c'].map((t) => toMe(1, t, { seq: 1, reply }))));
    const m = await f.nextMsg();
    assert.equal(m.cmd, CMD.BATCH);
    assert.deepEqual(texts(m), ['re a', 're b', 're c']);
    assert.ok(m.elements.every((e) => e.dest === reply && e.src === ME));
    assert.equal(await f.nextMsg(100), null, 'nothing else');
    // a lone SEND whose handler posts three: one BATCH too
    c.port(2, (m) => { for (const i of [1, 2, 3]) c.send(m.meta.reply, [`${m.parts[0]}${i}`]); });
    await f.send([toMe(2, 'x', { seq: 2, reply })]);
    const m2 = await f.nextMsg();
    assert.equal(m2.cmd, CMD.BATCH);
    assert.deepEqual(texts(m2), ['x1', 'x2', 'x3']);
    // NO_SUCH_PORT bounces made while handling a BATCH are posts of the step as well
    await f.send(P.encodeBatch([toMe(9, 'p'), toMe(9, 'q')]));
    const m3 = await f.nextMsg();
    assert.equal(m3.cmd, CMD.BATCH);
    assert.deepEqual(m3.elements.map((e) => [e.cmd, e.meta.failures[0].code, String(e.parts[0])]),
      [[CMD.RETURN, 'NO_SUCH_PORT', 'p'], [CMD.RETURN, 'NO_SUCH_PORT', 'q']]);
    assert.equal(c.counters.batchesSent, 3);
  });
});

test('posts made by the reactions to answered requests leave together', async () => {
  await withFake(BOOT, async (f, c) => {
    const reqs = ['1', '2', '3'].map((t) => c.request(`echo.e1:1@${EP}`, [t]).then((m) => c.send(`peer.w<3>:7@${EP}`, ['after ' + m.parts[0]])));
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await f.nextMsg()).elements[0]);
    await f.send(P.encodeBatch(got.map((q) => P.encodeSend(q.meta.reply, `echo.e1@${EP}`, [q.parts[0]], { seq: q.meta.seq })[0])));
    const m = await f.nextMsg();
    assert.equal(m.cmd, CMD.BATCH);
    assert.deepEqual(texts(m), ['after 1', 'after 2', 'after 3']);
    await Promise.all(reqs);
  });
});

test('a post outside any step leaves at once as a lone SEND', async () => {
  await withFake(BOOT, async (f, c) => {
    const t0 = Date.now();
    const seq = await c.send(`peer.w<3>:1@${EP}`, ['now']);
    const m = await f.nextMsg();
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(m.cmd, CMD.SEND);
    assert.equal(m.frames.length, 1);
    assert.equal(m.elements[0].meta.seq, seq);
    await c.send(`peer.w<3>:1@${EP}`, ['again']);
    assert.equal((await f.nextMsg()).cmd, CMD.SEND);
    assert.equal(c.counters.batchesSent, 0);
  });
});

test('cork() .. flush(): held, then one BATCH; payload frames go alone, in order', async () => {
  await withFake(BOOT, async (f, c) => {
    const to = `peer.w<3>:1@${EP}`;
    c.cork();
    const sent = [c.send(to, ['a']), c.send(to, ['b'])];
    c.cork();                                   // nested
    sent.push(c.send(to, ['c']));
    await c.flush();
    assert.equal(await f.nextMsg(150), null, 'held while a cork() is open');
    await c.flush();
    const m = await f.nextMsg();
    assert.equal(m.cmd, CMD.BATCH);
    assert.deepEqual(texts(m), ['a', 'b', 'c']);
    assert.deepEqual(await Promise.all(sent), m.elements.map((e) => e.meta.seq), 'each send resolves with its seq');

    c.cork();
    c.send(to, ['d']); c.send(to, ['e']);
    c.send(to, ['f', 'frame']);                 // a payload frame of its own: never batched
    c.send(to, ['g']);
    c.send(to, [Buffer.alloc(5000, 0x41)]);     // first part over INLINE_MAX: a frame too
    c.flush();
    const d = await f.nextMsg(), e = await f.nextMsg(), g = await f.nextMsg(), h = await f.nextMsg();
    assert.equal(d.cmd, CMD.BATCH);
    assert.deepEqual(texts(d), ['d', 'e']);
    assert.equal(e.cmd, CMD.SEND);
    assert.deepEqual(e.elements[0].parts.map(String), ['f', 'frame']);
    assert.equal(g.cmd, CMD.SEND, 'one held message leaves as a lone SEND');
    assert.deepEqual(texts(g), ['g']);
    assert.equal(h.cmd, CMD.SEND);
    assert.equal(h.frames.length, 2);
  });
});

test('BATCH frames are split at batch_max_bytes; a message that does not fit goes alone', async () => {
  await withFake({ batch: true, batch_max_bytes: 1024 }, async (f, c) => {
    const to = `peer.w<3>:1@${EP}`;
    c.cork();
    for (let i = 0; i < 10; i++) c.send(to, [String(i).padEnd(200, '.')]);
    c.send(to, ['big'.padEnd(1500, '!')]);     // over 1024 with its head: alone
    c.send(to, ['last']);
    c.flush();
    const got = [];
    const frames = [];
    while (got.length < 12) {
      const m = await f.nextMsg();
      assert.ok(m, `only ${got.length} of 12 arrived`);
      assert.ok(m.frames[0].length <= 1024 || m.cmd === CMD.SEND, `a ${m.frames[0].length}-byte BATCH`);
      frames.push(m);
      got.push(...texts(m).map((t) => t.replace(/[.!]+$/, '')));
    }
    assert.deepEqual(got, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'big', 'last']);
    assert.ok(frames.filter((m) => m.cmd === CMD.BATCH).length >= 3, 'split into several BATCH frames');
    assert.equal(frames.find((m) => texts(m)[0].startsWith('big')).cmd, CMD.SEND);
    assert.equal(c.counters.messagesSent, 12);
  });
});

test('no BATCH when BOOTSTRAP says batch false: every post is a lone SEND (BATCHes are still read)', async () => {
  await withFake({ batch: false }, async (f, c) => {
    const reply = `peer.w<3>:5@${EP}`;
    c.port(1, (m) => { c.send(reply, ['1' + m.parts[0]]); c.send(reply, ['2' + m.parts[0]]); });
    await f.send([toMe(1, 'a')]);
    await f.send(P.encodeBatch([toMe(1, 'b')]));
    const got = [];
    const take = async (n) => {
      for (let i = 0; i < n; i++) {
        const m = await f.nextMsg();
        assert.equal(m.cmd, CMD.SEND);
        got.push(texts(m)[0]);
      }
    };
    await take(4);
    c.cork(); c.send(reply, ['c1']); c.send(reply, ['c2']);
    await take(1);                              // not held: nothing to gain without BATCH
    c.flush();
    await take(1);
    assert.deepEqual(got, ['1a', '2a', '1b', '2b', 'c1', 'c2']);
    assert.equal(c.counters.batchesSent, 0);
  });
});

test('close() sends what is held before its BYE', async () => {
  const f = await new Fake(BOOT).start();
  const c = await zhost.attach(f.endpoint, { heartbeat: false });
  c.cork();
  const p = c.send(`peer.w<3>:1@${EP}`, ['held']);
  c.send(`peer.w<3>:1@${EP}`, ['held too']);
  assert.equal(await c.close('bye', { timeout: 1000 }), true);
  await p;
  const m = await f.nextMsg();
  assert.equal(m.cmd, CMD.BATCH);
  assert.deepEqual(texts(m), ['held', 'held too']);
  f.close();
});

test('a new BOOTSTRAP without batch turns it off: what is held leaves as lone SENDs', async () => {
  await withFake(BOOT, async (f, c) => {
    const reattached = new Promise((r) => c.once('reattached', r));
    c.cork();
    c.send(`peer.w<3>:1@${EP}`, ['h1']); c.send(`peer.w<3>:1@${EP}`, ['h2']);
    await f.send(P.encodeControl(CMD.BOOTSTRAP, { proc: PROC, host: EP, heartbeat_ms: 1000, max_msg_bytes: 1 << 24, incarnation: 8 }));
    await reattached;
    assert.equal(c.batch, false);
    const got = [await f.nextMsg(), await f.nextMsg()];
    assert.deepEqual(got.map((m) => [m.cmd, texts(m)[0]]), [[CMD.SEND, 'h1'], [CMD.SEND, 'h2']]);
    c.flush();
  });
});

// --- against the real broker ---

const { startBroker, BIN, haveBroker } = require('./helpers');

const realSkip = haveBroker() ? false : 'no zhost-broker in ZHOST_BUILD_DIR';

test('real broker: a corked burst of requests to echo leaves batched and is answered in order', { skip: realSkip, timeout: 60000 }, async () => {
  const b = await startBroker(['--spawn', 'e1=' + BIN('zhost-echo')]);
  try {
    const c = await zhost.attach(b.frontend, { label: 'batcher' });
    try {
      assert.equal(c.batch, true, 'the broker negotiates BATCH');
      assert.equal(c.batchMaxBytes, 262144);
      for (let i = 0; ; i++) {                 // the echo proc may still be starting
        try { await c.request(`echo.e1:1@${b.ep}`, ['up'], { timeout: 500 }); break; } catch (e) { if (i > 50) throw e; await sleep(100); }
      }
      const N = 500;
      const order = [];
      c.cork();
      const answers = Array.from({ length: N }, (_, i) =>
        c.request(`echo.e1:2@${b.ep}`, [`r${i}`]).then((m) => { order.push(i); return m; }));   // port 2: parts back
      await c.flush();
      assert.ok(c.counters.batchesSent >= 1, 'the burst left as BATCH frames');
      const got = await Promise.all(answers);
      assert.deepEqual(order, Array.from({ length: N }, (_, i) => i), 'answered in order');
      got.forEach((m, i) => assert.deepEqual([m.src, ...m.parts.map(String)], [`echo.e1@${b.ep}`, `r${i}`]));
      assert.ok(c.counters.batchesReceived >= 1, `the answers came batched (${c.counters.batchesReceived} BATCH frames)`);
      // a lone request still works, and ping.js's path (no cork) is unchanged
      assert.deepEqual((await c.request(`echo.e1:1@${b.ep}`, ['lone'])).parts.map(String), [`echo.e1@${b.ep}`]);
    } finally { await c.close(); }
  } finally { assert.equal(await b.stop(), 0); }
});

test('frames already waiting are one receive step: the replies to three lone SENDs leave as one BATCH', async () => {
  await withFake(BOOT, async (f, c) => {
    const reply = `peer.w<3>:5@${EP}`;
    c.port(1, (m) => { c.send(reply, ['re ' + m.parts[0]]); });
    // hold the event loop while the three reach the client's socket (zeromq's I/O thread)
    for (const t of ['a', 'b', 'c']) await f.send([toMe(1, t, { seq: 1, reply })]);   // (resolved at once)
    const until = Date.now() + 200;
    while (Date.now() < until) { /* busy */ }
    const m = await f.nextMsg();
    assert.equal(m.cmd, CMD.BATCH);
    assert.deepEqual(texts(m), ['re a', 're b', 're c']);
  });
});

test('a step does not wait for a frame that is not there: held posts leave in the same turn', async () => {
  await withFake(BOOT, async (f, c) => {
    const reply = `peer.w<3>:5@${EP}`;
    let at = 0;
    c.port(1, (m) => {
      c.send(reply, ['re ' + m.parts[0]]); c.send(reply, ['re2 ' + m.parts[0]]);
      setImmediate(() => { at = at || -1; });     // the turn after the dispatch
    });
    // a socket that claims more is waiting, while receive() only resolves in a later turn
    const sock = c.sock;
    const later = () => new Promise((resolve, reject) => setImmediate(() => sock.receive().then(resolve, reject)));
    c.sock = new Proxy(sock, {
      get: (t, k) => (k === 'readable' ? true : k === 'receive' ? later : typeof t[k] === 'function' ? t[k].bind(t) : t[k]),
      set: (t, k, v) => { t[k] = v; return true; },
    });
    const flushed = c._flushQueue.bind(c);
    c._flushQueue = () => { if (c._queue.length) at = at || 1; return flushed(); };
    await f.send([toMe(1, 'x', { seq: 1, reply })]);   // (the loop's pending receive() is the real one)
    const m = await f.nextMsg();
    assert.equal(m.cmd, CMD.BATCH);
    assert.deepEqual(texts(m), ['re x', 're2 x']);
    assert.equal(at, 1, 'flushed before the next event-loop turn');
    c.sock = sock;
  });
});

test('real broker: a handler answering a batched burst answers in BATCH frames; --batch-max-bytes 0 turns it off', { skip: realSkip, timeout: 60000 }, async () => {
  for (const off of [false, true]) {
    const b = await startBroker(off ? ['--batch-max-bytes', '0'] : []);
    try {
      const server = await zhost.attach(b.frontend, { label: 'server' });
      const asker = await zhost.attach(b.frontend, { label: 'asker' });
      assert.equal(server.batch, !off);
      assert.equal(asker.batch, !off);
      server.port(1, (m) => { server.send(m.meta.reply, [m.parts[0]], { meta: { seq: m.meta.seq } }); });
      const N = 300;
      asker.cork();
      const answers = Array.from({ length: N }, (_, i) => asker.request(`client.${server.id}:1@${b.ep}`, [`q${i}`]));
      await asker.flush();
      const got = await Promise.all(answers);
      assert.deepEqual(got.map((m) => String(m.parts[0])), Array.from({ length: N }, (_, i) => `q${i}`));
      assert.equal(server.counters.messagesReceived, N);
      assert.equal(server.counters.messagesSent, N);
      if (off) {
        for (const c of [server, asker]) assert.deepEqual([c.counters.batchesSent, c.counters.batchesReceived], [0, 0]);
      } else {
        assert.ok(asker.counters.batchesSent >= 1);
        assert.ok(server.counters.batchesReceived >= 1, 'the broker forwarded the burst batched');
        assert.ok(server.counters.batchesSent >= 1, "the handler's answers left batched");
        assert.ok(server.counters.batchesSent < N / 2, `${server.counters.batchesSent} BATCH frames for ${N} answers`);
      }
      await asker.close(); await server.close();
    } finally { assert.equal(await b.stop(), 0); }
  }
});
