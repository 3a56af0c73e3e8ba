/**
 * Stable error codes of authentication and authorisation (tokens, sessions,
 * credentials, rate limits, roles). Clients match on these strings, so they
 * never change meaning once shipped.
 */
export const AuthErrorCode = {
  MISSING_TOKEN: 'AUTH.MISSING_TOKEN',
  INVALID_TOKEN: 'AUTH.INVALID_TOKEN',
  TOKEN_EXPIRED: 'AUTH.TOKEN_EXPIRED',
  TOKEN_REVOKED: 'AUTH.TOKEN_REVOKED',
  /** The email or the password is wrong (never says which). */
  INVALID_CREDENTIALS: 'AUTH.INVALID_CREDENTIALS',
  INVALID_DEVICE_CREDENTIALS: 'AUTH.INVALID_DEVICE_CREDENTIALS',
  INVALID_REFRESH_TOKEN: 'AUTH.INVALID_REFRESH_TOKEN',
  /** A refresh token used a second time: the whole session is ended. */
  REFRESH_REUSED: 'AUTH.REFRESH_REUSED',
  /** Authenticated, but without the role (or ownership) the route needs. */
  FORBIDDEN: 'AUTH.FORBIDDEN',
  DEVICE_OWNER_DISABLED: 'AUTH.DEVICE_OWNER_DISABLED',
  TOO_MANY_ATTEMPTS: 'AUTH.TOO_MANY_ATTEMPTS',
  TOO_MANY_SIGNUPS: 'AUTH.TOO_MANY_SIGNUPS',
  /** Password hashing is saturated: 503 with Retry-After rather than an unbounded queue. */
  BUSY: 'AUTH.BUSY',
  /** Redis did not answer: fail closed (503), never let a request through unchecked. */
  REVOCATION_UNAVAILABLE: 'AUTH.REVOCATION_UNAVAILABLE',
  LOGIN_LIMITER_UNAVAILABLE: 'AUTH.LOGIN_LIMITER_UNAVAILABLE',
  SIGNUP_LIMITER_UNAVAILABLE: 'AUTH.SIGNUP_LIMITER_UNAVAILABLE',
} as const;

export type AuthErrorCode = (typeof AuthErrorCode)[keyof typeof AuthErrorCode];
