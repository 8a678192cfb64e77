-- kvsql schema, one copy per shard database. Applied at every start; every statement is
-- idempotent. Runs on MySQL 8.x and MariaDB 10.11 (no `AS new` upsert alias, no CHECK tricks).

-- The data. One row per live (or expired, not yet reaped) key.
--   k           the key bytes, binary-safe; primary key, so InnoDB clusters rows by key and a
--               point read or a sorted multi-key lock is one B-tree walk per key.
--   v           the value bytes (up to the configured limit; LONGBLOB so the limit is ours).
--   version     unique per shard, never reused: taken from kv_seq blocks (see version-allocator).
--   expires_at  unix milliseconds on the shard's clock, NULL for no TTL. Indexed so the expirer
--               finds due keys by range scan; NULLs sort first and are never scanned.
--   slot        the key's slot under the store's rule (kv_shard.hash_rule: CRC16 of k, or of its
--               {tag}) mod 16384, computed by the actor (MySQL has no CRC16). Indexed with k so
--               a slot move pages one slot's rows in key order without scanning the table.
--               65535 = not computed yet: a row written before this column existed; the actor
--               fills those in pages at start (shard-actor/schema-migration.ts).
CREATE TABLE IF NOT EXISTS kv (
  k VARBINARY(1024) NOT NULL,
  v LONGBLOB NOT NULL,
  version BIGINT UNSIGNED NOT NULL,
  expires_at BIGINT NULL,
  slot SMALLINT UNSIGNED NOT NULL DEFAULT 65535,
  PRIMARY KEY (k),
  KEY kv_expires_at (expires_at),
  KEY kv_slot (slot, k)
) ENGINE=InnoDB;

-- Version blocks: each actor reserves a block of versions with one autocommit UPDATE, so the
-- counter row is never held inside a data transaction and never serializes writers.
CREATE TABLE IF NOT EXISTS kv_seq (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  next_version BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB;

INSERT IGNORE INTO kv_seq (id, next_version) VALUES (1, 1);

-- Identity of this shard: its permanent index (shard id) and, for the record, the shard count and
-- slots it was created with. Which slots it owns NOW is in kv_slots. slots_seeded = 1 once
-- kv_slots was filled from slot_ranges (at creation, or once when a pre-kv_slots data dir is
-- upgraded), so a shard that later moved every slot away is never re-seeded.
-- hash_rule is the store's key -> slot rule (protocol/slot-map.ts), the same in every shard:
-- 1 hash tags (stores created since), 0 the whole key (stores created before: the column's
-- default when it is added), 2 switching (`kvsql hashtags enable` at work or interrupted). A
-- gateway uses the rule its shards record and refuses to serve while they differ or switch.
CREATE TABLE IF NOT EXISTS kv_shard (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  shard_index INT NOT NULL,
  shard_count INT NOT NULL,
  slot_ranges MEDIUMTEXT NOT NULL,
  created_at BIGINT NOT NULL,
  slots_seeded TINYINT UNSIGNED NOT NULL DEFAULT 0,
  hash_rule TINYINT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB;

-- Slot ownership, where the data is (DESIGN.md §10). One row per slot this shard owns, or is
-- moving, or once moved away. No row = not owned. Every read checks it in the same statement as
-- the rows; every write transaction reads it LOCK IN SHARE MODE before locking kv rows, so the
-- mover's UPDATE of one row (the fence) waits for the slot's writes in flight.
--   state  1 owned, 2 copying (owned; writes also log their keys in kv_slot_changes),
--          3 fenced (owned; reads served, writes held), 4 moved (to `peer`, at `epoch`),
--          5 importing (from `peer`; not served until the mover flips it to owned)
--   epoch  grows by one at every move of the slot; the map's highest epoch wins
CREATE TABLE IF NOT EXISTS kv_slots (
  slot SMALLINT UNSIGNED NOT NULL PRIMARY KEY,
  state TINYINT UNSIGNED NOT NULL,
  epoch BIGINT UNSIGNED NOT NULL,
  peer INT NULL,
  updated_at BIGINT NOT NULL
) ENGINE=InnoDB;

-- A counter of changes to the set of slots this shard serves, bumped in the same transaction as
-- each such change (the seeding of kv_slots and the mover's two flips: BUMP_SLOTS_EPOCH in
-- shard-actor/schema-migration.ts). A read batch reads this one row beside its keys instead of
-- every asked slot's row: when n is what the actor last saw with the whole served set, that set
-- is still the snapshot's (DESIGN.md §10); otherwise the read falls back to checking its slots.
-- Anything else that edits kv_slots by hand must bump it too.
CREATE TABLE IF NOT EXISTS kv_slots_epoch (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  n BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB;

INSERT IGNORE INTO kv_slots_epoch (id, n) VALUES (1, 0);

-- Keys written while their slot is being copied away (state 2). n counts writes, so the mover
-- deletes an entry only if no write bumped it since the mover read it.
CREATE TABLE IF NOT EXISTS kv_slot_changes (
  slot SMALLINT UNSIGNED NOT NULL,
  k VARBINARY(1024) NOT NULL,
  n BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (slot, k)
) ENGINE=InnoDB;

-- Other shards of the store this shard has heard of (written by `kvsql shards add` and the
-- mover), so a gateway started with an older shard list still finds a shard added later.
CREATE TABLE IF NOT EXISTS kv_peers (
  shard_index INT NOT NULL PRIMARY KEY,
  url VARCHAR(2048) NOT NULL
) ENGINE=InnoDB;

-- Progress of the current (or last) slot move, written by the mover to every shard it uses and
-- read by gateways into /metrics.
CREATE TABLE IF NOT EXISTS kv_move_progress (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  state VARCHAR(16) NOT NULL,
  slots_total INT NOT NULL,
  slots_done INT NOT NULL,
  rows_copied BIGINT NOT NULL,
  started_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  pause_p99_ms DOUBLE NOT NULL
) ENGINE=InnoDB;

-- The expirer lease: one gateway per shard deletes expired rows. A row, not GET_LOCK, because
-- Galera replicates rows but not GET_LOCK: the lease then holds for the whole shard group.
--   holder      who holds it (pid and random id of one shard actor); '' when never taken
--   expires_at  unix milliseconds on the shard's clock; the holder renews it, a taker needs it past
CREATE TABLE IF NOT EXISTS kv_lease (
  name VARCHAR(32) NOT NULL PRIMARY KEY,
  holder VARCHAR(64) NOT NULL,
  expires_at BIGINT NOT NULL
) ENGINE=InnoDB;

INSERT IGNORE INTO kv_lease (name, holder, expires_at) VALUES ('expirer', '', 0);

-- The change feed (DESIGN.md §16): one row per change of a key, written by the actor in the same
-- transaction as the change (one multi-row INSERT per batch), and by the reap lane in the same
-- transaction as its DELETE (type 5, expired). Not written when KVSQL_FEED is off, nor by the slot
-- mover's copies (a moved key's later changes appear in its new shard's feed).
--   id          AUTO_INCREMENT: allocated at the INSERT, which runs after the batch holds its kv row
--               locks, so two transactions on one key get ids in commit order. Ids of concurrent
--               transactions may commit out of order: readers keep a low-water mark and resolve
--               holes (shard-actor/feed-tailer.ts). The resume cursor is a vector of these ids.
--   k, version  the key, and the version written (put) or acted on (del, expire, persist, expired)
--   at          unix ms on the shard's clock (NOW(3) of the transaction)
--   type        1 put, 2 del, 3 expire (TTL set), 4 persist (TTL cleared), 5 expired (reaped),
--               6, 7, 8 a put by incr, incr float, append (protocol/feed.ts: Redis event names);
--               + 16 on a put that created the key, + 32 on a put whose op set a TTL,
--               0 a filler written by a reader into a hole nobody will fill (see feed-tailer.ts)
--   expires_at  the key's expiry after the change (put, expire), else NULL
CREATE TABLE IF NOT EXISTS kv_feed (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  k VARBINARY(1024) NOT NULL,
  version BIGINT UNSIGNED NOT NULL,
  at BIGINT NOT NULL,
  type TINYINT UNSIGNED NOT NULL,
  expires_at BIGINT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB;

-- Retention of kv_feed: every row with id <= upto is (or is being) deleted; a cursor below it
-- is expired (KV_ERR_CURSOR_EXPIRED). Raised by the expirer lease holder before it deletes.
CREATE TABLE IF NOT EXISTS kv_feed_trim (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  upto BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB;

INSERT IGNORE INTO kv_feed_trim (id, upto) VALUES (1, 0);
