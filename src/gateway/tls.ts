/**
 * Owns reading TLS material from the files the settings name: the gateway's certificate and key
 * (HTTPS/WSS, and the Redis door's TLS) and the CA the actors check MySQL shards against. Relies on
 * config. Reads files only when called (start, SIGHUP), never on a request.
 *
 * uWebSockets.js 20.30 reads the PEM files itself (SSLApp key_file_name/cert_file_name) and says
 * only "App construction failed" when they are wrong, so the files are checked here first with
 * node:crypto, for an error that names the file and the problem.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { MysqlTls } from '../protocol/port-messages';
import { ConfigError, type Config } from '../config/config';

/** The gateway's certificate and key, checked and read (PEM text). */
export interface ServerTls {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  /** The leaf certificate's notAfter, for the log. */
  validTo: string;
}

function readPem(file: string, setting: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${setting}: cannot read ${file}: ${(err as Error).message}`);
  }
}

/** Null when TLS is off (neither file set). Throws ConfigError on one without the other or bad PEM. */
export function serverTls(config: Pick<Config, 'tlsCertFile' | 'tlsKeyFile'>): ServerTls | null {
  const { tlsCertFile, tlsKeyFile } = config;
  if (tlsCertFile === '' && tlsKeyFile === '') return null;
  if (tlsCertFile === '' || tlsKeyFile === '') throw new ConfigError('KVSQL_TLS_CERT_FILE and KVSQL_TLS_KEY_FILE go together: set both for TLS, or neither');
  const certFile = resolve(tlsCertFile);
  const keyFile = resolve(tlsKeyFile);
  const cert = readPem(certFile, 'KVSQL_TLS_CERT_FILE');
  const key = readPem(keyFile, 'KVSQL_TLS_KEY_FILE');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(`KVSQL_TLS_CERT_FILE: ${certFile} holds no PEM certificate (${(err as Error).message})`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new ConfigError(`KVSQL_TLS_KEY_FILE: ${keyFile} holds no unencrypted PEM private key (${(err as Error).message})`);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new ConfigError(`KVSQL_TLS_KEY_FILE: the key in ${keyFile} does not match the certificate in ${certFile}`);
  return { certFile, keyFile, cert, key, validTo: leaf.validTo };
}

/** The actors' TLS to MySQL, with the CA's PEM text read once (workers get it in workerData). */
export function mysqlTls(config: Pick<Config, 'mysqlTls' | 'mysqlTlsCaFile' | 'mysqlTlsVerify'>): MysqlTls | null {
  if (!config.mysqlTls) {
    if (config.mysqlTlsCaFile !== '') throw new ConfigError('KVSQL_MYSQL_TLS_CA_FILE is set but KVSQL_MYSQL_TLS is off: turn KVSQL_MYSQL_TLS on');
    return null;
  }
  const ca = config.mysqlTlsCaFile === '' ? null : readPem(resolve(config.mysqlTlsCaFile), 'KVSQL_MYSQL_TLS_CA_FILE');
  if (ca !== null) {
    try {
      new X509Certificate(ca);
    } catch (err) {
      throw new ConfigError(`KVSQL_MYSQL_TLS_CA_FILE: ${config.mysqlTlsCaFile} holds no PEM certificate (${(err as Error).message})`);
    }
  }
  return { ca, verify: config.mysqlTlsVerify };
}
