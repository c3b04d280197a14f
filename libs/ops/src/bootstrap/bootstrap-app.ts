import { Logger, type DynamicModule, type LoggerService, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { BaseAppConfig } from '../config/base.config.js';
import { createAppLogger, redactUrl } from '../logging/app-logger.js';
import { MetricsService } from '../metrics/metrics.service.js';

export interface BootOptions {
  appName: string;
  module: Type<unknown> | DynamicModule;
  config: BaseAppConfig;
  /** Hook for app-specific Fastify setup before listen (content parsers, raw routes). */
  configure?: (app: NestFastifyApplication) => void | Promise<void>;
  logger?: LoggerService;
}

export interface RunningApp {
  app: NestFastifyApplication;
  /** Base URL on loopback, e.g. http://127.0.0.1:5004 (the real port when `port: 0`). */
  url: string;
  port: number;
  close(): Promise<void>;
}

const QUIET_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

/** Creates, configures and starts one app on Fastify: the same shape for agent, proxy and tracker. */
export async function bootstrapApp(options: BootOptions): Promise<RunningApp> {
  const logger = options.logger ?? createAppLogger(options.appName, options.config);
  const adapter = new FastifyAdapter({
    // During shutdown new requests on kept-alive sockets get 503 so clients retry elsewhere.
    return503OnClosing: true,
    // Long nested repository names (a/b/c/…) are legal; Fastify's default cap of 100 is not enough.
    routerOptions: { maxParamLength: 4096 },
    bodyLimit: 1024 * 1024,
    // Blob streams can be slow under rate limits: no whole-request timeout, only header timeouts.
    requestTimeout: 0,
  });
  const app = await NestFactory.create<NestFastifyApplication>(options.module, adapter, { logger, abortOnError: false });
  instrumentRequests(app);
  await options.configure?.(app);
  await app.listen(options.config.port, options.config.host);
  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : options.config.port;
  new Logger('Bootstrap').log(`${options.appName} listening on ${options.config.host}:${port}`);
  return { app, url: `http://127.0.0.1:${port}`, port, close: () => app.close() };
}

/** Request log lines (method, redacted URL, status, duration — never headers) and the request counter. */
function instrumentRequests(app: NestFastifyApplication): void {
  const log = new Logger('Http');
  const metrics = app.get(MetricsService);
  const requests = metrics.counter('http_requests_total', 'HTTP requests by route, method and status.', ['route', 'method', 'status']);
  const fastify = app.getHttpAdapter().getInstance();
  fastify.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    requests.inc({ route, method: request.method, status: String(reply.statusCode) });
    const line = `${request.method} ${redactUrl(request.url)} ${reply.statusCode} ${reply.elapsedTime.toFixed(1)}ms`;
    if (QUIET_ROUTES.has(request.url)) log.debug(line);
    else log.log(line);
  });
}

/**
 * SIGTERM/SIGINT: stop accepting, let in-flight requests finish for up to `graceSeconds`, exit 0.
 * After the grace period remaining connections are cut so the pod does not hang in Terminating.
 */
export function exitOnSignals(running: RunningApp, graceSeconds: number, beforeExit?: () => Promise<void>): void {
  const log = new Logger('Shutdown');
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.log(`${signal}: draining in-flight requests (up to ${graceSeconds}s)`);
    const server = running.app.getHttpServer();
    const timer = setTimeout(() => {
      log.warn(`grace period over: closing remaining connections`);
      server.closeAllConnections();
      process.exit(0);
    }, graceSeconds * 1000);
    timer.unref();
    running
      .close()
      .then(() => beforeExit?.())
      .then(
        () => {
          log.log('stopped');
          process.exit(0);
        },
        (err: unknown) => {
          log.error(`error while stopping: ${(err as Error).message}`);
          process.exit(0);
        },
      );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
