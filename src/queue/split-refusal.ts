import { createHash } from 'node:crypto';
import type { Connection } from '../config/connection-schema.js';
import type { DeliveryJob, Verdict } from '../domain/delivery.js';
import type { ConnectionControl } from '../store/connection-control.js';
import type { Exchange } from './exchange.js';

/** The refused batch a delivery was split from (see `deliveryJobSchema.splitOf`). */
export type SplitOf = NonNullable<DeliveryJob['splitOf']>;

/** What becomes of a batch the CRM refused whole: split in halves, or failed as one. */
export type SplitDecision = { kind: 'split'; splitOf: SplitOf } | { kind: 'fail'; verdict: Verdict };

/**
 * Splitting a refused batch finds one bad item in log2(n) rounds, but a configuration error (a
 * wrong list id) refuses every half alike and costs 2n requests. So a batch is not split when its
 * rule says `split: false`, nor once both halves of a refused batch were refused the same way
 * (same status, same rule, the same answer): that batch's whole line fails with the verdict instead.
 * `requestId` names this request; `from` is where its deliveries were split from, if anywhere.
 */
export async function decideSplit(
  control: Pick<ConnectionControl, 'halfRefused' | 'stopSplitting'>,
  connection: Connection,
  requestId: string,
  result: Exchange,
  verdict: Verdict,
  from: SplitOf | undefined,
): Promise<SplitDecision> {
  const status = result.outcome.kind === 'response' ? result.outcome.status : 0;
  const body = result.outcome.kind === 'response' ? sha1(result.outcome.body) : '';
  const { rule } = verdict;
  if (typeof rule === 'number' && connection.response.rules[rule]?.split === false) {
    return {
      kind: 'fail',
      verdict: {
        ...verdict,
        reason: `${verdict.reason} (rule ${rule + 1} says split: false: the whole batch fails as one; replay it once the connection is fixed)`,
      },
    };
  }
  // The same answer word for word: an error that names the bad address differs between the halves,
  // so a batch holding two bad addresses (one in each half) keeps splitting down to them.
  const sameWay = from !== undefined && from.status === status && from.rule === rule && from.body === body;
  if (sameWay && (await control.halfRefused(connection.id, from.parent, requestId)) >= 2) {
    const failed: Verdict = {
      ...verdict,
      reason: `${verdict.reason}; both halves of a refused batch were refused the same way (the same answer, status ${status}, ${rule === 'default' ? 'default rule' : `rule ${rule + 1}`}): a configuration error, not one bad item, so it is not split further; replay once the connection is fixed`,
    };
    await control.stopSplitting(connection.id, from.root, JSON.stringify(failed));
    return { kind: 'fail', verdict: failed };
  }
  return {
    kind: 'split',
    splitOf: { root: sameWay ? from.root : requestId, parent: requestId, status, rule, body },
  };
}

/** The verdict the rest of a stopped line fails with, if its splitting was stopped. */
export async function stoppedSplit(
  control: Pick<ConnectionControl, 'splittingStopped'>,
  connectionId: string,
  from: SplitOf | undefined,
): Promise<Verdict | undefined> {
  if (!from) return undefined;
  const stored = await control.splittingStopped(connectionId, from.root);
  return stored === undefined ? undefined : (JSON.parse(stored) as Verdict);
}

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');
