#!/usr/bin/env node
/**
 * Owns installing a MySQL server up front (CI), so the first test does not pay for apt-get.
 * Relies on the compiled src/embedded/mysql-binary.js (run after `npm run build`). Does nothing
 * when a server binary is already present; exits non-zero with install instructions otherwise.
 * A reachable Docker engine is not enough here: the embedded cluster prefers a local binary.
 */
'use strict';
const path = require('node:path');
const { ensureMysqlBinary } = require(path.join(__dirname, '..', 'dist', 'src', 'embedded', 'mysql-binary.js'));

ensureMysqlBinary((msg) => console.log(`ensure-mysql: ${msg}`)).then(
  (b) => console.log(`ensure-mysql: ${b.flavor} server at ${b.server}${b.installDb ? ` (init: ${b.installDb})` : ''}`),
  (err) => {
    console.error(`ensure-mysql: ${err.message}`);
    process.exit(1);
  },
);
