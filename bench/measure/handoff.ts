#!/usr/bin/env node
/**
 * Owns measuring the two fixed costs every kvsql operation pays on this machine, outside kvsql:
 * a thread hand-off (postMessage main -> worker -> main, one at a time) and a small socket write
 * on loopback; and, for comparison, the same hand-off through a SharedArrayBuffer with
 * Atomics.notify / Atomics.waitAsync (no message, no copy: what remains is waking the thread).
 * DESIGN.md "Per-operation cost" quotes them (E2). Writes bench/evidence/E2.json.
 *
 *   node dist/bench/measure/handoff.js [--round-trips=20000] [--writes=100000]
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { numberFlag, runScript } from '../options';

async function socketWrites(n: number): Promise<{ wallUs: number; cpuUs: number; userUs: number; sysUs: number }> {
  const srv = net.createServer((s) => s.on('data', () => undefined)).listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  const port = (srv.address() as net.AddressInfo).port;
  const c = net.connect(port, '127.0.0.1');
  await new Promise((r) => c.once('connect', r));
  const buf = Buffer.from('$3\r\nabc\r\n');
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    c.write(buf);
    if (i % 100 === 0) await new Promise((r) => setImmediate(r));
  }
  const cpu = process.cpuUsage(cpu0);
  const wallUs = ((performance.now() - t0) * 1000) / n;
  c.destroy();
  srv.close();
  return { wallUs, cpuUs: (cpu.user + cpu.system) / n, userUs: cpu.user / n, sysUs: cpu.system / n };
}

async function handOffs(n: number): Promise<{ wallUs: number; cpuUs: number }> {
  const w = new Worker("const { parentPort } = require('node:worker_threads'); parentPort.on('message', (m) => parentPort.postMessage(m));", { eval: true });
  let got = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    w.on('message', () => {
      if (++got === n) resolve();
      else w.postMessage(new Uint8Array(64));
    });
    w.postMessage(new Uint8Array(64));
  });
  const cpu = process.cpuUsage(cpu0);
  const wallUs = ((performance.now() - t0) * 1000) / n;
  await w.terminate();
  return { wallUs, cpuUs: (cpu.user + cpu.system) / n };
}

/**
 * Round trips through a SharedArrayBuffer: main stores a sequence number and notifies; the worker
 * (waiting with Atomics.waitAsync, so its event loop stays free as an actor's must) echoes it in a
 * second cell and notifies back. waitAsync does not keep a worker alive: an interval does.
 */
async function sabHandOffs(n: number): Promise<{ wallUs: number; cpuUs: number }> {
  const cells = new Int32Array(new SharedArrayBuffer(8));
  const w = new Worker(
    `const { workerData } = require('node:worker_threads');
     const a = new Int32Array(workerData);
     let seen = 0;
     const loop = () => {
       const r = Atomics.waitAsync(a, 0, seen);
       const go = () => { seen = Atomics.load(a, 0); if (seen < 0) process.exit(0); Atomics.store(a, 1, seen); Atomics.notify(a, 1); loop(); };
       if (r.async) r.value.then(go); else go();
     };
     setInterval(() => undefined, 1 << 30);
     loop();`,
    { eval: true, workerData: cells.buffer },
  );
  await new Promise((r) => setTimeout(r, 100));
  // Node 20 has Atomics.waitAsync; the TypeScript lib we target (ES2022) does not declare it.
  const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string } }).waitAsync;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 1; i <= n; i++) {
    Atomics.store(cells, 0, i);
    Atomics.notify(cells, 0);
    const r = waitAsync(cells, 1, i - 1);
    if (r.async) await r.value;
  }
  const cpu = process.cpuUsage(cpu0);
  const wallUs = ((performance.now() - t0) * 1000) / n;
  Atomics.store(cells, 0, -1);
  Atomics.notify(cells, 0);
  await w.terminate();
  return { wallUs, cpuUs: (cpu.user + cpu.system) / n };
}

runScript(async () => {
  const writes = await socketWrites(numberFlag('writes', 100_000));
  const trips = await handOffs(numberFlag('round-trips', 20_000));
  const sabTrips = await sabHandOffs(numberFlag('round-trips', 20_000));
  const round = (x: number) => Number(x.toFixed(2));
  const out = {
    at: new Date().toISOString(),
    node: process.version,
    socketWrite9B: { wallUs: round(writes.wallUs), cpuUs: round(writes.cpuUs), userUs: round(writes.userUs), sysUs: round(writes.sysUs) },
    postMessageRoundTrip64B: { wallUs: round(trips.wallUs), cpuUsWholeProcess: round(trips.cpuUs) },
    sharedArrayBufferRoundTrip: { wallUs: round(sabTrips.wallUs), cpuUsWholeProcess: round(sabTrips.cpuUs) },
  };
  console.log(JSON.stringify(out, null, 1));
  const file = path.resolve(__dirname, '..', '..', '..', 'bench', 'evidence', 'E2.json');
  fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
});
