/**
 * A key that crosses twice by the proxy-side move: migrate, then reverse (it comes back), then
 * migrate again. The first crossing's publish-once marker must not make the third one answer
 * MARKED, whose release would delete the source copy: the only one.
 */
import { describe, expect, it } from 'vitest';
import { useAdminProxies } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';

describe('a key crossing again after a rollback (proxy-side move)', () => {
  const ctx = usePair({ autoProxy: false });
  const startAdminProxy = useAdminProxies();

  for (const method of ['dump', 'copy']) {
    it(`migrate -> reverse -> migrate with --move-method ${method}: the key survives every crossing`, async () => {
      const old = ctx.source.client();
      const neu = ctx.target.client();
      await old.set('k', 'v1');
      await old.rpush('l', 'a', 'b');
      const ap = await startAdminProxy(ctx, ['--phase', 'migrate', '--move-method', method], false);
      const c = ap.proxy.client();
      expect(await c.get('k')).toBe('v1');
      expect(await c.lrange('l', 0, -1)).toEqual(['a', 'b']);
      expect(await neu.exists('k', 'l')).toBe(2);

      let r = await runCli(['phase', 'reverse', '--admin', ap.admin]);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      const c2 = ap.proxy.client();
      expect(await c2.get('k')).toBe('v1');
      expect(await c2.lrange('l', 0, -1)).toEqual(['a', 'b']);
      expect(await old.exists('k', 'l')).toBe(2);
      expect(await neu.exists('k', 'l')).toBe(0);

      r = await runCli(['phase', 'migrate', '--admin', ap.admin]);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      const c3 = ap.proxy.client();
      expect(await c3.get('k')).toBe('v1');
      expect(await c3.lrange('l', 0, -1)).toEqual(['a', 'b']);
      expect(await neu.exists('k', 'l')).toBe(2);
      expect(await old.exists('k', 'l')).toBe(0);
      for (const x of [c, c2, c3, old, neu]) x.disconnect();
    }, 60_000);
  }
});
