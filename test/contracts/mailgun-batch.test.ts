/**
 * Contract: connections/examples/mailgun-batch.yaml (mailgun.yaml, batched) against Mailgun's
 * published spec (operation POST-v3--domainID--unsubscribes, POST /v3/{domain_name}/unsubscribes),
 * in its JSON form: "a valid JSON encoded sting containing up to 1000 unsubscribe records".
 * Docs: https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/unsubscribe/post-v3--domainid--unsubscribes
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EMAILS,
  basicAuth,
  expectBatchVariantOf,
  expectSelfDocumented,
  fixedSecrets,
  loadExample,
  loadSpec,
  renderBatch,
  verdictsOn,
  type CrmAnswer,
  type ContractSpec,
} from './helpers.js';

const OPERATION = 'POST-v3--domainID--unsubscribes';
const RECORD = 'github.com-mailgun-blackbook-model-Unsubscribe';
const KEY = 'key-3ax6xnjp29jd6fds4gc373sgvjxteol0';
const secrets = fixedSecrets({ MAILGUN_API_KEY: KEY });
const example = loadExample('mailgun-batch');
const EMAILS_IN_BATCH = [...Object.values(EMAILS), 'jane.doe@example.com'];

interface Schema {
  required?: string[];
  properties?: Record<string, unknown>;
}
/** The record schema as published, before the correction below. */
let published: Schema | undefined;
let spec: ContractSpec;
beforeAll(async () => {
  spec = await loadSpec('mailgun.yaml.gz', {
    bodies: { [OPERATION]: 'application/json' },
    // The record schema lists created_at as required (typed `object`, for a Go RFC822 time). It is
    // not: the spec's own request example omits it (it writes "createdat"), Mailgun's Go client
    // sends it only when set (`json:"created_at,omitempty"`), and the form body and CSV import take
    // it as optional, defaulting to the time received. So it is made optional here, in memory.
    adjust: (document) => {
      const schemas = (document.components?.schemas ?? {}) as Record<string, Schema>;
      const record = schemas[RECORD]!;
      published = structuredClone(record);
      record.required = record.required?.filter((name) => name !== 'created_at');
    },
  });
});

const record = (address: string) => ({ address, tags: ['*'] });

describe('Mailgun batch example', () => {
  it('documents its docs, settings, secret and maximum, and is mailgun.yaml batched', () => {
    expectSelfDocumented(example, ['MAILGUN_API_KEY']);
    expectBatchVariantOf(example, loadExample('mailgun'));
  });

  it('takes as many records per request as the spec allows', () => {
    expect(spec.operation(OPERATION).description).toContain('up to 1000 unsubscribe records');
    expect(example.connection.batch).toEqual({ maxSize: 1_000, maxWait: 1_000 });
  });

  it('the correction is the one described: only created_at stops being required', () => {
    expect(published).toMatchObject({ required: ['address', 'tags', 'created_at'] });
    const examples = (
      spec.operation(OPERATION).requestBody as {
        content: Record<string, { examples: Record<string, { value: Array<Record<string, unknown>> }> }>;
      }
    ).content['application/json']!.examples.Example!.value;
    for (const item of examples) expect(item).not.toHaveProperty('created_at');
  });

  it('renders one JSON list with a record per address of the batch', () => {
    const request = renderBatch(example, secrets, EMAILS_IN_BATCH);
    expect(request).toMatchObject({
      method: 'POST',
      url: 'https://api.mailgun.net/v3/mg.example.com/unsubscribes',
    });
    expect(request.headers).toEqual({
      accept: 'application/json',
      authorization: basicAuth('api', KEY),
      'content-type': 'application/json',
    });
    // JSON, not a form: `+` and Unicode go as they are, each address exactly as received.
    expect(JSON.parse(request.body!)).toEqual(EMAILS_IN_BATCH.map(record));
    expect(request.secrets).toContain(KEY);

    const check = spec.check(request, OPERATION);
    expect(check.errors).toEqual([]);
    expect(check.params).toEqual({ domain_name: 'mg.example.com' });
    expect(check.body).toEqual(EMAILS_IN_BATCH.map(record));
  });

  it('a full batch (1,000 records) is one request the spec accepts', () => {
    const emails = Array.from({ length: 1_000 }, (_, i) => `unsub-${i}+list@example.com`);
    const request = renderBatch(example, secrets, emails);
    expect(spec.check(request, OPERATION).errors).toEqual([]);
    expect(JSON.parse(request.body!)).toHaveLength(1_000);
  });

  it('goes to the EU host when the setting says so', () => {
    const eu = {
      ...example,
      connection: {
        ...example.connection,
        settings: { ...example.connection.settings, apiHost: 'api.eu.mailgun.net' },
      },
    };
    const request = renderBatch(eu, secrets, EMAILS_IN_BATCH);
    expect(request.url).toBe('https://api.eu.mailgun.net/v3/mg.example.com/unsubscribes');
    expect(spec.check(request, OPERATION).errors).toEqual([]);
  });

  it('the spec catches a record without an address or tags (the check can fail)', () => {
    const request = renderBatch(example, secrets, EMAILS_IN_BATCH);
    const checked = (records: unknown[]) =>
      spec.check({ ...request, body: JSON.stringify(records) }, OPERATION).errors;
    expect(checked([record(EMAILS.upper), { tags: ['*'] }])).toEqual([
      "schema: /requestBody/1 must have required property 'address'",
    ]);
    expect(checked([record(EMAILS.upper), record(EMAILS.unicode), { address: EMAILS.unicode }])).toEqual([
      "schema: /requestBody/2 must have required property 'tags'",
    ]);
    expect(checked([])).toEqual([]); // the engine never sends an empty batch
  });

  describe('response rules (Mailgun answers with a count, never per record)', () => {
    const verdicts = (answer: CrmAnswer) =>
      verdictsOn(example, answer, EMAILS_IN_BATCH).map((v) => v.verdict);
    // The spec's own examples.
    const added = { message: '4 addresses have been added to the unsubscribes table' };
    const tooMany = { message: 'Batch size should be less than 1000' };

    it('uses answers shaped as the spec documents them', () => {
      expect(spec.checkResponse(OPERATION, 200, added)).toEqual([]);
      expect(spec.checkResponse(OPERATION, 400, tooMany)).toEqual([]);
    });

    it('200: every delivery of the request succeeds', () => {
      expect(verdicts({ status: 200, body: added })).toEqual(['success', 'success', 'success', 'success']);
    });

    it('400 (too many, or an invalid address): refused whole, every delivery fails, so the engine splits it', () => {
      expect(verdicts({ status: 400, body: tooMany })).toEqual(['fail', 'fail', 'fail', 'fail']);
      const invalid = { message: "'address' parameter is not a valid address" };
      expect(verdicts({ status: 400, body: invalid })).toEqual(['fail', 'fail', 'fail', 'fail']);
    });

    it('429: every delivery waits; 500: retried; 401 (bad key): failed', () => {
      expect(verdicts({ status: 429, body: { message: 'Too many requests' } })).toEqual([
        'rate_limited',
        'rate_limited',
        'rate_limited',
        'rate_limited',
      ]);
      expect(verdicts({ status: 500 })).toEqual(['retry', 'retry', 'retry', 'retry']);
      expect(verdicts({ status: 401, body: 'Forbidden' })).toEqual(['fail', 'fail', 'fail', 'fail']);
    });
  });
});
