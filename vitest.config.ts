import { configDefaults, defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

// VERBOSE=1: every test by name, and what every test printed. By default a passing run prints one
// line per file (tests over 10 s with their time), and a failing test what it printed.
const verbose = Boolean(process.env.VERBOSE);

// The version matrix (test/versions: servers of other versions and engines) is its own run, `npm
// run test:versions`, which CI calls too: the default run excludes it. A run whose command line
// names test/versions (a path, or a filter such as `versions/import`), or REHOME_VERSIONS=1,
// includes it and starts by saying which server binaries it found (vitest runs a file named by its
// path even when excluded, but a filter that is not a path matches only included files).
const versionsNamed =
  Boolean(process.env.REHOME_VERSIONS) || process.argv.slice(2).some((a) => /(^|\/)versions(\/|$)/.test(a.replaceAll('\\', '/')));

/**
 * The fault suite's files are small but take the longest: start them first, or on a fresh checkout
 * (no timings cached yet, so vitest runs the largest files first) they would run last, alone.
 */
class FaultsFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const isFault = (f: TestSpecification) => f.moduleId.includes('/test/faults/');
    return [...sorted.filter(isFault), ...sorted.filter((f) => !isFault(f))];
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: versionsNamed ? configDefaults.exclude : [...configDefaults.exclude, 'test/versions/**'],
    globalSetup: versionsNamed ? ['test/helpers/versions-setup.ts'] : [],
    // Hang guards, not speed checks: generous, as tests share two cores with other runs.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start their own redis-servers (and run rehome's proxy in the worker, or as
    // a process where they need one) and spend much of their time waiting on them (sweeps, fault
    // schedules, pauses): with two files at once the run kept the two cores busy 133% of the
    // time, with three 164%. Three were flaky when every proxy was a process (about 40% more
    // CPU). `--maxWorkers N` overrides it.
    maxWorkers: 3,
    fileParallelism: true,
    // A worker process runs file after file, keeping the modules they share (ioredis, the
    // helpers) loaded: a fresh process per file cost about 0.5 s of CPU each. No test file mocks
    // modules or changes globals for the files after it.
    isolate: false,
    sequence: { sequencer: FaultsFirst },
    // bench/test-cpu.mjs: where the run's CPU goes, by kind of process and by file.
    setupFiles: ['test/helpers/setup.ts', ...(process.env.REHOME_TEST_CPU ? ['test/helpers/cpu-account.ts'] : [])],
    silent: verbose ? false : 'passed-only',
    reporters: verbose ? ['verbose'] : ['default'],
    slowTestThreshold: verbose ? 300 : 10_000,
  },
});
