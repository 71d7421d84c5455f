/**
 * What each field of a connection file means, as the JSON Schema says it to editors
 * (yaml-language-server shows these while a file is written). Kept apart from the schema so its
 * rules stay readable; each entry is attached with `.meta()` in connection-schema.ts, and
 * test/unit/docs-connections.test.ts checks that every property of the generated schema has one.
 */

/** A JSON Schema `description` and, where they help, `examples` (written as in a YAML file). */
export interface FieldMeta {
  description: string;
  examples?: unknown[];
}

export const DURATION = 'A duration: 500ms, 5s, 10m, 1h, 10d, or a number of milliseconds.';
/** Ends a sentence: `The key, ${TEMPLATE}` */
export const TEMPLATE = 'a template (docs/connections.md, "Templates").';

export const CONNECTION_FIELDS = {
  id: {
    description:
      "The connection's unique id: 1-63 lowercase letters, digits, '-' or '_'. Part of every delivery id.",
    examples: ['acme-sendgrid'],
  },
  account: {
    description: 'The account whose unsubscribes this connection receives (same form as id).',
    examples: ['acme'],
  },
  name: {
    description: 'A name for people, shown by the CLI.',
    examples: ['Acme - SendGrid global suppressions'],
  },
  enabled: {
    description: "Default true. false pauses the connection's queue: deliveries wait, none is sent or lost.",
  },
  campaigns: {
    description:
      "The linked campaigns, or '*' for every campaign of the account (and unsubscribes without one). Default: none.",
    examples: [['spring-sale', 'welcome'], '*'],
  },
  echo: {
    description:
      "Default false. true also delivers unsubscribes sent with the advertiser's own key (--origin advertiser) back to it.",
  },
  testing: {
    description:
      'What `unsub-relay test <id>` sends: an address (and campaign, source, attributes) safe to unsubscribe.',
  },
  settings: {
    description:
      "Non-secret values for templates, read as {{settings.name}} or {{setting 'name'}}: list ids, hosts. Never secrets.",
    examples: [{ listId: '12345', apiHost: 'api.sendgrid.com' }],
  },
  request: { description: 'The HTTP request sent for each delivery (or each batch).' },
  response: { description: 'How the answer is read: rules tried in order, the first match decides.' },
  retry: { description: 'How often and how long a retryable failure is tried again.' },
  limits: { description: 'How hard the CRM may be hit, across every worker process. Default: no limit.' },
  circuit: { description: 'The circuit breaker: stop sending while the CRM is down, probe after cooldown.' },
  dedupe: { description: 'The same address to this connection within window is delivered once.' },
  batch: {
    description:
      'Send many deliveries in one request; the body must list them with [{ $each: <item> }]. Absent: one request each.',
    examples: [{ maxSize: 500, maxWait: '1s' }],
  },
} satisfies Record<string, FieldMeta>;

export const TESTING_FIELDS = {
  email: {
    description: 'The test address; use one that is safe to unsubscribe.',
    examples: ['unsubscribe-test@acme.example'],
  },
  campaign: { description: 'The campaign of the test unsubscribe.', examples: ['spring-sale'] },
  source: { description: 'The source of the test unsubscribe.', examples: ['unsub-relay test'] },
  attributes: {
    description: 'Attributes of the test unsubscribe ({{attributes.name}}).',
    examples: [{ reason: 'test' }],
  },
} satisfies Record<string, FieldMeta>;

export const REQUEST_FIELDS = {
  method: { description: 'The HTTP method. Default POST.', examples: ['POST', 'PUT', 'DELETE'] },
  url: {
    description: `Where the request goes, ${TEMPLATE} Values are percent-encoded where they land; keep the scheme and host literal.`,
    examples: [
      'https://api.sendgrid.com/v3/asm/suppressions/global',
      "https://{{setting 'apiHost'}}/v1/unsubscribe",
    ],
  },
  auth: { description: 'How the request authenticates; one of the types below. Default: none.' },
  headers: {
    description: `Extra request headers, each value ${TEMPLATE} Headers that auth sets cannot be set again here.`,
    examples: [{ Accept: 'application/json', 'X-List': '{{settings.listId}}' }],
  },
  body: { description: 'The request body: exactly one of json, form, xml or text. Absent: no body.' },
  timeouts: { description: 'How long to wait for the CRM at each stage; a timeout is retried.' },
  maxResponseBytes: {
    description:
      'Bytes of the answer read for rules and records (1024 to 1048576); the rest is discarded. Default 65536.',
    examples: [65536],
  },
} satisfies Record<string, FieldMeta>;

export const TIMEOUT_FIELDS = {
  connect: {
    description: `Time to open the connection (TCP and TLS). Default 5s. ${DURATION}`,
    examples: ['5s'],
  },
  headers: {
    description: `Time from sending to the answer's headers. Default 10s. ${DURATION}`,
    examples: ['10s'],
  },
  body: { description: `Time to read the answer's body. Default 10s. ${DURATION}`, examples: ['10s'] },
} satisfies Record<string, FieldMeta>;

export const BODY_FIELDS = {
  json: {
    description:
      'A JSON body written as YAML; every string leaf is a template, JSON-escaped. A leaf that is one {{expression}} keeps its type.',
    examples: [{ recipient_emails: ['{{email}}'] }, { email: [{ $each: '{{email}}' }] }],
  },
  form: {
    description:
      'An application/x-www-form-urlencoded body: field name to template; a list repeats the field.',
    examples: [{ email: '{{email}}', status: 'unsubscribed' }],
  },
  xml: {
    description:
      'One template string (a SOAP envelope, say); every value is XML-escaped. Content-Type text/xml.',
    examples: ['<Unsubscribe><Email>{{email}}</Email></Unsubscribe>'],
  },
  text: {
    description: 'One template string sent as it renders, without escaping; needs contentType.',
    examples: ['{{email}}'],
  },
  contentType: {
    description: 'Overrides the Content-Type of the body kind; required with text.',
    examples: ['text/plain', 'application/soap+xml; charset=utf-8'],
  },
} satisfies Record<string, FieldMeta>;

export const RESPONSE_FIELDS = {
  rules: {
    description:
      'At most 50 rules, tried in order; the first that matches decides. None match: the default rules.',
    examples: [[{ when: { status: '2xx' }, then: 'success' }, { otherwise: 'fail' }]],
  },
} satisfies Record<string, FieldMeta>;

const VERDICTS = 'success, success_already_done, retry, rate_limited, refresh_auth or fail';

export const RULE_FIELDS = {
  when: { description: 'What the answer must show; every test given must hold.' },
  then: { description: `The verdict when "when" matches: ${VERDICTS}.`, examples: ['success', 'retry'] },
  otherwise: {
    description: `The verdict of a catch-all rule (written last, without when): ${VERDICTS}.`,
    examples: ['fail'],
  },
  after: {
    description: `retry: wait this long instead of the backoff schedule. rate_limited: the wait when no header says. ${DURATION}`,
    examples: ['30s'],
  },
  delayHeader: {
    description:
      'rate_limited: the header that says how long to wait (delta seconds, epoch seconds or ms, or an HTTP date).',
    examples: ['x-sib-ratelimit-reset'],
  },
  reason: {
    description:
      'Shown in the attempt record (at most 200 characters). A template over the request context and the answer: {{response.status}}, {{response.body.message}}, {{response.headers.x-request-id}}, and in a batch {{response.item.Message}} (its own result).',
    examples: ['HubSpot says already unsubscribed', 'Postmark: {{response.item.Message}}'],
  },
  split: {
    description:
      'false: a batch this rule refuses whole is not split to find a bad item (a wrong list id fails every half alike); the whole batch fails as one, and can be replayed once the connection is fixed.',
    examples: [false],
  },
} satisfies Record<string, FieldMeta>;

export const MATCHER_FIELDS = {
  status: {
    description: "The status: a code, a class ('4xx'), an inclusive range ('500-504'), or a list of them.",
    examples: [200, '5xx', '500-504', [200, 201]],
  },
  bodyContains: { description: 'The body contains this text.', examples: ['already unsubscribed'] },
  bodyMatches: {
    description: 'The body matches this regular expression (at most 512 characters).',
    examples: ['<OverallStatus>Error</OverallStatus>'],
  },
  json: {
    description:
      'JSONPath tests on a JSON body, one or a list (all must hold). A body that is not JSON never matches.',
    examples: [{ path: '$.success', equals: false }],
  },
  header: {
    description: 'A response header is present ({ name }), equals a value, or matches a regular expression.',
    examples: [{ name: 'x-error-code', equals: 'NOT_FOUND' }],
  },
} satisfies Record<string, FieldMeta>;

export const JSON_MATCH_FIELDS = {
  path: {
    description: 'A JSONPath into the body; filters allowed.',
    examples: ['$.success', '$.errors[*].email'],
  },
  exists: { description: 'true: the path selects something; false: it selects nothing.', examples: [true] },
  equals: {
    description: 'A selected value equals this (strictly; strings may be templates).',
    examples: [false, 'ok'],
  },
  in: {
    description: 'A selected value is one of these (strictly; strings may be templates).',
    examples: [['ok', 'queued']],
  },
  contains: {
    description:
      'A selected list holds this element, or a selected string contains this text (may be a template).',
    examples: ['{{email}}'],
  },
} satisfies Record<string, FieldMeta>;

export const HEADER_MATCH_FIELDS = {
  name: { description: 'The response header (any case).', examples: ['content-type'] },
  equals: { description: 'Its value equals this.', examples: ['application/json'] },
  matches: {
    description: 'Its value matches this regular expression.',
    examples: ['^application/(problem\\+)?json'],
  },
} satisfies Record<string, FieldMeta>;

export const RETRY_FIELDS = {
  attempts: {
    description:
      'Attempts in all, the first included (1 to 10000). Default 10; with only a deadline, bounded by the deadline.',
    examples: [10],
  },
  deadline: {
    description: `Keep trying for this long after the unsubscribe was received; past it: DEADLINE_PASSED. ${DURATION}`,
    examples: ['10d'],
  },
  warnBefore: {
    description: `Flag a delivery still failing this close to the deadline (default a fifth of it). Needs deadline. ${DURATION}`,
    examples: ['2d'],
  },
  backoff: {
    description:
      'exponential (default): delay, 2×delay, ... up to maxDelay; fixed: delay each time; schedule: the listed waits.',
    examples: ['exponential', 'fixed', 'schedule'],
  },
  delay: {
    description: `The first wait (exponential) or every wait (fixed). Default 5s. ${DURATION}`,
    examples: ['5s'],
  },
  schedule: {
    description: 'backoff: schedule only: the wait before each retry, the last one repeating.',
    examples: [['1m', '5m', '30m', '2h']],
  },
  maxDelay: {
    description: `The longest wait exponential backoff grows to. Default 1h. ${DURATION}`,
    examples: ['1h'],
  },
  jitter: {
    description: 'Default true: each wait is drawn from [wait/2, wait], so retries do not arrive as a wave.',
  },
  maxRetryAfter: {
    description: `The longest Retry-After honoured; longer answers are capped to this. Default 1h. ${DURATION}`,
    examples: ['1h'],
  },
} satisfies Record<string, FieldMeta>;

export const LIMITS_FIELDS = {
  perSecond: {
    description: 'Requests per second across all workers (GCRA); may be a fraction (0.5: one every 2 s).',
    examples: [2, 0.5],
  },
  burst: {
    description:
      'Requests that may go at once after a quiet spell. Default one second’s worth (at least 1). Needs perSecond.',
    examples: [5],
  },
  concurrency: { description: 'Requests in flight at once across all workers.', examples: [10] },
} satisfies Record<string, FieldMeta>;

export const CIRCUIT_FIELDS = {
  enabled: { description: 'Default true. false: the circuit never opens and never warns.' },
  failures: {
    description: 'Consecutive retryable failures that open the circuit. Default 10.',
    examples: [10],
  },
  failureRatio: {
    description: 'Also open when at least this share (above 0, up to 1) of the outcomes in window failed.',
    examples: [0.5],
  },
  window: { description: `The stretch failureRatio looks at. Default 1m. ${DURATION}`, examples: ['1m'] },
  minRequests: {
    description: 'Outcomes in window needed before failureRatio applies. Default 20.',
    examples: [20],
  },
  cooldown: {
    description: `How long the circuit stays open before one probe. Default 30s. ${DURATION}`,
    examples: ['30s'],
  },
  warnAfter: {
    description:
      'Consecutive retryable failures that raise connection_failing, before the circuit opens. Default 3.',
    examples: [3],
  },
} satisfies Record<string, FieldMeta>;

export const DEDUPE_FIELDS = {
  window: {
    description: `The same address to this connection within this long is delivered once; 0 turns it off. Default 10m. ${DURATION}`,
    examples: ['10m', 0],
  },
} satisfies Record<string, FieldMeta>;

export const BATCH_FIELDS = {
  maxSize: {
    description: "The most deliveries in one request (2 to 1000): the CRM's documented per-request maximum.",
    examples: [500],
  },
  maxWait: {
    description: `How long the first delivery of a batch waits for others (at most 60s). Default 1s. ${DURATION}`,
    examples: ['1s'],
  },
} satisfies Record<string, FieldMeta>;
