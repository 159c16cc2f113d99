/**
 * The build, the cycle check and the typecheck at once, each one's output printed whole once it
 * ends; exits 1 if any failed. They read the same sources and none reads what another writes (the
 * typecheck emits nothing, madge reads src/). `npm test` runs them beside the tests instead
 * (scripts/test.mjs).
 */
import { report, runScript } from './npm-run.mjs';

const ok = report(await Promise.all(['build', 'check:cycles', 'typecheck'].map((s) => runScript(s))));
process.exit(ok ? 0 : 1);
