/**
 * rehome's control connections (ioredis, src/upstream/control.ts and the phase's) must come back
 * after any run of dropped connections. Seen in the fault suites: a connection closed by the
 * server (CLIENT KILL, a restart) while ioredis was still in its connect handshake left the
 * client marked ready on the dead socket, never reconnecting; every later command timed out
 * ("Command timed out" from the sweeper, the old server shown unreachable) for good.
 *
 * A relay in front of a real redis-server drops chosen connections: the first once it is in
 * use, the second as soon as its first bytes (the handshake) arrive.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPool } from '../../src/upstream/control.js';
import { PhaseController } from '../../src/phase/phase.js';
import { useReferenceRedis } from '../helpers/fixture.js';
import { waitFor } from '../helpers/util.js';

const ref = useReferenceRedis();

interface DropRelay {
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  /** Drops every open connection now. */
  dropAll(): void;
  close(): Promise<void>;
}

/** Connection number `n` (1-based) in `dropOnFirstData` is closed when its first bytes arrive. */
async function dropRelay(to: number, dropOnFirstData: ReadonlySet<number>): Promise<DropRelay> {
  const open = new Set<net.Socket>();
  const relay: DropRelay = {
    port: 0,
    accepted: 0,
    dropAll: () => {
      for (const s of open) s.destroy();
    },
    close: () => new Promise((resolve) => {
      relay.dropAll();
      server.close(() => resolve());
    }),
  };
  const server = net.createServer((client) => {
    const n = ++relay.accepted;
    const up = net.connect(to, '127.0.0.1');
    open.add(client);
    open.add(up);
    const gone = () => {
      client.destroy();
      up.destroy();
      open.delete(client);
      open.delete(up);
    };
    client.on('error', gone).on('close', gone);
    up.on('error', gone).on('close', gone);
    if (dropOnFirstData.has(n)) {
      client.once('data', gone);
      return;
    }
    client.pipe(up);
    up.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  relay.port = (server.address() as net.AddressInfo).port;
  return relay;
}

let relays: DropRelay[] = [];
afterEach(async () => {
  await Promise.all(relays.map((r) => r.close()));
  relays = [];
});

describe('control connections after dropped connections', () => {
  it('a control connection dropped in use, then again during its handshake, comes back', async () => {
    const relay = await dropRelay(ref.server.port, new Set([2]));
    relays.push(relay);
    const pool = new ControlPool({ host: '127.0.0.1', port: relay.port }, { commandTimeoutMs: 500, connectTimeoutMs: 1_000 }, 'source');
    try {
      const c = pool.db(0);
      expect(await c.ping()).toBe('PONG');
      relay.dropAll();
      // The reconnect (connection 2) is dropped as its handshake arrives; connection 3 works.
      await waitFor(async () => (await c.ping().catch(() => null)) === 'PONG' || null, 'PING through connection 3', 8_000, 100);
      expect(relay.accepted).toBeGreaterThanOrEqual(3);
    } finally {
      await pool.close();
    }
  }, 20_000);

  it("the phase's connection comes back the same way", async () => {
    const relay = await dropRelay(ref.server.port, new Set([2]));
    relays.push(relay);
    const ep = { host: '127.0.0.1', port: relay.port };
    const phases = await PhaseController.open({ old: ep, new: { host: '127.0.0.1', port: ref.server.port }, id: 'test', pollMs: 100, connectTimeoutMs: 1_000, sweepRate: 0 }, 'hold');
    try {
      expect(phases).not.toBeNull();
      relay.dropAll();
      await waitFor(async () => ((await phases!.fresh().catch(() => null))?.phase === 'hold') || null, 'a fresh read of the phase', 8_000, 100);
    } finally {
      await phases?.close();
    }
  }, 20_000);
});
