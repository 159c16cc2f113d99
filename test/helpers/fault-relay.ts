/**
 * A TCP relay that injects faults, for the source -> target path of MIGRATE (point the proxy's
 * --target-from-source at it). Modes, switchable at any time:
 *   pass     bytes flow both ways untouched;
 *   delay    every chunk, both ways, is held `ms` before it is passed on (order kept); a side that
 *            closes meanwhile still gets what was held for it, then the close (as TCP would);
 *   slow     bytes towards the server are held `ms`, and dropped if the client gives up first
 *            (a server too slow to read: nothing the client sent in the meantime runs);
 *   swallow  requests reach the server, its replies are dropped (the client waits, then times out:
 *            the server did the work, the client cannot know);
 *   reset    every open connection is reset (RST), and so is every new one, on accept.
 * Modes apply to connections open now and later. `stats` counts what happened, for logs.
 */
import net from 'node:net';

export type RelayMode =
  | { kind: 'pass' }
  | { kind: 'delay'; ms: number }
  | { kind: 'slow'; ms: number }
  | { kind: 'swallow' }
  | { kind: 'reset' };

export interface FaultRelay {
  readonly port: number;
  readonly mode: RelayMode;
  readonly stats: { accepted: number; resets: number; swallowedBytes: number; droppedBytes: number };
  setMode(mode: RelayMode): void;
  close(): Promise<void>;
}

export function describeMode(m: RelayMode): string {
  return m.kind === 'delay' || m.kind === 'slow' ? `${m.kind} ${m.ms} ms` : m.kind;
}

interface Pair {
  client: net.Socket;
  server: net.Socket;
  /** Timers of chunks held for a delayed write (both directions). */
  timers: Set<NodeJS.Timeout>;
}

function reset(s: net.Socket): void {
  if (s.destroyed) return;
  if (typeof s.resetAndDestroy === 'function' && s.readyState === 'open') s.resetAndDestroy();
  else s.destroy();
}

export function startFaultRelay(toPort: number, toHost = '127.0.0.1'): Promise<FaultRelay> {
  let mode: RelayMode = { kind: 'pass' };
  const stats = { accepted: 0, resets: 0, swallowedBytes: 0, droppedBytes: 0 };
  const pairs = new Set<Pair>();

  const drop = (p: Pair) => {
    for (const t of p.timers) clearTimeout(t);
    p.timers.clear();
    pairs.delete(p);
  };

  const resetPair = (p: Pair) => {
    stats.resets++;
    reset(p.client);
    reset(p.server);
    drop(p);
  };

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    stats.accepted++;
    const upstream = net.connect({ port: toPort, host: toHost, allowHalfOpen: true });
    const p: Pair = { client, server: upstream, timers: new Set() };
    pairs.add(p);
    if (mode.kind === 'reset') {
      // Reset once connected, so the peer sees ECONNRESET rather than a clean close.
      upstream.once('connect', () => resetPair(p));
      client.on('error', () => {});
      upstream.on('error', () => {});
      return;
    }
    // Bytes held for the server in 'slow' mode; dropped if the client goes away first.
    let heldForServer = 0;
    const abandon = () => {
      if (mode.kind !== 'slow' || heldForServer === 0) return false;
      stats.droppedBytes += heldForServer;
      heldForServer = 0;
      for (const t of p.timers) clearTimeout(t);
      p.timers.clear();
      reset(upstream);
      return true;
    };
    // Bytes from `from` to `to`; `toServer` tells the direction.
    const wire = (from: net.Socket, to: net.Socket, toServer: boolean) => {
      let held = 0;
      let ended = false;
      const later = (ms: number, d: Buffer) => {
        held++;
        if (toServer) heldForServer += d.length;
        const t = setTimeout(() => {
          p.timers.delete(t);
          held--;
          if (toServer) heldForServer -= d.length;
          if (!to.destroyed) to.write(d);
          if (held === 0 && ended && !to.destroyed) to.end();
        }, ms);
        p.timers.add(t);
      };
      from.on('data', (d: Buffer) => {
        const m = mode;
        if (m.kind === 'reset') {
          resetPair(p);
          return;
        }
        if (m.kind === 'swallow' && !toServer) {
          stats.swallowedBytes += d.length;
          return;
        }
        if (m.kind === 'delay' || (m.kind === 'slow' && toServer)) {
          later(m.ms, d);
          return;
        }
        if (!to.destroyed) to.write(d);
      });
      from.on('end', () => {
        ended = true;
        if (toServer && abandon()) return;
        if (held === 0 && !to.destroyed) to.end();
      });
    };
    wire(client, upstream, true);
    wire(upstream, client, false);
    // A reset or error on one side is passed on, unless data is still held for the other side
    // (delay mode delivers it first, as TCP would; slow mode drops what the server never read).
    client.on('error', () => {
      if (!abandon() && p.timers.size === 0) reset(upstream);
    });
    upstream.on('error', () => {
      if (p.timers.size === 0) reset(client);
    });
    const closed = () => {
      if (client.destroyed && upstream.destroyed) drop(p);
    };
    client.on('close', closed);
    upstream.on('close', closed);
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      resolve({
        port,
        get mode() {
          return mode;
        },
        stats,
        setMode(m: RelayMode) {
          mode = m;
          if (m.kind === 'reset') for (const p of [...pairs]) resetPair(p);
        },
        close() {
          for (const p of [...pairs]) resetPair(p);
          return new Promise((r) => server.close(() => r()));
        },
      });
    });
  });
}
