/**
 * A canary's scope drained is a fact for the whole fleet (docs/DESIGN.md "Scope"): the process
 * whose sweeper found no key of the scope left records it in the phase hash for its epoch, and
 * every process of that epoch takes it, with or without a sweeper of its own. Before, each process
 * found it with its own sweeper's pass (a standby after the lease was free, up to a third of the
 * lease later; a process without a sweeper never).
 */
import { describe, expect, it } from 'vitest';
import { noKeyInBoth, useAdminProxies } from '../helpers/admin.js';
import { dataKeys, type Json, phaseCli, waitAll } from '../helpers/canary.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { seedCounters } from '../helpers/workload.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

describe('scope drained, fleet-wide', () => {
  it('a process without a sweeper learns the scope drained from the one that swept it, at once or when it starts later; a new scope starts undrained', async () => {
    const old = ctx.source.client();
    await seedCounters(old, { counters: 200, prefix: 'a:', seed: 1, db: 0 });
    await seedCounters(old, { counters: 2000, prefix: 'b:', seed: 2, db: 0 });
    const [sweeping, quiet] = await Promise.all([
      startAdminProxy(ctx, ['--phase', 'hold']),
      startAdminProxy(ctx, ['--phase', 'hold'], false),
    ]);
    await phaseCli(sweeping, 'migrate', '--scope', 'a:*');
    await waitAll([sweeping], 'the sweeping process finds the scope drained', (s) => s.scope?.drained === true);
    const [st] = await waitAll([quiet], 'the process without a sweeper sees the scope drained', (s) => s.scope?.drained === true, 20_000);
    expect(st!.scope.summary).toMatch(/^scope a:\* drained; \d+ keys outside the scope still on the old server/);
    expect(quiet.proxy.stderr).toMatch(/scope a:\* drained: found by another process's sweeper/);
    // A process started after the drain takes it as it starts.
    const late = await startAdminProxy(ctx, ['--phase', 'hold'], false);
    await waitAll([late], 'a process started later sees the scope drained', (s) => s.scope?.drained === true, 20_000);
    // Keys out of scope still go to the old server through the quiet process.
    const c = quiet.proxy.client();
    expect(await c.incr('b:1')).toBeGreaterThan(0);
    c.disconnect();
    expect((await dataKeys(ctx.target.port)).filter((k) => k.startsWith('b:'))).toEqual([]);
    // A wider scope is a new epoch: drained again only once its own sweep says so (the sweep
    // is paused meanwhile, so it can't have said so yet).
    const sweeper = async (...args: string[]) => {
      const r = await runCli(['sweeper', ...args, '--admin', sweeping.admin]);
      expect(r.code, r.stderr).toBe(0);
    };
    await sweeper('pause');
    await phaseCli(sweeping, 'migrate', '--scope', 'a:*', '--scope', 'b:*');
    const wider = (s: Json) => /a:\*.*b:\*|b:\*.*a:\*/.test(s.scope?.scope ?? '');
    for (const s of await waitAll([sweeping, quiet], 'both on the wider scope', wider)) expect(s.scope.drained).toBe(false);
    await sweeper('resume');
    await waitAll([sweeping, quiet], 'the wider scope drained on both', (s) => wider(s) && s.scope?.drained === true, 30_000);
    expect((await dataKeys(ctx.source.port)).filter((k) => k.startsWith('a:') || k.startsWith('b:'))).toEqual([]);
    await noKeyInBoth(ctx, [sweeping, quiet, late]);
  }, 60_000);

  it('--sweep-rate paces the keys a scoped sweep moves, not the keys its SCAN MATCH walks past', async () => {
    const old = ctx.source.client();
    await seedCounters(old, { counters: 60, prefix: 'a:', seed: 3, db: 0 });
    await seedCounters(old, { counters: 6000, prefix: 'b:', seed: 4, db: 0 });
    // Paced by the keys walked, one pass over 6,060 keys at 100 keys/s would take a minute.
    const ap = await startAdminProxy(ctx, ['--phase', 'hold', '--sweep-rate', '100']);
    await phaseCli(ap, 'migrate', '--scope', 'a:*');
    await waitAll([ap], 'the scope of 60 keys drained at 100 keys/s', (s) => s.scope?.drained === true, 20_000);
    expect((await dataKeys(ctx.target.port)).length).toBe(60);
    expect((await dataKeys(ctx.source.port)).length).toBe(6000);
  }, 60_000);
});
