/**
 * Throwaway certificates for TLS tests, made with openssl (EC P-256) in a temporary directory:
 * CAs, and certificates signed by one of them valid for 127.0.0.1 and localhost.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface CertDir {
  /** The path of a file in the directory (`ca.crt`, `server.key`...). */
  file(name: string): string;
  /** The contents of a file in the directory. */
  pem(name: string): Buffer;
  /** Makes `<name>.crt` and `<name>.key`, a self-signed CA. */
  ca(name: string): void;
  /** Makes `<name>.crt` and `<name>.key` signed by the CA `ca`, valid for 127.0.0.1 and localhost. */
  cert(name: string, ca: string): void;
}

export function certDir(): CertDir {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rehome-tls-'));
  const file = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  return {
    file,
    pem: (name) => readFileSync(file(name)),
    ca(name) {
      openssl('req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`);
    },
    cert(name, ca) {
      openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      writeFileSync(file(`${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
      openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
    },
  };
}

/**
 * The usual set: CA `ca`, `server` and `client` signed by it. The redis-server args that give a
 * server a TLS port with them (`authClients`: its tls-auth-clients).
 */
export function standardCerts(): CertDir & { redisArgs(tlsPort: number, authClients: 'yes' | 'no'): string[] } {
  const d = certDir();
  d.ca('ca');
  d.cert('server', 'ca');
  d.cert('client', 'ca');
  return {
    ...d,
    redisArgs: (tlsPort, authClients) => [
      '--tls-port', String(tlsPort),
      '--tls-cert-file', d.file('server.crt'),
      '--tls-key-file', d.file('server.key'),
      '--tls-ca-cert-file', d.file('ca.crt'),
      '--tls-auth-clients', authClients,
    ],
  };
}
