/**
 * A TCP forwarder on a free loopback port that pipes every connection to another port, so a test
 * can make a server reachable at a second address (or cut every connection through it).
 */
import net from 'node:net';

export interface Forwarder {
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Destroys every open connection (the listener stays up). */
  cutAll(): void;
  close(): Promise<void>;
}

export function startForwarder(toPort: number, toHost = '127.0.0.1'): Promise<Forwarder> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect({ port: toPort, host: toHost });
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      resolve({
        port,
        get accepted() {
          return accepted;
        },
        cutAll() {
          for (const s of sockets) s.destroy();
          sockets.clear();
        },
        close() {
          for (const s of sockets) s.destroy();
          sockets.clear();
          return new Promise((r) => server.close(() => r()));
        },
      });
    });
  });
}

/** A loopback port held so that nothing else can bind it; see occupyPort. */
export interface HeldPort {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Holds a free loopback port (a listener), for tests of "address already in use". Connections
 * that reach it are dropped at once: a client left over from another test may dial the reused
 * port number, and a connection kept open would make close() wait for it forever.
 */
export async function occupyPort(): Promise<HeldPort> {
  const srv = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => new Promise<void>((resolve) => srv.close(() => resolve())),
  };
}
