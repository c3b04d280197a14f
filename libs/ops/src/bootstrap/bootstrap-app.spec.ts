import 'reflect-metadata';
import { Controller, Get, Module } from '@nestjs/common';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { BaseAppConfig } from '../config/base.config.js';
import { OpsModule } from '../ops.module.js';
import { bootstrapApp } from './bootstrap-app.js';

let release: () => void = () => undefined;
let started = false;

@Controller()
class SlowController {
  @Get('slow')
  async slow(): Promise<string> {
    started = true;
    await new Promise<void>((resolve) => (release = resolve));
    return 'finished';
  }
}

@Module({
  imports: [OpsModule.forRoot({ appName: 'test', config: Object.assign(new BaseAppConfig(), { host: '127.0.0.1' }), limits: {}, env: {} })],
  controllers: [SlowController],
})
class SlowModule {}

describe(bootstrapApp.name, () => {
  it('lets an in-flight request finish when the app closes, and refuses new connections', async () => {
    const config = Object.assign(new BaseAppConfig(), { host: '127.0.0.1', logLevel: 'error' });
    const running = await bootstrapApp({ appName: 'test', module: SlowModule, config });
    const inFlight = request(`${running.url}/slow`).then((r) => r.body.text());
    // Poll until the handler really runs, bounded; closing before that would test nothing.
    for (let i = 0; i < 400 && !started; i++) await new Promise((r) => setTimeout(r, 5));
    expect(started).toBe(true);
    const closing = running.close();
    release();
    expect(await inFlight).toBe('finished');
    await closing;
    await expect(request(`${running.url}/healthz`)).rejects.toThrow();
  });
});
