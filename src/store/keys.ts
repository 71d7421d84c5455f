/**
 * Every Redis key the product uses, in one place, under one prefix (so tests and co-tenant installs
 * never collide). BullMQ's own keys live under `${prefix}:bull`.
 */
export function keyspace(prefix: string) {
  return {
    prefix,
    bullPrefix: `${prefix}:bull`,
    apiKeys: `${prefix}:api-keys`,
    connections: `${prefix}:connections`,
    connectionsChanged: `${prefix}:connections:changed`,
    /** Every version of a connection ever stored: version → record. */
    connectionVersions: (id: string) => `${prefix}:connection-versions:${id}`,
    unsubscribe: (id: string) => `${prefix}:unsub:${id}`,
    /** Idempotency-Key claim: the fingerprint of the first body sent with it. */
    idempotency: (id: string) => `${prefix}:idem:${id}`,
    accountUnsubscribes: (account: string) => `${prefix}:account:${account}:unsubs`,
    attempts: (deliveryId: string) => `${prefix}:attempts:${deliveryId}`,
  };
}
export type Keyspace = ReturnType<typeof keyspace>;

export const DELIVERY_QUEUE = 'deliveries';
