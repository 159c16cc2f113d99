/**
 * Moves between any pair (issue 15): for each pair, the method --move-method auto picks, and a
 * whole migration under the counter workload with the fault suite's final checks (see
 * test/helpers/moves.ts). Pairs whose binaries are missing skip with a one-line notice.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { moveEverything } from '../helpers/moves.js';
import { startRedis, stopAll, type RedisServer } from '../helpers/redis.js';
import { serverBinaries, serverBinary } from '../helpers/servers.js';

const open: RedisServer[] = [];
afterEach(async () => {
  await stopAll(...open.splice(0));
});

async function server(binary: string | null, args: string[] = [], more: { username?: string; password?: string } = {}): Promise<RedisServer> {
  const s = await startRedis({ binary: binary ?? undefined, args, ...more } as Parameters<typeof startRedis>[0]);
  open.push(s);
  return s;
}

const v74ToValkey = serverBinaries('redis-7.4.1', 'valkey-8.0.1');
describe.skipIf(!v74ToValkey)('Redis 7.4.1 -> Valkey 8.0.1: Valkey refuses the RDB 12 payload', () => {
  it('auto picks the type-aware copy; every type, and a migration under load loses nothing', async () => {
    const source = await server(v74ToValkey!['redis-7.4.1']);
    const target = await server(v74ToValkey!['valkey-8.0.1']);
    const run = await moveEverything(source, target);
    expect(run.method).toBe('copy');
  }, 120_000);
});

describe('a source whose MIGRATE is unusable -> DUMP/RESTORE', () => {
  it('MIGRATE renamed away (rename-command MIGRATE ""): auto picks dump; every type, TTLs to the ms', async () => {
    const source = await server(null, ['--rename-command', 'MIGRATE', '']);
    const target = await server(null);
    const run = await moveEverything(source, target);
    expect(run.method).toBe('dump');
  }, 120_000);

  it('an ACL user without migrate: auto picks dump', async () => {
    const source = await server(null, ['--user', 'default', 'off', '--user', 'mover', 'on', '>pw', '~*', '&*', '+@all', '-migrate'], { username: 'mover', password: 'pw' });
    const target = await server(null);
    const run = await moveEverything(source, target);
    expect(run.method).toBe('dump');
  }, 120_000);
});

const v74To70 = serverBinaries('redis-7.4.1', 'redis-7.0');
describe.skipIf(!v74To70)('Redis 7.4.1 -> Redis 7.0 (older target, newer payload)', () => {
  it('auto picks the type-aware copy', async () => {
    const source = await server(v74To70!['redis-7.4.1']);
    const target = await server(serverBinary('redis-7.0'));
    const run = await moveEverything(source, target);
    expect(run.method).toBe('copy');
  }, 120_000);
});

const valkeyTo70 = serverBinaries('valkey-8.0.1', 'redis-7.0');
describe.skipIf(!valkeyTo70)('Valkey 8.0.1 -> Redis 7.0 (the rollback direction of a Redis 7.0 -> Valkey 8 migration)', () => {
  it('auto picks the type-aware copy (Redis 7.0 refuses Valkey 8 payloads)', async () => {
    const source = await server(valkeyTo70!['valkey-8.0.1']);
    const target = await server(serverBinary('redis-7.0'));
    const run = await moveEverything(source, target);
    expect(run.method).toBe('copy');
  }, 120_000);
});

const v62To70 = serverBinaries('redis-6.2.16', 'redis-7.0');
describe.skipIf(!v62To70)('MIGRATE pairs', () => {
  it('Redis 6.2 -> Redis 7.0: auto picks MIGRATE; every type', async () => {
    const source = await server(v62To70!['redis-6.2.16']);
    const target = await server(serverBinary('redis-7.0'));
    // MIGRATE sends TTLs relative: the deadline moves by the transfer time.
    const run = await moveEverything(source, target, { ttlToleranceMs: 1_000 });
    expect(run.method).toBe('migrate');
  }, 120_000);

  const valkey = serverBinary('valkey-8.0.1');
  it.skipIf(!valkey)('Redis 7.0 -> Valkey 8.0.1: auto picks MIGRATE; every type', async () => {
    const source = await server(serverBinary('redis-7.0'));
    const target = await server(valkey);
    // MIGRATE sends TTLs relative: the deadline moves by the transfer time.
    const run = await moveEverything(source, target, { ttlToleranceMs: 1_000 });
    expect(run.method).toBe('migrate');
  }, 120_000);

  it('--move-method dump on a MIGRATE pair: every type through the proxy-side move', async () => {
    const source = await server(serverBinary('redis-7.0'));
    const target = await server(serverBinary('redis-7.0'));
    const run = await moveEverything(source, target, { args: ['--move-method', 'dump'] });
    expect(run.method).toBe('dump');
    expect(run.proxy.stdout + run.proxy.stderr).toMatch(/moves old -> new by dump: --move-method dump/);
  }, 120_000);
});
