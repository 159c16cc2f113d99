/**
 * Faults to processes while clients write and the sweeper drains (issue 5 section 1): the proxy
 * killed with SIGKILL and restarted, the source killed and restarted (appendfsync always, so it
 * loses nothing), two proxies on the same pair. See harness.ts for the workload and the checks.
 */
import { describe, expect, it } from 'vitest';
import { sleep, waitFor } from '../helpers/util.js';
import { faultSeed, killNormalClients, reps, resumeSweepersAfterRestart, runScenario, type FaultEnv, useFaultPair } from './harness.js';

const SEED = faultSeed('process.test.ts');
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
  // Once in the short version: two-proxies below and mixed.test.ts kill and restart a proxy too.
  it('proxy killed with SIGKILL and restarted, once (long: three times)', async () => {
    const report = await runScenario(ctx, SEED, 'proxy-sigkill', {
      async faults(env) {
        for (let i = 0; i < reps(1, 3); i++) {
          await env.rest(400, 1500);
          await env.proxies[0]!.kill();
          env.log('proxy 0 SIGKILL');
          await sleep(env.between(0, 500));
          await env.proxies[0]!.start();
          env.log('proxy 0 restarted (--on-conflict target)');
        }
        await env.rest(300, 1000);
      },
    });
    // The kill reached the clients: each of the 8 had its connection closed and dialled again.
    expect(report.workload.connects).toBeGreaterThanOrEqual(16);
  }, 150_000);

  it('source killed and restarted from its AOF (appendfsync always); sweeper resumed over HTTP', async () => {
    let runId = '';
    await runScenario(ctx, SEED, 'source-restart', {
      async faults(env) {
        for (let i = 0; i < reps(1, 2); i++) {
          await env.rest(600, 1500);
          runId = await restartSource(env);
          await resumeSweepersAfterRestart(env, runId);
        }
        await env.rest(300, 1000);
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
        for (const step of env.deal(['kill', 'client-kill'] as const, reps(2, 3))) {
          await env.rest(400, 1200);
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
        await env.rest(300, 1000);
      },
    });
  }, 150_000);
});
