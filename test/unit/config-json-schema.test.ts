import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectionJsonSchemaText } from '../../src/config/json-schema.js';

describe('schema/connection.schema.json', () => {
  it('is the JSON Schema generated from the zod schema (run `npm run schema` after changing it)', async () => {
    const committed = await readFile(
      path.resolve(import.meta.dirname, '../../schema/connection.schema.json'),
      'utf8',
    );
    expect(committed).toBe(connectionJsonSchemaText());
  });

  it('describes the fields an editor should offer', () => {
    const schema = JSON.parse(connectionJsonSchemaText()) as {
      required: string[];
      properties: Record<string, unknown>;
    };
    expect(schema.required).toEqual(['id', 'account', 'name', 'request']);
    expect(Object.keys(schema.properties)).toEqual([
      'id',
      'account',
      'name',
      'enabled',
      'campaigns',
      'echo',
      'testing',
      'settings',
      'request',
      'response',
      'retry',
      'limits',
      'circuit',
      'dedupe',
      'batch',
    ]);
  });
});
