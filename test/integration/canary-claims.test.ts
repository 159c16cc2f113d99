/**
 * A canary's sweep scans with MATCH on the scope's patterns, which never matches a claim key: a
 * key of the scope that a proxy-side move claimed and abandoned (its process died) must still be
 * taken over before the scope counts as drained.
 */
import { describe, expect, it } from 'vitest';
import { fetchStatus, useAdminProxies } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { waitFor } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

describe('canary: abandoned claims of the scope', () => {
  it('a claim left by a dead process is taken over by the scoped sweep before the scope drains', async () => {
    const old = ctx.source.client();
    const neu = ctx.target.client();
    await old.mset('a:1', 'one', 'a:2', 'two', 'b:1', 'out');
    // What a process killed between claim and publish leaves: K renamed to its claim key, and a
    // record whose lease has lapsed (the format of move-scripts.ts).
    await old.rename('a:2', '__rehome:c{a:2}');
    await old.hset('__rehome:r{a:2}', 't', '1', 'o', 'a-dead-process', 'l', '0', 'd', '-1');
    const { admin } = await startAdminProxy(ctx, ['--phase', 'hold', '--move-method', 'dump']);
    const r = await runCli(['phase', 'migrate', '--admin', admin, '--scope', 'a:*']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    await waitFor(async () => ((await fetchStatus<{ scope: { drained: boolean } }>(admin)).scope.drained ? true : null), 'the scope drained', 20_000, 100);
    expect(await neu.get('a:1')).toBe('one');
    expect(await neu.get('a:2')).toBe('two');
    expect(await old.exists('__rehome:c{a:2}', '__rehome:r{a:2}', 'a:2')).toBe(0);
    expect(await old.get('b:1')).toBe('out'); // out of scope: untouched
    expect(await neu.exists('b:1')).toBe(0);
    old.disconnect();
    neu.disconnect();
  });
});
