/** Who may use the admin endpoint (src/admin/auth.ts), and how --admin and its token are read. */
import { describe, expect, it } from 'vitest';
import { BearerToken, needsToken } from '../../src/admin/auth.js';
import { adminToken, buildConfig } from '../../src/config.js';
import { isLoopback, parseHostPort } from '../../src/upstream/endpoint.js';

describe('needsToken', () => {
  const cases: Array<[string, string, boolean, boolean, boolean]> = [
    // method, path, token configured, loopback, needs it
    ['POST', '/phase', false, true, false],
    ['POST', '/phase', true, true, true],
    ['POST', '/sweeper/pause', true, true, true],
    ['GET', '/status', true, true, false],
    ['GET', '/metrics', true, true, false],
    ['GET', '/status', true, false, true],
    ['GET', '/metrics', true, false, true],
    ['GET', '/nowhere', true, false, true],
    ['DELETE', '/status', true, true, true],
    ['GET', '/healthz', true, false, false],
    ['GET', '/readyz', true, false, false],
    ['POST', '/readyz', true, false, true],
    // The dashboard page holds no figures; what it reads (/status, /latency) is guarded.
    ['GET', '/', true, false, false],
    ['POST', '/', true, false, true],
    ['GET', '/latency', true, false, true],
    ['GET', '/latency', true, true, false],
  ];
  for (const [method, path, token, loopback, want] of cases) {
    it(`${method} ${path}, token ${token}, loopback ${loopback}: ${want}`, () => {
      expect(needsToken(method, path, { token, loopback })).toBe(want);
    });
  }
});

describe('BearerToken', () => {
  const t = new BearerToken('s3cret-token');
  it('accepts the token, case-insensitive scheme', () => {
    expect(t.check('Bearer s3cret-token')).toBeNull();
    expect(t.check('bearer s3cret-token')).toBeNull();
    expect(t.check('Bearer  s3cret-token ')).toBeNull();
  });
  it('refuses a missing header, another scheme, a wrong, shorter or longer token', () => {
    expect(t.check(undefined)).toBe('missing');
    expect(t.check('')).toBe('missing');
    expect(t.check('Basic czNjcmV0LXRva2Vu')).toBe('invalid');
    expect(t.check('Bearer')).toBe('invalid');
    expect(t.check('Bearer s3cret-tokeN')).toBe('invalid');
    expect(t.check('Bearer s3cret')).toBe('invalid');
    expect(t.check('Bearer s3cret-token-and-more')).toBe('invalid');
    expect(t.check('Bearer s3cret-token extra')).toBe('invalid');
  });
});

describe('isLoopback', () => {
  it.each(['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', '::1', '::ffff:127.0.0.1'])('%s is loopback', (h) => {
    expect(isLoopback(h)).toBe(true);
  });
  it.each(['0.0.0.0', '::', '10.0.0.11', '192.168.1.2', 'example.internal', '::ffff:10.0.0.1', '128.0.0.1'])('%s is not', (h) => {
    expect(isLoopback(h)).toBe(false);
  });
});

describe('--admin and its token', () => {
  it('a port alone, or :port, takes the default host; host:port and [v6]:port as before', () => {
    expect(parseHostPort('--admin', '9121', '127.0.0.1')).toEqual({ host: '127.0.0.1', port: 9121 });
    expect(parseHostPort('--admin', ':9121', '127.0.0.1')).toEqual({ host: '127.0.0.1', port: 9121 });
    expect(parseHostPort('--admin', '10.0.0.11:9121', '127.0.0.1')).toEqual({ host: '10.0.0.11', port: 9121 });
    expect(parseHostPort('--admin', '[::1]:9121', '127.0.0.1')).toEqual({ host: '::1', port: 9121 });
    expect(() => parseHostPort('--listen', '9121')).toThrow(/host:port/);
    expect(() => parseHostPort('--admin', 'nonsense', '127.0.0.1')).toThrow(/--admin/);
  });

  it('--admin-token wins over REHOME_ADMIN_TOKEN; an empty variable is no token', () => {
    expect(adminToken('a', { REHOME_ADMIN_TOKEN: 'b' })).toBe('a');
    expect(adminToken(undefined, { REHOME_ADMIN_TOKEN: 'b' })).toBe('b');
    expect(adminToken(undefined, { REHOME_ADMIN_TOKEN: '' })).toBeNull();
    expect(adminToken(undefined, {})).toBeNull();
    expect(() => adminToken('', {})).toThrow(/empty/);
    expect(() => adminToken('has space', {})).toThrow(/printable ASCII/);
    expect(() => adminToken(undefined, { REHOME_ADMIN_TOKEN: 'tab\there' })).toThrow(/REHOME_ADMIN_TOKEN/);
  });

  it('buildConfig: loopback by default, beyond loopback only with a token', () => {
    const base = { source: 'redis://127.0.0.1:1', target: 'redis://127.0.0.1:2' };
    expect(buildConfig({ ...base, admin: '9121' }, {}).admin).toEqual({ host: '127.0.0.1', port: 9121, token: null });
    expect(() => buildConfig({ ...base, admin: '0.0.0.0:9121' }, {})).toThrow(/beyond loopback.*--admin-token.*REHOME_ADMIN_TOKEN/);
    expect(buildConfig({ ...base, admin: '0.0.0.0:9121' }, { REHOME_ADMIN_TOKEN: 't' }).admin?.token).toBe('t');
    expect(buildConfig({ ...base, admin: '0.0.0.0:9121', 'admin-token': 'u' }, {}).admin?.token).toBe('u');
    expect(() => buildConfig({ ...base, 'admin-token': 'u' }, {})).toThrow(/needs --admin/);
    expect(buildConfig(base, { REHOME_ADMIN_TOKEN: 't' }).admin).toBeNull();
    expect(buildConfig(base, {}).logFormat).toBe('text');
    expect(() => buildConfig({ ...base, 'log-format': 'xml' }, {})).toThrow(/--log-format/);
  });
});
