/**
 * Owns making TLS material for tests at test time: a throwaway CA and certificates it signs, with
 * the openssl CLI (Node's crypto can check certificates but not issue them). Relies on `openssl`
 * on PATH (Debian: package openssl, present wherever ca-certificates is); on a machine without it
 * the first call installs it with apt-get when running as root (src/embedded/mysql-binary aptInstall).
 * Files go under `dir`, which the caller creates and removes.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { aptInstall, aptUnavailable } from '../../src/embedded/mysql-binary';

export interface CertFiles {
  certFile: string;
  keyFile: string;
}

export interface TestCa extends CertFiles {
  /** PEM text of the CA certificate. */
  pem: string;
}

let opensslChecked = false;

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A fresh Debian may lack the openssl command: install it once (root), or say what to install. */
async function ensureOpenssl(): Promise<void> {
  if (opensslChecked) return;
  if (!hasOpenssl()) {
    const unavailable = aptUnavailable();
    if (unavailable !== null) throw new Error(`the TLS tests need the openssl command: apt-get install openssl (${unavailable})`);
    if (!(await aptInstall(['openssl'], hasOpenssl, (msg) => console.error(`certs: ${msg}`))))
      throw new Error('apt-get install openssl did not provide the openssl command');
  }
  opensslChecked = true;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A self-signed CA (EC P-256: fast to make). */
export async function makeCa(dir: string, name = 'kvsql test CA'): Promise<TestCa> {
  await ensureOpenssl();
  const keyFile = path.join(dir, `${name.replace(/\W/g, '_')}.key`);
  const certFile = path.join(dir, `${name.replace(/\W/g, '_')}.pem`);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile]);
  openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    keyFile,
    '-out',
    certFile,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { certFile, keyFile, pem: fs.readFileSync(certFile, 'utf8') };
}

/**
 * A server certificate signed by `ca` for `names` (IP addresses or DNS names), written to
 * `<dir>/<file>.pem` and `<dir>/<file>.key` (so a second call with the same file replaces it).
 */
export async function makeCert(dir: string, ca: TestCa, file: string, names: string[], cn = names[0]): Promise<CertFiles> {
  await ensureOpenssl();
  const keyFile = path.join(dir, `${file}.key`);
  const certFile = path.join(dir, `${file}.pem`);
  const csr = path.join(dir, `${file}.csr`);
  const ext = path.join(dir, `${file}.ext`);
  const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  fs.writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`);
  // Written to temp names and renamed: a server reloading meanwhile sees old or new, never half.
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${keyFile}.new`]);
  openssl(['req', '-new', '-key', `${keyFile}.new`, '-out', csr, '-subj', `/CN=${cn}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-out', `${certFile}.new`, '-days', '2', '-extfile', ext]);
  fs.renameSync(`${keyFile}.new`, keyFile);
  fs.renameSync(`${certFile}.new`, certFile);
  return { certFile, keyFile };
}
