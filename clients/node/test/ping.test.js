// zhost/test/ping.test.js — examples/ping.js keeps zhost-ping's output and exit-status contract.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const path = require('path');
const { execFile } = require('child_process');
const { startBroker, BIN, haveBroker } = require('./helpers');

const skip = haveBroker() ? false : 'no zhost-broker in ZHOST_BUILD_DIR';
const PING = path.join(__dirname, '..', 'examples', 'ping.js');

function run(cmd, args) {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 20000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, lines: stdout.split('\n').filter(Boolean), stderr });
    });
  });
}
const node = (args) => run(process.execPath, [PING, ...args]);
const SUMMARY = /^(\d+) sent, (\d+) answered, rtt min\/avg\/max = \d+\.\d{3}\/\d+\.\d{3}\/\d+\.\d{3} ms$/;

test('ping.js: answers, NO_SUCH_PROC, agent, bad target — like zhost-ping', { skip, timeout: 60000 }, async () => {
  const b = await startBroker(['--spawn', 'e1=' + BIN('zhost-echo')]);
  try {
    const actor = `echo.e1@${b.ep}`;
    const re = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    let r;
    for (let i = 0; i < 50; i++) {          // the echo proc may still be starting
      r = await node(['-c', '2', '-i', '50', b.frontend, actor]);
      if (r.code === 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.strictEqual(r.code, 0, r.lines.join('\n') + r.stderr);
    assert.strictEqual(r.lines.length, 3);
    for (const [i, l] of r.lines.slice(0, 2).entries()) {
      assert.match(l, new RegExp(`^reply from ${re(actor)}: seq=${i + 1} time=\\d+\\.\\d{3} ms parts=1 "${re(actor)}"$`));
    }
    assert.match(r.lines[2], SUMMARY);
    assert.strictEqual(r.lines[2].split(',')[0], '2 sent');

    r = await node(['-t', 'hello', '-p', '2', b.frontend, actor]);
    assert.strictEqual(r.code, 0);
    assert.match(r.lines[0], /parts=1 "hello"$/);

    r = await node(['-c', '2', '-i', '10', b.frontend, `echo.ghost@${b.ep}`]);
    assert.strictEqual(r.code, 1);
    assert.match(r.lines[0], /^seq=1 NO_SUCH_PROC: /);
    assert.match(r.lines[1], /^seq=2 NO_SUCH_PROC: /);
    assert.match(r.lines[2], /^2 sent, 0 answered, rtt min\/avg\/max = 0\.000\/0\.000\/0\.000 ms$/);

    r = await node([b.frontend, 'agent']);
    assert.strictEqual(r.code, 0);
    assert.match(r.lines[0], new RegExp(`^reply from host_agent\\.service@${re(b.ep)}: seq=1 time=\\d+\\.\\d{3} ms parts=1 bytes=\\d+$`));

    r = await node([b.frontend, `e1@${b.ep}`]);
    assert.strictEqual(r.code, 2);
    assert.match(r.stderr, /is a proc address: name an actor/);
    r = await node([b.frontend]);
    assert.strictEqual(r.code, 2);

    // the C tool prints the same lines (times aside)
    const c = await run(BIN('zhost-ping'), ['-c', '2', '-i', '10', b.frontend, `echo.ghost@${b.ep}`]);
    const n = await node(['-c', '2', '-i', '10', b.frontend, `echo.ghost@${b.ep}`]);
    assert.deepStrictEqual(n.lines, c.lines);
    assert.strictEqual(n.code, c.code);
  } finally {
    assert.strictEqual(await b.stop(), 0);
  }
});

test('ping.js: a failed attach exits 2', { timeout: 20000 }, async () => {
  const r = await node(['-W', '100', 'tcp://127.0.0.1:1', 'echo.e1@tcp://127.0.0.1:1']);
  assert.strictEqual(r.code, 2);
  assert.match(r.stderr, /no BOOTSTRAP/);
});
