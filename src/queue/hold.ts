import type { EventSink } from '../events/operational-event.js';
import type { ConnectionControl } from '../store/connection-control.js';
import type { DeliveryQueues } from './queues.js';

/** Who pauses the queue of a disabled or deleted connection; enabling it resumes only such a pause. */
export const DISABLED_BY = 'connection disabled';

/**
 * Takes a connection's queue out of service because it was disabled or deleted; the backlog stays,
 * visible, until the connection is enabled again or an operator moves or discards it. A queue paused
 * already (by hand, or by another process) is left as it is.
 */
export async function holdConnection(
  deps: { queues: DeliveryQueues; control: ConnectionControl; events: EventSink },
  connectionId: string,
  reason: 'disabled' | 'deleted',
): Promise<void> {
  const queue = deps.queues.for(connectionId);
  if (await queue.isPaused()) return;
  await deps.control.markPaused(
    connectionId,
    DISABLED_BY,
    `connection ${reason}: its deliveries wait here until it is enabled, or they are moved or discarded`,
    new Date(),
  );
  await queue.pause();
  deps.events.emit({
    type: 'connection_paused',
    connectionId,
    message: `${connectionId} is ${reason}: its pending deliveries are held (see GET /admin/v1/backlogs)`,
    details: { by: DISABLED_BY, reason },
  });
}
