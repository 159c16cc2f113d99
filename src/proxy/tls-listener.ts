/**
 * The TLS port for clients (--tls-port). Its sockets are net.Socket subclasses that carry
 * plaintext once the handshake is done, so they join the same accept path as the plain port's:
 * sessions never know which port a client came in on. SIGHUP reloads the certificate files.
 */
import net from 'node:net';
import tls from 'node:tls';
import { RehomeError } from '../errors.js';
import { checkContext, type ClientTlsConfig, readPem } from '../tls-config.js';

/** Reads the certificate, key and CA files; throws RehomeError ETLS naming the flag and the cause. */
function loadContext(cfg: ClientTlsConfig): tls.SecureContextOptions {
  const opts: tls.SecureContextOptions = {
    cert: readPem('--tls-cert-file', cfg.certFile),
    key: readPem('--tls-key-file', cfg.keyFile),
    ...(cfg.caFile !== null ? { ca: readPem('--tls-ca-cert-file', cfg.caFile) } : {}),
  };
  checkContext('--tls-cert-file/--tls-key-file', opts);
  return opts;
}

/**
 * A tls.Server that hands each client, once its handshake succeeded, to `accept`. Throws at
 * creation when the files do not load (start-up stops with that line).
 */
export function createTlsServer(cfg: ClientTlsConfig, accept: (sock: net.Socket) => void): tls.Server {
  const server = tls.createServer({
    ...loadContext(cfg),
    // Half-open, as the plain port: a client that shuts down its sending side still gets every reply.
    allowHalfOpen: true,
    requestCert: cfg.authClients !== 'no',
    rejectUnauthorized: cfg.authClients === 'yes',
  });
  server.on('secureConnection', (sock: tls.TLSSocket) => {
    // optional, as in Redis: no certificate is fine, one that does not verify is not.
    if (cfg.authClients === 'optional' && !sock.authorized && hasPeerCertificate(sock)) {
      sock.destroy();
      return;
    }
    accept(sock);
  });
  // A failed handshake concerns that client alone (its socket is closed by node:tls).
  server.on('tlsClientError', () => undefined);
  return server;
}

function hasPeerCertificate(sock: tls.TLSSocket): boolean {
  const c = sock.getPeerCertificate();
  return c !== null && Object.keys(c).length > 0;
}

/**
 * Reads the files again and serves them to new connections (connected clients keep theirs).
 * Returns the line to log; a file that does not load keeps the certificates in use.
 */
export function reloadTls(server: tls.Server, cfg: ClientTlsConfig): string {
  try {
    server.setSecureContext(loadContext(cfg));
    return `SIGHUP: TLS certificate reloaded from ${cfg.certFile}`;
  } catch (e) {
    const why = e instanceof RehomeError ? e.message : (e as Error).message;
    return `SIGHUP: TLS certificate not reloaded, the previous one stays in use: ${why}`;
  }
}
