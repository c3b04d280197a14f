import { registerDecorator, type ValidationOptions } from 'class-validator';
import { parseDuration, parseRate, parseSize } from './units.js';

function unitValidator(name: string, parse: (v: unknown) => number | undefined, expected: string) {
  return (options?: ValidationOptions): PropertyDecorator =>
    (target, property) =>
      registerDecorator({
        name,
        target: target.constructor,
        propertyName: String(property),
        options: {
          message: (args) => `${args.property} must be ${expected}; got ${JSON.stringify(args.value)}`,
          ...options,
        },
        validator: { validate: (value: unknown) => parse(value) !== undefined },
      });
}

/** A rate: non-negative integer per second, or a string with a unit (`"100MB"`, `"20MiB/s"`); 0 = unlimited. */
export const IsRate = unitValidator(
  'isRate',
  parseRate,
  'a non-negative rate: an integer per second or a string with a unit like "100MB", "20MiB/s" (0 = unlimited)',
);

/** A byte size: non-negative integer or a string with a unit (`"4MiB"`, `"50GB"`). */
export const IsSize = unitValidator(
  'isSize',
  parseSize,
  'a non-negative size: an integer number of bytes or a string with a unit like "4MiB", "50GB"',
);

/** A duration: seconds as a number, or a string like `"500ms"`, `"10s"`, `"5m"`, `"1h"`. */
export const IsDuration = unitValidator(
  'isDuration',
  parseDuration,
  'a non-negative duration: seconds as a number or a string like "500ms", "10s", "5m"',
);
