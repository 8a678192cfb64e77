#!/usr/bin/env node
/**
 * Owns measuring the two fixed costs every kvsql operation pays on this machine, outside kvsql:
 * a thread hand-off (postMessage main -> worker -> main, one at a time) and a small socket write
 * on loopback. DESIGN.md "Per-operation cost" quotes them (E2). Writes bench/evidence/E2.json.
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

runScript(async () => {
  const writes = await socketWrites(numberFlag('writes', 100_000));
  const trips = await handOffs(numberFlag('round-trips', 20_000));
  const round = (x: number) => Number(x.toFixed(2));
  const out = {
    at: new Date().toISOString(),
    node: process.version,
    socketWrite9B: { wallUs: round(writes.wallUs), cpuUs: round(writes.cpuUs), userUs: round(writes.userUs), sysUs: round(writes.sysUs) },
    postMessageRoundTrip64B: { wallUs: round(trips.wallUs), cpuUsWholeProcess: round(trips.cpuUs) },
  };
  console.log(JSON.stringify(out, null, 1));
  const file = path.resolve(__dirname, '..', '..', '..', 'bench', 'evidence', 'E2.json');
  fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
});
