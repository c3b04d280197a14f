import { IsOptional } from 'class-validator';
import { IsRate } from '../config/unit.validators.js';

/** A DTO class accepting exactly the given limit names, each optional and a rate. */
export function ratePatchDto(names: readonly string[]): new () => Record<string, unknown> {
  class RatePatchDto {}
  for (const name of names) {
    IsOptional()(RatePatchDto.prototype, name);
    IsRate()(RatePatchDto.prototype, name);
  }
  return RatePatchDto as new () => Record<string, unknown>;
}
