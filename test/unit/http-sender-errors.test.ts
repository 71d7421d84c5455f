import { MockAgent, errors } from 'undici';
import { describe, expect, it } from 'vitest';
import { createSender } from '../../src/http/sender.js';

// Errors that loopback servers cannot produce on demand (DNS failure, a dispatcher's size limit),
// and the timeouts' messages at production values, checked through undici's MockAgent.
const limits = { timeouts: { connect: 5_000, headers: 10_000, body: 10_000 }, maxResponseBytes: 1_024 };

describe('error mapping with a mock dispatcher', () => {
  const url = 'https://crm.example.com/v1/unsubscribe?api_key=k3y';

  it.each([
    [new errors.ConnectTimeoutError(), 'CONNECT_TIMEOUT', 'no connection to crm.example.com within 5s'],
    [
      new errors.HeadersTimeoutError(),
      'HEADERS_TIMEOUT',
      'no response headers from crm.example.com within 10s',
    ],
    [new errors.BodyTimeoutError(), 'BODY_TIMEOUT', 'response body from crm.example.com stalled for 10s'],
    [
      new errors.SocketError('other side closed'),
      'NETWORK',
      'UND_ERR_SOCKET: socket closed by crm.example.com',
    ],
    [
      new errors.ResponseExceededMaxSizeError(),
      'RESPONSE_TOO_LARGE',
      "response from crm.example.com exceeded the dispatcher's size limit",
    ],
    [
      Object.assign(new Error('getaddrinfo ENOTFOUND crm.example.com'), { code: 'ENOTFOUND' }),
      'NETWORK',
      'ENOTFOUND: no DNS record for crm.example.com',
    ],
  ])('maps %s', async (error, code, message) => {
    const mock = new MockAgent();
    mock.disableNetConnect();
    mock
      .get('https://crm.example.com')
      .intercept({ path: '/v1/unsubscribe?api_key=k3y', method: 'POST' })
      .replyWithError(error);
    const mocked = createSender({ allowPrivateTargets: false }, mock);
    const outcome = await mocked.send(
      {
        method: 'POST',
        url,
        headers: { Authorization: 'Bearer t0ken' },
        body: '{"email":"a@b.c"}',
        secrets: ['t0ken', 'k3y'],
      },
      limits,
    );
    await mock.close();
    expect(outcome).toMatchObject({ kind: 'error', code, message });
  });

  it('never leaks secrets, headers or body into the message', async () => {
    const mock = new MockAgent();
    mock.disableNetConnect();
    mock
      .get('https://k3y.example.com')
      .intercept({ path: '/', method: 'POST' })
      .replyWithError(
        Object.assign(new Error('boom Bearer t0ken {"email":"a@b.c"}'), { code: 'ECONNRESET' }),
      );
    const mocked = createSender({ allowPrivateTargets: false }, mock);
    const outcome = await mocked.send(
      {
        method: 'POST',
        url: 'https://k3y.example.com/',
        headers: { Authorization: 'Bearer t0ken' },
        body: '{"email":"a@b.c"}',
        secrets: ['t0ken', 'k3y'],
      },
      limits,
    );
    await mock.close();
    expect(outcome).toMatchObject({
      kind: 'error',
      code: 'NETWORK',
      message: 'ECONNRESET: connection reset by [redacted].example.com',
    });
  });
});
