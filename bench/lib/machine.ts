import os from 'node:os';
import type { Redis } from 'ioredis';
import { info } from './redis.js';

export interface Machine {
  cpuModel: string;
  cpuCount: number;
  memoryGiB: number;
  os: string;
  node: string;
  redis: string;
  date: string;
  /** 1-minute load average when the run started and when it ended: other work on the machine shows here. */
  loadAverage: { start: number; end: number };
}

export async function machine(redis: Redis, loadAtStart: number): Promise<Machine> {
  const cpus = os.cpus();
  const server = await info(redis, 'server');
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCount: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis: server.redis_version ?? 'unknown',
    date: new Date().toISOString(),
    loadAverage: { start: loadAtStart, end: os.loadavg()[0]! },
  };
}
