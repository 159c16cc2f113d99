/**
 * Faults between the servers and in the target while clients write and the sweeper drains
 * (issue 5 section 1): CLIENT KILL on both servers, the target stopped (SIGSTOP) past MIGRATE's
 * timeout, a fault-injecting relay on the source -> target path, the target out of memory.
 * See harness.ts for the workload and the checks.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { describeMode, startFaultRelay, type FaultRelay, type RelayMode } from '../helpers/fault-relay.js';
import { sleep } from '../helpers/util.js';
import { faultSeed, killNormalClients, reps, runScenario, setMaxmemory, useFaultPair } from './harness.js';

const SEED = faultSeed('network.test.ts');
const ctx = useFaultPair({ autoProxy: false });

let relay: FaultRelay | null = null;
afterEach(async () => {
  ctx.target.kill('SIGCONT');
  await relay?.close();
  relay = null;
});

async function setTargetMaxmemory(v: string): Promise<void> {
  await setMaxmemory(ctx.target, v);
}

describe('faults: connections and the target', () => {
  it('CLIENT KILL TYPE normal on the source, the target or both, repeatedly', async () => {
    await runScenario(ctx, SEED, 'client-kill', {
      async faults(env) {
        for (const where of env.deal(['source', 'target', 'both'] as const, reps(3, 6))) {
          await env.rest(250, 900);
          const n =
            (where !== 'target' ? await killNormalClients(ctx.source) : 0) +
            (where !== 'source' ? await killNormalClients(ctx.target) : 0);
          env.log(`CLIENT KILL TYPE normal on ${where}: ${n} connections killed`);
        }
        await env.rest(300, 800);
      },
    });
  }, 150_000);

  it('target stopped (SIGSTOP) past MIGRATE timeout, then continued (SIGCONT)', async () => {
    await runScenario(ctx, SEED, 'target-sigstop', {
      async faults(env) {
        for (let i = 0; i < reps(1, 3); i++) {
          await env.rest(400, 1200);
          const ms = env.between(700, 1800);
          ctx.target.kill('SIGSTOP');
          env.log(`target SIGSTOP for ${ms} ms (--migrate-timeout-ms 500)`);
          await sleep(ms);
          ctx.target.kill('SIGCONT');
          env.log('target SIGCONT');
        }
        await env.rest(300, 1000);
      },
      async heal() {
        ctx.target.kill('SIGCONT');
      },
    });
  }, 150_000);

  it('a relay on the source -> target path delays, swallows replies and resets connections', async () => {
    relay = await startFaultRelay(ctx.target.port);
    const r = relay;
    await runScenario(ctx, SEED, 'migrate-relay', {
      proxyArgs: ['--target-from-source', `127.0.0.1:${r.port}`],
      async faults(env) {
        const modes: RelayMode[] = [
          { kind: 'delay', ms: 100 },
          { kind: 'delay', ms: 800 },
          { kind: 'slow', ms: 800 },
          { kind: 'swallow' },
          { kind: 'reset' },
        ];
        for (const m of env.deal(modes, reps(modes.length, 6))) {
          await env.rest(200, 600);
          r.setMode(m);
          env.log(`relay: ${describeMode(m)}`);
          await sleep(env.between(400, 1200));
          r.setMode({ kind: 'pass' });
          env.log('relay: pass');
        }
        env.log(`relay stats ${JSON.stringify(r.stats)}`);
        await env.rest(300, 800);
      },
      async heal() {
        r.setMode({ kind: 'pass' });
      },
    });
  }, 150_000);

  it('target out of memory (maxmemory, noeviction), then memory raised', async () => {
    const report = await runScenario(ctx, SEED, 'target-oom', {
      async faults(env) {
        for (let i = 0; i < reps(1, 2); i++) {
          await env.rest(400, 1200);
          await setTargetMaxmemory('1');
          const ms = env.between(600, 1500);
          env.log(`target maxmemory 1 byte (noeviction) for ${ms} ms`);
          await sleep(ms);
          await setTargetMaxmemory('0');
          env.log('target maxmemory 0 (no limit)');
        }
        await env.rest(300, 1000);
      },
      async heal() {
        ctx.target.kill('SIGCONT');
        await setTargetMaxmemory('0');
      },
    });
    // The limit took effect: INCRs on keys already in the target were refused with OOM.
    expect(Object.keys(report.workload.unknownByCause).filter((k) => k.startsWith('OOM'))).not.toEqual([]);
  }, 150_000);
});
