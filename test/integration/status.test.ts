/**
 * Reporting: the admin endpoint's GET /status (JSON) and GET /metrics (Prometheus text), the
 * `rehome status` / `rehome sweeper` CLIs (output and exit codes), and `--progress log` lines.
 *
 * The source is seeded before each proxy starts (a sweeper that starts on an empty source declares
 * the migration drained at once).
 */
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  fetchStatus,
  noKeyInBoth,
  seedStrings,
  useAdminProxies,
  waitDrained,
} from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { freePort } from '../helpers/redis.js';
import { sleep, waitFor } from '../helpers/util.js';

// ------------------------------------------------------------------ helpers (local to this file)

const adminProxy = useAdminProxies();

type Json = Record<string, any>;


async function getMetrics(admin: string): Promise<string> {
  const r = await fetch(`http://${admin}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/text\/plain/);
  return r.text();
}

async function post(admin: string, path: string): Promise<{ code: number; body: Json }> {
  const r = await fetch(`http://${admin}${path}`, { method: 'POST' });
  return { code: r.status, body: (await r.json()) as Json };
}

/**
 * The sum of every sample of `name` whose labels include all of `labels` (Prometheus text format);
 * 0 when there is none.
 */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) have[l[1]!] = l[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}




// ------------------------------------------------------------------ tests

const ctx = usePair({ autoProxy: false });

describe('GET /status and `rehome status`', () => {
  it('reports a migration in progress, then the drained state', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 2000);
    await seedStrings(s, 2, 300);
    // Slow (46 s for the lot), so the checks below see a migration in progress however loaded the
    // machine is; the limit is lifted at the end.
    const ap = await adminProxy(ctx, ['--sweep-rate', '50']);
    const c = ap.proxy.client();
    // Touch 10 keys of db 2 (the sweeper works on db 0 first).
    await c.select(2);
    for (let i = 0; i < 10; i++) expect(await c.get(`k:${i}`)).toBe(`v-2-${i}`);
    await c.select(0);

    const st = await fetchStatus<Json>(ap.admin);
    expect(st.phase).toBe('migrating');
    expect(st.keys.initial_in_source).toBe(2300);
    expect(typeof st.keys.remaining_total).toBe('number');
    expect(st.keys.remaining_total).toBeGreaterThan(0);
    expect(st.keys.remaining_total).toBeLessThanOrEqual(2300);
    const perDb = st.keys.remaining_per_db as Record<string, number>;
    expect(Object.keys(perDb).every((db) => /^\d+$/.test(db))).toBe(true);
    expect(Object.values(perDb).reduce((a, b) => a + b, 0)).toBe(st.keys.remaining_total);
    expect(perDb['2']).toBeGreaterThan(0);
    expect(st.keys.moved_on_touch).toBe(10);
    expect(typeof st.keys.moved_by_sweeper).toBe('number');
    expect(st.keys.in_both_resolved).toBe(0);
    expect(typeof st.rate_keys_per_s).toBe('number');
    expect(st.eta_s === null || typeof st.eta_s === 'number').toBe(true);
    expect(['starting', 'sweeping']).toContain(st.sweeper.state);
    expect(st.sweeper.pause_reason).toBeNull();
    expect(st.sweeper.batch_size).toBeGreaterThan(0);
    expect(st.sweeper.rate_limit).toBe(50);
    expect(st.big_keys).toEqual({ total: 0, listed: [] });
    expect(st.errors_by_kind).toEqual({});
    expect(st.source_restarted).toBeNull();
    expect(st.clients).toBeGreaterThanOrEqual(1);
    expect(st.drained_at).toBeNull();

    // Within a couple of seconds the figures follow the source.
    const s2 = ctx.source.client(2);
    await waitFor(
      async () => {
        const x = await fetchStatus<Json>(ap.admin);
        return x.keys.remaining_per_db['2'] === 290 && (await s2.dbsize()) === 290;
      },
      'remaining_per_db to reflect the touched keys',
      5_000,
      100,
    );

    // The human view.
    const h = await runCli(['status', '--admin', ap.admin]);
    expect(h.code, h.stderr).toBe(0);
    const lines = h.stdout.split('\n');
    for (const head of ['phase', 'source', 'target', 'moved', 'remaining', 'rate', 'sweeper', 'errors', 'clients']) {
      expect(lines.some((l) => l.startsWith(head)), `a line starting with '${head}' in:\n${h.stdout}`).toBe(true);
    }
    expect(h.stdout).toMatch(/^phase\s+migrating/m);
    expect(h.stdout).toMatch(/^remaining\s+\d+ of 2300/m);
    expect(h.stdout).toMatch(/^moved\s+10 on touch/m);
    expect(h.stdout).toMatch(/^sweeper\s+(starting|sweeping).*limit 50 keys\/s/m);

    // --json: parseable, same shape.
    const j = await runCli(['status', '--admin', ap.admin, '--json']);
    expect(j.code, j.stderr).toBe(0);
    const parsed = JSON.parse(j.stdout) as Json;
    expect(parsed.phase).toBe('migrating');
    expect(parsed.keys.initial_in_source).toBe(2300);

    // Lift the limit: it drains.
    expect((await post(ap.admin, '/sweeper/rate?keys_per_sec=0')).code).toBe(200);
    await waitDrained(ap, 15_000);
    const d = await fetchStatus<Json>(ap.admin);
    expect(d.phase).toBe('drained');
    expect(d.keys.remaining_total).toBe(0);
    expect(d.keys.remaining_per_db).toEqual({});
    expect(d.eta_s).toBe(0);
    expect(d.sweeper.state).toBe('drained');
    expect(Number.isNaN(Date.parse(d.drained_at))).toBe(false);
    expect(d.keys.initial_in_source).toBe(2300);
    const h2 = await runCli(['status', '--admin', ap.admin]);
    expect(h2.code).toBe(0);
    expect(h2.stdout).toMatch(/^phase\s+drained/m);
    expect(h2.stdout).toMatch(/^remaining\s+0 of 2300/m);
    await noKeyInBoth(ctx, [ap]);
    // Checked last (reporting, not data).
    expect(d.keys.moved_on_touch + d.keys.moved_by_sweeper, JSON.stringify(d.keys)).toBe(2300);
  });

  it('CLI exit codes: unreachable admin -> 1, missing or bad arguments -> 2', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    // Independent runs: started together.
    const [r1, r1j, r2, r3, r4, r5, r6, r7] = await Promise.all([
      runCli(['status', '--admin', dead]),
      runCli(['status', '--admin', dead, '--json']),
      runCli(['status']),
      runCli(['status', '--admin', dead, '--bogus']),
      runCli(['sweeper', 'pause']),
      runCli(['sweeper', 'rate', '--admin', dead]),
      runCli(['sweeper', 'frobnicate', '--admin', dead]),
      runCli(['sweeper', 'pause', '--admin', dead]),
    ]);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(/cannot reach/);
    expect(r1.stdout).toBe('');
    expect(r1j.code).toBe(1);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/--admin/);
    expect(r3.code).toBe(2);
    expect(r4.code).toBe(2);
    expect(r5.code).toBe(2);
    expect(r6.code).toBe(2);
    expect(r7.code).toBe(1);
    expect(r7.stderr).toMatch(/cannot reach/);
  });

  it('a phase switch answered after the connect timeout (5 s) is waited for, not reported unreachable', async () => {
    // A stand-in for an admin endpoint whose switch takes 6 s (on a loaded machine the fence and
    // the checks on both servers do): a real switch can't be made that slow on demand.
    const slow = http.createServer((req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`${JSON.stringify({ from: 'hold', to: 'migrate', epoch: 2, path: req.url })}\n`);
      }, 6_000);
    });
    const port = await freePort();
    await new Promise<void>((resolve) => slow.listen(port, '127.0.0.1', resolve));
    try {
      const r = await runCli(['phase', 'migrate', '--admin', `127.0.0.1:${port}`], 30_000);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ to: 'migrate', path: '/phase?to=migrate' });
    } finally {
      await new Promise((resolve) => slow.close(resolve));
    }
  });

  it('with --no-sweep: sweeper state "disabled", sweeper control refused (HTTP 409, CLI exit 1)', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 50);
    const ap = await adminProxy(ctx, [], false);
    const st = await fetchStatus<Json>(ap.admin);
    expect(st.phase).toBe('migrating');
    expect(st.sweeper.state).toBe('disabled');
    expect(st.keys.initial_in_source).toBe(50);
    const p = await post(ap.admin, '/sweeper/pause');
    expect(p.code).toBe(409);
    const r = await runCli(['sweeper', 'pause', '--admin', ap.admin]);
    expect(r.code).toBe(1);
    const nf = await fetch(`http://${ap.admin}/nope`);
    expect(nf.status).toBe(404);
    await nf.text();
    const h = await runCli(['status', '--admin', ap.admin]);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^sweeper\s+disabled/m);
    // Nothing moves by itself.
    await sleep(500);
    expect(await s.dbsize()).toBe(50);
    await noKeyInBoth(ctx, [ap]);
  });
});

describe('moved counts', () => {
  it('a multi-key touch counts only the keys that were in the source as moved', async () => {
    const s = ctx.source.client();
    await s.mset('a', '1', 'b', '2', 'c', '3');
    const ap = await adminProxy(ctx, [], false);
    const c = ap.proxy.client();
    // One MIGRATE ... KEYS a nosuch1 nosuch2: only 'a' exists, so one key moves.
    expect(await c.exists('a', 'nosuch1', 'nosuch2')).toBe(1);
    expect(await c.del('b', 'nosuch3')).toBe(1);
    expect(await s.dbsize()).toBe(1);
    await noKeyInBoth(ctx, [ap]);
    const st = await fetchStatus<Json>(ap.admin);
    const m = await getMetrics(ap.admin);
    expect(
      { status: st.keys.moved_on_touch, metric: metric(m, 'rehome_keys_moved_total', { by: 'touch' }) },
      JSON.stringify(st.keys),
    ).toEqual({ status: 2, metric: 2 });
  });
});

describe('GET /metrics', () => {
  it('exports the migration metrics and they grow with traffic', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 1000);
    await seedStrings(s, 3, 100, 't:');
    const ap = await adminProxy(ctx, ['--sweep-rate', '200']);
    const m1 = await getMetrics(ap.admin);
    for (const name of [
      'rehome_keys_moved_total',
      'rehome_keys_remaining',
      'rehome_command_duration_seconds',
      'rehome_migrate_duration_seconds',
      'rehome_commands_total',
      'rehome_drained',
    ]) {
      expect(m1, name).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
    }
    expect(m1).toMatch(/^rehome_keys_moved_total\{by="touch"\} 0$/m);
    expect(m1).toMatch(/^rehome_keys_moved_total\{by="sweeper"\} \d+$/m);
    expect(metric(m1, 'rehome_keys_remaining', { db: '3' })).toBe(100);
    expect(metric(m1, 'rehome_drained')).toBe(0);

    // Traffic: 100 first touches in db 3 (one MIGRATE each) and 400 more commands.
    const c = ap.proxy.client({ db: 3 });
    for (let i = 0; i < 100; i++) expect(await c.get(`t:${i}`)).toBe(`v-3-${i}`);
    for (let i = 0; i < 200; i++) {
      await c.set(`new:${i}`, 'x');
      await c.get(`new:${i}`);
    }
    // The remaining-keys figures refresh every second: wait for db 3's, emptied by the touches.
    const m2 = await waitFor(async () => {
      const m = await getMetrics(ap.admin);
      return metric(m, 'rehome_keys_remaining', { db: '3' }) === 0 ? m : null;
    }, "db 3's remaining keys at 0 in /metrics", 10_000, 100);
    expect(metric(m2, 'rehome_keys_moved_total', { by: 'touch' })).toBe(100);
    expect(metric(m2, 'rehome_keys_moved_total', { by: 'sweeper' })).toBeGreaterThan(0);
    expect(metric(m2, 'rehome_commands_total') - metric(m1, 'rehome_commands_total')).toBeGreaterThanOrEqual(500);
    expect(metric(m2, 'rehome_command_duration_seconds_count')).toBeGreaterThan(metric(m1, 'rehome_command_duration_seconds_count'));
    expect(metric(m2, 'rehome_command_duration_seconds_sum')).toBeGreaterThan(0);
    const mig1 = metric(m1, 'rehome_migrate_duration_seconds_count');
    const mig2 = metric(m2, 'rehome_migrate_duration_seconds_count');
    expect(mig2 - mig1).toBeGreaterThanOrEqual(100);
    expect(metric(m2, 'rehome_migrate_duration_seconds_count', { outcome: 'ok' })).toBeGreaterThanOrEqual(100);
    expect(metric(m2, 'rehome_migrate_keys_total') - metric(m1, 'rehome_migrate_keys_total')).toBeGreaterThanOrEqual(100);
    // Histogram buckets are cumulative and end with +Inf = count.
    expect(metric(m2, 'rehome_migrate_duration_seconds_bucket', { le: '+Inf' })).toBe(mig2);
    expect(metric(m2, 'rehome_keys_remaining', { db: '3' })).toBe(0);
    expect(metric(m2, 'rehome_clients')).toBeGreaterThanOrEqual(1);

    // After the drain: rehome_drained 1, nothing remaining.
    expect((await post(ap.admin, '/sweeper/rate?keys_per_sec=0')).code).toBe(200);
    await waitDrained(ap, 15_000);
    const m3 = await getMetrics(ap.admin);
    expect(metric(m3, 'rehome_drained')).toBe(1);
    // No stale rate once drained.
    expect(metric(m3, 'rehome_move_rate_keys_per_second')).toBe(0);
    expect(metric(m3, 'rehome_keys_remaining')).toBe(0);
    expect(metric(m3, 'rehome_keys_moved_total', { by: 'sweeper' })).toBeGreaterThanOrEqual(metric(m2, 'rehome_keys_moved_total', { by: 'sweeper' }));
    await noKeyInBoth(ctx, [ap]);
    // Checked last (reporting, not data).
    expect(metric(m3, 'rehome_keys_moved_total')).toBe(1100);
  });
});

describe('GET /metrics types and series', () => {
  it('counters are typed counter, process metrics have one prefix, every series is there (at 0) from the start', async () => {
    const ap = await adminProxy(ctx, [], false);
    const m = await getMetrics(ap.admin);
    for (const name of ['rehome_commands_total', 'rehome_keys_moved_total', 'rehome_move_errors_total', 'rehome_move_failures_total', 'rehome_migrate_keys_total']) {
      expect(m, name).toMatch(new RegExp(`^# TYPE ${name} counter$`, 'm'));
    }
    // Every *_total of rehome's own is a counter (prom-client's nodejs_active_*_total are gauges).
    for (const t of m.matchAll(/^# TYPE (rehome_(?!nodejs_)\S+_total) (\w+)$/gm)) expect(`${t[1]} ${t[2]}`).toBe(`${t[1]} counter`);
    expect(m).toMatch(/^# TYPE rehome_process_cpu_seconds_total counter$/m);
    expect(m).toMatch(/^rehome_process_resident_memory_bytes \d+/m);
    expect(m).not.toMatch(/rehome_process_process_/);
    // Zero-valued series, before any traffic, move or error.
    expect(m).toMatch(/^rehome_commands_total 0$/m);
    expect(m).toMatch(/^rehome_keys_moved_total\{by="touch"\} 0$/m);
    expect(m).toMatch(/^rehome_keys_moved_total\{by="sweeper"\} 0$/m);
    for (const kind of ['oom', 'busykey', 'ioerr', 'timeout', 'source-unavailable', 'error']) {
      expect(m, kind).toMatch(new RegExp(`^rehome_move_errors_total\\{kind="${kind}"\\} 0$`, 'm'));
    }
    expect(m).toMatch(/^rehome_move_failures_total 0$/m);
    expect(m).toMatch(/^rehome_migrate_duration_seconds_count\{outcome="ok"\} 0$/m);
    expect(m).toMatch(/^rehome_migrate_duration_seconds_count\{outcome="error"\} 0$/m);
    expect(m).toMatch(/^rehome_drained 0$/m);
    // Counters grow with traffic and never go back between scrapes.
    const c = ap.proxy.client();
    for (let i = 0; i < 20; i++) await c.set(`k${i}`, 'v');
    const m2 = await getMetrics(ap.admin);
    expect(metric(m2, 'rehome_commands_total')).toBeGreaterThanOrEqual(20);
    expect(metric(await getMetrics(ap.admin), 'rehome_commands_total')).toBeGreaterThanOrEqual(metric(m2, 'rehome_commands_total'));
    c.disconnect();
  });
});

describe('--progress', () => {
  it('--progress log prints a progress line within ~6 s; --progress off prints none', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 500);
    // One after the other: logP counts the source ('of 500') as it starts, and a sweeper of the
    // other one running by then would already have moved some keys (seen on a slow CI machine).
    const logP = await adminProxy(ctx, ['--progress', 'log', '--sweep-rate', '20']);
    const offP = await adminProxy(ctx, ['--progress', 'off', '--sweep-rate', '20']);
    const t0 = Date.now();
    await waitFor(() => /progress:/.test(logP.proxy.stderr), "a 'progress:' line on stderr", 7_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}\nstderr:\n${logP.proxy.stderr}`);
    });
    expect(Date.now() - t0).toBeLessThan(7_000);
    const line = logP.proxy.stderr.split('\n').find((l) => l.includes('progress:'))!;
    // 'of 500', or 501 while the other proxy's start-up probe key (rehome plan) is in the source.
    expect(line).toMatch(/progress: \d+ keys left in the source of 50[01]; moved \d+ on touch, \d+ by the sweeper; \d+ keys\/s; ETA \S+ s; sweeper \w+; \d+ clients/);
    expect(offP.proxy.stderr).not.toMatch(/progress:/);
    // No progress bar either: --progress off writes no bar characters.
    expect(offP.proxy.stderr).not.toMatch(/rehome \[/);
    // Stopped first: the check reads the two servers one after the other, and a key a running
    // sweeper moves in between would show in both.
    await Promise.all([logP.proxy.stop('SIGTERM', 3_000), offP.proxy.stop('SIGTERM', 3_000)]);
    await noKeyInBoth(ctx, [logP, offP]);
  });
});
