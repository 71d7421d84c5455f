/**
 * Contract: connections/examples/salesforce-marketing-cloud.yaml against Salesforce Marketing Cloud
 * Engagement's documented requests (SFMC publishes a WSDL, no OpenAPI spec).
 *
 * Token (https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/access-token-s2s.html):
 *   POST https://YOUR_SUBDOMAIN.auth.marketingcloudapis.com/v2/token
 *   Content-Type: application/json
 *   {"grant_type": "client_credentials", "client_id": ..., "client_secret": ..., "account_id": MID}
 *   -> {"access_token": ..., "token_type": "Bearer", "expires_in": 1079, "soap_instance_url": ..., ...}
 *
 * SOAP Update (https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/updating_subscriber_attributes_using_the_update_method.html,
 * https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/soap_faults.html):
 *   POST https://YOUR_SUBDOMAIN.soap.marketingcloudapis.com/Service.asmx
 *   Content-Type: text/xml; charset=utf-8
 *   SOAPAction: Update
 *   SOAP 1.1 envelope, the token in <fueloauth xmlns="http://exacttarget.com"> in the header, an
 *   UpdateRequest (partnerAPI namespace) with SaveOptions and a Subscriber object whose Status is
 *   Unsubscribed. The answer is an UpdateResponse whose OverallStatus is OK or Error, with HTTP 200
 *   either way; a refused token is a SOAP Security fault.
 */
import { describe, expect, it } from 'vitest';
import { renderRequest, renderTokenRequest } from '../../src/templates/render-request.js';
import {
  EMAILS,
  RENDER_OPTIONS,
  contextFor,
  expectSelfDocumented,
  fixedSecrets,
  loadExample,
  verdictOn,
} from './helpers.js';

const CLIENT_ID = 'x7w4v1u8t5s2r9q6p3o0n7m4';
const CLIENT_SECRET = 'K9j8H7g6F5e4D3c2B1a0Z9y8';
const SUBDOMAIN = 'mc563885gzs27c5t9-63k636ttgm';
const secrets = fixedSecrets({ SFMC_CLIENT_ID: CLIENT_ID, SFMC_CLIENT_SECRET: CLIENT_SECRET });
const example = loadExample('salesforce-marketing-cloud');
// Real tokens are opaque strings; this one has XML metacharacters to prove the envelope escapes it.
const TOKEN = 'eyJhbGciOiJIUzI1NiJ9.abc&def<ghi>"jkl\'';

function deliveryFor(email: string, attributes: Record<string, string> = {}, token = TOKEN) {
  const context = contextFor(example, email, { attributes });
  return renderRequest(example.compiled, context, secrets, { accessToken: token }, RENDER_OPTIONS);
}

/** Decodes the five predefined XML entities and numeric character references. */
function xmlText(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, entity: string) => {
    const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (entity[0] !== '#') return named[entity.toLowerCase()]!;
    return String.fromCodePoint(
      entity[1] === 'x' || entity[1] === 'X' ? parseInt(entity.slice(2), 16) : Number(entity.slice(1)),
    );
  });
}

/**
 * A small well-formedness check (no XML parser is a dependency): one declaration first, tags
 * balanced and properly nested, and no bare `<` or `&` in text. Returns each element's text content.
 */
function elements(xml: string): Map<string, string[]> {
  expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n')).toBe(true);
  const texts = new Map<string, string[]>();
  const stack: string[] = [];
  const tokens = xml.slice(xml.indexOf('?>') + 2).split(/(<[^<>]*>)/);
  for (const [i, token] of tokens.entries()) {
    if (i % 2 === 0) {
      expect(token, 'text must not hold a bare < or &').toMatch(
        /^([^<&]|&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);)*$/i,
      );
      if (token.trim() && stack.length > 0) {
        const name = stack.at(-1)!;
        texts.set(name, [...(texts.get(name) ?? []), xmlText(token)]);
      }
      continue;
    }
    const [, close, name, selfClosing] = /^<(\/?)([\w:.-]+)(?:\s[^>]*?)?(\/?)>$/.exec(token) ?? [];
    expect(name, `malformed tag ${token}`).toBeDefined();
    if (close) expect(stack.pop()).toBe(name);
    else if (!selfClosing) stack.push(name!);
  }
  expect(stack).toEqual([]);
  return texts;
}

/** The documented envelope with the values taken out. */
const SKELETON = `<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <s:Header>
    <fueloauth xmlns="http://exacttarget.com">…</fueloauth>
  </s:Header>
  <s:Body>
    <UpdateRequest xmlns="http://exacttarget.com/wsdl/partnerAPI">
      <Options>
        <SaveOptions>
          <SaveOption>
            <PropertyName>*</PropertyName>
            <SaveAction>UpdateAdd</SaveAction>
          </SaveOption>
        </SaveOptions>
      </Options>
      <Objects xsi:type="Subscriber">
        <SubscriberKey>…</SubscriberKey>
        <EmailAddress>…</EmailAddress>
        <Status>Unsubscribed</Status>
      </Objects>
    </UpdateRequest>
  </s:Body>
</s:Envelope>
`;
const skeletonOf = (xml: string) =>
  xml.replace(/(<(fueloauth|SubscriberKey|EmailAddress)\b[^>]*>)[^<]*(<\/\2>)/g, '$1…$3');

describe('Salesforce Marketing Cloud example', () => {
  it('documents its docs, settings and secrets, and is linked to nothing', () => {
    expectSelfDocumented(example, ['SFMC_CLIENT_ID', 'SFMC_CLIENT_SECRET']);
  });

  it('asks for a client-credentials token as documented (JSON, with the account_id)', () => {
    const token = renderTokenRequest(
      example.compiled,
      contextFor(example, EMAILS.apostrophePlus),
      secrets,
      RENDER_OPTIONS,
    );
    expect(token).toEqual({
      method: 'POST',
      url: `https://${SUBDOMAIN}.auth.marketingcloudapis.com/v2/token`,
      // Client credentials in the JSON body, not as HTTP Basic.
      headers: { accept: 'application/json', 'content-type': 'application/json' },
      body: JSON.stringify({
        grant_type: 'client_credentials',
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        account_id: '514009708',
      }),
      secrets: expect.arrayContaining([CLIENT_ID, CLIENT_SECRET]),
    });
  });

  it.each(Object.values(EMAILS))('renders the documented SOAP Update for %s', (email) => {
    const request = deliveryFor(email);
    expect(request).toMatchObject({
      method: 'POST',
      url: `https://${SUBDOMAIN}.soap.marketingcloudapis.com/Service.asmx`,
    });
    // The token travels in the envelope (header: false), never in an Authorization header.
    expect(request.headers).toEqual({
      accept: 'text/xml',
      'content-type': 'text/xml; charset=utf-8',
      soapaction: 'Update',
    });
    expect(skeletonOf(request.body!)).toBe(SKELETON);
    const texts = elements(request.body!);
    expect(texts.get('fueloauth')).toEqual([TOKEN]);
    expect(texts.get('SubscriberKey')).toEqual([email]);
    expect(texts.get('EmailAddress')).toEqual([email]);
    expect(texts.get('Status')).toEqual(['Unsubscribed']);
    expect(request.secrets).toContain(TOKEN);
  });

  it('uses the subscriber key the sender gives, escaped, so it cannot add elements', () => {
    const hostile = '</SubscriberKey><Status>Active</Status><SubscriberKey>0035g00000XyZ';
    const texts = elements(deliveryFor(EMAILS.upper, { subscriberKey: hostile }).body!);
    expect(texts.get('SubscriberKey')).toEqual([hostile]);
    expect(texts.get('Status')).toEqual(['Unsubscribed']);
    expect(texts.get('EmailAddress')).toEqual([EMAILS.upper]);
  });

  describe('response rules', () => {
    const envelope = (body: string) =>
      `<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>${body}</soap:Body></soap:Envelope>`;
    const update = (status: string, result: string) =>
      envelope(
        `<UpdateResponse xmlns="http://exacttarget.com/wsdl/partnerAPI"><Results>${result}</Results><RequestID>7f3b6c2e-8a41-4d0b-9a57-2f1c3d4e5b6a</RequestID><OverallStatus>${status}</OverallStatus></UpdateResponse>`,
      );
    const ok = update(
      'OK',
      '<StatusCode>OK</StatusCode><StatusMessage>Updated Subscriber.</StatusMessage><OrdinalID>0</OrdinalID><Object xsi:type="Subscriber"><PartnerKey xsi:nil="true" /><ObjectID xsi:nil="true" /><EmailAddress>o\'brien+news@example.com</EmailAddress><SubscriberKey>o\'brien+news@example.com</SubscriberKey><Status>Unsubscribed</Status></Object>',
    );
    const error = update(
      'Error',
      '<StatusCode>Error</StatusCode><StatusMessage>Error: Invalid email address</StatusMessage><OrdinalID>0</OrdinalID><ErrorCode>12002</ErrorCode>',
    );
    const securityFault = envelope(
      '<soap:Fault><faultcode xmlns:q0="http://exacttarget.com">q0:Security</faultcode><faultstring>Login failed</faultstring></soap:Fault>',
    );
    const serverFault = envelope(
      '<soap:Fault><faultcode>soap:Server</faultcode><faultstring>Server was unable to process request.</faultstring><detail><ErrorCode>2</ErrorCode></detail></soap:Fault>',
    );
    const xml = { 'content-type': 'text/xml; charset=utf-8' };

    it('200 with OverallStatus OK: delivered', () => {
      expect(verdictOn(example, { status: 200, headers: xml, body: ok }).verdict).toBe('success');
    });

    it('200 with OverallStatus Error: failed with a reason, not counted as delivered', () => {
      expect(verdictOn(example, { status: 200, headers: xml, body: error })).toMatchObject({
        verdict: 'fail',
        rule: 1,
        reason: 'SFMC refused the update (OverallStatus Error); the StatusMessage in the response says why',
      });
    });

    it('200 without an OverallStatus: failed', () => {
      expect(verdictOn(example, { status: 200, headers: xml, body: envelope('') }).verdict).toBe('fail');
    });

    it('a Security fault: refresh the token (once) and resend', () => {
      expect(verdictOn(example, { status: 500, headers: xml, body: securityFault }).verdict).toBe(
        'refresh_auth',
      );
    });

    it('a Server fault (HTTP 500): retried; 429: rate limited', () => {
      expect(verdictOn(example, { status: 500, headers: xml, body: serverFault }).verdict).toBe('retry');
      expect(verdictOn(example, { status: 429 }).verdict).toBe('rate_limited');
    });
  });

  it('refreshes the 20-minute token early and keeps trying for 10 days on a schedule', () => {
    expect(example.connection.request.auth).toMatchObject({
      refreshBefore: 120_000,
      defaultTtl: 1_080_000,
      header: false,
    });
    expect(example.connection.retry).toMatchObject({ backoff: 'schedule', deadline: 10 * 24 * 3_600_000 });
  });
});
