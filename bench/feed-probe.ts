/**
 * Owns `--watch`: one change-feed watcher on every key (so a tailer runs on every shard of the
 * gateway) for the length of a run, and the delay from each change's commit (its transaction's
 * NOW(3) on the shard, `at`) to its arrival here. Relies on the kvsql client. The shards are
 * local, so the shard's clock and this process's agree to well under a millisecond.
 */
import { createClient, type KvClient } from '../src/client';
import type { Watch } from '../src/client/watch';

export class FeedProbe {
  private readonly client: KvClient;
  private readonly watch: Watch;
  private readonly delays: number[] = [];
  events = 0;
  error: string | null = null;

  constructor(base: string) {
    this.client = createClient(`${base.replace(/^http/, 'ws')}/v1/ws`);
    this.watch = this.client.watch('');
    void this.consume();
  }

  ready(): Promise<string> {
    return this.watch.ready;
  }

  private async consume(): Promise<void> {
    try {
      for await (const e of this.watch) {
        this.events++;
        // One sample in 16 is plenty for percentiles and keeps the array small.
        if ((this.events & 15) === 0) this.delays.push(Date.now() - e.at);
      }
    } catch (err) {
      this.error = (err as Error).message;
    }
  }

  summary(): string {
    const d = [...this.delays].sort((a, b) => a - b);
    const q = (p: number) => (d.length === 0 ? NaN : d[Math.min(d.length - 1, Math.floor(p * d.length))]);
    return `feed watcher: ${this.events} events; delay at->arrival p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${d[d.length - 1] ?? NaN} ms${this.error ? `; ended: ${this.error}` : ''}`;
  }

  async stop(): Promise<void> {
    this.watch.close();
    await this.client.close();
  }
}
