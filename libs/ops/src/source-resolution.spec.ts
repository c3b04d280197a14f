import { describe, expect, it } from 'vitest';
import { ThrottleService } from '#ops';
import { ThrottleService as FromSource } from './throttle/throttle.service.js';

// Specs must test the code beside them, not the last build: '#ops' & co. resolve to dist/ unless
// vitest's server-side resolver gets the `source` condition (vitest.config.ts `ssr`). With two
// copies a spec also sees two classes per name, so `instanceof` across them fails.
describe('package imports in specs', () => {
  it("'#ops' resolves to the source files", () => {
    expect(ThrottleService).toBe(FromSource);
  });
});
