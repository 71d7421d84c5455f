import { expect } from 'vitest';
import { TemplateError } from '../../src/errors.js';

/** Runs `work`, which must throw a TemplateError, and returns it for assertions on field and message. */
export function templateError(work: () => unknown): TemplateError {
  try {
    work();
  } catch (error) {
    expect(error).toBeInstanceOf(TemplateError);
    return error as TemplateError;
  }
  throw new Error('expected a TemplateError');
}
