/**
 * Owns a shard's identity and slot ownership as the store reads and writes them: the schema and
 * its migrations at start, the kv_shard row (identity and the store's hash rule), kv_slots seeding, the ownership the gateway builds
 * its slot map from, where refused slots went, and filling `slot` of rows written before the
 * column existed. Relies on ShardConnections, STATEMENTS and schema-migration.ts. Must not serve
 * reads or writes of keys (reads.ts, writes.ts).
 */
import type { RowDataPacket } from 'mysql2/promise';
import { HASH_RULE_NAMES, HASH_SWITCHING, HASH_TAGS, slotOf, type ShardOwnership } from '../../protocol/slot-map';
import { StoreError } from '../mysql-errors';
import { dropEpochTriggers, migrateSchema, schemaStatements, seedSlots, UNSLOTTED } from '../schema-migration';
import type { ShardIdentity, ShardInit } from '../shard-store';
import type { ShardConnections } from './connections';
import { STATEMENTS } from './statements';

/** The rule a kv_shard row records, as this actor uses it; refuses a store that is switching. */
function hashTagsOf(row: RowDataPacket): boolean {
  const rule = Number(row.hash_rule);
  if (rule === HASH_SWITCHING) {
    throw new StoreError(
      'KV_HASH_RULE_SWITCHING',
      `shard ${row.shard_index} is ${HASH_RULE_NAMES[rule]}: \`kvsql hashtags enable\` is moving rows or was interrupted. ` +
        'Refusing to serve: keys could be read from the wrong shard. Run `kvsql hashtags enable` to finish it, then start the gateways.',
    );
  }
  return rule === HASH_TAGS;
}

export class StoreOwnership {
  /**
   * The store's rule (kv_shard.hash_rule), read at init or bootstrap: the slot written with each
   * row (writes.ts) and filled into old rows is computed with it. True until then (new stores).
   */
  hashTags = true;

  constructor(private readonly c: ShardConnections) {}

  init(): Promise<ShardInit> {
    return this.c.withSetupConnection(async (conn) => {
      for (const sql of schemaStatements()) await conn.query({ sql, timeout: 60_000 });
      await migrateSchema(conn);
      await dropEpochTriggers(conn);
      const [rows] = await conn.query<RowDataPacket[]>(STATEMENTS.shardRow.sql);
      if (rows.length === 0) return { shardIndex: null, hashTags: this.hashTags };
      this.hashTags = hashTagsOf(rows[0]);
      // A data dir from before kv_slots: its slots are the ranges it was created with.
      if (Number(rows[0].slots_seeded) === 0) await seedSlots(conn);
      return { shardIndex: Number(rows[0].shard_index), hashTags: this.hashTags };
    });
  }

  bootstrap(identity: ShardIdentity): Promise<ShardInit> {
    return this.c.withSetupConnection(async (conn) => {
      await conn.query(STATEMENTS.insertIdentity.sql, [identity.shard, identity.shardCount, identity.slotRanges, Date.now()]);
      const [rows] = await conn.query<RowDataPacket[]>(STATEMENTS.identity.sql);
      const row = rows[0];
      if (row.shard_index !== identity.shard || row.slot_ranges !== identity.slotRanges) {
        // Two gateways created the store at once with different shard lists.
        throw new StoreError(
          'KV_SHARD_IDENTITY_MISMATCH',
          `shard ${identity.shard} was created as shard ${row.shard_index} of ${row.shard_count} with slots ${row.slot_ranges}; ` +
            `this gateway maps slots ${identity.slotRanges} to it. Refusing to start: keys would be served from the wrong shard. ` +
            'Use the same shard list (and count) as when the data was written.',
        );
      }
      await seedSlots(conn);
      this.hashTags = hashTagsOf(row);
      return { shardIndex: identity.shard, hashTags: this.hashTags };
    });
  }

  async ownership(): Promise<ShardOwnership> {
    const results = await this.c.query<RowDataPacket[][]>(STATEMENTS.ownership.sql, undefined);
    const slots: number[] = [];
    for (const r of results[1]) slots.push(Number(r.slot), Number(r.state), Number(r.epoch), r.peer === null ? -1 : Number(r.peer));
    return {
      shardIndex: results[0].length === 0 ? null : Number(results[0][0].shard_index),
      hashRule: results[0].length === 0 ? null : Number(results[0][0].hash_rule),
      slots,
      peers: results[2].map((r) => [Number(r.shard_index), String(r.url)] as [number, string]),
      progress:
        results[3].length === 0
          ? null
          : {
              state: results[3][0].state,
              slotsTotal: Number(results[3][0].slots_total),
              slotsDone: Number(results[3][0].slots_done),
              rowsCopied: Number(results[3][0].rows_copied),
              startedAt: Number(results[3][0].started_at),
              updatedAt: Number(results[3][0].updated_at),
              pauseP99Ms: Number(results[3][0].pause_p99_ms),
            },
    };
  }

  async movedTo(slots: number[]): Promise<Map<number, number>> {
    const rows = await this.c.query<RowDataPacket[]>(STATEMENTS.movedTo.sql(slots.length), slots);
    return new Map(rows.map((r) => [Number(r.slot), Number(r.peer)]));
  }

  async fillSlots(limit: number): Promise<number> {
    const rows = await this.c.query<RowDataPacket[]>(STATEMENTS.unslottedPage.sql, [UNSLOTTED, limit]);
    if (rows.length === 0) return 0;
    const params: unknown[] = [];
    for (const r of rows) params.push(r.k, slotOf(r.k as Buffer, this.hashTags));
    for (const r of rows) params.push(r.k);
    await this.c.query(STATEMENTS.fillSlots.sql(rows.length), params);
    return rows.length;
  }
}
