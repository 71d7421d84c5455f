import type { Scenario } from '../lib/types.js';
import { batchDrain } from './batch-drain.js';
import { drain } from './drain.js';
import { fanout } from './fanout.js';
import { ingest } from './ingest.js';
import { isolation } from './isolation.js';
import { latency } from './latency.js';
import { memory } from './memory.js';

/**
 * Every scenario `npm run bench` knows, in the order they run. To add one, write
 * bench/scenarios/<id>.ts exporting a `Scenario` (see drain.ts: `drainOnce` fills a backlog with the
 * engine's own producer, starts a ROLES=worker engine and times it at the CRM) and list it here;
 * `--only <id>` then runs it and the report, chart and docs pick it up.
 *
 * `batch-drain` drains the same backlog unbatched and batched (`$each` body; the CRM counts each
 * item of a batched request as one delivery).
 */
export const scenarios: Scenario[] = [drain, ingest, latency, memory, fanout, isolation, batchDrain];
