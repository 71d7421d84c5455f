import { summarize } from './stats.js';
import type { Check, Metric, Target } from './types.js';

export function metric(key: string, label: string, unit: string, values: number[]): Metric {
  const { median, min, max } = summarize(values);
  return { key, label, unit, median, min, max, values };
}

/** A target judged on the metric's median. */
export function target(label: string, of: Metric, op: Target['op'], threshold: number): Target {
  const value = of.median;
  const met = op === '>=' ? value >= threshold : op === '<=' ? value <= threshold : value < threshold;
  return { label, metric: of.key, op, threshold, value, met: Number.isFinite(value) && met };
}

export function check(label: string, ok: boolean, detail?: string): Check {
  return { label, ok, ...(detail ? { detail } : {}) };
}
