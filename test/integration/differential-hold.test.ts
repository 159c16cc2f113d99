/**
 * Differential test in the hold phase: rehome in front of the old server behaves exactly like the
 * old server (its phase key hidden), and the new server is never touched. Same runner and seeds
 * as differential.test.ts (REHOME_DIFF_SEED replays a failure).
 */
import { describe, expect, it } from 'vitest';
import { runDifferential } from '../helpers/differential.js';
import { usePair, useReferenceRedis } from '../helpers/fixture.js';

const ctx = usePair({ proxyArgs: ['--phase', 'hold'] });
const ref = useReferenceRedis();

async function newServerUntouched(): Promise<void> {
  const t = ctx.target.client();
  try {
    expect(await t.dbsize()).toBe(0);
    // rehome holds no connection to it in hold (only the check's own connection is listed).
    const names = ((await t.client('LIST')) as string).split('\n').map((l) => /name=(\S*)/.exec(l)?.[1] ?? '');
    expect(names.filter((n) => n.startsWith('rehome'))).toEqual([]);
  } finally {
    t.disconnect();
  }
}

describe('differential in hold: proxy vs plain redis', () => {
  it('2000 random commands, one per round trip, get the same replies; the new server stays empty', async () => {
    await runDifferential(ctx, ref, 'sequential');
    await newServerUntouched();
  });

  it('2000 random commands in pipelined batches get the same replies; the new server stays empty', async () => {
    await runDifferential(ctx, ref, 'pipelined');
    await newServerUntouched();
  });

  it('RESP3 (HELLO 3 first): 2000 random commands in pipelined batches get the same bytes', async () => {
    await runDifferential(ctx, ref, 'pipelined', [], 3);
    await newServerUntouched();
  });
});
