/**
 * The gentle phase switch (--switch-drain-ms, src/session/carry.ts): at a switch every process
 * stops starting commands, lets those in flight finish, and carries its clients' connections
 * into the next phase, so clients see neither an error nor a closed connection. Two processes,
 * ten clients, a switch every 2 s (the runbook's setting): zero client-visible errors.
 */
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { expectStrings, fetchStatus, noKeyInBoth, seedStrings, useAdminProxies, type AdminProxy } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { sleep, waitFor } from '../helpers/util.js';
import { checkCounters, seedCounters, startCounterWorkload } from '../helpers/workload.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

async function phase(ap: AdminProxy, to: string): Promise<void> {
  const r = await runCli(['phase', to, '--admin', ap.admin], 30_000);
  expect(r.code, r.stderr + r.stdout).toBe(0);
}

async function waitPhase(ap: AdminProxy, want: string): Promise<void> {
  await waitFor(async () => ((await fetchStatus<{ phase: string }>(ap.admin)).phase === want ? true : null), `phase ${want}`, 30_000, 100);
}

/**
 * A client library as applications configure it when a retry could apply a write twice: no
 * resending, no offline queue, no reconnecting. On db 1 with a name: state the switch carries.
 */
function strictClient(url: string, name: string): { errors: string[]; closes: number; writes: number; worst: number; stop(): Promise<void>; client: Redis } {
  const u = new URL(url);
  const client = new Redis({
    host: u.hostname,
    port: Number(u.port),
    db: 1,
    connectionName: name,
    autoResendUnfulfilledCommands: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableReadyCheck: false,
  });
  const out = { errors: [] as string[], closes: 0, writes: 0, worst: 0, client, stop: async () => {} };
  client.on('error', () => {});
  client.on('close', () => out.closes++);
  let stopped = false;
  const loop = (async () => {
    await new Promise((r) => client.once('ready', r));
    for (let i = 0; !stopped; i++) {
      const t0 = performance.now();
      try {
        await client.set(`${name}:${i % 500}`, `w${i}`);
        const v = await client.get(`${name}:${i % 500}`);
        if (v !== `w${i}`) out.errors.push(`read ${String(v)} after writing w${i}`);
        if ((await client.client('GETNAME')) !== name) out.errors.push('the connection lost its name');
        out.writes++;
      } catch (e) {
        out.errors.push((e as Error).message);
        if (client.status === 'end') return;
      }
      out.worst = Math.max(out.worst, performance.now() - t0);
    }
  })();
  out.stop = async () => {
    stopped = true;
    await loop;
    client.removeAllListeners('close');
    client.disconnect();
  };
  return out;
}

describe('the gentle switch', () => {
  it('two processes, ten clients, a switch every 2 s: no client sees an error or a closed connection', async () => {
    const old = ctx.source.client();
    const bases = await seedCounters(old, { counters: 2_000, seed: 31 });
    await seedStrings(old, 1, 3_000);
    const aps = [await startAdminProxy(ctx, ['--phase', 'hold']), await startAdminProxy(ctx, ['--phase', 'hold'])];
    // A held command waits for the whole fleet's switch, which takes seconds on a loaded machine:
    // slow is not an error here (the strict clients have no timeout at all), a command never
    // answered still is. The workload's default (5 s) counted such waits as unknown outcomes.
    const w = startCounterWorkload({ urls: aps.map((a) => a.proxy.url), clients: 8, counters: 2_000, seed: 5, bases, commandTimeoutMs: 30_000 });
    const strict = [strictClient(aps[0]!.proxy.url, 'app-a'), strictClient(aps[1]!.proxy.url, 'app-b')];
    // Every client under way before the first switch.
    await waitFor(() => (w.ackedSoFar() > 200 && strict.every((s) => s.writes > 5)) || null, 'the clients under way', 30_000, 20);
    // A switch every 2 s, counted from the start of each (on a slow machine the next one begins
    // as soon as the last ends): a switch to migrate meets keys still moving back, which neither
    // its keys-in-both check nor its MIGRATE probe (inside the fence only) may trip over.
    const steps = ['migrate', 'reverse', 'migrate', 'reverse', 'migrate'];
    for (let i = 0; i < steps.length; i++) {
      const t0 = Date.now();
      await phase(aps[i % 2]!, steps[i]!);
      await sleep(Math.max(0, 2_000 - (Date.now() - t0)));
    }
    for (const ap of aps) await waitPhase(ap, 'drained');
    // Traffic in the drained phase too, before the tallies.
    const acked = w.ackedSoFar();
    const writes = strict.map((s) => s.writes);
    await waitFor(() => (w.ackedSoFar() > acked + 100 && strict.every((s, i) => s.writes > writes[i]!)) || null, 'the clients served once drained', 30_000, 20);
    const res = await w.stop();
    for (const s of strict) await s.stop();

    const report = strict.map((s) => `${s.writes} writes, worst ${s.worst.toFixed(0)} ms`).join('; ');
    console.log(`gentle switch: ${res.totals.acked} INCRs over ${steps.length} switches; strict clients: ${report}`);
    if (res.totals.unknown > 0) for (const ap of aps) console.log(ap.proxy.stderr.split('\n').filter((l) => /phase|client/.test(l)).join('\n'));
    expect(res.totals.unknownByCause).toEqual({});
    expect(res.totals.unknown).toBe(0);
    // Every connection was carried: none was dialled twice.
    expect(res.totals.connects).toBe(8);
    for (const s of strict) {
      expect(s.errors).toEqual([]);
      expect(s.closes).toBe(0);
      expect(s.writes).toBeGreaterThan(20);
    }
    const neu = ctx.target.client();
    const summary = await checkCounters(res, async (k) => Number(await neu.get(k)));
    expect(summary.applied).toBe(res.totals.acked);
    await expectStrings(neu, 1, 3_000);
    await noKeyInBoth(ctx, aps);
  }, 120_000);

  it('a command that outlasts --switch-drain-ms is cut off as before; the other clients are carried', async () => {
    const aps = [await startAdminProxy(ctx, ['--phase', 'hold', '--switch-drain-ms', '300'])];
    const url = new URL(aps[0]!.proxy.url);
    const opts = { host: url.hostname, port: Number(url.port), retryStrategy: () => null, maxRetriesPerRequest: 0, enableReadyCheck: false };
    const blocked = new Redis(opts);
    const idle = new Redis(opts);
    blocked.on('error', () => {});
    idle.on('error', () => {});
    let idleCloses = 0;
    idle.on('close', () => idleCloses++);
    expect(await idle.set('x', '1')).toBe('OK');
    const pop = blocked.blpop('nothing-comes', 0).then(
      () => 'answered',
      (e: Error) => `error: ${e.message}`,
    );
    // The BLPOP is running on the old server (hold) before the switch.
    const src = ctx.source.client();
    await waitFor(async () => ((await src.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string).includes('cmd=blpop') || null, 'BLPOP running', 30_000, 20);
    src.disconnect();
    await phase(aps[0]!, 'migrate');
    expect(await pop).toMatch(/^error: /);
    expect(await idle.get('x')).toBe('1');
    expect(idleCloses).toBe(0);
    blocked.disconnect();
    idle.disconnect();
  }, 60_000);

  it('--switch-drain-ms 0 closes every client at a switch (the switch of before)', async () => {
    const aps = [await startAdminProxy(ctx, ['--phase', 'hold', '--switch-drain-ms', '0'])];
    const url = new URL(aps[0]!.proxy.url);
    const c = new Redis({ host: url.hostname, port: Number(url.port), retryStrategy: () => null, enableReadyCheck: false });
    c.on('error', () => {});
    let closes = 0;
    c.on('close', () => closes++);
    expect(await c.ping()).toBe('PONG');
    await phase(aps[0]!, 'migrate');
    await waitFor(async () => (closes > 0 ? true : null), 'the client closed', 5_000, 50);
    c.disconnect();
  }, 60_000);
});
