import type { Connection } from '../config/connection-schema.js';
import { hasUrlUnsafeChar } from './chars.js';
import { parseTemplate } from './template-env.js';

type Statement = hbs.AST.Statement;
type Settings = Connection['settings'];

/** A host name or address with an optional port, as a setting may give it (`api.eu.sendgrid.com`). */
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?::\d{1,5})?$/;

/**
 * Where a request goes must be known when the file is validated, not decided by each unsubscribe:
 * a URL is `http(s)://` written out with a host that is literal text or settings holding host names
 * (`https://{{setting 'dc'}}.api.mailchimp.com/...`), or it starts with a variable that is a
 * validated absolute URL: `{{engine.sandboxUrl}}`, or a setting holding one
 * (`{{setting 'restEndpoint'}}/email/status`). Answers what is wrong, or undefined.
 */
export function urlHostProblem(source: string, settings: Settings): string | undefined {
  let body: Statement[];
  try {
    body = parseTemplate(source).body;
  } catch {
    return undefined; // compiling reports it
  }
  const first = body.find((statement) => statement.type !== 'CommentStatement');
  if (first && first.type !== 'ContentStatement') return leadingProblem(first, settings);

  let text = '';
  let host: string | undefined;
  for (const statement of body) {
    if (statement.type === 'CommentStatement') continue;
    if (statement.type === 'ContentStatement') {
      const value = (statement as hbs.AST.ContentStatement).value;
      if (host === undefined) {
        text += value;
        const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(text);
        if (!scheme) continue;
        if (!/^https?$/i.test(scheme[1]!)) return `the URL must be http or https, not ${scheme[1]}`;
        host = '';
        const end = authorityEnd(text.slice(scheme[0].length));
        host += text.slice(scheme[0].length, scheme[0].length + end);
        if (end < text.length - scheme[0].length) return host === '' ? 'the URL has no host' : undefined;
        continue;
      }
      const end = authorityEnd(value);
      host += value.slice(0, end);
      if (end < value.length) return host === '' ? 'the URL has no host' : undefined;
      continue;
    }
    if (host === undefined)
      return 'write the scheme and host out (https://api.example.com/...): a {{...}} before "://" leaves them unknown until delivery';
    const name = settingName(statement);
    if (name === undefined) {
      return "the host must be written out or come from a setting ({{setting 'host'}}): a {{...}} there lets each unsubscribe decide where the request goes";
    }
    const value = settings[name];
    if (typeof value !== 'string' || value === '' || !HOST.test(value)) {
      return `setting ${name} is used in the host, so it must be a host name such as api.example.com, not ${JSON.stringify(value ?? null)}`;
    }
    host += value;
  }
  if (host === undefined) return 'the URL must start with http:// or https://';
  return host === '' ? 'the URL has no host' : undefined;
}

/** `{{engine.sandboxUrl}}`, or a setting whose value is an absolute http(s) URL. */
function leadingProblem(first: Statement, settings: Settings): string | undefined {
  if (first.type === 'MustacheStatement') {
    const mustache = first as hbs.AST.MustacheStatement;
    const path = mustache.path as hbs.AST.PathExpression;
    if (mustache.params.length === 0 && !path.data && path.original === 'engine.sandboxUrl') return undefined;
  }
  const name = settingName(first);
  if (name === undefined) {
    return "a URL that starts with {{...}} must start with {{engine.sandboxUrl}} or a setting holding an absolute http(s) URL ({{setting 'baseUrl'}}), so where it goes is known at validation";
  }
  const value = settings[name];
  let url: URL | undefined;
  try {
    url = typeof value === 'string' && !hasUrlUnsafeChar(value) ? new URL(value) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.hostname === '') {
    return `setting ${name} starts the URL, so it must be an absolute http(s) URL such as https://api.example.com, not ${JSON.stringify(value ?? null)}`;
  }
  return undefined;
}

/** `{{settings.name}}` or `{{setting 'name'}}`, with nothing else in the braces. */
function settingName(statement: Statement): string | undefined {
  if (statement.type !== 'MustacheStatement') return undefined;
  const { path, params, hash } = statement as hbs.AST.MustacheStatement;
  if (path.type !== 'PathExpression' || hash) return undefined;
  const lookup = path as hbs.AST.PathExpression;
  if (lookup.data || lookup.depth !== 0) return undefined;
  if (params.length === 0 && lookup.parts.length === 2 && lookup.parts[0] === 'settings')
    return lookup.original === `settings.${lookup.parts[1]}` ? lookup.parts[1] : undefined;
  const [name] = params;
  if (lookup.original === 'setting' && params.length === 1 && name?.type === 'StringLiteral')
    return (name as hbs.AST.StringLiteral).value;
  return undefined;
}

/** Where the authority ends in a piece of URL text: at the first "/", "?" or "#" (or its end). */
function authorityEnd(text: string): number {
  const end = text.search(/[/?#]/);
  return end === -1 ? text.length : end;
}
