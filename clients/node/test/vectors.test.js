// The shared ZHP/1 test vectors (tests/vectors/, see its README.md) read through
// lib/protocol.js: every frame vector decodes to what it says, or is refused; canonical
// ones the encoder can express re-encode to the same bytes; every address parses to its
// parts, or is refused; uid58 texts are accepted or refused inside an id.
//
// The client's decoder is not the broker's: it throws ProtocolError without a code and
// leaves some of the broker's checks to the broker. The vectors it accepts although the
// broker refuses them are listed in ACCEPTED, each asserted to be accepted, so a codec
// that grows stricter shows up here. No broker needed.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const P = require('../lib/protocol');

// tests/vectors of the repository, found by walking up from this file.
function vectorsDir() {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'tests', 'vectors');
    if (fs.existsSync(candidate) && fs.statSync(candidate).isDirectory()) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`no tests/vectors above ${__filename}`);
  }
}

// Loaded before any test is declared: a missing or empty file fails the run.
function load(name, format, ...keys) {
  const file = path.join(vectorsDir(), name);
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (doc.format !== format || doc.version !== 1) {
    throw new Error(`${file}: format ${doc.format} version ${doc.version}, want ${format} 1`);
  }
  for (const key of keys) {
    if (!Array.isArray(doc[key]) || doc[key].length === 0) throw new Error(`${file}: no vectors under ${key}`);
  }
  return doc;
}

const FRAMES = load('frames.json', 'zhost-test-vectors/frames', 'vectors').vectors;
const ADDRS = load('addresses.json', 'zhost-test-vectors/addresses', 'addresses', 'uid58');

// Vectors the broker refuses but this client's decoder accepts (tests/vectors/README.md).
const ACCEPTED = new Map([
  // header rules past magic and version
  ...['unknown-command-0x00', 'unknown-command-0x7f', 'unknown-command-0x13',
    'unknown-command-before-header-rules'].map((id) => [id, 'command byte not checked']),
  ...['control-header-7-bytes', 'head-control-command-as-head'].map((id) => [id, 'control header length not checked']),
  ...['control-nonzero-ttl', 'control-nonzero-flags'].map((id) => [id, 'control ttl/flags not checked']),
  ...['send-unknown-flag-bit', 'return-unknown-flag-bit'].map((id) => [id, 'unknown flag bits not checked']),
  ['send-1025-payload-frames', 'payload frame count not capped'],
  // bodies are generic maps
  ['body-non-string-key', 'integer map keys accepted'],
  ['body-key-twice', 'a repeated key is not refused'],
  ['body-string-4097', 'string length not capped'],
  ...['body-label-wrong-type', 'body-label-as-bin', 'body-pid-as-string', 'body-pid-beyond-int64',
    'body-heartbeat-negative', 'welcome-incarnation-string'].map((id) => [id, 'field types not checked']),
  ...['bootstrap-missing-incarnation', 'ready-missing-proc', 'ready-empty', 'hello-missing-endpoint',
    'error-missing-reason'].map((id) => [id, 'required fields not checked']),
  // decodeMessage does not parse the addresses of a head (parseAddress does)
  ...['send-dest-actor-address', 'send-dest-proc-address', 'send-dest-not-an-address',
    'send-dest-uppercase-label', 'send-dest-noncanonical-port', 'send-dest-noncanonical-uid',
    'send-dest-not-utf8-label', 'send-dest-nul-in-endpoint', 'send-src-port-address',
    'send-src-bad-endpoint', 'send-src-tcp-port-0', 'return-dest-port-address',
    'batch-element-bad-dest'].map((id) => [id, 'head addresses not parsed']),
  // the size limit is the broker's
  ['control-over-max-msg-bytes', 'size is the broker\'s check'],
]);

// Valid addresses whose parts this client gets wrong (tests/vectors/README.md).
const ADDR_WRONG = new Map([
  ['a.w:18446744073709551615@tcp://h:65535', 'port is a Number: exact only up to 2**53-1'],
]);

// JSON of the vectors -> the values this client encodes ({"$int"} -> BigInt).
function toJs(v) {
  if (Array.isArray(v)) return v.map(toJs);
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === '$int') return BigInt(v.$int);
    return Object.fromEntries(keys.map((k) => [k, toJs(v[k])]));
  }
  return v;
}

// A decoded msgpack value -> the JSON form of the vectors (BigInt -> number or {"$int"}).
function toJson(v) {
  if (typeof v === 'bigint') {
    return v >= -(2n ** 53n) && v <= 2n ** 53n ? Number(v) : { $int: v.toString() };
  }
  if (v instanceof Uint8Array) return { $bin: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(toJson);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJson(x)]));
  return v;
}

const frames = (vector) => vector.frames.map((h) => Buffer.from(h, 'hex'));
const hex = (b) => Buffer.from(b).toString('hex');

test('the vector files have vectors of every kind', () => {
  const ids = FRAMES.map((v) => v.id);
  assert.equal(new Set(ids).size, ids.length, 'vector ids are unique');
  for (const id of ACCEPTED.keys()) assert.ok(ids.includes(id), `ACCEPTED names ${id}, not a vector`);
  const names = new Set(FRAMES.filter((v) => v.decode).map((v) => v.decode.name));
  assert.deepEqual([...names].sort(), Object.keys(P.CMD).sort(), 'every command has a vector');
  assert.ok(FRAMES.some((v) => v.error));
  assert.ok(FRAMES.some((v) => v.error && v.error.elements_before !== undefined), 'BATCH container faults');
});

// One decoded SEND/RETURN against its `decode` (or BATCH `elements` entry); canonical
// ones re-encoded where encodeSend can express them. Returns the re-encoded frame or null.
function checkHead(msg, want, canonical) {
  assert.deepEqual([msg.cmd, msg.ttl, msg.flags], [want.command, want.ttl, want.flags]);
  assert.equal(P.CMD[want.name], msg.cmd);
  assert.equal(msg.dest, want.dest);
  assert.equal(msg.src, want.src);
  assert.deepEqual(toJson(msg.meta), want.meta === null ? {} : want.meta);
  assert.deepEqual(msg.parts.map(hex), want.parts);
  const parts = want.parts.map((p) => Buffer.from(p, 'hex'));
  const inline = (msg.flags & P.F_INLINE) !== 0;
  const expressible = inline === (parts.length > 0 && parts[0].length <= P.INLINE_MAX);
  if (!canonical || !expressible) return null;
  return P.encodeSend(want.dest, want.src, parts, toJs(want.meta),
    { undeliverable: (msg.flags & P.F_RETURN_UNDELIVERABLE) !== 0, ttl: msg.ttl, cmd: msg.cmd });
}

for (const vector of FRAMES.filter((v) => v.decode)) {
  test(`frame ${vector.id} decodes`, () => {
    const want = vector.decode;
    const fr = frames(vector);
    const msg = P.decodeMessage(fr);
    assert.deepEqual([msg.cmd, msg.ttl, msg.flags], [want.command, want.ttl, want.flags]);
    assert.equal(P.CMD[want.name], msg.cmd);
    if (msg.cmd === P.CMD.SEND || msg.cmd === P.CMD.RETURN) {
      const again = checkHead(msg, want, vector.canonical);
      if (again) assert.deepEqual(again.map(hex), vector.frames);
    } else if (msg.cmd === P.CMD.BATCH) {
      assert.equal(msg.elements.length, want.elements.length, 'element count');
      const agains = msg.elements.map((el, i) => checkHead(el, want.elements[i], vector.canonical));
      // the lenient walk the client dispatches with gives the same elements
      assert.deepEqual(P.walkBatch(fr).elements.map((e) => e.frames.map(hex)), msg.elements.map((e) => e.frames.map(hex)));
      if (vector.canonical && agains.every(Boolean)) {
        assert.deepEqual(P.encodeBatch(agains).map(hex), vector.frames);
      }
    } else {
      assert.deepEqual(toJson(msg.body), want.body);
      if (vector.canonical) assert.deepEqual(P.encodeControl(msg.cmd, toJs(want.body)).map(hex), vector.frames);
    }
  });
}

for (const vector of FRAMES.filter((v) => v.error)) {
  test(`frame ${vector.id} is refused (ERROR ${vector.error.code})`, () => {
    if (ACCEPTED.has(vector.id)) {
      P.decodeMessage(frames(vector)); // accepted by this client: see ACCEPTED
      return;
    }
    assert.throws(() => P.decodeMessage(frames(vector)), P.ProtocolError);
    if (vector.error.elements_before !== undefined) {
      // a container fault: the walk returns the elements before it, then the fault
      const walk = P.walkBatch(frames(vector));
      assert.ok(walk.error instanceof P.ProtocolError, 'the walk meets the fault');
      assert.equal(walk.elements.length, vector.error.elements_before, 'elements before the fault');
      for (const el of walk.elements) assert.ok(!(el instanceof Error), `element refused: ${el.message}`);
    }
    if (vector.error.check === 'batch-element') {
      // the walk goes on past a bad element: exactly the bad one is an error
      const walk = P.walkBatch(frames(vector));
      assert.equal(walk.error, null);
      assert.ok(walk.elements.some((e) => e instanceof P.ProtocolError));
    }
  });
}

for (const vector of ADDRS.addresses.filter((v) => !v.error)) {
  test(`address ${vector.text.slice(0, 60)} parses`, () => {
    const a = P.parseAddress(vector.text);
    const got = { kind: a.kind, actor: a.actor, proc: a.proc, port: a.port === null ? null : String(a.port), endpoint: a.endpoint };
    const want = { kind: vector.kind, actor: vector.actor && vector.actor.text, proc: vector.proc.text, port: vector.port, endpoint: vector.endpoint };
    if (ADDR_WRONG.has(vector.text)) {
      assert.notDeepEqual(got, want, 'now right: remove it from ADDR_WRONG');
      return;
    }
    assert.deepEqual(got, want);
  });
}

for (const vector of ADDRS.addresses.filter((v) => v.error)) {
  const text = vector.hex !== undefined ? Buffer.from(vector.hex, 'hex').toString('utf8') : vector.text;
  test(`address ${JSON.stringify(text.slice(0, 60))} is refused (${vector.error.category})`, () => {
    assert.throws(() => P.parseAddress(text), P.AddressError);
  });
}

for (const vector of ADDRS.uid58) {
  test(`uid58 ${JSON.stringify(vector.text)} ${vector.error ? 'is refused' : 'is accepted'} in an id`, () => {
    if (vector.error) assert.throws(() => P.checkId(`w<${vector.text}>`), P.AddressError);
    else P.checkId(`w<${vector.text}>`);
  });
}
