/**
 * Owns the worker thread's entry point: builds the store and actor from workerData (config is
 * resolved once by the gateway; this thread never reads process.env) and wires the MessagePort.
 * Relies on ShardActor, MysqlShardStore and, for a Galera group, ReplicaWait (Redis WAIT).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Packr } from 'msgpackr';
import type { ActorConfig, FromActor, ToActor } from '../protocol/port-messages';
import type { Reply, Request } from '../protocol/ops';
import { toErrorData } from '../protocol/errors';
import { ShardActor } from './actor';
import { MysqlShardStore } from './mysql-store/mysql-shard-store';
import { ReplicaWait } from './replica-wait';

const cfg = workerData as ActorConfig;
const port = parentPort!;
const packr = new Packr({ useRecords: false, moreTypes: false });

function post(msg: FromActor, transfer?: ArrayBuffer[]): void {
  port.postMessage(msg, transfer);
}

function sendReplies(replies: Reply[]): void {
  // pack() returns a view into a reused slab: copy into an exact-size buffer, then transfer it.
  const bytes = new Uint8Array(packr.pack(replies));
  post(bytes, [bytes.buffer as ArrayBuffer]);
}

const store = new MysqlShardStore({
  url: cfg.url,
  nodes: cfg.nodes,
  // Three renewal periods: a holder that misses two renewals in a row loses the role.
  leaseMs: cfg.expiry.lockRetryMs * 3,
  log: (level, msg, data) => post({ type: 'log', level, msg, data }),
  // + reap lane, expiry scans, version blocks (key-range scans take read slots: scan-lane.ts)
  poolSize: cfg.readsInFlight + cfg.writesInFlight + 3,
  queryTimeoutMs: cfg.queryTimeoutMs,
  tls: cfg.tls,
});

const actor = new ShardActor(
  cfg,
  store,
  sendReplies,
  (up, error) => post({ type: 'health', up, error }),
  (level, msg, data) => post({ type: 'log', level, msg, data }),
  Date.now,
  (rows, low, start) => {
    // One transferred buffer instead of a structured clone of an object per row and key.
    if (rows.length === 0) return post({ type: 'feed', rows: null, low, start });
    const bytes = new Uint8Array(packr.pack(rows));
    post({ type: 'feed', rows: bytes, low, start }, [bytes.buffer as ArrayBuffer]);
  },
);

/** WAIT's answers on a Galera group; a single server has no replica (the gateway answers 0). */
const replicas = cfg.nodes.length > 1 ? new ReplicaWait(cfg.nodes) : null;

port.on('message', (msg: ToActor) => {
  if (msg instanceof Uint8Array) {
    actor.receive(packr.unpack(msg) as Request[]);
    return;
  }
  switch (msg.type) {
    case 'stats':
      post({ type: 'stats', id: msg.id, stats: actor.statsSnapshot() });
      break;
    case 'ownership':
      actor.ownership().then(
        (ownership) => post({ type: 'ownership', id: msg.id, ownership }),
        (err) => post({ type: 'ownership', id: msg.id, error: { code: 'KV_ERR_SHARD_UNAVAILABLE', message: String((err as Error)?.message ?? err) } }),
      );
      break;
    case 'bootstrap':
      actor.bootstrap({ shard: msg.shard, shardCount: msg.shardCount, slotRanges: msg.slotRanges }).then(
        () => post({ type: 'bootstrapped', id: msg.id }),
        (err) => post({ type: 'bootstrapped', id: msg.id, error: { ...toErrorData(err), message: String((err as Error)?.message ?? err) } }),
      );
      break;
    case 'scan':
      actor.scan(msg.request, (a) =>
        post('page' in a ? { type: 'scanned', id: msg.id, page: a.page } : { type: 'scanned', id: msg.id, error: 'error' in a ? a.error : undefined }),
      );
      break;
    case 'count':
      actor.scan(null, (a) =>
        post(
          'count' in a
            ? { type: 'counted', id: msg.id, count: a.count, served: a.served }
            : { type: 'counted', id: msg.id, error: 'error' in a ? a.error : undefined },
        ),
      );
      break;
    case 'feedWatch':
      actor.feed?.watch(msg.on);
      break;
    case 'feedRange':
      actor.feedRange(msg.after, msg.upto, msg.limit).then(
        (r) => post({ type: 'feedRange', id: msg.id, rows: r.rows, trimmed: r.trimmed }),
        (err) => post({ type: 'feedRange', id: msg.id, error: { code: 'KV_ERR_SHARD_UNAVAILABLE', message: String((err as Error)?.message ?? err) } }),
      );
      break;
    case 'wait':
      if (replicas === null) post({ type: 'waited', id: msg.id, count: 0 });
      else
        replicas.wait(msg.replicas, msg.timeoutMs).then(
          (count) => post({ type: 'waited', id: msg.id, count }),
          (err) =>
            post({
              type: 'waited',
              id: msg.id,
              error: { code: 'KV_ERR_SHARD_UNAVAILABLE', message: `shard ${cfg.shard}: ${String((err as Error)?.message ?? err)}` },
            }),
        );
      break;
    case 'drain':
      void actor.drain().then(() => post({ type: 'drained' }));
      break;
    case 'stop':
      void Promise.all([actor.stop(), replicas?.stop()]).finally(() => {
        post({ type: 'stopped' });
        port.close();
      });
      break;
  }
});

actor.start().then(
  () => post({ type: 'ready', shardIndex: actor.shardIndex }),
  (err) => {
    const data = toErrorData(err);
    post({ type: 'fatal', error: { code: data.code, message: String((err as Error)?.message ?? err) } });
  },
);
