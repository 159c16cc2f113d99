/**
 * A randomized fault schedule (issue 5 section 1): two proxies on one pair, the MIGRATE path
 * through a fault relay, and every kind of fault once (the long version: eight faults), in an order
 * and with choices drawn from the seed: proxy SIGKILL and restart, CLIENT KILL, target SIGSTOP past
 * MIGRATE's timeout, a relay mode (the mild ones stay on while the next faults run), target out of
 * memory, source restart (appendfsync always) with the sweepers resumed over HTTP. See harness.ts
 * for the workload and the checks.
 */
import { afterEach, describe, it } from 'vitest';
import { describeMode, startFaultRelay, type FaultRelay, type RelayMode } from '../helpers/fault-relay.js';
import { sleep, waitFor } from '../helpers/util.js';
import { faultConnection, faultSeed, killNormalClients, reps, resumeSweepersAfterRestart, runScenario, setMaxmemory, type FaultEnv, useFaultPair } from './harness.js';

const SEED = faultSeed('mixed.test.ts');
const ctx = useFaultPair({
  autoProxy: false,
  source: { args: ['--appendonly', 'yes', '--appendfsync', 'always'] },
});

let relay: FaultRelay | null = null;
afterEach(async () => {
  ctx.target.kill('SIGCONT');
  await relay?.close();
  relay = null;
});

async function targetMaxmemory(v: string): Promise<void> {
  await setMaxmemory(ctx.target, v);
}

type Step = 'proxy-kill' | 'client-kill' | 'target-stop' | 'relay' | 'target-oom' | 'source-restart';
const STEPS: readonly Step[] = ['proxy-kill', 'client-kill', 'target-stop', 'relay', 'target-oom', 'source-restart'];
const MODES: readonly RelayMode[] = [
  { kind: 'pass' },
  { kind: 'delay', ms: 50 },
  { kind: 'delay', ms: 700 },
  { kind: 'slow', ms: 700 },
  { kind: 'swallow' },
  { kind: 'reset' },
];

async function sourceRunId(): Promise<string> {
  const c = faultConnection(ctx.source);
  try {
    return /run_id:(\w+)/.exec(await c.info('server'))![1]!;
  } finally {
    c.disconnect();
  }
}

/** Restarts the source; waits for every proxy that saw the old one to pause, then resumes them all. */
async function restartSource(env: FaultEnv): Promise<void> {
  const how = env.pick(['SIGKILL', 'SIGTERM'] as const);
  const at = Date.now();
  ctx.source.kill(how);
  await waitFor(() => !ctx.source.running, 'the source to exit', 10_000, 10);
  env.log(`source ${how}`);
  await sleep(env.between(0, 300));
  await ctx.source.restart({ keepData: true });
  const runId = await sourceRunId();
  env.log(`source back (run_id ${runId.slice(0, 8)})`);
  await resumeSweepersAfterRestart(env, runId, at);
}

describe('faults: a randomized schedule', () => {
  it('two proxies, MIGRATE through a fault relay, every kind of fault once in an order drawn from the seed (long: eight)', async () => {
    relay = await startFaultRelay(ctx.target.port);
    const r = relay;
    await runScenario(ctx, SEED, 'mixed', {
      proxies: 2,
      proxyArgs: ['--target-from-source', `127.0.0.1:${r.port}`],
      async faults(env) {
        /**
         * Proxy and source restarts happen on a healthy MIGRATE path. While moves time out, every
         * first touch blocks the source in MIGRATE (up to the timeout, a few times per touch), so
         * the source answers everything else slowly: a starting proxy's pre-flight checks, or the
         * probe that would show a proxy the source restarted, could take longer than the test.
         */
        const healthyPath = (env: FaultEnv) => {
          if (r.mode.kind === 'pass') return;
          r.setMode({ kind: 'pass' });
          env.log('relay: pass (before a restart)');
        };
        for (const step of env.deal(STEPS, reps(STEPS.length, 8))) {
          await env.rest(100, 600);
          switch (step) {
            case 'proxy-kill': {
              const p = env.pick(env.proxies);
              await p.kill();
              env.log(`proxy ${p.index} SIGKILL`);
              await sleep(env.between(0, 500));
              healthyPath(env);
              // --force: a pre-flight check may fail while the relay or the target misbehaves.
              await p.start(['--force']);
              env.log(`proxy ${p.index} restarted (--on-conflict target --force)`);
              break;
            }
            case 'client-kill': {
              const where = env.pick(['source', 'target', 'both'] as const);
              const n =
                (where !== 'target' ? await killNormalClients(ctx.source) : 0) +
                (where !== 'source' ? await killNormalClients(ctx.target) : 0);
              env.log(`CLIENT KILL TYPE normal on ${where}: ${n}`);
              break;
            }
            case 'target-stop': {
              const ms = env.between(600, 1500);
              ctx.target.kill('SIGSTOP');
              env.log(`target SIGSTOP for ${ms} ms`);
              await sleep(ms);
              ctx.target.kill('SIGCONT');
              env.log('target SIGCONT');
              break;
            }
            case 'relay': {
              const m = env.pick(MODES);
              r.setMode(m);
              if (m.kind === 'pass' || m.kind === 'reset' || (m.kind === 'delay' && m.ms < 500)) {
                // Mild: moves fail fast or succeed; stays on while the next faults run.
                env.log(`relay: ${describeMode(m)} (stays on)`);
                break;
              }
              // Severe: every move times out, and each first touch holds the source in MIGRATE
              // for the timeout, a few times over; held for a while only, or the source answers
              // nothing else (the test's own commands included).
              const ms = env.between(300, 1000);
              env.log(`relay: ${describeMode(m)} for ${ms} ms`);
              await sleep(ms);
              r.setMode({ kind: 'pass' });
              env.log('relay: pass');
              break;
            }
            case 'target-oom': {
              const ms = env.between(400, 1200);
              await targetMaxmemory('1');
              env.log(`target maxmemory 1 byte for ${ms} ms`);
              await sleep(ms);
              await targetMaxmemory('0');
              env.log('target maxmemory 0');
              break;
            }
            case 'source-restart':
              healthyPath(env);
              await restartSource(env);
              break;
          }
        }
        r.setMode({ kind: 'pass' });
        env.log(`relay: pass; stats ${JSON.stringify(r.stats)}`);
        await env.rest(200, 800);
      },
      async heal() {
        ctx.target.kill('SIGCONT');
        r.setMode({ kind: 'pass' });
        await targetMaxmemory('0').catch(() => {});
        if (!ctx.source.running) await ctx.source.restart({ keepData: true });
      },
    });
  }, 180_000);
});
