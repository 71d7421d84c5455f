import type { Redis } from 'ioredis';
import { readProc } from './processes.js';
import { median, nowMs } from './stats.js';
import { redisCpuMs } from './redis.js';

export interface Sample {
  at: number;
  rssBytes: number;
  cpuMs: number;
  redisCpuMs: number;
}

/**
 * Samples a process's RSS and CPU time (from /proc) and Redis's CPU time (INFO cpu) every `everyMs`
 * until stopped or the process is gone, so a scenario can read them over exactly the window in which
 * the CRM saw deliveries arrive.
 */
export class Sampler {
  readonly samples: Sample[] = [];
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(
    private readonly pid: number,
    private readonly redis: Redis | undefined,
    private readonly everyMs = 250,
  ) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const proc = readProc(this.pid);
      if (!proc) break;
      const redisCpu = this.redis ? await redisCpuMs(this.redis).catch(() => Number.NaN) : Number.NaN;
      this.samples.push({ at: nowMs(), rssBytes: proc.rssBytes, cpuMs: proc.cpuMs, redisCpuMs: redisCpu });
      await new Promise((resolve) => setTimeout(resolve, this.everyMs));
    }
  }

  async stop(): Promise<Sample[]> {
    this.stopped = true;
    await this.loop;
    return this.samples;
  }
}

/** A sampled quantity at time `at`, linearly interpolated (clamped to the first and last samples). */
export function valueAt(samples: readonly Sample[], at: number, field: 'cpuMs' | 'redisCpuMs'): number {
  if (samples.length === 0) return Number.NaN;
  if (at <= samples[0]!.at) return samples[0]![field];
  for (let i = 1; i < samples.length; i++) {
    const b = samples[i]!;
    if (b.at < at) continue;
    const a = samples[i - 1]!;
    const share = b.at === a.at ? 0 : (at - a.at) / (b.at - a.at);
    return a[field] + (b[field] - a[field]) * share;
  }
  return samples[samples.length - 1]![field];
}

/** CPU used in [from, to] (ms), and RSS max/median (MiB) over the samples in that window. */
export function windowStats(samples: readonly Sample[], from: number, to: number) {
  // One sample either side, so a short window still has RSS readings.
  const inside = samples.filter((s) => s.at >= from - 250 && s.at <= to + 250);
  const rss = inside.map((s) => s.rssBytes / 1_048_576);
  return {
    cpuMs: valueAt(samples, to, 'cpuMs') - valueAt(samples, from, 'cpuMs'),
    redisCpuMs: valueAt(samples, to, 'redisCpuMs') - valueAt(samples, from, 'redisCpuMs'),
    rssMaxMiB: rss.length ? Math.max(...rss) : Number.NaN,
    rssMedianMiB: median(rss),
    rssSamples: rss.length,
  };
}
