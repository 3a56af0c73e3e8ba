/** Identity's security machinery: plain classes, wired into NestJS elsewhere. */
export * from './signing-keys';
export * from './tokens';
export * from './access-token-strategy';
export * from './revocation';
export * from './revocation-mirror';
export * from './refresh-tokens';
export * from './passwords';
export * from './login-limiter';
export { authRedisOptions, DEFAULT_REDIS_TIMEOUT_MS } from './redis-call';
