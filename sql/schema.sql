-- kvsql schema, one copy per shard database. Applied at every start; every statement is
-- idempotent. Runs on MySQL 8.x and MariaDB 10.11 (no `AS new` upsert alias, no CHECK tricks).

-- The data. One row per live (or expired, not yet reaped) key.
--   k           the key bytes, binary-safe; primary key, so InnoDB clusters rows by key and a
--               point read or a sorted multi-key lock is one B-tree walk per key.
--   v           the value bytes (up to the configured limit; LONGBLOB so the limit is ours).
--   version     unique per shard, never reused: taken from kv_seq blocks (see version-allocator).
--   expires_at  unix milliseconds on the shard's clock, NULL for no TTL. Indexed so the expirer
--               finds due keys by range scan; NULLs sort first and are never scanned.
CREATE TABLE IF NOT EXISTS kv (
  k VARBINARY(1024) NOT NULL,
  v LONGBLOB NOT NULL,
  version BIGINT UNSIGNED NOT NULL,
  expires_at BIGINT NULL,
  PRIMARY KEY (k),
  KEY kv_expires_at (expires_at)
) ENGINE=InnoDB;

-- Version blocks: each actor reserves a block of versions with one autocommit UPDATE, so the
-- counter row is never held inside a data transaction and never serializes writers.
CREATE TABLE IF NOT EXISTS kv_seq (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  next_version BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB;

INSERT IGNORE INTO kv_seq (id, next_version) VALUES (1, 1);

-- Identity of this shard: which index and which slots it was created for. A gateway whose slot
-- map disagrees refuses to start rather than serve keys from the wrong shard.
CREATE TABLE IF NOT EXISTS kv_shard (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  shard_index INT NOT NULL,
  shard_count INT NOT NULL,
  slot_ranges MEDIUMTEXT NOT NULL,
  created_at BIGINT NOT NULL
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
