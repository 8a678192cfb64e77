/**
 * Tests the pub/sub hub of the Redis door (src/gateway/resp/pubsub-hub.ts, keyspace-source.ts)
 * without a store: fake connections, a fake clock for the soft output-buffer limit, the keyspace source opened only
 * while notifications are on and someone listens, and feedKeyspaceSource against a fake change
 * feed (events mapped, a watch the feed ended taken again from "now").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PubsubCall } from '../../../src/gateway/resp/command-api';
import { ALLOW_ALL } from '../../../src/gateway/resp/guard';
import { feedKeyspaceSource, type FeedLike, type KeyspaceEvent, type KeyspaceSource } from '../../../src/gateway/resp/keyspace-source';
import { DEFAULT_PUBSUB_LIMIT, PubsubHub, Subscriber, type PubsubLimit } from '../../../src/gateway/resp/pubsub-hub';
import { notifyFlagsOf } from '../../../src/protocol/redis-notify';
import { sleep } from '../../helpers/wait';

const quiet = { warn: () => undefined };

/** A connection that keeps what it is sent; `unsent` plays socket.writableLength. */
function fakeConn(hub: () => PubsubHub): PubsubCall & { frames: Buffer[]; killed: string | null; unsent: number } {
  const c = {
    id: 1,
    remoteAddress: 'test',
    name: null,
    proto: 2 as const,
    user: null,
    sub: null as Subscriber | null,
    frames: [] as Buffer[],
    killed: null as string | null,
    unsent: 0,
    get pubsub() {
      return hub();
    },
    reply: () => undefined,
    push(f: Buffer) {
      c.frames.push(f);
      c.unsent += f.length; // nothing is ever sent: the peer does not read
    },
    get outputBytes() {
      return c.unsent;
    },
    kill(reason: string) {
      c.killed = reason;
    },
  };
  return c;
}

function makeHub(limit: PubsubLimit = DEFAULT_PUBSUB_LIMIT, source: KeyspaceSource | null = null, now = () => 0): PubsubHub {
  return new PubsubHub({ guard: ALLOW_ALL, filtering: false, limit, notifyFlags: 0, keyspaceSource: source, publishBus: null, log: quiet, now });
}

test('hard limit: the delivery that passes it closes the subscriber and drops its subscriptions', () => {
  const hub = makeHub({ hardBytes: 900, softBytes: 0, softSeconds: 0 }); // three frames of ~330 bytes pass it
  const c = fakeConn(() => hub);
  const s = (c.sub = new Subscriber(c));
  hub.addChannel(s, Buffer.from('ch'), false);
  const msg = Buffer.alloc(300);
  assert.equal(hub.deliver(Buffer.from('ch'), msg, false, null), 1);
  assert.equal(hub.deliver(Buffer.from('ch'), msg, false, null), 1);
  assert.equal(c.killed, null);
  assert.equal(hub.deliver(Buffer.from('ch'), msg, false, null), 1, 'counted, as Redis counts it');
  assert.equal(c.killed, 'pubsub output buffer limit');
  assert.equal(hub.channels.size, 0);
  assert.equal(hub.cutOff, 1);
  assert.equal(hub.deliver(Buffer.from('ch'), msg, false, null), 0);
});

test('soft limit: over it for more than the soft seconds closes; dipping under resets the clock', () => {
  let now = 0;
  const hub = makeHub({ hardBytes: 0, softBytes: 1000, softSeconds: 60 }, null, () => now);
  const c = fakeConn(() => hub);
  const s = (c.sub = new Subscriber(c));
  hub.addPattern(s, Buffer.from('c*'));
  const msg = Buffer.alloc(600);
  hub.deliver(Buffer.from('ch'), msg, false, null);
  hub.deliver(Buffer.from('ch'), msg, false, null); // over the soft limit at t=0
  now = 60_000;
  hub.deliver(Buffer.from('ch'), msg, false, null);
  assert.equal(c.killed, null, 'exactly the soft seconds: not yet');
  c.unsent = 0; // the peer read everything
  now = 61_000;
  hub.deliver(Buffer.from('ch'), msg, false, null);
  assert.equal(c.killed, null, 'under the limit: the clock is reset');
  hub.deliver(Buffer.from('ch'), msg, false, null); // over again at 61 s
  now = 121_001;
  hub.deliver(Buffer.from('ch'), msg, false, null);
  assert.equal(c.killed, 'pubsub output buffer limit');
  assert.equal(hub.patterns.size, 0);
});

test('the keyspace source is subscribed only while notifications are on and someone listens', () => {
  let open = 0;
  let emit: ((e: KeyspaceEvent) => void) | null = null;
  const source: KeyspaceSource = {
    subscribe(onEvent) {
      open++;
      emit = onEvent;
      return () => {
        open--;
        emit = null;
      };
    },
  };
  const hub = makeHub(DEFAULT_PUBSUB_LIMIT, source);
  const c = fakeConn(() => hub);
  const s = (c.sub = new Subscriber(c));
  assert.equal(open, 0);
  hub.notifyFlags = notifyFlagsOf('KEA');
  assert.equal(open, 0, 'nobody subscribed');
  hub.addPattern(s, Buffer.from('*'));
  assert.equal(open, 1);
  hub.addChannel(s, Buffer.from('x'), false);
  assert.equal(open, 1, 'one subscription for the whole hub');
  assert.equal(hub.tap, null, 'a source was given: the interim tap is never used');
  emit!({ type: 'expired', key: Buffer.from('k') });
  assert.deepEqual(
    c.frames.map((f) => f.toString('latin1')),
    [
      '*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$16\r\n__keyspace@0__:k\r\n$7\r\nexpired\r\n',
      '*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$22\r\n__keyevent@0__:expired\r\n$1\r\nk\r\n',
    ],
  );
  hub.notifyFlags = 0;
  assert.equal(open, 0, 'notifications off');
  hub.notifyFlags = notifyFlagsOf('Kx');
  assert.equal(open, 1);
  hub.drop(s);
  assert.equal(open, 0, 'last subscriber gone');
  hub.close();
});

test('the interim local source taps writes only while it is needed', () => {
  const hub = makeHub();
  const c = fakeConn(() => hub);
  const s = (c.sub = new Subscriber(c));
  assert.equal(hub.tap, null);
  hub.addChannel(s, Buffer.from('__keyevent@0__:set'), false);
  assert.equal(hub.tap, null, 'notifications off');
  hub.notifyFlags = notifyFlagsOf('E$');
  assert.ok(hub.tap !== null);
  hub.removeChannel(s, '__keyevent@0__:set', false);
  assert.equal(hub.tap, null, 'nobody listens');
});

test('feedKeyspaceSource: one watch on every key from now; events mapped; a watch the feed ended is taken again', async () => {
  const calls: Array<{ from: string; prefix: number; sink: Parameters<FeedLike['subscribe']>[1]; closed: boolean }> = [];
  const feed: FeedLike = {
    subscribe(opts, sink) {
      const call = { from: opts.from, prefix: opts.prefix.length, sink, closed: false };
      calls.push(call);
      return { unsubscribe: () => void (call.closed = true) };
    },
  };
  const got: KeyspaceEvent[] = [];
  const stop = feedKeyspaceSource(feed, quiet, 10).subscribe((e) => got.push(e));
  assert.equal(calls.length, 1);
  assert.deepEqual([calls[0].from, calls[0].prefix], ['now', 0]);
  calls[0].sink.onEvent({ type: 'put', key: Buffer.from('a') }, 'c1');
  calls[0].sink.onEvent({ type: 'expired', key: Buffer.from('b') }, 'c2');
  assert.deepEqual(got, [
    { type: 'put', key: Buffer.from('a') },
    { type: 'expired', key: Buffer.from('b') },
  ]);
  calls[0].sink.onError({ code: 'KV_ERR_SLOW_CONSUMER', message: 'cut off' });
  await sleep(50);
  assert.equal(calls.length, 2, 'watching again');
  assert.equal(calls[1].from, 'now');
  stop();
  assert.equal(calls[1].closed, true);
});
