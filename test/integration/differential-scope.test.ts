/**
 * Differential test in a canary migration: with a scope of half the keyspace (18 of the runner's
 * 36 keys), rehome behaves like plain redis, except that commands whose keys lie on both sides of
 * the scope are refused with -CROSSSCOPE (not sent to the reference, and counted); keys out of
 * scope never reach the new server. Same runner and seeds as differential.test.ts
 * (REHOME_DIFF_SEED replays a failure).
 */
import { describe, expect, it } from 'vitest';
import { runDifferential } from '../helpers/differential.js';
import { usePair, useReferenceRedis } from '../helpers/fixture.js';
import { assertNoKeyInBoth, keysByDb } from '../helpers/invariant.js';
import { runCli } from '../helpers/proxy.js';
import { freePort } from '../helpers/redis.js';
import { matchGlob } from '../../src/phase/scope.js';

const ctx = usePair({ autoProxy: false });
const ref = useReferenceRedis();

/** k10..k19, k30..k35, k0, k1: 18 keys. */
const PATTERNS = ['k[13]?', 'k[01]'];

async function scopedProxy(): Promise<void> {
  const admin = `127.0.0.1:${await freePort()}`;
  await ctx.restartProxy(['--phase', 'hold', '--admin', admin]);
  const r = await runCli(['phase', 'migrate', '--admin', admin, ...PATTERNS.flatMap((p) => ['--scope', p])]);
  expect(r.code, r.stderr + r.stdout).toBe(0);
  expect(JSON.parse(r.stdout)).toMatchObject({ to: 'migrate', scope: 'k[01], k[13]?' });
}

async function newHoldsOnlyScope(): Promise<void> {
  const m = await keysByDb(ctx.target.port, [0, 1]);
  const stray = [...m.values()].flat().filter((k) => !k.startsWith('__rehome:') && !PATTERNS.some((p) => matchGlob(p, k)));
  expect(stray).toEqual([]);
}

describe('differential in a canary migration (scope: half the keyspace)', () => {
  for (const [mode, resp] of [['sequential', 2], ['pipelined', 2], ['pipelined', 3]] as const) {
    it(`2000 random commands (${mode}, RESP${resp}) get the same replies, cross-scope ones refused and counted`, async () => {
      await scopedProxy();
      const cross = { counted: 0 };
      await runDifferential(ctx, ref, mode, ['SWAPDB'], resp, async () => undefined, cross);
      console.log(`differential ${mode} RESP${resp} with a scope: ${cross.counted} of 2000 commands refused as cross-scope`);
      expect(cross.counted).toBeGreaterThan(0);
      await newHoldsOnlyScope();
      await assertNoKeyInBoth(ctx.source, ctx.target);
    });
  }
});
