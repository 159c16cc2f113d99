/**
 * Faults to processes while clients write and the sweeper drains (issue 5 section 1): the proxy
 * killed with SIGKILL and restarted, the source killed and restarted (appendfsync always, so it
 * loses nothing), two proxies on the same pair. See harness.ts for the workload and the checks.
 */
import { describe, expect, it } from 'vitest';
import { expectStrings, fetchStatus, noKeyInBoth, seedStrings, useAdminProxies, waitDrained } from '../helpers/admin.js';
import { sleep, waitFor } from '../helpers/util.js';
import { faultSeed, killNormalClients, resumeSweepersAfterRestart, runScenario, type FaultEnv, useFaultPair } from './harness.js';

const SEED = faultSeed('process.test.ts');
const startAdmin = useAdminProxies();

async function post(admin: string, path: string): Promise<number> {
  const r = await fetch(`http://${admin}${path}`, { method: 'POST' });
  await r.text();
  return r.status;
}
const ctx = useFaultPair({
  autoProxy: false,
  source: { args: ['--appendonly', 'yes', '--appendfsync', 'always'] },
});

/** Kills the source with SIGKILL (or stops it with SIGTERM) and starts it again from its AOF. */
async function restartSource(env: FaultEnv): Promise<string> {
  const how = env.pick(['SIGKILL', 'SIGKILL', 'SIGTERM'] as const);
  const before = /run_id:(\w+)/.exec(await ctx.source.client().info('server'))![1]!;
  ctx.source.kill(how);
  await waitFor(() => !ctx.source.running, 'the source to exit', 10_000, 10);
  env.log(`source killed (${how})`);
  await sleep(env.between(0, 400));
  await ctx.source.restart({ keepData: true });
  const after = /run_id:(\w+)/.exec(await ctx.source.client().info('server'))![1]!;
  env.log(`source back (run_id ${before.slice(0, 8)} -> ${after.slice(0, 8)})`);
  return after;
}

describe('faults: processes', () => {
  it('proxy killed with SIGKILL and restarted, three times', async () => {
    await runScenario(ctx, SEED, 'proxy-sigkill', {
      async faults(env) {
        for (let i = 0; i < 3; i++) {
          await sleep(env.between(400, 1500));
          await env.proxies[0]!.kill();
          env.log('proxy 0 SIGKILL');
          await sleep(env.between(0, 500));
          await env.proxies[0]!.start();
          env.log('proxy 0 restarted (--on-conflict target)');
        }
        await sleep(env.between(300, 1000));
      },
    });
  }, 150_000);

  it('source killed and restarted from its AOF (appendfsync always); sweeper resumed over HTTP', async () => {
    let runId = '';
    await runScenario(ctx, SEED, 'source-restart', {
      async faults(env) {
        for (let i = 0; i < 2; i++) {
          await sleep(env.between(600, 1500));
          runId = await restartSource(env);
          await resumeSweepersAfterRestart(env, runId);
        }
        await sleep(env.between(300, 1000));
      },
      async heal() {
        if (!ctx.source.running) await ctx.source.restart({ keepData: true });
      },
    });
  }, 150_000);

  it('two proxies on the same pair; one killed and restarted, source clients killed', async () => {
    await runScenario(ctx, SEED, 'two-proxies', {
      proxies: 2,
      async faults(env) {
        for (let i = 0; i < 3; i++) {
          await sleep(env.between(400, 1200));
          const step = env.pick(['kill', 'client-kill'] as const);
          if (step === 'kill') {
            const p = env.pick(env.proxies);
            await p.kill();
            env.log(`proxy ${p.index} SIGKILL`);
            await sleep(env.between(0, 600));
            await p.start();
            env.log(`proxy ${p.index} restarted`);
          } else {
            const n = await killNormalClients(ctx.source);
            env.log(`CLIENT KILL TYPE normal on the source: ${n} killed (sweeper lease dropped)`);
          }
        }
        await sleep(env.between(300, 1000));
      },
    });
  }, 150_000);
});

describe('faults: a source restarted with a slow load', () => {
  // An RDB snapshot whose first db holds only keys that expire before the restart: a loading
  // source skips them (each costs --key-load-delay), so for seconds its INFO keyspace shows no
  // key at all while the real data (db 5) is not loaded yet. Events are served every 1 KB of
  // load, so the proxy sees the restart, and the operator resumes the sweeper, meanwhile.
  const slow = useFaultPair({
    autoProxy: false,
    source: { args: ['--key-load-delay', '1000', '--loading-process-events-interval-bytes', '1024'] },
  });

  it('a sweeper resumed while the source still loads does not take it for drained', async () => {
    const s = slow.source.client();
    const p = s.pipeline();
    for (let i = 0; i < 4000; i++) p.set(`gone:${i}`, 'x', 'PX', 1000);
    await p.exec();
    await seedStrings(s, 5, 2000);
    expect(await s.call('SAVE')).toBe('OK');
    const sp = await startAdmin(slow, ['--sweep-rate', '50']);
    await sleep(1_200); // the gone:* keys expire; the snapshot still has them
    slow.source.kill('SIGKILL');
    await waitFor(() => !slow.source.running, 'the source to exit', 10_000, 10);
    const restarted = slow.source.restart({ keepData: true }); // resolves once loaded
    let loaded = false;
    void restarted.then(() => (loaded = true));
    await waitFor(
      async () => (await fetchStatus<{ sweeper: { state: string } }>(sp.admin)).sweeper.state === 'paused',
      'the proxy to pause its sweeper on the restart',
      10_000,
      20,
    );
    expect(loaded, 'the source finished loading before the test could resume the sweeper').toBe(false);
    expect(await post(sp.admin, '/sweeper/resume')).toBe(200);
    const phases: string[] = [];
    while (!loaded) {
      phases.push((await fetchStatus<{ phase: string }>(sp.admin)).phase);
      await sleep(50);
    }
    expect(phases.filter((ph) => ph === 'drained').length, `phases while the source loaded: ${phases.join(' ')}`).toBe(0);
    expect(await slow.source.client(5).dbsize()).toBeGreaterThan(0);
    expect(await post(sp.admin, '/sweeper/rate?keys_per_sec=0')).toBe(200);
    await waitDrained(sp, 20_000);
    await expectStrings(slow.target.client(), 5, 2000);
    expect(await slow.source.client(5).dbsize()).toBe(0);
    await noKeyInBoth(slow, [sp]);
  }, 60_000);
});

describe('faults: a pause that arrives while the sweeper waits on the source', () => {
  it('is kept: the sweeper does not resume by itself when the source answers again', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 3000);
    const sp = await startAdmin(ctx, ['--sweep-rate', '200', '--migrate-timeout-ms', '500']);
    await waitFor(async () => (await s.dbsize()) < 2950, 'the sweeper to start moving keys', 10_000, 50);
    // Stopped source: the sweeper's batch times out (1.5 s), it waits 1 s, then asks the source
    // for its keyspace again and waits there. The operator pauses it meanwhile.
    ctx.source.kill('SIGSTOP');
    try {
      await sleep(3_500);
      expect(await post(sp.admin, '/sweeper/pause')).toBe(200);
      await sleep(300);
    } finally {
      ctx.source.kill('SIGCONT');
    }
    await sleep(500);
    const before = await s.dbsize();
    await sleep(1_500);
    const st = await fetchStatus<{ sweeper: { state: string; pause_reason: string | null } }>(sp.admin);
    expect(st.sweeper.state, `stderr:\n${sp.proxy.stderr}`).toBe('paused');
    expect(await s.dbsize(), 'keys moved while paused').toBe(before);
    expect(await post(sp.admin, '/sweeper/resume')).toBe(200);
    expect(await post(sp.admin, '/sweeper/rate?keys_per_sec=0')).toBe(200);
    await waitDrained(sp, 20_000);
    await expectStrings(ctx.target.client(), 0, 3000);
    await noKeyInBoth(ctx, [sp]);
  }, 60_000);
});
