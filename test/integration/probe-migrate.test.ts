/**
 * The probes' MIGRATE (plan's pre-flight check, the move-method probe) asks once more after an
 * IOERR: a target that stalls for one whole timeout is reachable; one that stays silent is not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateOnceMore } from '../../src/tools/move-method.js';
import type { ServerConn } from '../../src/tools/scan-both.js';
import { parseRedisUrl } from '../../src/upstream/endpoint.js';
import { startPair, stopAll, type RedisServer } from '../helpers/redis.js';

let source: RedisServer;
let target: RedisServer;
beforeAll(async () => {
  ({ source, target } = await startPair());
});
afterAll(async () => {
  target?.kill('SIGCONT');
  await stopAll(source, target);
});

function conn(): ServerConn {
  return { role: 'source', endpoint: parseRedisUrl('source', source.url), redis: source.client(), authWarning: null };
}

describe('migrateOnceMore', () => {
  it('a target stopped for one timeout (1 s): the second MIGRATE moves the key', async () => {
    const c = conn();
    await c.redis.set('stall', 'v');
    target.kill('SIGSTOP');
    const resume = setTimeout(() => target.kill('SIGCONT'), 1_500);
    try {
      expect(await migrateOnceMore(c, ['127.0.0.1', target.port, 'stall', 0, 1_000, 'COPY'])).toBe('OK');
    } finally {
      clearTimeout(resume);
      target.kill('SIGCONT');
    }
    const t = target.client();
    expect(await t.get('stall')).toBe('v');
    t.disconnect();
    c.redis.disconnect();
  });

  it('a target silent for both tries: IOERR', async () => {
    const c = conn();
    await c.redis.set('silent', 'v');
    target.kill('SIGSTOP');
    try {
      await expect(migrateOnceMore(c, ['127.0.0.1', target.port, 'silent', 0, 500, 'COPY'])).rejects.toThrow(/^IOERR/);
    } finally {
      target.kill('SIGCONT');
    }
    c.redis.disconnect();
  });
});
