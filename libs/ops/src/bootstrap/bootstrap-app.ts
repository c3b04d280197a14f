import type { IncomingMessage, ServerResponse } from 'node:http';
import { Logger, type DynamicModule, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { BaseAppConfig } from '../config/base.config.js';
import { durationMs, installAppLogger, type AppLogger } from '../logging/app-logger.js';
import { MetricsService } from '../metrics/metrics.service.js';

export interface BootOptions {
  appName: string;
  module: Type<unknown> | DynamicModule;
  config: BaseAppConfig;
  /** Hook for app-specific Fastify setup before listen (content parsers, raw routes). */
  configure?: (app: NestFastifyApplication) => void | Promise<void>;
  /**
   * GET paths answered on the Node HTTP server before Fastify and Nest see the request (the
   * tracker's /announce and /scrape): for hot protocol endpoints where the framework pipeline
   * (routing, hooks, interceptors, request log) cost more CPU than the work itself. They bypass
   * guards, filters and `p2p_http_requests_total`, so the handler does its own checks and metrics.
   * Built after the Nest app exists, so handlers can come from its providers.
   */
  rawRoutes?: (app: NestFastifyApplication) => Record<string, RawHandler>;
  /** PEM certificate (chain) and key: the app serves HTTPS only (the proxy's `tlsCertFile`/`tlsKeyFile`). */
  https?: { cert: Buffer; key: Buffer };
}

/** A raw route's handler: must answer `res` (a throw becomes a 500 and an error log line). */
type RawHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface RunningApp {
  app: NestFastifyApplication;
  /** Base URL on loopback, e.g. http://127.0.0.1:5004 (the real port when `port: 0`; https:// with TLS). */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Probe and scrape routes: logged at debug only (kubelet and Prometheus hit them every few seconds). */
const QUIET_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

/** Creates, configures and starts one app on Fastify: the same shape for agent, proxy and tracker. */
export async function bootstrapApp(options: BootOptions): Promise<RunningApp> {
  const logger = installAppLogger(options.appName, options.config);
  const adapter = new FastifyAdapter({
    // During shutdown new requests on kept-alive sockets get 503 so clients retry elsewhere.
    return503OnClosing: true,
    // Long nested repository names (a/b/c/…) are legal; Fastify's default cap of 100 is not enough.
    routerOptions: { maxParamLength: 4096 },
    bodyLimit: 1024 * 1024,
    // Blob streams can be slow under rate limits: no whole-request timeout, only header timeouts.
    requestTimeout: 0,
    ...(options.https ? { https: options.https } : {}),
  });
  // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment -- Nest types its options as a class but documents (and reads) a plain object
  const app = await NestFactory.create<NestFastifyApplication>(options.module, adapter, { logger, abortOnError: false });
  instrumentRequests(app, logger);
  await options.configure?.(app);
  if (options.rawRoutes) mountRawRoutes(app, options.rawRoutes(app));
  await app.listen(options.config.port, options.config.host);
  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : options.config.port;
  // Tests and benches wait for "listening on <host>:<port>" in this msg: keep its wording.
  const listening = `${options.appName} listening on ${options.config.host}:${port}${options.https ? ' (HTTPS)' : ''}`;
  new Logger('Bootstrap').log({ msg: listening, host: options.config.host, port, https: Boolean(options.https) });
  return { app, url: `${options.https ? 'https' : 'http'}://127.0.0.1:${port}`, port, close: () => app.close() };
}

/**
 * Request log lines (method, URL — redacted by the logger's `url` serializer —, status, duration;
 * never headers) and the request counter. Straight on the pino child, not through Nest's Logger
 * wrapper: this runs on every request.
 */
function instrumentRequests(app: NestFastifyApplication, logger: AppLogger): void {
  const log = logger.child('Http');
  const metrics = app.get(MetricsService);
  const requests = metrics.counter('http_requests_total', 'HTTP requests by route, method and status.', ['route', 'method', 'status']);
  const fastify = app.getHttpAdapter().getInstance();
  fastify.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    requests.inc({ route, method: request.method, status: String(reply.statusCode) });
    const level = QUIET_ROUTES.has(route) ? 'debug' : 'info';
    // Building the line (URL redaction, serialisation) is the costly part: skip it when nobody will see it.
    if (!log.isLevelEnabled(level)) return;
    log[level]({
      msg: 'request',
      method: request.method,
      url: request.url,
      status: reply.statusCode,
      durationMs: durationMs(reply.elapsedTime),
    });
  });
}

/** Puts `routes` in front of Fastify's request listener on the Node server. */
function mountRawRoutes(app: NestFastifyApplication, routes: Record<string, RawHandler>): void {
  const log = new Logger('Http');
  const server = app.getHttpServer();
  const framework = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  server.removeAllListeners('request');
  const table = new Map(Object.entries(routes));
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const handler = req.method === 'GET' ? table.get(q < 0 ? url : url.slice(0, q)) : undefined;
    if (!handler) {
      for (const listener of framework) listener.call(server, req, res);
      return;
    }
    try {
      handler(req, res);
    } catch (err) {
      log.error({ msg: 'raw route failed', method: 'GET', url, err });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error');
    }
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
    log.log({ msg: `${signal}: draining in-flight requests`, signal, graceSeconds });
    const server = running.app.getHttpServer();
    const timer = setTimeout(() => {
      log.warn({ msg: 'grace period over: closing remaining connections', graceSeconds });
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
          log.error({ msg: 'error while stopping', reason: (err as Error).message });
          process.exit(0);
        },
      );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
