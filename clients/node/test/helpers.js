// zhost/test/helpers.js — start a real zhost-broker (from $ZHOST_BUILD_DIR) for the node tests.
'use strict';
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const BUILD_DIR = process.env.ZHOST_BUILD_DIR || path.resolve(__dirname, '../../../build');
const BIN = (name) => path.join(BUILD_DIR, name);

// brokers still running when the test process exits (a test that timed out) are killed
const live = new Set();
process.on('exit', () => { for (const p of live) { try { process.kill(-p.pid, 'SIGKILL'); } catch (e) { /* gone */ } } });

// Start a broker (flags appended); resolves {proc, frontend, ep, control, stderr(), stop()}
// once it printed "ready". Environment ZHOST_* is not passed on.
function startBroker(flags = [], { frontend = 'tcp://127.0.0.1:0' } = {}) {
  const rt = fs.mkdtempSync(path.join(os.tmpdir(), 'zhost-node-'));
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ZHOST_')) env[k] = v;
  const argv = ['--frontend', frontend, '--runtime-dir', path.join(rt, 'rt'), '--log-level', 'warn', ...flags];
  const proc = spawn(BIN('zhost-broker'), argv, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const lines = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker not ready: ${lines.join('\n')}\n${err}`)), 10000);
    let buf = '';
    proc.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 1);
        lines.push(line);
        if (line === 'ready') {
          clearTimeout(timer);
          const b = { proc, lines, runtimeDir: path.join(rt, 'rt'), tmpDir: rt, stderr: () => err };
          for (const l of lines) {
            const [k, v] = [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)];
            if (k === 'frontend' && !b.frontend) b.frontend = v;
            else if (k === 'advertise' && !b.ep) b.ep = v;
            else if (k === 'control') b.control = v;
          }
          b.stop = () => new Promise((res) => {
            if (proc.exitCode !== null || proc.signalCode) { res(proc.exitCode); return; }
            const t = setTimeout(() => { try { process.kill(-proc.pid, 'SIGKILL'); } catch (e) { /* gone */ } }, 15000);
            proc.once('exit', (code) => { clearTimeout(t); fs.rmSync(rt, { recursive: true, force: true }); res(code); });
            proc.kill('SIGTERM');
          });
          b.kill = () => new Promise((res) => { proc.once('exit', () => res()); process.kill(-proc.pid, 'SIGKILL'); });
          resolve(b);
        }
      }
    });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`broker exited ${code}: ${err}`)); });
  });
}

// Make zcert keys with `zhost-ctl keygen NAME --out DIR`.
function keygen(dir, ...names) {
  fs.mkdirSync(dir, { recursive: true });
  for (const n of names) execFileSync(BIN('zhost-ctl'), ['keygen', n, '--out', dir], { stdio: 'ignore' });
}

function haveBroker() { return fs.existsSync(BIN('zhost-broker')); }

module.exports = { BUILD_DIR, BIN, startBroker, keygen, haveBroker };
