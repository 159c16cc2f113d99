/**
 * What the proxy prints: log lines on stderr, and on stdout the one line that scripts, tests and
 * process managers wait for, `listening on HOST:PORT`.
 *
 *   text (default)  stderr: `<ISO time> rehome: [worker N: ]<line>`   stdout: `rehome: listening on HOST:PORT`
 *   json            one pino object per line on the same streams:
 *                   {"level":"info","time":"<ISO time>","pid":..,"hostname":..,"name":"rehome",["worker":N,]"msg":"<line>",...fields}
 *                   stdout: the same with "msg":"listening on HOST:PORT","listen":"HOST:PORT"
 *
 * Both are written synchronously: the volume is a few lines a second at most, and a line written
 * just before process.exit() must not be lost.
 */
import { createRequire } from 'node:module';
import os from 'node:os';
import type { Logger as Pino } from 'pino';
import type { Logger } from './proxy/server.js';

export type LogFormat = 'text' | 'json';

/** The proxy's output streams in one format. */
export interface Output {
  /** A log line (stderr); WARNING lines are at level warn in json. */
  readonly log: Logger;
  /** The listening line (stdout). */
  listening(at: string): void;
  /** The line of an error the process exits on (stderr). */
  fatal(msg: string): void;
}

/** Where text output goes: the process's stdout and stderr, or (a proxy run in a test) a capture. */
export interface OutputSink {
  stdout(text: string): void;
  stderr(text: string): void;
}

const PROCESS_STREAMS: OutputSink = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** Text output: today's lines, unchanged. `worker` prefixes log lines in a --workers fleet. */
function textOutput(worker: number | null, sink: OutputSink): Output {
  const prefix = worker === null ? '' : `worker ${worker}: `;
  return {
    log: (line) => sink.stderr(`${new Date().toISOString()} rehome: ${prefix}${line}\n`),
    listening: (at) => sink.stdout(`rehome: listening on ${at}\n`),
    fatal: (msg) => sink.stderr(`rehome: ${msg}\n`),
  };
}

/**
 * pino, loaded on the first json logger only: text output, the default, needs none of it, and every
 * module imported costs each process start-up CPU. Required, not imported, so that createOutput
 * stays synchronous (pino is a CommonJS package).
 */
function loadPino(): typeof import('pino').pino {
  return (createRequire(import.meta.url)('pino') as typeof import('pino')).pino;
}

function jsonLogger(fd: 1 | 2, worker: number | null): Pino {
  const pino = loadPino();
  return pino(
    {
      name: 'rehome',
      base: { pid: process.pid, hostname: os.hostname(), ...(worker === null ? {} : { worker }) },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Level names rather than pino's numbers: log collectors read "warn" without a mapping.
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd, sync: true }),
  );
}

function jsonOutput(worker: number | null): Output {
  const err = jsonLogger(2, worker);
  let out: Pino | null = null;
  return {
    log: (line, fields) => {
      if (line.startsWith('WARNING')) err.warn(fields ?? {}, line);
      else err.info(fields ?? {}, line);
    },
    listening: (at) => {
      out ??= jsonLogger(1, worker);
      out.info({ listen: at }, `listening on ${at}`);
    },
    fatal: (msg) => err.fatal(msg),
  };
}

/**
 * The output for a format; `worker` is the --workers slot of this process, null outside a fleet.
 * json writes to the process's own descriptors (pino), text to `sink`.
 */
export function createOutput(format: LogFormat, worker: number | null = null, sink: OutputSink = PROCESS_STREAMS): Output {
  return format === 'json' ? jsonOutput(worker) : textOutput(worker, sink);
}
