/**
 * The progress display of a migration (the proxy's and `rehome import`'s): a bar on a terminal, a
 * log line every few seconds otherwise.
 */
import type { Logger, RehomeProxy } from './proxy/server.js';

/** A progress bar on a terminal, a log line every few seconds otherwise. Returns a stopper. */
export async function showProgress(proxy: RehomeProxy, mode: 'bar' | 'log' | 'off', log: Logger): Promise<() => void> {
  if (mode === 'off' || (proxy.phases === null && proxy.migration.phase === 'drained')) return () => {};
  // With phases the migration is replaced on every switch: read the current one each time.
  if (proxy.phases !== null) mode = 'log';
  const m = proxy.migration;
  if (mode === 'bar') {
    const { default: cliProgress } = await import('cli-progress');
    const bar = new cliProgress.SingleBar(
      {
        format: 'rehome [{bar}] {percentage}% | {value}/{total} keys | {rate} keys/s | ETA {eta_s} | {sweeper}',
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(Math.max(1, m.initialKeys), 0, { rate: 0, eta_s: '?', sweeper: m.sweeper?.state ?? 'off' });
    const t = setInterval(() => {
      const total = Math.max(m.initialKeys, m.remainingTotal, 1);
      bar.setTotal(total);
      bar.update(Math.max(0, total - m.remainingTotal), {
        rate: Math.round(m.rate),
        eta_s: m.etaSeconds === null ? '?' : `${m.etaSeconds}s`,
        sweeper: m.sweeper?.state ?? 'off',
      });
    }, 500);
    t.unref();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      clearInterval(t);
      if (m.phase === 'drained') bar.update(Math.max(m.initialKeys, 1));
      bar.stop();
    };
  }
  const t = setInterval(() => {
    const m = proxy.migration;
    const st = proxy.mover.stats;
    const phase = proxy.phases ? `phase ${proxy.phaseName} (epoch ${proxy.phases.state.epoch}); ` : '';
    // A canary: its scope's progress (drained or not, the keys outside it, keys coming back).
    const scope = (proxy.status().scope as { summary: string } | null)?.summary;
    if (scope) {
      log(`progress: ${phase}${scope}; ${proxy.clients} clients`);
      return;
    }
    if (proxy.phases && m.phase === 'drained') {
      log(`progress: ${phase}nothing to move; ${proxy.clients} clients`);
      return;
    }
    log(
      `progress: ${phase}${m.remainingTotal} keys left in the source of ${m.initialKeys}; moved ${st.keysMovedOnTouch} on touch, ${st.keysMovedBySweeper} by the sweeper; ${Math.round(m.rate)} keys/s; ETA ${m.etaSeconds ?? '?'} s; sweeper ${m.sweeper?.state ?? 'off'}; ${proxy.clients} clients`,
    );
  }, 5_000);
  t.unref();
  return () => clearInterval(t);
}
