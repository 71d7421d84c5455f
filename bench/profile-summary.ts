/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): the top functions and modules by self time,
 * optionally only over a window of the profile (ms from its start), e.g. the drain without start-up.
 *
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile> [--from-ms N] [--to-ms N] [--top 20]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  selfMs: number;
  /** Share of the window's busy time (idle excluded). */
  percent: number;
}

export interface ProfileSummary {
  file: string;
  /** For the top functions: who called them (the nearest caller frames with a script), by self time. */
  callers: Array<{ name: string; callers: ProfileEntry[] }>;
  windowMs: number;
  busyMs: number;
  idleMs: number;
  gcMs: number;
  functions: ProfileEntry[];
  modules: ProfileEntry[];
  /** Self time charged to the nearest package or repository file on the stack (natives and Node's own code count for their caller). */
  owners: ProfileEntry[];
  /** For the top owners: the nearest frame outside them on the stack (which code drove that time). */
  drivers: Array<{ name: string; callers: ProfileEntry[] }>;
}

const ROOT = path.resolve(import.meta.dirname, '..');

/** Which module a script belongs to: an npm package, a file of this repository, or a Node internal. */
export function moduleOf(url: string, functionName: string): string {
  if (!url) return `(${functionName.replace(/[()]/g, '') || 'native'})`;
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  const file = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  const at = file.lastIndexOf('/node_modules/');
  if (at >= 0) {
    const parts = file.slice(at + '/node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  return file.startsWith(ROOT) ? path.relative(ROOT, file) : file;
}

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  // Line 0 is what tsx-compiled sources report (their code is not laid out line for line).
  const where = url ? `${moduleOf(url, functionName)}${lineNumber > 0 ? `:${lineNumber + 1}` : ''}` : '';
  return `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
}

export async function summarizeProfile(
  file: string,
  options: { fromMs?: number; toMs?: number; top?: number } = {},
): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  // The caller chain of a node, up to `depth` frames that belong to a script (natives skipped).
  const callerChain = (id: number, depth: number) => {
    const chain: string[] = [];
    for (let at = parentOf.get(id); at !== undefined && chain.length < depth; at = parentOf.get(at)) {
      const parent = byId.get(at)!;
      // Node's own frames (streams, net) say little: keep the library or src frame that called them.
      if (parent.callFrame.url && !parent.callFrame.url.startsWith('node:')) chain.push(label(parent));
    }
    return chain.join(' ← ') || '(no script caller)';
  };
  const callers = new Map<string, Map<string, number>>();
  // The nearest frame from a file of this repository or a package (natives and node: skipped).
  const ownerOf = (node: ProfileNode): string => {
    for (let at: number | undefined = node.id; at !== undefined; at = parentOf.get(at)) {
      const { url, functionName } = byId.get(at)!.callFrame;
      if (url && !url.startsWith('node:')) return moduleOf(url, functionName);
    }
    return node.callFrame.url ? 'node internals' : moduleOf('', node.callFrame.functionName);
  };
  const owners = new Map<string, number>();
  // For time owned by a package: the nearest frame of another package or src file (who drove it).
  const driverOf = (node: ProfileNode, owner: string): string => {
    for (let at: number | undefined = node.id; at !== undefined; at = parentOf.get(at)) {
      const frame = byId.get(at)!;
      const { url, functionName } = frame.callFrame;
      if (url && !url.startsWith('node:') && moduleOf(url, functionName) !== owner) return label(frame);
    }
    return '(event loop: socket reads, timers)';
  };
  const drivers = new Map<string, Map<string, number>>();
  const from = options.fromMs ?? 0;
  const to = options.toMs ?? Number.POSITIVE_INFINITY;
  const functions = new Map<string, number>();
  const modules = new Map<string, number>();
  let at = 0;
  let windowUs = 0;
  let idleUs = 0;
  let gcUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    // The time until the next sample is this sample's.
    const us = profile.timeDeltas[i + 1] ?? 0;
    const ms = at / 1000;
    if (ms < from || ms > to) continue;
    const node = byId.get(profile.samples[i]!);
    if (!node) continue;
    windowUs += us;
    const name = node.callFrame.functionName;
    if (name === '(idle)') {
      idleUs += us;
      continue;
    }
    if (name === '(garbage collector)') gcUs += us;
    const fn = label(node);
    functions.set(fn, (functions.get(fn) ?? 0) + us);
    const chain = callerChain(node.id, 3);
    const byChain = callers.get(fn) ?? new Map<string, number>();
    byChain.set(chain, (byChain.get(chain) ?? 0) + us);
    callers.set(fn, byChain);
    const owner = ownerOf(node);
    owners.set(owner, (owners.get(owner) ?? 0) + us);
    const driver = driverOf(node, owner);
    const byDriver = drivers.get(owner) ?? new Map<string, number>();
    byDriver.set(driver, (byDriver.get(driver) ?? 0) + us);
    drivers.set(owner, byDriver);
    const mod = moduleOf(node.callFrame.url, name);
    modules.set(mod, (modules.get(mod) ?? 0) + us);
  }
  const busyUs = windowUs - idleUs;
  const top = (map: Map<string, number>, count = options.top ?? 20) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([name, us]) => ({ name, selfMs: us / 1000, percent: busyUs ? (100 * us) / busyUs : 0 }));
  const topFunctions = top(functions);
  return {
    file,
    callers: topFunctions
      .slice(0, 5)
      .map(({ name }) => ({ name, callers: top(callers.get(name) ?? new Map<string, number>(), 4) })),
    windowMs: windowUs / 1000,
    busyMs: busyUs / 1000,
    idleMs: idleUs / 1000,
    gcMs: gcUs / 1000,
    functions: topFunctions,
    modules: top(modules),
    owners: top(owners),
    drivers: top(owners, 3).map(({ name }) => ({
      name,
      callers: top(drivers.get(name) ?? new Map<string, number>(), 6),
    })),
  };
}

export function formatSummary(summary: ProfileSummary): string {
  const rows = (entries: ProfileEntry[]) =>
    entries
      .map(
        (e, i) =>
          `${String(i + 1).padStart(3)}. ${e.selfMs.toFixed(0).padStart(7)} ms ${e.percent.toFixed(1).padStart(5)}%  ${e.name}`,
      )
      .join('\n');
  return [
    `${summary.file}`,
    `window ${summary.windowMs.toFixed(0)} ms: busy ${summary.busyMs.toFixed(0)} ms, idle ${summary.idleMs.toFixed(0)} ms, GC ${summary.gcMs.toFixed(0)} ms`,
    '',
    'top functions by self time (% of busy time):',
    rows(summary.functions),
    '',
    'top modules by self time:',
    rows(summary.modules),
    '',
    'time by owner (nearest package or src file on the stack):',
    rows(summary.owners),
    '',
    'what drove the top owners (nearest frame outside them):',
    ...summary.drivers.flatMap((c) => [`  ${c.name}`, rows(c.callers)]),
    '',
    'callers of the top functions (nearest 3 script frames):',
    ...summary.callers.flatMap((c) => [`  ${c.name}`, rows(c.callers)]),
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { 'from-ms': { type: 'string' }, 'to-ms': { type: 'string' }, top: { type: 'string' } },
  });
  if (!positionals[0]) {
    process.stderr.write(
      'usage: profile-summary.ts <file.cpuprofile> [--from-ms N] [--to-ms N] [--top 20]\n',
    );
    process.exit(2);
  }
  const summary = await summarizeProfile(positionals[0], {
    ...(values['from-ms'] ? { fromMs: Number(values['from-ms']) } : {}),
    ...(values['to-ms'] ? { toMs: Number(values['to-ms']) } : {}),
    top: Number(values.top ?? 20),
  });
  process.stdout.write(`${formatSummary(summary)}\n`);
}
