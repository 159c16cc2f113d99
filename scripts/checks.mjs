/**
 * `npm test`'s first step: the build, the cycle check and the typecheck at once, each one's output
 * printed whole once it ends; exits 1 if any failed. They read the same sources and none reads
 * what another writes (the typecheck emits nothing, madge reads src/), and run one after another
 * they left one of the two cores idle for about half a minute before vitest could start.
 */
import { spawn } from 'node:child_process';

const STEPS = ['build', 'check:cycles', 'typecheck'];

function run(script) {
  return new Promise((resolve) => {
    const p = spawn('npm', ['run', '--silent', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ script, code, out }));
  });
}

let failed = false;
for (const r of await Promise.all(STEPS.map(run))) {
  const ok = r.code === 0;
  failed ||= !ok;
  process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} npm run ${r.script}\n`);
  if (!ok || process.env.VERBOSE) process.stdout.write(r.out.endsWith('\n') || r.out === '' ? r.out : `${r.out}\n`);
}
process.exit(failed ? 1 : 0);
