/**
 * Shared connections to the target (src/session/shared-lane.ts): commands without connection state
 * of many clients travel on one connection; a client's first other command moves it to its own
 * connection for good, in order; WAIT still covers writes made on the shared connection; a
 * failed shared connection fails only the commands in flight on it.
 */
import net from 'node:net';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { useAdminProxies } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { startProxy } from '../helpers/proxy.js';
import { type RedisServer, startRedis, stopAll } from '../helpers/redis.js';
import { encodeCommand, parseReply, RawClient } from '../helpers/resp.js';
import { waitFor } from '../helpers/util.js';

// DEBUG SLEEP holds the target while a command is in flight (see the killed-connection test).
// No proxy before each test: most tests start the one they need; the others call plainProxy().
// No delay before a replica's first sync (see the WAIT test): Redis waits 5 s by default.
const ctx = usePair({ autoProxy: false, target: { args: ['--enable-debug-command', 'local', '--repl-diskless-sync-delay', '0'] } });
const plainProxy = () => ctx.restartProxy();
const adminProxy = useAdminProxies();
const extraServers: RedisServer[] = [];
afterEach(async () => {
  await stopAll(...extraServers.splice(0));
});

interface ClientRow {
  id: string;
  name: string;
  cmd: string;
}

/** The target's connections (the caller's own excluded). */
async function targetClients(): Promise<ClientRow[]> {
  const c = ctx.target.client();
  try {
    const me = String(await c.client('ID'));
    const list = String(await c.client('LIST'));
    return list
      .trim()
      .split('\n')
      .map((line) => ({
        id: /(?:^| )id=(\d+)/.exec(line)?.[1] ?? '',
        name: /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '',
        cmd: /(?:^| )cmd=(\S*)/.exec(line)?.[1] ?? '',
      }))
      .filter((r) => r.id !== me);
  } finally {
    c.disconnect();
  }
}

async function statusOf(admin: string): Promise<Record<string, unknown>> {
  const r = await fetch(`http://${admin}/status`);
  return (await r.json()) as Record<string, unknown>;
}

describe('shared connections to the target', () => {
  it('carries the stateless commands of many clients on one connection', async () => {
    const { proxy, admin } = await adminProxy(ctx, [], false);
    const clients: Redis[] = Array.from({ length: 12 }, () => proxy.client());
    await Promise.all(
      clients.map(async (c, i) => {
        for (let j = 0; j < 50; j++) {
          expect(await c.set(`k:${i}:${j}`, `v${j}`)).toBe('OK');
          expect(await c.get(`k:${i}:${j}`)).toBe(`v${j}`);
          expect(await c.incr(`n:${i}`)).toBe(j + 1);
        }
      }),
    );
    const rows = await targetClients();
    const shared = rows.filter((r) => /^rehome-shared\.\d+$/.test(r.name));
    expect(shared).toHaveLength(1);
    expect(['set', 'get', 'incr']).toContain(shared[0]!.cmd);
    // No client needed a connection of its own: ioredis's CLIENT SETINFO and INFO ready check
    // went on the shared connection too (the source's MIGRATE connection ran RESTORE).
    const own = rows.filter((r) => r.name === '' && r.cmd !== 'restore');
    expect(own).toEqual([]);
    const st = (await statusOf(admin)).shared_connections as { connections: number; commands: number; failures: number };
    expect(st.connections).toBe(1);
    // ioredis's two CLIENT SETINFO per client went on the shared connection too.
    expect(st.commands).toBe(12 * 150 + 12 * 2);
    expect(st.failures).toBe(0);
    const metrics = await (await fetch(`http://${admin}/metrics`)).text();
    expect(metrics).toMatch(/^rehome_shared_commands_total 1824$/m);
    expect(metrics).toMatch(/^rehome_shared_connection_failures_total 0$/m);
    // Every key is where it should be, with its value.
    const t = ctx.target.client();
    expect(await t.get('k:11:49')).toBe('v49');
    expect(await t.get('n:3')).toBe('50');
    t.disconnect();
  });

  it('1,000 clients doing GET/SET/INCR hold only the shared connection and a handful on the new server', async () => {
    const { proxy } = await adminProxy(ctx, [], false);
    const clients: Redis[] = Array.from({ length: 1000 }, () => proxy.client());
    try {
      await Promise.all(
        clients.map(async (c, i) => {
          expect(await c.set(`m:${i}`, 'v')).toBe('OK');
          expect(await c.get(`m:${i}`)).toBe('v');
          expect(await c.incr(`mc:${i % 10}`)).toBeGreaterThan(0);
        }),
      );
      expect(await clients[0]!.dbsize()).toBe(1010);
      const before = await targetClients();
      const rehomeRows = before.filter((r) => r.cmd !== 'restore');
      // The shared connection, rehome's control connections, nothing per client.
      expect(rehomeRows.length, JSON.stringify(rehomeRows)).toBeLessThanOrEqual(7);
      // A client in another db travels on that db's shared connection: one more in all.
      const c = clients[7]!;
      expect(await c.select(1)).toBe('OK');
      expect(await c.set('in-db1', 'x')).toBe('OK');
      expect((await targetClients()).filter((r) => r.cmd !== 'restore').length).toBe(rehomeRows.length + 1);
      const t1 = ctx.target.client(1);
      expect(await t1.get('in-db1')).toBe('x');
      t1.disconnect();
      // A client that needs connection state gets its own connection then, and behaves as before.
      expect(await c.call('CLIENT', 'NO-EVICT', 'ON')).toBe('OK');
      expect(await c.get('in-db1')).toBe('x');
      expect((await targetClients()).filter((r) => r.cmd !== 'restore').length).toBe(rehomeRows.length + 2);
    } finally {
      for (const c of clients) c.disconnect();
    }
  }, 60_000);

  it('clients that SELECT a db share that db\'s connections; their own opens in their db when needed', async () => {
    const { proxy, admin } = await adminProxy(ctx, [], false);
    // ioredis sends SELECT 2 as it connects (the db in the URL).
    const clients: Redis[] = Array.from({ length: 40 }, () => proxy.client({ db: 2 }));
    await Promise.all(
      clients.map(async (c, i) => {
        for (let j = 0; j < 20; j++) {
          expect(await c.set(`d2:${i}:${j}`, `v${j}`)).toBe('OK');
          expect(await c.incr(`d2n:${i}`)).toBe(j + 1);
        }
      }),
    );
    const rows = (await targetClients()).filter((r) => r.cmd !== 'restore');
    const lanes = rows.filter((r) => /^rehome-shared/.test(r.name));
    expect(lanes.map((r) => r.name).sort(), JSON.stringify(rows)).toEqual(['rehome-shared-db2.1']);
    expect(rows.length, JSON.stringify(rows)).toBeLessThanOrEqual(6);
    const t2 = ctx.target.client(2);
    expect(await t2.get('d2:39:19')).toBe('v19');
    expect(await t2.get('d2n:0')).toBe('20');
    const t0 = ctx.target.client(0);
    expect(await t0.exists('d2:0:0')).toBe(0);
    // A command that needs the client's own connection runs in the client's db there, and the
    // shared connection keeps its db for the next ones; SELECT back to 0 uses db 0's.
    const c = clients[3]!;
    expect(await c.call('CLIENT', 'NO-EVICT', 'ON')).toBe('OK');
    expect(await c.call('DEBUG', 'OBJECT', 'd2:3:0')).toMatch(/^Value at:/);
    expect(await c.get('d2:3:5')).toBe('v5');
    expect(await c.select(0)).toBe('OK');
    expect(await c.get('d2:3:5')).toBeNull();
    expect(await c.set('in-db0', 'y')).toBe('OK');
    expect(await t0.get('in-db0')).toBe('y');
    // An index the server refuses: its own error, and the client stays in its db.
    await expect(clients[4]!.select(99)).rejects.toThrow(/DB index is out of range/);
    expect(await clients[4]!.get('d2:4:1')).toBe('v1');
    const st = (await statusOf(admin)).shared_connections as { connections: number; failures: number };
    expect(st.failures).toBe(0);
    for (const x of clients) x.disconnect();
    t2.disconnect();
    t0.disconnect();
  });

  it('keeps order when a client moves to its own connection mid-pipeline', async () => {
    const proxy = await plainProxy();
    for (let round = 0; round < 3; round++) {
      const raw = await proxy.raw();
      const n = 400;
      const parts: Buffer[] = [];
      for (let i = 0; i < n; i++) parts.push(encodeCommand(['INCR', `ord:${round}`]));
      // ECHO is a connection command: the client is pinned to its own connection here.
      parts.push(encodeCommand(['ECHO', 'pin']));
      for (let i = 0; i < n; i++) parts.push(encodeCommand(['INCR', `ord:${round}`]));
      parts.push(encodeCommand(['MULTI']), encodeCommand(['INCR', `ord:${round}`]), encodeCommand(['EXEC']));
      raw.write(Buffer.concat(parts));
      const replies = (await raw.readReplies(2 * n + 4)).map((b) => parseReply(b));
      const incrs = [...replies.slice(0, n), ...replies.slice(n + 1, 2 * n + 1)];
      expect(replies[n]).toBe('pin');
      expect(incrs).toEqual(Array.from({ length: 2 * n }, (_, i) => i + 1));
      expect(replies.slice(2 * n + 1)).toEqual(['OK', 'QUEUED', [2 * n + 1]]);
      // The pinned client's own connection ran the transaction.
      expect((await targetClients()).some((r) => r.name === '' && r.cmd === 'exec')).toBe(true);
      raw.close();
    }
  });

  it('keeps order when a client switches between the shared and its own connection', async () => {
    const raw = await (await plainProxy()).raw();
    const parts: Buffer[] = [];
    const expected: unknown[] = [];
    let n = 0;
    // LRANGE is not shared (its reply can be large) and does not pin: the client goes back and
    // forth, each switch behind a barrier.
    for (let i = 0; i < 60; i++) {
      parts.push(encodeCommand(['RPUSH', 'sw', String(i)]));
      expected.push(++n);
      parts.push(encodeCommand(['LRANGE', 'sw', '-1', '-1']));
      expected.push([String(i)]);
      parts.push(encodeCommand(['LLEN', 'sw']));
      expected.push(n);
    }
    raw.write(Buffer.concat(parts));
    const replies = (await raw.readReplies(expected.length)).map((b) => parseReply(b));
    expect(replies).toEqual(expected);
    raw.close();
  });

  it('WAIT after writes on the shared connection waits for them', async () => {
    const proxy = await plainProxy();
    const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(ctx.target.port)] });
    extraServers.push(replica);
    const r = replica.client();
    await waitFor(async () => /master_link_status:up/.test(await r.info('replication')), 'the replica in sync');
    const c = proxy.client();
    expect(await c.set('w:1', 'a')).toBe('OK');
    expect(await c.call('WAIT', '1', '5000')).toBe(1);
    // The replica stops acknowledging; a write made on the shared connection must not count as
    // replicated, even though WAIT itself runs on the client's own connection.
    replica.kill('SIGSTOP');
    try {
      const c2 = proxy.client();
      expect(await c2.set('w:2', 'b')).toBe('OK');
      expect(await c2.call('WAIT', '1', '300')).toBe(0);
    } finally {
      replica.kill('SIGCONT');
    }
    await waitFor(async () => (await r.get('w:2')) === 'b', 'w:2 on the replica');
    r.disconnect();
  });

  it('a killed shared connection fails only the commands in flight on it; clients stay connected', async () => {
    const proxy = await plainProxy();
    const c = proxy.client();
    const other = proxy.client();
    expect(await c.set('kill:k', 'v')).toBe('OK');
    expect(await other.get('kill:k')).toBe('v');
    const lane = (await targetClients()).find((r) => /^rehome-shared\./.test(r.name));
    expect(lane).toBeDefined();
    // Hold the target for 300 ms; the GET below reaches it meanwhile and is still unread when the
    // same direct connection's CLIENT KILL (pipelined behind the sleep) closes the shared one.
    const direct = await RawClient.connect(ctx.target.port);
    direct.write(Buffer.concat([encodeCommand(['DEBUG', 'SLEEP', '0.3']), encodeCommand(['CLIENT', 'KILL', 'ID', lane!.id])]));
    await new Promise((res) => setTimeout(res, 80));
    // The target sleeps: the next command waits, unread, on the shared connection.
    const inFlight = c.get('kill:k').then((v) => ({ v }), (e: Error) => ({ e }));
    const replies = (await direct.readReplies(2)).map((b) => parseReply(b));
    direct.close();
    expect(replies).toEqual(['OK', 1]);
    const res = await inFlight;
    expect('e' in res ? res.e.message : `value ${String(res.v)}`).toMatch(/^TRYAGAIN rehome: target unavailable \(shared connection: (connection closed|read ECONNRESET)\)$/);
    // Same client connections, a new shared connection.
    expect(await c.get('kill:k')).toBe('v');
    expect(await other.set('kill:k2', 'w')).toBe('OK');
    expect(c.status).toBe('ready');
    const lanes = (await targetClients()).filter((r) => /^rehome-shared\./.test(r.name));
    expect(lanes).toHaveLength(1);
    expect(lanes[0]!.id).not.toBe(lane!.id);
  });

  it('a client that does not read its replies does not hold up the others', async () => {
    const p = await startProxy({ source: ctx.source, target: ctx.target, args: ['--client-output-buffer-limit', '4mb'] });
    try {
      const t = ctx.target.client();
      await t.set('big', Buffer.alloc(256 * 1024, 'x'));
      t.disconnect();
      // The slow client asks for 64 MB of replies and reads none of them.
      const slow = net.connect(p.port, '127.0.0.1');
      await new Promise<void>((res) => slow.once('connect', () => res()));
      slow.pause();
      const closed = new Promise<void>((res) => slow.once('close', () => res()));
      const gets: Buffer[] = [];
      for (let i = 0; i < 256; i++) gets.push(encodeCommand(['GET', 'big']));
      slow.write(Buffer.concat(gets));
      const c = p.client();
      for (let i = 0; i < 200; i++) expect(await c.incr('fast')).toBe(i + 1);
      // Past --client-output-buffer-limit the slow client is closed, as Redis would do.
      slow.resume();
      slow.on('data', () => undefined);
      await closed;
      expect(await c.incr('fast')).toBe(201);
    } finally {
      await p.stop('SIGTERM', 3_000);
    }
  });

  it('--keepalive keeps clients on the shared connection connected under a server timeout', async () => {
    const t = ctx.target.client();
    await t.config('SET', 'timeout', '2');
    const [kept, off] = await Promise.all([
      startProxy({ source: ctx.source, target: ctx.target, args: ['--keepalive', '1'] }),
      startProxy({ source: ctx.source, target: ctx.target, args: ['--keepalive', '0'] }),
    ]);
    try {
      const a = kept.client();
      const b = off.client();
      // CLIENT SETNAME opens each client's own connection (it carries the name) without pinning
      // the client to it: from then on it sits idle while the INCRs travel on the lane.
      expect(await a.client('SETNAME', 'a')).toBe('OK');
      expect(await b.client('SETNAME', 'b')).toBe('OK');
      expect(await a.incr('ka')).toBe(1);
      expect(await b.incr('kb')).toBe(1);
      // Both work on the shared connection; their own connections stay idle, a's a little longer
      // than b's. Until the server has closed b's and for 1 s more (it looks at each client's idle
      // time several times a second), or 8 s at most.
      let bFailed = '';
      let kaValue = 1;
      for (let i = 0, past = 0; i < 40 && past < 5; i++) {
        await new Promise((res) => setTimeout(res, 200));
        expect(await a.incr('ka')).toBe(++kaValue);
        if (bFailed) past++;
        else await b.incr('kb').catch((e: Error) => (bFailed = e.message));
      }
      // Without keep-alive the server closed b's idle own connection, and with it b.
      expect(bFailed).not.toBe('');
      // With it, a is still connected. After 3.5 s of silence the kept proxy's shared connection
      // is still the same one (the other proxy's, unused since b was closed, is gone by then).
      const lanes = async () => (await targetClients()).filter((r) => /^rehome-shared\./.test(r.name)).map((r) => r.id);
      const before = await lanes();
      await new Promise((res) => setTimeout(res, 3500));
      const after = await lanes();
      expect(after.filter((id) => before.includes(id))).toHaveLength(1);
      expect(await a.incr('ka')).toBe(kaValue + 1);
    } finally {
      t.disconnect(); // idle for seconds: the server may have closed it
      const r = ctx.target.client();
      await r.config('SET', 'timeout', '0');
      r.disconnect();
      await kept.stop('SIGTERM', 3_000);
      await off.stop('SIGTERM', 3_000);
    }
  });

  it('with phases, the shared connection is named for the epoch (so a switch fences it)', async () => {
    const { proxy } = await adminProxy(ctx, ['--phase', 'migrate'], false);
    const c = proxy.client();
    expect(await c.set('ph:k', 'v')).toBe('OK');
    expect(await c.get('ph:k')).toBe('v');
    const names = (await targetClients()).map((r) => r.name);
    expect(names.filter((n) => /^rehome-e\d+-shared\.1$/.test(n))).toHaveLength(1);
    expect(names.some((n) => n === 'rehome-shared.1')).toBe(false);
  });

  it('--shared-connections 0: every client uses its own connection', async () => {
    const p = await startProxy({ source: ctx.source, target: ctx.target, args: ['--shared-connections', '0'] });
    try {
      const a = p.client();
      const b = p.client();
      expect(await a.set('own:a', '1')).toBe('OK');
      expect(await b.get('own:a')).toBe('1');
      const rows = await targetClients();
      expect(rows.some((r) => /shared/.test(r.name))).toBe(false);
      expect(rows.filter((r) => r.cmd === 'set' || r.cmd === 'get')).toHaveLength(2);
    } finally {
      await p.stop('SIGTERM', 3_000);
    }
  });
});
