/**
 * Stable error codes of the identity context. Clients match on these strings,
 * so they never change meaning once shipped.
 */
export const IdentityErrorCode = {
  USER_EXISTS: 'IDENTITY.USER_EXISTS',
  USER_NOT_FOUND: 'IDENTITY.USER_NOT_FOUND',
  USER_DISABLED: 'IDENTITY.USER_DISABLED',
  EMAIL_TAKEN: 'IDENTITY.EMAIL_TAKEN',
  INVALID_EMAIL: 'IDENTITY.INVALID_EMAIL',
  WEAK_PASSWORD: 'IDENTITY.WEAK_PASSWORD',
  INVALID_PASSWORD_HASH: 'IDENTITY.INVALID_PASSWORD_HASH',
  INVALID_ROLE: 'IDENTITY.INVALID_ROLE',
  /** Revoking the base role 'user', which every account keeps. */
  ROLE_PROTECTED: 'IDENTITY.ROLE_PROTECTED',
  INVALID_NAME: 'IDENTITY.INVALID_NAME',
  INVALID_ID: 'IDENTITY.INVALID_ID',
  DEVICE_EXISTS: 'IDENTITY.DEVICE_EXISTS',
  DEVICE_NOT_FOUND: 'IDENTITY.DEVICE_NOT_FOUND',
  DEVICE_REVOKED: 'IDENTITY.DEVICE_REVOKED',
  INVALID_SECRET_HASH: 'IDENTITY.INVALID_SECRET_HASH',
  /** A device's secret is shown once, at registration: a keyed retry cannot show it again. */
  DEVICE_SECRET_SHOWN: 'IDENTITY.DEVICE_SECRET_SHOWN',
  /** The owner already has DEVICES_MAX_PER_USER active devices. */
  TOO_MANY_DEVICES: 'IDENTITY.TOO_MANY_DEVICES',
  /** A read-model query with a bad limit, cursor or filter. */
  INVALID_QUERY: 'IDENTITY.INVALID_QUERY',
} as const;

export type IdentityErrorCode = (typeof IdentityErrorCode)[keyof typeof IdentityErrorCode];
