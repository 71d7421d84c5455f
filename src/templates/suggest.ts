import { distance } from 'fastest-levenshtein';

/**
 * The known name closest to a misspelt one (`emial` → `email`), or undefined when none is close:
 * one edit for names of up to three letters, two (a swapped pair) or a third of the length beyond.
 */
export function nearestName(name: string, known: Iterable<string>): string | undefined {
  const limit = name.length <= 3 ? 1 : Math.max(2, Math.floor(name.length / 3));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    if (candidate === name) continue;
    const d = distance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= limit ? best : undefined;
}

/** `; did you mean "email"?`, or nothing when no known name is close. */
export function didYouMean(name: string, known: Iterable<string>): string {
  const nearest = nearestName(name, known);
  return nearest === undefined ? '' : `; did you mean "${nearest}"?`;
}
