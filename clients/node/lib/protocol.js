// zhost/lib/protocol.js — ZHP/1 frames and addresses (docs/protocol.md §2–§6, BATCH §14), no sockets.
'use strict';
const { encode, decode } = require('@msgpack/msgpack');

const MAGIC0 = 0x5a, MAGIC1 = 0x48, VERSION = 1, HEADER_SIZE = 6, DEFAULT_TTL = 64;
const INLINE_MAX = 4096, FIELD_MAX = 1024;
const BATCH_LEN_SIZE = 4, BATCH_MAX_BYTES_DEFAULT = 256 * 1024;
const CMD = { ATTACH: 0x01, BOOTSTRAP: 0x02, READY: 0x03, HELLO: 0x04, WELCOME: 0x05,
  SEND: 0x10, RETURN: 0x11, BATCH: 0x12, PING: 0x20, PONG: 0x21, BYE: 0x22, ERROR: 0x23,
  STOP: 0x30 };
const F_RETURN_UNDELIVERABLE = 0x01, F_INLINE = 0x02;

class ProtocolError extends Error {}
class AddressError extends Error {}

function header(cmd, ttl = 0, flags = 0) {
  return Buffer.from([MAGIC0, MAGIC1, VERSION, cmd, ttl, flags]);
}

// With useBigInt64, @msgpack/msgpack writes a Number integer beyond 32 bits as a float64;
// ZHP/1's integers (incarnation, ts, seq, …) are msgpack ints, so such Numbers travel as
// BigInt (uint64 / int64, as the C and Python codecs write them).
function wideIntsAsBigInt(v) {
  if (typeof v === 'number') return Number.isSafeInteger(v) && (v > 0xffffffff || v < -0x80000000) ? BigInt(v) : v;
  if (Array.isArray(v)) return v.map(wideIntsAsBigInt);
  if (v && typeof v === 'object' && [Object.prototype, null].includes(Object.getPrototypeOf(v))) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, wideIntsAsBigInt(x)]));
  }
  return v;
}

function pack(obj) { return Buffer.from(encode(wideIntsAsBigInt(obj), { useBigInt64: true })); }

// Decode wire msgpack with bounded lengths (no declared length from the wire is trusted:
// @msgpack/msgpack checks every length against the bytes left).
function unpack(buf) {
  const n = buf.length;
  try {
    return decode(buf, { useBigInt64: true, maxStrLength: n, maxBinLength: n, maxArrayLength: n,
      maxMapLength: n, maxExtLength: n });
  } catch (e) {
    throw new ProtocolError('msgpack: ' + e.message);
  }
}

function encodeControl(cmd, body) {
  const frames = [header(cmd)];
  if (body && Object.keys(body).length) frames.push(pack(body));
  return frames;
}

function asBuffer(part) {
  if (Buffer.isBuffer(part)) return part;
  if (typeof part === 'string') return Buffer.from(part, 'utf8');
  if (part instanceof Uint8Array) return Buffer.from(part.buffer, part.byteOffset, part.byteLength);
  throw new TypeError('a payload part is a Buffer, Uint8Array or string');
}

function addrBytes(addr, what) {
  const b = Buffer.from(String(addr), 'utf8');
  if (b.length < 1 || b.length > FIELD_MAX) throw new AddressError(`${what}: ${b.length} bytes, not 1..${FIELD_MAX}`);
  return b;
}

// [head][payload frame]*: the first part rides inline when it is at most INLINE_MAX bytes.
function encodeSend(dest, src, parts = [], meta = null, { undeliverable = false, ttl = DEFAULT_TTL, cmd = CMD.SEND } = {}) {
  parts = parts.map(asBuffer);
  const metaBytes = meta && Object.keys(meta).length ? pack(meta) : Buffer.alloc(0);
  let flags = undeliverable ? F_RETURN_UNDELIVERABLE : 0;
  let inline = null;
  if (parts.length && parts[0].length <= INLINE_MAX) { inline = parts.shift(); flags |= F_INLINE; }
  const d = addrBytes(dest, 'dest'), s = addrBytes(src, 'src');
  const lens = Buffer.alloc(8);
  const head = Buffer.concat([header(cmd, ttl, flags), u16(d.length), d, u16(s.length), s,
    u32(metaBytes.length), metaBytes, inline || Buffer.alloc(0)]);
  void lens;
  return [head, ...parts];
}
function u16(n) { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; }
function u32(n) { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; }

function isMapMarker(b) { return (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf; }

// One received message: {cmd, ttl, flags, frames} plus, for SEND/RETURN,
// {dest, src, meta, parts}, for BATCH {elements} (each the message a lone one-frame
// SEND/RETURN decodes to; any fault refuses the whole frame, see walkBatch for the
// broker's lenient walk) and, for control commands, {body}.
function decodeMessage(frames) {
  if (!frames.length) throw new ProtocolError('no frames');
  const f = frames[0];
  if (f.length < HEADER_SIZE || f[0] !== MAGIC0 || f[1] !== MAGIC1) throw new ProtocolError('short header or bad magic');
  if (f[2] !== VERSION) throw new ProtocolError('unsupported version ' + f[2]);
  const msg = { cmd: f[3], ttl: f[4], flags: f[5], frames };
  if (msg.cmd === CMD.BATCH) {
    const walk = walkBatch(frames);
    if (walk.error) throw walk.error;
    const bad = walk.elements.findIndex((e) => e instanceof Error);
    if (bad >= 0) throw new ProtocolError(`BATCH element ${bad + 1}: ${walk.elements[bad].message}`);
    msg.elements = walk.elements;
    return msg;
  }
  if (msg.cmd === CMD.SEND || msg.cmd === CMD.RETURN) {
    let pos = HEADER_SIZE;
    const take = (n, what) => {
      if (pos + n > f.length) throw new ProtocolError(what + ' runs past the end of the head');
      const c = f.subarray(pos, pos + n); pos += n; return c;
    };
    const d = take(2, 'D').readUInt16BE();
    if (d < 1 || d > FIELD_MAX) throw new ProtocolError('D outside 1..1024');
    msg.dest = take(d, 'dest').toString('utf8');
    const s = take(2, 'S').readUInt16BE();
    if (s < 1 || s > FIELD_MAX) throw new ProtocolError('S outside 1..1024');
    msg.src = take(s, 'src').toString('utf8');
    const m = take(4, 'M').readUInt32BE();
    const metaRaw = take(m, 'meta');
    if (m && !isMapMarker(metaRaw[0])) throw new ProtocolError('meta is not a msgpack map');
    let meta = {};
    if (m) { try { meta = unpack(metaRaw); } catch (e) { meta = {}; } }
    msg.meta = meta && typeof meta === 'object' && !Array.isArray(meta) ? meta : {};
    const rest = f.subarray(pos);
    if (msg.flags & F_INLINE) msg.parts = [Buffer.from(rest), ...frames.slice(1)];
    else if (rest.length) throw new ProtocolError('bytes after meta while INLINE is clear');
    else msg.parts = frames.slice(1);
  } else {
    if (frames.length > 2) throw new ProtocolError('control command with more than 2 frames');
    let body = {};
    if (frames.length === 2 && frames[1].length) {
      body = unpack(frames[1]);
      if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ProtocolError('control body is not a map');
    }
    msg.body = body;
  }
  return msg;
}

// --- BATCH (§14) ---
// [header 0x12 0 0][u32 L1][element 1] … [u32 Ln][element n]: one frame; each element is
// a one-frame SEND or RETURN, byte for byte.

// A lenient walk, as the broker's: {elements, error}. elements holds, in order, each
// element before the first container fault, decoded as the lone message it is (the same
// object decodeMessage gives for it) or, where that element alone is bad, the
// ProtocolError it raised (the walk goes on with the next). error is the container fault
// (no elements, a length of 0, one past the frame, bytes left over), or null. A bad
// header (magic, version, not a BATCH, ttl or flags not 0) or extra frames throw.
function walkBatch(frames) {
  const f = frames[0];
  if (!f || f.length < HEADER_SIZE || f[0] !== MAGIC0 || f[1] !== MAGIC1) throw new ProtocolError('short header or bad magic');
  if (f[2] !== VERSION) throw new ProtocolError('unsupported version ' + f[2]);
  if (f[3] !== CMD.BATCH) throw new ProtocolError('not a BATCH');
  if (f[4] !== 0 || f[5] !== 0) throw new ProtocolError('BATCH header: ttl and flags must be 0');
  if (frames.length !== 1) throw new ProtocolError('a BATCH is one frame');
  const elements = [];
  let pos = HEADER_SIZE, error = null;
  while (pos < f.length) {
    const left = f.length - pos;
    if (left < BATCH_LEN_SIZE) { error = new ProtocolError(`BATCH: ${left} bytes left after element ${elements.length}, too few for a length`); break; }
    const n = f.readUInt32BE(pos);
    if (n === 0) { error = new ProtocolError(`BATCH: element ${elements.length + 1} has length 0`); break; }
    if (n > left - BATCH_LEN_SIZE) { error = new ProtocolError(`BATCH: element ${elements.length + 1} claims ${n} bytes, ${left - BATCH_LEN_SIZE} are left`); break; }
    const el = f.subarray(pos + BATCH_LEN_SIZE, pos + BATCH_LEN_SIZE + n);
    pos += BATCH_LEN_SIZE + n;
    elements.push(decodeElement(el));
  }
  if (!error && !elements.length) error = new ProtocolError('BATCH: no elements');
  return { elements, error };
}

function decodeElement(el) {
  if (el.length < HEADER_SIZE || el[0] !== MAGIC0 || el[1] !== MAGIC1 || el[2] !== VERSION) return new ProtocolError('bad header');
  if (el[3] !== CMD.SEND && el[3] !== CMD.RETURN) return new ProtocolError(`command 0x${el[3].toString(16)}: only SEND and RETURN are batched`);
  try { return decodeMessage([el]); } catch (e) { return e; }
}

// Size of the BATCH frame holding elements of these lengths.
function batchSize(lengths) { return lengths.reduce((s, n) => s + BATCH_LEN_SIZE + n, HEADER_SIZE); }

// One BATCH frame (as [frame], like encodeControl and encodeSend) from encoded one-frame
// SENDs/RETURNs: each a Buffer, or the frames array encodeSend returns (of one frame).
function encodeBatch(elements) {
  if (!elements.length) throw new ProtocolError('a BATCH holds at least one element');
  const bufs = elements.map((e) => {
    if (Array.isArray(e)) {
      if (e.length !== 1) throw new ProtocolError('a message with payload frames is never batched');
      e = e[0];
    }
    e = asBuffer(e);
    if (e.length < HEADER_SIZE || e[0] !== MAGIC0 || e[1] !== MAGIC1 || (e[3] !== CMD.SEND && e[3] !== CMD.RETURN)) {
      throw new ProtocolError('a BATCH element is a one-frame SEND or RETURN');
    }
    if (e.length > 0xffffffff) throw new ProtocolError('element too long for a u32 length');
    return e;
  });
  const out = Buffer.allocUnsafe(batchSize(bufs.map((b) => b.length)));
  header(CMD.BATCH).copy(out, 0);
  let pos = HEADER_SIZE;
  for (const b of bufs) { out.writeUInt32BE(b.length, pos); b.copy(out, pos + BATCH_LEN_SIZE); pos += BATCH_LEN_SIZE + b.length; }
  return [out];
}

// --- addresses (§2) ---
const LABEL_RE = /^[a-z](?:[a-z0-9_-]{0,61}[a-z0-9])?$/;
const UID_RE = /^[1-9a-km-zA-HJ-NP-Z]+$/;
function checkId(text) {
  const lt = text.indexOf('<');
  if (lt < 0) { if (!LABEL_RE.test(text)) throw new AddressError(`id: ${JSON.stringify(text)} is not a label`); return; }
  if (!text.endsWith('>')) throw new AddressError(`id: ${JSON.stringify(text)} has no closing '>'`);
  const label = text.slice(0, lt), uid = text.slice(lt + 1, -1);
  if (label && !LABEL_RE.test(label)) throw new AddressError(`id: ${JSON.stringify(label)} is not a label`);
  if (!UID_RE.test(uid) || (uid.length > 1 && uid[0] === '1') || uid58Value(uid) > U64_MAX) throw new AddressError(`id: ${JSON.stringify(uid)} is not a canonical uid58`);
}

const BASE58 = '123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ';
const U64_MAX = 0xffffffffffffffffn;
function uid58Value(text) {
  let n = 0n;
  for (const ch of text) n = n * 58n + BigInt(BASE58.indexOf(ch));
  return n;
}

const ENDPOINT_MAX = 1000;
// A ZeroMQ endpoint as zhost checks it (docs/protocol.md §2.3; the Python client's check_endpoint).
function checkEndpoint(text) {
  const bad = (why) => new AddressError(`endpoint: ${JSON.stringify(text)}: ${why}`);
  if (Buffer.byteLength(text, 'utf8') > ENDPOINT_MAX) throw bad(`more than ${ENDPOINT_MAX} bytes`);
  const scheme = ['tcp://', 'ipc://', 'inproc://'].find((p) => text.startsWith(p));
  if (!scheme) throw bad('unknown scheme (tcp://, ipc:// or inproc://)');
  const rest = text.slice(scheme.length);
  if (!rest) throw bad('nothing after the scheme');
  if (/[\x00-\x1f\x7f]/.test(rest)) throw bad('holds a control character');
  if (scheme !== 'tcp://') return;
  const colon = rest.lastIndexOf(':');
  if (colon < 0) throw bad('tcp needs host:port');
  const host = rest.slice(0, colon), port = rest.slice(colon + 1);
  if (!host) throw bad('empty tcp host');
  if (host.startsWith('[')) {
    if (!host.endsWith(']') || host.length === 2) throw bad('bad [IPv6] host');
  } else if (host.includes(':')) throw bad("':' in tcp host (IPv6 needs [brackets])");
  if (!/^[1-9][0-9]{0,4}$/.test(port) || Number(port) > 65535) throw bad('tcp port is not 1..65535 (no leading zero)');
}

// {kind: 'proc'|'actor'|'port', actor, proc, port, endpoint}
function parseAddress(text, kind) {
  if (typeof text !== 'string' || !text) throw new AddressError('address: empty or not text');
  if (Buffer.byteLength(text, 'utf8') > FIELD_MAX) throw new AddressError(`address: more than ${FIELD_MAX} bytes`);
  const at = text.indexOf('@');
  if (at < 0) throw new AddressError(`address: ${JSON.stringify(text)} has no '@endpoint'`);
  let local = text.slice(0, at);
  const endpoint = text.slice(at + 1);
  checkEndpoint(endpoint);
  let port = null;
  const colon = local.indexOf(':');
  if (colon >= 0) {
    const digits = local.slice(colon + 1);
    local = local.slice(0, colon);
    if (!/^(0|[1-9][0-9]*)$/.test(digits) || BigInt(digits) > 0xffffffffffffffffn) throw new AddressError(`address: ${JSON.stringify(text)}: port is not a canonical u64`);
    port = Number(digits);
  }
  const ids = local.split('.');
  if (ids.length > 2) throw new AddressError(`address: ${JSON.stringify(text)} has more than two ids`);
  ids.forEach(checkId);
  let a;
  if (ids.length === 1) {
    if (port !== null) throw new AddressError(`address: ${JSON.stringify(text)}: a port needs an actor`);
    a = { kind: 'proc', actor: null, proc: ids[0], port: null, endpoint };
  } else a = { kind: port !== null ? 'port' : 'actor', actor: ids[0], proc: ids[1], port, endpoint };
  if (kind && !(Array.isArray(kind) ? kind : [kind]).includes(a.kind)) throw new AddressError(`address: ${JSON.stringify(text)} is a ${a.kind} address, not ${kind}`);
  return a;
}

module.exports = { CMD, F_RETURN_UNDELIVERABLE, F_INLINE, DEFAULT_TTL, INLINE_MAX, HEADER_SIZE, BATCH_LEN_SIZE,
  BATCH_MAX_BYTES_DEFAULT, ProtocolError, AddressError, header, pack, unpack, encodeControl, encodeSend, encodeBatch,
  batchSize, walkBatch, decodeMessage, parseAddress, checkId, checkEndpoint };
