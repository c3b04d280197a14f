import { IsOptional } from 'class-validator';
import { IsRate } from '../config/unit.validators.js';

/** A DTO class accepting exactly the given limit names, each optional and a rate. */
export function ratePatchDto(names: readonly string[]): new () => Record<string, unknown> {
  // Its properties are the limit names, declared (and decorated) below at run time.
  class RatePatchDto {
    [name: string]: unknown;
  }
  for (const name of names) {
    IsOptional()(RatePatchDto.prototype, name);
    IsRate()(RatePatchDto.prototype, name);
  }
  return RatePatchDto;
}
