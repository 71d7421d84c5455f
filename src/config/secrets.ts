import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { StartupError } from '../errors.js';
import { envSecrets, isSecretNameAllowed, type SecretSource } from '../templates/context.js';

const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Where `{{secret 'NAME'}}` looks, first to last:
 * 1. `SECRETS_DIR`: one file per secret, named after it (Docker and Kubernetes mount secrets so);
 * 2. `SECRETS_FILE`: a `.json` / `.yaml` map, or `NAME=value` lines (dotenv style);
 * 3. the process environment.
 * Files are read once at start; rotate a secret by changing it and restarting (rolling).
 */
export function loadSecrets(env: NodeJS.ProcessEnv = process.env): SecretSource {
  const fromFiles = new Map<string, string>();
  if (env.SECRETS_FILE)
    for (const [name, value] of readSecretsFile(env.SECRETS_FILE)) fromFiles.set(name, value);
  if (env.SECRETS_DIR)
    for (const [name, value] of readSecretsDir(env.SECRETS_DIR)) fromFiles.set(name, value);
  const fromEnv = envSecrets(env);
  return {
    get(name) {
      if (!isSecretNameAllowed(name)) return undefined;
      return fromFiles.get(name) ?? fromEnv.get(name);
    },
  };
}

function readSecretsFile(file: string): Array<[string, string]> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new StartupError(
      `SECRETS_FILE ${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const entries = /\.(json|ya?ml)$/i.test(file)
    ? mapEntries(file, parseYaml(text))
    : dotenvEntries(file, text);
  for (const [name] of entries) checkName(file, name);
  return entries;
}

function mapEntries(file: string, value: unknown): Array<[string, string]> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new StartupError(`SECRETS_FILE ${file}: expected a map of NAME: value`);
  }
  return Object.entries(value).map(([name, secret]) => {
    if (typeof secret !== 'string' && typeof secret !== 'number') {
      throw new StartupError(`SECRETS_FILE ${file}: ${name}: the value must be a string`);
    }
    return [name, String(secret)];
  });
}

function dotenvEntries(file: string, text: string): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    // The line number only: the line itself may be a secret.
    if (eq <= 0) throw new StartupError(`SECRETS_FILE ${file}:${index + 1}: expected NAME=value`);
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0])
      value = value.slice(1, -1);
    entries.push([
      line
        .slice(0, eq)
        .trim()
        .replace(/^export\s+/, ''),
      value,
    ]);
  }
  return entries;
}

function readSecretsDir(dir: string): Array<[string, string]> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    throw new StartupError(
      `SECRETS_DIR ${dir}: cannot read it (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  return names
    .filter((name) => SECRET_NAME.test(name) && statSync(path.join(dir, name)).isFile())
    .map((name) => [name, readFileSync(path.join(dir, name), 'utf8').replace(/\r?\n$/, '')]);
}

function checkName(file: string, name: string): void {
  if (!SECRET_NAME.test(name))
    throw new StartupError(`SECRETS_FILE ${file}: "${name}" is not a valid secret name (letters, digits, _)`);
  if (!isSecretNameAllowed(name))
    throw new StartupError(`SECRETS_FILE ${file}: ${name} is reserved for the engine's own settings`);
}
