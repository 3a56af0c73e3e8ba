import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, name = 'platform'): Logger {
  return pino({
    name,
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Never log credentials, even by accident.
    redact: {
      paths: ['*.password', '*.secret', '*.token', '*.accessToken', '*.refreshToken', 'req.headers.authorization'],
      censor: '[redacted]',
    },
  });
}
