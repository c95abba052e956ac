// zhost/test/client.test.js — the Node client against a real zhost-broker (node --test).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const zhost = require('..');
const { startBroker, keygen, BIN, haveBroker } = require('./helpers');

const skip = haveBroker() ? false : 'no zhost-broker in ZHOST_BUILD_DIR';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function withBroker(flags, fn) {
  const b = await startBroker(flags);
  try { await fn(b); } finally { assert.strictEqual(await b.stop(), 0, 'broker exits 0 after SIGTERM'); }
}

// an echo proc is ready once the agent lists it as ready
async function waitReady(c, name) {
  for (let i = 0; i < 100; i++) {
    const { procs } = await c.agentCall('list');
    if (procs.some((p) => p.name === name && p.status === 'ready')) return;
    await sleep(50);
  }
  throw new Error(name + ' never ready');
}

test('attach, request to echo, BYE detach', { skip, timeout: 30000 }, () =>
  withBroker(['--spawn', 'e1=' + BIN('zhost-echo')], async (b) => {
    const c = await zhost.attach(b.frontend, { label: 'nodetest' });
    assert.match(c.address, /^nodetest<[1-9a-km-zA-HJ-NP-Z]+>@tcp:\/\/127\.0\.0\.1:\d+$/);
    assert.strictEqual(c.heartbeatMs, 1000);
    assert.strictEqual(typeof c.incarnation, 'bigint');
    await waitReady(c, 'e1');
    const r = await c.request(`echo.e1:1@${b.ep}`, ['hi']);
    assert.deepStrictEqual(r.parts.map(String), [`echo.e1@${b.ep}`]);
    const r2 = await c.request(`echo.e1:2@${b.ep}`, ['a', Buffer.alloc(10000, 7)]);
    assert.strictEqual(r2.parts.length, 2);
    assert.strictEqual(r2.parts[1].length, 10000);
    assert.strictEqual(await c.close(), true, 'the broker answers BYE with BYE');
    await assert.rejects(c.request(`echo.e1:1@${b.ep}`, ['x']), { name: 'Closed' });
  }));

test('NO_SUCH_PROC is a rejected promise; undeliverable event for sends', { skip, timeout: 30000 }, () =>
  withBroker([], async (b) => {
    const c = await zhost.attach(b.frontend);
    await assert.rejects(c.request(`echo.ghost:1@${b.ep}`, ['hi']), (e) => {
      assert.ok(e instanceof zhost.Undeliverable);
      assert.strictEqual(e.code, 'NO_SUCH_PROC');
      assert.strictEqual(e.dest, `echo.ghost:1@${b.ep}`);
      assert.strictEqual(e.failures[0].code, 'NO_SUCH_PROC');
      assert.deepStrictEqual(e.payload.map(String), ['hi']);
      return true;
    });
    const got = new Promise((resolve) => c.once('undeliverable', resolve));
    const seq = await c.send(`echo.ghost:1@${b.ep}`, ['fire'], { undeliverable: true });
    const e = await got;
    assert.strictEqual(e.code, 'NO_SUCH_PROC');
    assert.strictEqual(e.meta.seq, seq);
    // without the flag, nothing comes back
    let late = null;
    c.once('undeliverable', (x) => { late = x; });
    await c.send(`echo.ghost:1@${b.ep}`, ['quiet']);
    await sleep(300);
    assert.strictEqual(late, null);
    await c.close();
  }));

test('a request without an answer times out', { skip, timeout: 30000 }, () =>
  withBroker([], async (b) => {
    const c = await zhost.attach(b.frontend);
    const other = await zhost.attach(b.frontend, { label: 'silent' });
    other.port(1, () => {});      // takes requests, never answers
    const t0 = Date.now();
    await assert.rejects(c.request(`client.${other.id}:1@${b.ep}`, ['?'], { timeout: 300 }), { name: 'TimeoutError', code: 'TIMEOUT' });
    assert.ok(Date.now() - t0 >= 290);
    // a port nobody listens on is NO_SUCH_PORT, bounced by the client library itself
    await assert.rejects(c.request(`client.${other.id}:9@${b.ep}`, ['?']), { code: 'NO_SUCH_PORT' });
    await other.close();
    await c.close();
  }));

test('clients talk to each other (ports, reply)', { skip, timeout: 30000 }, () =>
  withBroker([], async (b) => {
    const srv = await zhost.attach(b.frontend, { label: 'srv' });
    srv.port(1, (m) => srv.send(m.meta.reply, ['pong:' + m.parts[0]], { meta: { seq: m.meta.seq } }));
    const c = await zhost.attach(b.frontend);
    const r = await c.request(`client.${srv.id}:1@${b.ep}`, ['x']);
    assert.strictEqual(String(r.parts[0]), 'pong:x');
    assert.strictEqual(r.src, srv.actorAddress);
    await srv.close(); await c.close();
  }));

test('heartbeats keep a quiet connection alive past 3x heartbeat', { skip, timeout: 30000 }, () =>
  withBroker(['--heartbeat', '200ms'], async (b) => {
    const c = await zhost.attach(b.frontend);
    assert.strictEqual(c.heartbeatMs, 200);
    let dead = false;
    c.on('dead', () => { dead = true; });
    await sleep(1500);        // 7.5 heartbeats of application silence
    assert.strictEqual(dead, false);
    const other = await zhost.attach(b.frontend);
    other.port(1, (m) => other.send(m.meta.reply, ['ok'], { meta: { seq: m.meta.seq } }));
    // still routed: the broker kept us (a dropped client would be PROC_GONE / 401)
    const r = await other.request(`client.${c.id}:5@${b.ep}`, ['x']).catch((e) => e);
    assert.strictEqual(r.code, 'NO_SUCH_PORT', 'our library answered, so the route is alive');
    assert.strictEqual((await c.ping()).ok, true);
    assert.ok(c.counters.pingsSent + c.counters.pongsSent >= 3, JSON.stringify(c.counters));

    // the control: a raw DEALER that attaches and then says nothing is dropped
    const zmq = require('zeromq');
    const raw = new zmq.Dealer({ linger: 0 });
    raw.connect(b.frontend);
    await raw.send(zhost.protocol.encodeControl(zhost.protocol.CMD.ATTACH, { label: 'mute' }));
    let rawId = null;
    while (!rawId) {
      const m = zhost.protocol.decodeMessage(await raw.receive());
      if (m.cmd === zhost.protocol.CMD.BOOTSTRAP) rawId = zhost.protocol.parseAddress(m.body.proc).proc;
    }
    await sleep(1500);
    const gone = await other.request(`client.${rawId}:5@${b.ep}`, ['x']).catch((e) => e);
    assert.strictEqual(gone.code, 'PROC_GONE', 'a client silent for 3 heartbeats is dropped');
    raw.close();
    await other.close(); await c.close();
  }));

test('a dead broker is detected (dead event)', { skip, timeout: 30000 }, async () => {
  const b = await startBroker(['--heartbeat', '200ms']);
  const c = await zhost.attach(b.frontend);
  const dead = new Promise((resolve) => c.once('dead', resolve));
  const t0 = Date.now();
  await b.kill();
  const e = await dead;
  assert.strictEqual(e.code, 'BROKER_DEAD');
  assert.ok(Date.now() - t0 < 3000);
  await c.close('bye', { timeout: 100 });
});

test('watch against the real broker: the snapshot, then a proc stopped by zhost-ctl', { skip, timeout: 30000 }, () =>
  withBroker(['--spawn', 'e1=' + BIN('zhost-echo')], async (b) => {
    const c = await zhost.attach(b.frontend);
    let w = null;
    for (let i = 0; i < 100; i++) { // --spawn: e1 is ready soon after the broker
      w = await c.watch();
      if (w.snapshot.some((p) => p.name === 'e1' && p.status === 'ready')) break;
      await w.close();
      w = null;
      await sleep(50);
    }
    assert.ok(w, 'e1 never ready');
    const stop = spawnSync(BIN('zhost-ctl'), ['--runtime-dir', b.runtimeDir, 'stop', 'e1'], { encoding: 'utf8' });
    assert.strictEqual(stop.status, 0, stop.stderr);
    const items = [];
    for await (const item of w) {
      items.push(item);
      if (items.length === 3) break; // the snapshot, ready→stopping, stopping→stopped
    }
    assert.deepStrictEqual(items.slice(1).map((e) => [e.event, e.name, e.from, e.to]),
      [['proc', 'e1', 'ready', 'stopping'], ['proc', 'e1', 'stopping', 'stopped']]);
    assert.strictEqual(items[2].exit_code, 0);
    assert.strictEqual(w.closed, true);
    assert.strictEqual((await c.ping()).ok, true, 'the client is fine afterwards');
    await c.close();
  }));

test('CURVE: an allowed key attaches, a refused one fails at once naming the cause', { skip, timeout: 30000 }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zhost-node-keys-'));
  const keys = path.join(tmp, 'keys'), allow = path.join(tmp, 'allow');
  keygen(keys, 'broker', 'alice', 'mallory');
  fs.mkdirSync(allow);
  fs.copyFileSync(path.join(keys, 'alice.key'), path.join(allow, 'alice.key'));
  try {
    await withBroker(['--curve-secret', path.join(keys, 'broker.key_secret'), '--curve-allow', allow], async (b) => {
      const alice = await zhost.attach(b.frontend, { curve: zhost.loadCurve(path.join(keys, 'broker.key'), path.join(keys, 'alice.key')) });
      assert.strictEqual((await alice.ping()).ok, true);
      const t0 = Date.now();
      await assert.rejects(zhost.attach(b.frontend, { timeout: 10000, curve: zhost.loadCurve(path.join(keys, 'broker.key'), path.join(keys, 'mallory.key')) }),
        (e) => {
          assert.ok(e instanceof zhost.HandshakeFailed, String(e));
          // usually the ZAP refusal; libzmq may instead close the connection first
          assert.ok(['handshake:error:auth', 'disconnect'].includes(e.event), e.event);
          assert.match(e.message, /refused this client's CURVE key|closed before it completed/);
          return true;
        });
      assert.ok(Date.now() - t0 < 3000, 'reported at once, not at the timeout');
      // no CURVE at all against a CURVE broker: also a handshake failure
      await assert.rejects(zhost.attach(b.frontend, { timeout: 10000 }), { name: 'HandshakeFailed' });
      assert.throws(() => zhost.loadCurve(path.join(keys, 'broker.key'), path.join(allow, 'alice.key')), /no secret key/);
      await alice.close();
    });
  } finally { fs.rmSync(tmp, { recursive: true, force: true }); }
});

test('watch: snapshot then events, as an async iterator and as events (a client plays the agent)', { skip, timeout: 30000 }, () =>
  withBroker([], async (b) => {
    const { pack, unpack } = zhost.protocol;
    const agent = await zhost.attach(b.frontend, { label: 'fakeagent', actor: 'host_agent' });
    const ops = [];
    agent.port(1, (m) => {
      const req = unpack(m.parts[0]);
      ops.push(req.op);
      const to = m.meta.reply, seq = m.meta.seq;
      if (req.op === 'watch') {
        agent.send(to, [pack({ ok: true, procs: [{ name: 'e1', proc: 'e1@x', status: 'ready', pid: 1 }] })], { meta: { seq } });
        agent.send(to, [pack({ event: 'proc', name: 'e2', proc: 'e2@x', from: 'starting', to: 'ready', pid: 2 })], { meta: { seq } });
        agent.send(to, [pack({ event: 'peer', endpoint: 'tcp://h:1', state: 'up' })], { meta: { seq } });
      } else agent.send(to, [pack({ ok: true })], { meta: { seq } });
    });
    const c = await zhost.attach(b.frontend);
    c.agentAddress = agent.actorAddress;
    const w = await c.watch();
    const seen = [];
    w.on('event', (e) => seen.push(e.event));
    assert.deepStrictEqual(w.snapshot.map((p) => p.name), ['e1']);
    const items = [];
    for await (const item of w) {
      items.push(item);
      if (items.length === 3) break;      // break ends the watch: `unwatch` is sent
    }
    assert.deepStrictEqual(items[0].procs.map((p) => p.name), ['e1']);
    assert.strictEqual(items[1].event, 'proc');
    assert.strictEqual(items[1].to, 'ready');
    assert.strictEqual(items[2].state, 'up');
    assert.deepStrictEqual(seen, ['proc', 'peer']);
    for (let i = 0; i < 50 && ops.length < 2; i++) await sleep(20);
    assert.deepStrictEqual(ops, ['watch', 'unwatch']);
    assert.strictEqual(w.closed, true);
    await c.close(); await agent.close();
  }));

test('CURVE: a refusal on a later reconnect is a handshakeFailed event', { skip, timeout: 30000 }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zhost-node-keys-'));
  const keys = path.join(tmp, 'keys'), allow = path.join(tmp, 'allow'), none = path.join(tmp, 'none');
  keygen(keys, 'broker', 'alice', 'mallory');
  fs.mkdirSync(allow); fs.mkdirSync(none);
  fs.copyFileSync(path.join(keys, 'alice.key'), path.join(allow, 'alice.key'));
  fs.copyFileSync(path.join(keys, 'mallory.key'), path.join(none, 'mallory.key'));
  const secret = path.join(keys, 'broker.key_secret');
  let b2 = null;
  try {
    const b1 = await startBroker(['--curve-secret', secret, '--curve-allow', allow]);
    const c = await zhost.attach(b1.frontend, { curve: zhost.loadCurve(path.join(keys, 'broker.key'), path.join(keys, 'alice.key')) });
    const refused = new Promise((resolve) => c.once('handshakeFailed', resolve));
    await b1.kill();
    b2 = await startBroker(['--curve-secret', secret, '--curve-allow', none], { frontend: b1.frontend });
    const e = await refused;
    assert.ok(e instanceof zhost.HandshakeFailed);
    assert.strictEqual(e.event, 'handshake:error:auth');
    await c.close('bye', { timeout: 100 });
  } finally {
    if (b2) assert.strictEqual(await b2.stop(), 0);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
