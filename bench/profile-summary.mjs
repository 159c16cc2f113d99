#!/usr/bin/env node
/**
 * Sums the self time of a V8 .cpuprofile (from `node --cpu-prof`) by function and prints the top
 * entries, with the share of the sampled time each takes.
 *
 *   node bench/profile-summary.mjs PROFILE.cpuprofile [--top 30] [--by function|file] [--from-ms T]
 *
 * `--by file` sums by script instead (node internals, rehome's src, dependencies). `--from-ms T`
 * leaves out the samples of the first T ms after the profile started (start-up, warm-up).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
if (!file) {
  process.stderr.write('usage: node bench/profile-summary.mjs PROFILE.cpuprofile [--top N] [--by function|file]\n');
  process.exit(2);
}
const top = Number(opt('top', 30));
const by = opt('by', 'function');
const fromUs = Number(opt('from-ms', 0)) * 1000;

const prof = JSON.parse(readFileSync(file, 'utf8'));
const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
// timeDeltas[i] is the time before sample i: attribute it to that sample's node.
const self = new Map();
let total = 0;
let t = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0;
  t += dt;
  if (t < fromUs) continue;
  const n = nodes.get(prof.samples[i]);
  const cf = n.callFrame;
  const script = cf.url ? cf.url.replace(/^file:\/\//, '') : '';
  const short = script ? path.relative(process.cwd(), script) || script : '';
  const k =
    by === 'file'
      ? short || `(${cf.functionName || 'native'})`
      : `${cf.functionName || '(anonymous)'}${short ? ` ${short}:${cf.lineNumber + 1}` : ''}`;
  self.set(k, (self.get(k) ?? 0) + dt);
  total += dt;
}
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
const idle = self.get('(idle)') ?? self.get('((idle))') ?? 0;
console.log(
  `${path.basename(file)}: ${(total / 1e6).toFixed(2)} s sampled, ${((idle / total) * 100).toFixed(1)}% idle; self time by ${by}, share of busy time:`,
);
for (const [k, us] of rows) {
  if (k === '(idle)' || k === '((idle))') continue;
  console.log(`${((us / (total - idle)) * 100).toFixed(1).padStart(6)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
}
