/** Runs `npm run --silent SCRIPT` with its output held, for the check scripts that print it whole. */
import { spawn } from 'node:child_process';

/** Resolves { script, code, out } once the script ends; `nice`: at a lower CPU priority. */
export function runScript(script, { nice = false } = {}) {
  const [cmd, args] = nice ? ['nice', ['-n', '10', 'npm', 'run', '--silent', script]] : ['npm', ['run', '--silent', script]];
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ script, code, out }));
  });
}

/** Prints each result (its output whole when it failed, or with VERBOSE); true if all passed. */
export function report(results) {
  let ok = true;
  for (const r of results) {
    const passed = r.code === 0;
    ok &&= passed;
    process.stdout.write(`${passed ? 'ok  ' : 'FAIL'} npm run ${r.script}\n`);
    if (!passed || process.env.VERBOSE) process.stdout.write(r.out.endsWith('\n') || r.out === '' ? r.out : `${r.out}\n`);
  }
  return ok;
}
