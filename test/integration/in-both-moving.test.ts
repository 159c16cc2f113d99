/**
 * The keys-in-both check (plan's conflicts, a switch's pre-flight, verify) while a proxy moves
 * keys back to the old server (phase reverse). A key carried new -> old between the check's two
 * looks is in the new server at the first and in the old one at the second: asked in one order
 * only, it counted as a conflict, and a switch was refused ("N keys exist in both").
 */
import { describe, expect, it } from 'vitest';
import { confirmInBoth, type ServerConn } from '../../src/tools/scan-both.js';
import { parseRedisUrl } from '../../src/upstream/endpoint.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { useAdminProxies } from '../helpers/admin.js';
import { assertNoKeyInBoth } from '../helpers/invariant.js';

describe('keys in both while keys move back (phase reverse)', () => {
  const ctx = usePair({ autoProxy: false });
  const startAdminProxy = useAdminProxies();

  it('one really in both is counted; a key moving between the two looks is not', async () => {
    const neu = ctx.target.client();
    const old = ctx.source.client();
    const keys: Buffer[] = [];
    const p = neu.pipeline();
    for (let i = 0; i < 6_000; i++) {
      keys.push(Buffer.from(`k${i}`));
      p.set(`k${i}`, 'v');
    }
    await p.exec();
    const conn = (role: 'source' | 'target', url: string, c: typeof neu): ServerConn => ({
      role,
      endpoint: parseRedisUrl(role, url),
      redis: c,
      authWarning: null,
    });
    const s = conn('source', ctx.source.url, old);
    const t = conn('target', ctx.target.url, neu);
    await neu.set('both', 'new');
    await old.set('both', 'old');
    expect((await confirmInBoth(s, t, 0, [Buffer.from('both'), keys[0]!])).map(String)).toEqual(['both']);
    await old.del('both');
    const ap = await startAdminProxy(ctx, ['--phase', 'migrate', '--sweep-rate', '3000']);
    const r = await runCli(['phase', 'reverse', '--admin', ap.admin]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const reported = new Set<string>();
    let checks = 0;
    while ((await neu.dbsize()) > 0) {
      for (const k of await confirmInBoth(s, t, 0, keys)) reported.add(k.toString());
      checks++;
    }
    expect(checks).toBeGreaterThan(3);
    expect([...reported]).toEqual([]);
    await assertNoKeyInBoth(ctx.source, ctx.target);
    neu.disconnect();
    old.disconnect();
  }, 60_000);
});
