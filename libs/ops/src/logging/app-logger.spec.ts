import { Logger } from '@nestjs/common';
import { afterEach, describe, expect, it } from 'vitest';
import { AppLogger, createRootLogger, durationMs, formatText, installAppLogger, pinoLevel, redactUrl } from './app-logger.js';

/** A destination that keeps what pino writes. */
function capture(): { write(line: string): void; lines: string[]; json(): Record<string, unknown>[] } {
  const lines: string[] = [];
  return { write: (line: string) => lines.push(line), lines, json: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

function jsonLogger(logLevel = 'log') {
  const out = capture();
  const logger = new AppLogger(createRootLogger('agent', { logLevel, logFormat: 'json' }, { destination: out }));
  return { out, logger };
}

describe(redactUrl.name, () => {
  it('hides credential-like query parameters and keeps the rest', () => {
    expect(redactUrl('/v2/a/blobs/sha256:ab?ns=docker.io&token=s3cr3t')).toBe('/v2/a/blobs/sha256:ab?ns=docker.io&token=REDACTED');
    expect(redactUrl('/x?X-Amz-Signature=abc&a=1')).toBe('/x?X-Amz-Signature=REDACTED&a=1');
  });
  it('leaves URLs without a query alone', () => {
    expect(redactUrl('/v2/')).toBe('/v2/');
  });
});

describe(pinoLevel.name, () => {
  it('maps the logLevel values onto pino levels', () => {
    expect(['error', 'warn', 'log', 'debug', 'verbose'].map(pinoLevel)).toEqual(['error', 'warn', 'info', 'debug', 'trace']);
  });
});

describe(AppLogger.name, () => {
  it('writes one JSON line per call with level label, time, app, context, msg and the fields at top level', () => {
    const { out, logger } = jsonLogger();
    logger.log({ msg: 'blob response', digest: 'sha256:ab', bytes: 10, durationMs: 1.5 }, 'BlobDelivery');
    expect(out.lines).toHaveLength(1);
    const [line] = out.json();
    expect(line).toMatchObject({
      level: 'info',
      app: 'agent',
      context: 'BlobDelivery',
      msg: 'blob response',
      digest: 'sha256:ab',
      bytes: 10,
      durationMs: 1.5,
    });
    expect(new Date(line.time as string).toISOString()).toBe(line.time);
  });

  it('drops lines below logLevel, per level', () => {
    const { out, logger } = jsonLogger('warn');
    logger.log('info line', 'X');
    logger.debug('debug line', 'X');
    logger.warn('warn line', 'X');
    logger.error('error line', undefined, 'X');
    expect(out.json().map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'warn line'],
      ['error', 'error line'],
    ]);
    const verbose = jsonLogger('verbose');
    verbose.logger.verbose('fine', 'X');
    expect(verbose.out.json()[0]).toMatchObject({ level: 'trace', msg: 'fine' });
  });

  it("takes Nest's own call shapes: string messages, error(message, stack, context), Errors", () => {
    const { out, logger } = jsonLogger();
    logger.log('Nest application successfully started', 'NestApplication');
    logger.error('boom', 'Error: boom\n    at x (y.js:1:1)', 'ExceptionHandler');
    logger.error(new Error('typed'), undefined, 'Filter');
    const [started, boom, typed] = out.json();
    expect(started).toMatchObject({ context: 'NestApplication', msg: 'Nest application successfully started' });
    expect(boom).toMatchObject({ level: 'error', context: 'ExceptionHandler', msg: 'boom', stack: expect.stringContaining('at x') });
    expect(typed).toMatchObject({ context: 'Filter', msg: 'typed', err: { type: 'Error', message: 'typed' } });
  });

  it('redacts secrets whoever logs them: token fields, Authorization headers, token query parameters in url', () => {
    const { out, logger } = jsonLogger();
    logger.warn(
      {
        msg: 'careless',
        token: 'swarm-s3cr3t',
        authorization: 'Basic cHVsbGVyOnBhc3M=',
        headers: { authorization: 'Bearer admin-s3cr3t', 'x-p2p-swarm-token': 'swarm-s3cr3t', accept: '*/*' },
        request: { digest: 'sha256:ab', credentials: { header: 'Basic cHVsbGVyOnBhc3M=' } },
        url: '/v2/a/blobs/sha256:ab?token=query-s3cr3t&ns=docker.io',
      },
      'X',
    );
    const text = out.lines.join('');
    for (const secret of ['swarm-s3cr3t', 'cHVsbGVyOnBhc3M=', 'admin-s3cr3t', 'query-s3cr3t']) expect(text).not.toContain(secret);
    expect(out.json()[0]).toMatchObject({
      headers: { accept: '*/*' },
      request: { digest: 'sha256:ab' },
      url: '/v2/a/blobs/sha256:ab?token=REDACTED&ns=docker.io',
    });
  });

  it('caches one child per context', () => {
    const { logger } = jsonLogger();
    expect(logger.child('A')).toBe(logger.child('A'));
    expect(logger.child('A')).not.toBe(logger.child('B'));
  });
});

describe('text mode', () => {
  it('writes readable single lines: time, level, app, [context], msg and key=value fields', () => {
    const out = capture();
    const root = createRootLogger('proxy', { logLevel: 'log', logFormat: 'text' }, { destination: out, colors: false });
    new AppLogger(root).log({ msg: 'torrent made', digest: 'sha256:ab', bytes: 3, reason: 'two words' }, 'BlobSeeder');
    expect(out.lines).toHaveLength(1);
    expect(out.lines[0]).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} INFO {2}proxy \[BlobSeeder\] torrent made digest=sha256:ab bytes=3 reason="two words"\n$/,
    );
  });

  it('puts an error stack on indented lines of its own', () => {
    const text = formatText(
      JSON.stringify({
        level: 'error',
        time: '2026-01-01T10:00:00.000Z',
        app: 'agent',
        context: 'X',
        msg: 'failed',
        err: { message: 'boom', stack: 'Error: boom\n    at a' },
      }),
    );
    expect(text).toBe('10:00:00.000 ERROR agent [X] failed err=boom\n    Error: boom\n        at a\n');
  });
});

describe(installAppLogger.name, () => {
  afterEach(() => Logger.overrideLogger(new Logger()));

  it("becomes Nest's logger: `new Logger(X)` lines reach the pino root and the static level check follows logLevel", () => {
    const out = capture();
    installAppLogger('tracker', { logLevel: 'log', logFormat: 'json' }, { destination: out });
    new Logger('Tracker').log({ msg: 'announce', infoHash: 'ab'.repeat(20), peer: '127.0.0.1:6881' });
    new Logger('Tracker').debug({ msg: 'hidden' });
    expect(out.json()).toEqual([
      expect.objectContaining({ app: 'tracker', context: 'Tracker', msg: 'announce', infoHash: 'ab'.repeat(20), peer: '127.0.0.1:6881' }),
    ]);
    expect(Logger.isLevelEnabled('log')).toBe(true);
    expect(Logger.isLevelEnabled('debug')).toBe(false);
    installAppLogger('tracker', { logLevel: 'debug', logFormat: 'json' }, { destination: out });
    expect(Logger.isLevelEnabled('debug')).toBe(true);
  });
});

describe(durationMs.name, () => {
  it('keeps one decimal', () => {
    expect(durationMs(12.345)).toBe(12.3);
  });
});
