#!/usr/bin/env node
/**
 * rehome's command line: a subcommand (plan, verify, import, status, sweeper, phase), or the proxy
 * itself (proxy-command.ts) on this process's streams, signals and exit.
 */
import { runProxyCommand, type ProcessHost } from './proxy-command.js';

/**
 * Each subcommand's module, loaded only when it runs: every module a process imports costs start-up
 * CPU (a `rehome status` needs no Redis client, a proxy no plan or verify).
 */
const SUBCOMMANDS: Record<string, () => Promise<(argv: string[]) => Promise<number>>> = {
  status: async () => (await import('./admin/status-cli.js')).runStatusCli,
  sweeper: async () => (await import('./admin/status-cli.js')).runSweeperCli,
  phase: async () => (await import('./admin/status-cli.js')).runPhaseCli,
  plan: async () => (await import('./tools/plan.js')).runPlanCli,
  verify: async () => (await import('./tools/verify.js')).runVerifyCli,
  import: async () => (await import('./import/import.js')).runImportCli,
};

/** The proxy command's host: this process. */
const PROCESS: ProcessHost = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  exit: (code) => process.exit(code),
  onSignal: (signal, f) => process.on(signal, f),
  env: process.env,
};

async function main(): Promise<void> {
  const sub = process.argv[2];
  const loadSubcommand = sub !== undefined && Object.hasOwn(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined;
  if (loadSubcommand) process.exit(await (await loadSubcommand())(process.argv.slice(3)));
  await runProxyCommand(process.argv.slice(2), PROCESS);
}

main().catch((e: Error) => {
  process.stderr.write(`rehome: ${e.message}\n`);
  process.exit(1);
});
