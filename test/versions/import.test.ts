/**
 * `rehome import` (issue 15 item 5) of files written by other versions: a Redis 7.4.1 RDB (version
 * 12) into Valkey 8.0.1 and into a machine with only Redis 7.0, a Redis 6.2 RDB into Redis 7.0.
 * Checked as in test/integration/import.test.ts (test/helpers/import.ts). Version binaries come
 * from REHOME_SERVERS; a case whose binary is missing skips with a one-line notice.
 */
import { copyFileSync, mkdtempSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectGone, expectSame, runImport, useImport } from '../helpers/import.js';
import { serverBinaries, serverBinary } from '../helpers/servers.js';

const { server, scratch, rdbFrom } = useImport();

describe('rehome import of files other versions wrote', () => {
  const v74 = serverBinaries('redis-7.4.1', 'valkey-8.0.1');
  describe.skipIf(!v74)('Redis 7.4.1 RDB (version 12)', () => {
    it('-> Valkey 8.0.1: loaded by Redis 7.4.1, moved by the type-aware copy, TTLs to the ms', async () => {
      const { file, held } = await rdbFrom(v74!['redis-7.4.1']);
      const target = await server(v74!['valkey-8.0.1']);
      const r = await runImport(['--rdb', file], target);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/\(RDB version 12\) with Redis 7\.4\.1/);
      expect(r.stderr).toMatch(/moves old -> new by copy/);
      await expectSame(target, held, 0);
      await expectGone(r.stderr);
    }, 240_000);

    it('-> Valkey 8.0.1 with a hash whose fields have TTLs (Valkey has none): refused before any key moves, the key named', async () => {
      const s = await server(v74!['redis-7.4.1']);
      await s.client(0).set('plain', 'v');
      await s.client(0).hset('fields-ttl', 'a', '1', 'b', '2');
      await s.client(0).call('HPEXPIRE', 'fields-ttl', 3_600_000, 'FIELDS', 1, 'a');
      await s.stop({ save: true });
      const file = path.join(mkdtempSync(path.join(scratch, 'hfe-')), 'dump.rdb');
      copyFileSync(path.join(s.dir, 'dump.rdb'), file);
      const target = await server(v74!['valkey-8.0.1']);
      const r = await runImport(['--rdb', file], target);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/FAIL .*can't hold[\s\S]*'fields-ttl'/);
      expect(await target.client(0).dbsize()).toBe(0);
      await expectGone(r.stderr);
    }, 240_000);

    it('with only Redis 7.0 here: fails naming the version it needs and what was found, before any server starts', async () => {
      const { file } = await rdbFrom(v74!['redis-7.4.1']);
      const target = await server();
      const empty = mkdtempSync(path.join(scratch, 'no-servers-'));
      const r = await runImport(['--rdb', file], target, [], { REHOME_SERVERS: empty, PATH: path.dirname(serverBinary('redis-7.0')!) });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no server here reads RDB version 12 .*found Redis 7\.0\.\d+ .*reads RDB up to version 10.*--server-bin/);
      expect(r.stderr).not.toMatch(/loading/);
      const forced = await runImport(['--rdb', file], target, ['--server-bin', serverBinary('redis-7.0')!]);
      expect(forced.code).toBe(1);
      expect(forced.stderr).toMatch(/--server-bin Redis 7\.0\.\d+ .* cannot read RDB version 12/);
      expect(await target.client(0).dbsize()).toBe(0);
    }, 240_000);
  });

  const v62 = serverBinaries('redis-6.2.16');
  describe.skipIf(!v62)('Redis 6.2 RDB (version 9)', () => {
    it('-> Redis 7.0: loaded by Redis 6.2 (the oldest that reads it)', async () => {
      const { file, held } = await rdbFrom(v62!['redis-6.2.16']);
      const target = await server();
      const r = await runImport(['--rdb', file], target);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/\(RDB version 9\) with Redis 6\.2\.16 .*also able: Redis 7\.0/);
      // 6.2 has no PEXPIRETIME: the deadlines were read as now + PTTL.
      await expectSame(target, held, 1_000);
    }, 240_000);
  });
});
