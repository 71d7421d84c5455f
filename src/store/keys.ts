import { emailKey } from '../domain/unsubscribe.js';

/** BullMQ queue names may not contain ":"; connection ids are slugs, so "." keeps them unambiguous. */
export function deliveryQueueName(connectionId: string): string {
  return `deliveries.${connectionId}`;
}

/**
 * Every Redis key the product uses, in one place, under one prefix (so tests and co-tenant installs
 * never collide). BullMQ's own keys live under `${prefix}:bull`.
 */
export function keyspace(prefix: string) {
  const bullPrefix = `${prefix}:bull`;
  return {
    prefix,
    bullPrefix,
    /** BullMQ's hash of a delivery queue's state (`paused`, concurrency), read by our own scripts. */
    deliveryQueueMeta: (connectionId: string) => `${bullPrefix}:${deliveryQueueName(connectionId)}:meta`,
    apiKeys: `${prefix}:api-keys`,
    connections: `${prefix}:connections`,
    connectionsChanged: `${prefix}:connections:changed`,
    /** Every version of a connection ever stored: version → record. */
    connectionVersions: (id: string) => `${prefix}:connection-versions:${id}`,
    /** Hash id → the file as last applied (JSON {connection, file?, fileHash?, at}): the base of the three-way apply. */
    connectionsLastApplied: `${prefix}:connections:last-applied`,
    /** Hash id → a conflict between its file and the store that waits for an operator (JSON). */
    connectionConflicts: `${prefix}:connections:conflicts`,
    /** Hash id → a tombstone (JSON {at, by, version}): deleted through the admin API, stays deleted. */
    connectionsDeleted: `${prefix}:connections:deleted`,
    /** Set when connection files were first applied to this Redis: gone means Redis lost its data. */
    connectionsApplied: `${prefix}:connections:applied`,
    unsubscribe: (id: string) => `${prefix}:unsub:${id}`,
    /** Idempotency-Key claim: the fingerprint of the first body sent with it. */
    idempotency: (id: string) => `${prefix}:idem:${id}`,
    accountUnsubscribes: (account: string) => `${prefix}:account:${account}:unsubs`,
    attempts: (deliveryId: string) => `${prefix}:attempts:${deliveryId}`,
    /** Set of every account seen or registered. */
    accounts: `${prefix}:accounts`,
    /** Hash campaign id → JSON {name?, registeredAt, via}. */
    accountCampaigns: (account: string) => `${prefix}:account:${account}:campaigns`,
    /** Sorted set of one email's unsubscribe ids by receivedAt (suppression lookup). */
    emailUnsubscribes: (account: string, email: string) =>
      `${prefix}:account:${account}:email:${emailKey(email)}`,
    /** List of a connection's last test runs. */
    testRuns: (connectionId: string) => `${prefix}:test-runs:${connectionId}`,
    /** Hash id → bulk replay record, and the list of ids newest first. */
    replays: `${prefix}:replays`,
    replaysOrder: `${prefix}:replays:order`,
    /** Set of every connection id that has (or had) a delivery queue (`deliveries.<id>`). */
    deliveryQueues: `${prefix}:delivery-queues`,
    /** List of a connection's fresh deliveries waiting to be put in a batch job (src/store/batch-buffer.ts). */
    batchBuffer: (connectionId: string) => `${prefix}:batch-buffer:${connectionId}`,
    /** Pub/sub channel: a connection's batch buffer was empty and has a delivery waiting (the message is its id). */
    deliveriesWaiting: `${prefix}:deliveries:waiting`,
    /** List of the delivery ids one batch job carries. */
    batch: (batchId: string) => `${prefix}:batch:${batchId}`,
    /** Sorted set of the deliveries batch jobs delivered, by when (they have no job to list them by). */
    batchDelivered: (connectionId: string) => `${prefix}:batch-delivered:${connectionId}`,
    /** Sorted set of a connection's batches formed and not yet finished, by when they were formed. */
    openBatches: (connectionId: string) => `${prefix}:batches:${connectionId}`,
    /** Hash of one connection's delivery control: circuit, failure counts, rate-limit schedule, pause. */
    control: (connectionId: string) => `${prefix}:control:${connectionId}`,
    /** The half-open circuit's one probe in flight (a lease). */
    controlProbe: (connectionId: string) => `${prefix}:control:${connectionId}:probe`,
    /** Duplicate window: the delivery that claimed (connection, email hash). */
    dedupe: (connectionId: string, emailHash: string) => `${prefix}:dedupe:${connectionId}:${emailHash}`,
    /** Stream of operational events (circuit, failing, exhausted...), capped. */
    events: `${prefix}:events`,
  };
}
export type Keyspace = ReturnType<typeof keyspace>;
