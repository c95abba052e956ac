#!/usr/bin/env node
// zhost/examples/ping.js — the Node twin of examples/zhost-ping.c: ask a proc, time the answers.
//
//   node examples/ping.js [-c COUNT] [-i INTERVAL_MS] [-W TIMEOUT_MS] [-p PORT]
//                         [-s SIZE | -t TEXT] [-l LABEL] FRONTEND TARGET
//
// TARGET is an actor address (its port PORT, default 1, is asked), a port address, or
// `agent` (the host agent's `ping` op). Output, exactly as zhost-ping's:
//   reply from echo.e1@tcp://127.0.0.1:7100: seq=1 time=0.213 ms parts=1 "echo.e1@…"
//   seq=2 NO_SUCH_ACTOR: no actor ghost on proc e1@…
//   seq=3 TIMEOUT: no answer before the timeout
//   3 sent, 1 answered, rtt min/avg/max = 0.213/0.213/0.213 ms
// Exit 0 when every request was answered, 1 when some were not, 2 on a bad command line
// or a failed attach. It detaches cleanly (BYE, waiting for the broker's BYE).
'use strict';
const zhost = require('..');

function usage() {
  process.stderr.write('usage: ping.js [-c COUNT] [-i INTERVAL_MS] [-W TIMEOUT_MS] [-p PORT]\n'
    + '               [-s SIZE | -t TEXT] [-l LABEL] FRONTEND TARGET\n'
    + 'TARGET: an actor or port address, or `agent` (the host agent)\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { count: 1, interval: 1000, timeout: 2000, port: 1, size: 0, text: null, label: 'ping', rest: [] };
  const num = (v) => { if (v === undefined || !/^-?\d+$/.test(v)) usage(); return Number(v); };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^-([ciWpstl])(.*)$/.exec(a);
    if (a === '-h' || a === '--help') usage();
    if (!m) { o.rest.push(a); continue; }
    const v = m[2] !== '' ? m[2] : argv[++i];
    switch (m[1]) {
      case 'c': o.count = num(v); break;
      case 'i': o.interval = num(v); break;
      case 'W': o.timeout = num(v); break;
      case 'p': o.port = num(v); break;
      case 's': o.size = num(v); break;
      case 't': if (v === undefined) usage(); o.text = v; break;
      case 'l': if (v === undefined) usage(); o.label = v; break;
      default: usage();
    }
  }
  if (o.rest.length !== 2 || o.count < 1 || o.timeout < 1 || o.interval < 0) usage();
  return o;
}

function dest(target, port, client) {
  if (target === 'agent') return `host_agent.service:1@${client.host}`;
  let a;
  try { a = zhost.protocol.parseAddress(target); } catch (e) {
    process.stderr.write(`ping.js: TARGET ${target}: ${e.message}\n`); return null;
  }
  if (a.kind === 'port') return target;
  if (a.kind !== 'actor') { process.stderr.write(`ping.js: TARGET ${target} is a proc address: name an actor\n`); return null; }
  return `${a.actor}.${a.proc}:${port}@${a.endpoint}`;
}

function describe(part) {
  const printable = [...part].every((c) => c >= 0x20 && c < 0x7f);
  return printable && part.length <= 200 ? ` "${part.toString('latin1')}"` : ` bytes=${part.length}`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const [frontend, target] = o.rest;
  let client;
  try {
    client = await zhost.attach(frontend, { label: o.label, actor: 'ping' });
  } catch (e) {
    process.stderr.write(`ping.js: ${e.message}\n`);
    return 2;
  }
  const to = dest(target, o.port, client);
  if (!to) { await client.close(); return 2; }
  let part;
  if (target === 'agent') part = zhost.protocol.pack({ op: 'ping' });
  else if (o.size) part = Buffer.from(Array.from({ length: o.size }, (_, i) => 97 + (i % 26)));
  else part = Buffer.from(o.text !== null ? o.text : 'ping');
  let answered = 0, min = 0, max = 0, sum = 0;
  let closedBy = null;
  client.on('close', (e) => { if (e) closedBy = e; });
  for (let seq = 1; seq <= o.count && client.closed === null; seq++) {
    if (seq > 1) await sleep(o.interval);
    const start = process.hrtime.bigint();
    try {
      const r = await client.request(to, [part], { timeout: o.timeout });
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      let line = `reply from ${r.src}: seq=${seq} time=${ms.toFixed(3)} ms parts=${r.parts.length}`;
      if (r.parts.length) line += describe(r.parts[0]);
      process.stdout.write(line + '\n');
      answered++; sum += ms;
      min = answered === 1 || ms < min ? ms : min;
      max = ms > max ? ms : max;
    } catch (e) {
      const code = e instanceof zhost.Undeliverable ? e.code : e instanceof zhost.TimeoutError ? 'TIMEOUT' : 'FAILED';
      const reason = e instanceof zhost.Undeliverable ? e.reason : e instanceof zhost.TimeoutError ? 'no answer before the timeout' : e.message;
      process.stdout.write(`seq=${seq} ${code}: ${reason}\n`);
    }
  }
  process.stdout.write(`${o.count} sent, ${answered} answered, rtt min/avg/max = ${min.toFixed(3)}/${(answered ? sum / answered : 0).toFixed(3)}/${max.toFixed(3)} ms\n`);
  if (closedBy) process.stderr.write(`ping.js: ${closedBy.message}\n`);
  await client.close();
  return answered === o.count ? 0 : 1;
}

main().then((rc) => { process.exitCode = rc; }, (e) => { process.stderr.write(`ping.js: ${e.stack}\n`); process.exitCode = 2; });
