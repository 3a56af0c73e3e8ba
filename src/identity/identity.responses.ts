import { z } from 'zod';
import { commandResultSchema } from '../platform/http/openapi';

/** Response schemas of identity's routes (identity.http.ts), for GET /openapi.json. */

export const sessionSchema = z
  .object({
    tokenType: z.literal('Bearer'),
    accessToken: z.string().meta({ description: 'JWT; send as Authorization: Bearer <accessToken>.' }),
    refreshToken: z.string().meta({ description: 'Opaque; rotated on every use (POST /auth/refresh).' }),
    expiresIn: z.number().int().meta({ description: 'Seconds until the access token expires.' }),
  })
  .meta({ id: 'Session' });

export const deviceTokenIssuedSchema = z
  .object({ tokenType: z.literal('Bearer'), accessToken: z.string(), expiresIn: z.number().int() })
  .meta({ id: 'DeviceToken' });

export const jwksSchema = z
  .object({ keys: z.array(z.looseObject({ kty: z.string(), kid: z.string(), alg: z.string() })) })
  .meta({ id: 'JWKS', description: 'Public keys that verify access tokens (RFC 7517); empty with HS256.' });

const userStatus = z.enum(['active', 'disabled']);

export const meSchema = z.object({
  userId: z.string(),
  email: z.string(),
  name: z.string(),
  roles: z.array(z.string()),
  status: userStatus,
});

export const userSchema = z
  .object({
    userId: z.string(),
    email: z.string(),
    name: z.string(),
    roles: z.array(z.string()),
    status: userStatus,
    registeredAt: z.date(),
    updatedAt: z.date(),
  })
  .meta({ id: 'User' });

const nextAfter = z.string().nullable().meta({ description: 'Pass as `after` for the next page; null on the last.' });

export const userPageSchema = z.object({ items: z.array(userSchema), nextAfter }).meta({ id: 'UserPage' });

export const deviceSchemaView = z
  .object({
    deviceId: z.string(),
    ownerId: z.string(),
    name: z.string(),
    status: z.enum(['active', 'revoked']),
    registeredAt: z.date(),
    revokedAt: z.date().nullable(),
  })
  .meta({ id: 'Device' });

export const devicePageSchema = z.object({ items: z.array(deviceSchemaView), nextAfter }).meta({ id: 'DevicePage' });

export const userRegisteredSchema = commandResultSchema.extend({ userId: z.string(), email: z.string() }).strict();

export const deviceRegisteredSchema = commandResultSchema
  .extend({
    deviceId: z.string(),
    secret: z.string().meta({ description: 'Shown this once: the device trades it for tokens.' }),
  })
  .strict();

export const deviceIdentitySchema = z.object({ deviceId: z.string(), kind: z.enum(['user', 'device']) });
