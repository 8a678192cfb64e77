/**
 * Owns re-routing a request its shard refused with KV_ERR_WRONG_SHARD (the slot moved): to the
 * new owner the refusal names, or after a map refresh, at most MAX_REDIRECTS times with backoff,
 * then 503 SLOT_MOVING. Relies on SlotRouter (route, refresh, shard by index) and the pool's
 * dispatch. Must not admit: a re-routed request was admitted once and keeps its first submit time,
 * so the deadline backstop counts from there, wherever it now waits.
 *
 *   refusal ─> n > MAX_REDIRECTS?                      -> 503 SLOT_MOVING
 *          ─> hint is the refusing shard (taking over)  -> ask it again after backoff
 *          ─> first redirect, hint up                   -> route there now, refresh in background
 *          ─> otherwise                                 -> refresh, then resend (after backoff from n = 2)
 *
 *   redirected: Map<id, {target, req, at, shard}>   until answered; shard null while it waits for
 *                                                    a refresh on no shard at all (backstop.ts)
 */
import { errorReply, type Request, type WrongShard } from '../../protocol/ops';
import type { SlotRouter } from './routing';
import type { ReplyTarget, ShardHandle } from './worker-handle';

/** Re-routes of one request after KV_ERR_WRONG_SHARD before it is answered 503. */
const MAX_REDIRECTS = 8;

export interface Redirected {
  target: ReplyTarget;
  req: Request;
  at: number;
  shard: ShardHandle | null;
}

/** Queues an admitted request for one shard's next frame; `at` is its first submit time. */
export type Dispatch = (shard: ShardHandle, target: ReplyTarget, req: Request, at: number) => void;

export class Redirects {
  /** Requests re-routed after KV_ERR_WRONG_SHARD (metrics). */
  count = 0;
  private readonly redirectCount = new WeakMap<Request, number>();
  /**
   * Re-routed requests, by id, until answered: the deadline backstop checks them apart from the
   * shards' submit rings (their first submit time is older than the ring's newer entries), also
   * while they wait for a map refresh on no shard at all.
   */
  readonly redirected = new Map<number, Redirected>();

  constructor(
    private readonly shards: ShardHandle[],
    private readonly router: SlotRouter,
    private readonly dispatch: Dispatch,
  ) {}

  /** The backstop answered a re-routed request: forget how often it was re-routed. */
  forget(req: Request): void {
    this.redirectCount.delete(req);
  }

  /**
   * The shard refused the request: its slot moved. Refresh the map, then route it again; from
   * the second redirect on, wait a little first (the flip between two shards takes milliseconds).
   */
  redirect(target: ReplyTarget, req: Request, at: number, refusal: WrongShard, from: ShardHandle): void {
    const id = req[0];
    const n = (this.redirectCount.get(req) ?? 0) + 1;
    const giveUp = (code: 'KV_ERR_SLOT_MOVING' | 'KV_ERR_SHARD_UNAVAILABLE', message: string): void => {
      this.redirectCount.delete(req);
      this.redirected.delete(id);
      target.deliver(errorReply(id, code, message));
    };
    if (n > MAX_REDIRECTS) {
      giveUp('KV_ERR_SLOT_MOVING', `re-routed ${MAX_REDIRECTS} times: ${refusal[3]}`);
      return;
    }
    if (this.router.hashRuleConflict !== null) {
      // The shards disagree on how keys hash (or are switching): no route may be trusted, a hint neither.
      giveUp('KV_ERR_SHARD_UNAVAILABLE', `the shards disagree on how keys hash: ${this.router.hashRuleConflict}`);
      return;
    }
    this.redirectCount.set(req, n);
    this.count++;
    const entry: Redirected = { target, req, at, shard: null };
    this.redirected.set(id, entry);
    const send = (shard: ShardHandle): void => {
      entry.shard = shard;
      this.dispatch(shard, target, req, at);
    };
    // The refusing shard moved the slot and named the new owner: go there now, and bring the
    // rest of the map up to date in the background (a wrong hint just costs another redirect).
    const hint = refusal[4] === -1 ? undefined : this.router.byShardIndex(refusal[4]);
    const backoff = Math.min(500, 5 * 2 ** n);
    if (hint === from) {
      // It is taking the slot over (between the source's hand-off and its own take-over, a few
      // ms): ask it again shortly; the map is right already.
      setTimeout(() => {
        if (this.redirected.get(id) !== entry) return; // answered meanwhile (op deadline)
        if (!from.up || from.exited) giveUp('KV_ERR_SHARD_UNAVAILABLE', 'the shard that owns this key is unavailable');
        else send(from);
      }, backoff);
      return;
    }
    if (n === 1 && hint !== undefined && hint.up && !hint.exited) {
      this.router.route[this.router.slotOf(req[2])] = hint.index;
      void this.router.refreshMap();
      send(hint);
      return;
    }
    const resend = (): void => {
      if (this.redirected.get(id) !== entry) return; // answered meanwhile (op deadline)
      const h = this.router.route[this.router.slotOf(req[2])];
      const shard = h === -1 ? undefined : this.shards[h];
      if (shard === undefined || !shard.up || shard.exited) {
        giveUp(shard === undefined ? 'KV_ERR_SLOT_MOVING' : 'KV_ERR_SHARD_UNAVAILABLE', 'the shard that owns this key is unavailable');
        return;
      }
      send(shard);
    };
    const delay = n === 1 ? 0 : backoff;
    void this.router.refreshMap().then(() => (delay === 0 ? resend() : setTimeout(resend, delay)));
  }
}
