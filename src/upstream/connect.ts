/**
 * How every connection rehome makes to a server is opened: plain TCP for redis://, TLS for
 * rediss://. Raw sockets (own connections, shared lanes, fenced control sockets) come from
 * connectSocket; ioredis connections take ioredisTls's options. One place decides, so no
 * connection to a rediss:// server can go out in the clear.
 */
import net from 'node:net';
import tls from 'node:tls';
import { reusedRead } from '../util/reused-read.js';
import type { Endpoint } from './endpoint.js';

/**
 * The node:tls options for a rediss:// endpoint; undefined for redis://. The certificate is
 * always verified: against the endpoint's CA if given, else Node's bundled CAs.
 */
export function tlsOptions(ep: Endpoint): tls.ConnectionOptions | undefined {
  const t = ep.tls;
  if (t === undefined) return undefined;
  // SNI must be a host name: Node refuses an IP address there (and checks the IP in the cert).
  const servername = t.servername ?? (net.isIP(ep.host) ? undefined : ep.host);
  return {
    ...(t.ca !== undefined ? { ca: t.ca } : {}),
    ...(t.cert !== undefined ? { cert: t.cert } : {}),
    ...(t.key !== undefined ? { key: t.key } : {}),
    ...(servername !== undefined ? { servername } : {}),
  };
}

/** Opens a socket to the endpoint, over TLS for rediss://. Wait for connectedEvent(ep) before trusting it. */
export function connectSocket(ep: Endpoint): net.Socket {
  const t = tlsOptions(ep);
  if (t === undefined) {
    const sock: net.Socket = net.connect({ host: ep.host, port: ep.port, onread: reusedRead(() => sock) });
    return sock;
  }
  // Writes before the handshake completes are queued by the TLS socket and sent after it.
  return tls.connect({ ...t, host: ep.host, port: ep.port });
}

/**
 * The event after which the connection is usable: 'connect' for TCP, 'secureConnect' for TLS (a
 * certificate that does not verify fails between the two, and is a failure to connect).
 */
export function connectedEvent(ep: Endpoint): 'connect' | 'secureConnect' {
  return ep.tls === undefined ? 'connect' : 'secureConnect';
}

/** ioredis's `tls` option for the endpoint (an empty object for redis://). */
export function ioredisTls(ep: Endpoint): { tls?: tls.ConnectionOptions } {
  const t = tlsOptions(ep);
  return t === undefined ? {} : { tls: t };
}
