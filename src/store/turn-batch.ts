/**
 * Runs the calls made in one turn of the event loop as one. A worker with many deliveries in flight
 * admits and settles several of them per turn (every CRM answer read in one poll); sending them to
 * Redis as one script call costs one command's overhead, in the client and in Redis, instead of one
 * each. The wait is one turn (`setImmediate`), well under a millisecond.
 */
export class TurnBatch<In, Out> {
  private pending: Array<{ input: In; resolve: (out: Out) => void; reject: (error: unknown) => void }> = [];
  private scheduled = false;

  constructor(
    /** Answers every input, in order. */
    private readonly run: (inputs: In[]) => Promise<Out[]>,
    /** Sent at once when this many are waiting, so one call stays small. */
    private readonly maxSize = 64,
  ) {}

  call(input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.pending.push({ input, resolve, reject });
      if (this.pending.length >= this.maxSize) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    let answered: Promise<Out[]>;
    try {
      answered = this.run(batch.map((entry) => entry.input));
    } catch (error) {
      // A run that throws before it returns a promise still answers its callers, never the loop.
      answered = Promise.reject(error);
    }
    answered.then(
      (outs) => batch.forEach((entry, i) => entry.resolve(outs[i]!)),
      (error: unknown) => batch.forEach((entry) => entry.reject(error)),
    );
  }
}

/**
 * A single-item Lua script (written with KEYS[k] and ARGV[a]) made to run for many items: item i's
 * keys are KEYS[i*keys+1 ..] and its arguments ARGV[i*args+1 ..]; answers the list of each item's
 * answer. The single-item text stays the readable source of truth.
 */
export function forEachItem(lua: string, keys: number, args: number): string {
  const keyNames = Array.from({ length: keys }, (_, k) => `k${k + 1}`);
  const body = lua
    .replace(/KEYS\[(\d+)\]/g, (_, k: string) => `k${k}`)
    .replace(/ARGV\[(\d+)\]/g, (_, a: string) => `A[${a}]`);
  return `
local function one(${keyNames.join(', ')}, A)
${body}
end
local out = {}
for i = 0, #KEYS / ${keys} - 1 do
  out[i + 1] = one(${keyNames.map((_, k) => `KEYS[i * ${keys} + ${k + 1}]`).join(', ')}, {unpack(ARGV, i * ${args} + 1, (i + 1) * ${args})})
end
return out
`;
}

/** One item of a `forEachItem` script call: its keys and arguments. */
export interface ScriptItem {
  keys: string[];
  args: (string | number)[];
}

/**
 * Sends items to a registered `forEachItem` script, laid end to end: every item must carry exactly
 * the script's number of keys and arguments (a short one shifts every item after it).
 */
export function eachItemCall<T>(
  redis: object,
  command: (numberOfKeys: number, ...keysThenArgs: (string | number)[]) => Promise<T[]>,
  keysPerItem: number,
): (items: ScriptItem[]) => Promise<T[]> {
  return (items) =>
    command.call(
      redis,
      items.length * keysPerItem,
      ...items.flatMap((item) => item.keys),
      ...items.flatMap((item) => item.args),
    );
}
