/**
 * Moves where the source's MIGRATE can't be used (issue 15), on Redis 7.0 alone: the method
 * --move-method auto picks, and a whole migration under the counter workload with the fault
 * suite's final checks (see test/helpers/moves.ts). The pairs of other versions and engines are in
 * test/versions/moves-pairs.test.ts (`npm run test:versions`).
 */
import { describe, expect, it } from 'vitest';
import { useServers } from '../helpers/fixture.js';
import { moveEverything } from '../helpers/moves.js';

const server = useServers();

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

describe('a MIGRATE pair (Redis 7.0 -> Redis 7.0)', () => {
  it('--move-method dump on a MIGRATE pair: every type through the proxy-side move', async () => {
    const source = await server();
    const target = await server();
    const run = await moveEverything(source, target, { args: ['--move-method', 'dump'] });
    expect(run.method).toBe('dump');
    expect(run.proxy.stdout + run.proxy.stderr).toMatch(/moves old -> new by dump: --move-method dump/);
  }, 120_000);
});
