/**
 * The second half of `npm run build`, after tsc has written dist/, and the whole build `npm test`
 * needs (scripts/test.mjs runs it alone): the programs tests and operators run, dist/cli.js,
 * dist/demo.js and dist/rehearse.js, become bundles of rehome's modules and their dependencies,
 * and the dashboard page is copied where the modules that serve it look for it.
 *
 * Why a bundle: a process spends most of its start-up CPU finding, reading and compiling some 150
 * small files (rehome's own and ioredis's); one file of the same code starts in about 0.17 s less
 * CPU, and the test suite starts a process several hundred times (README, "Test run"). Modules that
 * cli.ts imports lazily (subcommands, the admin endpoint) stay lazy: they become chunks in
 * dist/chunks/, loaded when first imported, and shared by the three programs. The other files of
 * dist/ (index.js and the modules it imports, with their type declarations) are tsc's output.
 */
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { build } from 'esbuild';

const DASHBOARD = 'src/admin/dashboard.html';

rmSync('dist/chunks', { recursive: true, force: true });
await build({
  entryPoints: ['src/cli.ts', 'src/demo.ts', 'src/rehearse.ts'],
  outdir: 'dist',
  entryNames: '[name]',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
  // CommonJS packages inside an ES module bundle still call require() for node's own modules.
  banner: { js: "import { createRequire as __rehomeRequire } from 'node:module'; const require = __rehomeRequire(import.meta.url);" },
});

// tsc's dist/admin/dashboard.js (for index.js) and the bundle's chunk each read the page beside them.
mkdirSync('dist/admin', { recursive: true });
copyFileSync(DASHBOARD, 'dist/admin/dashboard.html');
mkdirSync('dist/chunks', { recursive: true });
copyFileSync(DASHBOARD, 'dist/chunks/dashboard.html');
