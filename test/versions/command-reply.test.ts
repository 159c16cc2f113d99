/**
 * commandReply (src/commands/fetch.ts) on every server version: the COMMAND reply read as JSON
 * from a script equals the plain reply (Redis 6.2 has no key specs; 7.x and Valkey have them).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { commandReply } from '../../src/commands/fetch.js';
import { startRedis, stopAll, type RedisServer } from '../helpers/redis.js';
import { serverBinaries, type ServerName } from '../helpers/servers.js';

const names: ServerName[] = ['redis-6.2.16', 'redis-7.2.6', 'redis-7.4.1', 'valkey-8.0.1'];
const bins = serverBinaries(...names);
const open: RedisServer[] = [];
afterAll(async () => {
  await stopAll(...open);
});

describe.skipIf(!bins)('commandReply on every server version', () => {
  for (const name of names) {
    it(`${name}: the script's reply equals COMMAND's`, async () => {
      const s = await startRedis({ binary: bins![name] });
      open.push(s);
      const c = s.client(0);
      try {
        const plain = (await c.call('COMMAND')) as unknown[];
        expect(plain.length).toBeGreaterThan(150);
        expect(await commandReply(c)).toEqual(plain);
        expect(String(await c.info('commandstats'))).toMatch(/cmdstat_eval:calls=1,/);
      } finally {
        c.disconnect();
      }
    });
  }
});
