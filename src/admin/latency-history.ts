/**
 * Clients' latency second by second, for the dashboard's chart (GET /latency) and the summary in
 * /status. Once a second it reads rehome_command_duration_seconds, the sampled histogram /metrics
 * exports, and takes how much each bucket grew: that second's p50 and p99 are estimated from
 * those buckets the way Prometheus's histogram_quantile() estimates them, so the page agrees with
 * a Grafana panel built on /metrics, and the data path pays nothing beyond what /metrics costs.
 *
 * The last ten minutes are kept second by second. Each phase also keeps its buckets summed since
 * the process started, so the latency before the move (hold) stays comparable with the latency
 * during it (migrate, reverse) and after it (drained) however long the move takes.
 */
import type { Histogram } from 'prom-client';

/** One second of client latency; the percentiles are null when no command was sampled in it. */
export interface LatencyPoint {
  /** The second's end, in ms since the epoch. */
  t: number;
  /** The phase this process served at the second's end. */
  phase: string;
  /** Commands sampled in the second. */
  n: number;
  p50_ms: number | null;
  p99_ms: number | null;
}

/** A phase's latency over every second this process spent in it. */
export interface PhaseLatency {
  n: number;
  p50_ms: number | null;
  p99_ms: number | null;
}

/** The GET /latency body. */
export interface LatencyReport {
  sampled: string;
  step_s: number;
  points: LatencyPoint[];
  by_phase: Record<string, PhaseLatency>;
}

const KEEP_SECONDS = 600;

export class LatencyHistory {
  private readonly points: LatencyPoint[] = [];
  private readonly byPhase = new Map<string, number[]>();
  /** The histogram's cumulative bucket counts at the last reading; null before the first. */
  private last: number[] | null = null;
  private bounds: number[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly histogram: Histogram,
    private readonly phase: () => string,
  ) {}

  /** Reads the histogram every second until stop(); the timer never keeps the process alive. */
  start(): void {
    this.timer = setInterval(() => void this.tick().catch(() => undefined), 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Closes one second: what each bucket grew since the last reading. */
  async tick(now = Date.now()): Promise<void> {
    const { bounds, counts } = await readBuckets(this.histogram);
    const prev = this.last;
    this.last = counts;
    this.bounds = bounds;
    if (prev === null || prev.length !== counts.length) return;
    const grew = counts.map((c, i) => Math.max(0, c - prev[i]!));
    const phase = this.phase();
    const sum = this.byPhase.get(phase) ?? counts.map(() => 0);
    for (let i = 0; i < grew.length; i++) sum[i]! += grew[i]!;
    this.byPhase.set(phase, sum);
    this.points.push({ t: now, phase, ...percentiles(bounds, grew) });
    if (this.points.length > KEEP_SECONDS) this.points.shift();
  }

  /** Each phase's latency since the process started: the summary /status carries. */
  summary(): Record<string, PhaseLatency> {
    const out: Record<string, PhaseLatency> = {};
    for (const [phase, counts] of this.byPhase) out[phase] = percentiles(this.bounds, counts);
    return out;
  }

  report(): LatencyReport {
    return { sampled: '1 in 16 commands', step_s: 1, points: [...this.points], by_phase: this.summary() };
  }
}

/** The histogram's bucket bounds in seconds (the last is +Inf) and their cumulative counts. */
async function readBuckets(h: Histogram): Promise<{ bounds: number[]; counts: number[] }> {
  const bounds: number[] = [];
  const counts: number[] = [];
  for (const v of (await h.get()).values) {
    if (!v.metricName?.endsWith('_bucket')) continue;
    const le = v.labels.le;
    bounds.push(le === '+Inf' ? Infinity : Number(le));
    counts.push(v.value);
  }
  return { bounds, counts };
}

function percentiles(bounds: number[], cumulative: number[]): { n: number; p50_ms: number | null; p99_ms: number | null } {
  const q = (x: number) => {
    const s = quantile(x, bounds, cumulative);
    return s === null ? null : Math.round(s * 1e6) / 1e3;
  };
  return { n: cumulative[cumulative.length - 1] ?? 0, p50_ms: q(0.5), p99_ms: q(0.99) };
}

/**
 * The q-quantile, in seconds, of cumulative bucket counts with upper bounds `bounds` (ascending,
 * the last +Inf), as histogram_quantile() computes it: linear within the bucket the rank falls
 * in, from 0 for the first bucket; a rank in the +Inf bucket gives the highest finite bound.
 * null when nothing was counted.
 */
export function quantile(q: number, bounds: number[], cumulative: number[]): number | null {
  const total = cumulative[cumulative.length - 1] ?? 0;
  if (total === 0) return null;
  const rank = q * total;
  const i = cumulative.findIndex((c) => c >= rank);
  if (i === bounds.length - 1) return bounds[bounds.length - 2] ?? null;
  const lower = i === 0 ? 0 : bounds[i - 1]!;
  const below = i === 0 ? 0 : cumulative[i - 1]!;
  const inBucket = cumulative[i]! - below;
  return lower + ((bounds[i]! - lower) * (rank - below)) / inBucket;
}
