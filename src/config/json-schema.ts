import { z } from 'zod';
import { connectionSchema } from './connection-schema.js';

/**
 * The connection format as JSON Schema, generated from the zod schema so the two cannot drift.
 * Editors use it (via `# yaml-language-server: $schema=...`) to autocomplete and check files; the
 * zod schema stays the authority (cross-field rules such as "exactly one body kind" live only there).
 */
export function connectionJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(connectionSchema, {
    io: 'input',
    unrepresentable: 'any',
    target: 'draft-7',
    // zod drops `examples` from a field that transforms (every duration: `5s` becomes 5000), taking
    // them for output values; ours are written as a file holds them (connection-fields.ts), so keep them.
    override: ({ zodSchema, jsonSchema }) => {
      const examples = z.globalRegistry.get(zodSchema)?.examples;
      if (Array.isArray(examples) && jsonSchema.examples === undefined) jsonSchema.examples = examples;
    },
  });
  return {
    ...schema,
    title: 'unsub-relay connection',
    description: 'How unsub-relay reaches one advertiser API. See docs/connections.md.',
  };
}

export function connectionJsonSchemaText(): string {
  return `${JSON.stringify(connectionJsonSchema(), null, 2)}\n`;
}
