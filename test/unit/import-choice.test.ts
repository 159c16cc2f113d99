/**
 * `rehome import`'s reading of its input and its choice of server, without servers: RDB headers,
 * AOF manifests, and which binary reads which RDB version (the integration tests load real files).
 */
import { describe, expect, it } from 'vitest';
import { maxRdbOf, parseServerVersion, readsRdb, serversFor, type ServerBinary } from '../../src/import/import-binaries.js';
import { parseManifest, rdbVersionOf } from '../../src/import/import-input.js';

const bin = (engine: ServerBinary['engine'], version: string): ServerBinary => ({ path: `/x/${engine}-${version}`, engine, version, maxRdb: maxRdbOf(engine, version) });

describe('rdbVersionOf', () => {
  it('reads REDIS and VALKEY headers, and nothing else', () => {
    expect(rdbVersionOf(Buffer.from('REDIS0010\xfa\x09redis-ver', 'latin1'))).toBe(10);
    expect(rdbVersionOf(Buffer.from('REDIS0012'))).toBe(12);
    expect(rdbVersionOf(Buffer.from('VALKEY080'))).toBe(80);
    expect(rdbVersionOf(Buffer.from('*2\r\n$6\r\nSELECT'))).toBeNull();
    expect(rdbVersionOf(Buffer.from('REDIS'))).toBeNull();
    expect(rdbVersionOf(Buffer.alloc(0))).toBeNull();
  });
});

describe('parseManifest', () => {
  it('lists each file with its type; quoted names with spaces; refuses a path or a bad line', () => {
    expect(parseManifest('file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.2.incr.aof seq 2 type i\n')).toEqual([
      { name: 'appendonly.aof.2.base.rdb', type: 'b' },
      { name: 'appendonly.aof.2.incr.aof', type: 'i' },
    ]);
    expect(parseManifest('file "my aof.1.base.rdb" seq 1 type b\n')).toEqual([{ name: 'my aof.1.base.rdb', type: 'b' }]);
    expect(() => parseManifest('file ../../etc/passwd seq 1 type b\n')).toThrow(/not an AOF manifest line/);
    expect(() => parseManifest('hello\n')).toThrow(/not an AOF manifest line/);
  });
});

describe('which server reads which file', () => {
  const all = [bin('redis', '7.4.1'), bin('valkey', '8.0.1'), bin('redis', '6.2.16'), bin('redis', '7.0.15'), bin('redis', '7.2.6')];

  it('knows each release line\'s RDB version', () => {
    expect(all.map((b) => `${b.engine} ${b.version}: ${b.maxRdb}`)).toEqual(['redis 7.4.1: 12', 'valkey 8.0.1: 11', 'redis 6.2.16: 9', 'redis 7.0.15: 10', 'redis 7.2.6: 11']);
    expect(maxRdbOf('redis', '8.0.2')).toBe(12);
    expect(maxRdbOf('valkey', '9.0.0')).toBe(80);
  });

  it('Valkey reads Redis formats up to 11 and its own from 80, never Redis 7.4+', () => {
    expect(readsRdb(bin('valkey', '8.0.1'), 11)).toBe(true);
    expect(readsRdb(bin('valkey', '8.0.1'), 12)).toBe(false);
    expect(readsRdb(bin('valkey', '9.0.0'), 12)).toBe(false);
    expect(readsRdb(bin('valkey', '9.0.0'), 80)).toBe(true);
  });

  it('tries the oldest that reads the version first, Redis before Valkey at the same version', () => {
    const names = (v: number | null) => serversFor(all, v).map((b) => `${b.engine} ${b.version}`);
    expect(names(9)).toEqual(['redis 6.2.16', 'redis 7.0.15', 'redis 7.2.6', 'valkey 8.0.1', 'redis 7.4.1']);
    expect(names(11)).toEqual(['redis 7.2.6', 'valkey 8.0.1', 'redis 7.4.1']);
    expect(names(12)).toEqual(['redis 7.4.1']);
    expect(names(13)).toEqual([]);
    expect(names(null)[0]).toBe('redis 6.2.16');
  });

  it('reads a binary\'s --version', () => {
    expect(parseServerVersion('Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0')).toEqual({ engine: 'redis', version: '7.0.15' });
    expect(parseServerVersion('Valkey server v=8.0.1 sha=00000000:1 malloc=libc bits=64')).toEqual({ engine: 'valkey', version: '8.0.1' });
    expect(parseServerVersion('KeyDB server v=6.3.4')).toBeNull();
  });
});
