/**
 * `npm test [-- VITEST ARGS]`: the bundles the tests run (dist/cli.js, demo.js, rehearse.js:
 * scripts/build-cli.mjs, about 2 s), then vitest, with the typecheck and the cycle check running
 * beside it at a lower CPU priority; their results are printed after the tests'. Exits 1 if any
 * of the three failed.
 *
 * Why beside and not before: the typecheck costs about 15 s of CPU and the tests leave part of the
 * two cores idle while they wait on servers; run first, the checks held every test back by about
 * 20 s. tsc's emit (dist/index.js and the type declarations) is not needed by any test: `npm run
 * build` makes it.
 */
import { spawn } from 'node:child_process';
import { report, runScript } from './npm-run.mjs';

const exitOf = (p) => new Promise((resolve) => p.on('close', (code) => resolve(code ?? 1)));

const bundle = await exitOf(spawn(process.execPath, ['scripts/build-cli.mjs'], { stdio: 'inherit' }));
if (bundle !== 0) {
  process.stdout.write('FAIL the bundles (scripts/build-cli.mjs): no test ran\n');
  process.exit(1);
}
const checks = Promise.all(['typecheck', 'check:cycles'].map((s) => runScript(s, { nice: true })));
const vitest = await exitOf(spawn('npx', ['vitest', 'run', ...process.argv.slice(2)], { stdio: 'inherit' }));
const ok = report(await checks);
process.exit(vitest === 0 && ok ? 0 : 1);
