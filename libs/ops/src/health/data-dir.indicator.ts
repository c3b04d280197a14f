import { randomBytes } from 'node:crypto';
import { mkdir, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { formatBytes } from '../config/units.js';

/** Ready when the data dir exists, a file can be written in it, and free space is above the minimum. */
@Injectable()
export class DataDirIndicator {
  constructor(private readonly health: HealthIndicatorService) {}

  async check(dir: string, minFreeBytes: number): Promise<HealthIndicatorResult> {
    const session = this.health.check('dataDir');
    const probe = join(dir, `.ready-${randomBytes(4).toString('hex')}`);
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(probe, 'ok');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      return session.down({ path: dir, reason: `data dir not writable: ${e.code ?? ''} ${e.message}`.trim() });
    } finally {
      await rm(probe, { force: true }).catch(() => undefined);
    }
    const fs = await statfs(dir);
    const free = fs.bavail * fs.bsize;
    if (free < minFreeBytes) {
      return session.down({
        path: dir,
        freeBytes: free,
        minFreeBytes,
        reason: `free space ${formatBytes(free)} is below minFreeSpace ${formatBytes(minFreeBytes)}`,
      });
    }
    return session.up({ path: dir, freeBytes: free, minFreeBytes });
  }
}
