import { Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { normaliseEmail } from '../../domain/identity/email';
import { Platform } from '../platform/platform';
import { IdentityServices, systemContext } from './identity.services';
import { RegisterUser, RegisterUserHandler } from './register-user';

/**
 * ADMIN_EMAIL/ADMIN_PASSWORD at start-up, with one log line saying what it did
 * (or refused). Runs once every module is initialised (the password hasher's
 * worker pool among them), before the app takes requests.
 */
@Injectable()
export class AdminBootstrap implements OnApplicationBootstrap {
  constructor(
    private readonly platform: Platform,
    private readonly identity: IdentityServices,
    private readonly registerUser: RegisterUserHandler,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const { ADMIN_EMAIL, ADMIN_PASSWORD } = this.platform.config;
    const log = this.platform.log;
    if (!ADMIN_EMAIL) return;
    if (!ADMIN_PASSWORD) {
      log.warn(
        { adminEmail: ADMIN_EMAIL },
        `ADMIN_EMAIL ${ADMIN_EMAIL} is set without ADMIN_PASSWORD: no admin account was created or promoted`,
      );
      return;
    }
    const { userId, outcome } = await this.ensureAdmin(ADMIN_EMAIL, ADMIN_PASSWORD);
    if (outcome === 'refused') {
      log.error(
        { adminEmail: ADMIN_EMAIL, userId },
        `ADMIN_EMAIL ${ADMIN_EMAIL} belongs to an existing account whose password is not ADMIN_PASSWORD: it was NOT given the admin role ` +
          `(anyone can sign up with any address); set ADMIN_PASSWORD to that account's password, choose another ADMIN_EMAIL, ` +
          `or run \`npm run cli -- users:grant-admin ${ADMIN_EMAIL}\` if you trust that account`,
      );
      return;
    }
    const what = { created: 'created', promoted: 'given the admin role', 'already admin': 'already an admin' }[outcome];
    log.info(
      { adminEmail: ADMIN_EMAIL, userId, outcome },
      `admin account ${ADMIN_EMAIL} (user ${userId}): ${what}; log in with ADMIN_EMAIL and ADMIN_PASSWORD`,
    );
  }

  /**
   * Creates the account when the address is free. An existing account gets the admin role only
   * when ADMIN_PASSWORD verifies against it: sign-up never proves who owns an address, so
   * whoever registered the operator's address first must not become admin at the next restart.
   * (`npm run cli -- users:grant-admin` is the way to promote an account whose password the
   * operator does not set.)
   */
  async ensureAdmin(
    rawEmail: string,
    password: string,
  ): Promise<{ userId: string; outcome: 'created' | 'promoted' | 'already admin' | 'refused' }> {
    const email = normaliseEmail(rawEmail);
    const ctx = systemContext('admin-bootstrap');
    const existing = await this.identity.userIdByEmail(email);
    if (!existing) {
      const { userId } = await this.registerUser.execute(
        new RegisterUser({ email, password, name: 'Administrator' }, ctx),
      );
      await this.identity.userCommand(
        { type: 'AssignRole', data: { userId, role: 'admin', by: 'system', now: ctx.now } },
        ctx,
      );
      return { userId, outcome: 'created' };
    }
    const user = await this.identity.loadUser(existing);
    const verified =
      (user.status === 'active' || user.status === 'disabled') &&
      (await this.identity.hasher.verify(user.passwordHash, password));
    if (!verified) return { userId: existing, outcome: 'refused' };
    if (user.roles.includes('admin')) return { userId: existing, outcome: 'already admin' };
    await this.identity.userCommand(
      { type: 'AssignRole', data: { userId: existing, role: 'admin', by: 'system', now: ctx.now } },
      ctx,
    );
    return { userId: existing, outcome: 'promoted' };
  }
}
