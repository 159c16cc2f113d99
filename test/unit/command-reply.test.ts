/**
 * commandReply (src/commands/fetch.ts): the COMMAND reply read as JSON from a script must be the
 * plain COMMAND reply exactly, and a user refused scripts still gets the table (the plain reply).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandReply, fromScript } from '../../src/commands/fetch.js';
import { CommandTable } from '../../src/commands/table.js';
import { startRedis, stopAll, type RedisServer } from '../helpers/redis.js';

let server: RedisServer | undefined;

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await stopAll(server);
});

describe('commandReply', () => {
  it('equals the plain COMMAND reply, element for element', async () => {
    const c = server!.client(0);
    try {
      const plain = (await c.call('COMMAND')) as unknown[];
      const viaScript = await commandReply(c);
      expect(viaScript).toEqual(plain);
      expect(new CommandTable(viaScript).size).toBe(plain.length);
      // It came from the script: the server ran one EVAL.
      const stats = String(await c.info('commandstats'));
      expect(stats).toMatch(/cmdstat_eval:calls=1,/);
    } finally {
      c.disconnect();
    }
  });

  it('a user that may not run scripts gets the plain reply', async () => {
    const admin = server!.client(0);
    await admin.call('ACL', 'SETUSER', 'noscripts', 'on', '>pw', '~*', '+@all', '-@scripting');
    const c = new Redis({ port: server!.port, host: '127.0.0.1', username: 'noscripts', password: 'pw', lazyConnect: true });
    try {
      await c.connect();
      await expect(c.call('EVAL', 'return 1', '0')).rejects.toThrow(/NOPERM/);
      expect(await commandReply(c)).toEqual(await admin.call('COMMAND'));
    } finally {
      c.disconnect();
      await admin.call('ACL', 'DELUSER', 'noscripts');
      admin.disconnect();
    }
  });

  it("undoes the script's conversion: status replies and empty arrays", () => {
    expect(fromScript(['set', -3, [{ ok: 'write' }, { ok: 'denyoom' }], 1, 1, 1, {}, [['flags', [{ ok: 'RW' }]]], {}])).toEqual([
      'set', -3, ['write', 'denyoom'], 1, 1, 1, [], [['flags', ['RW']]], [],
    ]);
  });
});
