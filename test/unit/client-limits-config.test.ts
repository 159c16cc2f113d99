/** The limit flags as buildConfig reads them: sizes as redis.conf writes them, defaults as Redis's. */
import { describe, expect, it } from 'vitest';
import { buildConfig, byteSize } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';

const base = { source: 'redis://127.0.0.1:1', target: 'redis://127.0.0.1:2' };

describe('byteSize', () => {
  it('reads plain bytes and redis.conf units, case-insensitive', () => {
    expect(byteSize('--x', '65536', 0)).toBe(65536);
    expect(byteSize('--x', '10b', 0)).toBe(10);
    expect(byteSize('--x', '1k', 0)).toBe(1000);
    expect(byteSize('--x', '1kb', 0)).toBe(1024);
    expect(byteSize('--x', '2m', 0)).toBe(2_000_000);
    expect(byteSize('--x', '512mb', 0)).toBe(512 * 1024 * 1024);
    expect(byteSize('--x', '1g', 0)).toBe(1e9);
    expect(byteSize('--x', '1GB', 0)).toBe(1024 ** 3);
    expect(byteSize('--x', undefined, 42)).toBe(42);
    expect(byteSize('--x', '0', 7, 0)).toBe(0);
  });

  it('refuses anything else, naming the flag', () => {
    for (const v of ['', '-1', '1.5mb', '12xb', 'mb', '1 mb', '0x10', '99999999999999999gb']) {
      expect(() => byteSize('--client-output-buffer-limit', v, 0), v).toThrow(ConfigError);
      expect(() => byteSize('--client-output-buffer-limit', v, 0), v).toThrow(/--client-output-buffer-limit/);
    }
    expect(() => byteSize('--proto-max-bulk-len', '0', 1)).toThrow(/>= 1/);
  });
});

describe('buildConfig: client limits', () => {
  it('defaults: maxclients 10000, 512 MB bulks, 1 GB query buffer, 256 MB output buffer, no timeout', () => {
    const c = buildConfig(base);
    expect(c.clientLimits).toEqual({
      maxClients: 10_000,
      queryBufferLimit: 1024 ** 3,
      outputBufferLimit: 256 * 1024 ** 2,
      idleTimeoutMs: 0,
    });
    expect(c.limits.maxBulkLen).toBe(512 * 1024 ** 2);
  });

  it('flags set each limit', () => {
    const c = buildConfig({
      ...base,
      maxclients: '3',
      'proto-max-bulk-len': '1mb',
      'client-query-buffer-limit': '2mb',
      'client-output-buffer-limit': '0',
      timeout: '30',
    });
    expect(c.clientLimits).toEqual({
      maxClients: 3,
      queryBufferLimit: 2 * 1024 ** 2,
      outputBufferLimit: 0,
      idleTimeoutMs: 30_000,
    });
    expect(c.limits.maxBulkLen).toBe(1024 ** 2);
  });

  it('refuses a zero maxclients and a negative timeout', () => {
    expect(() => buildConfig({ ...base, maxclients: '0' })).toThrow(/--maxclients/);
    expect(() => buildConfig({ ...base, timeout: '-1' })).toThrow(/--timeout/);
  });
});
