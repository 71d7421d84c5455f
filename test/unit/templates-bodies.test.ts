import { describe, expect, it } from 'vitest';
import {
  connectionSchema,
  type Connection,
  type ConnectionInput,
} from '../../src/config/connection-schema.js';
import type { Unsubscribe } from '../../src/domain/unsubscribe.js';
import { redactRequest } from '../../src/templates/redact.js';
import {
  checkTemplates,
  compileConnection,
  referencedSecrets,
  renderRequest,
  templateContext,
  type SecretSource,
} from '../../src/templates/render-request.js';
import { templateError } from '../helpers/template-error.js';

const unsubscribe: Unsubscribe = {
  id: '6f1c7d9e-8a7b-4c2d-9e0f-1a2b3c4d5e6f',
  account: 'acme',
  email: "o'brien+news@example.com",
  receivedAt: '2024-05-01T10:00:00.000Z',
  attributes: { name: 'Zoë <x>', evil: '</Email><Admin>true</Admin>' },
};
const secrets: SecretSource = { get: (name) => ({ KEY: 'k&y <s3cret> "q"', PLUS: 'a+b c' })[name] };

function connection(
  body: ConnectionInput['request']['body'],
  request: Partial<ConnectionInput['request']> = {},
) {
  return connectionSchema.parse({
    id: 'acme-crm',
    account: 'acme',
    name: 'Acme CRM',
    settings: { listId: 'news letters', group: 7 },
    request: { url: 'https://api.crm.example/v1/unsubscribe', body, ...request },
  });
}

function render(conn: Connection, unsub: Unsubscribe = unsubscribe) {
  return renderRequest(
    compileConnection(conn),
    templateContext(unsub, conn, 1, { sandboxUrl: 'http://x' }),
    secrets,
  );
}

describe('form bodies', () => {
  it('form-encodes each field per WHATWG: space is +, a + in an email is %2B', () => {
    const conn = connection({
      form: {
        address: '{{email}}',
        name: '{{attributes.name}}',
        list: '{{settings.listId}}',
        'tag name': ['unsubscribed', "{{default campaign 'none'}}", "a*b-c._~!'()"],
        n: '{{attempt}}',
      },
    });
    const rendered = render(conn);
    expect(rendered.body).toBe(
      'address=o%27brien%2Bnews%40example.com&name=Zo%C3%AB+%3Cx%3E&list=news+letters' +
        '&tag+name=unsubscribed&tag+name=none&tag+name=a*b-c._%7E%21%27%28%29&n=1',
    );
    expect(rendered.headers['content-type']).toBe('application/x-www-form-urlencoded');
    // What a server decodes is exactly what was rendered.
    expect(new URLSearchParams(rendered.body).getAll('tag name')).toEqual([
      'unsubscribed',
      'none',
      "a*b-c._~!'()",
    ]);
    expect(new URLSearchParams(rendered.body).get('address')).toBe("o'brien+news@example.com");
  });

  it('names the failing form field, and the list item', () => {
    const conn = connection({ form: { address: '{{email}}', tags: ['ok', '{{lowercase attributes}}'] } });
    const error = templateError(() => render(conn));
    expect(error.field).toBe('request.body.form.tags[1]');
    expect(checkTemplates(connection({ form: { address: '{{emial}}' } }))).toEqual([
      {
        field: 'request.body.form.address',
        reason: 'unknown variable "emial" (line 1, column 3); did you mean "email"?',
      },
    ]);
  });

  it('redacts a secret in its form-encoded form', () => {
    const conn = connection({ form: { key: "{{secret 'PLUS'}}", address: '{{email}}' } });
    const rendered = render(conn);
    expect(rendered.body).toBe('key=a%2Bb+c&address=o%27brien%2Bnews%40example.com');
    expect(redactRequest(rendered).body).toBe('key=[redacted]&address=o%27brien%2Bnews%40example.com');
  });
});

describe('xml bodies', () => {
  const envelope =
    '<?xml version="1.0"?><Envelope><Email attr="{{email}}" alt=\'{{attributes.name}}\'>{{email}}</Email>' +
    '<Name>{{attributes.name}}</Name><Note>{{attributes.evil}}</Note><List>{{settings.listId}}</List></Envelope>';

  it('escapes & < > " \' in every value and defaults to text/xml', () => {
    const rendered = render(connection({ xml: envelope }));
    expect(rendered.body).toBe(
      '<?xml version="1.0"?><Envelope><Email attr="o&apos;brien+news@example.com" alt=\'Zo\u00eb &lt;x&gt;\'>' +
        'o&apos;brien+news@example.com</Email><Name>Zoë &lt;x&gt;</Name>' +
        '<Note>&lt;/Email&gt;&lt;Admin&gt;true&lt;/Admin&gt;</Note><List>news letters</List></Envelope>',
    );
    expect(rendered.headers['content-type']).toBe('text/xml; charset=utf-8');
  });

  it('keeps a value inside its element, whatever it contains', () => {
    const attack = { ...unsubscribe, attributes: { evil: '&amp;]]></Email><Email>x@evil.example' } };
    const rendered = render(connection({ xml: '<Email>{{attributes.evil}}</Email>' }), attack);
    expect(rendered.body).toBe('<Email>&amp;amp;]]&gt;&lt;/Email&gt;&lt;Email&gt;x@evil.example</Email>');
    expect(rendered.body!.match(/<Email>/g)).toHaveLength(1);
  });

  it('does not escape twice with an explicit {{xml}}, and keeps the literal markup', () => {
    const rendered = render(
      connection({ xml: '<a b="1">{{xml attributes.name}}&amp;{{attributes.name}}</a>' }),
    );
    expect(rendered.body).toBe('<a b="1">Zoë &lt;x&gt;&amp;Zoë &lt;x&gt;</a>');
  });

  it('refuses a character XML cannot carry', () => {
    const bad = { ...unsubscribe, attributes: { evil: 'a\u0000b' } };
    const error = templateError(() => render(connection({ xml: '<N>{{attributes.evil}}</N>' }), bad));
    expect(error.message).toBe(
      'connection acme-crm: request.body.xml: XML value: the value contains a character XML cannot carry (a control character)',
    );
  });

  it('honours contentType, and redacts XML-escaped secrets', () => {
    const conn = connection({
      xml: "<K>{{secret 'KEY'}}</K>",
      contentType: 'application/soap+xml; charset=utf-8',
    });
    const rendered = render(conn);
    expect(rendered.headers['content-type']).toBe('application/soap+xml; charset=utf-8');
    expect(rendered.body).toBe('<K>k&amp;y &lt;s3cret&gt; &quot;q&quot;</K>');
    expect(redactRequest(rendered).body).toBe('<K>[redacted]</K>');
    expect(referencedSecrets(conn)).toEqual(['KEY']);
  });

  it('allows bodies larger than a single-field template', () => {
    const big = `<Doc>${'<Pad>x</Pad>'.repeat(1_000)}<Email>{{email}}</Email></Doc>`;
    expect(render(connection({ xml: big })).body).toContain('<Email>o&apos;brien+news@example.com</Email>');
  });
});

describe('text bodies', () => {
  it('inserts values unescaped, with the required content type', () => {
    const conn = connection({
      text: 'EMAIL={{email}}\nNAME={{attributes.name}}\nXML=<n>{{xml attributes.name}}</n>',
      contentType: 'text/plain; charset=utf-8',
    });
    const rendered = render(conn);
    expect(rendered.body).toBe("EMAIL=o'brien+news@example.com\nNAME=Zoë <x>\nXML=<n>Zoë &lt;x&gt;</n>");
    expect(rendered.headers['content-type']).toBe('text/plain; charset=utf-8');
  });

  it('names request.body.text in errors', () => {
    const conn = connection({ text: '{{nope}}', contentType: 'text/plain' });
    expect(checkTemplates(conn)).toEqual([
      { field: 'request.body.text', reason: 'unknown variable "nope" (line 1, column 3)' },
    ]);
  });
});

describe('content type', () => {
  it('lets contentType override the default of a json body', () => {
    const rendered = render(
      connection({ json: { e: '{{email}}' }, contentType: 'application/vnd.api+json' }),
    );
    expect(rendered.headers['content-type']).toBe('application/vnd.api+json');
    expect(rendered.body).toBe('{"e":"o\'brien+news@example.com"}');
  });

  it('refuses contentType together with a Content-Type header', () => {
    const conn = connection(
      { form: { a: 'b' }, contentType: 'application/x-www-form-urlencoded; charset=utf-8' },
      { headers: { 'Content-Type': 'text/plain' } },
    );
    expect(checkTemplates(conn)).toEqual([
      {
        field: 'request.body.contentType',
        reason: 'also set by request.headers.Content-Type; remove one of them',
      },
    ]);
  });
});
