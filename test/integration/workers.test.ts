/**
 * --workers N: several processes serve the one --listen port (node:cluster). Clients spread over
 * the workers, keys move whichever worker a client lands on, one `listening on` line, SIGTERM to
 * the primary stops every worker and exits 0, a dead worker is restarted, start-up failures still
 * exit 1 with one line, and --exit-when-drained ends the whole fleet.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fetchStatus, seedStrings } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { assertNoKeyInBoth } from '../helpers/invariant.js';
import { runCli, startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { freePort } from '../helpers/redis.js';
import { occupyPort } from '../helpers/tcp.js';
import { waitFor, withTimeout } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });

/** The live child processes of `pid` (the workers of a primary). */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Established TCP connections whose local port is `port`, by owning process (from /proc). */
function acceptedByPid(pids: number[], port: number): Map<number, number> {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const localPort = parseInt(f[1]!.split(':')[1]!, 16);
      if (localPort === port && f[3] === '01') inodes.add(f[9]!);
    }
  }
  const out = new Map<number, number>();
  for (const pid of pids) {
    let n = 0;
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) n++;
      } catch {
        // closed meanwhile
      }
    }
    out.set(pid, n);
  }
  return out;
}

function listeningLines(p: ProxyHandle): string[] {
  return p.stdout.split('\n').filter((l) => l.includes('listening on'));
}

async function stopAndCheck(p: ProxyHandle, workers: number[]): Promise<void> {
  p.proc.kill('SIGTERM');
  const e = await withTimeout(p.exited, 15_000, 'the primary to exit after SIGTERM');
  expect(e, `stderr:\n${p.stderr}`).toEqual({ code: 0, signal: null });
  await waitFor(() => workers.every((pid) => !alive(pid)), 'every worker to be gone', 5_000);
}

describe('--workers', () => {
  it('two workers share the port: clients land on both, keys move from either, SIGTERM exits 0', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 300);
    const p = await startProxy({ source: ctx.source, target: ctx.target, args: ['--workers', '2'] });
    expect(listeningLines(p)).toHaveLength(1);
    const workers = childPids(p.proc.pid!);
    expect(workers).toHaveLength(2);

    const clients = Array.from({ length: 6 }, () => p.client());
    await Promise.all(clients.map((c) => c.ping()));
    const spread = acceptedByPid(workers, p.port);
    expect([...spread.values()].reduce((a, b) => a + b, 0), 'every client connection is held by a worker').toBe(6);
    for (const [pid, n] of spread) expect(n, `connections held by worker pid ${pid}`).toBeGreaterThan(0);

    // Every client reads every key at once: the same key is moved by both workers concurrently
    // (single-flight is per process; MIGRATE is atomic, so one moves it and the other sees NOKEY).
    const keys = Array.from({ length: 300 }, (_, i) => `k:${i}`);
    const got = await Promise.all(clients.map((c) => c.mget(...keys)));
    const want = await ctx.target.client().mget(...keys);
    expect(want.every((v) => v !== null), 'every key is in the target').toBe(true);
    for (const g of got) expect(g).toEqual(want);
    expect(await s.dbsize()).toBe(0);

    // Writes through each worker, read back through the others.
    await Promise.all(clients.map((c, i) => c.set(`w:${i}`, `v${i}`)));
    for (const c of clients) {
      expect(await c.mget(...clients.map((_, i) => `w:${i}`))).toEqual(clients.map((_, i) => `v${i}`));
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
    await stopAndCheck(p, workers);
  });

  it('SWAPDB while keys move is refused by every worker, and nothing is swapped', async () => {
    const s = ctx.source.client();
    await s.set('sw', 'db0');
    const p = await startProxy({ source: ctx.source, target: ctx.target, args: ['--workers', '2'] });
    try {
      // Enough connections to land on both workers (round-robin).
      const clients = Array.from({ length: 6 }, () => p.client());
      for (const c of clients) {
        await expect(c.swapdb(0, 1)).rejects.toThrow(/^ERR rehome: SWAPDB is refused while keys move/);
        c.disconnect();
      }
      expect(await s.get('sw')).toBe('db0');
    } finally {
      await p.stop('SIGTERM', 5_000);
      s.disconnect();
    }
  });

  it('a worker that dies is restarted with a log line, and new clients are served', async () => {
    await seedStrings(ctx.source.client(), 0, 50);
    const p = await startProxy({ source: ctx.source, target: ctx.target, args: ['--workers', '2'] });
    const before = childPids(p.proc.pid!);
    expect(before).toHaveLength(2);
    const victim = before[1]!;
    process.kill(victim, 'SIGKILL');
    await waitFor(() => /worker \d \(pid \d+\) killed by SIGKILL; restarting it/.test(p.stderr), 'the restart log line', 10_000);
    await waitFor(() => /worker \d \(pid \d+\) listening again/.test(p.stderr), 'the restarted worker to listen', 15_000);
    const after = childPids(p.proc.pid!);
    expect(after).toHaveLength(2);
    expect(after).not.toContain(victim);

    const clients = Array.from({ length: 4 }, () => p.client());
    const vals = await Promise.all(clients.map((c, i) => c.get(`k:${i}`)));
    expect(vals).toEqual(['v-0-0', 'v-0-1', 'v-0-2', 'v-0-3']);
    for (const [pid, n] of acceptedByPid(after, p.port)) expect(n, `connections held by worker pid ${pid}`).toBeGreaterThan(0);
    await assertNoKeyInBoth(ctx.source, ctx.target);
    await stopAndCheck(p, after);
  });

  it('start-up failures exit 1 with one line: unreachable source, port in use', async () => {
    const dead = await freePort();
    const r1 = await runCli(
      ['--listen', '127.0.0.1:0', '--source', `redis://127.0.0.1:${dead}`, '--target', ctx.target.url, '--no-sweep', '--workers', '2'],
      20_000,
    );
    expect(r1.timedOut).toBe(false);
    expect(r1.code).toBe(1);
    expect(r1.stderr.split('\n').filter((l) => l.trim() !== ''), r1.stderr).toHaveLength(1);
    expect(r1.stderr).toMatch(/unreachable/);
    expect(r1.stdout).not.toMatch(/listening on/);

    const blocker = await occupyPort();
    try {
      const port = blocker.port;
      const r2 = await runCli(
        ['--listen', `127.0.0.1:${port}`, '--source', ctx.source.url, '--target', ctx.target.url, '--no-sweep', '--workers', '2'],
        20_000,
      );
      expect(r2.timedOut).toBe(false);
      expect(r2.code).toBe(1);
      expect(r2.stderr.split('\n').filter((l) => l.trim() !== ''), r2.stderr).toHaveLength(1);
      expect(r2.stderr).toMatch(/address already in use/);
    } finally {
      await blocker.close();
    }
  });

  it('--exit-when-drained: worker 1 sweeps and serves admin, every worker learns the drain, the fleet exits 0', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 2000);
    await seedStrings(s, 5, 500);
    const admin = `127.0.0.1:${await freePort()}`;
    const p = await startProxy({
      source: ctx.source,
      target: ctx.target,
      sweep: true,
      args: ['--workers', '2', '--exit-when-drained', '--admin', admin, '--progress', 'off', '--sweep-rate', '500'],
    });
    const workers = childPids(p.proc.pid!);
    // The admin endpoint answers from worker 1, whose sweeper runs; the other worker has none.
    const st = await fetchStatus<{ sweeper: { state: string } }>(admin);
    expect(['starting', 'sweeping']).toContain(st.sweeper.state);
    expect(p.stderr).toMatch(/worker 1: admin endpoint on http:\/\/127\.0\.0\.1:\d+/);
    expect(await p.client().get('k:1999')).toBe('v-0-1999');
    const e = await withTimeout(p.exited, 25_000, 'the fleet to exit after the drain');
    expect(e, `stderr:\n${p.stderr}`).toEqual({ code: 0, signal: null });
    expect(p.stderr).toMatch(/worker 1: migration complete/);
    expect(p.stderr).toMatch(/worker 2: migration complete/);
    expect(p.stderr).not.toMatch(/worker 2: sweeper/);
    expect(p.stderr).not.toMatch(/restarting it/);
    await waitFor(() => workers.every((pid) => !alive(pid)), 'every worker to be gone', 5_000);
    expect(await s.dbsize()).toBe(0);
    const t = ctx.target.client();
    expect(await t.dbsize()).toBe(2000);
    await t.select(5);
    expect(await t.dbsize()).toBe(500);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});
