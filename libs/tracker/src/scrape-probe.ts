import type { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { request } from 'undici';

// An all-zero info hash never names a real swarm, and a scrape creates none.
const PROBE_HASH = '%00'.repeat(20);

/** Readiness of the tracker: a scrape over loopback HTTP gets a bencoded answer. */
export async function scrapeProbe(health: HealthIndicatorService, port: number, token?: string): Promise<HealthIndicatorResult> {
  const session = health.check('announce');
  try {
    const auth = token ? `&token=${encodeURIComponent(token)}` : '';
    const res = await request(`http://127.0.0.1:${port}/scrape?info_hash=${PROBE_HASH}${auth}`, {
      headersTimeout: 2000,
      bodyTimeout: 2000,
    });
    const body = await res.body.text();
    if (res.statusCode === 200 && body.startsWith('d') && !body.includes('failure reason')) return session.up();
    return session.down({ reason: `scrape answered ${res.statusCode}` });
  } catch (err) {
    return session.down({ reason: `scrape failed: ${(err as Error).message}` });
  }
}
