import type { z } from 'zod';

/** The parts of zod's schema definitions this walk reads (zod 4 keeps them on `_zod.def`). */
interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  in?: z.ZodType;
  options?: z.ZodType[];
  element?: z.ZodType;
  valueType?: z.ZodType;
  getter?: () => z.ZodType;
}
const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/**
 * The field names an object of `schema` may have at `path` (every variant's, under a union), so an
 * unknown field can be answered with the nearest known one. Empty when the path leads nowhere.
 */
export function fieldNamesAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let nodes = objectsOf(schema);
  for (const part of path) {
    const next: z.ZodType[] = [];
    for (const node of nodes) {
      const def = defOf(node);
      if (def.type === 'object' && typeof part === 'string' && def.shape?.[part]) next.push(def.shape[part]);
      if (def.type === 'record' && def.valueType) next.push(def.valueType);
      if (def.type === 'array' && def.element) next.push(def.element);
    }
    nodes = next.flatMap(objectsOf);
  }
  return [...new Set(nodes.flatMap((node) => Object.keys(defOf(node).shape ?? {})))];
}

/** Unwraps optional, default, pipe, lazy and union down to the objects, records and arrays inside. */
function objectsOf(schema: z.ZodType, depth = 0): z.ZodType[] {
  if (depth > 20) return [];
  const def = defOf(schema);
  switch (def.type) {
    case 'object':
    case 'record':
    case 'array':
      return [schema];
    case 'union':
      return (def.options ?? []).flatMap((option) => objectsOf(option, depth + 1));
    case 'pipe':
      return def.in ? objectsOf(def.in, depth + 1) : [];
    case 'lazy':
      return def.getter ? objectsOf(def.getter(), depth + 1) : [];
    default:
      return def.innerType ? objectsOf(def.innerType, depth + 1) : [];
  }
}
