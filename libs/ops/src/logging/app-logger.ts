import { Logger, type LoggerService, type LogLevel } from '@nestjs/common';
import { pino, stdTimeFunctions, type DestinationStream, type Level, type Logger as PinoLogger } from 'pino';
import type { BaseAppConfig } from '../config/base.config.js';

/*
 * One pino root per process, configured from `logLevel` and `logFormat`. Plain pino behind a Nest
 * LoggerService adapter rather than nestjs-pino: nestjs-pino mounts pino-http as Nest middleware on
 * every route (a child logger and request/response serialisation per request, even with its own
 * request logging off) and only exists once the DI container does. Our request line is written
 * from a Fastify onResponse hook (bootstrap-app.ts) with a level guard, the tracker's hot raw
 * routes bypass Nest middleware altogether, and boot lines come before DI: so the adapter below is
 * handed to NestFactory and to Nest's static Logger, and every `new Logger(X)` line, Nest's own
 * included, reaches the same pino root.
 *
 * Call sites log one object: a short human `msg` plus domain fields as top-level keys, e.g.
 * `logger.log({ msg: 'blob served', digest, repo, bytes, source, durationMs })`.
 */

/** The `logLevel` config values, most severe first, and the pino level each maps to. */
const NEST_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];
const PINO_LEVEL: Record<LogLevel, Level> = { fatal: 'fatal', error: 'error', warn: 'warn', log: 'info', debug: 'debug', verbose: 'trace' };

/** The pino level a `logLevel` value means (`log` → info, `verbose` → trace). */
export function pinoLevel(logLevel: string): Level {
  return Object.hasOwn(PINO_LEVEL, logLevel) ? PINO_LEVEL[logLevel as LogLevel] : 'info';
}

/**
 * Fields never written whatever a call site passes: registry credentials, Authorization and
 * cookie headers, the swarm and admin tokens. A belt: call sites do not log them in the first place.
 * Explicit paths only: wildcard paths (`*.token`) walk every field of every line, 1–3.5 µs more a line in a micro-benchmark, and the
 * request line is on every request.
 */
const REDACT_PATHS = [
  'authorization',
  'credentials',
  'password',
  'token',
  'swarmToken',
  'adminToken',
  'headers.authorization',
  'headers.cookie',
  'headers["proxy-authorization"]',
  'headers["set-cookie"]',
  'headers["x-p2p-swarm-token"]',
  'request.credentials',
  'request.headers.authorization',
  'request.headers["x-p2p-swarm-token"]',
];

export interface AppLoggerOptions {
  /** Where lines go (tests); default stdout. */
  destination?: DestinationStream;
  /** Whether text mode colours the level; default: stdout is a TTY. */
  colors?: boolean;
}

/** Typed as always set, but undefined when stdout is a pipe or a file. */
function stdoutIsTty(): boolean {
  return (process.stdout as { isTTY?: boolean }).isTTY ?? false;
}

/** `logFormat` resolved: JSON lines for log shippers, text for people at a terminal. */
function wantsJson(logFormat: string): boolean {
  return logFormat === 'json' || (logFormat !== 'text' && !stdoutIsTty());
}

/**
 * The pino root of one app: JSON lines with `level` (label), `time` (ISO), `app`, `context`, `msg`
 * and the domain fields at top level; or readable single lines in text mode. Writes synchronously
 * (no worker-thread transport): a line is out before `process.exit` and in order with stdout.
 */
export function createRootLogger(
  appName: string,
  config: Pick<BaseAppConfig, 'logLevel' | 'logFormat'>,
  options: AppLoggerOptions = {},
): PinoLogger {
  const json = wantsJson(config.logFormat);
  const destination =
    options.destination ?? (json ? pino.destination({ fd: 1, sync: true }) : { write: (line: string) => process.stdout.write(line) });
  return pino(
    {
      level: pinoLevel(config.logLevel),
      base: { app: appName },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // A URL field never shows credential-like query parameters, whoever logs it.
      serializers: { url: (url: unknown) => (typeof url === 'string' ? redactUrl(url) : url) },
      redact: { paths: REDACT_PATHS, censor: 'REDACTED' },
    },
    json ? destination : textFormatting(destination, options.colors ?? stdoutIsTty()),
  );
}

/**
 * Nest's LoggerService on a pino root: each Nest context (`new Logger('X')`) is a cached pino child
 * with `context: 'X'`. A message that is an object is logged as fields (its `msg` the message); an
 * Error as `err`; anything else as `msg`.
 */
export class AppLogger implements LoggerService {
  private readonly children = new Map<string, PinoLogger>();

  constructor(readonly root: PinoLogger) {}

  /** The pino logger of one component, for code that logs on a hot path without Nest's wrapper. */
  child(context: string): PinoLogger {
    let child = this.children.get(context);
    if (!child) {
      child = this.root.child({ context });
      this.children.set(context, child);
    }
    return child;
  }

  log(message: unknown, ...params: unknown[]): void {
    this.write('info', message, params);
  }
  warn(message: unknown, ...params: unknown[]): void {
    this.write('warn', message, params);
  }
  debug(message: unknown, ...params: unknown[]): void {
    this.write('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]): void {
    this.write('trace', message, params);
  }
  fatal(message: unknown, ...params: unknown[]): void {
    this.write('fatal', message, params);
  }
  /** Nest calls `error(message, stack?, context?)`; Nest's Logger passes `undefined` for a missing stack. */
  error(message: unknown, ...params: unknown[]): void {
    const context = params.length > 1 || (params.length === 1 && !looksLikeStack(params[0])) ? params.pop() : undefined;
    const stack = params[0];
    this.emit('error', message, typeof context === 'string' ? context : undefined, typeof stack === 'string' ? stack : undefined);
  }

  setLogLevels(levels: LogLevel[]): void {
    const lowest = Math.max(...levels.map((l) => NEST_LEVELS.indexOf(l)));
    this.root.level = lowest < 0 ? 'silent' : PINO_LEVEL[NEST_LEVELS[lowest]];
  }

  /** Nest's Logger appends the context as the last parameter. */
  private write(level: Level, message: unknown, params: unknown[]): void {
    const last = params.at(-1);
    this.emit(level, message, typeof last === 'string' ? last : undefined);
  }

  private emit(level: Level, message: unknown, context: string | undefined, stack?: string): void {
    const log = context ? this.child(context) : this.root;
    if (!log.isLevelEnabled(level)) return;
    if (message instanceof Error) log[level]({ err: message }, message.message);
    else if (typeof message === 'object' && message !== null) log[level](stack ? { ...message, stack } : message);
    else log[level](stack ? { stack } : {}, String(message));
  }
}

function looksLikeStack(value: unknown): boolean {
  return typeof value === 'string' && /\n\s+at /.test(value);
}

/** The `logLevel` value and every more severe one, as Nest's static Logger wants them. */
function nestLevels(logLevel: string): LogLevel[] {
  const upTo = NEST_LEVELS.indexOf(logLevel as LogLevel);
  return NEST_LEVELS.slice(0, upTo < 0 ? NEST_LEVELS.indexOf('log') + 1 : upTo + 1);
}

/**
 * Creates the app's logger and makes it Nest's: lines of `new Logger(X)` anywhere in the process,
 * Nest's own included, go to the same pino root, and `Logger.isLevelEnabled` answers by `logLevel`.
 */
export function installAppLogger(
  appName: string,
  config: Pick<BaseAppConfig, 'logLevel' | 'logFormat'>,
  options: AppLoggerOptions = {},
): AppLogger {
  const logger = new AppLogger(createRootLogger(appName, config, options));
  Logger.overrideLogger(logger);
  // With a custom LoggerService Nest's static level check reads this list (else every level is "on").
  Logger.overrideLogger(nestLevels(config.logLevel));
  return logger;
}

/** Wraps `destination` so each JSON line pino produces is written as one readable line. */
function textFormatting(destination: DestinationStream, colors: boolean): DestinationStream {
  return { write: (line: string) => destination.write(formatText(line, colors)) };
}

const LEVEL_COLOR: Record<string, string> = { fatal: '35', error: '31', warn: '33', info: '32', debug: '34', trace: '90' };

/**
 * One JSON line as `HH:MM:SS.mmm LEVEL app [context] msg key=value …`; an error's stack follows on
 * its own indented lines.
 */
export function formatText(line: string, colors = false): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { level, time, app, context, msg, err, stack, ...fields } = entry;
  const label = String(level).toUpperCase().padEnd(5);
  const shownLevel = colors ? `\x1b[${LEVEL_COLOR[String(level)] ?? '0'}m${label}\x1b[0m` : label;
  const clock = typeof time === 'string' ? time.slice(11, 23) : '';
  const pairs = Object.entries(fields).map(([k, v]) => `${k}=${textValue(v)}`);
  let trace = typeof stack === 'string' ? stack : '';
  if (err && typeof err === 'object') {
    const e = err as { message?: unknown; stack?: unknown };
    pairs.push(`err=${textValue(e.message)}`);
    if (typeof e.stack === 'string') trace = e.stack;
  }
  const head = `${clock} ${shownLevel} ${textValue(app)} [${typeof context === 'string' ? context : '-'}] ${typeof msg === 'string' ? msg : textValue(msg)}`;
  const tail = pairs.length ? ` ${pairs.join(' ')}` : '';
  return `${head}${tail}\n${trace ? `${trace.replace(/^/gm, '    ')}\n` : ''}`;
}

function textValue(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  // JSON.stringify gives undefined for these, whatever its type says.
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return '';
  return JSON.stringify(value);
}

/** A duration as the `durationMs` field carries it: milliseconds with one decimal. */
export function durationMs(ms: number): number {
  return Math.round(ms * 10) / 10;
}

const SECRET_PARAM = /^(token|access_token|refresh_token|password|passwd|secret|key|signature|sig|code|x-amz-.*|x-goog-.*)$/i;

/**
 * A URL safe for logs: query parameters that may carry credentials (registry tokens, signed
 * storage redirects) are replaced by REDACTED. Headers are never logged at all.
 */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  for (const name of [...params.keys()]) if (SECRET_PARAM.test(name)) params.set(name, 'REDACTED');
  return `${url.slice(0, q)}?${params.toString()}`;
}
