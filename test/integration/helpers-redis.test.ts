/**
 * The test servers' helper (test/helpers/redis.ts): a server is handed to a test only once it
 * listens on its port itself. Another server already there answers PING too; trusting that PING,
 * two test files could share one server.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { startRedis, stopAll, type RedisServer } from '../helpers/redis.js';

const open: RedisServer[] = [];
afterAll(async () => {
  await stopAll(...open);
});

describe('startRedis', () => {
  it('refuses a port another server holds, although that server answers PING there', async () => {
    const first = await startRedis();
    open.push(first);
    await expect(startRedis({ port: first.port })).rejects.toThrow(/could not start redis-server/);
    // The first server was not touched.
    const c = first.client();
    expect(await c.ping()).toBe('PONG');
    c.disconnect();
  });
});
