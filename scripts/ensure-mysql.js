#!/usr/bin/env node
/**
 * Owns installing a MySQL server (and Galera, for the HA tests) up front (CI), so the first test
 * does not pay for apt-get.
 * Relies on the compiled src/embedded/mysql-binary.js (run after `npm run build`). Does nothing
 * when a server binary is already present; exits non-zero with install instructions otherwise.
 * A reachable Docker engine is not enough here: the embedded cluster prefers a local binary.
 */
'use strict';
const path = require('node:path');
const { ensureMysqlBinary, ensureGalera } = require(path.join(__dirname, '..', 'dist', 'src', 'embedded', 'mysql-binary.js'));

const log = (msg) => console.log(`ensure-mysql: ${msg}`);
(async () => {
  const b = await ensureMysqlBinary(log);
  console.log(`ensure-mysql: ${b.flavor} server at ${b.server}${b.installDb ? ` (init: ${b.installDb})` : ''}`);
  // Galera (galera-4 + rsync) too: the HA tests run 3-node MariaDB clusters (KVSQL_REPLICAS=3).
  if (b.flavor === 'mariadb') {
    const g = await ensureGalera(log);
    console.log(`ensure-mysql: galera provider ${g.provider}, rsync ${g.rsync}`);
  }
})().catch((err) => {
  console.error(`ensure-mysql: ${err.message}`);
  process.exit(1);
});
